/* The policy at a job's door (see policy_gate.h). */
#include "pipeline/policy_gate.h"

#include "mamori/status.h"

#include <stdlib.h>
#include <sodium.h>

const struct mm_flow *policy_gate_pass(struct policy_gate *gate, const struct mm_policy_target *target,
				       const struct mm_flow *flows, size_t *n)
{
	if (!target->policy)
		return flows;
	if (*n > gate->cap) {
		struct mm_flow *grown = realloc(gate->scratch, *n * sizeof(*grown));

		if (!grown) {
			gate->status = mm_fail(MM_ENOMEM, "policy: out of memory for %zu flows", *n);
			*n = 0;
			return NULL;
		}
		gate->scratch = grown;
		gate->cap = *n;
	}
	*n = mm_policy_apply(target->policy, flows, *n, gate->scratch, &gate->counts);
	return gate->scratch;
}

int policy_gate_report(const struct mm_policy_target *target, const struct mm_policy_counts *sum, FILE *fp)
{
	if (!target->policy)
		return 0;
	if (fp)
		mm_policy_counts_print(fp, sum, target->config);
	if (target->counters_dir)
		return mm_policy_counts_persist(target->counters_dir, sum);
	return 0;
}

void policy_gate_release(struct policy_gate *gate)
{
	/* Kept flows hold pseudonyms only, but the array also held them in
	 * the clear before the policy rewrote them: wipe it. */
	if (gate->scratch)
		sodium_memzero(gate->scratch, gate->cap * sizeof(*gate->scratch));
	free(gate->scratch);
	gate->scratch = NULL;
	gate->cap = 0;
}
