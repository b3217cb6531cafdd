/*
 * `mamori meter` as a user meets it: --help, exit codes for bad usage and
 * bad input, every output format read back by independent tools (Python's
 * csv and json modules), the atomic -o file, counters and a closed pipe.
 * Captures come from mamori's own synthetic traffic generator.
 */
#include "mamori/synth.h"

#include "test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A small deterministic capture and the ground truth the generator reports. */
struct capture {
	char *dir;
	char path[512];
	struct mm_synth_summary truth;
};

static void make_capture(struct capture *c, uint64_t flows, uint64_t packets)
{
	struct mm_synth_config cfg;

	c->dir = tu_tmpdir();
	cr_assert_not_null(c->dir);
	snprintf(c->path, sizeof(c->path), "%s/synth.pcap", c->dir);
	mm_synth_config_default(&cfg);
	cfg.seed = 7;
	cfg.n_flows = flows;
	cfg.n_packets = packets;
	cr_assert_eq(mm_synth_write_pcap(&cfg, c->path, &c->truth), 0);
	cr_assert_gt(c->truth.flows, 0);
}

/* Removes the capture's scratch directory. */
static void drop_capture(struct capture *c)
{
	const char *argv[] = { "rm", "-rf", c->dir, NULL };

	cr_assert_eq(tu_run(argv, NULL, NULL, NULL), 0);
	free(c->dir);
}

static int run_meter(const char *const *args, char **out, char **err)
{
	const char *argv[32] = { tu_mamori_bin(), "meter" };
	size_t n = 2;

	for (; *args && n < 31; args++)
		argv[n++] = *args;
	argv[n] = NULL;
	return tu_run(argv, NULL, out, err);
}

