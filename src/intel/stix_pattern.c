/*
 * STIX 2.1 patterning (STIX 2.1 §9): a lexer and a recursive-descent parser
 * over the whole grammar, which evaluates each expression to "a set of
 * indicators whose sighting alone satisfies it" or "not expressible, and
 * why". Only comparisons of ipv4-addr:value / ipv6-addr:value (=, IN,
 * ISSUBSET) and autonomous-system:number (=, IN) yield indicators; OR takes
 * the union of what its branches yield; everything needing correlation
 * (AND, FOLLOWEDBY, qualifiers) or another operator is not expressible.
 */
#include "intel/intel_int.h"

#include "mamori/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH_MAX 64
#define LITERAL_MAX 256

enum tok_kind {
	T_END, T_LBRACK, T_RBRACK, T_LPAREN, T_RPAREN, T_COLON, T_DOT, T_COMMA, T_STAR,
	T_EQ, T_NEQ, T_LT, T_LE, T_GT, T_GE,
	T_IDENT,   /* identifiers and keywords (told apart by text) */
	T_STRING,  /* '...' */
	T_TYPED,   /* t'...', h'...', b'...' */
	T_INT, T_FLOAT,
};

struct tok {
	enum tok_kind kind;
	size_t off, len; /* in the pattern */
};

struct parser {
	const char *s;
	size_t len;
	struct tok tok;
	int depth;
	struct mm_intel_indicator *out;
	size_t max, n;
	bool partial;
};

/* What an expression evaluates to: indicators out[first..n) or a reason. */
struct val {
	enum mm_stix_skip skip;
	size_t first;
};

static int perr(struct parser *p, const char *what)
{
	return mm_fail(MM_EFORMAT, "STIX pattern: offset %zu: %s", p->tok.off, what);
}

static bool is_ident_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident(char c)
{
	return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Scans a quoted literal starting at the quote; the end offset or 0. */
static size_t scan_quoted(const char *s, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (s[i] == '\\') {
			if (i + 1 >= len || (s[i + 1] != '\'' && s[i + 1] != '\\'))
				return 0;
			i++;
		} else if (s[i] == '\'') {
			return i + 1;
		}
	}
	return 0;
}

