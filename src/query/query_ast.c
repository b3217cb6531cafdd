/*
 * The query AST: the per-field grammar table, the arena that owns a
 * query's nodes and values, building trees by code, checking the
 * invariants every consumer (printer, evaluator, store executors, SQL
 * translation) relies on, and structural equality.
 */
#include "query_int.h"

#include "mamori/status.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define DIRS_SIDES (QDIR_BIT(MM_QD_EITHER) | QDIR_BIT(MM_QD_SRC) | QDIR_BIT(MM_QD_DST) | QDIR_BIT(MM_QD_BOTH))
#define DIRS_TOTAL (QDIR_BIT(MM_QD_NONE) | QDIR_BIT(MM_QD_SRC) | QDIR_BIT(MM_QD_DST))
#define DIRS_IF (QDIR_BIT(MM_QD_EITHER) | QDIR_BIT(MM_QD_IN) | QDIR_BIT(MM_QD_OUT))
#define DIRS_NONE QDIR_BIT(MM_QD_NONE)

static const struct qfield_info fields[MM_QF_COUNT_] = {
	[MM_QF_HOST] = { "host", "ip", "an address", QV_ADDR, 0, DIRS_SIDES, MM_QD_EITHER },
	[MM_QF_NET] = { "net", NULL, "a prefix", QV_PREFIX, 0, DIRS_SIDES, MM_QD_EITHER },
	[MM_QF_PORT] = { "port", NULL, "a port number 0..65535", QV_NUM, UINT16_MAX, DIRS_SIDES, MM_QD_EITHER },
	[MM_QF_AS] = { "as", NULL, "an AS number", QV_NUM, UINT32_MAX, DIRS_SIDES, MM_QD_EITHER },
	[MM_QF_COUNTRY] = { "country", NULL, "a two-letter country code", QV_COUNTRY, 0, DIRS_SIDES, MM_QD_EITHER },
	[MM_QF_IF] = { "if", NULL, "an interface index", QV_NUM, UINT32_MAX, DIRS_IF, MM_QD_EITHER },
	[MM_QF_PROTO] = { "proto", NULL, "a protocol name or number 0..255", QV_PROTO, 0, DIRS_NONE, MM_QD_NONE },
	/* Spelled by its value ("ip4", "ip6"): the parser and printer handle it. */
	[MM_QF_FAMILY] = { NULL, NULL, "nothing", QV_NONE, 0, DIRS_NONE, MM_QD_NONE },
	[MM_QF_BYTES] = { "bytes", NULL, "a byte count (k, M, G, T are x1000)", QV_COUNT, 0, DIRS_TOTAL, MM_QD_NONE },
	[MM_QF_PACKETS] = { "packets", NULL, "a packet count (k, M, G, T are x1000)", QV_COUNT, 0, DIRS_TOTAL, MM_QD_NONE },
	[MM_QF_DURATION] = { "duration", NULL, "a duration (300s, 5m, 1.5h)", QV_DURATION, 0, DIRS_NONE, MM_QD_NONE },
	[MM_QF_PPS] = { "pps", NULL, "a packet rate (k, M, G, T are x1000)", QV_COUNT, 0, DIRS_NONE, MM_QD_NONE },
	[MM_QF_BPS] = { "bps", NULL, "a bit rate (k, M, G, T are x1000)", QV_COUNT, 0, DIRS_NONE, MM_QD_NONE },
	[MM_QF_BPP] = { "bpp", NULL, "a byte count (k, M, G, T are x1000)", QV_COUNT, 0, DIRS_NONE, MM_QD_NONE },
	[MM_QF_FLAGS] = { "flags", NULL, "TCP flags (letters of FSRPAUEC)", QV_FLAGS, 0, DIRS_TOTAL, MM_QD_NONE },
	[MM_QF_VLAN] = { "vlan", NULL, "a VLAN id 0..4095", QV_NUM, 4095, DIRS_NONE, MM_QD_NONE },
	[MM_QF_SENSOR] = { "sensor", NULL, "a sensor id", QV_NUM, UINT32_MAX, DIRS_NONE, MM_QD_NONE },
	[MM_QF_END] = { "end", NULL, "an end reason (idle, active, eof, forced, resource)", QV_END, 0, DIRS_NONE, MM_QD_NONE },
};

const char qflag_letters[8] = { 'F', 'S', 'R', 'P', 'A', 'U', 'E', 'C' };

const struct qfield_info *qfield_info(enum mm_qfield field)
{
	return (unsigned)field < MM_QF_COUNT_ ? &fields[field] : NULL;
}

const struct qfield_info *qfield_lookup(const struct qtok *tok, enum mm_qfield *field)
{
	for (unsigned i = 0; i < MM_QF_COUNT_; i++) {
		if (!fields[i].name)
			continue;
		if (qtok_is(tok, fields[i].name) || (fields[i].alias && qtok_is(tok, fields[i].alias))) {
			*field = (enum mm_qfield)i;
			return &fields[i];
		}
	}
	return NULL;
}

bool qvalue_kind_ordered(enum qvalue_kind kind)
{
	return kind == QV_NUM || kind == QV_COUNT || kind == QV_DURATION;
}

