/*
 * Authorization documents: validation of every field, the canonical bytes
 * the panel signs, and the summary people read before they sign. The
 * document is the only thing a signature covers, so validation is strict:
 * every field present, none unknown, every value in its domain.
 */
#include "mamori/oversight.h"

#include "oversight_int.h"

#include "mamori/query.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUTHZ_TEXT_MAX 4096      /* legal text, purpose, names */
#define AUTHZ_LIST_MAX 4096      /* entries of one scope list */

static const char *const kind_names[MM_AK_COUNT_] = {
	[MM_AK_COLLECT_TRANSIT] = "collect-transit",
	[MM_AK_COLLECT_AGREEMENT] = "collect-agreement",
	[MM_AK_COLLECT_SPECIFIED] = "collect-specified",
	[MM_AK_ANALYZE] = "analyze",
	[MM_AK_REIDENTIFY] = "reidentify",
	[MM_AK_RESPOND] = "respond",
	[MM_AK_SHARE] = "share",
};

const char *mm_authz_kind_name(enum mm_authz_kind k)
{
	return (unsigned)k < MM_AK_COUNT_ ? kind_names[k] : NULL;
}

int mm_authz_kind_parse(const char *text, enum mm_authz_kind *out)
{
	for (unsigned k = 0; k < MM_AK_COUNT_; k++) {
		if (strcmp(text, kind_names[k]) == 0) {
			*out = (enum mm_authz_kind)k;
			return 0;
		}
	}
	return mm_fail(MM_EINVAL, "'%s' is not a kind (collect-transit, collect-agreement, collect-specified, "
				  "analyze, reidentify, respond, share)",
		       text);
}

/* The query language's field names (docs/query.md); "family" is spelled ip4/ip6 in queries. */
static const char *const field_names[MM_QF_COUNT_] = {
	[MM_QF_HOST] = "host", [MM_QF_NET] = "net", [MM_QF_PORT] = "port", [MM_QF_AS] = "as",
	[MM_QF_COUNTRY] = "country", [MM_QF_IF] = "if", [MM_QF_PROTO] = "proto", [MM_QF_FAMILY] = "family",
	[MM_QF_BYTES] = "bytes", [MM_QF_PACKETS] = "packets", [MM_QF_DURATION] = "duration",
	[MM_QF_PPS] = "pps", [MM_QF_BPS] = "bps", [MM_QF_BPP] = "bpp", [MM_QF_FLAGS] = "flags",
	[MM_QF_VLAN] = "vlan", [MM_QF_SENSOR] = "sensor", [MM_QF_END] = "end",
};

const char *mm_authz_field_name(unsigned field)
{
	return field < MM_QF_COUNT_ ? field_names[field] : NULL;
}

int mm_authz_field_parse(const char *name, unsigned *field)
{
	for (unsigned f = 0; f < MM_QF_COUNT_; f++) {
		if (strcmp(name, field_names[f]) == 0) {
			*field = f;
			return 0;
		}
	}
	return mm_fail(MM_EINVAL, "'%s' is not a field of the query language (host, net, port, as, country, if, "
				  "proto, family, bytes, packets, duration, pps, bps, bpp, flags, vlan, sensor, end)",
		       name);
}

