/*
 * Brute-force detection: many short, answered sessions with few bytes from
 * one source to one authentication service (SSH, Telnet, RDP, SMB, VNC,
 * FTP, mail, databases), counted per (source, target, port) in a window,
 * and per (source /24 or /64, target, port) for guessing spread over the
 * hosts of one network.
 * Sessions that got no answer are a scan's business, not this one's.
 */
#include "detect/detect_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <stddef.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BF_SOURCES 8

struct bf_key {
	struct mm_addr src, dst; /* src: a host, or the network of many */
	uint16_t port;
	uint8_t proto;
	uint8_t network;         /* src is a /24 (IPv4) or /64 (IPv6) */
};

struct bf_entry {
	struct det_hdr h;
	struct bf_key k;
	uint64_t win_start, first_ns, last_ns;
	uint64_t bytes, packets;
	uint32_t attempts, unanswered;
	uint32_t source[BF_SOURCES]; /* network entries: distinct sources, up to BF_SOURCES */
	uint8_t n_sources;
	bool alerted;
	struct mm_alert_example ex[MM_ALERT_MAX_EXAMPLES];
	unsigned n_ex;
};

struct bf_state {
	struct det_table t;
	uint8_t watched[65536 / 8];
};

static int bf_init(struct mm_detect *d, size_t mem)
{
	struct bf_state *s = calloc(1, sizeof(*s));

	if (!s)
		return mm_fail(MM_ENOMEM, "detect: bruteforce state");
	d->state[MM_DET_BRUTEFORCE] = s;
	for (size_t i = 0; i < d->cfg.bruteforce.ports.n; i++)
		s->watched[d->cfg.bruteforce.ports.port[i] / 8] |= (uint8_t)(1u << (d->cfg.bruteforce.ports.port[i] % 8));
	return det_table_init(&s->t, sizeof(struct bf_entry), sizeof(struct bf_key), mem, d, MM_DET_BRUTEFORCE);
}

static const char *service_name(uint16_t port)
{
	switch (port) {
	case 21: return "FTP";
	case 22: return "SSH";
	case 23: return "Telnet";
	case 110: case 995: return "POP3";
	case 143: case 993: return "IMAP";
	case 445: return "SMB";
	case 1433: return "MS SQL";
	case 3306: return "MySQL";
	case 3389: return "RDP";
	case 5432: return "PostgreSQL";
	case 5900: return "VNC";
	}
	return "service";
}

static void bf_raise(struct mm_detect *d, struct bf_entry *e)
{
	const struct mm_detect_config *c = &d->cfg;
	struct mm_alert a;
	char src[MM_PREFIX_STRLEN + 24], dst[MM_ADDR_STRLEN], span[32], p[8], pfx[MM_PREFIX_STRLEN];

	det_alert_init(d, &a, MM_DET_BRUTEFORCE, e->k.network ? "distributed-guessing" : "password-guessing");
	if (e->k.network)
		(void)mm_prefix_from_addr(&a.src, &e->k.src, mm_addr_is_v4(&e->k.src) ? 24 : 64);
	else
		det_alert_host(&a.src, &e->k.src);
	det_alert_host(&a.dst, &e->k.dst);
	a.proto = e->k.proto;
	a.port = e->k.port;
	a.first_ns = e->first_ns;
	a.last_ns = e->last_ns;
	a.ev.flows = e->attempts + e->unanswered;
	a.ev.packets = e->packets;
	a.ev.bytes = e->bytes;
	a.ev.hosts = 1;
	a.ev.ports = 1;
	a.ev.successes = e->attempts;
	a.ev.failures = e->unanswered;
	a.ev.score = e->attempts;
	a.severity = e->attempts >= 5 * c->bruteforce.min_attempts ? MM_SEV_HIGH : MM_SEV_MEDIUM;
	a.confidence = fmin(0.99, 0.6 + 0.4 * (1.0 - (double)c->bruteforce.min_attempts / (2.0 * e->attempts)));
	det_alert_examples(&a, e->ex, e->n_ex);
	det_alert_attck(&a, "T1110");
	if (e->k.network)
		snprintf(src, sizeof(src), "%u hosts of %s", e->n_sources, mm_prefix_format(&a.src, pfx));
	else
		mm_addr_format(&e->k.src, src);
	mm_addr_format(&e->k.dst, dst);
	det_duration_text(e->last_ns - e->first_ns, span);
	det_explain(&a, "%s opened %u short %s sessions to %s on %s/%u in %s (%.0f bytes each on average)", src,
		    e->attempts, service_name(e->k.port), dst, mm_proto_name(e->k.proto, p), e->k.port, span,
		    (double)e->bytes / (e->attempts + e->unanswered));
	det_emit(d, &a);
}

