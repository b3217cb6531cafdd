/*
 * Packet decoder (see decode.h): link layer, VLAN/MPLS/PPPoE/PBB/VN-Tag,
 * IPv4/IPv6 with options and extension headers, the L4 ports the meter
 * keys flows on, and the tunnels Zeek decapsulates. Every read is preceded
 * by a length check against the bytes captured; nothing is copied. Plain
 * Ethernet/IP/TCP-UDP-ICMP frames take a fast path to the same result.
 */
#include "meter/decode.h"

#include <stdbool.h>
#include <stdint.h>

enum {
	ETH_IPV4 = 0x0800,
	ETH_IPV6 = 0x86dd,
	ETH_VLAN = 0x8100,
	ETH_QINQ = 0x88a8,
	ETH_QINQ_OLD = 0x9100,
	ETH_MPLS_UC = 0x8847,
	ETH_MPLS_MC = 0x8848,
	ETH_PPPOE_SESSION = 0x8864,
	ETH_PBB = 0x88e7,
	ETH_VNTAG = 0x8926,
	ETH_ERSPAN_2 = 0x88be,
	ETH_ERSPAN_3 = 0x22eb,
	ETH_PPP = 0x880b,
	/*
	 * "Transparent Ethernet bridging": used inside the decoder to mean
	 * "a whole Ethernet frame starts here", for the outer link and for
	 * every tunnel that carries Ethernet.
	 */
	ETH_FRAME = 0x6558,
	ETH_MAX_LENGTH = 1500, /* type fields up to here are 802.3 lengths */
};

enum {
	PROTO_HOPOPTS = 0,
	PROTO_ICMP = 1,
	PROTO_IPIP = 4,
	PROTO_TCP = 6,
	PROTO_UDP = 17,
	PROTO_IPV6 = 41,
	PROTO_ROUTING = 43,
	PROTO_FRAGMENT = 44,
	PROTO_GRE = 47,
	PROTO_ESP = 50,
	PROTO_AH = 51,
	PROTO_ICMPV6 = 58,
	PROTO_NONE = 59,
	PROTO_DSTOPTS = 60,
	PROTO_SCTP = 132,
	PROTO_MOBILITY = 135,
	PROTO_HIP = 139,
	PROTO_SHIM6 = 140,
};

enum {
	PORT_GTPU = 2152,
	PORT_TEREDO = 3544,
	PORT_VXLAN = 4789,
	PORT_AYIYA = 5072,
	PORT_GENEVE = 6081,
};

#define GTPU_EXT_MAX 8 /* GTP-U extension headers followed before giving up */

/* The bytes not yet decoded: p[0 .. len). */
struct span {
	const uint8_t *p;
	uint32_t len;
};

struct decoder {
	struct mm_pkt *out;
	const uint8_t *frame;   /* start of the frame, for l4_offset */
	unsigned max_depth;
	bool vlan_seen;
};

static inline uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[1] << 8 | p[0]);
}

static inline uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static inline void skip(struct span *s, uint32_t n)
{
	s->p += n;
	s->len -= n;
}

/* IPv4 or IPv6 by the version nibble, for payloads that do not name it. */
static uint16_t ip_type_by_nibble(const struct span *s)
{
	if (s->len == 0)
		return 0;
	switch (s->p[0] >> 4) {
	case 4: return ETH_IPV4;
	case 6: return ETH_IPV6;
	}
	return 0;
}

static uint16_t ppp_to_ethertype(uint16_t proto)
{
	switch (proto) {
	case 0x0021: return ETH_IPV4;
	case 0x0057: return ETH_IPV6;
	}
	return 0;
}

/*
 * PPP protocol field, possibly compressed to one byte (RFC 1661 §6.5:
 * an odd first byte ends the field). 0 for anything but IP.
 */
static enum mm_anomaly ppp_protocol(struct span *s, uint16_t *type)
{
	uint16_t proto;

	if (s->len < 1)
		return MM_ANOM_LINK_TRUNCATED;
	if (s->p[0] & 1) {
		proto = s->p[0];
		skip(s, 1);
	} else {
		if (s->len < 2)
			return MM_ANOM_LINK_TRUNCATED;
		proto = be16(s->p);
		skip(s, 2);
	}
	*type = ppp_to_ethertype(proto);
	return MM_ANOM_NONE;
}

/* PPP with an optional 0xff 0x03 address/control prefix (RFC 1662). */
static enum mm_anomaly ppp_frame(struct span *s, uint16_t *type)
{
	if (s->len >= 2 && s->p[0] == 0xff && s->p[1] == 0x03)
		skip(s, 2);
	return ppp_protocol(s, type);
}

/* PPPoE session header (RFC 2516), then the PPP protocol. */
static enum mm_anomaly pppoe_session(struct span *s, uint16_t *type)
{
	if (s->len < 8)
		return MM_ANOM_PPPOE_TRUNCATED;
	*type = ppp_to_ethertype(be16(s->p + 6));
	skip(s, 8);
	return MM_ANOM_NONE;
}

/*
 * 802.2 LLC. Only SNAP (AA AA 03, OUI, type) can carry IP; any other
 * SAP (STP, IPX, NetBIOS…) is not IP.
 */
static enum mm_anomaly llc_snap(struct span *s, uint16_t *type)
{
	if (s->len < 3)
		return MM_ANOM_LINK_TRUNCATED;
	if (s->p[0] != 0xaa || s->p[1] != 0xaa || s->p[2] != 0x03)
		return MM_ANOM_NOT_IP;
	if (s->len < 8)
		return MM_ANOM_LINK_TRUNCATED;
	*type = be16(s->p + 6);
	skip(s, 8);
	return MM_ANOM_NONE;
}

/*
 * After the last label: the payload names no protocol, so guess from its
 * first nibble like every MPLS decoder does. A first nibble of 0 is the
 * RFC 4385 pseudowire control word, which on an Ethernet pseudowire is
 * followed by the customer's Ethernet frame.
 */
