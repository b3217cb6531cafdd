/*
 * pipeline/ipfix_export: the exporter's messages read back by a small
 * independent IPFIX checker (header, sets, templates, every value), by
 * tshark and by nfcapd/nfdump as third-party decoders, and the TCP
 * transport (templates per session, reconnect, counted loss). Loopback only.
 */
#include "mamori/ipfix_export.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"
#include "test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T0 1767225600ull  /* 2026-01-01T00:00:00Z */
#define NTP_T0 3976214400u /* the same second counted from 1900 (T0 + 2208988800) */
#define MAX_MSGS 512
#define MAX_RECS 2048

/* ---- sample flows ------------------------------------------------------ */

static struct mm_addr addr(const char *text)
{
	struct mm_addr a;

	cr_assert_eq(mm_addr_parse(&a, text), 0, "%s", text);
	return a;
}

/* Five flows in which every exported field has a distinct value. */
static size_t sample_flows(struct mm_flow *f)
{
	memset(f, 0, 5 * sizeof(*f));
	/* IPv4 TCP biflow, every field set */
	f[0] = (struct mm_flow){ .src = addr("192.0.2.1"), .dst = addr("198.51.100.2"),
		.next_hop = addr("203.0.113.254"), .first_ns = T0 * MM_NS_PER_SEC + 123456789,
		.last_ns = (T0 + 5) * MM_NS_PER_SEC + 987654321, .fwd_packets = 10, .fwd_bytes = 1500,
		.rev_packets = 8, .rev_bytes = 9000, .id = 0x0123456789abcdefull, .sensor_id = 7,
		.sampling_rate = 100, .src_as = 64496, .dst_as = 4200000000u, .in_if = 3, .out_if = 4,
		.src_port = 49152, .dst_port = 443, .vlan = 100, .proto = 6, .fwd_tcp_flags = 0x1b,
		.rev_tcp_flags = 0x12, .end_reason = 3 };
	/* IPv4 UDP, one direction, no next hop, unsampled */
	f[1] = (struct mm_flow){ .src = addr("10.1.2.3"), .dst = addr("10.9.8.7"),
		.first_ns = (T0 + 1) * MM_NS_PER_SEC, .last_ns = (T0 + 1) * MM_NS_PER_SEC + 1,
		.fwd_packets = 1, .fwd_bytes = 76, .id = 2, .sensor_id = 7, .src_port = 5353,
		.dst_port = 53, .proto = 17, .end_reason = 1 };
	/* IPv4 ICMP echo: ports carry types in mm_flow, icmpTypeCode in IPFIX */
	f[2] = (struct mm_flow){ .src = addr("192.0.2.9"), .dst = addr("192.0.2.10"),
		.first_ns = (T0 + 2) * MM_NS_PER_SEC + 500000000, .last_ns = (T0 + 3) * MM_NS_PER_SEC,
		.fwd_packets = 2, .fwd_bytes = 168, .rev_packets = 2, .rev_bytes = 168, .id = 3,
		.sensor_id = 7, .src_port = 8, .dst_port = 0, .proto = 1, .icmp_type = 8,
		.icmp_code = 0, .end_reason = 4 };
	/* IPv6 TCP biflow with next hop */
	f[3] = (struct mm_flow){ .src = addr("2001:db8::1"), .dst = addr("2001:db8:ffff::2"),
		.next_hop = addr("fe80::1"), .first_ns = (T0 + 10) * MM_NS_PER_SEC + 1,
		.last_ns = (T0 + 70) * MM_NS_PER_SEC + 999999999, .fwd_packets = 1000000,
		.fwd_bytes = 5000000000ull, .rev_packets = 700000, .rev_bytes = 60000000, .id = 4,
		.sensor_id = 7, .src_as = 65551, .dst_as = 15169, .in_if = 65536, .out_if = 2,
		.src_port = 50000, .dst_port = 22, .vlan = 4094, .proto = 6, .fwd_tcp_flags = 0x02,
		.rev_tcp_flags = 0x14, .end_reason = 2 };
	/* IPv6 ICMPv6 destination unreachable, code 4 */
	f[4] = (struct mm_flow){ .src = addr("2001:db8::9"), .dst = addr("2001:db8::a"),
		.first_ns = (T0 + 20) * MM_NS_PER_SEC, .last_ns = (T0 + 20) * MM_NS_PER_SEC,
		.fwd_packets = 1, .fwd_bytes = 1280, .id = 5, .sensor_id = 7, .src_port = 1,
		.dst_port = 4, .proto = 58, .icmp_type = 1, .icmp_code = 4, .end_reason = 1 };
	return 5;
}

/* ---- a small independent IPFIX reader ---------------------------------- */

struct ck_field {
	uint16_t id, len;
	uint32_t pen;
};

struct ck_template {
	uint16_t id;
	size_t n_fields, rec_len;
	struct ck_field f[64];
};

struct ck_record {
	const struct ck_template *t;
	const uint8_t *p;
};

struct ck {
	struct ck_template t[4];
	size_t n_templates;
	struct ck_record r[MAX_RECS];
	size_t n_records;
	size_t n_template_msgs;
	uint32_t domain;
	uint32_t last_export_time;
	bool seq_checked;          /* sequence numbers must count records so far */
};

static uint64_t be(const uint8_t *p, size_t len)
{
	uint64_t v = 0;

	for (size_t i = 0; i < len; i++)
		v = v << 8 | p[i];
	return v;
}

static const struct ck_template *ck_template(const struct ck *c, uint16_t id)
{
	for (size_t i = 0; i < c->n_templates; i++)
		if (c->t[i].id == id)
			return &c->t[i];
	return NULL;
}

