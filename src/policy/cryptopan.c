/*
 * Crypto-PAn (see cryptopan.h). Bit i of a pseudonym is bit i of the
 * address XOR the first bit of AES_K(first i bits of the address, followed
 * by bits i.. of the pad), the pad being AES_K(second half of the key). The
 * n encryptions of one address (n = 32 or 128) are independent, so they are
 * built as one batch and encrypted side by side: 16 in flight with VAES, 8
 * with AES-NI, 4 bitsliced on the portable path.
 *
 * The flips of the first 16 bits depend only on the first 15 address bits
 * and are the same for IPv4 and IPv6, so they come from a table of 2^16
 * entries filled once per key: 16 fewer encryptions per address (half the
 * work for IPv4). The table is indexed by address bits, not key bits, so
 * cache timing can at most tell a co-tenant which /16 is being mapped, never
 * the key.
 */
#include "mamori/cryptopan.h"

#include "mamori/status.h"
#include "policy/aes128.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __x86_64__
#include <immintrin.h>
#endif

#define HEAD_BITS 16
#define HEAD_SIZE (1u << HEAD_BITS)
#define KEY_HEX_LEN (2 * MM_CRYPTOPAN_KEY_LEN)

typedef void (*encrypt_fn)(const struct mm_aes128 *ks, const uint8_t (*in)[16],
			   uint8_t (*out)[16], unsigned n);

/* Flip bits for positions [HEAD_BITS, n_bits) of a, written into flips (bit order as a). */
typedef void (*tail_fn)(const struct mm_cryptopan *c, const uint8_t a[16], unsigned n_bits,
			uint8_t flips[16]);

struct mm_cryptopan {
	struct mm_aes128 aes;
	encrypt_fn encrypt;
	tail_fn tail;
	enum mm_cryptopan_impl impl;
	uint8_t pad[16];                  /* AES_K(key[16..32]) */
	uint8_t masks[128][16];           /* masks[i]: the first i bits set */
	uint16_t head_flips[HEAD_SIZE];   /* flips of bits 0..15, by the address's bits 0..15 */
	uint16_t head_inverse[HEAD_SIZE]; /* address bits 0..15, by the pseudonym's bits 0..15 */
};

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static bool bit_at(const uint8_t a[16], unsigned i)
{
	return (a[i / 8] >> (7 - i % 8)) & 1;
}

/* The encryption input for bit pos: a's first pos bits, then the pad's. */
static void prf_input(const struct mm_cryptopan *c, const uint8_t a[16], unsigned pos,
		      uint8_t block[16])
{
	for (unsigned j = 0; j < 16; j++)
		block[j] = (uint8_t)(c->pad[j] ^ ((a[j] ^ c->pad[j]) & c->masks[pos][j]));
}

/* tail_fn for any AES: build the inputs, encrypt them as one batch. */
static void tail_flips(const struct mm_cryptopan *c, const uint8_t a[16], unsigned n_bits,
		       uint8_t flips[16])
{
	uint8_t blocks[128 - HEAD_BITS][16];
	unsigned n = n_bits - HEAD_BITS;

	for (unsigned i = 0; i < n; i++)
		prf_input(c, a, HEAD_BITS + i, blocks[i]);
	c->encrypt(&c->aes, (const uint8_t(*)[16])blocks, blocks, n);
	for (unsigned i = 0; i < n; i += 8) {
		unsigned byte = 0;
		for (unsigned j = 0; j < 8; j++)
			byte |= (unsigned)(blocks[i + j][0] >> 7) << (7 - j);
		flips[(HEAD_BITS + i) / 8] = (uint8_t)byte;
	}
}

#ifdef __x86_64__
/*
 * tail_fn with AES-NI: the inputs are built in registers and 8 go through
 * the rounds side by side, so the 4-cycle latency of each round is hidden.
 */
