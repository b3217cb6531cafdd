/*
 * The flow query language: nfdump-style filters ("proto tcp and dst port
 * 443") parsed into a typed AST that no store depends on, a printer that
 * writes the AST back as canonical text, a row-by-row reference evaluator,
 * and aggregation specs (--top, --group-by, --every) with a reference
 * aggregator. Store executors and SQL translators walk the same AST and are
 * tested against the reference functions here. docs/query.md is the
 * language reference.
 */
#ifndef MAMORI_QUERY_H
#define MAMORI_QUERY_H

#include "mamori/addr.h"
#include "mamori/flow.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest query text accepted, in bytes; longer text is refused with MM_ELIMIT. */
#define MM_QUERY_MAX_LEN 65536
/* Deepest nesting of parentheses and not/and/or accepted. */
#define MM_QUERY_MAX_DEPTH 64
/* Most values in one "in [...]" list. */
#define MM_QUERY_MAX_LIST 4096

enum mm_qnode_kind {
	MM_QN_ANY,  /* matches every flow */
	MM_QN_NOT,  /* one child */
	MM_QN_AND,  /* two or more children, none of them an AND */
	MM_QN_OR,   /* two or more children, none of them an OR */
	MM_QN_PRED, /* a field compared with constants */
};

enum mm_qfield {
	MM_QF_HOST,     /* address; values: addr */
	MM_QF_NET,      /* address in prefix; values: prefix */
	MM_QF_PORT,     /* transport port (ICMP: type, see flow.h); values: u */
	MM_QF_AS,       /* autonomous system number; values: u */
	MM_QF_COUNTRY,  /* ISO 3166 alpha-2; values: country (upper case) */
	MM_QF_IF,       /* interface index; values: u */
	MM_QF_PROTO,    /* IP protocol number; values: u */
	MM_QF_FAMILY,   /* address family; values: u (4 or 6) */
	MM_QF_BYTES,    /* IP bytes; values: u */
	MM_QF_PACKETS,  /* packets; values: u */
	MM_QF_DURATION, /* last_ns - first_ns; values: u in nanoseconds */
	MM_QF_PPS,      /* packets per second; values: u */
	MM_QF_BPS,      /* bits per second; values: u */
	MM_QF_BPP,      /* bytes per packet; values: u */
	MM_QF_FLAGS,    /* TCP flags; values: u (a flags byte) */
	MM_QF_VLAN,     /* 802.1Q id; values: u */
	MM_QF_SENSOR,   /* sensor id; values: u */
	MM_QF_END,      /* enum mm_end_reason; values: u */
	MM_QF_COUNT_
};

/*
 * Which side of the flow a predicate reads. src is the originator, dst the
 * responder (flow.h). NONE: the field has no sides, or (bytes, packets,
 * flags) both directions combined: totals, and the union of flag bits.
 */
enum mm_qdir {
	MM_QD_NONE,
	MM_QD_EITHER, /* src or dst matches ("port 22") */
	MM_QD_SRC,
	MM_QD_DST,
	MM_QD_BOTH, /* src and dst both match ("src and dst net 10.0.0.0/8") */
	MM_QD_IN,   /* input interface */
	MM_QD_OUT,  /* output interface */
};

enum mm_qop {
	MM_QO_EQ,
	MM_QO_NE,
	MM_QO_LT,
	MM_QO_LE,
	MM_QO_GT,
	MM_QO_GE,
	MM_QO_IN,  /* equal to any of values[0..n_values) */
	MM_QO_HAS, /* flags: every bit of values[0] is set */
};

union mm_qvalue {
	uint64_t u;
	struct mm_addr addr;
	struct mm_prefix prefix; /* host bits zero */
	char country[2];
};

/*
 * One AST node. AND and OR list their children from first_child through
 * next; NOT has exactly one child. A PRED has one value, or n_values for
 * MM_QO_IN. column is where the node's text began (1-based byte offset),
 * 0 for nodes built by code; it is not part of a node's meaning.
 */
struct mm_qnode {
	enum mm_qnode_kind kind;
	struct mm_qnode *first_child;
	struct mm_qnode *next;
	enum mm_qfield field;
	enum mm_qdir dir;
	enum mm_qop op;
	size_t n_values;
	union mm_qvalue *values;
	unsigned column;
};

