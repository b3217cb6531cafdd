/*
 * The compiled country/ASN table at run time: mapped read-only, checked
 * once in full when opened, then read by lookups with no further checks,
 * no allocation and no locks. Layout: geo_int.h.
 */
#include "enrich/geo_int.h"

#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct mm_geo {
	const uint8_t *map;
	size_t map_len;
	struct geo_header h;
	const char *names;
	const struct geo_leaf *leaves;
	const uint32_t *l1, *l2, *l3;
	const uint32_t *v6_index, *v6_sub, *v6_l2, *v6_leaf;
	const struct geo_u128 *v6_start;
};

void geo_checksum(const uint8_t *image, uint64_t len, uint8_t out[32])
{
	static const uint8_t zero[32];
	const size_t at = offsetof(struct geo_header, checksum);
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, image, at);
	crypto_generichash_update(&st, zero, sizeof(zero));
	crypto_generichash_update(&st, image + at + 32, len - at - 32);
	crypto_generichash_final(&st, out, 32);
}

/* Every entry of a trie level names a leaf, or a block of the next level where one exists. */
static int check_entries(const char *path, const char *what, const uint32_t *v, uint64_t n, uint32_t n_leaves,
			 uint32_t n_next)
{
	for (uint64_t i = 0; i < n; i++) {
		uint32_t e = v[i];

		if (e & GEO_CHUNK ? (e & ~GEO_CHUNK) >= n_next : e >= n_leaves)
			return mm_fail(MM_EFORMAT, "geo: %s: %s entry %llu (0x%08x) points outside the table", path,
				       what, (unsigned long long)i, e);
	}
	return 0;
}

static bool cc_valid(const char cc[2])
{
	if (cc[0] == 0 && cc[1] == 0)
		return true;
	return cc[0] >= 'A' && cc[0] <= 'Z' && cc[1] >= 'A' && cc[1] <= 'Z';
}

static int check_leaves(const char *path, const struct geo_header *h, const struct geo_leaf *leaves)
{
	for (uint32_t i = 0; i < h->n_leaves; i++) {
		const struct geo_leaf *f = &leaves[i];
		bool cc_known = f->cc[0] != 0;

		if (!cc_valid(f->cc) || cc_known != (f->cc_src != GEO_NO_SOURCE) ||
		    (cc_known && f->cc_src >= h->n_sources) || (f->asn != 0) != (f->asn_src != GEO_NO_SOURCE) ||
		    (f->asn != 0 && f->asn_src >= h->n_sources) || f->pad != 0 || (i == 0 && (cc_known || f->asn)))
			return mm_fail(MM_EFORMAT, "geo: %s: answer %u is malformed", path, i);
	}
	return 0;
}

static bool u128_le(const struct geo_u128 *a, uint64_t hi, uint64_t lo)
{
	return a->hi < hi || (a->hi == hi && a->lo <= lo);
}

static int check_v6(const char *path, const struct mm_geo *g)
{
	uint64_t n = g->h.n_v6;

	if (n == 0 || g->v6_start[0].hi != 0 || g->v6_start[0].lo != 0)
		return mm_fail(MM_EFORMAT, "geo: %s: IPv6 ranges do not start at ::", path);
	for (uint64_t i = 1; i < n; i++)
		if (u128_le(&g->v6_start[i], g->v6_start[i - 1].hi, g->v6_start[i - 1].lo))
			return mm_fail(MM_EFORMAT, "geo: %s: IPv6 range %llu out of order", path,
				       (unsigned long long)i);
	for (uint64_t i = 0; i < n; i++)
		if (g->v6_leaf[i] >= g->h.n_leaves)
			return mm_fail(MM_EFORMAT, "geo: %s: IPv6 range %llu names answer %u of %u", path,
				       (unsigned long long)i, g->v6_leaf[i], g->h.n_leaves);
	for (uint32_t t = 0; t < GEO_V6_INDEX; t++) {
		uint32_t k = g->v6_index[t];

		if (k >= n || (t > 0 && k < g->v6_index[t - 1]) ||
		    (t < GEO_V6_INDEX - 1 && !u128_le(&g->v6_start[k], (uint64_t)t << 48, 0)))
			return mm_fail(MM_EFORMAT, "geo: %s: IPv6 index entry %u is wrong", path, t);
	}
	if (g->v6_index[GEO_V6_INDEX - 1] != n - 1)
		return mm_fail(MM_EFORMAT, "geo: %s: IPv6 index does not end at the last range", path);
	/* Search bounds must not decrease, or a search span would wrap. */
	for (uint32_t t = 0; t < GEO_V6_INDEX - 1; t++)
		if (g->v6_sub[t] > g->h.n_v6_l2)
			return mm_fail(MM_EFORMAT, "geo: %s: IPv6 bucket %u names block %u of %u", path, t,
				       g->v6_sub[t], g->h.n_v6_l2);
	for (uint64_t i = 0; i < (uint64_t)g->h.n_v6_l2 * GEO_V6_L2; i++)
		if (g->v6_l2[i] >= n || (i % GEO_V6_L2 != 0 && g->v6_l2[i] < g->v6_l2[i - 1]))
			return mm_fail(MM_EFORMAT, "geo: %s: IPv6 block entry %llu is wrong", path,
				       (unsigned long long)i);
	return 0;
}