__attribute__((target("aes,sse4.1"))) static void
tail_flips_aesni(const struct mm_cryptopan *c, const uint8_t a[16], unsigned n_bits,
		 uint8_t flips[16])
{
	__m128i rk[MM_AES128_ROUNDS + 1];
	__m128i pad = _mm_loadu_si128((const __m128i *)c->pad);
	__m128i diff = _mm_xor_si128(_mm_loadu_si128((const __m128i *)a), pad);

	for (unsigned r = 0; r <= MM_AES128_ROUNDS; r++)
		rk[r] = _mm_loadu_si128((const __m128i *)c->aes.rk[r]);
	for (unsigned pos = HEAD_BITS; pos < n_bits; pos += 8) {
		__m128i x[8];
		unsigned byte = 0;

#pragma GCC unroll 8
		for (unsigned j = 0; j < 8; j++) {
			__m128i m = _mm_loadu_si128((const __m128i *)c->masks[pos + j]);
			x[j] = _mm_xor_si128(_mm_xor_si128(pad, _mm_and_si128(diff, m)), rk[0]);
		}
		/* Unrolled whatever the optimisation level, so x stays in registers. */
#pragma GCC unroll 9
		for (unsigned r = 1; r < MM_AES128_ROUNDS; r++)
#pragma GCC unroll 8
			for (unsigned j = 0; j < 8; j++)
				x[j] = _mm_aesenc_si128(x[j], rk[r]);
#pragma GCC unroll 8
		for (unsigned j = 0; j < 8; j++) {
			__m128i y = _mm_aesenclast_si128(x[j], rk[MM_AES128_ROUNDS]);
			byte |= (unsigned)(_mm_movemask_epi8(y) & 1) << (7 - j);
		}
		flips[pos / 8] = (uint8_t)byte;
	}
}

/*
 * tail_fn with VAES: two blocks per 256-bit register, 16 in flight. On
 * CPUs that issue two 256-bit AES rounds per cycle this is twice the xmm
 * path's rate.
 */
__attribute__((target("vaes,avx2"))) static void
tail_flips_vaes(const struct mm_cryptopan *c, const uint8_t a[16], unsigned n_bits,
		uint8_t flips[16])
{
	__m256i rk[MM_AES128_ROUNDS + 1];
	__m256i pad = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)c->pad));
	__m256i diff = _mm256_xor_si256(
		_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)a)), pad);

	for (unsigned r = 0; r <= MM_AES128_ROUNDS; r++)
		rk[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)c->aes.rk[r]));
	for (unsigned pos = HEAD_BITS; pos < n_bits; pos += 16) {
		__m256i x[8];
		unsigned bits = 0;

#pragma GCC unroll 8
		for (unsigned j = 0; j < 8; j++) {
			__m256i m = _mm256_loadu_si256((const __m256i *)c->masks[pos + 2 * j]);
			x[j] = _mm256_xor_si256(_mm256_xor_si256(pad, _mm256_and_si256(diff, m)), rk[0]);
		}
#pragma GCC unroll 9
		for (unsigned r = 1; r < MM_AES128_ROUNDS; r++)
#pragma GCC unroll 8
			for (unsigned j = 0; j < 8; j++)
				x[j] = _mm256_aesenc_epi128(x[j], rk[r]);
#pragma GCC unroll 8
		for (unsigned j = 0; j < 8; j++) {
			/* Bit 0 of the mask is block 2j's first bit, bit 16 block 2j+1's. */
			unsigned m = (unsigned)_mm256_movemask_epi8(
				_mm256_aesenclast_epi128(x[j], rk[MM_AES128_ROUNDS]));
			bits |= (m & 1) << (15 - 2 * j) | ((m >> 16) & 1) << (14 - 2 * j);
		}
		flips[pos / 8] = (uint8_t)(bits >> 8);
		flips[pos / 8 + 1] = (uint8_t)bits;
	}
}
#endif

