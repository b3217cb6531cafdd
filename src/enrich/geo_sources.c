/*
 * Text sources for the geo table builder: RIR delegated(-extended)
 * statistics (RIR statistics exchange format), per-country CIDR lists and
 * iptoasn.com TSV range tables. Each file is read whole (capped), split
 * into lines, and every line either gives prefixes, is skipped as a
 * well-formed non-delegation, or is counted and reported as bad with its
 * line number; a bad line never stops the load.
 */
#include "enrich/geo_int.h"

#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GEO_MAX_FILE (4ull << 30)
#define GEO_MAX_LINE 4096u
#define GEO_MAX_FIELDS 12u

struct field {
	const char *s;
	size_t len;
};

static int read_whole(const char *path, char **out, size_t *out_len)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0, cap;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "geo: %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
		rc = mm_fail(MM_EIO, "geo: %s: not a readable file", path);
		goto out;
	}
	/* Pipes and /proc files report no size: grow as they deliver. */
	cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
	for (;;) {
		ssize_t n;

		if (len + 1 >= cap || !buf) {
			void *p;

			if (buf)
				cap *= 2;
			if (cap > GEO_MAX_FILE + 1)
				cap = GEO_MAX_FILE + 1;
			if (len >= GEO_MAX_FILE) {
				rc = mm_fail(MM_ELIMIT, "geo: %s: larger than %llu bytes", path, GEO_MAX_FILE);
				goto out;
			}
			p = realloc(buf, cap);
			if (!p) {
				rc = mm_fail(MM_ENOMEM, "geo: %s: no memory for %zu bytes", path, cap);
				goto out;
			}
			buf = p;
		}
		n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = mm_fail(MM_EIO, "geo: %s: read: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

/* Splits s at sep into at most max fields; returns how many there were (may exceed max). */
static size_t split(const char *s, size_t len, char sep, struct field *f, size_t max)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != sep)
			continue;
		if (n < max)
			f[n] = (struct field){ s + start, i - start };
		n++;
		start = i + 1;
	}
	return n;
}

static bool field_is(const struct field *f, const char *word)
{
	return f->len == strlen(word) && memcmp(f->s, word, f->len) == 0;
}

