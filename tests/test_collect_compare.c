/*
 * Third-party cross-checks of `mamori collect` and the IPFIX exporter (issue 3):
 * a capture metered and exported to mamori's collector and to nfcapd, every
 * field compared; NetFlow/IPFIX captures decoded by tshark and by
 * `collect --from-pcap`, record by record; the same export streams replayed
 * to nfcapd, flow and byte/packet totals compared. Each input prints one
 * summary line; docs/collect-compat.md explains every accepted difference.
 */
#include "mamori/synth.h"

#include "test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERVERS 4
#define MAX_RECORDS 200000
#define MAX_FIELDS 32
#define MAX_EXPORTERS 16
#define MAX_INPUTS 64
#define WAIT_STEP_US 20000
#define WAIT_STEPS 1500 /* 30 s: a bound on hangs, never a pass/fail threshold */

/* ---- servers started by the tests, always stopped (.fini) ---- */

static pid_t servers[MAX_SERVERS];
static size_t n_servers;

static bool on_path(const char *tool)
{
	const char *path = getenv("PATH");
	char buf[512];

	while (path && *path) {
		size_t len = strcspn(path, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)len, path, tool);
		if (access(buf, X_OK) == 0)
			return true;
		path += len + (path[len] == ':');
	}
	return false;
}

static pid_t spawn(const char *const argv[], const char *out_path, const char *err_path)
{
	pid_t pid;

	cr_assert_lt(n_servers, MAX_SERVERS);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGTERM); /* no server outlives a crashed test */
		dup2(out, STDOUT_FILENO);
		dup2(err, STDERR_FILENO);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	servers[n_servers++] = pid;
	return pid;
}

/*
 * SIGTERM lets nfcapd close its file and mamori flush its writer; returns
 * the exit status. nfcapd_port: nfcapd's port, for tu_stop_nfcapd's wake-up
 * datagram; 0 for mamori, which needs none.
 */
static int stop_server(pid_t pid, uint16_t nfcapd_port)
{
	int status = 0;

	for (size_t i = 0; i < n_servers; i++) {
		if (servers[i] != pid)
			continue;
		servers[i] = servers[--n_servers];
		if (nfcapd_port)
			return tu_stop_nfcapd(pid, nfcapd_port);
		kill(pid, SIGTERM);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	}
	return -1;
}

static void stop_all_servers(void)
{
	while (n_servers)
		stop_server(servers[n_servers - 1], 0);
}

static void server_alive(pid_t pid, const char *what)
{
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "%s exited early", what);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Scratch directories go when a test passes; a failing one leaves its files to look at. */
static void remove_scratch(char *dir)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(dir);
}

/* ---- loopback ports and their state in /proc/net ---- */

static uint16_t free_port(int type)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, type, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* State and receive queue of the 127.0.0.1:port socket in /proc/net/{udp,tcp}; false if none. */
static bool socket_state(const char *table, uint16_t port, unsigned *state, unsigned *rx)
{
	char want[32], *text = tu_read_file(table, NULL), *line;
	bool found = false;

	cr_assert_not_null(text);
	snprintf(want, sizeof(want), "0100007F:%04X 00000000:0000", port);
	line = strstr(text, want);
	/* local remote st tx_queue:rx_queue */
	if (line && sscanf(line, "%*s %*s %x %*x:%x", state, rx) == 2)
		found = true;
	free(text);
	return found;
}

#define TCP_LISTEN 0x0A

static void wait_bound(pid_t pid, const char *table, uint16_t port, unsigned want_state)
{
	unsigned state = 0, rx = 0;

	for (int i = 0; i < WAIT_STEPS; i++) {
		if (socket_state(table, port, &state, &rx) && (!want_state || state == want_state))
			return;
		server_alive(pid, table);
		usleep(WAIT_STEP_US);
	}
	cr_assert_fail("nothing listens on 127.0.0.1:%u (%s)", port, table);
}

/* The receiver has read every datagram queued on its socket, so SIGTERM does not race the data. */
static void wait_udp_drained(uint16_t port)
{
	unsigned state = 0, rx = 1;

	for (int i = 0; i < WAIT_STEPS; i++) {
		cr_assert(socket_state("/proc/net/udp", port, &state, &rx), "udp port %u is gone", port);
		if (rx == 0)
			return;
		usleep(WAIT_STEP_US);
	}
	cr_assert_fail("udp port %u never drained", port);
}

/* ---- small parsers ---- */

/* "2023-02-28T09:46:01.088000Z" or "Feb 28, 2023 09:46:01.088000000 UTC" (fmt) to Unix ns; 0 if not. */
static uint64_t parse_time_ns(const char *text, const char *fmt)
{
	struct tm tm = { 0 };
	const char *rest = text ? strptime(text, fmt, &tm) : NULL;
	uint64_t ns = 0, scale = 100000000;

	if (!rest)
		return 0;
	if (*rest == '.')
		for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10)
			ns += (uint64_t)(*rest - '0') * scale;
	return (uint64_t)timegm(&tm) * 1000000000ull + ns;
}

#define RFC3339 "%Y-%m-%dT%H:%M:%S"

static uint64_t num(json_t *v)
{
	if (json_is_integer(v))
		return (uint64_t)json_integer_value(v);
	if (json_is_string(v))
		return strtoull(json_string_value(v), NULL, 0);
	if (json_is_array(v)) /* tshark --no-duplicate-keys: a forward and a reverse counter */
		return num(json_array_get(v, 0));
	return 0;
}

static const char *str(json_t *v)
{
	if (json_is_array(v))
		v = json_array_get(v, 0);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* One line of NDJSON per flow into arr. */
static json_t *load_ndjson(const char *text)
{
	json_t *arr = json_array();

	for (const char *line = text; line && *line;) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		json_error_t jerr;

		if (len) {
			json_t *obj = json_loadb(line, len, JSON_ALLOW_NUL, &jerr);
			cr_assert_not_null(obj, "bad NDJSON line: %s: %.80s", jerr.text, line);
			cr_assert_lt(json_array_size(arr), MAX_RECORDS);
			json_array_append_new(arr, obj);
		}
		line = nl ? nl + 1 : NULL;
	}
	return arr;
}

/* ---- comparing two decodes: records keyed, paired in order, fields tallied ---- */

struct keyed {
	char key[192];
	size_t order;
	json_t *rec;
};

