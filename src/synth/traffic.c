/*
 * Deterministic synthetic traffic for the demo, tests and benchmarks. A
 * fixed number of conversation slots run side by side; each slot plays one
 * conversation (TCP with handshake, data and close, DNS/NTP/QUIC-like UDP,
 * ICMP echo) after another, and a heap merges the slots' packets in time
 * order. Every conversation is one distinct 5-tuple that a flow meter with
 * default timeouts sees as exactly one flow, so the summary is ground truth.
 */
#include "mamori/synth.h"

#include "mamori/capture.h"
#include "mamori/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull
#define NS_PER_US 1000ull

#define MAX_CONCURRENCY 1000000u
#define MIN_SNAPLEN 80u          /* Ethernet + 802.1Q + IPv6 + TCP headers are 78 bytes */
#define MAX_SNAPLEN 262144u
#define MAX_PACKETS 100000000000ull
#define MAX_DURATION_S (10.0 * 365 * 86400)

/*
 * Conversation i gets a distinct (client, client port) pair: an affine
 * permutation of i over N_CLIENTS × N_CLIENT_PORTS. The stride must be
 * coprime to that product (2^26 · 63): odd, and divisible by neither 3 nor 7.
 */
#define N_CLIENTS 65536u
#define N_CLIENT_PORTS 64512u /* 1024..65535 */
#define TUPLE_SPACE ((uint64_t)N_CLIENTS * N_CLIENT_PORTS)
#define TUPLE_STRIDE 2654435761ull
#define N_SERVERS 4096u

/* Timing bounds that keep one conversation one flow under default meter timeouts. */
#define MAX_GAP_NS (30 * NS_PER_S)    /* below the 60 s UDP/ICMP idle timeout */
#define MAX_SPAN_NS (1500 * NS_PER_S) /* below the 1800 s active timeout */
#define MIN_GAP_NS NS_PER_US
#define MAX_FLOW_PACKETS 1000000u

#define FRAME_CAP (65535u + 64u)
#define ETH_LINK_LEN 14
#define VLAN_TAG_LEN 4
/* Mean think and burst gaps as multiples of the pace; measured to make captures span duration_s. */
#define THINK_SHARE 2.0
#define BURST_SHARE 0.5
#define MSS_V4 1460
#define MSS_V6 1440
#define PARETO_ALPHA 1.3
#define PARETO_MAX 500.0

enum { TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08, TCP_ACK = 0x10 };
enum { PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_ICMPV6 = 58 };
enum { SIDE_CLIENT = 0, SIDE_SERVER = 1 };

enum conv_kind { CONV_TCP, CONV_TCP_REJECTED, CONV_DNS, CONV_NTP, CONV_QUIC, CONV_ECHO };

/* Shares of conversations by kind, and the packets each light kind takes. */
#define SHARE_TCP 0.55
#define SHARE_TCP_REJECTED 0.03 /* of TCP: SYN answered by RST */
#define SHARE_TCP_RST_CLOSE 0.07 /* of TCP: ended by RST instead of FINs */
#define SHARE_DNS 0.20
#define SHARE_NTP 0.05
#define SHARE_QUIC 0.12
#define SHARE_DNS_UNANSWERED 0.03
#define ECHO_MEAN_PACKETS 5.7 /* request and reply, 1 + geometric(0.65) times */
#define ECHO_MAX_PAIRS 20
#define TCP_MIN_PACKETS 8u /* handshake 3, request and reply 2, FIN close 3 */
#define QUIC_MIN_PACKETS 4u

enum tcp_phase { TP_SYN, TP_SYNACK, TP_ACK, TP_DATA, TP_FIN2, TP_LAST_ACK, TP_DONE };
/* Phases of the UDP and ICMP conversations. */
enum { UP_FIRST, UP_REPLY, UP_DATA, UP_LAST, UP_DONE };

/* How long before a packet it follows the previous one of its conversation. */
enum gap_kind { GAP_RTT, GAP_BURST, GAP_THINK, GAP_PING };

