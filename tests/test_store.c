/*
 * store/: write → read round trips of every field, each chunk encoding,
 * zone-map skipping in scans, verify against flipped bytes, truncation and
 * unknown versions, expire by age, a writer killed with SIGKILL again and
 * again, and bytes per flow of metered synthetic traffic.
 */
#include "mamori/capture.h"
#include "mamori/meter.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/synth.h"
#include "mamori/timefmt.h"
#include "store/store_int.h"
#include "test_util.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define T0 1767225600000000000ull /* 2026-01-01T00:00:00Z */
#define HOUR (3600 * MM_NS_PER_SEC)

static uint64_t rng_next(uint64_t *s)
{
	/* splitmix64: every seed gives a good stream, so a flow can be rebuilt from its id. */
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* A flow with every field set from id alone; odd ids are IPv6. */
static void random_flow(uint64_t id, struct mm_flow *f)
{
	uint64_t s = id;
	uint8_t v6[16];

	memset(f, 0, sizeof(*f));
	if (id & 1) {
		for (int i = 0; i < 16; i++)
			v6[i] = (uint8_t)rng_next(&s);
		mm_addr_set_v6(&f->src, v6);
		v6[15] ^= 0x5a;
		mm_addr_set_v6(&f->dst, v6);
		mm_addr_set_v6(&f->next_hop, v6);
	} else {
		mm_addr_set_v4_u32(&f->src, (uint32_t)rng_next(&s));
		mm_addr_set_v4_u32(&f->dst, 0xc0000200u | (uint32_t)(rng_next(&s) & 0xff));
	}
	f->first_ns = T0 + rng_next(&s) % (3 * HOUR);
	f->last_ns = f->first_ns + rng_next(&s) % (120 * MM_NS_PER_SEC);
	f->fwd_packets = rng_next(&s) % 1000;
	f->fwd_bytes = f->fwd_packets * 1500;
	f->rev_packets = rng_next(&s) >> (rng_next(&s) % 64);
	f->rev_bytes = rng_next(&s);
	f->id = id;
	f->tunnel_parents[0] = rng_next(&s) % 3 == 0 ? rng_next(&s) : 0;
	f->tunnel_parents[1] = rng_next(&s);
	f->sensor_id = (uint32_t)rng_next(&s) % 4;
	f->sampling_rate = (uint32_t)rng_next(&s);
	f->src_as = (uint32_t)rng_next(&s);
	f->dst_as = (uint32_t)(rng_next(&s) % 5) * 1000000000u;
	f->in_if = (uint32_t)rng_next(&s) % 48;
	f->out_if = UINT32_MAX - (uint32_t)(rng_next(&s) % 2);
	f->src_port = (uint16_t)rng_next(&s);
	f->dst_port = (uint16_t)(rng_next(&s) % 2 ? 443 : 53);
	f->vlan = (uint16_t)(rng_next(&s) % 4096);
	f->proto = (uint8_t)rng_next(&s);
	f->icmp_type = (uint8_t)rng_next(&s);
	f->icmp_code = (uint8_t)rng_next(&s);
	f->fwd_tcp_flags = (uint8_t)rng_next(&s);
	f->rev_tcp_flags = (uint8_t)rng_next(&s);
	f->end_reason = (uint8_t)(rng_next(&s) % 6);
	f->flags = (uint8_t)(rng_next(&s) % 8);
	memcpy(f->src_country, id % 3 ? "JP" : "\0\0", 2);
	memcpy(f->dst_country, "US", 2);
}

static struct mm_store_writer_options test_options(void)
{
	struct mm_store_writer_options o;

	mm_store_writer_options_default(&o);
	o.rows_per_chunk = 1000;
	o.flush_rows = 4000;
	o.flush_interval_ns = 0;
	o.fsync = false;
	return o;
}

static void write_flows(const char *dir, const struct mm_store_writer_options *o,
			const struct mm_flow *flows, size_t n)
{
	struct mm_store_writer *w;

	cr_assert_eq(mm_store_writer_open(&w, dir, o), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_writer_append(w, flows, n), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_writer_close(w), 0, "%s", mm_last_error());
}

/* Every flow of every cataloged segment (malloc'd), in catalog and row order. */
static struct mm_flow *read_all(const char *dir, size_t *n_out)
{
	struct mm_store *st;
	struct mm_store_scratch *s;
	struct mm_flow *all = NULL;
	size_t n = 0;

	cr_assert_eq(mm_store_open(&st, dir), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_scratch_new(&s), 0);
	for (size_t i = 0; i < mm_store_segment_count(st); i++) {
		struct mm_segment *seg;

		cr_assert_eq(mm_store_segment_open(st, i, &seg), 0, "%s", mm_last_error());
		all = realloc(all, (n + mm_segment_rows(seg)) * sizeof(*all));
		cr_assert(all);
		for (uint32_t k = 0; k < mm_segment_chunks(seg); k++) {
			cr_assert_eq(mm_segment_read_flows(seg, k, s, all + n), 0, "%s", mm_last_error());
			n += mm_segment_chunk_rows(seg, k);
		}
		mm_segment_free(seg);
	}
	mm_store_scratch_free(s);
	mm_store_free(st);
	*n_out = n;
	return all;
}

static int by_id(const void *a, const void *b)
{
	const struct mm_flow *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

static void assert_same_flows(struct mm_flow *got, size_t n_got, struct mm_flow *want, size_t n)
{
	cr_assert_eq(n_got, n, "read back %zu flows of %zu", n_got, n);
	qsort(got, n, sizeof(*got), by_id);
	qsort(want, n, sizeof(*want), by_id);
	for (size_t i = 0; i < n; i++)
		for (unsigned c = 0; c < MM_STORE_N_COLUMNS; c++)
			cr_assert_eq(mm_store_flow_value(&got[i], c), mm_store_flow_value(&want[i], c),
				     "flow %" PRIu64 " column %s", want[i].id, mm_store_column_name(c));
}

static void round_trip(enum mm_store_codec codec)
{
	char *dir = tu_tmpdir();
	struct mm_store_writer_options o = test_options();
	size_t n = 10000, n_got;
	struct mm_flow *flows = calloc(n, sizeof(*flows)), *got;

	o.codec = codec;
	for (size_t i = 0; i < n; i++)
		random_flow(i + 1, &flows[i]);
	write_flows(dir, &o, flows, n);
	got = read_all(dir, &n_got);
	assert_same_flows(got, n_got, flows, n);
	free(got);
	free(flows);
	free(dir);
}

Test(store, round_trip_every_field_v4_and_v6_zstd)
{
	round_trip(MM_STORE_CODEC_ZSTD);
}

Test(store, round_trip_lz4_and_uncompressed)
{
	round_trip(MM_STORE_CODEC_LZ4);
	round_trip(MM_STORE_CODEC_NONE);
}

Test(store, flows_are_partitioned_by_hour)
{
	char *dir = tu_tmpdir();
	struct mm_store_writer_options o = test_options();
	struct mm_flow f[3];
	struct mm_store *st;
	struct mm_store_segment_info info;

	for (int i = 0; i < 3; i++) {
		random_flow(2 * (uint64_t)i + 2, &f[i]);
		f[i].first_ns = T0 + (uint64_t)(2 - i) * HOUR + 5; /* newest first */
		f[i].last_ns = f[i].first_ns + 1;
	}
	write_flows(dir, &o, f, 3);
	cr_assert_eq(mm_store_open(&st, dir), 0);
	cr_assert_eq(mm_store_segment_count(st), 3, "one segment per hour");
	mm_store_segment_info(st, 0, &info);
	cr_assert_eq(info.min_first_ns, T0 + 5, "the oldest partition is written first");
	cr_assert_eq(info.n_rows, 1);
	mm_store_free(st);
	free(dir);
}

/*
 * Each flush writes its flows in start-time order and equal start times in
 * arrival order, whatever the sizes of the appends that filled it and
 * whichever bits of the start times differ: a few low ones, or forty
 * (several sort passes), or none out of order.
 */
Test(store, a_flush_orders_by_start_time_then_arrival)
{
	static const size_t batches[] = { 1, 7, 333, 1500, 2, 1157, 1000 }; /* 4000 flows */
	struct mm_store_writer_options o = test_options();

	o.flush_rows = 1500; /* flushes inside appends and between them, and one at close */
	for (unsigned spread = 0; spread < 3; spread++) {
		char *dir = tu_tmpdir();
		size_t n = 4000, n_got, done = 0;
		struct mm_flow *flows = calloc(n, sizeof(*flows)), *got;
		bool *seg_start = calloc(n, sizeof(*seg_start));
		struct mm_store_writer *w;
		struct mm_store *st;
		struct mm_store_segment_info info;
		uint64_t seed = spread;

		for (size_t i = 0; i < n; i++) {
			/* 1000 times, about 4 flows each, all within the hour from T0. */
			uint64_t coarse = rng_next(&seed) % 250, fine = rng_next(&seed) % 4;

			random_flow(i + 1, &flows[i]);
			if (spread == 0)
				flows[i].first_ns = T0 + i / 4;                        /* in order */
			else if (spread == 1)
				flows[i].first_ns = T0 + (coarse * 4 + fine) * 3;      /* low bits */
			else
				flows[i].first_ns = T0 + (coarse << 31) + fine * 3;    /* bits 0 to 38 */
			flows[i].last_ns = flows[i].first_ns + 1;
		}
		cr_assert_eq(mm_store_writer_open(&w, dir, &o), 0, "%s", mm_last_error());
		for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
			cr_assert_eq(mm_store_writer_append(w, flows + done, batches[b]), 0, "%s", mm_last_error());
			done += batches[b];
		}
		cr_assert_eq(done, n);
		cr_assert_eq(mm_store_writer_close(w), 0, "%s", mm_last_error());
		got = read_all(dir, &n_got);
		cr_assert_eq(n_got, n);
		/* One partition, so one segment a flush; ids are arrival order. */
		cr_assert_eq(mm_store_open(&st, dir), 0, "%s", mm_last_error());
		cr_assert_gt(mm_store_segment_count(st), 3);
		for (size_t k = 0, first = 0; k < mm_store_segment_count(st); k++) {
			mm_store_segment_info(st, k, &info);
			seg_start[first] = true;
			first += info.n_rows;
		}
		mm_store_free(st);
		for (size_t i = 1; i < n; i++) {
			if (seg_start[i])
				continue;
			cr_assert(got[i - 1].first_ns < got[i].first_ns ||
				  (got[i - 1].first_ns == got[i].first_ns && got[i - 1].id < got[i].id),
				  "spread %u: row %zu (time %" PRIu64 ", flow %" PRIu64
				  ") after time %" PRIu64 ", flow %" PRIu64,
				  spread, i, got[i].first_ns, got[i].id, got[i - 1].first_ns, got[i - 1].id);
		}
		assert_same_flows(got, n_got, flows, n);
		free(seg_start);
		free(got);
		free(flows);
		free(dir);
	}
}

/* Flows whose columns each call for a different encoding. */
static void encoding_flow(uint64_t i, uint64_t *s, struct mm_flow *f)
{
	memset(f, 0, sizeof(*f));
	mm_addr_set_v4_u32(&f->src, 0x0a000000u + (uint32_t)(rng_next(s) & 0xffff));
	mm_addr_set_v4_u32(&f->dst, 0xc6336401u);
	f->first_ns = T0 + i * 1000 + rng_next(s) % 16;  /* steady clock: delta */
	f->last_ns = f->first_ns + rng_next(s) % 1000000;
	f->id = rng_next(s);                              /* 64 random bits: plain */
	f->sensor_id = 7;                                 /* one value: const */
	f->src_port = (uint16_t)(1024 + rng_next(s) % 1024); /* 10-bit range: for */
	f->dst_as = (rng_next(s) % 4 + 1) * 1000000000u; /* four values far apart: dict */
}

Test(store, every_encoding_is_chosen_and_decodes)
{
	char *dir = tu_tmpdir();
	struct mm_store_writer_options o = test_options();
	size_t n = 8000, n_got;
	struct mm_flow *flows = calloc(n, sizeof(*flows)), *got;
	struct mm_store_stats stats;
	struct mm_store *st;
	uint64_t s = 42;

	for (size_t i = 0; i < n; i++)
		encoding_flow(i, &s, &flows[i]);
	write_flows(dir, &o, flows, n);
	cr_assert_eq(mm_store_open(&st, dir), 0);
	cr_assert_eq(mm_store_stats(st, &stats), 0, "%s", mm_last_error());
	cr_assert_eq(stats.flows, n);
	cr_assert_eq(stats.column[MM_COL_SENSOR_ID].n_chunks_by_encoding[ENC_CONST], 8);
	cr_assert_eq(stats.column[MM_COL_SRC_PORT].n_chunks_by_encoding[ENC_FOR], 8);
	cr_assert_eq(stats.column[MM_COL_FIRST_NS].n_chunks_by_encoding[ENC_DELTA], 8);
	cr_assert_eq(stats.column[MM_COL_DST_AS].n_chunks_by_encoding[ENC_DICT], 8);
	cr_assert_eq(stats.column[MM_COL_ID].n_chunks_by_encoding[ENC_PLAIN], 8);
	cr_assert_eq(stats.column[MM_COL_SENSOR_ID].stored_bytes, 8 * 8,
		     "a constant chunk stores its one 8-byte value");
	mm_store_free(st);
	got = read_all(dir, &n_got);
	assert_same_flows(got, n_got, flows, n);
	free(got);
	free(flows);
	free(dir);
}

struct scan_tally {
	uint64_t rows, port22;
};

static int tally_chunk(void *ctx, unsigned thread, const struct mm_store_batch *b)
{
	struct scan_tally *t = ctx;
	const uint16_t *port = b->col[MM_COL_DST_PORT];

	(void)thread;
	__atomic_fetch_add(&t->rows, b->n_rows, __ATOMIC_RELAXED);
	for (size_t i = 0; i < b->n_rows; i++)
		if (port[i] == 22)
			__atomic_fetch_add(&t->port22, 1, __ATOMIC_RELAXED);
	return 0;
}

Test(store, scans_skip_chunks_by_time_and_zone_map)
{
	char *dir = tu_tmpdir();
	struct mm_store_writer_options o = test_options();
	size_t n = 10000;
	struct mm_flow *flows = calloc(n, sizeof(*flows));
	struct mm_store *st;
	struct mm_store_scan_stats stats;
	struct scan_tally tally = { 0 };
	struct mm_store_pred ssh = { MM_COL_DST_PORT, 22, 22 };
	struct mm_store_scan scan = {
		.since_ns = 0, .until_ns = UINT64_MAX, .columns = 1ull << MM_COL_DST_PORT,
		.n_threads = 2, .on_chunk = tally_chunk, .ctx = &tally,
	};

	for (size_t i = 0; i < n; i++) {
		random_flow(2 * i + 2, &flows[i]);
		flows[i].first_ns = T0 + i * MM_NS_PER_SEC / 10; /* 100 s per 1000-row chunk */
		flows[i].last_ns = flows[i].first_ns;
		flows[i].dst_port = (i >= 7000 && i < 7010) ? 22 : 443; /* ssh only in chunk 7 */
	}
	write_flows(dir, &o, flows, n);
	cr_assert_eq(mm_store_open(&st, dir), 0);

	scan.preds = &ssh;
	scan.n_preds = 1;
	cr_assert_eq(mm_store_scan(st, &scan, &stats), 0, "%s", mm_last_error());
	cr_assert_eq(stats.chunks, 10);
	cr_assert_eq(stats.chunks_skipped, 9, "only chunk 7 may hold port 22");
	cr_assert_eq(tally.rows, 1000);
	cr_assert_eq(tally.port22, 10);

	/* Seconds 250..350 lie in chunks 2 and 3 of the first segment (4000 flows, 400 s);
	 * the catalog's time ranges rule out the other two segments unopened. */
	memset(&tally, 0, sizeof(tally));
	scan.preds = NULL;
	scan.n_preds = 0;
	scan.since_ns = T0 + 250 * MM_NS_PER_SEC;
	scan.until_ns = T0 + 350 * MM_NS_PER_SEC;
	cr_assert_eq(mm_store_scan(st, &scan, &stats), 0, "%s", mm_last_error());
	cr_assert_eq(stats.segments, 3);
	cr_assert_eq(stats.segments_skipped, 2);
	cr_assert_eq(stats.chunks, 4);
	cr_assert_eq(stats.chunks_skipped, 2);
	cr_assert_eq(tally.rows, 2000);
	mm_store_free(st);
	free(flows);
	free(dir);
}

static int stop_at_first(void *ctx, unsigned thread, const struct mm_store_batch *b)
{
	(void)ctx;
	(void)thread;
	(void)b;
	return mm_fail(MM_ELIMIT, "test: enough");
}

Test(store, scan_stops_when_the_consumer_says_so)
{
	char *dir = tu_tmpdir();
	struct mm_store_writer_options o = test_options();
	struct mm_flow flows[3000];
	struct mm_store *st;
	struct mm_store_scan scan = { .until_ns = UINT64_MAX, .n_threads = 3,
				      .on_chunk = stop_at_first };

	for (size_t i = 0; i < 3000; i++)
		random_flow(2 * i + 2, &flows[i]);
	write_flows(dir, &o, flows, 3000);
	cr_assert_eq(mm_store_open(&st, dir), 0);
	cr_assert_eq(mm_store_scan(st, &scan, NULL), MM_ELIMIT);
	cr_assert_str_eq(mm_last_error(), "test: enough");
	mm_store_free(st);
	free(dir);
}

/* --- verify ------------------------------------------------------------- */

struct problems {
	int n;
	char first[512];
};

static void note_problem(void *ctx, const char *msg)
{
	struct problems *p = ctx;

	if (p->n++ == 0)
		snprintf(p->first, sizeof(p->first), "%s", msg);
}

static char *small_store(void)
{
	char *dir = tu_tmpdir();
	struct mm_store_writer_options o = test_options();
	struct mm_flow flows[2500];

	for (size_t i = 0; i < 2500; i++) {
		random_flow(2 * i + 2, &flows[i]);
		flows[i].first_ns = T0 + i; /* one partition: one segment, seg-000001.mms */
	}
	write_flows(dir, &o, flows, 2500);
	return dir;
}

static char *seg_path(const char *dir)
{
	char *p = malloc(strlen(dir) + 32);

	sprintf(p, "%s/seg-000001.mms", dir);
	return p;
}

Test(store, verify_passes_on_a_sound_store)
{
	char *dir = small_store();
	struct mm_store_verify_report r;
	struct problems p = { 0 };

	cr_assert_eq(mm_store_verify(dir, &r, note_problem, &p), 0, "%s", p.first);
	cr_assert_eq(r.segments, 1);
	cr_assert_eq(r.flows, 2500);
	cr_assert_eq(r.chunks, 3 * MM_STORE_N_COLUMNS);
	cr_assert_eq(r.problems, 0);
	free(dir);
}

Test(store, verify_names_the_chunk_of_a_flipped_byte)
{
	char *dir = small_store(), *path = seg_path(dir);
	size_t len;
	uint8_t *seg = (uint8_t *)tu_read_file(path, &len);
	struct mm_store_verify_report r;
	struct problems p = { 0 };
	/* Directory entry of dst_port chunk 1: after the header and 33 column descriptors,
	 * column-major over 3 chunks; its first 8 bytes are the payload offset. */
	size_t entry = SEG_HEADER_LEN + MM_STORE_N_COLUMNS * SEG_COLDESC_LEN +
		       ((size_t)MM_COL_DST_PORT * 3 + 1) * SEG_ENTRY_LEN;
	uint64_t off = get_u64(seg + entry);

	cr_assert_gt(get_u32(seg + entry + 8), 0, "dst_port chunk 1 has a payload");
	seg[off] ^= 0x10;
	cr_assert_eq(tu_write_file(path, seg, len), 0);
	cr_assert_eq(mm_store_verify(dir, &r, note_problem, &p), MM_EFORMAT);
	cr_assert_eq(r.problems, 1);
	cr_assert_str_eq(p.first, "store: seg-000001.mms: column 'dst_port' chunk 1: checksum mismatch");
	free(seg);
	free(path);
	free(dir);
}

Test(store, verify_catches_truncation_and_directory_damage)
{
	char *dir = small_store(), *path = seg_path(dir);
	size_t len;
	uint8_t *seg = (uint8_t *)tu_read_file(path, &len);
	struct mm_store_verify_report r;
	struct problems p = { 0 };

	cr_assert_eq(tu_write_file(path, seg, len - 1), 0);
	cr_assert_eq(mm_store_verify(dir, &r, note_problem, &p), MM_EFORMAT);
	cr_assert(strstr(p.first, "payload outside the file"), "%s", p.first);

	/* A zone-map byte of first_ns chunk 0 (entry offset 16 is min). */
	seg[SEG_HEADER_LEN + MM_STORE_N_COLUMNS * SEG_COLDESC_LEN + 16] ^= 1;
	memset(&p, 0, sizeof(p));
	cr_assert_eq(tu_write_file(path, seg, len), 0);
	cr_assert_eq(mm_store_verify(dir, &r, note_problem, &p), MM_EFORMAT);
	cr_assert_str_eq(p.first, "store: seg-000001.mms: directory checksum mismatch");
	free(seg);
	free(path);
	free(dir);
}

/*
 * Timestamps from coarse clocks are stored divided by their decimal unit
 * (FORMAT.md §4.2), per chunk: chunk 0 has a millisecond clock, chunk 1 a
 * microsecond one, chunk 2 milliseconds but for one nanosecond-exact flow.
 */
Test(store, coarse_clocks_are_scaled_per_chunk_and_round_trip)
{
	char *dir = tu_tmpdir();
	struct mm_store_writer_options o = test_options();
	size_t n = 3000, n_got;
	struct mm_flow *flows = calloc(n, sizeof(*flows)), *got;
	static const uint8_t want_first[3] = { 6, 3, 0 }, want_last[3] = { 6, 3, 6 };
	struct mm_store_verify_report r;
	struct mm_segment *seg;
	char *path = seg_path(dir);
	uint64_t s = 7;

	for (size_t i = 0; i < n; i++) {
		uint64_t unit = i < 1000 || i >= 2000 ? 1000000 : 1000;

		random_flow(i + 1, &flows[i]);
		flows[i].first_ns = T0 + i / 1000 * 600 * MM_NS_PER_SEC + i % 1000 * unit;
		flows[i].last_ns = flows[i].first_ns + (rng_next(&s) % 997) * unit;
	}
	flows[2500].first_ns += 1;
	flows[2500].last_ns += 1;
	write_flows(dir, &o, flows, n);
	cr_assert_eq(mm_segment_open_file(&seg, path), 0, "%s", mm_last_error());
	cr_assert_eq(seg->n_chunks, 3);
	for (uint32_t k = 0; k < 3; k++) {
		const struct seg_entry *f = &seg->entries[(size_t)MM_COL_FIRST_NS * 3 + k];
		const struct seg_entry *l = &seg->entries[(size_t)MM_COL_LAST_NS * 3 + k];

		cr_assert_eq(f->scale, want_first[k], "first_ns chunk %u: scale %u", k, f->scale);
		cr_assert_eq(l->scale, want_last[k], "last_ns chunk %u: scale %u", k, l->scale);
		cr_assert_eq(f->min, flows[k * 1000].first_ns, "zone maps keep real values");
	}
	mm_segment_free(seg);
	cr_assert_eq(mm_store_verify(dir, &r, NULL, NULL), 0, "%s", mm_last_error());
	got = read_all(dir, &n_got);
	assert_same_flows(got, n_got, flows, n);
	free(got);
	free(flows);
	free(path);
	free(dir);
}

Test(store, unknown_versions_are_refused_clearly)
{
	char *dir = small_store(), *path = seg_path(dir), cat_path[4200];
	size_t len, cat_len;
	uint8_t *seg = (uint8_t *)tu_read_file(path, &len), *cat;
	struct mm_segment *s;
	struct mm_store *st;

	seg[8] = 4; /* version field: 4, newer than this build */
	cr_assert_eq(mm_segment_open_mem(&s, seg, len, "seg-000001.mms"), MM_EUNSUP);
	cr_assert_str_eq(mm_last_error(),
			 "store: seg-000001.mms: segment format version 4 not supported "
			 "(this build reads versions 1 to 3)");
	snprintf(cat_path, sizeof(cat_path), "%s/catalog", dir);
	cat = (uint8_t *)tu_read_file(cat_path, &cat_len);
	cat[8] = 9; /* catalog version 9 */
	cr_assert_eq(tu_write_file(cat_path, cat, cat_len), 0);
	cr_assert_eq(mm_store_open(&st, dir), MM_EUNSUP);
	cr_assert(strstr(mm_last_error(), "version 9 not supported"), "%s", mm_last_error());
	free(cat);
	free(seg);
	free(path);
	free(dir);
}

/*
 * Heavy-tailed packet counts (mostly under 40, one flow in 16 up to 10000,
 * as on real links) in full-size chunks: byte planes compress them best,
 * and read back exactly. Byte planes came with segment version 3, so a
 * version 2 segment that claims them is refused as corrupt.
 */
Test(store, heavy_tailed_counters_are_stored_as_byte_planes)
{
	char *dir = tu_tmpdir(), *path;
	struct mm_store_writer_options o = test_options();
	size_t n = 2 * 65536, n_got, len;
	struct mm_flow *flows = calloc(n, sizeof(*flows)), *got;
	struct mm_store_stats stats;
	struct mm_store *st;
	struct mm_segment *seg;
	uint8_t *bytes;
	uint64_t s = 7, chunks = 0;

	o.rows_per_chunk = 65536;
	o.flush_rows = n;
	for (size_t i = 0; i < n; i++) {
		random_flow(i + 1, &flows[i]);
		flows[i].fwd_packets = 1 + (rng_next(&s) % 16 ? rng_next(&s) % 40 : rng_next(&s) % 10000);
	}
	write_flows(dir, &o, flows, n);
	cr_assert_eq(mm_store_open(&st, dir), 0);
	cr_assert_eq(mm_store_stats(st, &stats), 0, "%s", mm_last_error());
	for (unsigned e = 0; e < ENC__COUNT; e++)
		chunks += stats.column[MM_COL_FWD_PACKETS].n_chunks_by_encoding[e];
	cr_assert_gt(chunks, 0);
	cr_assert_eq(stats.column[MM_COL_FWD_PACKETS].n_chunks_by_encoding[ENC_PLANES], chunks,
		     "%" PRIu64 " of %" PRIu64 " chunks in byte planes",
		     stats.column[MM_COL_FWD_PACKETS].n_chunks_by_encoding[ENC_PLANES], chunks);
	mm_store_free(st);
	got = read_all(dir, &n_got);
	assert_same_flows(got, n_got, flows, n);

	path = seg_path(dir);
	bytes = (uint8_t *)tu_read_file(path, &len);
	put_u32(bytes + 8, 2);
	put_u32(bytes + 60, store_crc32c(0, bytes, 60));
	cr_assert_eq(mm_segment_open_mem(&seg, bytes, len, "seg-000001.mms"), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "column 'fwd_packets' chunk 0: unknown encoding"), "%s",
		  mm_last_error());
	free(bytes);
	free(path);
	free(got);
	free(flows);
	free(dir);
}

