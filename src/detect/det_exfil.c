/*
 * Exfiltration detection: a domestic host that opens connections to a
 * foreign destination few internal hosts ever talk to and sends far more
 * than it receives, and far more than it usually sends in an hour. (A
 * domestic server answering foreign clients is doing its job; its
 * replies are not counted.) Destination popularity is
 * the number of distinct internal hosts seen talking to it, counted
 * exactly per destination in a capped table (a count-min sketch remembers
 * which pairs were counted: a collision there can only undercount);
 * outbound bytes per pair are prefiltered by a sketch so only pairs that
 * carry real volume take a table entry.
 */
#include "detect/detect_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOUR (3600 * MM_NS_PER_SEC)
/* Weight of the newest hour in a host's outbound baseline. */
#define BASELINE_ALPHA 0.3

struct pair_key {
	struct mm_addr host, peer;
};

struct pair_entry {
	struct det_hdr h;
	struct pair_key k;
	uint64_t win_start, first_ns, last_ns;
	uint64_t out_bytes, in_bytes, flows;
	uint16_t port;
	uint8_t proto;
	bool alerted;
	struct mm_alert_example ex[MM_ALERT_MAX_EXAMPLES];
	unsigned n_ex;
};

struct host_key {
	struct mm_addr host;
};

struct host_entry {
	struct det_hdr h;
	struct host_key k;
	uint64_t hour;       /* the hour cur_bytes counts */
	uint64_t cur_bytes;
	double baseline;     /* EWMA of outbound bytes per hour over past hours */
	uint32_t hours_seen;
};

struct peer_entry {
	struct det_hdr h;
	struct host_key k; /* the foreign peer */
	uint32_t hosts;
};

struct exfil_state {
	struct det_table pairs, hosts;
	struct det_cms pair_bytes;       /* outbound bytes per pair: the prefilter */
	struct det_table peers;          /* distinct internal hosts per foreign peer */
	struct det_cms counted;          /* pairs already counted in peers */
	uint64_t epoch;
};

static int exfil_init(struct mm_detect *d, size_t mem)
{
	struct exfil_state *s = calloc(1, sizeof(*s));
	size_t sk = mem / 16;
	int rc;

	if (!s)
		return mm_fail(MM_ENOMEM, "detect: exfil state");
	d->state[MM_DET_EXFIL] = s;
	if ((rc = det_cms_init(&s->pair_bytes, sk, 4)) < 0 || (rc = det_cms_init(&s->counted, 2 * sk, 4)) < 0)
		return rc;
	d->stats.memory_used += 3 * sk;
	if ((rc = det_table_init(&s->peers, sizeof(struct peer_entry), sizeof(struct host_key), mem / 8, d,
				 MM_DET_EXFIL)) < 0 ||
	    (rc = det_table_init(&s->pairs, sizeof(struct pair_entry), sizeof(struct pair_key), mem / 4, d,
				 MM_DET_EXFIL)) < 0)
		return rc;
	return det_table_init(&s->hosts, sizeof(struct host_entry), sizeof(struct host_key), mem / 4, d,
			      MM_DET_EXFIL);
}

/* Counts the pair's host for its peer the first time the pair is seen. */
static void count_pair(struct mm_detect *d, struct exfil_state *s, const struct pair_key *k, uint64_t pair_hash)
{
	struct host_key pk;
	struct peer_entry *p;
	bool created;

	if (det_cms_get(&s->counted, pair_hash) != 0)
		return;
	det_cms_add(&s->counted, pair_hash, 1);
	memset(&pk, 0, sizeof(pk));
	pk.host = k->peer;
	p = det_table_get_h(&s->peers, &pk, d->cur.h_dst, d->now, &created);
	p->hosts++;
}

/* Distinct internal hosts seen opening connections to peer. */
static uint32_t popularity(struct mm_detect *d, struct exfil_state *s, const struct mm_addr *peer)
{
	struct host_key pk;
	struct peer_entry *p;

	memset(&pk, 0, sizeof(pk));
	pk.host = *peer;
	p = det_table_find_h(&s->peers, &pk, d->cur.h_dst);
	return p ? p->hosts : 0;
}

