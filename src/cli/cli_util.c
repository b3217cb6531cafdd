/*
 * Error reporting and exit codes shared by the subcommands (see cli.h).
 */
#include "cli/cli.h"

#include "mamori/status.h"

#include <stdarg.h>

int cli_exit_for_status(int status)
{
	switch (status) {
	case MM_OK: return CLI_EXIT_OK;
	case MM_EINVAL:
	case MM_EFORMAT:
	case MM_ETRUNC:
	case MM_EUNSUP:
	case MM_ENOENT: return CLI_EXIT_INPUT;
	}
	return CLI_EXIT_INTERNAL;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "mamori %s: ", command);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'mamori %s --help'.\n", command);
	return CLI_EXIT_USAGE;
}

int cli_fail(const char *command, int status)
{
	fprintf(stderr, "mamori %s: %s\n", command, mm_last_error());
	return cli_exit_for_status(status);
}
