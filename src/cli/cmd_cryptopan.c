/*
 * `mamori cryptopan`: the Crypto-PAn pseudonymisation that policy/ applies
 * at ingest, as a filter over addresses one per line, for operators and
 * tests; and the creation of its key file. A thin face over cryptopan.h.
 */
#include "cli/cli.h"

#include "mamori/cryptopan.h"
#include "mamori/status.h"

#include <getopt.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* Longest input line we take: far above any address text, so the cap only stops garbage. */
#define LINE_MAX_LEN 255

static const char usage_text[] =
	"NAME\n"
	"    mamori cryptopan - map addresses to their Crypto-PAn pseudonyms\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori cryptopan --key FILE < addresses > pseudonyms\n"
	"    mamori cryptopan --gen-key FILE\n"
	"\n"
	"DESCRIPTION\n"
	"    Reads IPv4 and IPv6 addresses from standard input, one per line, and\n"
	"    prints for each its pseudonym under the key in FILE: the same\n"
	"    prefix-preserving map (Crypto-PAn) that replaces domestic addresses\n"
	"    at ingest (docs/pseudonymisation.md). An IPv4 address gives an IPv4\n"
	"    address, an IPv6 address an IPv6 address. Spaces and tabs around an\n"
	"    address are ignored. Blank lines and lines starting with '#' are\n"
	"    copied unchanged, so output line N always answers input line N.\n"
	"\n"
	"    A line that is not an address is reported on standard error with its\n"
	"    line number and gives an empty output line (it is never echoed: it\n"
	"    may hold an address in the clear); the remaining lines are still\n"
	"    mapped, and the exit status is then 2.\n"
	"\n"
	"OPTIONS\n"
	"    -k, --key FILE\n"
	"        The key: 64 hex digits (32 bytes: AES-128 key, then pad). The file\n"
	"        must be a regular file of mode 0600 or stricter; a file that group\n"
	"        or others may read or write is refused.\n"
	"    --gen-key FILE\n"
	"        Create a new random key in FILE (mode 0600). An existing FILE is\n"
	"        never overwritten.\n"
	"    -h, --help\n"
	"        Show this text and exit.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   every line mapped (or the key was created)\n"
	"    1   usage error\n"
	"    2   some input line was not an address, or the key file is missing or\n"
	"        malformed\n"
	"    3   I/O error, a key file with a wider mode than 0600, or FILE exists\n"
	"        (--gen-key)\n"
	"\n"
	"EXAMPLES\n"
	"    mamori cryptopan --gen-key /etc/mamori/cryptopan.key\n"
	"    echo 192.0.2.1 | mamori cryptopan --key /etc/mamori/cryptopan.key\n"
	"\n"
	"SEE ALSO\n"
	"    The reverse map identifies people, so it is an act the oversight\n"
	"    rules authorize: 'mamori reidentify' does it, through the guard and\n"
	"    into the audit log. This command offers no way around that.\n";

enum long_only_option {
	OPT_GEN_KEY = 256,
};

