/*
 * The vectorised executor over the embedded store (query_exec.h). A filter
 * compiles into a small tree of column terms; per chunk, zone maps grade
 * every term never / maybe / always, and only "maybe" terms decode their
 * columns and run a tight loop per operator and width into a byte mask.
 * Workers take chunks in store order; listings are re-sequenced so output
 * order never depends on threads. Aggregations merge per-thread tables
 * while they fit the cache, and partition their groups by hash beyond that
 * (see "radix-partitioned aggregation").
 */
#include "mamori/query_exec.h"

#include "mamori/hash.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Threads one query may start: more than any machine we target has cores. */
#define EXEC_MAX_THREADS 256
/* Up to this many "in" values are tested one by one; longer lists are binary-searched. */
#define IN_LINEAR_MAX 8

void mm_query_exec_options_default(struct mm_query_exec_options *opt)
{
	*opt = (struct mm_query_exec_options){ .since_ns = 0,
					       .until_ns = UINT64_MAX,
					       .n_threads = 0,
					       .max_memory = MM_QUERY_EXEC_DEFAULT_MEMORY,
					       .limit = 0,
					       .table_max = 0 };
}

/* --- the compiled filter ------------------------------------------------- */

/* Values computed from several columns, exactly as the reference evaluator reads them. */
enum derived {
	D_TOTAL_BYTES,
	D_TOTAL_PACKETS,
	D_FLAGS_UNION,
	D_DURATION,
	D_PPS,
	D_BPS,
	D_BPP,
	D_FAMILY,
	D_COUNT_
};

enum cnode_kind {
	C_ANY,
	C_NOT,
	C_AND,
	C_OR,
	C_NUM,  /* a column or derived value against numbers */
	C_ADDR, /* an address (two columns) against masked prefixes */
};

/* An address prefix as masks over the two 64-bit halves the store keeps. */
struct net_mask {
	uint64_t hi, lo, mask_hi, mask_lo;
};

struct cnode {
	enum cnode_kind kind;
	struct cnode *first_child, *next;
	/* C_NUM: a store column, or a derived value when derived < D_COUNT_ */
	unsigned col;
	enum derived derived;
	enum mm_qop op;
	const uint64_t *values; /* IN: sorted, unique */
	size_t n_values;
	/* C_ADDR */
	unsigned col_hi, col_lo;
	const struct net_mask *nets;
	size_t n_nets;
	size_t index; /* position in program.nodes, for per-chunk grades */
};

struct program {
	struct cnode *nodes;
	size_t n_nodes, cap_nodes;
	uint64_t *nums;
	size_t n_nums, cap_nums;
	struct net_mask *nets;
	size_t n_nets, cap_nets;
	struct cnode *root;
	unsigned depth;      /* AND/OR nesting: how many scratch masks evaluation needs */
};

static void program_release(struct program *p)
{
	free(p->nodes);
	free(p->nums);
	free(p->nets);
}

static struct cnode *program_node(struct program *p, enum cnode_kind kind)
{
	struct cnode *n;

	MM_BUG(p->n_nodes == p->cap_nodes);
	n = &p->nodes[p->n_nodes];
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->derived = D_COUNT_;
	n->index = p->n_nodes++;
	return n;
}

static void append_child(struct cnode *parent, struct cnode *child)
{
	struct cnode **link = &parent->first_child;

	while (*link)
		link = &(*link)->next;
	*link = child;
}

/* Node and value counts bound what compiling can add: every predicate becomes at most three nodes. */
static void count_ast(const struct mm_qnode *n, size_t *nodes, size_t *values)
{
	*nodes += 3;
	*values += n->n_values;
	for (const struct mm_qnode *c = n->first_child; c; c = c->next)
		count_ast(c, nodes, values);
}

static const uint64_t derived_columns[D_COUNT_] = {
	[D_TOTAL_BYTES] = 1ull << MM_COL_FWD_BYTES | 1ull << MM_COL_REV_BYTES,
	[D_TOTAL_PACKETS] = 1ull << MM_COL_FWD_PACKETS | 1ull << MM_COL_REV_PACKETS,
	[D_FLAGS_UNION] = 1ull << MM_COL_FWD_TCP_FLAGS | 1ull << MM_COL_REV_TCP_FLAGS,
	[D_DURATION] = 1ull << MM_COL_FIRST_NS | 1ull << MM_COL_LAST_NS,
	[D_PPS] = 1ull << MM_COL_FIRST_NS | 1ull << MM_COL_LAST_NS | 1ull << MM_COL_FWD_PACKETS |
		  1ull << MM_COL_REV_PACKETS,
	[D_BPS] = 1ull << MM_COL_FIRST_NS | 1ull << MM_COL_LAST_NS | 1ull << MM_COL_FWD_BYTES |
		  1ull << MM_COL_REV_BYTES,
	[D_BPP] = 1ull << MM_COL_FWD_PACKETS | 1ull << MM_COL_REV_PACKETS | 1ull << MM_COL_FWD_BYTES |
		  1ull << MM_COL_REV_BYTES,
	[D_FAMILY] = 1ull << MM_COL_SRC_HI | 1ull << MM_COL_SRC_LO,
};

/* Where one side of a numeric field lives: a column, or a derived value. */
static void numeric_source(enum mm_qfield field, enum mm_qdir side, unsigned *col, enum derived *d)
{
	bool src = side == MM_QD_SRC, dst = side == MM_QD_DST;

	*d = D_COUNT_;
	switch (field) {
	case MM_QF_PORT: *col = src ? MM_COL_SRC_PORT : MM_COL_DST_PORT; break;
	case MM_QF_AS: *col = src ? MM_COL_SRC_AS : MM_COL_DST_AS; break;
	case MM_QF_COUNTRY: *col = src ? MM_COL_SRC_COUNTRY : MM_COL_DST_COUNTRY; break;
	case MM_QF_IF: *col = side == MM_QD_IN ? MM_COL_IN_IF : MM_COL_OUT_IF; break;
	case MM_QF_PROTO: *col = MM_COL_PROTO; break;
	case MM_QF_VLAN: *col = MM_COL_VLAN; break;
	case MM_QF_SENSOR: *col = MM_COL_SENSOR_ID; break;
	case MM_QF_END: *col = MM_COL_END_REASON; break;
	case MM_QF_BYTES:
		*col = src ? MM_COL_FWD_BYTES : MM_COL_REV_BYTES;
		*d = src || dst ? D_COUNT_ : D_TOTAL_BYTES;
		break;
	case MM_QF_PACKETS:
		*col = src ? MM_COL_FWD_PACKETS : MM_COL_REV_PACKETS;
		*d = src || dst ? D_COUNT_ : D_TOTAL_PACKETS;
		break;
	case MM_QF_FLAGS:
		*col = src ? MM_COL_FWD_TCP_FLAGS : MM_COL_REV_TCP_FLAGS;
		*d = src || dst ? D_COUNT_ : D_FLAGS_UNION;
		break;
	case MM_QF_DURATION: *d = D_DURATION; break;
	case MM_QF_PPS: *d = D_PPS; break;
	case MM_QF_BPS: *d = D_BPS; break;
	case MM_QF_BPP: *d = D_BPP; break;
	case MM_QF_FAMILY: *d = D_FAMILY; break;
	case MM_QF_HOST:
	case MM_QF_NET:
	case MM_QF_COUNT_: MM_BUG(true);
	}
}

