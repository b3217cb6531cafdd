/*
 * `mamori synth`: parses its options into a struct mm_synth_config, writes
 * the capture with mm_synth_write_pcap() and prints the summary, which is
 * the ground truth the demo and the tests compare the meter against.
 */
#include "cli/cli.h"

#include "mamori/flow_output.h"
#include "mamori/scenario.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/synth.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori synth - generate a deterministic synthetic capture\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori synth [OPTIONS] -o FILE.pcap\n"
	"    mamori synth --scenario standard [--seed N] [--start TIME] [--hours H]\n"
	"        [--scale S] [-w DIR] --truth TRUTH.json [--flows-out FILE.ndjson]\n"
	"\n"
	"DESCRIPTION\n"
	"    Writes a pcap file (Ethernet, nanosecond timestamps) of made-up but\n"
	"    well-formed traffic: TCP conversations with handshake, requests,\n"
	"    responses, ACKs and a FIN or RST close, some refused connections,\n"
	"    DNS-, NTP- and QUIC-like UDP exchanges and ICMP/ICMPv6 echo, over IPv4\n"
	"    and IPv6, some of it 802.1Q-tagged. Conversations overlap in time,\n"
	"    packets per conversation are heavy-tailed, and every length field and\n"
	"    checksum is correct. The same options always give the same file, byte\n"
	"    for byte.\n"
	"\n"
	"    Each conversation has its own 5-tuple, no gap inside it reaches 60 s and\n"
	"    none lasts 1500 s, so a flow meter with default timeouts (mamori meter,\n"
	"    softflowd, Zeek) sees exactly one flow per conversation. The summary\n"
	"    printed at the end is therefore what such a meter must count: packets,\n"
	"    flows, and IP bytes (the IP length fields, not the bytes kept in the\n"
	"    file, which --snaplen cuts).\n"
	"\n"
	"OPTIONS\n"
	"    -o, --output FILE\n"
	"        Capture to write (required). Written under a temporary name and\n"
	"        renamed into place, so a reader never sees half a file.\n"
	"    --seed N\n"
	"        Seed of the random generator. Default: 1.\n"
	"    --flows N\n"
	"        Conversations (flows) to generate, 1..4227858432. Default: 5000.\n"
	"    --packets N\n"
	"        Packets to aim for in total. Conversations always end whole, so the\n"
	"        result is close to N, not equal; when N is below what the flows\n"
	"        need at least (2 to 8 packets each), the flows win. Default: 100000.\n"
	"    --concurrency N\n"
	"        Conversations in progress at any time, 1..1000000: how many flows a\n"
	"        meter must hold at once. Default: 400.\n"
	"    --ipv6-share F\n"
	"        Fraction of conversations over IPv6, 0..1. Default: 0.2.\n"
	"    --duration SECS\n"
	"        Approximate span of the capture in seconds; also takes 90s, 5m,\n"
	"        2h. Default: 300.\n"
	"    --start TIME\n"
	"        Timestamp of the first packet: RFC 3339 (2024-01-15T09:00:00Z) or\n"
	"        Unix seconds. Default: 2024-01-15T09:00:00Z.\n"
	"    --snaplen N\n"
	"        Bytes kept of each packet, 80..262144. Every header fits in 80;\n"
	"        the payload beyond is cut to keep files small. Default: 96.\n"
	"    -q, --quiet\n"
	"        Print nothing on success.\n"
	"    -h, --help\n"
	"        Show this text.\n"
	"\n"
	"OUTPUT\n"
	"    One \"name value\" pair per line on standard output:\n"
	"        file, packets, flows, tcp_flows, udp_flows, icmp_flows, bytes\n"
	"    where bytes are IP bytes (IP header and payload, as flow records count\n"
	"    them) and icmp_flows include ICMPv6.\n"
	"\n"
	"SCENARIO MODE\n"
	"    With --scenario, writes flow records instead of packets: realistic\n"
	"    background traffic of a domestic network with labelled attacks for\n"
	"    every detector planted in it, benign look-alikes that must not alert,\n"
	"    and the ground truth (docs/scenario.md). The same options always give\n"
	"    the same flows and truth.\n"
	"    --scenario NAME\n"
	"        The scenario: standard.\n"
	"    --seed N\n"
	"        Seed of the scenario. Default: 1.\n"
	"    --start TIME\n"
	"        Start of the scenario: RFC 3339 or Unix seconds. Default:\n"
	"        2026-11-20T00:00:00Z.\n"
	"    --hours H\n"
	"        Length in hours, 1..168 (fractions allowed). Attack windows are\n"
	"        fractions of it. Default: 6.\n"
	"    --scale S\n"
	"        Background hosts and volume multiplier, 0.01..100. Default: 1\n"
	"        (about 1.3 million flows in 6 h).\n"
	"    --truth FILE\n"
	"        Ground truth to write (JSON); the indicator list the intel\n"
	"        attacks use goes beside it as scenario-indicators.txt. Required.\n"
	"    --flows-out FILE\n"
	"        Also write the flows as NDJSON to FILE (- for standard output).\n"
	"    --labels-out FILE\n"
	"        Also write which flows belong to which truth entry: CSV lines\n"
	"        'id,entry' (the flow's id as in the store and the NDJSON, the\n"
	"        entry's id as in the truth); background flows are not listed.\n"
	"    --pcap FILE\n"
	"        Also write the packets of the flows that start in a short window\n"
	"        (Ethernet pcap, 96 bytes kept per packet), to feed 'mamori meter'.\n"
	"        Flows of more than 64 packets a direction are thinned to 64 (the\n"
	"        bytes per packet kept) and gaps kept under 20 s, so a meter sees\n"
	"        each record as one flow with the same endpoints and times (records\n"
	"        that repeat a 5-tuple back to back merge).\n"
	"    --pcap-from TIME, --pcap-minutes M\n"
	"        The window: M minutes (1..60, default 2) from TIME (default a\n"
	"        tenth into the scenario, where the fast horizontal scan runs).\n"
	CLI_STORE_OPTIONS_HELP
	"\n"
	"EXIT STATUS\n"
	"    0 success; 1 bad command line or option value; 3 the file could not\n"
	"    be written.\n"
	"\n"
	"EXAMPLES\n"
	"    mamori synth -o demo.pcap\n"
	"    mamori synth --seed 7 --flows 500000 --packets 5000000 \\\n"
	"        --concurrency 20000 --duration 600 -o bench.pcap\n"
	"    mamori synth -o t.pcap && mamori meter t.pcap\n"
	"    mamori synth --scenario standard -w data --truth truth.json\n";

