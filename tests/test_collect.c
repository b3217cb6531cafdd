/*
 * `mamori collect` end to end through the binary: crafted NetFlow v5, v9
 * and IPFIX messages replayed from files, shared export captures replayed
 * from pcap (and checked against pmacct's decode), and the socket path on
 * loopback: UDP over IPv4 and IPv6, IPFIX over TCP, malformed datagrams,
 * periodic and final stats lines whose numbers add up.
 */
#include "test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- building export messages ---- */

struct msg {
	uint8_t b[1024];
	size_t len;
};

static void put8(struct msg *m, uint8_t v)
{
	cr_assert_lt(m->len, sizeof(m->b));
	m->b[m->len++] = v;
}

static void put16(struct msg *m, uint16_t v)
{
	put8(m, (uint8_t)(v >> 8));
	put8(m, (uint8_t)v);
}

static void put32(struct msg *m, uint32_t v)
{
	put16(m, (uint16_t)(v >> 16));
	put16(m, (uint16_t)v);
}

static void put64(struct msg *m, uint64_t v)
{
	put32(m, (uint32_t)(v >> 32));
	put32(m, (uint32_t)v);
}

static void set16(struct msg *m, size_t at, uint16_t v)
{
	m->b[at] = (uint8_t)(v >> 8);
	m->b[at + 1] = (uint8_t)v;
}

#define EXPORT_SECS 1767225600u /* 2026-01-01T00:00:00Z */

/* NetFlow v5 with one record 10.0.0.1:1234 -> 10.0.0.2:80 tcp, 10 packets, 1000 bytes. */
static void build_v5(struct msg *m, uint32_t sequence)
{
	memset(m, 0, sizeof(*m));
	put16(m, 5);           /* version */
	put16(m, 1);           /* count: one record */
	put32(m, 100000);      /* sysUpTime ms */
	put32(m, EXPORT_SECS); /* unix_secs */
	put32(m, 0);           /* unix_nsecs */
	put32(m, sequence);    /* flow_sequence */
	put8(m, 0);            /* engine_type */
	put8(m, 0);            /* engine_id */
	put16(m, 0);           /* sampling: none */
	put32(m, 0x0a000001);  /* srcaddr 10.0.0.1 */
	put32(m, 0x0a000002);  /* dstaddr 10.0.0.2 */
	put32(m, 0);           /* nexthop */
	put16(m, 1);           /* input ifIndex */
	put16(m, 2);           /* output ifIndex */
	put32(m, 10);          /* dPkts */
	put32(m, 1000);        /* dOctets */
	put32(m, 90000);       /* first: uptime 90 s */
	put32(m, 99000);       /* last: uptime 99 s */
	put16(m, 1234);        /* srcport */
	put16(m, 80);          /* dstport */
	put8(m, 0);            /* pad1 */
	put8(m, 0x1b);         /* tcp_flags FIN SYN PSH ACK */
	put8(m, 6);            /* prot tcp */
	put8(m, 0);            /* tos */
	put16(m, 0);           /* src_as */
	put16(m, 0);           /* dst_as */
	put8(m, 24);           /* src_mask */
	put8(m, 24);           /* dst_mask */
	put16(m, 0);           /* pad2 */
}

/* NetFlow v9 template flowset: template 256 = src, dst, ports, proto, packets, bytes. */
static void put_v9_template(struct msg *m)
{
	put16(m, 0);   /* flowset id 0: templates */
	put16(m, 36);  /* flowset length: 4 + 4 + 7 fields * 4 */
	put16(m, 256); /* template id */
	put16(m, 7);   /* field count */
	put16(m, 8);   /* IPV4_SRC_ADDR */
	put16(m, 4);
	put16(m, 12);  /* IPV4_DST_ADDR */
	put16(m, 4);
	put16(m, 7);   /* L4_SRC_PORT */
	put16(m, 2);
	put16(m, 11);  /* L4_DST_PORT */
	put16(m, 2);
	put16(m, 4);   /* PROTOCOL */
	put16(m, 1);
	put16(m, 2);   /* IN_PKTS */
	put16(m, 4);
	put16(m, 1);   /* IN_BYTES */
	put16(m, 4);
}

