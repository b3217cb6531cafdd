/*
 * The store writer: buffers flows, and on flush cuts the buffer into one
 * segment per time partition, writes each under a temporary name, fsyncs,
 * renames it into place and then publishes all of them with one atomic
 * catalog rewrite. A crash loses at most the buffer (flush_rows flows or
 * flush_interval_ns of arrivals) and leaves only leftovers, removed at open.
 */
#include "store/store_int.h"

#include "mamori/bigmem.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Digits of the time sort: 2^11 buckets keep their write heads in L2. */
#define RADIX_BITS 11u
#define RADIX_PASSES_MAX ((64u + RADIX_BITS - 1) / RADIX_BITS)

struct mm_store_writer {
	char dir[STORE_PATH_MAX / 2];
	struct mm_store_writer_options opt;
	int lock_fd;
	struct catalog cat;
	struct seg_builder *builder;
	struct mm_flow *buf;        /* opt.flush_rows flows (mm_bigmem_alloc) */
	size_t n_buf, buf_rows;     /* flows buffered, and the room buf and keys were made for */
	/* 2 x opt.flush_rows (mm_bigmem_alloc): a key per buffered flow, made as it is appended,
	 * then the sort's second half. Sorting permutes keys[0..n_buf) but keeps each row once. */
	struct seg_order *keys;
	bool in_order;              /* the buffered flows arrived in first_ns order */
	uint64_t varying;           /* OR of every buffered first_ns XOR buf[0].first_ns */
	size_t radix_count[RADIX_PASSES_MAX][1u << RADIX_BITS]; /* order_by_time's histograms */
	uint64_t oldest_arrival_ns; /* monotonic time the oldest buffered flow arrived */
	struct mm_store_writer_stats stats;
};

