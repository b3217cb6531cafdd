/*
 * Crypto-PAn throughput on one core: addresses per second for IPv4 and
 * IPv6, forward and reverse, with VAES, AES-NI and the portable AES, and the
 * same for the straightforward construction that encrypts one block at a
 * time per bit (tests/cryptopan_ref.h, the way the original implementation
 * works), which stands in for a competing tool: Debian packages none.
 * Prints "name value" lines for bench/policy/run. CPU time of this thread,
 * best of several runs.
 * Usage: cryptopan_bench [RUNS]
 */
#include "cryptopan_ref.h"
#include "mamori/cryptopan.h"
#include "mamori/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t rng_state = 0x6d616d6f7269ULL;

static uint64_t rng_next(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct mm_addr *random_addrs(size_t n, int v4)
{
	struct mm_addr *a = malloc(n * sizeof(*a));

	for (size_t i = 0; i < n && a; i++) {
		uint8_t b[16];
		for (int j = 0; j < 16; j++)
			b[j] = (uint8_t)rng_next();
		if (v4) {
			mm_addr_set_v4(a + i, b);
		} else {
			b[0] = (uint8_t)(0x20 | (b[0] & 0x0f)); /* global unicast */
			mm_addr_set_v6(a + i, b);
		}
	}
	return a;
}

static uint64_t sink;

enum method { LIB_FORWARD, LIB_REVERSE, BASELINE };

static double run_once(enum method m, const struct mm_cryptopan *c, const struct ref *r,
		       const struct mm_addr *in, size_t n)
{
	double t0 = cpu_seconds();

	for (size_t i = 0; i < n; i++) {
		struct mm_addr out;
		if (m == LIB_FORWARD) {
			mm_cryptopan_anonymize(c, &in[i], &out);
		} else if (m == LIB_REVERSE) {
			mm_cryptopan_deanonymize(c, &in[i], &out);
		} else {
			unsigned v4 = mm_addr_is_v4(&in[i]);
			uint8_t b[16] = { 0 };
			memcpy(b, v4 ? in[i].b + 12 : in[i].b, v4 ? 4 : 16);
			put_be128(ref_anon(r, be128(b), v4 ? 32 : 128), out.b);
		}
		sink ^= out.b[15];
	}
	return cpu_seconds() - t0;
}

/* Times one method on n IPv4 addresses, then n/5 IPv6 ones (five times the work each). */
static void measure(const char *name, enum method m, const struct mm_cryptopan *c,
		    const struct ref *r, size_t n, int runs)
{
	for (int v4 = 1; v4 >= 0; v4--) {
		size_t count = v4 ? n : n / 5;
		struct mm_addr *in = random_addrs(count, v4);
		double best = 0;

		if (!in) {
			fprintf(stderr, "cryptopan_bench: out of memory\n");
			exit(3);
		}
		for (int i = 0; i < runs; i++) {
			double sec = run_once(m, c, r, in, count);
			if (i == 0 || sec < best)
				best = sec;
		}
		printf("%s-%s %.0f\n", name, v4 ? "ipv4" : "ipv6", (double)count / (best > 0 ? best : 1e-9));
		fflush(stdout);
		free(in);
	}
}

/* Builds the mapping for impl, printing its setup time; exits when it cannot. */
static struct mm_cryptopan *make(const uint8_t key[MM_CRYPTOPAN_KEY_LEN], enum mm_cryptopan_impl impl,
				 const char *name)
{
	struct mm_cryptopan *c;
	double t0 = cpu_seconds();

	if (mm_cryptopan_new(key, impl, &c) < 0) {
		fprintf(stderr, "cryptopan_bench: %s\n", mm_last_error());
		exit(3);
	}
	printf("setup-ms-%s %.1f\n", name, (cpu_seconds() - t0) * 1e3);
	return c;
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 5;
	uint8_t key[MM_CRYPTOPAN_KEY_LEN];
	struct mm_cryptopan *aesni = NULL, *vaes = NULL, *portable;
	struct ref ref_aesni = { 0 }, ref_portable = { 0 };

	if (runs < 1)
		runs = 1;
	for (int i = 0; i < MM_CRYPTOPAN_KEY_LEN; i++)
		key[i] = (uint8_t)rng_next();
	portable = make(key, MM_CRYPTOPAN_PORTABLE, "portable");
	ref_init(&ref_portable, key, mm_aes128_encrypt_portable);
	if (mm_aes128_have_aesni()) {
		aesni = make(key, MM_CRYPTOPAN_AESNI, "aesni");
		ref_init(&ref_aesni, key, mm_aes128_encrypt_aesni);
		measure("aesni-forward", LIB_FORWARD, aesni, NULL, 1000000, runs);
		measure("aesni-reverse", LIB_REVERSE, aesni, NULL, 200000, runs);
		measure("aesni-baseline", BASELINE, NULL, &ref_aesni, 200000, runs);
	}
	if (mm_aes128_have_vaes()) {
		vaes = make(key, MM_CRYPTOPAN_VAES, "vaes");
		measure("vaes-forward", LIB_FORWARD, vaes, NULL, 1000000, runs);
	}
	measure("portable-forward", LIB_FORWARD, portable, NULL, 20000, runs);
	measure("portable-baseline", BASELINE, NULL, &ref_portable, 2500, runs);
	printf("checksum %u\n", (unsigned)(sink & 0xff));
	mm_cryptopan_free(aesni);
	mm_cryptopan_free(vaes);
	mm_cryptopan_free(portable);
	mm_aes128_wipe(&ref_aesni.aes);
	mm_aes128_wipe(&ref_portable.aes);
	return 0;
}
