/*
 * Builds the benchmark's export streams from one record layout table per
 * version: a typical IPv4 5-tuple flow with interfaces, next hop, counters
 * and times. Values come from a seeded generator, so every run sends the
 * same bytes; sequence numbers follow each version's rules so that a
 * collector counts no gap the network did not cause.
 */
#include "export_gen.h"

#include "mamori/status.h"

#include <stdlib.h>
#include <string.h>

#define V5_HEADER_LEN 24
#define V5_RECORDS 30
#define V9_HEADER_LEN 20
#define IPFIX_HEADER_LEN 16
#define SET_HEADER_LEN 4
#define WIRE_TARGET 1400     /* v9 and IPFIX messages are filled up to this */
#define TEMPLATE_ID 256

/* Which value of a record a field carries. */
enum gen_val {
	VAL_ZERO = 0, VAL_SRC, VAL_DST, VAL_NEXTHOP, VAL_IN_IF, VAL_OUT_IF, VAL_PACKETS, VAL_BYTES,
	VAL_FIRST_UPTIME, VAL_LAST_UPTIME, VAL_FIRST_MS, VAL_LAST_MS, VAL_SRC_PORT, VAL_DST_PORT,
	VAL_TCP_FLAGS, VAL_PROTO, VAL_TOS,
};

struct gen_field {
	uint16_t id;   /* IANA element / v9 field type; 0 for v5, which has no template */
	uint8_t len;
	uint8_t val;   /* enum gen_val */
};

/* The fixed v5 record (48 bytes). */
static const struct gen_field v5_fields[] = {
	{ 0, 4, VAL_SRC }, { 0, 4, VAL_DST }, { 0, 4, VAL_NEXTHOP }, { 0, 2, VAL_IN_IF },
	{ 0, 2, VAL_OUT_IF }, { 0, 4, VAL_PACKETS }, { 0, 4, VAL_BYTES },
	{ 0, 4, VAL_FIRST_UPTIME }, { 0, 4, VAL_LAST_UPTIME }, { 0, 2, VAL_SRC_PORT },
	{ 0, 2, VAL_DST_PORT }, { 0, 1, VAL_ZERO }, { 0, 1, VAL_TCP_FLAGS }, { 0, 1, VAL_PROTO },
	{ 0, 1, VAL_TOS }, { 0, 2, VAL_ZERO }, { 0, 2, VAL_ZERO }, { 0, 1, VAL_ZERO },
	{ 0, 1, VAL_ZERO }, { 0, 2, VAL_ZERO },
};

/* NetFlow v9: uptime-relative times, as routers send them (43 bytes). */
static const struct gen_field v9_fields[] = {
	{ 8, 4, VAL_SRC }, { 12, 4, VAL_DST }, { 15, 4, VAL_NEXTHOP }, { 10, 4, VAL_IN_IF },
	{ 14, 4, VAL_OUT_IF }, { 2, 4, VAL_PACKETS }, { 1, 4, VAL_BYTES },
	{ 22, 4, VAL_FIRST_UPTIME }, { 21, 4, VAL_LAST_UPTIME }, { 7, 2, VAL_SRC_PORT },
	{ 11, 2, VAL_DST_PORT }, { 6, 1, VAL_TCP_FLAGS }, { 4, 1, VAL_PROTO }, { 5, 1, VAL_TOS },
};

/* IPFIX: flowStart/EndMilliseconds, counters in reduced-size 4 bytes (51 bytes). */
static const struct gen_field ipfix_fields[] = {
	{ 8, 4, VAL_SRC }, { 12, 4, VAL_DST }, { 15, 4, VAL_NEXTHOP }, { 10, 4, VAL_IN_IF },
	{ 14, 4, VAL_OUT_IF }, { 2, 4, VAL_PACKETS }, { 1, 4, VAL_BYTES },
	{ 152, 8, VAL_FIRST_MS }, { 153, 8, VAL_LAST_MS }, { 7, 2, VAL_SRC_PORT },
	{ 11, 2, VAL_DST_PORT }, { 6, 1, VAL_TCP_FLAGS }, { 4, 1, VAL_PROTO }, { 5, 1, VAL_TOS },
};

struct layout {
	const struct gen_field *fields;
	size_t n_fields;
	size_t rec_len;
	size_t header_len;       /* message header, plus the data set header for v9/IPFIX */
	size_t n_records;        /* per data message */
};

struct gen_record {
	uint64_t v[VAL_TOS + 1];
};

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void put_be(uint8_t *p, unsigned len, uint64_t v)
{
	for (unsigned i = len; i-- > 0; v >>= 8)
		p[i] = (uint8_t)v;
}

