/*
 * Packet decoder: from a link-layer frame down through VLAN/MPLS/PPPoE and
 * tunnels to the innermost IP layer. It reads only headers, checks every
 * length before reading, and reports each IP layer it found, outermost
 * first, so the meter can count a packet in its tunnel flows and in its
 * inner flow. It never copies bytes out of the frame.
 */
#ifndef MAMORI_METER_DECODE_H
#define MAMORI_METER_DECODE_H

#include "mamori/addr.h"
#include "mamori/meter.h"

#include <stdbool.h>
#include <stdint.h>

#define MM_ENCAP_MAX 8        /* hard upper bound of the encapsulation cap */
#define MM_IPV6_EXT_MAX 8     /* extension headers followed before giving up */

/* How the layer after this one is carried (set on the outer layer). */
enum mm_tunnel_kind {
	MM_TUNNEL_NONE = 0,
	MM_TUNNEL_IPIP,     /* IPv4/IPv6 directly in IP (4in4, 6in4, 4in6, 6in6) */
	MM_TUNNEL_GRE,
	MM_TUNNEL_ERSPAN,
	MM_TUNNEL_VXLAN,
	MM_TUNNEL_GENEVE,
	MM_TUNNEL_GTPU,
	MM_TUNNEL_TEREDO,
	MM_TUNNEL_AYIYA,
};

enum mm_frag_state {
	MM_FRAG_NONE = 0,   /* not a fragment */
	MM_FRAG_FIRST,      /* offset 0, more fragments follow: L4 header is here */
	MM_FRAG_LATER,      /* offset > 0 */
};

/* One IP layer of a packet. */
struct mm_pkt_ip {
	struct mm_addr src, dst;
	uint32_t ip_len;        /* IP bytes as the header states: v4 total length, v6 40 + payload length (+ jumbo) */
	uint32_t frag_id;       /* IPv4 identification or IPv6 fragment identification */
	uint16_t frag_offset;   /* bytes */
	uint16_t sport, dport;  /* TCP/UDP/SCTP ports; 0 when has_ports is 0 */
	uint8_t version;        /* 4 or 6 */
	uint8_t proto;          /* upper-layer protocol after IPv6 extension headers */
	uint8_t frag;           /* enum mm_frag_state */
	uint8_t more_frags;     /* MF bit / M flag */
	uint8_t has_ports;      /* the L4 header was present and parsed */
	uint8_t tcp_flags;
	uint8_t icmp_type, icmp_code; /* ICMP / ICMPv6 */
	uint8_t tunnel;         /* enum mm_tunnel_kind carrying the next layer */
	uint16_t header_len;    /* IP header length including options / extension headers */
	uint32_t l4_offset;     /* frame offset of the TCP/UDP/SCTP/ICMP header (valid when has_ports);
	                           the collector reads export messages behind a UDP header from it */
};

struct mm_pkt {
	uint16_t vlan;          /* outermost 802.1Q/802.1ad VLAN id, 0 if none */
	uint8_t n_ip;           /* layers found; 0 when none */
	struct mm_pkt_ip ip[MM_ENCAP_MAX + 1];
};

/*
 * Decodes frame (cap_len bytes present, linktype as in the capture) into
 * out. Follows tunnels up to max_depth encapsulations. Returns MM_ANOM_NONE
 * when every layer decoded, or the anomaly that stopped it; out->n_ip then
 * holds the layers that decoded fully before it (possibly 0). Work is
 * bounded by the header bytes read (at most max_depth + 1 IP layers,
 * MM_IPV6_EXT_MAX extension headers each).
 */
enum mm_anomaly mm_decode_packet(uint16_t linktype, const uint8_t *frame, uint32_t cap_len,
				 unsigned max_depth, struct mm_pkt *out);

/*
 * Module-internal, exposed for tests that hold the two against each other:
 * mm_decode_packet is decode_packet_fast, for plain Ethernet/IPv4/IPv6
 * TCP, UDP and ICMP, falling back to decode_packet_general for everything
 * else.
 * decode_packet_fast returns false for any frame it does not take (out
 * then holds nothing valid); when it returns true, out is exactly what
 * decode_packet_general sets, with anomaly MM_ANOM_NONE.
 */
bool decode_packet_fast(uint16_t linktype, const uint8_t *frame, uint32_t cap_len,
			struct mm_pkt *out);
enum mm_anomaly decode_packet_general(uint16_t linktype, const uint8_t *frame, uint32_t cap_len,
				      unsigned max_depth, struct mm_pkt *out);

#endif