struct tally {
	size_t n_a, n_b, matched, only_a, only_b;
	size_t n_fields;
	const char *const *fields;
	size_t mismatch[MAX_FIELDS];
	char example[MAX_FIELDS][200];
};

static int cmp_keyed(const void *pa, const void *pb)
{
	const struct keyed *a = pa, *b = pb;
	int c = strcmp(a->key, b->key);

	if (c)
		return c;
	return a->order < b->order ? -1 : a->order > b->order;
}

/* Views carry "_key"; sorts them by it, keeping each side's order among equal keys. */
static struct keyed *keyed_sort(json_t *views, size_t *n)
{
	struct keyed *k = calloc(json_array_size(views) + 1, sizeof(*k));
	size_t i;
	json_t *v;

	cr_assert_not_null(k);
	json_array_foreach(views, i, v) {
		snprintf(k[i].key, sizeof(k[i].key), "%s", str(json_object_get(v, "_key")));
		k[i].order = i;
		k[i].rec = v;
	}
	*n = json_array_size(views);
	qsort(k, *n, sizeof(*k), cmp_keyed);
	return k;
}

static void compare_fields(struct tally *t, json_t *a, json_t *b)
{
	for (size_t f = 0; f < t->n_fields; f++) {
		json_t *va = json_object_get(a, t->fields[f]), *vb = json_object_get(b, t->fields[f]);
		char *ta, *tb;

		if ((!va && !vb) || (va && vb && json_equal(va, vb)))
			continue;
		if (t->mismatch[f]++)
			continue;
		ta = va ? json_dumps(va, JSON_ENCODE_ANY) : NULL;
		tb = vb ? json_dumps(vb, JSON_ENCODE_ANY) : NULL;
		snprintf(t->example[f], sizeof(t->example[f]), "%s: %s vs %s", str(json_object_get(a, "_key")),
			 ta ? ta : "(absent)", tb ? tb : "(absent)");
		free(ta);
		free(tb);
	}
}

static void compare_views(struct tally *t, json_t *a, json_t *b, const char *const *fields)
{
	size_t na, nb, i = 0, j = 0;
	struct keyed *ka = keyed_sort(a, &na), *kb = keyed_sort(b, &nb);

	memset(t, 0, sizeof(*t));
	t->fields = fields;
	while (fields[t->n_fields])
		t->n_fields++;
	cr_assert_leq(t->n_fields, MAX_FIELDS);
	t->n_a = na;
	t->n_b = nb;
	while (i < na || j < nb) {
		int c = i == na ? 1 : j == nb ? -1 : strcmp(ka[i].key, kb[j].key);

		if (c < 0) {
			t->only_a++;
			i++;
		} else if (c > 0) {
			t->only_b++;
			j++;
		} else {
			t->matched++;
			compare_fields(t, ka[i++].rec, kb[j++].rec);
		}
	}
	free(ka);
	free(kb);
}

static size_t tally_mismatches(const struct tally *t)
{
	size_t n = 0;

	for (size_t f = 0; f < t->n_fields; f++)
		n += t->mismatch[f];
	return n;
}

/* One summary line per input, then a line per field that differs, with its first example. */
static void tally_print(const char *check, const char *input, const char *a, const char *b, const struct tally *t)
{
	fprintf(stderr, "%-22s %-58s %s=%zu %s=%zu matched=%zu only-%s=%zu only-%s=%zu field-diffs=%zu\n", check,
		input, a, t->n_a, b, t->n_b, t->matched, a, t->only_a, b, t->only_b, tally_mismatches(t));
	for (size_t f = 0; f < t->n_fields; f++)
		if (t->mismatch[f])
			fprintf(stderr, "    %-14s differs in %zu: %s\n", t->fields[f], t->mismatch[f], t->example[f]);
}

static void set_key(json_t *view, const char *fmt_key)
{
	json_object_set_new(view, "_key", json_string(fmt_key));
}

/* ---- flows: mamori NDJSON and nfdump JSON as comparable views ---- */

static bool is_icmp(uint64_t proto)
{
	return proto == 1 || proto == 58;
}

/*
 * Flows are keyed by what every decoder keeps: 5-tuple (ICMP without ports,
 * which nfdump replaces by type/code), VLAN and the start millisecond.
 */
static void key_flow(json_t *view)
{
	char key[192];
	uint64_t proto = num(json_object_get(view, "proto"));
	bool icmp = is_icmp(proto);

	snprintf(key, sizeof(key), "%s|%llu|%s|%llu|%llu|%llu|%llu", str(json_object_get(view, "src")),
		 icmp ? 0ull : (unsigned long long)num(json_object_get(view, "src_port")),
		 str(json_object_get(view, "dst")),
		 icmp ? 0ull : (unsigned long long)num(json_object_get(view, "dst_port")),
		 (unsigned long long)proto, (unsigned long long)num(json_object_get(view, "vlan")),
		 (unsigned long long)(num(json_object_get(view, "first_ns")) / 1000000));
	set_key(view, key);
}

static json_t *mamori_views(json_t *flows)
{
	json_t *views = json_array(), *f;
	size_t i;

	json_array_foreach(flows, i, f) {
		json_t *v = json_deep_copy(f);
		key_flow(v);
		json_array_append_new(views, v);
	}
	return views;
}

/* What nfdump should show for a metered flow: times in ms, ICMP without ports, forward flags. */
static json_t *nfdump_expected_views(json_t *flows)
{
	json_t *views = json_array(), *f;
	size_t i;

	json_array_foreach(flows, i, f) {
		uint64_t proto = num(json_object_get(f, "proto"));
		json_t *v = json_pack("{s:O, s:O, s:I, s:I, s:I, s:O, s:O, s:O, s:O, s:I, s:I, s:O, s:O, s:O, s:O}",
				      "src", json_object_get(f, "src"), "dst", json_object_get(f, "dst"),
				      "src_port", (json_int_t)(is_icmp(proto) ? 0 : num(json_object_get(f, "src_port"))),
				      "dst_port", (json_int_t)(is_icmp(proto) ? 0 : num(json_object_get(f, "dst_port"))),
				      "proto", (json_int_t)proto, "fwd_packets", json_object_get(f, "fwd_packets"),
				      "fwd_bytes", json_object_get(f, "fwd_bytes"), "rev_packets",
				      json_object_get(f, "rev_packets"), "rev_bytes", json_object_get(f, "rev_bytes"),
				      "first_ms", (json_int_t)(num(json_object_get(f, "first_ns")) / 1000000), "last_ms",
				      (json_int_t)(num(json_object_get(f, "last_ns")) / 1000000), "fwd_tcp_flags",
				      json_object_get(f, "fwd_tcp_flags"), "icmp_type", json_object_get(f, "icmp_type"),
				      "icmp_code", json_object_get(f, "icmp_code"), "vlan", json_object_get(f, "vlan"));

		cr_assert_not_null(v);
		json_object_set_new(v, "first_ns", json_integer((json_int_t)num(json_object_get(f, "first_ns"))));
		key_flow(v);
		json_object_del(v, "first_ns");
		json_array_append_new(views, v);
	}
	return views;
}

