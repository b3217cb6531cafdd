/*
 * `mamori collect`: parses its options into a struct mm_collect_job and
 * runs mm_pipeline_collect(). It owns what only a command can own: where
 * flows go (the store, text, a forwarder), the output and stats files,
 * signal handling, and the choice of exit code.
 */
#include "cli/cli.h"
#include "cli/cli_detect.h"
#include "cli/cli_guard.h"

#include "mamori/ipfix_export.h"
#include "mamori/pipeline.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 65536

static const char usage_text[] =
	"NAME\n"
	"    mamori collect - collect NetFlow v5/v9 and IPFIX from exporters, files or captures\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori collect [OPTIONS] [-l [tcp:|udp:][ADDR:]PORT]...\n"
	"    mamori collect [OPTIONS] --read FILE...\n"
	"    mamori collect [OPTIONS] --from-pcap FILE...\n"
	"\n"
	"DESCRIPTION\n"
	"    Receives NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) export\n"
	"    messages, decodes them with per-exporter template caches and writes one\n"
	"    flow record per data record. Without -l it listens on UDP port 2055\n"
	"    (NetFlow) and 4739 (IPFIX), IPv6 and IPv4 on every interface.\n"
	"\n"
	"    Flows go to the store, where 'mamori query' finds them, and as text:\n"
	"      - the store: the -w DIR; without -w, the default data directory\n"
	"        ($MAMORI_DATA, else ./mamori-data) unless --format or -o asks for\n"
	"        text instead, --forward makes this a relay, or --no-store is given.\n"
	"      - text: with --format or -o. Without them, -w and --forward, standard\n"
	"        output gets NDJSON when it is a pipe or a file, nothing on a\n"
	"        terminal or /dev/null, and a table on a terminal with --no-store.\n"
	"\n"
	"    Receiving and decoding run in --workers threads. Each opens every\n"
	"    listener with SO_REUSEPORT; the kernel steers each exporter (its UDP\n"
	"    4-tuple, or its TCP connection) to one worker, whose decoder keeps that\n"
	"    exporter's templates. Flows from all workers go to one writer; when the\n"
	"    output cannot keep up the workers wait, socket buffers fill and the\n"
	"    kernel's drops are counted (kernel-drops), never lost silently.\n"
	"\n"
	"    --read and --from-pcap replay export messages for testing and\n"
	"    forensics: every message goes through the same function as a datagram\n"
	"    from a socket, on one decoder, in order, and the run ends at the end of\n"
	"    the files.\n"
	"\n"
	"OPTIONS\n"
	"    -l, --listen [tcp:|udp:][ADDR:]PORT\n"
	"        Listen on PORT (repeatable, up to 32). UDP unless 'tcp:' is given:\n"
	"        IPFIX over TCP, one connection per exporter session. ADDR is an IPv4\n"
	"        address or an IPv6 address in brackets ([::1]:4739); without it,\n"
	"        every IPv6 and IPv4 address. Default: 2055 and 4739 (UDP).\n"
	"    --read FILE...\n"
	"        Decode files that each hold one export message exactly as it arrives\n"
	"        in a UDP payload, in the order given, as one exporter (see\n"
	"        --exporter). Further file arguments are read the same way.\n"
	"    --from-pcap FILE...\n"
	"        Replay the UDP payloads of pcap/pcapng files as export messages, each\n"
	"        from its packet's IP source and UDP source port, on the capture's\n"
	"        clock (template lifetimes are judged in capture time).\n"
	"    -f, --filter BPF\n"
	"        With --from-pcap: replay only packets matching the filter (e.g.\n"
	"        'udp port 9991'). Default: every UDP packet.\n"
	"    --exporter ADDR[:PORT]\n"
	"        Exporter that --read files come from (IPv6 as [ADDR]:PORT).\n"
	"        Default: 127.0.0.1, port 0.\n"
	"    --format table|csv|ndjson|zeek|ipfix-json\n"
	"        Output format. The first four are the flow formats of 'mamori meter'\n"
	"        (see its --help). ipfix-json writes every data record, options\n"
	"        records included, as one JSON object keyed by IANA element names,\n"
	"        with _exporter, _domain and _template. Default: table on a terminal,\n"
	"        ndjson otherwise.\n"
	"    -o, --output FILE\n"
	"        Write to FILE (created or truncated, written as records arrive).\n"
	"        Default: standard output.\n"
	"    --forward [udp://|tcp://]HOST:PORT\n"
	"        Also send every flow as IPFIX to another collector. Without -w, -o or\n"
	"        --format, nothing is written locally (a relay).\n"
	CLI_STORE_OPTIONS_HELP
	"    --workers N\n"
	"        Receive/decode threads (1..64). Default: the number of CPUs.\n"
	"    --stats-interval DURATION\n"
	"        While listening, print a stats line this often (e.g. 10s, 1m).\n"
	"        Default: 0, only at exit (replays always print only at exit).\n"
	"    --stats-file FILE\n"
	"        Append stats lines to FILE instead of standard error.\n"
	"    --template-lifetime DURATION\n"
	"        Forget a template not refreshed for this long. Default: 30m.\n"
	CLI_POLICY_OPTIONS_HELP
	"    --duration DURATION\n"
	"        Stop listening after DURATION. Default: run until SIGINT/SIGTERM.\n"
	"    --count N\n"
	"        Stop after N messages. Later messages that were already received\n"
	"        are counted as refused.after-count.\n"
	"    -q, --quiet\n"
	"        No stats on standard error (a --stats-file is still written).\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"COUNTERS\n"
	"    Each stats line is 'mamori collect: stats' (every interval) or\n"
	"    'mamori collect: final' (at exit) and name=value pairs that add up:\n"
	"        received = decoded + malformed + refused\n"
	"    received   messages from sockets, TCP streams, files or captures\n"
	"    decoded    messages decoded whole\n"
	"    malformed  messages the decoder stopped early; drop.REASON says why\n"
	"               (short-header, bad-version, bad-length, bad-set,\n"
	"               template-bad-id, template-bad-fields, template-bad-length,\n"
	"               template-overrun, template-cap, template-miss (data sets\n"
	"               whose template never came), pending-cap, record-overrun,\n"
	"               domain-cap)\n"
	"    refused    messages the collector could not hand on: refused.truncated,\n"
	"               refused.fragment (captured IP fragments), refused.tcp-framing,\n"
	"               refused.tcp-partial, refused.after-count\n"
	"    kernel-drops  datagrams the kernel dropped on a full socket buffer\n"
	"               (SO_RXQ_OVFL); they never arrived, so are not in received\n"
	"    records, records-decoded, records-dropped, flows, written (flows\n"
	"    written out), sequence-gaps and sequence-lost (records, or v9 packets,\n"
	"    the exporters' sequence numbers say were lost on the way), templates.\n"
	"    With a store: store-flows-written, store-flows-published and\n"
	"    store-segments-published. At exit one more line per exporter, version\n"
	"    and observation domain gives the same counters for that session.\n"
	"\n"
	"STORE\n"
	CLI_STORE_CRASH_HELP
	"    While listening, the store is polled every second, so a quiet feed\n"
	"    still publishes within --flush-interval.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   success, also after SIGINT/SIGTERM (the final stats are printed)\n"
	"    1   usage error (unknown option, bad value)\n"
	"    2   bad input: a missing or unreadable file, a file that is not a capture\n"
	"    3   I/O or internal error (a port that cannot be bound, a failed output,\n"
	"        a store another writer has open)\n"
	"\n"
	"EXAMPLES\n"
	"    mamori collect --stats-interval 1m\n"
	"    mamori collect -w /var/lib/mamori --flush-interval 5s\n"
	"    mamori collect --format ndjson -o flows.ndjson\n"
	"    mamori collect -l 9995 -l tcp:4739 --stats-interval 10s\n"
	"    mamori collect -l [::1]:2055 --forward tcp://collector.example:4739\n"
	"    mamori collect --read msg-0.bin msg-1.bin --format ipfix-json\n"
	"    mamori collect --from-pcap exports.pcap -f 'udp port 9991' --format csv\n";

