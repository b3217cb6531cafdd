/*
 * Reading segment files: map, check the header, column schema and every
 * directory entry against the file's bounds once at open, then decode
 * column chunks on demand (checksum, decompress, decode, narrow) into the
 * caller's arrays. Nothing read from the file is trusted before checking.
 */
#include "store/store_int.h"

#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

int mm_store_scratch_new(struct mm_store_scratch **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : mm_fail(MM_ENOMEM, "store: decode scratch");
}

void mm_store_scratch_free(struct mm_store_scratch *s)
{
	if (!s)
		return;
	free(s->raw);
	free(s->vals);
	free(s->first);
	free(s->dict);
	free(s);
}

int store_scratch_reserve(struct mm_store_scratch *s, size_t n)
{
	size_t raw_cap = enc_max_raw_len(n) + 8;

	if (!s->dict && !(s->dict = malloc(DICT_MAX * sizeof(uint64_t))))
		return mm_fail(MM_ENOMEM, "store: decode dictionary");
	if (n > s->vals_cap) {
		uint64_t *v = realloc(s->vals, n * sizeof(uint64_t));
		uint64_t *f = v ? realloc(s->first, n * sizeof(uint64_t)) : NULL;

		if (v)
			s->vals = v;
		if (f)
			s->first = f;
		if (!v || !f)
			return mm_fail(MM_ENOMEM, "store: decode buffer of %zu rows", n);
		s->vals_cap = n;
	}
	if (raw_cap > s->raw_cap) {
		uint8_t *r = realloc(s->raw, raw_cap);

		if (!r)
			return mm_fail(MM_ENOMEM, "store: decode buffer of %zu bytes", raw_cap);
		s->raw = r;
		s->raw_cap = raw_cap;
	}
	return 0;
}

static void get_entry(const uint8_t *p, struct seg_entry *e)
{
	e->offset = get_u64(p);
	e->stored_len = get_u32(p + 8);
	e->raw_len = get_u32(p + 12);
	e->min = get_u64(p + 16);
	e->max = get_u64(p + 24);
	e->crc = get_u32(p + 32);
	e->encoding = p[36];
	e->codec = p[37];
	e->bits = p[38];
	e->transform = p[39] & XF_CODE_MASK;
	e->scale = p[39] >> XF_SCALE_SHIFT;
}

static int check_header(struct mm_segment *seg, size_t *head_len)
{
	const uint8_t *h = seg->data;
	uint32_t version, n_columns;
	uint64_t n_chunks, dir_len;

	if (seg->len < SEG_HEADER_LEN || memcmp(h, SEG_MAGIC, 8) != 0)
		return mm_fail(MM_EFORMAT, "store: %s: not a mamori segment (bad magic or %zu bytes)",
			       seg->name, seg->len);
	version = get_u32(h + 8);
	if (version < SEG_VERSION_MIN || version > SEG_VERSION)
		return mm_fail(MM_EUNSUP,
			       "store: %s: segment format version %" PRIu32
			       " not supported (this build reads versions %u to %u)",
			       seg->name, version, SEG_VERSION_MIN, SEG_VERSION);
	seg->version = version;
	seg->header_crc = get_u32(h + 60);
	if (store_crc32c(0, h, 60) != seg->header_crc)
		return mm_fail(MM_EFORMAT, "store: %s: header checksum mismatch", seg->name);
	if (get_u32(h + 12) != SEG_HEADER_LEN)
		return mm_fail(MM_EFORMAT, "store: %s: header length %" PRIu32, seg->name,
			       get_u32(h + 12));
	seg->id = get_u64(h + 16);
	seg->n_rows = get_u64(h + 24);
	n_columns = get_u32(h + 32);
	seg->rows_per_chunk = get_u32(h + 36);
	seg->min_first_ns = get_u64(h + 40);
	seg->max_last_ns = get_u64(h + 48);
	if (n_columns != MM_STORE_N_COLUMNS)
		return mm_fail(MM_EFORMAT, "store: %s: %" PRIu32 " columns, expected %u", seg->name,
			       n_columns, MM_STORE_N_COLUMNS);
	if (seg->rows_per_chunk == 0 || seg->rows_per_chunk > MM_STORE_MAX_CHUNK_ROWS ||
	    seg->n_rows == 0)
		return mm_fail(MM_EFORMAT, "store: %s: %" PRIu64 " rows in chunks of %" PRIu32,
			       seg->name, seg->n_rows, seg->rows_per_chunk);
	n_chunks = (seg->n_rows - 1) / seg->rows_per_chunk + 1;
	/* Every chunk of every column has a directory entry inside the file. */
	dir_len = (uint64_t)MM_STORE_N_COLUMNS * SEG_ENTRY_LEN;
	if (n_chunks > (seg->len - SEG_HEADER_LEN) / dir_len)
		return mm_fail(MM_ETRUNC, "store: %s: directory of %" PRIu64 " chunks exceeds the file",
			       seg->name, n_chunks);
	seg->n_chunks = (uint32_t)n_chunks;
	*head_len = SEG_HEADER_LEN + (size_t)MM_STORE_N_COLUMNS * SEG_COLDESC_LEN +
		    (size_t)(n_chunks * dir_len);
	if (*head_len > seg->len)
		return mm_fail(MM_ETRUNC, "store: %s: directory exceeds the file", seg->name);
	if (store_crc32c(0, h + SEG_HEADER_LEN, *head_len - SEG_HEADER_LEN) != get_u32(h + 56))
		return mm_fail(MM_EFORMAT, "store: %s: directory checksum mismatch", seg->name);
	return 0;
}

