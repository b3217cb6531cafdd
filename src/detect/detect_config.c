/*
 * Detector thresholds: the defaults, and one declarative table that maps
 * each mamori.conf [detect] key to its field, type and meaning, so the
 * setter, the docs listing and `mamori detect --help` cannot disagree.
 */
#include "detect/detect_int.h"

#include "mamori/config.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint16_t default_bruteforce_ports[] = {
	21, 22, 23, 110, 143, 445, 993, 995, 1433, 3306, 3389, 5432, 5900,
};

void mm_detect_config_default(struct mm_detect_config *c)
{
	memset(c, 0, sizeof(*c));
	c->enabled = (1u << MM_DET_COUNT) - 1;
	c->reorder_ns = 10 * MM_NS_PER_SEC;
	c->max_buffered = 65536;
	c->memory_cap = (size_t)256 << 20;
	c->threads = 2;

	c->intel_cfg.min_confidence = 0;
	c->intel_cfg.suppress_ns = 3600 * MM_NS_PER_SEC;

	c->scan.window_ns = 600 * MM_NS_PER_SEC;
	c->scan.min_hosts = 64;
	c->scan.horizontal_max_ports = 3;
	c->scan.min_ports = 64;
	c->scan.vertical_max_hosts = 2;
	c->scan.block_min_hosts = 16;
	c->scan.block_min_ports = 16;
	c->scan.min_fail_ratio = 0.6;
	c->scan.trw_theta0 = 0.8;
	c->scan.trw_theta1 = 0.2;
	c->scan.trw_alpha = 0.01;
	c->scan.trw_beta = 0.99;
	c->scan.trw_min_failures = 10;
	c->scan.trw_max_gap_ns = 180 * MM_NS_PER_SEC;
	c->scan.trw_idle_ns = 3600 * MM_NS_PER_SEC;

	c->beacon.window_ns = 24 * 3600 * MM_NS_PER_SEC;
	c->beacon.min_conns = 5;
	c->beacon.min_interval_ns = 10 * MM_NS_PER_SEC;
	c->beacon.max_interval_ns = 6 * 3600 * MM_NS_PER_SEC;
	c->beacon.min_span_ns = 2 * 3600 * MM_NS_PER_SEC;
	c->beacon.threshold = 0.70;
	c->beacon.few_conns = 12;
	c->beacon.few_threshold = 0.93;
	c->beacon.score_every_ns = 900 * MM_NS_PER_SEC;
	c->beacon.max_dst_sources = 3;
	c->beacon.max_size = 1000000;
	c->beacon.max_dispersion = 0.35;
	c->beacon.max_fanout = 4;

	c->ddos.window_ns = 10 * MM_NS_PER_SEC;
	c->ddos.min_pps = 20000;
	c->ddos.min_bps = 200e6;
	c->ddos.min_fps = 300;
	c->ddos.baseline_factor = 8;
	c->ddos.ewma_alpha = 0.1;
	c->ddos.min_share = 0.6;
	c->ddos.min_sources = 20;
	c->ddos.top_k = 4096;

	c->bruteforce.window_ns = 1800 * MM_NS_PER_SEC;
	c->bruteforce.min_sources = 3;
	c->bruteforce.min_attempts = 20;
	c->bruteforce.max_bytes = 16384;
	c->bruteforce.max_duration_ns = 30 * MM_NS_PER_SEC;
	memcpy(c->bruteforce.ports.port, default_bruteforce_ports, sizeof(default_bruteforce_ports));
	c->bruteforce.ports.n = sizeof(default_bruteforce_ports) / sizeof(default_bruteforce_ports[0]);
	c->beacon.ignore_ports.port[0] = 123;
	c->beacon.ignore_ports.n = 1;

	c->exfil.window_ns = 3600 * MM_NS_PER_SEC;
	c->exfil.min_bytes = 200000000;
	c->exfil.min_out_in_ratio = 4;
	c->exfil.rare_max_hosts = 2;
	c->exfil.baseline_factor = 10;
	c->exfil.popularity_window_ns = 24 * 3600 * MM_NS_PER_SEC;
}

enum key_type { K_UINT, K_SIZE, K_U64, K_DURATION, K_RATIO, K_REAL, K_PORTS, K_PREFIXES, K_DETECTORS };

struct key_def {
	const char *key;
	enum key_type type;
	size_t offset;
	const char *doc;
};

#define F(field) offsetof(struct mm_detect_config, field)

