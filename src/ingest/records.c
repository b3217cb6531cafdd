/*
 * The record decoder shared by NetFlow v5, v9 and IPFIX: walks the records
 * of one data set with its compiled template, runs the template's ops to
 * fill a flow record (or, for options data, the session's sampling and
 * clock state), resolves the many time encodings to Unix nanoseconds, and
 * hands the raw fields to the record callback when one is set.
 */
#include "ingest/ingest_int.h"

#include "mamori/timefmt.h"

#include <string.h>

#define NTP_UNIX_OFFSET 2208988800ull /* seconds from 1900-01-01 to 1970-01-01 */

enum time_have {
	HAVE_START = 1u << 0,
	HAVE_END = 1u << 1,
	HAVE_START_UP = 1u << 2,
	HAVE_END_UP = 1u << 3,
	HAVE_DURATION = 1u << 4,
};

/* Values of one record that need the whole record before they mean anything. */
struct rec_scratch {
	struct mm_flow *f;            /* the flow batch's next slot, filled in place */
	unsigned have;
	uint32_t start_up, end_up;
	uint64_t duration_ns;
	uint64_t interval, space;
	uint64_t size, population;    /* random n-out-of-N sampling (RFC 5477 samplingSize/Population) */
	bool has_sampler_id, has_interval, has_sys_init;
	uint32_t sampler_id;
	uint64_t sys_init_ms;
	uint16_t icmp_type_code;
	bool has_icmp_tc, has_icmp_type, has_icmp_code;
	bool has_sensor;              /* the record names its observation point */
};

static uint64_t ntp_to_ns(const uint8_t *p)
{
	uint64_t secs = rd32(p), frac = rd32(p + 4);

	if (secs < NTP_UNIX_OFFSET)
		return 0;
	return (secs - NTP_UNIX_OFFSET) * MM_NS_PER_SEC + ((frac * MM_NS_PER_SEC) >> 32);
}

static uint64_t export_ns(const struct msg_ctx *m)
{
	return (uint64_t)m->export_secs * MM_NS_PER_SEC + m->export_nsecs;
}

/*
 * A sysUpTime-relative time. NetFlow headers give the uptime at export; the
 * signed 32-bit distance survives the 49.7-day wrap of the counter and the
 * exporters (softflowd) that stamp a flow a little after the header.
 */
static uint64_t uptime_to_ns(const struct msg_ctx *m, uint32_t t)
{
	if (m->version == 10) {
		if (!m->s->sys_init_ms)
			return 0;
		return (m->s->sys_init_ms + t) * 1000000ull;
	}
	int64_t behind_ms = (int32_t)(m->uptime_ms - t);
	int64_t ns = (int64_t)export_ns(m) - behind_ms * 1000000;
	return ns > 0 ? (uint64_t)ns : 0;
}

/* rd_uint with the lengths templates use as single loads: this runs for every field of every record. */
static inline uint64_t read_value(const uint8_t *p, unsigned len)
{
	switch (len) {
	case 1: return p[0];
	case 2: return rd16(p);
	case 4: return rd32(p);
	case 8: return (uint64_t)rd32(p) << 32 | rd32(p + 4);
	default: return len < 8 ? rd_uint(p, len) : 0;
	}
}