static const struct option long_options[] = {
	{ "key", required_argument, NULL, 'k' },
	{ "gen-key", required_argument, NULL, OPT_GEN_KEY },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

struct cryptopan_args {
	const char *key_path;
	const char *gen_key_path;
};

static int parse_args(struct cryptopan_args *a, int argc, char **argv)
{
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":k:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'h': fputs(usage_text, stdout); return -1;
		case 'k': a->key_path = optarg; break;
		case OPT_GEN_KEY: a->gen_key_path = optarg; break;
		case ':': return cli_usage_error("cryptopan", "option '%s' needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return cli_usage_error("cryptopan", "unknown option '-%c'", optopt);
			return cli_usage_error("cryptopan", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return cli_usage_error("cryptopan", "unexpected argument '%s'", argv[optind]);
	if (a->gen_key_path && a->key_path)
		return cli_usage_error("cryptopan", "--gen-key takes no other option");
	if (!a->gen_key_path && !a->key_path)
		return cli_usage_error("cryptopan", "give --key FILE (or --gen-key FILE)");
	return 0;
}

/* Reads one line into buf (newline dropped). 1: a line; 0: end of input; -1: longer than the cap (consumed). */
static int read_line(FILE *in, char buf[LINE_MAX_LEN + 2])
{
	size_t len;
	int ch;

	if (!fgets(buf, LINE_MAX_LEN + 2, in))
		return 0;
	len = strlen(buf);
	if (len > 0 && buf[len - 1] == '\n') {
		buf[len - 1] = '\0';
		return 1;
	}
	if (len <= LINE_MAX_LEN)
		return 1; /* last line without a newline */
	while ((ch = fgetc(in)) != EOF && ch != '\n')
		;
	return -1;
}

/* Strips spaces, tabs and a CR around the text; returns its start. */
static char *trim(char *s)
{
	size_t len;

	while (*s == ' ' || *s == '\t')
		s++;
	len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		s[--len] = '\0';
	return s;
}

/* Maps stdin to stdout; returns the number of bad lines, or -1 after reporting an I/O error. */
static long map_lines(const struct mm_cryptopan *c)
{
	char buf[LINE_MAX_LEN + 2];
	unsigned long line_no = 0;
	long n_bad = 0;
	int got;

	while ((got = read_line(stdin, buf)) != 0) {
		char out[MM_ADDR_STRLEN];
		struct mm_addr a;
		char *text = trim(buf);

		line_no++;
		if (got < 0) {
			fprintf(stderr, "mamori cryptopan: <stdin>:%lu: line longer than %d bytes\n",
				line_no, LINE_MAX_LEN);
			n_bad++;
			text = "";
		} else if (text[0] == '\0' || text[0] == '#') {
			text = buf;
		} else if (mm_addr_parse(&a, text) != 0) {
			fprintf(stderr, "mamori cryptopan: <stdin>:%lu: not an IPv4 or IPv6 address\n",
				line_no);
			n_bad++;
			text = "";
		} else {
			mm_cryptopan_anonymize(c, &a, &a);
			text = mm_addr_format(&a, out);
		}
		if (puts(text) == EOF) {
			fprintf(stderr, "mamori cryptopan: <stdout>: write error\n");
			return -1;
		}
	}
	if (ferror(stdin)) {
		fprintf(stderr, "mamori cryptopan: <stdin>: read error after line %lu\n", line_no);
		return -1;
	}
	if (fflush(stdout) == EOF) {
		fprintf(stderr, "mamori cryptopan: <stdout>: write error\n");
		return -1;
	}
	return n_bad;
}

int cmd_cryptopan(int argc, char **argv)
{
	struct cryptopan_args a = { 0 };
	uint8_t key[MM_CRYPTOPAN_KEY_LEN];
	struct mm_cryptopan *c = NULL;
	long n_bad;
	int rc;

	rc = parse_args(&a, argc, argv);
	if (rc)
		return rc < 0 ? CLI_EXIT_OK : rc;
	if (a.gen_key_path) {
		rc = mm_cryptopan_key_generate(a.gen_key_path);
		if (rc < 0)
			return cli_fail("cryptopan", rc);
		fprintf(stderr, "mamori cryptopan: wrote a new key to %s (mode 0600)\n", a.gen_key_path);
		return CLI_EXIT_OK;
	}
	rc = mm_cryptopan_key_load(a.key_path, key);
	if (rc == 0)
		rc = mm_cryptopan_new(key, MM_CRYPTOPAN_AUTO, &c);
	sodium_memzero(key, sizeof(key));
	if (rc < 0)
		return cli_fail("cryptopan", rc);
	n_bad = map_lines(c);
	mm_cryptopan_free(c);
	if (n_bad < 0)
		return CLI_EXIT_INTERNAL;
	if (n_bad > 0) {
		fprintf(stderr, "mamori cryptopan: %ld bad line%s\n", n_bad, n_bad == 1 ? "" : "s");
		return CLI_EXIT_INPUT;
	}
	return CLI_EXIT_OK;
}
