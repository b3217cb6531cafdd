/*
 * Store and executor micro-benchmark, through the library only (no CLI, no
 * network): NetFlow v9 records from bench/collect's generator (the
 * distribution bench/query sends, no record repeated) are decoded by the
 * ingest decoder and written to a store; it reports store ingest in flows/s
 * per core (CPU seconds of every thread, decoding excluded), bytes per flow
 * on disk and per column, then times the bench/query queries (a)–(e) best
 * of RUNS with the page cache warm, as seconds and rows/s per core (rows in
 * range ÷ CPU seconds of all threads).
 *
 * Usage: store_bench DIR [FLOWS [RUNS]]   (DIR must not exist, or be a store
 * this program wrote earlier with the same FLOWS: then only queries run.)
 */
#include "../collect/export_gen.h"

#include "mamori/ingest.h"
#include "mamori/query.h"
#include "mamori/query_exec.h"
#include "mamori/status.h"
#include "mamori/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define STREAM_MSGS 16384      /* distinct messages per generator stream (~23 MB) */
#define BATCH_FLOWS 1000000u   /* flows handed to the writer at once: its default flush size */
#define BASE_SECS 1700000000u
#define DEFAULT_FLOWS 20000000ull
#define DEFAULT_RUNS 3

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct batch {
	struct mm_flow *flows;
	size_t n;
};

static void collect_flows(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct batch *b = ctx;

	if (n > BATCH_FLOWS - b->n)
		n = BATCH_FLOWS - b->n; /* never: batches are cut on message boundaries below */
	memcpy(b->flows + b->n, flows, n * sizeof(*flows));
	b->n += n;
}

struct ingest_times {
	double cpu, wall;
};

/* Appends and flushes one batch, adding the process CPU and wall time it took. */
static int write_batch(struct mm_store_writer *w, struct batch *b, struct ingest_times *t)
{
	double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
	int rc = mm_store_writer_append(w, b->flows, b->n);

	if (rc == 0)
		rc = mm_store_writer_flush(w);
	t->cpu += clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
	t->wall += clock_s(CLOCK_MONOTONIC) - w0;
	b->n = 0;
	return rc;
}

static int ingest(const char *dir, uint64_t flows)
{
	struct mm_store_writer *w = NULL;
	struct mm_ingest *ing = NULL;
	struct mm_ingest_config cfg;
	struct batch b = { malloc(BATCH_FLOWS * sizeof(struct mm_flow)), 0 };
	struct ingest_times t = { 0, 0 };
	struct mm_addr exporter;
	uint64_t done = 0;
	uint32_t stream = 0;
	int rc;

	if (!b.flows)
		return mm_fail(MM_ENOMEM, "store_bench: batch");
	mm_addr_set_v4_u32(&exporter, 0x7f000001);
	mm_ingest_config_default(&cfg);
	rc = mm_store_writer_open(&w, dir, NULL);
	if (rc == 0)
		rc = mm_ingest_new(&ing, &cfg, collect_flows, NULL, &b);
	while (rc == 0 && done < flows) {
		struct gen_stream g;

		/* One stream per exporter domain so sequence numbers stay in order. */
		stream++;
		rc = gen_stream_init(&g, 9, stream, STREAM_MSGS, 42 + stream, BASE_SECS);
		for (uint32_t m = 0; rc == 0 && m < STREAM_MSGS && done < flows; m++) {
			/* Time moves on as on a link carrying a million flows a second. */
			uint32_t elapsed_ms = (uint32_t)(done / 1000);
			const struct gen_msg *msg = gen_stream_next(&g, BASE_SECS + elapsed_ms / 1000, elapsed_ms);

			if (msg->n_records && b.n + msg->n_records > BATCH_FLOWS)
				rc = write_batch(w, &b, &t);
			if (rc == 0)
				rc = mm_ingest_message(ing, &exporter, 2055, msg->data, msg->len, 0);
			done += msg->n_records;
		}
		if (rc == 0)
			gen_stream_free(&g);
	}
	if (rc == 0 && b.n)
		rc = write_batch(w, &b, &t);
	if (rc == 0) {
		double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);

		rc = mm_store_writer_close(w);
		w = NULL;
		t.cpu += clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
	}
	if (rc == 0)
		printf("ingest     %" PRIu64 " flows: %.2f s CPU, %.2f s wall: %.2f M flows/s per core (target 5)\n",
		       done, t.cpu, t.wall, (double)done / t.cpu / 1e6);
	mm_store_writer_close(w);
	mm_ingest_free(ing);
	free(b.flows);
	return rc;
}

