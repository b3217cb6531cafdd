/*
 * Readers of a compiled set: mapping and validating the file, and the
 * lookups. An IPv4 lookup is one read of the 2^24 table and, for blocks
 * holding prefixes longer than /24, one read of an 8-bit node; IPv6 walks
 * one node per byte after the first two. The batch call overlaps the reads
 * of neighbouring addresses with prefetches, since each read is a likely
 * cache miss on a table of tens of megabytes.
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

#define BATCH 16

/* ---- mapping and validation ---- */

static int bad(const char *name, const char *what)
{
	return mm_fail(MM_EFORMAT, "intel: %s: damaged compiled file (%s); recompile it", name, what);
}

static bool entry_ok(const struct mm_intel_snap *s, uint32_t e)
{
	uint32_t idx = e & MMI_INDEX_MASK;

	switch (e >> MMI_TAG_SHIFT) {
	case MMI_TAG_LEAF: return idx <= s->n_pfx;
	case MMI_TAG_COMPACT: return idx < s->n_compact;
	case MMI_TAG_DENSE: return idx < s->n_dense;
	default: return idx < s->n_tail;
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
		if (!entry_ok(s, s->v4_top[i]))
			return bad(name, "IPv4 table");
	for (size_t i = 0; i < (size_t)1 << MMI_V6_TOP_BITS; i++)
		if (!entry_ok(s, s->v6_top[i]))
			return bad(name, "IPv6 table");
	for (size_t i = 0; i < s->n_compact; i++) {
		if (!compact_ok(&s->compact[i]))
			return bad(name, "node");
		for (unsigned k = 0; k < MMI_COMPACT_MAX; k++)
			if (!entry_ok(s, s->compact[i].ent[k]))
				return bad(name, "node");
	}
	for (size_t i = 0; i < s->n_dense; i++)
		for (unsigned k = 0; k < 256; k++)
			if (!entry_ok(s, s->dense[i].ent[k]))
				return bad(name, "node");
	for (size_t i = 0; i < s->n_pfx; i++)
		if (s->leaf[i].first != s->pfx[i].first || s->leaf[i].n_len != (s->pfx[i].n << 8 | s->pfx[i].len) ||
		    s->pfx[i].len > 128)
			return bad(name, "leaf table");
	for (size_t i = 0; i < s->n_tail; i++) {
		const struct mmi_tail *t = &s->tail[i];

		if (t->hit >> MMI_TAG_SHIFT || t->miss >> MMI_TAG_SHIFT || t->hit == 0 || !entry_ok(s, t->hit) ||
		    !entry_ok(s, t->miss) || memcmp(&t->leaf, &s->leaf[t->hit - 1], sizeof(t->leaf)) != 0)
			return bad(name, "tail");
	}
	return 0;
}

static const size_t sec_size[MMI_N_SECTIONS] = {
	[MMI_SEC_IND] = sizeof(struct mmi_ind),	    [MMI_SEC_PFX] = sizeof(struct mmi_pfx),
	[MMI_SEC_ASN] = sizeof(struct mmi_key),	    [MMI_SEC_PORT] = sizeof(struct mmi_key),
	[MMI_SEC_SRC] = sizeof(struct mmi_src),	    [MMI_SEC_STR] = 1,
	[MMI_SEC_V4_TOP] = sizeof(uint32_t),	    [MMI_SEC_V6_TOP] = sizeof(uint32_t),
	[MMI_SEC_COMPACT] = sizeof(struct mmi_compact), [MMI_SEC_DENSE] = sizeof(struct mmi_dense),
	[MMI_SEC_TAIL] = sizeof(struct mmi_tail),   [MMI_SEC_LEAF] = sizeof(struct mmi_leaf),
};

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
	if (memcmp(h->magic, MMI_MAGIC, 8) != 0 || h->version != MMI_VERSION || h->endian != 0x01020304)
		rc = mm_fail(MM_EFORMAT, "intel: %s: not a compiled indicator set of this version", name);
	else if (h->file_size != s->map_len)
		rc = bad(name, "size differs from its header");
	for (int i = 0; !rc && i < MMI_N_SECTIONS; i++) {
		uint64_t off = h->sec[i].off, cnt = h->sec[i].count;

		if (off % 64 || off > s->map_len || cnt > (s->map_len - off) / sec_size[i])
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

/* One step down from node entry e with address byte b (tails compare the whole address). */
static inline uint32_t node_step(const struct mm_intel_snap *s, uint32_t e, const struct mm_addr *a, uint8_t b)
{
	uint32_t idx = e & MMI_INDEX_MASK;
	const struct mmi_compact *c;
	const struct mmi_tail *t;
	unsigned k = 0;

	switch (e >> MMI_TAG_SHIFT) {
	case MMI_TAG_DENSE:
		return s->dense[idx].ent[b];
	case MMI_TAG_COMPACT:
		c = &s->compact[idx];
		for (unsigned i = 0; i < sizeof(c->start); i++) /* vectorised by the compiler */
			k += c->start[i] <= b;
		return c->ent[k - c->bias];
	default:
		t = &s->tail[idx];
		return ((mm_addr_be64_(a->b) & t->mask_hi) == t->hi && (mm_addr_be64_(a->b + 8) & t->mask_lo) == t->lo) ? t->hit
													   : t->miss;
	}
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

/*
 * Leaf entry (prefix index + 1, 0 = none) after the top-level entry e;
 * *lp is its leaf record, inside the tail when a tail answered.
 */
static inline uint32_t descend(const struct mm_intel_snap *s, const struct mm_addr *a, uint32_t e, bool v4,
			       const struct mmi_leaf **lp)
{
	const struct mmi_tail *t = NULL;

	for (unsigned i = v4 ? 15 : 3; i < 16 && (e >> MMI_TAG_SHIFT); i++) {
		if (e >> MMI_TAG_SHIFT == MMI_TAG_TAIL)
			t = &s->tail[e & MMI_INDEX_MASK];
		e = node_step(s, e, a, a->b[i]);
	}
	if (e >> MMI_TAG_SHIFT)
		e = 0;
	*lp = !e ? NULL : (t && e == t->hit) ? &t->leaf : &s->leaf[e - 1];
	return e;
}

static inline const uint32_t *top_entry(const struct mm_intel_snap *s, const struct mm_addr *a, bool v4)
{
	if (v4)
		return &s->v4_top[(uint32_t)a->b[12] << 16 | (uint32_t)a->b[13] << 8 | a->b[14]];
	return &s->v6_top[(uint32_t)a->b[0] << 16 | (uint32_t)a->b[1] << 8 | a->b[2]];
}

/* The hit for leaf, its prefix rebuilt from the address (so the prefix table stays cold). */
static inline void leaf_hit(const struct mm_addr *a, uint32_t leaf, const struct mmi_leaf *l, struct mm_intel_hit *hit)
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
	hit->node = leaf;
}

/* From a leaf, the first prefix up the chain with an unexpired indicator. */
static int resolve_expiring(const struct mm_intel_snap *s, uint32_t leaf, uint64_t now_ns, struct mm_intel_hit *hit)
{
	while (leaf) {
		const struct mmi_pfx *p = &s->pfx[leaf - 1];

		if (!now_ns || p->expires_max > now_ns) {
			memcpy(hit->prefix.addr.b, p->addr, 16);
			hit->prefix.len = p->len;
			hit->first = p->first;
			hit->n = p->n;
			hit->node = leaf;
			return 1;
		}
		leaf = p->parent;
	}
	hit->n = 0;
	return 0;
}

int mm_intel_match_addr(const struct mm_intel_snap *snap, const struct mm_addr *a, uint64_t now_ns,
			struct mm_intel_hit *hit)
{
	bool v4 = mm_addr_is_v4(a);
	const struct mmi_leaf *l;
	uint32_t leaf = descend(snap, a, *top_entry(snap, a, v4), v4, &l);

	/* Until the earliest expiry in the set, expiry needs no per-prefix check. */
	if (now_ns >= snap->next_expiry_ns)
		return resolve_expiring(snap, leaf, now_ns, hit);
	if (!leaf) {
		hit->n = 0;
		return 0;
	}
	leaf_hit(a, leaf, l, hit);
	return 1;
}

int mm_intel_match_next(const struct mm_intel_snap *snap, uint64_t now_ns, struct mm_intel_hit *hit)
{
	if (!hit->node || hit->node > snap->n_pfx)
		return 0;
	return resolve_expiring(snap, snap->pfx[hit->node - 1].parent, now_ns, hit);
}

/*
 * The batch is a software pipeline over the addresses: address i+3D has
 * its top-level entry prefetched, i+2D reads it and prefetches the node,
 * i+D descends and prefetches the leaf record, i fills its hit. Each stage
 * finds its line in cache, so up to ~3D misses are in flight at once.
 */
#define PIPE_D 8
#define PIPE_RING 32 /* > 3 * PIPE_D, a power of two */

size_t mm_intel_match_addrs(const struct mm_intel_snap *snap, const struct mm_addr *a, size_t n,
			    uint64_t now_ns, struct mm_intel_hit *hits)
{
	const uint32_t *top[PIPE_RING];
	const struct mmi_leaf *lp[PIPE_RING];
	uint32_t e[PIPE_RING];
	bool v4[PIPE_RING];
	size_t matched = 0;

	if (now_ns >= snap->next_expiry_ns) {
		/* Some prefix has expired: the slow path checks each hit's chain. */
		for (size_t i = 0; i < n; i++)
			matched += (size_t)mm_intel_match_addr(snap, &a[i], now_ns, &hits[i]);
		return matched;
	}
	for (size_t i = 0; i < n + 3 * PIPE_D; i++) {
		if (i < n) {
			size_t r = i % PIPE_RING;

			v4[r] = mm_addr_is_v4(&a[i]);
			top[r] = top_entry(snap, &a[i], v4[r]);
			__builtin_prefetch(top[r]);
		}
		if (i >= PIPE_D && i - PIPE_D < n) {
			size_t k = i - PIPE_D, r = k % PIPE_RING;

			e[r] = *top[r];
			if (e[r] >> MMI_TAG_SHIFT)
				__builtin_prefetch(node_addr(snap, e[r], v4[r] ? a[k].b[15] : a[k].b[3]));
		}
		if (i >= 2 * PIPE_D && i - 2 * PIPE_D < n) {
			size_t k = i - 2 * PIPE_D, r = k % PIPE_RING;

			e[r] = descend(snap, &a[k], e[r], v4[r], &lp[r]);
			if (e[r])
				__builtin_prefetch(lp[r]);
		}
		if (i >= 3 * PIPE_D) {
			size_t k = i - 3 * PIPE_D;
			uint32_t leaf = e[k % PIPE_RING];

			if (leaf) {
				leaf_hit(&a[k], leaf, lp[k % PIPE_RING], &hits[k]);
				matched++;
			} else {
				hits[k].n = 0;
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
