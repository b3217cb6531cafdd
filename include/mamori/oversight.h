/*
 * Oversight: the panel and its signed authorizations (docs/oversight.md).
 *
 * State lives in <data>/oversight/. Without panel.json the data directory
 * is in lab mode: every act is allowed and audited as such. panel.json (the
 * members' verifier keys and the quorum k of n, RFC 8785 canonical JSON)
 * with panel.sig (one signature line per member, all n) puts it in
 * enforced mode: then an act needs an authorization in force, one
 * authz/<id>.json document signed by k distinct members other than its
 * requester (authz/<id>.sig). Revocations (authz/<id>.revoke) and
 * ratifications of emergencies (authz/<id>.ratify) are signature lines of k
 * members over a statement derived from the document's digest; uses are
 * counted in authz/<id>.uses under a lock.
 *
 * Signature lines are C2SP signed-note lines: "— NAME BASE64(keyhash4 ||
 * ed25519sig64)", keys as keys.h encodes them.
 */
#ifndef MAMORI_OVERSIGHT_H
#define MAMORI_OVERSIGHT_H

#include "mamori/addr.h"
#include "mamori/keys.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --- RFC 8785 canonical JSON ------------------------------------------- */

#define MM_JSON_NUMBER_STRLEN 32

/*
 * The RFC 8785 (JCS) bytes of v: members sorted by UTF-16 code units,
 * ES6 string escapes and number forms, no whitespace. Integers are written
 * exactly; reals as ES6 Number.prototype.toString. *out is malloc'd and
 * NUL-terminated, *len (may be NULL) excludes the NUL. MM_EINVAL for a
 * NaN/Infinity, MM_ELIMIT past 64 levels of nesting or 16 MiB.
 */
int mm_json_canonical(const json_t *v, char **out, size_t *len);

/* ES6 Number.prototype.toString of a finite double ("1e+21", "0.000001", "5e-324"). */
int mm_json_number_format(double d, char buf[MM_JSON_NUMBER_STRLEN]);

/* Order of two UTF-8 member names by UTF-16 code units: <0, 0, >0. */
int mm_json_key_compare(const char *a, size_t a_len, const char *b, size_t b_len);

/* --- signature lines --------------------------------------------------- */

struct mm_sig_line {
	char name[MM_KEY_NAME_MAX + 1];
	uint32_t key_hash;
	uint8_t sig[MM_SIG_LEN];
};

/* Most signature lines one file may hold: far above any panel, a cap for hostile files. */
#define MM_SIG_LINES_MAX 256

/*
 * Parses signature lines ("— NAME BASE64", one a line; blank lines
 * ignored). where names the file in messages ("authz/A-2026-0001.sig:3:
 * ..."). *out is malloc'd (free()). MM_EFORMAT on any bad line.
 */
int mm_sig_lines_parse(const char *text, size_t len, const char *where, struct mm_sig_line **out,
		       size_t *n);

/* Signs msg and writes the line, with its '\n', to *out (malloc'd). */
int mm_sig_line_make(const struct mm_signer *s, const void *msg, size_t len, char **out);

/* --- panel ------------------------------------------------------------- */

#define MM_PANEL_MAX_MEMBERS 64

struct mm_panel;

/*
 * Parses a panel document and its signature lines and checks that every
 * member signed the canonical bytes (a panel is in force only with the
 * consent of all its members). MM_EFORMAT naming what is wrong.
 */
int mm_panel_parse(const char *doc, size_t doc_len, const char *sigs, size_t sigs_len,
		   struct mm_panel **out);

/* Loads <data_dir>/oversight/panel.json and panel.sig; MM_ENOENT: lab mode. */
int mm_panel_load(const char *data_dir, struct mm_panel **out);
void mm_panel_free(struct mm_panel *p);

size_t mm_panel_size(const struct mm_panel *p);
unsigned mm_panel_quorum(const struct mm_panel *p);
const struct mm_verifier *mm_panel_member(const struct mm_panel *p, size_t i);
/* The canonical bytes of the panel document (borrowed). */
const char *mm_panel_canonical(const struct mm_panel *p, size_t *len);
/* SHA-256 of the canonical document, lower-case hex. */
const char *mm_panel_digest(const struct mm_panel *p);

