/*
 * oversight audit log: the RFC 6962 golden vectors (library and `audit
 * verify-proof`), proof strictness, a property test of generated proofs,
 * SHA-NI against libsodium, C2SP signed notes (the spec's example),
 * checkpoints and cosignatures, batched checkpoints and the lock file's
 * state line (a simulated restart re-derives the caches), tamper tests
 * (every byte flipped, entries dropped, reordered, truncated), torn-write
 * recovery, concurrent appends from threads and processes (killed ones too,
 * durable and deferred), keys, and the oversight report's counts.
 */
#include "mamori/audit.h"
#include "mamori/keys.h"
#include "mamori/status.h"
#include "oversight/audit_int.h"
#include "oversight/merkle.h"
#include "oversight/note.h"
#include "test_util.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ---- */

static void hex_decode(const char *hex, uint8_t *out, size_t n)
{
	cr_assert_eq(strlen(hex), 2 * n, "hex %s is not %zu bytes", hex, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(sscanf(hex + 2 * i, "%2hhx", &out[i]), 1);
}

static void b64(const uint8_t h[32], char out[48])
{
	mm_base64_encode(h, 32, out, 48);
}

static json_t *golden(void)
{
	char *path = tu_shared_path("merkle/golden_8leaf.json");
	json_t *g;

	if (!path)
		cr_skip_test("needs ../shared/data/merkle/golden_8leaf.json (absent in this checkout)");
	g = json_load_file(path, 0, NULL);
	cr_assert(g, "golden_8leaf.json does not parse");
	free(path);
	return g;
}

static void hex_hash(json_t *v, uint8_t out[32])
{
	hex_decode(json_string_value(v), out, 32);
}

/* A tree in memory: subtree hashes computed from the leaf hashes (naively, for tests). */
struct mem_tree {
	uint8_t (*leaves)[32];
	uint64_t n;
};

static void mem_subtree(const struct mem_tree *t, uint64_t begin, uint64_t len, uint8_t out[32])
{
	uint8_t l[32], r[32];

	if (len == 1) {
		memcpy(out, t->leaves[begin], 32);
		return;
	}
	mem_subtree(t, begin, len / 2, l);
	mem_subtree(t, begin + len / 2, len / 2, r);
	merkle_node_hash(l, r, out);
}

static int mem_get(void *ctx, unsigned level, uint64_t k, uint8_t out[32])
{
	const struct mem_tree *t = ctx;
	uint64_t begin = k << level, len = (uint64_t)1 << level;

	if (begin + len > t->n)
		return mm_fail(MM_EINVAL, "mem tree: subtree beyond the leaves");
	mem_subtree(t, begin, len, out);
	return 0;
}

static struct mem_tree golden_tree(json_t *g)
{
	json_t *leaves = json_object_get(g, "leaves_hex");
	struct mem_tree t = { calloc(json_array_size(leaves), 32), json_array_size(leaves) };

	for (size_t i = 0; i < t.n; i++) {
		const char *hex = json_string_value(json_array_get(leaves, i));
		uint8_t data[64];
		size_t len = strlen(hex) / 2;
		hex_decode(hex, data, len);
		merkle_leaf_hash(data, len, t.leaves[i]);
	}
	return t;
}

static size_t proof_from_json(json_t *arr, uint8_t (*proof)[32])
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
		hex_hash(v, proof[i]);
	return json_array_size(arr);
}

/* ---- golden vectors through the library ---- */

Test(merkle, golden_primitives)
{
	json_t *g = golden(), *p;
	uint8_t want[32], got[32], a[16], b[16];
	size_t i;

	json_array_foreach(json_object_get(g, "hash_primitives"), i, p) {
		hex_hash(json_object_get(p, "want"), want);
		if (json_object_get(p, "leaf_hex")) {
			const char *hex = json_string_value(json_object_get(p, "leaf_hex"));
			hex_decode(hex, a, strlen(hex) / 2);
			merkle_leaf_hash(a, strlen(hex) / 2, got);
		} else if (json_object_get(p, "left_hex")) {
			/* Node hash over raw bytes: SHA-256(0x01 || "N123" || "N456"). */
			hex_decode(json_string_value(json_object_get(p, "left_hex")), a, 4);
			hex_decode(json_string_value(json_object_get(p, "right_hex")), b, 4);
			memcpy(a + 4, b, 4);
			merkle_sha256(true, 0x01, a, 8, got);
		} else {
			struct merkle_stream s;
			merkle_stream_init(&s);
			merkle_stream_root(&s, got);
		}
		cr_assert(memcmp(got, want, 32) == 0, "primitive %zu (%s)", i,
			  json_string_value(json_object_get(p, "desc")));
	}
	json_decref(g);
}

Test(merkle, golden_roots_and_nodes)
{
	json_t *g = golden(), *level, *v;
	struct mem_tree t = golden_tree(g);
	struct merkle_source src = { mem_get, &t };
	struct merkle_stream s;
	uint8_t want[32], got[32];
	size_t l, k;

	merkle_stream_init(&s);
	for (uint64_t n = 0; n <= t.n; n++) {
		hex_hash(json_array_get(json_object_get(g, "roots_by_tree_size"), n), want);
		merkle_stream_root(&s, got);
		cr_assert(memcmp(got, want, 32) == 0, "streaming root of size %" PRIu64, n);
		cr_assert_eq(merkle_root(&src, n, got), 0);
		cr_assert(memcmp(got, want, 32) == 0, "root of size %" PRIu64 " from subtrees", n);
		if (n < t.n)
			merkle_stream_push(&s, t.leaves[n], NULL);
	}
	json_array_foreach(json_object_get(g, "node_hashes_by_level"), l, level)
		json_array_foreach(level, k, v) {
			hex_hash(v, want);
			cr_assert_eq(mem_get(&t, (unsigned)l, k, got), 0);
			cr_assert(memcmp(got, want, 32) == 0, "node level %zu index %zu", l, k);
		}
	free(t.leaves);
	json_decref(g);
}

Test(merkle, golden_inclusion_proofs)
{
	json_t *g = golden(), *p;
	struct mem_tree t = golden_tree(g);
	struct merkle_source src = { mem_get, &t };
	uint8_t proof[64][32], gen[64][32], leaf[32], root[32];
	size_t i, n, n_gen;

	json_array_foreach(json_object_get(g, "inclusion_proofs"), i, p) {
		uint64_t idx = json_integer_value(json_object_get(p, "leaf_index"));
		uint64_t size = json_integer_value(json_object_get(p, "tree_size"));
		hex_hash(json_object_get(p, "leaf_hash"), leaf);
		hex_hash(json_object_get(p, "root"), root);
		n = proof_from_json(json_object_get(p, "proof"), proof);
		cr_assert_eq(merkle_verify_inclusion(idx, size, leaf, (const uint8_t(*)[32])proof, n,
						     root),
			     0, "vector %zu: %s", i, mm_last_error());
		cr_assert_eq(merkle_inclusion_proof(&src, idx, size, gen, &n_gen), 0);
		cr_assert_eq(n_gen, n, "vector %zu: generated proof length", i);
		cr_assert(memcmp(gen, proof, n * 32) == 0, "vector %zu: generated proof", i);
		/* Every single-bit change of the proof, leaf or root is refused. */
		for (size_t j = 0; j < n; j++) {
			proof[j][j % 32] ^= 1;
			cr_assert_neq(merkle_verify_inclusion(idx, size, leaf,
							      (const uint8_t(*)[32])proof, n, root),
				      0);
			proof[j][j % 32] ^= 1;
		}
		leaf[31] ^= 0x80;
		cr_assert_neq(merkle_verify_inclusion(idx, size, leaf, (const uint8_t(*)[32])proof, n,
						      root),
			      0);
	}
	free(t.leaves);
	json_decref(g);
}

