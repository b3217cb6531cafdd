/*
 * meter/: flow table, direction rules, ICMP pairing, timeouts and TCP
 * close/reuse, fragments, tunnels, VLANs, the memory cap and hash-flooding
 * resistance. Most tests feed already-decoded packets through
 * meter_account (meter_int.h); the last ones go through real frames built
 * by mm_packet_build and mm_meter_packets.
 */
#include "mamori/hash.h"
#include "mamori/meter.h"
#include "mamori/status.h"
#include "mamori/synth.h"
#include "meter/flow_table.h"
#include "meter/meter_int.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define S(x) ((uint64_t)(x) * 1000000000ull)
#define T0 S(1700000000)

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

/* ---- a sink that keeps every exported flow ------------------------------ */

struct collected {
	struct mm_flow *flows;
	size_t n, cap;
	size_t n_calls;
};

static struct collected got;

static void collect(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct collected *c = ctx;

	c->n_calls++;
	cr_assert_leq(n, 256, "sink batches are at most 256 flows");
	if (c->n + n > c->cap) {
		c->cap = (c->n + n) * 2;
		c->flows = realloc(c->flows, c->cap * sizeof(*c->flows));
		cr_assert_not_null(c->flows);
	}
	memcpy(c->flows + c->n, flows, n * sizeof(*flows));
	c->n += n;
}

static struct mm_meter *meter_with(const struct mm_meter_config *cfg)
{
	struct mm_meter *m;

	free(got.flows);
	memset(&got, 0, sizeof(got));
	cr_assert_eq(mm_meter_new(&m, cfg, collect, &got), 0, "%s", mm_last_error());
	return m;
}

static struct mm_meter *default_meter(void)
{
	struct mm_meter_config cfg;

	mm_meter_config_default(&cfg);
	return meter_with(&cfg);
}

static struct mm_meter *zeek_meter(void)
{
	struct mm_meter_config cfg;

	mm_meter_config_zeek(&cfg);
	return meter_with(&cfg);
}

/* ---- building decoded packets -------------------------------------------- */

static struct mm_addr addr(const char *text)
{
	struct mm_addr a;

	cr_assert_eq(mm_addr_parse(&a, text), 0, "%s", text);
	return a;
}

static struct mm_pkt_ip layer(const char *src, uint16_t sport, const char *dst, uint16_t dport,
			      uint8_t proto, uint8_t tcp_flags, uint32_t ip_len)
{
	struct mm_pkt_ip ip;

	memset(&ip, 0, sizeof(ip));
	ip.src = addr(src);
	ip.dst = addr(dst);
	ip.version = mm_addr_is_v4(&ip.src) ? 4 : 6;
	ip.header_len = ip.version == 4 ? 20 : 40;
	ip.proto = proto;
	ip.sport = sport;
	ip.dport = dport;
	ip.has_ports = proto == 6 || proto == 17 || proto == 132;
	ip.tcp_flags = tcp_flags;
	ip.ip_len = ip_len;
	return ip;
}

static struct mm_pkt_ip icmp_layer(const char *src, const char *dst, uint8_t proto, uint8_t type,
				   uint8_t code)
{
	struct mm_pkt_ip ip = layer(src, 0, dst, 0, proto, 0, 84);

	ip.icmp_type = type;
	ip.icmp_code = code;
	return ip;
}

static void feed_layers(struct mm_meter *m, uint64_t ts, uint16_t vlan, const struct mm_pkt_ip *ips,
			unsigned n)
{
	struct mm_pkt p;

	memset(&p, 0, sizeof(p));
	p.vlan = vlan;
	p.n_ip = (uint8_t)n;
	memcpy(p.ip, ips, n * sizeof(*ips));
	meter_account(m, ts, ips[0].ip_len + 14, &p);
}

static void feed(struct mm_meter *m, uint64_t ts, struct mm_pkt_ip ip)
{
	feed_layers(m, ts, 0, &ip, 1);
}

static void tcp(struct mm_meter *m, uint64_t ts, const char *src, uint16_t sport, const char *dst,
		uint16_t dport, uint8_t flags)
{
	feed(m, ts, layer(src, sport, dst, dport, 6, flags, 40));
}

static void udp(struct mm_meter *m, uint64_t ts, const char *src, uint16_t sport, const char *dst,
		uint16_t dport, uint32_t ip_len)
{
	feed(m, ts, layer(src, sport, dst, dport, 17, 0, ip_len));
}

static int by_id(const void *a, const void *b)
{
	const struct mm_flow *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

/* Flows leave the table in deadline order; tests read them in creation order. */
static void sort_by_id(void)
{
	qsort(got.flows, got.n, sizeof(*got.flows), by_id);
}

static const struct mm_flow *only_flow(void)
{
	cr_assert_eq(got.n, 1, "expected exactly one flow, got %zu", got.n);
	return &got.flows[0];
}

static void assert_endpoints(const struct mm_flow *f, const char *src, uint16_t sport,
			     const char *dst, uint16_t dport)
{
	char a[MM_ADDR_STRLEN], b[MM_ADDR_STRLEN];

	cr_assert_str_eq(mm_addr_format(&f->src, a), src);
	cr_assert_eq(f->src_port, sport, "src port %u, want %u", f->src_port, sport);
	cr_assert_str_eq(mm_addr_format(&f->dst, b), dst);
	cr_assert_eq(f->dst_port, dport, "dst port %u, want %u", f->dst_port, dport);
}

static void assert_counts_add_up(struct mm_meter *m)
{
	struct mm_meter_stats st;

	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.flows_created, st.flows_exported, "created %llu exported %llu",
		     (unsigned long long)st.flows_created, (unsigned long long)st.flows_exported);
	cr_assert_eq(st.flows_exported, got.n);
	cr_assert_eq(st.active_flows, 0);
}

/* ---- configuration ------------------------------------------------------- */

Test(meter_config, defaults_and_zeek)
{
	struct mm_meter_config c;

	mm_meter_config_default(&c);
	cr_assert_eq(c.idle_tcp_ns, S(300));
	cr_assert_eq(c.idle_udp_ns, S(60));
	cr_assert_eq(c.active_ns, S(1800));
	cr_assert_eq(c.tcp_close_ns, S(5));
	cr_assert_eq(c.frag_timeout_ns, S(30));
	cr_assert_eq(c.max_flows, 1000000);
	cr_assert_eq(c.max_fragments, 65536);
	cr_assert_eq(c.max_encap_depth, 4);
	cr_assert_not(c.zeek_compat);
	mm_meter_config_zeek(&c);
	cr_assert(c.zeek_compat);
	cr_assert_eq(c.active_ns, 0);
	cr_assert_eq(c.idle_icmp_ns, S(60));
}