enum { OPT_SEED = 256, OPT_FLOWS, OPT_PACKETS, OPT_CONCURRENCY, OPT_IPV6_SHARE, OPT_DURATION,
       OPT_START, OPT_SNAPLEN };

static const struct option long_options[] = {
	{ "output", required_argument, NULL, 'o' },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "flows", required_argument, NULL, OPT_FLOWS },
	{ "packets", required_argument, NULL, OPT_PACKETS },
	{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
	{ "ipv6-share", required_argument, NULL, OPT_IPV6_SHARE },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "start", required_argument, NULL, OPT_START },
	{ "snaplen", required_argument, NULL, OPT_SNAPLEN },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Decimal, whole string, within [min, max]; 0 or -1. */
static int parse_u64(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (*text < '0' || *text > '9')
		return -1;
	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_fraction(const char *text, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	if (errno != 0 || end == text || *end != '\0' || !(v >= 0 && v <= 1))
		return -1;
	*out = v;
	return 0;
}

/* Plain seconds ("300", "0.5") or a duration with a unit ("5m"). */
static int parse_seconds(const char *text, double *out)
{
	char *end;
	double v;
	uint64_t ns;

	errno = 0;
	v = strtod(text, &end);
	if (errno == 0 && end != text && *end == '\0' && isfinite(v) && v > 0) {
		*out = v;
		return 0;
	}
	if (mm_duration_parse(text, &ns) != 0 || ns == 0)
		return -1;
	*out = (double)ns / MM_NS_PER_SEC;
	return 0;
}

static int parse_start(const char *text, uint64_t *out)
{
	uint64_t s;

	if (parse_u64(text, 0, UINT32_MAX, &s) == 0) {
		*out = s * MM_NS_PER_SEC;
		return 0;
	}
	return mm_time_parse(text, 0, out) == 0 ? 0 : -1;
}

static void print_summary(const char *path, const struct mm_synth_summary *s)
{
	printf("file %s\n"
	       "packets %llu\n"
	       "flows %llu\n"
	       "tcp_flows %llu\n"
	       "udp_flows %llu\n"
	       "icmp_flows %llu\n"
	       "bytes %llu\n",
	       path, (unsigned long long)s->packets, (unsigned long long)s->flows,
	       (unsigned long long)s->tcp_flows, (unsigned long long)s->udp_flows,
	       (unsigned long long)s->icmp_flows, (unsigned long long)s->bytes);
}

/* Applies one option to cfg; returns CLI_EXIT_OK or the usage error's exit code. */
static int apply_option(int opt, const char *arg, struct mm_synth_config *cfg)
{
	uint64_t v;

	switch (opt) {
	case OPT_SEED:
		if (cli_parse_count("synth", "--seed", arg, 0, UINT64_MAX, &cfg->seed) != 0)
			return CLI_EXIT_USAGE;
		return CLI_EXIT_OK;
	case OPT_FLOWS:
		if (cli_parse_count("synth", "--flows", arg, 1, 4227858432ull, &cfg->n_flows) != 0)
			return CLI_EXIT_USAGE;
		return CLI_EXIT_OK;
	case OPT_PACKETS:
		if (cli_parse_count("synth", "--packets", arg, 0, 100000000000ull, &cfg->n_packets) != 0)
			return CLI_EXIT_USAGE;
		return CLI_EXIT_OK;
	case OPT_CONCURRENCY:
		if (cli_parse_count("synth", "--concurrency", arg, 1, 1000000, &v) != 0)
			return CLI_EXIT_USAGE;
		cfg->concurrency = (unsigned)v;
		return CLI_EXIT_OK;
	case OPT_IPV6_SHARE:
		if (parse_fraction(arg, &cfg->ipv6_share) != 0)
			return cli_usage_error("synth", "--ipv6-share: '%s' is not a fraction in 0..1", arg);
		return CLI_EXIT_OK;
	case OPT_DURATION:
		if (parse_seconds(arg, &cfg->duration_s) != 0)
			return cli_usage_error("synth", "--duration: '%s' is not a positive duration", arg);
		return CLI_EXIT_OK;
	case OPT_START:
		if (parse_start(arg, &cfg->start_ns) != 0)
			return cli_usage_error("synth", "--start: '%s' is not a time", arg);
		return CLI_EXIT_OK;
	case OPT_SNAPLEN:
		if (cli_parse_count("synth", "--snaplen", arg, 80, 262144, &v) != 0)
			return CLI_EXIT_USAGE;
		cfg->snaplen = (uint32_t)v;
		return CLI_EXIT_OK;
	}
	return cli_usage_error("synth", "unknown option");
}

enum { OPT_SCENARIO = 300, OPT_HOURS, OPT_SCALE, OPT_TRUTH, OPT_FLOWS_OUT, OPT_LABELS_OUT, OPT_PCAP,
       OPT_PCAP_FROM, OPT_PCAP_MINUTES };

static const struct option scenario_options[] = {
	{ "scenario", required_argument, NULL, OPT_SCENARIO },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "start", required_argument, NULL, OPT_START },
	{ "hours", required_argument, NULL, OPT_HOURS },
	{ "scale", required_argument, NULL, OPT_SCALE },
	{ "truth", required_argument, NULL, OPT_TRUTH },
	{ "flows-out", required_argument, NULL, OPT_FLOWS_OUT },
	{ "labels-out", required_argument, NULL, OPT_LABELS_OUT },
	{ "pcap", required_argument, NULL, OPT_PCAP },
	{ "pcap-from", required_argument, NULL, OPT_PCAP_FROM },
	{ "pcap-minutes", required_argument, NULL, OPT_PCAP_MINUTES },
	CLI_STORE_LONG_OPTIONS,
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct scenario_opts {
	struct mm_scenario_config cfg;
	struct cli_store_options store;
	const char *truth, *flows_out, *labels_out, *pcap;
	uint64_t pcap_from_ns;      /* 0: a tenth into the scenario */
	uint64_t pcap_minutes;
	bool quiet;
};

/* Where the flows go: the store and, when asked, NDJSON text. */
struct scenario_sinks {
	const struct mm_scenario *sc; /* names the labels */
	FILE *labels;
	struct mm_store_writer *store;
	struct mm_flow_writer *text;
	struct mm_scenario_pcap *pcap;
	uint64_t flows;
};

static int scenario_sink(void *ctx, const struct mm_flow *flows, const uint32_t *labels, size_t n)
{
	struct scenario_sinks *k = ctx;
	int rc;

	for (size_t i = 0; k->labels && i < n; i++)
		if (labels[i] && fprintf(k->labels, "%llu,%s\n", (unsigned long long)flows[i].id,
					 mm_scenario_entry(k->sc, labels[i] - 1)->id) < 0)
			return mm_fail(MM_EIO, "labels: write failed: %s", strerror(errno));
	if (k->store && (rc = mm_store_writer_append(k->store, flows, n)) != 0)
		return rc;
	if (k->text && (rc = mm_flow_writer_write(k->text, flows, n)) != 0)
		return rc;
	if (k->pcap && (rc = mm_scenario_pcap_add(k->pcap, flows, n)) != 0)
		return rc;
	k->flows += n;
	return 0;
}

static double parse_positive(const char *text, double min, double max, bool *ok)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(text, &end);
	*ok = errno == 0 && end != text && *end == '\0' && v >= min && v <= max;
	return v;
}

