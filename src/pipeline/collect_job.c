/*
 * The collect job (see pipeline.h): export messages from sockets, files or
 * captured packets → one ingest decoder per worker → the store, a flow
 * writer or ipfix-json, and an IPFIX forwarder. Every source hands messages to deliver_message(),
 * so replay behaves exactly like the socket path. Counters from the sockets,
 * the collector and the decoders are printed so that received = decoded +
 * malformed + refused.
 */
#include "pipeline/collect_int.h"
#include "pipeline/policy_gate.h"

#include "mamori/capture.h"
#include "mamori/ipfix_export.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"
#include "meter/decode.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* Packets read from a capture per call. */
#define PCAP_BATCH 256

/* Workers wake at least this often to expire templates and held sets. */
#define WORKER_TICK_MS 1000

/* The main thread flushes output and polls the store and the forwarder
 * this often, so a quiet feed still publishes within the flush interval
 * (plus at most this much). */
#define HOUSEKEEPING_NS MM_NS_PER_SEC

#define PROTO_UDP 17
#define UDP_HEADER_LEN 8

/* Messages the collector refused before the decoder saw them, by reason. */
enum refuse_reason {
	REFUSE_TRUNCATED = 0, /* datagram or captured packet shorter than its UDP length says */
	REFUSE_FRAGMENT,      /* pcap: an IP fragment of an export packet (not reassembled) */
	REFUSE_TCP_FRAMING,   /* TCP stream closed at a header that was not IPFIX */
	REFUSE_TCP_PARTIAL,   /* TCP stream closed inside a message */
	REFUSE_AFTER_STOP,    /* arrived after --count was reached */
	REFUSE__COUNT
};

static const char *const refuse_names[REFUSE__COUNT] = {
	[REFUSE_TRUNCATED] = "truncated",
	[REFUSE_FRAGMENT] = "fragment",
	[REFUSE_TCP_FRAMING] = "tcp-framing",
	[REFUSE_TCP_PARTIAL] = "tcp-partial",
	[REFUSE_AFTER_STOP] = "after-count",
};

/* Counters of the job, summed over its workers. */
struct collect_totals {
	struct mm_ingest_stats ingest;
	struct collect_net_stats net;
	uint64_t refused[REFUSE__COUNT];
	uint64_t pcap_packets, pcap_not_export; /* replay: packets read; not UDP (skipped) */
	uint64_t flows_written;
	struct mm_store_writer_stats store;
	struct mm_ipfix_export_stats fwd;
	struct mm_policy_counts policy;
};

struct collect_run;

struct worker {
	struct collect_run *run;
	struct mm_ingest *ing;
	struct collect_net *net;    /* NULL when replaying */
	pthread_mutex_t lock;       /* held while ing decodes or is read for stats */
	pthread_t thread;
	bool started;
	int status;                 /* first fatal error of the thread */
	uint64_t refused[REFUSE__COUNT];
	uint64_t pcap_packets, pcap_not_export;
	uint64_t last_advance_ns;
	struct policy_gate gate;    /* this worker's flows pass it before the shared sinks */
};

struct collect_run {
	const struct mm_collect_job *job;
	/* out_lock guards everything below it: one writer shared by the workers.
	 * A worker waits for it, so a slow output slows decoding and the
	 * socket buffers fill; what the kernel then drops is counted
	 * (kernel-drops), never lost silently. */
	pthread_mutex_t out_lock;
	struct mm_flow_writer *writer;
	struct mm_store_writer *store;
	struct mm_ipfix_exporter *forwarder;
	int write_status;           /* first failure of the output; ends the job */
	uint64_t flows_written;
	struct worker *workers;
	size_t n_workers;
	_Atomic uint64_t n_messages; /* for max_messages */
	uint64_t start_ns;          /* monotonic */
	int wake;                   /* eventfd that wakes the listening threads; -1 when replaying */
};

static atomic_int stop_requested;
static atomic_int wake_fd = -1;