Test(meter_config, refuses_bad_field_naming_it)
{
	struct mm_meter_config c;
	struct mm_meter *m = NULL;

	mm_meter_config_default(&c);
	c.max_encap_depth = 9; /* beyond MM_ENCAP_MAX */
	cr_assert_eq(mm_meter_new(&m, &c, collect, &got), MM_EINVAL);
	cr_assert_null(m);
	cr_assert(strstr(mm_last_error(), "max_encap_depth"), "%s", mm_last_error());

	mm_meter_config_default(&c);
	c.idle_udp_ns = 0;
	cr_assert_eq(mm_meter_new(&m, &c, collect, &got), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "idle_udp_ns"), "%s", mm_last_error());

	mm_meter_config_default(&c);
	c.max_flows = 0;
	cr_assert_eq(mm_meter_new(&m, &c, collect, &got), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "max_flows"), "%s", mm_last_error());
}

/* ---- direction ------------------------------------------------------------ */

Test(meter_direction, syn_sender_is_originator_and_counts_per_direction)
{
	struct mm_meter *m = default_meter();
	const struct mm_flow *f;

	tcp(m, T0, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_SYN);
	tcp(m, T0 + 1000, "198.51.100.1", 80, "192.0.2.9", 40000, TCP_SYN | TCP_ACK);
	tcp(m, T0 + 2000, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_ACK);
	mm_meter_finish(m);
	f = only_flow();
	assert_endpoints(f, "192.0.2.9", 40000, "198.51.100.1", 80);
	cr_assert_eq(f->fwd_packets, 2);
	cr_assert_eq(f->rev_packets, 1);
	cr_assert_eq(f->fwd_bytes, 80);
	cr_assert_eq(f->fwd_tcp_flags, TCP_SYN | TCP_ACK);
	cr_assert_eq(f->rev_tcp_flags, TCP_SYN | TCP_ACK);
	cr_assert_eq(f->first_ns, T0);
	cr_assert_eq(f->last_ns, T0 + 2000);
	cr_assert_eq(f->id, 1);
	cr_assert_eq(f->end_reason, MM_END_FORCED);
	cr_assert_eq(f->proto, 6);
	assert_counts_add_up(m);
	mm_meter_free(m);
}

Test(meter_direction, syn_ack_first_makes_sender_the_responder)
{
	struct mm_meter *m = default_meter();

	/* SYN-ACK from an unlisted port: the answerer is still the responder. */
	tcp(m, T0, "198.51.100.1", 7777, "192.0.2.9", 40000, TCP_SYN | TCP_ACK);
	mm_meter_finish(m);
	assert_endpoints(only_flow(), "192.0.2.9", 40000, "198.51.100.1", 7777);
	cr_assert_eq(only_flow()->rev_packets, 1);
	cr_assert_eq(only_flow()->fwd_packets, 0);
	mm_meter_free(m);
}

Test(meter_direction, zeek_flips_syn_ack_opener_when_peer_sends_syn)
{
	struct mm_meter *m = zeek_meter();

	/* Zeek keeps a SYN-ACK from a non-server port as originator (stealth scans)... */
	tcp(m, T0, "198.51.100.1", 7777, "192.0.2.9", 40000, TCP_SYN | TCP_ACK);
	/* ...until the peer's SYN shows the reversal. */
	tcp(m, T0 + 10, "192.0.2.9", 40000, "198.51.100.1", 7777, TCP_SYN);
	mm_meter_finish(m);
	assert_endpoints(only_flow(), "192.0.2.9", 40000, "198.51.100.1", 7777);
	mm_meter_free(m);
}

Test(meter_direction, midstream_packet_from_server_port_is_flipped)
{
	struct mm_meter *m = default_meter();

	tcp(m, T0, "198.51.100.1", 443, "192.0.2.9", 51000, TCP_ACK | TCP_PSH);
	/* Both ports listed: Zeek flips when that makes the lower port the server's. */
	tcp(m, T0, "198.51.100.2", 22, "192.0.2.9", 80, TCP_ACK);
	mm_meter_finish(m);
	sort_by_id();
	cr_assert_eq(got.n, 2);
	assert_endpoints(&got.flows[0], "192.0.2.9", 51000, "198.51.100.1", 443);
	assert_endpoints(&got.flows[1], "192.0.2.9", 80, "198.51.100.2", 22);
	mm_meter_free(m);
}

Test(meter_direction, dhcp_reply_flips_unless_broadcast)
{
	struct mm_meter *m = zeek_meter();

	/* As in Zeek's dhcp.pcap baseline: 67 is a likely server port, 68 is not. */
	udp(m, T0, "128.2.6.152", 67, "128.2.6.97", 68, 395);
	udp(m, T0 + 1, "128.2.6.152", 67, "255.255.255.255", 68, 328);
	udp(m, T0 + 2, "0.0.0.0", 68, "255.255.255.255", 67, 328);
	mm_meter_finish(m);
	cr_assert_eq(got.n, 3);
	for (size_t i = 0; i < got.n; i++) {
		const struct mm_flow *f = &got.flows[i];

		if (f->id == 1) {
			assert_endpoints(f, "128.2.6.97", 68, "128.2.6.152", 67);
			cr_assert_eq(f->fwd_packets, 0);
			cr_assert_eq(f->rev_packets, 1);
			cr_assert_eq(f->rev_bytes, 395);
		} else if (f->id == 2) {
			assert_endpoints(f, "128.2.6.152", 67, "255.255.255.255", 68);
			cr_assert_eq(f->fwd_packets, 1);
		} else {
			assert_endpoints(f, "0.0.0.0", 68, "255.255.255.255", 67);
		}
	}
	mm_meter_free(m);
}

/* ---- ICMP ----------------------------------------------------------------- */

