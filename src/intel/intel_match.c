/*
 * Readers of a compiled set: mapping and validating the file, and the
 * lookups. An IPv4 lookup reads the 2^16 table (1 MiB, mostly in the L2
 * cache), then usually one line of a run group, which holds the answer;
 * /16s with more runs use a run list (a key line and a value line) or
 * 8-bit nodes. IPv6 reads the 2^24 table, then one node per byte, most
 * often a single tail. The batch call is a software pipeline that
 * prefetches each read dozens of lookups ahead, so the cache misses of
 * different addresses overlap.
 */
#include "intel/intel_int.h"

#include "mamori/flow.h"
#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCH 64 /* flows per batch call: 128 addresses, most of them in the pipeline's steady state */

/* ---- mapping and validation ---- */

static int bad(const char *name, const char *what)
{
	return mm_fail(MM_EFORMAT, "intel: %s: damaged compiled file (%s); recompile it", name, what);
}

/* A leaf record as a hit reads it: none, or exactly the record of a prefix. */
static bool leaf_ok(const struct mm_intel_snap *s, const struct mmi_leaf *l)
{
	if (l->n_len == 0)
		return true;
	return l->first < s->n_ind && s->ind[l->first].kind == MM_INTEL_PREFIX &&
	       memcmp(l, &s->leaf[s->ind[l->first].pfx], sizeof(*l)) == 0;
}

/* Keys that can count (not 0xffff) bound the run index, so the values read are the ones checked. */
static bool list_ok(const struct mm_intel_snap *s, uint32_t idx)
{
	size_t first = idx >> 2, lines = (idx & 3) + 1, keys = 0;
	const struct mmi_leaf *val;

	if (first > s->n_list || lines > s->n_list - first)
		return false;
	for (size_t i = 0; i < lines; i++)
		for (unsigned k = 0; k < MMI_LIST_KEYS; k++)
			keys += s->list[first + i].key[k] != 0xffff;
	if ((keys + 1 + 7) / 8 > s->n_list - first - lines)
		return false;
	val = (const struct mmi_leaf *)&s->list[first + lines];
	for (size_t i = 0; i <= keys; i++)
		if (!leaf_ok(s, &val[i]))
			return false;
	return true;
}

/* Run lists answer by the last 16 bits of an IPv4 address: only the IPv4 table may hold them. */
static bool entry_ok(const struct mm_intel_snap *s, uint32_t e, bool v4_top)
{
	uint32_t idx = e & MMI_INDEX_MASK;

	switch (e >> MMI_TAG_SHIFT) {
	case MMI_TAG_LEAF: return idx <= s->n_pfx;
	case MMI_TAG_COMPACT: return idx < s->n_compact;
	case MMI_TAG_DENSE: return idx < s->n_dense;
	case MMI_TAG_TAIL: return idx < s->n_tail;
	case MMI_TAG_LIST: return v4_top && list_ok(s, idx);
	default: return false;
	}
}

static bool compact_ok(const struct mmi_compact *c)
{
	unsigned used;

	if (c->bias < sizeof(c->start) - (MMI_COMPACT_MAX - 1) || c->bias > sizeof(c->start))
		return false;
	used = (unsigned)sizeof(c->start) - c->bias;
	for (unsigned i = 0; i < sizeof(c->start); i++) {
		if (i < used ? (c->start[i] == 0 || (i && c->start[i] <= c->start[i - 1])) : c->start[i] != 0)
			return false;
	}
	return true;
}

static bool str_ok(const struct mm_intel_snap *s, uint32_t off)
{
	return off < s->str_len;
}

/* A packed record: all zero (no match), or exactly the record of a prefix. */
static bool packed_ok(const struct mm_intel_snap *s, uint32_t first_len, uint16_t n)
{
	struct mmi_leaf l = mmi_leaf_unpack(first_len, n);

	return n ? leaf_ok(s, &l) : first_len == 0;
}

/* A run group's lines lie in the section, their padding key bounds the run, and every answer is checked. */
static bool group_ok(const struct mm_intel_snap *s, uint32_t first, const uint16_t *split)
{
	size_t lines = 1;

	for (unsigned k = 0; k < MMI_GROUP_MAX_LINES - 1; k++)
		lines += split[k] != 0xffff;
	if (first > s->n_group || lines > s->n_group - first)
		return false;
	for (size_t i = first; i < first + lines; i++) {
		if (s->group[i].key[MMI_GROUP_RUNS - 1] != 0xffff)
			return false;
		for (unsigned k = 0; k < MMI_GROUP_RUNS; k++)
			if (!packed_ok(s, s->group[i].first_len[k], s->group[i].n[k]))
				return false;
	}
	return true;
}

