/*
 * The compiler: turns a set into the file readers map. Indicators are
 * sorted (prefixes by address then length), grouped into distinct
 * prefixes chained to their covering prefix, and the prefixes are
 * leaf-pushed into multibit tables: IPv4 a direct 2^16 table whose /16
 * blocks are run groups (at most 56 runs, 8 to a line), run lists (at most
 * 129 runs) or, when crowded, 8-bit nodes per byte; IPv6 a 2^24 table then 8-bit nodes per byte. A node with at most 11
 * runs of equal entries is stored compact (one cache line), else dense (256
 * entries); a block holding one prefix is a tail.
 */
#include "intel/intel_int.h"

#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct vec {
	void *p;
	size_t n, cap, size;
};

static void *vec_push(struct vec *v)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 256;
		void *p = realloc(v->p, cap * v->size);

		if (!p)
			return NULL;
		v->p = p;
		v->cap = cap;
	}
	return (char *)v->p + v->size * v->n++;
}

struct compiler {
	const struct mm_intel_set *set;
	struct intel_rec **recs; /* kept records, sorted */
	size_t n_recs;
	struct vec pfx, asn, port, src, ind, compact, dense, tail, leaf, list, group;
	struct mmi_v4top *v4_top;
	uint32_t *v4_slot, *v6_top; /* v4_slot: the IPv4 entries as fill_level writes them */
	bool nomem;
};

/* ---- sorting ---- */

static int rec_family(const struct intel_rec *r)
{
	return mm_addr_is_v4(&r->prefix.addr) ? 0 : 1;
}

static int cmp_rec(const void *a, const void *b, void *ctx)
{
	const struct intel_rec *x = *(struct intel_rec *const *)a, *y = *(struct intel_rec *const *)b;
	const char *pool = ctx;
	int c;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	switch (x->kind) {
	case MM_INTEL_PREFIX:
		if (rec_family(x) != rec_family(y))
			return rec_family(x) - rec_family(y);
		if ((c = mm_addr_cmp(&x->prefix.addr, &y->prefix.addr)) != 0)
			return c;
		if (x->prefix.len != y->prefix.len)
			return x->prefix.len < y->prefix.len ? -1 : 1;
		break;
	case MM_INTEL_ASN:
		if (x->asn != y->asn)
			return x->asn < y->asn ? -1 : 1;
		break;
	default:
		if (x->proto != y->proto)
			return x->proto < y->proto ? -1 : 1;
		if (x->port != y->port)
			return x->port < y->port ? -1 : 1;
		break;
	}
	if ((c = strcmp(pool + x->source, pool + y->source)) != 0)
		return c;
	return strcmp(pool + x->id, pool + y->id);
}

static int cmp_source(const void *a, const void *b, void *ctx)
{
	const char *pool = ctx;

	return strcmp(pool + (*(struct intel_rec *const *)a)->source, pool + (*(struct intel_rec *const *)b)->source);
}

static bool same_key(const struct intel_rec *x, const struct intel_rec *y)
{
	if (x->kind != y->kind)
		return false;
	if (x->kind == MM_INTEL_PREFIX)
		return x->prefix.len == y->prefix.len && mm_addr_eq(&x->prefix.addr, &y->prefix.addr);
	if (x->kind == MM_INTEL_ASN)
		return x->asn == y->asn;
	return x->port == y->port && x->proto == y->proto;
}

/* ---- indicators, prefixes, keys, sources ---- */

static uint64_t expiry(uint64_t ns)
{
	return ns ? ns : UINT64_MAX;
}

static bool pfx_contains(const struct mmi_pfx *outer, const struct mmi_pfx *inner)
{
	struct mm_prefix p;
	struct mm_addr a;

	memcpy(p.addr.b, outer->addr, 16);
	p.len = outer->len;
	memcpy(a.b, inner->addr, 16);
	return outer->len < inner->len && mm_addr_is_v4(&p.addr) == mm_addr_is_v4(&a) && mm_prefix_contains(&p, &a);
}

