/*
 * Automatic selection, proven end to end: traffic and export records that
 * carry content (HTTP URLs, Host headers and bodies, SMTP envelopes, DNS
 * queries and TXT answers, ICMP payloads, IPv6 payloads, and IPFIX/NetFlow
 * elements holding URLs, host names, payload sections, user names and
 * vendor strings) all carry one marker. They are metered (with inline
 * detection, so alerts are written too), collected, stored, queried and shown in every output format, with and without a
 * jurisdiction; then every byte the commands wrote (the data directories,
 * output files, forwarded IPFIX datagrams, standard output and error) is
 * searched for the marker, raw, in hex and in base64. There must be no hit.
 *
 * Positive controls keep the test honest: the marker is found in the
 * inputs by the same search, the flows did reach the store, and the
 * decoder counted the content fields it discarded. Any new path that lets
 * content through (a payload column, an element rendered, a log line
 * quoting packet bytes) makes this test fail.
 */
#include "mamori/synth.h"

#include "test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MARKER "MMCANARY"

/* ---- the search ---- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(const uint8_t *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = b64_alphabet[v >> 6 & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	out[o] = '\0';
}

/* The marker as raw text, lower and upper hex, and base64 at each of the three alignments. */
static char needles[8][64];
static size_t n_needles;

static void make_needles(void)
{
	const char *m = MARKER;
	size_t len = strlen(m);
	uint8_t shifted[32];

	n_needles = 0;
	strcpy(needles[n_needles++], m);
	for (int upper = 0; upper < 2; upper++, n_needles++)
		for (size_t i = 0; i < len; i++)
			sprintf(needles[n_needles] + 2 * i, upper ? "%02X" : "%02x", (uint8_t)m[i]);
	for (size_t pad = 0; pad < 3; pad++) {
		char enc[64];
		/* Bytes before the marker change the first group; keep the groups that are marker only. */
		memset(shifted, 'x', pad);
		memcpy(shifted + pad, m, len);
		base64(shifted, pad + len, enc);
		size_t skip = pad ? 4 : 0;
		snprintf(needles[n_needles++], sizeof(needles[0]), "%.8s", enc + skip);
	}
}

static size_t count_hits(const char *data, size_t len)
{
	size_t hits = 0;

	for (size_t k = 0; k < n_needles; k++) {
		size_t nl = strlen(needles[k]);
		for (const char *p = data; p && (size_t)(p - data) + nl <= len;) {
			p = memmem(p, len - (size_t)(p - data), needles[k], nl);
			if (p) {
				hits++;
				p++;
			}
		}
	}
	return hits;
}

static size_t tree_hits, tree_files;
static char hit_paths[2048];

static int scan_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	size_t len, h;
	char *data;

	(void)st;
	(void)ftw;
	if (type != FTW_F)
		return 0;
	data = tu_read_file(path, &len);
	cr_assert(data, "cannot read %s", path);
	tree_files++;
	h = count_hits(data, len);
	if (h && strlen(hit_paths) + strlen(path) + 2 < sizeof(hit_paths)) {
		strcat(hit_paths, path);
		strcat(hit_paths, " ");
	}
	tree_hits += h;
	free(data);
	return 0;
}

static size_t scan_tree(const char *dir, size_t *files)
{
	tree_hits = tree_files = 0;
	hit_paths[0] = '\0';
	cr_assert_eq(nftw(dir, scan_one, 16, FTW_PHYS), 0, "cannot walk %s", dir);
	*files = tree_files;
	return tree_hits;
}

/* ---- the adversarial capture ---- */

static void put_packet(struct mm_pcap_writer *w, uint64_t *ts, struct mm_packet_spec spec, const char *payload)
{
	uint8_t frame[2048];
	size_t plen = payload ? strlen(payload) : 0, len;

	spec.payload_len = (uint16_t)plen;
	spec.payload = (const uint8_t *)payload;
	len = mm_packet_build(&spec, frame, sizeof(frame));
	cr_assert_gt(len, plen);
	cr_assert_eq(mm_pcap_writer_write(w, *ts, frame, (uint32_t)len, (uint32_t)len), 0);
	*ts += 1000000; /* 1 ms */
}

static struct mm_packet_spec tcp(const char *src, const char *dst, uint16_t sport, uint16_t dport, uint8_t flags)
{
	struct mm_packet_spec s = { .proto = 6, .sport = sport, .dport = dport, .tcp_flags = flags };
	cr_assert_eq(mm_addr_parse(&s.src, src), 0);
	cr_assert_eq(mm_addr_parse(&s.dst, dst), 0);
	return s;
}

