/*
 * The meter: packets in, flow records out. It decodes each packet down
 * through its encapsulations, counts it in one bidirectional flow per IP
 * layer (an inner flow names its outer, tunnel flow as parent, as Zeek
 * does), and exports flows to a sink when they end: idle or active
 * timeout, TCP close, a full table, or the end of input. It keeps only
 * header values and counts; no payload byte leaves the packet buffer.
 */
#ifndef MAMORI_METER_H
#define MAMORI_METER_H

#include "mamori/capture.h"
#include "mamori/flow.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Why a packet (or one of its layers) was not metered in full. Counted per
 * reason; a packet whose outer layers decoded before the problem still
 * counts in those outer flows.
 */
enum mm_anomaly {
	MM_ANOM_NONE = 0,
	MM_ANOM_NOT_IP,              /* frame carries no IP (ARP, LLDP, STP…): counted, not malformed */
	MM_ANOM_LINK_UNSUPPORTED,    /* link type the decoder does not know */
	MM_ANOM_LINK_TRUNCATED,      /* link-layer header cut short */
	MM_ANOM_VLAN_TRUNCATED,
	MM_ANOM_MPLS_TRUNCATED,
	MM_ANOM_PPPOE_TRUNCATED,
	MM_ANOM_IPV4_TRUNCATED,      /* fewer bytes than the IPv4 header needs */
	MM_ANOM_IPV4_BAD_VERSION,
	MM_ANOM_IPV4_BAD_IHL,        /* header length < 20 or beyond the packet */
	MM_ANOM_IPV4_BAD_TOTAL_LEN,  /* total length < header length */
	MM_ANOM_IPV6_TRUNCATED,
	MM_ANOM_IPV6_EXT_TRUNCATED,  /* extension header runs past the packet */
	MM_ANOM_IPV6_EXT_CHAIN,      /* more extension headers than the cap */
	MM_ANOM_L4_TRUNCATED,        /* TCP/UDP/ICMP/SCTP header cut short */
	MM_ANOM_TCP_BAD_OFFSET,      /* TCP data offset < 5 */
	MM_ANOM_TUNNEL_TRUNCATED,    /* GRE/VXLAN/Geneve/GTP/… header cut short */
	MM_ANOM_TUNNEL_UNSUPPORTED,  /* tunnel version or payload type not handled */
	MM_ANOM_ENCAP_DEPTH,         /* nesting beyond the configured cap */
	MM_ANOM_FRAG_BAD,            /* fragment that overruns 65535 bytes or overlaps */
	MM_ANOM_FRAG_INCOMPLETE,     /* datagram never completed before its timeout */
	MM_ANOM_FRAG_TABLE_FULL,     /* fragment table at its cap: oldest datagram given up */
	MM_ANOM__COUNT
};

/* Short, stable name for counters ("ipv4-bad-ihl"). */
const char *mm_anomaly_name(unsigned anomaly);

struct mm_meter_config {
	uint64_t idle_tcp_ns;       /* inactivity timeout per protocol class */
	uint64_t idle_udp_ns;
	uint64_t idle_icmp_ns;
	uint64_t idle_other_ns;
	uint64_t active_ns;         /* split flows older than this; 0 = never */
	uint64_t tcp_close_ns;      /* linger after FIN both ways or RST (late ACKs count) */
	uint64_t frag_timeout_ns;   /* give up on a fragmented datagram after this */
	size_t max_flows;           /* table cap: at the cap the oldest flows are exported early */
	size_t max_fragments;       /* datagrams being reassembled at once */
	unsigned max_encap_depth;   /* tunnel nesting cap (1..MM_ENCAP_MAX) */
	uint32_t sensor_id;
	bool zeek_compat;           /* Zeek's direction and ICMP rules, no active timeout */
};

/* Defaults: TCP 300 s / UDP 60 s / ICMP 60 s / other 60 s idle, 1800 s active, 1 M flows. */
void mm_meter_config_default(struct mm_meter_config *cfg);

/* Zeek's semantics (TCP 5 min, UDP and ICMP 1 min inactivity, no active timeout). */
void mm_meter_config_zeek(struct mm_meter_config *cfg);

/*
 * Receives exported flows in batches; the array is borrowed for the call.
 * Called from inside mm_meter_packets / mm_meter_advance / mm_meter_finish.
 */
typedef void (*mm_flow_sink_fn)(void *ctx, const struct mm_flow *flows, size_t n);

struct mm_meter_stats {
	uint64_t packets;            /* packets offered */
	uint64_t bytes;              /* their wire bytes */
	uint64_t metered;            /* packets counted in at least one flow */
	uint64_t anomalies[MM_ANOM__COUNT];
	uint64_t flows_created;
	uint64_t flows_exported;
	uint64_t exported_by_reason[6]; /* indexed by enum mm_end_reason */
	uint64_t active_flows;       /* in the table now */
	uint64_t peak_flows;
	uint64_t fragments;          /* fragment packets seen */
	uint64_t datagrams_reassembled;
	uint64_t clock_steps_back;   /* times time jumped back beyond an idle timeout: table flushed */
	uint64_t table_bytes;        /* memory held by the flow and fragment tables */
};

struct mm_meter;

/* 0, MM_EINVAL (bad config, message says which field) or MM_ENOMEM. */
int mm_meter_new(struct mm_meter **out, const struct mm_meter_config *cfg, mm_flow_sink_fn sink,
		 void *sink_ctx);

/*
 * Meters n packets, in order. Time advances with packet timestamps; flows
 * whose timeouts have passed are exported on the way. Work is O(n) with a
 * bounded amount of expiry work per packet.
 */
void mm_meter_packets(struct mm_meter *m, const struct mm_raw_packet *pkts, size_t n);

/* Advances the clock without a packet (a quiet live link) and expires flows. */
void mm_meter_advance(struct mm_meter *m, uint64_t now_ns);

/* Exports every flow still in the table (end reason "forced"). */
void mm_meter_finish(struct mm_meter *m);

void mm_meter_get_stats(const struct mm_meter *m, struct mm_meter_stats *out);

void mm_meter_free(struct mm_meter *m);

#endif
