/*
 * Packet sources for the meter (see capture.h). Files are mapped into
 * memory and walked by pcap_file without copying a byte; live interfaces go
 * through libpcap. BPF filters come from libpcap for both: installed in the
 * kernel for live captures, compiled per linktype and run here for files.
 */
#include "mamori/capture.h"

#include "mamori/status.h"
#include "meter/pcap_file.h"

#include <errno.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Pipes are read whole into memory; anything larger belongs in a file. */
#define MAX_STREAM_BYTES ((size_t)2 << 30)
#define STREAM_CHUNK ((size_t)1 << 20)
/* Distinct linktypes in one pcapng file that a filter is compiled for. */
#define MAX_FILTER_LINKTYPES 16u
#define FILTER_SNAPLEN 262144
#define LIVE_DEFAULT_SNAPLEN 262144
/* Latency bound of a live read when traffic is light; also bounds mm_capture_break. */
#define LIVE_TIMEOUT_MS 50
#define LIVE_KERNEL_BUFFER (32 << 20)
/*
 * libpcap hands a ring block back to the kernel before pcap_dispatch
 * returns, so live packets are copied into this per-batch buffer; each
 * packet reserves its snaplen plus slack for a reinserted VLAN tag.
 */
#define LIVE_BATCH_BYTES ((size_t)8 << 20)
#define LIVE_PACKET_SLACK 64
/* pcap_stats costs a getsockopt and a read of interface counters. */
#define LIVE_STATS_EVERY 64u

struct link_filter {
	uint16_t linktype;
	struct bpf_program prog;
};

struct mm_capture {
	char *name;
	volatile sig_atomic_t broken;
	struct mm_capture_stats stats;

	/* file source */
	uint8_t *file_buf;
	size_t file_len;
	bool file_mapped; /* else file_buf is malloc'd */
	struct pcap_file *pf;
	char *filter_expr;
	struct link_filter filters[MAX_FILTER_LINKTYPES];
	unsigned n_filters;
	unsigned last_filter;

	/* live source */
	pcap_t *live;
	uint16_t live_linktype;
	uint32_t live_ns_per_frac; /* 1 when libpcap gives nanoseconds, else 1000 */
	int live_per_dispatch;
	unsigned live_dispatches;
	uint8_t *live_batch;
	size_t live_batch_used;
};

/*
 * libpcap's DLT_ values equal the LINKTYPE_ values of files except for a
 * few that differ by platform; pcap/dlt.h gives this platform's DLT side.
 */
static const struct {
	int dlt;
	uint16_t linktype;
} dlt_linktypes[] = {
	{ DLT_ATM_RFC1483, 100 },
	{ DLT_RAW, MM_LINK_RAW },
	{ DLT_SLIP_BSDOS, 102 },
	{ DLT_PPP_BSDOS, 103 },
	{ DLT_LOOP, MM_LINK_LOOP },
	{ DLT_ENC, 109 },
	{ DLT_HDLC, 112 },
	{ DLT_PFSYNC, 246 },
};

static uint16_t dlt_to_linktype(int dlt)
{
	for (size_t i = 0; i < sizeof(dlt_linktypes) / sizeof(dlt_linktypes[0]); i++)
		if (dlt_linktypes[i].dlt == dlt)
			return dlt_linktypes[i].linktype;
	return (uint16_t)dlt;
}

static int linktype_to_dlt(uint16_t linktype)
{
	for (size_t i = 0; i < sizeof(dlt_linktypes) / sizeof(dlt_linktypes[0]); i++)
		if (dlt_linktypes[i].linktype == linktype)
			return dlt_linktypes[i].dlt;
	return linktype;
}

static int capture_new(struct mm_capture **out, const char *name)
{
	struct mm_capture *cap = calloc(1, sizeof(*cap));

	if (!cap)
		return mm_fail(MM_ENOMEM, "capture: %s", name);
	cap->name = strdup(name);
	if (!cap->name) {
		free(cap);
		return mm_fail(MM_ENOMEM, "capture: %s", name);
	}
	*out = cap;
	return 0;
}

