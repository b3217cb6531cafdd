/*
 * Timer of the query benchmark (bench/query/run): runs one command a warm-up
 * time and then N times, and prints the best wall time with the CPU time
 * (user + system, from wait4's rusage, microseconds) of that run and the
 * least CPU time of any run. A server that does the work for a client
 * (clickhouse-server) is charged too: --server-pid adds that process's CPU
 * ticks over each run (/proc/PID/stat, all threads, 1/CLK_TCK resolution).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct run {
	double wall, user, sys, server;
};

static const char usage[] =
	"usage: query_bestof [--runs N] [--warmup N] [--output FILE] [--errors FILE] [--server-pid PID]\n"
	"                    -- CMD [ARG...]\n"
	"  Runs CMD --warmup times (default 1), then --runs times (default 3), with its\n"
	"  standard output in FILE (default /dev/null; the last run's output is kept)\n"
	"  and its standard error in the --errors FILE (default: this one's).\n"
	"  Prints: wall=S cpu=S user=S sys=S server=S min-cpu=S, where wall is the best\n"
	"  run's, cpu = user + sys (+ server) of that run, and min-cpu the least cpu of\n"
	"  any run. Fails if any run exits non-zero.\n";

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* User + system seconds of a process and all its threads, from /proc; -1 if unreadable. */
static double proc_cpu_s(long pid)
{
	char path[64], buf[4096];
	unsigned long utime, stime;
	const char *p;
	size_t len;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	/* The command name may hold spaces and parentheses: fields follow the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
		return -1;
	return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Points descriptor target at path, created or truncated; 0 or -1. */
static int redirect(int target, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || dup2(fd, target) < 0) {
		fprintf(stderr, "query_bestof: %s: %s\n", path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/* One run of argv with standard output to out (and error to err); 0, or -1 after saying why. */
static int run_once(char **argv, const char *out, const char *err, long server_pid, struct run *r)
{
	struct rusage ru;
	double t0, s0 = 0, s1 = 0;
	int status;
	pid_t pid;

	if (server_pid > 0 && (s0 = proc_cpu_s(server_pid)) < 0) {
		fprintf(stderr, "query_bestof: cannot read /proc/%ld/stat\n", server_pid);
		return -1;
	}
	t0 = now_s();
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "query_bestof: fork: %s\n", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		if (redirect(STDOUT_FILENO, out) < 0 || (err && redirect(STDERR_FILENO, err) < 0))
			_exit(127);
		execvp(argv[0], argv);
		fprintf(stderr, "query_bestof: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "query_bestof: wait4: %s\n", strerror(errno));
			return -1;
		}
	}
	r->wall = now_s() - t0;
	if (server_pid > 0 && (s1 = proc_cpu_s(server_pid)) < 0) {
		fprintf(stderr, "query_bestof: server %ld went away\n", server_pid);
		return -1;
	}
	r->user = tv_s(ru.ru_utime);
	r->sys = tv_s(ru.ru_stime);
	r->server = s1 - s0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "query_bestof: %s exited with status %d\n", argv[0],
			WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "runs", required_argument, NULL, 'r' },       { "warmup", required_argument, NULL, 'w' },
		{ "output", required_argument, NULL, 'o' },     { "server-pid", required_argument, NULL, 'p' },
		{ "errors", required_argument, NULL, 'e' },     { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out = "/dev/null", *err = NULL;
	long runs = 3, warmup = 1, server_pid = 0;
	struct run best = { 0 }, r;
	double min_cpu = 0;
	int c;

	while ((c = getopt_long(argc, argv, "+r:w:o:e:p:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r': runs = strtol(optarg, NULL, 10); break;
		case 'w': warmup = strtol(optarg, NULL, 10); break;
		case 'o': out = optarg; break;
		case 'e': err = optarg; break;
		case 'p': server_pid = strtol(optarg, NULL, 10); break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs(usage, stderr); return 1;
		}
	}
	if (optind >= argc || runs < 1 || runs > 100 || warmup < 0 || warmup > 100) {
		fputs(usage, stderr);
		return 1;
	}
	for (long i = 0; i < warmup; i++)
		if (run_once(argv + optind, out, err, server_pid, &r) < 0)
			return 1;
	for (long i = 0; i < runs; i++) {
		double cpu;

		if (run_once(argv + optind, out, err, server_pid, &r) < 0)
			return 1;
		cpu = r.user + r.sys + r.server;
		if (i == 0 || r.wall < best.wall)
			best = r;
		if (i == 0 || cpu < min_cpu)
			min_cpu = cpu;
	}
	printf("wall=%.6f cpu=%.6f user=%.6f sys=%.6f server=%.6f min-cpu=%.6f\n", best.wall,
	       best.user + best.sys + best.server, best.user, best.sys, best.server, min_cpu);
	return 0;
}
