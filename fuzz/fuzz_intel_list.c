/*
 * libFuzzer target: the line loaders (plain list, FireHOL, IPsum, and
 * format detection). The first byte picks the format. Every indicator a
 * loader accepts must be a valid prefix that formats and parses back to
 * itself, and the counts must add up. When the first byte is 4..7, the set
 * is also compiled (IPv4 run groups, run lists, nodes, tails) and the longest match at
 * every prefix boundary and its neighbours must equal a linear scan,
 * through the single and the batch call. Compiling maps the 64 MiB IPv6
 * table, ~1 s under ASan, so only one input in 64 pays for it.
 */
#include "intel/intel_int.h"
#include "mamori/intel.h"
#include "mamori/status.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* addr + d (d = -1, 0, 1), wrapping within 128 bits. */
static struct mm_addr addr_step(struct mm_addr a, int d)
{
	for (int i = 15; i >= 0 && d; i--) {
		a.b[i] = (uint8_t)(a.b[i] + d);
		if ((d > 0 && a.b[i] != 0) || (d < 0 && a.b[i] != 0xff))
			break;
	}
	return a;
}

/* The longest prefix of the set holding a (same family), by linear scan; -1 if none. */
static long naive_lpm(const struct mm_intel_set *set, const struct mm_addr *a)
{
	long best = -1;
	unsigned best_len = 0;

	for (size_t i = 0; i < mm_intel_set_count(set); i++) {
		struct mm_intel_indicator ind;

		mm_intel_set_get(set, i, &ind);
		if (ind.kind == MM_INTEL_PREFIX && mm_addr_is_v4(&ind.prefix.addr) == mm_addr_is_v4(a) &&
		    mm_prefix_contains(&ind.prefix, a) && (best < 0 || ind.prefix.len > best_len)) {
			best = (long)i;
			best_len = ind.prefix.len;
		}
	}
	return best;
}

static void check_hit(const struct mm_intel_set *set, const struct mm_intel_hit *hit, bool found, long want)
{
	struct mm_intel_indicator ind;

	MM_BUG(found != (want >= 0));
	if (want < 0)
		return;
	mm_intel_set_get(set, (size_t)want, &ind);
	MM_BUG(hit->prefix.len != ind.prefix.len || !mm_addr_eq(&hit->prefix.addr, &ind.prefix.addr));
}

/* Compiles the set and checks every prefix's first and last address and their neighbours. */
static void check_compiled(const struct mm_intel_set *set)
{
	enum { MAX_PROBES = 6 * 64 };
	static struct mm_addr probes[MAX_PROBES];
	static struct mm_intel_hit hits[MAX_PROBES];
	struct mm_intel_snap *snap;
	size_t n = 0;
	int fd = memfd_create("fuzz-intel", MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (intel_write_image(fd, set, 0, "fuzz") != 0 || intel_snap_map(fd, "fuzz", &snap) != 0) {
		close(fd);
		return;
	}
	close(fd);
	for (size_t i = 0; i < mm_intel_set_count(set) && n + 6 <= MAX_PROBES; i++) {
		struct mm_intel_indicator ind;
		struct mm_addr last;
		unsigned bits;

		mm_intel_set_get(set, i, &ind);
		if (ind.kind != MM_INTEL_PREFIX)
			continue;
		last = ind.prefix.addr;
		bits = mm_prefix_bits128(&ind.prefix);
		for (unsigned b = bits; b < 128; b++)
			last.b[b / 8] |= (uint8_t)(0x80u >> (b % 8));
		for (int d = -1; d <= 1; d++) {
			probes[n++] = addr_step(ind.prefix.addr, d);
			probes[n++] = addr_step(last, d);
		}
	}
	mm_intel_match_addrs(snap, probes, n, 0, hits);
	for (size_t i = 0; i < n; i++) {
		struct mm_intel_hit hit;
		long want = naive_lpm(set, &probes[i]);

		check_hit(set, &hit, mm_intel_match_addr(snap, &probes[i], 0, &hit) == 1, want);
		check_hit(set, &hits[i], hits[i].n != 0, want);
	}
	mm_intel_snap_put(snap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum mm_intel_format formats[] = { MM_INTEL_FMT_LIST, MM_INTEL_FMT_FIREHOL, MM_INTEL_FMT_IPSUM,
							 MM_INTEL_FMT_AUTO };
	struct mm_intel_defaults def = { .source = "fuzz", .confidence = 50 };
	struct mm_intel_load_stats st;
	struct mm_intel_set *set;

	if (size < 1 || mm_intel_set_new(&set) != 0)
		return 0;
	if (mm_intel_load_buf(set, "fuzz", (const char *)data + 1, size - 1, formats[data[0] % 4], &def, &st) == 0) {
		MM_BUG(st.n_loaded != mm_intel_set_count(set));
		MM_BUG(st.n_reports > MM_INTEL_REPORT_KEEP);
		for (size_t i = 0; i < mm_intel_set_count(set); i++) {
			struct mm_intel_indicator ind;
			struct mm_prefix back;
			char text[MM_PREFIX_STRLEN];

			mm_intel_set_get(set, i, &ind);
			if (ind.kind != MM_INTEL_PREFIX)
				continue;
			MM_BUG(ind.confidence > 100);
			MM_BUG(mm_prefix_parse(&back, mm_prefix_format(&ind.prefix, text), false) != 0);
			MM_BUG(back.len != ind.prefix.len || !mm_addr_eq(&back.addr, &ind.prefix.addr));
		}
		if ((data[0] & 0xfc) == 4 && mm_intel_set_count(set) > 0)
			check_compiled(set);
	}
	mm_intel_set_free(set);
	return 0;
}
