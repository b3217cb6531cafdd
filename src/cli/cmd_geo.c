/*
 * `mamori geo`: build the country/ASN table from RIR statistics, CIDR
 * lists, MaxMind DB files and iptoasn tables, and look addresses up in it.
 * Both are thin faces over include/mamori/enrich.h; docs/enrich.md has the
 * formats and the precedence rules.
 */
#include "cli/cli.h"

#include "mamori/enrich.h"
#include "mamori/status.h"
#include "mamori/store.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori geo - country and AS number by IP address\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori geo build [-o TABLE] [--rir FILE]... [--cidr CC:FILE]...\n"
	"                     [--mmdb FILE]... [--asn-tsv FILE]... [--format table|ndjson]\n"
	"    mamori geo lookup [--table TABLE] [--format table|ndjson] [ADDR...]\n"
	"\n"
	"DESCRIPTION\n"
	"    build   Reads the sources given, in the order given, and compiles them\n"
	"            into one table file (written under a temporary name, fsynced,\n"
	"            then renamed into place). Prints per source the lines, records,\n"
	"            prefixes, skipped and bad lines; each bad line is named on\n"
	"            standard error as FILE:LINE (the first 20 per file, then a\n"
	"            count). A source with no valid record stops the build and no\n"
	"            table is written.\n"
	"    lookup  Prints for each address (IPv4 or IPv6) its country, AS number\n"
	"            and the source that answered each; '-' where nothing is known.\n"
	"            With no ADDR, reads addresses one per line from standard input.\n"
	"\n"
	"    Country and AS number are resolved separately. The most specific\n"
	"    prefix that gives one wins; between prefixes of equal length the\n"
	"    source given later on the command line wins. Ranges (RIR IPv4 counts,\n"
	"    iptoasn rows) count as the CIDR blocks that cover them exactly.\n"
	"\n"
	"SOURCES\n"
	"    --rir FILE\n"
	"        RIR delegated or delegated-extended statistics (any of the five\n"
	"        RIRs): allocated and assigned ipv4 and ipv6 records.\n"
	"    --cidr CC:FILE\n"
	"        One CIDR prefix per line, all in country CC ('#' comments).\n"
	"    --mmdb FILE\n"
	"        A MaxMind DB file (GeoLite2/GeoIP2 Country or City, GeoLite2-ASN,\n"
	"        DB-IP lite): country.iso_code (else registered_country.iso_code)\n"
	"        and autonomous_system_number of every network in it.\n"
	"    --asn-tsv FILE\n"
	"        iptoasn.com table: range_start, range_end, AS number, country,\n"
	"        description, tab-separated; IPv4 and IPv6.\n"
	"\n"
	"OPTIONS\n"
	"    -o, --output TABLE\n"
	"        build: the table to write. Default: $MAMORI_DATA/geo/geo.table, else\n"
	"        ./mamori-data/geo/geo.table (directories created).\n"
	"    -t, --table TABLE\n"
	"        lookup: the table to read. Same default.\n"
	"    --format table|ndjson\n"
	"        table: aligned columns for people (default). ndjson: one JSON\n"
	"        object per source (build) or per address (lookup).\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   success\n"
	"    1   usage error\n"
	"    2   bad input: a source with nothing valid, an unreadable or corrupt\n"
	"        table, an address that does not parse (the others are still shown)\n"
	"    3   I/O or internal error\n"
	"\n"
	"EXAMPLES\n"
	"    mamori geo build --rir delegated-apnic-extended-latest \\\n"
	"        --mmdb GeoLite2-Country.mmdb --mmdb GeoLite2-ASN.mmdb\n"
	"    mamori geo build -o /tmp/jp.table --cidr JP:jp/ipv4-aggregated.txt\n"
	"    mamori geo lookup 1.1.1.1 2001:200::1\n"
	"    mamori geo lookup --format ndjson < addresses.txt\n";

enum geo_format { FORMAT_TABLE, FORMAT_NDJSON };

