/*
 * `mamori alerts`: lists stored alerts (<data>/alerts/, detect.h) by time,
 * detector and severity, as a table for people or NDJSON for a SIEM.
 */
#include "cli/cli.h"
#include "cli/cli_guard.h"

#include "mamori/detect.h"
#include "mamori/query.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"

#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori alerts - list stored alerts\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori alerts [-R DATA] [--since T] [--until T] [--detector D,...]\n"
	"                  [--severity S] [--format table|ndjson]\n"
	"\n"
	"DESCRIPTION\n"
	"    Prints the alerts that 'mamori detect' (or a streaming detector)\n"
	"    appended to DATA/alerts/, oldest day first, each alert id once (a\n"
	"    range analysed twice stores its alerts twice). A line whose checksum\n"
	"    fails (torn by a crash, or altered) is skipped and named on stderr.\n"
	"\n"
	"OPTIONS\n"
	"    -R, --store DATA\n"
	"        The data directory. Default: $MAMORI_DATA, else ./mamori-data.\n"
	"    --since T, --until T\n"
	"        Alerts whose [first, last] overlaps [T, T'] (RFC 3339, @EPOCH, -1h).\n"
	"    --detector D,...\n"
	"        Only these detectors (intel, scan, beacon, ddos, bruteforce, exfil).\n"
	"    --severity S\n"
	"        Only alerts of severity S or above (low, medium, high, critical).\n"
	"    --format table|ndjson\n"
	"        table: aligned lines for people (default). ndjson: one JSON object\n"
	"        per alert with stable field names and RFC 3339 times, for SIEMs\n"
	"        (docs/detect.md, \"Alert format\").\n"
	"    --authz ID\n"
	"        Alerts name addresses a person then reads, so listing them is a\n"
	"        record-level query under an analyze authorization (docs/oversight.md);\n"
	"        only alerts its scope covers are shown. Default: any in force.\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   success (also when no alert matches)\n"
	"    1   usage error\n"
	"    2   no alerts directory in DATA\n"
	"    3   I/O error\n"
	"    4   refused by oversight\n"
	"\n"
	"EXAMPLES\n"
	"    mamori alerts --since -24h --severity high\n"
	"    mamori alerts --detector scan,bruteforce --format ndjson\n";

enum { OPT_SINCE = 256, OPT_UNTIL, OPT_DETECTOR, OPT_SEVERITY, OPT_FORMAT, OPT_AUTHZ };

static const struct option long_options[] = {
	{ "store", required_argument, NULL, 'R' },
	{ "since", required_argument, NULL, OPT_SINCE },
	{ "until", required_argument, NULL, OPT_UNTIL },
	{ "detector", required_argument, NULL, OPT_DETECTOR },
	{ "severity", required_argument, NULL, OPT_SEVERITY },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "authz", required_argument, NULL, OPT_AUTHZ },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct print_ctx {
	bool ndjson;
	uint64_t n, out_of_scope;
	int rc;
	const struct mm_query *scope; /* the guard's narrowing; alerts outside it are not shown */
};

/* An alert as the flow its endpoints, port and times describe, for the scope's filter. */
static bool in_scope(const struct print_ctx *p, const struct mm_alert *a)
{
	struct mm_flow f = { .src = a->src.addr, .dst = a->dst.addr, .first_ns = a->first_ns,
			     .last_ns = a->last_ns, .proto = a->proto, .dst_port = a->port };

	return mm_query_match(p->scope, &f);
}

static void print_alert(void *ctx, const struct mm_alert *a)
{
	struct print_ctx *p = ctx;
	char line[MM_ALERT_JSON_MAX];
	int n;

	if (!in_scope(p, a)) {
		p->out_of_scope++;
		return;
	}
	if (!p->ndjson) {
		mm_alert_print_table(stdout, a, p->n++ == 0);
		return;
	}
	n = mm_alert_to_json(a, line, sizeof(line));
	if (n < 0)
		p->rc = n;
	else
		printf("%.*s\n", n, line);
	p->n++;
}

static void print_bad(void *ctx, const char *message)
{
	(void)ctx;
	fprintf(stderr, "mamori alerts: skipped %s\n", message);
}

/* The same list syntax as the [detect] "detectors" key. */
static int parse_detectors(const char *text, unsigned *mask)
{
	struct mm_detect_config c;

	mm_detect_config_default(&c);
	if (mm_detect_config_set(&c, "detectors", text) < 0)
		return cli_usage_error("alerts", "--detector: %s", mm_last_error());
	*mask = c.enabled;
	return 0;
}

/*
 * Alerts name addresses a person then reads: the guard treats the listing
 * as a record-level query and shows only alerts its scope covers.
 */
static int show_guarded(const char *dir, const char *authz, const struct mm_alert_filter *f, struct print_ctx *p)
{
	struct mm_alert_filter narrowed = *f;
	struct mm_alert_read_stats st;
	struct cli_guarded_scan g;
	json_t *result;
	int rc = cli_guard_scan_begin(&g, "alerts", dir, MM_ACT_QUERY, authz, f->since_ns, f->until_ns, false);

	if (rc)
		return rc;
	p->scope = g.d.query;
	narrowed.since_ns = g.d.since_ns;
	narrowed.until_ns = g.d.until_ns;
	rc = mm_alert_store_read(dir, &narrowed, print_alert, print_bad, p, &st);
	if (rc == 0)
		rc = p->rc;
	result = json_pack("{s:b,s:I}", "ok", rc == 0, "alerts", (json_int_t)p->n);
	if (cli_guard_scan_end(&g, result) != 0 && rc == 0)
		rc = MM_EIO;
	json_decref(result);
	if (rc < 0)
		return cli_fail("alerts", rc);
	fprintf(stderr,
		"mamori alerts: %" PRIu64 " alerts from %" PRIu64 " files (%" PRIu64 " outside the scope, %" PRIu64
		" duplicates, %" PRIu64 " damaged lines skipped)\n",
		p->n, st.files, p->out_of_scope, st.duplicates, st.bad_lines);
	return CLI_EXIT_OK;
}

int cmd_alerts(int argc, char **argv)
{
	struct mm_alert_filter f = { .since_ns = 0, .until_ns = UINT64_MAX };
	struct print_ctx p = { 0 };
	const char *dir = NULL, *authz = NULL;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "R:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'R': dir = optarg; break;
		case OPT_AUTHZ: authz = optarg; break;
		case OPT_SINCE:
		case OPT_UNTIL:
			if (mm_time_parse(optarg, mm_time_now_ns(), opt == OPT_SINCE ? &f.since_ns : &f.until_ns) != 0)
				return cli_usage_error("alerts", "%s: '%s' is not a time", opt == OPT_SINCE ? "--since" : "--until",
						       optarg);
			break;
		case OPT_DETECTOR:
			if (parse_detectors(optarg, &f.detectors))
				return CLI_EXIT_USAGE;
			break;
		case OPT_SEVERITY:
			if (mm_severity_parse(optarg, &f.min_severity) < 0)
				return cli_usage_error("alerts", "--severity: %s", mm_last_error());
			break;
		case OPT_FORMAT:
			if (strcmp(optarg, "table") != 0 && strcmp(optarg, "ndjson") != 0)
				return cli_usage_error("alerts", "--format: '%s' is not table or ndjson", optarg);
			p.ndjson = strcmp(optarg, "ndjson") == 0;
			break;
		case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
		default: return cli_usage_error("alerts", "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage_error("alerts", "unexpected argument '%s'", argv[optind]);
	return show_guarded(dir ? dir : mm_store_default_dir(), authz, &f, &p);
}
