/*
 * The oversight panel: its document (members' verifier keys and the quorum
 * k of n), the signature lines every signed oversight file carries, and
 * the one function that says what a set of signatures is worth. A panel
 * comes into force only when all of its members signed it; it leaves only
 * when k of them sign the leave statement.
 */
#include "mamori/oversight.h"

#include "oversight_int.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* U+2014 EM DASH and a space: how a C2SP signed-note signature line begins. */
#define SIG_PREFIX "\xe2\x80\x94 "
#define SIG_PREFIX_LEN 4
/* base64 of a 4-byte key hash and a 64-byte signature. */
#define SIG_B64_LEN 92

struct mm_panel {
	json_t *doc;
	char *canonical;
	size_t canonical_len;
	char digest[65];
	unsigned quorum;
	size_t n;
	struct mm_verifier *members[MM_PANEL_MAX_MEMBERS];
};

/* ---- signature lines ---- */

static int parse_sig_line(const char *line, size_t len, const char *where, size_t line_no,
			  struct mm_sig_line *out)
{
	const char *name, *space;
	uint8_t raw[4 + MM_SIG_LEN];

	if (len < SIG_PREFIX_LEN || memcmp(line, SIG_PREFIX, SIG_PREFIX_LEN) != 0)
		return mm_fail(MM_EFORMAT, "%s:%zu: a signature line starts with an em dash and a space", where,
			       line_no);
	name = line + SIG_PREFIX_LEN;
	space = memchr(name, ' ', len - SIG_PREFIX_LEN);
	if (!space || space == name || (size_t)(space - name) > MM_KEY_NAME_MAX)
		return mm_fail(MM_EFORMAT, "%s:%zu: expected '— NAME SIGNATURE'", where, line_no);
	for (const char *c = name; c < space; c++)
		if (*c <= ' ' || *c > '~' || *c == '+')
			return mm_fail(MM_EFORMAT, "%s:%zu: bad character in the key name", where, line_no);
	if ((size_t)(line + len - (space + 1)) != SIG_B64_LEN ||
	    mm_base64_decode(space + 1, SIG_B64_LEN, raw, sizeof(raw)) != 0)
		return mm_fail(MM_EFORMAT, "%s:%zu: the signature is not base64 of 68 bytes", where, line_no);
	memcpy(out->name, name, (size_t)(space - name));
	out->name[space - name] = '\0';
	out->key_hash = (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3];
	memcpy(out->sig, raw + 4, MM_SIG_LEN);
	return 0;
}

int mm_sig_lines_parse(const char *text, size_t len, const char *where, struct mm_sig_line **out,
		       size_t *n)
{
	struct mm_sig_line *lines = NULL;
	size_t count = 0, cap = 0, line_no = 0;
	const char *p = text, *end = text + len;
	int rc = 0;

	*out = NULL;
	*n = 0;
	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t line_len = nl ? (size_t)(nl - p) : (size_t)(end - p);

		line_no++;
		if (line_len > 0) {
			if (count == MM_SIG_LINES_MAX) {
				rc = mm_fail(MM_ELIMIT, "%s:%zu: more than %d signature lines", where, line_no,
					     MM_SIG_LINES_MAX);
				break;
			}
			/* Grown as needed: a file holds a few lines, the cap is for hostile ones. */
			if (count == cap) {
				size_t ncap = cap ? cap * 2 : 4;
				struct mm_sig_line *grown = realloc(lines, ncap * sizeof(*lines));
				if (!grown) {
					free(lines);
					return mm_fail(MM_ENOMEM, "%s: out of memory", where);
				}
				lines = grown;
				cap = ncap;
			}
			rc = parse_sig_line(p, line_len, where, line_no, &lines[count]);
			if (rc == 0)
				count++;
		}
		p += line_len + 1;
	}
	if (rc) {
		free(lines);
		return rc;
	}
	*out = lines;
	*n = count;
	return 0;
}

