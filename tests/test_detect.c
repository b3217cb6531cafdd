/*
 * detect/: every detector on flows generated here — the planted attack is
 * found with the right fields and explanation, stealthy variants too (a
 * slow scan through TRW, a beacon jittered ±20%), and benign look-alikes
 * (NTP to a pool, hourly update checks to a CDN, a busy public server, a
 * heavy download) raise nothing. Also: the memory cap under a flood of
 * distinct keys, batch vs streaming giving identical alerts, detectors
 * split over two engines giving the same alerts as one, the alert
 * format and store, the config setter, and evaluation arithmetic.
 */
#include "mamori/detect.h"
#include "mamori/intel.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include "test_util.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S MM_NS_PER_SEC
#define T0 (1795132800ull * S) /* 2026-11-20T00:00:00Z */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

/* --- flow generation ------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: deterministic, so every run plants the same traffic. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static double unif(double lo, double hi)
{
	return lo + (hi - lo) * (double)(rnd() >> 11) / (double)(1ull << 53);
}

struct flows {
	struct mm_flow *v;
	size_t n, cap;
};

static struct mm_addr A(const char *text)
{
	struct mm_addr a;

	cr_assert_eq(mm_addr_parse(&a, text), 0, "%s", text);
	return a;
}

static struct mm_addr v4(uint32_t x)
{
	struct mm_addr a;

	mm_addr_set_v4_u32(&a, x);
	return a;
}

static struct mm_flow *add(struct flows *fs, struct mm_addr src, struct mm_addr dst, uint8_t proto, uint16_t sport,
			   uint16_t dport, uint64_t first, uint64_t dur)
{
	struct mm_flow *f;

	if (fs->n == fs->cap) {
		fs->cap = fs->cap ? fs->cap * 2 : 1024;
		fs->v = realloc(fs->v, fs->cap * sizeof(*fs->v));
		cr_assert(fs->v);
	}
	f = &fs->v[fs->n++];
	memset(f, 0, sizeof(*f));
	f->src = src;
	f->dst = dst;
	f->proto = proto;
	f->src_port = sport;
	f->dst_port = dport;
	f->first_ns = first;
	f->last_ns = first + dur;
	f->end_reason = MM_END_IDLE;
	return f;
}

/* A TCP probe nobody answered: one SYN. */
static void syn_probe(struct flows *fs, struct mm_addr src, struct mm_addr dst, uint16_t dport, uint64_t t)
{
	struct mm_flow *f = add(fs, src, dst, 6, (uint16_t)(40000 + rnd() % 20000), dport, t, 0);

	f->fwd_packets = 1;
	f->fwd_bytes = 44;
	f->fwd_tcp_flags = TCP_SYN;
}

/* An answered TCP session of the given size each way. */
static struct mm_flow *session(struct flows *fs, struct mm_addr src, struct mm_addr dst, uint16_t dport, uint64_t t,
			       uint64_t dur, uint64_t out_bytes, uint64_t in_bytes)
{
	struct mm_flow *f = add(fs, src, dst, 6, (uint16_t)(30000 + rnd() % 30000), dport, t, dur);

	f->fwd_packets = 3 + out_bytes / 1400;
	f->fwd_bytes = out_bytes;
	f->rev_packets = 2 + in_bytes / 1400;
	f->rev_bytes = in_bytes;
	f->fwd_tcp_flags = TCP_SYN | TCP_ACK | TCP_PSH | TCP_FIN;
	f->rev_tcp_flags = TCP_SYN | TCP_ACK | TCP_PSH | TCP_FIN;
	f->end_reason = MM_END_EOF;
	return f;
}

static int cmp_last(const void *a, const void *b)
{
	const struct mm_flow *x = a, *y = b;

	return (x->last_ns > y->last_ns) - (x->last_ns < y->last_ns);
}

/* --- running the engine ----------------------------------------------------- */

struct alerts {
	struct mm_alert *v;
	size_t n, cap;
};

static void collect(void *ctx, const struct mm_alert *a)
{
	struct alerts *as = ctx;

	if (as->n == as->cap) {
		as->cap = as->cap ? as->cap * 2 : 16;
		as->v = realloc(as->v, as->cap * sizeof(*as->v));
		cr_assert(as->v);
	}
	as->v[as->n++] = *a;
}

static void config(struct mm_detect_config *c)
{
	mm_detect_config_default(c);
	c->memory_cap = 64 << 20;
	c->hash_key_set = true;
	c->hash_key = (struct mm_hash_key){ 1, 2 };
	cr_assert_eq(mm_detect_config_set(c, "domestic", "10.0.0.0/8, 2001:db8:100::/48"), 0, "%s", mm_last_error());
}

/* Feeds fs in export order, batch by batch, then flushes; alerts into out. */
static void run_cfg(const struct mm_detect_config *c, struct flows *fs, struct alerts *out)
{
	struct mm_detect *d;

	qsort(fs->v, fs->n, sizeof(*fs->v), cmp_last);
	cr_assert_eq(mm_detect_new(&d, c, collect, out), 0, "%s", mm_last_error());
	for (size_t i = 0; i < fs->n; i += 1000)
		cr_assert_eq(mm_detect_feed(d, fs->v + i, fs->n - i < 1000 ? fs->n - i : 1000), 0);
	cr_assert_eq(mm_detect_flush(d), 0);
	mm_detect_free(d);
}

static void run(struct flows *fs, struct alerts *out)
{
	struct mm_detect_config c;

	config(&c);
	run_cfg(&c, fs, out);
}

static const struct mm_alert *find(const struct alerts *as, enum mm_detector det, const char *kind)
{
	for (size_t i = 0; i < as->n; i++)
		if (as->v[i].detector == det && (!kind || strcmp(as->v[i].kind, kind) == 0))
			return &as->v[i];
	return NULL;
}