static char *bytes_text(uint64_t b, char buf[32])
{
	if (b >= 1000000000)
		snprintf(buf, 32, "%.2f GB", (double)b / 1e9);
	else if (b >= 1000000)
		snprintf(buf, 32, "%.1f MB", (double)b / 1e6);
	else if (b >= 1000)
		snprintf(buf, 32, "%.1f kB", (double)b / 1e3);
	else
		snprintf(buf, 32, "%" PRIu64 " bytes", b);
	return buf;
}

static void exfil_raise(struct mm_detect *d, const struct pair_entry *e, uint32_t pop, double baseline)
{
	struct mm_alert a;
	char host[MM_ADDR_STRLEN], peer[MM_ADDR_STRLEN], span[32], out[32], in[32], base[32], p[8];
	double ratio = baseline > 0 ? (double)e->out_bytes / baseline : 0;

	det_alert_init(d, &a, MM_DET_EXFIL, "large-upload");
	det_alert_host(&a.src, &e->k.host);
	det_alert_host(&a.dst, &e->k.peer);
	a.proto = e->proto;
	a.port = e->port;
	a.first_ns = e->first_ns;
	a.last_ns = e->last_ns;
	a.ev.flows = e->flows;
	a.ev.bytes = e->out_bytes + e->in_bytes;
	a.ev.hosts = pop;
	a.ev.ports = 1;
	a.ev.rate = baseline;
	a.ev.score = (double)e->out_bytes / (double)(e->in_bytes ? e->in_bytes : 1);
	a.severity = e->out_bytes >= 10 * d->cfg.exfil.min_bytes ? MM_SEV_CRITICAL : MM_SEV_HIGH;
	a.confidence = fmin(0.95, 0.6 + (pop <= 1 ? 0.2 : 0.1) + (baseline > 0 && ratio > 100 ? 0.15 : 0.05));
	det_alert_examples(&a, e->ex, e->n_ex);
	det_alert_attck(&a, "T1048");
	mm_addr_format(&e->k.host, host);
	mm_addr_format(&e->k.peer, peer);
	if (baseline > 0)
		bytes_text((uint64_t)baseline, base);
	else
		snprintf(base, sizeof(base), "none yet");
	det_explain(&a, "%s sent %s to %s (%s/%u) in %s and received %s; the destination was seen from %u internal "
		 "host%s; the host's hourly outbound baseline: %s",
		 host, bytes_text(e->out_bytes, out), peer, mm_proto_name(e->proto, p), e->port,
		 det_duration_text(e->last_ns - e->first_ns, span), bytes_text(e->in_bytes, in), pop,
		 pop == 1 ? "" : "s", base);
	det_emit(d, &a);
}

/* The host's outbound bytes this hour, rolling past hours into the baseline. */
static struct host_entry *host_account(struct mm_detect *d, struct exfil_state *s, const struct mm_addr *h,
				       uint64_t out)
{
	struct host_key k;
	struct host_entry *e;
	bool created;
	uint64_t hour = d->now / HOUR;

	memset(&k, 0, sizeof(k));
	k.host = *h;
	e = det_table_get_h(&s->hosts, &k, d->cur.h_src, d->now, &created);
	if (created) {
		e->hour = hour;
	} else if (hour > e->hour) {
		uint64_t gap = hour - e->hour - 1;

		e->baseline = e->hours_seen ? e->baseline + BASELINE_ALPHA * ((double)e->cur_bytes - e->baseline)
					    : (double)e->cur_bytes;
		e->baseline *= pow(1 - BASELINE_ALPHA, (double)(gap < 48 ? gap : 48));
		e->hours_seen++;
		e->cur_bytes = 0;
		e->hour = hour;
	}
	e->cur_bytes += out;
	return e;
}

static void pair_key_of(struct pair_key *k, const struct mm_flow *f)
{
	memset(k, 0, sizeof(*k));
	k->host = f->src;
	k->peer = f->dst;
}