static void ck_templates(struct ck *c, const uint8_t *p, size_t len)
{
	while (len >= 4) {
		struct ck_template t = { .id = (uint16_t)be(p, 2), .n_fields = be(p + 2, 2) };
		size_t off = 4;

		cr_assert_geq(t.id, 256);
		cr_assert_leq(t.n_fields, 64);
		for (size_t i = 0; i < t.n_fields; i++) {
			cr_assert_leq(off + 4, len, "template field runs past its set");
			t.f[i].id = (uint16_t)(be(p + off, 2) & 0x7fff);
			t.f[i].len = (uint16_t)be(p + off + 2, 2);
			if (p[off] & 0x80) {
				cr_assert_leq(off + 8, len);
				t.f[i].pen = (uint32_t)be(p + off + 4, 4);
				off += 4;
			}
			off += 4;
			t.rec_len += t.f[i].len;
		}
		if (!ck_template(c, t.id)) {
			cr_assert_lt(c->n_templates, 4);
			c->t[c->n_templates++] = t;
		}
		p += off;
		len -= off;
	}
	cr_assert_eq(len, 0, "template set has %zu trailing bytes", len);
}

/* Reads one message; data records keep pointing into msg. */
static void ck_message(struct ck *c, const uint8_t *msg, size_t len)
{
	size_t off = 16, n_data = 0, first_record = c->n_records;

	/* header: version 10, length, export time, sequence, domain */
	cr_assert_geq(len, 16);
	cr_assert_eq(be(msg, 2), 10, "version");
	cr_assert_eq(be(msg + 2, 2), len, "header length %llu, message %zu", (unsigned long long)be(msg + 2, 2), len);
	cr_assert_eq(be(msg + 12, 4), c->domain, "observation domain");
	if (c->seq_checked)
		cr_assert_eq(be(msg + 8, 4), (uint32_t)first_record, "sequence number");
	c->last_export_time = (uint32_t)be(msg + 4, 4);
	while (off < len) {
		uint16_t set_id, set_len;

		cr_assert_leq(off + 4, len, "set header past the message");
		set_id = (uint16_t)be(msg + off, 2);
		set_len = (uint16_t)be(msg + off + 2, 2);
		cr_assert_geq(set_len, 4);
		cr_assert_leq(off + set_len, len, "set of %u bytes runs past the message", set_len);
		if (set_id == 2) {
			ck_templates(c, msg + off + 4, set_len - 4u);
		} else {
			const struct ck_template *t = ck_template(c, set_id);

			cr_assert_not_null(t, "data set %u before its template", set_id);
			cr_assert_eq((set_len - 4u) % t->rec_len, 0, "set %u holds a partial record", set_id);
			for (size_t p = off + 4; p < off + set_len; p += t->rec_len) {
				cr_assert_lt(c->n_records, MAX_RECS);
				c->r[c->n_records++] = (struct ck_record){ t, msg + p };
				n_data++;
			}
		}
		off += set_len;
	}
	if (!n_data)
		c->n_template_msgs++;
}

/* The value of element (pen, id) in a record, with its length; fails if absent. */
static const uint8_t *ck_field(const struct ck_record *r, uint32_t pen, uint16_t id, size_t *len)
{
	size_t off = 0;

	for (size_t i = 0; i < r->t->n_fields; i++) {
		if (r->t->f[i].id == id && r->t->f[i].pen == pen) {
			*len = r->t->f[i].len;
			return r->p + off;
		}
		off += r->t->f[i].len;
	}
	cr_assert_fail("element %u/%u missing from template %u", pen, id, r->t->id);
	return NULL;
}

static uint64_t ck_u(const struct ck_record *r, uint32_t pen, uint16_t id)
{
	size_t len;
	const uint8_t *p = ck_field(r, pen, id, &len);

	cr_assert_leq(len, 8);
	return be(p, len);
}

/* NTP timestamp back to Unix nanoseconds, truncating. */
static uint64_t ntp_to_ns(uint64_t ntp)
{
	return ((ntp >> 32) - 2208988800ull) * MM_NS_PER_SEC + ((ntp & 0xffffffffull) * MM_NS_PER_SEC >> 32);
}

static void ck_addr(const struct ck_record *r, uint16_t id, const struct mm_addr *want, bool v4)
{
	size_t len;
	const uint8_t *p = ck_field(r, 0, id, &len);

	cr_assert_eq(len, v4 ? 4u : 16u, "address element %u length", id);
	cr_assert_eq(memcmp(p, v4 ? want->b + 12 : want->b, len), 0, "address element %u", id);
}

/* Every element of r against the flow it came from. */
static void ck_flow(const struct ck_record *r, const struct mm_flow *f)
{
	bool v4 = mm_addr_is_v4(&f->src), icmp = f->proto == 1 || f->proto == 58;

	cr_assert_eq(r->t->id, v4 ? 256 : 257);
	ck_addr(r, v4 ? 8 : 27, &f->src, v4);
	ck_addr(r, v4 ? 12 : 28, &f->dst, v4);
	ck_addr(r, v4 ? 15 : 62, &f->next_hop, v4);
	cr_assert_eq(ntp_to_ns(ck_u(r, 0, 156)), f->first_ns, "flowStartNanoseconds");
	cr_assert_eq(ntp_to_ns(ck_u(r, 0, 157)), f->last_ns, "flowEndNanoseconds");
	cr_assert_eq(ck_u(r, 0, 152), f->first_ns / 1000000, "flowStartMilliseconds");
	cr_assert_eq(ck_u(r, 0, 153), f->last_ns / 1000000, "flowEndMilliseconds");
	cr_assert_eq(ck_u(r, 0, 1), f->fwd_bytes);
	cr_assert_eq(ck_u(r, 0, 2), f->fwd_packets);
	cr_assert_eq(ck_u(r, 29305, 1), f->rev_bytes);   /* reverseOctetDeltaCount */
	cr_assert_eq(ck_u(r, 29305, 2), f->rev_packets); /* reversePacketDeltaCount */
	cr_assert_eq(ck_u(r, 0, 148), f->id);
	cr_assert_eq(ck_u(r, 0, 138), f->sensor_id);
	cr_assert_eq(ck_u(r, 0, 34), f->sampling_rate > 1 ? f->sampling_rate : 1);
	cr_assert_eq(ck_u(r, 0, 16), f->src_as);
	cr_assert_eq(ck_u(r, 0, 17), f->dst_as);
	cr_assert_eq(ck_u(r, 0, 10), f->in_if);
	cr_assert_eq(ck_u(r, 0, 14), f->out_if);
	cr_assert_eq(ck_u(r, 0, 7), icmp ? 0 : f->src_port);
	cr_assert_eq(ck_u(r, 0, 11), icmp ? 0 : f->dst_port);
	cr_assert_eq(ck_u(r, 0, v4 ? 32 : 139), icmp ? (unsigned)(f->icmp_type << 8 | f->icmp_code) : 0u);
	cr_assert_eq(ck_u(r, 0, 58), f->vlan);
	cr_assert_eq(ck_u(r, 0, 6), f->fwd_tcp_flags);
	cr_assert_eq(ck_u(r, 29305, 6), f->rev_tcp_flags); /* reverseTcpControlBits */
	cr_assert_eq(ck_u(r, 0, 4), f->proto);
	cr_assert_eq(ck_u(r, 0, 136), f->end_reason);
}