/* The next packet of a conversation, prepared when it is scheduled. */
struct pending {
	uint32_t seq, ack;
	uint16_t payload_len;
	uint16_t icmp_seq;
	uint8_t side;       /* SIDE_CLIENT or SIDE_SERVER sends it */
	uint8_t tcp_flags;
	uint8_t icmp_type;
	uint8_t gap;        /* enum gap_kind before it */
};

struct conv {
	uint64_t next_ns;   /* when pkt is due */
	uint64_t end_by_ns; /* span cap: later gaps shrink to MIN_GAP_NS */
	uint64_t pace_ns;   /* mean think time */
	struct mm_addr client, server;
	struct pending pkt;
	uint32_t seq[2];    /* TCP: next sequence number per side */
	uint32_t data_left; /* TCP/QUIC data packets; echo requests */
	uint32_t resp_left; /* TCP: segments left in the response being sent */
	uint32_t rtt_ns;
	uint16_t sport, dport; /* ICMP: sport is the echo identifier */
	uint16_t vlan;
	uint16_t mss;
	uint8_t kind, proto, phase, unacked;
	uint8_t bulk_side;  /* TCP: who sends the large replies */
	uint8_t closer;     /* TCP: who ends the connection */
	uint8_t cut_short;  /* TCP: ends with RST, not FINs; DNS: never answered */
	uint8_t server_ttl;
};

/* The due time is copied into the heap so that sifting stays in one small array. */
struct heap_entry {
	uint64_t due;
	uint32_t slot;
};

struct rng {
	uint64_t s[4];
};

struct gen {
	struct mm_synth_config cfg;
	struct rng rng;
	struct conv *convs;
	struct heap_entry *heap; /* min-heap on (due, slot) */
	size_t n_heap;
	uint64_t n_started;
	uint64_t packets_left;  /* of cfg.n_packets not yet promised to a conversation */
	double pace_ns;         /* mean gap inside a conversation for the requested span */
	uint64_t tuple_offset;
	struct mm_pcap_writer *w;
	struct mm_synth_summary sum;
	uint8_t frame[FRAME_CAP];
};

/* splitmix64 expands the seed; xoshiro256** draws (Blackman & Vigna). */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform in [0, 1). */
static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n) by Lemire's multiply-shift; the bias is below 2^-40 for our n. */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

static uint32_t rng_range(struct rng *r, uint32_t lo, uint32_t hi)
{
	return lo + (uint32_t)rng_below(r, (uint64_t)hi - lo + 1);
}

static double rng_exp(struct rng *r, double mean)
{
	return -mean * log1p(-rng_unit(r));
}

static bool rng_chance(struct rng *r, double p)
{
	return rng_unit(r) < p;
}

/* Pareto with mean 1 (before the cap): most conversations short, a few elephants. */
static double rng_pareto(struct rng *r)
{
	double xm = (PARETO_ALPHA - 1) / PARETO_ALPHA;
	double v = xm / pow(1 - rng_unit(r), 1 / PARETO_ALPHA);

	return v < PARETO_MAX ? v : PARETO_MAX;
}

void mm_synth_config_default(struct mm_synth_config *cfg)
{
	*cfg = (struct mm_synth_config){
		.seed = 1,
		.n_flows = 5000,
		.n_packets = 100000,
		.start_ns = 1705309200ull * NS_PER_S, /* 2024-01-15 09:00:00 UTC */
		.duration_s = 300,
		.concurrency = 400,
		.ipv6_share = 0.2,
		.snaplen = 96,
	};
}

