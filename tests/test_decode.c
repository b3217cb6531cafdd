/*
 * meter/decode.c: every link type, VLAN/MPLS/PPPoE/PBB/VN-Tag, IPv4
 * options, IPv6 extension chains, fragments, every tunnel and every
 * anomaly on crafted frames; the fast path against the general one on
 * thousands of random synthetic frames; then every packet of the shared
 * Zeek and nDPI captures, which must decode without any anomaly but "not IP".
 */
#include "mamori/capture.h"
#include "mamori/status.h"
#include "mamori/synth.h"
#include "meter/decode.h"
#include "test_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a small frame builder: each helper writes one header, commented ---- */

struct frame {
	uint8_t b[2048];
	uint32_t len;
};

static void put(struct frame *f, const void *bytes, size_t n)
{
	cr_assert_leq(f->len + n, sizeof(f->b));
	if (n == 0)
		return; /* memcpy from NULL is undefined even for 0 bytes */
	memcpy(f->b + f->len, bytes, n);
	f->len += (uint32_t)n;
}

static void put8(struct frame *f, uint8_t v)
{
	put(f, &v, 1);
}

static void put16(struct frame *f, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	put(f, b, 2);
}

static void put32(struct frame *f, uint32_t v)
{
	put16(f, (uint16_t)(v >> 16));
	put16(f, (uint16_t)v);
}

static void patch16(struct frame *f, uint32_t at, uint16_t v)
{
	f->b[at] = (uint8_t)(v >> 8);
	f->b[at + 1] = (uint8_t)v;
}

/* Ethernet II: dst 02:00:00:00:00:02, src 02:00:00:00:00:01, then the type. */
static void put_eth(struct frame *f, uint16_t type)
{
	static const uint8_t macs[12] = { 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1 };
	put(f, macs, sizeof(macs));
	put16(f, type);
}

/*
 * IPv4 header 192.0.2.<src_host> -> 198.51.100.2, TTL 64, checksum 0 (not
 * checked), ihl_words 32-bit words, frag_field = flags|offset/8. Returns
 * its offset; fix_ipv4_len() sets the total length once the payload is in.
 */
static uint32_t put_ipv4_full(struct frame *f, uint8_t proto, unsigned ihl_words, uint16_t id,
			      uint16_t frag_field, uint8_t src_host)
{
	uint32_t at = f->len;
	put8(f, (uint8_t)(0x40 | ihl_words)); /* version 4, IHL */
	put8(f, 0);                           /* DSCP/ECN */
	put16(f, 0);                          /* total length: patched */
	put16(f, id);                         /* identification */
	put16(f, frag_field);                 /* flags, fragment offset */
	put8(f, 64);                          /* TTL */
	put8(f, proto);                       /* protocol */
	put16(f, 0);                          /* header checksum */
	put32(f, 0xc0000200u | src_host);     /* 192.0.2.x */
	put32(f, 0xc6336402u);                /* 198.51.100.2 */
	for (unsigned i = 5; i < ihl_words; i++)
		put32(f, 0x01010101u); /* options: four NOPs per word */
	return at;
}

static uint32_t put_ipv4(struct frame *f, uint8_t proto)
{
	return put_ipv4_full(f, proto, 5, 0x1234, 0x4000 /* DF */, 1);
}

static void fix_ipv4_len(struct frame *f, uint32_t at)
{
	patch16(f, at + 2, (uint16_t)(f->len - at));
}

/* IPv6 header 2001:db8::1 -> 2001:db8::2, hop limit 64; fix_ipv6_len() sets the payload length. */
static uint32_t put_ipv6(struct frame *f, uint8_t next)
{
	static const uint8_t addrs[32] = {
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* 2001:db8::1 */
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, /* 2001:db8::2 */
	};
	uint32_t at = f->len;
	put32(f, 0x60000000u); /* version 6, class 0, flow label 0 */
	put16(f, 0);           /* payload length: patched */
	put8(f, next);         /* next header */
	put8(f, 64);           /* hop limit */
	put(f, addrs, sizeof(addrs));
	return at;
}

static void fix_ipv6_len(struct frame *f, uint32_t at)
{
	patch16(f, at + 4, (uint16_t)(f->len - at - 40));
}

/* An 8-byte IPv6 extension header (options, routing…) naming next. */
static void put_ipv6_ext8(struct frame *f, uint8_t next)
{
	put8(f, next);
	put8(f, 0);            /* length: (0 + 1) * 8 bytes */
	put16(f, 0x0104);      /* PadN option, 4 bytes of padding follow */
	put32(f, 0);
}

/* TCP header, data offset 5, flags as given, window 65535. */
static void put_tcp(struct frame *f, uint16_t sport, uint16_t dport, uint8_t flags)
{
	put16(f, sport);
	put16(f, dport);
	put32(f, 1000);  /* sequence */
	put32(f, 0);     /* acknowledgement */
	put8(f, 0x50);   /* data offset 5 words */
	put8(f, flags);
	put16(f, 65535); /* window */
	put16(f, 0);     /* checksum */
	put16(f, 0);     /* urgent pointer */
}

/* UDP header; fix_udp_len() sets the length once the payload is in. */
static uint32_t put_udp(struct frame *f, uint16_t sport, uint16_t dport)
{
	uint32_t at = f->len;
	put16(f, sport);
	put16(f, dport);
	put16(f, 0); /* length: patched */
	put16(f, 0); /* checksum: none */
	return at;
}

static void fix_udp_len(struct frame *f, uint32_t at)
{
	patch16(f, at + 4, (uint16_t)(f->len - at));
}

/* A complete inner IPv4/UDP 10.0.0.1:1111 -> 10.0.0.2:2222 with 4 payload bytes. */
static void put_inner_ipv4_udp(struct frame *f)
{
	uint32_t ip = f->len;
	put8(f, 0x45);           /* version 4, IHL 5 */
	put8(f, 0);
	put16(f, 0);             /* total length: patched */
	put32(f, 0);             /* id 0, no flags */
	put8(f, 64);
	put8(f, 17);             /* UDP */
	put16(f, 0);
	put32(f, 0x0a000001u);   /* 10.0.0.1 */
	put32(f, 0x0a000002u);   /* 10.0.0.2 */
	uint32_t udp = put_udp(f, 1111, 2222);
	put32(f, 0xdeadbeef);    /* payload */
	fix_udp_len(f, udp);
	fix_ipv4_len(f, ip);
}

/* A complete inner IPv6/TCP SYN 2001:db8::1:80 -> ... */
static void put_inner_ipv6_tcp(struct frame *f)
{
	uint32_t ip = put_ipv6(f, 6);
	put_tcp(f, 40000, 443, 0x02);
	fix_ipv6_len(f, ip);
}

/* Outer Ethernet + IPv4 + UDP to dport; returns the offsets to fix after the payload. */
struct udp_outer {
	uint32_t ip, udp;
};

static struct udp_outer put_eth_ipv4_udp(struct frame *f, uint16_t sport, uint16_t dport)
{
	struct udp_outer o;
	put_eth(f, 0x0800);
	o.ip = put_ipv4(f, 17);
	o.udp = put_udp(f, sport, dport);
	return o;
}

static void fix_udp_outer(struct frame *f, struct udp_outer o)
{
	fix_udp_len(f, o.udp);
	fix_ipv4_len(f, o.ip);
}

static enum mm_anomaly decode(uint16_t linktype, const struct frame *f, struct mm_pkt *pkt)
{
	memset(pkt, 0xa5, sizeof(*pkt)); /* garbage: the decoder must set what it reports */
	return mm_decode_packet(linktype, f->b, f->len, MM_ENCAP_MAX, pkt);
}

static void check_v4(const struct mm_pkt_ip *ip, uint32_t src, uint32_t dst)
{
	cr_assert_eq(ip->version, 4);
	cr_assert(mm_addr_is_v4(&ip->src));
	cr_assert_eq(mm_addr_v4_u32(&ip->src), src);
	cr_assert_eq(mm_addr_v4_u32(&ip->dst), dst);
}

static void check_inner_udp(const struct mm_pkt_ip *ip)
{
	check_v4(ip, 0x0a000001u, 0x0a000002u);
	cr_assert_eq(ip->proto, 17);
	cr_assert_eq(ip->has_ports, 1);
	cr_assert_eq(ip->sport, 1111);
	cr_assert_eq(ip->dport, 2222);
	cr_assert_eq(ip->ip_len, 32);
	cr_assert_eq(ip->tunnel, MM_TUNNEL_NONE);
}

static void check_inner_tcp6(const struct mm_pkt_ip *ip)
{
	cr_assert_eq(ip->version, 6);
	cr_assert_eq(ip->proto, 6);
	cr_assert_eq(ip->sport, 40000);
	cr_assert_eq(ip->dport, 443);
	cr_assert_eq(ip->tcp_flags, 0x02);
	cr_assert_eq(ip->ip_len, 60);
	cr_assert_eq(ip->header_len, 40);
}

/* ---- the common path ---- */

