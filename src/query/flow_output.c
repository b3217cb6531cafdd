/*
 * Flow record writers (see flow_output.h): one table of per-format
 * functions that render records into a bounded output buffer, and one
 * streaming loop that writes the buffer whenever it fills and at the end
 * of every call, so memory does not grow with the number of flows and a
 * failing stream is seen at once. Fields are appended by small formatters
 * instead of printf: on a large capture printf cost more than metering.
 */
#include "mamori/flow_output.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/*
 * Longest rendered line. Every field has a bounded text form (addresses
 * 46, numbers 20, escaped country codes 12), so no record comes near it;
 * overflowing it is a bug, not an input problem.
 */
#define LINE_CAP 2048
/*
 * Lines are gathered here and written together: one fwrite per line cost
 * as much as rendering a short record. A record starts only when LINE_CAP
 * bytes are left.
 */
#define OUT_CAP (64 * 1024)
/*
 * Formatters store whole 4- or 8-byte words and then advance by the digits
 * they meant, so every reservation and scratch buffer has this many bytes
 * of room past its longest text.
 */
#define STORE_SLACK 8

struct line {
	size_t len;
	char buf[OUT_CAP];
};

/*
 * The "YYYY-MM-DDT" text of the last day an ISO time fell on. Times in
 * a run cluster within a day, so the calendar is consulted once a day
 * instead of once a second.
 */
#define DATE_TEXT_MAX 32 /* "YYYY-MM-DDT" is 11; room for what %04d can print */

struct date_cache {
	bool valid;
	bool plain;   /* the day has 86400 seconds as libc counts them (see date_cache_fill) */
	uint64_t day; /* days since the epoch */
	size_t text_len;
	char text[DATE_TEXT_MAX];
};

#define U64_TEXT_MAX 20 /* digits of UINT64_MAX */
#define ISO_SECOND_MAX (DATE_TEXT_MAX + 8) /* date, "HH:MM:SS" */

/*
 * The texts of one second: its ISO date and time, and its decimal count.
 * A record's times (and their nanosecond counts) fall on seconds that the
 * records before it used, so each second is rendered once, not per field.
 */
struct second_text {
	uint64_t key; /* the second plus one; 0: empty */
	uint8_t iso_len;
	uint8_t dec_len;
	char iso[ISO_SECOND_MAX + STORE_SLACK];
	char dec[U64_TEXT_MAX + STORE_SLACK];
};

/* Seconds kept, direct-mapped by their low bits: flows end minutes after they start. */
#define SECOND_CACHE 256

struct text_cache {
	struct date_cache dates;
	struct second_text seconds[SECOND_CACHE];
};

struct format_ops {
	const char *name;
	void (*header)(struct line *l);  /* NULL: none */
	void (*record)(struct line *l, struct text_cache *tc, const struct mm_flow *f);
	void (*trailer)(struct line *l); /* NULL: none */
};

struct mm_flow_writer {
	const struct format_ops *ops;
	FILE *fp;
	bool header_written;
	bool failed;        /* the stream failed once; every later call says so */
	struct text_cache texts;
	struct line line;
};

/* ---- formatters: write at p (room checked by the caller), return the end ---- */

/*
 * Multi-byte stores: the words below hold their first character in the low
 * byte, so a big-endian machine swaps them before storing.
 */
