/*
 * The ground-truth scenario: deterministic for a seed, every truth entry
 * describes exactly the flows labelled with it, attacks of every detector
 * and the benign look-alikes are there, nothing benign could be mistaken
 * for an attack by the evaluation's matching rule, the indicator list and
 * the store round trip hold, and `mamori synth --scenario` writes the same.
 */
#include "test_util.h"

#include "mamori/scenario.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const detectors[] = { "intel", "scan", "beacon", "ddos", "bruteforce", "exfil" };
#define N_DETECTORS (sizeof(detectors) / sizeof(detectors[0]))

static void small_config(struct mm_scenario_config *cfg, uint64_t seed)
{
	mm_scenario_config_default(cfg);
	cfg->seed = seed;
	cfg->duration_ns = 3600 * MM_NS_PER_SEC;
	cfg->scale = 0.1;
}

/* FNV-1a over every stored column of every flow and its label. */
struct digest {
	uint64_t h, flows;
};

static void mix(struct digest *d, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		d->h ^= (v >> (8 * i)) & 0xff;
		d->h *= 0x100000001b3ull;
	}
}

static int digest_sink(void *ctx, const struct mm_flow *flows, const uint32_t *labels, size_t n)
{
	struct digest *d = ctx;

	for (size_t i = 0; i < n; i++) {
		for (unsigned c = 0; c < MM_STORE_N_COLUMNS; c++)
			mix(d, mm_store_flow_value(&flows[i], c));
		mix(d, labels[i]);
	}
	d->flows += n;
	return 0;
}

static struct digest run_digest(const struct mm_scenario_config *cfg, struct mm_scenario **sc)
{
	struct digest d = { 0xcbf29ce484222325ull, 0 };

	cr_assert_eq(mm_scenario_generate(cfg, digest_sink, &d, sc), 0, "%s", mm_last_error());
	return d;
}

static char *truth_text(const struct mm_scenario *sc, const char *dir, const char *name)
{
	char path[512], ind[512];
	char *text;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(ind, sizeof(ind), "%s/%s.indicators", dir, name);
	cr_assert_eq(mm_scenario_write_truth(sc, path, ind), 0, "%s", mm_last_error());
	text = tu_read_file(path, NULL);
	cr_assert_not_null(text);
	return text;
}

Test(scenario, same_seed_same_flows_and_truth_other_seed_differs)
{
	struct mm_scenario_config cfg;
	struct mm_scenario *a, *b, *c;
	struct digest da, db, dc;
	char *dir = tu_tmpdir(), *ta, *tb, *tc;

	small_config(&cfg, 7);
	da = run_digest(&cfg, &a);
	db = run_digest(&cfg, &b);
	cfg.seed = 8;
	dc = run_digest(&cfg, &c);
	cr_assert_gt(da.flows, 10000, "a one-hour scenario at scale 0.1 still has its attacks");
	cr_assert_eq(da.flows, db.flows);
	cr_assert_eq(da.h, db.h, "same seed, different flows");
	cr_assert_neq(da.h, dc.h, "another seed gave the same flows");
	ta = truth_text(a, dir, "a.json");
	tb = truth_text(b, dir, "b.json");
	tc = truth_text(c, dir, "c.json");
	cr_assert_str_eq(ta, tb);
	cr_assert_str_neq(ta, tc);
	free(ta);
	free(tb);
	free(tc);
	mm_scenario_free(a);
	mm_scenario_free(b);
	mm_scenario_free(c);
	free(dir);
}

/* --- the standard scenario, checked flow by flow ------------------------------------------- */

struct check {
	const struct mm_scenario *sc;    /* the truth of a first run, for the second */
	uint64_t start_ns, end_ns;
	uint64_t flows, v6_flows, last_first_ns, last_id;
	uint64_t *labelled;              /* flows per entry, counted from the labels */
	uint64_t *matching;              /* flows inside each entry's src/dst/port/proto/window */
	uint64_t *outside;               /* labelled flows that do not fit their entry */
	struct mm_prefix *indicators;
	bool *contacted;                 /* per indicator: named by an intel attack */
	size_t n_indicators;
	uint64_t decoy_hits, indicator_hits_unlabelled;
	uint64_t bad_order, bad_window, bad_id, mixed_family, not_border;
};