/* Counts one short session in the entry for k (hash h); src_hash names the source for network entries. */
static void account(struct mm_detect *d, struct bf_state *s, const struct bf_key *k, uint64_t h,
		    const struct mm_flow *f, bool answered, uint32_t src_hash)
{
	const struct mm_detect_config *c = &d->cfg;
	uint64_t bytes = mm_flow_bytes(f);
	struct bf_entry *e;
	bool created, known = false;

	e = det_table_get_h(&s->t, k, h, d->now, &created);
	if (created || d->now - e->win_start > c->bruteforce.window_ns) {
		bool alerted = e->alerted;

		memset((uint8_t *)e + offsetof(struct bf_entry, win_start), 0,
		       sizeof(*e) - offsetof(struct bf_entry, win_start));
		e->alerted = alerted;
		e->win_start = d->now;
		e->first_ns = f->first_ns;
	}
	e->last_ns = f->last_ns;
	e->bytes += bytes;
	e->packets += mm_flow_packets(f);
	if (!answered) {
		e->unanswered++;
		return;
	}
	e->attempts++;
	det_example_keep(e->ex, &e->n_ex, f);
	if (k->network) {
		for (unsigned i = 0; i < e->n_sources && !known; i++)
			known = e->source[i] == src_hash;
		if (!known && e->n_sources < BF_SOURCES)
			e->source[e->n_sources++] = src_hash;
		if (e->n_sources < c->bruteforce.min_sources)
			return;
	}
	if (e->attempts >= c->bruteforce.min_attempts && !e->alerted) {
		e->alerted = true;
		bf_raise(d, e);
	}
}

/* The (source host, destination, port) key of a short session on a watched port; false for other flows. */
static bool bf_key_of(const struct mm_detect *d, const struct bf_state *s, const struct mm_flow *f,
		      struct bf_key *k)
{
	const struct mm_detect_config *c = &d->cfg;

	if ((f->proto != 6 && f->proto != 17) || !(s->watched[f->dst_port / 8] & (1u << (f->dst_port % 8))))
		return false;
	if (mm_flow_bytes(f) > c->bruteforce.max_bytes || f->last_ns - f->first_ns > c->bruteforce.max_duration_ns)
		return false;
	memset(k, 0, sizeof(*k));
	k->src = f->src;
	k->dst = f->dst;
	k->port = f->dst_port;
	k->proto = f->proto;
	return true;
}

static void bf_prefetch(struct mm_detect *d, const struct mm_flow *f, struct det_flow_info *fi)
{
	struct bf_state *s = d->state[MM_DET_BRUTEFORCE];
	struct bf_key k;

	if (!bf_key_of(d, s, f, &k))
		return;
	fi->h_key[MM_DET_BRUTEFORCE] = det_table_hash(&s->t, &k);
	det_table_prefetch(&s->t, fi->h_key[MM_DET_BRUTEFORCE]);
}

static void bf_flow(struct mm_detect *d, const struct mm_flow *f)
{
	struct bf_state *s = d->state[MM_DET_BRUTEFORCE];
	struct bf_key k;
	struct mm_prefix net;
	bool answered;

	if (!bf_key_of(d, s, f, &k))
		return;
	answered = det_flow_replied(f);
	account(d, s, &k, d->cur.h_key[MM_DET_BRUTEFORCE], f, answered, 0);
	(void)mm_prefix_from_addr(&net, &f->src, mm_addr_is_v4(&f->src) ? 24 : 64);
	k.src = net.addr;
	k.network = 1;
	account(d, s, &k, det_table_hash(&s->t, &k), f, answered, (uint32_t)d->cur.h_src);
}

static void bf_tick(struct mm_detect *d, uint64_t now)
{
	struct bf_state *s = d->state[MM_DET_BRUTEFORCE];

	det_table_sweep(&s->t, now, d->cfg.bruteforce.window_ns, d->sweep_budget);
}

static void bf_release(struct mm_detect *d)
{
	struct bf_state *s = d->state[MM_DET_BRUTEFORCE];

	det_table_release(&s->t);
	free(s);
	d->state[MM_DET_BRUTEFORCE] = NULL;
}

const struct det_ops det_bruteforce_ops = {
	.name = "bruteforce",
	.mem_share = 10,
	.init = bf_init,
	.prefetch = bf_prefetch,
	.flow = bf_flow,
	.tick = bf_tick,
	.release = bf_release,
};
