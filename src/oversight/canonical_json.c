/*
 * RFC 8785 JSON Canonicalization Scheme over jansson values: the bytes the
 * panel signs. Object members sorted by their names' UTF-16 code units,
 * strings escaped as ECMAScript's JSON.stringify does, numbers written as
 * ECMAScript's Number.prototype.toString, no whitespace. Two documents that
 * mean the same thing give the same bytes, so a signature survives any
 * reformatting of the file on disk.
 */
#include "mamori/oversight.h"
#include "mamori/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Nesting deeper than any oversight document needs; a guard against runaway recursion. */
#define CANON_MAX_DEPTH 64
/* Output cap: authorizations and statements are a few kilobytes. */
#define CANON_MAX_BYTES (16u << 20)

struct canon_buf {
	char *p;
	size_t len, cap;
};

static int buf_put(struct canon_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *grown;

		while (cap < b->len + n + 1)
			cap *= 2;
		if (cap > CANON_MAX_BYTES)
			return mm_fail(MM_ELIMIT, "canonical json: document longer than %u bytes", CANON_MAX_BYTES);
		grown = realloc(b->p, cap);
		if (!grown)
			return mm_fail(MM_ENOMEM, "canonical json: out of memory");
		b->p = grown;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int buf_puts(struct canon_buf *b, const char *s)
{
	return buf_put(b, s, strlen(s));
}

/* ES6 24.3.2.2 QuoteJSONString, as RFC 8785 §3.2.2.2 restates it. */
static int put_string(struct canon_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;
	int rc = buf_put(b, "\"", 1);

	for (size_t i = 0; rc == 0 && i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7] = { '\\', 0 };
		size_t esc_len = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\t': esc[1] = 't'; break;
		case '\n': esc[1] = 'n'; break;
		case '\f': esc[1] = 'f'; break;
		case '\r': esc[1] = 'r'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			esc_len = 6;
		}
		rc = buf_put(b, s + run, i - run);
		if (rc == 0)
			rc = buf_put(b, esc, esc_len);
		run = i + 1;
	}
	if (rc == 0)
		rc = buf_put(b, s + run, n - run);
	return rc ? rc : buf_put(b, "\"", 1);
}

