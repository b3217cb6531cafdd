/*
 * Flow writers: every format renders every field as documented, CSV and
 * NDJSON parse back with independent parsers, the Zeek header is Zeek's,
 * uids are stable and distinct, and a failing stream is reported.
 */
#include "mamori/flow_output.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include "test_util.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 2026-01-01T00:00:00.123456789Z */
#define T0 (1767225600ULL * 1000000000ULL + 123456789ULL)

static struct mm_flow tcp_v4_flow(void)
{
	struct mm_flow f = { 0 };

	mm_addr_parse(&f.src, "192.0.2.1");
	mm_addr_parse(&f.dst, "198.51.100.7");
	f.src_port = 49152;
	f.dst_port = 443;
	f.proto = 6;
	f.first_ns = T0;
	f.last_ns = T0 + 2500000000ULL; /* 2.5 s later */
	f.fwd_packets = 10;
	f.fwd_bytes = 1500;
	f.rev_packets = 8;
	f.rev_bytes = 9000;
	f.fwd_tcp_flags = 0x13; /* FIN SYN ACK */
	f.rev_tcp_flags = 0x12; /* SYN ACK */
	f.id = 7;
	f.end_reason = MM_END_EOF;
	f.vlan = 100;
	f.sensor_id = 42;
	return f;
}

/* ICMPv6 echo request 128 ↔ reply 129 inside two tunnels, one packet. */
static struct mm_flow icmp6_tunnelled_flow(void)
{
	struct mm_flow f = { 0 };

	mm_addr_parse(&f.src, "2001:db8::1");
	mm_addr_parse(&f.dst, "2001:db8:ffff:ffff:ffff:ffff:ffff:2");
	f.src_port = 128;
	f.dst_port = 129;
	f.icmp_type = 128;
	f.proto = 58;
	f.first_ns = f.last_ns = T0;
	f.fwd_packets = 1;
	f.fwd_bytes = 104;
	f.id = 9;
	f.tunnel_parents[0] = 3;
	f.tunnel_parents[1] = 5;
	f.flags = MM_FLOW_TUNNEL | MM_FLOW_FRAGMENTS;
	f.end_reason = MM_END_IDLE;
	memcpy(f.src_country, "JP", 2);
	return f;
}

/* OSPF (IP protocol 89): no ports, Zeek's unknown_transport. */
static struct mm_flow ospf_flow(void)
{
	struct mm_flow f = { 0 };

	mm_addr_parse(&f.src, "10.0.0.1");
	mm_addr_parse(&f.dst, "224.0.0.5");
	mm_addr_parse(&f.next_hop, "10.0.0.254");
	f.proto = 89;
	f.first_ns = T0;
	f.last_ns = T0 + 1000; /* 1 µs */
	f.fwd_packets = 2;
	f.fwd_bytes = 152;
	f.id = 11;
	f.end_reason = MM_END_FORCED;
	return f;
}

/* Renders flows in fmt into a malloc'd string. */
static char *render(enum mm_output_format fmt, const struct mm_flow *flows, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	struct mm_flow_writer *w;

	cr_assert_not_null(fp);
	cr_assert_eq(mm_flow_writer_new(&w, fmt, fp), 0);
	cr_assert_eq(mm_flow_writer_write(w, flows, n), 0);
	cr_assert_eq(mm_flow_writer_finish(w), 0);
	mm_flow_writer_free(w);
	fclose(fp);
	return buf;
}

/* Splits text into lines (in place); returns the count. */
static size_t split_lines(char *text, char **lines, size_t max)
{
	size_t n = 0;

	for (char *p = text; *p && n < max;) {
		char *nl = strchr(p, '\n');

		cr_assert_not_null(nl, "every line ends with a newline");
		*nl = '\0';
		lines[n++] = p;
		p = nl + 1;
	}
	return n;
}

/* Splits a TSV line into fields (in place); returns the count. */
static size_t split_tabs(char *line, char **fields, size_t max)
{
	size_t n = 0;

	fields[n++] = line;
	for (char *p = line; *p && n < max; p++) {
		if (*p == '\t') {
			*p = '\0';
			fields[n++] = p + 1;
		}
	}
	return n;
}

/* RFC 4180 field splitter, written independently of the writer: returns the
 * field count and copies field k (unquoted) into want when want is given. */
static size_t csv_fields(const char *line, size_t k, char *want, size_t want_len)
{
	size_t n = 0, w = 0;
	bool quoted = false;

	for (const char *p = line;; p++) {
		if (quoted) {
			if (*p == '"' && p[1] == '"') {
				if (n == k && want && w + 1 < want_len)
					want[w++] = '"';
				p++;
			} else if (*p == '"') {
				quoted = false;
			} else if (*p == '\0') {
				cr_assert_fail("unterminated quoted field in %s", line);
			} else if (n == k && want && w + 1 < want_len) {
				want[w++] = *p;
			}
			continue;
		}
		if (*p == '"') {
			quoted = true;
		} else if (*p == ',' || *p == '\0') {
			n++;
			if (*p == '\0')
				break;
		} else if (n == k && want && w + 1 < want_len) {
			want[w++] = *p;
		}
	}
	if (want)
		want[w] = '\0';
	return n;
}