/* A constant as the column holds it: countries are "letter0 << 8 | letter1". */
static uint64_t numeric_constant(enum mm_qfield field, const union mm_qvalue *v)
{
	if (field == MM_QF_COUNTRY)
		return (uint64_t)(uint8_t)v->country[0] << 8 | (uint8_t)v->country[1];
	return v->u;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static uint64_t mask_bits(unsigned bits)
{
	return bits == 0 ? 0 : bits >= 64 ? UINT64_MAX : ~(UINT64_MAX >> bits);
}

static void net_mask_of(const struct mm_prefix *p, struct net_mask *out)
{
	unsigned bits = mm_prefix_bits128(p);

	out->mask_hi = mask_bits(bits);
	out->mask_lo = mask_bits(bits > 64 ? bits - 64 : 0);
	out->hi = mm_addr_be64_(p->addr.b) & out->mask_hi;
	out->lo = mm_addr_be64_(p->addr.b + 8) & out->mask_lo;
}

/* The values of one predicate, shared by both of its sides. */
static void compile_values(struct program *p, const struct mm_qnode *n, struct cnode *leaf)
{
	MM_BUG(p->n_nums + n->n_values > p->cap_nums || p->n_nets + n->n_values > p->cap_nets);
	if (n->field == MM_QF_HOST || n->field == MM_QF_NET) {
		struct net_mask *nets = &p->nets[p->n_nets];

		for (size_t i = 0; i < n->n_values; i++) {
			struct mm_prefix host;

			if (n->field == MM_QF_NET) {
				net_mask_of(&n->values[i].prefix, &nets[i]);
				continue;
			}
			host.addr = n->values[i].addr;
			host.len = mm_addr_is_v4(&host.addr) ? 32 : 128;
			net_mask_of(&host, &nets[i]);
		}
		p->n_nets += n->n_values;
		leaf->nets = nets;
		leaf->n_nets = n->n_values;
		return;
	}
	uint64_t *nums = &p->nums[p->n_nums];
	size_t kept = 0;

	for (size_t i = 0; i < n->n_values; i++)
		nums[i] = numeric_constant(n->field, &n->values[i]);
	if (n->op == MM_QO_IN && n->n_values > 0) {
		qsort(nums, n->n_values, sizeof(*nums), cmp_u64);
		for (size_t i = 0; i < n->n_values; i++)
			if (kept == 0 || nums[kept - 1] != nums[i])
				nums[kept++] = nums[i];
	} else {
		kept = n->n_values;
	}
	p->n_nums += n->n_values;
	leaf->values = nums;
	leaf->n_values = kept;
}

static struct cnode *compile_side(struct program *p, const struct mm_qnode *n, enum mm_qdir side,
				  const struct cnode *shared)
{
	bool addr = n->field == MM_QF_HOST || n->field == MM_QF_NET;
	struct cnode *leaf = program_node(p, addr ? C_ADDR : C_NUM);

	leaf->op = n->op;
	if (shared) {
		leaf->values = shared->values;
		leaf->n_values = shared->n_values;
		leaf->nets = shared->nets;
		leaf->n_nets = shared->n_nets;
	} else {
		compile_values(p, n, leaf);
	}
	if (addr) {
		bool src = side == MM_QD_SRC;

		leaf->col_hi = src ? MM_COL_SRC_HI : MM_COL_DST_HI;
		leaf->col_lo = src ? MM_COL_SRC_LO : MM_COL_DST_LO;
		return leaf;
	}
	numeric_source(n->field, side, &leaf->col, &leaf->derived);
	return leaf;
}

/* "port 22" is src or dst; "src and dst port 22" both; interfaces pair in/out the same way. */
static struct cnode *compile_predicate(struct program *p, const struct mm_qnode *n)
{
	enum mm_qdir first = n->field == MM_QF_IF ? MM_QD_IN : MM_QD_SRC;
	enum mm_qdir second = n->field == MM_QF_IF ? MM_QD_OUT : MM_QD_DST;
	struct cnode *pair, *a;

	if (n->dir != MM_QD_EITHER && n->dir != MM_QD_BOTH)
		return compile_side(p, n, n->dir, NULL);
	pair = program_node(p, n->dir == MM_QD_EITHER ? C_OR : C_AND);
	a = compile_side(p, n, first, NULL);
	append_child(pair, a);
	append_child(pair, compile_side(p, n, second, a));
	return pair;
}

static struct cnode *compile_node(struct program *p, const struct mm_qnode *n)
{
	static const enum cnode_kind kinds[] = { [MM_QN_ANY] = C_ANY, [MM_QN_NOT] = C_NOT, [MM_QN_AND] = C_AND,
						 [MM_QN_OR] = C_OR };
	struct cnode *c;

	if (n->kind == MM_QN_PRED)
		return compile_predicate(p, n);
	c = program_node(p, kinds[n->kind]);
	for (const struct mm_qnode *child = n->first_child; child; child = child->next)
		append_child(c, compile_node(p, child));
	return c;
}

static unsigned node_depth(const struct cnode *n)
{
	unsigned deepest = 0;

	for (const struct cnode *c = n->first_child; c; c = c->next) {
		unsigned d = node_depth(c);
		deepest = d > deepest ? d : deepest;
	}
	return n->kind == C_AND || n->kind == C_OR ? deepest + 1 : deepest;
}

static struct cnode *time_term(struct program *p, unsigned col, enum mm_qop op, uint64_t bound)
{
	struct cnode *leaf = program_node(p, C_NUM);

	MM_BUG(p->n_nums == p->cap_nums);
	p->nums[p->n_nums] = bound;
	leaf->values = &p->nums[p->n_nums++];
	leaf->n_values = 1;
	leaf->col = col;
	leaf->op = op;
	return leaf;
}

/*
 * The filter and the time range ("overlaps [since, until]": first_ns <=
 * until and last_ns >= since) as one tree, so zone maps prune both alike.
 */
static int program_compile(struct program *p, const struct mm_query *q, uint64_t since_ns, uint64_t until_ns)
{
	size_t n_nodes = 4, n_values = 2;
	struct cnode *top;

	memset(p, 0, sizeof(*p));
	if (mm_query_check(q) < 0)
		return MM_EINVAL;
	count_ast(mm_query_root(q), &n_nodes, &n_values);
	p->nodes = calloc(n_nodes, sizeof(*p->nodes));
	p->nums = calloc(n_values, sizeof(*p->nums));
	p->nets = calloc(n_values, sizeof(*p->nets));
	if (!p->nodes || !p->nums || !p->nets) {
		program_release(p);
		return mm_fail(MM_ENOMEM, "query: out of memory compiling a filter of %zu nodes", n_nodes);
	}
	p->cap_nodes = n_nodes;
	p->cap_nums = n_values;
	p->cap_nets = n_values;
	p->root = compile_node(p, mm_query_root(q));
	if (since_ns > 0 || until_ns < UINT64_MAX) {
		top = program_node(p, C_AND);
		append_child(top, time_term(p, MM_COL_FIRST_NS, MM_QO_LE, until_ns));
		append_child(top, time_term(p, MM_COL_LAST_NS, MM_QO_GE, since_ns));
		append_child(top, p->root);
		p->root = top;
	}
	p->depth = node_depth(p->root) + 1;
	return 0;
}

/* --- zone maps: never, maybe or always per node and chunk ----------------- */

enum grade { G_NEVER, G_MAYBE, G_ALWAYS };

static enum grade grade_not(enum grade g)
{
	return g == G_NEVER ? G_ALWAYS : g == G_ALWAYS ? G_NEVER : G_MAYBE;
}

/* Every value in [lo, hi] against the constant c. */
static enum grade grade_range(enum mm_qop op, uint64_t lo, uint64_t hi, uint64_t c)
{
	switch (op) {
	case MM_QO_EQ: return c < lo || c > hi ? G_NEVER : lo == hi ? G_ALWAYS : G_MAYBE;
	case MM_QO_NE: return grade_not(grade_range(MM_QO_EQ, lo, hi, c));
	case MM_QO_LT: return hi < c ? G_ALWAYS : lo >= c ? G_NEVER : G_MAYBE;
	case MM_QO_LE: return hi <= c ? G_ALWAYS : lo > c ? G_NEVER : G_MAYBE;
	case MM_QO_GT: return grade_not(grade_range(MM_QO_LE, lo, hi, c));
	case MM_QO_GE: return grade_not(grade_range(MM_QO_LT, lo, hi, c));
	case MM_QO_IN:
	case MM_QO_HAS: break;
	}
	return G_MAYBE;
}

static enum grade grade_num(const struct cnode *n, const struct mm_segment *seg, uint32_t k)
{
	uint64_t lo, hi;
	enum grade g = G_NEVER;

	if (n->derived < D_COUNT_)
		return G_MAYBE;
	mm_segment_zone(seg, n->col, k, &lo, &hi);
	if (n->op == MM_QO_HAS)
		return lo == hi ? ((lo & n->values[0]) == n->values[0] ? G_ALWAYS : G_NEVER) : G_MAYBE;
	if (n->op != MM_QO_IN)
		return grade_range(n->op, lo, hi, n->values[0]);
	for (size_t i = 0; i < n->n_values && g != G_ALWAYS; i++) {
		enum grade one = grade_range(MM_QO_EQ, lo, hi, n->values[i]);
		g = one > g ? one : g;
	}
	return g;
}

/*
 * A row matches a net when its hi half is inside the net's hi range and,
 * for nets longer than /64, its lo half inside the lo range. Zone maps are
 * per column, so "always" needs the hi half constant.
 */
static enum grade grade_net(const struct net_mask *m, uint64_t hlo, uint64_t hhi, uint64_t llo, uint64_t lhi)
{
	uint64_t top = m->hi | ~m->mask_hi, lo_top = m->lo | ~m->mask_lo;

	if (hhi < m->hi || hlo > top || lhi < m->lo || llo > lo_top)
		return G_NEVER;
	if (hlo >= m->hi && hhi <= top && (m->mask_lo == 0 || (hlo == hhi && llo >= m->lo && lhi <= lo_top)))
		return G_ALWAYS;
	return G_MAYBE;
}

static enum grade grade_addr(const struct cnode *n, const struct mm_segment *seg, uint32_t k)
{
	uint64_t hlo, hhi, llo, lhi;
	enum grade g = G_NEVER;

	mm_segment_zone(seg, n->col_hi, k, &hlo, &hhi);
	mm_segment_zone(seg, n->col_lo, k, &llo, &lhi);
	for (size_t i = 0; i < n->n_nets && g != G_ALWAYS; i++) {
		enum grade one = grade_net(&n->nets[i], hlo, hhi, llo, lhi);
		g = one > g ? one : g;
	}
	return g;
}

/* Grades every node into grades[node->index]; returns the node's grade. */
static enum grade grade_node(const struct cnode *n, const struct mm_segment *seg, uint32_t k, uint8_t *grades)
{
	enum grade g = G_MAYBE;

	switch (n->kind) {
	case C_ANY: g = G_ALWAYS; break;
	case C_NOT: g = grade_not(grade_node(n->first_child, seg, k, grades)); break;
	case C_AND:
		g = G_ALWAYS;
		for (const struct cnode *c = n->first_child; c; c = c->next) {
			enum grade one = grade_node(c, seg, k, grades);
			g = one < g ? one : g;
		}
		break;
	case C_OR:
		g = G_NEVER;
		for (const struct cnode *c = n->first_child; c; c = c->next) {
			enum grade one = grade_node(c, seg, k, grades);
			g = one > g ? one : g;
		}
		break;
	case C_NUM: g = grade_num(n, seg, k); break;
	case C_ADDR: g = grade_addr(n, seg, k); break;
	}
	grades[n->index] = (uint8_t)g;
	return g;
}

/* --- per-thread chunk state ----------------------------------------------- */

/* One worker's view of the chunk it is on: columns decoded on first use. */
struct chunk_view {
	const struct mm_segment *seg;
	uint32_t k;
	size_t n_rows;
	uint64_t decoded;                  /* bit per column decoded for this chunk */
	unsigned derived_done;             /* bit per derived value computed */
	void *col[MM_STORE_N_COLUMNS];     /* max_rows values each, allocated on first use */
	uint64_t *derived[D_COUNT_];
	struct mm_store_scratch *scratch;
	uint32_t max_rows;
};

static void chunk_view_release(struct chunk_view *v)
{
	for (unsigned c = 0; c < MM_STORE_N_COLUMNS; c++)
		free(v->col[c]);
	for (unsigned d = 0; d < D_COUNT_; d++)
		free(v->derived[d]);
	mm_store_scratch_free(v->scratch);
}

static void chunk_view_start(struct chunk_view *v, const struct mm_segment *seg, uint32_t k)
{
	v->seg = seg;
	v->k = k;
	v->n_rows = mm_segment_chunk_rows(seg, k);
	v->decoded = 0;
	v->derived_done = 0;
}

static int chunk_column(struct chunk_view *v, unsigned col, const void **out)
{
	int rc;

	if (!(v->decoded >> col & 1)) {
		if (!v->col[col]) {
			v->col[col] = malloc((size_t)v->max_rows * mm_store_column_width(col));
			if (!v->col[col])
				return mm_fail(MM_ENOMEM, "query: column buffer of %" PRIu32 " rows", v->max_rows);
		}
		rc = mm_segment_decode(v->seg, col, v->k, v->scratch, v->col[col]);
		if (rc < 0)
			return rc;
		v->decoded |= 1ull << col;
	}
	*out = v->col[col];
	return 0;
}

/* Decodes every column in mask; the arrays land in v->col. */
static int chunk_columns(struct chunk_view *v, uint64_t mask)
{
	const void *unused;
	int rc;

	for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
		if (!(mask >> col & 1))
			continue;
		rc = chunk_column(v, col, &unused);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static const uint64_t *u64_column(const struct chunk_view *v, unsigned col)
{
	return v->col[col];
}

static const uint8_t *u8_column(const struct chunk_view *v, unsigned col)
{
	return v->col[col];
}

/*
 * Derived values go through the reference's own accessors on a flow that
 * holds just the fields they read, so rounding and saturation cannot drift.
 * Each case reads only the columns derived_columns[] names for it.
 */
static void derive_rows(struct chunk_view *v, enum derived d, uint64_t *out)
{
	const uint64_t *first = u64_column(v, MM_COL_FIRST_NS), *last = u64_column(v, MM_COL_LAST_NS);
	const uint64_t *fp = u64_column(v, MM_COL_FWD_PACKETS), *rp = u64_column(v, MM_COL_REV_PACKETS);
	const uint64_t *fb = u64_column(v, MM_COL_FWD_BYTES), *rb = u64_column(v, MM_COL_REV_BYTES);
	const uint64_t *hi = u64_column(v, MM_COL_SRC_HI), *lo = u64_column(v, MM_COL_SRC_LO);
	const uint8_t *ff = u8_column(v, MM_COL_FWD_TCP_FLAGS), *rf = u8_column(v, MM_COL_REV_TCP_FLAGS);
	struct mm_flow f;
	size_t n = v->n_rows;

	memset(&f, 0, sizeof(f));
	switch (d) {
	case D_TOTAL_BYTES: for (size_t i = 0; i < n; i++) out[i] = fb[i] + rb[i]; break;
	case D_TOTAL_PACKETS: for (size_t i = 0; i < n; i++) out[i] = fp[i] + rp[i]; break;
	case D_FLAGS_UNION: for (size_t i = 0; i < n; i++) out[i] = ff[i] | rf[i]; break;
	case D_FAMILY:
		for (size_t i = 0; i < n; i++)
			out[i] = hi[i] == 0 && lo[i] >> 32 == 0xffff ? 4 : 6;
		break;
	case D_DURATION:
		for (size_t i = 0; i < n; i++) {
			f.first_ns = first[i];
			f.last_ns = last[i];
			out[i] = mm_query_flow_duration_ns(&f);
		}
		break;
	case D_PPS:
		for (size_t i = 0; i < n; i++) {
			f.first_ns = first[i];
			f.last_ns = last[i];
			f.fwd_packets = fp[i];
			f.rev_packets = rp[i];
			out[i] = mm_query_flow_pps(&f);
		}
		break;
	case D_BPS:
		for (size_t i = 0; i < n; i++) {
			f.first_ns = first[i];
			f.last_ns = last[i];
			f.fwd_bytes = fb[i];
			f.rev_bytes = rb[i];
			out[i] = mm_query_flow_bps(&f);
		}
		break;
	case D_BPP:
		for (size_t i = 0; i < n; i++) {
			f.fwd_packets = fp[i];
			f.rev_packets = rp[i];
			f.fwd_bytes = fb[i];
			f.rev_bytes = rb[i];
			out[i] = mm_query_flow_bpp(&f);
		}
		break;
	case D_COUNT_: MM_BUG(true);
	}
}

static int chunk_derived(struct chunk_view *v, enum derived d, const uint64_t **out)
{
	uint64_t need = derived_columns[d];
	int rc;

	if (!(v->derived_done >> d & 1)) {
		if (!v->derived[d]) {
			v->derived[d] = malloc((size_t)v->max_rows * sizeof(uint64_t));
			if (!v->derived[d])
				return mm_fail(MM_ENOMEM, "query: derived buffer of %" PRIu32 " rows", v->max_rows);
		}
		rc = chunk_columns(v, need);
		if (rc < 0)
			return rc;
		derive_rows(v, d, v->derived[d]);
		v->derived_done |= 1u << d;
	}
	*out = v->derived[d];
	return 0;
}

/* --- mask kernels: one tight loop per operator and width ------------------ */

/*
 * Values are at most max (the column width's range). A constant beyond it
 * decides the comparison for every row, so the typed loops below only ever
 * see constants of their own width.
 */
static void fill_beyond_width(enum mm_qop op, size_t n, uint8_t *m)
{
	bool all = op == MM_QO_NE || op == MM_QO_LT || op == MM_QO_LE;

	memset(m, all, n);
}

#define DEFINE_COMPARE(name, type)                                                          \
	static void name(const type *v, size_t n, enum mm_qop op, type c, uint8_t *m)        \
	{                                                                                      \
		switch (op) {                                                                  \
		case MM_QO_EQ: for (size_t i = 0; i < n; i++) m[i] = v[i] == c; break;         \
		case MM_QO_NE: for (size_t i = 0; i < n; i++) m[i] = v[i] != c; break;         \
		case MM_QO_LT: for (size_t i = 0; i < n; i++) m[i] = v[i] < c; break;          \
		case MM_QO_LE: for (size_t i = 0; i < n; i++) m[i] = v[i] <= c; break;         \
		case MM_QO_GT: for (size_t i = 0; i < n; i++) m[i] = v[i] > c; break;          \
		case MM_QO_GE: for (size_t i = 0; i < n; i++) m[i] = v[i] >= c; break;         \
		case MM_QO_HAS: for (size_t i = 0; i < n; i++) m[i] = (v[i] & c) == c; break;  \
		case MM_QO_IN: MM_BUG(true); break;                                            \
		}                                                                              \
	}

DEFINE_COMPARE(compare_u8, uint8_t)
DEFINE_COMPARE(compare_u16, uint16_t)
DEFINE_COMPARE(compare_u32, uint32_t)
DEFINE_COMPARE(compare_u64, uint64_t)

#undef DEFINE_COMPARE

static uint64_t width_max(unsigned width)
{
	return width >= 8 ? UINT64_MAX : (1ull << (8 * width)) - 1;
}

static void compare_values(const void *v, unsigned width, size_t n, enum mm_qop op, uint64_t c, uint8_t *m)
{
	if (c > width_max(width)) {
		fill_beyond_width(op, n, m);
		return;
	}
	switch (width) {
	case 1: compare_u8(v, n, op, (uint8_t)c, m); break;
	case 2: compare_u16(v, n, op, (uint16_t)c, m); break;
	case 4: compare_u32(v, n, op, (uint32_t)c, m); break;
	default: compare_u64(v, n, op, c, m); break;
	}
}

static bool sorted_contains(const uint64_t *values, size_t n, uint64_t x)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (values[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && values[lo] == x;
}

static uint64_t value_at(const void *v, unsigned width, size_t i)
{
	switch (width) {
	case 1: return ((const uint8_t *)v)[i];
	case 2: return ((const uint16_t *)v)[i];
	case 4: return ((const uint32_t *)v)[i];
	default: return ((const uint64_t *)v)[i];
	}
}

/* "in [...]": a few values as OR-ed equality loops, many by binary search. */
static void compare_in(const void *v, unsigned width, size_t n, const uint64_t *values, size_t n_values,
		       uint8_t *m, uint8_t *tmp)
{
	if (n_values > IN_LINEAR_MAX) {
		for (size_t i = 0; i < n; i++)
			m[i] = sorted_contains(values, n_values, value_at(v, width, i));
		return;
	}
	memset(m, 0, n);
	for (size_t j = 0; j < n_values; j++) {
		compare_values(v, width, n, MM_QO_EQ, values[j], tmp);
		for (size_t i = 0; i < n; i++)
			m[i] |= tmp[i];
	}
}

static void match_nets(const uint64_t *hi, const uint64_t *lo, size_t n, const struct net_mask *nets,
		       size_t n_nets, uint8_t *m)
{
	memset(m, 0, n);
	for (size_t j = 0; j < n_nets; j++) {
		const struct net_mask nm = nets[j];

		for (size_t i = 0; i < n; i++)
			m[i] |= ((hi[i] & nm.mask_hi) == nm.hi) & ((lo[i] & nm.mask_lo) == nm.lo);
	}
}

static bool any_set(const uint8_t *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (m[i])
			return true;
	return false;
}

static bool all_set(const uint8_t *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!m[i])
			return false;
	return true;
}

/* --- evaluation of the compiled tree over one chunk ----------------------- */

struct evaluator {
	const struct program *prog;
	struct chunk_view view;
	uint8_t *grades;   /* per program node, for the current chunk */
	uint8_t *masks;    /* prog->depth scratch masks of max_rows bytes */
	uint8_t *tmp;      /* one more, for "in" lists */
	uint8_t *result;   /* the filter's mask */
	uint32_t *sel;     /* selected row numbers */
};

static int eval_leaf(struct evaluator *e, const struct cnode *n, uint8_t *out)
{
	struct chunk_view *v = &e->view;
	const void *a, *b;
	unsigned width = 8;
	int rc;

	if (n->kind == C_ADDR) {
		rc = chunk_column(v, n->col_hi, &a);
		if (rc == 0)
			rc = chunk_column(v, n->col_lo, &b);
		if (rc == 0)
			match_nets(a, b, v->n_rows, n->nets, n->n_nets, out);
		return rc;
	}
	if (n->derived < D_COUNT_) {
		const uint64_t *d = NULL;
		rc = chunk_derived(v, n->derived, &d);
		a = d;
	} else {
		rc = chunk_column(v, n->col, &a);
		width = mm_store_column_width(n->col);
	}
	if (rc < 0)
		return rc;
	if (n->op == MM_QO_IN)
		compare_in(a, width, v->n_rows, n->values, n->n_values, out, e->tmp);
	else
		compare_values(a, width, v->n_rows, n->op, n->values[0], out);
	return 0;
}

/*
 * Fills out with the node's mask. level picks the scratch mask for the
 * second and later children of AND/OR; an AND stops at an empty mask and
 * an OR at a full one, so later children decode nothing. A child the zone
 * maps decided cannot change a "maybe" AND (always true) or OR (always
 * false): it is skipped, costing nothing per row (e.g. the scope prefixes
 * the guard ANDs in, on chunks wholly inside them). Such a node has at
 * least one undecided child, so out is always filled.
 */
static int eval_node(struct evaluator *e, const struct cnode *n, uint8_t *out, unsigned level)
{
	size_t rows = e->view.n_rows;
	uint8_t *scratch = e->masks + (size_t)level * e->view.max_rows;
	int rc = 0;

	if (e->grades[n->index] != G_MAYBE) {
		memset(out, e->grades[n->index] == G_ALWAYS, rows);
		return 0;
	}
	switch (n->kind) {
	case C_ANY: memset(out, 1, rows); break;
	case C_NOT:
		rc = eval_node(e, n->first_child, out, level);
		for (size_t i = 0; rc == 0 && i < rows; i++)
			out[i] ^= 1;
		break;
	case C_AND:
	case C_OR: {
		uint8_t neutral = n->kind == C_AND ? G_ALWAYS : G_NEVER;
		bool first = true;

		for (const struct cnode *c = n->first_child; c && rc == 0; c = c->next) {
			if (e->grades[c->index] == neutral)
				continue;
			if (first) {
				rc = eval_node(e, c, out, level + 1);
				first = false;
				continue;
			}
			if (n->kind == C_AND ? !any_set(out, rows) : all_set(out, rows))
				break;
			rc = eval_node(e, c, scratch, level + 1);
			if (n->kind == C_AND)
				for (size_t i = 0; rc == 0 && i < rows; i++)
					out[i] &= scratch[i];
			else
				for (size_t i = 0; rc == 0 && i < rows; i++)
					out[i] |= scratch[i];
		}
		break;
	}
	case C_NUM:
	case C_ADDR: rc = eval_leaf(e, n, out); break;
	}
	return rc;
}

static int evaluator_init(struct evaluator *e, const struct program *prog, uint32_t max_rows)
{
	memset(e, 0, sizeof(*e));
	e->prog = prog;
	e->view.max_rows = max_rows;
	e->grades = calloc(prog->n_nodes, 1);
	e->masks = malloc((size_t)prog->depth * max_rows);
	e->tmp = malloc(max_rows);
	e->result = malloc(max_rows);
	e->sel = malloc((size_t)max_rows * sizeof(*e->sel));
	if (!e->grades || !e->masks || !e->tmp || !e->result || !e->sel)
		return mm_fail(MM_ENOMEM, "query: evaluation buffers for chunks of %" PRIu32 " rows", max_rows);
	return mm_store_scratch_new(&e->view.scratch);
}

static void evaluator_release(struct evaluator *e)
{
	chunk_view_release(&e->view);
	free(e->grades);
	free(e->masks);
	free(e->tmp);
	free(e->result);
	free(e->sel);
}

/* Per-thread counters, summed into the stats at the end. */
struct counts {
	uint64_t chunks_skipped, chunks_whole, rows_scanned, rows_matched;
};

/* Starts chunk k of seg and selects its matching rows into e->sel. */
static int evaluator_select(struct evaluator *e, const struct mm_segment *seg, uint32_t k, size_t *n_sel,
			    struct counts *counts)
{
	enum grade g;
	size_t n = 0;
	int rc;

	chunk_view_start(&e->view, seg, k);
	g = grade_node(e->prog->root, seg, k, e->grades);
	*n_sel = 0;
	if (g == G_NEVER) {
		counts->chunks_skipped++;
		return 0;
	}
	counts->rows_scanned += e->view.n_rows;
	if (g == G_ALWAYS) {
		counts->chunks_whole++;
		for (size_t i = 0; i < e->view.n_rows; i++)
			e->sel[i] = (uint32_t)i;
		n = e->view.n_rows;
	} else {
		rc = eval_node(e, e->prog->root, e->result, 0);
		if (rc < 0)
			return rc;
		for (size_t i = 0; i < e->view.n_rows; i++) {
			e->sel[n] = (uint32_t)i;
			n += e->result[i];
		}
	}
	counts->rows_matched += n;
	*n_sel = n;
	return 0;
}

/* --- the run: segments, chunks handed out in order, threads ---------------- */

struct run {
	struct mm_store *st;
	const struct mm_query_exec_options *opt;
	struct program prog;
	struct mm_segment **segs;
	size_t n_segs;
	size_t *first_item;  /* item number of each segment's chunk 0; n_segs + 1 entries */
	size_t n_items;
	uint32_t max_rows;
	unsigned n_threads;

	pthread_mutex_t lock;
	pthread_cond_t moved; /* next_emit advanced or the run stopped */
	size_t next_item;
	bool stop;
	int status;
	char error[512];      /* mm_last_error() is per thread: carried back here */
	struct counts counts;

	/* listing */
	int (*emit)(void *ctx, const struct mm_flow *flows, size_t n);
	void *emit_ctx;
	size_t window;        /* items taken may run this far ahead of next_emit */
	size_t next_emit;
	uint64_t emitted;
	struct pending *pending; /* window slots, item % window */

	/* aggregation */
	const struct mm_qagg *spec;
	struct mm_hash_key hash_key; /* every table's and partition's: one key, one hash per key */
	struct agg_table *tables;    /* one per thread */
	struct part_worker *parts;   /* one per thread, once the groups are partitioned */
	size_t next_part;
	bool parts_distinct;         /* the partitions' distinct records are counted now, not groups */
	atomic_size_t mem_used;
};

static void run_fail(struct run *r, int rc)
{
	if (r->status == 0) {
		r->status = rc;
		snprintf(r->error, sizeof(r->error), "%s", mm_last_error());
	}
	r->stop = true;
	pthread_cond_broadcast(&r->moved);
}

static void counts_add(struct counts *to, const struct counts *from)
{
	to->chunks_skipped += from->chunks_skipped;
	to->chunks_whole += from->chunks_whole;
	to->rows_scanned += from->rows_scanned;
	to->rows_matched += from->rows_matched;
}

static unsigned thread_count(unsigned wanted, size_t items)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = wanted ? wanted : (cpus > 0 ? (size_t)cpus : 1);

	if (n > EXEC_MAX_THREADS)
		n = EXEC_MAX_THREADS;
	if (n > items)
		n = items ? items : 1;
	return (unsigned)n;
}

static int run_open(struct run *r, struct mm_store *st, const struct mm_query *q,
		    const struct mm_query_exec_options *opt, struct mm_query_exec_stats *stats)
{
	size_t n = mm_store_segment_count(st);
	int rc;

	r->st = st;
	r->opt = opt;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->moved, NULL);
	rc = program_compile(&r->prog, q, opt->since_ns, opt->until_ns);
	if (rc < 0)
		return rc;
	r->segs = calloc(n + 1, sizeof(*r->segs));
	r->first_item = calloc(n + 1, sizeof(*r->first_item));
	if (!r->segs || !r->first_item)
		return mm_fail(MM_ENOMEM, "query: scan of %zu segments", n);
	for (size_t i = 0; i < n; i++) {
		struct mm_store_segment_info info;
		struct mm_segment *seg;

		mm_store_segment_info(st, i, &info);
		stats->segments++;
		if (info.min_first_ns > opt->until_ns || info.max_last_ns < opt->since_ns) {
			stats->segments_skipped++;
			continue;
		}
		rc = mm_store_segment_open(st, i, &seg);
		if (rc < 0)
			return rc;
		r->segs[r->n_segs] = seg;
		r->first_item[r->n_segs + 1] = r->first_item[r->n_segs] + mm_segment_chunks(seg);
		if (mm_segment_chunk_rows(seg, 0) > r->max_rows)
			r->max_rows = mm_segment_chunk_rows(seg, 0);
		stats->rows_total += mm_segment_rows(seg);
		r->n_segs++;
	}
	r->n_items = r->first_item[r->n_segs];
	stats->chunks = r->n_items;
	r->n_threads = thread_count(opt->n_threads, r->n_items);
	stats->threads = r->n_threads;
	return 0;
}

