/*
 * The table builder: keeps every prefix the loaders add, then compiles them
 * into the file geo_table.c maps. Compiling flattens overlapping prefixes
 * into disjoint ranges (longest prefix, then latest source wins), once for
 * the country and once for the ASN, merges the two range lists, and lays
 * IPv4 out as a 16-8-8 multibit trie with identical blocks shared and IPv6
 * as sorted ranges under a 16-bit index. Runs offline (`mamori geo build`):
 * work is O(n log n) in the number of prefixes.
 */
#include "enrich/geo_int.h"

#include "mamori/hash.h"
#include "mamori/status.h"
#include "mamori/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef unsigned __int128 u128;

#define GEO_MAX_PREFIXES (1u << 25)
#define GEO_WARN_LINES 20u
#define KEY_NONE UINT64_MAX

struct mm_geo_builder {
	mm_geo_warn_fn warn;
	void *warn_ctx;
	struct geo_pfx *pfx;
	size_t n_pfx, cap_pfx;
	char (*names)[GEO_NAME_LEN];
	unsigned n_sources, cap_sources;
	uint32_t seq;
};

int mm_geo_default_path(char **out)
{
	const char *dir = mm_store_default_dir();
	size_t len = strlen(dir) + sizeof("/geo/geo.table");
	char *p = malloc(len);

	if (!p)
		return mm_fail(MM_ENOMEM, "geo: no memory for the default table path");
	snprintf(p, len, "%s/geo/geo.table", dir);
	*out = p;
	return 0;
}

int mm_geo_builder_new(mm_geo_warn_fn warn, void *ctx, struct mm_geo_builder **out)
{
	struct mm_geo_builder *b = calloc(1, sizeof(*b));

	if (!b)
		return mm_fail(MM_ENOMEM, "geo: no memory for a table builder");
	b->warn = warn;
	b->warn_ctx = ctx;
	*out = b;
	return 0;
}

void mm_geo_builder_free(struct mm_geo_builder *b)
{
	if (!b)
		return;
	free(b->pfx);
	free(b->names);
	free(b);
}

/* ---- loads ---- */

int geo_load_begin(struct geo_load *l, struct mm_geo_builder *b, const char *kind, const char *path)
{
	const char *base = strrchr(path, '/');

	memset(l, 0, sizeof(*l));
	l->b = b;
	l->path = path;
	l->n_pfx_begin = b->n_pfx;
	if (b->n_sources >= GEO_MAX_SOURCES)
		return mm_fail(MM_ELIMIT, "geo: %s: more than %u sources", path, GEO_MAX_SOURCES);
	if (b->n_sources == b->cap_sources) {
		unsigned cap = b->cap_sources ? b->cap_sources * 2 : 8;
		void *p = realloc(b->names, (size_t)cap * GEO_NAME_LEN);

		if (!p)
			return mm_fail(MM_ENOMEM, "geo: no memory for source names");
		b->names = p;
		b->cap_sources = cap;
	}
	l->src = (uint16_t)b->n_sources;
	memset(b->names[l->src], 0, GEO_NAME_LEN);
	snprintf(b->names[l->src], GEO_NAME_LEN, "%s:%s", kind, base ? base + 1 : path);
	b->n_sources++;
	return 0;
}

void geo_load_bad(struct geo_load *l, uint64_t line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	l->rep.n_bad++;
	if (!l->b->warn || l->n_warned >= GEO_WARN_LINES)
		return;
	l->n_warned++;
	if (line)
		n = snprintf(msg, sizeof(msg), "%s:%llu: ", l->path, (unsigned long long)line);
	else
		n = snprintf(msg, sizeof(msg), "%s: ", l->path);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	l->b->warn(l->b->warn_ctx, msg);
}