static int build_records(struct compiler *c)
{
	uint32_t *stack = NULL;
	size_t depth = 0;

	for (size_t i = 0; i < c->n_recs;) {
		const struct intel_rec *r = c->recs[i];
		uint64_t exp_max = 0;
		size_t j;

		for (j = i; j < c->n_recs && same_key(r, c->recs[j]); j++) {
			const struct intel_rec *q = c->recs[j];
			struct mmi_ind *ind = vec_push(&c->ind);

			if (!ind)
				goto nomem;
			memset(ind, 0, sizeof(*ind));
			ind->kind = q->kind;
			ind->confidence = q->confidence;
			ind->tlp = q->tlp;
			ind->proto = q->proto;
			ind->port = q->port;
			ind->asn = q->asn;
			ind->pfx = q->kind == MM_INTEL_PREFIX ? (uint32_t)c->pfx.n : 0;
			ind->source = q->source;
			ind->id = q->id;
			ind->tags = q->tags;
			ind->first_seen_ns = q->first_seen_ns;
			ind->last_seen_ns = q->last_seen_ns;
			ind->expires_ns = q->expires_ns;
			if (expiry(q->expires_ns) > exp_max)
				exp_max = expiry(q->expires_ns);
		}
		if (r->kind == MM_INTEL_PREFIX) {
			struct mmi_pfx *p = vec_push(&c->pfx);

			if (!p)
				goto nomem;
			memset(p, 0, sizeof(*p));
			memcpy(p->addr, r->prefix.addr.b, 16);
			p->len = r->prefix.len;
			p->first = (uint32_t)i;
			p->n = (uint32_t)(j - i);
			if (p->n >= 1u << 24) { /* a leaf record holds n in 24 bits */
				free(stack);
				return mm_fail(MM_ELIMIT, "intel: %zu indicators share one prefix (at most %u)", j - i,
					       (1u << 24) - 1);
			}
			p->expires_max = exp_max;
			/* Sorted by address then length: the covering prefixes are on the stack. */
			if (!stack && !(stack = malloc(130 * sizeof(*stack))))
				goto nomem;
			while (depth && !pfx_contains((struct mmi_pfx *)c->pfx.p + stack[depth - 1], p))
				depth--;
			p->parent = depth ? stack[depth - 1] + 1 : 0;
			if (depth < 130)
				stack[depth++] = (uint32_t)(c->pfx.n - 1);
		} else {
			struct mmi_key *k = vec_push(r->kind == MM_INTEL_ASN ? &c->asn : &c->port);

			if (!k)
				goto nomem;
			memset(k, 0, sizeof(*k));
			k->key = r->kind == MM_INTEL_ASN ? r->asn : (uint32_t)r->proto << 16 | r->port;
			k->first = (uint32_t)i;
			k->n = (uint32_t)(j - i);
			k->expires_max = exp_max;
		}
		i = j;
	}
	free(stack);
	return 0;
nomem:
	free(stack);
	return mm_fail(MM_ENOMEM, "intel: compiling %zu indicators", c->n_recs);
}

static int build_sources(struct compiler *c)
{
	struct intel_rec **by_src = malloc((c->n_recs ? c->n_recs : 1) * sizeof(*by_src));

	if (!by_src)
		return mm_fail(MM_ENOMEM, "intel: source table");
	memcpy(by_src, c->recs, c->n_recs * sizeof(*by_src));
	qsort_r(by_src, c->n_recs, sizeof(*by_src), cmp_source, c->set->pool);
	for (size_t i = 0; i < c->n_recs; i++) {
		const struct intel_rec *r = by_src[i];
		struct mmi_src *s = c->src.n ? (struct mmi_src *)c->src.p + c->src.n - 1 : NULL;

		if (!s || strcmp(c->set->pool + s->name, c->set->pool + r->source) != 0) {
			if (!(s = vec_push(&c->src))) {
				free(by_src);
				return mm_fail(MM_ENOMEM, "intel: source table");
			}
			memset(s, 0, sizeof(*s));
			s->name = r->source;
		}
		s->n++;
		if (r->first_seen_ns && (!s->first_seen_ns || r->first_seen_ns < s->first_seen_ns))
			s->first_seen_ns = r->first_seen_ns;
		if (r->last_seen_ns > s->last_seen_ns)
			s->last_seen_ns = r->last_seen_ns;
		if (r->tlp > s->tlp)
			s->tlp = r->tlp;
	}
	free(by_src);
	return 0;
}

