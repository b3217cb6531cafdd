/*
 * mamori.conf splitter (see config.h). The file is read whole and cut into
 * entries in place, so every string an entry points to lives in one buffer
 * owned by the config.
 */
#include "mamori/config.h"

#include "mamori/status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A configuration is written by people: anything bigger is a mistake. */
#define CONFIG_MAX_BYTES (4u << 20)
#define CONFIG_MAX_ENTRIES 65536

struct mm_config {
	char *file;
	char *text; /* the file's bytes, cut into NUL-terminated pieces */
	struct mm_config_entry *entries;
	size_t n, cap;
};

static char *trim(char *s, char *end)
{
	while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*end = '\0';
	return s;
}

static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
	       c == '-' || c == '.';
}

static bool is_name(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_name_char(*s))
			return false;
	return true;
}

/* Cuts a comment that starts a line or follows white space ("a = b # note"). */
static void cut_comment(char *s, char *end)
{
	for (char *p = s; p < end; p++)
		if ((*p == '#' || *p == ';') && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
}

static int add_entry(struct mm_config *c, const struct mm_config_entry *e)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 32;
		struct mm_config_entry *p;

		if (cap > CONFIG_MAX_ENTRIES)
			return mm_fail(MM_ELIMIT, "%s:%u: more than %u settings", c->file, e->line,
				       CONFIG_MAX_ENTRIES);
		p = realloc(c->entries, cap * sizeof(*p));
		if (!p)
			return mm_fail(MM_ENOMEM, "config: out of memory");
		c->entries = p;
		c->cap = cap;
	}
	c->entries[c->n++] = *e;
	return 0;
}

/* "[section]" or "[section name]"; the line has no comment left. */
static int parse_header(struct mm_config *c, char *s, unsigned line, const char **section, const char **name)
{
	char *end = s + strlen(s), *close = strchr(s, ']'), *sp;

	if (!close || trim(close + 1, end)[0] != '\0')
		return mm_fail(MM_EFORMAT, "%s:%u: section header needs a closing ']' at the end", c->file, line);
	s = trim(s + 1, close);
	sp = strpbrk(s, " \t");
	*name = "";
	if (sp) {
		*sp = '\0';
		*name = trim(sp + 1, sp + 1 + strlen(sp + 1));
		if (!is_name(*name))
			return mm_fail(MM_EFORMAT, "%s:%u: section name '%s' may hold only letters, digits, '_', '-' and '.'",
				       c->file, line, *name);
	}
	if (!is_name(s))
		return mm_fail(MM_EFORMAT, "%s:%u: section '%s' may hold only letters, digits, '_', '-' and '.'",
			       c->file, line, s);
	*section = s;
	return 0;
}

int mm_config_parse(const char *text, size_t len, const char *file, struct mm_config **out)
{
	struct mm_config *c = calloc(1, sizeof(*c));
	const char *section = "", *name = "";
	unsigned line = 0;
	char *p, *end;
	int rc = MM_ENOMEM;

	*out = NULL;
	if (!c)
		return mm_fail(MM_ENOMEM, "config: out of memory");
	c->file = strdup(file ? file : "<config>");
	c->text = malloc(len + 1);
	if (!c->file || !c->text) {
		mm_fail(rc, "config: out of memory");
		goto fail;
	}
	memcpy(c->text, text, len);
	c->text[len] = '\0';
	for (p = c->text, end = c->text + len; p < end; p++) {
		char *eol = memchr(p, '\n', (size_t)(end - p)), *s, *eq;

		if (!eol)
			eol = end;
		line++;
		*eol = '\0';
		if (memchr(p, '\0', (size_t)(eol - p))) {
			rc = mm_fail(MM_EFORMAT, "%s:%u: NUL byte in a text file", c->file, line);
			goto fail;
		}
		cut_comment(p, eol);
		s = trim(p, p + strlen(p));
		p = eol;
		if (!*s)
			continue;
		if (*s == '[') {
			if ((rc = parse_header(c, s, line, &section, &name)) != 0)
				goto fail;
			continue;
		}
		eq = strchr(s, '=');
		if (!eq) {
			rc = mm_fail(MM_EFORMAT, "%s:%u: expected 'key = value' or '[section]', got '%.40s'",
				     c->file, line, s);
			goto fail;
		}
		*eq = '\0';
		struct mm_config_entry e = {
			.section = section, .name = name, .key = trim(s, eq),
			.value = trim(eq + 1, eq + 1 + strlen(eq + 1)), .line = line,
		};
		if (!is_name(e.key)) {
			rc = mm_fail(MM_EFORMAT, "%s:%u: key '%s' may hold only letters, digits, '_', '-' and '.'",
				     c->file, line, e.key);
			goto fail;
		}
		if ((rc = add_entry(c, &e)) != 0)
			goto fail;
	}
	*out = c;
	return 0;
fail:
	mm_config_free(c);
	return rc;
}

int mm_config_load(const char *path, struct mm_config **out)
{
	FILE *fp = fopen(path, "rb");
	struct stat st;
	char *buf = NULL;
	size_t len;
	int rc;

	*out = NULL;
	if (!fp)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "config: %s: %s", path, strerror(errno));
	if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(fp);
		return mm_fail(MM_EIO, "config: %s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > CONFIG_MAX_BYTES) {
		fclose(fp);
		return mm_fail(MM_ELIMIT, "config: %s: larger than %u bytes", path, CONFIG_MAX_BYTES);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		fclose(fp);
		return mm_fail(MM_ENOMEM, "config: out of memory");
	}
	len = fread(buf, 1, (size_t)st.st_size, fp);
	rc = ferror(fp) ? mm_fail(MM_EIO, "config: %s: read failed", path) : 0;
	fclose(fp);
	if (rc == 0)
		rc = mm_config_parse(buf, len, path, out);
	free(buf);
	return rc;
}

int mm_config_find(const char *explicit_path, const char *data_dir, struct mm_config **out)
{
	const char *env = getenv("MAMORI_CONF");
	char path[4096];
	struct stat st;

	*out = NULL;
	if (explicit_path)
		return mm_config_load(explicit_path, out);
	if (env && *env)
		return mm_config_load(env, out);
	if (!data_dir)
		return 0;
	if ((size_t)snprintf(path, sizeof(path), "%s/mamori.conf", data_dir) >= sizeof(path))
		return mm_fail(MM_EINVAL, "config: data directory path too long");
	if (stat(path, &st) != 0)
		return 0;
	return mm_config_load(path, out);
}

void mm_config_free(struct mm_config *c)
{
	if (!c)
		return;
	free(c->file);
	free(c->text);
	free(c->entries);
	free(c);
}

const char *mm_config_file(const struct mm_config *c)
{
	return c->file;
}

size_t mm_config_count(const struct mm_config *c)
{
	return c ? c->n : 0;
}

const struct mm_config_entry *mm_config_at(const struct mm_config *c, size_t i)
{
	return i < c->n ? &c->entries[i] : NULL;
}

int mm_config_fail(const struct mm_config *c, const struct mm_config_entry *e, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return mm_fail(status, "%s:%u: [%s%s%s] %s: %s", c->file, e->line, e->section, *e->name ? " " : "",
		       e->name, e->key, msg);
}
