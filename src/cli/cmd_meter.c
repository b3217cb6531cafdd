/*
 * `mamori meter`: parses its options into a struct mm_meter_job and runs
 * mm_pipeline_meter(). It also owns what only a command can own: where
 * flows go (the store, text, or both), the output file (written under a
 * temporary name and renamed into place), signal handling, and the choice
 * of exit code.
 */
#include "cli/cli.h"
#include "cli/cli_detect.h"
#include "cli/cli_guard.h"

#include "mamori/pipeline.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_SNAPLEN 262144
#define MAX_SNAPLEN 262144

static const char usage_text[] =
	"NAME\n"
	"    mamori meter - meter flows from packet captures or a live interface\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori meter [OPTIONS] FILE...\n"
	"    mamori meter [OPTIONS] -i IFACE\n"
	"\n"
	"DESCRIPTION\n"
	"    Reads pcap or pcapng files (in the order given, as one stream) or captures\n"
	"    live from IFACE, decodes every packet down through VLAN, MPLS, PPPoE and\n"
	"    tunnels (IP-in-IP, GRE, ERSPAN, VXLAN, Geneve, GTP-U, Teredo, AYIYA), and\n"
	"    counts it in one bidirectional flow per IP layer. An inner flow names its\n"
	"    tunnel flow as parent. A flow is written when it ends: idle or active\n"
	"    timeout, TCP close, a full table, or the end of input. Only header values\n"
	"    and counts are kept; no payload byte is stored or written.\n"
	"\n"
	"    Flows go to the store, where 'mamori query' finds them, and as text:\n"
	"      - the store: the -w DIR; without -w, the default data directory\n"
	"        ($MAMORI_DATA, else ./mamori-data) unless --format or -o asks for\n"
	"        text instead, or --no-store is given. So 'mamori meter trace.pcap &&\n"
	"        mamori query \"dst port 22\"' works with no configuration.\n"
	"      - text: with --format or -o. Without them and without -w, standard\n"
	"        output gets NDJSON when it is a pipe or a file (mamori meter\n"
	"        trace.pcap | jq), nothing on a terminal (the counters say where the\n"
	"        flows went) or /dev/null, and a table on a terminal with --no-store.\n"
	"\n"
	"OPTIONS\n"
	"    -i, --interface IFACE\n"
	"        Capture live from IFACE instead of reading files (needs capture\n"
	"        privileges). Stop with Ctrl-C: flows in the table are then written.\n"
	"    -f, --filter BPF\n"
	"        Meter only packets matching the tcpdump-syntax filter, for files as\n"
	"        well as live captures. Default: every packet.\n"
	"    -s, --snaplen N\n"
	"        Bytes kept per live packet (1..262144). Default: 262144. Counts use the\n"
	"        lengths in the IP headers, so a short snaplen does not change them.\n"
	"    --format table|csv|ndjson|zeek\n"
	"        Text output format (see OUTPUT FORMATS). Default: table when the output\n"
	"        is a terminal, ndjson otherwise (a pipe or an -o file).\n"
	"    -o, --output FILE\n"
	"        Write flows to FILE instead of standard output. FILE is written under\n"
	"        a temporary name and renamed into place when the run succeeds, so\n"
	"        readers never see a partial file and a failed run leaves FILE as it was.\n"
	"    --compat zeek\n"
	"        Zeek's semantics: its direction and ICMP rules, TCP 5 min and UDP/ICMP\n"
	"        1 min inactivity timeouts, no active timeout. Counts then match Zeek's\n"
	"        conn.log orig_pkts/orig_ip_bytes/resp_pkts/resp_ip_bytes.\n"
	"    --idle-timeout PROTO=DURATION\n"
	"        Inactivity timeout for PROTO: tcp, udp, icmp (ICMP and ICMPv6), other,\n"
	"        or all. Repeatable. DURATION is a number with unit ns, us, ms, s, m, h, d\n"
	"        or w (a bare number is seconds). Defaults: tcp 300s, udp 60s, icmp 60s,\n"
	"        other 60s.\n"
	"    --active-timeout DURATION\n"
	"        Split flows that last longer than DURATION into several records (end\n"
	"        reason 'active'); 0 never splits. Default: 1800s (never with --compat zeek).\n"
	"    --max-flows N\n"
	"        Flow table cap. At the cap the least recently active flows are written\n"
	"        early (end reason 'resource', counted as early-exports). Default: 1000000.\n"
	"    --max-encap N\n"
	"        Tunnel nesting followed (1..8). Deeper layers are counted as the\n"
	"        encap-depth anomaly. Default: 4.\n"
	CLI_POLICY_OPTIONS_HELP
	CLI_STORE_OPTIONS_HELP
	"    --ipfix [udp://|tcp://]HOST:PORT\n"
	"        Also export every flow as IPFIX (RFC 7011, biflows per RFC 5103) to a\n"
	"        collector: UDP by default, TCP with tcp://; IPv6 hosts in brackets.\n"
	"        Exported, dropped and failed records are counted (ipfix-records-*).\n"
	"    -q, --quiet\n"
	"        No counters and no progress on standard error.\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"OUTPUT FORMATS\n"
	"    table   Aligned columns for people: start (ISO 8601, UTC), duration (s),\n"
	"            protocol, originator -> responder (IPv6 in brackets; ICMP shows\n"
	"            type and counterpart type or code as ports), packets and IP bytes\n"
	"            from the originator (orig_) and from the responder (resp_), the\n"
	"            union of TCP flags (CEUAPRSF), and the end reason.\n"
	"    csv     RFC 4180, one header line naming every field of the flow record:\n"
	"            uid, id, first/last (ISO 8601 and epoch ns), addresses, ports,\n"
	"            protocol, counts each way, TCP flags, ICMP type/code, VLAN, next\n"
	"            hop, AS numbers, interfaces, sampling rate, sensor, end reason,\n"
	"            flags, tunnel parent ids, countries.\n"
	"    ndjson  One JSON object per line with the same fields as csv; addresses as\n"
	"            text, times as ISO 8601 strings and epoch ns, unknown values null.\n"
	"    zeek    Zeek conn.log TSV with its #-header and #close trailer, readable by\n"
	"            zeek-cut and Zeek tooling. uid is stable per flow and tunnel_parents\n"
	"            names the uids of outer flows. Fields a flow meter cannot know\n"
	"            (service, orig_bytes, resp_bytes, conn_state, local_orig, local_resp,\n"
	"            history) are unset (-); missed_bytes is 0.\n"
	"    Flows are written as they end, not sorted.\n"
	"\n"
	"COUNTERS\n"
	"    At the end of a run, standard error gets one 'name value' line each:\n"
	"    packets-read, bytes-read (wire bytes), packets-filtered (with -f),\n"
	"    kernel-drops (live), capture-error.REASON (corrupt records; a corrupt\n"
	"    record ends its file early and a warning names file and offset),\n"
	"    packets-metered, not-ip (ARP, LLDP, ...), malformed.REASON (packets or\n"
	"    layers the decoder refused, by reason), fragments and\n"
	"    datagrams-reassembled, flows-exported, flows-ended.REASON (idle, active,\n"
	"    eof, forced, resource), early-exports (table full), peak-flows,\n"
	"    table-bytes and table-bytes-per-flow (flow table memory at its peak).\n"
	"    Only non-zero reasons are listed. On a terminal, progress (packets/s,\n"
	"    percent and ETA by file bytes) is shown while reading; never in a pipe.\n"
	"\n"
	"STORE\n"
	CLI_STORE_CRASH_HELP
	"\n"
	"EXIT STATUS\n"
	"    0   success, also after Ctrl-C/SIGTERM (flows in the table are written)\n"
	"        and when the reader of standard output goes away (e.g. | head)\n"
	"    1   usage error (unknown option, bad value)\n"
	"    2   bad input: a missing file, a file that is not a capture, a bad filter\n"
	"    3   I/O or internal error (e.g. the output could not be written, or\n"
	"        another writer has the store open: give another -w DIR or --no-store)\n"
	"\n"
	"EXAMPLES\n"
	"    mamori meter trace.pcap && mamori query 'dst port 22'\n"
	"    mamori meter -w /var/lib/mamori --flush-rows 100000 trace.pcap\n"
	"    mamori meter --format csv -o flows.csv day1.pcapng day2.pcapng\n"
	"    mamori meter -f 'tcp port 443' --idle-timeout tcp=2m trace.pcap\n"
	"    mamori meter --compat zeek --format zeek trace.pcap | zeek-cut id.orig_h id.resp_h\n"
	"    sudo mamori meter -i eth0 --format ndjson --active-timeout 60s\n";

