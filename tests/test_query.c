/*
 * query/: the filter language (parse, print, evaluate) and aggregation
 * specs with the reference aggregator. Golden round trips live in
 * tests/query/roundtrip.golden; random ASTs check print → parse → equal,
 * and random flows check the evaluator against predicates written here
 * independently of it.
 */
#include "mamori/query.h"
#include "mamori/status.h"

#include "test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct mm_query *parse_ok(const char *text)
{
	struct mm_query *q = NULL;
	int rc = mm_query_parse(text, &q, NULL);

	cr_assert_eq(rc, 0, "parse '%s': %s", text, mm_last_error());
	cr_assert_eq(mm_query_check(q), 0, "check '%s': %s", text, mm_last_error());
	return q;
}

static char *format_ok(const struct mm_query *q)
{
	char *text = NULL;

	cr_assert_eq(mm_query_format(q, &text), 0, "format: %s", mm_last_error());
	return text;
}

/* Parses in, prints it as want, and parses want back to an equal AST. */
static void check_roundtrip(const char *in, const char *want)
{
	struct mm_query *q = parse_ok(in), *again;
	char *text = format_ok(q);

	cr_assert_str_eq(text, want, "'%s' printed as '%s', want '%s'", in, text, want);
	again = parse_ok(text);
	cr_assert(mm_query_equal(q, again), "'%s' does not parse back to the AST of '%s'", text, in);
	free(text);
	mm_query_free(q);
	mm_query_free(again);
}

/* Golden round trips ------------------------------------------------------ */

static void unescape_newlines(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] == 'n') {
			*w++ = '\n';
			r++;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

Test(query_golden, roundtrip_file)
{
	char *path = tu_source_path("tests/query/roundtrip.golden");
	char *data = tu_read_file(path, NULL), *line, *save = NULL;
	size_t n_cases = 0;

	cr_assert_not_null(data, "cannot read %s", path);
	for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *arrow = strstr(line, " => ");
		if (line[0] == '#')
			continue;
		cr_assert_not_null(arrow, "golden line without ' => ': %s", line);
		*arrow = '\0';
		unescape_newlines(line);
		check_roundtrip(line, arrow + 4);
		n_cases++;
	}
	cr_assert_gt(n_cases, 50, "only %zu golden cases", n_cases);
	free(data);
	free(path);
}

/* Tree shape ------------------------------------------------------------- */

Test(query_parse, precedence_not_over_and_over_or)
{
	struct mm_query *q = parse_ok("port 1 or port 2 and not port 3");
	const struct mm_qnode *root = mm_query_root(q), *and_node, *not_node;

	cr_assert_eq(root->kind, MM_QN_OR);
	cr_assert_eq(root->first_child->kind, MM_QN_PRED);
	cr_assert_eq(root->first_child->values[0].u, 1);
	and_node = root->first_child->next;
	cr_assert_eq(and_node->kind, MM_QN_AND);
	cr_assert_null(and_node->next);
	cr_assert_eq(and_node->first_child->values[0].u, 2);
	not_node = and_node->first_child->next;
	cr_assert_eq(not_node->kind, MM_QN_NOT);
	cr_assert_eq(not_node->first_child->kind, MM_QN_PRED);
	cr_assert_eq(not_node->first_child->values[0].u, 3);
	mm_query_free(q);
}

Test(query_parse, predicates_are_typed)
{
	struct mm_query *q = parse_ok("src net 192.0.2.0/24");
	const struct mm_qnode *n = mm_query_root(q);
	char buf[MM_PREFIX_STRLEN];

	cr_assert_eq(n->kind, MM_QN_PRED);
	cr_assert_eq(n->field, MM_QF_NET);
	cr_assert_eq(n->dir, MM_QD_SRC);
	cr_assert_eq(n->op, MM_QO_EQ);
	cr_assert_eq(n->n_values, 1);
	cr_assert_str_eq(mm_prefix_format(&n->values[0].prefix, buf), "192.0.2.0/24");
	cr_assert_eq(n->column, 1);
	mm_query_free(q);

	q = parse_ok("bytes > 10M");
	n = mm_query_root(q);
	cr_assert_eq(n->field, MM_QF_BYTES);
	cr_assert_eq(n->dir, MM_QD_NONE);
	cr_assert_eq(n->op, MM_QO_GT);
	cr_assert_eq(n->values[0].u, 10000000u); /* 1000-based, like nfdump */
	mm_query_free(q);

	q = parse_ok("duration >= 1.5s");
	cr_assert_eq(mm_query_root(q)->values[0].u, 1500000000u);
	mm_query_free(q);

	q = parse_ok("flags SA");
	n = mm_query_root(q);
	cr_assert_eq(n->op, MM_QO_HAS);
	cr_assert_eq(n->values[0].u, 0x12u); /* SYN 0x02 | ACK 0x10 */
	mm_query_free(q);
}

/* Errors ----------------------------------------------------------------- */