static int check_sections(const char *path, const struct geo_header *h)
{
	const uint64_t want[GEO_N_SECTIONS] = {
		[GEO_SEC_NAMES] = (uint64_t)h->n_sources * GEO_NAME_LEN,
		[GEO_SEC_LEAVES] = (uint64_t)h->n_leaves * sizeof(struct geo_leaf),
		[GEO_SEC_V4_L1] = GEO_V4_L1 * 4ull,
		[GEO_SEC_V4_L2] = (uint64_t)h->n_v4_l2 * 1024,
		[GEO_SEC_V4_L3] = (uint64_t)h->n_v4_l3 * 1024,
		[GEO_SEC_V6_INDEX] = GEO_V6_INDEX * 4ull,
		[GEO_SEC_V6_SUB] = (GEO_V6_INDEX - 1) * 4ull,
		[GEO_SEC_V6_L2] = (uint64_t)h->n_v6_l2 * GEO_V6_L2 * 4,
		[GEO_SEC_V6_START] = h->n_v6 * sizeof(struct geo_u128),
		[GEO_SEC_V6_LEAF] = h->n_v6 * 4,
	};

	if (h->n_sources > GEO_MAX_SOURCES || h->n_leaves == 0 || h->n_leaves > GEO_CHUNK ||
	    h->n_v4_l2 > GEO_V4_L1 || h->n_v4_l3 > (1u << 24) || h->n_v6 > UINT32_MAX ||
	    h->n_v6_l2 > GEO_V6_INDEX - 1 || h->pad != 0)
		return mm_fail(MM_EFORMAT, "geo: %s: header counts out of range", path);
	for (unsigned s = 0; s < GEO_N_SECTIONS; s++) {
		const struct geo_section_ref *r = &h->sec[s];

		if (r->len != want[s] || r->off % GEO_ALIGN != 0 || r->off < sizeof(*h) || r->off > h->file_len ||
		    r->len > h->file_len - r->off)
			return mm_fail(MM_EFORMAT, "geo: %s: section %u lies outside the file or has the wrong size",
				       path, s);
	}
	return 0;
}

