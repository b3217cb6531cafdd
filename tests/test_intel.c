/*
 * intel/: loaders against the shared FireHOL, IPsum and STIX files, the
 * STIX pattern parser, CSV quoting, garbage-line reports, the LPM tables
 * against a linear-scan reference, expiry, the atomic reload under a
 * concurrent reader, and the `mamori intel` subcommands.
 */
#include "intel/intel_int.h" /* node counts: the differential test must reach every node kind */
#include "mamori/intel.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include "test_util.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ---- */

static struct mm_intel_defaults defaults(const char *source)
{
	return (struct mm_intel_defaults){ .source = source, .confidence = 50 };
}

/* Compiles set into a scratch file and maps it. */
static struct mm_intel_snap *compile_snap(const struct mm_intel_set *set, uint64_t now_ns)
{
	char *dir = tu_tmpdir(), path[512];
	struct mm_intel_snap *snap = NULL;

	snprintf(path, sizeof(path), "%s/set.mmi", dir);
	cr_assert_eq(mm_intel_compile(set, now_ns, path), 0, "%s", mm_last_error());
	cr_assert_eq(mm_intel_snap_open(path, &snap), 0, "%s", mm_last_error());
	unlink(path);
	rmdir(dir);
	free(dir);
	return snap;
}

static struct mm_intel_set *load_text(const char *name, const char *text, enum mm_intel_format fmt,
				      struct mm_intel_load_stats *st)
{
	struct mm_intel_defaults def = defaults("test");
	struct mm_intel_set *set;

	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_buf(set, name, text, strlen(text), fmt, &def, st), 0, "%s", mm_last_error());
	return set;
}

static struct mm_addr addr(const char *text)
{
	struct mm_addr a;

	cr_assert_eq(mm_addr_parse(&a, text), 0, "%s", text);
	return a;
}

/* a + delta as a 128-bit number (wraps). */
static struct mm_addr addr_add(struct mm_addr a, int delta)
{
	for (int i = 15; i >= 0 && delta; i--) {
		int v = a.b[i] + delta;

		a.b[i] = (uint8_t)v;
		delta = v < 0 ? -1 : (v > 255 ? 1 : 0);
	}
	return a;
}

/* The last address of p. */
static struct mm_addr prefix_last(const struct mm_prefix *p)
{
	struct mm_addr a = p->addr;

	for (unsigned i = mm_prefix_bits128(p); i < 128; i++)
		a.b[i / 8] |= (uint8_t)(0x80u >> (i % 8));
	return a;
}

static bool same_family(const struct mm_prefix *p, const struct mm_addr *a)
{
	return mm_addr_is_v4(&p->addr) == mm_addr_is_v4(a);
}

/* a inside p: a masked compare of the two 64-bit halves, written apart from the code under test. */
static bool inside_prefix(const struct mm_prefix *p, const struct mm_addr *a)
{
	unsigned bits = mm_prefix_bits128(p);
	uint64_t mh = bits >= 64 ? ~0ull : (bits ? ~0ull << (64 - bits) : 0);
	uint64_t ml = bits <= 64 ? 0 : (bits >= 128 ? ~0ull : ~0ull << (128 - bits));

	return ((mm_addr_be64_(a->b) ^ mm_addr_be64_(p->addr.b)) & mh) == 0 &&
	       ((mm_addr_be64_(a->b + 8) ^ mm_addr_be64_(p->addr.b + 8)) & ml) == 0;
}

/* The reference: longest unexpired prefix containing a, by linear scan; -1 if none. */
static long naive_lpm(const struct mm_prefix *pfx, const uint64_t *expires, size_t n, const struct mm_addr *a,
		      uint64_t now_ns)
{
	long best = -1;

	for (size_t i = 0; i < n; i++) {
		if (!same_family(&pfx[i], a) || !inside_prefix(&pfx[i], a))
			continue;
		if (expires && expires[i] && now_ns && expires[i] <= now_ns)
			continue;
		if (best < 0 || pfx[i].len > pfx[best].len)
			best = (long)i;
	}
	return best;
}

static void check_against_naive(const struct mm_intel_snap *snap, const struct mm_prefix *pfx, const uint64_t *exp,
				size_t n, const struct mm_addr *a, uint64_t now_ns)
{
	struct mm_intel_hit hit;
	long want = naive_lpm(pfx, exp, n, a, now_ns);
	int got = mm_intel_match_addr(snap, a, now_ns, &hit);
	char as[MM_ADDR_STRLEN], ps[MM_PREFIX_STRLEN];

	if (want < 0) {
		cr_assert_eq(got, 0, "%s matched %s, reference: no match", mm_addr_format(a, as),
			     mm_prefix_format(&hit.prefix, ps));
		return;
	}
	cr_assert_eq(got, 1, "%s: no match, reference %s", mm_addr_format(a, as), mm_prefix_format(&pfx[want], ps));
	cr_assert(hit.prefix.len == pfx[want].len && mm_addr_eq(&hit.prefix.addr, &pfx[want].addr),
		  "%s: matched %s, reference %s", mm_addr_format(a, as), mm_prefix_format(&hit.prefix, ps),
		  mm_prefix_format(&pfx[want], ps + 0));
}

/* Entries of a list file by an independent reading: non-comment, non-blank lines. */
static size_t read_entries(const char *path, struct mm_prefix **out)
{
	size_t len, n = 0, cap = 1024;
	char *text = tu_read_file(path, &len), *save = NULL;
	struct mm_prefix *p = malloc(cap * sizeof(*p));

	cr_assert(text && p);
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *tab = strchr(line, '\t');

		if (line[0] == '#' || line[0] == '\0')
			continue;
		if (tab)
			*tab = '\0';
		if (n == cap)
			p = realloc(p, (cap *= 2) * sizeof(*p));
		cr_assert_eq(mm_prefix_parse(&p[n], line, false), 0, "%s: '%s'", path, line);
		n++;
	}
	free(text);
	*out = p;
	return n;
}

/* ---- shared lists ---- */

static void check_list(const char *rel, size_t want_entries, enum mm_intel_format want_fmt)
{
	TU_REQUIRE_SHARED(path, rel);
	struct mm_intel_defaults def = defaults("list");
	struct mm_intel_load_stats st;
	struct mm_intel_set *set;
	struct mm_prefix *pfx;
	size_t n = read_entries(path, &pfx);

	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_file(set, path, MM_INTEL_FMT_AUTO, &def, &st), 0, "%s", mm_last_error());
	cr_assert_eq(st.format, want_fmt, "%s detected as %s", rel, mm_intel_format_name(st.format));
	if (want_entries)
		cr_assert_eq(n, want_entries, "%s: %zu entries", rel, n);
	cr_assert_eq(st.n_loaded, n, "%s: loaded %llu of %zu", rel, (unsigned long long)st.n_loaded, n);
	cr_assert_eq(st.n_bad, 0, "%s: %s", rel, st.n_reports ? st.reports[0] : "");

	struct mm_intel_snap *snap = compile_snap(set, 0);
	for (size_t i = 0; i < n; i++) {
		struct mm_addr first = pfx[i].addr, last = prefix_last(&pfx[i]);
		struct mm_intel_hit hit;

		cr_assert_eq(mm_intel_match_addr(snap, &first, 0, &hit), 1);
		cr_assert(hit.prefix.len >= pfx[i].len);
		cr_assert_eq(mm_intel_match_addr(snap, &last, 0, &hit), 1);
		check_against_naive(snap, pfx, NULL, n, &first, 0);
		check_against_naive(snap, pfx, NULL, n, &last, 0);
		struct mm_addr before = addr_add(first, -1), after = addr_add(last, 1);
		if (mm_addr_is_v4(&before))
			check_against_naive(snap, pfx, NULL, n, &before, 0);
		if (mm_addr_is_v4(&after))
			check_against_naive(snap, pfx, NULL, n, &after, 0);
	}
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
	free(pfx);
	free(path);
}

Test(lists, firehol_feodo_every_entry_matches)
{
	check_list("threat-intel/firehol/feodo.ipset", 235, MM_INTEL_FMT_FIREHOL);
}

