/*
 * The scenario engine: runs a plan's sources one minute of scenario time at
 * a time, sorts that minute's flows by start, hands them to the sink and
 * keeps each truth entry's first/last time and counts from the flows it
 * actually produced; then writes the truth JSON and the indicator list.
 * Memory is one slice of flows, whatever the scenario's length.
 */
#include "synth/scenario_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLICE_NS (60 * SC_NS)
#define MIN_DURATION_NS (3600 * SC_NS)
#define MAX_DURATION_NS (7 * 86400 * SC_NS)
#define MIN_SCALE 0.01
#define MAX_SCALE 100.0
#define MAX_ENTRIES 1024
#define MAX_SOURCES 65536
#define MAX_DOMESTIC 16
#define MAX_INDICATORS 4096
/* A slice holding more flows than this is a plan bug (or an absurd --scale): refuse, do not swap. */
#define MAX_SLICE_FLOWS (64u << 20)
#define DELIVER_BATCH 4096

/* --- random streams ------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
	z ^= z >> 33;
	z *= 0xff51afd7ed558ccdull;
	z ^= z >> 33;
	z *= 0xc4ceb9fe1a85ec53ull;
	return z ^ (z >> 33);
}

void srng_init(struct srng *r, uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
	r->key = mix64(mix64(mix64(mix64(seed) ^ a) + b) ^ c);
	r->ctr = 0;
}

uint64_t srng_next(struct srng *r)
{
	return mix64(r->key + ++r->ctr * 0x9e3779b97f4a7c15ull);
}

double srng_unit(struct srng *r)
{
	return (double)(srng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t srng_below(struct srng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)srng_next(r) * n) >> 64);
}

double srng_uniform(struct srng *r, double lo, double hi)
{
	return lo + (hi - lo) * srng_unit(r);
}

bool srng_chance(struct srng *r, double p)
{
	return srng_unit(r) < p;
}

double srng_exp(struct srng *r, double mean)
{
	return -mean * log1p(-srng_unit(r));
}

/* Box–Muller; one of the pair is thrown away to keep the stream stateless. */
static double srng_normal(struct srng *r)
{
	double u = 1.0 - srng_unit(r), v = srng_unit(r);

	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

double srng_lognormal(struct srng *r, double median, double sigma)
{
	return median * exp(sigma * srng_normal(r));
}

/* Knuth's product method for small means, a rounded normal above (error well under 1%). */
static uint64_t srng_poisson(struct srng *r, double mean)
{
	if (mean <= 0)
		return 0;
	if (mean < 40) {
		double limit = exp(-mean), p = srng_unit(r);
		uint64_t k = 0;

		while (p > limit) {
			k++;
			p *= srng_unit(r);
		}
		return k;
	}
	double v = mean + sqrt(mean) * srng_normal(r) + 0.5;
	return v < 0 ? 0 : (uint64_t)v;
}

/* --- the engine ----------------------------------------------------------- */

struct slot {
	uint64_t first_ns;
	uint32_t index; /* order of creation: ties keep it, so sorting is deterministic */
};

struct sc_gen {
	struct mm_scenario_config cfg;
	uint64_t start_ns, end_ns;
	struct mm_scenario_entry *entries;
	size_t n_entries;
	struct sc_source **sources;
	size_t n_sources;
	struct mm_prefix domestic[MAX_DOMESTIC];
	size_t n_domestic;
	char (*indicators)[MM_PREFIX_STRLEN];
	size_t n_indicators;
	/* the slice being built */
	uint64_t s0, s1;
	struct mm_flow *flows;
	uint32_t *labels;
	struct slot *slots;
	size_t n_flows, cap_flows;
	int status;          /* first failure while building a slice */
	struct mm_flow scratch;
	uint64_t next_id;
};

struct mm_scenario {
	struct sc_gen g; /* sources and the slice buffers are freed once generation ends */
};

void mm_scenario_config_default(struct mm_scenario_config *cfg)
{
	*cfg = (struct mm_scenario_config){
		.name = "standard",
		.seed = 1,
		.start_ns = 1795132800ull * SC_NS, /* 2026-11-20T00:00:00Z */
		.duration_ns = 6 * 3600 * SC_NS,
		.scale = 1.0,
	};
}

static int check_config(const struct mm_scenario_config *cfg)
{
	if (!cfg->name || strcmp(cfg->name, "standard") != 0)
		return mm_fail(MM_EINVAL, "scenario: unknown scenario '%s' (known: standard)",
			       cfg->name ? cfg->name : "(none)");
	if (cfg->duration_ns < MIN_DURATION_NS || cfg->duration_ns > MAX_DURATION_NS)
		return mm_fail(MM_EINVAL, "scenario: duration %.3f h outside 1..168 h",
			       (double)cfg->duration_ns / (3600.0 * SC_NS));
	if (!(cfg->scale >= MIN_SCALE && cfg->scale <= MAX_SCALE))
		return mm_fail(MM_EINVAL, "scenario: scale %g outside %g..%g", cfg->scale, MIN_SCALE,
			       MAX_SCALE);
	if (cfg->start_ns > UINT64_MAX / 2)
		return mm_fail(MM_EINVAL, "scenario: start time %llu ns out of range",
			       (unsigned long long)cfg->start_ns);
	return 0;
}

const struct mm_scenario_config *sc_config(const struct sc_gen *g)
{
	return &g->cfg;
}

uint64_t sc_start(const struct sc_gen *g)
{
	return g->start_ns;
}

uint64_t sc_end(const struct sc_gen *g)
{
	return g->end_ns;
}

struct mm_scenario_entry *sc_entry_add(struct sc_gen *g, enum mm_scenario_role role, const char *id)
{
	struct mm_scenario_entry *e;

	MM_BUG(g->n_entries >= MAX_ENTRIES);
	MM_BUG(g->n_entries > 0 && role == MM_SCENARIO_ATTACK &&
	       g->entries[g->n_entries - 1].role != MM_SCENARIO_ATTACK);
	e = &g->entries[g->n_entries++];
	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->role = role;
	e->dst_port = -1;
	return e;
}

uint32_t sc_entry_label(const struct sc_gen *g, const struct mm_scenario_entry *e)
{
	return (uint32_t)(e - g->entries) + 1;
}

int sc_source_add(struct sc_gen *g, struct sc_source *s)
{
	if (!s)
		return mm_fail(MM_ENOMEM, "scenario: out of memory for a source");
	if (g->n_sources >= MAX_SOURCES) {
		free(s);
		return mm_fail(MM_ELIMIT, "scenario: more than %u sources", MAX_SOURCES);
	}
	s->stream = (uint32_t)g->n_sources + 1;
	if (s->t0 < g->start_ns)
		s->t0 = g->start_ns;
	if (s->t1 == 0 || s->t1 > g->end_ns)
		s->t1 = g->end_ns;
	g->sources[g->n_sources++] = s;
	return 0;
}

int sc_domestic_add(struct sc_gen *g, const char *prefix)
{
	MM_BUG(g->n_domestic >= MAX_DOMESTIC);
	return mm_prefix_parse(&g->domestic[g->n_domestic++], prefix, false);
}

const char *sc_indicator_add(struct sc_gen *g, const char *text)
{
	MM_BUG(g->n_indicators >= MAX_INDICATORS);
	snprintf(g->indicators[g->n_indicators], MM_PREFIX_STRLEN, "%s", text);
	return g->indicators[g->n_indicators++];
}

void sc_rng(const struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t index,
	    struct srng *r)
{
	srng_init(r, g->cfg.seed, s->stream, sub, index);
}

static uint64_t clamp_window(const struct sc_source *s, uint64_t *s0, uint64_t *s1)
{
	if (*s0 < s->t0)
		*s0 = s->t0;
	if (*s1 > s->t1)
		*s1 = s->t1;
	return *s1 > *s0 ? *s1 - *s0 : 0;
}

void sc_periodic(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t offset_ns,
		 double gap_s, double jitter, uint64_t count, uint64_t s0, uint64_t s1,
		 sc_event_fn fn)
{
	/* Times relative to base stay small, so doubles keep them to the nanosecond. */
	uint64_t base = s->t0 + offset_ns;
	double lo, hi, gap_ns = gap_s * (double)SC_NS;
	struct srng r;

	if (count == 0 || clamp_window(s, &s0, &s1) == 0 || s1 <= base)
		return;
	lo = s0 > base ? floor((double)(s0 - base) / gap_ns) - 1 : 0;
	hi = ceil((double)(s1 - base) / gap_ns) + 1;
	if (lo < 0)
		lo = 0;
	if (hi > (double)(count - 1))
		hi = (double)(count - 1);
	for (uint64_t i = (uint64_t)lo; (double)i <= hi; i++) {
		uint64_t t;

		sc_rng(g, s, sub, i, &r);
		t = base + (uint64_t)(((double)i + 0.5 + jitter * (srng_unit(&r) - 0.5)) * gap_ns);
		if (t >= s0 && t < s1)
			fn(g, s, sub, i, t, &r);
	}
}

void sc_poisson(struct sc_gen *g, const struct sc_source *s, uint64_t sub, double rate,
		uint64_t s0, uint64_t s1, sc_event_fn fn)
{
	uint64_t len = clamp_window(s, &s0, &s1), n;
	struct srng r, ev;

	if (len == 0)
		return;
	/* One stream for the count per slice, one per event: counts and events stay independent. */
	sc_rng(g, s, sub, s0 / SLICE_NS, &r);
	n = srng_poisson(&r, rate * (double)len / SC_NS);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t = s0 + srng_below(&r, len);

		srng_init(&ev, srng_next(&r), s->stream, sub, i);
		fn(g, s, sub, i, t, &ev);
	}
}

