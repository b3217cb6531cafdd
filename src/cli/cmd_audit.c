/*
 * `mamori audit`: verify, show, prove, verify-proof, checkpoint, cosign and
 * report over the oversight audit log (docs/audit.md), each a thin face over
 * audit.h; verify-proof checks RFC 9162 proofs handed over by someone else,
 * with no log at all.
 */
#include "cli/cli.h"

#include "mamori/audit.h"
#include "mamori/keys.h"
#include "mamori/status.h"
#include "mamori/store.h"
#include "mamori/timefmt.h"
#include "oversight/merkle.h"
#include "oversight/note.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori audit - verify, inspect and prove the oversight audit log\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori audit verify [-R DIR] [--key FILE] [--witness FILE]...\n"
	"    mamori audit show [-R DIR] [--from N] [--to N]\n"
	"    mamori audit prove --entry N [--size N] [-R DIR]\n"
	"    mamori audit prove --consistency-from M [--size N] [-R DIR]\n"
	"    mamori audit verify-proof --inclusion --leaf-index I --tree-size N\n"
	"                              --leaf-hash B64 --root B64 --proof B64[,B64...]\n"
	"    mamori audit verify-proof --consistency --size1 M --size2 N\n"
	"                              --root1 B64 --root2 B64 --proof B64[,B64...]\n"
	"    mamori audit checkpoint [-R DIR]\n"
	"    mamori audit cosign --key FILE [-R DIR]\n"
	"    mamori audit report --from TIME --to TIME [-R DIR] [--format table|json]\n"
	"\n"
	"DESCRIPTION\n"
	"    Every guarded act is appended to an append-only log in DIR/audit/, hashed\n"
	"    into an RFC 9162 Merkle tree and covered by checkpoints in the C2SP\n"
	"    signed-note format, signed by the system key DIR/oversight/system.key\n"
	"    and optionally cosigned by panel members (docs/audit.md).\n"
	"\n"
	"    verify        Recomputes everything from the files alone: every record's\n"
	"                  framing and sequence, every leaf and node hash, the index,\n"
	"                  every checkpoint's signature and root (each earlier checkpoint\n"
	"                  must be a prefix of the log the latest one signs). The first\n"
	"                  problem is named with its entry index and byte offset.\n"
	"    show          Entries as NDJSON: {\"index\":N,\"entry\":{...}} per line.\n"
	"    prove         An inclusion proof of entry N (or a consistency proof from\n"
	"                  tree size M) in the tree of --size entries (default: the\n"
	"                  latest checkpoint's size), printed with the verify-proof\n"
	"                  command that checks it.\n"
	"    verify-proof  Checks a proof handed over by someone else; needs no log.\n"
	"    checkpoint    Signs a checkpoint of the log now and prints it.\n"
	"    cosign        Verifies the log, then adds a cosignature/v1 line by the\n"
	"                  private key FILE (a panel member as witness) to the latest\n"
	"                  checkpoint.\n"
	"    report        The oversight report from the log alone: acts per kind and\n"
	"                  legal basis (requests, approvals, denials, revocations...),\n"
	"                  re-identifications, measures, emergency uses and whether\n"
	"                  each was ratified, with the checkpoint it was computed at.\n"
	"\n"
	"OPTIONS\n"
	"    -R, --data DIR\n"
	"        The data directory. Default: $MAMORI_DATA, else ./mamori-data.\n"
	"    --key FILE\n"
	"        verify: the trusted verifier key of the log (default\n"
	"        DIR/oversight/system.pub; an auditor should bring their own copy).\n"
	"        cosign: the witness's private key file (mode 0600).\n"
	"    --witness FILE\n"
	"        verify: a witness verifier key; its cosignature on the latest\n"
	"        checkpoint is checked and counted (up to 16).\n"
	"    --from N, --to N\n"
	"        show: the first and last entry index (default: all).\n"
	"    --from TIME, --to TIME\n"
	"        report: the window [from, to) over the entries' \"time\" (RFC 3339,\n"
	"        @epoch, or relative like -30d).\n"
	"    --entry N, --consistency-from M, --size N\n"
	"        prove: the entry, the older tree size, the tree size.\n"
	"    --format table|json\n"
	"        report: lines for people (default) or one JSON document.\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   success; verify and verify-proof: valid\n"
	"    1   verify and verify-proof: invalid (the reason is printed); usage error\n"
	"    2   bad input (no log, malformed key file)\n"
	"    3   I/O or internal error\n"
	"\n"
	"EXAMPLES\n"
	"    mamori audit verify --key panel-copy-of-system.pub\n"
	"    mamori audit prove --entry 41\n"
	"    mamori audit report --from 2026-01-01 --to 2026-04-01\n";

