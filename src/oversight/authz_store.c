/*
 * The oversight state of one data directory: the panel, the policy, and
 * every authorization with the signature, revocation and ratification
 * lines filed beside it and its use counter. Evaluating whether an
 * authorization is in force happens here, from these files alone, each
 * time: nothing is cached between processes, so a revocation filed now
 * stops the next act.
 */
#include "mamori/oversight.h"

#include "oversight_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

/* Authorizations one data directory may hold: a cap against a flooded directory. */
#define AUTHZ_MAX 100000
/* The use counter: fixed width, so an update is one pwrite with no truncation. */
#define USES_WIDTH 20

struct authz_entry {
	struct mm_authz *a;
	struct mm_sig_line *sigs, *revoke, *ratify;
	size_t n_sigs, n_revoke, n_ratify;
	uint64_t uses;
};

struct mm_oversight {
	char *data_dir;
	struct mm_panel *panel; /* NULL: lab mode */
	json_t *policy;         /* oversight/policy.json, or NULL */
	struct authz_entry *e;
	size_t n, cap;
};

static void entry_clear(struct authz_entry *e)
{
	mm_authz_free(e->a);
	free(e->sigs);
	free(e->revoke);
	free(e->ratify);
}

void mm_oversight_free(struct mm_oversight *o)
{
	if (!o)
		return;
	for (size_t i = 0; i < o->n; i++)
		entry_clear(&o->e[i]);
	free(o->e);
	mm_panel_free(o->panel);
	json_decref(o->policy);
	free(o->data_dir);
	free(o);
}

bool mm_oversight_lab(const struct mm_oversight *o) { return o->panel == NULL; }
const struct mm_panel *mm_oversight_panel(const struct mm_oversight *o) { return o->panel; }
size_t mm_oversight_count(const struct mm_oversight *o) { return o->n; }
const struct mm_authz *mm_oversight_authz(const struct mm_oversight *o, size_t i) { return o->e[i].a; }

static struct authz_entry *find_entry(const struct mm_oversight *o, const char *id)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->e[i].a->id, id) == 0)
			return &o->e[i];
	return NULL;
}

const struct mm_authz *mm_oversight_find(const struct mm_oversight *o, const char *id)
{
	struct authz_entry *e = find_entry(o, id);

	return e ? e->a : NULL;
}

bool mm_oversight_purpose_forbidden(const struct mm_oversight *o, const char *purpose)
{
	json_t *list = json_object_get(o->policy, "forbidden_purposes");

	for (size_t i = 0; i < json_array_size(list); i++) {
		const char *p = json_string_value(json_array_get(list, i));
		if (p && strcmp(p, purpose) == 0)
			return true;
	}
	return false;
}

static int load_policy(struct mm_oversight *o)
{
	char path[4096];
	char *text = NULL;
	size_t len = 0;
	json_error_t err;
	json_t *list;
	int rc = ov_path(path, sizeof(path), o->data_dir, "policy.json");

	if (rc == 0)
		rc = ov_read_file(path, &text, &len);
	if (rc == MM_ENOENT)
		return 0;
	if (rc)
		return rc;
	o->policy = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	free(text);
	if (!o->policy)
		return mm_fail(MM_EFORMAT, "%s:%d:%d: %s", path, err.line, err.column, err.text);
	list = json_object_get(o->policy, "forbidden_purposes");
	if (!json_is_object(o->policy) || (list && !json_is_array(list)))
		return mm_fail(MM_EFORMAT, "%s: expected {\"forbidden_purposes\": [\"code\", ...]}", path);
	for (size_t i = 0; i < json_array_size(list); i++)
		if (!json_is_string(json_array_get(list, i)))
			return mm_fail(MM_EFORMAT, "%s: forbidden_purposes[%zu] is not a string", path, i);
	return 0;
}

/* Reads authz/<id><suffix> as signature lines; an absent file is no lines. */
static int load_lines(const char *data_dir, const char *id, const char *suffix, struct mm_sig_line **out,
		      size_t *n)
{
	char rel[64], path[4096];
	char *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	*n = 0;
	snprintf(rel, sizeof(rel), "authz/%s%s", id, suffix);
	rc = ov_path(path, sizeof(path), data_dir, rel);
	if (rc == 0)
		rc = ov_read_file(path, &text, &len);
	if (rc == MM_ENOENT)
		return 0;
	if (rc == 0)
		rc = mm_sig_lines_parse(text, len, path, out, n);
	free(text);
	return rc;
}

