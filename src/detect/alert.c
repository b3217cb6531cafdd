/*
 * The alert model on disk and on screen: one NDJSON object per alert with
 * stable field names and RFC 3339 times (what SIEMs ingest), sealed by a
 * BLAKE2b checksum of the line so a torn or edited line is noticed; the
 * append-only store in <data>/alerts/; and the reader behind `mamori
 * alerts`, which filters, skips damaged lines (counting them) and shows
 * each alert id once.
 */
#include "detect/detect_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUM_FIELD ",\"sum\":\""
#define SUM_HEX 16

char *mm_alert_id(const struct mm_alert *a, char buf[17])
{
	/* A fixed key: the id must be the same in every process that sees the alert. */
	static const struct mm_hash_key id_key = { 0x6d616d6f72692d61ull, 0x6c6572742d696421ull };
	struct {
		uint32_t detector;
		uint16_t port;
		uint8_t src_len, dst_len;
		struct mm_addr src, dst;
		uint64_t first_ns;
		char kind[24];
	} k;

	memset(&k, 0, sizeof(k));
	k.detector = a->detector;
	k.port = a->port;
	k.src = a->src.addr;
	k.dst = a->dst.addr;
	k.src_len = a->src.len;
	k.dst_len = a->dst.len;
	k.first_ns = a->first_ns;
	memcpy(k.kind, a->kind, sizeof(k.kind));
	snprintf(buf, 17, "%016" PRIx64, mm_siphash13(&id_key, &k, sizeof(k)));
	return buf;
}

/* --- writing --------------------------------------------------------------- */

struct jbuf {
	char *p;
	size_t len, used;
	bool over;
};

static void jb_printf(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void jb_printf(struct jbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->over)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->used, b->len - b->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->len - b->used)
		b->over = true;
	else
		b->used += (size_t)n;
}

static void jb_str(struct jbuf *b, const char *s)
{
	jb_printf(b, "\"");
	for (; *s && !b->over; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			jb_printf(b, "\\%c", c);
		else if (c < 0x20)
			jb_printf(b, "\\u%04x", c);
		else
			jb_printf(b, "%c", c);
	}
	jb_printf(b, "\"");
}

static void jb_time(struct jbuf *b, const char *name, uint64_t ns)
{
	char t[MM_TIME_STRLEN];

	jb_printf(b, ",\"%s\":\"%s\"", name, mm_time_format_iso(ns, t));
}

/* A host prefix as its address, any other as ADDR/LEN. */
static char *prefix_text(const struct mm_prefix *p, char buf[MM_PREFIX_STRLEN])
{
	bool host = (mm_addr_is_v4(&p->addr) && p->len == 32) || (!mm_addr_is_v4(&p->addr) && p->len == 128);

	return host ? mm_addr_format(&p->addr, buf) : mm_prefix_format(p, buf);
}

static void jb_proto(struct jbuf *b, uint8_t proto)
{
	char pn[8];

	if (proto)
		jb_printf(b, ",\"proto\":\"%s\"", mm_proto_name(proto, pn));
	else
		jb_printf(b, ",\"proto\":null");
}