char *mm_oversight_time_format(uint64_t ns, char buf[64])
{
	time_t secs = (time_t)(ns / MM_NS_PER_SEC);
	unsigned frac = (unsigned)(ns % MM_NS_PER_SEC);
	struct tm tm;
	int n;

	gmtime_r(&secs, &tm);
	n = snprintf(buf, 64, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		     tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (frac) {
		n += snprintf(buf + n, (size_t)(64 - n), ".%09u", frac);
		while (buf[n - 1] == '0')
			n--;
	}
	snprintf(buf + n, (size_t)(64 - n), "Z");
	return buf;
}

void mm_authz_free(struct mm_authz *a)
{
	if (!a)
		return;
	free(a->sensors);
	free(a->prefixes);
	free(a->asns);
	free(a->countries);
	free(a->indicators);
	free(a->actions);
	free(a->canonical);
	json_decref(a->doc);
	free(a);
}

/* ---- validation ---- */

struct checker {
	const char *id; /* for messages */
	int rc;
};

static int bad(struct checker *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int bad(struct checker *c, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (c->rc)
		return c->rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->rc = mm_fail(MM_EFORMAT, "authorization %s: %s", c->id, msg);
	return c->rc;
}

static bool only_keys(struct checker *c, const json_t *obj, const char *what, const char *const *keys)
{
	const char *key;
	json_t *value;

	if (!json_is_object(obj)) {
		bad(c, "%s must be an object", what);
		return false;
	}
	for (const char *const *k = keys; *k; k++)
		if (!json_object_get(obj, *k)) {
			bad(c, "%s: field '%s' is missing", what, *k);
			return false;
		}
	json_object_foreach((json_t *)obj, key, value) {
		bool known = false;

		(void)value;
		for (const char *const *k = keys; *k && !known; k++)
			known = strcmp(key, *k) == 0;
		if (!known) {
			bad(c, "%s: unknown field '%s'", what, key);
			return false;
		}
	}
	return true;
}

/* Summaries are printed to terminals: no control characters may reach them. */
static bool printable(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static const char *text_field(struct checker *c, const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	size_t len;

	if (!json_is_string(v)) {
		bad(c, "'%s' must be a string", key);
		return NULL;
	}
	len = json_string_length(v);
	if (len == 0 || len > AUTHZ_TEXT_MAX || strlen(json_string_value(v)) != len) {
		bad(c, "'%s' must be 1 to %d bytes of text", key, AUTHZ_TEXT_MAX);
		return NULL;
	}
	if (!printable(json_string_value(v))) {
		bad(c, "'%s' holds a control character", key);
		return NULL;
	}
	return json_string_value(v);
}

/* A time string, or (nullable) null for "no bound" → dflt. */
static uint64_t time_field(struct checker *c, const json_t *obj, const char *key, bool nullable, uint64_t dflt)
{
	json_t *v = json_object_get(obj, key);
	uint64_t t = 0;

	if (nullable && json_is_null(v))
		return dflt;
	if (!json_is_string(v) || ov_time_parse(json_string_value(v), &t) != 0)
		bad(c, "'%s' must be an RFC 3339 time%s", key, nullable ? " or null" : "");
	return t;
}

static json_t *list_field(struct checker *c, const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_array(v) || json_array_size(v) > AUTHZ_LIST_MAX) {
		bad(c, "scope.%s must be a list of at most %d entries", key, AUTHZ_LIST_MAX);
		return NULL;
	}
	return v;
}

static uint32_t *u32_list(struct checker *c, const json_t *scope, const char *key, size_t *n)
{
	json_t *list = list_field(c, scope, key);
	uint32_t *out;

	*n = 0;
	if (!list || !(out = calloc(json_array_size(list) + 1, sizeof(*out))))
		return NULL;
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *v = json_array_get(list, i);

		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > UINT32_MAX) {
			bad(c, "scope.%s[%zu] must be an integer 0..4294967295", key, i);
			free(out);
			return NULL;
		}
		out[(*n)++] = (uint32_t)json_integer_value(v);
	}
	return out;
}

