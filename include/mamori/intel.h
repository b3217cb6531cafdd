/*
 * Threat-intelligence indicators and fast matching. Indicators (IPv4/IPv6
 * addresses and prefixes, ASNs, ports) are loaded from lists, FireHOL sets,
 * CSV, IPsum and STIX 2.1 bundles into a mutable set, compiled into one
 * immutable file (<data>/intel/current.mmi) holding longest-prefix-match
 * tables, and mapped read-only by readers. A reload maps the new file and
 * publishes it with an atomic swap; a reader that took a snapshot keeps it,
 * consistent, until it puts it back (docs/intel.md).
 */
#ifndef MAMORI_INTEL_H
#define MAMORI_INTEL_H

#include "mamori/addr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* TLP 2.0 (FIRST). TLP:WHITE of TLP 1.0 reads as CLEAR. */
enum mm_tlp {
	MM_TLP_UNSET = 0, /* the source said nothing */
	MM_TLP_CLEAR,
	MM_TLP_GREEN,
	MM_TLP_AMBER,
	MM_TLP_AMBER_STRICT,
	MM_TLP_RED,
};

enum mm_intel_kind {
	MM_INTEL_PREFIX = 0, /* an address is a host prefix (/32, /128) */
	MM_INTEL_ASN,
	MM_INTEL_PORT,
};

/* Caps that keep hostile input bounded. */
#define MM_INTEL_SOURCE_MAX 64       /* bytes of a source name, NUL included */
#define MM_INTEL_FIELD_MAX 1024      /* bytes of an id or tag string */
#define MM_INTEL_LINE_MAX 65536      /* bytes of one text line */
#define MM_INTEL_INDICATORS_MAX (64u << 20)

/*
 * One indicator. When read back from a snapshot (mm_intel_indicator) the
 * strings point into the mapping: valid until the snapshot is put back.
 * When added to a set (mm_intel_set_add) the strings are copied.
 */
struct mm_intel_indicator {
	enum mm_intel_kind kind;
	struct mm_prefix prefix; /* MM_INTEL_PREFIX */
	uint32_t asn;            /* MM_INTEL_ASN */
	uint16_t port;           /* MM_INTEL_PORT */
	uint8_t proto;           /* MM_INTEL_PORT: IP protocol, 0 = any */
	uint8_t confidence;      /* 0..100 */
	enum mm_tlp tlp;
	const char *source;      /* never NULL */
	const char *id;          /* STIX id or "FILE:LINE"; "" if none */
	const char *tags;        /* ';'-separated; "" if none */
	uint64_t first_seen_ns, last_seen_ns; /* 0 = unknown */
	uint64_t expires_ns;     /* 0 = never */
};

/* ---- Loading ------------------------------------------------------------ */

enum mm_intel_format {
	MM_INTEL_FMT_AUTO = 0, /* by content: STIX ('{'), CSV (known header), IPsum, FireHOL, list */
	MM_INTEL_FMT_LIST,
	MM_INTEL_FMT_FIREHOL,
	MM_INTEL_FMT_CSV,
	MM_INTEL_FMT_IPSUM,
	MM_INTEL_FMT_STIX,
};

/* "auto", "list", …; parse returns 0 or MM_EINVAL. */
const char *mm_intel_format_name(enum mm_intel_format f);
int mm_intel_format_parse(const char *text, enum mm_intel_format *out);

/* "clear", "green", "amber", "amber+strict", "red", "" for unset. */
const char *mm_tlp_name(enum mm_tlp t);
/* Accepts the names above, any case, with or without "TLP:", and "white". */
int mm_tlp_parse(const char *text, enum mm_tlp *out);

/*
 * What a loader applies to records that do not say otherwise. source is
 * required; with force_source set it overrides any source column too (an
 * import names the source it replaces).
 */
struct mm_intel_defaults {
	const char *source;
	bool force_source;
	uint8_t confidence;  /* default confidence; lists use it as is */
	enum mm_tlp tlp;     /* applied where the record has none */
	uint64_t expires_ns; /* applied where the record has none; 0 = never */
};

/* Problems are reported as "FILE:LINE: reason"; the first few are kept. */
#define MM_INTEL_REPORT_KEEP 32

struct mm_intel_load_stats {
	enum mm_intel_format format; /* the format used (resolved from AUTO) */
	uint64_t n_lines;            /* text formats: lines read */
	uint64_t n_loaded;           /* indicators added */
	uint64_t n_bad;              /* lines/objects rejected as malformed */
	uint64_t n_skipped;          /* well-formed but unsupported (STIX patterns, other types) */
	uint64_t n_expired;          /* records already expired at load time */
	/* STIX: why patterns were skipped. */
	uint64_t n_skip_object_type; /* compares an object type other than ipv4/ipv6-addr, autonomous-system */
	uint64_t n_skip_operator;    /* !=, NOT, LIKE, MATCHES, ISSUPERSET, <, >, … */
	uint64_t n_skip_combination; /* AND, FOLLOWEDBY, qualifiers: needs correlation */
	uint64_t n_skip_pattern_type; /* pattern_type is not "stix" */
	uint64_t n_partial;          /* STIX: OR also named other objects; the addresses were kept */
	/* FireHOL/IPsum header metadata (empty if none). */
	char list_name[64];
	char list_date[64];     /* "This File Date" / "Last update" as written */
	char maintainer[128];
	/* The first MM_INTEL_REPORT_KEEP reports, each "FILE:LINE: reason". */
	char reports[MM_INTEL_REPORT_KEEP][256];
	unsigned n_reports;
};

