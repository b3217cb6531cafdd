/*
 * `mamori store`: stats, verify and expire for the embedded flow store
 * (docs/FORMAT.md), each a thin face over one store.h call. Also the store
 * options that every command writing flows shares (-w, --no-store,
 * --flush-rows, --flush-interval; see cli.h), so they parse and default
 * the same way everywhere.
 */
#include "cli/cli.h"

#include "mamori/policy.h"

#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori store - stats, verify and expire the flow store\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori store stats [-R DIR] [--format table|ndjson]\n"
	"    mamori store verify [-R DIR] [--format table|ndjson]\n"
	"    mamori store expire [--older-than DURATION] [-R DIR] [--config FILE]\n"
	"                        [--format table|ndjson]\n"
	"\n"
	"DESCRIPTION\n"
	"    The store is a directory of immutable, time-partitioned segment files\n"
	"    listed in a catalog (docs/FORMAT.md). 'mamori meter' and 'mamori\n"
	"    collect' write it, 'mamori query' reads it.\n"
	"\n"
	"    stats   Segments, flows, bytes on disk and per flow, the time range, and\n"
	"            per column the decoded and stored bytes and the encodings chosen.\n"
	"    verify  Checks the catalog and every listed segment: every checksum,\n"
	"            sizes, row counts, time ranges, and every chunk decoded against\n"
	"            its zone map. Each problem is printed with its file, column and\n"
	"            chunk. Files a crashed writer left behind (temporary or\n"
	"            unlisted segments) are harmless and only counted as leftovers;\n"
	"            the next writer removes them.\n"
	"    expire  Removes every whole segment whose newest flow ended more than\n"
	"            DURATION ago (first from the catalog, then the files) and names\n"
	"            what it removed. Refused while a writer has the store open.\n"
	"            The retention ceiling for flows ([retention] flows in mamori.conf,\n"
	"            default 2y) is the default DURATION and caps a longer one.\n"
	"            Each expiry is written to the audit log as a deletion receipt\n"
	"            (segments, time range, flows); it needs no authorization.\n"
	"    stats and verify read only the catalog and the segments' integrity,\n"
	"    never a flow to a person, so the oversight guard does not gate them.\n"
	"\n"
	"    stats also shows the jurisdiction policy's running totals: flows seen,\n"
	"    kept and dropped per sensor and class (docs/policy.md).\n"
	"\n"
	"OPTIONS\n"
	"    -R, --store DIR\n"
	"        The store. Default: $MAMORI_DATA, else ./mamori-data, the same\n"
	"        default 'mamori meter', 'collect' and 'query' use.\n"
	"    --format table|ndjson\n"
	"        table: lines for people (default). ndjson: one JSON object per line;\n"
	"        verify writes one {\"kind\":\"problem\"} object per problem, then a\n"
	"        {\"kind\":\"summary\"} object.\n"
	"    --older-than DURATION\n"
	"        expire: the age cut, e.g. 30d, 12h, 1w (units ns, us, ms, s, m, h,\n"
	"        d, w, y; a bare number is seconds). Default: the retention ceiling.\n"
	"    --config FILE\n"
	"        mamori.conf for the retention ceiling and sensor names. Default:\n"
	"        $MAMORI_CONF, else mamori.conf in the store's directory if present.\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   success; verify found nothing wrong\n"
	"    1   usage error (unknown subcommand or option, bad value)\n"
	"    2   verify found damage (each problem named), or there is no store in DIR\n"
	"    3   I/O error, or the store is in use by a writer (expire)\n"
	"\n"
	"EXAMPLES\n"
	"    mamori store stats\n"
	"    mamori store verify -R /var/lib/mamori\n"
	"    mamori store expire --older-than 90d\n";

/* ---- store options of the commands that write flows (cli.h) ---- */

void cli_store_options_init(struct cli_store_options *o)
{
	memset(o, 0, sizeof(*o));
	mm_store_writer_options_default(&o->writer);
}

int cli_store_option(const char *command, struct cli_store_options *o, int opt, const char *arg)
{
	switch (opt) {
	case 'w':
		if (o->disabled)
			return cli_usage_error(command, "give -w DIR or --no-store, not both");
		o->dir = arg;
		return 0;
	case CLI_OPT_NO_STORE:
		if (o->dir)
			return cli_usage_error(command, "give -w DIR or --no-store, not both");
		o->disabled = true;
		return 0;
	case CLI_OPT_FLUSH_ROWS:
		return cli_parse_count(command, "--flush-rows", arg, 1, MM_STORE_MAX_FLUSH_ROWS,
				       &o->writer.flush_rows);
	case CLI_OPT_FLUSH_INTERVAL:
		return cli_parse_duration(command, "--flush-interval", arg, &o->writer.flush_interval_ns);
	}
	return -1;
}

