/*
 * The guard (guard.h): one decision per act, from the oversight files of
 * the data directory, recorded in its audit log before the act happens.
 * Refusal is the default: an act goes ahead only when an authorization in
 * force covers it, or when the directory has no panel (lab mode).
 */
#include "mamori/guard.h"

#include "oversight_int.h"

#include "mamori/audit.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const act_names[MM_ACT_COUNT_] = {
	[MM_ACT_COLLECT] = "collect", [MM_ACT_QUERY] = "query",     [MM_ACT_ANALYZE] = "analyze",
	[MM_ACT_REIDENTIFY] = "reidentify", [MM_ACT_RESPOND] = "respond", [MM_ACT_SHARE] = "share",
};

const char *mm_act_name(enum mm_act act)
{
	return (unsigned)act < MM_ACT_COUNT_ ? act_names[act] : NULL;
}

/* ---- audit entries ---- */

/* One entry of the audit schema (docs/oversight.md) as canonical JSON. */
static int entry_text(uint64_t now_ns, const char *actor, const char *act, const char *outcome, bool lab,
		      const struct mm_authz *a, const char *reason, const json_t *detail, char **text, size_t *len)
{
	char when[64];
	json_t *e;
	int rc;

	e = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:b}", "v", 1, "time", mm_oversight_time_format(now_ns, when),
		      "mode", lab ? "lab" : "enforced", "actor", actor ? actor : mm_oversight_actor(), "act", act,
		      "outcome", outcome, "emergency", a && a->emergency);
	if (!e)
		return mm_fail(MM_ENOMEM, "audit entry: out of memory");
	json_object_set_new(e, "authz", a ? json_string(a->id) : json_null());
	json_object_set_new(e, "kind", a ? json_string(mm_authz_kind_name(a->kind)) : json_null());
	json_object_set_new(e, "legal_basis", a ? json_string(a->article) : json_null());
	json_object_set_new(e, "purpose", a ? json_string(a->purpose) : json_null());
	json_object_set_new(e, "reason", reason ? json_string(reason) : json_null());
	json_object_set_new(e, "detail", detail ? json_deep_copy(detail) : json_object());
	rc = mm_json_canonical(e, text, len);
	json_decref(e);
	return rc;
}

/* Appends through *log, opening it first when it is not open yet; durable on return unless deferred. */
static int append_entry(const char *data_dir, struct mm_audit_log **log, const char *text, size_t len,
			uint64_t *index, bool deferred)
{
	int rc = *log ? 0 : mm_audit_open(data_dir, log);

	if (rc)
		return rc;
	return deferred ? mm_audit_append_deferred(*log, text, len, index) : mm_audit_append(*log, text, len, index);
}

int mm_guard_record(const char *data_dir, const char *act, const char *outcome, bool lab,
		    const struct mm_authz *authz, const char *reason, const json_t *detail)
{
	struct mm_audit_log *log = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc = entry_text(mm_time_now_ns(), NULL, act, outcome, lab, authz, reason, detail, &text, &len);

	if (rc == 0)
		rc = append_entry(data_dir, &log, text, len, NULL, false);
	if (log) {
		int rc2 = mm_audit_close(log);
		if (rc == 0)
			rc = rc2;
	}
	free(text);
	return rc;
}

/* ---- the query's footprint ---- */

static uint32_t query_fields(const struct mm_qnode *n)
{
	uint32_t bits = n->kind == MM_QN_PRED ? 1u << n->field : 0;

	for (const struct mm_qnode *c = n->first_child; c; c = c->next)
		bits |= query_fields(c);
	return bits;
}

static bool names_addresses(const struct mm_qnode *n)
{
	if (n->kind == MM_QN_PRED)
		return n->field == MM_QF_HOST || n->field == MM_QF_NET;
	for (const struct mm_qnode *c = n->first_child; c; c = c->next)
		if (names_addresses(c))
			return true;
	return false;
}

static bool prefix_within(const struct mm_prefix *outer, const struct mm_prefix *inner)
{
	return mm_prefix_bits128(outer) <= mm_prefix_bits128(inner) && mm_prefix_contains(outer, &inner->addr);
}

static bool value_in_scope(const struct mm_authz *a, const struct mm_qnode *n, size_t i)
{
	for (size_t k = 0; k < a->n_prefixes; k++) {
		if (n->field == MM_QF_HOST ? mm_prefix_contains(&a->prefixes[k], &n->values[i].addr)
					   : prefix_within(&a->prefixes[k], &n->values[i].prefix))
			return true;
	}
	return false;
}

/*
 * True when every flow the subtree matches has an address inside the
 * scope's prefixes: an address predicate whose every value lies inside,
 * an AND with one such child, an OR whose children all are.
 */
