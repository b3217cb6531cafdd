/*
 * Flow table for the meter (see flow_table.h). The index stores a 32-bit
 * hash tag beside each entry number, so probing, growing and backward-shift
 * deletion never touch an entry; only a tag match reads the 40-byte key.
 * The timer wheel files entries lazily, the way Zeek's inactivity timers
 * re-arm themselves: a packet never moves its entry, expiry re-files it.
 */
#include "meter/flow_table.h"

#include "mamori/status.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

_Static_assert(sizeof(struct ft_key) == 40, "flow key must have no padding");
_Static_assert(sizeof(struct ft_entry) == 128, "flow entry must stay two cache lines");
_Static_assert(FT_WHEEL_SLOTS < FT_SLOT_NONE, "wheel slot numbers must fit uint16");

#define FT_MIN_SLOTS 1024u
#define FT_CHUNK_ALIGN ((size_t)2 << 20)
_Static_assert(FT_CHUNK_ENTRIES * sizeof(struct ft_entry) == FT_CHUNK_ALIGN,
	       "a chunk fills one 2 MiB huge page");

int flow_table_new(struct flow_table **out, size_t max_flows)
{
	struct flow_table *t = NULL;
	int rc;

	*out = NULL;
	if (max_flows == 0 || max_flows > (size_t)1 << 31)
		return mm_fail(MM_EINVAL, "flow table: max_flows %zu outside 1..2^31", max_flows);
	t = calloc(1, sizeof(*t));
	if (!t)
		return mm_fail(MM_ENOMEM, "flow table: out of memory");
	t->max_flows = max_flows;
	t->max_chunks = (max_flows + FT_CHUNK_ENTRIES - 1) / FT_CHUNK_ENTRIES;
	t->free_head = FT_NONE;
	t->n_slots = FT_MIN_SLOTS;
	t->chunk = calloc(t->max_chunks, sizeof(*t->chunk));
	t->slot = calloc(t->n_slots, sizeof(*t->slot));
	t->wheel = malloc(FT_WHEEL_SLOTS * sizeof(*t->wheel));
	if (!t->chunk || !t->slot || !t->wheel) {
		rc = mm_fail(MM_ENOMEM, "flow table: out of memory");
		goto out;
	}
	memset(t->wheel, 0xff, FT_WHEEL_SLOTS * sizeof(*t->wheel));
	rc = mm_hash_key_random(&t->key);
	if (rc < 0)
		goto out;
	*out = t;
	t = NULL;
out:
	flow_table_free(t);
	return rc;
}

void flow_table_free(struct flow_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_chunks; i++)
		free(t->chunk[i]);
	free(t->chunk);
	free(t->slot);
	free(t->wheel);
	free(t);
}

/*
 * IPv4 keys (most traffic) are hashed in a 16-byte packed form: SipHash
 * costs one round per 8 bytes, and the 24 bytes of IPv4-mapped prefix carry
 * nothing. IPv6 keys are hashed whole. Both forms stay keyed.
 */
uint64_t flow_table_hash(const struct flow_table *t, const struct ft_key *key)
{
	uint8_t packed[16];

	if (!mm_addr_is_v4(&key->a) || !mm_addr_is_v4(&key->b))
		return mm_siphash13(&t->key, key, sizeof(*key));
	memcpy(packed, key->a.b + 12, 4);
	memcpy(packed + 4, key->b.b + 12, 4);
	memcpy(packed + 8, &key->port_a, 2);
	memcpy(packed + 10, &key->port_b, 2);
	memcpy(packed + 12, &key->vlan, 2);
	packed[14] = key->proto;
	packed[15] = key->one_way;
	return mm_siphash13(&t->key, packed, sizeof(packed));
}

static inline uint32_t slot_tag(uint64_t s)
{
	return (uint32_t)(s >> 32);
}

static inline uint32_t slot_entry(uint64_t s)
{
	return (uint32_t)s - 1;
}

/* Slot position holding idx, found by probing from the key's home slot. */
static size_t slot_of(const struct flow_table *t, uint32_t idx, uint64_t hash)
{
	size_t mask = t->n_slots - 1;
	size_t i = (uint32_t)hash & mask;

	while (t->slot[i] && slot_entry(t->slot[i]) != idx)
		i = (i + 1) & mask;
	MM_BUG(!t->slot[i]);
	return i;
}

