/*
 * Files under <data>/oversight/: paths, bounded reads, and writes that a
 * crash cannot leave half done (temporary name, fsync, rename, fsync of
 * the directory). Signatures and decisions are only as durable as these.
 */
#include "oversight_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ov_path(char *buf, size_t size, const char *data_dir, const char *rel)
{
	int n = snprintf(buf, size, "%s/oversight%s%s", data_dir, rel[0] ? "/" : "", rel);

	if (n < 0 || (size_t)n >= size)
		return mm_fail(MM_ELIMIT, "oversight: path %s/oversight/%s is too long", data_dir, rel);
	return 0;
}

static int mkdir_if_absent(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return mm_fail(MM_EIO, "oversight: mkdir %s: %s", path, strerror(errno));
	return 0;
}

int ov_mkdirs(const char *data_dir)
{
	char path[4096];
	int rc = mkdir_if_absent(data_dir);

	if (rc == 0)
		rc = ov_path(path, sizeof(path), data_dir, "");
	if (rc == 0)
		rc = mkdir_if_absent(path);
	if (rc == 0)
		rc = ov_path(path, sizeof(path), data_dir, "authz");
	if (rc == 0)
		rc = mkdir_if_absent(path);
	return rc;
}

int ov_read_file(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	size_t got = 0;

	*out = NULL;
	if (fd < 0)
		return errno == ENOENT ? mm_fail(MM_ENOENT, "%s: no such file", path)
				       : mm_fail(MM_EIO, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > OV_FILE_MAX) {
		close(fd);
		return mm_fail(MM_EFORMAT, "%s: not a regular file of at most %u bytes", path, OV_FILE_MAX);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return mm_fail(MM_ENOMEM, "%s: out of memory", path);
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	if (len)
		*len = got;
	return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static void fsync_parent(const char *path)
{
	char copy[4096];
	int fd;

	snprintf(copy, sizeof(copy), "%s", path);
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int ov_write_file(const char *path, const void *data, size_t len, bool excl)
{
	char tmp[4200];
	int fd, rc = 0;

	if (excl && access(path, F_OK) == 0)
		return mm_fail(MM_EEXIST, "%s: exists already", path);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return mm_fail(MM_EIO, "%s: %s", tmp, strerror(errno));
	if (write_all(fd, data, len) != 0 || fsync(fd) != 0)
		rc = mm_fail(MM_EIO, "%s: %s", tmp, strerror(errno));
	close(fd);
	/* link() refuses an existing name, so two writers cannot both win excl. */
	if (rc == 0 && excl && link(tmp, path) != 0)
		rc = errno == EEXIST ? mm_fail(MM_EEXIST, "%s: exists already", path)
				     : mm_fail(MM_EIO, "%s: %s", path, strerror(errno));
	if (rc == 0 && !excl && rename(tmp, path) != 0)
		rc = mm_fail(MM_EIO, "%s: %s", path, strerror(errno));
	unlink(tmp);
	if (rc == 0)
		fsync_parent(path);
	return rc;
}

int ov_append_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int rc = 0;

	if (fd < 0)
		return mm_fail(MM_EIO, "%s: %s", path, strerror(errno));
	if (write_all(fd, data, len) != 0 || fsync(fd) != 0)
		rc = mm_fail(MM_EIO, "%s: %s", path, strerror(errno));
	close(fd);
	if (rc == 0)
		fsync_parent(path);
	return rc;
}

void ov_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char h[crypto_hash_sha256_BYTES];

	crypto_hash_sha256(h, data, len);
	sodium_bin2hex(out, 65, h, sizeof(h));
}

int ov_time_parse(const char *text, uint64_t *out)
{
	/* Documents hold absolute times only: "now" or "-1h" would change meaning over time. */
	if (text[0] < '0' || text[0] > '9' || mm_time_parse(text, 0, out) != 0)
		return mm_fail(MM_EFORMAT, "'%s' is not an RFC 3339 time", text);
	return 0;
}