enum {
	OPT_KEY = 256,
	OPT_WITNESS,
	OPT_FROM,
	OPT_TO,
	OPT_ENTRY,
	OPT_SIZE,
	OPT_CONSISTENCY_FROM,
	OPT_INCLUSION,
	OPT_CONSISTENCY,
	OPT_LEAF_INDEX,
	OPT_TREE_SIZE,
	OPT_LEAF_HASH,
	OPT_ROOT,
	OPT_PROOF,
	OPT_SIZE1,
	OPT_SIZE2,
	OPT_ROOT1,
	OPT_ROOT2,
	OPT_FORMAT,
};

static const struct option long_options[] = {
	{ "data", required_argument, NULL, 'R' },
	{ "key", required_argument, NULL, OPT_KEY },
	{ "witness", required_argument, NULL, OPT_WITNESS },
	{ "from", required_argument, NULL, OPT_FROM },
	{ "to", required_argument, NULL, OPT_TO },
	{ "entry", required_argument, NULL, OPT_ENTRY },
	{ "size", required_argument, NULL, OPT_SIZE },
	{ "consistency-from", required_argument, NULL, OPT_CONSISTENCY_FROM },
	{ "inclusion", no_argument, NULL, OPT_INCLUSION },
	{ "consistency", no_argument, NULL, OPT_CONSISTENCY },
	{ "leaf-index", required_argument, NULL, OPT_LEAF_INDEX },
	{ "tree-size", required_argument, NULL, OPT_TREE_SIZE },
	{ "leaf-hash", required_argument, NULL, OPT_LEAF_HASH },
	{ "root", required_argument, NULL, OPT_ROOT },
	{ "proof", required_argument, NULL, OPT_PROOF },
	{ "size1", required_argument, NULL, OPT_SIZE1 },
	{ "size2", required_argument, NULL, OPT_SIZE2 },
	{ "root1", required_argument, NULL, OPT_ROOT1 },
	{ "root2", required_argument, NULL, OPT_ROOT2 },
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

#define MAX_WITNESSES 16

/* Every option as given; each subcommand takes the ones it understands. */
struct audit_args {
	const char *dir;
	const char *key;
	const char *witness[MAX_WITNESSES];
	size_t n_witnesses;
	const char *from, *to, *entry, *size, *consistency_from;
	bool inclusion, consistency;
	const char *leaf_index, *tree_size, *leaf_hash, *root, *proof;
	const char *size1, *size2, *root1, *root2;
	const char *format;
};

static int parse_args(struct audit_args *a, int argc, char **argv)
{
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "R:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'R': a->dir = optarg; break;
		case OPT_KEY: a->key = optarg; break;
		case OPT_WITNESS:
			if (a->n_witnesses == MAX_WITNESSES)
				return cli_usage_error("audit", "at most %d --witness keys",
						       MAX_WITNESSES);
			a->witness[a->n_witnesses++] = optarg;
			break;
		case OPT_FROM: a->from = optarg; break;
		case OPT_TO: a->to = optarg; break;
		case OPT_ENTRY: a->entry = optarg; break;
		case OPT_SIZE: a->size = optarg; break;
		case OPT_CONSISTENCY_FROM: a->consistency_from = optarg; break;
		case OPT_INCLUSION: a->inclusion = true; break;
		case OPT_CONSISTENCY: a->consistency = true; break;
		case OPT_LEAF_INDEX: a->leaf_index = optarg; break;
		case OPT_TREE_SIZE: a->tree_size = optarg; break;
		case OPT_LEAF_HASH: a->leaf_hash = optarg; break;
		case OPT_ROOT: a->root = optarg; break;
		case OPT_PROOF: a->proof = optarg; break;
		case OPT_SIZE1: a->size1 = optarg; break;
		case OPT_SIZE2: a->size2 = optarg; break;
		case OPT_ROOT1: a->root1 = optarg; break;
		case OPT_ROOT2: a->root2 = optarg; break;
		case OPT_FORMAT: a->format = optarg; break;
		case 'h': fputs(usage_text, stdout); return -1;
		default: return CLI_EXIT_USAGE;
		}
	}
	return 0;
}