static int map_file(struct mm_capture *cap, int fd, const struct stat *st)
{
	void *map;

	if ((uint64_t)st->st_size > SIZE_MAX)
		return mm_fail(MM_ELIMIT, "capture: %s: %lld bytes do not fit the address space",
			       cap->name, (long long)st->st_size);
	map = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED)
		return mm_fail(MM_EIO, "capture: %s: mmap: %s", cap->name, strerror(errno));
	/* Read-ahead hint only; a refusal changes nothing. */
	(void)madvise(map, (size_t)st->st_size, MADV_SEQUENTIAL);
	cap->file_buf = map;
	cap->file_len = (size_t)st->st_size;
	cap->file_mapped = true;
	return 0;
}

/* Pipes, FIFOs and files that report size 0: read to the end, up to the cap. */
static int read_stream(struct mm_capture *cap, int fd)
{
	size_t cap_bytes = 0, len = 0;
	uint8_t *buf = NULL, *grown;
	ssize_t n;

	for (;;) {
		if (len == cap_bytes) {
			if (cap_bytes >= MAX_STREAM_BYTES) {
				free(buf);
				return mm_fail(MM_ELIMIT, "capture: %s: stream exceeds %zu bytes; "
					       "write it to a file", cap->name, MAX_STREAM_BYTES);
			}
			cap_bytes = cap_bytes ? cap_bytes * 2 : STREAM_CHUNK;
			grown = realloc(buf, cap_bytes);
			if (!grown) {
				free(buf);
				return mm_fail(MM_ENOMEM, "capture: %s: %zu-byte read buffer",
					       cap->name, cap_bytes);
			}
			buf = grown;
		}
		n = read(fd, buf + len, cap_bytes - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return mm_fail(MM_EIO, "capture: %s: read: %s", cap->name, strerror(errno));
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	cap->file_buf = buf;
	cap->file_len = len;
	return 0;
}

int mm_capture_open_file(struct mm_capture **out, const char *path)
{
	struct mm_capture *cap = NULL;
	struct stat st;
	int fd = -1, rc;

	*out = NULL;
	rc = capture_new(&cap, path);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = mm_fail(errno == ENOENT ? MM_ENOENT : errno == EACCES ? MM_EPERM : MM_EIO,
			     "capture: %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		rc = mm_fail(MM_EIO, "capture: %s: fstat: %s", path, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = mm_fail(MM_EINVAL, "capture: %s: is a directory", path);
		goto out;
	}
	if (S_ISREG(st.st_mode) && st.st_size > 0)
		rc = map_file(cap, fd, &st);
	else
		rc = read_stream(cap, fd);
	if (rc < 0)
		goto out;
	rc = pcap_file_open(&cap->pf, cap->file_buf, cap->file_len, path);
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0) {
		mm_capture_free(cap);
		return rc;
	}
	*out = cap;
	return 0;
}

static int activate_status(int rc)
{
	switch (rc) {
	case PCAP_ERROR_PERM_DENIED:
	case PCAP_ERROR_PROMISC_PERM_DENIED:
		return MM_EPERM;
	case PCAP_ERROR_NO_SUCH_DEVICE:
		return MM_ENOENT;
	case PCAP_ERROR_RFMON_NOTSUP:
		return MM_EUNSUP;
	}
	return MM_EIO;
}

int mm_capture_open_live(struct mm_capture **out, const char *iface, int snaplen, bool promisc)
{
	char errbuf[PCAP_ERRBUF_SIZE] = "";
	struct mm_capture *cap = NULL;
	int rc, reserve;

	*out = NULL;
	rc = capture_new(&cap, iface);
	if (rc < 0)
		return rc;
	cap->live = pcap_create(iface, errbuf);
	if (!cap->live) {
		rc = mm_fail(MM_EIO, "capture: %s: %s", iface, errbuf);
		goto out;
	}
	pcap_set_snaplen(cap->live, snaplen > 0 ? snaplen : LIVE_DEFAULT_SNAPLEN);
	pcap_set_promisc(cap->live, promisc);
	pcap_set_timeout(cap->live, LIVE_TIMEOUT_MS);
	pcap_set_buffer_size(cap->live, LIVE_KERNEL_BUFFER);
	/* Falls back to microseconds where the platform cannot give nanoseconds. */
	pcap_set_tstamp_precision(cap->live, PCAP_TSTAMP_PRECISION_NANO);
	rc = pcap_activate(cap->live);
	if (rc < 0) {
		rc = mm_fail(activate_status(rc), "capture: %s: %s (%s)", iface,
			     pcap_statustostr(rc), pcap_geterr(cap->live));
		goto out;
	}
	cap->live_ns_per_frac =
		pcap_get_tstamp_precision(cap->live) == PCAP_TSTAMP_PRECISION_NANO ? 1 : 1000;
	cap->live_linktype = dlt_to_linktype(pcap_datalink(cap->live));
	/*
	 * Non-blocking reads plus our own poll: with TPACKET_V3 libpcap waits
	 * for the kernel to retire a block and never returns on a silent link,
	 * so a quiet interface would keep idle flows in the table forever.
	 */
	if (pcap_setnonblock(cap->live, 1, errbuf) < 0 || pcap_get_selectable_fd(cap->live) < 0) {
		rc = mm_fail(MM_EIO, "capture: %s: cannot poll the capture: %s", iface, errbuf);
		goto out;
	}
	reserve = pcap_snapshot(cap->live) + LIVE_PACKET_SLACK;
	cap->live_per_dispatch = (int)(LIVE_BATCH_BYTES / (size_t)reserve);
	if (cap->live_per_dispatch < 1)
		cap->live_per_dispatch = 1;
	cap->live_batch = malloc(LIVE_BATCH_BYTES);
	if (!cap->live_batch)
		rc = mm_fail(MM_ENOMEM, "capture: %s: %zu-byte batch buffer", iface,
			     LIVE_BATCH_BYTES);
	else
		rc = 0;
out:
	if (rc < 0) {
		mm_capture_free(cap);
		return rc;
	}
	*out = cap;
	return 0;
}

static void free_file_filters(struct mm_capture *cap)
{
	for (unsigned i = 0; i < cap->n_filters; i++)
		pcap_freecode(&cap->filters[i].prog);
	cap->n_filters = 0;
	cap->last_filter = 0;
	free(cap->filter_expr);
	cap->filter_expr = NULL;
}

static int compile_for_linktype(const struct mm_capture *cap, const char *expr,
				uint16_t linktype, struct bpf_program *prog)
{
	pcap_t *dead = pcap_open_dead(linktype_to_dlt(linktype), FILTER_SNAPLEN);
	int rc = 0;

	if (!dead)
		return mm_fail(MM_ENOMEM, "capture: %s: filter compiler", cap->name);
	if (pcap_compile(dead, prog, expr, 1, PCAP_NETMASK_UNKNOWN) != 0)
		rc = mm_fail(MM_EINVAL, "capture: %s: filter \"%s\" for linktype %u: %s",
			     cap->name, expr, linktype, pcap_geterr(dead));
	pcap_close(dead);
	return rc;
}

static int add_file_filter(struct mm_capture *cap, uint16_t linktype)
{
	struct link_filter *lf;
	int rc;

	if (cap->n_filters == MAX_FILTER_LINKTYPES)
		return mm_fail(MM_ELIMIT, "capture: %s: filter needed for more than %u linktypes",
			       cap->name, MAX_FILTER_LINKTYPES);
	lf = &cap->filters[cap->n_filters];
	rc = compile_for_linktype(cap, cap->filter_expr, linktype, &lf->prog);
	if (rc < 0)
		return rc;
	lf->linktype = linktype;
	cap->last_filter = cap->n_filters++;
	return 0;
}

/*
 * The linktype of the file's first packet, read with a second reader over
 * the same bytes so the real one does not move; Ethernet for a file with no
 * readable packet, which still catches syntax errors early.
 */
static uint16_t first_linktype(const struct mm_capture *cap)
{
	struct pcap_file *peek = NULL;
	struct mm_raw_packet pkt;
	uint16_t linktype = MM_LINK_ETHERNET;

	if (pcap_file_open(&peek, cap->file_buf, cap->file_len, cap->name) == 0 &&
	    pcap_file_next(peek, &pkt) == 1)
		linktype = pkt.linktype;
	pcap_file_free(peek);
	return linktype;
}

static int set_file_filter(struct mm_capture *cap, const char *bpf)
{
	free_file_filters(cap);
	if (!bpf || !*bpf)
		return 0;
	cap->filter_expr = strdup(bpf);
	if (!cap->filter_expr)
		return mm_fail(MM_ENOMEM, "capture: %s: filter", cap->name);
	int rc = add_file_filter(cap, first_linktype(cap));
	if (rc < 0)
		free_file_filters(cap);
	return rc;
}

static int set_live_filter(struct mm_capture *cap, const char *bpf)
{
	struct bpf_program prog;
	int rc = 0;

	if (pcap_compile(cap->live, &prog, bpf ? bpf : "", 1, PCAP_NETMASK_UNKNOWN) != 0)
		return mm_fail(MM_EINVAL, "capture: %s: filter \"%s\": %s", cap->name,
			       bpf ? bpf : "", pcap_geterr(cap->live));
	if (pcap_setfilter(cap->live, &prog) != 0)
		rc = mm_fail(MM_EIO, "capture: %s: installing filter \"%s\": %s", cap->name,
			     bpf ? bpf : "", pcap_geterr(cap->live));
	pcap_freecode(&prog);
	return rc;
}

int mm_capture_set_filter(struct mm_capture *cap, const char *bpf)
{
	if (cap->live)
		return set_live_filter(cap, bpf);
	return set_file_filter(cap, bpf);
}

/* 1 when the file packet passes the filter, 0 when not, negative on error. */
static int file_filter_match(struct mm_capture *cap, const struct mm_raw_packet *pkt)
{
	struct pcap_pkthdr hdr = { .caplen = pkt->cap_len, .len = pkt->wire_len };
	unsigned i;
	int rc;

	if (cap->filters[cap->last_filter].linktype != pkt->linktype) {
		for (i = 0; i < cap->n_filters && cap->filters[i].linktype != pkt->linktype; i++)
			;
		if (i < cap->n_filters) {
			cap->last_filter = i;
		} else {
			rc = add_file_filter(cap, pkt->linktype);
			if (rc < 0)
				return rc;
		}
	}
	return pcap_offline_filter(&cap->filters[cap->last_filter].prog, &hdr, pkt->data) != 0;
}

/*
 * A corrupt record ends the file like its real end: the reader counted it
 * and set the message, and the caller sees it in the stats. Running out of
 * memory is no property of the file and is returned.
 */
static int next_file_batch(struct mm_capture *cap, struct mm_raw_packet *pkts, int max)
{
	uint64_t bytes = 0;
	int n = 0, rc;

	while (n < max && !cap->broken) {
		rc = pcap_file_next(cap->pf, &pkts[n]);
		if (rc == MM_ENOMEM)
			return rc;
		if (rc <= 0)
			break;
		if (cap->filter_expr) {
			rc = file_filter_match(cap, &pkts[n]);
			if (rc < 0)
				return rc;
			if (rc == 0) {
				cap->stats.filtered++;
				continue;
			}
		}
		bytes += pkts[n].wire_len;
		n++;
	}
	cap->stats.packets += (uint64_t)n;
	cap->stats.bytes += bytes;
	return n;
}

struct live_fill {
	struct mm_capture *cap;
	struct mm_raw_packet *pkts;
	int n;
};

static void live_packet(u_char *user, const struct pcap_pkthdr *h, const u_char *bytes)
{
	struct live_fill *fill = (struct live_fill *)user;
	struct mm_capture *cap = fill->cap;
	struct mm_raw_packet *pkt = &fill->pkts[fill->n++];
	size_t room = LIVE_BATCH_BYTES - cap->live_batch_used;
	uint32_t cap_len = h->caplen <= room ? h->caplen : (uint32_t)room;
	uint8_t *copy = cap->live_batch + cap->live_batch_used;

	memcpy(copy, bytes, cap_len);
	cap->live_batch_used += cap_len;
	pkt->ts_ns = (uint64_t)h->ts.tv_sec * 1000000000ull +
		     (uint64_t)h->ts.tv_usec * cap->live_ns_per_frac;
	pkt->data = copy;
	pkt->cap_len = cap_len;
	pkt->wire_len = h->len;
	pkt->linktype = cap->live_linktype;
	cap->stats.packets++;
	cap->stats.bytes += h->len;
}

static void refresh_live_drops(struct mm_capture *cap)
{
	struct pcap_stat ps;

	if (pcap_stats(cap->live, &ps) == 0)
		cap->stats.kernel_drops = (uint64_t)ps.ps_drop + ps.ps_ifdrop;
}

/* Waits for packets; read timeouts loop, a break returns what came before it. */
static int next_live_batch(struct mm_capture *cap, struct mm_raw_packet *pkts, int max)
{
	struct live_fill fill = { .cap = cap, .pkts = pkts, .n = 0 };
	int per_dispatch = max < cap->live_per_dispatch ? max : cap->live_per_dispatch;
	int rc = 0;

	struct pollfd pfd = { .fd = pcap_get_selectable_fd(cap->live), .events = POLLIN };

	if (cap->broken)
		return 0;
	cap->live_batch_used = 0;
	rc = pcap_dispatch(cap->live, per_dispatch, live_packet, (u_char *)&fill);
	if (rc == 0 && !cap->broken && poll(&pfd, 1, LIVE_TIMEOUT_MS) > 0)
		rc = pcap_dispatch(cap->live, per_dispatch, live_packet, (u_char *)&fill);
	if (++cap->live_dispatches % LIVE_STATS_EVERY == 0)
		refresh_live_drops(cap);
	if (rc == PCAP_ERROR_BREAK || cap->broken) {
		refresh_live_drops(cap);
		return fill.n;
	}
	if (rc < 0)
		return mm_fail(MM_EIO, "capture: %s: %s", cap->name, pcap_geterr(cap->live));
	/* A read timeout with nothing captured: the caller's chance to expire
	 * flows on a quiet link before waiting again. */
	return fill.n > 0 ? fill.n : MM_EAGAIN;
}

int mm_capture_next_batch(struct mm_capture *cap, struct mm_raw_packet *pkts, int max)
{
	if (max <= 0 || !pkts)
		return mm_fail(MM_EINVAL, "capture: %s: batch of %d packets", cap->name, max);
	if (cap->live)
		return next_live_batch(cap, pkts, max);
	return next_file_batch(cap, pkts, max);
}

void mm_capture_break(struct mm_capture *cap)
{
	cap->broken = 1;
	if (cap->live)
		pcap_breakloop(cap->live);
}

void mm_capture_get_stats(const struct mm_capture *cap, struct mm_capture_stats *out)
{
	*out = cap->stats;
	if (cap->pf)
		pcap_file_add_errors(cap->pf, out->errors);
}

const char *mm_capture_name(const struct mm_capture *cap)
{
	return cap->name;
}

void mm_capture_free(struct mm_capture *cap)
{
	if (!cap)
		return;
	free_file_filters(cap);
	pcap_file_free(cap->pf);
	if (cap->file_mapped)
		munmap(cap->file_buf, cap->file_len);
	else
		free(cap->file_buf);
	if (cap->live)
		pcap_close(cap->live);
	free(cap->live_batch);
	free(cap->name);
	free(cap);
}

const char *mm_capture_error_name(unsigned err)
{
	static const char *const names[MM_CAPERR__COUNT] = {
		[MM_CAPERR_TRUNCATED_RECORD] = "truncated-record",
		[MM_CAPERR_BAD_CAPLEN] = "bad-caplen",
		[MM_CAPERR_BAD_BLOCK] = "bad-block",
		[MM_CAPERR_BAD_INTERFACE] = "bad-interface",
		[MM_CAPERR_UNKNOWN_BLOCK] = "unknown-block",
	};

	return err < MM_CAPERR__COUNT ? names[err] : "unknown";
}