enum long_only_option {
	OPT_FORMAT = 256,
	OPT_COMPAT,
	OPT_IDLE_TIMEOUT,
	OPT_ACTIVE_TIMEOUT,
	OPT_MAX_FLOWS,
	OPT_MAX_ENCAP,
	OPT_IPFIX,
};

static const struct option long_options[] = {
	{ "interface", required_argument, NULL, 'i' },
	{ "filter", required_argument, NULL, 'f' },
	{ "snaplen", required_argument, NULL, 's' },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "output", required_argument, NULL, 'o' },
	{ "compat", required_argument, NULL, OPT_COMPAT },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "active-timeout", required_argument, NULL, OPT_ACTIVE_TIMEOUT },
	{ "max-flows", required_argument, NULL, OPT_MAX_FLOWS },
	{ "max-encap", required_argument, NULL, OPT_MAX_ENCAP },
	{ "ipfix", required_argument, NULL, OPT_IPFIX },
	CLI_STORE_LONG_OPTIONS,
	CLI_POLICY_LONG_OPTIONS,
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* --idle-timeout classes; "all" sets every class. */
enum idle_class { IDLE_TCP, IDLE_UDP, IDLE_ICMP, IDLE_OTHER, IDLE__COUNT };

static const char *const idle_class_names[IDLE__COUNT] = { "tcp", "udp", "icmp", "other" };

