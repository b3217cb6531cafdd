/*
 * The jurisdiction policy: configuration, classes, rules, pseudonyms,
 * counters and retention, through the library and through the commands.
 */
#include "mamori/config.h"
#include "mamori/cryptopan.h"
#include "mamori/policy.h"
#include "mamori/status.h"
#include "mamori/synth.h"

#include "test_util.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static struct mm_config *parse(const char *text)
{
	struct mm_config *c = NULL;

	cr_assert_eq(mm_config_parse(text, strlen(text), "test.conf", &c), 0, "%s", mm_last_error());
	return c;
}

static int load(const char *text, struct mm_policy_config *cfg)
{
	struct mm_config *c = NULL;
	int rc;

	mm_policy_config_init(cfg);
	rc = mm_config_parse(text, strlen(text), "test.conf", &c);
	if (rc == 0)
		rc = mm_policy_config_load(cfg, c);
	mm_config_free(c);
	return rc;
}

Test(config, entries_sections_and_comments)
{
	struct mm_config *c = parse("# top\nkey0 = v0\n[jurisdiction]\ncountries = JP, KR ; trailing\n"
				    "[sensor tokyo-1]\n  id=4\nlocation = JP-13 #x\n\n[collect]\nrule = a\nrule = b\n");

	cr_assert_eq(mm_config_count(c), 6);
	const struct mm_config_entry *e = mm_config_at(c, 0);
	cr_assert_str_eq(e->section, "");
	cr_assert_str_eq(e->key, "key0");
	e = mm_config_at(c, 1);
	cr_assert_str_eq(e->section, "jurisdiction");
	cr_assert_str_eq(e->value, "JP, KR");
	cr_assert_eq(e->line, 4);
	e = mm_config_at(c, 2);
	cr_assert_str_eq(e->section, "sensor");
	cr_assert_str_eq(e->name, "tokyo-1");
	cr_assert_str_eq(e->value, "4");
	cr_assert_str_eq(mm_config_at(c, 3)->value, "JP-13");
	cr_assert_str_eq(mm_config_at(c, 5)->value, "b");
	cr_assert_eq(mm_config_at(c, 5)->line, 11);
	mm_config_free(c);
}

