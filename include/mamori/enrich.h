/*
 * Country and autonomous system by address. Sources (RIR delegated-extended
 * statistics, per-country CIDR lists, MaxMind DB files, iptoasn range
 * tables) are compiled offline by a builder into one table file; the
 * pipeline maps that file and answers lookups from it without allocating or
 * locking, so one table serves every thread. See docs/enrich.md.
 *
 * Precedence, per answer field (country and ASN are resolved separately):
 * the most specific prefix that gives the field wins; between prefixes of
 * equal length, the source added later wins (the later line, within one
 * file). Ranges (RIR IPv4 counts, iptoasn rows) are split into the CIDRs
 * that cover them exactly, and each piece has its own specificity.
 */
#ifndef MAMORI_ENRICH_H
#define MAMORI_ENRICH_H

#include "mamori/addr.h"
#include "mamori/flow.h"

#include <stddef.h>
#include <stdint.h>

/* An opened table: read-only, safe to share between threads. */
struct mm_geo;

struct mm_geo_answer {
	char country[2];            /* ISO 3166 alpha-2; both bytes zero if unknown */
	uint32_t asn;               /* 0 if unknown */
	const char *country_source; /* "rir:delegated-apnic-extended-20160131.txt"; NULL if unknown */
	const char *asn_source;     /* "asn:ip2asn-v4.tsv", "mmdb:GeoLite2-ASN.mmdb"; NULL if unknown */
};

/*
 * The default table: "<data>/geo/geo.table" under mm_store_default_dir().
 * *out is allocated (caller frees); 0 or MM_ENOMEM.
 */
int mm_geo_default_path(char **out);

/*
 * Maps a compiled table. The whole file is checked once here (header,
 * version, section bounds, BLAKE2b checksum, every index in range), so a
 * truncated, corrupt or hostile file is refused with MM_EFORMAT/MM_ETRUNC
 * naming the path and the fault, and lookups need no checks. Work is linear
 * in the file size. 0, MM_ENOENT, MM_EIO, MM_ENOMEM, MM_EFORMAT, MM_ETRUNC,
 * MM_EUNSUP (another table version: rebuild it).
 */
int mm_geo_open(const char *path, struct mm_geo **out);

/* Unmaps the table; source-name strings from its answers die with it. */
void mm_geo_close(struct mm_geo *g);

/*
 * Answers for one address (IPv4 as v4-mapped). Never fails: fields nobody
 * knows are zero/NULL. Bounded work: at most three array reads for IPv4;
 * for IPv6 two index reads and a binary search over the ranges of one
 * /16 (or, in dense regions, one /28).
 */
void mm_geo_lookup(const struct mm_geo *g, const struct mm_addr *a, struct mm_geo_answer *out);

/*
 * Fills src/dst country and AS in place, but only fields still unknown
 * (zero): an AS number set by the exporter is kept. Returns the number of
 * fields filled.
 */
size_t mm_geo_lookup_flows(const struct mm_geo *g, struct mm_flow *flows, size_t n);

/* Table facts, for `geo build`'s summary, benchmarks and logs. */
struct mm_geo_info {
	unsigned n_sources;
	uint64_t n_leaves;     /* distinct answers */
	uint64_t n_v4_chunks;  /* 256-entry blocks below the /16 level */
	uint64_t n_v6_ranges;
	uint64_t file_len;
	int64_t built_unix;    /* seconds */
};
void mm_geo_info(const struct mm_geo *g, struct mm_geo_info *out);

/* Name of source i (0..n_sources-1), as in mm_geo_answer; NULL out of range. */
const char *mm_geo_source_name(const struct mm_geo *g, unsigned i);

/* ---- building a table ---- */

struct mm_geo_builder;

/* What one add_* call loaded. */
struct mm_geo_load_report {
	uint64_t n_lines;    /* text lines read (database entries for mmdb) */
	uint64_t n_records;  /* records that gave an answer */
	uint64_t n_prefixes; /* CIDR prefixes they became */
	uint64_t n_skipped;  /* well-formed but not delegations: summaries, available, reserved, ZZ */
	uint64_t n_bad;      /* malformed lines, each reported through the warn callback */
};

/*
 * Called for each malformed line with "path:line: what is wrong"; the
 * builder calls it for at most 20 lines per file and then once with a count
 * of the rest. ctx is passed through.
 */
typedef void (*mm_geo_warn_fn)(void *ctx, const char *message);

/* 0 or MM_ENOMEM. warn may be NULL (bad lines are then only counted). */
int mm_geo_builder_new(mm_geo_warn_fn warn, void *ctx, struct mm_geo_builder **out);
void mm_geo_builder_free(struct mm_geo_builder *b);

/*
 * Each add_* reads one file (capped at 4 GiB; lines at 4096 bytes) and
 * returns 0 when it gave at least one record, MM_EFORMAT naming the file
 * when nothing in it was valid, MM_ENOENT/MM_EIO when it cannot be read,
 * MM_ELIMIT past 65534 sources or 2^25 prefixes. Bad lines do not stop a
 * load; report (may be NULL) says what was kept and dropped.
 */

/* RIR delegated(-extended) statistics: allocated/assigned ipv4 and ipv6 records. */
int mm_geo_builder_add_rir(struct mm_geo_builder *b, const char *path, struct mm_geo_load_report *report);

/* One CIDR per line ('#' comments, blank lines), all in country cc ("JP"). */
int mm_geo_builder_add_cidr_list(struct mm_geo_builder *b, const char *path, const char *cc,
				 struct mm_geo_load_report *report);

/*
 * A MaxMind DB (libmaxminddb): every network in it; country.iso_code (or
 * registered_country.iso_code) gives the country, autonomous_system_number
 * the ASN. IPv4 inside an IPv6 database is taken once (aliases skipped).
 */
int mm_geo_builder_add_mmdb(struct mm_geo_builder *b, const char *path, struct mm_geo_load_report *report);

/* iptoasn.com TSV: range_start, range_end, ASN, country, description; IPv4 and IPv6. */
int mm_geo_builder_add_asn_tsv(struct mm_geo_builder *b, const char *path, struct mm_geo_load_report *report);

/* Facts about a written table. */
struct mm_geo_build_stats {
	uint64_t n_prefixes; /* all prefixes added */
	struct mm_geo_info info;
};

/*
 * Compiles everything added and writes the table to path through a
 * temporary name, fsync and rename, so a reader sees the old table or the
 * new one. MM_EINVAL if nothing was added. stats may be NULL.
 */
int mm_geo_builder_write(struct mm_geo_builder *b, const char *path, struct mm_geo_build_stats *stats);

#endif
