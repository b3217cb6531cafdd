/*
 * Internals shared by the panel, authorization and guard files: paths
 * under <data>/oversight/ and durable file writes. Not a public interface.
 */
#ifndef MAMORI_OVERSIGHT_INT_H
#define MAMORI_OVERSIGHT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest oversight file read: documents and signature files are kilobytes. */
#define OV_FILE_MAX (1u << 20)

/* "<data_dir>/oversight/<rel>" into buf; MM_ELIMIT when it does not fit. */
int ov_path(char *buf, size_t size, const char *data_dir, const char *rel);

/* Creates <data_dir>/oversight/ and its authz/ directory (mode 0700) when absent. */
int ov_mkdirs(const char *data_dir);

/*
 * Reads a whole file (at most OV_FILE_MAX bytes) into *out (malloc'd,
 * NUL-terminated). MM_ENOENT when it does not exist.
 */
int ov_read_file(const char *path, char **out, size_t *len);

/* Writes a file under a temporary name, fsyncs and renames it into place. excl: MM_EEXIST if present. */
int ov_write_file(const char *path, const void *data, size_t len, bool excl);

/* Appends to a file (created 0644), then fsyncs it. */
int ov_append_file(const char *path, const void *data, size_t len);

/* SHA-256 of data as 64 lower-case hex digits and a NUL. */
void ov_sha256_hex(const void *data, size_t len, char out[65]);

/* Parses an RFC 3339 time string; MM_EFORMAT naming what. */
int ov_time_parse(const char *text, uint64_t *out);

#endif
