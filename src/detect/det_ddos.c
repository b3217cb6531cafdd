/*
 * Flood detection, per destination, over short windows of stream time.
 * The destinations that receive the most packets in a window are found
 * with space-saving (Metwally, Agrawal, El Abbadi 2005) over top_k
 * counters, so memory does not grow with the number of destinations;
 * each is checked at the window's end against absolute rates and its own
 * exponentially weighted baseline, and named by its dominant vector: SYN
 * flood, UDP reflection (by the reflector's source port), other UDP
 * flood, or ICMP flood.
 */
#include "detect/detect_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Source ports of UDP services that answer a small spoofed query with a large reply. */
static const uint16_t reflection_ports[] = {
	17,    /* QOTD */
	19,    /* chargen */
	53,    /* DNS */
	111,   /* portmapper */
	123,   /* NTP monlist */
	137,   /* NetBIOS name service */
	161,   /* SNMP */
	389,   /* CLDAP */
	1900,  /* SSDP */
	3702,  /* WS-Discovery */
	5353,  /* mDNS */
	11211, /* memcached */
	27015, /* Steam / Source engine A2S */
};

enum vector { V_SYN, V_UDP_REFLECTION, V_UDP, V_ICMP, V_COUNT };

static const char *const vector_kind[V_COUNT] = { "syn-flood", "udp-reflection", "udp-flood", "icmp-flood" };

struct ddos_counter {
	struct mm_addr dst;
	uint64_t count, err;      /* packets (space-saving estimate and its overestimate bound) */
	uint64_t bytes, flows;
	uint64_t vec_packets[V_COUNT];
	uint64_t first_ns, last_ns;
	uint32_t heap_pos;
	uint16_t refl_port, syn_port; /* majority candidates (Misra-Gries) */
	uint32_t refl_votes, syn_votes;
	struct det_hll sources;
	struct det_cover src_cover;
	struct mm_alert_example ex[MM_ALERT_MAX_EXAMPLES];
	unsigned n_ex;
};

struct ddos_key {
	struct mm_addr dst;
};

struct ddos_index {
	struct det_hdr h;
	struct ddos_key k;
	uint32_t counter;
};

struct ddos_base {
	struct det_hdr h;
	struct ddos_key k;
	double pps;       /* EWMA of packets/s over the windows it was tracked */
	uint64_t attack_until; /* raised for this destination: quiet until then */
};

struct ddos_state {
	struct ddos_counter *c;
	uint32_t *heap;          /* counter numbers, min-heap by count */
	uint32_t n, k;
	struct det_table index, base;
	uint64_t win_start;
	uint8_t reflection[65536 / 8];
};

static int ddos_init(struct mm_detect *d, size_t mem)
{
	struct ddos_state *s = calloc(1, sizeof(*s));
	/* Per tracked destination: its counter, heap slot and two index slots. */
	size_t per = sizeof(struct ddos_counter) + sizeof(uint32_t) + 2 * sizeof(struct ddos_index);
	uint32_t k = d->cfg.ddos.top_k;
	size_t counters;
	int rc;

	if (!s)
		return mm_fail(MM_ENOMEM, "detect: ddos state");
	/* Half the share for the top-k, half for baselines; k shrinks to fit (16 at least). */
	if ((size_t)k * per > mem / 2)
		k = mem / 2 / per > 16 ? (uint32_t)(mem / 2 / per) : 16;
	counters = (size_t)k * sizeof(struct ddos_counter);
	d->state[MM_DET_DDOS] = s;
	s->k = k;
	s->c = calloc(k, sizeof(*s->c));
	s->heap = calloc(k, sizeof(*s->heap));
	if (!s->c || !s->heap)
		return mm_fail(MM_ENOMEM, "detect: ddos top-%u counters", k);
	d->stats.memory_used += counters + k * sizeof(uint32_t);
	for (size_t i = 0; i < sizeof(reflection_ports) / sizeof(reflection_ports[0]); i++)
		s->reflection[reflection_ports[i] / 8] |= (uint8_t)(1u << (reflection_ports[i] % 8));
	/* The index must hold k keys below its load cap; baselines get what is left. */
	rc = det_table_init(&s->index, sizeof(struct ddos_index), sizeof(struct ddos_key),
			    (size_t)k * 2 * sizeof(struct ddos_index) + 1, d, MM_DET_DDOS);
	if (rc == 0)
		rc = det_table_init(&s->base, sizeof(struct ddos_base), sizeof(struct ddos_key),
				    mem - (size_t)k * per > mem / 4 ? mem - (size_t)k * per : mem / 4, d, MM_DET_DDOS);
	return rc;
}