int mm_sig_line_make(const struct mm_signer *s, const void *msg, size_t len, char **out)
{
	struct mm_verifier *v = NULL;
	uint8_t raw[4 + MM_SIG_LEN];
	char b64[SIG_B64_LEN + 1];
	uint32_t h;
	size_t size;
	int rc = mm_signer_verifier(s, &v);

	*out = NULL;
	if (rc)
		return rc;
	h = mm_verifier_hash(v);
	mm_verifier_free(v);
	raw[0] = (uint8_t)(h >> 24);
	raw[1] = (uint8_t)(h >> 16);
	raw[2] = (uint8_t)(h >> 8);
	raw[3] = (uint8_t)h;
	rc = mm_sign(s, msg, len, raw + 4);
	if (rc)
		return rc;
	mm_base64_encode(raw, sizeof(raw), b64, sizeof(b64));
	size = SIG_PREFIX_LEN + strlen(mm_signer_name(s)) + 1 + SIG_B64_LEN + 2;
	*out = malloc(size);
	if (!*out)
		return mm_fail(MM_ENOMEM, "signature: out of memory");
	snprintf(*out, size, SIG_PREFIX "%s %s\n", mm_signer_name(s), b64);
	return 0;
}

/* ---- counting ---- */

static const struct mm_verifier *find_member(const struct mm_panel *p, const char *name, uint32_t hash,
					     size_t *index)
{
	for (size_t i = 0; i < p->n; i++) {
		if (strcmp(mm_verifier_name(p->members[i]), name) == 0 &&
		    mm_verifier_hash(p->members[i]) == hash) {
			*index = i;
			return p->members[i];
		}
	}
	return NULL;
}

void mm_panel_count(const struct mm_panel *p, const void *msg, size_t len, const struct mm_sig_line *sigs,
		    size_t n_sigs, const char *exclude, struct mm_quorum_count *out)
{
	bool counted[MM_PANEL_MAX_MEMBERS] = { false };
	size_t used = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n_sigs; i++) {
		size_t m = 0;
		const struct mm_verifier *v = find_member(p, sigs[i].name, sigs[i].key_hash, &m);

		if (!v) {
			out->unknown_key++;
		} else if (exclude && strcmp(mm_verifier_name(v), exclude) == 0) {
			out->requester++;
		} else if (!mm_verify(v, msg, len, sigs[i].sig)) {
			out->bad_signature++;
		} else if (counted[m]) {
			out->duplicate++;
		} else {
			int w;

			counted[m] = true;
			out->valid++;
			w = snprintf(out->signers + used, sizeof(out->signers) - used, "%s%s",
				     used ? ", " : "", mm_verifier_name(v));
			if (w > 0)
				used = used + (size_t)w < sizeof(out->signers) ? used + (size_t)w
									       : sizeof(out->signers) - 1;
		}
	}
}

/* ---- the panel document ---- */

void mm_panel_free(struct mm_panel *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		mm_verifier_free(p->members[i]);
	json_decref(p->doc);
	free(p->canonical);
	free(p);
}

size_t mm_panel_size(const struct mm_panel *p) { return p->n; }
unsigned mm_panel_quorum(const struct mm_panel *p) { return p->quorum; }
const struct mm_verifier *mm_panel_member(const struct mm_panel *p, size_t i) { return p->members[i]; }
const char *mm_panel_digest(const struct mm_panel *p) { return p->digest; }

const char *mm_panel_canonical(const struct mm_panel *p, size_t *len)
{
	*len = p->canonical_len;
	return p->canonical;
}