static int apply_scenario_option(int opt, const char *arg, struct scenario_opts *o)
{
	bool ok;
	double v;
	int rc;

	switch (opt) {
	case OPT_SCENARIO: o->cfg.name = arg; return CLI_EXIT_OK;
	case OPT_SEED:
		if (cli_parse_count("synth", "--seed", arg, 0, INT64_MAX, &o->cfg.seed) != 0)
			return CLI_EXIT_USAGE;
		return CLI_EXIT_OK;
	case OPT_START:
		if (parse_start(arg, &o->cfg.start_ns) != 0)
			return cli_usage_error("synth", "--start: '%s' is not a time", arg);
		return CLI_EXIT_OK;
	case OPT_HOURS:
		v = parse_positive(arg, 1, 168, &ok);
		if (!ok)
			return cli_usage_error("synth", "--hours: '%s' is not a number from 1 to 168",
					       arg);
		o->cfg.duration_ns = (uint64_t)(v * 3600 * MM_NS_PER_SEC);
		return CLI_EXIT_OK;
	case OPT_SCALE:
		o->cfg.scale = parse_positive(arg, 0.01, 100, &ok);
		if (!ok)
			return cli_usage_error("synth", "--scale: '%s' is not a number from 0.01 to 100",
					       arg);
		return CLI_EXIT_OK;
	case OPT_TRUTH: o->truth = arg; return CLI_EXIT_OK;
	case OPT_FLOWS_OUT: o->flows_out = arg; return CLI_EXIT_OK;
	case OPT_LABELS_OUT: o->labels_out = arg; return CLI_EXIT_OK;
	case OPT_PCAP: o->pcap = arg; return CLI_EXIT_OK;
	case OPT_PCAP_FROM:
		if (parse_start(arg, &o->pcap_from_ns) != 0)
			return cli_usage_error("synth", "--pcap-from: '%s' is not a time", arg);
		return CLI_EXIT_OK;
	case OPT_PCAP_MINUTES:
		if (cli_parse_count("synth", "--pcap-minutes", arg, 1, 60, &o->pcap_minutes) != 0)
			return CLI_EXIT_USAGE;
		return CLI_EXIT_OK;
	}
	rc = cli_store_option("synth", &o->store, opt, arg);
	return rc == -1 ? cli_usage_error("synth", "unknown option") : rc;
}

