/*
 * Error reporting and exit codes shared by the subcommands (see cli.h).
 */
#include "cli/cli.h"

#include "mamori/status.h"

#include "mamori/timefmt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>

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

int cli_parse_count(const char *command, const char *option, const char *text, uint64_t min,
		    uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno || v < min || v > max)
		return cli_usage_error(command, "%s: '%s' is not a number from %llu to %llu", option, text,
				       (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

int cli_parse_duration(const char *command, const char *option, const char *text, uint64_t *out)
{
	if (mm_duration_parse(text, out) != 0)
		return cli_usage_error(command, "%s: '%s' is not a duration (e.g. 300s, 5m, 1.5h)", option,
				       text);
	return 0;
}

int cli_fail(const char *command, int status)
{
	fprintf(stderr, "mamori %s: %s\n", command, mm_last_error());
	return cli_exit_for_status(status);
}
