/*
 * Readers of a compiled set: mapping and validating the file, and the
 * lookups. An IPv4 lookup reads the 2^16 table (it stays in the L2 cache),
 * then usually a run list (a key line and a value line); crowded /16s
 * walk 8-bit nodes instead. IPv6 reads the 2^24 table, then one node per
 * byte, most often a single tail. The batch call keeps many lookups in
 * flight at once, each a small state machine advanced one dependent read
 * at a time, so the cache misses of different addresses overlap.
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

#define BATCH 64 /* flows per batch call: 128 addresses keep the lanes full */

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
		if (!entry_ok(s, s->v4_top[i], true))
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
	[MMI_SEC_V4_TOP] = sizeof(uint32_t),	    [MMI_SEC_V6_TOP] = sizeof(uint32_t),
	[MMI_SEC_COMPACT] = sizeof(struct mmi_compact), [MMI_SEC_DENSE] = sizeof(struct mmi_dense),
	[MMI_SEC_TAIL] = sizeof(struct mmi_tail),   [MMI_SEC_LEAF] = sizeof(struct mmi_leaf),
	[MMI_SEC_LIST] = sizeof(union mmi_line),
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
 * The lookup tables (from the IPv4 table to the leaf records, the end of
 * the file) are read at random: with 4 KiB pages nearly every lookup also
 * misses the TLB, which costs more than the cache miss itself. They are
 * copied once per snapshot onto transparent huge pages; where the kernel
 * offers none, the mapping is used as it is.
 */