static bool entry_fits(const struct mm_scenario_entry *e, const struct mm_flow *f)
{
	return mm_prefix_contains(&e->src, &f->src) && mm_prefix_contains(&e->dst, &f->dst) &&
	       (e->dst_port < 0 || f->dst_port == e->dst_port) && (e->proto == 0 || f->proto == e->proto) &&
	       f->first_ns >= e->first_ns && f->last_ns <= e->last_ns;
}

static bool is_domestic(const struct mm_scenario *sc, const struct mm_addr *a)
{
	for (size_t i = 0; i < mm_scenario_domestic_count(sc); i++)
		if (mm_prefix_contains(mm_scenario_domestic(sc, i), a))
			return true;
	return false;
}

static bool is_intel(const struct mm_scenario_entry *e)
{
	return e->role == MM_SCENARIO_ATTACK && strcmp(e->detector, "intel") == 0;
}

static int check_sink(void *ctx, const struct mm_flow *flows, const uint32_t *labels, size_t n)
{
	struct check *k = ctx;
	size_t n_entries = mm_scenario_entry_count(k->sc);

	for (size_t i = 0; i < n; i++) {
		const struct mm_flow *f = &flows[i];

		k->flows++;
		k->v6_flows += !mm_addr_is_v4(&f->src);
		k->bad_order += f->first_ns < k->last_first_ns;
		k->last_first_ns = f->first_ns;
		k->bad_window += f->first_ns < k->start_ns || f->last_ns >= k->end_ns || f->last_ns < f->first_ns;
		k->mixed_family += mm_addr_is_v4(&f->src) != mm_addr_is_v4(&f->dst);
		k->not_border += is_domestic(k->sc, &f->src) == is_domestic(k->sc, &f->dst);
		k->bad_id += f->id <= k->last_id;
		k->last_id = f->id;
		if (labels[i]) {
			k->labelled[labels[i] - 1]++;
			k->outside[labels[i] - 1] += !entry_fits(mm_scenario_entry(k->sc, labels[i] - 1), f);
		}
		for (size_t e = 0; e < n_entries; e++)
			k->matching[e] += entry_fits(mm_scenario_entry(k->sc, e), f);
		for (size_t d = 0; d < k->n_indicators; d++) {
			bool hit = mm_prefix_contains(&k->indicators[d], &f->src) ||
				   mm_prefix_contains(&k->indicators[d], &f->dst);

			if (hit && !k->contacted[d])
				k->decoy_hits++;
				else if (hit && (labels[i] == 0 || !is_intel(mm_scenario_entry(k->sc, labels[i] - 1))))
				k->indicator_hits_unlabelled++;
		}
	}
	return 0;
}

static struct mm_scenario *standard;
static struct check std_check;

/*
 * The standard scenario as shipped, but for the background volume (scale
 * 0.1 keeps the suite quick; attacks do not scale). check: generate it a
 * second time, checking every flow against the truth of the first.
 */
static void standard_setup(bool check)
{
	struct mm_scenario_config cfg;
	size_t n;

	mm_scenario_config_default(&cfg);
	cfg.scale = 0.1;
	cr_assert_eq(mm_scenario_generate(&cfg, NULL, NULL, &standard), 0, "%s", mm_last_error());
	if (!check)
		return;
	n = mm_scenario_entry_count(standard);
	std_check = (struct check){ .sc = standard, .start_ns = cfg.start_ns,
				    .end_ns = cfg.start_ns + cfg.duration_ns };
	std_check.labelled = calloc(n, sizeof(uint64_t));
	std_check.matching = calloc(n, sizeof(uint64_t));
	std_check.outside = calloc(n, sizeof(uint64_t));
	std_check.n_indicators = mm_scenario_indicator_count(standard);
	std_check.indicators = calloc(std_check.n_indicators, sizeof(struct mm_prefix));
	std_check.contacted = calloc(std_check.n_indicators, sizeof(bool));
	for (size_t d = 0; d < std_check.n_indicators; d++) {
		cr_assert_eq(mm_prefix_parse(&std_check.indicators[d], mm_scenario_indicator(standard, d), false), 0);
		for (size_t e = 0; e < n; e++) {
			const char *ind = mm_scenario_entry(standard, e)->indicator;
			std_check.contacted[d] |= ind && strcmp(ind, mm_scenario_indicator(standard, d)) == 0;
		}
	}
	cr_assert_eq(mm_scenario_generate(&cfg, check_sink, &std_check, NULL), 0, "%s", mm_last_error());
}

