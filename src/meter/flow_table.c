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
#define FT_WHEEL_MIN_CAP 16u     /* first array size of a wheel slot */
#define FT_EXPIRY_AHEAD 8u       /* members read between an entry's prefetch and its use */
#define FT_WHEEL_STALE_MIN 32768u /* stale members tolerated before squeezing, whatever the live */
#define FT_HASH_BATCH 64u       /* keys flow_table_hash_batch sorts at a time */
#define FT_CHUNK_ALIGN ((size_t)2 << 20)
_Static_assert(FT_CHUNK_ENTRIES * sizeof(struct ft_entry) == FT_CHUNK_ALIGN,
	       "a chunk fills one 2 MiB huge page");

/*
 * Both lines of an entry read long after it was filed: the liveness check
 * reads wheel_slot and wheel_pos in the second line, expiry's deadline
 * both (a first-line-only prefetch left the liveness check to miss).
 */
static inline void prefetch_filed_entry(struct flow_table *t, uint32_t idx)
{
	const char *e = (const char *)flow_table_entry(t, idx);

	ft_prefetch(e);
	ft_prefetch(e + 64);
}

static inline bool wheel_member_live(const struct ft_entry *e, size_t phys, uint32_t pos)
{
	return e->wheel_slot == phys && e->wheel_pos == pos;
}

/* Takes the entry out of its wheel slot's live count; its member turns stale. */
static void wheel_unfile(struct flow_table *t, struct ft_entry *e)
{
	if (e->wheel_slot != FT_SLOT_NONE) {
		t->wheel[e->wheel_slot].live--;
		t->wheel_live--;
		e->wheel_slot = FT_SLOT_NONE;
	}
}

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
	t->wheel = calloc(FT_WHEEL_SLOTS, sizeof(*t->wheel));
	if (!t->chunk || !t->slot || !t->wheel) {
		rc = mm_fail(MM_ENOMEM, "flow table: out of memory");
		goto out;
	}
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
	if (t->wheel)
		for (size_t i = 0; i < FT_WHEEL_SLOTS; i++)
			free(t->wheel[i].idx);
	free(t->wheel);
	free(t);
}

/*
 * Both addresses IPv4-mapped, as one expression: the mix of IPv4 and IPv6
 * traffic made each of mm_addr_is_v4's short-circuit branches mispredict.
 */
static inline bool key_is_v4(const struct ft_key *key)
{
	static const uint8_t mapped_tail[4] = { 0, 0, 0xff, 0xff };
	uint64_t head_a, head_b;
	uint32_t tail_a, tail_b, want;

	memcpy(&head_a, key->a.b, 8);
	memcpy(&head_b, key->b.b, 8);
	memcpy(&tail_a, key->a.b + 8, 4);
	memcpy(&tail_b, key->b.b + 8, 4);
	memcpy(&want, mapped_tail, 4);
	return ((head_a | head_b) == 0) & (tail_a == want) & (tail_b == want);
}

/*
 * IPv4 keys (most traffic) are hashed as two packed words: SipHash costs
 * one round per 8 bytes, and the 24 bytes of IPv4-mapped prefix carry
 * nothing. The packing is injective (each field has its own bits), so
 * distinct keys stay distinct inputs. IPv6 keys are hashed whole. Both
 * forms stay keyed. Always writes the words (meaningless for an IPv6 key),
 * so that batch callers need not branch; returns whether the key is IPv4.
 */
static inline bool v4_words(const struct ft_key *key, uint64_t *m0, uint64_t *m1)
{
	uint32_t a, b;

	memcpy(&a, key->a.b + 12, 4);
	memcpy(&b, key->b.b + 12, 4);
	*m0 = (uint64_t)a | (uint64_t)b << 32;
	*m1 = (uint64_t)key->port_a | (uint64_t)key->port_b << 16 | (uint64_t)key->vlan << 32 |
	      (uint64_t)key->proto << 48 | (uint64_t)key->one_way << 56;
	return key_is_v4(key);
}

uint64_t flow_table_hash(const struct flow_table *t, const struct ft_key *key)
{
	uint64_t m0, m1;

	if (!v4_words(key, &m0, &m1))
		return mm_siphash13(&t->key, key, sizeof(*key));
	return mm_siphash13_16(&t->key, m0, m1);
}

