/*
 * The policy's part of mamori.conf (see policy.h and docs/policy.md):
 *
 *   [jurisdiction]
 *   countries = JP                    ISO 3166 alpha-2, comma or space separated
 *   prefixes = 198.51.100.0/24        extra domestic prefixes (repeatable)
 *   asns = 64500                      extra domestic ASNs (repeatable)
 *   geo_table = /var/lib/mamori/geo/geo.table
 *   [sensor tokyo-ix-1]
 *   id = 1
 *   location = JP-13 Otemachi
 *   [collect]
 *   rule = sensor=tokyo-ix-1 classes=FD,DF from=2026-11-01 until=2026-12-01
 *   [pseudonymisation]
 *   key_file = /etc/mamori/cryptopan.key
 *   [retention]
 *   flows = 2y
 *   alerts = 5y
 */
#include "mamori/policy.h"

#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const class_names[MM_CLASS__COUNT] = { "DD", "FD", "DF", "FF" };

const char *mm_traffic_class_name(unsigned c)
{
	return c < MM_CLASS__COUNT ? class_names[c] : NULL;
}

void mm_policy_config_init(struct mm_policy_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->retention.flows_ns = MM_RETENTION_FLOWS_DEFAULT_NS;
	cfg->retention.alerts_ns = MM_RETENTION_ALERTS_DEFAULT_NS;
}

void mm_policy_config_free(struct mm_policy_config *cfg)
{
	free(cfg->prefixes);
	free(cfg->asns);
	free(cfg->geo_table);
	free(cfg->cryptopan_key);
	mm_policy_config_init(cfg);
}

/* Next item of a list separated by commas and/or blanks; NULL at the end. */
static const char *next_item(const char **p, char *buf, size_t size)
{
	const char *s = *p;
	size_t n = 0;

	while (*s == ',' || *s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return NULL;
	while (s[n] && s[n] != ',' && s[n] != ' ' && s[n] != '\t')
		n++;
	*p = s + n;
	if (n >= size)
		n = size - 1; /* too long to be valid: the caller refuses it */
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

static int add_country(struct mm_policy_config *cfg, const char *cc)
{
	if (strlen(cc) != 2 || !isalpha((unsigned char)cc[0]) || !isalpha((unsigned char)cc[1]))
		return mm_fail(MM_EINVAL, "'%s' is not an ISO 3166 alpha-2 country code", cc);
	if (cfg->n_countries == MM_POLICY_MAX_COUNTRIES)
		return mm_fail(MM_ELIMIT, "more than %d jurisdiction countries", MM_POLICY_MAX_COUNTRIES);
	cfg->countries[cfg->n_countries][0] = (char)toupper((unsigned char)cc[0]);
	cfg->countries[cfg->n_countries][1] = (char)toupper((unsigned char)cc[1]);
	cfg->n_countries++;
	return 0;
}

static int add_countries(struct mm_policy_config *cfg, const char *list)
{
	char item[16];
	int rc;

	for (const char *p = list; next_item(&p, item, sizeof(item));)
		if ((rc = add_country(cfg, item)) != 0)
			return rc;
	return 0;
}

int mm_policy_config_set_countries(struct mm_policy_config *cfg, const char *list)
{
	int rc;

	cfg->n_countries = 0;
	if ((rc = add_countries(cfg, list)) != 0)
		return rc;
	if (cfg->n_countries == 0)
		return mm_fail(MM_EINVAL, "--jurisdiction needs at least one country code");
	cfg->jurisdiction = true;
	return 0;
}

static int add_prefixes(struct mm_policy_config *cfg, const char *list)
{
	char item[64];

	for (const char *p = list; next_item(&p, item, sizeof(item));) {
		struct mm_prefix pf;
		struct mm_prefix *grown;

		if (mm_prefix_parse(&pf, item, false) != 0)
			return mm_fail(MM_EINVAL, "'%s' is not a prefix (host bits must be zero)", item);
		if (cfg->n_prefixes == MM_POLICY_MAX_PREFIXES)
			return mm_fail(MM_ELIMIT, "more than %d domestic prefixes", MM_POLICY_MAX_PREFIXES);
		grown = realloc(cfg->prefixes, (cfg->n_prefixes + 1) * sizeof(*grown));
		if (!grown)
			return mm_fail(MM_ENOMEM, "policy: out of memory");
		cfg->prefixes = grown;
		cfg->prefixes[cfg->n_prefixes++] = pf;
	}
	return 0;
}

static int parse_u32(const char *text, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)text[0]))
		return MM_EINVAL;
	v = strtoull(text, &end, 10);
	if (*end || v > UINT32_MAX)
		return MM_EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int add_asns(struct mm_policy_config *cfg, const char *list)
{
	char item[32];

	for (const char *p = list; next_item(&p, item, sizeof(item));) {
		const char *digits = (strncasecmp(item, "AS", 2) == 0) ? item + 2 : item;
		uint32_t asn;
		uint32_t *grown;

		if (parse_u32(digits, &asn) != 0)
			return mm_fail(MM_EINVAL, "'%s' is not an AS number", item);
		if (cfg->n_asns == MM_POLICY_MAX_ASNS)
			return mm_fail(MM_ELIMIT, "more than %d domestic ASNs", MM_POLICY_MAX_ASNS);
		grown = realloc(cfg->asns, (cfg->n_asns + 1) * sizeof(*grown));
		if (!grown)
			return mm_fail(MM_ENOMEM, "policy: out of memory");
		cfg->asns = grown;
		cfg->asns[cfg->n_asns++] = asn;
	}
	return 0;
}

