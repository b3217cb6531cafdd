/*
 * IPFIX exporter (see ipfix_export.h): flow records are written into fixed
 * IPFIX record layouts, one per address family, packed into messages of at
 * most one MTU, and handed to a UDP or TCP transport through a bounded
 * queue. Headers are stamped (export time, sequence number) only when a
 * message starts to go out, so messages queued across a TCP reconnect carry
 * the numbers of the session that actually delivers them.
 */
#include "mamori/ipfix_export.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IPFIX_VERSION 10
#define MSG_HDR_LEN 16
#define SET_HDR_LEN 4
#define SET_ID_TEMPLATE 2
#define PEN_REVERSE 29305u              /* RFC 5103 reverse information elements */
#define NTP_UNIX_OFFSET 2208988800ull   /* seconds from 1900-01-01 to 1970-01-01 */
#define QUEUE_MSGS_MAX 65536u
#define DEST_TEXT_MAX 256
#define DRAIN_WAIT_STEP_MS 50

/*
 * Both templates in one table: the same fields in the same order, only the
 * address elements (and the ICMP element) differ by family. encode_tail()
 * writes the rows from flowStartNanoseconds on at fixed offsets; the lengths
 * here and the offsets there are checked against each other at startup.
 */
struct field_spec {
	uint16_t id_v4, id_v6;
	uint16_t len_v4, len_v6;
	uint32_t pen;
};

static const struct field_spec template_fields[] = {
	{ 8, 27, 4, 16, 0 },              /* sourceIPv4Address / sourceIPv6Address */
	{ 12, 28, 4, 16, 0 },             /* destinationIPv4Address / destinationIPv6Address */
	{ 15, 62, 4, 16, 0 },             /* ipNextHopIPv4Address / ipNextHopIPv6Address */
	{ 156, 156, 8, 8, 0 },            /* flowStartNanoseconds */
	{ 157, 157, 8, 8, 0 },            /* flowEndNanoseconds */
	{ 152, 152, 8, 8, 0 },            /* flowStartMilliseconds: for nfdump 1.7, which ignores 156 */
	{ 153, 153, 8, 8, 0 },            /* flowEndMilliseconds */
	{ 1, 1, 8, 8, 0 },                /* octetDeltaCount */
	{ 2, 2, 8, 8, 0 },                /* packetDeltaCount */
	{ 1, 1, 8, 8, PEN_REVERSE },      /* reverseOctetDeltaCount */
	{ 2, 2, 8, 8, PEN_REVERSE },      /* reversePacketDeltaCount */
	{ 148, 148, 8, 8, 0 },            /* flowId */
	{ 138, 138, 4, 4, 0 },            /* observationPointId, reduced from 8 */
	{ 34, 34, 4, 4, 0 },              /* samplingInterval */
	{ 16, 16, 4, 4, 0 },              /* bgpSourceAsNumber */
	{ 17, 17, 4, 4, 0 },              /* bgpDestinationAsNumber */
	{ 10, 10, 4, 4, 0 },              /* ingressInterface */
	{ 14, 14, 4, 4, 0 },              /* egressInterface */
	{ 7, 7, 2, 2, 0 },                /* sourceTransportPort */
	{ 11, 11, 2, 2, 0 },              /* destinationTransportPort */
	{ 32, 139, 2, 2, 0 },             /* icmpTypeCodeIPv4 / icmpTypeCodeIPv6 */
	{ 58, 58, 2, 2, 0 },              /* vlanId */
	/* Reverse first: nfdump 1.7 drops the PEN and keeps the last one it reads. */
	{ 6, 6, 2, 2, PEN_REVERSE },      /* reverseTcpControlBits */
	{ 6, 6, 2, 2, 0 },                /* tcpControlBits (RFC 7125: 2 bytes) */
	{ 4, 4, 1, 1, 0 },                /* protocolIdentifier */
	{ 136, 136, 1, 1, 0 },            /* flowEndReason */
};

#define N_FIELDS (sizeof(template_fields) / sizeof(template_fields[0]))
#define TAIL_LEN 110
#define REC_LEN_V4 (3 * 4 + TAIL_LEN)
#define REC_LEN_V6 (3 * 16 + TAIL_LEN)

