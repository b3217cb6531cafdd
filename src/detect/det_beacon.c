/*
 * Beacon detection, per (source, destination, port, protocol), scored the
 * way RITA scores beacons: connection starts and sizes over hours, their
 * Bowley skewness (regular intervals are symmetric around the median) and
 * median absolute deviation (regular intervals barely spread), and how
 * many of the hours spanned saw a connection. A count-min sketch counts
 * connections of every pair; only pairs seen twice get a history (the
 * first connection waits in a direct-mapped slot), so one-off connections
 * (most of the Internet) cost no table entry.
 * Periodic is not enough: an implant calls out from inside to a
 * destination few others use, and to few destinations, so pairs to popular
 * destinations (update and telemetry services) and sources periodic to
 * many destinations (monitoring) are not raised.
 */
#include "detect/detect_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Connections kept per pair (the most recent). */
#define BEACON_HIST 128

struct beacon_key {
	struct mm_addr src, dst;
	uint16_t port;
	uint8_t proto, pad;
};

struct beacon_entry {
	struct det_hdr h;
	struct beacon_key k;
	uint64_t base_ns;  /* times below are seconds since this */
	uint64_t first_ns, last_ns, last_scored;
	uint64_t total;    /* connections since the history began */
	bool alerted, counted; /* counted: in its source's fan-out */
	uint32_t n, head;
	uint32_t t[BEACON_HIST];    /* connection start, s since base_ns */
	uint32_t size[BEACON_HIST]; /* bytes both ways, saturated */
};

/* A pair's first connection, until a second one promotes the pair. */
struct beacon_recent {
	uint32_t fp; /* high half of the pair's hash: tells a collision */
	uint64_t first_ns, bytes;
};

struct beacon_count {
	struct det_hdr h;
	struct beacon_key k;
	uint32_t n;
};

struct beacon_state {
	struct det_table t;
	struct beacon_recent *recent;
	size_t recent_mask;
	struct det_cms seen;      /* connections per pair (promotion) */
	struct det_table popular; /* distinct returning sources per (dst, port, proto) */
	struct det_table fanout;  /* regular destinations per source */
	uint64_t seen_epoch;
	uint8_t ignored[65536 / 8];
	double scratch[BEACON_HIST];
	double scratch2[BEACON_HIST];
};

/*
 * At the cap, pairs with the shortest history go first, the stalest among
 * equals: a slow beacon touched once an hour must outlive the crowd of
 * pairs seen twice.
 */
static uint64_t evict_rank(const void *entry)
{
	const struct beacon_entry *e = entry;
	uint64_t n = e->n < 255 ? e->n : 255;

	return n << 56 | (e->h.last_ns >> 8);
}

static int beacon_init(struct mm_detect *d, size_t mem)
{
	struct beacon_state *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return mm_fail(MM_ENOMEM, "detect: beacon state");
	d->state[MM_DET_BEACON] = s;
	for (size_t i = 0; i < d->cfg.beacon.ignore_ports.n; i++) {
		uint16_t p = d->cfg.beacon.ignore_ports.port[i];

		s->ignored[p / 8] |= (uint8_t)(1u << (p % 8));
	}
	s->recent_mask = 1023;
	while ((s->recent_mask + 1) * 2 * sizeof(*s->recent) <= mem / 8)
		s->recent_mask = s->recent_mask * 2 + 1;
	s->recent = mm_bigmem_alloc((s->recent_mask + 1) * sizeof(*s->recent));
	if (!s->recent)
		return mm_fail(MM_ENOMEM, "detect: beacon first-connection slots");
	d->stats.memory_used += (s->recent_mask + 1) * sizeof(*s->recent);
	/* Exact counts in capped tables: a sketch this loaded would overcount rare services. */
	if ((rc = det_cms_init(&s->seen, mem / 8, 4)) < 0 ||
	    (rc = det_table_init(&s->popular, sizeof(struct beacon_count), sizeof(struct beacon_key), mem / 16, d,
				 MM_DET_BEACON)) < 0 ||
	    (rc = det_table_init(&s->fanout, sizeof(struct beacon_count), sizeof(struct beacon_key), mem / 64, d,
				 MM_DET_BEACON)) < 0)
		return rc;
	d->stats.memory_used += (s->seen.width_mask + 1) * 4 * sizeof(uint32_t);
	rc = det_table_init(&s->t, sizeof(struct beacon_entry), sizeof(struct beacon_key), mem - mem / 3 - mem / 8, d,
			   MM_DET_BEACON);
	s->t.rank = evict_rank;
	return rc;
}