static struct mm_packet_spec reverse(struct mm_packet_spec s, uint8_t flags)
{
	struct mm_addr a = s.src;
	uint16_t p = s.sport;

	s.src = s.dst;
	s.dst = a;
	s.sport = s.dport;
	s.dport = p;
	s.tcp_flags = flags;
	return s;
}

/* A TCP conversation: handshake, a request and a reply with content, close. */
static void conversation(struct mm_pcap_writer *w, uint64_t *ts, struct mm_packet_spec c, const char *request,
			 const char *reply)
{
	put_packet(w, ts, c, NULL);                     /* SYN is in c */
	put_packet(w, ts, reverse(c, 0x12), NULL);      /* SYN ACK */
	c.tcp_flags = 0x10;
	put_packet(w, ts, c, NULL);                     /* ACK */
	c.tcp_flags = 0x18;
	put_packet(w, ts, c, request);
	put_packet(w, ts, reverse(c, 0x18), reply);
	c.tcp_flags = 0x11;
	put_packet(w, ts, c, NULL);
	put_packet(w, ts, reverse(c, 0x11), NULL);
}

static void write_capture(const char *path)
{
	struct mm_pcap_writer *w;
	uint64_t ts = 1767225600ull * 1000000000ull; /* 2026-01-01 */
	static const char dns_query[] = "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
					"\x0c" MARKER "-dns\x07" "example\x00\x00\x10\x00\x01";
	static const char dns_answer[] = "\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
					 "\x0c" MARKER "-dns\x07" "example\x00\x00\x10\x00\x01"
					 "\xc0\x0c\x00\x10\x00\x01\x00\x00\x00\x3c\x00\x0e\x0d" MARKER "-txt";

	cr_assert_eq(mm_pcap_writer_open(&w, path, 1, 65535), 0);
	conversation(w, &ts, tcp("10.1.1.10", "198.51.100.80", 40000, 80, 0x02),
		     "GET /" MARKER "-url HTTP/1.1\r\nHost: " MARKER "-host.example\r\n\r\n",
		     "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" MARKER "-body");
	conversation(w, &ts, tcp("10.1.1.11", "198.51.100.25", 40001, 25, 0x02),
		     "MAIL FROM:<" MARKER "-smtp@example.org>\r\n", "250 2.1.0 " MARKER "-smtp-ok\r\n");
	conversation(w, &ts, tcp("2001:db8:1::10", "2001:db8:99::80", 40002, 8080, 0x02),
		     "POST /" MARKER "-v6 HTTP/1.1\r\n\r\n", MARKER "-v6-reply");

	struct mm_packet_spec dns = { .proto = 17, .sport = 5353, .dport = 53 };
	cr_assert_eq(mm_addr_parse(&dns.src, "10.1.1.12"), 0);
	cr_assert_eq(mm_addr_parse(&dns.dst, "198.51.100.53"), 0);
	{
		/* DNS messages hold NULs: write them by length, not as strings. */
		uint8_t frame[512];
		size_t len;

		dns.payload_len = sizeof(dns_query) - 1;
		dns.payload = (const uint8_t *)dns_query;
		len = mm_packet_build(&dns, frame, sizeof(frame));
		cr_assert_eq(mm_pcap_writer_write(w, ts, frame, (uint32_t)len, (uint32_t)len), 0);
		ts += 1000000;
		dns = reverse(dns, 0);
		dns.payload_len = sizeof(dns_answer) - 1;
		dns.payload = (const uint8_t *)dns_answer;
		len = mm_packet_build(&dns, frame, sizeof(frame));
		cr_assert_eq(mm_pcap_writer_write(w, ts, frame, (uint32_t)len, (uint32_t)len), 0);
		ts += 1000000;
	}

	struct mm_packet_spec echo = { .proto = 1, .icmp_type = 8, .sport = 7, .dport = 1 };
	cr_assert_eq(mm_addr_parse(&echo.src, "10.1.1.13"), 0);
	cr_assert_eq(mm_addr_parse(&echo.dst, "198.51.100.1"), 0);
	put_packet(w, &ts, echo, MARKER "-icmp-echo");
	echo = reverse(echo, 0);
	echo.icmp_type = 0;
	put_packet(w, &ts, echo, MARKER "-icmp-reply");
	cr_assert_eq(mm_pcap_writer_close(w), 0);
}

/* ---- the adversarial export stream ---- */

static uint8_t *put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
	return put16(put16(p, (uint16_t)(v >> 16)), (uint16_t)v);
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
	return put32(put32(p, (uint32_t)(v >> 32)), (uint32_t)v);
}