static struct layout layout_of(uint16_t version)
{
	struct layout l = { 0 };

	if (version == 5) {
		l.fields = v5_fields;
		l.n_fields = sizeof(v5_fields) / sizeof(v5_fields[0]);
		l.header_len = V5_HEADER_LEN;
	} else if (version == 9) {
		l.fields = v9_fields;
		l.n_fields = sizeof(v9_fields) / sizeof(v9_fields[0]);
		l.header_len = V9_HEADER_LEN + SET_HEADER_LEN;
	} else {
		l.fields = ipfix_fields;
		l.n_fields = sizeof(ipfix_fields) / sizeof(ipfix_fields[0]);
		l.header_len = IPFIX_HEADER_LEN + SET_HEADER_LEN;
	}
	for (size_t i = 0; i < l.n_fields; i++)
		l.rec_len += l.fields[i].len;
	l.n_records = version == 5 ? V5_RECORDS : (WIRE_TARGET - l.header_len) / l.rec_len;
	return l;
}

/*
 * Mostly TCP with some UDP and ICMP, heavy-tailed packet counts, sources in
 * 10/8 and destinations in 45/8, times up to a minute before the base.
 */
static void make_record(struct gen_record *r, uint64_t *rng, uint32_t uptime_base_ms, uint64_t base_ms)
{
	uint64_t a = splitmix64(rng), b = splitmix64(rng), c = splitmix64(rng);
	unsigned kind = (unsigned)(a % 100);
	uint64_t packets = 1 + (b % 16 == 0 ? (b >> 8) % 10000 : (b >> 8) % 40);
	uint64_t ago_ms = 1000 + (c >> 40) % 59000, dur_ms = (c >> 16) % 1000 * (c % 4 == 0 ? 60 : 1);

	memset(r, 0, sizeof(*r));
	r->v[VAL_SRC] = 0x0a000000u | (uint32_t)(a >> 8 & 0xffffff);
	r->v[VAL_DST] = 0x2d000000u | (uint32_t)(a >> 32 & 0xffffff);
	r->v[VAL_NEXTHOP] = 0xc0000201u;
	r->v[VAL_IN_IF] = 1 + (a >> 56) % 8;
	r->v[VAL_OUT_IF] = 9 + (a >> 60);
	r->v[VAL_PACKETS] = packets;
	r->v[VAL_BYTES] = packets * (40 + (c >> 32) % 1461);
	if (dur_ms > ago_ms)
		dur_ms = ago_ms;
	r->v[VAL_FIRST_UPTIME] = uptime_base_ms - ago_ms;
	r->v[VAL_LAST_UPTIME] = uptime_base_ms - ago_ms + dur_ms;
	r->v[VAL_FIRST_MS] = base_ms - ago_ms;
	r->v[VAL_LAST_MS] = base_ms - ago_ms + dur_ms;
	r->v[VAL_PROTO] = kind < 80 ? 6 : kind < 98 ? 17 : 1;
	r->v[VAL_SRC_PORT] = r->v[VAL_PROTO] == 1 ? 0 : 1024 + (b >> 40) % 64000;
	/* ICMP echo request: type 8, code 0 in the destination port, as v5 and v9 exporters do */
	r->v[VAL_DST_PORT] = r->v[VAL_PROTO] == 1 ? 8 << 8 : (b >> 24) % 2 ? 443 : (b >> 26) % 1024;
	r->v[VAL_TCP_FLAGS] = r->v[VAL_PROTO] == 6 ? 0x1b : 0;
	r->v[VAL_TOS] = (c >> 8) % 4 == 0 ? 0x28 : 0;
}

static void write_record(uint8_t *p, const struct layout *l, const struct gen_record *r)
{
	for (size_t i = 0; i < l->n_fields; i++) {
		put_be(p, l->fields[i].len, r->v[l->fields[i].val]);
		p += l->fields[i].len;
	}
}

/* Header fields that do not change per send; the rest are stamped by gen_stream_next. */
static void write_header(const struct gen_stream *g, uint8_t *p, size_t msg_len, unsigned count)
{
	put_be(p, 2, g->version);
	if (g->version == 5) {
		put_be(p + 2, 2, count);
		p[21] = (uint8_t)g->domain;
	} else if (g->version == 9) {
		put_be(p + 2, 2, count);
		put_be(p + 16, 4, g->domain);
	} else {
		put_be(p + 2, 2, msg_len);
		put_be(p + 12, 4, g->domain);
	}
}