static bool covered(const struct mm_qnode *n, const struct mm_authz *a)
{
	switch (n->kind) {
	case MM_QN_PRED:
		if ((n->field != MM_QF_HOST && n->field != MM_QF_NET) || (n->op != MM_QO_EQ && n->op != MM_QO_IN))
			return false;
		for (size_t i = 0; i < n->n_values; i++)
			if (!value_in_scope(a, n, i))
				return false;
		return true;
	case MM_QN_AND:
		for (const struct mm_qnode *c = n->first_child; c; c = c->next)
			if (covered(c, a))
				return true;
		return false;
	case MM_QN_OR:
		for (const struct mm_qnode *c = n->first_child; c; c = c->next)
			if (!covered(c, a))
				return false;
		return true;
	default: return false;
	}
}

static uint32_t key_field(const struct mm_qkey *k)
{
	switch (k->kind) {
	case MM_QK_SRCIP:
	case MM_QK_DSTIP: return 1u << MM_QF_HOST;
	case MM_QK_SRCNET:
	case MM_QK_DSTNET: return 1u << MM_QF_NET;
	case MM_QK_SRCPORT:
	case MM_QK_DSTPORT: return 1u << MM_QF_PORT;
	case MM_QK_PROTO: return 1u << MM_QF_PROTO;
	case MM_QK_SRCAS:
	case MM_QK_DSTAS: return 1u << MM_QF_AS;
	case MM_QK_SRCCOUNTRY:
	case MM_QK_DSTCOUNTRY: return 1u << MM_QF_COUNTRY;
	}
	return 0;
}

uint32_t mm_guard_agg_fields(const struct mm_qagg *agg)
{
	uint32_t bits = 0;

	for (size_t i = 0; i < agg->n_keys; i++)
		bits |= key_field(&agg->keys[i]);
	for (size_t i = 0; i < agg->n_distinct; i++)
		bits |= key_field(&agg->distinct[i]);
	return bits;
}

/* ---- does one authorization cover the act? ---- */

static bool kind_fits(enum mm_act act, const struct mm_authz *a)
{
	switch (act) {
	case MM_ACT_COLLECT:
		return a->kind == MM_AK_COLLECT_TRANSIT || a->kind == MM_AK_COLLECT_AGREEMENT ||
		       a->kind == MM_AK_COLLECT_SPECIFIED;
	case MM_ACT_QUERY:
	case MM_ACT_ANALYZE: return a->kind == MM_AK_ANALYZE;
	case MM_ACT_REIDENTIFY: return a->kind == MM_AK_REIDENTIFY;
	case MM_ACT_RESPOND: return a->kind == MM_AK_RESPOND;
	case MM_ACT_SHARE: return a->kind == MM_AK_SHARE;
	case MM_ACT_COUNT_: break;
	}
	return false;
}

static const char *const kind_wanted[MM_ACT_COUNT_] = {
	[MM_ACT_COLLECT] = "collect-*", [MM_ACT_QUERY] = "analyze",       [MM_ACT_ANALYZE] = "automated analyze",
	[MM_ACT_REIDENTIFY] = "reidentify", [MM_ACT_RESPOND] = "respond", [MM_ACT_SHARE] = "share",
};

/*
 * How far one authorization is from covering the act: the reasons it
 * misses, weighted so the "nearest" one named in a refusal is the one
 * whose scope is closest to what was asked. Missing the place (addresses,
 * sensor, data time, target, indicators) weighs most, then not being in
 * force, then the manner (output, fields, automated).
 */
enum miss_weight { MISS_MANNER = 1, MISS_STATE = 2, MISS_PLACE = 3 };

struct misses {
	unsigned n, weight;
	char first[512];
};

static void miss(struct misses *m, enum miss_weight w, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void miss(struct misses *m, enum miss_weight w, const char *fmt, ...)
{
	va_list ap;

	m->weight += w;
	if (m->n++ == 0) {
		va_start(ap, fmt);
		vsnprintf(m->first, sizeof(m->first), fmt, ap);
		va_end(ap);
	}
}

static bool u32_listed(const uint32_t *list, size_t n, uint32_t v)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < n; i++)
		if (list[i] == v)
			return true;
	return false;
}

