/*
 * The printer: an AST back to canonical filter text, the one spelling the
 * CLI echoes, golden tests store and the audit log records. Canonical
 * means lower-case keywords, "=" left implicit, parentheses only where
 * precedence needs them, and the shortest exact suffix or unit for counts
 * and durations, so that parse(print(q)) equals q for every checked q.
 */
#include "query_int.h"

#include "mamori/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Far above what any query of MM_QUERY_MAX_LEN bytes prints to. */
#define TEXT_CAP (16u << 20)

struct text {
	char *buf;
	size_t len, cap;
	int status;
};

static void put(struct text *t, const char *s, size_t n)
{
	size_t want;
	char *grown;

	if (t->status < 0)
		return;
	if (t->len + n + 1 > t->cap) {
		want = t->cap ? t->cap * 2 : 256;
		while (want < t->len + n + 1)
			want *= 2;
		if (want > TEXT_CAP) {
			t->status = mm_fail(MM_ENOMEM, "query: printed text exceeds %u bytes", TEXT_CAP);
			return;
		}
		grown = realloc(t->buf, want);
		if (!grown) {
			t->status = mm_fail(MM_ENOMEM, "query: out of memory printing");
			return;
		}
		t->buf = grown;
		t->cap = want;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
}

static void puts_text(struct text *t, const char *s)
{
	put(t, s, strlen(s));
}

static void put_u64(struct text *t, uint64_t v, const char *suffix)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64 "%s", v, suffix);
	puts_text(t, buf);
}

/* The largest 1000-based suffix that divides v exactly. */
static void put_count(struct text *t, uint64_t v)
{
	static const char *const suffixes[] = { "", "k", "M", "G", "T" };
	size_t i = 0;

	while (v != 0 && v % 1000 == 0 && i + 1 < sizeof(suffixes) / sizeof(suffixes[0])) {
		v /= 1000;
		i++;
	}
	put_u64(t, v, suffixes[i]);
}

/* The largest unit that divides ns exactly; zero is "0s". */
static void put_duration(struct text *t, uint64_t ns)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = {
		{ "w", 604800000000000ull }, { "d", 86400000000000ull }, { "h", 3600000000000ull },
		{ "m", 60000000000ull },     { "s", 1000000000ull },     { "ms", 1000000 },
		{ "us", 1000 },              { "ns", 1 },
	};

	if (ns == 0) {
		puts_text(t, "0s");
		return;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ns % units[i].ns == 0) {
			put_u64(t, ns / units[i].ns, units[i].unit);
			return;
		}
	}
}

static void put_value(struct text *t, enum qvalue_kind kind, const union mm_qvalue *v)
{
	char buf[MM_PREFIX_STRLEN];
	size_t n = 0;

	switch (kind) {
	case QV_ADDR: puts_text(t, mm_addr_format(&v->addr, buf)); break;
	case QV_PREFIX: puts_text(t, mm_prefix_format(&v->prefix, buf)); break;
	case QV_COUNTRY: put(t, v->country, 2); break;
	case QV_PROTO: puts_text(t, mm_proto_name((uint8_t)v->u, buf)); break;
	case QV_END: puts_text(t, mm_end_reason_name((unsigned)v->u)); break;
	case QV_FLAGS:
		for (unsigned i = 0; i < 8; i++)
			if (v->u & (1u << i))
				buf[n++] = qflag_letters[i];
		put(t, buf, n);
		break;
	case QV_NUM: put_u64(t, v->u, ""); break;
	case QV_COUNT: put_count(t, v->u); break;
	case QV_DURATION: put_duration(t, v->u); break;
	case QV_NONE: break;
	}
}

static const char *direction_prefix(enum mm_qdir dir)
{
	switch (dir) {
	case MM_QD_SRC: return "src ";
	case MM_QD_DST: return "dst ";
	case MM_QD_BOTH: return "src and dst ";
	case MM_QD_IN: return "in ";
	case MM_QD_OUT: return "out ";
	case MM_QD_EITHER:
	case MM_QD_NONE: break;
	}
	return "";
}

static const char *operator_text(enum mm_qop op)
{
	switch (op) {
	case MM_QO_NE: return " != ";
	case MM_QO_LT: return " < ";
	case MM_QO_LE: return " <= ";
	case MM_QO_GT: return " > ";
	case MM_QO_GE: return " >= ";
	case MM_QO_IN: return " in [";
	case MM_QO_EQ:
	case MM_QO_HAS: break;
	}
	return " ";
}

static void put_predicate(struct text *t, const struct mm_qnode *n)
{
	const struct qfield_info *info = qfield_info(n->field);

	if (n->field == MM_QF_FAMILY) {
		puts_text(t, n->values[0].u == 4 ? "ip4" : "ip6");
		return;
	}
	puts_text(t, direction_prefix(n->dir));
	puts_text(t, info->name);
	puts_text(t, operator_text(n->op));
	for (size_t i = 0; i < n->n_values; i++) {
		if (i)
			put(t, " ", 1);
		put_value(t, info->kind, &n->values[i]);
	}
	if (n->op == MM_QO_IN)
		put(t, "]", 1);
}

static void put_node(struct text *t, const struct mm_qnode *n);

static void put_child(struct text *t, const struct mm_qnode *parent, const struct mm_qnode *c)
{
	bool parens = qnode_needs_parens(parent, c);

	if (parens)
		put(t, "(", 1);
	put_node(t, c);
	if (parens)
		put(t, ")", 1);
}

static void put_node(struct text *t, const struct mm_qnode *n)
{
	switch (n->kind) {
	case MM_QN_ANY: puts_text(t, "any"); return;
	case MM_QN_PRED: put_predicate(t, n); return;
	case MM_QN_NOT:
		puts_text(t, "not ");
		put_child(t, n, n->first_child);
		return;
	case MM_QN_AND:
	case MM_QN_OR:
		for (const struct mm_qnode *c = n->first_child; c; c = c->next) {
			if (c != n->first_child)
				puts_text(t, n->kind == MM_QN_AND ? " and " : " or ");
			put_child(t, n, c);
		}
		return;
	}
}

int mm_query_format(const struct mm_query *q, char **out)
{
	struct text t = { 0 };

	*out = NULL;
	put_node(&t, mm_query_root(q));
	if (t.status < 0) {
		free(t.buf);
		return t.status;
	}
	*out = t.buf;
	return 0;
}

char *mm_query_caret(unsigned column, char *buf, size_t len)
{
	size_t n = 0;

	if (len == 0)
		return buf;
	while (column > 1 && n + 2 < len) {
		buf[n++] = ' ';
		column--;
	}
	if (n + 1 < len)
		buf[n++] = '^';
	buf[n] = '\0';
	return buf;
}