static enum mm_anomaly mpls_stack(struct span *s, uint16_t *type)
{
	for (;;) {
		if (s->len < 4)
			return MM_ANOM_MPLS_TRUNCATED;
		bool bottom = s->p[2] & 0x01;
		skip(s, 4);
		if (bottom)
			break;
	}
	if (s->len == 0)
		return MM_ANOM_MPLS_TRUNCATED;
	switch (s->p[0] >> 4) {
	case 4: *type = ETH_IPV4; return MM_ANOM_NONE;
	case 6: *type = ETH_IPV6; return MM_ANOM_NONE;
	case 0:
		if (s->len < 4)
			return MM_ANOM_MPLS_TRUNCATED;
		skip(s, 4);
		*type = ETH_FRAME;
		return MM_ANOM_NONE;
	}
	return MM_ANOM_NOT_IP;
}

static enum mm_anomaly vlan_tag(struct decoder *d, struct span *s, uint16_t *type)
{
	if (s->len < 4)
		return MM_ANOM_VLAN_TRUNCATED;
	/* Only the frame's own outermost tag: a tunnelled frame's tags belong to another network. */
	if (!d->vlan_seen && d->out->n_ip == 0) {
		d->out->vlan = be16(s->p) & 0x0fff;
		d->vlan_seen = true;
	}
	*type = be16(s->p + 2);
	skip(s, 4);
	return MM_ANOM_NONE;
}

/*
 * From a frame or protocol type to the start of an IP header. Each step
 * consumes at least two bytes, so the loop ends within the frame however
 * the headers nest. Returns NONE with s at the IP header.
 */
static enum mm_anomaly decode_l2(struct decoder *d, struct span *s, uint16_t type)
{
	enum mm_anomaly a = MM_ANOM_NONE;

	for (;;) {
		switch (type) {
		case ETH_IPV4:
		case ETH_IPV6:
			return MM_ANOM_NONE;
		case ETH_FRAME:
			if (s->len < 14)
				return MM_ANOM_LINK_TRUNCATED;
			type = be16(s->p + 12);
			skip(s, 14);
			break;
		case ETH_VLAN:
		case ETH_QINQ:
		case ETH_QINQ_OLD:
			a = vlan_tag(d, s, &type);
			break;
		case ETH_MPLS_UC:
		case ETH_MPLS_MC:
			a = mpls_stack(s, &type);
			break;
		case ETH_PPPOE_SESSION:
			a = pppoe_session(s, &type);
			break;
		case ETH_PBB:
			/* 4-byte I-TAG, then the customer's Ethernet header (802.1ah). */
			if (s->len < 4)
				return MM_ANOM_LINK_TRUNCATED;
			skip(s, 4);
			type = ETH_FRAME;
			break;
		case ETH_VNTAG:
			if (s->len < 6)
				return MM_ANOM_LINK_TRUNCATED;
			type = be16(s->p + 4);
			skip(s, 6);
			break;
		default:
			if (type > ETH_MAX_LENGTH)
				return MM_ANOM_NOT_IP;
			a = llc_snap(s, &type);
			break;
		}
		if (a != MM_ANOM_NONE)
			return a;
		if (type == 0)
			return MM_ANOM_NOT_IP;
	}
}

/* BSD loopback address families: AF_INET, and AF_INET6 as the BSDs number it. */
static uint16_t loopback_family_type(uint32_t af)
{
	switch (af) {
	case 2: return ETH_IPV4;
	case 24:
	case 28:
	case 30: return ETH_IPV6;
	}
	return 0;
}

/*
 * DLT_NULL's family is in the capturing host's byte order, which the file
 * does not record; families are small, so the order whose value fits in
 * 16 bits is the right one.
 */
static enum mm_anomaly link_null(struct span *s, bool network_order, uint16_t *type)
{
	if (s->len < 4)
		return MM_ANOM_LINK_TRUNCATED;
	uint32_t af = network_order ? be32(s->p) : le32(s->p);
	if (!network_order && af > 0xffff)
		af = be32(s->p);
	*type = loopback_family_type(af);
	skip(s, 4);
	return *type ? MM_ANOM_NONE : MM_ANOM_NOT_IP;
}

/* LINKTYPE_PPP_HDLC: PPP in HDLC framing, or Cisco HDLC (0x0f/0x8f, then an ethertype). */
static enum mm_anomaly link_ppp_hdlc(struct span *s, uint16_t *type)
{
	if (s->len < 2)
		return MM_ANOM_LINK_TRUNCATED;
	if (s->p[0] == 0x0f || s->p[0] == 0x8f) {
		if (s->len < 4)
			return MM_ANOM_LINK_TRUNCATED;
		*type = be16(s->p + 2);
		skip(s, 4);
		return MM_ANOM_NONE;
	}
	if (s->p[0] != 0xff || s->p[1] != 0x03)
		return MM_ANOM_NOT_IP;
	skip(s, 2);
	return ppp_protocol(s, type);
}

/*
 * 802.11 data frames only; management/control frames, data subtypes
 * without a body (null data) and protected frames carry no IP we can read.
 * Of an A-MSDU only the first subframe is decoded: the meter takes one
 * set of IP layers per captured frame.
 */
static enum mm_anomaly link_80211(struct span *s, uint16_t *type)
{
	if (s->len < 24)
		return MM_ANOM_LINK_TRUNCATED;
	uint8_t fc = s->p[0], flags = s->p[1];
	if (((fc >> 2) & 0x03) != 2 || (fc & 0x40))
		return MM_ANOM_NOT_IP;
	if (flags & 0x40)
		return MM_ANOM_NOT_IP;
	uint32_t hlen = (flags & 0x03) == 0x03 ? 30 : 24;
	bool amsdu = false;
	if (fc & 0x80) {
		/* QoS data: 2-byte QoS control; +4 HT control when the Order bit is set. */
		if (s->len < hlen + 2)
			return MM_ANOM_LINK_TRUNCATED;
		amsdu = s->p[hlen] & 0x80;
		hlen += (flags & 0x80) ? 6 : 2;
	}
	if (s->len < hlen)
		return MM_ANOM_LINK_TRUNCATED;
	skip(s, hlen);
	if (amsdu) {
		/* Subframe header: DA, SA, length. */
		if (s->len < 14)
			return MM_ANOM_LINK_TRUNCATED;
		skip(s, 14);
	}
	return llc_snap(s, type);
}