static int check_scope(struct checker *c, const json_t *scope, struct mm_authz *a)
{
	static const char *const keys[] = { "sensors", "prefixes", "asns", "countries", "indicators",
					    "data", "fields", "output", NULL };
	static const char *const data_keys[] = { "from", "until", NULL };
	json_t *list, *data;
	const char *output;

	if (!only_keys(c, scope, "scope", keys))
		return c->rc;
	a->sensors = u32_list(c, scope, "sensors", &a->n_sensors);
	a->asns = u32_list(c, scope, "asns", &a->n_asns);
	if ((list = list_field(c, scope, "prefixes")) &&
	    (a->prefixes = calloc(json_array_size(list) + 1, sizeof(*a->prefixes))))
		for (size_t i = 0; i < json_array_size(list) && !c->rc; i++) {
			json_t *v = json_array_get(list, i);
			if (!json_is_string(v) || mm_prefix_parse(&a->prefixes[i], json_string_value(v), false) != 0)
				bad(c, "scope.prefixes[%zu] must be a prefix with its host bits clear", i);
			a->n_prefixes = i + 1;
		}
	if ((list = list_field(c, scope, "countries")) &&
	    (a->countries = calloc(json_array_size(list) + 1, sizeof(*a->countries))))
		for (size_t i = 0; i < json_array_size(list) && !c->rc; i++) {
			const char *s = json_string_value(json_array_get(list, i));
			if (!s || strlen(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z')
				bad(c, "scope.countries[%zu] must be an upper-case ISO 3166 alpha-2 code", i);
			else
				memcpy(a->countries[a->n_countries++], s, 2);
		}
	if ((list = list_field(c, scope, "indicators")) &&
	    (a->indicators = calloc(json_array_size(list) + 1, sizeof(*a->indicators))))
		for (size_t i = 0; i < json_array_size(list) && !c->rc; i++) {
			json_t *v = json_array_get(list, i);
			if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256 ||
			    strlen(json_string_value(v)) != json_string_length(v) || !printable(json_string_value(v)))
				bad(c, "scope.indicators[%zu] must be an indicator id of 1 to 256 bytes", i);
			else
				a->indicators[a->n_indicators++] = json_string_value(v);
		}
	if ((list = list_field(c, scope, "fields")))
		for (size_t i = 0; i < json_array_size(list) && !c->rc; i++) {
			const char *s = json_string_value(json_array_get(list, i));
			unsigned f;
			if (!s || mm_authz_field_parse(s, &f) != 0)
				bad(c, "scope.fields[%zu] is not a query field name", i);
			else
				a->fields |= 1u << f;
		}
	data = json_object_get(scope, "data");
	if (!c->rc && only_keys(c, data, "scope.data", data_keys)) {
		a->data_from_ns = time_field(c, data, "from", true, 0);
		a->data_until_ns = time_field(c, data, "until", true, UINT64_MAX);
		if (!c->rc && a->data_from_ns > a->data_until_ns)
			bad(c, "scope.data: from is after until");
	}
	output = json_string_value(json_object_get(scope, "output"));
	if (!output || (strcmp(output, "record") != 0 && strcmp(output, "aggregate") != 0))
		return bad(c, "scope.output must be \"record\" or \"aggregate\"");
	a->aggregate_only = strcmp(output, "aggregate") == 0;
	if (!c->rc && (!a->sensors || !a->asns || !a->prefixes || !a->countries || !a->indicators))
		c->rc = mm_fail(MM_ENOMEM, "authorization: out of memory");
	return c->rc;
}

static int check_actions(struct checker *c, const json_t *doc, struct mm_authz *a)
{
	static const char *const keys[] = { "action", "max_duration", NULL };
	json_t *list = json_object_get(doc, "actions");

	if (!json_is_array(list) || json_array_size(list) > 64)
		return bad(c, "'actions' must be a list of at most 64 {action, max_duration}");
	if (json_array_size(list) && a->kind != MM_AK_RESPOND)
		return bad(c, "only a respond authorization lists actions");
	a->actions = calloc(json_array_size(list) + 1, sizeof(*a->actions));
	if (!a->actions)
		return c->rc = mm_fail(MM_ENOMEM, "authorization: out of memory");
	for (size_t i = 0; i < json_array_size(list) && !c->rc; i++) {
		json_t *e = json_array_get(list, i), *d;

		if (!only_keys(c, e, "actions[]", keys) || !text_field(c, e, "action"))
			break;
		d = json_object_get(e, "max_duration");
		if (!json_is_null(d) && (!json_is_integer(d) || json_integer_value(d) < 1 ||
					 json_integer_value(d) > (json_int_t)(UINT64_MAX / MM_NS_PER_SEC / 2)))
			return bad(c, "actions[%zu].max_duration must be seconds (an integer > 0) or null", i);
		a->actions[i].action = json_string_value(json_object_get(e, "action"));
		a->actions[i].max_duration_ns = json_is_null(d) ? 0 : (uint64_t)json_integer_value(d) * MM_NS_PER_SEC;
		a->n_actions = i + 1;
	}
	return c->rc;
}

static bool id_valid(const char *id)
{
	size_t len = strlen(id);

	if (len < 11 || len >= MM_AUTHZ_ID_MAX || id[0] != 'A' || id[1] != '-' || id[6] != '-')
		return false;
	for (size_t i = 2; i < len; i++)
		if (i != 6 && (id[i] < '0' || id[i] > '9'))
			return false;
	return true;
}

static int check_document(struct checker *c, const json_t *doc, bool require_id, struct mm_authz *a)
{
#define AUTHZ_KEYS "type", "v", "kind", "legal_basis", "purpose", "requester", "scope", "actions", \
		   "valid_from", "valid_until", "max_uses", "emergency", "automated", "requested"
	static const char *const keys[] = { AUTHZ_KEYS, NULL };
	static const char *const keys_with_id[] = { "id", AUTHZ_KEYS, NULL };
#undef AUTHZ_KEYS
	static const char *const basis_keys[] = { "article", "text", NULL };
	static const char *const req_keys[] = { "identity", "organisation", NULL };
	static const char *const emer_keys[] = { "flag", "ratify_by", NULL };
	json_t *id = json_object_get(doc, "id"), *v, *basis, *req, *emer;
	const char *s;

	if (require_id) {
		if (!json_is_string(id) || !id_valid(json_string_value(id)))
			return bad(c, "'id' must be A-YYYY-NNNN");
		snprintf(a->id, sizeof(a->id), "%s", json_string_value(id));
		c->id = a->id;
	}
	if (!only_keys(c, doc, "document", require_id ? keys_with_id : keys))
		return c->rc;
	s = json_string_value(json_object_get(doc, "type"));
	v = json_object_get(doc, "v");
	if (!s || strcmp(s, "mamori-authorization") != 0 || !json_is_integer(v) || json_integer_value(v) != 1)
		return bad(c, "not a version 1 mamori-authorization document");
	s = json_string_value(json_object_get(doc, "kind"));
	if (!s || mm_authz_kind_parse(s, &a->kind) != 0)
		return bad(c, "'kind' is not one of collect-transit, collect-agreement, collect-specified, analyze, "
			      "reidentify, respond, share");
	basis = json_object_get(doc, "legal_basis");
	if (!only_keys(c, basis, "legal_basis", basis_keys))
		return c->rc;
	a->article = text_field(c, basis, "article");
	a->basis_text = text_field(c, basis, "text");
	a->purpose = text_field(c, doc, "purpose");
	req = json_object_get(doc, "requester");
	if (!only_keys(c, req, "requester", req_keys))
		return c->rc;
	a->requester = text_field(c, req, "identity");
	a->organisation = text_field(c, req, "organisation");
	if (c->rc || check_scope(c, json_object_get(doc, "scope"), a) || check_actions(c, doc, a))
		return c->rc;
	a->valid_from_ns = time_field(c, doc, "valid_from", false, 0);
	a->valid_until_ns = time_field(c, doc, "valid_until", false, 0);
	a->requested_ns = time_field(c, doc, "requested", false, 0);
	if (!c->rc && a->valid_from_ns >= a->valid_until_ns)
		return bad(c, "valid_from must be before valid_until");
	v = json_object_get(doc, "max_uses");
	if (!json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 1))
		return bad(c, "'max_uses' must be a positive integer or null (unlimited)");
	a->max_uses = json_is_null(v) ? 0 : (uint64_t)json_integer_value(v);
	emer = json_object_get(doc, "emergency");
	if (!only_keys(c, emer, "emergency", emer_keys))
		return c->rc;
	if (!json_is_boolean(json_object_get(emer, "flag")))
		return bad(c, "emergency.flag must be true or false");
	a->emergency = json_is_true(json_object_get(emer, "flag"));
	if (a->emergency)
		a->ratify_by_ns = time_field(c, emer, "ratify_by", false, 0);
	else if (!json_is_null(json_object_get(emer, "ratify_by")))
		return bad(c, "emergency.ratify_by must be null when the flag is false");
	if (!json_is_boolean(json_object_get(doc, "automated")))
		return bad(c, "'automated' must be true or false");
	a->automated = json_is_true(json_object_get(doc, "automated"));
	if (a->automated && a->kind != MM_AK_ANALYZE)
		return bad(c, "only an analyze authorization can be automated");
	return c->rc;
}

