/*
 * Keyed hashing for tables whose keys come from the wire. SipHash-1-3
 * (Aumasson & Bernstein) under a per-process random key: an attacker who
 * chooses packet fields cannot predict bucket positions, so cannot flood
 * one bucket. Never use an unkeyed hash on packet-derived keys.
 */
#ifndef MAMORI_HASH_H
#define MAMORI_HASH_H

#include <stddef.h>
#include <stdint.h>

struct mm_hash_key {
	uint64_t k0, k1;
};

/* Fills key from the kernel's random source (getrandom); 0 or MM_EIO. */
int mm_hash_key_random(struct mm_hash_key *key);

/* SipHash-1-3 of len bytes; work is linear in len. */
uint64_t mm_siphash13(const struct mm_hash_key *key, const void *data, size_t len);

/*
 * mm_siphash13 of exactly 16 bytes given as two little-endian words (m0
 * holds bytes 0..7): the same value, without the length loops, for hot
 * paths that pack a fixed-size key into registers.
 */
uint64_t mm_siphash13_16(const struct mm_hash_key *key, uint64_t m0, uint64_t m1);

/*
 * Four mm_siphash13_16 at once: out[i] = mm_siphash13_16(key, m0[i],
 * m1[i]), the same values. On a CPU with AVX2 (checked once at run time)
 * the four run in the lanes of one vector register, for batches of keys
 * where hashing is a measurable share of the work.
 */
void mm_siphash13_16x4(const struct mm_hash_key *key, const uint64_t m0[4], const uint64_t m1[4],
		       uint64_t out[4]);

/* Four mm_siphash13 of len bytes each, likewise: out[i] = mm_siphash13(key, data[i], len). */
void mm_siphash13_x4(const struct mm_hash_key *key, const void *const data[4], size_t len,
		     uint64_t out[4]);

#endif