struct error_case {
	const char *text;
	unsigned column;
	const char *says;
};

static const struct error_case error_cases[] = {
	{ "port x", 6, "expected a port number 0..65535 after 'port', found 'x'" },
	{ "proto tcp and dst port 443 and src net x", 40, "expected a prefix after 'net', found 'x'" },
	{ "port 65536", 6, "expected a port number" },
	{ "port", 5, "found the end of the query" },
	{ "port 22 port 23", 9, "expected 'and', 'or' or the end of the query after '22', found 'port'" },
	{ "(port 22", 9, "expected ')' to close the '(' of column 1" },
	{ "port 22)", 8, "found ')'" },
	{ "frobnicate 3", 1, "expected a filter (host, net" },
	{ "src 10.0.0.1", 5, "expected a field (host, net" },
	{ "src proto tcp", 5, "'proto' does not take 'src'" },
	{ "in port 3", 4, "expected 'if' after 'in'" },
	{ "in if x", 7, "expected an interface index" },
	{ "host 10.0.0.0/8", 6, "expected an address after 'host'" },
	{ "net 10.0.0.0/33", 5, "expected a prefix" },
	{ "bytes > 10X", 9, "expected a byte count" },
	{ "bytes > 99999999999999999999", 9, "expected a byte count" },
	{ "duration > 5fortnights", 12, "expected a duration" },
	{ "flags SX", 7, "expected TCP flags" },
	{ "flags > S", 7, "expected TCP flags (letters of FSRPAUEC) after 'flags', found '>'" },
	{ "proto < 6", 7, "after 'proto', found '<'" },
	{ "country JPN", 9, "expected a two-letter country code" },
	{ "end sleepy", 5, "expected an end reason" },
	{ "vlan 4096", 6, "expected a VLAN id 0..4095" },
	{ "port in []", 10, "expected a port number 0..65535 after '[', found ']'" },
	{ "port in [22 (", 13, "expected ']' or another value after '22', found '('" },
	{ "port in 22", 6, "expected a port number 0..65535 after 'port', found 'in'" },
	{ "port 22 and", 12, "found the end of the query" },
	{ "not", 4, "found the end of the query" },
	{ "port 22 & port 23", 9, "found '&'" },
	{ "port 22 $", 9, "found '$'" },
	{ "port \x01", 6, "found '\\x01'" },
	{ "()", 2, "found ')'" },
};

Test(query_errors, every_error_names_its_column_and_expectation)
{
	for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];
		struct mm_query *q = (struct mm_query *)1;
		unsigned column = 999;
		char prefix[64];

		cr_assert_eq(mm_query_parse(c->text, &q, &column), MM_EINVAL, "accepted '%s'", c->text);
		cr_assert_null(q);
		cr_assert_eq(column, c->column, "'%s': column %u, want %u (%s)", c->text, column, c->column,
			     mm_last_error());
		snprintf(prefix, sizeof(prefix), "query: column %u: ", c->column);
		cr_assert(strncmp(mm_last_error(), prefix, strlen(prefix)) == 0, "'%s': message '%s'", c->text,
			  mm_last_error());
		cr_assert(strstr(mm_last_error(), c->says) != NULL, "'%s': message '%s' lacks '%s'", c->text,
			  mm_last_error(), c->says);
	}
}

Test(query_errors, caret_points_at_the_column)
{
	char buf[16];

	cr_assert_str_eq(mm_query_caret(1, buf, sizeof(buf)), "^");
	cr_assert_str_eq(mm_query_caret(4, buf, sizeof(buf)), "   ^");
	cr_assert_eq(strlen(mm_query_caret(500, buf, sizeof(buf))), sizeof(buf) - 1);
}

static char *append(char *w, const char *s)
{
	size_t n = strlen(s);

	memcpy(w, s, n);
	return w + n;
}

/* head, then unit n times, then tail (malloc'd). */
static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
	char *s = malloc(strlen(head) + strlen(unit) * n + strlen(tail) + 1), *w = s;

	cr_assert_not_null(s);
	w = append(w, head);
	for (size_t i = 0; i < n; i++)
		w = append(w, unit);
	w = append(w, tail);
	*w = '\0';
	return s;
}