int geo_load_end(struct geo_load *l, int status, struct mm_geo_load_report *out)
{
	struct mm_geo_builder *b = l->b;

	if (b->warn && l->rep.n_bad > l->n_warned) {
		char msg[512];

		snprintf(msg, sizeof(msg), "%s: %llu more bad lines not shown", l->path,
			 (unsigned long long)(l->rep.n_bad - l->n_warned));
		b->warn(b->warn_ctx, msg);
	}
	if (status == 0 && l->rep.n_records == 0)
		status = mm_fail(MM_EFORMAT, "geo: %s: no valid record in %llu lines (%llu bad)", l->path,
				 (unsigned long long)l->rep.n_lines, (unsigned long long)l->rep.n_bad);
	if (out)
		*out = l->rep;
	if (status < 0) {
		/* A refused file leaves the builder as it was. */
		b->n_pfx = l->n_pfx_begin;
		if (b->n_sources == (unsigned)l->src + 1)
			b->n_sources--;
	}
	return status;
}

bool geo_parse_cc(const char *text, size_t len, char cc[2])
{
	if (len != 2)
		return false;
	for (size_t i = 0; i < 2; i++) {
		char c = text[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c < 'A' || c > 'Z')
			return false;
		cc[i] = c;
	}
	return true;
}

static u128 u128_of(struct geo_u128 v)
{
	return (u128)v.hi << 64 | v.lo;
}

static struct geo_u128 geo_u128_of(u128 v)
{
	return (struct geo_u128){ .hi = (uint64_t)(v >> 64), .lo = (uint64_t)v };
}

static u128 addr_key(const struct mm_addr *a, bool v6)
{
	if (!v6)
		return mm_addr_v4_u32(a);
	return (u128)mm_addr_be64_(a->b) << 64 | mm_addr_be64_(a->b + 8);
}

static unsigned family_bits(bool v6)
{
	return v6 ? 128 : 32;
}

/* Host part of a /len in a family of w bits. */
static u128 host_mask(unsigned w, unsigned len)
{
	u128 all = w == 128 ? ~(u128)0 : ((u128)1 << w) - 1;

	return len >= w ? 0 : all >> len;
}

static int push_key(struct geo_load *l, u128 start, unsigned len, bool v6, const char cc[2], uint32_t asn)
{
	struct mm_geo_builder *b = l->b;
	struct geo_pfx *p;

	if (b->n_pfx >= GEO_MAX_PREFIXES)
		return mm_fail(MM_ELIMIT, "geo: %s: more than %u prefixes in all", l->path, GEO_MAX_PREFIXES);
	if (b->n_pfx == b->cap_pfx) {
		size_t cap = b->cap_pfx ? b->cap_pfx * 2 : 4096;
		void *n = realloc(b->pfx, cap * sizeof(*b->pfx));

		if (!n)
			return mm_fail(MM_ENOMEM, "geo: no memory for %zu prefixes", cap);
		b->pfx = n;
		b->cap_pfx = cap;
	}
	p = &b->pfx[b->n_pfx++];
	memset(p, 0, sizeof(*p));
	p->start = geo_u128_of(start);
	p->len = (uint8_t)len;
	p->v6 = v6;
	p->seq = b->seq++;
	p->src = l->src;
	p->asn = asn;
	if (cc)
		memcpy(p->cc, cc, 2);
	l->rep.n_prefixes++;
	return 0;
}

int geo_add_prefix(struct geo_load *l, const struct mm_prefix *p, const char cc[2], uint32_t asn)
{
	bool v6 = !mm_addr_is_v4(&p->addr);

	return push_key(l, addr_key(&p->addr, v6), p->len, v6, cc, asn);
}