void mm_pipeline_collect_stop(void)
{
	uint64_t one = 1;
	int fd = atomic_load(&wake_fd);

	atomic_store(&stop_requested, 1);
	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0)
		return; /* the counter is full: a wakeup is pending anyway */
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * MM_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- sinks ---- */

static void fail_output(struct collect_run *run, int rc)
{
	if (run->write_status == 0) {
		run->write_status = rc;
		mm_pipeline_collect_stop();
	}
}

static void sink_flows(void *ctx, const struct mm_flow *flows, size_t n)
{
	struct worker *w = ctx;
	struct collect_run *run = w->run;

	/* Outside the output lock: the policy's work runs on every worker. */
	flows = policy_gate_pass(&w->gate, &run->job->policy, flows, &n);
	if (n == 0) {
		if (!flows) {
			pthread_mutex_lock(&run->out_lock);
			fail_output(run, w->gate.status);
			pthread_mutex_unlock(&run->out_lock);
		}
		return;
	}
	pthread_mutex_lock(&run->out_lock);
	if (run->store && run->write_status == 0) {
		int rc = mm_store_writer_append(run->store, flows, n);

		if (rc)
			fail_output(run, rc);
	}
	if (run->writer && run->write_status == 0) {
		int rc = mm_flow_writer_write(run->writer, flows, n);

		if (rc)
			fail_output(run, rc);
		else
			run->flows_written += n;
	}
	if (run->forwarder)
		mm_ipfix_exporter_write(run->forwarder, flows, n);
	if (run->job->tap.fn && run->write_status == 0) {
		int rc = run->job->tap.fn(run->job->tap.ctx, flows, n);

		if (rc)
			fail_output(run, rc);
	}
	pthread_mutex_unlock(&run->out_lock);
}

static void sink_record(void *ctx, const struct mm_ingest_record *rec)
{
	struct worker *w = ctx;
	struct collect_run *run = w->run;

	pthread_mutex_lock(&run->out_lock);
	if (run->write_status == 0) {
		int rc = mm_ingest_json_write(run->job->out, rec);

		if (rc)
			fail_output(run, rc);
		else if (rec->flow)
			run->flows_written++;
	}
	pthread_mutex_unlock(&run->out_lock);
}

/* ---- one message, whatever its source ---- */

/* Takes one message if --count allows it; counts it refused otherwise. */
static bool admit_message(struct worker *w)
{
	uint64_t max = w->run->job->max_messages, n;

	if (!max)
		return true;
	n = atomic_fetch_add(&w->run->n_messages, 1);
	if (n + 1 == max)
		mm_pipeline_collect_stop(); /* this is the last one */
	if (n < max)
		return true;
	/* Other workers may hold messages received before they saw the stop. */
	w->refused[REFUSE_AFTER_STOP]++;
	return false;
}

static void deliver_message(struct worker *w, const struct mm_addr *exporter, uint16_t port,
			    const uint8_t *msg, size_t len, uint64_t now_ns)
{
	if (!admit_message(w))
		return;
	/* A malformed message is counted by the decoder by reason; it is not
	 * an error of the job. */
	mm_ingest_message(w->ing, exporter, port, msg, len, now_ns);
}

static void on_net_message(void *ctx, const struct mm_addr *exporter, uint16_t port, const uint8_t *msg,
			   size_t len)
{
	struct worker *w = ctx;

	pthread_mutex_lock(&w->lock);
	deliver_message(w, exporter, port, msg, len, mm_time_now_ns());
	pthread_mutex_unlock(&w->lock);
}

/* ---- workers ---- */

static int worker_init(struct worker *w, struct collect_run *run)
{
	const struct mm_collect_job *job = run->job;
	bool flows = job->forward || job->store.dir || (job->out && !job->ipfix_json);

	w->run = run;
	pthread_mutex_init(&w->lock, NULL);
	return mm_ingest_new(&w->ing, &job->ingest, flows ? sink_flows : NULL,
			     job->ipfix_json && job->out ? sink_record : NULL, w);
}

static void worker_release(struct worker *w)
{
	mm_ingest_free(w->ing);
	collect_net_free(w->net);
	policy_gate_release(&w->gate);
	pthread_mutex_destroy(&w->lock);
}