static size_t csv_column(const char *header, const char *name)
{
	size_t n = csv_fields(header, 0, NULL, 0);
	char field[64];

	for (size_t k = 0; k < n; k++) {
		csv_fields(header, k, field, sizeof(field));
		if (strcmp(field, name) == 0)
			return k;
	}
	cr_assert_fail("csv header has no column %s", name);
	return 0;
}

Test(output, format_names_parse_and_unknown_is_refused)
{
	enum mm_output_format f;

	cr_assert_eq(mm_output_format_parse("table", &f), 0);
	cr_assert_eq(f, MM_OUTPUT_TABLE);
	cr_assert_eq(mm_output_format_parse("csv", &f), 0);
	cr_assert_eq(f, MM_OUTPUT_CSV);
	cr_assert_eq(mm_output_format_parse("ndjson", &f), 0);
	cr_assert_eq(f, MM_OUTPUT_NDJSON);
	cr_assert_eq(mm_output_format_parse("zeek", &f), 0);
	cr_assert_eq(f, MM_OUTPUT_ZEEK);
	cr_assert_eq(mm_output_format_parse("json", &f), MM_EINVAL);
	cr_assert_not_null(strstr(mm_last_error(), "'json'"));
	cr_assert_not_null(strstr(mm_last_error(), "ndjson"));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(output, uid_is_zeek_shaped_stable_and_distinct)
{
	enum { N = 20000 };
	char **uids = calloc(N, sizeof(*uids));
	char a[20], b[20];

	mm_flow_uid(12345, a);
	mm_flow_uid(12345, b);
	cr_assert_str_eq(a, b);
	cr_assert_eq(strlen(a), 18);
	cr_assert_eq(a[0], 'C');
	for (int i = 1; i < 18; i++)
		cr_assert(strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", a[i]),
			  "uid character %c is base62", a[i]);
	/* Consecutive ids and ids differing in the top bit all get distinct uids. */
	for (int i = 0; i < N; i++) {
		uint64_t id = i % 2 ? (uint64_t)i : (uint64_t)i | 1ULL << 63;

		uids[i] = malloc(20);
		mm_flow_uid(id, uids[i]);
	}
	qsort(uids, N, sizeof(*uids), cmp_str);
	for (int i = 1; i < N; i++)
		cr_assert_str_neq(uids[i - 1], uids[i]);
	for (int i = 0; i < N; i++)
		free(uids[i]);
	free(uids);
}

Test(output, table_aligns_columns_and_never_truncates)
{
	struct mm_flow flows[] = { tcp_v4_flow(), icmp6_tunnelled_flow(), ospf_flow() };
	char *text = render(MM_OUTPUT_TABLE, flows, 3), *lines[8];
	size_t n = split_lines(text, lines, 8);
	char *arrow_hdr, *arrow_v4;

	cr_assert_eq(n, 4, "header and three rows, got %zu", n);
	cr_assert(strncmp(lines[0], "start", 5) == 0);
	/* The header and a typical IPv4 row put the arrow in the same column. */
	arrow_hdr = strstr(lines[0], " -> ");
	arrow_v4 = strstr(lines[1], " -> ");
	cr_assert(arrow_hdr && arrow_v4);
	cr_assert_eq(arrow_hdr - lines[0], arrow_v4 - lines[1]);
	cr_assert_not_null(strstr(lines[1], "2026-01-01T00:00:00.123456Z"));
	cr_assert_not_null(strstr(lines[1], "192.0.2.1:49152 -> 198.51.100.7:443"));
	cr_assert_not_null(strstr(lines[1], " 2.500 "), "duration in seconds: %s", lines[1]);
	cr_assert_not_null(strstr(lines[1], "...A..SF"), "flags union: %s", lines[1]);
	cr_assert_not_null(strstr(lines[1], " 9000 "));
	cr_assert_not_null(strstr(lines[1], " eof"));
	/* A long IPv6 endpoint is written whole, in brackets. */
	cr_assert_not_null(strstr(lines[2], "[2001:db8::1]:128 -> [2001:db8:ffff:ffff:ffff:ffff:ffff:2]:129"));
	cr_assert_not_null(strstr(lines[2], "ipv6-icmp"));
	/* Protocols without ports show bare addresses. */
	cr_assert_not_null(strstr(lines[3], "10.0.0.1 -> 224.0.0.5 "));
	free(text);
}

Test(output, csv_has_every_field_and_quotes_per_rfc4180)
{
	struct mm_flow flows[] = { tcp_v4_flow(), icmp6_tunnelled_flow(), ospf_flow() };
	char *text, *lines[8], field[128];
	size_t n, n_cols;

	/* A country code holding a quote and a comma must come out quoted. */
	flows[2].dst_country[0] = '"';
	flows[2].dst_country[1] = ',';
	text = render(MM_OUTPUT_CSV, flows, 3);
	n = split_lines(text, lines, 8);
	cr_assert_eq(n, 4);
	n_cols = csv_fields(lines[0], 0, NULL, 0);
	cr_assert_eq(n_cols, 32, "every struct mm_flow field has a column (got %zu)", n_cols);
	for (size_t i = 1; i < n; i++)
		cr_assert_eq(csv_fields(lines[i], 0, NULL, 0), n_cols, "row %zu: %s", i, lines[i]);

	csv_fields(lines[1], csv_column(lines[0], "src"), field, sizeof(field));
	cr_assert_str_eq(field, "192.0.2.1");
	csv_fields(lines[1], csv_column(lines[0], "first_ns"), field, sizeof(field));
	cr_assert_str_eq(field, "1767225600123456789");
	csv_fields(lines[1], csv_column(lines[0], "first"), field, sizeof(field));
	cr_assert_str_eq(field, "2026-01-01T00:00:00.123456Z");
	csv_fields(lines[1], csv_column(lines[0], "rev_bytes"), field, sizeof(field));
	cr_assert_str_eq(field, "9000");
	csv_fields(lines[1], csv_column(lines[0], "vlan"), field, sizeof(field));
	cr_assert_str_eq(field, "100");
	csv_fields(lines[1], csv_column(lines[0], "sensor_id"), field, sizeof(field));
	cr_assert_str_eq(field, "42");
	csv_fields(lines[1], csv_column(lines[0], "end_reason"), field, sizeof(field));
	cr_assert_str_eq(field, "eof");
	csv_fields(lines[2], csv_column(lines[0], "tunnel_parents"), field, sizeof(field));
	cr_assert_str_eq(field, "3,5");
	cr_assert_not_null(strstr(lines[2], "\"3,5\""), "a list with commas is quoted");
	csv_fields(lines[2], csv_column(lines[0], "flags"), field, sizeof(field));
	cr_assert_str_eq(field, "tunnel|fragments");
	csv_fields(lines[2], csv_column(lines[0], "src_country"), field, sizeof(field));
	cr_assert_str_eq(field, "JP");
	csv_fields(lines[3], csv_column(lines[0], "next_hop"), field, sizeof(field));
	cr_assert_str_eq(field, "10.0.0.254");
	csv_fields(lines[3], csv_column(lines[0], "dst_country"), field, sizeof(field));
	cr_assert_str_eq(field, "\",");
	cr_assert_not_null(strstr(lines[3], ",\"\"\",\""), "quote doubled inside quotes: %s", lines[3]);
	free(text);
}

Test(output, ndjson_lines_parse_and_carry_every_field)
{
	struct mm_flow flows[] = { tcp_v4_flow(), icmp6_tunnelled_flow(), ospf_flow() };
	char *text = render(MM_OUTPUT_NDJSON, flows, 3), *lines[8];
	size_t n = split_lines(text, lines, 8);
	json_t *o[3];
	json_error_t err;

	cr_assert_eq(n, 3, "one object per flow, no header");
	for (size_t i = 0; i < n; i++) {
		o[i] = json_loads(lines[i], JSON_REJECT_DUPLICATES, &err);
		cr_assert_not_null(o[i], "line %zu does not parse: %s: %s", i, err.text, lines[i]);
		cr_assert_eq(json_object_size(o[i]), 32, "line %zu has %zu keys", i,
			     json_object_size(o[i]));
	}
	cr_assert_str_eq(json_string_value(json_object_get(o[0], "src")), "192.0.2.1");
	cr_assert_str_eq(json_string_value(json_object_get(o[0], "first")), "2026-01-01T00:00:00.123456Z");
	cr_assert_eq(json_integer_value(json_object_get(o[0], "first_ns")), (json_int_t)T0);
	cr_assert_eq(json_integer_value(json_object_get(o[0], "last_ns")), (json_int_t)(T0 + 2500000000ULL));
	cr_assert_eq(json_integer_value(json_object_get(o[0], "fwd_tcp_flags")), 0x13);
	cr_assert_str_eq(json_string_value(json_object_get(o[0], "end_reason")), "eof");
	cr_assert(json_is_null(json_object_get(o[0], "next_hop")));
	cr_assert(json_is_null(json_object_get(o[0], "src_country")));

	cr_assert_str_eq(json_string_value(json_object_get(o[1], "dst")), "2001:db8:ffff:ffff:ffff:ffff:ffff:2");
	cr_assert_eq(json_array_size(json_object_get(o[1], "tunnel_parents")), 2);
	cr_assert_eq(json_integer_value(json_array_get(json_object_get(o[1], "tunnel_parents"), 1)), 5);
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(o[1], "flags"), 0)), "tunnel");
	cr_assert_str_eq(json_string_value(json_object_get(o[1], "src_country")), "JP");
	cr_assert_eq(json_integer_value(json_object_get(o[1], "icmp_type")), 128);

	cr_assert_str_eq(json_string_value(json_object_get(o[2], "next_hop")), "10.0.0.254");
	cr_assert_eq(json_integer_value(json_object_get(o[2], "proto")), 89);
	for (size_t i = 0; i < n; i++)
		json_decref(o[i]);
	free(text);
}

