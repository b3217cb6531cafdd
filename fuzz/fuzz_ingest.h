/*
 * The shared body of the NetFlow v5, v9 and IPFIX fuzz targets: export
 * messages of one version go into one long-lived ingest object, so that
 * templates learnt from one input shape the decoding of the next, with
 * small caps so that template storms and held-set limits are reached.
 * Every record is also rendered as ipfix-json, so the JSON writer sees
 * hostile fields too.
 */
#ifndef MAMORI_FUZZ_INGEST_H
#define MAMORI_FUZZ_INGEST_H

#include "mamori/ingest.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

static void fuzz_discard_flows(void *ctx, const struct mm_flow *flows, size_t n)
{
	(void)ctx;
	(void)flows;
	(void)n;
}

static void fuzz_render_record(void *ctx, const struct mm_ingest_record *rec)
{
	mm_ingest_json_write(ctx, rec);
}

/* Feeds data as a message of the given version (its first two bytes are forced). */
static int fuzz_ingest_one(uint8_t version, const uint8_t *data, size_t size)
{
	static struct mm_ingest *ing;
	static FILE *sink;
	static uint64_t now_ns;
	struct mm_addr exporter;
	uint8_t msg[65536];

	if (!ing) {
		struct mm_ingest_config cfg;
		sink = fopen("/dev/null", "w");
		mm_ingest_config_default(&cfg);
		cfg.max_templates = 64;
		cfg.max_template_bytes = 64u << 10;
		cfg.max_domains = 64;
		if (!sink || mm_ingest_new(&ing, &cfg, fuzz_discard_flows, fuzz_render_record, sink))
			return 0;
	}
	if (size < 2 || size > sizeof(msg))
		return 0;
	/* The first input byte picks one of four exporters. */
	mm_addr_set_v4_u32(&exporter, 0xc0000200u | (data[0] & 3u));
	msg[0] = 0;
	msg[1] = version;
	for (size_t i = 2; i < size; i++)
		msg[i] = data[i];
	now_ns += 1000000000ull;
	mm_ingest_message(ing, &exporter, 2055, msg, size, now_ns);
	return 0;
}

#endif