/* ---- loopback plumbing ------------------------------------------------- */

struct fake_clock {
	uint64_t now;
};

static uint64_t fake_now(void *ctx)
{
	return ((struct fake_clock *)ctx)->now;
}

static int bind_loopback(int type, bool v6, uint16_t *port)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int fd = socket(v6 ? AF_INET6 : AF_INET, type | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	if (v6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_loopback;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		s4->sin_family = AF_INET;
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	}
	if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
		close(fd);
		return -1;
	}
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	*port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
	if (type == SOCK_STREAM)
		cr_assert_eq(listen(fd, 4), 0);
	return fd;
}

struct datagrams {
	uint8_t buf[MAX_MSGS][65536];
	size_t len[MAX_MSGS];
	size_t n;
};

/* Loopback delivers synchronously: everything sent is queued on fd already. */
static void drain_udp(int fd, struct datagrams *d)
{
	for (;;) {
		ssize_t r;

		cr_assert_lt(d->n, MAX_MSGS);
		r = recv(fd, d->buf[d->n], sizeof(d->buf[0]), MSG_DONTWAIT);
		if (r < 0) {
			cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
			return;
		}
		d->len[d->n++] = (size_t)r;
	}
}

static struct mm_ipfix_exporter *udp_exporter(uint16_t port, struct mm_ipfix_export_config *cfg)
{
	struct mm_ipfix_exporter *e;
	char dest[64];

	snprintf(dest, sizeof(dest), "127.0.0.1:%u", port);
	cfg->dest = dest;
	cr_assert_eq(mm_ipfix_exporter_new(&e, cfg), 0, "%s", mm_last_error());
	return e;
}

static void assert_accounted(const struct mm_ipfix_exporter *e)
{
	struct mm_ipfix_export_stats s;

	mm_ipfix_exporter_get_stats(e, &s);
	cr_assert_eq(s.records_in, s.records_sent + s.records_dropped + s.records_failed +
					   s.records_skipped + s.records_queued,
		     "in %llu != sent %llu + dropped %llu + failed %llu + skipped %llu + queued %llu",
		     (unsigned long long)s.records_in, (unsigned long long)s.records_sent,
		     (unsigned long long)s.records_dropped, (unsigned long long)s.records_failed,
		     (unsigned long long)s.records_skipped, (unsigned long long)s.records_queued);
}

static struct datagrams *new_datagrams(void)
{
	struct datagrams *d = calloc(1, sizeof(*d));

	cr_assert_not_null(d);
	return d;
}

/* ---- unit: our own reader --------------------------------------------- */

Test(ipfix_export, ntp_timestamps_are_exact)
{
	struct mm_flow f[5];
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct datagrams *d = new_datagrams();
	uint16_t port;
	int fd = bind_loopback(SOCK_DGRAM, false, &port);
	static struct ck c = { .domain = 7, .seq_checked = true };
	size_t len;
	const uint8_t *p;

	sample_flows(f);
	/* The fraction is the first 2^-32 s unit above the nanosecond. */
	f[0].first_ns = T0 * MM_NS_PER_SEC + 500000000; /* half a second: 0x80000000 units, +1 */
	f[0].last_ns = T0 * MM_NS_PER_SEC + 1;          /* 1 ns = 4.29 units: 5 */
	mm_ipfix_export_config_default(&cfg, 7);
	e = udp_exporter(port, &cfg);
	mm_ipfix_exporter_write(e, f, 1);
	cr_assert_eq(mm_ipfix_exporter_finish(e), 0, "%s", mm_last_error());
	drain_udp(fd, d);
	for (size_t i = 0; i < d->n; i++)
		ck_message(&c, d->buf[i], d->len[i]);
	cr_assert_eq(c.n_records, 1);
	p = ck_field(&c.r[0], 0, 156, &len);
	cr_assert_eq(len, 8);
	cr_assert_eq(be(p, 4), NTP_T0);
	cr_assert_eq(be(p + 4, 4), 0x80000001u);
	p = ck_field(&c.r[0], 0, 157, &len);
	cr_assert_eq(be(p, 4), NTP_T0);
	cr_assert_eq(be(p + 4, 4), 5);
	mm_ipfix_exporter_free(e);
	close(fd);
	free(d);
}

Test(ipfix_export, every_field_reads_back)
{
	struct mm_flow f[5];
	size_t n = sample_flows(f);
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct mm_ipfix_export_stats s;
	struct datagrams *d = new_datagrams();
	uint16_t port;
	int fd = bind_loopback(SOCK_DGRAM, false, &port);
	static struct ck c = { .domain = 99, .seq_checked = true };

	mm_ipfix_export_config_default(&cfg, 7);
	cfg.domain_id = 99;
	e = udp_exporter(port, &cfg);
	mm_ipfix_exporter_write(e, f, n);
	cr_assert_eq(mm_ipfix_exporter_finish(e), 0, "%s", mm_last_error());
	drain_udp(fd, d);
	/* one template message, then one data message with a v4 set, a v6 set */
	cr_assert_eq(d->n, 2);
	for (size_t i = 0; i < d->n; i++)
		ck_message(&c, d->buf[i], d->len[i]);
	cr_assert_eq(c.n_template_msgs, 1);
	cr_assert_eq(c.n_templates, 2);
	cr_assert_eq(c.t[0].rec_len, 122);
	cr_assert_eq(c.t[1].rec_len, 158);
	cr_assert_eq(c.n_records, n);
	for (size_t i = 0; i < n; i++)
		ck_flow(&c.r[i], &f[i]);
	mm_ipfix_exporter_get_stats(e, &s);
	cr_assert_eq(s.records_sent, n);
	cr_assert_eq(s.messages_sent, 1);
	cr_assert_eq(s.template_messages_sent, 1);
	cr_assert_eq(s.bytes_sent, d->len[0] + d->len[1]);
	assert_accounted(e);
	mm_ipfix_exporter_free(e);
	close(fd);
	free(d);
}

