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

struct sip_state {
	uint64_t v0, v1, v2, v3;
};

static inline void sip_init(struct sip_state *s, const struct mm_hash_key *key)
{
	s->v0 = 0x736f6d6570736575ULL ^ key->k0;
	s->v1 = 0x646f72616e646f6dULL ^ key->k1;
	s->v2 = 0x6c7967656e657261ULL ^ key->k0;
	s->v3 = 0x7465646279746573ULL ^ key->k1;
}

static inline void sip_round(struct sip_state *s)
{
	s->v0 += s->v1; s->v1 = ROTL(s->v1, 13); s->v1 ^= s->v0; s->v0 = ROTL(s->v0, 32);
	s->v2 += s->v3; s->v3 = ROTL(s->v3, 16); s->v3 ^= s->v2;
	s->v0 += s->v3; s->v3 = ROTL(s->v3, 21); s->v3 ^= s->v0;
	s->v2 += s->v1; s->v1 = ROTL(s->v1, 17); s->v1 ^= s->v2; s->v2 = ROTL(s->v2, 32);
}

/* One compression round per message word (the "1" of SipHash-1-3). */
static inline void sip_absorb(struct sip_state *s, uint64_t m)
{
	s->v3 ^= m;
	sip_round(s);
	s->v0 ^= m;
}

/* Three finalisation rounds (the "3"). */
static inline uint64_t sip_finish(struct sip_state *s)
{
	s->v2 ^= 0xff;
	sip_round(s);
	sip_round(s);
	sip_round(s);
	return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

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
	struct sip_state s;
	uint64_t b = (uint64_t)len << 56;
	size_t words = len / 8;

	sip_init(&s, key);
	for (size_t i = 0; i < words; i++)
		sip_absorb(&s, load_le64(in + 8 * i));
	for (size_t i = 0; i < len % 8; i++)
		b |= (uint64_t)in[8 * words + i] << (8 * i);
	sip_absorb(&s, b);
	return sip_finish(&s);
}

uint64_t mm_siphash13_16(const struct mm_hash_key *key, uint64_t m0, uint64_t m1)
{
	struct sip_state s;

	sip_init(&s, key);
	sip_absorb(&s, m0);
	sip_absorb(&s, m1);
	sip_absorb(&s, (uint64_t)16 << 56); /* the length word; no tail bytes */
	return sip_finish(&s);
}
