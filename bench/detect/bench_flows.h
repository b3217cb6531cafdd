/*
 * The detection benches' input: every flow of a store (the standard
 * scenario's), loaded into memory and sorted by export time (last_ns), the
 * order `mamori detect` feeds them in and an exporter sends them in.
 */
#ifndef MAMORI_BENCH_DETECT_FLOWS_H
#define MAMORI_BENCH_DETECT_FLOWS_H

#include "mamori/flow.h"

#include <stddef.h>

struct bench_flows {
	struct mm_flow *v;
	size_t n, cap;
};

/* Loads every flow of the store at data_dir. 0, or a negative status with mm_last_error() set. */
int bench_flows_load(struct bench_flows *fs, const char *data_dir);

void bench_flows_free(struct bench_flows *fs);

#endif