static void check_query(const struct mm_guard_act *act, const struct mm_authz *a, struct misses *m)
{
	const struct mm_qnode *root = mm_query_root(act->query);
	uint32_t used = query_fields(root) | act->extra_fields;
	char t0[64], t1[64];

	if (act->act == MM_ACT_QUERY && a->automated)
		miss(m, MISS_MANNER, "for automated analysis only");
	if (act->act == MM_ACT_ANALYZE && !a->automated)
		miss(m, MISS_MANNER, "not marked automated");
	if (act->record_output && a->aggregate_only)
		miss(m, MISS_MANNER, "aggregate-only");
	if (a->fields && (used & ~a->fields)) {
		unsigned f = (unsigned)__builtin_ctz(used & ~a->fields);
		miss(m, MISS_MANNER, "field '%s' outside its scope", mm_authz_field_name(f));
	}
	if (a->n_prefixes && names_addresses(root) && !covered(root, a))
		miss(m, MISS_PLACE, "addresses outside its prefixes");
	if (act->since_ns > a->data_until_ns || act->until_ns < a->data_from_ns)
		miss(m, MISS_PLACE, "data only from %s to %s", a->data_from_ns ? mm_oversight_time_format(a->data_from_ns, t0) : "any time",
		     a->data_until_ns != UINT64_MAX ? mm_oversight_time_format(a->data_until_ns, t1) : "any time");
}

static bool target_in_scope(const struct mm_authz *a, const struct mm_prefix *t)
{
	if (a->n_prefixes == 0)
		return true;
	for (size_t k = 0; k < a->n_prefixes; k++)
		if (prefix_within(&a->prefixes[k], t))
			return true;
	return false;
}

static void check_scope(const struct mm_guard_act *act, const struct mm_authz *a, struct misses *m)
{
	switch (act->act) {
	case MM_ACT_COLLECT:
		if (!u32_listed(a->sensors, a->n_sensors, act->sensor))
			miss(m, MISS_PLACE, "not sensor %" PRIu32, act->sensor);
		break;
	case MM_ACT_QUERY:
	case MM_ACT_ANALYZE: check_query(act, a, m); break;
	case MM_ACT_REIDENTIFY:
	case MM_ACT_RESPOND:
		if (act->target && !target_in_scope(a, act->target))
			miss(m, MISS_PLACE, "target outside its prefixes");
		if (act->act == MM_ACT_RESPOND) {
			bool listed = false;
			for (size_t i = 0; i < a->n_actions && !listed; i++)
				if (act->action && strcmp(a->actions[i].action, act->action) == 0) {
					listed = true;
					if (a->actions[i].max_duration_ns && (act->duration_ns == 0 ||
									    act->duration_ns > a->actions[i].max_duration_ns))
						miss(m, MISS_MANNER, "%s for at most %" PRIu64 "s", act->action,
						     (uint64_t)(a->actions[i].max_duration_ns / MM_NS_PER_SEC));
				}
			if (!listed)
				miss(m, MISS_MANNER, "action '%s' not listed", act->action ? act->action : "");
		}
		break;
	case MM_ACT_SHARE:
		for (size_t i = 0; i < act->n_indicators && a->n_indicators; i++) {
			bool listed = false;
			for (size_t k = 0; k < a->n_indicators && !listed; k++)
				listed = strcmp(a->indicators[k], act->indicators[i]) == 0;
			if (!listed) {
				miss(m, MISS_PLACE, "indicator %s not listed", act->indicators[i]);
				break;
			}
		}
		break;
	case MM_ACT_COUNT_: break;
	}
}

/* What the act asks for, for people: "dst net 203.0.113.0/24 for record-level output". */
static void describe(const struct mm_guard_act *act, char *buf, size_t size)
{
	char p[MM_PREFIX_STRLEN] = "";
	char *text = NULL;

	if (act->target)
		mm_prefix_format(act->target, p);
	switch (act->act) {
	case MM_ACT_COLLECT: snprintf(buf, size, "collection from sensor %" PRIu32, act->sensor); break;
	case MM_ACT_QUERY:
	case MM_ACT_ANALYZE:
		if (mm_query_format(act->query, &text) != 0)
			text = NULL;
		snprintf(buf, size, "%s%s for %s output", act->act == MM_ACT_ANALYZE ? "automated analysis of " : "",
			 text && text[0] ? text : "every flow", act->record_output ? "record-level" : "aggregate");
		free(text);
		break;
	case MM_ACT_REIDENTIFY: snprintf(buf, size, "re-identification of %s", p); break;
	case MM_ACT_RESPOND: snprintf(buf, size, "%s on %s", act->action ? act->action : "a measure", p); break;
	case MM_ACT_SHARE:
		snprintf(buf, size, "sharing %zu indicator%s%s%s", act->n_indicators, act->n_indicators == 1 ? "" : "s",
			 act->n_indicators ? " starting with " : "", act->n_indicators ? act->indicators[0] : "");
		break;
	case MM_ACT_COUNT_: buf[0] = '\0'; break;
	}
}

