/*
 * policy/ Crypto-PAn: AES-128 against FIPS-197, the original
 * implementation's sample trace (library and CLI, both directions),
 * published IPv4 and IPv6 answers of another implementation, a
 * straightforward bit-by-bit reference written here, the bijection and
 * prefix-preservation properties, and key file handling.
 */
#include "mamori/cryptopan.h"
#include "mamori/status.h"
#include "policy/aes128.h"
#include "cryptopan_ref.h"
#include "test_util.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

/* splitmix64: a fixed seed per test, so a failure reproduces. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void rng_bytes(uint64_t *s, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rng_next(s);
}

static void hex_decode(const char *hex, uint8_t *out, size_t n)
{
	cr_assert_eq(strlen(hex), 2 * n, "hex '%s' is not %zu bytes", hex, n);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static struct mm_addr addr(const char *text)
{
	struct mm_addr a;

	cr_assert_eq(mm_addr_parse(&a, text), 0, "%s", mm_last_error());
	return a;
}

static const char *fmt(const struct mm_addr *a, char buf[MM_ADDR_STRLEN])
{
	return mm_addr_format(a, buf);
}

/* The mapping with impl, or NULL when this CPU lacks its instructions. */
static struct mm_cryptopan *make(const uint8_t key[32], enum mm_cryptopan_impl impl)
{
	struct mm_cryptopan *c = NULL;
	int rc = mm_cryptopan_new(key, impl, &c);

	if (rc == MM_EUNSUP && impl != MM_CRYPTOPAN_PORTABLE && impl != MM_CRYPTOPAN_AUTO) {
		cr_log_warn("skipping %d: %s", (int)impl, mm_last_error());
		return NULL;
	}
	cr_assert_eq(rc, 0, "%s", mm_last_error());
	return c;
}

/* The key of the original distribution's sample, from KEY.json beside the trace. */
static void sample_key(uint8_t key[32])
{
	TU_REQUIRE_SHARED(path, "cryptopan/KEY.json");
	json_error_t err;
	json_t *doc = json_load_file(path, 0, &err);

	cr_assert(doc, "%s: %s", path, err.text);
	hex_decode(json_string_value(json_object_get(doc, "key_hex")), key, 32);
	json_decref(doc);
	free(path);
}

/* Column 3 (the address) of each line of a sample trace file. */
static size_t trace_addrs(const char *rel, char addrs[][MM_ADDR_STRLEN], size_t max)
{
	TU_REQUIRE_SHARED(path, rel);
	FILE *fp = fopen(path, "r");
	char line[256];
	size_t n = 0;

	cr_assert(fp, "%s", path);
	while (fgets(line, sizeof(line), fp)) {
		char a[64];
		cr_assert_lt(n, max);
		cr_assert_eq(sscanf(line, "%*s %*s %63s", a), 1, "%s line %zu", path, n + 1);
		snprintf(addrs[n++], MM_ADDR_STRLEN, "%.45s", a);
	}
	fclose(fp);
	free(path);
	return n;
}

static unsigned __int128 family_bits(const struct mm_addr *a)
{
	uint8_t b[16] = { 0 };

	if (mm_addr_is_v4(a))
		memcpy(b, a->b + 12, 4);
	else
		memcpy(b, a->b, 16);
	return be128(b);
}

/* Common prefix length of two addresses of one family, in that family's bits. */
static unsigned cpl(const struct mm_addr *x, const struct mm_addr *y)
{
	unsigned n_bits = mm_addr_is_v4(x) ? 32 : 128;
	unsigned __int128 d = family_bits(x) ^ family_bits(y);
	uint64_t hi = (uint64_t)(d >> 64), lo = (uint64_t)d;
	unsigned k = hi ? (unsigned)__builtin_clzll(hi) : lo ? 64 + (unsigned)__builtin_clzll(lo) : 128;

	return k < n_bits ? k : n_bits;
}

