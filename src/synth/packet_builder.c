/*
 * Packet builder for synthetic traffic: one well-formed Ethernet frame per
 * mm_packet_spec, with the length fields and checksums a real stack would
 * write, so that the meter, tshark and other decoders read it as real
 * traffic. Payload bytes are always zero, which lets every checksum but
 * SCTP's CRC skip them.
 */
#include "mamori/synth.h"

#include <string.h>

#define ETH_HDR_LEN 14
#define VLAN_TAG_LEN 4
#define IPV4_HDR_LEN 20
#define IPV6_HDR_LEN 40
#define TCP_HDR_LEN 20
#define UDP_HDR_LEN 8
#define ICMP_HDR_LEN 8 /* type, code, checksum, identifier, sequence */
#define SCTP_HDR_LEN 12
#define SCTP_PAD_CHUNK 0x84 /* RFC 4820 PAD chunk: carries filler bytes only */
#define IP_MAX_LEN 65535u
#define TCP_WINDOW 64240 /* what Linux advertises before window scaling */
#define DEFAULT_TTL 64

enum { ETHERTYPE_IPV4 = 0x0800, ETHERTYPE_IPV6 = 0x86dd, ETHERTYPE_VLAN = 0x8100 };
enum { PROTO_ICMP = 1, PROTO_TCP = 6, PROTO_UDP = 17, PROTO_ICMPV6 = 58, PROTO_SCTP = 132 };

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Adds len bytes as big-endian 16-bit words (RFC 1071); an odd last byte is zero-padded. */
static uint32_t sum_words(const uint8_t *p, size_t len, uint32_t acc)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		acc += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		acc += (uint32_t)p[len - 1] << 8;
	return acc;
}

static uint16_t fold_checksum(uint32_t acc)
{
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	return (uint16_t)~acc;
}

/* CRC-32C (Castagnoli), reflected, bit by bit: SCTP is rare enough that a table is not worth it. */
static uint32_t crc32c(const uint8_t *p, size_t len)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1)));
	}
	return ~crc;
}

static size_t l4_header_len(uint8_t proto)
{
	switch (proto) {
	case PROTO_TCP: return TCP_HDR_LEN;
	case PROTO_UDP: return UDP_HDR_LEN;
	case PROTO_ICMP:
	case PROTO_ICMPV6: return ICMP_HDR_LEN;
	case PROTO_SCTP: return SCTP_HDR_LEN;
	}
	return 0;
}

/* A locally administered MAC (02:00:…) made from the address's last four bytes. */
static void put_mac(uint8_t *p, const struct mm_addr *a)
{
	p[0] = 0x02;
	p[1] = 0x00;
	memcpy(p + 2, a->b + 12, 4);
}

static size_t put_link(const struct mm_packet_spec *spec, uint8_t *buf, uint16_t ethertype)
{
	size_t len = ETH_HDR_LEN;

	put_mac(buf, &spec->dst);
	put_mac(buf + 6, &spec->src);
	if (spec->vlan) {
		put16(buf + 12, ETHERTYPE_VLAN);
		put16(buf + 14, spec->vlan & 0x0fff);
		len += VLAN_TAG_LEN;
	}
	put16(buf + len - 2, ethertype);
	return len;
}

static void put_ipv4(const struct mm_packet_spec *spec, uint8_t *ip, size_t ip_len)
{
	ip[0] = 0x45; /* version 4, 5 words of header */
	ip[1] = 0;
	put16(ip + 2, (uint16_t)ip_len);
	put16(ip + 4, 0);
	put16(ip + 6, 0x4000); /* don't fragment, as path-MTU discovery sets it */
	ip[8] = spec->ttl ? spec->ttl : DEFAULT_TTL;
	ip[9] = spec->proto;
	put16(ip + 10, 0);
	memcpy(ip + 12, spec->src.b + 12, 4);
	memcpy(ip + 16, spec->dst.b + 12, 4);
	put16(ip + 10, fold_checksum(sum_words(ip, IPV4_HDR_LEN, 0)));
}

static void put_ipv6(const struct mm_packet_spec *spec, uint8_t *ip, size_t l4_len)
{
	put32(ip, 6u << 28);
	put16(ip + 4, (uint16_t)l4_len);
	ip[6] = spec->proto;
	ip[7] = spec->ttl ? spec->ttl : DEFAULT_TTL;
	memcpy(ip + 8, spec->src.b, 16);
	memcpy(ip + 24, spec->dst.b, 16);
}

/* The pseudo-header sum of RFC 793 (IPv4) or RFC 8200 §8.1 (IPv6). */
static uint32_t pseudo_header_sum(const struct mm_packet_spec *spec, bool v4, size_t l4_len)
{
	uint32_t acc = spec->proto + (uint32_t)(l4_len & 0xffff) + (uint32_t)(l4_len >> 16);

	if (v4)
		return sum_words(spec->src.b + 12, 4, sum_words(spec->dst.b + 12, 4, acc));
	return sum_words(spec->src.b, 16, sum_words(spec->dst.b, 16, acc));
}