struct mm_store_target cli_store_target(const struct cli_store_options *o, bool use_default)
{
	struct mm_store_target t = { .dir = o->dir, .options = &o->writer };

	if (!t.dir && use_default && !o->disabled)
		t.dir = mm_store_default_dir();
	return t;
}

/* ---- mamori store ---- */

enum store_format { FORMAT_TABLE, FORMAT_NDJSON };

struct store_args {
	const char *dir;
	enum store_format format;
	bool older_set;
	uint64_t older_ns;
	const char *config;
};

enum long_only_option {
	OPT_FORMAT = 256,
	OPT_OLDER_THAN,
	OPT_CONFIG,
};

static const struct option long_options[] = {
	{ "store", required_argument, NULL, 'R' },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "older-than", required_argument, NULL, OPT_OLDER_THAN },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c < 0x20)
			fprintf(fp, "\\u%04x", c);
		else
			fputc(c, fp);
	}
	fputc('"', fp);
}

/* Fails with the library's message: no store is bad input (2), the rest I/O (3). */
static int store_fail(int status)
{
	fprintf(stderr, "mamori store: %s\n", mm_last_error());
	if (status == MM_ENOENT || status == MM_EFORMAT || status == MM_EUNSUP)
		return CLI_EXIT_INPUT;
	return CLI_EXIT_INTERNAL;
}

static int open_store(const char *dir, struct mm_store **out)
{
	int rc = mm_store_open(out, dir);

	if (rc == MM_ENOENT)
		mm_fail(MM_ENOENT, "%s: no store here (no catalog)", dir);
	return rc;
}

/* ---- stats ---- */

/* "delta 3, for 1" for one column's chunk counts by encoding. */
static void format_encodings(const struct mm_store_column_stats *cs, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned e = 0; e < 8 && used < len; e++) {
		int n;

		if (!cs->n_chunks_by_encoding[e])
			continue;
		n = snprintf(buf + used, len - used, "%s%s %" PRIu64, used ? ", " : "",
			     mm_store_encoding_name(e), cs->n_chunks_by_encoding[e]);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static void stats_table(FILE *fp, const char *dir, const struct mm_store_stats *s)
{
	char first[MM_TIME_STRLEN], last[MM_TIME_STRLEN];

	fprintf(fp, "store       %s\n", dir);
	fprintf(fp, "segments    %" PRIu64 "\n", s->segments);
	fprintf(fp, "flows       %" PRIu64 "\n", s->flows);
	fprintf(fp, "bytes       %" PRIu64 " (%.1f MiB)\n", s->file_bytes,
		(double)s->file_bytes / (1024.0 * 1024.0));
	fprintf(fp, "bytes/flow  %.1f\n", s->bytes_per_flow);
	if (s->flows)
		fprintf(fp, "time range  %s .. %s\n", mm_time_format_iso(s->min_first_ns, first),
			mm_time_format_iso(s->max_last_ns, last));
	if (!s->flows)
		return;
	fprintf(fp, "\n%-16s %14s %14s %7s  %s\n", "column", "raw-bytes", "stored-bytes", "ratio",
		"encodings (chunks)");
	for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
		const struct mm_store_column_stats *cs = &s->column[col];
		char enc[160];

		format_encodings(cs, enc, sizeof(enc));
		fprintf(fp, "%-16s %14" PRIu64 " %14" PRIu64 " %6.1fx  %s\n", mm_store_column_name(col),
			cs->raw_bytes, cs->stored_bytes,
			cs->stored_bytes ? (double)cs->raw_bytes / (double)cs->stored_bytes : 0.0, enc);
	}
}

