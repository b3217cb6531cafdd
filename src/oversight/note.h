/*
 * C2SP signed notes (signed-note v1), checkpoints (tlog-checkpoint v1) and
 * Ed25519 witness cosignatures (tlog-cosignature v1, "cosignature/v1"):
 * parsing, signing and verification. The audit log stores its checkpoints
 * in these formats so any tool that speaks them can check mamori's log.
 * Parsers take hostile bytes: every length is checked, sizes are capped.
 */
#ifndef MAMORI_OVERSIGHT_NOTE_H
#define MAMORI_OVERSIGHT_NOTE_H

#include "mamori/keys.h"
#include "oversight/merkle.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NOTE_MAX_BYTES 65536
#define NOTE_MAX_SIGS 32       /* the spec asks verifiers to accept at least 16 */
#define NOTE_SIG_MAX_BYTES 2440 /* key ID + the largest signature type in use (ML-DSA-44) */

struct note_sig {
	char name[MM_KEY_NAME_MAX + 1];
	uint32_t key_id;
	uint8_t *sig; /* the bytes after the key ID */
	size_t sig_len;
	size_t line_offset; /* where the signature line starts in the note */
};

struct note {
	const char *text; /* borrowed from the parsed buffer; ends in '\n' */
	size_t text_len;
	struct note_sig sigs[NOTE_MAX_SIGS];
	size_t n_sigs;
};

/*
 * Parses len bytes as a signed note: UTF-8 without control characters
 * other than '\n', text, a blank line, 1..NOTE_MAX_SIGS signature lines
 * "— <name> <base64>". 0 or MM_EFORMAT naming the line. note->text points
 * into buf, which must outlive the note; note_free releases the rest.
 */
int note_parse(const char *buf, size_t len, struct note *note);
void note_free(struct note *note);

/*
 * Checks the note's signature by v (matching name and key ID, algorithm
 * 0x01). 0 valid; MM_ENOENT no signature from that key; MM_EPERM a matching
 * signature that does not verify (the note must be rejected).
 */
int note_verify(const struct note *note, const struct mm_verifier *v);

/*
 * Checks a cosignature/v1 by v (key ID with algorithm byte 0x04). Same
 * returns as note_verify; *timestamp receives the cosignature's time.
 */
int note_verify_cosignature(const struct note *note, const struct mm_verifier *v,
			    uint64_t *timestamp);

/* "— <name> <base64(key ID || signature of text)>\n" (malloc'd). */
int note_sign(const struct mm_signer *s, const char *text, size_t len, char **line);

/* A cosignature/v1 line over text at POSIX time timestamp (malloc'd). */
int note_cosign(const struct mm_signer *s, const char *text, size_t len, uint64_t timestamp,
		char **line);

struct checkpoint {
	char origin[MM_KEY_NAME_MAX + 1];
	uint64_t size;
	uint8_t root[MERKLE_HASH_LEN];
	size_t n_extensions;
};

/* Parses a checkpoint note text (origin, size, base64 root, extension lines). */
int checkpoint_parse(const char *text, size_t len, struct checkpoint *cp);

/* Formats the checkpoint text "origin\nsize\nroot\n" into out (malloc'd). */
int checkpoint_format(const char *origin, uint64_t size, const uint8_t root[MERKLE_HASH_LEN],
		      char **out);

#endif