Test(lists, firehol_spamhaus_drop_every_entry_matches)
{
	check_list("threat-intel/firehol/spamhaus_drop.netset", 683, MM_INTEL_FMT_FIREHOL);
}

Test(lists, firehol_dshield_every_entry_matches)
{
	check_list("threat-intel/firehol/dshield.netset", 20, MM_INTEL_FMT_FIREHOL);
}

Test(lists, firehol_level1_every_entry_matches)
{
	check_list("threat-intel/firehol/firehol_level1.netset", 0, MM_INTEL_FMT_FIREHOL);
}

Test(lists, firehol_header_metadata_is_kept)
{
	TU_REQUIRE_SHARED(path, "threat-intel/firehol/feodo.ipset");
	struct mm_intel_defaults def = defaults("feodo");
	struct mm_intel_load_stats st;
	struct mm_intel_indicator ind;
	struct mm_intel_set *set;

	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_file(set, path, MM_INTEL_FMT_AUTO, &def, &st), 0);
	cr_assert_str_eq(st.list_name, "feodo");
	cr_assert_str_eq(st.maintainer, "Abuse.ch");
	cr_assert_str_eq(st.list_date, "Fri Oct 23 13:45:29 UTC 2015");
	mm_intel_set_get(set, 0, &ind);
	cr_assert_str_eq(ind.tags, "malware"); /* "# Category : malware" */
	cr_assert_str_eq(ind.id, "feodo.ipset:31"); /* 2.50.11.28 is on line 31 */
	mm_intel_set_free(set);
	free(path);
}

Test(lists, ipsum_every_address_matches_with_count_as_confidence)
{
	TU_REQUIRE_SHARED(path, "threat-intel/ipsum/ipsum.txt");
	struct mm_intel_defaults def = defaults("ipsum");
	struct mm_intel_load_stats st;
	struct mm_intel_set *set;
	size_t len, n = 0;
	char *text = tu_read_file(path, &len), *save = NULL;

	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_file(set, path, MM_INTEL_FMT_AUTO, &def, &st), 0);
	cr_assert_eq(st.format, MM_INTEL_FMT_IPSUM);
	cr_assert_eq(st.n_bad, 0);
	cr_assert_gt(st.n_loaded, 100000);

	struct mm_intel_snap *snap = compile_snap(set, 0);
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct mm_intel_indicator ind;
		struct mm_intel_hit hit;
		char *tab = strchr(line, '\t');
		int count;

		if (line[0] == '#')
			continue;
		cr_assert(tab);
		*tab = '\0';
		count = atoi(tab + 1);
		struct mm_addr a = addr(line);
		cr_assert_eq(mm_intel_match_addr(snap, &a, 0, &hit), 1, "%s", line);
		cr_assert_eq(hit.prefix.len, 32);
		cr_assert_eq(hit.n, 1);
		mm_intel_indicator(snap, hit.first, &ind);
		cr_assert_eq(ind.confidence, count >= 10 ? 100 : count * 10, "%s count %d", line, count);
		n++;
	}
	cr_assert_eq(n, st.n_loaded);
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
	free(text);
	free(path);
}

/* ---- garbage ---- */

Test(lists, garbage_lines_are_reported_by_line_and_the_rest_loads)
{
	static const char text[] = "# header\n"  /* 1 */
				   "192.0.2.1\n" /* 2 */
				   "not-an-address\n" /* 3 */
				   "198.51.100.0/24 ; trailing comment\n" /* 4 */
				   "198.51.100.7/24\n" /* 5: host bits */
				   "10.0.0.0/33\n" /* 6 */
				   "2001:db8::/32 # v6\n" /* 7 */
				   "203.0.113.5 extra words\n" /* 8 */
				   "\n" /* 9 */
				   "203.0.113.9"; /* 10: no final newline */
	struct mm_intel_load_stats st;
	struct mm_intel_set *set = load_text("bad.txt", text, MM_INTEL_FMT_LIST, &st);

	cr_assert_eq(st.n_loaded, 4);
	cr_assert_eq(st.n_bad, 4);
	cr_assert_eq(st.n_reports, 4);
	cr_assert(strncmp(st.reports[0], "bad.txt:3: ", 11) == 0, "%s", st.reports[0]);
	cr_assert(strncmp(st.reports[1], "bad.txt:5: ", 11) == 0, "%s", st.reports[1]);
	cr_assert(strstr(st.reports[1], "host bits"), "%s", st.reports[1]);
	cr_assert(strncmp(st.reports[2], "bad.txt:6: ", 11) == 0, "%s", st.reports[2]);
	cr_assert(strncmp(st.reports[3], "bad.txt:8: ", 11) == 0, "%s", st.reports[3]);
	mm_intel_set_free(set);
}

Test(lists, nul_bytes_and_overlong_lines_are_bad_lines)
{
	struct mm_intel_defaults def = defaults("t");
	struct mm_intel_load_stats st;
	struct mm_intel_set *set;
	size_t len = 3 * MM_INTEL_LINE_MAX;
	char *buf = malloc(len);

	memset(buf, 'x', len);
	memcpy(buf, "192.0.2.1\n1.2\0.3\n", 17);
	buf[2 * MM_INTEL_LINE_MAX] = '\n';
	memcpy(buf + 2 * MM_INTEL_LINE_MAX + 1, "192.0.2.2\n", 10);
	len = 2 * MM_INTEL_LINE_MAX + 11;
	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_buf(set, "x", buf, len, MM_INTEL_FMT_LIST, &def, &st), 0);
	cr_assert_eq(st.n_loaded, 2);
	cr_assert_eq(st.n_bad, 2);
	cr_assert(strncmp(st.reports[0], "x:2: NUL", 8) == 0, "%s", st.reports[0]);
	cr_assert(strncmp(st.reports[1], "x:3: line longer", 16) == 0, "%s", st.reports[1]);
	mm_intel_set_free(set);
	free(buf);
}

/* ---- CSV ---- */

Test(csv, quoted_fields_columns_in_any_order_and_bad_records)
{
	static const char text[] =
		"type,indicator,source,confidence,tags,tlp,first_seen,last_seen,expires,id\r\n" /* 1 */
		"ipv4,192.0.2.0/24,feedA,80,\"c2;botnet\",amber+strict,2026-01-01,2026-02-01,,\r\n" /* 2 */
		"ipv6,2001:db8::/48,feedB,70,\"say \"\"hi\"\", then\nbye\",TLP:RED,,,,my-id\n" /* 3-4 */
		"asn,AS64496,feedC,90,,green,,,,\n" /* 5 */
		"port,tcp/4444,feedC,60,,clear,,,,\n" /* 6 */
		",198.51.100.1,feedD,101,,,,,,\n" /* 7: confidence */
		",198.51.100.2,feedD,10,,purple,,,,\n" /* 8: tlp */
		",198.51.100.3,feedD\n" /* 9: short */
		",\"198.51.100.4\"x,feedD,1,,,,,,\n" /* 10: text after quote */
		",198.51.100.5,bad source,1,,,,,,\n" /* 11: source name */
		",198.51.100.6,feedD,5,,,,,2020-01-01,\n"; /* 12: expired */
	struct mm_intel_load_stats st;
	struct mm_intel_set *set = load_text("ioc.csv", text, MM_INTEL_FMT_AUTO, &st);
	struct mm_intel_indicator ind;
	char buf[MM_PREFIX_STRLEN];

	cr_assert_eq(st.format, MM_INTEL_FMT_CSV);
	cr_assert_eq(st.n_loaded, 5, "%llu", (unsigned long long)st.n_loaded);
	cr_assert_eq(st.n_bad, 5);
	cr_assert_eq(st.n_expired, 1);
	cr_assert(strncmp(st.reports[0], "ioc.csv:7: confidence", 21) == 0, "%s", st.reports[0]);
	cr_assert(strncmp(st.reports[1], "ioc.csv:8: tlp", 14) == 0, "%s", st.reports[1]);
	cr_assert(strncmp(st.reports[2], "ioc.csv:9: fewer fields", 23) == 0, "%s", st.reports[2]);
	cr_assert(strncmp(st.reports[3], "ioc.csv:10: text after", 22) == 0, "%s", st.reports[3]);
	cr_assert(strncmp(st.reports[4], "ioc.csv:11: ", 12) == 0, "%s", st.reports[4]);

	mm_intel_set_get(set, 0, &ind);
	cr_assert_str_eq(mm_prefix_format(&ind.prefix, buf), "192.0.2.0/24");
	cr_assert_str_eq(ind.source, "feedA");
	cr_assert_str_eq(ind.tags, "c2;botnet");
	cr_assert_eq(ind.tlp, MM_TLP_AMBER_STRICT);
	cr_assert_eq(ind.confidence, 80);
	cr_assert_eq(ind.first_seen_ns, 1767225600ull * MM_NS_PER_SEC);
	cr_assert_str_eq(ind.id, "ioc.csv:2");
	mm_intel_set_get(set, 1, &ind);
	cr_assert_str_eq(ind.tags, "say \"hi\", then\nbye");
	cr_assert_eq(ind.tlp, MM_TLP_RED);
	cr_assert_str_eq(ind.id, "my-id");
	mm_intel_set_get(set, 2, &ind);
	cr_assert_eq(ind.kind, MM_INTEL_ASN);
	cr_assert_eq(ind.asn, 64496);
	mm_intel_set_get(set, 3, &ind);
	cr_assert_eq(ind.kind, MM_INTEL_PORT);
	cr_assert_eq(ind.port, 4444);
	cr_assert_eq(ind.proto, 6);

	/* ASN and port lookups; the expired record was left out at compile time. */
	struct mm_intel_snap *snap = compile_snap(set, mm_time_now_ns());
	struct mm_intel_hit hit;
	cr_assert_eq(mm_intel_match_asn(snap, 64496, 0, &hit), 1);
	cr_assert_eq(mm_intel_match_asn(snap, 64497, 0, &hit), 0);
	cr_assert_eq(mm_intel_match_port(snap, 6, 4444, 0, &hit), 1);
	cr_assert_eq(mm_intel_match_port(snap, 17, 4444, 0, &hit), 0);
	struct mm_addr a = addr("198.51.100.6");
	cr_assert_eq(mm_intel_match_addr(snap, &a, 0, &hit), 0);
	cr_assert_eq(mm_intel_snap_count(snap), 4);
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
}

