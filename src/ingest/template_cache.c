/*
 * Template caches: each session keeps its templates sorted by id; each
 * exporter is charged for the count and bytes of all its sessions'
 * templates and refused new ones at its caps. A template is compiled once
 * into a list of ops with fixed offsets, so decoding a record never looks
 * an element up by id.
 */
#include "ingest/ingest_int.h"

#include "mamori/status.h"

#include <stdlib.h>
#include <string.h>

/* Which op a forward (enterprise 0) element feeds, or 0. Same numbers in NetFlow v9. */
static uint8_t op_for_iana(uint16_t id)
{
	switch (id) {
	case 8: return OP_SRC_V4;
	case 12: return OP_DST_V4;
	case 27: return OP_SRC_V6;
	case 28: return OP_DST_V6;
	case 15: return OP_NEXTHOP_V4;
	case 62: return OP_NEXTHOP_V6;
	case 7: return OP_SRC_PORT;
	case 11: return OP_DST_PORT;
	case 4: return OP_PROTO;
	case 6: return OP_TCP_FLAGS;
	case 1: case 85: case 231: return OP_BYTES;          /* delta, total, initiatorOctets */
	case 2: case 86: case 298: return OP_PACKETS;        /* delta, total, initiatorPackets */
	case 232: return OP_REV_BYTES;                       /* responderOctets */
	case 299: return OP_REV_PACKETS;                     /* responderPackets */
	case 10: return OP_IN_IF;
	case 14: return OP_OUT_IF;
	case 16: return OP_SRC_AS;
	case 17: return OP_DST_AS;
	case 58: case 243: return OP_VLAN;                   /* vlanId, dot1qVlanId */
	case 32: case 139: return OP_ICMP_TYPE_CODE;
	case 176: case 178: return OP_ICMP_TYPE;
	case 177: case 179: return OP_ICMP_CODE;
	case 136: return OP_END_REASON;
	case 148: return OP_FLOW_ID;
	case 138: return OP_OBS_POINT;                       /* observationPointId: the sensor */
	case 150: return OP_START_SECS;
	case 151: return OP_END_SECS;
	case 152: return OP_START_MS;
	case 153: return OP_END_MS;
	case 154: case 156: return OP_START_NTP;
	case 155: case 157: return OP_END_NTP;
	case 158: return OP_START_DELTA_US;
	case 159: return OP_END_DELTA_US;
	case 22: return OP_START_UPTIME;
	case 21: return OP_END_UPTIME;
	case 161: return OP_DURATION_MS;
	case 162: return OP_DURATION_US;
	case 34: case 50: case 305: return OP_SAMPLING_INTERVAL;
	case 306: return OP_SAMPLING_SPACE;
	case 309: return OP_SAMPLING_SIZE;                   /* RFC 5477: n of ... */
	case 310: return OP_SAMPLING_POPULATION;             /* ... N packets */
	case 48: case 302: return OP_SAMPLER_ID;             /* samplerId, selectorId */
	case 160: return OP_SYS_INIT_MS;
	default: return 0;
	}
}

static uint8_t op_for_reverse(uint16_t id)
{
	switch (id) {
	case 1: case 85: return OP_REV_BYTES;
	case 2: case 86: return OP_REV_PACKETS;
	case 6: return OP_REV_TCP_FLAGS;
	default: return 0;
	}
}

static bool op_len_ok(uint8_t kind, uint16_t len)
{
	switch (kind) {
	case OP_SRC_V4: case OP_DST_V4: case OP_NEXTHOP_V4:
		return len == 4;
	case OP_SRC_V6: case OP_DST_V6: case OP_NEXTHOP_V6:
		return len == 16;
	case OP_START_NTP: case OP_END_NTP:
		return len == 8;
	default:
		return len >= 1 && len <= 8;
	}
}