/* mm_authz_from_json; canonical non-NULL: the caller vouches these are doc's canonical bytes (ov_authz_parse_canonical). */
static int from_json(json_t *doc, bool require_id, const char *canonical, size_t canonical_len, struct mm_authz **out)
{
	struct checker c = { "(request)", 0 };
	struct mm_authz *a = calloc(1, sizeof(*a));

	*out = NULL;
	if (!a) {
		json_decref(doc);
		return mm_fail(MM_ENOMEM, "authorization: out of memory");
	}
	a->doc = doc;
	a->data_until_ns = UINT64_MAX;
	if (!json_is_object(doc))
		bad(&c, "not a JSON object");
	else
		check_document(&c, doc, require_id, a);
	if (c.rc == 0 && canonical) {
		if ((a->canonical = malloc(canonical_len + 1))) {
			memcpy(a->canonical, canonical, canonical_len);
			a->canonical[canonical_len] = '\0';
			a->canonical_len = canonical_len;
		} else {
			c.rc = mm_fail(MM_ENOMEM, "authorization: out of memory");
		}
	} else if (c.rc == 0) {
		c.rc = mm_json_canonical(doc, &a->canonical, &a->canonical_len);
	}
	if (c.rc) {
		mm_authz_free(a);
		return c.rc;
	}
	ov_sha256_hex(a->canonical, a->canonical_len, a->digest);
	*out = a;
	return 0;
}