static void stats_ndjson(FILE *fp, const char *dir, const struct mm_store_stats *s)
{
	char first[MM_TIME_STRLEN], last[MM_TIME_STRLEN];

	fputs("{\"store\":", fp);
	json_string(fp, dir);
	fprintf(fp, ",\"segments\":%" PRIu64 ",\"flows\":%" PRIu64 ",\"file_bytes\":%" PRIu64
		    ",\"bytes_per_flow\":%.3f",
		s->segments, s->flows, s->file_bytes, s->bytes_per_flow);
	if (s->flows)
		fprintf(fp, ",\"first\":\"%s\",\"last\":\"%s\",\"first_ns\":%" PRIu64 ",\"last_ns\":%" PRIu64,
			mm_time_format_iso(s->min_first_ns, first), mm_time_format_iso(s->max_last_ns, last),
			s->min_first_ns, s->max_last_ns);
	else
		fputs(",\"first\":null,\"last\":null,\"first_ns\":null,\"last_ns\":null", fp);
	fputs(",\"columns\":[", fp);
	for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++) {
		const struct mm_store_column_stats *cs = &s->column[col];
		bool any = false;

		fprintf(fp, "%s{\"name\":\"%s\",\"raw_bytes\":%" PRIu64 ",\"stored_bytes\":%" PRIu64
			    ",\"chunks_by_encoding\":{",
			col ? "," : "", mm_store_column_name(col), cs->raw_bytes, cs->stored_bytes);
		for (unsigned e = 0; e < 8; e++) {
			if (!cs->n_chunks_by_encoding[e])
				continue;
			fprintf(fp, "%s\"%s\":%" PRIu64, any ? "," : "", mm_store_encoding_name(e),
				cs->n_chunks_by_encoding[e]);
			any = true;
		}
		fputs("}}", fp);
	}
	fputs("]}\n", fp);
}

/* The store's mamori.conf, as the policy reads it (sensor names, retention). */
static int load_policy_config(const struct store_args *a, struct mm_policy_config *cfg)
{
	struct mm_config *conf = NULL;
	int rc;

	mm_policy_config_init(cfg);
	rc = mm_config_find(a->config, a->dir, &conf);
	if (rc == 0)
		rc = mm_policy_config_load(cfg, conf);
	mm_config_free(conf);
	return rc;
}

static void policy_ndjson(FILE *fp, const struct mm_policy_counts *c)
{
	fprintf(fp, "{\"policy\":{\"classed\":%s,\"unclassed\":%" PRIu64 ",\"pseudonymised\":%" PRIu64
		    ",\"sensors\":[",
		c->classed ? "true" : "false", c->unclassed, c->pseudonymised);
	for (size_t i = 0; i < c->n; i++) {
		fprintf(fp, "%s{\"sensor\":%" PRIu32, i ? "," : "", c->s[i].sensor_id);
		for (unsigned k = 0; k < MM_CLASS__COUNT; k++)
			fprintf(fp, ",\"%s\":{\"seen\":%" PRIu64 ",\"kept\":%" PRIu64 ",\"dropped\":%" PRIu64 "}",
				mm_traffic_class_name(k), c->s[i].seen[k], c->s[i].kept[k], c->s[i].dropped[k]);
		fputc('}', fp);
	}
	fputs("]}}\n", fp);
}

static int policy_stats(const struct store_args *a)
{
	struct mm_policy_config cfg;
	struct mm_policy_counts c;
	int rc = load_policy_config(a, &cfg);

	if (rc == 0)
		rc = mm_policy_counts_load(a->dir, &c);
	if (rc == 0 && a->format == FORMAT_NDJSON) {
		policy_ndjson(stdout, &c);
	} else if (rc == 0) {
		printf("\njurisdiction policy (running totals)\n");
		if (c.classed || c.unclassed)
			mm_policy_counts_print(stdout, &c, &cfg);
		else
			printf("  no flows have passed the policy into this store yet\n");
	}
	mm_policy_config_free(&cfg);
	return rc;
}

static int run_stats(const struct store_args *a)
{
	struct mm_store *st = NULL;
	struct mm_store_stats *s = malloc(sizeof(*s));
	int rc;

	if (!s)
		return store_fail(mm_fail(MM_ENOMEM, "stats: out of memory"));
	rc = open_store(a->dir, &st);
	if (rc == 0)
		rc = mm_store_stats(st, s);
	if (rc == 0 && a->format == FORMAT_NDJSON)
		stats_ndjson(stdout, a->dir, s);
	else if (rc == 0)
		stats_table(stdout, a->dir, s);
	if (rc == 0)
		rc = policy_stats(a);
	mm_store_free(st);
	free(s);
	return rc ? store_fail(rc) : CLI_EXIT_OK;
}

/* ---- verify ---- */

static void print_problem(void *ctx, const char *message)
{
	const struct store_args *a = ctx;

	if (a->format == FORMAT_NDJSON) {
		fputs("{\"kind\":\"problem\",\"message\":", stdout);
		json_string(stdout, message);
		fputs("}\n", stdout);
	} else {
		printf("problem: %s\n", message);
	}
}