static int count_arg(const char *option, const char *text, uint64_t *out)
{
	return cli_parse_count("audit", option, text, 0, UINT64_MAX, out);
}

/* Invalid proof or log: the reason on stderr, exit 1 (the documented "invalid"). */
static int invalid(const char *what, const char *reason)
{
	fprintf(stderr, "mamori audit %s: INVALID: %s\n", what, reason);
	return 1;
}

static void print_b64(FILE *fp, const uint8_t *h)
{
	char b64[48];

	mm_base64_encode(h, MM_AUDIT_HASH_LEN, b64, sizeof(b64));
	fputs(b64, fp);
}

static void print_proof(FILE *fp, const uint8_t (*proof)[MM_AUDIT_HASH_LEN], size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			fputc(',', fp);
		print_b64(fp, proof[i]);
	}
}

/* ---- verify ---- */

static int run_verify(const struct audit_args *a)
{
	struct mm_verifier *key = NULL, *w[MAX_WITNESSES] = { 0 };
	struct mm_audit_verify_result res;
	int rc, exit_code;

	if (a->key && (rc = mm_verifier_load(a->key, &key)) < 0)
		return cli_fail("audit", rc);
	for (size_t i = 0; i < a->n_witnesses; i++)
		if ((rc = mm_verifier_load(a->witness[i], &w[i])) < 0) {
			exit_code = cli_fail("audit", rc);
			goto out;
		}
	rc = mm_audit_verify(a->dir, key, (const struct mm_verifier *const *)w, a->n_witnesses,
			     &res);
	if (rc < 0) {
		exit_code = cli_fail("audit", rc);
		goto out;
	}
	if (!res.ok) {
		exit_code = invalid("verify", res.problem);
		goto out;
	}
	printf("audit log %s/audit: valid\n", a->dir);
	printf("entries      %" PRIu64 "\n", res.n_entries);
	printf("root         ");
	print_b64(stdout, res.root);
	printf("\ncheckpoints  %" PRIu64 " checked; latest at size %" PRIu64 ", signed by %s\n",
	       res.n_checkpoints, res.checkpoint_size, a->key ? a->key : "system.pub");
	if (res.n_uncovered)
		printf("uncovered    %" PRIu64 " entries after the latest checkpoint (valid, not yet "
		       "signed)\n",
		       res.n_uncovered);
	if (a->n_witnesses)
		printf("cosignatures %" PRIu64 " of %zu witnesses\n", res.n_cosignatures,
		       a->n_witnesses);
	printf("sha-256      %s\n", res.sha_accelerated ? "SHA-NI" : "portable (libsodium)");
	exit_code = CLI_EXIT_OK;
out:
	mm_verifier_free(key);
	for (size_t i = 0; i < a->n_witnesses; i++)
		mm_verifier_free(w[i]);
	return exit_code;
}

/* ---- show ---- */