static int load_uses(const char *data_dir, const char *id, uint64_t *uses)
{
	char rel[64], path[4096];
	char *text = NULL, *end;
	int rc;

	*uses = 0;
	snprintf(rel, sizeof(rel), "authz/%s.uses", id);
	rc = ov_path(path, sizeof(path), data_dir, rel);
	if (rc == 0)
		rc = ov_read_file(path, &text, NULL);
	if (rc == MM_ENOENT)
		return 0;
	if (rc == 0 && text[0]) {
		*uses = strtoull(text, &end, 10);
		if (*end != '\n' && *end != '\0')
			rc = mm_fail(MM_EFORMAT, "%s: not a use count", path);
	}
	free(text);
	return rc;
}

static int load_entry(struct mm_oversight *o, const char *file)
{
	char rel[300], path[4096];
	struct authz_entry e = { 0 };
	char *text = NULL;
	size_t len = 0, id_len = strlen(file) - 5;
	int rc;

	if (o->n == AUTHZ_MAX)
		return mm_fail(MM_ELIMIT, "oversight: more than %d authorizations in %s", AUTHZ_MAX, o->data_dir);
	snprintf(rel, sizeof(rel), "authz/%s", file);
	rc = ov_path(path, sizeof(path), o->data_dir, rel);
	if (rc == 0)
		rc = ov_read_file(path, &text, &len);
	if (rc == 0)
		rc = mm_authz_parse(text, len, path, &e.a);
	free(text);
	if (rc == 0 && (strlen(e.a->id) != id_len || strncmp(e.a->id, file, id_len) != 0))
		rc = mm_fail(MM_EFORMAT, "%s: holds authorization %s, not the one its name says", path, e.a->id);
	if (rc == 0)
		rc = load_lines(o->data_dir, e.a->id, ".sig", &e.sigs, &e.n_sigs);
	if (rc == 0)
		rc = load_lines(o->data_dir, e.a->id, ".revoke", &e.revoke, &e.n_revoke);
	if (rc == 0)
		rc = load_lines(o->data_dir, e.a->id, ".ratify", &e.ratify, &e.n_ratify);
	if (rc == 0)
		rc = load_uses(o->data_dir, e.a->id, &e.uses);
	if (rc == 0 && o->n == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 16;
		struct authz_entry *grown = realloc(o->e, cap * sizeof(*grown));
		if (!grown)
			rc = mm_fail(MM_ENOMEM, "oversight: out of memory");
		else {
			o->e = grown;
			o->cap = cap;
		}
	}
	if (rc) {
		entry_clear(&e);
		return rc;
	}
	o->e[o->n++] = e;
	return 0;
}

static int id_order(const void *pa, const void *pb)
{
	const struct authz_entry *a = pa, *b = pb;
	size_t la = strlen(a->a->id), lb = strlen(b->a->id);

	/* A-2026-0042 before A-2026-10000: by length within a year, then bytes. */
	int c = strncmp(a->a->id, b->a->id, 6);
	if (c)
		return c;
	return la != lb ? (la < lb ? -1 : 1) : strcmp(a->a->id, b->a->id);
}

static int load_authorizations(struct mm_oversight *o)
{
	char path[4096];
	struct dirent *d;
	DIR *dir;
	int rc = ov_path(path, sizeof(path), o->data_dir, "authz");

	if (rc)
		return rc;
	dir = opendir(path);
	if (!dir)
		return errno == ENOENT ? 0 : mm_fail(MM_EIO, "%s: %s", path, strerror(errno));
	while (rc == 0 && (d = readdir(dir))) {
		size_t len = strlen(d->d_name);
		if (d->d_name[0] == 'A' && len > 5 && strcmp(d->d_name + len - 5, ".json") == 0)
			rc = load_entry(o, d->d_name);
	}
	closedir(dir);
	if (rc == 0 && o->n > 1)
		qsort(o->e, o->n, sizeof(*o->e), id_order);
	return rc;
}