static size_t count(const struct alerts *as, enum mm_detector det)
{
	size_t n = 0;

	for (size_t i = 0; i < as->n; i++)
		n += as->v[i].detector == det;
	return n;
}

static bool has_attck(const struct mm_alert *a, const char *t)
{
	for (unsigned i = 0; i < a->n_attck; i++)
		if (strcmp(a->attck[i], t) == 0)
			return true;
	return false;
}

static void assert_src(const struct mm_alert *a, const char *addr)
{
	struct mm_addr x = A(addr);

	cr_assert(mm_addr_eq(&a->src.addr, &x), "alert src is not %s: %s", addr, a->explanation);
}

static void assert_dst_in(const struct mm_alert *a, const char *prefix)
{
	struct mm_prefix p;

	cr_assert_eq(mm_prefix_parse(&p, prefix, false), 0);
	cr_assert(mm_prefix_contains(&p, &a->dst.addr) && mm_prefix_bits128(&a->dst) >= mm_prefix_bits128(&p),
		  "alert dst not inside %s: %s", prefix, a->explanation);
}

static void dump(const struct alerts *as)
{
	for (size_t i = 0; i < as->n; i++)
		fprintf(stderr, "  alert %s/%s: %s\n", mm_detector_name(as->v[i].detector), as->v[i].kind,
			as->v[i].explanation);
}

/* Ordinary answered web traffic from domestic clients: the background every test mixes in. */
static void background(struct flows *fs, uint64_t start, uint64_t hours)
{
	for (uint64_t t = start; t < start + hours * 3600 * S; t += 2 * S) {
		struct mm_addr c = v4(0x0a000000u | (uint32_t)(rnd() % 500)); /* 10.0.0.0 - 10.0.1.243 */
		struct mm_addr s = v4(0x5db80000u | (uint32_t)(rnd() % 20000)); /* 93.184.x.y */

		session(fs, c, s, rnd() % 4 ? 443 : 80, t, (1 + rnd() % 20) * S, 500 + rnd() % 3000,
			2000 + rnd() % 200000);
	}
}

/* --- scan --------------------------------------------------------------------- */

Test(scan, horizontal_scan_found_with_fields_and_explanation)
{
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	const struct mm_alert *a;

	background(&fs, T0, 1);
	/* 203.0.113.5 probes 300 hosts of 10.1.0.0/16 on tcp/22 over about three minutes. */
	for (unsigned i = 0; i < 300; i++)
		syn_probe(&fs, A("203.0.113.5"), v4(0x0a010000u | (i * 37 % 65536)), 22, T0 + 600 * S + i * 600000000ull);
	run(&fs, &as);
	a = find(&as, MM_DET_SCAN, "horizontal");
	if (!a)
		dump(&as);
	cr_assert(a, "no horizontal scan alert");
	assert_src(a, "203.0.113.5");
	assert_dst_in(a, "10.1.0.0/16");
	cr_assert_eq(a->port, 22);
	cr_assert_eq(a->proto, 6);
	cr_assert(has_attck(a, "T1046"));
	cr_assert_geq(a->ev.hosts, 55, "hosts %lu", (unsigned long)a->ev.hosts);
	cr_assert_eq(a->ev.successes, 0);
	cr_assert(a->first_ns >= T0 + 600 * S && a->last_ns <= T0 + 800 * S);
	cr_assert(a->n_examples > 0 && a->examples[0].dst_port == 22);
	cr_assert(strstr(a->explanation, "203.0.113.5 probed") && strstr(a->explanation, "on tcp/22"),
		  "%s", a->explanation);
	/* No other detector mistakes a scan or the background for something else. */
	cr_assert_eq(as.n - count(&as, MM_DET_SCAN), 0);
	free(fs.v);
	free(as.v);
}

Test(scan, vertical_and_block_scans)
{
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	const struct mm_alert *a;

	background(&fs, T0, 1);
	for (unsigned p = 1; p <= 200; p++)
		syn_probe(&fs, A("198.51.100.20"), A("10.2.3.4"), (uint16_t)p, T0 + 300 * S + p * S / 2);
	for (unsigned h = 0; h < 30; h++)
		for (unsigned p = 0; p < 30; p++)
			syn_probe(&fs, A("2001:db8:bad::7"), A("2001:db8:100::1"), (uint16_t)(1000 + p),
				  T0 + 1200 * S + (h * 30 + p) * S / 4);
	/* That last loop hits one host: make it many hosts of the /48. */
	for (size_t i = fs.n - 900, k = 0; i < fs.n; i++, k++)
		fs.v[i].dst.b[15] = (uint8_t)(k / 30 + 1);
	run(&fs, &as);
	a = find(&as, MM_DET_SCAN, "vertical");
	cr_assert(a, "no vertical scan alert");
	assert_src(a, "198.51.100.20");
	cr_assert_eq(a->dst.len, 32);
	assert_dst_in(a, "10.2.3.4/32");
	cr_assert_geq(a->ev.ports, 55);
	cr_assert(strstr(a->explanation, "ports on 10.2.3.4"), "%s", a->explanation);
	a = find(&as, MM_DET_SCAN, "block");
	cr_assert(a, "no block scan alert");
	assert_src(a, "2001:db8:bad::7");
	assert_dst_in(a, "2001:db8:100::/120");
	cr_assert_eq(a->severity, MM_SEV_HIGH);
	free(fs.v);
	free(as.v);
}