static void apply_op(const struct msg_ctx *m, struct rec_scratch *r, const struct tmpl_op *op,
		     const uint8_t *p)
{
	struct mm_flow *f = r->f;
	uint64_t v = read_value(p, op->len);

	switch ((enum op_kind)op->kind) {
	case OP_SRC_V4: mm_addr_set_v4(&f->src, p); break;
	case OP_DST_V4: mm_addr_set_v4(&f->dst, p); break;
	case OP_SRC_V6: mm_addr_set_v6(&f->src, p); break;
	case OP_DST_V6: mm_addr_set_v6(&f->dst, p); break;
	case OP_NEXTHOP_V4:
		/* 0.0.0.0 is how exporters say "no next hop": keep the all-zero "unknown". */
		if (v)
			mm_addr_set_v4(&f->next_hop, p);
		break;
	case OP_NEXTHOP_V6: mm_addr_set_v6(&f->next_hop, p); break;
	case OP_SRC_PORT: f->src_port = (uint16_t)v; break;
	case OP_DST_PORT: f->dst_port = (uint16_t)v; break;
	case OP_PROTO: f->proto = (uint8_t)v; break;
	case OP_TCP_FLAGS: f->fwd_tcp_flags = (uint8_t)v; break;
	case OP_REV_TCP_FLAGS: f->rev_tcp_flags = (uint8_t)v; break;
	case OP_BYTES: f->fwd_bytes = v; break;
	case OP_PACKETS: f->fwd_packets = v; break;
	case OP_REV_BYTES: f->rev_bytes = v; break;
	case OP_REV_PACKETS: f->rev_packets = v; break;
	case OP_IN_IF: f->in_if = (uint32_t)v; break;
	case OP_OUT_IF: f->out_if = (uint32_t)v; break;
	case OP_SRC_AS: f->src_as = (uint32_t)v; break;
	case OP_DST_AS: f->dst_as = (uint32_t)v; break;
	case OP_VLAN: f->vlan = (uint16_t)(v & 0xfff); break;
	case OP_ICMP_TYPE_CODE: r->icmp_type_code = (uint16_t)v; r->has_icmp_tc = true; break;
	case OP_ICMP_TYPE: f->icmp_type = (uint8_t)v; r->has_icmp_type = true; break;
	case OP_ICMP_CODE: f->icmp_code = (uint8_t)v; r->has_icmp_code = true; break;
	case OP_END_REASON: f->end_reason = v <= MM_END_RESOURCE ? (uint8_t)v : MM_END_UNKNOWN; break;
	case OP_START_SECS: f->first_ns = v * MM_NS_PER_SEC; r->have |= HAVE_START; break;
	case OP_END_SECS: f->last_ns = v * MM_NS_PER_SEC; r->have |= HAVE_END; break;
	case OP_START_MS: f->first_ns = v * 1000000; r->have |= HAVE_START; break;
	case OP_END_MS: f->last_ns = v * 1000000; r->have |= HAVE_END; break;
	case OP_START_NTP: f->first_ns = ntp_to_ns(p); r->have |= HAVE_START; break;
	case OP_END_NTP: f->last_ns = ntp_to_ns(p); r->have |= HAVE_END; break;
	case OP_START_DELTA_US: f->first_ns = export_ns(m) - v * 1000; r->have |= HAVE_START; break;
	case OP_END_DELTA_US: f->last_ns = export_ns(m) - v * 1000; r->have |= HAVE_END; break;
	case OP_START_UPTIME: r->start_up = (uint32_t)v; r->have |= HAVE_START_UP; break;
	case OP_END_UPTIME: r->end_up = (uint32_t)v; r->have |= HAVE_END_UP; break;
	case OP_DURATION_MS: r->duration_ns = v * 1000000; r->have |= HAVE_DURATION; break;
	case OP_DURATION_US: r->duration_ns = v * 1000; r->have |= HAVE_DURATION; break;
	case OP_SAMPLING_INTERVAL: r->interval = v; r->has_interval = true; break;
	case OP_SAMPLING_SPACE: r->space = v; break;
	case OP_SAMPLING_SIZE: r->size = v; break;
	case OP_SAMPLING_POPULATION: r->population = v; r->has_interval = true; break;
	case OP_SAMPLER_ID: r->sampler_id = (uint32_t)v; r->has_sampler_id = true; break;
	case OP_SYS_INIT_MS: r->sys_init_ms = v; r->has_sys_init = true; break;
	case OP_FLOW_ID: f->id = v; break;
	case OP_OBS_POINT: f->sensor_id = (uint32_t)v; r->has_sensor = true; break;
	}
}

/*
 * 1-in-N from an interval and, for systematic count-based sampling, the
 * space between; for n-out-of-N sampling, N / n.
 */
static uint32_t sampling_rate(const struct rec_scratch *r)
{
	uint64_t rate = r->interval;

	if (r->population && r->size)
		rate = r->population / r->size;
	else if (r->space && r->interval)
		rate = (r->interval + r->space) / r->interval;
	return rate > UINT32_MAX ? UINT32_MAX : (uint32_t)rate;
}

static uint32_t sampler_rate(const struct session *s, uint32_t id)
{
	for (size_t i = 0; i < s->n_samplers; i++)
		if (s->samplers[i].id == id)
			return s->samplers[i].rate;
	return s->default_rate;
}

static void learn_options(struct session *s, const struct rec_scratch *r)
{
	if (r->has_sys_init)
		s->sys_init_ms = r->sys_init_ms;
	if (!r->has_interval)
		return;
	s->default_rate = sampling_rate(r);
	if (!r->has_sampler_id)
		return;
	for (size_t i = 0; i < s->n_samplers; i++) {
		if (s->samplers[i].id == r->sampler_id) {
			s->samplers[i].rate = s->default_rate;
			return;
		}
	}
	s->samplers[s->next_sampler] = (struct sampler){ r->sampler_id, s->default_rate };
	s->next_sampler = (s->next_sampler + 1) % MAX_SAMPLERS;
	if (s->n_samplers < MAX_SAMPLERS)
		s->n_samplers++;
}