static void standard_teardown(void)
{
	free(std_check.labelled);
	free(std_check.matching);
	free(std_check.outside);
	free(std_check.indicators);
	free(std_check.contacted);
	mm_scenario_free(standard);
}

/* Every flow checked against the truth: labels, windows, order, indicators. */
Test(standard, every_entry_describes_its_flows, .timeout = 240)
{
	size_t n, contacted = 0;

	standard_setup(true);
	n = mm_scenario_entry_count(standard);
	cr_assert_gt(n, 40);
	for (size_t i = 0; i < n; i++) {
		const struct mm_scenario_entry *e = mm_scenario_entry(standard, i);

		cr_assert_gt(e->n_flows, 0, "%s has no flows", e->id);
		cr_assert_eq(std_check.labelled[i], e->n_flows, "%s: %llu flows labelled, truth says %llu", e->id,
			     (unsigned long long)std_check.labelled[i], (unsigned long long)e->n_flows);
		cr_assert_eq(std_check.outside[i], 0, "%s: %llu of its flows lie outside its src/dst/port/window",
			     e->id, (unsigned long long)std_check.outside[i]);
		cr_assert_geq(std_check.matching[i], e->n_flows, "%s: only %llu flows match it", e->id,
			      (unsigned long long)std_check.matching[i]);
		cr_assert_leq(e->first_ns, e->last_ns, "%s", e->id);
		cr_assert(e->first_ns >= std_check.start_ns && e->last_ns < std_check.end_ns, "%s", e->id);
	}
	cr_assert_gt(std_check.flows, 250000);
	cr_assert_gt(std_check.v6_flows, 5000);
	cr_assert_eq(std_check.bad_order, 0, "flows out of first_ns order");
	cr_assert_eq(std_check.bad_window, 0, "flows outside the scenario window");
	cr_assert_eq(std_check.bad_id, 0, "flow ids not increasing");
	cr_assert_eq(std_check.mixed_family, 0, "flows between an IPv4 and an IPv6 address");
	cr_assert_eq(mm_scenario_domestic_count(standard), 3);
	cr_assert_eq(std_check.not_border, 0, "flows that do not cross the border (both ends or neither domestic)");

	/* Indicators: the intel attacks' entries are contacted, by them alone; decoys by nobody. */
	cr_assert_geq(std_check.n_indicators, 50);
	for (size_t d = 0; d < std_check.n_indicators; d++)
		contacted += std_check.contacted[d];
	cr_assert_geq(contacted, 5);
	cr_assert_geq(std_check.n_indicators - contacted, 40, "decoys");
	cr_assert_eq(std_check.decoy_hits, 0, "a decoy indicator was contacted");
	cr_assert_eq(std_check.indicator_hits_unlabelled, 0, "a listed address appears outside the intel attacks");
	standard_teardown();
}

Test(standard, several_attacks_per_detector_with_attck_ids)
{
	size_t per[N_DETECTORS] = { 0 }, n, v6 = 0;

	standard_setup(false);
	n = mm_scenario_entry_count(standard);
	for (size_t i = 0; i < n; i++) {
		const struct mm_scenario_entry *e = mm_scenario_entry(standard, i);
		size_t d = 0;

		if (e->role != MM_SCENARIO_ATTACK)
			continue;
		while (d < N_DETECTORS && strcmp(e->detector, detectors[d]) != 0)
			d++;
		cr_assert_lt(d, N_DETECTORS, "%s: unknown detector %s", e->id, e->detector);
		per[d]++;
		cr_assert_not_null(e->attck[0], "%s has no ATT&CK id", e->id);
		cr_assert_eq(e->attck[0][0], 'T', "%s: %s", e->id, e->attck[0]);
		cr_assert_not_null(e->variant);
		v6 += !mm_addr_is_v4(&e->dst.addr);
	}
	for (size_t d = 0; d < N_DETECTORS; d++)
		cr_assert(per[d] >= 5 && per[d] <= 12, "%s: %zu attacks", detectors[d], per[d]);
	cr_assert_geq(v6, 5, "IPv6 attacks: %zu", v6);
	standard_teardown();
}

