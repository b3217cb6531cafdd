/*
 * The catalog: the list of published segments (FORMAT.md §5). It is only
 * ever replaced whole — written under a temporary name, fsynced, renamed
 * over the old one, directory fsynced — so a reader sees the old list or
 * the new one, never a mix. Also the store's lock and directory fsync.
 */
#include "store/store_int.h"

#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int catalog_append(struct catalog *cat, const struct cat_entry *e)
{
	if (cat->n == cat->cap) {
		size_t cap = cat->cap ? cat->cap * 2 : 64;
		struct cat_entry *p;

		if (cat->n >= MM_STORE_MAX_SEGMENTS)
			return mm_fail(MM_ELIMIT, "store: catalog is full (%u segments)",
				       MM_STORE_MAX_SEGMENTS);
		p = realloc(cat->entries, cap * sizeof(*p));
		if (!p)
			return mm_fail(MM_ENOMEM, "store: catalog of %zu segments", cap);
		cat->entries = p;
		cat->cap = cap;
	}
	cat->entries[cat->n++] = *e;
	return 0;
}

void catalog_release(struct catalog *cat)
{
	free(cat->entries);
	memset(cat, 0, sizeof(*cat));
}

int store_write_all(int fd, const void *data, size_t len, const char *path)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return mm_fail(MM_EIO, "store: %s: write: %s", path,
				       w < 0 ? strerror(errno) : "no progress");
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static int read_whole(const char *path, uint8_t **data, size_t *len)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int fd, rc = 0;

	*data = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "store: %s: %s", path,
			       strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = mm_fail(MM_EIO, "store: %s: %s", path, strerror(errno));
		goto out;
	}
	if ((uint64_t)st.st_size > CAT_HEADER_LEN + (uint64_t)MM_STORE_MAX_SEGMENTS * CAT_ENTRY_LEN + 4) {
		rc = mm_fail(MM_ELIMIT, "store: %s: %lld bytes is more than a catalog may hold", path,
			     (long long)st.st_size);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = mm_fail(MM_ENOMEM, "store: %s", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = mm_fail(MM_EIO, "store: %s: read: %s", path,
				     r < 0 ? strerror(errno) : "file shrank");
			goto out;
		}
		got += (size_t)r;
	}
	*data = buf;
	*len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

static int catalog_parse(struct catalog *cat, const uint8_t *p, size_t len)
{
	uint32_t version, n;
	int rc;

	if (len < CAT_HEADER_LEN + 4 || memcmp(p, CAT_MAGIC, 8) != 0)
		return mm_fail(MM_EFORMAT, "store: catalog: not a mamori catalog (bad magic or %zu bytes)",
			       len);
	version = get_u32(p + 8);
	if (version != CAT_VERSION)
		return mm_fail(MM_EUNSUP,
			       "store: catalog: format version %" PRIu32
			       " not supported (this build reads version %u)",
			       version, CAT_VERSION);
	n = get_u32(p + 12);
	if (n > MM_STORE_MAX_SEGMENTS || len != CAT_HEADER_LEN + (size_t)n * CAT_ENTRY_LEN + 4)
		return mm_fail(MM_EFORMAT, "store: catalog: %zu bytes do not hold %" PRIu32 " segments",
			       len, n);
	if (store_crc32c(0, p, len - 4) != get_u32(p + len - 4))
		return mm_fail(MM_EFORMAT, "store: catalog: checksum mismatch");
	cat->next_id = get_u64(p + 16);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *q = p + CAT_HEADER_LEN + (size_t)i * CAT_ENTRY_LEN;
		struct cat_entry e = {
			.id = get_u64(q), .n_rows = get_u64(q + 8), .min_first_ns = get_u64(q + 16),
			.max_last_ns = get_u64(q + 24), .file_bytes = get_u64(q + 32),
			.header_crc = get_u32(q + 40),
		};

		if (e.id >= cat->next_id)
			return mm_fail(MM_EFORMAT, "store: catalog: segment %" PRIu64
				       " is not below the next id %" PRIu64, e.id, cat->next_id);
		rc = catalog_append(cat, &e);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int catalog_load(struct catalog *cat, const char *dir)
{
	char path[STORE_PATH_MAX];
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	memset(cat, 0, sizeof(*cat));
	snprintf(path, sizeof(path), "%s/%s", dir, CAT_NAME);
	rc = read_whole(path, &data, &len);
	if (rc == 0)
		rc = catalog_parse(cat, data, len);
	free(data);
	if (rc < 0)
		catalog_release(cat);
	return rc;
}

int store_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return mm_fail(MM_EIO, "store: %s: %s", dir, strerror(errno));
	if (fsync(fd) < 0)
		rc = mm_fail(MM_EIO, "store: %s: fsync: %s", dir, strerror(errno));
	close(fd);
	return rc;
}

int catalog_save(const struct catalog *cat, const char *dir, int do_fsync)
{
	size_t len = CAT_HEADER_LEN + cat->n * CAT_ENTRY_LEN + 4;
	char path[STORE_PATH_MAX], tmp[STORE_PATH_MAX];
	uint8_t *buf = calloc(1, len);
	int fd = -1, rc = 0;

	if (!buf)
		return mm_fail(MM_ENOMEM, "store: catalog of %zu segments", cat->n);
	memcpy(buf, CAT_MAGIC, 8);
	put_u32(buf + 8, CAT_VERSION);
	put_u32(buf + 12, (uint32_t)cat->n);
	put_u64(buf + 16, cat->next_id);
	for (size_t i = 0; i < cat->n; i++) {
		uint8_t *q = buf + CAT_HEADER_LEN + i * CAT_ENTRY_LEN;
		const struct cat_entry *e = &cat->entries[i];

		put_u64(q, e->id);
		put_u64(q + 8, e->n_rows);
		put_u64(q + 16, e->min_first_ns);
		put_u64(q + 24, e->max_last_ns);
		put_u64(q + 32, e->file_bytes);
		put_u32(q + 40, e->header_crc);
	}
	put_u32(buf + len - 4, store_crc32c(0, buf, len - 4));
	snprintf(path, sizeof(path), "%s/%s", dir, CAT_NAME);
	snprintf(tmp, sizeof(tmp), "%s/%s%s", dir, CAT_NAME, TMP_SUFFIX);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = mm_fail(MM_EIO, "store: %s: %s", tmp, strerror(errno));
		goto out;
	}
	rc = store_write_all(fd, buf, len, tmp);
	if (rc < 0)
		goto out;
	if (do_fsync && fsync(fd) < 0) {
		rc = mm_fail(MM_EIO, "store: %s: fsync: %s", tmp, strerror(errno));
		goto out;
	}
	if (rename(tmp, path) < 0) {
		rc = mm_fail(MM_EIO, "store: rename %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (do_fsync)
		rc = store_fsync_dir(dir);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}

int store_lock(const char *dir, int *fd)
{
	char path[STORE_PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, LOCK_NAME);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (*fd < 0)
		return mm_fail(MM_EIO, "store: %s: %s", path, strerror(errno));
	if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
		int err = errno;

		close(*fd);
		*fd = -1;
		if (err == EWOULDBLOCK)
			return mm_fail(MM_EAGAIN, "store: %s: another writer holds the store", dir);
		return mm_fail(MM_EIO, "store: %s: lock: %s", path, strerror(err));
	}
	return 0;
}