/*
 * Radiotap: skip it_len bytes. When its Flags field says the frame ends in
 * an FCS, those 4 bytes are not frame: trim them so no header read can
 * take them for data.
 */
static enum mm_anomaly link_radiotap(struct span *s, uint16_t *type)
{
	if (s->len < 8)
		return MM_ANOM_LINK_TRUNCATED;
	uint32_t it_len = le16(s->p + 2);
	if (it_len < 8 || it_len > s->len)
		return MM_ANOM_LINK_TRUNCATED;
	uint32_t present = le32(s->p + 4);
	uint32_t off = 8;
	for (uint32_t word = present; word & 0x80000000u; off += 4) {
		if (off + 4 > it_len)
			return MM_ANOM_LINK_TRUNCATED;
		word = le32(s->p + off);
	}
	if (present & 0x01)
		off = ((off + 7) & ~7u) + 8; /* TSFT: 8 bytes, 8-aligned, precedes Flags */
	bool fcs = (present & 0x02) && off < it_len && (s->p[off] & 0x10);
	if (fcs) {
		if (s->len - it_len < 4)
			return MM_ANOM_LINK_TRUNCATED;
		s->len -= 4;
	}
	skip(s, it_len);
	return link_80211(s, type);
}

/* Positions s after the link-layer header; *type says what follows. */
static enum mm_anomaly decode_link(uint16_t linktype, struct span *s, uint16_t *type)
{
	switch (linktype) {
	case MM_LINK_ETHERNET:
		*type = ETH_FRAME;
		return MM_ANOM_NONE;
	case MM_LINK_RAW:
	case MM_LINK_IPV4:
	case MM_LINK_IPV6:
	case 12: /* DLT_RAW on most BSDs */
	case 14: /* DLT_RAW on OpenBSD */
		/* The version nibble decides, as for every IP header. */
		*type = ETH_IPV4;
		return MM_ANOM_NONE;
	case MM_LINK_LINUX_SLL:
		if (s->len < 16)
			return MM_ANOM_LINK_TRUNCATED;
		*type = be16(s->p + 14);
		skip(s, 16);
		return MM_ANOM_NONE;
	case MM_LINK_LINUX_SLL2:
		if (s->len < 20)
			return MM_ANOM_LINK_TRUNCATED;
		*type = be16(s->p);
		skip(s, 20);
		return MM_ANOM_NONE;
	case MM_LINK_NULL:
		return link_null(s, false, type);
	case MM_LINK_LOOP:
		return link_null(s, true, type);
	case MM_LINK_PPP:
		return ppp_frame(s, type);
	case MM_LINK_PPP_HDLC:
		return link_ppp_hdlc(s, type);
	case MM_LINK_PPP_ETHER:
		return pppoe_session(s, type);
	case MM_LINK_IEEE802_11:
		return link_80211(s, type);
	case MM_LINK_IEEE802_11_RADIOTAP:
		return link_radiotap(s, type);
	}
	return MM_ANOM_LINK_UNSUPPORTED;
}

/* Sets the fields an IP layer has whatever it carries. */
static void ip_reset_l4(struct mm_pkt_ip *ip)
{
	ip->sport = 0;
	ip->dport = 0;
	ip->has_ports = 0;
	ip->tcp_flags = 0;
	ip->icmp_type = 0;
	ip->icmp_code = 0;
	ip->tunnel = MM_TUNNEL_NONE;
}

static void set_frag_state(struct mm_pkt_ip *ip)
{
	ip->frag = ip->frag_offset ? MM_FRAG_LATER : ip->more_frags ? MM_FRAG_FIRST : MM_FRAG_NONE;
}

/*
 * IPv4 header; payload gets the bytes after it that are both captured and
 * inside the datagram (Ethernet padding is not payload). A total length of
 * 0 is what segmentation offload leaves in captures: the captured length
 * stands in for it.
 */
static enum mm_anomaly decode_ipv4(const struct span *s, struct mm_pkt_ip *ip, struct span *payload)
{
	const uint8_t *p = s->p;

	if (s->len < 20)
		return MM_ANOM_IPV4_TRUNCATED;
	uint32_t hlen = (p[0] & 0x0fu) * 4;
	if (hlen < 20 || hlen > s->len)
		return MM_ANOM_IPV4_BAD_IHL;
	uint32_t total = be16(p + 2);
	if (total == 0)
		total = s->len;
	else if (total < hlen)
		return MM_ANOM_IPV4_BAD_TOTAL_LEN;
	uint16_t frag = be16(p + 6);

	mm_addr_set_v4(&ip->src, p + 12);
	mm_addr_set_v4(&ip->dst, p + 16);
	ip->version = 4;
	ip->proto = p[9];
	ip->ip_len = total;
	ip->header_len = (uint16_t)hlen;
	ip->frag_id = be16(p + 4);
	ip->frag_offset = (uint16_t)((frag & 0x1fff) << 3);
	ip->more_frags = (frag & 0x2000) != 0;
	set_frag_state(ip);
	payload->p = p + hlen;
	payload->len = (total < s->len ? total : s->len) - hlen;
	return MM_ANOM_NONE;
}

/* Jumbo payload option (RFC 2675) in a hop-by-hop header of opt_len bytes; 0 if absent. */
static uint32_t ipv6_jumbo_length(const uint8_t *opt, uint32_t opt_len)
{
	uint32_t off = 2;

	while (off < opt_len) {
		if (opt[off] == 0) {
			off++;
			continue;
		}
		if (off + 2 > opt_len || off + 2 + opt[off + 1] > opt_len)
			return 0;
		if (opt[off] == 0xc2 && opt[off + 1] == 4)
			return be32(opt + off + 2);
		off += 2 + opt[off + 1];
	}
	return 0;
}

