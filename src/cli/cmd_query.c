/*
 * `mamori query`: parses a filter and an aggregation spec from the command
 * line, runs them over the store with mm_query_list / mm_query_aggregate
 * (query_exec.h) and prints flows or rows. A filter that does not parse is
 * echoed with a caret under the column where it went wrong.
 */
#include "cli/cli.h"
#include "cli/cli_guard.h"

#include "mamori/flow_output.h"
#include "mamori/query.h"
#include "mamori/query_exec.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori query - filter and aggregate stored flows\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori query [OPTIONS] [FILTER...]\n"
	"    mamori query [OPTIONS] --top N KEYS [--by flows|packets|bytes] [FILTER...]\n"
	"    mamori query [OPTIONS] --group-by KEYS | --stats | --every DURATION [FILTER...]\n"
	"\n"
	"DESCRIPTION\n"
	"    Reads the flow store (see STORE) and prints the flows that match FILTER,\n"
	"    or aggregates them. FILTER is the query language of docs/query.md, in\n"
	"    nfdump's style: 'proto tcp and dst port 443 and src net 10.0.0.0/8'.\n"
	"    Several FILTER arguments are joined with spaces; no FILTER matches\n"
	"    every flow. Flows are listed in store order (by start time within each\n"
	"    segment, segments in the order they were written), the same on every run.\n"
	"\n"
	"    The query runs on every core, decodes only the columns it reads, and\n"
	"    skips chunks of 65536 flows whose min/max zone maps rule them out, so a\n"
	"    selective time range or address touches little of the store.\n"
	"\n"
	"OPTIONS\n"
	"    -R, --store DIR\n"
	"        The store to read. Default: $MAMORI_DATA, else ./mamori-data, the same\n"
	"        default 'mamori meter', 'collect' and 'store' use.\n"
	"    --since TIME, --until TIME\n"
	"        Only flows overlapping [since, until]: started at or before until and\n"
	"        ended at or after since. TIME is absolute (2026-01-01, 2026-01-01T09:30Z,\n"
	"        2026-01-01T09:30:00+09:00, @1767225600) or relative to now (-1h, -30m,\n"
	"        now).\n"
	"    --top N KEYS\n"
	"        The N largest groups by KEYS (per time bucket with --every), ordered\n"
	"        by --by. KEYS is a comma-separated list of srcip, dstip, srcnet/LEN,\n"
	"        dstnet/LEN, srcport, dstport, proto, srcas, dstas, srccountry,\n"
	"        dstcountry; a net key keeps LEN bits of an IPv6 address and\n"
	"        min(LEN, 32) of an IPv4 one, or takes /V4LEN/V6LEN.\n"
	"    --by flows|packets|bytes\n"
	"        What --top and the row order rank by. Default: flows.\n"
	"    --group-by KEYS\n"
	"        Every group by KEYS, largest first, with flows, packets and bytes.\n"
	"    --distinct KEYS\n"
	"        Also count the distinct values of each of KEYS per row (exact\n"
	"        counts, not estimates). Up to 4 keys.\n"
	"    --every DURATION\n"
	"        A time series: rows per bucket of DURATION (5m, 1h, ...) of the\n"
	"        flows' start times, buckets in time order.\n"
	"    --stats\n"
	"        One row of totals (flows, packets, bytes) for the matching flows.\n"
	"    --scale-sampled\n"
	"        Aggregations count a sampled flow's packets and bytes times its\n"
	"        sampling rate (1-in-N, from the exporter): estimates of the traffic.\n"
	"        Flow counts are never scaled. Default: the sampled counts as stored.\n"
	"    --limit N\n"
	"        List at most N flows (the first N in store order).\n"
	"    --format table|csv|ndjson|zeek\n"
	"        table: aligned columns for people. csv: RFC 4180 with a header.\n"
	"        ndjson: one JSON object per line. zeek: conn.log TSV (flows only).\n"
	"        Default: table on a terminal, else ndjson.\n"
	"    -o, --output FILE\n"
	"        Write to FILE (published by rename when the query succeeds) instead\n"
	"        of standard output.\n"
	"    --threads N\n"
	"        Worker threads, 1..256. Default: one per online CPU.\n"
	"    --max-memory SIZE\n"
	"        Cap on aggregation state (groups and distinct values): a number with\n"
	"        K, M or G (1024-based). A query that needs more stops with an error\n"
	"        instead of exhausting the machine. Default: 1G.\n"
	"    --authz ID\n"
	"        Run under this authorization (docs/oversight.md). Without it, the\n"
	"        first authorization in force that covers the query is used. Under a\n"
	"        panel the query is narrowed to the authorization's scope (its\n"
	"        prefixes, sensors, ASNs, countries and data time range are ANDed in)\n"
	"        and refused, exit status 4, when none covers it. Without a panel\n"
	"        (lab mode) every query runs, and says so on standard error. Either\n"
	"        way the query as executed and the count returned are audited.\n"
	"    -v, --verbose\n"
	"        Print what the scan touched to standard error: segments, chunks\n"
	"        skipped by zone maps, rows scanned and matched, threads.\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"STORE\n"
	"    'mamori meter' and 'mamori collect' write flows into the store; a query\n"
	"    sees every segment published when it starts.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   success (also when nothing matched)\n"
	"    1   usage error: unknown option, bad value, or a filter that does not\n"
	"        parse (printed with a caret under the column where it went wrong)\n"
	"    2   no store in DIR, or a damaged one (the file and chunk are named)\n"
	"    3   I/O error, internal error, or the query reached --max-memory\n"
	"    4   refused by oversight: no authorization covers the query\n"
	"\n"
	"EXAMPLES\n"
	"    mamori query 'dst port 22 and src flags S and not src flags A'\n"
	"    mamori query --since -1h --top 10 srcip --by bytes 'proto udp'\n"
	"    mamori query --group-by dstport,proto --distinct srcip 'dst net 192.0.2.0/24'\n"
	"    mamori query --every 5m --stats --format csv -o series.csv\n"
	"    mamori query --limit 20 --format ndjson 'host 2001:db8::7'\n";

