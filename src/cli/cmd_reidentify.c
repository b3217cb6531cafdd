/*
 * `mamori reidentify`: a pseudonym back to the domestic address it stands
 * for. The reverse of the policy's Crypto-PAn map under the office's key,
 * and so an act on a person: every address passes the guard as a
 * `reidentify` act (its pseudonym is the target an authorization must
 * cover) and is audited, allowed or refused, before it is answered.
 */
#include "cli/cli.h"
#include "cli/cli_guard.h"

#include "mamori/cryptopan.h"
#include "mamori/policy.h"
#include "mamori/status.h"

#include <getopt.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori reidentify - the domestic address behind a pseudonym (guarded)\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori reidentify [-R DIR] [--config FILE] [--authz ID] PSEUDONYM...\n"
	"    mamori reidentify [-R DIR] [--config FILE] [--authz ID] - < pseudonyms\n"
	"\n"
	"DESCRIPTION\n"
	"    Domestic addresses are stored as their Crypto-PAn pseudonyms\n"
	"    (docs/pseudonymisation.md). This command reverses the map for each\n"
	"    PSEUDONYM (IPv4 or IPv6) with the data directory's key and prints\n"
	"    'PSEUDONYM ADDRESS', one per line. Turning a pseudonym back into a\n"
	"    person's address needs a 'reidentify' authorization whose prefixes\n"
	"    cover the pseudonym (docs/oversight.md): each address passes the guard\n"
	"    on its own and is audited, answered or refused. In lab mode (no panel)\n"
	"    every address is answered, audited, and the output says so.\n"
	"\n"
	"    With '-' the pseudonyms are read from standard input, one per line\n"
	"    (spaces around them, blank lines and lines starting with '#' are\n"
	"    skipped), each passing the guard as above.\n"
	"\n"
	"OPTIONS\n"
	"    -R, --store DIR\n"
	"        The data directory. Default: $MAMORI_DATA, else ./mamori-data.\n"
	"    --config FILE\n"
	"        mamori.conf, for [pseudonymisation] key_file. Default: $MAMORI_CONF,\n"
	"        else mamori.conf in DIR when present; the key is then\n"
	"        DIR/policy/cryptopan.key.\n"
	"    --authz ID\n"
	"        The authorization to act under. Default: any in force that covers it.\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   every pseudonym answered\n"
	"    1   usage error\n"
	"    2   a bad address, or no key\n"
	"    3   I/O or internal error\n"
	"    4   the guard refused at least one pseudonym (the others are answered)\n"
	"\n"
	"EXAMPLES\n"
	"    mamori reidentify 9.30.96.164\n"
	"    mamori reidentify --authz A-2026-0007 2202:dbf:a00c:8f::1\n"
	"    mamori reidentify --authz A-2026-0007 - < pseudonyms.txt\n";

