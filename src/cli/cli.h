/*
 * The mamori command: shared pieces of the subcommands. A subcommand parses
 * its options and calls one library function (pipeline/, query/, …); it
 * never wires stages itself.
 */
#ifndef MAMORI_CLI_H
#define MAMORI_CLI_H

#include "mamori/pipeline.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, documented in `mamori --help` and docs/mamori.1. */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_USAGE = 1,    /* bad command line */
	CLI_EXIT_INPUT = 2,    /* bad input data (malformed file, bad address…) */
	CLI_EXIT_INTERNAL = 3, /* I/O or internal error */
};

struct cli_command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv); /* returns an enum cli_exit */
};

/* Maps a library status to an exit code: input errors 2, others 3. */
int cli_exit_for_status(int status);

/* Prints "mamori NAME: MESSAGE" and the hint to run --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Option values: a decimal count in [min, max], or a duration ("300s",
 * "5m"). 0, or CLI_EXIT_USAGE after printing a usage error that names the
 * option and quotes the text.
 */
int cli_parse_count(const char *command, const char *option, const char *text, uint64_t min,
		    uint64_t max, uint64_t *out);
int cli_parse_duration(const char *command, const char *option, const char *text, uint64_t *out);

/* Prints "mamori NAME: <last library error>" and returns the mapped exit code. */
int cli_fail(const char *command, int status);

/* An output file: standard output, or a path published by rename on success. */
struct cli_output {
	FILE *fp;
	const char *name; /* as given, for messages; NULL: standard output */
	char *path;       /* the regular file to publish; NULL: written in place */
	char *tmp_path;   /* its temporary name while the run lasts */
};

/* Opens path (NULL: standard output); 0 or MM_EIO naming the path. */
int cli_output_open(struct cli_output *out, const char *path);

/* Publishes the file when ok, removes the temporary otherwise; 0 or MM_EIO. */
int cli_output_close(struct cli_output *out, bool ok);

/* True when standard output is a pipe or socket whose reader has gone. */
bool cli_stdout_reader_gone(void);

/*
 * True when standard output is a pipe, socket or file: somewhere that
 * takes text by default. False for a terminal (people are shown the
 * counters; the flows are in the store) and for a device such as /dev/null.
 */
bool cli_stdout_takes_text(void);

/*
 * The first SIGINT/SIGTERM calls stop (which must be async-signal-safe) so
 * the job finishes cleanly; a second one kills. SIGPIPE is ignored, so a
 * closed output pipe shows up as EPIPE from write.
 */
void cli_install_stop_signals(void (*stop)(void));

/*
 * The store options of every command that writes flows (meter, collect):
 * -w/--store DIR, --no-store, --flush-rows N, --flush-interval DURATION.
 * Long-only codes start at 512, above every command's own (256..).
 */
enum cli_store_option {
	CLI_OPT_NO_STORE = 512,
	CLI_OPT_FLUSH_ROWS,
	CLI_OPT_FLUSH_INTERVAL,
};

#define CLI_STORE_LONG_OPTIONS                                                  \
	{ "store", required_argument, NULL, 'w' },                              \
	{ "no-store", no_argument, NULL, CLI_OPT_NO_STORE },                    \
	{ "flush-rows", required_argument, NULL, CLI_OPT_FLUSH_ROWS },          \
	{ "flush-interval", required_argument, NULL, CLI_OPT_FLUSH_INTERVAL }

/* The same options in --help, and what a crash can lose. */
#define CLI_STORE_OPTIONS_HELP                                                                  \
	"    -w, --store DIR\n"                                                                     \
	"        Write flows into the store in DIR (created if absent), beside any\n"                \
	"        text output. Without -w: the default store (see DESCRIPTION).\n"                   \
	"    --no-store\n"                                                                          \
	"        Do not write to the default store.\n"                                              \
	"    --flush-rows N\n"                                                                      \
	"        Publish buffered flows as a segment when N are buffered\n"                         \
	"        (1..67108864). Default: 1000000.\n"                                                \
	"    --flush-interval DURATION\n"                                                           \
	"        Also publish when the oldest buffered flow arrived DURATION ago,\n"                \
	"        even while input is quiet; 0 publishes by size only. Default: 10s.\n"

#define CLI_STORE_CRASH_HELP                                                                     \
	"    Flows are buffered and published in segments (docs/FORMAT.md): each is\n"             \
	"    written under a temporary name, fsynced and listed by an atomic catalog\n"             \
	"    rewrite, so a crash or kill never damages what is published ('mamori\n"               \
	"    store verify' passes) and loses at most the unpublished tail: fewer than\n"           \
	"    --flush-rows flows and, unless --flush-interval is 0, none that arrived\n"            \
	"    longer ago than it (plus about a second while input is quiet). A stop\n"             \
	"    with SIGINT/SIGTERM publishes everything.\n"                                          \
	"    Counters: store-flows-written (taken by the store),\n"                               \
	"    store-flows-published, store-segments-published.\n"

struct cli_store_options {
	const char *dir;             /* -w; NULL: not given */
	bool disabled;               /* --no-store */
	struct mm_store_writer_options writer;
};

/* Store defaults (mm_store_writer_options_default). */
void cli_store_options_init(struct cli_store_options *o);

/*
 * Takes opt if it is one of the store options: 0 (taken), CLI_EXIT_USAGE
 * after a usage error, or -1 when opt is not a store option.
 */
int cli_store_option(const char *command, struct cli_store_options *o, int opt, const char *arg);

/*
 * Where flows go: the -w directory; else, when the command has no other
 * destination asked for (use_default) and --no-store was not given, the
 * default data directory; else no store (dir NULL). o is borrowed.
 */