static void store32(char *p, uint32_t w)
{
	if (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
		w = __builtin_bswap32(w);
	memcpy(p, &w, sizeof(w));
}

static void store64(char *p, uint64_t w)
{
	if (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
		w = __builtin_bswap64(w);
	memcpy(p, &w, sizeof(w));
}

static const uint64_t powers_of_ten[U64_TEXT_MAX] = {
	1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
	100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
	10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
	100000000000000000ULL, 1000000000000000000ULL, 10000000000000000000ULL,
};

static unsigned decimal_digits(uint64_t v)
{
	/* Bits times log10(2) (1233/4096) is floor(log10(v)) or one more; the table settles it. */
	unsigned guess = (unsigned)((64 - __builtin_clzll(v | 1)) * 1233) >> 12;

	if (v < 10)
		return 1;
	return guess + 1 - (v < powers_of_ten[guess]);
}

/*
 * The eight decimal digits of v (below 10^8, zero-padded) as characters,
 * the most significant in the low byte, without a loop or a table: the
 * word is split into two 4-digit lanes of 32 bits, each lane into two
 * 2-digit lanes of 16 bits, each of those into tens and units bytes. The
 * divisions by 100 and 10 are multiplications by 10486 / 2^20 and
 * 103 / 2^10, exact for lanes below 10^4 and 10^2; a lane's product stays
 * below the next lane, and the masks drop what a shift brings down from it.
 */
static uint64_t eight_digits(uint32_t v)
{
	uint64_t fours = (uint64_t)(v / 10000) | (uint64_t)(v % 10000) << 32;
	uint64_t hundreds = ((fours * 10486) >> 20) & 0x0000007f0000007fULL;
	uint64_t twos = hundreds | (fours - 100 * hundreds) << 16;
	uint64_t tens = ((twos * 103) >> 10) & 0x000f000f000f000fULL;

	return (tens | (twos - 10 * tens) << 8) | 0x3030303030303030ULL;
}

/* The last width digits (1 to 8) of v, zero-padded; v below 10^8. Stores 8 bytes. */
static char *fmt_digits(char *p, uint32_t v, unsigned width)
{
	store64(p, eight_digits(v) >> (8 * (8 - width)));
	return p + width;
}

static char *fmt_str(char *p, const char *s, size_t len)
{
	memcpy(p, s, len);
	return p + len;
}

/* fmt_u64 for v of two digits or more: 8 digits per step. */
static char *fmt_u64_long(char *p, uint64_t v)
{
	unsigned n = decimal_digits(v);

	if (n <= 8)
		return fmt_digits(p, (uint32_t)v, n);
	if (n > 16) {
		p = fmt_digits(p, (uint32_t)(v / 10000000000000000ULL), n - 16);
		v %= 10000000000000000ULL;
		n = 16;
	}
	p = fmt_digits(p, (uint32_t)(v / 100000000), n - 8);
	return fmt_digits(p, (uint32_t)(v % 100000000), 8);
}

/*
 * As printf's %llu. Many fields are usually one digit (ASNs, interfaces,
 * VLAN, ICMP type) or two (protocol, TCP flags): those cases are inlined
 * where each field is written, so their branches are predicted per field.
 */
static inline char *fmt_u64(char *p, uint64_t v)
{
	if (v < 10) {
		*p = (char)('0' + v);
		return p + 1;
	}
	if (v < 100) {
		p[0] = (char)('0' + v / 10);
		p[1] = (char)('0' + v % 10);
		return p + 2;
	}
	return fmt_u64_long(p, v);
}

/* Exactly width digits (1 to 9), zero-padded (printf's %0*u); v must be below 10^width. */
static char *fmt_fixed(char *p, uint32_t v, unsigned width)
{
	if (width > 8) {
		*p++ = (char)('0' + v / 100000000);
		v %= 100000000;
		width = 8;
	}
	return fmt_digits(p, v, width);
}

static const char hex_digits[] = "0123456789abcdef";

/*
 * A 16-bit group in lower-case hex without leading zeros (RFC 5952 §4.1,
 * §4.3). Group lengths vary at random, so the four nibbles are spread one
 * to a byte, turned into characters together ('0' + n, plus 39 more for
 * n > 9 to reach 'a'), and shifted to drop the leading zeros.
 */
static char *fmt_hex_group(char *p, unsigned group)
{
	unsigned n = group ? (35 - (unsigned)__builtin_clz(group)) / 4 : 1;
	uint32_t nibbles = (group >> 12 & 15) | (group >> 8 & 15) << 8 | (group >> 4 & 15) << 16 |
			   (group & 15) << 24;
	uint32_t above_nine = ((nibbles + 0x06060606u) >> 4) & 0x01010101u;

	store32(p, (nibbles + 0x30303030u + above_nine * 39) >> (8 * (4 - n)));
	return p + n;
}

/* Three digits and a dot, the first character in the low byte, for a word store. */
#define OCTET_WORD(v) \
	((uint32_t)('0' + (v) / 100) | (uint32_t)('0' + (v) / 10 % 10) << 8 | \
	 (uint32_t)('0' + (v) % 10) << 16 | (uint32_t)'.' << 24)
#define OCTET_WORDS4(v) OCTET_WORD(v), OCTET_WORD((v) + 1), OCTET_WORD((v) + 2), OCTET_WORD((v) + 3)
#define OCTET_WORDS16(v) \
	OCTET_WORDS4(v), OCTET_WORDS4((v) + 4), OCTET_WORDS4((v) + 8), OCTET_WORDS4((v) + 12)
#define OCTET_WORDS64(v) \
	OCTET_WORDS16(v), OCTET_WORDS16((v) + 16), OCTET_WORDS16((v) + 32), OCTET_WORDS16((v) + 48)

static const uint32_t octet_words[256] = {
	OCTET_WORDS64(0), OCTET_WORDS64(64), OCTET_WORDS64(128), OCTET_WORDS64(192),
};

/*
 * Dotted quad. Octets have one to three digits at random, so each is
 * stored as three digits and a dot in one word, shifted to drop its
 * leading zeros: no branch to mispredict. The last dot is stored and
 * not counted.
 */
static char *fmt_ipv4(char *p, const uint8_t b[4])
{
	for (int i = 0; i < 4; i++) {
		unsigned n = 1 + (b[i] >= 10) + (b[i] >= 100);

		store32(p, octet_words[b[i]] >> (8 * (3 - n)));
		p += n + 1;
	}
	return p - 1;
}

/*
 * RFC 5952 text exactly as glibc's inet_ntop writes it (mm_addr_format's
 * text): the first longest run of two or more zero groups becomes "::",
 * and an IPv4-compatible address (96 zero bits, then a non-zero group)
 * ends in a dotted quad.
 */
static char *fmt_ipv6(char *p, const uint8_t b[16])
{
	unsigned groups[8];
	int best = -1, best_len = 0, run = -1;

	for (int i = 0; i < 8; i++) {
		groups[i] = (unsigned)b[2 * i] << 8 | b[2 * i + 1];
		if (groups[i] == 0) {
			if (run < 0)
				run = i;
			/* Strictly longer: of equal runs the first wins, as in inet_ntop. */
			if (i - run + 1 > best_len) {
				best = run;
				best_len = i - run + 1;
			}
		} else {
			run = -1;
		}
	}
	if (best_len < 2)
		best = -1;
	for (int i = 0; i < 8; i++) {
		if (best >= 0 && i >= best && i < best + best_len) {
			if (i == best)
				*p++ = ':';
			continue;
		}
		if (i != 0)
			*p++ = ':';
		if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && groups[5] == 0xffff)))
			return fmt_ipv4(p, b + 12);
		p = fmt_hex_group(p, groups[i]);
	}
	if (best >= 0 && best + best_len == 8)
		*p++ = ':';
	return p;
}

/* mm_addr_format's text, without the library calls: most records carry two addresses. */
static char *fmt_addr(char *p, const struct mm_addr *a)
{
	return mm_addr_is_v4(a) ? fmt_ipv4(p, a->b + 12) : fmt_ipv6(p, a->b);
}

/* Protocols whose flows carry ports (ICMP: type and counterpart type or code). */
static bool proto_has_ports(uint8_t proto)
{
	return proto == 1 || proto == 6 || proto == 17 || proto == 58 || proto == 132;
}

