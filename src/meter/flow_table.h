/*
 * The meter's flow table (module-internal): compact entries in a chunked
 * slab addressed by uint32 index, an open-addressing index keyed by
 * SipHash-1-3 under a per-table random key, and a timer wheel that files
 * each entry under its deadline so expiry never walks the whole table.
 * Each wheel slot is an array of entry numbers: filing appends, expiry
 * reads it back newest first and can prefetch entries well ahead of use.
 */
#ifndef MAMORI_METER_FLOW_TABLE_H
#define MAMORI_METER_FLOW_TABLE_H

#include "mamori/addr.h"
#include "mamori/hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FT_NONE UINT32_MAX
#define FT_KEY_FREED 0xffu /* one_way of a removed entry's key: matches no lookup */

/*
 * Canonical flow key: endpoint a is the lower (address, port) pair unless
 * one_way is set (ICMP messages without a counterpart), in which case a is
 * the sender. 40 bytes, no padding, compared with memcmp. one_way is 0 or
 * 1 in every lookup key; a removed entry's is FT_KEY_FREED.
 */
struct ft_key {
	struct mm_addr a, b;
	uint16_t port_a, port_b;
	uint16_t vlan;
	uint8_t proto;
	uint8_t one_way;
};
_Static_assert(sizeof(struct ft_key) == 40, "ft_key is compared as five words");

/* Entry state bits. */
enum ft_state {
	FT_ORIG_IS_B = 1u << 0,     /* the originator is key endpoint b */
	FT_FIN_A = 1u << 1,         /* FIN seen from endpoint a */
	FT_FIN_B = 1u << 2,
	FT_RST = 1u << 3,
	FT_CLOSED = 1u << 4,        /* FIN both ways or RST: lingering */
	FT_SYNACK_FIRST = 1u << 6,  /* Zeek mode: the originator opened with a SYN-ACK */
	FT_NTP_FLIPPED = 1u << 7,   /* Zeek mode: the NTP mode rule turned the flow round */
};

/* Index of the per-side counters: FT_AB counts packets from key endpoint a to b. */
enum ft_side { FT_AB = 0, FT_BA = 1 };

/*
 * One flow, 128 bytes: the key and the counters a packet touches most sit
 * in the first cache line. Counters are per key side, so a late change of
 * originator is one bit; they are arrays indexed by side so that counting
 * a packet needs no branch on its direction, which the address order makes
 * unpredictable.
 */
struct ft_entry {
	struct ft_key key;
	uint64_t last_ns;
	uint64_t pkts[2];                /* by enum ft_side */
	uint64_t bytes[2];
	uint64_t first_ns;
	uint64_t id;
	uint64_t parents[2];
	uint32_t tag;                    /* the key's hash tag (its low 32 bits): finds its index slot */
	uint8_t flags[2];                /* TCP flags by side */
	uint8_t icmp_type, icmp_code;    /* of the first message (the one that created the flow) */
	uint8_t state;                   /* enum ft_state */
	uint8_t flow_flags;              /* enum mm_flow_flag */
	uint16_t wheel_slot;             /* FT_SLOT_NONE when not filed */
	union {
		uint32_t wheel_pos;      /* filed: its member's position in that slot's array */
		uint32_t free_next;      /* unused: links the free list */
	};
};

/*
 * One wheel slot: the entries filed under it, in filing order. Re-filing
 * or removing an entry leaves its old member behind, stale: a member is
 * live only while its entry's wheel_slot and wheel_pos name it. Stale
 * members would pile up (a closed TCP flow is re-filed under its linger
 * deadline, and its first filing is due only minutes later), so once they
 * outnumber the live ones the whole wheel is squeezed: memory follows the
 * flows in the table, not every filing.
 */
struct ft_wheel_slot {
	uint32_t *idx;
	uint32_t n, cap;
	uint32_t live;             /* members that are live */
};

#define FT_CHUNK_SHIFT 14 /* 2 MiB of entries: one huge page */
#define FT_CHUNK_ENTRIES (1u << FT_CHUNK_SHIFT)
#define FT_WHEEL_SHIFT 28 /* slot width 2^28 ns (0.27 s) */
#define FT_WHEEL_SLOTS 8192u /* horizon ~36 min: covers the default active timeout */
#define FT_SLOT_NONE UINT16_MAX

/*
 * Visible to the meter only so that flow_table_entry can be inlined on the
 * hot path; everything else goes through the functions below.
 */
