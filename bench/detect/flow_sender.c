/*
 * Export sender of the detection benchmark (bench/detect/run): sends every
 * flow of a store (the standard scenario's) once, in export order, as a
 * NetFlow v9 stream over UDP at a target rate in records/s (0: as fast as
 * it can), so a collector with detection on has real attacks to find.
 * Prints what it sent as key=value lines the run script reads.
 *
 * The records keep the scenario's times (uptime-relative, as routers send
 * them, with each header's export time that of its newest flow: the stream
 * is a replay, not the wall clock), addresses, ports, protocol, the
 * originator's TCP flags and both directions' counters (initiator and
 * responder octets and packets, IANA 231/232 and 298/299). NetFlow v9 has
 * no element for the responder's TCP flags: those are not sent.
 * Usage: detect_flow_sender DATA --to IPV4:PORT [--rate RECORDS_PER_S]
 */
#include "bench_flows.h"

#include "mamori/addr.h"
#include "mamori/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEADER_LEN 20
#define SET_HEADER_LEN 4
#define MSG_MAX 1400          /* a message is filled up to this */
#define TEMPLATE_EVERY 4096   /* data messages between template messages */
#define BATCH 32              /* messages per sendmmsg */
#define SOURCE_ID 1

enum { TMPL_V4 = 256, TMPL_V6 = 257 };

/* One record layout per family: the same elements, addresses of 4 or 16 bytes. */
struct field {
	uint16_t id, len;
};

static const struct field v4_fields[] = {
	{ 8, 4 }, { 12, 4 }, { 7, 2 }, { 11, 2 }, { 4, 1 }, { 6, 1 },
	{ 231, 8 }, { 298, 8 }, { 232, 8 }, { 299, 8 }, { 22, 4 }, { 21, 4 },
};

static const struct field v6_fields[] = {
	{ 27, 16 }, { 28, 16 }, { 7, 2 }, { 11, 2 }, { 4, 1 }, { 6, 1 },
	{ 231, 8 }, { 298, 8 }, { 232, 8 }, { 299, 8 }, { 22, 4 }, { 21, 4 },
};

#define N_FIELDS (sizeof(v4_fields) / sizeof(v4_fields[0]))
#define V4_REC_LEN 54
#define V6_REC_LEN 78

/* Built messages, back to back, each with its length and record count. */
struct msgs {
	uint8_t *buf;
	size_t len, cap;
	size_t *off;
	uint32_t *n_records;
	size_t n, cap_n;
};

static uint8_t *put_be(uint8_t *p, unsigned len, uint64_t v)
{
	for (unsigned i = len; i-- > 0; v >>= 8)
		p[i] = (uint8_t)v;
	return p + len;
}

/* Room for one more message of at most MSG_MAX bytes; returns where it starts. */
static uint8_t *msg_begin(struct msgs *m)
{
	if (m->n == m->cap_n) {
		size_t cap = m->cap_n ? 2 * m->cap_n : 4096;
		size_t *off = realloc(m->off, (cap + 1) * sizeof(*off));
		uint32_t *nr = off ? realloc(m->n_records, cap * sizeof(*nr)) : NULL;

		if (off)
			m->off = off;
		if (!nr)
			return NULL;
		m->n_records = nr;
		m->cap_n = cap;
	}
	if (m->len + MSG_MAX > m->cap) {
		size_t cap = m->cap ? 2 * m->cap : (size_t)1 << 24;
		uint8_t *buf = realloc(m->buf, cap);

		if (!buf)
			return NULL;
		m->buf = buf;
		m->cap = cap;
	}
	m->off[m->n] = m->len;
	return m->buf + m->len;
}

/* Closes the message begun at p, ending at end, holding n_records data records (count: all records). */
static void msg_end(struct msgs *m, uint8_t *end, uint32_t n_records, uint32_t count, uint32_t uptime_ms,
		    uint32_t unix_secs)
{
	uint8_t *p = m->buf + m->off[m->n];

	put_be(p, 2, 9);
	put_be(p + 2, 2, count);
	put_be(p + 4, 4, uptime_ms);
	put_be(p + 8, 4, unix_secs);
	put_be(p + 12, 4, (uint32_t)m->n); /* sequence: export packets sent before this one */
	put_be(p + 16, 4, SOURCE_ID);
	m->n_records[m->n] = n_records;
	m->len = (size_t)(end - m->buf);
	m->n++;
	m->off[m->n] = m->len;
}