static void random_addr(uint64_t *s, bool v4, struct mm_addr *a)
{
	uint8_t b[16];

	rng_bytes(s, b, 16);
	if (v4) {
		mm_addr_set_v4(a, b);
		return;
	}
	if (b[0] == 0)
		b[0] = 0x20; /* keep clear of ::ffff:0:0/96 and other special /8s */
	mm_addr_set_v6(a, b);
}

static const enum mm_cryptopan_impl impls[] = { MM_CRYPTOPAN_VAES, MM_CRYPTOPAN_AESNI,
						 MM_CRYPTOPAN_PORTABLE };
#define N_IMPLS (sizeof(impls) / sizeof(impls[0]))

/* ---- AES-128 ---- */

/* FIPS-197 Appendix C.1 (AES-128). */
static const char fips_key[] = "000102030405060708090a0b0c0d0e0f";
static const char fips_plain[] = "00112233445566778899aabbccddeeff";
static const char fips_cipher[] = "69c4e0d86a7b0430d8cdb78070b4c55a";

/* The vector in every position of a batch of 11 (not a multiple of 4 or 8), the rest random. */
static void check_fips(ref_encrypt_fn encrypt)
{
	struct mm_aes128 ks;
	uint8_t key[16], plain[16], want[16], blocks[11][16];
	uint64_t seed = 1;

	hex_decode(fips_key, key, 16);
	hex_decode(fips_plain, plain, 16);
	hex_decode(fips_cipher, want, 16);
	mm_aes128_expand(&ks, key);
	for (unsigned at = 0; at < 11; at++) {
		rng_bytes(&seed, &blocks[0][0], sizeof(blocks));
		memcpy(blocks[at], plain, 16);
		encrypt(&ks, (const uint8_t(*)[16])blocks, blocks, 11);
		cr_assert_eq(memcmp(blocks[at], want, 16), 0, "FIPS-197 C.1 wrong in position %u", at);
	}
	mm_aes128_wipe(&ks);
}

Test(aes128, fips197_c1_portable)
{
	check_fips(mm_aes128_encrypt_portable);
}

Test(aes128, fips197_c1_aesni)
{
	if (!mm_aes128_have_aesni())
		cr_skip_test("this CPU has no AES instructions");
	check_fips(mm_aes128_encrypt_aesni);
}

Test(aes128, paths_agree_on_random_keys_and_blocks)
{
	uint64_t seed = 2;

	if (!mm_aes128_have_aesni())
		cr_skip_test("this CPU has no AES instructions");
	for (int round = 0; round < 50; round++) {
		struct mm_aes128 ks;
		uint8_t key[16], in[19][16], a[19][16], b[19][16];

		rng_bytes(&seed, key, 16);
		rng_bytes(&seed, &in[0][0], sizeof(in));
		mm_aes128_expand(&ks, key);
		mm_aes128_encrypt_portable(&ks, (const uint8_t(*)[16])in, a, 19);
		mm_aes128_encrypt_aesni(&ks, (const uint8_t(*)[16])in, b, 19);
		cr_assert_eq(memcmp(a, b, sizeof(a)), 0, "AES paths differ in round %d", round);
	}
}

/* ---- the original implementation's sample ---- */

#define SAMPLE_MAX 128

Test(cryptopan, reference_sample_both_directions)
{
	static char raw[SAMPLE_MAX][MM_ADDR_STRLEN], anon[SAMPLE_MAX][MM_ADDR_STRLEN];
	uint8_t key[32];
	size_t n_raw, n_anon;

	sample_key(key);
	n_raw = trace_addrs("cryptopan/sample_trace_raw.dat", raw, SAMPLE_MAX);
	n_anon = trace_addrs("cryptopan/sample_trace_sanitized.dat", anon, SAMPLE_MAX);
	cr_assert_eq(n_raw, 100);
	cr_assert_eq(n_anon, 100);
	for (size_t k = 0; k < N_IMPLS; k++) {
		struct mm_cryptopan *c = make(key, impls[k]);
		size_t n_match = 0, n_back = 0;
		if (!c)
			continue;

		for (size_t i = 0; i < n_raw; i++) {
			struct mm_addr a = addr(raw[i]), p, back;
			char buf[MM_ADDR_STRLEN];

			mm_cryptopan_anonymize(c, &a, &p);
			cr_expect_str_eq(fmt(&p, buf), anon[i], "%s line %zu: %s", mm_cryptopan_impl_name(c),
					 i + 1, raw[i]);
			n_match += strcmp(buf, anon[i]) == 0;
			p = addr(anon[i]);
			mm_cryptopan_deanonymize(c, &p, &back);
			n_back += mm_addr_eq(&back, &a);
		}
		cr_assert_eq(n_match, 100, "%s: %zu/100 lines match", mm_cryptopan_impl_name(c), n_match);
		cr_assert_eq(n_back, 100, "%s: %zu/100 reversed", mm_cryptopan_impl_name(c), n_back);
		mm_cryptopan_free(c);
	}
}

