/*
 * Reader of classic pcap and pcapng held in memory (the mmap of a capture
 * file, or a fuzzer's input) for the meter's capture sources. Every length
 * is checked against the bytes left before anything behind it is read;
 * packets are handed out as pointers into the buffer, never copied. A
 * corrupt record stops the reader: it is counted and named with its offset.
 */
#include "meter/pcap_file.h"

#include "mamori/status.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* libpcap's and Wireshark's largest packet; anything bigger is corruption. */
#define MAX_CAPLEN 262144u
/* Interfaces per pcapng section; a real capture has a handful. */
#define MAX_INTERFACES 4096u
#define NS_PER_SEC 1000000000ull

#define PCAP_MAGIC_US 0xa1b2c3d4u
#define PCAP_MAGIC_NS 0xa1b23c4du
#define PCAP_FILE_HDR_LEN 24u
#define PCAP_REC_HDR_LEN 16u
/* Reserved3 and R bits of the linktype field (draft-ietf-opsawg-pcap). */
#define PCAP_LINKTYPE_RESERVED 0x13ff0000u

#define PCAPNG_BOM 0x1a2b3c4du
#define PCAPNG_BLOCK_MIN 12u /* type, leading length, trailing length */
#define SHB_BODY_MIN 16u     /* byte-order magic, version, section length */
#define IDB_BODY_MIN 8u      /* linktype, reserved, snaplen */
#define EPB_BODY_MIN 20u     /* interface, timestamp (2), caplen, wire length */
#define PB_BODY_MIN 20u      /* interface, drops, timestamp (2), caplen, wire length */
#define SPB_BODY_MIN 4u      /* wire length */

enum pcapng_block_type {
	BT_IDB = 0x00000001,
	BT_PB = 0x00000002,
	BT_SPB = 0x00000003,
	BT_NRB = 0x00000004,
	BT_ISB = 0x00000005,
	BT_EPB = 0x00000006,
	BT_JOURNAL = 0x00000009,
	BT_DSB = 0x0000000a,
	BT_CUSTOM = 0x00000bad,
	BT_CUSTOM_NOCOPY = 0x40000bad,
	BT_SHB = 0x0a0d0d0a,
};

enum idb_option { OPT_END = 0, OPT_IF_TSRESOL = 9, OPT_IF_TSOFFSET = 14 };

struct pcapng_iface {
	uint64_t units_per_sec;
	uint64_t ns_per_unit;   /* units_per_sec divides 10^9: the cheap path; else 0 */
	uint64_t offset_ns;     /* |if_tsoffset| in ns */
	bool offset_negative;
	uint32_t snaplen;       /* 0: no limit */
	uint16_t linktype;
};

enum pcap_format { FMT_PCAP, FMT_PCAPNG };

struct pcap_file {
	const uint8_t *buf;
	size_t len;
	size_t pos;          /* next record or block */
	size_t populated;    /* buf is made resident up to here (populate_ahead) */
	size_t populate_at;  /* the position at which the reader asks for the next chunk */
	char *name;
	enum pcap_format format;
	bool swapped;        /* file byte order differs from ours (per section for pcapng) */
	bool done;

	/* classic pcap */
	uint32_t ns_per_frac; /* 1000 for µs files, 1 for ns files */
	uint32_t snaplen;
	uint16_t linktype;

	/* pcapng: interfaces of the current section */
	struct pcapng_iface *ifaces;
	uint32_t n_ifaces;
	uint32_t ifaces_cap;
	uint64_t last_ts_ns; /* given to Simple Packet Blocks, which carry no time */

	uint64_t errors[MM_CAPERR__COUNT];
};

static uint16_t load16(const struct pcap_file *pf, const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return pf->swapped ? __builtin_bswap16(v) : v;
}

static uint32_t load32(const struct pcap_file *pf, const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return pf->swapped ? __builtin_bswap32(v) : v;
}

