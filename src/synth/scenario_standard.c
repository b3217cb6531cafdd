/*
 * The standard scenario (docs/scenario.md): a domestic network of a few
 * thousand hosts and a handful of public servers behind one border, six
 * hours of ordinary traffic with the benign look-alikes a naive detector
 * trips on, and about fifty labelled attacks, several per detector with
 * varied rates and stealthy variants. Attack times are fractions of the
 * scenario's length; background volume follows --scale.
 */
#include "synth/scenario_int.h"

#include "mamori/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_ICMPV6 = 58 };

/* Local time of the domestic network (UTC+9): the diurnal curve follows it. */
#define TZ_OFFSET_S (9 * 3600)

/* --- address plan ------------------------------------------------------------- */

/*
 * Foreign address pools, each a stream of addresses drawn from the seed:
 * member k of pool p is the same address every time it is drawn.
 */
enum pool {
	POOL_WEB = 1, POOL_WEB6, POOL_VIDEO, POOL_VIDEO6, POOL_CLOUD, POOL_RESOLVER, POOL_RESOLVER6,
	POOL_NS, POOL_NS6, POOL_MX, POOL_IMAP, POOL_SSH, POOL_PUSH, POOL_STUN, POOL_NTP,
	POOL_NTP6, POOL_UPDATE, POOL_UPDATE6, POOL_DLCDN, POOL_MONITOR, POOL_MONITOR6,
	POOL_INCLIENT, POOL_INCLIENT6, POOL_MTA, POOL_PARTNER, POOL_ADMIN, POOL_RDPUSER,
	POOL_CLIENT,     /* domestic client traits */
	POOL_ADVERSARY,  /* attackers (not intel): 5/8, 45/8, 185/8, 193/8, 2a0e:8000::/17 */
	POOL_INTEL,      /* indicator space: 91/8, 194/8, 2a0e:1c80::/32 */
	POOL_ANY,        /* random foreign hosts: floods, worms, IBR */
};

#define N_WEB 20000
#define N_WEB6 3000
#define N_QUIC 500 /* the most popular web servers also speak QUIC */
#define N_NS 5000
#define N_NS6 800
#define N_INCLIENT 40000
#define N_INCLIENT6 5000

/* First octets no foreign background host has: domestic, special-use, and the adversaries' space. */
static bool foreign_octet(unsigned o)
{
	switch (o) {
	case 0: case 5: case 10: case 45: case 91: case 100: case 127: case 169: case 172:
	case 185: case 192: case 193: case 194: case 198: case 203:
		return false;
	default:
		return o >= 1 && o <= 223;
	}
}

static void v4(struct mm_addr *a, unsigned o1, unsigned o2, unsigned o3, unsigned o4)
{
	mm_addr_set_v4_u32(a, (uint32_t)o1 << 24 | (uint32_t)o2 << 16 | (uint32_t)o3 << 8 | o4);
}