static void copy_hot(struct mm_intel_snap *s, const void *sec[MMI_N_SECTIONS])
{
	const size_t huge = 2u << 20;
	size_t from = s->hdr->sec[MMI_SEC_V4_TOP].off, len = s->map_len - from;
	size_t span = (len + huge - 1) & ~(huge - 1);
	uint8_t *p, *base;

	p = mmap(NULL, span + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	base = (uint8_t *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
	if (madvise(base, span, MADV_HUGEPAGE) != 0) {
		munmap(p, span + huge);
		return;
	}
	memcpy(base, (const uint8_t *)s->map + from, len);
	mprotect(base, span, PROT_READ);
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

/*
 * One lookup in progress: what its next step reads (p, prefetched by the
 * batch before the step) and how far down it is. Steps: the top-level
 * entry, then a node per address byte (IPv6, crowded IPv4 /16s), a tail
 * or a run list, then the answer's leaf record unless it is already in
 * cache (LANE_DONE: none, or the record inside the tail just read).
 */
enum { LANE_TOP, LANE_NODE, LANE_LIST, LANE_LEAF, LANE_DONE, LANE_IDLE };

struct lane {
	const struct mm_addr *a;
	const void *p;  /* LANE_LEAF, LANE_DONE: the leaf record, NULL for no match */
	uint32_t e;     /* LANE_NODE, LANE_LIST: the entry being followed */
	uint8_t i;      /* LANE_NODE: the address byte it consumes */
	uint8_t st;
};

static inline void lane_enter(const struct mm_intel_snap *s, struct lane *l, uint32_t e);

/* The top-level entry of a: IPv4 by its first 16 bits, IPv6 by its first 24. */
static inline const uint32_t *top_slot(const struct mm_intel_snap *s, const struct mm_addr *a)
{
	const uint8_t *b = a->b;

	if (mm_addr_is_v4(a))
		return &s->v4_top[(uint32_t)b[12] << 8 | b[13]];
	return &s->v6_top[(uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2]];
}

/*
 * The IPv4 table (256 KiB) is mostly in the L2 cache: it is read at once,
 * saving a pass. The IPv6 one is read at random over megabytes: its entry
 * is the lane's first step.
 */
static inline void lane_start(const struct mm_intel_snap *s, struct lane *l, const struct mm_addr *a)
{
	l->a = a;
	l->p = top_slot(s, a);
	if (mm_addr_is_v4(a)) {
		l->i = 14;
		lane_enter(s, l, *(const uint32_t *)l->p);
	} else {
		l->st = LANE_TOP;
		l->i = 3;
	}
}

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

/* One dependent read: the line p points at, which the batch prefetched. */
static inline void lane_step(const struct mm_intel_snap *s, struct lane *l)
{
	const struct mmi_tail *t;

	switch (l->st) {
	case LANE_TOP:
		lane_enter(s, l, *(const uint32_t *)l->p);
		break;
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

/* The answer of a finished lane: its leaf record, NULL for no match (a run list's empty record too). */
static inline const struct mmi_leaf *lane_answer(const struct lane *l)
{
	const struct mmi_leaf *r = l->p;

	return r && r->n_len ? r : NULL;
}

/* The leaf record answering a (NULL: no match), the reads one after another. */
static const struct mmi_leaf *lookup(const struct mm_intel_snap *s, const struct mm_addr *a)
{
	struct lane l;

	lane_start(s, &l, a);
	while (l.st < LANE_LEAF)
		lane_step(s, &l);
	return lane_answer(&l);
}

/* The hit for leaf record l, its prefix rebuilt from the address (so the prefix table stays cold). */
static inline void leaf_hit(const struct mm_addr *a, const struct mmi_leaf *l, struct mm_intel_hit *hit)
{
	unsigned len = l->n_len & 0xff, bits = mm_addr_is_v4(a) ? 96 + len : len;
	uint64_t hi = mm_addr_be64_(a->b), lo = mm_addr_be64_(a->b + 8);

	hi &= bits >= 64 ? ~0ull : (bits ? ~0ull << (64 - bits) : 0);
	lo &= bits <= 64 ? 0 : (bits >= 128 ? ~0ull : ~0ull << (128 - bits));
	wr_be64(hit->prefix.addr.b, hi);
	wr_be64(hit->prefix.addr.b + 8, lo);
	hit->prefix.len = (uint8_t)len;
	hit->first = l->first;
	hit->n = l->n_len >> 8;
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

/* Prefix index + 1 of a leaf record (validation made every record's first indicator a prefix's). */
static inline uint32_t leaf_node(const struct mm_intel_snap *s, const struct mmi_leaf *l)
{
	return l ? s->ind[l->first].pfx + 1 : 0;
}

int mm_intel_match_addr(const struct mm_intel_snap *snap, const struct mm_addr *a, uint64_t now_ns,
			struct mm_intel_hit *hit)
{
	const struct mmi_leaf *l = lookup(snap, a);

	/* Until the earliest expiry in the set, expiry needs no per-prefix check. */
	if (now_ns >= snap->next_expiry_ns)
		return resolve_expiring(snap, leaf_node(snap, l), now_ns, hit);
	if (!l) {
		hit->n = 0;
		return 0;
	}
	leaf_hit(a, l, hit);
	return 1;
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
 * The batch keeps LANES lookups in flight (asynchronous memory access
 * chaining): each pass advances every lane by one dependent read, whose
 * line it prefetched on the pass before, and a lane that finishes takes
 * the next address at once. Lookups of different depths (a run list, a
 * chain of IPv6 nodes) so overlap their misses, up to LANES at a time.
 */
#define LANES 32

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

size_t mm_intel_match_addrs(const struct mm_intel_snap *snap, const struct mm_addr *a, size_t n,
			    uint64_t now_ns, struct mm_intel_hit *hits)
{
	struct lane lane[LANES];
	size_t next = 0, active = 0, matched = 0;

	if (now_ns >= snap->next_expiry_ns) {
		/* Some prefix has expired: the slow path checks each hit's chain. */
		for (size_t i = 0; i < n; i++)
			matched += (size_t)mm_intel_match_addr(snap, &a[i], now_ns, &hits[i]);
		return matched;
	}
	for (unsigned j = 0; j < LANES; j++) {
		lane[j].st = LANE_IDLE;
		if (next < n) {
			lane_start(snap, &lane[j], &a[next++]);
			lane_prefetch(&lane[j]);
			active++;
		}
	}
	while (active) {
		for (unsigned j = 0; j < LANES; j++) {
			struct lane *l = &lane[j];

			if (l->st == LANE_IDLE)
				continue;
			if (l->st < LANE_LEAF) {
				lane_step(snap, l);
				/* An answer already in cache needs no other pass. */
				if (l->st != LANE_DONE) {
					lane_prefetch(l);
					continue;
				}
			}
			struct mm_intel_hit *hit = &hits[l->a - a];
			const struct mmi_leaf *r = lane_answer(l);

			if (r) {
				leaf_hit(l->a, r, hit);
				matched++;
			} else {
				hit->n = 0;
			}
			if (next < n) {
				lane_start(snap, l, &a[next++]);
				lane_prefetch(l);
			} else {
				l->st = LANE_IDLE;
				active--;
			}
		}
	}
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