/* The raw Crypto-PAn map over the first n_bits (32 or 128) of a. */
static void forward(const struct mm_cryptopan *c, uint8_t a[16], unsigned n_bits)
{
	uint8_t flips[16] = { 0 };
	unsigned head = (unsigned)a[0] << 8 | a[1];

	flips[0] = (uint8_t)(c->head_flips[head] >> 8);
	flips[1] = (uint8_t)c->head_flips[head];
	c->tail(c, a, n_bits, flips);
	for (unsigned j = 0; j < n_bits / 8; j++)
		a[j] ^= flips[j];
}

/* Its inverse: bit i of the address needs bits 0..i-1 of it, so this is serial past the head. */
static void backward(const struct mm_cryptopan *c, uint8_t a[16], unsigned n_bits)
{
	uint8_t orig[16] = { 0 }, block[1][16];
	unsigned head = c->head_inverse[(unsigned)a[0] << 8 | a[1]];

	orig[0] = (uint8_t)(head >> 8);
	orig[1] = (uint8_t)head;
	for (unsigned pos = HEAD_BITS; pos < n_bits; pos++) {
		prf_input(c, orig, pos, block[0]);
		c->encrypt(&c->aes, (const uint8_t(*)[16])block, block, 1);
		if (bit_at(a, pos) ^ (block[0][0] >> 7))
			orig[pos / 8] |= (uint8_t)(0x80 >> (pos % 8));
	}
	memcpy(a, orig, n_bits / 8);
}