static int check_table(const char *path, struct mm_geo *g)
{
	const struct geo_header *h = &g->h;
	uint8_t sum[32];
	int rc;

	if (g->map_len < sizeof(*h))
		return mm_fail(MM_ETRUNC, "geo: %s: %zu bytes, shorter than a table header", path, g->map_len);
	memcpy(&g->h, g->map, sizeof(*h));
	if (memcmp(h->magic, GEO_MAGIC, sizeof(h->magic)) != 0)
		return mm_fail(MM_EFORMAT, "geo: %s: not a mamori geo table (bad magic)", path);
	if (h->version != GEO_VERSION || h->header_len != sizeof(*h))
		return mm_fail(MM_EUNSUP, "geo: %s: table version %u (header %u bytes); this mamori reads version %u",
			       path, h->version, h->header_len, GEO_VERSION);
	if (h->file_len > g->map_len)
		return mm_fail(MM_ETRUNC, "geo: %s: truncated: header says %llu bytes, file has %zu", path,
			       (unsigned long long)h->file_len, g->map_len);
	if (h->file_len != g->map_len)
		return mm_fail(MM_EFORMAT, "geo: %s: %zu bytes, header says %llu", path, g->map_len,
			       (unsigned long long)h->file_len);
	geo_checksum(g->map, g->map_len, sum);
	if (sodium_memcmp(sum, h->checksum, sizeof(sum)) != 0)
		return mm_fail(MM_EFORMAT, "geo: %s: checksum mismatch: the table is corrupt", path);
	if ((rc = check_sections(path, h)) < 0)
		return rc;
	g->names = (const char *)(g->map + h->sec[GEO_SEC_NAMES].off);
	g->leaves = (const struct geo_leaf *)(g->map + h->sec[GEO_SEC_LEAVES].off);
	g->l1 = (const uint32_t *)(g->map + h->sec[GEO_SEC_V4_L1].off);
	g->l2 = (const uint32_t *)(g->map + h->sec[GEO_SEC_V4_L2].off);
	g->l3 = (const uint32_t *)(g->map + h->sec[GEO_SEC_V4_L3].off);
	g->v6_index = (const uint32_t *)(g->map + h->sec[GEO_SEC_V6_INDEX].off);
	g->v6_sub = (const uint32_t *)(g->map + h->sec[GEO_SEC_V6_SUB].off);
	g->v6_l2 = (const uint32_t *)(g->map + h->sec[GEO_SEC_V6_L2].off);
	g->v6_start = (const struct geo_u128 *)(g->map + h->sec[GEO_SEC_V6_START].off);
	g->v6_leaf = (const uint32_t *)(g->map + h->sec[GEO_SEC_V6_LEAF].off);
	for (uint32_t i = 0; i < h->n_sources; i++)
		if (!memchr(g->names + (size_t)i * GEO_NAME_LEN, '\0', GEO_NAME_LEN))
			return mm_fail(MM_EFORMAT, "geo: %s: source name %u is not terminated", path, i);
	if ((rc = check_leaves(path, h, g->leaves)) < 0 ||
	    (rc = check_entries(path, "IPv4 /16", g->l1, GEO_V4_L1, h->n_leaves, h->n_v4_l2)) < 0 ||
	    (rc = check_entries(path, "IPv4 /24", g->l2, (uint64_t)h->n_v4_l2 * 256, h->n_leaves, h->n_v4_l3)) < 0 ||
	    (rc = check_entries(path, "IPv4 address", g->l3, (uint64_t)h->n_v4_l3 * 256, h->n_leaves, 0)) < 0)
		return rc;
	return check_v6(path, g);
}

int mm_geo_open(const char *path, struct mm_geo **out)
{
	struct mm_geo *g = NULL;
	struct stat st;
	void *map;
	int fd, rc;

	if (sodium_init() < 0)
		return mm_fail(MM_EINTERNAL, "geo: libsodium failed to initialise");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "geo: %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = mm_fail(MM_EIO, "geo: %s: not a regular file", path);
		goto fail;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		rc = mm_fail(MM_ENOMEM, "geo: no memory to open %s", path);
		goto fail;
	}
	if (st.st_size < (off_t)sizeof(struct geo_header)) {
		rc = mm_fail(MM_ETRUNC, "geo: %s: %lld bytes, shorter than a table header", path, (long long)st.st_size);
		goto fail;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = mm_fail(MM_EIO, "geo: %s: mmap: %s", path, strerror(errno));
		goto fail;
	}
	g->map = map;
	g->map_len = (size_t)st.st_size;
	if ((rc = check_table(path, g)) < 0)
		goto fail;
	close(fd);
	*out = g;
	return 0;
fail:
	close(fd);
	mm_geo_close(g);
	return rc;
}

void mm_geo_close(struct mm_geo *g)
{
	if (!g)
		return;
	if (g->map)
		munmap((void *)g->map, g->map_len);
	free(g);
}