Test(output, ndjson_escapes_control_and_quote_bytes)
{
	struct mm_flow f = tcp_v4_flow();
	char *text;
	json_t *o;
	json_error_t err;

	f.src_country[0] = '"';
	f.src_country[1] = '\n';
	text = render(MM_OUTPUT_NDJSON, &f, 1);
	o = json_loads(text, 0, &err);
	cr_assert_not_null(o, "%s: %s", err.text, text);
	cr_assert_str_eq(json_string_value(json_object_get(o, "src_country")), "\"\n");
	json_decref(o);
	free(text);
}

Test(output, zeek_log_matches_zeeks_layout)
{
	struct mm_flow flows[] = { tcp_v4_flow(), icmp6_tunnelled_flow(), ospf_flow() };
	char *text = render(MM_OUTPUT_ZEEK, flows, 3), *lines[16], *f[32], uid[20];
	size_t n = split_lines(text, lines, 16);

	cr_assert_eq(n, 12, "8 header lines, 3 rows, #close; got %zu", n);
	cr_assert_str_eq(lines[0], "#separator \\x09");
	cr_assert_str_eq(lines[1], "#set_separator\t,");
	cr_assert_str_eq(lines[2], "#empty_field\t(empty)");
	cr_assert_str_eq(lines[3], "#unset_field\t-");
	cr_assert_str_eq(lines[4], "#path\tconn");
	cr_assert(strncmp(lines[5], "#open\t", 6) == 0 && strlen(lines[5]) == 6 + 19, "%s", lines[5]);
	cr_assert_str_eq(lines[6], "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\t"
				   "service\tduration\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\t"
				   "local_resp\tmissed_bytes\thistory\torig_pkts\torig_ip_bytes\t"
				   "resp_pkts\tresp_ip_bytes\ttunnel_parents\tip_proto");
	cr_assert_str_eq(lines[7], "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\t"
				   "interval\tcount\tcount\tstring\tbool\tbool\tcount\tstring\tcount\t"
				   "count\tcount\tcount\tset[string]\tcount");
	cr_assert(strncmp(lines[11], "#close\t", 7) == 0 && strlen(lines[11]) == 7 + 19);

	cr_assert_eq(split_tabs(lines[8], f, 32), 22);
	cr_assert_str_eq(f[0], "1767225600.123457", "ts rounds to the microsecond like %%.6f");
	cr_assert_str_eq(f[1], mm_flow_uid(7, uid));
	cr_assert_str_eq(f[2], "192.0.2.1");
	cr_assert_str_eq(f[3], "49152");
	cr_assert_str_eq(f[4], "198.51.100.7");
	cr_assert_str_eq(f[5], "443");
	cr_assert_str_eq(f[6], "tcp");
	cr_assert_str_eq(f[8], "2.500000");
	cr_assert_str_eq(f[14], "0", "missed_bytes");
	cr_assert_str_eq(f[16], "10");
	cr_assert_str_eq(f[17], "1500");
	cr_assert_str_eq(f[18], "8");
	cr_assert_str_eq(f[19], "9000");
	cr_assert_str_eq(f[20], "-");
	cr_assert_str_eq(f[21], "6");
	for (int i = 9; i <= 15; i++)
		if (i != 14)
			cr_assert_str_eq(f[i], "-", "field %d unset", i);

	cr_assert_eq(split_tabs(lines[9], f, 32), 22);
	cr_assert_str_eq(f[6], "icmp", "Zeek writes icmp for ICMPv6");
	cr_assert_str_eq(f[3], "128");
	cr_assert_str_eq(f[5], "129");
	cr_assert_str_eq(f[8], "-", "one timestamp: duration unset");
	char uid5[20], parents[48];
	snprintf(parents, sizeof(parents), "%s,%s", mm_flow_uid(3, uid), mm_flow_uid(5, uid5));
	cr_assert_str_eq(f[20], parents);
	cr_assert_str_eq(f[21], "58");

	cr_assert_eq(split_tabs(lines[10], f, 32), 22);
	cr_assert_str_eq(f[6], "unknown_transport");
	cr_assert_str_eq(f[3], "0");
	cr_assert_str_eq(f[8], "0.000001");
	cr_assert_str_eq(f[21], "89");
	free(text);
}