bool qop_allowed(const struct qfield_info *info, enum mm_qop op)
{
	switch (info->kind) {
	case QV_NONE: return op == MM_QO_EQ;
	case QV_FLAGS: return op == MM_QO_HAS;
	default: break;
	}
	if (op == MM_QO_EQ || op == MM_QO_IN)
		return true;
	return qvalue_kind_ordered(info->kind) && op <= MM_QO_GE;
}

/* Arena ---------------------------------------------------------------- */

/*
 * A parse of MM_QUERY_MAX_LEN bytes needs well under this; the cap only
 * stops code-built trees from growing without bound.
 */
#define ARENA_CAP (64u << 20)
#define ARENA_BLOCK (16u << 10)

struct arena_block {
	struct arena_block *next;
	size_t used, cap;
	alignas(max_align_t) unsigned char data[];
};

struct mm_query {
	struct mm_qnode *root;
	struct arena_block *blocks;
	size_t n_bytes; /* allocated from the system, against ARENA_CAP */
};

static void *arena_alloc(struct mm_query *q, size_t size)
{
	struct arena_block *b = q->blocks;
	size_t need = (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
	void *p;

	if (!b || b->cap - b->used < need) {
		size_t cap = need > ARENA_BLOCK ? need : ARENA_BLOCK;
		if (need > ARENA_CAP || q->n_bytes + cap > ARENA_CAP) {
			mm_fail(MM_ENOMEM, "query: more than %u MiB of nodes and values", ARENA_CAP >> 20);
			return NULL;
		}
		b = malloc(sizeof(*b) + cap);
		if (!b) {
			mm_fail(MM_ENOMEM, "query: out of memory for %zu bytes", cap);
			return NULL;
		}
		b->next = q->blocks;
		b->used = 0;
		b->cap = cap;
		q->blocks = b;
		q->n_bytes += cap;
	}
	p = b->data + b->used;
	b->used += need;
	memset(p, 0, size);
	return p;
}

int mm_query_new(struct mm_query **out)
{
	struct mm_query *q = calloc(1, sizeof(*q));

	if (!q)
		return mm_fail(MM_ENOMEM, "query: out of memory");
	*out = q;
	return 0;
}

void mm_query_free(struct mm_query *q)
{
	if (!q)
		return;
	while (q->blocks) {
		struct arena_block *next = q->blocks->next;
		free(q->blocks);
		q->blocks = next;
	}
	free(q);
}

struct mm_qnode *mm_query_add_node(struct mm_query *q, enum mm_qnode_kind kind)
{
	struct mm_qnode *n = arena_alloc(q, sizeof(*n));

	if (n)
		n->kind = kind;
	return n;
}

union mm_qvalue *mm_query_add_values(struct mm_query *q, size_t n)
{
	if (n == 0 || n > MM_QUERY_MAX_LIST) {
		mm_fail(MM_ELIMIT, "query: a list holds 1..%u values, not %zu", MM_QUERY_MAX_LIST, n);
		return NULL;
	}
	return arena_alloc(q, n * sizeof(union mm_qvalue));
}

void mm_query_append_child(struct mm_qnode *parent, struct mm_qnode *child)
{
	struct mm_qnode **link = &parent->first_child;

	while (*link)
		link = &(*link)->next;
	child->next = NULL;
	*link = child;
}

void mm_query_set_root(struct mm_query *q, struct mm_qnode *root)
{
	q->root = root;
}

const struct mm_qnode *mm_query_root(const struct mm_query *q)
{
	return q->root;
}

/* Checking ------------------------------------------------------------- */

static int check_value(const struct qfield_info *info, const union mm_qvalue *v)
{
	struct mm_prefix masked;

	switch (info->kind) {
	case QV_NONE: return v->u == 4 || v->u == 6 ? 0 : MM_EINVAL;
	case QV_ADDR:
	case QV_COUNT:
	case QV_DURATION: return 0;
	case QV_PREFIX:
		if (mm_prefix_from_addr(&masked, &v->prefix.addr, v->prefix.len) < 0)
			return MM_EINVAL;
		return mm_addr_eq(&masked.addr, &v->prefix.addr) ? 0 : MM_EINVAL;
	case QV_COUNTRY:
		for (int i = 0; i < 2; i++)
			if (v->country[i] < 'A' || v->country[i] > 'Z')
				return MM_EINVAL;
		return 0;
	case QV_PROTO: return v->u <= UINT8_MAX ? 0 : MM_EINVAL;
	case QV_END: return v->u <= MM_END_RESOURCE ? 0 : MM_EINVAL;
	case QV_FLAGS: return v->u >= 1 && v->u <= UINT8_MAX ? 0 : MM_EINVAL;
	case QV_NUM: return v->u <= info->max ? 0 : MM_EINVAL;
	}
	return MM_EINVAL;
}

static int check_pred(const struct mm_qnode *n)
{
	const struct qfield_info *info = qfield_info(n->field);

	if (!info)
		return mm_fail(MM_EINVAL, "query: node has no field %d", (int)n->field);
	if ((unsigned)n->dir > MM_QD_OUT || !(info->dirs & QDIR_BIT(n->dir)))
		return mm_fail(MM_EINVAL, "query: field %s: direction %d not allowed",
			       info->name ? info->name : "family", (int)n->dir);
	if (!qop_allowed(info, n->op))
		return mm_fail(MM_EINVAL, "query: field %s: operator %d not allowed",
			       info->name ? info->name : "family", (int)n->op);
	if (!n->values || n->n_values == 0 || n->n_values > MM_QUERY_MAX_LIST ||
	    (n->op != MM_QO_IN && n->n_values != 1))
		return mm_fail(MM_EINVAL, "query: field %s: %zu values for its operator",
			       info->name ? info->name : "family", n->n_values);
	for (size_t i = 0; i < n->n_values; i++)
		if (check_value(info, &n->values[i]) < 0)
			return mm_fail(MM_EINVAL, "query: field %s: value %zu out of range",
				       info->name ? info->name : "family", i);
	return 0;
}

bool qnode_needs_parens(const struct mm_qnode *parent, const struct mm_qnode *child)
{
	bool child_chain = child->kind == MM_QN_AND || child->kind == MM_QN_OR;

	return (parent->kind == MM_QN_NOT && child_chain) ||
	       (parent->kind == MM_QN_AND && child->kind == MM_QN_OR);
}

/*
 * Nesting is counted as the parser counts it, in the 'not's and '('s the
 * printed text holds around a node, so every checked tree prints to text
 * the parser accepts, and every parsed tree passes.
 */
static unsigned child_level(const struct mm_qnode *parent, const struct mm_qnode *child, unsigned level)
{
	return level + (parent->kind == MM_QN_NOT) + qnode_needs_parens(parent, child);
}

static int check_node(const struct mm_qnode *n, unsigned level)
{
	size_t n_children = 0;
	int rc;

	if (level > MM_QUERY_MAX_DEPTH)
		return mm_fail(MM_ELIMIT, "query: nesting deeper than %u", MM_QUERY_MAX_DEPTH);
	for (const struct mm_qnode *c = n->first_child; c; c = c->next) {
		if (++n_children > (size_t)MM_QUERY_MAX_LEN)
			return mm_fail(MM_ELIMIT, "query: more than %u children", MM_QUERY_MAX_LEN);
		if (c->kind == n->kind && (n->kind == MM_QN_AND || n->kind == MM_QN_OR))
			return mm_fail(MM_EINVAL, "query: %s directly under %s", n->kind == MM_QN_AND ? "and" : "or",
				       n->kind == MM_QN_AND ? "and" : "or");
		rc = check_node(c, child_level(n, c, level));
		if (rc < 0)
			return rc;
	}
	switch (n->kind) {
	case MM_QN_ANY: return n_children == 0 ? 0 : mm_fail(MM_EINVAL, "query: 'any' with children");
	case MM_QN_NOT: return n_children == 1 ? 0 : mm_fail(MM_EINVAL, "query: 'not' needs one child");
	case MM_QN_AND:
	case MM_QN_OR:
		return n_children >= 2 ? 0 : mm_fail(MM_EINVAL, "query: 'and'/'or' needs two or more children");
	case MM_QN_PRED: return n_children == 0 ? check_pred(n) : mm_fail(MM_EINVAL, "query: predicate with children");
	}
	return mm_fail(MM_EINVAL, "query: unknown node kind %d", (int)n->kind);
}

int mm_query_check(const struct mm_query *q)
{
	if (!q->root)
		return mm_fail(MM_EINVAL, "query: no root node");
	return check_node(q->root, 0);
}

/* Equality ------------------------------------------------------------- */

static bool value_equal(enum qvalue_kind kind, const union mm_qvalue *a, const union mm_qvalue *b)
{
	switch (kind) {
	case QV_ADDR: return mm_addr_eq(&a->addr, &b->addr);
	case QV_PREFIX: return a->prefix.len == b->prefix.len && mm_addr_eq(&a->prefix.addr, &b->prefix.addr);
	case QV_COUNTRY: return memcmp(a->country, b->country, 2) == 0;
	default: return a->u == b->u;
	}
}

static bool node_equal(const struct mm_qnode *a, const struct mm_qnode *b)
{
	const struct mm_qnode *x, *y;

	if (a->kind != b->kind)
		return false;
	if (a->kind == MM_QN_PRED) {
		if (a->field != b->field || a->dir != b->dir || a->op != b->op || a->n_values != b->n_values)
			return false;
		for (size_t i = 0; i < a->n_values; i++)
			if (!value_equal(qfield_info(a->field)->kind, &a->values[i], &b->values[i]))
				return false;
		return true;
	}
	for (x = a->first_child, y = b->first_child; x && y; x = x->next, y = y->next)
		if (!node_equal(x, y))
			return false;
	return x == NULL && y == NULL;
}

bool mm_query_equal(const struct mm_query *a, const struct mm_query *b)
{
	if (!a->root || !b->root)
		return a->root == b->root;
	return node_equal(a->root, b->root);
}
