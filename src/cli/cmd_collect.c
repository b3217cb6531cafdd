/* placeholder: being written */
#include "cli/cli.h"
int cmd_collect(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return CLI_EXIT_INTERNAL;
}