Test(csv, written_csv_reads_back_identically)
{
	static const char text[] = "indicator,source,tags,tlp,expires,id\n"
				   "192.0.2.0/24,a,\"x,y\",amber,2030-01-01T00:00:00Z,\"id \"\"1\"\"\"\n"
				   "AS65000,b,,,,\n";
	struct mm_intel_load_stats st;
	struct mm_intel_set *set = load_text("in.csv", text, MM_INTEL_FMT_CSV, &st), *back;
	char *dir = tu_tmpdir(), path[512];
	struct mm_intel_defaults def = defaults("x");

	snprintf(path, sizeof(path), "%s/out.csv", dir);
	cr_assert_eq(mm_intel_set_write_csv(set, path), 0);
	cr_assert_eq(mm_intel_set_new(&back), 0);
	cr_assert_eq(mm_intel_load_file(back, path, MM_INTEL_FMT_AUTO, &def, &st), 0);
	cr_assert_eq(st.n_bad, 0, "%s", st.reports[0]);
	cr_assert_eq(mm_intel_set_count(back), 2);
	for (size_t i = 0; i < 2; i++) {
		struct mm_intel_indicator x, y;

		mm_intel_set_get(set, i, &x);
		mm_intel_set_get(back, i, &y);
		cr_assert_eq(x.kind, y.kind);
		cr_assert(mm_addr_eq(&x.prefix.addr, &y.prefix.addr) && x.prefix.len == y.prefix.len);
		cr_assert_eq(x.asn, y.asn);
		cr_assert_str_eq(x.source, y.source);
		cr_assert_str_eq(x.tags, y.tags);
		cr_assert_str_eq(x.id, y.id);
		cr_assert_eq(x.tlp, y.tlp);
		cr_assert_eq(x.expires_ns, y.expires_ns);
	}
	unlink(path);
	rmdir(dir);
	free(dir);
	mm_intel_set_free(set);
	mm_intel_set_free(back);
}

Test(csv, unknown_column_or_missing_header_fails_naming_the_file)
{
	struct mm_intel_defaults def = defaults("t");
	struct mm_intel_set *set;
	static const char bad[] = "indicator,colour\n192.0.2.1,red\n";

	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_buf(set, "c.csv", bad, strlen(bad), MM_INTEL_FMT_CSV, &def, NULL), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "c.csv:1: unknown CSV column 'colour'"), "%s", mm_last_error());
	cr_assert_eq(mm_intel_load_buf(set, "e.csv", "\n\n", 2, MM_INTEL_FMT_CSV, &def, NULL), MM_EFORMAT);
	mm_intel_set_free(set);
}

/* ---- STIX patterns ---- */

struct pattern_case {
	const char *pattern;
	int rc;
	enum mm_stix_skip skip;
	size_t n;
	const char *first; /* the first prefix, formatted */
	bool partial;
};

Test(stix, pattern_parser_cases)
{
	static const struct pattern_case cases[] = {
		{ "[ipv4-addr:value = '198.51.100.7']", 0, MM_STIX_OK, 1, "198.51.100.7/32", false },
		{ "[ ipv4-addr:value = '10.0.0.0' ]", 0, MM_STIX_OK, 1, "10.0.0.0/32", false },
		{ "[ipv6-addr:value = '2001:db8::/32']", 0, MM_STIX_OK, 1, "2001:db8::/32", false },
		{ "[ipv4-addr:value ISSUBSET '198.51.100.0/24']", 0, MM_STIX_OK, 1, "198.51.100.0/24", false },
		{ "[ipv4-addr:value = '192.0.2.1' OR ipv6-addr:value == '2001:db8::1']", 0, MM_STIX_OK, 2,
		  "192.0.2.1/32", false },
		{ "[ipv4-addr:value = '192.0.2.1'] OR ([ipv4-addr:value IN ('192.0.2.2', '192.0.2.3')])", 0,
		  MM_STIX_OK, 3, "192.0.2.1/32", false },
		{ "[domain-name:value = 'x.example' OR ipv4-addr:value = '60.10.1.120']", 0, MM_STIX_OK, 1,
		  "60.10.1.120/32", true },
		{ "[autonomous-system:number = 64496]", 0, MM_STIX_OK, 1, NULL, false },
		{ "[domain-name:value = 'x.example']", 0, MM_STIX_SKIP_OBJECT_TYPE, 0, NULL, false },
		{ "[file:hashes.'SHA-256' = 'ef53']", 0, MM_STIX_SKIP_OBJECT_TYPE, 0, NULL, false },
		{ "[email-message:body_multipart[*].body_raw_ref.name MATCHES '^F.+\\\\.exe$']", 0,
		  MM_STIX_SKIP_OBJECT_TYPE, 0, NULL, false },
		{ "[ipv4-addr:value != '192.0.2.1']", 0, MM_STIX_SKIP_OPERATOR, 0, NULL, false },
		{ "[ipv4-addr:value NOT = '192.0.2.1']", 0, MM_STIX_SKIP_OPERATOR, 0, NULL, false },
		{ "[ipv4-addr:value ISSUPERSET '192.0.2.0/24']", 0, MM_STIX_SKIP_OPERATOR, 0, NULL, false },
		{ "[ipv4-addr:value LIKE '192.0.2.%']", 0, MM_STIX_SKIP_OPERATOR, 0, NULL, false },
		{ "[ipv4-addr:value = '192.0.2.1' AND ipv4-addr:value = '192.0.2.2']", 0, MM_STIX_SKIP_COMBINATION, 0,
		  NULL, false },
		{ "[ipv4-addr:value = '192.0.2.1'] AND [ipv4-addr:value = '192.0.2.2']", 0, MM_STIX_SKIP_COMBINATION,
		  0, NULL, false },
		{ "[ipv4-addr:value = '192.0.2.1'] FOLLOWEDBY [ipv4-addr:value = '192.0.2.2']", 0,
		  MM_STIX_SKIP_COMBINATION, 0, NULL, false },
		{ "[ipv4-addr:value = '192.0.2.1'] REPEATS 5 TIMES WITHIN 10 SECONDS", 0, MM_STIX_SKIP_COMBINATION,
		  0, NULL, false },
		{ "[ipv4-addr:value = '192.0.2.1'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'", 0,
		  MM_STIX_SKIP_COMBINATION, 0, NULL, false },
		{ "([ipv4-addr:value = '192.0.2.1'] FOLLOWEDBY [domain-name:value = 'a']) OR "
		  "[ipv6-addr:value = '2001:db8::7']",
		  0, MM_STIX_OK, 1, "2001:db8::7/128", true },
		{ "[ipv4-addr:value = '192.0.2.1'", MM_EFORMAT, MM_STIX_OK, 0, NULL, false },
		{ "[ipv4-addr:value = '192.0.2.1]", MM_EFORMAT, MM_STIX_OK, 0, NULL, false },
		{ "[ipv4-addr:value = '2001:db8::1']", MM_EFORMAT, MM_STIX_OK, 0, NULL, false },
		{ "[ipv4-addr:value = '192.0.2.1/8']", MM_EFORMAT, MM_STIX_OK, 0, NULL, false },
		{ "[ipv4-addr value = '192.0.2.1']", MM_EFORMAT, MM_STIX_OK, 0, NULL, false },
		{ "ipv4-addr:value = '192.0.2.1'", MM_EFORMAT, MM_STIX_OK, 0, NULL, false },
		{ "[ipv4-addr:value = '192.0.2.1'] junk", MM_EFORMAT, MM_STIX_OK, 0, NULL, false },
		{ "", MM_EFORMAT, MM_STIX_OK, 0, NULL, false },
	};
	struct mm_intel_indicator out[4];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pattern_case *c = &cases[i];
		enum mm_stix_skip skip;
		bool partial;
		size_t n;
		int rc = mm_stix_pattern_indicators(c->pattern, out, 4, &n, &skip, &partial);
		char buf[MM_PREFIX_STRLEN];

		cr_assert_eq(rc, c->rc, "%s: rc %d (%s)", c->pattern, rc, mm_last_error());
		if (rc)
			continue;
		cr_assert_eq(skip, c->skip, "%s: skip %d", c->pattern, skip);
		cr_assert_eq(n, c->n, "%s: %zu indicators", c->pattern, n);
		cr_assert_eq(partial, c->partial, "%s: partial", c->pattern);
		if (c->first)
			cr_assert_str_eq(mm_prefix_format(&out[0].prefix, buf), c->first, "%s", c->pattern);
	}
	/* The message names where the pattern went wrong. */
	size_t n;
	enum mm_stix_skip skip;
	bool partial;
	cr_assert_eq(mm_stix_pattern_indicators("[ipv4-addr:value = '1.2.3.4' )", out, 4, &n, &skip, &partial),
		     MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "offset 29"), "%s", mm_last_error());
}