Test(scan, slow_scan_caught_by_trw_only)
{
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	const struct mm_alert *a;
	struct mm_detect_config c;
	double step;

	background(&fs, T0, 2);
	/* One probe every 150 s to a new host: 4 per window, far below min_hosts. */
	for (unsigned i = 0; i < 30; i++)
		syn_probe(&fs, A("192.0.2.77"), v4(0x0a050000u + i * 11), 3389, T0 + i * 150 * S);
	run(&fs, &as);
	cr_assert_null(find(&as, MM_DET_SCAN, "horizontal"));
	a = find(&as, MM_DET_SCAN, "trw");
	cr_assert(a, "slow scan not caught by TRW");
	assert_src(a, "192.0.2.77");
	/* The walk crosses ln(beta/alpha) after trw_min_failures failures, each adding ln((1-θ1)/(1-θ0)). */
	config(&c);
	step = log((1 - c.scan.trw_theta1) / (1 - c.scan.trw_theta0));
	cr_assert_eq(a->ev.failures, c.scan.trw_min_failures > ceil(log(c.scan.trw_beta / c.scan.trw_alpha) / step)
					    ? c.scan.trw_min_failures
					    : (unsigned)ceil(log(c.scan.trw_beta / c.scan.trw_alpha) / step));
	cr_assert_float_eq(a->ev.score, a->ev.failures * step, 1e-9);
	cr_assert(strstr(a->explanation, "threshold random walk"), "%s", a->explanation);
	free(fs.v);
	free(as.v);
}

/* --- beacon ------------------------------------------------------------------- */

Test(beacon, jittered_beacon_found)
{
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	const struct mm_alert *a;

	background(&fs, T0, 1);
	/* Every 300 s ± 20% (uniform), ~1.2 kB ± 5%, for 8 hours. */
	for (uint64_t t = T0; t < T0 + 8 * 3600 * S; t += (uint64_t)(unif(240, 360) * S))
		session(&fs, A("10.1.2.3"), A("198.51.100.9"), 443, t, 2 * S, (uint64_t)unif(570, 630),
			(uint64_t)unif(570, 630));
	run(&fs, &as);
	a = find(&as, MM_DET_BEACON, NULL);
	if (!a)
		dump(&as);
	cr_assert(a, "jittered beacon missed");
	assert_src(a, "10.1.2.3");
	assert_dst_in(a, "198.51.100.9/32");
	cr_assert_eq(a->port, 443);
	cr_assert(has_attck(a, "T1071") && has_attck(a, "T1573"));
	cr_assert_geq(a->ev.score, 0.85);
	cr_assert(a->ev.rate > 270 && a->ev.rate < 330, "median interval %f", a->ev.rate);
	cr_assert(strstr(a->explanation, "connected to 198.51.100.9 on tcp/443"), "%s", a->explanation);
	cr_assert_eq(count(&as, MM_DET_BEACON), 1);
	free(fs.v);
	free(as.v);
}

/* --- benign look-alikes --------------------------------------------------------- */

Test(benign, look_alikes_raise_nothing)
{
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	struct mm_flow *f;

	background(&fs, T0, 30);
	/* 20 hosts poll an NTP pool of 4 servers every 64..1024 s for 30 hours. */
	for (unsigned h = 0; h < 20; h++)
		for (uint64_t t = T0 + h * 7 * S; t < T0 + 30 * 3600 * S; t += (64ull << (rnd() % 5)) * S) {
			f = add(&fs, v4(0x0a030000u + h), v4(0xc0a80000u + 0x01000000u + (uint32_t)(rnd() % 4)), 17, 123,
				123, t, 0);
			f->fwd_packets = f->rev_packets = 1;
			f->fwd_bytes = f->rev_bytes = 76;
		}
	/* 10 hosts check for updates hourly (± 2 min) at a CDN of 3 addresses, sizes 2 kB .. 2 MB. */
	for (unsigned h = 0; h < 10; h++)
		for (uint64_t t = T0 + h * 60 * S; t < T0 + 30 * 3600 * S; t += (uint64_t)unif(3480, 3720) * S)
			session(&fs, v4(0x0a040000u + h), v4(0x68100000u + (uint32_t)(rnd() % 3)), 443, t, 3 * S, 900,
				(uint64_t)exp(unif(log(2e3), log(2e6))));
	/* A busy public web server (domestic) with 4000 clients, 1..4 answered sessions each. */
	for (unsigned c = 0; c < 4000; c++)
		for (unsigned k = 0; k < 1 + rnd() % 4; k++)
			session(&fs, v4(0x50000000u + c * 101), A("10.9.0.80"), 443,
				T0 + 3600 * S + (uint64_t)unif(0, 3600) * S, 5 * S, 800, 60000);
	/* A heavy but ordinary download: 6 GB in, little out, from a foreign mirror. */
	for (unsigned k = 0; k < 6; k++)
		session(&fs, A("10.1.8.8"), A("151.101.1.1"), 443, T0 + 7200 * S + k * 300 * S, 290 * S, 2000000,
			1000000000);
	run(&fs, &as);
	dump(&as);
	cr_assert_eq(as.n, 0, "benign traffic raised %zu alerts", as.n);
	free(fs.v);
	free(as.v);
}

/* --- ddos ------------------------------------------------------------------------ */

