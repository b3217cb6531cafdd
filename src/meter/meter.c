/*
 * The meter (see mamori/meter.h): decodes packets in batches, counts each
 * IP layer in its bidirectional flow, decides originators the way Zeek
 * does, tracks fragments so a datagram counts once, and exports flows in
 * batches when they time out, close, are pushed out by the table cap, or
 * the input ends. Batching lets it hash a whole batch and prefetch the
 * flow table before touching it, hiding cache misses on a large table.
 */
#include "mamori/meter.h"

#include "mamori/status.h"
#include "meter/decode.h"
#include "meter/flow_table.h"
#include "meter/frag.h"
#include "meter/meter_int.h"

#include <stdlib.h>
#include <string.h>

/*
 * Packets decoded and prefetched together. 32 packets of work (microseconds)
 * cover a memory miss many times over; larger batches only pushed their own
 * decoded packets, keys and prefetched entries out of the 32 KiB L1 before
 * use (cachegrind: L1 data misses per packet 16 at 128, 8 at 32).
 */
#define METER_BATCH 32
#define SINK_BATCH 256        /* flows handed to the sink per call */
#define EXPIRE_BUDGET 8       /* wheel entries examined per packet */
#define NS_PER_S 1000000000ull

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
_Static_assert(TCP_FIN << 1 == FT_FIN_A && TCP_FIN << 2 == FT_FIN_B && TCP_RST << 1 == FT_RST,
	       "tcp_update maps flags onto state bits by shifts");

#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMP6 58
#define PROTO_SCTP 132

#define NTP_PORT 123
#define NTP_MODE_CLIENT 3
#define NTP_MODE_SERVER 4

/*
 * Likely server ports, standing in for Zeek's likely_server_ports (which
 * the loaded analyzers fill): well-known services whose port names the
 * responder. DHCP's 67 is here and 68 is not, as in Zeek, which is why a
 * unicast 67→68 reply is logged with the client as originator.
 */
static const uint16_t tcp_server_ports[] = {
	21, 22, 23, 25, 53, 80, 88, 110, 111, 135, 139, 143, 179, 389, 443, 445, 465, 502,
	587, 636, 989, 990, 993, 995, 1080, 1433, 1521, 1723, 1883, 2049, 3128, 3306, 3389,
	5060, 5061, 5222, 5432, 5900, 6379, 6443, 6667, 8000, 8080, 8443, 8883, 9200, 27017,
};
static const uint16_t udp_server_ports[] = {
	53, 67, 69, 88, 123, 137, 138, 161, 162, 443, 500, 514, 547, 1812, 1813, 1900, 2152,
	3478, 3544, 4500, 4789, 5060, 5353, 5355, 6081,
};

struct layer_key {
	struct ft_lookup lu; /* cand: the entry the prefetch stage found, or FT_NONE */
	uint8_t from_a;      /* the packet's source is key endpoint a */
};

struct mm_meter {
	struct mm_meter_config cfg;
	mm_flow_sink_fn sink;
	void *sink_ctx;
	struct flow_table *flows;
	struct frag_table *frags;
	uint64_t now_ns;           /* max timestamp seen: the table clock never runs back... */
	uint64_t step_back_ns;     /* ...unless it jumps back further than the shortest idle timeout */
	/*
	 * Idle timeout by IP protocol, looked up for every packet: a table,
	 * because a switch on the protocol of a TCP/UDP/ICMP mix mispredicts.
	 */
	uint64_t idle_ns[256];
	uint64_t last_id;
	struct mm_meter_stats stats;
	size_t n_out;
	struct mm_flow out[SINK_BATCH];
	uint8_t tcp_server[65536 / 8];
	uint8_t udp_server[65536 / 8];
	enum mm_anomaly batch_anom[METER_BATCH];
	uint8_t batch_ntp_mode[METER_BATCH];
	struct mm_pkt batch[METER_BATCH];
	struct layer_key batch_keys[METER_BATCH][MM_ENCAP_MAX + 1];
	struct ft_lookup *batch_list[METER_BATCH * (MM_ENCAP_MAX + 1)]; /* the batch's keys in use */
};

void mm_meter_config_default(struct mm_meter_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->idle_tcp_ns = 300 * NS_PER_S;
	cfg->idle_udp_ns = 60 * NS_PER_S;
	cfg->idle_icmp_ns = 60 * NS_PER_S;
	cfg->idle_other_ns = 60 * NS_PER_S;
	cfg->active_ns = 1800 * NS_PER_S;
	cfg->tcp_close_ns = 5 * NS_PER_S;
	cfg->frag_timeout_ns = 30 * NS_PER_S;
	cfg->max_flows = 1000000;
	cfg->max_fragments = 65536;
	cfg->max_encap_depth = 4;
}

