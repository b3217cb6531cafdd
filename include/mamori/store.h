/*
 * The embedded columnar flow store: a directory of immutable, time-
 * partitioned segment files listed in a catalog (docs/FORMAT.md). A writer
 * buffers flows and publishes them as segments (temporary name, fsync,
 * atomic rename, then an atomic catalog rewrite); readers mmap segments and
 * decode column chunks into plain arrays for the query executor, skipping
 * chunks by their min/max zone maps. Also: stats, verify and expire.
 */
#ifndef MAMORI_STORE_H
#define MAMORI_STORE_H

#include "mamori/flow.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Every struct mm_flow field is one column. Addresses are split into two
 * 64-bit halves read big-endian (hi = bytes 0..7, lo = bytes 8..15), so
 * numeric order is address order and an IPv4 address is hi 0, lo
 * 0x0000ffff_xxxxxxxx. Countries are 16-bit: first letter in the high byte.
 */
enum mm_store_column {
	MM_COL_FIRST_NS,
	MM_COL_LAST_NS,
	MM_COL_SRC_HI,
	MM_COL_SRC_LO,
	MM_COL_DST_HI,
	MM_COL_DST_LO,
	MM_COL_NEXT_HOP_HI,
	MM_COL_NEXT_HOP_LO,
	MM_COL_FWD_PACKETS,
	MM_COL_FWD_BYTES,
	MM_COL_REV_PACKETS,
	MM_COL_REV_BYTES,
	MM_COL_ID,
	MM_COL_TUNNEL_PARENT0,
	MM_COL_TUNNEL_PARENT1,
	MM_COL_SENSOR_ID,
	MM_COL_SAMPLING_RATE,
	MM_COL_SRC_AS,
	MM_COL_DST_AS,
	MM_COL_IN_IF,
	MM_COL_OUT_IF,
	MM_COL_SRC_PORT,
	MM_COL_DST_PORT,
	MM_COL_VLAN,
	MM_COL_SRC_COUNTRY,
	MM_COL_DST_COUNTRY,
	MM_COL_PROTO,
	MM_COL_ICMP_TYPE,
	MM_COL_ICMP_CODE,
	MM_COL_FWD_TCP_FLAGS,
	MM_COL_REV_TCP_FLAGS,
	MM_COL_END_REASON,
	MM_COL_FLAGS,
	MM_STORE_N_COLUMNS
};

/*
 * The data directory used when a command is given none: $MAMORI_DATA when
 * set and not empty, else "mamori-data" in the working directory. Every
 * command that writes or reads the store uses this one default, so that
 * `mamori meter capture.pcap && mamori query 'dst port 22'` needs no config.
 * The string is borrowed (the environment's, or static).
 */
#define MM_STORE_DEFAULT_DIR "mamori-data"
const char *mm_store_default_dir(void);

/* "first_ns", "dst_port", …; NULL for a value out of range. */
const char *mm_store_column_name(unsigned col);

/* Bytes per value in a decoded array: 1, 2, 4 or 8 (0 out of range). */
unsigned mm_store_column_width(unsigned col);

/* Column by name; MM_ENOENT (with a message) if there is none. */
int mm_store_column_find(const char *name, unsigned *out);

/* The value a flow holds in column col, widened to 64 bits. */
uint64_t mm_store_flow_value(const struct mm_flow *f, unsigned col);

enum mm_store_codec {
	MM_STORE_CODEC_NONE = 0,
	MM_STORE_CODEC_LZ4 = 1,
	MM_STORE_CODEC_ZSTD = 2,
};

/* Writer settings; mm_store_writer_options_default() fills the defaults noted. */
struct mm_store_writer_options {
	uint32_t rows_per_chunk;   /* 65536; 1..MM_STORE_MAX_CHUNK_ROWS */
	uint64_t flush_rows;       /* 1,000,000 buffered flows; 1..MM_STORE_MAX_FLUSH_ROWS */
	uint64_t flush_interval_ns; /* 10 s since the oldest buffered flow arrived; 0 = never */
	uint64_t partition_ns;     /* 3600 s: a segment never spans two partitions of first_ns */
	enum mm_store_codec codec; /* zstd */
	int zstd_level;            /* 1 */
	bool fsync;                /* true: durable publish; tests may turn it off */
};

#define MM_STORE_MAX_CHUNK_ROWS (1u << 20)
#define MM_STORE_MAX_FLUSH_ROWS (64ull << 20)
/* Segments one catalog may list: a cap so a hostile catalog cannot demand unbounded memory. */
#define MM_STORE_MAX_SEGMENTS 1000000u

void mm_store_writer_options_default(struct mm_store_writer_options *opt);