/* A parsed query: its nodes and values live in one per-query arena. */
struct mm_query;

/*
 * Parses a filter. Empty text (or only # comments) is "any". On failure
 * returns MM_EINVAL (MM_ELIMIT for the length, depth and list caps) with
 * mm_last_error() as "query: column N: expected X after 'Y', found 'Z'"
 * and, when err_column is given, N stored there (0 when no column applies).
 * Work is linear in the text length; *out is freed with mm_query_free.
 */
int mm_query_parse(const char *text, struct mm_query **out, unsigned *err_column);

void mm_query_free(struct mm_query *q);

/* The root node; never NULL for a parsed query. Borrowed until mm_query_free. */
const struct mm_qnode *mm_query_root(const struct mm_query *q);

/*
 * Building ASTs by code (planners narrowing a query, tests generating
 * random ones). Nodes and value arrays come from q's arena and live until
 * mm_query_free; NULL (with mm_fail) when memory or the node cap runs out.
 * A built tree must pass mm_query_check before it is printed or evaluated.
 */
int mm_query_new(struct mm_query **out);
struct mm_qnode *mm_query_add_node(struct mm_query *q, enum mm_qnode_kind kind);
union mm_qvalue *mm_query_add_values(struct mm_query *q, size_t n);
/* Appends child as parent's last child; work is linear in parent's children. */
void mm_query_append_child(struct mm_qnode *parent, struct mm_qnode *child);
void mm_query_set_root(struct mm_query *q, struct mm_qnode *root);

/*
 * Checks the invariants the parser guarantees: arities, no AND directly
 * under AND (nor OR under OR), depth cap, directions and operators the
 * field allows, values in range. 0 or MM_EINVAL naming the first problem.
 */
int mm_query_check(const struct mm_query *q);

/* True when the two ASTs mean the same by construction (columns ignored). */
bool mm_query_equal(const struct mm_query *a, const struct mm_query *b);

/*
 * Writes canonical text that parses back to an equal AST: lower-case
 * keywords, implicit "=", minimal parentheses, 1000-based suffixes where
 * exact. Returns a malloc'd string in *out; 0 or MM_ENOMEM.
 */
int mm_query_format(const struct mm_query *q, char **out);

/*
 * "   ^" pointing at column (1-based) for a line under the query text, at
 * most len-1 characters; returns buf.
 */
char *mm_query_caret(unsigned column, char *buf, size_t len);

/* The reference evaluator: one flow, one tree walk; no allocation. */
bool mm_query_match(const struct mm_query *q, const struct mm_flow *f);

/* Derived values exactly as the evaluator computes them (docs/query.md). */
uint64_t mm_query_flow_duration_ns(const struct mm_flow *f);
uint64_t mm_query_flow_pps(const struct mm_flow *f);
uint64_t mm_query_flow_bps(const struct mm_flow *f);
uint64_t mm_query_flow_bpp(const struct mm_flow *f);

/* Aggregation --------------------------------------------------------- */

#define MM_QAGG_MAX_KEYS 8
#define MM_QAGG_MAX_DISTINCT 4

enum mm_qkey_kind {
	MM_QK_SRCIP,
	MM_QK_DSTIP,
	MM_QK_SRCNET, /* srcip truncated to prefix_len bits (family terms) */
	MM_QK_DSTNET,
	MM_QK_SRCPORT,
	MM_QK_DSTPORT,
	MM_QK_PROTO,
	MM_QK_SRCAS,
	MM_QK_DSTAS,
	MM_QK_SRCCOUNTRY,
	MM_QK_DSTCOUNTRY,
};

struct mm_qkey {
	enum mm_qkey_kind kind;
	/* srcnet/dstnet: bits kept of an IPv4 address (0..32), of an IPv6 one (0..128) */
	uint8_t prefix_len_v4, prefix_len_v6;
};

enum mm_qmetric {
	MM_QM_FLOWS,
	MM_QM_PACKETS,
	MM_QM_BYTES,
};

