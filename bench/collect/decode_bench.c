/*
 * Decode-only benchmark: export messages already in memory go through
 * mm_ingest_message with a sink that only counts, so what is timed is the
 * decoder (header, sets, template lookup, record ops, flow batching). Prints
 * records per CPU-second of this thread for NetFlow v5, v9 and IPFIX, and
 * checks that every record was decoded and no sequence gap was seen.
 * Usage: decode_bench [RECORDS_PER_RUN [RUNS]]
 */
#include "export_gen.h"

#include "mamori/ingest.h"
#include "mamori/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RING_MSGS 512          /* distinct messages, ~700 KiB: larger than L2, like a live stream */
#define DEFAULT_RECORDS 20000000ull
#define DEFAULT_RUNS 3
#define BASE_SECS 1700000000u

struct sink {
	uint64_t flows;
	uint64_t checksum;         /* keeps the decoded values live */
};

static void count_flows(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct sink *s = ctx;

	s->flows += n;
	s->checksum += flows[n - 1].fwd_bytes ^ flows[0].last_ns;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Decodes `records` records of one version; 0 and the best rate in *rate, or a status. */
static int bench_version(uint16_t version, uint64_t records, unsigned runs, double *rate)
{
	struct mm_ingest_config cfg;
	struct mm_ingest *ing = NULL;
	struct mm_ingest_stats st;
	struct gen_stream g;
	struct sink sink = { 0 };
	struct mm_addr exporter;
	int rc;

	*rate = 0;
	mm_addr_set_v4_u32(&exporter, 0x7f000001);
	mm_ingest_config_default(&cfg);
	rc = gen_stream_init(&g, version, 1, RING_MSGS, 42, BASE_SECS);
	if (rc)
		return rc;
	rc = mm_ingest_new(&ing, &cfg, count_flows, NULL, &sink);
	if (rc)
		goto out;
	for (unsigned run = 0; run < runs; run++) {
		uint64_t done = 0, t0 = thread_cpu_ns(), ns;

		while (done < records) {
			const struct gen_msg *m = gen_stream_next(&g, BASE_SECS, 0);
			rc = mm_ingest_message(ing, &exporter, 2055, m->data, m->len, 0);
			if (rc)
				goto out;
			done += m->n_records;
		}
		ns = thread_cpu_ns() - t0;
		if (ns && (double)done * 1e9 / (double)ns > *rate)
			*rate = (double)done * 1e9 / (double)ns;
	}
	mm_ingest_get_totals(ing, &st);
	if (st.flows != sink.flows || st.records_dropped || st.sequence_gaps || st.sequence_reorders ||
	    st.messages_malformed) {
		rc = mm_fail(MM_EINTERNAL, "decode_bench: v%u: flows %" PRIu64 " (sink %" PRIu64 "), dropped %" PRIu64
			     ", gaps %" PRIu64 ", reorders %" PRIu64 ", malformed %" PRIu64, version, st.flows,
			     sink.flows, st.records_dropped, st.sequence_gaps, st.sequence_reorders,
			     st.messages_malformed);
		goto out;
	}
	printf("v%-2u records/s/core %6.2f M  (%" PRIu64 " flows decoded, checksum %016" PRIx64 ")\n", version,
	       *rate / 1e6, st.flows, sink.checksum);
out:
	mm_ingest_free(ing);
	gen_stream_free(&g);
	return rc;
}

int main(int argc, char **argv)
{
	static const uint16_t versions[] = { 5, 9, 10 };
	uint64_t records = argc > 1 ? strtoull(argv[1], NULL, 10) : DEFAULT_RECORDS;
	unsigned runs = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : DEFAULT_RUNS;
	double rate, worst = 0;

	if (!records || !runs) {
		fprintf(stderr, "usage: decode_bench [RECORDS_PER_RUN [RUNS]]\n");
		return 1;
	}
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		if (bench_version(versions[i], records, runs, &rate)) {
			fprintf(stderr, "decode_bench: %s\n", mm_last_error());
			return 1;
		}
		worst = i == 0 || rate < worst ? rate : worst;
	}
	printf("slowest     %6.2f M records/s/core (target 10)\n", worst / 1e6);
	return 0;
}