/* Logs authz.suspend the first time any process notices a lapsed emergency. */
static void note_suspension(const char *data_dir, const struct mm_authz *a, const char *reason)
{
	char rel[64], path[4096];
	int fd;

	snprintf(rel, sizeof(rel), "authz/%s.suspended", a->id);
	if (ov_path(path, sizeof(path), data_dir, rel) != 0)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	close(fd);
	mm_guard_record(data_dir, "authz.suspend", "recorded", false, a, reason, NULL);
}

/* ---- narrowing ---- */

static struct mm_qnode *copy_node(struct mm_query *q, const struct mm_qnode *n)
{
	struct mm_qnode *c = mm_query_add_node(q, n->kind);

	if (!c)
		return NULL;
	c->field = n->field;
	c->dir = n->dir;
	c->op = n->op;
	c->n_values = n->n_values;
	if (n->n_values) {
		c->values = mm_query_add_values(q, n->n_values);
		if (!c->values)
			return NULL;
		memcpy(c->values, n->values, n->n_values * sizeof(*n->values));
	}
	for (const struct mm_qnode *k = n->first_child; k; k = k->next) {
		struct mm_qnode *kc = copy_node(q, k);
		if (!kc)
			return NULL;
		mm_query_append_child(c, kc);
	}
	return c;
}

/* A predicate "field [dir] in [values]" (EQ for one value). */
static struct mm_qnode *scope_pred(struct mm_query *q, enum mm_qfield field, enum mm_qdir dir, size_t n)
{
	struct mm_qnode *p = mm_query_add_node(q, MM_QN_PRED);

	if (!p || !(p->values = mm_query_add_values(q, n)))
		return NULL;
	p->field = field;
	p->dir = dir;
	p->op = n == 1 ? MM_QO_EQ : MM_QO_IN;
	p->n_values = n;
	return p;
}

static int add_child(struct mm_qnode *and, struct mm_qnode *c)
{
	if (!c)
		return mm_fail(MM_ENOMEM, "guard: out of memory narrowing the query");
	mm_query_append_child(and, c);
	return 0;
}

/* The asked filter AND the scope: prefixes (either side), sensors, ASNs, countries. */
static int narrow(const struct mm_query *asked, const struct mm_authz *a, struct mm_query **out)
{
	const struct mm_qnode *root = mm_query_root(asked);
	struct mm_qnode *and, *p;
	struct mm_query *q = NULL;
	int rc = mm_query_new(&q);

	*out = NULL;
	if (rc)
		return rc;
	and = mm_query_add_node(q, MM_QN_AND);
	rc = and ? 0 : mm_fail(MM_ENOMEM, "guard: out of memory narrowing the query");
	/* AND is never directly under AND: splice an AND root's children. */
	if (rc == 0 && root->kind == MM_QN_AND) {
		for (const struct mm_qnode *c = root->first_child; c && rc == 0; c = c->next)
			rc = add_child(and, copy_node(q, c));
	} else if (rc == 0 && root->kind != MM_QN_ANY) {
		rc = add_child(and, copy_node(q, root));
	}
	/* A query whose addresses lie inside the prefixes already (covered) needs no second test of them. */
	bool prefixes = a && a->n_prefixes && !covered(root, a);

	if (rc == 0 && prefixes && (p = scope_pred(q, MM_QF_NET, MM_QD_EITHER, a->n_prefixes)))
		for (size_t i = 0; i < a->n_prefixes; i++)
			p->values[i].prefix = a->prefixes[i];
	if (rc == 0 && prefixes)
		rc = add_child(and, p);
	if (rc == 0 && a && a->n_sensors && (p = scope_pred(q, MM_QF_SENSOR, MM_QD_NONE, a->n_sensors)))
		for (size_t i = 0; i < a->n_sensors; i++)
			p->values[i].u = a->sensors[i];
	if (rc == 0 && a && a->n_sensors)
		rc = add_child(and, p);
	if (rc == 0 && a && a->n_asns && (p = scope_pred(q, MM_QF_AS, MM_QD_EITHER, a->n_asns)))
		for (size_t i = 0; i < a->n_asns; i++)
			p->values[i].u = a->asns[i];
	if (rc == 0 && a && a->n_asns)
		rc = add_child(and, p);
	if (rc == 0 && a && a->n_countries && (p = scope_pred(q, MM_QF_COUNTRY, MM_QD_EITHER, a->n_countries)))
		for (size_t i = 0; i < a->n_countries; i++)
			memcpy(p->values[i].country, a->countries[i], 2);
	if (rc == 0 && a && a->n_countries)
		rc = add_child(and, p);
	if (rc == 0) {
		size_t n = 0;
		for (struct mm_qnode *c = and->first_child; c; c = c->next)
			n++;
		if (n == 0)
			mm_query_set_root(q, mm_query_add_node(q, MM_QN_ANY));
		else
			mm_query_set_root(q, n == 1 ? and->first_child : and);
		if (n == 1)
			and->first_child->next = NULL;
		rc = mm_query_check(q);
	}
	if (rc) {
		mm_query_free(q);
		return rc;
	}
	*out = q;
	return 0;
}