struct flow_table {
	struct ft_entry **chunk;   /* n_chunks of FT_CHUNK_ENTRIES entries */
	size_t n_chunks, max_chunks;
	size_t max_flows;
	size_t n_used;             /* entries live */
	size_t n_carved;           /* entries ever handed out of the chunks */
	uint32_t free_head;        /* freed entries, linked by free_next */
	uint64_t *slot;            /* index: tag << 32 | (entry + 1); 0 = empty */
	size_t n_slots;            /* power of two */
	struct ft_wheel_slot *wheel; /* FT_WHEEL_SLOTS slots */
	size_t wheel_members;      /* members in all slots... */
	size_t wheel_live;         /* ...of which live */
	size_t wheel_cap;          /* members the slot arrays can hold now... */
	size_t wheel_cap_peak;     /* ...and at most so far, for flow_table_bytes */
	uint64_t wheel_cur;        /* absolute slot number: all before it were processed */
	int wheel_started;
	struct mm_hash_key key;
};

/*
 * Creates a table holding at most max_flows entries (1 .. 2^31). Memory
 * grows with use: slab chunks of 16384 entries and an index doubled at
 * 3/4 load. 0, MM_EINVAL, MM_ENOMEM or MM_EIO (no random key).
 */
int flow_table_new(struct flow_table **out, size_t max_flows);
void flow_table_free(struct flow_table *t);

uint64_t flow_table_hash(const struct flow_table *t, const struct ft_key *key);

/*
 * A lookup in flight, for batches: the key, its flow_table_hash, and the
 * entry a prefetch found under the hash (FT_NONE if none), see
 * flow_table_prefetch_entry.
 */
struct ft_lookup {
	struct ft_key key;
	uint64_t hash;
	uint32_t cand;
};

/*
 * Sets the hash of n lookups (the values of flow_table_hash) and
 * prefetches their index slots. IPv4 keys are hashed four at a time, and
 * so are IPv6 keys (mm_siphash13_16x4, mm_siphash13_x4).
 */
void flow_table_hash_batch(const struct flow_table *t, struct ft_lookup *const *lu, size_t n);

/* Index of the entry with key, or FT_NONE. Work: one probe run. */
uint32_t flow_table_find(const struct flow_table *t, const struct ft_key *key, uint64_t hash);

/*
 * Adds a zeroed entry with key (which must be absent). 0, MM_ELIMIT at
 * max_flows, or MM_ENOMEM. The entry is not filed on the wheel yet.
 */
int flow_table_insert(struct flow_table *t, const struct ft_key *key, uint64_t hash,
		      uint32_t *out_idx);

/*
 * Unfiles and deletes the entry; lookups of other keys stay correct
 * (backward shift). Its index slot is found from the entry's tag, so a
 * caller ending a batch of entries can prefetch their slots first.
 */
void flow_table_remove(struct flow_table *t, uint32_t idx);

/*
 * Files the entry under deadline_ns (re-filing it if already filed). 0, or
 * MM_ENOMEM when the slot's array cannot grow: the entry then stays filed
 * where it was, or unfiled if it was not filed.
 */
int flow_table_schedule(struct flow_table *t, uint32_t idx, uint64_t deadline_ns);

/*
 * Unfiles and returns an entry filed in a wheel slot that ended before
 * now_ns, or FT_NONE. The caller checks the entry's real deadline (it may
 * have been active since it was filed) and removes or re-files it. Empty
 * slots walked per call are at most the wheel size.
 */
uint32_t flow_table_next_due(struct flow_table *t, uint64_t now_ns);

/* Unfiles and returns the entry filed earliest (nearest deadline), or FT_NONE. */
uint32_t flow_table_pop_earliest(struct flow_table *t);

size_t flow_table_count(const struct flow_table *t);

/*
 * Bytes held: slab chunks, index, wheel slots, and their arrays at their
 * largest so far (they shrink as slots drain; the others never shrink).
 */
size_t flow_table_bytes(const struct flow_table *t);

/* Longest probe run in the index (for tests of hash quality). O(index size). */
size_t flow_table_max_probe(const struct flow_table *t);

static inline struct ft_entry *flow_table_entry(struct flow_table *t, uint32_t idx)
{
	return &t->chunk[idx >> FT_CHUNK_SHIFT][idx & (FT_CHUNK_ENTRIES - 1)];
}

