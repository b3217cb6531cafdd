/*
 * Packets for a short window of a scenario, so `mamori meter` can be fed
 * end to end: each flow record of the window becomes the packets it counts
 * (handshake, data, close; echo requests and replies; datagrams), with its
 * IP bytes, spread over its duration and merged in time order. Flows with
 * more packets than a per-flow cap are thinned to the cap (bytes in
 * proportion), and gaps are kept under a meter's idle timeout, so a meter
 * sees one flow per record with the same endpoints and window.
 */
#include "mamori/scenario.h"

#include "mamori/capture.h"
#include "mamori/status.h"
#include "mamori/synth.h"

#include <stdlib.h>
#include <string.h>

#define NS 1000000000ull
#define MAX_GAP_NS (20 * NS) /* below the 60 s idle timeout of UDP and ICMP in meters */
#define FRAME_CAP (65535u + 64u)

enum { TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08, TCP_ACK = 0x10 };

/* One packet to write: the flow, its direction and its place in that direction. */
struct pkt {
	uint64_t ts;
	uint32_t flow;
	uint32_t seq;    /* direction in the top bit, index below */
};

#define REV_BIT 0x80000000u

struct mm_scenario_pcap {
	struct mm_scenario_pcap_options opt;
	struct mm_pcap_writer *w;
	struct mm_flow *flows;
	size_t n_flows, cap_flows;
	uint64_t n_packets;
	struct mm_scenario_pcap_stats stats;
	uint8_t frame[FRAME_CAP];
};

void mm_scenario_pcap_options_default(struct mm_scenario_pcap_options *opt)
{
	*opt = (struct mm_scenario_pcap_options){
		.max_flow_packets = 64,
		.max_packets = 2000000,
		.snaplen = 96,
	};
}

int mm_scenario_pcap_open(struct mm_scenario_pcap **out, const char *path,
			  const struct mm_scenario_pcap_options *opt)
{
	struct mm_scenario_pcap *pc;
	int rc;

	*out = NULL;
	if (opt->until_ns <= opt->from_ns || opt->max_flow_packets < 2 || opt->snaplen < 80 ||
	    opt->snaplen > 262144)
		return mm_fail(MM_EINVAL, "scenario pcap: window, packet cap or snaplen out of range");
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return mm_fail(MM_ENOMEM, "scenario pcap: out of memory");
	pc->opt = *opt;
	if ((rc = mm_pcap_writer_open(&pc->w, path, MM_LINK_ETHERNET, opt->snaplen)) != 0) {
		free(pc);
		return rc;
	}
	*out = pc;
	return 0;
}

static uint64_t thinned(uint64_t packets, uint32_t cap)
{
	return packets < cap ? packets : cap;
}

int mm_scenario_pcap_add(struct mm_scenario_pcap *pc, const struct mm_flow *flows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct mm_flow *f = &flows[i];
		uint64_t want;

		if (f->first_ns < pc->opt.from_ns || f->first_ns >= pc->opt.until_ns)
			continue;
		want = thinned(f->fwd_packets, pc->opt.max_flow_packets) +
		       thinned(f->rev_packets, pc->opt.max_flow_packets);
		if (pc->n_packets + want > pc->opt.max_packets) {
			pc->stats.flows_left_out++;
			continue;
		}
		if (pc->n_flows == pc->cap_flows) {
			size_t cap = pc->cap_flows ? 2 * pc->cap_flows : 4096;
			struct mm_flow *p = realloc(pc->flows, cap * sizeof(*p));

			if (!p)
				return mm_fail(MM_ENOMEM, "scenario pcap: out of memory for %zu flows", cap);
			pc->flows = p;
			pc->cap_flows = cap;
		}
		pc->flows[pc->n_flows++] = *f;
		pc->n_packets += want;
		pc->stats.flows_thinned += f->fwd_packets + f->rev_packets > want;
	}
	return 0;
}

