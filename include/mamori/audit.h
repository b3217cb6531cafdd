/*
 * The oversight audit log: an append-only, crash-safe log in <data>/audit/
 * of every guarded act, hashed into an RFC 9162 Merkle tree, with signed
 * C2SP checkpoints so the panel can verify from the files alone that nothing
 * was changed, dropped or reordered (docs/audit.md has the file formats).
 * Entries are JSON objects on one line (the schema is in docs/audit.md).
 * One process may hold many threads appending; many processes may append to
 * the same log (an flock serialises them).
 */
#ifndef MAMORI_AUDIT_H
#define MAMORI_AUDIT_H

#include "mamori/keys.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MM_AUDIT_ENTRY_MAX (1u << 20) /* bytes of one entry; larger ones are refused */
#define MM_AUDIT_HASH_LEN 32
#define MM_AUDIT_PROOF_MAX 64

struct mm_audit_log;

/*
 * Opens (creating) <data_dir>/audit/; recovers a torn tail (a partial last
 * record is truncated, every complete one kept, the drop counted: see
 * mm_audit_recovery). The system key <data_dir>/oversight/system.key is
 * loaded (created, 0600, on first use) only when a checkpoint is signed.
 * Caller frees with mm_audit_close.
 */
int mm_audit_open(const char *data_dir, struct mm_audit_log **out);

/*
 * Opens an existing log for reading (show, prove, report): creates nothing,
 * changes no file, ignores a torn tail. MM_ENOENT when there is no log.
 */
int mm_audit_open_existing(const char *data_dir, struct mm_audit_log **out);

/*
 * Appends one entry: a JSON object serialised on one line (no '\n'), RFC 8785
 * canonical preferred. Durable (fsync'd) when it returns 0; appends racing
 * from other threads share one fsync (group commit). index_out may be NULL.
 * MM_EINVAL for an entry that is not one line of JSON object text.
 */
int mm_audit_append(struct mm_audit_log *log, const char *json, size_t len, uint64_t *index_out);

/* Appends n entries with one fsync; *first_index (may be NULL) gets the first index. */
int mm_audit_append_batch(struct mm_audit_log *log, const char *const *json, const size_t *len,
			  size_t n, uint64_t *first_index);

/*
 * Appends one entry, written (visible to every reader, and kept if this
 * process dies) but not yet fsync'd: it is durable after the next
 * mm_audit_sync, durable append or checkpoint by anyone, or the kernel's
 * own write-back. A crash of the machine before then loses it (and any
 * later deferred entries; a torn tail is cut on the next open).
 */
int mm_audit_append_deferred(struct mm_audit_log *log, const char *json, size_t len,
			     uint64_t *index_out);

/* Makes every entry written so far durable (one fdatasync). Callable from another thread. */
int mm_audit_sync(struct mm_audit_log *log);

/* Writes and signs a checkpoint (C2SP signed note) for the current tree. */
int mm_audit_checkpoint(struct mm_audit_log *log);

/*
 * Batched checkpoints: mm_audit_close signs one only when entries were
 * appended since the latest and it is the log's first, or at least
 * `entries` were appended since the latest, or at least `seconds` have
 * passed since it was signed. Defaults below; (1, 0) checkpoints on every
 * close that follows an append. Entries after the latest checkpoint are
 * valid but unsigned (mm_audit_verify counts them: n_uncovered).
 */
#define MM_AUDIT_CHECKPOINT_ENTRIES 1024
#define MM_AUDIT_CHECKPOINT_SECONDS 60
void mm_audit_set_checkpoint_policy(struct mm_audit_log *log, uint64_t entries, uint64_t seconds);

/* Checkpoints when the policy above says so, then frees. NULL is allowed. */
int mm_audit_close(struct mm_audit_log *log);

/* Entries in the log as last seen by this handle. */
uint64_t mm_audit_size(const struct mm_audit_log *log);