static int check_config(const struct mm_synth_config *cfg)
{
	if (cfg->n_flows == 0 || cfg->n_flows > TUPLE_SPACE)
		return mm_fail(MM_EINVAL, "synth: flows %llu outside 1..%llu",
			       (unsigned long long)cfg->n_flows, (unsigned long long)TUPLE_SPACE);
	if (cfg->n_packets > MAX_PACKETS)
		return mm_fail(MM_EINVAL, "synth: packets %llu above the cap %llu",
			       (unsigned long long)cfg->n_packets, MAX_PACKETS);
	if (cfg->concurrency == 0 || cfg->concurrency > MAX_CONCURRENCY)
		return mm_fail(MM_EINVAL, "synth: concurrency %u outside 1..%u", cfg->concurrency,
			       MAX_CONCURRENCY);
	if (!(cfg->ipv6_share >= 0 && cfg->ipv6_share <= 1))
		return mm_fail(MM_EINVAL, "synth: ipv6 share %g outside 0..1", cfg->ipv6_share);
	if (!(cfg->duration_s > 0 && cfg->duration_s <= MAX_DURATION_S))
		return mm_fail(MM_EINVAL, "synth: duration %g s outside (0, %g]", cfg->duration_s,
			       MAX_DURATION_S);
	/* Leave room for the span and the tail of the last conversations before 2106. */
	if (cfg->start_ns / NS_PER_S + 2 * MAX_DURATION_S > (double)UINT32_MAX)
		return mm_fail(MM_EINVAL, "synth: start time %llu ns too late for pcap timestamps",
			       (unsigned long long)cfg->start_ns);
	if (cfg->snaplen < MIN_SNAPLEN || cfg->snaplen > MAX_SNAPLEN)
		return mm_fail(MM_EINVAL, "synth: snaplen %u outside %u..%u", cfg->snaplen, MIN_SNAPLEN,
			       MAX_SNAPLEN);
	return 0;
}

/* Ties go to the lower slot, which keeps the output deterministic. */
static bool entry_before(const struct heap_entry *a, const struct heap_entry *b)
{
	return a->due < b->due || (a->due == b->due && a->slot < b->slot);
}

static void heap_sift_down(struct gen *g, size_t i)
{
	struct heap_entry *h = g->heap, t;

	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < g->n_heap && entry_before(&h[l], &h[m]))
			m = l;
		if (l + 1 < g->n_heap && entry_before(&h[l + 1], &h[m]))
			m = l + 1;
		if (m == i)
			return;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void heap_build(struct gen *g)
{
	for (size_t i = g->n_heap / 2; i-- > 0;)
		heap_sift_down(g, i);
}

static void heap_pop(struct gen *g)
{
	g->heap[0] = g->heap[--g->n_heap];
	heap_sift_down(g, 0);
}

/*
 * Packets promised to a heavy (TCP or QUIC) conversation: the mean that
 * still meets cfg.n_packets after the light kinds take their share, times
 * a heavy-tailed factor. Recomputed per conversation, so the total tracks
 * the target however the draws fall.
 */
static uint32_t draw_budget(struct gen *g, uint32_t min)
{
	double flows_left = (double)(g->cfg.n_flows - g->n_started);
	double light = SHARE_DNS * 2 + SHARE_NTP * 2 + SHARE_TCP * SHARE_TCP_REJECTED * 2 +
		       (1 - SHARE_TCP - SHARE_DNS - SHARE_NTP - SHARE_QUIC) * ECHO_MEAN_PACKETS;
	double heavy_share = SHARE_TCP * (1 - SHARE_TCP_REJECTED) + SHARE_QUIC;
	double mean = ((double)g->packets_left / flows_left - light) / heavy_share;
	double b = mean * rng_pareto(&g->rng);

	if (b > (double)g->packets_left)
		b = (double)g->packets_left;
	if (b > MAX_FLOW_PACKETS)
		b = MAX_FLOW_PACKETS;
	return b < min ? min : (uint32_t)b;
}

static uint16_t pick_tcp_port(struct rng *r)
{
	static const uint16_t ports[] = { 443, 443, 443, 443, 443, 443, 443, 443, 443, 443, 443, 443,
					  80, 80, 80, 80, 22, 25, 993, 8080, 3389, 5432 };

	return ports[rng_below(r, sizeof(ports) / sizeof(ports[0]))];
}

