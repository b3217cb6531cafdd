/*
 * `mamori authz request | sign | show | list | revoke | ratify`: the
 * authorization documents of the oversight panel (oversight.h). Requests
 * are filed as canonical JSON; members sign them with their keys; every
 * step is audited.
 */
#include "cli/cli.h"
#include "cli/cli_guard.h"

#include "mamori/guard.h"
#include "mamori/oversight.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori authz - request, sign, show, list, revoke and ratify authorizations\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori authz request --kind K --basis ARTICLE --basis-text TEXT --purpose CODE\n"
	"        --requester ID --org ORG [--sensor N]... [--prefix P]... [--asn N]...\n"
	"        [--country CC]... [--indicator ID]... [--data-from T] [--data-until T]\n"
	"        [--fields F,...] [--aggregate-only] [--action NAME:DURATION]...\n"
	"        --valid-from T --valid-until T [--max-uses N] [--emergency --ratify-by T]\n"
	"        [--automated]\n"
	"    mamori authz sign ID --key KEYFILE\n"
	"    mamori authz show ID\n"
	"    mamori authz list [--all]\n"
	"    mamori authz revoke ID --key KEYFILE...\n"
	"    mamori authz ratify ID --key KEYFILE...\n"
	"    (each takes -R DIR: the data directory, default $MAMORI_DATA, else ./mamori-data)\n"
	"\n"
	"DESCRIPTION\n"
	"    An authorization is a canonical JSON document (RFC 8785) in\n"
	"    DIR/oversight/authz/ID.json. It is in force when K distinct panel\n"
	"    members other than its requester have signed it, from valid-from to\n"
	"    valid-until, until the panel revokes it or its uses are spent.\n"
	"    An emergency authorization acts on one member's signature until its\n"
	"    ratify-by deadline; unless K members ratify it by then it is suspended.\n"
	"\n"
	"    request  files a request and prints its id (A-YYYY-NNNN). K is one of\n"
	"             collect-transit, collect-agreement, collect-specified, analyze,\n"
	"             reidentify, respond, share. A scope list left out means any\n"
	"             (any sensor, any address, ...). --fields lists the query fields\n"
	"             a query may use (host, net, port, as, country, proto, ...).\n"
	"             --aggregate-only refuses record-level output. --action (respond)\n"
	"             names a measure and its longest duration (block:24h). Times are\n"
	"             2026-11-01, 2026-11-01T09:00Z, @EPOCH, or relative (+30d, now).\n"
	"    sign     adds the key holder's signature over the document's bytes.\n"
	"    show     what the authorization permits, its signers and its state.\n"
	"    list     one line each: those in force or pending (--all: every one).\n"
	"    revoke   signatures over its revocation; K of them revoke it.\n"
	"    ratify   signatures over its ratification (emergencies); K ratify it.\n"
	"\n"
	"EXIT STATUS\n"
	"    0 done; 1 usage error; 2 bad document or unknown id; 3 I/O error or a\n"
	"    request refused by policy (forbidden purpose)\n"
	"\n"
	"EXAMPLES\n"
	"    mamori authz request --kind analyze --basis 'Art. 12(3)' --basis-text 'incident\n"
	"        handling' --purpose incident-response --requester carol --org NCSC \\\n"
	"        --prefix 203.0.113.0/24 --data-from 2026-11-01 --data-until 2026-11-30 \\\n"
	"        --valid-from now --valid-until 2026-12-01 --max-uses 10\n"
	"    mamori authz sign A-2026-0001 --key alice.key\n"
	"    mamori authz show A-2026-0001\n";

enum {
	OPT_KIND = 256, OPT_BASIS, OPT_BASIS_TEXT, OPT_PURPOSE, OPT_REQUESTER, OPT_ORG, OPT_SENSOR, OPT_PREFIX,
	OPT_ASN, OPT_COUNTRY, OPT_INDICATOR, OPT_DATA_FROM, OPT_DATA_UNTIL, OPT_FIELDS, OPT_AGGREGATE_ONLY,
	OPT_ACTION, OPT_VALID_FROM, OPT_VALID_UNTIL, OPT_MAX_USES, OPT_EMERGENCY, OPT_RATIFY_BY, OPT_AUTOMATED,
	OPT_KEY, OPT_ALL,
};

