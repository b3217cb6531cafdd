/*
 * IP fragment tracking for the meter (module-internal). A datagram sent in
 * fragments is counted once, as Zeek counts it after reassembly: this table
 * remembers, per (src, dst, proto, id, version, VLAN), which byte ranges
 * have arrived and the first fragment's L4 header values — never payload —
 * and reports the datagram when its ranges close up.
 */
#ifndef MAMORI_METER_FRAG_H
#define MAMORI_METER_FRAG_H

#include "meter/decode.h"

#include <stddef.h>
#include <stdint.h>

struct frag_table;

struct frag_stats {
	uint64_t bad;          /* fragments refused: overlap, overrun, too scattered */
	uint64_t incomplete;   /* datagrams given up at their timeout or at the end */
	uint64_t table_full;   /* datagrams given up to make room */
	uint64_t reassembled;  /* datagrams completed */
	uint64_t pending;      /* datagrams held now */
};

enum frag_verdict {
	FRAG_HELD,     /* accepted; the datagram is still incomplete */
	FRAG_DONE,     /* accepted and it completed the datagram: *whole is set */
	FRAG_REFUSED,  /* counted in stats.bad and ignored */
};

/* 0, MM_EINVAL (cap 0 or above 2^24), MM_ENOMEM or MM_EIO (no random key). */
int frag_table_new(struct frag_table **out, size_t max_datagrams, uint64_t timeout_ns);
void frag_table_free(struct frag_table *t);

/*
 * Offers one fragment (ip->frag != MM_FRAG_NONE) seen at now_ns. On
 * FRAG_DONE, *whole describes the reassembled datagram: addresses and L4
 * fields of the first fragment, ip_len of the whole datagram, frag NONE.
 * At the cap the oldest datagram is given up (stats.table_full). Work: O(1)
 * amortised plus a scan of at most FRAG_RANGES_MAX ranges.
 */
enum frag_verdict frag_table_offer(struct frag_table *t, uint64_t now_ns, uint16_t vlan,
				   const struct mm_pkt_ip *ip, struct mm_pkt_ip *whole);

/* Gives up datagrams whose first fragment is older than the timeout. */
void frag_table_expire(struct frag_table *t, uint64_t now_ns);

/* Gives up every held datagram (end of input). */
void frag_table_clear(struct frag_table *t);

void frag_table_get_stats(const struct frag_table *t, struct frag_stats *out);

size_t frag_table_bytes(const struct frag_table *t);

#endif
