/*
 * The ingest decoder object: finds or makes the exporter and session a
 * message belongs to (keyed hash tables, capped), dispatches on the version
 * field, tracks sequence numbers, holds data sets that came before their
 * template for a bounded time and space, and batches flows to the sink.
 */
#include "ingest/ingest_int.h"

#include "mamori/status.h"

#include <stdlib.h>
#include <string.h>

static const char *const drop_names[MM_IDROP__COUNT] = {
	[MM_IDROP_SHORT_HEADER] = "short-header",
	[MM_IDROP_BAD_VERSION] = "bad-version",
	[MM_IDROP_BAD_LENGTH] = "bad-length",
	[MM_IDROP_BAD_SET] = "bad-set",
	[MM_IDROP_TEMPLATE_BAD_ID] = "template-bad-id",
	[MM_IDROP_TEMPLATE_BAD_FIELDS] = "template-bad-fields",
	[MM_IDROP_TEMPLATE_BAD_LENGTH] = "template-bad-length",
	[MM_IDROP_TEMPLATE_OVERRUN] = "template-overrun",
	[MM_IDROP_TEMPLATE_CAP] = "template-cap",
	[MM_IDROP_TEMPLATE_MISS] = "template-miss",
	[MM_IDROP_PENDING_CAP] = "pending-cap",
	[MM_IDROP_RECORD_OVERRUN] = "record-overrun",
	[MM_IDROP_DOMAIN_CAP] = "domain-cap",
};

const char *mm_ingest_drop_name(unsigned reason)
{
	return reason < MM_IDROP__COUNT ? drop_names[reason] : "unknown";
}

void mm_ingest_config_default(struct mm_ingest_config *cfg)
{
	*cfg = (struct mm_ingest_config){
		.template_lifetime_ns = 1800ull * 1000000000ull,
		.pending_ns = 5ull * 1000000000ull,
		.max_exporters = 4096,
		.max_domains = 16384,
		.max_templates = 512,
		.max_template_bytes = 1u << 20,
		.max_fields = 512,
		.max_pending_bytes = 64u << 10,
		.max_pending_sets = 32,
	};
}

static size_t table_size(size_t cap)
{
	size_t n = 16;

	while (n < cap * 2)
		n <<= 1;
	return n;
}

static int check_config(const struct mm_ingest_config *cfg)
{
	if (!cfg->max_exporters || !cfg->max_domains || !cfg->max_templates || !cfg->max_template_bytes)
		return mm_fail(MM_EINVAL, "ingest: config: exporter, domain and template caps must be > 0");
	if (!cfg->max_fields || cfg->max_fields > 16383)
		return mm_fail(MM_EINVAL, "ingest: config: max_fields %zu not in 1..16383", cfg->max_fields);
	if (cfg->max_domains > UINT32_MAX / 4 || cfg->max_exporters > UINT32_MAX / 4)
		return mm_fail(MM_EINVAL, "ingest: config: exporter or domain cap too large");
	return 0;
}

int mm_ingest_new(struct mm_ingest **out, const struct mm_ingest_config *cfg, mm_ingest_flow_fn flow_fn,
		  mm_ingest_record_fn record_fn, void *ctx)
{
	struct mm_ingest *ing = NULL;
	int rc;

	*out = NULL;
	rc = check_config(cfg);
	if (rc)
		return rc;
	ing = calloc(1, sizeof(*ing));
	if (!ing)
		return mm_fail(MM_ENOMEM, "ingest: out of memory");
	ing->cfg = *cfg;
	ing->flow_fn = flow_fn;
	ing->record_fn = record_fn;
	ing->ctx = ctx;
	rc = mm_hash_key_random(&ing->key);
	if (rc)
		goto out;
	rc = MM_ENOMEM;
	ing->session_mask = table_size(cfg->max_domains) - 1;
	ing->exporter_mask = table_size(cfg->max_exporters) - 1;
	ing->session_slots = calloc(ing->session_mask + 1, sizeof(uint32_t));
	ing->exporter_slots = calloc(ing->exporter_mask + 1, sizeof(uint32_t));
	ing->fields = calloc(cfg->max_fields, sizeof(*ing->fields));
	ing->offs = calloc(cfg->max_fields * 2, sizeof(*ing->offs));
	ing->spec_fields = calloc(cfg->max_fields, sizeof(*ing->spec_fields));
	if (!ing->session_slots || !ing->exporter_slots || !ing->fields || !ing->offs || !ing->spec_fields)
		goto out;
	rc = netflow_v5_template(&ing->v5_tmpl);
	if (rc)
		goto out;
	*out = ing;
	return 0;
out:
	mm_ingest_free(ing);
	return rc == MM_ENOMEM ? mm_fail(rc, "ingest: out of memory") : rc;
}

