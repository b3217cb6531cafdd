/*
 * The meter job (see pipeline.h): capture files or a live interface →
 * meter → the store, a text flow writer and an IPFIX exporter, with
 * progress on a terminal and the job's counters at the end. Files are
 * metered in order as one stream by one meter, so a flow that spans two
 * consecutive files stays one flow.
 */
#include "mamori/pipeline.h"

#include "mamori/ipfix_export.h"

#include "pipeline/policy_gate.h"

#include "mamori/capture.h"
#include "mamori/log.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Packets handed from the capture to the meter per call: enough to amortise
 * the calls and let the meter prefetch, small enough to stay in L1/L2. */
#define BATCH_PACKETS 256

/* Progress is redrawn at most this often (4 times a second). */
#define PROGRESS_INTERVAL_NS (MM_NS_PER_SEC / 4)

/* A quiet live link still needs its idle flows expired about this often. */
#define LIVE_ADVANCE_NS MM_NS_PER_SEC

/* Bytes a pcap record header adds to a packet's captured bytes (for progress). */
#define RECORD_OVERHEAD 16

static volatile sig_atomic_t stop_requested;
static _Atomic(struct mm_capture *) running_capture;

struct progress {
	bool enabled;
	uint64_t total_bytes; /* of all input files; 0 for a live capture */
	uint64_t done_bytes;  /* files finished plus the estimate in the current one */
	uint64_t packets;
	uint64_t start_ns, last_draw_ns; /* monotonic */
	bool drawn;
};

struct meter_run {
	const struct mm_meter_job *job;
	struct mm_meter *meter;
	struct mm_flow_writer *writer;   /* NULL without text output */
	struct mm_store_writer *store;   /* NULL without a store */
	struct mm_ipfix_exporter *ipfix; /* NULL unless the job exports IPFIX too */
	struct policy_gate gate;         /* every flow passes it before any sink */
	int write_status; /* first failure of the store or the text output; ends the job */
	struct mm_store_writer_stats store_stats; /* taken at the final flush */
	struct mm_capture_stats capture_stats; /* summed over the inputs */
	uint64_t peak_table_bytes;
	struct progress progress;
};

