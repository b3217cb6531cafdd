/*
 * Ingest unit tests with crafted NetFlow v5, v9 and IPFIX messages: field
 * mapping, time forms, sampling, reverse elements, held data, withdrawal,
 * and every kind of malicious template, each refused and counted.
 */
#include "mamori/ingest.h"
#include "mamori/status.h"

#include "test_util.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define SEC 1000000000ull

struct got {
	struct mm_flow flows[64];
	size_t n;
	size_t n_records;
};

static void on_flows(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct got *g = ctx;
	for (size_t i = 0; i < n && g->n < 64; i++)
		g->flows[g->n++] = flows[i];
}

static void on_record(void *ctx, const struct mm_ingest_record *rec)
{
	(void)rec;
	((struct got *)ctx)->n_records++;
}

static struct mm_ingest *make(struct got *g, const struct mm_ingest_config *cfg_in)
{
	struct mm_ingest_config cfg;
	struct mm_ingest *ing;

	if (cfg_in)
		cfg = *cfg_in;
	else
		mm_ingest_config_default(&cfg);
	memset(g, 0, sizeof(*g));
	cr_assert_eq(mm_ingest_new(&ing, &cfg, on_flows, on_record, g), 0);
	return ing;
}

static int feed(struct mm_ingest *ing, const uint8_t *msg, size_t len, uint64_t now)
{
	struct mm_addr exporter;

	mm_addr_set_v4_u32(&exporter, 0xc0000207); /* 192.0.2.7 */
	return mm_ingest_message(ing, &exporter, 2055, msg, len, now);
}

static void totals(struct mm_ingest *ing, struct mm_ingest_stats *st)
{
	mm_ingest_get_totals(ing, st);
	cr_assert_eq(st->records_received, st->records_decoded + st->records_dropped, "records add up");
}

Test(ingest, netflow_v5_record_and_sampling)
{
	static const uint8_t msg[] = {
		0x00, 0x05, 0x00, 0x01,             /* version 5, count 1 */
		0x00, 0x00, 0x27, 0x10,             /* sysUpTime 10000 ms */
		0x60, 0x00, 0x00, 0x00,             /* unix_secs 0x60000000 */
		0x00, 0x00, 0x00, 0x00,             /* unix_nsecs 0 */
		0x00, 0x00, 0x00, 0x07,             /* flow_sequence 7 */
		0x01, 0x02,                         /* engine type 1, id 2 */
		0x40, 0x64,                         /* sampling mode 1, interval 100 */
		10, 0, 0, 1, 10, 0, 0, 2,           /* src 10.0.0.1, dst 10.0.0.2 */
		10, 0, 0, 254,                      /* next hop 10.0.0.254 */
		0x00, 0x03, 0x00, 0x04,             /* input if 3, output if 4 */
		0x00, 0x00, 0x00, 0x05,             /* 5 packets */
		0x00, 0x00, 0x01, 0x2c,             /* 300 bytes */
		0x00, 0x00, 0x13, 0x88,             /* first at uptime 5000 ms */
		0x00, 0x00, 0x23, 0x28,             /* last at uptime 9000 ms */
		0x04, 0xd2, 0x00, 0x50,             /* ports 1234 -> 80 */
		0x00, 0x1b, 0x06, 0x00,             /* pad, flags SYN|FIN|ACK|PSH, tcp, tos 0 */
		0xfd, 0xe8, 0x00, 0x0f,             /* AS 65000 -> AS 15 */
		24, 16, 0x00, 0x00,                 /* masks, pad */
	};
	struct got g;
	struct mm_ingest *ing = make(&g, NULL);
	struct mm_ingest_stats st;

	cr_assert_eq(feed(ing, msg, sizeof(msg), SEC), 0);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(mm_addr_v4_u32(&g.flows[0].src), 0x0a000001);
	cr_expect_eq(mm_addr_v4_u32(&g.flows[0].next_hop), 0x0a0000fe);
	cr_expect_eq(g.flows[0].fwd_packets, 5);
	cr_expect_eq(g.flows[0].fwd_bytes, 300);
	cr_expect_eq(g.flows[0].rev_bytes, 0);
	cr_expect_eq(g.flows[0].src_port, 1234);
	cr_expect_eq(g.flows[0].dst_port, 80);
	cr_expect_eq(g.flows[0].fwd_tcp_flags, 0x1b);
	cr_expect_eq(g.flows[0].src_as, 65000);
	cr_expect_eq(g.flows[0].in_if, 3);
	/* 5 s and 1 s before the export time */
	cr_expect_eq(g.flows[0].first_ns, 0x60000000ull * SEC - 5 * SEC);
	cr_expect_eq(g.flows[0].last_ns, 0x60000000ull * SEC - 1 * SEC);
	cr_expect_eq(g.flows[0].sampling_rate, 100);
	cr_expect(g.flows[0].flags & MM_FLOW_SAMPLED);
	totals(ing, &st);
	cr_expect_eq(st.records_decoded, 1);
	mm_ingest_free(ing);
}