static int grow_slice(struct sc_gen *g)
{
	size_t cap = g->cap_flows ? g->cap_flows * 2 : 65536;
	struct mm_flow *f;
	uint32_t *l;
	struct slot *sl;

	if (cap > MAX_SLICE_FLOWS)
		return mm_fail(MM_ELIMIT, "scenario: more than %u flows in one minute of scenario time",
			       MAX_SLICE_FLOWS);
	f = realloc(g->flows, cap * sizeof(*f));
	if (!f)
		return mm_fail(MM_ENOMEM, "scenario: out of memory for %zu flows", cap);
	g->flows = f;
	l = realloc(g->labels, cap * sizeof(*l));
	if (!l)
		return mm_fail(MM_ENOMEM, "scenario: out of memory for %zu labels", cap);
	g->labels = l;
	sl = realloc(g->slots, cap * sizeof(*sl));
	if (!sl)
		return mm_fail(MM_ENOMEM, "scenario: out of memory for %zu slots", cap);
	g->slots = sl;
	g->cap_flows = cap;
	return 0;
}

struct mm_flow *sc_flow(struct sc_gen *g, const struct sc_source *s, const struct mm_addr *src,
			const struct mm_addr *dst, uint16_t sport, uint16_t dport, uint8_t proto)
{
	struct mm_flow *f;

	MM_BUG(mm_addr_is_v4(src) != mm_addr_is_v4(dst));
	if (g->status == 0 && g->n_flows == g->cap_flows)
		g->status = grow_slice(g);
	/* After a failure, flows go to a scratch record so emitters need no error paths. */
	if (g->status != 0) {
		memset(&g->scratch, 0, sizeof(g->scratch));
		return &g->scratch;
	}
	f = &g->flows[g->n_flows];
	memset(f, 0, sizeof(*f));
	f->src = *src;
	f->dst = *dst;
	f->src_port = sport;
	f->dst_port = dport;
	f->proto = proto;
	g->labels[g->n_flows] = s->label;
	g->slots[g->n_flows].index = (uint32_t)g->n_flows;
	g->n_flows++;
	return f;
}