Test(ipfix_export, messages_fit_the_mtu_and_sequence_counts_records)
{
	static struct mm_flow f[300];
	struct mm_flow base[5];
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct datagrams *d = new_datagrams();
	uint16_t port;
	int fd = bind_loopback(SOCK_DGRAM, false, &port);
	static struct ck c = { .domain = 7, .seq_checked = true };

	sample_flows(base);
	for (size_t i = 0; i < 300; i++) {
		f[i] = base[i % 5]; /* families alternate, so sets open and close */
		f[i].id = i + 1;
	}
	mm_ipfix_export_config_default(&cfg, 7);
	cfg.mtu = 512;
	cfg.template_refresh_msgs = 0;
	e = udp_exporter(port, &cfg);
	mm_ipfix_exporter_write(e, f, 300);
	cr_assert_eq(mm_ipfix_exporter_finish(e), 0, "%s", mm_last_error());
	drain_udp(fd, d);
	for (size_t i = 0; i < d->n; i++) {
		cr_assert_leq(d->len[i], 512, "message %zu is %zu bytes", i, d->len[i]);
		ck_message(&c, d->buf[i], d->len[i]);
	}
	cr_assert_eq(c.n_template_msgs, 1);
	cr_assert_eq(c.n_records, 300);
	for (size_t i = 0; i < 300; i++)
		ck_flow(&c.r[i], &f[i]);
	assert_accounted(e);
	mm_ipfix_exporter_free(e);
	close(fd);
	free(d);
}

Test(ipfix_export, udp_templates_refresh_by_count_and_time)
{
	struct mm_flow f[5];
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct datagrams *d = new_datagrams();
	struct fake_clock clk = { .now = T0 * MM_NS_PER_SEC };
	uint16_t port;
	int fd = bind_loopback(SOCK_DGRAM, false, &port);
	static struct ck c = { .domain = 7, .seq_checked = true };

	sample_flows(f);
	mm_ipfix_export_config_default(&cfg, 7);
	cfg.template_refresh_msgs = 2;
	cfg.template_refresh_ns = 10 * MM_NS_PER_SEC;
	cfg.clock = fake_now;
	cfg.clock_ctx = &clk;
	e = udp_exporter(port, &cfg);
	for (int i = 0; i < 3; i++) { /* 3 data messages: T D D T D */
		mm_ipfix_exporter_write(e, f, 1);
		mm_ipfix_exporter_flush(e);
	}
	drain_udp(fd, d);
	cr_assert_eq(d->n, 5);
	clk.now += 9 * MM_NS_PER_SEC; /* 9 s later: due by neither rule yet */
	mm_ipfix_exporter_write(e, f, 1);
	mm_ipfix_exporter_flush(e);
	drain_udp(fd, d);
	cr_assert_eq(d->n, 6);
	clk.now += 1 * MM_NS_PER_SEC; /* 10 s after the last template */
	mm_ipfix_exporter_write(e, f, 1);
	mm_ipfix_exporter_flush(e);
	drain_udp(fd, d);
	cr_assert_eq(d->n, 8);
	for (size_t i = 0; i < d->n; i++)
		ck_message(&c, d->buf[i], d->len[i]);
	cr_assert_eq(c.n_template_msgs, 3);
	cr_assert_eq(c.n_records, 5);
	cr_assert_eq(c.last_export_time, (uint32_t)(T0 + 10), "export time follows the clock");
	mm_ipfix_exporter_free(e);
	close(fd);
	free(d);
}

Test(ipfix_export, idle_tail_is_flushed_by_poll)
{
	struct mm_flow f[5];
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct datagrams *d = new_datagrams();
	struct fake_clock clk = { .now = T0 * MM_NS_PER_SEC };
	uint16_t port;
	int fd = bind_loopback(SOCK_DGRAM, false, &port);

	sample_flows(f);
	mm_ipfix_export_config_default(&cfg, 7);
	cfg.clock = fake_now;
	cfg.clock_ctx = &clk;
	e = udp_exporter(port, &cfg);
	mm_ipfix_exporter_write(e, f, 2);
	clk.now += cfg.flush_ns - 1;
	mm_ipfix_exporter_poll(e);
	drain_udp(fd, d);
	cr_assert_eq(d->n, 0, "a partly filled message went out before flush_ns");
	clk.now += 1;
	mm_ipfix_exporter_poll(e);
	drain_udp(fd, d);
	cr_assert_eq(d->n, 2, "template and data message after flush_ns");
	mm_ipfix_exporter_free(e);
	close(fd);
	free(d);
}

Test(ipfix_export, ipv6_destination_and_mixed_family_flows)
{
	struct mm_flow f[5];
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct mm_ipfix_export_stats s;
	struct datagrams *d = new_datagrams();
	uint16_t port;
	int fd = bind_loopback(SOCK_DGRAM, true, &port);
	char dest[64];
	static struct ck c = { .domain = 7, .seq_checked = true };

	if (fd < 0)
		cr_skip_test("no IPv6 loopback here");
	sample_flows(f);
	f[1].dst = addr("2001:db8::1"); /* v4 source, v6 destination: cannot be encoded */
	mm_ipfix_export_config_default(&cfg, 7);
	snprintf(dest, sizeof(dest), "udp://[::1]:%u", port);
	cfg.dest = dest;
	cr_assert_eq(mm_ipfix_exporter_new(&e, &cfg), 0, "%s", mm_last_error());
	mm_ipfix_exporter_write(e, f, 5);
	cr_assert_eq(mm_ipfix_exporter_finish(e), 0);
	drain_udp(fd, d);
	for (size_t i = 0; i < d->n; i++)
		ck_message(&c, d->buf[i], d->len[i]);
	cr_assert_eq(c.n_records, 4);
	mm_ipfix_exporter_get_stats(e, &s);
	cr_assert_eq(s.records_skipped, 1);
	assert_accounted(e);
	mm_ipfix_exporter_free(e);
	close(fd);
	free(d);
}