/*
 * What to aggregate. Rows are grouped by (time bucket, keys); with no keys
 * and no buckets there is one row of totals (--stats). top_n 0 keeps every
 * row; otherwise each bucket keeps its top_n rows by order_by.
 */
struct mm_qagg {
	struct mm_qkey keys[MM_QAGG_MAX_KEYS];
	size_t n_keys;
	struct mm_qkey distinct[MM_QAGG_MAX_DISTINCT]; /* exact distinct counts per row */
	size_t n_distinct;
	uint64_t top_n;
	enum mm_qmetric order_by;
	uint64_t every_ns; /* 0: no time series; else buckets of first_ns */
	/* Packets and bytes of a sampled flow times its sampling_rate (0 and 1
	 * count as unsampled): estimates of the traffic, not of the samples.
	 * Flow counts are never scaled (docs/query.md, "Sampled flows"). */
	bool scale_sampled;
};

/* Zeroes agg: one totals row, ordered by flows. */
void mm_qagg_init(struct mm_qagg *agg);

/* The factor a flow's packets and bytes count with under agg. */
static inline uint64_t mm_qagg_scale(const struct mm_qagg *agg, uint32_t sampling_rate)
{
	return agg->scale_sampled && sampling_rate > 1 ? sampling_rate : 1;
}

/*
 * "srcip,dstport,srcnet/24" into keys (or distinct). A net key takes
 * "/LEN" (IPv4 keeps min(LEN, 32) bits, IPv6 keeps LEN) or "/V4LEN/V6LEN";
 * MM_EINVAL names the bad key and the choices; MM_ELIMIT past cap keys.
 */
int mm_qagg_parse_keys(const char *text, struct mm_qkey *keys, size_t cap, size_t *n_keys);

/* "flows", "packets", "bytes"; MM_EINVAL otherwise. */
int mm_qagg_parse_metric(const char *text, enum mm_qmetric *out);

/* Canonical key name ("srcnet/24/64") into buf; returns buf. */
char *mm_qkey_format(const struct mm_qkey *key, char buf[24]);

/* A key's value for one flow; unused bytes are zero so values compare with memcmp. */
union mm_qkey_value {
	struct mm_addr addr; /* ip and net keys (net: host bits cleared) */
	uint32_t u;          /* ports, proto, AS */
	char country[2];
};

struct mm_qagg_row {
	uint64_t bucket_ns;
	union mm_qkey_value key[MM_QAGG_MAX_KEYS];
	uint64_t flows, packets, bytes;
	uint64_t distinct[MM_QAGG_MAX_DISTINCT];
};

void mm_qkey_value_of(const struct mm_qkey *key, const struct mm_flow *f, union mm_qkey_value *out);

/*
 * The reference aggregator: a keyed hash of rows and an exact set of
 * (row, distinct key, value) triples. max_groups caps rows plus distinct
 * triples; reaching it fails the add with MM_ELIMIT (the answer would be
 * wrong otherwise) and counts the refusal in n_refused.
 */
struct mm_qagg_ref;

int mm_qagg_ref_new(struct mm_qagg_ref **out, const struct mm_qagg *spec, size_t max_groups);
int mm_qagg_ref_add(struct mm_qagg_ref *r, const struct mm_flow *f);

/*
 * Puts rows in the result order below and keeps top_n rows per bucket (all
 * when top_n is 0), in place; returns how many rows are kept. Every
 * executor finishes its rows with this, so their order agrees exactly.
 */
size_t mm_qagg_rows_finish(struct mm_qagg_row *rows, size_t n_rows, const struct mm_qagg *spec);

/*
 * Sorts and cuts the rows: bucket ascending, then order_by descending,
 * then flows, bytes, packets descending, then key bytes ascending, so any
 * executor can reproduce the order exactly; each bucket keeps top_n rows.
 * *rows is borrowed until mm_qagg_ref_free; add nothing after finishing. 0.
 */
int mm_qagg_ref_finish(struct mm_qagg_ref *r, const struct mm_qagg_row **rows, size_t *n_rows);

uint64_t mm_qagg_ref_refused(const struct mm_qagg_ref *r);
void mm_qagg_ref_free(struct mm_qagg_ref *r);

#endif
