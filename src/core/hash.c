/*
 * SipHash-1-3 (see hash.h). One compression round per 8-byte word and three
 * finalisation rounds: the variant Python and Rust use for hash tables,
 * where the threat is bucket flooding, not forgery.
 */
#include "mamori/hash.h"

#include "mamori/status.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND                                                               \
	do {                                                                   \
		v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);      \
		v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                         \
		v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                         \
		v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);      \
	} while (0)

int mm_hash_key_random(struct mm_hash_key *key)
{
	uint8_t *p = (uint8_t *)key;
	size_t got = 0;

	while (got < sizeof(*key)) {
		ssize_t n = getrandom(p + got, sizeof(*key) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return mm_fail(MM_EIO, "getrandom: %s", strerror(errno));
		}
		got += (size_t)n;
	}
	return 0;
}

static inline uint64_t load_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

uint64_t mm_siphash13(const struct mm_hash_key *key, const void *data, size_t len)
{
	const uint8_t *in = data;
	uint64_t v0 = 0x736f6d6570736575ULL ^ key->k0;
	uint64_t v1 = 0x646f72616e646f6dULL ^ key->k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ key->k0;
	uint64_t v3 = 0x7465646279746573ULL ^ key->k1;
	uint64_t b = (uint64_t)len << 56;
	size_t words = len / 8;

	for (size_t i = 0; i < words; i++) {
		uint64_t m = load_le64(in + 8 * i);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t i = 0; i < len % 8; i++)
		b |= (uint64_t)in[8 * words + i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}