Test(merkle, golden_consistency_proofs)
{
	json_t *g = golden(), *p;
	struct mem_tree t = golden_tree(g);
	struct merkle_source src = { mem_get, &t };
	uint8_t proof[64][32], gen[64][32], r1[32], r2[32];
	size_t i, n, n_gen;

	json_array_foreach(json_object_get(g, "consistency_proofs"), i, p) {
		uint64_t m = json_integer_value(json_object_get(p, "size1"));
		uint64_t size = json_integer_value(json_object_get(p, "size2"));
		hex_hash(json_object_get(p, "root1"), r1);
		hex_hash(json_object_get(p, "root2"), r2);
		n = proof_from_json(json_object_get(p, "proof"), proof);
		cr_assert_eq(merkle_verify_consistency(m, size, r1, r2, (const uint8_t(*)[32])proof, n),
			     0, "vector %zu: %s", i, mm_last_error());
		cr_assert_eq(merkle_consistency_proof(&src, m, size, gen, &n_gen), 0);
		cr_assert_eq(n_gen, n, "vector %zu: generated proof length", i);
		cr_assert(memcmp(gen, proof, n * 32) == 0, "vector %zu: generated proof", i);
		r1[0] ^= 1;
		cr_assert_neq(merkle_verify_consistency(m, size, r1, r2, (const uint8_t(*)[32])proof,
							n),
			      0, "vector %zu with a changed first root", i);
		r1[0] ^= 1;
		r2[5] ^= 4;
		cr_assert_neq(merkle_verify_consistency(m, size, r1, r2, (const uint8_t(*)[32])proof,
							n),
			      0, "vector %zu with a changed second root", i);
	}
	free(t.leaves);
	json_decref(g);
}

/* ---- strictness ---- */

Test(merkle, strictness)
{
	json_t *g = golden();
	struct mem_tree t = golden_tree(g);
	struct merkle_source src = { mem_get, &t };
	uint8_t proof[65][32], root8[32], root4[32], root0[32];
	size_t n;

	cr_assert_eq(merkle_root(&src, 8, root8), 0);
	cr_assert_eq(merkle_root(&src, 4, root4), 0);
	cr_assert_eq(merkle_root(&src, 0, root0), 0);
	cr_assert_eq(merkle_inclusion_proof(&src, 3, 8, proof, &n), 0);
	cr_assert_eq(n, 3);
	/* One hash too many or too few. */
	memcpy(proof[3], proof[2], 32);
	cr_assert_neq(merkle_verify_inclusion(3, 8, t.leaves[3], (const uint8_t(*)[32])proof, 4, root8), 0);
	cr_assert_neq(merkle_verify_inclusion(3, 8, t.leaves[3], (const uint8_t(*)[32])proof, 2, root8), 0);
	cr_assert_eq(merkle_verify_inclusion(3, 8, t.leaves[3], (const uint8_t(*)[32])proof, 3, root8), 0);
	/* Leaf index not below the tree size. */
	cr_assert_neq(merkle_verify_inclusion(8, 8, t.leaves[3], (const uint8_t(*)[32])proof, 3, root8), 0);
	cr_assert_neq(merkle_inclusion_proof(&src, 8, 8, proof, &n), 0);
	cr_assert_neq(merkle_verify_inclusion(0, 0, root0, (const uint8_t(*)[32])proof, 0, root0), 0);
	/* No consistency proof from size 0, nor from a larger tree. */
	cr_assert_neq(merkle_verify_consistency(0, 8, root0, root8, (const uint8_t(*)[32])proof, 0), 0);
	cr_assert_neq(merkle_consistency_proof(&src, 0, 8, proof, &n), 0);
	cr_assert_neq(merkle_consistency_proof(&src, 8, 4, proof, &n), 0);
	cr_assert_eq(merkle_consistency_proof(&src, 4, 8, proof, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_neq(merkle_verify_consistency(8, 4, root8, root4, (const uint8_t(*)[32])proof, 1), 0);
	cr_assert_eq(merkle_verify_consistency(4, 8, root4, root8, (const uint8_t(*)[32])proof, 1), 0);
	memcpy(proof[1], proof[0], 32);
	cr_assert_neq(merkle_verify_consistency(4, 8, root4, root8, (const uint8_t(*)[32])proof, 2), 0);
	cr_assert_neq(merkle_verify_consistency(4, 8, root4, root8, (const uint8_t(*)[32])proof, 0), 0);
	/* Equal sizes: an empty proof and equal roots, nothing else. */
	cr_assert_eq(merkle_verify_consistency(8, 8, root8, root8, (const uint8_t(*)[32])proof, 0), 0);
	cr_assert_neq(merkle_verify_consistency(8, 8, root8, root8, (const uint8_t(*)[32])proof, 1), 0);
	cr_assert_neq(merkle_verify_consistency(8, 8, root8, root4, (const uint8_t(*)[32])proof, 0), 0);
	free(t.leaves);
	json_decref(g);
}

/* ---- property test over random sizes ---- */

static uint64_t rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

Test(merkle, property_random_sizes)
{
	uint64_t seed = 42;
	uint8_t proof[64][32], root[32], r1[32];
	struct mem_tree t = { calloc(600, 32), 600 };
	struct merkle_source src = { mem_get, &t };
	size_t n;

	for (uint64_t i = 0; i < t.n; i++) {
		char e[32];
		int len = snprintf(e, sizeof(e), "{\"i\":%" PRIu64 "}", i);
		merkle_leaf_hash(e, (size_t)len, t.leaves[i]);
	}
	for (int round = 0; round < 60; round++) {
		uint64_t size = 1 + rng(&seed) % t.n;
		cr_assert_eq(merkle_root(&src, size, root), 0);
		for (int j = 0; j < 8; j++) {
			uint64_t idx = rng(&seed) % size, m = 1 + rng(&seed) % size;
			cr_assert_eq(merkle_inclusion_proof(&src, idx, size, proof, &n), 0);
			cr_assert_eq(merkle_verify_inclusion(idx, size, t.leaves[idx],
							     (const uint8_t(*)[32])proof, n, root),
				     0, "size %" PRIu64 " leaf %" PRIu64 ": %s", size, idx,
				     mm_last_error());
			if (n > 0) {
				size_t k = rng(&seed) % n;
				proof[k][rng(&seed) % 32] ^= (uint8_t)(1u << (rng(&seed) % 8));
				cr_assert_neq(merkle_verify_inclusion(idx, size, t.leaves[idx],
								      (const uint8_t(*)[32])proof, n,
								      root),
					      0);
			}
			if (size > 1)
				cr_assert_neq(merkle_verify_inclusion((idx + 1) % size, size,
								      t.leaves[idx],
								      (const uint8_t(*)[32])proof, n,
								      root),
					      0);
			cr_assert_eq(merkle_root(&src, m, r1), 0);
			cr_assert_eq(merkle_consistency_proof(&src, m, size, proof, &n), 0);
			cr_assert_eq(merkle_verify_consistency(m, size, r1, root,
							       (const uint8_t(*)[32])proof, n),
				     0, "%" PRIu64 " -> %" PRIu64 ": %s", m, size, mm_last_error());
			if (n > 0) {
				proof[rng(&seed) % n][rng(&seed) % 32] ^= 0x10;
				cr_assert_neq(merkle_verify_consistency(m, size, r1, root,
									(const uint8_t(*)[32])proof, n),
					      0, "perturbed %" PRIu64 " -> %" PRIu64, m, size);
			}
		}
	}
	free(t.leaves);
}

Test(merkle, sha256_matches_libsodium)
{
	uint8_t data[1200], got[32], want[32];
	uint64_t seed = 7;
	crypto_hash_sha256_state st;

	cr_assert_geq(sodium_init(), 0);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)rng(&seed);
	for (size_t len = 0; len <= sizeof(data); len += (len < 200 ? 1 : 37)) {
		merkle_sha256(false, 0, data, len, got);
		crypto_hash_sha256(want, data, len);
		cr_assert(memcmp(got, want, 32) == 0, "plain length %zu", len);
		merkle_sha256(true, 0x5a, data, len, got);
		crypto_hash_sha256_init(&st);
		crypto_hash_sha256_update(&st, (const uint8_t *)"\x5a", 1);
		crypto_hash_sha256_update(&st, data, len);
		crypto_hash_sha256_final(&st, want);
		cr_assert(memcmp(got, want, 32) == 0, "prefixed length %zu", len);
	}
	/* Two leaves hashed interleaved equal two single hashes, for every pair of lengths. */
	for (size_t a = 0; a < 300; a += 7)
		for (size_t b = 0; b < 300; b += 11) {
			uint8_t pa[32], pb[32], sa[32], sb[32];
			merkle_leaf_hash_pair(data, a, data + 500, b, pa, pb);
			merkle_leaf_hash(data, a, sa);
			merkle_leaf_hash(data + 500, b, sb);
			cr_assert(memcmp(pa, sa, 32) == 0 && memcmp(pb, sb, 32) == 0,
				  "pair of lengths %zu and %zu", a, b);
		}
}

/* ---- golden vectors through `mamori audit verify-proof` ---- */

static int run_verify_proof(const char *kind, const char *a1, const char *v1, const char *a2,
			    const char *v2, const char *a3, const char *v3, const char *a4,
			    const char *v4, const char *proof, char **err)
{
	const char *argv[] = { tu_mamori_bin(), "audit", "verify-proof", kind, a1, v1, a2, v2,
			       a3, v3, a4, v4, "--proof", proof, NULL };
	return tu_run(argv, NULL, NULL, err);
}

static void join_proof(json_t *arr, char *out, size_t size, int flip)
{
	size_t i, used = 0;
	json_t *v;
	uint8_t h[32];
	char s[48];

	out[0] = '\0';
	json_array_foreach(arr, i, v) {
		hex_hash(v, h);
		if ((int)i == flip)
			h[0] ^= 1;
		b64(h, s);
		used += (size_t)snprintf(out + used, size - used, "%s%s", i ? "," : "", s);
	}
}

Test(audit_cli, golden_vectors_through_verify_proof)
{
	json_t *g = golden(), *p;
	char proof[2048], bad[2048], idx[24], size[24], leaf[48], root[48], *err = NULL;
	uint8_t h[32];
	size_t i;

	json_array_foreach(json_object_get(g, "inclusion_proofs"), i, p) {
		snprintf(idx, sizeof(idx), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(p, "leaf_index")));
		snprintf(size, sizeof(size), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(p, "tree_size")));
		hex_hash(json_object_get(p, "leaf_hash"), h);
		b64(h, leaf);
		hex_hash(json_object_get(p, "root"), h);
		b64(h, root);
		join_proof(json_object_get(p, "proof"), proof, sizeof(proof), -1);
		join_proof(json_object_get(p, "proof"), bad, sizeof(bad), 0);
		cr_assert_eq(run_verify_proof("--inclusion", "--leaf-index", idx, "--tree-size", size,
					      "--leaf-hash", leaf, "--root", root, proof, &err),
			     0, "inclusion vector %zu: %s", i, err);
		free(err);
		cr_assert_eq(run_verify_proof("--inclusion", "--leaf-index", idx, "--tree-size", size,
					      "--leaf-hash", leaf, "--root", root, bad, &err),
			     1, "perturbed inclusion vector %zu", i);
		cr_assert(strstr(err, "INVALID"), "reason printed: %s", err);
		free(err);
	}
	json_array_foreach(json_object_get(g, "consistency_proofs"), i, p) {
		snprintf(idx, sizeof(idx), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(p, "size1")));
		snprintf(size, sizeof(size), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(json_object_get(p, "size2")));
		hex_hash(json_object_get(p, "root1"), h);
		b64(h, leaf);
		hex_hash(json_object_get(p, "root2"), h);
		b64(h, root);
		join_proof(json_object_get(p, "proof"), proof, sizeof(proof), -1);
		cr_assert_eq(run_verify_proof("--consistency", "--size1", idx, "--size2", size,
					      "--root1", leaf, "--root2", root, proof, &err),
			     0, "consistency vector %zu: %s", i, err);
		free(err);
		if (json_array_size(json_object_get(p, "proof")) > 0) {
			join_proof(json_object_get(p, "proof"), bad, sizeof(bad), 0);
			cr_assert_eq(run_verify_proof("--consistency", "--size1", idx, "--size2",
						      size, "--root1", leaf, "--root2", root, bad,
						      &err),
				     1, "perturbed consistency vector %zu", i);
			free(err);
		}
	}
	json_decref(g);
}