/* --- flow shapes ------------------------------------------------------------ */

enum { TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08, TCP_ACK = 0x10 };

/* IP + TCP header bytes with timestamps, and the SYN's with its options. */
static unsigned tcp_header(const struct mm_flow *f)
{
	return mm_addr_is_v4(&f->src) ? 52 : 72;
}

static unsigned tcp_syn_len(const struct mm_flow *f)
{
	return mm_addr_is_v4(&f->src) ? 60 : 80;
}

static unsigned tcp_mss(const struct mm_flow *f)
{
	return mm_addr_is_v4(&f->src) ? 1448 : 1428;
}

static uint64_t secs_ns(double secs)
{
	return secs <= 0 ? 0 : (uint64_t)(secs * (double)SC_NS);
}

void sc_tcp_session(struct mm_flow *f, uint64_t t, double up, double down, double secs)
{
	uint64_t up_b = up < 1 ? 1 : (uint64_t)up, down_b = down < 1 ? 1 : (uint64_t)down;
	uint64_t mss = tcp_mss(f), hdr = tcp_header(f);
	uint64_t up_pkts = (up_b + mss - 1) / mss, down_pkts = (down_b + mss - 1) / mss;

	/* SYN, ACK, data, delayed ACKs (one per two segments), FIN; the server mirrors it. */
	f->fwd_packets = 3 + up_pkts + down_pkts / 2;
	f->rev_packets = 2 + down_pkts + up_pkts / 2;
	f->fwd_bytes = tcp_syn_len(f) + hdr * (f->fwd_packets - 1) + up_b;
	f->rev_bytes = tcp_syn_len(f) + hdr * (f->rev_packets - 1) + down_b;
	f->fwd_tcp_flags = f->rev_tcp_flags = TCP_SYN | TCP_ACK | TCP_PSH | TCP_FIN;
	f->first_ns = t;
	f->last_ns = t + secs_ns(secs);
	f->end_reason = MM_END_EOF;
}

