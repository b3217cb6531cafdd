/*
 * `mamori panel init | leave | show`: switching a data directory between
 * lab mode and enforced mode under an oversight panel (oversight.h). Each
 * change is audited.
 */
#include "cli/cli.h"
#include "cli/cli_guard.h"

#include "mamori/guard.h"
#include "mamori/oversight.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori panel - put a data directory under an oversight panel, or take it out\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori panel init --member PUBFILE... --quorum K --sign KEYFILE... [-R DIR]\n"
	"    mamori panel leave --sign KEYFILE... [-R DIR]\n"
	"    mamori panel show [-R DIR]\n"
	"\n"
	"DESCRIPTION\n"
	"    Without a panel a data directory is in lab mode: every act is allowed,\n"
	"    audited, and every command says so. 'init' switches it to enforced\n"
	"    mode: from then on collection, queries and every other act on data\n"
	"    need an authorization signed by K distinct members (not the\n"
	"    requester). The panel document (members' verifier keys, K) must be\n"
	"    signed by every member: give each member's private key with --sign.\n"
	"    'leave' returns to lab mode; it needs K members' signatures. 'show'\n"
	"    prints the mode, the members and the quorum. See docs/oversight.md.\n"
	"\n"
	"OPTIONS\n"
	"    --member PUBFILE   a member's verifier key (repeat for each member)\n"
	"    --quorum K         signatures an authorization needs (1..members)\n"
	"    --sign KEYFILE     a member's private key, mode 0600 (repeat)\n"
	"    -R, --store DIR    the data directory (default $MAMORI_DATA, else ./mamori-data)\n"
	"    -h, --help         show this text\n"
	"\n"
	"EXIT STATUS\n"
	"    0 done; 1 usage error; 2 bad key or panel file; 3 a panel exists, too\n"
	"    few signatures, or I/O error\n"
	"\n"
	"EXAMPLES\n"
	"    mamori panel init --member a.pub --member b.pub --member c.pub --quorum 2 \\\n"
	"        --sign a.key --sign b.key --sign c.key\n"
	"    mamori panel leave --sign a.key --sign b.key\n";

enum { OPT_MEMBER = 256, OPT_QUORUM, OPT_SIGN };

static const struct option long_options[] = {
	{ "member", required_argument, NULL, OPT_MEMBER },
	{ "quorum", required_argument, NULL, OPT_QUORUM },
	{ "sign", required_argument, NULL, OPT_SIGN },
	{ "store", required_argument, NULL, 'R' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct panel_args {
	const char *dir;
	struct mm_verifier *members[MM_PANEL_MAX_MEMBERS];
	size_t n_members;
	uint64_t quorum;
	struct cli_signers signers;
};

static int parse_args(struct panel_args *a, int argc, char **argv)
{
	int opt, rc;

	optind = 2;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":R:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'h': fputs(usage_text, stdout); return -1;
		case 'R': a->dir = optarg; break;
		case OPT_QUORUM:
			if (cli_parse_count("panel", "--quorum", optarg, 1, MM_PANEL_MAX_MEMBERS, &a->quorum))
				return CLI_EXIT_USAGE;
			break;
		case OPT_SIGN:
			rc = cli_signers_add("panel", &a->signers, optarg);
			if (rc)
				return rc;
			break;
		case OPT_MEMBER:
			if (a->n_members == MM_PANEL_MAX_MEMBERS)
				return cli_usage_error("panel", "at most %d members", MM_PANEL_MAX_MEMBERS);
			rc = mm_verifier_load(optarg, &a->members[a->n_members]);
			if (rc)
				return cli_fail("panel", rc);
			a->n_members++;
			break;
		case ':': return cli_usage_error("panel", "option '%s' needs a value", argv[optind - 1]);
		default: return cli_usage_error("panel", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("panel", "unexpected argument '%s'", argv[optind]);
	if (!a->dir)
		a->dir = mm_store_default_dir();
	return 0;
}

static int run_init(struct panel_args *a)
{
	json_t *detail;
	int rc;

	if (!a->n_members || !a->quorum)
		return cli_usage_error("panel", "init needs --member for each member and --quorum K");
	if (a->quorum > a->n_members)
		return cli_usage_error("panel", "--quorum %llu is more than the %zu members", (unsigned long long)a->quorum,
				       a->n_members);
	rc = mm_panel_init(a->dir, a->members, a->n_members, (unsigned)a->quorum, a->signers.s, a->signers.n,
			   mm_time_now_ns());
	if (rc)
		return cli_fail("panel", rc);
	detail = json_pack("{s:i, s:i}", "members", (json_int_t)a->n_members, "quorum", (json_int_t)a->quorum);
	rc = mm_guard_record(a->dir, "panel.init", "recorded", false, NULL, NULL, detail);
	json_decref(detail);
	if (rc)
		return cli_fail("panel", rc);
	printf("%s: enforced mode: panel of %zu members, quorum %llu\n", a->dir, a->n_members,
	       (unsigned long long)a->quorum);
	return CLI_EXIT_OK;
}

static int run_leave(struct panel_args *a)
{
	json_t *detail;
	char why[512];
	int rc = mm_panel_leave(a->dir, a->signers.s, a->signers.n, mm_time_now_ns());

	snprintf(why, sizeof(why), "%s", mm_last_error());
	detail = json_pack("{s:i}", "signatures", (json_int_t)a->signers.n);
	/* A refused leave is worth recording too: someone tried. */
	if (mm_guard_record(a->dir, "panel.leave", rc ? "refused" : "recorded", false, NULL, rc ? why : NULL,
			    detail) != 0 && rc == 0)
		rc = MM_EIO;
	else if (rc)
		mm_fail(rc, "%s", why);
	json_decref(detail);
	if (rc)
		return cli_fail("panel", rc);
	printf("%s: lab mode: the panel has left\n", a->dir);
	return CLI_EXIT_OK;
}

static int run_show(struct panel_args *a)
{
	struct mm_panel *p = NULL;
	int rc = mm_panel_load(a->dir, &p);

	if (rc == MM_ENOENT) {
		printf("%s: lab mode: no oversight panel; every act is allowed and audited\n", a->dir);
		return CLI_EXIT_OK;
	}
	if (rc)
		return cli_fail("panel", rc);
	printf("%s: enforced mode\nquorum: %u of %zu\ndigest: %s\nmembers:\n", a->dir, mm_panel_quorum(p),
	       mm_panel_size(p), mm_panel_digest(p));
	for (size_t i = 0; i < mm_panel_size(p); i++) {
		char *line = NULL;
		if (mm_verifier_encode(mm_panel_member(p, i), &line) == 0)
			printf("  %s\n", line);
		free(line);
	}
	mm_panel_free(p);
	return CLI_EXIT_OK;
}

int cmd_panel(int argc, char **argv)
{
	struct panel_args a = { 0 };
	int rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	rc = parse_args(&a, argc, argv);
	if (rc == 0) {
		if (strcmp(argv[1], "init") == 0)
			rc = run_init(&a);
		else if (strcmp(argv[1], "leave") == 0)
			rc = run_leave(&a);
		else if (strcmp(argv[1], "show") == 0)
			rc = run_show(&a);
		else
			rc = cli_usage_error("panel", "'%s' is not init, leave or show", argv[1]);
	}
	for (size_t i = 0; i < a.n_members; i++)
		mm_verifier_free(a.members[i]);
	cli_signers_free(&a.signers);
	return rc < 0 ? CLI_EXIT_OK : rc;
}