#define DIR_LEN 256
#define PATH_LEN 512

/* A fresh scratch directory, its path in the caller's buffer. */
static void scratch_dir(char dir[DIR_LEN])
{
	char *d = tu_tmpdir();

	cr_assert(d);
	snprintf(dir, DIR_LEN, "%s", d);
	free(d);
}

/* Writes text as dir/name with the given mode; returns path (the caller's buffer). */
static char *write_key_file(const char *dir, const char *name, const char *text, mode_t mode,
			    char path[PATH_LEN])
{
	snprintf(path, PATH_LEN, "%s/%s", dir, name);
	cr_assert_eq(tu_write_file(path, text, strlen(text)), 0);
	cr_assert_eq(chmod(path, mode), 0);
	return path;
}

/* Addresses one per line in dir/name (its path into path); returns the text (malloc'd). */
static char *addr_list_file(const char *dir, const char *name, char addrs[][MM_ADDR_STRLEN], size_t n,
			    char path[PATH_LEN])
{
	size_t cap = n * MM_ADDR_STRLEN + 1, used = 0;
	char *text = malloc(cap);

	for (size_t i = 0; i < n; i++)
		used += (size_t)snprintf(text + used, cap - used, "%s\n", addrs[i]);
	snprintf(path, PATH_LEN, "%s/%s", dir, name);
	cr_assert_eq(tu_write_file(path, text, used), 0);
	return text;
}

Test(cryptopan, reference_sample_through_cli)
{
	static char raw[SAMPLE_MAX][MM_ADDR_STRLEN], anon[SAMPLE_MAX][MM_ADDR_STRLEN];
	uint8_t key[32];
	char key_hex[80], dir[PATH_LEN], path_buf[PATH_LEN], raw_path[PATH_LEN], anon_path[PATH_LEN];
	char *key_path, *raw_text, *anon_text, *out = NULL, *err = NULL;
	size_t n;

	scratch_dir(dir);

	sample_key(key);
	n = trace_addrs("cryptopan/sample_trace_raw.dat", raw, SAMPLE_MAX);
	cr_assert_eq(trace_addrs("cryptopan/sample_trace_sanitized.dat", anon, SAMPLE_MAX), n);
	for (int i = 0; i < 32; i++)
		snprintf(key_hex + 2 * i, 3, "%02x", key[i]);
	strcat(key_hex, "\n");
	key_path = write_key_file(dir, "key", key_hex, 0600, path_buf);
	raw_text = addr_list_file(dir, "raw.txt", raw, n, raw_path);
	anon_text = addr_list_file(dir, "anon.txt", anon, n, anon_path);

	const char *fwd[] = { tu_mamori_bin(), "cryptopan", "--key", key_path, NULL };
	cr_assert_eq(tu_run(fwd, raw_path, &out, &err), 0, "stderr: %s", err);
	cr_assert_str_eq(out, anon_text);
	free(out);
	free(err);

	/*
	 * The reverse map is re-identification: cryptopan has no way to it, and
	 * `mamori reidentify -` reverses the pseudonyms on standard input through
	 * the guard (lab mode: each answered and audited) with the data
	 * directory's key.
	 */
	const char *no_rev[] = { tu_mamori_bin(), "cryptopan", "--key", key_path, "--reverse", NULL };
	cr_assert_eq(tu_run(no_rev, anon_path, &out, &err), 1, "stderr: %s", err);
	cr_assert_str_eq(out, "");
	free(out);
	free(err);

	char data[PATH_LEN + 8], policy[PATH_LEN + 16], key_buf[PATH_LEN];
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(policy, sizeof(policy), "%s/policy", data);
	cr_assert_eq(mkdir(data, 0700), 0);
	cr_assert_eq(mkdir(policy, 0700), 0);
	write_key_file(policy, "cryptopan.key", key_hex, 0600, key_buf);
	const char *rev[] = { tu_mamori_bin(), "reidentify", "-R", data, "-", NULL };
	cr_assert_eq(tu_run(rev, anon_path, &out, &err), 0, "stderr: %s", err);
	{
		char *save = NULL, *line = strtok_r(out, "\n", &save);

		for (size_t i = 0; i < n; i++, line = strtok_r(NULL, "\n", &save)) {
			char want[2 * MM_ADDR_STRLEN + 2];

			snprintf(want, sizeof(want), "%s %s", anon[i], raw[i]);
			cr_assert_not_null(line, "reidentify answered %zu of %zu pseudonyms", i, n);
			cr_assert_str_eq(line, want, "line %zu", i + 1);
		}
		cr_assert_null(line, "more answers than pseudonyms");
	}
	free(out);
	free(err);
	free(raw_text);
	free(anon_text);
}

