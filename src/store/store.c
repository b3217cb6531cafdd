/*
 * Reading side of the store: a catalog snapshot, parallel chunk scans with
 * zone-map skipping, stats, verify (every checksum and invariant, each
 * problem reported with where it is) and expire by age.
 */
#include "store/store_int.h"

#include "mamori/status.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Threads one scan may start: more than any machine we target has cores. */
#define SCAN_MAX_THREADS 256

struct mm_store {
	char dir[STORE_PATH_MAX / 2];
	struct catalog cat;
};

const char *mm_store_default_dir(void)
{
	const char *env = getenv("MAMORI_DATA");

	return env && *env ? env : MM_STORE_DEFAULT_DIR;
}

int mm_store_open(struct mm_store **out, const char *dir)
{
	struct mm_store *st;
	int rc;

	*out = NULL;
	if (strlen(dir) >= sizeof(st->dir))
		return mm_fail(MM_EINVAL, "store: directory name of %zu bytes is too long", strlen(dir));
	st = calloc(1, sizeof(*st));
	if (!st)
		return mm_fail(MM_ENOMEM, "store: %s", dir);
	snprintf(st->dir, sizeof(st->dir), "%s", dir);
	rc = catalog_load(&st->cat, dir);
	if (rc < 0) {
		free(st);
		return rc;
	}
	*out = st;
	return 0;
}

void mm_store_free(struct mm_store *st)
{
	if (!st)
		return;
	catalog_release(&st->cat);
	free(st);
}

size_t mm_store_segment_count(const struct mm_store *st)
{
	return st->cat.n;
}

void mm_store_segment_info(const struct mm_store *st, size_t i, struct mm_store_segment_info *out)
{
	const struct cat_entry *e = &st->cat.entries[i];

	MM_BUG(i >= st->cat.n);
	*out = (struct mm_store_segment_info){ e->id, e->n_rows, e->min_first_ns, e->max_last_ns,
					       e->file_bytes };
}

/* Opens the segment of a catalog entry and checks that it is the file the catalog means. */
static int open_entry(const char *dir, const struct cat_entry *e, struct mm_segment **out)
{
	char name[64], path[STORE_PATH_MAX];
	int rc;

	seg_file_name(e->id, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	rc = mm_segment_open_file(out, path);
	if (rc < 0)
		return rc;
	if ((*out)->id != e->id || (*out)->header_crc != e->header_crc ||
	    (*out)->n_rows != e->n_rows) {
		mm_segment_free(*out);
		*out = NULL;
		return mm_fail(MM_EFORMAT,
			       "store: %s: header does not match the catalog (id, rows or checksum)",
			       name);
	}
	return 0;
}

int mm_store_segment_open(struct mm_store *st, size_t i, struct mm_segment **out)
{
	MM_BUG(i >= st->cat.n);
	return open_entry(st->dir, &st->cat.entries[i], out);
}

/* --- scan --------------------------------------------------------------- */

struct scan_run {
	const struct mm_store_scan *spec;
	struct mm_segment **segs;
	uint64_t *segment_ids;
	size_t n_segs;
	size_t *first_item;        /* work item index of each segment's chunk 0; n_segs + 1 entries */
	uint32_t max_rows;
	atomic_size_t next_item;
	atomic_int status;         /* first failure; stops every thread */
	atomic_uint_fast64_t chunks_skipped, rows_decoded;
	pthread_mutex_t error_lock;
	char error[512];           /* mm_last_error() is per thread: carried back here */
};

struct scan_thread {
	struct scan_run *run;
	unsigned index;
	pthread_t tid;
};

static bool zone_overlaps(const struct mm_segment *seg, unsigned col, uint32_t k, uint64_t lo,
			  uint64_t hi)
{
	uint64_t min, max;

	mm_segment_zone(seg, col, k, &min, &max);
	return max >= lo && min <= hi;
}

static bool chunk_wanted(const struct mm_store_scan *spec, const struct mm_segment *seg, uint32_t k)
{
	if (!zone_overlaps(seg, MM_COL_FIRST_NS, k, 0, spec->until_ns) ||
	    !zone_overlaps(seg, MM_COL_LAST_NS, k, spec->since_ns, UINT64_MAX))
		return false;
	for (size_t i = 0; i < spec->n_preds; i++)
		if (!zone_overlaps(seg, spec->preds[i].col, k, spec->preds[i].min, spec->preds[i].max))
			return false;
	return true;
}

static void scan_record_error(struct scan_run *run, int rc)
{
	int none = 0;

	pthread_mutex_lock(&run->error_lock);
	if (atomic_compare_exchange_strong(&run->status, &none, rc))
		snprintf(run->error, sizeof(run->error), "%s", mm_last_error());
	pthread_mutex_unlock(&run->error_lock);
}

static int scan_chunk(struct scan_run *run, unsigned thread, size_t s, uint32_t k,
		      struct mm_store_scratch *scratch, void *const *arrays)
{
	const struct mm_store_scan *spec = run->spec;
	struct mm_store_batch b = { run->segment_ids[s], k, mm_segment_chunk_rows(run->segs[s], k),
				    { 0 } };
	int rc;

	if (!chunk_wanted(spec, run->segs[s], k)) {
		atomic_fetch_add(&run->chunks_skipped, 1);
		return 0;
	}
	for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
		if (!(spec->columns >> col & 1))
			continue;
		rc = mm_segment_decode(run->segs[s], col, k, scratch, arrays[col]);
		if (rc < 0)
			return rc;
		b.col[col] = arrays[col];
	}
	atomic_fetch_add(&run->rows_decoded, b.n_rows);
	return spec->on_chunk(spec->ctx, thread, &b);
}