int mm_authz_from_json(json_t *doc, bool require_id, struct mm_authz **out)
{
	return from_json(doc, require_id, NULL, 0, out);
}

static int parse(const char *text, size_t len, const char *where, bool canonical, struct mm_authz **out)
{
	json_error_t err;
	json_t *doc;
	int rc;

	*out = NULL;
	if (len > OV_FILE_MAX)
		return mm_fail(MM_ELIMIT, "%s: longer than %u bytes", where, OV_FILE_MAX);
	doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	if (!doc)
		return mm_fail(MM_EFORMAT, "%s:%d:%d: %s", where, err.line, err.column, err.text);
	rc = from_json(doc, true, canonical ? text : NULL, len, out);
	if (rc) {
		char why[512];

		snprintf(why, sizeof(why), "%s", mm_last_error());
		mm_fail(rc, "%s: %s", where, why);
	}
	return rc;
}

int mm_authz_parse(const char *text, size_t len, const char *where, struct mm_authz **out)
{
	return parse(text, len, where, false, out);
}

int ov_authz_parse_canonical(const char *text, size_t len, const char *where, struct mm_authz **out)
{
	return parse(text, len, where, true, out);
}

int mm_authz_statement(const struct mm_authz *a, const char *type, char **out, size_t *len)
{
	json_t *stmt = json_pack("{s:s, s:s, s:s}", "type", type, "authz", a->id, "digest", a->digest);
	int rc;

	if (!stmt)
		return mm_fail(MM_ENOMEM, "statement: out of memory");
	rc = mm_json_canonical(stmt, out, len);
	json_decref(stmt);
	return rc;
}

/* ---- the summary people read ---- */

struct text {
	char *p;
	size_t len, cap;
	int rc;
};

static void addf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void addf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->rc)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->rc = mm_fail(MM_EINTERNAL, "summary: format failed");
			return;
		}
		if (t->p && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = (t->cap ? t->cap : 256) * 2 + (size_t)n;
		char *grown = realloc(t->p, cap);
		if (!grown) {
			t->rc = mm_fail(MM_ENOMEM, "summary: out of memory");
			return;
		}
		t->p = grown;
		t->cap = cap;
	}
}

/* A day when the time is midnight UTC ("2026-11-01"), else the full time. */
static const char *day_or_time(uint64_t ns, char buf[64])
{
	mm_oversight_time_format(ns, buf);
	if (strcmp(buf + 10, "T00:00:00Z") == 0)
		buf[10] = '\0';
	return buf;
}

static void add_what(struct text *t, const struct mm_authz *a)
{
	switch (a->kind) {
	case MM_AK_COLLECT_TRANSIT:
	case MM_AK_COLLECT_AGREEMENT:
	case MM_AK_COLLECT_SPECIFIED:
		addf(t, "Permits collection (%s) from ", mm_authz_kind_name(a->kind) + 8);
		if (!a->n_sensors)
			addf(t, "any sensor");
		for (size_t i = 0; i < a->n_sensors; i++)
			addf(t, "%ssensor %" PRIu32, i ? ", " : "", a->sensors[i]);
		break;
	case MM_AK_ANALYZE:
		if (a->automated)
			addf(t, "Permits automated analysis");
		else
			addf(t, "Permits %s queries", a->aggregate_only ? "aggregate-only" : "record-level");
		break;
	case MM_AK_REIDENTIFY: addf(t, "Permits re-identification"); break;
	case MM_AK_RESPOND:
		addf(t, "Permits measures");
		for (size_t i = 0; i < a->n_actions; i++) {
			addf(t, "%s%s", i ? ", " : " ", a->actions[i].action);
			if (a->actions[i].max_duration_ns)
				addf(t, " (at most %" PRIu64 "s)", (uint64_t)(a->actions[i].max_duration_ns / MM_NS_PER_SEC));
		}
		break;
	case MM_AK_SHARE: addf(t, "Permits sharing"); break;
	case MM_AK_COUNT_: break;
	}
}

