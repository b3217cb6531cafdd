/*
 * Builds one segment file from a run of flows: each column is cut into
 * chunks, each chunk encoded (encode.c), compressed with zstd or LZ4 when
 * that makes it smaller, and checksummed; the header and directory go in
 * front of the payloads. The file is written whole under the temporary name
 * the writer gives; publishing it is the writer's job.
 */
#include "store/store_int.h"

#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zstd.h>

/* Rows transposed per pass: their structs (~21 KiB) stay in L1 across all columns. */
#define TRANSPOSE_ROWS 128
/* Rows between a flow's prefetch and its copy into the stage. */
#define GATHER_AHEAD 8

struct seg_builder {
	struct seg_build_options opt;
	struct enc_scratch enc;
	uint64_t *cols;        /* every column of one chunk: MM_STORE_N_COLUMNS × rows_per_chunk */
	struct mm_flow *stage; /* TRANSPOSE_ROWS flows gathered in segment order */
	uint8_t *raw;          /* its encoded payload */
	uint8_t *packed;       /* and compressed */
	uint8_t *raw_alt;      /* the byte-plane alternative */
	uint8_t *packed_alt;   /* and compressed */
	/* Per column: whether planes won when last both were tried, and chunks until the next try. */
	bool planes_won[MM_STORE_N_COLUMNS];
	uint8_t planes_retry[MM_STORE_N_COLUMNS];
	size_t raw_cap, packed_cap;
	uint8_t *payload;      /* every chunk payload of the segment */
	size_t payload_len, payload_cap;
	uint8_t *head;         /* header, column descriptors, directory */
	size_t head_cap;
	ZSTD_CCtx *zstd;
};

int seg_builder_new(struct seg_builder **out, const struct seg_build_options *opt)
{
	struct seg_builder *b = calloc(1, sizeof(*b));
	size_t rows = opt->rows_per_chunk;

	*out = NULL;
	if (!b)
		return mm_fail(MM_ENOMEM, "store: segment builder");
	b->opt = *opt;
	b->raw_cap = enc_max_raw_len(rows) + 8;
	b->packed_cap = ZSTD_compressBound(b->raw_cap);
	if ((size_t)LZ4_compressBound((int)b->raw_cap) > b->packed_cap)
		b->packed_cap = (size_t)LZ4_compressBound((int)b->raw_cap);
	b->cols = malloc(MM_STORE_N_COLUMNS * rows * sizeof(uint64_t));
	b->stage = malloc(TRANSPOSE_ROWS * sizeof(*b->stage));
	b->enc.tmp = malloc(rows * sizeof(uint64_t));
	b->enc.row_cap = rows;
	b->raw = malloc(b->raw_cap);
	b->packed = malloc(b->packed_cap);
	b->raw_alt = malloc(b->raw_cap);
	b->packed_alt = malloc(b->packed_cap);
	b->zstd = ZSTD_createCCtx();
	if (!b->cols || !b->stage || !b->enc.tmp || !b->raw || !b->packed || !b->raw_alt ||
	    !b->packed_alt || !b->zstd) {
		seg_builder_free(b);
		return mm_fail(MM_ENOMEM, "store: segment builder for %zu-row chunks", rows);
	}
	*out = b;
	return 0;
}

void seg_builder_free(struct seg_builder *b)
{
	if (!b)
		return;
	free(b->cols);
	free(b->stage);
	free(b->enc.tmp);
	free(b->raw);
	free(b->packed);
	free(b->raw_alt);
	free(b->packed_alt);
	free(b->payload);
	free(b->head);
	ZSTD_freeCCtx(b->zstd);
	free(b);
}

void seg_file_name(uint64_t id, char *buf, size_t cap)
{
	snprintf(buf, cap, "seg-%06" PRIu64 ".mms", id);
}