Test(stix, nesting_is_capped)
{
	char pattern[1024] = "";
	struct mm_intel_indicator out[1];
	enum mm_stix_skip skip;
	bool partial;
	size_t n;

	for (int i = 0; i < 200; i++)
		strcat(pattern, "(");
	cr_assert_eq(mm_stix_pattern_indicators(pattern, out, 1, &n, &skip, &partial), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "nested deeper"), "%s", mm_last_error());
}

Test(stix, shared_example_c2_ip_address)
{
	TU_REQUIRE_SHARED(path, "stix2.1/examples/indicator-for-c2-ip-address.json");
	struct mm_intel_defaults def = defaults("stix");
	struct mm_intel_load_stats st;
	struct mm_intel_indicator ind;
	struct mm_intel_set *set;
	char buf[MM_PREFIX_STRLEN];

	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_file(set, path, MM_INTEL_FMT_AUTO, &def, &st), 0, "%s", mm_last_error());
	cr_assert_eq(st.format, MM_INTEL_FMT_STIX);
	cr_assert_eq(st.n_loaded, 1);
	mm_intel_set_get(set, 0, &ind);
	cr_assert_str_eq(mm_prefix_format(&ind.prefix, buf), "10.0.0.0/32");
	cr_assert_str_eq(ind.id, "indicator--33fe3b22-0201-47cf-85d0-97c02164528d");
	cr_assert_str_eq(ind.tags, "malicious-activity");
	cr_assert_eq(ind.first_seen_ns, 1399539600ull * MM_NS_PER_SEC); /* valid_from 2014-05-08T09:00:00Z */
	mm_intel_set_free(set);
	free(path);
}

Test(stix, shared_examples_count_skips_with_reasons)
{
	TU_REQUIRE_SHARED(coa, "stix2.1/examples/indicators-for-C2-with-COA.json");
	TU_REQUIRE_SHARED(email, "stix2.1/examples/malicious-email-indicator-with-attachment.json");
	TU_REQUIRE_SHARED(ivy, "stix2.1/examples/threat-reports/poisonivy.json");
	struct mm_intel_defaults def = defaults("stix");
	struct mm_intel_load_stats st;
	struct mm_intel_set *set;

	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_file(set, coa, MM_INTEL_FMT_AUTO, &def, &st), 0);
	cr_assert_eq(st.n_loaded, 1); /* 10.0.0.0; the file-hash indicator is skipped */
	cr_assert_eq(st.n_skip_object_type, 1);
	cr_assert_eq(mm_intel_load_file(set, email, MM_INTEL_FMT_AUTO, &def, &st), 0);
	cr_assert_eq(st.n_loaded, 0);
	cr_assert_eq(st.n_skip_object_type, 2);
	cr_assert_eq(mm_intel_load_file(set, ivy, MM_INTEL_FMT_AUTO, &def, &st), 0);
	cr_assert_gt(st.n_loaded, 10);
	cr_assert_gt(st.n_partial, 0);

	struct mm_intel_snap *snap = compile_snap(set, 0);
	struct mm_intel_hit hit;
	struct mm_addr a = addr("60.10.1.120");
	cr_assert_eq(mm_intel_match_addr(snap, &a, 0, &hit), 1);
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
	free(coa);
	free(email);
	free(ivy);
}