enum long_only_option {
	OPT_FORMAT = 256,
	OPT_RIR,
	OPT_CIDR,
	OPT_MMDB,
	OPT_ASN_TSV,
};

static const struct option long_options[] = {
	{ "output", required_argument, NULL, 'o' },
	{ "table", required_argument, NULL, 't' },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "rir", required_argument, NULL, OPT_RIR },
	{ "cidr", required_argument, NULL, OPT_CIDR },
	{ "mmdb", required_argument, NULL, OPT_MMDB },
	{ "asn-tsv", required_argument, NULL, OPT_ASN_TSV },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* One source option, kept in command-line order: the order decides ties. */
struct geo_source_arg {
	int kind; /* OPT_RIR, ... */
	const char *arg;
};

struct geo_args {
	const char *sub;
	const char *table; /* -o or -t */
	enum geo_format format;
	struct geo_source_arg *src;
	size_t n_src;
};

/* The library's message, whose "geo: " prefix already names the command. */
static int geo_fail(int status)
{
	const char *msg = mm_last_error();

	if (strncmp(msg, "geo: ", 5) == 0)
		msg += 5;
	fprintf(stderr, "mamori geo: %s\n", msg);
	return cli_exit_for_status(status);
}

static void print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (s)
		puts(s);
	free(s);
	json_decref(o);
}

/* ---- build ---- */

static void print_warning(void *ctx, const char *message)
{
	(void)ctx;
	fprintf(stderr, "mamori geo: %s\n", message);
}

static const char *kind_name(int kind)
{
	switch (kind) {
	case OPT_RIR: return "rir";
	case OPT_CIDR: return "cidr";
	case OPT_MMDB: return "mmdb";
	}
	return "asn-tsv";
}

static int add_source(struct mm_geo_builder *b, const struct geo_source_arg *s, const char **path,
		      struct mm_geo_load_report *rep)
{
	char cc[3];

	*path = s->arg;
	switch (s->kind) {
	case OPT_RIR: return mm_geo_builder_add_rir(b, s->arg, rep);
	case OPT_MMDB: return mm_geo_builder_add_mmdb(b, s->arg, rep);
	case OPT_ASN_TSV: return mm_geo_builder_add_asn_tsv(b, s->arg, rep);
	}
	/* --cidr CC:FILE was checked when parsed. */
	memcpy(cc, s->arg, 2);
	cc[2] = '\0';
	*path = s->arg + 3;
	return mm_geo_builder_add_cidr_list(b, *path, cc, rep);
}

static void print_load(const struct geo_args *a, const struct geo_source_arg *s, const char *path,
		       const struct mm_geo_load_report *r)
{
	if (a->format == FORMAT_NDJSON) {
		print_json(json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "kind", "source", "type",
				     kind_name(s->kind), "path", path, "lines", (json_int_t)r->n_lines, "records",
				     (json_int_t)r->n_records, "prefixes", (json_int_t)r->n_prefixes, "skipped",
				     (json_int_t)r->n_skipped, "bad", (json_int_t)r->n_bad));
		return;
	}
	printf("%-7s %s: %" PRIu64 " lines, %" PRIu64 " records, %" PRIu64 " prefixes, %" PRIu64 " skipped, %" PRIu64
	       " bad\n",
	       kind_name(s->kind), path, r->n_lines, r->n_records, r->n_prefixes, r->n_skipped, r->n_bad);
}

static void print_built(const struct geo_args *a, const char *path, const struct mm_geo_build_stats *st)
{
	const struct mm_geo_info *i = &st->info;

	if (a->format == FORMAT_NDJSON) {
		print_json(json_pack("{s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I}", "kind", "table", "path", path,
				     "sources", (int)i->n_sources, "prefixes", (json_int_t)st->n_prefixes, "answers",
				     (json_int_t)i->n_leaves, "ipv4_blocks", (json_int_t)i->n_v4_chunks,
				     "ipv6_ranges", (json_int_t)i->n_v6_ranges, "bytes", (json_int_t)i->file_len));
		return;
	}
	printf("wrote %s: %u sources, %" PRIu64 " prefixes, %" PRIu64 " distinct answers, %" PRIu64
	       " IPv4 blocks, %" PRIu64 " IPv6 ranges, %.1f MiB\n",
	       path, i->n_sources, st->n_prefixes, i->n_leaves, i->n_v4_chunks, i->n_v6_ranges,
	       (double)i->file_len / (1024.0 * 1024.0));
}

