/*
 * Classic pcap writer (nanosecond magic 0xa1b23c4d, host byte order) for
 * synthetic captures. Records go through one large buffer straight to
 * write(2), so millions of packets per second cost a few system calls each
 * second. The file is written under a temporary name and renamed into place
 * on close, so a reader never sees half a capture.
 */
#include "mamori/synth.h"

#include "mamori/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PCAP_MAGIC_NS 0xa1b23c4du
#define PCAP_VERSION_MAJOR 2
#define PCAP_VERSION_MINOR 4
#define PCAP_FILE_HDR_LEN 24
#define PCAP_REC_HDR_LEN 16
#define PCAP_MAX_SNAPLEN 262144u /* libpcap's MAXIMUM_SNAPLEN */
#define WRITE_BUF_CAP (4u << 20)
#define NS_PER_S 1000000000ull

struct mm_pcap_writer {
	int fd;
	char *path;
	char *tmp_path;
	uint32_t snaplen;
	int status;      /* first failure; later writes are refused with it */
	size_t buf_len;
	uint8_t *buf;    /* WRITE_BUF_CAP bytes */
};

static int writer_fail_errno(struct mm_pcap_writer *w, const char *what)
{
	w->status = mm_fail(MM_EIO, "pcap writer: %s: %s: %s", w->path, what, strerror(errno));
	return w->status;
}

static int flush_buffer(struct mm_pcap_writer *w)
{
	size_t done = 0;

	while (done < w->buf_len) {
		ssize_t n = write(w->fd, w->buf + done, w->buf_len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return writer_fail_errno(w, "write");
		}
		done += (size_t)n;
	}
	w->buf_len = 0;
	return 0;
}

/* Appends len bytes, flushing first if they do not fit; len never exceeds the buffer. */
static int append(struct mm_pcap_writer *w, const void *data, size_t len)
{
	if (w->buf_len + len > WRITE_BUF_CAP && flush_buffer(w) != 0)
		return w->status;
	memcpy(w->buf + w->buf_len, data, len);
	w->buf_len += len;
	return 0;
}

static void free_writer(struct mm_pcap_writer *w)
{
	if (w->fd >= 0) {
		close(w->fd);
		unlink(w->tmp_path);
	}
	free(w->buf);
	free(w->tmp_path);
	free(w->path);
	free(w);
}

static int open_temp(struct mm_pcap_writer *w)
{
	mode_t mask;

	if (asprintf(&w->tmp_path, "%s.tmp-XXXXXX", w->path) < 0) {
		w->tmp_path = NULL;
		return mm_fail(MM_ENOMEM, "pcap writer: %s: out of memory", w->path);
	}
	w->fd = mkstemp(w->tmp_path);
	if (w->fd < 0)
		return writer_fail_errno(w, "create");
	/* mkstemp makes the file 0600; give it the mode open(2) would have. */
	mask = umask(0);
	umask(mask);
	if (fchmod(w->fd, 0666 & ~mask) != 0)
		return writer_fail_errno(w, "chmod");
	return 0;
}

int mm_pcap_writer_open(struct mm_pcap_writer **out, const char *path, uint16_t linktype,
			uint32_t snaplen)
{
	struct mm_pcap_writer *w;
	uint32_t hdr[6];
	int rc;

	*out = NULL;
	if (snaplen == 0 || snaplen > PCAP_MAX_SNAPLEN)
		return mm_fail(MM_EINVAL, "pcap writer: %s: snaplen %u outside 1..%u", path, snaplen,
			       PCAP_MAX_SNAPLEN);
	w = calloc(1, sizeof(*w));
	if (!w)
		return mm_fail(MM_ENOMEM, "pcap writer: %s: out of memory", path);
	w->fd = -1;
	w->snaplen = snaplen;
	w->path = strdup(path);
	w->buf = malloc(WRITE_BUF_CAP);
	if (!w->path || !w->buf) {
		rc = mm_fail(MM_ENOMEM, "pcap writer: %s: out of memory", path);
		goto out;
	}
	rc = open_temp(w);
	if (rc != 0)
		goto out;
	hdr[0] = PCAP_MAGIC_NS;
	hdr[1] = PCAP_VERSION_MAJOR | (uint32_t)PCAP_VERSION_MINOR << 16; /* two host-order u16 */
	hdr[2] = 0; /* thiszone */
	hdr[3] = 0; /* sigfigs */
	hdr[4] = snaplen;
	hdr[5] = linktype;
	memcpy(w->buf, hdr, PCAP_FILE_HDR_LEN);
	w->buf_len = PCAP_FILE_HDR_LEN;
	*out = w;
	w = NULL;
out:
	if (w)
		free_writer(w);
	return rc;
}

int mm_pcap_writer_write(struct mm_pcap_writer *w, uint64_t ts_ns, const uint8_t *frame,
			 uint32_t cap_len, uint32_t wire_len)
{
	uint32_t rec[4];

	if (w->status != 0)
		return w->status;
	if (cap_len > wire_len)
		return mm_fail(MM_EINVAL, "pcap writer: %s: captured length %u exceeds wire length %u",
			       w->path, cap_len, wire_len);
	if (ts_ns / NS_PER_S > UINT32_MAX)
		return mm_fail(MM_EINVAL, "pcap writer: %s: timestamp %llu ns is past 2106", w->path,
			       (unsigned long long)ts_ns);
	if (cap_len > w->snaplen)
		cap_len = w->snaplen;
	rec[0] = (uint32_t)(ts_ns / NS_PER_S);
	rec[1] = (uint32_t)(ts_ns % NS_PER_S);
	rec[2] = cap_len;
	rec[3] = wire_len;
	if (append(w, rec, PCAP_REC_HDR_LEN) != 0 || append(w, frame, cap_len) != 0)
		return w->status;
	return 0;
}

int mm_pcap_writer_close(struct mm_pcap_writer *w)
{
	int rc;

	if (!w)
		return 0;
	if (w->status == 0)
		flush_buffer(w);
	if (close(w->fd) != 0 && w->status == 0)
		writer_fail_errno(w, "close");
	w->fd = -1;
	/* No fsync: a synthetic capture is cheap to make again, and the rename keeps readers safe. */
	if (w->status == 0 && rename(w->tmp_path, w->path) != 0)
		writer_fail_errno(w, "rename");
	if (w->status != 0)
		unlink(w->tmp_path);
	rc = w->status;
	free_writer(w);
	return rc;
}

void mm_pcap_writer_discard(struct mm_pcap_writer *w)
{
	if (w)
		free_writer(w);
}