static void verify_summary(const struct store_args *a, const struct mm_store_verify_report *r)
{
	if (a->format == FORMAT_NDJSON) {
		fputs("{\"kind\":\"summary\",\"store\":", stdout);
		json_string(stdout, a->dir);
		printf(",\"ok\":%s,\"segments\":%" PRIu64 ",\"chunks\":%" PRIu64 ",\"flows\":%" PRIu64
		       ",\"problems\":%" PRIu64 ",\"leftovers\":%" PRIu64 "}\n",
		       r->problems ? "false" : "true", r->segments, r->chunks, r->flows, r->problems,
		       r->leftovers);
		return;
	}
	printf("%s: %s: %" PRIu64 " segments, %" PRIu64 " chunks, %" PRIu64 " flows checked; %" PRIu64
	       " problems; %" PRIu64 " leftovers\n",
	       r->problems ? "DAMAGED" : "ok", a->dir, r->segments, r->chunks, r->flows, r->problems,
	       r->leftovers);
}

static int run_verify(const struct store_args *a)
{
	struct mm_store_verify_report r;
	int rc = mm_store_verify(a->dir, &r, print_problem, (void *)a);

	if (rc == MM_ENOENT)
		return store_fail(mm_fail(MM_ENOENT, "%s: no store here (no catalog)", a->dir));
	if (rc != 0 && rc != MM_EFORMAT)
		return store_fail(rc);
	verify_summary(a, &r);
	if (rc == 0)
		return CLI_EXIT_OK;
	fprintf(stderr, "mamori store: verify: %s: %" PRIu64 " problems found\n", a->dir, r.problems);
	return CLI_EXIT_INPUT;
}

/* ---- expire ---- */

/* Segments of the snapshot that the cut would remove, and their totals. */
struct expire_plan {
	struct mm_store_segment_info *seg;
	size_t n;
	uint64_t flows, bytes;
};

static int plan_expire(const char *dir, uint64_t cutoff_ns, struct expire_plan *p)
{
	struct mm_store *st = NULL;
	int rc = open_store(dir, &st);
	size_t n;

	memset(p, 0, sizeof(*p));
	if (rc)
		return rc;
	n = mm_store_segment_count(st);
	p->seg = calloc(n ? n : 1, sizeof(*p->seg));
	if (!p->seg) {
		mm_store_free(st);
		return mm_fail(MM_ENOMEM, "expire: %zu segments", n);
	}
	for (size_t i = 0; i < n; i++) {
		struct mm_store_segment_info info;

		mm_store_segment_info(st, i, &info);
		if (info.max_last_ns >= cutoff_ns)
			continue;
		p->seg[p->n++] = info;
		p->flows += info.n_rows;
		p->bytes += info.file_bytes;
	}
	mm_store_free(st);
	return 0;
}

static void expire_report(const struct store_args *a, uint64_t cutoff_ns, const struct expire_plan *p,
			  const struct mm_store_expired *x)
{
	/* The plan names the files when it saw exactly what expire removed (no
	 * writer published in between); the totals come from expire itself. */
	bool named = p->n == x->segments && p->flows == x->flows && p->bytes == x->bytes;
	char cut[MM_TIME_STRLEN], t0[MM_TIME_STRLEN], t1[MM_TIME_STRLEN];

	mm_time_format_iso(cutoff_ns, cut);
	for (size_t i = 0; named && i < p->n; i++) {
		const struct mm_store_segment_info *s = &p->seg[i];

		if (a->format == FORMAT_NDJSON)
			printf("{\"kind\":\"removed\",\"segment\":\"seg-%06" PRIu64 ".mms\",\"flows\":%" PRIu64
			       ",\"bytes\":%" PRIu64 ",\"first\":\"%s\",\"last\":\"%s\"}\n",
			       s->id, s->n_rows, s->file_bytes, mm_time_format_iso(s->min_first_ns, t0),
			       mm_time_format_iso(s->max_last_ns, t1));
		else
			printf("removed seg-%06" PRIu64 ".mms  %" PRIu64 " flows  %" PRIu64 " bytes  %s .. %s\n",
			       s->id, s->n_rows, s->file_bytes, mm_time_format_iso(s->min_first_ns, t0),
			       mm_time_format_iso(s->max_last_ns, t1));
	}
	mm_time_format_iso(x->min_first_ns, t0);
	mm_time_format_iso(x->max_last_ns, t1);
	if (a->format == FORMAT_NDJSON) {
		fputs("{\"kind\":\"summary\",\"store\":", stdout);
		json_string(stdout, a->dir);
		printf(",\"cutoff\":\"%s\",\"segments\":%" PRIu64 ",\"flows\":%" PRIu64 ",\"bytes\":%" PRIu64,
		       cut, x->segments, x->flows, x->bytes);
		if (x->segments)
			printf(",\"first\":\"%s\",\"last\":\"%s\"}\n", t0, t1);
		else
			fputs(",\"first\":null,\"last\":null}\n", stdout);
	} else if (x->segments) {
		printf("expired %" PRIu64 " segments, %" PRIu64 " flows, %" PRIu64
		       " bytes (flows from %s to %s) ended before %s\n",
		       x->segments, x->flows, x->bytes, t0, t1, cut);
	} else {
		printf("nothing to expire: no segment ended before %s\n", cut);
	}
}

