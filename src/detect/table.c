/*
 * The capped keyed hash table every detector keeps its per-key state in.
 * Keys come from the wire (addresses, ports), so buckets are chosen by
 * SipHash under the engine's random key. The table never grows past the
 * size its detector's memory share allows: a full table evicts the
 * stalest entry near the new key's slot and counts it, so memory stays
 * bounded under a flood of distinct keys and no lookup scans far.
 */
#include "detect/detect_int.h"

#include "mamori/bigmem.h"
#include "mamori/status.h"

#include <stdlib.h>
#include <string.h>

/* Entries looked at when choosing what to evict. */
#define EVICT_PROBE 16

static inline struct det_hdr *slot(const struct det_table *t, size_t i)
{
	return (struct det_hdr *)(t->slots + i * t->entry_size);
}

/* Home slot of a hash: Lemire's multiply-shift range reduction (any capacity, no division). */
static inline size_t home_of(const struct det_table *t, uint64_t h)
{
	return (size_t)(((unsigned __int128)h * t->cap) >> 64);
}

static inline size_t next_slot(const struct det_table *t, size_t i)
{
	return i + 1 == t->cap ? 0 : i + 1;
}

/* Probe distance from slot a forward to slot b. */
static inline size_t dist(const struct det_table *t, size_t a, size_t b)
{
	return b >= a ? b - a : b + t->cap - a;
}

int det_table_init(struct det_table *t, size_t entry_size, size_t key_len, size_t mem_bytes,
		   struct mm_detect *d, enum mm_detector owner)
{
	size_t cap = mem_bytes / entry_size;

	memset(t, 0, sizeof(*t));
	if (cap < 64)
		cap = 64;
	t->slots = mm_bigmem_alloc(cap * entry_size);
	if (!t->slots)
		return mm_fail(MM_ENOMEM, "detect: %s: %zu table entries of %zu bytes",
			       mm_detector_name(owner), cap, entry_size);
	t->cap = cap;
	/* Three quarters full at most: linear probe chains stay short. */
	t->max_n = cap - cap / 4;
	t->entry_size = entry_size;
	t->key_len = key_len;
	t->hash_key = &d->key;
	t->evictions = &d->stats.evictions[owner];
	t->expired = &d->stats.expired[owner];
	d->stats.memory_used += cap * entry_size;
	return 0;
}

void det_table_release(struct det_table *t)
{
	mm_bigmem_free(t->slots, t->cap * t->entry_size);
	memset(t, 0, sizeof(*t));
}

static size_t find_slot(const struct det_table *t, const void *key, uint64_t h, bool *found)
{
	size_t i = home_of(t, h);

	for (;;) {
		struct det_hdr *e = slot(t, i);

		if (e->hash == 0) {
			*found = false;
			return i;
		}
		if (e->hash == h && memcmp(e + 1, key, t->key_len) == 0) {
			*found = true;
			return i;
		}
		i = next_slot(t, i);
	}
}

uint64_t det_table_hash(const struct det_table *t, const void *key)
{
	return mm_siphash13(t->hash_key, key, t->key_len);
}

/* 0 marks an empty slot: a key hashing to 0 is stored as 1. */
static inline uint64_t stored_hash(uint64_t h)
{
	return h ? h : 1;
}

void det_table_prefetch(const struct det_table *t, uint64_t h)
{
	__builtin_prefetch(slot(t, home_of(t, stored_hash(h))), 1);
}

void *det_table_find_h(struct det_table *t, const void *key, uint64_t h)
{
	bool found;
	size_t i = find_slot(t, key, stored_hash(h), &found);

	return found ? slot(t, i) : NULL;
}

void *det_table_find(struct det_table *t, const void *key)
{
	return det_table_find_h(t, key, det_table_hash(t, key));
}

static void remove_at(struct det_table *t, size_t i)
{
	size_t j = i;

	/* Backward shift: pull later members of the probe run into the hole. */
	for (;;) {
		struct det_hdr *e;
		size_t home;

		j = next_slot(t, j);
		e = slot(t, j);
		if (e->hash == 0)
			break;
		home = home_of(t, e->hash);
		/* e may move to i only if its home is not in (i, j]. */
		if (dist(t, home, j) >= dist(t, i, j)) {
			memcpy(slot(t, i), e, t->entry_size);
			i = j;
		}
	}
	memset(slot(t, i), 0, t->entry_size);
	t->n--;
}

void det_table_remove(struct det_table *t, void *entry)
{
	remove_at(t, (size_t)((uint8_t *)entry - t->slots) / t->entry_size);
}

static void evict_near(struct det_table *t, uint64_t h)
{
	size_t i = home_of(t, h), best = SIZE_MAX;
	uint64_t best_ns = UINT64_MAX;
	unsigned seen = 0;

	for (size_t k = 0; k < t->cap && seen < EVICT_PROBE; k++, i = next_slot(t, i)) {
		struct det_hdr *e = slot(t, i);

		if (e->hash == 0)
			continue;
		seen++;
		uint64_t r = t->rank ? t->rank(e) : e->last_ns;

		if (r < best_ns) {
			best_ns = r;
			best = i;
		}
	}
	MM_BUG(best == SIZE_MAX);
	if (t->on_drop)
		t->on_drop(t->ctx, slot(t, best), false);
	(*t->evictions)++;
	remove_at(t, best);
}

void *det_table_get(struct det_table *t, const void *key, uint64_t now, bool *created)
{
	return det_table_get_h(t, key, det_table_hash(t, key), now, created);
}

void *det_table_get_h(struct det_table *t, const void *key, uint64_t hash, uint64_t now, bool *created)
{
	uint64_t h = stored_hash(hash);
	bool found;
	size_t i = find_slot(t, key, h, &found);
	struct det_hdr *e;

	if (!found && t->n >= t->max_n) {
		evict_near(t, h);
		i = find_slot(t, key, h, &found);
	}
	e = slot(t, i);
	if (!found) {
		memset(e, 0, t->entry_size);
		e->hash = h;
		memcpy(e + 1, key, t->key_len);
		t->n++;
	}
	e->last_ns = now;
	*created = !found;
	return e;
}

/* Slots the sweep prefetches ahead of the one it looks at. */
#define SWEEP_AHEAD 8

void det_table_sweep(struct det_table *t, uint64_t now, uint64_t ttl, size_t budget)
{
	size_t i = t->sweep_cursor % t->cap;

	for (size_t k = 0; k < budget && k < t->cap; k++) {
		struct det_hdr *e = slot(t, i);

		/* Every slot is a cache miss of its own in tables of large entries: overlap them. */
		__builtin_prefetch(slot(t, i + SWEEP_AHEAD < t->cap ? i + SWEEP_AHEAD : i + SWEEP_AHEAD - t->cap));

		/* A removal shifts a later entry into i: look at i again. */
		while (e->hash != 0 && e->last_ns + ttl < now) {
			if (t->on_drop)
				t->on_drop(t->ctx, e, true);
			(*t->expired)++;
			remove_at(t, i);
		}
		i = next_slot(t, i);
	}
	t->sweep_cursor = i;
}

void det_table_each(struct det_table *t, void (*fn)(void *ctx, void *entry), void *ctx)
{
	for (size_t i = 0; i < t->cap; i++)
		if (slot(t, i)->hash != 0)
			fn(ctx, slot(t, i));
}
