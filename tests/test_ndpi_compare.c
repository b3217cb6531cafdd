/*
 * The meter against nDPI's ndpiReader: for every capture under
 * shared/data/ndpi/ with its .out baseline, each flow line nDPI printed
 * must be found among mamori's flows by its 5-tuple (either orientation)
 * with the same packet count each way. nDPI's byte counts are frame bytes
 * and are not compared. Differences are listed and explained in
 * docs/zeek-compat.md (section on nDPI).
 */
#include "test_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_ADDR 64

struct endpoint {
	char addr[TEXT_ADDR]; /* canonical inet_ntop form */
	unsigned port;
	bool has_port;
};

struct ndpi_flow {
	unsigned proto, vlan;
	struct endpoint a, b; /* nDPI's orientation: a is its client */
	unsigned long long a_pkts, b_pkts;
};

struct our_flow {
	struct endpoint src, dst;
	unsigned proto, vlan;
	unsigned long long fwd_pkts, rev_pkts;
	bool tunnel; /* carries encapsulated traffic */
	bool used;
};

struct totals {
	size_t ndpi, matched, extra, extra_not_tunnel;
};

static bool canonical_addr(const char *text, char out[TEXT_ADDR])
{
	unsigned char bin[16];

	if (inet_pton(AF_INET, text, bin) == 1)
		return inet_ntop(AF_INET, bin, out, TEXT_ADDR) != NULL;
	if (inet_pton(AF_INET6, text, bin) == 1)
		return inet_ntop(AF_INET6, bin, out, TEXT_ADDR) != NULL;
	return false;
}

/* "1.2.3.4:80", "[2001:db8::1]:443" or a bare address. */
static bool parse_endpoint(const char *tok, struct endpoint *e)
{
	char addr[TEXT_ADDR];
	const char *colon;

	e->has_port = false;
	e->port = 0;
	if (tok[0] == '[') {
		const char *close = strchr(tok, ']');

		if (!close || (size_t)(close - tok - 1) >= sizeof(addr))
			return false;
		snprintf(addr, sizeof(addr), "%.*s", (int)(close - tok - 1), tok + 1);
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = strrchr(tok, ':');
		snprintf(addr, sizeof(addr), "%.*s", colon ? (int)(colon - tok) : (int)strlen(tok), tok);
	}
	if (colon) {
		e->port = (unsigned)strtoul(colon + 1, NULL, 10);
		e->has_port = true;
	}
	return canonical_addr(addr, e->addr);
}

static bool ndpi_proto(const char *name, unsigned *out)
{
	static const struct {
		const char *name;
		unsigned number;
	} names[] = { { "TCP", 6 }, { "UDP", 17 }, { "ICMP", 1 }, { "ICMPV6", 58 }, { "SCTP", 132 } };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i].name) == 0) {
			*out = names[i].number;
			return true;
		}
	}
	return false;
}

/*
 * One flow line of a .out file (MANIFEST.md §2):
 * "\tN\tPROTO A <-> B [VLAN: v][proto: …]…[P pkts/B bytes <-> P pkts/B bytes]…".
 * Returns false for the other lines (counters, totals, host lists).
 */
static bool parse_ndpi_line(const char *line, struct ndpi_flow *f)
{
	char proto[16], a[128], arrow[4], b[128];
	const char *counts, *vlan;
	unsigned idx;

	if (sscanf(line, " %u %15s %127s %3s %127s", &idx, proto, a, arrow, b) != 5)
		return false;
	if (strcmp(arrow, "->") != 0 && strcmp(arrow, "<->") != 0)
		return false;
	if (!ndpi_proto(proto, &f->proto) || !parse_endpoint(a, &f->a) || !parse_endpoint(b, &f->b))
		return false;
	counts = strstr(line, " pkts/");
	while (counts && counts > line && counts[-1] != '[')
		counts--;
	if (!counts || sscanf(counts, "%llu pkts/%*u bytes %*s %llu pkts/", &f->a_pkts, &f->b_pkts) != 2)
		return false;
	vlan = strstr(line, "[VLAN: ");
	f->vlan = vlan ? (unsigned)strtoul(vlan + 7, NULL, 10) : 0;
	return true;
}

static size_t load_ndpi(const char *path, struct ndpi_flow **out)
{
	char *text = tu_read_file(path, NULL), *save = NULL;
	size_t n = 0, cap = 0;
	struct ndpi_flow *flows = NULL, f;

	cr_assert_not_null(text, "cannot read %s", path);
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!parse_ndpi_line(line, &f))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			flows = realloc(flows, cap * sizeof(*flows));
		}
		flows[n++] = f;
	}
	free(text);
	*out = flows;
	return n;
}