static const char *source_of(const struct mm_geo *g, uint16_t src)
{
	return src == GEO_NO_SOURCE ? NULL : g->names + (size_t)src * GEO_NAME_LEN;
}

const char *mm_geo_source_name(const struct mm_geo *g, unsigned i)
{
	return i < g->h.n_sources ? g->names + (size_t)i * GEO_NAME_LEN : NULL;
}

void mm_geo_info(const struct mm_geo *g, struct mm_geo_info *out)
{
	*out = (struct mm_geo_info){
		.n_sources = g->h.n_sources,
		.n_leaves = g->h.n_leaves,
		.n_v4_chunks = (uint64_t)g->h.n_v4_l2 + g->h.n_v4_l3,
		.n_v6_ranges = g->h.n_v6,
		.file_len = g->h.file_len,
		.built_unix = g->h.built_unix,
	};
}

/* The 16-8-8 walk: every entry was checked at open, so no bound is tested here. */
static inline uint32_t leaf_v4(const struct mm_geo *g, uint32_t x)
{
	uint32_t e = g->l1[x >> 16];

	if (e & GEO_CHUNK) {
		e = g->l2[(size_t)(e & ~GEO_CHUNK) << 8 | (x >> 8 & 0xff)];
		if (e & GEO_CHUNK)
			e = g->l3[(size_t)(e & ~GEO_CHUNK) << 8 | (x & 0xff)];
	}
	return e;
}

/* Last range starting at or below the address, between the bounds the indexes give. */
static inline uint32_t leaf_v6(const struct mm_geo *g, const struct mm_addr *a)
{
	uint64_t hi = mm_addr_be64_(a->b), lo = mm_addr_be64_(a->b + 8);
	uint32_t t = (uint32_t)(hi >> 48), sub = g->v6_sub[t], base, n;
	const uint32_t *bound = g->v6_index + t;

	if (sub)
		bound = g->v6_l2 + (size_t)(sub - 1) * GEO_V6_L2 + (hi >> (48 - GEO_V6_SUB_BITS) & (GEO_V6_L2 - 2));
	base = bound[0];
	n = bound[1] - base + 1;

	/* Branch-free halving: in dense regions a mispredicted branch per step costs more than the loads. */
	while (n > 1) {
		uint32_t half = n / 2;
		const struct geo_u128 *p = &g->v6_start[base + half];
		uint32_t le = (uint32_t)(p->hi < hi) | ((uint32_t)(p->hi == hi) & (uint32_t)(p->lo <= lo));

		base += half & (0u - le);
		n -= half;
	}
	return g->v6_leaf[base];
}

static inline const struct geo_leaf *leaf_for(const struct mm_geo *g, const struct mm_addr *a)
{
	return &g->leaves[mm_addr_is_v4(a) ? leaf_v4(g, mm_addr_v4_u32(a)) : leaf_v6(g, a)];
}

void mm_geo_lookup(const struct mm_geo *g, const struct mm_addr *a, struct mm_geo_answer *out)
{
	const struct geo_leaf *f = leaf_for(g, a);

	memcpy(out->country, f->cc, 2);
	out->asn = f->asn;
	out->country_source = source_of(g, f->cc_src);
	out->asn_source = source_of(g, f->asn_src);
}

static size_t fill_side(const struct mm_geo *g, const struct mm_addr *a, char cc[2], uint32_t *asn)
{
	const struct geo_leaf *f;
	size_t n = 0;

	if (cc[0] != 0 && *asn != 0)
		return 0;
	f = leaf_for(g, a);
	if (cc[0] == 0 && f->cc[0] != 0) {
		memcpy(cc, f->cc, 2);
		n++;
	}
	if (*asn == 0 && f->asn != 0) {
		*asn = f->asn;
		n++;
	}
	return n;
}

size_t mm_geo_lookup_flows(const struct mm_geo *g, struct mm_flow *flows, size_t n)
{
	size_t filled = 0;

	for (size_t i = 0; i < n; i++) {
		filled += fill_side(g, &flows[i].src, flows[i].src_country, &flows[i].src_as);
		filled += fill_side(g, &flows[i].dst, flows[i].dst_country, &flows[i].dst_as);
	}
	return filled;
}