static void add_scope(struct text *t, const struct mm_authz *a)
{
	char buf[MM_PREFIX_STRLEN], t0[64], t1[64];

	if (a->kind != MM_AK_COLLECT_TRANSIT && a->kind != MM_AK_COLLECT_AGREEMENT &&
	    a->kind != MM_AK_COLLECT_SPECIFIED && a->n_sensors) {
		addf(t, " from sensors");
		for (size_t i = 0; i < a->n_sensors; i++)
			addf(t, "%s %" PRIu32, i ? "," : "", a->sensors[i]);
	}
	addf(t, " over %s", a->n_prefixes ? "net" : "any address");
	for (size_t i = 0; i < a->n_prefixes; i++)
		addf(t, "%s %s", i ? "," : "", mm_prefix_format(&a->prefixes[i], buf));
	if (a->n_asns) {
		addf(t, ", AS");
		for (size_t i = 0; i < a->n_asns; i++)
			addf(t, "%s %" PRIu32, i ? "," : "", a->asns[i]);
	}
	if (a->n_countries) {
		addf(t, ", countries");
		for (size_t i = 0; i < a->n_countries; i++)
			addf(t, "%s %.2s", i ? "," : "", a->countries[i]);
	}
	if (a->n_indicators) {
		addf(t, ", indicators");
		for (size_t i = 0; i < a->n_indicators; i++)
			addf(t, "%s %s", i ? "," : "", a->indicators[i]);
	}
	if (a->data_from_ns || a->data_until_ns != UINT64_MAX)
		addf(t, " for data %s..%s", a->data_from_ns ? day_or_time(a->data_from_ns, t0) : "",
		     a->data_until_ns != UINT64_MAX ? day_or_time(a->data_until_ns, t1) : "");
	else
		addf(t, " for data of any time");
	if (a->fields) {
		const char *sep = ", fields ";
		for (unsigned f = 0; f < 32; f++)
			if (a->fields & (1u << f)) {
				addf(t, "%s%s", sep, mm_authz_field_name(f));
				sep = ",";
			}
	}
}

int mm_authz_summary(const struct mm_authz *a, const struct mm_authz_state *st, char **out)
{
	struct text t = { 0 };
	char t0[64];

	*out = NULL;
	addf(&t, "%s  %s, %s (%s), purpose %s; requested by %s of %s\n  ", a->id, mm_authz_kind_name(a->kind),
	     a->article, a->basis_text, a->purpose, a->requester, a->organisation);
	add_what(&t, a);
	add_scope(&t, a);
	addf(&t, ", from %s", day_or_time(a->valid_from_ns, t0));
	addf(&t, " until %s", day_or_time(a->valid_until_ns, t0));
	if (a->max_uses)
		addf(&t, ", %" PRIu64 " of %" PRIu64 " uses left",
		     st->uses >= a->max_uses ? 0 : a->max_uses - st->uses, a->max_uses);
	else
		addf(&t, ", unlimited uses (%" PRIu64 " so far)", st->uses);
	if (a->emergency)
		addf(&t, "; EMERGENCY, to be ratified by %s%s", day_or_time(a->ratify_by_ns, t0),
		     st->ratified ? " (ratified)" : "");
	addf(&t, "; signed by %s (quorum %u of %u): %s", st->sigs.valid ? st->sigs.signers : "nobody",
	     st->quorum, st->members, mm_authz_status_name(st->status));
	if (st->status != MM_AZ_IN_FORCE)
		addf(&t, " (%s)", strchr(st->reason, ':') ? strchr(st->reason, ':') + 2 : st->reason);
	else if (st->emergency_acting)
		addf(&t, " (emergency, on %u signature%s until ratified)", st->sigs.valid,
		     st->sigs.valid == 1 ? "" : "s");
	addf(&t, "\n");
	if (t.rc) {
		free(t.p);
		return t.rc;
	}
	*out = t.p;
	return 0;
}
