/*
 * STIX 2.1 loader: a bundle (or one object, or an array of objects) read
 * with jansson. Each indicator with a STIX pattern yields the addresses,
 * prefixes and ASNs of its pattern (stix_pattern.c) with the indicator's
 * id, confidence, labels, validity and TLP marking; every object that
 * yields nothing is counted with the reason.
 */
#include "intel/intel_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define PATTERN_INDICATORS_MAX (1u << 20)

/* TLP marking-definition ids: TLP 2.0 (the OASIS extension), then TLP 1.0 (STIX 2.1 §7.2.1.4). */
static const struct {
	const char *id;
	enum mm_tlp tlp;
} known_tlp[] = {
	{ "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487", MM_TLP_CLEAR },
	{ "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb", MM_TLP_GREEN },
	{ "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421", MM_TLP_AMBER },
	{ "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003", MM_TLP_AMBER_STRICT },
	{ "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", MM_TLP_RED },
	{ "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9", MM_TLP_CLEAR },
	{ "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da", MM_TLP_GREEN },
	{ "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82", MM_TLP_AMBER },
	{ "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed", MM_TLP_RED },
};

/* A marking definition of the bundle itself: TLP 2.0 extension or TLP 1.0 definition. */
static enum mm_tlp marking_tlp(json_t *md)
{
	json_t *ext = json_object_get(md, "extensions"), *def = json_object_get(md, "definition");
	const char *key;
	json_t *val;
	enum mm_tlp t;

	json_object_foreach(ext, key, val) {
		const char *level = json_string_value(json_object_get(val, "tlp_2_0"));

		if (level && mm_tlp_parse(level, &t) == 0)
			return t;
	}
	if (json_is_string(json_object_get(def, "tlp")) &&
	    mm_tlp_parse(json_string_value(json_object_get(def, "tlp")), &t) == 0)
		return t;
	return MM_TLP_UNSET;
}

#define MARKINGS_MAX 256

/* The bundle's own TLP marking definitions (the first MARKINGS_MAX). */
struct markings {
	const char *id[MARKINGS_MAX];
	enum mm_tlp tlp[MARKINGS_MAX];
	size_t n;
};

static void collect_markings(json_t *objects, struct markings *m)
{
	json_t *o;
	size_t i;

	m->n = 0;
	json_array_foreach(objects, i, o) {
		const char *type = json_string_value(json_object_get(o, "type"));
		const char *id = json_string_value(json_object_get(o, "id"));
		enum mm_tlp t;

		if (!type || !id || strcmp(type, "marking-definition") != 0 || m->n == MARKINGS_MAX)
			continue;
		t = marking_tlp(o);
		if (t != MM_TLP_UNSET) {
			m->id[m->n] = id;
			m->tlp[m->n++] = t;
		}
	}
}

/* The most restrictive TLP among the object's marking refs. */
static enum mm_tlp object_tlp(json_t *obj, const struct markings *m)
{
	json_t *refs = json_object_get(obj, "object_marking_refs"), *ref;
	enum mm_tlp best = MM_TLP_UNSET;
	size_t i, j;

	json_array_foreach(refs, i, ref) {
		const char *id = json_string_value(ref);
		enum mm_tlp t = MM_TLP_UNSET;

		if (!id)
			continue;
		for (j = 0; j < sizeof(known_tlp) / sizeof(known_tlp[0]); j++)
			if (strcmp(id, known_tlp[j].id) == 0)
				t = known_tlp[j].tlp;
		for (j = 0; t == MM_TLP_UNSET && j < m->n; j++)
			if (strcmp(id, m->id[j]) == 0)
				t = m->tlp[j];
		if (t > best)
			best = t;
	}
	return best;
}

/* indicator_types and labels, ';'-separated, cut at the field cap. */
static void object_tags(json_t *obj, char *buf, size_t len)
{
	static const char *const keys[] = { "indicator_types", "labels" };
	size_t o = 0;

	buf[0] = '\0';
	for (size_t k = 0; k < 2; k++) {
		json_t *arr = json_object_get(obj, keys[k]), *v;
		size_t i;

		json_array_foreach(arr, i, v) {
			const char *s = json_string_value(v);
			size_t n;

			if (!s || strchr(s, ';'))
				continue;
			n = strlen(s);
			if (o + n + 2 > len)
				return;
			if (o)
				buf[o++] = ';';
			memcpy(buf + o, s, n + 1);
			o += n;
		}
	}
}

static uint64_t object_time(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	uint64_t ns;

	return s && mm_time_parse(s, 0, &ns) == 0 ? ns : 0;
}

static void count_skip(struct mm_intel_load_stats *st, enum mm_stix_skip skip)
{
	st->n_skipped++;
	if (skip == MM_STIX_SKIP_OBJECT_TYPE)
		st->n_skip_object_type++;
	else if (skip == MM_STIX_SKIP_OPERATOR)
		st->n_skip_operator++;
	else
		st->n_skip_combination++;
}

static const char *const skip_reason[] = {
	"", "compares no IP address or AS object", "uses an operator other than =, IN, ISSUBSET",
	"needs correlation (AND, FOLLOWEDBY or a qualifier)",
};