Test(ingest, netflow_v5_sequence_gap_and_bad_count)
{
	uint8_t msg[24 + 48] = {
		0x00, 0x05, 0x00, 0x01, /* version 5, count 1 */
	};
	struct got g;
	struct mm_ingest *ing = make(&g, NULL);
	struct mm_ingest_stats st;

	msg[19] = 10; /* flow_sequence 10 */
	feed(ing, msg, sizeof(msg), SEC);
	msg[19] = 14; /* expected 11: three flows lost */
	feed(ing, msg, sizeof(msg), 2 * SEC);
	msg[3] = 2;   /* count 2 but only one record present */
	cr_expect_eq(feed(ing, msg, sizeof(msg), 3 * SEC), MM_EFORMAT);
	totals(ing, &st);
	cr_expect_eq(st.sequence_gaps, 1);
	cr_expect_eq(st.sequence_lost, 3);
	cr_expect_eq(st.drops[MM_IDROP_BAD_LENGTH], 1);
	cr_expect_eq(st.records_decoded, 2);
	mm_ingest_free(ing);
}

/* IPFIX header, set header and a template with the given fields, written into buf. */
static size_t ipfix_msg(uint8_t *buf, const uint8_t *sets, size_t sets_len, uint32_t seq)
{
	static const uint8_t head[] = { 0x00, 0x0a, 0, 0, 0x60, 0, 0, 0 }; /* v10, len, export 0x60000000 */

	memcpy(buf, head, sizeof(head));
	buf[2] = (uint8_t)((16 + sets_len) >> 8);
	buf[3] = (uint8_t)(16 + sets_len);
	buf[8] = (uint8_t)(seq >> 24), buf[9] = (uint8_t)(seq >> 16), buf[10] = (uint8_t)(seq >> 8), buf[11] = (uint8_t)seq;
	memset(buf + 12, 0, 4); /* observation domain 0 */
	memcpy(buf + 16, sets, sets_len);
	return 16 + sets_len;
}

Test(ingest, ipfix_varlen_reverse_and_times)
{
	static const uint8_t tmpl[] = {
		0x00, 0x02, 0x00, 0x24,             /* template set, 36 bytes */
		0x01, 0x00, 0x00, 0x06,             /* template 256, 6 fields */
		0x00, 0x08, 0x00, 0x04,             /* sourceIPv4Address, 4 */
		0x00, 0x0c, 0x00, 0x04,             /* destinationIPv4Address, 4 */
		0x00, 0x98, 0x00, 0x08,             /* flowStartMilliseconds, 8 */
		0x00, 0x01, 0x00, 0x04,             /* octetDeltaCount, reduced to 4 */
		0x80, 0x01, 0x00, 0x04, 0x00, 0x00, 0x72, 0x79, /* reverseOctetDeltaCount (PEN 29305), 4 */
		0x00, 0x52, 0xff, 0xff,             /* interfaceName, variable length */
	};
	static const uint8_t data[] = {
		0x01, 0x00, 0x00, 0x1f,             /* data set 256, 31 bytes */
		192, 0, 2, 1, 198, 51, 100, 2,      /* 192.0.2.1 -> 198.51.100.2 */
		0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x00, 0x00, /* start 0x17f00000000 ms */
		0x00, 0x00, 0x03, 0xe8,             /* 1000 bytes forward */
		0x00, 0x00, 0x07, 0xd0,             /* 2000 bytes reverse */
		0x02, 'e', 't',                     /* interfaceName "et", length 2 */
	};
	uint8_t buf[256], sets[128];
	struct got g;
	struct mm_ingest *ing = make(&g, NULL);

	memcpy(sets, tmpl, sizeof(tmpl));
	memcpy(sets + sizeof(tmpl), data, sizeof(data));
	cr_assert_eq(feed(ing, buf, ipfix_msg(buf, sets, sizeof(tmpl) + sizeof(data), 0), SEC), 0);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.flows[0].fwd_bytes, 1000);
	cr_expect_eq(g.flows[0].rev_bytes, 2000);
	cr_expect_eq(g.flows[0].first_ns, 0x17f00000000ull * 1000000);
	cr_expect_eq(g.flows[0].last_ns, g.flows[0].first_ns, "no end time: the start stands for both");
	mm_ingest_free(ing);
}