Test(store, decode_refuses_a_corrupt_chunk)
{
	char *dir = small_store(), *path = seg_path(dir);
	size_t len;
	uint8_t *seg = (uint8_t *)tu_read_file(path, &len);
	struct mm_segment *s;
	struct mm_store_scratch *scratch;
	uint16_t ports[1000];
	size_t entry = SEG_HEADER_LEN + MM_STORE_N_COLUMNS * SEG_COLDESC_LEN +
		       (size_t)MM_COL_SRC_PORT * 3 * SEG_ENTRY_LEN;

	seg[get_u64(seg + entry) + 3] ^= 0xff; /* a byte inside src_port chunk 0's payload */
	cr_assert_eq(mm_segment_open_mem(&s, seg, len, "x.mms"), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_scratch_new(&scratch), 0);
	cr_assert_eq(mm_segment_decode(s, MM_COL_SRC_PORT, 0, scratch, ports), MM_EFORMAT);
	cr_assert_str_eq(mm_last_error(), "store: x.mms: column 'src_port' chunk 0: checksum mismatch");
	cr_assert_eq(mm_segment_decode(s, MM_COL_SRC_PORT, 1, scratch, ports), 0);
	mm_store_scratch_free(scratch);
	mm_segment_free(s);
	free(seg);
	free(path);
	free(dir);
}

