/*
 * Store internals shared by its files: the on-disk layout of segments and
 * the catalog (docs/FORMAT.md is the normative text; the constants here
 * must match it), the column schema, chunk encodings and the checksum.
 */
#ifndef MAMORI_STORE_INT_H
#define MAMORI_STORE_INT_H

#include "mamori/store.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SEG_MAGIC "MMSEGMT\n"
#define SEG_VERSION 3u     /* written; versions 1 (no scale) and 2 (no byte planes) still read */
#define SEG_VERSION_MIN 1u
#define SEG_HEADER_LEN 64u
#define SEG_COLDESC_LEN 24u
#define SEG_COLNAME_LEN 16u
#define SEG_ENTRY_LEN 40u

#define CAT_MAGIC "MMCATLG\n"
#define CAT_VERSION 1u
#define CAT_HEADER_LEN 24u
#define CAT_ENTRY_LEN 48u
#define CAT_NAME "catalog"
#define LOCK_NAME "lock"
#define TMP_SUFFIX ".tmp"

/* Longest "dir/seg-<20 digits>.mms.tmp" we build. */
#define STORE_PATH_MAX 4096

/* Chunk encodings (FORMAT.md §4); codes are on disk. */
enum seg_encoding {
	ENC_CONST = 0, /* base: every value */
	ENC_FOR = 1,   /* base, then (v - base) bit-packed */
	ENC_DELTA = 2, /* first value, min delta, then (delta - min delta) bit-packed */
	ENC_DICT = 3,  /* count, index bits, base, distinct values (v - base, packed), indexes */
	ENC_PLAIN = 4, /* values at the column width, little-endian */
	ENC_PLANES = 5, /* base, then byte j of every (v - base), for j < bits / 8 */
	ENC__COUNT
};

/* What is encoded, per chunk (FORMAT.md §4.2): the values, or a difference that is smaller. */
enum seg_transform {
	XF_NONE = 0,
	XF_MINUS_FIRST = 1, /* last_ns only: last_ns - first_ns of the same row (the duration) */
	XF__COUNT
};

/*
 * Directory byte 39 (FORMAT.md §4.2): the transform in the low 4 bits and,
 * from version 2, a decimal scale e in the high 4 bits: the encoded values
 * are the values divided by 10^e. Timestamps from exporters with
 * millisecond clocks then cost a few bits a row instead of twenty.
 */
#define XF_CODE_MASK 0x0fu
#define XF_SCALE_SHIFT 4u
#define SCALE_MAX 9u

static inline uint64_t scale_factor(unsigned e)
{
	uint64_t f = 1;

	while (e--)
		f *= 10;
	return f;
}

/* Widths above this are stored plain: one unaligned 64-bit load must hold a packed value. */
#define PACK_MAX_BITS 56u
/* A dictionary this large stops paying for itself; also caps the encoder's table. */
#define DICT_MAX 4096u
#define BASE_LEN 8u
#define DICT_HEADER_LEN 16u
#define DELTA_HEADER_LEN 16u

/* Largest encoded payload a chunk of n rows can have (the dict bound dominates). */
static inline size_t enc_max_raw_len(size_t n)
{
	return n * 8 + DICT_MAX * 8 + 64;
}

/* One column chunk's directory entry, decoded. */
struct seg_entry {
	uint64_t offset;
	uint32_t stored_len, raw_len;
	uint64_t min, max;
	uint32_t crc;
	uint8_t encoding, codec, bits, transform;
	uint8_t scale;      /* decimal exponent: values = decoded × 10^scale (version 2) */
};

struct mm_segment {
	const uint8_t *data;
	size_t len;
	void *map;          /* mmap'd region to unmap, or NULL when borrowed */
	size_t map_len;
	char name[64];      /* file name for messages */
	uint32_t version;
	uint64_t id;
	uint64_t n_rows;
	uint32_t rows_per_chunk, n_chunks;
	uint64_t min_first_ns, max_last_ns;
	uint32_t header_crc;
	struct seg_entry *entries; /* column-major: entries[col * n_chunks + k] */
};

struct mm_store_scratch {
	uint8_t *raw;       /* decompressed payload */
	size_t raw_cap;
	uint64_t *vals;     /* values widened to 64 bits */
	uint64_t *first;    /* first_ns of the chunk, for last_ns stored as durations */
	uint64_t *dict;
	size_t vals_cap;
};

/* Grows the scratch for chunks of n rows; 0 or MM_ENOMEM. */
int store_scratch_reserve(struct mm_store_scratch *s, size_t n);

/* --- checksum (crc32c.c) --- */
uint32_t store_crc32c(uint32_t crc, const void *data, size_t len);

/* --- little-endian fields --- */
static inline void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* --- columns (columns.c) --- */

/* Transposes rows flows[0..n) of column col into 64-bit values. */
void store_column_gather(const struct mm_flow *flows, size_t n, unsigned col, uint64_t *out);
/* Narrows 64-bit values into an array of the column's width. */
void store_column_narrow(const uint64_t *vals, size_t n, unsigned width, void *out);
/* Writes column col of flows[0..n) from a decoded array of the column's width. */
void store_column_scatter(struct mm_flow *flows, size_t n, unsigned col, const void *vals);