Test(ddos, syn_flood_reflection_and_icmpv6_flood_named)
{
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	const struct mm_alert *a;
	struct mm_flow *f;

	background(&fs, T0, 1);
	/* SYN flood: 30000 packets/s from spoofed sources to 10.3.0.10:80 for 12 s. */
	for (unsigned i = 0; i < 360000; i++) {
		f = add(&fs, v4((uint32_t)rnd()), A("10.3.0.10"), 6, (uint16_t)rnd(), 80, T0 + 600 * S + i * (S / 30000),
			0);
		f->fwd_packets = 1;
		f->fwd_bytes = 40;
		f->fwd_tcp_flags = TCP_SYN;
	}
	/* NTP reflection: 500 reflectors × 1000 replies of 468 bytes each over 10 s: 50000 packets/s. */
	for (unsigned r = 0; r < 500; r++) {
		f = add(&fs, v4(0xc6336400u + r), A("10.3.0.20"), 17, 123, 44123, T0 + 1200 * S + r * (S / 100), 10 * S);
		f->fwd_packets = 1000;
		f->fwd_bytes = 1000 * 468;
	}
	/* ICMPv6 echo flood on an IPv6 victim: 40 sources × 10000 packets in 10 s. */
	for (unsigned r = 0; r < 40; r++) {
		f = add(&fs, A("2001:db8:ff::1"), A("2001:db8:100::53"), 58, 128, 129, T0 + 1800 * S, 10 * S);
		f->src.b[15] = (uint8_t)r;
		f->fwd_packets = 10000;
		f->fwd_bytes = 10000 * 84;
	}
	run(&fs, &as);
	a = find(&as, MM_DET_DDOS, "syn-flood");
	if (!a)
		dump(&as);
	cr_assert(a, "SYN flood missed");
	assert_dst_in(a, "10.3.0.10/32");
	cr_assert_eq(a->port, 80);
	cr_assert(has_attck(a, "T1498") && has_attck(a, "T1498.001"));
	cr_assert(a->ev.rate >= 20000, "rate %f", a->ev.rate);
	a = find(&as, MM_DET_DDOS, "udp-reflection");
	cr_assert(a, "reflection missed");
	assert_dst_in(a, "10.3.0.20/32");
	cr_assert_eq(a->port, 123);
	cr_assert(has_attck(a, "T1498.002"));
	cr_assert(strstr(a->explanation, "NTP reflection"), "%s", a->explanation);
	assert_dst_in(a, "10.3.0.20/32");
	a = find(&as, MM_DET_DDOS, "icmp-flood");
	cr_assert(a, "ICMPv6 flood missed");
	assert_dst_in(a, "2001:db8:100::53/128");
	cr_assert_eq(a->proto, 58);
	/* One alert per attack, not one per window. */
	cr_assert_eq(count(&as, MM_DET_DDOS), 3);
	free(fs.v);
	free(as.v);
}

/* --- bruteforce ------------------------------------------------------------------ */

Test(bruteforce, ssh_guessing_found)
{
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	const struct mm_alert *a;

	background(&fs, T0, 1);
	for (unsigned i = 0; i < 60; i++)
		session(&fs, A("203.0.113.9"), A("10.1.5.5"), 22, T0 + 900 * S + i * 8 * S, 3 * S, 1800, 2600);
	/* An administrator's few long SSH sessions to the same host are not guessing. */
	for (unsigned i = 0; i < 5; i++)
		session(&fs, A("10.0.0.2"), A("10.1.5.5"), 22, T0 + 100 * S + i * 600 * S, 500 * S, 90000, 400000);
	run(&fs, &as);
	a = find(&as, MM_DET_BRUTEFORCE, NULL);
	cr_assert(a, "brute force missed");
	assert_src(a, "203.0.113.9");
	assert_dst_in(a, "10.1.5.5/32");
	cr_assert_eq(a->port, 22);
	cr_assert(has_attck(a, "T1110"));
	cr_assert_eq(a->ev.successes, 20); /* raised at min_attempts */
	cr_assert(strstr(a->explanation, "short SSH sessions to 10.1.5.5 on tcp/22"), "%s", a->explanation);
	cr_assert_eq(count(&as, MM_DET_BRUTEFORCE), 1);
	free(fs.v);
	free(as.v);
}

/* --- exfil ------------------------------------------------------------------------ */

Test(exfil, large_upload_to_rare_destination)
{
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	const struct mm_alert *a;

	background(&fs, T0, 3);
	/* 10.1.7.7 sends 40 × 10 MB to a destination nobody else talks to. */
	for (unsigned i = 0; i < 40; i++)
		session(&fs, A("10.1.7.7"), A("198.51.100.77"), 443, T0 + 3600 * S + i * 45 * S, 40 * S, 10000000, 50000);
	/* The same volume to a popular backup service that 40 internal hosts use: not rare. */
	for (unsigned h = 0; h < 40; h++)
		session(&fs, v4(0x0a060000u + h), A("52.95.1.1"), 443, T0 + 600 * S + h * 10 * S, 5 * S, 20000, 20000);
	for (unsigned i = 0; i < 40; i++)
		session(&fs, A("10.6.0.1"), A("52.95.1.1"), 443, T0 + 3600 * S + i * 45 * S, 40 * S, 10000000, 50000);
	run(&fs, &as);
	cr_assert_eq(count(&as, MM_DET_EXFIL), 1, "exfil alerts: %zu", count(&as, MM_DET_EXFIL));
	a = find(&as, MM_DET_EXFIL, NULL);
	assert_src(a, "10.1.7.7");
	assert_dst_in(a, "198.51.100.77/32");
	cr_assert(has_attck(a, "T1048"));
	cr_assert_geq(a->ev.bytes, 200000000);
	cr_assert(strstr(a->explanation, "10.1.7.7 sent") && strstr(a->explanation, "1 internal host;"), "%s",
		  a->explanation);
	free(fs.v);
	free(as.v);
}

/* --- intel -------------------------------------------------------------------------- */

