/*
 * Lookup rate of the compiled country/ASN table against libmaxminddb on a
 * MaxMind DB built from the same data (bench/enrich/run builds both).
 * Single thread. Each rate is the best of many short timed slices (2^16
 * lookups, a few milliseconds) taken in turn over a fixed set of 4 M
 * addresses: on a shared machine a slice that nobody interrupted shows
 * the code's own speed, and both tools are timed the same way.
 *
 *   geo_bench TABLE [MMDB]            time lookups, print rates and ratios
 *   geo_bench --generate DIR          write a synthetic RIR file of real size
 */
#include "mamori/enrich.h"
#include "mamori/status.h"

#include <arpa/inet.h>
#include <maxminddb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_ADDR (1u << 22)
#define SLICE (1u << 16)
#define N_SLICES 256 /* 4 passes over the set */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* splitmix64: fixed seed, so every run times the same addresses. */
static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* An address in 2000::/3 (global unicast), or in the densest RIR region, APNIC's 2400::/12. */
static void random_v6(struct mm_addr *a, bool dense)
{
	uint64_t hi = rnd(), lo = rnd();

	hi = dense ? 0x2400ull << 48 | hi >> 12 : 0x2000ull << 48 | hi >> 3;
	for (int i = 0; i < 8; i++) {
		a->b[i] = (uint8_t)(hi >> (56 - 8 * i));
		a->b[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
	}
}

/*
 * Address sets. random4: uniform over IPv4. random6: uniform over
 * 2000::/3, or over APNIC's 2400::/12, where the RIR ranges are densest
 * (the slowest IPv6 case). mix: what a border sensor sees, roughly: 85%
 * IPv4 and 15% IPv6, all in delegated space (addresses
 * the table knows), drawn with a skew so a few thousand hosts carry most
 * lookups, as in real flows.
 */
static void make_random4(struct mm_addr *v)
{
	for (size_t i = 0; i < N_ADDR; i++)
		mm_addr_set_v4_u32(&v[i], (uint32_t)rnd());
}

static void make_random6(struct mm_addr *v, bool dense)
{
	for (size_t i = 0; i < N_ADDR; i++)
		random_v6(&v[i], dense);
}

static void make_mix(const struct mm_geo *g, struct mm_addr *v)
{
	enum { POOL = 65536 };
	struct mm_addr *pool = malloc(POOL * sizeof(*pool));
	struct mm_geo_answer ans;

	for (size_t i = 0; i < POOL;) {
		if (rnd() % 100 < 85)
			mm_addr_set_v4_u32(&pool[i], (uint32_t)rnd());
		else
			random_v6(&pool[i], rnd() % 2);
		mm_geo_lookup(g, &pool[i], &ans);
		if (ans.country[0])
			i++;
	}
	for (size_t i = 0; i < N_ADDR; i++) {
		/* min of two uniforms: small pool indices are the busy hosts. */
		uint64_t x = rnd() % POOL, y = rnd() % POOL, z = rnd() % POOL;

		v[i] = pool[x < y ? (x < z ? x : z) : (y < z ? y : z)];
	}
	free(pool);
}

static double time_table(const struct mm_geo *g, const struct mm_addr *v, uint64_t *sink)
{
	double best = 1e30;

	for (size_t k = 0; k < N_SLICES; k++) {
		const struct mm_addr *s = v + (k * SLICE) % N_ADDR;
		struct mm_geo_answer ans;
		uint64_t acc = 0;
		double t0 = now();

		for (size_t i = 0; i < SLICE; i++) {
			mm_geo_lookup(g, &s[i], &ans);
			acc += ans.asn + (uint8_t)ans.country[0];
		}
		t0 = now() - t0;
		*sink += acc;
		if (t0 < best)
			best = t0;
	}
	return (double)SLICE / best;
}

static double time_flows(const struct mm_geo *g, const struct mm_addr *v, uint64_t *sink)
{
	enum { BATCH = SLICE / 2 };
	struct mm_flow *f = calloc(BATCH, sizeof(*f));
	double best = 1e30;

	for (size_t p = 0; p < N_SLICES; p++) {
		const struct mm_addr *s = v + (p * SLICE) % N_ADDR;
		double t0;

		for (size_t k = 0; k < BATCH; k++) {
			memset(f[k].src_country, 0, 4);
			f[k].src_as = f[k].dst_as = 0;
			f[k].src = s[2 * k];
			f[k].dst = s[2 * k + 1];
		}
		t0 = now();
		*sink += mm_geo_lookup_flows(g, f, BATCH);
		t0 = now() - t0;
		if (t0 < best)
			best = t0;
	}
	free(f);
	return (double)SLICE / best;
}

/* IPv4 as AF_INET, so libmaxminddb starts at its cached IPv4 subtree. */
static void to_sockaddr(const struct mm_addr *a, struct sockaddr_storage *s)
{
	memset(s, 0, sizeof(*s));
	if (mm_addr_is_v4(a)) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)s;

		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a->b + 12, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)s;

		s6->sin6_family = AF_INET6;
		memcpy(s6->sin6_addr.s6_addr, a->b, 16);
	}
}