Test(decode, ethernet_ipv4_tcp_sets_every_field)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	uint32_t ip = put_ipv4(&f, 6);
	put_tcp(&f, 51000, 80, 0x12 /* SYN ACK */);
	fix_ipv4_len(&f, ip);
	put32(&f, 0); /* Ethernet padding: not part of the datagram */

	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 1);
	cr_assert_eq(pkt.vlan, 0);
	const struct mm_pkt_ip *l = &pkt.ip[0];
	check_v4(l, 0xc0000201u, 0xc6336402u);
	cr_assert_eq(l->proto, 6);
	cr_assert_eq(l->ip_len, 40);
	cr_assert_eq(l->header_len, 20);
	cr_assert_eq(l->l4_offset, 14 + 20); /* TCP header right behind Ethernet and IPv4 */
	cr_assert_eq(l->frag, MM_FRAG_NONE);
	cr_assert_eq(l->frag_offset, 0);
	cr_assert_eq(l->more_frags, 0);
	cr_assert_eq(l->frag_id, 0x1234);
	cr_assert_eq(l->has_ports, 1);
	cr_assert_eq(l->sport, 51000);
	cr_assert_eq(l->dport, 80);
	cr_assert_eq(l->tcp_flags, 0x12);
	cr_assert_eq(l->icmp_type, 0);
	cr_assert_eq(l->icmp_code, 0);
	cr_assert_eq(l->tunnel, MM_TUNNEL_NONE);
}

Test(decode, ipv4_options_are_skipped)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	uint32_t ip = put_ipv4_full(&f, 17, 7, 1, 0, 1); /* IHL 7: 8 bytes of NOP options */
	uint32_t udp = put_udp(&f, 5353, 53);
	fix_udp_len(&f, udp);
	fix_ipv4_len(&f, ip);

	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].header_len, 28);
	cr_assert_eq(pkt.ip[0].l4_offset, 14 + 28); /* past the options */
	cr_assert_eq(pkt.ip[0].ip_len, 36);
	cr_assert_eq(pkt.ip[0].sport, 5353);
	cr_assert_eq(pkt.ip[0].dport, 53);
}

Test(decode, snaplen_cut_keeps_header_length_and_tso_zero_length_uses_capture)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	uint32_t ip = put_ipv4(&f, 6);
	put_tcp(&f, 1, 2, 0x10);
	patch16(&f, ip + 2, 1500); /* header says 1500 bytes, 40 were captured */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 1);
	cr_assert_eq(pkt.ip[0].ip_len, 1500);

	patch16(&f, ip + 2, 0); /* segmentation offload leaves 0 in the capture */
	put32(&f, 0x11223344);  /* 4 bytes of TCP payload */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].ip_len, 44);
}

Test(decode, icmp_and_icmpv6_type_code_without_ports)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	uint32_t ip = put_ipv4(&f, 1);
	put32(&f, 0x08000000); /* echo request (type 8 code 0), checksum */
	put32(&f, 0x00010002); /* identifier 1, sequence 2 */
	fix_ipv4_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].icmp_type, 8);
	cr_assert_eq(pkt.ip[0].icmp_code, 0);
	cr_assert_eq(pkt.ip[0].has_ports, 1);
	cr_assert_eq(pkt.ip[0].sport, 0);
	cr_assert_eq(pkt.ip[0].dport, 0);

	f.len = 0;
	put_eth(&f, 0x86dd);
	ip = put_ipv6(&f, 58);
	put32(&f, 0x87000000); /* neighbour solicitation (135), code 0 */
	put32(&f, 0);          /* reserved */
	fix_ipv6_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].proto, 58);
	cr_assert_eq(pkt.ip[0].icmp_type, 135);
}

Test(decode, sctp_ports)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	uint32_t ip = put_ipv4(&f, 132);
	put16(&f, 2905); /* source port */
	put16(&f, 3868); /* destination port (Diameter) */
	put32(&f, 7);    /* verification tag */
	put32(&f, 0);    /* checksum */
	fix_ipv4_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].sport, 2905);
	cr_assert_eq(pkt.ip[0].dport, 3868);
}

/* ---- IPv6 extension headers ---- */

Test(decode, ipv6_extension_chain_is_followed)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x86dd);
	uint32_t ip = put_ipv6(&f, 0);  /* hop-by-hop first */
	put_ipv6_ext8(&f, 60);          /* hop-by-hop -> destination options */
	put_ipv6_ext8(&f, 43);          /* destination options -> routing */
	put_ipv6_ext8(&f, 51);          /* routing -> AH */
	put8(&f, 135);                  /* AH: next = mobility */
	put8(&f, 1);                    /* AH length (1 + 2) * 4 = 12 bytes */
	put16(&f, 0);
	put32(&f, 0x100);               /* SPI */
	put32(&f, 1);                   /* sequence */
	put_ipv6_ext8(&f, 6);           /* mobility -> TCP */
	put_tcp(&f, 1234, 22, 0x02);
	fix_ipv6_len(&f, ip);

	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 1);
	cr_assert_eq(pkt.ip[0].proto, 6);
	cr_assert_eq(pkt.ip[0].header_len, 40 + 8 * 4 + 12);
	cr_assert_eq(pkt.ip[0].ip_len, 40 + 8 * 4 + 12 + 20);
	cr_assert_eq(pkt.ip[0].dport, 22);
}

Test(decode, ipv6_esp_and_no_next_header_end_the_chain)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x86dd);
	uint32_t ip = put_ipv6(&f, 60);
	put_ipv6_ext8(&f, 50); /* destination options -> ESP */
	put32(&f, 0x1001);     /* SPI */
	put32(&f, 1);          /* sequence */
	fix_ipv6_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].proto, 50);
	cr_assert_eq(pkt.ip[0].header_len, 48);
	cr_assert_eq(pkt.ip[0].has_ports, 0);

	f.len = 0;
	put_eth(&f, 0x86dd);
	put_ipv6(&f, 59); /* No Next Header, payload length 0 */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].proto, 59);
	cr_assert_eq(pkt.ip[0].ip_len, 40);
}

Test(decode, ipv6_jumbogram_length)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x86dd);
	put_ipv6(&f, 0); /* payload length stays 0: jumbogram */
	put8(&f, 17);    /* hop-by-hop -> UDP */
	put8(&f, 0);     /* 8 bytes */
	put8(&f, 0xc2);  /* jumbo payload option */
	put8(&f, 4);
	put32(&f, 100000); /* jumbo payload length */
	put_udp(&f, 9, 9);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].ip_len, 100040);
}

Test(decode, ipv6_extension_anomalies)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x86dd);
	uint32_t ip = put_ipv6(&f, 60);
	for (int i = 0; i < MM_IPV6_EXT_MAX; i++)
		put_ipv6_ext8(&f, 60); /* destination options -> destination options… */
	put_ipv6_ext8(&f, 6);      /* one more than the cap */
	put_tcp(&f, 1, 2, 0x02);
	fix_ipv6_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_IPV6_EXT_CHAIN);
	cr_assert_eq(pkt.n_ip, 0);

	f.len = 0;
	put_eth(&f, 0x86dd);
	ip = put_ipv6(&f, 0);
	put8(&f, 6);  /* hop-by-hop -> TCP */
	put8(&f, 4);  /* claims (4 + 1) * 8 = 40 bytes */
	put16(&f, 0); /* only 4 are there */
	fix_ipv6_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_IPV6_EXT_TRUNCATED);
	cr_assert_eq(pkt.n_ip, 0);
}

/* ---- fragments ---- */

Test(decode, ipv4_fragments_first_and_later)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	uint32_t ip = put_ipv4_full(&f, 17, 5, 0xbeef, 0x2000 /* MF, offset 0 */, 1);
	uint32_t udp = put_udp(&f, 4000, 53);
	fix_udp_len(&f, udp);
	fix_ipv4_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].frag, MM_FRAG_FIRST);
	cr_assert_eq(pkt.ip[0].more_frags, 1);
	cr_assert_eq(pkt.ip[0].frag_id, 0xbeef);
	cr_assert_eq(pkt.ip[0].dport, 53);

	f.len = 0;
	put_eth(&f, 0x0800);
	ip = put_ipv4_full(&f, 17, 5, 0xbeef, 185 /* offset 185 * 8 = 1480, last */, 1);
	put32(&f, 0x00350035); /* looks like ports, but it is the middle of the datagram */
	put32(&f, 0);
	fix_ipv4_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 1);
	cr_assert_eq(pkt.ip[0].frag, MM_FRAG_LATER);
	cr_assert_eq(pkt.ip[0].frag_offset, 1480);
	cr_assert_eq(pkt.ip[0].more_frags, 0);
	cr_assert_eq(pkt.ip[0].has_ports, 0);
	cr_assert_eq(pkt.ip[0].sport, 0);
}

