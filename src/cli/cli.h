/*
 * The mamori command: shared pieces of the subcommands. A subcommand parses
 * its options and calls one library function (pipeline/, query/, …); it
 * never wires stages itself.
 */
#ifndef MAMORI_CLI_H
#define MAMORI_CLI_H

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
 * The first SIGINT/SIGTERM calls stop (which must be async-signal-safe) so
 * the job finishes cleanly; a second one kills. SIGPIPE is ignored, so a
 * closed output pipe shows up as EPIPE from write.
 */
void cli_install_stop_signals(void (*stop)(void));

int cmd_meter(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_collect(int argc, char **argv);

#endif