/* ---- the decision ---- */

/*
 * Where choose() looks: the verified oversight state, or the guard's cache
 * (a speculation), whose documents were all signed and unrevoked when it
 * was written, so only their validity in time is left to check.
 */
struct candidates {
	struct mm_oversight *o;
	const struct ov_guard_cache *cache;
};

static size_t candidate_count(const struct candidates *c)
{
	return c->o ? mm_oversight_count(c->o) : c->cache->n;
}

static const struct mm_authz *candidate(const struct candidates *c, size_t i)
{
	return c->o ? mm_oversight_authz(c->o, i) : c->cache->a[i];
}

static void candidate_state(const struct candidates *c, const struct mm_authz *a, uint64_t now_ns,
			    struct mm_authz_state *st)
{
	if (c->o) {
		mm_oversight_state(c->o, a, now_ns, st);
		return;
	}
	memset(st, 0, sizeof(*st));
	st->status = now_ns < a->valid_from_ns	 ? MM_AZ_NOT_YET_VALID
		     : now_ns > a->valid_until_ns ? MM_AZ_EXPIRED
						  : MM_AZ_IN_FORCE;
	snprintf(st->reason, sizeof(st->reason), "%s: not in force", a->id);
}

/*
 * The first authorization in force that covers the act, or the nearest
 * miss. dropped non-NULL (a speculation, or its confirmation): a suspended
 * emergency stops the search instead of being noted, for the ordinary path
 * to note it.
 */
static const struct mm_authz *choose(const char *data_dir, const struct candidates *c, const struct mm_guard_act *act,
				     char *why, size_t why_size, const struct mm_authz **nearest, bool *dropped)
{
	unsigned best = ~0u;

	*nearest = NULL;
	why[0] = '\0';
	for (size_t i = 0; i < candidate_count(c); i++) {
		const struct mm_authz *a = candidate(c, i);
		struct mm_authz_state st;
		struct misses m = { 0 };

		if (act->authz_id && strcmp(a->id, act->authz_id) != 0)
			continue;
		if (!kind_fits(act->act, a)) {
			if (act->authz_id)
				snprintf(why, why_size, "%s is a %s authorization, not %s", a->id,
					 mm_authz_kind_name(a->kind), kind_wanted[act->act]);
			if (act->authz_id)
				*nearest = a;
			continue;
		}
		candidate_state(c, a, act->now_ns, &st);
		if (st.status == MM_AZ_SUSPENDED && dropped) {
			*dropped = true;
			return NULL;
		}
		if (st.status == MM_AZ_SUSPENDED)
			note_suspension(data_dir, a, st.reason);
		if (st.status != MM_AZ_IN_FORCE)
			miss(&m, MISS_STATE, "%s", strstr(st.reason, ": ") ? strstr(st.reason, ": ") + 2 : st.reason);
		check_scope(act, a, &m);
		if (m.n == 0)
			return a;
		if (m.weight < best) {
			best = m.weight;
			*nearest = a;
			snprintf(why, why_size, "%s", m.first);
		}
	}
	return NULL;
}

/*
 * The end of an overlap_sync decision, on its own thread while the act runs
 * (heap: the decision may move). Ordinary: the fsync of the entry already
 * appended. Speculative (docs/oversight.md, "The guard's cache"): first the
 * act is decided again from the verified oversight files, which must choose
 * the same document (and count its use); only then is the entry appended,
 * and fsync'd; or, when the files decide otherwise, the cache is rewritten.
 */
struct mm_guard_sync {
	pthread_t thread;
	bool threaded;
	struct mm_audit_log *log;
	int rc;
	char why[512];
	/* speculative only */
	bool speculative, unverified, lab;
	struct mm_guard_act act; /* its pointers borrowed until mm_guard_durable (guard.h) */
	char authz[MM_AUTHZ_ID_MAX];
	char digest[65];
	const char *cache_text; /* the cache read, borrowed from the decision */
	size_t cache_len;
	json_t *detail;
	char *data_dir, *text;
	size_t len;
	uint64_t index;
};

static void sync_free(struct mm_guard_sync *s)
{
	json_decref(s->detail);
	free(s->data_dir);
	free(s->text);
	free(s);
}