/* ---- answers published by another implementation (yacryptopan's README and self-test) ---- */

Test(cryptopan, published_ipv4_and_ipv6_answers)
{
	static const struct {
		const char *key; /* 32 bytes as text, or NULL for the bytes 0, 1, ..., 31 */
		const char *in[2], *out[2];
	} cases[] = {
		{ "32-char-str-for-AES-key-and-pad.",
		  { "192.0.2.1", "2001:db8::1" },
		  { "192.0.125.244", "27fe:8bc7:fee:1e:1e1f:f0fe:f0e1:83fd" } },
		{ NULL,
		  { "192.0.2.1", "2001:db8::1" },
		  { "2.90.93.17", "dd92:2c44:3fc0:ff1e:7ff9:c7f0:8180:7e00" } },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		for (size_t k = 0; k < N_IMPLS; k++) {
			uint8_t key[32];
			struct mm_cryptopan *c;

			for (int j = 0; j < 32; j++)
				key[j] = cases[i].key ? (uint8_t)cases[i].key[j] : (uint8_t)j;
			c = make(key, impls[k]);
			if (!c)
				continue;
			for (int f = 0; f < 2; f++) {
				struct mm_addr a = addr(cases[i].in[f]), p;
				char buf[MM_ADDR_STRLEN];

				mm_cryptopan_anonymize(c, &a, &p);
				cr_assert_str_eq(fmt(&p, buf), cases[i].out[f], "%s: %s",
						 mm_cryptopan_impl_name(c), cases[i].in[f]);
				mm_cryptopan_deanonymize(c, &p, &p);
				cr_assert(mm_addr_eq(&p, &a));
			}
			mm_cryptopan_free(c);
		}
}

/* ---- the bit-by-bit reference against the batched, table-assisted paths ---- */

Test(cryptopan, matches_bit_by_bit_reference)
{
	uint64_t seed = 3;

	for (int round = 0; round < 2; round++) {
		struct mm_cryptopan *c[N_IMPLS];
		uint8_t key[32];
		struct ref r;

		rng_bytes(&seed, key, 32);
		ref_init(&r, key, mm_aes128_encrypt_portable);
		/* The portable path with the first key only: its setup is slow in sanitizer builds. */
		for (size_t k = 0; k < N_IMPLS; k++)
			c[k] = round > 0 && impls[k] == MM_CRYPTOPAN_PORTABLE ? NULL : make(key, impls[k]);
		for (int i = 0; i < 200; i++) {
			bool v4 = i % 4 != 0;
			struct mm_addr a, p;
			unsigned __int128 want;

			random_addr(&seed, v4, &a);
			want = ref_anon(&r, family_bits(&a), v4 ? 32 : 128);
			for (size_t k = 0; k < N_IMPLS; k++) {
				if (!c[k])
					continue;
				mm_cryptopan_anonymize(c[k], &a, &p);
				cr_assert(family_bits(&p) == want, "%s: key %d address %d differs from the reference",
					  mm_cryptopan_impl_name(c[k]), round, i);
				cr_assert_eq(mm_addr_is_v4(&p), v4);
			}
		}
		for (size_t k = 0; k < N_IMPLS; k++)
			mm_cryptopan_free(c[k]);
		mm_aes128_wipe(&r.aes);
	}
}

/*
 * The one IPv6 /96 whose raw 128-bit image is ::ffff:0:0/96: found with the
 * reference's inverse. Its pseudonyms must stay IPv6, be the raw map applied
 * twice, and reverse correctly.
 */
Test(cryptopan, ipv6_never_maps_into_v4_mapped_space)
{
	uint64_t seed = 4;
	uint8_t key[32];
	struct ref r;
	unsigned __int128 mapped = (unsigned __int128)0xffff << 32, p96;
	struct mm_cryptopan *c[N_IMPLS];

	rng_bytes(&seed, key, 32);
	ref_init(&r, key, mm_aes128_encrypt_portable);
	p96 = ref_deanon(&r, mapped, 96);
	for (size_t k = 0; k < N_IMPLS; k++)
		c[k] = make(key, impls[k]);
	for (int i = 0; i < 8; i++) {
		uint8_t b[16];
		struct mm_addr a;
		unsigned __int128 once, twice;

		put_be128(p96 | (uint32_t)rng_next(&seed), b);
		mm_addr_set_v6(&a, b);
		once = ref_anon(&r, family_bits(&a), 128);
		cr_assert(once >> 32 == (unsigned __int128)0xffff,
			  "the reference does not send this /96 into ::ffff:0:0/96");
		twice = ref_anon(&r, once, 128);
		for (size_t k = 0; k < N_IMPLS; k++) {
			struct mm_addr p, back;

			if (!c[k])
				continue;
			mm_cryptopan_anonymize(c[k], &a, &p);
			cr_assert_not(mm_addr_is_v4(&p), "%s", mm_cryptopan_impl_name(c[k]));
			cr_assert(family_bits(&p) == twice, "%s", mm_cryptopan_impl_name(c[k]));
			mm_cryptopan_deanonymize(c[k], &p, &back);
			cr_assert(mm_addr_eq(&back, &a), "%s", mm_cryptopan_impl_name(c[k]));
		}
	}
	for (size_t k = 0; k < N_IMPLS; k++)
		mm_cryptopan_free(c[k]);
	mm_aes128_wipe(&r.aes);
}

/* ---- properties ---- */

/* All 2^host_bits addresses of a random prefix: distinct pseudonyms, one shared prefix, pairwise prefixes kept. */
static void check_block(const struct mm_cryptopan *c, uint64_t *seed, bool v4)
{
	enum { N = 256 };
	unsigned net_bits = v4 ? 24 : 120;
	struct mm_addr in[N], out[N];

	random_addr(seed, v4, &in[0]);
	for (int i = 0; i < N; i++) {
		in[i] = in[0];
		in[i].b[15] = (uint8_t)i;
		mm_cryptopan_anonymize(c, &in[i], &out[i]);
		cr_assert_eq(mm_addr_is_v4(&out[i]), v4);
	}
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++) {
			cr_assert_not(mm_addr_eq(&out[i], &out[j]), "collision inside a /%u", net_bits);
			cr_assert_eq(cpl(&out[i], &out[j]), cpl(&in[i], &in[j]));
			cr_assert_geq(cpl(&out[i], &out[j]), net_bits);
		}
	for (int i = 0; i < N; i++) {
		struct mm_addr back;
		mm_cryptopan_deanonymize(c, &out[i], &back);
		cr_assert(mm_addr_eq(&back, &in[i]));
	}
}

