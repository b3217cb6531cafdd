/*
 * The mutable indicator set: what every loader fills and the compiler
 * reads. Records are fixed-size; their strings live in one pool. Also the
 * names of formats and TLP levels, and the CSV writer that stores a source
 * in <data>/intel/sources/ in the same format the CSV loader reads.
 */
#include "intel/intel_int.h"

#include "mamori/flow.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define POOL_MAX (UINT32_MAX - 1)

int mm_intel_set_new(struct mm_intel_set **out)
{
	struct mm_intel_set *set = calloc(1, sizeof(*set));

	if (!set)
		return mm_fail(MM_ENOMEM, "intel: set allocation failed");
	set->pool = malloc(4096);
	if (!set->pool) {
		free(set);
		return mm_fail(MM_ENOMEM, "intel: set allocation failed");
	}
	set->pool[0] = '\0';
	set->pool_len = 1;
	set->pool_cap = 4096;
	*out = set;
	return 0;
}

void mm_intel_set_free(struct mm_intel_set *set)
{
	if (!set)
		return;
	free(set->recs);
	free(set->pool);
	free(set);
}

size_t mm_intel_set_count(const struct mm_intel_set *set)
{
	return set->n_recs;
}

int intel_set_string(struct mm_intel_set *set, const char *s, bool is_source, uint32_t *out)
{
	size_t len = strlen(s);

	if (len == 0) {
		*out = 0;
		return 0;
	}
	if (is_source && set->last_source && strcmp(set->pool + set->last_source, s) == 0) {
		*out = set->last_source;
		return 0;
	}
	if (len + 1 > POOL_MAX - set->pool_len)
		return mm_fail(MM_ELIMIT, "intel: string pool exceeds 4 GiB");
	if (set->pool_len + len + 1 > set->pool_cap) {
		size_t cap = set->pool_cap * 2;
		char *p;

		while (cap < set->pool_len + len + 1)
			cap *= 2;
		p = realloc(set->pool, cap);
		if (!p)
			return mm_fail(MM_ENOMEM, "intel: string pool of %zu bytes", cap);
		set->pool = p;
		set->pool_cap = cap;
	}
	memcpy(set->pool + set->pool_len, s, len + 1);
	*out = (uint32_t)set->pool_len;
	set->pool_len += len + 1;
	if (is_source)
		set->last_source = *out;
	return 0;
}

bool intel_source_name_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len >= MM_INTEL_SOURCE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return s[0] != '.';
}

int mm_intel_set_add(struct mm_intel_set *set, const struct mm_intel_indicator *ind)
{
	struct intel_rec r;
	int rc;

	memset(&r, 0, sizeof(r));
	if (!ind->source || !intel_source_name_ok(ind->source))
		return mm_fail(MM_EINVAL, "intel: source name '%s' must be 1..63 of [A-Za-z0-9._-]",
			       ind->source ? ind->source : "");
	if (ind->confidence > 100)
		return mm_fail(MM_EINVAL, "intel: confidence %u exceeds 100", ind->confidence);
	if ((unsigned)ind->tlp > MM_TLP_RED || (unsigned)ind->kind > MM_INTEL_PORT)
		return mm_fail(MM_EINVAL, "intel: bad TLP or kind");
	if ((ind->id && strlen(ind->id) >= MM_INTEL_FIELD_MAX) ||
	    (ind->tags && strlen(ind->tags) >= MM_INTEL_FIELD_MAX))
		return mm_fail(MM_EINVAL, "intel: id or tags longer than %d bytes", MM_INTEL_FIELD_MAX - 1);
	if (set->n_recs >= MM_INTEL_INDICATORS_MAX)
		return mm_fail(MM_ELIMIT, "intel: more than %u indicators", MM_INTEL_INDICATORS_MAX);
	r.kind = (uint8_t)ind->kind;
	if (ind->kind == MM_INTEL_PREFIX) {
		rc = mm_prefix_from_addr(&r.prefix, &ind->prefix.addr, ind->prefix.len);
		if (rc)
			return rc;
	}
	r.asn = ind->kind == MM_INTEL_ASN ? ind->asn : 0;
	r.port = ind->kind == MM_INTEL_PORT ? ind->port : 0;
	r.proto = ind->kind == MM_INTEL_PORT ? ind->proto : 0;
	r.confidence = ind->confidence;
	r.tlp = (uint8_t)ind->tlp;
	r.first_seen_ns = ind->first_seen_ns;
	r.last_seen_ns = ind->last_seen_ns;
	r.expires_ns = ind->expires_ns;
	rc = intel_set_string(set, ind->source, true, &r.source);
	if (!rc)
		rc = intel_set_string(set, ind->id ? ind->id : "", false, &r.id);
	if (!rc)
		rc = intel_set_string(set, ind->tags ? ind->tags : "", false, &r.tags);
	if (rc)
		return rc;
	if (set->n_recs == set->cap_recs) {
		size_t cap = set->cap_recs ? set->cap_recs * 2 : 1024;
		struct intel_rec *p = realloc(set->recs, cap * sizeof(*p));

		if (!p)
			return mm_fail(MM_ENOMEM, "intel: %zu indicators", cap);
		set->recs = p;
		set->cap_recs = cap;
	}
	set->recs[set->n_recs++] = r;
	return 0;
}

