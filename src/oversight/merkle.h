/*
 * RFC 9162 section 2.1 Merkle trees for the audit log: leaf and node
 * hashing (SHA-256, SHA-NI when the CPU has it), a streaming root over any
 * number of leaves, and inclusion and consistency proofs (generation and
 * verification). Internal to oversight/, also used by the audit CLI, tests,
 * the checkpoint fuzz target and the audit bench.
 */
#ifndef MAMORI_OVERSIGHT_MERKLE_H
#define MAMORI_OVERSIGHT_MERKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MERKLE_HASH_LEN 32
/* A proof in a tree of at most 2^64 - 1 leaves has at most 64 hashes (65 for consistency
 * once the first root is prepended during verification). */
#define MERKLE_PROOF_MAX 64

/* SHA-256 of len bytes, preceded by prefix when has_prefix. Work is linear in len. */
void merkle_sha256(bool has_prefix, uint8_t prefix, const void *data, size_t len,
		   uint8_t out[MERKLE_HASH_LEN]);

/* True when the SHA-NI path is in use (reported by the bench and verify). */
bool merkle_sha_accelerated(void);

/* Leaf hash SHA-256(0x00 || data) and node hash SHA-256(0x01 || left || right). */
void merkle_leaf_hash(const void *data, size_t len, uint8_t out[MERKLE_HASH_LEN]);
void merkle_node_hash(const uint8_t left[MERKLE_HASH_LEN], const uint8_t right[MERKLE_HASH_LEN],
		      uint8_t out[MERKLE_HASH_LEN]);

/* Two leaf hashes at once (interleaved on SHA-NI: nearly twice the rate of two calls). */
void merkle_leaf_hash_pair(const void *a, size_t a_len, const void *b, size_t b_len,
			   uint8_t out_a[MERKLE_HASH_LEN], uint8_t out_b[MERKLE_HASH_LEN]);

/*
 * The root of a growing tree in one pass: a stack of the roots of the
 * perfect subtrees that make up the leaves pushed so far (at most 64), so
 * memory is constant and each push costs amortised one node hash.
 */
struct merkle_stream {
	uint64_t n_leaves;
	uint8_t stack[64][MERKLE_HASH_LEN]; /* stack[i]: subtree of 2^level(i) leaves */
	uint8_t levels[64];
	unsigned depth;
};

void merkle_stream_init(struct merkle_stream *s);
/*
 * Adds a leaf hash. When completed is not NULL, the hashes of the subtrees
 * this leaf completes (levels 1, 2, ...) are copied there, as many as the
 * return value: what the audit log appends to its hash cache.
 */
unsigned merkle_stream_push(struct merkle_stream *s, const uint8_t leaf[MERKLE_HASH_LEN],
			    uint8_t (*completed)[MERKLE_HASH_LEN]);
/* The root of the leaves pushed so far (SHA-256 of "" for none). */
void merkle_stream_root(const struct merkle_stream *s, uint8_t out[MERKLE_HASH_LEN]);

/*
 * Hashes of perfect subtrees, where a proof generator finds them:
 * get(ctx, level, k) fills the hash of leaves [k*2^level, (k+1)*2^level).
 * Returns 0 or a negative status (recorded with mm_fail).
 */
struct merkle_source {
	int (*get)(void *ctx, unsigned level, uint64_t k, uint8_t out[MERKLE_HASH_LEN]);
	void *ctx;
};

/* MTH of leaves [0, size); O(log size) lookups. */
int merkle_root(const struct merkle_source *src, uint64_t size, uint8_t out[MERKLE_HASH_LEN]);

/*
 * RFC 9162 2.1.3.1: the inclusion proof of leaf index in a tree of size
 * leaves (index < size) into proof[MERKLE_PROOF_MAX]; *n_proof its length.
 */
int merkle_inclusion_proof(const struct merkle_source *src, uint64_t index, uint64_t size,
			   uint8_t (*proof)[MERKLE_HASH_LEN], size_t *n_proof);

/* RFC 9162 2.1.4.1: the consistency proof from size1 to size2 (0 < size1 <= size2). */
int merkle_consistency_proof(const struct merkle_source *src, uint64_t size1, uint64_t size2,
			     uint8_t (*proof)[MERKLE_HASH_LEN], size_t *n_proof);

/*
 * RFC 9162 2.1.3.2 and 2.1.4.2. 0 when the proof is valid; MM_EINVAL with
 * the reason (mm_last_error) when not: index out of range, proof too long or
 * too short, size 0, size1 > size2, or a root mismatch.
 */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[MERKLE_HASH_LEN],
			    const uint8_t (*proof)[MERKLE_HASH_LEN], size_t n_proof,
			    const uint8_t root[MERKLE_HASH_LEN]);
int merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[MERKLE_HASH_LEN],
			      const uint8_t root2[MERKLE_HASH_LEN],
			      const uint8_t (*proof)[MERKLE_HASH_LEN], size_t n_proof);

#endif
