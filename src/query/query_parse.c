/*
 * Recursive-descent parser of the filter language (docs/query.md) into the
 * AST of query.h. Precedence is not > and > or; chains of one operator
 * become one n-ary node, so "a and (b and c)" and "a and b and c" are the
 * same tree. Nesting is capped at MM_QUERY_MAX_DEPTH before the C stack can
 * feel it, and every error names the column and what was expected there.
 */
#include "query_int.h"

#include "mamori/status.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Longest constant (an IPv6 prefix is 49 characters); longer words are refused. */
#define VALUE_TEXT_CAP 64

struct parser {
	struct qlex lx;
	struct qtok cur, prev;
	struct mm_query *q;
	unsigned depth;
	unsigned err_column;
};

static void advance(struct parser *p)
{
	p->prev = p->cur;
	qlex_next(&p->lx, &p->cur);
}

/* Quotes a token for a message: at most 40 bytes, unprintable bytes as \xNN. */
static const char *quote_token(const struct qtok *tok, char *buf, size_t cap)
{
	size_t o = 0;

	if (tok->kind == QT_END)
		return "the end of the query";
	buf[o++] = '\'';
	for (size_t i = 0; i < tok->len && i < 40 && o + 6 < cap; i++) {
		unsigned char c = (unsigned char)tok->text[i];
		if (isprint(c))
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
	}
	if (tok->len > 40 && o + 4 < cap) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '\'';
	buf[o] = '\0';
	return buf;
}

static int fail_expected(struct parser *p, const char *what)
{
	char found[200], after[200];

	p->err_column = p->cur.column;
	if (p->prev.kind == QT_END)
		return mm_fail(MM_EINVAL, "query: column %u: expected %s, found %s", p->cur.column, what,
			       quote_token(&p->cur, found, sizeof(found)));
	return mm_fail(MM_EINVAL, "query: column %u: expected %s after %s, found %s", p->cur.column, what,
		       quote_token(&p->prev, after, sizeof(after)), quote_token(&p->cur, found, sizeof(found)));
}

static int fail_at(struct parser *p, int status, unsigned column, const char *what)
{
	p->err_column = column;
	return mm_fail(status, "query: column %u: %s", column, what);
}

static bool at_and(const struct parser *p)
{
	return p->cur.kind == QT_AND || qtok_is(&p->cur, "and");
}

static bool at_or(const struct parser *p)
{
	return p->cur.kind == QT_OR || qtok_is(&p->cur, "or");
}

static bool at_not(const struct parser *p)
{
	return p->cur.kind == QT_NOT || qtok_is(&p->cur, "not");
}

static int new_node(struct parser *p, enum mm_qnode_kind kind, unsigned column, struct mm_qnode **out)
{
	*out = mm_query_add_node(p->q, kind);
	if (!*out)
		return MM_ENOMEM;
	(*out)->column = column;
	return 0;
}

static int enter_nesting(struct parser *p)
{
	char msg[64];

	if (p->depth >= MM_QUERY_MAX_DEPTH) {
		snprintf(msg, sizeof(msg), "nesting deeper than %u", MM_QUERY_MAX_DEPTH);
		return fail_at(p, MM_ELIMIT, p->cur.column, msg);
	}
	p->depth++;
	return 0;
}

static void link_one(struct mm_qnode *parent, struct mm_qnode **tail, struct mm_qnode *c)
{
	c->next = NULL;
	if (*tail)
		(*tail)->next = c;
	else
		parent->first_child = c;
	*tail = c;
}

/* Appends child to an and/or node, splicing in the children of a node of the same kind. */
static void link_child(struct mm_qnode *parent, struct mm_qnode **tail, struct mm_qnode *child)
{
	struct mm_qnode *next;

	if (child->kind != parent->kind) {
		link_one(parent, tail, child);
		return;
	}
	for (struct mm_qnode *c = child->first_child; c; c = next) {
		next = c->next;
		link_one(parent, tail, c);
	}
}

/* Constants ------------------------------------------------------------ */