static int run_expire(const struct store_args *a)
{
	uint64_t now = mm_time_now_ns(), older, cutoff;
	struct mm_policy_config cfg;
	struct expire_plan plan = { 0 };
	struct mm_store_expired x;
	int rc;

	rc = load_policy_config(a, &cfg);
	if (rc)
		return store_fail(rc);
	/* The law's ceiling is the default and the cap: nothing is kept longer. */
	older = cfg.retention.flows_ns;
	if (a->older_set && a->older_ns < older)
		older = a->older_ns;
	else if (a->older_set && a->older_ns > older)
		fprintf(stderr, "mamori store: --older-than is longer than the retention ceiling for flows; "
				"expiring at the ceiling instead\n");
	mm_policy_config_free(&cfg);
	cutoff = older < now ? now - older : 0;
	rc = plan_expire(a->dir, cutoff, &plan);
	if (rc == 0)
		rc = mm_store_expire(a->dir, cutoff, &x);
	if (rc == MM_EAGAIN)
		mm_fail(MM_EAGAIN, "expire: %s: a writer has the store open; try again when it is done",
			a->dir);
	if (rc == 0) {
		bool named = plan.n == x.segments && plan.flows == x.flows && plan.bytes == x.bytes;

		expire_report(a, cutoff, &plan, &x);
		rc = cli_expire_receipt(a->dir, cutoff, plan.seg, named ? plan.n : 0, &x);
	}
	free(plan.seg);
	return rc ? store_fail(rc) : CLI_EXIT_OK;
}

/* ---- command line ---- */

static int parse_args(struct store_args *a, int argc, char **argv)
{
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":R:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'h': fputs(usage_text, stdout); return -1;
		case 'R': a->dir = optarg; break;
		case OPT_FORMAT:
			if (strcmp(optarg, "table") == 0)
				a->format = FORMAT_TABLE;
			else if (strcmp(optarg, "ndjson") == 0)
				a->format = FORMAT_NDJSON;
			else
				return cli_usage_error("store", "--format: '%s' is not table or ndjson", optarg);
			break;
		case OPT_CONFIG: a->config = optarg; break;
		case OPT_OLDER_THAN:
			a->older_set = true;
			if (cli_parse_duration("store", "--older-than", optarg, &a->older_ns))
				return CLI_EXIT_USAGE;
			break;
		case ':': return cli_usage_error("store", "option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return cli_usage_error("store", "unknown option '-%c'", optopt);
			return cli_usage_error("store", "unknown option '%s'", argv[optind - 1]);
		}
	}
	return 0;
}

int cmd_store(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(const struct store_args *a);
	} subcommands[] = {
		{ "stats", run_stats },
		{ "verify", run_verify },
		{ "expire", run_expire },
	};
	struct store_args a = { 0 };
	int rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return CLI_EXIT_OK;
	}
	if (argc < 2)
		return cli_usage_error("store", "give a subcommand: stats, verify or expire");
	rc = parse_args(&a, argc - 1, argv + 1);
	if (rc)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (optind < argc - 1)
		return cli_usage_error("store", "unexpected argument '%s'", argv[optind + 1]);
	if (!a.dir)
		a.dir = mm_store_default_dir();
	if (a.older_set && strcmp(argv[1], "expire") != 0)
		return cli_usage_error("store", "--older-than applies to expire only");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].run(&a);
	return cli_usage_error("store", "'%s' is not stats, verify or expire", argv[1]);
}
