/*
 * Indicator matching benchmark: the union of the shared lists (FireHOL,
 * IPsum) plus N random prefixes, compiled and mapped as the detectors use
 * it, against a plain path-compressed binary radix (Patricia) trie built
 * here from the same prefixes. Lookups/s on one core for random addresses
 * and addresses drawn from the set, IPv4 and IPv6, best of R runs; every
 * answer is cross-checked between the two structures.
 * Usage: intel_bench [--shared DIR] [--prefixes N] [--lookups N] [--runs R]
 */
#include "intel/intel_int.h" /* the sizes of the lookup structures */
#include "mamori/intel.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the baseline: a path-compressed binary radix trie ---- */

struct pnode {
	uint64_t hi, lo;   /* key, host order, bits beyond `bits` zero */
	int32_t val;       /* prefix index, -1 for a branching-only node */
	uint8_t bits;      /* prefix length in 128-bit terms */
	struct pnode *child[2];
};

struct ptrie {
	struct pnode *root, *pool;
	size_t n, cap;
};

static int key_bit(uint64_t hi, uint64_t lo, unsigned i)
{
	return i < 64 ? (int)(hi >> (63 - i) & 1) : (int)(lo >> (127 - i) & 1);
}

/* Leading bits a and b share, at most max. */
static unsigned common_bits(uint64_t ahi, uint64_t alo, uint64_t bhi, uint64_t blo, unsigned max)
{
	uint64_t x = ahi ^ bhi;
	unsigned c;

	if (x)
		c = (unsigned)__builtin_clzll(x);
	else if ((x = alo ^ blo) != 0)
		c = 64 + (unsigned)__builtin_clzll(x);
	else
		c = 128;
	return c < max ? c : max;
}

static struct pnode *pnode_new(struct ptrie *t, uint64_t hi, uint64_t lo, unsigned bits, int32_t val)
{
	struct pnode *n;

	if (t->n == t->cap) {
		fprintf(stderr, "intel_bench: trie pool exhausted\n");
		exit(1);
	}
	n = &t->pool[t->n++];
	/* Keep only the first `bits` bits. */
	if (bits < 64) {
		hi = bits ? hi & ~(~0ull >> bits) : 0;
		lo = 0;
	} else if (bits < 128) {
		lo = bits > 64 ? lo & ~(~0ull >> (bits - 64)) : 0;
	}
	n->hi = hi;
	n->lo = lo;
	n->bits = (uint8_t)bits;
	n->val = val;
	n->child[0] = n->child[1] = NULL;
	return n;
}

static void ptrie_insert(struct ptrie *t, uint64_t hi, uint64_t lo, unsigned bits, int32_t val)
{
	struct pnode **pp = &t->root;

	while (*pp) {
		struct pnode *n = *pp;
		unsigned c = common_bits(hi, lo, n->hi, n->lo, bits < n->bits ? bits : n->bits);

		if (c < n->bits) {
			struct pnode *fork;

			if (c == bits) {
				fork = pnode_new(t, hi, lo, bits, val);
				fork->child[key_bit(n->hi, n->lo, bits)] = n;
				*pp = fork;
				return;
			}
			fork = pnode_new(t, hi, lo, c, -1);
			fork->child[key_bit(n->hi, n->lo, c)] = n;
			fork->child[key_bit(hi, lo, c)] = pnode_new(t, hi, lo, bits, val);
			*pp = fork;
			return;
		}
		if (n->bits == bits) {
			if (n->val < 0)
				n->val = val;
			return;
		}
		pp = &n->child[key_bit(hi, lo, n->bits)];
	}
	*pp = pnode_new(t, hi, lo, bits, val);
}

static int32_t ptrie_lookup(const struct ptrie *t, uint64_t hi, uint64_t lo)
{
	const struct pnode *n = t->root;
	int32_t best = -1;

	while (n) {
		if (common_bits(hi, lo, n->hi, n->lo, n->bits) < n->bits)
			break;
		if (n->val >= 0)
			best = n->val;
		if (n->bits == 128)
			break;
		n = n->child[key_bit(hi, lo, n->bits)];
	}
	return best;
}