enum {
	OPT_SINCE = 256,
	OPT_UNTIL,
	OPT_TOP,
	OPT_BY,
	OPT_GROUP_BY,
	OPT_DISTINCT,
	OPT_EVERY,
	OPT_SCALE_SAMPLED,
	OPT_STATS,
	OPT_LIMIT,
	OPT_FORMAT,
	OPT_THREADS,
	OPT_MAX_MEMORY,
	OPT_AUTHZ,
};

static const struct option long_options[] = {
	{ "store", required_argument, NULL, 'R' },
	{ "since", required_argument, NULL, OPT_SINCE },
	{ "until", required_argument, NULL, OPT_UNTIL },
	{ "top", required_argument, NULL, OPT_TOP },
	{ "by", required_argument, NULL, OPT_BY },
	{ "group-by", required_argument, NULL, OPT_GROUP_BY },
	{ "distinct", required_argument, NULL, OPT_DISTINCT },
	{ "every", required_argument, NULL, OPT_EVERY },
	{ "scale-sampled", no_argument, NULL, OPT_SCALE_SAMPLED },
	{ "stats", no_argument, NULL, OPT_STATS },
	{ "limit", required_argument, NULL, OPT_LIMIT },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "output", required_argument, NULL, 'o' },
	{ "threads", required_argument, NULL, OPT_THREADS },
	{ "max-memory", required_argument, NULL, OPT_MAX_MEMORY },
	{ "authz", required_argument, NULL, OPT_AUTHZ },
	{ "verbose", no_argument, NULL, 'v' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct query_args {
	const char *dir;
	const char *output;
	struct mm_query_exec_options exec;
	struct mm_qagg agg;
	bool aggregate;   /* any of --top, --group-by, --distinct, --every, --stats */
	bool keys_given;  /* --top or --group-by */
	bool by_given;
	enum mm_output_format format;
	bool format_set;
	bool verbose;
	const char *authz;
	uint64_t results; /* flows listed or rows written, for the audit log */
	struct mm_guard_decision *guard; /* nothing is output before its entry is durable */
};

/* "512M", "2G", "65536": bytes, 1024-based suffixes; 0 or -1. */
static int parse_size(const char *text, size_t *out)
{
	static const char suffixes[] = "KMG";
	char *end;
	unsigned long long v;
	const char *s;

	if (*text < '0' || *text > '9')
		return -1;
	v = strtoull(text, &end, 10);
	if (*end != '\0') {
		s = strchr(suffixes, *end);
		if (!s || end[1] != '\0' || v > (SIZE_MAX >> (10 * (s - suffixes + 1))))
			return -1;
		v <<= 10 * (s - suffixes + 1);
	}
	if (v == 0 || v > SIZE_MAX)
		return -1;
	*out = (size_t)v;
	return 0;
}

static int parse_time_option(const char *option, const char *text, uint64_t *out)
{
	if (mm_time_parse(text, mm_time_now_ns(), out) != 0)
		return cli_usage_error("query", "%s: '%s' is not a time (2026-01-01T09:30Z, @1767225600, -1h, now)",
				       option, text);
	return 0;
}

static int parse_keys(const char *option, const char *text, struct mm_qkey *keys, size_t cap, size_t *n)
{
	if (mm_qagg_parse_keys(text, keys, cap, n) != 0)
		return cli_usage_error("query", "%s: %s", option, mm_last_error());
	return 0;
}

/* --top N KEYS takes two words: N is optarg, KEYS the next argument. */
static int take_top(struct query_args *a, int argc, char **argv)
{
	if (cli_parse_count("query", "--top", optarg, 1, UINT32_MAX, &a->agg.top_n) != 0)
		return CLI_EXIT_USAGE;
	if (optind >= argc || argv[optind][0] == '-')
		return cli_usage_error("query", "--top %s needs KEYS after it, e.g. --top 10 srcip", optarg);
	return parse_keys("--top", argv[optind++], a->agg.keys, MM_QAGG_MAX_KEYS, &a->agg.n_keys);
}

static int apply_option(struct query_args *a, int opt, int argc, char **argv)
{
	uint64_t v;

	switch (opt) {
	case 'R': a->dir = optarg; return 0;
	case 'o': a->output = optarg; return 0;
	case 'v': a->verbose = true; return 0;
	case OPT_AUTHZ: a->authz = optarg; return 0;
	case OPT_SINCE: return parse_time_option("--since", optarg, &a->exec.since_ns);
	case OPT_UNTIL: return parse_time_option("--until", optarg, &a->exec.until_ns);
	case OPT_TOP:
	case OPT_GROUP_BY:
		if (a->keys_given)
			return cli_usage_error("query", "give one of --top and --group-by, once");
		a->keys_given = a->aggregate = true;
		if (opt == OPT_TOP)
			return take_top(a, argc, argv);
		return parse_keys("--group-by", optarg, a->agg.keys, MM_QAGG_MAX_KEYS, &a->agg.n_keys);
	case OPT_BY:
		a->by_given = true;
		if (mm_qagg_parse_metric(optarg, &a->agg.order_by) != 0)
			return cli_usage_error("query", "--by: '%s' is not one of flows, packets, bytes", optarg);
		return 0;
	case OPT_DISTINCT:
		a->aggregate = true;
		return parse_keys("--distinct", optarg, a->agg.distinct, MM_QAGG_MAX_DISTINCT, &a->agg.n_distinct);
	case OPT_EVERY:
		a->aggregate = true;
		if (cli_parse_duration("query", "--every", optarg, &a->agg.every_ns) != 0)
			return CLI_EXIT_USAGE;
		if (a->agg.every_ns == 0)
			return cli_usage_error("query", "--every: the bucket must be longer than 0");
		return 0;
	case OPT_STATS: a->aggregate = true; return 0;
	case OPT_SCALE_SAMPLED: a->agg.scale_sampled = true; return 0;
	case OPT_LIMIT: return cli_parse_count("query", "--limit", optarg, 1, UINT64_MAX, &a->exec.limit);
	case OPT_FORMAT:
		a->format_set = true;
		if (mm_output_format_parse(optarg, &a->format) != 0)
			return cli_usage_error("query", "--format: '%s' is not one of table, csv, ndjson, zeek", optarg);
		return 0;
	case OPT_THREADS:
		if (cli_parse_count("query", "--threads", optarg, 1, 256, &v) != 0)
			return CLI_EXIT_USAGE;
		a->exec.n_threads = (unsigned)v;
		return 0;
	case OPT_MAX_MEMORY:
		if (parse_size(optarg, &a->exec.max_memory) != 0)
			return cli_usage_error("query", "--max-memory: '%s' is not a size (e.g. 512M, 2G)", optarg);
		return 0;
	}
	return cli_usage_error("query", "unknown option");
}

/* Options that only make sense together, checked once all are read. */
static int check_combination(const struct query_args *a)
{
	if (a->exec.since_ns > a->exec.until_ns)
		return cli_usage_error("query", "--since is after --until");
	if (a->aggregate && a->exec.limit)
		return cli_usage_error("query", "--limit lists flows; with an aggregation use --top N");
	if (a->by_given && !a->aggregate)
		return cli_usage_error("query", "--by orders --top, --group-by or --every rows");
	if (a->agg.scale_sampled && !a->aggregate)
		return cli_usage_error("query", "--scale-sampled scales aggregations; a listing shows each "
						"flow's sampling_rate as stored");
	if (a->aggregate && a->format_set && a->format == MM_OUTPUT_ZEEK)
		return cli_usage_error("query", "--format zeek lists flows; rows take table, csv or ndjson");
	return 0;
}

static int parse_args(struct query_args *a, int argc, char **argv)
{
	int opt, rc;

	memset(a, 0, sizeof(*a));
	mm_query_exec_options_default(&a->exec);
	mm_qagg_init(&a->agg);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":R:o:vh", long_options, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return -1;
		}
		if (opt == '?' && optopt)
			return cli_usage_error("query", "unknown option '-%c'", optopt);
		if (opt == '?')
			return cli_usage_error("query", "unknown option '%s'", argv[optind - 1]);
		if (opt == ':')
			return cli_usage_error("query", "option '%s' needs a value", argv[optind - 1]);
		rc = apply_option(a, opt, argc, argv);
		if (rc != 0)
			return rc;
	}
	return check_combination(a);
}