/* v9 data flowset of template 256: 10.1.0.1:5353 -> 10.1.0.2:53 udp, 3 packets, 300 bytes. */
static void put_v9_data(struct msg *m)
{
	put16(m, 256);        /* flowset id = template 256 */
	put16(m, 28);         /* length: 4 + 21-byte record + 3 padding */
	put32(m, 0x0a010001); /* src 10.1.0.1 */
	put32(m, 0x0a010002); /* dst 10.1.0.2 */
	put16(m, 5353);       /* src port */
	put16(m, 53);         /* dst port */
	put8(m, 17);          /* udp */
	put32(m, 3);          /* packets */
	put32(m, 300);        /* bytes */
	put8(m, 0);           /* 3 bytes padding to a 4-byte boundary */
	put16(m, 0);
}

static void put_v9_header(struct msg *m, uint16_t count, uint32_t sequence)
{
	memset(m, 0, sizeof(*m));
	put16(m, 9);           /* version */
	put16(m, count);       /* records in this packet, templates included */
	put32(m, 100000);      /* sysUpTime ms */
	put32(m, EXPORT_SECS); /* unix secs */
	put32(m, sequence);    /* package sequence */
	put32(m, 7);           /* source id */
}

/* IPFIX template set: template 256 = src, dst, ports, proto, 64-bit packets and bytes. */
static void put_ipfix_template(struct msg *m)
{
	put16(m, 2);   /* set id 2: templates */
	put16(m, 36);  /* set length */
	put16(m, 256); /* template id */
	put16(m, 7);   /* field count */
	put16(m, 8);   /* sourceIPv4Address */
	put16(m, 4);
	put16(m, 12);  /* destinationIPv4Address */
	put16(m, 4);
	put16(m, 7);   /* sourceTransportPort */
	put16(m, 2);
	put16(m, 11);  /* destinationTransportPort */
	put16(m, 2);
	put16(m, 4);   /* protocolIdentifier */
	put16(m, 1);
	put16(m, 2);   /* packetDeltaCount */
	put16(m, 8);
	put16(m, 1);   /* octetDeltaCount */
	put16(m, 8);
}

/* IPFIX data set of template 256: 10.2.0.1:40000 -> 10.2.0.2:443 tcp, packets and bytes given. */
static void put_ipfix_data(struct msg *m, uint64_t packets, uint64_t bytes)
{
	put16(m, 256);        /* set id = template 256 */
	put16(m, 33);         /* length: 4 + one 29-byte record */
	put32(m, 0x0a020001); /* src 10.2.0.1 */
	put32(m, 0x0a020002); /* dst 10.2.0.2 */
	put16(m, 40000);      /* src port */
	put16(m, 443);        /* dst port */
	put8(m, 6);           /* tcp */
	put64(m, packets);
	put64(m, bytes);
}

static void put_ipfix_header(struct msg *m, uint32_t sequence)
{
	memset(m, 0, sizeof(*m));
	put16(m, 10);          /* version */
	put16(m, 0);           /* length, set by ipfix_done */
	put32(m, EXPORT_SECS); /* export time */
	put32(m, sequence);    /* sequence: data records before this message */
	put32(m, 99);          /* observation domain */
}

static void ipfix_done(struct msg *m)
{
	set16(m, 2, (uint16_t)m->len);
}

#define V5_FLOW "\"src\":\"10.0.0.1\",\"src_port\":1234,\"dst\":\"10.0.0.2\",\"dst_port\":80,\"proto\":6,\"fwd_packets\":10,\"fwd_bytes\":1000"
#define V9_FLOW "\"src\":\"10.1.0.1\",\"src_port\":5353,\"dst\":\"10.1.0.2\",\"dst_port\":53,\"proto\":17,\"fwd_packets\":3,\"fwd_bytes\":300"
#define IPFIX_FLOW(p, b) "\"src\":\"10.2.0.1\",\"src_port\":40000,\"dst\":\"10.2.0.2\",\"dst_port\":443,\"proto\":6,\"fwd_packets\":" #p ",\"fwd_bytes\":" #b

/* ---- reading output ---- */

