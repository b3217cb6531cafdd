/*
 * Internals of the detect module: the engine that orders flows and keeps
 * the stream clock, the bounded state every detector is built from (a
 * capped keyed hash table with counted evictions, HyperLogLog, count-min),
 * and the interface a detector implements (det_*.c).
 */
#ifndef MAMORI_DETECT_INT_H
#define MAMORI_DETECT_INT_H

#include "mamori/bigmem.h"
#include "mamori/detect.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mm_intel_snap;

/* --- capped hash table (table.c) ------------------------------------------ */

/* Every table entry starts with this; hash 0 marks an empty slot. */
struct det_hdr {
	uint64_t hash;
	uint64_t last_ns; /* stream time of the last update: expiry and eviction order */
};

/*
 * Open addressing, linear probing, backward-shift deletion; entries of a
 * fixed size, found by the key_len bytes that follow the header (callers
 * zero their key structs so padding compares equal). Never holds more than
 * max_n entries: inserting into a full table first evicts the lowest
 * ranked (by default the stalest) of the entries near the new key's slot,
 * telling on_drop.
 */
struct det_table {
	uint8_t *slots;
	size_t cap, n, max_n;
	size_t entry_size, key_len;
	const struct mm_hash_key *hash_key;
	size_t sweep_cursor;
	uint64_t *evictions, *expired; /* the engine's counters for the owning detector */
	void (*on_drop)(void *ctx, void *entry, bool expired);
	void *ctx;
	/* Eviction order: the lowest rank goes first. NULL: the stalest (last_ns). */
	uint64_t (*rank)(const void *entry);
};

/* Sizes the table to what mem_bytes holds (at least 64 entries). 0 or MM_ENOMEM. */
int det_table_init(struct det_table *t, size_t entry_size, size_t key_len, size_t mem_bytes,
		   struct mm_detect *d, enum mm_detector owner);
void det_table_release(struct det_table *t);
/* The entry with this key, or NULL. */
void *det_table_find(struct det_table *t, const void *key);
/* Finds or inserts (zeroed beyond the key; *created set); stamps last_ns = now. Never NULL. */
void *det_table_get(struct det_table *t, const void *key, uint64_t now, bool *created);
/*
 * The same with the key's hash already known, so a detector hashes each
 * key once per flow: h must be det_table_hash(t, key), which is also
 * det_hash() of the key (a table keyed by one address alone can take the
 * engine's per-flow address hash, struct det_flow_info).
 */
uint64_t det_table_hash(const struct det_table *t, const void *key);
void *det_table_find_h(struct det_table *t, const void *key, uint64_t h);
void *det_table_get_h(struct det_table *t, const void *key, uint64_t h, uint64_t now, bool *created);
/* Starts loading the home slot of hash h into the cache (no effect on the table). */
void det_table_prefetch(const struct det_table *t, uint64_t h);
/* Removes an entry that det_table_find/get returned (no callback). */
void det_table_remove(struct det_table *t, void *entry);
/* Looks at up to budget slots from a cursor and expires entries idle for ttl (on_drop told). */
void det_table_sweep(struct det_table *t, uint64_t now, uint64_t ttl, size_t budget);
/* Calls fn on every entry (the table must not change during the walk). */
void det_table_each(struct det_table *t, void (*fn)(void *ctx, void *entry), void *ctx);

/* --- sketches (sketch.c) --------------------------------------------------- */

#define DET_HLL_P 7
#define DET_HLL_M (1u << DET_HLL_P)

/* HyperLogLog (Flajolet et al. 2007) with linear counting for small sets: ±9% at m = 128. */
struct det_hll {
	uint8_t reg[DET_HLL_M];
};

void det_hll_add(struct det_hll *h, uint64_t hash);
/* Adds and says whether a register changed (a sure sign the item is new). */
bool det_hll_add_new(struct det_hll *h, uint64_t hash);
double det_hll_estimate(const struct det_hll *h);

/* Count-min (Cormode & Muthukrishnan 2005), conservative update: never underestimates. */
struct det_cms {
	uint32_t *cell;
	size_t width_mask; /* width - 1, width a power of two */
	unsigned depth;
};

int det_cms_init(struct det_cms *c, size_t mem_bytes, unsigned depth);
void det_cms_release(struct det_cms *c);
void det_cms_clear(struct det_cms *c);
/* Adds v and returns the new estimate. */
uint32_t det_cms_add(struct det_cms *c, uint64_t hash, uint32_t v);
uint32_t det_cms_get(const struct det_cms *c, uint64_t hash);
/* Starts loading the cells of hash into the cache (no effect on the sketch). */
void det_cms_prefetch(const struct det_cms *c, uint64_t hash);