Test(intel, contact_with_indicator_carries_provenance)
{
	char *dir = tu_tmpdir(), path[512];
	struct mm_intel_set *set;
	struct mm_intel_indicator ind = { 0 };
	struct mm_intel *in;
	struct mm_detect_config c;
	struct flows fs = { 0 };
	struct alerts as = { 0 };
	const struct mm_alert *a;

	cr_assert_eq(mm_intel_set_new(&set), 0);
	ind.kind = MM_INTEL_PREFIX;
	cr_assert_eq(mm_prefix_parse(&ind.prefix, "198.51.100.64/28", false), 0);
	ind.confidence = 90;
	ind.tlp = MM_TLP_AMBER;
	ind.source = "testlist";
	ind.id = "indicator--0001";
	ind.tags = "c2;T1071.001";
	cr_assert_eq(mm_intel_set_add(set, &ind), 0, "%s", mm_last_error());
	snprintf(path, sizeof(path), "%s/%s", dir, MM_INTEL_COMPILED_NAME);
	cr_assert_eq(mm_intel_compile(set, 0, path), 0, "%s", mm_last_error());
	mm_intel_set_free(set);
	cr_assert_eq(mm_intel_open(dir, &in), 0, "%s", mm_last_error());

	background(&fs, T0, 1);
	for (unsigned i = 0; i < 5; i++)
		session(&fs, A("10.1.1.1"), A("198.51.100.66"), 8080, T0 + 100 * S + i * 60 * S, S, 300, 900);
	config(&c);
	c.intel = in;
	run_cfg(&c, &fs, &as);
	cr_assert_eq(count(&as, MM_DET_INTEL), 1, "one alert per contact per suppress interval");
	a = find(&as, MM_DET_INTEL, NULL);
	assert_src(a, "10.1.1.1");
	assert_dst_in(a, "198.51.100.66/32");
	cr_assert(a->has_indicator);
	cr_assert_str_eq(a->indicator.value, "198.51.100.64/28");
	cr_assert_str_eq(a->indicator.source, "testlist");
	cr_assert_str_eq(a->indicator.id, "indicator--0001");
	cr_assert_str_eq(a->indicator.tlp, "amber");
	cr_assert_eq(a->indicator.confidence, 90);
	cr_assert(has_attck(a, "T1071.001"));
	cr_assert_eq(a->severity, MM_SEV_HIGH);
	cr_assert(strstr(a->explanation, "listed in 198.51.100.64/28 by testlist"), "%s", a->explanation);
	mm_intel_close(in);
	free(fs.v);
	free(as.v);
	free(dir);
}

/* --- bounded state ---------------------------------------------------------------- */

Test(memory, cap_respected_under_flood_of_distinct_keys)
{
	struct mm_detect_config c;
	struct mm_detect *d;
	struct mm_detect_stats st;
	struct alerts as = { 0 };
	struct flows fs = { 0 };
	uint64_t evicted = 0;

	config(&c);
	c.memory_cap = 8 << 20;
	cr_assert_eq(mm_detect_new(&d, &c, collect, &as), 0);
	/* A million flows from distinct sources to distinct domestic hosts and ports. */
	for (unsigned round = 0; round < 10; round++) {
		fs.n = 0;
		for (unsigned i = 0; i < 100000; i++) {
			struct mm_flow *f = add(&fs, v4((uint32_t)rnd()), v4(0x0a000000u | (uint32_t)(rnd() & 0xffffff)), 6,
						 (uint16_t)rnd(), (uint16_t)(rnd() % 2 ? 22 : rnd()),
						 T0 + (round * 100000ull + i) * (S / 1000), 0);

			f->fwd_packets = 1;
			f->fwd_bytes = 60;
			f->rev_packets = rnd() % 2;
			f->rev_bytes = f->rev_packets * 60;
			f->fwd_tcp_flags = TCP_SYN;
			f->rev_tcp_flags = f->rev_packets ? TCP_SYN | TCP_ACK : 0;
		}
		cr_assert_eq(mm_detect_feed(d, fs.v, fs.n), 0);
	}
	cr_assert_eq(mm_detect_flush(d), 0);
	mm_detect_stats(d, &st);
	for (unsigned k = 0; k < MM_DET_COUNT; k++)
		evicted += st.evictions[k];
	cr_assert_leq(st.memory_used, c.memory_cap, "state %zu bytes over the cap %zu", st.memory_used, c.memory_cap);
	cr_assert_gt(evicted, 0, "a flood of distinct keys must hit the cap and count evictions");
	cr_assert_eq(st.flows_processed, 1000000);
	mm_detect_free(d);
	free(fs.v);
	free(as.v);
}

/* --- batch vs streaming -------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The alerts as sorted JSON lines, so two runs compare whatever their emission order. */
static char **lines(const struct alerts *as)
{
	char **v = calloc(as->n + 1, sizeof(*v));

	for (size_t i = 0; i < as->n; i++) {
		v[i] = malloc(MM_ALERT_JSON_MAX);
		cr_assert_gt(mm_alert_to_json(&as->v[i], v[i], MM_ALERT_JSON_MAX), 0);
	}
	qsort(v, as->n, sizeof(*v), cmp_str);
	return v;
}

/* Background with a fast and a slow scan, a beacon and password guessing planted. */
static void mixed_traffic(struct flows *fs)
{
	background(fs, T0, 9);
	for (unsigned i = 0; i < 300; i++)
		syn_probe(fs, A("203.0.113.5"), v4(0x0a010000u | (i * 37 % 65536)), 22, T0 + 600 * S + i * S / 2);
	for (unsigned i = 0; i < 30; i++)
		syn_probe(fs, A("192.0.2.77"), v4(0x0a050000u + i * 11), 3389, T0 + i * 150 * S);
	for (uint64_t t = T0; t < T0 + 8 * 3600 * S; t += (uint64_t)(unif(240, 360) * S))
		session(fs, A("10.1.2.3"), A("198.51.100.9"), 443, t, 2 * S, 600, 600);
	for (unsigned i = 0; i < 60; i++)
		session(fs, A("203.0.113.9"), A("10.1.5.5"), 22, T0 + 900 * S + i * 8 * S, 3 * S, 1800, 2600);
}

