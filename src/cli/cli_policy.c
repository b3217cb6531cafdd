/*
 * The jurisdiction options shared by meter and collect (see cli.h): one
 * configuration lookup, one --jurisdiction override, one --sensor meaning.
 */
#include "cli/cli.h"

#include "mamori/oversight.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <stdio.h>
#include <string.h>

int cli_policy_option(struct cli_policy_options *o, int opt, const char *arg)
{
	switch (opt) {
	case CLI_OPT_CONFIG: o->config = arg; return 0;
	case CLI_OPT_JURISDICTION: o->jurisdiction = arg; return 0;
	case CLI_OPT_SENSOR: o->sensor = arg; return 0;
	case CLI_OPT_AUTHZ: o->authz = arg; return 0;
	case CLI_OPT_DETECT: o->detect = true; return 0;
	case CLI_OPT_DETECT_AUTHZ: o->detect = true; o->detect_authz = arg; return 0;
	default: return -1;
	}
}

static uint8_t classes_of(enum mm_authz_kind k)
{
	switch (k) {
	case MM_AK_COLLECT_TRANSIT: return 1u << MM_CLASS_FF;
	case MM_AK_COLLECT_AGREEMENT:
	case MM_AK_COLLECT_SPECIFIED: return 1u << MM_CLASS_FD | 1u << MM_CLASS_DF;
	default: return 0;
	}
}

/* One rule per sensor the authorization names (or one for any sensor). */
static int add_authz_rules(struct mm_policy_config *cfg, const struct mm_authz *a)
{
	struct mm_collection_rule r = {
		.classes = classes_of(a->kind),
		.from_ns = a->data_from_ns,
		.until_ns = a->data_until_ns == UINT64_MAX ? 0 : a->data_until_ns,
		.prefixes = a->prefixes, .n_prefixes = a->n_prefixes,
		.asns = a->asns, .n_asns = a->n_asns,
	};
	int rc;

	snprintf(r.origin, sizeof(r.origin), "%s", a->id);
	r.any_sensor = a->n_sensors == 0;
	for (size_t i = 0; i < (a->n_sensors ? a->n_sensors : 1); i++) {
		if (a->n_sensors)
			r.sensor_id = a->sensors[i];
		if ((rc = mm_policy_config_add_rule(cfg, &r)) != 0)
			return rc;
	}
	return 0;
}

/* Under a panel, what may be kept is what the panel authorized, nothing else. */
static int rules_from_oversight(struct cli_policy *p, const char *data_dir)
{
	uint64_t now = mm_time_now_ns();
	int rc = mm_oversight_open(data_dir, &p->oversight);

	if (rc || mm_oversight_lab(p->oversight))
		return rc;
	mm_policy_config_clear_rules(&p->cfg);
	for (size_t i = 0; i < mm_oversight_count(p->oversight); i++) {
		const struct mm_authz *a = mm_oversight_authz(p->oversight, i);
		struct mm_authz_state st;

		if (!classes_of(a->kind))
			continue;
		mm_oversight_state(p->oversight, a, now, &st);
		if (st.status == MM_AZ_IN_FORCE && (rc = add_authz_rules(&p->cfg, a)) != 0)
			return rc;
	}
	return 0;
}

int cli_policy_open(struct cli_policy *p, const char *command, const struct cli_policy_options *o,
		    const char *data_dir)
{
	int rc;

	memset(p, 0, sizeof(*p));
	mm_policy_config_init(&p->cfg);
	if ((rc = mm_config_find(o->config, data_dir, &p->conf)) != 0 ||
	    (rc = mm_policy_config_load(&p->cfg, p->conf)) != 0)
		goto fail;
	if (o->jurisdiction && (rc = mm_policy_config_set_countries(&p->cfg, o->jurisdiction)) != 0) {
		cli_policy_close(p);
		return cli_usage_error(command, "--jurisdiction: %s", mm_last_error());
	}
	if (o->sensor && (rc = mm_policy_sensor_resolve(&p->cfg, o->sensor, &p->sensor_id)) != 0) {
		cli_policy_close(p);
		return cli_usage_error(command, "--sensor: %s", mm_last_error());
	}
	if (p->sensor_id == UINT32_MAX) {
		cli_policy_close(p);
		return cli_usage_error(command, "--sensor: 4294967295 is reserved for 'other sensors'");
	}
	if ((rc = rules_from_oversight(p, data_dir)) != 0 ||
	    (rc = mm_policy_new(&p->cfg, data_dir, &p->policy)) != 0)
		goto fail;
	return CLI_EXIT_OK;
fail:
	cli_policy_close(p);
	return cli_fail(command, rc);
}

struct mm_policy_target cli_policy_target(const struct cli_policy *p, const char *counters_dir)
{
	return (struct mm_policy_target){
		.policy = p->policy, .config = &p->cfg, .counters_dir = counters_dir,
	};
}

void cli_policy_close(struct cli_policy *p)
{
	mm_policy_free(p->policy);
	mm_oversight_free(p->oversight);
	mm_policy_config_free(&p->cfg);
	mm_config_free(p->conf);
	memset(p, 0, sizeof(*p));
}