Test(output, empty_runs_still_write_headers_and_trailers)
{
	char *csv = render(MM_OUTPUT_CSV, NULL, 0), *zeek = render(MM_OUTPUT_ZEEK, NULL, 0);
	char *ndjson = render(MM_OUTPUT_NDJSON, NULL, 0), *lines[16];

	cr_assert_eq(split_lines(csv, lines, 16), 1);
	cr_assert(strncmp(lines[0], "uid,id,", 7) == 0);
	cr_assert_eq(split_lines(zeek, lines, 16), 9);
	cr_assert(strncmp(lines[8], "#close\t", 7) == 0);
	cr_assert_str_eq(ndjson, "");
	free(csv);
	free(zeek);
	free(ndjson);
}

Test(output, records_are_streamed_not_held_until_finish)
{
	struct mm_flow f = tcp_v4_flow();
	struct mm_flow_writer *w;
	FILE *fp = tmpfile();
	char buf[4096];
	size_t n;

	cr_assert_not_null(fp);
	setvbuf(fp, NULL, _IONBF, 0);
	cr_assert_eq(mm_flow_writer_new(&w, MM_OUTPUT_CSV, fp), 0);
	cr_assert_eq(mm_flow_writer_write(w, &f, 1), 0);
	rewind(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	buf[n] = '\0';
	cr_assert_not_null(strstr(buf, "192.0.2.1"), "the record is out before finish");
	cr_assert_eq(mm_flow_writer_finish(w), 0);
	mm_flow_writer_free(w);
	fclose(fp);
}

Test(output, closed_pipe_is_an_io_error)
{
	struct mm_flow f = tcp_v4_flow();
	struct mm_flow_writer *w;
	int fds[2];
	FILE *fp;

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(pipe(fds), 0);
	close(fds[0]); /* the reader goes away */
	fp = fdopen(fds[1], "w");
	setvbuf(fp, NULL, _IONBF, 0);
	cr_assert_eq(mm_flow_writer_new(&w, MM_OUTPUT_NDJSON, fp), 0);
	cr_assert_eq(mm_flow_writer_write(w, &f, 1), MM_EIO);
	cr_assert_not_null(strstr(mm_last_error(), "Broken pipe"), "%s", mm_last_error());
	cr_assert_eq(mm_flow_writer_write(w, &f, 1), MM_EIO, "stays failed");
	cr_assert_eq(mm_flow_writer_finish(w), MM_EIO);
	mm_flow_writer_free(w);
	fclose(fp);
}

Test(output, full_disk_is_an_io_error_at_the_latest_on_finish)
{
	struct mm_flow f = tcp_v4_flow();
	struct mm_flow_writer *w;
	FILE *fp = fopen("/dev/full", "w");
	int rc;

	if (!fp)
		cr_skip_test("/dev/full is not available here");
	cr_assert_eq(mm_flow_writer_new(&w, MM_OUTPUT_ZEEK, fp), 0);
	rc = mm_flow_writer_write(w, &f, 1);
	if (rc == 0)
		rc = mm_flow_writer_finish(w);
	cr_assert_eq(rc, MM_EIO);
	mm_flow_writer_free(w);
	fclose(fp);
}

/*
 * The writers format numbers, times, addresses and uids by hand instead of
 * with printf, inet_ntop and gmtime_r; these cases pin the hand-written
 * text to what those functions write, at every edge the code branches on.
 */

/* Copies the field of column name in row (1 is the first record) of CSV text into out. */
static void csv_cell(const char *text, size_t row, const char *name, char *out, size_t out_len)
{
	enum { MAX_LINES = 1024 };
	char *copy = strdup(text), **lines = calloc(MAX_LINES, sizeof(*lines));
	size_t n = split_lines(copy, lines, MAX_LINES);

	cr_assert_lt(row, n);
	csv_fields(lines[row], csv_column(lines[0], name), out, out_len);
	free(lines);
	free(copy);
}

Test(output, numbers_are_exact_at_every_digit_count_boundary)
{
	/* 0, 10^k - 1 and 10^k for k = 1..19, and UINT64_MAX: every digit count, both ends. */
	enum { N = 2 + 2 * 19 };
	struct mm_flow flows[N];
	uint64_t values[N], p = 1;
	char *text, field[64], want[32];

	values[0] = 0;
	for (int k = 1; k <= 19; k++) {
		p *= 10;
		values[2 * k - 1] = p - 1;
		values[2 * k] = p;
	}
	values[N - 1] = UINT64_MAX;
	for (size_t i = 0; i < N; i++) {
		flows[i] = tcp_v4_flow();
		flows[i].fwd_bytes = values[i];
		flows[i].last_ns = values[i];
		flows[i].src_as = (uint32_t)values[i]; /* 32-bit fields wrap to their own edges */
	}
	text = render(MM_OUTPUT_CSV, flows, N);
	for (size_t i = 0; i < N; i++) {
		snprintf(want, sizeof(want), "%llu", (unsigned long long)values[i]);
		csv_cell(text, i + 1, "fwd_bytes", field, sizeof(field));
		cr_assert_str_eq(field, want, "fwd_bytes %s", want);
		csv_cell(text, i + 1, "last_ns", field, sizeof(field));
		cr_assert_str_eq(field, want);
		snprintf(want, sizeof(want), "%u", (uint32_t)values[i]);
		csv_cell(text, i + 1, "src_as", field, sizeof(field));
		cr_assert_str_eq(field, want);
	}
	free(text);
}

Test(output, ports_and_ipv4_addresses_at_their_extremes)
{
	struct mm_flow f = tcp_v4_flow();
	char *text, field[64];

	mm_addr_parse(&f.src, "0.0.0.0");
	mm_addr_parse(&f.dst, "255.255.255.255");
	mm_addr_parse(&f.next_hop, "10.100.1.9"); /* one, two and three digit octets */
	f.src_port = 0;
	f.dst_port = 65535;
	text = render(MM_OUTPUT_CSV, &f, 1);
	csv_cell(text, 1, "src", field, sizeof(field));
	cr_assert_str_eq(field, "0.0.0.0");
	csv_cell(text, 1, "dst", field, sizeof(field));
	cr_assert_str_eq(field, "255.255.255.255");
	csv_cell(text, 1, "next_hop", field, sizeof(field));
	cr_assert_str_eq(field, "10.100.1.9");
	csv_cell(text, 1, "src_port", field, sizeof(field));
	cr_assert_str_eq(field, "0");
	csv_cell(text, 1, "dst_port", field, sizeof(field));
	cr_assert_str_eq(field, "65535");
	free(text);
	text = render(MM_OUTPUT_TABLE, &f, 1);
	cr_assert_not_null(strstr(text, " 0.0.0.0:0 -> 255.255.255.255:65535 "), "%s", text);
	free(text);
}

Test(output, ipv6_text_is_rfc5952_as_inet_ntop_writes_it)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "::", "::" },
		{ "::1", "::1" },
		{ "1::", "1::" },
		{ "2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1" }, /* of equal runs the first */
		{ "2001:0:0:1:0:0:0:1", "2001:0:0:1::1" },     /* the longest run */
		{ "1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0" },     /* single zero groups stay */
		{ "2001:DB8:00AB::0C", "2001:db8:ab::c" },     /* lower case, no leading zeros */
		{ "::1.2.3.4", "::1.2.3.4" },                  /* IPv4-compatible: dotted quad */
		{ "::0:1:2:3", "::1:2:3" },
		{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" },
	};
	enum { N = sizeof(cases) / sizeof(cases[0]) };
	struct mm_flow flows[N];
	char *text, field[64], lib[MM_ADDR_STRLEN];

	for (size_t i = 0; i < N; i++) {
		flows[i] = tcp_v4_flow();
		cr_assert_eq(mm_addr_parse(&flows[i].src, cases[i].in), 0, "%s", cases[i].in);
	}
	text = render(MM_OUTPUT_CSV, flows, N);
	for (size_t i = 0; i < N; i++) {
		csv_cell(text, i + 1, "src", field, sizeof(field));
		cr_assert_str_eq(field, cases[i].want);
		cr_assert_str_eq(field, mm_addr_format(&flows[i].src, lib));
	}
	free(text);
}