Test(audit_cli, verify_proof_strictness)
{
	json_t *g = golden(), *p = json_array_get(json_object_get(g, "inclusion_proofs"), 0);
	json_t *c = json_array_get(json_object_get(g, "consistency_proofs"), 1);
	char proof[2048], leaf[48], root[48], shortb[48], longer[2200], *err = NULL;
	uint8_t h[33] = { 0 };

	hex_hash(json_object_get(p, "leaf_hash"), h);
	b64(h, leaf);
	hex_hash(json_object_get(p, "root"), h);
	b64(h, root);
	join_proof(json_object_get(p, "proof"), proof, sizeof(proof), -1);
	/* A 31-byte and a 33-byte "hash". */
	mm_base64_encode(h, 31, shortb, sizeof(shortb));
	cr_assert_eq(run_verify_proof("--inclusion", "--leaf-index", "0", "--tree-size", "8",
				      "--leaf-hash", shortb, "--root", root, proof, &err),
		     1);
	cr_assert(strstr(err, "32 bytes"), "%s", err);
	free(err);
	mm_base64_encode(h, 33, longer, sizeof(longer));
	cr_assert_eq(run_verify_proof("--inclusion", "--leaf-index", "0", "--tree-size", "8",
				      "--leaf-hash", leaf, "--root", longer, proof, &err),
		     1);
	free(err);
	/* One proof hash too many, one too few. */
	snprintf(longer, sizeof(longer), "%s,%s", proof, root);
	cr_assert_eq(run_verify_proof("--inclusion", "--leaf-index", "0", "--tree-size", "8",
				      "--leaf-hash", leaf, "--root", root, longer, &err),
		     1);
	cr_assert(strstr(err, "more than"), "%s", err);
	free(err);
	*strrchr(proof, ',') = '\0';
	cr_assert_eq(run_verify_proof("--inclusion", "--leaf-index", "0", "--tree-size", "8",
				      "--leaf-hash", leaf, "--root", root, proof, &err),
		     1);
	cr_assert(strstr(err, "fewer than"), "%s", err);
	free(err);
	/* Leaf index equal to the tree size. */
	join_proof(json_object_get(p, "proof"), proof, sizeof(proof), -1);
	cr_assert_eq(run_verify_proof("--inclusion", "--leaf-index", "8", "--tree-size", "8",
				      "--leaf-hash", leaf, "--root", root, proof, &err),
		     1);
	free(err);
	/* Consistency from size 0. */
	join_proof(json_object_get(c, "proof"), proof, sizeof(proof), -1);
	cr_assert_eq(run_verify_proof("--consistency", "--size1", "0", "--size2", "8", "--root1",
				      leaf, "--root2", root, proof, &err),
		     1);
	cr_assert(strstr(err, "size 0"), "%s", err);
	free(err);
	json_decref(g);
}

/* ---- keys ---- */

Test(keys, files_modes_and_round_trip)
{
	char *dir = tu_tmpdir(), priv[512], pub[512];
	struct mm_signer *s = NULL;
	struct mm_verifier *v = NULL, *v2 = NULL;
	uint8_t sig[64];
	char *line = NULL;

	snprintf(priv, sizeof(priv), "%s/k.key", dir);
	snprintf(pub, sizeof(pub), "%s/k.pub", dir);
	cr_assert_eq(mm_key_create_files("example.org/panel-1", priv, pub), 0, "%s", mm_last_error());
	cr_assert_eq(mm_key_create_files("example.org/panel-1", priv, pub), MM_EEXIST);
	cr_assert_eq(mm_signer_load(priv, &s), 0, "%s", mm_last_error());
	cr_assert_eq(mm_verifier_load(pub, &v), 0, "%s", mm_last_error());
	cr_assert_str_eq(mm_signer_name(s), "example.org/panel-1");
	cr_assert_eq(mm_sign(s, "abc", 3, sig), 0);
	cr_assert(mm_verify(v, "abc", 3, sig));
	cr_assert(!mm_verify(v, "abd", 3, sig));
	cr_assert_eq(mm_signer_verifier(s, &v2), 0);
	cr_assert_eq(mm_verifier_hash(v2), mm_verifier_hash(v));
	cr_assert_eq(mm_verifier_encode(v, &line), 0);
	mm_verifier_free(v2);
	cr_assert_eq(mm_verifier_parse(line, &v2), 0);
	mm_verifier_free(v2);
	/* A changed key hash is refused; a group-readable private key is refused. */
	line[strlen("example.org/panel-1+")] ^= 1;
	cr_assert_neq(mm_verifier_parse(line, &v2), 0);
	free(line);
	mm_signer_free(s);
	chmod(priv, 0640);
	cr_assert_eq(mm_signer_load(priv, &s), MM_EPERM);
	cr_assert_null(s);
	cr_assert(strstr(mm_last_error(), "0640"), "%s", mm_last_error());
	cr_assert_neq(mm_verifier_parse("bad name+00000000+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
					&v2),
		      0);
	mm_verifier_free(v);
	free(dir);
}

