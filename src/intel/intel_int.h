/*
 * Internals of the intel module: the mutable set the loaders fill, the
 * compiled file layout that the compiler writes and readers map, and the
 * shared pieces of the loaders. Not for other modules (they use intel.h).
 */
#ifndef MAMORI_INTEL_INT_H
#define MAMORI_INTEL_INT_H

#include "mamori/intel.h"

#include <stdarg.h>
#include <stdatomic.h>

/* ---- the mutable set ---- */

struct intel_rec {
	struct mm_prefix prefix;
	uint32_t asn;
	uint16_t port;
	uint8_t proto, kind, confidence, tlp;
	uint32_t source, id, tags; /* offsets into the string pool */
	uint64_t first_seen_ns, last_seen_ns, expires_ns;
};

struct mm_intel_set {
	struct intel_rec *recs;
	size_t n_recs, cap_recs;
	char *pool; /* NUL-terminated strings; offset 0 is "" */
	size_t pool_len, pool_cap;
	uint32_t last_source; /* the last source string added: most records repeat it */
};

/* Source names: 1..63 of [A-Za-z0-9._-], not starting with '.' (they name files). */
bool intel_source_name_ok(const char *s);

/* Appends a string to the pool (deduplicating a repeat of the last source). */
int intel_set_string(struct mm_intel_set *set, const char *s, bool is_source, uint32_t *out);

/* ---- loaders ---- */

/* What a loader passes around: where to report and what to apply. */
struct intel_load {
	struct mm_intel_set *set;
	const char *name;
	const struct mm_intel_defaults *def;
	struct mm_intel_load_stats *st;
	uint64_t now_ns; /* for counting already-expired records */
};