/* nfdump's flag text: CWR ECE URG ACK PSH RST SYN FIN, '.' when clear. */
static uint64_t nfdump_flags(const char *text)
{
	uint64_t flags = 0;

	for (int i = 0; text && i < 8 && text[i]; i++)
		if (text[i] != '.')
			flags |= 0x80u >> i;
	return flags;
}

static json_t *nfdump_views(json_t *records)
{
	json_t *views = json_array(), *r;
	size_t i;

	json_array_foreach(records, i, r) {
		json_t *src = json_object_get(r, "src4_addr"), *dst = json_object_get(r, "dst4_addr");
		uint64_t first_ns = parse_time_ns(str(json_object_get(r, "first")), RFC3339);
		uint64_t last_ns = parse_time_ns(str(json_object_get(r, "last")), RFC3339);
		json_t *v;

		if (strcmp(str(json_object_get(r, "type")) ? str(json_object_get(r, "type")) : "", "FLOW") != 0)
			continue;
		if (!src) {
			src = json_object_get(r, "src6_addr");
			dst = json_object_get(r, "dst6_addr");
		}
		v = json_pack("{s:O?, s:O?, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			      "src", src, "dst", dst, "src_port", (json_int_t)num(json_object_get(r, "src_port")),
			      "dst_port", (json_int_t)num(json_object_get(r, "dst_port")), "proto",
			      (json_int_t)num(json_object_get(r, "proto")), "fwd_packets",
			      (json_int_t)num(json_object_get(r, "in_packets")), "fwd_bytes",
			      (json_int_t)num(json_object_get(r, "in_bytes")), "rev_packets",
			      (json_int_t)num(json_object_get(r, "out_packets")), "rev_bytes",
			      (json_int_t)num(json_object_get(r, "out_bytes")), "first_ms",
			      (json_int_t)(first_ns / 1000000), "last_ms", (json_int_t)(last_ns / 1000000),
			      "fwd_tcp_flags", (json_int_t)nfdump_flags(str(json_object_get(r, "tcp_flags"))),
			      "icmp_type", (json_int_t)num(json_object_get(r, "icmp_type")), "icmp_code",
			      (json_int_t)num(json_object_get(r, "icmp_code")), "vlan",
			      (json_int_t)num(json_object_get(r, "src_vlan")), "first_ns", (json_int_t)first_ns);
		cr_assert_not_null(v);
		key_flow(v);
		json_object_del(v, "first_ns");
		json_array_append_new(views, v);
	}
	return views;
}

/* ---- running mamori, nfcapd and nfdump ---- */

static char *run_ok(const char *const argv[], const char *what)
{
	char *out = NULL, *err = NULL;
	int rc = tu_run(argv, NULL, &out, &err);

	cr_assert_eq(rc, 0, "%s failed (%d): %s", what, rc, err);
	free(err);
	return out;
}

struct nfcapd {
	pid_t pid;
	uint16_t port;
	char dir[256];
};

static void nfcapd_start(struct nfcapd *n, const char *scratch)
{
	char port[8], out[300], err[300];
	const char *argv[] = { "nfcapd", "-b", "127.0.0.1", "-p", port, "-w", n->dir, "-t", "3600",
			       /* a receive buffer for a whole replay, so the kernel drops nothing */
			       "-B", "8000000", NULL };

	static unsigned started; /* free ports repeat across runs: name dirs by run, not port */

	n->port = free_port(SOCK_DGRAM);
	snprintf(port, sizeof(port), "%u", n->port);
	snprintf(n->dir, sizeof(n->dir), "%s/nfcapd-%u", scratch, ++started);
	cr_assert_eq(mkdir(n->dir, 0700), 0);
	snprintf(out, sizeof(out), "%s.out", n->dir);
	snprintf(err, sizeof(err), "%s.err", n->dir);
	n->pid = spawn(argv, out, err);
	wait_bound(n->pid, "/proc/net/udp", n->port, 0);
}

/* Waits for nfcapd to read everything, stops it (it closes its file) and returns nfdump's output. */
static char *nfcapd_finish(struct nfcapd *n, const char *option, const char *value)
{
	const char *argv[] = { "nfdump", "-R", n->dir, option, value, NULL };

	wait_udp_drained(n->port);
	cr_assert_eq(stop_server(n->pid, n->port), 0, "nfcapd did not stop cleanly");
	return run_ok(argv, "nfdump");
}

static uint64_t stat_value(const char *text, const char *key)
{
	const char *hit = text ? strstr(text, key) : NULL;

	return hit ? strtoull(hit + strlen(key), NULL, 10) : 0;
}

/* ---- 1. round trip: meter -> IPFIX -> mamori collect and nfcapd ---- */

struct metered {
	json_t *flows;  /* the meter's own NDJSON */
	json_t *collected;
	char *collect_err;
};

/* Waits until the collector's stats file says it wrote n flows (bounded, see WAIT_STEPS). */
static void wait_collected(pid_t pid, const char *stats_path, uint64_t n)
{
	for (int i = 0; i < WAIT_STEPS; i++) {
		char *stats = tu_read_file(stats_path, NULL);
		uint64_t written = 0;

		/* the lines are periodic totals, so the largest is the newest */
		for (const char *p = stats; p && (p = strstr(p, " written=")); p++) {
			uint64_t v = strtoull(p + 9, NULL, 10);
			written = v > written ? v : written;
		}
		free(stats);
		if (written >= n)
			return;
		server_alive(pid, "mamori collect");
		usleep(WAIT_STEP_US);
	}
	cr_assert_fail("mamori collect never wrote %llu flows", (unsigned long long)n);
}

