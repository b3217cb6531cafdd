/*
 * AES-128 encryption (FIPS-197), the pseudorandom function under
 * Crypto-PAn. Internal to policy/ (and its tests): two implementations that
 * must agree bit for bit, the x86 AES instructions and a portable
 * constant-time bitsliced one for CPUs without them. Only encryption is
 * needed: Crypto-PAn never decrypts.
 */
#ifndef MAMORI_POLICY_AES128_H
#define MAMORI_POLICY_AES128_H

#include <stdbool.h>
#include <stdint.h>

#define MM_AES128_ROUNDS 10
/* Blocks the portable path encrypts at once: 4 blocks x 16 bytes fill one 64-bit plane. */
#define MM_AES128_PORTABLE_BLOCKS 4

/* The expanded key, in both forms: bytes for AES-NI, bit planes for the portable path. */
struct mm_aes128 {
	uint8_t rk[MM_AES128_ROUNDS + 1][16];        /* round keys, FIPS-197 byte order */
	uint64_t rk_planes[MM_AES128_ROUNDS + 1][8]; /* the same, bitsliced for 4 blocks */
};

/* Expands a 16-byte key (constant time). Wipe ks with mm_aes128_wipe when done. */
void mm_aes128_expand(struct mm_aes128 *ks, const uint8_t key[16]);

/* Zeroes the key schedule in a way the compiler cannot drop. */
void mm_aes128_wipe(struct mm_aes128 *ks);

/* Encrypts n blocks (ECB) with the portable path, 4 at a time; in and out may alias. Constant time. */
void mm_aes128_encrypt_portable(const struct mm_aes128 *ks, const uint8_t (*in)[16],
				uint8_t (*out)[16], unsigned n);

/* True when this CPU has the AES and SSE4.1 instructions (x86 only). */
bool mm_aes128_have_aesni(void);

/* True when it also has VAES and AVX2: AES rounds on two blocks per instruction. */
bool mm_aes128_have_vaes(void);

/*
 * Encrypts n blocks (ECB) with AES-NI, 8 in flight so the instruction's
 * latency is hidden; in and out may alias. Only call when
 * mm_aes128_have_aesni().
 */
void mm_aes128_encrypt_aesni(const struct mm_aes128 *ks, const uint8_t (*in)[16],
			     uint8_t (*out)[16], unsigned n);

#endif