/* Length of the extension header at s of kind nh, or 0 when nh is not one we follow. */
static enum mm_anomaly ipv6_ext_len(uint8_t nh, const struct span *s, uint32_t *len)
{
	switch (nh) {
	case PROTO_HOPOPTS:
	case PROTO_ROUTING:
	case PROTO_DSTOPTS:
	case PROTO_MOBILITY:
	case PROTO_HIP:
	case PROTO_SHIM6:
		if (s->len < 2)
			return MM_ANOM_IPV6_EXT_TRUNCATED;
		*len = (s->p[1] + 1u) * 8;
		break;
	case PROTO_AH:
		if (s->len < 2)
			return MM_ANOM_IPV6_EXT_TRUNCATED;
		*len = (s->p[1] + 2u) * 4;
		break;
	case PROTO_FRAGMENT:
		*len = 8;
		break;
	default:
		*len = 0;
		return MM_ANOM_NONE;
	}
	return *len > s->len ? MM_ANOM_IPV6_EXT_TRUNCATED : MM_ANOM_NONE;
}

/*
 * Follows the extension header chain from nh; on return ip->proto is the
 * upper-layer protocol (ESP and No Next Header end the chain as one) and s
 * starts at it. A non-first fragment ends the chain: what follows its
 * fragment header is the middle of the datagram.
 */
static enum mm_anomaly ipv6_ext_chain(struct span *s, uint8_t nh, struct mm_pkt_ip *ip, uint32_t *jumbo)
{
	for (unsigned n = 0;; n++) {
		uint32_t len;
		enum mm_anomaly a = ipv6_ext_len(nh, s, &len);
		if (a != MM_ANOM_NONE)
			return a;
		if (len == 0)
			break;
		if (n == MM_IPV6_EXT_MAX)
			return MM_ANOM_IPV6_EXT_CHAIN;
		if (nh == PROTO_FRAGMENT) {
			uint16_t off_flags = be16(s->p + 2);
			ip->frag_offset = off_flags & 0xfff8;
			ip->more_frags = off_flags & 0x01;
			ip->frag_id = be32(s->p + 4);
			set_frag_state(ip);
		} else if (nh == PROTO_HOPOPTS && n == 0) {
			*jumbo = ipv6_jumbo_length(s->p, len);
		}
		nh = s->p[0];
		ip->header_len = (uint16_t)(ip->header_len + len);
		skip(s, len);
		if (ip->frag == MM_FRAG_LATER)
			break;
	}
	ip->proto = nh;
	return MM_ANOM_NONE;
}

/*
 * IPv6 header and extension chain. A payload length of 0 means a jumbogram
 * when a hop-by-hop jumbo option says so, an empty packet when the next
 * header is No Next Header, and otherwise segmentation offload (the
 * captured length stands in, as for IPv4).
 */
static enum mm_anomaly decode_ipv6(const struct span *s, struct mm_pkt_ip *ip, struct span *payload)
{
	const uint8_t *p = s->p;

	if (s->len < 40)
		return MM_ANOM_IPV6_TRUNCATED;
	uint32_t plen = be16(p + 4);
	uint32_t avail = s->len;
	uint32_t jumbo = 0;

	if (plen != 0 && 40 + plen < avail)
		avail = 40 + plen;
	mm_addr_set_v6(&ip->src, p + 8);
	mm_addr_set_v6(&ip->dst, p + 24);
	ip->version = 6;
	ip->header_len = 40;
	ip->frag_id = 0;
	ip->frag_offset = 0;
	ip->more_frags = 0;
	ip->frag = MM_FRAG_NONE;
	payload->p = p + 40;
	payload->len = avail - 40;
	enum mm_anomaly a = ipv6_ext_chain(payload, p[6], ip, &jumbo);
	if (a != MM_ANOM_NONE)
		return a;
	if (plen != 0)
		ip->ip_len = 40 + plen;
	else if (jumbo > 0xffff) /* RFC 2675: smaller values are not jumbograms */
		ip->ip_len = jumbo > UINT32_MAX - 40 ? UINT32_MAX : 40 + jumbo;
	else if (p[6] == PROTO_NONE)
		ip->ip_len = 40;
	else
		ip->ip_len = s->len;
	return MM_ANOM_NONE;
}

/*
 * Transport ports, TCP flags, ICMP type and code. Returns NONE when the
 * whole fixed header (TCP: data offset × 4) is present, else
 * L4_TRUNCATED with whatever fields the bytes present did allow (has_ports
 * says whether the ports are among them). payload is moved past a
 * complete UDP header so UDP tunnels can be looked for.
 */
static enum mm_anomaly decode_l4(struct mm_pkt_ip *ip, struct span *payload)
{
	const uint8_t *p = payload->p;
	uint32_t len = payload->len, full;

	ip_reset_l4(ip);
	if (ip->frag == MM_FRAG_LATER)
		return MM_ANOM_NONE;
	switch (ip->proto) {
	case PROTO_TCP:
		if (len < 14)
			return MM_ANOM_L4_TRUNCATED;
		if ((p[12] >> 4) < 5)
			return MM_ANOM_TCP_BAD_OFFSET;
		ip->tcp_flags = p[13];
		full = (p[12] >> 4) * 4u;
		break;
	case PROTO_UDP:
		full = 8;
		break;
	case PROTO_SCTP:
		full = 12;
		break;
	case PROTO_ICMP:
	case PROTO_ICMPV6:
		if (len < 2)
			return MM_ANOM_L4_TRUNCATED;
		ip->icmp_type = p[0];
		ip->icmp_code = p[1];
		ip->has_ports = 1;
		return len < 8 ? MM_ANOM_L4_TRUNCATED : MM_ANOM_NONE;
	default:
		return MM_ANOM_NONE;
	}
	if (len < 4)
		return MM_ANOM_L4_TRUNCATED;
	ip->sport = be16(p);
	ip->dport = be16(p + 2);
	ip->has_ports = 1;
	if (len < full)
		return MM_ANOM_L4_TRUNCATED;
	if (ip->proto == PROTO_UDP)
		skip(payload, 8);
	return MM_ANOM_NONE;
}