static bool is_v4_mapped(const uint8_t a[16])
{
	return memcmp(a, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0;
}

/*
 * One direction over an mm_addr. IPv4 keeps to its 32 bits. For IPv6 the
 * 128-bit map is a permutation of all 2^128 values, which sends one /96
 * into ::ffff:0:0/96, where pseudonyms would pass for IPv4; a result that
 * lands there is mapped once more (cycle walking), which leaves that /96 in
 * two steps at most and keeps the whole map a bijection of IPv6 onto IPv6.
 */
static void map_addr(const struct mm_cryptopan *c, const struct mm_addr *in, struct mm_addr *out,
		     void (*step)(const struct mm_cryptopan *, uint8_t[16], unsigned))
{
	uint8_t a[16] = { 0 };

	if (mm_addr_is_v4(in)) {
		memcpy(a, in->b + 12, 4);
		step(c, a, 32);
		mm_addr_set_v4(out, a);
		return;
	}
	memcpy(a, in->b, 16);
	step(c, a, 128);
	if (is_v4_mapped(a))
		step(c, a, 128);
	memcpy(out->b, a, 16);
}

void mm_cryptopan_anonymize(const struct mm_cryptopan *c, const struct mm_addr *in,
			    struct mm_addr *out)
{
	map_addr(c, in, out, forward);
}

void mm_cryptopan_deanonymize(const struct mm_cryptopan *c, const struct mm_addr *in,
			      struct mm_addr *out)
{
	map_addr(c, in, out, backward);
}

void mm_cryptopan_flows(const struct mm_cryptopan *c, struct mm_flow *flows, size_t n,
			const uint8_t *sides)
{
	for (size_t i = 0; i < n; i++) {
		if (sides[i] & MM_CRYPTOPAN_SRC)
			mm_cryptopan_anonymize(c, &flows[i].src, &flows[i].src);
		if (sides[i] & MM_CRYPTOPAN_DST)
			mm_cryptopan_anonymize(c, &flows[i].dst, &flows[i].dst);
	}
}

/*
 * Fills the head tables: every prefix of 0..15 bits is encrypted once
 * (2^16 - 1 blocks in one batch), then each 16-bit head gathers its flips.
 */
static int build_head(struct mm_cryptopan *c)
{
	uint8_t(*blocks)[16] = malloc((size_t)HEAD_SIZE * 16);

	if (!blocks)
		return mm_fail(MM_ENOMEM, "cryptopan: out of memory for the prefix table");
	memset(blocks[HEAD_SIZE - 1], 0, 16);
	for (unsigned pos = 0; pos < HEAD_BITS; pos++)
		for (unsigned v = 0; v < 1u << pos; v++) {
			uint8_t a[16] = { 0 };
			unsigned top = pos ? v << (HEAD_BITS - pos) : 0;

			a[0] = (uint8_t)(top >> 8);
			a[1] = (uint8_t)top;
			prf_input(c, a, pos, blocks[(1u << pos) - 1 + v]);
		}
	c->encrypt(&c->aes, (const uint8_t(*)[16])blocks, blocks, HEAD_SIZE);
	for (unsigned x = 0; x < HEAD_SIZE; x++) {
		unsigned f = 0;
		for (unsigned pos = 0; pos < HEAD_BITS; pos++) {
			unsigned v = pos ? x >> (HEAD_BITS - pos) : 0;
			f |= (unsigned)(blocks[(1u << pos) - 1 + v][0] >> 7) << (HEAD_BITS - 1 - pos);
		}
		c->head_flips[x] = (uint16_t)f;
		c->head_inverse[x ^ f] = (uint16_t)x;
	}
	sodium_memzero(blocks, (size_t)HEAD_SIZE * 16);
	free(blocks);
	return 0;
}

int mm_cryptopan_new(const uint8_t key[MM_CRYPTOPAN_KEY_LEN], enum mm_cryptopan_impl impl,
		     struct mm_cryptopan **out)
{
	struct mm_cryptopan *c;
	uint8_t pad_in[1][16];
	int rc;

	*out = NULL;
	if (impl == MM_CRYPTOPAN_AUTO)
		impl = mm_aes128_have_vaes()    ? MM_CRYPTOPAN_VAES
		       : mm_aes128_have_aesni() ? MM_CRYPTOPAN_AESNI
						: MM_CRYPTOPAN_PORTABLE;
	if (impl == MM_CRYPTOPAN_AESNI && !mm_aes128_have_aesni())
		return mm_fail(MM_EUNSUP, "cryptopan: this CPU has no AES instructions");
	if (impl == MM_CRYPTOPAN_VAES && !mm_aes128_have_vaes())
		return mm_fail(MM_EUNSUP, "cryptopan: this CPU has no VAES/AVX2 instructions");
	if (impl != MM_CRYPTOPAN_AESNI && impl != MM_CRYPTOPAN_VAES && impl != MM_CRYPTOPAN_PORTABLE)
		return mm_fail(MM_EINVAL, "cryptopan: unknown implementation %d", (int)impl);
	c = calloc(1, sizeof(*c));
	if (!c)
		return mm_fail(MM_ENOMEM, "cryptopan: out of memory");
	c->impl = impl;
	c->encrypt = mm_aes128_encrypt_portable;
	c->tail = tail_flips;
#ifdef __x86_64__
	if (impl == MM_CRYPTOPAN_AESNI || impl == MM_CRYPTOPAN_VAES) {
		c->encrypt = mm_aes128_encrypt_aesni;
		c->tail = impl == MM_CRYPTOPAN_VAES ? tail_flips_vaes : tail_flips_aesni;
	}
#endif
	mm_aes128_expand(&c->aes, key);
	memcpy(pad_in[0], key + 16, 16);
	c->encrypt(&c->aes, (const uint8_t(*)[16])pad_in, pad_in, 1);
	memcpy(c->pad, pad_in[0], 16);
	sodium_memzero(pad_in, sizeof(pad_in));
	for (unsigned i = 0; i < 128; i++)
		for (unsigned j = 0; j < 16; j++) {
			unsigned bits = i > 8 * j ? i - 8 * j : 0;
			c->masks[i][j] = bits >= 8 ? 0xff : (uint8_t)(0xff00u >> bits);
		}
	rc = build_head(c);
	if (rc < 0) {
		mm_cryptopan_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void mm_cryptopan_free(struct mm_cryptopan *c)
{
	if (!c)
		return;
	sodium_memzero(c, sizeof(*c));
	free(c);
}

const char *mm_cryptopan_impl_name(const struct mm_cryptopan *c)
{
	switch (c->impl) {
	case MM_CRYPTOPAN_AESNI: return "aesni";
	case MM_CRYPTOPAN_VAES: return "vaes";
	default: return "portable";
	}
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* 64 hex digits then only whitespace. Messages give positions, never the characters. */
static int parse_key_text(const char *path, const char *text, size_t len,
			  uint8_t key[MM_CRYPTOPAN_KEY_LEN])
{
	size_t n_hex = 0;

	while (n_hex < len && hex_value(text[n_hex]) >= 0)
		n_hex++;
	for (size_t i = n_hex; i < len; i++)
		if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
			return mm_fail(MM_EFORMAT,
				       "cryptopan: key file %s: byte %zu is not a hex digit; expected "
				       "64 hex digits and optional trailing whitespace",
				       path, n_hex + 1);
	if (n_hex != KEY_HEX_LEN)
		return mm_fail(MM_EFORMAT, "cryptopan: key file %s: %zu hex digits; expected %d", path,
			       n_hex, KEY_HEX_LEN);
	for (size_t i = 0; i < MM_CRYPTOPAN_KEY_LEN; i++)
		key[i] = (uint8_t)(hex_value(text[2 * i]) << 4 | hex_value(text[2 * i + 1]));
	return 0;
}

int mm_cryptopan_key_load(const char *path, uint8_t key[MM_CRYPTOPAN_KEY_LEN])
{
	char buf[KEY_HEX_LEN + 64];
	size_t used = 0;
	struct stat st;
	ssize_t n;
	int fd, rc;

	sodium_memzero(key, MM_CRYPTOPAN_KEY_LEN);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "cryptopan: key file %s: %s", path,
			       strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = mm_fail(MM_EIO, "cryptopan: key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = mm_fail(MM_EPERM, "cryptopan: key file %s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		rc = mm_fail(MM_EPERM,
			     "cryptopan: key file %s has mode %04o, readable or writable beyond its "
			     "owner; refusing it (chmod 600 %s)",
			     path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	while (used < sizeof(buf) && (n = read(fd, buf + used, sizeof(buf) - used)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = mm_fail(MM_EIO, "cryptopan: key file %s: %s", path, strerror(errno));
			goto out;
		}
		used += (size_t)n;
	}
	if (used == sizeof(buf))
		rc = mm_fail(MM_EFORMAT, "cryptopan: key file %s: longer than %zu bytes; expected 64 "
					 "hex digits", path, sizeof(buf) - 1);
	else
		rc = parse_key_text(path, buf, used, key);
out:
	close(fd);
	sodium_memzero(buf, sizeof(buf));
	if (rc < 0)
		sodium_memzero(key, MM_CRYPTOPAN_KEY_LEN);
	return rc;
}

int mm_cryptopan_key_generate(const char *path)
{
	uint8_t key[MM_CRYPTOPAN_KEY_LEN];
	char hex[KEY_HEX_LEN + 2];
	int fd, rc = 0;

	if (sodium_init() < 0)
		return mm_fail(MM_EINTERNAL, "cryptopan: libsodium failed to initialise");
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return mm_fail(errno == EEXIST ? MM_EEXIST : MM_EIO, "cryptopan: key file %s: %s%s",
			       path, strerror(errno),
			       errno == EEXIST ? " (an existing key is never overwritten)" : "");
	randombytes_buf(key, sizeof(key));
	sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
	hex[KEY_HEX_LEN] = '\n';
	if (fchmod(fd, 0600) < 0 || write(fd, hex, KEY_HEX_LEN + 1) != KEY_HEX_LEN + 1 ||
	    fsync(fd) < 0) {
		rc = mm_fail(MM_EIO, "cryptopan: key file %s: %s", path, strerror(errno));
		unlink(path);
	}
	if (close(fd) < 0 && rc == 0) {
		rc = mm_fail(MM_EIO, "cryptopan: key file %s: %s", path, strerror(errno));
		unlink(path);
	}
	sodium_memzero(key, sizeof(key));
	sodium_memzero(hex, sizeof(hex));
	return rc;
}
