/*
 * A straightforward Crypto-PAn for tests and the benchmark: the baseline
 * the library's batched, table-assisted paths are checked and timed
 * against. Header-only so both can include it.
 */
#ifndef MAMORI_TESTS_CRYPTOPAN_REF_H
#define MAMORI_TESTS_CRYPTOPAN_REF_H

#include "policy/aes128.h"

#include <stdint.h>
#include <string.h>

/*
 * The reference: Crypto-PAn as the paper states it, one bit and one
 * encryption at a time over a 128-bit integer, as the original
 * implementation does. Nothing from cryptopan.c. a and the result are the
 * family's bits, left-aligned (IPv4 in the top 32 bits).
 */
typedef void (*ref_encrypt_fn)(const struct mm_aes128 *, const uint8_t (*)[16], uint8_t (*)[16],
			       unsigned);

struct ref {
	struct mm_aes128 aes;
	ref_encrypt_fn encrypt;
	unsigned __int128 pad;
};

static inline unsigned __int128 be128(const uint8_t b[16])
{
	unsigned __int128 v = 0;
	for (int i = 0; i < 16; i++)
		v = v << 8 | b[i];
	return v;
}

static inline void put_be128(unsigned __int128 v, uint8_t b[16])
{
	for (int i = 15; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}

static inline unsigned ref_msb(const struct ref *r, unsigned __int128 in)
{
	uint8_t block[1][16];

	put_be128(in, block[0]);
	r->encrypt(&r->aes, (const uint8_t(*)[16])block, block, 1);
	return block[0][0] >> 7;
}

static inline void ref_init(struct ref *r, const uint8_t key[32], ref_encrypt_fn encrypt)
{
	uint8_t pad[1][16];

	r->encrypt = encrypt;
	mm_aes128_expand(&r->aes, key);
	memcpy(pad[0], key + 16, 16);
	encrypt(&r->aes, (const uint8_t(*)[16])pad, pad, 1);
	r->pad = be128(pad[0]);
}

static inline unsigned __int128 prefix_mask(unsigned pos)
{
	return pos == 0 ? 0 : ~(unsigned __int128)0 << (128 - pos);
}

static inline unsigned __int128 ref_anon(const struct ref *r, unsigned __int128 a, unsigned n_bits)
{
	unsigned __int128 result = 0;

	for (unsigned pos = 0; pos < n_bits; pos++) {
		unsigned __int128 in = (a & prefix_mask(pos)) | (r->pad & ~prefix_mask(pos));
		result |= (unsigned __int128)ref_msb(r, in) << (127 - pos);
	}
	return a ^ result;
}

static inline unsigned __int128 ref_deanon(const struct ref *r, unsigned __int128 p, unsigned n_bits)
{
	unsigned __int128 orig = 0;

	for (unsigned pos = 0; pos < n_bits; pos++) {
		unsigned __int128 in = (orig & prefix_mask(pos)) | (r->pad & ~prefix_mask(pos));
		unsigned bit = (unsigned)(p >> (127 - pos)) & 1;
		orig |= (unsigned __int128)(bit ^ ref_msb(r, in)) << (127 - pos);
	}
	return orig;
}

#endif