void mm_meter_config_zeek(struct mm_meter_config *cfg)
{
	/* tcp_inactivity_timeout 5 min, udp/icmp/unknown 1 min, tcp_close_delay = tcp_reset_delay = 5 s. */
	mm_meter_config_default(cfg);
	cfg->active_ns = 0;
	cfg->zeek_compat = true;
}

/* ---- configuration ---------------------------------------------------- */

static int check_range(const char *field, uint64_t v, uint64_t lo, uint64_t hi)
{
	if (v < lo || v > hi)
		return mm_fail(MM_EINVAL, "meter config: %s: %llu outside %llu..%llu", field,
			       (unsigned long long)v, (unsigned long long)lo,
			       (unsigned long long)hi);
	return 0;
}

static int check_config(const struct mm_meter_config *c)
{
	const uint64_t ms = 1000000, week = 7 * 86400 * NS_PER_S;
	int rc = 0;

	if (!rc)
		rc = check_range("idle_tcp_ns", c->idle_tcp_ns, ms, week);
	if (!rc)
		rc = check_range("idle_udp_ns", c->idle_udp_ns, ms, week);
	if (!rc)
		rc = check_range("idle_icmp_ns", c->idle_icmp_ns, ms, week);
	if (!rc)
		rc = check_range("idle_other_ns", c->idle_other_ns, ms, week);
	if (!rc && c->active_ns)
		rc = check_range("active_ns", c->active_ns, NS_PER_S, week);
	if (!rc)
		rc = check_range("tcp_close_ns", c->tcp_close_ns, 0, 3600 * NS_PER_S);
	if (!rc)
		rc = check_range("frag_timeout_ns", c->frag_timeout_ns, ms, 3600 * NS_PER_S);
	if (!rc)
		rc = check_range("max_flows", c->max_flows, 1, (uint64_t)1 << 31);
	if (!rc)
		rc = check_range("max_fragments", c->max_fragments, 1, (uint64_t)1 << 24);
	if (!rc)
		rc = check_range("max_encap_depth", c->max_encap_depth, 1, MM_ENCAP_MAX);
	return rc;
}

static uint64_t idle_timeout_of(const struct mm_meter_config *cfg, uint8_t proto)
{
	switch (proto) {
	case PROTO_TCP: return cfg->idle_tcp_ns;
	case PROTO_UDP: return cfg->idle_udp_ns;
	case PROTO_ICMP:
	case PROTO_ICMP6: return cfg->idle_icmp_ns;
	default: return cfg->idle_other_ns;
	}
}

static uint64_t shortest_idle(const struct mm_meter_config *c)
{
	uint64_t t = c->idle_tcp_ns;

	t = c->idle_udp_ns < t ? c->idle_udp_ns : t;
	t = c->idle_icmp_ns < t ? c->idle_icmp_ns : t;
	t = c->idle_other_ns < t ? c->idle_other_ns : t;
	return t;
}

static void fill_port_set(uint8_t *set, const uint16_t *ports, size_t n)
{
	for (size_t i = 0; i < n; i++)
		set[ports[i] >> 3] |= (uint8_t)(1u << (ports[i] & 7));
}

static bool in_port_set(const uint8_t *set, uint16_t port)
{
	return set[port >> 3] >> (port & 7) & 1;
}

int mm_meter_new(struct mm_meter **out, const struct mm_meter_config *cfg, mm_flow_sink_fn sink,
		 void *sink_ctx)
{
	struct mm_meter *m = NULL;
	int rc;

	*out = NULL;
	if (!sink)
		return mm_fail(MM_EINVAL, "meter: no flow sink given");
	rc = check_config(cfg);
	if (rc < 0)
		return rc;
	m = calloc(1, sizeof(*m));
	if (!m)
		return mm_fail(MM_ENOMEM, "meter: out of memory");
	m->cfg = *cfg;
	m->step_back_ns = shortest_idle(cfg);
	for (unsigned proto = 0; proto < 256; proto++)
		m->idle_ns[proto] = idle_timeout_of(cfg, (uint8_t)proto);
	m->sink = sink;
	m->sink_ctx = sink_ctx;
	fill_port_set(m->tcp_server, tcp_server_ports,
		      sizeof(tcp_server_ports) / sizeof(tcp_server_ports[0]));
	fill_port_set(m->udp_server, udp_server_ports,
		      sizeof(udp_server_ports) / sizeof(udp_server_ports[0]));
	rc = flow_table_new(&m->flows, cfg->max_flows);
	if (rc < 0)
		goto out;
	rc = frag_table_new(&m->frags, cfg->max_fragments, cfg->frag_timeout_ns);
	if (rc < 0)
		goto out;
	*out = m;
	m = NULL;
out:
	mm_meter_free(m);
	return rc;
}

