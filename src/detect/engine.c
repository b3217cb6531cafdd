/*
 * The detection engine: takes flows in roughly export order, puts them in
 * exact (last_ns, fields) order with a bounded reorder buffer, advances
 * the stream clock from the flows themselves and hands each flow to the
 * enabled detectors. Because order and clock depend only on the flows,
 * a batch run and a streaming run over the same flows raise the same
 * alerts whatever the batch boundaries.
 */
#include "detect/detect_int.h"

#include "mamori/intel.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const detector_names[MM_DET_COUNT] = {
	"intel", "scan", "beacon", "ddos", "bruteforce", "exfil",
};

static const char *const severity_names[] = { "low", "medium", "high", "critical" };

static const struct det_ops *const all_ops[MM_DET_COUNT] = {
	&det_intel_ops, &det_scan_ops, &det_beacon_ops, &det_ddos_ops, &det_bruteforce_ops, &det_exfil_ops,
};

const char *mm_detector_name(unsigned d)
{
	return d < MM_DET_COUNT ? detector_names[d] : NULL;
}

int mm_detector_parse(const char *text, enum mm_detector *out)
{
	for (unsigned d = 0; d < MM_DET_COUNT; d++)
		if (strcmp(text, detector_names[d]) == 0) {
			*out = (enum mm_detector)d;
			return 0;
		}
	return mm_fail(MM_EINVAL, "detect: unknown detector '%s' (intel, scan, beacon, ddos, bruteforce, exfil)",
		       text);
}

const char *mm_severity_name(unsigned s)
{
	return s <= MM_SEV_CRITICAL ? severity_names[s] : NULL;
}

int mm_severity_parse(const char *text, enum mm_severity *out)
{
	for (unsigned s = 0; s <= MM_SEV_CRITICAL; s++)
		if (strcmp(text, severity_names[s]) == 0) {
			*out = (enum mm_severity)s;
			return 0;
		}
	return mm_fail(MM_EINVAL, "detect: unknown severity '%s' (low, medium, high, critical)", text);
}

uint64_t det_hash(const struct mm_detect *d, const void *p, size_t len)
{
	return mm_siphash13(&d->key, p, len);
}

static bool is_domestic(const struct mm_detect *d, const struct mm_addr *a)
{
	if (d->cfg.is_domestic)
		return d->cfg.is_domestic(d->cfg.domestic_ctx, a);
	for (size_t i = 0; i < d->cfg.n_domestic; i++)
		if (mm_prefix_contains(&d->cfg.domestic[i], a))
			return true;
	return false;
}

/* Hashes and sides of f, once for every detector (struct det_flow_info). */
static void flow_info(const struct mm_detect *d, const struct mm_flow *f, struct det_flow_info *fi)
{
	*fi = (struct det_flow_info){ .h_src = det_hash(d, &f->src, sizeof(f->src)),
				      .h_dst = det_hash(d, &f->dst, sizeof(f->dst)) };
	/* Only beacon and exfil ask; the prefix walk is skipped when neither runs. */
	if (d->cfg.enabled & ((1u << MM_DET_BEACON) | (1u << MM_DET_EXFIL))) {
		fi->src_dom = (f->flags & MM_FLOW_SRC_DOMESTIC) || is_domestic(d, &f->src);
		fi->dst_dom = (f->flags & MM_FLOW_DST_DOMESTIC) || is_domestic(d, &f->dst);
	}
}

#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

bool det_flow_replied(const struct mm_flow *f)
{
	if (f->rev_packets == 0)
		return false;
	/* TCP with flags: the responder answered the SYN (SYN-ACK), not only a reset. */
	if (f->proto == 6 && f->rev_tcp_flags)
		return (f->rev_tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK) ||
		       ((f->rev_tcp_flags & TCP_ACK) && !(f->rev_tcp_flags & TCP_RST) && !(f->fwd_tcp_flags & TCP_SYN));
	return true;
}

/* --- alerts ----------------------------------------------------------------- */

void det_alert_init(struct mm_detect *d, struct mm_alert *a, enum mm_detector det, const char *kind)
{
	memset(a, 0, sizeof(*a));
	a->detector = det;
	snprintf(a->kind, sizeof(a->kind), "%s", kind);
	a->emitted_ns = d->now;
}

void det_alert_host(struct mm_prefix *p, const struct mm_addr *a)
{
	p->addr = *a;
	p->len = mm_addr_is_v4(a) ? 32 : 128;
}