int geo_add_range(struct geo_load *l, const struct mm_addr *first, const struct mm_addr *last,
		  const char cc[2], uint32_t asn)
{
	bool v6 = !mm_addr_is_v4(first);
	unsigned w = family_bits(v6);
	u128 lo = addr_key(first, v6), hi = addr_key(last, v6);

	MM_ASSERT(v6 == !mm_addr_is_v4(last) && lo <= hi);
	for (;;) {
		/* The largest aligned block that starts at lo and stays within hi. */
		unsigned tz = 0, len;
		int rc;

		while (tz < w && !((lo >> tz) & 1))
			tz++;
		len = w - tz;
		while (host_mask(w, len) > hi - lo)
			len++;
		rc = push_key(l, lo, len, v6, cc, asn);
		if (rc < 0)
			return rc;
		if (host_mask(w, len) == hi - lo)
			return 0;
		lo += host_mask(w, len) + 1;
	}
}

/* ---- compiling ---- */

/* Disjoint ranges: each starts where the previous ends, the first at 0. */
struct seg {
	u128 start;
	uint64_t ck, ak; /* country and ASN keys, KEY_NONE for unknown */
};

struct seg_list {
	struct seg *v;
	size_t n, cap;
};

/* Appends a range start, folding equal neighbours and repeated positions. */
static int seg_emit(struct seg_list *s, u128 pos, uint64_t ck, uint64_t ak)
{
	if (s->n && s->v[s->n - 1].start == pos) {
		s->v[s->n - 1].ck = ck;
		s->v[s->n - 1].ak = ak;
		if (s->n > 1 && s->v[s->n - 2].ck == ck && s->v[s->n - 2].ak == ak)
			s->n--;
		return 0;
	}
	if (s->n && s->v[s->n - 1].ck == ck && s->v[s->n - 1].ak == ak)
		return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		void *p = realloc(s->v, cap * sizeof(*s->v));

		if (!p)
			return mm_fail(MM_ENOMEM, "geo: no memory for %zu ranges", cap);
		s->v = p;
		s->cap = cap;
	}
	s->v[s->n++] = (struct seg){ .start = pos, .ck = ck, .ak = ak };
	return 0;
}

enum geo_dim { DIM_CC, DIM_ASN };

static uint64_t pfx_key(const struct geo_pfx *p, enum geo_dim d)
{
	if (d == DIM_CC)
		return (uint64_t)(uint8_t)p->cc[0] << 24 | (uint64_t)(uint8_t)p->cc[1] << 16 | p->src;
	return (uint64_t)p->asn << 16 | p->src;
}

/* Containers first, then the prefixes inside them; equal prefixes in add order. */
static int pfx_cmp(const void *x, const void *y)
{
	const struct geo_pfx *a = x, *b = y;
	u128 sa = u128_of(a->start), sb = u128_of(b->start);

	if (sa != sb)
		return sa < sb ? -1 : 1;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return (a->seq > b->seq) - (a->seq < b->seq);
}

static u128 pfx_end(const struct geo_pfx *p)
{
	return u128_of(p->start) + host_mask(family_bits(p->v6), p->len);
}

/*
 * One dimension of one family as disjoint ranges, each answered by the
 * longest (then latest) prefix covering it. CIDR prefixes nest or are
 * disjoint, so a stack of the prefixes open at the sweep position holds
 * the winner on top; it is at most 129 deep, as equal prefixes replace
 * each other.
 */
