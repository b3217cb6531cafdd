/*
 * Audit log throughput: appends of realistic (~300-byte) entries either in
 * batches (one fsync per batch, a checkpoint every C entries) or one entry
 * per call from many threads (group commit shares the fsyncs). Also writes
 * the large logs that bench/audit/run times `mamori audit verify` on.
 * Usage: audit_bench batch DIR N BATCH CHECKPOINT_EVERY
 *        audit_bench threads DIR N THREADS
 *        audit_bench verify DIR   (mm_audit_verify, what `mamori audit verify` runs)
 */
#include "mamori/audit.h"
#include "mamori/status.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ENTRY_CAP 512

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* An entry like the guard writes for a query (about 300 bytes). */
static size_t make_entry(uint64_t i, char *buf)
{
	int n = snprintf(buf, ENTRY_CAP,
			 "{\"v\":1,\"time\":\"2026-11-22T08:%02u:%02u.%09" PRIu64 "Z\",\"mode\":\"enforced\","
			 "\"actor\":\"analyst-%" PRIu64 "\",\"act\":\"query\",\"outcome\":\"allowed\","
			 "\"authz\":\"A-2026-%04" PRIu64 "\",\"kind\":\"analyze\",\"legal_basis\":"
			 "\"art-12\",\"purpose\":\"incident\",\"emergency\":false,\"reason\":null,"
			 "\"detail\":{\"query\":\"dst port 22 and src net 198.51.100.0/24\","
			 "\"rows\":%" PRIu64 "}}",
			 (unsigned)(i / 60 % 60), (unsigned)(i % 60), i % 1000000000, i % 17, i % 9999,
			 i * 7 % 100000);
	return (size_t)n;
}

static int run_batch(const char *dir, uint64_t n, uint64_t batch, uint64_t cp_every)
{
	struct mm_audit_log *log = NULL;
	char *buf = malloc(batch * ENTRY_CAP);
	const char **texts = malloc(batch * sizeof(*texts));
	size_t *lens = malloc(batch * sizeof(*lens));
	uint64_t done = 0, next_cp = cp_every, base;
	double t0;
	int rc;

	if (!buf || !texts || !lens)
		return 1;
	rc = mm_audit_open(dir, &log);
	if (rc < 0)
		goto out;
	base = mm_audit_size(log);
	t0 = now_s();
	while (done < n) {
		uint64_t k = n - done < batch ? n - done : batch;
		for (uint64_t j = 0; j < k; j++) {
			texts[j] = buf + j * ENTRY_CAP;
			lens[j] = make_entry(base + done + j, buf + j * ENTRY_CAP);
		}
		rc = mm_audit_append_batch(log, texts, lens, k, NULL);
		if (rc < 0)
			goto out;
		done += k;
		if (cp_every && done >= next_cp) {
			rc = mm_audit_checkpoint(log);
			if (rc < 0)
				goto out;
			next_cp += cp_every;
		}
	}
	rc = mm_audit_close(log);
	log = NULL;
	if (rc == 0) {
		double s = now_s() - t0;
		printf("batch: %" PRIu64 " entries in %.2f s = %.0f entries/s (batch %" PRIu64
		       ", checkpoint every %" PRIu64 ")\n",
		       n, s, (double)n / s, batch, cp_every);
	}
out:
	if (rc < 0)
		fprintf(stderr, "audit_bench: %s\n", mm_last_error());
	mm_audit_close(log);
	free(buf);
	free(texts);
	free(lens);
	return rc < 0;
}

struct worker {
	struct mm_audit_log *log;
	uint64_t n, first;
	int rc;
};

static void *worker_run(void *p)
{
	struct worker *w = p;
	char buf[ENTRY_CAP];

	for (uint64_t i = 0; i < w->n && w->rc == 0; i++) {
		size_t len = make_entry(w->first + i, buf);
		w->rc = mm_audit_append(w->log, buf, len, NULL);
	}
	return NULL;
}

static int run_threads(const char *dir, uint64_t n, unsigned n_threads)
{
	struct mm_audit_log *log = NULL;
	pthread_t th[256];
	struct worker w[256];
	double t0, s;
	int rc;

	if (n_threads == 0 || n_threads > 256)
		return 1;
	rc = mm_audit_open(dir, &log);
	if (rc < 0) {
		fprintf(stderr, "audit_bench: %s\n", mm_last_error());
		return 1;
	}
	t0 = now_s();
	for (unsigned t = 0; t < n_threads; t++) {
		w[t] = (struct worker){ log, n / n_threads, t * (n / n_threads), 0 };
		pthread_create(&th[t], NULL, worker_run, &w[t]);
	}
	for (unsigned t = 0; t < n_threads; t++) {
		pthread_join(th[t], NULL);
		if (w[t].rc < 0)
			rc = w[t].rc;
	}
	s = now_s() - t0;
	if (rc == 0)
		rc = mm_audit_close(log);
	else
		mm_audit_close(log);
	if (rc < 0) {
		fprintf(stderr, "audit_bench: %s\n", mm_last_error());
		return 1;
	}
	printf("threads: %" PRIu64 " single-entry appends from %u threads in %.2f s = %.0f "
	       "entries/s (each durable on return)\n",
	       n / n_threads * n_threads, n_threads, s, (double)(n / n_threads * n_threads) / s);
	return 0;
}

static int run_verify(const char *dir)
{
	struct mm_audit_verify_result r;
	double t0 = now_s(), s;
	int rc = mm_audit_verify(dir, NULL, NULL, 0, &r);

	s = now_s() - t0;
	if (rc < 0 || !r.ok) {
		fprintf(stderr, "audit_bench: verify: %s\n", rc < 0 ? mm_last_error() : r.problem);
		return 1;
	}
	printf("verify: %" PRIu64 " entries, %" PRIu64 " checkpoints in %.2f s = %.0f entries/s "
	       "(sha-256: %s)\n",
	       r.n_entries, r.n_checkpoints, s, (double)r.n_entries / s,
	       r.sha_accelerated ? "SHA-NI" : "portable");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "verify") == 0)
		return run_verify(argv[2]);
	if (argc == 6 && strcmp(argv[1], "batch") == 0)
		return run_batch(argv[2], strtoull(argv[3], NULL, 10), strtoull(argv[4], NULL, 10),
				 strtoull(argv[5], NULL, 10));
	if (argc == 5 && strcmp(argv[1], "threads") == 0)
		return run_threads(argv[2], strtoull(argv[3], NULL, 10),
				   (unsigned)strtoul(argv[4], NULL, 10));
	fprintf(stderr, "usage: audit_bench batch DIR N BATCH CHECKPOINT_EVERY\n"
			"       audit_bench threads DIR N THREADS\n"
			"       audit_bench verify DIR\n");
	return 2;
}