static int add_templates(struct msgs *m, uint32_t uptime_ms, uint32_t unix_secs)
{
	uint8_t *start = msg_begin(m), *p;

	if (!start)
		return mm_fail(MM_ENOMEM, "flow_sender: messages");
	p = start + HEADER_LEN;
	p = put_be(p, 2, 0); /* template flowset */
	p = put_be(p, 2, SET_HEADER_LEN + 2 * (4 + 4 * N_FIELDS));
	for (int t = 0; t < 2; t++) {
		const struct field *fields = t == 0 ? v4_fields : v6_fields;

		p = put_be(p, 2, t == 0 ? TMPL_V4 : TMPL_V6);
		p = put_be(p, 2, N_FIELDS);
		for (size_t i = 0; i < N_FIELDS; i++) {
			p = put_be(p, 2, fields[i].id);
			p = put_be(p, 2, fields[i].len);
		}
	}
	msg_end(m, p, 0, 2, uptime_ms, unix_secs);
	return 0;
}

static uint8_t *put_addr(uint8_t *p, const struct mm_addr *a, bool v4)
{
	if (v4) {
		memcpy(p, a->b + 12, 4);
		return p + 4;
	}
	memcpy(p, a->b, 16);
	return p + 16;
}

static uint8_t *put_record(uint8_t *p, const struct mm_flow *f, uint64_t boot_ms)
{
	bool v4 = mm_addr_is_v4(&f->src);

	p = put_addr(p, &f->src, v4);
	p = put_addr(p, &f->dst, v4);
	p = put_be(p, 2, f->src_port);
	p = put_be(p, 2, f->dst_port);
	p = put_be(p, 1, f->proto);
	p = put_be(p, 1, f->fwd_tcp_flags);
	p = put_be(p, 8, f->fwd_bytes);
	p = put_be(p, 8, f->fwd_packets);
	p = put_be(p, 8, f->rev_bytes);
	p = put_be(p, 8, f->rev_packets);
	p = put_be(p, 4, f->first_ns / 1000000 - boot_ms);
	return put_be(p, 4, f->last_ns / 1000000 - boot_ms);
}

/* Appends a data flowset of template tmpl holding len bytes of records; 0 bytes: none. */
static uint8_t *put_set(uint8_t *p, uint16_t tmpl, const uint8_t *records, size_t len)
{
	size_t padded = (len + 3) & ~(size_t)3; /* RFC 3954: flowsets padded to 4 bytes */

	if (len == 0)
		return p;
	p = put_be(p, 2, tmpl);
	p = put_be(p, 2, SET_HEADER_LEN + padded);
	memcpy(p, records, len);
	memset(p + len, 0, padded - len);
	return p + padded;
}

/*
 * Encodes every flow in order: the flows of a message go to its IPv4 and
 * its IPv6 flowset (the scenario interleaves the families closely). The
 * exporter "booted" an hour before the earliest flow started, so every
 * uptime fits in 32 bits for flows spanning up to 48 days.
 */
