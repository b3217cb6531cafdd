/*
 * Flow record writers (see flow_output.h): one table of per-format
 * functions that render a record into a bounded line buffer, and one
 * streaming loop that writes each line as it is rendered, so memory does
 * not grow with the number of flows and a failing stream is seen at once.
 * Fields are appended by small formatters instead of printf: on a large
 * capture printf cost more than metering itself.
 */
#include "mamori/flow_output.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <arpa/inet.h>
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

struct line {
	size_t len;
	char buf[LINE_CAP];
};

/*
 * The "YYYY-MM-DDT" text of the last day an ISO time fell on. Times in
 * a run cluster within a day, so the calendar is consulted once a day
 * instead of once a field.
 */
#define DATE_TEXT_LEN 11

struct date_cache {
	bool valid;
	bool plain;   /* the day has 86400 seconds as libc counts them (see date_cache_fill) */
	uint64_t day; /* days since the epoch */
	char text[DATE_TEXT_LEN + 1];
};

struct format_ops {
	const char *name;
	void (*header)(struct line *l);  /* NULL: none */
	void (*record)(struct line *l, struct date_cache *dates, const struct mm_flow *f);
	void (*trailer)(struct line *l); /* NULL: none */
};

struct mm_flow_writer {
	const struct format_ops *ops;
	FILE *fp;
	bool header_written;
	bool failed;        /* the stream failed once; every later call says so */
	struct date_cache dates;
	struct line line;
};

/* ---- formatters: write at p (room checked by the caller), return the end ---- */

#define U64_TEXT_MAX 20 /* digits of UINT64_MAX */

/* "00" "01" … "99": one table lookup yields two digits, halving the divisions. */
static const char digit_pairs[201] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

static unsigned decimal_digits(uint64_t v)
{
	unsigned n = 1;

	for (uint64_t limit = 10; v >= limit; limit *= 10) {
		n++;
		if (n == U64_TEXT_MAX)
			break;
	}
	return n;
}

/* Writes the low digits of v ending just before end, two at a time. */
static void fill_digits_backwards(char *end, uint64_t v)
{
	uint32_t small;

	/* 64-bit division is several times slower than 32-bit: leave it early. */
	while (v > UINT32_MAX) {
		end -= 2;
		memcpy(end, digit_pairs + 2 * (v % 100), 2);
		v /= 100;
	}
	small = (uint32_t)v;
	while (small >= 100) {
		end -= 2;
		memcpy(end, digit_pairs + 2 * (small % 100), 2);
		small /= 100;
	}
	if (small >= 10)
		memcpy(end - 2, digit_pairs + 2 * small, 2);
	else
		end[-1] = (char)('0' + small);
}

/* As printf's %llu. */
static char *fmt_u64(char *p, uint64_t v)
{
	char *end = p + decimal_digits(v);

	fill_digits_backwards(end, v);
	return end;
}

/* Exactly width digits, zero-padded (printf's %0*u); v must be below 10^width. */
static char *fmt_fixed(char *p, uint32_t v, unsigned width)
{
	char *end = p + width;

	memset(p, '0', width);
	fill_digits_backwards(end, v);
	return end;
}

static char *fmt_str(char *p, const char *s, size_t len)
{
	memcpy(p, s, len);
	return p + len;
}

static char *fmt_octet(char *p, unsigned b)
{
	if (b >= 100) {
		*p++ = (char)('0' + b / 100);
		b %= 100;
		return fmt_str(p, digit_pairs + 2 * b, 2);
	}
	if (b >= 10)
		return fmt_str(p, digit_pairs + 2 * b, 2);
	*p++ = (char)('0' + b);
	return p;
}

/*
 * mm_addr_format's text: IPv4 dotted quad by hand (most flows are IPv4),
 * IPv6 through inet_ntop, whose RFC 5952 rules (longest zero run, embedded
 * IPv4 forms) are not worth repeating for the rarer family.
 */
