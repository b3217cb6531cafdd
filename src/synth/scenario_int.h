/*
 * Inside the scenario generator: the engine (scenario.c) runs sources slice
 * by slice and keeps the truth; a plan (scenario_standard.c) declares the
 * truth entries and the sources that make their flows. Every random draw
 * comes from a stream keyed by (seed, source, sub-stream, index), so a
 * source's flows do not depend on any other source or on slicing order.
 */
#ifndef MAMORI_SYNTH_SCENARIO_INT_H
#define MAMORI_SYNTH_SCENARIO_INT_H

#include "mamori/scenario.h"

#include <stdbool.h>

#define SC_NS 1000000000ull

/* A counter-based stream: a Weyl sequence through the murmur3 finaliser. */
struct srng {
	uint64_t key, ctr;
};

void srng_init(struct srng *r, uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
uint64_t srng_next(struct srng *r);
double srng_unit(struct srng *r);                  /* [0, 1) */
uint64_t srng_below(struct srng *r, uint64_t n);   /* [0, n), n > 0 */
double srng_uniform(struct srng *r, double lo, double hi);
bool srng_chance(struct srng *r, double p);
double srng_exp(struct srng *r, double mean);
double srng_lognormal(struct srng *r, double median, double sigma);

struct sc_gen;
struct sc_source;

/* Makes the flows of s that start in [s0, s1): every flow's first_ns must lie there. */
typedef void (*sc_emit_fn)(struct sc_gen *g, const struct sc_source *s, uint64_t s0, uint64_t s1);

/*
 * A stream of flows. Plans embed this as the first member of their own
 * parameter structs and cast back in their emit functions.
 */
struct sc_source {
	sc_emit_fn emit;
	uint32_t label;         /* 0 background, else truth entry index + 1 */
	uint32_t stream;        /* random stream number, unique per source */
	uint64_t t0, t1;        /* active window (absolute ns); no flow starts outside */
};

/* What a plan sees of the engine. */
const struct mm_scenario_config *sc_config(const struct sc_gen *g);
uint64_t sc_start(const struct sc_gen *g);
uint64_t sc_end(const struct sc_gen *g);

/* Registers a truth entry (attacks before benign ones); its label is the return + 1. */
struct mm_scenario_entry *sc_entry_add(struct sc_gen *g, enum mm_scenario_role role, const char *id);
uint32_t sc_entry_label(const struct sc_gen *g, const struct mm_scenario_entry *e);
/* Takes ownership of s (malloc'd, possibly a larger struct that begins with it). */
int sc_source_add(struct sc_gen *g, struct sc_source *s);
int sc_domestic_add(struct sc_gen *g, const char *prefix);
/* Adds an indicator list entry; returns its stored text (lives as long as the scenario). */
const char *sc_indicator_add(struct sc_gen *g, const char *text);

/* A random stream for (source, sub, index). */
void sc_rng(const struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t index,
	    struct srng *r);

/*
 * Event i (< count) of a jittered periodic process happens in its slot
 * [t0 + offset + i·gap, … + gap): at the slot's middle ± U(0, jitter/2)·gap,
 * jitter 0..1 (1: anywhere in the slot). fn is called for the events in
 * [s0, s1) ∩ [t0, t1), each with its own random stream.
 */
typedef void (*sc_event_fn)(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t i,
			    uint64_t t, struct srng *r);
void sc_periodic(struct sc_gen *g, const struct sc_source *s, uint64_t sub, uint64_t offset_ns,
		 double gap_s, double jitter, uint64_t count, uint64_t s0, uint64_t s1,
		 sc_event_fn fn);

/* Poisson events at rate events/s over [s0, s1) ∩ [t0, t1), uniform times. */
void sc_poisson(struct sc_gen *g, const struct sc_source *s, uint64_t sub, double rate,
		uint64_t s0, uint64_t s1, sc_event_fn fn);

/* A new flow of s (zeroed, addresses, ports and protocol set) in the current slice. */
struct mm_flow *sc_flow(struct sc_gen *g, const struct sc_source *s, const struct mm_addr *src,
			const struct mm_addr *dst, uint16_t sport, uint16_t dport, uint8_t proto);

/* --- flow shapes: fill counters, flags and times of a flow from sc_flow ---- */

/* A completed TCP connection carrying up (client→server) and down payload bytes over secs. */
void sc_tcp_session(struct mm_flow *f, uint64_t t, double up, double down, double secs);

enum sc_attempt {
	SC_NO_REPLY,   /* SYN (and retransmissions), nothing back */
	SC_REFUSED,    /* SYN answered by RST */
	SC_HALF_OPEN,  /* SYN, SYN-ACK, RST from the prober (a SYN scan hitting an open port) */
};
/* A TCP connection attempt; syns is the number of SYNs sent (retransmissions). */
void sc_tcp_attempt(struct mm_flow *f, uint64_t t, enum sc_attempt how, unsigned syns);

/* UDP datagrams each way with the given payload sizes, spread over secs. */
void sc_udp(struct mm_flow *f, uint64_t t, uint64_t fwd_pkts, uint32_t fwd_payload,
	    uint64_t rev_pkts, uint32_t rev_payload, double secs);

/* ICMP or ICMPv6 echo: n requests of payload bytes, answered or not. */
void sc_echo(struct mm_flow *f, uint64_t t, uint64_t n, uint32_t payload, bool answered,
	     double secs);

/* The standard scenario's plan. */
int sc_plan_standard(struct sc_gen *g);

#endif