static int build(struct msgs *m, const struct bench_flows *fs)
{
	uint8_t sets[2][MSG_MAX];
	uint64_t boot_ms = UINT64_MAX;
	size_t i = 0, data_msgs = 0;

	memset(m, 0, sizeof(*m));
	if (fs->n == 0)
		return mm_fail(MM_EINVAL, "flow_sender: no flows to send");
	for (size_t k = 0; k < fs->n; k++)
		if (fs->v[k].first_ns / 1000000 < boot_ms)
			boot_ms = fs->v[k].first_ns / 1000000;
	boot_ms = boot_ms > 3600000 ? boot_ms - 3600000 : 0;
	if ((fs->v[fs->n - 1].last_ns / 1000000 - boot_ms) >> 32)
		return mm_fail(MM_EINVAL, "flow_sender: the flows span more than 48 days");
	while (i < fs->n) {
		size_t len[2] = { 0, 0 }; /* bytes of records in the IPv4 and the IPv6 set */
		uint64_t last_ms = fs->v[i].last_ns / 1000000;
		uint32_t n = 0;
		uint8_t *start, *p;

		if (data_msgs % TEMPLATE_EVERY == 0 &&
		    add_templates(m, (uint32_t)(last_ms - boot_ms), (uint32_t)(last_ms / 1000)) < 0)
			return MM_ENOMEM;
		if (!(start = msg_begin(m)))
			return mm_fail(MM_ENOMEM, "flow_sender: messages");
		/* Room: header, two set headers and their padding, the records so far and the next. */
		while (i < fs->n) {
			int fam = mm_addr_is_v4(&fs->v[i].src) ? 0 : 1;
			size_t rec_len = fam == 0 ? V4_REC_LEN : V6_REC_LEN;

			if (HEADER_LEN + 2 * (SET_HEADER_LEN + 3) + len[0] + len[1] + rec_len > MSG_MAX)
				break;
			put_record(sets[fam] + len[fam], &fs->v[i], boot_ms);
			len[fam] += rec_len;
			last_ms = fs->v[i].last_ns / 1000000;
			i++;
			n++;
		}
		p = put_set(start + HEADER_LEN, TMPL_V4, sets[0], len[0]);
		p = put_set(p, TMPL_V6, sets[1], len[1]);
		/* Exported when its newest flow ended: the collector finds the flows' own times. */
		msg_end(m, p, n, n, (uint32_t)(last_ms - boot_ms), (uint32_t)((last_ms + 999) / 1000));
		data_msgs++;
	}
	return 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t due_ns)
{
	struct timespec ts = { .tv_sec = (time_t)(due_ns / 1000000000ull), .tv_nsec = (long)(due_ns % 1000000000ull) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

struct totals {
	uint64_t messages, records, send_errors;
};

/* Sends every message in order, BATCH per call, pacing by records sent. */
static void send_all(int fd, const struct msgs *m, double rate, struct totals *t)
{
	uint64_t start = mono_ns();

	for (size_t first = 0; first < m->n; first += BATCH) {
		struct mmsghdr mh[BATCH];
		struct iovec iov[BATCH];
		size_t n = m->n - first < BATCH ? m->n - first : BATCH;
		size_t done = 0;

		memset(mh, 0, sizeof(mh));
		for (size_t k = 0; k < n; k++) {
			iov[k] = (struct iovec){ .iov_base = m->buf + m->off[first + k],
						 .iov_len = m->off[first + k + 1] - m->off[first + k] };
			mh[k].msg_hdr.msg_iov = &iov[k];
			mh[k].msg_hdr.msg_iovlen = 1;
		}
		while (done < n) {
			int sent = sendmmsg(fd, mh + done, (unsigned)(n - done), 0);

			if (sent < 0 && errno == EINTR)
				continue;
			if (sent <= 0) { /* counted and skipped: the collector counts it lost */
				t->send_errors++;
				done++;
				continue;
			}
			for (size_t k = done; k < done + (size_t)sent; k++) {
				t->messages++;
				t->records += m->n_records[first + k];
			}
			done += (size_t)sent;
		}
		if (rate > 0)
			sleep_until(start + (uint64_t)((double)t->records / rate * 1e9));
	}
}

static int open_socket(const char *to, int *fd_out)
{
	char host[64];
	const char *colon = strrchr(to, ':');
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int port = colon ? atoi(colon + 1) : 0, fd, sndbuf = 4 << 20;

	if (!colon || (size_t)(colon - to) >= sizeof(host) || port < 1 || port > 65535)
		return mm_fail(MM_EINVAL, "--to: '%s' is not IPV4:PORT", to);
	memcpy(host, to, (size_t)(colon - to));
	host[colon - to] = '\0';
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return mm_fail(MM_EINVAL, "--to: '%s' is not an IPv4 address", host);
	sa.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		return mm_fail(MM_EIO, "socket: %s", strerror(errno));
	/* Best effort: a bigger send buffer only smooths bursts. */
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return mm_fail(MM_EIO, "connect %s: %s", to, strerror(errno));
	}
	*fd_out = fd;
	return 0;
}

int main(int argc, char **argv)
{
	struct bench_flows fs = { 0 };
	struct msgs m = { 0 };
	struct totals t = { 0 };
	const char *to = NULL;
	double rate = 0, seconds;
	uint64_t t0;
	int fd = -1, rc;

	for (int i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--to") == 0)
			to = argv[i + 1];
		else if (strcmp(argv[i], "--rate") == 0)
			rate = atof(argv[i + 1]);
		else
			to = NULL; /* an unknown option: the usage below */
	}
	if (argc < 4 || !to || rate < 0) {
		fprintf(stderr, "usage: detect_flow_sender DATA --to IPV4:PORT [--rate RECORDS_PER_S]\n");
		return 1;
	}
	rc = bench_flows_load(&fs, argv[1]);
	if (rc == 0)
		rc = build(&m, &fs);
	if (rc == 0)
		rc = open_socket(to, &fd);
	if (rc == 0) {
		t0 = mono_ns();
		send_all(fd, &m, rate, &t);
		seconds = (double)(mono_ns() - t0) / 1e9;
		printf("sent messages=%" PRIu64 " records=%" PRIu64 " send-errors=%" PRIu64
		       " seconds=%.3f records-per-s=%.0f\n",
		       t.messages, t.records, t.send_errors, seconds, seconds > 0 ? (double)t.records / seconds : 0);
	}
	if (fd >= 0)
		close(fd);
	free(m.buf);
	free(m.off);
	free(m.n_records);
	bench_flows_free(&fs);
	if (rc)
		fprintf(stderr, "detect_flow_sender: %s\n", mm_last_error());
	return rc ? 1 : 0;
}