Test(query_errors, caps_on_depth_length_and_lists)
{
	struct mm_query *q;
	unsigned column;
	char *text, *closed;

	/* 64 levels pass, the 65th is refused where it opens. */
	text = repeat("", "(", MM_QUERY_MAX_DEPTH, "any");
	closed = repeat(text, ")", MM_QUERY_MAX_DEPTH, "");
	cr_assert_eq(mm_query_parse(closed, &q, NULL), 0, "%s", mm_last_error());
	mm_query_free(q);
	free(closed);
	free(text);
	text = repeat("", "(", MM_QUERY_MAX_DEPTH + 1, "any");
	cr_assert_eq(mm_query_parse(text, &q, &column), MM_ELIMIT);
	cr_assert_eq(column, MM_QUERY_MAX_DEPTH + 1);
	free(text);
	text = repeat("", "not ", MM_QUERY_MAX_DEPTH + 1, "any");
	cr_assert_eq(mm_query_parse(text, &q, &column), MM_ELIMIT);
	cr_assert_eq(column, 4 * MM_QUERY_MAX_DEPTH + 1);
	cr_assert(strstr(mm_last_error(), "nesting deeper than 64") != NULL, "%s", mm_last_error());
	free(text);
	/* The deepest accepted query checks and round-trips (found by fuzz_query). */
	text = repeat("", "!", MM_QUERY_MAX_DEPTH - 1, "(bps 1 or bpp < 220) and port 1");
	closed = repeat("", "not ", MM_QUERY_MAX_DEPTH - 1, "(bps 1 or bpp < 220) and port 1");
	check_roundtrip(text, closed);
	free(closed);
	free(text);
	text = repeat("", "!", MM_QUERY_MAX_DEPTH, "not any");
	cr_assert_eq(mm_query_parse(text, &q, &column), MM_ELIMIT);
	free(text);
	text = repeat("", "!", 100000, "any");
	cr_assert_eq(mm_query_parse(text, &q, NULL), MM_ELIMIT);
	free(text);

	text = repeat("any", " ", MM_QUERY_MAX_LEN, "");
	cr_assert_eq(mm_query_parse(text, &q, NULL), MM_ELIMIT);
	cr_assert(strstr(mm_last_error(), "longer than 65536 bytes") != NULL, "%s", mm_last_error());
	free(text);

	text = repeat("port in [", "1 ", MM_QUERY_MAX_LIST, "]");
	cr_assert_eq(mm_query_parse(text, &q, NULL), 0, "%s", mm_last_error());
	cr_assert_eq(mm_query_root(q)->n_values, MM_QUERY_MAX_LIST);
	mm_query_free(q);
	free(text);
	text = repeat("port in [", "1 ", MM_QUERY_MAX_LIST + 1, "]");
	cr_assert_eq(mm_query_parse(text, &q, &column), MM_ELIMIT);
	cr_assert_eq(column, 10);
	free(text);
}

/* Evaluation ------------------------------------------------------------- */

static struct mm_flow sample_flow(void)
{
	struct mm_flow f;

	memset(&f, 0, sizeof(f));
	mm_addr_parse(&f.src, "192.0.2.10");
	mm_addr_parse(&f.dst, "198.51.100.20");
	f.src_port = 51000;
	f.dst_port = 443;
	f.proto = 6;
	f.first_ns = 1000000000000ull;
	f.last_ns = f.first_ns + 10000000000ull; /* 10 s */
	f.fwd_packets = 20;
	f.fwd_bytes = 3000;
	f.rev_packets = 30;
	f.rev_bytes = 42000;
	f.src_as = 64500;
	f.dst_as = 4713;
	f.in_if = 3;
	f.out_if = 4;
	f.vlan = 100;
	f.sensor_id = 7;
	f.fwd_tcp_flags = 0x1b; /* FIN SYN PSH ACK from the originator */
	f.rev_tcp_flags = 0x16; /* SYN RST ACK from the responder */
	f.end_reason = MM_END_EOF;
	memcpy(f.src_country, "DE", 2);
	memcpy(f.dst_country, "JP", 2);
	return f;
}

static bool matches(const char *text, const struct mm_flow *f)
{
	struct mm_query *q = parse_ok(text);
	bool m = mm_query_match(q, f);

	mm_query_free(q);
	return m;
}