/* Asserts that two sets of alerts hold the same lines, whatever their order. */
static void assert_same_alerts(const struct alerts *a, const struct alerts *b)
{
	char **x, **y;

	cr_assert_eq(a->n, b->n, "%zu alerts against %zu", a->n, b->n);
	x = lines(a);
	y = lines(b);
	for (size_t i = 0; i < a->n; i++) {
		cr_assert_str_eq(x[i], y[i]);
		free(x[i]);
		free(y[i]);
	}
	free(x);
	free(y);
}

Test(engine, batch_and_streaming_give_identical_alerts)
{
	struct flows fs = { 0 };
	struct alerts batch = { 0 }, stream = { 0 };
	struct mm_detect_config c;
	struct mm_detect *d;

	mixed_traffic(&fs);
	config(&c);
	run_cfg(&c, &fs, &batch);
	cr_assert_geq(batch.n, 4);

	/* Streaming: arrival order disturbed within 5 s of export time, fed in odd-sized batches. */
	for (size_t i = 0; i + 1 < fs.n; i++) {
		size_t j = i + 1 + rnd() % 8;

		if (j < fs.n && fs.v[j].last_ns - fs.v[i].last_ns < 5 * S) {
			struct mm_flow t = fs.v[i];

			fs.v[i] = fs.v[j];
			fs.v[j] = t;
		}
	}
	cr_assert_eq(mm_detect_new(&d, &c, collect, &stream), 0);
	for (size_t i = 0; i < fs.n;) {
		size_t n = 1 + rnd() % 777;

		n = n < fs.n - i ? n : fs.n - i;
		cr_assert_eq(mm_detect_feed(d, fs.v + i, n), 0);
		i += n;
	}
	cr_assert_eq(mm_detect_flush(d), 0);
	mm_detect_free(d);

	assert_same_alerts(&batch, &stream);
	free(fs.v);
	free(batch.v);
	free(stream.v);
}

/*
 * What inline detection on two threads relies on (cli_detect.c): the
 * detectors split over two engines (MM_DETECT_SECOND_THREAD) under one
 * hash key, fed the same flows in the same batches, raise the same alerts
 * as one engine running all six, and each engine in the one engine's order.
 */
Test(engine, detectors_split_over_two_engines_give_the_same_alerts)
{
	struct flows fs = { 0 };
	struct alerts one = { 0 }, part[2] = { 0 }, both = { 0 };
	struct mm_detect_config c, pc[2];
	struct mm_detect *d[2];

	mixed_traffic(&fs);
	for (uint64_t t = T0 + 3600 * S; t < T0 + 3600 * S + 60 * S; t += S / 500) /* a SYN flood for ddos */
		syn_probe(&fs, v4(0xc6330000u | (uint32_t)(rnd() % 65536)), A("10.9.9.9"), 80, t);
	config(&c);
	run_cfg(&c, &fs, &one);
	for (int k = 0; k < 2; k++) {
		pc[k] = c;
		pc[k].enabled = k == 0 ? c.enabled & ~MM_DETECT_SECOND_THREAD : c.enabled & MM_DETECT_SECOND_THREAD;
		cr_assert_eq(mm_detect_new(&d[k], &pc[k], collect, &part[k]), 0, "%s", mm_last_error());
	}
	for (size_t i = 0; i < fs.n; i += 1000)
		for (int k = 0; k < 2; k++)
			cr_assert_eq(mm_detect_feed(d[k], fs.v + i, fs.n - i < 1000 ? fs.n - i : 1000), 0);
	for (int k = 0; k < 2; k++) {
		size_t j = 0;

		cr_assert_eq(mm_detect_flush(d[k]), 0);
		mm_detect_free(d[k]);
		/* This engine's alerts are the one engine's alerts of its detectors, in the same order. */
		for (size_t i = 0; i < one.n; i++) {
			if (!(pc[k].enabled & (1u << one.v[i].detector)))
				continue;
			cr_assert_lt(j, part[k].n);
			cr_assert_str_eq(one.v[i].explanation, part[k].v[j].explanation);
			j++;
		}
		cr_assert_eq(j, part[k].n);
		for (size_t i = 0; i < part[k].n; i++)
			collect(&both, &part[k].v[i]);
	}
	/* Both halves raised something: the split is a real one. */
	cr_assert_gt(part[0].n, 0);
	cr_assert_gt(part[1].n, 0);
	assert_same_alerts(&one, &both);
	free(fs.v);
	free(one.v);
	free(part[0].v);
	free(part[1].v);
	free(both.v);
}

/* --- alert format and store ------------------------------------------------------------ */

static struct mm_alert sample_alert(enum mm_detector det, const char *src, const char *dst, uint64_t first,
				    uint64_t last)
{
	struct mm_alert a;

	memset(&a, 0, sizeof(a));
	a.detector = det;
	snprintf(a.kind, sizeof(a.kind), "test");
	a.severity = MM_SEV_HIGH;
	a.confidence = 0.75;
	cr_assert_eq(mm_prefix_parse(&a.src, src, false), 0);
	cr_assert_eq(mm_prefix_parse(&a.dst, dst, false), 0);
	a.first_ns = first;
	a.last_ns = last;
	a.emitted_ns = last;
	return a;
}