enum long_only_option {
	OPT_READ = 256,
	OPT_FROM_PCAP,
	OPT_EXPORTER,
	OPT_FORMAT,
	OPT_FORWARD,
	OPT_WORKERS,
	OPT_STATS_INTERVAL,
	OPT_STATS_FILE,
	OPT_TEMPLATE_LIFETIME,
	OPT_DURATION,
	OPT_COUNT,
};

static const struct option long_options[] = {
	{ "listen", required_argument, NULL, 'l' },
	{ "read", required_argument, NULL, OPT_READ },
	{ "from-pcap", required_argument, NULL, OPT_FROM_PCAP },
	{ "filter", required_argument, NULL, 'f' },
	{ "exporter", required_argument, NULL, OPT_EXPORTER },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "output", required_argument, NULL, 'o' },
	{ "forward", required_argument, NULL, OPT_FORWARD },
	{ "workers", required_argument, NULL, OPT_WORKERS },
	{ "stats-interval", required_argument, NULL, OPT_STATS_INTERVAL },
	{ "stats-file", required_argument, NULL, OPT_STATS_FILE },
	{ "template-lifetime", required_argument, NULL, OPT_TEMPLATE_LIFETIME },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "count", required_argument, NULL, OPT_COUNT },
	CLI_STORE_LONG_OPTIONS,
	CLI_POLICY_LONG_OPTIONS,
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

