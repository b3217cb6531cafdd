/*
 * The reference evaluator: walks the AST once per flow, reading fields
 * straight from struct mm_flow. It is written for obviousness, not speed;
 * the store's vectorised executor and the SQL translation are tested
 * against it, so its reading of every field is the language's definition.
 */
#include "query_int.h"

#include <string.h>

uint64_t mm_query_flow_duration_ns(const struct mm_flow *f)
{
	return f->last_ns > f->first_ns ? f->last_ns - f->first_ns : 0;
}

/* count × scale / duration in seconds, floored, saturating; 0 for a zero duration. */
static uint64_t per_second(uint64_t count, uint64_t scale, const struct mm_flow *f)
{
	uint64_t ns = mm_query_flow_duration_ns(f);
	unsigned __int128 rate;

	if (ns == 0)
		return 0;
	rate = (unsigned __int128)count * scale * 1000000000u / ns;
	return rate > UINT64_MAX ? UINT64_MAX : (uint64_t)rate;
}

uint64_t mm_query_flow_pps(const struct mm_flow *f)
{
	return per_second(mm_flow_packets(f), 1, f);
}

uint64_t mm_query_flow_bps(const struct mm_flow *f)
{
	return per_second(mm_flow_bytes(f), 8, f);
}

uint64_t mm_query_flow_bpp(const struct mm_flow *f)
{
	uint64_t packets = mm_flow_packets(f);

	return packets ? mm_flow_bytes(f) / packets : 0;
}

/* What one side of a flow holds for a field: an address, a country or a number. */
struct side_value {
	const struct mm_addr *addr;
	const char *country;
	uint64_t u;
};

static uint64_t pick(enum mm_qdir side, uint64_t src, uint64_t dst, uint64_t both)
{
	return side == MM_QD_SRC ? src : side == MM_QD_DST ? dst : both;
}

static void read_side(const struct mm_flow *f, enum mm_qfield field, enum mm_qdir side, struct side_value *v)
{
	bool src = side == MM_QD_SRC;

	switch (field) {
	case MM_QF_HOST:
	case MM_QF_NET: v->addr = src ? &f->src : &f->dst; break;
	case MM_QF_COUNTRY: v->country = src ? f->src_country : f->dst_country; break;
	case MM_QF_PORT: v->u = src ? f->src_port : f->dst_port; break;
	case MM_QF_AS: v->u = src ? f->src_as : f->dst_as; break;
	case MM_QF_IF: v->u = side == MM_QD_IN ? f->in_if : f->out_if; break;
	case MM_QF_PROTO: v->u = f->proto; break;
	case MM_QF_FAMILY: v->u = mm_addr_is_v4(&f->src) ? 4 : 6; break;
	case MM_QF_BYTES: v->u = pick(side, f->fwd_bytes, f->rev_bytes, mm_flow_bytes(f)); break;
	case MM_QF_PACKETS: v->u = pick(side, f->fwd_packets, f->rev_packets, mm_flow_packets(f)); break;
	case MM_QF_DURATION: v->u = mm_query_flow_duration_ns(f); break;
	case MM_QF_PPS: v->u = mm_query_flow_pps(f); break;
	case MM_QF_BPS: v->u = mm_query_flow_bps(f); break;
	case MM_QF_BPP: v->u = mm_query_flow_bpp(f); break;
	case MM_QF_FLAGS:
		v->u = pick(side, f->fwd_tcp_flags, f->rev_tcp_flags, f->fwd_tcp_flags | f->rev_tcp_flags);
		break;
	case MM_QF_VLAN: v->u = f->vlan; break;
	case MM_QF_SENSOR: v->u = f->sensor_id; break;
	case MM_QF_END: v->u = f->end_reason; break;
	case MM_QF_COUNT_: break;
	}
}

static bool value_matches(enum mm_qfield field, const union mm_qvalue *c, const struct side_value *v)
{
	switch (field) {
	case MM_QF_HOST: return mm_addr_eq(v->addr, &c->addr);
	case MM_QF_NET: return mm_prefix_contains(&c->prefix, v->addr);
	case MM_QF_COUNTRY: return memcmp(v->country, c->country, 2) == 0;
	default: return v->u == c->u;
	}
}

static bool side_matches(const struct mm_qnode *n, const struct mm_flow *f, enum mm_qdir side)
{
	struct side_value v = { 0 };
	uint64_t c = n->values[0].u;

	read_side(f, n->field, side, &v);
	switch (n->op) {
	case MM_QO_EQ: return value_matches(n->field, &n->values[0], &v);
	case MM_QO_NE: return v.u != c;
	case MM_QO_LT: return v.u < c;
	case MM_QO_LE: return v.u <= c;
	case MM_QO_GT: return v.u > c;
	case MM_QO_GE: return v.u >= c;
	case MM_QO_HAS: return (v.u & c) == c;
	case MM_QO_IN:
		for (size_t i = 0; i < n->n_values; i++)
			if (value_matches(n->field, &n->values[i], &v))
				return true;
		return false;
	}
	return false;
}

static bool predicate_matches(const struct mm_qnode *n, const struct mm_flow *f)
{
	enum mm_qdir first = n->field == MM_QF_IF ? MM_QD_IN : MM_QD_SRC;
	enum mm_qdir second = n->field == MM_QF_IF ? MM_QD_OUT : MM_QD_DST;

	switch (n->dir) {
	case MM_QD_EITHER: return side_matches(n, f, first) || side_matches(n, f, second);
	case MM_QD_BOTH: return side_matches(n, f, first) && side_matches(n, f, second);
	default: return side_matches(n, f, n->dir);
	}
}

/* Recursion depth is bounded by MM_QUERY_MAX_DEPTH (parser and mm_query_check). */
static bool node_matches(const struct mm_qnode *n, const struct mm_flow *f)
{
	switch (n->kind) {
	case MM_QN_ANY: return true;
	case MM_QN_PRED: return predicate_matches(n, f);
	case MM_QN_NOT: return !node_matches(n->first_child, f);
	case MM_QN_AND:
		for (const struct mm_qnode *c = n->first_child; c; c = c->next)
			if (!node_matches(c, f))
				return false;
		return true;
	case MM_QN_OR:
		for (const struct mm_qnode *c = n->first_child; c; c = c->next)
			if (node_matches(c, f))
				return true;
		return false;
	}
	return false;
}

bool mm_query_match(const struct mm_query *q, const struct mm_flow *f)
{
	return node_matches(mm_query_root(q), f);
}
