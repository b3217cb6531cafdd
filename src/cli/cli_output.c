/*
 * Output files and signals shared by the subcommands that stream records:
 * a file is written under a temporary name and renamed into place only when
 * the run succeeds (devices, FIFOs and sockets are written in place), and
 * the first SIGINT/SIGTERM asks the job to finish cleanly.
 */
#include "cli/cli.h"

#include "mamori/status.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int output_fail(const char *name, const char *what, int err)
{
	return mm_fail(MM_EIO, "output: %s: %s: %s", name, what, strerror(err));
}

/*
 * The file to replace: the path itself, or for a symbolic link the file it
 * names, so the link survives. NULL (errno set) when out of memory.
 */
static char *publish_path(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
		char *real = realpath(path, NULL);

		if (real)
			return real;
	}
	return strdup(path);
}

int cli_output_open(struct cli_output *out, const char *path)
{
	struct stat st;
	mode_t mask;
	int fd = -1, err;

	*out = (struct cli_output){ .fp = stdout, .name = path };
	if (!path)
		return 0;
	/* Renaming over a device, FIFO or socket (/dev/null, a named pipe)
	 * would replace it with a plain file: those are written in place. */
	if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
		out->fp = fopen(path, "w");
		return out->fp ? 0 : output_fail(path, "cannot open", errno);
	}
	out->path = publish_path(path);
	if (!out->path || asprintf(&out->tmp_path, "%s.tmp-XXXXXX", out->path) < 0) {
		out->tmp_path = NULL;
		err = ENOMEM;
		goto fail;
	}
	fd = mkstemp(out->tmp_path);
	if (fd < 0) {
		err = errno;
		goto fail;
	}
	/* mkstemp makes the file private; give it the mode a plain create would. */
	mask = umask(0);
	umask(mask);
	if (fchmod(fd, 0666 & ~mask) == 0 && (out->fp = fdopen(fd, "w")) != NULL)
		return 0;
	err = errno;
	close(fd);
	unlink(out->tmp_path);
fail:
	free(out->path);
	free(out->tmp_path);
	*out = (struct cli_output){ .fp = stdout };
	return output_fail(path, "cannot create", err);
}

int cli_output_close(struct cli_output *out, bool ok)
{
	int rc = 0;

	if (!out->name)
		return 0;
	if (ok && fflush(out->fp) != 0)
		rc = output_fail(out->name, "write failed", errno);
	if (ok && rc == 0 && out->path && fsync(fileno(out->fp)) != 0)
		rc = output_fail(out->name, "fsync failed", errno);
	if (fclose(out->fp) != 0 && ok && rc == 0)
		rc = output_fail(out->name, "write failed", errno);
	if (out->path && ok && rc == 0 && rename(out->tmp_path, out->path) != 0)
		rc = output_fail(out->name, "cannot rename into place", errno);
	if (out->path && (!ok || rc != 0))
		unlink(out->tmp_path);
	free(out->path);
	free(out->tmp_path);
	return rc;
}

bool cli_stdout_reader_gone(void)
{
	struct pollfd p = { .fd = STDOUT_FILENO, .events = POLLOUT };

	return poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP));
}

bool cli_stdout_takes_text(void)
{
	struct stat st;

	return fstat(STDOUT_FILENO, &st) == 0 && !S_ISCHR(st.st_mode);
}

static void (*stop_fn)(void);

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_fn();
}

void cli_install_stop_signals(void (*stop)(void))
{
	struct sigaction sa;

	stop_fn = stop;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A closed output pipe then shows up as EPIPE from write, not a kill. */
	signal(SIGPIPE, SIG_IGN);
}
