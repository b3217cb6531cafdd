/*
 * Synthetic traffic: exact bytes from the packet builder, the pcap writer's
 * format and atomic publish, and the generator's promises (deterministic,
 * summary equal to what is in the file, one flow per conversation, clean
 * under tshark, a faithful `mamori synth` command).
 */
#include "test_util.h"

#include "mamori/status.h"
#include "mamori/synth.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct mm_addr addr(const char *text)
{
	struct mm_addr a;

	cr_assert_eq(mm_addr_parse(&a, text), 0, "parse %s", text);
	return a;
}

static void assert_frame(const struct mm_packet_spec *spec, const uint8_t *want, size_t want_len)
{
	uint8_t buf[256];
	size_t len = mm_packet_build(spec, buf, sizeof(buf));

	cr_assert_eq(len, want_len, "frame length %zu, want %zu", len, want_len);
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(buf[i], want[i], "byte %zu is %02x, want %02x", i, buf[i], want[i]);
}

Test(builder, ipv4_tcp_syn_exact)
{
	struct mm_packet_spec s = { .src = addr("192.0.2.1"), .dst = addr("198.51.100.2"),
				    .sport = 40000, .dport = 443, .proto = 6, .tcp_flags = 0x02,
				    .tcp_seq = 0x01020304 };
	static const uint8_t want[] = {
		/* Ethernet: dst 02:00:c6:33:64:02, src 02:00:c0:00:02:01 (from the IPs), IPv4 */
		0x02, 0x00, 0xc6, 0x33, 0x64, 0x02, 0x02, 0x00, 0xc0, 0x00, 0x02, 0x01, 0x08, 0x00,
		/* IPv4: IHL 5, total length 40, id 0, DF, TTL 64, TCP, checksum 0x4e99 */
		0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x4e, 0x99,
		0xc0, 0x00, 0x02, 0x01, /* 192.0.2.1 */
		0xc6, 0x33, 0x64, 0x02, /* 198.51.100.2 */
		/* TCP: 40000 -> 443, seq 0x01020304, ack 0, offset 5, SYN, window 64240, checksum 0x26b9 */
		0x9c, 0x40, 0x01, 0xbb, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00,
		0x50, 0x02, 0xfa, 0xf0, 0x26, 0xb9, 0x00, 0x00,
	};

	assert_frame(&s, want, sizeof(want));
}

Test(builder, ipv6_udp_vlan_exact)
{
	struct mm_packet_spec s = { .src = addr("2001:db8::1"), .dst = addr("2001:db8::2"),
				    .sport = 5353, .dport = 53, .proto = 17, .vlan = 42,
				    .payload_len = 4, .ttl = 255 };
	static const uint8_t want[] = {
		/* Ethernet: dst 02:00:00:00:00:02, src 02:00:00:00:00:01, 802.1Q VLAN 42, IPv6 */
		0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
		0x81, 0x00, 0x00, 0x2a, 0x86, 0xdd,
		/* IPv6: payload length 12, next header UDP, hop limit 255 */
		0x60, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x11, 0xff,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, /* 2001:db8::1 */
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, /* 2001:db8::2 */
		/* UDP: 5353 -> 53, length 12, checksum 0x8f43 over the pseudo-header */
		0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x8f, 0x43,
		0x00, 0x00, 0x00, 0x00, /* zero payload */
	};

	assert_frame(&s, want, sizeof(want));
}

Test(builder, icmp_echo_exact)
{
	struct mm_packet_spec s = { .src = addr("10.0.0.1"), .dst = addr("10.0.0.2"), .sport = 0x1234,
				    .dport = 1, .proto = 1, .icmp_type = 8, .payload_len = 8 };
	static const uint8_t want[] = {
		0x02, 0x00, 0x0a, 0x00, 0x00, 0x02, 0x02, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x08, 0x00,
		/* IPv4: total length 36, DF, TTL 64, ICMP, checksum 0x26d7, 10.0.0.1 -> 10.0.0.2 */
		0x45, 0x00, 0x00, 0x24, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x26, 0xd7,
		0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
		/* ICMP echo request, code 0, checksum 0xe5ca, identifier 0x1234, sequence 1 */
		0x08, 0x00, 0xe5, 0xca, 0x12, 0x34, 0x00, 0x01,
		0, 0, 0, 0, 0, 0, 0, 0, /* zero payload */
	};

	assert_frame(&s, want, sizeof(want));
}