static const struct option long_options[] = {
	{ "kind", required_argument, NULL, OPT_KIND },
	{ "basis", required_argument, NULL, OPT_BASIS },
	{ "basis-text", required_argument, NULL, OPT_BASIS_TEXT },
	{ "purpose", required_argument, NULL, OPT_PURPOSE },
	{ "requester", required_argument, NULL, OPT_REQUESTER },
	{ "org", required_argument, NULL, OPT_ORG },
	{ "sensor", required_argument, NULL, OPT_SENSOR },
	{ "prefix", required_argument, NULL, OPT_PREFIX },
	{ "asn", required_argument, NULL, OPT_ASN },
	{ "country", required_argument, NULL, OPT_COUNTRY },
	{ "indicator", required_argument, NULL, OPT_INDICATOR },
	{ "data-from", required_argument, NULL, OPT_DATA_FROM },
	{ "data-until", required_argument, NULL, OPT_DATA_UNTIL },
	{ "fields", required_argument, NULL, OPT_FIELDS },
	{ "aggregate-only", no_argument, NULL, OPT_AGGREGATE_ONLY },
	{ "action", required_argument, NULL, OPT_ACTION },
	{ "valid-from", required_argument, NULL, OPT_VALID_FROM },
	{ "valid-until", required_argument, NULL, OPT_VALID_UNTIL },
	{ "max-uses", required_argument, NULL, OPT_MAX_USES },
	{ "emergency", no_argument, NULL, OPT_EMERGENCY },
	{ "ratify-by", required_argument, NULL, OPT_RATIFY_BY },
	{ "automated", no_argument, NULL, OPT_AUTOMATED },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "all", no_argument, NULL, OPT_ALL },
	{ "store", required_argument, NULL, 'R' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct authz_args {
	const char *dir;
	const char *id;
	json_t *doc; /* the request being built */
	json_t *basis, *requester, *scope, *data, *emergency;
	struct cli_signers keys;
	bool all;
	uint64_t now;
};

static int time_value(const char *option, const char *text, uint64_t now, json_t **out)
{
	char buf[64];
	uint64_t ns;

	if (mm_time_parse(text, now, &ns) != 0)
		return cli_usage_error("authz", "%s: '%s' is not a time (2026-11-01, 2026-11-01T09:00Z, +30d, now)",
				       option, text);
	/* Documents keep whole seconds: "now" should not read as nanoseconds to the panel. */
	*out = json_string(mm_oversight_time_format(ns - ns % MM_NS_PER_SEC, buf));
	return 0;
}

static int set_time(json_t *obj, const char *key, const char *option, const char *text, uint64_t now)
{
	json_t *v = NULL;
	int rc = time_value(option, text, now, &v);

	if (rc == 0)
		json_object_set_new(obj, key, v);
	return rc;
}

static int add_number(json_t *list, const char *option, const char *text)
{
	uint64_t v;

	if (cli_parse_count("authz", option, text, 0, UINT32_MAX, &v))
		return CLI_EXIT_USAGE;
	json_array_append_new(list, json_integer((json_int_t)v));
	return 0;
}

static int add_action(json_t *list, const char *text)
{
	const char *colon = strchr(text, ':');
	uint64_t ns = 0;
	json_t *e;

	if (colon && cli_parse_duration("authz", "--action", colon + 1, &ns))
		return CLI_EXIT_USAGE;
	if (colon && ns < MM_NS_PER_SEC)
		return cli_usage_error("authz", "--action %s: the duration must be at least 1s", text);
	e = json_pack("{s:s%}", "action", text, colon ? (size_t)(colon - text) : strlen(text));
	json_object_set_new(e, "max_duration", colon ? json_integer((json_int_t)(ns / MM_NS_PER_SEC)) : json_null());
	json_array_append_new(list, e);
	return 0;
}

static int add_fields(json_t *list, const char *text)
{
	char *copy = strdup(text), *save = NULL;

	if (!copy)
		return CLI_EXIT_INTERNAL;
	for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save))
		json_array_append_new(list, json_string(f));
	free(copy);
	return 0;
}

