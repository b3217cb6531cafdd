/*
 * Synthetic traffic for the demo, tests and benchmarks: a pcap writer, a
 * builder of well-formed packets, and a deterministic traffic generator.
 * Everything here is made by mamori itself, so no third-party capture is
 * needed to run the demo or the unit tests.
 */
#ifndef MAMORI_SYNTH_H
#define MAMORI_SYNTH_H

#include "mamori/addr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mm_pcap_writer;

/* Creates path as a classic pcap (nanosecond magic) of the given linktype. */
int mm_pcap_writer_open(struct mm_pcap_writer **out, const char *path, uint16_t linktype,
			uint32_t snaplen);
int mm_pcap_writer_write(struct mm_pcap_writer *w, uint64_t ts_ns, const uint8_t *frame,
			 uint32_t cap_len, uint32_t wire_len);
/* Flushes and closes; MM_EIO if any write failed. Frees w. */
int mm_pcap_writer_close(struct mm_pcap_writer *w);
/* Abandons the capture: removes the unfinished file, leaves path as it was. Frees w (NULL: no-op). */
void mm_pcap_writer_discard(struct mm_pcap_writer *w);

/* What one synthetic packet looks like. Unset fields default to zero. */
struct mm_packet_spec {
	struct mm_addr src, dst;      /* the family decides IPv4 or IPv6 */
	uint16_t sport, dport;        /* ICMP/ICMPv6: echo identifier and sequence number */
	uint8_t proto;                /* 6, 17, 1, 58, 132 or any other */
	uint8_t tcp_flags;
	uint32_t tcp_seq, tcp_ack;    /* sequence and acknowledgment numbers */
	uint8_t icmp_type, icmp_code;
	uint16_t vlan;                /* 0: untagged */
	uint16_t payload_len;         /* bytes of payload after the L4 header */
	const uint8_t *payload;       /* payload_len bytes to put there; NULL: zeros */
	uint8_t ttl;                  /* 0 means 64 */
};

/*
 * Writes an Ethernet frame for spec into buf (cap bytes). Returns the frame
 * length, or 0 if it does not fit. IPv4 and L4 checksums are computed.
 */
size_t mm_packet_build(const struct mm_packet_spec *spec, uint8_t *buf, size_t cap);

/* Traffic generator parameters; see docs/synth.md for what each shapes. */
struct mm_synth_config {
	uint64_t seed;
	uint64_t n_flows;          /* conversations */
	uint64_t n_packets;        /* total packets (approximately: flows end whole) */
	uint64_t start_ns;         /* timestamp of the first packet */
	double duration_s;         /* span of the capture */
	unsigned concurrency;      /* conversations in progress at once */
	double ipv6_share;         /* 0..1 */
	uint32_t snaplen;          /* bytes kept per packet (payload is cut) */
};

void mm_synth_config_default(struct mm_synth_config *cfg);

struct mm_synth_summary {
	uint64_t packets, flows, bytes;
	uint64_t tcp_flows, udp_flows, icmp_flows;
};

/* Writes a capture of cfg's traffic to path. Deterministic in cfg. */
int mm_synth_write_pcap(const struct mm_synth_config *cfg, const char *path,
			struct mm_synth_summary *summary);

#endif
