/*
 * libFuzzer target: the CSV loader (RFC 4180 quoting, header mapping,
 * field checks). Whatever it accepts is written back as CSV and must load
 * again with no bad record and the same indicators.
 */
#include "mamori/intel.h"
#include "mamori/status.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const struct mm_intel_indicator *a, const struct mm_intel_indicator *b)
{
	MM_BUG(a->kind != b->kind || a->asn != b->asn || a->port != b->port || a->proto != b->proto);
	MM_BUG(a->prefix.len != b->prefix.len || !mm_addr_eq(&a->prefix.addr, &b->prefix.addr));
	MM_BUG(a->confidence != b->confidence || a->tlp != b->tlp);
	MM_BUG(strcmp(a->source, b->source) != 0 || strcmp(a->tags, b->tags) != 0 || strcmp(a->id, b->id) != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mm_intel_defaults def = { .source = "fuzz", .confidence = 50 };
	struct mm_intel_load_stats st;
	struct mm_intel_set *set, *back = NULL;
	char path[64];

	if (mm_intel_set_new(&set) != 0)
		return 0;
	if (mm_intel_load_buf(set, "fuzz.csv", (const char *)data, size, MM_INTEL_FMT_CSV, &def, &st) == 0 &&
	    mm_intel_set_count(set) > 0) {
		MM_BUG(st.n_loaded != mm_intel_set_count(set));
		snprintf(path, sizeof(path), "/tmp/fuzz_intel_csv.%ld.csv", (long)getpid());
		MM_BUG(mm_intel_set_write_csv(set, path) != 0);
		MM_BUG(mm_intel_set_new(&back) != 0);
		MM_BUG(mm_intel_load_file(back, path, MM_INTEL_FMT_CSV, &def, &st) != 0);
		MM_BUG(st.n_bad != 0 || mm_intel_set_count(back) != mm_intel_set_count(set));
		for (size_t i = 0; i < mm_intel_set_count(set); i++) {
			struct mm_intel_indicator a, b;

			mm_intel_set_get(set, i, &a);
			mm_intel_set_get(back, i, &b);
			same(&a, &b);
		}
		unlink(path);
	}
	mm_intel_set_free(back);
	mm_intel_set_free(set);
	return 0;
}