#define ENDPOINT_TEXT_MAX (MM_ADDR_STRLEN + 8) /* "[" addr "]:" port */

/* "a.b.c.d:port", "[v6]:port", or the bare address for protocols without ports. */
static char *fmt_endpoint(char *p, const struct mm_addr *a, uint16_t port, uint8_t proto)
{
	if (!proto_has_ports(proto))
		return fmt_addr(p, a);
	if (mm_addr_is_v4(a)) {
		p = fmt_addr(p, a);
	} else {
		*p++ = '[';
		p = fmt_addr(p, a);
		*p++ = ']';
	}
	*p++ = ':';
	return fmt_u64(p, port);
}

/* "YYYY-MM-DDT" of tm, as mm_time_format_iso writes it; returns the length. */
static size_t date_text(const struct tm *tm, char out[DATE_TEXT_MAX])
{
	int n = snprintf(out, DATE_TEXT_MAX, "%04d-%02d-%02dT", tm->tm_year + 1900, tm->tm_mon + 1,
			 tm->tm_mday);

	MM_BUG(n < 0 || n >= DATE_TEXT_MAX);
	return (size_t)n;
}

/*
 * Caches the date of day. A day is plain when libc puts its first and
 * last second at 00:00:00 and 23:59:59 of one date; a TZ database that
 * counts leap seconds ("right/…") makes gmtime_r disagree with plain
 * arithmetic, and such days keep asking gmtime_r so the text stays libc's.
 */
static void date_cache_fill(struct date_cache *dc, uint64_t day)
{
	time_t first = (time_t)(day * 86400), last = first + 86399;
	struct tm tf, tl;

	gmtime_r(&first, &tf);
	gmtime_r(&last, &tl);
	dc->valid = true;
	dc->day = day;
	dc->plain = tf.tm_hour == 0 && tf.tm_min == 0 && tf.tm_sec == 0 && tl.tm_hour == 23 &&
		    tl.tm_min == 59 && tl.tm_sec == 59 && tf.tm_mday == tl.tm_mday;
	dc->text_len = date_text(&tf, dc->text);
}

static char *fmt_hms(char *p, int hour, int min, int sec)
{
	p = fmt_fixed(p, (uint32_t)hour, 2);
	*p++ = ':';
	p = fmt_fixed(p, (uint32_t)min, 2);
	*p++ = ':';
	return fmt_fixed(p, (uint32_t)sec, 2);
}

/* Renders both texts of second secs into st: mm_time_format_iso's up to the seconds. */
static void second_text_fill(struct date_cache *dc, struct second_text *st, uint64_t secs)
{
	uint64_t day = secs / 86400;
	uint32_t in_day = (uint32_t)(secs % 86400);
	char *p = st->iso;

	if (!dc->valid || dc->day != day)
		date_cache_fill(dc, day);
	if (dc->plain) {
		p = fmt_str(p, dc->text, dc->text_len);
		p = fmt_hms(p, (int)(in_day / 3600), (int)(in_day / 60 % 60), (int)(in_day % 60));
	} else {
		time_t t = (time_t)secs;
		struct tm tm;
		char text[DATE_TEXT_MAX];

		gmtime_r(&t, &tm);
		p = fmt_str(p, text, date_text(&tm, text));
		p = fmt_hms(p, tm.tm_hour, tm.tm_min, tm.tm_sec);
	}
	st->key = secs + 1;
	st->iso_len = (uint8_t)(p - st->iso);
	st->dec_len = (uint8_t)(fmt_u64(st->dec, secs) - st->dec);
}

static const struct second_text *second_text(struct text_cache *tc, uint64_t secs)
{
	struct second_text *st = &tc->seconds[secs % SECOND_CACHE];

	if (st->key != secs + 1)
		second_text_fill(&tc->dates, st, secs);
	return st;
}

/* A cached text copied whole (a fixed-size copy is a few moves), then cut to its length. */
#define COPY_TEXT(p, array, len) (memcpy((p), (array), sizeof(array)), (p) + (len))

/*
 * printf's %llu of a time in ns, the seconds' digits taken from the cache.
 * Like every formatter, it stores at most STORE_SLACK bytes past its text's
 * longest length (U64_TEXT_MAX here).
 */
static char *fmt_ns(char *p, struct text_cache *tc, uint64_t ns)
{
	const struct second_text *st;

	if (ns < MM_NS_PER_SEC)
		return fmt_u64(p, ns);
	st = second_text(tc, ns / MM_NS_PER_SEC);
	p = COPY_TEXT(p, st->dec, st->dec_len);
	return fmt_fixed(p, (uint32_t)(ns % MM_NS_PER_SEC), 9);
}

#define SECONDS_US_MAX (U64_TEXT_MAX + 7)

/* Microsecond rounding, as Zeek's %.6f does. */
static uint64_t ns_to_us_rounded(uint64_t ns)
{
	return ns / 1000 + (ns % 1000 >= 500);
}

/* ".uuuuuu": the microseconds within the second. */
static char *fmt_us_fraction(char *p, uint64_t us)
{
	*p++ = '.';
	return fmt_fixed(p, (uint32_t)(us % 1000000), 6);
}

/* A time as seconds with rounded microseconds, the seconds' digits taken from the cache. */
static char *fmt_time_seconds_us(char *p, struct text_cache *tc, uint64_t ns)
{
	uint64_t us = ns_to_us_rounded(ns);
	const struct second_text *st = second_text(tc, us / 1000000);

	return fmt_us_fraction(COPY_TEXT(p, st->dec, st->dec_len), us);
}

/* A duration as seconds with rounded microseconds (few seconds: no cache). */
static char *fmt_duration_us(char *p, uint64_t ns)
{
	uint64_t us = ns_to_us_rounded(ns);

	return fmt_us_fraction(fmt_u64(p, us / 1000000), us);
}

#define TIME_ISO_MAX (ISO_SECOND_MAX + 8) /* date, time, ".uuuuuuZ" */