Test(meter_icmp, echo_request_and_reply_share_a_flow)
{
	struct mm_meter *m = default_meter();
	const struct mm_flow *f;

	feed(m, T0, icmp_layer("192.0.2.1", "198.51.100.7", 1, 8, 0));      /* echo request */
	feed(m, T0 + 5, icmp_layer("198.51.100.7", "192.0.2.1", 1, 0, 0));  /* echo reply */
	feed(m, T0 + 9, icmp_layer("192.0.2.1", "198.51.100.7", 1, 8, 0));  /* next request */
	mm_meter_finish(m);
	f = only_flow();
	assert_endpoints(f, "192.0.2.1", 8, "198.51.100.7", 0);
	cr_assert_eq(f->fwd_packets, 2);
	cr_assert_eq(f->rev_packets, 1);
	cr_assert_eq(f->icmp_type, 8);
	cr_assert_eq(f->proto, 1);
	mm_meter_free(m);
}

Test(meter_icmp, icmpv6_neighbor_solicitation_and_one_way_messages)
{
	struct mm_meter *m = default_meter();

	/* Zeek logs DAD probes as ":: 135 ff02::1:ff00:3 136". */
	feed(m, T0, icmp_layer("::", "ff02::1:ff00:3", 58, 135, 0));
	/* Destination unreachable (3), code 1: no counterpart, code is the responder port. */
	feed(m, T0 + 1, icmp_layer("192.0.2.1", "198.51.100.7", 1, 3, 1));
	/* The same message the other way is a different one-way flow. */
	feed(m, T0 + 2, icmp_layer("198.51.100.7", "192.0.2.1", 1, 3, 1));
	mm_meter_finish(m);
	sort_by_id();
	cr_assert_eq(got.n, 3);
	assert_endpoints(&got.flows[0], "::", 135, "ff02::1:ff00:3", 136);
	cr_assert_eq(got.flows[0].proto, 58);
	assert_endpoints(&got.flows[1], "192.0.2.1", 3, "198.51.100.7", 1);
	cr_assert_eq(got.flows[1].icmp_code, 1);
	assert_endpoints(&got.flows[2], "198.51.100.7", 3, "192.0.2.1", 1);
	mm_meter_free(m);
}

/* ---- timeouts --------------------------------------------------------------- */

Test(meter_timeout, udp_idle_timeout_splits_flows)
{
	struct mm_meter *m = default_meter();

	udp(m, T0, "192.0.2.1", 5000, "198.51.100.1", 53, 60);
	udp(m, T0 + S(30), "198.51.100.1", 53, "192.0.2.1", 5000, 120);
	/* 61 s after the last packet: the first flow has ended. */
	udp(m, T0 + S(91), "192.0.2.1", 5000, "198.51.100.1", 53, 60);
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.flows[0].end_reason, MM_END_IDLE);
	cr_assert_eq(got.flows[0].fwd_packets, 1);
	cr_assert_eq(got.flows[0].rev_packets, 1);
	cr_assert_eq(got.flows[0].last_ns, T0 + S(30));
	mm_meter_finish(m);
	cr_assert_eq(got.n, 2);
	cr_assert_eq(got.flows[1].id, 2);
	cr_assert_eq(got.flows[1].end_reason, MM_END_FORCED);
	assert_counts_add_up(m);
	mm_meter_free(m);
}

Test(meter_timeout, advance_expires_quiet_flows)
{
	struct mm_meter *m = default_meter();
	struct mm_meter_stats st;

	udp(m, T0, "192.0.2.1", 5000, "198.51.100.1", 53, 60);
	mm_meter_advance(m, T0 + S(59));
	cr_assert_eq(got.n, 0, "not idle for 60 s yet");
	mm_meter_advance(m, T0 + S(62));
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.flows[0].end_reason, MM_END_IDLE);
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.exported_by_reason[MM_END_IDLE], 1);
	cr_assert_eq(st.active_flows, 0);
	mm_meter_free(m);
}

Test(meter_timeout, active_timeout_only_outside_zeek_mode)
{
	struct mm_meter_config cfg;
	struct mm_meter *m;

	mm_meter_config_default(&cfg);
	cfg.active_ns = S(60);
	m = meter_with(&cfg);
	for (int i = 0; i <= 15; i++) /* a packet every 10 s for 150 s */
		udp(m, T0 + S(10 * i), "192.0.2.1", 5000, "198.51.100.1", 53, 60);
	mm_meter_finish(m);
	cr_assert_eq(got.n, 3, "150 s split at 60 s: %zu flows", got.n);
	cr_assert_eq(got.flows[0].end_reason, MM_END_ACTIVE);
	cr_assert_eq(got.flows[0].fwd_packets, 6);
	assert_counts_add_up(m);
	mm_meter_free(m);

	m = zeek_meter();
	for (int i = 0; i <= 15; i++)
		udp(m, T0 + S(10 * i), "192.0.2.1", 5000, "198.51.100.1", 53, 60);
	mm_meter_finish(m);
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.flows[0].fwd_packets, 16);
	mm_meter_free(m);
}

Test(meter_timeout, fin_both_ways_lingers_then_ends_eof)
{
	struct mm_meter *m = zeek_meter();

	tcp(m, T0, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_SYN);
	tcp(m, T0 + S(1), "198.51.100.1", 80, "192.0.2.9", 40000, TCP_SYN | TCP_ACK);
	tcp(m, T0 + S(2), "192.0.2.9", 40000, "198.51.100.1", 80, TCP_FIN | TCP_ACK);
	tcp(m, T0 + S(3), "198.51.100.1", 80, "192.0.2.9", 40000, TCP_FIN | TCP_ACK);
	/* A late ACK within the 5 s linger still counts in the flow. */
	tcp(m, T0 + S(4), "192.0.2.9", 40000, "198.51.100.1", 80, TCP_ACK);
	cr_assert_eq(got.n, 0);
	mm_meter_advance(m, T0 + S(9));
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.flows[0].end_reason, MM_END_EOF);
	cr_assert_eq(got.flows[0].fwd_packets, 3);
	cr_assert_eq(got.flows[0].rev_packets, 2);
	/* Zeek stops the clock of a connection closed both ways. */
	cr_assert_eq(got.flows[0].last_ns, T0 + S(3));
	mm_meter_free(m);
}

/*
 * After a SYN, a reset and a fresh SYN of one connection (and rev_packets
 * replies to it): the fresh SYN ended the first flow and began the second.
 */