Test(cryptopan, bijective_and_prefix_preserving_in_random_slash24_and_slash120)
{
	uint64_t seed = 5;
	uint8_t key[32];

	rng_bytes(&seed, key, 32);
	/* The portable path is left out here: it equals the reference (tested above), and its
	 * serial reverse dominates the sanitizer build's time. */
	for (size_t k = 0; k < N_IMPLS; k++) {
		struct mm_cryptopan *c = impls[k] == MM_CRYPTOPAN_PORTABLE ? NULL : make(key, impls[k]);

		if (!c)
			continue;
		for (int i = 0; i < 10; i++) {
			check_block(c, &seed, true);
			check_block(c, &seed, false);
		}
		mm_cryptopan_free(c);
	}
}

/* Pairs with a chosen common prefix length k: the pseudonyms share exactly k bits, and reverse. */
Test(cryptopan, random_pairs_keep_their_common_prefix_length)
{
	uint64_t seed = 6;
	uint8_t key[32];
	struct mm_cryptopan *c;

	rng_bytes(&seed, key, 32);
	c = make(key, MM_CRYPTOPAN_AUTO);
	for (int i = 0; i < 4000; i++) {
		bool v4 = i % 2 == 0;
		unsigned n_bits = v4 ? 32 : 128, k = (unsigned)(rng_next(&seed) % n_bits);
		struct mm_addr x, y, px, py, back;
		unsigned __int128 xb, yb, low = 0;
		uint8_t b[16];

		random_addr(&seed, v4, &x);
		xb = family_bits(&x);
		rng_bytes(&seed, b, 16);
		low = be128(b) & ~prefix_mask(k + 1) & prefix_mask(n_bits);
		yb = (xb & prefix_mask(k)) | (~xb & ((unsigned __int128)1 << (127 - k))) | low;
		put_be128(yb, b);
		if (v4)
			mm_addr_set_v4(&y, b);
		else
			mm_addr_set_v6(&y, b);
		cr_assert_eq(cpl(&x, &y), k);
		mm_cryptopan_anonymize(c, &x, &px);
		mm_cryptopan_anonymize(c, &y, &py);
		cr_assert_eq(cpl(&px, &py), k, "pair %d: prefix %u became %u", i, k, cpl(&px, &py));
		mm_cryptopan_deanonymize(c, &py, &back);
		cr_assert(mm_addr_eq(&back, &y));
	}
	mm_cryptopan_free(c);
}

