/*
 * The live set in <data>/intel/: sources/NAME.csv holds each imported
 * source in the CSV format, current.mmi the compiled union. Writers
 * (import, remove) serialise on an flock and publish by rename; readers
 * hold an mm_intel whose current snapshot is swapped on reload while
 * snapshots already handed out stay mapped until their last put.
 */
#include "intel/intel_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATH_CAP 4096

struct mm_intel {
	char path[PATH_CAP];
	/*
	 * The lock covers only the pointer copy and the reference increment in
	 * mm_intel_get: that is what makes dropping the old snapshot safe
	 * without hazard pointers or epochs. Lookups never take it.
	 */
	pthread_mutex_t lock;
	struct mm_intel_snap *cur;
	struct stat cur_st; /* of the file behind cur; st_ino 0 for the empty set */
};

/* An empty set, compiled into anonymous memory: readers need no special case. */
static int empty_snap(struct mm_intel_snap **out)
{
	struct mm_intel_set *set = NULL;
	int fd = memfd_create("mamori-intel-empty", MFD_CLOEXEC);
	int rc;

	if (fd < 0)
		return mm_fail(MM_EIO, "intel: memfd: %s", strerror(errno));
	rc = mm_intel_set_new(&set);
	if (!rc)
		rc = intel_write_image(fd, set, 0, "(empty set)");
	if (!rc)
		rc = intel_snap_map(fd, "(empty set)", out);
	mm_intel_set_free(set);
	close(fd);
	return rc;
}

/* Maps path, or the empty set if it does not exist; st describes what was mapped. */
static int map_current(const char *path, struct mm_intel_snap **out, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0) {
		if (errno != ENOENT)
			return mm_fail(MM_EIO, "intel: %s: %s", path, strerror(errno));
		memset(st, 0, sizeof(*st));
		return empty_snap(out);
	}
	if (fstat(fd, st) != 0) {
		rc = mm_fail(MM_EIO, "intel: %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	rc = intel_snap_map(fd, path, out);
	close(fd);
	return rc;
}

int mm_intel_open(const char *dir, struct mm_intel **out)
{
	struct mm_intel *in = calloc(1, sizeof(*in));
	int rc;

	if (!in)
		return mm_fail(MM_ENOMEM, "intel: handle");
	if ((size_t)snprintf(in->path, sizeof(in->path), "%s/%s", dir, MM_INTEL_COMPILED_NAME) >= sizeof(in->path)) {
		free(in);
		return mm_fail(MM_EINVAL, "intel: directory path too long");
	}
	rc = map_current(in->path, &in->cur, &in->cur_st);
	if (rc == MM_EUNSUP) {
		/* Compiled by another version of mamori: it is a cache of sources/, so rebuild it. */
		rc = mm_intel_store_compile(dir, mm_time_now_ns());
		if (!rc)
			rc = map_current(in->path, &in->cur, &in->cur_st);
	}
	if (rc) {
		free(in);
		return rc;
	}
	pthread_mutex_init(&in->lock, NULL);
	*out = in;
	return 0;
}

void mm_intel_close(struct mm_intel *in)
{
	if (!in)
		return;
	mm_intel_snap_put(in->cur);
	pthread_mutex_destroy(&in->lock);
	free(in);
}

struct mm_intel_snap *mm_intel_get(struct mm_intel *in)
{
	struct mm_intel_snap *s;

	pthread_mutex_lock(&in->lock);
	s = mm_intel_snap_ref(in->cur);
	pthread_mutex_unlock(&in->lock);
	return s;
}

int mm_intel_reload(struct mm_intel *in)
{
	struct mm_intel_snap *fresh, *old;
	struct stat st;
	int rc;

	/* Only the reloading thread writes cur_st, so it is read without the lock. */
	if (stat(in->path, &st) != 0) {
		if (errno != ENOENT)
			return mm_fail(MM_EIO, "intel: %s: %s", in->path, strerror(errno));
		memset(&st, 0, sizeof(st));
	}
	if (st.st_ino == in->cur_st.st_ino && st.st_dev == in->cur_st.st_dev && st.st_size == in->cur_st.st_size &&
	    st.st_mtim.tv_sec == in->cur_st.st_mtim.tv_sec && st.st_mtim.tv_nsec == in->cur_st.st_mtim.tv_nsec)
		return 0;
	rc = map_current(in->path, &fresh, &st);
	if (rc)
		return rc;
	pthread_mutex_lock(&in->lock);
	old = in->cur;
	in->cur = fresh;
	in->cur_st = st;
	pthread_mutex_unlock(&in->lock);
	mm_intel_snap_put(old);
	return 1;
}

/* ---- the store: sources/ and the compiled file ---- */

static int dir_path(char *buf, const char *dir, const char *a, const char *b)
{
	if ((size_t)snprintf(buf, PATH_CAP, "%s%s%s%s%s", dir, a ? "/" : "", a ? a : "", b ? "/" : "", b ? b : "") >=
	    PATH_CAP)
		return mm_fail(MM_EINVAL, "intel: path under %s too long", dir);
	return 0;
}

/* Creates path, and its parent (the data directory) if that is missing too. */
static int make_dir(const char *path)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return 0;
	if (errno == ENOENT) {
		char parent[PATH_CAP];
		char *slash;

		snprintf(parent, sizeof(parent), "%s", path);
		slash = strrchr(parent, '/');
		if (slash && slash != parent) {
			*slash = '\0';
			if (mkdir(parent, 0755) != 0 && errno != EEXIST)
				return mm_fail(MM_EIO, "intel: mkdir %s: %s", parent, strerror(errno));
		}
		if (mkdir(path, 0755) == 0 || errno == EEXIST)
			return 0;
	}
	return mm_fail(MM_EIO, "intel: mkdir %s: %s", path, strerror(errno));
}

