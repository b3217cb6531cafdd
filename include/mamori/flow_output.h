/*
 * Flow record writers: aligned tables for people; CSV and NDJSON for
 * pipelines; Zeek conn.log TSV so Zeek tooling (zeek-cut, RITA) reads
 * mamori's flows. A writer owns no file: it writes to a borrowed FILE *.
 */
#ifndef MAMORI_FLOW_OUTPUT_H
#define MAMORI_FLOW_OUTPUT_H

#include "mamori/flow.h"

#include <stddef.h>
#include <stdio.h>

enum mm_output_format {
	MM_OUTPUT_TABLE,
	MM_OUTPUT_CSV,
	MM_OUTPUT_NDJSON,
	MM_OUTPUT_ZEEK,
};

/* "table", "csv", "ndjson", "zeek"; 0 or MM_EINVAL naming the choices. */
int mm_output_format_parse(const char *text, enum mm_output_format *out);

struct mm_flow_writer;

/* fp is borrowed until mm_flow_writer_free. */
int mm_flow_writer_new(struct mm_flow_writer **out, enum mm_output_format fmt, FILE *fp);

/* Writes n records; MM_EIO when the stream fails (e.g. a closed pipe). */
int mm_flow_writer_write(struct mm_flow_writer *w, const struct mm_flow *flows, size_t n);

/* Writes any trailer (Zeek's #close) and flushes; MM_EIO on failure. */
int mm_flow_writer_finish(struct mm_flow_writer *w);

void mm_flow_writer_free(struct mm_flow_writer *w);

/*
 * Zeek-style connection uid for a flow id ("C" + 17 base62 characters),
 * stable for the id so that tunnel_parents can name outer flows.
 */
char *mm_flow_uid(uint64_t id, char buf[20]);

#endif