static void *scan_worker(void *arg)
{
	struct scan_thread *t = arg;
	struct scan_run *run = t->run;
	struct mm_store_scratch *scratch = NULL;
	void *arrays[MM_STORE_N_COLUMNS] = { 0 };
	size_t s = 0, total = run->first_item[run->n_segs];
	int rc = mm_store_scratch_new(&scratch);

	for (unsigned col = 0; col < MM_STORE_N_COLUMNS && rc == 0; col++) {
		if (!(run->spec->columns >> col & 1))
			continue;
		arrays[col] = malloc((size_t)run->max_rows * mm_store_column_width(col));
		if (!arrays[col])
			rc = mm_fail(MM_ENOMEM, "store: scan buffer of %" PRIu32 " rows", run->max_rows);
	}
	while (rc == 0 && atomic_load(&run->status) == 0) {
		size_t item = atomic_fetch_add(&run->next_item, 1);

		if (item >= total)
			break;
		/* Items are handed out in order, so the segment only ever moves forward. */
		while (run->first_item[s + 1] <= item)
			s++;
		rc = scan_chunk(run, t->index, s, (uint32_t)(item - run->first_item[s]), scratch, arrays);
	}
	if (rc != 0)
		scan_record_error(run, rc);
	for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++)
		free(arrays[col]);
	mm_store_scratch_free(scratch);
	return NULL;
}

static unsigned scan_threads(const struct mm_store_scan *spec, size_t items)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = spec->n_threads ? spec->n_threads : (cpus > 0 ? (size_t)cpus : 1);

	if (n > SCAN_MAX_THREADS)
		n = SCAN_MAX_THREADS;
	if (n > items)
		n = items ? items : 1;
	return (unsigned)n;
}

