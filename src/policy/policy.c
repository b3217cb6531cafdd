/*
 * The policy stage (see policy.h): enrich, class, drop, pseudonymise, in
 * one pass per batch. Everything here is read-only after mm_policy_new, so
 * the collector's workers share one stage and keep their own counters.
 */
#include "policy/policy_int.h"

#include "mamori/cryptopan.h"
#include "mamori/enrich.h"
#include "mamori/log.h"
#include "mamori/status.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct mm_policy {
	struct mm_policy_config cfg; /* prefixes/asns point into copies owned here */
	struct mm_geo *geo;          /* NULL: no table (no enrichment) */
	struct mm_cryptopan *pan;    /* NULL unless classing */
	uint16_t countries[MM_POLICY_MAX_COUNTRIES]; /* as stored in flows: first letter high */
	char description[160];
};

static uint16_t country_code(const char cc[2])
{
	return (uint16_t)((uint8_t)cc[0] << 8 | (uint8_t)cc[1]);
}

static int copy_config(struct mm_policy_config *dst, const struct mm_policy_config *src)
{
	*dst = *src;
	dst->prefixes = NULL;
	dst->asns = NULL;
	dst->geo_table = NULL;
	dst->cryptopan_key = NULL;
	if (src->n_prefixes && !(dst->prefixes = malloc(src->n_prefixes * sizeof(*dst->prefixes))))
		goto nomem;
	if (src->n_asns && !(dst->asns = malloc(src->n_asns * sizeof(*dst->asns))))
		goto nomem;
	if (src->n_prefixes)
		memcpy(dst->prefixes, src->prefixes, src->n_prefixes * sizeof(*dst->prefixes));
	if (src->n_asns)
		memcpy(dst->asns, src->asns, src->n_asns * sizeof(*dst->asns));
	return 0;
nomem:
	free(dst->prefixes);
	free(dst->asns);
	dst->prefixes = NULL;
	dst->asns = NULL;
	return mm_fail(MM_ENOMEM, "policy: out of memory");
}

/* dir + "/" + name into buf; MM_EINVAL when it does not fit. */
static int join_path(char *buf, size_t size, const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);

	if (a + 1 + b >= size)
		return mm_fail(MM_EINVAL, "policy: path too long: %s/%s", dir, name);
	memcpy(buf, dir, a);
	buf[a] = '/';
	memcpy(buf + a + 1, name, b + 1);
	return 0;
}

static int open_geo(struct mm_policy *p, const struct mm_policy_config *cfg, const char *data_dir)
{
	char path[4096];
	struct stat st;
	int rc;

	if (cfg->geo_table)
		return mm_geo_open(cfg->geo_table, &p->geo);
	if ((rc = join_path(path, sizeof(path), data_dir, "geo/geo.table")) != 0)
		return rc;
	if (stat(path, &st) != 0) {
		if (cfg->jurisdiction && cfg->n_countries)
			return mm_fail(MM_ENOENT,
				       "policy: the jurisdiction names countries but there is no geo table at %s "
				       "(build one with 'mamori geo build', or set [jurisdiction] geo_table)",
				       path);
		return 0; /* no table, no countries: nothing to enrich with */
	}
	return mm_geo_open(path, &p->geo);
}

/*
 * The office's key lives with its data unless configured elsewhere; the
 * default one is made on first use, 0600, and never overwritten.
 */
static int default_key(const char *data_dir, char *path, size_t size)
{
	char dir[4096];
	int rc;

	if ((rc = join_path(dir, sizeof(dir), data_dir, "policy")) != 0 ||
	    (rc = join_path(path, size, dir, "cryptopan.key")) != 0)
		return rc;
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
		return mm_fail(MM_EIO, "policy: %s: %s", data_dir, strerror(errno));
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return mm_fail(MM_EIO, "policy: %s: %s", dir, strerror(errno));
	rc = mm_cryptopan_key_generate(path);
	if (rc == 0)
		mm_info("policy: made a new pseudonymisation key: %s", path);
	return rc == MM_EEXIST ? 0 : rc;
}

static int open_key(struct mm_policy *p, const struct mm_policy_config *cfg, const char *data_dir)
{
	uint8_t key[MM_CRYPTOPAN_KEY_LEN];
	char made[4096];
	const char *path = cfg->cryptopan_key;
	int rc;

	if (!path) {
		if ((rc = default_key(data_dir, made, sizeof(made))) != 0)
			return rc;
		path = made;
	}
	rc = mm_cryptopan_key_load(path, key);
	if (rc == 0)
		rc = mm_cryptopan_new(key, MM_CRYPTOPAN_AUTO, &p->pan);
	sodium_memzero(key, sizeof(key));
	return rc;
}

static void describe(struct mm_policy *p)
{
	const struct mm_policy_config *c = &p->cfg;
	size_t off = 0;

	if (!c->jurisdiction) {
		snprintf(p->description, sizeof(p->description), "none");
		return;
	}
	for (size_t i = 0; i < c->n_countries && off < sizeof(p->description); i++)
		off += (size_t)snprintf(p->description + off, sizeof(p->description) - off, "%s%.2s",
					i ? "," : "", c->countries[i]);
	if (c->n_prefixes && off < sizeof(p->description))
		off += (size_t)snprintf(p->description + off, sizeof(p->description) - off, "%s%zu prefix%s",
					off ? " + " : "", c->n_prefixes, c->n_prefixes == 1 ? "" : "es");
	if (c->n_asns && off < sizeof(p->description))
		snprintf(p->description + off, sizeof(p->description) - off, "%s%zu ASN%s", off ? " + " : "",
			 c->n_asns, c->n_asns == 1 ? "" : "s");
}