/* What the command line said, before defaults are laid under it. */
struct meter_options {
	const char *interface;
	const char *bpf;
	const char *output_path;
	const char *ipfix_dest;
	int snaplen;
	bool format_set;
	enum mm_output_format format;
	bool zeek_compat;
	bool idle_set[IDLE__COUNT];
	uint64_t idle_ns[IDLE__COUNT];
	bool active_set;
	uint64_t active_ns;
	bool max_flows_set;
	uint64_t max_flows;
	bool max_encap_set;
	uint64_t max_encap;
	bool quiet;
	struct cli_store_options store;
	struct cli_policy_options policy;
};

static int parse_idle_timeout(struct meter_options *o, const char *text)
{
	const char *eq = strchr(text, '=');
	size_t name_len = eq ? (size_t)(eq - text) : 0;
	uint64_t ns;
	int rc;

	if (!eq)
		return cli_usage_error("meter", "--idle-timeout: '%s' is not PROTO=DURATION", text);
	rc = cli_parse_duration("meter", "--idle-timeout", eq + 1, &ns);
	if (rc)
		return rc;
	if (name_len == 3 && strncasecmp(text, "all", 3) == 0) {
		for (int c = 0; c < IDLE__COUNT; c++) {
			o->idle_set[c] = true;
			o->idle_ns[c] = ns;
		}
		return 0;
	}
	for (int c = 0; c < IDLE__COUNT; c++) {
		if (strlen(idle_class_names[c]) == name_len &&
		    strncasecmp(text, idle_class_names[c], name_len) == 0) {
			o->idle_set[c] = true;
			o->idle_ns[c] = ns;
			return 0;
		}
	}
	return cli_usage_error("meter", "--idle-timeout: '%.*s' is not tcp, udp, icmp, other or all",
			       (int)name_len, text);
}