int mm_oversight_open(const char *data_dir, struct mm_oversight **out)
{
	struct mm_oversight *o = calloc(1, sizeof(*o));
	int rc;

	*out = NULL;
	if (!o || !(o->data_dir = strdup(data_dir))) {
		free(o);
		return mm_fail(MM_ENOMEM, "oversight: out of memory");
	}
	rc = mm_panel_load(data_dir, &o->panel);
	if (rc == MM_ENOENT)
		rc = 0;
	if (rc == 0)
		rc = load_policy(o);
	if (rc == 0)
		rc = load_authorizations(o);
	if (rc) {
		mm_oversight_free(o);
		return rc;
	}
	*out = o;
	return 0;
}

/* ---- state ---- */

const char *mm_authz_status_name(enum mm_authz_status s)
{
	static const char *const names[] = { "IN FORCE", "PENDING",   "NOT YET VALID", "EXPIRED",
					     "REVOKED",  "SUSPENDED", "EXHAUSTED",     "FORBIDDEN" };

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

/* Statement lines counted toward quorum; exclude NULL for revocations (always safe to count). */
static unsigned statement_count(const struct mm_oversight *o, const struct authz_entry *e, const char *type,
				const struct mm_sig_line *lines, size_t n, const char *exclude)
{
	struct mm_quorum_count c;
	char *msg = NULL;
	size_t len = 0;

	if (n == 0 || mm_authz_statement(e->a, type, &msg, &len) != 0)
		return 0;
	mm_panel_count(o->panel, msg, len, lines, n, exclude, &c);
	free(msg);
	return c.valid;
}

/* "1 by the requester, not counted; 1 by an unknown key" — what did not count. */
static void uncounted(const struct mm_quorum_count *c, char *buf, size_t size)
{
	size_t used = 0;
	const struct {
		unsigned n;
		const char *what;
	} parts[] = {
		{ c->requester, "by the requester, not counted" },
		{ c->duplicate, "duplicate (a member counts once)" },
		{ c->unknown_key, "by a key that is not a panel member's" },
		{ c->bad_signature, "not over this document's bytes" },
	};

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		if (!parts[i].n)
			continue;
		int w = snprintf(buf + used, size - used, "; %u %s", parts[i].n, parts[i].what);
		if (w < 0 || (size_t)w >= size - used)
			break;
		used += (size_t)w;
	}
}

void mm_oversight_state(const struct mm_oversight *o, const struct mm_authz *a, uint64_t now_ns,
			struct mm_authz_state *st)
{
	const struct authz_entry *e = find_entry(o, a->id);
	char t[64], why[256];

	memset(st, 0, sizeof(*st));
	st->status = MM_AZ_PENDING;
	if (!e || !o->panel) {
		snprintf(st->reason, sizeof(st->reason), "%s: no panel to sign it (lab mode)", a->id);
		return;
	}
	st->quorum = mm_panel_quorum(o->panel);
	st->members = (unsigned)mm_panel_size(o->panel);
	st->uses = e->uses;
	mm_panel_count(o->panel, a->canonical, a->canonical_len, e->sigs, e->n_sigs, a->requester, &st->sigs);
	st->revoked = statement_count(o, e, "mamori-revocation", e->revoke, e->n_revoke, NULL) >= st->quorum;
	st->ratified = st->sigs.valid >= st->quorum ||
		       statement_count(o, e, "mamori-ratification", e->ratify, e->n_ratify, a->requester) >=
			       st->quorum;
	uncounted(&st->sigs, why, sizeof(why));
	if (mm_oversight_purpose_forbidden(o, a->purpose)) {
		st->status = MM_AZ_FORBIDDEN;
		snprintf(st->reason, sizeof(st->reason), "%s: purpose '%.200s' is forbidden by policy", a->id,
			 a->purpose);
	} else if (st->revoked) {
		st->status = MM_AZ_REVOKED;
		snprintf(st->reason, sizeof(st->reason), "%s: revoked by the panel", a->id);
	} else if (st->sigs.valid < st->quorum && !(a->emergency && st->sigs.valid >= 1)) {
		snprintf(st->reason, sizeof(st->reason), "%s: %u of %u signatures%s", a->id, st->sigs.valid,
			 st->quorum, why);
	} else if (a->emergency && !st->ratified && now_ns > a->ratify_by_ns) {
		st->status = MM_AZ_SUSPENDED;
		snprintf(st->reason, sizeof(st->reason), "%s: emergency not ratified by %s: suspended", a->id,
			 mm_oversight_time_format(a->ratify_by_ns, t));
	} else if (now_ns < a->valid_from_ns) {
		st->status = MM_AZ_NOT_YET_VALID;
		snprintf(st->reason, sizeof(st->reason), "%s: not valid before %s", a->id,
			 mm_oversight_time_format(a->valid_from_ns, t));
	} else if (now_ns > a->valid_until_ns) {
		st->status = MM_AZ_EXPIRED;
		snprintf(st->reason, sizeof(st->reason), "%s: expired %s", a->id,
			 mm_oversight_time_format(a->valid_until_ns, t));
	} else if (a->max_uses && e->uses >= a->max_uses) {
		st->status = MM_AZ_EXHAUSTED;
		snprintf(st->reason, sizeof(st->reason), "%s: all %" PRIu64 " uses spent", a->id, a->max_uses);
	} else {
		st->status = MM_AZ_IN_FORCE;
		st->emergency_acting = a->emergency && !st->ratified;
	}
}