/* An IPv4 table entry with what lies beside it: a group's splits, a leaf's packed record, or zeros. */
static bool v4_entry_ok(const struct mm_intel_snap *s, const struct mmi_v4top *t)
{
	uint32_t idx = t->e & MMI_INDEX_MASK;
	struct mmi_leaf l;

	switch (t->e >> MMI_TAG_SHIFT) {
	case MMI_TAG_GROUP: return group_ok(s, idx, t->u.split);
	case MMI_TAG_LEAF:
		l = mmi_leaf_unpack(t->u.leaf.first_len, t->u.leaf.n);
		if ((t->u.leaf.zero[0] | t->u.leaf.zero[1] | t->u.leaf.zero[2]) != 0 || idx > s->n_pfx ||
		    !packed_ok(s, t->u.leaf.first_len, t->u.leaf.n))
			return false;
		/* Packed, it must be this entry's record: the lookup trusts it instead of the leaf table. */
		return l.n_len == 0 || (idx && memcmp(&l, &s->leaf[idx - 1], sizeof(l)) == 0);
	default:
		for (unsigned k = 0; k < MMI_GROUP_MAX_LINES - 1; k++)
			if (t->u.split[k] != 0)
				return false;
		return entry_ok(s, t->e, true);
	}
}

/* Every index the lookups follow is checked once here, so they need no checks. */
static int validate(struct mm_intel_snap *s, const char *name)
{
	for (size_t i = 0; i < s->n_pfx; i++) {
		const struct mmi_pfx *p = &s->pfx[i];

		if (p->parent > i || p->n == 0 || p->first > s->n_ind || p->n > s->n_ind - p->first)
			return bad(name, "prefix table");
	}
	for (size_t i = 0; i < s->n_pfx; i++)
		if (s->leaf[i].first != s->pfx[i].first || s->leaf[i].n_len != (s->pfx[i].n << 8 | s->pfx[i].len) ||
		    s->pfx[i].len > 128 || s->pfx[i].n >= 1u << 24 || s->ind[s->pfx[i].first].kind != MM_INTEL_PREFIX ||
		    s->ind[s->pfx[i].first].pfx != i)
			return bad(name, "leaf table");
	for (size_t i = 0; i < s->n_asn + s->n_port; i++) {
		const struct mmi_key *k = i < s->n_asn ? &s->asn[i] : &s->port[i - s->n_asn];

		if (k->n == 0 || k->first > s->n_ind || k->n > s->n_ind - k->first)
			return bad(name, "key table");
	}
	for (size_t i = 0; i < s->n_ind; i++) {
		const struct mmi_ind *d = &s->ind[i];

		if (d->kind > MM_INTEL_PORT || d->tlp > MM_TLP_RED || (d->kind == MM_INTEL_PREFIX && d->pfx >= s->n_pfx) ||
		    !str_ok(s, d->source) || !str_ok(s, d->id) || !str_ok(s, d->tags))
			return bad(name, "indicator table");
	}
	for (size_t i = 0; i < s->n_src; i++)
		if (!str_ok(s, s->src[i].name) || s->src[i].tlp > MM_TLP_RED)
			return bad(name, "source table");
	if (s->str_len == 0 || s->str[s->str_len - 1] != '\0')
		return bad(name, "string table");
	for (size_t i = 0; i < (size_t)1 << MMI_V4_TOP_BITS; i++)
		if (!v4_entry_ok(s, &s->v4_top[i]))
			return bad(name, "IPv4 table");
	for (size_t i = 0; i < (size_t)1 << MMI_V6_TOP_BITS; i++)
		if (!entry_ok(s, s->v6_top[i], false))
			return bad(name, "IPv6 table");
	for (size_t i = 0; i < s->n_compact; i++) {
		if (!compact_ok(&s->compact[i]))
			return bad(name, "node");
		for (unsigned k = 0; k < MMI_COMPACT_MAX; k++)
			if (!entry_ok(s, s->compact[i].ent[k], false))
				return bad(name, "node");
	}
	for (size_t i = 0; i < s->n_dense; i++)
		for (unsigned k = 0; k < 256; k++)
			if (!entry_ok(s, s->dense[i].ent[k], false))
				return bad(name, "node");
	for (size_t i = 0; i < s->n_tail; i++) {
		const struct mmi_tail *t = &s->tail[i];

		if (t->miss >> MMI_TAG_SHIFT || !entry_ok(s, t->miss, false) || t->bits > 128 || t->leaf.n_len == 0 ||
		    !leaf_ok(s, &t->leaf))
			return bad(name, "tail");
	}
	return 0;
}

const size_t intel_sec_size[MMI_N_SECTIONS] = {
	[MMI_SEC_IND] = sizeof(struct mmi_ind),	    [MMI_SEC_PFX] = sizeof(struct mmi_pfx),
	[MMI_SEC_ASN] = sizeof(struct mmi_key),	    [MMI_SEC_PORT] = sizeof(struct mmi_key),
	[MMI_SEC_SRC] = sizeof(struct mmi_src),	    [MMI_SEC_STR] = 1,
	[MMI_SEC_V4_TOP] = sizeof(struct mmi_v4top), [MMI_SEC_V6_TOP] = sizeof(uint32_t),
	[MMI_SEC_COMPACT] = sizeof(struct mmi_compact), [MMI_SEC_DENSE] = sizeof(struct mmi_dense),
	[MMI_SEC_TAIL] = sizeof(struct mmi_tail),   [MMI_SEC_LEAF] = sizeof(struct mmi_leaf),
	[MMI_SEC_LIST] = sizeof(union mmi_line),	    [MMI_SEC_GROUP] = sizeof(struct mmi_gline),
};

