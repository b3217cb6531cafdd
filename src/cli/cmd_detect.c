/*
 * `mamori detect`: runs the detectors in batch over a stored time range
 * (detect.h), stores the alerts in <data>/alerts/, prints them and, with
 * --evaluate, scores them against a ground-truth file. Flows are read in
 * slices of export time (last_ns) and fed in that order, which is the
 * order a streaming run sees, so both raise the same alerts.
 */
#include "cli/cli.h"
#include "cli/cli_guard.h"

#include "mamori/config.h"
#include "mamori/detect.h"
#include "mamori/intel.h"
#include "mamori/query.h"
#include "mamori/query_exec.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori detect - run the detectors over stored flows\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori detect [-R DATA] [--since T] [--until T] [--detector D,...]\n"
	"                  [--intel DIR] [--config FILE] [--set KEY=VALUE]...\n"
	"                  [--evaluate TRUTH.json] [--no-store] [--format table|ndjson]\n"
	"\n"
	"DESCRIPTION\n"
	"    Reads the flows of the store whose export time (last) falls in the\n"
	"    range, in export-time order, through the detectors intel, scan,\n"
	"    beacon, ddos, bruteforce and exfil (docs/detect.md), appends every\n"
	"    alert to DATA/alerts/ (see 'mamori alerts') and prints them. The\n"
	"    detectors' clock is the flows' own time, so the alerts are the ones\n"
	"    a streaming run over the same flows raises.\n"
	"\n"
	"OPTIONS\n"
	"    -R, --store DATA\n"
	"        The data directory. Default: $MAMORI_DATA, else ./mamori-data.\n"
	"    --since T, --until T\n"
	"        Flows whose export time is in [T, T'] (RFC 3339, @EPOCH, -1h, now).\n"
	"        Default: everything stored.\n"
	"    --detector D,...\n"
	"        Only these detectors (intel, scan, beacon, ddos, bruteforce, exfil).\n"
	"    --intel DIR\n"
	"        Indicators for the intel detector. Default: DATA/intel (see\n"
	"        'mamori intel'); no compiled set there means intel raises nothing.\n"
	"    --config FILE\n"
	"        mamori.conf whose [detect] section sets thresholds (keys as for\n"
	"        --set). Default: $MAMORI_CONF, else DATA/mamori.conf if present.\n"
	"    --set KEY=VALUE\n"
	"        One threshold, after the config file: scan.min_hosts=128,\n"
	"        domestic=10.0.0.0/8. 'mamori detect --keys' lists every key.\n"
	"    --keys\n"
	"        Print every key with its default and meaning, and exit.\n"
	"    --evaluate TRUTH.json\n"
	"        Also print precision, recall and time to detect per detector\n"
	"        against the ground truth of 'mamori synth --truth'. When no\n"
	"        domestic prefixes are configured, the truth file's are used.\n"
	"    --no-store\n"
	"        Do not append the alerts to DATA/alerts/.\n"
	"    --authz ID\n"
	"        The authorization to run under: an analyze authorization marked\n"
	"        automated (docs/oversight.md). Default: any in force that covers the\n"
	"        range; the flows read are narrowed to its scope. In lab mode (no\n"
	"        panel) detection runs on everything and says so.\n"
	"    --format table|ndjson\n"
	"        table: one line per alert for people (default). ndjson: the stored\n"
	"        form, one JSON object per alert (docs/detect.md, \"Alert format\").\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   success (whatever the evaluation says: it is printed, not judged)\n"
	"    1   usage error\n"
	"    2   bad input: no store in DATA, bad truth or config file\n"
	"    3   I/O or internal error\n"
	"    4   refused by oversight: no automated analyze authorization covers it\n"
	"\n"
	"EXAMPLES\n"
	"    mamori detect --since -24h\n"
	"    mamori detect -R demo-data --evaluate truth.json --no-store\n"
	"    mamori detect --detector scan,bruteforce --set scan.min_hosts=32\n";

/* Export time covered by one read of the store: bounds the flows held at once. */
#define SLICE_NS (900 * MM_NS_PER_SEC)
#define FEED_BATCH 4096

enum { OPT_SINCE = 256, OPT_UNTIL, OPT_DETECTOR, OPT_INTEL, OPT_CONFIG, OPT_SET, OPT_KEYS, OPT_EVALUATE, OPT_AUTHZ,
       OPT_NO_STORE, OPT_FORMAT };