Test(output, iso_times_cross_second_minute_day_year_and_leap_day)
{
	static const struct {
		uint64_t s, ns;
		const char *want;
	} cases[] = {
		{ 0, 0, "1970-01-01T00:00:00.000000Z" },
		{ 951782399, 999999999, "2000-02-28T23:59:59.999999Z" }, /* truncated, not rounded */
		{ 951782400, 0, "2000-02-29T00:00:00.000000Z" },         /* leap day of a 400-year */
		{ 1709251199, 999999000, "2024-02-29T23:59:59.999999Z" },
		{ 1709251200, 1000, "2024-03-01T00:00:00.000001Z" },
		{ 1767225659, 123456789, "2026-01-01T00:00:59.123456Z" }, /* minute boundary */
		{ 1767225660, 0, "2026-01-01T00:01:00.000000Z" },
		{ 1735689599, 500000000, "2024-12-31T23:59:59.500000Z" }, /* back a year */
		{ 1735689600, 0, "2025-01-01T00:00:00.000000Z" },
		{ 4107542399, 0, "2100-02-28T23:59:59.000000Z" }, /* 2100 has no leap day */
		{ 4107542400, 0, "2100-03-01T00:00:00.000000Z" },
	};
	enum { N = sizeof(cases) / sizeof(cases[0]), N_RANDOM = 500 };
	struct mm_flow flows[N + N_RANDOM];
	char *text, field[64], lib[MM_TIME_STRLEN];
	uint64_t x = 0x243f6a8885a308d3ULL;

	for (size_t i = 0; i < N; i++) {
		flows[i] = tcp_v4_flow();
		flows[i].first_ns = cases[i].s * 1000000000ULL + cases[i].ns;
		flows[i].last_ns = flows[i].first_ns;
	}
	/* Times all over the range, alternating days, against libc's calendar. */
	for (size_t i = N; i < N + N_RANDOM; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		flows[i] = tcp_v4_flow();
		flows[i].first_ns = x;
		flows[i].last_ns = x % 4102444800000000000ULL; /* before 2100 */
	}
	text = render(MM_OUTPUT_CSV, flows, N + N_RANDOM);
	for (size_t i = 0; i < N; i++) {
		csv_cell(text, i + 1, "first", field, sizeof(field));
		cr_assert_str_eq(field, cases[i].want);
	}
	for (size_t i = N; i < N + N_RANDOM; i++) {
		csv_cell(text, i + 1, "first", field, sizeof(field));
		cr_assert_str_eq(field, mm_time_format_iso(flows[i].first_ns, lib));
		csv_cell(text, i + 1, "last", field, sizeof(field));
		cr_assert_str_eq(field, mm_time_format_iso(flows[i].last_ns, lib));
	}
	free(text);
}