/* ---- the multibit tables ---- */

/* Bits d .. d+stride-1 of the address (d a multiple of 8, stride 8, 16 or 24). */
static uint32_t slot_of(const uint8_t *addr, unsigned d, unsigned stride)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < stride / 8; i++)
		v = v << 8 | addr[d / 8 + i];
	return v;
}

static unsigned pfx_bits128(const struct mmi_pfx *p)
{
	struct mm_prefix q;

	memcpy(q.addr.b, p->addr, 16);
	q.len = p->len;
	return mm_prefix_bits128(&q);
}

static uint32_t build_node(struct compiler *c, const struct mmi_pfx *pfx, size_t lo, size_t hi, unsigned d,
			   uint32_t def);
static uint32_t build_block16(struct compiler *c, const struct mmi_pfx *pfx, size_t lo, size_t hi, uint32_t def,
			      uint32_t slot);

/* The leaf record of a leaf entry (prefix index + 1; 0: no match, all zero). */
static struct mmi_leaf leaf_of(const struct mmi_pfx *pfx, uint32_t e)
{
	struct mmi_leaf l = { 0, 0 };
	uint32_t i = e & MMI_INDEX_MASK;

	if (i) {
		l.first = pfx[i - 1].first;
		l.n_len = pfx[i - 1].n << 8 | pfx[i - 1].len;
	}
	return l;
}

/* A block below a slot holding one prefix: a tail, whatever its length. */
static uint32_t build_tail(struct compiler *c, const struct mmi_pfx *pfx, size_t i, uint32_t def)
{
	struct mmi_tail *t = vec_push(&c->tail);

	if (!t) {
		c->nomem = true;
		return 0;
	}
	memset(t, 0, sizeof(*t));
	t->hi = mm_addr_be64_(pfx[i].addr);
	t->lo = mm_addr_be64_(pfx[i].addr + 8);
	t->leaf = leaf_of(pfx, (uint32_t)i + 1);
	t->miss = def;
	t->bits = (uint8_t)pfx_bits128(&pfx[i]);
	return MMI_TAG_TAIL << MMI_TAG_SHIFT | (uint32_t)(c->tail.n - 1);
}

/*
 * Leaf-pushes prefixes lo..hi (all inside the block at depth d) into the
 * 2^stride slots. Sorted order writes a covering prefix before the ones it
 * covers, so the last write to a slot is its longest match. With lists set
 * (the IPv4 /16 table) a slot holding longer prefixes becomes a run group
 * or a run list where they fit one.
 */
static void fill_level(struct compiler *c, uint32_t *slots, unsigned stride, const struct mmi_pfx *pfx, size_t lo,
		       size_t hi, unsigned d, bool lists)
{
	size_t i = lo;

	while (i < hi) {
		unsigned bits = pfx_bits128(&pfx[i]);
		uint32_t slot = slot_of(pfx[i].addr, d, stride);

		if (bits <= d + stride) {
			uint32_t n = 1u << (d + stride - bits);

			for (uint32_t k = 0; k < n; k++)
				slots[slot + k] = MMI_TAG_LEAF << MMI_TAG_SHIFT | (uint32_t)(i + 1);
			i++;
		} else {
			size_t j = i + 1;

			while (j < hi && slot_of(pfx[j].addr, d, stride) == slot)
				j++;
			slots[slot] = lists	 ? build_block16(c, pfx, i, j, slots[slot], slot)
				      : j - i == 1 ? build_tail(c, pfx, i, slots[slot])
						 : build_node(c, pfx, i, j, d + stride, slots[slot]);
			i = j;
		}
	}
}

