/*
 * The ipfix-json output: one JSON object per decoded data record, every
 * field keyed by its IANA element name and rendered by the element's
 * abstract data type (RFC 7012), plus where the record came from. Strings
 * from the wire are escaped here; invalid UTF-8 becomes U+FFFD.
 */
#include "ingest/ingest_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define KEY_LEN 64

static const char *const v9_scope_names[] = { NULL, "scopeSystem", "scopeInterface", "scopeLineCard",
					       "scopeCache", "scopeTemplate" };

static void put_hex(FILE *out, const uint8_t *p, size_t len)
{
	static const char digits[] = "0123456789abcdef";

	fputc('"', out);
	for (size_t i = 0; i < len; i++) {
		fputc(digits[p[i] >> 4], out);
		fputc(digits[p[i] & 15], out);
	}
	fputc('"', out);
}

/* Length of the valid UTF-8 sequence at p (RFC 3629), or 0 if it is not one. */
static size_t utf8_len(const uint8_t *p, size_t avail)
{
	size_t n;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
	} else {
		return 0;
	}
	if (n > avail)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	/* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void put_string(FILE *out, const uint8_t *p, size_t len)
{
	fputc('"', out);
	for (size_t i = 0; i < len;) {
		uint8_t c = p[i];
		size_t n = utf8_len(p + i, len - i);

		if (!n) {
			fputs("\\ufffd", out);
			i++;
		} else if (c == '"' || c == '\\') {
			fputc('\\', out);
			fputc(c, out);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(out, "\\u%04x", c);
			i++;
		} else {
			fwrite(p + i, 1, n, out);
			i += n;
		}
	}
	fputc('"', out);
}

static void put_time(FILE *out, uint64_t ns)
{
	char buf[MM_TIME_STRLEN];

	fprintf(out, "\"%s\"", mm_time_format_iso(ns, buf));
}

static uint64_t ntp_ns(const uint8_t *p)
{
	uint64_t secs = rd32(p), frac = rd32(p + 4);

	return secs < 2208988800ull ? 0 : (secs - 2208988800ull) * MM_NS_PER_SEC + ((frac * MM_NS_PER_SEC) >> 32);
}

static void put_float(FILE *out, const uint8_t *p, size_t len)
{
	double d;

	if (len == 4) {
		uint32_t bits = rd32(p);
		float f;
		memcpy(&f, &bits, 4);
		d = f;
	} else {
		uint64_t bits = rd_uint(p, 8);
		memcpy(&d, &bits, 8);
	}
	if (isfinite(d))
		fprintf(out, "%.17g", d);
	else
		fputs("null", out);
}

static void put_addr(FILE *out, const uint8_t *p, size_t len)
{
	struct mm_addr a;
	char buf[MM_ADDR_STRLEN];

	if (len == 4)
		mm_addr_set_v4(&a, p);
	else
		mm_addr_set_v6(&a, p);
	fprintf(out, "\"%s\"", mm_addr_format(&a, buf));
}

/* Renders one value by type; anything whose length does not fit its type is shown in hex. */
static void put_value(FILE *out, unsigned type, const uint8_t *p, size_t len)
{
	switch (type) {
	case MM_IE_UNSIGNED:
		if (len >= 1 && len <= 8)
			return (void)fprintf(out, "%llu", (unsigned long long)rd_uint(p, (unsigned)len));
		break;
	case MM_IE_SIGNED:
		if (len >= 1 && len <= 8) {
			uint64_t v = rd_uint(p, (unsigned)len);
			if (len < 8 && (v >> (len * 8 - 1)))
				v |= ~0ull << (len * 8);
			return (void)fprintf(out, "%lld", (long long)v);
		}
		break;
	case MM_IE_FLOAT:
		if (len == 4 || len == 8)
			return put_float(out, p, len);
		break;
	case MM_IE_BOOLEAN:
		/* RFC 7011 section 6.1.5: 1 is true, 2 is false */
		if (len == 1 && (p[0] == 1 || p[0] == 2))
			return (void)fputs(p[0] == 1 ? "true" : "false", out);
		break;
	case MM_IE_MAC:
		if (len == 6)
			return (void)fprintf(out, "\"%02x:%02x:%02x:%02x:%02x:%02x\"", p[0], p[1], p[2], p[3], p[4], p[5]);
		break;
	case MM_IE_STRING:
		/* exporters pad fixed-length strings with NULs */
		while (len && p[len - 1] == 0)
			len--;
		return put_string(out, p, len);
	case MM_IE_IPV4:
	case MM_IE_IPV6:
		if (len == (type == MM_IE_IPV4 ? 4u : 16u))
			return put_addr(out, p, len);
		break;
	case MM_IE_SECONDS:
		if (len == 4)
			return put_time(out, rd32(p) * MM_NS_PER_SEC);
		break;
	case MM_IE_MILLIS:
		if (len == 8)
			return put_time(out, rd_uint(p, 8) * 1000000);
		break;
	case MM_IE_MICROS:
	case MM_IE_NANOS:
		if (len == 8)
			return put_time(out, ntp_ns(p));
		break;
	default:
		break;
	}
	put_hex(out, p, len);
}

/* The key of a field and the type its value renders as. */
static unsigned field_key(const struct mm_ingest_record *rec, const struct mm_ingest_field *f, char key[KEY_LEN])
{
	const struct mm_ie_info *ie;

	if (rec->version == 9 && f->scope) {
		if (f->id < sizeof(v9_scope_names) / sizeof(v9_scope_names[0]) && v9_scope_names[f->id])
			snprintf(key, KEY_LEN, "%s", v9_scope_names[f->id]);
		else
			snprintf(key, KEY_LEN, "scope/%u", f->id);
		return MM_IE_UNSIGNED;
	}
	ie = mm_ie_lookup(f->enterprise, f->id);
	if (ie && f->enterprise == PEN_REVERSE && mm_ie_reverse_name(f->id, key, KEY_LEN) == 0)
		return ie->type;
	if (ie && f->enterprise == 0) {
		snprintf(key, KEY_LEN, "%s", ie->name);
		return ie->type;
	}
	snprintf(key, KEY_LEN, "%u/%u", f->enterprise, f->id);
	return MM_IE_OCTETS;
}

/* How many earlier fields of rec have this key (a template may repeat an element). */
static unsigned key_repeats(const struct mm_ingest_record *rec, size_t upto, const char *key)
{
	char other[KEY_LEN];
	unsigned n = 0;

	for (size_t i = 0; i < upto; i++) {
		field_key(rec, &rec->fields[i], other);
		if (strcmp(other, key) == 0)
			n++;
	}
	return n;
}

int mm_ingest_json_write(FILE *out, const struct mm_ingest_record *rec)
{
	char key[KEY_LEN], addr[MM_ADDR_STRLEN];

	fputc('{', out);
	for (size_t i = 0; i < rec->n_fields; i++) {
		const struct mm_ingest_field *f = &rec->fields[i];
		unsigned type = field_key(rec, f, key);
		unsigned dup = key_repeats(rec, i, key);

		if (dup)
			fprintf(out, "\"%s#%u\":", key, dup + 1);
		else
			fprintf(out, "\"%s\":", key);
		put_value(out, type, f->data, f->len);
		fputc(',', out);
	}
	fprintf(out, "\"_exporter\":\"%s\",\"_domain\":%u,\"_template\":%u}\n", mm_addr_format(rec->exporter, addr),
		rec->domain, rec->template_id);
	return ferror(out) ? mm_fail(MM_EIO, "ipfix-json: write failed") : 0;
}