/* --- expire ------------------------------------------------------------- */

Test(store, expire_removes_whole_old_segments_and_says_what)
{
	char *dir = tu_tmpdir();
	struct mm_store_writer_options o = test_options();
	struct mm_flow flows[300];
	struct mm_store_writer *w;
	struct mm_store_expired ex;
	struct mm_store *st;
	char path[4200];
	struct stat sb;

	for (size_t i = 0; i < 300; i++) {
		random_flow(2 * i + 2, &flows[i]);
		flows[i].first_ns = T0 + (i / 100) * HOUR + i; /* 100 flows in each of 3 hours */
		flows[i].last_ns = flows[i].first_ns + 10;
	}
	write_flows(dir, &o, flows, 300);

	cr_assert_eq(mm_store_writer_open(&w, dir, &o), 0);
	cr_assert_eq(mm_store_expire(dir, T0 + HOUR, &ex), MM_EAGAIN, "a writer holds the lock");
	cr_assert_eq(mm_store_writer_expire(w, T0 + 2 * HOUR, &ex), 0, "%s", mm_last_error());
	cr_assert_eq(ex.segments, 2);
	cr_assert_eq(ex.flows, 200);
	cr_assert_eq(ex.min_first_ns, T0);
	cr_assert_eq(ex.max_last_ns, T0 + HOUR + 199 + 10);
	cr_assert_eq(mm_store_writer_close(w), 0);

	snprintf(path, sizeof(path), "%s/seg-000001.mms", dir);
	cr_assert_neq(stat(path, &sb), 0, "expired file removed");
	cr_assert_eq(mm_store_open(&st, dir), 0);
	cr_assert_eq(mm_store_segment_count(st), 1);
	mm_store_free(st);
	cr_assert_eq(mm_store_expire(dir, T0 + 2 * HOUR, &ex), 0);
	cr_assert_eq(ex.segments, 0, "nothing older is left");
	free(dir);
}