static const struct key_def keys[] = {
	{ "detectors", K_DETECTORS, F(enabled), "detectors to run (comma list of intel,scan,beacon,ddos,bruteforce,exfil)" },
	{ "domestic", K_PREFIXES, F(domestic), "domestic prefixes (comma list), the inside for exfil" },
	{ "reorder", K_DURATION, F(reorder_ns), "export-time disorder absorbed before processing" },
	{ "max_buffered", K_SIZE, F(max_buffered), "flows held for reordering at most" },
	{ "memory", K_SIZE, F(memory_cap), "bytes of detector state, shared out among detectors" },
	{ "threads", K_UINT, F(threads), "inline detection: 1 thread, or 2 splitting the detectors (same alerts)" },
	{ "intel.min_confidence", K_UINT, F(intel_cfg.min_confidence), "indicators below this confidence (0-100) are ignored" },
	{ "intel.suppress", K_DURATION, F(intel_cfg.suppress_ns), "one alert per (src, dst, indicator) per this" },
	{ "scan.window", K_DURATION, F(scan.window_ns), "per-source counting window" },
	{ "scan.min_hosts", K_UINT, F(scan.min_hosts), "horizontal scan: distinct hosts on one port" },
	{ "scan.horizontal_max_ports", K_UINT, F(scan.horizontal_max_ports), "horizontal scan: at most this many ports" },
	{ "scan.min_ports", K_UINT, F(scan.min_ports), "vertical scan: distinct ports" },
	{ "scan.vertical_max_hosts", K_UINT, F(scan.vertical_max_hosts), "vertical scan: on at most this many hosts" },
	{ "scan.block_min_hosts", K_UINT, F(scan.block_min_hosts), "block scan: distinct hosts" },
	{ "scan.block_min_ports", K_UINT, F(scan.block_min_ports), "block scan: distinct ports" },
	{ "scan.min_fail_ratio", K_RATIO, F(scan.min_fail_ratio), "share of the source's flows that got no reply" },
	{ "scan.trw_theta0", K_RATIO, F(scan.trw_theta0), "TRW: P(connection succeeds | benign source)" },
	{ "scan.trw_theta1", K_RATIO, F(scan.trw_theta1), "TRW: P(connection succeeds | scanner)" },
	{ "scan.trw_alpha", K_RATIO, F(scan.trw_alpha), "TRW: false positive probability bound" },
	{ "scan.trw_beta", K_RATIO, F(scan.trw_beta), "TRW: detection probability" },
	{ "scan.trw_min_failures", K_UINT, F(scan.trw_min_failures), "TRW: failed first contacts before an alert" },
	{ "scan.trw_max_gap", K_DURATION, F(scan.trw_max_gap_ns), "TRW: a source quiet longer than this starts its test afresh" },
	{ "scan.trw_idle", K_DURATION, F(scan.trw_idle_ns), "TRW: state of a quiet source expires after this" },
	{ "beacon.window", K_DURATION, F(beacon.window_ns), "connection history kept per (src, dst, port)" },
	{ "beacon.min_conns", K_UINT, F(beacon.min_conns), "connections before a pair is scored" },
	{ "beacon.min_interval", K_DURATION, F(beacon.min_interval_ns), "median interval below this is chatter, not a beacon" },
	{ "beacon.max_interval", K_DURATION, F(beacon.max_interval_ns), "median interval above this is not scored" },
	{ "beacon.min_span", K_DURATION, F(beacon.min_span_ns), "first to last connection at least" },
	{ "beacon.threshold", K_RATIO, F(beacon.threshold), "score (0-1) at which a pair is a beacon" },
	{ "beacon.few_conns", K_UINT, F(beacon.few_conns), "pairs with fewer connections must reach few_threshold" },
	{ "beacon.few_threshold", K_RATIO, F(beacon.few_threshold), "score a pair with few connections must reach" },
	{ "beacon.score_every", K_DURATION, F(beacon.score_every_ns), "rescoring cadence per pair" },
	{ "beacon.max_dst_sources", K_UINT, F(beacon.max_dst_sources), "a destination more internal hosts talk to is not scored (popular service)" },
	{ "beacon.max_dispersion", K_RATIO, F(beacon.max_dispersion), "interval MAD / median above which arrivals are as irregular as random ones" },
	{ "beacon.max_size", K_U64, F(beacon.max_size), "median bytes per connection above which a pair is a transfer, not check-ins" },
	{ "beacon.max_fanout", K_UINT, F(beacon.max_fanout), "a source periodic to more destinations is a monitor, not an implant" },
	{ "beacon.ignore_ports", K_PORTS, F(beacon.ignore_ports), "destination ports never scored (comma list; empty: none)" },
	{ "ddos.window", K_DURATION, F(ddos.window_ns), "rate window" },
	{ "ddos.min_pps", K_REAL, F(ddos.min_pps), "packets/s to one destination (any of the three rates)" },
	{ "ddos.min_bps", K_REAL, F(ddos.min_bps), "bits/s to one destination" },
	{ "ddos.min_fps", K_REAL, F(ddos.min_fps), "flows/s to one destination" },
	{ "ddos.baseline_factor", K_REAL, F(ddos.baseline_factor), "rate must exceed this times the learned baseline" },
	{ "ddos.ewma_alpha", K_RATIO, F(ddos.ewma_alpha), "baseline weight of each new window" },
	{ "ddos.min_share", K_RATIO, F(ddos.min_share), "the vector's share of the destination's packets" },
	{ "ddos.min_sources", K_UINT, F(ddos.min_sources), "distinct sources (estimated) a flood comes from at least" },
	{ "ddos.top_k", K_UINT, F(ddos.top_k), "destinations tracked per window (space-saving)" },
	{ "bruteforce.window", K_DURATION, F(bruteforce.window_ns), "counting window per (src, dst, port)" },
	{ "bruteforce.min_attempts", K_UINT, F(bruteforce.min_attempts), "short sessions in the window" },
	{ "bruteforce.min_sources", K_UINT, F(bruteforce.min_sources), "distinct sources of one /24 (/64) before they count together" },
	{ "bruteforce.max_bytes", K_U64, F(bruteforce.max_bytes), "a short session carries at most this many bytes" },
	{ "bruteforce.max_duration", K_DURATION, F(bruteforce.max_duration_ns), "a short session lasts at most this" },
	{ "bruteforce.ports", K_PORTS, F(bruteforce.ports), "services watched (comma list)" },
	{ "exfil.window", K_DURATION, F(exfil.window_ns), "outbound bytes summed per (domestic, foreign) pair" },
	{ "exfil.min_bytes", K_U64, F(exfil.min_bytes), "outbound bytes in the window" },
	{ "exfil.min_out_in_ratio", K_REAL, F(exfil.min_out_in_ratio), "outbound at least this times inbound" },
	{ "exfil.rare_max_hosts", K_UINT, F(exfil.rare_max_hosts), "a destination seen by more internal hosts is not rare" },
	{ "exfil.baseline_factor", K_REAL, F(exfil.baseline_factor), "above this times the host's hourly outbound baseline" },
	{ "exfil.popularity_window", K_DURATION, F(exfil.popularity_window_ns), "how long destination popularity is remembered" },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

static int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (text[0] < '0' || text[0] > '9')
		return MM_EINVAL;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || *end || v > max)
		return MM_EINVAL;
	*out = v;
	return 0;
}