/* Which list positional FILE arguments join: the last of --read / --from-pcap. */
enum file_mode { FILES_NONE, FILES_READ, FILES_PCAP };

/* What the command line said, before defaults are laid under it. */
struct collect_options {
	struct mm_collect_listener listeners[MM_COLLECT_LISTENERS_MAX];
	size_t n_listeners;
	const char **read_files, **pcap_files;
	size_t n_read_files, n_pcap_files;
	bool read_given, pcap_given;
	enum file_mode file_mode;
	const char *bpf;
	struct mm_addr exporter;
	uint16_t exporter_port;
	bool format_set, ipfix_json;
	enum mm_output_format format;
	const char *output_path, *stats_path, *forward;
	uint64_t workers, count;
	uint64_t stats_interval_ns, duration_ns;
	bool lifetime_set;
	uint64_t lifetime_ns;
	bool quiet;
	struct cli_store_options store;
	struct cli_policy_options policy;
};

static int add_listener(struct collect_options *o, const char *text)
{
	if (o->n_listeners == MM_COLLECT_LISTENERS_MAX)
		return cli_usage_error("collect", "--listen: at most %d listeners", MM_COLLECT_LISTENERS_MAX);
	if (mm_collect_listener_parse(&o->listeners[o->n_listeners], text) != 0)
		return cli_usage_error("collect", "--listen: %s", mm_last_error());
	o->n_listeners++;
	return 0;
}

/* ADDR, ADDR:PORT or [ADDR]:PORT; the listener syntax without a transport. */
static int parse_exporter(struct collect_options *o, const char *text)
{
	struct mm_collect_listener l;

	o->exporter_port = 0;
	if (mm_addr_parse(&o->exporter, text) == 0)
		return 0;
	if (strncmp(text, "tcp:", 4) != 0 && strncmp(text, "udp:", 4) != 0 &&
	    mm_collect_listener_parse(&l, text) == 0 && !l.any) {
		o->exporter = l.addr;
		o->exporter_port = l.port;
		return 0;
	}
	return cli_usage_error("collect", "--exporter: '%s' is not ADDR, ADDR:PORT or [ADDR]:PORT", text);
}

