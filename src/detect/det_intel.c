/*
 * Intel detection: a flow whose source or destination falls in an
 * indicator of the loaded set (intel.h, longest-prefix match at stream
 * time, so expired indicators stop matching in replays too). The alert
 * carries the indicator's provenance. One alert per (src, dst, matched
 * prefix) per suppress interval; later flows of the same contact only
 * extend the state, not the alert stream.
 */
#include "detect/detect_int.h"

#include "mamori/intel.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct contact_key {
	struct mm_addr src, dst;
	struct mm_prefix prefix;
	uint8_t pad[3];
};

struct contact_entry {
	struct det_hdr h;
	struct contact_key k;
	uint64_t alerted_ns;
	uint64_t flows;
};

struct intel_state {
	struct det_table t;
};

static int intel_init(struct mm_detect *d, size_t mem)
{
	struct intel_state *s = calloc(1, sizeof(*s));

	if (!s)
		return mm_fail(MM_ENOMEM, "detect: intel state");
	d->state[MM_DET_INTEL] = s;
	return det_table_init(&s->t, sizeof(struct contact_entry), sizeof(struct contact_key), mem, d, MM_DET_INTEL);
}

/* The indicator of hit with the highest confidence, if one reaches min_confidence. */
static bool best_indicator(const struct mm_intel_snap *snap, const struct mm_intel_hit *hit, unsigned min_conf,
			   struct mm_intel_indicator *out)
{
	bool found = false;

	for (uint32_t i = 0; i < hit->n; i++) {
		struct mm_intel_indicator ind = { 0 };

		mm_intel_indicator(snap, hit->first + i, &ind);
		if (ind.confidence < min_conf || (found && ind.confidence <= out->confidence))
			continue;
		*out = ind;
		found = true;
	}
	return found;
}

/* ATT&CK ids among the ';'-separated tags ("T1071", "T1071.001"); T1071 when there are none. */
static void attck_from_tags(struct mm_alert *a, const char *tags)
{
	const char *p = tags;

	while (*p && a->n_attck < MM_ALERT_MAX_ATTCK) {
		size_t len = strcspn(p, ";, ");

		if (len >= 5 && len < sizeof(a->attck[0]) && (p[0] == 'T' || p[0] == 't') && p[1] >= '0' &&
		    p[1] <= '9') {
			char id[16];

			memcpy(id, p, len);
			id[len] = '\0';
			id[0] = 'T';
			det_alert_attck(a, id);
		}
		p += len;
		p += *p != '\0';
	}
	if (a->n_attck == 0)
		det_alert_attck(a, "T1071");
}

static void intel_raise(struct mm_detect *d, const struct mm_flow *f, const struct mm_intel_hit *hit,
			const struct mm_intel_indicator *ind, bool dst_side)
{
	struct mm_alert a;
	struct mm_alert_indicator *ai = &a.indicator;
	char src[MM_ADDR_STRLEN], dst[MM_ADDR_STRLEN], p[8];
	bool replied = f->rev_packets > 0;

	det_alert_init(d, &a, MM_DET_INTEL, dst_side ? "contact-to-indicator" : "contact-from-indicator");
	det_alert_host(&a.src, &f->src);
	det_alert_host(&a.dst, &f->dst);
	a.proto = f->proto;
	a.port = f->dst_port;
	a.first_ns = f->first_ns;
	a.last_ns = f->last_ns;
	a.ev.flows = 1;
	a.ev.packets = mm_flow_packets(f);
	a.ev.bytes = mm_flow_bytes(f);
	a.ev.hosts = 1;
	a.ev.ports = 1;
	a.ev.successes = replied;
	a.ev.failures = !replied;
	a.ev.score = ind->confidence;
	a.confidence = ind->confidence / 100.0;
	a.severity = !replied ? MM_SEV_LOW : ind->confidence >= 80 ? MM_SEV_HIGH : MM_SEV_MEDIUM;
	det_alert_example(&a, f);
	a.has_indicator = true;
	mm_prefix_format(&hit->prefix, ai->value);
	snprintf(ai->source, sizeof(ai->source), "%s", ind->source);
	snprintf(ai->id, sizeof(ai->id), "%s", ind->id);
	snprintf(ai->tags, sizeof(ai->tags), "%s", ind->tags);
	snprintf(ai->tlp, sizeof(ai->tlp), "%s", mm_tlp_name(ind->tlp));
	ai->confidence = ind->confidence;
	attck_from_tags(&a, ind->tags);
	mm_addr_format(&f->src, src);
	mm_addr_format(&f->dst, dst);
	det_explain(&a, "%s contacted %s on %s/%u (%" PRIu64 " packets out, %" PRIu64 " back); %s is listed in %s by %s "
		 "(confidence %u%s%s%s%s)",
		 src, dst, mm_proto_name(f->proto, p), f->dst_port, f->fwd_packets, f->rev_packets,
		 dst_side ? dst : src, ai->value, ai->source, ai->confidence, ai->tlp[0] ? ", TLP:" : "", ai->tlp,
		 ai->tags[0] ? ", tags " : "", ai->tags);
	det_emit(d, &a);
}

static void check_side(struct mm_detect *d, struct intel_state *s, const struct mm_flow *f, bool dst_side)
{
	struct mm_intel_hit hit;
	struct mm_intel_indicator ind = { 0 };
	struct contact_key k;
	struct contact_entry *e;
	bool created;

	if (!(dst_side ? d->cur.intel_dst : d->cur.intel_src) ||
	    mm_intel_match_addr(d->snap, dst_side ? &f->dst : &f->src, d->now, &hit) != 1)
		return;
	if (!best_indicator(d->snap, &hit, d->cfg.intel_cfg.min_confidence, &ind))
		return;
	memset(&k, 0, sizeof(k));
	k.src = f->src;
	k.dst = f->dst;
	k.prefix = hit.prefix;
	e = det_table_get(&s->t, &k, d->now, &created);
	e->flows++;
	if (!created && d->now < e->alerted_ns + d->cfg.intel_cfg.suppress_ns)
		return;
	e->alerted_ns = d->now;
	intel_raise(d, f, &hit, &ind, dst_side);
}

static void intel_flow(struct mm_detect *d, const struct mm_flow *f)
{
	struct intel_state *s = d->state[MM_DET_INTEL];

	if (!d->snap)
		return;
	check_side(d, s, f, true);
	check_side(d, s, f, false);
}

static void intel_tick(struct mm_detect *d, uint64_t now)
{
	struct intel_state *s = d->state[MM_DET_INTEL];

	det_table_sweep(&s->t, now, d->cfg.intel_cfg.suppress_ns, d->sweep_budget);
}

static void intel_release(struct mm_detect *d)
{
	struct intel_state *s = d->state[MM_DET_INTEL];

	det_table_release(&s->t);
	free(s);
	d->state[MM_DET_INTEL] = NULL;
}

const struct det_ops det_intel_ops = {
	.name = "intel",
	.mem_share = 5,
	.init = intel_init,
	.flow = intel_flow,
	.tick = intel_tick,
	.release = intel_release,
};