static void meter_to_mamori(const char *pcap, const char *scratch, struct metered *m)
{
	uint16_t port = free_port(SOCK_STREAM);
	char listen[64], dest[64], out[300], err[300], stats[300];
	const char *collect[] = { tu_mamori_bin(), "collect", "-l", listen, "--workers", "1", "--format", "ndjson",
				  "--stats-interval", "100ms", "--stats-file", stats, "-q", NULL };
	const char *meter[] = { tu_mamori_bin(), "meter", "-q", "--sensor", "7", "--format", "ndjson", "--ipfix",
				dest, pcap, NULL };
	char *meter_out;
	pid_t pid;

	snprintf(listen, sizeof(listen), "tcp:127.0.0.1:%u", port);
	snprintf(dest, sizeof(dest), "tcp://127.0.0.1:%u", port);
	snprintf(out, sizeof(out), "%s/collect-%u.ndjson", scratch, port);
	snprintf(err, sizeof(err), "%s/collect-%u.err", scratch, port);
	snprintf(stats, sizeof(stats), "%s/collect-%u.stats", scratch, port);
	pid = spawn(collect, out, err);
	wait_bound(pid, "/proc/net/tcp", port, TCP_LISTEN);
	meter_out = run_ok(meter, "mamori meter --ipfix");
	m->flows = load_ndjson(meter_out);
	free(meter_out);
	wait_collected(pid, stats, json_array_size(m->flows));
	cr_assert_eq(stop_server(pid, 0), 0, "mamori collect did not stop cleanly");
	meter_out = tu_read_file(out, NULL);
	m->collected = load_ndjson(meter_out);
	free(meter_out);
	m->collect_err = tu_read_file(stats, NULL);
}

static const char *const roundtrip_fields[] = {
	"src", "dst", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes",
	"first_ns", "last_ns", "fwd_tcp_flags", "rev_tcp_flags", "icmp_type", "icmp_code", "vlan",
	"end_reason", "id", "sensor_id", "sampling_rate", "next_hop", "src_as", "dst_as", "in_if", "out_if",
	NULL
};

static void roundtrip_mamori(const char *name, const char *pcap, const char *scratch)
{
	struct metered m = { 0 };
	struct tally t;
	json_t *a, *b;

	meter_to_mamori(pcap, scratch, &m);
	a = mamori_views(m.flows);
	b = mamori_views(m.collected);
	compare_views(&t, a, b, roundtrip_fields);
	tally_print("roundtrip-mamori", name, "meter", "collect", &t);
	cr_assert_gt(t.n_a, 0, "%s: the meter wrote no flows", name);
	cr_expect_eq(t.n_b, t.n_a, "%s: collect has %zu flows, the meter %zu", name, t.n_b, t.n_a);
	cr_expect_eq(t.matched, t.n_a, "%s: %zu flows did not match", name, t.n_a - t.matched);
	for (size_t f = 0; f < t.n_fields; f++)
		cr_expect_eq(t.mismatch[f], 0, "%s: %s differs in %zu flows, first: %s", name, t.fields[f],
			     t.mismatch[f], t.example[f]);
	json_decref(a);
	json_decref(b);
	json_decref(m.flows);
	json_decref(m.collected);
	free(m.collect_err);
}

static const char *const nfdump_flow_fields[] = {
	"src", "dst", "src_port", "dst_port", "proto", "fwd_packets", "fwd_bytes", "rev_packets", "rev_bytes",
	"first_ms", "last_ms", "fwd_tcp_flags", "icmp_type", "icmp_code", "vlan", NULL
};

static void roundtrip_nfcapd(const char *name, const char *pcap, const char *scratch)
{
	struct nfcapd n;
	char dest[64], *out, *json_text;
	const char *meter[] = { tu_mamori_bin(), "meter", "-q", "--format", "ndjson", "--ipfix", dest, pcap, NULL };
	json_t *flows, *nfd, *a, *b;
	json_error_t jerr;
	struct tally t;

	nfcapd_start(&n, scratch);
	snprintf(dest, sizeof(dest), "udp://127.0.0.1:%u", n.port);
	out = run_ok(meter, "mamori meter --ipfix");
	flows = load_ndjson(out);
	free(out);
	json_text = nfcapd_finish(&n, "-o", "json");
	nfd = json_loads(json_text, 0, &jerr);
	cr_assert_not_null(nfd, "nfdump -o json: %s", jerr.text);
	a = nfdump_expected_views(flows);
	b = nfdump_views(nfd);
	compare_views(&t, a, b, nfdump_flow_fields);
	tally_print("roundtrip-nfcapd", name, "meter", "nfdump", &t);
	cr_assert_gt(t.n_a, 0);
	cr_expect_eq(t.n_b, t.n_a, "%s: nfdump has %zu flows, the meter %zu", name, t.n_b, t.n_a);
	cr_expect_eq(t.matched, t.n_a, "%s: %zu flows did not match", name, t.n_a - t.matched);
	for (size_t f = 0; f < t.n_fields; f++)
		cr_expect_eq(t.mismatch[f], 0, "%s: %s differs in %zu flows, first: %s", name, t.fields[f],
			     t.mismatch[f], t.example[f]);
	json_decref(a);
	json_decref(b);
	json_decref(flows);
	json_decref(nfd);
	free(json_text);
}

/* A few thousand flows over IPv4 and IPv6, TCP, UDP and ICMP, some on VLANs. */
static char *synth_capture(const char *scratch)
{
	char *path;
	const char *argv[] = { tu_mamori_bin(), "synth", "-q", "--seed", "3", "--flows", "3000", "--packets",
			       "30000", "--ipv6-share", "0.3", "-o", NULL, NULL };

	cr_assert_geq(asprintf(&path, "%s/synth.pcap", scratch), 0);
	argv[12] = path;
	free(run_ok(argv, "mamori synth"));
	return path;
}

static void require_tools(const char *const *tools)
{
	for (; *tools; tools++)
		if (!on_path(*tools))
			cr_skip_test("%s is not installed (apt-get install nfdump tshark)", *tools);
}

TestSuite(collect_compare, .fini = stop_all_servers, .timeout = 280);

Test(collect_compare, roundtrip_synth_to_mamori_collect)
{
	char *scratch = tu_tmpdir(), *pcap = synth_capture(scratch);

	roundtrip_mamori("synth seed 3, 3000 flows", pcap, scratch);
	free(pcap);
	remove_scratch(scratch);
}

