/*
 * mamori.conf: one INI-style file for every module.
 *
 *   # comment              ; comment
 *   [jurisdiction]
 *   countries = JP
 *   [sensor tokyo-ix-1]    (a section may carry a name)
 *   id = 1
 *
 * This module only splits the file into entries and keeps where each came
 * from; the module that owns a section interprets its keys and refuses an
 * unknown one, quoting file:line (mm_config_fail). Keys may repeat (rules).
 *
 * Which file: --config FILE on a command, else $MAMORI_CONF, else
 * <data>/mamori.conf when it exists; none at all is a valid setup.
 */
#ifndef MAMORI_CONFIG_H
#define MAMORI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct mm_config_entry {
	const char *section; /* "jurisdiction"; "" before the first header */
	const char *name;    /* "tokyo-ix-1" for "[sensor tokyo-ix-1]"; "" when none */
	const char *key;
	const char *value;   /* trimmed; may be "" */
	unsigned line;
};

struct mm_config;

/* Reads and splits path. 0, MM_ENOENT, MM_EIO, or MM_EFORMAT naming file:line. */
int mm_config_load(const char *path, struct mm_config **out);

/* The same over text in memory; file names the text in messages. */
int mm_config_parse(const char *text, size_t len, const char *file, struct mm_config **out);

/*
 * The configuration a command uses: explicit (its --config, may be NULL),
 * else $MAMORI_CONF, else <data_dir>/mamori.conf if present. *out is NULL
 * (and 0 returned) when there is none.
 */
int mm_config_find(const char *explicit_path, const char *data_dir, struct mm_config **out);

void mm_config_free(struct mm_config *c);

const char *mm_config_file(const struct mm_config *c);
size_t mm_config_count(const struct mm_config *c);
const struct mm_config_entry *mm_config_at(const struct mm_config *c, size_t i);

/* Records "FILE:LINE: [section] key: <message>" and returns status. */
int mm_config_fail(const struct mm_config *c, const struct mm_config_entry *e, int status,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