/* mm_time_format_iso's text: microseconds truncated, not rounded. */
static char *fmt_time_iso(char *p, struct text_cache *tc, uint64_t ns)
{
	const struct second_text *st = second_text(tc, ns / MM_NS_PER_SEC);

	p = COPY_TEXT(p, st->iso, st->iso_len);
	*p++ = '.';
	p = fmt_fixed(p, (uint32_t)(ns % MM_NS_PER_SEC / 1000), 6);
	*p++ = 'Z';
	return p;
}

/* splitmix64's finaliser: xor-shifts and odd multipliers, each invertible, so a bijection. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static const char base62_digits[] =
	"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#define BASE62_POW2 3844u      /* 62^2 */
#define BASE62_POW5 916132832u /* 62^5, below 2^32 */

/* Two base62 digits of v (below 62^2). */
static void base62_pair(char *out, uint32_t v)
{
	out[0] = base62_digits[v / 62];
	out[1] = base62_digits[v % 62];
}

/* Five base62 digits of v (below 62^5): three short chains of divisions, not one of five. */
static void base62_five(char *out, uint32_t v)
{
	uint32_t high = v / BASE62_POW2;

	out[0] = base62_digits[high / BASE62_POW2];
	base62_pair(out + 1, high % BASE62_POW2);
	base62_pair(out + 3, v % BASE62_POW2);
}

/* The low width base62 digits of v, most significant first. */
static void base62_fixed(uint64_t v, char *out, int width)
{
	/* Five digits per 64-bit division; the rest in cheaper 32-bit arithmetic. */
	for (; width >= 5; width -= 5) {
		base62_five(out + width - 5, (uint32_t)(v % BASE62_POW5));
		v /= BASE62_POW5;
	}
	for (uint32_t rest = (uint32_t)(v % BASE62_POW5); width > 0; width--) {
		out[width - 1] = base62_digits[rest % 62];
		rest /= 62;
	}
}

#define UID_LEN 18

/*
 * The first 11 digits spell a bijection of the id (62^11 > 2^64), so
 * distinct ids never share a uid; the last 6 only pad to Zeek's length.
 */
static char *fmt_uid(char *p, uint64_t id)
{
	p[0] = 'C';
	base62_fixed(mix64(id), p + 1, 11);
	base62_fixed(mix64(id ^ 0x9e3779b97f4a7c15ULL), p + 12, 6);
	return p + UID_LEN;
}

/* ---- the line: every append reserves its worst case first ---- */

/*
 * Room for up to max bytes (and the formatters' slack) at the end of the
 * buffer; running out is a bug, since a record starts with LINE_CAP left.
 */
static char *line_reserve(struct line *l, size_t max)
{
	MM_BUG(max + STORE_SLACK >= OUT_CAP - l->len);
	return l->buf + l->len;
}

static void line_commit(struct line *l, const char *end)
{
	l->len = (size_t)(end - l->buf);
}

static void line_put(struct line *l, const char *s, size_t len)
{
	line_commit(l, fmt_str(line_reserve(l, len), s, len));
}