void mm_meter_free(struct mm_meter *m)
{
	if (!m)
		return;
	flow_table_free(m->flows);
	frag_table_free(m->frags);
	free(m);
}

/* ---- keys --------------------------------------------------------------- */

/*
 * Zeek's ICMP4_counterpart / ICMP6_counterpart: request and reply types
 * pair up so both travel in one flow; other messages are one-way and use
 * their code as the responder port.
 */
static int icmp_counterpart(uint8_t proto, uint8_t type)
{
	static const uint8_t v4[][2] = { { 8, 0 }, { 13, 14 }, { 15, 16 }, { 10, 9 }, { 17, 18 } };
	static const uint8_t v6[][2] = { { 128, 129 }, { 133, 134 }, { 135, 136 },
					 { 130, 131 }, { 139, 140 }, { 144, 145 } };
	const uint8_t(*pairs)[2] = proto == PROTO_ICMP ? v4 : v6;
	size_t n = proto == PROTO_ICMP ? sizeof(v4) / sizeof(v4[0]) : sizeof(v6) / sizeof(v6[0]);

	for (size_t i = 0; i < n; i++) {
		if (pairs[i][0] == type)
			return pairs[i][1];
		if (pairs[i][1] == type)
			return pairs[i][0];
	}
	return -1;
}

static bool is_icmp(uint8_t proto)
{
	return proto == PROTO_ICMP || proto == PROTO_ICMP6;
}

/*
 * v ? x : y for 64-bit words, by masks: GCC compiled the plain conditional
 * (and one on whole addresses) into a branch on from_a, which the address
 * order makes a coin toss; perf put a quarter of build_key's samples on
 * its mispredictions.
 */
static inline uint64_t select64(bool v, uint64_t x, uint64_t y)
{
	uint64_t m = -(uint64_t)v;

	return (x & m) | (y & ~m);
}

static inline uint64_t addr_word(const struct mm_addr *a, size_t i)
{
	uint64_t w;

	memcpy(&w, a->b + 8 * i, sizeof(w));
	return w;
}

/*
 * Which endpoint is a depends on the addresses: unpredictable, so the
 * address order and the key's fields are computed without branches on it.
 * Every key byte is assigned (ft_key has no padding), so no memset first.
 */
static void build_key(uint16_t vlan, const struct mm_pkt_ip *ip, struct layer_key *lk)
{
	uint16_t sport = 0, dport = 0;
	bool one_way = false, from_a, less, equal;
	uint64_t sh = mm_addr_be64_(ip->src.b), sl = mm_addr_be64_(ip->src.b + 8);
	uint64_t dh = mm_addr_be64_(ip->dst.b), dl = mm_addr_be64_(ip->dst.b + 8);
	uint64_t w[4];

	if (is_icmp(ip->proto)) {
		int peer = icmp_counterpart(ip->proto, ip->icmp_type);

		sport = ip->icmp_type;
		dport = peer >= 0 ? (uint16_t)peer : ip->icmp_code;
		one_way = peer < 0;
	} else if (ip->has_ports) {
		sport = ip->sport;
		dport = ip->dport;
	}
	/* mm_addr_cmp(src, dst) < 0 and == 0, as one expression each (big-endian word order). */
	less = (sh < dh) | ((sh == dh) & (sl < dl));
	equal = (sh == dh) & (sl == dl);
	from_a = one_way | less | (equal & (sport <= dport));
	lk->from_a = from_a;
	lk->lu.cand = FT_NONE;
	for (size_t i = 0; i < 2; i++) {
		w[i] = select64(from_a, addr_word(&ip->src, i), addr_word(&ip->dst, i));
		w[2 + i] = select64(from_a, addr_word(&ip->dst, i), addr_word(&ip->src, i));
	}
	memcpy(lk->lu.key.a.b, w, 16);
	memcpy(lk->lu.key.b.b, w + 2, 16);
	lk->lu.key.port_a = (uint16_t)select64(from_a, sport, dport);
	lk->lu.key.port_b = (uint16_t)select64(from_a, dport, sport);
	lk->lu.key.vlan = vlan;
	lk->lu.key.proto = ip->proto;
	lk->lu.key.one_way = one_way;
}

