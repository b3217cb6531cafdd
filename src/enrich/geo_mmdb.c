/*
 * MaxMind DB files as a geo table source. libmaxminddb answers one address
 * at a time; to compile a table we need every network instead, so this
 * walks the database's binary search tree with MMDB_read_node and reads
 * each data record once per network. In an IPv6 database the IPv4 space
 * is the subtree at ::/96, which MaxMind also links from ::ffff:0:0/96,
 * 2001::/32 and 2002::/16; those aliases are skipped so IPv4 is taken once.
 */
#include "enrich/geo_int.h"

#include "mamori/status.h"

#include <errno.h>
#include <maxminddb.h>
#include <stdio.h>
#include <string.h>

struct mmdb_walk {
	MMDB_s db;
	struct geo_load *l;
	unsigned bits;       /* 32 or 128 */
	uint32_t ipv4_node;  /* root of the IPv4 subtree; UINT32_MAX if none */
	uint64_t n_visits;   /* a tree visits each node once; more means a cycle */
};

static void set_bit(struct mm_addr *a, unsigned i)
{
	a->b[i / 8] |= (uint8_t)(0x80u >> (i % 8));
}

static bool top_bits_zero(const struct mm_addr *a, unsigned nbytes)
{
	for (unsigned i = 0; i < nbytes; i++)
		if (a->b[i])
			return false;
	return true;
}

/* Network (path, len) of the tree as a mamori prefix. */
static void network_prefix(const struct mmdb_walk *w, const struct mm_addr *path, unsigned len, struct mm_prefix *p)
{
	memset(p, 0, sizeof(*p));
	if (w->bits == 32) {
		mm_addr_set_v4(&p->addr, path->b);
		p->len = (uint8_t)len;
	} else if (len >= 96 && top_bits_zero(path, 12)) {
		mm_addr_set_v4(&p->addr, path->b + 12);
		p->len = (uint8_t)(len - 96);
	} else {
		p->addr = *path;
		p->len = (uint8_t)len;
	}
}

/* Value at a path of the record, or has_data false when the record lacks it. */
static int get_value(MMDB_entry_s *e, MMDB_entry_data_s *d, const char *const *path)
{
	int s = MMDB_aget_value(e, d, path);

	if (s == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR || (s == MMDB_SUCCESS && !d->has_data)) {
		d->has_data = false;
		return MMDB_SUCCESS;
	}
	return s;
}

static int take_record(struct mmdb_walk *w, MMDB_entry_s entry, const struct mm_addr *path, unsigned len)
{
	static const char *const country[] = { "country", "iso_code", NULL };
	static const char *const registered[] = { "registered_country", "iso_code", NULL };
	static const char *const asn_path[] = { "autonomous_system_number", NULL };
	struct geo_load *l = w->l;
	char text[MM_PREFIX_STRLEN], cc[2];
	MMDB_entry_data_s d;
	struct mm_prefix p;
	bool has_cc = false;
	uint64_t asn = 0;
	int s;

	network_prefix(w, path, len, &p);
	mm_prefix_format(&p, text);
	l->rep.n_lines++;
	s = get_value(&entry, &d, country);
	if (s == MMDB_SUCCESS && !d.has_data)
		s = get_value(&entry, &d, registered);
	if (s != MMDB_SUCCESS) {
		geo_load_bad(l, 0, "network %s: country: %s", text, MMDB_strerror(s));
		return 0;
	}
	if (d.has_data) {
		if (d.type != MMDB_DATA_TYPE_UTF8_STRING || !geo_parse_cc(d.utf8_string, d.data_size, cc)) {
			geo_load_bad(l, 0, "network %s: country iso_code is not two letters", text);
			return 0;
		}
		has_cc = true;
	}
	s = get_value(&entry, &d, asn_path);
	if (s != MMDB_SUCCESS) {
		geo_load_bad(l, 0, "network %s: autonomous_system_number: %s", text, MMDB_strerror(s));
		return 0;
	}
	if (d.has_data) {
		if (d.type == MMDB_DATA_TYPE_UINT32)
			asn = d.uint32;
		else if (d.type == MMDB_DATA_TYPE_UINT16)
			asn = d.uint16;
		else if (d.type == MMDB_DATA_TYPE_UINT64 && d.uint64 <= UINT32_MAX)
			asn = d.uint64;
		else {
			geo_load_bad(l, 0, "network %s: autonomous_system_number is not a 32-bit number", text);
			return 0;
		}
	}
	if (!has_cc && asn == 0) {
		l->rep.n_skipped++;
		return 0;
	}
	l->rep.n_records++;
	return geo_add_prefix(l, &p, has_cc ? cc : NULL, (uint32_t)asn);
}