static int scan_open_segments(struct mm_store *st, const struct mm_store_scan *spec,
			      struct scan_run *run, struct mm_store_scan_stats *stats)
{
	run->segs = calloc(st->cat.n + 1, sizeof(*run->segs));
	run->segment_ids = calloc(st->cat.n + 1, sizeof(*run->segment_ids));
	run->first_item = calloc(st->cat.n + 1, sizeof(*run->first_item));
	if (!run->segs || !run->segment_ids || !run->first_item)
		return mm_fail(MM_ENOMEM, "store: scan of %zu segments", st->cat.n);
	for (size_t i = 0; i < st->cat.n; i++) {
		const struct cat_entry *e = &st->cat.entries[i];
		struct mm_segment *seg;
		int rc;

		stats->segments++;
		if (e->min_first_ns > spec->until_ns || e->max_last_ns < spec->since_ns) {
			stats->segments_skipped++;
			continue;
		}
		rc = open_entry(st->dir, e, &seg);
		if (rc < 0)
			return rc;
		run->segs[run->n_segs] = seg;
		run->segment_ids[run->n_segs] = e->id;
		run->first_item[run->n_segs + 1] = run->first_item[run->n_segs] + seg->n_chunks;
		run->max_rows = seg->rows_per_chunk > run->max_rows ? seg->rows_per_chunk : run->max_rows;
		run->n_segs++;
		stats->rows_total += seg->n_rows;
	}
	stats->chunks = run->first_item[run->n_segs];
	return 0;
}

int mm_store_scan(struct mm_store *st, const struct mm_store_scan *spec,
		  struct mm_store_scan_stats *stats_out)
{
	struct mm_store_scan_stats stats = { 0 };
	struct scan_run run = { .spec = spec };
	struct scan_thread *threads = NULL;
	unsigned n_threads = 0, started = 0;
	int rc;

	for (size_t i = 0; i < spec->n_preds; i++)
		if (spec->preds[i].col >= MM_STORE_N_COLUMNS)
			return mm_fail(MM_EINVAL, "store: scan predicate on column %u", spec->preds[i].col);
	pthread_mutex_init(&run.error_lock, NULL);
	rc = scan_open_segments(st, spec, &run, &stats);
	if (rc < 0)
		goto out;
	n_threads = scan_threads(spec, stats.chunks);
	threads = calloc(n_threads, sizeof(*threads));
	if (!threads) {
		rc = mm_fail(MM_ENOMEM, "store: %u scan threads", n_threads);
		goto out;
	}
	for (unsigned i = 0; i < n_threads; i++)
		threads[i] = (struct scan_thread){ &run, i, 0 };
	/* Thread 0 is the caller itself: a one-thread scan starts no thread at all. */
	for (started = 1; started < n_threads; started++) {
		if (pthread_create(&threads[started].tid, NULL, scan_worker, &threads[started]) != 0) {
			scan_record_error(&run, mm_fail(MM_EIO, "store: cannot start scan thread"));
			break;
		}
	}
	scan_worker(&threads[0]);
	for (unsigned i = 1; i < started; i++)
		pthread_join(threads[i].tid, NULL);
	rc = atomic_load(&run.status);
	if (rc != 0)
		mm_fail(rc, "%s", run.error);
	stats.threads = n_threads;
	stats.chunks_skipped = atomic_load(&run.chunks_skipped);
	stats.rows_decoded = atomic_load(&run.rows_decoded);
out:
	for (size_t i = 0; i < run.n_segs; i++)
		mm_segment_free(run.segs[i]);
	free(run.segs);
	free(run.segment_ids);
	free(run.first_item);
	free(threads);
	pthread_mutex_destroy(&run.error_lock);
	if (stats_out)
		*stats_out = stats;
	return rc;
}

/* --- stats -------------------------------------------------------------- */

const char *mm_store_encoding_name(unsigned code)
{
	static const char *const names[ENC__COUNT] = { "const", "for", "delta", "dict", "plain", "planes" };

	return code < ENC__COUNT ? names[code] : "?";
}