/* Layers that get a flow: up to and including the first fragment, which is tracked instead. */
static unsigned counted_layers(const struct mm_pkt *p)
{
	for (unsigned i = 0; i < p->n_ip; i++)
		if (p->ip[i].frag != MM_FRAG_NONE)
			return i + 1;
	return p->n_ip;
}

/*
 * Builds the keys of the packet's layers that get a flow (not a fragment)
 * into keys, and appends pointers to them to list; returns how many.
 */
static size_t build_keys(const struct mm_pkt *p, struct layer_key *keys, struct ft_lookup **list)
{
	unsigned n = counted_layers(p);
	size_t k = 0;

	for (unsigned i = 0; i < n && p->ip[i].frag == MM_FRAG_NONE; i++) {
		build_key(p->vlan, &p->ip[i], &keys[i]);
		list[k++] = &keys[i].lu;
	}
	return k;
}

/* ---- export ------------------------------------------------------------- */

static void flush_sink(struct mm_meter *m)
{
	if (m->n_out) {
		m->sink(m->sink_ctx, m->out, m->n_out);
		m->n_out = 0;
	}
}

static void export_entry(struct mm_meter *m, const struct ft_entry *e, uint8_t reason)
{
	struct mm_flow *f = &m->out[m->n_out];
	bool orig_b = e->state & FT_ORIG_IS_B;

	memset(f, 0, sizeof(*f));
	f->src = orig_b ? e->key.b : e->key.a;
	f->dst = orig_b ? e->key.a : e->key.b;
	f->src_port = orig_b ? e->key.port_b : e->key.port_a;
	f->dst_port = orig_b ? e->key.port_a : e->key.port_b;
	f->fwd_packets = e->pkts[orig_b ? FT_BA : FT_AB];
	f->rev_packets = e->pkts[orig_b ? FT_AB : FT_BA];
	f->fwd_bytes = e->bytes[orig_b ? FT_BA : FT_AB];
	f->rev_bytes = e->bytes[orig_b ? FT_AB : FT_BA];
	f->fwd_tcp_flags = e->flags[orig_b ? FT_BA : FT_AB];
	f->rev_tcp_flags = e->flags[orig_b ? FT_AB : FT_BA];
	f->first_ns = e->first_ns;
	f->last_ns = e->last_ns;
	f->id = e->id;
	f->tunnel_parents[0] = e->parents[0];
	f->tunnel_parents[1] = e->parents[1];
	f->sensor_id = m->cfg.sensor_id;
	f->sampling_rate = 1;
	f->vlan = e->key.vlan;
	f->proto = e->key.proto;
	f->icmp_type = e->icmp_type;
	f->icmp_code = e->icmp_code;
	f->end_reason = reason;
	f->flags = e->flow_flags;
	m->stats.flows_exported++;
	m->stats.exported_by_reason[reason]++;
	if (++m->n_out == SINK_BATCH)
		flush_sink(m);
}

static void end_flow(struct mm_meter *m, uint32_t idx, uint8_t reason)
{
	export_entry(m, flow_table_entry(m->flows, idx), reason);
	flow_table_remove(m->flows, idx);
}

/* ---- timeouts ----------------------------------------------------------- */

/* When the entry ends if nothing more arrives, and why. */
static uint64_t deadline_of(const struct mm_meter *m, const struct ft_entry *e, uint8_t *reason)
{
	uint64_t dl;

	if (e->state & FT_CLOSED) {
		*reason = MM_END_EOF;
		return e->last_ns + m->cfg.tcp_close_ns;
	}
	dl = e->last_ns + m->idle_ns[e->key.proto];
	*reason = MM_END_IDLE;
	if (m->cfg.active_ns && !m->cfg.zeek_compat && e->first_ns + m->cfg.active_ns < dl) {
		dl = e->first_ns + m->cfg.active_ns;
		*reason = MM_END_ACTIVE;
	}
	return dl;
}

/*
 * Examines up to budget due wheel entries: ends those past their real
 * deadline, re-files the rest. Entries that end are gathered a few at a
 * time with their index slots prefetched, so the slot misses of one group
 * overlap instead of following one another.
 */