static void build_data_msg(const struct gen_stream *g, struct gen_msg *m, const struct layout *l,
			   uint64_t *rng, uint64_t base_ms)
{
	size_t body = l->n_records * l->rec_len, set_len = SET_HEADER_LEN + body;
	uint8_t *p = m->data + l->header_len;
	struct gen_record r;

	memset(m, 0, sizeof(*m));
	for (size_t i = 0; i < l->n_records; i++, p += l->rec_len) {
		make_record(&r, rng, g->uptime_base_ms, base_ms);
		write_record(p, l, &r);
		m->packets += r.v[VAL_PACKETS];
		m->bytes += r.v[VAL_BYTES];
	}
	if (g->version == 9)
		set_len = (set_len + 3) & ~(size_t)3; /* RFC 3954: flowsets padded to 4 bytes */
	m->n_records = (uint16_t)l->n_records;
	m->len = (uint16_t)(g->version == 5 ? l->header_len + body : l->header_len - SET_HEADER_LEN + set_len);
	if (g->version != 5) {
		put_be(m->data + l->header_len - SET_HEADER_LEN, 2, TEMPLATE_ID);
		put_be(m->data + l->header_len - SET_HEADER_LEN + 2, 2, set_len);
	}
	write_header(g, m->data, m->len, m->n_records);
}

/* One template set (v9 flowset id 0, IPFIX set id 2) holding the data template. */
static void build_template_msg(struct gen_stream *g, const struct layout *l)
{
	struct gen_msg *m = &g->tmpl;
	size_t hdr = l->header_len - SET_HEADER_LEN;
	size_t set_len = SET_HEADER_LEN + 4 + 4 * l->n_fields;
	uint8_t *p = m->data + hdr;

	memset(m, 0, sizeof(*m));
	put_be(p, 2, g->version == 9 ? 0 : 2);
	put_be(p + 2, 2, set_len);
	put_be(p + 4, 2, TEMPLATE_ID);
	put_be(p + 6, 2, l->n_fields);
	p += 8;
	for (size_t i = 0; i < l->n_fields; i++, p += 4) {
		put_be(p, 2, l->fields[i].id);
		put_be(p + 2, 2, l->fields[i].len);
	}
	m->len = (uint16_t)(hdr + set_len);
	write_header(g, m->data, m->len, 1);
}

int gen_stream_init(struct gen_stream *g, uint16_t version, uint32_t domain, uint32_t n_ring,
		    uint64_t seed, uint32_t base_secs)
{
	struct layout l;
	uint64_t rng = seed;

	memset(g, 0, sizeof(*g));
	if ((version != 5 && version != 9 && version != 10) || !n_ring)
		return mm_fail(MM_EINVAL, "export_gen: version %u with %u messages", version, n_ring);
	g->ring = calloc(n_ring, sizeof(*g->ring));
	if (!g->ring)
		return mm_fail(MM_ENOMEM, "export_gen: %u messages: out of memory", n_ring);
	g->version = version;
	g->domain = domain;
	g->n_ring = n_ring;
	g->uptime_base_ms = 3600u * 1000u;
	g->since_template = GEN_TEMPLATE_EVERY; /* the first message is the template */
	l = layout_of(version);
	for (uint32_t i = 0; i < n_ring; i++)
		build_data_msg(g, &g->ring[i], &l, &rng, (uint64_t)base_secs * 1000u);
	if (version != 5)
		build_template_msg(g, &l);
	return 0;
}

const struct gen_msg *gen_stream_next(struct gen_stream *g, uint32_t export_secs, uint32_t elapsed_ms)
{
	struct gen_msg *m;

	if (g->version != 5 && g->since_template == GEN_TEMPLATE_EVERY) {
		m = &g->tmpl;
		g->since_template = 0;
	} else {
		m = &g->ring[g->next];
		g->next = (g->next + 1) % g->n_ring;
		g->since_template++;
	}
	if (g->version == 5) {
		put_be(m->data + 4, 4, g->uptime_base_ms + elapsed_ms);
		put_be(m->data + 8, 4, export_secs);
		put_be(m->data + 16, 4, g->seq);
		g->seq += m->n_records;
	} else if (g->version == 9) {
		put_be(m->data + 4, 4, g->uptime_base_ms + elapsed_ms);
		put_be(m->data + 8, 4, export_secs);
		put_be(m->data + 12, 4, g->seq);
		g->seq++;
	} else {
		put_be(m->data + 4, 4, export_secs);
		put_be(m->data + 8, 4, g->seq);
		g->seq += m->n_records;
	}
	return m;
}

void gen_stream_free(struct gen_stream *g)
{
	free(g->ring);
	g->ring = NULL;
}