static int flatten(const struct mm_geo_builder *b, bool v6, enum geo_dim d, struct seg_list *out)
{
	const u128 max = host_mask(family_bits(v6), 0);
	struct geo_pfx *sel, stack[130];
	size_t n = 0, depth = 0;
	int rc;

	sel = malloc((b->n_pfx ? b->n_pfx : 1) * sizeof(*sel));
	if (!sel)
		return mm_fail(MM_ENOMEM, "geo: no memory to sort %zu prefixes", b->n_pfx);
	for (size_t i = 0; i < b->n_pfx; i++) {
		const struct geo_pfx *p = &b->pfx[i];

		if (p->v6 == v6 && (d == DIM_CC ? p->cc[0] != 0 : p->asn != 0))
			sel[n++] = *p;
	}
	qsort(sel, n, sizeof(*sel), pfx_cmp);
	rc = seg_emit(out, 0, KEY_NONE, KEY_NONE);
	for (size_t i = 0; i <= n && rc == 0; i++) {
		/* Close what ends before the next prefix (all of it after the last). */
		while (depth && rc == 0 && (i == n || pfx_end(&stack[depth - 1]) < u128_of(sel[i].start))) {
			u128 end = pfx_end(&stack[--depth]);

			if (end != max)
				rc = seg_emit(out, end + 1, depth ? pfx_key(&stack[depth - 1], d) : KEY_NONE, KEY_NONE);
		}
		if (i == n || rc < 0)
			break;
		if (depth && stack[depth - 1].start.hi == sel[i].start.hi &&
		    stack[depth - 1].start.lo == sel[i].start.lo && stack[depth - 1].len == sel[i].len)
			depth--;
		MM_BUG(depth >= sizeof(stack) / sizeof(stack[0]));
		stack[depth++] = sel[i];
		rc = seg_emit(out, u128_of(sel[i].start), pfx_key(&sel[i], d), KEY_NONE);
	}
	free(sel);
	return rc;
}

/* Country and ASN ranges of one family merged into ranges of both keys. */
static int merge_dims(const struct seg_list *c, const struct seg_list *a, struct seg_list *out)
{
	size_t i = 0, j = 0;
	uint64_t ck = KEY_NONE, ak = KEY_NONE;
	int rc = 0;

	while (rc == 0 && (i < c->n || j < a->n)) {
		u128 pos;

		if (j == a->n || (i < c->n && c->v[i].start <= a->v[j].start))
			pos = c->v[i].start;
		else
			pos = a->v[j].start;
		if (i < c->n && c->v[i].start == pos)
			ck = c->v[i++].ck;
		if (j < a->n && a->v[j].start == pos)
			ak = a->v[j++].ck; /* flatten() keeps its key in ck */
		rc = seg_emit(out, pos, ck, ak);
	}
	return rc;
}

static int family_ranges(const struct mm_geo_builder *b, bool v6, struct seg_list *out)
{
	struct seg_list c = { 0 }, a = { 0 };
	int rc = flatten(b, v6, DIM_CC, &c);

	if (rc == 0)
		rc = flatten(b, v6, DIM_ASN, &a);
	if (rc == 0)
		rc = merge_dims(&c, &a, out);
	free(c.v);
	free(a.v);
	return rc;
}

struct key_pair {
	uint64_t ck, ak;
};

static int pair_cmp(const void *x, const void *y)
{
	const struct key_pair *a = x, *b = y;

	if (a->ck != b->ck)
		return a->ck < b->ck ? -1 : 1;
	return (a->ak > b->ak) - (a->ak < b->ak);
}

/* Distinct answers, sorted; leaf i+1 is pairs[i], leaf 0 "nothing known". */
struct leaf_set {
	struct key_pair *pairs;
	size_t n;
};

static int leaf_set_build(struct leaf_set *ls, const struct seg_list *v4, const struct seg_list *v6)
{
	size_t n = 0;

	ls->pairs = malloc((v4->n + v6->n) * sizeof(*ls->pairs));
	if (!ls->pairs)
		return mm_fail(MM_ENOMEM, "geo: no memory for %zu answers", v4->n + v6->n);
	for (size_t i = 0; i < v4->n; i++)
		ls->pairs[n++] = (struct key_pair){ v4->v[i].ck, v4->v[i].ak };
	for (size_t i = 0; i < v6->n; i++)
		ls->pairs[n++] = (struct key_pair){ v6->v[i].ck, v6->v[i].ak };
	qsort(ls->pairs, n, sizeof(*ls->pairs), pair_cmp);
	ls->n = 0;
	for (size_t i = 0; i < n; i++) {
		if (ls->pairs[i].ck == KEY_NONE && ls->pairs[i].ak == KEY_NONE)
			continue;
		if (ls->n && pair_cmp(&ls->pairs[ls->n - 1], &ls->pairs[i]) == 0)
			continue;
		ls->pairs[ls->n++] = ls->pairs[i];
	}
	return 0;
}

