/*
 * libFuzzer target: IPFIX export messages (see fuzz_ingest.h).
 */
#include "fuzz_ingest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_ingest_one(10, data, size);
}
