/*
 * core/: addresses and prefixes, keyed hashing, time and duration text,
 * status messages, protocol names.
 */
#include "mamori/addr.h"
#include "mamori/flow.h"
#include "mamori/hash.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <criterion/criterion.h>
#include <string.h>

static void check_addr_roundtrip(const char *in, const char *canonical)
{
	struct mm_addr a;
	char buf[MM_ADDR_STRLEN];

	cr_assert_eq(mm_addr_parse(&a, in), 0, "parse %s: %s", in, mm_last_error());
	cr_assert_str_eq(mm_addr_format(&a, buf), canonical);
}

Test(addr, parse_and_format_both_families)
{
	struct mm_addr a;

	check_addr_roundtrip("192.0.2.1", "192.0.2.1");
	check_addr_roundtrip("0.0.0.0", "0.0.0.0");
	check_addr_roundtrip("2001:DB8:0:0:0:0:0:1", "2001:db8::1");  /* RFC 5952 lower case, :: */
	check_addr_roundtrip("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"); /* first longest run */
	check_addr_roundtrip("::", "::");
	check_addr_roundtrip("fe80::a667:6ff:fef7:ec54", "fe80::a667:6ff:fef7:ec54");
	cr_assert_eq(mm_addr_parse(&a, "192.0.2.1"), 0);
	cr_assert(mm_addr_is_v4(&a));
	cr_assert_eq(mm_addr_v4_u32(&a), 0xc0000201u);
	cr_assert_eq(mm_addr_parse(&a, "2001:db8::1"), 0);
	cr_assert_not(mm_addr_is_v4(&a));
}

Test(addr, rejects_malformed_text_with_message)
{
	static const char *const bad[] = { "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4x",
					   "2001:db8:::1", "2001:db8::g", "1.2.3.4/24", " 1.2.3.4" };
	struct mm_addr a;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(mm_addr_parse(&a, bad[i]), MM_EINVAL, "accepted '%s'", bad[i]);
		cr_assert(strstr(mm_last_error(), bad[i]) != NULL, "message does not quote '%s'", bad[i]);
	}
}

Test(addr, order_is_bytewise)
{
	struct mm_addr a, b;

	mm_addr_parse(&a, "10.0.0.1");
	mm_addr_parse(&b, "10.0.0.2");
	cr_assert_lt(mm_addr_cmp(&a, &b), 0);
	cr_assert_gt(mm_addr_cmp(&b, &a), 0);
	cr_assert(mm_addr_eq(&a, &a));
}

Test(prefix, parse_contains_format)
{
	struct mm_prefix p;
	struct mm_addr in, out, v6;
	char buf[MM_PREFIX_STRLEN];

	cr_assert_eq(mm_prefix_parse(&p, "192.0.2.0/24", false), 0);
	cr_assert_str_eq(mm_prefix_format(&p, buf), "192.0.2.0/24");
	cr_assert_eq(mm_prefix_bits128(&p), 120);
	mm_addr_parse(&in, "192.0.2.255");
	mm_addr_parse(&out, "192.0.3.0");
	mm_addr_parse(&v6, "2001:db8::1");
	cr_assert(mm_prefix_contains(&p, &in));
	cr_assert_not(mm_prefix_contains(&p, &out));
	cr_assert_not(mm_prefix_contains(&p, &v6));

	cr_assert_eq(mm_prefix_parse(&p, "2001:db8::/33", false), 0);
	cr_assert(mm_prefix_contains(&p, &v6));
	mm_addr_parse(&out, "2001:db8:8000::1");
	cr_assert_not(mm_prefix_contains(&p, &out));

	/* /0 of IPv4 holds every IPv4 address and no IPv6 one. */
	cr_assert_eq(mm_prefix_parse(&p, "0.0.0.0/0", false), 0);
	cr_assert(mm_prefix_contains(&p, &in));
	cr_assert_not(mm_prefix_contains(&p, &v6));

	/* A bare address is a host prefix. */
	cr_assert_eq(mm_prefix_parse(&p, "2001:db8::1", false), 0);
	cr_assert_eq(p.len, 128);
}