int mm_store_stats(struct mm_store *st, struct mm_store_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < st->cat.n; i++) {
		struct mm_segment *seg;
		int rc = open_entry(st->dir, &st->cat.entries[i], &seg);

		if (rc < 0)
			return rc;
		if (out->segments == 0 || seg->min_first_ns < out->min_first_ns)
			out->min_first_ns = seg->min_first_ns;
		if (seg->max_last_ns > out->max_last_ns)
			out->max_last_ns = seg->max_last_ns;
		out->segments++;
		out->flows += seg->n_rows;
		out->file_bytes += seg->len;
		for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
			struct mm_store_column_stats *cs = &out->column[col];

			cs->raw_bytes += seg->n_rows * mm_store_column_width(col);
			for (uint32_t k = 0; k < seg->n_chunks; k++) {
				const struct seg_entry *e = &seg->entries[(size_t)col * seg->n_chunks + k];

				cs->stored_bytes += e->stored_len;
				cs->n_chunks_by_encoding[e->encoding]++;
			}
		}
		mm_segment_free(seg);
	}
	out->bytes_per_flow = out->flows ? (double)out->file_bytes / (double)out->flows : 0;
	return 0;
}

/* --- verify ------------------------------------------------------------- */

struct verifier {
	struct mm_store_verify_report *report;
	void (*on_problem)(void *ctx, const char *message);
	void *ctx;
};

__attribute__((format(printf, 2, 3))) static void problem(struct verifier *v, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	v->report->problems++;
	if (v->on_problem)
		v->on_problem(v->ctx, msg);
}

static void verify_segment_header(struct verifier *v, const struct mm_segment *seg,
				  const struct cat_entry *e)
{
	uint64_t min_first = UINT64_MAX, max_last = 0;

	if (seg->len != e->file_bytes)
		problem(v, "store: %s: %zu bytes, the catalog says %" PRIu64, seg->name, seg->len,
			e->file_bytes);
	if (seg_payload_end(seg) != seg->len)
		problem(v, "store: %s: payloads end at %" PRIu64 " of %zu bytes", seg->name,
			seg_payload_end(seg), seg->len);
	for (uint32_t k = 0; k < seg->n_chunks; k++) {
		uint64_t lo, hi;

		mm_segment_zone(seg, MM_COL_FIRST_NS, k, &lo, &hi);
		min_first = lo < min_first ? lo : min_first;
		mm_segment_zone(seg, MM_COL_LAST_NS, k, &lo, &hi);
		max_last = hi > max_last ? hi : max_last;
	}
	if (min_first != seg->min_first_ns || max_last != seg->max_last_ns ||
	    e->min_first_ns != seg->min_first_ns || e->max_last_ns != seg->max_last_ns)
		problem(v, "store: %s: time range disagrees between chunks, header and catalog",
			seg->name);
}

static void verify_segment(struct verifier *v, const char *dir, const struct cat_entry *e,
			   struct mm_store_scratch *scratch, uint64_t *vals)
{
	struct mm_segment *seg;

	if (open_entry(dir, e, &seg) < 0) {
		problem(v, "%s", mm_last_error());
		return;
	}
	v->report->segments++;
	v->report->flows += seg->n_rows;
	verify_segment_header(v, seg, e);
	for (uint32_t k = 0; k < seg->n_chunks; k++) {
		for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
			v->report->chunks++;
			if (seg_decode_checked(seg, col, k, scratch, vals, 1) < 0)
				problem(v, "%s", mm_last_error());
		}
	}
	mm_segment_free(seg);
}

static bool is_leftover(const char *name, const struct catalog *cat)
{
	size_t len = strlen(name), tl = strlen(TMP_SUFFIX);
	unsigned long long id;
	int used = 0;

	if (len > tl && strcmp(name + len - tl, TMP_SUFFIX) == 0)
		return true;
	if (sscanf(name, "seg-%llu.mms%n", &id, &used) != 1 || (size_t)used != len)
		return false;
	for (size_t i = 0; i < cat->n; i++)
		if (cat->entries[i].id == id)
			return false;
	return true;
}