Test(query_eval, fields_read_the_documented_sides)
{
	struct mm_flow f = sample_flow();
	static const char *const yes[] = {
		"any", "proto tcp", "dst port 443", "port 443", "src port 51000", "port > 50000",
		"src net 192.0.2.0/24 and dst host 198.51.100.20", "host 198.51.100.20", "ip4", "not ip6",
		"bytes 45k",              /* both directions: 3000 + 42000 */
		"packets 50", "src bytes 3000", "dst packets 30", "duration 10s", "pps 5", "bps 36000",
		"bpp 900", "flags S and flags A", "flags FSRPA", "src flags F and not dst flags F",
		"dst flags R", "src as 64500", "as 4713", "dst country JP", "country DE",
		"src and dst net 0.0.0.0/0", "port in [22 443]", "host in [10.0.0.1 192.0.2.10]",
		"net in [10.0.0.0/8 198.51.100.0/24]", "in if 3", "out if 4", "if 4", "vlan 100",
		"sensor 7", "end eof", "end in [idle eof]", "proto in [udp tcp]", "country in [FR JP]",
		"port != 443",            /* either side: the source port is not 443 */
		"not (port 22 or port 23)", "packets > 3 and bytes < 1M or port 1",
	};
	static const char *const no[] = {
		"proto udp", "src port 443", "dst port < 443", "src and dst port 443", "ip6",
		"bytes > 45k", "src bytes > 3000", "flags U", "src flags R", "dst as 64500",
		"country US", "src country JP", "host 192.0.2.11", "net 2001:db8::/32",
		"in if 4", "if 5", "vlan 101", "sensor 8", "end idle", "duration > 10s", "pps > 5",
		"bpp < 900", "port in [22 23]", "not any", "proto tcp and not port 443",
		"src and dst net 192.0.2.0/24",
	};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		cr_assert(matches(yes[i], &f), "'%s' should match", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		cr_assert_not(matches(no[i], &f), "'%s' should not match", no[i]);
}

Test(query_eval, ipv6_and_derived_values)
{
	struct mm_flow f = sample_flow();

	mm_addr_parse(&f.src, "2001:db8:1::5");
	mm_addr_parse(&f.dst, "2001:db8:2::6");
	cr_assert(matches("ip6 and src net 2001:db8:1::/48 and not src net 2001:db8:2::/48", &f));
	cr_assert(matches("net 2001:db8::/32 and host 2001:db8:2::6", &f));
	cr_assert_not(matches("net 192.0.2.0/24", &f));
	f.last_ns = f.first_ns; /* zero duration: rates are 0, not a division by zero */
	cr_assert_eq(mm_query_flow_pps(&f), 0);
	cr_assert(matches("bps 0 and duration 0", &f));
	f.fwd_packets = f.rev_packets = 0;
	cr_assert(matches("bpp 0", &f));
}

/* Random ASTs: print → parse → equal --------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64*: reproducible from the fixed seed */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static uint64_t rnd_below(uint64_t n)
{
	return rnd() % n;
}

static uint64_t rnd_u64_interesting(void)
{
	switch (rnd_below(5)) {
	case 0: return rnd_below(1000);
	case 1: return rnd_below(1000) * 1000000;
	case 2: return UINT64_MAX - rnd_below(3);
	case 3: return rnd() >> rnd_below(64);
	default: return rnd();
	}
}

static void random_addr(struct mm_addr *a)
{
	uint8_t b[16];

	for (int i = 0; i < 16; i++)
		b[i] = (uint8_t)rnd();
	if (rnd_below(2))
		mm_addr_set_v4(a, b);
	else
		mm_addr_set_v6(a, b);
}

static void random_value(enum mm_qfield field, union mm_qvalue *v)
{
	static const uint64_t num_max[MM_QF_COUNT_] = {
		[MM_QF_PORT] = 65535, [MM_QF_AS] = UINT32_MAX, [MM_QF_IF] = UINT32_MAX,
		[MM_QF_VLAN] = 4095,  [MM_QF_SENSOR] = UINT32_MAX,
	};

	switch (field) {
	case MM_QF_HOST: random_addr(&v->addr); break;
	case MM_QF_NET:
		random_addr(&v->addr);
		mm_prefix_from_addr(&v->prefix, &v->addr,
				    (unsigned)rnd_below(mm_addr_is_v4(&v->addr) ? 33 : 129));
		break;
	case MM_QF_COUNTRY:
		v->country[0] = (char)('A' + rnd_below(26));
		v->country[1] = (char)('A' + rnd_below(26));
		break;
	case MM_QF_PROTO: v->u = rnd_below(256); break;
	case MM_QF_FAMILY: v->u = rnd_below(2) ? 4 : 6; break;
	case MM_QF_FLAGS: v->u = 1 + rnd_below(255); break;
	case MM_QF_END: v->u = rnd_below(MM_END_RESOURCE + 1); break;
	case MM_QF_PORT:
	case MM_QF_AS:
	case MM_QF_IF:
	case MM_QF_VLAN:
	case MM_QF_SENSOR: v->u = rnd_below(num_max[field] + 1); break;
	default: v->u = rnd_u64_interesting(); break;
	}
}

/* Picks a direction, operator and values the field accepts. */
static void random_predicate(struct mm_query *q, struct mm_qnode *n)
{
	static const enum mm_qdir sides[] = { MM_QD_EITHER, MM_QD_SRC, MM_QD_DST, MM_QD_BOTH };
	static const enum mm_qdir totals[] = { MM_QD_NONE, MM_QD_SRC, MM_QD_DST };
	static const enum mm_qdir ifs[] = { MM_QD_EITHER, MM_QD_IN, MM_QD_OUT };
	enum mm_qfield field = (enum mm_qfield)rnd_below(MM_QF_COUNT_);
	bool ordered = field == MM_QF_PORT || field == MM_QF_AS || field == MM_QF_IF ||
		       (field >= MM_QF_BYTES && field <= MM_QF_BPP) || field == MM_QF_VLAN ||
		       field == MM_QF_SENSOR;

	n->field = field;
	n->dir = MM_QD_NONE;
	if (field <= MM_QF_COUNTRY)
		n->dir = sides[rnd_below(4)];
	else if (field == MM_QF_IF)
		n->dir = ifs[rnd_below(3)];
	else if (field == MM_QF_BYTES || field == MM_QF_PACKETS || field == MM_QF_FLAGS)
		n->dir = totals[rnd_below(3)];
	n->op = MM_QO_EQ;
	if (field == MM_QF_FLAGS)
		n->op = MM_QO_HAS;
	else if (field != MM_QF_FAMILY && rnd_below(4) == 0)
		n->op = MM_QO_IN;
	else if (ordered)
		n->op = (enum mm_qop)rnd_below(MM_QO_GE + 1);
	n->n_values = n->op == MM_QO_IN ? 1 + rnd_below(5) : 1;
	n->values = mm_query_add_values(q, n->n_values);
	cr_assert_not_null(n->values);
	for (size_t i = 0; i < n->n_values; i++)
		random_value(field, &n->values[i]);
}

static struct mm_qnode *random_node(struct mm_query *q, unsigned depth, enum mm_qnode_kind parent)
{
	enum mm_qnode_kind kind = MM_QN_PRED;
	struct mm_qnode *n;
	uint64_t pick = rnd_below(10);

	if (depth < 6 && pick < 5)
		kind = pick < 2 ? MM_QN_AND : pick < 4 ? MM_QN_OR : MM_QN_NOT;
	else if (pick == 9)
		kind = MM_QN_ANY;
	if (kind == parent && kind != MM_QN_NOT)
		kind = MM_QN_NOT; /* the parser flattens and-under-and, so such trees are not canonical */
	n = mm_query_add_node(q, kind);
	cr_assert_not_null(n);
	if (kind == MM_QN_PRED) {
		random_predicate(q, n);
	} else if (kind == MM_QN_NOT) {
		mm_query_append_child(n, random_node(q, depth + 1, kind));
	} else if (kind != MM_QN_ANY) {
		size_t n_children = 2 + rnd_below(3);
		for (size_t i = 0; i < n_children; i++)
			mm_query_append_child(n, random_node(q, depth + 1, kind));
	}
	return n;
}

Test(query_property, random_asts_print_and_parse_back_equal)
{
	for (int i = 0; i < 3000; i++) {
		struct mm_query *q, *again;
		char *text, *text2;

		cr_assert_eq(mm_query_new(&q), 0);
		mm_query_set_root(q, random_node(q, 1, MM_QN_PRED));
		cr_assert_eq(mm_query_check(q), 0, "generated tree %d: %s", i, mm_last_error());
		text = format_ok(q);
		cr_assert_eq(mm_query_parse(text, &again, NULL), 0, "'%s': %s", text, mm_last_error());
		cr_assert(mm_query_equal(q, again), "'%s' parses to a different AST", text);
		text2 = format_ok(again);
		cr_assert_str_eq(text, text2);
		free(text);
		free(text2);
		mm_query_free(q);
		mm_query_free(again);
	}
}

Test(query_property, check_refuses_malformed_trees)
{
	struct mm_query *q;
	struct mm_qnode *and_node, *inner, *pred;

	cr_assert_eq(mm_query_new(&q), 0);
	and_node = mm_query_add_node(q, MM_QN_AND);
	inner = mm_query_add_node(q, MM_QN_AND);
	pred = mm_query_add_node(q, MM_QN_PRED);
	pred->field = MM_QF_PORT;
	pred->dir = MM_QD_EITHER;
	pred->n_values = 1;
	pred->values = mm_query_add_values(q, 1);
	pred->values[0].u = 70000; /* beyond a port's 16 bits */
	mm_query_append_child(and_node, pred);
	mm_query_set_root(q, and_node);
	cr_assert_eq(mm_query_check(q), MM_EINVAL, "an and with one child passed");
	mm_query_append_child(and_node, mm_query_add_node(q, MM_QN_ANY));
	cr_assert_eq(mm_query_check(q), MM_EINVAL, "port 70000 passed");
	pred->values[0].u = 22;
	cr_assert_eq(mm_query_check(q), 0, "%s", mm_last_error());
	pred->dir = MM_QD_IN; /* interfaces only */
	cr_assert_eq(mm_query_check(q), MM_EINVAL);
	pred->dir = MM_QD_EITHER;
	pred->op = MM_QO_HAS; /* flags only */
	cr_assert_eq(mm_query_check(q), MM_EINVAL);
	pred->op = MM_QO_EQ;
	mm_query_append_child(inner, mm_query_add_node(q, MM_QN_ANY));
	mm_query_append_child(inner, mm_query_add_node(q, MM_QN_ANY));
	mm_query_append_child(and_node, inner);
	cr_assert_eq(mm_query_check(q), MM_EINVAL, "and under and passed");
	mm_query_free(q);
}

/* Random flows: the evaluator against predicates written independently ---- */

/* One atom: its filter text and a direct C reading of what it should mean. */
struct atom {
	char text[64];
	int kind;
	uint64_t a;
	struct mm_prefix net;
};

enum { A_DST_PORT, A_PORT, A_SRC_NET, A_BYTES_GT, A_PACKETS_LT, A_FLAGS, A_PROTO, A_DST_AS, A_KINDS };

static void random_atom(struct atom *at)
{
	char buf[MM_PREFIX_STRLEN];
	struct mm_addr base;

	at->kind = (int)rnd_below(A_KINDS);
	switch (at->kind) {
	case A_DST_PORT:
		at->a = rnd_below(8);
		snprintf(at->text, sizeof(at->text), "dst port %llu", (unsigned long long)at->a);
		break;
	case A_PORT:
		at->a = rnd_below(8);
		snprintf(at->text, sizeof(at->text), "port %llu", (unsigned long long)at->a);
		break;
	case A_SRC_NET:
		mm_addr_set_v4_u32(&base, 0x0a000000u | (uint32_t)rnd_below(4) << 6);
		mm_prefix_from_addr(&at->net, &base, 24 + (unsigned)rnd_below(9));
		snprintf(at->text, sizeof(at->text), "src net %s", mm_prefix_format(&at->net, buf));
		break;
	case A_BYTES_GT:
		at->a = rnd_below(4000);
		snprintf(at->text, sizeof(at->text), "bytes > %llu", (unsigned long long)at->a);
		break;
	case A_PACKETS_LT:
		at->a = rnd_below(12);
		snprintf(at->text, sizeof(at->text), "packets < %llu", (unsigned long long)at->a);
		break;
	case A_FLAGS:
		at->a = 1u << rnd_below(5);
		snprintf(at->text, sizeof(at->text), "flags %c", "FSRPA"[__builtin_ctzll(at->a)]);
		break;
	case A_PROTO:
		at->a = rnd_below(2) ? 6 : 17;
		snprintf(at->text, sizeof(at->text), "proto %s", at->a == 6 ? "tcp" : "udp");
		break;
	default:
		at->a = rnd_below(3);
		snprintf(at->text, sizeof(at->text), "dst as %llu", (unsigned long long)at->a);
		break;
	}
}

static bool atom_holds(const struct atom *at, const struct mm_flow *f)
{
	uint32_t src = mm_addr_v4_u32(&f->src);
	uint32_t mask = at->net.len ? ~0u << (32 - at->net.len) : 0;

	switch (at->kind) {
	case A_DST_PORT: return f->dst_port == at->a;
	case A_PORT: return f->src_port == at->a || f->dst_port == at->a;
	case A_SRC_NET: return (src & mask) == mm_addr_v4_u32(&at->net.addr);
	case A_BYTES_GT: return f->fwd_bytes + f->rev_bytes > at->a;
	case A_PACKETS_LT: return f->fwd_packets + f->rev_packets < at->a;
	case A_FLAGS: return ((f->fwd_tcp_flags | f->rev_tcp_flags) & at->a) != 0;
	case A_PROTO: return f->proto == at->a;
	default: return f->dst_as == at->a;
	}
}

static void random_small_flow(struct mm_flow *f)
{
	memset(f, 0, sizeof(*f));
	mm_addr_set_v4_u32(&f->src, 0x0a000000u | (uint32_t)rnd_below(1024));
	mm_addr_set_v4_u32(&f->dst, 0xc0000200u | (uint32_t)rnd_below(256));
	f->src_port = (uint16_t)rnd_below(8);
	f->dst_port = (uint16_t)rnd_below(8);
	f->proto = rnd_below(2) ? 6 : 17;
	f->fwd_packets = rnd_below(7);
	f->rev_packets = rnd_below(7);
	f->fwd_bytes = rnd_below(2500);
	f->rev_bytes = rnd_below(2500);
	f->fwd_tcp_flags = (uint8_t)rnd_below(32);
	f->rev_tcp_flags = (uint8_t)rnd_below(32);
	f->dst_as = (uint32_t)rnd_below(3);
}

Test(query_property, evaluator_agrees_with_independent_predicates)
{
	struct mm_flow flows[200];

	for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++)
		random_small_flow(&flows[i]);
	for (int round = 0; round < 400; round++) {
		/* (A op1 B) op2 not C, with the operators chosen at random */
		struct atom at[3];
		bool and1 = rnd_below(2), and2 = rnd_below(2);
		char text[256];
		struct mm_query *q;

		for (int i = 0; i < 3; i++)
			random_atom(&at[i]);
		snprintf(text, sizeof(text), "(%s %s %s) %s not %s", at[0].text, and1 ? "and" : "or", at[1].text,
			 and2 ? "&&" : "||", at[2].text);
		q = parse_ok(text);
		for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++) {
			const struct mm_flow *f = &flows[i];
			bool left = and1 ? atom_holds(&at[0], f) && atom_holds(&at[1], f)
					 : atom_holds(&at[0], f) || atom_holds(&at[1], f);
			bool want = and2 ? left && !atom_holds(&at[2], f) : left || !atom_holds(&at[2], f);
			cr_assert_eq(mm_query_match(q, f), want, "'%s' on flow %zu", text, i);
		}
		mm_query_free(q);
	}
}