Test(standard, benign_look_alikes_are_there)
{
	static const char *const kinds[] = { "periodic-ntp", "update-check", "busy-server", "bulk-download",
					     "bulk-upload", "ibr", "monitoring", "flash-crowd", "busy-resolver" };
	size_t n;

	standard_setup(false);
	n = mm_scenario_entry_count(standard);
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		uint64_t flows = 0;

		for (size_t i = 0; i < n; i++) {
			const struct mm_scenario_entry *e = mm_scenario_entry(standard, i);
			if (e->role == MM_SCENARIO_BENIGN && strcmp(e->variant, kinds[k]) == 0)
				flows += e->n_flows;
		}
		cr_assert_gt(flows, 0, "no benign %s traffic", kinds[k]);
	}
	standard_teardown();
}

/* a ⊆ b: every address of a lies in b. */
static bool prefix_within(const struct mm_prefix *a, const struct mm_prefix *b)
{
	return mm_prefix_bits128(b) <= mm_prefix_bits128(a) && mm_prefix_contains(b, &a->addr);
}

/*
 * An alert on exactly a benign entry's endpoints must not match an attack of
 * any detector: no benign entry lies within an attack's src and dst (either
 * orientation) while their windows overlap.
 */
Test(standard, no_benign_entry_matches_an_attack)
{
	size_t n;

	standard_setup(false);
	n = mm_scenario_entry_count(standard);
	for (size_t i = 0; i < n; i++) {
		const struct mm_scenario_entry *a = mm_scenario_entry(standard, i);

		if (a->role != MM_SCENARIO_ATTACK)
			continue;
		for (size_t j = 0; j < n; j++) {
			const struct mm_scenario_entry *b = mm_scenario_entry(standard, j);
			bool overlap_time = b->first_ns <= a->last_ns && a->first_ns <= b->last_ns;
			bool same = prefix_within(&b->src, &a->src) && prefix_within(&b->dst, &a->dst);
			bool swapped = prefix_within(&b->src, &a->dst) && prefix_within(&b->dst, &a->src);

			if (b->role == MM_SCENARIO_BENIGN)
				cr_assert(!(overlap_time && (same || swapped)), "benign %s lies within attack %s",
					  b->id, a->id);
		}
	}
	standard_teardown();
}

Test(standard, intel_attacks_name_the_indicator_they_contact)
{
	size_t n;

	standard_setup(false);
	n = mm_scenario_entry_count(standard);
	for (size_t i = 0; i < n; i++) {
		const struct mm_scenario_entry *e = mm_scenario_entry(standard, i);
		struct mm_prefix p;

		if (!is_intel(e))
			continue;
		cr_assert_not_null(e->indicator, "%s names no indicator", e->id);
		cr_assert_eq(mm_prefix_parse(&p, e->indicator, false), 0);
		cr_assert(mm_prefix_contains(&p, &e->dst.addr) || mm_prefix_contains(&p, &e->src.addr),
			  "%s: neither end lies in %s", e->id, e->indicator);
	}
	standard_teardown();
}

/* --- the truth file ----------------------------------------------------------------------- */

static uint64_t json_time(json_t *o, const char *key)
{
	const char *text = json_string_value(json_object_get(o, key));
	uint64_t ns;

	cr_assert_not_null(text, "no %s", key);
	cr_assert_eq(text[strlen(text) - 1], 'Z', "%s is not UTC: %s", key, text);
	cr_assert_eq(mm_time_parse(text, 0, &ns), 0, "%s: %s", key, text);
	return ns;
}

