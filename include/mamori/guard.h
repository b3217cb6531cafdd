/*
 * The guard: the one call every act on data passes before it happens
 * (docs/oversight.md). It finds the authorization that covers the act (the
 * one named, or the first in force that does), narrows the act to that
 * authorization's scope, or refuses it naming what is missing and the
 * nearest authorization; and it appends the decision to the audit log,
 * allowed or refused. A data directory without a panel is in lab mode:
 * everything is allowed, audited with "mode":"lab", and flagged so every
 * output can say so. Any failure to decide or to audit refuses the act.
 */
#ifndef MAMORI_GUARD_H
#define MAMORI_GUARD_H

#include "mamori/audit.h"
#include "mamori/oversight.h"
#include "mamori/query.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mm_act {
	MM_ACT_COLLECT,    /* meter, collect: needs collect-* covering the sensor */
	MM_ACT_QUERY,      /* a person reads flows or aggregates: analyze, not automated */
	MM_ACT_ANALYZE,    /* automated detection: analyze marked automated */
	MM_ACT_REIDENTIFY, /* a pseudonym back to an address: reidentify */
	MM_ACT_RESPOND,    /* a countermeasure: respond, action and duration listed */
	MM_ACT_SHARE,      /* indicators to a partner: share */
	MM_ACT_COUNT_
};

/* "collect", "query", …: also the audit entry's "act". */
const char *mm_act_name(enum mm_act act);

/* What is about to happen. Pointers are borrowed for the call. */
struct mm_guard_act {
	enum mm_act act;
	const char *actor;    /* NULL: mm_oversight_actor() */
	const char *authz_id; /* the authorization chosen (--authz); NULL: search */
	uint64_t now_ns;      /* 0: the clock */
	/* collect */
	uint32_t sensor;
	/* query, analyze: the filter as asked, the data time range asked (0,
	 * UINT64_MAX: all), whether flows are listed (record-level) rather than
	 * aggregated, and fields used besides the filter's (aggregation keys:
	 * bits 1 << enum mm_qfield) */
	const struct mm_query *query;
	uint64_t since_ns, until_ns;
	bool record_output;
	uint32_t extra_fields;
	/* reidentify, respond: the address or prefix acted on */
	const struct mm_prefix *target;
	/* respond: the measure and how long it lasts (0: not stated) */
	const char *action;
	uint64_t duration_ns;
	/* share */
	const char *const *indicators;
	size_t n_indicators;
	/* more act-specific detail for the audit entry (borrowed; NULL: none) */
	const json_t *detail;
	/* query only: the caller calls mm_guard_durable before any output
	 * reaches anyone, so an allowed decision's fsync may overlap the query's
	 * execution, and the "recorded" entry is not fsync'd on its own
	 * (docs/oversight.md: what a crash loses). false: durable on return.
	 * The decision is then speculative: taken from the guard's cache of the
	 * oversight state, and void unless the verified oversight files, decided
	 * on again while the query runs, choose the same authorization document
	 * (mm_guard_durable; docs/oversight.md: the guard's cache). The act's
	 * pointers must then stay valid until mm_guard_durable returns. */
	bool overlap_sync;
};

#define MM_GUARD_REASON_MAX 1024

struct ov_guard_cache;

struct mm_guard_decision {
	bool allowed;
	bool lab; /* lab mode: allowed without a panel; outputs must say so */
	char authz[MM_AUTHZ_ID_MAX]; /* the authorization the act runs under; "" in lab mode */
	char reason[MM_GUARD_REASON_MAX]; /* refused: what is missing, and the nearest authorization */
	/* query, analyze, allowed: the filter to run (the asked one ANDed with the
	 * scope's prefixes, sensors, ASNs and countries; owned, NULL otherwise)
	 * and the time range clamped to the scope's data range */
	struct mm_query *query;
	uint64_t since_ns, until_ns;
	uint64_t audit_index; /* the decision's entry in the audit log (overlap_sync: once durable) */
	/* Set by mm_guard_durable when a speculative decision proved void: the
	 * verified oversight files do not choose what the cache did (or its use
	 * could not be counted). Nothing was recorded; the caller discards what
	 * the act produced, clears d and decides again without overlap_sync. */
	bool unverified;
	/* private: kept open from the decision to mm_guard_done */
	struct mm_audit_log *log;
	struct mm_oversight *oversight; /* the verified state (ordinary path) */
	struct ov_guard_cache *cache;   /* the guard's cache (speculative path) */
	const struct mm_authz *chosen;  /* the authorization the act runs under, owned by one of them */
	struct mm_guard_sync *sync; /* the decision's fsync in flight (overlap_sync) */
	int sync_rc;                /* how it ended: what mm_guard_durable returns again */
	bool deferred;
};

/*
 * Decides act against the oversight state of data_dir and appends the
 * decision to its audit log. Returns 0 when a decision was made and
 * recorded (out->allowed says which); a negative status when it could not
 * be (unreadable oversight files, audit log failure): the act must not
 * happen then either. An allowed act counts one use of its authorization.
 * out is cleared first; release it with mm_guard_decision_clear.
 */
int mm_guard(const char *data_dir, const struct mm_guard_act *act, struct mm_guard_decision *out);

/*
 * Waits until the decision's audit entry is durable (at once unless the
 * act asked for overlap_sync): for a speculative decision, until the
 * verified oversight files confirmed it and its entry was appended and fsync'd.
 * 0, or a failure: then nothing of the act may be shown or done, and
 * d->unverified says whether the act must be decided again (above).
 */
int mm_guard_durable(struct mm_guard_decision *d);

/*
 * After an allowed act: waits until the decision is durable
 * (mm_guard_durable), appends an entry with outcome "recorded" saying what
 * it did (result: e.g. {"flows": 812}), linked to the decision's entry —
 * fsync'd unless the act asked for overlap_sync — and closes the audit log
 * the decision kept open (which signs a checkpoint when one is due:
 * mm_audit_close). 0 or the audit log's status.
 */
int mm_guard_done(const char *data_dir, const struct mm_guard_act *act, struct mm_guard_decision *d,
		  const json_t *result);

void mm_guard_decision_clear(struct mm_guard_decision *d);

/* The query fields an aggregation's keys and distinct keys read, as mm_guard_act.extra_fields. */
uint32_t mm_guard_agg_fields(const struct mm_qagg *agg);

/*
 * Appends one entry of the audit schema (docs/oversight.md) for acts the
 * guard does not decide: panel.init, authz.request, authz.sign,
 * store.expire, … authz may be NULL; reason NULL unless refused; detail
 * borrowed, may be NULL. lab is the mode the data directory is in.
 */
int mm_guard_record(const char *data_dir, const char *act, const char *outcome, bool lab,
		    const struct mm_authz *authz, const char *reason, const json_t *detail);

#endif