int mm_alert_to_json(const struct mm_alert *a, char *buf, size_t len)
{
	struct jbuf b = { buf, len, 0, false };
	char id[17], t[MM_PREFIX_STRLEN];
	unsigned char sum[crypto_generichash_BYTES_MIN];

	if (sodium_init() < 0)
		return mm_fail(MM_EINTERNAL, "alert: libsodium failed to initialise");
	jb_printf(&b, "{\"id\":\"%s\"", mm_alert_id(a, id));
	jb_time(&b, "time", a->emitted_ns);
	jb_printf(&b, ",\"detector\":\"%s\",\"kind\":", mm_detector_name(a->detector));
	jb_str(&b, a->kind);
	jb_printf(&b, ",\"severity\":\"%s\",\"confidence\":%.3f", mm_severity_name(a->severity), a->confidence);
	jb_printf(&b, ",\"src\":\"%s\"", prefix_text(&a->src, t));
	jb_printf(&b, ",\"dst\":\"%s\"", prefix_text(&a->dst, t));
	jb_proto(&b, a->proto);
	jb_printf(&b, ",\"port\":%u", a->port);
	jb_time(&b, "first", a->first_ns);
	jb_time(&b, "last", a->last_ns);
	jb_printf(&b,
		  ",\"evidence\":{\"flows\":%" PRIu64 ",\"packets\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"hosts\":%" PRIu64
		  ",\"ports\":%" PRIu64 ",\"successes\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"rate\":%.3f,\"score\":%.4f"
		  ",\"examples\":[",
		  a->ev.flows, a->ev.packets, a->ev.bytes, a->ev.hosts, a->ev.ports, a->ev.successes, a->ev.failures,
		  a->ev.rate, a->ev.score);
	for (unsigned i = 0; i < a->n_examples && i < MM_ALERT_MAX_EXAMPLES; i++) {
		const struct mm_alert_example *x = &a->examples[i];
		char s[MM_ADDR_STRLEN], d[MM_ADDR_STRLEN];

		jb_printf(&b, "%s{\"src\":\"%s\",\"src_port\":%u,\"dst\":\"%s\",\"dst_port\":%u", i ? "," : "",
			  mm_addr_format(&x->src, s), x->src_port, mm_addr_format(&x->dst, d), x->dst_port);
		jb_proto(&b, x->proto);
		jb_time(&b, "first", x->first_ns);
		jb_printf(&b, "}");
	}
	jb_printf(&b, "]},\"attck\":[");
	for (unsigned i = 0; i < a->n_attck && i < MM_ALERT_MAX_ATTCK; i++) {
		jb_printf(&b, "%s", i ? "," : "");
		jb_str(&b, a->attck[i]);
	}
	jb_printf(&b, "]");
	if (a->has_indicator) {
		const struct mm_alert_indicator *ai = &a->indicator;

		jb_printf(&b, ",\"indicator\":{\"value\":");
		jb_str(&b, ai->value);
		jb_printf(&b, ",\"source\":");
		jb_str(&b, ai->source);
		jb_printf(&b, ",\"id\":");
		jb_str(&b, ai->id);
		jb_printf(&b, ",\"tags\":");
		jb_str(&b, ai->tags);
		jb_printf(&b, ",\"tlp\":");
		jb_str(&b, ai->tlp);
		jb_printf(&b, ",\"confidence\":%u}", ai->confidence);
	}
	jb_printf(&b, ",\"explanation\":");
	jb_str(&b, a->explanation);
	if (b.over)
		return mm_fail(MM_ELIMIT, "alert: JSON form longer than %zu bytes", len);
	crypto_generichash(sum, sizeof(sum), (const unsigned char *)buf, b.used, NULL, 0);
	jb_printf(&b, SUM_FIELD);
	for (size_t i = 0; i < SUM_HEX / 2; i++)
		jb_printf(&b, "%02x", sum[i]);
	jb_printf(&b, "\"}");
	if (b.over)
		return mm_fail(MM_ELIMIT, "alert: JSON form longer than %zu bytes", len);
	return (int)b.used;
}

/* --- reading --------------------------------------------------------------- */