Test(stix, generated_bundle_with_markings_expiry_and_unsupported_patterns)
{
	static const char bundle[] =
		"{\"type\":\"bundle\",\"id\":\"bundle--1\",\"objects\":["
		"{\"type\":\"marking-definition\",\"id\":\"marking-definition--aaaa\",\"extensions\":"
		"{\"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d\":{\"tlp_2_0\":\"amber+strict\"}}},"
		"{\"type\":\"indicator\",\"id\":\"indicator--1\",\"pattern_type\":\"stix\",\"confidence\":85,"
		"\"labels\":[\"c2\"],\"object_marking_refs\":[\"marking-definition--aaaa\"],"
		"\"valid_from\":\"2026-01-01T00:00:00Z\",\"valid_until\":\"2036-01-01T00:00:00Z\","
		"\"pattern\":\"[ipv4-addr:value ISSUBSET '203.0.113.0/25' OR ipv6-addr:value = '2001:db8:1::/48']\"},"
		"{\"type\":\"indicator\",\"id\":\"indicator--2\",\"pattern_type\":\"stix\","
		"\"object_marking_refs\":[\"marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1\"],"
		"\"valid_until\":\"2020-01-01T00:00:00Z\",\"pattern\":\"[ipv4-addr:value = '192.0.2.77']\"},"
		"{\"type\":\"indicator\",\"id\":\"indicator--3\",\"pattern_type\":\"sigma\",\"pattern\":\"x\"},"
		"{\"type\":\"indicator\",\"id\":\"indicator--4\",\"pattern\":\"[url:value = 'http://x']\"},"
		"{\"type\":\"indicator\",\"id\":\"indicator--5\",\"pattern\":\"[ipv4-addr:value > '1.2.3.4']\"},"
		"{\"type\":\"indicator\",\"id\":\"indicator--6\","
		"\"pattern\":\"[ipv4-addr:value = '1.1.1.1'] FOLLOWEDBY [ipv4-addr:value = '1.1.1.2']\"},"
		"{\"type\":\"indicator\",\"id\":\"indicator--7\",\"pattern\":\"[ipv4-addr:value = \"},"
		"{\"type\":\"indicator\",\"id\":\"indicator--8\",\"revoked\":true,"
		"\"pattern\":\"[ipv4-addr:value = '192.0.2.8']\"},"
		"42"
		"]}";
	struct mm_intel_load_stats st;
	struct mm_intel_set *set = load_text("gen.json", bundle, MM_INTEL_FMT_AUTO, &st);
	struct mm_intel_indicator ind;
	struct mm_intel_hit hit;

	cr_assert_eq(st.n_loaded, 3);
	cr_assert_eq(st.n_expired, 1);
	cr_assert_eq(st.n_skip_pattern_type, 1);
	cr_assert_eq(st.n_skip_object_type, 1);
	cr_assert_eq(st.n_skip_operator, 1);
	cr_assert_eq(st.n_skip_combination, 1);
	cr_assert_eq(st.n_skipped, 5); /* the four above and the revoked one */
	cr_assert_eq(st.n_bad, 2);     /* the broken pattern and the bare 42 */

	struct mm_intel_snap *snap = compile_snap(set, 0);
	uint64_t now = mm_time_now_ns();
	struct mm_addr in = addr("203.0.113.127"), out = addr("203.0.113.128"), v6 = addr("2001:db8:1:ffff::1"),
		       old = addr("192.0.2.77");
	cr_assert_eq(mm_intel_match_addr(snap, &in, now, &hit), 1);
	mm_intel_indicator(snap, hit.first, &ind);
	cr_assert_eq(ind.tlp, MM_TLP_AMBER_STRICT);
	cr_assert_eq(ind.confidence, 85);
	cr_assert_str_eq(ind.tags, "c2");
	cr_assert_str_eq(ind.id, "indicator--1");
	cr_assert_eq(mm_intel_match_addr(snap, &out, now, &hit), 0);
	cr_assert_eq(mm_intel_match_addr(snap, &v6, now, &hit), 1);
	cr_assert_eq(hit.prefix.len, 48);
	/* indicator--2 expired in 2020: it matches only when expiry is ignored. */
	cr_assert_eq(mm_intel_match_addr(snap, &old, now, &hit), 0);
	cr_assert_eq(mm_intel_match_addr(snap, &old, 0, &hit), 1);
	mm_intel_indicator(snap, hit.first, &ind);
	cr_assert_eq(ind.tlp, MM_TLP_RED);
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
}

Test(stix, malformed_json_reports_the_line)
{
	struct mm_intel_defaults def = defaults("t");
	struct mm_intel_set *set;
	static const char text[] = "{\n\"type\": \"bundle\",\n\"objects\": [,]\n}";

	cr_assert_eq(mm_intel_set_new(&set), 0);
	cr_assert_eq(mm_intel_load_buf(set, "b.json", text, strlen(text), MM_INTEL_FMT_AUTO, &def, NULL), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "b.json:3: JSON"), "%s", mm_last_error());
	mm_intel_set_free(set);
}

/* ---- the LPM against the reference ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A random address, half the time inside one of the hot blocks (so lookups hit often). */
static struct mm_addr random_addr(bool v4, const struct mm_prefix *pfx, size_t n)
{
	struct mm_addr a;
	uint64_t r = rnd(), s = rnd();

	if (v4)
		mm_addr_set_v4_u32(&a, (uint32_t)r);
	else {
		memcpy(a.b, &r, 8);
		memcpy(a.b + 8, &s, 8);
		a.b[0] = 0x20;
		if (mm_addr_is_v4(&a))
			a.b[0] = 0x21;
	}
	if (n && (rnd() & 1)) {
		const struct mm_prefix *p = &pfx[rnd() % n];

		if (mm_addr_is_v4(&p->addr) == v4) {
			unsigned bits = mm_prefix_bits128(p);

			for (unsigned i = 0; i < bits; i++) {
				uint8_t m = (uint8_t)(0x80u >> (i % 8));

				a.b[i / 8] = (uint8_t)((a.b[i / 8] & ~m) | (p->addr.b[i / 8] & m));
			}
		}
	}
	return a;
}

/*
 * Nested prefixes in a few hot blocks: some /24 blocks hold enough longer
 * prefixes to need dense nodes, others few enough for compact ones.
 */
static size_t make_prefixes(struct mm_prefix *pfx, uint64_t *expires, size_t max, uint64_t now)
{
	size_t n = 0;

	while (n < max) {
		struct mm_addr a;
		unsigned len;
		bool v4 = n % 2 == 0;

		if (n < 192) {
			/*
			 * Crowded blocks: 203.0.113.0/24, 203.0.114.0/24 and 2001:db8:ffff::/120
			 * need dense nodes; the first two put more runs in 203.0.0.0/16 than a
			 * run list holds.
			 */
			a = addr(v4 ? "203.0.113.0" : "2001:db8:ffff::");
			if (v4)
				a.b[14] = (uint8_t)(113 + rnd() % 2);
			a.b[15] = (uint8_t)rnd();
			len = v4 ? (unsigned)(29 + rnd() % 4) : (unsigned)(121 + rnd() % 8);
		} else if (v4) {
			/*
			 * Uneven weights: /16s holding few runs (one-line run groups), a few dozen
			 * (1.0/16, 192.168/16: groups of several lines), more than a group holds
			 * (10.0/16: a run list) and, with the crowded block, too many for a list.
			 */
			static const uint32_t hot[] = { 0x0a000000, 0xc0a80000, 0xcb007100, 0x0a000000,
							0xc0a80000, 0x0a000000, 0x0a000000, 0x01000000 };
			uint32_t base = hot[rnd() % 8], v = base | ((uint32_t)rnd() & 0xffff);

			len = (unsigned)(8 + rnd() % 25);
			mm_addr_set_v4_u32(&a, rnd() % 8 == 0 ? (uint32_t)rnd() : v);
		} else {
			uint64_t r = rnd(), s = rnd();

			memcpy(a.b, &r, 8);
			memcpy(a.b + 8, &s, 8);
			memcpy(a.b, "\x20\x01\x0d\xb8", 4); /* 2001:db8::/32 is hot */
			a.b[4] = (uint8_t)(rnd() % 4);
			static const unsigned lens[] = { 16, 32, 40, 48, 56, 64, 96, 112, 120, 124, 127, 128 };
			len = lens[rnd() % 12];
		}
		cr_assert_eq(mm_prefix_from_addr(&pfx[n], &a, len), 0);
		expires[n] = rnd() % 10 == 0 ? now - MM_NS_PER_SEC : (rnd() % 10 == 0 ? now + 3600 * MM_NS_PER_SEC : 0);
		n++;
	}
	return n;
}