/* --- crash safety ------------------------------------------------------- */

#define CRASH_ROUNDS 50
#define CRASH_BATCH 250

/* The child: appends batches of flows rebuilt from ids round<<32 | seq, reporting
 * after each call how many flows the writer has published so far. */
static void crash_child(const char *dir, uint64_t round, int report_fd)
{
	struct mm_store_writer_options o = test_options();
	struct mm_store_writer *w;
	struct mm_flow batch[CRASH_BATCH];
	uint64_t seq = 0;

	o.flush_rows = 1000;
	o.fsync = true;
	if (mm_store_writer_open(&w, dir, &o) < 0)
		_exit(2);
	/* Opened: the parent's kill clock starts now, so a kill never finds no store at all. */
	if (write(report_fd, &seq, 8) != 8)
		_exit(4);
	for (;;) {
		struct mm_store_writer_stats ws;

		for (size_t i = 0; i < CRASH_BATCH; i++)
			random_flow(round << 32 | ++seq, &batch[i]);
		if (mm_store_writer_append(w, batch, CRASH_BATCH) < 0)
			_exit(3);
		mm_store_writer_stats(w, &ws);
		if (write(report_fd, &ws.flows_published, 8) != 8)
			_exit(4);
	}
}

Test(store, survives_sigkill_at_random_points, .timeout = 120)
{
	char *dir = tu_tmpdir();
	uint64_t s = 7, reported_total = 0;

	for (uint64_t round = 1; round <= CRASH_ROUNDS; round++) {
		int fds[2];
		pid_t pid;
		uint64_t v, last = 0;
		struct mm_store_verify_report r;
		struct problems p = { 0 };

		cr_assert_eq(pipe(fds), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			crash_child(dir, round, fds[1]);
		}
		close(fds[1]);
		cr_assert_eq(read(fds[0], &v, 8), 8, "round %" PRIu64 ": the writer did not open the store",
			     round);
		usleep((useconds_t)(rng_next(&s) % 40000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		while (read(fds[0], &v, 8) == 8)
			last = v;
		close(fds[0]);
		reported_total += last;

		cr_assert_eq(mm_store_verify(dir, &r, note_problem, &p), 0, "round %" PRIu64 ": %s",
			     round, p.first);
		cr_assert_geq(r.flows, reported_total, "round %" PRIu64 ": %" PRIu64 " flows published,"
			      " the writers reported %" PRIu64, round, r.flows, reported_total);
	}

	/* Every published flow reads back exactly as it was written. */
	size_t n;
	struct mm_flow *all = read_all(dir, &n), want;

	cr_assert_geq(n, reported_total);
	for (size_t i = 0; i < n; i++) {
		random_flow(all[i].id, &want);
		for (unsigned c = 0; c < MM_STORE_N_COLUMNS; c++)
			cr_assert_eq(mm_store_flow_value(&all[i], c), mm_store_flow_value(&want, c),
				     "flow %" PRIx64 " column %s", want.id, mm_store_column_name(c));
	}
	free(all);
	free(dir);
}

/* --- size on disk ------------------------------------------------------- */

struct metered {
	struct mm_flow *flows;
	size_t n, cap;
};

static void collect_flows(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct metered *m = ctx;

	if (m->n + n > m->cap) {
		m->cap = (m->n + n) * 2;
		m->flows = realloc(m->flows, m->cap * sizeof(*m->flows));
		cr_assert(m->flows);
	}
	memcpy(m->flows + m->n, flows, n * sizeof(*flows));
	m->n += n;
}

Test(store, metered_traffic_takes_few_bytes_per_flow, .timeout = 120)
{
	char *dir = tu_tmpdir(), pcap[4200];
	struct mm_synth_config cfg;
	struct mm_synth_summary sum;
	struct mm_meter_config mc;
	struct mm_meter *m;
	struct mm_capture *cap;
	struct mm_raw_packet pkts[256];
	struct metered got = { 0 };
	struct mm_store_writer_options o;
	struct mm_store *st;
	struct mm_store_stats stats;
	int k;

	snprintf(pcap, sizeof(pcap), "%s/synth.pcap", dir);
	mm_synth_config_default(&cfg);
	cfg.n_flows = 100000;
	cfg.n_packets = 600000;
	cfg.duration_s = 100; /* 1000 new flows a second: a quiet border link */
	cr_assert_eq(mm_synth_write_pcap(&cfg, pcap, &sum), 0, "%s", mm_last_error());
	mm_meter_config_default(&mc);
	cr_assert_eq(mm_meter_new(&m, &mc, collect_flows, &got), 0);
	cr_assert_eq(mm_capture_open_file(&cap, pcap), 0, "%s", mm_last_error());
	while ((k = mm_capture_next_batch(cap, pkts, 256)) > 0)
		mm_meter_packets(m, pkts, (size_t)k);
	mm_meter_finish(m);
	mm_capture_free(cap);
	mm_meter_free(m);
	unlink(pcap);
	cr_assert_gt(got.n, 50000);

	mm_store_writer_options_default(&o);
	o.fsync = false;
	write_flows(dir, &o, got.flows, got.n);
	cr_assert_eq(mm_store_open(&st, dir), 0);
	cr_assert_eq(mm_store_stats(st, &stats), 0);
	cr_assert_eq(stats.flows, got.n);
	cr_log_info("metered synth: %" PRIu64 " flows, %.2f bytes per flow", stats.flows,
		    stats.bytes_per_flow);
	for (unsigned c = 0; c < MM_STORE_N_COLUMNS; c++)
		cr_log_info("  %-15s %6.2f bytes/flow", mm_store_column_name(c),
			    (double)stats.column[c].stored_bytes / (double)stats.flows);
	/* A regression guard, not the 15-byte target: synth's nanosecond timestamps
	 * alone carry about 7 bytes of entropy per flow (first_ns, duration). */
	cr_assert_leq(stats.bytes_per_flow, 22.0, "%.2f bytes per flow", stats.bytes_per_flow);
	mm_store_free(st);
	free(got.flows);
	free(dir);
}
