/*
 * C2SP signed notes, checkpoints and cosignatures (see note.h).
 */
#include "oversight/note.h"

#include "mamori/status.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALG_ED25519 0x01
#define ALG_COSIGNATURE_V1 0x04
#define EM_DASH_SP "\xe2\x80\x94 "

/* Well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF), no controls but '\n'. */
static int check_chars(const uint8_t *p, size_t len, size_t *bad_at)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i];
		size_t n;
		uint32_t cp;

		if (c < 0x80) {
			if ((c < 0x20 && c != '\n') || c == 0x7f)
				goto bad;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			goto bad;
		}
		if (len - i <= n)
			goto bad;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				goto bad;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			goto bad;
		i += n + 1;
	}
	return 0;
bad:
	*bad_at = i;
	return MM_EFORMAT;
}

/* Line number (1-based) of byte offset off in buf. */
static size_t line_of(const char *buf, size_t off)
{
	size_t line = 1;

	for (size_t i = 0; i < off; i++)
		line += buf[i] == '\n';
	return line;
}

static int parse_sig_line(const char *buf, size_t start, size_t end, struct note_sig *sig)
{
	const char *line = buf + start, *sp;
	size_t len = end - start, name_len, b64_len, bin_len, pad;
	uint8_t *bin;

	if (len < 4 || memcmp(line, EM_DASH_SP, 4) != 0)
		return mm_fail(MM_EFORMAT, "note: line %zu: signature line must start with \"— \"",
			       line_of(buf, start));
	line += 4;
	len -= 4;
	sp = memchr(line, ' ', len);
	if (!sp)
		return mm_fail(MM_EFORMAT, "note: line %zu: expected \"— <name> <signature>\"",
			       line_of(buf, start));
	name_len = (size_t)(sp - line);
	if (name_len == 0 || name_len > MM_KEY_NAME_MAX || memchr(line, '+', name_len))
		return mm_fail(MM_EFORMAT,
			       "note: line %zu: key name must be 1..%d bytes without '+'",
			       line_of(buf, start), MM_KEY_NAME_MAX);
	b64_len = len - name_len - 1;
	if (b64_len == 0 || b64_len % 4 != 0 || b64_len / 4 * 3 > NOTE_SIG_MAX_BYTES)
		return mm_fail(MM_EFORMAT, "note: line %zu: signature is not base64 of 5..%d bytes",
			       line_of(buf, start), NOTE_SIG_MAX_BYTES);
	pad = (sp[b64_len] == '=') + (sp[b64_len - 1] == '=');
	bin_len = b64_len / 4 * 3 - pad;
	if (bin_len <= 4)
		return mm_fail(MM_EFORMAT, "note: line %zu: signature has no bytes after the key ID",
			       line_of(buf, start));
	bin = malloc(bin_len);
	if (!bin)
		return mm_fail(MM_ENOMEM, "note: out of memory");
	if (mm_base64_decode(sp + 1, b64_len, bin, bin_len) < 0) {
		free(bin);
		return mm_fail(MM_EFORMAT, "note: line %zu: signature is not canonical base64",
			       line_of(buf, start));
	}
	memcpy(sig->name, line, name_len);
	sig->name[name_len] = '\0';
	sig->key_id = (uint32_t)bin[0] << 24 | (uint32_t)bin[1] << 16 | (uint32_t)bin[2] << 8 | bin[3];
	sig->sig_len = bin_len - 4;
	memmove(bin, bin + 4, sig->sig_len);
	sig->sig = bin;
	sig->line_offset = start;
	return 0;
}

int note_parse(const char *buf, size_t len, struct note *note)
{
	size_t bad = 0, sep = SIZE_MAX, pos;
	int rc;

	memset(note, 0, sizeof(*note));
	if (len > NOTE_MAX_BYTES)
		return mm_fail(MM_ELIMIT, "note: %zu bytes exceeds the %d-byte limit", len,
			       NOTE_MAX_BYTES);
	if (len == 0 || buf[len - 1] != '\n')
		return mm_fail(MM_EFORMAT, "note: must end with a newline");
	if (check_chars((const uint8_t *)buf, len, &bad) < 0)
		return mm_fail(MM_EFORMAT,
			       "note: line %zu: invalid UTF-8 or control character at byte %zu",
			       line_of(buf, bad), bad);
	/* The text ends at the last blank line; the text itself may contain blank lines. */
	for (size_t i = len - 1; i-- > 0;)
		if (buf[i] == '\n' && buf[i + 1] == '\n') {
			sep = i;
			break;
		}
	if (sep == SIZE_MAX)
		return mm_fail(MM_EFORMAT, "note: no blank line before the signatures");
	note->text = buf;
	note->text_len = sep + 1;
	pos = sep + 2;
	if (pos >= len)
		return mm_fail(MM_EFORMAT, "note: no signature lines");
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = (size_t)(nl - buf);
		if (note->n_sigs == NOTE_MAX_SIGS) {
			rc = mm_fail(MM_ELIMIT, "note: more than %d signatures", NOTE_MAX_SIGS);
			goto fail;
		}
		rc = parse_sig_line(buf, pos, end, &note->sigs[note->n_sigs]);
		if (rc < 0)
			goto fail;
		note->n_sigs++;
		pos = end + 1;
	}
	return 0;