static int load_indicator(struct intel_load *ld, json_t *obj, const struct markings *marks, size_t index,
			  struct mm_intel_indicator **buf, size_t *buf_cap)
{
	const char *id = json_string_value(json_object_get(obj, "id"));
	const char *ptype = json_string_value(json_object_get(obj, "pattern_type"));
	const char *pattern = json_string_value(json_object_get(obj, "pattern"));
	json_t *conf = json_object_get(obj, "confidence");
	char tags[MM_INTEL_FIELD_MAX], where[96];
	struct mm_intel_indicator meta;
	enum mm_stix_skip skip;
	size_t n;
	bool partial;
	int rc;

	snprintf(where, sizeof(where), "objects[%zu] %.64s", index, id ? id : "(no id)");
	if (ptype && strcmp(ptype, "stix") != 0) {
		ld->st->n_skipped++;
		ld->st->n_skip_pattern_type++;
		return 0;
	}
	if (json_is_true(json_object_get(obj, "revoked"))) {
		ld->st->n_skipped++;
		intel_report(ld, 0, "%s: revoked, skipped", where);
		return 0;
	}
	if (!pattern || !id || strlen(id) >= MM_INTEL_FIELD_MAX) {
		ld->st->n_bad++;
		intel_report(ld, 0, "%s: indicator without a pattern or id", where);
		return 0;
	}
	for (;;) {
		rc = mm_stix_pattern_indicators(pattern, *buf, *buf_cap, &n, &skip, &partial);
		if (rc || n <= *buf_cap)
			break;
		if (n > PATTERN_INDICATORS_MAX) {
			ld->st->n_bad++;
			intel_report(ld, 0, "%s: pattern names more than %u addresses", where, PATTERN_INDICATORS_MAX);
			return 0;
		}
		free(*buf);
		*buf = malloc(n * sizeof(**buf));
		if (!*buf) {
			*buf_cap = 0;
			return mm_fail(MM_ENOMEM, "intel: %s: %zu pattern indicators", ld->name, n);
		}
		*buf_cap = n;
	}
	if (rc) {
		ld->st->n_bad++;
		intel_report(ld, 0, "%s: %s", where, mm_last_error());
		return 0;
	}
	if (skip) {
		count_skip(ld->st, skip);
		intel_report(ld, 0, "%s: skipped: pattern %s", where, skip_reason[skip]);
		return 0;
	}
	if (partial)
		ld->st->n_partial++;
	memset(&meta, 0, sizeof(meta));
	meta.confidence = ld->def->confidence;
	if (json_is_integer(conf) && json_integer_value(conf) >= 0 && json_integer_value(conf) <= 100)
		meta.confidence = (uint8_t)json_integer_value(conf);
	meta.tlp = object_tlp(obj, marks);
	object_tags(obj, tags, sizeof(tags));
	meta.tags = tags;
	meta.id = id;
	meta.first_seen_ns = object_time(obj, "valid_from");
	meta.expires_ns = object_time(obj, "valid_until");
	for (size_t i = 0; i < n; i++) {
		struct mm_intel_indicator ind = meta;

		ind.kind = (*buf)[i].kind;
		ind.prefix = (*buf)[i].prefix;
		ind.asn = (*buf)[i].asn;
		rc = intel_load_add(ld, &ind);
		if (rc)
			return rc;
	}
	return 0;
}

int intel_load_stix(struct intel_load *ld, const char *buf, size_t len)
{
	struct mm_intel_indicator *pbuf = NULL;
	struct markings *marks = NULL;
	size_t pbuf_cap = 0, i;
	json_error_t err;
	json_t *root, *objects, *obj;
	int rc = 0;

	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		return mm_fail(MM_EFORMAT, "%s:%d: JSON: %s", ld->name, err.line, err.text);
	if (json_is_array(root))
		objects = root;
	else if (json_is_array(json_object_get(root, "objects")))
		objects = json_object_get(root, "objects");
	else if (json_is_object(root) && json_object_get(root, "type"))
		objects = NULL;
	else {
		json_decref(root);
		return mm_fail(MM_EFORMAT, "%s: neither a STIX bundle nor a STIX object", ld->name);
	}
	pbuf_cap = 64;
	pbuf = malloc(pbuf_cap * sizeof(*pbuf));
	marks = calloc(1, sizeof(*marks));
	if (!pbuf || !marks) {
		free(pbuf);
		free(marks);
		json_decref(root);
		return mm_fail(MM_ENOMEM, "intel: %s: pattern buffer", ld->name);
	}
	if (!objects) {
		const char *type = json_string_value(json_object_get(root, "type"));

		if (type && strcmp(type, "indicator") == 0)
			rc = load_indicator(ld, root, marks, 0, &pbuf, &pbuf_cap);
		else
			ld->st->n_skipped++;
	} else {
		collect_markings(objects, marks);
		json_array_foreach(objects, i, obj) {
			const char *type = json_string_value(json_object_get(obj, "type"));

			ld->st->n_lines++;
			if (!json_is_object(obj) || !type) {
				ld->st->n_bad++;
				intel_report(ld, 0, "objects[%zu]: not a STIX object (no type)", i);
				continue;
			}
			if (strcmp(type, "indicator") != 0)
				continue;
			rc = load_indicator(ld, obj, marks, i, &pbuf, &pbuf_cap);
			if (rc)
				break;
		}
	}
	free(pbuf);
	free(marks);
	json_decref(root);
	return rc;
}