static uint32_t load32_native(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t load64(const struct pcap_file *pf, const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return pf->swapped ? __builtin_bswap64(v) : v;
}

static const char *format_name(const struct pcap_file *pf)
{
	return pf->format == FMT_PCAP ? "pcap" : "pcapng";
}

static const char *record_word(const struct pcap_file *pf)
{
	return pf->format == FMT_PCAP ? "record" : "block";
}

__attribute__((format(printf, 4, 0)))
static int failv_at(const struct pcap_file *pf, int status, size_t at, const char *fmt, va_list ap)
{
	char detail[256];

	vsnprintf(detail, sizeof(detail), fmt, ap);
	return mm_fail(status, "%s: %s: %s at byte %zu: %s", format_name(pf), pf->name,
		       record_word(pf), at, detail);
}

/* A record the reader cannot go past: counted, named, and the end of the file. */
__attribute__((format(printf, 5, 6)))
static int stop_at(struct pcap_file *pf, size_t at, enum mm_capture_error why, int status,
		   const char *fmt, ...)
{
	va_list ap;

	pf->errors[why]++;
	pf->done = true;
	pf->pos = pf->len;
	va_start(ap, fmt);
	failv_at(pf, status, at, fmt, ap);
	va_end(ap);
	return status;
}

/*
 * A record the reader can use anyway: counted every time, but the message is
 * only formatted the first time, to keep a file full of them cheap to read.
 */
__attribute__((format(printf, 4, 5)))
static void note_at(struct pcap_file *pf, size_t at, enum mm_capture_error why, const char *fmt, ...)
{
	va_list ap;

	if (pf->errors[why]++ != 0)
		return;
	va_start(ap, fmt);
	failv_at(pf, MM_EFORMAT, at, fmt, ap);
	va_end(ap);
}

/*
 * Length checks shared by both formats once the bytes are known to be there.
 * A wire length below caplen is raised to caplen, as Wireshark does (and the
 * pcap draft allows), so no captured byte is lost; a caplen above the snaplen
 * is kept whole, since the bytes are present and framed. Both are counted.
 */
static void check_lengths(struct pcap_file *pf, size_t at, uint32_t snaplen,
			  struct mm_raw_packet *pkt)
{
	if (__builtin_expect(pkt->wire_len < pkt->cap_len, 0)) {
		note_at(pf, at, MM_CAPERR_BAD_CAPLEN, "caplen %u exceeds wire length %u",
			pkt->cap_len, pkt->wire_len);
		pkt->wire_len = pkt->cap_len;
	} else if (__builtin_expect(snaplen != 0 && pkt->cap_len > snaplen, 0)) {
		note_at(pf, at, MM_CAPERR_BAD_CAPLEN, "caplen %u exceeds snaplen %u",
			pkt->cap_len, snaplen);
	}
}

/* ---- classic pcap ---- */

static int open_classic(struct pcap_file *pf, uint32_t magic)
{
	const uint8_t *h = pf->buf;
	uint16_t major, minor;
	uint32_t snaplen, link_field;

	pf->format = FMT_PCAP;
	pf->swapped = magic != PCAP_MAGIC_US && magic != PCAP_MAGIC_NS;
	pf->ns_per_frac = load32(pf, h) == PCAP_MAGIC_NS ? 1 : 1000;
	if (pf->len < PCAP_FILE_HDR_LEN)
		return mm_fail(MM_ETRUNC, "pcap: %s: header: file has %zu bytes, header needs %u",
			       pf->name, pf->len, PCAP_FILE_HDR_LEN);
	major = load16(pf, h + 4);
	minor = load16(pf, h + 6);
	snaplen = load32(pf, h + 16);
	link_field = load32(pf, h + 20);
	if (major != 2 || minor != 4)
		return mm_fail(MM_EUNSUP, "pcap: %s: header: version %u.%u, only 2.4 is read",
			       pf->name, major, minor);
	if (link_field & PCAP_LINKTYPE_RESERVED)
		return mm_fail(MM_EFORMAT,
			       "pcap: %s: header: reserved bits set in linktype field 0x%08x",
			       pf->name, link_field);
	/*
	 * The FCS bits (upper nibble and P bit) are read past: the decoder sizes
	 * packets from their IP headers, so trailing FCS bytes change nothing.
	 * A zero or huge snaplen (old writers) means "no limit", as in libpcap.
	 */
	pf->linktype = (uint16_t)(link_field & 0xffffu);
	pf->snaplen = snaplen == 0 || snaplen > MAX_CAPLEN ? MAX_CAPLEN : snaplen;
	pf->pos = PCAP_FILE_HDR_LEN;
	return 0;
}

/*
 * A mapped capture's pages are made resident this many bytes at a time,
 * one chunk ahead of the reader: one madvise maps a chunk's 1024 pages,
 * where touching them maps 16 per page fault and stalls the reader on
 * each.
 */
#define POPULATE_CHUNK ((size_t)4 << 20)

/*
 * Asks the kernel to map the next chunk of the buffer (page-aligned, as
 * madvise needs: the pages around a malloc'd buffer are the process's
 * own). A kernel without MADV_POPULATE_READ refuses it and the pages are
 * faulted in as they are read, as before: nothing depends on it.
 */
__attribute__((noinline, cold))
static void populate_ahead(struct pcap_file *pf)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), to;
	uintptr_t from;

	to = pf->len - pf->populated > POPULATE_CHUNK ? pf->populated + POPULATE_CHUNK : pf->len;
	from = (uintptr_t)(pf->buf + pf->populated) & ~(uintptr_t)(page - 1);
	(void)madvise((void *)from, (uintptr_t)(pf->buf + to) - from, MADV_POPULATE_READ);
	pf->populated = to;
	pf->populate_at = to == pf->len ? SIZE_MAX : to - POPULATE_CHUNK / 2;
}

