/*
 * Text loaders: plain lists, FireHOL netsets/ipsets, IPsum and CSV (RFC
 * 4180, header row naming the columns). Each reads a whole buffer line by
 * line (record by record for CSV), adds what parses and reports what does
 * not as "NAME:LINE: reason"; nothing in the input can make it fail except
 * an unusable CSV header. Format detection for AUTO lives here too.
 */
#include "intel/intel_int.h"

#include "mamori/flow.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOAD_FILE_MAX (1ull << 30)
#define CSV_FIELDS_MAX 32

void intel_report(struct intel_load *ld, uint64_t line, const char *fmt, ...)
{
	struct mm_intel_load_stats *st = ld->st;
	char msg[200];
	va_list ap;

	if (st->n_reports >= MM_INTEL_REPORT_KEEP)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line)
		snprintf(st->reports[st->n_reports++], sizeof(st->reports[0]), "%s:%llu: %s", ld->name,
			 (unsigned long long)line, msg);
	else
		snprintf(st->reports[st->n_reports++], sizeof(st->reports[0]), "%s: %s", ld->name, msg);
}

int intel_load_add(struct intel_load *ld, struct mm_intel_indicator *ind)
{
	const struct mm_intel_defaults *def = ld->def;
	int rc;

	if (def->force_source || !ind->source || !*ind->source)
		ind->source = def->source;
	if (ind->tlp == MM_TLP_UNSET)
		ind->tlp = def->tlp;
	if (!ind->expires_ns)
		ind->expires_ns = def->expires_ns;
	rc = mm_intel_set_add(ld->set, ind);
	if (rc)
		return rc;
	ld->st->n_loaded++;
	if (ind->expires_ns && ind->expires_ns <= ld->now_ns)
		ld->st->n_expired++;
	return 0;
}

int intel_parse_asn(const char *text, uint32_t *out)
{
	const char *p = (strncasecmp(text, "AS", 2) == 0) ? text + 2 : text;
	unsigned long long v = 0;

	if (!*p)
		return MM_EINVAL;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return MM_EINVAL;
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT32_MAX)
			return MM_EINVAL;
	}
	*out = (uint32_t)v;
	return 0;
}

/* Adds ind; a record the set refuses (a bad source name…) is a bad line, not a failure. */
static int add_or_report(struct intel_load *ld, uint64_t line, struct mm_intel_indicator *ind)
{
	int rc = intel_load_add(ld, ind);

	if (rc != MM_EINVAL)
		return rc;
	ld->st->n_bad++;
	intel_report(ld, line, "%s", mm_last_error());
	return 0;
}

/* Decimal in [0, max]; 0 or MM_EINVAL. */
static int parse_uint(const char *text, unsigned long max, unsigned long *out)
{
	unsigned long v = 0;

	if (!*text)
		return MM_EINVAL;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return MM_EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
		if (v > max)
			return MM_EINVAL;
	}
	*out = v;
	return 0;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* An address or prefix as lists write it; a reason on failure. */
static const char *parse_prefix_text(const char *text, struct mm_prefix *out)
{
	if (mm_prefix_parse(out, text, false) == 0)
		return NULL;
	if (mm_prefix_parse(out, text, true) == 0)
		return "host bits set beyond the prefix length";
	return "not an IP address or prefix";
}

/* ---- line iteration ---- */

struct line_iter {
	const char *buf;
	size_t len, pos;
	uint64_t line;
	char text[MM_INTEL_LINE_MAX];
};

enum line_status { LINE_OK, LINE_END, LINE_LONG, LINE_NUL };

static enum line_status next_line(struct line_iter *it)
{
	const char *start, *nl;
	size_t n;

