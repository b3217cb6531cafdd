/*
 * Capture sources: the pcap/pcapng reader on files built byte by byte here
 * (both byte orders, every timestamp resolution, every way a record can be
 * corrupt), mm_capture over real files, pipes and BPF filters, the shared
 * third-party captures against tshark's packet counts, and a live capture
 * on loopback when run as root.
 */
#include "mamori/capture.h"
#include "mamori/status.h"
#include "meter/pcap_file.h"
#include "test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <glob.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- byte builder ---- */

struct bytes {
	uint8_t buf[16384];
	size_t len;
	bool big; /* big-endian fields */
};

static void put8(struct bytes *b, uint8_t v)
{
	cr_assert_lt(b->len, sizeof(b->buf), "test file buffer full");
	b->buf[b->len++] = v;
}

static void put16(struct bytes *b, uint16_t v)
{
	put8(b, (uint8_t)(b->big ? v >> 8 : v));
	put8(b, (uint8_t)(b->big ? v : v >> 8));
}

static void put32(struct bytes *b, uint32_t v)
{
	put16(b, (uint16_t)(b->big ? v >> 16 : v));
	put16(b, (uint16_t)(b->big ? v : v >> 16));
}

static void put64(struct bytes *b, uint64_t v)
{
	put32(b, (uint32_t)(b->big ? v >> 32 : v));
	put32(b, (uint32_t)(b->big ? v : v >> 32));
}

static void put_raw(struct bytes *b, const void *p, size_t n)
{
	cr_assert_leq(n, sizeof(b->buf) - b->len, "test file buffer full");
	memcpy(b->buf + b->len, p, n);
	b->len += n;
}

static void patch32(struct bytes *b, size_t at, uint32_t v)
{
	size_t end = b->len;

	b->len = at;
	put32(b, v);
	b->len = end;
}

/* ---- frames used as packet data ---- */

/* Ethernet + IPv4 + UDP 192.0.2.1:12345 -> 198.51.100.2:53, 4 payload bytes. */
static const uint8_t eth_udp[46] = {
	0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, /* dst, src MAC */
	0x08, 0x00,                                     /* ethertype IPv4 */
	0x45, 0x00, 0x00, 0x20,                         /* v4, IHL 5, total length 32 */
	0x00, 0x01, 0x00, 0x00,                         /* id 1, no fragmentation */
	0x40, 0x11, 0x00, 0x00,                         /* TTL 64, proto UDP, checksum */
	192, 0, 2, 1, 198, 51, 100, 2,                  /* src, dst address */
	0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, /* UDP 12345 -> 53, length 12 */
	'm', 'm', '!', '!',                             /* payload */
};
#define RAW_UDP (eth_udp + 14) /* the same datagram without Ethernet: linktype RAW */
#define RAW_UDP_LEN 32u

/* Ethernet + IPv4 + TCP 192.0.2.1:40000 -> 198.51.100.2:80, SYN. */
static const uint8_t eth_tcp[54] = {
	0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, /* dst, src MAC */
	0x08, 0x00,                                     /* ethertype IPv4 */
	0x45, 0x00, 0x00, 0x28,                         /* v4, IHL 5, total length 40 */
	0x00, 0x02, 0x00, 0x00,                         /* id 2 */
	0x40, 0x06, 0x00, 0x00,                         /* TTL 64, proto TCP */
	192, 0, 2, 1, 198, 51, 100, 2,                  /* src, dst address */
	0x9c, 0x40, 0x00, 0x50,                         /* ports 40000 -> 80 */
	0, 0, 0, 1, 0, 0, 0, 0,                         /* seq 1, ack 0 */
	0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,             /* offset 5, SYN, window, csum, urg */
};

/* ---- classic pcap builder ---- */

static void pcap_header(struct bytes *b, uint32_t magic, uint32_t snaplen, uint32_t link_field)
{
	put32(b, magic);
	put16(b, 2); /* version 2.4 */
	put16(b, 4);
	put32(b, 0); /* reserved (thiszone) */
	put32(b, 0); /* reserved (sigfigs) */
	put32(b, snaplen);
	put32(b, link_field);
}

static void pcap_record(struct bytes *b, uint32_t sec, uint32_t frac, uint32_t cap_len,
			uint32_t wire_len, const void *data, size_t data_len)
{
	put32(b, sec);
	put32(b, frac);
	put32(b, cap_len);
	put32(b, wire_len);
	put_raw(b, data, data_len);
}

/* ---- pcapng builder ---- */

static size_t block_open(struct bytes *b, uint32_t type)
{
	size_t at = b->len;

	put32(b, type);
	put32(b, 0); /* length, patched by block_close */
	return at;
}

static void block_close(struct bytes *b, size_t at)
{
	while (b->len % 4)
		put8(b, 0);
	uint32_t len = (uint32_t)(b->len - at + 4);
	put32(b, len); /* trailing length */
	patch32(b, at + 4, len);
}

static void shb(struct bytes *b)
{
	size_t at = block_open(b, 0x0a0d0d0a);

	put32(b, 0x1a2b3c4d); /* byte-order magic */
	put16(b, 1);          /* version 1.0 */
	put16(b, 0);
	put64(b, UINT64_MAX); /* section length unknown */
	block_close(b, at);
}

/* tsresol < 0: option absent; has_offset: add if_tsoffset. */
static void idb(struct bytes *b, uint16_t linktype, uint32_t snaplen, int tsresol,
		bool has_offset, int64_t offset_s)
{
	size_t at = block_open(b, 1);

	put16(b, linktype);
	put16(b, 0); /* reserved */
	put32(b, snaplen);
	if (tsresol >= 0) {
		put16(b, 9); /* if_tsresol */
		put16(b, 1);
		put8(b, (uint8_t)tsresol);
		put8(b, 0);
		put8(b, 0);
		put8(b, 0);
	}
	if (has_offset) {
		put16(b, 14); /* if_tsoffset */
		put16(b, 8);
		put64(b, (uint64_t)offset_s);
	}
	put16(b, 0); /* opt_endofopt */
	put16(b, 0);
	block_close(b, at);
}

static void epb(struct bytes *b, uint32_t if_id, uint64_t units, uint32_t cap_len,
		uint32_t wire_len, const void *data, size_t data_len)
{
	size_t at = block_open(b, 6);

	put32(b, if_id);
	put32(b, (uint32_t)(units >> 32));
	put32(b, (uint32_t)units);
	put32(b, cap_len);
	put32(b, wire_len);
	put_raw(b, data, data_len);
	block_close(b, at);
}