static int check_columns(const struct mm_segment *seg)
{
	for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
		const uint8_t *d = seg->data + SEG_HEADER_LEN + (size_t)col * SEG_COLDESC_LEN;
		const char *want = mm_store_column_name(col);
		char name[SEG_COLNAME_LEN + 1];

		memcpy(name, d, SEG_COLNAME_LEN);
		name[SEG_COLNAME_LEN] = 0;
		if (strcmp(name, want) != 0 || d[SEG_COLNAME_LEN] != mm_store_column_width(col))
			return mm_fail(MM_EFORMAT, "store: %s: column %u is '%s' (%u bytes), expected '%s'",
				       seg->name, col, name, d[SEG_COLNAME_LEN], want);
	}
	return 0;
}

static int check_entries(struct mm_segment *seg, size_t head_len)
{
	const uint8_t *dir = seg->data + SEG_HEADER_LEN + (size_t)MM_STORE_N_COLUMNS * SEG_COLDESC_LEN;
	size_t n = (size_t)MM_STORE_N_COLUMNS * seg->n_chunks;

	seg->entries = calloc(n, sizeof(*seg->entries));
	if (!seg->entries)
		return mm_fail(MM_ENOMEM, "store: %s: directory of %zu entries", seg->name, n);
	for (size_t i = 0; i < n; i++) {
		struct seg_entry *e = &seg->entries[i];
		unsigned col = (unsigned)(i / seg->n_chunks);
		uint32_t k = (uint32_t)(i % seg->n_chunks);
		const char *bad = NULL;

		get_entry(dir + i * SEG_ENTRY_LEN, e);
		if (e->offset < head_len || e->offset > seg->len || e->stored_len > seg->len - e->offset)
			bad = "payload outside the file";
		else if (e->raw_len > enc_max_raw_len(mm_segment_chunk_rows(seg, k)))
			bad = "decoded length exceeds its bound";
		else if (e->encoding >= ENC__COUNT || e->codec > MM_STORE_CODEC_ZSTD ||
			 (e->encoding == ENC_PLANES && seg->version < 3))
			bad = "unknown encoding or codec";
		else if (e->codec == MM_STORE_CODEC_NONE && e->stored_len != e->raw_len)
			bad = "stored and decoded lengths differ without compression";
		else if (e->min > e->max)
			bad = "zone map min above max";
		else if (e->transform >= XF__COUNT || (e->transform && col != MM_COL_LAST_NS))
			bad = "unknown transform or one this column cannot have";
		else if (e->scale > (seg->version >= 2 ? SCALE_MAX : 0))
			bad = "decimal scale out of range";
		if (bad)
			return mm_fail(MM_EFORMAT, "store: %s: column '%s' chunk %" PRIu32 ": %s", seg->name,
				       mm_store_column_name(col), k, bad);
	}
	return 0;
}