static void assert_reopened(struct mm_meter *m, uint64_t rev_packets)
{
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.flows[0].end_reason, MM_END_EOF);
	cr_assert_eq(got.flows[0].id, 1);
	cr_assert_eq(mm_flow_packets(&got.flows[0]), 2);
	mm_meter_finish(m);
	cr_assert_eq(got.n, 2);
	cr_assert_eq(got.flows[1].id, 2);
	cr_assert_eq(got.flows[1].fwd_packets, 1);
	cr_assert_eq(got.flows[1].rev_packets, rev_packets);
	assert_counts_add_up(m);
}

Test(meter_timeout, syn_after_rst_starts_a_new_flow)
{
	struct mm_meter *m = default_meter();

	tcp(m, T0, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_SYN);
	tcp(m, T0 + 10, "198.51.100.1", 80, "192.0.2.9", 40000, TCP_RST | TCP_ACK);
	tcp(m, T0 + 20, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_SYN); /* connection reuse */
	assert_reopened(m, 0);
	mm_meter_free(m);
}

/*
 * A closed flow is re-filed under its linger deadline and leaves its first
 * filing (under the idle deadline) behind in the timer wheel. When it ends,
 * the next flow reuses its table entry; here that flow's deadline falls in
 * the same wheel slot as the left-behind filing. It must end once, when
 * its own deadline passes.
 */
Test(meter_timeout, reused_entry_in_a_slot_it_left_ends_once)
{
	struct mm_meter *m = default_meter();

	tcp(m, T0, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_SYN); /* idle deadline T0 + 300 s */
	tcp(m, T0 + S(1), "198.51.100.1", 80, "192.0.2.9", 40000, TCP_RST | TCP_ACK);
	mm_meter_advance(m, T0 + S(7));
	cr_assert_eq(got.n, 1);
	cr_assert_eq(got.flows[0].end_reason, MM_END_EOF);
	udp(m, T0 + S(240), "192.0.2.7", 40001, "198.51.100.2", 9999, 60); /* idle deadline T0 + 300 s */
	mm_meter_advance(m, T0 + S(299));
	cr_assert_eq(got.n, 1, "the UDP flow is not due before its deadline");
	mm_meter_advance(m, T0 + S(301));
	cr_assert_eq(got.n, 2);
	cr_assert_eq(got.flows[1].id, 2);
	cr_assert_eq(got.flows[1].end_reason, MM_END_IDLE);
	cr_assert_eq(got.flows[1].last_ns, T0 + S(240));
	cr_assert_eq(got.flows[1].fwd_packets, 1);
	mm_meter_finish(m);
	cr_assert_eq(got.n, 2, "nothing is exported twice");
	assert_counts_add_up(m);
	mm_meter_free(m);
}

/*
 * Many flows closing and re-filed while their first filings stay behind in
 * the timer wheel, enough for the wheel to squeeze them out more than once:
 * each flow ends once, for its own reason, in deadline order.
 */
Test(meter_timeout, refiled_flows_end_once_in_deadline_order, .timeout = 60)
{
	struct mm_meter *m = default_meter();
	const uint32_t n = 100000;
	struct mm_pkt_ip syn = layer("10.0.0.0", 40000, "198.51.100.1", 80, 6, TCP_SYN, 40);
	struct mm_pkt_ip rst = layer("198.51.100.1", 80, "10.0.0.0", 40000, 6, TCP_RST | TCP_ACK, 40);

	for (uint32_t i = 0; i < n; i++) {
		uint64_t ts = T0 + S(i) / 1000;

		memcpy(syn.src.b + 12, &i, 4);
		memcpy(rst.dst.b + 12, &i, 4);
		feed(m, ts, syn);
		/* Nine in ten close: re-filed under a deadline 5 s after the RST. */
		if (i % 10)
			feed(m, ts + 1, rst);
	}
	mm_meter_advance(m, T0 + S(1000));
	cr_assert_eq(got.n, n);
	for (size_t i = 0; i < got.n; i++) {
		const struct mm_flow *f = &got.flows[i];
		bool closed = (f->id - 1) % 10 != 0;
		uint64_t deadline = f->last_ns + (closed ? S(5) : S(300));

		cr_assert_eq(f->end_reason, closed ? MM_END_EOF : MM_END_IDLE, "flow %llu",
			     (unsigned long long)f->id);
		cr_assert_eq(mm_flow_packets(f), closed ? 2 : 1, "flow %llu", (unsigned long long)f->id);
		if (i > 0) {
			const struct mm_flow *p = &got.flows[i - 1];
			uint64_t prev = p->last_ns + ((p->id - 1) % 10 ? S(5) : S(300));

			/* The wheel's slots are 2^28 ns wide: order holds between slots. */
			cr_assert_leq(prev >> 28, deadline >> 28, "flow %llu ended before flow %llu",
				      (unsigned long long)f->id, (unsigned long long)p->id);
		}
	}
	mm_meter_finish(m);
	assert_counts_add_up(m);
	sort_by_id();
	for (size_t i = 0; i < got.n; i++)
		cr_assert_eq(got.flows[i].id, i + 1, "each flow once");
	mm_meter_free(m);
}

Test(meter_timeout, misordered_timestamps_keep_time_monotonic)
{
	struct mm_meter *m = default_meter();
	const struct mm_flow *f;

	/* As in Zeek's misordered-ntp trace: the later packet is stamped earlier. */
	udp(m, T0 + S(1), "17.253.4.253", 123, "192.168.1.95", 123, 76);
	udp(m, T0, "192.168.1.95", 123, "17.253.4.253", 123, 76);
	mm_meter_finish(m);
	f = only_flow();
	cr_assert_eq(f->first_ns, T0);
	cr_assert_eq(f->last_ns, T0 + S(1));
	cr_assert_eq(mm_flow_packets(f), 2);
	mm_meter_free(m);
}