static void spb(struct bytes *b, uint32_t wire_len, const void *data, size_t data_len)
{
	size_t at = block_open(b, 3);

	put32(b, wire_len);
	put_raw(b, data, data_len);
	block_close(b, at);
}

static void pb(struct bytes *b, uint16_t if_id, uint64_t units, uint32_t cap_len,
	       uint32_t wire_len, const void *data, size_t data_len)
{
	size_t at = block_open(b, 2);

	put16(b, if_id);
	put16(b, 0); /* drops count */
	put32(b, (uint32_t)(units >> 32));
	put32(b, (uint32_t)units);
	put32(b, cap_len);
	put32(b, wire_len);
	put_raw(b, data, data_len);
	block_close(b, at);
}

static void opaque_block(struct bytes *b, uint32_t type)
{
	size_t at = block_open(b, type);

	put32(b, 0xdeadbeef); /* body the reader must not interpret */
	block_close(b, at);
}

/* ---- reading helpers ---- */

struct read_result {
	struct mm_raw_packet pkts[32];
	int n;
	int end_rc; /* 0: clean end, negative: the reader stopped */
	uint64_t errors[MM_CAPERR__COUNT];
};

static void read_all(const struct bytes *b, const char *name, struct read_result *r)
{
	struct pcap_file *pf = NULL;
	int rc = pcap_file_open(&pf, b->buf, b->len, name);

	cr_assert_eq(rc, 0, "open %s: %s", name, mm_last_error());
	memset(r, 0, sizeof(*r));
	while ((rc = pcap_file_next(pf, &r->pkts[r->n])) == 1)
		cr_assert_lt(++r->n, 32);
	r->end_rc = rc;
	pcap_file_add_errors(pf, r->errors);
	/* A stopped reader stays stopped. */
	cr_assert_eq(pcap_file_next(pf, &r->pkts[r->n]), 0);
	pcap_file_free(pf);
}

static uint64_t total_errors(const uint64_t *errors)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < MM_CAPERR__COUNT; i++)
		sum += errors[i];
	return sum;
}

static void expect_stop(const struct read_result *r, int n, int rc, unsigned why,
			const char *message)
{
	cr_assert_eq(r->n, n, "packets before the stop: %d, expected %d", r->n, n);
	cr_assert_eq(r->end_rc, rc, "status %d, expected %d (%s)", r->end_rc, rc,
		     mm_last_error());
	cr_assert_eq(r->errors[why], 1, "%s counted %llu times", mm_capture_error_name(why),
		     (unsigned long long)r->errors[why]);
	cr_assert_eq(total_errors(r->errors), 1);
	cr_assert_str_eq(mm_last_error(), message);
}

/* ---- classic pcap ---- */

Test(pcap_classic, little_endian_microseconds)
{
	struct bytes b = { .big = false };
	struct read_result r;

	pcap_header(&b, 0xa1b2c3d4, 65535, 1); /* µs magic, snaplen 65535, Ethernet */
	pcap_record(&b, 1700000000, 123456, 46, 46, eth_udp, 46);
	pcap_record(&b, 1700000001, 999999, 40, 54, eth_tcp, 40); /* cut at 40 of 54 */
	read_all(&b, "le.pcap", &r);
	cr_assert_eq(r.n, 2);
	cr_assert_eq(r.end_rc, 0);
	cr_assert_eq(total_errors(r.errors), 0);
	cr_assert_eq(r.pkts[0].ts_ns, 1700000000123456000ull);
	cr_assert_eq(r.pkts[0].cap_len, 46);
	cr_assert_eq(r.pkts[0].wire_len, 46);
	cr_assert_eq(r.pkts[0].linktype, MM_LINK_ETHERNET);
	cr_assert_eq(r.pkts[0].data, b.buf + 24 + 16, "packet data must point into the buffer");
	cr_assert_eq(r.pkts[1].ts_ns, 1700000001999999000ull);
	cr_assert_eq(r.pkts[1].cap_len, 40);
	cr_assert_eq(r.pkts[1].wire_len, 54);
	cr_assert_eq(r.pkts[1].data, b.buf + 24 + 16 + 46 + 16);
}

Test(pcap_classic, big_endian_nanoseconds)
{
	struct bytes b = { .big = true };
	struct read_result r;

	pcap_header(&b, 0xa1b23c4d, 262144, 101); /* ns magic, raw IP */
	pcap_record(&b, 4294967295u, 999999999, RAW_UDP_LEN, RAW_UDP_LEN, RAW_UDP, RAW_UDP_LEN);
	read_all(&b, "be.pcap", &r);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.end_rc, 0);
	cr_assert_eq(total_errors(r.errors), 0);
	/* The largest 32-bit second and fraction still fit 64-bit ns. */
	cr_assert_eq(r.pkts[0].ts_ns, 4294967295ull * 1000000000ull + 999999999ull);
	cr_assert_eq(r.pkts[0].linktype, MM_LINK_RAW);
	cr_assert_eq(r.pkts[0].cap_len, RAW_UDP_LEN);
	cr_assert_eq(memcmp(r.pkts[0].data, RAW_UDP, RAW_UDP_LEN), 0);
}

Test(pcap_classic, big_endian_microseconds_and_little_endian_nanoseconds)
{
	struct bytes be = { .big = true }, le = { .big = false };
	struct read_result r;

	pcap_header(&be, 0xa1b2c3d4, 65535, 1);
	pcap_record(&be, 10, 20, 46, 46, eth_udp, 46); /* 10 s + 20 µs */
	read_all(&be, "be-us.pcap", &r);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.pkts[0].ts_ns, 10000020000ull);

	pcap_header(&le, 0xa1b23c4d, 65535, 1);
	pcap_record(&le, 10, 20, 46, 46, eth_udp, 46); /* 10 s + 20 ns */
	read_all(&le, "le-ns.pcap", &r);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.pkts[0].ts_ns, 10000000020ull);
}

Test(pcap_classic, fcs_bits_leave_the_linktype)
{
	struct bytes b = { .big = false };
	struct read_result r;

	/* FCS len 2 (4 bytes) with the P bit, linktype Ethernet. */
	pcap_header(&b, 0xa1b2c3d4, 65535, 0x24000001);
	pcap_record(&b, 1, 0, 46, 46, eth_udp, 46);
	read_all(&b, "fcs.pcap", &r);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.pkts[0].linktype, MM_LINK_ETHERNET);
}

