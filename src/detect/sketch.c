/*
 * The sketches that keep detector state bounded where cardinalities are
 * not: HyperLogLog for distinct hosts and ports, count-min for counts per
 * key over an unbounded key space, and the covering prefix of a set of
 * addresses. Inputs are already keyed hashes (det_hash), so an attacker
 * cannot aim at registers or cells.
 */
#include "detect/detect_int.h"

#include "mamori/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool det_hll_add_new(struct det_hll *h, uint64_t hash)
{
	unsigned idx = (unsigned)(hash >> (64 - DET_HLL_P));
	/* A sentinel bit caps rho at 64 - P + 1 for an all-zero remainder. */
	uint64_t w = (hash << DET_HLL_P) | ((uint64_t)1 << (DET_HLL_P - 1));
	uint8_t rho = (uint8_t)(__builtin_clzll(w) + 1);

	if (rho <= h->reg[idx])
		return false;
	h->reg[idx] = rho;
	return true;
}

void det_hll_add(struct det_hll *h, uint64_t hash)
{
	(void)det_hll_add_new(h, hash);
}

/* 2^-r exactly, built from its exponent bits (r ≤ 64 - P + 1): ldexp's
 * general path was most of a scanner's per-flow cost in the profile. */
static inline double pow2_neg(unsigned r)
{
	uint64_t bits = (uint64_t)(1023 - r) << 52;
	double v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

double det_hll_estimate(const struct det_hll *h)
{
	const double m = DET_HLL_M;
	double sum = 0, est;
	unsigned zeros = 0;

	for (unsigned i = 0; i < DET_HLL_M; i++) {
		sum += pow2_neg(h->reg[i]);
		zeros += h->reg[i] == 0;
	}
	est = (0.7213 / (1.0 + 1.079 / m)) * m * m / sum;
	/* Linear counting is the better estimator while registers are still empty. */
	if (est <= 2.5 * m && zeros > 0)
		est = m * log(m / zeros);
	return est;
}

int det_cms_init(struct det_cms *c, size_t mem_bytes, unsigned depth)
{
	size_t width = 256;

	while (width * 2 * depth * sizeof(uint32_t) <= mem_bytes && width < ((size_t)1 << 32))
		width *= 2;
	c->cell = mm_bigmem_alloc(width * depth * sizeof(uint32_t));
	if (!c->cell)
		return mm_fail(MM_ENOMEM, "detect: count-min sketch of %u x %zu", depth, width);
	c->width_mask = width - 1;
	c->depth = depth;
	return 0;
}

void det_cms_release(struct det_cms *c)
{
	if (c->cell)
		mm_bigmem_free(c->cell, (c->width_mask + 1) * c->depth * sizeof(uint32_t));
	memset(c, 0, sizeof(*c));
}

void det_cms_clear(struct det_cms *c)
{
	memset(c->cell, 0, (c->width_mask + 1) * c->depth * sizeof(uint32_t));
}

/* Row r's cell by double hashing (Kirsch & Mitzenmacher): two halves of one keyed hash. */
static inline size_t cms_index(const struct det_cms *c, uint64_t hash, unsigned r)
{
	uint32_t h1 = (uint32_t)hash, h2 = (uint32_t)(hash >> 32) | 1u;

	return r * (c->width_mask + 1) + ((h1 + (uint64_t)r * h2) & c->width_mask);
}

uint32_t det_cms_get(const struct det_cms *c, uint64_t hash)
{
	uint32_t best = UINT32_MAX;

	for (unsigned r = 0; r < c->depth; r++) {
		uint32_t v = c->cell[cms_index(c, hash, r)];

		if (v < best)
			best = v;
	}
	return best;
}

void det_cms_prefetch(const struct det_cms *c, uint64_t hash)
{
	for (unsigned r = 0; r < c->depth; r++)
		__builtin_prefetch(&c->cell[cms_index(c, hash, r)], 1);
}

uint32_t det_cms_add(struct det_cms *c, uint64_t hash, uint32_t v)
{
	uint32_t cur = det_cms_get(c, hash);
	uint32_t want = cur > UINT32_MAX - v ? UINT32_MAX : cur + v;

	/* Conservative update: raise only the cells below the new estimate. */
	for (unsigned r = 0; r < c->depth; r++) {
		uint32_t *cell = &c->cell[cms_index(c, hash, r)];

		if (*cell < want)
			*cell = want;
	}
	return want;
}

/* Eight bytes of an address as a big-endian number: its first byte the most significant. */
static inline uint64_t load_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

void det_cover_add(struct det_cover *c, const struct mm_addr *a)
{
	unsigned bits = 0;

	if (!c->set) {
		c->a = *a;
		c->bits = 128;
		c->set = true;
		return;
	}
	/* The common prefix, eight bytes at a time (every flow of a scan or a flood comes here). */
	for (unsigned half = 0; half < 2 && bits < c->bits; half++) {
		uint64_t diff = load_be64(c->a.b + 8 * half) ^ load_be64(a->b + 8 * half);

		if (diff) {
			bits += (unsigned)__builtin_clzll(diff);
			break;
		}
		bits += 64;
	}
	if (bits < c->bits)
		c->bits = bits;
}

void det_cover_prefix(const struct det_cover *c, struct mm_prefix *out)
{
	memset(out, 0, sizeof(*out));
	if (!c->set)
		return;
	if (mm_addr_is_v4(&c->a) && c->bits >= 96) {
		(void)mm_prefix_from_addr(out, &c->a, c->bits - 96);
		return;
	}
	/* IPv6, or IPv4 mixed with IPv6: a prefix of the 128-bit form. */
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = c->bits > i * 8 ? c->bits - i * 8 : 0;

		out->addr.b[i] = keep >= 8 ? c->a.b[i] : (uint8_t)(c->a.b[i] & (0xff00u >> keep));
	}
	out->len = (uint8_t)c->bits;
}
