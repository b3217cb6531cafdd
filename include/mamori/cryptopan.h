/*
 * Prefix-preserving pseudonymisation of addresses: Crypto-PAn (Xu, Fan,
 * Ammar, Moon, ICNP 2002). The policy stage calls it at ingest on every
 * domestic address, before anything is buffered or stored, so no domestic
 * address reaches the store in the clear. Two addresses that share a k-bit
 * prefix have pseudonyms that share exactly a k-bit prefix; the map is a
 * bijection, and the holder of the key can reverse it (an act the oversight
 * module gates behind a `reidentify` authorization).
 *
 * IPv4 (v4-mapped struct mm_addr) is mapped exactly as the original
 * implementation does and stays IPv4; IPv6 by the same construction over
 * 128 bits (as yacryptopan does) and stays IPv6. See docs/pseudonymisation.md.
 */
#ifndef MAMORI_CRYPTOPAN_H
#define MAMORI_CRYPTOPAN_H

#include "mamori/addr.h"
#include "mamori/flow.h"

#include <stddef.h>
#include <stdint.h>

/* A key: 16 bytes of AES-128 key, then 16 bytes of pad. */
#define MM_CRYPTOPAN_KEY_LEN 32

/* One keyed mapping. Immutable after mm_cryptopan_new: share it between threads freely. */
struct mm_cryptopan;

/*
 * Reads a key file: exactly 64 hex digits, optionally followed by
 * whitespace. The file must be a regular file with no group or other
 * permission bits (0600 or stricter); a wider mode is refused with a
 * message naming the path and the mode. Returns 0, MM_ENOENT, MM_EIO,
 * MM_EPERM (mode, not a regular file) or MM_EFORMAT (length, non-hex
 * character: the message names path and position, never the key). Every
 * buffer that held key material is wiped before return; on failure key is
 * wiped too.
 */
int mm_cryptopan_key_load(const char *path, uint8_t key[MM_CRYPTOPAN_KEY_LEN]);

/*
 * Creates a key file at path from the system's random source (libsodium):
 * 64 hex digits and a newline, mode 0600, created with O_EXCL so an existing
 * file is never overwritten (MM_EEXIST). Returns 0, MM_EEXIST or MM_EIO.
 */
int mm_cryptopan_key_generate(const char *path);

/* Which AES-128 implementation a mapping uses; every one gives the same answers. */
enum mm_cryptopan_impl {
	MM_CRYPTOPAN_AUTO = 0,     /* the fastest this CPU has */
	MM_CRYPTOPAN_AESNI = 1,    /* x86 AES instructions, 8 blocks in flight */
	MM_CRYPTOPAN_PORTABLE = 2, /* bitsliced, table-free, constant-time C */
	MM_CRYPTOPAN_VAES = 3,     /* x86 VAES on 256-bit registers, 16 blocks in flight */
};

/*
 * Builds a mapping from a 32-byte key (copied; the caller wipes its own).
 * impl is normally MM_CRYPTOPAN_AUTO; tests and benchmarks force one.
 * Returns 0, MM_ENOMEM, or MM_EUNSUP when MM_CRYPTOPAN_AESNI or _VAES is
 * asked of a CPU without it. Work: 2^16 block encryptions (a table of the
 * flips of the first 16 bits): 2 ms with AES-NI, 20 ms portable.
 */
int mm_cryptopan_new(const uint8_t key[MM_CRYPTOPAN_KEY_LEN], enum mm_cryptopan_impl impl,
		     struct mm_cryptopan **out);

/* Wipes the key schedule and frees; NULL is a no-op. */
void mm_cryptopan_free(struct mm_cryptopan *c);

/* The implementation in use: "vaes", "aesni" or "portable". */
const char *mm_cryptopan_impl_name(const struct mm_cryptopan *c);

/*
 * The pseudonym of in (out may alias in). A v4-mapped address gives a
 * v4-mapped address, an IPv6 address an IPv6 address that is never
 * v4-mapped. Work: 16 AES blocks for IPv4, 112 for IPv6, all independent
 * (about 40 ns and 110 ns with VAES); twice that for the one secret IPv6
 * /96 whose raw image is ::ffff:0:0/96 (docs/pseudonymisation.md).
 */
void mm_cryptopan_anonymize(const struct mm_cryptopan *c, const struct mm_addr *in,
			    struct mm_addr *out);

/*
 * The address whose pseudonym is in (out may alias in): the exact inverse.
 * As many blocks, but each needs the bits the previous ones recovered, so it
 * runs serially: 10 to 30 times slower. For re-identification, not ingest.
 */
void mm_cryptopan_deanonymize(const struct mm_cryptopan *c, const struct mm_addr *in,
			      struct mm_addr *out);

/* Which side(s) of a flow to pseudonymise: a bit set per flow. */
enum mm_cryptopan_side {
	MM_CRYPTOPAN_SRC = 1u << 0,
	MM_CRYPTOPAN_DST = 1u << 1,
};

/*
 * Pseudonymises, in place, flows[i].src when sides[i] has MM_CRYPTOPAN_SRC
 * and flows[i].dst when it has MM_CRYPTOPAN_DST (the policy sets the bit of
 * each domestic side). sides has n entries (borrowed). Other fields,
 * next_hop included, are untouched. Work: linear in n.
 */
void mm_cryptopan_flows(const struct mm_cryptopan *c, struct mm_flow *flows, size_t n,
			const uint8_t *sides);

#endif
