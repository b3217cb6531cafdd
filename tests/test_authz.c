/*
 * Authorizations and the panel, through the library: RFC 8785 canonical
 * JSON against the RFC's own examples; the table of invalid authorizations
 * (each refused by the guard with a reason naming its cause); and the
 * quorum property over random panels and signature sets.
 */
#include "test_util.h"

#include "mamori/guard.h"
#include "mamori/keys.h"
#include "mamori/oversight.h"
#include "mamori/query.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- RFC 8785 ---- */

Test(canonical_json, rfc8785_section_3_2_example)
{
	/* RFC 8785 §3.2.2's input, and the UTF-8 bytes §3.2.4 gives for it. */
	static const char input[] = "{\n  \"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n"
				    "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
				    "  \"literals\": [null, true, false]\n}";
	static const unsigned char expected[] = {
		0x7b, 0x22, 0x6c, 0x69, 0x74, 0x65, 0x72, 0x61, 0x6c, 0x73, 0x22, 0x3a, 0x5b, 0x6e, 0x75, 0x6c, 0x6c,
		0x2c, 0x74, 0x72, 0x75, 0x65, 0x2c, 0x66, 0x61, 0x6c, 0x73, 0x65, 0x5d, 0x2c, 0x22, 0x6e, 0x75, 0x6d,
		0x62, 0x65, 0x72, 0x73, 0x22, 0x3a, 0x5b, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x2e,
		0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x33, 0x2c, 0x31, 0x65, 0x2b, 0x33, 0x30, 0x2c, 0x34, 0x2e, 0x35,
		0x2c, 0x30, 0x2e, 0x30, 0x30, 0x32, 0x2c, 0x31, 0x65, 0x2d, 0x32, 0x37, 0x5d, 0x2c, 0x22, 0x73, 0x74,
		0x72, 0x69, 0x6e, 0x67, 0x22, 0x3a, 0x22, 0xe2, 0x82, 0xac, 0x24, 0x5c, 0x75, 0x30, 0x30, 0x30, 0x66,
		0x5c, 0x6e, 0x41, 0x27, 0x42, 0x5c, 0x22, 0x5c, 0x5c, 0x5c, 0x5c, 0x5c, 0x22, 0x2f, 0x22, 0x7d,
	};
	json_error_t err;
	json_t *v = json_loads(input, 0, &err);
	char *out = NULL;
	size_t len = 0;

	cr_assert_not_null(v, "%s", err.text);
	cr_assert_eq(mm_json_canonical(v, &out, &len), 0, "%s", mm_last_error());
	cr_assert_eq(len, sizeof(expected), "got %s", out);
	cr_assert_eq(memcmp(out, expected, len), 0, "got %s", out);
	free(out);
	json_decref(v);
}

Test(canonical_json, rfc8785_sorting_by_utf16_code_units)
{
	/* RFC 8785 §3.2.3: the sorted order is \r, 1, \u0080, \u00f6, \u20ac, U+1F600, \ufb33. */
	static const char input[] = "{\"\\u20ac\":\"Euro Sign\",\"\\r\":\"Carriage Return\",\"\\ufb33\":\"Hebrew Letter Dalet With "
				    "Dagesh\",\"1\":\"One\",\"\\ud83d\\ude00\":\"Emoji: Grinning Face\",\"\\u0080\":\"Control\","
				    "\"\\u00f6\":\"Latin Small Letter O With Diaeresis\"}";
	static const char *const order[] = { "Carriage Return", "One", "Control", "Latin Small", "Euro Sign",
					     "Emoji", "Hebrew" };
	json_t *v = json_loads(input, 0, NULL);
	char *out = NULL;
	const char *at;

	cr_assert_not_null(v);
	cr_assert_eq(mm_json_canonical(v, &out, NULL), 0);
	at = out;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const char *next = strstr(at, order[i]);
		cr_assert_not_null(next, "'%s' missing or out of order in %s", order[i], out);
		at = next;
	}
	/* U+0080 is not a control character for JSON: written as is, not escaped. */
	cr_assert_not_null(strstr(out, "\"\xc2\x80\":"), "%s", out);
	cr_assert_not_null(strstr(out, "\"\\r\":"), "%s", out);
	free(out);
	json_decref(v);
}