static uint32_t leaf_of(const struct leaf_set *ls, uint64_t ck, uint64_t ak)
{
	struct key_pair k = { ck, ak };
	const struct key_pair *p;

	if (ck == KEY_NONE && ak == KEY_NONE)
		return 0;
	p = bsearch(&k, ls->pairs, ls->n, sizeof(k), pair_cmp);
	MM_BUG(!p);
	return (uint32_t)(p - ls->pairs) + 1;
}

static struct geo_leaf leaf_from_pair(const struct key_pair *k)
{
	struct geo_leaf f = { .cc_src = GEO_NO_SOURCE, .asn_src = GEO_NO_SOURCE };

	if (k->ck != KEY_NONE) {
		f.cc[0] = (char)(k->ck >> 24);
		f.cc[1] = (char)(k->ck >> 16);
		f.cc_src = (uint16_t)k->ck;
	}
	if (k->ak != KEY_NONE) {
		f.asn = (uint32_t)(k->ak >> 16);
		f.asn_src = (uint16_t)k->ak;
	}
	return f;
}

/* 256-entry blocks, each stored once however often it occurs. */
struct chunk_set {
	uint32_t *data;
	size_t n, cap;
	uint32_t *slots; /* chunk index + 1; 0 empty */
	size_t n_slots;
	struct mm_hash_key key;
};

static int chunk_slots_grow(struct chunk_set *cs)
{
	size_t n_slots = cs->n_slots ? cs->n_slots * 2 : 1024;
	uint32_t *slots = calloc(n_slots, sizeof(*slots));

	if (!slots)
		return mm_fail(MM_ENOMEM, "geo: no memory for %zu block slots", n_slots);
	for (size_t i = 0; i < cs->n; i++) {
		size_t h = mm_siphash13(&cs->key, cs->data + i * 256, 1024) & (n_slots - 1);

		while (slots[h])
			h = (h + 1) & (n_slots - 1);
		slots[h] = (uint32_t)i + 1;
	}
	free(cs->slots);
	cs->slots = slots;
	cs->n_slots = n_slots;
	return 0;
}

static int chunk_intern(struct chunk_set *cs, const uint32_t blk[256], uint32_t *idx)
{
	size_t h;
	int rc;

	if ((cs->n + 1) * 2 > cs->n_slots && (rc = chunk_slots_grow(cs)) < 0)
		return rc;
	h = mm_siphash13(&cs->key, blk, 1024) & (cs->n_slots - 1);
	for (; cs->slots[h]; h = (h + 1) & (cs->n_slots - 1)) {
		if (memcmp(cs->data + (size_t)(cs->slots[h] - 1) * 256, blk, 1024) == 0) {
			*idx = cs->slots[h] - 1;
			return 0;
		}
	}
	if (cs->n == cs->cap) {
		size_t cap = cs->cap ? cs->cap * 2 : 256;
		void *p = realloc(cs->data, cap * 1024);

		if (!p)
			return mm_fail(MM_ENOMEM, "geo: no memory for %zu blocks", cap);
		cs->data = p;
		cs->cap = cap;
	}
	memcpy(cs->data + cs->n * 256, blk, 1024);
	cs->slots[h] = (uint32_t)cs->n + 1;
	*idx = (uint32_t)cs->n++;
	return 0;
}

static void chunk_set_free(struct chunk_set *cs)
{
	free(cs->data);
	free(cs->slots);
}

/* The IPv4 trie being built: a cursor walks the ranges once, in order. */
struct v4_build {
	const struct seg_list *r;
	const struct leaf_set *ls;
	size_t k; /* range containing the current address */
	uint32_t l1[GEO_V4_L1];
	struct chunk_set l2, l3;
};