static inline void set_hash(const struct flow_table *t, struct ft_lookup *lu, uint64_t hash)
{
	lu->hash = hash;
	flow_table_prefetch_slot(t, hash);
}

/*
 * Sorts the lookups into IPv4 and IPv6 first, without a branch on which
 * (the mix makes it unpredictable): each is written to both lists and
 * only its own list's count advances. Each list is then hashed four keys
 * at a time.
 */
void flow_table_hash_batch(const struct flow_table *t, struct ft_lookup *const *lu, size_t n)
{
	for (size_t done = 0; done < n;) {
		size_t chunk = n - done < FT_HASH_BATCH ? n - done : FT_HASH_BATCH;
		uint64_t m0[FT_HASH_BATCH + 1], m1[FT_HASH_BATCH + 1], h[4];
		struct ft_lookup *v4[FT_HASH_BATCH + 1], *v6[FT_HASH_BATCH + 1];
		const void *v6_key[4];
		size_t n4 = 0, n6 = 0, i;

		for (i = 0; i < chunk; i++) {
			bool is4 = v4_words(&lu[done + i]->key, &m0[n4], &m1[n4]);

			v4[n4] = v6[n6] = lu[done + i];
			n4 += is4;
			n6 += !is4;
		}
		for (i = 0; i + 4 <= n4; i += 4) {
			mm_siphash13_16x4(&t->key, m0 + i, m1 + i, h);
			for (size_t j = 0; j < 4; j++)
				set_hash(t, v4[i + j], h[j]);
		}
		for (; i < n4; i++)
			set_hash(t, v4[i], mm_siphash13_16(&t->key, m0[i], m1[i]));
		for (i = 0; i + 4 <= n6; i += 4) {
			for (size_t j = 0; j < 4; j++)
				v6_key[j] = &v6[i + j]->key;
			mm_siphash13_x4(&t->key, v6_key, sizeof(struct ft_key), h);
			for (size_t j = 0; j < 4; j++)
				set_hash(t, v6[i + j], h[j]);
		}
		for (; i < n6; i++)
			set_hash(t, v6[i], mm_siphash13(&t->key, &v6[i]->key, sizeof(struct ft_key)));
		done += chunk;
	}
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
		t->free_head = flow_table_entry(t, *out)->free_next;
		/*
		 * The list reaches back to entries freed long ago: fetch the next
		 * one now, for the flow created a few packets later to find it
		 * (and its link) in cache.
		 */
		if (t->free_head != FT_NONE) {
			const char *next = (const char *)flow_table_entry(t, t->free_head);

			ft_prefetch(next);
			ft_prefetch(next + 64);
		}
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
	e->tag = (uint32_t)hash;
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

void flow_table_remove(struct flow_table *t, uint32_t idx)
{
	struct ft_entry *e = flow_table_entry(t, idx);

	wheel_unfile(t, e);
	slot_delete(t, slot_of(t, idx, e->tag));
	e->key.one_way = FT_KEY_FREED;
	e->free_next = t->free_head;
	t->free_head = idx;
	t->n_used--;
}

static int resize_wheel_slot(struct flow_table *t, struct ft_wheel_slot *w, uint32_t cap)
{
	uint32_t *idx = realloc(w->idx, (size_t)cap * sizeof(*idx));

	if (!idx)
		return mm_fail(MM_ENOMEM, "flow table: out of memory resizing a wheel slot to %u entries",
			       cap);
	t->wheel_cap = t->wheel_cap - w->cap + cap;
	if (t->wheel_cap > t->wheel_cap_peak)
		t->wheel_cap_peak = t->wheel_cap;
	w->idx = idx;
	w->cap = cap;
	return 0;
}

/*
 * Squeezes the stale members out of slot phys, keeping the live ones in
 * order, and shrinks its array to fit. Reads every member's entry,
 * prefetched ahead.
 */
static void compact_wheel_slot(struct flow_table *t, size_t phys)
{
	struct ft_wheel_slot *w = &t->wheel[phys];
	uint32_t kept = 0, cap = FT_WHEEL_MIN_CAP;

	for (uint32_t j = 0; j < w->n; j++) {
		struct ft_entry *e = flow_table_entry(t, w->idx[j]);

		if (j + FT_EXPIRY_AHEAD < w->n)
			prefetch_filed_entry(t, w->idx[j + FT_EXPIRY_AHEAD]);
		if (wheel_member_live(e, phys, j)) {
			e->wheel_pos = kept;
			w->idx[kept++] = w->idx[j];
		}
	}
	MM_BUG(kept != w->live);
	t->wheel_members -= w->n - kept;
	w->n = kept;
	while (cap < kept)
		cap *= 2;
	/* Shrinking is best effort: a failed realloc leaves the larger array. */
	if (cap < w->cap)
		(void)resize_wheel_slot(t, w, cap);
}

/*
 * Runs once stale members are the majority (and not few), so the pass,
 * which reads one entry per member, costs at most two entry reads for each
 * stale member it drops.
 */
static void compact_wheel(struct flow_table *t)
{
	for (size_t phys = 0; phys < FT_WHEEL_SLOTS; phys++)
		if (t->wheel[phys].n > t->wheel[phys].live)
			compact_wheel_slot(t, phys);
}

int flow_table_schedule(struct flow_table *t, uint32_t idx, uint64_t deadline_ns)
{
	struct ft_entry *e = flow_table_entry(t, idx);
	uint64_t s = deadline_ns >> FT_WHEEL_SHIFT;
	struct ft_wheel_slot *w;
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
	w = &t->wheel[phys];
	if (w->n == w->cap) {
		/* Positions are uint32: a slot of 2^31 members cannot double. */
		int rc = w->cap > UINT32_MAX / 2
				 ? mm_fail(MM_ENOMEM, "flow table: wheel slot %u is full", phys)
				 : resize_wheel_slot(t, w, w->cap ? w->cap * 2 : FT_WHEEL_MIN_CAP);

		if (rc < 0)
			return rc;
	}
	wheel_unfile(t, e);
	e->wheel_slot = phys;
	e->wheel_pos = w->n;
	w->idx[w->n++] = idx;
	w->live++;
	t->wheel_live++;
	t->wheel_members++;
	if (t->wheel_members - t->wheel_live > t->wheel_live + FT_WHEEL_STALE_MIN)
		compact_wheel(t);
	return 0;
}

/*
 * Unfiles and returns the newest live member of slot phys, or FT_NONE once
 * the slot holds none, dropping stale members on the way. Members were
 * filed long ago and are out of cache: each read prefetches the entry
 * FT_EXPIRY_AHEAD members further back, so its miss overlaps the caller's
 * work on this one.
 */
static uint32_t wheel_take(struct flow_table *t, size_t phys)
{
	struct ft_wheel_slot *w = &t->wheel[phys];

	while (w->n) {
		uint32_t idx = w->idx[--w->n];
		struct ft_entry *e = flow_table_entry(t, idx);

		t->wheel_members--;
		if (w->n >= FT_EXPIRY_AHEAD)
			prefetch_filed_entry(t, w->idx[w->n - FT_EXPIRY_AHEAD]);
		if (wheel_member_live(e, phys, w->n)) {
			wheel_unfile(t, e);
			return idx;
		}
	}
	/*
	 * A drained slot returns its array: the next use is a wheel turn
	 * away, and kept arrays would hold memory for every slot turned.
	 */
	t->wheel_cap -= w->cap;
	free(w->idx);
	w->idx = NULL;
	w->cap = 0;
	return FT_NONE;
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
		uint32_t idx = wheel_take(t, t->wheel_cur & (FT_WHEEL_SLOTS - 1));

		if (idx != FT_NONE)
			return idx;
		t->wheel_cur++;
	}
	return FT_NONE;
}

uint32_t flow_table_pop_earliest(struct flow_table *t)
{
	for (size_t k = 0; k < FT_WHEEL_SLOTS; k++) {
		uint32_t idx = wheel_take(t, (t->wheel_cur + k) & (FT_WHEEL_SLOTS - 1));

		if (idx != FT_NONE)
			return idx;
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
	       t->n_slots * sizeof(*t->slot) + FT_WHEEL_SLOTS * sizeof(*t->wheel) +
	       t->wheel_cap_peak * sizeof(uint32_t);
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