static int payload_reserve(struct seg_builder *b, size_t more)
{
	size_t cap = b->payload_cap ? b->payload_cap : 1u << 20;
	uint8_t *p;

	if (b->payload_len + more <= b->payload_cap)
		return 0;
	while (cap < b->payload_len + more)
		cap *= 2;
	p = realloc(b->payload, cap);
	if (!p)
		return mm_fail(MM_ENOMEM, "store: segment payload of %zu bytes", cap);
	b->payload = p;
	b->payload_cap = cap;
	return 0;
}

/* Compresses raw into packed when that saves bytes; returns the bytes to store and sets *codec. */
static const uint8_t *compress_chunk(struct seg_builder *b, const uint8_t *raw, size_t raw_len,
				     uint8_t *packed, size_t *stored_len, uint8_t *codec)
{
	size_t n = 0;

	*codec = MM_STORE_CODEC_NONE;
	*stored_len = raw_len;
	if (raw_len < 64)
		return raw;
	if (b->opt.codec == MM_STORE_CODEC_ZSTD) {
		n = ZSTD_compressCCtx(b->zstd, packed, b->packed_cap, raw, raw_len, b->opt.zstd_level);
		if (ZSTD_isError(n))
			n = 0;
	} else if (b->opt.codec == MM_STORE_CODEC_LZ4) {
		int r = LZ4_compress_default((const char *)raw, (char *)packed, (int)raw_len,
					     (int)b->packed_cap);
		n = r > 0 ? (size_t)r : 0;
	}
	if (n == 0 || n >= raw_len)
		return raw;
	*codec = (uint8_t)b->opt.codec;
	*stored_len = n;
	return packed;
}

/*
 * A chunk's stored bytes: its smallest light encoding, compressed; or, for
 * bit-packed values of more than a byte that the compressor could shrink,
 * byte planes when they compress smaller. Only compressing both tells
 * which is smaller, and that doubles the compression cost of the column,
 * so a column's verdict stands for PLANES_RETRY chunks before both are
 * tried again (a column's distribution drifts slowly). Values of a byte or
 * less gain nothing from planes, and packed values the compressor could
 * not shrink are near uniform: neither is tried (planes never won there).
 */
#define PLANES_RETRY 8

static const uint8_t *encode_chunk(struct seg_builder *b, unsigned col, const uint64_t *vals,
				   size_t rows, bool constant, struct enc_chunk *ec, size_t *stored_len,
				   uint8_t *codec)
{
	const uint8_t *stored, *alt;
	struct enc_chunk pc;
	size_t alt_len;
	uint8_t alt_codec;
	bool retry;

	enc_plan(vals, rows, mm_store_column_width(col), constant, ec, &b->enc);
	retry = b->planes_retry[col] == 0;
	if (!retry && b->planes_won[col] && (ec->encoding == ENC_FOR || ec->encoding == ENC_DICT) &&
	    ec->bits > 8) {
		b->planes_retry[col]--;
		enc_encode_planes(vals, rows, b->raw_alt, ec);
		return compress_chunk(b, b->raw_alt, ec->raw_len, b->packed_alt, stored_len, codec);
	}
	enc_write(vals, rows, mm_store_column_width(col), b->raw, ec, &b->enc);
	stored = compress_chunk(b, b->raw, ec->raw_len, b->packed, stored_len, codec);
	if ((ec->encoding != ENC_FOR && ec->encoding != ENC_DICT) || ec->bits <= 8 ||
	    *codec == MM_STORE_CODEC_NONE)
		return stored;
	if (!retry) {
		b->planes_retry[col]--;
		return stored;
	}
	pc = *ec;
	enc_encode_planes(vals, rows, b->raw_alt, &pc);
	alt = compress_chunk(b, b->raw_alt, pc.raw_len, b->packed_alt, &alt_len, &alt_codec);
	b->planes_won[col] = alt_len < *stored_len;
	b->planes_retry[col] = PLANES_RETRY - 1;
	if (!b->planes_won[col])
		return stored;
	*ec = pc;
	*stored_len = alt_len;
	*codec = alt_codec;
	return alt;
}