/* Leaf for a block of 2^bits addresses at base, or UINT32_MAX if it is not uniform. */
static uint32_t v4_uniform(struct v4_build *vb, uint32_t base, unsigned bits)
{
	const struct seg_list *r = vb->r;
	uint64_t last = (uint64_t)base + ((1ull << bits) - 1);

	while (vb->k + 1 < r->n && r->v[vb->k + 1].start <= base)
		vb->k++;
	if (vb->k + 1 < r->n && r->v[vb->k + 1].start <= last)
		return UINT32_MAX;
	return leaf_of(vb->ls, r->v[vb->k].ck, r->v[vb->k].ak);
}

static int v4_build_block(struct v4_build *vb, uint32_t base, unsigned bits, uint32_t *out)
{
	uint32_t blk[256], leaf = v4_uniform(vb, base, bits), idx;
	int rc;

	if (leaf != UINT32_MAX) {
		*out = leaf;
		return 0;
	}
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t sub = base + (i << (bits - 8));

		if (bits == 8)
			blk[i] = v4_uniform(vb, sub, 0);
		else if ((rc = v4_build_block(vb, sub, bits - 8, &blk[i])) < 0)
			return rc;
	}
	rc = chunk_intern(bits == 16 ? &vb->l2 : &vb->l3, blk, &idx);
	*out = GEO_CHUNK | idx;
	return rc;
}

static int v4_build(struct v4_build *vb)
{
	int rc;

	if ((rc = mm_hash_key_random(&vb->l2.key)) < 0 || (rc = mm_hash_key_random(&vb->l3.key)) < 0)
		return rc;
	for (uint32_t i = 0; i < GEO_V4_L1; i++)
		if ((rc = v4_build_block(vb, i << 16, 16, &vb->l1[i])) < 0)
			return rc;
	return 0;
}

/* The IPv6 search bounds: per top-16 bucket, and per next 12 bits in dense buckets. */
struct v6_index {
	uint32_t top[GEO_V6_INDEX];
	uint32_t sub[GEO_V6_INDEX - 1];
	uint32_t *l2;
	uint32_t n_l2;
};

/* Last range starting at or below bound, moving cursor k forward. */
static size_t last_at_or_below(const struct seg_list *r, size_t k, u128 bound)
{
	while (k + 1 < r->n && r->v[k + 1].start <= bound)
		k++;
	return k;
}

static int v6_index_build(const struct seg_list *r, struct v6_index *ix)
{
	size_t k = 0;

	for (uint32_t t = 0; t < GEO_V6_INDEX - 1; t++)
		ix->top[t] = (uint32_t)(k = last_at_or_below(r, k, (u128)t << 112));
	ix->top[GEO_V6_INDEX - 1] = (uint32_t)(r->n - 1);
	for (uint32_t t = 0; t < GEO_V6_INDEX - 1; t++) {
		uint32_t *blk;
		void *p;

		if (ix->top[t + 1] - ix->top[t] + 1 <= GEO_V6_SPLIT)
			continue;
		p = realloc(ix->l2, ((size_t)ix->n_l2 + 1) * GEO_V6_L2 * sizeof(*ix->l2));
		if (!p)
			return mm_fail(MM_ENOMEM, "geo: no memory for the IPv6 index");
		ix->l2 = p;
		blk = ix->l2 + (size_t)ix->n_l2 * GEO_V6_L2;
		k = ix->top[t];
		for (uint32_t u = 0; u < GEO_V6_L2 - 1; u++)
			blk[u] = (uint32_t)(k = last_at_or_below(r, k, (u128)t << 112 | (u128)u << (112 - GEO_V6_SUB_BITS)));
		blk[GEO_V6_L2 - 1] = ix->top[t + 1];
		ix->sub[t] = ++ix->n_l2;
	}
	return 0;
}

static uint64_t align_up(uint64_t v)
{
	return (v + GEO_ALIGN - 1) & ~(uint64_t)(GEO_ALIGN - 1);
}