static int next(struct parser *p)
{
	const char *s = p->s;
	size_t i = p->tok.off + p->tok.len;

	while (i < p->len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	p->tok.off = i;
	p->tok.len = 1;
	if (i >= p->len) {
		p->tok.kind = T_END;
		p->tok.len = 0;
		return 0;
	}
	switch (s[i]) {
	case '[': p->tok.kind = T_LBRACK; return 0;
	case ']': p->tok.kind = T_RBRACK; return 0;
	case '(': p->tok.kind = T_LPAREN; return 0;
	case ')': p->tok.kind = T_RPAREN; return 0;
	case ':': p->tok.kind = T_COLON; return 0;
	case '.': p->tok.kind = T_DOT; return 0;
	case ',': p->tok.kind = T_COMMA; return 0;
	case '*': p->tok.kind = T_STAR; return 0;
	case '=':
		p->tok.kind = T_EQ;
		p->tok.len = (i + 1 < p->len && s[i + 1] == '=') ? 2 : 1;
		return 0;
	case '!':
		if (i + 1 < p->len && s[i + 1] == '=') {
			p->tok.kind = T_NEQ;
			p->tok.len = 2;
			return 0;
		}
		return perr(p, "'!' not followed by '='");
	case '<':
		p->tok.kind = T_LT;
		if (i + 1 < p->len && (s[i + 1] == '=' || s[i + 1] == '>')) {
			p->tok.kind = s[i + 1] == '=' ? T_LE : T_NEQ;
			p->tok.len = 2;
		}
		return 0;
	case '>':
		p->tok.kind = T_GT;
		if (i + 1 < p->len && s[i + 1] == '=') {
			p->tok.kind = T_GE;
			p->tok.len = 2;
		}
		return 0;
	case '\'': {
		size_t end = scan_quoted(s, p->len, i);

		if (!end)
			return perr(p, "string literal not closed (or a bad escape)");
		p->tok.kind = T_STRING;
		p->tok.len = end - i;
		return 0;
	}
	default:
		break;
	}
	if ((s[i] == 't' || s[i] == 'h' || s[i] == 'b') && i + 1 < p->len && s[i + 1] == '\'') {
		size_t end = scan_quoted(s, p->len, i + 1);

		if (!end)
			return perr(p, "typed literal not closed");
		p->tok.kind = T_TYPED;
		p->tok.len = end - i;
		return 0;
	}
	if (is_digit(s[i]) || ((s[i] == '-' || s[i] == '+') && i + 1 < p->len && is_digit(s[i + 1]))) {
		size_t j = i + 1;

		while (j < p->len && is_digit(s[j]))
			j++;
		p->tok.kind = T_INT;
		if (j + 1 < p->len && s[j] == '.' && is_digit(s[j + 1])) {
			for (j++; j < p->len && is_digit(s[j]); j++)
				;
			p->tok.kind = T_FLOAT;
		}
		p->tok.len = j - i;
		return 0;
	}
	if (is_ident_start(s[i])) {
		size_t j = i + 1;

		while (j < p->len && is_ident(s[j]))
			j++;
		p->tok.kind = T_IDENT;
		p->tok.len = j - i;
		return 0;
	}
	return perr(p, "unexpected character");
}

static bool tok_is(const struct parser *p, const char *kw)
{
	size_t n = strlen(kw);

	return p->tok.kind == T_IDENT && p->tok.len == n && memcmp(p->s + p->tok.off, kw, n) == 0;
}

static int expect(struct parser *p, enum tok_kind k, const char *what)
{
	if (p->tok.kind != k)
		return perr(p, what);
	return next(p);
}

/* The unescaped text of the current string token into buf; MM_EFORMAT if too long. */
static int string_value(struct parser *p, char *buf, size_t buf_len)
{
	size_t o = 0;

	for (size_t i = p->tok.off + 1; i + 1 < p->tok.off + p->tok.len; i++) {
		if (p->s[i] == '\\')
			i++;
		if (o + 1 >= buf_len)
			return perr(p, "string literal too long for an address");
		buf[o++] = p->s[i];
	}
	buf[o] = '\0';
	return 0;
}

/* ---- evaluation helpers ---- */

static void truncate_to(struct parser *p, size_t first)
{
	p->n = first;
}

static struct val unsupported(struct parser *p, size_t first, enum mm_stix_skip why)
{
	truncate_to(p, first);
	return (struct val){ why, first };
}

/* OR: the union; an unexpressible branch only drops its own part. */
static struct val or_vals(struct parser *p, struct val a, struct val b)
{
	if (a.skip && b.skip)
		return unsupported(p, a.first, a.skip);
	if (a.skip || b.skip)
		p->partial = true;
	return (struct val){ MM_STIX_OK, a.first };
}

static void emit(struct parser *p, const struct mm_intel_indicator *ind)
{
	if (p->n < p->max)
		p->out[p->n] = *ind;
	p->n++;
}

/* ---- grammar ---- */

enum object_class { OBJ_OTHER, OBJ_IPV4, OBJ_IPV6, OBJ_ASN };

/* objectPath: TYPE ':' first ('.' comp | '[' idx ']')*; classifies the path. */
static int object_path(struct parser *p, enum object_class *cls)
{
	size_t type_off = p->tok.off, type_len = p->tok.len;
	size_t prop_off, prop_len;
	bool simple = true;
	int rc;

	if (p->tok.kind != T_IDENT)
		return perr(p, "expected an object type");
	if ((rc = next(p)) || (rc = expect(p, T_COLON, "expected ':' after the object type")))
		return rc;
	if (p->tok.kind != T_IDENT && p->tok.kind != T_STRING)
		return perr(p, "expected a property name");
	prop_off = p->tok.off;
	prop_len = p->tok.len;
	if ((rc = next(p)))
		return rc;
	for (;;) {
		if (p->tok.kind == T_DOT) {
			if ((rc = next(p)))
				return rc;
			if (p->tok.kind != T_IDENT && p->tok.kind != T_STRING)
				return perr(p, "expected a property name after '.'");
		} else if (p->tok.kind == T_LBRACK) {
			if ((rc = next(p)))
				return rc;
			if (p->tok.kind != T_INT && p->tok.kind != T_STAR)
				return perr(p, "expected a list index or '*'");
			if ((rc = next(p)))
				return rc;
			if (p->tok.kind != T_RBRACK)
				return perr(p, "expected ']' after a list index");
		} else {
			break;
		}
		simple = false;
		if ((rc = next(p)))
			return rc;
	}
	*cls = OBJ_OTHER;
	if (!simple)
		return 0;
#define IS(off, len, lit) ((len) == sizeof(lit) - 1 && memcmp(p->s + (off), lit, (len)) == 0)
	if (IS(type_off, type_len, "ipv4-addr") && IS(prop_off, prop_len, "value"))
		*cls = OBJ_IPV4;
	else if (IS(type_off, type_len, "ipv6-addr") && IS(prop_off, prop_len, "value"))
		*cls = OBJ_IPV6;
	else if (IS(type_off, type_len, "autonomous-system") && IS(prop_off, prop_len, "number"))
		*cls = OBJ_ASN;
#undef IS
	return 0;
}

static bool is_literal(enum tok_kind k)
{
	return k == T_STRING || k == T_TYPED || k == T_INT || k == T_FLOAT || k == T_IDENT;
}

/* One literal compared against cls: emits it, or says why not. */
static int literal_indicator(struct parser *p, enum object_class cls, bool subset, bool *ok)
{
	struct mm_intel_indicator ind;
	char text[LITERAL_MAX];
	int rc;

	*ok = false;
	if (p->tok.kind == T_IDENT && !tok_is(p, "true") && !tok_is(p, "false"))
		return perr(p, "expected a literal");
	memset(&ind, 0, sizeof(ind));
	if (cls == OBJ_ASN) {
		if (p->tok.kind != T_INT || subset)
			return 0;
		if (p->tok.len >= sizeof(text))
			return perr(p, "number too long");
		memcpy(text, p->s + p->tok.off, p->tok.len);
		text[p->tok.len] = '\0';
		if (intel_parse_asn(text, &ind.asn) != 0)
			return perr(p, "AS number out of range");
		ind.kind = MM_INTEL_ASN;
	} else {
		if (p->tok.kind != T_STRING)
			return perr(p, "an address must be a string literal");
		if ((rc = string_value(p, text, sizeof(text))))
			return rc;
		if (mm_prefix_parse(&ind.prefix, text, false) != 0)
			return perr(p, "not an address or a prefix with host bits clear");
		if (mm_addr_is_v4(&ind.prefix.addr) != (cls == OBJ_IPV4))
			return perr(p, cls == OBJ_IPV4 ? "ipv4-addr compared with an IPv6 value"
						       : "ipv6-addr compared with an IPv4 value");
		ind.kind = MM_INTEL_PREFIX;
	}
	emit(p, &ind);
	*ok = true;
	return next(p);
}

static int comparison_or(struct parser *p, struct val *v);

static int prop_test(struct parser *p, struct val *v)
{
	size_t first = p->n;
	enum object_class cls;
	bool negated = false, ok;
	int rc;

	v->skip = MM_STIX_OK;
	v->first = first;
	if (p->tok.kind == T_LPAREN) {
		if (++p->depth > DEPTH_MAX)
			return perr(p, "nested deeper than 64");
		if ((rc = next(p)) || (rc = comparison_or(p, v)))
			return rc;
		p->depth--;
		return expect(p, T_RPAREN, "expected ')'");
	}
	if (tok_is(p, "EXISTS")) {
		if ((rc = next(p)) || (rc = object_path(p, &cls)))
			return rc;
		*v = unsupported(p, first, MM_STIX_SKIP_OPERATOR);
		return 0;
	}
	if ((rc = object_path(p, &cls)))
		return rc;
	if (tok_is(p, "NOT")) {
		negated = true;
		if ((rc = next(p)))
			return rc;
	}
	if (p->tok.kind == T_EQ || p->tok.kind == T_NEQ || p->tok.kind == T_LT || p->tok.kind == T_LE ||
	    p->tok.kind == T_GT || p->tok.kind == T_GE || tok_is(p, "LIKE") || tok_is(p, "MATCHES") ||
	    tok_is(p, "ISSUBSET") || tok_is(p, "ISSUPERSET")) {
		bool supported = !negated && cls != OBJ_OTHER &&
				 (p->tok.kind == T_EQ || (tok_is(p, "ISSUBSET") && cls != OBJ_ASN));
		bool subset = tok_is(p, "ISSUBSET");

		if ((rc = next(p)))
			return rc;
		if (!is_literal(p->tok.kind))
			return perr(p, "expected a literal after the operator");
		if (supported) {
			if ((rc = literal_indicator(p, cls, subset, &ok)) || ok)
				return rc;
			*v = unsupported(p, first, MM_STIX_SKIP_OPERATOR);
			return next(p);
		}
		*v = unsupported(p, first, cls == OBJ_OTHER && !negated ? MM_STIX_SKIP_OBJECT_TYPE : MM_STIX_SKIP_OPERATOR);
		return next(p);
	}
	if (tok_is(p, "IN")) {
		bool any_bad = false;

		if ((rc = next(p)) || (rc = expect(p, T_LPAREN, "expected '(' after IN")))
			return rc;
		while (p->tok.kind != T_RPAREN) {
			if (!is_literal(p->tok.kind))
				return perr(p, "expected a literal in the set");
			if (!negated && cls != OBJ_OTHER) {
				if ((rc = literal_indicator(p, cls, false, &ok)))
					return rc;
				if (!ok) {
					any_bad = true;
					if ((rc = next(p)))
						return rc;
				}
			} else if ((rc = next(p))) {
				return rc;
			}
			if (p->tok.kind == T_COMMA) {
				if ((rc = next(p)))
					return rc;
				if (p->tok.kind == T_RPAREN)
					return perr(p, "expected a literal after ','");
			} else if (p->tok.kind != T_RPAREN) {
				return perr(p, "expected ',' or ')' in the set");
			}
		}
		if (negated || cls == OBJ_OTHER || any_bad)
			*v = unsupported(p, first, cls == OBJ_OTHER && !negated ? MM_STIX_SKIP_OBJECT_TYPE
									       : MM_STIX_SKIP_OPERATOR);
		return next(p);
	}
	return perr(p, "expected a comparison operator");
}

/* AND, FOLLOWEDBY: true only with a correlation a set of addresses cannot express. */
static struct val and_vals(struct parser *p, struct val a, struct val b)
{
	return unsupported(p, a.first, a.skip ? a.skip : (b.skip ? b.skip : MM_STIX_SKIP_COMBINATION));
}

/* operand (KEYWORD operand)*, left to right, folded with combine. */
static int chain(struct parser *p, const char *keyword, int (*operand)(struct parser *, struct val *),
		 struct val (*combine)(struct parser *, struct val, struct val), struct val *v)
{
	int rc = operand(p, v);

	while (!rc && tok_is(p, keyword)) {
		struct val r;

		if ((rc = next(p)) || (rc = operand(p, &r)))
			return rc;
		*v = combine(p, *v, r);
	}
	return rc;
}

static int comparison_and(struct parser *p, struct val *v)
{
	return chain(p, "AND", prop_test, and_vals, v);
}

static int comparison_or(struct parser *p, struct val *v)
{
	return chain(p, "OR", comparison_and, or_vals, v);
}

static int observation_exprs(struct parser *p, struct val *v);

static int qualifiers(struct parser *p, bool *any)
{
	int rc;

	*any = false;
	for (;;) {
		if (tok_is(p, "START")) {
			if ((rc = next(p)))
				return rc;
			if (p->tok.kind != T_TYPED || p->s[p->tok.off] != 't')
				return perr(p, "expected t'timestamp' after START");
			if ((rc = next(p)))
				return rc;
			if (!tok_is(p, "STOP"))
				return perr(p, "expected STOP");
			if ((rc = next(p)))
				return rc;
			if (p->tok.kind != T_TYPED || p->s[p->tok.off] != 't')
				return perr(p, "expected t'timestamp' after STOP");
		} else if (tok_is(p, "WITHIN")) {
			if ((rc = next(p)))
				return rc;
			if (p->tok.kind != T_INT && p->tok.kind != T_FLOAT)
				return perr(p, "expected a number after WITHIN");
			if ((rc = next(p)))
				return rc;
			if (!tok_is(p, "SECONDS"))
				return perr(p, "expected SECONDS");
		} else if (tok_is(p, "REPEATS")) {
			if ((rc = next(p)))
				return rc;
			if (p->tok.kind != T_INT)
				return perr(p, "expected an integer after REPEATS");
			if ((rc = next(p)))
				return rc;
			if (!tok_is(p, "TIMES"))
				return perr(p, "expected TIMES");
		} else {
			return 0;
		}
		*any = true;
		if ((rc = next(p)))
			return rc;
	}
}

static int observation(struct parser *p, struct val *v)
{
	bool qualified;
	int rc;

	if (++p->depth > DEPTH_MAX)
		return perr(p, "nested deeper than 64");
	if (p->tok.kind == T_LBRACK) {
		if ((rc = next(p)) || (rc = comparison_or(p, v)) ||
		    (rc = expect(p, T_RBRACK, "expected ']' or a boolean operator")))
			return rc;
	} else if (p->tok.kind == T_LPAREN) {
		if ((rc = next(p)) || (rc = observation_exprs(p, v)) || (rc = expect(p, T_RPAREN, "expected ')'")))
			return rc;
	} else {
		return perr(p, "expected '[' or '('");
	}
	p->depth--;
	if ((rc = qualifiers(p, &qualified)))
		return rc;
	if (qualified && !v->skip)
		*v = unsupported(p, v->first, MM_STIX_SKIP_COMBINATION);
	return 0;
}

static int observation_and(struct parser *p, struct val *v)
{
	return chain(p, "AND", observation, and_vals, v);
}

static int observation_or(struct parser *p, struct val *v)
{
	return chain(p, "OR", observation_and, or_vals, v);
}

static int observation_exprs(struct parser *p, struct val *v)
{
	return chain(p, "FOLLOWEDBY", observation_or, and_vals, v);
}

int mm_stix_pattern_indicators(const char *pattern, struct mm_intel_indicator *out, size_t max,
			       size_t *n_out, enum mm_stix_skip *skip, bool *partial)
{
	struct parser p;
	struct val v;
	int rc;

	memset(&p, 0, sizeof(p));
	p.s = pattern;
	p.len = strlen(pattern);
	p.out = out;
	p.max = max;
	*n_out = 0;
	*skip = MM_STIX_OK;
	*partial = false;
	rc = next(&p);
	if (!rc)
		rc = observation_exprs(&p, &v);
	if (!rc && p.tok.kind != T_END)
		rc = perr(&p, "unexpected text after the pattern");
	if (rc)
		return rc;
	*skip = v.skip;
	*n_out = v.skip ? 0 : p.n;
	*partial = !v.skip && p.partial;
	return 0;
}
