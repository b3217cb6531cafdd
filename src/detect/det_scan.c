/*
 * Scan detection, per source. Within a counting window: horizontal (many
 * hosts, one port), vertical (many ports, few hosts) and block (many of
 * both) scans, from HyperLogLog counts of distinct hosts and ports, when
 * most of the source's flows got no reply. Across windows: Threshold
 * Random Walk (Jung, Paxson, Berger, Balakrishnan 2004), a sequential
 * likelihood-ratio test on the outcomes of first contacts with distinct
 * hosts, which catches scans too slow for any window.
 */
#include "detect/detect_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRW_SEEN 32

enum scan_alerted { A_HORIZONTAL = 1, A_VERTICAL = 2, A_BLOCK = 4, A_TRW = 8 };

struct scan_key {
	struct mm_addr src;
};

struct scan_entry {
	struct det_hdr h;
	struct scan_key k;
	/* The counting window. */
	uint64_t win_start, win_first, win_last;
	uint32_t flows, fails, succ;
	uint32_t top_count; /* Misra-Gries majority candidate among destination ports */
	uint16_t top_port;
	uint8_t top_proto;
	uint8_t alerted;    /* enum scan_alerted: one alert per kind while the source stays */
	struct det_cover cover;
	struct det_hll hosts, ports;
	struct mm_alert_example ex[MM_ALERT_MAX_EXAMPLES];
	unsigned n_ex;
	/* TRW: log-likelihood ratio over first contacts since the last benign verdict. */
	double llr;
	uint64_t trw_first, trw_last;
	uint32_t trw_fails, trw_succ;
	uint32_t seen[TRW_SEEN];
	uint8_t n_seen;
	uint16_t trw_port;
	struct det_cover trw_cover;
};

struct scan_state {
	struct det_table t;
	double ln_eta0, ln_eta1, step_fail, step_succ;
};

static int scan_init(struct mm_detect *d, size_t mem)
{
	struct scan_state *s = calloc(1, sizeof(*s));
	const struct mm_detect_config *c = &d->cfg;
	int rc;

	if (!s)
		return mm_fail(MM_ENOMEM, "detect: scan state");
	d->state[MM_DET_SCAN] = s;
	rc = det_table_init(&s->t, sizeof(struct scan_entry), sizeof(struct scan_key), mem, d, MM_DET_SCAN);
	if (rc < 0)
		return rc;
	/* Jung et al. §4: eta1 = beta / alpha, eta0 = (1 - beta) / (1 - alpha). */
	s->ln_eta1 = log(c->scan.trw_beta / c->scan.trw_alpha);
	s->ln_eta0 = log((1 - c->scan.trw_beta) / (1 - c->scan.trw_alpha));
	s->step_succ = log(c->scan.trw_theta1 / c->scan.trw_theta0);
	s->step_fail = log((1 - c->scan.trw_theta1) / (1 - c->scan.trw_theta0));
	return 0;
}

static void proto_port(char *buf, size_t len, uint8_t proto, uint16_t port)
{
	char p[8];

	snprintf(buf, len, "%s/%u", mm_proto_name(proto, p), port);
}

static void raise_window(struct mm_detect *d, struct scan_entry *e, const char *kind, double hosts,
			 double ports, double fail_ratio)
{
	const struct mm_detect_config *c = &d->cfg;
	struct mm_alert a;
	char src[MM_ADDR_STRLEN], dst[MM_PREFIX_STRLEN], span[32], pp[24];
	uint64_t nh = (uint64_t)llround(hosts), np = (uint64_t)llround(ports);

	det_alert_init(d, &a, MM_DET_SCAN, kind);
	det_alert_host(&a.src, &e->k.src);
	det_cover_prefix(&e->cover, &a.dst);
	a.first_ns = e->win_first;
	a.last_ns = e->win_last;
	a.ev.flows = e->flows;
	a.ev.hosts = nh;
	a.ev.ports = np;
	a.ev.failures = e->fails;
	a.ev.successes = e->succ;
	a.ev.score = fail_ratio;
	det_alert_examples(&a, e->ex, e->n_ex);
	det_alert_attck(&a, "T1046");
	mm_addr_format(&e->k.src, src);
	mm_prefix_format(&a.dst, dst);
	det_duration_text(e->win_last - e->win_first, span);
	if (strcmp(kind, "horizontal") == 0) {
		a.proto = e->top_proto;
		a.port = e->top_port;
		proto_port(pp, sizeof(pp), e->top_proto, e->top_port);
		a.severity = nh >= 4 * (uint64_t)c->scan.min_hosts ? MM_SEV_HIGH : MM_SEV_MEDIUM;
		det_explain(&a, "%s probed %" PRIu64 " hosts in %s on %s in %s (%u failures, %u successes)", src, nh, dst,
			 pp, span, e->fails, e->succ);
	} else if (strcmp(kind, "vertical") == 0) {
		a.severity = MM_SEV_MEDIUM;
		det_explain(&a, "%s probed %" PRIu64 " ports on %s in %s (%u failures, %u successes)", src, np, dst, span,
			 e->fails, e->succ);
	} else {
		a.severity = MM_SEV_HIGH;
		det_explain(&a, "%s probed %" PRIu64 " hosts in %s across %" PRIu64 " ports in %s (%u failures, %u successes)",
			 src, nh, dst, np, span, e->fails, e->succ);
	}
	a.confidence = fmin(0.99, 0.5 + 0.5 * fail_ratio);
	det_emit(d, &a);
}