static int pkt_cmp(const void *a, const void *b)
{
	const struct pkt *x = a, *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	if (x->flow != y->flow)
		return x->flow < y->flow ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

/* The span packets of f are spread over: its own, shrunk so no gap reaches MAX_GAP_NS. */
static uint64_t flow_span(const struct mm_flow *f, uint64_t n_fwd, uint64_t n_rev)
{
	uint64_t span = f->last_ns - f->first_ns, most = n_fwd > n_rev ? n_fwd : n_rev;

	return most > 0 && span / (most + 1) >= MAX_GAP_NS ? (most + 1) * (MAX_GAP_NS - NS) : span;
}

/*
 * The flags of packet k of n in one direction, from that direction's union:
 * a SYN-only union is a flood (every packet a SYN); otherwise the opening
 * SYN or SYN-ACK first, a closing FIN or RST last, ACKs between.
 */
static uint8_t tcp_flags_for(uint8_t uni, uint64_t k, uint64_t n, bool rev)
{
	if (uni == TCP_SYN || uni == (TCP_SYN | TCP_ACK) || uni == (TCP_RST | TCP_ACK))
		return uni;
	if (k == 0 && (uni & TCP_SYN))
		return rev ? TCP_SYN | TCP_ACK : TCP_SYN;
	if (k + 1 == n && (uni & TCP_FIN))
		return TCP_FIN | TCP_ACK;
	if (k + 1 == n && (uni & TCP_RST))
		return rev ? TCP_RST | TCP_ACK : TCP_RST;
	return (uni & TCP_PSH) ? TCP_ACK | TCP_PSH : TCP_ACK;
}

static unsigned l4_header(uint8_t proto)
{
	return proto == 6 ? 20 : 8;
}

static int write_packet(struct mm_scenario_pcap *pc, const struct pkt *p)
{
	const struct mm_flow *f = &pc->flows[p->flow];
	bool rev = p->seq & REV_BIT, v4 = mm_addr_is_v4(&f->src);
	uint64_t k = p->seq & ~REV_BIT;
	uint64_t n = thinned(rev ? f->rev_packets : f->fwd_packets, pc->opt.max_flow_packets);
	uint64_t all = rev ? f->rev_packets : f->fwd_packets, bytes = rev ? f->rev_bytes : f->fwd_bytes;
	/* Thinning keeps the bytes per packet; the remainder goes to the first packets. */
	uint64_t kept = bytes * n / all, ip_len = kept / n + (k < kept % n);
	uint64_t hdr = (v4 ? 20 : 40) + l4_header(f->proto);
	struct mm_packet_spec s = { 0 };
	size_t len;

	s.src = rev ? f->dst : f->src;
	s.dst = rev ? f->src : f->dst;
	s.proto = f->proto;
	s.payload_len = (uint16_t)(ip_len > hdr ? (ip_len - hdr > 65000 ? 65000 : ip_len - hdr) : 0);
	if (f->proto == 1 || f->proto == 58) {
		/* Echo: the flow's identifier is its id; replies answer request k. */
		s.sport = (uint16_t)f->id;
		s.dport = (uint16_t)k;
		s.icmp_type = rev ? (v4 ? 0 : 129) : f->icmp_type;
		s.icmp_code = f->icmp_code;
	} else {
		s.sport = rev ? f->dst_port : f->src_port;
		s.dport = rev ? f->src_port : f->dst_port;
	}
	if (f->proto == 6) {
		s.tcp_flags = tcp_flags_for(rev ? f->rev_tcp_flags : f->fwd_tcp_flags, k, n, rev);
		s.tcp_seq = (uint32_t)(f->id * 7919 + k * 1448);
		s.tcp_ack = s.tcp_flags & TCP_ACK ? (uint32_t)(f->id * 104729 + 1) : 0;
	}
	len = mm_packet_build(&s, pc->frame, sizeof(pc->frame));
	if (len == 0)
		return mm_fail(MM_EINTERNAL, "scenario pcap: flow %llu: packet does not fit",
			       (unsigned long long)f->id);
	pc->stats.packets++;
	return mm_pcap_writer_write(pc->w, p->ts, pc->frame,
				    (uint32_t)(len < pc->opt.snaplen ? len : pc->opt.snaplen), (uint32_t)len);
}

/* Times of every packet: each direction evenly over the span, replies a quarter step behind. */
static struct pkt *schedule(struct mm_scenario_pcap *pc, size_t *n_out)
{
	struct pkt *p = malloc((pc->n_packets ? pc->n_packets : 1) * sizeof(*p));
	size_t n = 0;

	if (!p)
		return NULL;
	for (size_t i = 0; i < pc->n_flows; i++) {
		const struct mm_flow *f = &pc->flows[i];
		uint64_t nf = thinned(f->fwd_packets, pc->opt.max_flow_packets);
		uint64_t nr = thinned(f->rev_packets, pc->opt.max_flow_packets);
		uint64_t span = flow_span(f, nf, nr);

		for (uint64_t k = 0; k < nf; k++)
			p[n++] = (struct pkt){ f->first_ns + span * k / (nf > 1 ? nf - 1 : 1), (uint32_t)i,
					       (uint32_t)k };
		for (uint64_t k = 0; k < nr; k++)
			p[n++] = (struct pkt){ f->first_ns + (span * (4 * k + 1)) / (4 * (nr > 1 ? nr : 1) + 1),
					       (uint32_t)i, (uint32_t)k | REV_BIT };
	}
	qsort(p, n, sizeof(*p), pkt_cmp);
	*n_out = n;
	return p;
}

int mm_scenario_pcap_close(struct mm_scenario_pcap *pc, struct mm_scenario_pcap_stats *stats)
{
	struct pkt *p;
	size_t n = 0;
	int rc = 0;

	p = schedule(pc, &n);
	if (!p)
		rc = mm_fail(MM_ENOMEM, "scenario pcap: out of memory for %llu packets",
			     (unsigned long long)pc->n_packets);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = write_packet(pc, &p[i]);
	free(p);
	pc->stats.flows = pc->n_flows;
	if (stats)
		*stats = pc->stats;
	if (rc == 0)
		rc = mm_pcap_writer_close(pc->w);
	else
		mm_pcap_writer_discard(pc->w);
	free(pc->flows);
	free(pc);
	return rc;
}

void mm_scenario_pcap_discard(struct mm_scenario_pcap *pc)
{
	if (!pc)
		return;
	mm_pcap_writer_discard(pc->w);
	free(pc->flows);
	free(pc);
}