static void run_close(struct run *r, struct mm_query_exec_stats *stats)
{
	stats->chunks_skipped = r->counts.chunks_skipped;
	stats->chunks_whole = r->counts.chunks_whole;
	stats->rows_scanned = r->counts.rows_scanned;
	stats->rows_matched = r->counts.rows_matched;
	for (size_t i = 0; i < r->n_segs; i++)
		mm_segment_free(r->segs[i]);
	free(r->segs);
	free(r->first_item);
	program_release(&r->prog);
	pthread_cond_destroy(&r->moved);
	pthread_mutex_destroy(&r->lock);
}

/* Segment of an item; items only move forward per thread, so *seg is a cursor. */
static void item_position(const struct run *r, size_t item, size_t *seg, uint32_t *k)
{
	while (r->first_item[*seg + 1] <= item)
		(*seg)++;
	*k = (uint32_t)(item - r->first_item[*seg]);
}

struct worker {
	struct run *run;
	unsigned index;
	pthread_t tid;
	int (*body)(struct worker *w);
	struct evaluator eval;
	struct counts counts;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->run;
	int rc = evaluator_init(&w->eval, &r->prog, r->max_rows ? r->max_rows : 1);

	if (rc == 0)
		rc = w->body(w);
	pthread_mutex_lock(&r->lock);
	if (rc != 0)
		run_fail(r, rc);
	counts_add(&r->counts, &w->counts);
	pthread_mutex_unlock(&r->lock);
	evaluator_release(&w->eval);
	return NULL;
}