/* Bytes ahead of the current record that the classic reader asks the cache for. */
#define PCAP_READ_AHEAD 1024

/*
 * The mapped file is read once, so every record header is a cache miss,
 * and the hardware prefetcher stops at each 4 KiB page. Asking for the
 * bytes a few records ahead (two lines: more than one record of
 * headers-only snaplen) keeps the stream in cache.
 */
static void prefetch_ahead(const struct pcap_file *pf, size_t at)
{
	if (__builtin_expect(pf->len - at > PCAP_READ_AHEAD + 128, 1)) {
		__builtin_prefetch(pf->buf + at + PCAP_READ_AHEAD);
		__builtin_prefetch(pf->buf + at + PCAP_READ_AHEAD + 64);
	}
}

static uint32_t load32_order(const uint8_t *p, bool swapped)
{
	uint32_t v = load32_native(p);

	return swapped ? __builtin_bswap32(v) : v;
}

/* Fills pkt from the record at rec, whose lengths the caller has checked. */
static inline __attribute__((always_inline))
void classic_packet(const struct pcap_file *pf, const uint8_t *rec, uint32_t cap_len,
		    uint32_t wire_len, bool swapped, struct mm_raw_packet *pkt)
{
	/* 32-bit seconds and fraction cannot overflow 64-bit nanoseconds. */
	pkt->ts_ns = (uint64_t)load32_order(rec, swapped) * NS_PER_SEC +
		     (uint64_t)load32_order(rec + 4, swapped) * pf->ns_per_frac;
	pkt->data = rec + PCAP_REC_HDR_LEN;
	pkt->cap_len = cap_len;
	pkt->wire_len = wire_len;
	pkt->linktype = pf->linktype;
}

/*
 * Any classic record, with every check and message: the records the fast
 * path below declines (corrupt, cut short, or merely counted) come here,
 * out of the way of the per-packet code.
 */