Test(lpm, differential_against_linear_scan)
{
	enum { N_PFX = 500, N_RANDOM = 1000000 };
	static struct mm_prefix pfx[N_PFX];
	static uint64_t expires[N_PFX];
	uint64_t now = 2000000000ull * MM_NS_PER_SEC;
	size_t n = make_prefixes(pfx, expires, N_PFX, now);
	struct mm_intel_set *set;

	cr_assert_eq(mm_intel_set_new(&set), 0);
	for (size_t i = 0; i < n; i++) {
		struct mm_intel_indicator ind = { .kind = MM_INTEL_PREFIX, .prefix = pfx[i], .source = "gen",
						  .expires_ns = expires[i] };

		cr_assert_eq(mm_intel_set_add(set, &ind), 0);
	}
	struct mm_intel_snap *snap = compile_snap(set, 0);
	cr_assert(snap->n_dense > 0 && snap->n_compact > 0 && snap->n_tail > 0, "dense %zu compact %zu tail %zu",
		  snap->n_dense, snap->n_compact, snap->n_tail);
	/*
	 * IPv4 /16s of every form: run groups of one line and of several, a run
	 * list, a crowded /16 split into nodes, and a /16 a shorter prefix covers
	 * whole (its record packed beside the table entry).
	 */
	unsigned forms[5] = { 0 };
	for (size_t i = 0; i < (size_t)1 << MMI_V4_TOP_BITS; i++) {
		const struct mmi_v4top *t = &snap->v4_top[i];
		uint32_t tag = t->e >> MMI_TAG_SHIFT;

		forms[0] += tag == MMI_TAG_GROUP && t->u.split[0] == 0xffff;
		forms[1] += tag == MMI_TAG_GROUP && t->u.split[0] != 0xffff;
		forms[2] += tag == MMI_TAG_LIST;
		forms[3] += tag == MMI_TAG_COMPACT || tag == MMI_TAG_DENSE;
		forms[4] += tag == MMI_TAG_LEAF && t->u.leaf.n != 0;
	}
	cr_assert(forms[0] && forms[1] && forms[2] && forms[3] && forms[4],
		  "one-line groups %u longer groups %u lists %u split %u packed leaves %u", forms[0], forms[1], forms[2],
		  forms[3], forms[4]);

	/* Every prefix boundary and its neighbours. */
	for (size_t i = 0; i < n; i++) {
		struct mm_addr first = pfx[i].addr, last = prefix_last(&pfx[i]);
		const struct mm_addr probes[] = { addr_add(first, -1), first, addr_add(first, 1), addr_add(last, -1),
						  last, addr_add(last, 1) };

		for (size_t k = 0; k < 6; k++) {
			if (mm_addr_is_v4(&probes[k]) != mm_addr_is_v4(&first))
				continue;
			check_against_naive(snap, pfx, expires, n, &probes[k], now);
			check_against_naive(snap, pfx, expires, n, &probes[k], 0);
		}
	}
	/* Random addresses, both families, through the single and the batch call. */
	struct mm_addr batch[64];
	struct mm_intel_hit hits[64];
	for (size_t i = 0; i < N_RANDOM; i += 64) {
		for (size_t k = 0; k < 64; k++)
			batch[k] = random_addr(k % 2 == 0, pfx, n);
		mm_intel_match_addrs(snap, batch, 64, now, hits);
		for (size_t k = 0; k < 64; k++) {
			long want = naive_lpm(pfx, expires, n, &batch[k], now);

			if (want < 0) {
				cr_assert_eq(hits[k].n, 0);
				continue;
			}
			cr_assert_neq(hits[k].n, 0);
			cr_assert(hits[k].prefix.len == pfx[want].len && mm_addr_eq(&hits[k].prefix.addr, &pfx[want].addr));
			if (k < 4)
				check_against_naive(snap, pfx, expires, n, &batch[k], now);
		}
	}
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
}

/*
 * A prefix named by more indicators than a packed record counts (65,535)
 * is answered from the leaf table: a /16 it covers whole keeps no packed
 * record, and a /16 it cuts is a run list instead of a run group.
 */
Test(lpm, prefixes_with_too_many_indicators_to_pack)
{
	static const struct {
		const char *addr;
		unsigned len, n;
	} want[] = { { "10.0.5.5", 16, 70000 }, { "192.0.2.7", 32, 1 }, { "192.0.2.8", 24, 70000 },
		     { "192.0.3.1", 0, 0 }, { "10.1.0.1", 0, 0 } };
	struct mm_intel_set *set;
	struct mm_intel_hit hits[5], hit;
	struct mm_addr a[5];

	cr_assert_eq(mm_intel_set_new(&set), 0);
	for (unsigned i = 0; i < 2 * 70000 + 1; i++) {
		struct mm_intel_indicator ind = { .kind = MM_INTEL_PREFIX, .source = "many" };
		char id[32];

		snprintf(id, sizeof(id), "id%u", i);
		ind.id = id;
		cr_assert_eq(mm_prefix_parse(&ind.prefix,
					     i < 70000 ? "10.0.0.0/16" : i < 140000 ? "192.0.2.0/24" : "192.0.2.7", false),
			     0);
		cr_assert_eq(mm_intel_set_add(set, &ind), 0);
	}
	struct mm_intel_snap *snap = compile_snap(set, 0);
	cr_assert_eq(snap->v4_top[0x0a00].e >> MMI_TAG_SHIFT, MMI_TAG_LEAF);
	cr_assert_eq(snap->v4_top[0x0a00].u.leaf.n, 0); /* not packed */
	cr_assert_eq(snap->v4_top[0xc000].e >> MMI_TAG_SHIFT, MMI_TAG_LIST);
	for (unsigned i = 0; i < 5; i++)
		a[i] = addr(want[i].addr);
	cr_assert_eq(mm_intel_match_addrs(snap, a, 5, 0, hits), 3);
	for (unsigned i = 0; i < 5; i++) {
		cr_assert_eq(mm_intel_match_addr(snap, &a[i], 0, &hit), want[i].n != 0);
		cr_assert_eq(hit.n, want[i].n, "%s", want[i].addr);
		cr_assert_eq(hits[i].n, want[i].n, "%s", want[i].addr);
		if (want[i].n)
			cr_assert(hit.prefix.len == want[i].len && hits[i].prefix.len == want[i].len, "%s", want[i].addr);
	}
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
}

Test(lpm, match_next_walks_covering_prefixes_longest_first)
{
	static const char text[] = "10.0.0.0/8\n10.1.0.0/16\n10.1.2.0/24\n10.1.2.3\n10.1.2.0/25\n";
	struct mm_intel_load_stats st;
	struct mm_intel_set *set = load_text("nest.txt", text, MM_INTEL_FMT_LIST, &st);
	struct mm_intel_snap *snap = compile_snap(set, 0);
	static const unsigned want[] = { 32, 25, 24, 16, 8 };
	struct mm_intel_hit hit;
	struct mm_addr a = addr("10.1.2.3");
	unsigned k = 0;

	for (int found = mm_intel_match_addr(snap, &a, 0, &hit); found; found = mm_intel_match_next(snap, 0, &hit))
		cr_assert_eq(hit.prefix.len, want[k++]);
	cr_assert_eq(k, 5);
	mm_intel_snap_put(snap);
	mm_intel_set_free(set);
}

/* Recomputes the checksum of an image, as a hostile writer would: validation must still refuse it. */
static void reseal(char *img)
{
	struct mmi_header *h = (struct mmi_header *)img;
	const void *sec[MMI_N_SECTIONS];

	for (int i = 0; i < MMI_N_SECTIONS; i++)
		sec[i] = img + h->sec[i].off;
	h->checksum = intel_checksum(h, sec);
}

/* Writes the image to path and expects it refused as damaged, the message naming why. */
static void refused_as(const char *path, const char *img, size_t len, const char *why)
{
	struct mm_intel_snap *snap;

	cr_assert_eq(tu_write_file(path, img, len), 0);
	cr_assert_eq(mm_intel_snap_open(path, &snap), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), why), "%s", mm_last_error());
}

Test(lpm, damaged_compiled_file_is_refused)
{
	struct mm_intel_load_stats st;
	struct mm_intel_set *set = load_text("l.txt", "192.0.2.1\n2001:db8::/32\n", MM_INTEL_FMT_LIST, &st);
	char *dir = tu_tmpdir(), path[512];
	struct mm_intel_snap *snap;
	size_t len;

	snprintf(path, sizeof(path), "%s/x.mmi", dir);
	cr_assert_eq(mm_intel_compile(set, 0, path), 0);
	char *img = tu_read_file(path, &len);
	/* An IPv6 table entry pointing past the prefix table. */
	uint64_t v6_off;
	memcpy(&v6_off, img + 40 + 16 * 7, 8); /* sec[MMI_SEC_V6_TOP].off */
	uint32_t evil = 0x3fffffff;
	memcpy(img + v6_off + 4 * 0x2001, &evil, 4);
	refused_as(path, img, len, "damaged compiled file (checksum)");
	reseal(img);
	refused_as(path, img, len, "damaged compiled file (IPv6 table)");
	cr_assert_eq(tu_write_file(path, img, 100), 0);
	cr_assert_eq(mm_intel_snap_open(path, &snap), MM_EFORMAT);
	unlink(path);
	rmdir(dir);
	free(dir);
	free(img);
	mm_intel_set_free(set);
}

