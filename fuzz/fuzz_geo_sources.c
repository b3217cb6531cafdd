/*
 * libFuzzer target for the geo table's inputs: the first byte picks what
 * the rest is (its low 7 bits mod 5). 0-2: an RIR statistics file, a CIDR
 * list or an iptoasn TSV, loaded and, when the top bit is set (compiling
 * is slow, so only then), compiled, reopened and looked up;
 * 3: a table file as is; 4: a table file re-sealed with a correct checksum,
 * so the structure checks (not just the checksum) face hostile layouts.
 * A crash, a read outside the table, or a table we wrote that will not
 * reopen is a bug; an error is not.
 */
#include "enrich/geo_int.h"
#include "mamori/enrich.h"
#include "mamori/status.h"

#include <sodium.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file path the loaders can open, without touching the disk. */
static int as_file(const uint8_t *data, size_t size, char path[64])
{
	int fd = memfd_create("fuzz-geo", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (size && write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return -1;
	}
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

/* Lookups at addresses taken from the input, both families. */
static void probe(const struct mm_geo *g, const uint8_t *data, size_t size)
{
	volatile uint32_t sink = 0;

	for (size_t i = 0; i + 16 <= size && i < 4096; i += 16) {
		struct mm_geo_answer ans;
		struct mm_addr a;

		memcpy(a.b, data + i, 16);
		mm_geo_lookup(g, &a, &ans);
		sink ^= ans.asn ^ (uint8_t)ans.country[0];
		mm_addr_set_v4(&a, data + i);
		mm_geo_lookup(g, &a, &ans);
		sink ^= ans.asn ^ (uint8_t)ans.country[1];
		if (ans.country_source)
			sink ^= (uint8_t)ans.country_source[0];
	}
	(void)sink;
}

static char table[64], table_dir[64];

static void remove_table(void)
{
	unlink(table);
	rmdir(table_dir);
}

static void load_and_compile(uint8_t mode, bool compile, const char *path, const uint8_t *data, size_t size)
{
	struct mm_geo_builder *b = NULL;
	struct mm_geo *g = NULL;
	int rc;

	if (!table[0]) {
		/* tmpfs where there is one: the writer's fsync then costs nothing. */
		char shm[] = "/dev/shm/fuzz-geo-XXXXXX", tmp[] = "/tmp/fuzz-geo-XXXXXX";
		const char *dir = mkdtemp(shm);

		if (!dir && !(dir = mkdtemp(tmp)))
			return;
		snprintf(table_dir, sizeof(table_dir), "%s", dir);
		snprintf(table, sizeof(table), "%s/geo.table", dir);
		atexit(remove_table);
	}
	if (mm_geo_builder_new(NULL, NULL, &b) < 0)
		return;
	if (mode == 0)
		rc = mm_geo_builder_add_rir(b, path, NULL);
	else if (mode == 1)
		rc = mm_geo_builder_add_cidr_list(b, path, "JP", NULL);
	else
		rc = mm_geo_builder_add_asn_tsv(b, path, NULL);
	if (rc == 0 && compile && mm_geo_builder_write(b, table, NULL) == 0) {
		MM_BUG(mm_geo_open(table, &g) != 0);
		probe(g, data, size);
		mm_geo_close(g);
	}
	mm_geo_builder_free(b);
}

static void open_table(const char *path, const uint8_t *data, size_t size)
{
	struct mm_geo *g = NULL;

	if (mm_geo_open(path, &g) == 0) {
		probe(g, data, size);
		mm_geo_close(g);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	uint8_t mode, *copy;
	bool compile;
	int fd;

	if (size < 1)
		return 0;
	mode = (data[0] & 0x7f) % 5;
	compile = data[0] & 0x80;
	data++;
	size--;
	if (mode == 4 && size >= sizeof(struct geo_header)) {
		struct geo_header h;

		copy = malloc(size);
		if (!copy || sodium_init() < 0) {
			free(copy);
			return 0;
		}
		memcpy(copy, data, size);
		memcpy(&h, copy, sizeof(h));
		geo_checksum(copy, size, h.checksum);
		memcpy(copy, &h, sizeof(h));
		fd = as_file(copy, size, path);
		free(copy);
	} else {
		fd = as_file(data, size, path);
	}
	if (fd < 0)
		return 0;
	if (mode <= 2)
		load_and_compile(mode, compile, path, data, size);
	else
		open_table(path, data, size);
	close(fd);
	mm_clear_error();
	return 0;
}
