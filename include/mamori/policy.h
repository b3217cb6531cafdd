/*
 * The jurisdiction policy: the door every flow passes between the meter or
 * the decoder and anything that keeps, shows or sends it (store, text,
 * IPFIX export, detectors). In one pass over a batch it
 *
 *   1. enriches: source/destination country and ASN from the geo table
 *      (fields an exporter set already are kept);
 *   2. classes each flow by its two ends: DD (domestic↔domestic), FD
 *      (foreign→domestic), DF (domestic→foreign), FF (foreign↔foreign);
 *   3. drops every DD flow, and every other flow that no collection rule
 *      covers (sensor and flow time), counting each by class and sensor;
 *   4. replaces each domestic address of a kept flow by its Crypto-PAn
 *      pseudonym.
 *
 * The stage sees only struct mm_flow, which holds header values and counts
 * and nothing else; that struct is the compile-time allow-list of what can
 * reach storage (see docs/policy.md, "Automatic selection").
 *
 * With no jurisdiction configured nothing is classed or dropped (flows are
 * still enriched when a geo table exists), and every output says so.
 */
#ifndef MAMORI_POLICY_H
#define MAMORI_POLICY_H

#include "mamori/addr.h"
#include "mamori/config.h"
#include "mamori/flow.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum mm_traffic_class {
	MM_CLASS_DD = 0, /* domestic ↔ domestic: never kept */
	MM_CLASS_FD,     /* foreign → domestic (originator foreign) */
	MM_CLASS_DF,     /* domestic → foreign */
	MM_CLASS_FF,     /* foreign ↔ foreign: transit */
	MM_CLASS__COUNT
};

/* "DD", "FD", "DF", "FF"; NULL out of range. */
const char *mm_traffic_class_name(unsigned c);

/* A sensor: where flows are observed. Named in [sensor NAME] sections. */
struct mm_policy_sensor {
	char name[64];
	uint32_t id;
	char location[32]; /* free text, e.g. "JP-13 Otemachi"; shown in stats */
};

/*
 * Keeps flows of the classes in `classes` (a bit per enum mm_traffic_class;
 * DD is never allowed) seen at the sensor (any sensor when any_sensor)
 * whose first packet falls in [from_ns, until_ns) (0: open end), and, when
 * the rule names prefixes or ASNs (an authorization's specified targets),
 * one of whose ends lies in one of them.
 */
struct mm_collection_rule {
	bool any_sensor;
	uint32_t sensor_id;
	uint8_t classes;
	uint64_t from_ns, until_ns;
	const struct mm_prefix *prefixes; /* borrowed: must outlive the policy */
	size_t n_prefixes;
	const uint32_t *asns;             /* borrowed likewise */
	size_t n_asns;
	char origin[64]; /* "mamori.conf:12", or an authorization id */
};

#define MM_POLICY_MAX_COUNTRIES 32
#define MM_POLICY_MAX_SENSORS 256
#define MM_POLICY_MAX_RULES 256
#define MM_POLICY_MAX_PREFIXES 4096
#define MM_POLICY_MAX_ASNS 4096

/* Retention ceilings, per data class. */
struct mm_retention {
	uint64_t flows_ns;  /* selected flow data; default 2 years */
	uint64_t alerts_ns; /* detector alerts; default 5 years */
};

#define MM_RETENTION_FLOWS_DEFAULT_NS (2ull * 365 * 24 * 3600 * 1000000000ull)
#define MM_RETENTION_ALERTS_DEFAULT_NS (5ull * 365 * 24 * 3600 * 1000000000ull)

struct mm_policy_config {
	bool jurisdiction; /* false: no classing, nothing dropped */
	char countries[MM_POLICY_MAX_COUNTRIES][2];
	size_t n_countries;
	struct mm_prefix *prefixes; /* extra domestic prefixes (owned) */
	size_t n_prefixes;
	uint32_t *asns;             /* extra domestic ASNs (owned) */
	size_t n_asns;
	struct mm_policy_sensor sensors[MM_POLICY_MAX_SENSORS];
	size_t n_sensors;
	struct mm_collection_rule rules[MM_POLICY_MAX_RULES];
	size_t n_rules;
	char *geo_table;     /* NULL: <data>/geo/geo.table when present */
	char *cryptopan_key; /* NULL: <data>/policy/cryptopan.key, created 0600 on first use */
	struct mm_retention retention;
};