static void expire_due(struct mm_meter *m, size_t budget)
{
	uint32_t due[EXPIRE_BUDGET];
	uint8_t why[EXPIRE_BUDGET];
	uint32_t idx = 0;

	while (budget && idx != FT_NONE) {
		size_t n = 0;

		while (budget && n < EXPIRE_BUDGET &&
		       (idx = flow_table_next_due(m->flows, m->now_ns)) != FT_NONE) {
			const struct ft_entry *e = flow_table_entry(m->flows, idx);
			uint64_t dl = deadline_of(m, e, &why[n]);

			budget--;
			if (dl > m->now_ns) {
				if (flow_table_schedule(m->flows, idx, dl) == 0)
					continue;
				why[n] = MM_END_RESOURCE; /* no memory to keep it filed */
			}
			due[n] = idx;
			flow_table_prefetch_slot(m->flows, e->tag);
			n++;
		}
		for (size_t i = 0; i < n; i++)
			end_flow(m, due[i], why[i]);
	}
}

static void end_all(struct mm_meter *m)
{
	uint32_t idx;

	while ((idx = flow_table_pop_earliest(m->flows)) != FT_NONE)
		end_flow(m, idx, MM_END_FORCED);
	frag_table_clear(m->frags);
}

/*
 * Time went back further than a flow may stay idle: a second capture of
 * an earlier period, or a clock reset. A packet that old would start a
 * flow already past its deadline under the old clock, ending every new
 * flow at once; so the table's flows end and the clock restarts.
 */
static void restart_clock(struct mm_meter *m, uint64_t ts_ns)
{
	end_all(m);
	m->now_ns = ts_ns;
	m->stats.clock_steps_back++;
}

/*
 * Runs for every packet, so it is small enough to inline and does its
 * work out of line: expiry only once the clock enters a new wheel slot
 * (0.27 s), the restart never in a sane capture. Reordering by less than
 * the step-back limit (a few packets swapped on the wire) keeps the clock.
 */
static inline void advance_clock(struct mm_meter *m, uint64_t ts_ns, size_t budget)
{
	if (ts_ns > m->now_ns)
		m->now_ns = ts_ns;
	else if (m->now_ns - ts_ns > m->step_back_ns)
		restart_clock(m, ts_ns);
	if (flow_table_may_be_due(m->flows, m->now_ns))
		expire_due(m, budget);
	frag_table_expire(m->frags, m->now_ns);
}

/* Cap policy: end the flow nearest its deadline; early ends are counted as "resource". */
static bool evict_one(struct mm_meter *m)
{
	uint32_t idx = flow_table_pop_earliest(m->flows);
	uint8_t reason;

	if (idx == FT_NONE)
		return false;
	if (deadline_of(m, flow_table_entry(m->flows, idx), &reason) > m->now_ns)
		reason = MM_END_RESOURCE;
	end_flow(m, idx, reason);
	return true;
}

/* ---- direction ---------------------------------------------------------- */

static bool tcp_flips(const struct mm_meter *m, const struct mm_pkt_ip *ip)
{
	bool syn = ip->tcp_flags & TCP_SYN, ack = ip->tcp_flags & TCP_ACK;
	bool src_server = in_port_set(m->tcp_server, ip->sport);

	if (syn && !ack)
		return false;
	/*
	 * A SYN-ACK answers: its sender is the responder. Zeek only believes
	 * that when the port agrees (stealth scans send SYN-ACKs) and flips
	 * later if the peer then sends the SYN (see tcp_update).
	 */
	if (syn && !m->cfg.zeek_compat)
		return true;
	if (!src_server)
		return false;
	if (in_port_set(m->tcp_server, ip->dport))
		return !syn && ip->sport < ip->dport;
	return true;
}

/* Whether the first packet's sender is the responder (Zeek's WantConnection flip_roles). */
static bool first_packet_flips(const struct mm_meter *m, const struct mm_pkt_ip *ip)
{
	/* Zeek never flips towards the IPv4 limited broadcast address (DHCP 67 → 255.255.255.255:68). */
	if (mm_addr_is_v4(&ip->dst) && mm_addr_v4_u32(&ip->dst) == 0xffffffffu)
		return false;
	if (!ip->has_ports)
		return false;
	if (ip->proto == PROTO_TCP)
		return tcp_flips(m, ip);
	if (ip->proto == PROTO_UDP)
		return in_port_set(m->udp_server, ip->sport) && !in_port_set(m->udp_server, ip->dport);
	return false;
}

/* ---- per-layer accounting ----------------------------------------------- */