static void resolve_times(const struct msg_ctx *m, struct rec_scratch *r)
{
	struct mm_flow *f = r->f;

	if (!(r->have & HAVE_START) && (r->have & HAVE_START_UP)) {
		f->first_ns = uptime_to_ns(m, r->start_up);
		if (f->first_ns)
			r->have |= HAVE_START;
	}
	if (!(r->have & HAVE_END) && (r->have & HAVE_END_UP)) {
		f->last_ns = uptime_to_ns(m, r->end_up);
		if (f->last_ns)
			r->have |= HAVE_END;
	}
	if (r->have & HAVE_DURATION) {
		if ((r->have & HAVE_START) && !(r->have & HAVE_END)) {
			f->last_ns = f->first_ns + r->duration_ns;
			r->have |= HAVE_END;
		} else if ((r->have & HAVE_END) && !(r->have & HAVE_START) && f->last_ns >= r->duration_ns) {
			f->first_ns = f->last_ns - r->duration_ns;
			r->have |= HAVE_START;
		}
	}
	if (!(r->have & HAVE_END))
		f->last_ns = (r->have & HAVE_START) ? f->first_ns : export_ns(m);
	if (!(r->have & HAVE_START))
		f->first_ns = f->last_ns;
}

/* ICMP types whose reply is another type, so the pair meets in one flow (flow.h). */
static int icmp_counterpart(uint8_t proto, uint8_t type)
{
	static const uint8_t v4[][2] = { { 8, 0 }, { 0, 8 }, { 13, 14 }, { 14, 13 }, { 15, 16 },
					 { 16, 15 }, { 17, 18 }, { 18, 17 } };
	static const uint8_t v6[][2] = { { 128, 129 }, { 129, 128 }, { 133, 134 }, { 134, 133 },
					 { 135, 136 }, { 136, 135 } };
	const uint8_t(*map)[2] = proto == 1 ? v4 : v6;
	size_t n = proto == 1 ? sizeof(v4) / sizeof(v4[0]) : sizeof(v6) / sizeof(v6[0]);

	for (size_t i = 0; i < n; i++)
		if (map[i][0] == type)
			return map[i][1];
	return -1;
}

/*
 * ICMP type and code come as their own elements, as type*256+code, or (v5
 * and many v9 exporters) in the destination port.
 */
static void resolve_icmp(struct rec_scratch *r)
{
	struct mm_flow *f = r->f;
	int peer;

	if (f->proto != 1 && f->proto != 58)
		return;
	if (r->has_icmp_tc) {
		f->icmp_type = (uint8_t)(r->icmp_type_code >> 8);
		f->icmp_code = (uint8_t)r->icmp_type_code;
	} else if (!r->has_icmp_type && !r->has_icmp_code) {
		f->icmp_type = (uint8_t)(f->dst_port >> 8);
		f->icmp_code = (uint8_t)f->dst_port;
	}
	peer = icmp_counterpart(f->proto, f->icmp_type);
	f->src_port = f->icmp_type;
	f->dst_port = peer >= 0 ? (uint16_t)peer : f->icmp_code;
}

static void finish_flow(const struct msg_ctx *m, struct rec_scratch *r)
{
	struct mm_flow *f = r->f;
	uint32_t rate;

	resolve_times(m, r);
	resolve_icmp(r);
	if (r->has_interval)
		rate = sampling_rate(r);
	else if (r->has_sampler_id)
		rate = sampler_rate(m->s, r->sampler_id);
	else
		rate = m->s->default_rate;
	if (m->version == 5 && (m->v5_sampling & 0x3fff) > 1)
		rate = m->v5_sampling & 0x3fff;
	f->sampling_rate = rate;
	if (rate > 1)
		f->flags |= MM_FLOW_SAMPLED;
	/* The exporter's observation point is the sensor; else the collector's own. */
	if (!r->has_sensor)
		f->sensor_id = m->ing->cfg.sensor_id;
}