/* Checks the document's fields and loads its members; takes ownership of doc. */
static int panel_from_json(json_t *doc, struct mm_panel **out)
{
	struct mm_panel *p = calloc(1, sizeof(*p));
	json_t *members = json_object_get(doc, "members"), *quorum = json_object_get(doc, "quorum");
	json_t *created = json_object_get(doc, "created");
	const char *key;
	json_t *value;
	uint64_t t;
	int rc = 0;

	*out = NULL;
	if (!p) {
		json_decref(doc);
		return mm_fail(MM_ENOMEM, "panel: out of memory");
	}
	p->doc = doc;
	if (!json_is_object(doc) || json_object_size(doc) != 5 ||
	    !json_is_string(json_object_get(doc, "type")) ||
	    strcmp(json_string_value(json_object_get(doc, "type")), "mamori-panel") != 0 ||
	    json_integer_value(json_object_get(doc, "v")) != 1 || !json_is_integer(json_object_get(doc, "v")))
		rc = mm_fail(MM_EFORMAT, "panel: not a version 1 mamori-panel document "
					 "(members, quorum, created, type, v)");
	if (rc == 0 && (!json_is_array(members) || json_array_size(members) == 0 ||
			json_array_size(members) > MM_PANEL_MAX_MEMBERS))
		rc = mm_fail(MM_EFORMAT, "panel: members must list 1 to %d verifier keys", MM_PANEL_MAX_MEMBERS);
	if (rc == 0 && (!json_is_string(created) || ov_time_parse(json_string_value(created), &t) != 0))
		rc = mm_fail(MM_EFORMAT, "panel: created is not an RFC 3339 time");
	for (size_t i = 0; rc == 0 && i < json_array_size(members); i++) {
		json_t *m = json_array_get(members, i);

		if (!json_is_string(m) || mm_verifier_parse(json_string_value(m), &p->members[p->n]) != 0) {
			rc = mm_fail(MM_EFORMAT, "panel: member %zu is not a verifier key", i + 1);
			break;
		}
		p->n++;
		for (size_t j = 0; j + 1 < p->n; j++)
			if (strcmp(mm_verifier_name(p->members[j]), mm_verifier_name(p->members[p->n - 1])) == 0 ||
			    memcmp(mm_verifier_pubkey(p->members[j]), mm_verifier_pubkey(p->members[p->n - 1]), 32) == 0)
				rc = mm_fail(MM_EFORMAT, "panel: member %zu (%s) repeats a name or key of member %zu",
					     i + 1, mm_verifier_name(p->members[p->n - 1]), j + 1);
	}
	if (rc == 0 && (!json_is_integer(quorum) || json_integer_value(quorum) < 1 ||
			(size_t)json_integer_value(quorum) > p->n))
		rc = mm_fail(MM_EFORMAT, "panel: quorum must be an integer from 1 to %zu", p->n);
	json_object_foreach(doc, key, value)
		if (rc == 0 && strcmp(key, "members") && strcmp(key, "quorum") && strcmp(key, "created") &&
		    strcmp(key, "type") && strcmp(key, "v"))
			rc = mm_fail(MM_EFORMAT, "panel: unknown field '%s'", key);
	if (rc == 0)
		rc = mm_json_canonical(doc, &p->canonical, &p->canonical_len);
	if (rc) {
		mm_panel_free(p);
		return rc;
	}
	p->quorum = (unsigned)json_integer_value(quorum);
	ov_sha256_hex(p->canonical, p->canonical_len, p->digest);
	*out = p;
	return 0;
}

