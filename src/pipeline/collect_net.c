/*
 * The sockets of one collect worker (see collect_int.h): UDP listeners read
 * in recvmmsg batches with SO_RXQ_OVFL telling how many datagrams the kernel
 * dropped, and IPFIX over TCP (RFC 7011 section 10.4) framed by the length
 * in each message header. Every message goes to one callback, whatever its
 * transport.
 */
#include "pipeline/collect_int.h"

#include "mamori/status.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Datagrams per recvmmsg call: amortises the system call without holding
 * many 64 KiB buffers per worker. */
#define RECV_BATCH 32

/* recvmmsg calls per socket per wakeup, so one busy socket cannot starve
 * the others or the stop check; epoll is level-triggered and comes back. */
#define RECV_ROUNDS 8

/* Asked for per UDP socket; the kernel grants what rmem_max allows
 * (or this much with SO_RCVBUFFORCE as root). */
#define RCVBUF_WANTED (64 << 20)

/*
 * After a look that found datagrams but did not fill its batches, the
 * worker naps before it looks again, so the next look finds a batch
 * instead of one datagram: at 30 k datagrams/s, about 1 k wakeups a second
 * instead of 30 k, each costing a context switch and two system calls. The
 * nap is at most NAP_MAX_NS (flows are minutes old already; a millisecond
 * more delays nothing) and short enough that what arrives meanwhile fills
 * at most 1/NAP_BUFFER_SHARE of the smallest receive buffer, both at the
 * byte rate just seen and at NAP_BURST_BYTES_PER_S, should the rate jump:
 * with the 64 MiB buffer it asks for, the nap is a millisecond; with
 * Linux's default 208 KiB, a few microseconds, which is no nap at all.
 */
#define NAP_MAX_NS 1000000u
#define NAP_BUFFER_SHARE 16u
#define NAP_BURST_BYTES_PER_S 1000000000u

#define TCP_BACKLOG 128
#define TCP_CONNS_MAX 256 /* per worker; more are accepted and closed, counted */
#define EPOLL_EVENTS 64

/* An IPFIX message header: version 10, then the 16-bit total length. */
#define IPFIX_VERSION 10
#define IPFIX_HEADER_LEN 16

enum ep_kind { EP_WAKE, EP_UDP, EP_TCP_LISTEN, EP_TCP_CONN };

/* Anything in the epoll set. */
struct endpoint {
	enum ep_kind kind;
	int fd;
	uint32_t ovfl_seen;    /* UDP: last SO_RXQ_OVFL value, cumulative per socket */
	struct mm_addr peer;   /* TCP connection: the exporter */
	uint16_t peer_port;
	uint8_t *buf;          /* TCP connection: bytes of an incomplete message */
	size_t have;
	size_t slot;           /* TCP connection: index in conns */
};

