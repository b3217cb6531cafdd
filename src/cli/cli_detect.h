/*
 * Inline detection for the commands that take flows in (meter, collect):
 * --detect feeds every kept flow to the detectors as it is written, under
 * an analyze authorization marked automated (lab mode: allowed, flagged),
 * and appends alerts to <data>/alerts/ as they are raised.
 */
#ifndef MAMORI_CLI_DETECT_H
#define MAMORI_CLI_DETECT_H

#include "cli/cli.h"
#include "cli/cli_guard.h"

#include "mamori/detect.h"
#include "mamori/intel.h"

struct cli_detect {
	const char *command;
	struct mm_detect *engine;
	struct mm_intel *intel;
	struct mm_alert_store *alerts;
	struct cli_guarded_scan g;
	uint64_t n_alerts, out_of_scope;
	int alert_status; /* first failure to store an alert */
};

/*
 * Opens the detectors for data_dir with conf's [detect] section (conf may
 * be NULL), after the guard allowed automated analysis. 0, or an exit code
 * after a message (a refusal: CLI_EXIT_REFUSED).
 */
int cli_detect_open(struct cli_detect *d, const char *command, const char *data_dir, const struct mm_config *conf,
		    const char *authz, bool quiet);

/* The job's tap that feeds the engine. */
struct mm_flow_tap cli_detect_tap(struct cli_detect *d);

/*
 * Flushes the engine (its last alerts), prints its counters to stats
 * (may be NULL), audits what the run did and frees everything. Returns
 * exit_code, or the exit code of a failure here when exit_code was 0.
 */
int cli_detect_close(struct cli_detect *d, FILE *stats, int exit_code);

#endif