int mm_json_number_format(double d, char buf[MM_JSON_NUMBER_STRLEN])
{
	char tmp[40], digits[20];
	size_t k = 0;
	int p, e, n;
	char *q = buf;

	if (!isfinite(d))
		return mm_fail(MM_EINVAL, "canonical json: %s is not a JSON number", isnan(d) ? "NaN" : "Infinity");
	if (d == 0) {
		strcpy(buf, "0"); /* minus zero too */
		return 0;
	}
	if (d < 0) {
		*q++ = '-';
		d = -d;
	}
	/* The fewest significant digits that read back as d; printf rounds
	 * correctly, so that is the closest such decimal, as ES6 Note 2 asks. */
	for (p = 1; p <= 17; p++) {
		snprintf(tmp, sizeof(tmp), "%.*e", p - 1, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	for (const char *t = tmp; *t && *t != 'e'; t++)
		if (*t >= '0' && *t <= '9')
			digits[k++] = *t;
	while (k > 1 && digits[k - 1] == '0')
		k--;
	e = atoi(strchr(tmp, 'e') + 1);
	n = e + 1; /* the decimal point sits after n digits */
	if ((int)k <= n && n <= 21) {
		memcpy(q, digits, k);
		q += k;
		for (int i = (int)k; i < n; i++)
			*q++ = '0';
	} else if (0 < n && n <= 21) {
		memcpy(q, digits, (size_t)n);
		q += n;
		*q++ = '.';
		memcpy(q, digits + n, k - (size_t)n);
		q += k - (size_t)n;
	} else if (-6 < n && n <= 0) {
		*q++ = '0';
		*q++ = '.';
		for (int i = 0; i < -n; i++)
			*q++ = '0';
		memcpy(q, digits, k);
		q += k;
	} else {
		*q++ = digits[0];
		if (k > 1) {
			*q++ = '.';
			memcpy(q, digits + 1, k - 1);
			q += k - 1;
		}
		q += snprintf(q, 8, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
	}
	*q = '\0';
	return 0;
}

/* UTF-16 code units of a UTF-8 string, one at a time (jansson strings are valid UTF-8). */
struct u16_iter {
	const unsigned char *p, *end;
	unsigned pending; /* low surrogate still to come, 0 if none */
};

static long u16_next(struct u16_iter *it)
{
	unsigned c, extra;

	if (it->pending) {
		c = it->pending;
		it->pending = 0;
		return c;
	}
	if (it->p >= it->end)
		return -1;
	c = *it->p++;
	extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
	c &= extra == 3 ? 0x07 : extra == 2 ? 0x0f : extra == 1 ? 0x1f : 0x7f;
	while (extra-- && it->p < it->end)
		c = c << 6 | (*it->p++ & 0x3f);
	if (c >= 0x10000) {
		c -= 0x10000;
		it->pending = 0xdc00 | (c & 0x3ff);
		return 0xd800 | (c >> 10);
	}
	return c;
}

int mm_json_key_compare(const char *a, size_t a_len, const char *b, size_t b_len)
{
	struct u16_iter x = { (const unsigned char *)a, (const unsigned char *)a + a_len, 0 };
	struct u16_iter y = { (const unsigned char *)b, (const unsigned char *)b + b_len, 0 };

	for (;;) {
		long u = u16_next(&x), v = u16_next(&y);

		if (u != v)
			return u < v ? -1 : 1; /* the shorter string (-1) sorts first */
		if (u < 0)
			return 0;
	}
}

struct member {
	const char *key;
	size_t key_len;
	json_t *value;
};

static int member_cmp(const void *pa, const void *pb)
{
	const struct member *a = pa, *b = pb;

	return mm_json_key_compare(a->key, a->key_len, b->key, b->key_len);
}

static int put_value(struct canon_buf *b, const json_t *v, unsigned depth);

static int put_object(struct canon_buf *b, const json_t *v, unsigned depth)
{
	size_t n = json_object_size(v), i = 0;
	struct member *m = calloc(n ? n : 1, sizeof(*m));
	const char *key;
	json_t *value;
	int rc;

	if (!m)
		return mm_fail(MM_ENOMEM, "canonical json: out of memory");
	json_object_foreach((json_t *)v, key, value) {
		m[i].key = key;
		m[i].key_len = json_object_iter_key_len(json_object_key_to_iter(key));
		m[i++].value = value;
	}
	qsort(m, n, sizeof(*m), member_cmp);
	rc = buf_put(b, "{", 1);
	for (i = 0; rc == 0 && i < n; i++) {
		if (i)
			rc = buf_put(b, ",", 1);
		if (rc == 0)
			rc = put_string(b, m[i].key, m[i].key_len);
		if (rc == 0)
			rc = buf_put(b, ":", 1);
		if (rc == 0)
			rc = put_value(b, m[i].value, depth + 1);
	}
	free(m);
	return rc ? rc : buf_put(b, "}", 1);
}

static int put_value(struct canon_buf *b, const json_t *v, unsigned depth)
{
	char num[MM_JSON_NUMBER_STRLEN];
	int rc;

	if (depth > CANON_MAX_DEPTH)
		return mm_fail(MM_ELIMIT, "canonical json: nested deeper than %d", CANON_MAX_DEPTH);
	switch (json_typeof(v)) {
	case JSON_OBJECT: return put_object(b, v, depth);
	case JSON_ARRAY:
		rc = buf_put(b, "[", 1);
		for (size_t i = 0; rc == 0 && i < json_array_size(v); i++) {
			if (i)
				rc = buf_put(b, ",", 1);
			if (rc == 0)
				rc = put_value(b, json_array_get(v, i), depth + 1);
		}
		return rc ? rc : buf_put(b, "]", 1);
	case JSON_STRING: return put_string(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		/* Integers exactly: every integer mamori writes (counts, ASNs,
		 * sensor ids) is below 2^53, where ES6 prints the same digits. */
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf_puts(b, num);
	case JSON_REAL:
		rc = mm_json_number_format(json_real_value(v), num);
		return rc ? rc : buf_puts(b, num);
	case JSON_TRUE: return buf_puts(b, "true");
	case JSON_FALSE: return buf_puts(b, "false");
	case JSON_NULL: return buf_puts(b, "null");
	}
	return mm_fail(MM_EINVAL, "canonical json: unknown value type");
}

int mm_json_canonical(const json_t *v, char **out, size_t *len)
{
	struct canon_buf b = { 0 };
	int rc;

	*out = NULL;
	if (len)
		*len = 0;
	if (!v)
		return mm_fail(MM_EINVAL, "canonical json: no value");
	rc = put_value(&b, v, 0);
	if (rc == 0 && !b.p)
		rc = buf_put(&b, "", 0);
	if (rc) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	if (len)
		*len = b.len;
	return 0;
}
