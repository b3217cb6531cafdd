/*
 * RFC 9162 section 2.1 Merkle tree hashing, tree heads and proofs (see
 * merkle.h). Proof generation follows the recursive definitions of 2.1.3.1
 * and 2.1.4.1 over a source of perfect-subtree hashes, so it needs
 * O(log n) lookups and at most O(log^2 n) node hashes, never a rehash.
 */
#include "oversight/merkle.h"

#include "mamori/status.h"

#include <string.h>

void merkle_leaf_hash(const void *data, size_t len, uint8_t out[MERKLE_HASH_LEN])
{
	merkle_sha256(true, 0x00, data, len, out);
}

void merkle_node_hash(const uint8_t left[MERKLE_HASH_LEN], const uint8_t right[MERKLE_HASH_LEN],
		      uint8_t out[MERKLE_HASH_LEN])
{
	uint8_t buf[2 * MERKLE_HASH_LEN];

	memcpy(buf, left, MERKLE_HASH_LEN);
	memcpy(buf + MERKLE_HASH_LEN, right, MERKLE_HASH_LEN);
	merkle_sha256(true, 0x01, buf, sizeof(buf), out);
}

void merkle_stream_init(struct merkle_stream *s)
{
	s->n_leaves = 0;
	s->depth = 0;
}

unsigned merkle_stream_push(struct merkle_stream *s, const uint8_t leaf[MERKLE_HASH_LEN],
			    uint8_t (*completed)[MERKLE_HASH_LEN])
{
	unsigned n_completed = 0;

	MM_BUG(s->depth >= 64);
	memcpy(s->stack[s->depth], leaf, MERKLE_HASH_LEN);
	s->levels[s->depth++] = 0;
	/* Two equal-level subtrees on top merge: the binary counter of n_leaves carrying. */
	while (s->depth >= 2 && s->levels[s->depth - 1] == s->levels[s->depth - 2]) {
		uint8_t *left = s->stack[s->depth - 2];
		merkle_node_hash(left, s->stack[s->depth - 1], left);
		s->levels[s->depth - 2]++;
		s->depth--;
		if (completed)
			memcpy(completed[n_completed], left, MERKLE_HASH_LEN);
		n_completed++;
	}
	s->n_leaves++;
	return n_completed;
}

void merkle_stream_root(const struct merkle_stream *s, uint8_t out[MERKLE_HASH_LEN])
{
	if (s->depth == 0) {
		merkle_sha256(false, 0, "", 0, out);
		return;
	}
	/* The right-most subtrees fold right to left: MTH puts the smaller part on the right. */
	memcpy(out, s->stack[s->depth - 1], MERKLE_HASH_LEN);
	for (unsigned i = s->depth - 1; i-- > 0;)
		merkle_node_hash(s->stack[i], out, out);
}

/* Largest power of two strictly less than n (n >= 2). */
static uint64_t split_point(uint64_t n)
{
	return (uint64_t)1 << (63 - __builtin_clzll(n - 1));
}

/*
 * MTH(D[begin:end]) for a range the RFC recursion produces: begin is a
 * multiple of the smallest power of two >= end - begin, so every perfect
 * part is a stored subtree.
 */
static int range_hash(const struct merkle_source *src, uint64_t begin, uint64_t end,
		      uint8_t out[MERKLE_HASH_LEN])
{
	uint64_t len = end - begin;
	uint8_t left[MERKLE_HASH_LEN];
	int rc;

	if ((len & (len - 1)) == 0) {
		unsigned level = (unsigned)__builtin_ctzll(len);
		return src->get(src->ctx, level, begin >> level, out);
	}
	uint64_t k = split_point(len);
	rc = range_hash(src, begin, begin + k, left);
	if (rc == 0)
		rc = range_hash(src, begin + k, end, out);
	if (rc == 0)
		merkle_node_hash(left, out, out);
	return rc;
}