/* --- writing ------------------------------------------------------------ */

struct mm_store_writer;

/*
 * Opens (creating if absent) the store in dir for writing. One writer per
 * store: the writer holds an exclusive lock on dir/lock until closed, and
 * another writer or expire gets MM_EAGAIN. Leftovers of a crashed writer
 * (temporary files, segment files the catalog does not list) are removed.
 * opt NULL: defaults. The options are copied.
 */
int mm_store_writer_open(struct mm_store_writer **out, const char *dir,
			 const struct mm_store_writer_options *opt);

/*
 * Buffers n flows (copied). Publishes the buffer first when it reaches
 * flush_rows or when flush_interval_ns has passed since its oldest flow
 * arrived (monotonic clock), so at most that much is lost in a crash.
 * A failed publish keeps the buffer (nothing is dropped) and is retried by
 * the next call; a batch of at most flush_rows flows is then refused whole,
 * so the caller knows exactly what was not taken.
 */
int mm_store_writer_append(struct mm_store_writer *w, const struct mm_flow *flows, size_t n);

/* Publishes whatever is buffered, if the flush interval has passed. For idle feeds. */
int mm_store_writer_poll(struct mm_store_writer *w);

/* Publishes whatever is buffered now (no-op when empty). Work: encodes and fsyncs. */
int mm_store_writer_flush(struct mm_store_writer *w);

struct mm_store_writer_stats {
	uint64_t flows_appended;
	uint64_t flows_published;   /* durable and listed in the catalog */
	uint64_t segments_published;
	uint64_t bytes_published;   /* segment file bytes */
	uint64_t flows_buffered;    /* not yet published: what a crash now would lose */
	uint64_t orphans_removed;   /* leftovers of a crashed writer cleaned at open */
};

void mm_store_writer_stats(const struct mm_store_writer *w, struct mm_store_writer_stats *out);

/* Flushes, releases the lock and frees w (NULL: no-op). Returns the flush status. */
int mm_store_writer_close(struct mm_store_writer *w);

/* --- reading ------------------------------------------------------------ */

struct mm_store;

/*
 * Opens the store in dir for reading: a snapshot of its catalog. Segments
 * published later are not seen until the store is opened again. MM_ENOENT
 * if there is no catalog, MM_EFORMAT/MM_EUNSUP for a damaged or unknown one.
 */
int mm_store_open(struct mm_store **out, const char *dir);
void mm_store_free(struct mm_store *st);

struct mm_store_segment_info {
	uint64_t id;
	uint64_t n_rows;
	uint64_t min_first_ns, max_last_ns;
	uint64_t file_bytes;
};

size_t mm_store_segment_count(const struct mm_store *st);
/* Catalog entry i (0 <= i < count), in publish order. */
void mm_store_segment_info(const struct mm_store *st, size_t i, struct mm_store_segment_info *out);

/* One segment mapped for reading; immutable, so any number of threads may decode from it. */
struct mm_segment;

/* Maps the segment of catalog entry i and checks its header and directory. */
int mm_store_segment_open(struct mm_store *st, size_t i, struct mm_segment **out);

/* Maps a segment file by path (no catalog needed); for tools and tests. */
int mm_segment_open_file(struct mm_segment **out, const char *path);

/*
 * Checks len bytes as a segment, borrowing data until mm_segment_free.
 * name is used in messages.
 */
int mm_segment_open_mem(struct mm_segment **out, const uint8_t *data, size_t len, const char *name);
void mm_segment_free(struct mm_segment *seg);

uint64_t mm_segment_rows(const struct mm_segment *seg);
uint32_t mm_segment_chunks(const struct mm_segment *seg);
/* Rows in chunk k (rows_per_chunk except for the last chunk). */
uint32_t mm_segment_chunk_rows(const struct mm_segment *seg, uint32_t k);
/* Zone map of column col in chunk k: every value v has min <= v <= max. */
void mm_segment_zone(const struct mm_segment *seg, unsigned col, uint32_t k, uint64_t *min,
		     uint64_t *max);

/* Per-thread scratch for decompression; one per decoding thread. */
struct mm_store_scratch;
int mm_store_scratch_new(struct mm_store_scratch **out);
void mm_store_scratch_free(struct mm_store_scratch *s);

/*
 * Decodes column col of chunk k into out: mm_segment_chunk_rows() values of
 * mm_store_column_width(col) bytes each, host order. Checks the chunk's
 * checksum first; a corrupt chunk is MM_EFORMAT with a message naming the
 * segment, column and chunk. Work: linear in the chunk's rows.
 */
