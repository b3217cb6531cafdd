/*
 * Internals of the audit log shared by audit.c (append, recovery, proofs),
 * audit_verify.c and audit_report.c: the on-disk layout (docs/audit.md,
 * format version 1) and the open log handle.
 */
#ifndef MAMORI_OVERSIGHT_AUDIT_INT_H
#define MAMORI_OVERSIGHT_AUDIT_INT_H

#include "mamori/audit.h"
#include "oversight/merkle.h"

#include <pthread.h>

#define AUDIT_VERSION 1
#define AUDIT_FILE_HEADER 16 /* 8-byte magic, u32 version, u32 zero */
#define AUDIT_REC_HEADER 16  /* u32 length, u32 check, u64 index (little-endian) */
#define AUDIT_MAGIC_ENTRIES "MMAUDLOG"
#define AUDIT_MAGIC_INDEX "MMAUDIDX"
#define AUDIT_MAGIC_HASHES "MMAUDHSH"
#define AUDIT_SYSTEM_KEY_NAME "mamori-system"

/* Stored hashes are kept in post-order: leaf i is followed by the subtrees it completes. */
static inline uint64_t audit_stored_count(uint64_t n_leaves)
{
	return 2 * n_leaves - (uint64_t)__builtin_popcountll(n_leaves);
}

/* Position of the hash of subtree (level, k) in the hashes file, in hashes. */
static inline uint64_t audit_stored_index(unsigned level, uint64_t k)
{
	uint64_t last_leaf = ((k + 1) << level) - 1;
	return audit_stored_count(last_leaf) + level;
}

/* The record check: the first 4 bytes of the leaf hash, read as little-endian. */
static inline uint32_t audit_record_check(const uint8_t leaf[MERKLE_HASH_LEN])
{
	return (uint32_t)leaf[0] | (uint32_t)leaf[1] << 8 | (uint32_t)leaf[2] << 16 |
	       (uint32_t)leaf[3] << 24;
}

/* Entry text accepted by the log: 2..MM_AUDIT_ENTRY_MAX bytes, "{...}", no newline or NUL. */
bool audit_entry_text_ok(const char *json, size_t len);

/* "<data>/audit/<name>" into buf; MM_ELIMIT when it does not fit. */
int audit_path(char *buf, size_t size, const char *data_dir, const char *name);

/*
 * Opens <data>/audit/<name> (creating it with its header when writable and
 * new) and checks the header: magic and version. *fd_out is set (or -1)
 * even on failure, for the caller to close.
 */
int audit_open_file(const char *data_dir, const char *name, const char *magic, bool writable,
		    int *fd_out);

/* Checkpoint file names: checkpoints/<20-digit tree size>, sorted by size. */
int audit_list_checkpoints(const char *data_dir, uint64_t **sizes, size_t *n);
int audit_read_checkpoint(const char *data_dir, uint64_t size, char **text, size_t *len);

static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

#endif
