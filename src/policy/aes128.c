/*
 * AES-128 encryption, two ways (see aes128.h).
 *
 * The portable path is bitsliced rather than table-driven on purpose: a
 * T-table or S-box lookup indexed by key-dependent bytes leaks the key
 * through cache timing to anyone sharing the machine, and the Crypto-PAn key
 * is the one secret between an address and its pseudonym. Here every step is
 * AND/XOR/shift on 64-bit words with no data-dependent index or branch. The
 * S-box is computed, not looked up: inversion in GF(2^8) (x^254) followed by
 * the FIPS-197 affine map.
 *
 * Bit-plane layout: four blocks are processed at once; plane i holds bit i
 * of all 64 state bytes. State byte k of block b (row k%4, column k/4) is
 * lane 16*row + 4*column + b, so ShiftRows rotates 16-bit row fields and
 * MixColumns rotates whole planes by one row (16 bits).
 */
#include "policy/aes128.h"

#include "mamori/status.h"

#include <sodium.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <wmmintrin.h>
#define HAVE_X86 1
#endif

static unsigned lane(unsigned block, unsigned k)
{
	return 16 * (k % 4) + 4 * (k / 4) + block;
}

/*
 * Transposes an 8x8 bit matrix held as 8 bytes (byte r is row r, bit c of it
 * column c): afterwards byte c holds, in bit r, what bit c of byte r was.
 * Three delta swaps (Hacker's Delight, 7-3). Its own inverse.
 */
static uint64_t transpose8(uint64_t x)
{
	uint64_t t;

	t = (x ^ (x >> 7)) & 0x00aa00aa00aa00aaULL;
	x ^= t ^ (t << 7);
	t = (x ^ (x >> 14)) & 0x0000cccc0000ccccULL;
	x ^= t ^ (t << 14);
	t = (x ^ (x >> 28)) & 0x00000000f0f0f0f0ULL;
	x ^= t ^ (t << 28);
	return x;
}

/* Bytes to bit planes: 8 lanes at a time through one 8x8 transpose. */
static void to_planes(const uint8_t in[MM_AES128_PORTABLE_BLOCKS][16], uint64_t p[8])
{
	uint8_t by_lane[64];

	for (unsigned b = 0; b < MM_AES128_PORTABLE_BLOCKS; b++)
		for (unsigned k = 0; k < 16; k++)
			by_lane[lane(b, k)] = in[b][k];
	memset(p, 0, 8 * sizeof(p[0]));
	for (unsigned w = 0; w < 8; w++) {
		uint64_t x = 0;

		for (unsigned j = 0; j < 8; j++)
			x |= (uint64_t)by_lane[8 * w + j] << (8 * j);
		x = transpose8(x);
		for (unsigned i = 0; i < 8; i++)
			p[i] |= ((x >> (8 * i)) & 0xff) << (8 * w);
	}
}

static void from_planes(const uint64_t p[8], uint8_t out[MM_AES128_PORTABLE_BLOCKS][16])
{
	uint8_t by_lane[64];

	for (unsigned w = 0; w < 8; w++) {
		uint64_t x = 0;

		for (unsigned i = 0; i < 8; i++)
			x |= ((p[i] >> (8 * w)) & 0xff) << (8 * i);
		x = transpose8(x);
		for (unsigned j = 0; j < 8; j++)
			by_lane[8 * w + j] = (uint8_t)(x >> (8 * j));
	}
	for (unsigned b = 0; b < MM_AES128_PORTABLE_BLOCKS; b++)
		for (unsigned k = 0; k < 16; k++)
			out[b][k] = by_lane[lane(b, k)];
}

/* Reduces a 15-term product modulo x^8 + x^4 + x^3 + x + 1 into r. Unrolled so t stays in registers. */
static inline void gf_reduce(uint64_t t[15], uint64_t r[8])
{
#pragma GCC unroll 7
	for (unsigned k = 14; k >= 8; k--) {
		t[k - 4] ^= t[k];
		t[k - 5] ^= t[k];
		t[k - 7] ^= t[k];
		t[k - 8] ^= t[k];
	}
	memcpy(r, t, 8 * sizeof(r[0]));
}

static inline void gf_mul(const uint64_t a[8], const uint64_t b[8], uint64_t r[8])
{
	uint64_t t[15] = { 0 };

#pragma GCC unroll 8
	for (unsigned i = 0; i < 8; i++)
#pragma GCC unroll 8
		for (unsigned j = 0; j < 8; j++)
			t[i + j] ^= a[i] & b[j];
	gf_reduce(t, r);
}

/* Squaring is linear in GF(2^8): spread the bits, then reduce. */
static inline void gf_sq(const uint64_t a[8], uint64_t r[8])
{
	uint64_t t[15] = { 0 };

	for (unsigned i = 0; i < 8; i++)
		t[2 * i] = a[i];
	gf_reduce(t, r);
}