static uint32_t create_flow(struct mm_meter *m, uint64_t ts_ns, const struct mm_pkt_ip *ip,
			    const struct layer_key *lk)
{
	struct ft_entry *e;
	uint32_t idx;
	uint8_t reason;
	bool flip;

	while (flow_table_insert(m->flows, &lk->lu.key, lk->lu.hash, &idx) < 0)
		if (!evict_one(m))
			return FT_NONE;
	e = flow_table_entry(m->flows, idx);
	e->first_ns = e->last_ns = ts_ns;
	if (is_icmp(ip->proto)) { /* a flow's ICMP type and code are its first message's */
		e->icmp_type = ip->icmp_type;
		e->icmp_code = ip->icmp_code;
	}
	flip = first_packet_flips(m, ip);
	if (lk->from_a == flip)
		e->state |= FT_ORIG_IS_B;
	if (m->cfg.zeek_compat && ip->proto == PROTO_TCP && !flip &&
	    (ip->tcp_flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK))
		e->state |= FT_SYNACK_FIRST;
	if (flow_table_schedule(m->flows, idx, deadline_of(m, e, &reason)) < 0) {
		/* An unfiled flow would never expire: no room for this one after all. */
		flow_table_remove(m->flows, idx);
		return FT_NONE;
	}
	e->id = ++m->last_id;
	m->stats.flows_created++;
	if (flow_table_count(m->flows) > m->stats.peak_flows)
		m->stats.peak_flows = flow_table_count(m->flows);
	return idx;
}