/*
 * "<dir of truth>/scenario-indicators.txt", malloc'd; NULL with a message
 * when that directory cannot be written, so a long run does not fail at its end.
 */
static char *indicators_path(const char *truth)
{
	char *copy = strdup(truth), *path = NULL;
	const char *dir;

	if (!copy) {
		mm_fail(MM_ENOMEM, "out of memory");
		return NULL;
	}
	dir = dirname(copy);
	if (access(dir, W_OK) != 0)
		mm_fail(MM_EIO, "%s: cannot write the truth there: %s", dir, strerror(errno));
	else if (asprintf(&path, "%s/scenario-indicators.txt", dir) < 0) {
		path = NULL;
		mm_fail(MM_ENOMEM, "out of memory");
	}
	free(copy);
	return path;
}

static void print_scenario_summary(FILE *fp, const struct mm_scenario *sc, uint64_t flows,
				   const char *truth, const char *indicators)
{
	static const char *const detectors[] = { "intel", "scan", "beacon", "ddos", "bruteforce", "exfil" };
	size_t n = mm_scenario_entry_count(sc), attacks = 0;

	fprintf(fp, "flows %llu\n", (unsigned long long)flows);
	for (size_t d = 0; d < sizeof(detectors) / sizeof(detectors[0]); d++) {
		size_t count = 0;

		for (size_t i = 0; i < n; i++) {
			const struct mm_scenario_entry *e = mm_scenario_entry(sc, i);
			count += e->role == MM_SCENARIO_ATTACK && strcmp(e->detector, detectors[d]) == 0;
		}
		fprintf(fp, "attacks_%s %zu\n", detectors[d], count);
		attacks += count;
	}
	fprintf(fp, "attacks %zu\nbenign %zu\ntruth %s\nindicators %s\n", attacks, n - attacks, truth,
		indicators);
}

