/*
 * libFuzzer target: the panel document with its signature lines (input:
 * panel.json, a NUL byte, panel.sig), and RFC 8785 canonicalisation of any
 * JSON. Canonical bytes must be a fixed point: parsing and canonicalising
 * them again gives the same bytes.
 */
#include "mamori/oversight.h"
#include "mamori/status.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_canonical_fixed_point(const char *text, size_t len)
{
	json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL), *w;
	char *c1 = NULL, *c2 = NULL;
	size_t l1 = 0, l2 = 0;

	if (!v)
		return;
	if (mm_json_canonical(v, &c1, &l1) == 0) {
		w = json_loadb(c1, l1, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
		MM_BUG(!w);
		MM_BUG(mm_json_canonical(w, &c2, &l2) != 0);
		MM_BUG(l1 != l2 || memcmp(c1, c2, l1) != 0);
		json_decref(w);
	}
	free(c1);
	free(c2);
	json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	const char *nul = memchr(text, '\0', size);
	size_t doc_len = nul ? (size_t)(nul - text) : size;
	struct mm_panel *p = NULL;

	if (mm_panel_parse(text, doc_len, nul ? nul + 1 : "", nul ? size - doc_len - 1 : 0, &p) == 0) {
		size_t len = 0;
		const char *c = mm_panel_canonical(p, &len);

		MM_BUG(mm_panel_size(p) == 0 || mm_panel_quorum(p) > mm_panel_size(p));
		MM_BUG(len == 0 || !c);
	}
	mm_panel_free(p);
	check_canonical_fixed_point(text, doc_len);
	return 0;
}