/* Expires templates and held sets on the decoder's clock. */
static void worker_advance(struct worker *w, uint64_t now_ns)
{
	pthread_mutex_lock(&w->lock);
	mm_ingest_advance(w->ing, now_ns);
	w->last_advance_ns = now_ns;
	pthread_mutex_unlock(&w->lock);
}

/*
 * Held sets still waiting at the end will never see their template: they
 * are counted as template misses now, so the final counters add up.
 */
static void worker_drain(struct worker *w, uint64_t now_ns)
{
	worker_advance(w, now_ns + w->run->job->ingest.pending_ns + 1);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load(&stop_requested)) {
		uint64_t now;
		int rc = collect_net_wait(w->net, WORKER_TICK_MS, on_net_message, w);

		if (rc) {
			w->status = rc;
			mm_pipeline_collect_stop();
			break;
		}
		now = mm_time_now_ns();
		if (now - w->last_advance_ns >= MM_NS_PER_SEC)
			worker_advance(w, now);
	}
	return NULL;
}

/* ---- counters ---- */

static void add_net(struct collect_net_stats *sum, const struct collect_net_stats *s)
{
	sum->datagrams += s->datagrams;
	sum->tcp_messages += s->tcp_messages;
	sum->bytes += s->bytes;
	sum->truncated += s->truncated;
	sum->tcp_bad_framing += s->tcp_bad_framing;
	sum->tcp_partial += s->tcp_partial;
	sum->kernel_drops += s->kernel_drops;
	sum->tcp_accepted += s->tcp_accepted;
	sum->tcp_refused += s->tcp_refused;
	if (!sum->rcvbuf_bytes || (s->rcvbuf_bytes && s->rcvbuf_bytes < sum->rcvbuf_bytes))
		sum->rcvbuf_bytes = s->rcvbuf_bytes;
}

static void gather_totals(struct collect_run *run, struct collect_totals *t)
{
	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < run->n_workers; i++) {
		struct worker *w = &run->workers[i];
		struct mm_ingest_stats s;
		struct collect_net_stats ns;

		pthread_mutex_lock(&w->lock);
		mm_ingest_get_totals(w->ing, &s);
		for (unsigned r = 0; r < REFUSE__COUNT; r++)
			t->refused[r] += w->refused[r];
		t->pcap_packets += w->pcap_packets;
		t->pcap_not_export += w->pcap_not_export;
		mm_policy_counts_add(&t->policy, &w->gate.counts);
		pthread_mutex_unlock(&w->lock);
		mm_ingest_stats_add(&t->ingest, &s);
		if (w->net) {
			collect_net_get_stats(w->net, &ns);
			add_net(&t->net, &ns);
		}
	}
	t->refused[REFUSE_TRUNCATED] += t->net.truncated;
	t->refused[REFUSE_TCP_FRAMING] += t->net.tcp_bad_framing;
	t->refused[REFUSE_TCP_PARTIAL] += t->net.tcp_partial;
	pthread_mutex_lock(&run->out_lock);
	t->flows_written = run->flows_written;
	if (run->store)
		mm_store_writer_stats(run->store, &t->store);
	if (run->forwarder)
		mm_ipfix_exporter_get_stats(run->forwarder, &t->fwd);
	pthread_mutex_unlock(&run->out_lock);
}

static uint64_t total_refused(const struct collect_totals *t)
{
	uint64_t n = 0;

	for (unsigned r = 0; r < REFUSE__COUNT; r++)
		n += t->refused[r];
	return n;
}

/*
 * One line of name=value pairs: received = decoded + malformed + refused,
 * then why. Reasons appear only when non-zero.
 */