static void set_v4(struct mm_addr *a, uint32_t base, uint32_t host)
{
	mm_addr_set_v4_u32(a, base + host);
}

static void set_v6(struct mm_addr *a, uint16_t net, uint32_t host)
{
	/* 2001:db8:NET::HOST, the documentation prefix (RFC 3849) */
	static const uint8_t prefix[4] = { 0x20, 0x01, 0x0d, 0xb8 };

	memset(a->b, 0, 16);
	memcpy(a->b, prefix, 4);
	a->b[4] = (uint8_t)(net >> 8);
	a->b[5] = (uint8_t)net;
	a->b[12] = (uint8_t)(host >> 24);
	a->b[13] = (uint8_t)(host >> 16);
	a->b[14] = (uint8_t)(host >> 8);
	a->b[15] = (uint8_t)host;
}

/*
 * Clients live in 10.16.0.0/16 or 2001:db8:c::/48. Servers are few and
 * popular ones recur (198.19.0.0/20, 2001:db8:5::/48); echo targets take
 * their address from the port slot so that no two echo conversations share
 * an address pair, which is all an ICMP flow key has.
 */
static void assign_endpoints(struct gen *g, struct conv *c, bool v6)
{
	uint64_t x = (g->n_started * TUPLE_STRIDE + g->tuple_offset) % TUPLE_SPACE;
	uint32_t client = (uint32_t)(x % N_CLIENTS), slot = (uint32_t)(x / N_CLIENTS);
	double u = rng_unit(&g->rng);
	uint32_t server = (uint32_t)(N_SERVERS * u * u * u);

	if (v6)
		set_v6(&c->client, 0xc, client + 1);
	else
		set_v4(&c->client, 0x0a100000u, client);
	if (c->kind == CONV_ECHO) {
		if (v6)
			set_v6(&c->server, 0xec, slot + 1);
		else
			set_v4(&c->server, 0xc6120000u, slot);
	} else if (v6) {
		set_v6(&c->server, 0x5, server + 1);
	} else {
		set_v4(&c->server, 0xc6130000u, server);
	}
	c->sport = (uint16_t)(1024 + slot);
	c->vlan = client % 10 == 0 ? (uint16_t)(100 + client / 10 % 4) : 0;
}

static enum conv_kind pick_kind(struct rng *r)
{
	double u = rng_unit(r);

	if (u < SHARE_TCP)
		return rng_chance(r, SHARE_TCP_REJECTED) ? CONV_TCP_REJECTED : CONV_TCP;
	u -= SHARE_TCP;
	if (u < SHARE_DNS)
		return CONV_DNS;
	u -= SHARE_DNS;
	if (u < SHARE_NTP)
		return CONV_NTP;
	u -= SHARE_NTP;
	return u < SHARE_QUIC ? CONV_QUIC : CONV_ECHO;
}

static void count_flow(struct mm_synth_summary *sum, enum conv_kind kind)
{
	sum->flows++;
	if (kind == CONV_TCP || kind == CONV_TCP_REJECTED)
		sum->tcp_flows++;
	else if (kind == CONV_ECHO)
		sum->icmp_flows++;
	else
		sum->udp_flows++;
}


static void take_packets(struct gen *g, uint32_t n)
{
	g->packets_left -= n < g->packets_left ? n : g->packets_left;
}

static void tcp_send(struct conv *c, struct pending *p, uint8_t side, uint8_t flags, uint16_t len)
{
	p->side = side;
	p->tcp_flags = flags;
	p->payload_len = len;
	p->seq = c->seq[side];
	p->ack = flags & TCP_ACK ? c->seq[!side] : 0;
	c->seq[side] += len + ((flags & (TCP_SYN | TCP_FIN)) ? 1u : 0u);
}

