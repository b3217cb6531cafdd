/*
 * What every subcommand that acts on data shares with the oversight
 * module: the guard call with its lab-mode notice and refusal message, the
 * exit code of a refusal, and the loading of signing keys named on the
 * command line (docs/oversight.md).
 */
#ifndef MAMORI_CLI_GUARD_H
#define MAMORI_CLI_GUARD_H

#include "mamori/guard.h"
#include "mamori/keys.h"

#include <stddef.h>
#include <stdint.h>

/* Exit code of an act the guard refused (documented in `mamori --help`). */
#define CLI_EXIT_REFUSED 4

/* The line every data-acting command prints to stderr in lab mode. */
#define CLI_LAB_NOTICE "mamori: lab mode: no oversight panel; every act is allowed and audited\n"

/*
 * Passes act through mm_guard for data_dir. Allowed: 0 (the lab notice
 * printed in lab mode unless quiet, the command's -q; d holds the narrowed
 * query). Refused: prints
 * "mamori COMMAND: refused: REASON" and returns CLI_EXIT_REFUSED. A guard
 * that could not decide: prints why and returns its exit code. The caller
 * clears d (mm_guard_decision_clear) in every case.
 */
int cli_guard(const char *command, const char *data_dir, const struct mm_guard_act *act,
	      struct mm_guard_decision *d, bool quiet);

/*
 * A collection run (meter, collect) under the guard: begin decides for the
 * resolved sensor before any flow is taken (0 or an exit code); finish
 * audits how the run ended and returns exit_code (or a failure to audit).
 */
struct cli_guarded {
	const char *dir;
	struct mm_guard_act act;
	struct mm_guard_decision d;
};

int cli_guard_collect(struct cli_guarded *g, const char *command, const char *authz, const char *data_dir,
		      uint32_t sensor, bool quiet);
int cli_guard_finish(struct cli_guarded *g, const char *command, int exit_code);

/*
 * An act that reads stored flows wholesale (detect, alerts, inline
 * detection): "every flow" is put to the guard, which narrows it to the
 * authorization's scope. begin: 0 (the scope is g->d.query, g->d.since_ns
 * and g->d.until_ns) or an exit code after a message, with nothing left to
 * release. end: audits result (borrowed; what the act did), releases, and
 * returns 0 or the audit log's status.
 */
struct cli_guarded_scan {
	const char *dir;
	struct mm_query *all;
	struct mm_guard_act act;
	struct mm_guard_decision d;
};

int cli_guard_scan_begin(struct cli_guarded_scan *g, const char *command, const char *data_dir, enum mm_act act,
			 const char *authz, uint64_t since_ns, uint64_t until_ns, bool quiet);
int cli_guard_scan_end(struct cli_guarded_scan *g, const json_t *result);

/* Prints the lab notice when data_dir has no panel (and returns true); for acts the guard does not decide. */
bool cli_lab_notice_for(const char *data_dir);

/* Keys from --sign/--key files, in order; cli_signers_free releases them. */
struct cli_signers {
	struct mm_signer *s[64];
	size_t n;
};

/* Loads path (0600 enforced) into the list: 0, or an exit code after a message. */
int cli_signers_add(const char *command, struct cli_signers *list, const char *path);
void cli_signers_free(struct cli_signers *list);

#endif