Test(collect_compare, roundtrip_zeek_tunnels_to_mamori_collect)
{
	TU_REQUIRE_SHARED(vxlan, "zeek/core.tunnels.vxlan/vxlan.pcap");
	TU_REQUIRE_SHARED(gre, "zeek/core.tunnels.gre-in-gre/gre-within-gre.pcap");
	char *scratch = tu_tmpdir();

	roundtrip_mamori("zeek vxlan.pcap", vxlan, scratch);
	roundtrip_mamori("zeek gre-within-gre.pcap", gre, scratch);
	free(vxlan);
	free(gre);
	remove_scratch(scratch);
}

Test(collect_compare, roundtrip_synth_to_nfcapd)
{
	static const char *const tools[] = { "nfcapd", "nfdump", NULL };
	require_tools(tools);
	char *scratch = tu_tmpdir(), *pcap = synth_capture(scratch);

	roundtrip_nfcapd("synth seed 3, 3000 flows", pcap, scratch);
	free(pcap);
	remove_scratch(scratch);
}

Test(collect_compare, roundtrip_zeek_tunnels_to_nfcapd)
{
	static const char *const tools[] = { "nfcapd", "nfdump", NULL };
	require_tools(tools);
	TU_REQUIRE_SHARED(vxlan, "zeek/core.tunnels.vxlan/vxlan.pcap");
	char *scratch = tu_tmpdir();

	roundtrip_nfcapd("zeek vxlan.pcap", vxlan, scratch);
	free(vxlan);
	remove_scratch(scratch);
}

/* ---- export captures: the shared ones and the logstash .dat files wrapped as UDP ---- */

struct input {
	char name[128];
	char pcap[300];
	uint16_t port;
};

struct inputs {
	struct input in[MAX_INPUTS];
	size_t n;
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* Ethernet / IPv4 / UDP from 192.0.2.7:40000 to 192.0.2.1:port around one export message. */
static size_t udp_frame(uint8_t *frame, size_t cap, const uint8_t *payload, size_t len, uint16_t port)
{
	static const uint8_t eth[14] = { [12] = 0x08, [13] = 0x00 }; /* zero MACs, type IPv4 */
	static const uint8_t ip[20] = {
		0x45, 0x00, 0, 0,           /* v4, IHL 5, TOS 0, total length (set below) */
		0x00, 0x00, 0x00, 0x00,     /* id 0, no fragment */
		64, 17, 0, 0,               /* TTL 64, UDP, checksum (set below) */
		192, 0, 2, 7, 192, 0, 2, 1, /* the exporter 192.0.2.7 -> the collector 192.0.2.1 */
	};
	uint8_t *p = frame + sizeof(eth);
	uint32_t sum = 0;

	if (len > 65535 - 28 || sizeof(eth) + 28 + len > cap)
		return 0;
	memcpy(frame, eth, sizeof(eth));
	memcpy(p, ip, sizeof(ip));
	put16(p + 2, (uint16_t)(28 + len));
	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	put16(p + 10, (uint16_t)~sum);
	put16(p + 20, 40000);            /* UDP source port */
	put16(p + 22, port);             /* destination port */
	put16(p + 24, (uint16_t)(8 + len));
	put16(p + 26, 0);                /* no checksum (allowed over IPv4) */
	memcpy(p + 28, payload, len);
	return sizeof(eth) + 28 + len;
}

/* Each case's .dat files in the codec's order, one second apart, as one capture. */
static void wrap_logstash_case(const char *root, const char *name, const char *scratch, struct input *in)
{
	char path[600];
	json_t *exp, *files, *f;
	json_error_t jerr;
	struct mm_pcap_writer *w = NULL;
	size_t i;
	static uint8_t frame[65600];

	snprintf(path, sizeof(path), "%s/%s/expected.json", root, name);
	exp = json_load_file(path, JSON_ALLOW_NUL, &jerr);
	cr_assert_not_null(exp, "%s: %s", path, jerr.text);
	files = json_object_get(exp, "input_packets_in_order");
	snprintf(in->name, sizeof(in->name), "logstash %s", name);
	snprintf(in->pcap, sizeof(in->pcap), "%s/%.200s.pcap", scratch, name);
	in->port = 2055;
	cr_assert_eq(mm_pcap_writer_open(&w, in->pcap, 1 /* Ethernet */, 65535), 0);
	json_array_foreach(files, i, f) {
		size_t len, frame_len;
		uint8_t *msg;

		snprintf(path, sizeof(path), "%s/%s/%s", root, name, json_string_value(f));
		msg = (uint8_t *)tu_read_file(path, &len);
		cr_assert_not_null(msg, "cannot read %s", path);
		if (len >= 2 && msg[0] == 0 && msg[1] == 10)
			in->port = 4739; /* IPFIX's port, so every tool guesses the protocol alike */
		frame_len = udp_frame(frame, sizeof(frame), msg, len, in->port);
		cr_assert_gt(frame_len, 0, "%s: %zu bytes do not fit one datagram", path, len);
		cr_assert_eq(mm_pcap_writer_write(w, 1700000000000000000ull + i * 1000000000ull, frame,
						  (uint32_t)frame_len, (uint32_t)frame_len), 0);
		free(msg);
	}
	cr_assert_eq(mm_pcap_writer_close(w), 0);
	json_decref(exp);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void logstash_inputs(struct inputs *ins, const char *scratch)
{
	TU_REQUIRE_SHARED(root, "logstash-netflow");
	char *names[MAX_INPUTS];
	size_t n = 0;
	struct dirent *de;
	DIR *d = opendir(root);

	cr_assert_not_null(d);
	while ((de = readdir(d))) {
		char probe[600];
		struct stat st;

		snprintf(probe, sizeof(probe), "%s/%s/expected.json", root, de->d_name);
		if (de->d_name[0] == '.' || stat(probe, &st) != 0)
			continue;
		cr_assert_lt(n, MAX_INPUTS);
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), cmp_names);
	for (size_t i = 0; i < n; i++) {
		cr_assert_lt(ins->n, MAX_INPUTS);
		wrap_logstash_case(root, names[i], scratch, &ins->in[ins->n++]);
		free(names[i]);
	}
	free(root);
}

static void shared_inputs(struct inputs *ins)
{
	static const struct {
		const char *rel;
		uint16_t port;
	} captures[] = {
		{ "ndpi/netflowv9.pcap", 2057 },
		{ "ndpi/netflow-fritz.pcap", 2055 },
		{ "pmacct-nfacctd/100-IPFIXv10-CISCO/traffic-00.pcap", 9991 },
		{ "pmacct-nfacctd/104-IPFIXv10-IPv6-CISCO-sampling_option/traffic-00.pcap", 9992 },
	};

	for (size_t i = 0; i < sizeof(captures) / sizeof(captures[0]); i++) {
		char *path = tu_shared_path(captures[i].rel);
		struct input *in = &ins->in[ins->n];

		if (!path) {
			fprintf(stderr, "skipped: ../shared/data/%s is absent\n", captures[i].rel);
			continue;
		}
		snprintf(in->name, sizeof(in->name), "%s", captures[i].rel);
		snprintf(in->pcap, sizeof(in->pcap), "%s", path);
		in->port = captures[i].port;
		ins->n++;
		free(path);
	}
	if (!ins->n)
		cr_skip_test("needs the ndpi and pmacct-nfacctd captures in ../shared/data");
}

/* ---- 2. tshark -T json against collect --format ipfix-json ---- */

/* "1.216000000" seconds of sysUpTime to ms. */
static uint64_t seconds_text_ms(const char *text)
{
	char *rest;
	uint64_t ms = text ? strtoull(text, &rest, 10) * 1000 : 0, scale = 100;

	if (text && *rest == '.')
		for (rest++; *rest >= '0' && *rest <= '9' && scale; rest++, scale /= 10)
			ms += (uint64_t)(*rest - '0') * scale;
	return ms;
}

/* A decoded record's times as one comparable text: "up:<ms>" for sysUpTime, "ns:<ns>" for absolute. */
static void set_time(json_t *view, const char *key, bool uptime, uint64_t value)
{
	char text[40];

	snprintf(text, sizeof(text), "%s:%llu", uptime ? "up" : "ns", (unsigned long long)value);
	json_object_set_new(view, key, json_string(text));
}

static void key_record(json_t *view)
{
	char key[192];

	snprintf(key, sizeof(key), "%s|%s|%s|%s|%s", str(json_object_get(view, "src")),
		 str(json_object_get(view, "src_port")), str(json_object_get(view, "dst")),
		 str(json_object_get(view, "dst_port")), str(json_object_get(view, "proto")));
	set_key(view, key);
}

static void set_text(json_t *view, const char *key, json_t *value)
{
	char buf[64];

	if (!value)
		return;
	if (str(value)) {
		json_object_set_new(view, key, json_string(str(value)));
		return;
	}
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)num(value));
	json_object_set_new(view, key, json_string(buf));
}