void det_alert_attck(struct mm_alert *a, const char *technique)
{
	if (a->n_attck < MM_ALERT_MAX_ATTCK)
		snprintf(a->attck[a->n_attck++], sizeof(a->attck[0]), "%s", technique);
}

void det_example_keep(struct mm_alert_example *ex, unsigned *n, const struct mm_flow *f)
{
	if (*n >= MM_ALERT_MAX_EXAMPLES)
		return;
	ex[*n] = (struct mm_alert_example){ .src = f->src, .dst = f->dst, .src_port = f->src_port,
					    .dst_port = f->dst_port, .proto = f->proto, .first_ns = f->first_ns };
	(*n)++;
}

void det_alert_example(struct mm_alert *a, const struct mm_flow *f)
{
	det_example_keep(a->examples, &a->n_examples, f);
}

void det_alert_examples(struct mm_alert *a, const struct mm_alert_example *ex, unsigned n)
{
	a->n_examples = n < MM_ALERT_MAX_EXAMPLES ? n : MM_ALERT_MAX_EXAMPLES;
	memcpy(a->examples, ex, a->n_examples * sizeof(*ex));
}

void det_explain(struct mm_alert *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->explanation, sizeof(a->explanation), fmt, ap);
	va_end(ap);
}

void det_emit(struct mm_detect *d, struct mm_alert *a)
{
	d->stats.alerts[a->detector]++;
	if (d->on_alert)
		d->on_alert(d->alert_ctx, a);
}

char *det_duration_text(uint64_t ns, char buf[32])
{
	uint64_t s = ns / MM_NS_PER_SEC;

	if (s >= 86400 && s % 3600 == 0 && s % 86400 == 0)
		snprintf(buf, 32, "%" PRIu64 "d", s / 86400);
	else if (s >= 3600)
		snprintf(buf, 32, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
	else if (s >= 60)
		snprintf(buf, 32, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
	else if (s >= 1 || ns == 0)
		snprintf(buf, 32, "%" PRIu64 "s", s);
	else
		snprintf(buf, 32, "%" PRIu64 "ms", ns / 1000000);
	return buf;
}

/* --- ordering ----------------------------------------------------------------- */

/* Export time first; then fields, so equal times never depend on arrival order. */
static int flow_cmp(const struct mm_flow *a, const struct mm_flow *b)
{
	int c;

	if (a->last_ns != b->last_ns)
		return a->last_ns < b->last_ns ? -1 : 1;
	if (a->first_ns != b->first_ns)
		return a->first_ns < b->first_ns ? -1 : 1;
	if ((c = mm_addr_cmp(&a->src, &b->src)) != 0 || (c = mm_addr_cmp(&a->dst, &b->dst)) != 0)
		return c;
	if (a->src_port != b->src_port)
		return a->src_port < b->src_port ? -1 : 1;
	if (a->dst_port != b->dst_port)
		return a->dst_port < b->dst_port ? -1 : 1;
	if (a->proto != b->proto)
		return a->proto < b->proto ? -1 : 1;
	if (a->fwd_bytes != b->fwd_bytes)
		return a->fwd_bytes < b->fwd_bytes ? -1 : 1;
	if (a->rev_bytes != b->rev_bytes)
		return a->rev_bytes < b->rev_bytes ? -1 : 1;
	if (a->fwd_packets != b->fwd_packets)
		return a->fwd_packets < b->fwd_packets ? -1 : 1;
	return (a->rev_packets > b->rev_packets) - (a->rev_packets < b->rev_packets);
}

static void heap_push(struct det_heap *h, const struct mm_flow *f)
{
	size_t i = h->n++;

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (flow_cmp(&h->v[parent], f) <= 0)
			break;
		h->v[i] = h->v[parent];
		i = parent;
	}
	h->v[i] = *f;
}

static void heap_pop(struct det_heap *h, struct mm_flow *out)
{
	struct mm_flow last;
	size_t i = 0;

	*out = h->v[0];
	last = h->v[--h->n];
	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && flow_cmp(&h->v[c + 1], &h->v[c]) < 0)
			c++;
		if (flow_cmp(&last, &h->v[c]) <= 0)
			break;
		h->v[i] = h->v[c];
		i = c;
	}
	if (h->n)
		h->v[i] = last;
}

static size_t buffered(const struct mm_detect *d)
{
	return d->ring_n + d->heap.n;
}

static const struct mm_flow *ring_at(const struct mm_detect *d, size_t k)
{
	return &d->ring[(d->ring_head + k) % d->cfg.max_buffered];
}