static void check_window(struct mm_detect *d, struct scan_entry *e)
{
	const struct mm_detect_config *c = &d->cfg;
	double hosts = det_hll_estimate(&e->hosts), ports = det_hll_estimate(&e->ports);
	double fail_ratio = (double)e->fails / e->flows;

	if (fail_ratio < c->scan.min_fail_ratio)
		return;
	if (hosts >= c->scan.block_min_hosts && ports >= c->scan.block_min_ports) {
		if (!(e->alerted & A_BLOCK)) {
			e->alerted |= A_BLOCK;
			raise_window(d, e, "block", hosts, ports, fail_ratio);
		}
		return;
	}
	if (hosts >= c->scan.min_hosts && ports <= c->scan.horizontal_max_ports + 0.5 && !(e->alerted & A_HORIZONTAL)) {
		e->alerted |= A_HORIZONTAL;
		raise_window(d, e, "horizontal", hosts, ports, fail_ratio);
	}
	if (ports >= c->scan.min_ports && hosts <= c->scan.vertical_max_hosts + 0.5 && !(e->alerted & A_VERTICAL)) {
		e->alerted |= A_VERTICAL;
		raise_window(d, e, "vertical", hosts, ports, fail_ratio);
	}
}

static void raise_trw(struct mm_detect *d, struct scan_entry *e)
{
	struct mm_alert a;
	char src[MM_ADDR_STRLEN], dst[MM_PREFIX_STRLEN], span[32];
	uint32_t n = e->trw_fails + e->trw_succ;

	det_alert_init(d, &a, MM_DET_SCAN, "trw");
	det_alert_host(&a.src, &e->k.src);
	det_cover_prefix(&e->trw_cover, &a.dst);
	a.proto = 6;
	a.first_ns = e->trw_first;
	a.last_ns = d->now;
	a.ev.flows = n;
	a.ev.hosts = n;
	a.ev.failures = e->trw_fails;
	a.ev.successes = e->trw_succ;
	a.ev.score = e->llr;
	a.severity = MM_SEV_MEDIUM;
	/* Confidence from how far past the threshold the walk went. */
	a.confidence = fmin(0.99, 1.0 - exp(-e->llr / 2));
	det_alert_examples(&a, e->ex, e->n_ex);
	det_alert_attck(&a, "T1046");
	mm_addr_format(&e->k.src, src);
	mm_prefix_format(&a.dst, dst);
	det_duration_text(a.last_ns - a.first_ns, span);
	det_explain(&a, "%s failed to connect to %u of %u distinct hosts in %s over %s (threshold random walk, "
		 "log-likelihood ratio %.1f)",
		 src, e->trw_fails, n, dst, span, e->llr);
	det_emit(d, &a);
}

