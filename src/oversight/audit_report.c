/*
 * `mamori audit report`: the oversight report computed from the log alone
 * (entry schema in docs/audit.md), at the latest checkpoint so the panel
 * can tie every number to a signed tree head. One pass over the entries the
 * checkpoint covers; ratification is looked up over the whole log, since an
 * emergency use in the window may be ratified after it.
 */
#include "oversight/audit_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"
#include "oversight/note.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *str_or(json_t *obj, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : dflt;
}

static void bump(json_t *obj, const char *key)
{
	json_object_set_new(obj, key, json_integer(json_integer_value(json_object_get(obj, key)) + 1));
}

/* Counters keyed "act|kind|legal_basis", each {act, kind, legal_basis, allowed, ...}. */
static void count_act(json_t *acts, json_t *e)
{
	const char *act = str_or(e, "act", "?"), *kind = str_or(e, "kind", "-");
	const char *basis = str_or(e, "legal_basis", "-"), *outcome = str_or(e, "outcome", "?");
	char key[1024];
	json_t *row;

	snprintf(key, sizeof(key), "%s|%s|%s", act, kind, basis);
	row = json_object_get(acts, key);
	if (!row) {
		row = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i}", "act", act, "kind", kind,
				"legal_basis", basis, "allowed", 0, "refused", 0, "recorded", 0);
		json_object_set_new(acts, key, row);
	}
	if (strcmp(outcome, "allowed") == 0 || strcmp(outcome, "refused") == 0 ||
	    strcmp(outcome, "recorded") == 0)
		bump(row, outcome);
	else
		bump(row, "other");
}

/* Per emergency authorization: uses in the window, ratified / suspended anywhere. */
static json_t *emergency_row(json_t *emerg, const char *authz)
{
	json_t *row = json_object_get(emerg, authz);

	if (!row) {
		row = json_pack("{s:s, s:i, s:b, s:b}", "authz", authz, "uses", 0, "ratified", 0,
				"suspended", 0);
		json_object_set_new(emerg, authz, row);
	}
	return row;
}

static json_t *values_sorted(json_t *map)
{
	json_t *arr = json_array(), *v;
	const char **keys = malloc(json_object_size(map) * sizeof(*keys) + 1);
	const char *k;
	size_t n = 0;

	if (!keys || !arr) {
		free(keys);
		json_decref(arr);
		return NULL; /* json_pack of the report then fails: reported as out of memory */
	}
	json_object_foreach(map, k, v)
		keys[n++] = k;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
			const char *t = keys[j];
			keys[j] = keys[j - 1];
			keys[j - 1] = t;
		}
	for (size_t i = 0; i < n; i++)
		json_array_append(arr, json_object_get(map, keys[i]));
	free(keys);
	return arr;
}

static void print_table(json_t *r, FILE *out)
{
	json_t *row;
	size_t i;

	fprintf(out, "Oversight report %s .. %s\n", str_or(r, "from", ""), str_or(r, "to", ""));
	fprintf(out, "computed at checkpoint: size %" JSON_INTEGER_FORMAT ", root %s\n",
		json_integer_value(json_object_get(json_object_get(r, "checkpoint"), "size")),
		str_or(json_object_get(r, "checkpoint"), "root", "-"));
	fprintf(out, "entries in window: %" JSON_INTEGER_FORMAT ", unreadable entries: %" JSON_INTEGER_FORMAT "\n\n",
		json_integer_value(json_object_get(r, "entries_in_window")),
		json_integer_value(json_object_get(r, "unreadable")));
	fprintf(out, "%-16s %-20s %-24s %8s %8s %8s\n", "act", "kind", "legal basis", "allowed",
		"refused", "recorded");
	json_array_foreach(json_object_get(r, "acts"), i, row)
		fprintf(out, "%-16s %-20s %-24s %8" JSON_INTEGER_FORMAT " %8" JSON_INTEGER_FORMAT
			     " %8" JSON_INTEGER_FORMAT "\n",
			str_or(row, "act", ""), str_or(row, "kind", ""), str_or(row, "legal_basis", ""),
			json_integer_value(json_object_get(row, "allowed")),
			json_integer_value(json_object_get(row, "refused")),
			json_integer_value(json_object_get(row, "recorded")));
	row = json_object_get(r, "reidentifications");
	fprintf(out, "\nre-identifications: %" JSON_INTEGER_FORMAT " allowed, %" JSON_INTEGER_FORMAT " refused\n",
		json_integer_value(json_object_get(row, "allowed")),
		json_integer_value(json_object_get(row, "refused")));
	row = json_object_get(r, "measures");
	fprintf(out, "measures (respond): %" JSON_INTEGER_FORMAT " allowed, %" JSON_INTEGER_FORMAT " refused\n",
		json_integer_value(json_object_get(row, "allowed")),
		json_integer_value(json_object_get(row, "refused")));
	fprintf(out, "\nemergency authorizations used:\n");
	if (json_array_size(json_object_get(r, "emergency")) == 0)
		fprintf(out, "  none\n");
	json_array_foreach(json_object_get(r, "emergency"), i, row)
		fprintf(out, "  %-16s %4" JSON_INTEGER_FORMAT " uses  %s\n", str_or(row, "authz", ""),
			json_integer_value(json_object_get(row, "uses")),
			json_is_true(json_object_get(row, "ratified"))    ? "ratified"
			: json_is_true(json_object_get(row, "suspended")) ? "suspended (not ratified)"
									  : "not (yet) ratified");
}

