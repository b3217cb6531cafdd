/*
 * Export sender of the collect benchmark (bench/collect/run): sends the
 * deterministic NetFlow v9 and/or IPFIX streams of export_gen.c, one UDP
 * socket (source port) per stream like two exporters, with sendmmsg at a
 * target rate in records/s or as fast as it can, and prints what it sent
 * as key=value lines the run script reads.
 */
#include "export_gen.h"

#include "mamori/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32               /* messages per sendmmsg */
#define RING_MSGS 1024         /* distinct data messages per stream, unless --ring */
#define MAX_STREAMS 2
#define SNDBUF_BYTES (4 << 20)

struct stream {
	struct gen_stream gen;
	int fd;
	uint64_t messages, records, packets, bytes;
	uint64_t send_errors;      /* messages sendmmsg refused (other than EINTR) */
};

struct options {
	struct sockaddr_storage to;
	socklen_t to_len;
	uint16_t versions[MAX_STREAMS];
	size_t n_streams;
	double rate;               /* records/s; 0 = as fast as possible */
	double duration;           /* seconds */
	uint64_t seed;
	uint64_t records;          /* stop after this many records instead; 0 = by duration */
	uint32_t ring;             /* distinct data messages per stream */
};

static const char usage[] =
	"usage: collect_sender --to HOST:PORT [--version 9|10|both] [--rate RECORDS_PER_S]\n"
	"                      [--duration SECONDS | --records N] [--ring MESSAGES] [--seed N]\n"
	"  Sends NetFlow v9 and/or IPFIX (~30 flows per 1400-byte message) over UDP;\n"
	"  --rate 0 (default) sends as fast as possible. --records N stops at the first\n"
	"  whole message that reaches N records. --ring: distinct data messages per\n"
	"  stream (default 1024; more repeat no record). Prints key=value totals.\n";

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_to(struct options *o, const char *text)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	struct sockaddr_in *v4 = (struct sockaddr_in *)&o->to;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&o->to;
	size_t host_len;
	long port;
	char *end;

	if (!colon || colon == text || (size_t)(colon - text) >= sizeof(host))
		return mm_fail(MM_EINVAL, "--to: '%s' is not HOST:PORT", text);
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return mm_fail(MM_EINVAL, "--to: '%s': bad port", text);
	host_len = (size_t)(colon - text);
	if (text[0] == '[' && host_len >= 2 && text[host_len - 1] == ']') {
		memcpy(host, text + 1, host_len - 2);
		host[host_len - 2] = '\0';
	} else {
		memcpy(host, text, host_len);
		host[host_len] = '\0';
	}
	memset(&o->to, 0, sizeof(o->to));
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		o->to_len = sizeof(*v4);
	} else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		o->to_len = sizeof(*v6);
	} else {
		return mm_fail(MM_EINVAL, "--to: '%s' is not an IPv4 or [IPv6] address", host);
	}
	return 0;
}

static int parse_number(const char *opt, const char *text, double *out)
{
	char *end;

	*out = strtod(text, &end);
	if (end == text || *end || !(*out >= 0))
		return mm_fail(MM_EINVAL, "%s: '%s' is not a number >= 0", opt, text);
	return 0;
}

static int parse_versions(struct options *o, const char *text)
{
	if (strcmp(text, "both") == 0) {
		o->versions[0] = 9;
		o->versions[1] = 10;
		o->n_streams = 2;
	} else if (strcmp(text, "9") == 0 || strcmp(text, "10") == 0) {
		o->versions[0] = (uint16_t)atoi(text);
		o->n_streams = 1;
	} else {
		return mm_fail(MM_EINVAL, "--version: '%s' is not 9, 10 or both", text);
	}
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "to", required_argument, NULL, 't' },   { "version", required_argument, NULL, 'v' },
		{ "rate", required_argument, NULL, 'r' }, { "duration", required_argument, NULL, 'd' },
		{ "seed", required_argument, NULL, 's' }, { "records", required_argument, NULL, 'n' },
		{ "ring", required_argument, NULL, 'g' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double seed = 1, records = 0, ring = RING_MSGS;
	int c, rc = 0;

	*o = (struct options){ .versions = { 9, 10 }, .n_streams = 2, .duration = 5 };
	while (!rc && (c = getopt_long(argc, argv, "t:v:r:d:s:n:g:h", longopts, NULL)) != -1) {
		switch (c) {
		case 't': rc = parse_to(o, optarg); break;
		case 'r': rc = parse_number("--rate", optarg, &o->rate); break;
		case 'd': rc = parse_number("--duration", optarg, &o->duration); break;
		case 's': rc = parse_number("--seed", optarg, &seed); break;
		case 'n': rc = parse_number("--records", optarg, &records); break;
		case 'g': rc = parse_number("--ring", optarg, &ring); break;
		case 'v': rc = parse_versions(o, optarg); break;
		case 'h': fputs(usage, stdout); exit(0);
		default: fputs(usage, stderr); exit(1);
		}
	}
	o->seed = (uint64_t)seed;
	o->records = (uint64_t)records;
	o->ring = (uint32_t)ring;
	if (!rc && (ring < 1 || ring > 1 << 24))
		rc = mm_fail(MM_EINVAL, "--ring: %.0f is not 1..16777216", ring);
	if (!rc && !o->to_len)
		rc = mm_fail(MM_EINVAL, "--to is required");
	return rc;
}