/*
 * Where tshark put a record's start and end: in the record itself when only
 * one is known, else under cflow.timedelta_tree, which --no-duplicate-keys
 * turns into an array when a template has two time pairs (the first wins).
 */
static json_t *tshark_times(json_t *r)
{
	json_t *tree = json_object_get(r, "cflow.timedelta_tree"), *t;
	size_t i;

	if (json_object_get(r, "cflow.abstimestart") || json_object_get(r, "cflow.timestart"))
		return r;
	if (!json_is_array(tree))
		return tree;
	json_array_foreach(tree, i, t)
		if (json_is_object(t))
			return t;
	return NULL;
}

/* tshark's view of one flow record: its cflow.* fields under mamori's short names. */
static json_t *tshark_record_view(json_t *r)
{
	static const char *const tshark_time = "%b %d, %Y %H:%M:%S";
	json_t *v = json_object(), *times = tshark_times(r);

	set_text(v, "src", json_object_get(r, "cflow.srcaddr"));
	set_text(v, "src", json_object_get(r, "cflow.srcaddrv6"));
	set_text(v, "dst", json_object_get(r, "cflow.dstaddr"));
	set_text(v, "dst", json_object_get(r, "cflow.dstaddrv6"));
	set_text(v, "src_port", json_object_get(r, "cflow.srcport"));
	set_text(v, "dst_port", json_object_get(r, "cflow.dstport"));
	set_text(v, "proto", json_object_get(r, "cflow.protocol"));
	/* tshark shows a reverse counter under the same name; the first is the forward one */
	set_text(v, "bytes", json_object_get(r, "cflow.octets"));
	set_text(v, "packets", json_object_get(r, "cflow.packets"));
	if (json_object_get(times, "cflow.abstimestart"))
		set_time(v, "start", false, parse_time_ns(str(json_object_get(times, "cflow.abstimestart")), tshark_time));
	if (json_object_get(times, "cflow.abstimeend"))
		set_time(v, "end", false, parse_time_ns(str(json_object_get(times, "cflow.abstimeend")), tshark_time));
	if (json_object_get(times, "cflow.timestart"))
		set_time(v, "start", true, seconds_text_ms(str(json_object_get(times, "cflow.timestart"))));
	if (json_object_get(times, "cflow.timeend"))
		set_time(v, "end", true, seconds_text_ms(str(json_object_get(times, "cflow.timeend"))));
	/* tshark 4.0 shows a v9 FIRST_SWITCHED of 0 as the absolute time 1970-01-01 */
	const char *start = str(json_object_get(v, "start")), *end = str(json_object_get(v, "end"));
	if (start && end && strcmp(start, "ns:0") == 0 && strncmp(end, "up:", 3) == 0)
		set_time(v, "start", true, 0);
	key_record(v);
	return v;
}

#define MAX_DEPTH 8

/* Any object holding a source address is a flow record (v5 "pdu", v9/IPFIX "Flow N"). */
static void tshark_collect(json_t *node, json_t *views, int depth)
{
	const char *k;
	json_t *v;

	size_t i;

	if (depth > MAX_DEPTH)
		return;
	/* --no-duplicate-keys gathers sets of one template in a message into an array */
	if (json_is_array(node)) {
		json_array_foreach(node, i, v)
			tshark_collect(v, views, depth + 1);
		return;
	}
	if (!json_is_object(node))
		return;
	if (json_object_get(node, "cflow.srcaddr") || json_object_get(node, "cflow.srcaddrv6")) {
		cr_assert_lt(json_array_size(views), MAX_RECORDS);
		json_array_append_new(views, tshark_record_view(node));
		return;
	}
	json_object_foreach(node, k, v)
		tshark_collect(v, views, depth + 1);
}

static json_t *tshark_views(const struct input *in)
{
	char decode[64], *out;
	const char *argv[] = { "tshark", "-r", in->pcap, "-n", "-d", decode, "-T", "json", "--no-duplicate-keys", NULL };
	json_t *packets, *views = json_array(), *p;
	json_error_t jerr;
	size_t i;

	snprintf(decode, sizeof(decode), "udp.port==%u,cflow", in->port);
	out = run_ok(argv, "tshark");
	packets = json_loads(out, 0, &jerr);
	cr_assert_not_null(packets, "%s: tshark json: %s", in->name, jerr.text);
	json_array_foreach(packets, i, p)
		tshark_collect(json_object_get(json_object_get(json_object_get(p, "_source"), "layers"), "cflow"),
			       views, 0);
	json_decref(packets);
	free(out);
	return views;
}

