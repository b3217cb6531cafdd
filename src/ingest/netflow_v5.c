/*
 * NetFlow v5: a 24-byte header and up to 30 fixed 48-byte records. The
 * record layout is expressed as a template of IPFIX elements, so v5 goes
 * through the same compiled-op decoder (and the same JSON names) as v9 and
 * IPFIX; its times are sysUpTime-relative like v9's.
 */
#include "ingest/ingest_int.h"

#include "mamori/status.h"

#define V5_HEADER_LEN 24
#define V5_RECORD_LEN 48

/* Element id and length of each v5 record field, in order; 210 is paddingOctets. */
static const struct {
	uint16_t id, len;
} v5_layout[] = {
	{ 8, 4 },   /* srcaddr */
	{ 12, 4 },  /* dstaddr */
	{ 15, 4 },  /* nexthop */
	{ 10, 2 },  /* input ifIndex */
	{ 14, 2 },  /* output ifIndex */
	{ 2, 4 },   /* dPkts */
	{ 1, 4 },   /* dOctets */
	{ 22, 4 },  /* first: sysUpTime at first packet */
	{ 21, 4 },  /* last */
	{ 7, 2 },   /* srcport */
	{ 11, 2 },  /* dstport */
	{ 210, 1 }, /* pad1 */
	{ 6, 1 },   /* tcp_flags */
	{ 4, 1 },   /* prot */
	{ 5, 1 },   /* tos */
	{ 16, 2 },  /* src_as */
	{ 17, 2 },  /* dst_as */
	{ 9, 1 },   /* src_mask */
	{ 13, 1 },  /* dst_mask */
	{ 210, 2 }, /* pad2 */
};

#define V5_FIELDS (sizeof(v5_layout) / sizeof(v5_layout[0]))

int netflow_v5_template(struct tmpl **out)
{
	struct tmpl_field fields[V5_FIELDS] = { 0 };
	struct tmpl_spec spec = { .id = 0, .version = 5, .n_fields = V5_FIELDS, .fields = fields };

	for (size_t i = 0; i < V5_FIELDS; i++) {
		fields[i].id = v5_layout[i].id;
		fields[i].len = v5_layout[i].len;
	}
	return tmpl_build(out, &spec);
}

int netflow_v5_decode(struct msg_ctx *m, const uint8_t *msg, size_t len)
{
	uint16_t count;
	struct session *s;

	if (len < V5_HEADER_LEN) {
		m->ing->orphan.messages++;
		m->ing->orphan.drops[MM_IDROP_SHORT_HEADER]++;
		return mm_fail(MM_ETRUNC, "netflow v5: header needs 24 bytes, message has %zu", len);
	}
	m->v5_engine_type = msg[20];
	m->v5_engine_id = msg[21];
	s = ingest_session(m, 5, (uint32_t)msg[20] << 8 | msg[21]);
	if (!s)
		return mm_fail(MM_ELIMIT, "netflow v5: session table full");
	count = rd16(msg + 2);
	if ((size_t)count * V5_RECORD_LEN > len - V5_HEADER_LEN) {
		ingest_count_drop(m, MM_IDROP_BAD_LENGTH);
		return mm_fail(MM_EFORMAT, "netflow v5: count %u needs %u bytes, message has %zu", count,
			       V5_HEADER_LEN + count * V5_RECORD_LEN, len);
	}
	m->uptime_ms = rd32(msg + 4);
	m->export_secs = rd32(msg + 8);
	m->export_nsecs = rd32(msg + 12);
	if (m->export_nsecs >= 1000000000u)
		m->export_nsecs = 0;
	m->sequence = rd32(msg + 16);
	m->v5_sampling = rd16(msg + 22);
	m->v5_count = count;
	ingest_sequence(m, m->sequence, count, true);
	records_decode_set(m, m->ing->v5_tmpl, msg + V5_HEADER_LEN, (size_t)count * V5_RECORD_LEN);
	return 0;
}