static int parse_option(struct meter_options *o, int opt, const char *arg)
{
	uint64_t v = 0;
	int rc = 0;

	switch (opt) {
	case 'i': o->interface = arg; break;
	case 'f': o->bpf = arg; break;
	case 'o': o->output_path = arg; break;
	case OPT_IPFIX: o->ipfix_dest = arg; break;
	case 'q': o->quiet = true; break;
	case 's':
		rc = cli_parse_count("meter", "--snaplen", arg, 1, MAX_SNAPLEN, &v);
		o->snaplen = (int)v;
		break;
	case OPT_FORMAT:
		if (mm_output_format_parse(arg, &o->format) != 0)
			return cli_usage_error("meter", "--format: %s", mm_last_error());
		o->format_set = true;
		break;
	case OPT_COMPAT:
		if (strcmp(arg, "zeek") != 0)
			return cli_usage_error("meter", "--compat: '%s' is not a known mode (zeek)", arg);
		o->zeek_compat = true;
		break;
	case OPT_IDLE_TIMEOUT: rc = parse_idle_timeout(o, arg); break;
	case OPT_ACTIVE_TIMEOUT:
		rc = cli_parse_duration("meter", "--active-timeout", arg, &o->active_ns);
		o->active_set = true;
		break;
	case OPT_MAX_FLOWS:
		rc = cli_parse_count("meter", "--max-flows", arg, 1, SIZE_MAX, &o->max_flows);
		o->max_flows_set = true;
		break;
	case OPT_MAX_ENCAP:
		rc = cli_parse_count("meter", "--max-encap", arg, 1, 8, &o->max_encap);
		o->max_encap_set = true;
		break;
	default:
		if (cli_policy_option(&o->policy, opt, arg) == 0)
			break;
		rc = cli_store_option("meter", &o->store, opt, arg);
		if (rc < 0)
			return cli_usage_error("meter", "unknown option");
	}
	return rc;
}

/* Defaults of the chosen mode first, then what the command line set. */
static void build_meter_config(const struct meter_options *o, uint32_t sensor_id, struct mm_meter_config *cfg)
{
	uint64_t *idle[IDLE__COUNT];

	if (o->zeek_compat)
		mm_meter_config_zeek(cfg);
	else
		mm_meter_config_default(cfg);
	idle[IDLE_TCP] = &cfg->idle_tcp_ns;
	idle[IDLE_UDP] = &cfg->idle_udp_ns;
	idle[IDLE_ICMP] = &cfg->idle_icmp_ns;
	idle[IDLE_OTHER] = &cfg->idle_other_ns;
	for (int c = 0; c < IDLE__COUNT; c++)
		if (o->idle_set[c])
			*idle[c] = o->idle_ns[c];
	if (o->active_set)
		cfg->active_ns = o->active_ns;
	if (o->max_flows_set)
		cfg->max_flows = (size_t)o->max_flows;
	if (o->max_encap_set)
		cfg->max_encap_depth = (unsigned)o->max_encap;
	cfg->sensor_id = sensor_id;
}

/* Refuses unreadable inputs up front with the name and the system's reason. */
static int check_inputs(char *const *files, int n_files)
{
	struct stat st;

	for (int i = 0; i < n_files; i++) {
		if (stat(files[i], &st) != 0) {
			fprintf(stderr, "mamori meter: %s: %s\n", files[i], strerror(errno));
			return CLI_EXIT_INPUT;
		}
		if (S_ISDIR(st.st_mode)) {
			fprintf(stderr, "mamori meter: %s: is a directory, not a capture file\n",
				files[i]);
			return CLI_EXIT_INPUT;
		}
	}
	return CLI_EXIT_OK;
}

/*
 * Whether flows are written as text. Asked-for text (--format, -o) replaces
 * the default store and -w names the store instead of text; with neither,
 * standard output gets text only where something takes it, and a terminal
 * only when there is no store to hold the flows.
 */