__attribute__((noinline, cold))
static int next_classic_checked(struct pcap_file *pf, struct mm_raw_packet *pkt)
{
	size_t at = pf->pos, left = pf->len - at;
	const uint8_t *rec = pf->buf + at;
	uint32_t cap_len;

	if (left < PCAP_REC_HDR_LEN) {
		if (left == 0) {
			pf->done = true;
			return 0;
		}
		return stop_at(pf, at, MM_CAPERR_TRUNCATED_RECORD, MM_ETRUNC,
			       "file ends %zu bytes into the %u-byte record header", left,
			       PCAP_REC_HDR_LEN);
	}
	cap_len = load32(pf, rec + 8);
	if (cap_len > MAX_CAPLEN)
		return stop_at(pf, at, MM_CAPERR_BAD_CAPLEN, MM_EFORMAT, "caplen %u exceeds %u",
			       cap_len, MAX_CAPLEN);
	if (cap_len > left - PCAP_REC_HDR_LEN)
		return stop_at(pf, at, MM_CAPERR_TRUNCATED_RECORD, MM_ETRUNC,
			       "caplen %u but the file ends %zu bytes later", cap_len,
			       left - PCAP_REC_HDR_LEN);
	classic_packet(pf, rec, cap_len, load32(pf, rec + 12), pf->swapped, pkt);
	check_lengths(pf, at, pf->snaplen, pkt);
	pf->pos = at + PCAP_REC_HDR_LEN + cap_len;
	return 1;
}

/*
 * The common classic record: whole, caplen within the snaplen (which is
 * never above MAX_CAPLEN) and the wire length. Anything else goes to
 * next_classic_checked, which reads the record again and says what is
 * wrong. swapped is a constant at each call, so each byte order gets its
 * own copy without a test per field.
 */
static inline __attribute__((always_inline))
int next_classic_fast(struct pcap_file *pf, struct mm_raw_packet *pkt, bool swapped)
{
	size_t at = pf->pos, left = pf->len - at;
	const uint8_t *rec = pf->buf + at;
	uint32_t cap_len, wire_len;

	if (__builtin_expect(left < PCAP_REC_HDR_LEN, 0))
		return next_classic_checked(pf, pkt);
	prefetch_ahead(pf, at);
	cap_len = load32_order(rec + 8, swapped);
	wire_len = load32_order(rec + 12, swapped);
	/* One branch for the three checks: all hold in a sound file. */
	if (__builtin_expect((cap_len > pf->snaplen) | (cap_len > left - PCAP_REC_HDR_LEN) |
			     (wire_len < cap_len), 0))
		return next_classic_checked(pf, pkt);
	classic_packet(pf, rec, cap_len, wire_len, swapped, pkt);
	pf->pos = at + PCAP_REC_HDR_LEN + cap_len;
	return 1;
}

/* ---- pcapng ---- */

/*
 * Reads the Section Header Block at the current position: its byte-order
 * magic sets the order of everything up to the next section, and a new
 * section forgets the interfaces of the one before. *block_len is set.
 */
static int read_shb(struct pcap_file *pf, uint32_t *block_len)
{
	size_t at = pf->pos, left = pf->len - at;
	const uint8_t *b = pf->buf + at;
	uint32_t bom, len;
	uint16_t major, minor;

	if (left < PCAPNG_BLOCK_MIN)
		return stop_at(pf, at, MM_CAPERR_TRUNCATED_RECORD, MM_ETRUNC,
			       "file ends %zu bytes into a section header block", left);
	bom = load32_native(b + 8);
	if (bom == PCAPNG_BOM)
		pf->swapped = false;
	else if (bom == __builtin_bswap32(PCAPNG_BOM))
		pf->swapped = true;
	else
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "section header byte-order magic %08x is neither order of %08x",
			       bom, PCAPNG_BOM);
	len = load32(pf, b + 4);
	if (len < PCAPNG_BLOCK_MIN + SHB_BODY_MIN || len % 4 != 0)
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "section header block length %u (needs a multiple of 4 >= %u)", len,
			       PCAPNG_BLOCK_MIN + SHB_BODY_MIN);
	if (left < PCAPNG_BLOCK_MIN + SHB_BODY_MIN)
		return stop_at(pf, at, MM_CAPERR_TRUNCATED_RECORD, MM_ETRUNC,
			       "file ends %zu bytes into a section header block", left);
	major = load16(pf, b + 12);
	minor = load16(pf, b + 14);
	/* 1.2 was written by some early tools and means the same as 1.0. */
	if (major != 1 || (minor != 0 && minor != 2))
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EUNSUP,
			       "section version %u.%u, only 1.0 is read", major, minor);
	pf->n_ifaces = 0;
	*block_len = len;
	return 0;
}