Test(standard, truth_file_follows_the_contract)
{
	char *dir = tu_tmpdir(), path[512], ind[512], *list;
	json_error_t err;
	json_t *root, *attacks, *benign, *v;
	size_t i, n_att = 0;

	standard_setup(false);
	snprintf(path, sizeof(path), "%s/truth.json", dir);
	snprintf(ind, sizeof(ind), "%s/scenario-indicators.txt", dir);
	cr_assert_eq(mm_scenario_write_truth(standard, path, ind), 0, "%s", mm_last_error());
	root = json_load_file(path, 0, &err);
	cr_assert_not_null(root, "%s:%d: %s", path, err.line, err.text);
	cr_assert_str_eq(json_string_value(json_object_get(root, "scenario")), "standard");
	cr_assert_eq(json_integer_value(json_object_get(root, "seed")), (json_int_t)mm_scenario_config(standard)->seed);
	cr_assert_eq(json_real_value(json_object_get(root, "scale")), mm_scenario_config(standard)->scale);
	cr_assert_eq(json_time(root, "end") - json_time(root, "start"), 6 * 3600 * MM_NS_PER_SEC);
	cr_assert_eq(json_array_size(json_object_get(root, "domestic")), 3);
	attacks = json_object_get(root, "attacks");
	benign = json_object_get(root, "benign");
	json_array_foreach(attacks, i, v) {
		const struct mm_scenario_entry *e = mm_scenario_entry(standard, i);
		json_t *port = json_object_get(v, "dst_port");

		cr_assert_str_eq(json_string_value(json_object_get(v, "id")), e->id);
		cr_assert_str_eq(json_string_value(json_object_get(v, "detector")), e->detector);
		cr_assert_not_null(json_string_value(json_object_get(v, "variant")));
		cr_assert_not_null(json_string_value(json_object_get(v, "src")));
		cr_assert_not_null(json_string_value(json_object_get(v, "dst")));
		cr_assert(json_is_null(port) || json_integer_value(port) == e->dst_port, "%s port", e->id);
		/* Written to the microsecond: the file's window covers the entry's. */
		cr_assert_leq(json_time(v, "first"), e->first_ns);
		cr_assert_eq(json_time(v, "first") / 1000, e->first_ns / 1000);
		cr_assert_eq(json_time(v, "last") / 1000, e->last_ns / 1000);
		cr_assert_gt(json_array_size(json_object_get(v, "attck")), 0);
		n_att++;
	}
	cr_assert_gt(n_att, 30);
	cr_assert_eq(n_att + json_array_size(benign), mm_scenario_entry_count(standard));
	json_array_foreach(benign, i, v) {
		cr_assert_not_null(json_string_value(json_object_get(v, "kind")));
		cr_assert_not_null(json_string_value(json_object_get(v, "src")));
		cr_assert_not_null(json_string_value(json_object_get(v, "dst")));
	}
	json_decref(root);
	list = tu_read_file(ind, NULL);
	cr_assert_not_null(list);
	for (size_t d = 0; d < mm_scenario_indicator_count(standard); d++) {
		char line[64];

		snprintf(line, sizeof(line), "\n%s\n", mm_scenario_indicator(standard, d));
		cr_assert(strstr(list, line), "indicator %s missing from the list", line + 1);
	}
	free(list);
	free(dir);
	standard_teardown();
}

/* --- store and command line --------------------------------------------------------------- */

struct store_sink {
	struct mm_store_writer *w;
	uint64_t flows, bytes;
};

static int to_store(void *ctx, const struct mm_flow *flows, const uint32_t *labels, size_t n)
{
	struct store_sink *s = ctx;

	(void)labels;
	for (size_t i = 0; i < n; i++)
		s->bytes += mm_flow_bytes(&flows[i]);
	s->flows += n;
	return mm_store_writer_append(s->w, flows, n);
}

struct tally {
	uint64_t rows, bytes;
};

static int tally_chunk(void *ctx, unsigned thread, const struct mm_store_batch *b)
{
	struct tally *t = ctx;
	const uint64_t *fwd = b->col[MM_COL_FWD_BYTES], *rev = b->col[MM_COL_REV_BYTES];
	uint64_t bytes = 0;

	(void)thread;
	for (size_t i = 0; i < b->n_rows; i++)
		bytes += fwd[i] + rev[i];
	__atomic_fetch_add(&t->rows, b->n_rows, __ATOMIC_RELAXED);
	__atomic_fetch_add(&t->bytes, bytes, __ATOMIC_RELAXED);
	return 0;
}

