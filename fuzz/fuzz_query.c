/*
 * libFuzzer target: the query parser. Every accepted query must pass
 * mm_query_check, print to text that parses back to an equal AST and
 * prints identically, and evaluate on a flow without fault; a broken
 * round trip aborts so the fuzzer keeps the input.
 */
#include "mamori/query.h"
#include "mamori/status.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const struct mm_query *q)
{
	struct mm_query *again = NULL;
	char *text = NULL, *text2 = NULL;

	MM_BUG(mm_query_check(q) != 0);
	if (mm_query_format(q, &text) != 0)
		return;
	/* Canonical text can outgrow the input cap only for inputs near it. */
	if (strlen(text) <= MM_QUERY_MAX_LEN) {
		MM_BUG(mm_query_parse(text, &again, NULL) != 0);
		MM_BUG(!mm_query_equal(q, again));
		MM_BUG(mm_query_format(again, &text2) != 0);
		MM_BUG(strcmp(text, text2) != 0);
	}
	free(text);
	free(text2);
	mm_query_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mm_flow flow;
	struct mm_query *q = NULL;
	char *text;

	if (size > MM_QUERY_MAX_LEN + 16)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (mm_query_parse(text, &q, NULL) == 0) {
		check_roundtrip(q);
		/* The flow changes with every input, so the evaluator sees varied records. */
		memcpy(&flow, data, size < sizeof(flow) ? size : sizeof(flow));
		(void)mm_query_match(q, &flow);
		mm_query_free(q);
	}
	free(text);
	return 0;
}
