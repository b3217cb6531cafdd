/*
 * stderr logger (see log.h). Messages are formatted into one buffer and
 * written with a single write so lines from threads do not interleave.
 */
#include "mamori/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static enum mm_log_level current_level = MM_LOG_INFO;

void mm_log_set_level(enum mm_log_level level)
{
	current_level = level;
}

enum mm_log_level mm_log_get_level(void)
{
	return current_level;
}

void mm_log(enum mm_log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	char line[1024];
	va_list ap;
	int n;

	if (level > current_level)
		return;
	n = snprintf(line, sizeof(line), "mamori: %s: ", names[level]);
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}