int merkle_root(const struct merkle_source *src, uint64_t size, uint8_t out[MERKLE_HASH_LEN])
{
	if (size == 0) {
		merkle_sha256(false, 0, "", 0, out);
		return 0;
	}
	return range_hash(src, 0, size, out);
}

/* PATH(m, D[begin:end]) of 2.1.3.1, appended deepest first. */
static int inclusion_path(const struct merkle_source *src, uint64_t m, uint64_t begin,
			  uint64_t end, uint8_t (*proof)[MERKLE_HASH_LEN], size_t *n)
{
	uint64_t k;
	int rc;

	if (end - begin <= 1)
		return 0;
	k = split_point(end - begin);
	if (m < k) {
		rc = inclusion_path(src, m, begin, begin + k, proof, n);
		if (rc == 0)
			rc = range_hash(src, begin + k, end, proof[(*n)++]);
	} else {
		rc = inclusion_path(src, m - k, begin + k, end, proof, n);
		if (rc == 0)
			rc = range_hash(src, begin, begin + k, proof[(*n)++]);
	}
	return rc;
}

int merkle_inclusion_proof(const struct merkle_source *src, uint64_t index, uint64_t size,
			   uint8_t (*proof)[MERKLE_HASH_LEN], size_t *n_proof)
{
	*n_proof = 0;
	if (index >= size)
		return mm_fail(MM_EINVAL, "merkle: leaf index %llu is not below tree size %llu",
			       (unsigned long long)index, (unsigned long long)size);
	return inclusion_path(src, index, 0, size, proof, n_proof);
}

/* SUBPROOF(m, D[begin:end], b) of 2.1.4.1. */
static int consistency_path(const struct merkle_source *src, uint64_t m, uint64_t begin,
			    uint64_t end, bool whole, uint8_t (*proof)[MERKLE_HASH_LEN], size_t *n)
{
	uint64_t k;
	int rc;

	if (m == end - begin) {
		if (whole)
			return 0;
		return range_hash(src, begin, end, proof[(*n)++]);
	}
	k = split_point(end - begin);
	if (m <= k) {
		rc = consistency_path(src, m, begin, begin + k, whole, proof, n);
		if (rc == 0)
			rc = range_hash(src, begin + k, end, proof[(*n)++]);
	} else {
		rc = consistency_path(src, m - k, begin + k, end, false, proof, n);
		if (rc == 0)
			rc = range_hash(src, begin, begin + k, proof[(*n)++]);
	}
	return rc;
}

int merkle_consistency_proof(const struct merkle_source *src, uint64_t size1, uint64_t size2,
			     uint8_t (*proof)[MERKLE_HASH_LEN], size_t *n_proof)
{
	*n_proof = 0;
	if (size1 == 0 || size1 > size2)
		return mm_fail(MM_EINVAL,
			       "merkle: no consistency proof from size %llu to size %llu (need "
			       "0 < size1 <= size2)",
			       (unsigned long long)size1, (unsigned long long)size2);
	return consistency_path(src, size1, 0, size2, true, proof, n_proof);
}

static int mismatch(const char *what)
{
	return mm_fail(MM_EINVAL, "merkle: %s", what);
}

static int wrong_length(const char *what, size_t n_proof, bool too_long, uint64_t a, uint64_t b)
{
	return mm_fail(MM_EINVAL, "merkle: %s proof has %zu hashes, %s than %s %llu and %llu need",
		       what, n_proof, too_long ? "more" : "fewer",
		       what[0] == 'i' ? "leaf index and tree size" : "sizes", (unsigned long long)a,
		       (unsigned long long)b);
}

/*
 * One step of the walks of 2.1.3.2 and 2.1.4.2: p is the left sibling when
 * node fn is a right child or the last node of its level (sn), else the
 * right one. fr (the first tree's root, consistency only) may be NULL.
 */
