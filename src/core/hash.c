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

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

/* The final message word: the len % 8 tail bytes, and len in the top byte. */
static inline uint64_t last_word(const void *data, size_t len)
{
	const uint8_t *tail = (const uint8_t *)data + len / 8 * 8;
	uint64_t b = (uint64_t)len << 56;

	for (size_t i = 0; i < len % 8; i++)
		b |= (uint64_t)tail[i] << (8 * i);
	return b;
}

uint64_t mm_siphash13(const struct mm_hash_key *key, const void *data, size_t len)
{
	const uint8_t *in = data;
	struct sip_state s;

	sip_init(&s, key);
	for (size_t i = 0; i < len / 8; i++)
		sip_absorb(&s, load_le64(in + 8 * i));
	sip_absorb(&s, last_word(in, len));
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

#if defined(__x86_64__)
/*
 * The SipHash-1-3 of sip_round and friends on four 64-bit lanes, one
 * input per lane. AVX2 has no 64-bit rotate: rotations by 32 and 16 are
 * shuffles (one instruction each), the others two shifts and an or.
 * Compiled for AVX2 in these functions only, so the rest of the build
 * needs no -mavx2, and called only when the CPU has it.
 */
struct sip_state4 {
	__m256i v0, v1, v2, v3;
};

#define SIP4_TARGET __attribute__((target("avx2")))
#define SIP4_ROT32 _MM_SHUFFLE(2, 3, 0, 1) /* swaps the 32-bit halves of each lane */
#define ROTL4(x, b) _mm256_or_si256(_mm256_slli_epi64((x), (b)), _mm256_srli_epi64((x), 64 - (b)))

/* Every lane starts from the one-input state: the same key for all four. */
SIP4_TARGET static inline void sip4_init(struct sip_state4 *s, const struct mm_hash_key *key)
{
	struct sip_state one;

	sip_init(&one, key);
	s->v0 = _mm256_set1_epi64x((long long)one.v0);
	s->v1 = _mm256_set1_epi64x((long long)one.v1);
	s->v2 = _mm256_set1_epi64x((long long)one.v2);
	s->v3 = _mm256_set1_epi64x((long long)one.v3);
}

SIP4_TARGET static inline void sip4_round(struct sip_state4 *s)
{
	/* Byte indices rotating each 64-bit lane left by 16 bits (little-endian). */
	const __m256i rot16 = _mm256_setr_epi8(6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13,
					       6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13);

	s->v0 = _mm256_add_epi64(s->v0, s->v1);
	s->v1 = _mm256_xor_si256(ROTL4(s->v1, 13), s->v0);
	s->v0 = _mm256_shuffle_epi32(s->v0, SIP4_ROT32);
	s->v2 = _mm256_add_epi64(s->v2, s->v3);
	s->v3 = _mm256_xor_si256(_mm256_shuffle_epi8(s->v3, rot16), s->v2);
	s->v0 = _mm256_add_epi64(s->v0, s->v3);
	s->v3 = _mm256_xor_si256(ROTL4(s->v3, 21), s->v0);
	s->v2 = _mm256_add_epi64(s->v2, s->v1);
	s->v1 = _mm256_xor_si256(ROTL4(s->v1, 17), s->v2);
	s->v2 = _mm256_shuffle_epi32(s->v2, SIP4_ROT32);
}

SIP4_TARGET static inline void sip4_absorb(struct sip_state4 *s, __m256i m)
{
	s->v3 = _mm256_xor_si256(s->v3, m);
	sip4_round(s);
	s->v0 = _mm256_xor_si256(s->v0, m);
}

SIP4_TARGET static inline void sip4_finish(struct sip_state4 *s, uint64_t out[4])
{
	s->v2 = _mm256_xor_si256(s->v2, _mm256_set1_epi64x(0xff));
	sip4_round(s);
	sip4_round(s);
	sip4_round(s);
	_mm256_storeu_si256((__m256i *)out, _mm256_xor_si256(_mm256_xor_si256(s->v0, s->v1),
							    _mm256_xor_si256(s->v2, s->v3)));
}

SIP4_TARGET static void siphash13_16x4_avx2(const struct mm_hash_key *key, const uint64_t m0[4],
					    const uint64_t m1[4], uint64_t out[4])
{
	struct sip_state4 s;

	sip4_init(&s, key);
	sip4_absorb(&s, _mm256_loadu_si256((const __m256i *)m0));
	sip4_absorb(&s, _mm256_loadu_si256((const __m256i *)m1));
	sip4_absorb(&s, _mm256_set1_epi64x((long long)((uint64_t)16 << 56)));
	sip4_finish(&s, out);
}

/* The word of each input at byte offset off, lane i from data[i]. */
SIP4_TARGET static inline __m256i sip4_gather(const void *const data[4], size_t off)
{
	return _mm256_setr_epi64x((long long)load_le64((const uint8_t *)data[0] + off),
				  (long long)load_le64((const uint8_t *)data[1] + off),
				  (long long)load_le64((const uint8_t *)data[2] + off),
				  (long long)load_le64((const uint8_t *)data[3] + off));
}

SIP4_TARGET static void siphash13_x4_avx2(const struct mm_hash_key *key, const void *const data[4],
					  size_t len, uint64_t out[4])
{
	struct sip_state4 s;
	uint64_t b[4];

	sip4_init(&s, key);
	for (size_t w = 0; w < len / 8; w++)
		sip4_absorb(&s, sip4_gather(data, 8 * w));
	for (size_t i = 0; i < 4; i++)
		b[i] = last_word(data[i], len);
	sip4_absorb(&s, _mm256_loadu_si256((const __m256i *)b));
	sip4_finish(&s, out);
}
#endif

void mm_siphash13_16x4(const struct mm_hash_key *key, const uint64_t m0[4], const uint64_t m1[4],
		       uint64_t out[4])
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2")) {
		siphash13_16x4_avx2(key, m0, m1, out);
		return;
	}
#endif
	for (size_t i = 0; i < 4; i++)
		out[i] = mm_siphash13_16(key, m0[i], m1[i]);
}

void mm_siphash13_x4(const struct mm_hash_key *key, const void *const data[4], size_t len,
		     uint64_t out[4])
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2")) {
		siphash13_x4_avx2(key, data, len, out);
		return;
	}
#endif
	for (size_t i = 0; i < 4; i++)
		out[i] = mm_siphash13(key, data[i], len);
}