static double time_mmdb(MMDB_s *db, const struct sockaddr_storage *s, bool with_value, uint64_t *sink)
{
	double best = 1e30;

	for (size_t k = 0; k < N_SLICES / 4; k++) {
		const struct sockaddr_storage *sl = s + (k * SLICE) % N_ADDR;
		uint64_t acc = 0;
		double t0 = now();

		for (size_t i = 0; i < SLICE; i++) {
			int err;
			MMDB_lookup_result_s r = MMDB_lookup_sockaddr(db, (const struct sockaddr *)&sl[i], &err);

			if (r.found_entry && with_value) {
				MMDB_entry_data_s d;

				if (MMDB_get_value(&r.entry, &d, "country", "iso_code", NULL) == MMDB_SUCCESS && d.has_data)
					acc += (uint8_t)d.utf8_string[0];
			} else {
				acc += r.found_entry;
			}
		}
		t0 = now() - t0;
		*sink += acc;
		if (t0 < best)
			best = t0;
	}
	return (double)SLICE / best;
}

/* Share of addresses where both give the same country (unknown = unknown). */
static double agreement(const struct mm_geo *g, MMDB_s *db, const struct mm_addr *v, const struct sockaddr_storage *s)
{
	size_t same = 0;

	for (size_t i = 0; i < N_ADDR; i++) {
		struct mm_geo_answer ans;
		char cc[2] = { 0, 0 };
		int err;
		MMDB_lookup_result_s r = MMDB_lookup_sockaddr(db, (const struct sockaddr *)&s[i], &err);
		MMDB_entry_data_s d;

		if (r.found_entry && MMDB_get_value(&r.entry, &d, "country", "iso_code", NULL) == MMDB_SUCCESS &&
		    d.has_data && d.data_size == 2)
			memcpy(cc, d.utf8_string, 2);
		mm_geo_lookup(g, &v[i], &ans);
		same += memcmp(cc, ans.country, 2) == 0;
	}
	return 100.0 * (double)same / N_ADDR;
}

/*
 * A delegated-extended file shaped like the real ones (about 60,000 IPv4
 * and 30,000 IPv6 allocations of mixed sizes, ~240 countries), for runs
 * without ../shared/data.
 */
static int generate(const char *dir)
{
	char path[4096], cc[3] = { 0 };
	uint64_t v4 = 1u << 24, v6 = 0x2001020000000000ull;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/delegated-synthetic-extended.txt", dir);
	fp = fopen(path, "w");
	if (!fp) {
		perror(path);
		return 1;
	}
	fprintf(fp, "2.3|synthetic|20260101|90000||20260101|+0000\n");
	for (int i = 0; i < 60000; i++) {
		uint32_t size = 256u << (rnd() % 9); /* /24 .. /16, not always aligned */
		char a[INET_ADDRSTRLEN];
		struct in_addr in = { htonl((uint32_t)v4) };

		cc[0] = (char)('A' + rnd() % 16);
		cc[1] = (char)('A' + rnd() % 16);
		inet_ntop(AF_INET, &in, a, sizeof(a));
		fprintf(fp, "synthetic|%s|ipv4|%s|%u|20260101|allocated|id%d\n", cc, a, size * 3 / 2, i);
		v4 += size * 3 / 2 + (rnd() % 4) * 256;
	}
	for (int i = 0; i < 30000; i++) {
		unsigned len = 29 + (unsigned)(rnd() % 20);
		uint8_t b[16] = { 0 };
		char a[INET6_ADDRSTRLEN];

		v6 = (v6 + (1ull << (64 - len)) - 1) & ~((1ull << (64 - len)) - 1);
		for (int k = 0; k < 8; k++)
			b[k] = (uint8_t)(v6 >> (56 - 8 * k));
		inet_ntop(AF_INET6, b, a, sizeof(a));
		cc[0] = (char)('A' + rnd() % 16);
		cc[1] = (char)('A' + rnd() % 16);
		fprintf(fp, "synthetic|%s|ipv6|%s|%u|20260101|allocated|id%d\n", cc, a, len, i);
		v6 += (1ull << (64 - len)) * (1 + rnd() % 3);
	}
	if (fclose(fp) != 0) {
		perror(path);
		return 1;
	}
	printf("%s\n", path);
	return 0;
}