/* --- chunk encodings (encode.c) --- */

/* Encoder work space, reused across chunks (about 100 KiB plus 8 bytes a row). */
struct enc_scratch {
	uint64_t keys[2 * DICT_MAX];
	uint32_t slot[2 * DICT_MAX]; /* dictionary index + 1; 0 = empty */
	uint64_t values[DICT_MAX];
	uint64_t *tmp;               /* per row: dictionary index or delta */
	size_t row_cap;
};

struct enc_chunk {
	uint8_t encoding, bits;
	uint64_t min, max;
	size_t raw_len;     /* bytes written to the output */
	int64_t dmin;       /* delta: the smallest difference between neighbours */
	size_t n_dict;      /* dict: distinct values, kept in the scratch */
};

/*
 * Chooses the smallest encoding for vals[0..n) (n >= 1) of a column of the
 * given width: res gets it, its range and its length; a dictionary is left
 * in es for enc_write, which must follow with the same values and es.
 * constant: whether every value equals vals[0] (the caller learns it while
 * the values are cached; finding it here would cost a pass over them).
 */
void enc_plan(const uint64_t *vals, size_t n, unsigned width, bool constant, struct enc_chunk *res,
	      struct enc_scratch *es);

/* Writes the encoding enc_plan chose into out (room for enc_max_raw_len(n) bytes). */
void enc_write(const uint64_t *vals, size_t n, unsigned width, uint8_t *out, const struct enc_chunk *res,
	       struct enc_scratch *es);

/*
 * Encodes vals[0..n), whose range res (from enc_plan) gives, as byte
 * planes into out (room for enc_max_raw_len(n) bytes): longer than packed
 * bits, but a compressor's entropy coder sees each byte of the values
 * apart, which wins on skewed columns (counters, ports).
 */
void enc_encode_planes(const uint64_t *vals, size_t n, uint8_t *out, struct enc_chunk *res);

/*
 * Decodes a payload of raw_len bytes into vals[0..n). dict: room for
 * DICT_MAX values. MM_EFORMAT (message says what) on any inconsistency.
 */
int enc_decode(const struct seg_entry *e, const uint8_t *raw, size_t raw_len, size_t n,
	       unsigned width, uint64_t *vals, uint64_t *dict);

/* --- segment files (segment_write.c, segment_read.c) --- */

struct seg_build_options {
	uint32_t rows_per_chunk;
	enum mm_store_codec codec;
	int zstd_level;
};

/* Reusable buffers for building segments (owned by the writer). */
struct seg_builder;
int seg_builder_new(struct seg_builder **out, const struct seg_build_options *opt);
void seg_builder_free(struct seg_builder *b);

/* A row of the writer's buffer in time order: the sort key and where the row is. */
struct seg_order {
	uint64_t first_ns;
	uint32_t row;
};

/* The rows of one segment: flows[order[i].row] for i < n, or flows[0..n) when order is NULL. */
struct seg_rows {
	const struct mm_flow *flows;
	const struct seg_order *order;
	size_t n; /* >= 1 */
};

/* What the catalog records of a segment written. */
struct seg_written {
	uint64_t file_bytes;
	uint32_t header_crc;
	uint64_t min_first_ns, max_last_ns;
};

/*
 * Encodes the rows as segment id and writes the file to path (the
 * temporary name); fsyncs if asked.
 */
int seg_builder_write(struct seg_builder *b, uint64_t id, const struct seg_rows *rows,
		      const char *path, int do_fsync, struct seg_written *out);

/* Decodes a column chunk checking its checksum and, when check_zone, its zone map. */
int seg_decode_checked(const struct mm_segment *seg, unsigned col, uint32_t k,
		       struct mm_store_scratch *s, void *out, int check_zone);

/* Offset just past the last chunk payload (payloads are contiguous). */
uint64_t seg_payload_end(const struct mm_segment *seg);

/* "seg-000123.mms" */
void seg_file_name(uint64_t id, char *buf, size_t cap);

/* --- catalog (catalog.c) --- */

struct cat_entry {
	uint64_t id, n_rows, min_first_ns, max_last_ns, file_bytes;
	uint32_t header_crc;
};

struct catalog {
	uint64_t next_id;
	struct cat_entry *entries;
	size_t n, cap;
};

/* Reads dir/catalog; MM_ENOENT if absent. */
int catalog_load(struct catalog *cat, const char *dir);
/* Replaces dir/catalog atomically (temporary file, fsync, rename, fsync dir). */
int catalog_save(const struct catalog *cat, const char *dir, int do_fsync);
int catalog_append(struct catalog *cat, const struct cat_entry *e);
void catalog_release(struct catalog *cat);

/* Writes all len bytes (retrying short writes); 0 or MM_EIO naming path. */
int store_write_all(int fd, const void *data, size_t len, const char *path);

/* fsyncs a directory so that a rename in it is durable. */
int store_fsync_dir(const char *dir);

/* Takes the store's exclusive lock (fd returned in *fd); MM_EAGAIN if held. */
int store_lock(const char *dir, int *fd);

/* Removes the catalog entries older than cutoff and then their files. */
int store_expire_locked(const char *dir, uint64_t cutoff_ns, int do_fsync,
			struct mm_store_expired *out);

#endif