static bool op_for_options(uint8_t kind)
{
	return kind == OP_SAMPLING_INTERVAL || kind == OP_SAMPLING_SPACE || kind == OP_SAMPLING_SIZE ||
	       kind == OP_SAMPLING_POPULATION || kind == OP_SAMPLER_ID || kind == OP_SYS_INIT_MS;
}

static uint8_t op_kind(const struct tmpl_spec *spec, const struct tmpl_field *f)
{
	uint8_t kind = 0;

	/* NetFlow v9 scope fields carry scope types (1 = system...), not elements. */
	if (f->scope && spec->version == 9)
		return 0;
	if (f->len == IPFIX_VARLEN)
		return 0;
	if (f->enterprise == 0)
		kind = op_for_iana(f->id);
	else if (f->enterprise == PEN_REVERSE)
		kind = op_for_reverse(f->id);
	if (!kind || !op_len_ok(kind, f->len))
		return 0;
	if (spec->options != op_for_options(kind) && kind != OP_SAMPLING_INTERVAL && kind != OP_SAMPLER_ID)
		return 0;
	return kind;
}

/* The flow field an op fills: every encoding of a start (or end) time fills the same one. */
static uint8_t op_target(uint8_t kind)
{
	switch (kind) {
	case OP_START_SECS: case OP_START_MS: case OP_START_NTP: case OP_START_DELTA_US:
	case OP_START_UPTIME:
		return OP_START_SECS;
	case OP_END_SECS: case OP_END_MS: case OP_END_NTP: case OP_END_DELTA_US: case OP_END_UPTIME:
		return OP_END_SECS;
	}
	return kind;
}

/*
 * When several elements fill one field, the most exact wins: a delta count
 * over a running total (a collector sums deltas), and the finest time
 * (exporters such as mamori's own send nanoseconds and, for older
 * collectors, milliseconds too). Equal ranks keep template order.
 */
static unsigned element_rank(const struct tmpl_field *f)
{
	if (f->enterprise != 0)
		return 1;
	switch (f->id) {
	case 1: case 2: return 2;              /* octet/packetDeltaCount */
	case 156: case 157: return 5;          /* nanoseconds */
	case 154: case 155: case 158: case 159: return 4; /* microseconds */
	case 152: case 153: case 21: case 22: return 3;   /* milliseconds, sysUpTime */
	}
	return 1;
}

int tmpl_build(struct tmpl **out, const struct tmpl_spec *spec)
{
	uint8_t rank_of[64] = { 0 };   /* by op_target: rank of the element kept */
	uint16_t op_at[64];            /* by op_target: its index in ops */
	size_t n_ops = 0, size;
	uint64_t seen = 0;
	uint32_t off = 0;
	bool varlen = false;
	struct tmpl *t;

	*out = NULL;
	size = sizeof(*t) + spec->n_fields * (sizeof(struct tmpl_field) + sizeof(struct tmpl_op));
	t = calloc(1, size);
	if (!t)
		return mm_fail(MM_ENOMEM, "ingest: template %u: out of memory", spec->id);
	t->fields = (struct tmpl_field *)(t + 1);
	t->ops = (struct tmpl_op *)(t->fields + spec->n_fields);
	for (uint16_t i = 0; i < spec->n_fields; i++) {
		struct tmpl_field *f = &t->fields[i];
		uint8_t kind;

		*f = spec->fields[i];
		f->off = (uint16_t)off;
		f->content = mm_ie_carries_content(f->enterprise, f->id, f->len);
		t->n_content += f->content;
		if (f->len == IPFIX_VARLEN) {
			varlen = true;
			off += 1; /* at least its one-byte length */
		} else {
			off += f->len;
		}
		kind = op_kind(spec, f);
		if (kind) {
			uint8_t target = op_target(kind);
			unsigned rank = element_rank(f);
			struct tmpl_op op = { .field = i, .kind = kind, .len = (uint8_t)f->len };

			if (!(seen & (1ull << target))) {
				seen |= 1ull << target;
				rank_of[target] = (uint8_t)rank;
				op_at[target] = (uint16_t)n_ops;
				t->ops[n_ops++] = op;
			} else if (rank > rank_of[target]) {
				rank_of[target] = (uint8_t)rank;
				t->ops[op_at[target]] = op;
			}
		}
	}
	t->id = spec->id;
	t->options = spec->options;
	t->varlen = varlen;
	t->n_fields = spec->n_fields;
	t->n_ops = (uint16_t)n_ops;
	t->min_len = off;
	t->bytes = sizeof(*t) + spec->n_fields * sizeof(struct tmpl_field) + n_ops * sizeof(struct tmpl_op);
	*out = t;
	return 0;
}

