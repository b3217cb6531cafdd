/*
 * Detection from flow metadata: a streaming engine that takes batches of
 * flows (from meter, collect, or a stored range), puts them in export-time
 * order, runs the detectors (intel, scan, beacon, ddos, bruteforce, exfil)
 * and hands each alert to a callback. Its clock is the flows' own time,
 * never the wall clock, so a batch run over stored flows and a streaming
 * run over the same flows raise the same alerts. State is memory-bounded
 * (sketches, capped tables with counted evictions) and expires.
 * Also: the alert store in <data>/alerts/ and evaluation against ground
 * truth (docs/detect.md).
 */
#ifndef MAMORI_DETECT_H
#define MAMORI_DETECT_H

#include "mamori/addr.h"
#include "mamori/flow.h"
#include "mamori/hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct mm_intel;

enum mm_detector {
	MM_DET_INTEL,
	MM_DET_SCAN,
	MM_DET_BEACON,
	MM_DET_DDOS,
	MM_DET_BRUTEFORCE,
	MM_DET_EXFIL,
	MM_DET_COUNT
};

/* "intel", "scan", …; NULL out of range. parse: 0 or MM_EINVAL. */
const char *mm_detector_name(unsigned d);
int mm_detector_parse(const char *text, enum mm_detector *out);

enum mm_severity { MM_SEV_LOW, MM_SEV_MEDIUM, MM_SEV_HIGH, MM_SEV_CRITICAL };

/* "low", "medium", "high", "critical"; parse: 0 or MM_EINVAL. */
const char *mm_severity_name(unsigned s);
int mm_severity_parse(const char *text, enum mm_severity *out);

/* ---- alerts -------------------------------------------------------------- */

#define MM_ALERT_MAX_EXAMPLES 5
#define MM_ALERT_MAX_ATTCK 4

/* The 5-tuple and start of one flow that supports an alert. */
struct mm_alert_example {
	struct mm_addr src, dst;
	uint16_t src_port, dst_port;
	uint8_t proto;
	uint64_t first_ns;
};

/* An indicator's provenance, copied (intel alerts only). */
struct mm_alert_indicator {
	char value[MM_PREFIX_STRLEN]; /* the prefix that matched */
	char source[64];
	char id[128];
	char tags[128];
	char tlp[16];       /* "amber", …; "" unset */
	unsigned confidence; /* 0..100 */
};

struct mm_alert {
	enum mm_detector detector;
	enum mm_severity severity;
	double confidence;   /* 0..1 */
	char kind[24];       /* the variant: "horizontal", "trw", "syn-flood", "udp-reflection", … */
	/* As they stand in the flows (domestic ones pseudonymised upstream). A
	 * host prefix for one address; for many (the hosts a scan probed, the
	 * sources of a flood) the longest prefix covering all seen. */
	struct mm_prefix src, dst;
	uint8_t proto;       /* 0 when not one protocol */
	uint16_t port;       /* the service port at stake; 0 when none */
	uint64_t first_ns, last_ns; /* the flows the evidence covers */
	uint64_t emitted_ns; /* stream time when raised: the export time of the flow that tipped it */
	struct {
		uint64_t flows, packets, bytes;
		uint64_t hosts, ports;           /* distinct (estimated where sketched) */
		uint64_t successes, failures;    /* connection outcomes */
		double rate;                     /* ddos: the rate that crossed (per second) */
		double score;                    /* beacon score, TRW log-likelihood ratio, … */
	} ev;
	struct mm_alert_example examples[MM_ALERT_MAX_EXAMPLES];
	unsigned n_examples;
	char attck[MM_ALERT_MAX_ATTCK][16];
	unsigned n_attck;
	bool has_indicator;
	struct mm_alert_indicator indicator;
	char explanation[320];
};

/* A stable id: hex of a hash of detector, kind, src, dst, port and first; buf ≥ 17 bytes. */
char *mm_alert_id(const struct mm_alert *a, char buf[17]);

/*
 * One NDJSON line (no newline) for a: stable field names, RFC 3339 times
 * (docs/detect.md, "Alert format"). Returns the length written, or
 * MM_ELIMIT if len is too small. 4096 bytes always suffice.
 */