/* The capture of --pcap: flows starting in --pcap-minutes from --pcap-from. */
static int open_pcap(const struct scenario_opts *o, struct mm_scenario_pcap **out)
{
	struct mm_scenario_pcap_options opt;

	mm_scenario_pcap_options_default(&opt);
	opt.from_ns = o->pcap_from_ns ? o->pcap_from_ns : o->cfg.start_ns + o->cfg.duration_ns / 10;
	opt.until_ns = opt.from_ns + o->pcap_minutes * 60 * MM_NS_PER_SEC;
	return mm_scenario_pcap_open(out, o->pcap, &opt);
}

static int run_scenario(const struct scenario_opts *o)
{
	struct scenario_sinks sinks = { 0 };
	struct mm_store_target target = cli_store_target(&o->store, true);
	struct mm_store_writer_options wopt = o->store.writer;
	struct cli_output text_out = { 0 }, labels_out = { 0 };
	struct mm_scenario *sc = NULL;
	struct mm_scenario_pcap_stats pstats = { 0 };
	char *ind_path = indicators_path(o->truth);
	bool text_open = false, labels_open = false;
	FILE *summary;
	int rc;

	if (!ind_path)
		return cli_fail("synth", MM_EIO);
	/* Publish by size only, so the same scenario always makes the same segments. */
	wopt.flush_interval_ns = 0;
	if (target.dir && (rc = mm_store_writer_open(&sinks.store, target.dir, &wopt)) != 0)
		goto fail;
	if (o->pcap && (rc = open_pcap(o, &sinks.pcap)) != 0)
		goto fail;
	if (o->labels_out) {
		if ((rc = cli_output_open(&labels_out, o->labels_out)) != 0)
			goto fail;
		labels_open = true;
		sinks.labels = labels_out.fp;
		fputs("id,entry\n", sinks.labels);
	}
	if (o->flows_out) {
		if ((rc = cli_output_open(&text_out, strcmp(o->flows_out, "-") ? o->flows_out : NULL)) != 0)
			goto fail;
		text_open = true;
		if ((rc = mm_flow_writer_new(&sinks.text, MM_OUTPUT_NDJSON, text_out.fp)) != 0)
			goto fail;
	}
	if ((rc = mm_scenario_new(&sc, &o->cfg)) != 0)
		goto fail;
	sinks.sc = sc;
	if ((rc = mm_scenario_run(sc, scenario_sink, &sinks)) != 0)
		goto fail;
	if (sinks.text && (rc = mm_flow_writer_finish(sinks.text)) != 0)
		goto fail;
	if (sinks.pcap) {
		rc = mm_scenario_pcap_close(sinks.pcap, &pstats);
		sinks.pcap = NULL;
		if (rc != 0)
			goto fail;
	}
	if ((rc = mm_store_writer_close(sinks.store)) != 0) {
		sinks.store = NULL;
		goto fail;
	}
	sinks.store = NULL;
	if ((rc = mm_scenario_write_truth(sc, o->truth, ind_path)) != 0)
		goto fail;
	mm_flow_writer_free(sinks.text);
	sinks.text = NULL;
	text_open = false;
	if ((rc = cli_output_close(&text_out, true)) != 0)
		goto fail;
	labels_open = false;
	if ((rc = cli_output_close(&labels_out, true)) != 0)
		goto fail;
	/* The summary must not mix with NDJSON on standard output. */
	summary = o->flows_out && strcmp(o->flows_out, "-") == 0 ? stderr : stdout;
	if (!o->quiet)
		print_scenario_summary(summary, sc, sinks.flows, o->truth, ind_path);
	if (!o->quiet && o->pcap)
		fprintf(summary, "pcap %s\npcap_flows %llu\npcap_packets %llu\npcap_flows_thinned %llu\n"
			"pcap_flows_left_out %llu\n", o->pcap, (unsigned long long)pstats.flows,
			(unsigned long long)pstats.packets, (unsigned long long)pstats.flows_thinned,
			(unsigned long long)pstats.flows_left_out);
	mm_scenario_free(sc);
	free(ind_path);
	return CLI_EXIT_OK;
fail:
	mm_flow_writer_free(sinks.text);
	mm_scenario_pcap_discard(sinks.pcap);
	if (text_open)
		cli_output_close(&text_out, false);
	if (labels_open)
		cli_output_close(&labels_out, false);
	mm_store_writer_close(sinks.store);
	mm_scenario_free(sc);
	free(ind_path);
	if (rc == MM_EINVAL)
		return cli_usage_error("synth", "%s", mm_last_error());
	return cli_fail("synth", rc);
}