struct msg {
	uint8_t *buf;        /* mtu bytes */
	size_t len;
	uint32_t n_records;  /* data records in it */
};

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_UP };

struct mm_ipfix_exporter {
	struct mm_ipfix_export_config cfg;
	char dest[DEST_TEXT_MAX];
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool tcp;
	int fd;
	enum link_state link;
	uint64_t next_connect_ns;
	uint64_t backoff_ns;

	uint8_t *arena;          /* every message buffer, (queue_msgs + 3) * mtu */
	struct msg build;        /* being filled by write() */
	uint16_t build_set_id;   /* template id of the open data set, 0 if none */
	size_t build_set_off;
	uint64_t build_opened_ns;
	struct msg *queue;       /* ring of built messages, oldest at q_head */
	size_t q_head, q_count;
	struct msg inflight;     /* data message taken from the queue to be sent */
	struct msg tmpl;         /* both templates, built once */

	struct msg *out;         /* &tmpl or &inflight while bytes of it are going out */
	size_t out_off;
	uint32_t seq;            /* data records sent in this stream, mod 2^32 */
	bool tmpl_sent;          /* on this TCP session; on UDP: at least once */
	uint64_t tmpl_sent_ns;
	unsigned msgs_since_tmpl;
	struct mm_ipfix_export_stats st;
};

void mm_ipfix_export_config_default(struct mm_ipfix_export_config *cfg, uint32_t sensor_id)
{
	*cfg = (struct mm_ipfix_export_config){
		.domain_id = sensor_id,
		.mtu = 1400,
		.template_refresh_ns = 60 * MM_NS_PER_SEC,
		.template_refresh_msgs = 64,
		.flush_ns = MM_NS_PER_SEC,
		.queue_msgs = 256,
		.reconnect_min_ns = MM_NS_PER_SEC / 4,
		.reconnect_max_ns = 30 * MM_NS_PER_SEC,
		.drain_ns = 5 * MM_NS_PER_SEC,
	};
}

/* Big-endian stores; memcpy of a swapped word compiles to one store. */
static inline void put16(uint8_t *p, uint16_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap16(v);
#endif
	memcpy(p, &v, 2);
}

static inline void put32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	memcpy(p, &v, 4);
}

static inline void put64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

/*
 * dateTimeNanoseconds (RFC 7011 §6.1.10): NTP seconds since 1900 in the
 * high word (wrapping in 2036 as NTP era 1 does), 2^-32 s units below. A
 * nanosecond is not a whole number of units, so the fraction is the first
 * unit strictly above it (at most 0.24 ns late): decoders that truncate,
 * round, or divide in floating point a hair low (Wireshark 4.0 shows an
 * exact 2^31 as .499999999) all get the nanosecond back.
 */
static inline uint64_t ntp_time(uint64_t unix_ns)
{
	uint64_t sec = unix_ns / MM_NS_PER_SEC, rem = unix_ns % MM_NS_PER_SEC;
	uint64_t frac = (rem << 32) / MM_NS_PER_SEC + 1;

	return (sec + NTP_UNIX_OFFSET) << 32 | frac;
}

/* Everything after the three addresses; offsets follow template_fields. */
static inline void encode_tail(uint8_t *p, const struct mm_flow *f)
{
	/* IANA defines the port elements for transport protocols only. */
	bool icmp = f->proto == 1 || f->proto == 58;

	put64(p + 0, ntp_time(f->first_ns));
	put64(p + 8, ntp_time(f->last_ns));
	put64(p + 16, f->first_ns / 1000000);
	put64(p + 24, f->last_ns / 1000000);
	put64(p + 32, f->fwd_bytes);
	put64(p + 40, f->fwd_packets);
	put64(p + 48, f->rev_bytes);
	put64(p + 56, f->rev_packets);
	put64(p + 64, f->id);
	put32(p + 72, f->sensor_id);
	put32(p + 76, f->sampling_rate > 1 ? f->sampling_rate : 1);
	put32(p + 80, f->src_as);
	put32(p + 84, f->dst_as);
	put32(p + 88, f->in_if);
	put32(p + 92, f->out_if);
	put16(p + 96, icmp ? 0 : f->src_port);
	put16(p + 98, icmp ? 0 : f->dst_port);
	put16(p + 100, icmp ? (uint16_t)(f->icmp_type << 8 | f->icmp_code) : 0);
	put16(p + 102, f->vlan);
	put16(p + 104, f->rev_tcp_flags);
	put16(p + 106, f->fwd_tcp_flags);
	p[108] = f->proto;
	p[109] = f->end_reason;
}