Test(meter_timeout, time_stepping_back_past_idle_timeout_restarts_the_table)
{
	struct mm_meter *m = default_meter();
	struct mm_meter_stats st;

	/* Two captures of different days metered as one stream: the second is older. */
	udp(m, T0, "192.0.2.1", 5000, "198.51.100.1", 53, 60);
	udp(m, T0 - S(7200), "192.0.2.1", 5000, "198.51.100.1", 53, 60);
	udp(m, T0 - S(7200) + S(1), "198.51.100.1", 53, "192.0.2.1", 5000, 90);
	mm_meter_finish(m);
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.clock_steps_back, 1);
	cr_assert_eq(got.n, 2, "one flow per day, the older one whole");
	sort_by_id();
	cr_assert_eq(got.flows[0].end_reason, MM_END_FORCED);
	cr_assert_eq(mm_flow_packets(&got.flows[0]), 1);
	cr_assert_eq(got.flows[1].fwd_packets, 1);
	cr_assert_eq(got.flows[1].rev_packets, 1);
	cr_assert_eq(got.flows[1].first_ns, T0 - S(7200));
	mm_meter_free(m);
}

/* An NTP datagram 192.0.2.1:123 → 198.51.100.1:123 with the given mode, as a frame. */
static size_t ntp_frame(uint8_t *buf, size_t cap, const char *src, const char *dst, uint8_t mode)
{
	struct mm_packet_spec spec;
	size_t len;

	memset(&spec, 0, sizeof(spec));
	spec.src = addr(src);
	spec.dst = addr(dst);
	spec.proto = 17;
	spec.sport = 123;
	spec.dport = 123;
	spec.payload_len = 48;
	len = mm_packet_build(&spec, buf, cap);
	cr_assert_gt(len, 14 + 20 + 8);
	buf[14 + 20 + 8] = (uint8_t)(4 << 3 | mode); /* LI 0, version 4, mode */
	return len;
}

static void meter_ntp_pair(struct mm_meter *m)
{
	uint8_t frames[2][128];
	struct mm_raw_packet raw[2];

	/* As in Zeek's misordered-ntp trace: the server's reply is seen first. */
	raw[0].cap_len = (uint32_t)ntp_frame(frames[0], sizeof(frames[0]), "17.253.4.253",
					     "192.168.1.95", 4 /* server */);
	raw[1].cap_len = (uint32_t)ntp_frame(frames[1], sizeof(frames[1]), "192.168.1.95",
					     "17.253.4.253", 3 /* client */);
	for (int i = 0; i < 2; i++) {
		raw[i].data = frames[i];
		raw[i].wire_len = raw[i].cap_len;
		raw[i].ts_ns = T0 + (uint64_t)i * S(1);
		raw[i].linktype = MM_LINK_ETHERNET;
	}
	mm_meter_packets(m, raw, 2);
	mm_meter_finish(m);
}

Test(meter_direction, zeek_mode_follows_zeeks_ntp_role_flip)
{
	struct mm_meter *m = zeek_meter();

	meter_ntp_pair(m);
	/* Zeek: the client becomes the originator and keeps both packets counted as its own. */
	assert_endpoints(only_flow(), "192.168.1.95", 123, "17.253.4.253", 123);
	cr_assert_eq(only_flow()->fwd_packets, 2);
	cr_assert_eq(only_flow()->rev_packets, 0);
	cr_assert_eq(only_flow()->fwd_bytes, 2 * 76);
	mm_meter_free(m);

	/* Outside Zeek mode the wire is reported as it was: first sender, one packet each way. */
	m = default_meter();
	meter_ntp_pair(m);
	assert_endpoints(only_flow(), "17.253.4.253", 123, "192.168.1.95", 123);
	cr_assert_eq(only_flow()->fwd_packets, 1);
	cr_assert_eq(only_flow()->rev_packets, 1);
	mm_meter_free(m);
}

/* ---- fragments ---------------------------------------------------------- */

static struct mm_pkt_ip fragment(uint16_t offset, uint16_t payload, bool more, uint32_t id)
{
	/* 192.0.2.1 → 198.51.100.1 UDP 5353 → 53, 20-byte IPv4 header. */
	struct mm_pkt_ip ip = layer("192.0.2.1", 5353, "198.51.100.1", 53, 17, 0, 20u + payload);

	ip.frag = offset == 0 ? MM_FRAG_FIRST : MM_FRAG_LATER;
	ip.frag_offset = offset;
	ip.more_frags = more;
	ip.frag_id = id;
	if (offset != 0) { /* later fragments carry no L4 header */
		ip.has_ports = 0;
		ip.sport = ip.dport = 0;
	}
	return ip;
}

Test(meter_frag, in_order_datagram_counts_once)
{
	struct mm_meter *m = default_meter();
	struct mm_meter_stats st;
	const struct mm_flow *f;

	feed(m, T0, fragment(0, 1480, true, 7));
	feed(m, T0 + 1, fragment(1480, 1480, true, 7));
	feed(m, T0 + 2, fragment(2960, 100, false, 7));
	mm_meter_finish(m);
	f = only_flow();
	assert_endpoints(f, "192.0.2.1", 5353, "198.51.100.1", 53);
	cr_assert_eq(f->fwd_packets, 1);
	cr_assert_eq(f->fwd_bytes, 20 + 3060, "one datagram of its total length");
	cr_assert(f->flags & MM_FLOW_FRAGMENTS);
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.fragments, 3);
	cr_assert_eq(st.datagrams_reassembled, 1);
	cr_assert_eq(st.metered, 3);
	mm_meter_free(m);
}

Test(meter_frag, out_of_order_datagram_uses_first_fragment_ports)
{
	struct mm_meter *m = default_meter();
	const struct mm_flow *f;

	feed(m, T0, fragment(2960, 100, false, 9));
	feed(m, T0 + 1, fragment(1480, 1480, true, 9));
	feed(m, T0 + 2, fragment(0, 1480, true, 9));
	mm_meter_finish(m);
	f = only_flow();
	cr_assert_eq(f->src_port, 5353);
	cr_assert_eq(f->dst_port, 53);
	cr_assert_eq(f->fwd_bytes, 3080);
	cr_assert_eq(f->first_ns, T0 + 2, "counted when the datagram completes");
	mm_meter_free(m);
}

Test(meter_frag, missing_fragment_times_out_incomplete)
{
	struct mm_meter *m = default_meter();
	struct mm_meter_stats st;

	feed(m, T0, fragment(0, 1480, true, 11));
	feed(m, T0 + 1, fragment(2960, 100, false, 11));
	mm_meter_advance(m, T0 + S(31));
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.anomalies[MM_ANOM_FRAG_INCOMPLETE], 1);
	cr_assert_eq(st.datagrams_reassembled, 0);
	mm_meter_finish(m);
	cr_assert_eq(got.n, 0, "an incomplete datagram makes no flow");
	mm_meter_free(m);
}

