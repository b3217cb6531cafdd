/*
 * libFuzzer target for the capture file reader: any bytes as a pcap or
 * pcapng file, read to the end. A read outside the input, a packet that
 * points past it, or a length the reader should have refused is a bug.
 */
#include "mamori/status.h"
#include "meter/pcap_file.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pcap_file *pf = NULL;
	struct mm_raw_packet pkt;
	uint64_t errors[MM_CAPERR__COUNT] = { 0 };
	volatile uint8_t sink = 0;

	if (pcap_file_open(&pf, data, size, "fuzz-input") < 0)
		return 0;
	while (pcap_file_next(pf, &pkt) == 1) {
		MM_BUG(pkt.data < data || pkt.cap_len > (size_t)(data + size - pkt.data));
		MM_BUG(pkt.cap_len > 262144 || pkt.wire_len < pkt.cap_len);
		/* Touch both ends so ASan sees any pointer that strays. */
		if (pkt.cap_len)
			sink ^= pkt.data[0] ^ pkt.data[pkt.cap_len - 1];
	}
	pcap_file_add_errors(pf, errors);
	pcap_file_free(pf);
	(void)sink;
	return 0;
}