Test(ipfix_export, bad_destinations_are_named)
{
	static const char *const bad[] = { "collector", "192.0.2.1", "2001:db8::1:4739", "[::1]4739",
					   "[::1:4739", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:http",
					   ":4739", "sctp://127.0.0.1:4739", "no-such-host.invalid:4739" };
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;

	mm_ipfix_export_config_default(&cfg, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.dest = bad[i];
		cr_assert_eq(mm_ipfix_exporter_new(&e, &cfg), MM_EINVAL, "accepted '%s'", bad[i]);
		cr_assert_null(e);
		cr_assert(strstr(mm_last_error(), bad[i]) != NULL, "'%s' not quoted in: %s", bad[i],
			  mm_last_error());
	}
	cfg.dest = "127.0.0.1:4739";
	cfg.mtu = 100;
	cr_assert_eq(mm_ipfix_exporter_new(&e, &cfg), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "mtu") != NULL);
}

/* ---- TCP: one stream, templates per session, reconnect, counted loss ---- */

/* Reads whole messages from a TCP stream into d until want records arrived. */
static void read_stream(int fd, struct datagrams *d, struct ck *c, size_t want)
{
	while (c->n_records < want) {
		uint8_t *m = d->buf[d->n];
		size_t have = 0, need = 4;
		struct pollfd p = { .fd = fd, .events = POLLIN };

		cr_assert_lt(d->n, MAX_MSGS);
		while (have < need) {
			ssize_t r;

			/* a hang guard, not a timing assertion */
			cr_assert_gt(poll(&p, 1, 10000), 0, "collector got %zu of %zu records", c->n_records, want);
			r = recv(fd, m + have, need - have, 0);
			cr_assert_gt(r, 0, "stream ended after %zu of %zu records", c->n_records, want);
			have += (size_t)r;
			if (have == 4)
				need = be(m + 2, 2); /* the header's length field */
		}
		d->len[d->n] = have;
		ck_message(c, m, have);
		d->n++;
	}
}

static int accept_one(int listen_fd)
{
	struct pollfd p = { .fd = listen_fd, .events = POLLIN };

	cr_assert_gt(poll(&p, 1, 10000), 0, "exporter did not connect");
	return accept(listen_fd, NULL, NULL);
}

Test(ipfix_export, tcp_session_reconnect_and_counted_loss)
{
	struct mm_flow f[5];
	size_t n = sample_flows(f);
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct mm_ipfix_export_stats s;
	struct datagrams *d = new_datagrams();
	struct fake_clock clk = { .now = T0 * MM_NS_PER_SEC };
	uint16_t port;
	int lfd = bind_loopback(SOCK_STREAM, false, &port), cfd;
	char dest[64];
	static struct ck first = { .domain = 7, .seq_checked = true };
	static struct ck second = { .domain = 7, .seq_checked = true };

	mm_ipfix_export_config_default(&cfg, 7);
	snprintf(dest, sizeof(dest), "tcp://127.0.0.1:%u", port);
	cfg.dest = dest;
	cfg.clock = fake_now;
	cfg.clock_ctx = &clk;
	cfg.queue_msgs = 2;
	cfg.drain_ns = MM_NS_PER_SEC / 5;
	cr_assert_eq(mm_ipfix_exporter_new(&e, &cfg), 0, "%s", mm_last_error());
	cfd = accept_one(lfd);
	for (int i = 0; i < 3; i++) { /* three messages, templates only before the first */
		mm_ipfix_exporter_write(e, f, n);
		mm_ipfix_exporter_flush(e);
	}
	read_stream(cfd, d, &first, 3 * n);
	cr_assert_eq(first.n_template_msgs, 1, "TCP sends templates once per session");
	for (size_t i = 0; i < 3 * n; i++)
		ck_flow(&first.r[i], &f[i % n]);

	/* The collector goes away: the next message waits, then a new session
	 * starts after the backoff with templates and sequence 0 again. */
	close(cfd);
	mm_ipfix_exporter_write(e, f, n);
	mm_ipfix_exporter_flush(e);
	mm_ipfix_exporter_get_stats(e, &s);
	cr_assert_eq(s.disconnects, 1);
	cr_assert_eq(s.records_queued, n);
	clk.now += cfg.reconnect_min_ns;
	mm_ipfix_exporter_poll(e);
	cfd = accept_one(lfd);
	for (int i = 0; i < 10000 && (mm_ipfix_exporter_get_stats(e, &s), s.records_queued); i++) {
		mm_ipfix_exporter_poll(e); /* completes the connect and sends */
		usleep(1000);
	}
	read_stream(cfd, d, &second, n);
	cr_assert_eq(second.n_template_msgs, 1);
	cr_assert_eq(second.n_records, n);
	for (size_t i = 0; i < n; i++)
		ck_flow(&second.r[i], &f[i]);

	/* Nobody listens any more: the queue of two messages fills and the
	 * oldest are dropped, the rest fail at finish; every record is counted. */
	close(cfd);
	close(lfd);
	for (int i = 0; i < 5; i++) {
		mm_ipfix_exporter_write(e, f, n);
		mm_ipfix_exporter_flush(e);
		clk.now += 10 * MM_NS_PER_SEC;
		mm_ipfix_exporter_poll(e);
	}
	cr_assert_eq(mm_ipfix_exporter_finish(e), MM_EIO);
	cr_assert(strstr(mm_last_error(), "records not sent") != NULL, "%s", mm_last_error());
	mm_ipfix_exporter_get_stats(e, &s);
	cr_assert_eq(s.records_sent, 4 * n);
	cr_assert_gt(s.records_dropped, 0);
	cr_assert_gt(s.queue_full, 0);
	cr_assert_gt(s.connect_failures, 0);
	cr_assert_eq(s.records_queued, 0);
	cr_assert_eq(s.records_dropped + s.records_failed, 5 * n);
	assert_accounted(e);
	mm_ipfix_exporter_free(e);
	free(d);
}

/* ---- third-party decoders ---------------------------------------------- */