static const struct option long_options[] = {
	{ "store", required_argument, NULL, 'R' },
	{ "since", required_argument, NULL, OPT_SINCE },
	{ "until", required_argument, NULL, OPT_UNTIL },
	{ "detector", required_argument, NULL, OPT_DETECTOR },
	{ "intel", required_argument, NULL, OPT_INTEL },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "set", required_argument, NULL, OPT_SET },
	{ "keys", no_argument, NULL, OPT_KEYS },
	{ "evaluate", required_argument, NULL, OPT_EVALUATE },
	{ "authz", required_argument, NULL, OPT_AUTHZ },
	{ "no-store", no_argument, NULL, OPT_NO_STORE },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct detect_run {
	const char *dir, *intel_dir, *config_path, *truth, *authz;
	uint64_t since_ns, until_ns;
	const struct mm_query *scope; /* the guard's narrowing of "every flow" */
	bool no_store, ndjson;
	struct mm_detect_config cfg;
	/* Flows of one slice, then the alerts of the run. */
	struct mm_flow *flows;
	size_t n_flows, cap_flows;
	uint64_t slice_lo, slice_hi;
	struct mm_alert *alerts;
	size_t n_alerts, cap_alerts;
	int alert_rc;
};

static void on_alert(void *ctx, const struct mm_alert *a)
{
	struct detect_run *r = ctx;

	if (r->n_alerts == r->cap_alerts) {
		size_t cap = r->cap_alerts ? r->cap_alerts * 2 : 64;
		struct mm_alert *v = realloc(r->alerts, cap * sizeof(*v));

		if (!v) {
			r->alert_rc = mm_fail(MM_ENOMEM, "detect: %zu alerts", cap);
			return;
		}
		r->alerts = v;
		r->cap_alerts = cap;
	}
	r->alerts[r->n_alerts++] = *a;
}

static int collect_slice(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct detect_run *r = ctx;

	for (size_t i = 0; i < n; i++) {
		const struct mm_flow *f = &flows[i];

		if (f->last_ns < r->slice_lo || f->last_ns > r->slice_hi)
			continue;
		if (r->n_flows == r->cap_flows) {
			size_t cap = r->cap_flows ? r->cap_flows * 2 : 65536;
			struct mm_flow *v = realloc(r->flows, cap * sizeof(*v));

			if (!v)
				return mm_fail(MM_ENOMEM, "detect: %zu flows of one slice", cap);
			r->flows = v;
			r->cap_flows = cap;
		}
		r->flows[r->n_flows++] = *f;
	}
	return 0;
}

static int cmp_last(const void *a, const void *b)
{
	const struct mm_flow *x = a, *y = b;

	return (x->last_ns > y->last_ns) - (x->last_ns < y->last_ns);
}

/* Feeds every stored flow with last_ns in [since, until], slice by slice in export order. */
static int feed_store(struct detect_run *r, struct mm_detect *det)
{
	struct mm_store *st = NULL;
	struct mm_query_exec_options opt;
	uint64_t lo = UINT64_MAX, hi = 0;
	int rc = mm_store_open(&st, r->dir);

	if (rc == MM_ENOENT)
		return mm_fail(MM_ENOENT, "%s: no store here (no catalog)", r->dir);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < mm_store_segment_count(st); i++) {
		struct mm_store_segment_info info;

		mm_store_segment_info(st, i, &info);
		if (info.n_rows == 0)
			continue;
		lo = info.min_first_ns < lo ? info.min_first_ns : lo;
		hi = info.max_last_ns > hi ? info.max_last_ns : hi;
	}
	if (r->since_ns > lo)
		lo = r->since_ns;
	if (r->until_ns < hi)
		hi = r->until_ns;
	mm_query_exec_options_default(&opt);
	for (uint64_t t = lo; lo <= hi && rc == 0; t += SLICE_NS) {
		r->slice_lo = t;
		r->slice_hi = t + SLICE_NS - 1 < hi ? t + SLICE_NS - 1 : hi;
		/* Every flow that ends in the slice overlaps it. */
		opt.since_ns = r->slice_lo;
		opt.until_ns = r->slice_hi;
		r->n_flows = 0;
		rc = mm_query_list(st, r->scope, &opt, collect_slice, r, NULL);
		if (rc < 0)
			break;
		qsort(r->flows, r->n_flows, sizeof(*r->flows), cmp_last);
		for (size_t i = 0; i < r->n_flows && rc == 0; i += FEED_BATCH)
			rc = mm_detect_feed(det, r->flows + i, r->n_flows - i < FEED_BATCH ? r->n_flows - i : FEED_BATCH);
		if (r->slice_hi >= hi)
			break;
	}
	if (rc == 0)
		rc = mm_detect_flush(det);
	mm_store_free(st);
	return rc;
}