/* The smallest buffered flow (ring head or heap top). */
static const struct mm_flow *peek_min(const struct mm_detect *d)
{
	const struct mm_flow *r = d->ring_n ? ring_at(d, 0) : NULL;
	const struct mm_flow *h = d->heap.n ? &d->heap.v[0] : NULL;

	if (r && h)
		return flow_cmp(r, h) <= 0 ? r : h;
	return r ? r : h;
}

/*
 * Takes the smallest buffered flow out. A ring flow is returned in place
 * (no copy: its slot is not reused before the next push); a heap flow is
 * copied to tmp.
 */
static const struct mm_flow *pop_min(struct mm_detect *d, struct mm_flow *tmp)
{
	const struct mm_flow *r = d->ring_n ? ring_at(d, 0) : NULL;

	if (r && (!d->heap.n || flow_cmp(r, &d->heap.v[0]) <= 0)) {
		d->ring_head = (d->ring_head + 1) % d->cfg.max_buffered;
		d->ring_n--;
		return r;
	}
	heap_pop(&d->heap, tmp);
	return tmp;
}

static void run_ticks(struct mm_detect *d)
{
	if (d->now < d->next_tick)
		return;
	d->sweep_budget = 16 + 2 * (size_t)(d->stats.flows_processed - d->flows_at_tick);
	d->flows_at_tick = d->stats.flows_processed;
	for (unsigned k = 0; k < MM_DET_COUNT; k++)
		if ((d->cfg.enabled & (1u << k)) && all_ops[k]->tick)
			all_ops[k]->tick(d, d->now);
	d->next_tick = d->now - d->now % MM_NS_PER_SEC + MM_NS_PER_SEC;
}

static void process(struct mm_detect *d, const struct mm_flow *f, const struct det_flow_info *fi)
{
	if (d->any_done && flow_cmp(f, &d->last_done) < 0)
		d->stats.flows_late++;
	else
		d->last_done = *f;
	d->any_done = true;
	if (f->last_ns > d->now) {
		d->now = f->last_ns;
		run_ticks(d);
	}
	d->cur = *fi;
	for (unsigned k = 0; k < MM_DET_COUNT; k++)
		if (d->cfg.enabled & (1u << k))
			all_ops[k]->flow(d, f);
	d->stats.flows_processed++;
}

/*
 * Software pipelining: flows leave the reorder buffer one by one, exactly
 * as they would be processed one at a time, but wait in d->pending until
 * DET_BATCH of them (or the end of the feed call) have come out. Then the
 * hashes of every pending flow are computed and the detectors' table
 * slots for them prefetched, and only then do the flows go through the
 * detectors, in order. A flow's processing never changes what the buffer
 * releases, so the flows, their order and the stream clock are those of
 * one-at-a-time processing; only the memory loads overlap. Prefetching is
 * a hint: state that changed in between (an eviction, a shifted slot)
 * costs a miss, never a different result.
 */
static void process_pending(struct mm_detect *d)
{
	struct det_flow_info fi[DET_BATCH];
	struct mm_intel_hit src_hits[DET_BATCH], dst_hits[DET_BATCH];
	size_t n = d->n_pending;

	/*
	 * The intel detector's lookups for the whole batch at once (their table
	 * reads overlap), ignoring expiry: an address no prefix covers needs no
	 * lookup at its flow's time; one covered is looked up then, with expiry,
	 * from a warm cache.
	 */
	if (d->snap)
		mm_intel_match_flows(d->snap, d->pending, n, 0, src_hits, dst_hits);
	for (size_t i = 0; i < n; i++) {
		flow_info(d, &d->pending[i], &fi[i]);
		fi[i].intel_src = d->snap && src_hits[i].n;
		fi[i].intel_dst = d->snap && dst_hits[i].n;
		for (unsigned k = 0; k < MM_DET_COUNT; k++)
			if ((d->cfg.enabled & (1u << k)) && all_ops[k]->prefetch)
				all_ops[k]->prefetch(d, &d->pending[i], &fi[i]);
	}
	for (size_t i = 0; i < n; i++)
		process(d, &d->pending[i], &fi[i]);
	d->n_pending = 0;
}

/* Takes out the buffered flows that are ready (all of them at end of input). */
static void release(struct mm_detect *d, bool all)
{
	while (buffered(d)) {
		const struct mm_flow *m = peek_min(d);

		if (!all) {
			bool due = m->last_ns + d->cfg.reorder_ns <= d->max_last_seen;

			if (buffered(d) < d->cfg.max_buffered && !due)
				break;
			if (!due)
				d->stats.reorder_overflow++;
		}
		/* Copied: the ring slot is free for the next push once popped. */
		struct mm_flow *slot = &d->pending[d->n_pending];
		const struct mm_flow *f = pop_min(d, slot);

		if (f != slot)
			*slot = *f;
		if (++d->n_pending == DET_BATCH)
			process_pending(d);
	}
}