Test(prefix, host_bits_and_bad_lengths)
{
	struct mm_prefix p;
	char buf[MM_PREFIX_STRLEN];

	cr_assert_eq(mm_prefix_parse(&p, "192.0.2.1/24", false), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "host bits") != NULL);
	cr_assert_eq(mm_prefix_parse(&p, "192.0.2.1/24", true), 0);
	cr_assert_str_eq(mm_prefix_format(&p, buf), "192.0.2.0/24");
	cr_assert_eq(mm_prefix_parse(&p, "192.0.2.0/33", false), MM_EINVAL);
	cr_assert_eq(mm_prefix_parse(&p, "2001:db8::/129", false), MM_EINVAL);
	cr_assert_eq(mm_prefix_parse(&p, "192.0.2.0/", false), MM_EINVAL);
	cr_assert_eq(mm_prefix_parse(&p, "192.0.2.0/2x", false), MM_EINVAL);
	cr_assert_eq(mm_prefix_parse(&p, "/8", false), MM_EINVAL);
}

Test(prefix, from_addr_clears_host_bits)
{
	struct mm_addr a;
	struct mm_prefix p;
	char buf[MM_PREFIX_STRLEN];

	mm_addr_parse(&a, "2001:db8:abcd:1234::1");
	cr_assert_eq(mm_prefix_from_addr(&p, &a, 36), 0);
	cr_assert_str_eq(mm_prefix_format(&p, buf), "2001:db8:a000::/36");
	mm_addr_parse(&a, "198.51.100.77");
	cr_assert_eq(mm_prefix_from_addr(&p, &a, 33), MM_EINVAL);
}

/* Reference values of SipHash-1-3 under the all-zero key, from the reference implementation's
 * outputs as quoted by independent ports (OCaml's runtime tests, Rust's digest crate). */
Test(hash, siphash13_reference_values)
{
	struct mm_hash_key zero = { 0, 0 };
	uint8_t one_zero_byte = 0;

	cr_assert_eq(mm_siphash13(&zero, "", 0), 0xd1fba762150c532cULL);
	cr_assert_eq(mm_siphash13(&zero, &one_zero_byte, 1), 0x68a914128e01e473ULL);
	cr_assert_eq(mm_siphash13(&zero, "siphash", 7), 0x8264ceeccb16bcbeULL);
}

Test(hash, key_changes_every_output)
{
	struct mm_hash_key k1, k2;
	uint8_t msg[40] = { 1, 2, 3 };

	cr_assert_eq(mm_hash_key_random(&k1), 0);
	cr_assert_eq(mm_hash_key_random(&k2), 0);
	cr_assert(k1.k0 != k2.k0 || k1.k1 != k2.k1);
	cr_assert_neq(mm_siphash13(&k1, msg, sizeof(msg)), mm_siphash13(&k2, msg, sizeof(msg)));
	/* Every length 0..40 takes a different path through the tail handling. */
	for (size_t len = 1; len <= sizeof(msg); len++)
		cr_assert_neq(mm_siphash13(&k1, msg, len), mm_siphash13(&k1, msg, len - 1), "len %zu", len);
}

/*
 * The four-lane forms (vector code on CPUs with AVX2) must give each
 * lane the one-input function's value: every length 0..40, so each tail
 * length and word count is covered, and different data in every lane.
 */
Test(hash, four_lane_forms_equal_one_input_forms)
{
	struct mm_hash_key key;
	uint8_t msg[4][40];
	const void *data[4] = { msg[0], msg[1], msg[2], msg[3] };
	uint64_t m0[4], m1[4], out[4];

	srand(11);
	for (int round = 0; round < 20; round++) {
		cr_assert_eq(mm_hash_key_random(&key), 0);
		for (size_t i = 0; i < 4; i++) {
			for (size_t j = 0; j < sizeof(msg[i]); j++)
				msg[i][j] = (uint8_t)rand();
			m0[i] = (uint64_t)rand() << 40 ^ (uint64_t)rand() << 20 ^ (uint64_t)rand();
			m1[i] = (uint64_t)rand() << 40 ^ (uint64_t)rand() << 20 ^ (uint64_t)rand();
		}
		for (size_t len = 0; len <= sizeof(msg[0]); len++) {
			mm_siphash13_x4(&key, data, len, out);
			for (size_t i = 0; i < 4; i++)
				cr_assert_eq(out[i], mm_siphash13(&key, msg[i], len), "len %zu lane %zu",
					     len, i);
		}
		mm_siphash13_16x4(&key, m0, m1, out);
		for (size_t i = 0; i < 4; i++)
			cr_assert_eq(out[i], mm_siphash13_16(&key, m0[i], m1[i]), "lane %zu", i);
	}
}