static inline void encode_v4(uint8_t *p, const struct mm_flow *f)
{
	memcpy(p, f->src.b + 12, 4);
	memcpy(p + 4, f->dst.b + 12, 4);
	memcpy(p + 8, f->next_hop.b + 12, 4);
	encode_tail(p + 12, f);
}

static inline void encode_v6(uint8_t *p, const struct mm_flow *f)
{
	memcpy(p, f->src.b, 16);
	memcpy(p + 16, f->dst.b, 16);
	memcpy(p + 32, f->next_hop.b, 16);
	encode_tail(p + 48, f);
}

static uint64_t clock_now(const struct mm_ipfix_exporter *e)
{
	return e->cfg.clock ? e->cfg.clock(e->cfg.clock_ctx) : mm_time_now_ns();
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * MM_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Appends one template record; returns the data record length it describes. */
static size_t put_template(struct msg *m, uint16_t template_id, bool v6)
{
	size_t rec_len = 0;

	put16(m->buf + m->len, template_id);
	put16(m->buf + m->len + 2, (uint16_t)N_FIELDS);
	m->len += 4;
	for (size_t i = 0; i < N_FIELDS; i++) {
		const struct field_spec *fs = &template_fields[i];
		uint16_t id = v6 ? fs->id_v6 : fs->id_v4, len = v6 ? fs->len_v6 : fs->len_v4;

		put16(m->buf + m->len, (uint16_t)(id | (fs->pen ? 0x8000u : 0)));
		put16(m->buf + m->len + 2, len);
		m->len += 4;
		if (fs->pen) {
			put32(m->buf + m->len, fs->pen);
			m->len += 4;
		}
		rec_len += len;
	}
	return rec_len;
}

static void build_template_message(struct mm_ipfix_exporter *e)
{
	struct msg *m = &e->tmpl;

	m->len = MSG_HDR_LEN;
	put16(m->buf + m->len, SET_ID_TEMPLATE);
	m->len += SET_HDR_LEN;
	MM_BUG(put_template(m, MM_IPFIX_TEMPLATE_V4, false) != REC_LEN_V4);
	MM_BUG(put_template(m, MM_IPFIX_TEMPLATE_V6, true) != REC_LEN_V6);
	put16(m->buf + MSG_HDR_LEN + 2, (uint16_t)(m->len - MSG_HDR_LEN));
	MM_BUG(m->len > MM_IPFIX_MTU_MIN);
}

/* Message header (RFC 7011 §3.1), filled when the message starts to go out. */
static void stamp_header(struct mm_ipfix_exporter *e, struct msg *m)
{
	put16(m->buf, IPFIX_VERSION);
	put16(m->buf + 2, (uint16_t)m->len);
	put32(m->buf + 4, (uint32_t)(clock_now(e) / MM_NS_PER_SEC));
	put32(m->buf + 8, e->seq);
	put32(m->buf + 12, e->cfg.domain_id);
	e->seq += m->n_records;
}

/* ---- building ---------------------------------------------------------- */

static void close_set(struct mm_ipfix_exporter *e)
{
	if (!e->build_set_id)
		return;
	put16(e->build.buf + e->build_set_off + 2, (uint16_t)(e->build.len - e->build_set_off));
	e->build_set_id = 0;
}

static void swap_msg(struct msg *a, struct msg *b)
{
	struct msg t = *a;

	*a = *b;
	*b = t;
}

/* Moves the built message to the queue; at the cap the oldest queued one goes. */
static void push_build(struct mm_ipfix_exporter *e)
{
	struct msg *slot;

	close_set(e);
	if (!e->build.n_records)
		return;
	if (e->q_count == e->cfg.queue_msgs) {
		struct msg *old = &e->queue[e->q_head];

		e->st.records_dropped += old->n_records;
		e->st.records_queued -= old->n_records;
		e->st.queue_full++;
		old->n_records = 0;
		e->q_head = (e->q_head + 1) % e->cfg.queue_msgs;
		e->q_count--;
	}
	slot = &e->queue[(e->q_head + e->q_count) % e->cfg.queue_msgs];
	swap_msg(slot, &e->build);
	e->q_count++;
	e->build.len = MSG_HDR_LEN;
	e->build.n_records = 0;
}

/* ---- transport --------------------------------------------------------- */

static void close_fd(struct mm_ipfix_exporter *e)
{
	if (e->fd >= 0)
		close(e->fd);
	e->fd = -1;
}

static void schedule_reconnect(struct mm_ipfix_exporter *e)
{
	close_fd(e);
	e->link = LINK_DOWN;
	e->out = NULL;
	e->out_off = 0;
	e->next_connect_ns = clock_now(e) + e->backoff_ns;
	e->backoff_ns = e->backoff_ns * 2 > e->cfg.reconnect_max_ns ? e->cfg.reconnect_max_ns
								     : e->backoff_ns * 2;
}

static void on_connected(struct mm_ipfix_exporter *e)
{
	e->link = LINK_UP;
	e->st.connects++;
	e->seq = 0;
	e->tmpl_sent = false;
	e->backoff_ns = e->cfg.reconnect_min_ns;
}

static void connect_failed(struct mm_ipfix_exporter *e)
{
	e->st.connect_failures++;
	schedule_reconnect(e);
}

static void start_connect(struct mm_ipfix_exporter *e)
{
	e->fd = socket(e->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (e->fd < 0) {
		connect_failed(e);
		return;
	}
	if (connect(e->fd, (const struct sockaddr *)&e->addr, e->addr_len) == 0)
		on_connected(e);
	else if (errno == EINPROGRESS)
		e->link = LINK_CONNECTING;
	else
		connect_failed(e);
}

/* A TCP collector never sends; readable or hung up means it closed on us. */
static bool peer_closed(const struct mm_ipfix_exporter *e)
{
	struct pollfd p = { .fd = e->fd, .events = POLLIN | POLLRDHUP };

	return poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR));
}