static int parse_real(const char *text, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno || end == text || *end || !isfinite(v) || v < 0)
		return MM_EINVAL;
	*out = v;
	return 0;
}

/* Calls fn for each comma-separated item (trimmed, non-empty); stops at its first error. */
static int each_item(const char *text, int (*fn)(void *ctx, const char *item), void *ctx)
{
	char item[MM_PREFIX_STRLEN + 8];

	while (*text) {
		const char *end = strchr(text, ',');
		size_t len = end ? (size_t)(end - text) : strlen(text);
		int rc;

		while (len && (*text == ' ' || *text == '\t')) {
			text++;
			len--;
		}
		while (len && (text[len - 1] == ' ' || text[len - 1] == '\t'))
			len--;
		if (len >= sizeof(item))
			return MM_EINVAL;
		memcpy(item, text, len);
		item[len] = '\0';
		if (len && (rc = fn(ctx, item)) < 0)
			return rc;
		if (!end)
			break;
		text = end + 1;
	}
	return 0;
}

static int add_port(void *ctx, const char *item)
{
	struct mm_detect_ports *p = ctx;
	uint64_t v;

	if (parse_u64(item, 65535, &v) < 0 || p->n >= MM_DETECT_MAX_PORTS)
		return MM_EINVAL;
	p->port[p->n++] = (uint16_t)v;
	return 0;
}

static int add_prefix(void *ctx, const char *item)
{
	struct mm_detect_config *c = ctx;

	if (c->n_domestic >= MM_DETECT_MAX_DOMESTIC ||
	    mm_prefix_parse(&c->domestic[c->n_domestic], item, true) < 0)
		return MM_EINVAL;
	c->n_domestic++;
	return 0;
}

static int add_detector(void *ctx, const char *item)
{
	unsigned *mask = ctx;
	enum mm_detector d;

	if (mm_detector_parse(item, &d) < 0)
		return MM_EINVAL;
	*mask |= 1u << d;
	return 0;
}