/*
 * What a set of signature lines over msg is worth to this panel. A line
 * counts when its name and key hash are a member's, the signature verifies
 * over exactly msg, the member has not been counted already, and the
 * member is not `exclude` (the requester; NULL: nobody).
 */
struct mm_quorum_count {
	unsigned valid;          /* distinct counted members */
	unsigned requester;      /* lines by the excluded member */
	unsigned duplicate;      /* further lines by an already counted member */
	unsigned unknown_key;    /* name or key hash of no member */
	unsigned bad_signature;  /* a member's key, but not over msg */
	char signers[MM_PANEL_MAX_MEMBERS * 16]; /* counted names, "alice, bob" (truncated) */
};

void mm_panel_count(const struct mm_panel *p, const void *msg, size_t len, const struct mm_sig_line *sigs,
		    size_t n_sigs, const char *exclude, struct mm_quorum_count *out);

/*
 * Switches data_dir to enforced mode: writes panel.json (members' verifier
 * keys, quorum, creation time) and panel.sig. Every member must sign
 * (signers are matched to members by key); MM_EEXIST when a panel exists,
 * MM_EPERM when a member's signature is missing.
 */
int mm_panel_init(const char *data_dir, struct mm_verifier *const *members, size_t n_members,
		  unsigned quorum, struct mm_signer *const *signers, size_t n_signers, uint64_t now_ns);

/*
 * Returns data_dir to lab mode: k members sign the leave statement over
 * the panel's digest; the panel files are kept as panel-left-<time>.*.
 * MM_EPERM (naming the count) short of quorum.
 */
int mm_panel_leave(const char *data_dir, struct mm_signer *const *signers, size_t n_signers,
		   uint64_t now_ns);

/* --- authorizations ---------------------------------------------------- */

enum mm_authz_kind {
	MM_AK_COLLECT_TRANSIT,
	MM_AK_COLLECT_AGREEMENT,
	MM_AK_COLLECT_SPECIFIED,
	MM_AK_ANALYZE,
	MM_AK_REIDENTIFY,
	MM_AK_RESPOND,
	MM_AK_SHARE,
	MM_AK_COUNT_
};

/* "collect-transit", …; NULL out of range. */
const char *mm_authz_kind_name(enum mm_authz_kind k);
int mm_authz_kind_parse(const char *text, enum mm_authz_kind *out);

/* "A-2026-0042" plus NUL, with room for ids past 9999 in a year. */
#define MM_AUTHZ_ID_MAX 24

struct mm_authz_action {
	const char *action;       /* borrowed from the document */
	uint64_t max_duration_ns; /* 0: no limit stated */
};

/*
 * An authorization document, validated. Strings are borrowed from the
 * parsed JSON the struct owns; empty scope lists mean "any" on that
 * dimension (docs/oversight.md). Times are ns since the epoch; an absent
 * data bound is 0 / UINT64_MAX.
 */
struct mm_authz {
	char id[MM_AUTHZ_ID_MAX];
	enum mm_authz_kind kind;
	const char *article, *basis_text, *purpose;
	const char *requester, *organisation;
	uint32_t *sensors;
	size_t n_sensors;
	struct mm_prefix *prefixes;
	size_t n_prefixes;
	uint32_t *asns;
	size_t n_asns;
	char (*countries)[2];
	size_t n_countries;
	const char **indicators;
	size_t n_indicators;
	uint64_t data_from_ns, data_until_ns;
	uint32_t fields; /* bits (1 << enum mm_qfield); 0: any field */
	bool aggregate_only;
	struct mm_authz_action *actions;
	size_t n_actions;
	uint64_t valid_from_ns, valid_until_ns;
	uint64_t max_uses; /* 0: unlimited */
	bool emergency;
	uint64_t ratify_by_ns;
	bool automated;
	uint64_t requested_ns;
	/* private */
	json_t *doc;
	char *canonical;
	size_t canonical_len;
	char digest[65];
};

/*
 * Validates a document (takes ownership of doc, also on failure): every
 * field present with its type, no unknown field, prefixes with host bits
 * clear, times in RFC 3339, from <= until. MM_EFORMAT naming the field.
 * require_id false accepts a request that has no id yet.
 */
int mm_authz_from_json(json_t *doc, bool require_id, struct mm_authz **out);

/* Parses JSON text (at most 1 MiB) and validates it as above; where names it in messages. */
int mm_authz_parse(const char *text, size_t len, const char *where, struct mm_authz **out);
void mm_authz_free(struct mm_authz *a);