Test(config, errors_name_file_and_line)
{
	static const struct {
		const char *text;
		const char *needle;
	} bad[] = {
		{ "[jurisdiction\ncountries = JP\n", "test.conf:1:" },
		{ "[a]\njust words\n", "test.conf:2: expected 'key = value'" },
		{ "[a]\nbad key = 1\n", "test.conf:2: key 'bad key'" },
		{ "[a b c]\n", "test.conf:1: section name 'b c'" },
		{ "x = 1\n\0y = 2\n", "NUL byte" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mm_config *c = NULL;
		size_t len = i == 4 ? 13 : strlen(bad[i].text);

		cr_assert_eq(mm_config_parse(bad[i].text, len, "test.conf", &c), MM_EFORMAT, "case %zu", i);
		cr_assert(strstr(mm_last_error(), bad[i].needle), "case %zu: %s", i, mm_last_error());
		cr_assert_null(c);
	}
}

Test(policy_config, sections_are_read)
{
	struct mm_policy_config cfg;

	cr_assert_eq(load("[jurisdiction]\ncountries = jp kr\nprefixes = 198.51.100.0/24\nprefixes = 2001:db8::/32\n"
			  "asns = AS64500, 64501\n[sensor tokyo-ix-1]\nid = 3\nlocation = JP-13 Otemachi\n"
			  "[collect]\nrule = sensor=tokyo-ix-1 classes=FD,DF from=2026-01-01 until=2026-02-01\n"
			  "rule = sensor=* classes=FF\n[retention]\nflows = 90d\n[detect]\nscan.min_hosts = 9\n",
			  &cfg),
		     0, "%s", mm_last_error());
	cr_assert(cfg.jurisdiction);
	cr_assert_eq(cfg.n_countries, 2);
	cr_assert_eq(memcmp(cfg.countries[1], "KR", 2), 0);
	cr_assert_eq(cfg.n_prefixes, 2);
	cr_assert_eq(cfg.n_asns, 2);
	cr_assert_eq(cfg.asns[0], 64500);
	cr_assert_eq(cfg.n_sensors, 1);
	cr_assert_eq(cfg.sensors[0].id, 3);
	cr_assert_str_eq(cfg.sensors[0].location, "JP-13 Otemachi");
	cr_assert_eq(cfg.n_rules, 2);
	cr_assert_eq(cfg.rules[0].sensor_id, 3);
	cr_assert_eq(cfg.rules[0].classes, (1u << MM_CLASS_FD) | (1u << MM_CLASS_DF));
	cr_assert_eq(cfg.rules[0].from_ns, 1767225600ull * 1000000000ull);
	cr_assert(cfg.rules[1].any_sensor);
	cr_assert_str_eq(cfg.rules[0].origin, "test.conf:10");
	cr_assert_eq(cfg.retention.flows_ns, 90ull * 86400 * 1000000000ull);
	cr_assert_eq(cfg.retention.alerts_ns, MM_RETENTION_ALERTS_DEFAULT_NS);
	mm_policy_config_free(&cfg);
}

Test(policy_config, bad_values_are_refused_with_their_place)
{
	static const struct {
		const char *text;
		const char *needle;
	} bad[] = {
		{ "[jurisdiction]\ncountries = JPN\n", "test.conf:2: [jurisdiction] countries: 'JPN'" },
		{ "[jurisdiction]\nprefixes = 10.0.0.1/8\n", "test.conf:2:" },
		{ "[jurisdiction]\ncolour = blue\n", "unknown key" },
		{ "[collect]\nrule = sensor=* classes=DD\n", "never collected" },
		{ "[collect]\nrule = sensor=nowhere classes=FF\n", "no sensor named 'nowhere'" },
		{ "[collect]\nrule = classes=FF\n", "needs sensor=" },
		{ "[collect]\nrule = sensor=* classes=FF from=2026-02-01 until=2026-01-01\n", "ends before it starts" },
		{ "[sensor]\nid = 1\n", "needs a name" },
		{ "[sensor a]\nlocation = x\n", "has no id" },
		{ "[retention]\nflows = forever\n", "not a duration" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct mm_policy_config cfg;

		cr_assert_neq(load(bad[i].text, &cfg), 0, "case %zu accepted", i);
		cr_assert(strstr(mm_last_error(), bad[i].needle), "case %zu: %s", i, mm_last_error());
		mm_policy_config_free(&cfg);
	}
}

/* ---- the stage ---- */

static struct mm_flow flow(const char *src, const char *dst, uint32_t sensor, uint64_t first_ns)
{
	struct mm_flow f = { .sensor_id = sensor, .first_ns = first_ns, .last_ns = first_ns + 1000,
			     .fwd_packets = 3, .fwd_bytes = 300, .proto = 6, .src_port = 40000, .dst_port = 443 };

	cr_assert_eq(mm_addr_parse(&f.src, src), 0);
	cr_assert_eq(mm_addr_parse(&f.dst, dst), 0);
	return f;
}

struct stage {
	char *dir;
	struct mm_policy_config cfg;
	struct mm_policy *p;
	struct mm_cryptopan *pan; /* the same key, to check pseudonyms independently */
};

static void stage_open(struct stage *s, const char *conf)
{
	char key_path[512];
	uint8_t key[MM_CRYPTOPAN_KEY_LEN];

	s->dir = tu_tmpdir();
	cr_assert_eq(load(conf, &s->cfg), 0, "%s", mm_last_error());
	cr_assert_eq(mm_policy_new(&s->cfg, s->dir, &s->p), 0, "%s", mm_last_error());
	snprintf(key_path, sizeof(key_path), "%s/policy/cryptopan.key", s->dir);
	cr_assert_eq(mm_cryptopan_key_load(key_path, key), 0, "the default key must be made 0600: %s",
		     mm_last_error());
	cr_assert_eq(mm_cryptopan_new(key, MM_CRYPTOPAN_PORTABLE, &s->pan), 0);
}

static void stage_close(struct stage *s)
{
	mm_policy_free(s->p);
	mm_cryptopan_free(s->pan);
	mm_policy_config_free(&s->cfg);
	free(s->dir);
}

static const char two_sensor_conf[] =
	"[jurisdiction]\nprefixes = 10.0.0.0/8, 2001:db8:1::/48\n"
	"[sensor a]\nid = 1\n[sensor b]\nid = 2\n"
	"[collect]\nrule = sensor=a classes=FD,DF,FF\n"
	"rule = sensor=b classes=FD from=2026-01-01 until=2026-01-02\n";

Test(policy, classes_drops_and_pseudonyms)
{
	const uint64_t jan1 = 1767225600ull * 1000000000ull, day = 86400ull * 1000000000ull;
	struct mm_flow in[] = {
		flow("10.1.1.1", "10.2.2.2", 1, jan1),             /* DD: dropped */
		flow("203.0.113.9", "10.1.1.1", 1, jan1),          /* FD at a: kept, dst pseudonymised */
		flow("10.1.1.1", "203.0.113.9", 1, jan1),          /* DF at a: kept, src pseudonymised */
		flow("203.0.113.9", "198.51.100.7", 1, jan1),      /* FF at a: kept, nothing changed */
		flow("2001:db8:1::5", "2001:db8:99::1", 1, jan1),  /* DF over IPv6 */
		flow("203.0.113.9", "10.1.1.1", 2, jan1 + day / 2),/* FD at b inside its window: kept */
		flow("203.0.113.9", "10.1.1.1", 2, jan1 + 2 * day),/* FD at b after the window: dropped */
		flow("10.1.1.1", "203.0.113.9", 2, jan1),          /* DF at b: no rule covers it */
		flow("203.0.113.9", "10.1.1.1", 9, jan1),          /* FD at an unnamed sensor: no rule */
	};
	const size_t n = sizeof(in) / sizeof(in[0]);
	struct mm_flow out[sizeof(in) / sizeof(in[0])];
	struct mm_policy_counts counts = { 0 };
	struct stage s;
	struct mm_addr want;

	stage_open(&s, two_sensor_conf);
	cr_assert(mm_policy_classes(s.p));
	cr_assert_eq(mm_policy_class_of(s.p, &in[0]), MM_CLASS_DD);
	cr_assert_eq(mm_policy_class_of(s.p, &in[1]), MM_CLASS_FD);
	cr_assert_eq(mm_policy_class_of(s.p, &in[2]), MM_CLASS_DF);
	cr_assert_eq(mm_policy_class_of(s.p, &in[3]), MM_CLASS_FF);
	size_t kept = mm_policy_apply(s.p, in, n, out, &counts);
	cr_assert_eq(kept, 5);
	/* FD: the domestic responder replaced by its pseudonym, the foreign side untouched */
	mm_cryptopan_anonymize(s.pan, &in[1].dst, &want);
	cr_assert(mm_addr_eq(&out[0].dst, &want));
	cr_assert(mm_addr_eq(&out[0].src, &in[1].src));
	cr_assert(!mm_addr_eq(&out[0].dst, &in[1].dst));
	mm_cryptopan_anonymize(s.pan, &in[2].src, &want);
	cr_assert(mm_addr_eq(&out[1].src, &want));
	cr_assert(mm_addr_eq(&out[1].dst, &in[2].dst));
	cr_assert(mm_addr_eq(&out[2].src, &in[3].src) && mm_addr_eq(&out[2].dst, &in[3].dst));
	mm_cryptopan_anonymize(s.pan, &in[4].src, &want);
	cr_assert(mm_addr_eq(&out[3].src, &want));
	cr_assert_eq(out[4].sensor_id, 2);
	cr_assert_eq(out[4].fwd_bytes, 300, "other fields pass unchanged");
	/* counters per sensor and class */
	cr_assert_eq(counts.n, 3);
	cr_assert_eq(counts.s[0].sensor_id, 1);
	cr_assert_eq(counts.s[0].seen[MM_CLASS_DD], 1);
	cr_assert_eq(counts.s[0].dropped[MM_CLASS_DD], 1);
	cr_assert_eq(counts.s[0].kept[MM_CLASS_DF], 2);
	cr_assert_eq(counts.s[1].seen[MM_CLASS_FD], 2);
	cr_assert_eq(counts.s[1].kept[MM_CLASS_FD], 1);
	cr_assert_eq(counts.s[1].dropped[MM_CLASS_DF], 1);
	cr_assert_eq(counts.s[2].dropped[MM_CLASS_FD], 1);
	cr_assert_eq(counts.pseudonymised, 4);
	stage_close(&s);
}

Test(policy, no_jurisdiction_passes_everything_and_says_so)
{
	struct mm_flow in[] = { flow("10.1.1.1", "10.2.2.2", 0, 1), flow("10.1.1.1", "203.0.113.9", 0, 1) };
	struct mm_flow out[2];
	struct mm_policy_counts counts = { 0 };
	struct mm_policy_config cfg;
	struct mm_policy *p;
	char *dir = tu_tmpdir(), *text = NULL, path[512];
	size_t len;
	FILE *fp;
	struct stat st;

	mm_policy_config_init(&cfg);
	cr_assert_eq(mm_policy_new(&cfg, dir, &p), 0, "%s", mm_last_error());
	cr_assert(!mm_policy_classes(p));
	cr_assert_str_eq(mm_policy_describe(p), "none");
	cr_assert_eq(mm_policy_apply(p, in, 2, out, &counts), 2);
	cr_assert(mm_addr_eq(&out[0].src, &in[0].src), "no jurisdiction: no pseudonyms");
	cr_assert_eq(counts.unclassed, 2);
	fp = open_memstream(&text, &len);
	mm_policy_counts_print(fp, &counts, &cfg);
	fclose(fp);
	cr_assert(strstr(text, "no jurisdiction configured"), "%s", text);
	snprintf(path, sizeof(path), "%s/policy/cryptopan.key", dir);
	cr_assert_neq(stat(path, &st), 0, "no key is made without a jurisdiction");
	free(text);
	mm_policy_free(p);
	free(dir);
}

Test(policy, countries_need_a_geo_table)
{
	struct mm_policy_config cfg;
	struct mm_policy *p = NULL;
	char *dir = tu_tmpdir();

	mm_policy_config_init(&cfg);
	cr_assert_eq(mm_policy_config_set_countries(&cfg, "JP"), 0);
	cr_assert_eq(mm_policy_new(&cfg, dir, &p), MM_ENOENT);
	cr_assert(strstr(mm_last_error(), "no geo table"), "%s", mm_last_error());
	cr_assert(strstr(mm_last_error(), "mamori geo build"), "the message says what to do: %s", mm_last_error());
	cr_assert_eq(mm_policy_config_set_countries(&cfg, "J1"), MM_EINVAL);
	mm_policy_config_free(&cfg);
	free(dir);
}

Test(policy, wide_key_file_is_refused)
{
	char *dir = tu_tmpdir(), key[512], conf[1024];
	struct mm_policy_config cfg;
	struct mm_policy *p = NULL;

	snprintf(key, sizeof(key), "%s/k", dir);
	cr_assert_eq(tu_write_file(key, "1522178d33a4cf80130a5b1649907d10d8988f837979652762574c2d2a842202\n", 65), 0);
	chmod(key, 0644);
	snprintf(conf, sizeof(conf), "[jurisdiction]\nprefixes = 10.0.0.0/8\n[pseudonymisation]\nkey_file = %s\n", key);
	cr_assert_eq(load(conf, &cfg), 0);
	cr_assert_eq(mm_policy_new(&cfg, dir, &p), MM_EPERM, "%s", mm_last_error());
	chmod(key, 0600);
	cr_assert_eq(mm_policy_new(&cfg, dir, &p), 0, "%s", mm_last_error());
	mm_policy_free(p);
	mm_policy_config_free(&cfg);
	free(dir);
}

Test(policy, counters_add_up_across_runs)
{
	char *dir = tu_tmpdir();
	struct mm_policy_counts a = { .classed = true, .n = 2, .pseudonymised = 5 }, total;

	a.s[0].sensor_id = 1;
	a.s[0].seen[MM_CLASS_DD] = a.s[0].dropped[MM_CLASS_DD] = 7;
	a.s[1].sensor_id = 2;
	a.s[1].seen[MM_CLASS_FD] = 4;
	a.s[1].kept[MM_CLASS_FD] = 3;
	a.s[1].dropped[MM_CLASS_FD] = 1;
	cr_assert_eq(mm_policy_counts_load(dir, &total), 0);
	cr_assert_eq(total.n, 0, "a new data directory has no totals");
	cr_assert_eq(mm_policy_counts_persist(dir, &a), 0, "%s", mm_last_error());
	cr_assert_eq(mm_policy_counts_persist(dir, &a), 0, "%s", mm_last_error());
	cr_assert_eq(mm_policy_counts_load(dir, &total), 0, "%s", mm_last_error());
	cr_assert(total.classed);
	cr_assert_eq(total.pseudonymised, 10);
	cr_assert_eq(total.n, 2);
	cr_assert_eq(total.s[0].dropped[MM_CLASS_DD], 14);
	cr_assert_eq(total.s[1].kept[MM_CLASS_FD], 6);
	cr_assert_eq(total.s[1].dropped[MM_CLASS_FD], 2);
	free(dir);
}

/* ---- through the commands ---- */

static int mamori(const char *const *args, char **out, char **err)
{
	const char *argv[32] = { tu_mamori_bin() };
	size_t i;

	for (i = 0; args[i]; i++)
		argv[i + 1] = args[i];
	argv[i + 1] = NULL;
	return tu_run(argv, NULL, out, err);
}

/* A scratch directory with a synthetic capture t.pcap; paths of the capture, a config and a store in it. */
struct cli_case {
	char *dir;
	char pcap[512], conf[512], store[512];
	struct mm_synth_summary sum;
};

static void cli_case_open(struct cli_case *c, uint64_t flows, uint64_t start_ns)
{
	struct mm_synth_config sc;

	c->dir = tu_tmpdir();
	snprintf(c->pcap, sizeof(c->pcap), "%s/t.pcap", c->dir);
	snprintf(c->conf, sizeof(c->conf), "%s/mamori.conf", c->dir);
	snprintf(c->store, sizeof(c->store), "%s/store", c->dir);
	mm_synth_config_default(&sc);
	sc.n_flows = flows;
	sc.n_packets = flows * 10;
	if (start_ns)
		sc.start_ns = start_ns;
	cr_assert_eq(mm_synth_write_pcap(&sc, c->pcap, &c->sum), 0);
}

Test(policy_cli, meter_drops_dd_and_pseudonymises, .timeout = 120)
{
	struct cli_case c;
	char *out = NULL, *err = NULL;

	cli_case_open(&c, 400, 0);
	/* The generator's clients are 10.16.0.0/16 and 2001:db8:c::/48; servers 198.19.0.0/20. Servers
	 * in 198.19.8.0/21 are made domestic here, so client→server flows there are DD. */
	static const char text[] = "[jurisdiction]\nprefixes = 10.16.0.0/16, 2001:db8:c::/48, 198.19.8.0/21\n"
				   "[sensor lab]\nid = 5\n[collect]\nrule = sensor=lab classes=FD,DF,FF\n";
	cr_assert_eq(tu_write_file(c.conf, text, sizeof(text) - 1), 0);
	cr_assert_eq(mamori((const char *const[]){ "meter", "--config", c.conf, "--sensor", "lab", "-w", c.store, c.pcap,
						   NULL },
			    &out, &err),
		     0, "%s", err);
	cr_assert(strstr(err, "policy.lab.DD"), "%s", err);
	unsigned long long dd_seen = 0, dd_dropped = 0, df_kept = 0;
	cr_assert_eq(sscanf(strstr(err, "policy.lab.DD"), "policy.lab.DD seen %llu, kept %*u, dropped %llu", &dd_seen,
			    &dd_dropped),
		     2, "%s", err);
	cr_assert_gt(dd_seen, 0);
	cr_assert_eq(dd_dropped, dd_seen);
	cr_assert(strstr(err, "policy.lab.DF"), "%s", err);
	cr_assert_eq(sscanf(strstr(err, "policy.lab.DF"), "policy.lab.DF seen %*u, kept %llu", &df_kept), 1);
	free(out);
	free(err);

	/* The store holds the kept flows only, with no domestic address in the clear. */
	cr_assert_eq(mamori((const char *const[]){ "query", "-R", c.store, "--format", "csv", NULL }, &out, &err), 0, "%s",
		     err);
	size_t lines = 0;
	for (char *p = out; (p = strchr(p, '\n')); p++)
		lines++;
	cr_assert_eq(lines - 1, df_kept, "stored flows = kept flows");
	cr_assert_eq(lines - 1 + dd_dropped, c.sum.flows, "kept + dropped = every flow of the capture");
	cr_assert_null(strstr(out, ",10.16."), "a domestic client address in the clear: %.400s", out);
	cr_assert_null(strstr(out, "2001:db8:c:"), "a domestic IPv6 client in the clear");
	cr_assert_null(strstr(out, ",198.19.8."), "a domestic server in the clear");
	free(out);
	free(err);

	/* reidentify reverses a stored pseudonym to the generator's client (lab mode: allowed, audited). */
	cr_assert_eq(mamori((const char *const[]){ "query", "-R", c.store, "--format", "csv", "--limit", "1",
						   "src net 0.0.0.0/0", NULL },
			    &out, &err),
		     0, "%s", err);
	{
		char pseudonym[64] = "", *line = strchr(out, '\n'), *field;
		int col = 0;

		cr_assert(line, "%s", out);
		for (field = strtok(line + 1, ","); field && ++col < 7; field = strtok(NULL, ","))
			;
		cr_assert(field, "%s", out);
		snprintf(pseudonym, sizeof(pseudonym), "%s", field);
		free(out);
		free(err);
		cr_assert_eq(mamori((const char *const[]){ "reidentify", "-R", c.store, pseudonym, NULL }, &out, &err), 0,
			     "%s", err);
		cr_assert(strstr(out, pseudonym) && strstr(out, " 10.16."), "'%s' must map back into 10.16/16: %s",
			  pseudonym, out);
		cr_assert(strstr(err, "lab mode"), "%s", err);
	}
	free(out);
	free(err);

	/* store stats shows the running totals, with the sensor's name from the configuration. */
	cr_assert_eq(mamori((const char *const[]){ "store", "stats", "-R", c.store, "--config", c.conf, NULL }, &out, &err), 0,
		     "%s", err);
	cr_assert(strstr(out, "policy.lab.DD"), "%s", out);
	free(out);
	free(err);
	free(c.dir);
}

Test(policy_cli, without_jurisdiction_output_says_so)
{
	struct cli_case c;
	char *out = NULL, *err = NULL;

	cli_case_open(&c, 50, 0);
	/* Each run names its own data directory: the shared default one may hold other suites' state. */
	cr_assert_eq(mamori((const char *const[]){ "meter", "-w", c.store, "--format", "csv", "-o", "/dev/null", c.pcap,
						   NULL },
			    &out, &err),
		     0, "%s", err);
	cr_assert(strstr(err, "no jurisdiction configured"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(mamori((const char *const[]){ "meter", "-w", c.store, "--jurisdiction", "JP", c.pcap, NULL }, &out, &err),
		     2, "%s", err);
	cr_assert(strstr(err, "no geo table"), "%s", err);
	free(out);
	free(err);
	cr_assert_eq(mamori((const char *const[]){ "meter", "-w", c.store, "--jurisdiction", "JPN", c.pcap, NULL }, &out, &err),
		     1);
	cr_assert(strstr(err, "'JPN'"), "%s", err);
	free(out);
	free(err);
	free(c.dir);
}

Test(policy_cli, expire_holds_the_retention_ceiling, .timeout = 120)
{
	struct cli_case c;
	char *out = NULL, *err = NULL;

	cli_case_open(&c, 50, 1767225600ull * 1000000000ull); /* 2026-01-01: older than 300 days by now */
	cr_assert_eq(mamori((const char *const[]){ "meter", "-q", "-w", c.store, c.pcap, NULL }, &out, &err), 0, "%s", err);
	free(out);
	free(err);
	/* A ceiling of 30 days: asking for 10 years expires at 30 days anyway. */
	cr_assert_eq(tu_write_file(c.conf, "[retention]\nflows = 30d\n", 24), 0);
	cr_assert_eq(mamori((const char *const[]){ "store", "expire", "--older-than", "10y", "-R", c.store, "--config",
						   c.conf, NULL },
			    &out, &err),
		     0, "%s", err);
	cr_assert(strstr(err, "retention ceiling"), "%s", err);
	cr_assert(strstr(out, "expired 1 segments, 50 flows"), "%s", out);
	free(out);
	free(err);
	free(c.dir);
}