	if (it->pos >= it->len)
		return LINE_END;
	start = it->buf + it->pos;
	nl = memchr(start, '\n', it->len - it->pos);
	n = nl ? (size_t)(nl - start) : it->len - it->pos;
	it->pos += n + (nl ? 1 : 0);
	it->line++;
	if (n >= sizeof(it->text))
		return LINE_LONG;
	if (memchr(start, '\0', n))
		return LINE_NUL;
	memcpy(it->text, start, n);
	it->text[n] = '\0';
	return LINE_OK;
}

static void line_iter_init(struct line_iter *it, const char *buf, size_t len)
{
	it->buf = buf;
	it->len = len;
	it->pos = (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) ? 3 : 0; /* UTF-8 BOM */
	it->line = 0;
}

static void copy_meta(char *dst, size_t dst_len, const char *src)
{
	snprintf(dst, dst_len, "%s", src);
}

/* FireHOL and IPsum headers: "# Key : value" lines worth keeping. */
static void header_comment(struct intel_load *ld, const char *comment, char *tags, size_t tags_len)
{
	struct mm_intel_load_stats *st = ld->st;
	const char *colon = strchr(comment, ':');
	const char *p;
	char key[32];
	size_t klen;

	if ((p = strstr(comment, "ipset=")) != NULL) {
		copy_meta(st->list_name, sizeof(st->list_name), p + 6);
		return;
	}
	if (strncmp(comment, "Last update:", 12) == 0) { /* IPsum */
		char v[64];

		copy_meta(v, sizeof(v), comment + 12);
		copy_meta(st->list_date, sizeof(st->list_date), trim(v));
		return;
	}
	if (!colon)
		return;
	klen = (size_t)(colon - comment);
	if (klen >= sizeof(key))
		return;
	memcpy(key, comment, klen);
	key[klen] = '\0';
	p = colon + 1;
	while (*p == ' ')
		p++;
	if (strcmp(trim(key), "Maintainer") == 0)
		copy_meta(st->maintainer, sizeof(st->maintainer), p);
	else if (strcmp(key, "This File Date") == 0)
		copy_meta(st->list_date, sizeof(st->list_date), p);
	else if (strcmp(key, "Category") == 0 && !*tags)
		copy_meta(tags, tags_len, p);
}

/*
 * Plain lists, FireHOL sets and IPsum: one indicator per line; '#' and ';'
 * start a comment anywhere on a line. IPsum lines carry a count of lists
 * after a tab, which becomes the confidence (10 per list, at most 100).
 */
static int load_lines(struct intel_load *ld, const char *buf, size_t len, enum mm_intel_format fmt)
{
	struct line_iter *it = malloc(sizeof(*it));
	const char *base = strrchr(ld->name, '/') ? strrchr(ld->name, '/') + 1 : ld->name;
	char tags[64] = "", id[MM_INTEL_FIELD_MAX];
	enum line_status ls;
	bool in_header = true;
	int rc = 0;

	if (!it)
		return mm_fail(MM_ENOMEM, "intel: %s: line buffer", ld->name);
	line_iter_init(it, buf, len);
	while ((ls = next_line(it)) != LINE_END) {
		struct mm_intel_indicator ind;
		char *text, *comment, *value, *rest;
		const char *why;

		ld->st->n_lines++;
		if (ls != LINE_OK) {
			ld->st->n_bad++;
			intel_report(ld, it->line, ls == LINE_LONG ? "line longer than %d bytes" : "NUL byte in line",
				     MM_INTEL_LINE_MAX - 1);
			continue;
		}
		text = it->text;
		comment = strpbrk(text, "#;");
		if (comment) {
			*comment++ = '\0';
			if (in_header && fmt != MM_INTEL_FMT_LIST && !*trim(text))
				header_comment(ld, trim(comment), tags, sizeof(tags));
		}
		text = trim(text);
		if (!*text)
			continue;
		in_header = false;
		value = text;
		rest = value + strcspn(value, " \t");
		if (*rest)
			*rest++ = '\0';
		rest = trim(rest);
		memset(&ind, 0, sizeof(ind));
		ind.kind = MM_INTEL_PREFIX;
		ind.confidence = ld->def->confidence;
		if (fmt == MM_INTEL_FMT_IPSUM) {
			unsigned long count;

			if (parse_uint(rest, 1000000, &count) != 0) {
				ld->st->n_bad++;
				intel_report(ld, it->line, "IPsum line needs ADDRESS<TAB>COUNT, got count '%.32s'", rest);
				continue;
			}
			ind.confidence = (uint8_t)(count >= 10 ? 100 : count * 10);
		} else if (*rest) {
			ld->st->n_bad++;
			intel_report(ld, it->line, "unexpected text after '%.48s'", value);
			continue;
		}
		why = parse_prefix_text(value, &ind.prefix);
		if (why) {
			ld->st->n_bad++;
			intel_report(ld, it->line, "'%.48s': %s", value, why);
			continue;
		}
		snprintf(id, sizeof(id), "%.200s:%llu", base, (unsigned long long)it->line);
		ind.id = id;
		ind.tags = tags;
		if ((rc = add_or_report(ld, it->line, &ind)))
			break;
	}
	free(it);
	return rc;
}