/* Returns the packets planned. A rejected connection is SYN and RST only. */
static uint32_t tcp_begin(struct gen *g, struct conv *c)
{
	uint32_t budget;

	c->proto = PROTO_TCP;
	c->dport = pick_tcp_port(&g->rng);
	c->seq[SIDE_CLIENT] = (uint32_t)rng_next(&g->rng);
	c->seq[SIDE_SERVER] = (uint32_t)rng_next(&g->rng);
	if (c->kind == CONV_TCP_REJECTED)
		return 2;
	budget = draw_budget(g, TCP_MIN_PACKETS);
	c->cut_short = rng_chance(&g->rng, SHARE_TCP_RST_CLOSE);
	c->data_left = budget - 3 - (c->cut_short ? 1 : 3);
	c->bulk_side = rng_chance(&g->rng, 0.1) ? SIDE_CLIENT : SIDE_SERVER;
	c->closer = rng_chance(&g->rng, 0.6) ? SIDE_CLIENT : SIDE_SERVER;
	return budget;
}

/* One packet of the data phase: a request, its response in MSS segments, an ACK per two. */
static void tcp_data(struct gen *g, struct conv *c, struct pending *p)
{
	uint8_t req_side = !c->bulk_side;

	if (c->resp_left == 0 && c->unacked == 0) {
		tcp_send(c, p, req_side, TCP_PSH | TCP_ACK, (uint16_t)rng_range(&g->rng, 80, 700));
		p->gap = GAP_THINK;
		c->resp_left = rng_chance(&g->rng, 0.5)
				       ? c->data_left
				       : 1 + (uint32_t)rng_below(&g->rng, c->data_left * 2 / 3 + 1);
	} else if (c->unacked >= 2 || c->resp_left == 0) {
		tcp_send(c, p, req_side, TCP_ACK, 0);
		p->gap = GAP_BURST;
		c->unacked = 0;
	} else {
		bool last = c->resp_left == 1;
		tcp_send(c, p, c->bulk_side, last ? TCP_PSH | TCP_ACK : TCP_ACK,
			 last ? (uint16_t)rng_range(&g->rng, 1, c->mss) : c->mss);
		p->gap = c->unacked == 0 ? GAP_RTT : GAP_BURST;
		c->resp_left--;
		c->unacked++;
	}
	c->data_left--;
}

static bool tcp_next(struct gen *g, struct conv *c)
{
	struct pending *p = &c->pkt;

	p->gap = GAP_RTT;
	switch (c->phase) {
	case TP_SYN:
		tcp_send(c, p, SIDE_CLIENT, TCP_SYN, 0);
		c->phase = TP_SYNACK;
		return true;
	case TP_SYNACK:
		if (c->kind == CONV_TCP_REJECTED) {
			/* A closed port answers RST|ACK with sequence number zero (RFC 9293 §3.10.7.1). */
			tcp_send(c, p, SIDE_SERVER, TCP_RST | TCP_ACK, 0);
			p->seq = 0;
			c->phase = TP_DONE;
			return true;
		}
		tcp_send(c, p, SIDE_SERVER, TCP_SYN | TCP_ACK, 0);
		c->phase = TP_ACK;
		return true;
	case TP_ACK:
		tcp_send(c, p, SIDE_CLIENT, TCP_ACK, 0);
		c->phase = TP_DATA;
		return true;
	case TP_DATA:
		if (c->data_left > 0) {
			tcp_data(g, c, p);
			return true;
		}
		p->gap = GAP_THINK;
		tcp_send(c, p, c->closer, (c->cut_short ? TCP_RST : TCP_FIN) | TCP_ACK, 0);
		c->phase = c->cut_short ? TP_DONE : TP_FIN2;
		return true;
	case TP_FIN2:
		tcp_send(c, p, !c->closer, TCP_FIN | TCP_ACK, 0);
		c->phase = TP_LAST_ACK;
		return true;
	case TP_LAST_ACK:
		tcp_send(c, p, c->closer, TCP_ACK, 0);
		c->phase = TP_DONE;
		return true;
	}
	return false;
}