Test(keys, base64_is_strict)
{
	uint8_t out[32];
	/* 44 characters that libsodium alone would take: two non-alphabet bytes inside. */
	const char *odd = "V4Y0bVEUzNqMhWPWkh8OK8hdvuR6cbpe8\xd5\xbdq/mpuD7I=";
	const char *good = "V4Y0bVEUzNqMhWPWkhxOK8hdvuR6cbpe8+Dq/mpuD7I=";
	const char *pad_bits = "V4Y0bVEUzNqMhWPWkhxOK8hdvuR6cbpe8+Dq/mpuD7J=";

	cr_assert_eq(mm_base64_decode(good, strlen(good), out, 32), 0);
	cr_assert_eq(mm_base64_decode(odd, strlen(odd), out, 32), MM_EFORMAT);
	cr_assert_eq(mm_base64_decode(pad_bits, strlen(pad_bits), out, 32), MM_EFORMAT);
	cr_assert_eq(mm_base64_decode(good, strlen(good) - 1, out, 32), MM_EFORMAT);
	cr_assert_eq(mm_base64_decode(good, strlen(good), out, 31), MM_EFORMAT);
}

/* ---- signed notes ---- */

Test(note, c2sp_example_verifies)
{
	char *path = tu_shared_path("signed-note/c2sp_signed_note_example.json");
	json_t *ex;
	struct mm_verifier *v = NULL;
	struct note note;
	char *text;
	size_t len;

	if (!path)
		cr_skip_test("needs ../shared/data/signed-note/c2sp_signed_note_example.json");
	ex = json_load_file(path, 0, NULL);
	cr_assert(ex);
	cr_assert_eq(mm_verifier_parse(json_string_value(json_object_get(ex, "vkey")), &v), 0, "%s",
		     mm_last_error());
	text = strdup(json_string_value(json_object_get(ex, "signed_note")));
	len = strlen(text);
	cr_assert_eq(note_parse(text, len, &note), 0, "%s", mm_last_error());
	cr_assert_eq(note.text_len, strlen(json_string_value(json_object_get(ex, "note_text"))));
	cr_assert_eq(note_verify(&note, v), 0, "%s", mm_last_error());
	note_free(&note);
	/* One changed character of the text: the signature no longer verifies. */
	text[0] = 't';
	cr_assert_eq(note_parse(text, len, &note), 0);
	cr_assert_eq(note_verify(&note, v), MM_EPERM);
	note_free(&note);
	/* Control characters and a missing blank line are refused by the parser. */
	text[3] = '\t';
	cr_assert_eq(note_parse(text, len, &note), MM_EFORMAT);
	free(text);
	json_decref(ex);
	mm_verifier_free(v);
	free(path);
}

/* ---- the log ---- */

static char *entry_text(uint64_t i, char *buf, size_t size)
{
	/* About 300 bytes, like a real audit entry. */
	snprintf(buf, size,
		 "{\"v\":1,\"time\":\"2026-11-22T08:%02d:%02d.000000001Z\",\"mode\":\"enforced\","
		 "\"actor\":\"analyst-%" PRIu64 "\",\"act\":\"query\",\"outcome\":\"allowed\","
		 "\"authz\":\"A-2026-%04" PRIu64 "\",\"kind\":\"analyze\",\"legal_basis\":\"art-12\","
		 "\"purpose\":\"incident\",\"emergency\":false,\"reason\":null,\"detail\":{\"query\":"
		 "\"dst port 22 and src net 198.51.100.0/24\",\"rows\":%" PRIu64 "}}",
		 (int)(i / 60 % 60), (int)(i % 60), i % 7, i % 50, i * 13);
	return buf;
}

static void append_n(struct mm_audit_log *log, uint64_t n)
{
	char buf[512];

	for (uint64_t i = 0; i < n; i++) {
		uint64_t idx;
		entry_text(mm_audit_size(log), buf, sizeof(buf));
		cr_assert_eq(mm_audit_append(log, buf, strlen(buf), &idx), 0, "%s", mm_last_error());
	}
}

static char *make_log(uint64_t n)
{
	char *dir = tu_tmpdir();
	struct mm_audit_log *log = NULL;

	cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
	append_n(log, n);
	cr_assert_eq(mm_audit_close(log), 0, "%s", mm_last_error());
	return dir;
}

static void verify_ok(const char *dir)
{
	struct mm_audit_verify_result r;

	cr_assert_eq(mm_audit_verify(dir, NULL, NULL, 0, &r), 0, "%s", mm_last_error());
	cr_assert(r.ok, "verify: %s", r.problem);
}

static struct mm_audit_verify_result verify_bad(const char *dir)
{
	struct mm_audit_verify_result r;

	cr_assert_eq(mm_audit_verify(dir, NULL, NULL, 0, &r), 0, "%s", mm_last_error());
	cr_assert(!r.ok, "verify passed a damaged log");
	cr_assert_gt(strlen(r.problem), 0);
	return r;
}

static char *file_of(const char *dir, const char *name)
{
	char *p;

	cr_assert_geq(asprintf(&p, "%s/audit/%s", dir, name), 0);
	return p;
}

Test(audit, append_verify_and_proofs)
{
	char *dir = make_log(37), buf[512];
	struct mm_audit_log *log = NULL;
	struct merkle_stream s;
	uint8_t root[32], want[32], leaf[32], proof[64][32];
	size_t n;

	verify_ok(dir);
	cr_assert_eq(mm_audit_open_existing(dir, &log), 0);
	cr_assert_eq(mm_audit_size(log), 37);
	/* The root from the stored hashes equals a root computed independently from the texts. */
	merkle_stream_init(&s);
	for (uint64_t i = 0; i < 37; i++) {
		char *json;
		entry_text(i, buf, sizeof(buf));
		cr_assert_eq(mm_audit_read(log, i, &json, NULL), 0);
		cr_assert_str_eq(json, buf);
		free(json);
		merkle_leaf_hash(buf, strlen(buf), leaf);
		merkle_stream_push(&s, leaf, NULL);
		merkle_stream_root(&s, want);
		cr_assert_eq(mm_audit_root(log, i + 1, root), 0);
		cr_assert(memcmp(root, want, 32) == 0, "root of size %" PRIu64, i + 1);
	}
	for (uint64_t i = 0; i < 37; i++) {
		cr_assert_eq(mm_audit_leaf_hash(log, i, leaf), 0);
		cr_assert_eq(mm_audit_inclusion_proof(log, i, 37, proof, &n), 0);
		cr_assert_eq(merkle_verify_inclusion(i, 37, leaf, (const uint8_t(*)[32])proof, n, root),
			     0, "entry %" PRIu64 ": %s", i, mm_last_error());
		if (i > 0) {
			cr_assert_eq(mm_audit_root(log, i, want), 0);
			cr_assert_eq(mm_audit_consistency_proof(log, i, 37, proof, &n), 0);
			cr_assert_eq(merkle_verify_consistency(i, 37, want, root,
							       (const uint8_t(*)[32])proof, n),
				     0);
		}
	}
	mm_audit_close(log);
	free(dir);
}

Test(audit, refuses_non_json_lines)
{
	char *dir = tu_tmpdir();
	struct mm_audit_log *log = NULL;

	cr_assert_eq(mm_audit_open(dir, &log), 0);
	cr_assert_eq(mm_audit_append(log, "{\"a\":1}\n{\"b\":2}", 15, NULL), MM_EINVAL);
	cr_assert_eq(mm_audit_append(log, "hello", 5, NULL), MM_EINVAL);
	cr_assert_eq(mm_audit_size(log), 0);
	mm_audit_close(log);
	free(dir);
}