uint32_t flow_table_find(const struct flow_table *t, const struct ft_key *key, uint64_t hash)
{
	size_t mask = t->n_slots - 1;
	uint32_t tag = (uint32_t)hash;

	for (size_t i = tag & mask;; i = (i + 1) & mask) {
		uint64_t s = t->slot[i];

		if (!s)
			return FT_NONE;
		if (slot_tag(s) == tag) {
			uint32_t idx = slot_entry(s);
			const struct ft_entry *e =
				&t->chunk[idx >> FT_CHUNK_SHIFT][idx & (FT_CHUNK_ENTRIES - 1)];

			if (ft_key_eq(&e->key, key))
				return idx;
		}
	}
}

static void slot_place(uint64_t *slots, size_t mask, uint64_t s)
{
	size_t i = slot_tag(s) & mask;

	while (slots[i])
		i = (i + 1) & mask;
	slots[i] = s;
}

/* Doubles the index; tags give every home slot, so no entry is read. */
static int grow_index(struct flow_table *t)
{
	size_t n = t->n_slots * 2;
	uint64_t *slots = calloc(n, sizeof(*slots));

	if (!slots)
		return mm_fail(MM_ENOMEM, "flow table: out of memory growing index to %zu slots", n);
	for (size_t i = 0; i < t->n_slots; i++)
		if (t->slot[i])
			slot_place(slots, n - 1, t->slot[i]);
	free(t->slot);
	t->slot = slots;
	t->n_slots = n;
	return 0;
}

/*
 * A chunk is one 2 MiB huge page where the kernel grants it. Lookups hit
 * random entries of a table of megabytes, so with 4 KiB pages nearly every
 * miss also missed the TLB (and under virtualisation a page walk is two
 * nested walks). Alignment also keeps each 128-byte entry on exactly two
 * cache lines: plain malloc returns 16 bytes past a page for this size,
 * which spread every entry over three lines.
 */
static struct ft_entry *alloc_chunk(void)
{
	size_t bytes = FT_CHUNK_ENTRIES * sizeof(struct ft_entry);
	void *p = aligned_alloc(FT_CHUNK_ALIGN, bytes);

	/* Only a hint: without transparent huge pages the chunk still works. */
	if (p)
		(void)madvise(p, bytes, MADV_HUGEPAGE);
	return p;
}

static int carve_entry(struct flow_table *t, uint32_t *out)
{
	if (t->free_head != FT_NONE) {
		*out = t->free_head;
		t->free_head = flow_table_entry(t, *out)->wheel_next;
		return 0;
	}
	if (t->n_carved == t->n_chunks * FT_CHUNK_ENTRIES) {
		if (t->n_chunks == t->max_chunks)
			return MM_ELIMIT;
		t->chunk[t->n_chunks] = alloc_chunk();
		if (!t->chunk[t->n_chunks])
			return mm_fail(MM_ENOMEM, "flow table: out of memory for entries");
		t->n_chunks++;
	}
	*out = (uint32_t)t->n_carved++;
	return 0;
}

int flow_table_insert(struct flow_table *t, const struct ft_key *key, uint64_t hash,
		      uint32_t *out_idx)
{
	struct ft_entry *e;
	uint32_t idx = FT_NONE;
	int rc;

	if (t->n_used >= t->max_flows)
		return MM_ELIMIT;
	if (t->n_used + 1 > t->n_slots / 4 * 3) {
		rc = grow_index(t);
		if (rc < 0)
			return rc;
	}
	rc = carve_entry(t, &idx);
	if (rc < 0)
		return rc;
	e = flow_table_entry(t, idx);
	memset(e, 0, sizeof(*e));
	e->key = *key;
	e->wheel_next = e->wheel_prev = FT_NONE;
	e->wheel_slot = FT_SLOT_NONE;
	slot_place(t->slot, t->n_slots - 1, (uint64_t)(uint32_t)hash << 32 | ((uint64_t)idx + 1));
	t->n_used++;
	*out_idx = idx;
	return 0;
}