static const struct option long_options[] = {
	{ "store", required_argument, NULL, 'R' },
	{ "config", required_argument, NULL, 256 },
	{ "authz", required_argument, NULL, 257 },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct reidentify_args {
	const char *dir, *config, *authz;
};

/* The key the policy pseudonymised with: the configured file, else the data directory's. */
static int open_map(const struct reidentify_args *a, struct mm_cryptopan **out)
{
	struct mm_config *conf = NULL;
	struct mm_policy_config cfg;
	uint8_t key[MM_CRYPTOPAN_KEY_LEN];
	char path[4096];
	int rc;

	mm_policy_config_init(&cfg);
	rc = mm_config_find(a->config, a->dir, &conf);
	if (rc == 0)
		rc = mm_policy_config_load(&cfg, conf);
	if (rc == 0) {
		if (cfg.cryptopan_key)
			snprintf(path, sizeof(path), "%s", cfg.cryptopan_key);
		else if ((size_t)snprintf(path, sizeof(path), "%s/policy/cryptopan.key", a->dir) >= sizeof(path))
			rc = mm_fail(MM_EINVAL, "reidentify: data directory path too long");
	}
	if (rc == 0)
		rc = mm_cryptopan_key_load(path, key);
	if (rc == 0)
		rc = mm_cryptopan_new(key, MM_CRYPTOPAN_AUTO, out);
	sodium_memzero(key, sizeof(key));
	mm_policy_config_free(&cfg);
	mm_config_free(conf);
	return rc;
}

/* One pseudonym through the guard; prints the answer when allowed. Returns an exit code. */
static int reidentify_one(const struct reidentify_args *a, const struct mm_cryptopan *map, const char *text)
{
	struct mm_guard_decision d;
	struct mm_guard_act act = { .act = MM_ACT_REIDENTIFY, .authz_id = a->authz };
	struct mm_prefix target;
	struct mm_addr real;
	char buf[MM_ADDR_STRLEN];
	json_t *result;
	int rc;

	if (mm_addr_parse(&target.addr, text) != 0) {
		fprintf(stderr, "mamori reidentify: '%s' is not an IPv4 or IPv6 address\n", text);
		return CLI_EXIT_INPUT;
	}
	target.len = mm_addr_is_v4(&target.addr) ? 32 : 128;
	act.target = &target;
	rc = cli_guard("reidentify", a->dir, &act, &d, true);
	if (rc == 0) {
		mm_cryptopan_deanonymize(map, &target.addr, &real);
		printf("%s %s\n", text, mm_addr_format(&real, buf));
		/* The receipt names the pseudonym, never the address it revealed. */
		result = json_pack("{s:s,s:i}", "pseudonym", text, "answered", 1);
		if (mm_guard_done(a->dir, &act, &d, result) != 0)
			rc = cli_fail("reidentify", MM_EIO);
		json_decref(result);
	}
	mm_guard_decision_clear(&d);
	return rc;
}

/* Each pseudonym on standard input, one per line; returns the worst exit code. */
static int reidentify_stdin(const struct reidentify_args *a, const struct mm_cryptopan *map)
{
	char line[256];
	unsigned long line_no = 0;
	int worst = CLI_EXIT_OK;

	while (fgets(line, sizeof(line), stdin)) {
		size_t len = strlen(line);
		char *text = line;
		int rc;

		line_no++;
		if (len == sizeof(line) - 1 && line[len - 1] != '\n') {
			int ch;

			while ((ch = getchar()) != EOF && ch != '\n')
				;
			fprintf(stderr, "mamori reidentify: <stdin>:%lu: line longer than %zu bytes\n", line_no,
				sizeof(line) - 2);
			worst = worst > CLI_EXIT_INPUT ? worst : CLI_EXIT_INPUT;
			continue;
		}
		while (len > 0 && strchr(" \t\r\n", line[len - 1]))
			line[--len] = '\0';
		text += strspn(text, " \t");
		if (text[0] == '\0' || text[0] == '#')
			continue;
		rc = reidentify_one(a, map, text);
		if (rc > worst)
			worst = rc;
	}
	if (ferror(stdin)) {
		fprintf(stderr, "mamori reidentify: <stdin>: read error after line %lu\n", line_no);
		return CLI_EXIT_INTERNAL;
	}
	return worst;
}

int cmd_reidentify(int argc, char **argv)
{
	struct reidentify_args a = { 0 };
	struct mm_cryptopan *map = NULL;
	int opt, rc, worst = CLI_EXIT_OK;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":R:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
		case 'R': a.dir = optarg; break;
		case 256: a.config = optarg; break;
		case 257: a.authz = optarg; break;
		case ':': return cli_usage_error("reidentify", "option '%s' needs a value", argv[optind - 1]);
		default: return cli_usage_error("reidentify", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return cli_usage_error("reidentify", "give one or more pseudonyms");
	if (!a.dir)
		a.dir = mm_store_default_dir();
	rc = open_map(&a, &map);
	if (rc)
		return cli_fail("reidentify", rc);
	cli_lab_notice_for(a.dir);
	for (int i = optind; i < argc; i++) {
		rc = strcmp(argv[i], "-") == 0 ? reidentify_stdin(&a, map) : reidentify_one(&a, map, argv[i]);
		if (rc > worst)
			worst = rc;
	}
	mm_cryptopan_free(map);
	return worst;
}
