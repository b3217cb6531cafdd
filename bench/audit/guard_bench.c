/*
 * What the guard adds to a query: the same aggregation over a generated
 * store of N flows (default 5,000,000), run bare and run the way `mamori
 * query` runs it under a panel (mm_guard: load the panel and the
 * authorization, verify signatures, narrow, write the decision to the
 * audit log, its fsync overlapping the query; the query as narrowed;
 * mm_guard_durable before output; mm_guard_done: append what it returned;
 * close the log). Best of R runs each, alternating which goes first;
 * prints both, the ratio, and the guard's own time, for three queries: a
 * count that names no address (so the guard ANDs the scope's prefixes in),
 * the same naming addresses inside the scope (no predicate added), and a
 * group-by over the whole store.
 *
 *   guard_bench [--flows N] [--runs R] [--dir DIR]
 */
#include "mamori/guard.h"
#include "mamori/keys.h"
#include "mamori/oversight.h"
#include "mamori/query.h"
#include "mamori/query_exec.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* CPU of every thread of the process: the guard's second thread included. */
static double cpu_s(void)
{
	return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static void die(const char *what)
{
	fprintf(stderr, "guard_bench: %s: %s\n", what, mm_last_error());
	exit(1);
}

/* Flows between 10.0.0.0/8 and 198.18.0.0/15, an hour from 2026-11-15T00:00Z. */
static void fill_store(const char *dir, uint64_t n)
{
	struct mm_store_writer *w = NULL;
	struct mm_flow batch[4096];
	uint64_t t0 = 1794700800ull * MM_NS_PER_SEC, x = 88172645463325252ull;

	if (mm_store_writer_open(&w, dir, NULL) != 0)
		die("store");
	for (uint64_t i = 0; i < n;) {
		size_t k = 0;

		for (; k < sizeof(batch) / sizeof(batch[0]) && i < n; k++, i++) {
			struct mm_flow *f = &batch[k];

			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			memset(f, 0, sizeof(*f));
			mm_addr_set_v4_u32(&f->src, 0x0a000000u | (uint32_t)(x & 0xffffff));
			mm_addr_set_v4_u32(&f->dst, 0xc6120000u | (uint32_t)(x >> 24 & 0x1ffff));
			f->first_ns = t0 + i * (3600ull * MM_NS_PER_SEC / n);
			f->last_ns = f->first_ns + (x >> 40) % (30ull * MM_NS_PER_SEC);
			f->src_port = (uint16_t)(1024 + (x >> 8) % 60000);
			f->dst_port = (x >> 50) % 4 == 0 ? 22 : 443;
			f->proto = 6;
			f->fwd_packets = 1 + (x >> 20) % 40;
			f->fwd_bytes = f->fwd_packets * 80;
			f->id = i + 1;
		}
		if (mm_store_writer_append(w, batch, k) != 0)
			die("append");
	}
	if (mm_store_writer_close(w) != 0)
		die("close");
}

/* A panel of three, quorum two, and one analyze authorization over everything stored. */
static void oversee(const char *dir)
{
	struct mm_signer *s[3];
	struct mm_verifier *v[3];
	struct mm_oversight *o = NULL;
	char id[MM_AUTHZ_ID_MAX];
	const char *names[3] = { "alice", "bob", "carol" };
	json_t *doc;

	for (int i = 0; i < 3; i++) {
		char *priv = NULL, *pub = NULL;
		if (mm_key_generate(names[i], &priv, &pub) || mm_signer_parse(priv, &s[i]) || mm_verifier_parse(pub, &v[i]))
			die("keys");
		free(priv);
		free(pub);
	}
	if (mm_panel_init(dir, v, 3, 2, s, 3, mm_time_now_ns()) != 0)
		die("panel");
	doc = json_pack("{s:s, s:i, s:s, s:{s:s, s:s}, s:s, s:{s:s, s:s}, s:{s:[], s:[s, s], s:[], s:[], s:[], "
			"s:{s:n, s:n}, s:[], s:s}, s:[], s:s, s:s, s:n, s:{s:b, s:n}, s:b}",
			"type", "mamori-authorization", "v", 1, "kind", "analyze", "legal_basis", "article", "Art. 12",
			"text", "bench", "purpose", "bench", "requester", "identity", "erin", "organisation", "bench",
			"scope", "sensors", "prefixes", "10.0.0.0/8", "198.18.0.0/15", "asns", "countries", "indicators",
			"data", "from", "until", "fields", "output", "record", "actions", "valid_from",
			"2020-01-01T00:00:00Z", "valid_until", "2099-01-01T00:00:00Z", "max_uses", "emergency", "flag", 0,
			"ratify_by", "automated", 0);
	if (!doc || mm_oversight_open(dir, &o) || mm_oversight_request(o, doc, mm_time_now_ns(), id) ||
	    mm_oversight_sign(o, id, s[0]) || mm_oversight_sign(o, id, s[1]))
		die("authorization");
	mm_oversight_free(o);
	for (int i = 0; i < 3; i++) {
		mm_signer_free(s[i]);
		mm_verifier_free(v[i]);
	}
}

/* One measured query: a filter and, optionally, group-by keys. */
struct bench_query {
	const char *filter, *group_by;
};

static uint64_t run_query(const char *dir, const struct bench_query *bq, const struct mm_query *q, uint64_t since,
			  uint64_t until)
{
	struct mm_query_exec_options opt;
	struct mm_qagg agg;
	struct mm_qagg_row *rows = NULL;
	struct mm_store *st = NULL;
	size_t n = 0;
	uint64_t flows = 0;

	mm_query_exec_options_default(&opt);
	opt.since_ns = since;
	opt.until_ns = until;
	mm_qagg_init(&agg);
	if (bq->group_by && mm_qagg_parse_keys(bq->group_by, agg.keys, MM_QAGG_MAX_KEYS, &agg.n_keys) != 0)
		die("keys");
	if (mm_store_open(&st, dir) || mm_query_aggregate(st, q, &agg, &opt, &rows, &n, NULL))
		die("query");
	for (size_t i = 0; i < n; i++)
		flows += rows[i].flows;
	free(rows);
	mm_store_free(st);
	return flows;
}

/* Best times of one measure(): the bare query, the guarded one, and the guard's own two parts; and the last run's. */
struct best {
	double bare, guarded, decision, done;
	double bare_cpu, guarded_cpu;
	double last_bare, last_guarded;
};

static double at_most(double best, double t)
{
	return t < best ? t : best;
}

static uint64_t time_bare(const char *dir, const struct bench_query *bq, const struct mm_query *q, struct best *b)
{
	double t0 = now_s(), c0 = cpu_s();
	uint64_t flows = run_query(dir, bq, q, 0, UINT64_MAX);

	b->last_bare = now_s() - t0;
	b->bare = at_most(b->bare, b->last_bare);
	b->bare_cpu = at_most(b->bare_cpu, cpu_s() - c0);
	return flows;
}

/* As `mamori query` runs it: the decision's fsync overlaps the query and is awaited before output. */
static uint64_t time_guarded(const char *dir, const struct bench_query *bq, const struct mm_query *q, struct best *b)
{
	struct mm_guard_act act = { .act = MM_ACT_QUERY, .query = q, .until_ns = UINT64_MAX, .overlap_sync = true };
	struct mm_guard_decision d;
	json_t *result;
	uint64_t flows;
	double t0 = now_s(), c0 = cpu_s(), t1, t2;

	if (bq->group_by)
		act.extra_fields = 1u << MM_QF_NET;
	if (mm_guard(dir, &act, &d) != 0 || !d.allowed)
		die(d.reason[0] ? d.reason : "guard");
	t1 = now_s();
	flows = run_query(dir, bq, d.query, d.since_ns, d.until_ns);
	t2 = now_s();
	if (mm_guard_durable(&d) != 0)
		die("guard durable");
	result = json_pack("{s:I}", "flows", (json_int_t)flows);
	if (mm_guard_done(dir, &act, &d, result) != 0)
		die("guard done");
	mm_guard_decision_clear(&d);
	json_decref(result);
	b->last_guarded = now_s() - t0;
	b->guarded = at_most(b->guarded, b->last_guarded);
	b->guarded_cpu = at_most(b->guarded_cpu, cpu_s() - c0);
	b->decision = at_most(b->decision, t1 - t0);
	b->done = at_most(b->done, now_s() - t2);
	return flows;
}

static int by_value(const void *pa, const void *pb)
{
	double a = *(const double *)pa, b = *(const double *)pb;

	return (a > b) - (a < b);
}

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), by_value);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int measure(const char *dir, const struct bench_query *bq, uint64_t runs)
{
	struct best b = { 1e9, 1e9, 1e9, 1e9, 1e9, 1e9, 0, 0 };
	uint64_t bare_flows = 0, guarded_flows = 0;
	struct mm_query *q = NULL;
	double *bare = calloc(runs, sizeof(double)), *diff = calloc(runs, sizeof(double));

	if (!bare || !diff)
		die("out of memory");
	if (mm_query_parse(bq->filter, &q, NULL) != 0)
		die("parse");
	/* Alternating which goes first, so neither profits from the other having warmed the caches. */
	for (uint64_t r = 0; r < runs; r++) {
		if (r % 2 == 0)
			bare_flows = time_bare(dir, bq, q, &b);
		guarded_flows = time_guarded(dir, bq, q, &b);
		if (r % 2 == 1)
			bare_flows = time_bare(dir, bq, q, &b);
		bare[r] = b.last_bare;
		diff[r] = b.last_guarded - b.last_bare;
	}
	mm_query_free(q);
	if (bare_flows != guarded_flows) {
		fprintf(stderr, "guard_bench: the narrowed query counted %" PRIu64 " flows, the bare one %" PRIu64 "\n",
			guarded_flows, bare_flows);
		return 1;
	}
	/* The guard's own time (decision + completion) is less noisy than the difference of two query times. */
	printf("%-40s bare %.4f s  guarded %.4f s  overhead %+.2f%%  (guard itself: decision %.2f ms + done %.2f ms "
	       "= %.2f%% of bare)\n",
	       bq->group_by ? "proto tcp, group-by srcnet/24" : bq->filter, b.bare, b.guarded,
	       (b.guarded / b.bare - 1) * 100, b.decision * 1e3, b.done * 1e3, (b.decision + b.done) / b.bare * 100);
	printf("%-40s CPU, all threads: bare %.2f ms  guarded %.2f ms  %+.2f ms = %+.2f%%\n", "", b.bare_cpu * 1e3,
	       b.guarded_cpu * 1e3, (b.guarded_cpu - b.bare_cpu) * 1e3, (b.guarded_cpu / b.bare_cpu - 1) * 100);
	/* Each run's guarded time less its neighbouring bare one: the median of these pairs resists noise best. */
	double d = median(diff, runs), m = median(bare, runs);
	printf("%-40s paired runs: median bare %.4f s, median guarded - bare %+.3f ms = %+.2f%%\n", "", m, d * 1e3,
	       d / m * 100);
	free(bare);
	free(diff);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct bench_query queries[] = {
		{ "dst port 22", NULL },
		{ "dst net 198.18.0.0/15 and dst port 22", NULL },
		{ "proto tcp", "srcnet/24" },
	};
	uint64_t n = 5000000, runs = 7;
	const char *dir = NULL;
	char tmpl[] = "/tmp/guard-bench-XXXXXX";
	int rc = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--flows") == 0)
			n = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--runs") == 0)
			runs = strtoull(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--dir") == 0)
			dir = argv[i + 1];
	}
	if (!dir && !(dir = mkdtemp(tmpl)))
		die("mkdtemp");
	fprintf(stderr, "guard_bench: %" PRIu64 " flows into %s\n", n, dir);
	fill_store(dir, n);
	oversee(dir);
	printf("flows %" PRIu64 ", best of %" PRIu64 " runs each; target: the guard adds <= 1%%\n", n, runs);
	for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++)
		rc |= measure(dir, &queries[i], runs);
	return rc;
}