static int parse_digits(const char **s, uint64_t *out)
{
	uint64_t v = 0;

	if (!isdigit((unsigned char)**s))
		return MM_EINVAL;
	for (; isdigit((unsigned char)**s); (*s)++) {
		unsigned d = (unsigned)(**s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return MM_EINVAL;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

static int parse_num(const char *s, uint64_t max, uint64_t *out)
{
	if (parse_digits(&s, out) < 0 || *s != '\0' || *out > max)
		return MM_EINVAL;
	return 0;
}

/* "10M": nfdump's suffixes, 1000-based like nfdump's. */
static int parse_count(const char *s, uint64_t *out)
{
	static const char suffixes[] = "kmgt";
	uint64_t v, scale = 1;

	if (parse_digits(&s, &v) < 0)
		return MM_EINVAL;
	if (*s != '\0') {
		const char *at = strchr(suffixes, tolower((unsigned char)*s));
		if (!at || s[1] != '\0')
			return MM_EINVAL;
		for (const char *i = suffixes; i <= at; i++)
			scale *= 1000;
	}
	if (v > UINT64_MAX / scale)
		return MM_EINVAL;
	*out = v * scale;
	return 0;
}

/*
 * "1.5h", "300s", "250ms", "90" (seconds). Exact in nanoseconds up to
 * UINT64_MAX, which timefmt's mm_duration_parse does not promise, and the
 * printer's output must come back exactly.
 */
static int parse_duration(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "ms", 1000000 }, { "s", 1000000000ull }, { "", 1000000000ull },
		{ "m", 60000000000ull }, { "h", 3600000000000ull }, { "d", 86400000000000ull },
		{ "w", 604800000000000ull },
	};
	uint64_t whole, frac = 0, frac_scale = 1;
	unsigned __int128 total;

	if (parse_digits(&s, &whole) < 0)
		return MM_EINVAL;
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return MM_EINVAL;
		for (; isdigit((unsigned char)*s); s++) {
			if (frac_scale == 1000000000000000000ull)
				return MM_EINVAL;
			frac = frac * 10 + (uint64_t)(*s - '0');
			frac_scale *= 10;
		}
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(s, units[i].unit) != 0)
			continue;
		total = (unsigned __int128)whole * units[i].ns +
			(unsigned __int128)frac * units[i].ns / frac_scale;
		if (total > UINT64_MAX)
			return MM_EINVAL;
		*out = (uint64_t)total;
		return 0;
	}
	return MM_EINVAL;
}

static int parse_flags(const char *s, uint64_t *out)
{
	uint64_t bits = 0;

	for (; *s; s++) {
		const char *at = memchr(qflag_letters, toupper((unsigned char)*s), sizeof(qflag_letters));
		if (!at)
			return MM_EINVAL;
		bits |= 1u << (at - qflag_letters);
	}
	*out = bits;
	return bits ? 0 : MM_EINVAL;
}

static int parse_end_reason(const char *s, uint64_t *out)
{
	for (unsigned r = MM_END_UNKNOWN; r <= MM_END_RESOURCE; r++) {
		if (strcasecmp(s, mm_end_reason_name(r)) == 0) {
			*out = r;
			return 0;
		}
	}
	return MM_EINVAL;
}

static int parse_country(const char *s, char out[2])
{
	if (strlen(s) != 2 || !isalpha((unsigned char)s[0]) || !isalpha((unsigned char)s[1]))
		return MM_EINVAL;
	out[0] = (char)toupper((unsigned char)s[0]);
	out[1] = (char)toupper((unsigned char)s[1]);
	return 0;
}

static int parse_constant(const struct qfield_info *info, const char *s, union mm_qvalue *v)
{
	uint8_t proto;

	switch (info->kind) {
	case QV_ADDR: return mm_addr_parse(&v->addr, s);
	case QV_PREFIX: return mm_prefix_parse(&v->prefix, s, true);
	case QV_COUNTRY: return parse_country(s, v->country);
	case QV_PROTO:
		if (mm_proto_parse(s, &proto) < 0)
			return MM_EINVAL;
		v->u = proto;
		return 0;
	case QV_END: return parse_end_reason(s, &v->u);
	case QV_FLAGS: return parse_flags(s, &v->u);
	case QV_NUM: return parse_num(s, info->max, &v->u);
	case QV_COUNT: return parse_count(s, &v->u);
	case QV_DURATION: return parse_duration(s, &v->u);
	case QV_NONE: break;
	}
	return MM_EINVAL;
}