static bool wants_text(const struct meter_options *o, const struct mm_store_target *store)
{
	if (o->format_set || o->output_path)
		return true;
	if (o->store.dir)
		return false;
	return cli_stdout_takes_text() || (!store->dir && isatty(STDOUT_FILENO));
}

static int run_job(const struct meter_options *o, char *const *files, int n_files)
{
	struct mm_meter_job job = { 0 };
	struct cli_policy policy;
	struct cli_guarded guard;
	struct cli_detect detect = { 0 };
	struct cli_output out;
	const char *data_dir;
	int rc, exit_code;

	job.store = cli_store_target(&o->store, !o->format_set && !o->output_path);
	data_dir = job.store.dir ? job.store.dir : mm_store_default_dir();
	rc = cli_policy_open(&policy, "meter", &o->policy, data_dir);
	if (rc)
		return rc;
	rc = cli_guard_collect(&guard, "meter", o->policy.authz, data_dir, policy.sensor_id, o->quiet);
	if (rc) {
		cli_policy_close(&policy);
		return rc;
	}
	job.policy = cli_policy_target(&policy, job.store.dir);
	exit_code = o->policy.detect ? cli_detect_open(&detect, "meter", data_dir, policy.conf, o->policy.detect_authz,
						       o->quiet)
				    : 0;
	if (exit_code)
		goto done;
	if (o->policy.detect)
		job.tap = cli_detect_tap(&detect);
	rc = cli_output_open(&out, o->output_path);
	if (rc) {
		exit_code = cli_fail("meter", rc);
		goto done;
	}
	job.files = (const char *const *)files;
	job.n_files = (size_t)n_files;
	job.interface = o->interface;
	job.bpf = o->bpf;
	job.ipfix_dest = o->ipfix_dest;
	job.snaplen = o->snaplen ? o->snaplen : DEFAULT_SNAPLEN;
	build_meter_config(o, policy.sensor_id, &job.meter);
	job.format = o->format_set ? o->format
		     : isatty(fileno(out.fp)) ? MM_OUTPUT_TABLE : MM_OUTPUT_NDJSON;
	job.out = wants_text(o, &job.store) ? out.fp : NULL;
	job.stats_out = o->quiet ? NULL : stderr;
	job.progress = !o->quiet;
	cli_install_stop_signals(mm_pipeline_stop);

	rc = mm_pipeline_meter(&job);
	if (rc == MM_EIO && !out.name && cli_stdout_reader_gone()) {
		cli_output_close(&out, false);
		goto done; /* the reader went away (| head): done, quietly */
	}
	exit_code = rc ? cli_fail("meter", rc) : CLI_EXIT_OK;
	rc = cli_output_close(&out, rc == 0);
	if (rc && exit_code == CLI_EXIT_OK)
		exit_code = cli_fail("meter", rc);
done:
	exit_code = cli_detect_close(&detect, job.stats_out, exit_code);
	cli_policy_close(&policy);
	return cli_guard_finish(&guard, "meter", exit_code);
}

int cmd_meter(int argc, char **argv)
{
	struct meter_options o = { 0 };
	int opt, rc;

	cli_store_options_init(&o.store);
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":i:f:s:o:w:qh", long_options, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return CLI_EXIT_OK;
		}
		if (opt == '?' && optopt)
			return cli_usage_error("meter", "unknown option '-%c'", optopt);
		if (opt == '?')
			return cli_usage_error("meter", "unknown option '%s'", argv[optind - 1]);
		if (opt == ':')
			return cli_usage_error("meter", "option '%s' needs a value", argv[optind - 1]);
		rc = parse_option(&o, opt, optarg);
		if (rc)
			return rc;
	}
	if (o.interface && optind < argc)
		return cli_usage_error("meter", "give capture files or -i IFACE, not both");
	if (!o.interface && optind >= argc)
		return cli_usage_error("meter", "no capture file given");
	rc = check_inputs(argv + optind, argc - optind);
	if (rc)
		return rc;
	return run_job(&o, argv + optind, argc - optind);
}