/* The [detect] section of the config file, each key through mm_detect_config_set. */
static int apply_config(struct detect_run *r)
{
	struct mm_config *c = NULL;
	int rc = mm_config_find(r->config_path, r->dir, &c);

	if (rc == 0)
		rc = mm_detect_config_load(&r->cfg, c);
	mm_config_free(c);
	return rc;
}

/* The truth file's "domestic" prefixes, when none are configured. */
static int domestic_from_truth(struct detect_run *r)
{
	json_error_t err;
	json_t *root, *v;
	size_t i;
	int rc = 0;

	if (r->cfg.n_domestic || r->cfg.is_domestic)
		return 0;
	root = json_load_file(r->truth, 0, &err);
	if (!root)
		return mm_fail(MM_EFORMAT, "%s:%d: %s", r->truth, err.line, err.text);
	json_array_foreach(json_object_get(root, "domestic"), i, v) {
		if (r->cfg.n_domestic >= MM_DETECT_MAX_DOMESTIC || !json_is_string(v) ||
		    mm_prefix_parse(&r->cfg.domestic[r->cfg.n_domestic], json_string_value(v), true) < 0) {
			rc = mm_fail(MM_EFORMAT, "%s: domestic entry %zu is not a prefix", r->truth, i);
			break;
		}
		r->cfg.n_domestic++;
	}
	json_decref(root);
	return rc;
}

static int store_and_print(struct detect_run *r)
{
	struct mm_alert_store *as = NULL;
	char line[MM_ALERT_JSON_MAX];
	int rc = 0;

	if (!r->no_store && (rc = mm_alert_store_open(&as, r->dir)) < 0)
		return rc;
	for (size_t i = 0; i < r->n_alerts && rc == 0; i++) {
		if (as)
			rc = mm_alert_store_append(as, &r->alerts[i]);
		if (rc == 0 && r->ndjson) {
			int n = mm_alert_to_json(&r->alerts[i], line, sizeof(line));

			if ((rc = n < 0 ? n : 0) == 0)
				printf("%.*s\n", n, line);
		} else if (rc == 0) {
			mm_alert_print_table(stdout, &r->alerts[i], i == 0);
		}
	}
	mm_alert_store_close(as);
	return rc;
}

static void print_key(void *ctx, const char *key, const char *value, const char *doc)
{
	(void)ctx;
	printf("%-28s %-24s %s\n", key, value[0] ? value : "(none)", doc);
}

static int run(struct detect_run *r)
{
	struct mm_detect *det = NULL;
	struct mm_intel *intel = NULL;
	struct mm_detect_stats st;
	char intel_dir[4096];
	int rc;

	if (!r->intel_dir) {
		snprintf(intel_dir, sizeof(intel_dir), "%s/intel", r->dir);
		r->intel_dir = intel_dir;
	}
	if ((r->cfg.enabled & (1u << MM_DET_INTEL)) && (rc = mm_intel_open(r->intel_dir, &intel)) < 0)
		goto out;
	r->cfg.intel = intel;
	if ((rc = mm_detect_new(&det, &r->cfg, on_alert, r)) < 0)
		goto out;
	if ((rc = feed_store(r, det)) < 0 || (rc = r->alert_rc) < 0)
		goto out;
	if ((rc = store_and_print(r)) < 0)
		goto out;
	mm_detect_stats(det, &st);
	fprintf(stderr,
		"mamori detect: %" PRIu64 " flows, %zu alerts (intel %" PRIu64 ", scan %" PRIu64 ", beacon %" PRIu64
		", ddos %" PRIu64 ", bruteforce %" PRIu64 ", exfil %" PRIu64 "); %" PRIu64 " late, %" PRIu64
		" state evictions, %.1f MiB of state\n",
		st.flows_processed, r->n_alerts, st.alerts[MM_DET_INTEL], st.alerts[MM_DET_SCAN],
		st.alerts[MM_DET_BEACON], st.alerts[MM_DET_DDOS], st.alerts[MM_DET_BRUTEFORCE], st.alerts[MM_DET_EXFIL],
		st.flows_late,
		st.evictions[0] + st.evictions[1] + st.evictions[2] + st.evictions[3] + st.evictions[4] +
			st.evictions[5],
		(double)st.memory_used / (1 << 20));
	if (r->truth) {
		struct mm_eval ev;

		if ((rc = mm_detect_evaluate(r->truth, r->alerts, r->n_alerts, &ev)) < 0)
			goto out;
		printf("\n");
		mm_eval_print(stdout, &ev);
	}
out:
	mm_detect_free(det);
	mm_intel_close(intel);
	return rc;
}