static int run_show(const struct audit_args *a)
{
	struct mm_audit_log *log = NULL;
	uint64_t from = 0, to = UINT64_MAX;
	int rc;

	if ((a->from && count_arg("--from", a->from, &from)) ||
	    (a->to && count_arg("--to", a->to, &to)))
		return CLI_EXIT_USAGE;
	rc = mm_audit_open_existing(a->dir, &log);
	if (rc < 0)
		return cli_fail("audit", rc);
	for (uint64_t i = from; i < mm_audit_size(log) && i <= to; i++) {
		char *json;
		rc = mm_audit_read(log, i, &json, NULL);
		if (rc < 0)
			break;
		printf("{\"index\":%" PRIu64 ",\"entry\":%s}\n", i, json);
		free(json);
		if (cli_stdout_reader_gone())
			break;
	}
	rc = rc < 0 ? cli_fail("audit", rc) : CLI_EXIT_OK;
	mm_audit_close(log);
	return rc;
}

/* ---- prove ---- */

/* The tree size to prove against: --size, else the latest checkpoint's, else the log's. */
static int proof_size(const struct audit_args *a, struct mm_audit_log *log, uint64_t *size)
{
	struct note note = { 0 };
	struct checkpoint cp;
	char *text = NULL;
	size_t len;

	if (a->size)
		return count_arg("--size", a->size, size);
	*size = mm_audit_size(log);
	if (mm_audit_latest_checkpoint(log, &text, &len) == 0 && note_parse(text, len, &note) == 0 &&
	    checkpoint_parse(note.text, note.text_len, &cp) == 0)
		*size = cp.size;
	note_free(&note);
	free(text);
	return 0;
}

static int run_prove(const struct audit_args *a)
{
	uint8_t proof[MM_AUDIT_PROOF_MAX][MM_AUDIT_HASH_LEN], root[MM_AUDIT_HASH_LEN];
	uint8_t other[MM_AUDIT_HASH_LEN];
	struct mm_audit_log *log = NULL;
	uint64_t entry = 0, m = 0, size = 0;
	size_t n = 0;
	int rc;

	if (!a->entry == !a->consistency_from)
		return cli_usage_error("audit", "prove: give --entry N or --consistency-from M");
	if ((a->entry && count_arg("--entry", a->entry, &entry)) ||
	    (a->consistency_from && count_arg("--consistency-from", a->consistency_from, &m)))
		return CLI_EXIT_USAGE;
	rc = mm_audit_open_existing(a->dir, &log);
	if (rc < 0)
		return cli_fail("audit", rc);
	if (proof_size(a, log, &size)) {
		mm_audit_close(log);
		return CLI_EXIT_USAGE;
	}
	rc = mm_audit_root(log, size, root);
	if (rc == 0 && a->entry) {
		rc = mm_audit_leaf_hash(log, entry, other);
		if (rc == 0)
			rc = mm_audit_inclusion_proof(log, entry, size, proof, &n);
	} else if (rc == 0) {
		rc = mm_audit_root(log, m, other);
		if (rc == 0)
			rc = mm_audit_consistency_proof(log, m, size, proof, &n);
	}
	if (rc < 0) {
		rc = cli_fail("audit", rc);
		goto out;
	}
	if (a->entry) {
		printf("leaf-index %" PRIu64 "\ntree-size %" PRIu64 "\nleaf-hash ", entry, size);
		print_b64(stdout, other);
		printf("\nroot ");
		print_b64(stdout, root);
		printf("\nproof ");
		print_proof(stdout, (const uint8_t(*)[MM_AUDIT_HASH_LEN])proof, n);
		printf("\ncheck: mamori audit verify-proof --inclusion --leaf-index %" PRIu64
		       " --tree-size %" PRIu64 " --leaf-hash ",
		       entry, size);
		print_b64(stdout, other);
	} else {
		printf("size1 %" PRIu64 "\nsize2 %" PRIu64 "\nroot1 ", m, size);
		print_b64(stdout, other);
		printf("\nroot2 ");
		print_b64(stdout, root);
		printf("\nproof ");
		print_proof(stdout, (const uint8_t(*)[MM_AUDIT_HASH_LEN])proof, n);
		printf("\ncheck: mamori audit verify-proof --consistency --size1 %" PRIu64
		       " --size2 %" PRIu64 " --root1 ",
		       m, size);
		print_b64(stdout, other);
	}
	printf(a->entry ? " --root " : " --root2 ");
	print_b64(stdout, root);
	printf(" --proof '");
	print_proof(stdout, (const uint8_t(*)[MM_AUDIT_HASH_LEN])proof, n);
	printf("'\n");
	rc = CLI_EXIT_OK;
out:
	mm_audit_close(log);
	return rc;
}

