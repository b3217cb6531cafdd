/*
 * libFuzzer target: authorization documents and signature lines. An
 * accepted document must canonicalise to bytes that parse back to the
 * same canonical bytes (so what the panel signs is stable), and its
 * summary must format; signature lines must parse or fail cleanly; and
 * the guard's cache, which holds such documents one a line, must parse or
 * fail cleanly too, each document it accepts with the digest of its line.
 */
#include "mamori/oversight.h"
#include "mamori/status.h"
#include "oversight/oversight_int.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mm_authz *a = NULL, *again = NULL;
	struct mm_sig_line *lines = NULL;
	struct ov_guard_cache *cache = NULL;
	size_t n_lines = 0;

	if (mm_authz_parse((const char *)data, size, "fuzz.json", &a) == 0) {
		struct mm_authz_state st = { .status = MM_AZ_PENDING, .quorum = 2, .members = 3 };
		char *summary = NULL;

		MM_BUG(mm_authz_parse(a->canonical, a->canonical_len, "canonical", &again) != 0);
		MM_BUG(again->canonical_len != a->canonical_len);
		MM_BUG(memcmp(again->canonical, a->canonical, a->canonical_len) != 0);
		MM_BUG(mm_authz_summary(a, &st, &summary) != 0);
		free(summary);
	}
	mm_authz_free(a);
	mm_authz_free(again);
	if (mm_sig_lines_parse((const char *)data, size, "fuzz.sig", &lines, &n_lines) == 0)
		MM_BUG(n_lines > MM_SIG_LINES_MAX);
	free(lines);
	if (ov_guard_cache_parse((const char *)data, size, "fuzz.cache", &cache) == 0) {
		for (size_t i = 0; i < cache->n; i++) {
			char digest[65];

			ov_sha256_hex(cache->a[i]->canonical, cache->a[i]->canonical_len, digest);
			MM_BUG(strcmp(digest, cache->a[i]->digest) != 0);
			MM_BUG(memchr(cache->a[i]->canonical, '\n', cache->a[i]->canonical_len) != NULL);
		}
		ov_guard_cache_free(cache);
	}
	return 0;
}