/* The speculation stands when the verified files choose the same document; MM_EPERM in s->why if not. */
static int confirm(struct mm_guard_sync *s)
{
	struct mm_oversight *o = NULL;
	const struct mm_authz *a = NULL, *nearest = NULL;
	char why[512] = "";
	bool dropped = false;
	int rc = mm_oversight_open(s->data_dir, &o);

	if (rc) {
		snprintf(s->why, sizeof(s->why), "%s", mm_last_error());
		return rc;
	}
	if (!s->lab && !mm_oversight_lab(o)) {
		struct candidates c = { .o = o };
		a = choose(s->data_dir, &c, &s->act, why, sizeof(why), &nearest, &dropped);
	}
	if (mm_oversight_lab(o) != s->lab)
		rc = mm_fail(MM_EPERM, "the oversight files are %s lab mode, unlike the guard's cache",
			     s->lab ? "not in" : "in");
	else if (!s->lab && (!a || dropped || strcmp(a->id, s->authz) != 0 || strcmp(a->digest, s->digest) != 0))
		rc = mm_fail(MM_EPERM, "decided again from the verified oversight files, %s: %s",
			     a && !dropped ? "another document covers it" : "none covers it",
			     a && !dropped ? a->id : why[0] ? why : s->authz);
	else if (a && a->max_uses)
		rc = mm_oversight_use(o, a->id);
	if (rc == 0)
		rc = entry_text(s->act.now_ns, s->act.actor, mm_act_name(s->act.act), "allowed", s->lab, a, NULL,
				s->detail, &s->text, &s->len);
	/* A void speculation means the cache is behind the files: bring it up to date for the next act. */
	if (rc) {
		snprintf(s->why, sizeof(s->why), "%s", mm_last_error());
		ov_guard_cache_refresh(s->data_dir, o, s->act.now_ns, s->cache_text, s->cache_len);
	}
	mm_oversight_free(o);
	return rc;
}

static void *sync_main(void *arg)
{
	struct mm_guard_sync *s = arg;
	int rc = 0;

	if (s->speculative) {
		rc = confirm(s);
		/* Void: nothing was appended; the caller decides again on the ordinary path. */
		s->unverified = rc != 0;
		if (rc == 0 && (rc = append_entry(s->data_dir, &s->log, s->text, s->len, &s->index, true)) != 0)
			snprintf(s->why, sizeof(s->why), "%s", mm_last_error());
	}
	if (rc == 0 && (rc = mm_audit_sync(s->log)) != 0)
		snprintf(s->why, sizeof(s->why), "%s", mm_strerror(rc));
	s->rc = rc;
	return NULL;
}

/* Hands s to the decision and starts it; inline when no thread can start (mm_guard_durable reports). */
static void sync_start(struct mm_guard_decision *d, struct mm_guard_sync *s)
{
	d->sync = s;
	s->threaded = pthread_create(&s->thread, NULL, sync_main, s) == 0;
	if (!s->threaded)
		sync_main(s);
}

int mm_guard_durable(struct mm_guard_decision *d)
{
	struct mm_guard_sync *s = d->sync;
	char why[512];
	bool unverified;
	int rc;

	/* Asked again after a failure: the same answer, so no caller can miss it. */
	if (!s)
		return d->sync_rc;
	if (s->threaded)
		pthread_join(s->thread, NULL);
	rc = s->rc;
	unverified = s->unverified;
	d->log = s->log;
	if (s->speculative && rc == 0)
		d->audit_index = s->index;
	snprintf(why, sizeof(why), "%s", s->why);
	sync_free(s);
	d->sync = NULL;
	if (unverified) {
		d->allowed = false;
		d->unverified = true;
		d->sync_rc = MM_EPERM;
		return mm_fail(MM_EPERM, "guard: the decision is void and was not recorded: %s", why);
	}
	d->sync_rc = rc;
	if (rc)
		return mm_fail(rc, "guard: the decision's audit entry %" PRIu64 " is not durable (%s)", d->audit_index,
			       why);
	return 0;
}

void mm_guard_decision_clear(struct mm_guard_decision *d)
{
	mm_guard_durable(d);
	mm_query_free(d->query);
	mm_audit_close(d->log);
	mm_oversight_free(d->oversight);
	ov_guard_cache_free(d->cache);
	memset(d, 0, sizeof(*d));
}

