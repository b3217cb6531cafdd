/*
 * Ed25519 keys for oversight: panel members, requesters and the system key
 * that signs audit checkpoints. Keys are written in the C2SP signed-note
 * encodings so that standard transparency-log tools can check what mamori
 * signs:
 *   private key  PRIVATE+KEY+<name>+<hash8hex>+<base64(0x01 || 32-byte seed)>
 *   verifier     <name>+<hash8hex>+<base64(0x01 || 32-byte public key)>
 * where hash = first 4 bytes (big-endian) of SHA-256(name || 0x0A || 0x01 || pubkey).
 * Names are 1..MM_KEY_NAME_MAX bytes of printable ASCII without space or '+'
 * (a subset of what signed-note allows, so names never need escaping).
 */
#ifndef MAMORI_KEYS_H
#define MAMORI_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MM_KEY_NAME_MAX 255
#define MM_SIG_LEN 64

struct mm_signer;   /* name, key hash, secret key (opaque; wiped on free) */
struct mm_verifier; /* name, key hash, public key (opaque) */

/*
 * Generates a fresh key pair named name. *private_line and *public_line
 * (malloc'd, no trailing newline) receive the two encodings; the caller
 * frees them (wipe private_line with sodium_memzero first).
 * 0, MM_EINVAL (bad name) or MM_ENOMEM.
 */
int mm_key_generate(const char *name, char **private_line, char **public_line);

/*
 * Generates a key pair and writes it: private_path created new with mode
 * 0600 (MM_EEXIST if it exists: a key is never overwritten), public_path
 * with mode 0644. Each file holds one line ending in '\n'; both are fsync'd.
 * On failure nothing is left behind.
 */
int mm_key_create_files(const char *name, const char *private_path, const char *public_path);

/*
 * Loads a private key file. Refuses (MM_EPERM) a file whose mode grants any
 * group or other permission, so a leaked-by-mode key is never used.
 * *out is owned by the caller (mm_signer_free).
 */
int mm_signer_load(const char *path, struct mm_signer **out);

/* Parses one private key line (a trailing '\n' is allowed). 0 or MM_EFORMAT. */
int mm_signer_parse(const char *line, struct mm_signer **out);

/* Parses one verifier key line (a trailing '\n' is allowed); checks the key hash. */
int mm_verifier_parse(const char *line, struct mm_verifier **out);

/* Loads a verifier key file (one line). */
int mm_verifier_load(const char *path, struct mm_verifier **out);

const char *mm_signer_name(const struct mm_signer *s);
const char *mm_verifier_name(const struct mm_verifier *v);

/* The signed-note key ID: first 4 bytes of SHA-256(name || '\n' || 0x01 || pubkey). */
uint32_t mm_verifier_hash(const struct mm_verifier *v);

/* The raw 32-byte Ed25519 public key (borrowed, lives as long as v). */
const uint8_t *mm_verifier_pubkey(const struct mm_verifier *v);

/* The verifier of a signer (new object, caller frees). */
int mm_signer_verifier(const struct mm_signer *s, struct mm_verifier **out);

/* The verifier's key line (malloc'd, no newline), as in a public key file. */
int mm_verifier_encode(const struct mm_verifier *v, char **out);

/* Ed25519 signature of msg. 0 or MM_EINTERNAL. */
int mm_sign(const struct mm_signer *s, const void *msg, size_t len, uint8_t sig[MM_SIG_LEN]);

/* True when sig is a valid Ed25519 signature of msg by v. */
bool mm_verify(const struct mm_verifier *v, const void *msg, size_t len,
	       const uint8_t sig[MM_SIG_LEN]);

/*
 * Base64 (RFC 4648 standard alphabet, padded), as the signed-note formats use.
 * Decoding is strict: text of exactly len bytes must decode to exactly
 * out_len bytes in canonical form (no whitespace, zero pad bits); else MM_EFORMAT.
 * Encoding writes a NUL-terminated string; out_size >= mm_base64_encoded_len(n).
 */
int mm_base64_decode(const char *text, size_t len, uint8_t *out, size_t out_len);
size_t mm_base64_encoded_len(size_t n);
void mm_base64_encode(const void *data, size_t n, char *out, size_t out_size);

/* Frees s and wipes its secret (sodium_memzero). NULL is allowed. */
void mm_signer_free(struct mm_signer *s);
void mm_verifier_free(struct mm_verifier *v);

#endif
