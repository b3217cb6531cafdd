/*
 * `mamori intel`: import, list, match and remove threat-intelligence
 * indicators in <data>/intel/ (docs/intel.md). Each subcommand is a thin
 * face over intel.h: the store calls for import/remove, a snapshot of the
 * compiled set for list and match.
 */
#include "cli/cli.h"

#include "mamori/intel.h"
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
	"    mamori intel - threat-intelligence indicators: import, list, match, remove\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori intel import FILE --source NAME [--format F] [--tlp T] [--confidence N]\n"
	"                        [--expires T] [-R DIR]\n"
	"    mamori intel list [--source NAME] [-R DIR]\n"
	"    mamori intel match ADDR|ASN... [-R DIR]\n"
	"    mamori intel remove --source NAME [-R DIR]\n"
	"\n"
	"DESCRIPTION\n"
	"    Indicators (IPv4/IPv6 addresses and prefixes, AS numbers) come from\n"
	"    sources; each import of a source replaces what that source held. The\n"
	"    union of all sources is compiled into DIR/intel/current.mmi, which the\n"
	"    detectors map and match against by longest prefix (docs/intel.md).\n"
	"\n"
	"    import  Loads FILE and stores it as source NAME, then recompiles. Lines\n"
	"            or objects that do not parse are reported as FILE:LINE: reason\n"
	"            and counted; the rest are loaded.\n"
	"    list    Sources with their indicator counts, first/last seen dates and\n"
	"            most restrictive TLP.\n"
	"    match   For each address (or ASxxx), every indicator whose prefix covers\n"
	"            it, longest prefix first, with source, confidence, TLP, tags, id\n"
	"            and the prefix that matched. Expired indicators do not match.\n"
	"    remove  Deletes source NAME and recompiles.\n"
	"\n"
	"OPTIONS\n"
	"    --source NAME\n"
	"        The source: 1..63 of A-Z a-z 0-9 . _ -\n"
	"    --format auto|list|firehol|csv|ipsum|stix\n"
	"        The file's format. auto (default) tells STIX ('{'), CSV (a header\n"
	"        naming 'indicator'), IPsum (address TAB count), FireHOL (its header)\n"
	"        and plain lists apart.\n"
	"    --tlp clear|green|amber|amber+strict|red\n"
	"        TLP for indicators whose record carries none.\n"
	"    --confidence N\n"
	"        Confidence 0..100 for records that carry none (lists). Default 50.\n"
	"    --expires T\n"
	"        Expiry for records that carry none: a time (2026-12-31, RFC 3339,\n"
	"        @EPOCH) or a duration from now (30d, 12h).\n"
	"    -R, --data DIR\n"
	"        The data directory. Default: $MAMORI_DATA, else ./mamori-data.\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   success (import: at least one indicator loaded, or nothing was bad)\n"
	"    1   usage error\n"
	"    2   bad input: unreadable format, bad address, no such source, or an\n"
	"        import where every record was bad\n"
	"    3   I/O or internal error\n"
	"\n"
	"EXAMPLES\n"
	"    mamori intel import feodo.ipset --source feodo --tlp clear\n"
	"    mamori intel import ipsum.txt --source ipsum --expires 7d\n"
	"    mamori intel import bundle.json --source partner-x\n"
	"    mamori intel list\n"
	"    mamori intel match 198.51.100.7 2001:db8::1 AS64496\n"
	"    mamori intel remove --source feodo\n";

enum intel_option {
	OPT_SOURCE = 256,
	OPT_FORMAT,
	OPT_TLP,
	OPT_CONFIDENCE,
	OPT_EXPIRES,
};

static const struct option long_options[] = {
	{ "source", required_argument, NULL, OPT_SOURCE },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "tlp", required_argument, NULL, OPT_TLP },
	{ "confidence", required_argument, NULL, OPT_CONFIDENCE },
	{ "expires", required_argument, NULL, OPT_EXPIRES },
	{ "data", required_argument, NULL, 'R' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct intel_args {
	const char *data;
	const char *source;
	enum mm_intel_format format;
	enum mm_tlp tlp;
	uint64_t confidence;
	uint64_t expires_ns;
	bool import_only; /* an import-only option was given */
	char **rest;      /* positional arguments after the subcommand */
	int n_rest;
	uint64_t now_ns;
	char dir[4096];
};

static int parse_args(struct intel_args *a, int argc, char **argv)
{
	int opt;

	a->confidence = 50;
	opterr = 0;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "R:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'R':
			a->data = optarg;
			break;
		case OPT_SOURCE:
			a->source = optarg;
			break;
		case OPT_FORMAT:
			if (mm_intel_format_parse(optarg, &a->format) != 0)
				return cli_usage_error("intel", "%s", mm_last_error());
			a->import_only = true;
			break;
		case OPT_TLP:
			if (mm_tlp_parse(optarg, &a->tlp) != 0 || a->tlp == MM_TLP_UNSET)
				return cli_usage_error("intel", "--tlp '%s': clear, green, amber, amber+strict or red",
						       optarg);
			a->import_only = true;
			break;
		case OPT_CONFIDENCE:
			if (cli_parse_count("intel", "--confidence", optarg, 0, 100, &a->confidence))
				return CLI_EXIT_USAGE;
			a->import_only = true;
			break;
		case OPT_EXPIRES: {
			uint64_t d;

			if (mm_duration_parse(optarg, &d) == 0)
				a->expires_ns = a->now_ns + d;
			else if (mm_time_parse(optarg, a->now_ns, &a->expires_ns) != 0)
				return cli_usage_error("intel", "--expires '%s': not a time or a duration", optarg);
			a->import_only = true;
			break;
		}
		case 'h':
			fputs(usage_text, stdout);
			return -1;
		default:
			return cli_usage_error("intel", "unknown option '%s'", argv[optind - 1]);
		}
	}
	a->rest = argv + optind;
	a->n_rest = argc - optind;
	return 0;
}

