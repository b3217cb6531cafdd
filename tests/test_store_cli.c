/*
 * The store through the mamori binary: meter and collect write it (-w, the
 * default data directory, flush by size and by interval), `mamori store
 * stats|verify|expire` report on it, and a writer killed with SIGKILL at
 * random points never damages what it published and loses at most the
 * documented unflushed tail. Flows are read back with the store library.
 */
#include "mamori/status.h"
#include "mamori/store.h"

#include "test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- running mamori ---- */

static int run_mamori(const char *const *args, char **out, char **err)
{
	const char *argv[40] = { tu_mamori_bin() };
	size_t n = 1;

	for (; *args && n < 39; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	return tu_run(argv, NULL, out, err);
}

static void remove_tree(const char *dir)
{
	const char *argv[] = { "rm", "-rf", dir, NULL };

	cr_assert_eq(tu_run(argv, NULL, NULL, NULL), 0);
}

/* Value of "name value" (meter counters, synth summary) or name=value (collect). */
static uint64_t counter(const char *text, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = strstr(text, name); p; p = strstr(p + 1, name)) {
		bool starts = p == text || p[-1] == ' ' || p[-1] == '\n';
		const char *v = p + len;

		if (!starts || (*v != ' ' && *v != '='))
			continue;
		while (*v == ' ' || *v == '=')
			v++;
		return strtoull(v, NULL, 10);
	}
	cr_assert_fail("no counter %s in:\n%s", name, text);
	return 0;
}

/* The number after "key": in a JSON text. */
static uint64_t json_u64(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	cr_assert_not_null(p, "no %s in %s", key, json);
	return strtoull(p + strlen(pat), NULL, 10);
}

/* A synthetic capture made by `mamori synth`; returns the flows it holds. */
static uint64_t make_capture(const char *path, const char *seed, const char *flows, const char *packets,
			     const char *start)
{
	const char *args[] = { "synth", "--seed", seed, "--flows", flows, "--packets", packets,
			       "--start", start, "-o", path, NULL };
	char *out, *err;
	uint64_t n;

	cr_assert_eq(run_mamori(args, &out, &err), 0, "synth: %s", err);
	n = counter(out, "flows");
	free(out);
	free(err);
	cr_assert_gt(n, 0);
	return n;
}

/* ---- reading the store with the library ---- */

/* Every flow of every cataloged segment, in catalog order. */
static size_t read_store(const char *dir, struct mm_flow **out)
{
	struct mm_store *st;
	struct mm_store_scratch *scratch;
	struct mm_flow *all = NULL;
	size_t n = 0;

	cr_assert_eq(mm_store_open(&st, dir), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_scratch_new(&scratch), 0);
	for (size_t i = 0; i < mm_store_segment_count(st); i++) {
		struct mm_segment *seg;

		cr_assert_eq(mm_store_segment_open(st, i, &seg), 0, "%s", mm_last_error());
		for (uint32_t k = 0; k < mm_segment_chunks(seg); k++) {
			uint32_t rows = mm_segment_chunk_rows(seg, k);

			all = realloc(all, (n + rows) * sizeof(*all));
			cr_assert_not_null(all);
			cr_assert_eq(mm_segment_read_flows(seg, k, scratch, all + n), 0, "%s", mm_last_error());
			n += rows;
		}
		mm_segment_free(seg);
	}
	mm_store_scratch_free(scratch);
	mm_store_free(st);
	*out = all;
	return n;
}

static uint64_t stored_flow_count(const char *dir)
{
	struct mm_flow *flows;
	size_t n = read_store(dir, &flows);

	free(flows);
	return n;
}

/* An empty store, as a writer leaves it after opening. */
static void create_store(const char *dir)
{
	struct mm_store_writer *w;

	cr_assert_eq(mm_store_writer_open(&w, dir, NULL), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_writer_close(w), 0);
}

/* ---- help and usage ---- */