Test(builder, sctp_pad_chunk_crc32c_exact)
{
	struct mm_packet_spec s = { .src = addr("192.0.2.1"), .dst = addr("192.0.2.2"),
				    .sport = 5000, .dport = 6000, .proto = 132, .payload_len = 8 };
	static const uint8_t want[] = {
		0x02, 0x00, 0xc0, 0x00, 0x02, 0x02, 0x02, 0x00, 0xc0, 0x00, 0x02, 0x01, 0x08, 0x00,
		/* IPv4: total length 40, DF, TTL 64, SCTP (132), checksum 0xb64e */
		0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x84, 0xb6, 0x4e,
		0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00, 0x02, 0x02,
		/* SCTP: 5000 -> 6000, verification tag 0x13881770, CRC-32C 0xabb9fc51 little-endian */
		0x13, 0x88, 0x17, 0x70, 0x13, 0x88, 0x17, 0x70, 0x51, 0xfc, 0xb9, 0xab,
		/* PAD chunk (type 0x84), flags 0, length 8, four filler bytes */
		0x84, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
	};

	assert_frame(&s, want, sizeof(want));
}

Test(builder, icmpv6_checksum_covers_pseudo_header)
{
	struct mm_packet_spec s = { .src = addr("2001:db8::1"), .dst = addr("2001:db8::2"), .sport = 7,
				    .dport = 9, .proto = 58, .icmp_type = 128, .payload_len = 16 };
	uint8_t buf[128];
	size_t len = mm_packet_build(&s, buf, sizeof(buf));

	cr_assert_eq(len, 14 + 40 + 8 + 16);
	cr_assert_eq(buf[14 + 4], 0x00);
	cr_assert_eq(buf[14 + 5], 24, "IPv6 payload length is ICMPv6 header + payload");
	cr_assert_eq(buf[14 + 6], 58);
	/* echo request, code 0, checksum 0x2428 (pseudo-header included), id 7, seq 9 */
	cr_assert_eq(buf[54], 0x80);
	cr_assert_eq(buf[56], 0x24);
	cr_assert_eq(buf[57], 0x28);
	cr_assert_eq(buf[59], 7);
	cr_assert_eq(buf[61], 9);
}

Test(builder, refuses_what_cannot_be_built)
{
	struct mm_packet_spec s = { .src = addr("192.0.2.1"), .dst = addr("192.0.2.2"), .proto = 6 };
	static uint8_t big[70000];
	uint8_t buf[128];

	cr_assert_eq(mm_packet_build(&s, buf, 53), 0, "54-byte frame into 53 bytes");
	cr_assert_eq(mm_packet_build(&s, buf, 54), 54);
	s.dst = addr("2001:db8::2");
	cr_assert_eq(mm_packet_build(&s, buf, sizeof(buf)), 0, "IPv4 source with IPv6 destination");
	s.dst = addr("192.0.2.2");
	s.payload_len = 65535 - 40 + 1; /* IPv4 total length would be 65536 */
	cr_assert_eq(mm_packet_build(&s, big, sizeof(big)), 0);
	s.payload_len = 65535 - 40;
	cr_assert_eq(mm_packet_build(&s, big, sizeof(big)), 14 + 65535);
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4); /* the writer uses host byte order, as the magic announces */
	return v;
}

Test(pcap_writer, header_records_and_snaplen)
{
	char *dir = tu_tmpdir(), *path, *data;
	struct mm_pcap_writer *w;
	uint8_t frame[200];
	size_t len;

	cr_assert(asprintf(&path, "%s/w.pcap", dir) > 0);
	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)i;
	cr_assert_eq(mm_pcap_writer_open(&w, path, 1, 96), 0);
	cr_assert_eq(mm_pcap_writer_write(w, 1700000000123456789ull, frame, 200, 1514), 0);
	cr_assert_eq(mm_pcap_writer_write(w, 1700000001000000000ull, frame, 60, 60), 0);
	cr_assert_neq(mm_pcap_writer_write(w, 1, frame, 61, 60), 0, "caplen above wire length");
	cr_assert_eq(mm_pcap_writer_close(w), 0);

	data = tu_read_file(path, &len);
	cr_assert_not_null(data);
	cr_assert_eq(len, 24 + 16 + 96 + 16 + 60);
	const uint8_t *p = (const uint8_t *)data;
	cr_assert_eq(rd32(p), 0xa1b23c4du, "nanosecond magic");
	cr_assert_eq(p[4] | p[5] << 8, 2, "major version (host order; this test assumes little endian)");
	cr_assert_eq(rd32(p + 16), 96, "snaplen");
	cr_assert_eq(rd32(p + 20), 1, "linktype Ethernet");
	cr_assert_eq(rd32(p + 24), 1700000000u, "seconds");
	cr_assert_eq(rd32(p + 28), 123456789u, "nanoseconds");
	cr_assert_eq(rd32(p + 32), 96, "captured length cut to snaplen");
	cr_assert_eq(rd32(p + 36), 1514, "wire length kept");
	cr_assert_eq(p[40 + 95], 95, "first 96 frame bytes copied");
	cr_assert_eq(rd32(p + 40 + 96 + 8), 60);
	free(data);
	free(path);
	free(dir);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

