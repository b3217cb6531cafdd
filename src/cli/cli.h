/*
 * The mamori command: shared pieces of the subcommands. A subcommand parses
 * its options and calls one library function (pipeline/, query/, …); it
 * never wires stages itself.
 */
#ifndef MAMORI_CLI_H
#define MAMORI_CLI_H

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

/* Prints "mamori NAME: <last library error>" and returns the mapped exit code. */
int cli_fail(const char *command, int status);

int cmd_meter(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_collect(int argc, char **argv);

#endif