/* Deletes slot i and shifts later members of its probe run back (no tombstones). */
static void slot_delete(struct flow_table *t, size_t i)
{
	size_t mask = t->n_slots - 1;
	size_t j = i;

	for (;;) {
		j = (j + 1) & mask;
		if (!t->slot[j])
			break;
		size_t home = slot_tag(t->slot[j]) & mask;

		/* Move j into the hole unless its home lies cyclically in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			t->slot[i] = t->slot[j];
			i = j;
		}
	}
	t->slot[i] = 0;
}

static void wheel_unlink(struct flow_table *t, struct ft_entry *e)
{
	if (e->wheel_slot == FT_SLOT_NONE)
		return;
	if (e->wheel_prev != FT_NONE)
		flow_table_entry(t, e->wheel_prev)->wheel_next = e->wheel_next;
	else
		t->wheel[e->wheel_slot] = e->wheel_next;
	if (e->wheel_next != FT_NONE)
		flow_table_entry(t, e->wheel_next)->wheel_prev = e->wheel_prev;
	e->wheel_next = e->wheel_prev = FT_NONE;
	e->wheel_slot = FT_SLOT_NONE;
}

void flow_table_remove(struct flow_table *t, uint32_t idx, uint64_t hash)
{
	struct ft_entry *e = flow_table_entry(t, idx);

	wheel_unlink(t, e);
	slot_delete(t, slot_of(t, idx, hash));
	e->wheel_next = t->free_head;
	t->free_head = idx;
	t->n_used--;
}

void flow_table_schedule(struct flow_table *t, uint32_t idx, uint64_t deadline_ns)
{
	struct ft_entry *e = flow_table_entry(t, idx);
	uint64_t s = deadline_ns >> FT_WHEEL_SHIFT;
	uint16_t phys;

	if (!t->wheel_started) {
		t->wheel_cur = s;
		t->wheel_started = 1;
	}
	/* Past deadlines go to the cursor slot; far ones to the horizon, re-filed when reached. */
	if (s < t->wheel_cur)
		s = t->wheel_cur;
	if (s > t->wheel_cur + FT_WHEEL_SLOTS - 1)
		s = t->wheel_cur + FT_WHEEL_SLOTS - 1;
	phys = (uint16_t)(s & (FT_WHEEL_SLOTS - 1));
	wheel_unlink(t, e);
	e->wheel_slot = phys;
	e->wheel_prev = FT_NONE;
	e->wheel_next = t->wheel[phys];
	if (e->wheel_next != FT_NONE)
		flow_table_entry(t, e->wheel_next)->wheel_prev = idx;
	t->wheel[phys] = idx;
}

/*
 * Expiry walks a list whose members were filed long ago and are out of
 * cache: fetching the next one now overlaps its miss with the caller's
 * work on this one.
 */
static uint32_t wheel_pop(struct flow_table *t, size_t phys)
{
	uint32_t idx = t->wheel[phys];
	struct ft_entry *e = flow_table_entry(t, idx);

	if (e->wheel_next != FT_NONE)
		ft_prefetch(flow_table_entry(t, e->wheel_next));
	wheel_unlink(t, e);
	return idx;
}

uint32_t flow_table_next_due(struct flow_table *t, uint64_t now_ns)
{
	uint64_t now_slot = now_ns >> FT_WHEEL_SHIFT;

	if (!t->wheel_started) {
		t->wheel_cur = now_slot;
		t->wheel_started = 1;
		return FT_NONE;
	}
	/*
	 * After a gap longer than the horizon every filed entry is due; one
	 * pass over the physical slots finds them all.
	 */
	if (now_slot > t->wheel_cur + FT_WHEEL_SLOTS)
		t->wheel_cur = now_slot - FT_WHEEL_SLOTS;
	while (t->wheel_cur < now_slot) {
		size_t phys = t->wheel_cur & (FT_WHEEL_SLOTS - 1);

		if (t->wheel[phys] != FT_NONE)
			return wheel_pop(t, phys);
		t->wheel_cur++;
	}
	return FT_NONE;
}

uint32_t flow_table_pop_earliest(struct flow_table *t)
{
	for (size_t k = 0; k < FT_WHEEL_SLOTS; k++) {
		size_t phys = (t->wheel_cur + k) & (FT_WHEEL_SLOTS - 1);

		if (t->wheel[phys] != FT_NONE)
			return wheel_pop(t, phys);
	}
	return FT_NONE;
}

size_t flow_table_count(const struct flow_table *t)
{
	return t->n_used;
}

size_t flow_table_bytes(const struct flow_table *t)
{
	return sizeof(*t) + t->max_chunks * sizeof(*t->chunk) +
	       t->n_chunks * FT_CHUNK_ENTRIES * sizeof(struct ft_entry) +
	       t->n_slots * sizeof(*t->slot) + FT_WHEEL_SLOTS * sizeof(*t->wheel);
}

size_t flow_table_max_probe(const struct flow_table *t)
{
	size_t mask = t->n_slots - 1;
	size_t worst = 0;

	for (size_t i = 0; i < t->n_slots; i++) {
		if (!t->slot[i])
			continue;
		size_t d = (i - (slot_tag(t->slot[i]) & mask)) & mask;

		if (d > worst)
			worst = d;
	}
	return worst + 1;
}
