/*
 * Deterministic NetFlow v5, NetFlow v9 and IPFIX export streams for the
 * collect benchmarks: the sender puts them on the wire, decode_bench feeds
 * them to the decoder in memory. Data messages are built once into a ring;
 * only header fields (sequence, export time, uptime) are stamped per send.
 */
#ifndef MAMORI_BENCH_EXPORT_GEN_H
#define MAMORI_BENCH_EXPORT_GEN_H

#include <stdint.h>

/* Room for a full v5 message (24 + 30 * 48); v9 and IPFIX messages stay within 1400 bytes. */
#define GEN_MSG_MAX 1464

/* A template message is sent first and again after this many data messages. */
#define GEN_TEMPLATE_EVERY 4096

struct gen_msg {
	uint8_t data[GEN_MSG_MAX];
	uint16_t len;
	uint16_t n_records;        /* data records in it; 0 for a template message */
	uint64_t packets, bytes;   /* sums of the records' counters */
};

struct gen_stream {
	uint16_t version;          /* 5, 9 or 10 */
	uint32_t domain;           /* v9 source id, IPFIX observation domain, v5 engine id */
	struct gen_msg tmpl;       /* unused for v5 */
	struct gen_msg *ring;
	uint32_t n_ring, next;
	uint32_t since_template;   /* data messages since the last template message */
	uint32_t seq;              /* next header sequence number, in the version's units */
	uint32_t uptime_base_ms;   /* sysUpTime the ring's v5/v9 record times are relative to */
};

/*
 * Builds n_ring distinct data messages of version 5, 9 or 10 from seed,
 * with record times around base_secs (Unix seconds). 0, MM_EINVAL or MM_ENOMEM.
 */
int gen_stream_init(struct gen_stream *g, uint16_t version, uint32_t domain, uint32_t n_ring,
		    uint64_t seed, uint32_t base_secs);

/*
 * The next message to send: the template message first and every
 * GEN_TEMPLATE_EVERY data messages, else the next data message of the ring.
 * Its header is stamped with the stream's sequence number, export_secs and
 * the uptime elapsed_ms after the stream's start. Borrowed until the next call.
 */
const struct gen_msg *gen_stream_next(struct gen_stream *g, uint32_t export_secs, uint32_t elapsed_ms);

void gen_stream_free(struct gen_stream *g);

#endif