/* One first contact's outcome through the sequential test. */
static void trw_step(struct mm_detect *d, struct scan_state *s, struct scan_entry *e, const struct mm_flow *f,
		     bool ok)
{
	uint32_t dh = (uint32_t)d->cur.h_dst;

	for (unsigned i = 0; i < e->n_seen; i++)
		if (e->seen[i] == dh)
			return;
	if (e->n_seen == TRW_SEEN ||
	    (e->n_seen > 0 && f->first_ns > e->trw_last + d->cfg.scan.trw_max_gap_ns)) {
		/* Undecided after this many hosts, or the source paused: start the test over. */
		e->n_seen = 0;
		e->llr = 0;
		e->trw_fails = e->trw_succ = 0;
	}
	if (e->n_seen == 0) {
		e->trw_first = f->first_ns;
		memset(&e->trw_cover, 0, sizeof(e->trw_cover));
	}
	e->seen[e->n_seen++] = dh;
	e->trw_last = f->first_ns;
	det_cover_add(&e->trw_cover, &f->dst);
	e->llr += ok ? s->step_succ : s->step_fail;
	if (ok)
		e->trw_succ++;
	else
		e->trw_fails++;
	if (e->llr <= s->ln_eta0) {
		/* Benign verdict: forget and test afresh from the next contact. */
		e->n_seen = 0;
		e->llr = 0;
		e->trw_fails = e->trw_succ = 0;
	} else if (e->llr >= s->ln_eta1 && e->trw_fails >= d->cfg.scan.trw_min_failures && !(e->alerted & A_TRW)) {
		e->alerted |= A_TRW;
		raise_trw(d, e);
	}
}

static void scan_flow(struct mm_detect *d, const struct mm_flow *f)
{
	struct scan_state *s = d->state[MM_DET_SCAN];
	struct scan_key k;
	struct scan_entry *e;
	bool created, ok = det_flow_replied(f), grew;
	uint32_t pk;

	memset(&k, 0, sizeof(k));
	k.src = f->src;
	e = det_table_get_h(&s->t, &k, d->cur.h_src, d->now, &created);
	if (created || d->now - e->win_start > d->cfg.scan.window_ns) {
		e->win_start = d->now;
		e->win_first = f->first_ns;
		/* A new entry comes zeroed: only a reused one needs its window cleared. */
		if (!created) {
			e->flows = e->fails = e->succ = e->top_count = 0;
			e->n_ex = 0;
			memset(&e->cover, 0, sizeof(e->cover));
			memset(&e->hosts, 0, sizeof(e->hosts));
			memset(&e->ports, 0, sizeof(e->ports));
		}
	}
	if (f->first_ns < e->win_first)
		e->win_first = f->first_ns;
	e->win_last = f->last_ns;
	e->flows++;
	if (ok)
		e->succ++;
	else
		e->fails++;
	pk = (uint32_t)f->proto << 16 | f->dst_port;
	if (e->top_count == 0) {
		e->top_port = f->dst_port;
		e->top_proto = f->proto;
		e->top_count = 1;
	} else if (e->top_port == f->dst_port && e->top_proto == f->proto) {
		e->top_count++;
	} else {
		e->top_count--;
	}
	det_cover_add(&e->cover, &f->dst);
	if (!ok)
		det_example_keep(e->ex, &e->n_ex, f);
	grew = det_hll_add_new(&e->hosts, d->cur.h_dst);
	grew |= det_hll_add_new(&e->ports, det_hash(d, &pk, sizeof(pk)));
	if (grew && e->flows >= d->cfg.scan.block_min_hosts)
		check_window(d, e);
	if (f->proto == 6)
		trw_step(d, s, e, f, ok);
}

static void scan_prefetch(struct mm_detect *d, const struct mm_flow *f, struct det_flow_info *fi)
{
	(void)f;
	struct scan_state *s = d->state[MM_DET_SCAN];

	det_table_prefetch(&s->t, fi->h_src);
}

static void scan_tick(struct mm_detect *d, uint64_t now)
{
	struct scan_state *s = d->state[MM_DET_SCAN];
	uint64_t ttl = d->cfg.scan.trw_idle_ns > d->cfg.scan.window_ns ? d->cfg.scan.trw_idle_ns
									 : d->cfg.scan.window_ns;

	det_table_sweep(&s->t, now, ttl, d->sweep_budget);
}

static void scan_release(struct mm_detect *d)
{
	struct scan_state *s = d->state[MM_DET_SCAN];

	det_table_release(&s->t);
	free(s);
	d->state[MM_DET_SCAN] = NULL;
}

const struct det_ops det_scan_ops = {
	.name = "scan",
	.mem_share = 25,
	.init = scan_init,
	.prefetch = scan_prefetch,
	.flow = scan_flow,
	.tick = scan_tick,
	.release = scan_release,
};