/* The (dst, port, proto) part of a pair key: popularity is counted per service. */
static struct beacon_key service_key(const struct beacon_key *k)
{
	struct beacon_key svc = *k;

	memset(&svc.src, 0, sizeof(svc.src));
	return svc;
}

/* The source part: fan-out is counted per source. */
static struct beacon_key source_key(const struct beacon_key *k)
{
	struct beacon_key src;

	memset(&src, 0, sizeof(src));
	src.src = k->src;
	return src;
}

static uint32_t count_get(struct det_table *t, struct beacon_key k)
{
	struct beacon_count *c = det_table_find(t, &k);

	return c ? c->n : 0;
}

static void count_add(struct det_table *t, struct beacon_key k, uint64_t now)
{
	bool created;
	struct beacon_count *c = det_table_get(t, &k, now, &created);

	c->n++;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Quantile q of sorted v[0..n) by linear interpolation between ranks. */
static double quantile(const double *v, size_t n, double q)
{
	double pos = q * (double)(n - 1);
	size_t i = (size_t)pos;

	if (i + 1 >= n)
		return v[n - 1];
	return v[i] + (pos - (double)i) * (v[i + 1] - v[i]);
}

/* Bowley skewness (Q1 + Q3 - 2 Q2) / (Q3 - Q1) of sorted v, 0 when the quartiles coincide. */
static double bowley(const double *v, size_t n)
{
	double q1 = quantile(v, n, 0.25), q2 = quantile(v, n, 0.5), q3 = quantile(v, n, 0.75);

	if (q3 - q1 <= 0 || q2 == q1 || q2 == q3)
		return 0;
	return (q1 + q3 - 2 * q2) / (q3 - q1);
}

/* Median absolute deviation of sorted v about its median (uses tmp). */
static double mad(const double *v, size_t n, double *tmp)
{
	double med = quantile(v, n, 0.5);

	for (size_t i = 0; i < n; i++)
		tmp[i] = fabs(v[i] - med);
	qsort(tmp, n, sizeof(*tmp), cmp_double);
	return quantile(tmp, n, 0.5);
}

/*
 * How much the skew counts: fully once the spread reaches 10% of the
 * median, less below — the skew of a jitter of a few percent is noise
 * (and a handful of hourly calls has a wild sample skew).
 */
static double skew_weight(double spread, double median)
{
	return median > 0 ? fmin(1.0, spread / (0.1 * median)) : 1.0;
}

struct beacon_score {
	double score, ts_skew, ts_mad, ds_skew, ds_mad, coverage;
	double interval, interval_mad, size, size_mad;
	unsigned hours, hours_seen;
};

/* Scores the history; false when it is not scorable (too few, too short, too fast, too slow). */
static bool score(struct mm_detect *d, struct beacon_state *s, const struct beacon_entry *e,
		  struct beacon_score *out)
{
	const struct mm_detect_config *c = &d->cfg;
	double *v = s->scratch, *tmp = s->scratch2;
	size_t n = e->n;
	uint64_t first_h, last_h, prev_h = UINT64_MAX;
	double ts, ds, expected;

	if (n < c->beacon.min_conns)
		return false;
	for (size_t i = 0; i < n; i++)
		v[i] = e->t[i];
	qsort(v, n, sizeof(*v), cmp_double);
	/* The pair's whole span: the history keeps only the latest connections. */
	if (e->last_ns - e->first_ns < c->beacon.min_span_ns)
		return false;
	/* Hours touched, from the sorted starts. */
	first_h = (e->base_ns / MM_NS_PER_SEC + (uint64_t)v[0]) / 3600;
	last_h = (e->base_ns / MM_NS_PER_SEC + (uint64_t)v[n - 1]) / 3600;
	out->hours = (unsigned)(last_h - first_h + 1);
	out->hours_seen = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t h = (e->base_ns / MM_NS_PER_SEC + (uint64_t)v[i]) / 3600;

		out->hours_seen += h != prev_h;
		prev_h = h;
	}
	for (size_t i = 0; i + 1 < n; i++)
		v[i] = v[i + 1] - v[i];
	n--;
	qsort(v, n, sizeof(*v), cmp_double);
	out->interval = quantile(v, n, 0.5);
	if (out->interval * 1e9 < (double)c->beacon.min_interval_ns ||
	    out->interval * 1e9 > (double)c->beacon.max_interval_ns)
		return false;
	out->interval_mad = mad(v, n, tmp);
	/* Random (Poisson) arrivals spread with MAD/median = 0.69; a beacon jittered ±J uniformly, J/2. */
	if (out->interval_mad > c->beacon.max_dispersion * out->interval)
		return false;
	out->ts_skew = 1 - fabs(bowley(v, n)) * skew_weight(out->interval_mad, out->interval);
	out->ts_mad = fmax(0, 1 - out->interval_mad / out->interval);

	n = e->n;
	for (size_t i = 0; i < n; i++)
		v[i] = e->size[i];
	qsort(v, n, sizeof(*v), cmp_double);
	out->size = quantile(v, n, 0.5);
	if (out->size > (double)c->beacon.max_size)
		return false; /* check-ins are small; this is a transfer */
	out->size_mad = mad(v, n, tmp);
	out->ds_skew = 1 - fabs(bowley(v, n)) * skew_weight(out->size_mad, out->size);
	out->ds_mad = out->size > 0 ? fmax(0, 1 - out->size_mad / out->size) : 1;

	/* A beacon slower than hourly cannot touch every hour; expect what its interval allows. */
	expected = out->hours * fmin(1.0, 3600.0 / out->interval);
	out->coverage = fmin(1.0, out->hours_seen / fmax(1.0, expected));
	ts = (out->ts_skew + out->ts_mad) / 2;
	ds = (out->ds_skew + out->ds_mad) / 2;
	out->score = 0.45 * ts + 0.35 * ds + 0.20 * out->coverage;
	return true;
}