static json_t *act_detail(const struct mm_guard_act *act, const struct mm_guard_decision *d)
{
	char t[64], p[MM_PREFIX_STRLEN];
	char *text = NULL;
	json_t *j = json_object();

	if (!j)
		return NULL;
	switch (act->act) {
	case MM_ACT_COLLECT: json_object_set_new(j, "sensor", json_integer(act->sensor)); break;
	case MM_ACT_QUERY:
	case MM_ACT_ANALYZE:
		if (mm_query_format(act->query, &text) == 0)
			json_object_set_new(j, "asked", json_string(text));
		free(text);
		text = NULL;
		if (d->query && mm_query_format(d->query, &text) == 0)
			json_object_set_new(j, "query", json_string(text));
		free(text);
		json_object_set_new(j, "output", json_string(act->record_output ? "record" : "aggregate"));
		json_object_set_new(j, "since", d->query && d->since_ns ? json_string(mm_oversight_time_format(d->since_ns, t))
								       : json_null());
		json_object_set_new(j, "until", d->query && d->until_ns != UINT64_MAX
							? json_string(mm_oversight_time_format(d->until_ns, t))
							: json_null());
		break;
	case MM_ACT_REIDENTIFY:
	case MM_ACT_RESPOND:
		if (act->target)
			json_object_set_new(j, "target", json_string(mm_prefix_format(act->target, p)));
		if (act->action)
			json_object_set_new(j, "action", json_string(act->action));
		if (act->duration_ns)
			json_object_set_new(j, "duration_s", json_integer((json_int_t)(act->duration_ns / MM_NS_PER_SEC)));
		break;
	case MM_ACT_SHARE: {
		json_t *list = json_array();
		for (size_t i = 0; i < act->n_indicators; i++)
			json_array_append_new(list, json_string(act->indicators[i]));
		json_object_set_new(j, "indicators", list);
		break;
	}
	case MM_ACT_COUNT_: break;
	}
	return j;
}

/*
 * One decision. spec NULL: the ordinary path, every signature verified as
 * the oversight files load, the entry appended before return (fsync'd
 * unless deferred), the guard's cache brought up to date. spec non-NULL:
 * the speculative path (docs/oversight.md), from the guard's cache; it goes
 * ahead only to an allowed decision, handing spec to out, whose thread
 * decides again from the verified files and appends the entry only if that
 * chooses the same. Anything else (no cache, a refusal, a failure) returns
 * 1 with nothing written and out cleared, for the ordinary path to decide.
 */