Test(ingest, ipfix_data_before_template_is_held_then_decoded)
{
	static const uint8_t data[] = {
		0x01, 0x01, 0x00, 0x0c,             /* data set 257, 12 bytes */
		10, 0, 0, 1, 0x00, 0x00, 0x00, 0x2a, /* 10.0.0.1, 42 packets */
	};
	static const uint8_t tmpl[] = {
		0x00, 0x02, 0x00, 0x10,             /* template set, 16 bytes */
		0x01, 0x01, 0x00, 0x02,             /* template 257, 2 fields */
		0x00, 0x08, 0x00, 0x04,             /* sourceIPv4Address */
		0x00, 0x02, 0x00, 0x04,             /* packetDeltaCount, 4 */
	};
	uint8_t buf[128];
	struct got g;
	struct mm_ingest *ing = make(&g, NULL);
	struct mm_ingest_stats st;

	feed(ing, buf, ipfix_msg(buf, data, sizeof(data), 0), SEC);
	cr_expect_eq(g.n, 0);
	feed(ing, buf, ipfix_msg(buf, tmpl, sizeof(tmpl), 0), 2 * SEC);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.flows[0].fwd_packets, 42);
	totals(ing, &st);
	cr_expect_eq(st.sets_pending, 1);
	cr_expect_eq(st.sets_late_decoded, 1);
	/* A held set whose template never comes is dropped when its time is up. */
	feed(ing, buf, ipfix_msg(buf, (const uint8_t[]){ 0x01, 0x02, 0x00, 0x08, 1, 2, 3, 4 }, 8, 1), 3 * SEC);
	mm_ingest_advance(ing, 60 * SEC);
	totals(ing, &st);
	cr_expect_eq(st.drops[MM_IDROP_TEMPLATE_MISS], 1);
	mm_ingest_free(ing);
}

Test(ingest, ipfix_withdrawal_forgets_template)
{
	static const uint8_t sets[] = {
		0x00, 0x02, 0x00, 0x0c,             /* template set, 12 bytes */
		0x01, 0x00, 0x00, 0x01,             /* template 256, 1 field */
		0x00, 0x08, 0x00, 0x04,             /* sourceIPv4Address */
		0x00, 0x02, 0x00, 0x08,             /* template set, 8 bytes */
		0x01, 0x00, 0x00, 0x00,             /* template 256, 0 fields: withdrawn */
		0x00, 0x00, 0x00, 0x00,             /* padding */
	};
	uint8_t buf[128];
	struct got g;
	struct mm_ingest *ing = make(&g, NULL);
	struct mm_ingest_stats st;

	feed(ing, buf, ipfix_msg(buf, sets, 20, 0), SEC);
	totals(ing, &st);
	cr_expect_eq(st.templates_added, 1);
	cr_expect_eq(st.templates_withdrawn, 1);
	cr_expect_eq(st.templates_active, 0);
	mm_ingest_free(ing);
}

/* Sends one IPFIX template set and returns the totals afterwards. */
static void send_template(const uint8_t *set, size_t len, struct mm_ingest_stats *st)
{
	uint8_t buf[512];
	struct got g;
	struct mm_ingest *ing = make(&g, NULL);

	feed(ing, buf, ipfix_msg(buf, set, len, 0), SEC);
	totals(ing, st);
	cr_expect_eq(st->templates_active, 0, "a malicious template must not be kept");
	mm_ingest_free(ing);
}