static void emit_record(const struct msg_ctx *m, const struct tmpl *t, const uint8_t *rec,
			const uint16_t *offs, const uint16_t *lens, const struct mm_flow *f)
{
	struct mm_ingest *ing = m->ing;
	struct mm_ingest_record out = {
		.exporter = m->exporter, .port = m->port, .version = m->version,
		.template_id = t->id, .options = t->options, .domain = m->domain,
		.sequence = m->sequence, .export_secs = m->export_secs, .export_nsecs = m->export_nsecs,
		.sys_uptime_ms = m->uptime_ms, .v5_count = m->v5_count,
		.v5_engine_type = m->v5_engine_type, .v5_engine_id = m->v5_engine_id,
		.v5_sampling = m->v5_sampling, .fields = ing->fields, .flow = f,
	};
	size_t n = 0;

	for (uint16_t i = 0; i < t->n_fields; i++) {
		const struct tmpl_field *tf = &t->fields[i];
		/* paddingOctets (RFC 7011 section 3.3.1) carry nothing to show;
		 * content is never shown (docs/policy.md, automatic selection) */
		if ((tf->enterprise == 0 && tf->id == 210 && !tf->scope) || tf->content)
			continue;
		ing->fields[n++] = (struct mm_ingest_field){
			.enterprise = tf->enterprise, .id = tf->id, .len = lens[i],
			.data = rec + offs[i], .scope = tf->scope,
		};
	}
	out.n_fields = n;
	ing->record_fn(ing->ctx, &out);
}

/*
 * Offsets and lengths of each field of a record with variable-length
 * fields; returns the record length, or 0 if it runs past avail.
 */
static size_t walk_varlen(const struct tmpl *t, const uint8_t *rec, size_t avail, uint16_t *offs,
			  uint16_t *lens)
{
	size_t pos = 0;

	for (uint16_t i = 0; i < t->n_fields; i++) {
		size_t flen = t->fields[i].len;
		if (flen == IPFIX_VARLEN) {
			if (pos + 1 > avail)
				return 0;
			flen = rec[pos++];
			if (flen == 255) {
				if (pos + 2 > avail)
					return 0;
				flen = rd16(rec + pos);
				pos += 2;
			}
		}
		if (flen > avail - pos)
			return 0;
		offs[i] = (uint16_t)pos;
		lens[i] = (uint16_t)flen;
		pos += flen;
	}
	return pos ? pos : 0;
}

static void decode_one(struct msg_ctx *m, const struct tmpl *t, const uint8_t *rec, const uint16_t *offs,
		       const uint16_t *lens)
{
	struct rec_scratch r = { .f = ingest_flow_slot(m->ing) };
	struct session *s = m->s;

	for (uint16_t i = 0; i < t->n_ops; i++)
		apply_op(m, &r, &t->ops[i], rec + offs[t->ops[i].field]);
	s->st.records_received++;
	s->st.records_decoded++;
	s->st.content_fields_discarded += t->n_content;
	if (t->options) {
		s->st.options_records++;
		learn_options(s, &r);
		if (m->ing->record_fn)
			emit_record(m, t, rec, offs, lens, NULL);
		return;
	}
	finish_flow(m, &r);
	s->st.flows++;
	if (m->ing->record_fn)
		emit_record(m, t, rec, offs, lens, r.f);
	ingest_flow_commit(m->ing);
}

void records_decode_set(struct msg_ctx *m, const struct tmpl *t, const uint8_t *p, size_t len)
{
	uint16_t *offs = m->ing->offs;
	uint16_t *lens = offs + m->ing->cfg.max_fields;
	size_t pos = 0;

	if (!t->varlen) {
		for (uint16_t i = 0; i < t->n_fields; i++) {
			offs[i] = t->fields[i].off;
			lens[i] = t->fields[i].len;
		}
		/* What remains shorter than a record is set padding. */
		for (; t->min_len && len - pos >= t->min_len; pos += t->min_len) {
			decode_one(m, t, p + pos, offs, lens);
			m->n_data_records++;
		}
		return;
	}
	while (len - pos >= t->min_len) {
		size_t rlen = walk_varlen(t, p + pos, len - pos, offs, lens);
		if (!rlen) {
			m->s->st.records_received++;
			m->s->st.records_dropped++;
			ingest_count_drop(m, MM_IDROP_RECORD_OVERRUN);
			m->n_data_records++;
			return;
		}
		decode_one(m, t, p + pos, offs, lens);
		m->n_data_records++;
		pos += rlen;
	}
}

void records_data_set(struct msg_ctx *m, uint16_t id, const uint8_t *p, size_t len)
{
	const struct tmpl *t = tmpl_find(m, id);

	if (t)
		records_decode_set(m, t, p, len);
	else
		ingest_hold_set(m, id, p, len);
}