Test(pcap_classic, header_refusals)
{
	struct bytes b = { .big = false };
	struct pcap_file *pf = NULL;

	pcap_header(&b, 0xa1b2c3d4, 65535, 0x00010001); /* a Reserved3 bit set */
	cr_assert_eq(pcap_file_open(&pf, b.buf, b.len, "rsv.pcap"), MM_EFORMAT);
	cr_assert_str_eq(mm_last_error(),
			 "pcap: rsv.pcap: header: reserved bits set in linktype field 0x00010001");
	cr_assert_null(pf);

	b.len = 0;
	pcap_header(&b, 0xa1b2c3d4, 65535, 1);
	b.buf[6] = 3; /* minor version 3 */
	cr_assert_eq(pcap_file_open(&pf, b.buf, b.len, "v23.pcap"), MM_EUNSUP);
	cr_assert_str_eq(mm_last_error(), "pcap: v23.pcap: header: version 2.3, only 2.4 is read");

	cr_assert_eq(pcap_file_open(&pf, b.buf, 20, "short.pcap"), MM_ETRUNC);
	cr_assert_str_eq(mm_last_error(),
			 "pcap: short.pcap: header: file has 20 bytes, header needs 24");
	cr_assert_eq(pcap_file_open(&pf, b.buf, 3, "tiny.pcap"), MM_ETRUNC);

	/* "GIF8": not a capture at all. */
	cr_assert_eq(pcap_file_open(&pf, (const uint8_t *)"GIF89a", 6, "x.gif"), MM_EFORMAT);
	cr_assert_str_eq(mm_last_error(),
			 "pcap: x.gif: header: magic 47494638 is neither pcap nor pcapng");
}

Test(pcap_classic, huge_caplen_stops_the_reader)
{
	struct bytes b = { .big = false };
	struct read_result r;

	pcap_header(&b, 0xa1b2c3d4, 65535, 1);
	pcap_record(&b, 1, 0, 46, 46, eth_udp, 46);
	pcap_record(&b, 1, 0, 900000, 900000, eth_udp, 46); /* caplen 900000 at byte 86 */
	read_all(&b, "x.pcap", &r);
	expect_stop(&r, 1, MM_EFORMAT, MM_CAPERR_BAD_CAPLEN,
		    "pcap: x.pcap: record at byte 86: caplen 900000 exceeds 262144");
}

Test(pcap_classic, file_ending_inside_a_record)
{
	struct bytes b = { .big = false };
	struct read_result r;

	pcap_header(&b, 0xa1b2c3d4, 65535, 1);
	pcap_record(&b, 1, 0, 46, 46, eth_udp, 46);
	pcap_record(&b, 2, 0, 46, 46, eth_udp, 30); /* 16 of 46 data bytes missing */
	read_all(&b, "cut.pcap", &r);
	expect_stop(&r, 1, MM_ETRUNC, MM_CAPERR_TRUNCATED_RECORD,
		    "pcap: cut.pcap: record at byte 86: caplen 46 but the file ends 30 bytes later");

	b.len = 86 + 10; /* ends inside the second record's header */
	read_all(&b, "cut.pcap", &r);
	expect_stop(&r, 1, MM_ETRUNC, MM_CAPERR_TRUNCATED_RECORD,
		    "pcap: cut.pcap: record at byte 86: file ends 10 bytes into the 16-byte "
		    "record header");
}

Test(pcap_classic, caplen_beyond_wire_or_snaplen_is_counted_and_kept)
{
	struct bytes b = { .big = false };
	struct read_result r;

	pcap_header(&b, 0xa1b2c3d4, 40, 1);                /* snaplen 40 */
	pcap_record(&b, 1, 0, 46, 20, eth_udp, 46);        /* wire 20 < caplen 46 */
	pcap_record(&b, 1, 0, 46, 46, eth_udp, 46);        /* caplen 46 > snaplen 40 */
	pcap_record(&b, 1, 0, 40, 46, eth_udp, 40);        /* a proper one */
	read_all(&b, "len.pcap", &r);
	cr_assert_eq(r.n, 3);
	cr_assert_eq(r.end_rc, 0);
	cr_assert_eq(r.errors[MM_CAPERR_BAD_CAPLEN], 2);
	cr_assert_eq(total_errors(r.errors), 2);
	/* Wireshark's fix-up: the wire length is raised, no captured byte dropped. */
	cr_assert_eq(r.pkts[0].cap_len, 46);
	cr_assert_eq(r.pkts[0].wire_len, 46);
	cr_assert_eq(r.pkts[1].cap_len, 46);
	cr_assert_eq(r.pkts[2].cap_len, 40);
	/* The message names the first such record. */
	cr_assert_str_eq(mm_last_error(),
			 "pcap: len.pcap: record at byte 24: caplen 46 exceeds wire length 20");
}

/*
 * Sound records take a short path and counted ones a checked path; a
 * reader must come back to the short path after each, in both byte orders,
 * with every field of every packet right.
 */
Test(pcap_classic, counted_records_between_sound_ones_in_both_byte_orders)
{
	for (int big = 0; big <= 1; big++) {
		struct bytes b = { .big = big };
		struct read_result r;

		pcap_header(&b, 0xa1b2c3d4, 50, 1);         /* snaplen 50 */
		pcap_record(&b, 10, 1, 46, 60, eth_udp, 46); /* sound */
		pcap_record(&b, 11, 2, 46, 20, eth_udp, 46); /* wire 20 < caplen 46: counted */
		pcap_record(&b, 12, 3, 46, 46, eth_udp, 46); /* sound */
		pcap_record(&b, 13, 4, 54, 54, eth_tcp, 54); /* caplen 54 > snaplen 50: counted */
		pcap_record(&b, 14, 999999, 50, 54, eth_tcp, 50); /* sound, caplen = snaplen */
		read_all(&b, "mix.pcap", &r);
		cr_assert_eq(r.n, 5, "big-endian %d", big);
		cr_assert_eq(r.end_rc, 0);
		cr_assert_eq(r.errors[MM_CAPERR_BAD_CAPLEN], 2);
		cr_assert_eq(total_errors(r.errors), 2);
		for (int i = 0; i < 5; i++)
			cr_assert_eq(r.pkts[i].ts_ns, (uint64_t)(10 + i) * 1000000000ULL +
					(i == 4 ? 999999000ULL : (uint64_t)(i + 1) * 1000ULL),
				     "packet %d, big-endian %d", i, big);
		cr_assert_eq(r.pkts[0].cap_len, 46);
		cr_assert_eq(r.pkts[0].wire_len, 60);
		cr_assert_eq(r.pkts[1].wire_len, 46, "raised to caplen");
		cr_assert_eq(r.pkts[2].wire_len, 46);
		cr_assert_eq(r.pkts[3].cap_len, 54);
		cr_assert_eq(r.pkts[4].cap_len, 50);
		cr_assert_eq(r.pkts[4].wire_len, 54);
		/* Data points into the file, just past each 16-byte record header. */
		cr_assert_eq(r.pkts[0].data, b.buf + 24 + 16);
		cr_assert_eq(r.pkts[4].data, b.buf + 24 + 4 * 16 + 3 * 46 + 54 + 16);
		cr_assert_eq(memcmp(r.pkts[4].data, eth_tcp, 50), 0);
		for (int i = 0; i < 5; i++)
			cr_assert_eq(r.pkts[i].linktype, 1);
	}
}

