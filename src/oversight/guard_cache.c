/*
 * The guard's cache (docs/oversight.md, "The guard's cache"): one file,
 * <data>/oversight/guard.cache, holding the mode and the canonical bytes of
 * every authorization that a verified load found signed, unrevoked and not
 * spent (in force, or not valid yet; emergencies and expired ones left
 * out), one document a line in the state's order. A speculative decision
 * reads this one file instead of every panel, authorization and signature
 * file; its second thread then decides again from the verified files and
 * voids the speculation unless that chooses the same document. So the
 * cache needs no integrity of its own: stale, damaged or forged, it can
 * cost a void decision, never a wrong one.
 */
#include "oversight_int.h"

#include "mamori/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CACHE_NAME "guard.cache"
#define CACHE_HEADER "mamori-guard-cache 1 "

void ov_guard_cache_free(struct ov_guard_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		mm_authz_free(c->a[i]);
	free(c->a);
	free(c->text);
	free(c);
}

static bool take(const char **p, const char *end, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(end - *p) < n || memcmp(*p, word, n) != 0)
		return false;
	*p += n;
	return true;
}

static int parse(struct ov_guard_cache *c, const char *path)
{
	const char *p = c->text, *end = c->text + c->len, *nl;
	size_t lines = 0;

	if (!take(&p, end, CACHE_HEADER) || !((c->lab = take(&p, end, "lab\n")) || take(&p, end, "enforced\n")))
		return mm_fail(MM_EFORMAT, "%s: not a guard cache", path);
	for (const char *q = p; q < end && (q = memchr(q, '\n', (size_t)(end - q))); q++)
		lines++;
	if (lines && !(c->a = calloc(lines, sizeof(*c->a))))
		return mm_fail(MM_ENOMEM, "%s: out of memory", path);
	for (; p < end; p = nl + 1) {
		int rc;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return mm_fail(MM_EFORMAT, "%s: its last line is cut short", path);
		rc = ov_authz_parse_canonical(p, (size_t)(nl - p), path, &c->a[c->n]);
		if (rc)
			return rc;
		c->n++;
	}
	return 0;
}

int ov_guard_cache_parse(const char *text, size_t len, const char *where, struct ov_guard_cache **out)
{
	struct ov_guard_cache *c = calloc(1, sizeof(*c));
	int rc;

	*out = NULL;
	if (!c || !(c->text = malloc(len + 1))) {
		free(c);
		return mm_fail(MM_ENOMEM, "guard cache: out of memory");
	}
	memcpy(c->text, text, len);
	c->text[len] = '\0';
	c->len = len;
	rc = parse(c, where);
	if (rc) {
		ov_guard_cache_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int ov_guard_cache_load(const char *data_dir, struct ov_guard_cache **out)
{
	char path[4096], *text = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	rc = ov_path(path, sizeof(path), data_dir, CACHE_NAME);
	if (rc == 0)
		rc = ov_read_file(path, &text, &len);
	if (rc == 0)
		rc = ov_guard_cache_parse(text, len, path, out);
	free(text);
	return rc;
}

/* What the cache holds for the verified state o at now_ns (malloc'd). */
static int cache_text(const struct mm_oversight *o, uint64_t now_ns, char **text, size_t *len)
{
	size_t size = strlen(CACHE_HEADER) + 10, n = 0;
	char *buf;

	for (size_t i = 0; i < mm_oversight_count(o); i++)
		size += mm_oversight_authz(o, i)->canonical_len + 1;
	if (!(buf = malloc(size)))
		return mm_fail(MM_ENOMEM, "guard cache: out of memory");
	n = (size_t)snprintf(buf, size, "%s%s\n", CACHE_HEADER, mm_oversight_lab(o) ? "lab" : "enforced");
	for (size_t i = 0; i < mm_oversight_count(o) && !mm_oversight_lab(o); i++) {
		const struct mm_authz *a = mm_oversight_authz(o, i);
		struct mm_authz_state st;

		/* Expired ones first, without their signatures checked: they pile up, and never come back. */
		if (a->emergency || now_ns > a->valid_until_ns || memchr(a->canonical, '\n', a->canonical_len))
			continue;
		mm_oversight_state(o, a, now_ns, &st);
		if (st.status != MM_AZ_IN_FORCE && st.status != MM_AZ_NOT_YET_VALID)
			continue;
		memcpy(buf + n, a->canonical, a->canonical_len);
		n += a->canonical_len;
		buf[n++] = '\n';
	}
	*text = buf;
	*len = n;
	return 0;
}

void ov_guard_cache_refresh(const char *data_dir, const struct mm_oversight *o, uint64_t now_ns, const char *known,
			    size_t known_len)
{
	char path[4096], tmp[4200], *text = NULL;
	size_t len = 0;
	FILE *f;
	bool same;

	if (ov_path(path, sizeof(path), data_dir, CACHE_NAME) != 0)
		return;
	/* Without bytes to compare, only a missing cache is written: working one out checks signatures. */
	if (!known && access(path, F_OK) == 0)
		return;
	if (cache_text(o, now_ns, &text, &len) != 0)
		return;
	same = known && known_len == len && memcmp(known, text, len) == 0;
	/* A cache, so no fsync: lost in a crash, the next verified load writes it again. */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	if (!same && (f = fopen(tmp, "w"))) {
		bool ok = fwrite(text, 1, len, f) == len;
		if (fclose(f) == 0 && ok)
			rename(tmp, path);
		unlink(tmp);
	}
	free(text);
}

void ov_guard_cache_drop(const char *data_dir)
{
	char path[4096];

	if (ov_path(path, sizeof(path), data_dir, CACHE_NAME) == 0)
		unlink(path);
}