static int intel_fail(int status)
{
	fprintf(stderr, "mamori intel: %s\n", mm_last_error());
	return cli_exit_for_status(status);
}

static void print_time(FILE *fp, uint64_t ns)
{
	char buf[MM_TIME_STRLEN];

	if (!ns) {
		fprintf(fp, "%-10s", "-");
		return;
	}
	mm_time_format_iso(ns, buf);
	buf[10] = '\0'; /* the date */
	fprintf(fp, "%-10s", buf);
}

/* ---- import ---- */

static void print_load(const char *file, const struct intel_args *a, const struct mm_intel_load_stats *st)
{
	printf("imported %" PRIu64 " indicators from %s as source %s (format %s)\n", st->n_loaded, file, a->source,
	       mm_intel_format_name(st->format));
	printf("  records read %" PRIu64 ", bad %" PRIu64 ", skipped %" PRIu64 ", already expired %" PRIu64 "\n",
	       st->n_lines, st->n_bad, st->n_skipped, st->n_expired);
	if (st->format == MM_INTEL_FMT_STIX)
		printf("  STIX patterns skipped: other object types %" PRIu64 ", other operators %" PRIu64
		       ", needing correlation %" PRIu64 ", other pattern languages %" PRIu64
		       "; ORs with other objects kept in part %" PRIu64 "\n",
		       st->n_skip_object_type, st->n_skip_operator, st->n_skip_combination, st->n_skip_pattern_type,
		       st->n_partial);
	if (st->list_name[0] || st->list_date[0] || st->maintainer[0])
		printf("  list %s, dated %s, maintainer %s\n", st->list_name[0] ? st->list_name : "-",
		       st->list_date[0] ? st->list_date : "-", st->maintainer[0] ? st->maintainer : "-");
	for (unsigned i = 0; i < st->n_reports; i++)
		fprintf(stderr, "%s\n", st->reports[i]);
	if (st->n_bad + st->n_skipped > st->n_reports)
		fprintf(stderr, "(%" PRIu64 " problems in all; the first %u are shown)\n", st->n_bad + st->n_skipped,
			st->n_reports);
}

static int run_import(struct intel_args *a)
{
	struct mm_intel_defaults def = { a->source, true, (uint8_t)a->confidence, a->tlp, a->expires_ns };
	struct mm_intel_load_stats *st;
	int rc;

	if (a->n_rest != 1)
		return cli_usage_error("intel", "import takes one FILE");
	if (!a->source)
		return cli_usage_error("intel", "import needs --source NAME");
	st = calloc(1, sizeof(*st));
	if (!st)
		return intel_fail(mm_fail(MM_ENOMEM, "out of memory"));
	rc = mm_intel_store_import(a->dir, a->rest[0], a->format, &def, a->now_ns, st);
	if (rc) {
		free(st);
		return intel_fail(rc);
	}
	print_load(a->rest[0], a, st);
	rc = st->n_loaded == 0 && st->n_bad > 0 ? CLI_EXIT_INPUT : CLI_EXIT_OK;
	free(st);
	return rc;
}

/* ---- list and match ---- */

static int open_snap(const struct intel_args *a, struct mm_intel_snap **out)
{
	struct mm_intel *in;
	int rc = mm_intel_open(a->dir, &in);

	if (rc)
		return rc;
	*out = mm_intel_get(in);
	mm_intel_close(in);
	return 0;
}

static int run_list(struct intel_args *a)
{
	struct mm_intel_snap *snap;
	size_t shown = 0;
	int rc;

	if (a->n_rest)
		return cli_usage_error("intel", "list takes no arguments");
	if ((rc = open_snap(a, &snap)))
		return intel_fail(rc);
	printf("%-24s %12s  %-10s  %-10s  %s\n", "source", "indicators", "first-seen", "last-seen", "tlp");
	for (size_t i = 0; i < mm_intel_snap_sources(snap); i++) {
		struct mm_intel_source_info si;

		mm_intel_snap_source(snap, i, &si);
		if (a->source && strcmp(a->source, si.name) != 0)
			continue;
		printf("%-24s %12" PRIu64 "  ", si.name, si.n_indicators);
		print_time(stdout, si.first_seen_ns);
		fputs("  ", stdout);
		print_time(stdout, si.last_seen_ns);
		printf("  %s\n", si.tlp ? mm_tlp_name(si.tlp) : "-");
		shown++;
	}
	printf("%zu sources; %zu indicators, %zu distinct prefixes in all\n", shown, mm_intel_snap_count(snap),
	       mm_intel_snap_prefixes(snap));
	mm_intel_snap_put(snap);
	if (a->source && !shown) {
		fprintf(stderr, "mamori intel: no source '%s'\n", a->source);
		return CLI_EXIT_INPUT;
	}
	return CLI_EXIT_OK;
}