/* A mutable set: what loaders fill and what mm_intel_compile writes. */
struct mm_intel_set;

int mm_intel_set_new(struct mm_intel_set **out);
void mm_intel_set_free(struct mm_intel_set *set);
size_t mm_intel_set_count(const struct mm_intel_set *set);

/* Copies ind in. MM_EINVAL (bad field), MM_ELIMIT (set full), MM_ENOMEM. */
int mm_intel_set_add(struct mm_intel_set *set, const struct mm_intel_indicator *ind);

/* Reads back indicator i (< count); strings borrowed from the set. */
void mm_intel_set_get(const struct mm_intel_set *set, size_t i, struct mm_intel_indicator *out);

/*
 * Parses a whole buffer (name is used in reports). Malformed lines or
 * objects are counted and reported, not fatal: returns 0 if the input was
 * read at all, MM_EFORMAT if the format cannot be told or a CSV header /
 * STIX document is unusable, MM_ENOMEM / MM_ELIMIT. stats may be NULL.
 * Work is linear in len (STIX: plus JSON parsing).
 */
int mm_intel_load_buf(struct mm_intel_set *set, const char *name, const char *buf, size_t len,
		      enum mm_intel_format fmt, const struct mm_intel_defaults *def,
		      struct mm_intel_load_stats *stats);

/* Same from a file (read whole; MM_EIO / MM_ENOENT naming the path). */
int mm_intel_load_file(struct mm_intel_set *set, const char *path, enum mm_intel_format fmt,
		       const struct mm_intel_defaults *def, struct mm_intel_load_stats *stats);

/*
 * Writes the set as CSV with a header row (the format mm_intel_load_buf
 * reads back as MM_INTEL_FMT_CSV, RFC 4180 quoting). 0 or MM_EIO.
 */
int mm_intel_set_write_csv(const struct mm_intel_set *set, const char *path);

/*
 * Compiles the set into path (written to a temporary name, fsynced and
 * renamed over path, so readers never see a partial file). Indicators that
 * expired at now_ns are left out. 0, MM_EIO, MM_ENOMEM.
 */
int mm_intel_compile(const struct mm_intel_set *set, uint64_t now_ns, const char *path);

/* ---- STIX patterns ------------------------------------------------------ */

/* Why a pattern yields no indicators (0 = it does). */
enum mm_stix_skip {
	MM_STIX_OK = 0,
	MM_STIX_SKIP_OBJECT_TYPE,
	MM_STIX_SKIP_OPERATOR,
	MM_STIX_SKIP_COMBINATION,
};

/*
 * Parses a STIX 2.1 pattern (grammar of STIX 2.1 §9) and collects the
 * addresses/prefixes/ASNs whose sighting alone satisfies it: up to max into
 * out (kind, prefix, asn set; n_out is the total found, which may exceed
 * max). An OR whose other branches compare other objects still yields its
 * addresses (*partial set). MM_EFORMAT with mm_last_error() naming the
 * offset for a malformed pattern; 0 with *skip set when well-formed but not
 * expressible as a set of indicators (then n_out is 0). Work linear in
 * strlen(pattern); nesting capped at 64.
 */
int mm_stix_pattern_indicators(const char *pattern, struct mm_intel_indicator *out, size_t max,
			       size_t *n_out, enum mm_stix_skip *skip, bool *partial);

/* ---- Matching ----------------------------------------------------------- */

/* A compiled set mapped read-only: immutable, reference counted. */
struct mm_intel_snap;

/* Maps a compiled file directly (tests, tools). 0, MM_ENOENT, MM_EFORMAT. */
int mm_intel_snap_open(const char *path, struct mm_intel_snap **out);
/* Takes another reference. */
struct mm_intel_snap *mm_intel_snap_ref(struct mm_intel_snap *snap);
/* Drops a reference; the last one unmaps. NULL is ignored. */
void mm_intel_snap_put(struct mm_intel_snap *snap);

/* Counts of a snapshot. */
size_t mm_intel_snap_count(const struct mm_intel_snap *snap);   /* indicators */
size_t mm_intel_snap_prefixes(const struct mm_intel_snap *snap); /* distinct prefixes */

/*
 * A match: the longest prefix holding at least one unexpired indicator.
 * Indicators first .. first + n - 1 carry that exact prefix (all sources).
 */