void sc_tcp_attempt(struct mm_flow *f, uint64_t t, enum sc_attempt how, unsigned syns)
{
	unsigned syn = tcp_syn_len(f), hdr = tcp_header(f) - 12; /* no timestamps on RSTs */

	if (syns == 0)
		syns = 1;
	f->first_ns = t;
	f->fwd_packets = syns;
	f->fwd_bytes = (uint64_t)syns * syn;
	f->fwd_tcp_flags = TCP_SYN;
	/* Retransmissions back off 1 s, 2 s, 4 s … */
	f->last_ns = t + ((1ull << (syns - 1)) - 1) * SC_NS;
	f->end_reason = MM_END_IDLE;
	switch (how) {
	case SC_NO_REPLY:
		break;
	case SC_REFUSED:
		f->rev_packets = 1;
		f->rev_bytes = hdr;
		f->rev_tcp_flags = TCP_RST | TCP_ACK;
		f->last_ns += 30 * 1000000ull;
		f->end_reason = MM_END_EOF;
		break;
	case SC_HALF_OPEN:
		f->fwd_packets++;
		f->fwd_bytes += hdr;
		f->fwd_tcp_flags |= TCP_RST;
		f->rev_packets = 1;
		f->rev_bytes = syn;
		f->rev_tcp_flags = TCP_SYN | TCP_ACK;
		f->last_ns += 60 * 1000000ull;
		f->end_reason = MM_END_EOF;
		break;
	}
}

void sc_udp(struct mm_flow *f, uint64_t t, uint64_t fwd_pkts, uint32_t fwd_payload,
	    uint64_t rev_pkts, uint32_t rev_payload, double secs)
{
	uint64_t hdr = mm_addr_is_v4(&f->src) ? 28 : 48;

	f->first_ns = t;
	f->last_ns = t + secs_ns(secs);
	f->fwd_packets = fwd_pkts;
	f->fwd_bytes = fwd_pkts * (hdr + fwd_payload);
	f->rev_packets = rev_pkts;
	f->rev_bytes = rev_pkts * (hdr + rev_payload);
	/* A payload beyond one Ethernet MTU arrives as IP fragments. */
	if (fwd_payload + hdr > 1500 || rev_payload + hdr > 1500)
		f->flags |= MM_FLOW_FRAGMENTS;
	f->end_reason = MM_END_IDLE;
}

void sc_echo(struct mm_flow *f, uint64_t t, uint64_t n, uint32_t payload, bool answered,
	     double secs)
{
	bool v4 = mm_addr_is_v4(&f->src);
	uint64_t len = (v4 ? 28 : 48) + (uint64_t)payload;

	f->proto = v4 ? 1 : 58;
	/* Zeek's convention: the originator's type as src_port, its counterpart's as dst_port. */
	f->icmp_type = v4 ? 8 : 128;
	f->src_port = f->icmp_type;
	f->dst_port = v4 ? 0 : 129;
	f->first_ns = t;
	f->last_ns = t + secs_ns(secs);
	f->fwd_packets = n;
	f->fwd_bytes = n * len;
	if (answered) {
		f->rev_packets = n;
		f->rev_bytes = n * len;
	}
	f->end_reason = MM_END_IDLE;
}

/* --- slices ---------------------------------------------------------------- */