static uint32_t build_node(struct compiler *c, const struct mmi_pfx *pfx, size_t lo, size_t hi, unsigned d,
			   uint32_t def)
{
	uint32_t slots[256];
	unsigned runs = 1;

	for (unsigned k = 0; k < 256; k++)
		slots[k] = def;
	fill_level(c, slots, 8, pfx, lo, hi, d, false);
	for (unsigned k = 1; k < 256; k++)
		runs += slots[k] != slots[k - 1];
	if (runs <= MMI_COMPACT_MAX) {
		struct mmi_compact *n = vec_push(&c->compact);
		unsigned r = 0;

		if (!n) {
			c->nomem = true;
			return 0;
		}
		memset(n, 0, sizeof(*n));
		n->ent[0] = slots[0];
		for (unsigned k = 1; k < 256; k++) {
			if (slots[k] != slots[k - 1]) {
				n->start[r++] = (uint8_t)k;
				n->ent[r] = slots[k];
			}
		}
		n->bias = (uint8_t)(sizeof(n->start) - r);
		return MMI_TAG_COMPACT << MMI_TAG_SHIFT | (uint32_t)(c->compact.n - 1);
	}
	struct mmi_dense *n = vec_push(&c->dense);

	if (!n) {
		c->nomem = true;
		return 0;
	}
	memcpy(n->ent, slots, sizeof(slots));
	return MMI_TAG_DENSE << MMI_TAG_SHIFT | (uint32_t)(c->dense.n - 1);
}

struct runs {
	uint32_t start[MMI_LIST_MAX_LINES * MMI_LIST_KEYS + 1], val[MMI_LIST_MAX_LINES * MMI_LIST_KEYS + 1];
	unsigned n;
	bool over; /* more runs than a list holds */
};

/* Appends a run from `from` answered by v, merged into the previous one if equal. */
static void run_add(struct runs *r, uint32_t from, uint32_t v)
{
	if (r->n && r->val[r->n - 1] == v)
		return;
	if (r->n == sizeof(r->val) / sizeof(r->val[0])) {
		r->over = true;
		return;
	}
	r->start[r->n] = from;
	r->val[r->n++] = v;
}

/*
 * The runs of equal answers over the 65,536 addresses of an IPv4 /16
 * holding prefixes lo..hi (all longer than /16), def answering where none
 * does: a sweep with a stack of the open prefixes (sorted order opens a
 * covering prefix before those it covers).
 */
static void block16_runs(const struct mmi_pfx *pfx, size_t lo, size_t hi, uint32_t def, struct runs *r)
{
	struct {
		uint32_t end, val;
	} open[18]; /* def and at most one prefix per length /17../32 */
	unsigned sp = 0;
	uint32_t cur = 0;

	r->n = 0;
	r->over = false;
	open[sp].end = 0xffff;
	open[sp++].val = def;
	for (size_t i = lo; i <= hi; i++) {
		/* Past the last prefix, everything still open closes (end 0x10000 > any). */
		uint32_t s = i < hi ? (uint32_t)pfx[i].addr[14] << 8 | pfx[i].addr[15] : 0x10000;

		while (sp && open[sp - 1].end < s) {
			sp--;
			if (cur <= open[sp].end) {
				run_add(r, cur, open[sp].val);
				cur = open[sp].end + 1;
			}
		}
		if (i == hi)
			break;
		if (cur < s) {
			run_add(r, cur, open[sp - 1].val);
			cur = s;
		}
		open[sp].end = s + (1u << (32 - pfx[i].len)) - 1;
		open[sp++].val = MMI_TAG_LEAF << MMI_TAG_SHIFT | (uint32_t)(i + 1);
	}
}

/*
 * A run group: runs packed 8 to a line with their answers, the lines'
 * splits (the start - 1 of each line's first run) kept in the IPv4 table
 * entry. False when some answer does not pack.
 */