/* Keeps "NAME:LINE: reason" (line 0: "NAME: reason") among the first reports; counts nothing. */
void intel_report(struct intel_load *ld, uint64_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Adds ind with the defaults applied and expiry counted; 0 or a fatal status. */
int intel_load_add(struct intel_load *ld, struct mm_intel_indicator *ind);

/* Parses "AS64496", "as64496", "64496" into an ASN; 0 or MM_EINVAL. */
int intel_parse_asn(const char *text, uint32_t *out);

int intel_load_stix(struct intel_load *ld, const char *buf, size_t len);

/* ---- the compiled file ---- */

#define MMI_MAGIC "MMINTEL1"
#define MMI_VERSION 4u /* 4: 16-byte IPv4 table entries and one-line run groups; 3 had run lists only */

/* Tagged LPM table entry: the top three bits say what the rest is. */
#define MMI_TAG_SHIFT 29
#define MMI_TAG_LEAF 0u    /* rest: prefix index + 1, 0 = no match */
#define MMI_TAG_COMPACT 1u /* rest: compact node index */
#define MMI_TAG_DENSE 2u   /* rest: dense node index */
#define MMI_TAG_TAIL 3u    /* rest: tail index */
#define MMI_TAG_LIST 4u    /* rest: first line of a run list << 2 | its key lines - 1 (IPv4 table only) */
#define MMI_TAG_GROUP 5u   /* rest: first line of a run group (IPv4 table only) */
#define MMI_INDEX_MASK ((1u << MMI_TAG_SHIFT) - 1)

#define MMI_V4_TOP_BITS 16
#define MMI_V6_TOP_BITS 24
#define MMI_COMPACT_MAX 11 /* entries a compact node holds */
#define MMI_LIST_KEYS 32   /* keys in one 64-byte line of a run list */
#define MMI_LIST_MAX_LINES 4 /* key lines of a run list: at most 128 keys, 129 runs */
#define MMI_GROUP_RUNS 8      /* runs in one line of a run group */
#define MMI_GROUP_MAX_LINES 7 /* lines of a run group: the splits an IPv4 table entry holds, plus one */

/*
 * An 8-bit stride node with at most 11 runs of equal entries: run i covers
 * bytes start[i-1] .. start[i]-1. Unused starts are 0, so the run of byte b
 * is (number of the 16 starts <= b) - bias: branch-free, one 16-byte vector
 * compare, and one cache line.
 */
struct mmi_compact {
	uint8_t start[16];
	uint32_t ent[MMI_COMPACT_MAX];
	uint8_t bias; /* 16 - starts used */
	uint8_t pad[3];
};

struct mmi_dense {
	uint32_t ent[256];
};

/* What a hit needs, 8 bytes per prefix so the hot path touches little. */
struct mmi_leaf {
	uint32_t first;
	uint32_t n_len; /* n << 8 | prefix length (family terms) */
};

/*
 * A leaf record packed into 48 bits, so that eight fit in a cache line
 * beside their keys: first indicator (26 bits: MM_INTEL_INDICATORS_MAX is
 * 2^26) and prefix length (6 bits) in one word, the indicator count (16
 * bits; a prefix named by more indicators is not packed, and its /16 uses
 * the other forms) in another. Count 0 (and all zero): no match.
 */
#define MMI_PACK_FIRST_BITS 26

static inline bool mmi_leaf_pack(struct mmi_leaf l, uint32_t *first_len, uint16_t *n)
{
	uint32_t count = l.n_len >> 8, len = l.n_len & 0xff;

	if (count > 0xffff || len > 63 || l.first >> MMI_PACK_FIRST_BITS)
		return false;
	*first_len = count ? l.first | len << MMI_PACK_FIRST_BITS : 0;
	*n = (uint16_t)count;
	return true;
}

static inline struct mmi_leaf mmi_leaf_unpack(uint32_t first_len, uint16_t n)
{
	struct mmi_leaf l = { first_len & ((1u << MMI_PACK_FIRST_BITS) - 1),
			      (uint32_t)n << 8 | first_len >> MMI_PACK_FIRST_BITS };

	return l;
}

/*
 * An IPv4 table entry: a tagged entry and 12 bytes beside it. For a run
 * group (MMI_TAG_GROUP) they are the group's line splits: the line of
 * address x (its low 16 bits) is the number of splits < x (0xffff pads,
 * it never counts). For a leaf they hold its record packed (all zero when
 * the record does not pack or there is no match), so an address in a /16
 * that no longer prefix cuts is answered by this entry alone. Other tags
 * leave them zero. 2^16 entries: 1 MiB, mostly in the L2 cache.
 */
struct mmi_v4top {
	uint32_t e;
	union {
		uint16_t split[MMI_GROUP_MAX_LINES - 1];
		struct {
			uint32_t first_len;
			uint16_t n;
			uint16_t zero[3];
		} leaf;
	} u;
};

/*
 * A line of a run group: up to 8 runs of an IPv4 /16, keys and packed
 * answers together, so that a lookup reads the table entry (near) and this
 * one line (far) and nothing else. The run of x within the line is the
 * number of keys < x (run starts - 1; 0xffff pads, and key[7] is always
 * padding so the count stays below 8).
 */
struct mmi_gline {
	uint16_t key[MMI_GROUP_RUNS];
	uint32_t first_len[MMI_GROUP_RUNS];
	uint16_t n[MMI_GROUP_RUNS];
};

_Static_assert(sizeof(struct mmi_v4top) == 16, "four IPv4 table entries to a cache line");
_Static_assert(sizeof(struct mmi_gline) == 64, "a run group line is one cache line");

/*
 * A run list: the answers for one IPv4 /16 as runs of equal leaf records
 * over its 65,536 addresses. 1..4 key lines hold the run starts minus one
 * (ascending; 0xffff pads, it never counts), then value lines hold one leaf
 * record per run (n_len 0: no match). The run of address x (its low 16
 * bits) is the number of keys < x: branch-free vector compares over the
 * key lines, then one read of the value line. A /16 of random threat
 * intelligence holds ~25 runs, so most lookups read one key line and one
 * value line, and the whole IPv4 structure stays a few tens of MiB instead
 * of a 64 MiB direct table read at random.
 */
union mmi_line {
	uint16_t key[MMI_LIST_KEYS];
	struct mmi_leaf val[8];
};

/*
 * A block holding a single prefix, collapsed (path compression): one
 * compare of the whole address replaces the chain of nodes down to it.
 */
struct mmi_tail {
	uint64_t hi, lo;      /* the prefix, host order, host bits zero */
	struct mmi_leaf leaf; /* its leaf record: a hit needs no other read */
	uint32_t miss;        /* leaf entry answering the rest of the block */
	uint8_t bits;         /* prefix length in 128-bit terms */
	uint8_t pad[3];       /* 32 bytes: two tails per cache line, never straddling */
};


/* A distinct prefix, the indicators that carry it, and its covering prefix. */
struct mmi_pfx {
	uint8_t addr[16];
	uint8_t len; /* family terms */
	uint8_t pad[3];
	uint32_t parent;  /* index + 1 of the next shorter covering prefix; 0 = none */
	uint32_t first, n; /* indicator range */
	uint64_t expires_max; /* latest expiry among them; UINT64_MAX = never */
};

/* ASN and port keys: sorted, binary-searched. Port key: proto << 16 | port. */
struct mmi_key {
	uint32_t key;
	uint32_t first, n;
	uint32_t pad;
	uint64_t expires_max;
};

struct mmi_ind {
	uint8_t kind, confidence, tlp, proto;
	uint16_t port;
	uint16_t pad;
	uint32_t asn;
	uint32_t pfx; /* MM_INTEL_PREFIX: prefix index */
	uint32_t source, id, tags; /* string offsets */
	uint32_t pad2;
	uint64_t first_seen_ns, last_seen_ns, expires_ns;
};

struct mmi_src {
	uint32_t name;
	uint32_t tlp;
	uint64_t n;
	uint64_t first_seen_ns, last_seen_ns;
};

enum mmi_section {
	MMI_SEC_IND,
	MMI_SEC_PFX,
	MMI_SEC_ASN,
	MMI_SEC_PORT,
	MMI_SEC_SRC,
	MMI_SEC_STR,
	MMI_SEC_V4_TOP,
	MMI_SEC_V6_TOP,
	MMI_SEC_COMPACT,
	MMI_SEC_DENSE,
	MMI_SEC_TAIL,
	MMI_SEC_LEAF,
	MMI_SEC_LIST,
	MMI_SEC_GROUP,
	MMI_N_SECTIONS
};

/* Host byte order: the file is a cache compiled on this machine from sources/. */
struct mmi_header {
	char magic[8];
	uint32_t version;
	uint32_t endian; /* 0x01020304 as written */
	uint64_t file_size;
	uint64_t compiled_ns;
	uint64_t next_expiry_ns; /* earliest expires_max of any prefix; UINT64_MAX = none */
	struct {
		uint64_t off; /* from file start, 64-byte aligned */
		uint64_t count; /* elements (bytes for strings) */
	} sec[MMI_N_SECTIONS];
	uint64_t checksum; /* intel_checksum of the sections: a damaged file is refused, not misread */
};

/* Element size of each section. */
extern const size_t intel_sec_size[MMI_N_SECTIONS];

/*
 * A 64-bit checksum of the sections' bytes in order and the header's
 * times (not a MAC: the file is a local cache; it catches damage,
 * validation catches the rest). sec[i] points at section i, sized by the
 * header.
 */
uint64_t intel_checksum(const struct mmi_header *h, const void *const sec[MMI_N_SECTIONS]);

/* Writes the compiled image of set to fd (name for messages). */
int intel_write_image(int fd, const struct mm_intel_set *set, uint64_t now_ns, const char *name);

/* Maps and validates a compiled image from fd (the mapping keeps no fd). */
int intel_snap_map(int fd, const char *name, struct mm_intel_snap **out);

struct mm_intel_snap {
	atomic_uint refs;
	void *map;
	size_t map_len;
	void *hot;      /* the lookup tables copied onto huge pages; NULL if not */
	size_t hot_len;
	const struct mmi_header *hdr;
	const struct mmi_ind *ind;
	const struct mmi_pfx *pfx;
	const struct mmi_key *asn, *port;
	const struct mmi_src *src;
	const char *str;
	const struct mmi_v4top *v4_top;
	const uint32_t *v6_top;
	const struct mmi_compact *compact;
	const struct mmi_dense *dense;
	const struct mmi_tail *tail;
	const struct mmi_leaf *leaf;
	const union mmi_line *list;
	const struct mmi_gline *group;
	uint64_t next_expiry_ns;
	size_t n_ind, n_pfx, n_asn, n_port, n_src, str_len, n_compact, n_dense, n_tail, n_list, n_group;
};

#endif