static void json_endpoint(json_t *o, const char *addr_key, const char *port_key, struct endpoint *e)
{
	const char *addr = json_string_value(json_object_get(o, addr_key));

	cr_assert_not_null(addr, "ndjson record without %s", addr_key);
	snprintf(e->addr, sizeof(e->addr), "%s", addr);
	e->port = (unsigned)json_integer_value(json_object_get(o, port_key));
	e->has_port = true;
}

static bool has_flag(json_t *flags, const char *name)
{
	for (size_t i = 0; i < json_array_size(flags); i++)
		if (strcmp(json_string_value(json_array_get(flags, i)), name) == 0)
			return true;
	return false;
}

/*
 * Meters path with timeouts long enough that no flow is split by
 * inactivity: ndpiReader keeps one flow per 5-tuple for a whole capture.
 */
static size_t meter_file(const char *path, struct our_flow **out)
{
	const char *argv[] = { tu_mamori_bin(), "meter", "--format", "ndjson", "-q",
			       "--idle-timeout", "all=7d", "--active-timeout", "0", path, NULL };
	char *text, *err, *save = NULL;
	size_t n = 0, cap = 0;
	struct our_flow *flows = NULL;
	int rc = tu_run(argv, NULL, &text, &err);

	cr_assert_eq(rc, 0, "mamori meter %s: exit %d: %s", path, rc, err);
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_error_t jerr;
		json_t *o = json_loads(line, 0, &jerr);
		struct our_flow *f;

		cr_assert_not_null(o, "%s: %s", jerr.text, line);
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			flows = realloc(flows, cap * sizeof(*flows));
		}
		f = &flows[n++];
		memset(f, 0, sizeof(*f));
		json_endpoint(o, "src", "src_port", &f->src);
		json_endpoint(o, "dst", "dst_port", &f->dst);
		f->proto = (unsigned)json_integer_value(json_object_get(o, "proto"));
		f->vlan = (unsigned)json_integer_value(json_object_get(o, "vlan"));
		f->fwd_pkts = (unsigned long long)json_integer_value(json_object_get(o, "fwd_packets"));
		f->rev_pkts = (unsigned long long)json_integer_value(json_object_get(o, "rev_packets"));
		f->tunnel = has_flag(json_object_get(o, "flags"), "tunnel");
		json_decref(o);
	}
	free(text);
	free(err);
	*out = flows;
	return n;
}

static bool same_endpoint(const struct endpoint *ndpi, const struct endpoint *ours)
{
	return strcmp(ndpi->addr, ours->addr) == 0 && (!ndpi->has_port || ndpi->port == ours->port);
}

/* 1: ours is nDPI's orientation, -1: reversed, 0: another flow. */
static int orientation(const struct ndpi_flow *n, const struct our_flow *o)
{
	if (n->proto != o->proto)
		return 0;
	if (same_endpoint(&n->a, &o->src) && same_endpoint(&n->b, &o->dst))
		return 1;
	if (same_endpoint(&n->b, &o->src) && same_endpoint(&n->a, &o->dst))
		return -1;
	return 0;
}

/*
 * Sums our flows of n's 5-tuple in n's orientation (a meter may split what
 * nDPI keeps as one, e.g. at a TCP close). Several VLANs: nDPI keeps them
 * apart too, so only ours of its VLAN count when there are any.
 */
static bool sum_ours(const struct ndpi_flow *n, struct our_flow *ours, size_t n_ours,
		     unsigned long long *a_pkts, unsigned long long *b_pkts)
{
	bool vlan_seen = false, found = false;

	for (size_t i = 0; i < n_ours; i++)
		vlan_seen |= orientation(n, &ours[i]) != 0 && ours[i].vlan == n->vlan;
	*a_pkts = *b_pkts = 0;
	for (size_t i = 0; i < n_ours; i++) {
		int dir = orientation(n, &ours[i]);

		if (dir == 0 || (vlan_seen && ours[i].vlan != n->vlan))
			continue;
		found = true;
		ours[i].used = true;
		*a_pkts += dir > 0 ? ours[i].fwd_pkts : ours[i].rev_pkts;
		*b_pkts += dir > 0 ? ours[i].rev_pkts : ours[i].fwd_pkts;
	}
	return found;
}