/* True when the transport can take bytes now; drives TCP (re)connection. */
static bool link_ready(struct mm_ipfix_exporter *e)
{
	struct pollfd p;
	int err = 0;
	socklen_t err_len = sizeof(err);

	if (!e->tcp || e->link == LINK_UP)
		return true;
	if (e->link == LINK_DOWN) {
		if (clock_now(e) < e->next_connect_ns)
			return false;
		start_connect(e);
		return e->link == LINK_UP;
	}
	p = (struct pollfd){ .fd = e->fd, .events = POLLOUT };
	if (poll(&p, 1, 0) <= 0)
		return false;
	if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 || err != 0) {
		connect_failed(e);
		return false;
	}
	on_connected(e);
	return true;
}

static bool have_data(const struct mm_ipfix_exporter *e)
{
	return e->inflight.n_records || e->q_count;
}

static bool templates_due(const struct mm_ipfix_exporter *e)
{
	if (!e->tmpl_sent)
		return true;
	if (e->tcp)
		return false;
	if (e->cfg.template_refresh_msgs && e->msgs_since_tmpl >= e->cfg.template_refresh_msgs)
		return true;
	return e->cfg.template_refresh_ns && clock_now(e) - e->tmpl_sent_ns >= e->cfg.template_refresh_ns;
}