static void count_leftovers(const char *dir, const struct catalog *cat,
			    struct mm_store_verify_report *report)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)) != NULL)
		if (is_leftover(de->d_name, cat))
			report->leftovers++;
	closedir(d);
}

int mm_store_verify(const char *dir, struct mm_store_verify_report *report,
		    void (*on_problem)(void *ctx, const char *message), void *ctx)
{
	struct verifier v = { report, on_problem, ctx };
	struct mm_store_scratch *scratch = NULL;
	struct catalog cat;
	uint64_t *vals = NULL;
	int rc;

	memset(report, 0, sizeof(*report));
	rc = catalog_load(&cat, dir);
	if (rc == MM_ENOENT || rc == MM_EIO || rc == MM_ENOMEM)
		return rc;
	if (rc < 0) {
		problem(&v, "%s", mm_last_error());
		return mm_fail(MM_EFORMAT, "store: %s: catalog unreadable", dir);
	}
	rc = mm_store_scratch_new(&scratch);
	vals = malloc(MM_STORE_MAX_CHUNK_ROWS * sizeof(uint64_t));
	if (rc < 0 || !vals) {
		rc = mm_fail(MM_ENOMEM, "store: verify buffers");
		goto out;
	}
	count_leftovers(dir, &cat, report);
	for (size_t i = 0; i < cat.n; i++) {
		for (size_t j = 0; j < i; j++)
			if (cat.entries[j].id == cat.entries[i].id)
				problem(&v, "store: catalog: segment %" PRIu64 " listed twice",
					cat.entries[i].id);
		verify_segment(&v, dir, &cat.entries[i], scratch, vals);
	}
	rc = report->problems ? mm_fail(MM_EFORMAT, "store: %s: %" PRIu64 " problems", dir,
					report->problems)
			      : 0;
out:
	free(vals);
	mm_store_scratch_free(scratch);
	catalog_release(&cat);
	return rc;
}

/* --- expire ------------------------------------------------------------- */

int store_expire_locked(const char *dir, uint64_t cutoff_ns, int do_fsync,
			struct mm_store_expired *out)
{
	struct catalog cat, kept = { 0 };
	int rc;

	memset(out, 0, sizeof(*out));
	rc = catalog_load(&cat, dir);
	if (rc < 0)
		return rc;
	kept.next_id = cat.next_id;
	for (size_t i = 0; i < cat.n && rc == 0; i++) {
		const struct cat_entry *e = &cat.entries[i];

		if (e->max_last_ns >= cutoff_ns) {
			rc = catalog_append(&kept, e);
			continue;
		}
		if (out->segments == 0 || e->min_first_ns < out->min_first_ns)
			out->min_first_ns = e->min_first_ns;
		if (e->max_last_ns > out->max_last_ns)
			out->max_last_ns = e->max_last_ns;
		out->segments++;
		out->flows += e->n_rows;
		out->bytes += e->file_bytes;
	}
	/* Unlist first: a crash before the unlinks leaves leftovers, never a dangling entry. */
	if (rc == 0 && out->segments)
		rc = catalog_save(&kept, dir, do_fsync);
	for (size_t i = 0; i < cat.n && rc == 0; i++) {
		char name[64], path[STORE_PATH_MAX];

		if (cat.entries[i].max_last_ns >= cutoff_ns)
			continue;
		seg_file_name(cat.entries[i].id, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (unlink(path) < 0 && errno != ENOENT)
			rc = mm_fail(MM_EIO, "store: %s: %s", path, strerror(errno));
	}
	catalog_release(&cat);
	catalog_release(&kept);
	return rc;
}

int mm_store_expire(const char *dir, uint64_t cutoff_ns, struct mm_store_expired *out)
{
	int fd = -1, rc = store_lock(dir, &fd);

	if (rc < 0)
		return rc;
	rc = store_expire_locked(dir, cutoff_ns, 1, out);
	close(fd);
	return rc;
}