/* if_tsresol: 10^-n or 2^-n seconds per unit; finer than 64 bits can count is refused. */
static int set_tsresol(struct pcap_file *pf, size_t at, struct pcapng_iface *ifc, uint8_t resol)
{
	unsigned exp = resol & 0x7fu;
	uint64_t ups = 1;

	if (resol & 0x80u) {
		if (exp > 63)
			return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
				       "if_tsresol 2^-%u is finer than 2^-63", exp);
		ups = 1ull << exp;
	} else {
		if (exp > 19)
			return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
				       "if_tsresol 10^-%u is finer than 10^-19", exp);
		for (unsigned i = 0; i < exp; i++)
			ups *= 10;
	}
	ifc->units_per_sec = ups;
	ifc->ns_per_unit = NS_PER_SEC % ups == 0 ? NS_PER_SEC / ups : 0;
	return 0;
}

static int set_tsoffset(struct pcap_file *pf, size_t at, struct pcapng_iface *ifc, int64_t secs)
{
	const int64_t max_secs = (int64_t)(UINT64_MAX / NS_PER_SEC);

	if (secs > max_secs || secs < -max_secs)
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "if_tsoffset %lld s is beyond 64-bit nanoseconds", (long long)secs);
	ifc->offset_negative = secs < 0;
	ifc->offset_ns = (uint64_t)(secs < 0 ? -secs : secs) * NS_PER_SEC;
	return 0;
}

static int read_idb_options(struct pcap_file *pf, size_t at, struct pcapng_iface *ifc,
			    const uint8_t *opt, uint32_t opt_len)
{
	int rc;

	while (opt_len >= 4) {
		uint16_t code = load16(pf, opt), len = load16(pf, opt + 2);
		uint32_t padded = ((uint32_t)len + 3u) & ~3u;

		if (code == OPT_END)
			break;
		if (padded > opt_len - 4)
			return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
				       "interface option %u of %u bytes runs past the block", code,
				       len);
		if (code == OPT_IF_TSRESOL && len >= 1) {
			rc = set_tsresol(pf, at, ifc, opt[4]);
			if (rc < 0)
				return rc;
		} else if (code == OPT_IF_TSOFFSET && len >= 8) {
			rc = set_tsoffset(pf, at, ifc, (int64_t)load64(pf, opt + 4));
			if (rc < 0)
				return rc;
		}
		opt += 4 + padded;
		opt_len -= 4 + padded;
	}
	return 0;
}

static int grow_ifaces(struct pcap_file *pf, size_t at)
{
	uint32_t cap = pf->ifaces_cap ? pf->ifaces_cap * 2 : 8;
	struct pcapng_iface *ifaces;

	if (pf->n_ifaces >= MAX_INTERFACES)
		return stop_at(pf, at, MM_CAPERR_BAD_INTERFACE, MM_ELIMIT,
			       "more than %u interfaces in one section", MAX_INTERFACES);
	ifaces = realloc(pf->ifaces, (size_t)cap * sizeof(*ifaces));
	if (!ifaces) {
		/* Not the file's fault, so not counted; the reader still cannot go on. */
		pf->done = true;
		pf->pos = pf->len;
		return mm_fail(MM_ENOMEM, "pcapng: %s: table of %u interfaces", pf->name, cap);
	}
	pf->ifaces = ifaces;
	pf->ifaces_cap = cap;
	return 0;
}

