/*
 * Ingest: NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) export
 * messages in, flow records out. One decoder object keeps the template
 * caches of every exporter it hears from, with caps on what each exporter
 * may make it hold, and counts everything it cannot decode, so that per
 * exporter and observation domain: received = decoded + dropped by reason.
 */
#ifndef MAMORI_INGEST_H
#define MAMORI_INGEST_H

#include "mamori/addr.h"
#include "mamori/flow.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Why a message, set, template or record was not decoded. Counted per reason. */
enum mm_ingest_drop {
	MM_IDROP_SHORT_HEADER = 0,   /* message shorter than its version's header */
	MM_IDROP_BAD_VERSION,        /* version field is not 5, 9 or 10 */
	MM_IDROP_BAD_LENGTH,         /* header length/count disagrees with the datagram */
	MM_IDROP_BAD_SET,            /* set/flowset header overruns the message or is too short */
	MM_IDROP_TEMPLATE_BAD_ID,    /* template id below 256 */
	MM_IDROP_TEMPLATE_BAD_FIELDS,/* field count 0 or over the cap, or total length 0 */
	MM_IDROP_TEMPLATE_BAD_LENGTH,/* field length invalid or record length over the cap */
	MM_IDROP_TEMPLATE_OVERRUN,   /* template record runs past the end of its set */
	MM_IDROP_TEMPLATE_CAP,       /* exporter at its template count or byte cap */
	MM_IDROP_TEMPLATE_MISS,      /* data set whose template never arrived (counted in sets) */
	MM_IDROP_PENDING_CAP,        /* data set refused: hold queue full (counted in sets) */
	MM_IDROP_RECORD_OVERRUN,     /* variable-length record runs past its set */
	MM_IDROP_DOMAIN_CAP,         /* exporter/domain table full: message refused */
	MM_IDROP__COUNT
};

/* Short, stable name for counters ("template-bad-id"). */
const char *mm_ingest_drop_name(unsigned reason);

struct mm_ingest_config {
	uint64_t template_lifetime_ns;  /* a template not refreshed for this long is forgotten */
	uint64_t pending_ns;            /* data held for a missing template at most this long */
	size_t max_exporters;           /* distinct exporter addresses tracked */
	size_t max_domains;             /* (exporter, version, domain) sessions in all */
	size_t max_templates;           /* per exporter, over all its domains */
	size_t max_template_bytes;      /* per exporter: memory its templates may hold */
	size_t max_fields;              /* per template */
	size_t max_pending_bytes;       /* per domain: data sets held for their template */
	size_t max_pending_sets;        /* per domain */
	uint32_t sensor_id;             /* copied into every flow */
};

/* Defaults: 30 min template lifetime, 5 s hold, 4096 exporters, 16384 domains, 512 templates
 * and 1 MiB of templates per exporter, 512 fields per template, 64 KiB / 32 held sets. */
void mm_ingest_config_default(struct mm_ingest_config *cfg);

/* One field of a data record as it stands in the message (borrowed for the callback). */
struct mm_ingest_field {
	uint32_t enterprise;   /* 0 for IANA / NetFlow v9 field types */
	uint16_t id;           /* element id without the enterprise bit */
	uint16_t len;          /* bytes at data (a variable-length field's own length) */
	const uint8_t *data;
	bool scope;            /* scope field of an options record */
};

/* A decoded data record with every field, for renderers such as ipfix-json. */
struct mm_ingest_record {
	const struct mm_addr *exporter;
	uint16_t port;
	uint16_t version;          /* 5, 9 or 10 */
	uint16_t template_id;      /* set/flowset id; 0 for v5 */
	bool options;              /* record of an options template */
	uint32_t domain;           /* v9 source id, IPFIX observation domain, v5 engine type<<8|id */
	uint32_t sequence;         /* header sequence number */
	uint32_t export_secs;      /* header export time, Unix seconds */
	uint32_t export_nsecs;     /* v5 residual nanoseconds, else 0 */
	uint32_t sys_uptime_ms;    /* v5/v9 header sysUpTime, else 0 */
	uint16_t v5_count;         /* v5 header fields, else 0 */
	uint8_t v5_engine_type, v5_engine_id;
	uint16_t v5_sampling;      /* v5 raw sampling field: 2-bit mode, 14-bit interval */
	const struct mm_ingest_field *fields;
	size_t n_fields;
	const struct mm_flow *flow; /* the flow record made of it; NULL for options records */
};

/*
 * Receives flows in batches (array borrowed for the call), and optionally
 * every data record, options records included, as it is decoded. Both are
 * called from inside mm_ingest_message().
 */
typedef void (*mm_ingest_flow_fn)(void *ctx, const struct mm_flow *flows, size_t n);
typedef void (*mm_ingest_record_fn)(void *ctx, const struct mm_ingest_record *rec);