/* ---- pcapng ---- */

static void pcapng_mixed_file(struct bytes *b)
{
	shb(b);
	idb(b, 1, 0, -1, false, 0);       /* if 0: Ethernet, no snaplen, µs default */
	idb(b, 101, 100, 9, false, 0);    /* if 1: raw IP, snaplen 100, 10^-9 */
	idb(b, 113, 0, 0x8a, true, -100); /* if 2: Linux SLL, 2^-10 s, offset -100 s */
	opaque_block(b, 4);               /* name resolution block: skipped */
	epb(b, 0, 1700000000123456ull, 46, 46, eth_udp, 46);
	epb(b, 1, 1700000000123456789ull, RAW_UDP_LEN, 60, RAW_UDP, RAW_UDP_LEN);
	epb(b, 2, 1024ull * 1000 + 1, 46, 46, eth_udp, 46); /* 1000 s + 1/1024 s */
	spb(b, 54, eth_tcp, 54);          /* interface 0, no time of its own */
	pb(b, 1, 5000000000ull, RAW_UDP_LEN, RAW_UDP_LEN, RAW_UDP, RAW_UDP_LEN);
	opaque_block(b, 5);               /* interface statistics block: skipped */
	opaque_block(b, 0x00012345);      /* a type nobody defined: counted, skipped */
	epb(b, 0, 7, 46, 46, eth_udp, 46);
}

static void check_mixed_file(const struct bytes *b, const char *name)
{
	struct read_result r;

	read_all(b, name, &r);
	cr_assert_eq(r.end_rc, 0, "%s", mm_last_error());
	cr_assert_eq(r.n, 6);
	cr_assert_eq(r.errors[MM_CAPERR_UNKNOWN_BLOCK], 1);
	cr_assert_eq(total_errors(r.errors), 1);

	cr_assert_eq(r.pkts[0].ts_ns, 1700000000123456000ull);
	cr_assert_eq(r.pkts[0].linktype, MM_LINK_ETHERNET);
	cr_assert_eq(r.pkts[0].cap_len, 46);
	cr_assert_eq(memcmp(r.pkts[0].data, eth_udp, 46), 0);
	cr_assert(r.pkts[0].data > b->buf && r.pkts[0].data < b->buf + b->len,
		  "packet data must point into the buffer");

	cr_assert_eq(r.pkts[1].ts_ns, 1700000000123456789ull);
	cr_assert_eq(r.pkts[1].linktype, MM_LINK_RAW);
	cr_assert_eq(r.pkts[1].cap_len, RAW_UDP_LEN);
	cr_assert_eq(r.pkts[1].wire_len, 60);

	/* 1000 s + 1/1024 s (976562.5 ns, truncated) - 100 s of offset. */
	cr_assert_eq(r.pkts[2].ts_ns, 900000976562ull);
	cr_assert_eq(r.pkts[2].linktype, MM_LINK_LINUX_SLL);

	/* SPB: interface 0, caplen = wire length 54, time of the packet before. */
	cr_assert_eq(r.pkts[3].ts_ns, r.pkts[2].ts_ns);
	cr_assert_eq(r.pkts[3].linktype, MM_LINK_ETHERNET);
	cr_assert_eq(r.pkts[3].cap_len, 54);
	cr_assert_eq(r.pkts[3].wire_len, 54);
	cr_assert_eq(memcmp(r.pkts[3].data, eth_tcp, 54), 0);

	/* Obsolete Packet Block on interface 1: 5e9 ns units. */
	cr_assert_eq(r.pkts[4].ts_ns, 5000000000ull);
	cr_assert_eq(r.pkts[4].linktype, MM_LINK_RAW);

	cr_assert_eq(r.pkts[5].ts_ns, 7000ull);
}

Test(pcapng, interfaces_resolutions_and_block_kinds_little_endian)
{
	struct bytes b = { .big = false };

	pcapng_mixed_file(&b);
	check_mixed_file(&b, "mixed-le.pcapng");
}

Test(pcapng, interfaces_resolutions_and_block_kinds_big_endian)
{
	struct bytes b = { .big = true };

	pcapng_mixed_file(&b);
	check_mixed_file(&b, "mixed-be.pcapng");
}

Test(pcapng, simple_packet_block_is_cut_to_snaplen)
{
	struct bytes b = { .big = false };
	struct read_result r;

	shb(&b);
	idb(&b, 1, 20, -1, false, 0); /* snaplen 20 */
	spb(&b, 46, eth_udp, 20);     /* 46-byte frame, 20 captured */
	read_all(&b, "spb.pcapng", &r);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.pkts[0].cap_len, 20);
	cr_assert_eq(r.pkts[0].wire_len, 46);
	cr_assert_eq(total_errors(r.errors), 0);
}

