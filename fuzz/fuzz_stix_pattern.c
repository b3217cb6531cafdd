/*
 * libFuzzer target: the STIX pattern parser (first byte even) and the
 * STIX bundle loader (odd). A pattern either fails with a message, is
 * skipped with a reason and yields nothing, or yields valid prefixes.
 */
#include "mamori/intel.h"
#include "mamori/status.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] % 2 == 0) {
		struct mm_intel_indicator out[8];
		enum mm_stix_skip skip;
		bool partial;
		size_t n;
		char *text = malloc(size);

		if (!text)
			return 0;
		memcpy(text, data + 1, size - 1);
		text[size - 1] = '\0';
		if (mm_stix_pattern_indicators(text, out, 8, &n, &skip, &partial) == 0) {
			MM_BUG(skip != MM_STIX_OK && (n != 0 || partial));
			for (size_t i = 0; i < n && i < 8; i++) {
				if (out[i].kind == MM_INTEL_PREFIX)
					MM_BUG(out[i].prefix.len > (mm_addr_is_v4(&out[i].prefix.addr) ? 32 : 128));
				else
					MM_BUG(out[i].kind != MM_INTEL_ASN);
			}
		}
		free(text);
		return 0;
	}
	struct mm_intel_defaults def = { .source = "fuzz", .confidence = 50 };
	struct mm_intel_load_stats st;
	struct mm_intel_set *set;

	if (mm_intel_set_new(&set) != 0)
		return 0;
	if (mm_intel_load_buf(set, "fuzz.json", (const char *)data + 1, size - 1, MM_INTEL_FMT_STIX, &def, &st) == 0)
		MM_BUG(st.n_loaded != mm_intel_set_count(set));
	mm_intel_set_free(set);
	return 0;
}