static void exfil_flow(struct mm_detect *d, const struct mm_flow *f)
{
	struct exfil_state *s = d->state[MM_DET_EXFIL];
	const struct mm_detect_config *c = &d->cfg;
	struct pair_key k;
	struct pair_entry *e;
	struct host_entry *he;
	uint64_t out, in, pairh;
	bool created;
	uint32_t pop;

	if (!d->cur.src_dom || d->cur.dst_dom)
		return;
	pair_key_of(&k, f);
	out = f->fwd_bytes;
	in = f->rev_bytes;
	pairh = d->cur.h_key[MM_DET_EXFIL];
	count_pair(d, s, &k, pairh);
	/* Bytes of a pair under watch do not teach its host's baseline: the
	 * upload being judged must not raise the bar it is judged against. */
	e = det_table_find_h(&s->pairs, &k, pairh);
	he = host_account(d, s, &k.host, e ? 0 : out);
	if (!e) {
		if (out <= in || det_cms_add(&s->pair_bytes, pairh, (uint32_t)(out > UINT32_MAX ? UINT32_MAX : out)) <
					 c->exfil.min_bytes / 16)
			return;
		e = det_table_get_h(&s->pairs, &k, pairh, d->now, &created);
	}
	e->h.last_ns = d->now;
	if (e->win_start == 0 || d->now - e->win_start > c->exfil.window_ns) {
		bool alerted = e->alerted;

		memset((uint8_t *)e + offsetof(struct pair_entry, win_start), 0,
		       sizeof(*e) - offsetof(struct pair_entry, win_start));
		e->alerted = alerted;
		e->win_start = d->now;
		e->first_ns = f->first_ns;
	}
	if (f->first_ns < e->first_ns)
		e->first_ns = f->first_ns;
	e->last_ns = f->last_ns > e->last_ns ? f->last_ns : e->last_ns;
	e->out_bytes += out;
	e->in_bytes += in;
	e->flows++;
	if (out > 0) {
		e->port = f->dst_port;
		e->proto = f->proto;
		det_example_keep(e->ex, &e->n_ex, f);
	}
	if (e->alerted || e->out_bytes < c->exfil.min_bytes ||
	    (double)e->out_bytes < c->exfil.min_out_in_ratio * (double)e->in_bytes)
		return;
	pop = popularity(d, s, &k.peer);
	if (pop > c->exfil.rare_max_hosts)
		return;
	if (he->hours_seen && he->baseline > 0 && (double)e->out_bytes < c->exfil.baseline_factor * he->baseline)
		return;
	e->alerted = true;
	exfil_raise(d, e, pop, he->hours_seen ? he->baseline : 0);
}

static void reset_peer(void *ctx, void *entry)
{
	(void)ctx;
	((struct peer_entry *)entry)->hosts = 0;
}

/* Every outbound flow updates its host's hourly account and looks its pair up. */
static void exfil_prefetch(struct mm_detect *d, const struct mm_flow *f, struct det_flow_info *fi)
{
	struct exfil_state *s = d->state[MM_DET_EXFIL];
	struct pair_key k;

	if (!fi->src_dom || fi->dst_dom)
		return;
	pair_key_of(&k, f);
	fi->h_key[MM_DET_EXFIL] = det_table_hash(&s->pairs, &k);
	det_table_prefetch(&s->hosts, fi->h_src);
	det_table_prefetch(&s->pairs, fi->h_key[MM_DET_EXFIL]);
}

static void exfil_tick(struct mm_detect *d, uint64_t now)
{
	struct exfil_state *s = d->state[MM_DET_EXFIL];
	uint64_t epoch = now / d->cfg.exfil.popularity_window_ns;

	det_table_sweep(&s->pairs, now, d->cfg.exfil.window_ns, d->sweep_budget);
	det_table_sweep(&s->hosts, now, 48 * HOUR, d->sweep_budget);
	det_table_sweep(&s->peers, now, d->cfg.exfil.popularity_window_ns, d->sweep_budget);
	if (s->epoch == 0)
		s->epoch = epoch;
	if (epoch != s->epoch) {
		/* A new popularity window: pairs are counted afresh, so counts start over. */
		det_table_each(&s->peers, reset_peer, NULL);
		det_cms_clear(&s->counted);
		det_cms_clear(&s->pair_bytes);
		s->epoch = epoch;
	}
}

static void exfil_release(struct mm_detect *d)
{
	struct exfil_state *s = d->state[MM_DET_EXFIL];

	det_table_release(&s->pairs);
	det_table_release(&s->hosts);
	det_cms_release(&s->pair_bytes);
	det_table_release(&s->peers);
	det_cms_release(&s->counted);
	free(s);
	d->state[MM_DET_EXFIL] = NULL;
}

const struct det_ops det_exfil_ops = {
	.name = "exfil",
	.mem_share = 15,
	.init = exfil_init,
	.prefetch = exfil_prefetch,
	.flow = exfil_flow,
	.tick = exfil_tick,
	.release = exfil_release,
};