static int read_idb(struct pcap_file *pf, size_t at, const uint8_t *body, uint32_t body_len)
{
	struct pcapng_iface ifc = { 0 };
	int rc;

	if (body_len < IDB_BODY_MIN)
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "interface description body of %u bytes (needs %u)", body_len,
			       IDB_BODY_MIN);
	if (pf->n_ifaces == pf->ifaces_cap) {
		rc = grow_ifaces(pf, at);
		if (rc < 0)
			return rc;
	}
	ifc.linktype = load16(pf, body);
	ifc.snaplen = load32(pf, body + 4);
	ifc.units_per_sec = 1000000; /* if_tsresol absent: microseconds */
	ifc.ns_per_unit = 1000;
	rc = read_idb_options(pf, at, &ifc, body + IDB_BODY_MIN, body_len - IDB_BODY_MIN);
	if (rc < 0)
		return rc;
	pf->ifaces[pf->n_ifaces++] = ifc;
	return 0;
}

/* Interface units to Unix ns, exactly (truncating below 1 ns); false on overflow. */
static bool units_to_ns(const struct pcapng_iface *ifc, uint64_t units, uint64_t *ns)
{
	uint64_t t;

	if (ifc->ns_per_unit != 0) {
		if (__builtin_mul_overflow(units, ifc->ns_per_unit, &t))
			return false;
	} else {
		uint64_t secs = units / ifc->units_per_sec, frac = units % ifc->units_per_sec;
		uint64_t frac_ns = (uint64_t)((unsigned __int128)frac * NS_PER_SEC /
					      ifc->units_per_sec);

		if (__builtin_mul_overflow(secs, NS_PER_SEC, &t) ||
		    __builtin_add_overflow(t, frac_ns, &t))
			return false;
	}
	if (ifc->offset_negative) {
		if (t < ifc->offset_ns)
			return false;
		t -= ifc->offset_ns;
	} else if (__builtin_add_overflow(t, ifc->offset_ns, &t)) {
		return false;
	}
	*ns = t;
	return true;
}

/* Fields common to Enhanced and obsolete Packet Blocks, read by their callers. */
struct packet_fields {
	uint32_t if_id;
	uint64_t units;
	uint32_t cap_len;
	uint32_t wire_len;
	const uint8_t *data;
	uint32_t room; /* bytes of block body from data on */
};

static int emit_packet(struct pcap_file *pf, size_t at, const struct packet_fields *f,
		       struct mm_raw_packet *pkt)
{
	const struct pcapng_iface *ifc;

	if (f->if_id >= pf->n_ifaces)
		return stop_at(pf, at, MM_CAPERR_BAD_INTERFACE, MM_EFORMAT,
			       "interface %u not described (section has %u)", f->if_id,
			       pf->n_ifaces);
	if (f->cap_len > MAX_CAPLEN)
		return stop_at(pf, at, MM_CAPERR_BAD_CAPLEN, MM_EFORMAT, "caplen %u exceeds %u",
			       f->cap_len, MAX_CAPLEN);
	if (f->cap_len > f->room)
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "caplen %u runs past the block (%u bytes of room)", f->cap_len,
			       f->room);
	ifc = &pf->ifaces[f->if_id];
	if (!units_to_ns(ifc, f->units, &pkt->ts_ns))
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "timestamp %llu on interface %u is outside 1970..2554",
			       (unsigned long long)f->units, f->if_id);
	pkt->data = f->data;
	pkt->cap_len = f->cap_len;
	pkt->wire_len = f->wire_len;
	pkt->linktype = ifc->linktype;
	check_lengths(pf, at, ifc->snaplen, pkt);
	pf->last_ts_ns = pkt->ts_ns;
	return 1;
}

static int read_epb(struct pcap_file *pf, size_t at, const uint8_t *body, uint32_t body_len,
		    struct mm_raw_packet *pkt)
{
	struct packet_fields f;

	if (body_len < EPB_BODY_MIN)
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "enhanced packet body of %u bytes (needs %u)", body_len,
			       EPB_BODY_MIN);
	f.if_id = load32(pf, body);
	f.units = (uint64_t)load32(pf, body + 4) << 32 | load32(pf, body + 8);
	f.cap_len = load32(pf, body + 12);
	f.wire_len = load32(pf, body + 16);
	f.data = body + EPB_BODY_MIN;
	f.room = body_len - EPB_BODY_MIN;
	return emit_packet(pf, at, &f, pkt);
}