/* Parses the current word as a constant of the field and moves past it. */
static int parse_value(struct parser *p, const struct qfield_info *info, union mm_qvalue *v)
{
	char text[VALUE_TEXT_CAP];

	if (p->cur.kind != QT_WORD || p->cur.len >= sizeof(text))
		return fail_expected(p, info->what);
	memcpy(text, p->cur.text, p->cur.len);
	text[p->cur.len] = '\0';
	if (parse_constant(info, text, v) < 0)
		return fail_expected(p, info->what);
	advance(p);
	return 0;
}

/* Counts the values of a list ahead of the parse, so its array is sized once. */
static size_t count_list(const struct parser *p)
{
	struct qlex ahead = p->lx;
	struct qtok tok = p->cur;
	size_t n = 0;

	while (tok.kind == QT_WORD || tok.kind == QT_COMMA) {
		n += tok.kind == QT_WORD;
		qlex_next(&ahead, &tok);
	}
	return n;
}

/* "[v1 v2, v3]": blanks or commas separate values. */
static int parse_list(struct parser *p, const struct qfield_info *info, struct mm_qnode *n)
{
	char msg[80];
	size_t count;
	int rc;

	if (p->cur.kind != QT_LBRACK)
		return fail_expected(p, "'['");
	advance(p);
	count = count_list(p);
	if (count == 0)
		return fail_expected(p, info->what);
	if (count > MM_QUERY_MAX_LIST) {
		snprintf(msg, sizeof(msg), "list of more than %u values", MM_QUERY_MAX_LIST);
		return fail_at(p, MM_ELIMIT, p->cur.column, msg);
	}
	n->values = mm_query_add_values(p->q, count);
	if (!n->values)
		return MM_ENOMEM;
	while (n->n_values < count) {
		while (p->cur.kind == QT_COMMA)
			advance(p);
		rc = parse_value(p, info, &n->values[n->n_values]);
		if (rc < 0)
			return rc;
		n->n_values++;
	}
	while (p->cur.kind == QT_COMMA)
		advance(p);
	if (p->cur.kind != QT_RBRACK)
		return fail_expected(p, "']' or another value");
	advance(p);
	return 0;
}

/* The token after the current one ("country IN" is India, "port in [" a list). */
static struct qtok peek_token(const struct parser *p)
{
	struct qlex ahead = p->lx;
	struct qtok tok;

	qlex_next(&ahead, &tok);
	return tok;
}

static enum qtok_kind peek_kind(const struct parser *p)
{
	return peek_token(p).kind;
}

static bool peek_is(const struct parser *p, const char *word)
{
	struct qtok tok = peek_token(p);

	return qtok_is(&tok, word);
}

/* Predicates ----------------------------------------------------------- */

static const struct {
	const char *word;
	enum mm_qop op;
} op_words[] = {
	{ "eq", MM_QO_EQ }, { "ne", MM_QO_NE }, { "lt", MM_QO_LT },
	{ "le", MM_QO_LE }, { "gt", MM_QO_GT }, { "ge", MM_QO_GE },
};

/* An operator, "in [...]" or a bare constant (equality; all-set for flags). */
static int parse_operator_and_values(struct parser *p, const struct qfield_info *info, struct mm_qnode *n)
{
	bool ordered = qvalue_kind_ordered(info->kind);

	n->op = info->kind == QV_FLAGS ? MM_QO_HAS : MM_QO_EQ;
	if (p->cur.kind == QT_CMP) {
		if (!qop_allowed(info, p->cur.op))
			return fail_expected(p, info->what);
		n->op = p->cur.op;
		advance(p);
	} else if (qtok_is(&p->cur, "in") && peek_kind(p) == QT_LBRACK && qop_allowed(info, MM_QO_IN)) {
		n->op = MM_QO_IN;
		advance(p);
		return parse_list(p, info, n);
	} else if (ordered) {
		for (size_t i = 0; i < sizeof(op_words) / sizeof(op_words[0]); i++) {
			if (qtok_is(&p->cur, op_words[i].word)) {
				n->op = op_words[i].op;
				advance(p);
				break;
			}
		}
	}
	n->values = mm_query_add_values(p->q, 1);
	if (!n->values)
		return MM_ENOMEM;
	n->n_values = 1;
	return parse_value(p, info, &n->values[0]);
}