/* An unknown next hop (all zero) reads 0.0.0.0 in an IPv4 record. */
static const char *next_hop_text(const struct mm_flow *f, char buf[MM_ADDR_STRLEN])
{
	if (mm_addr_is_v4(&f->src) && !mm_addr_is_v4(&f->next_hop))
		return "0.0.0.0";
	return mm_addr_format(&f->next_hop, buf);
}

static void remove_tree(char *dir)
{
	const char *argv[] = { "rm", "-rf", dir, NULL };

	tu_run(argv, NULL, NULL, NULL);
	free(dir);
}

static bool have_tool(const char *name)
{
	const char *argv[] = { "sh", "-c", NULL, NULL };
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null", name);
	argv[2] = cmd;
	return tu_run(argv, NULL, NULL, NULL) == 0;
}

static void put_le32(FILE *fp, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };

	cr_assert_eq(fwrite(b, 1, 4, fp), 4);
}

/* The datagrams as a pcap of raw IPv4 packets 127.0.0.1:12345 -> 127.0.0.1:port. */
static void write_pcap(const char *path, const struct datagrams *d, uint16_t port)
{
	FILE *fp = fopen(path, "wb");

	cr_assert_not_null(fp);
	put_le32(fp, 0xa1b2c3d4); /* pcap magic, microsecond timestamps */
	put_le32(fp, 2 | 4 << 16); /* version 2.4 */
	put_le32(fp, 0);          /* thiszone */
	put_le32(fp, 0);          /* sigfigs */
	put_le32(fp, 65535);      /* snaplen */
	put_le32(fp, 101);        /* LINKTYPE_RAW: packets start with the IP header */
	for (size_t i = 0; i < d->n; i++) {
		size_t ip_len = 20 + 8 + d->len[i];
		uint8_t h[28] = {
			0x45, 0, (uint8_t)(ip_len >> 8), (uint8_t)ip_len, /* IPv4, IHL 5, total length */
			0, 0, 0, 0, 64, 17, 0, 0,                         /* id, frag, TTL 64, UDP, checksum 0 */
			127, 0, 0, 1, 127, 0, 0, 1,                       /* 127.0.0.1 -> 127.0.0.1 */
			0x30, 0x39, (uint8_t)(port >> 8), (uint8_t)port,  /* UDP 12345 -> port */
			(uint8_t)((ip_len - 20) >> 8), (uint8_t)(ip_len - 20), 0, 0, /* UDP length, checksum 0 */
		};

		put_le32(fp, (uint32_t)(T0 + i)); /* record header: seconds, usec, caplen, len */
		put_le32(fp, 0);
		put_le32(fp, (uint32_t)ip_len);
		put_le32(fp, (uint32_t)ip_len);
		cr_assert_eq(fwrite(h, 1, sizeof(h), fp), sizeof(h));
		cr_assert_eq(fwrite(d->buf[i], 1, d->len[i], fp), d->len[i]);
	}
	cr_assert_eq(fclose(fp), 0);
}

/* "Jan  1, 2026 00:00:00.123456789 UTC", as tshark prints absolute times. */
static void tshark_time(uint64_t ns, char *buf, size_t cap)
{
	time_t sec = (time_t)(ns / MM_NS_PER_SEC);
	struct tm tm;
	char day[64];

	gmtime_r(&sec, &tm);
	strftime(day, sizeof(day), "%b %e, %Y %H:%M:%S", &tm);
	snprintf(buf, cap, "%s.%09llu UTC", day, (unsigned long long)(ns % MM_NS_PER_SEC));
}

/*
 * Finds the next occurrence of "key": "value" after *pos that lies before
 * end and checks its value; advancing *pos lets a record's repeated keys
 * (forward, then reverse counters) be checked in order.
 */
static void expect_json(const char **pos, const char *end, const char *key, const char *value)
{
	char pat[96];
	const char *hit, *v;

	snprintf(pat, sizeof(pat), "\"%s\": \"", key);
	hit = strstr(*pos, pat);
	cr_assert(hit && hit < end, "tshark shows no %s for this record", key);
	v = hit + strlen(pat);
	cr_assert(strncmp(v, value, strlen(value)) == 0 && v[strlen(value)] == '"',
		  "%s: tshark says %.40s, expected %s", key, v, value);
	*pos = v;
}

static void expect_json_u(const char **pos, const char *end, const char *key, uint64_t value)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)value);
	expect_json(pos, end, key, buf);
}

static void expect_json_x(const char **pos, const char *end, const char *key, unsigned value)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "0x%04x", value);
	expect_json(pos, end, key, buf);
}

/* One tshark "Flow N" object against the flow it came from, field by field. */
static void tshark_check_flow(const char *obj, const char *end, const struct mm_flow *f)
{
	bool v4 = mm_addr_is_v4(&f->src), icmp = f->proto == 1 || f->proto == 58;
	char a[MM_ADDR_STRLEN], t[80];
	const char *p = obj;

	expect_json(&p, end, v4 ? "cflow.srcaddr" : "cflow.srcaddrv6", mm_addr_format(&f->src, a));
	expect_json(&p, end, v4 ? "cflow.dstaddr" : "cflow.dstaddrv6", mm_addr_format(&f->dst, a));
	expect_json(&p, end, v4 ? "cflow.nexthop" : "cflow.nexthopv6", next_hop_text(f, a));
	tshark_time(f->first_ns, t, sizeof(t));
	expect_json(&p, end, "cflow.abstimestart", t);
	tshark_time(f->last_ns, t, sizeof(t));
	expect_json(&p, end, "cflow.abstimeend", t);
	tshark_time(f->first_ns / 1000000 * 1000000, t, sizeof(t)); /* the millisecond copies */
	expect_json(&p, end, "cflow.abstimestart", t);
	tshark_time(f->last_ns / 1000000 * 1000000, t, sizeof(t));
	expect_json(&p, end, "cflow.abstimeend", t);
	expect_json_u(&p, end, "cflow.octets", f->fwd_bytes);
	expect_json_u(&p, end, "cflow.packets", f->fwd_packets);
	expect_json_u(&p, end, "cflow.octets", f->rev_bytes);     /* reverse, PEN 29305 */
	expect_json_u(&p, end, "cflow.packets", f->rev_packets);
	expect_json_u(&p, end, "cflow.flow_id", f->id);
	expect_json_u(&p, end, "cflow.observation_point_id", f->sensor_id);
	expect_json_u(&p, end, "cflow.sampling_interval", f->sampling_rate > 1 ? f->sampling_rate : 1);
	expect_json_u(&p, end, "cflow.srcas", f->src_as);
	expect_json_u(&p, end, "cflow.dstas", f->dst_as);
	expect_json_u(&p, end, "cflow.inputint", f->in_if);
	expect_json_u(&p, end, "cflow.outputint", f->out_if);
	expect_json_u(&p, end, "cflow.srcport", icmp ? 0 : f->src_port);
	expect_json_u(&p, end, "cflow.dstport", icmp ? 0 : f->dst_port);
	if (v4) {
		expect_json_x(&p, end, "cflow.icmp_type_code_ipv4", icmp ? (unsigned)(f->icmp_type << 8 | f->icmp_code) : 0);
	} else {
		expect_json_u(&p, end, "cflow.icmp_ipv6_type", icmp ? f->icmp_type : 0);
		expect_json_u(&p, end, "cflow.icmp_ipv6_code", icmp ? f->icmp_code : 0);
	}
	expect_json_u(&p, end, "cflow.vlanid", f->vlan);
	expect_json_x(&p, end, "cflow.tcpflags", f->rev_tcp_flags); /* reverse, PEN 29305 */
	expect_json_x(&p, end, "cflow.tcpflags", f->fwd_tcp_flags);
	expect_json_u(&p, end, "cflow.protocol", f->proto);
	expect_json_u(&p, end, "cflow.flow_end_reason", f->end_reason);
}

