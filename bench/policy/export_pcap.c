/*
 * Writes a capture of NetFlow v9 export packets (the collect benchmark's
 * deterministic stream, bench/collect/export_gen.h) so `mamori collect
 * --from-pcap` can replay the same records with and without the
 * jurisdiction policy and the difference is the policy's cost alone.
 *
 * usage: policy_export_pcap OUT.pcap RECORDS
 */
#include "mamori/status.h"
#include "mamori/synth.h"

#include "../collect/export_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE_SECS 1767225600u /* 2026-01-01 */

int main(int argc, char **argv)
{
	struct mm_packet_spec spec = { .proto = 17, .sport = 2055, .dport = 2055 };
	struct mm_pcap_writer *w = NULL;
	struct gen_stream g;
	uint64_t want, records = 0, ts = (uint64_t)BASE_SECS * 1000000000u;
	uint8_t frame[GEN_MSG_MAX + 128];
	int rc;

	if (argc != 3 || (want = strtoull(argv[2], NULL, 10)) == 0) {
		fprintf(stderr, "usage: policy_export_pcap OUT.pcap RECORDS\n");
		return 1;
	}
	mm_addr_parse(&spec.src, "192.0.2.1");
	mm_addr_parse(&spec.dst, "127.0.0.1");
	if ((rc = gen_stream_init(&g, 9, 1, 4096, 1, BASE_SECS)) != 0 ||
	    (rc = mm_pcap_writer_open(&w, argv[1], 1, 65535)) != 0) {
		fprintf(stderr, "policy_export_pcap: %s\n", mm_last_error());
		return 1;
	}
	for (uint32_t ms = 0; records < want; ms++) {
		const struct gen_msg *m = gen_stream_next(&g, BASE_SECS + ms / 1000, ms);
		size_t len;

		spec.payload_len = m->len;
		spec.payload = m->data;
		len = mm_packet_build(&spec, frame, sizeof(frame));
		if ((rc = mm_pcap_writer_write(w, ts + (uint64_t)ms * 1000000u, frame, (uint32_t)len, (uint32_t)len)) != 0)
			break;
		records += m->n_records;
	}
	gen_stream_free(&g);
	if (rc != 0 || (rc = mm_pcap_writer_close(w)) != 0) {
		fprintf(stderr, "policy_export_pcap: %s\n", mm_last_error());
		return 1;
	}
	printf("records=%llu\n", (unsigned long long)records);
	return 0;
}