static int add_file(struct collect_options *o, enum file_mode mode, const char *path)
{
	const char ***list = mode == FILES_READ ? &o->read_files : &o->pcap_files;
	size_t *n = mode == FILES_READ ? &o->n_read_files : &o->n_pcap_files;
	const char **grown;

	if (*n == MAX_FILES)
		return cli_usage_error("collect", "at most %d files of each kind", MAX_FILES);
	grown = realloc(*list, (*n + 1) * sizeof(*grown));
	if (!grown) {
		fprintf(stderr, "mamori collect: out of memory\n");
		return CLI_EXIT_INTERNAL;
	}
	grown[(*n)++] = path;
	*list = grown;
	return 0;
}

static int parse_format(struct collect_options *o, const char *arg)
{
	o->format_set = true;
	if (strcmp(arg, "ipfix-json") == 0) {
		o->ipfix_json = true;
		return 0;
	}
	o->ipfix_json = false;
	if (mm_output_format_parse(arg, &o->format) != 0)
		return cli_usage_error("collect", "--format: '%s' is not table, csv, ndjson, zeek or ipfix-json",
				       arg);
	return 0;
}

static int parse_option(struct collect_options *o, int opt, const char *arg)
{
	int rc;

	switch (opt) {
	case 'l': return add_listener(o, arg);
	case 'f': o->bpf = arg; return 0;
	case 'o': o->output_path = arg; return 0;
	case 'q': o->quiet = true; return 0;
	case OPT_READ:
		o->read_given = true;
		o->file_mode = FILES_READ;
		return add_file(o, FILES_READ, arg);
	case OPT_FROM_PCAP:
		o->pcap_given = true;
		o->file_mode = FILES_PCAP;
		return add_file(o, FILES_PCAP, arg);
	case OPT_EXPORTER: return parse_exporter(o, arg);
	case OPT_FORMAT: return parse_format(o, arg);
	case OPT_FORWARD: o->forward = arg; return 0;
	case OPT_WORKERS: return cli_parse_count("collect", "--workers", arg, 1, MM_COLLECT_WORKERS_MAX, &o->workers);
	case OPT_STATS_INTERVAL: return cli_parse_duration("collect", "--stats-interval", arg, &o->stats_interval_ns);
	case OPT_STATS_FILE: o->stats_path = arg; return 0;
	case OPT_TEMPLATE_LIFETIME:
		o->lifetime_set = true;
		return cli_parse_duration("collect", "--template-lifetime", arg, &o->lifetime_ns);
	case OPT_DURATION: return cli_parse_duration("collect", "--duration", arg, &o->duration_ns);
	case OPT_COUNT: return cli_parse_count("collect", "--count", arg, 1, UINT64_MAX, &o->count);
	}
	if (cli_policy_option(&o->policy, opt, arg) == 0)
		return 0;
	rc = cli_store_option("collect", &o->store, opt, arg);
	return rc < 0 ? cli_usage_error("collect", "unknown option") : rc;
}

/* Positional FILE arguments continue the --read or --from-pcap list. */
static int add_positional(struct collect_options *o, char *const *args, int n)
{
	if (n == 0)
		return 0;
	if (o->file_mode == FILES_NONE)
		return cli_usage_error("collect", "'%s': files need --read or --from-pcap", args[0]);
	if (o->read_given && o->pcap_given)
		return cli_usage_error("collect", "'%s': with both --read and --from-pcap, name every file "
						  "with its option", args[0]);
	for (int i = 0; i < n; i++) {
		int rc = add_file(o, o->file_mode, args[i]);

		if (rc)
			return rc;
	}
	return 0;
}