Test(meter_frag, overlapping_and_oversized_fragments_are_counted_bad)
{
	struct mm_meter *m = default_meter();
	struct mm_meter_stats st;

	feed(m, T0, fragment(0, 1480, true, 12));
	feed(m, T0 + 1, fragment(1000, 1480, true, 12));  /* overlaps bytes 1000..1479 */
	feed(m, T0 + 2, fragment(65000, 1480, false, 13)); /* ends beyond 65535 */
	feed(m, T0 + 3, fragment(1480, 100, false, 12));   /* completes datagram 12 */
	mm_meter_finish(m);
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.anomalies[MM_ANOM_FRAG_BAD], 2);
	cr_assert_eq(st.packets, 4);
	cr_assert_eq(st.metered, 2, "the two refused fragments are not metered");
	cr_assert_eq(only_flow()->fwd_bytes, 20 + 1580);
	mm_meter_free(m);
}

Test(meter_frag, table_full_gives_up_oldest_datagram)
{
	struct mm_meter_config cfg;
	struct mm_meter *m;
	struct mm_meter_stats st;

	mm_meter_config_default(&cfg);
	cfg.max_fragments = 2;
	m = meter_with(&cfg);
	for (uint32_t id = 1; id <= 3; id++)
		feed(m, T0 + id, fragment(0, 1480, true, id));
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.anomalies[MM_ANOM_FRAG_TABLE_FULL], 1);
	/* Datagram 1 was given up; 3 can still complete. */
	feed(m, T0 + 10, fragment(1480, 10, false, 3));
	feed(m, T0 + 11, fragment(1480, 10, false, 1));
	mm_meter_finish(m);
	cr_assert_eq(got.n, 1);
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.datagrams_reassembled, 1);
	mm_meter_free(m);
}

Test(meter_frag, fragmented_tunnel_packet_counts_in_outer_flow_only)
{
	struct mm_meter *m = default_meter();
	struct mm_pkt_ip two[2];

	/* Outer IPv4 (protocol 4, IP-in-IP) first fragment whose inner header decoded. */
	two[0] = layer("203.0.113.1", 0, "203.0.113.2", 0, 4, 0, 1500);
	two[0].frag = MM_FRAG_FIRST;
	two[0].more_frags = 1;
	two[0].frag_id = 5;
	two[1] = layer("10.0.0.1", 1000, "10.0.0.2", 2000, 17, 0, 1480);
	feed_layers(m, T0, 0, two, 2);
	two[0].frag = MM_FRAG_LATER;
	two[0].frag_offset = 1480;
	two[0].more_frags = 0;
	two[0].ip_len = 120;
	feed_layers(m, T0 + 1, 0, two, 1);
	mm_meter_finish(m);
	cr_assert_eq(only_flow()->proto, 4);
	cr_assert_eq(only_flow()->fwd_bytes, 20 + 1480 + 100);
	mm_meter_free(m);
}

/* ---- tunnels and VLANs ------------------------------------------------------ */

Test(meter_tunnel, inner_flow_names_outer_flows_as_parents)
{
	struct mm_meter *m = default_meter();
	struct mm_pkt_ip two[2];
	const struct mm_flow *outer1 = NULL, *outer2 = NULL, *inner = NULL;

	/* VXLAN: outer UDP 4789 carrying an inner TCP connection. */
	two[0] = layer("203.0.113.1", 40000, "203.0.113.2", 4789, 17, 0, 150);
	two[0].tunnel = MM_TUNNEL_VXLAN;
	two[1] = layer("10.0.0.1", 1234, "10.0.0.2", 80, 6, TCP_SYN, 100);
	feed_layers(m, T0, 0, two, 2);
	/* The same inner flow through a second tunnel endpoint. */
	two[0].src = addr("203.0.113.3");
	feed_layers(m, T0 + 1, 0, two, 2);
	mm_meter_finish(m);
	cr_assert_eq(got.n, 3);
	for (size_t i = 0; i < got.n; i++) {
		if (got.flows[i].proto == 6)
			inner = &got.flows[i];
		else if (!outer1)
			outer1 = &got.flows[i];
		else
			outer2 = &got.flows[i];
	}
	cr_assert(inner && outer1 && outer2);
	cr_assert(outer1->flags & MM_FLOW_TUNNEL);
	cr_assert_eq(outer1->fwd_bytes, 150);
	cr_assert_eq(inner->fwd_packets, 2);
	cr_assert_eq(inner->fwd_bytes, 200, "inner bytes are the inner IP length");
	cr_assert(inner->tunnel_parents[0] == outer1->id || inner->tunnel_parents[1] == outer1->id);
	cr_assert(inner->tunnel_parents[0] == outer2->id || inner->tunnel_parents[1] == outer2->id);
	cr_assert_neq(inner->tunnel_parents[0], inner->tunnel_parents[1]);
	cr_assert_not(inner->flags & MM_FLOW_TUNNEL);
	mm_meter_free(m);
}

Test(meter_vlan, same_tuple_on_two_vlans_is_two_flows)
{
	struct mm_meter *m = default_meter();
	struct mm_pkt_ip ip = layer("192.0.2.1", 5000, "198.51.100.1", 53, 17, 0, 60);

	feed_layers(m, T0, 10, &ip, 1);
	feed_layers(m, T0 + 1, 20, &ip, 1);
	feed_layers(m, T0 + 2, 10, &ip, 1);
	mm_meter_finish(m);
	cr_assert_eq(got.n, 2);
	for (size_t i = 0; i < got.n; i++)
		cr_assert_eq(got.flows[i].fwd_packets, got.flows[i].vlan == 10 ? 2 : 1);
	mm_meter_free(m);
}

/* ---- capacity, memory, hashing ------------------------------------------------ */

static struct mm_pkt_ip numbered_flow(uint32_t i)
{
	struct mm_pkt_ip ip = layer("10.0.0.1", 1000, "192.0.2.1", 53, 17, 0, 60);

	/* Distinct (source, source port) pairs: 60000 ports per source address. */
	ip.sport = (uint16_t)(1024 + i % 60000);
	mm_addr_set_v4_u32(&ip.src, 0x0a000000u + i / 60000);
	return ip;
}