Test(pcap_writer, publishes_only_on_close)
{
	char *dir = tu_tmpdir(), *path;
	struct mm_pcap_writer *w;
	struct stat st;

	cr_assert(asprintf(&path, "%s/p.pcap", dir) > 0);
	cr_assert_eq(mm_pcap_writer_open(&w, path, 1, 128), 0);
	cr_assert_neq(stat(path, &st), 0, "no file under the final name before close");
	cr_assert_eq(mm_pcap_writer_close(w), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 24);
	cr_assert_eq(count_entries(dir), 1, "temporary file left behind");

	cr_assert_eq(mm_pcap_writer_open(&w, path, 1, 128), 0);
	mm_pcap_writer_discard(w);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_size, 24, "discard leaves the old file alone");
	cr_assert_eq(count_entries(dir), 1, "discard removes its temporary file");
	free(path);
	free(dir);
}

Test(pcap_writer, error_names_the_path)
{
	struct mm_pcap_writer *w;
	int rc = mm_pcap_writer_open(&w, "/nonexistent-mamori-dir/x.pcap", 1, 96);

	cr_assert_eq(rc, MM_EIO);
	cr_assert_null(w);
	cr_assert(strstr(mm_last_error(), "/nonexistent-mamori-dir/x.pcap"), "message: %s", mm_last_error());
	cr_assert_eq(mm_pcap_writer_open(&w, "/tmp/x.pcap", 1, 0), MM_EINVAL, "snaplen 0");
}

static void small_config(struct mm_synth_config *cfg)
{
	mm_synth_config_default(cfg);
	cfg->n_flows = 1500;
	cfg->n_packets = 25000;
	cfg->concurrency = 200;
	cfg->ipv6_share = 0.3;
	cfg->duration_s = 120;
}

static char *synth_to(const char *dir, const char *name, const struct mm_synth_config *cfg,
		      struct mm_synth_summary *sum)
{
	char *path;

	cr_assert(asprintf(&path, "%s/%s", dir, name) > 0);
	cr_assert_eq(mm_synth_write_pcap(cfg, path, sum), 0, "synth: %s", mm_last_error());
	return path;
}

Test(synth, same_seed_same_bytes_other_seed_other_bytes)
{
	char *dir = tu_tmpdir(), *a, *b, *c, *da, *db, *dc;
	struct mm_synth_config cfg;
	struct mm_synth_summary sa, sb, sc;
	size_t la, lb, lc;

	small_config(&cfg);
	a = synth_to(dir, "a.pcap", &cfg, &sa);
	b = synth_to(dir, "b.pcap", &cfg, &sb);
	cfg.seed = 2;
	c = synth_to(dir, "c.pcap", &cfg, &sc);
	da = tu_read_file(a, &la);
	db = tu_read_file(b, &lb);
	dc = tu_read_file(c, &lc);
	cr_assert_eq(la, lb);
	cr_assert(memcmp(da, db, la) == 0, "same config gave different files");
	cr_assert(memcmp(&sa, &sb, sizeof(sa)) == 0);
	cr_assert(la != lc || memcmp(da, dc, la) != 0, "seed 2 gave the file of seed 1");
	free(da);
	free(db);
	free(dc);
	free(a);
	free(b);
	free(c);
	free(dir);
}

/* One packet as the test reads it back from the file, with its flow key normalised. */
struct rec {
	uint8_t lo[16], hi[16]; /* addresses, lower first */
	uint16_t lo_port, hi_port;
	uint8_t proto;
	uint64_t ts;
};