static int check_usage(struct collect_options *o)
{
	bool replaying = o->n_read_files || o->n_pcap_files;

	if (replaying && o->n_listeners)
		return cli_usage_error("collect", "give --listen, or --read/--from-pcap, not both");
	if (o->bpf && !o->n_pcap_files)
		return cli_usage_error("collect", "--filter applies to --from-pcap only");
	if (o->lifetime_set && o->lifetime_ns == 0)
		return cli_usage_error("collect", "--template-lifetime must be more than 0");
	return 0;
}

/* Refuses unreadable inputs up front with the name and the system's reason. */
static int check_files(const char *const *files, size_t n)
{
	struct stat st;

	for (size_t i = 0; i < n; i++) {
		if (stat(files[i], &st) != 0) {
			fprintf(stderr, "mamori collect: %s: %s\n", files[i], strerror(errno));
			return CLI_EXIT_INPUT;
		}
		if (S_ISDIR(st.st_mode)) {
			fprintf(stderr, "mamori collect: %s: is a directory\n", files[i]);
			return CLI_EXIT_INPUT;
		}
	}
	return CLI_EXIT_OK;
}

static void default_listeners(struct collect_options *o)
{
	static const uint16_t ports[] = { MM_COLLECT_NETFLOW_PORT, MM_IPFIX_PORT };

	for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		o->listeners[o->n_listeners++] = (struct mm_collect_listener){
			.transport = MM_COLLECT_UDP, .any = true, .port = ports[i] };
}

static unsigned default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		return 1;
	return n > MM_COLLECT_WORKERS_MAX ? MM_COLLECT_WORKERS_MAX : (unsigned)n;
}

/*
 * Asked-for text (--format, -o) replaces the default store and a forwarder
 * makes a relay; -w adds the store to either. With none of them, standard
 * output gets text only where something takes it, and a terminal only when
 * there is no store to hold the flows.
 */
static void build_job(const struct collect_options *o, const struct cli_policy *policy, struct mm_collect_job *job,
		      FILE *out, FILE *stats)
{
	bool text_asked = o->format_set || o->output_path;
	struct mm_store_target store = cli_store_target(&o->store, !text_asked && !o->forward);
	bool other_sink = o->forward || o->store.dir;
	bool local_output = text_asked || (!other_sink && (cli_stdout_takes_text() ||
							   (!store.dir && isatty(STDOUT_FILENO))));

	*job = (struct mm_collect_job){
		.listeners = o->listeners,
		.n_listeners = o->n_read_files || o->n_pcap_files ? 0 : o->n_listeners,
		.read_files = o->read_files,
		.n_read_files = o->n_read_files,
		.pcap_files = o->pcap_files,
		.n_pcap_files = o->n_pcap_files,
		.pcap_filter = o->bpf,
		.read_exporter = o->exporter,
		.read_port = o->exporter_port,
		.ipfix_json = o->ipfix_json,
		.format = o->format_set ? o->format : isatty(fileno(out)) ? MM_OUTPUT_TABLE : MM_OUTPUT_NDJSON,
		.out = local_output ? out : NULL,
		.forward = o->forward,
		.workers = o->workers ? (unsigned)o->workers : default_workers(),
		.stats_interval_ns = o->stats_interval_ns,
		.stats_out = stats,
		.duration_ns = o->duration_ns,
		.max_messages = o->count,
		.store = store,
	};
	mm_ingest_config_default(&job->ingest);
	if (o->lifetime_set)
		job->ingest.template_lifetime_ns = o->lifetime_ns;
	job->ingest.sensor_id = policy->sensor_id;
	job->policy = cli_policy_target(policy, store.dir);
}

