/*
 * Internals of the ingest module shared by its files: the decoder object,
 * exporter and session (exporter, version, domain) state, compiled
 * templates, and the per-message context the version decoders fill in
 * before handing data sets to the common record decoder.
 */
#ifndef MAMORI_INGEST_INT_H
#define MAMORI_INGEST_INT_H

#include "mamori/hash.h"
#include "mamori/ingest.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IPFIX_VARLEN 0xffffu
#define PEN_REVERSE 29305u     /* RFC 5103 reverse information elements */
#define FLOW_BATCH 256         /* flows handed to the sink at once */
#define MAX_SAMPLERS 16        /* per session; the oldest is replaced */
#define MAX_RECORD_LEN 65535u

/* What a compiled template op does with its field's value. */
enum op_kind {
	OP_SRC_V4 = 1, OP_DST_V4, OP_SRC_V6, OP_DST_V6, OP_NEXTHOP_V4, OP_NEXTHOP_V6,
	OP_SRC_PORT, OP_DST_PORT, OP_PROTO, OP_TCP_FLAGS, OP_REV_TCP_FLAGS,
	OP_BYTES, OP_PACKETS, OP_REV_BYTES, OP_REV_PACKETS,
	OP_IN_IF, OP_OUT_IF, OP_SRC_AS, OP_DST_AS, OP_VLAN,
	OP_ICMP_TYPE_CODE, OP_ICMP_TYPE, OP_ICMP_CODE, OP_END_REASON,
	OP_START_SECS, OP_END_SECS, OP_START_MS, OP_END_MS, OP_START_NTP, OP_END_NTP,
	OP_START_DELTA_US, OP_END_DELTA_US, OP_START_UPTIME, OP_END_UPTIME,
	OP_DURATION_MS, OP_DURATION_US,
	OP_SAMPLING_INTERVAL, OP_SAMPLING_SPACE, OP_SAMPLING_SIZE, OP_SAMPLING_POPULATION,
	OP_SAMPLER_ID, OP_SYS_INIT_MS, OP_FLOW_ID, OP_OBS_POINT,
};

struct tmpl_field {
	uint32_t enterprise;
	uint16_t id;
	uint16_t len;          /* IPFIX_VARLEN for a variable-length field */
	uint16_t off;          /* offset in the record when the template is fixed-length */
	bool scope;
	bool content;          /* carries content (mm_ie_carries_content): never shown */
};

struct tmpl_op {
	uint16_t field;        /* index into fields */
	uint8_t kind;          /* enum op_kind */
	uint8_t len;           /* the field's fixed length, 1..16 */
};

struct tmpl {
	uint16_t id;
	bool options;
	bool varlen;           /* has variable-length fields: offsets walked per record */
	uint16_t n_fields, n_ops;
	uint16_t n_content;    /* fields that carry content, discarded from every record */
	uint32_t min_len;      /* record length, or its minimum when varlen */
	uint64_t refreshed_ns;
	size_t bytes;          /* memory charged to the exporter */
	struct tmpl_field *fields;
	struct tmpl_op *ops;
};

struct exporter {
	struct mm_addr addr;
	size_t n_templates;
	size_t template_bytes;
};

struct sampler {
	uint32_t id;
	uint32_t rate;
};

/* A data set that arrived before its template, with the header values it needs. */
struct held_set {
	uint16_t template_id;
	uint16_t port;
	uint32_t sequence, export_secs, uptime_ms;
	uint64_t at_ns;
	size_t len;
	uint8_t data[];
};

struct session {
	struct mm_ingest_stats st;
	struct exporter *exp;
	struct tmpl **tmpls;   /* sorted by id */
	size_t n_tmpls, cap_tmpls;
	struct held_set **held;
	size_t n_held, held_bytes;
	struct sampler samplers[MAX_SAMPLERS];
	size_t n_samplers, next_sampler;
	uint32_t default_rate; /* from options data without a sampler id */
	uint64_t sys_init_ms;  /* IPFIX systemInitTimeMilliseconds from options data */
	bool seq_known;
	uint32_t seq_next;
};