Test(decode, ipv6_fragment_header)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x86dd);
	uint32_t ip = put_ipv6(&f, 44);
	put8(&f, 17);          /* fragment header: next = UDP */
	put8(&f, 0);
	put16(&f, 0x0001);     /* offset 0, M = 1 */
	put32(&f, 0xcafef00d); /* identification (32 bits) */
	put_udp(&f, 7000, 7001);
	fix_ipv6_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].frag, MM_FRAG_FIRST);
	cr_assert_eq(pkt.ip[0].frag_id, 0xcafef00du);
	cr_assert_eq(pkt.ip[0].header_len, 48);
	cr_assert_eq(pkt.ip[0].proto, 17);
	cr_assert_eq(pkt.ip[0].dport, 7001);

	patch16(&f, 14 + 40 + 2, 0x05a8); /* offset 181 * 8 = 1448, M = 0 */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.ip[0].frag, MM_FRAG_LATER);
	cr_assert_eq(pkt.ip[0].frag_offset, 1448);
	cr_assert_eq(pkt.ip[0].has_ports, 0);
}

/* ---- link types ---- */

/* The same IPv4/UDP packet behind each link header. */
static void check_link(uint16_t linktype, const uint8_t *hdr, size_t hdr_len)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put(&f, hdr, hdr_len);
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(linktype, &f, &pkt), MM_ANOM_NONE, "linktype %u", linktype);
	cr_assert_eq(pkt.n_ip, 1, "linktype %u", linktype);
	check_inner_udp(&pkt.ip[0]);
}

/* And an IPv6 one. */
static void check_link6(uint16_t linktype, const uint8_t *hdr, size_t hdr_len)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put(&f, hdr, hdr_len);
	put_inner_ipv6_tcp(&f);
	cr_assert_eq(decode(linktype, &f, &pkt), MM_ANOM_NONE, "linktype %u", linktype);
	cr_assert_eq(pkt.n_ip, 1);
	check_inner_tcp6(&pkt.ip[0]);
}

Test(decode, raw_ip_link_types)
{
	static const uint16_t raw[] = { MM_LINK_RAW, MM_LINK_IPV4, MM_LINK_IPV6, 12, 14 };
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		check_link(raw[i], NULL, 0);
		check_link6(raw[i], NULL, 0);
	}
}

Test(decode, bsd_null_and_loop)
{
	static const uint8_t inet_le[] = { 2, 0, 0, 0 };      /* AF_INET, little-endian host */
	static const uint8_t inet_be[] = { 0, 0, 0, 2 };      /* AF_INET, big-endian host */
	static const uint8_t inet6_24[] = { 24, 0, 0, 0 };    /* AF_INET6 (NetBSD/OpenBSD) */
	static const uint8_t inet6_28[] = { 0, 0, 0, 28 };    /* AF_INET6 (FreeBSD), big-endian */
	static const uint8_t inet6_30[] = { 30, 0, 0, 0 };    /* AF_INET6 (macOS) */
	static const uint8_t loop_inet[] = { 0, 0, 0, 2 };    /* LOOP: network order */
	static const uint8_t unix_af[] = { 1, 0, 0, 0 };      /* AF_UNIX: not IP */

	check_link(MM_LINK_NULL, inet_le, 4);
	check_link(MM_LINK_NULL, inet_be, 4);
	check_link6(MM_LINK_NULL, inet6_24, 4);
	check_link6(MM_LINK_NULL, inet6_28, 4);
	check_link6(MM_LINK_NULL, inet6_30, 4);
	check_link(MM_LINK_LOOP, loop_inet, 4);

	struct frame f = { .len = 0 };
	struct mm_pkt pkt;
	put(&f, unix_af, 4);
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(MM_LINK_NULL, &f, &pkt), MM_ANOM_NOT_IP);
	cr_assert_eq(pkt.n_ip, 0);
}

Test(decode, ppp_variants)
{
	static const uint8_t ppp_hdlc[] = { 0xff, 0x03, 0x00, 0x21 }; /* address, control, IPv4 */
	static const uint8_t ppp_bare[] = { 0x00, 0x21 };             /* protocol IPv4 only */
	static const uint8_t ppp_pfc[] = { 0x21 };                    /* compressed protocol field */
	static const uint8_t ppp_v6[] = { 0xff, 0x03, 0x00, 0x57 };   /* IPv6 */
	static const uint8_t cisco[] = { 0x0f, 0x00, 0x08, 0x00 };    /* Cisco HDLC unicast, IPv4 */
	static const uint8_t pppoe[] = { 0x11, 0x00, 0x12, 0x34,      /* ver/type, code, session */
					 0x00, 0x20, 0x00, 0x21 };    /* length, PPP IPv4 */

	check_link(MM_LINK_PPP, ppp_hdlc, sizeof(ppp_hdlc));
	check_link(MM_LINK_PPP, ppp_bare, sizeof(ppp_bare));
	check_link(MM_LINK_PPP, ppp_pfc, sizeof(ppp_pfc));
	check_link6(MM_LINK_PPP, ppp_v6, sizeof(ppp_v6));
	check_link(MM_LINK_PPP_HDLC, ppp_hdlc, sizeof(ppp_hdlc));
	check_link(MM_LINK_PPP_HDLC, cisco, sizeof(cisco));
	check_link(MM_LINK_PPP_ETHER, pppoe, sizeof(pppoe));

	static const uint8_t lcp[] = { 0xff, 0x03, 0xc0, 0x21, 1, 1, 0, 4 }; /* LCP configure request */
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;
	put(&f, lcp, sizeof(lcp));
	cr_assert_eq(decode(MM_LINK_PPP, &f, &pkt), MM_ANOM_NOT_IP);
}

Test(decode, linux_cooked_v1_and_v2)
{
	static const uint8_t sll[16] = {
		0x00, 0x00,                         /* packet type: to us */
		0x00, 0x01,                         /* ARPHRD_ETHER */
		0x00, 0x06,                         /* address length */
		2, 0, 0, 0, 0, 1, 0, 0,             /* address, padded to 8 */
		0x08, 0x00,                         /* protocol IPv4 */
	};
	static const uint8_t sll2[20] = {
		0x86, 0xdd,                         /* protocol IPv6 */
		0x00, 0x00,                         /* reserved */
		0x00, 0x00, 0x00, 0x02,             /* interface index */
		0x00, 0x01,                         /* ARPHRD_ETHER */
		0x04,                               /* packet type: outgoing */
		0x06,                               /* address length */
		2, 0, 0, 0, 0, 1, 0, 0,             /* address */
	};
	check_link(MM_LINK_LINUX_SLL, sll, sizeof(sll));
	check_link6(MM_LINK_LINUX_SLL2, sll2, sizeof(sll2));
}

/* 802.11 data header: frame control, duration, three addresses, sequence control. */
static void put_80211(struct frame *f, uint8_t fc0, uint8_t fc1)
{
	static const uint8_t addrs[18] = { 2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 3 };
	put8(f, fc0);
	put8(f, fc1);
	put16(f, 0); /* duration */
	put(f, addrs, sizeof(addrs));
	put16(f, 0); /* sequence control */
}

static void put_llc_snap(struct frame *f, uint16_t type)
{
	static const uint8_t snap[6] = { 0xaa, 0xaa, 0x03, 0, 0, 0 }; /* DSAP, SSAP, UI, OUI 0 */
	put(f, snap, sizeof(snap));
	put16(f, type);
}

Test(decode, ieee80211_data_frames)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_80211(&f, 0x08, 0x01); /* data, ToDS */
	put_llc_snap(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(MM_LINK_IEEE802_11, &f, &pkt), MM_ANOM_NONE);
	check_inner_udp(&pkt.ip[0]);

	f.len = 0;
	put_80211(&f, 0x88, 0x03);       /* QoS data, ToDS + FromDS */
	put(&f, "\x02\x00\x00\x00\x00\x04", 6); /* 4th address */
	put16(&f, 0x0000);               /* QoS control, not an A-MSDU */
	put_llc_snap(&f, 0x86dd);
	put_inner_ipv6_tcp(&f);
	cr_assert_eq(decode(MM_LINK_IEEE802_11, &f, &pkt), MM_ANOM_NONE);
	check_inner_tcp6(&pkt.ip[0]);

	f.len = 0;
	put_80211(&f, 0x08, 0x41); /* data, protected */
	put32(&f, 0x01020304);     /* CCMP header, encrypted body */
	put32(&f, 0x05060708);
	cr_assert_eq(decode(MM_LINK_IEEE802_11, &f, &pkt), MM_ANOM_NOT_IP);

	f.len = 0;
	put_80211(&f, 0x80, 0x00); /* beacon: management */
	put32(&f, 0);
	cr_assert_eq(decode(MM_LINK_IEEE802_11, &f, &pkt), MM_ANOM_NOT_IP);

	f.len = 0;
	put_80211(&f, 0x48, 0x01); /* null data: no body */
	cr_assert_eq(decode(MM_LINK_IEEE802_11, &f, &pkt), MM_ANOM_NOT_IP);
}