static char *fmt_addr(char *p, const struct mm_addr *a)
{
	if (!mm_addr_is_v4(a)) {
		inet_ntop(AF_INET6, a->b, p, MM_ADDR_STRLEN);
		return p + strlen(p);
	}
	for (int i = 12; i < 16; i++) {
		if (i > 12)
			*p++ = '.';
		p = fmt_octet(p, a->b[i]);
	}
	return p;
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

#define SECONDS_US_MAX (U64_TEXT_MAX + 7)

/* Seconds with microseconds, rounded to the nearest microsecond (as Zeek's %.6f does). */
static char *fmt_seconds_us(char *p, uint64_t ns)
{
	uint64_t us = ns / 1000 + (ns % 1000 >= 500);

	p = fmt_u64(p, us / 1000000);
	*p++ = '.';
	return fmt_fixed(p, (uint32_t)(us % 1000000), 6);
}

/* "YYYY-MM-DDT" of tm, as mm_time_format_iso writes it. */
static void date_text(const struct tm *tm, char out[DATE_TEXT_LEN + 1])
{
	snprintf(out, DATE_TEXT_LEN + 1, "%04d-%02d-%02dT", tm->tm_year + 1900, tm->tm_mon + 1,
		 tm->tm_mday);
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
	date_text(&tf, dc->text);
}

static char *fmt_hms(char *p, int hour, int min, int sec)
{
	p = fmt_fixed(p, (uint32_t)hour, 2);
	*p++ = ':';
	p = fmt_fixed(p, (uint32_t)min, 2);
	*p++ = ':';
	return fmt_fixed(p, (uint32_t)sec, 2);
}

#define TIME_ISO_MAX 32 /* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" is 27 */

/* mm_time_format_iso's text: microseconds truncated, not rounded. */
static char *fmt_time_iso(char *p, struct date_cache *dc, uint64_t ns)
{
	uint64_t secs = ns / MM_NS_PER_SEC, day = secs / 86400;
	uint32_t in_day = (uint32_t)(secs % 86400);

	if (!dc->valid || dc->day != day)
		date_cache_fill(dc, day);
	if (dc->plain) {
		p = fmt_str(p, dc->text, DATE_TEXT_LEN);
		p = fmt_hms(p, (int)(in_day / 3600), (int)(in_day / 60 % 60), (int)(in_day % 60));
	} else {
		time_t t = (time_t)secs;
		struct tm tm;
		char text[DATE_TEXT_LEN + 1];

		gmtime_r(&t, &tm);
		date_text(&tm, text);
		p = fmt_str(p, text, DATE_TEXT_LEN);
		p = fmt_hms(p, tm.tm_hour, tm.tm_min, tm.tm_sec);
	}
	*p++ = '.';
	p = fmt_fixed(p, (uint32_t)(ns % MM_NS_PER_SEC / 1000), 6);
	*p++ = 'Z';
	return p;
}

#define UID_LEN 18

static char *fmt_uid(char *p, uint64_t id);

/* ---- the line: every append reserves its worst case first ---- */

static void line_reset(struct line *l)
{
	l->len = 0;
}

/* Room for up to max bytes at the end of the line; running out is a bug. */
static char *line_reserve(struct line *l, size_t max)
{
	MM_BUG(max >= LINE_CAP - l->len);
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

static void put_time_iso(struct line *l, struct date_cache *dc, uint64_t ns)
{
	line_commit(l, fmt_time_iso(line_reserve(l, TIME_ISO_MAX), dc, ns));
}

static void put_seconds_us(struct line *l, uint64_t ns)
{
	line_commit(l, fmt_seconds_us(line_reserve(l, SECONDS_US_MAX), ns));
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

static const char *const flag_names[] = { "tunnel", "fragments", "sampled" };
#define N_FLAG_NAMES (sizeof(flag_names) / sizeof(flag_names[0]))

/* Country code as text ("" when unknown); the two bytes are copied as they are. */
static void country_text(const char cc[2], char out[3])
{
	out[0] = cc[0];
	out[1] = cc[0] ? cc[1] : '\0';
	out[2] = '\0';
}

/* ---- table: aligned columns for people ---- */

/*
 * Widths fit the usual values (an IPv4 endpoint with its port, a week in
 * seconds, 10^8 packets, 10^11 bytes); longer values widen their column
 * for that line instead of being cut.
 */
#define TABLE_ROW "%-27s %10s %-9s %21s -> %-21s %8s %11s %8s %11s %-8s %s"

static void table_header(struct line *l)
{
	line_printf(l, TABLE_ROW, "start", "duration", "proto", "originator", "responder",
		    "orig_pkt", "orig_bytes", "resp_pkt", "resp_bytes", "flags", "end");
}

static void table_record(struct line *l, const struct mm_flow *f)
{
	char start[MM_TIME_STRLEN], proto_buf[8], flags[9], duration[32];
	char opkt[24], obytes[24], rpkt[24], rbytes[24];
	struct line src, dst;
	uint64_t dur_ms = (flow_duration_ns(f) + 500000) / 1000000;

	line_reset(&src);
	line_reset(&dst);
	put_endpoint(&src, &f->src, f->src_port, f->proto);
	put_endpoint(&dst, &f->dst, f->dst_port, f->proto);
	line_putc(&src, '\0');
	line_putc(&dst, '\0');
	snprintf(duration, sizeof(duration), "%llu.%03llu", (unsigned long long)(dur_ms / 1000),
		 (unsigned long long)(dur_ms % 1000));
	snprintf(opkt, sizeof(opkt), "%llu", (unsigned long long)f->fwd_packets);
	snprintf(obytes, sizeof(obytes), "%llu", (unsigned long long)f->fwd_bytes);
	snprintf(rpkt, sizeof(rpkt), "%llu", (unsigned long long)f->rev_packets);
	snprintf(rbytes, sizeof(rbytes), "%llu", (unsigned long long)f->rev_bytes);
	line_printf(l, TABLE_ROW, mm_time_format_iso(f->first_ns, start), duration,
		    mm_proto_name(f->proto, proto_buf), src.buf, dst.buf, opkt, obytes, rpkt, rbytes,
		    f->proto == 6 ? mm_tcp_flags_format(f->fwd_tcp_flags | f->rev_tcp_flags, flags) : "-",
		    mm_end_reason_name(f->end_reason));
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
static void csv_field(struct line *l, const char *s)
{
	if (strpbrk(s, ",\"\r\n") == NULL) {
		line_puts(l, s);
		return;
	}
	line_putc(l, '"');
	for (; *s; s++) {
		if (*s == '"')
			line_putc(l, '"');
		line_putc(l, *s);
	}
	line_putc(l, '"');
}

static void csv_record(struct line *l, const struct mm_flow *f)
{
	char uid[20], first[MM_TIME_STRLEN], last[MM_TIME_STRLEN], src[MM_ADDR_STRLEN],
		dst[MM_ADDR_STRLEN], hop[MM_ADDR_STRLEN], cc[3];
	struct line list;

	line_printf(l, "%s,%llu,%s,%s,%llu,%llu,%s,%u,%s,%u,%u,%llu,%llu,%llu,%llu,%u,%u,%u,%u,%u,",
		    mm_flow_uid(f->id, uid), (unsigned long long)f->id,
		    mm_time_format_iso(f->first_ns, first), mm_time_format_iso(f->last_ns, last),
		    (unsigned long long)f->first_ns, (unsigned long long)f->last_ns,
		    mm_addr_format(&f->src, src), f->src_port, mm_addr_format(&f->dst, dst),
		    f->dst_port, f->proto, (unsigned long long)f->fwd_packets,
		    (unsigned long long)f->fwd_bytes, (unsigned long long)f->rev_packets,
		    (unsigned long long)f->rev_bytes, f->fwd_tcp_flags, f->rev_tcp_flags,
		    f->icmp_type, f->icmp_code, f->vlan);
	line_puts(l, addr_is_zero(&f->next_hop) ? "" : mm_addr_format(&f->next_hop, hop));
	line_printf(l, ",%u,%u,%u,%u,%u,%u,%s,", f->src_as, f->dst_as, f->in_if, f->out_if,
		    f->sampling_rate, f->sensor_id, mm_end_reason_name(f->end_reason));

	line_reset(&list);
	for (size_t i = 0; i < N_FLAG_NAMES; i++)
		if (f->flags & (1u << i))
			line_printf(&list, "%s%s", list.len ? "|" : "", flag_names[i]);
	line_putc(&list, '\0');
	csv_field(l, list.buf);
	line_putc(l, ',');

	line_reset(&list);
	for (size_t i = 0; i < MM_TUNNEL_PARENTS; i++)
		if (f->tunnel_parents[i])
			line_printf(&list, "%s%llu", list.len ? "," : "",
				    (unsigned long long)f->tunnel_parents[i]);
	line_putc(&list, '\0');
	csv_field(l, list.buf);
	line_putc(l, ',');

	country_text(f->src_country, cc);
	csv_field(l, cc);
	line_putc(l, ',');
	country_text(f->dst_country, cc);
	csv_field(l, cc);
}

/* ---- ndjson: one object per flow, every field ---- */

static void json_string(struct line *l, const char *s)
{
	line_putc(l, '"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			line_printf(l, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			line_printf(l, "\\u%04x", c); /* bytes above ASCII read as Latin-1 */
		else
			line_putc(l, (char)c);
	}
	line_putc(l, '"');
}

static void json_country(struct line *l, const char *key, const char cc[2])
{
	char text[3];

	line_printf(l, ",\"%s\":", key);
	country_text(cc, text);
	if (text[0])
		json_string(l, text);
	else
		line_puts(l, "null");
}

static void ndjson_record(struct line *l, const struct mm_flow *f)
{
	char uid[20], first[MM_TIME_STRLEN], last[MM_TIME_STRLEN], src[MM_ADDR_STRLEN],
		dst[MM_ADDR_STRLEN], hop[MM_ADDR_STRLEN];
	bool any = false;

	line_printf(l,
		    "{\"uid\":\"%s\",\"id\":%llu,\"first\":\"%s\",\"first_ns\":%llu,"
		    "\"last\":\"%s\",\"last_ns\":%llu,\"src\":\"%s\",\"src_port\":%u,"
		    "\"dst\":\"%s\",\"dst_port\":%u,\"proto\":%u,\"fwd_packets\":%llu,"
		    "\"fwd_bytes\":%llu,\"rev_packets\":%llu,\"rev_bytes\":%llu,"
		    "\"fwd_tcp_flags\":%u,\"rev_tcp_flags\":%u,\"icmp_type\":%u,\"icmp_code\":%u,"
		    "\"vlan\":%u,\"next_hop\":",
		    mm_flow_uid(f->id, uid), (unsigned long long)f->id,
		    mm_time_format_iso(f->first_ns, first), (unsigned long long)f->first_ns,
		    mm_time_format_iso(f->last_ns, last), (unsigned long long)f->last_ns,
		    mm_addr_format(&f->src, src), f->src_port, mm_addr_format(&f->dst, dst),
		    f->dst_port, f->proto, (unsigned long long)f->fwd_packets,
		    (unsigned long long)f->fwd_bytes, (unsigned long long)f->rev_packets,
		    (unsigned long long)f->rev_bytes, f->fwd_tcp_flags, f->rev_tcp_flags,
		    f->icmp_type, f->icmp_code, f->vlan);
	if (addr_is_zero(&f->next_hop))
		line_puts(l, "null");
	else
		line_printf(l, "\"%s\"", mm_addr_format(&f->next_hop, hop));
	line_printf(l,
		    ",\"src_as\":%u,\"dst_as\":%u,\"in_if\":%u,\"out_if\":%u,\"sampling_rate\":%u,"
		    "\"sensor_id\":%u,\"end_reason\":\"%s\",\"flags\":[",
		    f->src_as, f->dst_as, f->in_if, f->out_if, f->sampling_rate, f->sensor_id,
		    mm_end_reason_name(f->end_reason));
	for (size_t i = 0; i < N_FLAG_NAMES; i++) {
		if (f->flags & (1u << i)) {
			line_printf(l, "%s\"%s\"", any ? "," : "", flag_names[i]);
			any = true;
		}
	}
	line_puts(l, "],\"tunnel_parents\":[");
	any = false;
	for (size_t i = 0; i < MM_TUNNEL_PARENTS; i++) {
		if (f->tunnel_parents[i]) {
			line_printf(l, "%s%llu", any ? "," : "",
				    (unsigned long long)f->tunnel_parents[i]);
			any = true;
		}
	}
	line_putc(l, ']');
	json_country(l, "src_country", f->src_country);
	json_country(l, "dst_country", f->dst_country);
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
	line_printf(l, "#%s\t%s", tag, text);
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

static void zeek_record(struct line *l, const struct mm_flow *f)
{
	char uid[20], src[MM_ADDR_STRLEN], dst[MM_ADDR_STRLEN];
	uint64_t duration = flow_duration_ns(f);
	bool any = false;

	put_seconds_us(l, f->first_ns);
	line_printf(l, "\t%s\t%s\t%u\t%s\t%u\t%s\t-\t", mm_flow_uid(f->id, uid),
		    mm_addr_format(&f->src, src), f->src_port, mm_addr_format(&f->dst, dst),
		    f->dst_port, zeek_proto(f->proto));
	/* Zeek leaves duration unset for a connection whose packets share one timestamp. */
	if (duration)
		put_seconds_us(l, duration);
	else
		line_putc(l, '-');
	/* Payload byte counts, state, locality and history need payload or
	 * configuration a flow meter does not have: unset, as Zeek writes them. */
	line_printf(l, "\t-\t-\t-\t-\t-\t0\t-\t%llu\t%llu\t%llu\t%llu\t",
		    (unsigned long long)f->fwd_packets, (unsigned long long)f->fwd_bytes,
		    (unsigned long long)f->rev_packets, (unsigned long long)f->rev_bytes);
	for (size_t i = 0; i < MM_TUNNEL_PARENTS; i++) {
		if (f->tunnel_parents[i]) {
			line_printf(l, "%s%s", any ? "," : "", mm_flow_uid(f->tunnel_parents[i], uid));
			any = true;
		}
	}
	if (!any)
		line_putc(l, '-');
	line_printf(l, "\t%u", f->proto);
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

/* Writes the rendered line plus a newline. */
static int emit_line(struct mm_flow_writer *w)
{
	struct line *l = &w->line;

	line_putc(l, '\n');
	if (fwrite(l->buf, 1, l->len, w->fp) != l->len) {
		w->failed = true;
		return mm_fail(MM_EIO, "output: %s: write failed: %s", w->ops->name, strerror(errno));
	}
	return 0;
}

static int write_header_once(struct mm_flow_writer *w)
{
	if (w->header_written || !w->ops->header)
		return 0;
	w->header_written = true;
	line_reset(&w->line);
	w->ops->header(&w->line);
	return emit_line(w);
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
	rc = write_header_once(w);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		line_reset(&w->line);
		w->ops->record(&w->line, &flows[i]);
		rc = emit_line(w);
	}
	return rc;
}

int mm_flow_writer_finish(struct mm_flow_writer *w)
{
	int rc;

	if (w->failed)
		return refuse_after_failure(w);
	rc = write_header_once(w);
	if (rc == 0 && w->ops->trailer) {
		line_reset(&w->line);
		w->ops->trailer(&w->line);
		rc = emit_line(w);
	}
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

/* splitmix64's finaliser: xor-shifts and odd multipliers, each invertible, so a bijection. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void base62_fixed(uint64_t v, char *out, int width)
{
	static const char digits[] =
		"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

	for (int i = width - 1; i >= 0; i--) {
		out[i] = digits[v % 62];
		v /= 62;
	}
}

char *mm_flow_uid(uint64_t id, char buf[20])
{
	/*
	 * The first 11 digits spell a bijection of the id (62^11 > 2^64), so
	 * distinct ids never share a uid; the last 6 only pad to Zeek's length.
	 */
	buf[0] = 'C';
	base62_fixed(mix64(id), buf + 1, 11);
	base62_fixed(mix64(id ^ 0x9e3779b97f4a7c15ULL), buf + 12, 6);
	buf[18] = '\0';
	return buf;
}
