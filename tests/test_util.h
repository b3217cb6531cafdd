/*
 * Helpers shared by the test suites: where the shared third-party data and
 * the mamori binary are, running a command and capturing its output, and
 * scratch directories.
 */
#ifndef MAMORI_TEST_UTIL_H
#define MAMORI_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Path of ../shared/data/<rel> (malloc'd) if it exists, else NULL. */
char *tu_shared_path(const char *rel);

/* Skips the current test, naming the missing shared file, when it is absent. */
#define TU_REQUIRE_SHARED(var, rel)                                                           \
	char *var = tu_shared_path(rel);                                                      \
	if (!var)                                                                             \
		cr_skip_test("needs ../shared/data/%s (absent in this checkout; CI has it)", rel)

/* Path of the built mamori binary. */
const char *tu_mamori_bin(void);

/* Path inside the source tree (malloc'd). */
char *tu_source_path(const char *rel);

/*
 * Runs argv (argv[0] is searched in PATH) with stdin from in_path (NULL:
 * /dev/null) and returns its exit status (128+signal if killed). *out and
 * *err, when given, receive its output (malloc'd, NUL-terminated).
 */
int tu_run(const char *const argv[], const char *in_path, char **out, char **err);

/* Creates a fresh scratch directory under /tmp (malloc'd path). */
char *tu_tmpdir(void);

/* Reads a whole file (malloc'd, NUL-terminated); NULL if unreadable. */
char *tu_read_file(const char *path, size_t *len);

/* Writes len bytes to path; 0 or -1. */
int tu_write_file(const char *path, const void *data, size_t len);

/*
 * Stops nfcapd (pid, listening on 127.0.0.1:port) and returns its exit
 * status (128+signal if killed). SIGTERM is repeated every half second
 * with an empty datagram to its port: nfcapd runs more than one thread
 * once it has data, and a SIGTERM taken by one other than the thread
 * blocked in recvfrom sets its stop flag without waking it (reproduced
 * with tgkill; the datagram then ends it cleanly, its file closed). After
 * 10 s it is killed, with a message on stderr.
 */
int tu_stop_nfcapd(pid_t pid, uint16_t port);

#endif