static int read_pb(struct pcap_file *pf, size_t at, const uint8_t *body, uint32_t body_len,
		   struct mm_raw_packet *pkt)
{
	struct packet_fields f;

	if (body_len < PB_BODY_MIN)
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "packet block body of %u bytes (needs %u)", body_len, PB_BODY_MIN);
	f.if_id = load16(pf, body);
	f.units = (uint64_t)load32(pf, body + 4) << 32 | load32(pf, body + 8);
	f.cap_len = load32(pf, body + 12);
	f.wire_len = load32(pf, body + 16);
	f.data = body + PB_BODY_MIN;
	f.room = body_len - PB_BODY_MIN;
	return emit_packet(pf, at, &f, pkt);
}

/*
 * A Simple Packet Block has no interface id (it is interface 0), no caplen
 * and no time: caplen is min(wire length, snaplen, block room), and it takes
 * the time of the packet before it so flow timing never jumps to 1970.
 */
static int read_spb(struct pcap_file *pf, size_t at, const uint8_t *body, uint32_t body_len,
		    struct mm_raw_packet *pkt)
{
	const struct pcapng_iface *ifc;
	uint32_t cap_len, wire_len;

	if (body_len < SPB_BODY_MIN)
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "simple packet body of %u bytes (needs %u)", body_len, SPB_BODY_MIN);
	if (pf->n_ifaces == 0)
		return stop_at(pf, at, MM_CAPERR_BAD_INTERFACE, MM_EFORMAT,
			       "simple packet block before any interface description");
	ifc = &pf->ifaces[0];
	wire_len = load32(pf, body);
	cap_len = body_len - SPB_BODY_MIN;
	if (wire_len < cap_len)
		cap_len = wire_len;
	if (ifc->snaplen != 0 && ifc->snaplen < cap_len)
		cap_len = ifc->snaplen;
	if (cap_len > MAX_CAPLEN)
		return stop_at(pf, at, MM_CAPERR_BAD_CAPLEN, MM_EFORMAT, "caplen %u exceeds %u",
			       cap_len, MAX_CAPLEN);
	pkt->ts_ns = pf->last_ts_ns;
	pkt->data = body + SPB_BODY_MIN;
	pkt->cap_len = cap_len;
	pkt->wire_len = wire_len;
	pkt->linktype = ifc->linktype;
	return 1;
}

/* Blocks that are well understood but carry nothing the meter uses. */
static bool is_known_skip_block(uint32_t type)
{
	switch (type) {
	case BT_NRB:
	case BT_ISB:
	case BT_JOURNAL:
	case BT_DSB:
	case BT_CUSTOM:
	case BT_CUSTOM_NOCOPY:
		return true;
	}
	return false;
}

/* One block at pf->pos: 1 and *pkt for a packet, 0 to go on, negative to stop. */
static int read_block(struct pcap_file *pf, struct mm_raw_packet *pkt)
{
	size_t at = pf->pos, left = pf->len - at;
	const uint8_t *b = pf->buf + at;
	uint32_t type, len, trailer;
	int rc;

	if (left < PCAPNG_BLOCK_MIN)
		return stop_at(pf, at, MM_CAPERR_TRUNCATED_RECORD, MM_ETRUNC,
			       "file ends %zu bytes into a block header", left);
	type = load32_native(b);
	if (type == BT_SHB) {
		rc = read_shb(pf, &len);
		if (rc < 0)
			return rc;
	} else {
		type = load32(pf, b);
		len = load32(pf, b + 4);
		if (len < PCAPNG_BLOCK_MIN || len % 4 != 0)
			return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
				       "block length %u (needs a multiple of 4 >= %u)", len,
				       PCAPNG_BLOCK_MIN);
	}
	if (len > left)
		return stop_at(pf, at, MM_CAPERR_TRUNCATED_RECORD, MM_ETRUNC,
			       "block length %u but the file ends %zu bytes later", len, left);
	trailer = load32(pf, b + len - 4);
	if (trailer != len)
		return stop_at(pf, at, MM_CAPERR_BAD_BLOCK, MM_EFORMAT,
			       "trailing length %u differs from leading length %u", trailer, len);
	pf->pos = at + len;

	const uint8_t *body = b + 8;
	uint32_t body_len = len - PCAPNG_BLOCK_MIN;

	switch (type) {
	case BT_SHB:
		return 0;
	case BT_IDB:
		return read_idb(pf, at, body, body_len);
	case BT_EPB:
		return read_epb(pf, at, body, body_len, pkt);
	case BT_SPB:
		return read_spb(pf, at, body, body_len, pkt);
	case BT_PB:
		return read_pb(pf, at, body, body_len, pkt);
	}
	if (!is_known_skip_block(type))
		note_at(pf, at, MM_CAPERR_UNKNOWN_BLOCK, "block type 0x%08x skipped", type);
	return 0;
}