/* What opening the log repaired: a torn tail dropped, hash cache rebuilt. */
struct mm_audit_recovery {
	uint64_t dropped_bytes;   /* partial record bytes truncated from the entries file */
	uint64_t dropped_records; /* 1 when a partial record was dropped, else 0 */
	uint64_t dropped_at;      /* byte offset where the entries file was cut */
	uint64_t rebuilt;         /* entries whose index/hash cache rows were rebuilt */
};
void mm_audit_recovery(const struct mm_audit_log *log, struct mm_audit_recovery *out);

/* Entry index (0-based) as JSON text (malloc'd, NUL-terminated); *len may be NULL. */
int mm_audit_read(struct mm_audit_log *log, uint64_t index, char **json, size_t *len);

/* Leaf hash of entry index, and the root of the tree of the first size entries. */
int mm_audit_leaf_hash(struct mm_audit_log *log, uint64_t index, uint8_t out[MM_AUDIT_HASH_LEN]);
int mm_audit_root(struct mm_audit_log *log, uint64_t size, uint8_t out[MM_AUDIT_HASH_LEN]);

/* RFC 9162 proofs from the stored hashes (no rehash): O(log n) reads. */
int mm_audit_inclusion_proof(struct mm_audit_log *log, uint64_t index, uint64_t size,
			     uint8_t (*proof)[MM_AUDIT_HASH_LEN], size_t *n_proof);
int mm_audit_consistency_proof(struct mm_audit_log *log, uint64_t size1, uint64_t size2,
			       uint8_t (*proof)[MM_AUDIT_HASH_LEN], size_t *n_proof);

/* The latest checkpoint note (malloc'd text); MM_ENOENT when none was signed yet. */
int mm_audit_latest_checkpoint(struct mm_audit_log *log, char **note, size_t *len);

/*
 * Adds a cosignature/v1 line by signer to the latest checkpoint (as a
 * witness: the log is verified first, from the files, and must match it).
 */
int mm_audit_cosign(struct mm_audit_log *log, const struct mm_signer *signer);

/* The outcome of mm_audit_verify. */
struct mm_audit_verify_result {
	bool ok;
	uint64_t n_entries;        /* complete entries read */
	uint64_t n_checkpoints;    /* checkpoints checked */
	uint64_t checkpoint_size;  /* the latest checkpoint's tree size */
	uint8_t root[MM_AUDIT_HASH_LEN];  /* root of all n_entries */
	uint64_t n_cosignatures;   /* valid cosignatures by the given witnesses on the latest */
	uint64_t n_uncovered;      /* entries after the latest checkpoint */
	bool sha_accelerated;
	char problem[512];         /* when !ok: where and what, e.g. "entry 41 at byte 12345: ..." */
};

/*
 * Recomputes everything from the files alone, changing nothing: every
 * record's framing and sequence, every leaf and node hash (against the hash
 * cache), the index, every checkpoint's signature by key (NULL: the
 * system.pub beside the log) and root. Cosignatures by the n_witnesses keys
 * on the latest checkpoint are checked too. Stops at the first problem.
 * Returns 0 when the files could be examined (result->ok says whether they
 * are valid); a negative status when they could not (missing log, I/O).
 * Work: one sequential pass over the entries and hash files.
 */
int mm_audit_verify(const char *data_dir, const struct mm_verifier *key,
		    const struct mm_verifier *const *witnesses, size_t n_witnesses,
		    struct mm_audit_verify_result *result);

enum mm_audit_report_format { MM_AUDIT_REPORT_TABLE, MM_AUDIT_REPORT_JSON };

/*
 * The oversight report over entries whose "time" lies in [from_ns, to_ns):
 * acts per act x kind x legal basis, re-identifications, measures, emergency
 * uses and whether each was ratified; computed from the log alone at its
 * latest checkpoint (size and root printed). Entries that are not valid
 * JSON or lack a time are counted as unreadable, never skipped silently.
 */
int mm_audit_report(struct mm_audit_log *log, uint64_t from_ns, uint64_t to_ns,
		    enum mm_audit_report_format format, FILE *out);

#endif
