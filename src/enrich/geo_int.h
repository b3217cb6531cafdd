/*
 * Internals of the enrich module: the compiled table's file layout (shared
 * by the writer in geo_build.c and the reader in geo_table.c) and the
 * builder's prefix store that the source loaders fill.
 *
 * File layout, little-endian, every section 64-byte aligned:
 *   header     struct geo_header (checksum: BLAKE2b-256 of the whole file
 *              with the checksum field zeroed)
 *   names      n_sources x GEO_NAME_LEN bytes, each NUL-terminated
 *   leaves     n_leaves x struct geo_leaf; leaf 0 is "nothing known"
 *   v4_l1      65536 x u32, one per /16: a leaf, or GEO_CHUNK|index of a
 *              v4_l2 chunk
 *   v4_l2      n_v4_l2 x 256 x u32, one per /24: a leaf or GEO_CHUNK|index
 *              of a v4_l3 chunk
 *   v4_l3      n_v4_l3 x 256 x u32, one leaf per address
 *   v6_index   65537 x u32: v6_index[t] is the last range starting at or
 *              below t<<112 (the top 16 bits), bounding the search
 *   v6_sub     65536 x u32: 0, or 1 + the v6_l2 block that narrows top-16
 *              bucket t further, where it holds many ranges
 *   v6_l2      n_v6_l2 x 4097 x u32: the same bound for each of the next 12
 *              bits (entry 4096 is v6_index[t+1]), so a search in the
 *              densest regions (APNIC's 2400::/12) takes a few steps, not 15
 *   v6_start   n_v6 x struct geo_u128, strictly increasing, first is ::
 *   v6_leaf    n_v6 x u32
 * IPv4 (v4-mapped) addresses use the v4 arrays only; the v6 ranges never
 * answer for them.
 */
#ifndef MAMORI_ENRICH_GEO_INT_H
#define MAMORI_ENRICH_GEO_INT_H

#include "mamori/enrich.h"

#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the geo table file is little-endian and mapped as is"
#endif

#define GEO_MAGIC "MMGEOTBL"
#define GEO_VERSION 1u
#define GEO_NAME_LEN 128u
#define GEO_ALIGN 64u
#define GEO_CHUNK 0x80000000u
#define GEO_NO_SOURCE 0xffffu
#define GEO_MAX_SOURCES 0xfffeu
#define GEO_V4_L1 65536u
#define GEO_V6_INDEX 65537u
#define GEO_V6_SUB_BITS 12u
#define GEO_V6_L2 ((1u << GEO_V6_SUB_BITS) + 1)
#define GEO_V6_SPLIT 64u /* a top-16 bucket with more ranges gets a v6_l2 block */

enum geo_section {
	GEO_SEC_NAMES,
	GEO_SEC_LEAVES,
	GEO_SEC_V4_L1,
	GEO_SEC_V4_L2,
	GEO_SEC_V4_L3,
	GEO_SEC_V6_INDEX,
	GEO_SEC_V6_SUB,
	GEO_SEC_V6_L2,
	GEO_SEC_V6_START,
	GEO_SEC_V6_LEAF,
	GEO_N_SECTIONS
};

struct geo_section_ref {
	uint64_t off, len; /* bytes from the start of the file */
};

struct geo_header {
	char magic[8];
	uint32_t version;
	uint32_t header_len;
	uint64_t file_len;
	int64_t built_unix;
	uint32_t n_sources;
	uint32_t n_leaves;
	uint32_t n_v4_l2;
	uint32_t n_v4_l3;
	uint32_t n_v6_l2;
	uint32_t pad;     /* zero */
	uint64_t n_v6;
	struct geo_section_ref sec[GEO_N_SECTIONS];
	uint8_t checksum[32];
};

struct geo_leaf {
	char cc[2];       /* zero: unknown */
	uint16_t cc_src;  /* GEO_NO_SOURCE with an unknown country */
	uint32_t asn;     /* 0: unknown */
	uint16_t asn_src; /* GEO_NO_SOURCE with an unknown ASN */
	uint16_t pad;     /* zero */
};

struct geo_u128 {
	uint64_t hi, lo;
};

/* Checksum of a whole table image whose checksum field is taken as zero. */
void geo_checksum(const uint8_t *image, uint64_t len, uint8_t out[32]);

/* ---- builder internals, for the loaders ---- */

/* One prefix as added: v4 keys use the low 32 bits of lo. */
struct geo_pfx {
	struct geo_u128 start;
	uint32_t seq;  /* add order: later wins at equal length */
	uint32_t asn;  /* 0: this prefix says nothing about the ASN */
	uint16_t src;
	char cc[2];    /* zero: says nothing about the country */
	uint8_t len;   /* family terms */
	uint8_t v6;
};

/* The loader's state for one file, shared by the text and mmdb loaders. */
struct geo_load {
	struct mm_geo_builder *b;
	const char *path;
	uint16_t src;
	uint64_t n_warned;
	size_t n_pfx_begin; /* prefixes dropped again if the file is refused */
	struct mm_geo_load_report rep;
};

/*
 * Registers a source ("rir:" + basename of path) and starts a load;
 * 0 or MM_ELIMIT/MM_ENOMEM.
 */
int geo_load_begin(struct geo_load *l, struct mm_geo_builder *b, const char *kind, const char *path);

/*
 * Counts a bad line and passes "path:line: message" to the warn callback
 * ("path: message" when line is 0, for records that are not lines).
 */
void geo_load_bad(struct geo_load *l, uint64_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Ends a load: reports what the callback did not show, copies the report
 * out, and returns status, or MM_EFORMAT when status is 0 but the file gave
 * no record.
 */
int geo_load_end(struct geo_load *l, int status, struct mm_geo_load_report *out);

/* Adds a prefix (addr may be v4-mapped); cc may be NULL, asn 0. 0 or MM_ELIMIT/MM_ENOMEM. */
int geo_add_prefix(struct geo_load *l, const struct mm_prefix *p, const char cc[2], uint32_t asn);

/*
 * Adds the CIDRs that cover first..last exactly (same family, first <= last).
 * 0 or MM_ELIMIT/MM_ENOMEM.
 */
int geo_add_range(struct geo_load *l, const struct mm_addr *first, const struct mm_addr *last,
		  const char cc[2], uint32_t asn);

/* "JP" from "JP"/"jp": true and cc set; false for anything else. */
bool geo_parse_cc(const char *text, size_t len, char cc[2]);

#endif