static bool build_group(struct compiler *c, const struct mmi_pfx *pfx, const struct runs *r, uint32_t slot,
			uint32_t *entry)
{
	unsigned lines = (r->n + MMI_GROUP_RUNS - 1) / MMI_GROUP_RUNS;
	uint32_t first_len[MMI_GROUP_RUNS * MMI_GROUP_MAX_LINES];
	uint16_t count[MMI_GROUP_RUNS * MMI_GROUP_MAX_LINES];
	struct mmi_v4top *top = &c->v4_top[slot];
	size_t first = c->group.n;

	for (unsigned k = 0; k < r->n; k++)
		if (!mmi_leaf_pack(leaf_of(pfx, r->val[k]), &first_len[k], &count[k]))
			return false;
	for (unsigned i = 0; i < lines; i++) {
		struct mmi_gline *l = vec_push(&c->group);

		if (!l) {
			c->nomem = true;
			*entry = 0;
			return true;
		}
		memset(l, 0, sizeof(*l));
		memset(l->key, 0xff, sizeof(l->key));
	}
	struct mmi_gline *l = (struct mmi_gline *)c->group.p + first;
	memset(top->u.split, 0xff, sizeof(top->u.split));
	for (unsigned k = 0; k < r->n; k++) {
		unsigned line = k / MMI_GROUP_RUNS, run = k % MMI_GROUP_RUNS;

		if (run)
			l[line].key[run - 1] = (uint16_t)(r->start[k] - 1);
		else if (line)
			top->u.split[line - 1] = (uint16_t)(r->start[k] - 1);
		l[line].first_len[run] = first_len[k];
		l[line].n[run] = count[k];
	}
	*entry = MMI_TAG_GROUP << MMI_TAG_SHIFT | (uint32_t)first;
	return true;
}

/*
 * An IPv4 /16 holding longer prefixes: a run group, a run list when it has
 * too many runs for a group, or 8-bit nodes when it is crowded.
 */
static uint32_t build_block16(struct compiler *c, const struct mmi_pfx *pfx, size_t lo, size_t hi, uint32_t def,
			      uint32_t slot)
{
	struct runs r;
	unsigned n, key_lines, val_lines;
	uint32_t entry;
	size_t first;

	block16_runs(pfx, lo, hi, def, &r);
	if (r.over)
		return build_node(c, pfx, lo, hi, 112, def);
	if (r.n <= MMI_GROUP_RUNS * MMI_GROUP_MAX_LINES && build_group(c, pfx, &r, slot, &entry))
		return entry;
	n = r.n;
	key_lines = n > 1 ? (n - 1 + MMI_LIST_KEYS - 1) / MMI_LIST_KEYS : 1;
	val_lines = (n + 7) / 8;
	first = c->list.n;
	for (unsigned k = 0; k < key_lines + val_lines; k++) {
		union mmi_line *l = vec_push(&c->list);

		if (!l) {
			c->nomem = true;
			return 0;
		}
		memset(l, k < key_lines ? 0xff : 0, sizeof(*l));
	}
	union mmi_line *l = (union mmi_line *)c->list.p + first;
	for (unsigned k = 1; k < n; k++)
		l[(k - 1) / MMI_LIST_KEYS].key[(k - 1) % MMI_LIST_KEYS] = (uint16_t)(r.start[k] - 1);
	for (unsigned k = 0; k < n; k++)
		l[key_lines + k / 8].val[k % 8] = leaf_of(pfx, r.val[k]);
	return MMI_TAG_LIST << MMI_TAG_SHIFT | (uint32_t)first << 2 | (key_lines - 1);
}

static int build_tables(struct compiler *c)
{
	const struct mmi_pfx *pfx = c->pfx.p;
	size_t n_v4 = 0;

	c->v4_top = calloc((size_t)1 << MMI_V4_TOP_BITS, sizeof(*c->v4_top));
	c->v4_slot = calloc((size_t)1 << MMI_V4_TOP_BITS, sizeof(uint32_t));
	c->v6_top = calloc((size_t)1 << MMI_V6_TOP_BITS, sizeof(uint32_t));
	if (!c->v4_top || !c->v4_slot || !c->v6_top)
		return mm_fail(MM_ENOMEM, "intel: lookup tables");
	/* IPv4 prefixes sort first (cmp_rec). */
	for (; n_v4 < c->pfx.n; n_v4++) {
		struct mm_addr a;

		memcpy(a.b, pfx[n_v4].addr, 16);
		if (!mm_addr_is_v4(&a))
			break;
	}
	fill_level(c, c->v4_slot, MMI_V4_TOP_BITS, pfx, 0, n_v4, 96, true);
	fill_level(c, c->v6_top, MMI_V6_TOP_BITS, pfx, n_v4, c->pfx.n, 0, false);
	if (c->nomem || c->compact.n > MMI_INDEX_MASK || c->dense.n > MMI_INDEX_MASK || c->tail.n > MMI_INDEX_MASK ||
	    c->list.n > MMI_INDEX_MASK >> 2 || c->group.n > MMI_INDEX_MASK)
		return mm_fail(MM_ENOMEM, "intel: lookup nodes");
	/* A leaf entry carries its record packed where it fits (build_group filled the groups' splits). */
	for (size_t i = 0; i < (size_t)1 << MMI_V4_TOP_BITS; i++) {
		uint32_t e = c->v4_slot[i];

		c->v4_top[i].e = e;
		if (e >> MMI_TAG_SHIFT == MMI_TAG_LEAF &&
		    !mmi_leaf_pack(leaf_of(pfx, e), &c->v4_top[i].u.leaf.first_len, &c->v4_top[i].u.leaf.n))
			memset(&c->v4_top[i].u, 0, sizeof(c->v4_top[i].u));
	}
	for (size_t i = 0; i < c->pfx.n; i++) {
		struct mmi_leaf *l = vec_push(&c->leaf);

		if (!l)
			return mm_fail(MM_ENOMEM, "intel: leaf table");
		*l = leaf_of(pfx, (uint32_t)i + 1);
	}
	return 0;
}

