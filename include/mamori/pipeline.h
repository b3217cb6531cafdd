/*
 * Jobs that wire stages together. The CLI parses options into a job
 * description and calls one function here; tests and the API do the same.
 */
#ifndef MAMORI_PIPELINE_H
#define MAMORI_PIPELINE_H

#include "mamori/flow_output.h"
#include "mamori/ingest.h"
#include "mamori/meter.h"
#include "mamori/policy.h"
#include "mamori/store.h"

#include <stdbool.h>
#include <stdio.h>

/*
 * A store a job writes its flows into, beside its other outputs. The job
 * owns the writer for its run: opened before the first flow, polled while
 * input is quiet so the flush interval holds, flushed and closed at the
 * end (also after a stop). dir NULL: no store.
 */
struct mm_store_target {
	const char *dir;
	const struct mm_store_writer_options *options; /* borrowed; NULL: the defaults */
};

/*
 * The jurisdiction policy every flow of a job passes before any sink
 * (store, text, export) sees it. policy NULL: flows pass as they are (tests
 * of the meter alone); a command always sets one, even without a
 * jurisdiction, so its output says what was (not) applied. Counters are
 * added to <counters_dir>/policy/counters when counters_dir is set.
 */
struct mm_policy_target {
	const struct mm_policy *policy;      /* borrowed */
	const struct mm_policy_config *config; /* borrowed: sensor names for counters */
	const char *counters_dir;
};

/*
 * A consumer that sees every flow after the policy and the sinks, one
 * batch at a time (never two at once): inline detection. A nonzero return
 * ends the job with that status, like a failed output. fn NULL: none.
 */
struct mm_flow_tap {
	int (*fn)(void *ctx, const struct mm_flow *flows, size_t n);
	void *ctx;
};

struct mm_meter_job {
	const char *const *files;   /* capture files, metered in order as one stream */
	size_t n_files;
	const char *interface;      /* live capture instead of files (NULL: files) */
	const char *bpf;            /* optional filter */
	int snaplen;                /* live only */
	struct mm_meter_config meter;
	enum mm_output_format format;
	FILE *out;                  /* borrowed; NULL: no text output */
	const char *ipfix_dest;     /* "[udp://|tcp://]HOST:PORT": also export IPFIX there; NULL: no */
	FILE *stats_out;            /* counters at exit (stderr); NULL: none */
	bool progress;              /* records/s and ETA on a terminal */
	struct mm_store_target store;
	struct mm_policy_target policy;
	struct mm_flow_tap tap;
};

/*
 * Runs the meter job to the end of input (or until mm_pipeline_stop()).
 * Returns 0, or a negative status with mm_last_error() set. Per-record
 * problems are counted, not fatal.
 */
int mm_pipeline_meter(const struct mm_meter_job *job);

/* Asks a running job to finish cleanly; safe from a signal handler. */
void mm_pipeline_stop(void);

/* ---- collect: NetFlow/IPFIX from exporters, files or captures ---- */

enum mm_collect_transport { MM_COLLECT_UDP, MM_COLLECT_TCP };

/* One address to listen on. */
struct mm_collect_listener {
	enum mm_collect_transport transport;
	bool any;            /* wildcard: IPv6 and IPv4 on every interface; addr unused */
	struct mm_addr addr; /* when !any (IPv4 as mapped, see addr.h) */
	uint16_t port;
};

#define MM_COLLECT_NETFLOW_PORT 2055
#define MM_COLLECT_LISTENERS_MAX 32
#define MM_COLLECT_WORKERS_MAX 64

/*
 * Parses "[udp:|tcp:][ADDR:]PORT", ADDR an IPv4 address or an IPv6 one in
 * brackets ("tcp:[::1]:4739"). 0 or MM_EINVAL quoting the text.
 */
int mm_collect_listener_parse(struct mm_collect_listener *out, const char *text);

/*
 * Listeners, or replay from files: read_files hold one export message each
 * (a UDP payload), pcap_files captured export packets. With files the job
 * replays them in order, all on one decoder, and ends; without files it
 * listens until mm_pipeline_collect_stop(), duration_ns or max_messages.
 */
struct mm_collect_job {
	const struct mm_collect_listener *listeners;
	size_t n_listeners;
	const char *const *read_files;
	size_t n_read_files;
	const char *const *pcap_files;
	size_t n_pcap_files;
	const char *pcap_filter;        /* BPF for pcap_files; NULL: every UDP packet */
	struct mm_addr read_exporter;   /* exporter that read_files come from */
	uint16_t read_port;
	struct mm_ingest_config ingest;
	bool ipfix_json;                /* every data record as ipfix-json instead of flows */
	enum mm_output_format format;
	FILE *out;                      /* borrowed; NULL: no local output (forward only) */
	const char *forward;            /* IPFIX destination (ipfix_export.h); NULL: none */
	unsigned workers;               /* receive/decode threads, 1..MM_COLLECT_WORKERS_MAX */
	uint64_t stats_interval_ns;     /* stats line this often; 0: at exit only */
	FILE *stats_out;                /* stats lines; NULL: none */
	uint64_t duration_ns;           /* stop listening after this long; 0: never */
	uint64_t max_messages;          /* stop after this many messages; 0: never */
	struct mm_store_target store;
	struct mm_policy_target policy;
	struct mm_flow_tap tap;
};

/*
 * Runs the collect job. Returns 0, or a negative status with
 * mm_last_error() set (a socket that cannot be bound, an unreadable file,
 * a failed output). Malformed messages are counted, never fatal.
 */
int mm_pipeline_collect(const struct mm_collect_job *job);

/* Asks a running collect job to finish cleanly; safe from a signal handler. */
void mm_pipeline_collect_stop(void);

#endif