Test(decode, radiotap_with_fcs_flag)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put8(&f, 0);            /* radiotap version */
	put8(&f, 0);            /* pad */
	put(&f, "\x18\x00", 2); /* it_len 24, little-endian */
	put(&f, "\x03\x00\x00\x00", 4); /* present: TSFT, Flags */
	put32(&f, 0);           /* TSFT (8 bytes, already 8-aligned) */
	put32(&f, 0);
	put8(&f, 0x10);         /* Flags: frame ends in an FCS */
	put8(&f, 0);            /* padding up to it_len */
	put16(&f, 0);
	put32(&f, 0);
	put_80211(&f, 0x08, 0x02); /* data, FromDS */
	put_llc_snap(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	put32(&f, 0x12345678);  /* FCS */
	cr_assert_eq(decode(MM_LINK_IEEE802_11_RADIOTAP, &f, &pkt), MM_ANOM_NONE);
	check_inner_udp(&pkt.ip[0]);

	f.b[2] = 0xff; /* it_len 255: beyond the frame */
	cr_assert_eq(decode(MM_LINK_IEEE802_11_RADIOTAP, &f, &pkt), MM_ANOM_LINK_TRUNCATED);
}

/* ---- Ethernet-level encapsulations ---- */

Test(decode, vlan_qinq_records_outermost_id)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x88a8);
	put16(&f, 0x0064); /* S-tag: PCP 0, VID 100 */
	put16(&f, 0x8100);
	put16(&f, 0x20c8); /* C-tag: PCP 1, VID 200 */
	put16(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.vlan, 100);
	check_inner_udp(&pkt.ip[0]);

	f.len = 0;
	put_eth(&f, 0x9100);
	put16(&f, 0x0fff); /* old QinQ tag, VID 4095 */
	put16(&f, 0x86dd);
	put_inner_ipv6_tcp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.vlan, 4095);
}

Test(decode, mpls_stacks_and_pseudowire)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x8847);
	put32(&f, 0x00010040); /* label 16, TC 0, S 0, TTL 64 */
	put32(&f, 0x00020140); /* label 32, S 1 */
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	check_inner_udp(&pkt.ip[0]);

	f.len = 0;
	put_eth(&f, 0x8848);
	put32(&f, 0x00010140); /* multicast label, S 1 */
	put_inner_ipv6_tcp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	check_inner_tcp6(&pkt.ip[0]);

	f.len = 0;
	put_eth(&f, 0x8847);
	put32(&f, 0x00010140); /* label, S 1 */
	put32(&f, 0x00000001); /* RFC 4385 control word (first nibble 0), sequence 1 */
	put_eth(&f, 0x8100);   /* the customer's Ethernet frame, VLAN tagged */
	put16(&f, 0x0005);
	put16(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	check_inner_udp(&pkt.ip[0]);
	cr_assert_eq(pkt.vlan, 5, "a pseudowire is still the frame's own link");
}

Test(decode, pppoe_pbb_vntag_llc)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x8864);
	put32(&f, 0x11000001); /* PPPoE ver 1 type 1, code 0 (session data), session 1 */
	put16(&f, 34);         /* length */
	put16(&f, 0x0021);     /* PPP: IPv4 */
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	check_inner_udp(&pkt.ip[0]);

	f.len = 0;
	put_eth(&f, 0x88a8);
	put16(&f, 0x0010);     /* B-tag, VID 16 */
	put16(&f, 0x88e7);
	put32(&f, 0x00012345); /* I-TAG: I-SID 0x12345 */
	put_eth(&f, 0x0800);   /* customer Ethernet header */
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.vlan, 16);
	check_inner_udp(&pkt.ip[0]);

	f.len = 0;
	put_eth(&f, 0x8926);
	put32(&f, 0x80010002); /* VN-Tag: direction, destination/source VIF */
	put16(&f, 0x86dd);
	put_inner_ipv6_tcp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	check_inner_tcp6(&pkt.ip[0]);

	f.len = 0;
	put_eth(&f, 40);       /* 802.3 length field */
	put_llc_snap(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	check_inner_udp(&pkt.ip[0]);
}

Test(decode, non_ip_frames)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0806);   /* ARP */
	put32(&f, 0x00010800); /* Ethernet, IPv4 */
	put32(&f, 0x06040001); /* request */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NOT_IP);
	cr_assert_eq(pkt.n_ip, 0);

	f.len = 0;
	put_eth(&f, 0x88cc); /* LLDP */
	put16(&f, 0x0207);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NOT_IP);

	f.len = 0;
	put_eth(&f, 38);     /* 802.3 length, then STP's LLC */
	put(&f, "\x42\x42\x03\x00\x00", 5);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NOT_IP);

	f.len = 0;
	put_eth(&f, 0x8864);
	put32(&f, 0x11000001);
	put16(&f, 2);
	put16(&f, 0xc021);   /* PPP LCP in a PPPoE session */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NOT_IP);
}

/* ---- tunnels ---- */

Test(decode, ip_in_ip_all_four_combinations)
{
	for (int outer6 = 0; outer6 < 2; outer6++) {
		for (int inner6 = 0; inner6 < 2; inner6++) {
			struct frame f = { .len = 0 };
			struct mm_pkt pkt;
			uint8_t proto = inner6 ? 41 : 4;

			put_eth(&f, outer6 ? 0x86dd : 0x0800);
			uint32_t ip = outer6 ? put_ipv6(&f, proto) : put_ipv4(&f, proto);
			if (inner6)
				put_inner_ipv6_tcp(&f);
			else
				put_inner_ipv4_udp(&f);
			if (outer6)
				fix_ipv6_len(&f, ip);
			else
				fix_ipv4_len(&f, ip);
			cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
			cr_assert_eq(pkt.n_ip, 2);
			cr_assert_eq(pkt.ip[0].version, outer6 ? 6 : 4);
			cr_assert_eq(pkt.ip[0].proto, proto);
			cr_assert_eq(pkt.ip[0].tunnel, MM_TUNNEL_IPIP);
			cr_assert_eq(pkt.ip[0].has_ports, 0);
			if (inner6)
				check_inner_tcp6(&pkt.ip[1]);
			else
				check_inner_udp(&pkt.ip[1]);
		}
	}
}

/* Ethernet + IPv4 + GRE with the given flags/version and protocol; returns the IP offset. */
static uint32_t put_gre(struct frame *f, uint16_t flags, uint16_t proto)
{
	put_eth(f, 0x0800);
	uint32_t ip = put_ipv4(f, 47);
	put16(f, flags);
	put16(f, proto);
	return ip;
}