struct mm_store_target cli_store_target(const struct cli_store_options *o, bool use_default);

/*
 * The options of every command that takes flows in (meter, collect) about
 * what may be done with them: --config FILE, --jurisdiction CC[,CC...],
 * --sensor NAME|ID, --authz ID (collection), --detect and --detect-authz ID
 * (inline detection). Codes from 544, above the store's.
 */
enum cli_policy_option {
	CLI_OPT_CONFIG = 544,
	CLI_OPT_JURISDICTION,
	CLI_OPT_SENSOR,
	CLI_OPT_AUTHZ,
	CLI_OPT_DETECT,
	CLI_OPT_DETECT_AUTHZ,
};

#define CLI_POLICY_LONG_OPTIONS                                                 \
	{ "config", required_argument, NULL, CLI_OPT_CONFIG },                  \
	{ "jurisdiction", required_argument, NULL, CLI_OPT_JURISDICTION },      \
	{ "sensor", required_argument, NULL, CLI_OPT_SENSOR },                  \
	{ "authz", required_argument, NULL, CLI_OPT_AUTHZ },                    \
	{ "detect", no_argument, NULL, CLI_OPT_DETECT },                        \
	{ "detect-authz", required_argument, NULL, CLI_OPT_DETECT_AUTHZ }

#define CLI_POLICY_OPTIONS_HELP                                                                  \
	"    --config FILE\n"                                                                        \
	"        Read mamori.conf from FILE. Default: $MAMORI_CONF, else mamori.conf\n"               \
	"        in the data directory when present, else none (docs/policy.md).\n"                  \
	"    --jurisdiction CC[,CC...]\n"                                                            \
	"        The countries (ISO 3166 alpha-2) whose addresses are domestic; replaces\n"          \
	"        the configured list. Flows are then classed DD, FD, DF or FF: DD flows\n"           \
	"        are dropped and counted, others kept only where a collection rule\n"               \
	"        covers the sensor and time, and domestic addresses are replaced by\n"              \
	"        their Crypto-PAn pseudonyms. Without a jurisdiction nothing is classed\n"          \
	"        or dropped, and the counters say so.\n"                                             \
	"    --sensor NAME|ID\n"                                                                     \
	"        The sensor these flows are observed at: a [sensor NAME] of the\n"                  \
	"        configuration, or a number (0..4294967294) stored in every record.\n"              \
	"        Default: 0.\n"                                                                     \
	"    --authz ID\n"                                                                           \
	"        Collect under this collect-* authorization (docs/oversight.md). Under\n"           \
	"        a panel the run is refused (exit status 4) unless one in force covers\n"          \
	"        the sensor, and only what the authorizations in force cover is kept;\n"          \
	"        without a panel (lab mode) it runs and says so (unless -q). Either\n"             \
	"        way the run is audited.\n"                                                          \
	"    --detect\n"                                                                             \
	"        Also run the detectors on every kept flow as it is written\n"                      \
	"        (docs/detect.md): alerts go to DATA/alerts/ as they are raised, with\n"            \
	"        thresholds from the [detect] section of mamori.conf. Needs an analyze\n"          \
	"        authorization marked automated (lab mode: runs and says so).\n"                   \
	"    --detect-authz ID\n"                                                                    \
	"        --detect under this authorization. Default: any in force that covers it.\n"

struct cli_policy_options {
	const char *config;       /* --config */
	const char *jurisdiction; /* --jurisdiction */
	const char *sensor;       /* --sensor, resolved once the configuration is read */
	const char *authz;        /* --authz */
	bool detect;              /* --detect (or --detect-authz) */
	const char *detect_authz; /* --detect-authz */
};

/* Takes opt if it is a policy option: 0, or -1 when it is not one. */
int cli_policy_option(struct cli_policy_options *o, int opt, const char *arg);

/* The policy a command runs its flows through, and what it was built from. */
struct cli_policy {
	struct mm_config *conf;
	struct mm_policy_config cfg;
	struct mm_policy *policy;
	uint32_t sensor_id;
	struct mm_oversight *oversight; /* under a panel: the collect authorizations the rules borrow */
};

/*
 * Reads the configuration, applies --jurisdiction, resolves --sensor and
 * builds the stage, with data_dir for the geo table and the key. Under an
 * oversight panel the collection rules are the collect-* authorizations in
 * force (collect-transit: FF; collect-agreement and collect-specified: FD
 * and DF), each limited to its sensors, data time range and targets, in
 * place of the configuration's. Prints
 * "mamori COMMAND: <reason>" and returns an exit code on failure.
 */
int cli_policy_open(struct cli_policy *p, const char *command, const struct cli_policy_options *o,
		    const char *data_dir);

/* The target for a job; counters go to counters_dir (the store written), may be NULL. */
struct mm_policy_target cli_policy_target(const struct cli_policy *p, const char *counters_dir);

void cli_policy_close(struct cli_policy *p);

/*
 * The deletion receipt of a retention expiry in the audit log (the removed
 * segments when known, the time range, the flows), with the lab-mode notice
 * when the directory has no panel; 0 or a status (cli_guard.c).
 */
int cli_expire_receipt(const char *data_dir, uint64_t cutoff_ns, const struct mm_store_segment_info *seg,
		       size_t n_seg, const struct mm_store_expired *x);

int cmd_meter(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_collect(int argc, char **argv);
int cmd_query(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_intel(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_alerts(int argc, char **argv);
int cmd_key(int argc, char **argv);
int cmd_panel(int argc, char **argv);
int cmd_authz(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_geo(int argc, char **argv);
int cmd_cryptopan(int argc, char **argv);
int cmd_reidentify(int argc, char **argv);

#endif