/* A copy of the compiled image of the list text, and where its sections lie. */
static char *image_of(const char *text, const char *path, size_t *len)
{
	struct mm_intel_load_stats st;
	struct mm_intel_set *set = load_text("l.txt", text, MM_INTEL_FMT_LIST, &st);

	cr_assert_eq(mm_intel_compile(set, 0, path), 0, "%s", mm_last_error());
	mm_intel_set_free(set);
	return tu_read_file(path, len);
}

static uint64_t sec_off(const char *img, int sec)
{
	uint64_t off;

	memcpy(&off, img + offsetof(struct mmi_header, sec[sec].off), 8);
	return off;
}

Test(lpm, run_group_layout_and_damage_refused)
{
	char *dir = tu_tmpdir(), path[512];
	struct mm_intel_snap *snap;
	uint32_t version = MMI_VERSION - 1;
	size_t len;

	snprintf(path, sizeof(path), "%s/x.mmi", dir);
	char *img = image_of("10.1.2.3\n10.1.5.0/24\n10.1.5.7\n", path, &len), *orig = malloc(len);
	memcpy(orig, img, len);
	struct mmi_v4top *t = (struct mmi_v4top *)(img + sec_off(img, MMI_SEC_V4_TOP)) + 0x0a01; /* 10.1.0.0/16 */
	struct mmi_gline *g = (struct mmi_gline *)(img + sec_off(img, MMI_SEC_GROUP));
	cr_assert_eq(t->e >> MMI_TAG_SHIFT, MMI_TAG_GROUP);
	cr_assert_eq(t->e & MMI_INDEX_MASK, 0u); /* the first group: one line, no splits */
	for (unsigned k = 0; k < MMI_GROUP_MAX_LINES - 1; k++)
		cr_assert_eq(t->u.split[k], 0xffff);
	/* Runs: none, 10.1.2.3, none, 10.1.5.0/24, 10.1.5.7, 10.1.5.0/24 again, none. */
	static const uint16_t keys[] = { 0x0202, 0x0203, 0x04ff, 0x0506, 0x0507, 0x05ff, 0xffff, 0xffff };
	static const unsigned lens[] = { 0, 32, 0, 24, 32, 24, 0, 0 };
	for (unsigned k = 0; k < MMI_GROUP_RUNS; k++) {
		cr_assert_eq(g->key[k], keys[k], "key %u", k);
		cr_assert_eq(g->n[k], lens[k] ? 1u : 0u, "run %u", k);
		cr_assert_eq(g->first_len[k] >> MMI_PACK_FIRST_BITS, lens[k], "run %u", k);
	}

	/* A count that is not its prefix's (checksum resealed: validation must catch it). */
	g->n[1]++;
	reseal(img);
	refused_as(path, img, len, "damaged compiled file (IPv4 table)");
	/* Splits naming more lines than the section holds. */
	memcpy(img, orig, len);
	t->u.split[0] = 0;
	reseal(img);
	refused_as(path, img, len, "(IPv4 table)");
	/* A last key that could count, sending the run past the line. */
	memcpy(img, orig, len);
	g->key[MMI_GROUP_RUNS - 1] = 0;
	reseal(img);
	refused_as(path, img, len, "(IPv4 table)");
	/* A packed leaf beside an entry that is not its record. */
	memcpy(img, orig, len);
	struct mmi_v4top *leaf = t + 1; /* 10.2.0.0/16: no match */
	cr_assert_eq(leaf->e, 0u);
	leaf->u.leaf.first_len = g->first_len[1];
	leaf->u.leaf.n = g->n[1];
	reseal(img);
	refused_as(path, img, len, "(IPv4 table)");
	/* A run group in the IPv6 table, which answers by other bits. */
	memcpy(img, orig, len);
	uint32_t e = MMI_TAG_GROUP << MMI_TAG_SHIFT;
	memcpy(img + sec_off(img, MMI_SEC_V6_TOP), &e, 4);
	reseal(img);
	refused_as(path, img, len, "(IPv6 table)");
	/* A changed confidence breaks no index, only the checksum. */
	memcpy(img, orig, len);
	((struct mmi_ind *)(img + sec_off(img, MMI_SEC_IND)))[0].confidence ^= 1;
	refused_as(path, img, len, "(checksum)");
	/* Another format version is refused by name. */
	memcpy(img, orig, len);
	memcpy(img + offsetof(struct mmi_header, version), &version, 4);
	cr_assert_eq(tu_write_file(path, img, len), 0);
	cr_assert_eq(mm_intel_snap_open(path, &snap), MM_EUNSUP);
	cr_assert(strstr(mm_last_error(), "format version 3, this build reads version 4"), "%s", mm_last_error());
	unlink(path);
	rmdir(dir);
	free(dir);
	free(img);
	free(orig);
}

/* A /16 with more runs than a run group holds is a run list; its values are checked too. */
Test(lpm, run_list_layout_and_damage_refused)
{
	char *dir = tu_tmpdir(), path[512], text[1024];
	struct mm_intel_snap *snap;
	struct mm_intel_hit hit;
	size_t len, at = 0;

	/* 40 hosts: 81 runs (none, host, none, ...), more than the 56 of a group. */
	for (unsigned i = 0; i < 40; i++)
		at += (size_t)snprintf(text + at, sizeof(text) - at, "10.2.%u.1\n", i);
	snprintf(path, sizeof(path), "%s/x.mmi", dir);
	char *img = image_of(text, path, &len);
	uint32_t e;
	memcpy(&e, img + sec_off(img, MMI_SEC_V4_TOP) + sizeof(struct mmi_v4top) * 0x0a02, 4);
	cr_assert_eq(e >> MMI_TAG_SHIFT, MMI_TAG_LIST);
	cr_assert_eq(e & MMI_INDEX_MASK, 2u); /* the first list, three key lines (80 keys) */
	cr_assert_eq(mm_intel_snap_open(path, &snap), 0, "%s", mm_last_error());
	for (unsigned i = 0; i < 40; i++) {
		struct mm_addr a;

		mm_addr_set_v4_u32(&a, 0x0a020001u | i << 8);
		cr_assert_eq(mm_intel_match_addr(snap, &a, 0, &hit), 1);
		cr_assert_eq(hit.prefix.len, 32);
		mm_addr_set_v4_u32(&a, 0x0a020002u | i << 8);
		cr_assert_eq(mm_intel_match_addr(snap, &a, 0, &hit), 0);
	}
	mm_intel_snap_put(snap);
	/* Run 1 (10.2.0.1) is the first value after the three key lines. */
	union mmi_line *l = (union mmi_line *)(img + sec_off(img, MMI_SEC_LIST));
	((struct mmi_leaf *)&l[3])[1].n_len += 1u << 8;
	reseal(img);
	refused_as(path, img, len, "damaged compiled file (IPv4 table)");
	unlink(path);
	rmdir(dir);
	free(dir);
	free(img);
}

/* A compiled file of another format version is a stale cache: opening the store recompiles it. */
Test(lpm, store_open_recompiles_another_version)
{
	char *dir = tu_tmpdir(), list[512], path[512];
	struct mm_intel_defaults def = defaults("mine");
	struct mm_intel_load_stats st;
	uint32_t version = MMI_VERSION - 1;
	struct mm_intel *in;
	struct mm_intel_hit hit;
	struct mm_addr a = addr("192.0.2.9");
	size_t len;

	snprintf(list, sizeof(list), "%s/l.txt", dir);
	snprintf(path, sizeof(path), "%s/%s", dir, MM_INTEL_COMPILED_NAME);
	cr_assert_eq(tu_write_file(list, "192.0.2.0/24\n", 13), 0);
	def.force_source = true;
	cr_assert_eq(mm_intel_store_import(dir, list, MM_INTEL_FMT_LIST, &def, 0, &st), 0, "%s", mm_last_error());
	char *img = tu_read_file(path, &len);
	memcpy(img + offsetof(struct mmi_header, version), &version, 4);
	cr_assert_eq(tu_write_file(path, img, len), 0);
	free(img);
	cr_assert_eq(mm_intel_open(dir, &in), 0, "%s", mm_last_error());
	struct mm_intel_snap *snap = mm_intel_get(in);
	cr_assert_eq(mm_intel_match_addr(snap, &a, 0, &hit), 1);
	cr_assert_eq(hit.prefix.len, 24);
	mm_intel_snap_put(snap);
	mm_intel_close(in);
	img = tu_read_file(path, &len);
	memcpy(&version, img + offsetof(struct mmi_header, version), 4);
	cr_assert_eq(version, MMI_VERSION);
	free(img);
	cr_assert_eq(mm_intel_store_remove(dir, "mine", 0), 0, "%s", mm_last_error());
	unlink(path);
	unlink(list);
	char sources[600];
	snprintf(sources, sizeof(sources), "%s/%s", dir, MM_INTEL_SOURCES_DIR);
	rmdir(sources);
	snprintf(sources, sizeof(sources), "%s/.lock", dir);
	unlink(sources);
	cr_assert_eq(rmdir(dir), 0, "%s left files behind", dir);
	free(dir);
}