/* src, dst, "src and dst", "src or dst", "in if", "out if"; -1 when none is written. */
static int parse_direction(struct parser *p, int *dir)
{
	*dir = -1;
	if (qtok_is(&p->cur, "src")) {
		advance(p);
		*dir = MM_QD_SRC;
		if ((qtok_is(&p->cur, "and") || qtok_is(&p->cur, "or")) && peek_is(p, "dst")) {
			*dir = qtok_is(&p->cur, "and") ? MM_QD_BOTH : MM_QD_EITHER;
			advance(p);
			advance(p);
		}
	} else if (qtok_is(&p->cur, "dst")) {
		advance(p);
		*dir = MM_QD_DST;
	} else if (qtok_is(&p->cur, "in") || qtok_is(&p->cur, "out")) {
		*dir = qtok_is(&p->cur, "in") ? MM_QD_IN : MM_QD_OUT;
		advance(p);
		if (!qtok_is(&p->cur, "if"))
			return fail_expected(p, "'if'");
	}
	return 0;
}

static const char *direction_name(int dir)
{
	switch (dir) {
	case MM_QD_SRC: return "src";
	case MM_QD_DST: return "dst";
	case MM_QD_BOTH: return "src and dst";
	case MM_QD_EITHER: return "src or dst";
	case MM_QD_IN: return "in";
	case MM_QD_OUT: return "out";
	}
	return "";
}

static int parse_predicate(struct parser *p, struct mm_qnode **out)
{
	unsigned column = p->cur.column;
	const struct qfield_info *info;
	enum mm_qfield field;
	char msg[96];
	int dir, rc;

	rc = parse_direction(p, &dir);
	if (rc < 0)
		return rc;
	info = qfield_lookup(&p->cur, &field);
	if (!info)
		return fail_expected(p, dir < 0 ? "a filter (host, net, port, as, country, proto, bytes, packets, "
						  "duration, pps, bps, bpp, flags, vlan, sensor, end, if, ip4, ip6, "
						  "any, not or '(')"
						: "a field (host, net, port, as, country, bytes, packets, flags, if)");
	if (dir >= 0 && !(info->dirs & QDIR_BIT(dir))) {
		snprintf(msg, sizeof(msg), "'%s' does not take '%s'", info->name, direction_name(dir));
		return fail_at(p, MM_EINVAL, p->cur.column, msg);
	}
	rc = new_node(p, MM_QN_PRED, column, out);
	if (rc < 0)
		return rc;
	(*out)->field = field;
	(*out)->dir = dir >= 0 ? (enum mm_qdir)dir : info->bare;
	advance(p);
	return parse_operator_and_values(p, info, *out);
}

/* "ip4"/"ipv4"/"inet" and "ip6"/"ipv6"/"inet6"; 0 when the word is neither. */
static unsigned family_word(const struct qtok *tok)
{
	if (qtok_is(tok, "ip4") || qtok_is(tok, "ipv4") || qtok_is(tok, "inet"))
		return 4;
	if (qtok_is(tok, "ip6") || qtok_is(tok, "ipv6") || qtok_is(tok, "inet6"))
		return 6;
	return 0;
}

/* Expressions ---------------------------------------------------------- */

static int parse_or(struct parser *p, struct mm_qnode **out);