/*
 * The transport writers below fill the header at l4, whose payload is
 * already zeroed. Checksums cover only the header and pseudo-header: zero
 * payload bytes add nothing to a ones'-complement sum.
 */
static void put_tcp(const struct mm_packet_spec *spec, uint8_t *l4, uint32_t pseudo)
{
	put16(l4, spec->sport);
	put16(l4 + 2, spec->dport);
	put32(l4 + 4, spec->tcp_seq);
	put32(l4 + 8, spec->tcp_ack);
	l4[12] = (TCP_HDR_LEN / 4) << 4;
	l4[13] = spec->tcp_flags;
	put16(l4 + 14, TCP_WINDOW);
	put16(l4 + 16, 0);
	put16(l4 + 18, 0);
	put16(l4 + 16, fold_checksum(sum_words(l4, TCP_HDR_LEN, pseudo)));
}

static void put_udp(const struct mm_packet_spec *spec, uint8_t *l4, size_t l4_len, uint32_t pseudo)
{
	uint16_t sum;

	put16(l4, spec->sport);
	put16(l4 + 2, spec->dport);
	put16(l4 + 4, (uint16_t)l4_len);
	put16(l4 + 6, 0);
	sum = fold_checksum(sum_words(l4, UDP_HDR_LEN, pseudo));
	put16(l4 + 6, sum ? sum : 0xffff); /* RFC 768: a computed zero is sent as all ones */
}

/* pseudo is 0 for ICMP over IPv4, which has no pseudo-header (ICMPv6 does, RFC 4443 §2.3). */
static void put_icmp(const struct mm_packet_spec *spec, uint8_t *l4, uint32_t pseudo)
{
	l4[0] = spec->icmp_type;
	l4[1] = spec->icmp_code;
	put16(l4 + 2, 0);
	put16(l4 + 4, spec->sport);
	put16(l4 + 6, spec->dport);
	put16(l4 + 2, fold_checksum(sum_words(l4, ICMP_HDR_LEN, pseudo)));
}

/* SCTP's CRC covers the zero payload too, so it runs over the whole packet. */
static void put_sctp(const struct mm_packet_spec *spec, uint8_t *l4, size_t l4_len)
{
	uint32_t crc;

	put16(l4, spec->sport);
	put16(l4 + 2, spec->dport);
	put32(l4 + 4, (uint32_t)spec->sport << 16 | spec->dport); /* verification tag */
	put32(l4 + 8, 0);
	if (l4_len - SCTP_HDR_LEN >= 4) {
		l4[SCTP_HDR_LEN] = SCTP_PAD_CHUNK;
		put16(l4 + SCTP_HDR_LEN + 2, (uint16_t)(l4_len - SCTP_HDR_LEN));
	}
	crc = crc32c(l4, l4_len);
	/* RFC 9260 appendix A: the CRC goes on the wire least significant byte first. */
	l4[8] = (uint8_t)crc;
	l4[9] = (uint8_t)(crc >> 8);
	l4[10] = (uint8_t)(crc >> 16);
	l4[11] = (uint8_t)(crc >> 24);
}

static void put_l4(const struct mm_packet_spec *spec, bool v4, uint8_t *l4, size_t l4_len)
{
	switch (spec->proto) {
	case PROTO_TCP: put_tcp(spec, l4, pseudo_header_sum(spec, v4, l4_len)); break;
	case PROTO_UDP: put_udp(spec, l4, l4_len, pseudo_header_sum(spec, v4, l4_len)); break;
	case PROTO_ICMP: put_icmp(spec, l4, 0); break;
	case PROTO_ICMPV6: put_icmp(spec, l4, pseudo_header_sum(spec, v4, l4_len)); break;
	case PROTO_SCTP: put_sctp(spec, l4, l4_len); break;
	}
}

size_t mm_packet_build(const struct mm_packet_spec *spec, uint8_t *buf, size_t cap)
{
	bool v4 = mm_addr_is_v4(&spec->src);
	size_t link_len = ETH_HDR_LEN + (spec->vlan ? VLAN_TAG_LEN : 0);
	size_t ip_hdr_len = v4 ? IPV4_HDR_LEN : IPV6_HDR_LEN;
	size_t l4_len = l4_header_len(spec->proto) + spec->payload_len;
	size_t ip_len = ip_hdr_len + l4_len;
	size_t frame_len = link_len + ip_len;
	uint8_t *ip = buf + link_len;

	if (v4 != mm_addr_is_v4(&spec->dst))
		return 0;
	/* IPv4 total length and IPv6 payload length are both 16-bit fields. */
	if ((v4 ? ip_len : l4_len) > IP_MAX_LEN || frame_len > cap)
		return 0;
	put_link(spec, buf, v4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
	if (v4)
		put_ipv4(spec, ip, ip_len);
	else
		put_ipv6(spec, ip, l4_len);
	memset(ip + ip_hdr_len, 0, l4_len);
	if (spec->payload && spec->payload_len)
		memcpy(ip + ip_len - spec->payload_len, spec->payload, spec->payload_len);
	put_l4(spec, v4, ip + ip_hdr_len, l4_len);
	return frame_len;
}
