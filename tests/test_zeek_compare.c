/*
 * Acceptance test of the whole meter against Zeek: every trace under
 * shared/data/zeek/ is metered with `--compat zeek --format zeek`, and
 * every connection of Zeek's own conn.log baseline must be found by its
 * 5-tuple with the same packet and IP byte counts each way and the same
 * tunnel parents. Differences are listed; docs/zeek-compat.md explains
 * each one that remains.
 */
#include "test_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 64
#define MAX_PARENTS 8

struct conn {
	const char *uid, *orig_h, *orig_p, *resp_h, *resp_p, *proto, *parents;
	unsigned long long orig_pkts, orig_ip_bytes, resp_pkts, resp_ip_bytes;
	bool matched;
};

struct conn_log {
	char *text; /* owns the strings the conns point into */
	struct conn *conns;
	size_t n, cap;
};

struct totals {
	size_t zeek, matched, extra;
};

static size_t split(char *line, char sep, char **fields, size_t max)
{
	size_t n = 0;

	fields[n++] = line;
	for (char *p = line; *p && n < max; p++) {
		if (*p == sep) {
			*p = '\0';
			fields[n++] = p + 1;
		}
	}
	return n;
}

static int column(char *const *names, size_t n, const char *want)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], want) == 0)
			return (int)i;
	cr_assert_fail("conn.log has no %s field", want);
	return -1;
}

/* Parses a conn.log by its #fields line; takes ownership of text. */
static void parse_conn_log(struct conn_log *log, char *text, const char *what)
{
	static const char *const wanted[] = { "uid", "id.orig_h", "id.orig_p", "id.resp_h",
					      "id.resp_p", "proto", "tunnel_parents", "orig_pkts",
					      "orig_ip_bytes", "resp_pkts", "resp_ip_bytes" };
	int col[sizeof(wanted) / sizeof(wanted[0])] = { 0 };
	char *names[MAX_FIELDS], *fields[MAX_FIELDS], *save = NULL;
	size_t n_names = 0;

	memset(log, 0, sizeof(*log));
	log->text = text;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct conn *c;

		if (strncmp(line, "#fields\t", 8) == 0) {
			n_names = split(line + 8, '\t', names, MAX_FIELDS);
			for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
				col[i] = column(names, n_names, wanted[i]);
			continue;
		}
		if (line[0] == '#')
			continue;
		cr_assert_gt(n_names, 0, "%s: a record before the #fields line", what);
		cr_assert_eq(split(line, '\t', fields, MAX_FIELDS), n_names,
			     "%s: record with a different field count than #fields", what);
		if (log->n == log->cap) {
			log->cap = log->cap ? log->cap * 2 : 16;
			log->conns = realloc(log->conns, log->cap * sizeof(*log->conns));
		}
		c = &log->conns[log->n++];
		memset(c, 0, sizeof(*c));
		c->uid = fields[col[0]];
		c->orig_h = fields[col[1]];
		c->orig_p = fields[col[2]];
		c->resp_h = fields[col[3]];
		c->resp_p = fields[col[4]];
		c->proto = fields[col[5]];
		c->parents = fields[col[6]];
		c->orig_pkts = strtoull(fields[col[7]], NULL, 10);
		c->orig_ip_bytes = strtoull(fields[col[8]], NULL, 10);
		c->resp_pkts = strtoull(fields[col[9]], NULL, 10);
		c->resp_ip_bytes = strtoull(fields[col[10]], NULL, 10);
	}
	cr_assert_gt(n_names, 0, "%s: no #fields line", what);
}

static void free_conn_log(struct conn_log *log)
{
	free(log->conns);
	free(log->text);
}

static bool same_tuple(const struct conn *a, const struct conn *b)
{
	return strcmp(a->orig_h, b->orig_h) == 0 && strcmp(a->orig_p, b->orig_p) == 0 &&
	       strcmp(a->resp_h, b->resp_h) == 0 && strcmp(a->resp_p, b->resp_p) == 0 &&
	       strcmp(a->proto, b->proto) == 0;
}

static const struct conn *find_uid(const struct conn_log *log, const char *uid)
{
	for (size_t i = 0; i < log->n; i++)
		if (strcmp(log->conns[i].uid, uid) == 0)
			return &log->conns[i];
	return NULL;
}

