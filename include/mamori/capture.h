/*
 * Packet sources for the meter: capture files (pcap and pcapng, read through
 * mmap by mamori's own bounds-checked reader) and live interfaces (libpcap).
 * A source hands out packets in batches. File packets stay in the mapped
 * file and are never copied; live packets are copied once into a batch
 * buffer, because libpcap hands its ring blocks back to the kernel as soon
 * as a dispatch returns.
 */
#ifndef MAMORI_CAPTURE_H
#define MAMORI_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Link-layer header types: the LINKTYPE_* values of pcap files (tcpdump.org/linktypes). */
enum mm_linktype {
	MM_LINK_NULL = 0,          /* BSD loopback: 4-byte host-order address family */
	MM_LINK_ETHERNET = 1,
	MM_LINK_PPP = 9,
	MM_LINK_PPP_HDLC = 50,
	MM_LINK_PPP_ETHER = 51,    /* PPPoE session frames without Ethernet header */
	MM_LINK_RAW = 101,         /* raw IPv4 or IPv6, version from the first nibble */
	MM_LINK_IEEE802_11 = 105,
	MM_LINK_LOOP = 108,        /* OpenBSD loopback: 4-byte network-order family */
	MM_LINK_LINUX_SLL = 113,
	MM_LINK_IEEE802_11_RADIOTAP = 127,
	MM_LINK_IPV4 = 228,
	MM_LINK_IPV6 = 229,
	MM_LINK_LINUX_SLL2 = 276,
};

/* One captured packet; data is borrowed until the next call on its source. */
struct mm_raw_packet {
	uint64_t ts_ns;
	const uint8_t *data;
	uint32_t cap_len;  /* bytes present in data */
	uint32_t wire_len; /* bytes the packet had on the wire */
	uint16_t linktype; /* enum mm_linktype value (pcapng: of its interface) */
};

/* Reasons a capture file record was refused; counted, never silently skipped. */
enum mm_capture_error {
	MM_CAPERR_TRUNCATED_RECORD, /* file ends inside a record */
	MM_CAPERR_BAD_CAPLEN,       /* caplen > snaplen, > 256 KiB, or > wire length */
	MM_CAPERR_BAD_BLOCK,        /* pcapng block length impossible or unaligned */
	MM_CAPERR_BAD_INTERFACE,    /* pcapng packet names an interface not described */
	MM_CAPERR_UNKNOWN_BLOCK,    /* pcapng block type not understood (skipped) */
	MM_CAPERR__COUNT
};

struct mm_capture_stats {
	uint64_t packets;         /* handed out */
	uint64_t bytes;           /* wire bytes handed out */
	uint64_t filtered;        /* dropped by the BPF filter */
	uint64_t kernel_drops;    /* live: dropped by the kernel or interface */
	uint64_t errors[MM_CAPERR__COUNT];
};

struct mm_capture;

/*
 * Opens a pcap (any of the four magic numbers: µs/ns, either byte order) or
 * pcapng file (several sections and interfaces, either byte order). A file
 * whose header is corrupt is refused with MM_EFORMAT and a message naming
 * the file and what was wrong.
 */
int mm_capture_open_file(struct mm_capture **out, const char *path);

/* Opens a live capture on iface through libpcap (needs privileges). */
int mm_capture_open_live(struct mm_capture **out, const char *iface, int snaplen, bool promisc);

/* Applies a BPF filter (tcpdump syntax), to files as well as live captures. */
int mm_capture_set_filter(struct mm_capture *cap, const char *bpf);

/*
 * Fills up to max packets. Returns the number filled (> 0), 0 at the end of
 * a file (or when a live capture was broken), MM_EAGAIN when a live read
 * timed out (about 50 ms) with nothing captured, or another negative status
 * on a fatal error. A corrupt record ends a file early: it is counted in
 * errors and mm_last_error() says where (file name and byte offset).
 */
int mm_capture_next_batch(struct mm_capture *cap, struct mm_raw_packet *pkts, int max);

/* Makes a blocked live read return; safe from a signal handler. */
void mm_capture_break(struct mm_capture *cap);

void mm_capture_get_stats(const struct mm_capture *cap, struct mm_capture_stats *out);

/* Name the source was opened with (path or interface). */
const char *mm_capture_name(const struct mm_capture *cap);

void mm_capture_free(struct mm_capture *cap);

/* "truncated-record", … (for counters). */
const char *mm_capture_error_name(unsigned err);

#endif