Test(meter_cap, full_table_exports_early_and_counts_add_up)
{
	struct mm_meter_config cfg;
	struct mm_meter *m;
	struct mm_meter_stats st;

	mm_meter_config_default(&cfg);
	cfg.max_flows = 100;
	m = meter_with(&cfg);
	for (uint32_t i = 0; i < 1000; i++)
		feed(m, T0 + i, numbered_flow(i));
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.active_flows, 100);
	cr_assert_eq(st.peak_flows, 100);
	cr_assert_eq(st.exported_by_reason[MM_END_RESOURCE], 900);
	cr_assert_eq(got.n, 900);
	cr_assert_eq(st.packets, 1000);
	cr_assert_eq(st.metered, 1000, "no packet is dropped at the cap");
	mm_meter_finish(m);
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.exported_by_reason[MM_END_FORCED], 100);
	assert_counts_add_up(m);
	mm_meter_free(m);
}

Test(meter_cap, memory_per_flow_stays_under_200_bytes, .timeout = 60)
{
	struct mm_meter *m = default_meter();
	struct mm_meter_stats st;
	const uint32_t n = 500000;

	for (uint32_t i = 0; i < n; i++)
		feed(m, T0 + i, numbered_flow(i));
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.active_flows, n);
	cr_assert_leq(st.table_bytes / st.active_flows, 200, "%llu bytes per flow",
		      (unsigned long long)(st.table_bytes / st.active_flows));
	cr_assert_leq(meter_max_probe(m), 100, "max probe %zu", meter_max_probe(m));
	mm_meter_free(m);
}

Test(meter_cap, keys_differing_in_one_field_probe_briefly)
{
	struct mm_meter *m = default_meter();
	struct mm_meter_stats st;

	/* 65536 flows that differ only in the source port: an attacker's easy pattern. */
	for (uint32_t p = 0; p < 65536; p++)
		udp(m, T0, "192.0.2.1", (uint16_t)p, "198.51.100.1", 53, 60);
	/* And 65536 that differ only in the last 16 bits of an IPv6 address. */
	for (uint32_t p = 0; p < 65536; p++) {
		struct mm_pkt_ip ip = layer("2001:db8::", 5000, "2001:db8:1::1", 443, 6, TCP_SYN, 60);

		ip.src.b[14] = (uint8_t)(p >> 8);
		ip.src.b[15] = (uint8_t)p;
		feed(m, T0, ip);
	}
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.active_flows, 2 * 65536, "all distinct");
	cr_assert_leq(meter_max_probe(m), 100, "max probe %zu", meter_max_probe(m));
	/* Every one is found again: a second packet creates no new flow. */
	udp(m, T0 + 1, "198.51.100.1", 53, "192.0.2.1", 4242, 60);
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.active_flows, 2 * 65536);
	mm_meter_free(m);
}

Test(meter_cap, deletions_keep_lookups_correct)
{
	struct mm_meter *m = default_meter();
	struct mm_meter_stats st;

	/* Flows created 10 ms apart expire one by one, shifting probe runs back. */
	for (uint32_t i = 0; i < 5000; i++)
		feed(m, T0 + S(i) / 100, numbered_flow(i));
	mm_meter_advance(m, T0 + S(25) + S(60));
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.active_flows + got.n, 5000);
	cr_assert_gt(got.n, 0);
	/* Survivors are still found: a packet on each adds no flow. */
	for (uint32_t i = 4000; i < 5000; i++)
		feed(m, T0 + S(86), numbered_flow(i));
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.flows_created, 5000);
	mm_meter_free(m);
}

/*
 * The meter hashes IPv4 keys with the 16-byte form of SipHash-1-3, which
 * must be the general function's value for the same bytes.
 */
Test(meter_hash, siphash13_16_equals_siphash13_of_the_same_bytes)
{
	struct mm_hash_key key;
	uint8_t bytes[16];

	srand(7);
	for (int i = 0; i < 1000; i++) {
		uint64_t m0 = 0, m1 = 0;

		cr_assert_eq(mm_hash_key_random(&key), 0);
		for (int j = 0; j < 16; j++)
			bytes[j] = (uint8_t)rand();
		for (int j = 7; j >= 0; j--) {
			m0 = m0 << 8 | bytes[j];
			m1 = m1 << 8 | bytes[8 + j];
		}
		cr_assert_eq(mm_siphash13_16(&key, m0, m1), mm_siphash13(&key, bytes, sizeof(bytes)),
			     "round %d", i);
	}
}

/*
 * The batch hash sorts keys into IPv4 and IPv6 and hashes each kind four
 * at a time: every key must still get flow_table_hash's value. 151 keys,
 * a third IPv6, cross the batch's internal chunk (64) and leave
 * remainders of both kinds that are not groups of four.
 */
Test(meter_hash, batch_hash_equals_flow_table_hash)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct flow_table *t;
	struct ft_lookup lu[151];
	struct ft_lookup *list[151];
	size_t n_v6 = 0;

	cr_assert_eq(flow_table_new(&t, 1000), 0);
	srand(5);
	for (size_t i = 0; i < 151; i++) {
		struct ft_key *k = &lu[i].key;

		for (size_t j = 0; j < 16; j++) {
			k->a.b[j] = (uint8_t)rand();
			k->b.b[j] = (uint8_t)rand();
		}
		if (i % 3) { /* IPv4: the mapped prefix on both addresses */
			memcpy(k->a.b, mapped, sizeof(mapped));
			memcpy(k->b.b, mapped, sizeof(mapped));
		} else {
			n_v6++;
		}
		k->port_a = (uint16_t)rand();
		k->port_b = (uint16_t)rand();
		k->vlan = (uint16_t)(rand() & 0xfff);
		k->proto = (uint8_t)rand();
		k->one_way = (uint8_t)(rand() & 1);
		list[i] = &lu[i];
	}
	cr_assert_eq(n_v6, 51);
	flow_table_hash_batch(t, list, 151);
	for (size_t i = 0; i < 151; i++)
		cr_assert_eq(lu[i].hash, flow_table_hash(t, &lu[i].key), "key %zu", i);
	flow_table_free(t);
}

/* ---- end to end through frames ---------------------------------------------- */