static struct conn *find_unmatched_tuple(struct conn_log *log, const struct conn *want)
{
	for (size_t i = 0; i < log->n; i++)
		if (!log->conns[i].matched && same_tuple(&log->conns[i], want))
			return &log->conns[i];
	return NULL;
}

static size_t parse_parents(const char *set, char out[MAX_PARENTS][32])
{
	size_t n = 0;
	const char *p = set;

	if (strcmp(set, "-") == 0 || strcmp(set, "(empty)") == 0)
		return 0;
	while (*p && n < MAX_PARENTS) {
		size_t len = strcspn(p, ",");

		snprintf(out[n++], 32, "%.*s", (int)len, p);
		p += len + (p[len] == ',');
	}
	return n;
}

/*
 * Zeek's parents must be our parents: same count, and every parent Zeek
 * logged itself must have a 5-tuple twin among ours. Writes why not.
 */
static bool parents_agree(const struct conn *z, const struct conn_log *zlog, const struct conn *m,
			  const struct conn_log *mlog, char *why, size_t why_len)
{
	char zp[MAX_PARENTS][32], mp[MAX_PARENTS][32];
	size_t nz = parse_parents(z->parents, zp), nm = parse_parents(m->parents, mp);

	if (nz != nm) {
		snprintf(why, why_len, "tunnel_parents: zeek %zu (%s), mamori %zu (%s)", nz,
			 z->parents, nm, m->parents);
		return false;
	}
	for (size_t i = 0; i < nz; i++) {
		const struct conn *zc = find_uid(zlog, zp[i]);
		bool twin = false;

		if (!zc)
			continue; /* a parent Zeek does not log (e.g. GRE): the count must do */
		for (size_t j = 0; j < nm && !twin; j++) {
			const struct conn *mc = find_uid(mlog, mp[j]);

			twin = mc && same_tuple(zc, mc);
		}
		if (!twin) {
			snprintf(why, why_len, "tunnel parent %s:%s -> %s:%s %s not among ours (%s)",
				 zc->orig_h, zc->orig_p, zc->resp_h, zc->resp_p, zc->proto, m->parents);
			return false;
		}
	}
	return true;
}

/* Whether our flow m agrees with Zeek's z; writes why not. */
static bool conn_agrees(const struct conn *z, const struct conn_log *zeek, const struct conn *m,
			const struct conn_log *ours, char *why, size_t why_len)
{
	if (!m) {
		snprintf(why, why_len, "zeek %llu/%llu pkts, %llu/%llu ip bytes: no such flow in "
			 "mamori's output", z->orig_pkts, z->resp_pkts, z->orig_ip_bytes,
			 z->resp_ip_bytes);
		return false;
	}
	if (z->orig_pkts != m->orig_pkts || z->orig_ip_bytes != m->orig_ip_bytes ||
	    z->resp_pkts != m->resp_pkts || z->resp_ip_bytes != m->resp_ip_bytes) {
		snprintf(why, why_len, "orig_pkts/orig_ip_bytes/resp_pkts/resp_ip_bytes zeek "
			 "%llu/%llu/%llu/%llu, mamori %llu/%llu/%llu/%llu", z->orig_pkts,
			 z->orig_ip_bytes, z->resp_pkts, z->resp_ip_bytes, m->orig_pkts,
			 m->orig_ip_bytes, m->resp_pkts, m->resp_ip_bytes);
		return false;
	}
	return parents_agree(z, zeek, m, ours, why, why_len);
}

static void compare_capture(const char *name, struct conn_log *zeek, struct conn_log *ours,
			    struct totals *t)
{
	size_t matched = 0, extra = 0;
	char why[512];