/* Aggregation ------------------------------------------------------------ */

Test(query_agg, parses_keys_and_metrics)
{
	struct mm_qkey keys[MM_QAGG_MAX_KEYS];
	enum mm_qmetric m;
	size_t n;
	char buf[24];

	cr_assert_eq(mm_qagg_parse_keys("srcip,dstport,srcnet/24,dstnet/64,dstnet/16/48", keys, 8, &n), 0, "%s",
		     mm_last_error());
	cr_assert_eq(n, 5);
	cr_assert_eq(keys[0].kind, MM_QK_SRCIP);
	cr_assert_eq(keys[1].kind, MM_QK_DSTPORT);
	cr_assert_eq(keys[2].kind, MM_QK_SRCNET);
	cr_assert_eq(keys[2].prefix_len_v4, 24);
	cr_assert_eq(keys[2].prefix_len_v6, 24);
	cr_assert_eq(keys[3].prefix_len_v4, 32); /* /64 keeps whole IPv4 addresses */
	cr_assert_eq(keys[3].prefix_len_v6, 64);
	cr_assert_str_eq(mm_qkey_format(&keys[2], buf), "srcnet/24");
	cr_assert_str_eq(mm_qkey_format(&keys[4], buf), "dstnet/16/48");
	cr_assert_eq(mm_qagg_parse_keys("srcport", keys, 8, &n), 0);
	cr_assert_eq(n, 1);

	cr_assert_eq(mm_qagg_parse_keys("srcip,bogus", keys, 8, &n), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "key 'bogus': not one of srcip") != NULL, "%s", mm_last_error());
	cr_assert_eq(mm_qagg_parse_keys("srcnet", keys, 8, &n), MM_EINVAL);
	cr_assert_eq(mm_qagg_parse_keys("srcnet/33/24", keys, 8, &n), MM_EINVAL);
	cr_assert_eq(mm_qagg_parse_keys("srcnet/129", keys, 8, &n), MM_EINVAL);
	cr_assert_eq(mm_qagg_parse_keys("srcport/8", keys, 8, &n), MM_EINVAL);
	cr_assert_eq(mm_qagg_parse_keys("srcip,,dstip", keys, 8, &n), MM_EINVAL);
	cr_assert_eq(mm_qagg_parse_keys("srcip,dstip,proto", keys, 2, &n), MM_ELIMIT);

	{
		struct mm_qagg spec;
		struct mm_qagg_ref *r;
		mm_qagg_init(&spec);
		spec.keys[0].kind = MM_QK_SRCNET;
		spec.keys[0].prefix_len_v4 = 40; /* built by code past IPv4's 32 bits */
		spec.n_keys = 1;
		cr_assert_eq(mm_qagg_ref_new(&r, &spec, 10), MM_EINVAL);
	}

	cr_assert_eq(mm_qagg_parse_metric("bytes", &m), 0);
	cr_assert_eq(m, MM_QM_BYTES);
	cr_assert_eq(mm_qagg_parse_metric("octets", &m), MM_EINVAL);
}