Test(timefmt, format_iso_and_epoch)
{
	char buf[MM_TIME_STRLEN];
	uint64_t ns = 1767225600ULL * MM_NS_PER_SEC + 123456789ULL; /* 2026-01-01T00:00:00.123456789Z */

	cr_assert_str_eq(mm_time_format_iso(ns, buf), "2026-01-01T00:00:00.123456Z");
	cr_assert_str_eq(mm_time_format_epoch(ns, buf), "1767225600.123456");
}

Test(timefmt, parse_absolute_relative_epoch)
{
	const uint64_t now = 1767225600ULL * MM_NS_PER_SEC;
	uint64_t t;

	cr_assert_eq(mm_time_parse("2026-01-01T00:00Z", now, &t), 0);
	cr_assert_eq(t, now);
	cr_assert_eq(mm_time_parse("2026-01-01", now, &t), 0);
	cr_assert_eq(t, now);
	cr_assert_eq(mm_time_parse("2026-01-01T09:00:00.5+09:00", now, &t), 0);
	cr_assert_eq(t, now + MM_NS_PER_SEC / 2);
	cr_assert_eq(mm_time_parse("-1h", now, &t), 0);
	cr_assert_eq(t, now - 3600 * MM_NS_PER_SEC);
	cr_assert_eq(mm_time_parse("@1767225600.25", now, &t), 0);
	cr_assert_eq(t, now + MM_NS_PER_SEC / 4);
	cr_assert_eq(mm_time_parse("now", now, &t), 0);
	cr_assert_eq(t, now);
	cr_assert_eq(mm_time_parse("2026-13-01", now, &t), MM_EINVAL);
	cr_assert_eq(mm_time_parse("2026-01-01T25:00Z", now, &t), MM_EINVAL);
	cr_assert_eq(mm_time_parse("yesterday", now, &t), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "yesterday") != NULL);
}

Test(timefmt, durations)
{
	uint64_t d;

	cr_assert_eq(mm_duration_parse("300s", &d), 0);
	cr_assert_eq(d, 300 * MM_NS_PER_SEC);
	cr_assert_eq(mm_duration_parse("1.5h", &d), 0);
	cr_assert_eq(d, 5400 * MM_NS_PER_SEC);
	cr_assert_eq(mm_duration_parse("250ms", &d), 0);
	cr_assert_eq(d, 250000000ULL);
	cr_assert_eq(mm_duration_parse("60", &d), 0);
	cr_assert_eq(d, 60 * MM_NS_PER_SEC);
	cr_assert_eq(mm_duration_parse("5 m", &d), MM_EINVAL);
	cr_assert_eq(mm_duration_parse("2y", &d), 0);
	cr_assert_eq(d, 2 * 365 * 86400 * MM_NS_PER_SEC);
	cr_assert_eq(mm_duration_parse("5x", &d), MM_EINVAL);
	cr_assert_eq(mm_duration_parse("", &d), MM_EINVAL);
}

Test(flow, names)
{
	char buf[9];
	char pbuf[8];
	uint8_t p;

	cr_assert_str_eq(mm_tcp_flags_format(0x12, buf), "...A..S.");
	cr_assert_str_eq(mm_tcp_flags_format(0x11, buf), "...A...F");
	cr_assert_str_eq(mm_proto_name(6, pbuf), "tcp");
	cr_assert_str_eq(mm_proto_name(253, pbuf), "253");
	cr_assert_eq(mm_proto_parse("udp", &p), 0);
	cr_assert_eq(p, 17);
	cr_assert_eq(mm_proto_parse("icmp6", &p), 0);
	cr_assert_eq(p, 58);
	cr_assert_eq(mm_proto_parse("47", &p), 0);
	cr_assert_eq(p, 47);
	cr_assert_eq(mm_proto_parse("256", &p), MM_EINVAL);
	cr_assert_str_eq(mm_end_reason_name(MM_END_EOF), "eof");
}

Test(status, messages)
{
	cr_assert_eq(mm_fail(MM_EFORMAT, "pcap: %s: bad magic %08x", "x.pcap", 0xdeadbeefu), MM_EFORMAT);
	cr_assert_str_eq(mm_last_error(), "pcap: x.pcap: bad magic deadbeef");
	mm_clear_error();
	cr_assert_str_eq(mm_last_error(), "no error detail");
	cr_assert_str_eq(mm_strerror(MM_ENOMEM), "out of memory");
}