Test(cryptopan, flows_map_only_the_sides_asked)
{
	uint64_t seed = 7;
	uint8_t key[32], sides[4] = { 0, MM_CRYPTOPAN_SRC, MM_CRYPTOPAN_DST,
				      MM_CRYPTOPAN_SRC | MM_CRYPTOPAN_DST };
	struct mm_flow flows[4], orig[4];
	struct mm_cryptopan *c;

	rng_bytes(&seed, key, 32);
	c = make(key, MM_CRYPTOPAN_AUTO);
	for (int i = 0; i < 4; i++) {
		memset(&flows[i], 0, sizeof(flows[i]));
		random_addr(&seed, i % 2, &flows[i].src);
		random_addr(&seed, i % 2 == 0, &flows[i].dst);
		random_addr(&seed, true, &flows[i].next_hop);
		flows[i].src_port = (uint16_t)(1000 + i);
		flows[i].fwd_bytes = 1234;
	}
	memcpy(orig, flows, sizeof(flows));
	mm_cryptopan_flows(c, flows, 4, sides);
	for (int i = 0; i < 4; i++) {
		struct mm_addr want_src = orig[i].src, want_dst = orig[i].dst;

		if (sides[i] & MM_CRYPTOPAN_SRC)
			mm_cryptopan_anonymize(c, &orig[i].src, &want_src);
		if (sides[i] & MM_CRYPTOPAN_DST)
			mm_cryptopan_anonymize(c, &orig[i].dst, &want_dst);
		cr_assert(mm_addr_eq(&flows[i].src, &want_src), "flow %d src", i);
		cr_assert(mm_addr_eq(&flows[i].dst, &want_dst), "flow %d dst", i);
		cr_assert_eq(sides[i] & MM_CRYPTOPAN_SRC ? !mm_addr_eq(&flows[i].src, &orig[i].src) : true, true);
		orig[i].src = flows[i].src;
		orig[i].dst = flows[i].dst;
		cr_assert_eq(memcmp(&flows[i], &orig[i], sizeof(flows[i])), 0, "flow %d: other fields changed", i);
	}
	mm_cryptopan_free(c);
}