/* hi = the first four 16-bit groups, lo = the interface identifier. */
static void v6(struct mm_addr *a, uint64_t hi, uint64_t lo)
{
	for (int i = 0; i < 8; i++) {
		a->b[i] = (uint8_t)(hi >> (56 - 8 * i));
		a->b[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
	}
}

/* A host octet that is neither the network nor the broadcast address of a /24. */
static unsigned host_octet(uint64_t x)
{
	return 1 + (unsigned)(x % 254);
}

static void foreign_v4(struct srng *r, struct mm_addr *a)
{
	for (;;) {
		uint64_t x = srng_next(r);
		unsigned o1 = (unsigned)(x >> 56);

		if (foreign_octet(o1)) {
			v4(a, o1, (unsigned)(x >> 48) & 0xff, (unsigned)(x >> 40) & 0xff, host_octet(x));
			return;
		}
	}
}

/* 2400::/12 (APNIC), 2600::/12 (ARIN), 2800::/12 (LACNIC), 2a00::/12 (RIPE) but 2a0e::/16. */
static void foreign_v6(struct srng *r, struct mm_addr *a, bool server)
{
	static const uint16_t regions[] = { 0x2400, 0x2600, 0x2800, 0x2a00 };
	uint64_t x = srng_next(r), top = regions[x % 4] | ((x >> 8) & 0xf);

	if (top == 0x2a0e)
		top = 0x2a0f;
	/* Servers sit on small interface ids (::1, ::a:1); clients on random ones. */
	v6(a, top << 48 | (srng_next(r) >> 16), server ? 1 + (x >> 32) % 0x1ff : srng_next(r));
}

static void pool_addr(const struct sc_gen *g, enum pool p, uint64_t k, struct mm_addr *a)
{
	struct srng r;

	srng_init(&r, sc_config(g)->seed, 0x706f6f6c00000000ull | p, k, 0);
	switch (p) {
	case POOL_WEB6: case POOL_VIDEO6: case POOL_RESOLVER6: case POOL_NS6: case POOL_NTP6:
	case POOL_UPDATE6: case POOL_MONITOR6:
		foreign_v6(&r, a, true);
		return;
	case POOL_INCLIENT6:
		foreign_v6(&r, a, false);
		return;
	default:
		foreign_v4(&r, a);
	}
}

/* Rank from a pool of n by a log-uniform draw: P(rank k) ≈ 1/(k+1), Zipf with s = 1. */
static uint64_t zipf_rank(struct srng *r, uint64_t n)
{
	uint64_t k = (uint64_t)exp(srng_unit(r) * log((double)n + 1)) - 1;

	return k < n ? k : n - 1;
}

static void pool_pick(const struct sc_gen *g, enum pool p, uint64_t n, struct srng *r,
		      struct mm_addr *a)
{
	pool_addr(g, p, zipf_rank(r, n), a);
}

/* An attacker address: k-th of the scenario's adversary hosts (intel: indicator space). */
static void adversary(const struct sc_gen *g, enum pool space, uint64_t k, bool want_v6,
		      struct mm_addr *a)
{
	static const uint8_t adv_octets[] = { 5, 45, 185, 193 }, intel_octets[] = { 91, 194 };
	struct srng r;
	uint64_t x;

	srng_init(&r, sc_config(g)->seed, 0x6164760000000000ull | space, k, want_v6);
	x = srng_next(&r);
	if (want_v6) {
		uint64_t hi = space == POOL_INTEL ? 0x2a0e1c8000000000ull | (x >> 24 & 0xffffff)
						  : 0x2a0e800000000000ull | (x >> 17 & 0x7fffffffffffull);
		v6(a, hi, 1 + (srng_next(&r) & 0xffff));
	} else if (space == POOL_INTEL) {
		v4(a, intel_octets[x % 2], (unsigned)(x >> 8) & 0xff, (unsigned)(x >> 16) & 0xff,
		   host_octet(x >> 24));
	} else {
		v4(a, adv_octets[x % 4], (unsigned)(x >> 8) & 0xff, (unsigned)(x >> 16) & 0xff,
		   host_octet(x >> 24));
	}
}

/* --- domestic clients ------------------------------------------------------------ */

struct client {
	struct mm_addr v4, v6;
	bool has_v6;
	uint16_t port_lo, port_hi; /* ephemeral range of its operating system */
};

static uint32_t n_enterprise(const struct sc_gen *g)
{
	double n = 2000 * sc_config(g)->scale;

	return n < 20 ? 20 : (uint32_t)n;
}

/* 198.19.0.0/16 holds 250 hosts in each of its /24s. */
static uint32_t n_business(const struct sc_gen *g)
{
	double n = 1000 * sc_config(g)->scale;

	return n < 10 ? 10 : n > 60000 ? 60000 : (uint32_t)n;
}

static uint32_t n_clients(const struct sc_gen *g)
{
	return n_enterprise(g) + n_business(g);
}

/*
 * Enterprise host i is 10.(1 + j/256).(j%256).(10 + i%200) with j = i/200;
 * business host k is 198.19.(k/250).(1 + k%250). 30% are dual-stack with a
 * random interface id in 2001:db8:8000::/33 (one /64 per host).
 */
static void client_get(const struct sc_gen *g, uint32_t i, struct client *c)
{
	uint32_t ne = n_enterprise(g);
	struct srng r;

	if (i < ne) {
		uint32_t j = i / 200;
		v4(&c->v4, 10, 1 + j / 256, j % 256, 10 + i % 200);
	} else {
		uint32_t k = i - ne;
		v4(&c->v4, 198, 19, k / 250, 1 + k % 250);
	}
	srng_init(&r, sc_config(g)->seed, 0x706f6f6c00000000ull | POOL_CLIENT, i, 0);
	c->has_v6 = srng_below(&r, 10) < 3;
	v6(&c->v6, 0x20010db880000000ull | (uint64_t)(i >> 16) << 16 | (i & 0xffff), srng_next(&r));
	if (srng_chance(&r, 0.6)) {
		c->port_lo = 49152;
		c->port_hi = 65535;
	} else {
		c->port_lo = 32768;
		c->port_hi = 60999;
	}
}

static uint16_t eph_port(const struct client *c, struct srng *r)
{
	return (uint16_t)(c->port_lo + srng_below(r, (uint64_t)c->port_hi - c->port_lo + 1));
}

/* Heavy users first: host i's share falls as i^(-1/3); the busiest makes about 0.5% of flows. */
static uint32_t client_pick(const struct sc_gen *g, struct srng *r)
{
	double u = srng_unit(r);

	return (uint32_t)(u * sqrt(u) * n_clients(g));
}

/* Daily activity, 0.3 at 04:00 local to 1.0 at 16:00 local. */
static double diurnal(uint64_t ns)
{
	double h = fmod((double)(ns / SC_NS + TZ_OFFSET_S) / 3600.0, 24.0);

	return 0.3 + 0.7 * (0.5 - 0.5 * cos(2 * M_PI * (h - 4) / 24));
}

/* Seconds a transfer of bytes takes at a per-flow rate drawn around 20 Mbit/s, plus think time. */
static double transfer_secs(struct srng *r, double bytes, double think_s)
{
	double bps = srng_lognormal(r, 20e6, 1.0), s = 0.05 + bytes * 8 / bps;

	s += srng_exp(r, think_s);
	return s > 1700 ? 1700 : s;
}

static double capped(double v, double cap)
{
	return v > cap ? cap : v;
}

/* --- background: outbound from clients ------------------------------------------- */

struct outbound_src {
	struct sc_source base;
};

enum svc { SVC_HTTPS, SVC_HTTP, SVC_QUIC, SVC_DNS, SVC_VIDEO, SVC_CLOUD, SVC_IMAPS, SVC_SSH,
	   SVC_PUSH, SVC_STUN, SVC_ECHO, SVC_FAILED, SVC_REFUSED, SVC_ALT_HTTP, SVC_DOWNLOAD,
	   SVC_COUNT };

/* Shares of client flows by service; HTTPS takes what the others leave. */
static const double svc_share[SVC_COUNT] = {
	[SVC_HTTP] = 0.05, [SVC_QUIC] = 0.12, [SVC_DNS] = 0.06, [SVC_VIDEO] = 0.008,
	[SVC_CLOUD] = 0.03, [SVC_IMAPS] = 0.03, [SVC_SSH] = 0.004, [SVC_PUSH] = 0.04,
	[SVC_STUN] = 0.003, [SVC_ECHO] = 0.01, [SVC_FAILED] = 0.015, [SVC_REFUSED] = 0.006,
	[SVC_ALT_HTTP] = 0.03, [SVC_DOWNLOAD] = 0.01,
};

#define OUTBOUND_RATE_PER_CLIENT 0.012 /* flows/s at the daily peak */

static enum svc svc_pick(struct srng *r)
{
	double u = srng_unit(r);

	for (int i = 1; i < SVC_COUNT; i++) {
		if (u < svc_share[i])
			return (enum svc)i;
		u -= svc_share[i];
	}
	return SVC_HTTPS;
}

static void web_server(const struct sc_gen *g, bool use_v6, uint64_t n4, struct srng *r,
		       struct mm_addr *a)
{
	if (use_v6)
		pool_pick(g, POOL_WEB6, n4 < N_WEB6 ? n4 : N_WEB6, r, a);
	else
		pool_pick(g, POOL_WEB, n4, r, a);
}

static void outbound_event(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t i,
			   uint64_t t, struct srng *r)
{
	struct client c;
	struct mm_addr dst;
	const struct mm_addr *src;
	enum svc svc = svc_pick(r);
	bool use_v6;
	uint16_t sport;
	struct mm_flow *f;
	double up, down;

	(void)sub;
	(void)i;
	client_get(g, client_pick(g, r), &c);
	use_v6 = c.has_v6 && srng_chance(r, 0.35);
	src = use_v6 ? &c.v6 : &c.v4;
	sport = eph_port(&c, r);
	switch (svc) {
	case SVC_HTTPS:
	case SVC_HTTP:
	case SVC_ALT_HTTP:
		web_server(g, use_v6, N_WEB, r, &dst);
		f = sc_flow(g, s, src, &dst, sport,
			    svc == SVC_HTTPS ? 443 : svc == SVC_HTTP ? 80 : srng_chance(r, 0.5) ? 8443 : 8080,
			    PROTO_TCP);
		up = capped(srng_lognormal(r, 800, 1.0), 5e6);
		down = capped(srng_lognormal(r, 12000, 1.9), 2e8);
		sc_tcp_session(f, t, up, down, transfer_secs(r, up + down, 4));
		return;
	case SVC_QUIC: {
		uint64_t fwd, rev;

		web_server(g, use_v6, N_QUIC, r, &dst);
		f = sc_flow(g, s, src, &dst, sport, 443, PROTO_UDP);
		down = capped(srng_lognormal(r, 30000, 1.8), 2e8);
		rev = 2 + (uint64_t)(down / 1200);
		fwd = 2 + rev / 3;
		sc_udp(f, t, fwd, 60 + (uint32_t)srng_below(r, 200), rev, 1200,
		       transfer_secs(r, down, 4));
		return;
	}
	case SVC_DNS:
		pool_pick(g, use_v6 ? POOL_RESOLVER6 : POOL_RESOLVER, use_v6 ? 2 : 4, r, &dst);
		f = sc_flow(g, s, src, &dst, sport, 53, PROTO_UDP);
		sc_udp(f, t, 1, 30 + (uint32_t)srng_below(r, 40), 1, 60 + (uint32_t)srng_below(r, 400),
		       srng_uniform(r, 0.005, 0.08));
		return;
	case SVC_VIDEO:
		pool_pick(g, use_v6 ? POOL_VIDEO6 : POOL_VIDEO, use_v6 ? 10 : 40, r, &dst);
		f = sc_flow(g, s, src, &dst, sport, 443, PROTO_TCP);
		down = capped(srng_lognormal(r, 1.5e8, 0.8), 1.5e9);
		sc_tcp_session(f, t, down / 200, down, capped(down * 8 / srng_lognormal(r, 8e6, 0.4), 1700));
		return;
	case SVC_DOWNLOAD:
		/* Software and game downloads from the CDN the big bulk downloads also use. */
		pool_pick(g, POOL_DLCDN, 12, r, &dst);
		f = sc_flow(g, s, &c.v4, &dst, sport, 443, PROTO_TCP);
		down = capped(srng_lognormal(r, 5e6, 1.5), 1e9);
		sc_tcp_session(f, t, down / 100, down, transfer_secs(r, down, 1));
		return;
	case SVC_CLOUD:
		pool_pick(g, POOL_CLOUD, 4, r, &dst);
		f = sc_flow(g, s, &c.v4, &dst, eph_port(&c, r), 443, PROTO_TCP);
		up = capped(srng_lognormal(r, 150000, 2.0), 3e8);
		sc_tcp_session(f, t, up, srng_lognormal(r, 30000, 1.0), transfer_secs(r, up, 2));
		return;
	case SVC_IMAPS:
		pool_pick(g, POOL_IMAP, 20, r, &dst);
		f = sc_flow(g, s, &c.v4, &dst, sport, 993, PROTO_TCP);
		sc_tcp_session(f, t, srng_lognormal(r, 3000, 1.0), srng_lognormal(r, 40000, 1.8),
			       srng_lognormal(r, 60, 1.5));
		return;
	case SVC_SSH:
		pool_pick(g, POOL_SSH, 200, r, &dst);
		f = sc_flow(g, s, &c.v4, &dst, sport, 22, PROTO_TCP);
		sc_tcp_session(f, t, srng_lognormal(r, 20000, 1.5), srng_lognormal(r, 60000, 1.8),
			       capped(srng_lognormal(r, 300, 1.0), 1700));
		return;
	case SVC_PUSH:
		pool_pick(g, POOL_PUSH, 30, r, &dst);
		f = sc_flow(g, s, &c.v4, &dst, sport, srng_chance(r, 0.5) ? 5228 : 5223, PROTO_TCP);
		sc_tcp_session(f, t, srng_lognormal(r, 2000, 0.5), srng_lognormal(r, 3000, 0.5),
			       srng_uniform(r, 300, 1500));
		return;
	case SVC_STUN: {
		double secs = capped(srng_lognormal(r, 600, 0.8), 1700);
		uint64_t pkts = (uint64_t)(secs * 30);

		/* A call relayed through TURN: audio and low-rate video both ways. */
		pool_pick(g, POOL_STUN, 60, r, &dst);
		f = sc_flow(g, s, &c.v4, &dst, sport, 3478, PROTO_UDP);
		sc_udp(f, t, pkts, 700, pkts, 700, secs);
		return;
	}
	case SVC_ECHO: {
		uint64_t n = 1 + srng_below(r, 4);

		web_server(g, use_v6, N_WEB, r, &dst);
		f = sc_flow(g, s, src, &dst, 0, 0, PROTO_ICMP);
		sc_echo(f, t, n, 56, srng_chance(r, 0.9), (double)n - 1 + 0.03);
		return;
	}
	case SVC_FAILED:
		/* A dead or filtered host: retransmitted SYNs and nothing back. */
		pool_addr(g, POOL_ANY, srng_next(r), &dst);
		f = sc_flow(g, s, &c.v4, &dst, sport, srng_chance(r, 0.7) ? 443 : 80, PROTO_TCP);
		sc_tcp_attempt(f, t, SC_NO_REPLY, 3);
		return;
	case SVC_REFUSED:
		web_server(g, false, N_WEB, r, &dst);
		f = sc_flow(g, s, &c.v4, &dst, sport, 8080, PROTO_TCP);
		sc_tcp_attempt(f, t, SC_REFUSED, 1);
		return;
	case SVC_COUNT:
		break;
	}
	MM_BUG(1);
}

static void outbound_emit(struct sc_gen *g, const struct sc_source *s, uint64_t s0, uint64_t s1)
{
	double rate = OUTBOUND_RATE_PER_CLIENT * n_clients(g) * diurnal(s0 / 2 + s1 / 2);

	sc_poisson(g, s, 0, rate, s0, s1, outbound_event);
}

/* --- background and benign: streams of sessions between a side and a pool ---------- */

/*
 * Flows from pool members to a fixed server (inbound), or from a fixed host
 * to pool members (outbound): busy servers, mail, the resolver.
 */
struct stream_src {
	struct sc_source base;
	double rate;                /* flows/s (at the daily peak when diurnal) */
	bool diurnal;
	bool inbound;               /* pool members originate */
	struct mm_addr host;        /* the domestic side */
	enum pool pool;
	uint32_t pool_n;
	uint8_t proto;
	uint16_t dport, dport_alt;  /* alt: 20% of flows */
	double up, up_sigma, down, down_sigma;
	double fail;                /* TCP: share unanswered; UDP: share without reply */
};

static void stream_event(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t i,
			 uint64_t t, struct srng *r)
{
	const struct stream_src *p = (const struct stream_src *)s;
	struct mm_addr peer;
	struct mm_flow *f;
	uint16_t dport = p->dport_alt && srng_chance(r, 0.2) ? p->dport_alt : p->dport;
	uint16_t sport = (uint16_t)(p->inbound ? 32768 + srng_below(r, 32768) : 1024 + srng_below(r, 64512));
	double up = srng_lognormal(r, p->up, p->up_sigma), down = srng_lognormal(r, p->down, p->down_sigma);

	(void)sub;
	(void)i;
	pool_pick(g, p->pool, p->pool_n, r, &peer);
	f = p->inbound ? sc_flow(g, s, &peer, &p->host, sport, dport, p->proto)
		       : sc_flow(g, s, &p->host, &peer, sport, dport, p->proto);
	if (p->proto == PROTO_UDP) {
		bool answered = !srng_chance(r, p->fail);
		sc_udp(f, t, 1, (uint32_t)capped(up, 1400), answered, (uint32_t)capped(down, 1400),
		       answered ? srng_uniform(r, 0.005, 0.2) : 0);
	} else if (srng_chance(r, p->fail)) {
		sc_tcp_attempt(f, t, SC_NO_REPLY, 1 + (unsigned)srng_below(r, 3));
	} else {
		up = capped(up, 5e8);
		down = capped(down, 5e8);
		sc_tcp_session(f, t, up, down, transfer_secs(r, up + down, 3));
	}
}

static void stream_emit(struct sc_gen *g, const struct sc_source *s, uint64_t s0, uint64_t s1)
{
	const struct stream_src *p = (const struct stream_src *)s;
	double rate = p->rate * (p->diurnal ? diurnal(s0 / 2 + s1 / 2) : 1.0);

	sc_poisson(g, s, 0, rate, s0, s1, stream_event);
}

/* --- benign: periodic pollers (NTP, update checks, monitoring) ---------------------- */

enum poll_kind { POLL_NTP, POLL_UPDATE, POLL_PING, POLL_HTTPS_CHECK };

/*
 * Domestic hosts each polling one server on their own period and phase
 * (NTP, update checks), or one host polling many targets (monitoring).
 */
struct poller_src {
	struct sc_source base;
	enum poll_kind kind;
	uint32_t first_client, n_clients; /* pollers; 0 clients: the one fixed host */
	bool v6;
	struct mm_addr host;               /* the fixed poller (monitoring) */
	struct mm_addr server;             /* the one server (NTP, updates) */
	enum pool targets;                 /* monitoring: its target pool, n_targets long */
	uint32_t n_targets;
	double gap_s, jitter;              /* NTP: gap is drawn per host, 64..1024 s */
};

static void poller_event(struct sc_gen *g, const struct sc_source *s, uint64_t who, uint64_t i,
			 uint64_t t, struct srng *r)
{
	const struct poller_src *p = (const struct poller_src *)s;
	struct client c;
	struct mm_addr dst = p->server;
	const struct mm_addr *src = &p->host;
	struct mm_flow *f;

	(void)i;
	memset(&c, 0, sizeof(c));
	c.port_lo = 32768;
	c.port_hi = 60999;
	if (p->n_clients) {
		client_get(g, p->first_client + (uint32_t)who, &c);
		src = p->v6 ? &c.v6 : &c.v4;
	} else {
		pool_addr(g, p->targets, who, &dst);
	}
	switch (p->kind) {
	case POLL_NTP:
		/* ntpd polls from port 123; chrony and SNTP clients from an ephemeral port. */
		f = sc_flow(g, s, src, &dst, who % 5 < 2 ? 123 : eph_port(&c, r), 123, PROTO_UDP);
		sc_udp(f, t, 1, 48, 1, 48, srng_uniform(r, 0.01, 0.12));
		return;
	case POLL_UPDATE: {
		/* Now and then there is an update to fetch. */
		double down = srng_chance(r, 0.01) ? srng_lognormal(r, 3e7, 1.0)
						   : srng_lognormal(r, 6000, 0.5);
		f = sc_flow(g, s, src, &dst, eph_port(&c, r), 443, PROTO_TCP);
		sc_tcp_session(f, t, srng_lognormal(r, 900, 0.3), down, transfer_secs(r, down, 0.5));
		return;
	}
	case POLL_PING:
		f = sc_flow(g, s, src, &dst, 0, 0, PROTO_ICMP);
		sc_echo(f, t, 1, 56, true, srng_uniform(r, 0.01, 0.3));
		return;
	case POLL_HTTPS_CHECK:
		f = sc_flow(g, s, src, &dst, (uint16_t)(40000 + srng_below(r, 20000)), 443, PROTO_TCP);
		sc_tcp_session(f, t, 450, srng_lognormal(r, 5000, 0.2), srng_uniform(r, 0.1, 0.6));
		return;
	}
}

static void poller_emit(struct sc_gen *g, const struct sc_source *s, uint64_t s0, uint64_t s1)
{
	const struct poller_src *p = (const struct poller_src *)s;
	uint32_t n = p->n_clients ? p->n_clients : p->n_targets;

	for (uint32_t k = 0; k < n; k++) {
		struct srng r;
		double gap = p->gap_s;
		uint64_t offset, count;

		/* Each poller's period and phase, fixed for the scenario. */
		sc_rng(g, s, 1ull << 32 | k, 0, &r);
		if (p->kind == POLL_NTP)
			gap = (double)(64u << srng_below(&r, 5)); /* 2^6 .. 2^10 s */
		offset = srng_below(&r, (uint64_t)(gap * SC_NS));
		count = (s->t1 - s->t0) / (uint64_t)(gap * SC_NS) + 1;
		sc_periodic(g, s, k, offset, gap, p->jitter, count, s0, s1, poller_event);
	}
}

/* --- benign: internet background radiation ---------------------------------------- */

/*
 * Single SYNs from all over the world to random public domestic addresses
 * on the ports worms and scanners favour: each source sends a handful at most.
 */
struct ibr_src {
	struct sc_source base;
	double rate;
	bool v6;
};

static const uint16_t ibr_ports[] = { 23, 23, 23, 445, 445, 22, 22, 80, 8080, 3389, 443, 5555,
				      2323, 81, 37215, 52869, 7547, 1433, 6379, 8443, 5900, 21 };

static void ibr_event(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t i,
		      uint64_t t, struct srng *r)
{
	const struct ibr_src *p = (const struct ibr_src *)s;
	struct mm_addr src, dst;
	struct mm_flow *f;
	uint16_t port = ibr_ports[srng_below(r, sizeof(ibr_ports) / sizeof(ibr_ports[0]))];
	double u = srng_unit(r);

	(void)sub;
	(void)i;
	/* A third come from 3000 recurring noisy hosts, the rest from anywhere. */
	if (p->v6) {
		pool_addr(g, POOL_INCLIENT6, srng_below(r, srng_chance(r, 0.3) ? 3000 : 1u << 30), &src);
		v6(&dst, 0x20010db800000001ull, 1 + srng_below(r, 4096));
	} else {
		pool_addr(g, POOL_ANY, srng_chance(r, 0.3) ? srng_below(r, 3000) : srng_next(r), &src);
		v4(&dst, 198, 18 + (unsigned)srng_below(r, 2), (unsigned)srng_below(r, 256),
		   (unsigned)srng_below(r, 256));
	}
	f = sc_flow(g, s, &src, &dst, (uint16_t)(1024 + srng_below(r, 64512)), port, PROTO_TCP);
	sc_tcp_attempt(f, t, u < 0.8 ? SC_NO_REPLY : u < 0.95 ? SC_REFUSED : SC_HALF_OPEN, 1);
}

static void ibr_emit(struct sc_gen *g, const struct sc_source *s, uint64_t s0, uint64_t s1)
{
	sc_poisson(g, s, 0, ((const struct ibr_src *)s)->rate, s0, s1, ibr_event);
}

/* --- attacks: scans ----------------------------------------------------------------- */

struct scan_src {
	struct sc_source base;
	struct mm_addr src;
	struct mm_addr base_addr;   /* target k is base_addr + k (low 32 bits) */
	uint32_t n_hosts;
	const uint16_t *ports;      /* NULL: port_lo + k for k < n_ports */
	uint32_t n_ports;
	uint16_t port_lo;
	uint8_t proto;
	uint64_t count;
	double gap_s, jitter;
	bool random_targets;        /* each probe a random target (TRW-style, may repeat) */
	bool foreign_targets;       /* a worm: random foreign addresses */
	double p_open, p_refused;
	unsigned syns;              /* SYNs per unanswered probe (connect() retries) */
	uint64_t perm_a, perm_b;    /* target order: (a·i + b) mod (hosts·ports) */
};

static void addr_add(struct mm_addr *a, uint32_t k)
{
	/* The low 32 bits: the whole of an IPv4 address, the end of an IPv6 interface id. */
	uint32_t low = mm_addr_v4_u32(a) + k;

	a->b[12] = (uint8_t)(low >> 24);
	a->b[13] = (uint8_t)(low >> 16);
	a->b[14] = (uint8_t)(low >> 8);
	a->b[15] = (uint8_t)low;
}

static void scan_event(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t i,
		       uint64_t t, struct srng *r)
{
	const struct scan_src *p = (const struct scan_src *)s;
	uint64_t n = (uint64_t)p->n_hosts * p->n_ports, j;
	struct mm_addr dst = p->base_addr;
	uint16_t port;
	struct mm_flow *f;
	double u = srng_unit(r);

	(void)sub;
	j = p->random_targets || p->foreign_targets ? srng_below(r, n) : (p->perm_a * i + p->perm_b) % n;
	port = p->ports ? p->ports[j % p->n_ports] : (uint16_t)(p->port_lo + j % p->n_ports);
	if (p->foreign_targets)
		pool_addr(g, POOL_ANY, srng_next(r), &dst);
	else
		addr_add(&dst, (uint32_t)(j / p->n_ports));
	f = sc_flow(g, s, &p->src, &dst, (uint16_t)(32768 + srng_below(r, 28000)), port, p->proto);
	if (p->proto == PROTO_UDP)
		sc_udp(f, t, 1, (uint32_t)srng_below(r, 48), u < p->p_open, 90, 0.02);
	else
		sc_tcp_attempt(f, t, u < p->p_open ? SC_HALF_OPEN
					: u < p->p_open + p->p_refused ? SC_REFUSED : SC_NO_REPLY,
			       u < p->p_open + p->p_refused ? 1 : p->syns);
}

static void scan_emit(struct sc_gen *g, const struct sc_source *s, uint64_t s0, uint64_t s1)
{
	const struct scan_src *p = (const struct scan_src *)s;

	sc_periodic(g, s, 0, 0, p->gap_s, p->jitter, p->count, s0, s1, scan_event);
}

/* --- attacks and benign: repeated sessions between two hosts ------------------------ */

/*
 * Beacons, brute force, exfiltration, indicator contacts and single big
 * transfers: count sessions from src to dst, one per slot of gap_s.
 */
struct sess_src {
	struct sc_source base;
	struct mm_addr src, dst;
	uint32_t n_srcs;            /* > 0: sources are src + 0..n_srcs-1 (a distributed attack) */
	uint8_t proto;
	uint16_t sport;             /* 0: ephemeral per session */
	uint16_t dport;
	uint64_t count;
	double gap_s, jitter;
	double up, up_sigma, down, down_sigma;
	double bps;                 /* duration = bytes · 8 / bps + secs */
	double secs;
	bool success_last;          /* brute force: the last attempt gets in */
	bool unanswered;            /* nothing answers (a contact attempt) */
	double rate;                /* > 0: Poisson arrivals at this rate/s instead of slots */
};

static void sess_event(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t i,
		       uint64_t t, struct srng *r)
{
	const struct sess_src *p = (const struct sess_src *)s;
	struct mm_addr src = p->src;
	struct mm_flow *f;
	double up = srng_lognormal(r, p->up, p->up_sigma), down = srng_lognormal(r, p->down, p->down_sigma);
	double secs = p->secs * srng_uniform(r, 0.7, 1.3);
	uint16_t sport = p->sport ? p->sport : (uint16_t)(49152 + srng_below(r, 16384));

	(void)sub;
	if (p->n_srcs)
		addr_add(&src, (uint32_t)srng_below(r, p->n_srcs));
	f = sc_flow(g, s, &src, &p->dst, sport, p->dport, p->proto);
	if (p->unanswered) {
		sc_tcp_attempt(f, t, SC_NO_REPLY, 3);
		return;
	}
	if (p->success_last && i + 1 == p->count) {
		/* In: an interactive session that fetches tools and looks around. */
		up = srng_lognormal(r, 60000, 0.3);
		down = srng_lognormal(r, 2.5e6, 0.3);
		secs = 900;
	}
	if (p->proto == PROTO_UDP) {
		sc_udp(f, t, 1, (uint32_t)capped(up, 1400), 1, (uint32_t)capped(down, 1400), secs);
		return;
	}
	sc_tcp_session(f, t, up, down, secs + (up + down) * 8 / p->bps);
}

static void sess_emit(struct sc_gen *g, const struct sc_source *s, uint64_t s0, uint64_t s1)
{
	const struct sess_src *p = (const struct sess_src *)s;

	if (p->rate > 0)
		sc_poisson(g, s, 0, p->rate, s0, s1, sess_event);
	else
		sc_periodic(g, s, 0, 0, p->gap_s, p->jitter, p->count, s0, s1, sess_event);
}

/* --- attacks: floods ------------------------------------------------------------------ */

enum flood_kind {
	FLOOD_SYN,         /* bots with real addresses, a fixed source port each */
	FLOOD_SYN_SPOOFED, /* one SYN per random forged source */
	FLOOD_REFLECT,     /* UDP answers from reflectors' service port to random victim ports */
	FLOOD_ICMP,
	FLOOD_UDP,         /* direct UDP to random ports */
};

struct flood_src {
	struct sc_source base;
	enum flood_kind kind;
	struct mm_addr dst;
	uint16_t dport, sport;
	uint32_t n_sources;
	double pps;                 /* packets/s at the victim, all sources together */
	uint32_t payload;
	double flow_s;              /* each source's flows last this long, back to back */
	bool v6;
};

static void flood_event(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t i,
			uint64_t t, struct srng *r)
{
	const struct flood_src *p = (const struct flood_src *)s;
	uint64_t k = i % (p->n_sources ? p->n_sources : 1);
	uint64_t pkts = (uint64_t)(p->pps / (p->n_sources ? p->n_sources : 1) * p->flow_s);
	struct mm_addr src;
	struct srng who;
	struct mm_flow *f;

	(void)sub;
	if (pkts == 0)
		pkts = 1;
	/* Source k's address and port come from its own stream: the same in every round. */
	sc_rng(g, s, 2, k, &who);
	if (p->v6)
		pool_addr(g, POOL_INCLIENT6, srng_next(&who) & 0x3fffffff, &src);
	else
		pool_addr(g, POOL_ANY, p->kind == FLOOD_SYN_SPOOFED ? srng_next(r) : srng_next(&who), &src);
	switch (p->kind) {
	case FLOOD_SYN:
	case FLOOD_SYN_SPOOFED: {
		uint64_t syn = p->v6 ? 60 : 40, synack = p->v6 ? 64 : 44;

		/* Bots keep one source port; forged SYNs each get a random one. */
		uint16_t sport = (uint16_t)(1024 + srng_below(p->kind == FLOOD_SYN ? &who : r, 64512));

		f = sc_flow(g, s, &src, &p->dst, sport, p->dport, PROTO_TCP);
		if (p->kind == FLOOD_SYN_SPOOFED)
			pkts = 1;
		f->first_ns = t;
		f->last_ns = t + (uint64_t)(p->flow_s * SC_NS * (pkts > 1));
		f->fwd_packets = pkts;
		f->fwd_bytes = pkts * syn;
		f->fwd_tcp_flags = 0x02;
		/* The victim answers what its backlog still takes. */
		f->rev_packets = pkts / 3;
		f->rev_bytes = f->rev_packets * synack;
		f->rev_tcp_flags = f->rev_packets ? 0x12 : 0;
		f->end_reason = pkts > 1 ? MM_END_ACTIVE : MM_END_IDLE;
		return;
	}
	case FLOOD_REFLECT:
	case FLOOD_UDP:
		f = sc_flow(g, s, &src, &p->dst,
			    p->kind == FLOOD_REFLECT ? p->sport : (uint16_t)(1024 + srng_below(&who, 64512)),
			    p->dport ? p->dport : (uint16_t)(1024 + srng_below(r, 64512)), PROTO_UDP);
		sc_udp(f, t, pkts, p->payload, 0, 0, p->flow_s);
		if (pkts > 1)
			f->end_reason = MM_END_ACTIVE;
		return;
	case FLOOD_ICMP:
		f = sc_flow(g, s, &src, &p->dst, 0, 0, PROTO_ICMP);
		sc_echo(f, t, pkts, p->payload, false, p->flow_s);
		/* Replies until the uplink saturates: about one in ten. */
		f->rev_packets = pkts / 10;
		f->rev_bytes = f->fwd_bytes / pkts * f->rev_packets;
		f->end_reason = MM_END_ACTIVE;
		return;
	}
}

static void flood_emit(struct sc_gen *g, const struct sc_source *s, uint64_t s0, uint64_t s1)
{
	const struct flood_src *p = (const struct flood_src *)s;
	uint64_t rounds = (uint64_t)((double)(s->t1 - s->t0) / SC_NS / p->flow_s);
	uint64_t n = p->n_sources ? p->n_sources : 1;

	if (p->kind == FLOOD_SYN_SPOOFED) {
		sc_poisson(g, s, 0, p->pps, s0, s1, flood_event);
		return;
	}
	/* Every source starts a flow each flow_s, the sources spread over it. */
	sc_periodic(g, s, 0, 0, p->flow_s / (double)n, 1.0, rounds * n, s0, s1, flood_event);
}

/* --- the plan ------------------------------------------------------------------------- */

static uint64_t at(const struct sc_gen *g, double frac)
{
	return sc_start(g) + (uint64_t)(frac * (double)(sc_end(g) - sc_start(g)));
}

static double span_s(const struct sc_gen *g, double f0, double f1)
{
	return (double)(at(g, f1) - at(g, f0)) / SC_NS;
}

static uint64_t secs_after(uint64_t t, double secs)
{
	return t + (uint64_t)(secs * SC_NS);
}

/* A zeroed source of size bytes (a struct that starts with struct sc_source). */
static void *source_new(size_t size, sc_emit_fn emit, const struct sc_gen *g,
			const struct mm_scenario_entry *e, uint64_t t0, uint64_t t1)
{
	struct sc_source *s = calloc(1, size);

	if (s) {
		s->emit = emit;
		s->label = e ? sc_entry_label(g, e) : 0;
		s->t0 = t0;
		s->t1 = t1;
	}
	return s;
}

static void set_prefix(struct mm_prefix *p, const struct mm_addr *a, int len)
{
	unsigned full = mm_addr_is_v4(a) ? 32 : 128;

	MM_BUG(mm_prefix_from_addr(p, a, len < 0 ? full : (unsigned)len) != 0);
}

static void set_prefix_text(struct mm_prefix *p, const char *text)
{
	MM_BUG(mm_prefix_parse(p, text, false) != 0);
}

static struct mm_scenario_entry *attack(struct sc_gen *g, const char *id, const char *detector,
					const char *variant, const char *t1, const char *t2)
{
	struct mm_scenario_entry *e = sc_entry_add(g, MM_SCENARIO_ATTACK, id);

	e->detector = detector;
	e->variant = variant;
	e->attck[0] = t1;
	e->attck[1] = t2;
	return e;
}

static struct mm_scenario_entry *benign(struct sc_gen *g, const char *id, const char *kind)
{
	struct mm_scenario_entry *e = sc_entry_add(g, MM_SCENARIO_BENIGN, id);

	e->variant = kind;
	return e;
}

static void endpoints(struct mm_scenario_entry *e, const struct mm_addr *src, int src_len,
		      const struct mm_addr *dst, int dst_len, int port, uint8_t proto)
{
	set_prefix(&e->src, src, src_len);
	set_prefix(&e->dst, dst, dst_len);
	e->dst_port = port;
	e->proto = proto;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* A domestic client chosen for an attack: the k-th draw of the plan's stream. */
static void victim_client(const struct sc_gen *g, uint64_t k, struct client *c)
{
	struct srng r;

	srng_init(&r, sc_config(g)->seed, 0x7669637400000000ull, k, 0);
	client_get(g, (uint32_t)srng_below(&r, n_clients(g)), c);
}

struct scan_spec {
	const char *id, *variant, *notes;
	double f0, rate;       /* start fraction, probes/s (or 0: spread over to f1) */
	double f1, jitter;
	const char *target;    /* the range scanned (prefix text) */
	uint32_t n_hosts;
	const uint16_t *ports;
	uint32_t n_ports;
	uint16_t port_lo;
	uint8_t proto;
	uint64_t probes;       /* 0: every target once */
	bool random_targets, foreign_targets, v6, from_inside;
	double p_open, p_refused;
	unsigned syns;
};

static const uint16_t block_ports[] = { 21, 22, 23, 25, 80, 110, 143, 443, 445, 3306, 3389, 5432,
					5900, 6379, 8080, 8443 };

static const struct scan_spec scans[] = {
	{ .id = "scan-1", .variant = "horizontal",
	  .notes = "fast horizontal SYN scan of a /16 on telnet, 2000 probes/s", .f0 = 0.10, .rate = 2000,
	  .jitter = 0.2, .target = "198.18.0.0/16", .n_hosts = 65536, .n_ports = 1, .port_lo = 23,
	  .proto = PROTO_TCP, .p_open = 0.002, .p_refused = 0.05, .syns = 1 },
	{ .id = "scan-2", .variant = "horizontal",
	  .notes = "horizontal SYN scan of a /20 on SMB, 100 probes/s", .f0 = 0.22, .rate = 100,
	  .jitter = 0.2, .target = "198.18.64.0/20", .n_hosts = 4096, .n_ports = 1, .port_lo = 445,
	  .proto = PROTO_TCP, .p_open = 0.005, .p_refused = 0.1, .syns = 1 },
	{ .id = "scan-3", .variant = "horizontal",
	  .notes = "stealthy horizontal scan of a /22 on RDP over about 4 h, one probe every ~14 s at random",
	  .f0 = 0.15, .f1 = 0.82, .jitter = 1.0, .target = "198.18.8.0/22", .n_hosts = 1024, .n_ports = 1,
	  .port_lo = 3389, .proto = PROTO_TCP, .p_open = 0.01, .p_refused = 0.1, .syns = 1 },
	{ .id = "scan-4", .variant = "vertical",
	  .notes = "fast vertical scan of ports 1-1024 of one server, 300 probes/s", .f0 = 0.30,
	  .rate = 300, .jitter = 0.2, .target = "198.18.0.20/32", .n_hosts = 1, .n_ports = 1024,
	  .port_lo = 1, .proto = PROTO_TCP, .p_open = 0.004, .p_refused = 0.9, .syns = 1 },
	{ .id = "scan-5", .variant = "vertical",
	  .notes = "slow vertical scan of ports 1-1000 of one server over 40 min", .f0 = 0.55,
	  .f1 = 0.6611, .jitter = 1.0, .target = "198.18.1.80/32", .n_hosts = 1, .n_ports = 1000,
	  .port_lo = 1, .proto = PROTO_TCP, .p_open = 0.003, .syns = 1 },
	{ .id = "scan-6", .variant = "block",
	  .notes = "block scan of a /24 on 16 service ports, 40 probes/s", .f0 = 0.40, .rate = 40,
	  .jitter = 0.5, .target = "198.18.2.0/24", .n_hosts = 256, .ports = block_ports, .n_ports = 16,
	  .proto = PROTO_TCP, .p_open = 0.01, .p_refused = 0.2, .syns = 1 },
	{ .id = "scan-7", .variant = "trw-slow",
	  .notes = "slow connect() scan of random hosts of the /15 on SSH over 3 h: 8% answer, the rest refuse or stay silent (TRW)",
	  .f0 = 0.30, .f1 = 0.80, .jitter = 1.0, .target = "198.18.0.0/15", .n_hosts = 131072,
	  .n_ports = 1, .port_lo = 22, .proto = PROTO_TCP, .probes = 240, .random_targets = true,
	  .p_open = 0.08, .p_refused = 0.2, .syns = 3 },
	{ .id = "scan-8", .variant = "horizontal",
	  .notes = "IPv6 horizontal scan of the low interface ids of a /64 on SSH, 20 probes/s",
	  .f0 = 0.62, .rate = 20, .jitter = 0.3, .target = "2001:db8:0:1::/64", .n_hosts = 1024,
	  .n_ports = 1, .port_lo = 22, .proto = PROTO_TCP, .v6 = true, .p_open = 0.004, .p_refused = 0.1,
	  .syns = 1 },
	{ .id = "scan-9", .variant = "horizontal",
	  .notes = "outbound worm: an infected domestic host SYN-scans random foreign addresses on SMB, 15 probes/s for 20 min",
	  .f0 = 0.70, .rate = 15, .jitter = 0.5, .target = "0.0.0.0/0", .n_hosts = 1, .n_ports = 1,
	  .port_lo = 445, .proto = PROTO_TCP, .probes = 18000, .foreign_targets = true,
	  .from_inside = true, .p_open = 0.01, .p_refused = 0.05, .syns = 2 },
	{ .id = "scan-10", .variant = "horizontal",
	  .notes = "UDP horizontal scan of a /22 on SNMP, 25 probes/s, 3% answer", .f0 = 0.47, .rate = 25,
	  .jitter = 0.2, .target = "198.18.32.0/22", .n_hosts = 1024, .n_ports = 1, .port_lo = 161,
	  .proto = PROTO_UDP, .p_open = 0.03, .syns = 1 },
};

static int plan_scans(struct sc_gen *g)
{
	for (size_t k = 0; k < sizeof(scans) / sizeof(scans[0]); k++) {
		const struct scan_spec *sp = &scans[k];
		bool vertical = strcmp(sp->variant, "vertical") == 0;
		struct mm_scenario_entry *e = attack(g, sp->id, "scan", sp->variant, vertical ? "T1046" : "T1595.001",
						     vertical ? NULL : "T1046");
		uint64_t n = (uint64_t)sp->n_hosts * sp->n_ports, probes = sp->probes ? sp->probes : n;
		uint64_t t0 = at(g, sp->f0), t1;
		double gap = sp->rate > 0 ? 1.0 / sp->rate : span_s(g, sp->f0, sp->f1) / (double)probes;
		struct scan_src *p;
		struct mm_prefix range;
		struct client c;
		struct srng r;
		int rc;

		t1 = secs_after(t0, gap * (double)probes) + 1;
		p = source_new(sizeof(*p), scan_emit, g, e, t0, t1);
		if (!p)
			return sc_source_add(g, NULL);
		set_prefix_text(&range, sp->target);
		if (sp->from_inside) {
			victim_client(g, 100 + k, &c);
			p->src = c.v4;
		} else {
			adversary(g, POOL_ADVERSARY, 100 + k, sp->v6, &p->src);
		}
		p->base_addr = range.addr;
		if (range.len == (sp->v6 ? 128 : 32))
			p->n_hosts = 1;
		else
			p->n_hosts = sp->n_hosts;
		p->ports = sp->ports;
		p->n_ports = sp->n_ports;
		p->port_lo = sp->port_lo;
		p->proto = sp->proto;
		p->count = probes;
		p->gap_s = gap;
		p->jitter = sp->jitter;
		p->random_targets = sp->random_targets;
		p->foreign_targets = sp->foreign_targets;
		p->p_open = sp->p_open;
		p->p_refused = sp->p_refused;
		p->syns = sp->syns;
		sc_rng(g, &p->base, 3, k, &r);
		p->perm_b = srng_below(&r, n);
		/* Any stride coprime to n visits every target once. */
		p->perm_a = n == 1 ? 1 : (2654435761ull + 2 * srng_below(&r, 1u << 20)) % n;
		while (gcd(p->perm_a, n) != 1)
			p->perm_a = (p->perm_a + 1) % n;
		e->src.addr = p->src;
		e->src.len = sp->v6 ? 128 : 32;
		e->dst = range;
		e->dst_port = sp->n_ports == 1 ? (sp->ports ? sp->ports[0] : sp->port_lo) : -1;
		e->proto = sp->proto;
		snprintf(e->notes, sizeof(e->notes), "%s; %llu probes", sp->notes,
			 (unsigned long long)probes);
		if ((rc = sc_source_add(g, &p->base)) != 0)
			return rc;
	}
	return 0;
}

/* Where a session stream's end is. */
enum ep {
	EP_CLIENT,    /* a domestic client drawn for the attack (IPv4) */
	EP_CLIENT6,   /* the same, its IPv6 address */
	EP_BUSINESS,  /* a client in 198.19.0.0/16 */
	EP_ADV,       /* an attacker host abroad */
	EP_ADV6,
	EP_ADV_NET,   /* an attacker /24: sources .1 .. .n_srcs */
	EP_TEXT,      /* the address in text */
};

struct sess_spec {
	const char *id, *detector, *variant, *attck1, *attck2, *notes;
	enum ep src, dst;
	const char *text;       /* EP_TEXT's address */
	uint8_t proto;
	uint16_t dport;
	double f0, f1;          /* window as fractions of the scenario */
	double gap_s;           /* 0: count sessions spread over the window */
	uint64_t count;         /* 0: as many gaps as fit */
	double jitter;
	double up, up_sigma, down, down_sigma, secs, bps;
	uint32_t n_srcs;
	bool success_last;
	bool unanswered;
	bool poisson;           /* arrivals at random (about count of them), not one per slot */
};

static const struct sess_spec sessions[] = {
	/* beacons: a domestic host calling home to a rare foreign host */
	{ .id = "beacon-1", .detector = "beacon", .variant = "periodic", .attck1 = "T1071.001",
	  .attck2 = "T1573", .notes = "HTTPS every 60 s +-10%, constant sizes", .src = EP_CLIENT,
	  .dst = EP_ADV, .proto = PROTO_TCP, .dport = 443, .f0 = 0.02, .f1 = 0.98, .gap_s = 60,
	  .jitter = 0.2, .up = 350, .up_sigma = 0.03, .down = 220, .down_sigma = 0.03, .secs = 0.3,
	  .bps = 1e6 },
	{ .id = "beacon-2", .detector = "beacon", .variant = "jittered", .attck1 = "T1071.001",
	  .attck2 = "T1573", .notes = "every 300 s +-30%, request and reply sizes vary", .src = EP_CLIENT,
	  .dst = EP_ADV, .proto = PROTO_TCP, .dport = 8443, .f0 = 0.05, .f1 = 0.95, .gap_s = 300,
	  .jitter = 0.6, .up = 1500, .up_sigma = 0.6, .down = 3000, .down_sigma = 0.8, .secs = 0.5,
	  .bps = 1e6 },
	{ .id = "beacon-3", .detector = "beacon", .variant = "low-and-slow", .attck1 = "T1071.001",
	  .attck2 = "T1029", .notes = "hourly +-2%, constant sizes", .src = EP_CLIENT, .dst = EP_ADV,
	  .proto = PROTO_TCP, .dport = 443, .f0 = 0.0, .f1 = 1.0, .gap_s = 3600, .jitter = 0.04,
	  .up = 900, .up_sigma = 0.05, .down = 400, .down_sigma = 0.05, .secs = 0.4, .bps = 1e6 },
	{ .id = "beacon-4", .detector = "beacon", .variant = "dns", .attck1 = "T1071.004",
	  .notes = "DNS to a rare foreign resolver every 120 s +-20%", .src = EP_CLIENT, .dst = EP_ADV,
	  .proto = PROTO_UDP, .dport = 53, .f0 = 0.10, .f1 = 0.90, .gap_s = 120, .jitter = 0.4, .up = 60,
	  .up_sigma = 0.1, .down = 140, .down_sigma = 0.1, .secs = 0.05, .bps = 1e6 },
	{ .id = "beacon-5", .detector = "beacon", .variant = "ipv6", .attck1 = "T1071.001",
	  .attck2 = "T1573", .notes = "IPv6 HTTPS every 90 s +-15%", .src = EP_CLIENT6, .dst = EP_ADV6,
	  .proto = PROTO_TCP, .dport = 443, .f0 = 0.20, .f1 = 0.95, .gap_s = 90, .jitter = 0.3, .up = 500,
	  .up_sigma = 0.1, .down = 800, .down_sigma = 0.1, .secs = 0.3, .bps = 1e6 },
	{ .id = "beacon-6", .detector = "beacon", .variant = "slow", .attck1 = "T1071.001",
	  .notes = "HTTP every 600 s +-5%", .src = EP_CLIENT, .dst = EP_ADV, .proto = PROTO_TCP,
	  .dport = 80, .f0 = 0.0, .f1 = 1.0, .gap_s = 600, .jitter = 0.1, .up = 420, .up_sigma = 0.05,
	  .down = 1200, .down_sigma = 0.05, .secs = 0.3, .bps = 1e6 },
	{ .id = "beacon-7", .detector = "beacon", .variant = "noisy", .attck1 = "T1071.001",
	  .attck2 = "T1573", .notes = "HTTPS every 30 s +-50% for 2.4 h", .src = EP_CLIENT, .dst = EP_ADV,
	  .proto = PROTO_TCP, .dport = 443, .f0 = 0.30, .f1 = 0.70, .gap_s = 30, .jitter = 1.0, .up = 300,
	  .up_sigma = 0.2, .down = 500, .down_sigma = 0.2, .secs = 0.2, .bps = 1e6 },
	{ .id = "beacon-8", .detector = "beacon", .variant = "periodic", .attck1 = "T1071.001",
	  .attck2 = "T1573", .notes = "from a business network, HTTPS every 180 s +-10% for 3 h",
	  .src = EP_BUSINESS, .dst = EP_ADV, .proto = PROTO_TCP, .dport = 443, .f0 = 0.10, .f1 = 0.60,
	  .gap_s = 180, .jitter = 0.2, .up = 650, .up_sigma = 0.05, .down = 300, .down_sigma = 0.05,
	  .secs = 0.3, .bps = 1e6 },
	/* brute force: many short sessions with few bytes */
	{ .id = "bruteforce-1", .detector = "bruteforce", .variant = "ssh", .attck1 = "T1110.001",
	  .notes = "600 SSH password attempts in 20 min", .src = EP_ADV, .dst = EP_TEXT,
	  .text = "198.18.0.22", .proto = PROTO_TCP, .dport = 22, .f0 = 0.18, .gap_s = 2, .count = 600,
	  .jitter = 1.0, .up = 2200, .up_sigma = 0.1, .down = 3300, .down_sigma = 0.1, .secs = 2.5,
	  .bps = 1e6 },
	{ .id = "bruteforce-2", .detector = "bruteforce", .variant = "ssh", .attck1 = "T1110.001",
	  .notes = "slow: 300 SSH attempts at random over 3 h", .src = EP_ADV, .dst = EP_TEXT,
	  .text = "198.18.6.14", .proto = PROTO_TCP, .dport = 22, .f0 = 0.40, .f1 = 0.90, .count = 300,
	  .jitter = 1.0, .up = 2200, .up_sigma = 0.1, .down = 3300, .down_sigma = 0.1, .secs = 2.5,
	  .bps = 1e6, .poisson = true },
	{ .id = "bruteforce-3", .detector = "bruteforce", .variant = "ssh-success", .attck1 = "T1110.001",
	  .attck2 = "T1078",
	  .notes = "250 SSH attempts in 25 min, the last one logs in (a 15 min session)", .src = EP_ADV,
	  .dst = EP_TEXT, .text = "198.18.6.30", .proto = PROTO_TCP, .dport = 22, .f0 = 0.60, .gap_s = 6,
	  .count = 250, .jitter = 1.0, .up = 2200, .up_sigma = 0.1, .down = 3300, .down_sigma = 0.1,
	  .secs = 2.5, .bps = 1e6, .success_last = true },
	{ .id = "bruteforce-4", .detector = "bruteforce", .variant = "rdp", .attck1 = "T1110.001",
	  .notes = "400 RDP attempts in 15 min", .src = EP_ADV, .dst = EP_TEXT, .text = "198.18.1.40",
	  .proto = PROTO_TCP, .dport = 3389, .f0 = 0.28, .gap_s = 2.25, .count = 400, .jitter = 1.0,
	  .up = 3500, .up_sigma = 0.1, .down = 6000, .down_sigma = 0.1, .secs = 3, .bps = 1e6 },
	{ .id = "bruteforce-5", .detector = "bruteforce", .variant = "ssh", .attck1 = "T1110.001",
	  .notes = "IPv6: 300 SSH attempts in 30 min", .src = EP_ADV6, .dst = EP_TEXT,
	  .text = "2001:db8:0:1::22", .proto = PROTO_TCP, .dport = 22, .f0 = 0.72, .gap_s = 6,
	  .count = 300, .jitter = 1.0, .up = 2200, .up_sigma = 0.1, .down = 3300, .down_sigma = 0.1,
	  .secs = 2.5, .bps = 1e6 },
	{ .id = "bruteforce-6", .detector = "bruteforce", .variant = "ssh-distributed",
	  .attck1 = "T1110.001", .notes = "500 SSH attempts in 40 min from 60 hosts of one /24",
	  .src = EP_ADV_NET, .dst = EP_TEXT, .text = "198.18.7.7", .proto = PROTO_TCP, .dport = 22,
	  .f0 = 0.08, .gap_s = 4.8, .count = 500, .jitter = 1.0, .up = 2200, .up_sigma = 0.1,
	  .down = 3300, .down_sigma = 0.1, .secs = 2.5, .bps = 1e6, .n_srcs = 60 },
	{ .id = "bruteforce-7", .detector = "bruteforce", .variant = "telnet", .attck1 = "T1110.001",
	  .notes = "300 telnet login attempts in 10 min", .src = EP_ADV, .dst = EP_TEXT,
	  .text = "198.18.9.45", .proto = PROTO_TCP, .dport = 23, .f0 = 0.88, .gap_s = 2, .count = 300,
	  .jitter = 1.0, .up = 120, .up_sigma = 0.2, .down = 200, .down_sigma = 0.2, .secs = 1.5,
	  .bps = 1e6 },
	{ .id = "bruteforce-8", .detector = "bruteforce", .variant = "smb", .attck1 = "T1110.001",
	  .notes = "250 SMB logon attempts in 12 min", .src = EP_ADV, .dst = EP_TEXT,
	  .text = "198.18.1.45", .proto = PROTO_TCP, .dport = 445, .f0 = 0.52, .gap_s = 2.9, .count = 250,
	  .jitter = 1.0, .up = 1800, .up_sigma = 0.1, .down = 1500, .down_sigma = 0.1, .secs = 0.8,
	  .bps = 1e6 },
	/* exfiltration: large uploads to a rare foreign host */
	{ .id = "exfil-1", .detector = "exfil", .variant = "burst", .attck1 = "T1041",
	  .notes = "about 4 GB in 15 min: 10 uploads of ~400 MB at 40 Mbit/s", .src = EP_CLIENT,
	  .dst = EP_ADV, .proto = PROTO_TCP, .dport = 443, .f0 = 0.33, .gap_s = 90, .count = 10,
	  .jitter = 0.2, .up = 4e8, .up_sigma = 0.1, .down = 2e4, .down_sigma = 0.3, .secs = 1,
	  .bps = 40e6 },
	{ .id = "exfil-2", .detector = "exfil", .variant = "slow", .attck1 = "T1041", .attck2 = "T1030",
	  .notes = "about 3 GB over 4 h: 80 uploads of ~37 MB at random times", .src = EP_CLIENT,
	  .dst = EP_ADV, .proto = PROTO_TCP, .dport = 443, .f0 = 0.12, .f1 = 0.79, .count = 80,
	  .jitter = 1.0, .up = 3.7e7, .up_sigma = 0.3, .down = 1e4, .down_sigma = 0.3, .secs = 1,
	  .bps = 10e6, .poisson = true },
	{ .id = "exfil-3", .detector = "exfil", .variant = "scp", .attck1 = "T1048",
	  .notes = "one 1.5 GB upload over SSH at 30 Mbit/s", .src = EP_CLIENT, .dst = EP_ADV,
	  .proto = PROTO_TCP, .dport = 22, .f0 = 0.57, .gap_s = 1, .count = 1, .up = 1.5e9, .down = 5e4,
	  .secs = 1, .bps = 30e6 },
	{ .id = "exfil-4", .detector = "exfil", .variant = "ipv6", .attck1 = "T1041",
	  .notes = "IPv6: 4 uploads of 500 MB in 10 min", .src = EP_CLIENT6, .dst = EP_ADV6,
	  .proto = PROTO_TCP, .dport = 443, .f0 = 0.45, .gap_s = 150, .count = 4, .jitter = 0.2,
	  .up = 5e8, .up_sigma = 0.05, .down = 2e4, .down_sigma = 0.3, .secs = 1, .bps = 50e6 },
	{ .id = "exfil-5", .detector = "exfil", .variant = "chunked", .attck1 = "T1041",
	  .attck2 = "T1030", .notes = "40 uploads of ~20 MB to port 8080 over 1 h", .src = EP_CLIENT,
	  .dst = EP_ADV, .proto = PROTO_TCP, .dport = 8080, .f0 = 0.65, .gap_s = 90, .count = 40,
	  .jitter = 1.0, .up = 2e7, .up_sigma = 0.2, .down = 1e4, .down_sigma = 0.3, .secs = 1,
	  .bps = 8e6, .poisson = true },
	{ .id = "exfil-6", .detector = "exfil", .variant = "long", .attck1 = "T1041",
	  .notes = "one 1 GB upload at 5 Mbit/s (27 min)", .src = EP_CLIENT, .dst = EP_ADV,
	  .proto = PROTO_TCP, .dport = 443, .f0 = 0.20, .gap_s = 1, .count = 1, .up = 1e9, .down = 5e4,
	  .secs = 1, .bps = 5e6 },
};

static void endpoint(const struct sc_gen *g, enum ep ep, const char *text, uint64_t k,
		     struct mm_addr *a, int *len)
{
	struct client c;

	*len = -1;
	switch (ep) {
	case EP_CLIENT:
	case EP_CLIENT6:
		victim_client(g, k, &c);
		*a = ep == EP_CLIENT ? c.v4 : c.v6;
		return;
	case EP_BUSINESS:
		client_get(g, n_enterprise(g) + (uint32_t)(k % n_business(g)), &c);
		*a = c.v4;
		return;
	case EP_ADV:
	case EP_ADV6:
		adversary(g, POOL_ADVERSARY, k, ep == EP_ADV6, a);
		return;
	case EP_ADV_NET:
		adversary(g, POOL_ADVERSARY, k, false, a);
		a->b[15] = 1;
		*len = 24;
		return;
	case EP_TEXT:
		MM_BUG(mm_addr_parse(a, text) != 0);
		return;
	}
}

/* The source for sp between src and dst; fills the entry's endpoints and notes. */
static int add_sessions(struct sc_gen *g, struct mm_scenario_entry *e, const struct sess_spec *sp,
			const struct mm_addr *src, int src_len, const struct mm_addr *dst)
{
	uint64_t t0 = at(g, sp->f0), count = sp->count;
	double gap = sp->gap_s;
	struct sess_src *p;

	if (gap == 0)
		gap = span_s(g, sp->f0, sp->f1) / (double)count;
	if (count == 0)
		count = (uint64_t)(span_s(g, sp->f0, sp->f1) / gap);
	if (count == 0)
		count = 1;
	p = source_new(sizeof(*p), sess_emit, g, e, t0, secs_after(t0, gap * (double)count) + 1);
	if (!p)
		return sc_source_add(g, NULL);
	p->src = *src;
	p->dst = *dst;
	p->n_srcs = sp->n_srcs;
	p->proto = sp->proto;
	p->dport = sp->dport;
	p->count = count;
	p->gap_s = gap;
	p->jitter = sp->jitter;
	p->up = sp->up;
	p->up_sigma = sp->up_sigma;
	p->down = sp->down;
	p->down_sigma = sp->down_sigma;
	p->secs = sp->secs;
	p->bps = sp->bps;
	p->success_last = sp->success_last;
	p->unanswered = sp->unanswered;
	if (sp->poisson)
		p->rate = 1.0 / gap;
	endpoints(e, src, src_len, dst, -1, sp->dport, sp->proto);
	snprintf(e->notes, sizeof(e->notes), "%s; %s%llu session%s", sp->notes, sp->poisson ? "about " : "",
		 (unsigned long long)count, count == 1 ? "" : "s");
	return sc_source_add(g, &p->base);
}

static int plan_sessions(struct sc_gen *g)
{
	for (size_t k = 0; k < sizeof(sessions) / sizeof(sessions[0]); k++) {
		const struct sess_spec *sp = &sessions[k];
		struct mm_scenario_entry *e = attack(g, sp->id, sp->detector, sp->variant, sp->attck1,
						     sp->attck2);
		struct mm_addr src, dst;
		int src_len, dst_len, rc;

		endpoint(g, sp->src, sp->text, 200 + k, &src, &src_len);
		endpoint(g, sp->dst, sp->text, 200 + k, &dst, &dst_len);
		if ((rc = add_sessions(g, e, sp, &src, src_len, &dst)) != 0)
			return rc;
	}
	return 0;
}

/* --- intel: contacts with listed indicators ----------------------------------------- */

enum ind_kind { IND_IP, IND_NET24, IND_NET48 };

static const struct sess_spec intel_sessions[] = {
	{ .id = "intel-1", .detector = "intel", .variant = "ip", .attck1 = "T1071.001",
	  .notes = "4 HTTPS sessions with a listed address at random times", .src = EP_CLIENT,
	  .dst = EP_TEXT, .proto = PROTO_TCP, .dport = 443, .f0 = 0.05, .f1 = 0.95, .count = 4,
	  .jitter = 1.0, .up = 900, .up_sigma = 0.5, .down = 5000, .down_sigma = 0.8, .secs = 1,
	  .bps = 1e6 },
	{ .id = "intel-2", .detector = "intel", .variant = "prefix", .attck1 = "T1071.001",
	  .notes = "3 HTTP sessions with an address inside a listed /24", .src = EP_CLIENT,
	  .dst = EP_TEXT, .proto = PROTO_TCP, .dport = 80, .f0 = 0.10, .f1 = 0.60, .count = 3,
	  .jitter = 1.0, .up = 600, .up_sigma = 0.5, .down = 20000, .down_sigma = 0.8, .secs = 1,
	  .bps = 1e6 },
	{ .id = "intel-3", .detector = "intel", .variant = "ipv6-prefix", .attck1 = "T1071.001",
	  .notes = "IPv6: 3 HTTPS sessions with an address inside a listed /48", .src = EP_CLIENT6,
	  .dst = EP_TEXT, .proto = PROTO_TCP, .dport = 443, .f0 = 0.30, .f1 = 0.90, .count = 3,
	  .jitter = 1.0, .up = 900, .up_sigma = 0.5, .down = 4000, .down_sigma = 0.8, .secs = 1,
	  .bps = 1e6 },
	{ .id = "intel-4", .detector = "intel", .variant = "inbound", .attck1 = "T1595",
	  .notes = "a listed address delivers mail to the domestic MX 5 times", .src = EP_TEXT,
	  .dst = EP_TEXT, .text = "198.18.0.25", .proto = PROTO_TCP, .dport = 25, .f0 = 0.20, .f1 = 0.80,
	  .count = 5, .jitter = 1.0, .up = 15000, .up_sigma = 0.5, .down = 700, .down_sigma = 0.3,
	  .secs = 2, .bps = 1e6 },
	{ .id = "intel-5", .detector = "intel", .variant = "dns", .attck1 = "T1071.004",
	  .notes = "6 DNS queries straight to a listed address", .src = EP_CLIENT, .dst = EP_TEXT,
	  .proto = PROTO_UDP, .dport = 53, .f0 = 0.40, .f1 = 0.70, .count = 6, .jitter = 1.0, .up = 45,
	  .up_sigma = 0.2, .down = 120, .down_sigma = 0.2, .secs = 0.05, .bps = 1e6 },
	{ .id = "intel-6", .detector = "intel", .variant = "attempt", .attck1 = "T1071.001",
	  .notes = "one unanswered connection attempt to a listed address", .src = EP_CLIENT,
	  .dst = EP_TEXT, .proto = PROTO_TCP, .dport = 8080, .f0 = 0.50, .gap_s = 1, .count = 1,
	  .bps = 1e6, .unanswered = true },
	{ .id = "intel-7", .detector = "intel", .variant = "ip", .attck1 = "T1071.001",
	  .notes = "from a business network: 2 HTTPS sessions with a listed address", .src = EP_BUSINESS,
	  .dst = EP_TEXT, .proto = PROTO_TCP, .dport = 443, .f0 = 0.60, .f1 = 0.90, .count = 2,
	  .jitter = 1.0, .up = 700, .up_sigma = 0.5, .down = 3000, .down_sigma = 0.8, .secs = 1,
	  .bps = 1e6 },
};

static const enum ind_kind intel_kinds[] = { IND_IP, IND_NET24, IND_NET48, IND_IP, IND_IP, IND_IP, IND_IP };

#define N_DECOY_IPS 40
#define N_DECOY_NET24 15
#define N_DECOY_NET48 5

static void indicator_text(const struct mm_addr *a, enum ind_kind kind, char buf[MM_PREFIX_STRLEN])
{
	struct mm_prefix p;

	if (kind == IND_IP) {
		mm_addr_format(a, buf);
		return;
	}
	set_prefix(&p, a, kind == IND_NET24 ? 24 : 48);
	mm_prefix_format(&p, buf);
}

static bool indicator_covers(const char *text, const struct mm_addr *a)
{
	struct mm_prefix p;

	return mm_prefix_parse(&p, text, false) == 0 && mm_prefix_contains(&p, a);
}

static int plan_intel(struct sc_gen *g)
{
	struct mm_addr contacted[sizeof(intel_sessions) / sizeof(intel_sessions[0])];
	size_t n = sizeof(intel_sessions) / sizeof(intel_sessions[0]);
	uint64_t k = 1000;
	char buf[MM_PREFIX_STRLEN];
	int rc;

	for (size_t i = 0; i < n; i++) {
		const struct sess_spec *sp = &intel_sessions[i];
		struct mm_scenario_entry *e = attack(g, sp->id, "intel", sp->variant, sp->attck1, sp->attck2);
		struct mm_addr ind, home;
		int len;

		adversary(g, POOL_INTEL, i, intel_kinds[i] == IND_NET48, &ind);
		indicator_text(&ind, intel_kinds[i], buf);
		e->indicator = sc_indicator_add(g, buf);
		contacted[i] = ind;
		if (sp->src == EP_TEXT) { /* inbound: the listed host is the originator */
			MM_BUG(mm_addr_parse(&home, sp->text) != 0);
			rc = add_sessions(g, e, sp, &ind, -1, &home);
		} else {
			endpoint(g, sp->src, NULL, 300 + i, &home, &len);
			rc = add_sessions(g, e, sp, &home, -1, &ind);
		}
		if (rc != 0)
			return rc;
	}
	/* Decoys: listed, never contacted, and never covering a contacted address. */
	for (int kind = IND_IP; kind <= IND_NET48; kind++) {
		int want = kind == IND_IP ? N_DECOY_IPS : kind == IND_NET24 ? N_DECOY_NET24 : N_DECOY_NET48;

		for (int made = 0; made < want; k++) {
			struct mm_addr a;
			bool clash = false;

			adversary(g, POOL_INTEL, k, kind == IND_NET48, &a);
			indicator_text(&a, (enum ind_kind)kind, buf);
			for (size_t i = 0; i < n && !clash; i++)
				clash = indicator_covers(buf, &contacted[i]);
			if (clash)
				continue;
			sc_indicator_add(g, buf);
			made++;
		}
	}
	return 0;
}

/* --- ddos ------------------------------------------------------------------------------ */

struct flood_spec {
	const char *id, *variant, *attck, *notes;
	enum flood_kind kind;
	const char *victim;
	uint16_t dport, sport;
	uint32_t n_sources;
	double pps;
	uint32_t payload;
	double flow_s, f0, secs;
	bool v6;
};

static const struct flood_spec floods[] = {
	{ .id = "ddos-1", .variant = "syn-flood", .attck = "T1498.001",
	  .notes = "SYN flood on a web server from 1500 bots, 80 kpps for 5 min", .kind = FLOOD_SYN,
	  .victim = "198.18.0.20", .dport = 443, .n_sources = 1500, .pps = 80000, .flow_s = 30,
	  .f0 = 0.35, .secs = 300 },
	{ .id = "ddos-2", .variant = "syn-flood", .attck = "T1498.001",
	  .notes = "SYN flood with forged random sources: one SYN per flow, 400 flows/s for 150 s",
	  .kind = FLOOD_SYN_SPOOFED, .victim = "198.18.1.80", .dport = 443, .pps = 400, .f0 = 0.58,
	  .secs = 150 },
	{ .id = "ddos-3", .variant = "udp-reflection", .attck = "T1498.002",
	  .notes = "NTP reflection (source port 123) from 2000 reflectors, 200 kpps of 468-byte replies for 4 min",
	  .kind = FLOOD_REFLECT, .victim = "198.18.2.50", .sport = 123, .n_sources = 2000, .pps = 200000,
	  .payload = 468, .flow_s = 30, .f0 = 0.25, .secs = 240 },
	{ .id = "ddos-4", .variant = "udp-reflection", .attck = "T1498.002",
	  .notes = "DNS reflection (source port 53) from 1200 resolvers, 60 kpps of fragmented 2900-byte answers for 3 min",
	  .kind = FLOOD_REFLECT, .victim = "198.18.3.7", .sport = 53, .n_sources = 1200, .pps = 60000,
	  .payload = 2900, .flow_s = 30, .f0 = 0.50, .secs = 180 },
	{ .id = "ddos-5", .variant = "udp-reflection", .attck = "T1498.002",
	  .notes = "memcached reflection (source port 11211) from 300 servers, 100 kpps for 2 min",
	  .kind = FLOOD_REFLECT, .victim = "198.18.4.80", .sport = 11211, .n_sources = 300, .pps = 100000,
	  .payload = 1400, .flow_s = 30, .f0 = 0.68, .secs = 120 },
	{ .id = "ddos-6", .variant = "icmp-flood", .attck = "T1498.001",
	  .notes = "ICMP echo flood from 800 bots, 40 kpps of 1000-byte requests for 5 min",
	  .kind = FLOOD_ICMP, .victim = "198.18.0.30", .n_sources = 800, .pps = 40000, .payload = 1000,
	  .flow_s = 30, .f0 = 0.78, .secs = 300 },
	{ .id = "ddos-7", .variant = "udp-flood", .attck = "T1498.001",
	  .notes = "IPv6 UDP flood to random ports from 600 bots, 50 kpps for 200 s", .kind = FLOOD_UDP,
	  .victim = "2001:db8:0:1::20", .n_sources = 600, .pps = 50000, .payload = 1200, .flow_s = 20,
	  .f0 = 0.85, .secs = 200, .v6 = true },
	{ .id = "ddos-8", .variant = "udp-reflection", .attck = "T1498.002",
	  .notes = "SSDP reflection (source port 1900) from 1500 devices, 30 kpps for 150 s",
	  .kind = FLOOD_REFLECT, .victim = "198.18.5.9", .sport = 1900, .n_sources = 1500, .pps = 30000,
	  .payload = 300, .flow_s = 30, .f0 = 0.12, .secs = 150 },
};

static int plan_floods(struct sc_gen *g)
{
	for (size_t k = 0; k < sizeof(floods) / sizeof(floods[0]); k++) {
		const struct flood_spec *sp = &floods[k];
		struct mm_scenario_entry *e = attack(g, sp->id, "ddos", sp->variant, sp->attck, NULL);
		uint64_t t0 = at(g, sp->f0);
		struct flood_src *p = source_new(sizeof(*p), flood_emit, g, e, t0, secs_after(t0, sp->secs));
		struct mm_addr any;
		int rc;

		if (!p)
			return sc_source_add(g, NULL);
		p->kind = sp->kind;
		MM_BUG(mm_addr_parse(&p->dst, sp->victim) != 0);
		p->dport = sp->dport;
		p->sport = sp->sport;
		p->n_sources = sp->n_sources;
		p->pps = sp->pps;
		p->payload = sp->payload;
		p->flow_s = sp->flow_s;
		p->v6 = sp->v6;
		MM_BUG(mm_addr_parse(&any, sp->v6 ? "::" : "0.0.0.0") != 0);
		endpoints(e, &any, 0, &p->dst, -1, sp->dport ? sp->dport : -1,
			  sp->kind == FLOOD_ICMP ? PROTO_ICMP
			  : sp->kind <= FLOOD_SYN_SPOOFED ? PROTO_TCP : PROTO_UDP);
		snprintf(e->notes, sizeof(e->notes), "%s; sources are many (src is any address)", sp->notes);
		if ((rc = sc_source_add(g, &p->base)) != 0)
			return rc;
	}
	return 0;
}

/* --- benign streams and the background ------------------------------------------------ */

struct stream_spec {
	const char *id, *kind, *notes; /* id NULL: unlabelled background */
	const char *host;
	bool inbound;
	enum pool pool;
	uint32_t pool_n;
	uint8_t proto;
	uint16_t dport, dport_alt;
	double rate;                   /* flows/s, times --scale */
	bool diurnal;
	double up, up_sigma, down, down_sigma, fail;
	double f0, f1;
};

static const struct stream_spec streams[] = {
	{ .id = "busy-1", .kind = "busy-server",
	  .notes = "public web server: HTTPS and HTTP from 40000 foreign clients, 6 flows/s at peak",
	  .host = "198.18.0.10", .inbound = true, .pool = POOL_INCLIENT, .pool_n = N_INCLIENT,
	  .proto = PROTO_TCP, .dport = 443, .dport_alt = 80, .rate = 6, .diurnal = true, .up = 700,
	  .up_sigma = 1.0, .down = 25000, .down_sigma = 1.7, .fail = 0.01, .f0 = 0, .f1 = 1 },
	{ .id = "busy-2", .kind = "busy-server",
	  .notes = "public web server over IPv6: 5000 foreign clients, 1.5 flows/s at peak",
	  .host = "2001:db8:0:1::10", .inbound = true, .pool = POOL_INCLIENT6, .pool_n = N_INCLIENT6,
	  .proto = PROTO_TCP, .dport = 443, .rate = 1.5, .diurnal = true, .up = 700, .up_sigma = 1.0,
	  .down = 25000, .down_sigma = 1.7, .fail = 0.01, .f0 = 0, .f1 = 1 },
	{ .id = "flash-1", .kind = "flash-crowd",
	  .notes = "the public web server in the news: 18 extra flows/s for 18 min, ordinary completed sessions",
	  .host = "198.18.0.10", .inbound = true, .pool = POOL_INCLIENT, .pool_n = N_INCLIENT,
	  .proto = PROTO_TCP, .dport = 443, .rate = 18, .up = 700, .up_sigma = 1.0, .down = 60000,
	  .down_sigma = 1.0, .fail = 0.01, .f0 = 0.40, .f1 = 0.45 },
	{ .id = "resolver-1", .kind = "busy-resolver",
	  .notes = "the domestic recursive resolver asks 5000 foreign name servers, 7 queries/s at peak",
	  .host = "198.18.0.53", .pool = POOL_NS, .pool_n = N_NS, .proto = PROTO_UDP, .dport = 53,
	  .rate = 7, .diurnal = true, .up = 45, .up_sigma = 0.3, .down = 180, .down_sigma = 0.8,
	  .fail = 0.02, .f0 = 0, .f1 = 1 },
	{ .id = "resolver-2", .kind = "busy-resolver",
	  .notes = "the resolver over IPv6, 800 name servers, 1.5 queries/s at peak",
	  .host = "2001:db8:0:1::53", .pool = POOL_NS6, .pool_n = N_NS6, .proto = PROTO_UDP, .dport = 53,
	  .rate = 1.5, .diurnal = true, .up = 45, .up_sigma = 0.3, .down = 180, .down_sigma = 0.8,
	  .fail = 0.02, .f0 = 0, .f1 = 1 },
	{ .id = "mail-1", .kind = "mail-relay",
	  .notes = "the domestic mail relay delivers to 1500 foreign MX hosts, 0.3 sessions/s at peak",
	  .host = "198.18.0.25", .pool = POOL_MX, .pool_n = 1500, .proto = PROTO_TCP, .dport = 25,
	  .rate = 0.3, .diurnal = true, .up = 20000, .up_sigma = 1.5, .down = 1500, .down_sigma = 0.5,
	  .fail = 0.03, .f0 = 0, .f1 = 1 },
	{ .notes = "inbound mail from 2000 foreign MTAs", .host = "198.18.0.25", .inbound = true,
	  .pool = POOL_MTA, .pool_n = 2000, .proto = PROTO_TCP, .dport = 25, .rate = 0.6, .diurnal = true,
	  .up = 9000, .up_sigma = 1.5, .down = 800, .down_sigma = 0.5, .fail = 0.02, .f0 = 0, .f1 = 1 },
	{ .notes = "web shop", .host = "198.18.0.20", .inbound = true, .pool = POOL_INCLIENT,
	  .pool_n = N_INCLIENT, .proto = PROTO_TCP, .dport = 443, .rate = 1.0, .diurnal = true, .up = 900,
	  .up_sigma = 1.0, .down = 40000, .down_sigma = 1.5, .fail = 0.01, .f0 = 0, .f1 = 1 },
	{ .notes = "partner API", .host = "198.18.1.80", .inbound = true, .pool = POOL_PARTNER,
	  .pool_n = 60, .proto = PROTO_TCP, .dport = 443, .rate = 0.5, .up = 2000, .up_sigma = 1.0,
	  .down = 8000, .down_sigma = 1.0, .f0 = 0, .f1 = 1 },
	{ .notes = "administrators' SSH", .host = "198.18.0.22", .inbound = true, .pool = POOL_ADMIN,
	  .pool_n = 4, .proto = PROTO_TCP, .dport = 22, .rate = 0.004, .up = 30000, .up_sigma = 1.0,
	  .down = 200000, .down_sigma = 1.5, .f0 = 0, .f1 = 1 },
	{ .notes = "remote desktop users", .host = "198.18.1.40", .inbound = true, .pool = POOL_RDPUSER,
	  .pool_n = 25, .proto = PROTO_TCP, .dport = 3389, .rate = 0.01, .diurnal = true, .up = 2e6,
	  .up_sigma = 1.0, .down = 3e7, .down_sigma = 1.0, .f0 = 0, .f1 = 1 },
	{ .notes = "web shop over IPv6", .host = "2001:db8:0:1::20", .inbound = true,
	  .pool = POOL_INCLIENT6, .pool_n = N_INCLIENT6, .proto = PROTO_TCP, .dport = 443, .rate = 0.3,
	  .diurnal = true, .up = 900, .up_sigma = 1.0, .down = 40000, .down_sigma = 1.5, .fail = 0.01,
	  .f0 = 0, .f1 = 1 },
};

static int plan_streams(struct sc_gen *g)
{
	double scale = sc_config(g)->scale;

	for (size_t k = 0; k < sizeof(streams) / sizeof(streams[0]); k++) {
		const struct stream_spec *sp = &streams[k];
		struct mm_scenario_entry *e = sp->id ? benign(g, sp->id, sp->kind) : NULL;
		struct stream_src *p = source_new(sizeof(*p), stream_emit, g, e, at(g, sp->f0),
						  at(g, sp->f1));
		struct mm_addr any;
		int rc;

		if (!p)
			return sc_source_add(g, NULL);
		MM_BUG(mm_addr_parse(&p->host, sp->host) != 0);
		p->rate = sp->rate * scale;
		p->diurnal = sp->diurnal;
		p->inbound = sp->inbound;
		p->pool = sp->pool;
		p->pool_n = sp->pool_n;
		p->proto = sp->proto;
		p->dport = sp->dport;
		p->dport_alt = sp->dport_alt;
		p->up = sp->up;
		p->up_sigma = sp->up_sigma;
		p->down = sp->down;
		p->down_sigma = sp->down_sigma;
		p->fail = sp->fail;
		if (e) {
			MM_BUG(mm_addr_parse(&any, mm_addr_is_v4(&p->host) ? "0.0.0.0" : "::") != 0);
			if (sp->inbound)
				endpoints(e, &any, 0, &p->host, -1, sp->dport_alt ? -1 : sp->dport,
					  sp->proto);
			else
				endpoints(e, &p->host, -1, &any, 0, sp->dport, sp->proto);
			snprintf(e->notes, sizeof(e->notes), "%s (times --scale)", sp->notes);
		}
		if ((rc = sc_source_add(g, &p->base)) != 0)
			return rc;
	}
	return 0;
}

static uint32_t scaled(const struct sc_gen *g, double n, uint32_t max)
{
	double v = n * sc_config(g)->scale;

	return v < 1 ? 1 : v > max ? max : (uint32_t)v;
}

struct poller_spec {
	const char *id, *kind, *notes;
	enum poll_kind poll;
	double first, n;       /* clients [first, first + n) of the enterprise range, times --scale */
	bool v6;
	const char *host;      /* n == 0: this host polls n_targets of targets */
	enum pool server_pool; /* n > 0: the server is member server_k of it */
	uint32_t server_k;
	uint32_t n_targets;
	double gap_s, jitter;
};

static const struct poller_spec pollers[] = {
	{ .id = "ntp-1", .kind = "periodic-ntp",
	  .notes = "enterprise hosts poll a pool server every 64-1024 s (per host), +-1%",
	  .poll = POLL_NTP, .n = 140, .server_pool = POOL_NTP, .jitter = 0.02 },
	{ .id = "ntp-2", .kind = "periodic-ntp",
	  .notes = "enterprise hosts poll a pool server every 64-1024 s (per host), +-1%",
	  .poll = POLL_NTP, .first = 140, .n = 130, .server_pool = POOL_NTP, .server_k = 1,
	  .jitter = 0.02 },
	{ .id = "ntp-3", .kind = "periodic-ntp",
	  .notes = "enterprise hosts poll a pool server every 64-1024 s (per host), +-1%",
	  .poll = POLL_NTP, .first = 270, .n = 130, .server_pool = POOL_NTP, .server_k = 2,
	  .jitter = 0.02 },
	{ .id = "ntp-4", .kind = "periodic-ntp",
	  .notes = "IPv6 hosts poll a pool server every 64-1024 s (per host), +-1%", .poll = POLL_NTP,
	  .first = 400, .n = 100, .v6 = true, .server_pool = POOL_NTP6, .jitter = 0.02 },
	{ .id = "update-1", .kind = "update-check",
	  .notes = "hosts check a vendor's CDN for updates hourly +-10%", .poll = POLL_UPDATE, .n = 500,
	  .server_pool = POOL_UPDATE, .gap_s = 3600, .jitter = 0.2 },
	{ .id = "update-2", .kind = "update-check",
	  .notes = "hosts check another vendor every 30 min +-5%", .poll = POLL_UPDATE, .first = 500,
	  .n = 300, .server_pool = POOL_UPDATE, .server_k = 1, .gap_s = 1800, .jitter = 0.1 },
	{ .id = "update-3", .kind = "update-check",
	  .notes = "IPv6 hosts check a vendor every 30 min +-5%", .poll = POLL_UPDATE, .first = 800,
	  .n = 100, .v6 = true, .server_pool = POOL_UPDATE6, .gap_s = 1800, .jitter = 0.1 },
	{ .id = "update-4", .kind = "update-check",
	  .notes = "a telemetry agent reports every 15 min +-1%", .poll = POLL_UPDATE, .first = 900,
	  .n = 60, .server_pool = POOL_UPDATE, .server_k = 2, .gap_s = 900, .jitter = 0.02 },
	{ .id = "monitor-1", .kind = "monitoring",
	  .notes = "the monitoring host pings 36 foreign servers every 60 s", .poll = POLL_PING,
	  .host = "10.0.0.5", .server_pool = POOL_MONITOR, .n_targets = 36, .gap_s = 60, .jitter = 0.02 },
	{ .id = "monitor-1", .poll = POLL_HTTPS_CHECK, .host = "10.0.0.5", .server_pool = POOL_MONITOR,
	  .n_targets = 12, .gap_s = 300, .jitter = 0.02 },
	{ .id = "monitor-2", .kind = "monitoring",
	  .notes = "the monitoring host pings 6 foreign servers over IPv6 every 60 s", .poll = POLL_PING,
	  .v6 = true, .host = "2001:db8:0:2::5", .server_pool = POOL_MONITOR6, .n_targets = 6,
	  .gap_s = 60, .jitter = 0.02 },
};

static int plan_pollers(struct sc_gen *g)
{
	struct mm_scenario_entry *e = NULL;

	for (size_t k = 0; k < sizeof(pollers) / sizeof(pollers[0]); k++) {
		const struct poller_spec *sp = &pollers[k];
		struct poller_src *p;
		struct mm_addr any, server;
		int rc;

		/* A spec without a kind adds a source to the entry before it. */
		if (sp->kind)
			e = benign(g, sp->id, sp->kind);
		p = source_new(sizeof(*p), poller_emit, g, e, sc_start(g), sc_end(g));
		if (!p)
			return sc_source_add(g, NULL);
		p->kind = sp->poll;
		p->v6 = sp->v6;
		p->gap_s = sp->gap_s;
		p->jitter = sp->jitter;
		if (sp->host) {
			MM_BUG(mm_addr_parse(&p->host, sp->host) != 0);
			p->targets = sp->server_pool;
			p->n_targets = sp->n_targets;
		} else {
			p->first_client = scaled(g, sp->first, n_enterprise(g) - 1);
			if (sp->first == 0)
				p->first_client = 0;
			p->n_clients = scaled(g, sp->n, n_enterprise(g) - p->first_client);
			pool_addr(g, sp->server_pool, sp->server_k, &server);
			p->server = server;
		}
		if (sp->kind) {
			MM_BUG(mm_addr_parse(&any, sp->v6 ? "::" : "0.0.0.0") != 0);
			if (sp->host)
				endpoints(e, &p->host, -1, &any, 0, -1, 0);
			else if (sp->v6)
				set_prefix_text(&e->src, "2001:db8::/32");
			else
				set_prefix_text(&e->src, "10.0.0.0/8");
			if (!sp->host) {
				set_prefix(&e->dst, &p->server, -1);
				e->dst_port = sp->poll == POLL_NTP ? 123 : 443;
				e->proto = sp->poll == POLL_NTP ? PROTO_UDP : PROTO_TCP;
			}
			snprintf(e->notes, sizeof(e->notes), "%s; %u pollers", sp->notes,
				 sp->host ? p->n_targets : p->n_clients);
		}
		if ((rc = sc_source_add(g, &p->base)) != 0)
			return rc;
	}
	return 0;
}

/* Big ordinary transfers: downloads from a CDN and backups to cloud storage. */
static int plan_bulk(struct sc_gen *g)
{
	struct srng r;
	char id[24];
	int rc;

	srng_init(&r, sc_config(g)->seed, 0x62756c6b00000000ull, 0, 0);
	for (unsigned k = 0; k < 13; k++) {
		bool upload = k >= 10;
		double gb = upload ? srng_uniform(&r, 2, 5) : srng_uniform(&r, 1, 8);
		double mbps = upload ? srng_uniform(&r, 50, 200) : srng_uniform(&r, 100, 400);
		struct sess_spec sp = {
			.notes = upload ? "a backup to cloud storage many hosts use"
					: "a download from a CDN many hosts use",
			.proto = PROTO_TCP, .dport = 443, .f0 = 0.04 + 0.07 * k, .gap_s = 1, .count = 1,
			.up = upload ? gb * 1e9 : 2e5, .down = upload ? 2e5 : gb * 1e9, .secs = 1,
			.bps = mbps * 1e6,
		};
		struct mm_scenario_entry *e;
		struct mm_addr src, dst;
		struct client c;

		snprintf(id, sizeof(id), upload ? "upload-%u" : "bulk-%u", upload ? k - 9 : k + 1);
		e = benign(g, id, upload ? "bulk-upload" : "bulk-download");
		victim_client(g, 400 + k, &c);
		src = c.v4;
		pool_addr(g, upload ? POOL_CLOUD : POOL_DLCDN, upload ? k % 4 : k % 12, &dst);
		if ((rc = add_sessions(g, e, &sp, &src, -1, &dst)) != 0)
			return rc;
		snprintf(e->notes, sizeof(e->notes), "%s: %.1f GB at %.0f Mbit/s", sp.notes, gb, mbps);
	}
	return 0;
}

static int plan_background(struct sc_gen *g)
{
	struct ibr_src *ibr;
	struct mm_scenario_entry *e;
	int rc;

	for (int v6 = 0; v6 <= 1; v6++) {
		e = benign(g, v6 ? "ibr-2" : "ibr-1", "ibr");
		ibr = source_new(sizeof(*ibr), ibr_emit, g, e, sc_start(g), sc_end(g));
		if (!ibr)
			return sc_source_add(g, NULL);
		ibr->v6 = v6;
		ibr->rate = v6 ? 0.05 : 1.5;
		set_prefix_text(&e->src, v6 ? "::/0" : "0.0.0.0/0");
		set_prefix_text(&e->dst, v6 ? "2001:db8:0:1::/64" : "198.18.0.0/15");
		e->proto = PROTO_TCP;
		snprintf(e->notes, sizeof(e->notes),
			 "internet background radiation: single SYNs at %.2f/s from anywhere to random "
			 "public domestic addresses",
			 ibr->rate);
		if ((rc = sc_source_add(g, &ibr->base)) != 0)
			return rc;
	}
	return sc_source_add(g, source_new(sizeof(struct outbound_src), outbound_emit, g, NULL,
					   sc_start(g), sc_end(g)));
}

int sc_plan_standard(struct sc_gen *g)
{
	static const char *const domestic[] = { "10.0.0.0/8", "198.18.0.0/15", "2001:db8::/32" };
	int rc;

	for (size_t i = 0; i < sizeof(domestic) / sizeof(domestic[0]); i++)
		if ((rc = sc_domestic_add(g, domestic[i])) != 0)
			return rc;
	if ((rc = plan_scans(g)) != 0 || (rc = plan_sessions(g)) != 0 || (rc = plan_floods(g)) != 0 ||
	    (rc = plan_intel(g)) != 0)
		return rc;
	if ((rc = plan_streams(g)) != 0 || (rc = plan_pollers(g)) != 0 || (rc = plan_bulk(g)) != 0)
		return rc;
	return plan_background(g);
}