static uint8_t *put_varlen(uint8_t *p, const char *text)
{
	size_t n = strlen(text);

	*p++ = (uint8_t)n;
	memcpy(p, text, n);
	return p + n;
}

static uint8_t *put_fixed(uint8_t *p, const char *text, size_t width)
{
	memset(p, 0, width);
	memcpy(p, text, strlen(text) < width ? strlen(text) : width);
	return p + width;
}

/* IPFIX: a template with flow keys and counters plus content elements, and one record. */
static size_t build_ipfix(uint8_t *msg)
{
	static const struct { uint16_t id; uint16_t len; uint32_t pen; } fields[] = {
		{ 8, 4, 0 }, { 12, 4, 0 }, { 7, 2, 0 }, { 11, 2, 0 }, { 4, 1, 0 },
		{ 1, 8, 0 }, { 2, 8, 0 }, { 152, 8, 0 }, { 153, 8, 0 },
		{ 460, 0xffff, 0 },   /* httpRequestHost */
		{ 461, 0xffff, 0 },   /* httpRequestTarget */
		{ 314, 0xffff, 0 },   /* ipPayloadPacketSection */
		{ 371, 0xffff, 0 },   /* userName */
		{ 468, 0xffff, 0 },   /* httpUserAgent */
		{ 82, 0xffff, 0 },    /* interfaceName: metadata, shown */
		{ 100, 0xffff, 35632 }, /* a vendor's DNS query name */
		{ 101, 32, 9 },         /* a vendor's fixed-width URL field */
	};
	const size_t n = sizeof(fields) / sizeof(fields[0]);
	uint8_t *p = msg + 16, *set;
	uint64_t t0 = 1767225600000ull;

	set = p;
	p = put16(put16(p, 2), 0); /* template set, length later */
	p = put16(put16(p, 256), (uint16_t)n);
	for (size_t i = 0; i < n; i++) {
		p = put16(p, (uint16_t)(fields[i].id | (fields[i].pen ? 0x8000 : 0)));
		p = put16(p, fields[i].len);
		if (fields[i].pen)
			p = put32(p, fields[i].pen);
	}
	put16(set + 2, (uint16_t)(p - set));
	set = p;
	p = put16(put16(p, 256), 0);
	p = put32(p, 0x0a010114);   /* 10.1.1.20 */
	p = put32(p, 0xc6336450);   /* 198.51.100.80 */
	p = put16(put16(p, 41000), 443);
	*p++ = 6;
	p = put64(put64(p, 123456), 100);
	p = put64(put64(p, t0), t0 + 5000);
	p = put_varlen(p, MARKER "-ipfix-host.example");
	p = put_varlen(p, "/" MARKER "-ipfix-target?q=1");
	p = put_varlen(p, "GET /" MARKER "-ipfix-payload");
	p = put_varlen(p, MARKER "-ipfix-user");
	p = put_varlen(p, MARKER "-ipfix-agent/1.0");
	p = put_varlen(p, "eth0");
	p = put_varlen(p, MARKER "-ipfix-vendor-dns.example");
	p = put_fixed(p, MARKER "-ipfix-vendor-url", 32);
	put16(set + 2, (uint16_t)(p - set));
	put16(put16(msg, 10), (uint16_t)(p - msg));
	put32(put32(put32(msg + 4, 1767225610), 1), 7); /* export time, sequence, domain */
	return (size_t)(p - msg);
}

/* NetFlow v9: the same idea with fixed-width content fields (v9 has no variable length). */
static size_t build_v9(uint8_t *msg)
{
	static const uint16_t fields[][2] = {
		{ 8, 4 }, { 12, 4 }, { 7, 2 }, { 11, 2 }, { 4, 1 }, { 1, 4 }, { 2, 4 }, { 22, 4 }, { 21, 4 },
		{ 460, 32 }, { 461, 32 }, { 371, 32 },
	};
	const size_t n = sizeof(fields) / sizeof(fields[0]);
	uint8_t *p = msg + 20, *set;

	set = p;
	p = put16(put16(p, 0), 0);
	p = put16(put16(p, 300), (uint16_t)n);
	for (size_t i = 0; i < n; i++)
		p = put16(put16(p, fields[i][0]), fields[i][1]);
	put16(set + 2, (uint16_t)(p - set));
	set = p;
	p = put16(put16(p, 300), 0);
	p = put32(p, 0x0a010115);   /* 10.1.1.21 */
	p = put32(p, 0xc6336451);   /* 198.51.100.81 */
	p = put16(put16(p, 41001), 80);
	*p++ = 6;
	p = put32(put32(p, 4321), 9);
	p = put32(put32(p, 1000), 4000);
	p = put_fixed(p, MARKER "-v9-host", 32);
	p = put_fixed(p, "/" MARKER "-v9-target", 32);
	p = put_fixed(p, MARKER "-v9-user", 32);
	while ((p - set) % 4)
		*p++ = 0;
	put16(set + 2, (uint16_t)(p - set));
	put16(put16(msg, 9), 2);
	put32(put32(put32(put32(msg + 4, 10000), 1767225610), 1), 7);
	return (size_t)(p - msg);
}