static int cmd_synth_scenario(int argc, char **argv)
{
	struct scenario_opts o = { 0 };
	int opt, rc;

	mm_scenario_config_default(&o.cfg);
	cli_store_options_init(&o.store);
	o.pcap_minutes = 2;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":w:qh", scenario_options, NULL)) != -1) {
		switch (opt) {
		case 'q': o.quiet = true; break;
		case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
		case ':': return cli_usage_error("synth", "%s needs a value", argv[optind - 1]);
		case '?':
			return cli_usage_error("synth", "unknown option '%s' with --scenario",
					       argv[optind - 1]);
		default:
			if ((rc = apply_scenario_option(opt, optarg, &o)) != CLI_EXIT_OK)
				return rc;
		}
	}
	if (optind < argc)
		return cli_usage_error("synth", "unexpected argument '%s'", argv[optind]);
	if (!o.truth)
		return cli_usage_error("synth", "no truth file (--truth FILE.json)");
	return run_scenario(&o);
}

/* --scenario anywhere on the line switches to scenario mode and its own options. */
static bool scenario_mode(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			return false;
		if (strncmp(argv[i], "--scenario", 10) == 0 && (argv[i][10] == '\0' || argv[i][10] == '='))
			return true;
	}
	return false;
}

int cmd_synth(int argc, char **argv)
{
	struct mm_synth_config cfg;
	struct mm_synth_summary sum;
	const char *output = NULL;
	bool quiet = false;
	int opt, rc;

	if (scenario_mode(argc, argv))
		return cmd_synth_scenario(argc, argv);
	mm_synth_config_default(&cfg);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":o:qh", long_options, NULL)) != -1) {
		switch (opt) {
		case 'o': output = optarg; break;
		case 'q': quiet = true; break;
		case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
		case ':': return cli_usage_error("synth", "%s needs a value", argv[optind - 1]);
		case '?': return cli_usage_error("synth", "unknown option '%s'", argv[optind - 1]);
		default:
			rc = apply_option(opt, optarg, &cfg);
			if (rc != CLI_EXIT_OK)
				return rc;
		}
	}
	if (optind < argc)
		return cli_usage_error("synth", "unexpected argument '%s'", argv[optind]);
	if (!output)
		return cli_usage_error("synth", "no output file (-o FILE.pcap)");
	rc = mm_synth_write_pcap(&cfg, output, &sum);
	if (rc != 0) {
		/* Options are checked above, so a library refusal of the config is still a usage error. */
		if (rc == MM_EINVAL)
			return cli_usage_error("synth", "%s", mm_last_error());
		return cli_fail("synth", rc);
	}
	if (!quiet)
		print_summary(output, &sum);
	return CLI_EXIT_OK;
}