static void sub_bytes(uint64_t s[8])
{
	uint64_t x2[8], x3[8], x12[8], x15[8], t[8], inv[8];

	/* x^254 = x^-1 (and 0 -> 0) by the chain 2, 3, 12, 15, 240, 252, 254. */
	gf_sq(s, x2);
	gf_mul(x2, s, x3);
	gf_sq(x3, t);
	gf_sq(t, x12);
	gf_mul(x12, x3, x15);
	gf_sq(x15, t);
	for (unsigned i = 0; i < 3; i++)
		gf_sq(t, t);
	gf_mul(t, x12, inv);
	gf_mul(inv, x2, inv);
	/* Affine map: b_i ^ b_{i+4} ^ b_{i+5} ^ b_{i+6} ^ b_{i+7} ^ c_i, c = 0x63. */
	for (unsigned i = 0; i < 8; i++)
		s[i] = inv[i] ^ inv[(i + 4) % 8] ^ inv[(i + 5) % 8] ^ inv[(i + 6) % 8] ^
		       inv[(i + 7) % 8] ^ ((0x63u >> i) & 1 ? ~(uint64_t)0 : 0);
}

static void shift_rows(uint64_t s[8])
{
	for (unsigned i = 0; i < 8; i++)
		for (unsigned r = 1; r < 4; r++) {
			unsigned sh = 4 * r;
			uint64_t f = (s[i] >> (16 * r)) & 0xffff;
			f = ((f >> sh) | (f << (16 - sh))) & 0xffff;
			s[i] = (s[i] & ~(0xffffULL << (16 * r))) | f << (16 * r);
		}
}

static uint64_t rotr_row(uint64_t x, unsigned rows)
{
	return (x >> (16 * rows)) | (x << (64 - 16 * rows));
}

/* Each column: s'_r = 2 s_r ^ 3 s_{r+1} ^ s_{r+2} ^ s_{r+3} = 2 (s_r ^ s_{r+1}) ^ s_{r+1} ^ s_{r+2} ^ s_{r+3}. */
static void mix_columns(uint64_t s[8])
{
	uint64_t a1[8], rest[8], t[8];

	for (unsigned i = 0; i < 8; i++) {
		a1[i] = rotr_row(s[i], 1);
		rest[i] = a1[i] ^ rotr_row(s[i], 2) ^ rotr_row(s[i], 3);
		t[i] = s[i] ^ a1[i];
	}
	/* Multiplying t by x: shift up one bit plane, fold bit 7 back in as 0x1b. */
	s[0] = t[7] ^ rest[0];
	s[1] = t[0] ^ t[7] ^ rest[1];
	s[2] = t[1] ^ rest[2];
	s[3] = t[2] ^ t[7] ^ rest[3];
	s[4] = t[3] ^ t[7] ^ rest[4];
	s[5] = t[4] ^ rest[5];
	s[6] = t[5] ^ rest[6];
	s[7] = t[6] ^ rest[7];
}

static void add_round_key(uint64_t s[8], const uint64_t k[8])
{
	for (unsigned i = 0; i < 8; i++)
		s[i] ^= k[i];
}

static void encrypt4(const struct mm_aes128 *ks, uint8_t blocks[MM_AES128_PORTABLE_BLOCKS][16])
{
	uint64_t s[8];

	to_planes((const uint8_t(*)[16])blocks, s);
	add_round_key(s, ks->rk_planes[0]);
	for (unsigned r = 1; r < MM_AES128_ROUNDS; r++) {
		sub_bytes(s);
		shift_rows(s);
		mix_columns(s);
		add_round_key(s, ks->rk_planes[r]);
	}
	sub_bytes(s);
	shift_rows(s);
	add_round_key(s, ks->rk_planes[MM_AES128_ROUNDS]);
	from_planes(s, blocks);
}

void mm_aes128_encrypt_portable(const struct mm_aes128 *ks, const uint8_t (*in)[16],
				uint8_t (*out)[16], unsigned n)
{
	uint8_t blocks[MM_AES128_PORTABLE_BLOCKS][16];

	for (unsigned done = 0; done < n; done += MM_AES128_PORTABLE_BLOCKS) {
		unsigned k = n - done < MM_AES128_PORTABLE_BLOCKS ? n - done : MM_AES128_PORTABLE_BLOCKS;

		memset(blocks, 0, sizeof(blocks));
		memcpy(blocks, in + done, 16 * (size_t)k);
		encrypt4(ks, blocks);
		memcpy(out + done, blocks, 16 * (size_t)k);
	}
}