static int decide(const char *data_dir, const struct mm_guard_act *act_in, struct mm_guard_decision *out,
		  struct mm_guard_sync *spec)
{
	struct mm_guard_act act = *act_in;
	struct candidates c = { 0 };
	const struct mm_authz *a = NULL, *nearest = NULL;
	char what[512], why[512];
	json_t *detail = NULL;
	char *text = NULL;
	size_t len = 0;
	bool dropped = false;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!act.now_ns)
		act.now_ns = mm_time_now_ns();
	if ((act.act == MM_ACT_QUERY || act.act == MM_ACT_ANALYZE) && !act.query)
		return mm_fail(MM_EINVAL, "guard: a %s act needs its query", mm_act_name(act.act));
	if (act.until_ns == 0)
		act.until_ns = UINT64_MAX;
	if (spec) {
		rc = ov_guard_cache_load(data_dir, &out->cache);
		/* One that does not parse goes, so the ordinary path below writes a good one. */
		if (rc && rc != MM_ENOENT)
			ov_guard_cache_drop(data_dir);
		if (rc)
			return 1;
		c.cache = out->cache;
		out->lab = c.cache->lab;
	} else {
		rc = mm_oversight_open(data_dir, &out->oversight);
		if (rc) {
			snprintf(why, sizeof(why), "%s", mm_last_error());
			return mm_fail(rc, "guard: refusing every act: %s", why);
		}
		c.o = out->oversight;
		out->lab = mm_oversight_lab(c.o);
		ov_guard_cache_refresh(data_dir, c.o, act.now_ns, NULL, 0);
	}
	if (out->lab) {
		out->allowed = true;
	} else {
		a = choose(data_dir, &c, &act, why, sizeof(why), &nearest, spec ? &dropped : NULL);
		/* Unlimited ones need no counter: the audit log has every use. A speculation's is counted on confirmation. */
		if (a && a->max_uses && !spec && mm_oversight_use(c.o, a->id) != 0) {
			nearest = a;
			const char *colon = strstr(mm_last_error(), ": ");
			snprintf(why, sizeof(why), "%s", colon ? colon + 2 : mm_last_error());
			a = NULL;
		}
		out->allowed = a != NULL;
	}
	if (spec && (!out->allowed || dropped)) {
		mm_guard_decision_clear(out);
		return 1;
	}
	out->chosen = a;
	if (out->allowed && a)
		snprintf(out->authz, sizeof(out->authz), "%s", a->id);
	if (!out->allowed) {
		describe(&act, what, sizeof(what));
		if (act.authz_id && !nearest)
			snprintf(out->reason, sizeof(out->reason), "no authorization %s exists", act.authz_id);
		else if (act.authz_id)
			snprintf(out->reason, sizeof(out->reason), "%s does not cover %.400s: %.400s", act.authz_id, what, why);
		else if (nearest)
			snprintf(out->reason, sizeof(out->reason), "no authorization covers %.400s; nearest: %s, %.400s", what,
				 nearest->id, why);
		else
			snprintf(out->reason, sizeof(out->reason), "no authorization covers %.400s; there is no %s authorization",
				 what, kind_wanted[act.act]);
	}
	rc = 0;
	if (out->allowed && act.query) {
		rc = narrow(act.query, a, &out->query);
		out->since_ns = act.since_ns;
		out->until_ns = act.until_ns;
		if (a && a->data_from_ns > out->since_ns)
			out->since_ns = a->data_from_ns;
		if (a && a->data_until_ns < out->until_ns)
			out->until_ns = a->data_until_ns;
	}
	if (rc == 0 && !(detail = act_detail(&act, out)))
		rc = mm_fail(MM_ENOMEM, "guard: out of memory");
	/* A refused act ran under no authorization; the nearest miss is detail. */
	if (rc == 0 && !out->allowed && nearest)
		json_object_set_new(detail, "nearest", json_string(nearest->id));
	if (rc == 0 && act.detail)
		json_object_update(detail, (json_t *)act.detail);
	/* A speculation's entry is written by its thread, from the verified document. */
	if (rc == 0 && !spec)
		rc = entry_text(act.now_ns, act.actor, mm_act_name(act.act), out->allowed ? "allowed" : "refused",
				out->lab, a, out->allowed ? NULL : out->reason, detail, &text, &len);
	/* Only an allowed query whose caller waits before output overlaps the fsync with the query. */
	out->deferred = act.overlap_sync && act.act == MM_ACT_QUERY && out->allowed;
	if (rc == 0 && spec) {
		spec->speculative = true;
		spec->lab = out->lab;
		spec->act = act;
		if (a) {
			snprintf(spec->authz, sizeof(spec->authz), "%s", a->id);
			snprintf(spec->digest, sizeof(spec->digest), "%s", a->digest);
		}
		spec->cache_text = out->cache->text;
		spec->cache_len = out->cache->len;
		spec->detail = detail;
		detail = NULL;
		spec->data_dir = strdup(data_dir);
		if (spec->data_dir)
			sync_start(out, spec);
		else
			rc = MM_ENOMEM;
	} else if (rc == 0) {
		rc = append_entry(data_dir, &out->log, text, len, &out->audit_index, out->deferred);
	}
	if (rc == 0 && out->deferred && !spec) {
		struct mm_guard_sync *s = calloc(1, sizeof(*s));

		if (s) {
			s->log = out->log;
			sync_start(out, s);
		} else {
			rc = mm_audit_sync(out->log);
		}
	}
	json_decref(detail);
	free(text);
	if (rc && spec) {
		mm_guard_decision_clear(out);
		return 1;
	}
	if (rc) {
		/* Not recorded, not decided: the act must not happen. */
		mm_guard_decision_clear(out);
		out->allowed = false;
	}
	return rc;
}

int mm_guard(const char *data_dir, const struct mm_guard_act *act, struct mm_guard_decision *out)
{
	/* Speculation only where the caller waits (mm_guard_durable) before anything of the act shows. */
	if (act->overlap_sync && act->act == MM_ACT_QUERY) {
		struct mm_guard_sync *spec = calloc(1, sizeof(*spec));

		if (spec && decide(data_dir, act, out, spec) == 0)
			return 0;
		/* Not taken over by out: no speculation, or one that came to nothing. */
		if (spec && !out->sync)
			sync_free(spec);
	}
	return decide(data_dir, act, out, NULL);
}

int mm_guard_done(const char *data_dir, const struct mm_guard_act *act, struct mm_guard_decision *d,
		  const json_t *result)
{
	json_t *detail = json_object();
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!detail)
		return mm_fail(MM_ENOMEM, "guard: out of memory");
	/* The decision is durable before anything says what the act did. */
	rc = mm_guard_durable(d);
	if (rc) {
		json_decref(detail);
		return rc;
	}
	json_object_set_new(detail, "decision", json_integer((json_int_t)d->audit_index));
	if (result)
		json_object_update(detail, (json_t *)result);
	rc = entry_text(mm_time_now_ns(), act->actor, mm_act_name(act->act), "recorded", d->lab,
			d->chosen, NULL, detail,
			&text, &len);
	if (rc == 0)
		rc = append_entry(data_dir, &d->log, text, len, NULL, d->deferred);
	free(text);
	json_decref(detail);
	if (d->log) {
		int rc2 = mm_audit_close(d->log);
		d->log = NULL;
		if (rc == 0)
			rc = rc2;
	}
	return rc;
}
