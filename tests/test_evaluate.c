/*
 * The detection targets, end to end through the binary: the standard
 * scenario (mamori synth --scenario standard) is generated into a scratch
 * data directory, its indicator list imported, and `mamori detect
 * --evaluate` must report precision and recall of at least 0.95 for every
 * detector (issue 7). The numbers are parsed from the printed table.
 */
#include "mamori/detect.h"

#include "test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct row {
	bool seen;
	unsigned attacks, detected, alerts, matched;
	double recall, precision;
};

/* Reads the evaluation table: "scan  10  10  1.000  15  15  1.000  1s  8m08s". */
static void parse_table(const char *out, struct row rows[MM_DET_COUNT])
{
	const char *line = out;

	while (line && *line) {
		char name[16], prec[16];
		struct row r = { .seen = true };
		enum mm_detector d;

		if (sscanf(line, "%15s %u %u %lf %u %u %15s", name, &r.attacks, &r.detected, &r.recall, &r.alerts,
			   &r.matched, prec) == 7 &&
		    mm_detector_parse(name, &d) == 0) {
			r.precision = strcmp(prec, "-") == 0 ? -1 : atof(prec);
			rows[d] = r;
		}
		line = strchr(line, '\n');
		line = line ? line + 1 : NULL;
	}
}

Test(evaluate, standard_scenario_meets_precision_and_recall, .timeout = 900)
{
	char *dir = tu_tmpdir(), data[512], truth[512], indicators[512];
	char *out = NULL, *err = NULL;
	struct row rows[MM_DET_COUNT] = { 0 };
	int rc;

	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(truth, sizeof(truth), "%s/truth.json", dir);
	snprintf(indicators, sizeof(indicators), "%s/scenario-indicators.txt", dir);
	{
		const char *argv[] = { tu_mamori_bin(), "synth", "--scenario", "standard", "-w", data, "--truth", truth,
				       NULL };

		rc = tu_run(argv, NULL, NULL, &err);
		cr_assert_eq(rc, 0, "synth failed: %s", err);
		free(err);
	}
	{
		const char *argv[] = { tu_mamori_bin(), "intel", "import", indicators, "--source", "scenario", "-R", data,
				       NULL };

		rc = tu_run(argv, NULL, NULL, &err);
		cr_assert_eq(rc, 0, "intel import failed: %s", err);
		free(err);
	}
	{
		const char *argv[] = { tu_mamori_bin(), "detect", "-R", data, "--evaluate", truth, "--no-store", NULL };

		rc = tu_run(argv, NULL, &out, &err);
		cr_assert_eq(rc, 0, "detect failed: %s", err);
	}
	parse_table(out, rows);
	for (unsigned d = 0; d < MM_DET_COUNT; d++) {
		const struct row *r = &rows[d];

		cr_expect(r->seen && r->attacks > 0, "%s: no planted attacks in the evaluation:\n%s", mm_detector_name(d),
			  out);
		cr_expect_geq(r->recall, 0.95, "%s: recall %.3f (%u of %u attacks)\n%s", mm_detector_name(d), r->recall,
			      r->detected, r->attacks, out);
		cr_expect_geq(r->precision, 0.95, "%s: precision %.3f (%u of %u alerts)\n%s", mm_detector_name(d),
			      r->precision, r->matched, r->alerts, out);
	}
	free(out);
	free(err);
	free(dir);
}