/* The longest prefix covering every address added (alert src/dst for many hosts). */
struct det_cover {
	struct mm_addr a;
	unsigned bits; /* of 128 */
	bool set;
};

void det_cover_add(struct det_cover *c, const struct mm_addr *a);
void det_cover_prefix(const struct det_cover *c, struct mm_prefix *out);

/* --- the engine (engine.c) ------------------------------------------------- */

/*
 * What the engine works out once per flow for every detector: the keyed
 * hashes of both addresses (det_hash of each: sketches take them, and a
 * table keyed by one address alone finds its slot from them) and which
 * ends are domestic (the policy's mark, else the configured prefixes).
 */
struct det_flow_info {
	uint64_t h_src, h_dst;
	bool src_dom, dst_dom;
	/* A detector's own key hash, left by its prefetch for its flow() (unset when the flow is filtered). */
	uint64_t h_key[MM_DET_COUNT];
	/* Whether an indicator prefix covers each address, expiry aside (intel: false skips the lookup). */
	bool intel_src, intel_dst;
};

struct det_ops {
	const char *name;
	unsigned mem_share; /* percent of memory_cap */
	int (*init)(struct mm_detect *d, size_t mem_bytes);
	/* Optional: prefetches the state a coming flow will touch. The engine
	 * calls it for a batch of flows before handing them to flow() one by
	 * one, so the cache misses of the batch overlap instead of queueing. */
	void (*prefetch)(struct mm_detect *d, const struct mm_flow *f, struct det_flow_info *fi);
	/* d->cur holds f's det_flow_info. */
	void (*flow)(struct mm_detect *d, const struct mm_flow *f);
	void (*tick)(struct mm_detect *d, uint64_t now); /* about once per stream second */
	void (*flush)(struct mm_detect *d);              /* end of input */
	void (*release)(struct mm_detect *d);
};

extern const struct det_ops det_intel_ops, det_scan_ops, det_beacon_ops, det_ddos_ops,
	det_bruteforce_ops, det_exfil_ops;

struct det_heap {
	struct mm_flow *v;
	size_t n;
};

struct mm_detect {
	struct mm_detect_config cfg;
	mm_alert_fn on_alert;
	void *alert_ctx;
	struct mm_hash_key key;

	/* Reordering: a FIFO of flows that came in order, a heap for the rest. */
	struct mm_flow *ring;
	size_t ring_head, ring_n;
	struct det_heap heap;
	uint64_t max_last_seen;
	struct mm_flow last_done; /* order key of the last processed flow */
	bool any_done;

	uint64_t now;       /* stream clock: export time of the flow being processed */
	uint64_t next_tick;
	/* Slots each table's expiry sweep looks at per tick: in proportion to
	 * the flows since the last tick, so sweeping costs O(1) per flow. */
	size_t sweep_budget;
	uint64_t flows_at_tick;
	struct mm_intel_snap *snap; /* held during a feed or flush */
	struct det_flow_info cur;   /* of the flow being processed */
	/* Released flows waiting to be processed as one batch (engine.c, process_pending). */
#define DET_BATCH 16
	struct mm_flow pending[DET_BATCH];
	size_t n_pending;

	void *state[MM_DET_COUNT];
	struct mm_detect_stats stats;
};

/* The keyed hash of len bytes under the engine's key. */
uint64_t det_hash(const struct mm_detect *d, const void *p, size_t len);


/* Connection outcome used by scan and bruteforce: a reply came (TCP: handshake answered). */
bool det_flow_replied(const struct mm_flow *f);

/* Starts an alert raised now by detector; fills detector, kind and emitted_ns. */
void det_alert_init(struct mm_detect *d, struct mm_alert *a, enum mm_detector det, const char *kind);
void det_alert_host(struct mm_prefix *p, const struct mm_addr *a);
void det_alert_attck(struct mm_alert *a, const char *technique);
void det_alert_example(struct mm_alert *a, const struct mm_flow *f);
/* Copies examples kept by a detector into the alert. */
void det_alert_examples(struct mm_alert *a, const struct mm_alert_example *ex, unsigned n);
void det_example_keep(struct mm_alert_example *ex, unsigned *n, const struct mm_flow *f);
/* Writes the explanation sentence (cut at its size). */
void det_explain(struct mm_alert *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Counts and hands the alert to the callback. */
void det_emit(struct mm_detect *d, struct mm_alert *a);

/* "3m10s", "2h05m", "45s" for a duration. */
char *det_duration_text(uint64_t ns, char buf[32]);

#endif