/* Runs body on n_threads workers, the caller being worker 0. Returns the run's status. */
static int run_workers(struct run *r, int (*body)(struct worker *w))
{
	struct worker *workers = calloc(r->n_threads, sizeof(*workers));
	unsigned started;

	if (!workers)
		return mm_fail(MM_ENOMEM, "query: %u worker threads", r->n_threads);
	for (unsigned i = 0; i < r->n_threads; i++)
		workers[i] = (struct worker){ .run = r, .index = i, .body = body };
	for (started = 1; started < r->n_threads; started++) {
		if (pthread_create(&workers[started].tid, NULL, worker_main, &workers[started]) != 0) {
			pthread_mutex_lock(&r->lock);
			run_fail(r, mm_fail(MM_EIO, "query: cannot start worker thread %u", started));
			pthread_mutex_unlock(&r->lock);
			break;
		}
	}
	worker_main(&workers[0]);
	for (unsigned i = 1; i < started; i++)
		pthread_join(workers[i].tid, NULL);
	free(workers);
	if (r->status != 0)
		return mm_fail(r->status, "%s", r->error);
	return 0;
}

/* --- listing --------------------------------------------------------------- */

/* A finished chunk waiting for the chunks before it to be written. */
struct pending {
	bool done;
	struct mm_flow *flows; /* max_rows entries once a chunk with matches used the slot */
	size_t n;
};

/* Writes every finished chunk at the head of the order; called with the lock held. */
static void emit_ready(struct run *r)
{
	while (!r->stop && r->next_emit < r->n_items) {
		struct pending *p = &r->pending[r->next_emit % r->window];
		size_t n = p->n;
		int rc;

		if (!p->done)
			break;
		if (r->opt->limit && n > r->opt->limit - r->emitted)
			n = (size_t)(r->opt->limit - r->emitted);
		rc = n ? r->emit(r->emit_ctx, p->flows, n) : 0;
		if (rc != 0) {
			run_fail(r, rc);
			break;
		}
		r->emitted += n;
		p->done = false;
		p->n = 0;
		r->next_emit++;
		if (r->opt->limit && r->emitted >= r->opt->limit)
			r->stop = true;
		pthread_cond_broadcast(&r->moved);
	}
}

/* Takes the next item, waiting while it would run more than a window ahead of the writer. */
static bool take_item(struct run *r, size_t *item)
{
	bool got = false;

	pthread_mutex_lock(&r->lock);
	while (!r->stop && r->next_item < r->n_items && r->window && r->next_item >= r->next_emit + r->window)
		pthread_cond_wait(&r->moved, &r->lock);
	if (!r->stop && r->next_item < r->n_items) {
		*item = r->next_item++;
		got = true;
	}
	pthread_mutex_unlock(&r->lock);
	return got;
}

/* Reads the chunk's flows into the slot and keeps the selected ones, in row order. */
static int gather_flows(struct worker *w, struct pending *slot, size_t n_sel)
{
	struct evaluator *e = &w->eval;
	int rc;

	if (!slot->flows) {
		slot->flows = malloc((size_t)w->run->max_rows * sizeof(*slot->flows));
		if (!slot->flows)
			return mm_fail(MM_ENOMEM, "query: listing buffer of %" PRIu32 " flows", w->run->max_rows);
	}
	rc = mm_segment_read_flows(e->view.seg, e->view.k, e->view.scratch, slot->flows);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n_sel; i++)
		slot->flows[i] = slot->flows[e->sel[i]];
	slot->n = n_sel;
	return 0;
}

static int list_body(struct worker *w)
{
	struct run *r = w->run;
	size_t item, seg = 0, n_sel;
	uint32_t k;
	int rc = 0;

	while (rc == 0 && take_item(r, &item)) {
		struct pending *slot = &r->pending[item % r->window];

		item_position(r, item, &seg, &k);
		rc = evaluator_select(&w->eval, r->segs[seg], k, &n_sel, &w->counts);
		if (rc == 0 && n_sel > 0)
			rc = gather_flows(w, slot, n_sel);
		if (rc != 0)
			break;
		pthread_mutex_lock(&r->lock);
		slot->done = true;
		emit_ready(r);
		pthread_mutex_unlock(&r->lock);
	}
	return rc;
}

int mm_query_list(struct mm_store *st, const struct mm_query *q, const struct mm_query_exec_options *opt,
		  int (*emit)(void *ctx, const struct mm_flow *flows, size_t n), void *ctx,
		  struct mm_query_exec_stats *stats_out)
{
	struct mm_query_exec_stats stats = { 0 };
	struct run r = { 0 };
	int rc = run_open(&r, st, q, opt, &stats);

	if (rc < 0)
		goto out;
	r.emit = emit;
	r.emit_ctx = ctx;
	r.window = 2 * (size_t)r.n_threads;
	r.pending = calloc(r.window, sizeof(*r.pending));
	if (!r.pending) {
		rc = mm_fail(MM_ENOMEM, "query: %zu listing slots", r.window);
		goto out;
	}
	rc = run_workers(&r, list_body);
out:
	for (size_t i = 0; r.pending && i < r.window; i++)
		free(r.pending[i].flows);
	free(r.pending);
	run_close(&r, &stats);
	if (stats_out)
		*stats_out = stats;
	return rc;
}

/* --- aggregation tables ---------------------------------------------------- */

/*
 * A set of fixed-size entries found by a key prefix of each entry: open
 * addressing over entry numbers, keyed hash (keys come from the wire).
 * Every byte it allocates is charged to the query's shared budget first.
 */
struct entry_set {
	const struct mm_hash_key *hash_key;
	atomic_size_t *mem_used;
	size_t mem_cap;
	size_t entry_size, key_len;
	unsigned char *entries;
	size_t n, cap;
	uint32_t *slots; /* 0 empty, else entry number + 1 */
	size_t n_slots;  /* a power of two, kept over twice n */
};

static int charge(struct entry_set *s, size_t bytes)
{
	size_t used = atomic_fetch_add(s->mem_used, bytes) + bytes;
	bool mib = s->mem_cap >= (1u << 20);

	if (used > s->mem_cap)
		return mm_fail(MM_ELIMIT,
			       "query: aggregation needs more than its memory cap of %zu %s; narrow the "
			       "filter or the time range, use fewer or coarser keys, or raise --max-memory",
			       s->mem_cap >> (mib ? 20 : 10), mib ? "MiB" : "KiB");
	return 0;
}

static void entry_set_release(struct entry_set *s)
{
	free(s->entries);
	free(s->slots);
}

/* Empties s and keeps its memory (and its charge) for the next use. */
static void entry_set_reset(struct entry_set *s)
{
	s->n = 0;
	if (s->slots)
		memset(s->slots, 0, s->n_slots * sizeof(*s->slots));
}

/* Keys are whole 64-bit words (bucket, 16-byte values, distinct entries): compared inline. */
static bool key_equal(const unsigned char *a, const unsigned char *b, size_t len)
{
	uint64_t diff = 0;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t x, y;

		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		diff |= x ^ y;
	}
	return diff == 0;
}

static size_t entry_probe(const struct entry_set *s, const void *key, uint64_t hash)
{
	size_t mask = s->n_slots - 1, i = hash & mask;

	while (s->slots[i] && !key_equal(s->entries + (size_t)(s->slots[i] - 1) * s->entry_size, key, s->key_len))
		i = (i + 1) & mask;
	return i;
}

static uint64_t entry_hash(const struct entry_set *s, const void *key)
{
	return mm_siphash13(s->hash_key, key, s->key_len);
}

/*
 * mm_siphash13 of n keys of len bytes (entry_hash of n keys: entry_hash_many), four at a time in vector lanes where the CPU has
 * them: the same values for a third of the time, and hashing is most of
 * what a row costs once its table and partitions are in cache.
 */
static void hash_many(const struct mm_hash_key *key, const void *const *data, size_t n, size_t len, uint64_t *out)
{
	size_t k = 0;

	for (; k + 4 <= n; k += 4)
		mm_siphash13_x4(key, data + k, len, out + k);
	for (; k < n; k++)
		out[k] = mm_siphash13(key, data[k], len);
}

static void entry_hash_many(const struct entry_set *s, const void *const *keys, size_t n, uint64_t *out)
{
	hash_many(s->hash_key, keys, n, s->key_len, out);
}

/* Entries hashed, and their new slots prefetched, before any of them is inserted when rehashing. */
#define REHASH_BLOCK 16

static int entry_set_grow(struct entry_set *s)
{
	size_t n_slots = s->n_slots ? s->n_slots * 2 : 64, cap = s->cap ? s->cap * 2 : 32;
	uint32_t *slots;
	unsigned char *entries;
	int rc;

	if (s->n + 1 >= UINT32_MAX / 2)
		return mm_fail(MM_ELIMIT, "query: aggregation of more than %u groups", UINT32_MAX / 2);
	rc = charge(s, n_slots * sizeof(*slots) + (cap - s->cap) * s->entry_size);
	if (rc < 0)
		return rc;
	slots = calloc(n_slots, sizeof(*slots));
	entries = realloc(s->entries, cap * s->entry_size);
	if (entries)
		s->entries = entries;
	if (!slots || !entries) {
		free(slots);
		return mm_fail(MM_ENOMEM, "query: out of memory for %zu aggregation groups", cap);
	}
	for (size_t e0 = 0; e0 < s->n; e0 += REHASH_BLOCK) {
		size_t nb = s->n - e0 < REHASH_BLOCK ? s->n - e0 : REHASH_BLOCK;
		const void *keys[REHASH_BLOCK];
		uint64_t hash[REHASH_BLOCK];

		for (size_t k = 0; k < nb; k++)
			keys[k] = s->entries + (e0 + k) * s->entry_size;
		entry_hash_many(s, keys, nb, hash);
		for (size_t k = 0; k < nb; k++)
			__builtin_prefetch(&slots[hash[k] & (n_slots - 1)], 1);
		for (size_t k = 0; k < nb; k++) {
			size_t j = hash[k] & (n_slots - 1);

			while (slots[j])
				j = (j + 1) & (n_slots - 1);
			slots[j] = (uint32_t)(e0 + k) + 1;
		}
	}
	/* The old slots go now: only the new array stays charged. */
	atomic_fetch_sub(s->mem_used, s->n_slots * sizeof(*slots));
	free(s->slots);
	s->slots = slots;
	s->n_slots = n_slots;
	s->cap = cap;
	return 0;
}

/*
 * Tables of millions of groups miss the cache on every probe; callers that
 * hash a block of keys first and prefetch their slots, then their entries,
 * overlap those misses instead of waiting for each in turn.
 */
static void entry_prefetch_slot(const struct entry_set *s, uint64_t hash)
{
	if (s->n_slots)
		__builtin_prefetch(&s->slots[hash & (s->n_slots - 1)]);
}

static void entry_prefetch_entry(const struct entry_set *s, uint64_t hash)
{
	uint32_t slot;

	if (!s->n_slots)
		return;
	slot = s->slots[hash & (s->n_slots - 1)];
	if (slot)
		__builtin_prefetch(s->entries + (size_t)(slot - 1) * s->entry_size);
}

/* Finds the entry whose key (of hash entry_hash()) is key, or adds one (key copied, the rest zero). */
static int entry_find_or_add_hashed(struct entry_set *s, const void *key, uint64_t hash, size_t *index,
				    bool *added)
{
	size_t slot;
	unsigned char *e;
	int rc;

	/* Slots stay over twice the entries and entries never outgrow cap. */
	if (s->n_slots == 0 || (s->n + 1) * 2 > s->n_slots || s->n == s->cap) {
		rc = entry_set_grow(s);
		if (rc < 0)
			return rc;
	}
	slot = entry_probe(s, key, hash);
	*added = s->slots[slot] == 0;
	if (!*added) {
		*index = s->slots[slot] - 1;
		return 0;
	}
	e = s->entries + s->n * s->entry_size;
	memset(e, 0, s->entry_size);
	memcpy(e, key, s->key_len);
	*index = s->n++;
	s->slots[slot] = (uint32_t)*index + 1;
	return 0;
}

static int entry_find_or_add(struct entry_set *s, const void *key, size_t *index, bool *added)
{
	return entry_find_or_add_hashed(s, key, entry_hash(s, key), index, added);
}

struct distinct_entry {
	uint32_t row;
	uint32_t which;
	union mm_qkey_value value;
};

/*
 * A group is stored compactly while aggregating: its key (bucket and the
 * spec's key values, the front of struct mm_qagg_row) then its sums, so a
 * srcip group is 48 bytes instead of a whole row's 192 and tables of
 * millions of groups stay four times smaller in memory and in cache.
 */
enum { SUM_FLOWS, SUM_PACKETS, SUM_BYTES, SUM_DISTINCT };

/* Rows whose keys are hashed and prefetched together (see entry_prefetch_slot). */
#define AGG_BLOCK 16