/* Out of line, so that its frame does not weigh on the classic reader's per-packet call. */
__attribute__((noinline))
static int next_pcapng(struct pcap_file *pf, struct mm_raw_packet *pkt)
{
	int rc;

	while (pf->pos < pf->len) {
		rc = read_block(pf, pkt);
		if (rc != 0)
			return rc;
	}
	pf->done = true;
	return 0;
}

static int open_pcapng(struct pcap_file *pf)
{
	uint32_t len;
	int rc;

	pf->format = FMT_PCAPNG;
	rc = read_shb(pf, &len);
	if (rc < 0)
		return rc;
	if (len > pf->len)
		return mm_fail(MM_ETRUNC, "pcapng: %s: block at byte 0: section header length %u "
			       "but the file has %zu bytes", pf->name, len, pf->len);
	return 0;
}

int pcap_file_open(struct pcap_file **out, const uint8_t *buf, size_t len, const char *name)
{
	struct pcap_file *pf;
	uint32_t magic;
	int rc;

	*out = NULL;
	if (len < 4)
		return mm_fail(MM_ETRUNC, "pcap: %s: header: file has %zu bytes, too short for "
			       "any capture header", name, len);
	pf = calloc(1, sizeof(*pf));
	if (!pf)
		return mm_fail(MM_ENOMEM, "pcap: %s: reader", name);
	pf->name = strdup(name);
	if (!pf->name) {
		rc = mm_fail(MM_ENOMEM, "pcap: %s: reader", name);
		goto out;
	}
	pf->buf = buf;
	pf->len = len;
	magic = load32_native(buf);
	if (magic == PCAP_MAGIC_US || magic == PCAP_MAGIC_NS ||
	    magic == __builtin_bswap32(PCAP_MAGIC_US) || magic == __builtin_bswap32(PCAP_MAGIC_NS))
		rc = open_classic(pf, magic);
	else if (magic == BT_SHB)
		rc = open_pcapng(pf);
	else
		rc = mm_fail(MM_EFORMAT, "pcap: %s: header: magic %02x%02x%02x%02x is neither "
			     "pcap nor pcapng", name, buf[0], buf[1], buf[2], buf[3]);
out:
	if (rc < 0) {
		pcap_file_free(pf);
		return rc;
	}
	*out = pf;
	return 0;
}

int pcap_file_next(struct pcap_file *pf, struct mm_raw_packet *pkt)
{
	if (pf->done)
		return 0;
	if (__builtin_expect(pf->pos >= pf->populate_at, 0))
		populate_ahead(pf);
	if (pf->format == FMT_PCAP)
		return pf->swapped ? next_classic_fast(pf, pkt, true) : next_classic_fast(pf, pkt, false);
	return next_pcapng(pf, pkt);
}

void pcap_file_add_errors(const struct pcap_file *pf, uint64_t *errors)
{
	for (unsigned i = 0; i < MM_CAPERR__COUNT; i++)
		errors[i] += pf->errors[i];
}

void pcap_file_free(struct pcap_file *pf)
{
	if (!pf)
		return;
	free(pf->ifaces);
	free(pf->name);
	free(pf);
}