static void beacon_raise(struct mm_detect *d, const struct beacon_entry *e, const struct beacon_score *sc)
{
	struct mm_alert a;
	char src[MM_ADDR_STRLEN], dst[MM_ADDR_STRLEN], span[32], every[32], jit[32], p[8];
	uint16_t port = e->k.port;

	det_alert_init(d, &a, MM_DET_BEACON, "periodic");
	det_alert_host(&a.src, &e->k.src);
	det_alert_host(&a.dst, &e->k.dst);
	a.proto = e->k.proto;
	a.port = port;
	a.first_ns = e->first_ns;
	a.last_ns = e->last_ns;
	a.ev.flows = e->total;
	a.ev.hosts = 1;
	a.ev.ports = 1;
	a.ev.score = sc->score;
	a.ev.rate = sc->interval;
	a.confidence = sc->score;
	a.severity = sc->score >= 0.95 ? MM_SEV_HIGH : MM_SEV_MEDIUM;
	det_alert_attck(&a, "T1071");
	if (port == 443 || port == 8443 || port == 993 || port == 995 || port == 465 || port == 22)
		det_alert_attck(&a, "T1573");
	mm_addr_format(&e->k.src, src);
	mm_addr_format(&e->k.dst, dst);
	det_explain(&a, "%s connected to %s on %s/%u %" PRIu64 " times over %s, every %s ±%s, ~%.0f bytes each "
		 "(beacon score %.2f; interval skew %.2f, size skew %.2f; %u of %u hours)",
		 src, dst, mm_proto_name(e->k.proto, p), port, e->total,
		 det_duration_text(e->last_ns - e->first_ns, span),
		 det_duration_text((uint64_t)(sc->interval * 1e9), every),
		 det_duration_text((uint64_t)(sc->interval_mad * 1e9), jit), sc->size, sc->score,
		 1 - sc->ts_skew, 1 - sc->ds_skew, sc->hours_seen, sc->hours);
	det_emit(d, &a);
}