static int parse_time(const char *option, const char *text, uint64_t *out)
{
	if (mm_time_parse(text, mm_time_now_ns(), out) != 0)
		return cli_usage_error("detect", "%s: '%s' is not a time (2026-01-01T09:30Z, @1767225600, -1h, now)",
				       option, text);
	return 0;
}

/*
 * Detection reads every flow in range, so it runs only under an analyze
 * authorization marked automated (in lab mode: allowed and flagged), on
 * the flows and times that authorization's scope leaves.
 */
static int run_guarded(struct detect_run *r)
{
	struct cli_guarded_scan g;
	json_t *result;
	int rc = cli_guard_scan_begin(&g, "detect", r->dir, MM_ACT_ANALYZE, r->authz, r->since_ns, r->until_ns, false);

	if (rc)
		return rc;
	r->scope = g.d.query;
	r->since_ns = g.d.since_ns;
	r->until_ns = g.d.until_ns;
	rc = run(r);
	result = json_pack("{s:b,s:I}", "ok", rc == 0, "alerts", (json_int_t)r->n_alerts);
	if (cli_guard_scan_end(&g, result) != 0 && rc == 0)
		rc = MM_EIO;
	json_decref(result);
	return rc < 0 ? cli_fail("detect", rc) : CLI_EXIT_OK;
}

int cmd_detect(int argc, char **argv)
{
	struct detect_run r = { .until_ns = UINT64_MAX };
	const char *detectors = NULL, *sets[64];
	size_t n_sets = 0;
	bool keys = false;
	int opt, rc;

	mm_detect_config_default(&r.cfg);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "R:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'R': r.dir = optarg; break;
		case OPT_SINCE:
			if (parse_time("--since", optarg, &r.since_ns))
				return CLI_EXIT_USAGE;
			break;
		case OPT_UNTIL:
			if (parse_time("--until", optarg, &r.until_ns))
				return CLI_EXIT_USAGE;
			break;
		case OPT_DETECTOR: detectors = optarg; break;
		case OPT_INTEL: r.intel_dir = optarg; break;
		case OPT_CONFIG: r.config_path = optarg; break;
		case OPT_AUTHZ: r.authz = optarg; break;
		case OPT_SET:
			if (n_sets == sizeof(sets) / sizeof(sets[0]))
				return cli_usage_error("detect", "at most %zu --set options", n_sets);
			sets[n_sets++] = optarg;
			break;
		case OPT_KEYS: keys = true; break;
		case OPT_EVALUATE: r.truth = optarg; break;
		case OPT_NO_STORE: r.no_store = true; break;
		case OPT_FORMAT:
			if (strcmp(optarg, "table") != 0 && strcmp(optarg, "ndjson") != 0)
				return cli_usage_error("detect", "--format: '%s' is not table or ndjson", optarg);
			r.ndjson = strcmp(optarg, "ndjson") == 0;
			break;
		case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("detect", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("detect", "unexpected argument '%s'", argv[optind]);
	if (!r.dir)
		r.dir = mm_store_default_dir();
	if (keys) {
		mm_detect_config_each(&r.cfg, print_key, NULL);
		return CLI_EXIT_OK;
	}
	if ((rc = apply_config(&r)) < 0)
		return cli_fail("detect", rc);
	for (size_t i = 0; i < n_sets; i++) {
		char key[128];
		const char *eq = strchr(sets[i], '=');

		if (!eq || (size_t)(eq - sets[i]) >= sizeof(key))
			return cli_usage_error("detect", "--set: '%s' is not KEY=VALUE", sets[i]);
		memcpy(key, sets[i], (size_t)(eq - sets[i]));
		key[eq - sets[i]] = '\0';
		if (mm_detect_config_set(&r.cfg, key, eq + 1) < 0)
			return cli_usage_error("detect", "--set: %s", mm_last_error());
	}
	if (detectors && mm_detect_config_set(&r.cfg, "detectors", detectors) < 0)
		return cli_usage_error("detect", "--detector: %s", mm_last_error());
	if (r.truth && (rc = domestic_from_truth(&r)) < 0)
		return cli_fail("detect", rc);
	rc = run_guarded(&r);
	free(r.flows);
	free(r.alerts);
	return rc;
}