static inline uint64_t mix(uint64_t h, uint64_t w)
{
	h ^= w * 0x9e3779b97f4a7c15ull;
	return (h << 27 | h >> 37) * 0xbf58476d1ce4e5b9ull;
}

uint64_t intel_checksum(const struct mmi_header *h, const void *const sec[MMI_N_SECTIONS])
{
	uint64_t sum = mix(mix(0x6d616d6f72696e74ull /* "mamorint" */, h->compiled_ns), h->next_expiry_ns);

	for (int i = 0; i < MMI_N_SECTIONS; i++) {
		const uint8_t *p = sec[i];
		size_t len = (size_t)h->sec[i].count * intel_sec_size[i], k = 0;
		uint64_t w;

		sum = mix(sum, len);
		if (!len) /* an empty section may have no buffer behind it */
			continue;
		for (; k + 8 <= len; k += 8) {
			memcpy(&w, p + k, 8);
			sum = mix(sum, w);
		}
		w = 0;
		memcpy(&w, p + k, len - k);
		sum = mix(sum, w);
	}
	return sum ^ sum >> 29;
}

/*
 * The lookup tables (from the IPv4 table to the run groups, the end of the
 * file) are read at random: with 4 KiB pages nearly every lookup also
 * misses the TLB, which costs more than the cache miss itself. They are
 * copied once per snapshot onto transparent huge pages; where the kernel
 * offers none, the mapping is used as it is. All-zero pages (most of the
 * IPv6 table) are not copied, so the huge pages that only they would fill
 * are never touched and take no memory; the mapping's pages of the copied
 * range are then dropped from this process (the page cache keeps them).
 */
static void copy_hot(struct mm_intel_snap *s, const void *sec[MMI_N_SECTIONS])
{
	const size_t huge = 2u << 20, page = 4096;
	size_t from = s->hdr->sec[MMI_SEC_V4_TOP].off, len = s->map_len - from;
	size_t span = (len + huge - 1) & ~(huge - 1), drop = (from + page - 1) & ~(page - 1);
	static const uint8_t zero[4096];
	const uint8_t *src = (const uint8_t *)s->map + from;
	uint8_t *p, *base;

	p = mmap(NULL, span + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	base = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
	if (madvise(base, span, MADV_HUGEPAGE) != 0) {
		munmap(p, span + huge);
		return;
	}
	for (size_t at = 0; at < len; at += page) {
		size_t n = len - at < page ? len - at : page;

		if (memcmp(src + at, zero, n) != 0)
			memcpy(base + at, src + at, n);
	}
	mprotect(base, span, PROT_READ);
	if (drop < s->map_len)
		madvise((uint8_t *)s->map + drop, s->map_len - drop, MADV_DONTNEED);
	s->hot = p;
	s->hot_len = span + huge;
	for (int i = MMI_SEC_V4_TOP; i < MMI_N_SECTIONS; i++)
		sec[i] = base + (s->hdr->sec[i].off - from);
}

int intel_snap_map(int fd, const char *name, struct mm_intel_snap **out)
{
	struct mm_intel_snap *s;
	const struct mmi_header *h;
	const void *sec[MMI_N_SECTIONS];
	struct stat sb;
	int rc;

	if (fstat(fd, &sb) != 0)
		return mm_fail(MM_EIO, "intel: %s: %s", name, strerror(errno));
	if ((size_t)sb.st_size < sizeof(*h))
		return bad(name, "shorter than its header");
	s = calloc(1, sizeof(*s));
	if (!s)
		return mm_fail(MM_ENOMEM, "intel: snapshot");
	s->map_len = (size_t)sb.st_size;
	s->map = mmap(NULL, s->map_len, PROT_READ, MAP_SHARED, fd, 0);
	if (s->map == MAP_FAILED) {
		rc = mm_fail(MM_EIO, "intel: mmap %s: %s", name, strerror(errno));
		free(s);
		return rc;
	}
	h = s->hdr = s->map;
	rc = 0;
	if (memcmp(h->magic, MMI_MAGIC, 8) != 0 || h->endian != 0x01020304)
		rc = mm_fail(MM_EFORMAT, "intel: %s: not a compiled indicator set of this machine", name);
	else if (h->version != MMI_VERSION)
		rc = mm_fail(MM_EUNSUP,
			     "intel: %s: compiled file format version %u, this build reads version %u; recompile it "
			     "from sources/ (mamori intel import or remove recompiles)",
			     name, h->version, MMI_VERSION);
	else if (h->file_size != s->map_len)
		rc = bad(name, "size differs from its header");
	for (int i = 0; !rc && i < MMI_N_SECTIONS; i++) {
		uint64_t off = h->sec[i].off, cnt = h->sec[i].count;

		if (off % 64 || off > s->map_len || cnt > (s->map_len - off) / intel_sec_size[i])
			rc = bad(name, "section outside the file");
		sec[i] = (const char *)s->map + off;
	}
	if (!rc && (h->sec[MMI_SEC_V4_TOP].count != (1u << MMI_V4_TOP_BITS) ||
		    h->sec[MMI_SEC_V6_TOP].count != (1u << MMI_V6_TOP_BITS) ||
		    h->sec[MMI_SEC_IND].count > UINT32_MAX || h->sec[MMI_SEC_PFX].count > MMI_INDEX_MASK ||
		    h->sec[MMI_SEC_LEAF].count != h->sec[MMI_SEC_PFX].count))
		rc = bad(name, "table sizes");
	if (!rc) {
		/* Sections are in file order: the lookup tables are the file's tail. */
		for (int i = MMI_SEC_V4_TOP + 1; i < MMI_N_SECTIONS; i++)
			if (h->sec[i].off < h->sec[i - 1].off)
				rc = bad(name, "section order");
	}
	if (!rc && intel_checksum(h, sec) != h->checksum)
		rc = bad(name, "checksum");
	if (!rc && h->sec[MMI_SEC_PFX].count > 0)
		copy_hot(s, sec);
	if (!rc) {
		s->ind = sec[MMI_SEC_IND];
		s->pfx = sec[MMI_SEC_PFX];
		s->asn = sec[MMI_SEC_ASN];
		s->port = sec[MMI_SEC_PORT];
		s->src = sec[MMI_SEC_SRC];
		s->str = sec[MMI_SEC_STR];
		s->v4_top = sec[MMI_SEC_V4_TOP];
		s->v6_top = sec[MMI_SEC_V6_TOP];
		s->compact = sec[MMI_SEC_COMPACT];
		s->dense = sec[MMI_SEC_DENSE];
		s->tail = sec[MMI_SEC_TAIL];
		s->leaf = sec[MMI_SEC_LEAF];
		s->list = sec[MMI_SEC_LIST];
		s->group = sec[MMI_SEC_GROUP];
		s->next_expiry_ns = h->next_expiry_ns;
		s->n_ind = h->sec[MMI_SEC_IND].count;
		s->n_pfx = h->sec[MMI_SEC_PFX].count;
		s->n_asn = h->sec[MMI_SEC_ASN].count;
		s->n_port = h->sec[MMI_SEC_PORT].count;
		s->n_src = h->sec[MMI_SEC_SRC].count;
		s->str_len = h->sec[MMI_SEC_STR].count;
		s->n_compact = h->sec[MMI_SEC_COMPACT].count;
		s->n_dense = h->sec[MMI_SEC_DENSE].count;
		s->n_tail = h->sec[MMI_SEC_TAIL].count;
		s->n_list = h->sec[MMI_SEC_LIST].count;
		s->n_group = h->sec[MMI_SEC_GROUP].count;
		rc = validate(s, name);
	}
	if (rc) {
		if (s->hot)
			munmap(s->hot, s->hot_len);
		munmap(s->map, s->map_len);
		free(s);
		return rc;
	}
	atomic_init(&s->refs, 1);
	*out = s;
	return 0;
}

int mm_intel_snap_open(const char *path, struct mm_intel_snap **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "intel: %s: %s", path, strerror(errno));
	rc = intel_snap_map(fd, path, out);
	close(fd);
	return rc;
}