/*
 * The score a pair must reach: a handful of connections looks regular by
 * chance far more often than dozens do, so few need a higher score.
 */
static double threshold_for(const struct mm_detect_config *c, uint32_t n)
{
	if (n < c->beacon.few_conns && c->beacon.few_threshold > c->beacon.threshold)
		return c->beacon.few_threshold;
	return c->beacon.threshold;
}

/*
 * Scores a pair. The first time it is regular enough to score at all it
 * is only counted for its source, and judged at a later look: by then a
 * server's or a monitor's other regular destinations have been counted
 * too, and a source regular towards many destinations is not raised.
 */
static void consider(struct mm_detect *d, struct beacon_entry *e, bool may_raise)
{
	struct beacon_state *s = d->state[MM_DET_BEACON];
	const struct mm_detect_config *c = &d->cfg;
	struct beacon_score sc;

	e->last_scored = d->now;
	if (count_get(&s->popular, service_key(&e->k)) > c->beacon.max_dst_sources)
		return;
	if (!score(d, s, e, &sc))
		return;
	if (!e->counted) {
		e->counted = true;
		count_add(&s->fanout, source_key(&e->k), d->now);
		return;
	}
	if (!may_raise || sc.score < threshold_for(c, e->n) ||
	    count_get(&s->fanout, source_key(&e->k)) > c->beacon.max_fanout)
		return;
	e->alerted = true;
	beacon_raise(d, e, &sc);
}

/* Appends one connection (start, bytes both ways) to a pair's history. */
static void history_add(struct beacon_entry *e, uint64_t first_ns, uint64_t bytes, uint64_t now)
{
	uint64_t rel;
	uint32_t slot;

	if (e->total == 0) {
		/* An hour of slack below the first start: longer flows may come later with earlier starts. */
		e->base_ns = first_ns > 3600 * MM_NS_PER_SEC ? first_ns - 3600 * MM_NS_PER_SEC : 0;
		e->first_ns = first_ns;
		e->last_scored = now;
	}
	if (first_ns < e->base_ns)
		return; /* older than the history's origin: out of order by more than it can hold */
	rel = (first_ns - e->base_ns) / MM_NS_PER_SEC;
	if (rel > UINT32_MAX)
		return;
	if (first_ns < e->first_ns)
		e->first_ns = first_ns;
	if (e->n < BEACON_HIST) {
		slot = e->n++;
	} else {
		slot = e->head; /* full: the oldest start makes room */
		e->head = (e->head + 1) % BEACON_HIST;
	}
	e->t[slot] = (uint32_t)rel;
	e->size[slot] = bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes;
	e->total++;
}

/* The pair f belongs to, or false when f is not a beacon candidate. */
static bool beacon_key_of(const struct mm_detect *d, const struct beacon_state *s, const struct mm_flow *f,
			  const struct det_flow_info *fi, struct beacon_key *k)
{
	const struct mm_detect_config *c = &d->cfg;

	if (f->proto != 6 && f->proto != 17)
		return false;
	if (s->ignored[f->dst_port / 8] & (1u << (f->dst_port % 8)))
		return false;
	/* Implants call out: from inside to outside, when the inside is known. */
	if ((c->n_domestic || c->is_domestic || (f->flags & (MM_FLOW_SRC_DOMESTIC | MM_FLOW_DST_DOMESTIC))) &&
	    (!fi->src_dom || fi->dst_dom))
		return false;
	memset(k, 0, sizeof(*k));
	k->src = f->src;
	k->dst = f->dst;
	k->port = f->dst_port;
	k->proto = f->proto;
	return true;
}

static void beacon_prefetch(struct mm_detect *d, const struct mm_flow *f, struct det_flow_info *fi)
{
	struct beacon_state *s = d->state[MM_DET_BEACON];
	struct beacon_key k;
	uint64_t h;

	if (!beacon_key_of(d, s, f, fi, &k))
		return;
	h = fi->h_key[MM_DET_BEACON] = det_table_hash(&s->t, &k);
	det_table_prefetch(&s->t, h);
	__builtin_prefetch(&s->recent[h & s->recent_mask], 1);
	det_cms_prefetch(&s->seen, h);
}