/* ---- reload ---- */

#define RELOAD_PROBES 64

struct reload_ctx {
	struct mm_intel *in;
	struct mm_addr probes[2 * RELOAD_PROBES]; /* set A's addresses, then set B's */
	atomic_bool stop;
	atomic_ulong rounds, saw_a, saw_b;
	char failure[256];
};

/* Every snapshot must answer wholly from A or wholly from B. */
static void *reload_reader(void *arg)
{
	struct reload_ctx *c = arg;
	struct mm_intel_hit hits[2 * RELOAD_PROBES];

	while (!atomic_load(&c->stop) && !c->failure[0]) {
		struct mm_intel_snap *snap = mm_intel_get(c->in);
		size_t n = mm_intel_match_addrs(snap, c->probes, 2 * RELOAD_PROBES, 0, hits);
		const char *source = NULL;

		for (size_t i = 0; i < 2 * RELOAD_PROBES && !c->failure[0]; i++) {
			struct mm_intel_indicator ind;
			bool in_a = i < RELOAD_PROBES;

			if (!hits[i].n)
				continue;
			mm_intel_indicator(snap, hits[i].first, &ind);
			if (!source)
				source = ind.source;
			if (strcmp(source, ind.source) != 0 || strcmp(ind.source, in_a ? "A" : "B") != 0)
				snprintf(c->failure, sizeof(c->failure), "probe %zu answered by %s within a %s snapshot", i,
					 ind.source, source);
		}
		if (n != 0 && n != RELOAD_PROBES && !c->failure[0])
			snprintf(c->failure, sizeof(c->failure), "%zu hits: a mix of two sets", n);
		if (source)
			atomic_fetch_add(source[0] == 'A' ? &c->saw_a : &c->saw_b, 1);
		mm_intel_snap_put(snap);
		atomic_fetch_add(&c->rounds, 1);
	}
	return NULL;
}

Test(reload, reader_sees_old_or_new_never_a_mix)
{
	static struct reload_ctx c;
	struct mm_intel_set *sets[2];
	char *dir = tu_tmpdir(), path[512];
	pthread_t reader;

	snprintf(path, sizeof(path), "%s/%s", dir, MM_INTEL_COMPILED_NAME);
	for (int s = 0; s < 2; s++) {
		cr_assert_eq(mm_intel_set_new(&sets[s]), 0);
		for (int i = 0; i < RELOAD_PROBES; i++) {
			struct mm_addr a;
			struct mm_intel_indicator ind = { .kind = MM_INTEL_PREFIX, .source = s ? "B" : "A" };

			if (i % 2)
				mm_addr_set_v4_u32(&a, (s ? 0xc6330000u : 0x0a000000u) + (uint32_t)i * 257u);
			else
				a = addr(s ? "2001:db8:b::" : "2001:db8:a::");
			a.b[15] = (uint8_t)(a.b[15] + (i % 2 ? 0 : i));
			cr_assert_eq(mm_prefix_from_addr(&ind.prefix, &a, mm_addr_is_v4(&a) ? 32 : 128), 0);
			cr_assert_eq(mm_intel_set_add(sets[s], &ind), 0);
			c.probes[s * RELOAD_PROBES + i] = a;
		}
	}
	cr_assert_eq(mm_intel_compile(sets[0], 0, path), 0);
	cr_assert_eq(mm_intel_open(dir, &c.in), 0, "%s", mm_last_error());
	cr_assert_eq(pthread_create(&reader, NULL, reload_reader, &c), 0);
	for (int round = 0; round < 6; round++) {
		cr_assert_eq(mm_intel_compile(sets[(round + 1) % 2], 0, path), 0);
		cr_assert_eq(mm_intel_reload(c.in), 1, "%s", mm_last_error());
		cr_assert_eq(mm_intel_reload(c.in), 0); /* unchanged file: nothing to do */
		unsigned long r = atomic_load(&c.rounds);
		while (atomic_load(&c.rounds) < r + 3 && !c.failure[0])
			usleep(100);
	}
	atomic_store(&c.stop, true);
	pthread_join(reader, NULL);
	cr_assert_eq(c.failure[0], '\0', "%s", c.failure);
	cr_assert_gt(atomic_load(&c.saw_a), 0);
	cr_assert_gt(atomic_load(&c.saw_b), 0);
	mm_intel_close(c.in);
	/* A missing compiled file is an empty set, not an error. */
	unlink(path);
	cr_assert_eq(mm_intel_open(dir, &c.in), 0);
	struct mm_intel_snap *snap = mm_intel_get(c.in);
	cr_assert_eq(mm_intel_snap_count(snap), 0);
	mm_intel_snap_put(snap);
	mm_intel_close(c.in);
	rmdir(dir);
	free(dir);
	mm_intel_set_free(sets[0]);
	mm_intel_set_free(sets[1]);
}

/* ---- the command ---- */

static int run_cli(const char *const *args, char **out, char **err)
{
	const char *argv[16] = { tu_mamori_bin() };
	size_t n = 1;

	for (; args[n - 1]; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;
	return tu_run(argv, NULL, out, err);
}

Test(cli, import_list_match_reimport_remove)
{
	char *dir = tu_tmpdir(), list[512], *out = NULL, *err = NULL;

	snprintf(list, sizeof(list), "%s/l.txt", dir);
	cr_assert_eq(tu_write_file(list, "192.0.2.0/24\n198.51.100.7\ngarbage\n", 35), 0);
	const char *imp[] = { "intel", "import", list, "--source", "mine", "--tlp", "amber", "-R", dir, NULL };
	cr_assert_eq(run_cli(imp, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "imported 2 indicators"), "%s", out);
	cr_assert(strstr(err, "l.txt:3: 'garbage'"), "%s", err);
	free(out);
	free(err);

	const char *ls[] = { "intel", "list", "-R", dir, NULL };
	cr_assert_eq(run_cli(ls, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "mine") && strstr(out, "amber"), "%s", out);
	free(out);
	free(err);

	const char *m[] = { "intel", "match", "192.0.2.9", "203.0.113.1", "-R", dir, NULL };
	cr_assert_eq(run_cli(m, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "192.0.2.9: match\n  192.0.2.0/24  source=mine confidence=50 tlp=amber"), "%s", out);
	cr_assert(strstr(out, "203.0.113.1: no match"), "%s", out);
	free(out);
	free(err);

	/* Re-importing a source replaces it. */
	cr_assert_eq(tu_write_file(list, "203.0.113.0/24\n", 15), 0);
	cr_assert_eq(run_cli(imp, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run_cli(m, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "192.0.2.9: no match") && strstr(out, "203.0.113.1: match"), "%s", out);
	free(out);
	free(err);

	const char *rm[] = { "intel", "remove", "--source", "mine", "-R", dir, NULL };
	cr_assert_eq(run_cli(rm, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run_cli(rm, &out, &err), 2);
	cr_assert(strstr(err, "not imported"), "%s", err);
	free(out);
	free(err);

	const char *bad[] = { "intel", "match", "nonsense", "-R", dir, NULL };
	cr_assert_eq(run_cli(bad, &out, &err), 2);
	free(out);
	free(err);
	const char *help[] = { "intel", "import", "--help", NULL };
	cr_assert_eq(run_cli(help, &out, &err), 0);
	cr_assert(strstr(out, "SYNOPSIS"));
	free(out);
	free(err);
	free(dir);
}
