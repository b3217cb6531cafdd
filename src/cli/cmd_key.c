/*
 * `mamori key gen`: an Ed25519 key pair for a panel member, requester or
 * witness, in the C2SP signed-note encodings (keys.h). A thin face over
 * mm_key_create_files.
 */
#include "cli/cli.h"

#include "mamori/keys.h"
#include "mamori/status.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage_text[] =
	"NAME\n"
	"    mamori key - create Ed25519 keys for the oversight panel\n"
	"\n"
	"SYNOPSIS\n"
	"    mamori key gen --name NAME -o PREFIX\n"
	"\n"
	"DESCRIPTION\n"
	"    Creates PREFIX.key (the private key, mode 0600, never overwritten) and\n"
	"    PREFIX.pub (the verifier key to hand to the panel). Both are one line\n"
	"    in the C2SP signed-note encodings. NAME is how signatures and audit\n"
	"    entries name the key holder: printable ASCII, no space or '+'. A\n"
	"    requester's identity in an authorization is matched against these\n"
	"    names, so a member can never approve their own request.\n"
	"    See docs/oversight.md.\n"
	"\n"
	"OPTIONS\n"
	"    --name NAME     the key holder's name\n"
	"    -o PREFIX       where to write PREFIX.key and PREFIX.pub\n"
	"    -h, --help      show this text\n"
	"\n"
	"EXIT STATUS\n"
	"    0 created; 1 usage error; 2 bad name; 3 a file exists or I/O error\n"
	"\n"
	"EXAMPLES\n"
	"    mamori key gen --name alice -o keys/alice\n";

enum { OPT_NAME = 256 };

static const struct option long_options[] = {
	{ "name", required_argument, NULL, OPT_NAME },
	{ "output", required_argument, NULL, 'o' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

int cmd_key(int argc, char **argv)
{
	const char *name = NULL, *prefix = NULL;
	char priv[4096], pub[4096];
	int opt, rc;

	optind = 1;
	opterr = 0;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "gen") != 0)
		return cli_usage_error("key", "'%s' is not a key subcommand (gen)", argv[1]);
	optind = 2;
	while ((opt = getopt_long(argc, argv, ":o:h", long_options, NULL)) != -1) {
		switch (opt) {
		case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
		case OPT_NAME: name = optarg; break;
		case 'o': prefix = optarg; break;
		case ':': return cli_usage_error("key", "option '%s' needs a value", argv[optind - 1]);
		default: return cli_usage_error("key", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (!name || !prefix || optind < argc)
		return cli_usage_error("key", "give --name NAME and -o PREFIX");
	if ((size_t)snprintf(priv, sizeof(priv), "%s.key", prefix) >= sizeof(priv) ||
	    (size_t)snprintf(pub, sizeof(pub), "%s.pub", prefix) >= sizeof(pub))
		return cli_usage_error("key", "-o: path too long");
	rc = mm_key_create_files(name, priv, pub);
	if (rc)
		return cli_fail("key", rc);
	printf("%s\n%s\n", priv, pub);
	return CLI_EXIT_OK;
}