/* ---- key files ---- */

static const char good_hex[] = "1522178d33a4cf80130a5b1649907d10d8988f837979652762574c2d2a842202";

Test(key_file, loads_64_hex_digits_with_trailing_whitespace)
{
	char dir[DIR_LEN], path_buf[PATH_LEN], *path;
	scratch_dir(dir);
	uint8_t key[32], want[32];

	hex_decode(good_hex, want, 32);
	path = write_key_file(dir, "k1", "1522178D33A4CF80130A5B1649907D10d8988f837979652762574c2d2a842202 \r\n\n", 0600, path_buf);
	cr_assert_eq(mm_cryptopan_key_load(path, key), 0, "%s", mm_last_error());
	cr_assert_eq(memcmp(key, want, 32), 0);
	path = write_key_file(dir, "k2", good_hex, 0400, path_buf);
	cr_assert_eq(mm_cryptopan_key_load(path, key), 0, "%s", mm_last_error());
}

Test(key_file, refuses_group_or_other_bits_naming_path_and_mode)
{
	char dir[DIR_LEN], path_buf[PATH_LEN], *path;
	scratch_dir(dir);
	uint8_t key[32];

	path = write_key_file(dir, "wide", good_hex, 0644, path_buf);
	cr_assert_eq(mm_cryptopan_key_load(path, key), MM_EPERM);
	cr_assert(strstr(mm_last_error(), path), "%s", mm_last_error());
	cr_assert(strstr(mm_last_error(), "0644"), "%s", mm_last_error());
	path = write_key_file(dir, "group", good_hex, 0640, path_buf);
	cr_assert_eq(mm_cryptopan_key_load(path, key), MM_EPERM);
	cr_assert(strstr(mm_last_error(), "0640"), "%s", mm_last_error());
	cr_assert_eq(mm_cryptopan_key_load(dir, key), MM_EPERM, "a directory was taken as a key file");
}

Test(key_file, refuses_short_long_and_non_hex_keys_without_quoting_them)
{
	char dir[DIR_LEN], path_buf[PATH_LEN], *path;
	scratch_dir(dir);
	uint8_t key[32];
	char text[200];

	snprintf(text, sizeof(text), "%.63s\n", good_hex);
	path = write_key_file(dir, "short", text, 0600, path_buf);
	cr_assert_eq(mm_cryptopan_key_load(path, key), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "63 hex digits; expected 64"), "%s", mm_last_error());
	cr_assert(strstr(mm_last_error(), path));

	snprintf(text, sizeof(text), "%s00\n", good_hex);
	path = write_key_file(dir, "long", text, 0600, path_buf);
	cr_assert_eq(mm_cryptopan_key_load(path, key), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "66 hex digits"), "%s", mm_last_error());

	snprintf(text, sizeof(text), "%s", good_hex);
	text[4] = 'g';
	path = write_key_file(dir, "nonhex", text, 0600, path_buf);
	cr_assert_eq(mm_cryptopan_key_load(path, key), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "byte 5 is not a hex digit"), "%s", mm_last_error());
	cr_assert_null(strstr(mm_last_error(), "1522"), "the message quotes the key: %s", mm_last_error());

	path = write_key_file(dir, "empty", "", 0600, path_buf);
	cr_assert_eq(mm_cryptopan_key_load(path, key), MM_EFORMAT);
	cr_assert(strstr(mm_last_error(), "0 hex digits"), "%s", mm_last_error());

	cr_assert_eq(mm_cryptopan_key_load("/nonexistent/cryptopan.key", key), MM_ENOENT);
}