/* The FILTER words joined with spaces (malloc'd); NULL when out of memory. */
static char *join_filter(int argc, char **argv)
{
	size_t len = 1;
	char *text, *p;

	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	text = malloc(len);
	if (!text)
		return NULL;
	p = text;
	*p = '\0';
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]);
		if (i)
			*p++ = ' ';
		memcpy(p, argv[i], n);
		p += n;
		*p = '\0';
	}
	return text;
}

/* The message, then the line of the query holding the column and a caret under it. */
static void print_parse_error(const char *text, unsigned column)
{
	const char *line = text, *end;
	char caret[256];

	fprintf(stderr, "mamori query: %s\n", mm_last_error());
	if (column == 0)
		return;
	for (const char *p = text; *p && (size_t)(p - text) < column - 1; p++)
		if (*p == '\n')
			line = p + 1;
	end = strchr(line, '\n');
	if (!end)
		end = line + strlen(line);
	fprintf(stderr, "    %.*s\n    %s\n", (int)(end - line), line,
		mm_query_caret(column - (unsigned)(line - text), caret, sizeof(caret)));
}

static void print_stats(const struct mm_query_exec_stats *s)
{
	fprintf(stderr,
		"mamori query: segments %" PRIu64 " (%" PRIu64 " skipped by time), chunks %" PRIu64
		" (%" PRIu64 " skipped by zone maps, %" PRIu64 " matched whole), rows %" PRIu64
		" scanned of %" PRIu64 ", %" PRIu64 " matched, %u threads\n",
		s->segments, s->segments_skipped, s->chunks, s->chunks_skipped, s->chunks_whole,
		s->rows_scanned, s->rows_total, s->rows_matched, s->threads);
}