/* ---- CSV (RFC 4180) ---- */

enum csv_col { COL_INDICATOR, COL_TYPE, COL_SOURCE, COL_CONFIDENCE, COL_TAGS, COL_TLP,
	       COL_FIRST_SEEN, COL_LAST_SEEN, COL_EXPIRES, COL_ID, N_COLS };

static const char *const csv_col_names[N_COLS] = {
	"indicator", "type", "source", "confidence", "tags", "tlp", "first_seen", "last_seen", "expires", "id",
};

struct csv_reader {
	const char *buf;
	size_t len, pos;
	uint64_t line;       /* current line (1-based after the first record starts) */
	uint64_t rec_line;   /* line the current record started on */
	char scratch[MM_INTEL_LINE_MAX];
	char *fields[CSV_FIELDS_MAX];
	size_t n_fields;
};

enum csv_status { CSV_OK, CSV_END, CSV_BAD };

/*
 * Reads one record into fields (unescaped, NUL-terminated, in scratch).
 * On CSV_BAD the reason is in *why and the reader stands after the record.
 */
static enum csv_status csv_next(struct csv_reader *r, const char **why)
{
	size_t out = 0;
	bool quoted = false, after_quote = false, field_start = true;

	*why = NULL;
	if (r->pos >= r->len)
		return CSV_END;
	r->line++;
	r->rec_line = r->line;
	r->n_fields = 0;
	r->fields[r->n_fields++] = r->scratch;
	while (r->pos < r->len) {
		char c = r->buf[r->pos++];

		if (quoted) {
			if (c == '"') {
				if (r->pos < r->len && r->buf[r->pos] == '"') {
					r->pos++;
				} else {
					quoted = false;
					after_quote = true;
					continue;
				}
			} else if (c == '\n') {
				r->line++;
			}
		} else if (c == '\r' && (r->pos >= r->len || r->buf[r->pos] == '\n')) {
			continue; /* CRLF */
		} else if (c == ',' || c == '\n') {
			if (out >= sizeof(r->scratch))
				*why = *why ? *why : "record too long";
			else
				r->scratch[out++] = '\0';
			if (c == '\n') {
				return *why ? CSV_BAD : CSV_OK;
			}
			if (r->n_fields == CSV_FIELDS_MAX) {
				*why = *why ? *why : "too many fields";
			} else if (!*why) {
				r->fields[r->n_fields++] = r->scratch + out;
			}
			after_quote = false;
			field_start = true;
			continue;
		} else if (c == '"') {
			if (!field_start && !*why)
				*why = "quote inside an unquoted field";
			quoted = true;
			field_start = false;
			continue;
		} else if (after_quote) {
			if (!*why)
				*why = "text after a closing quote";
		}
		field_start = false;
		if (c == '\0' && !*why)
			*why = "NUL byte in record";
		if (out + 1 >= sizeof(r->scratch)) {
			if (!*why)
				*why = "record too long";
			continue;
		}
		r->scratch[out++] = c;
	}
	if (quoted)
		*why = "quoted field not closed before end of file";
	if (*why)
		return CSV_BAD;
	r->scratch[out] = '\0';
	return CSV_OK;
}