#define MM_ALERT_JSON_MAX 4096
int mm_alert_to_json(const struct mm_alert *a, char *buf, size_t len);

/* Parses one line written by mm_alert_to_json (checksum checked when present). 0 or MM_EFORMAT. */
int mm_alert_from_json(const char *line, size_t len, struct mm_alert *out);

/* The aligned one-line form for people: time, detector, severity, src → dst, explanation. */
void mm_alert_print_table(FILE *fp, const struct mm_alert *a, bool header);

/* ---- configuration ------------------------------------------------------- */

#define MM_DETECT_MAX_DOMESTIC 64
#define MM_DETECT_MAX_PORTS 32

struct mm_detect_ports {
	uint16_t port[MM_DETECT_MAX_PORTS];
	size_t n;
};

/*
 * Detectors share no state: each keeps its own tables and sketches and sees
 * every flow in the same order on the same stream clock. So the detectors
 * can be split over engines fed the same flows, one engine per thread:
 * these (keyed by destination or by pair: beacon, ddos, exfil) on a second
 * thread, the rest (keyed by source: scan, bruteforce; and intel) on the
 * first, a split that halves the work per flow on the standard scenario.
 * With the same hash key the split engines raise the same alerts as one
 * engine running all six, each engine in stream order of its own detectors
 * (only the interleaving of the two engines' alerts differs).
 */
#define MM_DETECT_SECOND_THREAD ((1u << MM_DET_BEACON) | (1u << MM_DET_DDOS) | (1u << MM_DET_EXFIL))

/*
 * Every threshold with its default (mm_detect_config_default). Each is
 * also a key for mm_detect_config_set ("scan.min_hosts"); docs/detect.md
 * lists them. Durations in ns.
 */
struct mm_detect_config {
	unsigned enabled;        /* bit (1 << detector); default all */
	uint64_t reorder_ns;     /* 10 s: export-time disorder absorbed before processing */
	size_t max_buffered;     /* 65536 flows held for reordering (beyond: oldest released early) */
	size_t memory_cap;       /* 256 MiB of detector state, shared out among the detectors */
	bool hash_key_set;       /* false: a random key per engine */
	struct mm_hash_key hash_key;
	/* Threads inline detection (collect, meter --detect) runs the detectors
	 * on: 1, or 2 (default) for one engine per MM_DETECT_SECOND_THREAD
	 * split. The engine itself is single-threaded and ignores it. */
	unsigned threads;

	/* The domestic side (exfil; explanations): prefixes, or a callback that wins when set. */
	struct mm_prefix domestic[MM_DETECT_MAX_DOMESTIC];
	size_t n_domestic;
	bool (*is_domestic)(void *ctx, const struct mm_addr *a);
	void *domestic_ctx;

	/* Indicators for the intel detector (borrowed; NULL: intel raises nothing). */
	struct mm_intel *intel;