Test(store_cli, help_documents_the_store_options_and_defaults)
{
	static const char *const writers[] = { "meter", "collect" };
	static const char *const mentions[] = { "-w, --store DIR", "--no-store", "--flush-rows",
						"--flush-interval", "mamori-data", "MAMORI_DATA",
						"STORE", "store-segments-published" };
	const char *store_help[] = { "store", "--help", NULL };
	char *out, *err;

	for (size_t c = 0; c < 2; c++) {
		const char *args[] = { writers[c], "--help", NULL };

		cr_assert_eq(run_mamori(args, &out, &err), 0);
		for (size_t i = 0; i < sizeof(mentions) / sizeof(mentions[0]); i++)
			cr_assert_not_null(strstr(out, mentions[i]), "%s --help lacks %s", writers[c],
					   mentions[i]);
		free(out);
		free(err);
	}
	cr_assert_eq(run_mamori(store_help, &out, &err), 0);
	cr_assert_not_null(strstr(out, "--older-than"));
	cr_assert_not_null(strstr(out, "EXIT STATUS"));
	cr_assert_not_null(strstr(out, "mamori-data"));
	free(out);
	free(err);
}

Test(store_cli, usage_errors_exit_1_and_name_the_problem)
{
	static const struct {
		const char *args[6];
		const char *says;
	} cases[] = {
		{ { "store", NULL }, "subcommand" },
		{ { "store", "defrag", NULL }, "defrag" },
		{ { "store", "expire", "--older-than", NULL }, "needs a value" },
		{ { "store", "expire", "--older-than", "soon", NULL }, "soon" },
		{ { "store", "stats", "--older-than", "1d", NULL }, "expire only" },
		{ { "store", "stats", "--format", "xml", NULL }, "xml" },
		{ { "meter", "-w", "d", "--no-store", "x.pcap", NULL }, "not both" },
		{ { "meter", "--flush-rows", "0", "x.pcap", NULL }, "--flush-rows" },
		{ { "collect", "--flush-interval", "later", "--read", "x", NULL }, "--flush-interval" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err;
		int rc = run_mamori(cases[i].args, NULL, &err);

		cr_assert_eq(rc, 1, "case %zu: exit %d, stderr %s", i, rc, err);
		cr_assert_not_null(strstr(err, cases[i].says), "case %zu: %s", i, err);
		free(err);
	}
}

/* ---- meter into the store ---- */

Test(store_cli, meter_counters_match_store_stats)
{
	char *dir = tu_tmpdir(), pcap[512], store[512], *out, *err;
	const char *meter[] = { "meter", "-w", store, "--flush-rows", "700", pcap, NULL };
	const char *stats[] = { "store", "stats", "-R", store, "--format", "ndjson", NULL };
	const char *table[] = { "store", "stats", "-R", store, NULL };
	uint64_t truth, written, segments;

	snprintf(pcap, sizeof(pcap), "%s/synth.pcap", dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	truth = make_capture(pcap, "5", "3000", "30000", "2024-01-15T09:00:00Z");
	cr_assert_eq(run_mamori(meter, &out, &err), 0, "%s", err);
	cr_assert_str_empty(out, "-w names the store instead of text: %.200s", out);
	written = counter(err, "store-flows-written");
	segments = counter(err, "store-segments-published");
	cr_assert_eq(counter(err, "flows-exported"), truth);
	cr_assert_eq(written, truth, "every flow the meter exported went to the store");
	cr_assert_eq(counter(err, "store-flows-published"), written, "all published at the end");
	cr_assert_geq(segments, 5, "3000 flows in flushes of at most 700: %s", err);
	free(out);
	free(err);

	cr_assert_eq(run_mamori(stats, &out, &err), 0, "%s", err);
	cr_assert_eq(json_u64(out, "flows"), written, "%s", out);
	cr_assert_eq(json_u64(out, "segments"), segments, "%s", out);
	cr_assert_gt(json_u64(out, "file_bytes"), 0);
	cr_assert_not_null(strstr(out, "\"first\":\"2024-01-15T09:00"), "%s", out);
	free(out);
	free(err);
	cr_assert_eq(run_mamori(table, &out, &err), 0, "%s", err);
	cr_assert_not_null(strstr(out, "dst_port"), "per-column lines: %s", out);
	free(out);
	free(err);
	cr_assert_eq(stored_flow_count(store), truth);
	remove_tree(dir);
	free(dir);
}

/*
 * Without -w the default data directory ($MAMORI_DATA here) gets the
 * flows, and a pipe or file still gets NDJSON; asking for text replaces
 * the default store, --no-store turns it off, and -w adds a store to text.
 */
Test(store_cli, default_store_and_text_output_rules)
{
	char *dir = tu_tmpdir(), pcap[512], data[512], extra[512], csv[512], *out, *err;
	const char *plain[] = { "meter", "-q", pcap, NULL };
	const char *as_csv[] = { "meter", "-q", "--format", "csv", "-o", csv, pcap, NULL };
	const char *no_store[] = { "meter", "-q", "--no-store", pcap, NULL };
	const char *both[] = { "meter", "-q", "-w", extra, "--format", "csv", pcap, NULL };
	const char *stats[] = { "store", "stats", "--format", "ndjson", NULL };
	uint64_t truth;

	snprintf(pcap, sizeof(pcap), "%s/synth.pcap", dir);
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(extra, sizeof(extra), "%s/extra", dir);
	snprintf(csv, sizeof(csv), "%s/flows.csv", dir);
	truth = make_capture(pcap, "9", "300", "3000", "2024-01-15T09:00:00Z");
	cr_assert_eq(setenv("MAMORI_DATA", data, 1), 0);

	cr_assert_eq(run_mamori(plain, &out, &err), 0, "%s", err);
	cr_assert_eq(out[0], '{', "standard output is a file: NDJSON as before");
	free(out);
	free(err);
	cr_assert_eq(stored_flow_count(data), truth, "and the default store has every flow");

	cr_assert_eq(run_mamori(as_csv, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(stored_flow_count(data), truth, "asked-for text replaces the default store");

	cr_assert_eq(run_mamori(no_store, &out, &err), 0, "%s", err);
	cr_assert_eq(out[0], '{');
	free(out);
	free(err);
	cr_assert_eq(stored_flow_count(data), truth, "--no-store leaves the store alone");

	cr_assert_eq(run_mamori(both, &out, &err), 0, "%s", err);
	cr_assert(strncmp(out, "uid,id,", 7) == 0, "text as asked: %.40s", out);
	free(out);
	free(err);
	cr_assert_eq(stored_flow_count(extra), truth, "-w adds a store beside the text");

	cr_assert_eq(run_mamori(stats, &out, &err), 0, "%s", err);
	cr_assert_eq(json_u64(out, "flows"), truth, "store stats reads $MAMORI_DATA too: %s", out);
	free(out);
	free(err);
	remove_tree(dir);
	free(dir);
}

Test(store_cli, a_store_held_by_another_writer_is_refused_before_any_output)
{
	char *dir = tu_tmpdir(), pcap[512], store[512], *out, *err;
	const char *meter[] = { "meter", "-w", store, "--format", "ndjson", pcap, NULL };
	const char *expire[] = { "store", "expire", "-R", store, "--older-than", "1s", NULL };
	struct mm_store_writer *w;

	snprintf(pcap, sizeof(pcap), "%s/synth.pcap", dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	make_capture(pcap, "2", "50", "500", "2024-01-15T09:00:00Z");
	cr_assert_eq(mm_store_writer_open(&w, store, NULL), 0, "%s", mm_last_error());
	cr_assert_eq(run_mamori(meter, &out, &err), 3, "%s", err);
	cr_assert_not_null(strstr(err, "another writer"), "%s", err);
	cr_assert_str_empty(out, "nothing written before the store was refused");
	free(out);
	free(err);
	cr_assert_eq(run_mamori(expire, &out, &err), 3, "%s", err);
	cr_assert_not_null(strstr(err, "writer"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(mm_store_writer_close(w), 0);
	remove_tree(dir);
	free(dir);
}

/* ---- verify ---- */

Test(store_cli, verify_passes_then_names_the_damaged_file_and_column)
{
	char *dir = tu_tmpdir(), pcap[512], store[512], seg[600], *out, *err, *bytes;
	const char *meter[] = { "meter", "-q", "-w", store, pcap, NULL };
	const char *verify[] = { "store", "verify", "-R", store, NULL };
	const char *verify_json[] = { "store", "verify", "-R", store, "--format", "ndjson", NULL };
	size_t len;

	snprintf(pcap, sizeof(pcap), "%s/synth.pcap", dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(seg, sizeof(seg), "%s/seg-000001.mms", store);
	make_capture(pcap, "3", "400", "4000", "2024-01-15T09:00:00Z");
	cr_assert_eq(run_mamori(meter, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run_mamori(verify, &out, &err), 0, "%s%s", out, err);
	cr_assert(strncmp(out, "ok: ", 4) == 0, "%s", out);
	cr_assert_not_null(strstr(out, " 0 problems"), "%s", out);
	free(out);
	free(err);

	/* The file ends with the payload of the last chunk of the last column:
	 * one flipped bit there is a checksum mismatch in that column. */
	bytes = tu_read_file(seg, &len);
	cr_assert_not_null(bytes);
	bytes[len - 1] ^= 0x10;
	cr_assert_eq(tu_write_file(seg, bytes, len), 0);
	free(bytes);
	cr_assert_eq(run_mamori(verify, &out, &err), 2, "%s%s", out, err);
	cr_assert_not_null(strstr(out, "seg-000001.mms: column '"), "names file and column: %s", out);
	cr_assert_not_null(strstr(out, "DAMAGED"), "%s", out);
	cr_assert_not_null(strstr(err, "problems found"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run_mamori(verify_json, &out, &err), 2, "%s", err);
	cr_assert_not_null(strstr(out, "{\"kind\":\"problem\",\"message\":\"store: seg-000001.mms: column '"),
			   "%s", out);
	cr_assert_not_null(strstr(out, "\"ok\":false"), "%s", out);
	free(out);
	free(err);
	remove_tree(dir);
	free(dir);
}

Test(store_cli, verify_and_stats_of_a_missing_store_exit_2)
{
	const char *verify[] = { "store", "verify", "-R", "/nonexistent/mamori-store", NULL };
	const char *stats[] = { "store", "stats", "-R", "/nonexistent/mamori-store", NULL };
	char *out, *err;

	cr_assert_eq(run_mamori(verify, &out, &err), 2, "%s", err);
	cr_assert_not_null(strstr(err, "/nonexistent/mamori-store: no store here"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run_mamori(stats, &out, &err), 2, "%s", err);
	cr_assert_not_null(strstr(err, "no store here"), "%s", err);
	free(out);
	free(err);
}

/* ---- expire ---- */

Test(store_cli, expire_removes_old_segments_and_names_them)
{
	char *dir = tu_tmpdir(), old_pcap[512], new_pcap[512], store[512], start[32], *out, *err;
	const char *meter_old[] = { "meter", "-q", "-w", store, old_pcap, NULL };
	const char *meter_new[] = { "meter", "-q", "-w", store, new_pcap, NULL };
	const char *expire[] = { "store", "expire", "-R", store, "--older-than", "30d", NULL };
	const char *stats[] = { "store", "stats", "-R", store, "--format", "ndjson", NULL };
	uint64_t n_old, n_new;

	snprintf(old_pcap, sizeof(old_pcap), "%s/old.pcap", dir);
	snprintf(new_pcap, sizeof(new_pcap), "%s/new.pcap", dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	/* Unix seconds an hour ago: a capture well inside any 30-day retention. */
	snprintf(start, sizeof(start), "%lld", (long long)time(NULL) - 3600);
	n_old = make_capture(old_pcap, "4", "200", "2000", "2001-01-01T00:00:00Z");
	n_new = make_capture(new_pcap, "6", "150", "1500", start);
	cr_assert_eq(run_mamori(meter_old, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(run_mamori(meter_new, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	cr_assert_eq(stored_flow_count(store), n_old + n_new);

	cr_assert_eq(run_mamori(expire, &out, &err), 0, "%s", err);
	cr_assert_not_null(strstr(out, "removed seg-000001.mms"), "names the segment: %s", out);
	cr_assert_not_null(strstr(out, "2001-01-01T00:00"), "and its time range: %s", out);
	cr_assert_eq(counter(out, "expired"), 1, "one segment: %s", out);
	cr_assert_not_null(strstr(out, " segments, "), "%s", out);
	free(out);
	free(err);
	cr_assert_eq(stored_flow_count(store), n_new, "only the recent flows are left");
	cr_assert_eq(access(old_pcap, R_OK), 0);
	{
		char seg[600];

		snprintf(seg, sizeof(seg), "%s/seg-000001.mms", store);
		cr_assert_neq(access(seg, F_OK), 0, "the file is gone too");
	}
	cr_assert_eq(run_mamori(stats, &out, &err), 0, "%s", err);
	cr_assert_eq(json_u64(out, "flows"), n_new, "%s", out);
	free(out);
	free(err);

	cr_assert_eq(run_mamori(expire, &out, &err), 0, "%s", err);
	cr_assert_not_null(strstr(out, "nothing to expire"), "%s", out);
	free(out);
	free(err);
	remove_tree(dir);
	free(dir);
}

/* ---- collect into the store ---- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

#define V5_HEADER_LEN 24
#define V5_RECORD_LEN 48

/* A NetFlow v5 export message of count TCP flows to 198.51.100.1:22, each from its own source. */
static size_t build_v5(uint8_t *b, uint16_t count, uint32_t sequence)
{
	uint32_t now = (uint32_t)time(NULL);

	memset(b, 0, V5_HEADER_LEN + (size_t)count * V5_RECORD_LEN);
	put16(b + 0, 5);          /* version 5 */
	put16(b + 2, count);      /* records that follow */
	put32(b + 4, 60000);      /* sysUptime: the exporter booted 60 s ago */
	put32(b + 8, now);        /* export time, Unix seconds */
	put32(b + 16, sequence);  /* flows exported before this message */
	for (uint16_t i = 0; i < count; i++) {
		uint8_t *r = b + V5_HEADER_LEN + (size_t)i * V5_RECORD_LEN;

		put32(r + 0, 0xc0000200u + (sequence + i) % 250 + 1); /* srcaddr 192.0.2.x */
		put32(r + 4, 0xc6336401u);     /* dstaddr 198.51.100.1 */
		put16(r + 12, 1);              /* input ifIndex */
		put16(r + 14, 2);              /* output ifIndex */
		put32(r + 16, 10);             /* dPkts */
		put32(r + 20, 1000 + i);       /* dOctets */
		put32(r + 24, 50000);          /* First: uptime ms of the first packet (10 s ago) */
		put32(r + 28, 55000);          /* Last: 5 s ago */
		put16(r + 32, (uint16_t)(40000 + i)); /* srcport */
		put16(r + 34, 22);             /* dstport: ssh */
		r[37] = 0x1b;                  /* tcp_flags: FIN SYN PSH ACK */
		r[38] = 6;                     /* prot: TCP */
	}
	return V5_HEADER_LEN + (size_t)count * V5_RECORD_LEN;
}

Test(store_cli, collect_read_writes_every_flow_to_the_store)
{
	enum { N_MSGS = 12, PER_MSG = 10 };
	char *dir = tu_tmpdir(), store[512], paths[N_MSGS][600], *out, *err;
	const char *argv[8 + N_MSGS] = { "collect", "-w", store, "--flush-rows", "25", "--read" };
	uint8_t msg[V5_HEADER_LEN + PER_MSG * V5_RECORD_LEN];
	size_t n = 6;

	snprintf(store, sizeof(store), "%s/store", dir);
	for (int i = 0; i < N_MSGS; i++) {
		size_t len = build_v5(msg, PER_MSG, (uint32_t)(i * PER_MSG));

		snprintf(paths[i], sizeof(paths[i]), "%s/msg-%02d.bin", dir, i);
		cr_assert_eq(tu_write_file(paths[i], msg, len), 0);
		argv[n++] = paths[i];
	}
	argv[n] = NULL;
	cr_assert_eq(run_mamori(argv, &out, &err), 0, "%s", err);
	cr_assert_str_empty(out, "-w names the store instead of text: %.200s", out);
	cr_assert_eq(counter(err, "store-flows-written"), N_MSGS * PER_MSG, "%s", err);
	cr_assert_eq(counter(err, "store-flows-published"), N_MSGS * PER_MSG, "%s", err);
	cr_assert_geq(counter(err, "store-segments-published"), 5, "flushes of 25 at most: %s", err);
	free(out);
	free(err);
	cr_assert_eq(stored_flow_count(store), N_MSGS * PER_MSG);
	remove_tree(dir);
	free(dir);
}

static uint16_t free_udp_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void send_udp(uint16_t port, const void *data, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	cr_assert_eq(sendto(fd, data, len, 0, (struct sockaddr *)&a, sizeof(a)), (ssize_t)len);
	close(fd);
}

static pid_t spawn(const char *const *args, int out_fd)
{
	const char *argv[40] = { tu_mamori_bin() };
	size_t n = 1;
	pid_t pid;

	for (; *args && n < 39; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(out_fd >= 0 ? out_fd : null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		dup2(null, STDIN_FILENO);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int wait_exit(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		cr_assert_eq(errno, EINTR);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void pause_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&t, NULL);
}

/*
 * A listening collector with a huge --flush-rows publishes a quiet feed by
 * its flush interval alone: the flows become readable while it still runs.
 */
Test(store_cli, collect_publishes_a_quiet_feed_by_its_flush_interval)
{
	char *dir = tu_tmpdir(), store[512], catalog[600], listen[32];
	uint16_t port = free_udp_port();
	const char *args[] = { "collect", "-l", listen, "--workers", "1", "-w", store, "--flush-rows",
			       "1000000", "--flush-interval", "1s", NULL };
	uint8_t msg[V5_HEADER_LEN + 3 * V5_RECORD_LEN];
	size_t len = build_v5(msg, 3, 0);
	uint64_t seen = 0;
	pid_t pid;

	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(catalog, sizeof(catalog), "%s/catalog", store);
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	pid = spawn(args, -1);
	/* The collector binds its sockets before it opens the store: once the
	 * catalog exists, it is listening. Generous bound: a loaded machine. */
	for (int i = 0; i < 600 && access(catalog, F_OK) != 0; i++)
		pause_ms(50);
	cr_assert_eq(access(catalog, F_OK), 0, "the collector never opened its store");
	send_udp(port, msg, len);
	for (int i = 0; i < 600 && seen < 3; i++) {
		pause_ms(50);
		seen = stored_flow_count(store);
	}
	cr_assert_eq(seen, 3, "published while the collector runs, by the interval alone");
	kill(pid, SIGTERM);
	cr_assert_eq(wait_exit(pid), 0);
	cr_assert_eq(stored_flow_count(store), 3);
	remove_tree(dir);
	free(dir);
}

/* ---- crash safety ---- */

/* A flow's identity across runs: the meter numbers flows in packet order. */
struct flow_key {
	uint64_t id, first_ns;
};

static int key_cmp(const void *a, const void *b)
{
	const struct flow_key *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->first_ns < y->first_ns ? -1 : x->first_ns > y->first_ns;
}

static int flow_cmp(const void *a, const void *b)
{
	const struct mm_flow *x = a, *y = b;
	struct flow_key kx = { x->id, x->first_ns }, ky = { y->id, y->first_ns };

	return key_cmp(&kx, &ky);
}

static bool same_flow(const struct mm_flow *a, const struct mm_flow *b)
{
	for (unsigned col = 0; col < MM_STORE_N_COLUMNS; col++)
		if (mm_store_flow_value(a, col) != mm_store_flow_value(b, col))
			return false;
	return true;
}

/* Keys of the NDJSON lines in text, in the order the meter wrote them. */
static size_t ndjson_keys(const char *text, struct flow_key **out)
{
	size_t n = 0, cap = 1024;
	struct flow_key *keys = malloc(cap * sizeof(*keys));

	for (const char *line = text; *line;) {
		const char *end = strchr(line, '\n'), *id, *first;

		if (!end)
			break; /* a line cut by the kill */
		/* Searched within the line: a sanitizer checks the whole rest of
		 * the text on every strstr, which made this quadratic. */
		id = memmem(line, (size_t)(end - line), "\"id\":", 5);
		first = memmem(line, (size_t)(end - line), "\"first_ns\":", 11);
		if (!id || !first)
			cr_assert_fail("not a flow line: %.80s", line);
		if (n == cap)
			keys = realloc(keys, (cap *= 2) * sizeof(*keys));
		keys[n].id = strtoull(id + 5, NULL, 10);
		keys[n].first_ns = strtoull(first + 11, NULL, 10);
		n++;
		line = end + 1;
	}
	*out = keys;
	return n;
}

static uint64_t monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

struct crash_run {
	char *text;   /* what the meter wrote to its pipe before it died */
	size_t len;
	bool killed;  /* died of the SIGKILL (not finished first) */
};

/*
 * Runs mamori with standard output on a pipe that is drained all along (a
 * full pipe would stall the writer and bunch the kills), and SIGKILLs it
 * kill_after_us in, unless it finished; kill_after_us 0: never.
 */
/*
 * Runs mamori with its standard output in r->text; with kill_at_bytes, sends
 * SIGKILL once that much output has arrived. Killing by progress, not by
 * time, lands every kill mid-run however fast the machine is: the meter
 * still has output to write (the caller leaves well over a pipe's worth).
 */
static void run_until_killed(const char *const *args, size_t kill_at_bytes, struct crash_run *r)
{
	int p[2];
	bool sent = false;
	size_t cap = 1 << 16;
	pid_t pid;

	cr_assert_eq(pipe(p), 0);
	pid = spawn(args, p[1]);
	close(p[1]);
	r->text = malloc(cap);
	r->len = 0;
	for (;;) {
		ssize_t got;

		if (kill_at_bytes && !sent && r->len >= kill_at_bytes) {
			kill(pid, SIGKILL);
			sent = true;
		}
		if (r->len + 4096 > cap)
			r->text = realloc(r->text, cap *= 2);
		got = read(p[0], r->text + r->len, cap - r->len - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		r->len += (size_t)got;
	}
	r->text[r->len] = '\0';
	close(p[0]);
	r->killed = wait_exit(pid) == 128 + SIGKILL;
}

/* Checks a killed writer's store against the complete run. */
static void check_after_kill(const char *store, const struct crash_run *r, const struct flow_key *order,
			     const struct mm_flow *ref, size_t n_ref, size_t flush_rows)
{
	const char *verify[] = { "store", "verify", "-R", store, NULL };
	struct flow_key *lines, *prefix;
	struct mm_flow *got;
	size_t n_got, n_lines;
	char *out, *err;

	cr_assert_eq(run_mamori(verify, &out, &err), 0, "verify after a kill: %s%s", out, err);
	free(out);
	free(err);

	/* Every published flow reads back, equal to the same flow of the
	 * complete run, and together they are exactly the first flows the
	 * meter handed on: nothing published out of order or twice. */
	n_got = read_store(store, &got);
	cr_assert_leq(n_got, n_ref);
	if (n_got)
		qsort(got, n_got, sizeof(*got), flow_cmp);
	prefix = malloc((n_got ? n_got : 1) * sizeof(*prefix));
	if (n_got)
		memcpy(prefix, order, n_got * sizeof(*prefix));
	qsort(prefix, n_got, sizeof(*prefix), key_cmp);
	for (size_t i = 0; i < n_got; i++) {
		struct flow_key k = { got[i].id, got[i].first_ns };
		const struct mm_flow *want = bsearch(&got[i], ref, n_ref, sizeof(*ref), flow_cmp);

		if (key_cmp(&k, &prefix[i]) != 0)
			cr_assert_fail("published flow %zu (id %" PRIu64 ") is not among the first %zu", i, k.id,
				       n_got);
		if (!want)
			cr_assert_fail("flow id %" PRIu64 " is not one the meter makes", k.id);
		if (!same_flow(&got[i], want))
			cr_assert_fail("flow id %" PRIu64 " reads back changed", k.id);
	}

	/* The loss: flows the meter had already written to its pipe (so the
	 * store had taken them) but had not published are fewer than --flush-rows. */
	n_lines = ndjson_keys(r->text, &lines);
	cr_assert_lt(n_lines, n_got + flush_rows, "lost %zu flows, the bound is %zu",
		     n_lines - n_got, flush_rows);
	if (!r->killed)
		cr_assert_eq(n_got, n_ref, "a run that finished published everything");
	free(lines);
	free(prefix);
	free(got);
}

Test(store_cli, sigkill_at_random_points_never_damages_what_was_published, .timeout = 120)
{
	/* KILL_MARGIN: output left unread at the latest kill, beyond any pipe buffer. */
	enum { FLUSH_ROWS = 200, KILLS_WANTED = 20, ATTEMPTS_MAX = 60, KILL_MARGIN = 256 << 10 };
	char *dir = tu_tmpdir(), pcap[512], store[512], ref_store[512];
	const char *ref_args[] = { "meter", "-w", ref_store, "--flush-rows", "200", "--flush-interval", "0",
				   "--format", "ndjson", pcap, NULL };
	const char *args[] = { "meter", "-w", store, "--flush-rows", "200", "--flush-interval", "0",
			       "--format", "ndjson", pcap, NULL };
	struct crash_run r;
	struct flow_key *order;
	struct mm_flow *ref;
	size_t n_ref, n_order, ref_len;
	uint64_t started = monotonic_us(), rng = 0x9e3779b97f4a7c15u;
	int kills = 0, attempts = 0;

	snprintf(pcap, sizeof(pcap), "%s/synth.pcap", dir);
	snprintf(store, sizeof(store), "%s/store", dir);
	snprintf(ref_store, sizeof(ref_store), "%s/ref", dir);
	make_capture(pcap, "11", "6000", "60000", "2024-01-15T09:00:00Z");

	/* The complete run: what every flow looks like, the order the meter
	 * hands them on, and how much text a run writes (to spread the kills over). */
	run_until_killed(ref_args, 0, &r);
	cr_assert(!r.killed);
	ref_len = r.len;
	cr_assert_gt(ref_len, 4 * KILL_MARGIN, "enough output to kill within");
	n_order = ndjson_keys(r.text, &order);
	free(r.text);
	n_ref = read_store(ref_store, &ref);
	cr_assert_eq(n_order, n_ref, "the text and the store of the complete run agree");
	cr_assert_gt(n_ref, 10 * FLUSH_ROWS, "enough flushes to kill between");
	qsort(ref, n_ref, sizeof(*ref), flow_cmp);

	/* Kills until KILLS_WANTED landed mid-run, within a bounded time. */
	while (kills < KILLS_WANTED && attempts < ATTEMPTS_MAX && monotonic_us() - started < 50000000u) {
		size_t kill_at;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		kill_at = 1 + (size_t)(rng % (ref_len - KILL_MARGIN));
		remove_tree(store);
		create_store(store);
		run_until_killed(args, kill_at, &r);
		check_after_kill(store, &r, order, ref, n_ref, FLUSH_ROWS);
		free(r.text);
		kills += r.killed;
		attempts++;
	}
	cr_log_info("crash test: %d kills in %d runs; a complete run writes %zu bytes", kills, attempts,
		    ref_len);
	cr_assert_geq(kills, KILLS_WANTED, "only %d of %d runs were killed mid-run", kills, attempts);
	free(order);
	free(ref);
	remove_tree(dir);
	free(dir);
}
