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
 * Speculative verification (docs/oversight.md, "What is verified when"): a
 * decision may be taken with the Ed25519 signatures of the oversight files
 * taken on trust, provided every signature it relied on positively is
 * recorded here and verified before the decision counts. Each record owns
 * a copy of the signed bytes; the verifier is borrowed from the panel.
 */
struct ov_trusted {
	const struct mm_verifier *v;
	char *msg;
	size_t len;
	uint8_t sig[MM_SIG_LEN];
};

struct ov_trust {
	struct ov_trusted *items;
	size_t n, cap;
	int rc; /* MM_ENOMEM when a record could not be kept: the speculation must be dropped */
};

void ov_trust_add(struct ov_trust *t, const struct mm_verifier *v, const void *msg, size_t len,
		  const uint8_t sig[MM_SIG_LEN]);
/* 0 when every record verifies; else MM_EPERM naming the first that does not, in why. */
int ov_trust_verify(const struct ov_trust *t, char *why, size_t why_size);
void ov_trust_free(struct ov_trust *t);

/*
 * mm_panel_load and mm_oversight_open, with trust non-NULL: signatures are
 * counted without being verified, and the panel's member signatures are
 * recorded into trust (which must outlive nothing: records copy the bytes,
 * the verifiers live as long as the panel). NULL: as the public calls.
 */
int ov_panel_load(const char *data_dir, struct ov_trust *trust, struct mm_panel **out);
int ov_oversight_open(const char *data_dir, struct ov_trust *trust, struct mm_oversight **out);

/* mm_panel_count's rule, recording into relied every signature it would count valid. */
void ov_panel_relied(const struct mm_panel *p, const void *msg, size_t len, const struct mm_sig_line *sigs,
		     size_t n_sigs, const char *exclude, struct ov_trust *relied);

/* Records what a's state (mm_oversight_state) relied on: counted revocations if revoked, else counted approvals and, for an emergency, counted ratifications. */
void ov_oversight_relied(const struct mm_oversight *o, const struct mm_authz *a, struct ov_trust *t);

#endif