Test(pcapng, sections_of_both_byte_orders_each_with_their_interfaces)
{
	struct bytes b = { .big = true };
	struct read_result r;
	size_t second;

	shb(&b); /* section 1, big-endian */
	idb(&b, 1, 0, 6, false, 0);
	idb(&b, 101, 0, 9, false, 0);
	epb(&b, 1, 42, RAW_UDP_LEN, RAW_UDP_LEN, RAW_UDP, RAW_UDP_LEN);
	b.big = false;
	second = b.len;
	shb(&b); /* section 2, little-endian, forgets section 1's interfaces */
	idb(&b, 113, 0, 3, false, 0); /* milliseconds */
	epb(&b, 0, 42, 46, 46, eth_udp, 46);
	read_all(&b, "two.pcapng", &r);
	cr_assert_eq(r.n, 2);
	cr_assert_eq(r.end_rc, 0);
	cr_assert_eq(total_errors(r.errors), 0);
	cr_assert_eq(r.pkts[0].linktype, MM_LINK_RAW);
	cr_assert_eq(r.pkts[0].ts_ns, 42);
	cr_assert_eq(r.pkts[1].linktype, MM_LINK_LINUX_SLL);
	cr_assert_eq(r.pkts[1].ts_ns, 42000000);

	/* Interface 1 existed only in section 1. */
	epb(&b, 1, 43, 46, 46, eth_udp, 46);
	size_t at = b.len - 12 - 20 - 48;
	read_all(&b, "two.pcapng", &r);
	char want[160];
	snprintf(want, sizeof(want),
		 "pcapng: two.pcapng: block at byte %zu: interface 1 not described (section has 1)",
		 at);
	expect_stop(&r, 2, MM_EFORMAT, MM_CAPERR_BAD_INTERFACE, want);
	cr_assert_gt(at, second);
}

Test(pcapng, exact_conversion_at_unusual_resolutions)
{
	struct bytes b = { .big = false };
	struct read_result r;

	shb(&b);
	idb(&b, 1, 0, 12, false, 0);   /* if 0: picoseconds */
	idb(&b, 1, 0, 0x80 | 63, false, 0); /* if 1: 2^-63 s */
	idb(&b, 1, 0, 0, true, 1000);  /* if 2: seconds, +1000 s */
	idb(&b, 1, 0, 19, false, 0);   /* if 3: 10^-19 s */
	epb(&b, 0, 1234567890123456789ull, 46, 46, eth_udp, 46);
	epb(&b, 1, (3ull << 62) + 1, 46, 46, eth_udp, 46); /* 1.5 s + 2^-63 s */
	epb(&b, 2, 5, 46, 46, eth_udp, 46);
	epb(&b, 3, UINT64_MAX, 46, 46, eth_udp, 46);
	read_all(&b, "res.pcapng", &r);
	cr_assert_eq(r.n, 4, "%s", mm_last_error());
	cr_assert_eq(r.pkts[0].ts_ns, 1234567890123456ull);
	cr_assert_eq(r.pkts[1].ts_ns, 1500000000ull);
	cr_assert_eq(r.pkts[2].ts_ns, 1005000000000ull);
	cr_assert_eq(r.pkts[3].ts_ns, 1844674407ull); /* (2^64 - 1) / 10^10 */
}

struct corruption {
	const char *what;
	void (*build)(struct bytes *b);
	int n_before;
	int status;
	unsigned why;
	const char *message;
};

static void valid_start(struct bytes *b)
{
	shb(b);                            /* bytes 0..27 */
	idb(b, 1, 0, -1, false, 0);        /* bytes 28..51 */
	epb(b, 0, 1, 46, 46, eth_udp, 46); /* bytes 52..131 */
}

static void build_unaligned(struct bytes *b)
{
	valid_start(b);
	size_t at = block_open(b, 6);
	put32(b, 0);
	block_close(b, at);
	patch32(b, at + 4, 18); /* leading length 18: not a multiple of 4 */
}

static void build_short_block(struct bytes *b)
{
	valid_start(b);
	put32(b, 6); /* EPB type */
	put32(b, 8); /* length 8 < 12 */
	put32(b, 8);
}

static void build_trailer_mismatch(struct bytes *b)
{
	valid_start(b);
	epb(b, 0, 2, 46, 46, eth_udp, 46);
	patch32(b, b->len - 4, 76); /* trailing 76, leading 80 */
}

static void build_block_past_end(struct bytes *b)
{
	valid_start(b);
	epb(b, 0, 2, 46, 46, eth_udp, 46);
	b->len -= 8; /* the last 8 bytes never made it to disk */
}

static void build_header_cut(struct bytes *b)
{
	valid_start(b);
	put32(b, 6); /* 8 bytes of a block header, no more */
	put32(b, 80);
}

static void build_packet_before_interface(struct bytes *b)
{
	shb(b);
	epb(b, 0, 1, 46, 46, eth_udp, 46);
}

static void build_spb_before_interface(struct bytes *b)
{
	shb(b);
	spb(b, 46, eth_udp, 46);
}

static void build_caplen_past_block(struct bytes *b)
{
	valid_start(b);
	epb(b, 0, 2, 200, 200, eth_udp, 46); /* says 200 bytes, carries 48 */
}

static void build_caplen_huge(struct bytes *b)
{
	valid_start(b);
	epb(b, 0, 2, 300000, 300000, eth_udp, 46);
}

static void build_short_epb(struct bytes *b)
{
	valid_start(b);
	size_t at = block_open(b, 6);
	put32(b, 0); /* 8 of the 20 fixed bytes */
	put32(b, 0);
	block_close(b, at);
}

static void build_tsresol_too_fine(struct bytes *b)
{
	valid_start(b);
	idb(b, 1, 0, 20, false, 0); /* 10^-20 s */
}

static void build_tsoffset_too_far(struct bytes *b)
{
	valid_start(b);
	idb(b, 1, 0, -1, true, INT64_MIN);
}

static void build_timestamp_overflow(struct bytes *b)
{
	valid_start(b);
	idb(b, 1, 0, 0, false, 0);                 /* if 1: whole seconds */
	epb(b, 1, 1ull << 62, 46, 46, eth_udp, 46); /* 2^62 s: past 2554 */
}

static void build_option_overrun(struct bytes *b)
{
	valid_start(b);
	size_t at = block_open(b, 1);
	put16(b, 1); /* Ethernet */
	put16(b, 0);
	put32(b, 0);
	put16(b, 2);   /* if_name */
	put16(b, 200); /* 200 bytes, block has 4 */
	put32(b, 0);
	block_close(b, at);
}

static void build_bad_bom(struct bytes *b)
{
	valid_start(b);
	size_t at = b->len;
	shb(b);
	patch32(b, at + 8, 0x11223344);
}