/* Partitioned aggregation (see "radix-partitioned aggregation" below). */
#define PART_BITS 10
#define N_PARTS (1u << PART_BITS)
#define LOCAL_TABLE_BYTES ((size_t)1 << 20)
#define LOCAL_TABLE_MAX ((size_t)16 << 20)
#define SPILL_BLOCK_MIN ((size_t)1 << 10)
#define SPILL_BLOCK_MAX ((size_t)64 << 10)

struct agg_table {
	struct entry_set rows;     /* key, then SUM_DISTINCT + n_distinct uint64_t sums */
	struct entry_set distinct; /* struct distinct_entry */
	struct spill *spill;       /* NULL until the table first empties into partitions */
	size_t limit;              /* bytes of entries and slots that make it empty into them */
	size_t limit_max;          /* what limit may grow to */
	uint64_t rows_in;          /* rows the table took since it was last emptied */
	bool direct_groups;        /* rows go straight to the partitions, not through rows */
	bool direct_distinct;      /* distinct values likewise, not through distinct */
};

static size_t memory_cap(const struct run *r)
{
	return r->opt->max_memory ? r->opt->max_memory : MM_QUERY_EXEC_DEFAULT_MEMORY;
}

/* An empty set of entries of entry_size bytes found by their first key_len, charged to r. */
static struct entry_set run_entry_set(struct run *r, size_t entry_size, size_t key_len)
{
	return (struct entry_set){ &r->hash_key, &r->mem_used, memory_cap(r), entry_size, key_len,
				   NULL, 0, 0, NULL, 0 };
}

/*
 * A group's key is packed while aggregating: the bucket (only when there
 * are buckets), then each key value in its own width (an address 16 bytes,
 * a port 2, a protocol 1), zero-padded to whole 64-bit words for
 * key_equal. A 5-tuple group is 40 bytes of key instead of 88, a --stats
 * key is empty: fewer bytes to hash, keep and write to partitions.
 */
static size_t key_width(enum mm_qkey_kind kind)
{
	switch (kind) {
	case MM_QK_SRCIP:
	case MM_QK_DSTIP:
	case MM_QK_SRCNET:
	case MM_QK_DSTNET: return sizeof(struct mm_addr);
	case MM_QK_SRCCOUNTRY:
	case MM_QK_DSTCOUNTRY: return 2;
	case MM_QK_PROTO: return sizeof(uint8_t);
	case MM_QK_SRCPORT:
	case MM_QK_DSTPORT: return sizeof(uint16_t);
	default: return sizeof(uint32_t); /* AS numbers */
	}
}

static size_t group_key_len(const struct mm_qagg *spec)
{
	size_t len = spec->every_ns ? sizeof(uint64_t) : 0;

	for (size_t i = 0; i < spec->n_keys; i++)
		len += key_width(spec->keys[i].kind);
	return (len + 7) & ~(size_t)7;
}

/* Writes one key value at p in its width; returns the next position. */
static unsigned char *pack_value(unsigned char *p, enum mm_qkey_kind kind, const union mm_qkey_value *v)
{
	size_t w = key_width(kind);

	if (w == sizeof(struct mm_addr))
		memcpy(p, v->addr.b, w);
	else if (kind == MM_QK_SRCCOUNTRY || kind == MM_QK_DSTCOUNTRY)
		memcpy(p, v->country, w);
	else
		for (size_t i = 0; i < w; i++)
			p[i] = (uint8_t)(v->u >> (8 * i));
	return p + w;
}

/* The row's bucket and key values from a packed key, the rest of the row untouched (zero). */
static void unpack_key(const struct mm_qagg *spec, const unsigned char *p, struct mm_qagg_row *row)
{
	if (spec->every_ns) {
		memcpy(&row->bucket_ns, p, sizeof(uint64_t));
		p += sizeof(uint64_t);
	}
	for (size_t j = 0; j < spec->n_keys; j++) {
		enum mm_qkey_kind kind = spec->keys[j].kind;
		size_t w = key_width(kind);

		memset(&row->key[j], 0, sizeof(row->key[j]));
		if (w == sizeof(struct mm_addr))
			memcpy(row->key[j].addr.b, p, w);
		else if (kind == MM_QK_SRCCOUNTRY || kind == MM_QK_DSTCOUNTRY)
			memcpy(row->key[j].country, p, w);
		else
			for (size_t i = 0; i < w; i++)
				row->key[j].u |= (uint32_t)p[i] << (8 * i);
		p += w;
	}
}

static size_t group_entry_size(const struct mm_qagg *spec)
{
	return group_key_len(spec) + (SUM_DISTINCT + spec->n_distinct) * sizeof(uint64_t);
}

static void agg_table_init(struct agg_table *t, const struct mm_qagg *spec, struct run *r)
{
	t->rows = run_entry_set(r, group_entry_size(spec), group_key_len(spec));
	t->distinct = run_entry_set(r, sizeof(struct distinct_entry), sizeof(struct distinct_entry));
	t->spill = NULL;
	t->limit_max = r->opt->table_max ? r->opt->table_max : LOCAL_TABLE_MAX;
	t->limit = t->limit_max < LOCAL_TABLE_BYTES ? t->limit_max : LOCAL_TABLE_BYTES;
}

static unsigned char *group_key(const struct entry_set *groups, size_t i)
{
	return groups->entries + i * groups->entry_size;
}

static uint64_t *group_sums(const struct entry_set *groups, size_t i)
{
	return (uint64_t *)(void *)(group_key(groups, i) + groups->key_len);
}

static void distinct_entry_set(struct distinct_entry *d, size_t row, uint32_t which, const union mm_qkey_value *v)
{
	memset(d, 0, sizeof(*d));
	d->row = (uint32_t)row;
	d->which = which;
	d->value = *v;
}

/* Counts d's value for its group unless already seen; hash is entry_hash() of d. */
static int add_distinct_hashed(struct agg_table *t, const struct distinct_entry *d, uint64_t hash)
{
	size_t index;
	bool added;
	int rc = entry_find_or_add_hashed(&t->distinct, d, hash, &index, &added);

	if (rc == 0 && added)
		group_sums(&t->rows, d->row)[SUM_DISTINCT + d->which]++;
	return rc;
}

static int add_distinct(struct agg_table *t, size_t row, uint32_t which, const union mm_qkey_value *v)
{
	struct distinct_entry d;

	distinct_entry_set(&d, row, which, v);
	return add_distinct_hashed(t, &d, entry_hash(&t->distinct, &d));
}

/* --- radix-partitioned aggregation ------------------------------------------ */

/*
 * A table of millions of groups misses the cache on nearly every row, and
 * one such table per thread then has to be merged on one thread. So a
 * worker's table stays small: once it outgrows LOCAL_TABLE_BYTES (about
 * what a core's L2 holds; more for keys that need a bigger table to
 * repeat, see table_spill_decide) it is emptied into N_PARTS partitions
 * chosen by the top bits of each key's hash, and the emptied table goes
 * on absorbing repeated keys. When the scan is done, each partition holds
 * every record of its keys from every thread; the threads take partitions
 * in turn and aggregate each into a table that fits the cache. A group
 * lives in one partition only, so nothing is merged across partitions:
 * each contributes the rows that can make its buckets' top n (or all of
 * them), which are then ordered once. Queries with few groups never
 * outgrow the table and keep the per-thread tables and their merge.
 *
 * Distinct values take the same road as records (group key, which
 * distinct key, value), partitioned by their own hash so that one group
 * with millions of values (--stats --distinct) still spreads over every
 * partition: a partition counts each record once and adds the count to
 * its group as a record into the group partitions, aggregated after.
 *
 * Records sit in blocks charged to the query's memory cap; a partition's
 * blocks are freed as soon as it is aggregated.
 */

/* A distinct record: the group's key, then these. */
struct distinct_tail {
	uint64_t which;
	union mm_qkey_value value;
};

_Static_assert(sizeof(struct mm_qagg_row) + sizeof(struct distinct_tail) <= SPILL_BLOCK_MIN,
	       "a block holds any record");

struct spill_block {
	struct spill_block *next;
	size_t used, cap;     /* used: set once the block is no longer its list's tail */
	unsigned char data[]; /* whole records */
};

/* The tail's free room is kept here, so appending reads the (small, hot) list array only. */
struct spill_list {
	struct spill_block *head, *tail;
	unsigned char *pos, *end; /* tail->data + tail->used, tail->data + tail->cap */
};

struct spill {
	struct spill_list groups[N_PARTS];   /* group entries: key, then sums */
	struct spill_list distinct[N_PARTS]; /* group key, then struct distinct_tail */
	uint64_t records;                    /* appended, for mm_query_exec_stats */
};

static unsigned part_of(uint64_t hash)
{
	return (unsigned)(hash >> (64 - PART_BITS));
}

/*
 * Room for a record of len bytes at *out, in list l of spill s; budget is
 * the set whose memory cap new blocks are charged to.
 */
static int spill_reserve(struct entry_set *budget, struct spill *s, struct spill_list *l, size_t len,
			 unsigned char **out)
{
	if (!l->tail || (size_t)(l->end - l->pos) < len) {
		struct spill_block *b = l->tail;
		size_t cap = !b ? SPILL_BLOCK_MIN : b->cap < SPILL_BLOCK_MAX / 2 ? b->cap * 2 : SPILL_BLOCK_MAX;
		int rc = charge(budget, sizeof(*b) + cap);

		if (rc < 0)
			return rc;
		b = malloc(sizeof(*b) + cap);
		if (!b)
			return mm_fail(MM_ENOMEM, "query: out of memory for %zu bytes of partitioned groups", cap);
		b->next = NULL;
		b->used = 0;
		b->cap = cap;
		if (l->tail) {
			l->tail->used = (size_t)(l->pos - l->tail->data);
			l->tail->next = b;
		} else {
			l->head = b;
		}
		l->tail = b;
		l->pos = b->data;
		l->end = b->data + cap;
	}
	*out = l->pos;
	l->pos += len;
	s->records++;
	/*
	 * The list's next record comes about N_PARTS records from now: have
	 * its last line (the one no record has touched yet) in cache by then.
	 */
	if ((size_t)(l->end - l->pos) >= len)
		__builtin_prefetch(l->pos + len - 1, 1);
	return 0;
}

static int spill_append(struct entry_set *budget, struct spill *s, struct spill_list *l, const void *rec,
			size_t len)
{
	unsigned char *to;
	int rc = spill_reserve(budget, s, l, len, &to);

	if (rc == 0)
		memcpy(to, rec, len);
	return rc;
}

static void spill_list_free(struct spill_list *l, atomic_size_t *mem_used)
{
	for (struct spill_block *b = l->head, *next; b; b = next) {
		next = b->next;
		atomic_fetch_sub(mem_used, sizeof(*b) + b->cap);
		free(b);
	}
	l->head = l->tail = NULL;
	l->pos = l->end = NULL;
}

static void agg_table_release(struct agg_table *t)
{
	entry_set_release(&t->rows);
	entry_set_release(&t->distinct);
	if (t->spill) {
		for (unsigned p = 0; p < N_PARTS; p++) {
			spill_list_free(&t->spill->groups[p], t->rows.mem_used);
			spill_list_free(&t->spill->distinct[p], t->rows.mem_used);
		}
		free(t->spill);
	}
}

/* Whether the table's entries and their slots (at most two per entry) pass its limit. */
static bool table_outgrew_cache(const struct agg_table *t)
{
	size_t slot = 2 * sizeof(uint32_t);

	return t->rows.n * (t->rows.entry_size + slot) + t->distinct.n * (t->distinct.entry_size + slot) >
	       t->limit;
}

#define DISTINCT_RECORD_MAX (sizeof(struct mm_qagg_row) + sizeof(struct distinct_tail))

/* Writes the distinct record (group key, which, value) at rec; returns its length. */
static size_t distinct_record(const struct agg_table *t, const void *group, uint32_t which,
			      const union mm_qkey_value *v, unsigned char *rec)
{
	size_t key_len = t->rows.key_len;
	struct distinct_tail tail = { .which = which, .value = *v };

	memcpy(rec, group, key_len);
	memcpy(rec + key_len, &tail, sizeof(tail));
	return key_len + sizeof(tail);
}

/* Appends n (at most AGG_BLOCK) distinct records of len bytes each to their partitions. */
static int spill_distinct_records(struct agg_table *t, unsigned char (*recs)[DISTINCT_RECORD_MAX], size_t n,
				  size_t len)
{
	const void *data[AGG_BLOCK];
	uint64_t hash[AGG_BLOCK];
	int rc = 0;

	for (size_t k = 0; k < n; k++)
		data[k] = recs[k];
	hash_many(t->rows.hash_key, data, n, len, hash);
	for (size_t k = 0; k < n && rc == 0; k++)
		rc = spill_append(&t->rows, t->spill, &t->spill->distinct[part_of(hash[k])], recs[k], len);
	return rc;
}

/*
 * Empties t into its partitions, distinct entries first (they name their
 * group by its number in t). Scanning workers pass recount: their groups'
 * distinct counts are dropped, the partitions count every value again.
 */