static int slot_cmp(const void *a, const void *b)
{
	const struct slot *x = a, *y = b;

	if (x->first_ns != y->first_ns)
		return x->first_ns < y->first_ns ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

/* Clamps a flow into the scenario, numbers it and counts it for its truth entry. */
static void finish_flow(struct sc_gen *g, struct mm_flow *f, uint32_t label)
{
	MM_BUG(f->first_ns < g->s0 || f->first_ns >= g->s1);
	if (f->last_ns >= g->end_ns)
		f->last_ns = g->end_ns - 1;
	if (f->last_ns < f->first_ns)
		f->last_ns = f->first_ns;
	f->id = ++g->next_id;
	if (label != 0) {
		struct mm_scenario_entry *e = &g->entries[label - 1];

		if (e->n_flows == 0 || f->first_ns < e->first_ns)
			e->first_ns = f->first_ns;
		if (f->last_ns > e->last_ns)
			e->last_ns = f->last_ns;
		e->n_flows++;
		e->packets += mm_flow_packets(f);
		e->bytes += mm_flow_bytes(f);
	}
}

static int deliver(struct sc_gen *g, mm_scenario_sink sink, void *ctx)
{
	struct mm_flow batch[64];
	uint32_t labels[64];
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < g->n_flows; i++)
		g->slots[i].first_ns = g->flows[g->slots[i].index].first_ns;
	qsort(g->slots, g->n_flows, sizeof(*g->slots), slot_cmp);
	for (size_t i = 0; i < g->n_flows; i++) {
		uint32_t k = g->slots[i].index;

		batch[n] = g->flows[k];
		labels[n] = g->labels[k];
		finish_flow(g, &batch[n], labels[n]);
		if (++n == sizeof(batch) / sizeof(batch[0]) || i + 1 == g->n_flows) {
			if (sink && (rc = sink(ctx, batch, labels, n)) != 0)
				return rc;
			n = 0;
		}
	}
	g->n_flows = 0;
	return 0;
}

static void gen_release(struct sc_gen *g)
{
	for (size_t i = 0; i < g->n_sources; i++)
		free(g->sources[i]);
	free(g->sources);
	g->sources = NULL;
	g->n_sources = 0;
	free(g->flows);
	free(g->labels);
	free(g->slots);
	g->flows = NULL;
	g->labels = NULL;
	g->slots = NULL;
	g->cap_flows = g->n_flows = 0;
}

void mm_scenario_free(struct mm_scenario *sc)
{
	if (!sc)
		return;
	gen_release(&sc->g);
	free(sc->g.entries);
	free(sc->g.indicators);
	free(sc);
}

int mm_scenario_new(struct mm_scenario **out, const struct mm_scenario_config *cfg)
{
	struct mm_scenario *sc;
	struct sc_gen *g;
	int rc;

	*out = NULL;
	if ((rc = check_config(cfg)) != 0)
		return rc;
	sc = calloc(1, sizeof(*sc));
	if (!sc)
		return mm_fail(MM_ENOMEM, "scenario: out of memory");
	g = &sc->g;
	g->cfg = *cfg;
	g->cfg.name = "standard"; /* the caller's string need not outlive the scenario */
	g->start_ns = cfg->start_ns;
	g->end_ns = cfg->start_ns + cfg->duration_ns;
	g->entries = calloc(MAX_ENTRIES, sizeof(*g->entries));
	g->sources = calloc(MAX_SOURCES, sizeof(*g->sources));
	g->indicators = calloc(MAX_INDICATORS, sizeof(*g->indicators));
	if (!g->entries || !g->sources || !g->indicators)
		rc = mm_fail(MM_ENOMEM, "scenario: out of memory");
	else
		rc = sc_plan_standard(g);
	if (rc != 0) {
		mm_scenario_free(sc);
		return rc;
	}
	*out = sc;
	return 0;
}

int mm_scenario_run(struct mm_scenario *sc, mm_scenario_sink sink, void *ctx)
{
	struct sc_gen *g = &sc->g;
	int rc = 0;

	if (!g->sources)
		return mm_fail(MM_EINVAL, "scenario: already generated");
	for (g->s0 = g->start_ns; rc == 0 && g->s0 < g->end_ns; g->s0 = g->s1) {
		g->s1 = g->s0 + SLICE_NS < g->end_ns ? g->s0 + SLICE_NS : g->end_ns;
		for (size_t i = 0; i < g->n_sources; i++) {
			const struct sc_source *s = g->sources[i];

			if (s->t0 < g->s1 && s->t1 > g->s0)
				s->emit(g, s, g->s0, g->s1);
		}
		rc = g->status;
		if (rc == 0)
			rc = deliver(g, sink, ctx);
	}
	gen_release(g);
	return rc;
}

