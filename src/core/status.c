/*
 * Status codes and the per-thread last-error message (see status.h).
 */
#include "mamori/status.h"

#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_error[512];

const char *mm_strerror(int status)
{
	switch (status) {
	case MM_OK: return "success";
	case MM_EINVAL: return "invalid argument";
	case MM_ENOMEM: return "out of memory";
	case MM_EIO: return "input/output error";
	case MM_ENOENT: return "not found";
	case MM_EFORMAT: return "malformed input";
	case MM_ETRUNC: return "truncated input";
	case MM_EUNSUP: return "not supported";
	case MM_ELIMIT: return "limit reached";
	case MM_EEXIST: return "already exists";
	case MM_EPERM: return "not permitted";
	case MM_EAGAIN: return "try again";
	case MM_EINTERNAL: return "internal error";
	}
	return "unknown status";
}

int mm_failv(int status, const char *fmt, va_list ap)
{
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	return status;
}

int mm_fail(int status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	mm_failv(status, fmt, ap);
	va_end(ap);
	return status;
}

const char *mm_last_error(void)
{
	return last_error[0] ? last_error : "no error detail";
}

void mm_clear_error(void)
{
	last_error[0] = '\0';
}

void mm_bug(const char *file, int line, const char *what)
{
	fprintf(stderr, "mamori: BUG at %s:%d: %s\n", file, line, what);
	abort();
}