Test(output, zeek_ts_rounds_microseconds_into_the_next_second)
{
	struct mm_flow flows[3] = { tcp_v4_flow(), tcp_v4_flow(), tcp_v4_flow() };
	char *text, *lines[16], *f[32];

	flows[0].first_ns = 1767225599999999500ULL; /* .9999995 rounds up to the next second */
	flows[0].last_ns = flows[0].first_ns + 999; /* 999 ns: 0.000001 */
	flows[1].first_ns = 1767225599999999499ULL; /* just below: stays */
	flows[1].last_ns = flows[1].first_ns + 499; /* rounds to 0.000000, yet is set */
	flows[2].first_ns = UINT64_MAX;
	flows[2].last_ns = UINT64_MAX;
	text = render(MM_OUTPUT_ZEEK, flows, 3);
	cr_assert_eq(split_lines(text, lines, 16), 12);
	cr_assert_eq(split_tabs(lines[8], f, 32), 22);
	cr_assert_str_eq(f[0], "1767225600.000000");
	cr_assert_str_eq(f[8], "0.000001");
	cr_assert_eq(split_tabs(lines[9], f, 32), 22);
	cr_assert_str_eq(f[0], "1767225599.999999");
	cr_assert_str_eq(f[8], "0.000000");
	cr_assert_eq(split_tabs(lines[10], f, 32), 22);
	cr_assert_str_eq(f[0], "18446744073.709552");
	cr_assert_str_eq(f[8], "-");
	free(text);
}