static void put_entry(uint8_t *p, const struct seg_entry *e)
{
	put_u64(p, e->offset);
	put_u32(p + 8, e->stored_len);
	put_u32(p + 12, e->raw_len);
	put_u64(p + 16, e->min);
	put_u64(p + 24, e->max);
	put_u32(p + 32, e->crc);
	p[36] = e->encoding;
	p[37] = e->codec;
	p[38] = e->bits;
	p[39] = (uint8_t)(e->transform | e->scale << XF_SCALE_SHIFT);
}


/*
 * Prefetches every line of row i of the segment, which lies anywhere in the
 * writer's buffer: half the rows straddle one line more than
 * sizeof(struct mm_flow) / 64 rounded up.
 */
static void prefetch_row(const struct seg_rows *rows, size_t i)
{
	uintptr_t flow = (uintptr_t)&rows->flows[rows->order[i].row];

	for (uintptr_t line = flow & ~(uintptr_t)63; line < flow + sizeof(struct mm_flow); line += 64)
		__builtin_prefetch((const void *)line);
}

/*
 * The block of rows [first, first + n) of the segment, contiguous: the rows
 * themselves when the buffer was in order, else copied into the stage in
 * segment order, each flow prefetched a few rows before its copy.
 */
static const struct mm_flow *gather_block(struct seg_builder *b, const struct seg_rows *rows,
					  size_t first, size_t n)
{
	const struct seg_order *o = rows->order + first;

	if (!rows->order)
		return rows->flows + first;
	for (size_t i = 0; i < n; i++) {
		if (i + GATHER_AHEAD < n)
			prefetch_row(rows, first + i + GATHER_AHEAD);
		b->stage[i] = rows->flows[o[i].row];
	}
	return b->stage;
}

/* The OR of every value XOR ref: zero when all equal ref. An OR, so the loop vectorises. */
static uint64_t differences(const uint64_t *v, size_t n, uint64_t ref)
{
	uint64_t diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= v[i] ^ ref;
	return diff;
}

/*
 * Splits a chunk's rows into columns, a cache-sized block of rows at a
 * time, and tells which columns hold one value (varies[col] == 0): found
 * while each block is in L1, rather than by a pass over the whole column
 * (most columns of most chunks are constant, and the chunk's columns are
 * too large for L2).
 */
static void transpose_chunk(struct seg_builder *b, const struct seg_rows *rows, size_t first,
			    size_t n_rows, uint64_t *varies)
{
	size_t stride = b->opt.rows_per_chunk;

	memset(varies, 0, MM_STORE_N_COLUMNS * sizeof(*varies));
	for (size_t r = 0; r < n_rows; r += TRANSPOSE_ROWS) {
		size_t n = n_rows - r < TRANSPOSE_ROWS ? n_rows - r : TRANSPOSE_ROWS;
		const struct mm_flow *block = gather_block(b, rows, first + r, n);

		for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
			uint64_t *out = b->cols + col * stride + r;

			store_column_gather(block, n, col, out);
			varies[col] |= differences(out, n, b->cols[col * stride]);
		}
	}
}

/*
 * last_ns is stored as the flow's duration: small where last_ns itself is as
 * wide as first_ns. The zone map still describes last_ns, for time skipping.
 */
static void to_durations(uint64_t *vals, const uint64_t *first, size_t rows, uint64_t *min,
			 uint64_t *max, uint64_t *varies)
{
	uint64_t d0 = vals[0] - first[0], diff = 0;

	*min = vals[0];
	*max = vals[0];
	for (size_t i = 0; i < rows; i++) {
		*min = vals[i] < *min ? vals[i] : *min;
		*max = vals[i] > *max ? vals[i] : *max;
		vals[i] -= first[i];
		diff |= vals[i] ^ d0;
	}
	*varies = diff;
}