static void print_hit(const struct mm_intel_snap *snap, const struct mm_intel_hit *hit, uint64_t now_ns)
{
	char pfx[MM_PREFIX_STRLEN];

	for (uint32_t k = 0; k < hit->n; k++) {
		struct mm_intel_indicator ind;

		mm_intel_indicator(snap, hit->first + k, &ind);
		if (ind.expires_ns && ind.expires_ns <= now_ns)
			continue;
		if (ind.kind == MM_INTEL_ASN)
			printf("  AS%u", ind.asn);
		else
			printf("  %s", mm_prefix_format(&hit->prefix, pfx));
		printf("  source=%s confidence=%u tlp=%s", ind.source, ind.confidence,
		       ind.tlp ? mm_tlp_name(ind.tlp) : "-");
		if (*ind.tags)
			printf(" tags=%s", ind.tags);
		if (*ind.id)
			printf(" id=%s", ind.id);
		if (ind.expires_ns) {
			char t[MM_TIME_STRLEN];

			printf(" expires=%s", mm_time_format_iso(ind.expires_ns, t));
		}
		putchar('\n');
	}
}

static int run_match(struct intel_args *a)
{
	struct mm_intel_snap *snap;
	int rc, status = CLI_EXIT_OK;

	if (a->n_rest < 1)
		return cli_usage_error("intel", "match takes one or more addresses");
	if ((rc = open_snap(a, &snap)))
		return intel_fail(rc);
	for (int i = 0; i < a->n_rest; i++) {
		const char *text = a->rest[i];
		struct mm_intel_hit hit;
		struct mm_addr addr;
		uint32_t asn;
		int found;

		if (strncasecmp(text, "AS", 2) == 0 && text[2] >= '0' && text[2] <= '9' &&
		    mm_addr_parse(&addr, text) != 0) {
			char *end;
			unsigned long long v;

			errno = 0;
			v = strtoull(text + 2, &end, 10);
			if (*end || errno || v > UINT32_MAX) {
				fprintf(stderr, "mamori intel: '%s' is not an AS number\n", text);
				status = CLI_EXIT_INPUT;
				continue;
			}
			asn = (uint32_t)v;
			found = mm_intel_match_asn(snap, asn, a->now_ns, &hit);
			printf("%s: %s\n", text, found ? "match" : "no match");
			if (found)
				print_hit(snap, &hit, a->now_ns);
			continue;
		}
		if (mm_addr_parse(&addr, text) != 0) {
			fprintf(stderr, "mamori intel: '%s' is not an IP address\n", text);
			status = CLI_EXIT_INPUT;
			continue;
		}
		found = mm_intel_match_addr(snap, &addr, a->now_ns, &hit);
		printf("%s: %s\n", text, found ? "match" : "no match");
		while (found) {
			print_hit(snap, &hit, a->now_ns);
			found = mm_intel_match_next(snap, a->now_ns, &hit);
		}
	}
	mm_intel_snap_put(snap);
	return status;
}

static int run_remove(struct intel_args *a)
{
	int rc;

	if (a->n_rest)
		return cli_usage_error("intel", "remove takes no arguments");
	if (!a->source)
		return cli_usage_error("intel", "remove needs --source NAME");
	rc = mm_intel_store_remove(a->dir, a->source, a->now_ns);
	if (rc)
		return intel_fail(rc);
	printf("removed source %s\n", a->source);
	return CLI_EXIT_OK;
}

int cmd_intel(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(struct intel_args *a);
	} subcommands[] = {
		{ "import", run_import },
		{ "list", run_list },
		{ "match", run_match },
		{ "remove", run_remove },
	};
	struct intel_args a;
	int rc;

	memset(&a, 0, sizeof(a));
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return CLI_EXIT_OK;
	}
	if (argc < 2)
		return cli_usage_error("intel", "give a subcommand: import, list, match or remove");
	a.now_ns = mm_time_now_ns();
	rc = parse_args(&a, argc - 1, argv + 1);
	if (rc)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (a.import_only && strcmp(argv[1], "import") != 0)
		return cli_usage_error("intel", "--format, --tlp, --confidence and --expires apply to import only");
	if ((size_t)snprintf(a.dir, sizeof(a.dir), "%s/intel", a.data ? a.data : mm_store_default_dir()) >=
	    sizeof(a.dir))
		return cli_usage_error("intel", "data directory path too long");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].run(&a);
	return cli_usage_error("intel", "'%s' is not import, list, match or remove", argv[1]);
}