/* Field names of the scope ("host", "net", "port", …) ↔ enum mm_qfield bits. */
const char *mm_authz_field_name(unsigned field);
int mm_authz_field_parse(const char *name, unsigned *field);

/* Time as documents write it: "2026-11-01T00:00:00Z" (fraction only when nonzero). */
char *mm_oversight_time_format(uint64_t ns, char buf[64]);

/* --- the oversight state of a data directory --------------------------- */

enum mm_authz_status {
	MM_AZ_IN_FORCE,
	MM_AZ_PENDING,       /* fewer than k valid signatures */
	MM_AZ_NOT_YET_VALID,
	MM_AZ_EXPIRED,
	MM_AZ_REVOKED,
	MM_AZ_SUSPENDED,     /* emergency not ratified by its deadline */
	MM_AZ_EXHAUSTED,     /* max_uses reached */
	MM_AZ_FORBIDDEN,     /* its purpose is forbidden by policy */
};

const char *mm_authz_status_name(enum mm_authz_status s);

struct mm_authz_state {
	enum mm_authz_status status;
	struct mm_quorum_count sigs;   /* over the document, requester excluded */
	unsigned quorum, members;
	bool revoked, ratified;
	bool emergency_acting;         /* in force on one signature, before its deadline */
	uint64_t uses;
	char reason[512];              /* why it is not in force; "" when it is */
};

struct mm_oversight;

/*
 * Loads the oversight state of data_dir: the panel (none: lab mode), the
 * policy (oversight/policy.json: {"forbidden_purposes": [...]}) and every
 * authorization with its signature, revocation and ratification lines and
 * use count. A damaged file fails the load (MM_EFORMAT naming it): the
 * guard then refuses everything rather than guess.
 */
int mm_oversight_open(const char *data_dir, struct mm_oversight **out);
void mm_oversight_free(struct mm_oversight *o);

bool mm_oversight_lab(const struct mm_oversight *o);
const struct mm_panel *mm_oversight_panel(const struct mm_oversight *o);
bool mm_oversight_purpose_forbidden(const struct mm_oversight *o, const char *purpose);

size_t mm_oversight_count(const struct mm_oversight *o);
const struct mm_authz *mm_oversight_authz(const struct mm_oversight *o, size_t i);
const struct mm_authz *mm_oversight_find(const struct mm_oversight *o, const char *id);

/* Where a is at now_ns: signatures, revocation, ratification, validity, uses, policy. */
void mm_oversight_state(const struct mm_oversight *o, const struct mm_authz *a, uint64_t now_ns,
			struct mm_authz_state *out);

/*
 * Files a request: takes ownership of doc (an authorization without id),
 * allocates the next id A-<year of now>-NNNN under a lock, writes
 * authz/<id>.json (canonical) and adds it to o. MM_EPERM for a forbidden
 * purpose.
 */
int mm_oversight_request(struct mm_oversight *o, json_t *doc, uint64_t now_ns, char id[MM_AUTHZ_ID_MAX]);

/* Appends s's signature line over the canonical document to authz/<id>.sig. */
int mm_oversight_sign(struct mm_oversight *o, const char *id, const struct mm_signer *s);

/* Appends signature lines over the revocation / ratification statement of id. */
int mm_oversight_revoke(struct mm_oversight *o, const char *id, struct mm_signer *const *s, size_t n);
int mm_oversight_ratify(struct mm_oversight *o, const char *id, struct mm_signer *const *s, size_t n);

/* The statement bytes a revocation or ratification signs (canonical JSON, malloc'd). */
int mm_authz_statement(const struct mm_authz *a, const char *type, char **out, size_t *len);

/*
 * Counts one use of id, atomically against other processes (flock on
 * authz/<id>.uses): MM_ELIMIT when max_uses are spent already.
 */
int mm_oversight_use(struct mm_oversight *o, const char *id);

/*
 * One paragraph for people: what a permits, for which data, until when,
 * uses left, who signed and whether it is in force. *out malloc'd.
 */
int mm_authz_summary(const struct mm_authz *a, const struct mm_authz_state *st, char **out);

/* Who acts: $MAMORI_ACTOR, else the login name of the user, else "uid N". Static buffer. */
const char *mm_oversight_actor(void);

#endif