/* The inverse of an odd number modulo 2^64 (Newton's iteration: 3, 6, 12, … exact bits). */
static uint64_t odd_inverse(uint64_t d)
{
	uint64_t x = d;

	for (int i = 0; i < 5; i++)
		x *= 2 - d * x;
	return x;
}

/*
 * Whether every value is a multiple of 10^e = 2^e · 5^e: its low e bits are
 * zero and v >> e times the inverse of 5^e lands at most at (2^64 − 1) / 5^e
 * (exactly the multiples do). Multiplications only, so it vectorises.
 */
static bool all_multiples(const uint64_t *v, size_t n, unsigned e)
{
	uint64_t five = scale_factor(e) >> e, inv = odd_inverse(five), lim = UINT64_MAX / five;
	uint64_t low = (1ull << e) - 1, bad = 0;

	for (size_t i = 0; i < n; i++)
		bad |= (v[i] & low) | (uint64_t)((v[i] >> e) * inv > lim);
	return bad == 0;
}

/*
 * Divides the values by the largest 10^e (e <= SCALE_MAX) that divides them
 * all and returns e: millisecond clocks in nanosecond fields shed 20 bits.
 * The first value bounds e, so nanosecond data costs one test.
 */
static unsigned scale_down(uint64_t *v, size_t n)
{
	unsigned e = 0;
	uint64_t inv;

	while (e < SCALE_MAX && v[0] % scale_factor(e + 1) == 0)
		e++;
	while (e > 0 && !all_multiples(v, n, e))
		e--;
	if (e == 0)
		return 0;
	inv = odd_inverse(scale_factor(e) >> e);
	for (size_t i = 0; i < n; i++)
		v[i] = (v[i] >> e) * inv; /* exact: the quotient of a multiple */
	return e;
}

static int encode_columns(struct seg_builder *b, const struct seg_rows *seg, uint32_t n_chunks,
			  uint64_t payload_start, uint8_t *dir, uint64_t *min_first, uint64_t *max_last)
{
	size_t n = seg->n;
	uint32_t rpc = b->opt.rows_per_chunk;
	uint64_t last_min, last_max, varies[MM_STORE_N_COLUMNS];
	int rc;

	b->payload_len = 0;
	/* Chunk-major payload order: each chunk's rows are transposed once, while cached. */
	for (uint32_t k = 0; k < n_chunks; k++) {
		size_t first = (size_t)k * rpc, rows = n - first < rpc ? n - first : rpc;

		transpose_chunk(b, seg, first, rows, varies);
		/* Before first_ns may be scaled down in place (exact division keeps it constant or not). */
		to_durations(b->cols + (size_t)MM_COL_LAST_NS * rpc, b->cols + (size_t)MM_COL_FIRST_NS * rpc,
			     rows, &last_min, &last_max, &varies[MM_COL_LAST_NS]);
		for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
			uint64_t *vals = b->cols + (size_t)col * rpc;
			struct enc_chunk ec;
			struct seg_entry e;
			const uint8_t *stored;
			size_t stored_len;

			e.transform = col == MM_COL_LAST_NS ? XF_MINUS_FIRST : XF_NONE;
			/* Only the time columns carry clocks coarser than their unit. */
			e.scale = (uint8_t)(col <= MM_COL_LAST_NS ? scale_down(vals, rows) : 0);
			stored = encode_chunk(b, col, vals, rows, varies[col] == 0, &ec, &stored_len, &e.codec);
			if (e.transform) {
				e.min = last_min;
				e.max = last_max;
			} else {
				e.min = ec.min * scale_factor(e.scale);
				e.max = ec.max * scale_factor(e.scale);
			}
			rc = payload_reserve(b, stored_len);
			if (rc < 0)
				return rc;
			memcpy(b->payload + b->payload_len, stored, stored_len);
			e.offset = payload_start + b->payload_len;
			e.stored_len = (uint32_t)stored_len;
			e.raw_len = (uint32_t)ec.raw_len;
			e.crc = store_crc32c(0, stored, stored_len);
			e.encoding = ec.encoding;
			e.bits = ec.bits;
			put_entry(dir + ((size_t)col * n_chunks + k) * SEG_ENTRY_LEN, &e);
			b->payload_len += stored_len;
			if (col == MM_COL_FIRST_NS && (k == 0 || e.min < *min_first))
				*min_first = e.min;
			if (col == MM_COL_LAST_NS && (k == 0 || e.max > *max_last))
				*max_last = e.max;
		}
	}
	return 0;
}

