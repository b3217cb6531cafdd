/*
 * The flow record: the one unit of metadata every stage passes on. Meter
 * and ingest produce it, policy rewrites addresses in it, store keeps its
 * fields as columns, query and detect read it. It carries no payload byte
 * by construction: every field below is a header value or a count.
 *
 * A record is an RFC 5103 biflow: "src" is the originator (the side that
 * opened the conversation, decided as Zeek does), "dst" the responder;
 * fwd_* count originator→responder traffic, rev_* the other way. A
 * unidirectional export (NetFlow) has rev_* zero.
 */
#ifndef MAMORI_FLOW_H
#define MAMORI_FLOW_H

#include "mamori/addr.h"

#include <stdint.h>

/* Why a flow was exported: the IPFIX flowEndReason codes (RFC 7011 IE 136). */
enum mm_end_reason {
	MM_END_UNKNOWN = 0,
	MM_END_IDLE = 1,     /* idle timeout */
	MM_END_ACTIVE = 2,   /* active timeout: long flow split */
	MM_END_EOF = 3,      /* end of flow detected (TCP FIN/RST) */
	MM_END_FORCED = 4,   /* end of input or shutdown */
	MM_END_RESOURCE = 5, /* table full: exported early to make room */
};

enum mm_flow_flag {
	MM_FLOW_TUNNEL = 1u << 0,    /* carries encapsulated traffic */
	MM_FLOW_FRAGMENTS = 1u << 1, /* some packets arrived as IP fragments */
	MM_FLOW_SAMPLED = 1u << 2,   /* counts are of sampled packets */
	/* Set by the jurisdiction policy: that end is domestic, so its address
	 * is a Crypto-PAn pseudonym. Detectors read these instead of matching
	 * pseudonyms against domestic prefixes. */
	MM_FLOW_SRC_DOMESTIC = 1u << 3,
	MM_FLOW_DST_DOMESTIC = 1u << 4,
};

#define MM_TUNNEL_PARENTS 2

struct mm_flow {
	struct mm_addr src, dst;
	struct mm_addr next_hop;   /* ingest only; zero when unknown */
	uint64_t first_ns, last_ns; /* Unix epoch, nanoseconds */
	uint64_t fwd_packets, fwd_bytes; /* bytes are IP bytes (IP header + payload length) */
	uint64_t rev_packets, rev_bytes;
	uint64_t id;               /* unique within one metering run; 0 if unset */
	uint64_t tunnel_parents[MM_TUNNEL_PARENTS]; /* ids of outer flows, 0 = none */
	uint32_t sensor_id;
	uint32_t sampling_rate;    /* 1-in-N packet sampling; 0 or 1 = all packets */
	uint32_t src_as, dst_as;
	uint32_t in_if, out_if;
	uint16_t src_port, dst_port; /* ICMP: type and code (see below) */
	uint16_t vlan;             /* outermost 802.1Q id, 0 if untagged */
	uint8_t proto;             /* IP protocol number */
	uint8_t icmp_type, icmp_code; /* first ICMP message seen from the originator */
	uint8_t fwd_tcp_flags, rev_tcp_flags; /* union of flags per direction */
	uint8_t end_reason;        /* enum mm_end_reason */
	uint8_t flags;             /* enum mm_flow_flag */
	char src_country[2], dst_country[2]; /* ISO 3166 alpha-2, zero if unknown */
};

/*
 * ICMP flows keep ports the way Zeek does, so request and reply meet in one
 * flow: src_port is the originator's message type, dst_port the type of its
 * counterpart (echo request 8 ↔ reply 0), or the code for messages without one.
 */

static inline uint64_t mm_flow_packets(const struct mm_flow *f)
{
	return f->fwd_packets + f->rev_packets;
}

static inline uint64_t mm_flow_bytes(const struct mm_flow *f)
{
	return f->fwd_bytes + f->rev_bytes;
}

/* "idle", "active", "eof", "forced", "resource", "unknown". */
const char *mm_end_reason_name(unsigned reason);

/* "tcp", "udp", "icmp", "ipv6-icmp", "sctp", … or the number as text in buf. */
const char *mm_proto_name(uint8_t proto, char buf[8]);

/* Parses "tcp" / "udp" / … or a decimal 0..255; 0 or MM_EINVAL. */
int mm_proto_parse(const char *text, uint8_t *out);

/* "FSRPAUEC" style rendering of a TCP flags byte, '.' for unset bits. */
char *mm_tcp_flags_format(uint8_t flags, char buf[9]);

#endif