static void tcp_update(struct mm_meter *m, uint32_t idx, struct ft_entry *e, bool from_a,
		       uint8_t flags)
{
	bool from_orig = from_a == !(e->state & FT_ORIG_IS_B);
	uint8_t reason;

	/* The FIN and RST bits map onto the state bits by shifts: no branch per packet. */
	e->state |= (uint8_t)((flags & TCP_FIN) << (from_a ? 1 : 2) | (flags & TCP_RST) << 1);
	if ((e->state & FT_SYNACK_FIRST) && !from_orig) {
		/* Zeek's SYN/SYN-ACK reversal: the peer of a SYN-ACK opener sends the SYN. */
		if ((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
			e->state ^= FT_ORIG_IS_B;
		e->state &= (uint8_t)~FT_SYNACK_FIRST;
	}
	if (!(e->state & FT_CLOSED) &&
	    ((e->state & (FT_FIN_A | FT_FIN_B)) == (FT_FIN_A | FT_FIN_B) || (e->state & FT_RST))) {
		/*
		 * The linger deadline is earlier than the filed idle one: re-file
		 * now. Without memory to do so the entry stays filed under the
		 * idle deadline, where expiry finds it closed and ends it.
		 */
		e->state |= FT_CLOSED;
		(void)flow_table_schedule(m->flows, idx, deadline_of(m, e, &reason));
	}
}

static void add_parent(struct ft_entry *e, uint64_t parent)
{
	if (!parent)
		return;
	for (size_t i = 0; i < MM_TUNNEL_PARENTS; i++) {
		if (e->parents[i] == parent)
			return;
		if (!e->parents[i]) {
			e->parents[i] = parent;
			return;
		}
	}
}

/*
 * Zeek's NTP analyzer (attached by responder port 123) turns a connection
 * round, once, when the originator sends a server-mode message or the
 * responder a client-mode one; the packet counts taken so far stay with
 * the originator role, now the other host. --compat zeek reproduces that,
 * so conn.log comparisons hold for NTP too.
 */
static void zeek_ntp_flip(const struct mm_meter *m, struct ft_entry *e, bool from_a, uint8_t ntp_mode)
{
	bool orig_b = e->state & FT_ORIG_IS_B;
	bool from_orig = from_a == !orig_b;
	uint16_t resp_port = orig_b ? e->key.port_a : e->key.port_b;
	uint64_t t;

	if (!m->cfg.zeek_compat || !ntp_mode || (e->state & FT_NTP_FLIPPED) || resp_port != NTP_PORT)
		return;
	if (!((ntp_mode == NTP_MODE_SERVER && from_orig) || (ntp_mode == NTP_MODE_CLIENT && !from_orig)))
		return;
	e->state ^= FT_ORIG_IS_B;
	e->state |= FT_NTP_FLIPPED;
	t = e->pkts[FT_AB], e->pkts[FT_AB] = e->pkts[FT_BA], e->pkts[FT_BA] = t;
	t = e->bytes[FT_AB], e->bytes[FT_AB] = e->bytes[FT_BA], e->bytes[FT_BA] = t;
}

/* e is entry idx, looked up once by the caller. */
static void update_flow(struct mm_meter *m, uint32_t idx, struct ft_entry *e, uint64_t ts_ns,
			const struct mm_pkt_ip *ip, bool from_a, uint64_t parent, uint8_t flow_flags,
			uint8_t ntp_mode)
{
	/* Zeek stops moving a connection's last time once both sides closed. */
	bool frozen = m->cfg.zeek_compat &&
		      (e->state & (FT_FIN_A | FT_FIN_B)) == (FT_FIN_A | FT_FIN_B);
	enum ft_side side = from_a ? FT_AB : FT_BA;

	e->pkts[side]++;
	e->bytes[side] += ip->ip_len;
	e->flags[side] |= ip->tcp_flags;
	if (ts_ns < e->first_ns)
		e->first_ns = ts_ns;
	if (ts_ns > e->last_ns && !frozen)
		e->last_ns = ts_ns;
	/*
	 * Other protocols pass no flags, which leaves every TCP state bit as
	 * it was; masked, because a branch on the protocol mispredicts.
	 */
	tcp_update(m, idx, e, from_a, ip->tcp_flags & (uint8_t)-(ip->proto == PROTO_TCP));
	add_parent(e, parent);
	e->flow_flags |= flow_flags;
	zeek_ntp_flip(m, e, from_a, ntp_mode);
}

/* A found entry whose time is up, or a closed TCP flow reopened by a fresh SYN, ends first. */
static bool ends_before_packet(struct mm_meter *m, uint32_t idx, const struct mm_pkt_ip *ip)
{
	const struct ft_entry *e = flow_table_entry(m->flows, idx);
	uint8_t reason;

	if (deadline_of(m, e, &reason) <= m->now_ns) {
		end_flow(m, idx, reason);
		return true;
	}
	if (ip->proto == PROTO_TCP && (e->state & FT_CLOSED) &&
	    (ip->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		end_flow(m, idx, MM_END_EOF);
		return true;
	}
	return false;
}

/* Counts one IP layer in its flow; returns the flow id, 0 if no room could be made. */
static uint64_t account_layer(struct mm_meter *m, uint64_t ts_ns, const struct mm_pkt_ip *ip,
			      const struct layer_key *lk, uint64_t parent, uint8_t flow_flags,
			      uint8_t ntp_mode)
{
	uint32_t idx = flow_table_find_from(m->flows, &lk->lu.key, lk->lu.hash, lk->lu.cand);
	struct ft_entry *e;

	if (idx == FT_NONE || ends_before_packet(m, idx, ip)) {
		idx = create_flow(m, ts_ns, ip, lk);
		if (idx == FT_NONE)
			return 0;
	}
	e = flow_table_entry(m->flows, idx);
	update_flow(m, idx, e, ts_ns, ip, lk->from_a, parent, flow_flags, ntp_mode);
	return e->id;
}

/* Tracks a fragment; a completed datagram counts once, named by its first fragment. */
static bool account_fragment(struct mm_meter *m, uint64_t ts_ns, uint16_t vlan,
			     const struct mm_pkt_ip *ip, uint64_t parent)
{
	struct mm_pkt_ip whole;
	struct layer_key lk;

	m->stats.fragments++;
	switch (frag_table_offer(m->frags, m->now_ns, vlan, ip, &whole)) {
	case FRAG_HELD:
		return true;
	case FRAG_DONE:
		build_key(vlan, &whole, &lk);
		lk.lu.hash = flow_table_hash(m->flows, &lk.lu.key);
		account_layer(m, ts_ns, &whole, &lk, parent, MM_FLOW_FRAGMENTS, 0);
		return true;
	case FRAG_REFUSED:
		break;
	}
	return false;
}

static void account_packet(struct mm_meter *m, uint64_t ts_ns, uint32_t wire_len,
			   enum mm_anomaly anomaly, const struct mm_pkt *p,
			   const struct layer_key *keys, uint8_t ntp_mode)
{
	unsigned n = counted_layers(p);
	uint64_t parent = 0;
	bool metered = false;

	m->stats.packets++;
	m->stats.bytes += wire_len;
	if (anomaly != MM_ANOM_NONE && anomaly < MM_ANOM__COUNT)
		m->stats.anomalies[anomaly]++;
	advance_clock(m, ts_ns, EXPIRE_BUDGET);
	for (unsigned i = 0; i < n; i++) {
		const struct mm_pkt_ip *ip = &p->ip[i];

		if (ip->frag != MM_FRAG_NONE) {
			metered |= account_fragment(m, ts_ns, p->vlan, ip, parent);
			break;
		}
		parent = account_layer(m, ts_ns, ip, &keys[i], parent,
				       i + 1 < n ? MM_FLOW_TUNNEL : 0, i + 1 == n ? ntp_mode : 0);
		metered |= parent != 0;
	}
	if (metered)
		m->stats.metered++;
}

/* ---- public entry points ------------------------------------------------ */

void meter_account(struct mm_meter *m, uint64_t ts_ns, uint32_t wire_len, const struct mm_pkt *pkt)
{
	struct layer_key keys[MM_ENCAP_MAX + 1];
	struct ft_lookup *list[MM_ENCAP_MAX + 1];

	flow_table_hash_batch(m->flows, list, build_keys(pkt, keys, list));
	account_packet(m, ts_ns, wire_len, MM_ANOM_NONE, pkt, keys, 0);
	flush_sink(m);
}

size_t meter_max_probe(const struct mm_meter *m)
{
	return flow_table_max_probe(m->flows);
}

/*
 * The NTP mode (RFC 5905 §7.3: the low 3 bits of the first byte) of an
 * unfragmented UDP port-123 datagram, read only under --compat zeek for
 * zeek_ntp_flip; 0 otherwise. It decides a direction and is kept nowhere.
 */
static uint8_t ntp_mode_of(const struct mm_meter *m, const struct mm_raw_packet *r,
			   const struct mm_pkt *p)
{
	const struct mm_pkt_ip *ip;
	uint32_t off;

	if (!m->cfg.zeek_compat || p->n_ip == 0)
		return 0;
	ip = &p->ip[p->n_ip - 1];
	if (ip->proto != PROTO_UDP || !ip->has_ports || ip->frag != MM_FRAG_NONE ||
	    (ip->sport != NTP_PORT && ip->dport != NTP_PORT))
		return 0;
	off = ip->l4_offset + 8;
	return off < r->cap_len ? r->data[off] & 7 : 0;
}

void mm_meter_packets(struct mm_meter *m, const struct mm_raw_packet *pkts, size_t n)
{
	for (size_t off = 0; off < n; off += METER_BATCH) {
		size_t k = n - off < METER_BATCH ? n - off : METER_BATCH;
		size_t n_keys = 0;

		/*
		 * Stages over the whole batch, so that each memory access is
		 * requested a batch of work before it is needed: decode and
		 * build keys; hash them, prefetching their index slots; read the
		 * slots (the misses of the first overlap those of the rest) to
		 * prefetch the entries they name, keeping each key's candidate
		 * so the update need not probe again; then update the table.
		 */
		for (size_t i = 0; i < k; i++) {
			const struct mm_raw_packet *r = &pkts[off + i];

			m->batch_anom[i] = mm_decode_packet(r->linktype, r->data, r->cap_len,
							    m->cfg.max_encap_depth, &m->batch[i]);
			m->batch_ntp_mode[i] = ntp_mode_of(m, r, &m->batch[i]);
			n_keys += build_keys(&m->batch[i], m->batch_keys[i], m->batch_list + n_keys);
		}
		flow_table_hash_batch(m->flows, m->batch_list, n_keys);
		for (size_t i = 0; i < n_keys; i++)
			m->batch_list[i]->cand =
				flow_table_prefetch_entry(m->flows, m->batch_list[i]->hash);
		for (size_t i = 0; i < k; i++) {
			account_packet(m, pkts[off + i].ts_ns, pkts[off + i].wire_len,
				       m->batch_anom[i], &m->batch[i], m->batch_keys[i],
				       m->batch_ntp_mode[i]);
		}
	}
	flush_sink(m);
}

void mm_meter_advance(struct mm_meter *m, uint64_t now_ns)
{
	advance_clock(m, now_ns, SIZE_MAX);
	flush_sink(m);
}

void mm_meter_finish(struct mm_meter *m)
{
	advance_clock(m, m->now_ns, SIZE_MAX);
	end_all(m);
	flush_sink(m);
}

void mm_meter_get_stats(const struct mm_meter *m, struct mm_meter_stats *out)
{
	struct frag_stats fs;

	*out = m->stats;
	frag_table_get_stats(m->frags, &fs);
	out->anomalies[MM_ANOM_FRAG_BAD] += fs.bad;
	out->anomalies[MM_ANOM_FRAG_INCOMPLETE] += fs.incomplete;
	out->anomalies[MM_ANOM_FRAG_TABLE_FULL] += fs.table_full;
	out->datagrams_reassembled = fs.reassembled;
	out->active_flows = flow_table_count(m->flows);
	out->table_bytes = flow_table_bytes(m->flows) + frag_table_bytes(m->frags);
}