struct mm_ingest {
	struct mm_ingest_config cfg;
	mm_ingest_flow_fn flow_fn;
	mm_ingest_record_fn record_fn;
	void *ctx;
	struct mm_hash_key key;
	struct session **sessions;
	size_t n_sessions, cap_sessions;
	uint32_t *session_slots;   /* index+1 into sessions, 0 = empty */
	size_t session_mask;
	struct exporter **exporters;
	size_t n_exporters, cap_exporters;
	uint32_t *exporter_slots;
	size_t exporter_mask;
	struct mm_ingest_stats orphan; /* messages no session could be found or made for */
	struct mm_flow batch[FLOW_BATCH];
	size_t n_batch;
	struct mm_ingest_field *fields; /* cfg.max_fields, for the record callback */
	uint16_t *offs;                 /* 2 * cfg.max_fields: offsets and lengths of a record */
	struct tmpl_field *spec_fields; /* cfg.max_fields, a template being parsed */
	struct tmpl *v5_tmpl;
};

/* One message being decoded: header values the record decoder needs. */
struct msg_ctx {
	struct mm_ingest *ing;
	struct session *s;
	const struct mm_addr *exporter;
	uint16_t port;
	uint16_t version;
	uint32_t domain;
	uint32_t sequence;
	uint32_t export_secs, export_nsecs;
	uint32_t uptime_ms;
	uint16_t v5_count, v5_sampling;
	uint8_t v5_engine_type, v5_engine_id;
	uint64_t now_ns;
	uint64_t n_data_records;   /* in this message, for the IPFIX sequence */
	bool records_unknown;      /* a set was held: the record total is not known */
};

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Big-endian unsigned of 1..8 bytes (reduced-size encoding, RFC 7011 section 6.2). */
static inline uint64_t rd_uint(const uint8_t *p, unsigned len)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < len; i++)
		v = v << 8 | p[i];
	return v;
}

/* ingest.c */
struct session *ingest_session(struct msg_ctx *m, uint16_t version, uint32_t domain);
void ingest_count_drop(struct msg_ctx *m, enum mm_ingest_drop reason);
/* The batch slot the next flow is decoded into, zeroed; ingest_flow_commit() keeps it. */
struct mm_flow *ingest_flow_slot(struct mm_ingest *ing);
void ingest_flow_commit(struct mm_ingest *ing);
void ingest_sequence(struct msg_ctx *m, uint32_t seq, uint32_t advance, bool known);
int ingest_hold_set(struct msg_ctx *m, uint16_t template_id, const uint8_t *p, size_t len);
void ingest_release_held(struct msg_ctx *m, uint16_t template_id);

/* template_cache.c */
struct tmpl_spec {
	uint16_t id;
	uint16_t version;
	bool options;
	uint16_t n_fields;
	const struct tmpl_field *fields;
};
int tmpl_build(struct tmpl **out, const struct tmpl_spec *spec);
int tmpl_check(struct msg_ctx *m, const struct tmpl_spec *spec);
int tmpl_insert(struct msg_ctx *m, const struct tmpl_spec *spec);
struct tmpl *tmpl_find(struct msg_ctx *m, uint16_t id);
void tmpl_withdraw(struct msg_ctx *m, uint16_t id);
void tmpl_withdraw_all(struct msg_ctx *m, bool options);
void tmpl_session_expire(struct mm_ingest *ing, struct session *s, uint64_t now_ns);
void tmpl_session_clear(struct session *s);
void tmpl_free(struct tmpl *t);

/* records.c */
void records_decode_set(struct msg_ctx *m, const struct tmpl *t, const uint8_t *p, size_t len);
/* Decodes with the data set's template, or holds the set until it comes. */
void records_data_set(struct msg_ctx *m, uint16_t id, const uint8_t *p, size_t len);

/* netflow_v5.c, netflow_v9.c, ipfix.c: the message has a version field and at least 2 bytes. */
int netflow_v5_decode(struct msg_ctx *m, const uint8_t *msg, size_t len);
int netflow_v5_template(struct tmpl **out);
int netflow_v9_decode(struct msg_ctx *m, const uint8_t *msg, size_t len);
int ipfix_decode(struct msg_ctx *m, const uint8_t *msg, size_t len);

#endif