Test(key_file, generated_keys_are_0600_new_files_that_load)
{
	char dir[DIR_LEN], path_buf[PATH_LEN], *path;
	scratch_dir(dir);
	uint8_t a[32], b[32];
	struct stat st;

	path = path_buf;
	snprintf(path, PATH_LEN, "%s/gen.key", dir);
	cr_assert_eq(mm_cryptopan_key_generate(path), 0, "%s", mm_last_error());
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(st.st_size, 65);
	cr_assert_eq(mm_cryptopan_key_load(path, a), 0, "%s", mm_last_error());
	cr_assert_eq(mm_cryptopan_key_generate(path), MM_EEXIST);
	cr_assert_eq(mm_cryptopan_key_load(path, b), 0);
	cr_assert_eq(memcmp(a, b, 32), 0, "an existing key was overwritten");

	const char *argv[] = { tu_mamori_bin(), "cryptopan", "--gen-key", path, NULL };
	cr_assert_eq(tu_run(argv, NULL, NULL, NULL), 3, "the CLI overwrote an existing key");
	unlink(path);
	cr_assert_eq(tu_run(argv, NULL, NULL, NULL), 0);
	cr_assert_eq(mm_cryptopan_key_load(path, b), 0);
	cr_assert_neq(memcmp(a, b, 32), 0, "two generated keys are equal");
}

/* ---- the CLI's handling of odd lines ---- */

Test(cli, bad_lines_are_named_and_skipped_comments_pass)
{
	char dir[DIR_LEN], path_buf[PATH_LEN], in_path[PATH_LEN], *key_path, *out = NULL, *err = NULL;
	static const char input[] = "# header\n"
				    "192.0.2.1\n"
				    "\n"
				    "not-an-address\n"
				    "  2001:db8::1\t\r\n"
				    "10.0.0.300\n"
				    "198.51.100.7";

	scratch_dir(dir);
	key_path = write_key_file(dir, "key", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n", 0600, path_buf);
	snprintf(in_path, PATH_LEN, "%s/in.txt", dir);
	cr_assert_eq(tu_write_file(in_path, input, strlen(input)), 0);
	const char *argv[] = { tu_mamori_bin(), "cryptopan", "-k", key_path, NULL };
	cr_assert_eq(tu_run(argv, in_path, &out, &err), 2, "stderr: %s", err);
	/* 192.0.2.1 and 2001:db8::1 under the key 00 01 .. 1f: yacryptopan's published
	 * answers; the last line (no newline at the end) from the reference here. */
	uint8_t key[32], last[16] = { 0 };
	struct mm_addr want_last;
	char buf[MM_ADDR_STRLEN], want[256];
	struct ref r;

	for (int j = 0; j < 32; j++)
		key[j] = (uint8_t)j;
	ref_init(&r, key, mm_aes128_encrypt_portable);
	put_be128(ref_anon(&r, (unsigned __int128)0xc6336407u << 96, 32), last);
	mm_addr_set_v4(&want_last, last);
	snprintf(want, sizeof(want), "# header\n2.90.93.17\n\n\ndd92:2c44:3fc0:ff1e:7ff9:c7f0:8180:7e00\n\n%s\n",
		 fmt(&want_last, buf));
	cr_assert_str_eq(out, want, "output:\n%s", out);
	cr_assert(strstr(err, "<stdin>:4: not an IPv4 or IPv6 address"), "%s", err);
	cr_assert(strstr(err, "<stdin>:6: not an IPv4 or IPv6 address"), "%s", err);
	cr_assert(strstr(err, "2 bad lines"), "%s", err);
	cr_assert_null(strstr(err, "not-an-address"), "the bad line was echoed: %s", err);

	free(err);
	const char *wide[] = { tu_mamori_bin(), "cryptopan", "-k", in_path, NULL };
	cr_assert_eq(tu_run(wide, NULL, NULL, &err), 3);
	cr_assert(strstr(err, "refusing"), "%s", err);
	free(out);
	free(err);
}