/*
 * GRE (RFC 2784/2890) and PPTP's enhanced GRE (RFC 2637), with the payloads
 * Zeek follows: IP, transparent Ethernet bridging, ERSPAN I/II/III, MPLS,
 * and PPP in version 1. Routing present (RFC 1701) and reserved flags are
 * refused, as Zeek does.
 */
static enum mm_anomaly gre_header(struct span *s, struct mm_pkt_ip *outer, uint16_t *type)
{
	if (s->len < 4)
		return MM_ANOM_TUNNEL_TRUNCATED;
	uint16_t flags = be16(s->p), proto = be16(s->p + 2);
	unsigned version = flags & 0x07;
	uint32_t hlen = 4 + ((flags & 0x8000) ? 4 : 0) + ((flags & 0x2000) ? 4 : 0) +
			((flags & 0x1000) ? 4 : 0) + ((flags & 0x0080) ? 4 : 0);

	if (version > 1 || (flags & 0x4000) || (flags & 0x0078))
		return MM_ANOM_TUNNEL_UNSUPPORTED;
	if (version == 1 && proto != ETH_PPP)
		return MM_ANOM_TUNNEL_UNSUPPORTED;
	if (s->len < hlen)
		return MM_ANOM_TUNNEL_TRUNCATED;
	skip(s, hlen);
	outer->tunnel = MM_TUNNEL_GRE;
	switch (proto) {
	case ETH_IPV4:
	case ETH_IPV6:
	case ETH_MPLS_UC:
	case ETH_MPLS_MC:
	case ETH_FRAME:
		*type = proto;
		return MM_ANOM_NONE;
	case ETH_PPP:
		/* An acknowledgement-only PPTP packet carries no PPP frame. */
		if (s->len == 0)
			return MM_ANOM_NONE;
		if (ppp_frame(s, type) != MM_ANOM_NONE)
			return MM_ANOM_TUNNEL_TRUNCATED;
		return *type ? MM_ANOM_NONE : MM_ANOM_NOT_IP;
	case ETH_ERSPAN_2: {
		/* Type I has no ERSPAN header; type II is told apart by the sequence bit. */
		uint32_t erspan_len = (flags & 0x1000) ? 8 : 0;
		if (s->len < erspan_len)
			return MM_ANOM_TUNNEL_TRUNCATED;
		skip(s, erspan_len);
		outer->tunnel = MM_TUNNEL_ERSPAN;
		*type = ETH_FRAME;
		return MM_ANOM_NONE;
	}
	case ETH_ERSPAN_3: {
		/* 12 bytes; the O bit (last bit of the header) adds an 8-byte platform subheader. */
		if (s->len < 12)
			return MM_ANOM_TUNNEL_TRUNCATED;
		uint32_t erspan_len = (s->p[11] & 0x01) ? 20 : 12;
		if (s->len < erspan_len)
			return MM_ANOM_TUNNEL_TRUNCATED;
		skip(s, erspan_len);
		outer->tunnel = MM_TUNNEL_ERSPAN;
		*type = ETH_FRAME;
		return MM_ANOM_NONE;
	}
	}
	return MM_ANOM_TUNNEL_UNSUPPORTED;
}

/* VXLAN (RFC 7348): 8 bytes with the I flag, then an Ethernet frame. */
static enum mm_anomaly vxlan_header(struct span *s, struct mm_pkt_ip *outer, uint16_t *type)
{
	if (s->len < 8)
		return MM_ANOM_TUNNEL_TRUNCATED;
	if (!(s->p[0] & 0x08))
		return MM_ANOM_TUNNEL_UNSUPPORTED;
	skip(s, 8);
	outer->tunnel = MM_TUNNEL_VXLAN;
	*type = ETH_FRAME;
	return MM_ANOM_NONE;
}

/* Geneve (RFC 8926): version 0, options, then Ethernet or IP by protocol type. */
static enum mm_anomaly geneve_header(struct span *s, struct mm_pkt_ip *outer, uint16_t *type)
{
	if (s->len < 8)
		return MM_ANOM_TUNNEL_TRUNCATED;
	if ((s->p[0] >> 6) != 0)
		return MM_ANOM_TUNNEL_UNSUPPORTED;
	uint32_t hlen = 8 + (s->p[0] & 0x3fu) * 4;
	uint16_t proto = be16(s->p + 2);
	if (s->len < hlen)
		return MM_ANOM_TUNNEL_TRUNCATED;
	if (proto != ETH_FRAME && proto != ETH_IPV4 && proto != ETH_IPV6)
		return MM_ANOM_TUNNEL_UNSUPPORTED;
	skip(s, hlen);
	outer->tunnel = MM_TUNNEL_GENEVE;
	*type = proto;
	return MM_ANOM_NONE;
}

/*
 * GTP-U (3GPP TS 29.281): version 1, protocol type GTP, and only G-PDU
 * messages carry user IP; echo, error indication and end marker are the
 * tunnel's own signalling and end decoding without an anomaly.
 */
