/*
 * Policy counters: summed over threads, printed with a job's counters, and
 * kept as running totals in <data>/policy/counters so `mamori store stats`
 * can say, for the whole life of a data directory, how many flows of each
 * class each sensor saw, kept and dropped.
 *
 * The totals file is text, one line per sensor and class:
 *   mamori-policy-counters 1
 *   <sensor-id> <class> <seen> <kept> <dropped>
 *   unclassed <n>
 *   pseudonymised <n>
 * rewritten whole (temporary name, fsync, rename) under an flock on a
 * sibling lock file, so concurrent jobs add up and a crash leaves the old
 * totals or the new ones.
 */
#include "policy/policy_int.h"

#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define COUNTERS_MAGIC "mamori-policy-counters 1"

struct mm_policy_sensor_counts *policy_counts_slot(struct mm_policy_counts *c, uint32_t sensor)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->s[i].sensor_id == sensor)
			return &c->s[i];
	if (c->n == MM_POLICY_COUNT_SLOTS - 1 && sensor != UINT32_MAX)
		return policy_counts_slot(c, UINT32_MAX);
	memset(&c->s[c->n], 0, sizeof(c->s[0]));
	c->s[c->n].sensor_id = sensor;
	return &c->s[c->n++];
}

void mm_policy_counts_add(struct mm_policy_counts *sum, const struct mm_policy_counts *c)
{
	sum->classed |= c->classed;
	sum->unclassed += c->unclassed;
	sum->pseudonymised += c->pseudonymised;
	for (size_t i = 0; i < c->n; i++) {
		struct mm_policy_sensor_counts *d = policy_counts_slot(sum, c->s[i].sensor_id);

		for (unsigned k = 0; k < MM_CLASS__COUNT; k++) {
			d->seen[k] += c->s[i].seen[k];
			d->kept[k] += c->s[i].kept[k];
			d->dropped[k] += c->s[i].dropped[k];
		}
	}
}

static const char *sensor_label(const struct mm_policy_config *cfg, uint32_t id, char buf[16])
{
	if (id == UINT32_MAX)
		return "other";
	for (size_t i = 0; cfg && i < cfg->n_sensors; i++)
		if (cfg->sensors[i].id == id)
			return cfg->sensors[i].name;
	snprintf(buf, 16, "%" PRIu32, id);
	return buf;
}

void mm_policy_counts_print(FILE *fp, const struct mm_policy_counts *c, const struct mm_policy_config *cfg)
{
	if (!c->classed) {
		fprintf(fp, "  policy: no jurisdiction configured: %" PRIu64
			    " flows not classed, none dropped, no address pseudonymised\n",
			c->unclassed);
		return;
	}
	for (size_t i = 0; i < c->n; i++) {
		char buf[16];
		const char *name = sensor_label(cfg, c->s[i].sensor_id, buf);

		for (unsigned k = 0; k < MM_CLASS__COUNT; k++) {
			char key[128];

			if (!c->s[i].seen[k])
				continue;
			snprintf(key, sizeof(key), "policy.%s.%s", name, mm_traffic_class_name(k));
			fprintf(fp, "  %-34s seen %" PRIu64 ", kept %" PRIu64 ", dropped %" PRIu64 "%s\n", key,
				c->s[i].seen[k], c->s[i].kept[k], c->s[i].dropped[k],
				k == MM_CLASS_DD ? " (domestic to domestic: never kept)" :
				c->s[i].dropped[k] ? " (no collection rule covered them)" : "");
		}
	}
	fprintf(fp, "  %-34s %" PRIu64 "\n", "policy.addresses-pseudonymised", c->pseudonymised);
}

static int counters_paths(const char *data_dir, char *dir, char *file, char *lock, size_t size)
{
	if ((size_t)snprintf(dir, size, "%s/policy", data_dir) >= size ||
	    (size_t)snprintf(file, size, "%s/policy/counters", data_dir) >= size ||
	    (size_t)snprintf(lock, size, "%s/policy/counters.lock", data_dir) >= size)
		return mm_fail(MM_EINVAL, "policy: data directory path too long");
	return 0;
}