static int request_option(struct authz_args *a, int opt, const char *arg)
{
	json_t *s = a->scope;

	switch (opt) {
	case OPT_KIND: json_object_set_new(a->doc, "kind", json_string(arg)); return 0;
	case OPT_BASIS: json_object_set_new(a->basis, "article", json_string(arg)); return 0;
	case OPT_BASIS_TEXT: json_object_set_new(a->basis, "text", json_string(arg)); return 0;
	case OPT_PURPOSE: json_object_set_new(a->doc, "purpose", json_string(arg)); return 0;
	case OPT_REQUESTER: json_object_set_new(a->requester, "identity", json_string(arg)); return 0;
	case OPT_ORG: json_object_set_new(a->requester, "organisation", json_string(arg)); return 0;
	case OPT_SENSOR: return add_number(json_object_get(s, "sensors"), "--sensor", arg);
	case OPT_ASN: return add_number(json_object_get(s, "asns"), "--asn", arg);
	case OPT_PREFIX: json_array_append_new(json_object_get(s, "prefixes"), json_string(arg)); return 0;
	case OPT_COUNTRY: json_array_append_new(json_object_get(s, "countries"), json_string(arg)); return 0;
	case OPT_INDICATOR: json_array_append_new(json_object_get(s, "indicators"), json_string(arg)); return 0;
	case OPT_FIELDS: return add_fields(json_object_get(s, "fields"), arg);
	case OPT_AGGREGATE_ONLY: json_object_set_new(s, "output", json_string("aggregate")); return 0;
	case OPT_DATA_FROM: return set_time(a->data, "from", "--data-from", arg, a->now);
	case OPT_DATA_UNTIL: return set_time(a->data, "until", "--data-until", arg, a->now);
	case OPT_ACTION: return add_action(json_object_get(a->doc, "actions"), arg);
	case OPT_VALID_FROM: return set_time(a->doc, "valid_from", "--valid-from", arg, a->now);
	case OPT_VALID_UNTIL: return set_time(a->doc, "valid_until", "--valid-until", arg, a->now);
	case OPT_MAX_USES: {
		uint64_t v;
		if (cli_parse_count("authz", "--max-uses", arg, 1, INT64_MAX, &v))
			return CLI_EXIT_USAGE;
		json_object_set_new(a->doc, "max_uses", json_integer((json_int_t)v));
		return 0;
	}
	case OPT_EMERGENCY: json_object_set_new(a->emergency, "flag", json_true()); return 0;
	case OPT_RATIFY_BY: return set_time(a->emergency, "ratify_by", "--ratify-by", arg, a->now);
	case OPT_AUTOMATED: json_object_set_new(a->doc, "automated", json_true()); return 0;
	}
	return cli_usage_error("authz", "unknown option");
}

/* A request with every optional field at its default, so only what was given changes. */
static int new_request(struct authz_args *a)
{
	a->doc = json_pack("{s:s, s:i, s:{s:s, s:s}, s:{s:s, s:s}, s:[], s:n, s:{s:b, s:n}, s:b, "
			   "s:{s:[], s:[], s:[], s:[], s:[], s:[], s:{s:n, s:n}, s:s}}",
			   "type", "mamori-authorization", "v", 1, "legal_basis", "article", "", "text", "",
			   "requester", "identity", "", "organisation", "", "actions", "max_uses", "emergency", "flag", 0,
			   "ratify_by", "automated", 0, "scope", "sensors", "prefixes", "asns", "countries",
			   "indicators", "fields", "data", "from", "until", "output", "record");
	if (!a->doc)
		return CLI_EXIT_INTERNAL;
	a->basis = json_object_get(a->doc, "legal_basis");
	a->requester = json_object_get(a->doc, "requester");
	a->emergency = json_object_get(a->doc, "emergency");
	a->scope = json_object_get(a->doc, "scope");
	a->data = json_object_get(a->scope, "data");
	return 0;
}