Test(scenario, flows_pass_the_store)
{
	struct mm_scenario_config cfg;
	struct mm_store_writer_options opt;
	struct store_sink sink = { 0 };
	struct tally tally = { 0 };
	struct mm_store *st;
	struct mm_store_verify_report rep;
	struct mm_store_scan scan = { .until_ns = UINT64_MAX, .n_threads = 2, .on_chunk = tally_chunk,
				      .ctx = &tally,
				      .columns = 1ull << MM_COL_FWD_BYTES | 1ull << MM_COL_REV_BYTES };
	char *dir = tu_tmpdir();

	small_config(&cfg, 3);
	mm_store_writer_options_default(&opt);
	opt.fsync = false;
	opt.flush_interval_ns = 0;
	cr_assert_eq(mm_store_writer_open(&sink.w, dir, &opt), 0, "%s", mm_last_error());
	cr_assert_eq(mm_scenario_generate(&cfg, to_store, &sink, NULL), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_writer_close(sink.w), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_verify(dir, &rep, NULL, NULL), 0, "%s", mm_last_error());
	cr_assert_eq(rep.flows, sink.flows);
	cr_assert_eq(mm_store_open(&st, dir), 0, "%s", mm_last_error());
	cr_assert_eq(mm_store_scan(st, &scan, NULL), 0, "%s", mm_last_error());
	cr_assert_eq(tally.rows, sink.flows);
	cr_assert_eq(tally.bytes, sink.bytes);
	mm_store_free(st);
	free(dir);
}

Test(scenario, refuses_bad_configs)
{
	struct mm_scenario_config cfg;

	small_config(&cfg, 1);
	cfg.name = "nonesuch";
	cr_assert_eq(mm_scenario_generate(&cfg, NULL, NULL, NULL), MM_EINVAL);
	cr_assert(strstr(mm_last_error(), "nonesuch"));
	small_config(&cfg, 1);
	cfg.duration_ns = 600 * MM_NS_PER_SEC;
	cr_assert_eq(mm_scenario_generate(&cfg, NULL, NULL, NULL), MM_EINVAL);
	small_config(&cfg, 1);
	cfg.scale = 1000;
	cr_assert_eq(mm_scenario_generate(&cfg, NULL, NULL, NULL), MM_EINVAL);
}

/* A sink's failure stops generation and comes back unchanged. */
static int failing_sink(void *ctx, const struct mm_flow *flows, const uint32_t *labels, size_t n)
{
	uint64_t *seen = ctx;

	(void)flows;
	(void)labels;
	*seen += n;
	return *seen > 5000 ? MM_EIO : 0;
}

Test(scenario, sink_failure_stops_generation)
{
	struct mm_scenario_config cfg;
	struct mm_scenario *sc = (struct mm_scenario *)&cfg;
	uint64_t seen = 0;

	small_config(&cfg, 1);
	cr_assert_eq(mm_scenario_generate(&cfg, failing_sink, &seen, &sc), MM_EIO);
	cr_assert_null(sc);
	cr_assert_lt(seen, 10000);
}

static void run_cli(const char *dir, const char *name)
{
	char truth[512], flows[512], store[512], labels[512], *out = NULL, *err = NULL;

	snprintf(truth, sizeof(truth), "%s/%s.json", dir, name);
	snprintf(flows, sizeof(flows), "%s/%s.ndjson", dir, name);
	snprintf(store, sizeof(store), "%s/%s-data", dir, name);
	snprintf(labels, sizeof(labels), "%s/%s.csv", dir, name);
	const char *argv[] = { tu_mamori_bin(), "synth", "--scenario", "standard", "--seed", "4",
			       "--hours", "1", "--scale", "0.05", "-w", store, "--truth", truth,
			       "--flows-out", flows, "--labels-out", labels, NULL };
	cr_assert_eq(tu_run(argv, NULL, &out, &err), 0, "stderr: %s", err);
	cr_assert(strstr(out, "\nattacks_beacon 8\n"), "output: %s", out);
	cr_assert(strstr(out, "scenario-indicators.txt"), "output: %s", out);
	free(out);
	free(err);
}