static int write_file(const char *path, const uint8_t *head, size_t head_len,
		      const uint8_t *payload, size_t payload_len, int do_fsync)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int rc;

	if (fd < 0)
		return mm_fail(MM_EIO, "store: %s: %s", path, strerror(errno));
	rc = store_write_all(fd, head, head_len, path);
	if (rc == 0)
		rc = store_write_all(fd, payload, payload_len, path);
	if (rc == 0 && do_fsync && fsync(fd) < 0)
		rc = mm_fail(MM_EIO, "store: %s: fsync: %s", path, strerror(errno));
	if (close(fd) < 0 && rc == 0)
		rc = mm_fail(MM_EIO, "store: %s: close: %s", path, strerror(errno));
	return rc;
}

int seg_builder_write(struct seg_builder *b, uint64_t id, const struct seg_rows *rows,
		      const char *path, int do_fsync, struct seg_written *out)
{
	size_t n = rows->n;
	uint32_t rpc = b->opt.rows_per_chunk;
	uint32_t n_chunks = (uint32_t)((n + rpc - 1) / rpc);
	size_t desc_len = (size_t)MM_STORE_N_COLUMNS * SEG_COLDESC_LEN;
	size_t head_len = SEG_HEADER_LEN + desc_len + (size_t)MM_STORE_N_COLUMNS * n_chunks * SEG_ENTRY_LEN;
	uint64_t min_first = 0, max_last = 0;
	uint8_t *h;
	int rc;

	MM_BUG(n == 0);
	if (head_len > b->head_cap) {
		uint8_t *p = realloc(b->head, head_len);

		if (!p)
			return mm_fail(MM_ENOMEM, "store: segment directory of %zu bytes", head_len);
		b->head = p;
		b->head_cap = head_len;
	}
	h = b->head;
	memset(h, 0, head_len);
	rc = encode_columns(b, rows, n_chunks, head_len, h + SEG_HEADER_LEN + desc_len, &min_first,
			    &max_last);
	if (rc < 0)
		return rc;
	for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
		uint8_t *d = h + SEG_HEADER_LEN + (size_t)col * SEG_COLDESC_LEN;

		memcpy(d, mm_store_column_name(col), strlen(mm_store_column_name(col)));
		d[SEG_COLNAME_LEN] = (uint8_t)mm_store_column_width(col);
	}
	memcpy(h, SEG_MAGIC, 8);
	put_u32(h + 8, SEG_VERSION);
	put_u32(h + 12, SEG_HEADER_LEN);
	put_u64(h + 16, id);
	put_u64(h + 24, n);
	put_u32(h + 32, MM_STORE_N_COLUMNS);
	put_u32(h + 36, rpc);
	put_u64(h + 40, min_first);
	put_u64(h + 48, max_last);
	put_u32(h + 56, store_crc32c(0, h + SEG_HEADER_LEN, head_len - SEG_HEADER_LEN));
	out->header_crc = store_crc32c(0, h, 60);
	put_u32(h + 60, out->header_crc);
	out->file_bytes = head_len + b->payload_len;
	out->min_first_ns = min_first;
	out->max_last_ns = max_last;
	return write_file(path, h, head_len, b->payload, b->payload_len, do_fsync);
}