int mm_segment_open_mem(struct mm_segment **out, const uint8_t *data, size_t len, const char *name)
{
	struct mm_segment *seg = calloc(1, sizeof(*seg));
	size_t head_len = 0;
	int rc;

	*out = NULL;
	if (!seg)
		return mm_fail(MM_ENOMEM, "store: %s", name);
	seg->data = data;
	seg->len = len;
	snprintf(seg->name, sizeof(seg->name), "%s", name);
	rc = check_header(seg, &head_len);
	if (rc == 0)
		rc = check_columns(seg);
	if (rc == 0)
		rc = check_entries(seg, head_len);
	if (rc < 0) {
		mm_segment_free(seg);
		return rc;
	}
	*out = seg;
	return 0;
}

int mm_segment_open_file(struct mm_segment **out, const char *path)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	struct stat st;
	void *map = NULL;
	int fd, rc;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "store: %s: %s", base,
			       strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = mm_fail(MM_EIO, "store: %s: %s", base, strerror(errno));
		goto out;
	}
	if (st.st_size < (off_t)SEG_HEADER_LEN) {
		rc = mm_fail(MM_ETRUNC, "store: %s: %lld bytes is shorter than a segment header", base,
			     (long long)st.st_size);
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		map = NULL;
		rc = mm_fail(MM_EIO, "store: %s: mmap: %s", base, strerror(errno));
		goto out;
	}
	rc = mm_segment_open_mem(out, map, (size_t)st.st_size, base);
	if (rc == 0) {
		(*out)->map = map;
		(*out)->map_len = (size_t)st.st_size;
		map = NULL;
	}
out:
	if (map)
		munmap(map, (size_t)st.st_size);
	close(fd);
	return rc;
}

void mm_segment_free(struct mm_segment *seg)
{
	if (!seg)
		return;
	if (seg->map)
		munmap(seg->map, seg->map_len);
	free(seg->entries);
	free(seg);
}

uint64_t mm_segment_rows(const struct mm_segment *seg)
{
	return seg->n_rows;
}

uint32_t mm_segment_chunks(const struct mm_segment *seg)
{
	return seg->n_chunks;
}

uint32_t mm_segment_chunk_rows(const struct mm_segment *seg, uint32_t k)
{
	uint64_t first = (uint64_t)k * seg->rows_per_chunk;

	if (k >= seg->n_chunks)
		return 0;
	return seg->n_rows - first < seg->rows_per_chunk ? (uint32_t)(seg->n_rows - first)
							 : seg->rows_per_chunk;
}

void mm_segment_zone(const struct mm_segment *seg, unsigned col, uint32_t k, uint64_t *min,
		     uint64_t *max)
{
	const struct seg_entry *e = &seg->entries[(size_t)col * seg->n_chunks + k];

	MM_BUG(col >= MM_STORE_N_COLUMNS || k >= seg->n_chunks);
	*min = e->min;
	*max = e->max;
}

uint64_t seg_payload_end(const struct mm_segment *seg)
{
	uint64_t end = 0;

	for (size_t i = 0; i < (size_t)MM_STORE_N_COLUMNS * seg->n_chunks; i++) {
		uint64_t e = seg->entries[i].offset + seg->entries[i].stored_len;

		end = e > end ? e : end;
	}
	return end;
}

static int decompress(const struct seg_entry *e, const uint8_t *src, struct mm_store_scratch *s,
		      const uint8_t **raw)
{
	size_t n;

	if (e->codec == MM_STORE_CODEC_NONE) {
		*raw = src;
		return 0;
	}
	if (e->codec == MM_STORE_CODEC_ZSTD) {
		n = ZSTD_decompress(s->raw, e->raw_len, src, e->stored_len);
		if (ZSTD_isError(n))
			return mm_fail(MM_EFORMAT, "zstd: %s", ZSTD_getErrorName(n));
	} else {
		int r = LZ4_decompress_safe((const char *)src, (char *)s->raw, (int)e->stored_len,
					    (int)e->raw_len);

		if (r < 0)
			return mm_fail(MM_EFORMAT, "lz4: malformed block");
		n = (size_t)r;
	}
	if (n != e->raw_len)
		return mm_fail(MM_EFORMAT, "decompressed to %zu bytes, expected %" PRIu32, n,
			       e->raw_len);
	*raw = s->raw;
	return 0;
}