/* ---- writing ---- */

static int lock_file(const char *path, int *fd_out)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		return mm_fail(MM_EIO, "%s: %s", path, strerror(errno));
	while (flock(fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			close(fd);
			return mm_fail(MM_EIO, "%s: lock: %s", path, strerror(errno));
		}
	}
	*fd_out = fd;
	return 0;
}

/* The next free number of the year: one past the largest filed. */
static unsigned long next_number(const char *authz_dir, int year)
{
	char prefix[16];
	unsigned long max = 0;
	struct dirent *d;
	DIR *dir = opendir(authz_dir);

	snprintf(prefix, sizeof(prefix), "A-%04d-", year);
	if (!dir)
		return 1;
	while ((d = readdir(dir))) {
		char *end;
		unsigned long v;

		if (strncmp(d->d_name, prefix, 7) != 0)
			continue;
		v = strtoul(d->d_name + 7, &end, 10);
		if (strcmp(end, ".json") == 0 && v > max)
			max = v;
	}
	closedir(dir);
	return max + 1;
}

int mm_oversight_request(struct mm_oversight *o, json_t *doc, uint64_t now_ns, char id[MM_AUTHZ_ID_MAX])
{
	char lock_path[4096], dir[4096], path[4096], rel[64], when[64];
	struct mm_authz *a = NULL;
	time_t secs = (time_t)(now_ns / MM_NS_PER_SEC);
	struct tm tm;
	int fd = -1, rc;

	id[0] = '\0';
	gmtime_r(&secs, &tm);
	json_object_set_new(doc, "requested", json_string(mm_oversight_time_format(now_ns, when)));
	/* Validate before taking a number, so a bad request leaves no trace. */
	json_object_del(doc, "id");
	rc = mm_authz_from_json(json_incref(doc), false, &a);
	mm_authz_free(a);
	a = NULL;
	if (rc == 0 && mm_oversight_purpose_forbidden(o, json_string_value(json_object_get(doc, "purpose"))))
		rc = mm_fail(MM_EPERM, "request refused: purpose '%s' is forbidden by policy",
			     json_string_value(json_object_get(doc, "purpose")));
	if (rc == 0)
		rc = ov_mkdirs(o->data_dir);
	if (rc == 0)
		rc = ov_path(lock_path, sizeof(lock_path), o->data_dir, "authz/.lock");
	if (rc == 0)
		rc = ov_path(dir, sizeof(dir), o->data_dir, "authz");
	if (rc == 0)
		rc = lock_file(lock_path, &fd);
	if (rc == 0) {
		snprintf(id, MM_AUTHZ_ID_MAX, "A-%04d-%04lu", tm.tm_year + 1900, next_number(dir, tm.tm_year + 1900));
		json_object_set_new(doc, "id", json_string(id));
		rc = mm_authz_from_json(json_incref(doc), true, &a);
	}
	if (rc == 0) {
		snprintf(rel, sizeof(rel), "authz/%s.json", id);
		rc = ov_path(path, sizeof(path), o->data_dir, rel);
	}
	if (rc == 0)
		rc = ov_write_file(path, a->canonical, a->canonical_len, true);
	/* The handle sees what it filed: it can be signed at once. */
	if (rc == 0) {
		snprintf(rel, sizeof(rel), "%s.json", id);
		rc = load_entry(o, rel);
		if (rc == 0)
			qsort(o->e, o->n, sizeof(*o->e), id_order);
	}
	if (fd >= 0)
		close(fd);
	mm_authz_free(a);
	json_decref(doc);
	if (rc)
		id[0] = '\0';
	return rc;
}