Test(ipfix_export, tshark_decodes_every_field)
{
	struct mm_flow f[5];
	size_t n = sample_flows(f);
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct datagrams *d = new_datagrams();
	uint16_t port;
	int fd = bind_loopback(SOCK_DGRAM, false, &port);
	char *dir = tu_tmpdir(), pcap[256], decode_as[64], *json = NULL, *err = NULL;
	const char *p;
	size_t i = 0;

	if (!have_tool("tshark"))
		cr_skip_test("tshark is not installed (apt-get install tshark)");
	mm_ipfix_export_config_default(&cfg, 7);
	e = udp_exporter(port, &cfg);
	mm_ipfix_exporter_write(e, f, n);
	cr_assert_eq(mm_ipfix_exporter_finish(e), 0);
	drain_udp(fd, d);
	snprintf(pcap, sizeof(pcap), "%s/ipfix.pcap", dir);
	write_pcap(pcap, d, port);
	snprintf(decode_as, sizeof(decode_as), "udp.port==%u,cflow", port);
	{
		const char *argv[] = { "tshark", "-r", pcap, "-d", decode_as, "-T", "json", NULL };

		cr_assert_eq(tu_run(argv, NULL, &json, &err), 0, "tshark failed: %s", err);
	}
	cr_assert(strstr(json, "\"cflow.version\": \"10\"") != NULL, "tshark did not see IPFIX");
	/* records appear in export order, v4 set then v6 set */
	for (p = strstr(json, "\"Flow 1\""); p; i++) {
		const char *next = strstr(p + 1, "\"Flow ");
		const char *end = next ? next : json + strlen(json);

		cr_assert_lt(i, n, "tshark shows more records than were sent");
		tshark_check_flow(p, end, &f[i]);
		p = next;
	}
	cr_assert_eq(i, n, "tshark shows %zu records of %zu", i, n);
	mm_ipfix_exporter_free(e);
	close(fd);
	remove_tree(dir);
	free(json);
	free(err);
	free(d);
}

static pid_t nfcapd_pid;
static uint16_t nfcapd_port;

/* Runs even when an assertion failed, so no collector outlives its test. */
static void stop_nfcapd(void)
{
	if (nfcapd_pid > 0)
		tu_stop_nfcapd(nfcapd_pid, nfcapd_port);
	nfcapd_pid = 0;
}

static void start_nfcapd(const char *dir, const char *flow_dir, uint16_t port)
{
	char port_text[8], log[300];
	/* -t: one file for the whole test; SIGTERM closes it */
	const char *argv[] = { "nfcapd", "-b", "127.0.0.1", "-p", port_text, "-w", flow_dir, "-t", "3600", NULL };
	int fd;

	snprintf(port_text, sizeof(port_text), "%u", port);
	nfcapd_port = port;
	snprintf(log, sizeof(log), "%s/nfcapd.log", dir);
	nfcapd_pid = fork();
	cr_assert_geq(nfcapd_pid, 0);
	if (nfcapd_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* and if the test process itself dies */
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
}

/* nfcapd has bound its port when ours can no longer bind it. */
static void wait_nfcapd_bound(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	for (int i = 0; i < 200; i++) {
		int fd = socket(AF_INET, SOCK_DGRAM, 0), rc = bind(fd, (struct sockaddr *)&sin, sizeof(sin));

		close(fd);
		if (rc != 0)
			return;
		cr_assert_eq(waitpid(nfcapd_pid, NULL, WNOHANG), 0, "nfcapd exited at startup");
		usleep(50000);
	}
	cr_assert_fail("nfcapd never bound 127.0.0.1:%u", port);
}

/*
 * Waits until nfcapd has read every datagram queued on its socket (the
 * rx_queue column of /proc/net/udp), so SIGTERM does not race the data.
 */
static void wait_nfcapd_drained(uint16_t port)
{
	char want[32];

	snprintf(want, sizeof(want), "0100007F:%04X ", port);
	for (int i = 0; i < 200; i++) {
		char *table = tu_read_file("/proc/net/udp", NULL), *line;
		unsigned tx = 0, rx = 1;

		cr_assert_not_null(table);
		line = strstr(table, want);
		cr_assert_not_null(line, "nfcapd's socket is gone");
		/* local rem st tx_queue:rx_queue */
		cr_assert_eq(sscanf(line, "%*s %*s %*s %x:%x", &tx, &rx), 2);
		free(table);
		if (rx == 0)
			return;
		usleep(20000);
	}
	cr_assert_fail("nfcapd never read its socket");
}

static uint16_t free_udp_port(void)
{
	uint16_t port;
	int fd = bind_loopback(SOCK_DGRAM, false, &port);

	close(fd);
	return port;
}

/* nfdump's flag text: CWR ECE URG ACK PSH RST SYN FIN, '.' when clear. */
static void nfdump_flags(uint8_t flags, char buf[9])
{
	for (int i = 0; i < 8; i++)
		buf[i] = flags & (0x80 >> i) ? "CEUAPRSF"[i] : '.';
	buf[8] = '\0';
}

/* nfdump -o json writes "key" : value, strings quoted, numbers bare. */
static void expect_nfdump(const char *rec, const char *end, const char *key, const char *value, bool quoted)
{
	char pat[64];
	const char *hit, *v;

	snprintf(pat, sizeof(pat), "\"%s\" : %s", key, quoted ? "\"" : "");
	hit = strstr(rec, pat);
	cr_assert(hit && hit < end, "nfdump shows no %s for this record", key);
	v = hit + strlen(pat);
	cr_assert(strncmp(v, value, strlen(value)) == 0 && strchr(quoted ? "\"" : ",\n", v[strlen(value)]),
		  "%s: nfdump says %.30s, expected %s", key, v, value);
}

static void expect_nfdump_u(const char *rec, const char *end, const char *key, uint64_t value)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)value);
	expect_nfdump(rec, end, key, buf, false);
}