/* Flips every byte of file name in turn (or only `step`-spaced ones), each verify must fail. */
static void flip_each(const char *dir, const char *name, size_t step, uint64_t *seed)
{
	char *path = file_of(dir, name);
	size_t len;
	char *orig = tu_read_file(path, &len);

	cr_assert(orig, "read %s", path);
	for (size_t i = 0; i < len; i += seed ? 1 + rng(seed) % step : step) {
		uint8_t bit = seed ? (uint8_t)(1u << (rng(seed) % 8)) : 0x01;
		orig[i] ^= (char)bit;
		cr_assert_eq(tu_write_file(path, orig, len), 0);
		struct mm_audit_verify_result r;
		cr_assert_eq(mm_audit_verify(dir, NULL, NULL, 0, &r), 0, "%s", mm_last_error());
		cr_assert(!r.ok, "%s: flipped byte %zu (bit %02x) was not detected", name, i, bit);
		orig[i] ^= (char)bit;
	}
	cr_assert_eq(tu_write_file(path, orig, len), 0);
	verify_ok(dir);
	free(orig);
	free(path);
}

Test(audit, tamper_every_byte_of_a_small_log)
{
	char *dir = make_log(5), cp[64];

	flip_each(dir, "entries", 1, NULL);
	flip_each(dir, "index", 1, NULL);
	flip_each(dir, "hashes", 1, NULL);
	snprintf(cp, sizeof(cp), "checkpoints/%020d", 5);
	flip_each(dir, cp, 1, NULL);
	free(dir);
}

Test(audit, tamper_random_bytes_of_a_larger_log)
{
	char *dir = make_log(300);
	uint64_t seed = 99;

	flip_each(dir, "entries", 800, &seed);
	flip_each(dir, "hashes", 700, &seed);
	free(dir);
}

Test(audit, tamper_names_the_entry)
{
	char *dir = make_log(6), *path = file_of(dir, "entries");
	size_t len;
	char *orig = tu_read_file(path, &len), want[128];
	uint64_t off = AUDIT_FILE_HEADER;

	/* Flip one payload byte in each record: the problem names that entry and its offset. */
	for (uint64_t i = 0; i < 6; i++) {
		uint32_t rlen = get_le32((uint8_t *)orig + off);
		orig[off + AUDIT_REC_HEADER + rlen / 2] ^= 0x20;
		tu_write_file(path, orig, len);
		struct mm_audit_verify_result r = verify_bad(dir);
		snprintf(want, sizeof(want), "entry %" PRIu64 " at byte %" PRIu64 ":", i, off);
		cr_assert(strstr(r.problem, want), "want '%s' in '%s'", want, r.problem);
		orig[off + AUDIT_REC_HEADER + rlen / 2] ^= 0x20;
		off += AUDIT_REC_HEADER + rlen;
	}
	tu_write_file(path, orig, len);
	verify_ok(dir);
	free(orig);
	free(path);
	free(dir);
}

/* The byte ranges of each record in the entries file. */
static size_t record_bounds(const char *buf, size_t len, uint64_t *starts)
{
	size_t n = 0;

	for (uint64_t off = AUDIT_FILE_HEADER; off < len; n++) {
		starts[n] = off;
		off += AUDIT_REC_HEADER + get_le32((const uint8_t *)buf + off);
	}
	starts[n] = len;
	return n;
}

Test(audit, drop_reorder_truncate)
{
	char *dir = make_log(6), *path = file_of(dir, "entries"), *orig, *mod;
	uint64_t st[16];
	size_t len, n, l1, l2;
	struct mm_audit_verify_result r;

	orig = tu_read_file(path, &len);
	n = record_bounds(orig, len, st);
	cr_assert_eq(n, 6);
	mod = malloc(len);
	/* Drop entry 2. */
	memcpy(mod, orig, st[2]);
	memcpy(mod + st[2], orig + st[3], len - st[3]);
	tu_write_file(path, mod, len - (st[3] - st[2]));
	r = verify_bad(dir);
	cr_assert(strstr(r.problem, "entry 2 at byte") && strstr(r.problem, "index 3"), "%s",
		  r.problem);
	/* Swap entries 3 and 4. */
	l1 = st[4] - st[3];
	l2 = st[5] - st[4];
	memcpy(mod, orig, len);
	memcpy(mod + st[3], orig + st[4], l2);
	memcpy(mod + st[3] + l2, orig + st[3], l1);
	tu_write_file(path, mod, len);
	r = verify_bad(dir);
	cr_assert(strstr(r.problem, "entry 3 at byte") && strstr(r.problem, "index 4"), "%s",
		  r.problem);
	/* Cut in the middle of entry 4. */
	tu_write_file(path, orig, st[4] + 30);
	r = verify_bad(dir);
	cr_assert(strstr(r.problem, "entry 4 at byte") && strstr(r.problem, "truncated"), "%s",
		  r.problem);
	/* Cut after entry 3: the checkpoint covers entries that are gone. */
	tu_write_file(path, orig, st[4]);
	r = verify_bad(dir);
	cr_assert(strstr(r.problem, "index") || strstr(r.problem, "covers 6"), "%s", r.problem);
	tu_write_file(path, orig, len);
	verify_ok(dir);
	free(orig);
	free(mod);
	free(path);
	free(dir);
}

Test(audit, torn_tail_is_recovered_on_open)
{
	char *dir = make_log(10), *path = file_of(dir, "entries"), *orig, rec[512];
	size_t len;
	struct mm_audit_log *log = NULL;
	struct mm_audit_recovery rv;
	struct mm_audit_verify_result r;
	uint8_t hdr[AUDIT_REC_HEADER];

	orig = tu_read_file(path, &len);
	/* A torn append of entry 10: its header and half its payload reached the disk. */
	entry_text(10, rec, sizeof(rec));
	put_le32(hdr, (uint32_t)strlen(rec));
	put_le32(hdr + 4, 0x12345678);
	put_le64(hdr + 8, 10);
	orig = realloc(orig, len + sizeof(hdr) + 100);
	memcpy(orig + len, hdr, sizeof(hdr));
	memcpy(orig + len + sizeof(hdr), rec, 100);
	tu_write_file(path, orig, len + sizeof(hdr) + 100);
	r = verify_bad(dir);
	cr_assert(strstr(r.problem, "entry 10 at byte") && strstr(r.problem, "truncated"), "%s",
		  r.problem);
	cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
	mm_audit_recovery(log, &rv);
	cr_assert_eq(rv.dropped_records, 1);
	cr_assert_eq(rv.dropped_bytes, sizeof(hdr) + 100);
	cr_assert_eq(rv.dropped_at, len);
	cr_assert_eq(mm_audit_size(log), 10);
	append_n(log, 2);
	cr_assert_eq(mm_audit_close(log), 0);
	verify_ok(dir);

	/* Garbage appended (a torn write of unrelated bytes): dropped, every entry kept. */
	free(orig);
	orig = tu_read_file(path, &len);
	orig = realloc(orig, len + 37);
	for (int i = 0; i < 37; i++)
		orig[len + i] = (char)(0x5a ^ i);
	tu_write_file(path, orig, len + 37);
	cr_assert_eq(mm_audit_open(dir, &log), 0);
	mm_audit_recovery(log, &rv);
	cr_assert_eq(rv.dropped_bytes, 37);
	cr_assert_eq(mm_audit_size(log), 12);
	cr_assert_eq(mm_audit_close(log), 0);
	verify_ok(dir);
	free(orig);
	free(path);
	free(dir);
}

Test(audit, caches_behind_the_entries_are_rebuilt)
{
	char *dir = make_log(9), *ipath, *hpath, *ibuf, *hbuf;
	size_t ilen, hlen;
	struct mm_audit_log *log = NULL;
	struct mm_audit_recovery rv;

	/* A crash after the entries' fsync but before the caches were written. */
	ipath = file_of(dir, "index");
	hpath = file_of(dir, "hashes");
	ibuf = tu_read_file(ipath, &ilen);
	hbuf = tu_read_file(hpath, &hlen);
	tu_write_file(ipath, ibuf, AUDIT_FILE_HEADER + 5 * 8);
	tu_write_file(hpath, hbuf, AUDIT_FILE_HEADER + audit_stored_count(4) * 32 + 32);
	verify_bad(dir);
	cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
	mm_audit_recovery(log, &rv);
	/* The caches still hold 5 entries (index rows and post-order hashes); 4 are rebuilt. */
	cr_assert_eq(rv.rebuilt, 4, "rebuilt %" PRIu64, rv.rebuilt);
	cr_assert_eq(rv.dropped_records, 0);
	cr_assert_eq(mm_audit_size(log), 9);
	mm_audit_close(log);
	verify_ok(dir);
	free(ibuf);
	free(hbuf);
	free(ipath);
	free(hpath);
	free(dir);
}