fail:
	note_free(note);
	return rc;
}

void note_free(struct note *note)
{
	for (size_t i = 0; i < note->n_sigs; i++)
		free(note->sigs[i].sig);
	note->n_sigs = 0;
}

static uint32_t key_id(const struct mm_verifier *v, uint8_t alg)
{
	crypto_hash_sha256_state st;
	uint8_t h[crypto_hash_sha256_BYTES];
	const uint8_t sep[2] = {'\n', alg};
	const char *name = mm_verifier_name(v);

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)name, strlen(name));
	crypto_hash_sha256_update(&st, sep, sizeof(sep));
	crypto_hash_sha256_update(&st, mm_verifier_pubkey(v), 32);
	crypto_hash_sha256_final(&st, h);
	return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

/* The signature of v (name and key ID for alg), or NULL: unknown keys are ignored. */
static const struct note_sig *find_sig(const struct note *note, const struct mm_verifier *v,
				       uint8_t alg)
{
	uint32_t id = key_id(v, alg);

	for (size_t i = 0; i < note->n_sigs; i++)
		if (note->sigs[i].key_id == id && strcmp(note->sigs[i].name, mm_verifier_name(v)) == 0)
			return &note->sigs[i];
	return NULL;
}

int note_verify(const struct note *note, const struct mm_verifier *v)
{
	const struct note_sig *sig = find_sig(note, v, ALG_ED25519);

	if (!sig)
		return mm_fail(MM_ENOENT, "note: no signature by %s+%08x", mm_verifier_name(v),
			       mm_verifier_hash(v));
	if (sig->sig_len != MM_SIG_LEN || !mm_verify(v, note->text, note->text_len, sig->sig))
		return mm_fail(MM_EPERM, "note: line %zu: signature by %s does not verify",
			       line_of(note->text, sig->line_offset), mm_verifier_name(v));
	return 0;
}

/* "cosignature/v1\ntime <t>\n" followed by the note text, as the cosigner signs it. */
static char *cosigned_message(const char *text, size_t len, uint64_t timestamp, size_t *msg_len)
{
	char head[64];
	int n = snprintf(head, sizeof(head), "cosignature/v1\ntime %" PRIu64 "\n", timestamp);
	char *msg = malloc((size_t)n + len);

	if (!msg)
		return NULL;
	memcpy(msg, head, (size_t)n);
	memcpy(msg + n, text, len);
	*msg_len = (size_t)n + len;
	return msg;
}

int note_verify_cosignature(const struct note *note, const struct mm_verifier *v,
			    uint64_t *timestamp)
{
	const struct note_sig *sig = find_sig(note, v, ALG_COSIGNATURE_V1);
	size_t msg_len = 0;
	uint64_t t = 0;
	char *msg;
	bool ok;

	if (!sig)
		return mm_fail(MM_ENOENT, "note: no cosignature by %s", mm_verifier_name(v));
	if (sig->sig_len != 8 + MM_SIG_LEN)
		return mm_fail(MM_EPERM, "note: line %zu: cosignature by %s has %zu bytes, not 72",
			       line_of(note->text, sig->line_offset), mm_verifier_name(v),
			       sig->sig_len);
	for (int i = 0; i < 8; i++)
		t = t << 8 | sig->sig[i];
	if (t > INT64_MAX)
		return mm_fail(MM_EPERM, "note: cosignature by %s: timestamp exceeds 2^63-1",
			       mm_verifier_name(v));
	msg = cosigned_message(note->text, note->text_len, t, &msg_len);
	if (!msg)
		return mm_fail(MM_ENOMEM, "note: out of memory");
	ok = mm_verify(v, msg, msg_len, sig->sig + 8);
	free(msg);
	if (!ok)
		return mm_fail(MM_EPERM, "note: line %zu: cosignature by %s does not verify",
			       line_of(note->text, sig->line_offset), mm_verifier_name(v));
	*timestamp = t;
	return 0;
}