static int parse_args(struct authz_args *a, int argc, char **argv, bool request)
{
	int opt, rc;

	optind = 2;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":R:h", long_options, NULL)) != -1) {
		rc = 0;
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return -1;
		}
		if (opt == ':')
			return cli_usage_error("authz", "option '%s' needs a value", argv[optind - 1]);
		if (opt == '?')
			return cli_usage_error("authz", "unknown option '%s'", argv[optind - 1]);
		if (opt == 'R')
			a->dir = optarg;
		else if (opt == OPT_KEY)
			rc = cli_signers_add("authz", &a->keys, optarg);
		else if (opt == OPT_ALL)
			a->all = true;
		else if (request)
			rc = request_option(a, opt, optarg);
		else
			rc = cli_usage_error("authz", "option '%s' belongs to 'authz request'", argv[optind - 1]);
		if (rc)
			return rc;
	}
	if (!request && optind < argc)
		a->id = argv[optind++];
	if (optind < argc)
		return cli_usage_error("authz", "unexpected argument '%s'", argv[optind]);
	if (!a->dir)
		a->dir = mm_store_default_dir();
	return 0;
}

static int open_state(const char *dir, struct mm_oversight **o)
{
	int rc = mm_oversight_open(dir, o);

	return rc ? cli_fail("authz", rc) : 0;
}

static int run_request(struct authz_args *a)
{
	char id[MM_AUTHZ_ID_MAX];
	struct mm_oversight *o = NULL;
	const char *purpose = json_string_value(json_object_get(a->doc, "purpose"));
	json_t *detail;
	int rc = open_state(a->dir, &o);

	if (rc)
		return rc;
	detail = json_pack("{s:s?, s:s?}", "requester", json_string_value(json_object_get(a->requester, "identity")),
			   "requested_kind", json_string_value(json_object_get(a->doc, "kind")));
	rc = mm_oversight_request(o, json_incref(a->doc), a->now, id);
	if (rc) {
		/* An invalid or forbidden request is denied, and that is on the record. */
		char why[512];

		snprintf(why, sizeof(why), "%s", mm_last_error());
		json_object_set_new(detail, "purpose", purpose ? json_string(purpose) : json_null());
		if (mm_guard_record(a->dir, "authz.deny", "refused", mm_oversight_lab(o), NULL, why, detail) == 0)
			mm_fail(rc, "%s", why);
		rc = cli_fail("authz", rc);
	} else {
		mm_oversight_free(o);
		o = NULL;
		rc = open_state(a->dir, &o);
		if (rc == 0 && mm_guard_record(a->dir, "authz.request", "recorded", mm_oversight_lab(o),
					       mm_oversight_find(o, id), NULL, detail) != 0)
			rc = cli_fail("authz", MM_EIO);
		if (rc == 0)
			printf("%s\n", id);
	}
	json_decref(detail);
	mm_oversight_free(o);
	return rc;
}

static int print_summary(const struct mm_oversight *o, const struct mm_authz *a, FILE *fp)
{
	struct mm_authz_state st;
	char *text = NULL;
	int rc;

	mm_oversight_state(o, a, mm_time_now_ns(), &st);
	rc = mm_authz_summary(a, &st, &text);
	if (rc == 0)
		fputs(text, fp);
	free(text);
	return rc;
}

static int with_authz(struct authz_args *a, struct mm_oversight **o, const struct mm_authz **az)
{
	int rc;

	if (!a->id)
		return cli_usage_error("authz", "give the authorization id (A-YYYY-NNNN)");
	rc = open_state(a->dir, o);
	if (rc)
		return rc;
	*az = mm_oversight_find(*o, a->id);
	if (!*az) {
		mm_oversight_free(*o);
		*o = NULL;
		fprintf(stderr, "mamori authz: %s: no such authorization in %s\n", a->id, a->dir);
		return CLI_EXIT_INPUT;
	}
	return 0;
}