static const struct corruption corruptions[] = {
	{ "unaligned", build_unaligned, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: block length 18 (needs a multiple of 4 >= 12)" },
	{ "short", build_short_block, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: block length 8 (needs a multiple of 4 >= 12)" },
	{ "trailer", build_trailer_mismatch, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: trailing length 76 differs from leading "
	  "length 80" },
	{ "past end", build_block_past_end, 1, MM_ETRUNC, MM_CAPERR_TRUNCATED_RECORD,
	  "pcapng: c.pcapng: block at byte 132: block length 80 but the file ends 72 bytes "
	  "later" },
	{ "header cut", build_header_cut, 1, MM_ETRUNC, MM_CAPERR_TRUNCATED_RECORD,
	  "pcapng: c.pcapng: block at byte 132: file ends 8 bytes into a block header" },
	{ "no interface", build_packet_before_interface, 0, MM_EFORMAT,
	  MM_CAPERR_BAD_INTERFACE,
	  "pcapng: c.pcapng: block at byte 28: interface 0 not described (section has 0)" },
	{ "spb no interface", build_spb_before_interface, 0, MM_EFORMAT,
	  MM_CAPERR_BAD_INTERFACE,
	  "pcapng: c.pcapng: block at byte 28: simple packet block before any interface "
	  "description" },
	{ "caplen past block", build_caplen_past_block, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: caplen 200 runs past the block (48 bytes of "
	  "room)" },
	{ "caplen huge", build_caplen_huge, 1, MM_EFORMAT, MM_CAPERR_BAD_CAPLEN,
	  "pcapng: c.pcapng: block at byte 132: caplen 300000 exceeds 262144" },
	{ "short epb", build_short_epb, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: enhanced packet body of 8 bytes (needs 20)" },
	{ "tsresol", build_tsresol_too_fine, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: if_tsresol 10^-20 is finer than 10^-19" },
	{ "tsoffset", build_tsoffset_too_far, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: if_tsoffset -9223372036854775808 s is beyond "
	  "64-bit nanoseconds" },
	{ "ts overflow", build_timestamp_overflow, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 164: timestamp 4611686018427387904 on interface 1 "
	  "is outside 1970..2554" },
	{ "option overrun", build_option_overrun, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: interface option 2 of 200 bytes runs past the "
	  "block" },
	{ "bad bom", build_bad_bom, 1, MM_EFORMAT, MM_CAPERR_BAD_BLOCK,
	  "pcapng: c.pcapng: block at byte 132: section header byte-order magic 11223344 is "
	  "neither order of 1a2b3c4d" },
};

Test(pcapng, every_corruption_is_counted_and_located)
{
	for (size_t i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]); i++) {
		const struct corruption *c = &corruptions[i];
		struct bytes b = { .big = false };
		struct read_result r;

		c->build(&b);
		read_all(&b, "c.pcapng", &r);
		cr_assert_eq(r.n, c->n_before, "%s: %d packets", c->what, r.n);
		cr_assert_eq(r.end_rc, c->status, "%s: status %d (%s)", c->what, r.end_rc,
			     mm_last_error());
		cr_assert_eq(r.errors[c->why], 1, "%s: not counted as %s", c->what,
			     mm_capture_error_name(c->why));
		cr_assert_eq(total_errors(r.errors), 1, "%s", c->what);
		cr_assert_str_eq(mm_last_error(), c->message, "%s", c->what);
	}
}

Test(pcapng, header_refusals)
{
	struct bytes b = { .big = false };
	struct pcap_file *pf = NULL;

	shb(&b);
	b.buf[12] = 2; /* major version 2 */
	cr_assert_eq(pcap_file_open(&pf, b.buf, b.len, "v2.pcapng"), MM_EUNSUP);
	cr_assert_str_eq(mm_last_error(),
			 "pcapng: v2.pcapng: block at byte 0: section version 2.0, only 1.0 is read");
	cr_assert_eq(pcap_file_open(&pf, b.buf, 10, "cut.pcapng"), MM_ETRUNC);
	cr_assert_eq(pcap_file_open(&pf, b.buf, 24, "cut.pcapng"), MM_ETRUNC);
	cr_assert_null(pf);
}

/* ---- mm_capture over files ---- */

static char *write_temp(const char *dir, const char *name, const struct bytes *b)
{
	char *path;

	cr_assert_geq(asprintf(&path, "%s/%s", dir, name), 0);
	cr_assert_eq(tu_write_file(path, b->buf, b->len), 0);
	return path;
}

static int read_capture(struct mm_capture *cap, int batch, struct mm_raw_packet *all, int cap_all)
{
	struct mm_raw_packet pkts[64];
	int n, total = 0;

	cr_assert_leq(batch, 64);
	while ((n = mm_capture_next_batch(cap, pkts, batch)) > 0) {
		cr_assert_leq(n, batch);
		for (int i = 0; i < n && all; i++) {
			cr_assert_lt(total + i, cap_all);
			all[total + i] = pkts[i];
		}
		total += n;
	}
	cr_assert_eq(n, 0, "next_batch: %s", mm_last_error());
	return total;
}

Test(capture, file_in_batches_with_stats)
{
	struct bytes b = { .big = false };
	struct mm_capture *cap = NULL;
	struct mm_capture_stats st;
	struct mm_raw_packet all[8];
	char *dir = tu_tmpdir(), *path;

	pcap_header(&b, 0xa1b2c3d4, 65535, 1);
	for (uint32_t i = 0; i < 5; i++)
		pcap_record(&b, 100 + i, 0, 46, 46 + i, eth_udp, 46);
	path = write_temp(dir, "five.pcap", &b);
	cr_assert_eq(mm_capture_open_file(&cap, path), 0, "%s", mm_last_error());
	cr_assert_str_eq(mm_capture_name(cap), path);
	cr_assert_eq(read_capture(cap, 2, all, 8), 5);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(all[i].ts_ns, (uint64_t)(100 + i) * 1000000000ull);
	mm_capture_get_stats(cap, &st);
	cr_assert_eq(st.packets, 5);
	cr_assert_eq(st.bytes, 46 * 5 + 0 + 1 + 2 + 3 + 4);
	cr_assert_eq(st.filtered, 0);
	cr_assert_eq(total_errors(st.errors), 0);
	cr_assert_eq(mm_capture_next_batch(cap, all, 0), MM_EINVAL);
	mm_capture_free(cap);
	unlink(path);
	free(path);
	rmdir(dir);
	free(dir);
}

Test(capture, truncated_file_reports_packets_before_the_cut)
{
	struct bytes b = { .big = false };
	struct mm_capture *cap = NULL;
	struct mm_capture_stats st;
	char *dir = tu_tmpdir(), *path, want[512];

	pcap_header(&b, 0xa1b2c3d4, 65535, 1);
	pcap_record(&b, 1, 0, 46, 46, eth_udp, 46);
	pcap_record(&b, 2, 0, 46, 46, eth_udp, 46);
	b.len -= 5;
	path = write_temp(dir, "cut.pcap", &b);
	cr_assert_eq(mm_capture_open_file(&cap, path), 0, "%s", mm_last_error());
	cr_assert_eq(read_capture(cap, 64, NULL, 0), 1);
	mm_capture_get_stats(cap, &st);
	cr_assert_eq(st.packets, 1);
	cr_assert_eq(st.errors[MM_CAPERR_TRUNCATED_RECORD], 1);
	snprintf(want, sizeof(want),
		 "pcap: %s: record at byte 86: caplen 46 but the file ends 41 bytes later", path);
	cr_assert_str_eq(mm_last_error(), want);
	mm_capture_free(cap);
	unlink(path);
	free(path);
	rmdir(dir);
	free(dir);
}

Test(capture, refusals_name_the_file)
{
	struct mm_capture *cap = NULL;
	struct bytes empty = { .big = false };
	char *dir = tu_tmpdir(), *path, *missing;

	cr_assert_geq(asprintf(&missing, "%s/none.pcap", dir), 0);
	cr_assert_eq(mm_capture_open_file(&cap, missing), MM_ENOENT);
	cr_assert(strstr(mm_last_error(), missing), "%s", mm_last_error());
	cr_assert_eq(mm_capture_open_file(&cap, dir), MM_EINVAL);
	path = write_temp(dir, "empty.pcap", &empty);
	cr_assert_eq(mm_capture_open_file(&cap, path), MM_ETRUNC);
	cr_assert(strstr(mm_last_error(), path), "%s", mm_last_error());
	cr_assert_null(cap);
	unlink(path);
	free(path);
	free(missing);
	rmdir(dir);
	free(dir);
}

Test(capture, pipe_is_read_whole)
{
	struct bytes b = { .big = true };
	struct mm_capture *cap = NULL;
	struct mm_raw_packet all[4];
	char path[64];
	int fds[2];

	shb(&b);
	idb(&b, 1, 0, 9, false, 0);
	epb(&b, 0, 77, 46, 46, eth_udp, 46);
	epb(&b, 0, 78, 54, 54, eth_tcp, 54);
	cr_assert_eq(pipe(fds), 0);
	cr_assert_eq(write(fds[1], b.buf, b.len), (ssize_t)b.len);
	close(fds[1]);
	snprintf(path, sizeof(path), "/dev/fd/%d", fds[0]);
	cr_assert_eq(mm_capture_open_file(&cap, path), 0, "%s", mm_last_error());
	cr_assert_eq(read_capture(cap, 64, all, 4), 2);
	cr_assert_eq(all[0].ts_ns, 77);
	cr_assert_eq(all[1].ts_ns, 78);
	cr_assert_eq(memcmp(all[1].data, eth_tcp, 54), 0);
	mm_capture_free(cap);
	close(fds[0]);
}

Test(capture, filter_on_files_per_linktype)
{
	struct bytes b = { .big = false };
	struct mm_capture *cap = NULL;
	struct mm_capture_stats st;
	struct mm_raw_packet all[8];
	char *dir = tu_tmpdir(), *path;

	shb(&b);
	idb(&b, 1, 0, -1, false, 0);   /* if 0: Ethernet */
	idb(&b, 101, 0, -1, false, 0); /* if 1: raw IP */
	epb(&b, 0, 1, 46, 46, eth_udp, 46);
	epb(&b, 0, 2, 54, 54, eth_tcp, 54);
	epb(&b, 1, 3, RAW_UDP_LEN, RAW_UDP_LEN, RAW_UDP, RAW_UDP_LEN);
	epb(&b, 0, 4, 54, 54, eth_tcp, 54);
	path = write_temp(dir, "mixed.pcapng", &b);
	cr_assert_eq(mm_capture_open_file(&cap, path), 0, "%s", mm_last_error());
	cr_assert_eq(mm_capture_set_filter(cap, "udp port 53"), 0, "%s", mm_last_error());
	cr_assert_eq(read_capture(cap, 64, all, 8), 2);
	cr_assert_eq(all[0].ts_ns, 1000);
	cr_assert_eq(all[0].linktype, MM_LINK_ETHERNET);
	cr_assert_eq(all[1].ts_ns, 3000);
	cr_assert_eq(all[1].linktype, MM_LINK_RAW);
	mm_capture_get_stats(cap, &st);
	cr_assert_eq(st.packets, 2);
	cr_assert_eq(st.filtered, 2);
	cr_assert_eq(mm_capture_set_filter(cap, "udp port"), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "udp port"), "%s", mm_last_error());
	mm_capture_free(cap);
	unlink(path);
	free(path);
	rmdir(dir);
	free(dir);
}

Test(capture, break_ends_a_file_read)
{
	struct bytes b = { .big = false };
	struct mm_capture *cap = NULL;
	struct mm_raw_packet pkts[4];
	char *dir = tu_tmpdir(), *path;

	pcap_header(&b, 0xa1b2c3d4, 65535, 1);
	pcap_record(&b, 1, 0, 46, 46, eth_udp, 46);
	pcap_record(&b, 2, 0, 46, 46, eth_udp, 46);
	path = write_temp(dir, "brk.pcap", &b);
	cr_assert_eq(mm_capture_open_file(&cap, path), 0, "%s", mm_last_error());
	cr_assert_eq(mm_capture_next_batch(cap, pkts, 1), 1);
	mm_capture_break(cap);
	cr_assert_eq(mm_capture_next_batch(cap, pkts, 4), 0);
	mm_capture_free(cap);
	unlink(path);
	free(path);
	rmdir(dir);
	free(dir);
}

Test(capture, error_names)
{
	cr_assert_str_eq(mm_capture_error_name(MM_CAPERR_TRUNCATED_RECORD), "truncated-record");
	cr_assert_str_eq(mm_capture_error_name(MM_CAPERR_BAD_CAPLEN), "bad-caplen");
	cr_assert_str_eq(mm_capture_error_name(MM_CAPERR_BAD_BLOCK), "bad-block");
	cr_assert_str_eq(mm_capture_error_name(MM_CAPERR_BAD_INTERFACE), "bad-interface");
	cr_assert_str_eq(mm_capture_error_name(MM_CAPERR_UNKNOWN_BLOCK), "unknown-block");
	cr_assert_str_eq(mm_capture_error_name(MM_CAPERR__COUNT), "unknown");
}

/* ---- shared third-party captures ---- */

static void shared_captures(glob_t *g)
{
	TU_REQUIRE_SHARED(root, "zeek");
	static const char *const patterns[] = { "zeek/*/*.pcap", "ndpi/*.pcap", "ndpi/*.pcapng" };
	char *pattern;
	int flags = 0;

	memset(g, 0, sizeof(*g));
	for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
		cr_assert_geq(asprintf(&pattern, "%s/../%s", root, patterns[i]), 0);
		glob(pattern, flags, NULL, g);
		flags = GLOB_APPEND;
		free(pattern);
	}
	free(root);
	cr_assert_geq(g->gl_pathc, 20, "only %zu shared captures found", g->gl_pathc);
}

static int count_capture(const char *path)
{
	struct mm_capture *cap = NULL;
	struct mm_capture_stats st;
	int n;

	cr_assert_eq(mm_capture_open_file(&cap, path), 0, "%s", mm_last_error());
	n = read_capture(cap, 64, NULL, 0);
	mm_capture_get_stats(cap, &st);
	for (unsigned e = 0; e < MM_CAPERR__COUNT; e++)
		cr_assert_eq(st.errors[e], 0, "%s: %llu %s: %s", path,
			     (unsigned long long)st.errors[e], mm_capture_error_name(e),
			     mm_last_error());
	cr_assert_eq(st.packets, (uint64_t)n);
	mm_capture_free(cap);
	return n;
}

/* Packets tshark sees in path, or -1 when tshark cannot be run. */
static int tshark_count(const char *path)
{
	const char *argv[] = { "tshark", "-r", path, "-T", "fields", "-e", "frame.number", NULL };
	char *out = NULL;
	int n = 0;

	if (tu_run(argv, NULL, &out, NULL) != 0) {
		free(out);
		return -1;
	}
	for (const char *p = out; *p; p++)
		n += *p == '\n';
	free(out);
	return n;
}

Test(shared, captures_read_to_the_end_without_errors_as_tshark_counts)
{
	glob_t g;
	bool have_tshark = true;

	shared_captures(&g);
	for (size_t i = 0; i < g.gl_pathc; i++) {
		int n = count_capture(g.gl_pathv[i]);

		cr_assert_gt(n, 0, "%s: no packets", g.gl_pathv[i]);
		if (!have_tshark)
			continue;
		int want = tshark_count(g.gl_pathv[i]);
		if (want < 0) {
			have_tshark = false;
			cr_log_warn("tshark could not be run (not in PATH?): packet counts not compared");
			continue;
		}
		cr_assert_eq(n, want, "%s: %d packets, tshark counts %d", g.gl_pathv[i], n, want);
	}
	globfree(&g);
}

/* ---- live capture on loopback ---- */

static struct mm_capture *live_cap;

static void on_alarm(int sig)
{
	(void)sig;
	mm_capture_break(live_cap);
}

static int udp_socket_on_loopback(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void send_to_port(int fd, uint16_t port, const char *payload)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	cr_assert_eq(sendto(fd, payload, strlen(payload), 0, (struct sockaddr *)&to, sizeof(to)),
		     (ssize_t)strlen(payload));
}

Test(live, loopback_udp_with_filter)
{
	struct mm_raw_packet pkts[16], got[3];
	struct mm_capture_stats st;
	char filter[64], payload[32];
	uint16_t port, other_port;
	int rx, other, n, total = 0, rc;

	if (geteuid() != 0)
		cr_skip_test("live capture needs root (euid %u)", (unsigned)geteuid());
	rc = mm_capture_open_live(&live_cap, "lo", 0, false);
	if (rc < 0)
		cr_skip_test("cannot capture on lo here: %s", mm_last_error());
	rx = udp_socket_on_loopback(&port);
	other = udp_socket_on_loopback(&other_port);
	snprintf(filter, sizeof(filter), "udp port %u", port);
	cr_assert_eq(mm_capture_set_filter(live_cap, filter), 0, "%s", mm_last_error());

	/* Sent first, so a filter that let them through would show them first. */
	send_to_port(other, other_port, "not-for-us-1");
	send_to_port(other, other_port, "not-for-us-2");
	for (int i = 0; i < 3; i++) {
		snprintf(payload, sizeof(payload), "mamori-%d", i);
		send_to_port(other, port, payload);
	}
	/* Guards against a hang only; nothing here measures time. */
	signal(SIGALRM, on_alarm);
	alarm(30);
	while (total < 3 && ((n = mm_capture_next_batch(live_cap, pkts, 16)) > 0 || n == MM_EAGAIN))
		for (int i = 0; i < n; i++) {
			cr_assert_lt(total, 3, "more packets than sent to port %u", port);
			got[total++] = pkts[i];
		}
	/* Nothing more comes to the port: the read times out and says so. */
	cr_assert_eq(mm_capture_next_batch(live_cap, pkts, 16), MM_EAGAIN);
	alarm(0);
	cr_assert_eq(total, 3, "captured %d of 3 datagrams", total);
	for (int i = 0; i < 3; i++) {
		const uint8_t *f = got[i].data;

		snprintf(payload, sizeof(payload), "mamori-%d", i);
		cr_assert_eq(got[i].linktype, MM_LINK_ETHERNET);
		cr_assert_eq(got[i].cap_len, 14 + 20 + 8 + strlen(payload));
		cr_assert_eq(got[i].wire_len, got[i].cap_len);
		cr_assert_eq(f[12] << 8 | f[13], 0x0800);          /* IPv4 */
		cr_assert_eq(f[14 + 9], 17);                       /* UDP */
		cr_assert_eq(f[36] << 8 | f[37], port);            /* destination port */
		cr_assert_eq(memcmp(f + 42, payload, strlen(payload)), 0);
		cr_assert_gt(got[i].ts_ns, 1500000000ull * 1000000000ull);
	}
	mm_capture_get_stats(live_cap, &st);
	cr_assert_eq(st.packets, 3);
	mm_capture_break(live_cap);
	cr_assert_eq(mm_capture_next_batch(live_cap, pkts, 16), 0);
	mm_capture_free(live_cap);
	close(rx);
	close(other);
}