static int report_size(struct mm_store *st)
{
	struct mm_store_stats s;
	int rc = mm_store_stats(st, &s);

	if (rc)
		return rc;
	printf("disk       %" PRIu64 " flows in %" PRIu64 " segments, %.2f bytes/flow (target <= 15)\n", s.flows,
	       s.segments, s.bytes_per_flow);
	for (unsigned c = 0; c < MM_STORE_N_COLUMNS; c++) {
		const struct mm_store_column_stats *cs = &s.column[c];

		if ((double)cs->stored_bytes / (double)s.flows >= 0.05)
			printf("  %-14s %6.3f B/flow\n", mm_store_column_name(c),
			       (double)cs->stored_bytes / (double)s.flows);
	}
	return 0;
}

struct bench_query {
	const char *name, *filter, *keys, *distinct;
	enum mm_qmetric by;
	uint64_t top;
};

static const struct bench_query queries[] = {
	{ "a", "proto tcp and dst port 443 and src net 10.1.0.0/16", NULL, NULL, MM_QM_FLOWS, 0 },
	{ "b", "", "srcip", NULL, MM_QM_BYTES, 10 },
	{ "c", "", "proto,srcip,dstip,srcport,dstport", NULL, MM_QM_BYTES, 10 },
	{ "d", "", NULL, "srcip", MM_QM_FLOWS, 0 },
	{ "e", "dst net 45.1.0.0/16", "dstport", NULL, MM_QM_FLOWS, 10 },
};

static int run_query(struct mm_store *st, const struct bench_query *bq, unsigned runs)
{
	struct mm_query_exec_options opt;
	struct mm_query_exec_stats stats;
	struct mm_query *q = NULL;
	struct mm_qagg spec;
	double best_wall = 0, best_cpu = 0;
	uint64_t first = 0;
	unsigned col;
	int rc;

	mm_qagg_init(&spec);
	mm_query_exec_options_default(&opt);
	opt.max_memory = (size_t)16 << 30;
	spec.order_by = bq->by;
	spec.top_n = bq->top;
	rc = mm_query_parse(bq->filter, &q, &col);
	if (rc == 0 && bq->keys)
		rc = mm_qagg_parse_keys(bq->keys, spec.keys, MM_QAGG_MAX_KEYS, &spec.n_keys);
	if (rc == 0 && bq->distinct)
		rc = mm_qagg_parse_keys(bq->distinct, spec.distinct, MM_QAGG_MAX_DISTINCT, &spec.n_distinct);
	for (unsigned r = 0; rc == 0 && r < runs; r++) {
		struct mm_qagg_row *rows = NULL;
		size_t n_rows = 0;
		double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC), cpu, wall;

		memset(&stats, 0, sizeof(stats));
		rc = mm_query_aggregate(st, q, &spec, &opt, &rows, &n_rows, &stats);
		cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
		wall = clock_s(CLOCK_MONOTONIC) - w0;
		if (rc == 0 && n_rows)
			first = rows[0].flows;
		free(rows);
		if (r == 0 || wall < best_wall)
			best_wall = wall;
		if (r == 0 || cpu < best_cpu)
			best_cpu = cpu;
	}
	if (rc == 0)
		printf("query (%s)  %7.3f s wall %7.3f s CPU  %7.1f M rows/s per core  %" PRIu64
		       " matched, first row %" PRIu64 " flows, %" PRIu64 "/%" PRIu64 " chunks skipped\n",
		       bq->name, best_wall, best_cpu, (double)stats.rows_total / best_cpu / 1e6,
		       stats.rows_matched, first, stats.chunks_skipped, stats.chunks);
	mm_query_free(q);
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t flows = argc > 2 ? strtoull(argv[2], NULL, 10) : DEFAULT_FLOWS;
	unsigned runs = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : DEFAULT_RUNS;
	struct mm_store *st = NULL;
	struct stat sb;
	int rc = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || !flows || !runs) {
		fprintf(stderr, "usage: store_bench DIR [FLOWS [RUNS]]\n");
		return 2;
	}
	if (stat(argv[1], &sb) != 0)
		rc = ingest(argv[1], flows);
	if (rc == 0)
		rc = mm_store_open(&st, argv[1]);
	if (rc == 0)
		rc = report_size(st);
	for (size_t i = 0; rc == 0 && i < sizeof(queries) / sizeof(queries[0]); i++)
		rc = run_query(st, &queries[i], runs);
	mm_store_free(st);
	if (rc) {
		fprintf(stderr, "store_bench: %s\n", mm_last_error());
		return 1;
	}
	return 0;
}