Test(canonical_json, rfc8785_appendix_b_numbers)
{
	static const struct {
		uint64_t bits;
		const char *text; /* NULL: must be refused */
	} cases[] = {
		{ 0x0000000000000000, "0" },
		{ 0x8000000000000000, "0" },
		{ 0x0000000000000001, "5e-324" },
		{ 0x8000000000000001, "-5e-324" },
		{ 0x7fefffffffffffff, "1.7976931348623157e+308" },
		{ 0xffefffffffffffff, "-1.7976931348623157e+308" },
		{ 0x7fffffffffffffff, NULL },
		{ 0x7ff0000000000000, NULL },
		{ 0x44b52d02c7e14af5, "9.999999999999997e+22" },
		{ 0x44b52d02c7e14af6, "1e+23" },
		{ 0x44b52d02c7e14af7, "1.0000000000000001e+23" },
		{ 0x444b1ae4d6e2ef4e, "999999999999999700000" },
		{ 0x444b1ae4d6e2ef4f, "999999999999999900000" },
		{ 0x444b1ae4d6e2ef50, "1e+21" },
		{ 0x444b1ae4d6e2ef51, "1.0000000000000001e+21" },
		{ 0x41b3de4355555553, "333333333.3333332" },
		{ 0x41b3de4355555554, "333333333.33333325" },
		{ 0x41b3de4355555555, "333333333.3333333" },
		{ 0x41b3de4355555556, "333333333.3333334" },
		{ 0x41b3de4355555557, "333333333.33333343" },
		/* From the RFC's es6 test-file sample lines. */
		{ 0x4340000000000001, "9007199254740994" },
		{ 0x4340000000000002, "9007199254740996" },
		{ 0x3eb0c6f7a0b5ed8d, "0.000001" },
		{ 0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[MM_JSON_NUMBER_STRLEN];
		double d;
		int rc;

		memcpy(&d, &cases[i].bits, sizeof(d));
		rc = mm_json_number_format(d, buf);
		if (!cases[i].text) {
			cr_expect_neq(rc, 0, "%016llx must be refused", (unsigned long long)cases[i].bits);
			continue;
		}
		cr_expect_eq(rc, 0);
		cr_expect_str_eq(buf, cases[i].text, "%016llx", (unsigned long long)cases[i].bits);
	}
}

/* ---- a panel in a scratch data directory ---- */

struct person {
	struct mm_signer *s;
	struct mm_verifier *v;
};

static struct person person(const char *name)
{
	struct person p = { 0 };
	char *priv = NULL, *pub = NULL;

	cr_assert_eq(mm_key_generate(name, &priv, &pub), 0, "%s", mm_last_error());
	cr_assert_eq(mm_signer_parse(priv, &p.s), 0);
	cr_assert_eq(mm_verifier_parse(pub, &p.v), 0);
	free(priv);
	free(pub);
	return p;
}

static void person_free(struct person *p)
{
	mm_signer_free(p->s);
	mm_verifier_free(p->v);
}

/* alice, bob and carol on a panel of quorum 2; dave has a key but is no member. */
struct fixture {
	char *dir;
	struct person alice, bob, carol, dave;
};

static void fixture_init(struct fixture *f)
{
	struct mm_verifier *members[3];
	struct mm_signer *signers[3];

	f->dir = tu_tmpdir();
	f->alice = person("alice");
	f->bob = person("bob");
	f->carol = person("carol");
	f->dave = person("dave");
	members[0] = f->alice.v, members[1] = f->bob.v, members[2] = f->carol.v;
	signers[0] = f->alice.s, signers[1] = f->bob.s, signers[2] = f->carol.s;
	cr_assert_eq(mm_panel_init(f->dir, members, 3, 2, signers, 3, mm_time_now_ns()), 0, "%s", mm_last_error());
}

static void fixture_free(struct fixture *f)
{
	person_free(&f->alice);
	person_free(&f->bob);
	person_free(&f->carol);
	person_free(&f->dave);
	free(f->dir);
}

static uint64_t at(const char *text)
{
	uint64_t ns;

	cr_assert_eq(mm_time_parse(text, 0, &ns), 0, "%s", text);
	return ns;
}

/*
 * Files an analyze request over 203.0.113.0/24, data and validity in
 * November 2026, with extra JSON members merged over those defaults.
 */
static void file_request(struct fixture *f, const char *requester, const char *overrides, char id[MM_AUTHZ_ID_MAX])
{
	struct mm_oversight *o = NULL;
	json_t *doc = json_loads(
		"{\"type\":\"mamori-authorization\",\"v\":1,\"kind\":\"analyze\","
		"\"legal_basis\":{\"article\":\"Art. 12(3)\",\"text\":\"incident handling\"},"
		"\"purpose\":\"incident-response\",\"requester\":{\"identity\":\"erin\",\"organisation\":\"NCSC\"},"
		"\"scope\":{\"sensors\":[],\"prefixes\":[\"203.0.113.0/24\"],\"asns\":[],\"countries\":[],"
		"\"indicators\":[],\"data\":{\"from\":\"2026-11-01T00:00:00Z\",\"until\":\"2026-11-30T00:00:00Z\"},"
		"\"fields\":[],\"output\":\"record\"},\"actions\":[],\"valid_from\":\"2026-11-01T00:00:00Z\","
		"\"valid_until\":\"2026-12-01T00:00:00Z\",\"max_uses\":null,"
		"\"emergency\":{\"flag\":false,\"ratify_by\":null},\"automated\":false}",
		0, NULL);
	json_t *extra = overrides ? json_loads(overrides, 0, NULL) : json_object();

	cr_assert_not_null(doc);
	cr_assert_not_null(extra, "overrides: %s", overrides);
	json_object_update(doc, extra);
	json_decref(extra);
	json_object_set_new(json_object_get(doc, "requester"), "identity", json_string(requester));
	cr_assert_eq(mm_oversight_open(f->dir, &o), 0, "%s", mm_last_error());
	cr_assert_eq(mm_oversight_request(o, doc, mm_time_now_ns(), id), 0, "%s", mm_last_error());
	mm_oversight_free(o);
}

static void sign(struct fixture *f, const char *id, const struct person *p)
{
	struct mm_oversight *o = NULL;

	cr_assert_eq(mm_oversight_open(f->dir, &o), 0, "%s", mm_last_error());
	cr_assert_eq(mm_oversight_sign(o, id, p->s), 0, "%s", mm_last_error());
	mm_oversight_free(o);
}

/* Runs the guard for a record-level query of filter at time now; returns the decision's reason ("" if allowed). */
static bool guard_query(struct fixture *f, const char *filter, const char *now, char reason[MM_GUARD_REASON_MAX])
{
	struct mm_guard_decision d;
	struct mm_query *q = NULL;
	struct mm_guard_act act = { .act = MM_ACT_QUERY, .now_ns = at(now), .record_output = true };
	bool allowed;

	cr_assert_eq(mm_query_parse(filter, &q, NULL), 0, "%s", mm_last_error());
	act.query = q;
	cr_assert_eq(mm_guard(f->dir, &act, &d), 0, "%s", mm_last_error());
	allowed = d.allowed;
	snprintf(reason, MM_GUARD_REASON_MAX, "%s", d.reason);
	mm_guard_decision_clear(&d);
	mm_query_free(q);
	return allowed;
}

static void expect_refused(struct fixture *f, const char *filter, const char *now, const char *cause)
{
	char reason[MM_GUARD_REASON_MAX];

	cr_assert_not(guard_query(f, filter, now, reason), "allowed, but the cause is: %s", cause);
	cr_assert_not_null(strstr(reason, cause), "reason '%s' does not name '%s'", reason, cause);
}

/*
 * The table: a request (requester, fields over the defaults), who signs it,
 * and a record-level query at a time; each must be refused with a reason
 * that names its cause. The first row is the control: it must pass.
 */
static const struct invalid_case {
	const char *what, *requester, *overrides;
	const char *signers[3]; /* "alice", "bob", "carol", "dave" (no member) */
	const char *filter, *now;
	const char *cause; /* NULL: must be allowed */
} invalid_cases[] = {
	{ "control", "erin", NULL, { "alice", "bob" }, "dst net 203.0.113.0/25", "2026-11-15", NULL },
	{ "expired", "erin", NULL, { "alice", "bob" }, "dst net 203.0.113.0/24", "2026-12-05", "expired 2026-12-01" },
	{ "not yet valid", "erin", NULL, { "alice", "bob" }, "dst net 203.0.113.0/24", "2026-10-20",
	  "not valid before 2026-11-01" },
	{ "out of scope", "erin", NULL, { "alice", "bob" }, "dst net 198.51.100.0/24", "2026-11-15",
	  "no authorization covers dst net 198.51.100.0/24 for record-level output; nearest: A-" },
	{ "wider than the scope", "erin", NULL, { "alice", "bob" }, "net 203.0.0.0/16", "2026-11-15",
	  "addresses outside its prefixes" },
	{ "a field outside the scope", "erin", "{\"scope\":{\"sensors\":[],\"prefixes\":[],\"asns\":[],\"countries\":[],"
	  "\"indicators\":[],\"data\":{\"from\":\"2026-11-01T00:00:00Z\",\"until\":\"2026-11-02T00:00:00Z\"},"
	  "\"fields\":[\"port\"],\"output\":\"record\"}}", { "alice", "bob" }, "dst host 203.0.113.9", "2026-11-15",
	  "field 'host' outside its scope" },
	{ "k-1 signatures", "erin", NULL, { "alice" }, "dst net 203.0.113.0/24", "2026-11-15", "1 of 2 signatures" },
	{ "a duplicate signer", "erin", NULL, { "alice", "alice" }, "dst net 203.0.113.0/24", "2026-11-15",
	  "1 of 2 signatures; 1 duplicate" },
	{ "the requester as signer", "alice", NULL, { "alice", "bob" }, "dst net 203.0.113.0/24", "2026-11-15",
	  "1 of 2 signatures; 1 by the requester, not counted" },
	{ "an unknown key", "erin", NULL, { "alice", "dave" }, "dst net 203.0.113.0/24", "2026-11-15",
	  "1 by a key that is not a panel member's" },
	{ "aggregate-only", "erin", "{\"scope\":{\"sensors\":[],\"prefixes\":[\"203.0.113.0/24\"],\"asns\":[],"
	  "\"countries\":[],\"indicators\":[],\"data\":{\"from\":null,\"until\":null},\"fields\":[],"
	  "\"output\":\"aggregate\"}}", { "alice", "carol" }, "dst net 203.0.113.0/24", "2026-11-15", "-0001, aggregate-only" },
};

static const struct person *by_name(const struct fixture *f, const char *name)
{
	return strcmp(name, "alice") == 0 ? &f->alice
	       : strcmp(name, "bob") == 0 ? &f->bob
	       : strcmp(name, "carol") == 0 ? &f->carol
					      : &f->dave;
}

Test(invalid_authorization, table_each_refused_naming_its_cause)
{
	for (size_t i = 0; i < sizeof(invalid_cases) / sizeof(invalid_cases[0]); i++) {
		const struct invalid_case *c = &invalid_cases[i];
		char id[MM_AUTHZ_ID_MAX], reason[MM_GUARD_REASON_MAX];
		struct fixture f;
		bool allowed;

		fixture_init(&f);
		file_request(&f, c->requester, c->overrides, id);
		for (size_t k = 0; k < 3 && c->signers[k]; k++)
			sign(&f, id, by_name(&f, c->signers[k]));
		allowed = guard_query(&f, c->filter, c->now, reason);
		if (!c->cause)
			cr_assert(allowed, "%s: refused: %s", c->what, reason);
		else
			cr_assert(!allowed && strstr(reason, c->cause), "%s: %s; the reason must name '%s'", c->what,
				  allowed ? "allowed" : reason, c->cause);
		fixture_free(&f);
	}
}

Test(invalid_authorization, revoked)
{
	struct fixture f;
	struct mm_oversight *o = NULL;
	struct mm_signer *two[2];
	char id[MM_AUTHZ_ID_MAX];

	fixture_init(&f);
	file_request(&f, "erin", NULL, id);
	sign(&f, id, &f.alice);
	sign(&f, id, &f.bob);
	two[0] = f.bob.s, two[1] = f.carol.s;
	cr_assert_eq(mm_oversight_open(f.dir, &o), 0);
	cr_assert_eq(mm_oversight_revoke(o, id, two, 1), 0);
	mm_oversight_free(o);
	/* One revoking signature is not the panel. */
	{
		char reason[MM_GUARD_REASON_MAX];
		cr_assert(guard_query(&f, "dst net 203.0.113.0/24", "2026-11-15", reason), "%s", reason);
	}
	cr_assert_eq(mm_oversight_open(f.dir, &o), 0);
	cr_assert_eq(mm_oversight_revoke(o, id, two + 1, 1), 0);
	mm_oversight_free(o);
	expect_refused(&f, "dst net 203.0.113.0/24", "2026-11-15", "revoked by the panel");
	fixture_free(&f);
}

Test(invalid_authorization, signature_over_other_bytes)
{
	struct fixture f;
	char id[MM_AUTHZ_ID_MAX], path[4096];
	char *line = NULL;
	FILE *fp;

	fixture_init(&f);
	file_request(&f, "erin", NULL, id);
	sign(&f, id, &f.alice);
	/* bob's real key, over a document that says something else. */
	cr_assert_eq(mm_sig_line_make(f.bob.s, "{\"id\":\"other\"}", 14, &line), 0);
	snprintf(path, sizeof(path), "%s/oversight/authz/%s.sig", f.dir, id);
	fp = fopen(path, "a");
	cr_assert_not_null(fp);
	fputs(line, fp);
	fclose(fp);
	free(line);
	expect_refused(&f, "dst net 203.0.113.0/24", "2026-11-15", "1 not over this document's bytes");
	fixture_free(&f);
}

Test(invalid_authorization, forbidden_purpose)
{
	struct fixture f;
	struct mm_oversight *o = NULL;
	char id[MM_AUTHZ_ID_MAX], path[4096], refused_id[MM_AUTHZ_ID_MAX];
	static const char policy[] = "{\"forbidden_purposes\":[\"criminal-investigation\"]}";
	json_t *doc;

	fixture_init(&f);
	file_request(&f, "erin", "{\"purpose\":\"criminal-investigation\"}", id);
	sign(&f, id, &f.alice);
	sign(&f, id, &f.bob);
	snprintf(path, sizeof(path), "%s/oversight/policy.json", f.dir);
	cr_assert_eq(tu_write_file(path, policy, strlen(policy)), 0);
	/* Signed before the policy: still refused once the purpose is forbidden. */
	expect_refused(&f, "dst net 203.0.113.0/24", "2026-11-15", "purpose 'criminal-investigation' is forbidden by policy");
	/* And a new request for it is not even filed. */
	cr_assert_eq(mm_oversight_open(f.dir, &o), 0);
	doc = json_deep_copy(mm_oversight_find(o, id)->doc);
	json_object_del(doc, "id");
	cr_assert_eq(mm_oversight_request(o, doc, mm_time_now_ns(), refused_id), MM_EPERM);
	cr_assert_not_null(strstr(mm_last_error(), "forbidden by policy"), "%s", mm_last_error());
	mm_oversight_free(o);
	fixture_free(&f);
}

Test(invalid_authorization, max_uses_exhausted)
{
	struct fixture f;
	char id[MM_AUTHZ_ID_MAX], reason[MM_GUARD_REASON_MAX];

	fixture_init(&f);
	file_request(&f, "erin", "{\"max_uses\":2}", id);
	sign(&f, id, &f.alice);
	sign(&f, id, &f.bob);
	cr_assert(guard_query(&f, "dst net 203.0.113.0/24", "2026-11-15", reason), "%s", reason);
	cr_assert(guard_query(&f, "dst net 203.0.113.0/24", "2026-11-15", reason), "%s", reason);
	expect_refused(&f, "dst net 203.0.113.0/24", "2026-11-15", "all 2 uses spent");
	fixture_free(&f);
}

Test(invalid_authorization, emergency_past_deadline_unratified)
{
	struct fixture f;
	struct mm_oversight *o = NULL;
	struct mm_signer *two[2];
	char id[MM_AUTHZ_ID_MAX], reason[MM_GUARD_REASON_MAX];

	fixture_init(&f);
	file_request(&f, "erin", "{\"emergency\":{\"flag\":true,\"ratify_by\":\"2026-11-03T00:00:00Z\"}}", id);
	sign(&f, id, &f.alice);
	/* One signature acts at once, before the deadline ... */
	cr_assert(guard_query(&f, "dst net 203.0.113.0/24", "2026-11-02", reason), "%s", reason);
	/* ... and is suspended after it, unratified. */
	expect_refused(&f, "dst net 203.0.113.0/24", "2026-11-15", "emergency not ratified by 2026-11-03T00:00:00Z: suspended");
	/* A ratification by the requester does not count; two members do. */
	two[0] = f.bob.s, two[1] = f.carol.s;
	cr_assert_eq(mm_oversight_open(f.dir, &o), 0);
	cr_assert_eq(mm_oversight_ratify(o, id, two, 1), 0);
	mm_oversight_free(o);
	expect_refused(&f, "dst net 203.0.113.0/24", "2026-11-15", "suspended");
	cr_assert_eq(mm_oversight_open(f.dir, &o), 0);
	cr_assert_eq(mm_oversight_ratify(o, id, two + 1, 1), 0);
	mm_oversight_free(o);
	cr_assert(guard_query(&f, "dst net 203.0.113.0/24", "2026-11-15", reason), "%s", reason);
	fixture_free(&f);
}

Test(invalid_authorization, malformed_documents_are_refused_naming_the_field)
{
	static const struct {
		const char *text, *cause;
	} cases[] = {
		{ "[]", "not a JSON object" },
		{ "{\"id\":\"A-2026-0001\"}", "field 'type' is missing" },
		{ "{\"id\":\"B-1\"}", "'id' must be A-YYYY-NNNN" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mm_authz *a = NULL;

		cr_expect_neq(mm_authz_parse(cases[i].text, strlen(cases[i].text), "t.json", &a), 0);
		cr_expect_not_null(strstr(mm_last_error(), cases[i].cause), "%s: %s", cases[i].text, mm_last_error());
		mm_authz_free(a);
	}
}

/* ---- the quorum property ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

Test(quorum, property_requester_never_counts_and_quorum_iff_k_distinct)
{
	static const char *const names[] = { "m0", "m1", "m2", "m3", "m4", "m5", "outsider" };
	static const char msg[] = "{\"the\":\"document\"}", other[] = "{\"the\":\"other\"}";

	for (int iter = 0; iter < 150; iter++) {
		size_t n = 1 + rnd(6), k = 1 + rnd((uint32_t)n), n_sigs = rnd(12);
		struct person p[7];
		struct mm_signer *signers[6];
		json_t *doc = json_pack("{s:s, s:i, s:[], s:i, s:s}", "type", "mamori-panel", "v", 1, "members",
					"quorum", (json_int_t)k, "created", "2026-11-01T00:00:00Z");
		struct mm_sig_line lines[12];
		struct mm_quorum_count c, without;
		struct mm_panel *panel = NULL;
		bool good[7] = { false };
		char *canonical = NULL, *sigs = NULL;
		size_t len = 0, sigs_len = 0, distinct = 0, n_without = 0;
		/* The requester: a member, or someone else (index 6). */
		size_t requester = rnd(2) ? rnd((uint32_t)n) : 6;
		struct mm_sig_line kept[12];

		for (size_t i = 0; i < 7; i++)
			p[i] = person(names[i]);
		for (size_t i = 0; i < n; i++) {
			char *line = NULL;
			cr_assert_eq(mm_verifier_encode(p[i].v, &line), 0);
			json_array_append_new(json_object_get(doc, "members"), json_string(line));
			free(line);
			signers[i] = p[i].s;
		}
		cr_assert_eq(mm_json_canonical(doc, &canonical, &len), 0);
		for (size_t i = 0; i < n; i++) {
			char *line = NULL;
			cr_assert_eq(mm_sig_line_make(signers[i], canonical, len, &line), 0);
			sigs = realloc(sigs, sigs_len + strlen(line) + 1);
			memcpy(sigs + sigs_len, line, strlen(line) + 1);
			sigs_len += strlen(line);
			free(line);
		}
		cr_assert_eq(mm_panel_parse(canonical, len, sigs, sigs_len, &panel), 0, "%s", mm_last_error());
		/* Random signature lines: any of the 7 keys, over the document or over other bytes. */
		for (size_t i = 0; i < n_sigs; i++) {
			size_t who = rnd(7);
			bool right = rnd(4) != 0;
			char *line = NULL;
			struct mm_sig_line *parsed = NULL;
			size_t n_parsed = 0;

			cr_assert_eq(mm_sig_line_make(p[who].s, right ? msg : other, strlen(right ? msg : other), &line), 0);
			cr_assert_eq(mm_sig_lines_parse(line, strlen(line), "t", &parsed, &n_parsed), 0);
			cr_assert_eq(n_parsed, 1);
			lines[i] = parsed[0];
			free(parsed);
			free(line);
			if (right && who < n && who != requester && !good[who]) {
				good[who] = true;
				distinct++;
			}
			if (who != requester)
				kept[n_without++] = lines[i];
		}
		mm_panel_count(panel, msg, strlen(msg), lines, n_sigs, names[requester], &c);
		cr_assert_eq(c.valid, distinct, "iteration %d: counted %u, expected %zu", iter, c.valid, distinct);
		cr_assert_eq(c.valid >= k, distinct >= k, "iteration %d", iter);
		/* Dropping every line by the requester changes nothing: they never count. */
		mm_panel_count(panel, msg, strlen(msg), kept, n_without, names[requester], &without);
		cr_assert_eq(without.valid, c.valid, "iteration %d", iter);
		/* And a set made only of the requester's lines never reaches any quorum. */
		if (requester < n) {
			struct mm_sig_line only[3];
			char *line = NULL;
			struct mm_sig_line *parsed = NULL;
			size_t n_parsed = 0;

			cr_assert_eq(mm_sig_line_make(p[requester].s, msg, strlen(msg), &line), 0);
			cr_assert_eq(mm_sig_lines_parse(line, strlen(line), "t", &parsed, &n_parsed), 0);
			only[0] = only[1] = only[2] = parsed[0];
			mm_panel_count(panel, msg, strlen(msg), only, 3, names[requester], &without);
			cr_assert_eq(without.valid, 0);
			cr_assert_eq(without.requester, 3);
			free(parsed);
			free(line);
		}
		mm_panel_free(panel);
		free(canonical);
		free(sigs);
		json_decref(doc);
		for (size_t i = 0; i < 7; i++)
			person_free(&p[i]);
	}
}