/* The labels file names, for exactly as many flows as the truth counts, each entry of the truth. */
static void check_labels(const char *dir)
{
	char path[512], *csv, *line, *save = NULL;
	json_t *root, *list, *v;
	json_int_t want = 0, got = 0;
	size_t i;

	snprintf(path, sizeof(path), "%s/one.json", dir);
	root = json_load_file(path, 0, NULL);
	cr_assert_not_null(root);
	snprintf(path, sizeof(path), "%s/one.csv", dir);
	csv = tu_read_file(path, NULL);
	cr_assert_not_null(csv);
	cr_assert_eq(strncmp(csv, "id,entry\n", 9), 0, "header: %.20s", csv);
	for (int part = 0; part < 2; part++) {
		list = json_object_get(root, part ? "benign" : "attacks");
		json_array_foreach(list, i, v)
			want += json_integer_value(json_object_get(v, "flows"));
	}
	for (line = strtok_r(csv + 9, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *id = strchr(line, ',');
		bool known = false;

		cr_assert_not_null(id, "line %s", line);
		for (int part = 0; part < 2 && !known; part++) {
			list = json_object_get(root, part ? "benign" : "attacks");
			json_array_foreach(list, i, v)
				known |= strcmp(json_string_value(json_object_get(v, "id")), id + 1) == 0;
		}
		cr_assert(known, "unknown entry in %s", line);
		got++;
	}
	cr_assert_eq(got, want, "%lld labelled flows, the truth counts %lld", (long long)got, (long long)want);
	json_decref(root);
	free(csv);
}

Test(scenario, command_line_is_deterministic)
{
	char *dir = tu_tmpdir(), path[512], *a, *b, *list;
	size_t la, lb;
	char *out = NULL, *err = NULL;

	run_cli(dir, "one");
	run_cli(dir, "two");
	snprintf(path, sizeof(path), "%s/one.ndjson", dir);
	a = tu_read_file(path, &la);
	snprintf(path, sizeof(path), "%s/two.ndjson", dir);
	b = tu_read_file(path, &lb);
	cr_assert(a && b && la > 1000 && la == lb && memcmp(a, b, la) == 0, "NDJSON differs between runs");
	cr_assert(strstr(a, "\"dst_port\":"), "not flow NDJSON");
	free(a);
	free(b);
	snprintf(path, sizeof(path), "%s/one.json", dir);
	a = tu_read_file(path, &la);
	snprintf(path, sizeof(path), "%s/two.json", dir);
	b = tu_read_file(path, &lb);
	cr_assert(a && b && la == lb && memcmp(a, b, la) == 0, "truth differs between runs");
	cr_assert(strstr(a, "\"detector\": \"exfil\""));
	free(a);
	free(b);
	check_labels(dir);
	snprintf(path, sizeof(path), "%s/scenario-indicators.txt", dir);
	list = tu_read_file(path, NULL);
	cr_assert_not_null(list, "no indicator list beside the truth");
	free(list);

	const char *bad[] = { tu_mamori_bin(), "synth", "--scenario", "standard", "--hours", "0.5",
			      "--truth", path, NULL };
	cr_assert_eq(tu_run(bad, NULL, &out, &err), 1);
	cr_assert(strstr(err, "--hours"), "stderr: %s", err);
	free(out);
	free(err);
	const char *none[] = { tu_mamori_bin(), "synth", "--scenario", "standard", "--no-store", NULL };
	cr_assert_eq(tu_run(none, NULL, &out, &err), 1);
	cr_assert(strstr(err, "--truth"), "stderr: %s", err);
	free(out);
	free(err);
	free(dir);
}

/* --- packets for a window -------------------------------------------------------------------- */

struct window_sink {
	struct mm_scenario_pcap *pc;
	struct mm_flow *flows;    /* the records of the window */
	size_t n, cap;
	uint64_t from_ns, until_ns;
};

static int window_collect(void *ctx, const struct mm_flow *flows, const uint32_t *labels, size_t n)
{
	struct window_sink *w = ctx;

	(void)labels;
	for (size_t i = 0; i < n; i++) {
		if (flows[i].first_ns < w->from_ns || flows[i].first_ns >= w->until_ns)
			continue;
		if (w->n == w->cap) {
			w->cap = w->cap ? 2 * w->cap : 4096;
			w->flows = realloc(w->flows, w->cap * sizeof(*w->flows));
			cr_assert_not_null(w->flows);
		}
		w->flows[w->n++] = flows[i];
	}
	return mm_scenario_pcap_add(w->pc, flows, n);
}

/* Order by 5-tuple, so a metered flow finds its records by binary search. */
static int key_cmp(const void *a, const void *b)
{
	const struct mm_flow *x = a, *y = b;
	int c = mm_addr_cmp(&x->src, &y->src);

	if (c == 0)
		c = mm_addr_cmp(&x->dst, &y->dst);
	if (c == 0)
		c = (x->src_port > y->src_port) - (x->src_port < y->src_port);
	if (c == 0)
		c = (x->dst_port > y->dst_port) - (x->dst_port < y->dst_port);
	if (c == 0)
		c = (x->proto > y->proto) - (x->proto < y->proto);
	return c;
}

/*
 * The window's packets, metered by `mamori meter`, give back the records:
 * every record under the thinning cap whose 5-tuple is its own comes back
 * as one flow with the same packets and bytes each way.
 */
Test(scenario, window_pcap_meters_back_to_the_records, .timeout = 240)
{
	struct mm_scenario_config cfg;
	struct mm_scenario_pcap_options opt;
	struct mm_scenario_pcap_stats st;
	struct window_sink w = { 0 };
	char *dir = tu_tmpdir(), pcap[512], out[512], *text, *line, *save = NULL;
	uint64_t metered = 0, checked = 0, mismatched = 0;

	small_config(&cfg, 5);
	mm_scenario_pcap_options_default(&opt);
	opt.from_ns = cfg.start_ns + cfg.duration_ns / 10; /* scan-1 runs here */
	opt.until_ns = opt.from_ns + 60 * MM_NS_PER_SEC;
	w.from_ns = opt.from_ns;
	w.until_ns = opt.until_ns;
	snprintf(pcap, sizeof(pcap), "%s/w.pcap", dir);
	snprintf(out, sizeof(out), "%s/metered.ndjson", dir);
	cr_assert_eq(mm_scenario_pcap_open(&w.pc, pcap, &opt), 0, "%s", mm_last_error());
	cr_assert_eq(mm_scenario_generate(&cfg, window_collect, &w, NULL), 0, "%s", mm_last_error());
	cr_assert_eq(mm_scenario_pcap_close(w.pc, &st), 0, "%s", mm_last_error());
	cr_assert_eq(st.flows, w.n);
	cr_assert_gt(st.flows, 10000, "the window holds the fast scan");
	cr_assert_eq(st.flows_left_out, 0);

	const char *argv[] = { tu_mamori_bin(), "meter", pcap, "--no-store", "--format", "ndjson",
			       "-o", out, NULL };
	cr_assert_eq(tu_run(argv, NULL, NULL, NULL), 0);
	text = tu_read_file(out, NULL);
	cr_assert_not_null(text);
	qsort(w.flows, w.n, sizeof(*w.flows), key_cmp);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *m = json_loads(line, 0, NULL);
		struct mm_flow key = { 0 }, *hit;

		cr_assert(m && mm_addr_parse(&key.src, json_string_value(json_object_get(m, "src"))) == 0 &&
			  mm_addr_parse(&key.dst, json_string_value(json_object_get(m, "dst"))) == 0,
			  "not a flow: %s", line);
		key.src_port = (uint16_t)json_integer_value(json_object_get(m, "src_port"));
		key.dst_port = (uint16_t)json_integer_value(json_object_get(m, "dst_port"));
		key.proto = (uint8_t)json_integer_value(json_object_get(m, "proto"));
		metered++;
		hit = bsearch(&key, w.flows, w.n, sizeof(*w.flows), key_cmp);
		/* Only records whose 5-tuple is their own and that were not thinned. */
		if (hit && (hit == w.flows || key_cmp(hit - 1, hit) != 0) &&
		    (hit + 1 == w.flows + w.n || key_cmp(hit, hit + 1) != 0) &&
		    hit->fwd_packets <= opt.max_flow_packets && hit->rev_packets <= opt.max_flow_packets) {
			checked++;
			mismatched += (uint64_t)json_integer_value(json_object_get(m, "fwd_packets")) != hit->fwd_packets ||
				      (uint64_t)json_integer_value(json_object_get(m, "rev_packets")) != hit->rev_packets ||
				      (uint64_t)json_integer_value(json_object_get(m, "fwd_bytes")) != hit->fwd_bytes ||
				      (uint64_t)json_integer_value(json_object_get(m, "rev_bytes")) != hit->rev_bytes;
		}
		json_decref(m);
	}
	cr_assert_geq(metered, w.n * 99 / 100, "metered %llu flows of %zu records", (unsigned long long)metered, w.n);
	cr_assert_gt(checked, w.n * 9 / 10);
	cr_assert_eq(mismatched, 0, "%llu of %llu flows came back with other counts", (unsigned long long)mismatched,
		     (unsigned long long)checked);
	free(text);
	free(w.flows);
	free(dir);
}