static int open_stream(struct stream *s, const struct options *o, uint16_t version, uint32_t domain)
{
	int sndbuf = SNDBUF_BYTES;

	s->fd = socket(o->to.ss_family, SOCK_DGRAM, 0);
	if (s->fd < 0)
		return mm_fail(MM_EIO, "socket: %s", strerror(errno));
	/* Best effort: a bigger send buffer only smooths bursts. */
	setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (connect(s->fd, (const struct sockaddr *)&o->to, o->to_len) < 0)
		return mm_fail(MM_EIO, "connect: %s", strerror(errno));
	return gen_stream_init(&s->gen, version, domain, o->ring, o->seed * 1000 + version, (uint32_t)time(NULL));
}

/*
 * Sends one batch of the stream's next messages, fewer once they hold the
 * records still wanted; a failed message is counted and skipped.
 */
static void send_batch(struct stream *s, uint64_t start_ns, uint64_t wanted)
{
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	const struct gen_msg *gm[BATCH];
	uint32_t now_secs = (uint32_t)time(NULL), elapsed_ms = (uint32_t)((mono_ns() - start_ns) / 1000000);
	uint64_t taken = 0;
	int done = 0, n_msgs = 0;

	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH && taken < wanted; i++, n_msgs++) {
		gm[i] = gen_stream_next(&s->gen, now_secs, elapsed_ms);
		taken += gm[i]->n_records;
		iov[i] = (struct iovec){ .iov_base = (void *)gm[i]->data, .iov_len = gm[i]->len };
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	while (done < n_msgs) {
		int n = sendmmsg(s->fd, msgs + done, (unsigned)(n_msgs - done), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* Loopback refuses a datagram (ECONNREFUSED) while no one listens yet. */
			s->send_errors++;
			done++;
			continue;
		}
		for (int i = done; i < done + n; i++) {
			s->messages++;
			s->records += gm[i]->n_records;
			s->packets += gm[i]->packets;
			s->bytes += gm[i]->bytes;
		}
		done += n;
	}
}

static struct stream *least_sent(struct stream *streams, size_t n)
{
	struct stream *best = &streams[0];

	for (size_t i = 1; i < n; i++)
		if (streams[i].records < best->records)
			best = &streams[i];
	return best;
}

/* Sleeps until the records already sent are due at the target rate. */
static void pace(const struct options *o, uint64_t records, uint64_t start_ns)
{
	uint64_t due_ns;
	struct timespec ts;

	if (o->rate <= 0)
		return;
	due_ns = start_ns + (uint64_t)((double)records / o->rate * 1e9);
	if (due_ns <= mono_ns())
		return;
	ts.tv_sec = (time_t)(due_ns / 1000000000ull);
	ts.tv_nsec = (long)(due_ns % 1000000000ull);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void print_totals(const struct stream *streams, size_t n, double seconds)
{
	uint64_t records = 0, packets = 0, bytes = 0, messages = 0, errors = 0;

	for (size_t i = 0; i < n; i++) {
		const struct stream *s = &streams[i];
		printf("stream version=%u messages=%" PRIu64 " records=%" PRIu64 " packets=%" PRIu64
		       " bytes=%" PRIu64 " send-errors=%" PRIu64 "\n",
		       s->gen.version, s->messages, s->records, s->packets, s->bytes, s->send_errors);
		records += s->records;
		packets += s->packets;
		bytes += s->bytes;
		messages += s->messages;
		errors += s->send_errors;
	}
	printf("sent messages=%" PRIu64 " records=%" PRIu64 " packets=%" PRIu64 " bytes=%" PRIu64
	       " send-errors=%" PRIu64 " seconds=%.3f records-per-s=%.0f\n",
	       messages, records, packets, bytes, errors, seconds, seconds > 0 ? (double)records / seconds : 0);
}

int main(int argc, char **argv)
{
	struct stream streams[MAX_STREAMS];
	struct options o;
	uint64_t start_ns, end_ns, sent = 0;
	int rc;

	memset(streams, 0, sizeof(streams));
	for (size_t i = 0; i < MAX_STREAMS; i++)
		streams[i].fd = -1;
	rc = parse_options(argc, argv, &o);
	for (size_t i = 0; !rc && i < o.n_streams; i++)
		rc = open_stream(&streams[i], &o, o.versions[i], (uint32_t)(i + 1));
	if (rc)
		goto out;
	start_ns = mono_ns();
	end_ns = start_ns + (uint64_t)(o.duration * 1e9);
	while (o.records ? sent < o.records : mono_ns() < end_ns) {
		struct stream *s = least_sent(streams, o.n_streams);
		uint64_t before = s->records;

		send_batch(s, start_ns, o.records ? o.records - sent : UINT64_MAX);
		sent += s->records - before;
		pace(&o, sent, start_ns);
	}
	print_totals(streams, o.n_streams, (double)(mono_ns() - start_ns) / 1e9);
out:
	for (size_t i = 0; i < MAX_STREAMS; i++) {
		if (streams[i].fd >= 0)
			close(streams[i].fd);
		gen_stream_free(&streams[i].gen);
	}
	if (rc)
		fprintf(stderr, "collect_sender: %s\n", mm_last_error());
	return rc ? 1 : 0;
}