/* sign, revoke, ratify: file the signatures, record the act, and record a change of state. */
static int run_signing(struct authz_args *a, const char *what)
{
	struct mm_oversight *o = NULL;
	const struct mm_authz *az = NULL;
	struct mm_authz_state before, after;
	char act[32];
	json_t *detail;
	int rc = with_authz(a, &o, &az);

	if (rc)
		return rc;
	if (!a->keys.n || (strcmp(what, "sign") == 0 && a->keys.n != 1)) {
		mm_oversight_free(o);
		return cli_usage_error("authz", "%s needs --key KEYFILE%s", what, strcmp(what, "sign") ? "..." : "");
	}
	mm_oversight_state(o, az, mm_time_now_ns(), &before);
	if (strcmp(what, "sign") == 0)
		rc = mm_oversight_sign(o, a->id, a->keys.s[0]);
	else if (strcmp(what, "revoke") == 0)
		rc = mm_oversight_revoke(o, a->id, a->keys.s, a->keys.n);
	else
		rc = mm_oversight_ratify(o, a->id, a->keys.s, a->keys.n);
	mm_oversight_free(o);
	o = NULL;
	if (rc)
		return cli_fail("authz", rc);
	rc = open_state(a->dir, &o);
	if (rc)
		return rc;
	az = mm_oversight_find(o, a->id);
	mm_oversight_state(o, az, mm_time_now_ns(), &after);
	detail = json_pack("{s:s, s:i, s:s}", "signer", mm_signer_name(a->keys.s[0]), "keys", (json_int_t)a->keys.n,
			   "state", mm_authz_status_name(after.status));
	snprintf(act, sizeof(act), "authz.%s", what);
	rc = mm_guard_record(a->dir, act, "recorded", false, az, NULL, detail);
	if (rc == 0 && before.status != MM_AZ_IN_FORCE && after.status == MM_AZ_IN_FORCE)
		rc = mm_guard_record(a->dir, "authz.approve", "recorded", false, az, NULL, detail);
	json_decref(detail);
	if (rc == 0)
		rc = print_summary(o, az, stdout);
	mm_oversight_free(o);
	return rc ? cli_fail("authz", rc) : CLI_EXIT_OK;
}

static int run_show(struct authz_args *a)
{
	struct mm_oversight *o = NULL;
	const struct mm_authz *az = NULL;
	int rc = with_authz(a, &o, &az);

	if (rc)
		return rc;
	rc = print_summary(o, az, stdout);
	mm_oversight_free(o);
	return rc ? cli_fail("authz", rc) : CLI_EXIT_OK;
}

static int run_list(struct authz_args *a)
{
	struct mm_oversight *o = NULL;
	int rc = open_state(a->dir, &o);
	uint64_t now = mm_time_now_ns();

	if (rc)
		return rc;
	if (mm_oversight_lab(o))
		printf("%s: lab mode: no oversight panel; every act is allowed and audited\n", a->dir);
	for (size_t i = 0; i < mm_oversight_count(o); i++) {
		const struct mm_authz *az = mm_oversight_authz(o, i);
		struct mm_authz_state st;

		mm_oversight_state(o, az, now, &st);
		if (!a->all && st.status != MM_AZ_IN_FORCE && st.status != MM_AZ_PENDING)
			continue;
		printf("%-12s %-18s %-13s %s (%s of %s)\n", az->id, mm_authz_kind_name(az->kind),
		       mm_authz_status_name(st.status), az->purpose, az->requester, az->organisation);
	}
	mm_oversight_free(o);
	return CLI_EXIT_OK;
}

int cmd_authz(int argc, char **argv)
{
	struct authz_args a = { 0 };
	const char *sub = argc > 1 ? argv[1] : NULL;
	int rc;

	if (!sub || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
		fputs(usage_text, sub ? stdout : stderr);
		return sub ? CLI_EXIT_OK : CLI_EXIT_USAGE;
	}
	a.now = mm_time_now_ns();
	if (strcmp(sub, "request") == 0 && new_request(&a) != 0)
		return CLI_EXIT_INTERNAL;
	rc = parse_args(&a, argc, argv, strcmp(sub, "request") == 0);
	if (rc == 0) {
		if (strcmp(sub, "request") == 0)
			rc = run_request(&a);
		else if (strcmp(sub, "sign") == 0 || strcmp(sub, "revoke") == 0 || strcmp(sub, "ratify") == 0)
			rc = run_signing(&a, sub);
		else if (strcmp(sub, "show") == 0)
			rc = run_show(&a);
		else if (strcmp(sub, "list") == 0)
			rc = run_list(&a);
		else
			rc = cli_usage_error("authz", "'%s' is not request, sign, show, list, revoke or ratify", sub);
	}
	json_decref(a.doc);
	cli_signers_free(&a.keys);
	return rc < 0 ? CLI_EXIT_OK : rc;
}