void mm_store_writer_options_default(struct mm_store_writer_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->rows_per_chunk = 65536;
	opt->flush_rows = 1000000;
	opt->flush_interval_ns = 10 * MM_NS_PER_SEC;
	opt->partition_ns = 3600 * MM_NS_PER_SEC;
	opt->codec = MM_STORE_CODEC_ZSTD;
	opt->zstd_level = 1;
	opt->fsync = true;
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * MM_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static int check_options(const struct mm_store_writer_options *o)
{
	if (o->rows_per_chunk == 0 || o->rows_per_chunk > MM_STORE_MAX_CHUNK_ROWS)
		return mm_fail(MM_EINVAL, "store: rows per chunk %" PRIu32 " not in 1..%u",
			       o->rows_per_chunk, MM_STORE_MAX_CHUNK_ROWS);
	if (o->flush_rows == 0 || o->flush_rows > MM_STORE_MAX_FLUSH_ROWS)
		return mm_fail(MM_EINVAL, "store: flush rows %" PRIu64 " not in 1..%llu", o->flush_rows,
			       MM_STORE_MAX_FLUSH_ROWS);
	if (o->partition_ns == 0)
		return mm_fail(MM_EINVAL, "store: partition length must not be zero");
	if (o->codec > MM_STORE_CODEC_ZSTD)
		return mm_fail(MM_EINVAL, "store: unknown codec %d", (int)o->codec);
	return 0;
}

static bool cataloged(const struct catalog *cat, uint64_t id)
{
	for (size_t i = 0; i < cat->n; i++)
		if (cat->entries[i].id == id)
			return true;
	return false;
}

/* A crashed writer leaves temporary files and renamed but unpublished segments. */
static int remove_leftovers(struct mm_store_writer *w)
{
	DIR *d = opendir(w->dir);
	struct dirent *de;

	if (!d)
		return mm_fail(MM_EIO, "store: %s: %s", w->dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		bool tmp = len > strlen(TMP_SUFFIX) &&
			   strcmp(de->d_name + len - strlen(TMP_SUFFIX), TMP_SUFFIX) == 0;
		unsigned long long id;
		int used = 0;
		char path[STORE_PATH_MAX];

		if (!tmp && !(sscanf(de->d_name, "seg-%llu.mms%n", &id, &used) == 1 &&
			      (size_t)used == len && !cataloged(&w->cat, id)))
			continue;
		snprintf(path, sizeof(path), "%s/%s", w->dir, de->d_name);
		if (unlink(path) == 0)
			w->stats.orphans_removed++;
	}
	closedir(d);
	return 0;
}

static int open_catalog(struct mm_store_writer *w)
{
	int rc = catalog_load(&w->cat, w->dir);

	if (rc != MM_ENOENT)
		return rc;
	mm_clear_error();
	w->cat.next_id = 1;
	return catalog_save(&w->cat, w->dir, w->opt.fsync);
}

int mm_store_writer_open(struct mm_store_writer **out, const char *dir,
			 const struct mm_store_writer_options *opt)
{
	struct mm_store_writer *w = NULL;
	struct seg_build_options bo;
	int rc;

	*out = NULL;
	if (strlen(dir) >= sizeof(w->dir))
		return mm_fail(MM_EINVAL, "store: directory name of %zu bytes is too long", strlen(dir));
	w = calloc(1, sizeof(*w));
	if (!w)
		return mm_fail(MM_ENOMEM, "store: writer");
	w->lock_fd = -1;
	snprintf(w->dir, sizeof(w->dir), "%s", dir);
	if (opt)
		w->opt = *opt;
	else
		mm_store_writer_options_default(&w->opt);
	rc = check_options(&w->opt);
	if (rc < 0)
		goto out;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = mm_fail(MM_EIO, "store: %s: %s", dir, strerror(errno));
		goto out;
	}
	rc = store_lock(dir, &w->lock_fd);
	if (rc == 0)
		rc = open_catalog(w);
	if (rc == 0)
		rc = remove_leftovers(w);
	if (rc < 0)
		goto out;
	bo = (struct seg_build_options){ w->opt.rows_per_chunk, w->opt.codec, w->opt.zstd_level };
	rc = seg_builder_new(&w->builder, &bo);
	if (rc < 0)
		goto out;
	w->buf_rows = w->opt.flush_rows;
	w->buf = mm_bigmem_alloc(w->opt.flush_rows * sizeof(*w->buf));
	w->keys = mm_bigmem_alloc(2 * w->opt.flush_rows * sizeof(*w->keys));
	if (!w->buf || !w->keys)
		rc = mm_fail(MM_ENOMEM, "store: writer buffer of %" PRIu64 " flows", w->opt.flush_rows);
out:
	if (rc < 0) {
		w->opt.flush_rows = 0; /* nothing to flush on this close */
		mm_store_writer_close(w);
		return rc;
	}
	*out = w;
	return 0;
}