/* Maps header fields to columns; MM_EFORMAT naming the bad column. */
static int csv_header(struct intel_load *ld, struct csv_reader *r, int col_of_field[CSV_FIELDS_MAX])
{
	bool seen[N_COLS] = { false };

	for (size_t i = 0; i < r->n_fields; i++) {
		char *name = trim(r->fields[i]);
		int col = -1;

		for (int c = 0; c < N_COLS; c++)
			if (strcasecmp(name, csv_col_names[c]) == 0)
				col = c;
		if (col < 0)
			return mm_fail(MM_EFORMAT, "%s:%llu: unknown CSV column '%.40s' (columns: indicator,type,"
				       "source,confidence,tags,tlp,first_seen,last_seen,expires,id)",
				       ld->name, (unsigned long long)r->rec_line, name);
		if (seen[col])
			return mm_fail(MM_EFORMAT, "%s:%llu: CSV column '%s' twice", ld->name,
				       (unsigned long long)r->rec_line, name);
		seen[col] = true;
		col_of_field[i] = col;
	}
	if (!seen[COL_INDICATOR])
		return mm_fail(MM_EFORMAT, "%s:%llu: CSV header has no 'indicator' column", ld->name,
			       (unsigned long long)r->rec_line);
	return 0;
}

/* The indicator column under its type; a reason on failure. */
static const char *csv_indicator(const char *value, const char *type, struct mm_intel_indicator *ind)
{
	if (!*type) {
		if (intel_parse_asn(value, &ind->asn) == 0 && strncasecmp(value, "AS", 2) == 0) {
			ind->kind = MM_INTEL_ASN;
			return NULL;
		}
		ind->kind = MM_INTEL_PREFIX;
		return parse_prefix_text(value, &ind->prefix);
	}
	if (strcasecmp(type, "asn") == 0 || strcasecmp(type, "as") == 0 ||
	    strcasecmp(type, "autonomous-system") == 0) {
		ind->kind = MM_INTEL_ASN;
		return intel_parse_asn(value, &ind->asn) ? "not an AS number" : NULL;
	}
	if (strcasecmp(type, "port") == 0) {
		const char *slash = strchr(value, '/');
		unsigned long port;
		char proto[16];

		ind->kind = MM_INTEL_PORT;
		if (slash) {
			if ((size_t)(slash - value) >= sizeof(proto))
				return "bad protocol before '/'";
			memcpy(proto, value, (size_t)(slash - value));
			proto[slash - value] = '\0';
			if (mm_proto_parse(proto, &ind->proto) != 0)
				return "bad protocol before '/'";
			value = slash + 1;
		}
		if (parse_uint(value, 65535, &port) != 0)
			return "port must be 0..65535, optionally PROTO/PORT";
		ind->port = (uint16_t)port;
		return NULL;
	}
	static const char *const prefix_types[] = { "ip", "ipv4", "ipv6", "ipv4-addr", "ipv6-addr",
						    "cidr", "prefix", "net" };
	for (size_t i = 0; i < sizeof(prefix_types) / sizeof(prefix_types[0]); i++) {
		if (strcasecmp(type, prefix_types[i]) == 0) {
			ind->kind = MM_INTEL_PREFIX;
			return parse_prefix_text(value, &ind->prefix);
		}
	}
	return "unknown type (ip, ipv4, ipv6, cidr, prefix, asn, port)";
}