static void line_puts(struct line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

/* A string literal, its length known at compile time. */
#define LINE_LIT(l, lit) line_put((l), "" lit, sizeof(lit) - 1)

static void line_putc(struct line *l, char c)
{
	*line_reserve(l, 1) = c;
	l->len++;
}

static void put_u64(struct line *l, uint64_t v)
{
	line_commit(l, fmt_u64(line_reserve(l, U64_TEXT_MAX), v));
}

/* A number followed by one separator, the commonest shape in every format. */
static void put_u64_sep(struct line *l, uint64_t v, char sep)
{
	char *p = fmt_u64(line_reserve(l, U64_TEXT_MAX + 1), v);

	*p++ = sep;
	line_commit(l, p);
}

static void put_addr(struct line *l, const struct mm_addr *a)
{
	line_commit(l, fmt_addr(line_reserve(l, MM_ADDR_STRLEN), a));
}

static void put_ns(struct line *l, struct text_cache *tc, uint64_t ns)
{
	line_commit(l, fmt_ns(line_reserve(l, U64_TEXT_MAX), tc, ns));
}

static void put_time_iso(struct line *l, struct text_cache *tc, uint64_t ns)
{
	line_commit(l, fmt_time_iso(line_reserve(l, TIME_ISO_MAX), tc, ns));
}

static void put_time_seconds_us(struct line *l, struct text_cache *tc, uint64_t ns)
{
	line_commit(l, fmt_time_seconds_us(line_reserve(l, SECONDS_US_MAX), tc, ns));
}

static void put_duration_us(struct line *l, uint64_t ns)
{
	line_commit(l, fmt_duration_us(line_reserve(l, SECONDS_US_MAX), ns));
}

static void put_uid(struct line *l, uint64_t id)
{
	line_commit(l, fmt_uid(line_reserve(l, UID_LEN), id));
}

/* ---- field renderings shared by the formats ---- */

static bool addr_is_zero(const struct mm_addr *a)
{
	static const struct mm_addr zero;
	return mm_addr_eq(a, &zero);
}

static uint64_t flow_duration_ns(const struct mm_flow *f)
{
	return f->last_ns > f->first_ns ? f->last_ns - f->first_ns : 0;
}

static const char *const flag_names[] = { "tunnel", "fragments", "sampled", "src-domestic", "dst-domestic" };
#define N_FLAG_NAMES (sizeof(flag_names) / sizeof(flag_names[0]))

/* Country code as text ("" when unknown); the two bytes are copied as they are. Returns the length. */
static size_t country_text(const char cc[2], char out[3])
{
	out[0] = cc[0];
	out[1] = cc[0] ? cc[1] : '\0';
	out[2] = '\0';
	return !out[0] ? 0 : !out[1] ? 1 : 2;
}

/* ---- table: aligned columns for people ---- */

/*
 * Widths fit the usual values (an IPv4 endpoint with its port, a week in
 * seconds, 10^8 packets, 10^11 bytes); longer values widen their column
 * for that line instead of being cut.
 */
static const struct table_column {
	const char *title;
	const char *before; /* separator from the previous column */
	size_t before_len;
	unsigned width;
	bool left;          /* left-aligned (padded on the right) */
} table_columns[] = {
#define TABLE_COLUMN(title, before, width, left) { title, before, sizeof(before) - 1, width, left }
	TABLE_COLUMN("start", "", 27, true),      TABLE_COLUMN("duration", " ", 10, false),
	TABLE_COLUMN("proto", " ", 9, true),      TABLE_COLUMN("originator", " ", 21, false),
	TABLE_COLUMN("responder", " -> ", 21, true), TABLE_COLUMN("orig_pkt", " ", 8, false),
	TABLE_COLUMN("orig_bytes", " ", 11, false), TABLE_COLUMN("resp_pkt", " ", 8, false),
	TABLE_COLUMN("resp_bytes", " ", 11, false), TABLE_COLUMN("flags", " ", 8, true),
	TABLE_COLUMN("end", " ", 0, true),
#undef TABLE_COLUMN
};

#define N_TABLE_COLUMNS (sizeof(table_columns) / sizeof(table_columns[0]))

struct table_cell {
	const char *text;
	size_t len;
};

static void put_padded(struct line *l, const struct table_column *col, const struct table_cell *cell)
{
	size_t pad = cell->len < col->width ? col->width - cell->len : 0;
	char *p = line_reserve(l, cell->len + pad);

	if (!col->left) {
		memset(p, ' ', pad);
		p += pad;
	}
	p = fmt_str(p, cell->text, cell->len);
	if (col->left) {
		memset(p, ' ', pad);
		p += pad;
	}
	line_commit(l, p);
}

static void table_row(struct line *l, const struct table_cell cells[N_TABLE_COLUMNS])
{
	for (size_t i = 0; i < N_TABLE_COLUMNS; i++) {
		line_put(l, table_columns[i].before, table_columns[i].before_len);
		put_padded(l, &table_columns[i], &cells[i]);
	}
}

static void table_header(struct line *l)
{
	struct table_cell cells[N_TABLE_COLUMNS];

	for (size_t i = 0; i < N_TABLE_COLUMNS; i++)
		cells[i] = (struct table_cell){ table_columns[i].title, strlen(table_columns[i].title) };
	table_row(l, cells);
}

static struct table_cell cell_of(const char *text, const char *end)
{
	return (struct table_cell){ text, (size_t)(end - text) };
}

static struct table_cell cell_of_str(const char *text)
{
	return (struct table_cell){ text, strlen(text) };
}

static void table_record(struct line *l, struct text_cache *tc, const struct mm_flow *f)
{
	char start[TIME_ISO_MAX + STORE_SLACK], proto_buf[8], flags[9], duration[U64_TEXT_MAX + 4 + STORE_SLACK];
	char src[ENDPOINT_TEXT_MAX + STORE_SLACK], dst[ENDPOINT_TEXT_MAX + STORE_SLACK];
	char opkt[U64_TEXT_MAX + STORE_SLACK], obytes[U64_TEXT_MAX + STORE_SLACK];
	char rpkt[U64_TEXT_MAX + STORE_SLACK], rbytes[U64_TEXT_MAX + STORE_SLACK];
	uint64_t dur_ms = (flow_duration_ns(f) + 500000) / 1000000;
	char *p = fmt_u64(duration, dur_ms / 1000);
	struct table_cell cells[N_TABLE_COLUMNS];

	*p++ = '.';
	cells[1] = cell_of(duration, fmt_fixed(p, (uint32_t)(dur_ms % 1000), 3));
	cells[0] = cell_of(start, fmt_time_iso(start, tc, f->first_ns));
	cells[2] = cell_of_str(mm_proto_name(f->proto, proto_buf));
	cells[3] = cell_of(src, fmt_endpoint(src, &f->src, f->src_port, f->proto));
	cells[4] = cell_of(dst, fmt_endpoint(dst, &f->dst, f->dst_port, f->proto));
	cells[5] = cell_of(opkt, fmt_u64(opkt, f->fwd_packets));
	cells[6] = cell_of(obytes, fmt_u64(obytes, f->fwd_bytes));
	cells[7] = cell_of(rpkt, fmt_u64(rpkt, f->rev_packets));
	cells[8] = cell_of(rbytes, fmt_u64(rbytes, f->rev_bytes));
	cells[9] = cell_of_str(f->proto == 6 ? mm_tcp_flags_format(f->fwd_tcp_flags | f->rev_tcp_flags, flags)
					     : "-");
	cells[10] = cell_of_str(mm_end_reason_name(f->end_reason));
	table_row(l, cells);
}

/* ---- csv: RFC 4180, one header line, every field ---- */

static const char csv_columns[] =
	"uid,id,first,last,first_ns,last_ns,src,src_port,dst,dst_port,proto,"
	"fwd_packets,fwd_bytes,rev_packets,rev_bytes,fwd_tcp_flags,rev_tcp_flags,"
	"icmp_type,icmp_code,vlan,next_hop,src_as,dst_as,in_if,out_if,sampling_rate,"
	"sensor_id,end_reason,flags,tunnel_parents,src_country,dst_country";

static void csv_header(struct line *l)
{
	line_puts(l, csv_columns);
}

/* Quotes a field only when it holds a comma, quote, CR or LF (RFC 4180 §2.6-2.7). */
static void csv_field(struct line *l, const char *s, size_t len)
{
	bool plain = true;

	/* Fields are short (a list or a country code): a loop beats four memchr calls. */
	for (size_t i = 0; i < len; i++)
		plain &= s[i] != ',' && s[i] != '"' && s[i] != '\r' && s[i] != '\n';
	if (plain) {
		line_put(l, s, len);
		return;
	}
	line_putc(l, '"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"')
			line_putc(l, '"');
		line_putc(l, s[i]);
	}
	line_putc(l, '"');
}