static int read_counters(const char *path, struct mm_policy_counts *out)
{
	FILE *fp = fopen(path, "r");
	char line[256];
	unsigned lineno = 0;

	memset(out, 0, sizeof(*out));
	if (!fp)
		return errno == ENOENT ? 0 : mm_fail(MM_EIO, "policy: %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), fp)) {
		uint64_t seen, kept, dropped, n;
		uint32_t sensor;
		char cls[4];

		lineno++;
		if (lineno == 1) {
			if (strncmp(line, COUNTERS_MAGIC, strlen(COUNTERS_MAGIC)) != 0)
				goto bad;
			continue;
		}
		if (sscanf(line, "unclassed %" SCNu64, &n) == 1) {
			out->unclassed += n;
		} else if (sscanf(line, "pseudonymised %" SCNu64, &n) == 1) {
			out->pseudonymised += n;
		} else if (sscanf(line, "%" SCNu32 " %2s %" SCNu64 " %" SCNu64 " %" SCNu64, &sensor, cls, &seen,
				  &kept, &dropped) == 5) {
			struct mm_policy_counts one = { .classed = true, .n = 1 };
			unsigned k;

			for (k = 0; k < MM_CLASS__COUNT; k++)
				if (strcmp(cls, mm_traffic_class_name(k)) == 0)
					break;
			if (k == MM_CLASS__COUNT)
				goto bad;
			one.s[0].sensor_id = sensor;
			one.s[0].seen[k] = seen;
			one.s[0].kept[k] = kept;
			one.s[0].dropped[k] = dropped;
			mm_policy_counts_add(out, &one);
		} else {
			goto bad;
		}
	}
	fclose(fp);
	return 0;
bad:
	fclose(fp);
	return mm_fail(MM_EFORMAT, "policy: %s:%u: not a counters line", path, lineno);
}

static int write_counters(const char *path, const struct mm_policy_counts *c)
{
	char tmp[4200];
	FILE *fp;
	int rc = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "w");
	if (!fp)
		return mm_fail(MM_EIO, "policy: %s: %s", tmp, strerror(errno));
	fprintf(fp, "%s\n", COUNTERS_MAGIC);
	for (size_t i = 0; i < c->n; i++)
		for (unsigned k = 0; k < MM_CLASS__COUNT; k++)
			if (c->s[i].seen[k])
				fprintf(fp, "%" PRIu32 " %s %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", c->s[i].sensor_id,
					mm_traffic_class_name(k), c->s[i].seen[k], c->s[i].kept[k],
					c->s[i].dropped[k]);
	fprintf(fp, "unclassed %" PRIu64 "\npseudonymised %" PRIu64 "\n", c->unclassed, c->pseudonymised);
	if (fflush(fp) != 0 || fsync(fileno(fp)) != 0)
		rc = mm_fail(MM_EIO, "policy: %s: %s", tmp, strerror(errno));
	if (fclose(fp) != 0 && rc == 0)
		rc = mm_fail(MM_EIO, "policy: %s: %s", tmp, strerror(errno));
	if (rc == 0 && rename(tmp, path) != 0)
		rc = mm_fail(MM_EIO, "policy: %s: %s", path, strerror(errno));
	if (rc)
		unlink(tmp);
	return rc;
}

int mm_policy_counts_persist(const char *data_dir, const struct mm_policy_counts *c)
{
	char dir[4096], file[4096], lock[4096];
	struct mm_policy_counts total;
	int fd, rc;

	if ((rc = counters_paths(data_dir, dir, file, lock, sizeof(dir))) != 0)
		return rc;
	if ((mkdir(data_dir, 0700) != 0 && errno != EEXIST) || (mkdir(dir, 0700) != 0 && errno != EEXIST))
		return mm_fail(MM_EIO, "policy: %s: %s", dir, strerror(errno));
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return mm_fail(MM_EIO, "policy: %s: %s", lock, strerror(errno));
	if (flock(fd, LOCK_EX) != 0) {
		rc = mm_fail(MM_EIO, "policy: %s: lock: %s", lock, strerror(errno));
		goto out;
	}
	if ((rc = read_counters(file, &total)) != 0)
		goto out;
	mm_policy_counts_add(&total, c);
	rc = write_counters(file, &total);
out:
	close(fd); /* releases the lock */
	return rc;
}

int mm_policy_counts_load(const char *data_dir, struct mm_policy_counts *out)
{
	char dir[4096], file[4096], lock[4096];
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = counters_paths(data_dir, dir, file, lock, sizeof(dir))) != 0)
		return rc;
	return read_counters(file, out);
}