/* The first of the IANA time elements present, as tshark would show it. */
static void ipfix_json_time(json_t *v, json_t *r, const char *key, const char *dir)
{
	static const char *const absolute[] = { "Seconds", "Milliseconds", "Microseconds", "Nanoseconds" };
	char name[40];

	snprintf(name, sizeof(name), "flow%sSysUpTime", dir);
	if (json_object_get(r, name)) {
		set_time(v, key, true, num(json_object_get(r, name)));
		return;
	}
	for (size_t i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "flow%s%s", dir, absolute[i]);
		if (json_object_get(r, name)) {
			set_time(v, key, false, parse_time_ns(str(json_object_get(r, name)), RFC3339));
			return;
		}
	}
}

static json_t *ipfix_json_views(const struct input *in)
{
	const char *argv[] = { tu_mamori_bin(), "collect", "-q", "--from-pcap", in->pcap, "--format", "ipfix-json", NULL };
	char *out = run_ok(argv, "mamori collect --from-pcap");
	json_t *records = load_ndjson(out), *views = json_array(), *r;
	size_t i;

	json_array_foreach(records, i, r) {
		json_t *v = json_object();
		bool v6 = json_object_get(r, "sourceIPv6Address") != NULL;

		if (!v6 && !json_object_get(r, "sourceIPv4Address")) {
			json_decref(v); /* options records: tshark shows no flow for them either */
			continue;
		}
		set_text(v, "src", json_object_get(r, v6 ? "sourceIPv6Address" : "sourceIPv4Address"));
		set_text(v, "dst", json_object_get(r, v6 ? "destinationIPv6Address" : "destinationIPv4Address"));
		set_text(v, "src_port", json_object_get(r, "sourceTransportPort"));
		set_text(v, "dst_port", json_object_get(r, "destinationTransportPort"));
		set_text(v, "proto", json_object_get(r, "protocolIdentifier"));
		set_text(v, "bytes", json_object_get(r, "octetDeltaCount"));
		set_text(v, "packets", json_object_get(r, "packetDeltaCount"));
		ipfix_json_time(v, r, "start", "Start");
		ipfix_json_time(v, r, "end", "End");
		key_record(v);
		json_array_append_new(views, v);
	}
	json_decref(records);
	free(out);
	return views;
}

static const char *const record_fields[] = { "src", "dst", "src_port", "dst_port", "proto", "bytes",
					     "packets", "start", "end", NULL };

/*
 * Inputs where the decoders legitimately see other records, with the exact
 * counts (tshark, mamori, matched); docs/collect-compat.md says why.
 */
static const struct explained_records {
	const char *name;
	size_t tshark, mamori, matched;
} tshark_explained[] = {
	/* data before its template: mamori holds the sets and decodes them later */
	{ "logstash ipfix_netscaler_with_variable_length_fields__cache_or_missing_tpl_variant", 0, 3, 0 },
	/* v5 header count beyond the datagram: mamori refuses the message, tshark decodes 30 */
	{ "logstash netflow_5_invalid_01", 30, 0, 0 },
	{ "logstash netflow_5_invalid_02", 30, 0, 0 },
	/* tshark stops as malformed at an H3C field of an unexpected length */
	{ "logstash netflow_9_h3c", 1, 16, 1 },
	/* v9 header count 2 covers the templates only; tshark stops there */
	{ "logstash netflow_9_invalid_01", 0, 2, 0 },
};

static const struct explained_records *tshark_explained_for(const char *name)
{
	for (size_t i = 0; i < sizeof(tshark_explained) / sizeof(tshark_explained[0]); i++)
		if (strcmp(tshark_explained[i].name, name) == 0)
			return &tshark_explained[i];
	return NULL;
}

static void tshark_compare_inputs(const struct inputs *ins)
{
	size_t bad = 0;

	for (size_t i = 0; i < ins->n; i++) {
		json_t *a = tshark_views(&ins->in[i]), *b = ipfix_json_views(&ins->in[i]);
		const struct explained_records *known = tshark_explained_for(ins->in[i].name);
		struct tally t;
		bool ok;

		compare_views(&t, a, b, record_fields);
		tally_print("tshark-vs-ipfix-json", ins->in[i].name, "tshark", "mamori", &t);
		/* every record both decode has the same fields; other counts only where explained */
		ok = tally_mismatches(&t) == 0;
		if (known)
			ok = ok && t.n_a == known->tshark && t.n_b == known->mamori && t.matched == known->matched;
		else
			ok = ok && t.only_a == 0 && t.only_b == 0;
		if (!ok)
			fprintf(stderr, "    ^ differs from tshark beyond what collect-compat.md explains\n");
		bad += !ok;
		json_decref(a);
		json_decref(b);
	}
	cr_expect_eq(bad, 0, "%zu inputs differ from tshark (see the lines above)", bad);
}

Test(collect_compare, tshark_shared_captures)
{
	static const char *const tools[] = { "tshark", NULL };
	struct inputs ins = { 0 };

	require_tools(tools);
	shared_inputs(&ins);
	tshark_compare_inputs(&ins);
}

Test(collect_compare, tshark_logstash_messages)
{
	static const char *const tools[] = { "tshark", NULL };
	struct inputs ins = { 0 };
	char *scratch = tu_tmpdir();

	require_tools(tools);
	logstash_inputs(&ins, scratch);
	tshark_compare_inputs(&ins);
	remove_scratch(scratch);
}

/* ---- 3. the same streams replayed to nfcapd: flow, packet and byte totals ---- */

struct exporter_sock {
	char source[80]; /* original address and port: one loopback socket each, so nfcapd sees as many */
	int fd;
};

static size_t hex_decode(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = 0;

	for (; hex[0] && hex[1] && n < cap; hex += 2) {
		unsigned byte;
		if (sscanf(hex, "%2x", &byte) != 1)
			break;
		out[n++] = (uint8_t)byte;
	}
	return n;
}