static int table_spill(struct agg_table *t, bool recount)
{
	struct entry_set *rows = &t->rows;
	size_t key_len = rows->key_len;
	size_t n_distinct = (rows->entry_size - key_len) / sizeof(uint64_t) - SUM_DISTINCT;
	int rc = 0;

	if (!t->spill) {
		rc = charge(rows, sizeof(*t->spill));
		if (rc < 0)
			return rc;
		t->spill = calloc(1, sizeof(*t->spill));
		if (!t->spill)
			return mm_fail(MM_ENOMEM, "query: out of memory for %u aggregation partitions", N_PARTS);
	}
	for (size_t i0 = 0; i0 < t->distinct.n && rc == 0; i0 += AGG_BLOCK) {
		size_t nb = t->distinct.n - i0 < AGG_BLOCK ? t->distinct.n - i0 : AGG_BLOCK, len = 0;
		unsigned char recs[AGG_BLOCK][DISTINCT_RECORD_MAX];

		for (size_t k = 0; k < nb; k++) {
			const struct distinct_entry *d = (const void *)(t->distinct.entries + (i0 + k) * sizeof(*d));

			len = distinct_record(t, group_key(rows, d->row), d->which, &d->value, recs[k]);
		}
		rc = spill_distinct_records(t, recs, nb, len);
	}
	for (size_t i0 = 0; i0 < rows->n && rc == 0; i0 += AGG_BLOCK) {
		size_t nb = rows->n - i0 < AGG_BLOCK ? rows->n - i0 : AGG_BLOCK;
		const void *keys[AGG_BLOCK];
		uint64_t hash[AGG_BLOCK];

		for (size_t k = 0; k < nb; k++)
			keys[k] = group_key(rows, i0 + k);
		entry_hash_many(rows, keys, nb, hash);
		for (size_t k = 0; k < nb; k++) {
			unsigned char *to;

			rc = spill_reserve(rows, t->spill, &t->spill->groups[part_of(hash[k])], rows->entry_size, &to);
			if (rc < 0)
				break;
			memcpy(to, keys[k], rows->entry_size);
			if (recount)
				memset(to + key_len + SUM_DISTINCT * sizeof(uint64_t), 0,
				       n_distinct * sizeof(uint64_t));
		}
	}
	entry_set_reset(rows);
	entry_set_reset(&t->distinct);
	t->rows_in = 0;
	return rc;
}

/* --- key values straight from columns -------------------------------------- */

/* Where one aggregation key reads, decoded for the current chunk. */
struct key_source {
	const struct mm_qkey *key;
	const uint64_t *hi, *lo; /* address keys */
	const void *num;          /* other keys */
	unsigned width;
	struct net_mask v4, v6;   /* net keys: the masks for each family */
};

static void key_columns(const struct mm_qkey *key, unsigned *a, unsigned *b)
{
	static const unsigned cols[][2] = {
		[MM_QK_SRCIP] = { MM_COL_SRC_HI, MM_COL_SRC_LO },
		[MM_QK_DSTIP] = { MM_COL_DST_HI, MM_COL_DST_LO },
		[MM_QK_SRCNET] = { MM_COL_SRC_HI, MM_COL_SRC_LO },
		[MM_QK_DSTNET] = { MM_COL_DST_HI, MM_COL_DST_LO },
		[MM_QK_SRCPORT] = { MM_COL_SRC_PORT, MM_STORE_N_COLUMNS },
		[MM_QK_DSTPORT] = { MM_COL_DST_PORT, MM_STORE_N_COLUMNS },
		[MM_QK_PROTO] = { MM_COL_PROTO, MM_STORE_N_COLUMNS },
		[MM_QK_SRCAS] = { MM_COL_SRC_AS, MM_STORE_N_COLUMNS },
		[MM_QK_DSTAS] = { MM_COL_DST_AS, MM_STORE_N_COLUMNS },
		[MM_QK_SRCCOUNTRY] = { MM_COL_SRC_COUNTRY, MM_STORE_N_COLUMNS },
		[MM_QK_DSTCOUNTRY] = { MM_COL_DST_COUNTRY, MM_STORE_N_COLUMNS },
	};

	*a = cols[key->kind][0];
	*b = cols[key->kind][1];
}

static void key_source_init(struct key_source *ks, const struct mm_qkey *key)
{
	struct mm_prefix p4 = { { { 0 } }, 0 }, p6 = { { { 0 } }, 0 };

	memset(ks, 0, sizeof(*ks));
	ks->key = key;
	/* A net key's masks: an IPv4 address keeps 96 + len4 bits of its mapped form. */
	mm_addr_set_v4_u32(&p4.addr, 0);
	p4.len = key->prefix_len_v4;
	p6.len = key->prefix_len_v6;
	net_mask_of(&p4, &ks->v4);
	net_mask_of(&p6, &ks->v6);
}

