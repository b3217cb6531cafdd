/*
 * IPFIX exporter (RFC 7011): a flow sink that turns flow records into IPFIX
 * messages and sends them to another collector over UDP or TCP, so
 * `mamori meter --ipfix` and `collect --forward` feed nfcapd, pmacct, Zeek or
 * a second mamori. Biflows travel as RFC 5103 records (reverse counters
 * under PEN 29305). The element list and its encoding are in
 * docs/ipfix-export.md.
 */
#ifndef MAMORI_IPFIX_EXPORT_H
#define MAMORI_IPFIX_EXPORT_H

#include "mamori/flow.h"

#include <stddef.h>
#include <stdint.h>

#define MM_IPFIX_PORT 4739          /* IANA port for IPFIX over UDP and TCP */
#define MM_IPFIX_MTU_MIN 512        /* the template message must fit in one message */
#define MM_IPFIX_MTU_MAX 65535      /* the header's length field is 16 bits */
#define MM_IPFIX_TEMPLATE_V4 256    /* template ids of the two record layouts */
#define MM_IPFIX_TEMPLATE_V6 257

/* Returns the time in Unix nanoseconds; lets tests drive refresh and backoff. */
typedef uint64_t (*mm_ipfix_clock_fn)(void *ctx);

struct mm_ipfix_export_config {
	/*
	 * "[udp://|tcp://]HOST:PORT" or "[tcp://][IPv6]:PORT"; UDP if no scheme.
	 * HOST may be a name, resolved once by mm_ipfix_exporter_new.
	 */
	const char *dest;
	uint32_t domain_id;            /* observation domain id in every header */
	size_t mtu;                    /* max bytes per message (UDP: per datagram) */
	uint64_t template_refresh_ns;  /* UDP: resend templates this often; 0 = never by time */
	unsigned template_refresh_msgs; /* UDP: ... or after this many data messages; 0 = never */
	uint64_t flush_ns;             /* a partly filled message waits at most this long */
	size_t queue_msgs;             /* cap of built messages awaiting the transport (>= 2) */
	uint64_t reconnect_min_ns;     /* TCP backoff: first wait, doubled per failure ... */
	uint64_t reconnect_max_ns;     /* ... up to this */
	uint64_t drain_ns;             /* how long mm_ipfix_exporter_finish waits for the collector */
	mm_ipfix_clock_fn clock;       /* NULL: wall clock */
	void *clock_ctx;
};

/*
 * Counters. At any moment records_in == records_sent + records_dropped +
 * records_failed + records_skipped + records_queued: nothing is lost
 * without a count.
 */
struct mm_ipfix_export_stats {
	uint64_t records_in;       /* flows offered to mm_ipfix_exporter_write */
	uint64_t records_sent;     /* in messages the kernel accepted in full */
	uint64_t records_dropped;  /* in messages discarded at the queue cap (oldest first) */
	uint64_t records_failed;   /* UDP send refused, or still queued when finish gave up */
	uint64_t records_skipped;  /* source and destination of different families */
	uint64_t records_queued;   /* built but not yet sent */
	uint64_t messages_sent;    /* data messages */
	uint64_t template_messages_sent;
	uint64_t bytes_sent;
	uint64_t queue_full;       /* times the queue cap discarded a message */
	uint64_t send_errors;      /* failed send calls (UDP) */
	uint64_t connects;         /* TCP sessions established */
	uint64_t connect_failures; /* TCP connection attempts that failed */
	uint64_t disconnects;      /* TCP sessions lost while sending */
};

struct mm_ipfix_exporter;

/*
 * Defaults: dest NULL (must be set), domain_id = sensor_id, MTU 1400,
 * templates every 60 s or 64 messages, flush after 1 s, 256 queued
 * messages, reconnect 250 ms doubling to 30 s, drain 5 s.
 */
void mm_ipfix_export_config_default(struct mm_ipfix_export_config *cfg, uint32_t sensor_id);

/*
 * Parses and resolves cfg->dest, opens the socket (TCP connects in the
 * background; a collector that is down is retried, not fatal). cfg is
 * copied; dest need not outlive the call. 0, MM_EINVAL (bad destination or
 * config, the message quotes it), MM_EIO (socket) or MM_ENOMEM.
 */
int mm_ipfix_exporter_new(struct mm_ipfix_exporter **out, const struct mm_ipfix_export_config *cfg);

/*
 * Encodes n flows (borrowed for the call) and sends every message that is
 * full. Never blocks and never fails: what cannot be sent is queued up to
 * the cap, and beyond it counted. O(n) with a fixed layout per record.
 * Matches mm_flow_sink_fn when called through a wrapper taking void *.
 */
void mm_ipfix_exporter_write(struct mm_ipfix_exporter *e, const struct mm_flow *flows, size_t n);

/*
 * Housekeeping for quiet periods, non-blocking: sends a partly filled
 * message older than flush_ns, reconnects a TCP session when its backoff
 * has passed, pushes queued messages. Call it at least once a second.
 */
void mm_ipfix_exporter_poll(struct mm_ipfix_exporter *e);

/* Closes the partly filled message and pushes it out now (non-blocking). */
void mm_ipfix_exporter_flush(struct mm_ipfix_exporter *e);

/*
 * Flushes and waits up to drain_ns (real time) until every queued message
 * has been sent. 0, or MM_EIO naming how many records were not sent (they
 * are then counted in records_failed).
 */
int mm_ipfix_exporter_finish(struct mm_ipfix_exporter *e);

void mm_ipfix_exporter_get_stats(const struct mm_ipfix_exporter *e, struct mm_ipfix_export_stats *out);

/* Closes the socket and frees e (NULL is fine); call finish first to send the tail. */
void mm_ipfix_exporter_free(struct mm_ipfix_exporter *e);

#endif
