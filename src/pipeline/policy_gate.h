/*
 * The policy at a job's door: one gate per thread that hands flows to
 * sinks. It owns the scratch array the policy writes kept flows into and
 * that thread's counters.
 */
#ifndef MAMORI_PIPELINE_POLICY_GATE_H
#define MAMORI_PIPELINE_POLICY_GATE_H

#include "mamori/pipeline.h"

struct policy_gate {
	struct mm_flow *scratch;
	size_t cap;
	struct mm_policy_counts counts;
	int status; /* MM_ENOMEM once scratch could not grow: the job fails */
};

/*
 * Passes flows[0..*n) through target's policy. Returns the flows the sinks
 * may see (flows itself when there is no policy) and sets *n to their
 * count. On allocation failure returns NULL with *n = 0 and gate->status set:
 * nothing unfiltered ever reaches a sink.
 */
const struct mm_flow *policy_gate_pass(struct policy_gate *gate, const struct mm_policy_target *target,
				       const struct mm_flow *flows, size_t *n);

/*
 * Prints the counters (sum of gates) after a job's own, and adds them to
 * the data directory's running totals. 0, or the persist failure.
 */
int policy_gate_report(const struct mm_policy_target *target, const struct mm_policy_counts *sum, FILE *fp);

void policy_gate_release(struct policy_gate *gate);

#endif