/* Per class over all sensors; `mamori store stats` and the final lines give them per sensor. */
static void print_policy_totals(FILE *fp, const struct mm_policy_counts *c)
{
	if (!c->classed) {
		fprintf(fp, " policy=none");
		return;
	}
	for (unsigned k = 0; k < MM_CLASS__COUNT; k++) {
		uint64_t seen = 0, kept = 0, dropped = 0;

		for (size_t i = 0; i < c->n; i++) {
			seen += c->s[i].seen[k];
			kept += c->s[i].kept[k];
			dropped += c->s[i].dropped[k];
		}
		if (seen)
			fprintf(fp, " policy.%s.seen=%" PRIu64 " policy.%s.kept=%" PRIu64 " policy.%s.dropped=%" PRIu64,
				mm_traffic_class_name(k), seen, mm_traffic_class_name(k), kept,
				mm_traffic_class_name(k), dropped);
	}
}

static void print_totals(FILE *fp, const char *what, const struct collect_totals *t, uint64_t elapsed_ns,
			 bool forwarding, bool storing, bool policy)
{
	const struct mm_ingest_stats *s = &t->ingest;

	fprintf(fp,
		"mamori collect: %s elapsed=%.1fs received=%" PRIu64 " decoded=%" PRIu64 " malformed=%" PRIu64
		" refused=%" PRIu64 " kernel-drops=%" PRIu64 " records=%" PRIu64 " records-decoded=%" PRIu64
		" records-dropped=%" PRIu64 " flows=%" PRIu64 " written=%" PRIu64 " sequence-gaps=%" PRIu64
		" sequence-lost=%" PRIu64 " templates=%" PRIu64,
		what, (double)elapsed_ns / 1e9, s->messages + total_refused(t), s->messages - s->messages_malformed,
		s->messages_malformed, total_refused(t), t->net.kernel_drops, s->records_received,
		s->records_decoded, s->records_dropped, s->flows, t->flows_written, s->sequence_gaps,
		s->sequence_lost, s->templates_active);
	for (unsigned r = 0; r < MM_IDROP__COUNT; r++)
		if (s->drops[r])
			fprintf(fp, " drop.%s=%" PRIu64, mm_ingest_drop_name(r), s->drops[r]);
	if (s->content_fields_discarded)
		fprintf(fp, " content-fields-discarded=%" PRIu64, s->content_fields_discarded);
	for (unsigned r = 0; r < REFUSE__COUNT; r++)
		if (t->refused[r])
			fprintf(fp, " refused.%s=%" PRIu64, refuse_names[r], t->refused[r]);
	if (t->pcap_packets)
		fprintf(fp, " pcap-packets=%" PRIu64 " pcap-not-export=%" PRIu64, t->pcap_packets,
			t->pcap_not_export);
	if (t->net.tcp_accepted || t->net.tcp_refused)
		fprintf(fp, " tcp-sessions=%" PRIu64 " tcp-refused=%" PRIu64, t->net.tcp_accepted,
			t->net.tcp_refused);
	if (storing)
		fprintf(fp, " store-flows-written=%" PRIu64 " store-flows-published=%" PRIu64
			    " store-segments-published=%" PRIu64,
			t->store.flows_appended, t->store.flows_published, t->store.segments_published);
	if (forwarding)
		fprintf(fp, " forward-sent=%" PRIu64 " forward-dropped=%" PRIu64 " forward-failed=%" PRIu64,
			t->fwd.records_sent, t->fwd.records_dropped, t->fwd.records_failed);
	if (policy)
		print_policy_totals(fp, &t->policy);
	fputc('\n', fp);
	fflush(fp);
}

static void print_stats_line(struct collect_run *run, const char *what)
{
	struct collect_totals t;

	if (!run->job->stats_out)
		return;
	gather_totals(run, &t);
	print_totals(run->job->stats_out, what, &t, monotonic_ns() - run->start_ns, run->forwarder != NULL,
		     run->store != NULL, run->job->policy.policy != NULL);
}

static int session_cmp(const void *a, const void *b)
{
	const struct mm_ingest_stats *x = a, *y = b;
	int c = mm_addr_cmp(&x->exporter, &y->exporter);

	if (c)
		return c;
	if (x->version != y->version)
		return x->version < y->version ? -1 : 1;
	return x->domain < y->domain ? -1 : x->domain > y->domain;
}