static bool same_key(const struct rec *a, const struct rec *b)
{
	return memcmp(a, b, offsetof(struct rec, ts)) == 0;
}

static int rec_cmp(const void *pa, const void *pb)
{
	const struct rec *a = pa, *b = pb;
	int c = memcmp(a, b, offsetof(struct rec, ts));

	if (c)
		return c;
	return a->ts < b->ts ? -1 : a->ts > b->ts;
}

/*
 * Decodes the Ethernet/802.1Q/IP/L4 headers the generator writes (the test
 * knows the layout; it does not use the meter). Returns the IP length.
 */
static uint32_t read_packet(const uint8_t *f, uint32_t caplen, struct rec *r)
{
	size_t off = 12;
	uint16_t et = (uint16_t)(f[off] << 8 | f[off + 1]);
	const uint8_t *src, *dst, *l4;
	uint32_t ip_len;
	size_t alen;

	if (et == 0x8100) {
		off += 4;
		et = (uint16_t)(f[off] << 8 | f[off + 1]);
	}
	off += 2;
	cr_assert(et == 0x0800 || et == 0x86dd, "ethertype %04x", et);
	if (et == 0x0800) {
		cr_assert_geq(caplen, off + 24);
		ip_len = (uint32_t)(f[off + 2] << 8 | f[off + 3]);
		r->proto = f[off + 9];
		src = f + off + 12;
		dst = f + off + 16;
		alen = 4;
		l4 = f + off + 20;
	} else {
		cr_assert_geq(caplen, off + 44);
		ip_len = 40 + (uint32_t)(f[off + 4] << 8 | f[off + 5]);
		r->proto = f[off + 6];
		src = f + off + 8;
		dst = f + off + 24;
		alen = 16;
		l4 = f + off + 40;
	}
	uint16_t sp = 0, dp = 0;
	if (r->proto == 6 || r->proto == 17) {
		sp = (uint16_t)(l4[0] << 8 | l4[1]);
		dp = (uint16_t)(l4[2] << 8 | l4[3]);
	}
	memset(r->lo, 0, 16);
	memset(r->hi, 0, 16);
	bool swap = memcmp(src, dst, alen) > 0 || (memcmp(src, dst, alen) == 0 && sp > dp);
	memcpy(r->lo, swap ? dst : src, alen);
	memcpy(r->hi, swap ? src : dst, alen);
	r->lo_port = swap ? dp : sp;
	r->hi_port = swap ? sp : dp;
	return ip_len;
}

Test(synth, summary_is_what_the_file_holds)
{
	char *dir = tu_tmpdir(), *path, *data;
	struct mm_synth_config cfg;
	struct mm_synth_summary sum;
	size_t len, off = 24, n = 0, flows = 0, n_tcp = 0, n_udp = 0, n_icmp = 0;
	uint64_t bytes = 0, prev_ts = 0, max_gap = 0, max_span = 0, first = 0;
	struct rec *recs;

	small_config(&cfg);
	path = synth_to(dir, "s.pcap", &cfg, &sum);
	data = tu_read_file(path, &len);
	cr_assert_not_null(data);
	recs = calloc(sum.packets + 1, sizeof(*recs));
	while (off + 16 <= len) {
		const uint8_t *h = (const uint8_t *)data + off;
		uint32_t caplen = rd32(h + 8), wire = rd32(h + 12);
		uint64_t ts = rd32(h) * 1000000000ull + rd32(h + 4);

		cr_assert_leq(caplen, cfg.snaplen);
		cr_assert_leq(off + 16 + caplen, len, "record runs past the end");
		cr_assert_lt(n, sum.packets, "more records than the summary says");
		cr_assert_geq(ts, prev_ts, "timestamps go backwards at record %zu", n);
		prev_ts = ts;
		recs[n].ts = ts;
		uint32_t ip_len = read_packet(h + 16, caplen, &recs[n]);
		cr_assert(wire == ip_len + 14 || wire == ip_len + 18, "wire %u ip %u", wire, ip_len);
		bytes += ip_len;
		off += 16 + caplen;
		n++;
	}
	cr_assert_eq(off, len, "trailing bytes");
	cr_assert_eq(n, sum.packets);
	cr_assert_eq(bytes, sum.bytes);

	/* Distinct keys are flows only if no gap inside one reaches a 60 s idle timeout. */
	qsort(recs, n, sizeof(*recs), rec_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || !same_key(&recs[i - 1], &recs[i])) {
			flows++;
			first = recs[i].ts;
			n_tcp += recs[i].proto == 6;
			n_udp += recs[i].proto == 17;
			n_icmp += recs[i].proto == 1 || recs[i].proto == 58;
			continue;
		}
		if (recs[i].ts - recs[i - 1].ts > max_gap)
			max_gap = recs[i].ts - recs[i - 1].ts;
		if (recs[i].ts - first > max_span)
			max_span = recs[i].ts - first;
	}
	cr_assert_eq(flows, sum.flows);
	cr_assert_eq(n_tcp, sum.tcp_flows);
	cr_assert_eq(n_udp, sum.udp_flows);
	cr_assert_eq(n_icmp, sum.icmp_flows);
	cr_assert_lt(max_gap, 60 * 1000000000ull, "gap of %llu ns inside a flow", (unsigned long long)max_gap);
	cr_assert_lt(max_span, 1800 * 1000000000ull, "a flow outlives the active timeout");
	free(recs);
	free(data);
	free(path);
	free(dir);
}