static void flush_flows(struct mm_ingest *ing)
{
	if (ing->n_batch && ing->flow_fn)
		ing->flow_fn(ing->ctx, ing->batch, ing->n_batch);
	ing->n_batch = 0;
}

struct mm_flow *ingest_flow_slot(struct mm_ingest *ing)
{
	struct mm_flow *f = &ing->batch[ing->n_batch];

	memset(f, 0, sizeof(*f));
	return f;
}

void ingest_flow_commit(struct mm_ingest *ing)
{
	if (++ing->n_batch == FLOW_BATCH)
		flush_flows(ing);
}

void ingest_count_drop(struct msg_ctx *m, enum mm_ingest_drop reason)
{
	if (m->s)
		m->s->st.drops[reason]++;
	else
		m->ing->orphan.drops[reason]++;
}

static struct exporter *find_exporter(struct mm_ingest *ing, const struct mm_addr *addr)
{
	size_t i = mm_siphash13(&ing->key, addr->b, 16) & ing->exporter_mask;
	struct exporter *e, **grown;

	for (; ing->exporter_slots[i]; i = (i + 1) & ing->exporter_mask) {
		e = ing->exporters[ing->exporter_slots[i] - 1];
		if (mm_addr_eq(&e->addr, addr))
			return e;
	}
	if (ing->n_exporters >= ing->cfg.max_exporters)
		return NULL;
	if (ing->n_exporters == ing->cap_exporters) {
		size_t cap = ing->cap_exporters ? ing->cap_exporters * 2 : 16;
		grown = realloc(ing->exporters, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		ing->exporters = grown;
		ing->cap_exporters = cap;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->addr = *addr;
	ing->exporters[ing->n_exporters++] = e;
	ing->exporter_slots[i] = (uint32_t)ing->n_exporters;
	return e;
}

struct session_key {
	uint8_t addr[16];
	uint32_t domain;
	uint16_t version;
	uint16_t zero;
};

static bool session_is(const struct session *s, const struct mm_addr *addr, uint16_t version, uint32_t domain)
{
	return s->st.version == version && s->st.domain == domain && mm_addr_eq(&s->st.exporter, addr);
}

static struct session *new_session(struct mm_ingest *ing, struct exporter *e, uint16_t version, uint32_t domain)
{
	struct session *s, **grown;

	if (ing->n_sessions == ing->cap_sessions) {
		size_t cap = ing->cap_sessions ? ing->cap_sessions * 2 : 16;
		grown = realloc(ing->sessions, cap * sizeof(*grown));
		if (!grown)
			return NULL;
		ing->sessions = grown;
		ing->cap_sessions = cap;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->exp = e;
	s->st.exporter = e->addr;
	s->st.version = version;
	s->st.domain = domain;
	ing->sessions[ing->n_sessions++] = s;
	return s;
}

struct session *ingest_session(struct msg_ctx *m, uint16_t version, uint32_t domain)
{
	struct mm_ingest *ing = m->ing;
	struct session_key key = { .domain = domain, .version = version };
	struct exporter *e;
	struct session *s;
	size_t i;

	memcpy(key.addr, m->exporter->b, 16);
	i = mm_siphash13(&ing->key, &key, sizeof(key)) & ing->session_mask;
	for (; ing->session_slots[i]; i = (i + 1) & ing->session_mask) {
		s = ing->sessions[ing->session_slots[i] - 1];
		if (session_is(s, m->exporter, version, domain))
			goto found;
	}
	e = ing->n_sessions < ing->cfg.max_domains ? find_exporter(ing, m->exporter) : NULL;
	s = e ? new_session(ing, e, version, domain) : NULL;
	if (!s) {
		ing->orphan.drops[MM_IDROP_DOMAIN_CAP]++;
		ing->orphan.messages++;
		return NULL;
	}
	ing->session_slots[i] = (uint32_t)ing->n_sessions;
found:
	m->s = s;
	m->version = version;
	m->domain = domain;
	s->st.messages++;
	return s;
}

/*
 * seq is the header's sequence, advance how far this message moves it;
 * when that is not known the next message is not checked.
 */
void ingest_sequence(struct msg_ctx *m, uint32_t seq, uint32_t advance, bool known)
{
	struct session *s = m->s;

	if (s->seq_known && seq != s->seq_next) {
		int32_t jump = (int32_t)(seq - s->seq_next);
		if (jump > 0) {
			s->st.sequence_gaps++;
			s->st.sequence_lost += (uint32_t)jump;
		} else {
			s->st.sequence_reorders++;
		}
	}
	s->seq_known = known;
	s->seq_next = seq + advance;
}

static void drop_held_at(struct session *s, size_t i, enum mm_ingest_drop reason)
{
	s->held_bytes -= s->held[i]->len;
	free(s->held[i]);
	memmove(&s->held[i], &s->held[i + 1], (s->n_held - i - 1) * sizeof(s->held[0]));
	s->n_held--;
	s->st.drops[reason]++;
}

static void expire_held(struct mm_ingest *ing, struct session *s, uint64_t now_ns)
{
	while (s->n_held && now_ns > s->held[0]->at_ns && now_ns - s->held[0]->at_ns > ing->cfg.pending_ns)
		drop_held_at(s, 0, MM_IDROP_TEMPLATE_MISS);
}

int ingest_hold_set(struct msg_ctx *m, uint16_t template_id, const uint8_t *p, size_t len)
{
	struct session *s = m->s;
	const struct mm_ingest_config *cfg = &m->ing->cfg;
	struct held_set *h, **grown;

	m->records_unknown = true;
	if (s->n_held >= cfg->max_pending_sets || len > cfg->max_pending_bytes - s->held_bytes) {
		s->st.drops[MM_IDROP_PENDING_CAP]++;
		return MM_ELIMIT;
	}
	grown = realloc(s->held, (s->n_held + 1) * sizeof(*grown));
	if (!grown)
		return MM_ENOMEM;
	s->held = grown;
	h = malloc(sizeof(*h) + len);
	if (!h)
		return MM_ENOMEM;
	*h = (struct held_set){ .template_id = template_id, .port = m->port, .sequence = m->sequence,
				.export_secs = m->export_secs, .uptime_ms = m->uptime_ms,
				.at_ns = m->now_ns, .len = len };
	memcpy(h->data, p, len);
	s->held[s->n_held++] = h;
	s->held_bytes += len;
	s->st.sets_pending++;
	return 0;
}

void ingest_release_held(struct msg_ctx *m, uint16_t template_id)
{
	struct session *s = m->s;

	for (size_t i = 0; i < s->n_held;) {
		struct held_set *h = s->held[i];
		if (h->template_id != template_id) {
			i++;
			continue;
		}
		struct msg_ctx late = *m;
		late.sequence = h->sequence;
		late.export_secs = h->export_secs;
		late.export_nsecs = 0;
		late.uptime_ms = h->uptime_ms;
		const struct tmpl *t = tmpl_find(m, template_id);
		if (t)
			records_decode_set(&late, t, h->data, h->len);
		s->st.sets_late_decoded++;
		s->held_bytes -= h->len;
		free(h);
		memmove(&s->held[i], &s->held[i + 1], (s->n_held - i - 1) * sizeof(s->held[0]));
		s->n_held--;
	}
}

int mm_ingest_message(struct mm_ingest *ing, const struct mm_addr *exporter, uint16_t port,
		      const uint8_t *msg, size_t len, uint64_t now_ns)
{
	struct msg_ctx m = { .ing = ing, .exporter = exporter, .port = port, .now_ns = now_ns };
	int rc;

	if (len < 2) {
		ing->orphan.messages++;
		ing->orphan.messages_malformed++;
		ing->orphan.drops[MM_IDROP_SHORT_HEADER]++;
		return mm_fail(MM_ETRUNC, "ingest: message of %zu bytes has no version", len);
	}
	switch (rd16(msg)) {
	case 5:
		rc = netflow_v5_decode(&m, msg, len);
		break;
	case 9:
		rc = netflow_v9_decode(&m, msg, len);
		break;
	case 10:
		rc = ipfix_decode(&m, msg, len);
		break;
	default:
		ing->orphan.messages++;
		ing->orphan.messages_malformed++;
		ing->orphan.drops[MM_IDROP_BAD_VERSION]++;
		rc = mm_fail(MM_EFORMAT, "ingest: version %u is not 5, 9 or 10", rd16(msg));
		break;
	}
	if (rc && m.s)
		m.s->st.messages_malformed++;
	else if (rc && rc != MM_EFORMAT)
		ing->orphan.messages_malformed++;
	if (m.s)
		expire_held(ing, m.s, now_ns);
	flush_flows(ing);
	return rc;
}

void mm_ingest_advance(struct mm_ingest *ing, uint64_t now_ns)
{
	for (size_t i = 0; i < ing->n_sessions; i++) {
		expire_held(ing, ing->sessions[i], now_ns);
		tmpl_session_expire(ing, ing->sessions[i], now_ns);
	}
}

void mm_ingest_stats_add(struct mm_ingest_stats *sum, const struct mm_ingest_stats *s)
{
	sum->messages += s->messages;
	sum->messages_malformed += s->messages_malformed;
	sum->records_received += s->records_received;
	sum->records_decoded += s->records_decoded;
	sum->records_dropped += s->records_dropped;
	sum->sets_pending += s->sets_pending;
	sum->sets_late_decoded += s->sets_late_decoded;
	sum->options_records += s->options_records;
	sum->flows += s->flows;
	sum->templates_added += s->templates_added;
	sum->templates_replaced += s->templates_replaced;
	sum->templates_withdrawn += s->templates_withdrawn;
	sum->templates_expired += s->templates_expired;
	sum->templates_active += s->templates_active;
	sum->template_bytes += s->template_bytes;
	sum->sequence_gaps += s->sequence_gaps;
	sum->sequence_lost += s->sequence_lost;
	sum->sequence_reorders += s->sequence_reorders;
	sum->content_fields_discarded += s->content_fields_discarded;
	for (unsigned i = 0; i < MM_IDROP__COUNT; i++)
		sum->drops[i] += s->drops[i];
}

void mm_ingest_get_totals(const struct mm_ingest *ing, struct mm_ingest_stats *out)
{
	memset(out, 0, sizeof(*out));
	mm_ingest_stats_add(out, &ing->orphan);
	for (size_t i = 0; i < ing->n_sessions; i++)
		mm_ingest_stats_add(out, &ing->sessions[i]->st);
}

size_t mm_ingest_session_count(const struct mm_ingest *ing)
{
	return ing->n_sessions;
}

int mm_ingest_get_session(const struct mm_ingest *ing, size_t i, struct mm_ingest_stats *out)
{
	if (i >= ing->n_sessions)
		return MM_ENOENT;
	*out = ing->sessions[i]->st;
	return 0;
}

void mm_ingest_free(struct mm_ingest *ing)
{
	if (!ing)
		return;
	for (size_t i = 0; i < ing->n_sessions; i++) {
		struct session *s = ing->sessions[i];
		while (s->n_held)
			drop_held_at(s, s->n_held - 1, MM_IDROP_TEMPLATE_MISS);
		free(s->held);
		tmpl_session_clear(s);
		free(s);
	}
	for (size_t i = 0; i < ing->n_exporters; i++)
		free(ing->exporters[i]);
	free(ing->sessions);
	free(ing->exporters);
	free(ing->session_slots);
	free(ing->exporter_slots);
	free(ing->fields);
	free(ing->offs);
	free(ing->spec_fields);
	tmpl_free(ing->v5_tmpl);
	free(ing);
}