int mm_detect_config_set(struct mm_detect_config *c, const char *key, const char *value)
{
	const struct key_def *k = NULL;
	uint8_t *field;
	uint64_t u;
	double r;
	int rc = 0;

	for (size_t i = 0; i < N_KEYS && !k; i++)
		if (strcmp(keys[i].key, key) == 0)
			k = &keys[i];
	if (!k)
		return mm_fail(MM_ENOENT, "detect: unknown key '%s'", key);
	field = (uint8_t *)c + k->offset;
	switch (k->type) {
	case K_UINT:
		if ((rc = parse_u64(value, UINT32_MAX, &u)) == 0)
			*(unsigned *)(void *)field = (unsigned)u;
		break;
	case K_SIZE:
		if ((rc = parse_u64(value, SIZE_MAX, &u)) == 0 && u > 0)
			*(size_t *)(void *)field = (size_t)u;
		else
			rc = MM_EINVAL;
		break;
	case K_U64:
		if ((rc = parse_u64(value, UINT64_MAX, &u)) == 0)
			*(uint64_t *)(void *)field = u;
		break;
	case K_DURATION:
		if ((rc = mm_duration_parse(value, &u)) == 0 && u > 0)
			*(uint64_t *)(void *)field = u;
		else
			rc = MM_EINVAL;
		break;
	case K_RATIO:
	case K_REAL:
		if ((rc = parse_real(value, &r)) == 0 && (k->type == K_REAL || r <= 1.0))
			*(double *)(void *)field = r;
		else
			rc = MM_EINVAL;
		break;
	case K_PORTS: {
		struct mm_detect_ports tmp = { .n = 0 };

		if ((rc = each_item(value, add_port, &tmp)) == 0)
			memcpy(field, &tmp, sizeof(tmp));
		break;
	}
	case K_PREFIXES: {
		struct mm_detect_config *tmp = malloc(sizeof(*tmp));

		if (!tmp)
			return mm_fail(MM_ENOMEM, "detect: %s", key);
		*tmp = *c;
		tmp->n_domestic = 0;
		if ((rc = each_item(value, add_prefix, tmp)) == 0) {
			memcpy(c->domestic, tmp->domestic, sizeof(c->domestic));
			c->n_domestic = tmp->n_domestic;
		}
		free(tmp);
		break;
	}
	case K_DETECTORS: {
		unsigned mask = 0;

		if ((rc = each_item(value, add_detector, &mask)) == 0 && mask)
			c->enabled = mask;
		else
			rc = MM_EINVAL;
		break;
	}
	}
	if (rc < 0)
		return mm_fail(MM_EINVAL, "detect: %s: bad value '%s' (%s)", key, value, k->doc);
	return 0;
}

static void format_value(const struct mm_detect_config *c, const struct key_def *k, char *buf, size_t len)
{
	const uint8_t *field = (const uint8_t *)c + k->offset;
	size_t used = 0;

	buf[0] = '\0';
	switch (k->type) {
	case K_UINT:
		snprintf(buf, len, "%u", *(const unsigned *)(const void *)field);
		break;
	case K_SIZE:
		snprintf(buf, len, "%zu", *(const size_t *)(const void *)field);
		break;
	case K_U64:
		snprintf(buf, len, "%" PRIu64, *(const uint64_t *)(const void *)field);
		break;
	case K_DURATION: {
		char d[32];

		snprintf(buf, len, "%s", det_duration_text(*(const uint64_t *)(const void *)field, d));
		break;
	}
	case K_RATIO:
	case K_REAL:
		snprintf(buf, len, "%g", *(const double *)(const void *)field);
		break;
	case K_PORTS: {
		const struct mm_detect_ports *p = (const void *)field;

		for (size_t i = 0; i < p->n && used + 8 < len; i++)
			used += (size_t)snprintf(buf + used, len - used, "%s%u", i ? "," : "", p->port[i]);
		break;
	}
	case K_PREFIXES:
		for (size_t i = 0; i < c->n_domestic && used + MM_PREFIX_STRLEN + 2 < len; i++) {
			char p[MM_PREFIX_STRLEN];

			used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "",
						 mm_prefix_format(&c->domestic[i], p));
		}
		break;
	case K_DETECTORS:
		for (unsigned d = 0; d < MM_DET_COUNT; d++)
			if (c->enabled & (1u << d))
				used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? "," : "",
							 mm_detector_name(d));
		break;
	}
}

void mm_detect_config_each(const struct mm_detect_config *c,
			   void (*fn)(void *ctx, const char *key, const char *value, const char *doc),
			   void *ctx)
{
	char value[1024];

	for (size_t i = 0; i < N_KEYS; i++) {
		format_value(c, &keys[i], value, sizeof(value));
		fn(ctx, keys[i].key, value, keys[i].doc);
	}
}

int mm_detect_config_load(struct mm_detect_config *c, const struct mm_config *conf)
{
	for (size_t i = 0; i < mm_config_count(conf); i++) {
		const struct mm_config_entry *e = mm_config_at(conf, i);

		if (strcmp(e->section, "detect") == 0 && mm_detect_config_set(c, e->key, e->value) < 0)
			return mm_config_fail(conf, e, MM_EINVAL, "%s", mm_last_error());
	}
	return 0;
}
