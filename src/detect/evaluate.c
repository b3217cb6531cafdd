/*
 * Evaluation against ground truth (the scenario generator's truth file,
 * docs/synth.md): per detector, which alerts match a planted attack
 * (precision), which attacks some alert found (recall), and how long after
 * an attack began its first matching alert was raised (time to detect).
 */
#include "detect/detect_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct truth_item {
	enum mm_detector detector;
	bool any_src, any_dst;
	struct mm_prefix src, dst;
	uint64_t first_ns, last_ns;
	uint64_t ttd_ns;
	bool detected;
};

/* p lies inside q: q covers p's address and is no longer than p. */
static bool prefix_within(const struct mm_prefix *p, const struct mm_prefix *q)
{
	return mm_prefix_bits128(p) >= mm_prefix_bits128(q) && mm_prefix_contains(q, &p->addr);
}

static bool prefix_overlap(const struct mm_prefix *p, const struct mm_prefix *q)
{
	return prefix_within(p, q) || prefix_within(q, p);
}

static int parse_side(json_t *o, const char *key, bool *any, struct mm_prefix *out, const char *file, size_t i)
{
	json_t *v = json_object_get(o, key);

	*any = v == NULL || json_is_null(v);
	if (*any)
		return 0;
	if (!json_is_string(v) || mm_prefix_parse(out, json_string_value(v), true) < 0)
		return mm_fail(MM_EFORMAT, "%s: attack %zu: '%s' is not an address or prefix", file, i, key);
	return 0;
}

static int parse_item(json_t *o, const char *file, size_t i, bool attack, struct truth_item *t)
{
	const char *det = json_string_value(json_object_get(o, "detector"));
	const char *first = json_string_value(json_object_get(o, "first"));
	const char *last = json_string_value(json_object_get(o, "last"));
	int rc;

	memset(t, 0, sizeof(*t));
	if (attack && (!det || mm_detector_parse(det, &t->detector) < 0))
		return mm_fail(MM_EFORMAT, "%s: attack %zu: no known \"detector\"", file, i);
	if ((rc = parse_side(o, "src", &t->any_src, &t->src, file, i)) < 0 ||
	    (rc = parse_side(o, "dst", &t->any_dst, &t->dst, file, i)) < 0)
		return rc;
	t->last_ns = UINT64_MAX;
	if (first && mm_time_parse(first, 0, &t->first_ns) < 0)
		return mm_fail(MM_EFORMAT, "%s: item %zu: bad \"first\" time '%s'", file, i, first);
	if (last && mm_time_parse(last, 0, &t->last_ns) < 0)
		return mm_fail(MM_EFORMAT, "%s: item %zu: bad \"last\" time '%s'", file, i, last);
	if (attack && (!first || !last))
		return mm_fail(MM_EFORMAT, "%s: attack %zu: needs \"first\" and \"last\"", file, i);
	return 0;
}

static bool side_in(bool any, const struct mm_prefix *truth, const struct mm_prefix *alert, bool overlap)
{
	if (any)
		return true;
	return overlap ? prefix_overlap(alert, truth) : prefix_within(alert, truth);
}

static bool matches(const struct mm_alert *a, const struct truth_item *t)
{
	if (a->last_ns < t->first_ns || a->first_ns > t->last_ns)
		return false;
	if (a->detector == MM_DET_DDOS)
		/* Floods: the victim decides (sources are spoofed or reflectors); either orientation. */
		return side_in(t->any_dst, &t->dst, &a->dst, true) || side_in(t->any_src, &t->src, &a->dst, true);
	if (side_in(t->any_src, &t->src, &a->src, false) && side_in(t->any_dst, &t->dst, &a->dst, true))
		return true;
	/* Intel: the indicator may be either end. */
	return a->detector == MM_DET_INTEL && side_in(t->any_src, &t->src, &a->dst, false) &&
	       side_in(t->any_dst, &t->dst, &a->src, true);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void score(const struct mm_alert *alerts, size_t n_alerts, struct truth_item *att, size_t n_att,
		  const struct truth_item *ben, size_t n_ben, uint64_t *ttd, struct mm_eval *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n_alerts; i++) {
		const struct mm_alert *a = &alerts[i];
		bool matched = false;

		out->row[a->detector].alerts++;
		for (size_t j = 0; j < n_att; j++) {
			struct truth_item *t = &att[j];
			uint64_t d;

			if (t->detector != a->detector || !matches(a, t))
				continue;
			matched = true;
			d = a->emitted_ns > t->first_ns ? a->emitted_ns - t->first_ns : 0;
			if (!t->detected || d < t->ttd_ns)
				t->ttd_ns = d;
			t->detected = true;
		}
		out->row[a->detector].matched += matched;
		for (size_t j = 0; !matched && j < n_ben; j++)
			if ((ben[j].any_src || prefix_overlap(&a->src, &ben[j].src)) &&
			    (ben[j].any_dst || prefix_overlap(&a->dst, &ben[j].dst))) {
				out->benign_alerted++;
				break;
			}
	}
	for (unsigned d = 0; d < MM_DET_COUNT; d++) {
		struct mm_eval_row *r = &out->row[d];
		size_t n = 0;

		for (size_t j = 0; j < n_att; j++) {
			if (att[j].detector != d)
				continue;
			r->attacks++;
			if (att[j].detected) {
				r->detected++;
				ttd[n++] = att[j].ttd_ns;
			}
		}
		r->precision = r->alerts ? (double)r->matched / r->alerts : NAN;
		r->recall = r->attacks ? (double)r->detected / r->attacks : NAN;
		r->ttd_median_s = r->ttd_max_s = NAN;
		if (n) {
			qsort(ttd, n, sizeof(*ttd), cmp_u64);
			r->ttd_median_s = (n % 2 ? (double)ttd[n / 2] : ((double)ttd[n / 2 - 1] + (double)ttd[n / 2]) / 2) / 1e9;
			r->ttd_max_s = (double)ttd[n - 1] / 1e9;
		}
	}
}