static void take_snapshot(struct mm_detect *d)
{
	if (d->cfg.intel && (d->cfg.enabled & (1u << MM_DET_INTEL)))
		d->snap = mm_intel_get(d->cfg.intel);
}

static void put_snapshot(struct mm_detect *d)
{
	mm_intel_snap_put(d->snap);
	d->snap = NULL;
}

int mm_detect_feed(struct mm_detect *d, const struct mm_flow *flows, size_t n)
{
	take_snapshot(d);
	for (size_t i = 0; i < n; i++) {
		const struct mm_flow *f = &flows[i];

		d->stats.flows_in++;
		if (f->last_ns > d->max_last_seen)
			d->max_last_seen = f->last_ns;
		/* In-order arrivals (the common case) go to the FIFO and never touch the heap. */
		if (d->ring_n == 0 || flow_cmp(ring_at(d, d->ring_n - 1), f) <= 0) {
			d->ring[(d->ring_head + d->ring_n) % d->cfg.max_buffered] = *f;
			d->ring_n++;
		} else {
			heap_push(&d->heap, f);
		}
		release(d, false);
	}
	process_pending(d);
	put_snapshot(d);
	return 0;
}

int mm_detect_flush(struct mm_detect *d)
{
	take_snapshot(d);
	release(d, true);
	process_pending(d);
	for (unsigned k = 0; k < MM_DET_COUNT; k++)
		if ((d->cfg.enabled & (1u << k)) && all_ops[k]->flush)
			all_ops[k]->flush(d);
	put_snapshot(d);
	return 0;
}

void mm_detect_stats(const struct mm_detect *d, struct mm_detect_stats *out)
{
	*out = d->stats;
}

int mm_detect_new(struct mm_detect **out, const struct mm_detect_config *cfg, mm_alert_fn on_alert,
		  void *ctx)
{
	struct mm_detect *d;
	int rc;

	*out = NULL;
	if (cfg->max_buffered == 0 || cfg->memory_cap < ((size_t)1 << 20))
		return mm_fail(MM_EINVAL, "detect: max_buffered must be > 0 and memory at least 1 MiB");
	if (!(cfg->scan.trw_theta1 < cfg->scan.trw_theta0) || cfg->scan.trw_theta0 >= 1 ||
	    cfg->scan.trw_theta1 <= 0 || !(cfg->scan.trw_alpha < cfg->scan.trw_beta))
		return mm_fail(MM_EINVAL, "detect: TRW needs 0 < theta1 < theta0 < 1 and alpha < beta");
	if (cfg->ddos.top_k < 16 || cfg->beacon.min_conns < 4)
		return mm_fail(MM_EINVAL, "detect: ddos.top_k must be >= 16 and beacon.min_conns >= 4");
	if (cfg->threads < 1 || cfg->threads > 2)
		return mm_fail(MM_EINVAL, "detect: threads must be 1 or 2");
	d = calloc(1, sizeof(*d));
	if (!d)
		return mm_fail(MM_ENOMEM, "detect: engine");
	d->cfg = *cfg;
	d->on_alert = on_alert;
	d->alert_ctx = ctx;
	if (cfg->hash_key_set)
		d->key = cfg->hash_key;
	else if ((rc = mm_hash_key_random(&d->key)) < 0)
		goto fail;
	d->ring = malloc(cfg->max_buffered * sizeof(*d->ring));
	d->heap.v = malloc(cfg->max_buffered * sizeof(*d->heap.v));
	if (!d->ring || !d->heap.v) {
		rc = mm_fail(MM_ENOMEM, "detect: reorder buffer of %zu flows", cfg->max_buffered);
		goto fail;
	}
	for (unsigned k = 0; k < MM_DET_COUNT; k++) {
		if (!(cfg->enabled & (1u << k)))
			continue;
		rc = all_ops[k]->init(d, cfg->memory_cap / 100 * all_ops[k]->mem_share);
		if (rc < 0)
			goto fail;
	}
	*out = d;
	return 0;
fail:
	mm_detect_free(d);
	return rc;
}

void mm_detect_free(struct mm_detect *d)
{
	if (!d)
		return;
	for (unsigned k = 0; k < MM_DET_COUNT; k++)
		if (d->state[k])
			all_ops[k]->release(d);
	put_snapshot(d);
	free(d->ring);
	free(d->heap.v);
	free(d);
}