static int run_job(struct collect_options *o)
{
	struct mm_collect_job job;
	struct cli_policy policy;
	struct cli_guarded guard;
	struct cli_detect detect = { 0 };
	struct cli_output out;
	FILE *stats = o->quiet ? NULL : stderr;
	const char *data_dir = o->store.dir ? o->store.dir : mm_store_default_dir();
	int rc, exit_code = CLI_EXIT_OK;

	rc = cli_policy_open(&policy, "collect", &o->policy, data_dir);
	if (rc)
		return rc;
	rc = cli_guard_collect(&guard, "collect", o->policy.authz, data_dir, policy.sensor_id, o->quiet);
	if (rc) {
		cli_policy_close(&policy);
		return rc;
	}
	if (o->policy.detect && (exit_code = cli_detect_open(&detect, "collect", data_dir, policy.conf, o->policy.detect_authz,
						      o->quiet)) != 0)
		goto done;
	rc = cli_output_open(&out, o->output_path);
	if (rc) {
		exit_code = cli_fail("collect", rc);
		goto done;
	}
	if (o->stats_path && !(stats = fopen(o->stats_path, "a"))) {
		fprintf(stderr, "mamori collect: %s: %s\n", o->stats_path, strerror(errno));
		cli_output_close(&out, false);
		exit_code = CLI_EXIT_INTERNAL;
		goto done;
	}
	build_job(o, &policy, &job, out.fp, stats);
	if (o->policy.detect)
		job.tap = cli_detect_tap(&detect);
	cli_install_stop_signals(mm_pipeline_collect_stop);
	rc = mm_pipeline_collect(&job);
	if (rc == MM_EIO && !out.name && cli_stdout_reader_gone()) {
		/* The reader of our output went away (| head): done, quietly. */
		rc = 0;
	} else if (rc) {
		exit_code = cli_fail("collect", rc);
	}
	exit_code = cli_detect_close(&detect, stats, exit_code);
	if (o->stats_path && fclose(stats) != 0 && exit_code == CLI_EXIT_OK) {
		fprintf(stderr, "mamori collect: %s: %s\n", o->stats_path, strerror(errno));
		exit_code = CLI_EXIT_INTERNAL;
	}
	rc = cli_output_close(&out, exit_code == CLI_EXIT_OK);
	if (rc && exit_code == CLI_EXIT_OK)
		exit_code = cli_fail("collect", rc);
done:
	exit_code = cli_detect_close(&detect, NULL, exit_code);
	cli_policy_close(&policy);
	return cli_guard_finish(&guard, "collect", exit_code);
}

static int parse_args(struct collect_options *o, int argc, char **argv)
{
	int opt, rc;

	optind = 1;
	opterr = 0;
	mm_addr_set_v4_u32(&o->exporter, 0x7f000001); /* 127.0.0.1 */
	cli_store_options_init(&o->store);
	while ((opt = getopt_long(argc, argv, ":l:f:o:w:qh", long_options, NULL)) != -1) {
		if (opt == 'h') {
			fputs(usage_text, stdout);
			return -1;
		}
		if (opt == '?' && optopt)
			return cli_usage_error("collect", "unknown option '-%c'", optopt);
		if (opt == '?')
			return cli_usage_error("collect", "unknown option '%s'", argv[optind - 1]);
		if (opt == ':')
			return cli_usage_error("collect", "option '%s' needs a value", argv[optind - 1]);
		rc = parse_option(o, opt, optarg);
		if (rc)
			return rc;
	}
	rc = add_positional(o, argv + optind, argc - optind);
	if (rc == 0)
		rc = check_usage(o);
	if (rc == 0)
		rc = check_files(o->read_files, o->n_read_files);
	if (rc == 0)
		rc = check_files(o->pcap_files, o->n_pcap_files);
	if (rc == 0 && !o->n_read_files && !o->n_pcap_files && !o->n_listeners)
		default_listeners(o);
	return rc;
}

int cmd_collect(int argc, char **argv)
{
	struct collect_options o = { 0 };
	int rc = parse_args(&o, argc, argv);

	if (rc == 0)
		rc = run_job(&o);
	else if (rc < 0)
		rc = CLI_EXIT_OK; /* --help */
	free(o.read_files);
	free(o.pcap_files);
	return rc;
}