int mm_segment_decode(const struct mm_segment *seg, unsigned col, uint32_t k,
		      struct mm_store_scratch *s, void *out);

/* Decodes every column of chunk k back into flows (out: chunk_rows entries). */
int mm_segment_read_flows(const struct mm_segment *seg, uint32_t k, struct mm_store_scratch *s,
			  struct mm_flow *out);

/* --- scanning ----------------------------------------------------------- */

/* Keeps chunks whose zone map for col overlaps [min, max]; rows are not filtered. */
struct mm_store_pred {
	unsigned col;
	uint64_t min, max;
};

/* One decoded chunk handed to a scan callback; arrays are valid during the call only. */
struct mm_store_batch {
	uint64_t segment_id;
	uint32_t chunk;
	size_t n_rows;
	const void *col[MM_STORE_N_COLUMNS]; /* NULL for columns not asked for */
};

struct mm_store_scan {
	uint64_t since_ns, until_ns;       /* flows overlapping [since, until]; 0, UINT64_MAX = all */
	const struct mm_store_pred *preds; /* all must overlap (AND) */
	size_t n_preds;
	uint64_t columns;                  /* bit (1 << col) for each column to decode */
	unsigned n_threads;                /* 0: one per online CPU */
	/* Called concurrently from the scan's threads (thread = 0..n_threads-1); nonzero stops the scan. */
	int (*on_chunk)(void *ctx, unsigned thread, const struct mm_store_batch *b);
	void *ctx;
};

struct mm_store_scan_stats {
	uint64_t segments, segments_skipped; /* skipped whole by the catalog's time range */
	uint64_t chunks, chunks_skipped;     /* skipped by zone maps */
	uint64_t rows_total, rows_decoded;   /* rows of the segments in range / of chunks decoded */
	unsigned threads;
};

/*
 * Decodes, in parallel, every chunk of every segment that the time range
 * and predicates do not rule out, and hands each to on_chunk. Returns 0,
 * the first callback's nonzero status, or a decode error. stats may be NULL.
 */
int mm_store_scan(struct mm_store *st, const struct mm_store_scan *scan,
		  struct mm_store_scan_stats *stats);

/* --- administration ----------------------------------------------------- */

struct mm_store_column_stats {
	uint64_t raw_bytes;    /* decoded size: rows × width */
	uint64_t stored_bytes; /* chunk payloads on disk */
	uint64_t n_chunks_by_encoding[8]; /* indexed by the FORMAT.md encoding code */
};

struct mm_store_stats {
	uint64_t segments, flows, file_bytes;
	uint64_t min_first_ns, max_last_ns; /* 0, 0 when empty */
	double bytes_per_flow;              /* file bytes / flows; 0 when empty */
	struct mm_store_column_stats column[MM_STORE_N_COLUMNS];
};

/* Totals over every cataloged segment (reads each header and directory). */
int mm_store_stats(struct mm_store *st, struct mm_store_stats *out);

/* "const", "for", "delta", "dict", "plain", "planes" for the encoding codes; "?" otherwise. */
const char *mm_store_encoding_name(unsigned code);

struct mm_store_verify_report {
	uint64_t segments, chunks, flows; /* checked */
	uint64_t problems;                /* each also passed to the callback */
	uint64_t leftovers;               /* temporary or uncataloged files: harmless, noted */
};

/*
 * Checks the catalog, every listed segment, every checksum and invariant
 * (sizes, zone maps against decoded values, row counts, time ranges) and
 * reports each problem as "store: seg-000123.mms: column 'dst_port' chunk
 * 4: checksum mismatch" through on_problem (may be NULL). Returns 0 when
 * nothing is wrong, MM_EFORMAT when problems were found (report says how
 * many), or another status if the store could not be read at all.
 * Work: decodes every chunk once.
 */
int mm_store_verify(const char *dir, struct mm_store_verify_report *report,
		    void (*on_problem)(void *ctx, const char *message), void *ctx);

/* What expire removed, for the audit log. */
struct mm_store_expired {
	uint64_t segments, flows, bytes;
	uint64_t min_first_ns, max_last_ns; /* of the removed segments; 0, 0 when none */
};

/*
 * Removes every whole segment whose newest flow ended before cutoff_ns:
 * first from the catalog (atomically), then the files. Takes the store's
 * writer lock: MM_EAGAIN while a writer is open (use the writer's call).
 */
int mm_store_expire(const char *dir, uint64_t cutoff_ns, struct mm_store_expired *out);

/* The same through an open writer, which already holds the lock. */
int mm_store_writer_expire(struct mm_store_writer *w, uint64_t cutoff_ns,
			   struct mm_store_expired *out);

#endif
