/*
 * libFuzzer target: the signed-note, checkpoint and key-line parsers and
 * the note verifiers. Any input is tried as a signed note (then its text as
 * a checkpoint, its signatures against a fixed key, as plain and as
 * cosignatures) and as a verifier and a private key line. A checkpoint
 * that parses must format back to the same text when it has no extension
 * lines; a key line that parses must encode back to itself.
 */
#include "mamori/keys.h"
#include "mamori/status.h"
#include "oversight/note.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The C2SP signed-note specification's example verifier key. */
static const char example_vkey[] = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";

static void try_note(const char *buf, size_t size, const struct mm_verifier *v)
{
	struct note note;
	struct checkpoint cp;
	uint64_t t;

	if (note_parse(buf, size, &note) != 0)
		return;
	MM_BUG(note.text_len == 0 || note.text_len > size || note.text[note.text_len - 1] != '\n');
	note_verify(&note, v);
	note_verify_cosignature(&note, v, &t);
	if (checkpoint_parse(note.text, note.text_len, &cp) == 0 && cp.n_extensions == 0) {
		char *again = NULL;
		MM_BUG(checkpoint_format(cp.origin, cp.size, cp.root, &again) != 0);
		MM_BUG(strlen(again) != note.text_len || memcmp(again, note.text, note.text_len) != 0);
		free(again);
	}
	note_free(&note);
}

static void try_keys(const char *line)
{
	struct mm_verifier *v = NULL;
	struct mm_signer *s = NULL;
	char *again = NULL;

	if (mm_verifier_parse(line, &v) == 0) {
		MM_BUG(mm_verifier_encode(v, &again) != 0);
		MM_BUG(strncmp(again, line, strlen(again)) != 0);
		free(again);
		mm_verifier_free(v);
	}
	if (mm_signer_parse(line, &s) == 0)
		mm_signer_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mm_verifier *v;
	char *buf;

	if (!v && mm_verifier_parse(example_vkey, &v) != 0)
		abort();
	if (size > NOTE_MAX_BYTES + 16)
		return 0;
	/* A copy with a terminator: the key parsers take C strings. */
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	try_note(buf, size, v);
	if (strlen(buf) == size)
		try_keys(buf);
	free(buf);
	return 0;
}