struct collect_net {
	int epfd;
	struct endpoint wake;
	struct endpoint listeners[MM_COLLECT_LISTENERS_MAX];
	size_t n_listeners;
	struct endpoint *conns[TCP_CONNS_MAX];
	size_t n_conns;
	uint8_t *bufs; /* RECV_BATCH datagrams of COLLECT_MSG_MAX + 1 bytes */
	uint64_t nap_room;   /* bytes the datagrams arriving during a nap may take (NAP_BUFFER_SHARE) */
	uint64_t drained_ns; /* monotonic time the last look ended */
	struct mmsghdr msgs[RECV_BATCH];
	struct iovec iov[RECV_BATCH];
	struct sockaddr_storage names[RECV_BATCH];
	union {
		char buf[CMSG_SPACE(sizeof(uint32_t))];
		struct cmsghdr align;
	} cmsg[RECV_BATCH];
	/* Written by the owner, read by the stats thread. */
	_Atomic uint64_t datagrams, tcp_messages, bytes, truncated, tcp_bad_framing, tcp_partial;
	_Atomic uint64_t kernel_drops, tcp_accepted, tcp_refused, rcvbuf_bytes;
};

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t load(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- listener text ---- */

static int parse_port(const char *text, const char *whole, uint16_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(text, &end, 10);
	if (text[0] < '0' || text[0] > '9' || *end || errno || v > 65535)
		return mm_fail(MM_EINVAL, "listen: '%s': port '%s' is not a number from 0 to 65535", whole,
			       text);
	*out = (uint16_t)v;
	return 0;
}

int mm_collect_listener_parse(struct mm_collect_listener *out, const char *text)
{
	const char *rest = text, *colon;
	char host[MM_ADDR_STRLEN + 2];
	size_t host_len;
	bool bracketed;

	*out = (struct mm_collect_listener){ .transport = MM_COLLECT_UDP, .any = true };
	if (strncmp(rest, "udp:", 4) == 0) {
		rest += 4;
	} else if (strncmp(rest, "tcp:", 4) == 0) {
		out->transport = MM_COLLECT_TCP;
		rest += 4;
	}
	colon = strrchr(rest, ':');
	if (!colon)
		return parse_port(rest, text, &out->port);
	bracketed = rest[0] == '[';
	if (bracketed) {
		if (colon == rest || colon[-1] != ']')
			return mm_fail(MM_EINVAL, "listen: '%s': an IPv6 address needs [ADDR]:PORT", text);
		rest++;
		host_len = (size_t)(colon - 1 - rest);
	} else {
		host_len = (size_t)(colon - rest);
	}
	if (host_len == 0 || host_len >= sizeof(host))
		return mm_fail(MM_EINVAL, "listen: '%s': no address before the port", text);
	memcpy(host, rest, host_len);
	host[host_len] = '\0';
	if ((strchr(host, ':') != NULL) != bracketed)
		return mm_fail(MM_EINVAL, "listen: '%s': write an IPv6 address as [ADDR]:PORT", text);
	if (mm_addr_parse(&out->addr, host) != 0)
		return mm_fail(MM_EINVAL, "listen: '%s': '%s' is not an IP address", text, host);
	out->any = false;
	return parse_port(colon + 1, text, &out->port);
}

/* ---- sockets ---- */

static socklen_t listener_sockaddr(const struct mm_collect_listener *l, int family,
				   struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(l->port);
		if (!l->any)
			memcpy(&sin->sin_addr, l->addr.b + 12, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(l->port);
	if (!l->any)
		memcpy(&sin6->sin6_addr, l->addr.b, 16);
	return sizeof(*sin6);
}

static void sockaddr_to_exporter(const struct sockaddr_storage *ss, struct mm_addr *addr, uint16_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		mm_addr_set_v4(addr, (const uint8_t *)&sin->sin_addr);
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		/* A v4-mapped peer of a dual-stack socket is already mamori's IPv4 form. */
		mm_addr_set_v6(addr, sin6->sin6_addr.s6_addr);
		*port = ntohs(sin6->sin6_port);
	}
}

static void listener_name(const struct mm_collect_listener *l, char *buf, size_t size)
{
	char a[MM_ADDR_STRLEN];

	if (l->any)
		snprintf(buf, size, "%s:*:%u", l->transport == MM_COLLECT_TCP ? "tcp" : "udp", l->port);
	else if (mm_addr_is_v4(&l->addr))
		snprintf(buf, size, "%s:%s:%u", l->transport == MM_COLLECT_TCP ? "tcp" : "udp",
			 mm_addr_format(&l->addr, a), l->port);
	else
		snprintf(buf, size, "%s:[%s]:%u", l->transport == MM_COLLECT_TCP ? "tcp" : "udp",
			 mm_addr_format(&l->addr, a), l->port);
}

/* The largest receive buffer the kernel will give, forced past rmem_max when privileged. */
static uint64_t grow_rcvbuf(int fd)
{
	int want = RCVBUF_WANTED, got = 0;
	socklen_t len = sizeof(got);

	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) != 0 || got < 0)
		return 0;
	return (uint64_t)got;
}