struct mm_intel_hit {
	struct mm_prefix prefix; /* the prefix that matched (ASN/port: zero) */
	uint32_t first;          /* indicator index: mm_intel_indicator() */
	uint32_t n;
};

/*
 * Longest-prefix match of a at time now_ns (indicators with expires_ns <=
 * now_ns are ignored; pass 0 to ignore expiry). Returns 1 and fills hit,
 * or 0 for no match. Bounded work: for IPv4 two reads (table entry, run
 * group line) for most /16s, at most four through a crowded one, for IPv6
 * at most 15, plus one per expired prefix skipped.
 */
int mm_intel_match_addr(const struct mm_intel_snap *snap, const struct mm_addr *a, uint64_t now_ns,
			struct mm_intel_hit *hit);

/* The next shorter covering prefix after hit (1 and hit updated, or 0). */
int mm_intel_match_next(const struct mm_intel_snap *snap, uint64_t now_ns, struct mm_intel_hit *hit);

/* Exact ASN / port match; proto 0 in an indicator matches any protocol. 1 or 0. */
int mm_intel_match_asn(const struct mm_intel_snap *snap, uint32_t asn, uint64_t now_ns,
		       struct mm_intel_hit *hit);
int mm_intel_match_port(const struct mm_intel_snap *snap, uint8_t proto, uint16_t port,
			uint64_t now_ns, struct mm_intel_hit *hit);

/*
 * Batch address match, the fast path: looks up n addresses as a software
 * pipeline, each read prefetched dozens of lookups ahead so that the cache
 * misses of many addresses overlap. hits[i].n
 * is 0 where a[i] matched nothing. Returns the number of addresses that
 * matched.
 */
size_t mm_intel_match_addrs(const struct mm_intel_snap *snap, const struct mm_addr *a, size_t n,
			    uint64_t now_ns, struct mm_intel_hit *hits);

/*
 * Flow batch: matches src and dst of n flows (src_hits[i], dst_hits[i]).
 * Returns the number of flows with at least one side matched.
 */
struct mm_flow;
size_t mm_intel_match_flows(const struct mm_intel_snap *snap, const struct mm_flow *flows, size_t n,
			    uint64_t now_ns, struct mm_intel_hit *src_hits, struct mm_intel_hit *dst_hits);

/* Reads indicator i (< mm_intel_snap_count); strings borrowed from snap. */
void mm_intel_indicator(const struct mm_intel_snap *snap, uint32_t i, struct mm_intel_indicator *out);

/* Per-source summary kept in the compiled file (mamori intel list). */
struct mm_intel_source_info {
	const char *name;       /* borrowed from snap */
	uint64_t n_indicators;
	uint64_t first_seen_ns, last_seen_ns; /* over its indicators; 0 = unknown */
	enum mm_tlp tlp;        /* most restrictive TLP among its indicators */
};
size_t mm_intel_snap_sources(const struct mm_intel_snap *snap);
void mm_intel_snap_source(const struct mm_intel_snap *snap, size_t i, struct mm_intel_source_info *out);

/* ---- The live set in <data>/intel/ and its reload ------------------------ */

/*
 * A handle on <data>/intel/: the current snapshot behind an atomic pointer.
 * Any number of threads may take snapshots while one thread reloads.
 */
struct mm_intel;

/* dir is the intel directory (<data>/intel). A missing compiled file gives an empty set. */
int mm_intel_open(const char *dir, struct mm_intel **out);
void mm_intel_close(struct mm_intel *in);

/*
 * The current snapshot, with a reference the caller puts back with
 * mm_intel_snap_put. Cost: one uncontended lock; take it per batch, not per lookup.
 */
struct mm_intel_snap *mm_intel_get(struct mm_intel *in);

/*
 * Maps the compiled file anew if it was replaced, and publishes it; readers
 * holding the old snapshot keep it until they put it back. Returns 1 if a
 * new snapshot was published, 0 if unchanged, negative on error (the old
 * snapshot stays current).
 */
int mm_intel_reload(struct mm_intel *in);

/* "<data>/intel" paths. The compiled file and one CSV per source. */
#define MM_INTEL_COMPILED_NAME "current.mmi"
#define MM_INTEL_SOURCES_DIR "sources"

/*
 * Import: replaces source def->source in dir with the indicators loaded
 * from path (stored as sources/NAME.csv) and recompiles. stats as for
 * mm_intel_load_file. Source names: [A-Za-z0-9._-], 1..63 bytes.
 */
int mm_intel_store_import(const char *dir, const char *path, enum mm_intel_format fmt,
			  const struct mm_intel_defaults *def, uint64_t now_ns,
			  struct mm_intel_load_stats *stats);
/* Removes a source and recompiles; MM_ENOENT if it is not there. */
int mm_intel_store_remove(const char *dir, const char *source, uint64_t now_ns);
/* Recompiles current.mmi from sources/ (expired indicators dropped). */
int mm_intel_store_compile(const char *dir, uint64_t now_ns);

#endif