static int key_source_load(struct key_source *ks, struct chunk_view *v)
{
	unsigned a, b;
	const void *x, *y = NULL;
	int rc;

	key_columns(ks->key, &a, &b);
	rc = chunk_column(v, a, &x);
	if (rc == 0 && b < MM_STORE_N_COLUMNS)
		rc = chunk_column(v, b, &y);
	if (rc < 0)
		return rc;
	ks->num = x;
	ks->width = mm_store_column_width(a);
	ks->hi = x;
	ks->lo = y;
	return 0;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static void key_value_at(const struct key_source *ks, size_t i, union mm_qkey_value *out)
{
	uint64_t v;

	memset(out, 0, sizeof(*out));
	switch (ks->key->kind) {
	case MM_QK_SRCNET:
	case MM_QK_DSTNET: {
		bool v4 = ks->hi[i] == 0 && ks->lo[i] >> 32 == 0xffff;
		const struct net_mask *m = v4 ? &ks->v4 : &ks->v6;
		put_be64(out->addr.b, ks->hi[i] & m->mask_hi);
		put_be64(out->addr.b + 8, ks->lo[i] & m->mask_lo);
		break;
	}
	case MM_QK_SRCIP:
	case MM_QK_DSTIP:
		put_be64(out->addr.b, ks->hi[i]);
		put_be64(out->addr.b + 8, ks->lo[i]);
		break;
	case MM_QK_SRCCOUNTRY:
	case MM_QK_DSTCOUNTRY:
		v = value_at(ks->num, ks->width, i);
		out->country[0] = (char)(v >> 8);
		out->country[1] = (char)v;
		break;
	default: out->u = (uint32_t)value_at(ks->num, ks->width, i); break;
	}
}

/* --- aggregation ------------------------------------------------------------ */

struct agg_chunk {
	struct key_source keys[MM_QAGG_MAX_KEYS];
	struct key_source distinct[MM_QAGG_MAX_DISTINCT];
	const uint64_t *first, *fp, *rp, *fb, *rb;
	const uint32_t *rate; /* sampling rates, when the spec scales by them */
};

static int agg_chunk_load(struct agg_chunk *c, const struct mm_qagg *spec, struct chunk_view *v)
{
	int rc = chunk_columns(v, 1ull << MM_COL_FWD_PACKETS | 1ull << MM_COL_REV_PACKETS |
					  1ull << MM_COL_FWD_BYTES | 1ull << MM_COL_REV_BYTES |
					  (spec->every_ns ? 1ull << MM_COL_FIRST_NS : 0) |
					  (spec->scale_sampled ? 1ull << MM_COL_SAMPLING_RATE : 0));

	for (size_t i = 0; rc == 0 && i < spec->n_keys; i++)
		rc = key_source_load(&c->keys[i], v);
	for (size_t i = 0; rc == 0 && i < spec->n_distinct; i++)
		rc = key_source_load(&c->distinct[i], v);
	if (rc < 0)
		return rc;
	c->first = spec->every_ns ? u64_column(v, MM_COL_FIRST_NS) : NULL;
	c->fp = u64_column(v, MM_COL_FWD_PACKETS);
	c->rp = u64_column(v, MM_COL_REV_PACKETS);
	c->fb = u64_column(v, MM_COL_FWD_BYTES);
	c->rb = u64_column(v, MM_COL_REV_BYTES);
	c->rate = spec->scale_sampled ? (const uint32_t *)v->col[MM_COL_SAMPLING_RATE] : NULL;
	return 0;
}


struct agg_block {
	unsigned char key[AGG_BLOCK][sizeof(struct mm_qagg_row)]; /* packed (group_key_len) */
	uint64_t hash[AGG_BLOCK];
	size_t group[AGG_BLOCK];
	bool repeat[AGG_BLOCK];            /* same key as the row before: no lookup */
	struct distinct_entry d[AGG_BLOCK];
};

static unsigned char *block_key(struct agg_block *b, size_t k)
{
	return b->key[k];
}

/* Finds or adds the groups of a block's rows: hash and prefetch all, then probe. */
static int block_groups(struct agg_table *t, struct agg_block *b, size_t nb)
{
	struct entry_set *rows = &t->rows;
	const void *keys[AGG_BLOCK];
	uint64_t hash[AGG_BLOCK];
	size_t n_new = 0;
	bool added;
	int rc;

	for (size_t k = 0; k < nb; k++)
		if (!b->repeat[k])
			keys[n_new++] = block_key(b, k);
	entry_hash_many(rows, keys, n_new, hash);
	n_new = 0;
	for (size_t k = 0; k < nb; k++)
		if (!b->repeat[k]) {
			b->hash[k] = hash[n_new++];
			entry_prefetch_slot(rows, b->hash[k]);
		}
	for (size_t k = 0; k < nb; k++)
		if (!b->repeat[k])
			entry_prefetch_entry(rows, b->hash[k]);
	for (size_t k = 0; k < nb; k++) {
		if (b->repeat[k]) {
			b->group[k] = b->group[k - 1];
			continue;
		}
		rc = entry_find_or_add_hashed(rows, block_key(b, k), b->hash[k], &b->group[k], &added);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Adds the block's values of distinct key j to their groups' sets, prefetching as above. */
static int block_distinct(struct agg_table *t, const struct agg_chunk *c, struct agg_block *b,
			  const uint32_t *sel, size_t nb, uint32_t j)
{
	const void *keys[AGG_BLOCK];
	int rc;

	for (size_t k = 0; k < nb; k++) {
		union mm_qkey_value v;

		key_value_at(&c->distinct[j], sel[k], &v);
		distinct_entry_set(&b->d[k], b->group[k], j, &v);
		keys[k] = &b->d[k];
	}
	entry_hash_many(&t->distinct, keys, nb, b->hash);
	for (size_t k = 0; k < nb; k++)
		entry_prefetch_slot(&t->distinct, b->hash[k]);
	for (size_t k = 0; k < nb; k++)
		entry_prefetch_entry(&t->distinct, b->hash[k]);
	for (size_t k = 0; k < nb; k++) {
		rc = add_distinct_hashed(t, &b->d[k], b->hash[k]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A row's packets and bytes, scaled by its sampling rate when the spec says so. */
static void row_amounts(const struct mm_qagg *spec, const struct agg_chunk *c, size_t i, uint64_t *packets,
			uint64_t *bytes)
{
	uint64_t m = c->rate ? mm_qagg_scale(spec, c->rate[i]) : 1;

	*packets = (c->fp[i] + c->rp[i]) * m;
	*bytes = (c->fb[i] + c->rb[i]) * m;
}

/* The block's rows as group records straight into the partitions (see table_spill_decide). */
static int block_direct_groups(struct agg_table *t, const struct mm_qagg *spec, const struct agg_chunk *c,
			       const uint32_t *sel, size_t nb, struct agg_block *b)
{
	struct entry_set *rows = &t->rows;
	uint64_t sums[SUM_DISTINCT + MM_QAGG_MAX_DISTINCT] = { 0 };
	const void *keys[AGG_BLOCK];
	int rc;

	for (size_t k = 0; k < nb; k++)
		keys[k] = block_key(b, k);
	entry_hash_many(rows, keys, nb, b->hash);
	for (size_t k = 0; k < nb; k++) {
		unsigned char *to;

		rc = spill_reserve(rows, t->spill, &t->spill->groups[part_of(b->hash[k])], rows->entry_size, &to);
		if (rc < 0)
			return rc;
		sums[SUM_FLOWS] = 1;
		row_amounts(spec, c, sel[k], &sums[SUM_PACKETS], &sums[SUM_BYTES]);
		memcpy(to, block_key(b, k), rows->key_len);
		memcpy(to + rows->key_len, sums, rows->entry_size - rows->key_len);
	}
	return 0;
}

/* The block's values of distinct key j as distinct records straight into the partitions. */
static int block_direct_distinct(struct agg_table *t, const struct agg_chunk *c, const uint32_t *sel, size_t nb,
				 struct agg_block *b, uint32_t j)
{
	unsigned char recs[AGG_BLOCK][DISTINCT_RECORD_MAX];
	size_t len = 0;

	for (size_t k = 0; k < nb; k++) {
		union mm_qkey_value v;

		key_value_at(&c->distinct[j], sel[k], &v);
		len = distinct_record(t, block_key(b, k), j, &v, recs[k]);
	}
	return spill_distinct_records(t, recs, nb, len);
}

/*
 * A scanning worker's table outgrew its limit. A table that does not
 * halve what goes through it may just be too small for the query's keys
 * (65536 /24 networks): it doubles, up to limit_max. Past that,
 * it is emptied into the partitions, and goes on in front of them only
 * while it halves what goes through it; otherwise (keys barely repeat, as
 * with 5-tuples) rows and values skip it for the rest of the scan.
 */
static int table_spill_decide(struct agg_table *t, const struct mm_qagg *spec)
{
	bool poor_groups = t->rows_in < 2 * t->rows.n;
	bool poor_distinct = t->rows_in * spec->n_distinct < 2 * t->distinct.n;

	if ((poor_groups || poor_distinct) && t->limit < t->limit_max) {
		t->limit = t->limit < t->limit_max / 2 ? t->limit * 2 : t->limit_max;
		return 0;
	}
	if (!t->direct_groups && poor_groups)
		t->direct_groups = true;
	if (!t->direct_distinct && (t->direct_groups || poor_distinct))
		t->direct_distinct = true;
	return table_spill(t, true);
}

/*
 * Records that skip the table cost memory for every row. Once they hold
 * three quarters of the memory cap, the table takes every row again and
 * grows without a limit, as the per-thread tables of few groups do: a
 * query with many rows per group then still ends within the cap.
 */
static void direct_stop_near_cap(struct agg_table *t)
{
	if ((t->direct_groups || t->direct_distinct) &&
	    atomic_load_explicit(t->rows.mem_used, memory_order_relaxed) > t->rows.mem_cap / 4 * 3) {
		t->direct_groups = t->direct_distinct = false;
		t->limit = SIZE_MAX;
	}
}

/*
 * Adds the selected rows, AGG_BLOCK at a time. Rows are stored by
 * first_ns, so neighbours often share a group (always, for --stats and
 * --every): a key equal to the row before's is not looked up again.
 */
static int agg_rows(struct agg_table *t, const struct mm_qagg *spec, const struct agg_chunk *c,
		    const uint32_t *sel, size_t n_sel, struct agg_block *b)
{
	size_t key_len = t->rows.key_len;
	int rc;

	for (size_t s0 = 0; s0 < n_sel; s0 += AGG_BLOCK) {
		size_t nb = n_sel - s0 < AGG_BLOCK ? n_sel - s0 : AGG_BLOCK;

		for (size_t k = 0; k < nb; k++) {
			size_t i = sel[s0 + k];
			unsigned char *p = block_key(b, k);

			memset(p, 0, key_len);
			if (c->first) {
				uint64_t bucket = c->first[i] - c->first[i] % spec->every_ns;

				memcpy(p, &bucket, sizeof(bucket));
				p += sizeof(bucket);
			}
			for (size_t j = 0; j < spec->n_keys; j++) {
				union mm_qkey_value v;

				key_value_at(&c->keys[j], i, &v);
				p = pack_value(p, spec->keys[j].kind, &v);
			}
			b->repeat[k] = k > 0 && key_equal(block_key(b, k), block_key(b, k - 1), key_len);
		}
		if (t->direct_groups) {
			rc = block_direct_groups(t, spec, c, sel + s0, nb, b);
		} else {
			rc = block_groups(t, b, nb);
			for (size_t k = 0; k < nb && rc == 0; k++) {
				uint64_t *sums = group_sums(&t->rows, b->group[k]), packets, bytes;

				row_amounts(spec, c, sel[s0 + k], &packets, &bytes);
				sums[SUM_FLOWS]++;
				sums[SUM_PACKETS] += packets;
				sums[SUM_BYTES] += bytes;
			}
		}
		for (uint32_t j = 0; j < spec->n_distinct && rc == 0; j++)
			rc = t->direct_distinct ? block_direct_distinct(t, c, sel + s0, nb, b, j)
						: block_distinct(t, c, b, sel + s0, nb, j);
		if (rc < 0)
			return rc;
		t->rows_in += nb;
		if (table_outgrew_cache(t)) {
			rc = table_spill_decide(t, spec);
			if (rc < 0)
				return rc;
		}
		direct_stop_near_cap(t);
	}
	return 0;
}

static int agg_body(struct worker *w)
{
	struct run *r = w->run;
	struct agg_table *t = &r->tables[w->index];
	struct agg_chunk c;
	struct agg_block block;
	size_t item, seg = 0, n_sel;
	uint32_t k;
	int rc = 0;

	for (size_t i = 0; i < r->spec->n_keys; i++)
		key_source_init(&c.keys[i], &r->spec->keys[i]);
	for (size_t i = 0; i < r->spec->n_distinct; i++)
		key_source_init(&c.distinct[i], &r->spec->distinct[i]);
	while (rc == 0 && take_item(r, &item)) {
		item_position(r, item, &seg, &k);
		rc = evaluator_select(&w->eval, r->segs[seg], k, &n_sel, &w->counts);
		if (rc == 0 && n_sel > 0)
			rc = agg_chunk_load(&c, r->spec, &w->eval.view);
		if (rc == 0 && n_sel > 0)
			rc = agg_rows(t, r->spec, &c, w->eval.sel, n_sel, &block);
	}
	return rc;
}

/* Folds table from into into: sums add up, distinct values are re-counted as a union. */
static int agg_merge(struct agg_table *into, struct agg_table *from, size_t n_distinct)
{
	size_t *map = malloc((from->rows.n + 1) * sizeof(*map));
	int rc = 0;

	if (!map)
		return mm_fail(MM_ENOMEM, "query: merging %zu aggregation groups", from->rows.n);
	for (size_t i = 0; i < from->rows.n && rc == 0; i++) {
		const uint64_t *src = group_sums(&from->rows, i);
		uint64_t *dst;
		bool added;

		rc = entry_find_or_add(&into->rows, group_key(&from->rows, i), &map[i], &added);
		if (rc < 0)
			break;
		dst = group_sums(&into->rows, map[i]);
		for (unsigned j = SUM_FLOWS; j <= SUM_BYTES; j++)
			dst[j] += src[j];
	}
	for (size_t i = 0; i < from->distinct.n && rc == 0 && n_distinct; i++) {
		const struct distinct_entry *d =
			(const void *)(from->distinct.entries + i * sizeof(struct distinct_entry));
		rc = add_distinct(into, map[d->row], d->which, &d->value);
	}
	free(map);
	return rc;
}

static void swap_u64(uint64_t *a, uint64_t *b)
{
	uint64_t t = *a;

	*a = *b;
	*b = t;
}

/*
 * The k-th largest (1 <= k <= n) of v[0..n); reorders v. Three-way
 * partitions around pivots drawn pseudo-randomly, so crafted sums cannot
 * force the quadratic case: expected linear time.
 */
static uint64_t kth_largest(uint64_t *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n, want = k - 1;
	uint64_t rng = 0x9E3779B97F4A7C15ull ^ n;

	for (;;) {
		uint64_t pivot;
		size_t gt = lo, i = lo, lt = hi;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		pivot = v[lo + rng % (hi - lo)];
		/* v[lo..gt) > pivot, v[gt..i) == pivot, v[lt..hi) < pivot */
		while (i < lt) {
			if (v[i] > pivot)
				swap_u64(&v[i++], &v[gt++]);
			else if (v[i] < pivot)
				swap_u64(&v[i], &v[--lt]);
			else
				i++;
		}
		if (want < gt)
			hi = gt;
		else if (want < lt)
			return pivot;
		else
			lo = lt;
	}
}

/* Where the sum a spec orders by sits in a group. */
static unsigned order_sum(const struct mm_qagg *spec)
{
	switch (spec->order_by) {
	case MM_QM_BYTES: return SUM_BYTES;
	case MM_QM_PACKETS: return SUM_PACKETS;
	default: return SUM_FLOWS;
	}
}

/*
 * Keeps the groups that can make the cut: with one bucket and top_n set, a
 * group in the top n has an order_by sum at least the n-th largest one, so
 * the rest are dropped before the (full, exact) ordering of the survivors.
 * Returns the smallest sum kept (0: keep all).
 */
static int cut_threshold(const struct entry_set *groups, const struct mm_qagg *spec, uint64_t *out)
{
	size_t n = groups->n;
	unsigned metric = order_sum(spec);
	uint64_t *v;

	*out = 0;
	if (spec->top_n == 0 || spec->every_ns || n <= spec->top_n)
		return 0;
	v = malloc(n * sizeof(*v));
	if (!v)
		return mm_fail(MM_ENOMEM, "query: ordering %zu aggregation groups", n);
	for (size_t i = 0; i < n; i++)
		v[i] = group_sums(groups, i)[metric];
	*out = kth_largest(v, n, spec->top_n);
	free(v);
	return 0;
}

/* Expands the groups that can make the cut into rows, orders and cuts them (mm_qagg_rows_finish). */
static int agg_finish(const struct entry_set *groups, const struct mm_qagg *spec, struct mm_qagg_row **rows,
		      size_t *n_rows)
{
	unsigned metric = order_sum(spec);
	struct mm_qagg_row *all;
	size_t n = 0;
	uint64_t min = 0;
	int rc = cut_threshold(groups, spec, &min);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < groups->n; i++)
		n += group_sums(groups, i)[metric] >= min;
	all = calloc(n ? n : 1, sizeof(*all));
	if (!all)
		return mm_fail(MM_ENOMEM, "query: %zu aggregation rows", n);
	n = 0;
	for (size_t i = 0; i < groups->n; i++) {
		const uint64_t *sums = group_sums(groups, i);
		struct mm_qagg_row *row = &all[n];

		if (sums[metric] < min)
			continue;
		unpack_key(spec, group_key(groups, i), row);
		row->flows = sums[SUM_FLOWS];
		row->packets = sums[SUM_PACKETS];
		row->bytes = sums[SUM_BYTES];
		for (size_t j = 0; j < spec->n_distinct; j++)
			row->distinct[j] = sums[SUM_DISTINCT + j];
		n++;
	}
	*n_rows = mm_qagg_rows_finish(all, n, spec);
	*rows = all;
	return 0;
}

/* A thread's state while it aggregates partitions. */
struct part_worker {
	struct entry_set set;     /* the partition's groups or distinct records */
	struct mm_qagg_row *rows; /* the rows its partitions contribute */
	size_t n_rows, rows_cap;
	/* count_distinct: the group the last new value counted for (all of them, under --stats) */
	size_t last_group;
	bool last_group_valid;
};

static bool take_part(struct run *r, size_t *p)
{
	bool got = false;

	pthread_mutex_lock(&r->lock);
	if (!r->stop && r->next_part < N_PARTS) {
		*p = r->next_part++;
		got = true;
	}
	pthread_mutex_unlock(&r->lock);
	return got;
}

/* Calls add on every record of partition p from every thread's spill, freeing them as it goes. */
static int part_each(struct run *r, size_t p, bool distinct,
		     int (*add)(struct worker *w, const unsigned char *rec, uint64_t hash), struct worker *w)
{
	struct entry_set *set = &r->parts[w->index].set;
	size_t len = set->entry_size; /* the records' size too */
	int rc = 0;

	for (unsigned i = 0; i < r->n_threads; i++) {
		struct spill *s = r->tables[i].spill;
		struct spill_list *l = distinct ? &s->distinct[p] : &s->groups[p];

		for (const struct spill_block *b = l->head; b && rc == 0; b = b->next) {
			size_t n = (b == l->tail ? (size_t)(l->pos - b->data) : b->used) / len;

			/* AGG_BLOCK records at a time: hash all and prefetch their slots, then add. */
			for (size_t r0 = 0; r0 < n && rc == 0; r0 += AGG_BLOCK) {
				size_t nb = n - r0 < AGG_BLOCK ? n - r0 : AGG_BLOCK;
				const unsigned char *rec = b->data + r0 * len;
				const void *keys[AGG_BLOCK];
				uint64_t hash[AGG_BLOCK];

				for (size_t k = 0; k < nb; k++)
					keys[k] = rec + k * len;
				entry_hash_many(set, keys, nb, hash);
				for (size_t k = 0; k < nb; k++)
					entry_prefetch_slot(set, hash[k]);
				for (size_t k = 0; k < nb && rc == 0; k++)
					rc = add(w, rec + k * len, hash[k]);
			}
		}
		spill_list_free(l, &r->mem_used);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A distinct record seen for the first time counts one for its group, in the thread's table. */
static int count_distinct(struct worker *w, const unsigned char *rec, uint64_t hash)
{
	struct agg_table *t = &w->run->tables[w->index];
	struct part_worker *pw = &w->run->parts[w->index];
	struct distinct_tail tail;
	size_t index;
	bool added;
	int rc = entry_find_or_add_hashed(&pw->set, rec, hash, &index, &added);

	if (rc < 0 || !added)
		return rc;
	if (!pw->last_group_valid || !key_equal(group_key(&t->rows, pw->last_group), rec, t->rows.key_len)) {
		rc = entry_find_or_add(&t->rows, rec, &pw->last_group, &added);
		if (rc < 0)
			return rc;
		pw->last_group_valid = true;
	}
	memcpy(&tail, rec + t->rows.key_len, sizeof(tail));
	group_sums(&t->rows, pw->last_group)[SUM_DISTINCT + tail.which]++;
	if (!table_outgrew_cache(t))
		return 0;
	pw->last_group_valid = false; /* the spill empties t->rows */
	return table_spill(t, false);
}

static int add_group_record(struct worker *w, const unsigned char *rec, uint64_t hash)
{
	struct entry_set *groups = &w->run->parts[w->index].set;
	size_t index, n_sums = (groups->entry_size - groups->key_len) / sizeof(uint64_t);
	bool added;
	int rc = entry_find_or_add_hashed(groups, rec, hash, &index, &added);
	uint64_t *sums;

	if (rc < 0)
		return rc;
	sums = group_sums(groups, index);
	for (size_t j = 0; j < n_sums; j++) {
		uint64_t v;

		memcpy(&v, rec + groups->key_len + j * sizeof(v), sizeof(v));
		sums[j] += v;
	}
	return 0;
}

/* Keeps the rows partition's groups contribute to the answer (agg_finish's cut). */
static int part_rows(struct worker *w)
{
	struct part_worker *pw = &w->run->parts[w->index];
	struct mm_qagg_row *rows = NULL;
	size_t n = 0;
	int rc = agg_finish(&pw->set, w->run->spec, &rows, &n);

	if (rc < 0 || n == 0) {
		free(rows);
		return rc;
	}
	if (pw->n_rows + n > pw->rows_cap) {
		size_t cap = (pw->n_rows + n) * 2;
		struct mm_qagg_row *grown;

		rc = charge(&pw->set, (cap - pw->rows_cap) * sizeof(*grown));
		grown = rc < 0 ? NULL : realloc(pw->rows, cap * sizeof(*grown));
		if (!grown) {
			free(rows);
			return rc < 0 ? rc : mm_fail(MM_ENOMEM, "query: out of memory for %zu aggregation rows", cap);
		}
		pw->rows = grown;
		pw->rows_cap = cap;
	}
	memcpy(pw->rows + pw->n_rows, rows, n * sizeof(*rows));
	pw->n_rows += n;
	free(rows);
	return 0;
}

/* Takes partitions until none is left and counts their distinct records or aggregates their groups. */
static int part_body(struct worker *w)
{
	struct run *r = w->run;
	size_t p;
	int rc = 0;

	while (rc == 0 && take_part(r, &p)) {
		rc = part_each(r, p, r->parts_distinct, r->parts_distinct ? count_distinct : add_group_record, w);
		if (rc == 0 && !r->parts_distinct)
			rc = part_rows(w);
		entry_set_reset(&r->parts[w->index].set);
	}
	/* Distinct counts go to the group partitions, which no thread reads before all are done. */
	if (rc == 0 && r->parts_distinct)
		rc = table_spill(&r->tables[w->index], false);
	return rc;
}

/* Runs part_body over every partition on every thread, each with a set of entry_size-byte entries. */
static int run_parts(struct run *r, bool distinct, size_t entry_size, size_t key_len)
{
	int rc;

	for (unsigned i = 0; i < r->n_threads; i++) {
		entry_set_release(&r->parts[i].set);
		r->parts[i].set = run_entry_set(r, entry_size, key_len);
		r->parts[i].last_group_valid = false;
	}
	r->next_part = 0;
	r->parts_distinct = distinct;
	rc = run_workers(r, part_body);
	for (unsigned i = 0; i < r->n_threads; i++) {
		atomic_fetch_sub(&r->mem_used, r->parts[i].set.n_slots * sizeof(uint32_t) +
						       r->parts[i].set.cap * entry_size);
		entry_set_release(&r->parts[i].set);
		r->parts[i].set = run_entry_set(r, entry_size, key_len);
	}
	return rc;
}

static bool any_spilled(const struct run *r)
{
	for (unsigned i = 0; i < r->n_threads; i++)
		if (r->tables[i].spill)
			return true;
	return false;
}

/* The second half of a partitioned aggregation: every table into the partitions, then those. */
static int agg_partitioned(struct run *r, struct mm_qagg_row **rows, size_t *n_rows)
{
	size_t key_len = group_key_len(r->spec), n = 0;
	struct mm_qagg_row *all;
	int rc = 0;

	r->parts = calloc(r->n_threads, sizeof(*r->parts));
	if (!r->parts)
		return mm_fail(MM_ENOMEM, "query: %u aggregation partition workers", r->n_threads);
	for (unsigned i = 0; i < r->n_threads && rc == 0; i++)
		rc = table_spill(&r->tables[i], true);
	if (rc == 0 && r->spec->n_distinct) {
		size_t dlen = key_len + sizeof(struct distinct_tail);
		rc = run_parts(r, true, dlen, dlen);
	}
	if (rc == 0)
		rc = run_parts(r, false, group_entry_size(r->spec), key_len);
	for (unsigned i = 0; i < r->n_threads && rc == 0; i++)
		n += r->parts[i].n_rows;
	all = rc == 0 ? calloc(n ? n : 1, sizeof(*all)) : NULL;
	if (rc == 0 && !all)
		rc = mm_fail(MM_ENOMEM, "query: %zu aggregation rows", n);
	if (rc == 0) {
		n = 0;
		for (unsigned i = 0; i < r->n_threads; i++) {
			if (r->parts[i].n_rows)
				memcpy(all + n, r->parts[i].rows, r->parts[i].n_rows * sizeof(*all));
			n += r->parts[i].n_rows;
		}
		*n_rows = mm_qagg_rows_finish(all, n, r->spec);
		*rows = all;
	}
	for (unsigned i = 0; i < r->n_threads; i++)
		free(r->parts[i].rows);
	free(r->parts);
	r->parts = NULL;
	return rc;
}

static int check_spec(const struct mm_qagg *spec)
{
	if (spec->n_keys > MM_QAGG_MAX_KEYS || spec->n_distinct > MM_QAGG_MAX_DISTINCT)
		return mm_fail(MM_EINVAL, "query: aggregation with %zu keys and %zu distinct keys", spec->n_keys,
			       spec->n_distinct);
	for (size_t i = 0; i < spec->n_keys + spec->n_distinct; i++) {
		const struct mm_qkey *k = i < spec->n_keys ? &spec->keys[i] : &spec->distinct[i - spec->n_keys];
		if (k->prefix_len_v4 > 32 || k->prefix_len_v6 > 128)
			return mm_fail(MM_EINVAL, "query: aggregation key with a net length beyond /32 or /128");
	}
	return 0;
}

int mm_query_aggregate(struct mm_store *st, const struct mm_query *q, const struct mm_qagg *spec,
		       const struct mm_query_exec_options *opt, struct mm_qagg_row **rows, size_t *n_rows,
		       struct mm_query_exec_stats *stats_out)
{
	struct mm_query_exec_stats stats = { 0 };
	struct run r = { 0 };
	unsigned n_tables = 0;
	int rc;

	*rows = NULL;
	*n_rows = 0;
	rc = check_spec(spec);
	if (rc == 0)
		rc = run_open(&r, st, q, opt, &stats);
	if (rc < 0)
		goto out;
	r.spec = spec;
	r.tables = calloc(r.n_threads, sizeof(*r.tables));
	if (!r.tables) {
		rc = mm_fail(MM_ENOMEM, "query: %u aggregation tables", r.n_threads);
		goto out;
	}
	for (n_tables = 0; n_tables < r.n_threads; n_tables++)
		agg_table_init(&r.tables[n_tables], spec, &r);
	rc = mm_hash_key_random(&r.hash_key);
	if (rc == 0)
		rc = run_workers(&r, agg_body);
	if (rc == 0 && any_spilled(&r)) {
		rc = agg_partitioned(&r, rows, n_rows);
		goto out;
	}
	for (unsigned i = 1; i < n_tables && rc == 0; i++)
		rc = agg_merge(&r.tables[0], &r.tables[i], spec->n_distinct);
	if (rc == 0)
		rc = agg_finish(&r.tables[0].rows, spec, rows, n_rows);
out:
	for (unsigned i = 0; i < n_tables; i++) {
		stats.records_partitioned += r.tables[i].spill ? r.tables[i].spill->records : 0;
		agg_table_release(&r.tables[i]);
	}
	free(r.tables);
	run_close(&r, &stats);
	if (stats_out)
		*stats_out = stats;
	return rc;
}

/* --- writing aggregation rows ---------------------------------------------- */

struct row_writer {
	FILE *fp;
	enum mm_output_format fmt;
	const struct mm_qagg *spec;
};

/* One key value as text: addresses, nets as prefixes, countries ("" unknown), numbers. */
static const char *key_text(const struct mm_qkey *key, const union mm_qkey_value *v, bool people, char *buf,
			    size_t len)
{
	char a[MM_ADDR_STRLEN], proto[8];

	switch (key->kind) {
	case MM_QK_SRCIP:
	case MM_QK_DSTIP: return mm_addr_format(&v->addr, buf);
	case MM_QK_SRCNET:
	case MM_QK_DSTNET:
		snprintf(buf, len, "%s/%u", mm_addr_format(&v->addr, a),
			 mm_addr_is_v4(&v->addr) ? key->prefix_len_v4 : key->prefix_len_v6);
		return buf;
	case MM_QK_SRCCOUNTRY:
	case MM_QK_DSTCOUNTRY:
		if (v->country[0] == 0 && v->country[1] == 0)
			snprintf(buf, len, "%s", people ? "-" : "");
		else
			snprintf(buf, len, "%c%c", v->country[0], v->country[1]);
		return buf;
	case MM_QK_PROTO:
		if (!people)
			break;
		snprintf(buf, len, "%s", mm_proto_name((uint8_t)v->u, proto));
		return buf;
	default: break;
	}
	snprintf(buf, len, "%" PRIu32, v->u);
	return buf;
}

#define ROW_MAX_CELLS (1 + MM_QAGG_MAX_KEYS + 3 + MM_QAGG_MAX_DISTINCT)
#define CELL_MAX 64

/* Titles of the columns: bucket, keys, sums, distinct counts. */
static size_t row_titles(const struct mm_qagg *spec, char titles[][CELL_MAX])
{
	char name[24];
	size_t n = 0;

	if (spec->every_ns)
		snprintf(titles[n++], CELL_MAX, "bucket");
	for (size_t i = 0; i < spec->n_keys; i++)
		snprintf(titles[n++], CELL_MAX, "%s", mm_qkey_format(&spec->keys[i], name));
	snprintf(titles[n++], CELL_MAX, "flows");
	snprintf(titles[n++], CELL_MAX, "packets");
	snprintf(titles[n++], CELL_MAX, "bytes");
	for (size_t i = 0; i < spec->n_distinct; i++)
		snprintf(titles[n++], CELL_MAX, "distinct_%s", mm_qkey_format(&spec->distinct[i], name));
	return n;
}

static size_t row_cells(const struct mm_qagg *spec, const struct mm_qagg_row *row, bool people,
			char cells[][CELL_MAX], bool numeric[])
{
	size_t n = 0;

	if (spec->every_ns) {
		char t[MM_TIME_STRLEN];
		numeric[n] = false;
		snprintf(cells[n++], CELL_MAX, "%s", mm_time_format_iso(row->bucket_ns, t));
	}
	for (size_t i = 0; i < spec->n_keys; i++) {
		numeric[n] = false;
		key_text(&spec->keys[i], &row->key[i], people, cells[n++], CELL_MAX);
	}
	for (size_t i = 0; i < 3 + spec->n_distinct; i++) {
		uint64_t v = i == 0 ? row->flows : i == 1 ? row->packets : i == 2 ? row->bytes : row->distinct[i - 3];
		numeric[n] = true;
		snprintf(cells[n++], CELL_MAX, "%" PRIu64, v);
	}
	return n;
}

/* Countries and keys are letters, digits, ':', '.', '/' and '-': nothing CSV or JSON must escape. */
static int write_row(FILE *fp, enum mm_output_format fmt, char titles[][CELL_MAX], char cells[][CELL_MAX],
		     const bool numeric[], size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (fmt == MM_OUTPUT_TABLE)
			fprintf(fp, numeric[i] ? "%s%14s" : "%s%-20s", i ? " " : "", cells[i]);
		else if (fmt == MM_OUTPUT_CSV)
			fprintf(fp, "%s%s", i ? "," : "", cells[i]);
		else
			fprintf(fp, numeric[i] ? "%s\"%s\":%s" : "%s\"%s\":\"%s\"", i ? "," : "{", titles[i],
				cells[i]);
	}
	fputs(fmt == MM_OUTPUT_NDJSON ? "}\n" : "\n", fp);
	return ferror(fp) ? mm_fail(MM_EIO, "query: writing results failed") : 0;
}

int mm_query_rows_write(FILE *fp, enum mm_output_format fmt, const struct mm_qagg *spec,
			const struct mm_qagg_row *rows, size_t n_rows)
{
	char titles[ROW_MAX_CELLS][CELL_MAX], cells[ROW_MAX_CELLS][CELL_MAX];
	bool numeric[ROW_MAX_CELLS];
	size_t n = row_titles(spec, titles);
	int rc = 0;

	if (fmt == MM_OUTPUT_ZEEK)
		return mm_fail(MM_EINVAL, "query: aggregates have no zeek form; use table, csv or ndjson");
	if (fmt != MM_OUTPUT_NDJSON) {
		for (size_t i = 0; i < n; i++)
			numeric[i] = i >= n - 3 - spec->n_distinct;
		rc = write_row(fp, fmt, titles, titles, numeric, n);
	}
	for (size_t r = 0; r < n_rows && rc == 0; r++) {
		row_cells(spec, &rows[r], fmt == MM_OUTPUT_TABLE, cells, numeric);
		rc = write_row(fp, fmt, titles, cells, numeric, n);
	}
	if (rc == 0 && fflush(fp) != 0)
		rc = mm_fail(MM_EIO, "query: writing results failed");
	return rc;
}