static const char *jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static uint64_t juint(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static double jreal(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : 0;
}

static int jtime(json_t *o, const char *key, uint64_t *out)
{
	const char *s = jstr(o, key);

	if (!s || mm_time_parse(s, 0, out) < 0)
		return mm_fail(MM_EFORMAT, "alert: field '%s' is not an RFC 3339 time", key);
	return 0;
}

static int jprefix(json_t *o, const char *key, struct mm_prefix *out)
{
	const char *s = jstr(o, key);

	if (!s || mm_prefix_parse(out, s, false) < 0)
		return mm_fail(MM_EFORMAT, "alert: field '%s' is not an address or prefix", key);
	return 0;
}

static void jcopy(json_t *o, const char *key, char *dst, size_t len)
{
	const char *s = jstr(o, key);

	snprintf(dst, len, "%s", s ? s : "");
}

static uint8_t jproto(json_t *o)
{
	const char *s = jstr(o, "proto");
	uint8_t p = 0;

	if (s)
		(void)mm_proto_parse(s, &p);
	return p;
}

static int check_sum(const char *line, size_t len)
{
	const char *tail;
	unsigned char sum[crypto_generichash_BYTES_MIN];
	char hex[SUM_HEX + 1];
	size_t body;

	if (sodium_init() < 0)
		return mm_fail(MM_EINTERNAL, "alert: libsodium failed to initialise");
	/* The seal is the last field: ,"sum":"<16 hex>"} */
	if (len < sizeof(SUM_FIELD) - 1 + SUM_HEX + 2)
		return mm_fail(MM_EFORMAT, "alert: line too short");
	body = len - (sizeof(SUM_FIELD) - 1 + SUM_HEX + 2);
	tail = line + body;
	if (memcmp(tail, SUM_FIELD, sizeof(SUM_FIELD) - 1) != 0 || memcmp(line + len - 2, "\"}", 2) != 0)
		return mm_fail(MM_EFORMAT, "alert: no checksum field at the end of the line");
	crypto_generichash(sum, sizeof(sum), (const unsigned char *)line, body, NULL, 0);
	for (size_t i = 0; i < SUM_HEX / 2; i++)
		snprintf(hex + 2 * i, 3, "%02x", sum[i]);
	if (memcmp(hex, tail + sizeof(SUM_FIELD) - 1, SUM_HEX) != 0)
		return mm_fail(MM_EFORMAT, "alert: checksum mismatch (line altered or torn)");
	return 0;
}

int mm_alert_from_json(const char *line, size_t len, struct mm_alert *a)
{
	json_t *o, *ev, *v;
	json_error_t err;
	const char *s;
	int rc;

	memset(a, 0, sizeof(*a));
	if ((rc = check_sum(line, len)) < 0)
		return rc;
	o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
	if (!json_is_object(o)) {
		json_decref(o);
		return mm_fail(MM_EFORMAT, "alert: not a JSON object (%s)", err.text);
	}
	rc = MM_EFORMAT;
	s = jstr(o, "detector");
	if (!s || mm_detector_parse(s, &a->detector) < 0)
		goto out;
	s = jstr(o, "severity");
	if (!s || mm_severity_parse(s, &a->severity) < 0)
		goto out;
	if (jtime(o, "time", &a->emitted_ns) < 0 || jtime(o, "first", &a->first_ns) < 0 ||
	    jtime(o, "last", &a->last_ns) < 0 || jprefix(o, "src", &a->src) < 0 || jprefix(o, "dst", &a->dst) < 0)
		goto out;
	jcopy(o, "kind", a->kind, sizeof(a->kind));
	jcopy(o, "explanation", a->explanation, sizeof(a->explanation));
	a->confidence = jreal(o, "confidence");
	a->proto = jproto(o);
	a->port = (uint16_t)juint(o, "port");
	ev = json_object_get(o, "evidence");
	if (json_is_object(ev)) {
		json_t *ex = json_object_get(ev, "examples");
		size_t i;

		a->ev.flows = juint(ev, "flows");
		a->ev.packets = juint(ev, "packets");
		a->ev.bytes = juint(ev, "bytes");
		a->ev.hosts = juint(ev, "hosts");
		a->ev.ports = juint(ev, "ports");
		a->ev.successes = juint(ev, "successes");
		a->ev.failures = juint(ev, "failures");
		a->ev.rate = jreal(ev, "rate");
		a->ev.score = jreal(ev, "score");
		json_array_foreach(ex, i, v) {
			struct mm_alert_example *x;
			const char *xs = jstr(v, "src"), *xd = jstr(v, "dst");

			if (a->n_examples >= MM_ALERT_MAX_EXAMPLES || !xs || !xd)
				break;
			x = &a->examples[a->n_examples];
			if (mm_addr_parse(&x->src, xs) < 0 || mm_addr_parse(&x->dst, xd) < 0 ||
			    jtime(v, "first", &x->first_ns) < 0)
				goto out;
			x->src_port = (uint16_t)juint(v, "src_port");
			x->dst_port = (uint16_t)juint(v, "dst_port");
			x->proto = jproto(v);
			a->n_examples++;
		}
	}
	{
		size_t i;

		json_array_foreach(json_object_get(o, "attck"), i, v)
			if (json_is_string(v) && a->n_attck < MM_ALERT_MAX_ATTCK)
				snprintf(a->attck[a->n_attck++], sizeof(a->attck[0]), "%s", json_string_value(v));
	}
	v = json_object_get(o, "indicator");
	if (json_is_object(v)) {
		a->has_indicator = true;
		jcopy(v, "value", a->indicator.value, sizeof(a->indicator.value));
		jcopy(v, "source", a->indicator.source, sizeof(a->indicator.source));
		jcopy(v, "id", a->indicator.id, sizeof(a->indicator.id));
		jcopy(v, "tags", a->indicator.tags, sizeof(a->indicator.tags));
		jcopy(v, "tlp", a->indicator.tlp, sizeof(a->indicator.tlp));
		a->indicator.confidence = (unsigned)juint(v, "confidence");
	}
	rc = 0;
out:
	json_decref(o);
	if (rc < 0 && strncmp(mm_last_error(), "alert:", 6) != 0)
		return mm_fail(MM_EFORMAT, "alert: missing or bad field (%s)", mm_last_error());
	return rc;
}

void mm_alert_print_table(FILE *fp, const struct mm_alert *a, bool header)
{
	char t[MM_TIME_STRLEN], s[MM_PREFIX_STRLEN], d[MM_PREFIX_STRLEN];

	if (header)
		fprintf(fp, "%-27s %-10s %-15s %-8s %5s  %-18s %-20s %s\n", "time", "detector", "kind", "severity",
			"conf", "src", "dst", "explanation");
	fprintf(fp, "%-27s %-10s %-15s %-8s %5.2f  %-18s %-20s %s\n", mm_time_format_iso(a->emitted_ns, t),
		mm_detector_name(a->detector), a->kind, mm_severity_name(a->severity), a->confidence,
		prefix_text(&a->src, s), prefix_text(&a->dst, d), a->explanation);
}

/* --- the store --------------------------------------------------------------- */

struct mm_alert_store {
	char *dir;
	int fd;
	uint64_t fd_day;
};

int mm_alert_store_open(struct mm_alert_store **out, const char *data_dir)
{
	struct mm_alert_store *s = calloc(1, sizeof(*s));
	size_t len = strlen(data_dir) + sizeof("/alerts");

	*out = NULL;
	if (!s || !(s->dir = malloc(len))) {
		free(s);
		return mm_fail(MM_ENOMEM, "alerts: store handle");
	}
	snprintf(s->dir, len, "%s/alerts", data_dir);
	s->fd = -1;
	if ((mkdir(data_dir, 0750) < 0 && errno != EEXIST) || (mkdir(s->dir, 0750) < 0 && errno != EEXIST)) {
		int rc = mm_fail(MM_EIO, "alerts: %s: %s", s->dir, strerror(errno));

		mm_alert_store_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int mm_alert_store_append(struct mm_alert_store *s, const struct mm_alert *a)
{
	char line[MM_ALERT_JSON_MAX + 1];
	uint64_t day = a->emitted_ns / (86400 * MM_NS_PER_SEC);
	int n = mm_alert_to_json(a, line, sizeof(line) - 1);
	ssize_t w;

	if (n < 0)
		return n;
	line[n++] = '\n';
	if (s->fd < 0 || day != s->fd_day) {
		char t[MM_TIME_STRLEN], path[4096];

		if (s->fd >= 0)
			close(s->fd);
		mm_time_format_iso(a->emitted_ns, t);
		snprintf(path, sizeof(path), "%s/alerts-%.10s.ndjson", s->dir, t);
		s->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (s->fd < 0)
			return mm_fail(MM_EIO, "alerts: %s: %s", path, strerror(errno));
		s->fd_day = day;
	}
	/* One write per line: with O_APPEND, concurrent writers never interleave inside a line. */
	w = write(s->fd, line, (size_t)n);
	if (w != n)
		return mm_fail(MM_EIO, "alerts: %s: short write (%s)", s->dir, w < 0 ? strerror(errno) : "disk full?");
	return 0;
}

void mm_alert_store_close(struct mm_alert_store *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	free(s->dir);
	free(s);
}

/* Alert ids already shown: an open-addressing set of 64-bit ids that grows. */
struct id_set {
	uint64_t *v;
	size_t cap, n;
};

static int id_set_add(struct id_set *s, uint64_t id, bool *added)
{
	id |= 1; /* 0 marks an empty slot; one bit of an id never decides identity here */
	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *v = calloc(cap, sizeof(*v));

		if (!v)
			return mm_fail(MM_ENOMEM, "alerts: id set of %zu", cap);
		for (size_t i = 0; i < s->cap; i++)
			if (s->v[i])
				for (size_t j = s->v[i] & (cap - 1);; j = (j + 1) & (cap - 1))
					if (!v[j]) {
						v[j] = s->v[i];
						break;
					}
		free(s->v);
		s->v = v;
		s->cap = cap;
	}
	for (size_t j = id & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
		if (s->v[j] == id) {
			*added = false;
			return 0;
		}
		if (!s->v[j]) {
			s->v[j] = id;
			s->n++;
			*added = true;
			return 0;
		}
	}
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool passes(const struct mm_alert_filter *f, const struct mm_alert *a)
{
	if (!f)
		return true;
	if (a->last_ns < f->since_ns || a->first_ns > f->until_ns)
		return false;
	if (f->detectors && !(f->detectors & (1u << a->detector)))
		return false;
	return a->severity >= f->min_severity;
}

static int read_file(const char *path, const struct mm_alert_filter *f, struct id_set *ids,
		     void (*fn)(void *ctx, const struct mm_alert *a), void (*on_bad)(void *ctx, const char *message),
		     void *ctx, struct mm_alert_read_stats *st)
{
	FILE *fp = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0;
	struct mm_alert a;
	int rc = 0;

	if (!fp)
		return mm_fail(MM_EIO, "alerts: %s: %s", path, strerror(errno));
	st->files++;
	while ((n = getline(&line, &cap, fp)) >= 0) {
		char msg[5120], id[17];
		bool added;

		lineno++;
		st->lines++;
		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (n == 0)
			continue;
		if (n > MM_ALERT_JSON_MAX || mm_alert_from_json(line, (size_t)n, &a) < 0) {
			st->bad_lines++;
			snprintf(msg, sizeof(msg), "%s:%lu: %s", path, lineno,
				 n > MM_ALERT_JSON_MAX ? "line too long" : mm_last_error());
			if (on_bad)
				on_bad(ctx, msg);
			continue;
		}
		if (!passes(f, &a))
			continue;
		if ((rc = id_set_add(ids, strtoull(mm_alert_id(&a, id), NULL, 16), &added)) < 0)
			break;
		if (!added) {
			st->duplicates++;
			continue;
		}
		st->matched++;
		fn(ctx, &a);
	}
	if (rc == 0 && ferror(fp))
		rc = mm_fail(MM_EIO, "alerts: %s: read error", path);
	free(line);
	fclose(fp);
	return rc;
}

int mm_alert_store_read(const char *data_dir, const struct mm_alert_filter *f,
			void (*fn)(void *ctx, const struct mm_alert *a),
			void (*on_bad)(void *ctx, const char *message), void *ctx,
			struct mm_alert_read_stats *stats)
{
	struct mm_alert_read_stats st = { 0 };
	struct id_set ids = { 0 };
	char dir[4096], path[4096 + 300];
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *dp;
	int rc = 0;

	snprintf(dir, sizeof(dir), "%s/alerts", data_dir);
	dp = opendir(dir);
	if (!dp)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "alerts: %s: %s", dir, strerror(errno));
	while ((de = readdir(dp)) != NULL) {
		size_t len = strlen(de->d_name);

		if (strncmp(de->d_name, "alerts-", 7) != 0 || len < 8 || strcmp(de->d_name + len - 7, ".ndjson") != 0)
			continue;
		if (n == cap) {
			char **v = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof(*v));

			if (!v) {
				rc = mm_fail(MM_ENOMEM, "alerts: file list");
				goto out;
			}
			names = v;
		}
		if (!(names[n] = strdup(de->d_name))) {
			rc = mm_fail(MM_ENOMEM, "alerts: file list");
			goto out;
		}
		n++;
	}
	qsort(names, n, sizeof(*names), cmp_name);
	for (size_t i = 0; i < n && rc == 0; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		rc = read_file(path, f, &ids, fn, on_bad, ctx, &st);
	}
out:
	closedir(dp);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(ids.v);
	if (stats)
		*stats = st;
	return rc;
}