/*
 * A socket for l in family. The wildcard is one dual-stack IPv6 socket
 * (IPv4 exporters arrive v4-mapped); an explicit IPv6 address is IPv6 only.
 */
static int open_socket(const struct mm_collect_listener *l, int family, int *out_fd)
{
	int type = l->transport == MM_COLLECT_TCP ? SOCK_STREAM : SOCK_DGRAM;
	int fd, on = 1, v6only = l->any ? 0 : 1;
	struct sockaddr_storage ss;
	socklen_t ss_len = listener_sockaddr(l, family, &ss);

	fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
	    (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) ||
	    (type == SOCK_DGRAM && setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on)) != 0) ||
	    (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) != 0) ||
	    bind(fd, (struct sockaddr *)&ss, ss_len) != 0 ||
	    (type == SOCK_STREAM && listen(fd, TCP_BACKLOG) != 0)) {
		int err = errno;

		close(fd);
		return -err;
	}
	*out_fd = fd;
	return 0;
}

static int epoll_add(struct collect_net *net, struct endpoint *ep)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = ep };

	return epoll_ctl(net->epfd, EPOLL_CTL_ADD, ep->fd, &ev) == 0 ? 0 : -errno;
}

static int open_listener(struct collect_net *net, const struct mm_collect_listener *l)
{
	struct endpoint *ep = &net->listeners[net->n_listeners];
	char name[MM_ADDR_STRLEN + 16];
	int err, fd = -1;

	if (!l->any)
		err = open_socket(l, mm_addr_is_v4(&l->addr) ? AF_INET : AF_INET6, &fd);
	else if ((err = open_socket(l, AF_INET6, &fd)) == -EAFNOSUPPORT)
		err = open_socket(l, AF_INET, &fd); /* a host without IPv6 */
	if (err == 0) {
		*ep = (struct endpoint){ .kind = l->transport == MM_COLLECT_TCP ? EP_TCP_LISTEN : EP_UDP, .fd = fd };
		net->n_listeners++;
		err = epoll_add(net, ep);
	}
	if (err == 0) {
		if (ep->kind == EP_UDP) {
			uint64_t rcvbuf = grow_rcvbuf(fd);

			atomic_store(&net->rcvbuf_bytes, rcvbuf);
			if (rcvbuf / NAP_BUFFER_SHARE < net->nap_room)
				net->nap_room = rcvbuf / NAP_BUFFER_SHARE;
		}
		return 0;
	}
	listener_name(l, name, sizeof(name));
	return mm_fail(MM_EIO, "collect: listen %s: %s", name, strerror(-err));
}

int collect_net_open(struct collect_net **out, const struct mm_collect_listener *l, size_t n, int wake_fd)
{
	struct collect_net *net;
	int rc;

	*out = NULL;
	if (n > MM_COLLECT_LISTENERS_MAX)
		return mm_fail(MM_ELIMIT, "collect: %zu listeners, at most %d", n, MM_COLLECT_LISTENERS_MAX);
	net = calloc(1, sizeof(*net));
	if (!net)
		return mm_fail(MM_ENOMEM, "collect: out of memory");
	net->wake = (struct endpoint){ .kind = EP_WAKE, .fd = wake_fd };
	net->nap_room = UINT64_MAX; /* lowered by each UDP listener; TCP has flow control */
	net->bufs = malloc((size_t)RECV_BATCH * (COLLECT_MSG_MAX + 1));
	net->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!net->bufs || net->epfd < 0) {
		rc = net->bufs ? mm_fail(MM_EIO, "collect: epoll: %s", strerror(errno))
			       : mm_fail(MM_ENOMEM, "collect: out of memory");
		goto out;
	}
	if (epoll_add(net, &net->wake) != 0) {
		rc = mm_fail(MM_EIO, "collect: epoll: %s", strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rc = open_listener(net, &l[i]);
		if (rc)
			goto out;
	}
	*out = net;
	return 0;
out:
	collect_net_free(net);
	return rc;
}

/* ---- UDP ---- */