static uint32_t pair_begin(struct gen *g, struct conv *c)
{
	c->proto = PROTO_UDP;
	c->dport = c->kind == CONV_DNS ? 53 : 123;
	c->cut_short = c->kind == CONV_DNS && rng_chance(&g->rng, SHARE_DNS_UNANSWERED);
	return c->cut_short ? 1 : 2;
}

/* DNS-like (query, then a longer answer) or NTP-like (48-byte request and reply). */
static bool pair_next(struct gen *g, struct conv *c)
{
	struct pending *p = &c->pkt;
	bool dns = c->kind == CONV_DNS;

	switch (c->phase) {
	case UP_FIRST:
		p->side = SIDE_CLIENT;
		p->payload_len = dns ? (uint16_t)rng_range(&g->rng, 28, 60) : 48;
		p->gap = GAP_THINK;
		c->phase = c->cut_short ? UP_DONE : UP_REPLY;
		return true;
	case UP_REPLY:
		p->side = SIDE_SERVER;
		p->payload_len = dns ? (uint16_t)(60 + fmin(rng_exp(&g->rng, 90), 1172)) : 48;
		p->gap = GAP_RTT;
		c->phase = UP_DONE;
		return true;
	}
	return false;
}

static uint32_t quic_begin(struct gen *g, struct conv *c)
{
	uint32_t budget = draw_budget(g, QUIC_MIN_PACKETS);

	c->proto = PROTO_UDP;
	c->dport = 443;
	c->data_left = budget - 3;
	return budget;
}

/* QUIC-like: full-size Initial datagrams both ways, server data, small client ACKs, a close. */
static bool quic_next(struct gen *g, struct conv *c)
{
	struct pending *p = &c->pkt;

	switch (c->phase) {
	case UP_FIRST:
		p->side = SIDE_CLIENT;
		p->payload_len = (uint16_t)rng_range(&g->rng, 1200, 1252);
		p->gap = GAP_THINK;
		c->phase = UP_REPLY;
		return true;
	case UP_REPLY:
		p->side = SIDE_SERVER;
		p->payload_len = (uint16_t)rng_range(&g->rng, 1200, 1252);
		p->gap = GAP_RTT;
		c->phase = c->data_left ? UP_DATA : UP_LAST;
		return true;
	case UP_DATA:
		if (c->unacked >= 3) {
			p->side = SIDE_CLIENT;
			p->payload_len = (uint16_t)rng_range(&g->rng, 35, 60);
			p->gap = GAP_BURST;
			c->unacked = 0;
		} else {
			p->side = SIDE_SERVER;
			p->payload_len = (uint16_t)rng_range(&g->rng, 1200, 1252);
			p->gap = c->unacked == 0 ? GAP_RTT : GAP_BURST;
			c->unacked++;
		}
		if (--c->data_left == 0)
			c->phase = UP_LAST;
		return true;
	case UP_LAST:
		p->side = SIDE_CLIENT;
		p->payload_len = (uint16_t)rng_range(&g->rng, 30, 50);
		p->gap = GAP_THINK;
		c->phase = UP_DONE;
		return true;
	}
	return false;
}

static uint32_t echo_begin(struct gen *g, struct conv *c, bool v6)
{
	uint32_t pairs = 1;

	while (pairs < ECHO_MAX_PAIRS && rng_chance(&g->rng, 0.65))
		pairs++;
	c->proto = v6 ? PROTO_ICMPV6 : PROTO_ICMP;
	c->sport = (uint16_t)rng_next(&g->rng); /* echo identifier */
	c->dport = 1;                            /* next echo sequence number */
	c->data_left = pairs;
	return 2 * pairs;
}

/* ping: a request a second, each answered one round trip later. */
static bool echo_next(struct conv *c)
{
	struct pending *p = &c->pkt;
	bool v6 = c->proto == PROTO_ICMPV6;

	if (c->data_left == 0)
		return false;
	p->payload_len = 56;
	p->icmp_seq = c->dport;
	if (c->phase == UP_FIRST || c->phase == UP_DATA) {
		p->side = SIDE_CLIENT;
		p->icmp_type = v6 ? 128 : 8; /* echo request */
		p->gap = c->phase == UP_FIRST ? GAP_THINK : GAP_PING;
		c->phase = UP_REPLY;
	} else {
		p->side = SIDE_SERVER;
		p->icmp_type = v6 ? 129 : 0; /* echo reply */
		p->gap = GAP_RTT;
		c->phase = UP_DATA;
		c->dport++;
		c->data_left--;
	}
	return true;
}