	for (size_t i = 0; i < zeek->n; i++) {
		struct conn *z = &zeek->conns[i], *m = find_unmatched_tuple(ours, z);

		if (m)
			m->matched = true;
		if (conn_agrees(z, zeek, m, ours, why, sizeof(why))) {
			matched++;
			continue;
		}
		printf("  MISMATCH %s: %s:%s -> %s:%s %s: %s\n", name, z->orig_h, z->orig_p,
		       z->resp_h, z->resp_p, z->proto, why);
	}
	for (size_t i = 0; i < ours->n; i++) {
		const struct conn *m = &ours->conns[i];

		if (m->matched)
			continue;
		extra++;
		printf("  EXTRA    %s: %s:%s -> %s:%s %s (%llu/%llu pkts, %llu/%llu ip bytes) "
		       "is not in Zeek's conn.log\n",
		       name, m->orig_h, m->orig_p, m->resp_h, m->resp_p, m->proto, m->orig_pkts,
		       m->resp_pkts, m->orig_ip_bytes, m->resp_ip_bytes);
	}
	printf("  %-50s %5zu %8zu %6zu\n", name, zeek->n, matched, extra);
	t->zeek += zeek->n;
	t->matched += matched;
	t->extra += extra;
}

/* The capture in a test folder: the one file that is not the log or the notes. */
static char *find_trace(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *path = NULL;

	cr_assert_not_null(d);
	while (!path && (e = readdir(d))) {
		const char *dot = strrchr(e->d_name, '.');

		if (dot && (strcmp(dot, ".pcap") == 0 || strcmp(dot, ".pcapng") == 0 ||
			    strcmp(dot, ".cap") == 0) &&
		    asprintf(&path, "%s/%s", dir, e->d_name) < 0)
			path = NULL;
	}
	closedir(d);
	return path;
}

static void compare_folder(const char *root, const char *name, struct totals *t)
{
	char dir[1024], log_path[1100], *trace, *out, *err;
	struct conn_log zeek, ours;
	int rc;

	snprintf(dir, sizeof(dir), "%s/%s", root, name);
	snprintf(log_path, sizeof(log_path), "%s/conn.log", dir);
	trace = find_trace(dir);
	cr_assert_not_null(trace, "%s: no trace", dir);
	const char *argv[] = { tu_mamori_bin(), "meter", "--compat", "zeek", "--format", "zeek",
			       "-q", trace, NULL };
	rc = tu_run(argv, NULL, &out, &err);
	cr_assert_eq(rc, 0, "mamori meter %s: exit %d: %s", trace, rc, err);
	parse_conn_log(&zeek, tu_read_file(log_path, NULL), log_path);
	parse_conn_log(&ours, out, "mamori's output");
	compare_capture(name, &zeek, &ours, t);
	free_conn_log(&zeek);
	free_conn_log(&ours);
	free(err);
	free(trace);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(zeek_compare, conn_log_counts_match_zeek, .timeout = 300)
{
	TU_REQUIRE_SHARED(root, "zeek");
	DIR *d = opendir(root);
	struct dirent *e;
	char *names[256];
	size_t n = 0;
	struct totals t = { 0 };
	double share;

	cr_assert_not_null(d);
	while ((e = readdir(d)) && n < 256) {
		char probe[1024];

		snprintf(probe, sizeof(probe), "zeek/%s/conn.log", e->d_name);
		char *p = e->d_name[0] != '.' ? tu_shared_path(probe) : NULL;
		if (p)
			names[n++] = strdup(e->d_name);
		free(p);
	}
	closedir(d);
	cr_assert_gt(n, 0, "no Zeek test folders with a conn.log under %s", root);
	qsort(names, n, sizeof(*names), cmp_names);

	printf("Zeek conn.log comparison (5-tuple; orig/resp pkts and ip bytes; tunnel parents)\n");
	printf("  %-50s %5s %8s %6s\n", "capture", "zeek", "matched", "extra");
	for (size_t i = 0; i < n; i++) {
		compare_folder(root, names[i], &t);
		free(names[i]);
	}
	share = t.zeek ? 100.0 * (double)t.matched / (double)t.zeek : 0;
	printf("overall: %zu of %zu Zeek connections matched (%.1f%%); %zu mismatches; "
	       "%zu extra mamori flows\n",
	       t.matched, t.zeek, share, t.zeek - t.matched, t.extra);
	fflush(stdout);
	cr_assert_gt(t.zeek, 0);
	cr_assert_geq(t.matched * 100, t.zeek * 99, "only %zu of %zu Zeek connections matched",
		      t.matched, t.zeek);
	free(root);
}