Test(synth, conversations_overlap_and_packets_track_the_target)
{
	char *dir = tu_tmpdir(), *path;
	struct mm_synth_config cfg;
	struct mm_synth_summary sum;

	small_config(&cfg);
	path = synth_to(dir, "o.pcap", &cfg, &sum);
	cr_assert_eq(sum.flows, cfg.n_flows);
	cr_assert_geq(sum.packets, cfg.n_packets * 85 / 100, "packets %llu", (unsigned long long)sum.packets);
	cr_assert_leq(sum.packets, cfg.n_packets * 115 / 100, "packets %llu", (unsigned long long)sum.packets);
	cr_assert_gt(sum.tcp_flows, sum.flows / 3);
	cr_assert_gt(sum.udp_flows, sum.flows / 6);
	cr_assert_gt(sum.icmp_flows, 0);
	/* Mean IP packet size between small ACKs and full segments. */
	cr_assert_gt(sum.bytes / sum.packets, 300);
	cr_assert_lt(sum.bytes / sum.packets, 1300);
	free(path);
	free(dir);
}

Test(synth, refuses_bad_config_without_a_file)
{
	char *dir = tu_tmpdir(), *path;
	struct mm_synth_config cfg;
	struct mm_synth_summary sum;
	struct stat st;

	cr_assert(asprintf(&path, "%s/bad.pcap", dir) > 0);
	small_config(&cfg);
	cfg.concurrency = 0;
	cr_assert_eq(mm_synth_write_pcap(&cfg, path, &sum), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "concurrency"), "%s", mm_last_error());
	small_config(&cfg);
	cfg.snaplen = 40;
	cr_assert_eq(mm_synth_write_pcap(&cfg, path, &sum), MM_EINVAL);
	small_config(&cfg);
	cfg.ipv6_share = 1.5;
	cr_assert_eq(mm_synth_write_pcap(&cfg, path, &sum), MM_EINVAL);
	small_config(&cfg);
	cfg.n_flows = 0;
	cr_assert_eq(mm_synth_write_pcap(&cfg, path, &sum), MM_EINVAL);
	cr_assert_neq(stat(path, &st), 0);
	cr_assert_eq(sum.packets, 0);
	free(path);
	free(dir);
}

static bool have_tshark(void)
{
	const char *argv[] = { "tshark", "--version", NULL };

	return tu_run(argv, NULL, NULL, NULL) == 0;
}

/*
 * Every frame must decode with good IP/TCP/UDP/ICMP/ICMPv6 checksums and no
 * error-level expert info. Client ports are decoded as plain data: the zero
 * payload is not meant to be whatever protocol happens to own such a port.
 */