/* Longest joined list: every flag name, or every parent id, with separators. */
#define LIST_TEXT_MAX 64

/* Names of the set flags joined by sep; returns the end. */
static char *fmt_flag_list(char *p, uint8_t flags, char sep)
{
	char *start = p;

	for (size_t i = 0; i < N_FLAG_NAMES; i++) {
		if (flags & (1u << i)) {
			if (p != start)
				*p++ = sep;
			p = fmt_str(p, flag_names[i], strlen(flag_names[i]));
		}
	}
	return p;
}

static bool has_tunnel_parents(const struct mm_flow *f)
{
	for (size_t i = 0; i < MM_TUNNEL_PARENTS; i++)
		if (f->tunnel_parents[i])
			return true;
	return false;
}

/* Non-zero tunnel parent ids joined by commas; returns the end. */
static char *fmt_parent_list(char *p, const struct mm_flow *f)
{
	char *start = p;

	for (size_t i = 0; i < MM_TUNNEL_PARENTS; i++) {
		if (f->tunnel_parents[i]) {
			if (p != start)
				*p++ = ',';
			p = fmt_u64(p, f->tunnel_parents[i]);
		}
	}
	return p;
}

static void csv_country(struct line *l, const char cc[2])
{
	char text[3];

	csv_field(l, text, country_text(cc, text));
}

/* A number and the comma after it. */
static char *fmt_csv_u64(char *p, uint64_t v)
{
	p = fmt_u64(p, v);
	*p++ = ',';
	return p;
}

/* Worst case of the fields before end_reason: uid, 21 numbers, 2 times, 3 addresses, commas. */
#define CSV_HEAD_MAX \
	(UID_LEN + 1 + 21 * (U64_TEXT_MAX + 1) + 2 * (TIME_ISO_MAX + 1) + 3 * (MM_ADDR_STRLEN + 1))

static void csv_record(struct line *l, struct text_cache *tc, const struct mm_flow *f)
{
	char list[LIST_TEXT_MAX + STORE_SLACK];
	/* The fixed-width head goes through a local cursor, checked once, not once a field. */
	char *p = line_reserve(l, CSV_HEAD_MAX);

	p = fmt_uid(p, f->id);
	*p++ = ',';
	p = fmt_csv_u64(p, f->id);
	p = fmt_time_iso(p, tc, f->first_ns);
	*p++ = ',';
	p = fmt_time_iso(p, tc, f->last_ns);
	*p++ = ',';
	p = fmt_ns(p, tc, f->first_ns);
	*p++ = ',';
	p = fmt_ns(p, tc, f->last_ns);
	*p++ = ',';
	p = fmt_addr(p, &f->src);
	*p++ = ',';
	p = fmt_csv_u64(p, f->src_port);
	p = fmt_addr(p, &f->dst);
	*p++ = ',';
	p = fmt_csv_u64(p, f->dst_port);
	p = fmt_csv_u64(p, f->proto);
	p = fmt_csv_u64(p, f->fwd_packets);
	p = fmt_csv_u64(p, f->fwd_bytes);
	p = fmt_csv_u64(p, f->rev_packets);
	p = fmt_csv_u64(p, f->rev_bytes);
	p = fmt_csv_u64(p, f->fwd_tcp_flags);
	p = fmt_csv_u64(p, f->rev_tcp_flags);
	p = fmt_csv_u64(p, f->icmp_type);
	p = fmt_csv_u64(p, f->icmp_code);
	p = fmt_csv_u64(p, f->vlan);
	if (!addr_is_zero(&f->next_hop))
		p = fmt_addr(p, &f->next_hop);
	*p++ = ',';
	p = fmt_csv_u64(p, f->src_as);
	p = fmt_csv_u64(p, f->dst_as);
	p = fmt_csv_u64(p, f->in_if);
	p = fmt_csv_u64(p, f->out_if);
	p = fmt_csv_u64(p, f->sampling_rate);
	p = fmt_csv_u64(p, f->sensor_id);
	line_commit(l, p);

	line_puts(l, mm_end_reason_name(f->end_reason));
	/* Most flows have no flags, parents or countries: four empty fields. */
	if (!f->flags && !has_tunnel_parents(f) && !f->src_country[0] && !f->dst_country[0]) {
		LINE_LIT(l, ",,,,");
		return;
	}
	line_putc(l, ',');
	csv_field(l, list, (size_t)(fmt_flag_list(list, f->flags, '|') - list));
	line_putc(l, ',');
	csv_field(l, list, (size_t)(fmt_parent_list(list, f) - list));
	line_putc(l, ',');
	csv_country(l, f->src_country);
	line_putc(l, ',');
	csv_country(l, f->dst_country);
}

/* ---- ndjson: one object per flow, every field ---- */

static void json_string(struct line *l, const char *s)
{
	line_putc(l, '"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char *p = line_reserve(l, 6);

		if (c == '"' || c == '\\') {
			*p++ = '\\';
			*p++ = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			/* bytes above ASCII read as Latin-1 */
			p = fmt_str(p, "\\u00", 4);
			*p++ = hex_digits[c >> 4];
			*p++ = hex_digits[c & 15];
		} else {
			*p++ = (char)c;
		}
		line_commit(l, p);
	}
	line_putc(l, '"');
}

static void json_country(struct line *l, const char cc[2])
{
	char text[3];

	if (country_text(cc, text))
		json_string(l, text);
	else
		LINE_LIT(l, "null");
}

static void json_quoted_addr(struct line *l, const struct mm_addr *a)
{
	line_putc(l, '"');
	put_addr(l, a);
	line_putc(l, '"');
}