static size_t count_substr(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* The line of stderr that starts with prefix (malloc'd), or NULL. */
static char *find_line(const char *text, const char *prefix)
{
	for (const char *p = text; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (strncmp(p, prefix, strlen(prefix)) == 0)
			return strndup(p, len);
		p = nl ? nl + 1 : NULL;
	}
	return NULL;
}

/* Value of " key=N" on a stats line; fails the test when absent. */
static uint64_t stat_of(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(line, pat);
	cr_assert_not_null(p, "no %s in: %s", key, line);
	return strtoull(p + strlen(pat), NULL, 10);
}

/* Value of " key=N", or 0 when the key is absent (reasons are listed only when non-zero). */
static uint64_t stat_or_zero(const char *line, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", key);
	p = strstr(line, pat);
	return p ? strtoull(p + strlen(pat), NULL, 10) : 0;
}

/* The final stats line, checked to add up: received = decoded + malformed + refused. */
static char *final_line(const char *err)
{
	char *line = find_line(err, "mamori collect: final");

	cr_assert_not_null(line, "no final stats line in: %s", err);
	cr_assert_eq(stat_of(line, "received"),
		     stat_of(line, "decoded") + stat_of(line, "malformed") + stat_of(line, "refused"),
		     "counters do not add up: %s", line);
	cr_assert_eq(stat_of(line, "records"), stat_of(line, "records-decoded") + stat_of(line, "records-dropped"),
		     "records do not add up: %s", line);
	return line;
}

/* Sums the numbers after every `key` (e.g. "\"fwd_packets\":") in text. */
static uint64_t sum_after(const char *text, const char *key)
{
	uint64_t sum = 0;

	for (const char *p = text; (p = strstr(p, key)) != NULL; p += strlen(key))
		sum += strtoull(p + strlen(key), NULL, 10);
	return sum;
}

static char *write_msg(const char *dir, const char *name, const struct msg *m)
{
	char *path;

	cr_assert_geq(asprintf(&path, "%s/%s", dir, name), 0);
	cr_assert_eq(tu_write_file(path, m->b, m->len), 0);
	return path;
}

/* ---- replay from files ---- */

Test(collect, read_v5_v9_ipfix_files_give_their_flows)
{
	char *dir = tu_tmpdir(), *out = NULL, *err = NULL, *line;
	struct msg m;
	char *f5, *f9, *f10;

	build_v5(&m, 0);
	f5 = write_msg(dir, "v5.bin", &m);
	put_v9_header(&m, 2, 0); /* a template and a data record */
	put_v9_template(&m);
	put_v9_data(&m);
	f9 = write_msg(dir, "v9.bin", &m);
	put_ipfix_header(&m, 0);
	put_ipfix_template(&m);
	put_ipfix_data(&m, 5, 700);
	ipfix_done(&m);
	f10 = write_msg(dir, "ipfix.bin", &m);

	const char *argv[] = { tu_mamori_bin(), "collect", "--read", f5, f9, f10, "--format", "ndjson", NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "stderr: %s", err);
	cr_assert_eq(count_substr(out, "\n"), 3, "three flows expected:\n%s", out);
	cr_assert_eq(count_substr(out, V5_FLOW), 1, "%s", out);
	cr_assert_eq(count_substr(out, V9_FLOW), 1, "%s", out);
	cr_assert_eq(count_substr(out, IPFIX_FLOW(5, 700)), 1, "%s", out);
	line = final_line(err);
	cr_assert_eq(stat_of(line, "received"), 3);
	cr_assert_eq(stat_of(line, "decoded"), 3);
	cr_assert_eq(stat_of(line, "flows"), 3);
	/* The pseudo exporter of --read, one session per version. */
	cr_assert_not_null(strstr(err, "exporter=127.0.0.1 version=5 domain=0"), "%s", err);
	cr_assert_not_null(strstr(err, "exporter=127.0.0.1 version=10 domain=99"), "%s", err);
	free(f5);
	free(f9);
	free(f10);
	free(dir);
	free(line);
	free(out);
	free(err);
}

Test(collect, read_files_share_one_exporter_context)
{
	char *dir = tu_tmpdir(), *out = NULL, *err = NULL, *line;
	struct msg m;
	char *data_first, *tmpl_second, *data_third;

	/* IPFIX data before its template: held, then decoded when the next file brings it. */
	put_ipfix_header(&m, 0);
	put_ipfix_data(&m, 1, 100);
	ipfix_done(&m);
	data_first = write_msg(dir, "0-data.bin", &m);
	put_ipfix_header(&m, 1);
	put_ipfix_template(&m);
	ipfix_done(&m);
	tmpl_second = write_msg(dir, "1-template.bin", &m);
	put_ipfix_header(&m, 1);
	put_ipfix_data(&m, 2, 200);
	ipfix_done(&m);
	data_third = write_msg(dir, "2-data.bin", &m);

	const char *argv[] = { tu_mamori_bin(), "collect", "--exporter", "192.0.2.9:4739", "--read", data_first,
			       "--read", tmpl_second, data_third, "--format", "ndjson", NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "stderr: %s", err);
	cr_assert_eq(count_substr(out, IPFIX_FLOW(1, 100)), 1, "held set decoded late:\n%s", out);
	cr_assert_eq(count_substr(out, IPFIX_FLOW(2, 200)), 1, "%s", out);
	line = final_line(err);
	cr_assert_eq(stat_of(line, "flows"), 2);
	cr_assert_eq(stat_or_zero(line, "drop.template-miss"), 0, "%s", line);
	cr_assert_not_null(strstr(err, "exporter=192.0.2.9 version=10 domain=99 messages=3"), "%s", err);
	free(data_first);
	free(tmpl_second);
	free(data_third);
	free(dir);
	free(line);
	free(out);
	free(err);
}

Test(collect, read_ipfix_json_names_every_field)
{
	char *dir = tu_tmpdir(), *out = NULL, *err = NULL, *f;
	struct msg m;

	put_ipfix_header(&m, 0);
	put_ipfix_template(&m);
	put_ipfix_data(&m, 5, 700);
	ipfix_done(&m);
	f = write_msg(dir, "ipfix.bin", &m);
	const char *argv[] = { tu_mamori_bin(), "collect", "-q", "--read", f, "--format", "ipfix-json", NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "stderr: %s", err);
	cr_assert_eq(count_substr(out, "\n"), 1, "%s", out);
	cr_assert_not_null(strstr(out, "\"sourceIPv4Address\":\"10.2.0.1\""), "%s", out);
	cr_assert_not_null(strstr(out, "\"octetDeltaCount\":700"), "%s", out);
	cr_assert_not_null(strstr(out, "\"_template\":256"), "%s", out);
	cr_assert_eq(strlen(err), 0, "-q prints nothing: %s", err);
	free(f);
	free(dir);
	free(out);
	free(err);
}

Test(collect, read_malformed_messages_counted_by_reason)
{
	char *dir = tu_tmpdir(), *out = NULL, *err = NULL, *line;
	struct msg bad_version, short_msg, bad_len, good;
	char *f1, *f2, *f3, *f4;

	memset(&bad_version, 0, sizeof(bad_version));
	put16(&bad_version, 7);  /* version 7: not NetFlow 5/9 or IPFIX */
	put16(&bad_version, 0);
	memset(&short_msg, 0, sizeof(short_msg));
	put8(&short_msg, 0);     /* one byte: no version field */
	put_ipfix_header(&bad_len, 0);
	set16(&bad_len, 2, 400); /* header says 400 bytes, datagram has 16 */
	build_v5(&good, 0);
	f1 = write_msg(dir, "a", &bad_version);
	f2 = write_msg(dir, "b", &short_msg);
	f3 = write_msg(dir, "c", &bad_len);
	f4 = write_msg(dir, "d", &good);

	const char *argv[] = { tu_mamori_bin(), "collect", "--read", f1, f2, f3, f4, "--format", "csv", NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "malformed input is counted, not fatal: %s", err);
	line = final_line(err);
	cr_assert_eq(stat_of(line, "received"), 4);
	cr_assert_eq(stat_of(line, "malformed"), 3, "%s", line);
	cr_assert_eq(stat_of(line, "drop.bad-version"), 1, "%s", line);
	cr_assert_eq(stat_of(line, "drop.short-header"), 1, "%s", line);
	cr_assert_eq(stat_of(line, "drop.bad-length"), 1, "%s", line);
	cr_assert_eq(count_substr(out, "\n"), 2, "csv header and one flow:\n%s", out);
	free(f1);
	free(f2);
	free(f3);
	free(f4);
	free(dir);
	free(line);
	free(out);
	free(err);
}

Test(collect, count_stops_after_n_messages)
{
	char *dir = tu_tmpdir(), *out = NULL, *err = NULL, *line, *files[3];
	struct msg m;

	for (int i = 0; i < 3; i++) {
		char name[8];

		build_v5(&m, (uint32_t)i);
		snprintf(name, sizeof(name), "%d", i);
		files[i] = write_msg(dir, name, &m);
	}
	const char *argv[] = { tu_mamori_bin(), "collect", "--count", "2", "--read", files[0], files[1], files[2],
			       "--format", "ndjson", NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "%s", err);
	cr_assert_eq(count_substr(out, V5_FLOW), 2, "%s", out);
	line = final_line(err);
	cr_assert_eq(stat_of(line, "received"), 2, "%s", line);
	for (int i = 0; i < 3; i++)
		free(files[i]);
	free(dir);
	free(line);
	free(out);
	free(err);
}

/* ---- replay from captures ---- */

/* Replays a shared capture and checks that no export message was malformed or refused. */
static char *replay_clean(const char *rel, char **out)
{
	char *path = tu_shared_path(rel), *err = NULL, *line;

	cr_assert_not_null(path);
	const char *argv[] = { tu_mamori_bin(), "collect", "--from-pcap", path, "--format", "ndjson", NULL };
	cr_assert_eq(tu_run(argv, NULL, out, &err), 0, "%s: %s", rel, err);
	line = final_line(err);
	cr_assert_gt(stat_of(line, "received"), 0, "%s", line);
	cr_assert_eq(stat_of(line, "malformed"), 0, "%s: %s", rel, line);
	cr_assert_eq(stat_of(line, "refused"), 0, "%s: %s", rel, line);
	cr_assert_eq(stat_of(line, "received"), stat_of(line, "pcap-packets") - stat_of(line, "pcap-not-export"),
		     "%s", line);
	free(path);
	free(err);
	return line;
}

Test(collect, from_pcap_ndpi_netflow_v9)
{
	TU_REQUIRE_SHARED(p, "ndpi/netflowv9.pcap");
	char *out = NULL, *line = replay_clean("ndpi/netflowv9.pcap", &out);

	/* The capture starts after the exporter sent its templates: every data
	 * flowset is a counted template miss, none is lost silently. */
	cr_assert_gt(stat_of(line, "drop.template-miss"), 0, "%s", line);
	cr_assert_not_null(strstr(line, " decoded=10 "), "%s", line);
	free(p);
	free(line);
	free(out);
}

Test(collect, from_pcap_fritz_box_templates)
{
	TU_REQUIRE_SHARED(p, "ndpi/netflow-fritz.pcap");
	char *out = NULL, *line = replay_clean("ndpi/netflow-fritz.pcap", &out);

	cr_assert_gt(stat_of(line, "templates"), 0, "%s", line);
	free(p);
	free(line);
	free(out);
}

/* Sum of "packets" and "bytes" over pmacct's expected JSON lines. */
static void pmacct_totals(const char *rel, uint64_t *packets, uint64_t *bytes)
{
	char *path = tu_shared_path(rel), *text;

	cr_assert_not_null(path);
	text = tu_read_file(path, NULL);
	cr_assert_not_null(text);
	*packets = sum_after(text, "\"packets\": ");
	*bytes = sum_after(text, "\"bytes\": ");
	free(text);
	free(path);
}

/*
 * nfacctd aggregates by primitives that include the 5-tuple and
 * interfaces; aggregation keeps sums, so total packets and bytes must match.
 */
Test(collect, from_pcap_pmacct_cisco_matches_nfacctd_totals)
{
	TU_REQUIRE_SHARED(p, "pmacct-nfacctd/100-IPFIXv10-CISCO/traffic-00.pcap");
	uint64_t packets, bytes;
	char *out = NULL, *line = replay_clean("pmacct-nfacctd/100-IPFIXv10-CISCO/traffic-00.pcap", &out);

	pmacct_totals("pmacct-nfacctd/100-IPFIXv10-CISCO/output-flow-00.json", &packets, &bytes);
	cr_assert_eq(sum_after(out, "\"fwd_packets\":"), packets, "packets: %s", line);
	cr_assert_eq(sum_after(out, "\"fwd_bytes\":"), bytes, "bytes: %s", line);
	cr_assert_not_null(strstr(line, " sequence-gaps=0 "), "%s", line);
	free(p);
	free(line);
	free(out);
}

/*
 * The IPv6 test exports 1-in-256 sampled counts (the options record says
 * samplingSize 1, samplingPopulation 256) and nfacctd renormalises; the raw
 * counts times 256 must be its totals.
 */
Test(collect, from_pcap_pmacct_ipv6_sampled_counts)
{
	TU_REQUIRE_SHARED(p, "pmacct-nfacctd/104-IPFIXv10-IPv6-CISCO-sampling_option/traffic-00.pcap");
	uint64_t packets, bytes;
	char *out = NULL,
	     *line = replay_clean("pmacct-nfacctd/104-IPFIXv10-IPv6-CISCO-sampling_option/traffic-00.pcap", &out);

	pmacct_totals("pmacct-nfacctd/104-IPFIXv10-IPv6-CISCO-sampling_option/output-flow-00.json", &packets,
		      &bytes);
	cr_assert_eq(count_substr(out, "\n"), 3, "%s", out);
	cr_assert_eq(sum_after(out, "\"fwd_packets\":") * 256, packets);
	cr_assert_eq(sum_after(out, "\"fwd_bytes\":") * 256, bytes);
	cr_assert_not_null(strstr(out, "\"src\":\"fe80::4206:d5ff:feff:dd90\""), "%s", out);
	free(p);
	free(line);
	free(out);
}

/* Renormalising needs the flows to carry the options record's 1-in-256 rate. */
Test(collect, from_pcap_pmacct_ipv6_sampling_rate_renormalises)
{
	TU_REQUIRE_SHARED(p, "pmacct-nfacctd/104-IPFIXv10-IPv6-CISCO-sampling_option/traffic-00.pcap");
	uint64_t packets, bytes;
	char *out = NULL,
	     *line = replay_clean("pmacct-nfacctd/104-IPFIXv10-IPv6-CISCO-sampling_option/traffic-00.pcap", &out);

	pmacct_totals("pmacct-nfacctd/104-IPFIXv10-IPv6-CISCO-sampling_option/output-flow-00.json", &packets,
		      &bytes);
	cr_assert_eq(count_substr(out, "\"sampling_rate\":256"), 3, "each flow 1-in-256:\n%s", out);
	free(p);
	free(line);
	free(out);
}

/* ---- the socket path ---- */

/* A port free for UDP and TCP on both loopbacks now: bound to 0, read back, released. */
static uint16_t free_port(void)
{
	for (int attempt = 0; attempt < 50; attempt++) {
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
		socklen_t len = sizeof(a);
		int types[] = { SOCK_DGRAM, SOCK_STREAM }, ok = 1;
		int fd = socket(AF_INET6, SOCK_DGRAM, 0);
		uint16_t port;

		cr_assert_geq(fd, 0);
		cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
		port = ntohs(a.sin6_port);
		close(fd);
		for (int t = 0; t < 2 && ok; t++) {
			fd = socket(AF_INET6, types[t], 0);
			a.sin6_port = htons(port);
			ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
			close(fd);
		}
		if (ok)
			return port;
	}
	cr_assert_fail("no free port");
	return 0;
}

struct child {
	pid_t pid;
	char *out_path, *err_path;
};

static void start_collect(struct child *c, const char *const *args)
{
	char *dir = tu_tmpdir();
	const char *argv[32] = { tu_mamori_bin(), "collect" };
	size_t n = 2;

	for (; args[n - 2] && n < 31; n++)
		argv[n] = args[n - 2];
	argv[n] = NULL;
	cr_assert_geq(asprintf(&c->out_path, "%s/out", dir), 0);
	cr_assert_geq(asprintf(&c->err_path, "%s/err", dir), 0);
	c->pid = fork();
	cr_assert_geq(c->pid, 0);
	if (c->pid == 0) {
		int o = open(c->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int e = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		dup2(o, STDOUT_FILENO);
		dup2(e, STDERR_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	free(dir);
}

static int tcp_connect(const char *addr, uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, addr, &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	close(fd);
	return -1;
}

/* Waits until the collector accepts on its TCP listener (its UDP sockets are bound before it). */
static int wait_listening(uint16_t tcp_port)
{
	struct timespec pause = { 0, 20 * 1000 * 1000 };

	for (int i = 0; i < 500; i++) {
		int fd = tcp_connect("127.0.0.1", tcp_port);

		if (fd >= 0)
			return fd;
		nanosleep(&pause, NULL);
	}
	cr_assert_fail("collector never listened on tcp port %u", tcp_port);
	return -1;
}

static void send_udp(int family, const char *addr, uint16_t port, const void *data, size_t len)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t ss_len;
	int fd = socket(family, SOCK_DGRAM, 0);

	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		inet_pton(AF_INET, addr, &a->sin_addr);
		ss_len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &a->sin6_addr);
		ss_len = sizeof(*a);
	}
	cr_assert_eq(sendto(fd, data, len, 0, (struct sockaddr *)&ss, ss_len), (ssize_t)len);
	close(fd);
}

static int wait_child(struct child *c, char **out, char **err)
{
	int status;

	cr_assert_eq(waitpid(c->pid, &status, 0), c->pid);
	*out = tu_read_file(c->out_path, NULL);
	*err = tu_read_file(c->err_path, NULL);
	cr_assert_not_null(*out);
	cr_assert_not_null(*err);
	free(c->out_path);
	free(c->err_path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void send_all(int fd, const void *data, size_t len)
{
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
}

static void run_socket_path(const char *workers)
{
	uint16_t port = free_port(), tport = free_port();
	char l4[32], l6[32], lt[32], *out, *err, *line;
	struct child c;
	struct msg v5, v9, ipfix_t, ipfix_d, bad;
	struct timespec pause = { 0, 50 * 1000 * 1000 };
	int fd;

	snprintf(l4, sizeof(l4), "127.0.0.1:%u", port);
	snprintf(l6, sizeof(l6), "[::1]:%u", port);
	snprintf(lt, sizeof(lt), "tcp:127.0.0.1:%u", tport);
	const char *args[] = { "-l", l4, "-l", l6, "-l", lt, "--duration", "3", "--format", "ndjson",
			       "--stats-interval", "1s", "--workers", workers, NULL };
	start_collect(&c, args);
	close(wait_listening(tport));

	build_v5(&v5, 0);
	send_udp(AF_INET, "127.0.0.1", port, v5.b, v5.len);
	put_v9_header(&v9, 2, 0); /* template and data in one datagram */
	put_v9_template(&v9);
	put_v9_data(&v9);
	send_udp(AF_INET6, "::1", port, v9.b, v9.len);
	memset(&bad, 0, sizeof(bad));
	put16(&bad, 7); /* version 7: malformed */
	put16(&bad, 1);
	send_udp(AF_INET, "127.0.0.1", port, bad.b, bad.len);
	send_udp(AF_INET6, "::1", port, bad.b, 1); /* one byte: short header */

	/* IPFIX over TCP: the template message and the data message, the
	 * second split across two writes so the collector must reassemble it. */
	put_ipfix_header(&ipfix_t, 0);
	put_ipfix_template(&ipfix_t);
	ipfix_done(&ipfix_t);
	put_ipfix_header(&ipfix_d, 0);
	put_ipfix_data(&ipfix_d, 9, 900);
	ipfix_done(&ipfix_d);
	fd = wait_listening(tport);
	send_all(fd, ipfix_t.b, ipfix_t.len);
	send_all(fd, ipfix_d.b, 10);
	nanosleep(&pause, NULL);
	send_all(fd, ipfix_d.b + 10, ipfix_d.len - 10);
	close(fd);

	cr_assert_eq(wait_child(&c, &out, &err), 0, "%s", err);
	cr_assert_eq(count_substr(out, V5_FLOW), 1, "v5 over IPv4:\n%s\n%s", out, err);
	cr_assert_eq(count_substr(out, V9_FLOW), 1, "v9 over IPv6:\n%s\n%s", out, err);
	cr_assert_eq(count_substr(out, IPFIX_FLOW(9, 900)), 1, "IPFIX over TCP:\n%s\n%s", out, err);
	cr_assert_geq(count_substr(err, "mamori collect: stats "), 1, "a stats line per interval:\n%s", err);
	line = final_line(err);
	cr_assert_eq(stat_of(line, "received"), 6, "%s", line);
	cr_assert_eq(stat_of(line, "decoded"), 4, "%s", line);
	cr_assert_eq(stat_of(line, "malformed"), 2, "%s", line);
	cr_assert_eq(stat_of(line, "drop.bad-version"), 1, "%s", line);
	cr_assert_eq(stat_of(line, "drop.short-header"), 1, "%s", line);
	cr_assert_eq(stat_of(line, "kernel-drops"), 0, "%s", line);
	cr_assert_eq(stat_of(line, "written"), 3, "%s", line);
	cr_assert_not_null(strstr(err, "exporter=127.0.0.1 version=5 "), "%s", err);
	cr_assert_not_null(strstr(err, "exporter=::1 version=9 domain=7 "), "%s", err);
	cr_assert_not_null(strstr(err, "exporter=127.0.0.1 version=10 domain=99 "), "%s", err);
	free(line);
	free(out);
	free(err);
}

Test(collect, sockets_udp_v4_v6_and_tcp_one_worker, .timeout = 30)
{
	run_socket_path("1");
}

Test(collect, sockets_udp_v4_v6_and_tcp_two_workers, .timeout = 30)
{
	run_socket_path("2");
}

Test(collect, sigterm_stops_cleanly_with_final_stats, .timeout = 30)
{
	uint16_t tport = free_port();
	char lt[32], *out, *err, *line;
	struct child c;

	snprintf(lt, sizeof(lt), "tcp:127.0.0.1:%u", tport);
	const char *args[] = { "-l", lt, "--format", "csv", NULL };
	start_collect(&c, args);
	close(wait_listening(tport));
	kill(c.pid, SIGTERM);
	cr_assert_eq(wait_child(&c, &out, &err), 0, "%s", err);
	line = final_line(err);
	cr_assert_eq(stat_of(line, "received"), 0, "%s", line);
	cr_assert_eq(strncmp(out, "uid,", 4), 0, "csv header written: %s", out);
	free(line);
	free(out);
	free(err);
}

/* ---- the command line ---- */

Test(collect, port_in_use_is_an_io_error)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	char l[32], *err = NULL;

	/* Without SO_REUSEPORT this socket keeps the port to itself. */
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	snprintf(l, sizeof(l), "127.0.0.1:%u", ntohs(a.sin_port));
	const char *argv[] = { tu_mamori_bin(), "collect", "-l", l, "--duration", "1", NULL };
	cr_assert_eq(tu_run(argv, NULL, NULL, &err), 3, "%s", err);
	cr_assert_not_null(strstr(err, l), "the message names the address: %s", err);
	close(fd);
	free(err);
}

Test(collect, usage_errors_and_help)
{
	char *out = NULL, *err = NULL;
	const char *bad_listen[] = { tu_mamori_bin(), "collect", "-l", "::1:2055", NULL };
	const char *bad_format[] = { tu_mamori_bin(), "collect", "--format", "xml", NULL };
	const char *both[] = { tu_mamori_bin(), "collect", "-l", "2055", "--read", "/dev/null", NULL };
	const char *missing[] = { tu_mamori_bin(), "collect", "--read", "/nonexistent/msg.bin", NULL };
	const char *help[] = { tu_mamori_bin(), "collect", "--help", NULL };

	cr_assert_eq(tu_run(bad_listen, NULL, NULL, &err), 1, "%s", err);
	cr_assert_not_null(strstr(err, "[ADDR]:PORT"), "%s", err);
	free(err);
	cr_assert_eq(tu_run(bad_format, NULL, NULL, NULL), 1);
	cr_assert_eq(tu_run(both, NULL, NULL, NULL), 1);
	cr_assert_eq(tu_run(missing, NULL, NULL, &err), 2, "%s", err);
	free(err);
	cr_assert_eq(tu_run(help, NULL, &out, NULL), 0);
	cr_assert_not_null(strstr(out, "EXIT STATUS"));
	cr_assert_not_null(strstr(out, "received = decoded + malformed + refused"));
	free(out);
}