static void walk_step(uint64_t *fn, uint64_t *sn, const uint8_t p[MERKLE_HASH_LEN], uint8_t *fr,
		      uint8_t sr[MERKLE_HASH_LEN])
{
	if ((*fn & 1) || *fn == *sn) {
		if (fr)
			merkle_node_hash(p, fr, fr);
		merkle_node_hash(p, sr, sr);
		while (!(*fn & 1) && *fn != 0) {
			*fn >>= 1;
			*sn >>= 1;
		}
	} else {
		merkle_node_hash(sr, p, sr);
	}
	*fn >>= 1;
	*sn >>= 1;
}

int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[MERKLE_HASH_LEN],
			    const uint8_t (*proof)[MERKLE_HASH_LEN], size_t n_proof,
			    const uint8_t root[MERKLE_HASH_LEN])
{
	uint64_t fn = index, sn;
	uint8_t r[MERKLE_HASH_LEN];

	if (index >= size)
		return mm_fail(MM_EINVAL, "merkle: leaf index %llu is not below tree size %llu",
			       (unsigned long long)index, (unsigned long long)size);
	sn = size - 1;
	memcpy(r, leaf, MERKLE_HASH_LEN);
	for (size_t i = 0; i < n_proof; i++) {
		if (sn == 0)
			return wrong_length("inclusion", n_proof, true, index, size);
		walk_step(&fn, &sn, proof[i], NULL, r);
	}
	if (sn != 0)
		return wrong_length("inclusion", n_proof, false, index, size);
	if (memcmp(r, root, MERKLE_HASH_LEN) != 0)
		return mismatch("inclusion proof does not lead to the root hash");
	return 0;
}

int merkle_verify_consistency(uint64_t size1, uint64_t size2, const uint8_t root1[MERKLE_HASH_LEN],
			      const uint8_t root2[MERKLE_HASH_LEN],
			      const uint8_t (*proof)[MERKLE_HASH_LEN], size_t n_proof)
{
	uint8_t fr[MERKLE_HASH_LEN], sr[MERKLE_HASH_LEN];
	uint64_t fn, sn;
	size_t i = 0;

	if (size1 == 0)
		return mismatch("no consistency proof from size 0 (every tree extends the empty one)");
	if (size1 > size2)
		return mm_fail(MM_EINVAL, "merkle: size1 %llu is larger than size2 %llu",
			       (unsigned long long)size1, (unsigned long long)size2);
	if (size1 == size2) {
		if (n_proof != 0)
			return mismatch("a consistency proof between equal sizes must be empty");
		if (memcmp(root1, root2, MERKLE_HASH_LEN) != 0)
			return mismatch("equal tree sizes with different root hashes");
		return 0;
	}
	if (n_proof == 0)
		return mismatch("empty consistency proof between different sizes");
	if ((size1 & (size1 - 1)) == 0) {
		/* The first tree is a whole subtree: its root is the proof's implicit first hash. */
		memcpy(fr, root1, MERKLE_HASH_LEN);
	} else {
		memcpy(fr, proof[0], MERKLE_HASH_LEN);
		i = 1;
	}
	memcpy(sr, fr, MERKLE_HASH_LEN);
	fn = size1 - 1;
	sn = size2 - 1;
	while (fn & 1) {
		fn >>= 1;
		sn >>= 1;
	}
	for (; i < n_proof; i++) {
		if (sn == 0)
			return wrong_length("consistency", n_proof, true, size1, size2);
		walk_step(&fn, &sn, proof[i], fr, sr);
	}
	if (sn != 0)
		return wrong_length("consistency", n_proof, false, size1, size2);
	if (memcmp(fr, root1, MERKLE_HASH_LEN) != 0)
		return mismatch("consistency proof does not lead to the first root hash");
	if (memcmp(sr, root2, MERKLE_HASH_LEN) != 0)
		return mismatch("consistency proof does not lead to the second root hash");
	return 0;
}
