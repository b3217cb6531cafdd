/*
 * Internals of the collect job shared by its two files: collect_net.c owns
 * the sockets of one worker (UDP batches, IPFIX/TCP framing, kernel drop
 * counts) and hands each export message to the job in collect_job.c, the
 * same way the file and pcap replays do.
 */
#ifndef MAMORI_PIPELINE_COLLECT_INT_H
#define MAMORI_PIPELINE_COLLECT_INT_H

#include "mamori/pipeline.h"

#include <stddef.h>
#include <stdint.h>

/* The largest export message: the 16-bit length of every header. */
#define COLLECT_MSG_MAX 65535

/* Receives one export message; msg is borrowed for the call. */
typedef void (*collect_msg_fn)(void *ctx, const struct mm_addr *exporter, uint16_t port,
			       const uint8_t *msg, size_t len);

/* Counters of one worker's sockets. Messages refused here never reach the decoder. */
struct collect_net_stats {
	uint64_t datagrams;        /* UDP datagrams received, truncated ones included */
	uint64_t tcp_messages;     /* IPFIX messages framed from TCP streams */
	uint64_t bytes;            /* of both */
	uint64_t truncated;        /* datagrams longer than COLLECT_MSG_MAX: refused */
	uint64_t tcp_bad_framing;  /* streams closed at a header that was not IPFIX: refused */
	uint64_t tcp_partial;      /* streams closed inside a message: refused */
	uint64_t kernel_drops;     /* SO_RXQ_OVFL: datagrams the kernel dropped, buffer full */
	uint64_t tcp_accepted;
	uint64_t tcp_refused;      /* connections over the per-worker cap, closed at once */
	uint64_t rcvbuf_bytes;     /* receive buffer the kernel granted a UDP socket */
};

struct collect_net;

/*
 * Opens one socket per listener with SO_REUSEPORT, so every worker can open
 * the same set and the kernel spreads exporters (UDP 4-tuples, TCP
 * connections) over the workers, one exporter always to the same one.
 * wake_fd, when readable, makes collect_net_wait return. 0, or MM_EIO
 * naming the address that could not be bound, or MM_ENOMEM.
 */
int collect_net_open(struct collect_net **out, const struct mm_collect_listener *l, size_t n,
		     int wake_fd);

/*
 * Waits up to timeout_ms for traffic and hands every message that arrived
 * to fn. Work per call is bounded (a few batches per socket), so callers
 * check their stop flag often. 0, or MM_EIO if waiting itself failed.
 */
int collect_net_wait(struct collect_net *net, int timeout_ms, collect_msg_fn fn, void *ctx);

/* Safe to call from another thread while the owner waits. */
void collect_net_get_stats(const struct collect_net *net, struct collect_net_stats *out);

void collect_net_free(struct collect_net *net);

#endif