/* ---- the file ---- */

static int write_all(int fd, const void *p, size_t len, uint64_t off, const char *name)
{
	const char *b = p;

	while (len) {
		ssize_t n = pwrite(fd, b, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return mm_fail(MM_EIO, "intel: writing %s: %s", name, n ? strerror(errno) : "short write");
		b += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Writes a table leaving all-zero pages as holes: most of the direct tables is empty. */
static int write_sparse(int fd, const void *p, size_t len, uint64_t off, const char *name)
{
	static const uint8_t zero[4096];
	const uint8_t *b = p;
	int rc;

	for (size_t at = 0; at < len; at += sizeof(zero)) {
		size_t n = len - at < sizeof(zero) ? len - at : sizeof(zero);

		if (memcmp(b + at, zero, n) != 0 && (rc = write_all(fd, b + at, n, off + at, name)))
			return rc;
	}
	return 0;
}

int intel_write_image(int fd, const struct mm_intel_set *set, uint64_t now_ns, const char *name)
{
	struct compiler c;
	struct mmi_header h;
	uint64_t off;
	int rc;

	memset(&c, 0, sizeof(c));
	c.set = set;
	c.pfx.size = sizeof(struct mmi_pfx);
	c.asn.size = c.port.size = sizeof(struct mmi_key);
	c.src.size = sizeof(struct mmi_src);
	c.ind.size = sizeof(struct mmi_ind);
	c.compact.size = sizeof(struct mmi_compact);
	c.dense.size = sizeof(struct mmi_dense);
	c.tail.size = sizeof(struct mmi_tail);
	c.leaf.size = sizeof(struct mmi_leaf);
	c.list.size = sizeof(union mmi_line);
	c.group.size = sizeof(struct mmi_gline);
	c.recs = malloc((set->n_recs ? set->n_recs : 1) * sizeof(*c.recs));
	if (!c.recs) {
		rc = mm_fail(MM_ENOMEM, "intel: compiling %zu indicators", set->n_recs);
		goto out;
	}
	for (size_t i = 0; i < set->n_recs; i++)
		if (!set->recs[i].expires_ns || !now_ns || set->recs[i].expires_ns > now_ns)
			c.recs[c.n_recs++] = &set->recs[i];
	qsort_r(c.recs, c.n_recs, sizeof(*c.recs), cmp_rec, set->pool);
	if ((rc = build_records(&c)) || (rc = build_sources(&c)) || (rc = build_tables(&c)))
		goto out;

	const struct {
		const void *p;
		size_t count, size;
	} secs[MMI_N_SECTIONS] = {
		[MMI_SEC_IND] = { c.ind.p, c.ind.n, sizeof(struct mmi_ind) },
		[MMI_SEC_PFX] = { c.pfx.p, c.pfx.n, sizeof(struct mmi_pfx) },
		[MMI_SEC_ASN] = { c.asn.p, c.asn.n, sizeof(struct mmi_key) },
		[MMI_SEC_PORT] = { c.port.p, c.port.n, sizeof(struct mmi_key) },
		[MMI_SEC_SRC] = { c.src.p, c.src.n, sizeof(struct mmi_src) },
		[MMI_SEC_STR] = { set->pool, set->pool_len, 1 },
		[MMI_SEC_V4_TOP] = { c.v4_top, (size_t)1 << MMI_V4_TOP_BITS, sizeof(struct mmi_v4top) },
		[MMI_SEC_V6_TOP] = { c.v6_top, (size_t)1 << MMI_V6_TOP_BITS, sizeof(uint32_t) },
		[MMI_SEC_COMPACT] = { c.compact.p, c.compact.n, sizeof(struct mmi_compact) },
		[MMI_SEC_DENSE] = { c.dense.p, c.dense.n, sizeof(struct mmi_dense) },
		[MMI_SEC_TAIL] = { c.tail.p, c.tail.n, sizeof(struct mmi_tail) },
		[MMI_SEC_LEAF] = { c.leaf.p, c.leaf.n, sizeof(struct mmi_leaf) },
		[MMI_SEC_LIST] = { c.list.p, c.list.n, sizeof(union mmi_line) },
		[MMI_SEC_GROUP] = { c.group.p, c.group.n, sizeof(struct mmi_gline) },
	};
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, MMI_MAGIC, 8);
	h.version = MMI_VERSION;
	h.endian = 0x01020304;
	h.compiled_ns = now_ns;
	h.next_expiry_ns = UINT64_MAX;
	for (size_t i = 0; i < c.pfx.n; i++)
		if (((struct mmi_pfx *)c.pfx.p)[i].expires_max < h.next_expiry_ns)
			h.next_expiry_ns = ((struct mmi_pfx *)c.pfx.p)[i].expires_max;
	off = (sizeof(h) + 4095) & ~(uint64_t)4095;
	const void *data[MMI_N_SECTIONS];
	for (int s = 0; s < MMI_N_SECTIONS; s++) {
		data[s] = secs[s].p;
		size_t len = secs[s].count * secs[s].size;

		h.sec[s].off = off;
		h.sec[s].count = secs[s].count;
		rc = s == MMI_SEC_V4_TOP || s == MMI_SEC_V6_TOP ? write_sparse(fd, secs[s].p, len, off, name)
					 : write_all(fd, secs[s].p, len, off, name);
		if (rc)
			goto out;
		off = (off + len + 4095) & ~(uint64_t)4095;
	}
	h.file_size = off;
	h.checksum = intel_checksum(&h, data);
	if ((rc = write_all(fd, &h, sizeof(h), 0, name)))
		goto out;
	if (ftruncate(fd, (off_t)off) != 0)
		rc = mm_fail(MM_EIO, "intel: sizing %s: %s", name, strerror(errno));
out:
	free(c.recs);
	free(c.pfx.p);
	free(c.asn.p);
	free(c.port.p);
	free(c.src.p);
	free(c.ind.p);
	free(c.compact.p);
	free(c.dense.p);
	free(c.tail.p);
	free(c.leaf.p);
	free(c.list.p);
	free(c.group.p);
	free(c.v4_top);
	free(c.v4_slot);
	free(c.v6_top);
	return rc;
}

int mm_intel_compile(const struct mm_intel_set *set, uint64_t now_ns, const char *path)
{
	size_t len = strlen(path) + 32;
	char *tmp = malloc(len);
	int fd, rc;

	if (!tmp)
		return mm_fail(MM_ENOMEM, "intel: path");
	snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = mm_fail(MM_EIO, "intel: %s: %s", tmp, strerror(errno));
		free(tmp);
		return rc;
	}
	rc = intel_write_image(fd, set, now_ns, path);
	if (!rc && fsync(fd) != 0)
		rc = mm_fail(MM_EIO, "intel: fsync %s: %s", tmp, strerror(errno));
	if (close(fd) != 0 && !rc)
		rc = mm_fail(MM_EIO, "intel: close %s: %s", tmp, strerror(errno));
	if (!rc && rename(tmp, path) != 0)
		rc = mm_fail(MM_EIO, "intel: rename %s: %s", path, strerror(errno));
	if (rc)
		unlink(tmp);
	free(tmp);
	return rc;
}