/* Defaults: no jurisdiction, no rules, default retention. */
void mm_policy_config_init(struct mm_policy_config *cfg);
void mm_policy_config_free(struct mm_policy_config *cfg);

/*
 * Takes the [jurisdiction], [sensor NAME], [collect], [pseudonymisation]
 * and [retention] sections of conf (may be NULL); other sections are other
 * modules'. An unknown key or a bad value fails naming file:line.
 */
int mm_policy_config_load(struct mm_policy_config *cfg, const struct mm_config *conf);

/*
 * --jurisdiction CC[,CC...]: replaces the configured country list and
 * turns the jurisdiction on. MM_EINVAL quoting a bad code.
 */
int mm_policy_config_set_countries(struct mm_policy_config *cfg, const char *list);

/* Resolves a sensor given as a configured name or a number; MM_ENOENT. */
int mm_policy_sensor_resolve(const struct mm_policy_config *cfg, const char *text, uint32_t *id);

/* Appends a rule (config or authorization); MM_ELIMIT past the cap. */
int mm_policy_config_add_rule(struct mm_policy_config *cfg, const struct mm_collection_rule *rule);

/* Drops every rule: an oversight panel's authorizations replace the configured ones. */
void mm_policy_config_clear_rules(struct mm_policy_config *cfg);

/* ---- counters ---- */

struct mm_policy_sensor_counts {
	uint32_t sensor_id;
	uint64_t seen[MM_CLASS__COUNT];
	uint64_t kept[MM_CLASS__COUNT];
	uint64_t dropped[MM_CLASS__COUNT]; /* DD: by law; others: no rule covered them */
};

#define MM_POLICY_COUNT_SLOTS 64

/*
 * One thread's counters. Sensors past MM_POLICY_COUNT_SLOTS share the last
 * slot (sensor id UINT32_MAX, "other"), so nothing goes uncounted.
 */
struct mm_policy_counts {
	bool classed; /* false: no jurisdiction; only unclassed counts */
	uint64_t unclassed;
	uint64_t pseudonymised; /* addresses replaced */
	size_t n;
	struct mm_policy_sensor_counts s[MM_POLICY_COUNT_SLOTS];
};

void mm_policy_counts_add(struct mm_policy_counts *sum, const struct mm_policy_counts *c);

/*
 * Lines "  policy.<sensor>.<class>.seen N" etc., or the one line saying no
 * jurisdiction is configured; names sensors from cfg when known.
 */
void mm_policy_counts_print(FILE *fp, const struct mm_policy_counts *c, const struct mm_policy_config *cfg);

/*
 * Adds c to the running totals kept in <data>/policy/counters (under a
 * lock, so concurrent jobs add up), for `mamori store stats`. 0 or MM_EIO.
 */
int mm_policy_counts_persist(const char *data_dir, const struct mm_policy_counts *c);

/* Reads those totals; a data directory without any reads as zero. */
int mm_policy_counts_load(const char *data_dir, struct mm_policy_counts *out);

/* ---- the stage ---- */

struct mm_policy;

/*
 * Builds the stage from cfg (copied). data_dir locates the default geo
 * table and key. Fails, naming what is missing, when a jurisdiction names
 * countries but no geo table exists, or the key cannot be read or made.
 */
int mm_policy_new(const struct mm_policy_config *cfg, const char *data_dir, struct mm_policy **out);
void mm_policy_free(struct mm_policy *p);

bool mm_policy_classes(const struct mm_policy *p);

/* "JP" / "JP,KR + 2 prefixes + 1 ASN", or "none" when no jurisdiction. */
const char *mm_policy_describe(const struct mm_policy *p);

/* The class of one flow (after enrichment). Only meaningful when classing. */
enum mm_traffic_class mm_policy_class_of(const struct mm_policy *p, const struct mm_flow *f);

/*
 * The stage over a batch: in[0..n) → out (room for n), returning how many
 * were kept. Thread-safe given a counts struct per thread.
 */
size_t mm_policy_apply(const struct mm_policy *p, const struct mm_flow *in, size_t n, struct mm_flow *out,
		       struct mm_policy_counts *counts);

#endif