/* SubWord of the key schedule, through the same constant-time S-box. */
static void sub_word(uint8_t w[4])
{
	uint8_t blocks[MM_AES128_PORTABLE_BLOCKS][16] = { { 0 } };
	uint64_t s[8];

	memcpy(blocks[0], w, 4);
	to_planes((const uint8_t(*)[16])blocks, s);
	sub_bytes(s);
	from_planes(s, blocks);
	memcpy(w, blocks[0], 4);
}

void mm_aes128_expand(struct mm_aes128 *ks, const uint8_t key[16])
{
	static const uint8_t rcon[MM_AES128_ROUNDS] = { 0x01, 0x02, 0x04, 0x08, 0x10,
							0x20, 0x40, 0x80, 0x1b, 0x36 };
	uint8_t w[4 * (MM_AES128_ROUNDS + 1)][4];
	uint8_t rep[MM_AES128_PORTABLE_BLOCKS][16];

	memcpy(w, key, 16);
	for (unsigned i = 4; i < 4 * (MM_AES128_ROUNDS + 1); i++) {
		uint8_t t[4];

		memcpy(t, w[i - 1], 4);
		if (i % 4 == 0) {
			uint8_t rot[4] = { t[1], t[2], t[3], t[0] };
			sub_word(rot);
			memcpy(t, rot, 4);
			t[0] ^= rcon[i / 4 - 1];
		}
		for (unsigned j = 0; j < 4; j++)
			w[i][j] = w[i - 4][j] ^ t[j];
	}
	for (unsigned r = 0; r <= MM_AES128_ROUNDS; r++) {
		memcpy(ks->rk[r], w[4 * r], 16);
		for (unsigned b = 0; b < MM_AES128_PORTABLE_BLOCKS; b++)
			memcpy(rep[b], ks->rk[r], 16);
		to_planes((const uint8_t(*)[16])rep, ks->rk_planes[r]);
	}
	sodium_memzero(w, sizeof(w));
	sodium_memzero(rep, sizeof(rep));
}

void mm_aes128_wipe(struct mm_aes128 *ks)
{
	sodium_memzero(ks, sizeof(*ks));
}

#ifdef HAVE_X86
bool mm_aes128_have_aesni(void)
{
	return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse4.1");
}

/* VAES straight from CPUID (leaf 7, ECX bit 9): not every compiler's builtin knows it. The
 * AVX2 check also confirms the OS saves the 256-bit registers. */
bool mm_aes128_have_vaes(void)
{
	unsigned eax, ebx, ecx, edx;

	if (!mm_aes128_have_aesni() || !__builtin_cpu_supports("avx2"))
		return false;
	if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
		return false;
	return (ecx >> 9) & 1;
}

#define AESNI_LANES 8

/* k blocks (k <= AESNI_LANES) through all rounds side by side: the loops unroll into registers. */
__attribute__((target("aes,sse4.1"))) static inline void
aesni_blocks(const __m128i rk[MM_AES128_ROUNDS + 1], const uint8_t (*in)[16], uint8_t (*out)[16],
	     unsigned k)
{
	__m128i x[AESNI_LANES];

	for (unsigned j = 0; j < k; j++)
		x[j] = _mm_xor_si128(_mm_loadu_si128((const __m128i *)in[j]), rk[0]);
#pragma GCC unroll 9
	for (unsigned r = 1; r < MM_AES128_ROUNDS; r++)
#pragma GCC unroll 8
		for (unsigned j = 0; j < k; j++)
			x[j] = _mm_aesenc_si128(x[j], rk[r]);
	for (unsigned j = 0; j < k; j++)
		_mm_storeu_si128((__m128i *)out[j], _mm_aesenclast_si128(x[j], rk[MM_AES128_ROUNDS]));
}

__attribute__((target("aes,sse4.1"))) void
mm_aes128_encrypt_aesni(const struct mm_aes128 *ks, const uint8_t (*in)[16], uint8_t (*out)[16],
			unsigned n)
{
	__m128i rk[MM_AES128_ROUNDS + 1];
	unsigned done = 0;

	for (unsigned r = 0; r <= MM_AES128_ROUNDS; r++)
		rk[r] = _mm_loadu_si128((const __m128i *)ks->rk[r]);
	for (; done + AESNI_LANES <= n; done += AESNI_LANES)
		aesni_blocks(rk, in + done, out + done, AESNI_LANES);
	for (; done < n; done++)
		aesni_blocks(rk, in + done, out + done, 1);
}
#else
bool mm_aes128_have_aesni(void)
{
	return false;
}

bool mm_aes128_have_vaes(void)
{
	return false;
}

void mm_aes128_encrypt_aesni(const struct mm_aes128 *ks, const uint8_t (*in)[16], uint8_t (*out)[16],
			     unsigned n)
{
	(void)ks, (void)in, (void)out, (void)n;
	MM_BUG(1);
}
#endif