static void ndjson_record(struct line *l, struct text_cache *tc, const struct mm_flow *f)
{
	bool any = false;

	LINE_LIT(l, "{\"uid\":\"");
	put_uid(l, f->id);
	LINE_LIT(l, "\",\"id\":");
	put_u64(l, f->id);
	LINE_LIT(l, ",\"first\":\"");
	put_time_iso(l, tc, f->first_ns);
	LINE_LIT(l, "\",\"first_ns\":");
	put_ns(l, tc, f->first_ns);
	LINE_LIT(l, ",\"last\":\"");
	put_time_iso(l, tc, f->last_ns);
	LINE_LIT(l, "\",\"last_ns\":");
	put_ns(l, tc, f->last_ns);
	LINE_LIT(l, ",\"src\":");
	json_quoted_addr(l, &f->src);
	LINE_LIT(l, ",\"src_port\":");
	put_u64(l, f->src_port);
	LINE_LIT(l, ",\"dst\":");
	json_quoted_addr(l, &f->dst);
	LINE_LIT(l, ",\"dst_port\":");
	put_u64(l, f->dst_port);
	LINE_LIT(l, ",\"proto\":");
	put_u64(l, f->proto);
	LINE_LIT(l, ",\"fwd_packets\":");
	put_u64(l, f->fwd_packets);
	LINE_LIT(l, ",\"fwd_bytes\":");
	put_u64(l, f->fwd_bytes);
	LINE_LIT(l, ",\"rev_packets\":");
	put_u64(l, f->rev_packets);
	LINE_LIT(l, ",\"rev_bytes\":");
	put_u64(l, f->rev_bytes);
	LINE_LIT(l, ",\"fwd_tcp_flags\":");
	put_u64(l, f->fwd_tcp_flags);
	LINE_LIT(l, ",\"rev_tcp_flags\":");
	put_u64(l, f->rev_tcp_flags);
	LINE_LIT(l, ",\"icmp_type\":");
	put_u64(l, f->icmp_type);
	LINE_LIT(l, ",\"icmp_code\":");
	put_u64(l, f->icmp_code);
	LINE_LIT(l, ",\"vlan\":");
	put_u64(l, f->vlan);
	LINE_LIT(l, ",\"next_hop\":");
	if (addr_is_zero(&f->next_hop))
		LINE_LIT(l, "null");
	else
		json_quoted_addr(l, &f->next_hop);
	LINE_LIT(l, ",\"src_as\":");
	put_u64(l, f->src_as);
	LINE_LIT(l, ",\"dst_as\":");
	put_u64(l, f->dst_as);
	LINE_LIT(l, ",\"in_if\":");
	put_u64(l, f->in_if);
	LINE_LIT(l, ",\"out_if\":");
	put_u64(l, f->out_if);
	LINE_LIT(l, ",\"sampling_rate\":");
	put_u64(l, f->sampling_rate);
	LINE_LIT(l, ",\"sensor_id\":");
	put_u64(l, f->sensor_id);
	LINE_LIT(l, ",\"end_reason\":\"");
	line_puts(l, mm_end_reason_name(f->end_reason));
	LINE_LIT(l, "\",\"flags\":[");
	for (size_t i = 0; i < N_FLAG_NAMES; i++) {
		if (f->flags & (1u << i)) {
			if (any)
				line_putc(l, ',');
			line_putc(l, '"');
			line_puts(l, flag_names[i]);
			line_putc(l, '"');
			any = true;
		}
	}
	LINE_LIT(l, "],\"tunnel_parents\":[");
	any = false;
	for (size_t i = 0; i < MM_TUNNEL_PARENTS; i++) {
		if (f->tunnel_parents[i]) {
			if (any)
				line_putc(l, ',');
			put_u64(l, f->tunnel_parents[i]);
			any = true;
		}
	}
	LINE_LIT(l, "],\"src_country\":");
	json_country(l, f->src_country);
	LINE_LIT(l, ",\"dst_country\":");
	json_country(l, f->dst_country);
	line_putc(l, '}');
}

/* ---- zeek: conn.log TSV as Zeek's ASCII writer lays it out ---- */

static void zeek_stamp(struct line *l, const char *tag)
{
	time_t now = time(NULL);
	struct tm tm;
	char text[32];

	/* Zeek stamps #open/#close in local time. */
	localtime_r(&now, &tm);
	strftime(text, sizeof(text), "%Y-%m-%d-%H-%M-%S", &tm);
	line_putc(l, '#');
	line_puts(l, tag);
	line_putc(l, '\t');
	line_puts(l, text);
}

static void zeek_header(struct line *l)
{
	line_puts(l, "#separator \\x09\n"
		     "#set_separator\t,\n"
		     "#empty_field\t(empty)\n"
		     "#unset_field\t-\n"
		     "#path\tconn\n");
	zeek_stamp(l, "open");
	line_puts(l, "\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\t"
		     "duration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\t"
		     "missed_bytes\thistory\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\t"
		     "tunnel_parents\tip_proto\n"
		     "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\t"
		     "count\tstring\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\t"
		     "set[string]\tcount");
}

/* Zeek's transport_proto enum; ICMPv6 connections are "icmp" too. */
static const char *zeek_proto(uint8_t proto)
{
	switch (proto) {
	case 6: return "tcp";
	case 17: return "udp";
	case 1:
	case 58: return "icmp";
	}
	return "unknown_transport";
}