int mm_scenario_generate(const struct mm_scenario_config *cfg, mm_scenario_sink sink, void *ctx,
			 struct mm_scenario **out)
{
	struct mm_scenario *sc;
	int rc;

	if (out)
		*out = NULL;
	if ((rc = mm_scenario_new(&sc, cfg)) != 0)
		return rc;
	if ((rc = mm_scenario_run(sc, sink, ctx)) != 0 || !out)
		mm_scenario_free(sc);
	else
		*out = sc;
	return rc;
}

/* --- truth ------------------------------------------------------------------ */

const struct mm_scenario_config *mm_scenario_config(const struct mm_scenario *sc)
{
	return &sc->g.cfg;
}

size_t mm_scenario_entry_count(const struct mm_scenario *sc)
{
	return sc->g.n_entries;
}

const struct mm_scenario_entry *mm_scenario_entry(const struct mm_scenario *sc, size_t i)
{
	return i < sc->g.n_entries ? &sc->g.entries[i] : NULL;
}

size_t mm_scenario_domestic_count(const struct mm_scenario *sc)
{
	return sc->g.n_domestic;
}

const struct mm_prefix *mm_scenario_domestic(const struct mm_scenario *sc, size_t i)
{
	return i < sc->g.n_domestic ? &sc->g.domestic[i] : NULL;
}

size_t mm_scenario_indicator_count(const struct mm_scenario *sc)
{
	return sc->g.n_indicators;
}

const char *mm_scenario_indicator(const struct mm_scenario *sc, size_t i)
{
	return i < sc->g.n_indicators ? sc->g.indicators[i] : NULL;
}

/* A host prefix is written as a bare address, as the contract's examples do. */
static json_t *prefix_json(const struct mm_prefix *p)
{
	char buf[MM_PREFIX_STRLEN];

	if (p->len == (mm_addr_is_v4(&p->addr) ? 32 : 128))
		return json_string(mm_addr_format(&p->addr, buf));
	return json_string(mm_prefix_format(p, buf));
}

static json_t *time_json(uint64_t ns)
{
	char buf[MM_TIME_STRLEN];

	return json_string(mm_time_format_iso(ns, buf));
}

static int set(json_t *obj, const char *key, json_t *v)
{
	return v ? json_object_set_new(obj, key, v) : -1;
}