static int check_zone_map(const struct seg_entry *e, const uint64_t *vals, size_t n)
{
	uint64_t min = vals[0], max = vals[0];

	for (size_t i = 1; i < n; i++) {
		min = vals[i] < min ? vals[i] : min;
		max = vals[i] > max ? vals[i] : max;
	}
	if (min != e->min || max != e->max)
		return mm_fail(MM_EFORMAT,
			       "zone map [%" PRIu64 ", %" PRIu64 "] but values span [%" PRIu64
			       ", %" PRIu64 "]",
			       e->min, e->max, min, max);
	return 0;
}

/* Checksum, decompress and decode one chunk into vals, before any transform. */
static int decode_values(const struct mm_segment *seg, const struct seg_entry *e, size_t rows,
			 unsigned col, struct mm_store_scratch *s, uint64_t *vals)
{
	const uint8_t *src = seg->data + e->offset, *raw = NULL;
	int rc;

	if (store_crc32c(0, src, e->stored_len) != e->crc)
		return mm_fail(MM_EFORMAT, "checksum mismatch");
	rc = decompress(e, src, s, &raw);
	if (rc == 0)
		rc = enc_decode(e, raw, e->raw_len, rows, mm_store_column_width(col), vals, s->dict);
	if (rc == 0 && e->scale) {
		uint64_t f = scale_factor(e->scale);

		for (size_t i = 0; i < rows; i++)
			vals[i] *= f;
	}
	return rc;
}

int seg_decode_checked(const struct mm_segment *seg, unsigned col, uint32_t k,
		       struct mm_store_scratch *s, void *out, int check_zone)
{
	const struct seg_entry *e;
	size_t rows;
	char detail[256];
	int rc;

	MM_BUG(col >= MM_STORE_N_COLUMNS || k >= seg->n_chunks);
	e = &seg->entries[(size_t)col * seg->n_chunks + k];
	rows = mm_segment_chunk_rows(seg, k);
	rc = store_scratch_reserve(s, rows);
	if (rc < 0)
		return rc;
	rc = decode_values(seg, e, rows, col, s, s->vals);
	if (rc == 0 && e->transform == XF_MINUS_FIRST) {
		rc = decode_values(seg, &seg->entries[(size_t)MM_COL_FIRST_NS * seg->n_chunks + k],
				   rows, MM_COL_FIRST_NS, s, s->first);
		for (size_t i = 0; rc == 0 && i < rows; i++)
			s->vals[i] += s->first[i];
	}
	if (rc == 0 && check_zone)
		rc = check_zone_map(e, s->vals, rows);
	if (rc == 0)
		store_column_narrow(s->vals, rows, mm_store_column_width(col), out);
	if (rc < 0) {
		snprintf(detail, sizeof(detail), "%s", mm_last_error());
		return mm_fail(rc, "store: %s: column '%s' chunk %" PRIu32 ": %s", seg->name,
			       mm_store_column_name(col), k, detail);
	}
	return 0;
}

int mm_segment_decode(const struct mm_segment *seg, unsigned col, uint32_t k,
		      struct mm_store_scratch *s, void *out)
{
	return seg_decode_checked(seg, col, k, s, out, 0);
}

int mm_segment_read_flows(const struct mm_segment *seg, uint32_t k, struct mm_store_scratch *s,
			  struct mm_flow *out)
{
	size_t rows = mm_segment_chunk_rows(seg, k);
	uint64_t *col_vals = malloc(rows * sizeof(uint64_t));
	int rc = 0;

	if (!col_vals)
		return mm_fail(MM_ENOMEM, "store: %s: chunk of %zu rows", seg->name, rows);
	memset(out, 0, rows * sizeof(*out));
	for (unsigned col = 0; col < MM_STORE_N_COLUMNS && rc == 0; col++) {
		rc = mm_segment_decode(seg, col, k, s, col_vals);
		if (rc == 0)
			store_column_scatter(out, rows, col, col_vals);
	}
	free(col_vals);
	return rc;
}