static int append_lines(struct mm_oversight *o, const char *id, const char *suffix, const void *msg, size_t len,
			struct mm_signer *const *s, size_t n)
{
	char rel[64], path[4096];
	int rc;

	if (!o->panel)
		return mm_fail(MM_EPERM, "%s: lab mode: there is no panel to sign for ('mamori panel init' first)", id);
	snprintf(rel, sizeof(rel), "authz/%s%s", id, suffix);
	rc = ov_path(path, sizeof(path), o->data_dir, rel);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char *line = NULL;

		rc = mm_sig_line_make(s[i], msg, len, &line);
		if (rc == 0)
			rc = ov_append_file(path, line, strlen(line));
		free(line);
	}
	ov_guard_cache_drop(o->data_dir);
	return rc;
}

int mm_oversight_sign(struct mm_oversight *o, const char *id, const struct mm_signer *s)
{
	struct authz_entry *e = find_entry(o, id);
	struct mm_signer *one[1] = { (struct mm_signer *)s };

	if (!e)
		return mm_fail(MM_ENOENT, "%s: no such authorization", id);
	return append_lines(o, id, ".sig", e->a->canonical, e->a->canonical_len, one, 1);
}

static int sign_statement(struct mm_oversight *o, const char *id, const char *type, const char *suffix,
			  struct mm_signer *const *s, size_t n)
{
	struct authz_entry *e = find_entry(o, id);
	char *msg = NULL;
	size_t len = 0;
	int rc;

	if (!e)
		return mm_fail(MM_ENOENT, "%s: no such authorization", id);
	rc = mm_authz_statement(e->a, type, &msg, &len);
	if (rc == 0)
		rc = append_lines(o, id, suffix, msg, len, s, n);
	free(msg);
	return rc;
}

int mm_oversight_revoke(struct mm_oversight *o, const char *id, struct mm_signer *const *s, size_t n)
{
	return sign_statement(o, id, "mamori-revocation", ".revoke", s, n);
}

int mm_oversight_ratify(struct mm_oversight *o, const char *id, struct mm_signer *const *s, size_t n)
{
	return sign_statement(o, id, "mamori-ratification", ".ratify", s, n);
}

int mm_oversight_use(struct mm_oversight *o, const char *id)
{
	struct authz_entry *e = find_entry(o, id);
	char rel[64], path[4096], buf[USES_WIDTH + 2];
	uint64_t uses = 0;
	ssize_t got;
	int fd = -1, rc;

	if (!e)
		return mm_fail(MM_ENOENT, "%s: no such authorization", id);
	snprintf(rel, sizeof(rel), "authz/%s.uses", id);
	rc = ov_path(path, sizeof(path), o->data_dir, rel);
	if (rc == 0)
		rc = lock_file(path, &fd);
	if (rc)
		return rc;
	/* Read again under the lock: another process may have used it since the load. */
	got = pread(fd, buf, USES_WIDTH + 1, 0);
	if (got > 0) {
		buf[got] = '\0';
		uses = strtoull(buf, NULL, 10);
	}
	if (e->a->max_uses && uses >= e->a->max_uses) {
		rc = mm_fail(MM_ELIMIT, "%s: all %" PRIu64 " uses spent", id, e->a->max_uses);
	} else {
		snprintf(buf, sizeof(buf), "%0*" PRIu64 "\n", USES_WIDTH, uses + 1);
		if (pwrite(fd, buf, USES_WIDTH + 1, 0) != USES_WIDTH + 1 || fsync(fd) != 0)
			rc = mm_fail(MM_EIO, "%s: %s", path, strerror(errno));
		else
			e->uses = uses + 1;
	}
	close(fd);
	return rc;
}

static char login_name[64];

static void login_name_init(void)
{
	struct passwd *pw = getpwuid(geteuid());

	if (pw && pw->pw_name)
		snprintf(login_name, sizeof(login_name), "%s", pw->pw_name);
	else
		snprintf(login_name, sizeof(login_name), "uid %u", (unsigned)geteuid());
}

const char *mm_oversight_actor(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const char *env = getenv("MAMORI_ACTOR");

	if (env && env[0])
		return env;
	/* Looked up once per process: reading the user database costs more than the entry it names. */
	pthread_once(&once, login_name_init);
	return login_name;
}