static void prepare_batch(struct collect_net *net)
{
	for (size_t i = 0; i < RECV_BATCH; i++) {
		net->iov[i] = (struct iovec){ .iov_base = net->bufs + i * (COLLECT_MSG_MAX + 1),
					      .iov_len = COLLECT_MSG_MAX + 1 };
		net->msgs[i].msg_hdr = (struct msghdr){
			.msg_name = &net->names[i],
			.msg_namelen = sizeof(net->names[i]),
			.msg_iov = &net->iov[i],
			.msg_iovlen = 1,
			.msg_control = net->cmsg[i].buf,
			.msg_controllen = sizeof(net->cmsg[i].buf),
		};
	}
}

/* The kernel's drop counter rides on each datagram; it only grows (mod 2^32). */
static void note_kernel_drops(struct collect_net *net, struct endpoint *ep, struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		uint32_t total;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL)
			continue;
		memcpy(&total, CMSG_DATA(c), sizeof(total));
		if (total != ep->ovfl_seen)
			count(&net->kernel_drops, (uint32_t)(total - ep->ovfl_seen));
		ep->ovfl_seen = total;
	}
}

/* Adds the bytes read to *bytes; returns true when every round filled its batch (more may wait). */
static bool receive_udp(struct collect_net *net, struct endpoint *ep, collect_msg_fn fn, void *ctx,
			uint64_t *bytes)
{
	for (int round = 0; round < RECV_ROUNDS; round++) {
		int n;

		prepare_batch(net);
		n = recvmmsg(ep->fd, net->msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
		if (n <= 0)
			return false;
		for (int i = 0; i < n; i++) {
			struct msghdr *mh = &net->msgs[i].msg_hdr;
			size_t len = net->msgs[i].msg_len;
			struct mm_addr exporter;
			uint16_t port;

			note_kernel_drops(net, ep, mh);
			count(&net->datagrams, 1);
			count(&net->bytes, len);
			*bytes += len;
			if ((mh->msg_flags & MSG_TRUNC) || len > COLLECT_MSG_MAX) {
				count(&net->truncated, 1);
				continue;
			}
			sockaddr_to_exporter(&net->names[i], &exporter, &port);
			fn(ctx, &exporter, port, net->iov[i].iov_base, len);
		}
		if (n < RECV_BATCH)
			return false;
	}
	return true;
}

/* ---- IPFIX over TCP ---- */

static void close_conn(struct collect_net *net, struct endpoint *c)
{
	size_t last = net->n_conns - 1;

	epoll_ctl(net->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	net->conns[c->slot] = net->conns[last];
	net->conns[c->slot]->slot = c->slot;
	net->n_conns--;
	free(c->buf);
	free(c);
}

static void accept_conns(struct collect_net *net, struct endpoint *ep)
{
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(ep->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct endpoint *c;

		if (fd < 0)
			return;
		c = net->n_conns < TCP_CONNS_MAX ? calloc(1, sizeof(*c)) : NULL;
		if (c)
			c->buf = malloc(COLLECT_MSG_MAX);
		if (!c || !c->buf) {
			if (c)
				free(c);
			close(fd);
			count(&net->tcp_refused, 1);
			continue;
		}
		c->kind = EP_TCP_CONN;
		c->fd = fd;
		sockaddr_to_exporter(&ss, &c->peer, &c->peer_port);
		c->slot = net->n_conns;
		net->conns[net->n_conns++] = c;
		if (epoll_add(net, c) != 0) {
			close_conn(net, c);
			count(&net->tcp_refused, 1);
			continue;
		}
		count(&net->tcp_accepted, 1);
	}
}

/*
 * Hands on every whole message in c->buf and keeps the tail. Returns false
 * when a header is not IPFIX: the stream has lost its framing and no later
 * byte can be trusted to start a message.
 */
static bool frame_messages(struct collect_net *net, struct endpoint *c, collect_msg_fn fn, void *ctx)
{
	size_t pos = 0;

	while (c->have - pos >= 4) {
		const uint8_t *h = c->buf + pos;
		size_t len = (size_t)h[2] << 8 | h[3];

		if ((h[0] << 8 | h[1]) != IPFIX_VERSION || len < IPFIX_HEADER_LEN)
			return false;
		if (c->have - pos < len)
			break;
		count(&net->tcp_messages, 1);
		count(&net->bytes, len);
		fn(ctx, &c->peer, c->peer_port, h, len);
		pos += len;
	}
	memmove(c->buf, c->buf + pos, c->have - pos);
	c->have -= pos;
	return true;
}

static void receive_tcp(struct collect_net *net, struct endpoint *c, collect_msg_fn fn, void *ctx)
{
	ssize_t n = recv(c->fd, c->buf + c->have, COLLECT_MSG_MAX - c->have, MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (c->have)
			count(&net->tcp_partial, 1);
		close_conn(net, c);
		return;
	}
	c->have += (size_t)n;
	if (!frame_messages(net, c, fn, ctx)) {
		count(&net->tcp_bad_framing, 1);
		close_conn(net, c);
	}
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * The nap after a look, ending at now, that read bytes of datagrams (see
 * NAP_MAX_NS). They arrived since the previous look ended, so in ns about
 * bytes * ns / span more arrive.
 */
static void nap(const struct collect_net *net, uint64_t now, uint64_t bytes)
{
	uint64_t span = now - net->drained_ns, ns = NAP_MAX_NS;
	uint64_t burst_ns = net->nap_room * 1000000000u / NAP_BURST_BYTES_PER_S;
	struct timespec ts;

	if (burst_ns < ns)
		ns = burst_ns;
	if (span > 1000000000u) /* the first look, or one after a quiet second: keeps the product small */
		span = 1000000000u;
	if (bytes * ns > net->nap_room * span)
		ns = net->nap_room * span / bytes;
	ts = (struct timespec){ .tv_nsec = (long)ns };
	if (ns)
		nanosleep(&ts, NULL);
}

int collect_net_wait(struct collect_net *net, int timeout_ms, collect_msg_fn fn, void *ctx)
{
	struct epoll_event ev[EPOLL_EVENTS];
	int n = epoll_wait(net->epfd, ev, EPOLL_EVENTS, timeout_ms);
	uint64_t udp_bytes = 0, now;
	bool more = false;

	if (n < 0)
		return errno == EINTR ? 0 : mm_fail(MM_EIO, "collect: epoll_wait: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		struct endpoint *ep = ev[i].data.ptr;

		switch (ep->kind) {
		case EP_WAKE: break;
		case EP_UDP: more |= receive_udp(net, ep, fn, ctx, &udp_bytes); break;
		case EP_TCP_LISTEN: accept_conns(net, ep); break;
		case EP_TCP_CONN: receive_tcp(net, ep, fn, ctx); break;
		}
	}
	now = monotonic_ns();
	if (udp_bytes && !more)
		nap(net, now, udp_bytes);
	net->drained_ns = now;
	return 0;
}

void collect_net_get_stats(const struct collect_net *net, struct collect_net_stats *out)
{
	*out = (struct collect_net_stats){
		.datagrams = load(&net->datagrams),
		.tcp_messages = load(&net->tcp_messages),
		.bytes = load(&net->bytes),
		.truncated = load(&net->truncated),
		.tcp_bad_framing = load(&net->tcp_bad_framing),
		.tcp_partial = load(&net->tcp_partial),
		.kernel_drops = load(&net->kernel_drops),
		.tcp_accepted = load(&net->tcp_accepted),
		.tcp_refused = load(&net->tcp_refused),
		.rcvbuf_bytes = load(&net->rcvbuf_bytes),
	};
}

void collect_net_free(struct collect_net *net)
{
	if (!net)
		return;
	while (net->n_conns)
		close_conn(net, net->conns[net->n_conns - 1]);
	for (size_t i = 0; i < net->n_listeners; i++)
		close(net->listeners[i].fd);
	if (net->epfd >= 0)
		close(net->epfd);
	free(net->bufs);
	free(net);
}