static enum mm_anomaly gtpu_header(struct span *s, struct mm_pkt_ip *outer, uint16_t *type)
{
	if (s->len < 8)
		return MM_ANOM_TUNNEL_TRUNCATED;
	uint8_t flags = s->p[0];
	if ((flags >> 5) != 1 || !(flags & 0x10))
		return MM_ANOM_TUNNEL_UNSUPPORTED;
	if (s->p[1] != 0xff)
		return MM_ANOM_NONE;
	uint32_t hlen = 8;
	uint8_t next_ext = 0;
	if (flags & 0x07) {
		/* Any of E, S, PN: sequence number, N-PDU number and next extension type follow. */
		if (s->len < 12)
			return MM_ANOM_TUNNEL_TRUNCATED;
		next_ext = (flags & 0x04) ? s->p[11] : 0;
		hlen = 12;
	}
	for (unsigned n = 0; next_ext != 0; n++) {
		if (n == GTPU_EXT_MAX)
			return MM_ANOM_TUNNEL_UNSUPPORTED;
		if (s->len < hlen + 1)
			return MM_ANOM_TUNNEL_TRUNCATED;
		uint32_t ext_len = s->p[hlen] * 4u;
		if (ext_len == 0)
			return MM_ANOM_TUNNEL_UNSUPPORTED;
		if (s->len < hlen + ext_len)
			return MM_ANOM_TUNNEL_TRUNCATED;
		next_ext = s->p[hlen + ext_len - 1];
		hlen += ext_len;
	}
	skip(s, hlen);
	if (s->len == 0)
		return MM_ANOM_TUNNEL_TRUNCATED;
	*type = ip_type_by_nibble(s);
	if (*type == 0)
		return MM_ANOM_TUNNEL_UNSUPPORTED;
	outer->tunnel = MM_TUNNEL_GTPU;
	return MM_ANOM_NONE;
}

/*
 * Teredo (RFC 4380) has no header of its own worth the name, so port 3544
 * alone proves nothing: the payload is taken for IPv6 only when, after the
 * optional authentication and origin indication headers, it parses as
 * IPv6 whose payload length fills the datagram exactly (a bubble, No Next
 * Header with length 0, may be padded). Anything else is plain UDP, no
 * anomaly. wire_len is the UDP payload length the IP header implies, so
 * the check also holds for snaplen-cut packets.
 */
static enum mm_anomaly teredo_header(struct span *s, uint32_t wire_len, struct mm_pkt_ip *outer,
				     uint16_t *type)
{
	uint32_t off = 0;

	if (s->len >= 4 && be16(s->p) == 1) {
		off = 4u + s->p[2] + s->p[3] + 9;
		if (off > s->len)
			return MM_ANOM_NONE;
	}
	if (s->len >= off + 2 && be16(s->p + off) == 0)
		off += 8;
	if (s->len < off + 40 || wire_len < off + 40 || (s->p[off] >> 4) != 6)
		return MM_ANOM_NONE;
	uint32_t plen = be16(s->p + off + 4);
	bool bubble = plen == 0 && s->p[off + 6] == PROTO_NONE;
	if (!bubble && 40 + plen != wire_len - off)
		return MM_ANOM_NONE;
	skip(s, off);
	outer->tunnel = MM_TUNNEL_TEREDO;
	*type = ETH_IPV6;
	return MM_ANOM_NONE;
}

/*
 * AYIYA: identity and signature sized by the header, then the packet
 * named by next header. Operations other than "forward" carry no packet.
 */
static enum mm_anomaly ayiya_header(struct span *s, struct mm_pkt_ip *outer, uint16_t *type)
{
	if (s->len < 8)
		return MM_ANOM_TUNNEL_TRUNCATED;
	uint32_t hlen = 8 + (1u << (s->p[0] >> 4)) + (s->p[1] >> 4) * 4u;
	uint8_t next = s->p[3];
	if (s->len < hlen)
		return MM_ANOM_TUNNEL_TRUNCATED;
	if ((s->p[2] & 0x0f) != 1)
		return MM_ANOM_NONE;
	if (next != PROTO_IPIP && next != PROTO_IPV6)
		return MM_ANOM_TUNNEL_UNSUPPORTED;
	skip(s, hlen);
	outer->tunnel = MM_TUNNEL_AYIYA;
	*type = next == PROTO_IPIP ? ETH_IPV4 : ETH_IPV6;
	return MM_ANOM_NONE;
}

/* The tunnel Zeek looks for behind a UDP port; NONE for every other port. */
static inline enum mm_tunnel_kind udp_port_tunnel(uint16_t port)
{
	/* One compare settles the ports outside the tunnels' span, the per-packet case. */
	if (port < PORT_GTPU || port > PORT_GENEVE)
		return MM_TUNNEL_NONE;
	switch (port) {
	case PORT_VXLAN: return MM_TUNNEL_VXLAN;
	case PORT_GENEVE: return MM_TUNNEL_GENEVE;
	case PORT_GTPU: return MM_TUNNEL_GTPU;
	case PORT_TEREDO: return MM_TUNNEL_TEREDO;
	case PORT_AYIYA: return MM_TUNNEL_AYIYA;
	}
	return MM_TUNNEL_NONE;
}

/*
 * UDP tunnels by port. Zeek hands a UDP payload to a tunnel analyzer by the
 * connection's responder port; the requests of a connection carry it as
 * destination and the replies as source, so without connection state the
 * destination port is tried first and then the source port.
 */
static enum mm_anomaly udp_tunnel(struct span *s, struct mm_pkt_ip *outer, uint16_t *type)
{
	enum mm_tunnel_kind kind = udp_port_tunnel(outer->dport);

	if (kind == MM_TUNNEL_NONE)
		kind = udp_port_tunnel(outer->sport);
	switch (kind) {
	case MM_TUNNEL_VXLAN: return vxlan_header(s, outer, type);
	case MM_TUNNEL_GENEVE: return geneve_header(s, outer, type);
	case MM_TUNNEL_GTPU: return gtpu_header(s, outer, type);
	case MM_TUNNEL_TEREDO:
		return teredo_header(s, outer->ip_len - outer->header_len - 8, outer, type);
	case MM_TUNNEL_AYIYA: return ayiya_header(s, outer, type);
	default: return MM_ANOM_NONE;
	}
}

/*
 * The tunnel header, if any, after a complete, unfragmented outer layer
 * (a fragment's payload is not a whole inner packet). *type is left 0
 * when there is no inner packet to decode.
 */
