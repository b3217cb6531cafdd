/* The detection benches' input (bench_flows.h). */
#include "bench_flows.h"

#include "mamori/query.h"
#include "mamori/query_exec.h"
#include "mamori/status.h"
#include "mamori/store.h"

#include <stdlib.h>
#include <string.h>

static int take(void *ctx, const struct mm_flow *f, size_t n)
{
	struct bench_flows *fs = ctx;

	if (fs->n + n > fs->cap) {
		size_t cap = fs->cap ? fs->cap : 1 << 20;
		struct mm_flow *v;

		while (cap < fs->n + n)
			cap *= 2;
		v = realloc(fs->v, cap * sizeof(*v));
		if (!v)
			return mm_fail(MM_ENOMEM, "bench: %zu flows", cap);
		fs->v = v;
		fs->cap = cap;
	}
	memcpy(fs->v + fs->n, f, n * sizeof(*f));
	fs->n += n;
	return 0;
}

static int cmp_last(const void *a, const void *b)
{
	const struct mm_flow *x = a, *y = b;

	return (x->last_ns > y->last_ns) - (x->last_ns < y->last_ns);
}

int bench_flows_load(struct bench_flows *fs, const char *data_dir)
{
	struct mm_store *st = NULL;
	struct mm_query *q = NULL;
	struct mm_query_exec_options opt;
	int rc;

	memset(fs, 0, sizeof(*fs));
	mm_query_exec_options_default(&opt);
	rc = mm_store_open(&st, data_dir);
	if (rc == 0)
		rc = mm_query_parse("", &q, NULL);
	if (rc == 0)
		rc = mm_query_list(st, q, &opt, take, fs, NULL);
	mm_query_free(q);
	mm_store_free(st);
	if (rc < 0) {
		bench_flows_free(fs);
		return rc;
	}
	qsort(fs->v, fs->n, sizeof(*fs->v), cmp_last);
	return 0;
}

void bench_flows_free(struct bench_flows *fs)
{
	free(fs->v);
	memset(fs, 0, sizeof(*fs));
}
