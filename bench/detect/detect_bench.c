/*
 * Detection throughput: loads every flow of a store (in export order, as
 * `mamori detect` feeds them), then times mm_detect_feed + flush over them
 * with all detectors on (intel too, when DATA/intel has a compiled set),
 * best of N runs. Prints flows, alerts, a digest of the alerts raised (the
 * same digest: the same alerts, in the same order), seconds and cpu_seconds of the best
 * run, flows_per_s (wall clock) and flows_per_cpu_s (one core's CPU time).
 * Usage: detect_bench DATA [RUNS]
 */
#include "bench_flows.h"

#include "mamori/detect.h"
#include "mamori/hash.h"
#include "mamori/intel.h"
#include "mamori/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Counts alerts and folds each one's NDJSON line, in emission order, into a
 * digest: two builds that print the same digest raised the same alerts. */
struct tally {
	uint64_t alerts, digest;
};

static void count_alert(void *ctx, const struct mm_alert *a)
{
	static const struct mm_hash_key zero;
	struct tally *t = ctx;
	char line[MM_ALERT_JSON_MAX];
	int len = mm_alert_to_json(a, line, sizeof(line));
	uint64_t pair[2] = { t->digest, mm_siphash13(&zero, line, len > 0 ? (size_t)len : 0) };

	t->alerts++;
	t->digest = mm_siphash13(&zero, pair, sizeof(pair));
}

static double now_s(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct bench_flows fs;
	struct mm_detect_config cfg;
	struct mm_intel *intel = NULL;
	char intel_dir[4096];
	int runs = argc > 2 ? atoi(argv[2]) : 3;
	double best = 0, best_cpu = 0;
	struct tally tally = { 0 };

	if (argc < 2) {
		fprintf(stderr, "usage: detect_bench DATA [RUNS]\n");
		return 1;
	}
	if (bench_flows_load(&fs, argv[1]) < 0) {
		fprintf(stderr, "detect_bench: %s\n", mm_last_error());
		return 1;
	}
	mm_detect_config_default(&cfg);
	/* The standard scenario's domestic side (docs/scenario.md). */
	mm_detect_config_set(&cfg, "domestic", "10.0.0.0/8,198.18.0.0/15,2001:db8::/32");
	/* A fixed key: sketches (and so alerts) are the same run after run, which the digest needs. */
	cfg.hash_key_set = true;
	memset(&cfg.hash_key, 0x5a, sizeof(cfg.hash_key));
	snprintf(intel_dir, sizeof(intel_dir), "%s/intel", argv[1]);
	if (mm_intel_open(intel_dir, &intel) == 0)
		cfg.intel = intel;
	for (int r = 0; r < runs; r++) {
		struct mm_detect *d;
		double t0, c0, dt, dc;

		tally = (struct tally){ 0 };
		if (mm_detect_new(&d, &cfg, count_alert, &tally) < 0) {
			fprintf(stderr, "detect_bench: %s\n", mm_last_error());
			return 1;
		}
		t0 = now_s(CLOCK_MONOTONIC);
		c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
		for (size_t i = 0; i < fs.n; i += 4096)
			mm_detect_feed(d, fs.v + i, fs.n - i < 4096 ? fs.n - i : 4096);
		mm_detect_flush(d);
		dt = now_s(CLOCK_MONOTONIC) - t0;
		dc = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
		mm_detect_free(d);
		if (best == 0 || dt < best)
			best = dt;
		if (best_cpu == 0 || dc < best_cpu)
			best_cpu = dc;
	}
	/* CPU time too: on a shared machine the wall clock measures the neighbours. */
	printf("flows %zu\nalerts %" PRIu64 "\nalerts_digest %016" PRIx64 "\nseconds %.3f\ncpu_seconds %.3f\nflows_per_s %.0f\nflows_per_cpu_s %.0f\n",
	       fs.n, tally.alerts, tally.digest, best, best_cpu, (double)fs.n / best, (double)fs.n / best_cpu);
	mm_intel_close(intel);
	bench_flows_free(&fs);
	return 0;
}