static enum mm_anomaly decode_tunnel(struct span *s, struct mm_pkt_ip *outer, uint16_t *type)
{
	enum mm_anomaly a = MM_ANOM_NONE;

	switch (outer->proto) {
	case PROTO_IPIP:
	case PROTO_IPV6:
		outer->tunnel = MM_TUNNEL_IPIP;
		*type = ETH_IPV4;
		break;
	case PROTO_GRE:
		a = gre_header(s, outer, type);
		break;
	case PROTO_UDP:
		a = udp_tunnel(s, outer, type);
		break;
	}
	/* A tunnel header with nothing after it is a cut packet (or a hostile one). */
	if (a == MM_ANOM_NONE && *type != 0 && s->len == 0)
		return MM_ANOM_TUNNEL_TRUNCATED;
	return a;
}

/*
 * One IP layer at s, its L4 header and the tunnel header after it. On
 * return s is at the inner packet and *type says what it is (0: none).
 *
 * A layer whose transport header is cut short (or whose TCP data offset is
 * impossible) is not reported: Zeek drops such packets with a
 * "truncated_header" weird and counts them in no connection, and the meter
 * follows it so its flows match conn.log. The exception is a first
 * fragment: the rest of its transport header may be in the next fragment,
 * so it is reported with what it has, for the meter's reassembly.
 */
static enum mm_anomaly decode_ip_layer(struct decoder *d, struct span *s, uint16_t *type)
{
	struct mm_pkt_ip *ip = &d->out->ip[d->out->n_ip];
	struct span payload;
	enum mm_anomaly a;

	*type = 0;
	if (s->len == 0)
		return MM_ANOM_IPV4_TRUNCATED;
	switch (s->p[0] >> 4) {
	case 4: a = decode_ipv4(s, ip, &payload); break;
	case 6: a = decode_ipv6(s, ip, &payload); break;
	default: return MM_ANOM_IPV4_BAD_VERSION;
	}
	if (a != MM_ANOM_NONE)
		return a;
	ip->l4_offset = (uint32_t)(payload.p - d->frame);
	a = decode_l4(ip, &payload);
	if (a == MM_ANOM_L4_TRUNCATED && ip->frag == MM_FRAG_FIRST) {
		d->out->n_ip++;
		return a;
	}
	if (a != MM_ANOM_NONE)
		return a;
	d->out->n_ip++;
	if (ip->frag != MM_FRAG_NONE)
		return MM_ANOM_NONE;
	*s = payload;
	return decode_tunnel(s, ip, type);
}

enum mm_anomaly decode_packet_general(uint16_t linktype, const uint8_t *frame, uint32_t cap_len,
				      unsigned max_depth, struct mm_pkt *out)
{
	struct decoder d = { .out = out, .frame = frame, .max_depth = max_depth, .vlan_seen = false };
	struct span s = { .p = frame, .len = cap_len };
	uint16_t type = 0;
	enum mm_anomaly a;

	if (d.max_depth > MM_ENCAP_MAX)
		d.max_depth = MM_ENCAP_MAX;
	out->vlan = 0;
	out->n_ip = 0;
	a = decode_link(linktype, &s, &type);
	if (a != MM_ANOM_NONE)
		return a;
	if (type == 0)
		return MM_ANOM_NOT_IP;
	for (;;) {
		a = decode_l2(&d, &s, type);
		if (a != MM_ANOM_NONE)
			return a;
		a = decode_ip_layer(&d, &s, &type);
		if (a != MM_ANOM_NONE || type == 0)
			return a;
		if (out->n_ip > d.max_depth)
			return MM_ANOM_ENCAP_DEPTH;
	}
}

/*
 * The smallest frame the fast path takes (Ethernet, IPv4, UDP); checked
 * once up front so the Ethernet header and a VLAN tag need no check of
 * their own.
 */
#define FAST_MIN_FRAME (14 + 20 + 8)

/*
 * IPv4 without options and not a fragment; returns its L4 header, NULL to
 * give up. *l4_len counts the bytes after the header both captured and
 * inside the datagram, as decode_ipv4 does: negative when the total length
 * does not even cover the header, which fast_l4 then refuses.
 */
static inline const uint8_t *fast_ipv4(const uint8_t *p, uint32_t len, struct mm_pkt_ip *ip,
				       int32_t *l4_len)
{
	uint32_t total = be16(p + 2);

	if (p[0] != 0x45 || (be16(p + 6) & 0x3fff) != 0)
		return NULL;
	*l4_len = (int32_t)(total < len ? total : len) - 20;
	mm_addr_set_v4(&ip->src, p + 12);
	mm_addr_set_v4(&ip->dst, p + 16);
	ip->ip_len = total;
	ip->frag_id = be16(p + 4);
	ip->version = 4;
	ip->proto = p[9];
	ip->header_len = 20;
	return p + 20;
}

/*
 * IPv6; fast_l4 rules out extension headers by ip->proto. A payload length
 * of 0 (jumbogram or offload) leaves *l4_len at 0, which fast_l4 refuses,
 * so such packets get decode_ipv6's rules.
 */
static inline const uint8_t *fast_ipv6(const uint8_t *p, uint32_t len, struct mm_pkt_ip *ip,
				       int32_t *l4_len)
{
	uint32_t total = 40u + be16(p + 4);

	if (len < 40 || (p[0] >> 4) != 6)
		return NULL;
	*l4_len = (int32_t)(total < len ? total : len) - 40;
	mm_addr_set_v6(&ip->src, p + 8);
	mm_addr_set_v6(&ip->dst, p + 24);
	ip->ip_len = total;
	ip->frag_id = 0;
	ip->version = 6;
	ip->proto = p[6];
	ip->header_len = 40;
	return p + 40;
}

/*
 * A whole TCP header, a UDP header on no tunnel port, or a whole ICMP
 * header; sets the L4 fields as decode_l4 does for an unfragmented layer.
 * The fields most protocols leave at zero are written first, together
 * (they are neighbours in struct mm_pkt_ip), and TCP, the most common, is
 * tried first.
 */