/* Writes one segment under its temporary name and renames it into place (unpublished yet). */
static int write_segment(struct mm_store_writer *w, const struct seg_rows *rows, struct cat_entry *e)
{
	char name[64], tmp[STORE_PATH_MAX], path[STORE_PATH_MAX];
	struct seg_written out;
	int rc;

	e->id = w->cat.next_id++;
	e->n_rows = rows->n;
	seg_file_name(e->id, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", w->dir, name);
	snprintf(tmp, sizeof(tmp), "%s/%s%s", w->dir, name, TMP_SUFFIX);
	rc = seg_builder_write(w->builder, e->id, rows, tmp, w->opt.fsync, &out);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = mm_fail(MM_EIO, "store: rename %s: %s", tmp, strerror(errno));
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	e->file_bytes = out.file_bytes;
	e->header_crc = out.header_crc;
	e->min_first_ns = out.min_first_ns;
	e->max_last_ns = out.max_last_ns;
	return 0;
}

/*
 * LSD radix sort of keys by first_ns, over only the bits that differ
 * between keys (a flush spans seconds to hours of nanosecond timestamps,
 * often of millisecond clocks: some 30 bits of 64), cut into the fewest
 * digits of at most RADIX_BITS bits: usually three passes. Stable, so ties
 * keep arrival order. Returns k or tmp, whichever holds the result.
 */
static struct seg_order *radix_sort(struct seg_order *k, struct seg_order *tmp, size_t n,
				    uint64_t varying, size_t (*count)[1u << RADIX_BITS])
{
	unsigned lo = (unsigned)__builtin_ctzll(varying), span = 64 - (unsigned)__builtin_clzll(varying) - lo;
	unsigned passes = (span + RADIX_BITS - 1) / RADIX_BITS, bits = (span + passes - 1) / passes;
	size_t buckets = (size_t)1 << bits, mask = buckets - 1;

	for (unsigned d = 0; d < passes; d++)
		memset(count[d], 0, buckets * sizeof(count[d][0]));
	for (size_t i = 0; i < n; i++)
		for (unsigned d = 0; d < passes; d++)
			count[d][(k[i].first_ns >> (lo + d * bits)) & mask]++;
	for (unsigned d = 0; d < passes; d++) {
		size_t pos = 0, *c = count[d];
		unsigned shift = lo + d * bits;
		struct seg_order *swap;

		for (size_t v = 0; v < buckets; v++) {
			size_t here = c[v];

			c[v] = pos;
			pos += here;
		}
		for (size_t i = 0; i < n; i++)
			tmp[c[(k[i].first_ns >> shift) & mask]++] = k[i];
		swap = k;
		k = tmp;
		tmp = swap;
	}
	return k;
}

/*
 * The buffer's rows ordered by first_ns: time zone maps then cut tightly,
 * ids and timestamps become small deltas, and each partition is one run.
 * Only the 16-byte keys move; the segment builder reads each flow once, in
 * this order (a copy of the buffer in order cost a second pass over 168
 * bytes a flow, most of it cache misses). NULL when already in order.
 * The keys may be a permutation left by a failed flush: ties still sort in
 * row order, as every pass is stable and equal keys never part.
 */
static const struct seg_order *order_by_time(struct mm_store_writer *w)
{
	if (w->in_order)
		return NULL;
	/* Not in order, so some first_ns differ: varying is not zero. */
	return radix_sort(w->keys, w->keys + w->n_buf, w->n_buf, w->varying, w->radix_count);
}

static uint64_t row_first_ns(const struct mm_store_writer *w, const struct seg_order *order, size_t i)
{
	return order ? order[i].first_ns : w->buf[i].first_ns;
}

static void forget_unpublished(struct mm_store_writer *w, size_t n_before)
{
	for (size_t i = n_before; i < w->cat.n; i++) {
		char name[64], path[STORE_PATH_MAX];

		seg_file_name(w->cat.entries[i].id, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", w->dir, name);
		unlink(path);
	}
	w->cat.n = n_before;
}

int mm_store_writer_flush(struct mm_store_writer *w)
{
	size_t n_before = w->cat.n, start = 0;
	const struct seg_order *order;
	uint64_t bytes = 0;
	int rc = 0;

	if (w->n_buf == 0)
		return 0;
	order = order_by_time(w);
	while (rc == 0 && start < w->n_buf) {
		uint64_t first = row_first_ns(w, order, start);
		uint64_t part_start = first - first % w->opt.partition_ns;
		size_t end = start + 1;
		struct seg_rows rows;
		struct cat_entry e;

		/* In order, so rows from start on are >= part_start: one subtraction a row, no division. */
		while (end < w->n_buf && row_first_ns(w, order, end) - part_start < w->opt.partition_ns)
			end++;
		rows = (struct seg_rows){ order ? w->buf : w->buf + start, order ? order + start : NULL,
					  end - start };
		rc = write_segment(w, &rows, &e);
		if (rc == 0)
			rc = catalog_append(&w->cat, &e);
		if (rc == 0)
			bytes += e.file_bytes;
		start = end;
	}
	/* The catalog save (with its directory fsync) is the moment of publication. */
	if (rc == 0)
		rc = catalog_save(&w->cat, w->dir, w->opt.fsync);
	if (rc < 0) {
		forget_unpublished(w, n_before);
		return rc;
	}
	w->stats.flows_published += w->n_buf;
	w->stats.segments_published += w->cat.n - n_before;
	w->stats.bytes_published += bytes;
	w->n_buf = 0;
	return 0;
}

static bool interval_passed(const struct mm_store_writer *w)
{
	return w->n_buf && w->opt.flush_interval_ns &&
	       monotonic_ns() - w->oldest_arrival_ns >= w->opt.flush_interval_ns;
}

int mm_store_writer_poll(struct mm_store_writer *w)
{
	return interval_passed(w) ? mm_store_writer_flush(w) : 0;
}

/* Rows copied before their keys are taken: a block stays in L1 between the two. */
#define KEY_BLOCK 64

/*
 * Copies n flows (room checked) into the buffer and makes their sort keys
 * from the copy while it is cached: the flush then needs no strided pass
 * over the whole buffer to learn the order.
 */
static void buffer_flows(struct mm_store_writer *w, const struct mm_flow *flows, size_t n)
{
	if (w->n_buf == 0) {
		w->oldest_arrival_ns = monotonic_ns();
		w->in_order = true;
		w->varying = 0;
	}
	for (size_t done = 0; done < n; done += KEY_BLOCK) {
		size_t k = n - done < KEY_BLOCK ? n - done : KEY_BLOCK;
		struct mm_flow *copy = w->buf + w->n_buf;
		uint64_t base = w->n_buf ? w->buf[0].first_ns : flows[done].first_ns;
		uint64_t prev = w->n_buf ? copy[-1].first_ns : base;
		uint64_t varying = 0;
		bool in_order = true;

		memcpy(copy, flows + done, k * sizeof(*flows));
		for (size_t i = 0; i < k; i++) {
			uint64_t t = copy[i].first_ns;

			w->keys[w->n_buf + i] = (struct seg_order){ t, (uint32_t)(w->n_buf + i) };
			varying |= t ^ base;
			in_order &= t >= prev;
			prev = t;
		}
		w->varying |= varying;
		w->in_order &= in_order;
		w->n_buf += k;
	}
}

int mm_store_writer_append(struct mm_store_writer *w, const struct mm_flow *flows, size_t n)
{
	while (n) {
		size_t take = n < w->opt.flush_rows ? n : (size_t)w->opt.flush_rows;
		int rc = 0;

		if (w->n_buf + take > w->opt.flush_rows || interval_passed(w))
			rc = mm_store_writer_flush(w);
		if (rc < 0)
			return rc;
		buffer_flows(w, flows, take);
		w->stats.flows_appended += take;
		flows += take;
		n -= take;
	}
	return w->n_buf == w->opt.flush_rows ? mm_store_writer_flush(w) : 0;
}

void mm_store_writer_stats(const struct mm_store_writer *w, struct mm_store_writer_stats *out)
{
	*out = w->stats;
	out->flows_buffered = w->n_buf;
}

int mm_store_writer_expire(struct mm_store_writer *w, uint64_t cutoff_ns,
			   struct mm_store_expired *out)
{
	struct catalog fresh;
	int rc = store_expire_locked(w->dir, cutoff_ns, w->opt.fsync, out);

	if (rc == 0)
		rc = catalog_load(&fresh, w->dir);
	if (rc == 0) {
		catalog_release(&w->cat);
		w->cat = fresh;
	}
	return rc;
}

int mm_store_writer_close(struct mm_store_writer *w)
{
	int rc = 0;

	if (!w)
		return 0;
	if (w->opt.flush_rows)
		rc = mm_store_writer_flush(w);
	seg_builder_free(w->builder);
	catalog_release(&w->cat);
	mm_bigmem_free(w->buf, w->buf_rows * sizeof(*w->buf));
	mm_bigmem_free(w->keys, 2 * w->buf_rows * sizeof(*w->keys));
	if (w->lock_fd >= 0)
		close(w->lock_fd);
	free(w);
	return rc;
}