/* ---- inputs ---- */

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Random IPv6 addresses and prefixes live in 2000::/4, where the global unicast space is. */
static struct mm_addr random_v6(void)
{
	struct mm_addr a;

	be64(a.b, (rnd() >> 4) | 0x2000000000000000ull);
	be64(a.b + 8, rnd());
	return a;
}

static void random_prefix(struct mm_prefix *p)
{
	struct mm_addr a;
	unsigned len;
	uint64_t r = rnd() % 100;

	/* Shaped like threat intelligence: mostly hosts and /24s, some shorter blocks. */
	if (rnd() % 4) {
		mm_addr_set_v4_u32(&a, (uint32_t)rnd());
		len = r < 60 ? 32 : r < 85 ? 24 : (unsigned)(16 + rnd() % 16);
	} else {
		a = random_v6();
		len = r < 40 ? 128 : r < 65 ? 64 : r < 90 ? 48 : (unsigned)(32 + rnd() % 32);
	}
	mm_prefix_from_addr(p, &a, len);
}

/* An address inside p. */
static struct mm_addr inside(const struct mm_prefix *p)
{
	struct mm_addr a;
	unsigned bits = mm_prefix_bits128(p);

	be64(a.b, rnd());
	be64(a.b + 8, rnd());
	for (unsigned i = 0; i < bits; i++) {
		uint8_t m = (uint8_t)(0x80u >> (i % 8));

		a.b[i / 8] = (uint8_t)((a.b[i / 8] & ~m) | (p->addr.b[i / 8] & m));
	}
	return a;
}

static double now_s(void)
{
	struct timespec ts;

	/* CPU time of this thread: the machine is shared, and the figure is per core. */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the runs ---- */

enum { BATCH = 256 };

struct workload {
	const char *name;
	struct mm_addr *addrs;
	uint64_t (*hilo)[2];
	size_t n;
};

static double run_batch(const struct mm_intel_snap *snap, const struct workload *w, int runs, size_t *matched)
{
	static struct mm_intel_hit hits[BATCH];
	double best = 1e30;

	for (int r = 0; r < runs; r++) {
		double t0 = now_s();
		size_t m = 0;

		for (size_t i = 0; i < w->n; i += BATCH)
			m += mm_intel_match_addrs(snap, w->addrs + i, w->n - i < BATCH ? w->n - i : BATCH, 0, hits);
		double t = now_s() - t0;
		if (t < best)
			best = t;
		*matched = m;
	}
	return (double)w->n / best;
}

static double run_single(const struct mm_intel_snap *snap, const struct workload *w, int runs, size_t *matched)
{
	double best = 1e30;

	for (int r = 0; r < runs; r++) {
		double t0 = now_s();
		struct mm_intel_hit hit;
		size_t m = 0;

		for (size_t i = 0; i < w->n; i++)
			m += (size_t)mm_intel_match_addr(snap, &w->addrs[i], 0, &hit);
		double t = now_s() - t0;
		if (t < best)
			best = t;
		*matched = m;
	}
	return (double)w->n / best;
}

static double run_trie(const struct ptrie *trie, const struct workload *w, int runs, size_t *matched)
{
	double best = 1e30;

	for (int r = 0; r < runs; r++) {
		double t0 = now_s();
		size_t m = 0;

		for (size_t i = 0; i < w->n; i++)
			m += ptrie_lookup(trie, w->hilo[i][0], w->hilo[i][1]) >= 0;
		double t = now_s() - t0;
		if (t < best)
			best = t;
		*matched = m;
	}
	return (double)w->n / best;
}

static bool hit_is(const struct mm_intel_hit *hit, int got, int32_t want, const struct mm_prefix *pfx)
{
	if (want < 0)
		return got == 0;
	return got == 1 && hit->prefix.len == pfx[want].len && mm_addr_eq(&hit->prefix.addr, &pfx[want].addr);
}

/* Answers must agree: the same longest prefix from the trie, the single call and the batch. */
static size_t cross_check(const struct mm_intel_snap *snap, const struct ptrie *t, const struct mm_prefix *pfx,
			  const struct workload *w)
{
	static struct mm_intel_hit hits[BATCH];
	size_t bad = 0;

	for (size_t base = 0; base < w->n; base += BATCH) {
		size_t m = w->n - base < BATCH ? w->n - base : BATCH;

		mm_intel_match_addrs(snap, w->addrs + base, m, 0, hits);
		for (size_t j = 0; j < m; j++) {
			size_t i = base + j;
			struct mm_intel_hit hit;
			int got = mm_intel_match_addr(snap, &w->addrs[i], 0, &hit);
			int32_t want = ptrie_lookup(t, w->hilo[i][0], w->hilo[i][1]);

			bad += !hit_is(&hit, got, want, pfx) || !hit_is(&hits[j], hits[j].n != 0, want, pfx);
		}
	}
	return bad;
}

static void load_shared(struct mm_intel_set *set, const char *dir)
{
	static const char *const files[] = {
		"threat-intel/firehol/feodo.ipset",	    "threat-intel/firehol/spamhaus_drop.netset",
		"threat-intel/firehol/dshield.netset",	    "threat-intel/firehol/firehol_level1.netset",
		"threat-intel/ipsum/ipsum.txt",
	};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct mm_intel_defaults def = { .source = "shared", .confidence = 50 };
		struct mm_intel_load_stats st;
		char path[4096];

		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (mm_intel_load_file(set, path, MM_INTEL_FMT_AUTO, &def, &st) != 0) {
			fprintf(stderr, "intel_bench: %s\n", mm_last_error());
			exit(1);
		}
		printf("shared list %-45s %8llu indicators\n", files[i], (unsigned long long)st.n_loaded);
	}
}