int main(int argc, char **argv)
{
	struct mm_addr *rand4, *rand6, *dense6, *mix;
	struct sockaddr_storage *s4 = NULL, *smix = NULL;
	struct mm_geo *g;
	struct mm_geo_info info;
	MMDB_s db;
	uint64_t sink = 0;
	double t_rand, t_rand6, t_dense6, t_mix, t_flows;

	if (argc == 3 && strcmp(argv[1], "--generate") == 0)
		return generate(argv[2]);
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: geo_bench TABLE [MMDB] | geo_bench --generate DIR\n");
		return 1;
	}
	if (mm_geo_open(argv[1], &g) < 0) {
		fprintf(stderr, "geo_bench: %s\n", mm_last_error());
		return 1;
	}
	mm_geo_info(g, &info);
	printf("table %s: %u sources, %llu IPv4 blocks, %llu IPv6 ranges, %.1f MiB\n", argv[1], info.n_sources,
	       (unsigned long long)info.n_v4_chunks, (unsigned long long)info.n_v6_ranges,
	       (double)info.file_len / 1048576.0);
	rand4 = malloc(N_ADDR * sizeof(*rand4));
	rand6 = malloc(N_ADDR * sizeof(*rand6));
	dense6 = malloc(N_ADDR * sizeof(*dense6));
	mix = malloc(N_ADDR * sizeof(*mix));
	make_random4(rand4);
	make_random6(rand6, false);
	make_random6(dense6, true);
	make_mix(g, mix);

	t_rand = time_table(g, rand4, &sink);
	t_rand6 = time_table(g, rand6, &sink);
	t_dense6 = time_table(g, dense6, &sink);
	t_mix = time_table(g, mix, &sink);
	t_flows = time_flows(g, mix, &sink);
	printf("mamori  random IPv4          %8.1f M lookups/s\n", t_rand / 1e6);
	printf("mamori  random IPv6 2000::/3 %8.1f M lookups/s\n", t_rand6 / 1e6);
	printf("mamori  random IPv6 2400::/12%8.1f M lookups/s\n", t_dense6 / 1e6);
	printf("mamori  realistic mix        %8.1f M lookups/s\n", t_mix / 1e6);
	printf("mamori  flows (src+dst, mix) %8.1f M lookups/s\n", t_flows / 1e6);
	if (argc == 3) {
		double m_rand, m_mix, m_rand_v, m_mix_v;

		if (MMDB_open(argv[2], MMDB_MODE_MMAP, &db) != MMDB_SUCCESS) {
			fprintf(stderr, "geo_bench: cannot open %s\n", argv[2]);
			return 1;
		}
		s4 = malloc(N_ADDR * sizeof(*s4));
		smix = malloc(N_ADDR * sizeof(*smix));
		for (size_t i = 0; i < N_ADDR; i++) {
			to_sockaddr(&rand4[i], &s4[i]);
			to_sockaddr(&mix[i], &smix[i]);
		}
		m_rand = time_mmdb(&db, s4, false, &sink);
		m_mix = time_mmdb(&db, smix, false, &sink);
		m_rand_v = time_mmdb(&db, s4, true, &sink);
		m_mix_v = time_mmdb(&db, smix, true, &sink);
		printf("libmaxminddb random IPv4, lookup only       %8.1f M lookups/s\n", m_rand / 1e6);
		printf("libmaxminddb random IPv4, lookup + country  %8.1f M lookups/s\n", m_rand_v / 1e6);
		printf("libmaxminddb mix, lookup only               %8.1f M lookups/s\n", m_mix / 1e6);
		printf("libmaxminddb mix, lookup + country          %8.1f M lookups/s\n", m_mix_v / 1e6);
		printf("ratio mamori / libmaxminddb (lookup + country): random IPv4 %.1fx, mix %.1fx\n",
		       t_rand / m_rand_v, t_mix / m_mix_v);
		printf("ratio mamori / libmaxminddb (lookup only):      random IPv4 %.1fx, mix %.1fx\n", t_rand / m_rand,
		       t_mix / m_mix);
		printf("country agreement with libmaxminddb: random IPv4 %.3f%%, mix %.3f%%\n",
		       agreement(g, &db, rand4, s4), agreement(g, &db, mix, smix));
		MMDB_close(&db);
	}
	printf("target: >= 50 M lookups/s per core: %s (random IPv4), %s (random IPv6 2000::/3), %s (2400::/12), "
	       "%s (mix)\n",
	       t_rand >= 50e6 ? "met" : "NOT met", t_rand6 >= 50e6 ? "met" : "NOT met", t_dense6 >= 50e6 ? "met" : "NOT met",
	       t_mix >= 50e6 ? "met" : "NOT met");
	printf("(checksum %llu)\n", (unsigned long long)sink);
	free(s4);
	free(smix);
	free(rand4);
	free(rand6);
	free(dense6);
	free(mix);
	mm_geo_close(g);
	return 0;
}