static int parse_list(json_t *arr, const char *file, bool attack, struct truth_item **out, size_t *n_out)
{
	size_t n = json_array_size(arr), i;
	json_t *v;
	int rc;

	*out = calloc(n ? n : 1, sizeof(**out));
	*n_out = 0;
	if (!*out)
		return mm_fail(MM_ENOMEM, "%s: %zu truth items", file, n);
	json_array_foreach(arr, i, v) {
		if (!json_is_object(v))
			return mm_fail(MM_EFORMAT, "%s: item %zu is not an object", file, i);
		if ((rc = parse_item(v, file, i, attack, &(*out)[i])) < 0)
			return rc;
		(*n_out)++;
	}
	return 0;
}

int mm_detect_evaluate(const char *truth_path, const struct mm_alert *alerts, size_t n_alerts, struct mm_eval *out)
{
	json_error_t err;
	json_t *root = json_load_file(truth_path, JSON_REJECT_DUPLICATES, &err);
	struct truth_item *att = NULL, *ben = NULL;
	size_t n_att = 0, n_ben = 0;
	uint64_t *ttd = NULL;
	json_t *attacks;
	int rc;

	if (!root)
		return mm_fail(err.line < 0 ? MM_ENOENT : MM_EFORMAT, "%s:%d: %s", truth_path, err.line, err.text);
	attacks = json_object_get(root, "attacks");
	if (!json_is_array(attacks)) {
		rc = mm_fail(MM_EFORMAT, "%s: no \"attacks\" array", truth_path);
		goto out;
	}
	if ((rc = parse_list(attacks, truth_path, true, &att, &n_att)) < 0)
		goto out;
	if (json_is_array(json_object_get(root, "benign")) &&
	    (rc = parse_list(json_object_get(root, "benign"), truth_path, false, &ben, &n_ben)) < 0)
		goto out;
	ttd = calloc(n_att ? n_att : 1, sizeof(*ttd));
	if (!ttd) {
		rc = mm_fail(MM_ENOMEM, "%s: evaluation", truth_path);
		goto out;
	}
	score(alerts, n_alerts, att, n_att, ben, n_ben, ttd, out);
	rc = 0;
out:
	free(att);
	free(ben);
	free(ttd);
	json_decref(root);
	return rc;
}

static void print_ratio(FILE *fp, double v)
{
	if (isnan(v))
		fprintf(fp, " %9s", "-");
	else
		fprintf(fp, " %9.3f", v);
}

static void print_secs(FILE *fp, double s)
{
	char buf[32];

	if (isnan(s))
		fprintf(fp, " %10s", "-");
	else
		fprintf(fp, " %10s", det_duration_text((uint64_t)(s * 1e9), buf));
}

void mm_eval_print(FILE *fp, const struct mm_eval *e)
{
	fprintf(fp, "%-11s %7s %8s %9s %7s %7s %9s %10s %10s\n", "detector", "attacks", "detected", "recall", "alerts",
		"matched", "precision", "ttd-median", "ttd-max");
	for (unsigned d = 0; d < MM_DET_COUNT; d++) {
		const struct mm_eval_row *r = &e->row[d];

		if (!r->attacks && !r->alerts)
			continue;
		fprintf(fp, "%-11s %7u %8u", mm_detector_name(d), r->attacks, r->detected);
		print_ratio(fp, r->recall);
		fprintf(fp, " %7u %7u", r->alerts, r->matched);
		print_ratio(fp, r->precision);
		print_secs(fp, r->ttd_median_s);
		print_secs(fp, r->ttd_max_s);
		fputc('\n', fp);
	}
	fprintf(fp, "benign look-alikes named by an unmatched alert: %u\n", e->benign_alerted);
}