Test(alerts, json_round_trip_and_checksum)
{
	struct mm_alert a = sample_alert(MM_DET_INTEL, "10.1.1.1", "198.51.100.0/24", T0, T0 + 5 * S), b;
	char line[MM_ALERT_JSON_MAX];
	int n;

	a.proto = 6;
	a.port = 443;
	a.ev.flows = 7;
	a.ev.bytes = 12345;
	a.n_examples = 1;
	a.examples[0] = (struct mm_alert_example){ A("10.1.1.1"), A("198.51.100.7"), 5555, 443, 6, T0 };
	snprintf(a.attck[a.n_attck++], 16, "T1071");
	a.has_indicator = true;
	snprintf(a.indicator.source, sizeof(a.indicator.source), "list \"x\"");
	snprintf(a.explanation, sizeof(a.explanation), "quote \" and backslash \\ and tab \t");
	n = mm_alert_to_json(&a, line, sizeof(line));
	cr_assert_gt(n, 0);
	cr_assert(strstr(line, "\"first\":\"2026-11-20T00:00:00.000000Z\""), "%s", line);
	cr_assert(strstr(line, "\"dst\":\"198.51.100.0/24\""), "%s", line);
	cr_assert_eq(mm_alert_from_json(line, (size_t)n, &b), 0, "%s", mm_last_error());
	cr_assert_eq(b.detector, MM_DET_INTEL);
	cr_assert_eq(b.first_ns, a.first_ns);
	cr_assert_eq(b.dst.len, 24);
	cr_assert_eq(b.port, 443);
	cr_assert_eq(b.ev.bytes, 12345);
	cr_assert_eq(b.examples[0].src_port, 5555);
	cr_assert_str_eq(b.attck[0], "T1071");
	cr_assert_str_eq(b.indicator.source, "list \"x\"");
	cr_assert_str_eq(b.explanation, a.explanation);
	/* One changed byte breaks the seal. */
	line[20] ^= 1;
	cr_assert_eq(mm_alert_from_json(line, (size_t)n, &b), MM_EFORMAT);
}

struct seen {
	unsigned n;
};

static void count_alert(void *ctx, const struct mm_alert *a)
{
	(void)a;
	((struct seen *)ctx)->n++;
}

Test(alerts, store_append_filter_dedup_and_torn_line)
{
	char *dir = tu_tmpdir(), path[512];
	struct mm_alert_store *s;
	struct mm_alert_read_stats st;
	struct mm_alert_filter f = { 0, UINT64_MAX, 0, MM_SEV_LOW };
	struct seen seen = { 0 };
	struct mm_alert a1 = sample_alert(MM_DET_SCAN, "203.0.113.5", "10.1.0.0/16", T0, T0 + 60 * S);
	struct mm_alert a2 = sample_alert(MM_DET_DDOS, "0.0.0.0/0", "10.3.0.10", T0 + 86400 * S, T0 + 86460 * S);
	FILE *fp;

	a2.severity = MM_SEV_CRITICAL;
	cr_assert_eq(mm_alert_store_open(&s, dir), 0);
	cr_assert_eq(mm_alert_store_append(s, &a1), 0);
	cr_assert_eq(mm_alert_store_append(s, &a1), 0); /* the same alert stored twice */
	cr_assert_eq(mm_alert_store_append(s, &a2), 0);
	mm_alert_store_close(s);
	/* A crash mid-line leaves a torn tail. */
	snprintf(path, sizeof(path), "%s/alerts/alerts-2026-11-21.ndjson", dir);
	fp = fopen(path, "a");
	cr_assert(fp);
	fputs("{\"id\":\"00\",\"time\":\"2026-11-21T00:00", fp);
	fclose(fp);

	cr_assert_eq(mm_alert_store_read(dir, &f, count_alert, NULL, &seen, &st), 0);
	cr_assert_eq(seen.n, 2);
	cr_assert_eq(st.files, 2);
	cr_assert_eq(st.duplicates, 1);
	cr_assert_eq(st.bad_lines, 1);
	seen.n = 0;
	f.detectors = 1u << MM_DET_SCAN;
	cr_assert_eq(mm_alert_store_read(dir, &f, count_alert, NULL, &seen, NULL), 0);
	cr_assert_eq(seen.n, 1);
	seen.n = 0;
	f.detectors = 0;
	f.min_severity = MM_SEV_CRITICAL;
	cr_assert_eq(mm_alert_store_read(dir, &f, count_alert, NULL, &seen, NULL), 0);
	cr_assert_eq(seen.n, 1);
	seen.n = 0;
	f.min_severity = MM_SEV_LOW;
	f.since_ns = T0 + 3600 * S;
	cr_assert_eq(mm_alert_store_read(dir, &f, count_alert, NULL, &seen, NULL), 0);
	cr_assert_eq(seen.n, 1);
	free(dir);
}

/* --- config ------------------------------------------------------------------------------ */

Test(config, setter_parses_and_refuses)
{
	struct mm_detect_config c;

	mm_detect_config_default(&c);
	cr_assert_eq(mm_detect_config_set(&c, "scan.min_hosts", "128"), 0);
	cr_assert_eq(c.scan.min_hosts, 128);
	cr_assert_eq(mm_detect_config_set(&c, "beacon.window", "12h"), 0);
	cr_assert_eq(c.beacon.window_ns, 12 * 3600 * S);
	cr_assert_eq(mm_detect_config_set(&c, "bruteforce.ports", "22, 3389"), 0);
	cr_assert_eq(c.bruteforce.ports.n, 2);
	cr_assert_eq(c.bruteforce.ports.port[1], 3389);
	cr_assert_eq(mm_detect_config_set(&c, "detectors", "scan,ddos"), 0);
	cr_assert_eq(c.enabled, (1u << MM_DET_SCAN) | (1u << MM_DET_DDOS));
	cr_assert_eq(mm_detect_config_set(&c, "scan.trw_alpha", "0.05"), 0);
	cr_assert_float_eq(c.scan.trw_alpha, 0.05, 1e-12);
	cr_assert_eq(mm_detect_config_set(&c, "scan.min_fail_ratio", "1.5"), MM_EINVAL);
	cr_assert_eq(mm_detect_config_set(&c, "scan.min_hosts", "-3"), MM_EINVAL);
	cr_assert_eq(mm_detect_config_set(&c, "bruteforce.ports", "22,70000"), MM_EINVAL);
	cr_assert_eq(c.bruteforce.ports.n, 2, "a refused value leaves the old one");
	cr_assert_eq(mm_detect_config_set(&c, "detectors", "scan,nonsense"), MM_EINVAL);
	cr_assert_eq(mm_detect_config_set(&c, "no.such.key", "1"), MM_ENOENT);
	cr_assert(strstr(mm_last_error(), "no.such.key"));
}