static const char *csv_time(const char *text, uint64_t now_ns, uint64_t *out)
{
	if (!*text) {
		*out = 0;
		return NULL;
	}
	return mm_time_parse(text, now_ns, out) == 0 ? NULL : "bad time";
}

/* One data record into ind; a reason naming the column on failure. */
static const char *csv_record(struct intel_load *ld, struct csv_reader *r, const int *col_of_field,
			      struct mm_intel_indicator *ind, char *id, size_t id_len, char *why_buf,
			      size_t why_len)
{
	const char *v[N_COLS];
	const char *why;
	unsigned long conf;

	for (int c = 0; c < N_COLS; c++)
		v[c] = "";
	for (size_t i = 0; i < r->n_fields; i++)
		v[col_of_field[i]] = trim(r->fields[i]);
	memset(ind, 0, sizeof(*ind));
	why = csv_indicator(v[COL_INDICATOR], v[COL_TYPE], ind);
	if (why) {
		snprintf(why_buf, why_len, "indicator '%.48s': %s", v[COL_INDICATOR], why);
		return why_buf;
	}
	ind->confidence = ld->def->confidence;
	if (*v[COL_CONFIDENCE]) {
		if (parse_uint(v[COL_CONFIDENCE], 100, &conf) != 0)
			return "confidence must be 0..100";
		ind->confidence = (uint8_t)conf;
	}
	if (mm_tlp_parse(v[COL_TLP], &ind->tlp) != 0)
		return "tlp must be clear, green, amber, amber+strict or red";
	if ((why = csv_time(v[COL_FIRST_SEEN], ld->now_ns, &ind->first_seen_ns)) != NULL)
		return "first_seen: bad time";
	if ((why = csv_time(v[COL_LAST_SEEN], ld->now_ns, &ind->last_seen_ns)) != NULL)
		return "last_seen: bad time";
	if ((why = csv_time(v[COL_EXPIRES], ld->now_ns, &ind->expires_ns)) != NULL)
		return "expires: bad time";
	ind->source = v[COL_SOURCE];
	ind->tags = v[COL_TAGS];
	if (*v[COL_ID]) {
		ind->id = v[COL_ID];
	} else {
		const char *base = strrchr(ld->name, '/') ? strrchr(ld->name, '/') + 1 : ld->name;

		snprintf(id, id_len, "%.200s:%llu", base, (unsigned long long)r->rec_line);
		ind->id = id;
	}
	return NULL;
}

static bool csv_blank(const struct csv_reader *r)
{
	return r->n_fields == 1 && *trim(r->fields[0]) == '\0';
}

static int load_csv(struct intel_load *ld, const char *buf, size_t len)
{
	struct csv_reader *r = malloc(sizeof(*r));
	int col_of_field[CSV_FIELDS_MAX];
	char id[MM_INTEL_FIELD_MAX], why_buf[120];
	size_t n_header = 0;
	enum csv_status cs;
	const char *why;
	int rc = 0;

	if (!r)
		return mm_fail(MM_ENOMEM, "intel: %s: CSV buffer", ld->name);
	memset(r, 0, offsetof(struct csv_reader, scratch));
	r->buf = buf;
	r->len = len;
	r->pos = (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) ? 3 : 0;
	while ((cs = csv_next(r, &why)) != CSV_END) {
		struct mm_intel_indicator ind;

		ld->st->n_lines = r->line;
		if (cs == CSV_OK && csv_blank(r))
			continue;
		if (n_header == 0) {
			if (cs == CSV_BAD) {
				rc = mm_fail(MM_EFORMAT, "%s:%llu: CSV header: %s", ld->name,
					     (unsigned long long)r->rec_line, why);
				break;
			}
			rc = csv_header(ld, r, col_of_field);
			if (rc)
				break;
			n_header = r->n_fields;
			continue;
		}
		if (cs == CSV_OK && r->n_fields != n_header)
			why = r->n_fields < n_header ? "fewer fields than the header" : "more fields than the header";
		if (!why)
			why = csv_record(ld, r, col_of_field, &ind, id, sizeof(id), why_buf, sizeof(why_buf));
		if (why) {
			ld->st->n_bad++;
			intel_report(ld, r->rec_line, "%s", why);
			continue;
		}
		if ((rc = add_or_report(ld, r->rec_line, &ind)))
			break;
	}
	if (!rc && n_header == 0)
		rc = mm_fail(MM_EFORMAT, "%s: CSV without a header row", ld->name);
	free(r);
	return rc;
}