static bool have_python(void)
{
	const char *argv[] = { "python3", "-c", "import csv, json", NULL };

	return tu_run(argv, NULL, NULL, NULL) == 0;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

Test(cli, help_exits_0_and_documents_every_option)
{
	static const char *const options[] = {
		"--interface", "--filter", "--snaplen", "--format", "--output", "--compat",
		"--idle-timeout", "--active-timeout", "--max-flows", "--max-encap", "--sensor",
		"--quiet", "--help", "-i,", "-f,", "-s,", "-o,", "-q,",
	};
	static const char *const sections[] = {
		"SYNOPSIS", "DESCRIPTION", "OPTIONS", "OUTPUT FORMATS", "COUNTERS", "EXIT STATUS",
		"EXAMPLES", "Default", "ndjson", "zeek",
	};
	const char *args[] = { "--help", NULL };
	char *out, *err;

	cr_assert_eq(run_meter(args, &out, &err), 0);
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		cr_assert_not_null(strstr(out, options[i]), "--help does not mention %s", options[i]);
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		cr_assert_not_null(strstr(out, sections[i]), "--help lacks %s", sections[i]);
	cr_assert_str_empty(err);
	free(out);
	free(err);
}

Test(cli, usage_errors_exit_1_and_name_the_problem)
{
	static const struct {
		const char *args[4];
		const char *says;
	} cases[] = {
		{ { "--bogus", "x.pcap", NULL }, "--bogus" },
		{ { "-Z", "x.pcap", NULL }, "-Z" },
		{ { "--format", "json", "x.pcap", NULL }, "json" },
		{ { "--max-encap", "9", "x.pcap", NULL }, "--max-encap" },
		{ { "--idle-timeout", "tcp", "x.pcap", NULL }, "PROTO=DURATION" },
		{ { "--idle-timeout", "dccp=5s", "x.pcap", NULL }, "dccp" },
		{ { "--active-timeout", "soon", "x.pcap", NULL }, "soon" },
		{ { "--compat", "argus", "x.pcap", NULL }, "argus" },
		{ { "--format", NULL }, "needs a value" },
		{ { NULL }, "no capture file" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err;
		int rc = run_meter(cases[i].args, NULL, &err);

		cr_assert_eq(rc, 1, "case %zu: exit %d, stderr %s", i, rc, err);
		cr_assert_not_null(strstr(err, cases[i].says), "case %zu: %s", i, err);
		cr_assert_not_null(strstr(err, "--help"), "usage errors point at --help");
		free(err);
	}
}

Test(cli, missing_file_exits_2_naming_it)
{
	const char *args[] = { "/nonexistent/dir/trace.pcap", NULL };
	char *out, *err;

	cr_assert_eq(run_meter(args, &out, &err), 2);
	cr_assert_not_null(strstr(err, "/nonexistent/dir/trace.pcap"), "%s", err);
	cr_assert_not_null(strstr(err, "No such file"), "%s", err);
	cr_assert_str_empty(out);
	free(out);
	free(err);
}

Test(cli, garbage_file_exits_2_and_writes_no_flows)
{
	char *dir = tu_tmpdir(), path[512], garbage[4096], *out, *err;
	const char *args[] = { "--format", "csv", path, NULL };

	snprintf(path, sizeof(path), "%s/garbage.pcap", dir);
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (char)(i * 7 + 13); /* no pcap or pcapng magic */
	cr_assert_eq(tu_write_file(path, garbage, sizeof(garbage)), 0);
	cr_assert_eq(run_meter(args, &out, &err), 2, "stderr: %s", err);
	cr_assert_not_null(strstr(err, "garbage.pcap"), "%s", err);
	cr_assert_str_empty(out, "nothing is written before the inputs are checked");
	free(out);
	free(err);
	unlink(path);
	rmdir(dir);
	free(dir);
}

Test(cli, a_bad_second_file_is_refused_before_any_output)
{
	struct capture c;
	char bad[600], *out, *err;
	const char *args[] = { "--format", "ndjson", c.path, bad, NULL };

	make_capture(&c, 20, 200);
	snprintf(bad, sizeof(bad), "%s/not-a-capture.txt", c.dir);
	cr_assert_eq(tu_write_file(bad, "hello\n", 6), 0);
	cr_assert_eq(run_meter(args, &out, &err), 2, "stderr: %s", err);
	cr_assert_not_null(strstr(err, "not-a-capture.txt"), "%s", err);
	cr_assert_str_empty(out);
	free(out);
	free(err);
	drop_capture(&c);
}

Test(cli, csv_parses_with_python_and_counts_match_the_generator)
{
	struct capture c;
	char csv_path[600], *out, *err;
	const char *args[] = { "--format", "csv", "-o", csv_path, c.path, NULL };
	/* Prints: rows, rows whose column count differs from the header's, total packets. */
	const char *check[] = {
		"python3", "-c",
		"import csv, sys\n"
		"rows = list(csv.reader(open(sys.argv[1], newline='')))\n"
		"head = rows[0]\n"
		"bad = sum(1 for r in rows[1:] if len(r) != len(head))\n"
		"fp, rp = head.index('fwd_packets'), head.index('rev_packets')\n"
		"print(len(rows) - 1, bad, sum(int(r[fp]) + int(r[rp]) for r in rows[1:]))\n",
		csv_path, NULL,
	};
	unsigned long long rows, bad, packets;

	if (!have_python())
		cr_skip_test("python3 is not installed: cannot read the CSV with an independent parser");
	make_capture(&c, 200, 3000);
	snprintf(csv_path, sizeof(csv_path), "%s/flows.csv", c.dir);
	cr_assert_eq(run_meter(args, &out, &err), 0, "stderr: %s", err);
	cr_assert_str_empty(out, "-o sends flows to the file only");
	cr_assert_not_null(strstr(err, "packets-read"), "counters on stderr: %s", err);
	free(out);
	free(err);
	cr_assert_eq(tu_run(check, NULL, &out, NULL), 0);
	cr_assert_eq(sscanf(out, "%llu %llu %llu", &rows, &bad, &packets), 3, "%s", out);
	cr_assert_eq(bad, 0, "every row has the header's column count");
	cr_assert_eq(rows, c.truth.flows);
	cr_assert_eq(packets, c.truth.packets);
	free(out);
	drop_capture(&c);
}

Test(cli, ndjson_is_the_default_in_a_pipe_and_every_line_parses)
{
	struct capture c;
	char *out, *err;
	const char *args[] = { "-q", c.path, NULL };
	char json_path[600];
	/* Prints: objects parsed, total packets, objects without a uid. */
	const char *check[] = {
		"python3", "-c",
		"import json, sys\n"
		"objs = [json.loads(l) for l in open(sys.argv[1])]\n"
		"print(len(objs), sum(o['fwd_packets'] + o['rev_packets'] for o in objs),"
		" sum(1 for o in objs if not o['uid'].startswith('C')))\n",
		json_path, NULL,
	};
	unsigned long long n, packets, no_uid;

	if (!have_python())
		cr_skip_test("python3 is not installed: cannot parse the NDJSON independently");
	make_capture(&c, 150, 2000);
	cr_assert_eq(run_meter(args, &out, &err), 0, "stderr: %s", err);
	cr_assert_str_empty(err, "-q prints no counters");
	cr_assert_eq(out[0], '{', "not a terminal, so ndjson by default");
	snprintf(json_path, sizeof(json_path), "%s/flows.ndjson", c.dir);
	cr_assert_eq(tu_write_file(json_path, out, strlen(out)), 0);
	free(out);
	free(err);
	cr_assert_eq(tu_run(check, NULL, &out, NULL), 0);
	cr_assert_eq(sscanf(out, "%llu %llu %llu", &n, &packets, &no_uid), 3, "%s", out);
	cr_assert_eq(n, c.truth.flows);
	cr_assert_eq(packets, c.truth.packets);
	cr_assert_eq(no_uid, 0);
	free(out);
	drop_capture(&c);
}

Test(cli, zeek_and_table_formats_have_one_line_per_flow)
{
	struct capture c;
	char *out, *err, *line, *save = NULL;
	const char *zeek[] = { "-q", "--format", "zeek", c.path, NULL };
	const char *table[] = { "-q", "--format", "table", c.path, NULL };
	size_t rows = 0;

	make_capture(&c, 100, 1000);
	cr_assert_eq(run_meter(zeek, &out, &err), 0, "stderr: %s", err);
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t tabs = 0;

		if (line[0] == '#')
			continue;
		for (char *p = line; *p; p++)
			tabs += *p == '\t';
		cr_assert_eq(tabs, 21, "22 conn.log fields: %s", line);
		rows++;
	}
	cr_assert_eq(rows, c.truth.flows);
	free(out);
	free(err);

	cr_assert_eq(run_meter(table, &out, &err), 0, "stderr: %s", err);
	cr_assert_eq(count_lines(out), c.truth.flows + 1, "a header and one row per flow");
	cr_assert(strncmp(out, "start", 5) == 0);
	free(out);
	free(err);
	drop_capture(&c);
}

Test(cli, output_file_is_replaced_only_on_success)
{
	struct capture c;
	char target[600], *out, *err, *kept;
	const char *good[] = { "-q", "--format", "csv", "-o", target, c.path, NULL };
	const char *bad[] = { "-q", "--format", "csv", "-o", target, "--filter", "not a filter ((", c.path, NULL };
	const char *ls[] = { "ls", "-A", NULL, NULL };

	make_capture(&c, 30, 300);
	ls[2] = c.dir;
	snprintf(target, sizeof(target), "%s/flows.csv", c.dir);
	cr_assert_eq(tu_write_file(target, "old\n", 4), 0);
	cr_assert_eq(run_meter(bad, &out, &err), 2, "a bad filter is bad input: %s", err);
	kept = tu_read_file(target, NULL);
	cr_assert_str_eq(kept, "old\n", "a failed run leaves the old file");
	free(kept);
	free(out);
	free(err);

	cr_assert_eq(run_meter(good, &out, &err), 0, "stderr: %s", err);
	kept = tu_read_file(target, NULL);
	cr_assert(strncmp(kept, "uid,id,", 7) == 0);
	free(kept);
	free(out);
	free(err);
	cr_assert_eq(tu_run(ls, NULL, &out, NULL), 0);
	cr_assert_str_eq(out, "flows.csv\nsynth.pcap\n", "no temporary file left behind: %s", out);
	free(out);
	drop_capture(&c);
}

Test(cli, unwritable_output_exits_3)
{
	struct capture c;
	const char *args[] = { "-q", "-o", "/nonexistent/dir/flows.csv", c.path, NULL };
	char *err;

	make_capture(&c, 10, 100);
	cr_assert_eq(run_meter(args, NULL, &err), 3);
	cr_assert_not_null(strstr(err, "/nonexistent/dir/flows.csv"), "%s", err);
	free(err);
	drop_capture(&c);
}

Test(cli, truncated_capture_meters_what_is_there_and_warns)
{
	struct capture c;
	size_t len;
	char *bytes, *out, *err;
	const char *args[] = { "--format", "csv", c.path, NULL };

	make_capture(&c, 50, 500);
	bytes = tu_read_file(c.path, &len);
	cr_assert_eq(tu_write_file(c.path, bytes, len - 5), 0); /* cut into the last record */
	free(bytes);
	cr_assert_eq(run_meter(args, &out, &err), 0, "stderr: %s", err);
	cr_assert_not_null(strstr(err, "synth.pcap"), "the warning names the file: %s", err);
	cr_assert_not_null(strstr(err, "capture-error."), "the error is counted: %s", err);
	cr_assert_gt(count_lines(out), 1);
	free(out);
	free(err);
	drop_capture(&c);
}

Test(cli, closed_pipe_ends_quietly)
{
	struct capture c;
	char script[800], *err;
	const char *argv[] = { "bash", "-c", script, NULL };

	make_capture(&c, 3000, 20000); /* far more CSV than a pipe buffer holds */
	snprintf(script, sizeof(script),
		 "set -o pipefail; '%s' meter --format csv '%s' | head -n 2 >/dev/null",
		 tu_mamori_bin(), c.path);
	cr_assert_eq(tu_run(argv, NULL, NULL, &err), 0, "stderr: %s", err);
	/* Only the oversight notice every data-acting command prints in lab mode. */
	cr_assert_str_eq(err, "mamori: lab mode: no oversight panel; every act is allowed and audited\n",
			 "no message when the reader goes away");
	free(err);
	drop_capture(&c);
}

Test(cli, output_to_a_fifo_or_symlink_keeps_them_what_they_are)
{
	struct capture c;
	char script[2048], *err, *copied, *real;
	const char *argv[] = { "bash", "-c", script, NULL };
	struct stat st;

	make_capture(&c, 20, 200);
	/* A FIFO is written in place (its reader gets the flows); a symbolic
	 * link keeps pointing at the file, which gets the flows. */
	snprintf(script, sizeof(script),
		 "set -e; cd '%s'; mkfifo fifo; echo old > real.csv; ln -s real.csv link.csv\n"
		 "cat fifo > from-fifo.csv & reader=$!\n"
		 "'%s' meter -q --format csv -o fifo synth.pcap\n"
		 "wait $reader\n"
		 "'%s' meter -q --format csv -o link.csv synth.pcap\n",
		 c.dir, tu_mamori_bin(), tu_mamori_bin());
	cr_assert_eq(tu_run(argv, NULL, NULL, &err), 0, "stderr: %s", err);
	free(err);
	snprintf(script, sizeof(script), "%s/fifo", c.dir);
	cr_assert_eq(lstat(script, &st), 0);
	cr_assert(S_ISFIFO(st.st_mode), "the FIFO is still a FIFO");
	snprintf(script, sizeof(script), "%s/link.csv", c.dir);
	cr_assert_eq(lstat(script, &st), 0);
	cr_assert(S_ISLNK(st.st_mode), "the link is still a link");
	snprintf(script, sizeof(script), "%s/from-fifo.csv", c.dir);
	copied = tu_read_file(script, NULL);
	snprintf(script, sizeof(script), "%s/real.csv", c.dir);
	real = tu_read_file(script, NULL);
	cr_assert(strncmp(copied, "uid,id,", 7) == 0, "the FIFO's reader got the flows");
	cr_assert_str_eq(real, copied, "the linked file got the same flows");
	free(copied);
	free(real);
	drop_capture(&c);
}
