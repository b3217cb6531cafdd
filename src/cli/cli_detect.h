/*
 * Inline detection for the commands that take flows in (meter, collect):
 * --detect feeds every kept flow to the detectors as it is written, under
 * an analyze authorization marked automated (lab mode: allowed, flagged),
 * and appends alerts to <data>/alerts/ as they are raised.
 *
 * The detectors run on threads of their own (the `threads` key of the
 * [detect] section: 2 by default, one engine per half of the detectors,
 * MM_DETECT_SECOND_THREAD; or 1), so the thread that receives and decodes
 * never waits for them while they keep up: the tap copies each batch into
 * a bounded queue (a ring of CLI_DETECT_QUEUE flows, one writer, each
 * detection thread reading every flow) that the detection threads drain
 * into their engines, in the order the batches came. A full queue makes
 * the tap wait (back-pressure: the receive side then leaves datagrams in
 * its socket buffer, where the kernel counts any it drops); every wait is
 * counted and printed with the counters, and no flow is ever skipped. The
 * engines see the same flows in the same order as one engine called
 * inline: the same alerts (docs/detect.md, "Threads").
 */
#ifndef MAMORI_CLI_DETECT_H
#define MAMORI_CLI_DETECT_H

#include "cli/cli.h"
#include "cli/cli_guard.h"

#include "mamori/detect.h"
#include "mamori/intel.h"

#include <pthread.h>

/* Flows the queue to the detection threads holds (about 11 MiB). */
#define CLI_DETECT_QUEUE 65536
#define CLI_DETECT_THREADS_MAX 2

/* The queue: flows number head[k] .. tail (at index number % size) wait for detection thread k. */
struct cli_detect_queue {
	struct mm_flow *v;
	uint64_t tail;                        /* flows put in since the start */
	uint64_t head[CLI_DETECT_THREADS_MAX]; /* flows each thread has fed to its engine */
	unsigned n_readers;
	bool closing;                         /* no more flows: drain and stop */
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	uint64_t full_waits;                  /* times the tap found it full and waited */
	uint64_t peak;                        /* most flows it held */
};

/* One detection thread and the engine it alone feeds while it runs. */
struct cli_detect_thread {
	struct cli_detect *d;
	unsigned index;
	struct mm_detect *engine;
	pthread_t thread;
	bool running;                         /* started and not yet joined */
};

struct cli_detect {
	const char *command;
	struct cli_detect_thread t[CLI_DETECT_THREADS_MAX];
	unsigned n_threads;
	struct mm_intel *intel;
	struct mm_alert_store *alerts;
	struct cli_guarded_scan g;
	struct cli_detect_queue q;
	pthread_mutex_t alert_lock;           /* the alert store and the counts: every thread raises alerts */
	uint64_t n_alerts, out_of_scope;
	int status;                           /* first failure to store an alert (under alert_lock) */
};

/*
 * Opens the detectors for data_dir with conf's [detect] section (conf may
 * be NULL), after the guard allowed automated analysis. 0, or an exit code
 * after a message (a refusal: CLI_EXIT_REFUSED).
 */
int cli_detect_open(struct cli_detect *d, const char *command, const char *data_dir, const struct mm_config *conf,
		    const char *authz, bool quiet);

/* The job's tap that feeds the engines (through the queue). */
struct mm_flow_tap cli_detect_tap(struct cli_detect *d);

/*
 * Lets the detection threads drain the queue and stop, flushes the engines
 * (their last alerts), prints the counters to stats (may be NULL), audits
 * what the run did and frees everything. Returns exit_code, or the exit
 * code of a failure here when exit_code was 0.
 */
int cli_detect_close(struct cli_detect *d, FILE *stats, int exit_code);

#endif