/* ---- running mamori ---- */

struct run_log {
	char *all; /* every stdout and stderr, concatenated */
	size_t len;
};

static void log_append(struct run_log *log, const char *text)
{
	size_t n = text ? strlen(text) : 0;

	log->all = realloc(log->all, log->len + n + 1);
	cr_assert(log->all);
	memcpy(log->all + log->len, text ? text : "", n);
	log->len += n;
	log->all[log->len] = '\0';
}

/* Runs mamori with args (NULL-terminated); its output joins the log. Returns stdout (caller frees). */
static char *mamori(struct run_log *log, const char *const *args)
{
	const char *argv[40] = { tu_mamori_bin() };
	char *out = NULL, *err = NULL;
	size_t i;
	int rc;

	for (i = 0; args[i]; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	rc = tu_run(argv, NULL, &out, &err);
	cr_assert_eq(rc, 0, "mamori %s %s failed (%d): %s", args[0], args[1] ? args[1] : "", rc, err);
	log_append(log, out);
	log_append(log, err);
	free(err);
	return out;
}

static void mamori_quiet(struct run_log *log, const char *const *args)
{
	free(mamori(log, args));
}

static int udp_receiver(uint16_t *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);

	cr_assert(fd >= 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Saves every datagram waiting on fd into dir/datagram-N; returns how many. */
static size_t drain_datagrams(int fd, const char *dir)
{
	uint8_t buf[65536];
	size_t n = 0;
	ssize_t len;

	while ((len = recv(fd, buf, sizeof(buf), 0)) > 0) {
		char path[2048];
		snprintf(path, sizeof(path), "%s/datagram-%zu", dir, n++);
		cr_assert_eq(tu_write_file(path, buf, (size_t)len), 0);
	}
	return n;
}

static uint64_t stat_value(const char *text, const char *key)
{
	const char *p = text ? strstr(text, key) : NULL;

	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

Test(canary, no_content_reaches_any_output, .timeout = 240)
{
	char *root = tu_tmpdir(), in[256], work[256], pcap[1024], v9[1024], ipfix[1024], conf[1024];
	char store_a[1024], store_b[1024], store_c[1024], out_dir[1024], path[2048], portarg[64];
	uint8_t msg[4096];
	struct run_log log = { 0 };
	size_t files, len;
	uint16_t port;
	int fd;

	make_needles();
	snprintf(in, sizeof(in), "%s/in", root);
	snprintf(work, sizeof(work), "%s/work", root);
	cr_assert_eq(mkdir(in, 0700), 0);
	cr_assert_eq(mkdir(work, 0700), 0);
	snprintf(pcap, sizeof(pcap), "%s/canary.pcap", in);
	snprintf(v9, sizeof(v9), "%s/v9.msg", in);
	snprintf(ipfix, sizeof(ipfix), "%s/ipfix.msg", in);
	snprintf(conf, sizeof(conf), "%s/mamori.conf", in);
	snprintf(store_a, sizeof(store_a), "%s/store-lab", work);
	snprintf(store_b, sizeof(store_b), "%s/store-jurisdiction", work);
	snprintf(store_c, sizeof(store_c), "%s/store-collect", work);
	snprintf(out_dir, sizeof(out_dir), "%s/outputs", work);
	cr_assert_eq(mkdir(out_dir, 0700), 0);
	write_capture(pcap);
	len = build_v9(msg);
	cr_assert_eq(tu_write_file(v9, msg, len), 0);
	len = build_ipfix(msg);
	cr_assert_eq(tu_write_file(ipfix, msg, len), 0);
	{
		static const char text[] = "[jurisdiction]\nprefixes = 10.0.0.0/8, 2001:db8:1::/48\n"
					   "[collect]\nrule = sensor=* classes=FD,DF,FF\n";
		cr_assert_eq(tu_write_file(conf, text, sizeof(text) - 1), 0);
	}

	/* Control: the search finds the marker in every input. */
	cr_assert_gt(scan_tree(in, &files), 20, "the marker must be in the inputs");
	cr_assert_eq(files, 4);

	/* Meter: store, every text format, IPFIX export to a local socket. */
	fd = udp_receiver(&port);
	snprintf(portarg, sizeof(portarg), "udp://127.0.0.1:%u", port);
	static const char *const formats[] = { "table", "csv", "ndjson", "zeek" };
	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/meter.%s", out_dir, formats[i]);
		/* --detect: alerts land in the store's alerts/ directory, searched with the rest. */
		mamori_quiet(&log, (const char *const[]){ "meter", "-w", store_a, "--format", formats[i], "-o", path,
							  "--ipfix", portarg, "--detect", pcap, NULL });
	}
	cr_assert_gt(drain_datagrams(fd, out_dir), 0, "the IPFIX export sent nothing");
	close(fd);
	snprintf(path, sizeof(path), "%s/meter-jurisdiction.ndjson", out_dir);
	mamori_quiet(&log, (const char *const[]){ "meter", "--config", conf, "-w", store_b, "--format", "ndjson",
						  "-o", path, pcap, NULL });

	/* Collect: the v9 and IPFIX messages, into a store and as text; ipfix-json shows every field it keeps. */
	char *stats_out = NULL;
	{
		const char *argv[] = { tu_mamori_bin(), "collect", "-w", store_c, "--format", "ndjson", "--read", v9,
				       ipfix, NULL };
		char *err = NULL, *out = NULL;
		cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "%s", err);
		/* v9: host, target, user; IPFIX: host, target, payload section, user, agent
		 * and the two vendor strings (interfaceName is metadata and stays). */
		cr_assert_eq(stat_value(err, "content-fields-discarded="), 3 + 7,
			     "the decoder must count the content fields it discarded: %s", err);
		log_append(&log, out);
		log_append(&log, err);
		free(out);
		stats_out = err;
	}
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/collect.%s", out_dir, formats[i]);
		mamori_quiet(&log, (const char *const[]){ "collect", "--no-store", "--format", formats[i], "-o", path,
							  "--read", v9, ipfix, NULL });
	}
	char *json = mamori(&log, (const char *const[]){ "collect", "--no-store", "--format", "ipfix-json", "--read", v9, ipfix,
							  NULL });
	cr_assert(strstr(json, "interfaceName"), "ipfix-json must still show metadata fields: %s", json);
	free(json);
	snprintf(path, sizeof(path), "%s/collect-jurisdiction.ndjson", out_dir);
	mamori_quiet(&log, (const char *const[]){ "collect", "--config", conf, "-w", store_b, "--format", "ndjson",
						  "-o", path, "--read", v9, ipfix, NULL });

	/* Query every store every way. */
	const char *stores[] = { store_a, store_b, store_c };
	for (size_t s = 0; s < 3; s++) {
		char *stats = mamori(&log, (const char *const[]){ "query", "-R", stores[s], "--stats", NULL });
		free(stats);
		for (size_t i = 0; i < 4; i++)
			mamori_quiet(&log, (const char *const[]){ "query", "-R", stores[s], "--format", formats[i], NULL });
		mamori_quiet(&log, (const char *const[]){ "query", "-R", stores[s], "--top", "10", "srcip,dstip,dstport",
							  "--format", "ndjson", NULL });
		mamori_quiet(&log, (const char *const[]){ "store", "stats", "-R", stores[s], NULL });
		mamori_quiet(&log, (const char *const[]){ "store", "verify", "-R", stores[s], NULL });
	}
	/* The flows did arrive: the lab store has the capture's five conversations (x4 runs). */
	char *count = mamori(&log, (const char *const[]){ "query", "-R", store_a, "--format", "csv", "proto tcp", NULL });
	cr_assert(strstr(count, "198.51.100.80"), "metered flows must be in the store: %s", count);
	free(count);
	count = mamori(&log, (const char *const[]){ "query", "-R", store_c, "--format", "csv", NULL });
	cr_assert(strstr(count, "198.51.100.81") && strstr(count, "198.51.100.80"),
		  "collected flows must be in the store: %s", count);
	free(count);

	/* The search: every file written, and everything printed. */
	size_t hits = scan_tree(work, &files);
	cr_assert_gt(files, 10, "expected the stores and outputs, found %zu files", files);
	cr_assert_eq(hits, 0, "content marker found in: %s", hit_paths);
	cr_assert_eq(count_hits(log.all, log.len), 0, "content marker in a command's output: %s", log.all);
	cr_assert_gt(log.len, 1000);

	free(stats_out);
	free(log.all);
	free(root);
}