static void check_two_layers(const struct frame *f, uint8_t tunnel)
{
	struct mm_pkt pkt;

	cr_assert_eq(decode(MM_LINK_ETHERNET, f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 2);
	cr_assert_eq(pkt.ip[0].tunnel, tunnel);
	check_inner_udp(&pkt.ip[1]);
}

Test(decode, gre_versions_and_payloads)
{
	struct frame f = { .len = 0 };

	uint32_t ip = put_gre(&f, 0x0000, 0x0800); /* plain GRE, IPv4 */
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	check_two_layers(&f, MM_TUNNEL_GRE);

	f.len = 0;
	ip = put_gre(&f, 0xb000, 0x0800); /* C, K, S present */
	put32(&f, 0x12340000);            /* checksum, reserved */
	put32(&f, 42);                    /* key */
	put32(&f, 7);                     /* sequence */
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	check_two_layers(&f, MM_TUNNEL_GRE);

	f.len = 0;
	ip = put_gre(&f, 0x0000, 0x6558); /* transparent Ethernet bridging */
	put_eth(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	check_two_layers(&f, MM_TUNNEL_GRE);

	f.len = 0;
	ip = put_gre(&f, 0x3081, 0x880b); /* v1 (PPTP): K, S, A */
	put16(&f, 38);                    /* payload length */
	put16(&f, 0x0001);                /* call id */
	put32(&f, 5);                     /* sequence */
	put32(&f, 4);                     /* acknowledgement */
	put32(&f, 0xff030021);            /* PPP: address, control, IPv4 */
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	check_two_layers(&f, MM_TUNNEL_GRE);

	f.len = 0;
	ip = put_gre(&f, 0x0000, 0x8847); /* MPLS over GRE */
	put32(&f, 0x00010140);            /* label 16, S 1 */
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	check_two_layers(&f, MM_TUNNEL_GRE);
}

Test(decode, erspan_types)
{
	struct frame f = { .len = 0 };

	uint32_t ip = put_gre(&f, 0x1000, 0x88be); /* S set: ERSPAN type II */
	put32(&f, 1);                              /* GRE sequence */
	put32(&f, 0x10010064);                     /* ERSPAN II: version 1, VLAN, COS, session */
	put32(&f, 0);                              /* reserved, index */
	put_eth(&f, 0x0800);                       /* mirrored frame */
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	check_two_layers(&f, MM_TUNNEL_ERSPAN);

	f.len = 0;
	ip = put_gre(&f, 0x0000, 0x88be); /* no S: ERSPAN type I, frame right after GRE */
	put_eth(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	check_two_layers(&f, MM_TUNNEL_ERSPAN);

	f.len = 0;
	ip = put_gre(&f, 0x1000, 0x22eb); /* ERSPAN type III */
	put32(&f, 1);                     /* GRE sequence */
	put32(&f, 0x20000001);            /* version 2, VLAN, session */
	put32(&f, 0x11223344);            /* timestamp */
	put32(&f, 0x00000001);            /* SGT, flags with O (platform subheader) set */
	put32(&f, 0x08000000);            /* platform subheader */
	put32(&f, 0);
	put_eth(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	check_two_layers(&f, MM_TUNNEL_ERSPAN);
}

Test(decode, vxlan_and_geneve)
{
	struct frame f = { .len = 0 };

	struct udp_outer o = put_eth_ipv4_udp(&f, 50000, 4789);
	put32(&f, 0x08000000); /* VXLAN: I flag */
	put32(&f, 0x00006400); /* VNI 100 */
	put_eth(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	fix_udp_outer(&f, o);
	check_two_layers(&f, MM_TUNNEL_VXLAN);

	f.len = 0;
	o = put_eth_ipv4_udp(&f, 4789, 50000); /* the reply direction: VXLAN port as source */
	put32(&f, 0x08000000);
	put32(&f, 0x00006400);
	put_eth(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	fix_udp_outer(&f, o);
	check_two_layers(&f, MM_TUNNEL_VXLAN);

	f.len = 0;
	o = put_eth_ipv4_udp(&f, 50000, 6081);
	put16(&f, 0x0200);     /* Geneve version 0, options 2 words */
	put16(&f, 0x6558);     /* protocol: Ethernet */
	put32(&f, 0x00000100); /* VNI 1 */
	put32(&f, 0x01020301); /* option class 0x0102, type 3, length 1 word */
	put32(&f, 0xaabbccdd); /* option data */
	put_eth(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	fix_udp_outer(&f, o);
	check_two_layers(&f, MM_TUNNEL_GENEVE);

	f.len = 0;
	o = put_eth_ipv4_udp(&f, 50000, 6081);
	put16(&f, 0x0000);     /* no options */
	put16(&f, 0x0800);     /* protocol: IPv4 directly */
	put32(&f, 0x00000100);
	put_inner_ipv4_udp(&f);
	fix_udp_outer(&f, o);
	check_two_layers(&f, MM_TUNNEL_GENEVE);
}

Test(decode, gtpu)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	struct udp_outer o = put_eth_ipv4_udp(&f, 2152, 2152);
	put8(&f, 0x34);        /* version 1, PT 1, E */
	put8(&f, 0xff);        /* G-PDU */
	put16(&f, 44);         /* length */
	put32(&f, 0x00000001); /* TEID */
	put16(&f, 0);          /* sequence */
	put8(&f, 0);           /* N-PDU */
	put8(&f, 0x85);        /* next extension: PDU session container */
	put8(&f, 1);           /* extension length 1 word */
	put16(&f, 0x0001);     /* content */
	put8(&f, 0);           /* no further extension */
	put_inner_ipv4_udp(&f);
	fix_udp_outer(&f, o);
	check_two_layers(&f, MM_TUNNEL_GTPU);

	f.len = 0;
	o = put_eth_ipv4_udp(&f, 40000, 2152);
	put8(&f, 0x32);        /* version 1, PT 1, S */
	put8(&f, 0x01);        /* echo request: signalling, no user packet */
	put16(&f, 4);
	put32(&f, 0);
	put32(&f, 0x00010000); /* sequence 1 */
	fix_udp_outer(&f, o);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 1);
	cr_assert_eq(pkt.ip[0].tunnel, MM_TUNNEL_NONE);
}

Test(decode, teredo_only_when_payload_is_consistent_ipv6)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	struct udp_outer o = put_eth_ipv4_udp(&f, 3544, 61000);
	put16(&f, 0x0000);     /* origin indication */
	put16(&f, 0xfffe);     /* obfuscated port */
	put32(&f, 0x3fffffff); /* obfuscated address */
	put_inner_ipv6_tcp(&f);
	fix_udp_outer(&f, o);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 2);
	cr_assert_eq(pkt.ip[0].tunnel, MM_TUNNEL_TEREDO);
	check_inner_tcp6(&pkt.ip[1]);

	f.len = 0;
	o = put_eth_ipv4_udp(&f, 3544, 61000);
	put_inner_ipv6_tcp(&f);
	put32(&f, 0); /* four bytes more than the IPv6 payload length says */
	fix_udp_outer(&f, o);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 1, "inconsistent length: plain UDP");
	cr_assert_eq(pkt.ip[0].tunnel, MM_TUNNEL_NONE);
}

Test(decode, ayiya)
{
	struct frame f = { .len = 0 };

	struct udp_outer o = put_eth_ipv4_udp(&f, 40000, 5072);
	put8(&f, 0x41);        /* identity length 2^4 = 16, identity type 1 */
	put8(&f, 0x52);        /* signature 5 words = 20 bytes, hash SHA-1 */
	put8(&f, 0x11);        /* auth method 1, opcode 1 (forward) */
	put8(&f, 4);           /* next header: IPv4 */
	put32(&f, 0x5f000000); /* epoch time */
	for (int i = 0; i < 9; i++)
		put32(&f, 0); /* 16 bytes identity + 20 bytes signature */
	put_inner_ipv4_udp(&f);
	fix_udp_outer(&f, o);
	check_two_layers(&f, MM_TUNNEL_AYIYA);
}

/* ---- anomalies ---- */

static enum mm_anomaly decode_bytes(uint16_t linktype, const uint8_t *b, uint32_t len,
				    struct mm_pkt *pkt)
{
	return mm_decode_packet(linktype, b, len, MM_ENCAP_MAX, pkt);
}

Test(decode, link_anomalies)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	cr_assert_eq(decode_bytes(MM_LINK_ETHERNET, f.b, 13, &pkt), MM_ANOM_LINK_TRUNCATED);
	cr_assert_eq(decode_bytes(4242, f.b, f.len, &pkt), MM_ANOM_LINK_UNSUPPORTED);
	cr_assert_eq(pkt.n_ip, 0);

	f.len = 0;
	put_eth(&f, 0x8100);
	put16(&f, 0x0001); /* tag cut after the TCI */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_VLAN_TRUNCATED);

	f.len = 0;
	put_eth(&f, 0x8847);
	put32(&f, 0x00010040); /* label without bottom of stack, then nothing */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_MPLS_TRUNCATED);

	f.len = 0;
	put_eth(&f, 0x8864);
	put32(&f, 0x11000001); /* PPPoE header cut before length and protocol */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_PPPOE_TRUNCATED);
}

Test(decode, ipv4_anomalies)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	uint32_t ip = put_ipv4(&f, 6);
	put_tcp(&f, 1, 2, 0x02);
	fix_ipv4_len(&f, ip);

	cr_assert_eq(decode_bytes(MM_LINK_ETHERNET, f.b, 14 + 19, &pkt), MM_ANOM_IPV4_TRUNCATED);

	f.b[ip] = 0x55; /* version 5 */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_IPV4_BAD_VERSION);
	f.b[ip] = 0x44; /* IHL 4 */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_IPV4_BAD_IHL);
	f.b[ip] = 0x4f; /* IHL 15: 60 bytes, only 40 captured */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_IPV4_BAD_IHL);
	f.b[ip] = 0x45;
	patch16(&f, ip + 2, 19); /* total length below the header length */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_IPV4_BAD_TOTAL_LEN);
	cr_assert_eq(pkt.n_ip, 0);

	f.len = 0;
	put_eth(&f, 0x86dd);
	put_ipv6(&f, 6);
	cr_assert_eq(decode_bytes(MM_LINK_ETHERNET, f.b, 14 + 39, &pkt), MM_ANOM_IPV6_TRUNCATED);
}

Test(decode, l4_anomalies_follow_zeek)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	put_eth(&f, 0x0800);
	uint32_t ip = put_ipv4(&f, 6);
	put_tcp(&f, 1, 2, 0x02);
	fix_ipv4_len(&f, ip);
	/* 19 of 20 TCP bytes captured: Zeek counts the packet in no connection. */
	cr_assert_eq(decode_bytes(MM_LINK_ETHERNET, f.b, f.len - 1, &pkt), MM_ANOM_L4_TRUNCATED);
	cr_assert_eq(pkt.n_ip, 0);

	f.b[ip + 20 + 12] = 0x40; /* data offset 4 words */
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_TCP_BAD_OFFSET);
	cr_assert_eq(pkt.n_ip, 0);

	f.b[ip + 20 + 12] = 0x50;
	patch16(&f, ip + 6, 0x2000); /* now a first fragment (MF) cut inside TCP */
	cr_assert_eq(decode_bytes(MM_LINK_ETHERNET, f.b, 14 + 20 + 16, &pkt), MM_ANOM_L4_TRUNCATED);
	cr_assert_eq(pkt.n_ip, 1, "a first fragment is reported for reassembly");
	cr_assert_eq(pkt.ip[0].frag, MM_FRAG_FIRST);
	cr_assert_eq(pkt.ip[0].has_ports, 1);
	cr_assert_eq(pkt.ip[0].dport, 2);
	cr_assert_eq(decode_bytes(MM_LINK_ETHERNET, f.b, 14 + 20 + 3, &pkt), MM_ANOM_L4_TRUNCATED);
	cr_assert_eq(pkt.n_ip, 1);
	cr_assert_eq(pkt.ip[0].has_ports, 0);

	f.len = 0;
	put_eth(&f, 0x0800);
	ip = put_ipv4(&f, 17);
	put16(&f, 53);         /* UDP cut after the source port */
	fix_ipv4_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_L4_TRUNCATED);
	cr_assert_eq(pkt.n_ip, 0);
}

