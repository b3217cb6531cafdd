/*
 * Ground-truth scenarios for the detectors: flow records of a made-up
 * border (a domestic network of a few thousand hosts and its public
 * servers talking to the world) with labelled attacks planted in realistic
 * background traffic, including benign traffic built to look alarming.
 * Everything is a function of the configuration: the same seed gives the
 * same flows, byte for byte. docs/scenario.md lists every parameter.
 */
#ifndef MAMORI_SCENARIO_H
#define MAMORI_SCENARIO_H

#include "mamori/addr.h"
#include "mamori/flow.h"

#include <stddef.h>
#include <stdint.h>

struct mm_scenario_config {
	const char *name;     /* "standard", the only scenario so far */
	uint64_t seed;        /* 1 */
	uint64_t start_ns;    /* 2026-11-20T00:00:00Z */
	uint64_t duration_ns; /* 6 h; 1 h .. 7 d. Attack windows are fractions of it. */
	double scale;         /* 1.0: background hosts and volume multiplier, 0.01 .. 100 */
};

void mm_scenario_config_default(struct mm_scenario_config *cfg);

enum mm_scenario_role {
	MM_SCENARIO_ATTACK = 1, /* must alert (detector names which detector) */
	MM_SCENARIO_BENIGN = 2, /* looks alarming, must not alert */
};

#define MM_SCENARIO_MAX_ATTCK 3

/* One truth entry: a planted attack or a labelled benign look-alike. */
struct mm_scenario_entry {
	char id[24];                /* "scan-1", "ntp-2" */
	enum mm_scenario_role role;
	const char *detector;       /* attacks: intel, scan, beacon, ddos, bruteforce, exfil */
	const char *variant;        /* attack variant, or the benign kind */
	struct mm_prefix src, dst;  /* attacker and victim side; a prefix when many hosts */
	int32_t dst_port;           /* -1: any (JSON null) */
	uint8_t proto;              /* 0: any */
	const char *attck[MM_SCENARIO_MAX_ATTCK]; /* ATT&CK technique ids, NULL-terminated */
	const char *indicator;      /* intel: the indicator list entry contacted */
	char notes[200];            /* rates, counts, what makes it this variant */
	/* Filled by generation: exactly what its flows hold. */
	uint64_t first_ns, last_ns; /* first_ns of its first flow, last_ns of its last */
	uint64_t n_flows, packets, bytes;
};

/* What a generated scenario leaves behind: its truth, domestic prefixes and indicators. */
struct mm_scenario;

/*
 * Receives the flows in batches, in nondecreasing first_ns order. labels[i]
 * is 0 for background traffic, else 1 + the index of the truth entry the
 * flow belongs to. Both arrays are valid during the call only. A nonzero
 * return stops generation and is returned by mm_scenario_generate.
 */
typedef int (*mm_scenario_sink)(void *ctx, const struct mm_flow *flows, const uint32_t *labels,
				size_t n);

/*
 * Generates cfg's scenario into sink (NULL: truth only, flows discarded)
 * and, when out is not NULL, hands back the truth (caller frees with
 * mm_scenario_free). MM_EINVAL for a bad config. Work: linear in the flows
 * (about 1.3 M for the default standard scenario); memory: one minute of
 * flows at a time.
 */
int mm_scenario_generate(const struct mm_scenario_config *cfg, mm_scenario_sink sink, void *ctx,
			 struct mm_scenario **out);

/*
 * The same in two steps, for sinks that want the truth entries while the
 * flows arrive (to name a label, say): mm_scenario_new plans the scenario —
 * its entries, domestic prefixes and indicators are there, each entry's
 * first/last and counts still zero — and mm_scenario_run, once, generates
 * the flows and fills them in.
 */
int mm_scenario_new(struct mm_scenario **out, const struct mm_scenario_config *cfg);
int mm_scenario_run(struct mm_scenario *sc, mm_scenario_sink sink, void *ctx);
void mm_scenario_free(struct mm_scenario *sc);

const struct mm_scenario_config *mm_scenario_config(const struct mm_scenario *sc);
size_t mm_scenario_entry_count(const struct mm_scenario *sc);
/* Entry i, 0 <= i < count; attacks first, then benign entries. */
const struct mm_scenario_entry *mm_scenario_entry(const struct mm_scenario *sc, size_t i);

/* The domestic side of the border in this scenario (what jurisdiction should be). */
size_t mm_scenario_domestic_count(const struct mm_scenario *sc);
const struct mm_prefix *mm_scenario_domestic(const struct mm_scenario *sc, size_t i);

/* The indicator list: contacted entries first, then decoys nobody contacts. */
size_t mm_scenario_indicator_count(const struct mm_scenario *sc);
const char *mm_scenario_indicator(const struct mm_scenario *sc, size_t i);

/*
 * Writes the truth JSON (docs/scenario.md) to path, and the indicator list
 * (one address or prefix a line, '#' comments) to indicators_path when it
 * is not NULL. Each file is written under a temporary name and renamed.
 */
int mm_scenario_write_truth(const struct mm_scenario *sc, const char *path,
			    const char *indicators_path);

/* --- packets for a window, to feed `mamori meter` end to end --------------- */

struct mm_scenario_pcap_options {
	uint64_t from_ns, until_ns; /* flows starting in [from, until) */
	uint32_t max_flow_packets;  /* 64: per direction; longer flows are thinned (bytes per packet kept) */
	uint64_t max_packets;       /* 2,000,000: flows that would pass it are left out (counted) */
	uint32_t snaplen;           /* 96: bytes kept of each packet */
};

void mm_scenario_pcap_options_default(struct mm_scenario_pcap_options *opt);

struct mm_scenario_pcap_stats {
	uint64_t flows, packets;
	uint64_t flows_thinned;  /* had more packets than max_flow_packets */
	uint64_t flows_left_out; /* in the window, but past max_packets */
};

struct mm_scenario_pcap;

/* Creates the capture at path (Ethernet, nanosecond pcap); written under a temporary name. */
int mm_scenario_pcap_open(struct mm_scenario_pcap **out, const char *path,
			  const struct mm_scenario_pcap_options *opt);
/* Takes the flows of the window (copied); call it from a scenario sink. */
int mm_scenario_pcap_add(struct mm_scenario_pcap *pc, const struct mm_flow *flows, size_t n);
/*
 * Writes every packet in time order, publishes the file and frees pc. Work:
 * sorts the window's packets (memory: 16 bytes each). stats may be NULL.
 */
int mm_scenario_pcap_close(struct mm_scenario_pcap *pc, struct mm_scenario_pcap_stats *stats);
/* Abandons the capture (the file is not created). Frees pc (NULL: no-op). */
void mm_scenario_pcap_discard(struct mm_scenario_pcap *pc);

#endif