int mm_audit_report(struct mm_audit_log *log, uint64_t from_ns, uint64_t to_ns,
		    enum mm_audit_report_format format, FILE *out)
{
	json_t *acts = json_object(), *emerg = json_object(), *r = NULL;
	json_t *reid = json_pack("{s:i, s:i}", "allowed", 0, "refused", 0);
	json_t *measures = json_pack("{s:i, s:i}", "allowed", 0, "refused", 0);
	struct checkpoint cp = {0};
	struct note note = {0};
	char *text = NULL, tfrom[MM_TIME_STRLEN], tto[MM_TIME_STRLEN], root_b64[48];
	uint64_t in_window = 0, unreadable = 0;
	size_t len = 0;
	int rc;

	rc = mm_audit_latest_checkpoint(log, &text, &len);
	if (rc == 0 && (note_parse(text, len, &note) < 0 ||
			checkpoint_parse(note.text, note.text_len, &cp) < 0))
		rc = mm_fail(MM_EFORMAT, "audit: latest checkpoint: %s (run mamori audit verify)",
			     mm_last_error());
	if (rc == 0 && cp.size > mm_audit_size(log))
		rc = mm_fail(MM_EFORMAT, "audit: the latest checkpoint covers %" PRIu64
					 " entries, the log has %" PRIu64 " (run mamori audit verify)",
			     cp.size, mm_audit_size(log));
	for (uint64_t i = 0; rc == 0 && i < cp.size; i++) {
		char *json = NULL;
		json_t *e;
		const char *act, *outcome, *authz;
		uint64_t t = 0;

		rc = mm_audit_read(log, i, &json, NULL);
		if (rc < 0)
			break;
		e = json_loads(json, 0, NULL);
		free(json);
		if (!json_is_object(e) || !json_string_value(json_object_get(e, "time")) ||
		    mm_time_parse(json_string_value(json_object_get(e, "time")), 0, &t) < 0) {
			unreadable++;
			json_decref(e);
			continue;
		}
		act = str_or(e, "act", "?");
		outcome = str_or(e, "outcome", "?");
		authz = json_string_value(json_object_get(e, "authz"));
		if (authz && strcmp(act, "authz.ratify") == 0 && strcmp(outcome, "refused") != 0)
			json_object_set_new(emergency_row(emerg, authz), "ratified", json_true());
		if (authz && strcmp(act, "authz.suspend") == 0)
			json_object_set_new(emergency_row(emerg, authz), "suspended", json_true());
		if (t >= from_ns && t < to_ns) {
			in_window++;
			count_act(acts, e);
			if (strcmp(act, "reidentify") == 0 && strcmp(outcome, "recorded") != 0)
				bump(reid, strcmp(outcome, "allowed") == 0 ? "allowed" : "refused");
			if (strcmp(act, "respond") == 0 && strcmp(outcome, "recorded") != 0)
				bump(measures, strcmp(outcome, "allowed") == 0 ? "allowed" : "refused");
			if (authz && json_is_true(json_object_get(e, "emergency")) &&
			    strcmp(outcome, "allowed") == 0 && strncmp(act, "authz.", 6) != 0)
				bump(emergency_row(emerg, authz), "uses");
		}
		json_decref(e);
	}
	if (rc < 0)
		goto out;
	/* Emergency authorizations only ratified or suspended in the log, unused in the window,
	 * are not part of this window's report. */
	{
		json_t *v, *keep = json_object();
		const char *k;
		json_object_foreach(emerg, k, v)
			if (json_integer_value(json_object_get(v, "uses")) > 0)
				json_object_set(keep, k, v);
		json_decref(emerg);
		emerg = keep;
	}
	mm_base64_encode(cp.root, MERKLE_HASH_LEN, root_b64, sizeof(root_b64));
	r = json_pack("{s:s, s:s, s:{s:I, s:s}, s:I, s:I, s:o, s:O, s:O, s:o}", "from",
		      mm_time_format_iso(from_ns, tfrom), "to", mm_time_format_iso(to_ns, tto),
		      "checkpoint", "size", (json_int_t)cp.size, "root", root_b64,
		      "entries_in_window", (json_int_t)in_window, "unreadable", (json_int_t)unreadable,
		      "acts", values_sorted(acts), "reidentifications", reid, "measures", measures,
		      "emergency", values_sorted(emerg));
	if (!r) {
		rc = mm_fail(MM_ENOMEM, "audit: report: out of memory");
		goto out;
	}
	if (format == MM_AUDIT_REPORT_JSON) {
		json_dumpf(r, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', out);
	} else {
		print_table(r, out);
	}
out:
	json_decref(r);
	json_decref(acts);
	json_decref(emerg);
	json_decref(reid);
	json_decref(measures);
	note_free(&note);
	free(text);
	return rc;
}