static void print_session(FILE *fp, const struct mm_ingest_stats *s)
{
	char addr[MM_ADDR_STRLEN];

	fprintf(fp,
		"mamori collect: exporter=%s version=%u domain=%" PRIu32 " messages=%" PRIu64
		" malformed=%" PRIu64 " records=%" PRIu64 " records-dropped=%" PRIu64 " flows=%" PRIu64
		" options-records=%" PRIu64 " templates=%" PRIu64 " sequence-gaps=%" PRIu64
		" sequence-lost=%" PRIu64 " sequence-reorders=%" PRIu64,
		mm_addr_format(&s->exporter, addr), s->version, s->domain, s->messages, s->messages_malformed,
		s->records_received, s->records_dropped, s->flows, s->options_records, s->templates_active,
		s->sequence_gaps, s->sequence_lost, s->sequence_reorders);
	for (unsigned r = 0; r < MM_IDROP__COUNT; r++)
		if (s->drops[r])
			fprintf(fp, " drop.%s=%" PRIu64, mm_ingest_drop_name(r), s->drops[r]);
	fputc('\n', fp);
}

/*
 * One line per (exporter, version, domain). Workers that heard the same
 * session (an exporter sending from several ports) are summed into one.
 */
static void print_sessions(struct collect_run *run, FILE *fp)
{
	struct mm_ingest_stats *all = NULL;
	size_t n = 0, cap = 0;

	for (size_t i = 0; i < run->n_workers; i++)
		cap += mm_ingest_session_count(run->workers[i].ing);
	if (!cap)
		return;
	all = calloc(cap, sizeof(*all));
	if (!all) {
		fprintf(fp, "mamori collect: per-exporter counters: out of memory\n");
		return;
	}
	for (size_t i = 0; i < run->n_workers; i++)
		for (size_t s = 0; n < cap && mm_ingest_get_session(run->workers[i].ing, s, &all[n]) == 0; s++)
			n++;
	qsort(all, n, sizeof(*all), session_cmp);
	for (size_t i = 0; i < n;) {
		struct mm_ingest_stats sum = all[i];
		size_t j = i + 1;

		for (; j < n && session_cmp(&all[i], &all[j]) == 0; j++)
			mm_ingest_stats_add(&sum, &all[j]);
		print_session(fp, &sum);
		i = j;
	}
	fflush(fp);
	free(all);
}

/* ---- replay: files and captures ---- */

static int read_message_file(struct worker *w, const char *path, uint8_t *buf)
{
	const struct mm_collect_job *job = w->run->job;
	FILE *fp = fopen(path, "rb");
	size_t len;

	if (!fp)
		return mm_fail(MM_ENOENT, "collect: %s: %s", path, strerror(errno));
	len = fread(buf, 1, COLLECT_MSG_MAX + 1, fp);
	if (ferror(fp)) {
		fclose(fp);
		return mm_fail(MM_EIO, "collect: %s: read failed", path);
	}
	fclose(fp);
	/* As a socket would: a payload longer than any export message is refused. */
	if (len > COLLECT_MSG_MAX) {
		if (admit_message(w))
			w->refused[REFUSE_TRUNCATED]++;
		return 0;
	}
	deliver_message(w, &job->read_exporter, job->read_port, buf, len, mm_time_now_ns());
	return 0;
}

static int replay_read_files(struct worker *w)
{
	const struct mm_collect_job *job = w->run->job;
	uint8_t *buf = malloc(COLLECT_MSG_MAX + 1);
	int rc = 0;

	if (!buf)
		return mm_fail(MM_ENOMEM, "collect: out of memory");
	for (size_t i = 0; i < job->n_read_files && !atomic_load(&stop_requested) && rc == 0; i++)
		rc = read_message_file(w, job->read_files[i], buf);
	free(buf);
	return rc;
}