static int walk(struct mmdb_walk *w, uint32_t node, struct mm_addr path, unsigned depth)
{
	MMDB_search_node_s n;
	int s, rc;

	if (++w->n_visits > (uint64_t)w->db.metadata.node_count + 1)
		return mm_fail(MM_EFORMAT, "geo: %s: search tree revisits nodes (corrupt database)", w->l->path);
	s = MMDB_read_node(&w->db, node, &n);
	if (s != MMDB_SUCCESS)
		return mm_fail(MM_EFORMAT, "geo: %s: node %u: %s", w->l->path, node, MMDB_strerror(s));
	for (unsigned side = 0; side < 2; side++) {
		uint8_t type = side ? n.right_record_type : n.left_record_type;
		uint64_t child = side ? n.right_record : n.left_record;
		struct mm_addr sub = path;

		if (side)
			set_bit(&sub, depth);
		switch (type) {
		case MMDB_RECORD_TYPE_EMPTY:
			break;
		case MMDB_RECORD_TYPE_DATA:
			rc = take_record(w, side ? n.right_record_entry : n.left_record_entry, &sub, depth + 1);
			if (rc < 0)
				return rc;
			break;
		case MMDB_RECORD_TYPE_SEARCH_NODE:
			if (depth + 1 >= w->bits)
				return mm_fail(MM_EFORMAT, "geo: %s: search tree deeper than %u bits", w->l->path,
					       w->bits);
			if (child == w->ipv4_node && !(depth + 1 == 96 && top_bits_zero(&sub, 12)))
				break; /* an alias of the IPv4 subtree */
			if ((rc = walk(w, (uint32_t)child, sub, depth + 1)) < 0)
				return rc;
			break;
		default:
			return mm_fail(MM_EFORMAT, "geo: %s: node %u has an invalid record", w->l->path, node);
		}
	}
	return 0;
}

/* The node 96 zero bits below the root, where IPv4 lives in an IPv6 tree. */
static uint32_t find_ipv4_node(struct mmdb_walk *w)
{
	uint32_t node = 0;

	if (w->bits != 128)
		return UINT32_MAX;
	for (unsigned i = 0; i < 96; i++) {
		MMDB_search_node_s n;

		if (MMDB_read_node(&w->db, node, &n) != MMDB_SUCCESS ||
		    n.left_record_type != MMDB_RECORD_TYPE_SEARCH_NODE)
			return UINT32_MAX;
		node = (uint32_t)n.left_record;
	}
	return node;
}

int mm_geo_builder_add_mmdb(struct mm_geo_builder *b, const char *path, struct mm_geo_load_report *report)
{
	struct mmdb_walk w;
	struct geo_load l;
	int s, rc;

	if (report)
		memset(report, 0, sizeof(*report));
	memset(&w, 0, sizeof(w));
	if ((rc = geo_load_begin(&l, b, "mmdb", path)) < 0)
		return rc;
	w.l = &l;
	s = MMDB_open(path, MMDB_MODE_MMAP, &w.db);
	if (s != MMDB_SUCCESS) {
		if (s == MMDB_FILE_OPEN_ERROR && errno == ENOENT)
			rc = mm_fail(MM_ENOENT, "geo: %s: %s", path, strerror(errno));
		else if (s == MMDB_IO_ERROR || s == MMDB_FILE_OPEN_ERROR)
			rc = mm_fail(MM_EIO, "geo: %s: %s", path, MMDB_strerror(s));
		else
			rc = mm_fail(MM_EFORMAT, "geo: %s: %s", path, MMDB_strerror(s));
		return geo_load_end(&l, rc, report);
	}
	w.bits = w.db.metadata.ip_version == 6 ? 128 : 32;
	if (w.db.metadata.ip_version != 4 && w.db.metadata.ip_version != 6)
		rc = mm_fail(MM_EFORMAT, "geo: %s: ip_version %u", path, w.db.metadata.ip_version);
	else if (w.db.metadata.node_count == 0)
		rc = mm_fail(MM_EFORMAT, "geo: %s: empty search tree", path);
	else {
		w.ipv4_node = find_ipv4_node(&w);
		rc = walk(&w, 0, (struct mm_addr){ 0 }, 0);
	}
	MMDB_close(&w.db);
	return geo_load_end(&l, rc, report);
}
