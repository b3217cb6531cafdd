/*
 * libFuzzer target: the line loaders (plain list, FireHOL, IPsum, and
 * format detection). The first byte picks the format. Every indicator a
 * loader accepts must be a valid prefix that formats and parses back to
 * itself, and the counts must add up.
 */
#include "mamori/intel.h"
#include "mamori/status.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum mm_intel_format formats[] = { MM_INTEL_FMT_LIST, MM_INTEL_FMT_FIREHOL, MM_INTEL_FMT_IPSUM,
							 MM_INTEL_FMT_AUTO };
	struct mm_intel_defaults def = { .source = "fuzz", .confidence = 50 };
	struct mm_intel_load_stats st;
	struct mm_intel_set *set;

	if (size < 1 || mm_intel_set_new(&set) != 0)
		return 0;
	if (mm_intel_load_buf(set, "fuzz", (const char *)data + 1, size - 1, formats[data[0] % 4], &def, &st) == 0) {
		MM_BUG(st.n_loaded != mm_intel_set_count(set));
		MM_BUG(st.n_reports > MM_INTEL_REPORT_KEEP);
		for (size_t i = 0; i < mm_intel_set_count(set); i++) {
			struct mm_intel_indicator ind;
			struct mm_prefix back;
			char text[MM_PREFIX_STRLEN];

			mm_intel_set_get(set, i, &ind);
			if (ind.kind != MM_INTEL_PREFIX)
				continue;
			MM_BUG(ind.confidence > 100);
			MM_BUG(mm_prefix_parse(&back, mm_prefix_format(&ind.prefix, text), false) != 0);
			MM_BUG(back.len != ind.prefix.len || !mm_addr_eq(&back.addr, &ind.prefix.addr));
		}
	}
	mm_intel_set_free(set);
	return 0;
}
