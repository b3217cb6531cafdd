/*
 * `mamori synth`: parses its options into a struct mm_synth_config, writes
 * the capture with mm_synth_write_pcap() and prints the summary, which is
 * the ground truth the demo and the tests compare the meter against.
 */
#include "cli/cli.h"

#include "mamori/status.h"
#include "mamori/synth.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori synth - generate a deterministic synthetic capture\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori synth [OPTIONS] -o FILE.pcap\n"
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
	"EXIT STATUS\n"
	"    0 success; 1 bad command line or option value; 3 the file could not\n"
	"    be written.\n"
	"\n"
	"EXAMPLES\n"
	"    mamori synth -o demo.pcap\n"
	"    mamori synth --seed 7 --flows 500000 --packets 5000000 \\\n"
	"        --concurrency 20000 --duration 600 -o bench.pcap\n"
	"    mamori synth -o t.pcap && mamori meter t.pcap\n";

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

int cmd_synth(int argc, char **argv)
{
	struct mm_synth_config cfg;
	struct mm_synth_summary sum;
	const char *output = NULL;
	bool quiet = false;
	int opt, rc;

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