static void zeek_record(struct line *l, struct text_cache *tc, const struct mm_flow *f)
{
	uint64_t duration = flow_duration_ns(f);
	bool any = false;

	put_time_seconds_us(l, tc, f->first_ns);
	line_putc(l, '\t');
	put_uid(l, f->id);
	line_putc(l, '\t');
	put_addr(l, &f->src);
	line_putc(l, '\t');
	put_u64_sep(l, f->src_port, '\t');
	put_addr(l, &f->dst);
	line_putc(l, '\t');
	put_u64_sep(l, f->dst_port, '\t');
	line_puts(l, zeek_proto(f->proto));
	LINE_LIT(l, "\t-\t");
	/* Zeek leaves duration unset for a connection whose packets share one timestamp. */
	if (duration)
		put_duration_us(l, duration);
	else
		line_putc(l, '-');
	/* Payload byte counts, state, locality and history need payload or
	 * configuration a flow meter does not have: unset, as Zeek writes them. */
	LINE_LIT(l, "\t-\t-\t-\t-\t-\t0\t-\t");
	put_u64_sep(l, f->fwd_packets, '\t');
	put_u64_sep(l, f->fwd_bytes, '\t');
	put_u64_sep(l, f->rev_packets, '\t');
	put_u64_sep(l, f->rev_bytes, '\t');
	for (size_t i = 0; i < MM_TUNNEL_PARENTS; i++) {
		if (f->tunnel_parents[i]) {
			if (any)
				line_putc(l, ',');
			put_uid(l, f->tunnel_parents[i]);
			any = true;
		}
	}
	if (!any)
		line_putc(l, '-');
	line_putc(l, '\t');
	put_u64(l, f->proto);
}

static void zeek_trailer(struct line *l)
{
	zeek_stamp(l, "close");
}

static const struct format_ops formats[] = {
	[MM_OUTPUT_TABLE] = { "table", table_header, table_record, NULL },
	[MM_OUTPUT_CSV] = { "csv", csv_header, csv_record, NULL },
	[MM_OUTPUT_NDJSON] = { "ndjson", NULL, ndjson_record, NULL },
	[MM_OUTPUT_ZEEK] = { "zeek", zeek_header, zeek_record, zeek_trailer },
};

#define N_FORMATS (sizeof(formats) / sizeof(formats[0]))

int mm_output_format_parse(const char *text, enum mm_output_format *out)
{
	for (size_t i = 0; i < N_FORMATS; i++) {
		if (strcmp(formats[i].name, text) == 0) {
			*out = (enum mm_output_format)i;
			return 0;
		}
	}
	return mm_fail(MM_EINVAL, "output format '%s' is not one of table, csv, ndjson, zeek", text);
}

int mm_flow_writer_new(struct mm_flow_writer **out, enum mm_output_format fmt, FILE *fp)
{
	struct mm_flow_writer *w;

	*out = NULL;
	if ((unsigned)fmt >= N_FORMATS)
		return mm_fail(MM_EINVAL, "output: format number %u is not defined", (unsigned)fmt);
	w = calloc(1, sizeof(*w));
	if (!w)
		return mm_fail(MM_ENOMEM, "output: no memory for a %s writer", formats[fmt].name);
	w->ops = &formats[fmt];
	w->fp = fp;
	*out = w;
	return 0;
}

/*
 * Writes out the buffered lines. Callers hold the stream's lock
 * (flockfile) for a whole batch: taking it once a line cost as much as
 * rendering a short record.
 */
static int write_out(struct mm_flow_writer *w)
{
	struct line *l = &w->line;
	size_t len = l->len;

	l->len = 0;
	if (len != 0 && fwrite_unlocked(l->buf, 1, len, w->fp) != len) {
		w->failed = true;
		return mm_fail(MM_EIO, "output: %s: write failed: %s", w->ops->name, strerror(errno));
	}
	return 0;
}

/* Room for one more line of at most LINE_CAP bytes, writing the buffer out if need be. */
static int make_room(struct mm_flow_writer *w)
{
	return OUT_CAP - w->line.len < LINE_CAP ? write_out(w) : 0;
}

/* Renders a header or trailer line (write_out sends it). */
static int add_frame_line(struct mm_flow_writer *w, void (*render)(struct line *l))
{
	int rc = make_room(w);

	if (rc == 0) {
		render(&w->line);
		line_putc(&w->line, '\n');
	}
	return rc;
}

static int write_header_once(struct mm_flow_writer *w)
{
	if (w->header_written || !w->ops->header)
		return 0;
	w->header_written = true;
	return add_frame_line(w, w->ops->header);
}

static int refuse_after_failure(const struct mm_flow_writer *w)
{
	return mm_fail(MM_EIO, "output: %s: stream failed earlier", w->ops->name);
}

int mm_flow_writer_write(struct mm_flow_writer *w, const struct mm_flow *flows, size_t n)
{
	int rc;

	if (w->failed)
		return refuse_after_failure(w);
	flockfile(w->fp);
	rc = write_header_once(w);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = make_room(w);
		if (rc == 0) {
			w->ops->record(&w->line, &w->texts, &flows[i]);
			line_putc(&w->line, '\n');
		}
	}
	/* Every call's records leave before it returns: output is streamed, not held. */
	if (rc == 0)
		rc = write_out(w);
	funlockfile(w->fp);
	return rc;
}

int mm_flow_writer_finish(struct mm_flow_writer *w)
{
	int rc;

	if (w->failed)
		return refuse_after_failure(w);
	flockfile(w->fp);
	rc = write_header_once(w);
	if (rc == 0 && w->ops->trailer)
		rc = add_frame_line(w, w->ops->trailer);
	if (rc == 0)
		rc = write_out(w);
	funlockfile(w->fp);
	if (rc == 0 && (fflush(w->fp) != 0 || ferror(w->fp))) {
		w->failed = true;
		rc = mm_fail(MM_EIO, "output: %s: write failed: %s", w->ops->name, strerror(errno));
	}
	return rc;
}

void mm_flow_writer_free(struct mm_flow_writer *w)
{
	free(w);
}

char *mm_flow_uid(uint64_t id, char buf[20])
{
	*fmt_uid(buf, id) = '\0';
	return buf;
}