int mm_policy_sensor_resolve(const struct mm_policy_config *cfg, const char *text, uint32_t *id)
{
	for (size_t i = 0; i < cfg->n_sensors; i++)
		if (strcmp(cfg->sensors[i].name, text) == 0) {
			*id = cfg->sensors[i].id;
			return 0;
		}
	if (parse_u32(text, id) == 0)
		return 0;
	return mm_fail(MM_ENOENT, "no sensor named '%s' (sensors are named in [sensor NAME] sections)", text);
}

int mm_policy_config_add_rule(struct mm_policy_config *cfg, const struct mm_collection_rule *rule)
{
	if (cfg->n_rules == MM_POLICY_MAX_RULES)
		return mm_fail(MM_ELIMIT, "more than %d collection rules", MM_POLICY_MAX_RULES);
	cfg->rules[cfg->n_rules++] = *rule;
	return 0;
}

void mm_policy_config_clear_rules(struct mm_policy_config *cfg)
{
	cfg->n_rules = 0;
}

static int parse_classes(const char *list, uint8_t *out)
{
	char item[16];

	*out = 0;
	for (const char *p = list; next_item(&p, item, sizeof(item));) {
		unsigned c;

		for (c = 0; c < MM_CLASS__COUNT; c++)
			if (strcasecmp(item, class_names[c]) == 0)
				break;
		if (c == MM_CLASS_DD)
			return mm_fail(MM_EINVAL, "class DD (domestic to domestic) is never collected");
		if (c == MM_CLASS__COUNT)
			return mm_fail(MM_EINVAL, "'%s' is not a traffic class (FD, DF or FF)", item);
		*out |= (uint8_t)(1u << c);
	}
	if (!*out)
		return mm_fail(MM_EINVAL, "a rule needs classes=FD,DF,FF (one or more)");
	return 0;
}

/* "sensor=NAME|ID|* classes=FD,DF,FF [from=T] [until=T]" */
static int parse_rule(const struct mm_policy_config *cfg, const char *text, struct mm_collection_rule *r)
{
	char word[128];
	const char *p = text;
	bool have_sensor = false;
	uint64_t now = mm_time_now_ns();
	int rc;

	memset(r, 0, sizeof(*r));
	while (*p) {
		size_t n = 0;
		char *eq;

		while (*p == ' ' || *p == '\t')
			p++;
		while (p[n] && p[n] != ' ' && p[n] != '\t')
			n++;
		if (!n)
			break;
		if (n >= sizeof(word))
			return mm_fail(MM_EINVAL, "rule word too long: '%.20s...'", p);
		memcpy(word, p, n);
		word[n] = '\0';
		p += n;
		eq = strchr(word, '=');
		if (!eq)
			return mm_fail(MM_EINVAL, "rule word '%s' is not name=value", word);
		*eq++ = '\0';
		if (strcmp(word, "sensor") == 0) {
			have_sensor = true;
			if (strcmp(eq, "*") == 0)
				r->any_sensor = true;
			else if ((rc = mm_policy_sensor_resolve(cfg, eq, &r->sensor_id)) != 0)
				return rc;
		} else if (strcmp(word, "classes") == 0) {
			if ((rc = parse_classes(eq, &r->classes)) != 0)
				return rc;
		} else if (strcmp(word, "from") == 0) {
			if ((rc = mm_time_parse(eq, now, &r->from_ns)) != 0)
				return rc;
		} else if (strcmp(word, "until") == 0) {
			if ((rc = mm_time_parse(eq, now, &r->until_ns)) != 0)
				return rc;
		} else {
			return mm_fail(MM_EINVAL, "unknown rule word '%s' (sensor, classes, from, until)", word);
		}
	}
	if (!have_sensor)
		return mm_fail(MM_EINVAL, "a rule needs sensor=NAME (or sensor=* for every sensor)");
	if (!r->classes)
		return mm_fail(MM_EINVAL, "a rule needs classes=FD,DF,FF (one or more)");
	if (r->until_ns && r->until_ns <= r->from_ns)
		return mm_fail(MM_EINVAL, "rule ends before it starts");
	return 0;
}

static int set_path(char **dst, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return mm_fail(MM_ENOMEM, "policy: out of memory");
	free(*dst);
	*dst = s;
	return 0;
}