/* Writes the image through a temporary name in the same directory. */
static int publish(const char *path, const uint8_t *image, uint64_t len)
{
	size_t plen = strlen(path);
	char *tmp = malloc(plen + sizeof(".tmp.XXXXXX"));
	char *dir = NULL, *slash;
	int fd = -1, dfd, rc = 0;
	uint64_t done = 0;

	if (!tmp)
		return mm_fail(MM_ENOMEM, "geo: no memory for a temporary name");
	snprintf(tmp, plen + sizeof(".tmp.XXXXXX"), "%s.tmp.XXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		rc = mm_fail(MM_EIO, "geo: %s: cannot create: %s", tmp, strerror(errno));
		goto out;
	}
	if (fchmod(fd, 0644) < 0) {
		rc = mm_fail(MM_EIO, "geo: %s: chmod: %s", tmp, strerror(errno));
		goto out;
	}
	while (done < len) {
		ssize_t n = write(fd, image + done, len - done > (1u << 30) ? (1u << 30) : (size_t)(len - done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = mm_fail(MM_EIO, "geo: %s: write: %s", tmp, n < 0 ? strerror(errno) : "short write");
			goto out;
		}
		done += (uint64_t)n;
	}
	if (fsync(fd) < 0) {
		rc = mm_fail(MM_EIO, "geo: %s: fsync: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = mm_fail(MM_EIO, "geo: %s: close: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = mm_fail(MM_EIO, "geo: %s: rename to %s: %s", tmp, path, strerror(errno));
		goto out;
	}
	/* The rename itself must survive a crash too. */
	dir = strdup(path);
	if (dir) {
		slash = strrchr(dir, '/');
		if (slash)
			*(slash == dir ? slash + 1 : slash) = '\0';
		dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(dir);
	free(tmp);
	return rc;
}

static void *section(uint8_t *image, const struct geo_header *h, enum geo_section s)
{
	return image + h->sec[s].off;
}

int mm_geo_builder_write(struct mm_geo_builder *b, const char *path, struct mm_geo_build_stats *stats)
{
	struct seg_list r4 = { 0 }, r6 = { 0 };
	struct leaf_set ls = { 0 };
	struct v4_build *vb = NULL;
	struct v6_index *ix = NULL;
	struct geo_header h;
	uint8_t *image = NULL;
	uint64_t lens[GEO_N_SECTIONS], off;
	int rc;

	if (b->n_pfx == 0)
		return mm_fail(MM_EINVAL, "geo: %s: no source gave any prefix", path);
	if ((rc = family_ranges(b, false, &r4)) < 0 || (rc = family_ranges(b, true, &r6)) < 0 ||
	    (rc = leaf_set_build(&ls, &r4, &r6)) < 0)
		goto out;
	vb = calloc(1, sizeof(*vb));
	ix = calloc(1, sizeof(*ix));
	if (!vb || !ix) {
		rc = mm_fail(MM_ENOMEM, "geo: no memory for the lookup structures");
		goto out;
	}
	vb->r = &r4;
	vb->ls = &ls;
	if ((rc = v4_build(vb)) < 0 || (rc = v6_index_build(&r6, ix)) < 0)
		goto out;

	memset(&h, 0, sizeof(h));
	memcpy(h.magic, GEO_MAGIC, sizeof(h.magic));
	h.version = GEO_VERSION;
	h.header_len = sizeof(h);
	h.built_unix = (int64_t)time(NULL);
	h.n_sources = b->n_sources;
	h.n_leaves = (uint32_t)ls.n + 1;
	h.n_v4_l2 = (uint32_t)vb->l2.n;
	h.n_v4_l3 = (uint32_t)vb->l3.n;
	h.n_v6 = r6.n;
	h.n_v6_l2 = ix->n_l2;
	lens[GEO_SEC_NAMES] = (uint64_t)b->n_sources * GEO_NAME_LEN;
	lens[GEO_SEC_LEAVES] = (uint64_t)h.n_leaves * sizeof(struct geo_leaf);
	lens[GEO_SEC_V4_L1] = GEO_V4_L1 * 4ull;
	lens[GEO_SEC_V4_L2] = (uint64_t)vb->l2.n * 1024;
	lens[GEO_SEC_V4_L3] = (uint64_t)vb->l3.n * 1024;
	lens[GEO_SEC_V6_INDEX] = sizeof(ix->top);
	lens[GEO_SEC_V6_SUB] = sizeof(ix->sub);
	lens[GEO_SEC_V6_L2] = (uint64_t)ix->n_l2 * GEO_V6_L2 * 4;
	lens[GEO_SEC_V6_START] = r6.n * sizeof(struct geo_u128);
	lens[GEO_SEC_V6_LEAF] = r6.n * 4ull;
	off = align_up(sizeof(h));
	for (unsigned s = 0; s < GEO_N_SECTIONS; s++) {
		h.sec[s].off = off;
		h.sec[s].len = lens[s];
		off = align_up(off + lens[s]);
	}
	h.file_len = off;
	image = calloc(1, (size_t)off);
	if (!image) {
		rc = mm_fail(MM_ENOMEM, "geo: no memory for a %llu-byte table", (unsigned long long)off);
		goto out;
	}

	memcpy(section(image, &h, GEO_SEC_NAMES), b->names, lens[GEO_SEC_NAMES]);
	{
		struct geo_leaf *leaves = section(image, &h, GEO_SEC_LEAVES);

		leaves[0] = leaf_from_pair(&(struct key_pair){ KEY_NONE, KEY_NONE });
		for (size_t i = 0; i < ls.n; i++)
			leaves[i + 1] = leaf_from_pair(&ls.pairs[i]);
	}
	memcpy(section(image, &h, GEO_SEC_V4_L1), vb->l1, lens[GEO_SEC_V4_L1]);
	if (vb->l2.n)
		memcpy(section(image, &h, GEO_SEC_V4_L2), vb->l2.data, lens[GEO_SEC_V4_L2]);
	if (vb->l3.n)
		memcpy(section(image, &h, GEO_SEC_V4_L3), vb->l3.data, lens[GEO_SEC_V4_L3]);
	memcpy(section(image, &h, GEO_SEC_V6_INDEX), ix->top, lens[GEO_SEC_V6_INDEX]);
	memcpy(section(image, &h, GEO_SEC_V6_SUB), ix->sub, lens[GEO_SEC_V6_SUB]);
	if (ix->n_l2)
		memcpy(section(image, &h, GEO_SEC_V6_L2), ix->l2, lens[GEO_SEC_V6_L2]);
	{
		uint32_t *leaf = section(image, &h, GEO_SEC_V6_LEAF);
		struct geo_u128 *start = section(image, &h, GEO_SEC_V6_START);

		for (size_t i = 0; i < r6.n; i++) {
			start[i] = geo_u128_of(r6.v[i].start);
			leaf[i] = leaf_of(&ls, r6.v[i].ck, r6.v[i].ak);
		}
	}
	memcpy(image, &h, sizeof(h));
	geo_checksum(image, off, h.checksum);
	memcpy(image, &h, sizeof(h));
	if ((rc = publish(path, image, off)) < 0)
		goto out;
	if (stats) {
		stats->n_prefixes = b->n_pfx;
		stats->info = (struct mm_geo_info){
			.n_sources = h.n_sources,
			.n_leaves = h.n_leaves,
			.n_v4_chunks = (uint64_t)h.n_v4_l2 + h.n_v4_l3,
			.n_v6_ranges = h.n_v6,
			.file_len = h.file_len,
			.built_unix = h.built_unix,
		};
	}
out:
	free(image);
	if (vb) {
		chunk_set_free(&vb->l2);
		chunk_set_free(&vb->l3);
	}
	free(vb);
	if (ix)
		free(ix->l2);
	free(ix);
	free(ls.pairs);
	free(r4.v);
	free(r6.v);
	return rc;
}