/* ---- format detection and entry points ---- */

static enum mm_intel_format detect_format(const char *buf, size_t len)
{
	size_t i = (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0) ? 3 : 0;
	bool firehol = false, ipsum = false;

	while (i < len && isspace((unsigned char)buf[i]))
		i++;
	if (i < len && buf[i] == '{')
		return MM_INTEL_FMT_STIX;
	/* Look at comment lines and the first data line. */
	while (i < len) {
		const char *line = buf + i, *nl = memchr(line, '\n', len - i);
		size_t n = nl ? (size_t)(nl - line) : len - i;

		i += n + 1;
		if (n == 0)
			continue;
		if (line[0] == '#' || line[0] == ';') {
			if (memmem(line, n, "FireHOL", 7) || memmem(line, n, "ipset", 5))
				firehol = true;
			if (memmem(line, n, "IPsum", 5))
				ipsum = true;
			continue;
		}
		if (memmem(line, n, "indicator", 9) && memchr(line, ',', n))
			return MM_INTEL_FMT_CSV;
		if (ipsum || memchr(line, '\t', n))
			return MM_INTEL_FMT_IPSUM;
		break;
	}
	return firehol ? MM_INTEL_FMT_FIREHOL : MM_INTEL_FMT_LIST;
}

int mm_intel_load_buf(struct mm_intel_set *set, const char *name, const char *buf, size_t len,
		      enum mm_intel_format fmt, const struct mm_intel_defaults *def,
		      struct mm_intel_load_stats *stats)
{
	struct mm_intel_load_stats local;
	struct intel_load ld = { set, name, def, stats ? stats : &local, mm_time_now_ns() };

	memset(ld.st, 0, sizeof(*ld.st));
	if (!def->source)
		return mm_fail(MM_EINVAL, "intel: %s: no source name given", name);
	if (fmt == MM_INTEL_FMT_AUTO)
		fmt = detect_format(buf, len);
	ld.st->format = fmt;
	switch (fmt) {
	case MM_INTEL_FMT_CSV:
		return load_csv(&ld, buf, len);
	case MM_INTEL_FMT_STIX:
		return intel_load_stix(&ld, buf, len);
	default:
		return load_lines(&ld, buf, len, fmt);
	}
}

int mm_intel_load_file(struct mm_intel_set *set, const char *path, enum mm_intel_format fmt,
		       const struct mm_intel_defaults *def, struct mm_intel_load_stats *stats)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	char *buf = NULL;
	size_t got = 0;
	int rc;

	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "intel: %s: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		rc = mm_fail(MM_EIO, "intel: %s: not a regular file", path);
		goto out;
	}
	if ((unsigned long long)sb.st_size > LOAD_FILE_MAX) {
		rc = mm_fail(MM_ELIMIT, "intel: %s: larger than 1 GiB", path);
		goto out;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		rc = mm_fail(MM_ENOMEM, "intel: %s: %lld bytes", path, (long long)sb.st_size);
		goto out;
	}
	while (got < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = mm_fail(MM_EIO, "intel: reading %s: %s", path, n ? strerror(errno) : "short read");
			goto out;
		}
		got += (size_t)n;
	}
	buf[got] = '\0';
	rc = mm_intel_load_buf(set, path, buf, got, fmt, def, stats);
out:
	free(buf);
	close(fd);
	return rc;
}