static int parse_primary(struct parser *p, struct mm_qnode **out)
{
	unsigned column = p->cur.column, family = family_word(&p->cur);
	char msg[64];
	int rc;

	if (p->cur.kind == QT_LPAREN) {
		rc = enter_nesting(p);
		if (rc < 0)
			return rc;
		advance(p);
		rc = parse_or(p, out);
		if (rc < 0)
			return rc;
		if (p->cur.kind != QT_RPAREN) {
			snprintf(msg, sizeof(msg), "')' to close the '(' of column %u", column);
			return fail_expected(p, msg);
		}
		p->depth--;
		advance(p);
		return 0;
	}
	if (qtok_is(&p->cur, "any")) {
		advance(p);
		return new_node(p, MM_QN_ANY, column, out);
	}
	if (family) {
		rc = new_node(p, MM_QN_PRED, column, out);
		if (rc < 0)
			return rc;
		(*out)->field = MM_QF_FAMILY;
		(*out)->values = mm_query_add_values(p->q, 1);
		if (!(*out)->values)
			return MM_ENOMEM;
		(*out)->n_values = 1;
		(*out)->values[0].u = family;
		advance(p);
		return 0;
	}
	return parse_predicate(p, out);
}

static int parse_unary(struct parser *p, struct mm_qnode **out)
{
	unsigned column = p->cur.column;
	struct mm_qnode *child;
	int rc;

	if (!at_not(p))
		return parse_primary(p, out);
	rc = enter_nesting(p);
	if (rc < 0)
		return rc;
	advance(p);
	rc = parse_unary(p, &child);
	if (rc < 0)
		return rc;
	p->depth--;
	rc = new_node(p, MM_QN_NOT, column, out);
	if (rc < 0)
		return rc;
	(*out)->first_child = child;
	child->next = NULL;
	return 0;
}

static int parse_chain(struct parser *p, enum mm_qnode_kind kind, struct mm_qnode **out);

/* An operand of and is a unary; an operand of or is a chain of ands. */
static int parse_operand(struct parser *p, enum mm_qnode_kind kind, struct mm_qnode **out)
{
	return kind == MM_QN_AND ? parse_unary(p, out) : parse_chain(p, MM_QN_AND, out);
}

static bool at_operator(const struct parser *p, enum mm_qnode_kind kind)
{
	return kind == MM_QN_AND ? at_and(p) : at_or(p);
}

/* One level of "x OP y OP z" into one n-ary node. */
static int parse_chain(struct parser *p, enum mm_qnode_kind kind, struct mm_qnode **out)
{
	struct mm_qnode *first = NULL, *next, *tail = NULL;
	int rc;

	rc = parse_operand(p, kind, &first);
	if (rc < 0 || !at_operator(p, kind)) {
		*out = first;
		return rc;
	}
	rc = new_node(p, kind, first->column, out);
	if (rc < 0)
		return rc;
	link_child(*out, &tail, first);
	while (at_operator(p, kind)) {
		advance(p);
		rc = parse_operand(p, kind, &next);
		if (rc < 0)
			return rc;
		link_child(*out, &tail, next);
	}
	return 0;
}

static int parse_or(struct parser *p, struct mm_qnode **out)
{
	return parse_chain(p, MM_QN_OR, out);
}

static int parse_text(struct parser *p, const char *text, size_t len)
{
	struct mm_qnode *root;
	int rc;

	qlex_init(&p->lx, text, len);
	p->prev.kind = QT_END;
	qlex_next(&p->lx, &p->cur);
	if (p->cur.kind == QT_END) {
		rc = new_node(p, MM_QN_ANY, 0, &root);
	} else {
		rc = parse_or(p, &root);
		if (rc == 0 && p->cur.kind != QT_END)
			rc = fail_expected(p, "'and', 'or' or the end of the query");
	}
	if (rc == 0)
		mm_query_set_root(p->q, root);
	return rc;
}

int mm_query_parse(const char *text, struct mm_query **out, unsigned *err_column)
{
	struct parser p = { 0 };
	size_t len = strnlen(text, (size_t)MM_QUERY_MAX_LEN + 1);
	int rc;

	*out = NULL;
	if (err_column)
		*err_column = 0;
	if (len > MM_QUERY_MAX_LEN)
		return mm_fail(MM_ELIMIT, "query: longer than %u bytes", MM_QUERY_MAX_LEN);
	rc = mm_query_new(&p.q);
	if (rc < 0)
		return rc;
	rc = parse_text(&p, text, len);
	if (rc < 0)
		goto out;
	*out = p.q;
	p.q = NULL;
out:
	if (err_column)
		*err_column = p.err_column;
	mm_query_free(p.q);
	return rc;
}