	struct {
		unsigned min_confidence; /* 0: indicators below are ignored */
		uint64_t suppress_ns;    /* 1 h: one alert per (src, dst, indicator) per this */
	} intel_cfg;
	struct {
		uint64_t window_ns;        /* 10 min: per-source counting window */
		unsigned min_hosts;        /* 64: horizontal: distinct hosts on one port */
		unsigned horizontal_max_ports; /* 3 */
		unsigned min_ports;        /* 64: vertical: distinct ports on few hosts */
		unsigned vertical_max_hosts; /* 2 */
		unsigned block_min_hosts;  /* 16 */
		unsigned block_min_ports;  /* 16 */
		double min_fail_ratio;     /* 0.6: share of the source's flows without a reply */
		double trw_theta0;         /* 0.8: P(success | benign) */
		double trw_theta1;         /* 0.2: P(success | scanner) */
		double trw_alpha;          /* 0.01: false positive bound PF */
		double trw_beta;           /* 0.99: detection probability PD */
		unsigned trw_min_failures; /* 10: failed first contacts before a TRW alert */
		uint64_t trw_max_gap_ns;   /* 3 min: a source quiet longer starts its test afresh */
		uint64_t trw_idle_ns;      /* 1 h: TRW state of a quiet source expires */
	} scan;
	struct {
		uint64_t window_ns;       /* 24 h: connection history kept per pair */
		unsigned min_conns;       /* 5 */
		uint64_t min_interval_ns; /* 10 s: median interval below: not a beacon (chatter) */
		uint64_t max_interval_ns; /* 6 h */
		uint64_t min_span_ns;     /* 2 h: first to last connection */
		double threshold;         /* 0.70 */
		unsigned few_conns;       /* 12: below this many connections ... */
		double few_threshold;     /* 0.93: ... the score must reach this instead */
		uint64_t score_every_ns;  /* 15 min: rescoring cadence per pair */
		unsigned max_dst_sources; /* 3: a destination more internal hosts talk to is not C2 */
		double max_dispersion;    /* 0.35: interval MAD / median above: as irregular as random arrivals */
		uint64_t max_size;        /* 1 MB: median bytes per connection above: a transfer, not a check-in */
		unsigned max_fanout;      /* 4: a source periodic to more destinations is a monitor */
		struct mm_detect_ports ignore_ports; /* udp/tcp 123: NTP polls on a fixed schedule by design */
	} beacon;
	struct {
		uint64_t window_ns;    /* 10 s */
		double min_pps;        /* 20000 packets/s */
		double min_bps;        /* 200e6 bits/s */
		double min_fps;        /* 300 flows/s */
		double baseline_factor; /* 8: rate must exceed this × the learned baseline */
		double ewma_alpha;     /* 0.1 per window */
		double min_share;      /* 0.6: the vector's share of the destination's packets */
		unsigned min_sources;  /* 20: distinct sources (estimated): a flood comes from many */
		unsigned top_k;        /* 4096 destinations tracked per window (space-saving) */
	} ddos;
	struct {
		uint64_t window_ns;       /* 30 min */
		unsigned min_attempts;    /* 20 short sessions per (src, dst, port), or per (src /24 or /64, dst, port) */
		unsigned min_sources;     /* 3: distinct sources before a prefix counts as distributed */
		uint64_t max_bytes;       /* 16384 bytes both ways: a short session */
		uint64_t max_duration_ns; /* 30 s */
		struct mm_detect_ports ports; /* 21 22 23 110 143 445 993 995 1433 3306 3389 5432 5900 */
	} bruteforce;
	struct {
		uint64_t window_ns;        /* 1 h: outbound bytes summed per (domestic, foreign) */
		uint64_t min_bytes;        /* 200 MB */
		double min_out_in_ratio;   /* 4: outbound ≥ this × inbound */
		unsigned rare_max_hosts;   /* 2: a destination seen by more internal hosts is not rare */
		double baseline_factor;    /* 10: above this × the host's hourly outbound baseline */
		uint64_t popularity_window_ns; /* 24 h */
	} exfil;
};

void mm_detect_config_default(struct mm_detect_config *cfg);

/*
 * Sets one key from text, as mamori.conf's [detect] section writes it:
 * "scan.min_hosts" = "64", "beacon.window" = "24h", "bruteforce.ports" =
 * "22,3389", "domestic" = "10.0.0.0/8,2001:db8::/32", "detectors" =
 * "scan,ddos". MM_ENOENT for an unknown key, MM_EINVAL for a bad value
 * (message names key and value).
 */
int mm_detect_config_set(struct mm_detect_config *cfg, const char *key, const char *value);

/* Every key of conf's [detect] section through mm_detect_config_set; a bad one fails naming file:line. */
struct mm_config;
int mm_detect_config_load(struct mm_detect_config *cfg, const struct mm_config *conf);

/* Calls fn for every key with its current value as text (docs, `--help`). */
void mm_detect_config_each(const struct mm_detect_config *cfg,
			   void (*fn)(void *ctx, const char *key, const char *value, const char *doc),
			   void *ctx);

/* ---- the engine ---------------------------------------------------------- */

struct mm_detect;

/* Called on the feeding thread for each alert; a borrowed alert, valid during the call. */
typedef void (*mm_alert_fn)(void *ctx, const struct mm_alert *a);

/* cfg is copied. 0, MM_EINVAL (inconsistent config), MM_ENOMEM. */
int mm_detect_new(struct mm_detect **out, const struct mm_detect_config *cfg, mm_alert_fn on_alert,
		  void *ctx);

