/* Inline detection for meter and collect (cli_detect.h). */
#include "cli/cli_detect.h"

#include "mamori/query.h"
#include "mamori/status.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

static void on_alert(void *ctx, const struct mm_alert *a)
{
	struct cli_detect *d = ctx;
	int rc;

	d->n_alerts++;
	rc = mm_alert_store_append(d->alerts, a);
	if (rc && d->alert_status == 0)
		d->alert_status = rc;
}

int cli_detect_open(struct cli_detect *d, const char *command, const char *data_dir, const struct mm_config *conf,
		    const char *authz, bool quiet)
{
	struct mm_detect_config cfg;
	char intel_dir[4096];
	int rc;

	memset(d, 0, sizeof(*d));
	d->command = command;
	rc = cli_guard_scan_begin(&d->g, command, data_dir, MM_ACT_ANALYZE, authz, 0, UINT64_MAX, quiet);
	if (rc)
		return rc;
	mm_detect_config_default(&cfg);
	if ((size_t)snprintf(intel_dir, sizeof(intel_dir), "%s/intel", data_dir) >= sizeof(intel_dir))
		rc = mm_fail(MM_EINVAL, "detect: data directory path too long");
	if (rc == 0)
		rc = mm_detect_config_load(&cfg, conf);
	if (rc == 0 && (cfg.enabled & (1u << MM_DET_INTEL)))
		rc = mm_intel_open(intel_dir, &d->intel);
	cfg.intel = d->intel;
	if (rc == 0)
		rc = mm_alert_store_open(&d->alerts, data_dir);
	if (rc == 0)
		rc = mm_detect_new(&d->engine, &cfg, on_alert, d);
	if (rc) {
		json_t *result = json_pack("{s:b}", "ok", 0);

		rc = cli_fail(command, rc);
		mm_alert_store_close(d->alerts);
		mm_intel_close(d->intel);
		(void)cli_guard_scan_end(&d->g, result); /* the allowed act did not start: say so */
		json_decref(result);
		memset(d, 0, sizeof(*d));
		return rc;
	}
	return 0;
}

/* Flows outside the authorization's scope are not analysed. */
static int feed(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct cli_detect *d = ctx;
	size_t start = 0;
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		if (mm_query_match(d->g.d.query, &flows[i]) && flows[i].last_ns >= d->g.d.since_ns &&
		    flows[i].first_ns <= d->g.d.until_ns)
			continue;
		d->out_of_scope++;
		if (i > start)
			rc = mm_detect_feed(d->engine, flows + start, i - start);
		start = i + 1;
	}
	if (rc == 0 && n > start)
		rc = mm_detect_feed(d->engine, flows + start, n - start);
	return rc ? rc : d->alert_status;
}

struct mm_flow_tap cli_detect_tap(struct cli_detect *d)
{
	return (struct mm_flow_tap){ .fn = feed, .ctx = d };
}

int cli_detect_close(struct cli_detect *d, FILE *stats, int exit_code)
{
	const char *command = d->command;
	struct mm_detect_stats st;
	json_t *result;
	int rc;

	if (!d->engine)
		return exit_code;
	rc = mm_detect_flush(d->engine);
	if (rc == 0)
		rc = d->alert_status;
	mm_detect_stats(d->engine, &st);
	if (stats)
		fprintf(stats,
			"  %-34s %" PRIu64 " flows, %" PRIu64 " alerts, %" PRIu64 " outside the authorization's scope, "
			"%" PRIu64 " late\n",
			"detect", st.flows_processed, d->n_alerts, d->out_of_scope, st.flows_late);
	result = json_pack("{s:b,s:I,s:I}", "ok", rc == 0, "flows", (json_int_t)st.flows_processed, "alerts",
			   (json_int_t)d->n_alerts);
	if (cli_guard_scan_end(&d->g, result) != 0 && rc == 0)
		rc = MM_EIO;
	json_decref(result);
	mm_detect_free(d->engine);
	mm_alert_store_close(d->alerts);
	mm_intel_close(d->intel);
	memset(d, 0, sizeof(*d));
	if (rc && exit_code == CLI_EXIT_OK)
		return cli_fail(command, rc);
	return exit_code;
}