Test(output, uid_text_never_changes)
{
	char uid[20];

	/* uids already written to logs and named as tunnel parents must stay the same. */
	cr_assert_str_eq(mm_flow_uid(0, uid), "C00000000000fgQnwl");
	cr_assert_str_eq(mm_flow_uid(1, uid), "C7QoREvOYXCfSdqzAm");
	cr_assert_str_eq(mm_flow_uid(10, uid), "C0dBRZEX1ZpBVLkJ10");
	cr_assert_str_eq(mm_flow_uid(UINT64_MAX, uid), "CFWSzky9n9z9rHy8cW");
}

/*
 * Records are gathered in a buffer and written when it fills and at the
 * end of every call: a call with far more text than the buffer holds must
 * write exactly what one call per record writes, in the same order.
 */
Test(output, a_batch_larger_than_the_buffer_equals_one_record_at_a_time)
{
	enum { N = 3000 }; /* about 700 KB of CSV */
	static const enum mm_output_format fmts[] = { MM_OUTPUT_CSV, MM_OUTPUT_NDJSON,
						      MM_OUTPUT_TABLE };
	struct mm_flow *flows = calloc(N, sizeof(*flows));

	cr_assert_not_null(flows);
	for (size_t i = 0; i < N; i++) {
		flows[i] = i % 3 == 0 ? tcp_v4_flow() : i % 3 == 1 ? icmp6_tunnelled_flow() : ospf_flow();
		flows[i].id = i + 1;
		flows[i].first_ns = T0 + i * 7777777777ULL;
		flows[i].last_ns = flows[i].first_ns + i * 1000003ULL;
		flows[i].fwd_bytes = (uint64_t)i * i * i;
	}
	for (size_t k = 0; k < sizeof(fmts) / sizeof(fmts[0]); k++) {
		char *whole = render(fmts[k], flows, N), *single = NULL;
		size_t len = 0;
		FILE *fp = open_memstream(&single, &len);
		struct mm_flow_writer *w;
		char uid[20];

		cr_assert_not_null(fp);
		cr_assert_eq(mm_flow_writer_new(&w, fmts[k], fp), 0);
		for (size_t i = 0; i < N; i++)
			cr_assert_eq(mm_flow_writer_write(w, &flows[i], 1), 0);
		cr_assert_eq(mm_flow_writer_finish(w), 0);
		mm_flow_writer_free(w);
		fclose(fp);
		cr_assert_gt(strlen(whole), 400000, "the batch is several buffers long");
		cr_assert_str_eq(whole, single, "format %zu", k);
		if (fmts[k] != MM_OUTPUT_TABLE) /* the last record, after several buffers went out */
			cr_assert_not_null(strstr(whole, mm_flow_uid(flows[N - 1].id, uid)));
		free(whole);
		free(single);
	}
	free(flows);
}