/* Chooses the next message to send and stamps it; false if there is none. */
static bool pick_next(struct mm_ipfix_exporter *e)
{
	if (!have_data(e))
		return false;
	if (e->tcp && peer_closed(e)) {
		e->st.disconnects++;
		schedule_reconnect(e);
		return false;
	}
	if (templates_due(e)) {
		e->out = &e->tmpl;
	} else {
		if (!e->inflight.n_records) {
			swap_msg(&e->inflight, &e->queue[e->q_head]);
			e->q_head = (e->q_head + 1) % e->cfg.queue_msgs;
			e->q_count--;
		}
		e->out = &e->inflight;
	}
	e->out_off = 0;
	stamp_header(e, e->out);
	return true;
}

static void message_done(struct mm_ipfix_exporter *e, bool delivered)
{
	struct msg *m = e->out;

	if (m == &e->tmpl) {
		/* A refused UDP template still counts as an attempt: the refresh retries. */
		e->tmpl_sent = true;
		e->tmpl_sent_ns = clock_now(e);
		e->msgs_since_tmpl = 0;
		e->st.template_messages_sent += delivered;
	} else if (delivered) {
		e->st.records_sent += m->n_records;
		e->st.messages_sent++;
		e->msgs_since_tmpl++;
	} else {
		e->st.records_failed += m->n_records;
	}
	if (m != &e->tmpl) {
		e->st.records_queued -= m->n_records;
		m->n_records = 0;
	}
	if (delivered)
		e->st.bytes_sent += m->len;
	e->out = NULL;
	e->out_off = 0;
}

/* Sends until the queue is empty or the transport would block. */
static void pump(struct mm_ipfix_exporter *e)
{
	for (;;) {
		ssize_t r;

		if (!link_ready(e))
			return;
		if (!e->out && !pick_next(e))
			return;
		r = send(e->fd, e->out->buf + e->out_off, e->out->len - e->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
				return;
			if (e->tcp) {
				/* The partial message is resent whole on the next session. */
				e->st.disconnects++;
				schedule_reconnect(e);
				return;
			}
			e->st.send_errors++;
			message_done(e, false);
			continue;
		}
		e->out_off += (size_t)r;
		if (e->out_off == e->out->len)
			message_done(e, true);
	}
}

/* ---- public ------------------------------------------------------------ */

static void encode_one(struct mm_ipfix_exporter *e, const struct mm_flow *f, uint64_t now)
{
	bool v4 = mm_addr_is_v4(&f->src);
	uint16_t set_id = v4 ? MM_IPFIX_TEMPLATE_V4 : MM_IPFIX_TEMPLATE_V6;
	size_t rec_len = v4 ? REC_LEN_V4 : REC_LEN_V6;
	struct msg *b = &e->build;

	if (v4 != mm_addr_is_v4(&f->dst)) {
		e->st.records_skipped++;
		return;
	}
	if (b->len + rec_len + (e->build_set_id == set_id ? 0 : SET_HDR_LEN) > e->cfg.mtu) {
		push_build(e);
		pump(e);
	}
	if (e->build_set_id != set_id) {
		close_set(e);
		e->build_set_id = set_id;
		e->build_set_off = b->len;
		put16(b->buf + b->len, set_id);
		b->len += SET_HDR_LEN;
	}
	if (!b->n_records)
		e->build_opened_ns = now;
	if (v4)
		encode_v4(b->buf + b->len, f);
	else
		encode_v6(b->buf + b->len, f);
	b->len += rec_len;
	b->n_records++;
	e->st.records_queued++;
}

static void flush_if_stale(struct mm_ipfix_exporter *e, uint64_t now)
{
	if (e->build.n_records && now - e->build_opened_ns >= e->cfg.flush_ns)
		push_build(e);
}

void mm_ipfix_exporter_write(struct mm_ipfix_exporter *e, const struct mm_flow *flows, size_t n)
{
	uint64_t now = clock_now(e);

	e->st.records_in += n;
	for (size_t i = 0; i < n; i++)
		encode_one(e, &flows[i], now);
	flush_if_stale(e, now);
	pump(e);
}

void mm_ipfix_exporter_poll(struct mm_ipfix_exporter *e)
{
	flush_if_stale(e, clock_now(e));
	pump(e);
}