static void beacon_flow(struct mm_detect *d, const struct mm_flow *f)
{
	struct beacon_state *s = d->state[MM_DET_BEACON];
	const struct mm_detect_config *c = &d->cfg;
	struct beacon_key k;
	struct beacon_entry *e;
	bool created;
	uint64_t h = d->cur.h_key[MM_DET_BEACON];

	if (!beacon_key_of(d, s, f, &d->cur, &k))
		return;
	e = det_table_find_h(&s->t, &k, h);
	if (!e) {
		struct beacon_recent *r = &s->recent[h & s->recent_mask];
		uint32_t seen = det_cms_add(&s->seen, h, 1);

		if (seen < 2) {
			/* A first connection: remembered here, so a second one starts a full history. */
			r->fp = (uint32_t)(h >> 32);
			r->first_ns = f->first_ns;
			r->bytes = mm_flow_bytes(f);
			return;
		}
		e = det_table_get_h(&s->t, &k, h, d->now, &created);
		/* Popularity counts sources that came back: fewer increments, fewer sketch collisions. */
		if (seen == 2)
			count_add(&s->popular, service_key(&k), d->now);
		if (r->fp == (uint32_t)(h >> 32) && r->first_ns <= f->first_ns)
			history_add(e, r->first_ns, r->bytes, d->now);
	}
	e->h.last_ns = d->now;
	history_add(e, f->first_ns, mm_flow_bytes(f), d->now);
	e->last_ns = f->last_ns > e->last_ns ? f->last_ns : e->last_ns;
	if (!e->alerted && e->n >= c->beacon.min_conns && d->now - e->last_scored >= c->beacon.score_every_ns)
		consider(d, e, true);
}

static void beacon_tick(struct mm_detect *d, uint64_t now)
{
	struct beacon_state *s = d->state[MM_DET_BEACON];

	/* Two windows' worth of silence ends a history; the sketch forgets once a window. */
	det_table_sweep(&s->t, now, 2 * d->cfg.beacon.max_interval_ns, d->sweep_budget);
	if (now / d->cfg.beacon.window_ns != s->seen_epoch) {
		s->seen_epoch = now / d->cfg.beacon.window_ns;
		det_cms_clear(&s->seen);
	}
	det_table_sweep(&s->popular, now, d->cfg.beacon.window_ns, d->sweep_budget);
	det_table_sweep(&s->fanout, now, d->cfg.beacon.window_ns, d->sweep_budget);
}

static void mark_one(void *ctx, void *entry)
{
	struct beacon_entry *e = entry;

	if (!e->alerted && !e->counted)
		consider(ctx, e, false);
}

static void raise_one(void *ctx, void *entry)
{
	struct beacon_entry *e = entry;

	if (!e->alerted && e->counted)
		consider(ctx, e, true);
}

/* End of input: count every pair that scores, then raise what the fan-out allows. */
static void beacon_flush(struct mm_detect *d)
{
	struct beacon_state *s = d->state[MM_DET_BEACON];

	det_table_each(&s->t, mark_one, d);
	det_table_each(&s->t, raise_one, d);
}

static void beacon_release(struct mm_detect *d)
{
	struct beacon_state *s = d->state[MM_DET_BEACON];

	det_table_release(&s->t);
	mm_bigmem_free(s->recent, (s->recent_mask + 1) * sizeof(*s->recent));
	det_cms_release(&s->seen);
	det_table_release(&s->popular);
	det_table_release(&s->fanout);
	free(s);
	d->state[MM_DET_BEACON] = NULL;
}

const struct det_ops det_beacon_ops = {
	.name = "beacon",
	.mem_share = 30,
	.init = beacon_init,
	.prefetch = beacon_prefetch,
	.flow = beacon_flow,
	.tick = beacon_tick,
	.flush = beacon_flush,
	.release = beacon_release,
};