Test(synth, tshark_decodes_every_packet_cleanly, .timeout = 120)
{
	char *dir, *path, *out = NULL, *line, *save = NULL;
	struct mm_synth_config cfg;
	struct mm_synth_summary sum;
	uint64_t lines = 0;

	if (!have_tshark())
		cr_skip_test("tshark is not installed (scripts/bootstrap installs it)");
	dir = tu_tmpdir();
	mm_synth_config_default(&cfg);
	cfg.n_flows = 400;
	cfg.n_packets = 5000;
	cfg.ipv6_share = 0.4;
	cfg.snaplen = 65535; /* whole packets, so checksums can be verified */
	path = synth_to(dir, "t.pcap", &cfg, &sum);
	const char *argv[] = { "tshark", "-n", "-r", path, "-o", "ip.check_checksum:TRUE",
			       "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
			       "-d", "udp.port==1024-65535,data", "-d", "tcp.port==1024-65535,data",
			       "-T", "fields", "-E", "separator=/t", "-e", "_ws.expert.severity",
			       "-e", "ip.checksum.status", "-e", "tcp.checksum.status",
			       "-e", "udp.checksum.status", "-e", "icmp.checksum.status",
			       "-e", "icmpv6.checksum.status", NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, NULL), 0);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int good = 0;

		lines++;
		/* Severity 8388608 is PI_ERROR (malformed); checksum status 0 is "bad", 1 "good". */
		cr_assert(!strstr(line, "8388608"), "frame %llu has an error: %s", (unsigned long long)lines, line);
		for (const char *p = line; *p; p++) {
			bool starts = p == line || p[-1] == '\t' || p[-1] == ',';
			bool ends = p[1] == '\0' || p[1] == '\t' || p[1] == ',';
			if (starts && ends && *p == '0')
				cr_assert_fail("frame %llu has a bad checksum: %s", (unsigned long long)lines, line);
			if (starts && ends && *p == '1')
				good++;
		}
		cr_assert_gt(good, 0, "frame %llu: no checksum verified: %s", (unsigned long long)lines, line);
	}
	cr_assert_eq(lines, sum.packets, "tshark read %llu frames", (unsigned long long)lines);
	free(out);
	free(path);
	free(dir);
}

Test(cli, synth_matches_the_library_and_reports_errors, .timeout = 60)
{
	char *dir = tu_tmpdir(), *path, *lib_path, *out = NULL, *err = NULL, *a, *b;
	struct mm_synth_config cfg;
	struct mm_synth_summary sum;
	size_t la, lb;
	char want[64];

	small_config(&cfg);
	cfg.seed = 9;
	lib_path = synth_to(dir, "lib.pcap", &cfg, &sum);
	cr_assert(asprintf(&path, "%s/cli.pcap", dir) > 0);
	const char *argv[] = { tu_mamori_bin(), "synth", "--seed", "9", "--flows", "1500",
			       "--packets", "25000", "--concurrency", "200", "--ipv6-share", "0.3",
			       "--duration", "2m", "-o", path, NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "stderr: %s", err);
	snprintf(want, sizeof(want), "\npackets %llu\n", (unsigned long long)sum.packets);
	cr_assert(strstr(out, want), "output: %s", out);
	snprintf(want, sizeof(want), "\nflows %llu\n", (unsigned long long)sum.flows);
	cr_assert(strstr(out, want), "output: %s", out);
	a = tu_read_file(lib_path, &la);
	b = tu_read_file(path, &lb);
	cr_assert(la == lb && memcmp(a, b, la) == 0, "CLI and library files differ");
	free(a);
	free(b);
	free(out);
	free(err);

	const char *help[] = { tu_mamori_bin(), "synth", "--help", NULL };
	cr_assert_eq(tu_run(help, NULL, &out, NULL), 0);
	cr_assert(strstr(out, "SYNOPSIS") && strstr(out, "--concurrency") && strstr(out, "EXIT STATUS"));
	free(out);

	const char *bad_num[] = { tu_mamori_bin(), "synth", "--flows", "many", "-o", path, NULL };
	cr_assert_eq(tu_run(bad_num, NULL, NULL, &err), 1);
	cr_assert(strstr(err, "--flows"), "%s", err);
	free(err);

	const char *no_out[] = { tu_mamori_bin(), "synth", NULL };
	cr_assert_eq(tu_run(no_out, NULL, NULL, NULL), 1);

	const char *bad_dir[] = { tu_mamori_bin(), "synth", "--flows", "10", "-o",
				  "/nonexistent-mamori-dir/x.pcap", NULL };
	cr_assert_eq(tu_run(bad_dir, NULL, NULL, &err), 3);
	cr_assert(strstr(err, "/nonexistent-mamori-dir/x.pcap"), "%s", err);
	free(err);
	free(lib_path);
	free(path);
	free(dir);
}
