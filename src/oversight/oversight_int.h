/*
 * Internals shared by the panel, authorization and guard files: paths
 * under <data>/oversight/ and durable file writes. Not a public interface.
 */
#ifndef MAMORI_OVERSIGHT_INT_H
#define MAMORI_OVERSIGHT_INT_H

#include "mamori/keys.h"
#include "mamori/oversight.h"

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

/*
 * The guard's cache (guard_cache.c, docs/oversight.md): the mode and the
 * authorizations a verified load found usable, for a speculative decision
 * to read instead of every oversight file. Untrusted by design.
 */
struct ov_guard_cache {
	bool lab;
	struct mm_authz **a; /* in the state's order */
	size_t n;
	char *text; /* the bytes read: the verified load rewrites them only when they differ */
	size_t len;
};

/*
 * mm_authz_parse of text taken as its own canonical form, unchecked: its
 * digest is then that of text, so a text that is not canonical cannot
 * match the digest of any verified document (the guard's cache, which
 * holds canonical bytes, compares digests).
 */
int ov_authz_parse_canonical(const char *text, size_t len, const char *where, struct mm_authz **out);

/* Reads <data>/oversight/guard.cache; MM_ENOENT, MM_EFORMAT, … when there is none to use. */
int ov_guard_cache_load(const char *data_dir, struct ov_guard_cache **out);
/* The same from text (copied), where naming it in messages. */
int ov_guard_cache_parse(const char *text, size_t len, const char *where, struct ov_guard_cache **out);
void ov_guard_cache_free(struct ov_guard_cache *c);

/*
 * Writes the cache for the verified state o at now_ns unless it holds
 * those bytes already (known: what was read from it), or, known NULL,
 * unless it exists. Best effort and not fsync'd: a cache that is missing or
 * behind costs time only.
 */
void ov_guard_cache_refresh(const char *data_dir, const struct mm_oversight *o, uint64_t now_ns, const char *known,
			    size_t known_len);

/* Removes the cache after a change to the panel or to signatures, so the next decision takes the ordinary path. */
void ov_guard_cache_drop(const char *data_dir);

#endif