static bool conv_next(struct gen *g, struct conv *c)
{
	switch (c->kind) {
	case CONV_TCP:
	case CONV_TCP_REJECTED: return tcp_next(g, c);
	case CONV_DNS:
	case CONV_NTP: return pair_next(g, c);
	case CONV_QUIC: return quic_next(g, c);
	case CONV_ECHO: return echo_next(c);
	}
	return false;
}

/* Starts conversation number g->n_started in slot c, its first packet due at t. */
static void conv_begin(struct gen *g, struct conv *c, uint64_t t)
{
	bool v6 = rng_chance(&g->rng, g->cfg.ipv6_share);
	uint32_t planned;

	memset(c, 0, sizeof(*c));
	c->kind = (uint8_t)pick_kind(&g->rng);
	assign_endpoints(g, c, v6);
	c->rtt_ns = (uint32_t)(2 * NS_PER_MS * exp(rng_unit(&g->rng) * log(125.0))); /* 2..250 ms */
	c->server_ttl = (uint8_t)((rng_chance(&g->rng, 0.3) ? 128 : 64) - rng_range(&g->rng, 3, 25));
	c->mss = v6 ? MSS_V6 : MSS_V4;
	switch (c->kind) {
	case CONV_TCP:
	case CONV_TCP_REJECTED: planned = tcp_begin(g, c); break;
	case CONV_DNS:
	case CONV_NTP: planned = pair_begin(g, c); break;
	case CONV_QUIC: planned = quic_begin(g, c); break;
	default: planned = echo_begin(g, c, v6); break;
	}
	take_packets(g, planned);
	/* Long conversations think faster, so that none outlives the span cap. */
	c->pace_ns = (uint64_t)fmin(g->pace_ns, (double)MAX_SPAN_NS / 2 / planned);
	c->next_ns = t;
	c->end_by_ns = t + MAX_SPAN_NS;
	count_flow(&g->sum, (enum conv_kind)c->kind);
	g->n_started++;
	MM_BUG(!conv_next(g, c));
}

static uint64_t gap_ns(struct gen *g, const struct conv *c)
{
	double ns = 0;

	switch (c->pkt.gap) {
	case GAP_RTT: ns = c->rtt_ns * (0.45 + 0.1 * rng_unit(&g->rng)); break;
	case GAP_BURST: ns = rng_exp(&g->rng, (double)c->pace_ns * BURST_SHARE); break;
	case GAP_THINK: ns = rng_exp(&g->rng, (double)c->pace_ns * THINK_SHARE); break;
	case GAP_PING: ns = NS_PER_S * (0.99 + 0.02 * rng_unit(&g->rng)); break;
	}
	if (ns > MAX_GAP_NS)
		ns = MAX_GAP_NS;
	if (ns < MIN_GAP_NS || c->next_ns + (uint64_t)ns > c->end_by_ns)
		ns = MIN_GAP_NS;
	return (uint64_t)ns;
}