Test(decode, tunnel_anomalies_keep_outer_layers)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;

	struct udp_outer o = put_eth_ipv4_udp(&f, 50000, 4789);
	put32(&f, 0x08000000); /* VXLAN header cut after 4 bytes */
	fix_udp_outer(&f, o);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_TUNNEL_TRUNCATED);
	cr_assert_eq(pkt.n_ip, 1);
	cr_assert_eq(pkt.ip[0].dport, 4789);

	f.len = 0;
	uint32_t ip = put_gre(&f, 0x0002, 0x0800); /* GRE version 2 */
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_TUNNEL_UNSUPPORTED);
	cr_assert_eq(pkt.n_ip, 1);

	f.len = 0;
	ip = put_gre(&f, 0x4000, 0x0800); /* routing present (RFC 1701) */
	put_inner_ipv4_udp(&f);
	fix_ipv4_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_TUNNEL_UNSUPPORTED);

	f.len = 0;
	ip = put_gre(&f, 0x2000, 0x0800); /* key announced, not there */
	fix_ipv4_len(&f, ip);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_TUNNEL_TRUNCATED);
	cr_assert_eq(pkt.n_ip, 1);
	cr_assert_eq(pkt.ip[0].tunnel, MM_TUNNEL_NONE);

	f.len = 0;
	o = put_eth_ipv4_udp(&f, 50000, 6081);
	put16(&f, 0x4000);     /* Geneve version 1 */
	put16(&f, 0x6558);
	put32(&f, 0);
	fix_udp_outer(&f, o);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_TUNNEL_UNSUPPORTED);
	cr_assert_eq(pkt.n_ip, 1);
}

Test(decode, encapsulation_depth_cap)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;
	uint32_t ips[4];

	put_eth(&f, 0x0800);
	for (int i = 0; i < 4; i++) /* 4in4in4in4 */
		ips[i] = put_ipv4_full(&f, 4, 5, (uint16_t)i, 0, (uint8_t)(10 + i));
	put_inner_ipv4_udp(&f);
	for (int i = 3; i >= 0; i--)
		fix_ipv4_len(&f, ips[i]);

	cr_assert_eq(mm_decode_packet(MM_LINK_ETHERNET, f.b, f.len, 4, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 5);
	check_inner_udp(&pkt.ip[4]);
	cr_assert_eq(mm_addr_v4_u32(&pkt.ip[2].src), 0xc000020cu);

	cr_assert_eq(mm_decode_packet(MM_LINK_ETHERNET, f.b, f.len, 2, &pkt), MM_ANOM_ENCAP_DEPTH);
	cr_assert_eq(pkt.n_ip, 3, "the outer layers within the cap are reported");
	cr_assert_eq(pkt.ip[2].tunnel, MM_TUNNEL_IPIP);

	cr_assert_eq(mm_decode_packet(MM_LINK_ETHERNET, f.b, f.len, 0, &pkt), MM_ANOM_ENCAP_DEPTH);
	cr_assert_eq(pkt.n_ip, 1);

	/* A cap beyond MM_ENCAP_MAX is clamped to the array the caller owns. */
	cr_assert_eq(mm_decode_packet(MM_LINK_ETHERNET, f.b, f.len, 1000, &pkt), MM_ANOM_NONE);
}

Test(decode, anomaly_names)
{
	cr_assert_str_eq(mm_anomaly_name(MM_ANOM_NONE), "none");
	cr_assert_str_eq(mm_anomaly_name(MM_ANOM_IPV4_BAD_IHL), "ipv4-bad-ihl");
	cr_assert_str_eq(mm_anomaly_name(MM_ANOM_FRAG_TABLE_FULL), "frag-table-full");
	cr_assert_str_eq(mm_anomaly_name(MM_ANOM__COUNT), "unknown");
	for (unsigned i = 0; i < MM_ANOM__COUNT; i++) {
		const char *name = mm_anomaly_name(i);
		cr_assert(name && *name && strcmp(name, "unknown") != 0, "anomaly %u has a name", i);
		for (unsigned j = 0; j < i; j++)
			cr_assert_str_neq(name, mm_anomaly_name(j));
	}
}

/* ---- the fast path against the general path ---- */