/* ---- verify-proof ---- */

/* A 32-byte hash from base64; false (and the reason in why) otherwise. */
static bool hash_arg(const char *option, const char *text, uint8_t out[MM_AUDIT_HASH_LEN],
		     char *why, size_t why_len)
{
	if (text && mm_base64_decode(text, strlen(text), out, MM_AUDIT_HASH_LEN) == 0)
		return true;
	snprintf(why, why_len, "%s: %s is not the base64 of exactly 32 bytes", option,
		 text ? "the value" : "missing;");
	return false;
}

static bool proof_arg(const char *text, uint8_t (*proof)[MM_AUDIT_HASH_LEN], size_t *n, char *why,
		      size_t why_len)
{
	const char *p = text ? text : "";

	*n = 0;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (*n == MM_AUDIT_PROOF_MAX) {
			snprintf(why, why_len, "--proof: more than %d hashes", MM_AUDIT_PROOF_MAX);
			return false;
		}
		if (mm_base64_decode(p, len, proof[*n], MM_AUDIT_HASH_LEN) < 0) {
			snprintf(why, why_len,
				 "--proof: hash %zu is not the base64 of exactly 32 bytes", *n + 1);
			return false;
		}
		(*n)++;
		p += len + (comma != NULL);
		if (comma && !*p) {
			snprintf(why, why_len, "--proof: empty hash after the last comma");
			return false;
		}
	}
	return true;
}

static int run_verify_proof(const struct audit_args *a)
{
	uint8_t proof[MM_AUDIT_PROOF_MAX][MM_AUDIT_HASH_LEN], h1[MM_AUDIT_HASH_LEN],
		h2[MM_AUDIT_HASH_LEN];
	uint64_t x = 0, y = 0;
	char why[256];
	size_t n;
	int rc;

	if (a->inclusion == a->consistency)
		return cli_usage_error("audit", "verify-proof: give --inclusion or --consistency");
	if (a->inclusion) {
		if (!a->leaf_index || !a->tree_size)
			return cli_usage_error("audit", "verify-proof --inclusion needs --leaf-index "
							"and --tree-size");
		if (count_arg("--leaf-index", a->leaf_index, &x) ||
		    count_arg("--tree-size", a->tree_size, &y))
			return CLI_EXIT_USAGE;
		if (!hash_arg("--leaf-hash", a->leaf_hash, h1, why, sizeof(why)) ||
		    !hash_arg("--root", a->root, h2, why, sizeof(why)) ||
		    !proof_arg(a->proof, proof, &n, why, sizeof(why)))
			return invalid("verify-proof", why);
		rc = merkle_verify_inclusion(x, y, h1, (const uint8_t(*)[MERKLE_HASH_LEN])proof, n, h2);
	} else {
		if (!a->size1 || !a->size2)
			return cli_usage_error("audit", "verify-proof --consistency needs --size1 and "
							"--size2");
		if (count_arg("--size1", a->size1, &x) || count_arg("--size2", a->size2, &y))
			return CLI_EXIT_USAGE;
		if (!hash_arg("--root1", a->root1, h1, why, sizeof(why)) ||
		    !hash_arg("--root2", a->root2, h2, why, sizeof(why)) ||
		    !proof_arg(a->proof, proof, &n, why, sizeof(why)))
			return invalid("verify-proof", why);
		rc = merkle_verify_consistency(x, y, h1, h2, (const uint8_t(*)[MERKLE_HASH_LEN])proof,
					       n);
	}
	if (rc < 0)
		return invalid("verify-proof", mm_last_error());
	printf("valid %s proof (%zu hashes)\n", a->inclusion ? "inclusion" : "consistency", n);
	return CLI_EXIT_OK;
}