/* Replaces the checkpoint at size with text signed by key (same name as the system key). */
static void resign_checkpoint(const char *dir, uint64_t size, const char *text_override)
{
	char *priv = NULL, *pub = NULL, *sig = NULL, *text = NULL, name[64], *path;
	struct mm_signer *s = NULL;
	struct note note;
	size_t len;
	FILE *fp;

	snprintf(name, sizeof(name), "checkpoints/%020" PRIu64, size);
	path = file_of(dir, name);
	text = tu_read_file(path, &len);
	cr_assert_eq(note_parse(text, len, &note), 0);
	cr_assert_eq(mm_key_generate("mamori-system", &priv, &pub), 0);
	cr_assert_eq(mm_signer_parse(priv, &s), 0);
	if (text_override) {
		cr_assert_eq(note_sign(s, text_override, strlen(text_override), &sig), 0);
	} else {
		cr_assert_eq(note_sign(s, note.text, note.text_len, &sig), 0);
	}
	fp = fopen(path, "w");
	if (text_override)
		fprintf(fp, "%s\n%s", text_override, sig);
	else
		fprintf(fp, "%.*s\n%s", (int)note.text_len, note.text, sig);
	fclose(fp);
	note_free(&note);
	mm_signer_free(s);
	free(priv);
	free(pub);
	free(sig);
	free(text);
	free(path);
}

/* The tree sizes of the checkpoint files, ascending. */
static size_t checkpoint_sizes(const char *dir, uint64_t *sizes, size_t cap)
{
	uint64_t *all = NULL;
	size_t n = 0;

	cr_assert_eq(audit_list_checkpoints(dir, &all, &n), 0, "%s", mm_last_error());
	cr_assert_leq(n, cap);
	memcpy(sizes, all, n * sizeof(*all));
	free(all);
	return n;
}

/* Opens dir, sets the checkpoint policy, appends n entries and closes. */
static void append_and_close(const char *dir, uint64_t n, uint64_t entries, uint64_t seconds)
{
	struct mm_audit_log *log = NULL;

	cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
	mm_audit_set_checkpoint_policy(log, entries, seconds);
	append_n(log, n);
	cr_assert_eq(mm_audit_close(log), 0, "%s", mm_last_error());
}

Test(audit, checkpoints_are_batched)
{
	char *dir = tu_tmpdir(), *sys = NULL;
	uint64_t s[16];
	struct mm_audit_verify_result r;
	struct mm_audit_log *log = NULL;
	struct stat st;

	/* Opening and appending load no system key: it appears with the first checkpoint. */
	cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
	append_n(log, 1);
	cr_assert_neq(asprintf(&sys, "%s/oversight/system.key", dir), -1);
	cr_assert_neq(stat(sys, &st), 0, "system.key exists before any checkpoint");
	/* The log's first close signs its first checkpoint, whatever the policy. */
	mm_audit_set_checkpoint_policy(log, 1000, 3600);
	cr_assert_eq(mm_audit_close(log), 0, "%s", mm_last_error());
	cr_assert_eq(stat(sys, &st), 0, "no system.key after the first checkpoint");
	cr_assert_eq(checkpoint_sizes(dir, s, 16), 1);
	cr_assert_eq(s[0], 1);
	/* Below both thresholds: no checkpoint, the entries are valid and counted as uncovered. */
	append_and_close(dir, 3, 5, 3600);
	cr_assert_eq(checkpoint_sizes(dir, s, 16), 1);
	cr_assert_eq(mm_audit_verify(dir, NULL, NULL, 0, &r), 0, "%s", mm_last_error());
	cr_assert(r.ok, "%s", r.problem);
	cr_assert_eq(r.n_entries, 4);
	cr_assert_eq(r.checkpoint_size, 1);
	cr_assert_eq(r.n_uncovered, 3);
	/* The entries threshold: 3 + 2 = 5 since the last checkpoint. */
	append_and_close(dir, 2, 5, 3600);
	cr_assert_eq(checkpoint_sizes(dir, s, 16), 2);
	cr_assert_eq(s[1], 6);
	/* The time threshold: 0 seconds have always passed. */
	append_and_close(dir, 1, 1000, 0);
	cr_assert_eq(checkpoint_sizes(dir, s, 16), 3);
	cr_assert_eq(s[2], 7);
	/* A close with nothing appended signs nothing, even when due by time. */
	append_and_close(dir, 0, 1, 0);
	cr_assert_eq(checkpoint_sizes(dir, s, 16), 3);
	/* An explicit checkpoint is always signed. */
	cr_assert_eq(mm_audit_open(dir, &log), 0);
	mm_audit_set_checkpoint_policy(log, 1000, 3600);
	append_n(log, 1);
	cr_assert_eq(mm_audit_checkpoint(log), 0, "%s", mm_last_error());
	append_n(log, 1);
	cr_assert_eq(mm_audit_close(log), 0);
	cr_assert_eq(checkpoint_sizes(dir, s, 16), 4);
	cr_assert_eq(s[3], 8);
	cr_assert_eq(mm_audit_verify(dir, NULL, NULL, 0, &r), 0);
	cr_assert(r.ok, "%s", r.problem);
	cr_assert_eq(r.n_uncovered, 1);
	free(sys);
	free(dir);
}

/* Writes a state line of another boot into the lock file: what a restart of the machine leaves. */
static void state_of_another_boot(const char *dir)
{
	char *lock = file_of(dir, "lock"), *state;
	size_t len;

	state = tu_read_file(lock, &len);
	cr_assert_geq(len, 36, "no state line in the lock file");
	state[0] = state[0] == '0' ? '1' : '0';
	tu_write_file(lock, state, len);
	free(state);
	free(lock);
}

Test(audit, the_state_line_finds_the_latest_checkpoint_and_a_restart_rebuilds_the_caches)
{
	char *dir = make_log(8), *ipath = file_of(dir, "index"), *ibuf, *lock = file_of(dir, "lock");
	struct mm_audit_log *log = NULL;
	struct mm_audit_recovery rv;
	uint64_t s[4];
	size_t ilen;

	/* Four entries past the checkpoint at 8: their cache rows are not fsync'd. */
	append_and_close(dir, 4, 1000, 3600);
	cr_assert_eq(checkpoint_sizes(dir, s, 4), 1);
	/* Same boot: the caches are trusted as written, nothing is rebuilt. */
	cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
	mm_audit_recovery(log, &rv);
	cr_assert_eq(rv.rebuilt, 0);
	cr_assert_eq(mm_audit_close(log), 0);
	/* A restart lost a page of the index past the checkpoint (rows 9 and 10 read as zeros). */
	ibuf = tu_read_file(ipath, &ilen);
	cr_assert_eq(ilen, AUDIT_FILE_HEADER + 12 * 8);
	memset(ibuf + AUDIT_FILE_HEADER + 9 * 8, 0, 16);
	tu_write_file(ipath, ibuf, ilen);
	state_of_another_boot(dir);
	verify_bad(dir);
	cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
	mm_audit_recovery(log, &rv);
	cr_assert_eq(rv.rebuilt, 4, "rebuilt %" PRIu64, rv.rebuilt);
	cr_assert_eq(mm_audit_size(log), 12);
	cr_assert_eq(mm_audit_close(log), 0);
	verify_ok(dir);
	/* No state line at all (an older log): the directory is read instead, and the recent
	 * checkpoint at 8 is found, so a close below both thresholds signs nothing. */
	tu_write_file(lock, "", 0);
	append_and_close(dir, 1, 1000, 3600);
	cr_assert_eq(checkpoint_sizes(dir, s, 4), 1);
	verify_ok(dir);
	free(ibuf);
	free(ipath);
	free(lock);
	free(dir);
}