Test(ingest, malicious_templates_are_refused_and_counted)
{
	struct mm_ingest_stats st;

	/* template id 5, below 256 */
	send_template((const uint8_t[]){ 0x00, 0x02, 0x00, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x08, 0x00, 0x04 }, 12, &st);
	cr_expect_eq(st.drops[MM_IDROP_TEMPLATE_BAD_ID], 1);
	/* one field of length 0: a record of no bytes */
	send_template((const uint8_t[]){ 0x00, 0x02, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00 }, 12, &st);
	cr_expect_eq(st.drops[MM_IDROP_TEMPLATE_BAD_FIELDS], 1);
	/* field count 65535: over the cap, and its fields overrun the set */
	send_template((const uint8_t[]){ 0x00, 0x02, 0x00, 0x0c, 0x01, 0x00, 0xff, 0xff, 0x00, 0x08, 0x00, 0x04 }, 12, &st);
	cr_expect_eq(st.drops[MM_IDROP_TEMPLATE_BAD_FIELDS], 1);
	/* two fields announced, one present: overruns the set */
	send_template((const uint8_t[]){ 0x00, 0x02, 0x00, 0x0c, 0x01, 0x00, 0x00, 0x02, 0x00, 0x08, 0x00, 0x04 }, 12, &st);
	cr_expect_eq(st.drops[MM_IDROP_TEMPLATE_OVERRUN], 1);
	/* two fields of 65000 bytes: the record cannot fit any message */
	send_template((const uint8_t[]){ 0x00, 0x02, 0x00, 0x10, 0x01, 0x00, 0x00, 0x02, 0x00, 0x52, 0xfd, 0xe8,
					 0x00, 0x53, 0xfd, 0xe8 }, 16, &st);
	cr_expect_eq(st.drops[MM_IDROP_TEMPLATE_BAD_LENGTH], 1);
	/* set length 0xffff beyond the message */
	send_template((const uint8_t[]){ 0x00, 0x02, 0xff, 0xff, 0x01, 0x00, 0x00, 0x01 }, 8, &st);
	cr_expect_eq(st.drops[MM_IDROP_BAD_SET], 1);
}

Test(ingest, template_storm_hits_the_exporter_cap)
{
	struct mm_ingest_config cfg;
	uint8_t set[4 + 100 * 8], buf[1024];
	struct got g;
	struct mm_ingest *ing;
	struct mm_ingest_stats st;

	mm_ingest_config_default(&cfg);
	cfg.max_templates = 10;
	ing = make(&g, &cfg);
	set[0] = 0x00, set[1] = 0x02;                   /* template set */
	set[2] = (uint8_t)(sizeof(set) >> 8), set[3] = (uint8_t)sizeof(set);
	for (unsigned i = 0; i < 100; i++) {
		uint8_t *t = set + 4 + i * 8;
		t[0] = (uint8_t)((256 + i) >> 8), t[1] = (uint8_t)(256 + i); /* template 256+i */
		t[2] = 0x00, t[3] = 0x01;                                     /* 1 field */
		t[4] = 0x00, t[5] = 0x08, t[6] = 0x00, t[7] = 0x04;           /* sourceIPv4Address */
	}
	feed(ing, buf, ipfix_msg(buf, set, sizeof(set), 0), SEC);
	totals(ing, &st);
	cr_expect_eq(st.templates_active, 10);
	cr_expect_eq(st.drops[MM_IDROP_TEMPLATE_CAP], 90);
	mm_ingest_free(ing);
}