/* The default table's directories: <data> and <data>/geo. */
static int make_default_dirs(const char *table)
{
	char *dir = strdup(table), *slash;
	int rc = 0;

	if (!dir)
		return mm_fail(MM_ENOMEM, "geo: no memory");
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		if ((mkdir(mm_store_default_dir(), 0755) < 0 && errno != EEXIST) ||
		    (mkdir(dir, 0755) < 0 && errno != EEXIST))
			rc = mm_fail(MM_EIO, "geo: cannot create %s: %s", dir, strerror(errno));
	}
	free(dir);
	return rc;
}

static int run_build(const struct geo_args *a)
{
	struct mm_geo_builder *b = NULL;
	struct mm_geo_build_stats st;
	char *def = NULL;
	const char *out = a->table;
	int rc;

	if (a->n_src == 0)
		return cli_usage_error("geo", "build: give at least one source (--rir, --cidr, --mmdb, --asn-tsv)");
	if (!out) {
		if ((rc = mm_geo_default_path(&def)) < 0 || (rc = make_default_dirs(def)) < 0)
			goto out;
		out = def;
	}
	if ((rc = mm_geo_builder_new(print_warning, NULL, &b)) < 0)
		goto out;
	for (size_t i = 0; i < a->n_src; i++) {
		struct mm_geo_load_report rep;
		const char *path;

		rc = add_source(b, &a->src[i], &path, &rep);
		if (rc < 0)
			goto out;
		print_load(a, &a->src[i], path, &rep);
	}
	if ((rc = mm_geo_builder_write(b, out, &st)) < 0)
		goto out;
	print_built(a, out, &st);
out:
	mm_geo_builder_free(b);
	free(def);
	return rc < 0 ? geo_fail(rc) : CLI_EXIT_OK;
}

/* ---- lookup ---- */

static void print_answer(const struct geo_args *a, const char *text, const struct mm_geo_answer *ans)
{
	char cc[3] = { ans->country[0], ans->country[1], 0 }, asn[16] = "-";

	if (a->format == FORMAT_NDJSON) {
		json_t *o = json_object();

		json_object_set_new(o, "address", json_string(text));
		json_object_set_new(o, "country", cc[0] ? json_string(cc) : json_null());
		json_object_set_new(o, "asn", ans->asn ? json_integer(ans->asn) : json_null());
		json_object_set_new(o, "country_source",
				    ans->country_source ? json_string(ans->country_source) : json_null());
		json_object_set_new(o, "asn_source", ans->asn_source ? json_string(ans->asn_source) : json_null());
		print_json(o);
		return;
	}
	if (ans->asn)
		snprintf(asn, sizeof(asn), "%" PRIu32, ans->asn);
	printf("%-39s %-7s %-10s %-44s %s\n", text, cc[0] ? cc : "-", asn,
	       ans->country_source ? ans->country_source : "-", ans->asn_source ? ans->asn_source : "-");
}

/* 0, or CLI_EXIT_INPUT after naming the address that does not parse. */
static int lookup_one(const struct geo_args *a, const struct mm_geo *g, const char *text)
{
	struct mm_geo_answer ans;
	struct mm_addr addr;
	char canon[MM_ADDR_STRLEN];

	if (mm_addr_parse(&addr, text) < 0) {
		fprintf(stderr, "mamori geo: %s\n", mm_last_error());
		return CLI_EXIT_INPUT;
	}
	mm_geo_lookup(g, &addr, &ans);
	print_answer(a, mm_addr_format(&addr, canon), &ans);
	return 0;
}

