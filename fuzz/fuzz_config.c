/*
 * libFuzzer target: mamori.conf. Any bytes either split into entries or
 * fail with a message; the entries then go through the policy's reader,
 * which accepts or refuses each without fault. Every entry's strings must
 * lie within the text it came from, and line numbers never go backwards.
 */
#include "mamori/config.h"
#include "mamori/policy.h"
#include "mamori/status.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mm_config *conf = NULL;
	struct mm_policy_config cfg;
	unsigned last_line = 0;

	if (mm_config_parse((const char *)data, size, "fuzz.conf", &conf) != 0) {
		MM_BUG(conf != NULL);
		MM_BUG(mm_last_error()[0] == '\0');
		return 0;
	}
	for (size_t i = 0; i < mm_config_count(conf); i++) {
		const struct mm_config_entry *e = mm_config_at(conf, i);

		MM_BUG(e->line < last_line || e->line == 0);
		last_line = e->line;
		MM_BUG(strlen(e->key) == 0 || strlen(e->key) > size || strlen(e->value) > size);
	}
	mm_policy_config_init(&cfg);
	(void)mm_policy_config_load(&cfg, conf);
	mm_policy_config_free(&cfg);
	mm_config_free(conf);
	return 0;
}