void mm_intel_set_get(const struct mm_intel_set *set, size_t i, struct mm_intel_indicator *out)
{
	const struct intel_rec *r = &set->recs[i];

	memset(out, 0, sizeof(*out));
	out->kind = (enum mm_intel_kind)r->kind;
	out->prefix = r->prefix;
	out->asn = r->asn;
	out->port = r->port;
	out->proto = r->proto;
	out->confidence = r->confidence;
	out->tlp = (enum mm_tlp)r->tlp;
	out->source = set->pool + r->source;
	out->id = set->pool + r->id;
	out->tags = set->pool + r->tags;
	out->first_seen_ns = r->first_seen_ns;
	out->last_seen_ns = r->last_seen_ns;
	out->expires_ns = r->expires_ns;
}

/* ---- names ---- */

static const char *const format_names[] = { "auto", "list", "firehol", "csv", "ipsum", "stix" };
static const char *const tlp_names[] = { "", "clear", "green", "amber", "amber+strict", "red" };

const char *mm_intel_format_name(enum mm_intel_format f)
{
	return (unsigned)f < sizeof(format_names) / sizeof(format_names[0]) ? format_names[f] : "?";
}

int mm_intel_format_parse(const char *text, enum mm_intel_format *out)
{
	for (size_t i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
		if (strcmp(text, format_names[i]) == 0) {
			*out = (enum mm_intel_format)i;
			return 0;
		}
	}
	return mm_fail(MM_EINVAL, "intel: unknown format '%s' (auto, list, firehol, csv, ipsum, stix)", text);
}

const char *mm_tlp_name(enum mm_tlp t)
{
	return (unsigned)t <= MM_TLP_RED ? tlp_names[t] : "?";
}

int mm_tlp_parse(const char *text, enum mm_tlp *out)
{
	const char *t = strncasecmp(text, "TLP:", 4) == 0 ? text + 4 : text;

	for (unsigned i = 1; i <= MM_TLP_RED; i++) {
		if (strcasecmp(t, tlp_names[i]) == 0) {
			*out = (enum mm_tlp)i;
			return 0;
		}
	}
	if (strcasecmp(t, "white") == 0) {
		*out = MM_TLP_CLEAR;
		return 0;
	}
	if (*t == '\0') {
		*out = MM_TLP_UNSET;
		return 0;
	}
	return mm_fail(MM_EINVAL, "TLP '%s' is not clear, green, amber, amber+strict or red", text);
}

/* ---- CSV writer ---- */

static void csv_field(FILE *fp, const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n")) {
		fputc('"', fp);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', fp);
			fputc(*s, fp);
		}
		fputc('"', fp);
	} else {
		fputs(s, fp);
	}
	fputc(last ? '\n' : ',', fp);
}

static void csv_time(FILE *fp, uint64_t ns)
{
	char buf[MM_TIME_STRLEN];

	csv_field(fp, ns ? mm_time_format_iso(ns, buf) : "", false);
}

static const char *indicator_text(const struct mm_intel_indicator *ind, char *buf, size_t len)
{
	char proto[8];

	switch (ind->kind) {
	case MM_INTEL_ASN:
		snprintf(buf, len, "AS%u", ind->asn);
		break;
	case MM_INTEL_PORT:
		if (ind->proto)
			snprintf(buf, len, "%s/%u", mm_proto_name(ind->proto, proto), ind->port);
		else
			snprintf(buf, len, "%u", ind->port);
		break;
	default:
		mm_prefix_format(&ind->prefix, buf);
		break;
	}
	return buf;
}

int mm_intel_set_write_csv(const struct mm_intel_set *set, const char *path)
{
	static const char *const kind_names[] = { "prefix", "asn", "port" };
	FILE *fp = fopen(path, "w");
	char text[MM_PREFIX_STRLEN + 16], num[16];
	int err;

	if (!fp)
		return mm_fail(MM_EIO, "intel: %s: %s", path, strerror(errno));
	fputs("indicator,type,source,confidence,tags,tlp,first_seen,last_seen,expires,id\n", fp);
	for (size_t i = 0; i < set->n_recs; i++) {
		struct mm_intel_indicator ind;

		mm_intel_set_get(set, i, &ind);
		csv_field(fp, indicator_text(&ind, text, sizeof(text)), false);
		csv_field(fp, kind_names[ind.kind], false);
		csv_field(fp, ind.source, false);
		snprintf(num, sizeof(num), "%u", ind.confidence);
		csv_field(fp, num, false);
		csv_field(fp, ind.tags, false);
		csv_field(fp, mm_tlp_name(ind.tlp), false);
		csv_time(fp, ind.first_seen_ns);
		csv_time(fp, ind.last_seen_ns);
		csv_time(fp, ind.expires_ns);
		csv_field(fp, ind.id, true);
	}
	err = ferror(fp) || fflush(fp) != 0 || fsync(fileno(fp)) != 0;
	if (fclose(fp) != 0 || err)
		return mm_fail(MM_EIO, "intel: writing %s failed", path);
	return 0;
}