void tmpl_free(struct tmpl *t)
{
	free(t);
}

/* Index of id in the session's sorted list, or where it would go (*found false). */
static size_t tmpl_index(const struct session *s, uint16_t id, bool *found)
{
	size_t lo = 0, hi = s->n_tmpls;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->tmpls[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < s->n_tmpls && s->tmpls[lo]->id == id;
	return lo;
}

static void tmpl_remove_at(struct session *s, size_t i)
{
	struct tmpl *t = s->tmpls[i];

	s->exp->n_templates--;
	s->exp->template_bytes -= t->bytes;
	s->st.templates_active--;
	s->st.template_bytes -= t->bytes;
	tmpl_free(t);
	memmove(&s->tmpls[i], &s->tmpls[i + 1], (s->n_tmpls - i - 1) * sizeof(s->tmpls[0]));
	s->n_tmpls--;
}

static bool tmpl_same(const struct tmpl *t, const struct tmpl_spec *spec)
{
	if (t->options != spec->options || t->n_fields != spec->n_fields)
		return false;
	for (uint16_t i = 0; i < spec->n_fields; i++) {
		const struct tmpl_field *a = &t->fields[i], *b = &spec->fields[i];
		if (a->id != b->id || a->len != b->len || a->enterprise != b->enterprise || a->scope != b->scope)
			return false;
	}
	return true;
}

static int tmpl_make_room(struct session *s)
{
	struct tmpl **grown;
	size_t cap;

	if (s->n_tmpls < s->cap_tmpls)
		return 0;
	cap = s->cap_tmpls ? s->cap_tmpls * 2 : 8;
	grown = realloc(s->tmpls, cap * sizeof(*grown));
	if (!grown)
		return MM_ENOMEM;
	s->tmpls = grown;
	s->cap_tmpls = cap;
	return 0;
}

/*
 * Refuses what no exporter needs and an attacker would use: ids below 256,
 * no fields or more than the cap, v9 fields claiming variable length, and
 * records that could not fit in a message or take no bytes at all.
 */
int tmpl_check(struct msg_ctx *m, const struct tmpl_spec *spec)
{
	uint32_t total = 0;

	if (spec->id < 256) {
		ingest_count_drop(m, MM_IDROP_TEMPLATE_BAD_ID);
		return MM_EFORMAT;
	}
	if (!spec->n_fields || spec->n_fields > m->ing->cfg.max_fields) {
		ingest_count_drop(m, MM_IDROP_TEMPLATE_BAD_FIELDS);
		return MM_EFORMAT;
	}
	for (uint16_t i = 0; i < spec->n_fields; i++) {
		uint16_t len = spec->fields[i].len;
		if (len == IPFIX_VARLEN && spec->version != 10) {
			ingest_count_drop(m, MM_IDROP_TEMPLATE_BAD_LENGTH);
			return MM_EFORMAT;
		}
		total += len == IPFIX_VARLEN ? 1 : len;
	}
	if (total > MAX_RECORD_LEN) {
		ingest_count_drop(m, MM_IDROP_TEMPLATE_BAD_LENGTH);
		return MM_EFORMAT;
	}
	if (!total) {
		ingest_count_drop(m, MM_IDROP_TEMPLATE_BAD_FIELDS);
		return MM_EFORMAT;
	}
	return 0;
}

int tmpl_insert(struct msg_ctx *m, const struct tmpl_spec *spec)
{
	struct session *s = m->s;
	const struct mm_ingest_config *cfg = &m->ing->cfg;
	struct tmpl *t = NULL;
	size_t i, old_bytes = 0;
	bool found;
	int rc;

	rc = tmpl_check(m, spec);
	if (rc)
		return rc;
	i = tmpl_index(s, spec->id, &found);
	if (found && tmpl_same(s->tmpls[i], spec)) {
		s->tmpls[i]->refreshed_ns = m->now_ns;
		ingest_release_held(m, spec->id);
		return 0;
	}
	rc = tmpl_build(&t, spec);
	if (rc)
		return rc;
	if (found)
		old_bytes = s->tmpls[i]->bytes;
	if ((!found && s->exp->n_templates >= cfg->max_templates) ||
	    s->exp->template_bytes - old_bytes + t->bytes > cfg->max_template_bytes) {
		tmpl_free(t);
		ingest_count_drop(m, MM_IDROP_TEMPLATE_CAP);
		return MM_ELIMIT;
	}
	t->refreshed_ns = m->now_ns;
	if (found) {
		s->exp->template_bytes -= old_bytes;
		s->st.template_bytes -= old_bytes;
		tmpl_free(s->tmpls[i]);
		s->tmpls[i] = t;
		s->st.templates_replaced++;
	} else {
		if (tmpl_make_room(s)) {
			tmpl_free(t);
			return mm_fail(MM_ENOMEM, "ingest: template %u: out of memory", spec->id);
		}
		memmove(&s->tmpls[i + 1], &s->tmpls[i], (s->n_tmpls - i) * sizeof(s->tmpls[0]));
		s->tmpls[i] = t;
		s->n_tmpls++;
		s->exp->n_templates++;
		s->st.templates_active++;
		s->st.templates_added++;
	}
	s->exp->template_bytes += t->bytes;
	s->st.template_bytes += t->bytes;
	ingest_release_held(m, spec->id);
	return 0;
}

struct tmpl *tmpl_find(struct msg_ctx *m, uint16_t id)
{
	struct session *s = m->s;
	bool found;
	size_t i = tmpl_index(s, id, &found);

	if (!found)
		return NULL;
	if (m->now_ns > s->tmpls[i]->refreshed_ns &&
	    m->now_ns - s->tmpls[i]->refreshed_ns > m->ing->cfg.template_lifetime_ns) {
		tmpl_remove_at(s, i);
		s->st.templates_expired++;
		return NULL;
	}
	return s->tmpls[i];
}

void tmpl_withdraw(struct msg_ctx *m, uint16_t id)
{
	bool found;
	size_t i = tmpl_index(m->s, id, &found);

	if (found) {
		tmpl_remove_at(m->s, i);
		m->s->st.templates_withdrawn++;
	}
}

void tmpl_withdraw_all(struct msg_ctx *m, bool options)
{
	struct session *s = m->s;

	for (size_t i = s->n_tmpls; i-- > 0;) {
		if (s->tmpls[i]->options == options) {
			tmpl_remove_at(s, i);
			s->st.templates_withdrawn++;
		}
	}
}

void tmpl_session_expire(struct mm_ingest *ing, struct session *s, uint64_t now_ns)
{
	for (size_t i = s->n_tmpls; i-- > 0;) {
		if (now_ns > s->tmpls[i]->refreshed_ns &&
		    now_ns - s->tmpls[i]->refreshed_ns > ing->cfg.template_lifetime_ns) {
			tmpl_remove_at(s, i);
			s->st.templates_expired++;
		}
	}
}

void tmpl_session_clear(struct session *s)
{
	while (s->n_tmpls)
		tmpl_remove_at(s, s->n_tmpls - 1);
	free(s->tmpls);
	s->tmpls = NULL;
	s->cap_tmpls = 0;
}