static void heap_swap(struct ddos_state *s, uint32_t i, uint32_t j)
{
	uint32_t t = s->heap[i];

	s->heap[i] = s->heap[j];
	s->heap[j] = t;
	s->c[s->heap[i]].heap_pos = i;
	s->c[s->heap[j]].heap_pos = j;
}

/* Counts only grow, so a counter only ever moves down. */
static void heap_down(struct ddos_state *s, uint32_t i)
{
	for (;;) {
		uint32_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < s->n && s->c[s->heap[l]].count < s->c[s->heap[m]].count)
			m = l;
		if (r < s->n && s->c[s->heap[r]].count < s->c[s->heap[m]].count)
			m = r;
		if (m == i)
			return;
		heap_swap(s, i, m);
		i = m;
	}
}

static void heap_up(struct ddos_state *s, uint32_t i)
{
	while (i > 0 && s->c[s->heap[(i - 1) / 2]].count > s->c[s->heap[i]].count) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void vote(uint16_t *cand, uint32_t *votes, uint16_t port)
{
	if (*votes == 0)
		*cand = port;
	if (*cand == port)
		(*votes)++;
	else
		(*votes)--;
}

static struct ddos_counter *counter_for(struct mm_detect *d, struct ddos_state *s, const struct mm_flow *f)
{
	struct ddos_key k;
	struct ddos_index *ix;
	struct ddos_counter *c;
	bool created;
	uint64_t floor_count = 0;
	uint32_t num;

	memset(&k, 0, sizeof(k));
	k.dst = f->dst;
	ix = det_table_get_h(&s->index, &k, d->cur.h_dst, d->now, &created);
	if (!created)
		return &s->c[ix->counter];
	if (s->n < s->k) {
		num = s->n;
		s->heap[s->n] = num;
		s->c[num].heap_pos = s->n++;
	} else {
		/* Space-saving: the least counted destination gives its counter up. */
		struct ddos_key old;

		num = s->heap[0];
		floor_count = s->c[num].count;
		memset(&old, 0, sizeof(old));
		old.dst = s->c[num].dst;
		det_table_remove(&s->index, det_table_find(&s->index, &old));
		/* The removal may have shifted the new key's entry: find it again. */
		ix = det_table_find_h(&s->index, &k, d->cur.h_dst);
	}
	ix->counter = num;
	c = &s->c[num];
	{
		uint32_t pos = c->heap_pos;

		memset(c, 0, sizeof(*c));
		c->heap_pos = pos;
	}
	c->dst = f->dst;
	c->count = c->err = floor_count;
	c->first_ns = f->first_ns;
	heap_up(s, c->heap_pos); /* a new leaf counts 0: it may belong above its parent */
	return c;
}

static void ddos_flow(struct mm_detect *d, const struct mm_flow *f)
{
	struct ddos_state *s = d->state[MM_DET_DDOS];
	struct ddos_counter *c = counter_for(d, s, f);
	/* A flow counts whole in the window it is exported in: while a flood
	 * lasts, every window receives the flows that end in it, so the
	 * windows' sums are the flood's rate (long flows make it lumpy, which
	 * min_sources guards against). */
	uint64_t pk = f->fwd_packets ? f->fwd_packets : 1;

	c->count += pk;
	c->bytes += f->fwd_bytes;
	c->flows++;
	if (f->first_ns < c->first_ns)
		c->first_ns = f->first_ns;
	if (f->last_ns > c->last_ns)
		c->last_ns = f->last_ns;
	if (f->proto == 6 && (f->fwd_tcp_flags & 0x12) == 0x02) {
		c->vec_packets[V_SYN] += pk;
		vote(&c->syn_port, &c->syn_votes, f->dst_port);
	} else if (f->proto == 17 && (s->reflection[f->src_port / 8] & (1u << (f->src_port % 8)))) {
		c->vec_packets[V_UDP_REFLECTION] += pk;
		vote(&c->refl_port, &c->refl_votes, f->src_port);
	} else if (f->proto == 17) {
		c->vec_packets[V_UDP] += pk;
	} else if (f->proto == 1 || f->proto == 58) {
		c->vec_packets[V_ICMP] += pk;
	}
	det_hll_add(&c->sources, d->cur.h_src);
	det_cover_add(&c->src_cover, &f->src);
	det_example_keep(c->ex, &c->n_ex, f);
	heap_down(s, c->heap_pos);
}

static const char *reflection_service(uint16_t port)
{
	switch (port) {
	case 17: return "QOTD";
	case 19: return "chargen";
	case 53: return "DNS";
	case 111: return "portmapper";
	case 123: return "NTP";
	case 137: return "NetBIOS";
	case 161: return "SNMP";
	case 389: return "CLDAP";
	case 1900: return "SSDP";
	case 3702: return "WS-Discovery";
	case 5353: return "mDNS";
	case 11211: return "memcached";
	case 27015: return "Steam A2S";
	}
	return "UDP";
}

static void ddos_raise(struct mm_detect *d, const struct ddos_counter *c, enum vector v, double pps, double bps,
		  double fps, double baseline, double share)
{
	struct mm_alert a;
	char dst[MM_ADDR_STRLEN], srcs[MM_PREFIX_STRLEN], win[32], what[96];
	double sources = det_hll_estimate(&c->sources);
	double peak = fmax(pps / d->cfg.ddos.min_pps, fmax(bps / d->cfg.ddos.min_bps, fps / d->cfg.ddos.min_fps));

	det_alert_init(d, &a, MM_DET_DDOS, vector_kind[v]);
	det_cover_prefix(&c->src_cover, &a.src);
	det_alert_host(&a.dst, &c->dst);
	a.first_ns = c->first_ns;
	a.last_ns = c->last_ns;
	a.ev.flows = c->flows;
	a.ev.packets = c->count - c->err;
	a.ev.bytes = c->bytes;
	a.ev.hosts = (uint64_t)llround(sources);
	a.ev.rate = pps;
	a.ev.score = share;
	a.severity = peak >= 10 ? MM_SEV_CRITICAL : MM_SEV_HIGH;
	a.confidence = fmin(0.99, 0.5 + 0.5 * share);
	det_alert_examples(&a, c->ex, c->n_ex);
	det_alert_attck(&a, "T1498");
	switch (v) {
	case V_SYN:
		a.proto = 6;
		a.port = c->syn_port;
		det_alert_attck(&a, "T1498.001");
		snprintf(what, sizeof(what), "TCP SYN without ACK (SYN flood, mostly to port %u)", c->syn_port);
		break;
	case V_UDP_REFLECTION:
		a.proto = 17;
		a.port = c->refl_port;
		det_alert_attck(&a, "T1498.002");
		snprintf(what, sizeof(what), "UDP from source port %u (%s reflection)", c->refl_port,
			 reflection_service(c->refl_port));
		break;
	case V_UDP:
		a.proto = 17;
		det_alert_attck(&a, "T1498.001");
		snprintf(what, sizeof(what), "UDP not from a reflection port (UDP flood)");
		break;
	default:
		a.proto = mm_addr_is_v4(&c->dst) ? 1 : 58;
		det_alert_attck(&a, "T1498.001");
		snprintf(what, sizeof(what), "ICMP (ICMP flood)");
		break;
	}
	mm_addr_format(&c->dst, dst);
	mm_prefix_format(&a.src, srcs);
	det_explain(&a, "%s received %.0f packets/s (%.1f Mbit/s, %.0f flows/s) over %s, %.0f%% %s, from ~%.0f sources "
		 "in %s; baseline %.0f packets/s",
		 dst, pps, bps / 1e6, fps, det_duration_text(d->cfg.ddos.window_ns, win), share * 100, what, sources,
		 srcs, baseline);
	det_emit(d, &a);
}

static void judge(struct mm_detect *d, struct ddos_state *s, const struct ddos_counter *c, double secs)
{
	const struct mm_detect_config *cfg = &d->cfg;
	double pps = (double)(c->count - c->err) / secs, bps = (double)c->bytes * 8 / secs;
	double fps = (double)c->flows / secs, share = 0;
	struct ddos_key k;
	struct ddos_base *b;
	bool created, over;
	enum vector best = V_SYN;

	memset(&k, 0, sizeof(k));
	k.dst = c->dst;
	b = det_table_get(&s->base, &k, d->now, &created);
	over = pps >= cfg->ddos.min_pps || bps >= cfg->ddos.min_bps || fps >= cfg->ddos.min_fps;
	if (over && pps >= cfg->ddos.baseline_factor * b->pps) {
		for (unsigned v = 0; v < V_COUNT; v++) {
			double sh = c->count > c->err ? (double)c->vec_packets[v] / (double)(c->count - c->err) : 0;

			if (sh > share) {
				share = fmin(1.0, sh);
				best = (enum vector)v;
			}
		}
		if (share >= cfg->ddos.min_share && det_hll_estimate(&c->sources) >= cfg->ddos.min_sources) {
			if (d->now >= b->attack_until)
				ddos_raise(d, c, best, pps, bps, fps, b->pps, share);
			/* One alert per attack: quiet while it goes on, and a while after. */
			b->attack_until = d->now + 30 * cfg->ddos.window_ns;
			return;
		}
	}
	/* Only ordinary windows teach the baseline: not an attack, nor its ramp-up. */
	if (!over)
		b->pps += cfg->ddos.ewma_alpha * (pps - b->pps);
}

static void close_window(struct mm_detect *d, struct ddos_state *s)
{
	double secs = (double)d->cfg.ddos.window_ns / 1e9;

	for (uint32_t i = 0; i < s->n; i++)
		judge(d, s, &s->c[i], secs);
	for (uint32_t i = 0; i < s->n; i++) {
		struct ddos_key k;

		memset(&k, 0, sizeof(k));
		k.dst = s->c[i].dst;
		det_table_remove(&s->index, det_table_find(&s->index, &k));
	}
	s->n = 0;
}

static void ddos_prefetch(struct mm_detect *d, const struct mm_flow *f, struct det_flow_info *fi)
{
	(void)f;
	struct ddos_state *s = d->state[MM_DET_DDOS];

	det_table_prefetch(&s->index, fi->h_dst);
}

static void ddos_tick(struct mm_detect *d, uint64_t now)
{
	struct ddos_state *s = d->state[MM_DET_DDOS];
	uint64_t w = d->cfg.ddos.window_ns;

	if (s->win_start == 0)
		s->win_start = now - now % w;
	if (now >= s->win_start + w) {
		close_window(d, s);
		s->win_start = now - now % w;
	}
	det_table_sweep(&s->base, now, 24 * 3600 * MM_NS_PER_SEC, d->sweep_budget);
}

static void ddos_flush(struct mm_detect *d)
{
	struct ddos_state *s = d->state[MM_DET_DDOS];

	close_window(d, s);
}

static void ddos_release(struct mm_detect *d)
{
	struct ddos_state *s = d->state[MM_DET_DDOS];

	det_table_release(&s->index);
	det_table_release(&s->base);
	free(s->c);
	free(s->heap);
	free(s);
	d->state[MM_DET_DDOS] = NULL;
}

const struct det_ops det_ddos_ops = {
	.name = "ddos",
	.mem_share = 10,
	.init = ddos_init,
	.prefetch = ddos_prefetch,
	.flow = ddos_flow,
	.tick = ddos_tick,
	.flush = ddos_flush,
	.release = ddos_release,
};