void mm_ipfix_exporter_flush(struct mm_ipfix_exporter *e)
{
	push_build(e);
	pump(e);
}

static uint64_t records_waiting(const struct mm_ipfix_exporter *e)
{
	uint64_t n = e->inflight.n_records;

	for (size_t i = 0; i < e->q_count; i++)
		n += e->queue[(e->q_head + i) % e->cfg.queue_msgs].n_records;
	return n;
}

int mm_ipfix_exporter_finish(struct mm_ipfix_exporter *e)
{
	uint64_t deadline = monotonic_ns() + e->cfg.drain_ns, lost;

	mm_ipfix_exporter_flush(e);
	while (have_data(e) || e->out) {
		uint64_t now = monotonic_ns(), wait_ms;
		struct pollfd p = { .fd = e->fd, .events = POLLOUT };

		if (now >= deadline)
			break;
		wait_ms = (deadline - now) / 1000000 + 1;
		if (wait_ms > DRAIN_WAIT_STEP_MS)
			wait_ms = DRAIN_WAIT_STEP_MS;
		/* With no socket (TCP down) this only sleeps until the next attempt. */
		poll(&p, e->fd >= 0 ? 1 : 0, (int)wait_ms);
		pump(e);
	}
	lost = records_waiting(e);
	if (!lost)
		return 0;
	e->st.records_failed += lost;
	e->st.records_queued -= lost;
	e->inflight.n_records = 0;
	e->q_count = 0;
	e->out = NULL;
	return mm_fail(MM_EIO, "ipfix: %s: %llu records not sent within the drain time (collector unreachable)",
		       e->dest, (unsigned long long)lost);
}

void mm_ipfix_exporter_get_stats(const struct mm_ipfix_exporter *e, struct mm_ipfix_export_stats *out)
{
	*out = e->st;
}

/* Splits "[scheme://]HOST:PORT" / "[scheme://][V6]:PORT" into its parts. */
static int split_dest(const char *text, bool *tcp, char *host, size_t host_cap, char *port, size_t port_cap)
{
	const char *s = text, *colon, *host_start, *host_end;
	size_t len;

	*tcp = false;
	if (strncmp(s, "tcp://", 6) == 0) {
		*tcp = true;
		s += 6;
	} else if (strncmp(s, "udp://", 6) == 0) {
		s += 6;
	} else if (strstr(s, "://")) {
		return mm_fail(MM_EINVAL, "ipfix: destination '%s': transport must be udp:// or tcp://", text);
	}
	if (*s == '[') {
		host_start = s + 1;
		host_end = strchr(host_start, ']');
		if (!host_end || host_end[1] != ':')
			return mm_fail(MM_EINVAL, "ipfix: destination '%s': expected [IPv6]:PORT", text);
		colon = host_end + 1;
	} else {
		host_start = s;
		colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':'))
			return mm_fail(MM_EINVAL, "ipfix: destination '%s': put an IPv6 address in brackets, "
				       "as in [2001:db8::1]:4739", text);
		if (!colon)
			return mm_fail(MM_EINVAL, "ipfix: destination '%s': expected HOST:PORT", text);
		host_end = colon;
	}
	len = (size_t)(host_end - host_start);
	if (len == 0 || len >= host_cap)
		return mm_fail(MM_EINVAL, "ipfix: destination '%s': empty or overlong host", text);
	memcpy(host, host_start, len);
	host[len] = '\0';
	s = colon + 1;
	len = strlen(s);
	if (len == 0 || len >= port_cap || strspn(s, "0123456789") != len || atoi(s) < 1 || atoi(s) > 65535)
		return mm_fail(MM_EINVAL, "ipfix: destination '%s': port must be 1..65535", text);
	memcpy(port, s, len + 1);
	return 0;
}