/*
 * Every octet value (one, two and three digits) and every IPv6 group
 * length and hex digit, against mm_addr_format (inet_ntop's text).
 */
Test(output, every_octet_and_hex_group_as_inet_ntop_writes_it)
{
	enum { N = 256 };
	struct mm_flow flows[N];
	char *text, field[64], lib[MM_ADDR_STRLEN];

	for (size_t i = 0; i < N; i++) {
		uint8_t v4[4] = { (uint8_t)i, (uint8_t)(255 - i), (uint8_t)(i * 7), (uint8_t)(i * 13 + 5) };
		uint8_t v6[16];

		flows[i] = tcp_v4_flow();
		mm_addr_set_v4(&flows[i].src, v4);
		/* Groups d, dd, ddd, dddd (every length) of hex digit d = i's low, then high, nibble. */
		for (size_t g = 0; g < 8; g++) {
			unsigned d = g < 4 ? i & 15 : i >> 4, group = (d * 0x1111u) >> (4 * (3 - g % 4));

			v6[2 * g] = (uint8_t)(group >> 8);
			v6[2 * g + 1] = (uint8_t)group;
		}
		mm_addr_set_v6(&flows[i].dst, v6);
	}
	text = render(MM_OUTPUT_CSV, flows, N);
	for (size_t i = 0; i < N; i++) {
		csv_cell(text, i + 1, "src", field, sizeof(field));
		cr_assert_str_eq(field, mm_addr_format(&flows[i].src, lib));
		csv_cell(text, i + 1, "dst", field, sizeof(field));
		cr_assert_str_eq(field, mm_addr_format(&flows[i].dst, lib));
	}
	free(text);
}

/*
 * Each second's text is rendered once and reused: records whose times
 * share a second, or fall on seconds far apart that could share a cached
 * slot, must each get their own text. Checked against mm_time_format_iso
 * and printf.
 */
Test(output, times_that_share_a_second_or_a_cache_slot)
{
	enum { N = 600 };
	struct mm_flow flows[N];
	char *text, field[64], want[64], lib[MM_TIME_STRLEN], *lines[N + 16], *f[32];
	uint64_t s0 = 1767225600ULL;

	for (size_t i = 0; i < N; i++) {
		/* Seconds s0 + 2^k for k in 0..12, in turn, with ns fractions that vary. */
		uint64_t sec = s0 + (1ULL << (i % 13)), frac = (i * 123456791ULL) % 1000000000ULL;

		flows[i] = tcp_v4_flow();
		flows[i].first_ns = sec * 1000000000ULL + frac;
		flows[i].last_ns = (sec + i % 5) * 1000000000ULL + (999999999ULL - frac);
	}
	text = render(MM_OUTPUT_CSV, flows, N);
	for (size_t i = 0; i < N; i++) {
		csv_cell(text, i + 1, "first", field, sizeof(field));
		cr_assert_str_eq(field, mm_time_format_iso(flows[i].first_ns, lib));
		csv_cell(text, i + 1, "last", field, sizeof(field));
		cr_assert_str_eq(field, mm_time_format_iso(flows[i].last_ns, lib));
		snprintf(want, sizeof(want), "%llu", (unsigned long long)flows[i].first_ns);
		csv_cell(text, i + 1, "first_ns", field, sizeof(field));
		cr_assert_str_eq(field, want);
		snprintf(want, sizeof(want), "%llu", (unsigned long long)flows[i].last_ns);
		csv_cell(text, i + 1, "last_ns", field, sizeof(field));
		cr_assert_str_eq(field, want);
	}
	free(text);
	text = render(MM_OUTPUT_ZEEK, flows, N);
	cr_assert_eq(split_lines(text, lines, N + 16), N + 9);
	for (size_t i = 0; i < N; i++) {
		uint64_t us = (flows[i].first_ns + 500) / 1000;

		cr_assert_eq(split_tabs(lines[8 + i], f, 32), 22);
		snprintf(want, sizeof(want), "%llu.%06llu", (unsigned long long)(us / 1000000),
			 (unsigned long long)(us % 1000000));
		cr_assert_str_eq(f[0], want);
	}
	free(text);
}