static int exporter_fd(struct exporter_sock *socks, size_t *n, const char *source)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	for (size_t i = 0; i < *n; i++)
		if (strcmp(socks[i].source, source) == 0)
			return socks[i].fd;
	cr_assert_lt(*n, MAX_EXPORTERS);
	snprintf(socks[*n].source, sizeof(socks[*n].source), "%s", source);
	socks[*n].fd = socket(AF_INET, SOCK_DGRAM, 0);
	cr_assert_geq(socks[*n].fd, 0);
	cr_assert_eq(bind(socks[*n].fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return socks[(*n)++].fd;
}

/* Sends every UDP payload of the capture to port, one loopback socket per original exporter. */
static size_t replay_to(const struct input *in, uint16_t port)
{
	const char *argv[] = { "tshark", "-r", in->pcap, "-n", "-Y", "udp", "-T", "fields", "-e", "ip.src", "-e",
			       "ipv6.src", "-e", "udp.srcport", "-e", "udp.payload", NULL };
	char *out = run_ok(argv, "tshark -T fields");
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct exporter_sock socks[MAX_EXPORTERS];
	static uint8_t payload[65536];
	size_t n_socks = 0, sent = 0;
	char *save = NULL;

	for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *hex = strrchr(line, '\t'), source[80];
		size_t len;

		if (!hex)
			continue;
		snprintf(source, sizeof(source), "%.*s", (int)(hex - line), line);
		len = hex_decode(hex + 1, payload, sizeof(payload));
		cr_assert_eq(sendto(exporter_fd(socks, &n_socks, source), payload, len, 0, (struct sockaddr *)&to,
				    sizeof(to)),
			     (ssize_t)len);
		sent++;
		usleep(2000); /* paced like an exporter, and nfcapd keeps up whatever its buffer */
	}
	for (size_t i = 0; i < n_socks; i++)
		close(socks[i].fd);
	free(out);
	return sent;
}

struct totals {
	uint64_t flows, packets, bytes;
};

static void mamori_totals(const struct input *in, struct totals *t)
{
	const char *argv[] = { tu_mamori_bin(), "collect", "-q", "--from-pcap", in->pcap, "--format", "ndjson", NULL };
	char *out = run_ok(argv, "mamori collect --from-pcap");
	json_t *flows = load_ndjson(out), *f;
	size_t i;

	memset(t, 0, sizeof(*t));
	json_array_foreach(flows, i, f) {
		t->flows++;
		/* nfdump's totals add its out counters, which hold the reverse direction */
		t->packets += num(json_object_get(f, "fwd_packets")) + num(json_object_get(f, "rev_packets"));
		t->bytes += num(json_object_get(f, "fwd_bytes")) + num(json_object_get(f, "rev_bytes"));
	}
	json_decref(flows);
	free(out);
}

static void nfcapd_totals(const struct input *in, const char *scratch, struct totals *t, size_t *sent)
{
	struct nfcapd n;
	char *out;

	nfcapd_start(&n, scratch);
	*sent = replay_to(in, n.port);
	out = nfcapd_finish(&n, "-I", NULL);
	t->flows = stat_value(out, "\nFlows: ");
	t->packets = stat_value(out, "\nPackets: ");
	t->bytes = stat_value(out, "\nBytes: ");
	free(out);
}

/* Inputs whose totals differ from nfdump's for a reason in docs/collect-compat.md: exact values. */
static const struct explained_totals {
	const char *name;
	struct totals mamori, nfdump;
} totals_explained[] = {
	/* data before its template: nfcapd drops it, mamori holds and decodes it */
	{ "logstash ipfix_netscaler_with_variable_length_fields__cache_or_missing_tpl_variant", { 3, 5, 3106 },
	  { 0, 0, 0 } },
	/* several v5 messages in one payload (netcat capture): nfcapd reads them all */
	{ "logstash netflow_5_valid_01", { 2, 9, 534 }, { 30, 230, 18684 } },
	/* postPacketDeltaCount/postOctetDeltaCount: nfdump adds them as "out", mamori keeps them out */
	{ "logstash netflow_9_template_with_0_length_fields", { 10, 2, 64 }, { 10, 5, 160 } },
};

static bool totals_equal(const struct totals *a, const struct totals *b)
{
	return a->flows == b->flows && a->packets == b->packets && a->bytes == b->bytes;
}

static bool totals_explained_ok(const char *name, const struct totals *m, const struct totals *n)
{
	for (size_t i = 0; i < sizeof(totals_explained) / sizeof(totals_explained[0]); i++)
		if (strcmp(totals_explained[i].name, name) == 0)
			return totals_equal(m, &totals_explained[i].mamori) &&
			       totals_equal(n, &totals_explained[i].nfdump);
	return totals_equal(m, n);
}

static void nfcapd_compare_inputs(const struct inputs *ins, const char *scratch)
{
	size_t bad = 0;

	for (size_t i = 0; i < ins->n; i++) {
		struct totals m, n;
		size_t sent;
		bool ok;

		mamori_totals(&ins->in[i], &m);
		nfcapd_totals(&ins->in[i], scratch, &n, &sent);
		ok = totals_explained_ok(ins->in[i].name, &m, &n);
		fprintf(stderr, "%-22s %-58s messages=%zu mamori flows=%llu packets=%llu bytes=%llu  nfdump "
				"flows=%llu packets=%llu bytes=%llu %s\n",
			"totals-vs-nfcapd", ins->in[i].name, sent, (unsigned long long)m.flows,
			(unsigned long long)m.packets, (unsigned long long)m.bytes, (unsigned long long)n.flows,
			(unsigned long long)n.packets, (unsigned long long)n.bytes,
			totals_equal(&m, &n) ? "same" : ok ? "differ (explained)" : "DIFFER");
		bad += !ok;
	}
	cr_expect_eq(bad, 0, "%zu inputs have other totals than nfdump (see the lines above)", bad);
}

Test(collect_compare, nfcapd_totals_shared_captures)
{
	static const char *const tools[] = { "tshark", "nfcapd", "nfdump", NULL };
	struct inputs ins = { 0 };
	char *scratch = tu_tmpdir();

	require_tools(tools);
	shared_inputs(&ins);
	nfcapd_compare_inputs(&ins, scratch);
	remove_scratch(scratch);
}

Test(collect_compare, nfcapd_totals_logstash_messages)
{
	static const char *const tools[] = { "tshark", "nfcapd", "nfdump", NULL };
	struct inputs ins = { 0 };
	char *scratch = tu_tmpdir();

	require_tools(tools);
	logstash_inputs(&ins, scratch);
	nfcapd_compare_inputs(&ins, scratch);
	remove_scratch(scratch);
}