Test(audit, checkpoint_signed_by_another_key_or_modified_is_refused)
{
	char *dir = make_log(4), *path = file_of(dir, "checkpoints/00000000000000000004");
	size_t len;
	char *orig = tu_read_file(path, &len), *mod;
	struct mm_audit_verify_result r;

	resign_checkpoint(dir, 4, NULL);
	r = verify_bad(dir);
	cr_assert(strstr(r.problem, "no signature by mamori-system"), "%s", r.problem);
	/* A modified body (the tree size) keeping the original signature line. */
	mod = strdup(orig);
	mod[strlen("mamori-system\n")] = '3';
	tu_write_file(path, mod, len);
	r = verify_bad(dir);
	tu_write_file(path, orig, len);
	verify_ok(dir);
	free(mod);
	free(orig);
	free(path);
	free(dir);
}

Test(audit, cosignature_by_a_witness)
{
	char *dir = make_log(3), priv[512], pub[512], opub[512], opriv[512];
	struct mm_signer *w = NULL;
	struct mm_verifier *wv = NULL, *ov = NULL;
	struct mm_audit_log *log = NULL;
	struct mm_audit_verify_result r;
	const struct mm_verifier *ws[1];

	snprintf(priv, sizeof(priv), "%s/w.key", dir);
	snprintf(pub, sizeof(pub), "%s/w.pub", dir);
	snprintf(opriv, sizeof(opriv), "%s/o.key", dir);
	snprintf(opub, sizeof(opub), "%s/o.pub", dir);
	cr_assert_eq(mm_key_create_files("panel.example/member-1", priv, pub), 0);
	cr_assert_eq(mm_key_create_files("panel.example/member-2", opriv, opub), 0);
	cr_assert_eq(mm_signer_load(priv, &w), 0);
	cr_assert_eq(mm_verifier_load(pub, &wv), 0);
	cr_assert_eq(mm_verifier_load(opub, &ov), 0);
	cr_assert_eq(mm_audit_open(dir, &log), 0);
	cr_assert_eq(mm_audit_cosign(log, w), 0, "%s", mm_last_error());
	mm_audit_close(log);
	ws[0] = wv;
	cr_assert_eq(mm_audit_verify(dir, NULL, ws, 1, &r), 0);
	cr_assert(r.ok, "%s", r.problem);
	cr_assert_eq(r.n_cosignatures, 1);
	ws[0] = ov; /* a member who did not cosign */
	cr_assert_eq(mm_audit_verify(dir, NULL, ws, 1, &r), 0);
	cr_assert(r.ok, "%s", r.problem);
	cr_assert_eq(r.n_cosignatures, 0);
	mm_signer_free(w);
	mm_verifier_free(wv);
	mm_verifier_free(ov);
	free(dir);
}

/* ---- concurrency ---- */

struct thread_arg {
	struct mm_audit_log *log;
	int id;
	uint64_t idx[100];
};

static void *appender(void *p)
{
	struct thread_arg *a = p;
	char buf[128];

	for (int i = 0; i < 100; i++) {
		int len = snprintf(buf, sizeof(buf), "{\"thread\":%d,\"i\":%d}", a->id, i);
		if (mm_audit_append(a->log, buf, (size_t)len, &a->idx[i]) != 0)
			a->idx[i] = UINT64_MAX;
	}
	return NULL;
}

static void *checkpointer(void *p)
{
	struct mm_audit_log *log = p;
	intptr_t failures = 0;

	for (int i = 0; i < 20; i++) {
		failures += mm_audit_checkpoint(log) != 0;
		usleep(2000);
	}
	return (void *)failures;
}

Test(audit, threads_and_processes_do_not_interleave)
{
	char *dir = tu_tmpdir();
	struct mm_audit_log *log = NULL;
	struct thread_arg args[8];
	pthread_t th[8];
	uint8_t seen[800 + 300] = { 0 };
	pid_t kids[3];

	cr_assert_eq(mm_audit_open(dir, &log), 0);
	for (int p = 0; p < 3; p++) {
		kids[p] = fork();
		if (kids[p] == 0) {
			struct mm_audit_log *cl = NULL;
			char buf[64];
			if (mm_audit_open(dir, &cl) != 0)
				_exit(2);
			for (int i = 0; i < 100; i++) {
				int len = snprintf(buf, sizeof(buf), "{\"process\":%d,\"i\":%d}", p, i);
				if (mm_audit_append(cl, buf, (size_t)len, NULL) != 0)
					_exit(3);
			}
			_exit(mm_audit_close(cl) == 0 ? 0 : 4);
		}
	}
	pthread_t cp_thread;
	void *cp_failures;
	for (int t = 0; t < 8; t++) {
		args[t].log = log;
		args[t].id = t;
		pthread_create(&th[t], NULL, appender, &args[t]);
	}
	/* Checkpoints signed while appends are in flight, from another thread. */
	pthread_create(&cp_thread, NULL, checkpointer, log);
	for (int t = 0; t < 8; t++)
		pthread_join(th[t], NULL);
	pthread_join(cp_thread, &cp_failures);
	cr_assert_eq((intptr_t)cp_failures, 0, "checkpoints failed during appends");
	for (int p = 0; p < 3; p++) {
		int st;
		waitpid(kids[p], &st, 0);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d", p);
	}
	for (int t = 0; t < 8; t++)
		for (int i = 0; i < 100; i++) {
			cr_assert_lt(args[t].idx[i], 1100);
			cr_assert(!seen[args[t].idx[i]], "index %" PRIu64 " given twice",
				  args[t].idx[i]);
			seen[args[t].idx[i]] = 1;
		}
	cr_assert_eq(mm_audit_close(log), 0);
	verify_ok(dir);
	cr_assert_eq(mm_audit_open_existing(dir, &log), 0);
	cr_assert_eq(mm_audit_size(log), 1100);
	mm_audit_close(log);
	free(dir);
}

/*
 * A first writer killed before it appended anything leaves an empty log and
 * no system key (made to sign the first checkpoint): the log verifies.
 */
Test(audit, an_empty_log_without_a_system_key_verifies)
{
	char *dir = tu_tmpdir(), path[4200];
	struct mm_audit_verify_result r;
	struct mm_audit_log *log = NULL;

	cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
	cr_assert_eq(mm_audit_close(log), 0, "%s", mm_last_error());
	snprintf(path, sizeof(path), "%s/oversight/system.pub", dir);
	cr_assert_neq(access(path, F_OK), 0, "no key before the first checkpoint");
	cr_assert_eq(mm_audit_verify(dir, NULL, NULL, 0, &r), 0, "%s", mm_last_error());
	cr_assert(r.ok, "verify: %s", r.problem);
	cr_assert_eq(r.n_entries, 0);
	cr_assert_eq(r.n_checkpoints, 0);
	free(dir);
}