static void print_endpoint(const struct endpoint *e)
{
	printf(strchr(e->addr, ':') ? "[%s]" : "%s", e->addr);
	if (e->has_port)
		printf(":%u", e->port);
}

static void compare_capture(const char *name, const char *pcap, const char *out_path,
			    struct totals *t)
{
	struct ndpi_flow *nd;
	struct our_flow *ours;
	size_t n_nd = load_ndpi(out_path, &nd), n_ours = meter_file(pcap, &ours);
	size_t matched = 0, extra = 0, extra_not_tunnel = 0;

	for (size_t i = 0; i < n_nd; i++) {
		unsigned long long a, b;
		bool found = sum_ours(&nd[i], ours, n_ours, &a, &b);

		if (found && a == nd[i].a_pkts && b == nd[i].b_pkts) {
			matched++;
			continue;
		}
		printf("  MISMATCH %s: proto %u vlan %u ", name, nd[i].proto, nd[i].vlan);
		print_endpoint(&nd[i].a);
		printf(" <-> ");
		print_endpoint(&nd[i].b);
		if (found)
			printf(": packets nDPI %llu/%llu, mamori %llu/%llu\n", nd[i].a_pkts,
			       nd[i].b_pkts, a, b);
		else
			printf(": nDPI %llu/%llu packets, no such flow in mamori's output\n",
			       nd[i].a_pkts, nd[i].b_pkts);
	}
	for (size_t i = 0; i < n_ours; i++) {
		if (ours[i].used)
			continue;
		extra++;
		extra_not_tunnel += !ours[i].tunnel;
		printf("  EXTRA    %s: %s proto %u vlan %u ", name,
		       ours[i].tunnel ? "tunnel flow" : "flow", ours[i].proto, ours[i].vlan);
		print_endpoint(&ours[i].src);
		printf(" -> ");
		print_endpoint(&ours[i].dst);
		printf(" (%llu/%llu packets) is not in nDPI's output\n", ours[i].fwd_pkts,
		       ours[i].rev_pkts);
	}
	printf("  %-28s %5zu %8zu %6zu\n", name, n_nd, matched, extra);
	t->ndpi += n_nd;
	t->matched += matched;
	t->extra += extra;
	t->extra_not_tunnel += extra_not_tunnel;
	free(nd);
	free(ours);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

Test(ndpi_compare, flows_and_packet_counts_match_ndpi, .timeout = 300)
{
	TU_REQUIRE_SHARED(root, "ndpi");
	DIR *d = opendir(root);
	struct dirent *e;
	char *names[256];
	size_t n = 0;
	struct totals t = { 0 };

	cr_assert_not_null(d);
	while ((e = readdir(d)) && n < 256) {
		size_t len = strlen(e->d_name);

		/* Captures are the files that have a NAME.out beside them. */
		if (len > 4 && strcmp(e->d_name + len - 4, ".out") == 0)
			names[n++] = strndup(e->d_name, len - 4);
	}
	closedir(d);
	cr_assert_gt(n, 0, "no nDPI baselines under %s", root);
	qsort(names, n, sizeof(*names), cmp_names);

	printf("nDPI comparison (5-tuple either way; packets each way)\n");
	printf("  %-28s %5s %8s %6s\n", "capture", "ndpi", "matched", "extra");
	for (size_t i = 0; i < n; i++) {
		char pcap[1024], out_path[1100];

		snprintf(pcap, sizeof(pcap), "%s/%s", root, names[i]);
		snprintf(out_path, sizeof(out_path), "%s.out", pcap);
		compare_capture(names[i], pcap, out_path, &t);
		free(names[i]);
	}
	printf("overall: %zu of %zu nDPI flows matched (%.1f%%); %zu extra mamori flows\n",
	       t.matched, t.ndpi, t.ndpi ? 100.0 * (double)t.matched / (double)t.ndpi : 0.0, t.extra);
	fflush(stdout);
	cr_assert_gt(t.ndpi, 0);
	cr_assert_geq(t.matched * 100, t.ndpi * 99, "only %zu of %zu nDPI flows matched", t.matched,
		      t.ndpi);
	/* ndpiReader reports only the innermost flow of tunnelled traffic: the
	 * outer, tunnel flows are the only ones it may lack. */
	cr_assert_eq(t.extra_not_tunnel, 0, "%zu extra flows are not tunnel flows",
		     t.extra_not_tunnel);
	free(root);
}