static int resolve_dest(struct mm_ipfix_exporter *e, const char *text)
{
	char host[DEST_TEXT_MAX], port[8];
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_flags = AI_NUMERICSERV }, *res = NULL;
	int rc;

	if (strlen(text) >= sizeof(e->dest))
		return mm_fail(MM_EINVAL, "ipfix: destination '%.40s...': longer than %d bytes", text,
			       DEST_TEXT_MAX - 1);
	rc = split_dest(text, &e->tcp, host, sizeof(host), port, sizeof(port));
	if (rc)
		return rc;
	hints.ai_socktype = e->tcp ? SOCK_STREAM : SOCK_DGRAM;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		return mm_fail(MM_EINVAL, "ipfix: destination '%s': %s", text, gai_strerror(rc));
	memcpy(&e->addr, res->ai_addr, res->ai_addrlen);
	e->addr_len = res->ai_addrlen;
	freeaddrinfo(res);
	snprintf(e->dest, sizeof(e->dest), "%s", text);
	return 0;
}

static int open_udp(struct mm_ipfix_exporter *e)
{
	e->fd = socket(e->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (e->fd < 0)
		return mm_fail(MM_EIO, "ipfix: %s: socket: %s", e->dest, strerror(errno));
	/* connect() so the kernel reports ICMP errors and send() needs no address. */
	if (connect(e->fd, (const struct sockaddr *)&e->addr, e->addr_len) != 0)
		return mm_fail(MM_EIO, "ipfix: %s: connect: %s", e->dest, strerror(errno));
	e->link = LINK_UP;
	return 0;
}

static int check_config(const struct mm_ipfix_export_config *cfg)
{
	if (!cfg->dest)
		return mm_fail(MM_EINVAL, "ipfix: no destination given");
	if (cfg->mtu < MM_IPFIX_MTU_MIN || cfg->mtu > MM_IPFIX_MTU_MAX)
		return mm_fail(MM_EINVAL, "ipfix: mtu %zu outside %d..%d", cfg->mtu, MM_IPFIX_MTU_MIN,
			       MM_IPFIX_MTU_MAX);
	if (cfg->queue_msgs < 2 || cfg->queue_msgs > QUEUE_MSGS_MAX)
		return mm_fail(MM_EINVAL, "ipfix: queue of %zu messages outside 2..%u", cfg->queue_msgs,
			       QUEUE_MSGS_MAX);
	if (!cfg->reconnect_min_ns || cfg->reconnect_max_ns < cfg->reconnect_min_ns)
		return mm_fail(MM_EINVAL, "ipfix: reconnect backoff needs 0 < min <= max");
	return 0;
}

int mm_ipfix_exporter_new(struct mm_ipfix_exporter **out, const struct mm_ipfix_export_config *cfg)
{
	struct mm_ipfix_exporter *e = NULL;
	size_t n_bufs;
	int rc;

	*out = NULL;
	rc = check_config(cfg);
	if (rc)
		goto out;
	rc = MM_ENOMEM;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->fd = -1;
	e->cfg = *cfg;
	e->cfg.dest = NULL;
	n_bufs = cfg->queue_msgs + 3;
	e->arena = malloc(n_bufs * cfg->mtu);
	e->queue = calloc(cfg->queue_msgs, sizeof(*e->queue));
	if (!e->arena || !e->queue)
		goto out;
	e->build.buf = e->arena;
	e->build.len = MSG_HDR_LEN;
	e->inflight.buf = e->arena + cfg->mtu;
	e->tmpl.buf = e->arena + 2 * cfg->mtu;
	for (size_t i = 0; i < cfg->queue_msgs; i++)
		e->queue[i].buf = e->arena + (3 + i) * cfg->mtu;
	build_template_message(e);
	e->backoff_ns = cfg->reconnect_min_ns;
	rc = resolve_dest(e, cfg->dest);
	if (rc)
		goto out;
	if (e->tcp)
		start_connect(e);
	else
		rc = open_udp(e);
out:
	if (rc) {
		mm_ipfix_exporter_free(e);
		return rc == MM_ENOMEM ? mm_fail(rc, "ipfix: out of memory for %zu messages", cfg->queue_msgs)
				       : rc;
	}
	*out = e;
	return 0;
}

void mm_ipfix_exporter_free(struct mm_ipfix_exporter *e)
{
	if (!e)
		return;
	close_fd(e);
	free(e->queue);
	free(e->arena);
	free(e);
}