static inline bool fast_l4(const uint8_t *l4, int32_t l4_len, struct mm_pkt_ip *ip)
{
	ip->frag_offset = 0;
	ip->frag = MM_FRAG_NONE;
	ip->more_frags = 0;
	ip->has_ports = 1;
	ip->tcp_flags = 0;
	ip->icmp_type = 0;
	ip->icmp_code = 0;
	ip->tunnel = MM_TUNNEL_NONE;
	if (ip->proto == PROTO_TCP) {
		if (l4_len < 20)
			return false;
		/* The data offset in bytes: its nibble times four, straight from the byte. */
		int32_t data_off = l4[12] >> 2 & 0x3c;
		if (data_off < 20 || data_off > l4_len)
			return false;
		ip->sport = be16(l4);
		ip->dport = be16(l4 + 2);
		ip->tcp_flags = l4[13];
		return true;
	}
	if (ip->proto == PROTO_UDP) {
		if (l4_len < 8)
			return false;
		ip->sport = be16(l4);
		ip->dport = be16(l4 + 2);
		return udp_port_tunnel(ip->sport) == MM_TUNNEL_NONE &&
		       udp_port_tunnel(ip->dport) == MM_TUNNEL_NONE;
	}
	if (ip->proto == PROTO_ICMP || ip->proto == PROTO_ICMPV6) {
		if (l4_len < 8)
			return false;
		ip->sport = 0;
		ip->dport = 0;
		ip->icmp_type = l4[0];
		ip->icmp_code = l4[1];
		return true;
	}
	return false;
}

/*
 * Plain traffic without the general path's dispatch: Ethernet, at most one
 * 802.1Q tag, IPv4 without options or IPv6 without extension headers, not
 * a fragment, and a whole TCP or ICMP header or a UDP header on no tunnel
 * port. When it returns true, out holds exactly what
 * decode_packet_general would have set. Fields are written as soon as they
 * are checked, so that few values stay live; when it gives up after that,
 * the general path rewrites every field it reports.
 */
static inline bool decode_fast(uint16_t linktype, const uint8_t *frame, uint32_t cap_len,
			       struct mm_pkt *out)
{
	struct mm_pkt_ip *ip = &out->ip[0];
	const uint8_t *p = frame + 14, *l4;
	uint32_t len;
	int32_t l4_len;
	uint16_t type;

	if (linktype != MM_LINK_ETHERNET || cap_len < FAST_MIN_FRAME)
		return false;
	len = cap_len - 14;
	type = be16(frame + 12);
	if (type == ETH_VLAN) {
		out->vlan = be16(frame + 14) & 0x0fff;
		type = be16(frame + 16);
		p += 4;
		len -= 4;
	} else {
		out->vlan = 0;
	}
	if (type == ETH_IPV4)
		l4 = fast_ipv4(p, len, ip, &l4_len);
	else if (type == ETH_IPV6)
		l4 = fast_ipv6(p, len, ip, &l4_len);
	else
		return false;
	if (l4 == NULL || !fast_l4(l4, l4_len, ip))
		return false;
	ip->l4_offset = (uint32_t)(l4 - frame);
	out->n_ip = 1;
	return true;
}

bool decode_packet_fast(uint16_t linktype, const uint8_t *frame, uint32_t cap_len,
			struct mm_pkt *out)
{
	return decode_fast(linktype, frame, cap_len, out);
}

enum mm_anomaly mm_decode_packet(uint16_t linktype, const uint8_t *frame, uint32_t cap_len,
				 unsigned max_depth, struct mm_pkt *out)
{
	if (decode_fast(linktype, frame, cap_len, out))
		return MM_ANOM_NONE;
	return decode_packet_general(linktype, frame, cap_len, max_depth, out);
}

const char *mm_anomaly_name(unsigned anomaly)
{
	static const char *const names[MM_ANOM__COUNT] = {
		[MM_ANOM_NONE] = "none",
		[MM_ANOM_NOT_IP] = "not-ip",
		[MM_ANOM_LINK_UNSUPPORTED] = "link-unsupported",
		[MM_ANOM_LINK_TRUNCATED] = "link-truncated",
		[MM_ANOM_VLAN_TRUNCATED] = "vlan-truncated",
		[MM_ANOM_MPLS_TRUNCATED] = "mpls-truncated",
		[MM_ANOM_PPPOE_TRUNCATED] = "pppoe-truncated",
		[MM_ANOM_IPV4_TRUNCATED] = "ipv4-truncated",
		[MM_ANOM_IPV4_BAD_VERSION] = "ipv4-bad-version",
		[MM_ANOM_IPV4_BAD_IHL] = "ipv4-bad-ihl",
		[MM_ANOM_IPV4_BAD_TOTAL_LEN] = "ipv4-bad-total-len",
		[MM_ANOM_IPV6_TRUNCATED] = "ipv6-truncated",
		[MM_ANOM_IPV6_EXT_TRUNCATED] = "ipv6-ext-truncated",
		[MM_ANOM_IPV6_EXT_CHAIN] = "ipv6-ext-chain",
		[MM_ANOM_L4_TRUNCATED] = "l4-truncated",
		[MM_ANOM_TCP_BAD_OFFSET] = "tcp-bad-offset",
		[MM_ANOM_TUNNEL_TRUNCATED] = "tunnel-truncated",
		[MM_ANOM_TUNNEL_UNSUPPORTED] = "tunnel-unsupported",
		[MM_ANOM_ENCAP_DEPTH] = "encap-depth",
		[MM_ANOM_FRAG_BAD] = "frag-bad",
		[MM_ANOM_FRAG_INCOMPLETE] = "frag-incomplete",
		[MM_ANOM_FRAG_TABLE_FULL] = "frag-table-full",
	};

	if (anomaly >= MM_ANOM__COUNT)
		return "unknown";
	return names[anomaly];
}