/* The UDP layer carrying the export message: the innermost one. */
static const struct mm_pkt_ip *export_layer(const struct mm_pkt *pkt)
{
	for (int i = pkt->n_ip - 1; i >= 0; i--)
		if (pkt->ip[i].proto == PROTO_UDP)
			return &pkt->ip[i];
	return NULL;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/*
 * One captured packet: its UDP payload goes to the decoder as the datagram
 * would have, from the packet's IP source and UDP source port, on the
 * capture's clock. Packets without UDP are not export messages (skipped,
 * counted); a fragment or a packet cut short by the snap length is refused.
 */
static void replay_packet(struct worker *w, const struct mm_raw_packet *p)
{
	struct mm_pkt pkt;
	const struct mm_pkt_ip *ip;
	const uint8_t *udp;
	size_t udp_len;

	w->pcap_packets++;
	mm_decode_packet(p->linktype, p->data, p->cap_len, MM_ENCAP_MAX, &pkt);
	ip = export_layer(&pkt);
	if (!ip) {
		w->pcap_not_export++;
		return;
	}
	if (ip->frag != MM_FRAG_NONE) {
		if (admit_message(w))
			w->refused[REFUSE_FRAGMENT]++;
		return;
	}
	/* The decoder's offset is checked like any other length: the ports it
	 * read must be the ones standing there. */
	udp = p->data + ip->l4_offset;
	if (!ip->has_ports || ip->l4_offset > p->cap_len || p->cap_len - ip->l4_offset < UDP_HEADER_LEN ||
	    rd16(udp) != ip->sport || rd16(udp + 2) != ip->dport) {
		if (admit_message(w))
			w->refused[REFUSE_TRUNCATED]++;
		return;
	}
	udp_len = rd16(udp + 4);
	if (udp_len < UDP_HEADER_LEN || udp_len > p->cap_len - ip->l4_offset) {
		if (admit_message(w))
			w->refused[REFUSE_TRUNCATED]++;
		return;
	}
	deliver_message(w, &ip->src, ip->sport, udp + UDP_HEADER_LEN, udp_len - UDP_HEADER_LEN, p->ts_ns);
}

static int replay_capture(struct worker *w, const char *path, uint64_t *clock_ns)
{
	struct mm_raw_packet pkts[PCAP_BATCH];
	struct mm_capture *cap = NULL;
	int n = 0, rc;

	rc = mm_capture_open_file(&cap, path);
	if (rc == 0 && w->run->job->pcap_filter)
		rc = mm_capture_set_filter(cap, w->run->job->pcap_filter);
	if (rc)
		goto out;
	while (!atomic_load(&stop_requested) && (n = mm_capture_next_batch(cap, pkts, PCAP_BATCH)) > 0) {
		for (int i = 0; i < n && !atomic_load(&stop_requested); i++) {
			replay_packet(w, &pkts[i]);
			if (pkts[i].ts_ns > *clock_ns)
				*clock_ns = pkts[i].ts_ns;
		}
	}
	if (n < 0)
		rc = n;
out:
	mm_capture_free(cap);
	return rc;
}

static int replay(struct collect_run *run)
{
	const struct mm_collect_job *job = run->job;
	struct worker *w = &run->workers[0];
	uint64_t clock_ns = 0;
	int rc;

	rc = replay_read_files(w);
	if (rc == 0 && job->n_read_files)
		clock_ns = mm_time_now_ns();
	for (size_t i = 0; rc == 0 && i < job->n_pcap_files && !atomic_load(&stop_requested); i++)
		rc = replay_capture(w, job->pcap_files[i], &clock_ns);
	worker_drain(w, clock_ns);
	return rc;
}

/* ---- listening ---- */

/*
 * Binds every worker's sockets before any output is opened, so a port that
 * cannot be bound is refused before the store or an output file is touched.
 */
static int open_listeners(struct collect_run *run)
{
	const struct mm_collect_job *job = run->job;

	run->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (run->wake < 0)
		return mm_fail(MM_EIO, "collect: eventfd: %s", strerror(errno));
	atomic_store(&wake_fd, run->wake);
	for (size_t i = 0; i < run->n_workers; i++) {
		int rc = collect_net_open(&run->workers[i].net, job->listeners, job->n_listeners, run->wake);

		if (rc)
			return rc;
	}
	return 0;
}

static void close_wake(struct collect_run *run)
{
	if (run->wake < 0)
		return;
	atomic_store(&wake_fd, -1);
	close(run->wake);
	run->wake = -1;
}

static int start_workers(struct collect_run *run)
{
	for (size_t i = 0; i < run->n_workers; i++) {
		struct worker *w = &run->workers[i];
		int err = pthread_create(&w->thread, NULL, worker_main, w);

		if (err)
			return mm_fail(MM_EIO, "collect: cannot start worker: %s", strerror(err));
		w->started = true;
	}
	return 0;
}

static void housekeeping(struct collect_run *run)
{
	pthread_mutex_lock(&run->out_lock);
	if (run->store && run->write_status == 0) {
		int rc = mm_store_writer_poll(run->store);

		if (rc)
			fail_output(run, rc);
	}
	if (run->forwarder)
		mm_ipfix_exporter_poll(run->forwarder);
	if (run->job->out && fflush(run->job->out) != 0)
		fail_output(run, mm_fail(MM_EIO, "collect: output: %s", strerror(errno)));
	pthread_mutex_unlock(&run->out_lock);
}

/*
 * The main thread's part while workers receive: wait for a stop, the end
 * of duration_ns, the next stats line or housekeeping, whichever is first.
 */
static void supervise(struct collect_run *run, int wake)
{
	const struct mm_collect_job *job = run->job;
	uint64_t next_stats = job->stats_interval_ns ? run->start_ns + job->stats_interval_ns : UINT64_MAX;
	uint64_t next_house = run->start_ns + HOUSEKEEPING_NS;
	uint64_t deadline = job->duration_ns ? run->start_ns + job->duration_ns : UINT64_MAX;

	while (!atomic_load(&stop_requested)) {
		uint64_t now = monotonic_ns(), next = next_house;
		struct pollfd p = { .fd = wake, .events = POLLIN };

		if (now >= deadline)
			break;
		if (now >= next_stats) {
			print_stats_line(run, "stats");
			next_stats += job->stats_interval_ns;
			if (next_stats <= now)
				next_stats = now + job->stats_interval_ns;
		}
		if (now >= next_house) {
			housekeeping(run);
			next_house = now + HOUSEKEEPING_NS;
		}
		if (next_stats < next)
			next = next_stats;
		if (deadline < next)
			next = deadline;
		now = monotonic_ns();
		poll(&p, 1, next > now ? (int)((next - now + 999999) / 1000000) : 0);
	}
	mm_pipeline_collect_stop();
}

static int stop_workers(struct collect_run *run)
{
	int rc = 0;

	mm_pipeline_collect_stop();
	for (size_t i = 0; i < run->n_workers; i++) {
		struct worker *w = &run->workers[i];

		if (!w->started)
			continue;
		pthread_join(w->thread, NULL);
		w->started = false;
		if (w->status && rc == 0)
			rc = w->status;
		worker_drain(w, mm_time_now_ns());
	}
	return rc;
}

static int listen_run(struct collect_run *run)
{
	int rc = start_workers(run), stop_rc;

	if (rc == 0)
		supervise(run, run->wake);
	stop_rc = stop_workers(run);
	return rc ? rc : stop_rc;
}

/* ---- the job ---- */

static int check_job(const struct mm_collect_job *job)
{
	bool replaying = job->n_read_files || job->n_pcap_files;

	if (replaying && job->n_listeners)
		return mm_fail(MM_EINVAL, "collect: listen or replay files, not both");
	if (!replaying && !job->n_listeners)
		return mm_fail(MM_EINVAL, "collect: nothing to listen on or read");
	if (job->n_listeners > MM_COLLECT_LISTENERS_MAX)
		return mm_fail(MM_ELIMIT, "collect: %zu listeners, at most %d", job->n_listeners,
			       MM_COLLECT_LISTENERS_MAX);
	if (!replaying && (job->workers < 1 || job->workers > MM_COLLECT_WORKERS_MAX))
		return mm_fail(MM_EINVAL, "collect: %u workers, not 1..%d", job->workers, MM_COLLECT_WORKERS_MAX);
	if (job->ipfix_json && !job->out)
		return mm_fail(MM_EINVAL, "collect: ipfix-json needs an output");
	/* ipfix-json shows records as exported, before the policy could drop
	 * or pseudonymise them: never under a jurisdiction. */
	if (job->ipfix_json && job->policy.policy && mm_policy_classes(job->policy.policy))
		return mm_fail(MM_EPERM, "collect: ipfix-json shows records before the jurisdiction policy; "
					 "it is not available while a jurisdiction is configured");
	return 0;
}

static int open_sinks(struct collect_run *run)
{
	const struct mm_collect_job *job = run->job;
	int rc = 0;

	/* The store first: one held by another writer is refused before any
	 * text is written. */
	if (job->store.dir)
		rc = mm_store_writer_open(&run->store, job->store.dir, job->store.options);
	if (rc == 0 && job->out && !job->ipfix_json)
		rc = mm_flow_writer_new(&run->writer, job->format, job->out);
	if (rc == 0 && job->forward) {
		struct mm_ipfix_export_config cfg;

		mm_ipfix_export_config_default(&cfg, job->ingest.sensor_id);
		cfg.dest = job->forward;
		rc = mm_ipfix_exporter_new(&run->forwarder, &cfg);
	}
	return rc;
}

/*
 * Ends output: the store's last segment (also after a failed text output:
 * what the store took is kept), the writer's trailer, the forwarder's
 * tail. The first failure wins. The store stays open until the final
 * counters are taken.
 */
static int close_sinks(struct collect_run *run)
{
	int rc = run->write_status;

	if (run->store) {
		int store_rc = mm_store_writer_flush(run->store);

		if (rc == 0)
			rc = store_rc;
	}

	if (run->writer && rc == 0)
		rc = mm_flow_writer_finish(run->writer);
	if (run->job->ipfix_json && rc == 0 && fflush(run->job->out) != 0)
		rc = mm_fail(MM_EIO, "collect: output: %s", strerror(errno));
	if (run->forwarder) {
		int frc = mm_ipfix_exporter_finish(run->forwarder);

		if (rc == 0)
			rc = frc;
	}
	return rc;
}

int mm_pipeline_collect(const struct mm_collect_job *job)
{
	struct collect_run run = { .job = job, .wake = -1 };
	bool replaying = job->n_read_files || job->n_pcap_files;
	size_t n_ready = 0;
	int rc, out_rc;

	atomic_store(&stop_requested, 0);
	rc = check_job(job);
	if (rc)
		return rc;
	pthread_mutex_init(&run.out_lock, NULL);
	run.n_workers = replaying ? 1 : job->workers;
	run.workers = calloc(run.n_workers, sizeof(*run.workers));
	if (!run.workers) {
		rc = mm_fail(MM_ENOMEM, "collect: out of memory");
		goto out;
	}
	for (; n_ready < run.n_workers; n_ready++) {
		rc = worker_init(&run.workers[n_ready], &run);
		if (rc) {
			worker_release(&run.workers[n_ready]);
			goto out;
		}
	}
	if (!replaying && (rc = open_listeners(&run)) != 0)
		goto out;
	rc = open_sinks(&run);
	if (rc)
		goto out;
	run.start_ns = monotonic_ns();
	rc = replaying ? replay(&run) : listen_run(&run);
	out_rc = close_sinks(&run);
	if (rc == 0)
		rc = out_rc;
	/* Counters are printed even after a failure: they say what was lost. */
	print_stats_line(&run, "final");
	if (job->stats_out)
		print_sessions(&run, job->stats_out);
	{
		struct collect_totals t;
		int policy_rc;

		gather_totals(&run, &t);
		policy_rc = policy_gate_report(&job->policy, &t.policy, job->stats_out);
		if (rc == 0)
			rc = policy_rc;
	}
out:
	for (size_t i = 0; i < n_ready; i++)
		worker_release(&run.workers[i]);
	close_wake(&run);
	free(run.workers);
	mm_ipfix_exporter_free(run.forwarder);
	mm_flow_writer_free(run.writer);
	/* close_sinks reported any flush failure; this only retries it. */
	(void)mm_store_writer_close(run.store);
	pthread_mutex_destroy(&run.out_lock);
	return rc;
}