static json_t *entry_json(const struct mm_scenario_entry *e)
{
	json_t *o = json_object(), *attck = json_array();
	char proto[8];
	int bad = 0;

	if (!o || !attck) {
		json_decref(o);
		json_decref(attck);
		return NULL;
	}
	bad |= set(o, "id", json_string(e->id));
	if (e->role == MM_SCENARIO_ATTACK) {
		bad |= set(o, "detector", json_string(e->detector));
		bad |= set(o, "variant", json_string(e->variant));
	} else {
		bad |= set(o, "kind", json_string(e->variant));
	}
	bad |= set(o, "src", prefix_json(&e->src));
	bad |= set(o, "dst", prefix_json(&e->dst));
	bad |= set(o, "dst_port", e->dst_port < 0 ? json_null() : json_integer(e->dst_port));
	bad |= set(o, "proto", e->proto ? json_string(mm_proto_name(e->proto, proto)) : json_null());
	bad |= set(o, "first", time_json(e->first_ns));
	bad |= set(o, "last", time_json(e->last_ns));
	for (int i = 0; i < MM_SCENARIO_MAX_ATTCK && e->attck[i]; i++)
		bad |= json_array_append_new(attck, json_string(e->attck[i]));
	if (e->role == MM_SCENARIO_ATTACK)
		bad |= json_object_set(o, "attck", attck);
	json_decref(attck);
	if (e->indicator)
		bad |= set(o, "indicator", json_string(e->indicator));
	bad |= set(o, "flows", json_integer((json_int_t)e->n_flows));
	bad |= set(o, "packets", json_integer((json_int_t)e->packets));
	bad |= set(o, "bytes", json_integer((json_int_t)e->bytes));
	bad |= set(o, "notes", json_string(e->notes));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *truth_json(const struct mm_scenario *sc)
{
	const struct sc_gen *g = &sc->g;
	json_t *root = json_object(), *dom = json_array(), *att = json_array(), *ben = json_array();
	int bad = !root || !dom || !att || !ben;

	for (size_t i = 0; !bad && i < g->n_domestic; i++)
		bad |= json_array_append_new(dom, prefix_json(&g->domestic[i]));
	for (size_t i = 0; !bad && i < g->n_entries; i++) {
		const struct mm_scenario_entry *e = &g->entries[i];

		bad |= json_array_append_new(e->role == MM_SCENARIO_ATTACK ? att : ben, entry_json(e));
	}
	if (!bad) {
		bad |= set(root, "scenario", json_string(g->cfg.name));
		bad |= set(root, "seed", json_integer((json_int_t)g->cfg.seed));
		bad |= set(root, "scale", json_real(g->cfg.scale));
		bad |= set(root, "start", time_json(g->start_ns));
		bad |= set(root, "end", time_json(g->end_ns));
		bad |= set(root, "domestic", json_incref(dom));
		bad |= set(root, "attacks", json_incref(att));
		bad |= set(root, "benign", json_incref(ben));
	}
	json_decref(dom);
	json_decref(att);
	json_decref(ben);
	if (bad) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* Writes text to path through a temporary name and a rename. */
static int publish(const char *path, const char *text, size_t len)
{
	size_t tmp_len = strlen(path) + 16;
	char *tmp = malloc(tmp_len);
	FILE *fp;
	int rc = 0;

	if (!tmp)
		return mm_fail(MM_ENOMEM, "scenario: out of memory");
	snprintf(tmp, tmp_len, "%s.tmp%ld", path, (long)getpid());
	fp = fopen(tmp, "w");
	if (!fp) {
		rc = mm_fail(MM_EIO, "scenario: %s: cannot create (as %s): %m", path, tmp);
		goto out;
	}
	if (fwrite(text, 1, len, fp) != len) {
		fclose(fp);
		rc = mm_fail(MM_EIO, "scenario: %s: write failed: %m", tmp);
		goto out;
	}
	if (fclose(fp) != 0) {
		rc = mm_fail(MM_EIO, "scenario: %s: write failed: %m", tmp);
		goto out;
	}
	if (rename(tmp, path) != 0)
		rc = mm_fail(MM_EIO, "scenario: %s: cannot rename into place: %m", path);
out:
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

static int write_indicators(const struct mm_scenario *sc, const char *path)
{
	const struct sc_gen *g = &sc->g;
	size_t cap = 512 + g->n_indicators * (MM_PREFIX_STRLEN + 1), len;
	char *text = malloc(cap);
	int rc;

	if (!text)
		return mm_fail(MM_ENOMEM, "scenario: out of memory");
	len = (size_t)snprintf(text, cap,
			       "# mamori synth --scenario %s --seed %llu: indicators (plain list)\n"
			       "# Entries the scenario's intel attacks contact come first; the rest\n"
			       "# are decoys nothing in the scenario contacts.\n",
			       g->cfg.name, (unsigned long long)g->cfg.seed);
	for (size_t i = 0; i < g->n_indicators && len < cap; i++)
		len += (size_t)snprintf(text + len, cap - len, "%s\n", g->indicators[i]);
	MM_BUG(len >= cap);
	rc = publish(path, text, len);
	free(text);
	return rc;
}

int mm_scenario_write_truth(const struct mm_scenario *sc, const char *path,
			    const char *indicators_path)
{
	json_t *root = truth_json(sc);
	char *text;
	size_t len;
	int rc;

	if (!root)
		return mm_fail(MM_ENOMEM, "scenario: out of memory building the truth");
	text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!text)
		return mm_fail(MM_ENOMEM, "scenario: out of memory writing the truth");
	len = strlen(text);
	text[len] = '\n'; /* json_dumps leaves the NUL there: the file ends with a newline */
	rc = publish(path, text, len + 1);
	free(text);
	if (rc == 0 && indicators_path)
		rc = write_indicators(sc, indicators_path);
	return rc;
}
