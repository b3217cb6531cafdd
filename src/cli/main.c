/*
 * mamori: one binary, git-style subcommands. This file only dispatches;
 * each subcommand lives in cmd_<name>.c.
 */
#include "cli/cli.h"

#include <string.h>

static const struct cli_command commands[] = {
	{ "meter", "meter flows from pcap/pcapng files or a live interface", cmd_meter },
	{ "collect", "collect NetFlow v5/v9 and IPFIX from exporters, files or captures", cmd_collect },
	{ "query", "filter and aggregate stored flows", cmd_query },
	{ "store", "stats, verify and expire the flow store", cmd_store },
	{ "intel", "import, list, match and remove threat-intelligence indicators", cmd_intel },
	{ "detect", "run the detectors over stored flows; evaluate against ground truth", cmd_detect },
	{ "alerts", "list stored alerts (table or NDJSON for SIEMs)", cmd_alerts },
	{ "key", "create Ed25519 keys for the oversight panel", cmd_key },
	{ "panel", "put the data directory under an oversight panel, or take it out", cmd_panel },
	{ "authz", "request, sign, show, list, revoke and ratify authorizations", cmd_authz },
	{ "audit", "verify, show and prove the oversight audit log; its report", cmd_audit },
	{ "geo", "build and query the country/AS-number table", cmd_geo },
	{ "cryptopan", "map addresses to prefix-preserving pseudonyms and back", cmd_cryptopan },
	{ "reidentify", "the domestic address behind a pseudonym (needs a reidentify authorization)", cmd_reidentify },
	{ "synth", "generate a deterministic synthetic capture", cmd_synth },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *fp)
{
	fprintf(fp, "usage: mamori [--version] [--help] COMMAND [ARGS...]\n\n"
		    "mamori watches border traffic as flow metadata, under oversight.\n\n"
		    "Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(fp, "\nRun 'mamori COMMAND --help' for a command's options.\n\n"
		    "Exit status: 0 success; 1 usage error; 2 bad input data; 3 I/O or internal error;\n"
		    "4 refused by oversight (no authorization covers the act).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
		printf("mamori %s\n", MAMORI_VERSION);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "mamori: '%s' is not a mamori command. See 'mamori --help'.\n", argv[1]);
	return CLI_EXIT_USAGE;
}
