/*
 * Test helpers (see test_util.h).
 */
#include "test_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

char *tu_shared_path(const char *rel)
{
	const char *root = getenv("MAMORI_SHARED_DATA");
	struct stat st;
	char *path;

	if (!root || !*root)
		return NULL;
	if (asprintf(&path, "%s/%s", root, rel) < 0)
		return NULL;
	if (stat(path, &st) != 0) {
		free(path);
		return NULL;
	}
	return path;
}

const char *tu_mamori_bin(void)
{
	const char *bin = getenv("MAMORI_BIN");
	return bin && *bin ? bin : "mamori";
}

char *tu_source_path(const char *rel)
{
	const char *root = getenv("MAMORI_SOURCE_ROOT");
	char *path;

	if (asprintf(&path, "%s/%s", root ? root : ".", rel) < 0)
		return NULL;
	return path;
}

static char *slurp_fd(int fd)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);

	for (;;) {
		if (len + 1 >= cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return buf;
}

int tu_run(const char *const argv[], const char *in_path, char **out, char **err)
{
	char out_tmpl[] = "/tmp/mm-test-out-XXXXXX", err_tmpl[] = "/tmp/mm-test-err-XXXXXX";
	int out_fd = mkstemp(out_tmpl), err_fd = mkstemp(err_tmpl), status = -1;
	posix_spawn_file_actions_t fa;
	pid_t pid;

	unlink(out_tmpl);
	unlink(err_tmpl);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, in_path ? in_path : "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		close(out_fd);
		close(err_fd);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	lseek(out_fd, 0, SEEK_SET);
	lseek(err_fd, 0, SEEK_SET);
	if (out)
		*out = slurp_fd(out_fd);
	if (err)
		*err = slurp_fd(err_fd);
	close(out_fd);
	close(err_fd);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

char *tu_tmpdir(void)
{
	char tmpl[] = "/tmp/mamori-test-XXXXXX";
	char *dir = mkdtemp(tmpl);

	return dir ? strdup(dir) : NULL;
}

char *tu_read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	char *buf;
	struct stat st;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return NULL;
	}
	buf = slurp_fd(fd);
	close(fd);
	if (len)
		*len = (size_t)st.st_size;
	return buf;
}

int tu_write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	if (!fp)
		return -1;
	if (fwrite(data, 1, len, fp) != len) {
		fclose(fp);
		return -1;
	}
	return fclose(fp) == 0 ? 0 : -1;
}

static void wake_udp(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (fd >= 0) {
		(void)sendto(fd, "", 0, 0, (struct sockaddr *)&sin, sizeof(sin));
		close(fd);
	}
}

int tu_stop_nfcapd(pid_t pid, uint16_t port)
{
	int status = 0;
	pid_t got = 0;

	for (int i = 0; i < 1000 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++) {
		if (i % 50 == 0) {
			kill(pid, SIGTERM);
			if (i > 0)
				wake_udp(port);
		}
		usleep(10000);
	}
	if (got == 0) {
		fprintf(stderr, "nfcapd (pid %d) did not exit within 10 s of SIGTERM: killed\n", (int)pid);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