/*
 * Takes n flows (copied) in roughly export order: each flow is processed
 * once the newest last_ns seen is reorder_ns past its own (ties broken by
 * the flow's fields, so arrival order within that slack never matters).
 * Flows older than what was already processed are processed as they come
 * and counted late. Work: amortised O(1) per flow per detector plus
 * O(log max_buffered) for out-of-order flows. Not thread-safe: one feeder.
 */
int mm_detect_feed(struct mm_detect *d, const struct mm_flow *flows, size_t n);

/* End of input: processes everything buffered and closes open windows (raising what they hold). */
int mm_detect_flush(struct mm_detect *d);

struct mm_detect_stats {
	uint64_t flows_in, flows_processed, flows_late;
	uint64_t reorder_overflow;   /* released before reorder_ns because max_buffered was reached */
	uint64_t alerts[MM_DET_COUNT];
	uint64_t evictions[MM_DET_COUNT]; /* state entries dropped at a memory cap */
	uint64_t expired[MM_DET_COUNT];   /* state entries aged out */
	size_t memory_used;          /* bytes of detector state allocated */
};

void mm_detect_stats(const struct mm_detect *d, struct mm_detect_stats *out);

void mm_detect_free(struct mm_detect *d);

/* ---- the alert store ----------------------------------------------------- */

/*
 * <data>/alerts/alerts-YYYY-MM-DD.ndjson (UTC day of emission), one
 * mm_alert_to_json line each, appended with O_APPEND in one write; the
 * line carries a CRC-32C of itself so a torn or altered line is skipped
 * and counted when read. Alerts are never rewritten.
 */
struct mm_alert_store;

/* Creates <data_dir>/alerts if absent. 0 or MM_EIO naming the path. */
int mm_alert_store_open(struct mm_alert_store **out, const char *data_dir);
int mm_alert_store_append(struct mm_alert_store *s, const struct mm_alert *a);
void mm_alert_store_close(struct mm_alert_store *s);

struct mm_alert_filter {
	uint64_t since_ns, until_ns;  /* alerts whose [first, last] overlaps; 0, UINT64_MAX = all */
	unsigned detectors;           /* bit mask; 0 = all */
	enum mm_severity min_severity;
};

struct mm_alert_read_stats {
	uint64_t files, lines, matched, duplicates, bad_lines;
};

/*
 * Calls fn for every stored alert that passes f, in file order (by day),
 * each id once. bad_lines counts lines that fail their checksum or parse;
 * they are reported by on_bad (may be NULL) as "FILE:LINE: reason".
 * MM_ENOENT when there is no alerts directory.
 */
int mm_alert_store_read(const char *data_dir, const struct mm_alert_filter *f,
			void (*fn)(void *ctx, const struct mm_alert *a),
			void (*on_bad)(void *ctx, const char *message), void *ctx,
			struct mm_alert_read_stats *stats);

/* ---- evaluation ---------------------------------------------------------- */

struct mm_eval_row {
	unsigned attacks, detected;   /* truth attacks of this detector; with ≥ 1 matching alert */
	unsigned alerts, matched;     /* alerts of this detector; matching some attack */
	double precision, recall;     /* NAN when undefined (no alerts / no attacks) */
	double ttd_median_s, ttd_max_s; /* time to detect over detected attacks; NAN if none */
};

struct mm_eval {
	struct mm_eval_row row[MM_DET_COUNT];
	unsigned benign_alerted;      /* benign look-alikes (truth "benign") that some alert names */
};

/*
 * Scores alerts against a ground-truth file (docs/detect.md, "Evaluation"):
 * an alert matches an attack of its detector when its src falls in the
 * attack's src, its dst overlaps the attack's dst (intel and ddos: either
 * orientation) and the time ranges overlap. 0, MM_ENOENT, MM_EFORMAT
 * naming the file and what is wrong.
 */
int mm_detect_evaluate(const char *truth_path, const struct mm_alert *alerts, size_t n_alerts,
		       struct mm_eval *out);

/* The per-detector table (detectors with attacks or alerts). */
void mm_eval_print(FILE *fp, const struct mm_eval *e);

#endif