void mm_pipeline_stop(void)
{
	struct mm_capture *cap = atomic_load(&running_capture);

	stop_requested = 1;
	if (cap)
		mm_capture_break(cap);
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * MM_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void sink_flows(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct meter_run *run = ctx;

	flows = policy_gate_pass(&run->gate, &run->job->policy, flows, &n);
	if (!flows) {
		if (run->write_status == 0)
			run->write_status = run->gate.status;
		return;
	}
	if (n == 0)
		return;
	/* After a failed write the flows are still counted by the meter; only
	 * their output is impossible. The store goes first: a flow a reader of
	 * the text output has seen is one the store has taken. */
	if (run->store && run->write_status == 0)
		run->write_status = mm_store_writer_append(run->store, flows, n);
	if (run->writer && run->write_status == 0)
		run->write_status = mm_flow_writer_write(run->writer, flows, n);
	if (run->ipfix)
		mm_ipfix_exporter_write(run->ipfix, flows, n);
	if (run->job->tap.fn && run->write_status == 0)
		run->write_status = run->job->tap.fn(run->job->tap.ctx, flows, n);
}

/*
 * Gives time-driven sinks their turn: the store publishes a buffer older
 * than its flush interval even when no flow ends for a while, and the
 * exporter sends what it holds. Cheap when there is nothing to do.
 */
static void poll_sinks(struct meter_run *run)
{
	if (run->store && run->write_status == 0)
		run->write_status = mm_store_writer_poll(run->store);
	if (run->ipfix)
		mm_ipfix_exporter_poll(run->ipfix);
}

/* ---- progress on a terminal ---- */

static void progress_start(struct progress *p, const struct mm_meter_job *job)
{
	struct stat st;

	memset(p, 0, sizeof(*p));
	p->enabled = job->progress && isatty(STDERR_FILENO);
	if (!p->enabled)
		return;
	for (size_t i = 0; i < job->n_files; i++)
		if (stat(job->files[i], &st) == 0 && S_ISREG(st.st_mode))
			p->total_bytes += (uint64_t)st.st_size;
	p->start_ns = monotonic_ns();
}

static void progress_draw(struct progress *p, uint64_t now)
{
	double elapsed = (double)(now - p->start_ns) / 1e9;
	double rate = elapsed > 0 ? (double)p->packets / elapsed : 0;
	char tail[64] = "";

	if (p->total_bytes) {
		double done = (double)p->done_bytes / (double)p->total_bytes;

		/* The byte count is an estimate: never claim to be finished early. */
		if (done > 0.99)
			done = 0.99;
		if (done > 0 && rate > 0) {
			unsigned eta = (unsigned)(elapsed / done * (1 - done));
			snprintf(tail, sizeof(tail), "  %3.0f%%  ETA %u:%02u", done * 100, eta / 60,
				 eta % 60);
		}
	}
	fprintf(stderr, "\r\033[K%" PRIu64 " packets  %.0f packets/s%s", p->packets, rate, tail);
	p->drawn = true;
	p->last_draw_ns = now;
}

static void progress_update(struct progress *p, const struct mm_raw_packet *pkts, int n)
{
	uint64_t now;

	if (!p->enabled)
		return;
	p->packets += (uint64_t)n;
	for (int i = 0; i < n; i++)
		p->done_bytes += pkts[i].cap_len + RECORD_OVERHEAD;
	now = monotonic_ns();
	if (now - p->last_draw_ns >= PROGRESS_INTERVAL_NS)
		progress_draw(p, now);
}

static void progress_file_done(struct progress *p, const char *path, uint64_t bytes_before)
{
	struct stat st;

	if (p->enabled && stat(path, &st) == 0 && S_ISREG(st.st_mode))
		p->done_bytes = bytes_before + (uint64_t)st.st_size;
}

static void progress_clear(struct progress *p)
{
	if (p->drawn)
		fputs("\r\033[K", stderr);
	p->drawn = false;
}

/* ---- inputs ---- */

static int open_file(struct mm_capture **out, const char *path, const char *bpf)
{
	int rc = mm_capture_open_file(out, path);

	if (rc == 0 && bpf && (rc = mm_capture_set_filter(*out, bpf)) != 0) {
		mm_capture_free(*out);
		*out = NULL;
	}
	return rc;
}

/*
 * Opens every file once before metering starts, so a bad file or filter
 * is refused before any flow is written instead of halfway through.
 */
static int check_files(const struct mm_meter_job *job)
{
	for (size_t i = 0; i < job->n_files; i++) {
		struct mm_capture *cap;
		int rc = open_file(&cap, job->files[i], job->bpf);

		if (rc)
			return rc;
		mm_capture_free(cap);
	}
	return 0;
}

static void add_capture_stats(struct mm_capture_stats *sum, const struct mm_capture *cap)
{
	struct mm_capture_stats s;

	mm_capture_get_stats(cap, &s);
	sum->packets += s.packets;
	sum->bytes += s.bytes;
	sum->filtered += s.filtered;
	sum->kernel_drops += s.kernel_drops;
	for (int i = 0; i < MM_CAPERR__COUNT; i++)
		sum->errors[i] += s.errors[i];
}

static void note_table_bytes(struct meter_run *run)
{
	struct mm_meter_stats ms;

	mm_meter_get_stats(run->meter, &ms);
	if (ms.table_bytes > run->peak_table_bytes)
		run->peak_table_bytes = ms.table_bytes;
}

/*
 * A live capture advances the meter's clock with wall time so idle flows
 * expire while the link is quiet, and hands finished flows on at once:
 * a live run is watched as it goes.
 */
static void live_tick(struct meter_run *run, uint64_t *last_advance)
{
	uint64_t now = mm_time_now_ns();

	if (now - *last_advance < LIVE_ADVANCE_NS)
		return;
	mm_meter_advance(run->meter, now);
	*last_advance = now;
	if (run->job->out)
		fflush(run->job->out);
}

/*
 * Reads cap to its end (or a stop) into the meter. A live source may
 * answer MM_EAGAIN when a read timed out without packets; that is the
 * chance to expire flows on a quiet link. Returns 0 or a fatal status.
 */
static int meter_source(struct meter_run *run, struct mm_capture *cap, bool live)
{
	struct mm_raw_packet pkts[BATCH_PACKETS];
	uint64_t last_advance = 0;
	int n = 0;

	atomic_store(&running_capture, cap);
	while (!stop_requested && run->write_status == 0) {
		n = mm_capture_next_batch(cap, pkts, BATCH_PACKETS);
		if (live && n == MM_EAGAIN) {
			live_tick(run, &last_advance);
			poll_sinks(run);
			continue;
		}
		if (n <= 0)
			break;
		mm_meter_packets(run->meter, pkts, (size_t)n);
		progress_update(&run->progress, pkts, n);
		poll_sinks(run);
		if (live)
			live_tick(run, &last_advance);
	}
	atomic_store(&running_capture, NULL);
	add_capture_stats(&run->capture_stats, cap);
	note_table_bytes(run);
	return n < 0 && !stop_requested ? n : 0;
}

static int meter_files(struct meter_run *run)
{
	const struct mm_meter_job *job = run->job;
	struct mm_capture *cap = NULL;
	int rc = 0;

	for (size_t i = 0; i < job->n_files && !stop_requested && run->write_status == 0; i++) {
		uint64_t bytes_before = run->progress.done_bytes;
		struct mm_capture_stats before = run->capture_stats;
		uint64_t n_errors = 0;

		rc = open_file(&cap, job->files[i], job->bpf);
		if (rc)
			goto out;
		rc = meter_source(run, cap, false);
		if (rc)
			goto out;
		for (int e = 0; e < MM_CAPERR__COUNT; e++)
			n_errors += run->capture_stats.errors[e] - before.errors[e];
		/* A corrupt record ends its file early; the run goes on with the next. */
		if (n_errors && job->stats_out) {
			progress_clear(&run->progress);
			fprintf(job->stats_out, "mamori meter: warning: %s\n", mm_last_error());
		}
		progress_file_done(&run->progress, job->files[i], bytes_before);
		mm_capture_free(cap);
		cap = NULL;
	}
out:
	if (cap)
		mm_capture_free(cap);
	return rc;
}

static int meter_live(struct meter_run *run)
{
	const struct mm_meter_job *job = run->job;
	struct mm_capture *cap = NULL;
	int rc;

	rc = mm_capture_open_live(&cap, job->interface, job->snaplen, true);
	if (rc)
		goto out;
	if (job->bpf && (rc = mm_capture_set_filter(cap, job->bpf)) != 0)
		goto out;
	rc = meter_source(run, cap, true);
out:
	if (cap)
		mm_capture_free(cap);
	return rc;
}

/* ---- counters ---- */

static void print_counter(FILE *fp, const char *name, const char *detail, uint64_t value)
{
	char key[64];

	snprintf(key, sizeof(key), "%s%s%s", name, detail ? "." : "", detail ? detail : "");
	fprintf(fp, "  %-34s %" PRIu64 "\n", key, value);
}

static void print_counters(const struct meter_run *run, FILE *fp)
{
	const struct mm_capture_stats *cs = &run->capture_stats;
	struct mm_meter_stats ms;
	uint64_t peak_bytes = run->peak_table_bytes;

	mm_meter_get_stats(run->meter, &ms);
	if (ms.table_bytes > peak_bytes)
		peak_bytes = ms.table_bytes;
	fprintf(fp, "mamori meter: counters\n");
	print_counter(fp, "packets-read", NULL, cs->packets);
	print_counter(fp, "bytes-read", NULL, cs->bytes);
	if (run->job->bpf)
		print_counter(fp, "packets-filtered", NULL, cs->filtered);
	if (run->job->interface)
		print_counter(fp, "kernel-drops", NULL, cs->kernel_drops);
	for (unsigned e = 0; e < MM_CAPERR__COUNT; e++)
		if (cs->errors[e])
			print_counter(fp, "capture-error", mm_capture_error_name(e), cs->errors[e]);
	print_counter(fp, "packets-metered", NULL, ms.metered);
	for (unsigned a = MM_ANOM_NONE + 1; a < MM_ANOM__COUNT; a++)
		if (ms.anomalies[a])
			print_counter(fp, a == MM_ANOM_NOT_IP ? "not-ip" : "malformed",
				      a == MM_ANOM_NOT_IP ? NULL : mm_anomaly_name(a), ms.anomalies[a]);
	if (ms.fragments) {
		print_counter(fp, "fragments", NULL, ms.fragments);
		print_counter(fp, "datagrams-reassembled", NULL, ms.datagrams_reassembled);
	}
	if (ms.clock_steps_back)
		print_counter(fp, "clock-steps-back", NULL, ms.clock_steps_back);
	print_counter(fp, "flows-exported", NULL, ms.flows_exported);
	for (unsigned r = 0; r < sizeof(ms.exported_by_reason) / sizeof(ms.exported_by_reason[0]); r++)
		if (ms.exported_by_reason[r])
			print_counter(fp, "flows-ended", mm_end_reason_name(r), ms.exported_by_reason[r]);
	print_counter(fp, "early-exports", NULL, ms.exported_by_reason[MM_END_RESOURCE]);
	print_counter(fp, "peak-flows", NULL, ms.peak_flows);
	print_counter(fp, "table-bytes", NULL, peak_bytes);
	print_counter(fp, "table-bytes-per-flow", NULL, ms.peak_flows ? peak_bytes / ms.peak_flows : 0);
	if (run->store) {
		print_counter(fp, "store-flows-written", NULL, run->store_stats.flows_appended);
		print_counter(fp, "store-flows-published", NULL, run->store_stats.flows_published);
		print_counter(fp, "store-segments-published", NULL, run->store_stats.segments_published);
	}
	if (run->ipfix) {
		struct mm_ipfix_export_stats xs;

		mm_ipfix_exporter_get_stats(run->ipfix, &xs);
		print_counter(fp, "ipfix-records-sent", NULL, xs.records_sent);
		print_counter(fp, "ipfix-records-dropped", NULL, xs.records_dropped);
		print_counter(fp, "ipfix-records-failed", NULL, xs.records_failed);
		print_counter(fp, "ipfix-records-skipped", NULL, xs.records_skipped);
		print_counter(fp, "ipfix-messages-sent", NULL, xs.messages_sent);
	}
	if (run->job->policy.policy)
		fprintf(fp, "  %-34s %s\n", "policy.jurisdiction", mm_policy_describe(run->job->policy.policy));
	fflush(fp);
}

int mm_pipeline_meter(const struct mm_meter_job *job)
{
	struct meter_run run = { .job = job };
	int rc;

	stop_requested = 0;
	if (!job->interface && job->n_files == 0)
		return mm_fail(MM_EINVAL, "meter: no capture file or interface given");
	if (!job->interface && (rc = check_files(job)) != 0)
		return rc;
	/* The store first: one that cannot be opened (held by another writer)
	 * is refused before any text is written. */
	if (job->store.dir && (rc = mm_store_writer_open(&run.store, job->store.dir, job->store.options)) != 0)
		goto out;
	if (job->out && (rc = mm_flow_writer_new(&run.writer, job->format, job->out)) != 0)
		goto out;
	if (job->ipfix_dest) {
		struct mm_ipfix_export_config xcfg;

		mm_ipfix_export_config_default(&xcfg, job->meter.sensor_id);
		xcfg.dest = job->ipfix_dest;
		rc = mm_ipfix_exporter_new(&run.ipfix, &xcfg);
		if (rc)
			goto out;
	}
	rc = mm_meter_new(&run.meter, &job->meter, sink_flows, &run);
	if (rc)
		goto out;
	progress_start(&run.progress, job);

	rc = job->interface ? meter_live(&run) : meter_files(&run);
	/* Flows already in the table are exported even after a stop or an input
	 * error, so what was metered is not lost. */
	note_table_bytes(&run);
	mm_meter_finish(run.meter);
	progress_clear(&run.progress);
	if (run.store) {
		/* Also after a failed text output: what the store took is kept. */
		int store_rc = mm_store_writer_flush(run.store);

		if (run.write_status == 0)
			run.write_status = store_rc;
		mm_store_writer_stats(run.store, &run.store_stats);
	}
	if (run.writer && run.write_status == 0)
		run.write_status = mm_flow_writer_finish(run.writer);
	if (run.ipfix && mm_ipfix_exporter_finish(run.ipfix) != 0)
		mm_warn("%s", mm_last_error());
	if (rc == 0)
		rc = run.write_status;
	/* A failed output (often a reader that went away) ends the run without
	 * counters: they would describe output nobody received. */
	if (run.write_status == 0 && job->stats_out)
		print_counters(&run, job->stats_out);
	if (run.write_status == 0) {
		int policy_rc = policy_gate_report(&job->policy, &run.gate.counts, job->stats_out);

		if (rc == 0)
			rc = policy_rc;
	}
out:
	policy_gate_release(&run.gate);
	if (run.meter)
		mm_meter_free(run.meter);
	mm_flow_writer_free(run.writer);
	/* The flush above reported any failure; this one only retries it. */
	(void)mm_store_writer_close(run.store);
	mm_ipfix_exporter_free(run.ipfix);
	return rc;
}