static struct mm_flow agg_flow(const char *src, uint16_t dport, uint64_t bytes, uint64_t first_s)
{
	struct mm_flow f;

	memset(&f, 0, sizeof(f));
	mm_addr_parse(&f.src, src);
	mm_addr_parse(&f.dst, "198.51.100.1");
	f.dst_port = dport;
	f.fwd_packets = 1;
	f.fwd_bytes = bytes;
	f.first_ns = first_s * 1000000000ull;
	return f;
}

Test(query_agg, reference_top_n_with_distinct_counts)
{
	struct mm_qagg spec;
	struct mm_qagg_ref *r;
	const struct mm_qagg_row *rows;
	size_t n;
	struct mm_flow flows[] = {
		agg_flow("10.0.0.1", 22, 100, 0), agg_flow("10.0.0.2", 22, 100, 0),
		agg_flow("10.0.0.2", 22, 100, 0), agg_flow("10.0.1.9", 443, 5000, 0),
		agg_flow("10.0.0.3", 80, 10, 0),
	};
	char buf[MM_ADDR_STRLEN];

	mm_qagg_init(&spec);
	cr_assert_eq(mm_qagg_parse_keys("srcnet/24", spec.keys, MM_QAGG_MAX_KEYS, &spec.n_keys), 0);
	cr_assert_eq(mm_qagg_parse_keys("srcip,dstport", spec.distinct, MM_QAGG_MAX_DISTINCT, &spec.n_distinct), 0);
	spec.top_n = 1;
	cr_assert_eq(mm_qagg_ref_new(&r, &spec, 1000), 0);
	for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++)
		cr_assert_eq(mm_qagg_ref_add(r, &flows[i]), 0);
	cr_assert_eq(mm_qagg_ref_finish(r, &rows, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(mm_addr_format(&rows[0].key[0].addr, buf), "10.0.0.0");
	cr_assert_eq(rows[0].flows, 4);
	cr_assert_eq(rows[0].bytes, 310);
	cr_assert_eq(rows[0].distinct[0], 3); /* 10.0.0.1, .2, .3 */
	cr_assert_eq(rows[0].distinct[1], 2); /* ports 22 and 80 */
	mm_qagg_ref_free(r);

	/* Ordered by bytes the other /24 wins. */
	spec.order_by = MM_QM_BYTES;
	cr_assert_eq(mm_qagg_ref_new(&r, &spec, 1000), 0);
	for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++)
		cr_assert_eq(mm_qagg_ref_add(r, &flows[i]), 0);
	cr_assert_eq(mm_qagg_ref_finish(r, &rows, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(mm_addr_format(&rows[0].key[0].addr, buf), "10.0.1.0");
	cr_assert_eq(rows[0].bytes, 5000);
	mm_qagg_ref_free(r);
}

Test(query_agg, time_buckets_totals_and_cap)
{
	struct mm_qagg spec;
	struct mm_qagg_ref *r;
	const struct mm_qagg_row *rows;
	size_t n;
	struct mm_flow flows[] = {
		agg_flow("10.0.0.1", 22, 1, 10), agg_flow("10.0.0.1", 22, 2, 299),
		agg_flow("10.0.0.1", 22, 4, 300), agg_flow("10.0.0.1", 22, 8, 901),
	};

	mm_qagg_init(&spec); /* no keys: one totals row per bucket */
	spec.every_ns = 300 * 1000000000ull;
	cr_assert_eq(mm_qagg_ref_new(&r, &spec, 1000), 0);
	for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++)
		cr_assert_eq(mm_qagg_ref_add(r, &flows[i]), 0);
	cr_assert_eq(mm_qagg_ref_finish(r, &rows, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(rows[0].bucket_ns, 0);
	cr_assert_eq(rows[0].bytes, 3);
	cr_assert_eq(rows[1].bucket_ns, 300 * 1000000000ull);
	cr_assert_eq(rows[1].bytes, 4);
	cr_assert_eq(rows[2].bucket_ns, 900 * 1000000000ull);
	cr_assert_eq(rows[2].bytes, 8);
	mm_qagg_ref_free(r);

	/* A cap of two rows: the third bucket is refused and counted. */
	cr_assert_eq(mm_qagg_ref_new(&r, &spec, 2), 0);
	cr_assert_eq(mm_qagg_ref_add(r, &flows[0]), 0);
	cr_assert_eq(mm_qagg_ref_add(r, &flows[2]), 0);
	cr_assert_eq(mm_qagg_ref_add(r, &flows[3]), MM_ELIMIT);
	cr_assert_eq(mm_qagg_ref_refused(r), 1);
	mm_qagg_ref_free(r);
}

Test(query_agg, rows_match_a_brute_force_count)
{
	struct mm_flow flows[500];
	struct mm_qagg spec;
	struct mm_qagg_ref *r;
	const struct mm_qagg_row *rows;
	size_t n, total_flows = 0;

	for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++)
		random_small_flow(&flows[i]);
	mm_qagg_init(&spec);
	cr_assert_eq(mm_qagg_parse_keys("dstport,proto", spec.keys, MM_QAGG_MAX_KEYS, &spec.n_keys), 0);
	cr_assert_eq(mm_qagg_parse_keys("srcip", spec.distinct, MM_QAGG_MAX_DISTINCT, &spec.n_distinct), 0);
	cr_assert_eq(mm_qagg_ref_new(&r, &spec, 100000), 0);
	for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++)
		cr_assert_eq(mm_qagg_ref_add(r, &flows[i]), 0);
	cr_assert_eq(mm_qagg_ref_finish(r, &rows, &n), 0);
	cr_assert_eq(n, 16, "8 ports x 2 protocols, got %zu rows", n);
	for (size_t k = 0; k < n; k++) {
		uint64_t want_flows = 0, want_bytes = 0, want_distinct = 0;
		for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++) {
			bool seen = false;
			if (flows[i].dst_port != rows[k].key[0].u || flows[i].proto != rows[k].key[1].u)
				continue;
			want_flows++;
			want_bytes += mm_flow_bytes(&flows[i]);
			for (size_t j = 0; j < i && !seen; j++)
				seen = flows[j].dst_port == flows[i].dst_port && flows[j].proto == flows[i].proto &&
				       mm_addr_eq(&flows[j].src, &flows[i].src);
			want_distinct += !seen;
		}
		cr_assert_eq(rows[k].flows, want_flows);
		cr_assert_eq(rows[k].bytes, want_bytes);
		cr_assert_eq(rows[k].distinct[0], want_distinct);
		if (k > 0)
			cr_assert_geq(rows[k - 1].flows, rows[k].flows, "rows not ordered by flows");
		total_flows += rows[k].flows;
	}
	cr_assert_eq(total_flows, sizeof(flows) / sizeof(flows[0]));
	mm_qagg_ref_free(r);
}