/* splitmix64: a fixed seed makes every run decode the same frames. */
static uint64_t rnd(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint32_t rnd_below(uint64_t *state, uint32_t n)
{
	return (uint32_t)(rnd(state) % n);
}

/* Opens n bytes at `at` in a frame of *len bytes (cap sizeof buffer), filled with fill. */
static void open_gap(uint8_t *b, uint32_t *len, uint32_t cap, uint32_t at, uint32_t n, uint8_t fill)
{
	cr_assert_leq(*len + n, cap);
	memmove(b + at + n, b + at, *len - at);
	memset(b + at, fill, n);
	*len += n;
}

/* Asserts that two decodes of frame i agree on the anomaly and on every field they report. */
#define SAME_FIELD(f)                                                                        \
	cr_assert_eq(x->f, y->f, "frame %u layer %u: %s %u, general %u", i, l, #f,           \
		     (unsigned)x->f, (unsigned)y->f)

static void expect_same_decode(unsigned i, enum mm_anomaly got_a, const struct mm_pkt *got,
			       enum mm_anomaly want_a, const struct mm_pkt *want)
{
	unsigned l = 0;

	cr_assert_eq(got_a, want_a, "frame %u: anomaly %s, general %s", i, mm_anomaly_name(got_a),
		     mm_anomaly_name(want_a));
	cr_assert_eq(got->vlan, want->vlan, "frame %u: vlan", i);
	cr_assert_eq(got->n_ip, want->n_ip, "frame %u: n_ip", i);
	for (l = 0; l < want->n_ip; l++) {
		const struct mm_pkt_ip *x = &got->ip[l], *y = &want->ip[l];
		cr_assert(mm_addr_eq(&x->src, &y->src), "frame %u layer %u: src", i, l);
		cr_assert(mm_addr_eq(&x->dst, &y->dst), "frame %u layer %u: dst", i, l);
		SAME_FIELD(ip_len);
		SAME_FIELD(frag_id);
		SAME_FIELD(frag_offset);
		SAME_FIELD(sport);
		SAME_FIELD(dport);
		SAME_FIELD(version);
		SAME_FIELD(proto);
		SAME_FIELD(frag);
		SAME_FIELD(more_frags);
		SAME_FIELD(has_ports);
		SAME_FIELD(tcp_flags);
		SAME_FIELD(icmp_type);
		SAME_FIELD(icmp_code);
		SAME_FIELD(tunnel);
		SAME_FIELD(header_len);
		SAME_FIELD(l4_offset);
	}
}

/*
 * What the changes to a built frame say about the fast path, weakest
 * first: a frame left plain is the fast path's to take; one given options,
 * fragments, extension headers, a tunnel port or another protocol must be
 * left to the general path; once a frame is cut or corrupted, only the
 * two results must agree.
 */
enum fast_verdict {
	FAST_MUST,
	FAST_MUST_NOT,
	FAST_EITHER,
};

static enum fast_verdict worse(enum fast_verdict a, enum fast_verdict b)
{
	return a > b ? a : b;
}

static const uint16_t tunnel_ports[] = { 4789, 6081, 2152, 3544, 5072 };

/* A random spec: either family, TCP/UDP/ICMP mostly, any ports, tunnel ports now and then. */
static enum fast_verdict random_spec(uint64_t *rs, struct mm_packet_spec *spec)
{
	/* TCP, UDP, ICMP, ICMPv6, then SCTP, GRE, IPIP, IPv6-in-IP, ESP, hop-by-hop, fragment. */
	static const uint8_t protos[] = { 6, 6, 6, 17, 17, 17, 1, 58, 132, 47, 4, 41, 50, 0, 44 };
	enum fast_verdict v = FAST_MUST;

	memset(spec, 0, sizeof(*spec));
	if (rnd_below(rs, 2)) {
		mm_addr_set_v4_u32(&spec->src, (uint32_t)rnd(rs));
		mm_addr_set_v4_u32(&spec->dst, (uint32_t)rnd(rs));
	} else {
		uint64_t w[4] = { rnd(rs), rnd(rs), rnd(rs), rnd(rs) };
		memcpy(spec->src.b, w, 16);
		memcpy(spec->dst.b, w + 2, 16);
		spec->src.b[0] = spec->dst.b[0] = 0x20; /* 2000::/3, never v4-mapped */
	}
	spec->proto = protos[rnd_below(rs, sizeof(protos))];
	spec->sport = (uint16_t)rnd(rs);
	spec->dport = (uint16_t)rnd(rs);
	if (rnd_below(rs, 4) == 0) {
		if (rnd_below(rs, 2))
			spec->sport = tunnel_ports[rnd_below(rs, 5)];
		else
			spec->dport = tunnel_ports[rnd_below(rs, 5)];
	}
	spec->tcp_flags = (uint8_t)rnd(rs);
	spec->icmp_type = (uint8_t)rnd(rs);
	spec->icmp_code = (uint8_t)rnd(rs);
	spec->vlan = rnd_below(rs, 3) == 0 ? (uint16_t)(1 + rnd_below(rs, 4095)) : 0;
	spec->payload_len = (uint16_t)rnd_below(rs, 300);
	if (spec->proto == 17) {
		for (unsigned k = 0; k < 5; k++)
			if (spec->sport == tunnel_ports[k] || spec->dport == tunnel_ports[k])
				v = FAST_MUST_NOT;
	} else if (spec->proto != 6 && spec->proto != 1 && spec->proto != 58) {
		v = FAST_MUST_NOT;
	}
	return v;
}

static void set16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* A built frame being changed: b[0 .. len), IP header at l3. */
struct mut_frame {
	uint8_t b[2048];
	uint32_t len, l3;
	bool v4;
	uint8_t proto;
};

/*
 * The VLAN priority and DEI bits, IPv4 identification, DF and the reserved
 * bit, IPv6 class and flow label: still plain.
 */
static enum fast_verdict mut_plain_fields(uint64_t *rs, struct mut_frame *f)
{
	uint8_t *ip = f->b + f->l3;

	if (f->l3 == 18)
		f->b[14] = (uint8_t)(f->b[14] | rnd_below(rs, 16) << 4);
	if (f->v4) {
		set16(ip + 4, (uint16_t)rnd(rs));
		set16(ip + 6, (uint16_t)(rnd_below(rs, 4) << 14)); /* reserved, DF; MF and offset 0 */
	} else {
		ip[0] = (uint8_t)(0x60 | rnd_below(rs, 16));
		ip[1] = (uint8_t)rnd(rs);
		set16(ip + 2, (uint16_t)rnd(rs));
	}
	return FAST_MUST;
}

/* Any IPv4 total length or IPv6 payload length up to past the frame; often 0, as offload leaves it. */
static enum fast_verdict mut_ip_length(uint64_t *rs, struct mut_frame *f)
{
	uint16_t len = rnd_below(rs, 4) ? (uint16_t)rnd_below(rs, f->len - f->l3 + 40) : 0;

	set16(f->b + f->l3 + (f->v4 ? 2 : 4), len);
	return FAST_EITHER;
}

/* Any TCP data offset (the byte's high nibble), in or past the bytes present. */
static enum fast_verdict mut_tcp_offset(uint64_t *rs, struct mut_frame *f)
{
	uint32_t at = f->l3 + (f->v4 ? 20 : 40) + 12;

	if (f->proto == 6 && at < f->len)
		f->b[at] = (uint8_t)(rnd_below(rs, 16) << 4);
	return FAST_EITHER;
}

/* One random byte anywhere from the Ethernet type to the end of the transport header. */
static enum fast_verdict mut_flip_byte(uint64_t *rs, struct mut_frame *f)
{
	uint32_t end = f->l3 + 60 < f->len ? f->l3 + 60 : f->len;

	f->b[12 + rnd_below(rs, end - 12)] = (uint8_t)rnd(rs);
	return FAST_EITHER;
}

/* The Ethernet type the fast path does not take: QinQ, MPLS, ARP, or the other IP version's. */
static enum fast_verdict mut_ether_type(uint64_t *rs, struct mut_frame *f)
{
	static const uint16_t types[] = { 0x88a8, 0x8847, 0x0806 };
	uint32_t at = rnd_below(rs, 2) ? 12 : f->l3 - 2; /* outer or (if tagged) inner type */

	if (rnd_below(rs, 2))
		set16(f->b + f->l3 - 2, f->v4 ? 0x86dd : 0x0800);
	else
		set16(f->b + at, types[rnd_below(rs, 3)]);
	return FAST_MUST_NOT;
}

/* Ethernet padding behind the datagram: not payload, still plain. */
static enum fast_verdict mut_padding(uint64_t *rs, struct mut_frame *f)
{
	open_gap(f->b, &f->len, sizeof(f->b), f->len, 1 + rnd_below(rs, 40), (uint8_t)rnd(rs));
	return FAST_MUST;
}

/* IPv4 options (NOPs, IHL 6..15) or an IPv6 hop-by-hop, routing or destination options header. */
static enum fast_verdict mut_options(uint64_t *rs, struct mut_frame *f)
{
	static const uint8_t ext[] = { 0, 43, 60 };
	uint8_t *ip = f->b + f->l3;

	if (f->v4) {
		uint32_t words = 1 + rnd_below(rs, 10);
		uint32_t hlen = (ip[0] & 0x0fu) * 4;
		open_gap(f->b, &f->len, sizeof(f->b), f->l3 + hlen, words * 4, 0x01);
		ip[0] = (uint8_t)(ip[0] + words);
		set16(ip + 2, (uint16_t)(get16(ip + 2) + words * 4));
	} else {
		uint32_t units = 1 + rnd_below(rs, 3);
		open_gap(f->b, &f->len, sizeof(f->b), f->l3 + 40, units * 8, 0);
		ip[40] = ip[6];                   /* next header: what the IPv6 header named */
		ip[41] = (uint8_t)(units - 1);    /* length in 8-byte units after the first */
		set16(ip + 42, (uint16_t)(0x0100 | (units * 8 - 4))); /* PadN over the rest */
		ip[6] = ext[rnd_below(rs, 3)];
		set16(ip + 4, (uint16_t)(get16(ip + 4) + units * 8));
	}
	return FAST_MUST_NOT;
}

/* A first, middle or last fragment (IPv4 MF, offset or both); an IPv6 fragment header, even an atomic one. */
static enum fast_verdict mut_fragment(uint64_t *rs, struct mut_frame *f)
{
	uint8_t *ip = f->b + f->l3;

	if (f->v4) {
		uint16_t offset = (uint16_t)(1 + rnd_below(rs, 0x1fff)); /* in 8-byte units */
		uint16_t dont_fragment = rnd_below(rs, 2) ? 0x4000 : 0;
		static const uint16_t kinds[3] = { 0x2000, 0x2000, 0 }; /* MF: first, middle; last */
		unsigned kind = rnd_below(rs, 3);
		set16(ip + 6, (uint16_t)(dont_fragment | kinds[kind] | (kind ? offset : 0)));
	} else {
		uint32_t id = (uint32_t)rnd(rs);
		open_gap(f->b, &f->len, sizeof(f->b), f->l3 + 40, 8, 0);
		ip[40] = ip[6];                             /* next header */
		set16(ip + 42, (uint16_t)(rnd(rs) & 0xfff9)); /* offset, M flag */
		set16(ip + 44, (uint16_t)(id >> 16));        /* identification */
		set16(ip + 46, (uint16_t)id);
		ip[6] = 44;
		set16(ip + 4, (uint16_t)(get16(ip + 4) + 8));
	}
	return FAST_MUST_NOT;
}

/*
 * Frame i: a random spec built by mm_packet_build, each change above made
 * with probability 1/8 (in this order, so the ones that move headers come
 * last), sometimes cut short. Returns what that says about the fast path;
 * *cap_len gets the bytes to decode.
 */
static enum fast_verdict random_frame(uint64_t *rs, struct mut_frame *f, uint32_t *cap_len)
{
	static enum fast_verdict (*const changes[])(uint64_t *, struct mut_frame *) = {
		mut_plain_fields, mut_ip_length, mut_tcp_offset, mut_flip_byte,
		mut_ether_type,   mut_padding,   mut_options,    mut_fragment,
	};
	struct mm_packet_spec spec;
	enum fast_verdict v = random_spec(rs, &spec);

	f->len = (uint32_t)mm_packet_build(&spec, f->b, sizeof(f->b));
	cr_assert_gt(f->len, 0);
	f->l3 = spec.vlan ? 18 : 14;
	f->v4 = mm_addr_is_v4(&spec.src);
	f->proto = spec.proto;
	for (unsigned k = 0; k < sizeof(changes) / sizeof(changes[0]); k++)
		if (rnd_below(rs, 8) == 0)
			v = worse(v, changes[k](rs, f));
	*cap_len = f->len;
	if (rnd_below(rs, 6) == 0) {
		*cap_len = rnd_below(rs, f->len);
		v = FAST_EITHER;
	}
	return v;
}

Test(decode_fast, agrees_with_the_general_path_on_random_frames)
{
	uint64_t rs = 0x6d616d6f7269u; /* "mamori" */
	unsigned n_taken = 0, n_must = 0, n_must_not = 0;

	for (unsigned i = 0; i < 6000; i++) {
		struct mut_frame f;
		struct mm_pkt general, entry, fast;
		uint32_t cap_len;
		enum fast_verdict v = random_frame(&rs, &f, &cap_len);
		/* Exactly the captured bytes, so that a sanitizer build sees any read past them. */
		uint8_t *frame = malloc(cap_len ? cap_len : 1);

		cr_assert_not_null(frame);
		memcpy(frame, f.b, cap_len);

		/* Different garbage in each: a field one path leaves unset cannot compare equal. */
		memset(&general, 0x5a, sizeof(general));
		memset(&entry, 0xa5, sizeof(entry));
		memset(&fast, 0xc3, sizeof(fast));
		enum mm_anomaly a_general = decode_packet_general(MM_LINK_ETHERNET, frame, cap_len,
								  MM_ENCAP_MAX, &general);
		enum mm_anomaly a_entry = mm_decode_packet(MM_LINK_ETHERNET, frame, cap_len,
							   MM_ENCAP_MAX, &entry);
		bool taken = decode_packet_fast(MM_LINK_ETHERNET, frame, cap_len, &fast);

		free(frame);

		expect_same_decode(i, a_entry, &entry, a_general, &general);
		if (taken) {
			expect_same_decode(i, MM_ANOM_NONE, &fast, a_general, &general);
			n_taken++;
		}
		if (v == FAST_MUST) {
			cr_assert(taken, "frame %u: plain, but left to the general path", i);
			n_must++;
		} else if (v == FAST_MUST_NOT) {
			cr_assert_not(taken, "frame %u: taken by the fast path", i);
			n_must_not++;
		}
	}
	/* Enough of each kind that the comparison means something. */
	cr_assert_gt(n_must, 1000, "%u plain frames", n_must);
	cr_assert_gt(n_must_not, 1000, "%u frames for the general path", n_must_not);
	cr_assert_geq(n_taken, n_must);
}

Test(decode_fast, leaves_tunnel_ports_and_other_links_to_the_general_path)
{
	struct mm_pkt pkt;

	for (unsigned k = 0; k < 5; k++) {
		for (unsigned as_source = 0; as_source < 2; as_source++) {
			struct frame f = { .len = 0 };
			uint16_t port = tunnel_ports[k];
			struct udp_outer o = put_eth_ipv4_udp(&f, as_source ? port : 40000,
							      as_source ? 40000 : port);
			put32(&f, 0); /* 8 zero bytes: a tunnel header of no valid kind */
			put32(&f, 0);
			fix_udp_outer(&f, o);
			cr_assert_not(decode_packet_fast(MM_LINK_ETHERNET, f.b, f.len, &pkt),
				      "port %u", port);
		}
	}
	/* A UDP datagram on ports 40000 -> 53 is the fast path's, but only on Ethernet. */
	struct frame f = { .len = 0 };
	struct udp_outer o = put_eth_ipv4_udp(&f, 40000, 53);
	put32(&f, 0); /* payload */
	fix_udp_outer(&f, o);
	cr_assert(decode_packet_fast(MM_LINK_ETHERNET, f.b, f.len, &pkt));
	cr_assert_not(decode_packet_fast(MM_LINK_LINUX_SLL, f.b, f.len, &pkt));
}

/* VXLAN still decapsulates through mm_decode_packet: the fast path hands port 4789 on. */
Test(decode_fast, vxlan_still_decapsulates)
{
	struct frame f = { .len = 0 };
	struct mm_pkt pkt;
	struct udp_outer o = put_eth_ipv4_udp(&f, 50000, 4789);

	put32(&f, 0x08000000u); /* VXLAN: I flag */
	put32(&f, 0x00000100u); /* VNI 1, reserved */
	put_eth(&f, 0x0800);
	put_inner_ipv4_udp(&f);
	fix_udp_outer(&f, o);
	cr_assert_eq(decode(MM_LINK_ETHERNET, &f, &pkt), MM_ANOM_NONE);
	cr_assert_eq(pkt.n_ip, 2);
	cr_assert_eq(pkt.ip[0].tunnel, MM_TUNNEL_VXLAN);
	check_inner_udp(&pkt.ip[1]);
}

/* ---- every packet of the shared captures ---- */

struct capture_summary {
	unsigned packets, with_ip;
	unsigned tunnels[MM_TUNNEL_AYIYA + 1];
	unsigned max_layers;
};

/* Decodes every packet of a capture read by the meter's own reader (capture.h). */
static void decode_capture(const char *path, struct capture_summary *sum)
{
	struct mm_capture *cap;
	struct mm_raw_packet batch[64];
	struct mm_pkt pkt;
	int n;

	memset(sum, 0, sizeof(*sum));
	cr_assert_eq(mm_capture_open_file(&cap, path), 0, "%s", mm_last_error());
	while ((n = mm_capture_next_batch(cap, batch, 64)) > 0) {
		for (int i = 0; i < n; i++) {
			const struct mm_raw_packet *rp = &batch[i];
			enum mm_anomaly a =
				mm_decode_packet(rp->linktype, rp->data, rp->cap_len, MM_ENCAP_MAX, &pkt);
			sum->packets++;
			cr_assert(a == MM_ANOM_NONE || a == MM_ANOM_NOT_IP,
				  "%s: packet %u (linktype %u): %s", path, sum->packets, rp->linktype,
				  mm_anomaly_name(a));
			if (pkt.n_ip > 0)
				sum->with_ip++;
			if (pkt.n_ip > sum->max_layers)
				sum->max_layers = pkt.n_ip;
			for (unsigned l = 0; l + 1 < pkt.n_ip; l++)
				sum->tunnels[pkt.ip[l].tunnel]++;
		}
	}
	cr_assert_eq(n, 0, "%s: %s", path, mm_last_error());
	mm_capture_free(cap);
}

static bool is_capture_name(const char *name)
{
	size_t n = strlen(name);
	return (n > 5 && strcmp(name + n - 5, ".pcap") == 0) ||
	       (n > 7 && strcmp(name + n - 7, ".pcapng") == 0);
}

/* Decodes every capture in dir (and, with depth, its subfolders); returns how many. */
static unsigned decode_captures_in(const char *dir, int depth)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	unsigned n = 0;

	cr_assert_not_null(d, "open %s", dir);
	while ((e = readdir(d)) != NULL) {
		char *path;
		if (e->d_name[0] == '.')
			continue;
		cr_assert_geq(asprintf(&path, "%s/%s", dir, e->d_name), 0);
		if (depth > 0 && e->d_type == DT_DIR) {
			n += decode_captures_in(path, depth - 1);
		} else if (is_capture_name(e->d_name)) {
			struct capture_summary sum;
			decode_capture(path, &sum);
			cr_assert_gt(sum.with_ip, 0, "%s: no IP packet decoded", path);
			n++;
		}
		free(path);
	}
	closedir(d);
	return n;
}

