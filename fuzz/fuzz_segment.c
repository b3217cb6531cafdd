/*
 * libFuzzer target for segment files: any bytes as a segment, every column
 * of every chunk decoded. A read outside the input or the decode buffers,
 * or a crash on a damaged directory or payload, is a bug; an error is not.
 */
#include "mamori/status.h"
#include "mamori/store.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mm_segment *seg = NULL;
	struct mm_store_scratch *scratch = NULL;
	uint64_t *out = NULL;
	volatile uint8_t sink = 0;

	if (mm_segment_open_mem(&seg, data, size, "fuzz.mms") < 0)
		return 0;
	if (mm_store_scratch_new(&scratch) < 0)
		goto out;
	out = malloc(MM_STORE_MAX_CHUNK_ROWS * sizeof(uint64_t));
	if (!out)
		goto out;
	for (uint32_t k = 0; k < mm_segment_chunks(seg); k++) {
		uint32_t rows = mm_segment_chunk_rows(seg, k);

		MM_BUG(rows == 0 || rows > MM_STORE_MAX_CHUNK_ROWS);
		for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
			uint64_t min, max;

			mm_segment_zone(seg, col, k, &min, &max);
			MM_BUG(min > max);
			if (mm_segment_decode(seg, col, k, scratch, out) == 0)
				sink ^= ((const uint8_t *)out)[rows * mm_store_column_width(col) - 1];
		}
	}
out:
	free(out);
	mm_store_scratch_free(scratch);
	mm_segment_free(seg);
	(void)sink;
	return 0;
}