static int emit(struct gen *g, const struct conv *c)
{
	const struct pending *p = &c->pkt;
	bool from_client = p->side == SIDE_CLIENT;
	bool icmp = c->proto == PROTO_ICMP || c->proto == PROTO_ICMPV6;
	struct mm_packet_spec s = {
		.src = from_client ? c->client : c->server,
		.dst = from_client ? c->server : c->client,
		.sport = icmp ? c->sport : from_client ? c->sport : c->dport,
		.dport = icmp ? p->icmp_seq : from_client ? c->dport : c->sport,
		.proto = c->proto,
		.tcp_flags = p->tcp_flags,
		.tcp_seq = p->seq,
		.tcp_ack = p->ack,
		.icmp_type = p->icmp_type,
		.vlan = c->vlan,
		.payload_len = p->payload_len,
		.ttl = from_client ? 64 : c->server_ttl,
	};
	size_t len = mm_packet_build(&s, g->frame, sizeof(g->frame));

	MM_BUG(len == 0);
	g->sum.packets++;
	g->sum.bytes += len - ETH_LINK_LEN - (c->vlan ? VLAN_TAG_LEN : 0);
	return mm_pcap_writer_write(g->w, c->next_ns, g->frame, (uint32_t)len, (uint32_t)len);
}

static int start_slots(struct gen *g, size_t n_slots)
{
	double mean_span = g->pace_ns * (double)g->cfg.n_packets / (double)g->cfg.n_flows;
	double spread = fmin(fmax(mean_span, 1.0), g->cfg.duration_s * NS_PER_S);

	g->convs = calloc(n_slots, sizeof(*g->convs));
	g->heap = calloc(n_slots, sizeof(*g->heap));
	if (!g->convs || !g->heap)
		return mm_fail(MM_ENOMEM, "synth: %zu conversation slots: out of memory", n_slots);
	/* Stagger the first conversations so the slots do not start in step. */
	for (size_t i = 0; i < n_slots; i++) {
		conv_begin(g, &g->convs[i], g->cfg.start_ns + rng_below(&g->rng, (uint64_t)spread));
		g->heap[i] = (struct heap_entry){ g->convs[i].next_ns, (uint32_t)i };
	}
	g->n_heap = n_slots;
	heap_build(g);
	return 0;
}

/* Emits packets in time order until every conversation has ended. */
static int run(struct gen *g)
{
	while (g->n_heap > 0) {
		struct conv *c = &g->convs[g->heap[0].slot];
		uint64_t now = c->next_ns;
		int rc = emit(g, c);

		if (rc != 0)
			return rc;
		if (conv_next(g, c)) {
			c->next_ns = now + gap_ns(g, c);
		} else if (g->n_started < g->cfg.n_flows) {
			conv_begin(g, c, now + MIN_GAP_NS + (uint64_t)rng_exp(&g->rng, g->pace_ns));
		} else {
			heap_pop(g);
			continue;
		}
		g->heap[0].due = c->next_ns;
		heap_sift_down(g, 0);
	}
	return 0;
}

int mm_synth_write_pcap(const struct mm_synth_config *cfg, const char *path,
			struct mm_synth_summary *summary)
{
	struct gen *g = NULL;
	size_t n_slots;
	int rc;

	memset(summary, 0, sizeof(*summary));
	rc = check_config(cfg);
	if (rc != 0)
		return rc;
	g = calloc(1, sizeof(*g));
	if (!g)
		return mm_fail(MM_ENOMEM, "synth: out of memory");
	g->cfg = *cfg;
	rng_seed(&g->rng, cfg->seed);
	n_slots = cfg->concurrency < cfg->n_flows ? cfg->concurrency : (size_t)cfg->n_flows;
	g->packets_left = cfg->n_packets;
	g->pace_ns = (double)n_slots * cfg->duration_s * NS_PER_S /
		     (double)(cfg->n_packets ? cfg->n_packets : cfg->n_flows);
	g->tuple_offset = rng_below(&g->rng, TUPLE_SPACE);
	rc = mm_pcap_writer_open(&g->w, path, MM_LINK_ETHERNET, cfg->snaplen);
	if (rc != 0)
		goto out;
	rc = start_slots(g, n_slots);
	if (rc == 0)
		rc = run(g);
	if (rc != 0)
		goto out;
	rc = mm_pcap_writer_close(g->w);
	g->w = NULL;
	if (rc == 0)
		*summary = g->sum;
out:
	mm_pcap_writer_discard(g->w);
	free(g->convs);
	free(g->heap);
	free(g);
	return rc;
}