Test(decode_shared, every_packet_of_the_zeek_and_ndpi_captures)
{
	TU_REQUIRE_SHARED(zeek, "zeek");
	TU_REQUIRE_SHARED(ndpi, "ndpi");

	cr_assert_geq(decode_captures_in(zeek, 1), 11);
	cr_assert_geq(decode_captures_in(ndpi, 0), 12);
	free(zeek);
	free(ndpi);
}

static void check_capture_tunnel(const char *rel, unsigned tunnel, unsigned min_layers)
{
	struct capture_summary sum;
	char *path = tu_shared_path(rel);

	if (!path)
		cr_skip_test("needs ../shared/data/%s (absent in this checkout; CI has it)", rel);
	decode_capture(path, &sum);
	cr_assert_gt(sum.tunnels[tunnel], 0, "%s: no tunnel of kind %u", rel, tunnel);
	cr_assert_geq(sum.max_layers, min_layers, "%s", rel);
	free(path);
}

Test(decode_shared, tunnels_in_the_captures_are_decapsulated)
{
	check_capture_tunnel("zeek/core.tunnels.vxlan/vxlan.pcap", MM_TUNNEL_VXLAN, 2);
	check_capture_tunnel("zeek/core.tunnels.geneve/geneve.pcap", MM_TUNNEL_GENEVE, 2);
	check_capture_tunnel("zeek/core.tunnels.gre-in-gre/gre-within-gre.pcap", MM_TUNNEL_GRE, 3);
	check_capture_tunnel("ndpi/4in4tunnel.pcap", MM_TUNNEL_IPIP, 2);
	check_capture_tunnel("ndpi/6in6tunnel.pcap", MM_TUNNEL_IPIP, 2);
	check_capture_tunnel("ndpi/vxlan.pcap", MM_TUNNEL_VXLAN, 2);
}