/* "— name base64(id || bytes)\n" */
static int format_sig_line(const char *name, uint32_t id, const uint8_t *bytes, size_t n,
			   char **line)
{
	uint8_t bin[4 + 8 + MM_SIG_LEN];
	char b64[sizeof(bin) * 4 / 3 + 4];
	size_t size;

	MM_BUG(n > sizeof(bin) - 4);
	bin[0] = (uint8_t)(id >> 24);
	bin[1] = (uint8_t)(id >> 16);
	bin[2] = (uint8_t)(id >> 8);
	bin[3] = (uint8_t)id;
	memcpy(bin + 4, bytes, n);
	mm_base64_encode(bin, 4 + n, b64, sizeof(b64));
	size = strlen(name) + strlen(b64) + 8;
	*line = malloc(size);
	if (!*line)
		return mm_fail(MM_ENOMEM, "note: out of memory");
	snprintf(*line, size, EM_DASH_SP "%s %s\n", name, b64);
	return 0;
}

int note_sign(const struct mm_signer *s, const char *text, size_t len, char **line)
{
	struct mm_verifier *v = NULL;
	uint8_t sig[MM_SIG_LEN];
	int rc;

	*line = NULL;
	rc = mm_signer_verifier(s, &v);
	if (rc == 0)
		rc = mm_sign(s, text, len, sig);
	if (rc == 0)
		rc = format_sig_line(mm_signer_name(s), key_id(v, ALG_ED25519), sig, sizeof(sig), line);
	mm_verifier_free(v);
	return rc;
}

int note_cosign(const struct mm_signer *s, const char *text, size_t len, uint64_t timestamp,
		char **line)
{
	struct mm_verifier *v = NULL;
	uint8_t bytes[8 + MM_SIG_LEN];
	size_t msg_len = 0;
	char *msg = NULL;
	int rc;

	*line = NULL;
	rc = mm_signer_verifier(s, &v);
	if (rc < 0)
		return rc;
	msg = cosigned_message(text, len, timestamp, &msg_len);
	if (!msg) {
		rc = mm_fail(MM_ENOMEM, "note: out of memory");
		goto out;
	}
	for (int i = 0; i < 8; i++)
		bytes[i] = (uint8_t)(timestamp >> (56 - 8 * i));
	rc = mm_sign(s, msg, msg_len, bytes + 8);
	if (rc == 0)
		rc = format_sig_line(mm_signer_name(s), key_id(v, ALG_COSIGNATURE_V1), bytes,
				     sizeof(bytes), line);
out:
	free(msg);
	mm_verifier_free(v);
	return rc;
}

int checkpoint_parse(const char *text, size_t len, struct checkpoint *cp)
{
	const char *p = text, *end = text + len, *nl;
	size_t n;

	memset(cp, 0, sizeof(*cp));
	/* Line 1: origin. */
	nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl || nl == p || (size_t)(nl - p) > MM_KEY_NAME_MAX)
		return mm_fail(MM_EFORMAT, "checkpoint: line 1: origin must be 1..%d bytes",
			       MM_KEY_NAME_MAX);
	memcpy(cp->origin, p, (size_t)(nl - p));
	p = nl + 1;
	/* Line 2: tree size, decimal, no leading zeros. */
	nl = memchr(p, '\n', (size_t)(end - p));
	n = nl ? (size_t)(nl - p) : 0;
	if (n == 0 || n > 20 || (n > 1 && p[0] == '0'))
		return mm_fail(MM_EFORMAT,
			       "checkpoint: line 2: tree size must be a decimal without leading zeros");
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(p[i] - '0');
		if (d > 9 || cp->size > (UINT64_MAX - d) / 10)
			return mm_fail(MM_EFORMAT, "checkpoint: line 2: tree size is not a number "
						   "below 2^64");
		cp->size = cp->size * 10 + d;
	}
	p = nl + 1;
	/* Line 3: root hash. */
	nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl || mm_base64_decode(p, (size_t)(nl - p), cp->root, MERKLE_HASH_LEN) < 0)
		return mm_fail(MM_EFORMAT, "checkpoint: line 3: root hash must be base64 of 32 bytes");
	p = nl + 1;
	/* Extension lines: opaque but non-empty. */
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl || nl == p)
			return mm_fail(MM_EFORMAT, "checkpoint: line %zu: empty or unterminated "
						   "extension line",
				       4 + cp->n_extensions);
		cp->n_extensions++;
		p = nl + 1;
	}
	return 0;
}

int checkpoint_format(const char *origin, uint64_t size, const uint8_t root[MERKLE_HASH_LEN],
		      char **out)
{
	char b64[48];
	size_t cap = strlen(origin) + 21 + sizeof(b64) + 4;

	mm_base64_encode(root, MERKLE_HASH_LEN, b64, sizeof(b64));
	*out = malloc(cap);
	if (!*out)
		return mm_fail(MM_ENOMEM, "checkpoint: out of memory");
	snprintf(*out, cap, "%s\n%" PRIu64 "\n%s\n", origin, size, b64);
	return 0;
}