struct mm_intel_snap *mm_intel_snap_ref(struct mm_intel_snap *snap)
{
	atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
	return snap;
}

void mm_intel_snap_put(struct mm_intel_snap *snap)
{
	if (!snap || atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (snap->hot)
		munmap(snap->hot, snap->hot_len);
	munmap(snap->map, snap->map_len);
	free(snap);
}

size_t mm_intel_snap_count(const struct mm_intel_snap *snap)
{
	return snap->n_ind;
}

size_t mm_intel_snap_prefixes(const struct mm_intel_snap *snap)
{
	return snap->n_pfx;
}

/* ---- lookups ---- */

static inline void wr_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

/* One step down an 8-bit node from entry e with address byte b. */
static inline uint32_t node_step(const struct mm_intel_snap *s, uint32_t e, uint8_t b)
{
	uint32_t idx = e & MMI_INDEX_MASK;
	const struct mmi_compact *c;
	unsigned k = 0;

	if (e >> MMI_TAG_SHIFT == MMI_TAG_DENSE)
		return s->dense[idx].ent[b];
	c = &s->compact[idx];
	for (unsigned i = 0; i < sizeof(c->start); i++) /* vectorised by the compiler */
		k += c->start[i] <= b;
	return c->ent[k - c->bias];
}

/* Whether tail t's prefix covers a: one masked compare of the whole address. */
static inline bool tail_covers(const struct mmi_tail *t, const struct mm_addr *a)
{
	unsigned bits = t->bits;
	uint64_t mhi = bits >= 64 ? ~0ull : (bits ? ~0ull << (64 - bits) : 0);
	uint64_t mlo = bits <= 64 ? 0 : (bits >= 128 ? ~0ull : ~0ull << (128 - bits));

	return (mm_addr_be64_(a->b) & mhi) == t->hi && (mm_addr_be64_(a->b + 8) & mlo) == t->lo;
}

static inline const void *node_addr(const struct mm_intel_snap *s, uint32_t e, uint8_t b)
{
	uint32_t idx = e & MMI_INDEX_MASK;

	switch (e >> MMI_TAG_SHIFT) {
	case MMI_TAG_DENSE: return &s->dense[idx].ent[b];
	case MMI_TAG_COMPACT: return &s->compact[idx];
	default: return &s->tail[idx];
	}
}

/* The leaf record of IPv4 address a in run list e: the run is the number of keys below a's last 16 bits. */
static inline const struct mmi_leaf *list_find(const struct mm_intel_snap *s, uint32_t e, const struct mm_addr *a)
{
	const union mmi_line *l = &s->list[(e & MMI_INDEX_MASK) >> 2];
	unsigned lines = (e & 3) + 1, run = 0;
	uint16_t x = (uint16_t)(a->b[14] << 8 | a->b[15]);

	for (unsigned i = 0; i < lines; i++)
		for (unsigned k = 0; k < MMI_LIST_KEYS; k++) /* vectorised by the compiler */
			run += l[i].key[k] < x;
	return (const struct mmi_leaf *)&l[lines] + run; /* the value lines are one array */
}

/* The last 16 bits of an IPv4 address: what a /16's run group or run list answers by. */
static inline uint16_t v4_low16(const struct mm_addr *a)
{
	return (uint16_t)(a->b[14] << 8 | a->b[15]);
}

/* The line of run group entry t holding x: the number of splits below x. */
static inline const struct mmi_gline *group_line(const struct mm_intel_snap *s, const struct mmi_v4top *t, uint16_t x)
{
	unsigned line = 0;

	for (unsigned k = 0; k < MMI_GROUP_MAX_LINES - 1; k++)
		line += t->u.split[k] < x;
	return &s->group[(t->e & MMI_INDEX_MASK) + line];
}

/* The answer for x in a run group line (validation keeps key[7] padding, so the run is at most 7). */
static inline struct mmi_leaf group_find(const struct mmi_gline *l, uint16_t x)
{
	unsigned run = 0;

	for (unsigned k = 0; k < MMI_GROUP_RUNS; k++)
		run += l->key[k] < x;
	return mmi_leaf_unpack(l->first_len[run], l->n[run]);
}

/*
 * The walk of the deeper forms (run lists, 8-bit nodes), which the probe
 * below leaves to it: what its next step reads (p, prefetched by the batch
 * before the step) and how far down it is. Steps: a node per address byte
 * (IPv6, crowded IPv4 /16s), a tail or a run list, then the answer's leaf
 * record unless it is already in cache (LANE_DONE: none, or the record
 * inside the tail just read).
 */
enum { LANE_NODE, LANE_LIST, LANE_LEAF, LANE_DONE, LANE_IDLE };

struct lane {
	const struct mm_addr *a;
	const void *p;  /* LANE_LEAF, LANE_DONE: the leaf record, NULL for no match */
	uint32_t e;     /* LANE_NODE, LANE_LIST: the entry being followed */
	uint8_t i;      /* LANE_NODE: the address byte it consumes */
	uint8_t st;
};

/* Follows entry e: sets what the next step reads. */
static inline void lane_enter(const struct mm_intel_snap *s, struct lane *l, uint32_t e)
{
	uint32_t tag = e >> MMI_TAG_SHIFT, idx = e & MMI_INDEX_MASK;

	l->e = e;
	if (tag == MMI_TAG_LEAF || l->i == 16) {
		/* A node past the last byte (only a damaged-looking chain) answers nothing. */
		l->p = tag == MMI_TAG_LEAF && idx ? &s->leaf[idx - 1] : NULL;
		l->st = l->p ? LANE_LEAF : LANE_DONE;
	} else if (tag == MMI_TAG_LIST) {
		l->st = LANE_LIST;
		l->p = &s->list[idx >> 2];
	} else {
		l->st = LANE_NODE;
		l->p = node_addr(s, e, l->a->b[l->i]);
	}
}

/* Starts the walk of a below its top-level entry e (IPv4 by its first 16 bits, IPv6 by its first 24). */
static inline void lane_start(const struct mm_intel_snap *s, struct lane *l, const struct mm_addr *a, uint32_t e)
{
	l->a = a;
	l->i = mm_addr_is_v4(a) ? 14 : 3;
	lane_enter(s, l, e);
}

/* One dependent read: the line p points at, which the batch prefetched. */
static inline void lane_step(const struct mm_intel_snap *s, struct lane *l)
{
	const struct mmi_tail *t;

	switch (l->st) {
	case LANE_NODE:
		if (l->e >> MMI_TAG_SHIFT != MMI_TAG_TAIL) {
			lane_enter(s, l, node_step(s, l->e, l->a->b[l->i++]));
			break;
		}
		t = l->p;
		if (tail_covers(t, l->a)) {
			l->p = &t->leaf;
			l->st = LANE_DONE;
		} else {
			lane_enter(s, l, t->miss);
		}
		break;
	default: /* LANE_LIST */
		l->p = list_find(s, l->e, l->a);
		l->st = LANE_LEAF;
		break;
	}
}

static const struct mmi_leaf no_match;

/* The answer of a finished lane: its leaf record (n_len 0: no match, as a run list's empty record). */
static inline struct mmi_leaf lane_answer(const struct lane *l)
{
	return l->p ? *(const struct mmi_leaf *)l->p : no_match;
}

/*
 * The first two reads of a lookup, which answer nearly all of them: the
 * top-level entry, then at most one line it points to (a run group's line,
 * a tail, or a leaf record). An IPv4 /16 that no longer prefix cuts is
 * answered by its entry alone (the packed record beside it). What lies
 * deeper (run lists, 8-bit nodes) is left to the lanes' walk.
 */
enum { PROBE_DONE, PROBE_LEAF, PROBE_GROUP, PROBE_TAIL, PROBE_WALK };

struct probe {
	const void *p; /* the top-level entry, then (PROBE_LEAF, _GROUP, _TAIL) the line the second read reads */
	uint32_t e;    /* PROBE_WALK: the top-level entry the walk starts from */
	uint8_t kind;
	bool v4;
};

/* Where a's top-level entry is (the batch prefetches it): IPv4 by its first 16 bits, IPv6 by its first 24. */
static inline void probe_start(const struct mm_intel_snap *s, const struct mm_addr *a, struct probe *pr)
{
	const uint8_t *b = a->b;

	pr->v4 = mm_addr_is_v4(a);
	if (pr->v4)
		pr->p = &s->v4_top[(uint32_t)b[12] << 8 | b[13]];
	else
		pr->p = &s->v6_top[(uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2]];
}

/* The first read, of the top-level entry: the answer (PROBE_DONE, in *ans) or what to read next. */
static inline void probe_top(const struct mm_intel_snap *s, const struct mm_addr *a, struct probe *pr,
			     struct mmi_leaf *ans)
{
	uint32_t e, tag, idx;

	if (pr->v4) {
		const struct mmi_v4top *t = pr->p;

		e = t->e;
		tag = e >> MMI_TAG_SHIFT;
		idx = e & MMI_INDEX_MASK;
		if (tag == MMI_TAG_GROUP) {
			pr->kind = PROBE_GROUP;
			pr->p = group_line(s, t, v4_low16(a));
			return;
		}
		if (tag == MMI_TAG_LEAF) {
			*ans = mmi_leaf_unpack(t->u.leaf.first_len, t->u.leaf.n);
			/* Not packed (too many indicators for 16 bits): the leaf table has it. */
			pr->kind = ans->n_len || !idx ? PROBE_DONE : PROBE_LEAF;
			pr->p = &s->leaf[idx - (idx != 0)];
			return;
		}
	} else {
		e = *(const uint32_t *)pr->p;
		tag = e >> MMI_TAG_SHIFT;
		idx = e & MMI_INDEX_MASK;
		if (tag == MMI_TAG_TAIL) {
			pr->kind = PROBE_TAIL;
			pr->p = &s->tail[idx];
			return;
		}
		if (tag == MMI_TAG_LEAF) {
			*ans = no_match;
			pr->kind = idx ? PROBE_LEAF : PROBE_DONE;
			pr->p = &s->leaf[idx - (idx != 0)];
			return;
		}
	}
	pr->kind = PROBE_WALK;
	pr->e = e;
}

/* The second read, of the line the probe found (PROBE_LEAF, _GROUP or _TAIL). */
static inline struct mmi_leaf probe_finish(const struct mm_intel_snap *s, const struct mm_addr *a,
					   const struct probe *pr)
{
	const struct mmi_tail *t = pr->p;
	uint32_t idx;

	switch (pr->kind) {
	case PROBE_GROUP: return group_find(pr->p, v4_low16(a));
	case PROBE_LEAF: return *(const struct mmi_leaf *)pr->p;
	default: /* PROBE_TAIL; its miss entry is a leaf entry (validated) */
		if (tail_covers(t, a))
			return t->leaf;
		idx = t->miss & MMI_INDEX_MASK;
		return idx ? s->leaf[idx - 1] : no_match;
	}
}

/* The leaf record answering a (n_len 0: no match), the reads one after another. */
static struct mmi_leaf lookup(const struct mm_intel_snap *s, const struct mm_addr *a)
{
	struct mmi_leaf ans;
	struct probe pr;
	struct lane l;

	probe_start(s, a, &pr);
	probe_top(s, a, &pr, &ans);
	if (pr.kind == PROBE_DONE)
		return ans;
	if (pr.kind != PROBE_WALK)
		return probe_finish(s, a, &pr);
	lane_start(s, &l, a, pr.e);
	while (l.st < LANE_LEAF)
		lane_step(s, &l);
	return lane_answer(&l);
}

/*
 * Fills hit from leaf record l, its prefix rebuilt from the address (so
 * the prefix table stays cold); 1 if a match. v4: a is IPv4, its prefix
 * the first len bits of the last 32.
 */
static inline int put_hit(const struct mm_addr *a, bool v4, struct mmi_leaf l, struct mm_intel_hit *hit)
{
	unsigned len = l.n_len & 0xff;

	if (!l.n_len) {
		hit->n = 0;
		return 0;
	}
	if (v4) {
		/* len 0..32: the 64-bit shift never reaches its width. */
		mm_addr_set_v4_u32(&hit->prefix.addr, mm_addr_v4_u32(a) & (uint32_t)(~0ull << (32 - len)));
	} else {
		uint64_t hi = mm_addr_be64_(a->b), lo = mm_addr_be64_(a->b + 8);

		hi &= len >= 64 ? ~0ull : (len ? ~0ull << (64 - len) : 0);
		lo &= len <= 64 ? 0 : (len >= 128 ? ~0ull : ~0ull << (128 - len));
		wr_be64(hit->prefix.addr.b, hi);
		wr_be64(hit->prefix.addr.b + 8, lo);
	}
	hit->prefix.len = (uint8_t)len;
	hit->first = l.first;
	hit->n = l.n_len >> 8;
	return 1;
}

/* From prefix index + 1 (0: none), the first prefix up the chain with an unexpired indicator. */
static int resolve_expiring(const struct mm_intel_snap *s, uint32_t node, uint64_t now_ns, struct mm_intel_hit *hit)
{
	while (node) {
		const struct mmi_pfx *p = &s->pfx[node - 1];

		if (!now_ns || p->expires_max > now_ns) {
			memcpy(hit->prefix.addr.b, p->addr, 16);
			hit->prefix.len = p->len;
			hit->first = p->first;
			hit->n = p->n;
			return 1;
		}
		node = p->parent;
	}
	hit->n = 0;
	return 0;
}

int mm_intel_match_addr(const struct mm_intel_snap *snap, const struct mm_addr *a, uint64_t now_ns,
			struct mm_intel_hit *hit)
{
	struct mmi_leaf l = lookup(snap, a);

	/*
	 * Until the earliest expiry in the set, expiry needs no per-prefix
	 * check; after it, the chain from the answer's prefix (validation made
	 * every record's first indicator a prefix's) is checked.
	 */
	if (now_ns >= snap->next_expiry_ns)
		return resolve_expiring(snap, l.n_len ? snap->ind[l.first].pfx + 1 : 0, now_ns, hit);
	return put_hit(a, mm_addr_is_v4(a), l, hit);
}

int mm_intel_match_next(const struct mm_intel_snap *snap, uint64_t now_ns, struct mm_intel_hit *hit)
{
	const struct mmi_ind *d;

	if (!hit->n || hit->first >= snap->n_ind)
		return 0;
	d = &snap->ind[hit->first];
	if (d->kind != MM_INTEL_PREFIX) /* an ASN or port hit has no covering prefix */
		return 0;
	return resolve_expiring(snap, snap->pfx[d->pfx].parent, now_ns, hit);
}

/*
 * The batch is a software pipeline: in one pass over the addresses, the
 * top-level entry of address i is prefetched, address i - TOP_DIST probed
 * (its entry read, the line it points to prefetched) and address
 * i - TOP_DIST - LINE_DIST finished (that line read). Every read was so
 * prefetched a few dozen lookups earlier, and the misses in flight are
 * spread evenly (distances chosen by measurement: 24/24 did better than
 * 16/16, 32/16 and 48/16 on the benchmark). The few lookups
 * that need deeper reads (run lists, nodes) are set aside and walked
 * WALK_MAX at a time as lanes (asynchronous memory access chaining): each
 * pass advances every lane by one dependent read, whose line it prefetched
 * on the pass before.
 */
#define TOP_DIST 24
#define LINE_DIST 24
#define RING 64 /* probes kept: more than TOP_DIST + LINE_DIST, a power of two */
#define WALK_MAX 32

/*
 * always_inline: GCC finds a function whose only effect is a prefetch
 * "const" and drops the calls, prefetches and all.
 */
static inline __attribute__((always_inline)) void lane_prefetch(const struct lane *l)
{
	const char *p = l->p;

	if (!p)
		return;
	__builtin_prefetch(p);
	if (l->st == LANE_LIST)
		for (uint32_t k = 1; k <= (l->e & 3); k++)
			__builtin_prefetch(p + 64 * k);
}

/* A lookup set aside for the walk: its address and its top-level entry. */
struct walk {
	const struct mm_addr *a;
	uint32_t e;
};

/* Walks w[0..n) as lanes; hits are indexed like a. */
static size_t walk_lanes(const struct mm_intel_snap *s, const struct mm_addr *a, const struct walk *w, unsigned n,
			 struct mm_intel_hit *hits)
{
	struct lane lane[WALK_MAX];
	unsigned active = n;
	size_t matched = 0;

	for (unsigned k = 0; k < n; k++) {
		lane_start(s, &lane[k], w[k].a, w[k].e);
		lane_prefetch(&lane[k]);
	}
	while (active) {
		for (unsigned k = 0; k < n; k++) {
			struct lane *l = &lane[k];

			if (l->st == LANE_IDLE)
				continue;
			if (l->st < LANE_LEAF) {
				lane_step(s, l);
				/* An answer already in cache needs no other pass. */
				if (l->st != LANE_DONE) {
					lane_prefetch(l);
					continue;
				}
			}
			matched += (size_t)put_hit(l->a, mm_addr_is_v4(l->a), lane_answer(l), &hits[l->a - a]);
			l->st = LANE_IDLE;
			active--;
		}
	}
	return matched;
}

size_t mm_intel_match_addrs(const struct mm_intel_snap *snap, const struct mm_addr *a, size_t n,
			    uint64_t now_ns, struct mm_intel_hit *hits)
{
	struct probe pr[RING];
	struct walk w[WALK_MAX];
	unsigned n_walk = 0;
	size_t matched = 0;

	if (now_ns >= snap->next_expiry_ns) {
		/* Some prefix has expired: the slow path checks each hit's chain. */
		for (size_t i = 0; i < n; i++)
			matched += (size_t)mm_intel_match_addr(snap, &a[i], now_ns, &hits[i]);
		return matched;
	}
	for (size_t i = 0; i < n + TOP_DIST + LINE_DIST; i++) {
		if (i < n) {
			probe_start(snap, &a[i], &pr[i % RING]);
			__builtin_prefetch(pr[i % RING].p);
		}
		if (i >= TOP_DIST && i - TOP_DIST < n) {
			size_t j = i - TOP_DIST;
			struct probe *p = &pr[j % RING];
			struct mmi_leaf ans;

			probe_top(snap, &a[j], p, &ans);
			if (p->kind == PROBE_DONE) {
				matched += (size_t)put_hit(&a[j], p->v4, ans, &hits[j]);
			} else if (p->kind != PROBE_WALK) {
				__builtin_prefetch(p->p);
			} else {
				w[n_walk].a = &a[j];
				w[n_walk++].e = p->e;
				if (n_walk == WALK_MAX) {
					matched += walk_lanes(snap, a, w, n_walk, hits);
					n_walk = 0;
				}
			}
		}
		if (i >= TOP_DIST + LINE_DIST && i - TOP_DIST - LINE_DIST < n) {
			size_t j = i - TOP_DIST - LINE_DIST;
			const struct probe *p = &pr[j % RING];

			if (p->kind != PROBE_DONE && p->kind != PROBE_WALK)
				matched += (size_t)put_hit(&a[j], p->v4, probe_finish(snap, &a[j], p), &hits[j]);
		}
	}
	if (n_walk)
		matched += walk_lanes(snap, a, w, n_walk, hits);
	return matched;
}

size_t mm_intel_match_flows(const struct mm_intel_snap *snap, const struct mm_flow *flows, size_t n,
			    uint64_t now_ns, struct mm_intel_hit *src_hits, struct mm_intel_hit *dst_hits)
{
	struct mm_addr addrs[2 * BATCH];
	struct mm_intel_hit hits[2 * BATCH];
	size_t matched = 0;

	for (size_t base = 0; base < n; base += BATCH) {
		size_t m = n - base < BATCH ? n - base : BATCH;

		for (size_t j = 0; j < m; j++) {
			addrs[2 * j] = flows[base + j].src;
			addrs[2 * j + 1] = flows[base + j].dst;
		}
		mm_intel_match_addrs(snap, addrs, 2 * m, now_ns, hits);
		for (size_t j = 0; j < m; j++) {
			src_hits[base + j] = hits[2 * j];
			dst_hits[base + j] = hits[2 * j + 1];
			matched += (hits[2 * j].n | hits[2 * j + 1].n) != 0;
		}
	}
	return matched;
}

/* Binary search of a sorted key table. */
static int match_key(const struct mmi_key *keys, size_t n, uint32_t key, uint64_t now_ns, struct mm_intel_hit *hit)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (keys[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	memset(hit, 0, sizeof(*hit));
	if (lo == n || keys[lo].key != key || (now_ns && keys[lo].expires_max <= now_ns))
		return 0;
	hit->first = keys[lo].first;
	hit->n = keys[lo].n;
	return 1;
}

int mm_intel_match_asn(const struct mm_intel_snap *snap, uint32_t asn, uint64_t now_ns, struct mm_intel_hit *hit)
{
	return match_key(snap->asn, snap->n_asn, asn, now_ns, hit);
}

int mm_intel_match_port(const struct mm_intel_snap *snap, uint8_t proto, uint16_t port, uint64_t now_ns,
			struct mm_intel_hit *hit)
{
	if (proto && match_key(snap->port, snap->n_port, (uint32_t)proto << 16 | port, now_ns, hit))
		return 1;
	return match_key(snap->port, snap->n_port, port, now_ns, hit);
}

void mm_intel_indicator(const struct mm_intel_snap *snap, uint32_t i, struct mm_intel_indicator *out)
{
	const struct mmi_ind *d = &snap->ind[i];

	memset(out, 0, sizeof(*out));
	out->kind = (enum mm_intel_kind)d->kind;
	if (d->kind == MM_INTEL_PREFIX) {
		memcpy(out->prefix.addr.b, snap->pfx[d->pfx].addr, 16);
		out->prefix.len = snap->pfx[d->pfx].len;
	}
	out->asn = d->asn;
	out->port = d->port;
	out->proto = d->proto;
	out->confidence = d->confidence;
	out->tlp = (enum mm_tlp)d->tlp;
	out->source = snap->str + d->source;
	out->id = snap->str + d->id;
	out->tags = snap->str + d->tags;
	out->first_seen_ns = d->first_seen_ns;
	out->last_seen_ns = d->last_seen_ns;
	out->expires_ns = d->expires_ns;
}

size_t mm_intel_snap_sources(const struct mm_intel_snap *snap)
{
	return snap->n_src;
}

void mm_intel_snap_source(const struct mm_intel_snap *snap, size_t i, struct mm_intel_source_info *out)
{
	const struct mmi_src *s = &snap->src[i];

	out->name = snap->str + s->name;
	out->n_indicators = s->n;
	out->first_seen_ns = s->first_seen_ns;
	out->last_seen_ns = s->last_seen_ns;
	out->tlp = (enum mm_tlp)s->tlp;
}