int mm_policy_new(const struct mm_policy_config *cfg, const char *data_dir, struct mm_policy **out)
{
	struct mm_policy *p = calloc(1, sizeof(*p));
	int rc;

	*out = NULL;
	if (!p)
		return mm_fail(MM_ENOMEM, "policy: out of memory");
	if ((rc = copy_config(&p->cfg, cfg)) != 0) {
		free(p);
		return rc;
	}
	for (size_t i = 0; i < cfg->n_countries; i++)
		p->countries[i] = country_code(cfg->countries[i]);
	if ((rc = open_geo(p, cfg, data_dir)) != 0)
		goto fail;
	if (cfg->jurisdiction && (rc = open_key(p, cfg, data_dir)) != 0)
		goto fail;
	describe(p);
	*out = p;
	return 0;
fail:
	mm_policy_free(p);
	return rc;
}

void mm_policy_free(struct mm_policy *p)
{
	if (!p)
		return;
	mm_geo_close(p->geo);
	mm_cryptopan_free(p->pan);
	free(p->cfg.prefixes);
	free(p->cfg.asns);
	free(p);
}

bool mm_policy_classes(const struct mm_policy *p)
{
	return p->cfg.jurisdiction;
}

const char *mm_policy_describe(const struct mm_policy *p)
{
	return p->description;
}

static bool is_domestic(const struct mm_policy *p, const struct mm_addr *a, const char cc[2], uint32_t asn)
{
	uint16_t code = country_code(cc);

	if (code)
		for (size_t i = 0; i < p->cfg.n_countries; i++)
			if (p->countries[i] == code)
				return true;
	if (asn)
		for (size_t i = 0; i < p->cfg.n_asns; i++)
			if (p->cfg.asns[i] == asn)
				return true;
	for (size_t i = 0; i < p->cfg.n_prefixes; i++)
		if (mm_prefix_contains(&p->cfg.prefixes[i], a))
			return true;
	return false;
}

enum mm_traffic_class mm_policy_class_of(const struct mm_policy *p, const struct mm_flow *f)
{
	bool src = is_domestic(p, &f->src, f->src_country, f->src_as);
	bool dst = is_domestic(p, &f->dst, f->dst_country, f->dst_as);

	return src ? (dst ? MM_CLASS_DD : MM_CLASS_DF) : (dst ? MM_CLASS_FD : MM_CLASS_FF);
}

static bool in_targets(const struct mm_collection_rule *r, const struct mm_flow *f)
{
	if (!r->n_prefixes && !r->n_asns)
		return true;
	for (size_t i = 0; i < r->n_prefixes; i++)
		if (mm_prefix_contains(&r->prefixes[i], &f->src) || mm_prefix_contains(&r->prefixes[i], &f->dst))
			return true;
	for (size_t i = 0; i < r->n_asns; i++)
		if ((f->src_as && r->asns[i] == f->src_as) || (f->dst_as && r->asns[i] == f->dst_as))
			return true;
	return false;
}

static bool covered(const struct mm_policy *p, const struct mm_flow *f, enum mm_traffic_class c)
{
	for (size_t i = 0; i < p->cfg.n_rules; i++) {
		const struct mm_collection_rule *r = &p->cfg.rules[i];

		if (!(r->classes & (1u << c)))
			continue;
		if (!r->any_sensor && r->sensor_id != f->sensor_id)
			continue;
		if (f->first_ns < r->from_ns || (r->until_ns && f->first_ns >= r->until_ns))
			continue;
		if (!in_targets(r, f))
			continue;
		return true;
	}
	return false;
}

size_t mm_policy_apply(const struct mm_policy *p, const struct mm_flow *in, size_t n, struct mm_flow *out,
		       struct mm_policy_counts *counts)
{
	/* Sensors repeat from flow to flow: remember the last slot. */
	struct mm_policy_sensor_counts *sc = NULL;
	uint8_t sides[256];
	size_t kept = 0, batch_start = 0;

	counts->classed = p->cfg.jurisdiction;
	for (size_t i = 0; i < n; i++) {
		struct mm_flow *f = &out[kept];
		enum mm_traffic_class c;

		*f = in[i];
		if (p->geo)
			mm_geo_lookup_flows(p->geo, f, 1);
		if (!p->cfg.jurisdiction) {
			counts->unclassed++;
			kept++;
			continue;
		}
		if (!sc || sc->sensor_id != f->sensor_id)
			sc = policy_counts_slot(counts, f->sensor_id);
		c = mm_policy_class_of(p, f);
		sc->seen[c]++;
		if (c == MM_CLASS_DD || !covered(p, f, c)) {
			sc->dropped[c]++;
			memset(f, 0, sizeof(*f)); /* nothing of a dropped flow outlives this call */
			continue;
		}
		sc->kept[c]++;
		sides[kept - batch_start] = (uint8_t)((c == MM_CLASS_DF ? MM_CRYPTOPAN_SRC : 0) |
						      (c == MM_CLASS_FD ? MM_CRYPTOPAN_DST : 0));
		f->flags |= (uint8_t)((c == MM_CLASS_DF ? MM_FLOW_SRC_DOMESTIC : 0) |
				      (c == MM_CLASS_FD ? MM_FLOW_DST_DOMESTIC : 0));
		counts->pseudonymised += (c == MM_CLASS_DF || c == MM_CLASS_FD);
		kept++;
		if (kept - batch_start == sizeof(sides)) {
			mm_cryptopan_flows(p->pan, out + batch_start, kept - batch_start, sides);
			batch_start = kept;
		}
	}
	if (p->cfg.jurisdiction && kept > batch_start)
		mm_cryptopan_flows(p->pan, out + batch_start, kept - batch_start, sides);
	return kept;
}