/* --- evaluation arithmetic ------------------------------------------------------------------ */

Test(evaluate, precision_recall_and_time_to_detect_from_definitions)
{
	char *dir = tu_tmpdir(), path[512];
	static const char truth[] =
		"{\"scenario\":\"t\",\"attacks\":["
		"{\"id\":\"a\",\"detector\":\"scan\",\"src\":\"203.0.113.5\",\"dst\":\"10.1.0.0/16\","
		"\"first\":\"2026-11-20T01:00:00Z\",\"last\":\"2026-11-20T01:10:00Z\"},"
		"{\"id\":\"b\",\"detector\":\"scan\",\"src\":\"203.0.113.6\",\"dst\":\"10.2.0.0/16\","
		"\"first\":\"2026-11-20T02:00:00Z\",\"last\":\"2026-11-20T02:10:00Z\"},"
		"{\"id\":\"c\",\"detector\":\"scan\",\"src\":\"203.0.113.7\",\"dst\":\"10.3.0.0/16\","
		"\"first\":\"2026-11-20T03:00:00Z\",\"last\":\"2026-11-20T03:10:00Z\"},"
		"{\"id\":\"d\",\"detector\":\"ddos\",\"src\":\"198.51.100.0/24\",\"dst\":\"10.9.0.1\","
		"\"first\":\"2026-11-20T04:00:00Z\",\"last\":\"2026-11-20T04:05:00Z\"}],"
		"\"benign\":[{\"id\":\"n\",\"kind\":\"periodic-ntp\",\"src\":\"10.4.0.1\",\"dst\":\"192.0.2.123\"}]}";
	struct mm_alert al[6];
	struct mm_eval ev;
	uint64_t ta = T0 + 3600 * S, tb = T0 + 7200 * S, td = T0 + 4 * 3600 * S;
	double ttd_a, ttd_b;

	snprintf(path, sizeof(path), "%s/truth.json", dir);
	cr_assert_eq(tu_write_file(path, truth, strlen(truth)), 0);
	/* Two alerts for attack a (30 s and 90 s in), one for b (45 s in), none for c. */
	al[0] = sample_alert(MM_DET_SCAN, "203.0.113.5", "10.1.4.0/22", ta, ta + 30 * S);
	al[1] = sample_alert(MM_DET_SCAN, "203.0.113.5", "10.1.0.0/16", ta, ta + 90 * S);
	al[2] = sample_alert(MM_DET_SCAN, "203.0.113.6", "10.2.7.7", tb, tb + 45 * S);
	/* A false one: the right source, but an hour after attack a ended. */
	al[3] = sample_alert(MM_DET_SCAN, "203.0.113.5", "10.1.0.0/16", ta + 7200 * S, ta + 7300 * S);
	/* The flood seen in the other orientation (victim as src): still the attack; then one naming the NTP look-alike. */
	al[4] = sample_alert(MM_DET_DDOS, "0.0.0.0/0", "10.9.0.1", td + 10 * S, td + 20 * S);
	al[5] = sample_alert(MM_DET_BEACON, "10.4.0.1", "192.0.2.123", T0, T0 + 3600 * S);
	cr_assert_eq(mm_detect_evaluate(path, al, 6, &ev), 0, "%s", mm_last_error());

	cr_assert_eq(ev.row[MM_DET_SCAN].attacks, 3);
	cr_assert_eq(ev.row[MM_DET_SCAN].detected, 2);
	cr_assert_eq(ev.row[MM_DET_SCAN].alerts, 4);
	cr_assert_eq(ev.row[MM_DET_SCAN].matched, 3);
	cr_assert_float_eq(ev.row[MM_DET_SCAN].precision, 3.0 / 4.0, 1e-12);
	cr_assert_float_eq(ev.row[MM_DET_SCAN].recall, 2.0 / 3.0, 1e-12);
	/* Time to detect per attack: its earliest matching alert's emission minus its start. */
	ttd_a = 30;
	ttd_b = 45;
	cr_assert_float_eq(ev.row[MM_DET_SCAN].ttd_median_s, (ttd_a + ttd_b) / 2, 1e-9);
	cr_assert_float_eq(ev.row[MM_DET_SCAN].ttd_max_s, ttd_b, 1e-9);
	cr_assert_eq(ev.row[MM_DET_DDOS].detected, 1);
	cr_assert_float_eq(ev.row[MM_DET_DDOS].precision, 1.0, 1e-12);
	cr_assert_float_eq(ev.row[MM_DET_DDOS].ttd_median_s, 20, 1e-9);
	cr_assert_eq(ev.row[MM_DET_BEACON].attacks, 0);
	cr_assert_eq(ev.row[MM_DET_BEACON].alerts, 1);
	cr_assert_float_eq(ev.row[MM_DET_BEACON].precision, 0.0, 1e-12);
	cr_assert(isnan(ev.row[MM_DET_BEACON].recall));
	cr_assert_eq(ev.benign_alerted, 1);
	cr_assert(isnan(ev.row[MM_DET_EXFIL].precision));
	free(dir);
}