static inline uint64_t ft_word(const struct ft_key *k, size_t i)
{
	uint64_t w;

	memcpy(&w, (const char *)k + 8 * i, sizeof(w));
	return w;
}

/*
 * Five 8-byte compares the compiler keeps inline, instead of a call to
 * memcmp. Word loads straight from both keys: copying them into arrays
 * first made GCC spill both keys to the stack on every lookup.
 */
static inline bool ft_key_eq(const struct ft_key *x, const struct ft_key *y)
{
	return ((ft_word(x, 0) ^ ft_word(y, 0)) | (ft_word(x, 1) ^ ft_word(y, 1)) |
		(ft_word(x, 2) ^ ft_word(y, 2)) | (ft_word(x, 3) ^ ft_word(y, 3)) |
		(ft_word(x, 4) ^ ft_word(y, 4))) == 0;
}

/*
 * Slots flow_table_probe_near reads from the home slot: a probe run rarely
 * reaches further. With 4, 7% of the bench capture's packets found their
 * entry beyond the near probe, unprefetched, and stalled on it.
 */
#define FT_PROBE_NEAR 8

/*
 * Hints for batched lookups: fetch the index slots of the near probe (one
 * cache line, or two when the home slot is not first in its line), then
 * the entry they name. Inline because they run once per packet and layer.
 */
static inline void flow_table_prefetch_slot(const struct flow_table *t, uint64_t hash)
{
	size_t mask = t->n_slots - 1;

	__builtin_prefetch(&t->slot[(uint32_t)hash & mask]);
	__builtin_prefetch(&t->slot[((uint32_t)hash + FT_PROBE_NEAR - 1) & mask]);
}

/*
 * A read prefetch the compiler keeps: GCC 12 at -O2 deleted
 * __builtin_prefetch from the meter's entry-prefetch loop as dead code
 * (checked in the generated assembly), which left every entry lookup to miss.
 */
static inline void ft_prefetch(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 0, 3);
#endif
}

/* The entry a probe of at most FT_PROBE_NEAR slots finds for hash, or FT_NONE. */
static inline uint32_t flow_table_probe_near(const struct flow_table *t, uint64_t hash)
{
	size_t mask = t->n_slots - 1;

	for (size_t i = (uint32_t)hash & mask, n = 0; n < FT_PROBE_NEAR; i = (i + 1) & mask, n++) {
		uint64_t s = t->slot[i];

		if (!s)
			return FT_NONE;
		if ((uint32_t)(s >> 32) == (uint32_t)hash)
			return (uint32_t)s - 1;
	}
	return FT_NONE;
}

/*
 * Linear probing displaces keys from their home slot, so the probe follows
 * the run a few slots (they share the home slot's cache line). Returns the
 * entry prefetched (FT_NONE if none): a candidate for flow_table_find_from.
 */
static inline uint32_t flow_table_prefetch_entry(const struct flow_table *t, uint64_t hash)
{
	uint32_t idx = flow_table_probe_near(t, hash);
	const char *e;

	if (idx == FT_NONE)
		return FT_NONE;
	e = (const char *)&t->chunk[idx >> FT_CHUNK_SHIFT][idx & (FT_CHUNK_ENTRIES - 1)];
	ft_prefetch(e);
	ft_prefetch(e + 64);
	return idx;
}

/*
 * flow_table_find, trying cand first: an entry an earlier probe of this
 * hash found (FT_NONE for none). The table may have changed since, so
 * cand is only trusted when its key matches, and a removed entry's key is
 * poisoned (FT_KEY_FREED) so that it never does; live keys are unique,
 * so a match is the entry. Saves reading the index slot a second time.
 */
static inline uint32_t flow_table_find_from(const struct flow_table *t, const struct ft_key *key,
					    uint64_t hash, uint32_t cand)
{
	if (cand != FT_NONE &&
	    ft_key_eq(&t->chunk[cand >> FT_CHUNK_SHIFT][cand & (FT_CHUNK_ENTRIES - 1)].key, key))
		return cand;
	return flow_table_find(t, key, hash);
}

/*
 * Whether flow_table_next_due(t, now_ns) can return an entry. False while
 * now_ns is still inside the wheel slot last processed, as for most
 * packets, so the per-packet expiry check costs a compare.
 */
static inline bool flow_table_may_be_due(const struct flow_table *t, uint64_t now_ns)
{
	return !t->wheel_started || (now_ns >> FT_WHEEL_SHIFT) > t->wheel_cur;
}

#endif