int main(int argc, char **argv)
{
	const char *shared = NULL;
	size_t n_random = 1000000, n_lookups = 4000000;
	int runs = 5;
	struct mm_intel_set *set;
	struct mm_intel_snap *snap;
	char path[] = "/tmp/intel_bench.XXXXXX";

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--shared") == 0)
			shared = argv[i + 1];
		else if (strcmp(argv[i], "--prefixes") == 0)
			n_random = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--lookups") == 0)
			n_lookups = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--runs") == 0)
			runs = atoi(argv[i + 1]);
	}
	if (mm_intel_set_new(&set) != 0)
		return 1;
	if (shared)
		load_shared(set, shared);
	else
		printf("shared lists absent: generated prefixes only\n");
	for (size_t i = 0; i < n_random; i++) {
		struct mm_intel_indicator ind = { .kind = MM_INTEL_PREFIX, .source = "random", .confidence = 50 };

		random_prefix(&ind.prefix);
		if (mm_intel_set_add(set, &ind) != 0)
			return 1;
	}
	double t0 = now_s();
	int fd = mkstemp(path);
	if (fd < 0)
		return 1;
	close(fd);
	if (mm_intel_compile(set, 0, path) != 0 || mm_intel_snap_open(path, &snap) != 0) {
		fprintf(stderr, "intel_bench: %s\n", mm_last_error());
		return 1;
	}
	unlink(path);
	printf("set: %zu indicators, %zu distinct prefixes; compiled and mapped in %.2f s\n",
	       mm_intel_snap_count(snap), mm_intel_snap_prefixes(snap), now_s() - t0);
	printf("lookup structures: IPv4 table %.2f MiB, run groups %.1f MiB, run lists %.1f MiB, IPv6 table %.0f MiB, "
	       "nodes %.1f MiB, tails %.1f MiB, leaf records %.1f MiB\n",
	       (double)(sizeof(struct mmi_v4top) << MMI_V4_TOP_BITS) / 1048576.0,
	       (double)(snap->n_group * sizeof(struct mmi_gline)) / 1048576.0,
	       (double)(snap->n_list * sizeof(union mmi_line)) / 1048576.0,
	       (double)(sizeof(uint32_t) << MMI_V6_TOP_BITS) / 1048576.0,
	       (double)(snap->n_compact * sizeof(struct mmi_compact) + snap->n_dense * sizeof(struct mmi_dense)) /
		       1048576.0,
	       (double)(snap->n_tail * sizeof(struct mmi_tail)) / 1048576.0,
	       (double)(snap->n_pfx * sizeof(struct mmi_leaf)) / 1048576.0);

	/* The distinct prefixes, read back from the snapshot, feed the trie and the drawn addresses. */
	size_t n_pfx = 0;
	struct mm_prefix *pfx = malloc(mm_intel_snap_count(snap) * sizeof(*pfx));
	for (uint32_t i = 0; i < mm_intel_snap_count(snap); i++) {
		struct mm_intel_indicator ind;

		mm_intel_indicator(snap, i, &ind);
		if (ind.kind == MM_INTEL_PREFIX &&
		    (!n_pfx || pfx[n_pfx - 1].len != ind.prefix.len || !mm_addr_eq(&pfx[n_pfx - 1].addr, &ind.prefix.addr)))
			pfx[n_pfx++] = ind.prefix;
	}
	struct ptrie trie = { .cap = 2 * n_pfx + 1 };
	trie.pool = malloc(trie.cap * sizeof(*trie.pool));
	t0 = now_s();
	for (size_t i = 0; i < n_pfx; i++)
		ptrie_insert(&trie, rd64(pfx[i].addr.b), rd64(pfx[i].addr.b + 8), mm_prefix_bits128(&pfx[i]), (int32_t)i);
	printf("baseline Patricia trie: %zu nodes (%.0f MiB), built in %.2f s\n", trie.n,
	       (double)(trie.n * sizeof(struct pnode)) / 1048576.0, now_s() - t0);

	size_t *v4_idx = malloc(n_pfx * sizeof(size_t)), *v6_idx = malloc(n_pfx * sizeof(size_t)), n4 = 0, n6 = 0;
	for (size_t i = 0; i < n_pfx; i++) {
		if (mm_addr_is_v4(&pfx[i].addr))
			v4_idx[n4++] = i;
		else
			v6_idx[n6++] = i;
	}
	static const char *const names[] = { "IPv4 random", "IPv4 from set", "IPv6 random", "IPv6 from set" };
	printf("\n%-14s %14s %14s %14s %8s %9s %s\n", "workload", "mamori batch/s", "mamori 1-by-1/s",
	       "patricia/s", "ratio", "matched", "cross-check");
	double worst_ratio = 1e9, worst_rate = 1e30;
	for (int k = 0; k < 4; k++) {
		struct workload w = { names[k], malloc(n_lookups * sizeof(struct mm_addr)),
				      malloc(n_lookups * sizeof(uint64_t[2])), n_lookups };

		for (size_t i = 0; i < n_lookups; i++) {
			if (k == 0)
				mm_addr_set_v4_u32(&w.addrs[i], (uint32_t)rnd());
			else if (k == 2)
				w.addrs[i] = random_v6();
			else if (k == 1 && n4)
				w.addrs[i] = inside(&pfx[v4_idx[rnd() % n4]]);
			else if (k == 3 && n6)
				w.addrs[i] = inside(&pfx[v6_idx[rnd() % n6]]);
			w.hilo[i][0] = rd64(w.addrs[i].b);
			w.hilo[i][1] = rd64(w.addrs[i].b + 8);
		}
		size_t m_batch = 0, m_single = 0, m_trie = 0;
		double batch = run_batch(snap, &w, runs, &m_batch);
		double single = run_single(snap, &w, runs, &m_single);
		double trie_rate = run_trie(&trie, &w, runs, &m_trie);
		size_t bad = cross_check(snap, &trie, pfx, &w) + (m_batch != m_trie) + (m_single != m_trie);

		printf("%-14s %14.0f %15.0f %14.0f %7.1fx %8.1f%% %s\n", w.name, batch, single, trie_rate,
		       batch / trie_rate, 100.0 * (double)m_batch / (double)w.n, bad ? "MISMATCH" : "agree");
		if (bad)
			return 1;
		if (batch / trie_rate < worst_ratio)
			worst_ratio = batch / trie_rate;
		if (batch < worst_rate)
			worst_rate = batch;
		free(w.addrs);
		free(w.hilo);
	}
	printf("\nslowest workload: %.1f M lookups/s per core (target 100 M); ratio to Patricia at least %.1fx\n",
	       worst_rate / 1e6, worst_ratio);
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
	free(pfx);
	free(trie.pool);
	free(v4_idx);
	free(v6_idx);
	return 0;
}