struct listing {
	struct mm_flow_writer *w;
	uint64_t *n;
	struct mm_guard_decision *guard;
};

static int emit_flows(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct listing *l = ctx;
	int rc = mm_guard_durable(l->guard);

	if (rc < 0)
		return rc;
	*l->n += n;
	return mm_flow_writer_write(l->w, flows, n);
}

static int run_listing(struct mm_store *st, const struct mm_query *q, struct query_args *a, FILE *fp,
		       struct mm_query_exec_stats *stats)
{
	struct mm_flow_writer *w = NULL;
	struct listing l = { NULL, &a->results, a->guard };
	int rc = mm_flow_writer_new(&w, a->format, fp);

	if (rc < 0)
		return rc;
	l.w = w;
	rc = mm_query_list(st, q, &a->exec, emit_flows, &l, stats);
	if (rc == 0)
		rc = mm_guard_durable(a->guard);
	if (rc == 0)
		rc = mm_flow_writer_finish(w);
	mm_flow_writer_free(w);
	return rc;
}

static int run_aggregation(struct mm_store *st, const struct mm_query *q, struct query_args *a, FILE *fp,
			   struct mm_query_exec_stats *stats)
{
	struct mm_qagg_row *rows = NULL;
	size_t n_rows = 0;
	int rc = mm_query_aggregate(st, q, &a->agg, &a->exec, &rows, &n_rows, stats);

	a->results = n_rows;

	if (rc == 0)
		rc = mm_guard_durable(a->guard);
	if (rc == 0)
		rc = mm_query_rows_write(fp, a->format, &a->agg, rows, n_rows);
	free(rows);
	return rc;
}