static int run_lookup(const struct geo_args *a, int n_addr, char **addr)
{
	struct mm_geo *g = NULL;
	char *def = NULL, *line = NULL;
	size_t cap = 0;
	int rc, status = CLI_EXIT_OK;

	if (a->n_src)
		return cli_usage_error("geo", "lookup: sources are for 'geo build'");
	if (!a->table && (rc = mm_geo_default_path(&def)) < 0)
		return geo_fail(rc);
	rc = mm_geo_open(a->table ? a->table : def, &g);
	free(def);
	if (rc < 0) {
		int code = geo_fail(rc);

		if (rc == MM_ENOENT)
			fprintf(stderr, "mamori geo: build a table first with 'mamori geo build'\n");
		return code;
	}
	if (a->format == FORMAT_TABLE)
		printf("%-39s %-7s %-10s %-44s %s\n", "address", "country", "asn", "country-source", "asn-source");
	for (int i = 0; i < n_addr; i++)
		if (lookup_one(a, g, addr[i]))
			status = CLI_EXIT_INPUT;
	if (n_addr == 0) {
		ssize_t n;

		while ((n = getline(&line, &cap, stdin)) >= 0) {
			while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
				line[--n] = '\0';
			if (n > 0 && lookup_one(a, g, line))
				status = CLI_EXIT_INPUT;
		}
		free(line);
	}
	mm_geo_close(g);
	return status;
}

/* ---- options ---- */

static bool is_letter(char c)
{
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'z';
}

static int add_source_arg(struct geo_args *a, int kind, const char *arg)
{
	void *p;

	if (kind == OPT_CIDR && (strlen(arg) < 4 || !is_letter(arg[0]) || !is_letter(arg[1]) || arg[2] != ':'))
		return cli_usage_error("geo", "--cidr: '%s' is not CC:FILE (e.g. JP:jp.txt)", arg);
	p = realloc(a->src, (a->n_src + 1) * sizeof(*a->src));
	if (!p)
		return geo_fail(mm_fail(MM_ENOMEM, "geo: no memory for options"));
	a->src = p;
	a->src[a->n_src++] = (struct geo_source_arg){ kind, arg };
	return 0;
}

int cmd_geo(int argc, char **argv)
{
	struct geo_args a = { 0 };
	int opt, rc = CLI_EXIT_OK;

	if (argc >= 2 && (strcmp(argv[1], "build") == 0 || strcmp(argv[1], "lookup") == 0)) {
		a.sub = argv[1];
		argc--;
		argv++;
	}
	optind = 1;
	while ((opt = getopt_long(argc, argv, "o:t:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'o':
		case 't':
			a.table = optarg;
			break;
		case OPT_FORMAT:
			if (strcmp(optarg, "table") == 0)
				a.format = FORMAT_TABLE;
			else if (strcmp(optarg, "ndjson") == 0)
				a.format = FORMAT_NDJSON;
			else
				rc = cli_usage_error("geo", "--format: '%s' is not table or ndjson", optarg);
			break;
		case OPT_RIR:
		case OPT_CIDR:
		case OPT_MMDB:
		case OPT_ASN_TSV:
			rc = add_source_arg(&a, opt, optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			free(a.src);
			return CLI_EXIT_OK;
		default:
			rc = CLI_EXIT_USAGE;
			fprintf(stderr, "Try 'mamori geo --help'.\n");
		}
		if (rc != CLI_EXIT_OK)
			goto out;
	}
	if (!a.sub)
		rc = cli_usage_error("geo", "give a subcommand: build or lookup");
	else if (strcmp(a.sub, "build") == 0)
		rc = optind < argc ? cli_usage_error("geo", "build: unexpected argument '%s'", argv[optind])
				   : run_build(&a);
	else
		rc = run_lookup(&a, argc - optind, argv + optind);
out:
	free(a.src);
	return rc;
}