Test(ingest, netflow_v9_options_sampling_applies_to_flows)
{
	static const uint8_t msg[] = {
		0x00, 0x09, 0x00, 0x04,             /* version 9, 4 records */
		0x00, 0x00, 0x03, 0xe8,             /* sysUpTime 1000 ms */
		0x60, 0x00, 0x00, 0x00,             /* unix_secs */
		0x00, 0x00, 0x00, 0x01,             /* package sequence 1 */
		0x00, 0x00, 0x00, 0x09,             /* source id 9 */
		0x00, 0x01, 0x00, 0x12,             /* options template flowset, 18 bytes */
		0x01, 0x00, 0x00, 0x04, 0x00, 0x04, /* template 256, scope 4 bytes, options 4 bytes */
		0x00, 0x01, 0x00, 0x04,             /* scope: system, 4 */
		0x00, 0x22, 0x00, 0x04,             /* sampling_interval (34), 4 */
		0x01, 0x00, 0x00, 0x0c,             /* data flowset 256, 12 bytes */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, /* system 0, interval 256 */
		0x00, 0x00, 0x00, 0x10,             /* template flowset, 16 bytes */
		0x01, 0x01, 0x00, 0x02,             /* template 257, 2 fields */
		0x00, 0x16, 0x00, 0x04,             /* first_switched (22), 4 */
		0x00, 0x02, 0x00, 0x04,             /* in_pkts, 4 */
		0x01, 0x01, 0x00, 0x0c,             /* data flowset 257, 12 bytes */
		0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x03, /* first at uptime 100 ms, 3 packets */
	};
	struct got g;
	struct mm_ingest *ing = make(&g, NULL);

	cr_assert_eq(feed(ing, msg, sizeof(msg), SEC), 0);
	cr_assert_eq(g.n, 1);
	cr_expect_eq(g.flows[0].sampling_rate, 256);
	cr_expect_eq(g.flows[0].fwd_packets, 3);
	cr_expect_eq(g.flows[0].first_ns, 0x60000000ull * SEC - 900000000ull);
	cr_expect_eq(g.n_records, 2, "options record and flow record both reach the record callback");
	mm_ingest_free(ing);
}

Test(ingest, json_escapes_and_names)
{
	static const uint8_t name[] = { 'a', '"', '\\', 0x01, 0xff, 'z' };
	static const uint8_t port[] = { 0x00, 0x50 };
	static const uint8_t pen[] = { 0xde, 0xad };
	struct mm_ingest_field fields[] = {
		{ .id = 82, .len = sizeof(name), .data = name },           /* interfaceName */
		{ .id = 7, .len = 2, .data = port },                       /* sourceTransportPort */
		{ .id = 7, .len = 2, .data = port },                       /* repeated */
		{ .enterprise = 9, .id = 1000, .len = 2, .data = pen },    /* unknown enterprise element */
		{ .enterprise = 29305, .id = 2, .len = 2, .data = port },  /* reversePacketDeltaCount */
	};
	struct mm_addr exporter;
	struct mm_ingest_record rec = { .exporter = &exporter, .version = 10, .template_id = 300, .domain = 4,
					.fields = fields, .n_fields = 5 };
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	mm_addr_set_v4_u32(&exporter, 0xc0000207);
	cr_assert_eq(mm_ingest_json_write(out, &rec), 0);
	fclose(out);
	cr_expect_str_eq(text, "{\"interfaceName\":\"a\\\"\\\\\\u0001\\ufffdz\",\"sourceTransportPort\":80,"
			       "\"sourceTransportPort#2\":80,\"9/1000\":\"dead\",\"reversePacketDeltaCount\":80,"
			       "\"_exporter\":\"192.0.2.7\",\"_domain\":4,\"_template\":300}\n");
	free(text);
}

Test(ingest, garbage_never_crashes_and_is_counted)
{
	uint8_t msg[256];
	struct got g;
	struct mm_ingest *ing = make(&g, NULL);
	struct mm_ingest_stats st;
	uint32_t x = 12345;

	for (unsigned round = 0; round < 300; round++) {
		for (size_t i = 0; i < sizeof(msg); i++) {
			x = x * 1103515245u + 12345u; /* fixed LCG: the same bytes every run */
			msg[i] = (uint8_t)(x >> 16);
		}
		msg[0] = 0;
		msg[1] = (uint8_t)(round % 3 == 0 ? 5 : round % 3 == 1 ? 9 : 10);
		feed(ing, msg, 20 + round % 200, (round + 1) * SEC);
	}
	totals(ing, &st);
	cr_expect_gt(st.messages, 0);
	mm_ingest_free(ing);
}