/* Serialises writers of one intel directory; returns the locked fd. */
static int lock_dir(const char *dir, int *fd_out)
{
	char path[PATH_CAP];
	int rc, fd;

	if ((rc = make_dir(dir)) || (rc = dir_path(path, dir, ".lock", NULL)))
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return mm_fail(MM_EIO, "intel: %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX) != 0) {
		rc = mm_fail(MM_EIO, "intel: lock %s: %s", path, strerror(errno));
		close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

static bool csv_name(const char *name, char *source, size_t len)
{
	size_t n = strlen(name);

	if (n <= 4 || n - 4 >= len || strcmp(name + n - 4, ".csv") != 0 || name[0] == '.')
		return false;
	memcpy(source, name, n - 4);
	source[n - 4] = '\0';
	return true;
}

static int compile_locked(const char *dir, uint64_t now_ns)
{
	struct mm_intel_set *set = NULL;
	char path[PATH_CAP], src_dir[PATH_CAP];
	struct dirent *de;
	DIR *d = NULL;
	int rc;

	if ((rc = dir_path(src_dir, dir, MM_INTEL_SOURCES_DIR, NULL)) || (rc = make_dir(src_dir)) ||
	    (rc = mm_intel_set_new(&set)))
		return rc;
	d = opendir(src_dir);
	if (!d) {
		rc = mm_fail(MM_EIO, "intel: %s: %s", src_dir, strerror(errno));
		goto out;
	}
	while ((de = readdir(d)) != NULL) {
		char source[MM_INTEL_SOURCE_MAX];
		struct mm_intel_defaults def = { source, true, 50, MM_TLP_UNSET, 0 };
		struct mm_intel_load_stats st;

		if (!csv_name(de->d_name, source, sizeof(source)))
			continue;
		if ((rc = dir_path(path, src_dir, de->d_name, NULL)) ||
		    (rc = mm_intel_load_file(set, path, MM_INTEL_FMT_CSV, &def, &st)))
			goto out;
		if (st.n_bad) {
			rc = mm_fail(MM_EFORMAT, "intel: stored source %s has %llu bad records (%s); re-import it",
				     path, (unsigned long long)st.n_bad, st.n_reports ? st.reports[0] : "");
			goto out;
		}
	}
	if (!(rc = dir_path(path, dir, MM_INTEL_COMPILED_NAME, NULL)))
		rc = mm_intel_compile(set, now_ns, path);
out:
	if (d)
		closedir(d);
	mm_intel_set_free(set);
	return rc;
}

int mm_intel_store_compile(const char *dir, uint64_t now_ns)
{
	int fd, rc = lock_dir(dir, &fd);

	if (rc)
		return rc;
	rc = compile_locked(dir, now_ns);
	close(fd);
	return rc;
}

int mm_intel_store_import(const char *dir, const char *path, enum mm_intel_format fmt,
			  const struct mm_intel_defaults *def, uint64_t now_ns,
			  struct mm_intel_load_stats *stats)
{
	struct mm_intel_defaults forced = *def;
	struct mm_intel_set *set = NULL;
	char dst[PATH_CAP], tmp[PATH_CAP];
	int fd = -1, rc;

	forced.force_source = true;
	if (!def->source || !intel_source_name_ok(def->source))
		return mm_fail(MM_EINVAL, "intel: source name '%s' must be 1..63 of [A-Za-z0-9._-]",
			       def->source ? def->source : "");
	if ((rc = mm_intel_set_new(&set)) || (rc = mm_intel_load_file(set, path, fmt, &forced, stats)))
		goto out;
	if ((rc = lock_dir(dir, &fd)) || (rc = dir_path(dst, dir, MM_INTEL_SOURCES_DIR, NULL)) ||
	    (rc = make_dir(dst)) || (rc = dir_path(dst, dir, MM_INTEL_SOURCES_DIR, def->source)))
		goto out;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.csv.tmp", dst) >= sizeof(tmp) ||
	    (size_t)snprintf(dst + strlen(dst), sizeof(dst) - strlen(dst), ".csv") >= sizeof(dst) - strlen(dst)) {
		rc = mm_fail(MM_EINVAL, "intel: path under %s too long", dir);
		goto out;
	}
	if ((rc = mm_intel_set_write_csv(set, tmp)))
		goto out;
	if (rename(tmp, dst) != 0) {
		rc = mm_fail(MM_EIO, "intel: rename %s: %s", dst, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = compile_locked(dir, now_ns);
out:
	if (fd >= 0)
		close(fd);
	mm_intel_set_free(set);
	return rc;
}

int mm_intel_store_remove(const char *dir, const char *source, uint64_t now_ns)
{
	char path[PATH_CAP], name[MM_INTEL_SOURCE_MAX + 8];
	int fd, rc;

	if (!intel_source_name_ok(source))
		return mm_fail(MM_EINVAL, "intel: bad source name '%s'", source);
	snprintf(name, sizeof(name), "%s.csv", source);
	if ((rc = lock_dir(dir, &fd)))
		return rc;
	if ((rc = dir_path(path, dir, MM_INTEL_SOURCES_DIR, name)))
		goto out;
	if (unlink(path) != 0) {
		rc = mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "intel: source '%s': %s", source,
			     errno == ENOENT ? "not imported" : strerror(errno));
		goto out;
	}
	rc = compile_locked(dir, now_ns);
out:
	close(fd);
	return rc;
}