Test(meter_frames, built_frames_meter_like_decoded_ones)
{
	struct mm_meter *m = default_meter();
	struct mm_packet_spec spec;
	uint8_t frames[3][256];
	struct mm_raw_packet raw[3];
	struct mm_meter_stats st;

	memset(&spec, 0, sizeof(spec));
	spec.src = addr("192.0.2.9");
	spec.dst = addr("198.51.100.1");
	spec.proto = 6;
	spec.sport = 40000;
	spec.dport = 80;
	spec.vlan = 42;
	for (int i = 0; i < 3; i++) {
		static const uint8_t flags[3] = { TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK };
		struct mm_packet_spec s = spec;

		s.tcp_flags = flags[i];
		if (i == 1) { /* the reply */
			s.src = spec.dst;
			s.dst = spec.src;
			s.sport = spec.dport;
			s.dport = spec.sport;
		}
		raw[i].ts_ns = T0 + (uint64_t)i * 1000;
		raw[i].data = frames[i];
		raw[i].cap_len = (uint32_t)mm_packet_build(&s, frames[i], sizeof(frames[i]));
		cr_assert_gt(raw[i].cap_len, 0);
		raw[i].wire_len = raw[i].cap_len;
		raw[i].linktype = MM_LINK_ETHERNET;
	}
	mm_meter_packets(m, raw, 3);
	mm_meter_finish(m);
	assert_endpoints(only_flow(), "192.0.2.9", 40000, "198.51.100.1", 80);
	cr_assert_eq(only_flow()->vlan, 42);
	cr_assert_eq(only_flow()->fwd_packets, 2);
	cr_assert_eq(only_flow()->rev_packets, 1);
	cr_assert_eq(only_flow()->fwd_bytes, 80, "two 40-byte IP packets");
	mm_meter_get_stats(m, &st);
	cr_assert_eq(st.packets, 3);
	cr_assert_eq(st.metered, 3);
	mm_meter_free(m);
}

/* ---- the batch's early lookups against a table that changes under them ---------- */

struct frame_batch {
	uint8_t frames[8][128];
	struct mm_raw_packet raw[8];
	size_t n;
};

/* Appends a TCP frame src:sport → dst:dport seen at ts. */
static void add_tcp_frame(struct frame_batch *b, uint64_t ts, const char *src, uint16_t sport,
			  const char *dst, uint16_t dport, uint8_t flags)
{
	struct mm_packet_spec spec;
	struct mm_raw_packet *r = &b->raw[b->n];

	cr_assert_lt(b->n, 8);
	memset(&spec, 0, sizeof(spec));
	spec.src = addr(src);
	spec.dst = addr(dst);
	spec.proto = 6;
	spec.sport = sport;
	spec.dport = dport;
	spec.tcp_flags = flags;
	r->ts_ns = ts;
	r->data = b->frames[b->n];
	r->cap_len = (uint32_t)mm_packet_build(&spec, b->frames[b->n], sizeof(b->frames[0]));
	cr_assert_gt(r->cap_len, 0);
	r->wire_len = r->cap_len;
	r->linktype = MM_LINK_ETHERNET;
	b->n++;
}

/*
 * mm_meter_packets looks every packet's entry up before it counts the first
 * one. Here a flow's entry is freed (its linger deadline passes when
 * another flow's packet moves the clock) between that lookup and the
 * flow's next packet in the same call: the packet must start a new flow,
 * not count in the freed entry.
 */
Test(meter_frames, packet_after_its_flow_ended_in_the_same_batch_starts_a_new_flow)
{
	struct mm_meter *m = default_meter();
	struct frame_batch first = { .n = 0 }, second = { .n = 0 };

	add_tcp_frame(&first, T0, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_SYN);
	add_tcp_frame(&first, T0 + S(1), "198.51.100.1", 80, "192.0.2.9", 40000, TCP_RST | TCP_ACK);
	add_tcp_frame(&first, T0 + S(2), "192.0.2.7", 40001, "198.51.100.2", 443, TCP_SYN);
	mm_meter_packets(m, first.raw, first.n);
	cr_assert_eq(got.n, 0, "the reset flow lingers until T0 + 6 s");
	add_tcp_frame(&second, T0 + S(10), "192.0.2.7", 40001, "198.51.100.2", 443, TCP_ACK);
	add_tcp_frame(&second, T0 + S(11), "192.0.2.9", 40000, "198.51.100.1", 80, TCP_ACK);
	mm_meter_packets(m, second.raw, second.n);
	cr_assert_eq(got.n, 1, "the reset flow ended when the clock passed its linger");
	cr_assert_eq(got.flows[0].id, 1);
	cr_assert_eq(got.flows[0].end_reason, MM_END_EOF);
	cr_assert_eq(mm_flow_packets(&got.flows[0]), 2);
	mm_meter_finish(m);
	sort_by_id();
	cr_assert_eq(got.n, 3);
	cr_assert_eq(mm_flow_packets(&got.flows[1]), 2, "the other flow");
	assert_endpoints(&got.flows[2], "192.0.2.9", 40000, "198.51.100.1", 80);
	cr_assert_eq(got.flows[2].id, 3);
	cr_assert_eq(got.flows[2].fwd_packets, 1, "the late ACK is a flow of its own");
	assert_counts_add_up(m);
	mm_meter_free(m);
}

/*
 * A fresh SYN ends a reset flow and starts the next one with the same key
 * (in the entry just freed); a later packet of the same call counts in the
 * new flow.
 */
Test(meter_frames, reopened_flow_in_the_same_batch_counts_in_the_new_flow)
{
	struct mm_meter *m = default_meter();
	struct frame_batch first = { .n = 0 }, second = { .n = 0 };

	add_tcp_frame(&first, T0, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_SYN);
	mm_meter_packets(m, first.raw, first.n);
	add_tcp_frame(&second, T0 + 10, "198.51.100.1", 80, "192.0.2.9", 40000, TCP_RST | TCP_ACK);
	add_tcp_frame(&second, T0 + 20, "192.0.2.9", 40000, "198.51.100.1", 80, TCP_SYN);
	add_tcp_frame(&second, T0 + 30, "198.51.100.1", 80, "192.0.2.9", 40000, TCP_SYN | TCP_ACK);
	mm_meter_packets(m, second.raw, second.n);
	assert_reopened(m, 1);
	mm_meter_free(m);
}
