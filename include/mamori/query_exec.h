/*
 * The embedded store's query executor: runs a parsed filter (query.h) and
 * an aggregation spec over a store (store.h), chunk by chunk on every core.
 * Filters compile into per-column loops that fill selection masks; zone
 * maps rule chunks out (or in) before any column is decoded. Results equal
 * the reference evaluator's and aggregator's exactly (docs/query.md,
 * "Running queries"); `mamori query` is a thin face over these calls.
 */
#ifndef MAMORI_QUERY_EXEC_H
#define MAMORI_QUERY_EXEC_H

#include "mamori/flow.h"
#include "mamori/flow_output.h"
#include "mamori/query.h"
#include "mamori/store.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Aggregation state one query may hold when the caller sets no cap: 1 GiB. */
#define MM_QUERY_EXEC_DEFAULT_MEMORY ((size_t)1 << 30)

struct mm_query_exec_options {
	uint64_t since_ns, until_ns; /* flows overlapping [since, until]; 0, UINT64_MAX = all */
	unsigned n_threads;          /* 0: one per online CPU */
	size_t max_memory;           /* bytes of aggregation state (groups, distinct sets); 0: default */
	uint64_t limit;              /* listing: stop after this many flows; 0 = all */
	size_t table_max;            /* aggregation: bytes a thread's table grows to before its groups
					go to hash partitions (docs/query.md); 0: 16 MiB */
};

/* Whole time range, one thread per CPU, the default memory cap, no limit. */
void mm_query_exec_options_default(struct mm_query_exec_options *opt);

struct mm_query_exec_stats {
	uint64_t segments, segments_skipped; /* skipped whole by the catalog's time range */
	uint64_t chunks;                     /* chunks of the segments in range */
	uint64_t chunks_skipped;             /* zone maps proved no row can match */
	uint64_t chunks_whole;               /* zone maps proved every row matches: no filter run */
	uint64_t rows_total;                 /* rows of the segments in range */
	uint64_t rows_scanned;               /* rows of the chunks not skipped */
	uint64_t rows_matched;               /* passed the filter (listing: may pass the limit) */
	unsigned threads;
	uint64_t records_partitioned;        /* aggregation: group and distinct records written to hash
						partitions; 0 when every thread's table stayed in cache */
};

/*
 * Calls emit with the flows that match q and overlap the time range, in
 * store order (segments in publish order, rows as stored, i.e. by first_ns
 * within a segment) whatever the thread count, so --limit keeps the same
 * flows every run. emit runs on one thread at a time; flows are borrowed
 * for the call; a nonzero return stops the run and is returned. Memory:
 * at most two decoded chunks per thread. stats may be NULL.
 */
int mm_query_list(struct mm_store *st, const struct mm_query *q, const struct mm_query_exec_options *opt,
		  int (*emit)(void *ctx, const struct mm_flow *flows, size_t n), void *ctx,
		  struct mm_query_exec_stats *stats);

/*
 * Aggregates the matching flows as mm_qagg_ref would: the same rows, sums,
 * exact distinct counts (no sketches) and order (docs/query.md), top_n cut
 * per bucket. Each thread aggregates into its own keyed hash table, merged
 * at the end while they stay small; a table that outgrows the cache is
 * emptied into hash partitions instead, aggregated one partition at a time
 * on every thread (docs/query.md). When groups, distinct values and
 * partitioned records would exceed opt->max_memory the run stops with
 * MM_ELIMIT and a message saying how to narrow the query. *rows
 * (malloc'd, free()) holds *n_rows rows.
 */
int mm_query_aggregate(struct mm_store *st, const struct mm_query *q, const struct mm_qagg *spec,
		       const struct mm_query_exec_options *opt, struct mm_qagg_row **rows, size_t *n_rows,
		       struct mm_query_exec_stats *stats);

/*
 * Writes aggregation rows as an aligned table (with a header), CSV (RFC
 * 4180, header line) or NDJSON (one object a row): bucket start when the
 * spec has buckets, the keys, flows, packets, bytes and the distinct
 * counts. MM_EINVAL for the Zeek format (it has no aggregate form), MM_EIO
 * when the stream fails.
 */
int mm_query_rows_write(FILE *fp, enum mm_output_format fmt, const struct mm_qagg *spec,
			const struct mm_qagg_row *rows, size_t n_rows);

#endif