/* Runs q over the open store st (borrowed). */
static int run_query(struct query_args *a, struct mm_store *st, const struct mm_query *q)
{
	struct mm_query_exec_stats stats = { 0 };
	struct cli_output out;
	int rc, exit_code;

	rc = cli_output_open(&out, a->output);
	if (rc < 0)
		return cli_fail("query", rc);
	if (!a->format_set)
		a->format = isatty(fileno(out.fp)) ? MM_OUTPUT_TABLE : MM_OUTPUT_NDJSON;
	/* A reader that goes away (| head) then shows up as EPIPE, ending the query quietly. */
	signal(SIGPIPE, SIG_IGN);
	rc = a->aggregate ? run_aggregation(st, q, a, out.fp, &stats) : run_listing(st, q, a, out.fp, &stats);
	/* A void speculative decision: nothing went out; the caller decides again. */
	if (a->guard->unverified) {
		cli_output_close(&out, false);
		return CLI_EXIT_OK;
	}
	if (a->verbose)
		print_stats(&stats);
	if (rc == MM_EIO && !out.name && cli_stdout_reader_gone()) {
		cli_output_close(&out, false);
		return CLI_EXIT_OK;
	}
	exit_code = rc ? cli_fail("query", rc) : CLI_EXIT_OK;
	rc = cli_output_close(&out, rc == 0);
	if (rc && exit_code == CLI_EXIT_OK)
		exit_code = cli_fail("query", rc);
	return exit_code;
}

/* The guard's decision on act, then the query as it decides: 0 or an exit code (a refusal's, a failure's). */
static int decide_and_run(struct query_args *a, struct mm_store *st, const char *dir, const struct mm_guard_act *act,
			  struct mm_guard_decision *d)
{
	/* The lab notice waits for the decision to be confirmed (run_guarded): a speculation may prove void. */
	int rc = cli_guard("query", dir, act, d, true);

	if (rc)
		return rc;
	a->exec.since_ns = d->since_ns;
	a->exec.until_ns = d->until_ns;
	a->results = 0;
	a->guard = d;
	return run_query(a, st, d->query);
}

/*
 * The store must open first (a missing store is bad input, not an act);
 * then the guard decides and narrows the filter and time range; the query
 * runs as decided; then what it returned is audited. A speculative decision
 * that proves void (mm_guard_durable) released nothing: the act is decided
 * again on the ordinary path, every signature verified first, and runs as
 * that decides.
 */
static int run_guarded(struct query_args *a, const struct mm_query *q)
{
	const char *dir = a->dir ? a->dir : mm_store_default_dir();
	struct mm_guard_act act = {
		.act = MM_ACT_QUERY, .authz_id = a->authz, .query = q, .since_ns = a->exec.since_ns,
		.until_ns = a->exec.until_ns, .record_output = !a->aggregate,
		.extra_fields = a->aggregate ? mm_guard_agg_fields(&a->agg) : 0, .overlap_sync = true,
	};
	struct mm_guard_decision d = { 0 };
	struct mm_store *st = NULL;
	json_t *result;
	int rc = mm_store_open(&st, dir);

	if (rc < 0)
		return cli_fail("query", rc);
	rc = decide_and_run(a, st, dir, &act, &d);
	/* A query that failed before its first output has not waited yet; its decision may be void all the same. */
	if (d.allowed)
		mm_guard_durable(&d);
	if (d.unverified) {
		mm_guard_decision_clear(&d);
		act.overlap_sync = false;
		rc = decide_and_run(a, st, dir, &act, &d);
	}
	if (d.allowed && d.lab)
		fputs(CLI_LAB_NOTICE, stderr);
	if (d.allowed) {
		result = json_pack("{s:I, s:b}", a->aggregate ? "rows" : "flows", (json_int_t)a->results, "ok",
				   rc == CLI_EXIT_OK);
		if (mm_guard_done(dir, &act, &d, result) != 0 && rc == CLI_EXIT_OK)
			rc = cli_fail("query", MM_EIO);
		json_decref(result);
	}
	mm_guard_decision_clear(&d);
	mm_store_free(st);
	return rc;
}

int cmd_query(int argc, char **argv)
{
	struct query_args a;
	struct mm_query *q = NULL;
	unsigned column = 0;
	char *text;
	int rc;

	rc = parse_args(&a, argc, argv);
	if (rc != 0)
		return rc < 0 ? CLI_EXIT_OK : rc;
	text = join_filter(argc - optind, argv + optind);
	if (!text) {
		fprintf(stderr, "mamori query: out of memory\n");
		return CLI_EXIT_INTERNAL;
	}
	rc = mm_query_parse(text, &q, &column);
	if (rc < 0) {
		print_parse_error(text, column);
		free(text);
		return CLI_EXIT_USAGE;
	}
	free(text);
	rc = run_guarded(&a, q);
	mm_query_free(q);
	return rc;
}