/* Strict decimal: digits only, no sign, no overflow past max. */
static bool parse_dec(const struct field *f, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (f->len == 0 || f->len > 20)
		return false;
	for (size_t i = 0; i < f->len; i++) {
		unsigned d = (unsigned)(f->s[i] - '0');

		if (d > 9 || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static bool parse_addr(const struct field *f, struct mm_addr *a)
{
	char buf[MM_ADDR_STRLEN];

	if (f->len == 0 || f->len >= sizeof(buf))
		return false;
	memcpy(buf, f->s, f->len);
	buf[f->len] = '\0';
	return mm_addr_parse(a, buf) == 0;
}

typedef int (*line_fn)(struct geo_load *l, void *state, uint64_t no, const char *s, size_t len);

/* Runs fn over every line of path; comment and blank lines are fn's business. */
static int load_lines(struct mm_geo_builder *b, const char *kind, const char *path, line_fn fn, void *state,
		      struct mm_geo_load_report *report)
{
	struct geo_load l;
	char *buf = NULL;
	size_t len = 0, pos = 0;
	uint64_t no = 0;
	int rc;

	if (report)
		memset(report, 0, sizeof(*report));
	if ((rc = geo_load_begin(&l, b, kind, path)) < 0)
		return rc;
	rc = read_whole(path, &buf, &len);
	while (rc == 0 && pos < len) {
		const char *s = buf + pos, *nl = memchr(s, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - s) : len - pos;

		pos += n + (nl != NULL);
		no++;
		l.rep.n_lines++;
		if (n && s[n - 1] == '\r')
			n--;
		if (n > GEO_MAX_LINE)
			geo_load_bad(&l, no, "line of %zu bytes is longer than %u", n, GEO_MAX_LINE);
		else if (memchr(s, '\0', n))
			geo_load_bad(&l, no, "line contains a NUL byte");
		else
			rc = fn(&l, state, no, s, n);
	}
	free(buf);
	return geo_load_end(&l, rc, report);
}

static void trim(const char **s, size_t *len)
{
	while (*len && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

/* ---- RIR statistics exchange format ---- */

struct rir_state {
	bool seen_record; /* the version line may only come first */
};

static bool is_version(const struct field *f)
{
	if (f->len == 0 || f->s[0] < '0' || f->s[0] > '9')
		return false;
	for (size_t i = 0; i < f->len; i++)
		if ((f->s[i] < '0' || f->s[i] > '9') && f->s[i] != '.')
			return false;
	return true;
}

static int rir_ipv4(struct geo_load *l, uint64_t no, const struct field *f, const char cc[2])
{
	struct mm_addr first, last;
	uint64_t count, start;

	if (!parse_addr(&f[3], &first) || !mm_addr_is_v4(&first)) {
		geo_load_bad(l, no, "ipv4 start '%.*s' is not an IPv4 address", (int)f[3].len, f[3].s);
		return 0;
	}
	start = mm_addr_v4_u32(&first);
	if (!parse_dec(&f[4], 1ull << 32, &count) || count == 0 || start + count > (1ull << 32)) {
		geo_load_bad(l, no, "ipv4 count '%.*s' is not 1..%llu", (int)f[4].len, f[4].s,
			     (unsigned long long)((1ull << 32) - start));
		return 0;
	}
	mm_addr_set_v4_u32(&last, (uint32_t)(start + count - 1));
	l->rep.n_records++;
	return geo_add_range(l, &first, &last, cc, 0);
}

static int rir_ipv6(struct geo_load *l, uint64_t no, const struct field *f, const char cc[2])
{
	struct mm_prefix p;
	struct mm_addr a;
	uint64_t len;

	if (!parse_addr(&f[3], &a) || mm_addr_is_v4(&a)) {
		geo_load_bad(l, no, "ipv6 start '%.*s' is not an IPv6 address", (int)f[3].len, f[3].s);
		return 0;
	}
	if (!parse_dec(&f[4], 128, &len)) {
		geo_load_bad(l, no, "ipv6 prefix length '%.*s' is not 0..128", (int)f[4].len, f[4].s);
		return 0;
	}
	mm_prefix_from_addr(&p, &a, (unsigned)len);
	if (!mm_addr_eq(&p.addr, &a)) {
		geo_load_bad(l, no, "ipv6 start '%.*s' has bits set beyond /%u", (int)f[3].len, f[3].s, (unsigned)len);
		return 0;
	}
	l->rep.n_records++;
	return geo_add_prefix(l, &p, cc, 0);
}

static int rir_line(struct geo_load *l, void *state, uint64_t no, const char *s, size_t len)
{
	struct rir_state *st = state;
	struct field f[GEO_MAX_FIELDS];
	size_t nf;
	uint64_t v;
	char cc[2];

	if (len == 0 || s[0] == '#')
		return 0;
	nf = split(s, len, '|', f, GEO_MAX_FIELDS);
	if (!st->seen_record) {
		st->seen_record = true;
		if (is_version(&f[0]))
			return 0;
	}
	if (nf >= 6 && field_is(&f[5], "summary")) {
		l->rep.n_skipped++;
		return 0;
	}
	if (nf < 7) {
		geo_load_bad(l, no, "%zu '|'-separated fields, a record has at least 7", nf);
		return 0;
	}
	if (!field_is(&f[2], "ipv4") && !field_is(&f[2], "ipv6") && !field_is(&f[2], "asn")) {
		geo_load_bad(l, no, "unknown record type '%.*s'", (int)f[2].len, f[2].s);
		return 0;
	}
	if (field_is(&f[6], "available") || field_is(&f[6], "reserved")) {
		l->rep.n_skipped++;
		return 0;
	}
	if (!field_is(&f[6], "allocated") && !field_is(&f[6], "assigned")) {
		geo_load_bad(l, no, "unknown status '%.*s'", (int)f[6].len, f[6].s);
		return 0;
	}
	if (!geo_parse_cc(f[1].s, f[1].len, cc)) {
		geo_load_bad(l, no, "country '%.*s' is not two letters", (int)f[1].len, f[1].s);
		return 0;
	}
	if (field_is(&f[2], "asn")) {
		/* AS numbers carry no address: checked, then counted as skipped. */
		if (!parse_dec(&f[3], UINT32_MAX, &v) || !parse_dec(&f[4], 1ull << 32, &v))
			geo_load_bad(l, no, "asn record '%.*s|%.*s' is not numeric", (int)f[3].len, f[3].s,
				     (int)f[4].len, f[4].s);
		else
			l->rep.n_skipped++;
		return 0;
	}
	if (cc[0] == 'Z' && cc[1] == 'Z') { /* "unknown" in the format */
		l->rep.n_skipped++;
		return 0;
	}
	return field_is(&f[2], "ipv4") ? rir_ipv4(l, no, f, cc) : rir_ipv6(l, no, f, cc);
}

int mm_geo_builder_add_rir(struct mm_geo_builder *b, const char *path, struct mm_geo_load_report *report)
{
	struct rir_state st = { 0 };

	return load_lines(b, "rir", path, rir_line, &st, report);
}

/* ---- per-country CIDR lists ---- */

static int cidr_line(struct geo_load *l, void *state, uint64_t no, const char *s, size_t len)
{
	const char *cc = state, *hash = memchr(s, '#', len);
	char buf[MM_PREFIX_STRLEN];
	struct mm_prefix p;

	if (hash)
		len = (size_t)(hash - s);
	trim(&s, &len);
	if (len == 0)
		return 0;
	if (len >= sizeof(buf)) {
		geo_load_bad(l, no, "'%.*s…' is not a CIDR prefix", 40, s);
		return 0;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (mm_prefix_parse(&p, buf, false) < 0) {
		geo_load_bad(l, no, "%s", mm_last_error());
		return 0;
	}
	l->rep.n_records++;
	return geo_add_prefix(l, &p, cc, 0);
}

int mm_geo_builder_add_cidr_list(struct mm_geo_builder *b, const char *path, const char *cc,
				 struct mm_geo_load_report *report)
{
	char code[2];

	if (report)
		memset(report, 0, sizeof(*report));
	if (!cc || !geo_parse_cc(cc, strlen(cc), code))
		return mm_fail(MM_EINVAL, "geo: %s: country '%s' is not two letters", path, cc ? cc : "");
	return load_lines(b, "cidr", path, cidr_line, code, report);
}

/* ---- iptoasn.com TSV ---- */

static int tsv_line(struct geo_load *l, void *state, uint64_t no, const char *s, size_t len)
{
	struct field f[GEO_MAX_FIELDS];
	struct mm_addr first, last;
	uint64_t asn;
	char cc[2];
	bool has_cc;
	size_t nf;

	(void)state;
	if (len == 0 || s[0] == '#')
		return 0;
	nf = split(s, len, '\t', f, GEO_MAX_FIELDS);
	if (nf >= 1 && field_is(&f[0], "range_start")) { /* a column header */
		l->rep.n_skipped++;
		return 0;
	}
	if (nf < 4) {
		geo_load_bad(l, no, "%zu tab-separated fields, expected range_start, range_end, ASN, country", nf);
		return 0;
	}
	if (!parse_addr(&f[0], &first) || !parse_addr(&f[1], &last) ||
	    mm_addr_is_v4(&first) != mm_addr_is_v4(&last) || mm_addr_cmp(&first, &last) > 0) {
		geo_load_bad(l, no, "'%.*s'..'%.*s' is not an address range", (int)f[0].len, f[0].s, (int)f[1].len,
			     f[1].s);
		return 0;
	}
	if (!parse_dec(&f[2], UINT32_MAX, &asn)) {
		geo_load_bad(l, no, "ASN '%.*s' is not 0..4294967295", (int)f[2].len, f[2].s);
		return 0;
	}
	/* iptoasn writes "None" where no country is known (unrouted space). */
	has_cc = !(f[3].len == 0 || field_is(&f[3], "None") || field_is(&f[3], "ZZ"));
	if (has_cc && !geo_parse_cc(f[3].s, f[3].len, cc)) {
		geo_load_bad(l, no, "country '%.*s' is not two letters", (int)f[3].len, f[3].s);
		return 0;
	}
	if (!has_cc && asn == 0) {
		l->rep.n_skipped++;
		return 0;
	}
	l->rep.n_records++;
	return geo_add_range(l, &first, &last, has_cc ? cc : NULL, (uint32_t)asn);
}

int mm_geo_builder_add_asn_tsv(struct mm_geo_builder *b, const char *path, struct mm_geo_load_report *report)
{
	return load_lines(b, "asn", path, tsv_line, NULL, report);
}