/* Counters of one (exporter, version, domain) session, or the sum of all. */
struct mm_ingest_stats {
	struct mm_addr exporter;
	uint16_t version;
	uint32_t domain;
	uint64_t messages;          /* messages attributed here */
	uint64_t messages_malformed;/* of those, stopped early by a malformed part */
	uint64_t records_received;  /* data records whose bounds were known */
	uint64_t records_decoded;   /* = records_received - records_dropped */
	uint64_t records_dropped;   /* records lost to RECORD_OVERRUN */
	uint64_t sets_pending;      /* data sets held for a template */
	uint64_t sets_late_decoded; /* held sets decoded when their template came */
	uint64_t options_records;   /* of records_decoded, options data */
	uint64_t flows;             /* flow records produced */
	uint64_t templates_added, templates_replaced, templates_withdrawn, templates_expired;
	uint64_t templates_active;  /* now */
	uint64_t template_bytes;    /* now */
	uint64_t sequence_gaps;     /* times the sequence jumped ahead */
	uint64_t sequence_lost;     /* v5/IPFIX: records; v9: packets the jumps skipped */
	uint64_t sequence_reorders; /* times it went backwards */
	uint64_t content_fields_discarded; /* field values that carry content, never passed on */
	uint64_t drops[MM_IDROP__COUNT];
};

struct mm_ingest;

/*
 * 0, MM_EINVAL (a zero cap; the message names it) or MM_ENOMEM. record_fn may
 * be NULL; both callbacks receive ctx.
 */
int mm_ingest_new(struct mm_ingest **out, const struct mm_ingest_config *cfg, mm_ingest_flow_fn flow_fn,
		  mm_ingest_record_fn record_fn, void *ctx);

/*
 * Decodes one export message (one UDP payload) from exporter:port received
 * at now_ns. Flows and records go to the callbacks before it returns.
 * Returns 0 when the whole message decoded, or the status of the first
 * problem (MM_EFORMAT, MM_ETRUNC, MM_ELIMIT...) after decoding what could
 * be; either way every loss is counted. Work is linear in len plus the held
 * sets a new template releases.
 */
int mm_ingest_message(struct mm_ingest *ing, const struct mm_addr *exporter, uint16_t port,
		      const uint8_t *msg, size_t len, uint64_t now_ns);

/* Drops held sets and templates whose time has passed, counting them. */
void mm_ingest_advance(struct mm_ingest *ing, uint64_t now_ns);

/* Adds every counter of s to sum (exporter, version and domain are left alone). */
void mm_ingest_stats_add(struct mm_ingest_stats *sum, const struct mm_ingest_stats *s);

/* Sum over all sessions, plus messages no session could be found for. */
void mm_ingest_get_totals(const struct mm_ingest *ing, struct mm_ingest_stats *out);

/* Number of sessions; sessions are numbered 0..n-1 in order of first sight. */
size_t mm_ingest_session_count(const struct mm_ingest *ing);

/* Counters of session i; MM_ENOENT if i is out of range. */
int mm_ingest_get_session(const struct mm_ingest *ing, size_t i, struct mm_ingest_stats *out);

/* Frees everything; held sets still waiting are counted as template misses first. */
void mm_ingest_free(struct mm_ingest *ing);

/* IPFIX abstract data types (RFC 7012 section 3.1), for rendering a field. */
enum mm_ie_type {
	MM_IE_OCTETS = 0, /* octetArray, and anything unknown */
	MM_IE_UNSIGNED,
	MM_IE_SIGNED,
	MM_IE_FLOAT,
	MM_IE_BOOLEAN,
	MM_IE_MAC,
	MM_IE_STRING,
	MM_IE_SECONDS,    /* dateTimeSeconds */
	MM_IE_MILLIS,     /* dateTimeMilliseconds */
	MM_IE_MICROS,     /* dateTimeMicroseconds (NTP format) */
	MM_IE_NANOS,      /* dateTimeNanoseconds (NTP format) */
	MM_IE_IPV4,
	MM_IE_IPV6,
	MM_IE_LIST,       /* basicList, subTemplateList, subTemplateMultiList */
};

struct mm_ie_info {
	const char *name;
	uint8_t type;     /* enum mm_ie_type */
};

/*
 * The IANA registry entry of element id for enterprise 0, or for enterprise
 * 29305 (RFC 5103 reverse elements) the forward element's entry, whose type
 * the reverse element shares. NULL when the element is not known.
 */
const struct mm_ie_info *mm_ie_lookup(uint32_t enterprise, uint16_t id);

/*
 * Whether a field may carry communication content or identify a person
 * rather than describe a flow: packet sections, HTTP request and response
 * values, user names, subscriber identities (IANA elements listed in
 * ie_registry.c), and every enterprise-specific element that is variable
 * length or longer than 16 bytes, since its meaning is unknown and vendors
 * put URLs, DNS names and payload excerpts there. Such values are
 * discarded at decode and counted (content_fields_discarded); flows never
 * had a place for them.
 */
bool mm_ie_carries_content(uint32_t enterprise, uint16_t id, uint16_t len);

/* Writes the reverse name of a forward IANA element ("reverseOctetDeltaCount") into buf. */
int mm_ie_reverse_name(uint16_t id, char *buf, size_t size);

/*
 * Writes rec as one JSON object on one line: every field keyed by its IANA
 * name ("<PEN>/<id>" for an unknown element, value in hex), a repeated
 * element keyed "name#2", "name#3"..., plus "_exporter", "_domain",
 * "_template". 0 or MM_EIO.
 */
int mm_ingest_json_write(FILE *out, const struct mm_ingest_record *rec);

#endif