int mm_panel_parse(const char *doc, size_t doc_len, const char *sigs, size_t sigs_len, struct mm_panel **out)
{
	struct mm_quorum_count count;
	struct mm_sig_line *lines = NULL;
	struct mm_panel *p = NULL;
	json_error_t err;
	json_t *j;
	size_t n_lines = 0;
	int rc;

	*out = NULL;
	j = json_loadb(doc, doc_len, JSON_REJECT_DUPLICATES, &err);
	if (!j)
		return mm_fail(MM_EFORMAT, "panel.json:%d:%d: %s", err.line, err.column, err.text);
	rc = panel_from_json(j, &p);
	if (rc == 0)
		rc = mm_sig_lines_parse(sigs, sigs_len, "panel.sig", &lines, &n_lines);
	if (rc == 0) {
		mm_panel_count(p, p->canonical, p->canonical_len, lines, n_lines, NULL, &count);
		if (count.valid != p->n)
			rc = mm_fail(MM_EFORMAT,
				     "panel: %u of its %zu members signed panel.json; a panel is in force only "
				     "when every member has signed it",
				     count.valid, p->n);
	}
	free(lines);
	if (rc) {
		mm_panel_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

int mm_panel_load(const char *data_dir, struct mm_panel **out)
{
	char path[4096], sig_path[4096];
	char *doc = NULL, *sigs = NULL;
	size_t doc_len = 0, sigs_len = 0;
	int rc;

	*out = NULL;
	rc = ov_path(path, sizeof(path), data_dir, "panel.json");
	if (rc == 0)
		rc = ov_path(sig_path, sizeof(sig_path), data_dir, "panel.sig");
	if (rc == 0)
		rc = ov_read_file(path, &doc, &doc_len);
	if (rc == 0) {
		rc = ov_read_file(sig_path, &sigs, &sigs_len);
		if (rc == MM_ENOENT)
			rc = mm_fail(MM_EFORMAT, "%s: missing: panel.json is not signed", sig_path);
	}
	if (rc == 0) {
		rc = mm_panel_parse(doc, doc_len, sigs, sigs_len, out);
		if (rc) {
			char why[512];

			snprintf(why, sizeof(why), "%s", mm_last_error());
			mm_fail(rc, "%s: %s", path, why);
		}
	}
	free(doc);
	free(sigs);
	return rc;
}

/* ---- init and leave ---- */

static int sign_all(struct mm_signer *const *signers, size_t n, const char *msg, size_t len, char **out)
{
	size_t total = 0;

	*out = NULL;
	for (size_t i = 0; i < n; i++) {
		char *line = NULL, *grown;
		size_t line_len;
		int rc = mm_sig_line_make(signers[i], msg, len, &line);

		if (rc) {
			free(*out);
			*out = NULL;
			return rc;
		}
		line_len = strlen(line);
		grown = realloc(*out, total + line_len + 1);
		if (!grown) {
			free(line);
			free(*out);
			*out = NULL;
			return mm_fail(MM_ENOMEM, "signatures: out of memory");
		}
		memcpy(grown + total, line, line_len + 1);
		total += line_len;
		*out = grown;
		free(line);
	}
	return 0;
}

int mm_panel_init(const char *data_dir, struct mm_verifier *const *members, size_t n_members,
		  unsigned quorum, struct mm_signer *const *signers, size_t n_signers, uint64_t now_ns)
{
	char path[4096], sig_path[4096], when[64];
	json_t *doc = json_object(), *list = json_array();
	struct mm_panel *p = NULL;
	char *canonical = NULL, *sigs = NULL;
	size_t len = 0;
	int rc = 0;

	if (!doc || !list) {
		json_decref(doc);
		json_decref(list);
		return mm_fail(MM_ENOMEM, "panel: out of memory");
	}
	for (size_t i = 0; i < n_members && rc == 0; i++) {
		char *line = NULL;

		rc = mm_verifier_encode(members[i], &line);
		if (rc == 0 && json_array_append_new(list, json_string(line)) != 0)
			rc = mm_fail(MM_ENOMEM, "panel: out of memory");
		free(line);
	}
	json_object_set_new(doc, "type", json_string("mamori-panel"));
	json_object_set_new(doc, "v", json_integer(1));
	json_object_set_new(doc, "members", list);
	json_object_set_new(doc, "quorum", json_integer(quorum));
	json_object_set_new(doc, "created", json_string(mm_oversight_time_format(now_ns, when)));
	if (rc) {
		json_decref(doc);
		return rc;
	}
	rc = mm_json_canonical(doc, &canonical, &len);
	json_decref(doc);
	if (rc == 0)
		rc = sign_all(signers, n_signers, canonical, len, &sigs);
	/* The same check a later load makes: every member signed. */
	if (rc == 0 && mm_panel_parse(canonical, len, sigs, strlen(sigs), &p) != 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", mm_last_error());
		rc = mm_fail(MM_EPERM, "panel init: %s (give --sign with every member's private key)", why);
	}
	mm_panel_free(p);
	if (rc == 0)
		rc = ov_mkdirs(data_dir);
	if (rc == 0)
		rc = ov_path(path, sizeof(path), data_dir, "panel.json");
	if (rc == 0)
		rc = ov_path(sig_path, sizeof(sig_path), data_dir, "panel.sig");
	/* The signatures go first: panel.json is what switches the mode, and it is written last. */
	if (rc == 0)
		rc = ov_write_file(sig_path, sigs, strlen(sigs), false);
	if (rc == 0)
		rc = ov_write_file(path, canonical, len, true);
	if (rc == 0)
		ov_guard_cache_drop(data_dir);
	if (rc == MM_EEXIST)
		rc = mm_fail(MM_EEXIST, "panel init: %s exists: this data directory has a panel already "
					"('mamori panel leave' first)",
			     path);
	free(canonical);
	free(sigs);
	return rc;
}

int mm_panel_leave(const char *data_dir, struct mm_signer *const *signers, size_t n_signers, uint64_t now_ns)
{
	char path[4096], sig_path[4096], kept[4096], rel[128], when[64];
	struct mm_quorum_count count;
	struct mm_sig_line *lines = NULL;
	struct mm_panel *p = NULL;
	json_t *stmt;
	char *msg = NULL, *sigs = NULL;
	size_t len = 0, n_lines = 0;
	int rc = mm_panel_load(data_dir, &p);

	if (rc == MM_ENOENT)
		return mm_fail(MM_ENOENT, "panel leave: %s has no panel (it is in lab mode)", data_dir);
	if (rc)
		return rc;
	stmt = json_pack("{s:s, s:s}", "type", "mamori-panel-leave", "panel", p->digest);
	rc = stmt ? mm_json_canonical(stmt, &msg, &len) : mm_fail(MM_ENOMEM, "panel: out of memory");
	json_decref(stmt);
	if (rc == 0)
		rc = sign_all(signers, n_signers, msg, len, &sigs);
	if (rc == 0)
		rc = mm_sig_lines_parse(sigs, strlen(sigs), "leave", &lines, &n_lines);
	if (rc == 0) {
		mm_panel_count(p, msg, len, lines, n_lines, NULL, &count);
		if (count.valid < p->quorum)
			rc = mm_fail(MM_EPERM, "panel leave: %u valid member signatures, the quorum is %u of %zu",
				     count.valid, p->quorum, p->n);
	}
	if (rc == 0) {
		/* Keep what was in force, and the statement that ended it. */
		snprintf(rel, sizeof(rel), "panel-left-%s", mm_oversight_time_format(now_ns, when));
		rc = ov_path(path, sizeof(path), data_dir, "panel.json");
	}
	if (rc == 0)
		rc = ov_path(sig_path, sizeof(sig_path), data_dir, "panel.sig");
	if (rc == 0 && snprintf(kept, sizeof(kept), "%s/oversight/%s.leave", data_dir, rel) < (int)sizeof(kept))
		rc = ov_write_file(kept, sigs, strlen(sigs), false);
	if (rc == 0 && snprintf(kept, sizeof(kept), "%s/oversight/%s.sig", data_dir, rel) < (int)sizeof(kept) &&
	    rename(sig_path, kept) != 0)
		rc = mm_fail(MM_EIO, "panel leave: cannot move %s", sig_path);
	/* panel.json last: until it moves, the panel stays in force. */
	if (rc == 0 && snprintf(kept, sizeof(kept), "%s/oversight/%s.json", data_dir, rel) < (int)sizeof(kept) &&
	    rename(path, kept) != 0)
		rc = mm_fail(MM_EIO, "panel leave: cannot move %s", path);
	if (rc == 0)
		ov_guard_cache_drop(data_dir);
	free(lines);
	free(msg);
	free(sigs);
	mm_panel_free(p);
	return rc;
}
