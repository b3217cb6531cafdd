/*
 * Status codes shared by every module. A function that can fail returns int:
 * 0 on success, a negative MM_E* code on failure. The human-readable detail of
 * the most recent failure on this thread is kept by mm_fail() and read back
 * with mm_last_error(), so callers deep in a pipeline need not thread error
 * buffers through every call.
 */
#ifndef MAMORI_STATUS_H
#define MAMORI_STATUS_H

#include <stdarg.h>

enum mm_status {
	MM_OK = 0,
	MM_EINVAL = -1,    /* bad argument or malformed input */
	MM_ENOMEM = -2,    /* allocation failed or a memory cap was reached */
	MM_EIO = -3,       /* read, write or system call failed */
	MM_ENOENT = -4,    /* no such file, key or object */
	MM_EFORMAT = -5,   /* input is not in the expected format */
	MM_ETRUNC = -6,    /* input ends before a structure it announces */
	MM_EUNSUP = -7,    /* well-formed but not supported */
	MM_ELIMIT = -8,    /* a configured cap was hit */
	MM_EEXIST = -9,    /* object exists already */
	MM_EPERM = -10,    /* refused (permissions, policy) */
	MM_EAGAIN = -11,   /* nothing available now; try again */
	MM_EINTERNAL = -12 /* a bug: an impossible state was reached */
};

/* Short fixed description of a status code ("malformed input"). */
const char *mm_strerror(int status);

/*
 * Records a message for the current thread and returns status, so a failure
 * site reads: return mm_fail(MM_EFORMAT, "pcap: %s: bad magic %08x", path, m);
 */
int mm_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int mm_failv(int status, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* The message of the last mm_fail() on this thread, or mm_strerror() of none. */
const char *mm_last_error(void);

/* Clears the thread's last message. */
void mm_clear_error(void);

/* Always-on check for impossible states: prints where and aborts. */
#define MM_BUG(cond)                                                            \
	do {                                                                    \
		if (__builtin_expect(!!(cond), 0))                              \
			mm_bug(__FILE__, __LINE__, #cond);                      \
	} while (0)

#ifdef NDEBUG
#define MM_ASSERT(cond) ((void)0)
#else
#define MM_ASSERT(cond) MM_BUG(!(cond))
#endif

_Noreturn void mm_bug(const char *file, int line, const char *what);

#endif