static int take_jurisdiction(struct mm_policy_config *cfg, const struct mm_config_entry *e)
{
	if (strcmp(e->key, "countries") == 0) {
		cfg->jurisdiction = true;
		return add_countries(cfg, e->value);
	}
	if (strcmp(e->key, "prefixes") == 0) {
		cfg->jurisdiction = true;
		return add_prefixes(cfg, e->value);
	}
	if (strcmp(e->key, "asns") == 0) {
		cfg->jurisdiction = true;
		return add_asns(cfg, e->value);
	}
	if (strcmp(e->key, "geo_table") == 0)
		return set_path(&cfg->geo_table, e->value);
	return mm_fail(MM_EINVAL, "unknown key (countries, prefixes, asns, geo_table)");
}

static int take_sensor(struct mm_policy_config *cfg, const struct mm_config_entry *e)
{
	struct mm_policy_sensor *s = NULL;

	if (!*e->name)
		return mm_fail(MM_EINVAL, "a sensor section needs a name: [sensor NAME]");
	if (strlen(e->name) >= sizeof(s->name))
		return mm_fail(MM_EINVAL, "sensor name longer than %zu characters", sizeof(s->name) - 1);
	for (size_t i = 0; i < cfg->n_sensors; i++)
		if (strcmp(cfg->sensors[i].name, e->name) == 0)
			s = &cfg->sensors[i];
	if (!s) {
		if (cfg->n_sensors == MM_POLICY_MAX_SENSORS)
			return mm_fail(MM_ELIMIT, "more than %d sensors", MM_POLICY_MAX_SENSORS);
		s = &cfg->sensors[cfg->n_sensors++];
		memset(s, 0, sizeof(*s));
		strcpy(s->name, e->name);
		s->id = UINT32_MAX; /* until id = N */
	}
	if (strcmp(e->key, "id") == 0) {
		if (parse_u32(e->value, &s->id) != 0 || s->id == UINT32_MAX)
			return mm_fail(MM_EINVAL, "'%s' is not a sensor id (0..4294967294)", e->value);
		return 0;
	}
	if (strcmp(e->key, "location") == 0) {
		snprintf(s->location, sizeof(s->location), "%s", e->value);
		return 0;
	}
	return mm_fail(MM_EINVAL, "unknown key (id, location)");
}

static int take_retention(struct mm_policy_config *cfg, const struct mm_config_entry *e)
{
	uint64_t *slot = strcmp(e->key, "flows") == 0	 ? &cfg->retention.flows_ns :
			 strcmp(e->key, "alerts") == 0 ? &cfg->retention.alerts_ns :
							  NULL;

	if (!slot)
		return mm_fail(MM_EINVAL, "unknown key (flows, alerts)");
	if (mm_duration_parse(e->value, slot) != 0 || *slot == 0)
		return mm_fail(MM_EINVAL, "'%s' is not a duration such as 2y or 730d", e->value);
	return 0;
}

static int take_entry(struct mm_policy_config *cfg, const struct mm_config_entry *e)
{
	if (strcmp(e->section, "jurisdiction") == 0)
		return take_jurisdiction(cfg, e);
	if (strcmp(e->section, "sensor") == 0)
		return take_sensor(cfg, e);
	if (strcmp(e->section, "collect") == 0) {
		struct mm_collection_rule r;
		int rc;

		if (strcmp(e->key, "rule") != 0)
			return mm_fail(MM_EINVAL, "unknown key (rule)");
		if ((rc = parse_rule(cfg, e->value, &r)) != 0)
			return rc;
		return mm_policy_config_add_rule(cfg, &r);
	}
	if (strcmp(e->section, "pseudonymisation") == 0) {
		if (strcmp(e->key, "key_file") != 0)
			return mm_fail(MM_EINVAL, "unknown key (key_file)");
		return set_path(&cfg->cryptopan_key, e->value);
	}
	if (strcmp(e->section, "retention") == 0)
		return take_retention(cfg, e);
	return 0; /* another module's section */
}

int mm_policy_config_load(struct mm_policy_config *cfg, const struct mm_config *conf)
{
	/* Sensors first, so rules may name sensors defined further down. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < mm_config_count(conf); i++) {
			const struct mm_config_entry *e = mm_config_at(conf, i);
			int rc;

			if ((strcmp(e->section, "sensor") == 0) != (pass == 0))
				continue;
			if ((rc = take_entry(cfg, e)) != 0)
				return mm_config_fail(conf, e, rc, "%s", mm_last_error());
			if (strcmp(e->section, "collect") == 0)
				snprintf(cfg->rules[cfg->n_rules - 1].origin, sizeof(cfg->rules[0].origin), "%s:%u",
					 mm_config_file(conf), e->line);
		}
	}
	for (size_t i = 0; i < cfg->n_sensors; i++)
		if (cfg->sensors[i].id == UINT32_MAX)
			return mm_fail(MM_EINVAL, "%s: [sensor %s] has no id", mm_config_file(conf),
				       cfg->sensors[i].name);
	return 0;
}