/* "2026-01-01T00:00:00.123": nfdump keeps milliseconds. */
static void nfdump_time(uint64_t ns, char *buf, size_t cap)
{
	time_t sec = (time_t)(ns / MM_NS_PER_SEC);
	struct tm tm;
	char day[32];

	gmtime_r(&sec, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, cap, "%s.%03llu", day, (unsigned long long)(ns % MM_NS_PER_SEC / 1000000));
}

static void nfdump_check_flow(const char *rec, const char *end, const struct mm_flow *f)
{
	bool v4 = mm_addr_is_v4(&f->src), icmp = f->proto == 1 || f->proto == 58;
	char a[MM_ADDR_STRLEN], t[64], flags[9];

	nfdump_time(f->first_ns, t, sizeof(t));
	expect_nfdump(rec, end, "first", t, true);
	nfdump_time(f->last_ns, t, sizeof(t));
	expect_nfdump(rec, end, "last", t, true);
	expect_nfdump(rec, end, v4 ? "src4_addr" : "src6_addr", mm_addr_format(&f->src, a), true);
	expect_nfdump(rec, end, v4 ? "dst4_addr" : "dst6_addr", mm_addr_format(&f->dst, a), true);
	expect_nfdump_u(rec, end, "proto", f->proto);
	if (icmp) {
		expect_nfdump_u(rec, end, "icmp_type", f->icmp_type);
		expect_nfdump_u(rec, end, "icmp_code", f->icmp_code);
	} else {
		expect_nfdump_u(rec, end, "src_port", f->src_port);
		expect_nfdump_u(rec, end, "dst_port", f->dst_port);
		nfdump_flags(f->fwd_tcp_flags, flags);
		expect_nfdump(rec, end, "tcp_flags", flags, true);
	}
	expect_nfdump_u(rec, end, "in_packets", f->fwd_packets);
	expect_nfdump_u(rec, end, "in_bytes", f->fwd_bytes);
	/* nfdump files RFC 5103 reverse counters as its "out" counters */
	expect_nfdump_u(rec, end, "out_packets", f->rev_packets);
	expect_nfdump_u(rec, end, "out_bytes", f->rev_bytes);
	expect_nfdump_u(rec, end, "src_as", f->src_as);
	expect_nfdump_u(rec, end, "dst_as", f->dst_as);
	expect_nfdump_u(rec, end, "input_snmp", f->in_if);
	expect_nfdump_u(rec, end, "output_snmp", f->out_if);
	expect_nfdump_u(rec, end, "src_vlan", f->vlan);
	expect_nfdump(rec, end, v4 ? "ip4_next_hop" : "ip6_next_hop", next_hop_text(f, a), true);
	expect_nfdump_u(rec, end, "observationPointID", f->sensor_id);
}

Test(ipfix_export, nfcapd_round_trip, .fini = stop_nfcapd)
{
	struct mm_flow f[5];
	size_t n = sample_flows(f), i = 0;
	struct mm_ipfix_export_config cfg;
	struct mm_ipfix_exporter *e;
	struct mm_ipfix_export_stats s;
	char *dir = tu_tmpdir(), flows[300], *out = NULL, *err = NULL;
	const char *rec;
	uint16_t port = free_udp_port();

	if (!have_tool("nfcapd") || !have_tool("nfdump"))
		cr_skip_test("nfcapd/nfdump are not installed (apt-get install nfdump)");
	snprintf(flows, sizeof(flows), "%s/flows", dir);
	cr_assert_eq(mkdir(flows, 0700), 0);
	start_nfcapd(dir, flows, port);
	wait_nfcapd_bound(port);
	mm_ipfix_export_config_default(&cfg, 7);
	e = udp_exporter(port, &cfg);
	mm_ipfix_exporter_write(e, f, n);
	cr_assert_eq(mm_ipfix_exporter_finish(e), 0);
	mm_ipfix_exporter_get_stats(e, &s);
	cr_assert_eq(s.records_sent, n);
	mm_ipfix_exporter_free(e);
	wait_nfcapd_drained(port);
	stop_nfcapd(); /* SIGTERM: nfcapd writes out its buffer and closes the file */
	setenv("TZ", "UTC", 1);
	{
		const char *argv[] = { "nfdump", "-R", flows, "-o", "json", NULL };

		cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "nfdump failed: %s", err);
	}
	for (rec = strstr(out, "\"type\" : \"FLOW\""); rec; i++) {
		const char *next = strstr(rec + 1, "\"type\" : \"FLOW\"");

		cr_assert_lt(i, n, "nfdump shows more records than were sent");
		nfdump_check_flow(rec, next ? next : out + strlen(out), &f[i]);
		rec = next;
	}
	cr_assert_eq(i, n, "nfdump shows %zu records of %zu:\n%s", i, n, err);
	remove_tree(dir);
	free(out);
	free(err);
}
