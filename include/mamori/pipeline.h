/*
 * Jobs that wire stages together. The CLI parses options into a job
 * description and calls one function here; tests and the API do the same.
 */
#ifndef MAMORI_PIPELINE_H
#define MAMORI_PIPELINE_H

#include "mamori/flow_output.h"
#include "mamori/meter.h"

#include <stdbool.h>
#include <stdio.h>

struct mm_meter_job {
	const char *const *files;   /* capture files, metered in order as one stream */
	size_t n_files;
	const char *interface;      /* live capture instead of files (NULL: files) */
	const char *bpf;            /* optional filter */
	int snaplen;                /* live only */
	struct mm_meter_config meter;
	enum mm_output_format format;
	FILE *out;                  /* borrowed */
	FILE *stats_out;            /* counters at exit (stderr); NULL: none */
	bool progress;              /* records/s and ETA on a terminal */
};

/*
 * Runs the meter job to the end of input (or until mm_pipeline_stop()).
 * Returns 0, or a negative status with mm_last_error() set. Per-record
 * problems are counted, not fatal.
 */
int mm_pipeline_meter(const struct mm_meter_job *job);

/* Asks a running job to finish cleanly; safe from a signal handler. */
void mm_pipeline_stop(void);

#endif