Test(audit, killed_writers_lose_no_acknowledged_entry)
{
	char *dir = tu_tmpdir(), buf[512];
	uint64_t seed = 5, acked = 0;

	for (int round = 0; round < 6; round++) {
		int fds[2];
		pid_t pid;
		cr_assert_eq(pipe(fds), 0);
		pid = fork();
		if (pid == 0) {
			/* Appends batches of 50 and reports each acknowledged index, until killed;
			 * odd rounds append one deferred (written, not fsync'd) entry at a time: a
			 * killed process loses none of those either. */
			struct mm_audit_log *cl = NULL;
			const char *texts[50];
			size_t lens[50];
			char bufs[50][512];
			close(fds[0]);
			if (mm_audit_open(dir, &cl) != 0)
				_exit(2);
			for (;;) {
				uint64_t first, last;
				if (round % 2) {
					entry_text(mm_audit_size(cl), bufs[0], sizeof(bufs[0]));
					if (mm_audit_append_deferred(cl, bufs[0], strlen(bufs[0]), &last) != 0)
						_exit(3);
					if (write(fds[1], &last, sizeof(last)) != sizeof(last))
						_exit(4);
					continue;
				}
				for (int j = 0; j < 50; j++) {
					texts[j] = entry_text(mm_audit_size(cl) + (uint64_t)j, bufs[j],
							      sizeof(bufs[j]));
					lens[j] = strlen(texts[j]);
				}
				if (mm_audit_append_batch(cl, texts, lens, 50, &first) != 0)
					_exit(3);
				last = first + 49;
				if (write(fds[1], &last, sizeof(last)) != sizeof(last))
					_exit(4);
			}
		}
		close(fds[1]);
		usleep((useconds_t)(20000 + rng(&seed) % 80000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		uint64_t v;
		while (read(fds[0], &v, sizeof(v)) == sizeof(v))
			acked = v + 1;
		close(fds[0]);

		struct mm_audit_log *log = NULL;
		cr_assert_eq(mm_audit_open(dir, &log), 0, "%s", mm_last_error());
		cr_assert_geq(mm_audit_size(log), acked, "round %d: %" PRIu64 " acknowledged, %" PRIu64
							  " in the log",
			      round, acked, mm_audit_size(log));
		for (uint64_t i = 0; i < mm_audit_size(log); i += 1 + rng(&seed) % 97) {
			char *json;
			cr_assert_eq(mm_audit_read(log, i, &json, NULL), 0);
			cr_assert_str_eq(json, entry_text(i, buf, sizeof(buf)));
			free(json);
		}
		cr_assert_eq(mm_audit_close(log), 0);
		verify_ok(dir);
	}
	cr_assert_gt(acked, 0, "the writer acknowledged nothing in six rounds");
	free(dir);
}

/* ---- report ---- */

static void add(struct mm_audit_log *log, const char *act, const char *outcome, const char *authz,
		const char *kind, const char *basis, bool emergency, const char *time)
{
	char buf[512];
	int len = snprintf(buf, sizeof(buf),
			   "{\"v\":1,\"time\":\"%s\",\"mode\":\"enforced\",\"actor\":\"x\","
			   "\"act\":\"%s\",\"outcome\":\"%s\",\"authz\":\"%s\",\"kind\":\"%s\","
			   "\"legal_basis\":\"%s\",\"purpose\":null,\"emergency\":%s,"
			   "\"reason\":null,\"detail\":{}}",
			   time, act, outcome, authz, kind, basis, emergency ? "true" : "false");
	cr_assert_eq(mm_audit_append(log, buf, (size_t)len, NULL), 0);
}

static json_t *find_row(json_t *acts, const char *act, const char *kind, const char *basis)
{
	size_t i;
	json_t *row;

	json_array_foreach(acts, i, row)
		if (strcmp(json_string_value(json_object_get(row, "act")), act) == 0 &&
		    strcmp(json_string_value(json_object_get(row, "kind")), kind) == 0 &&
		    strcmp(json_string_value(json_object_get(row, "legal_basis")), basis) == 0)
			return row;
	return NULL;
}

Test(audit, report_counts_what_was_put_in)
{
	char *dir = tu_tmpdir(), *out = NULL, *err = NULL;
	struct mm_audit_log *log = NULL;
	const char *in = "2026-03-01T10:00:00.123456789Z", *before = "2025-12-31T23:59:59Z";
	json_t *rep, *row;

	cr_assert_eq(mm_audit_open(dir, &log), 0);
	for (int i = 0; i < 3; i++)
		add(log, "authz.request", "recorded", "A-1", "reidentify", "art-7", false, in);
	add(log, "authz.approve", "recorded", "A-1", "reidentify", "art-7", false, in);
	add(log, "authz.deny", "recorded", "A-2", "respond", "art-9", false, in);
	add(log, "authz.revoke", "recorded", "A-1", "reidentify", "art-7", false, in);
	for (int i = 0; i < 4; i++)
		add(log, "reidentify", "allowed", "A-1", "reidentify", "art-7", false, in);
	add(log, "reidentify", "refused", "A-1", "reidentify", "art-7", false, in);
	add(log, "respond", "allowed", "A-3", "respond", "art-9", true, in);
	add(log, "respond", "allowed", "A-3", "respond", "art-9", true, in);
	add(log, "authz.ratify", "recorded", "A-3", "respond", "art-9", false, in);
	add(log, "query", "allowed", "A-4", "analyze", "art-12", true, in);
	add(log, "authz.suspend", "recorded", "A-4", "analyze", "art-12", false, in);
	/* Outside the window: not counted. */
	add(log, "reidentify", "allowed", "A-1", "reidentify", "art-7", false, before);
	mm_audit_close(log);

	const char *argv[] = { tu_mamori_bin(), "audit", "report", "-R", dir, "--from",
			       "2026-01-01", "--to", "2027-01-01", "--format", "json", NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "%s", err);
	rep = json_loads(out, 0, NULL);
	cr_assert(rep, "report is not JSON: %s", out);
	cr_assert_eq(json_integer_value(json_object_get(rep, "entries_in_window")), 16);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(rep, "checkpoint"), "size")),
		     17);
	row = find_row(json_object_get(rep, "acts"), "authz.request", "reidentify", "art-7");
	cr_assert(row);
	cr_assert_eq(json_integer_value(json_object_get(row, "recorded")), 3);
	row = find_row(json_object_get(rep, "acts"), "authz.deny", "respond", "art-9");
	cr_assert(row && json_integer_value(json_object_get(row, "recorded")) == 1);
	row = find_row(json_object_get(rep, "acts"), "authz.revoke", "reidentify", "art-7");
	cr_assert(row && json_integer_value(json_object_get(row, "recorded")) == 1);
	row = json_object_get(rep, "reidentifications");
	cr_assert_eq(json_integer_value(json_object_get(row, "allowed")), 4);
	cr_assert_eq(json_integer_value(json_object_get(row, "refused")), 1);
	row = json_object_get(rep, "measures");
	cr_assert_eq(json_integer_value(json_object_get(row, "allowed")), 2);
	row = json_object_get(rep, "emergency");
	cr_assert_eq(json_array_size(row), 2);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(row, 0), "authz")), "A-3");
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(row, 0), "uses")), 2);
	cr_assert(json_is_true(json_object_get(json_array_get(row, 0), "ratified")));
	cr_assert(json_is_false(json_object_get(json_array_get(row, 1), "ratified")));
	cr_assert(json_is_true(json_object_get(json_array_get(row, 1), "suspended")));
	json_decref(rep);
	free(out);
	free(err);
	free(dir);
}

/* ---- the CLI over a real log ---- */

Test(audit_cli, verify_show_prove_round_trip)
{
	char *dir = make_log(21), *out = NULL, *err = NULL, *cmd, *line;
	const char *verify[] = { tu_mamori_bin(), "audit", "verify", "-R", dir, NULL };
	const char *show[] = { tu_mamori_bin(), "audit", "show", "-R", dir, "--from", "19", NULL };
	const char *prove[] = { tu_mamori_bin(), "audit", "prove", "-R", dir, "--entry", "13", NULL };
	const char *cons[] = { tu_mamori_bin(), "audit", "prove", "-R", dir, "--consistency-from",
			       "6", NULL };
	const char *proves[] = { tu_mamori_bin(), "audit", "prove", "-R", dir, "--entry", "13", "--size", "21", NULL };

	cr_assert_eq(tu_run(verify, NULL, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "valid"));
	free(out);
	free(err);
	cr_assert_eq(tu_run(show, NULL, &out, &err), 0, "%s", err);
	cr_assert(strstr(out, "{\"index\":19,\"entry\":{\"v\":1"), "%s", out);
	cr_assert(strstr(out, "{\"index\":20,"), "%s", out);
	cr_assert_null(strstr(out, "{\"index\":18,"));
	free(out);
	free(err);
	for (int k = 0; k < 3; k++) {
		const char *const *argv = k == 0 ? prove : k == 1 ? cons : proves;
		cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "%s", err);
		line = strstr(out, "check: ");
		cr_assert(line, "%s", out);
		/* The printed command is accepted by verify-proof, through the shell. */
		cr_assert_geq(asprintf(&cmd, "%s%s", tu_mamori_bin(),
				       line + strlen("check: mamori")), 0);
		free(err);
		const char *sh[] = { "sh", "-c", cmd, NULL };
		cr_assert_eq(tu_run(sh, NULL, NULL, &err), 0, "%s: %s", cmd, err);
		free(err);
		free(cmd);
		free(out);
	}
	/* A changed byte in entry 0's payload: exit 1, naming the entry and its offset. */
	char *path = file_of(dir, "entries");
	size_t len;
	char *buf = tu_read_file(path, &len);
	buf[AUDIT_FILE_HEADER + AUDIT_REC_HEADER + 3] ^= 0x01;
	tu_write_file(path, buf, len);
	cr_assert_eq(tu_run(verify, NULL, &out, &err), 1);
	cr_assert(strstr(err, "INVALID: entry 0 at byte 16: checksum mismatch"), "%s", err);
	free(out);
	free(err);
	free(buf);
	free(path);
	free(dir);
}