/* ---- checkpoint, cosign ---- */

static int run_checkpoint(const struct audit_args *a)
{
	struct mm_audit_log *log = NULL;
	char *note = NULL;
	size_t len;
	int rc;

	rc = mm_audit_open(a->dir, &log);
	if (rc == 0)
		rc = mm_audit_checkpoint(log);
	if (rc == 0)
		rc = mm_audit_latest_checkpoint(log, &note, &len);
	if (rc == 0)
		fwrite(note, 1, len, stdout);
	free(note);
	if (rc < 0) {
		int code = cli_fail("audit", rc);
		mm_audit_close(log);
		return code;
	}
	rc = mm_audit_close(log);
	return rc < 0 ? cli_fail("audit", rc) : CLI_EXIT_OK;
}

static int run_cosign(const struct audit_args *a)
{
	struct mm_audit_log *log = NULL;
	struct mm_signer *s = NULL;
	int rc;

	if (!a->key)
		return cli_usage_error("audit", "cosign: give --key FILE (the witness's private key)");
	rc = mm_signer_load(a->key, &s);
	if (rc == 0)
		rc = mm_audit_open(a->dir, &log);
	if (rc == 0)
		rc = mm_audit_checkpoint(log); /* the witness signs the newest tree */
	if (rc == 0)
		rc = mm_audit_cosign(log, s);
	if (rc == 0)
		printf("cosigned the checkpoint at size %" PRIu64 " as %s\n", mm_audit_size(log),
		       mm_signer_name(s));
	else
		rc = cli_fail("audit", rc);
	mm_audit_close(log);
	mm_signer_free(s);
	return rc;
}

/* ---- report ---- */

static int run_report(const struct audit_args *a)
{
	enum mm_audit_report_format fmt = MM_AUDIT_REPORT_TABLE;
	struct mm_audit_log *log = NULL;
	uint64_t from = 0, to = 0, now = mm_time_now_ns();
	int rc;

	if (!a->from || !a->to)
		return cli_usage_error("audit", "report: give --from TIME and --to TIME");
	if (mm_time_parse(a->from, now, &from) < 0 || mm_time_parse(a->to, now, &to) < 0)
		return cli_usage_error("audit", "report: --from/--to: not a time (RFC 3339, "
						"@epoch, or -30d)");
	if (a->format && strcmp(a->format, "json") == 0)
		fmt = MM_AUDIT_REPORT_JSON;
	else if (a->format && strcmp(a->format, "table") != 0)
		return cli_usage_error("audit", "--format: '%s' is not table or json", a->format);
	/* Sign the newest tree first, so the report covers every entry appended so far. */
	rc = mm_audit_open(a->dir, &log);
	if (rc == 0)
		rc = mm_audit_checkpoint(log);
	if (rc == 0)
		rc = mm_audit_report(log, from, to, fmt, stdout);
	if (rc < 0)
		rc = cli_fail("audit", rc);
	mm_audit_close(log);
	return rc;
}

int cmd_audit(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(const struct audit_args *a);
	} subcommands[] = {
		{ "verify", run_verify },
		{ "show", run_show },
		{ "prove", run_prove },
		{ "verify-proof", run_verify_proof },
		{ "checkpoint", run_checkpoint },
		{ "cosign", run_cosign },
		{ "report", run_report },
	};
	struct audit_args a = { 0 };
	int rc;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage_text, stdout);
		return CLI_EXIT_OK;
	}
	if (argc < 2)
		return cli_usage_error("audit", "give a subcommand: verify, show, prove, "
						"verify-proof, checkpoint, cosign or report");
	rc = parse_args(&a, argc - 1, argv + 1);
	if (rc)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (optind < argc - 1)
		return cli_usage_error("audit", "unexpected argument '%s'", argv[optind + 1]);
	if (!a.dir)
		a.dir = mm_store_default_dir();
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].run(&a);
	return cli_usage_error("audit", "'%s' is not a subcommand (see --help)", argv[1]);
}
