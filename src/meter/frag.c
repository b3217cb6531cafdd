/*
 * Fragment tracking (see frag.h). Datagrams live in a slab grown by
 * doubling up to the cap, chained from a fixed bucket array under a keyed
 * hash, and on an age list in arrival order: the table clock never runs
 * backwards, so that list is also deadline order and expiry pops its head.
 */
#include "meter/frag.h"

#include "mamori/hash.h"
#include "mamori/status.h"

#include <stdlib.h>
#include <string.h>

#define FRAG_NONE UINT32_MAX
#define FRAG_RANGES_MAX 8      /* disjoint holes-between-ranges a datagram may have */
#define FRAG_IP_MAX 65535u     /* a datagram cannot outgrow the 16-bit length fields */
#define FRAG_V6_HEADER_LEN 8

struct frag_range {
	uint16_t start, end; /* payload bytes [start, end) */
};

struct frag_key {
	struct mm_addr src, dst;
	uint32_t id;
	uint16_t vlan;
	uint8_t proto;
	uint8_t version;
};

struct frag_dgram {
	struct frag_key key;
	uint64_t first_ns;
	uint32_t hash_next;
	uint32_t age_next, age_prev;
	uint32_t total;           /* payload length, known once the last fragment came */
	uint16_t unfrag_len;      /* IP header bytes before the fragmented payload */
	uint8_t n_ranges;
	uint8_t have_first;
	struct frag_range range[FRAG_RANGES_MAX];
	/* L4 header values of the first fragment. */
	uint16_t sport, dport;
	uint8_t has_ports, tcp_flags, icmp_type, icmp_code;
};

struct frag_table {
	struct frag_dgram *dgram;
	size_t n_alloc, n_carved, max;
	uint32_t free_head;
	uint32_t *bucket;
	size_t n_buckets;
	uint32_t age_head, age_tail;
	uint64_t timeout_ns;
	struct mm_hash_key hkey;
	struct frag_stats stats;
};

_Static_assert(sizeof(struct frag_key) == 40, "fragment key must have no padding");

int frag_table_new(struct frag_table **out, size_t max_datagrams, uint64_t timeout_ns)
{
	struct frag_table *t = NULL;
	int rc;

	*out = NULL;
	if (max_datagrams == 0 || max_datagrams > (size_t)1 << 24)
		return mm_fail(MM_EINVAL, "fragment table: max_fragments %zu outside 1..2^24",
			       max_datagrams);
	t = calloc(1, sizeof(*t));
	if (!t)
		return mm_fail(MM_ENOMEM, "fragment table: out of memory");
	t->max = max_datagrams;
	t->timeout_ns = timeout_ns;
	t->free_head = t->age_head = t->age_tail = FRAG_NONE;
	t->n_buckets = 64;
	while (t->n_buckets < max_datagrams && t->n_buckets < 65536)
		t->n_buckets <<= 1;
	t->bucket = malloc(t->n_buckets * sizeof(*t->bucket));
	if (!t->bucket) {
		rc = mm_fail(MM_ENOMEM, "fragment table: out of memory");
		goto out;
	}
	memset(t->bucket, 0xff, t->n_buckets * sizeof(*t->bucket));
	rc = mm_hash_key_random(&t->hkey);
	if (rc < 0)
		goto out;
	*out = t;
	t = NULL;
out:
	frag_table_free(t);
	return rc;
}

void frag_table_free(struct frag_table *t)
{
	if (!t)
		return;
	free(t->dgram);
	free(t->bucket);
	free(t);
}

static size_t bucket_of(const struct frag_table *t, const struct frag_key *k)
{
	return mm_siphash13(&t->hkey, k, sizeof(*k)) & (t->n_buckets - 1);
}

static uint32_t find_dgram(const struct frag_table *t, const struct frag_key *k)
{
	for (uint32_t i = t->bucket[bucket_of(t, k)]; i != FRAG_NONE; i = t->dgram[i].hash_next)
		if (memcmp(&t->dgram[i].key, k, sizeof(*k)) == 0)
			return i;
	return FRAG_NONE;
}

static void drop_dgram(struct frag_table *t, uint32_t i)
{
	struct frag_dgram *d = &t->dgram[i];
	uint32_t *link = &t->bucket[bucket_of(t, &d->key)];

	while (*link != i)
		link = &t->dgram[*link].hash_next;
	*link = d->hash_next;
	if (d->age_prev != FRAG_NONE)
		t->dgram[d->age_prev].age_next = d->age_next;
	else
		t->age_head = d->age_next;
	if (d->age_next != FRAG_NONE)
		t->dgram[d->age_next].age_prev = d->age_prev;
	else
		t->age_tail = d->age_prev;
	d->hash_next = t->free_head;
	t->free_head = i;
	t->stats.pending--;
}

static int carve_dgram(struct frag_table *t, uint32_t *out)
{
	if (t->free_head != FRAG_NONE) {
		*out = t->free_head;
		t->free_head = t->dgram[*out].hash_next;
		return 0;
	}
	if (t->n_carved == t->n_alloc) {
		size_t n = t->n_alloc ? t->n_alloc * 2 : 64;
		struct frag_dgram *grown;

		if (n > t->max)
			n = t->max;
		if (n == t->n_alloc)
			return MM_ELIMIT;
		grown = realloc(t->dgram, n * sizeof(*grown));
		if (!grown)
			return MM_ENOMEM;
		t->dgram = grown;
		t->n_alloc = n;
	}
	*out = (uint32_t)t->n_carved++;
	return 0;
}

static int new_dgram(struct frag_table *t, uint64_t now_ns, const struct frag_key *k, uint32_t *out)
{
	struct frag_dgram *d;
	size_t b;
	uint32_t i;

	while (carve_dgram(t, &i) < 0) {
		if (t->age_head == FRAG_NONE)
			return MM_ENOMEM;
		/* Policy at the cap: give up the oldest datagram, counted. */
		drop_dgram(t, t->age_head);
		t->stats.table_full++;
	}
	d = &t->dgram[i];
	memset(d, 0, sizeof(*d));
	d->key = *k;
	d->first_ns = now_ns;
	b = bucket_of(t, k);
	d->hash_next = t->bucket[b];
	t->bucket[b] = i;
	d->age_next = FRAG_NONE;
	d->age_prev = t->age_tail;
	if (t->age_tail != FRAG_NONE)
		t->dgram[t->age_tail].age_next = i;
	else
		t->age_head = i;
	t->age_tail = i;
	t->stats.pending++;
	*out = i;
	return 0;
}

/* Adds [start, end) keeping ranges sorted and merged; false on overlap or too many. */
static bool add_range(struct frag_dgram *d, uint16_t start, uint16_t end)
{
	size_t pos = 0;

	while (pos < d->n_ranges && d->range[pos].end <= start)
		pos++;
	if (pos < d->n_ranges && d->range[pos].start < end)
		return false;
	if (pos > 0 && d->range[pos - 1].end == start) {
		d->range[pos - 1].end = end;
		if (pos < d->n_ranges && d->range[pos].start == end) {
			d->range[pos - 1].end = d->range[pos].end;
			memmove(&d->range[pos], &d->range[pos + 1],
				(d->n_ranges - pos - 1) * sizeof(d->range[0]));
			d->n_ranges--;
		}
		return true;
	}
	if (pos < d->n_ranges && d->range[pos].start == end) {
		d->range[pos].start = start;
		return true;
	}
	if (d->n_ranges == FRAG_RANGES_MAX)
		return false;
	memmove(&d->range[pos + 1], &d->range[pos], (d->n_ranges - pos) * sizeof(d->range[0]));
	d->range[pos] = (struct frag_range){ start, end };
	d->n_ranges++;
	return true;
}

static bool is_complete(const struct frag_dgram *d)
{
	return d->have_first && d->total && d->n_ranges == 1 && d->range[0].start == 0 &&
	       d->range[0].end == d->total;
}

/*
 * Checks one fragment's geometry against what the datagram already holds:
 * payload must fit 16 bits, a last fragment fixes the total once, and no
 * byte may lie beyond a known total.
 */
static bool fragment_fits(const struct frag_dgram *d, const struct mm_pkt_ip *ip,
			  uint32_t start, uint32_t end)
{
	if (end <= start || end > FRAG_IP_MAX)
		return false;
	if (!ip->more_frags && d->total && d->total != end)
		return false;
	if (d->total && end > d->total)
		return false;
	if (!ip->more_frags && d->n_ranges && d->range[d->n_ranges - 1].end > end)
		return false;
	return true;
}

static void remember_header(struct frag_dgram *d, const struct mm_pkt_ip *ip)
{
	if (ip->frag == MM_FRAG_FIRST) {
		d->have_first = 1;
		d->sport = ip->sport;
		d->dport = ip->dport;
		d->has_ports = ip->has_ports;
		d->tcp_flags = ip->tcp_flags;
		d->icmp_type = ip->icmp_type;
		d->icmp_code = ip->icmp_code;
		if (ip->version == 4)
			d->unfrag_len = ip->header_len;
	} else if (ip->version == 6 && !d->unfrag_len) {
		/* A later fragment's headers end at its fragment header. */
		d->unfrag_len = (uint16_t)(ip->header_len - FRAG_V6_HEADER_LEN);
	}
	if (!ip->more_frags)
		d->total = (uint32_t)ip->frag_offset + (ip->ip_len - ip->header_len);
}

static void build_whole(const struct frag_dgram *d, const struct mm_pkt_ip *ip,
			struct mm_pkt_ip *whole)
{
	*whole = *ip;
	whole->frag = MM_FRAG_NONE;
	whole->more_frags = 0;
	whole->frag_offset = 0;
	whole->sport = d->sport;
	whole->dport = d->dport;
	whole->has_ports = d->has_ports;
	whole->tcp_flags = d->tcp_flags;
	whole->icmp_type = d->icmp_type;
	whole->icmp_code = d->icmp_code;
	whole->header_len = d->unfrag_len;
	whole->ip_len = (uint32_t)d->unfrag_len + d->total;
}

enum frag_verdict frag_table_offer(struct frag_table *t, uint64_t now_ns, uint16_t vlan,
				   const struct mm_pkt_ip *ip, struct mm_pkt_ip *whole)
{
	struct frag_key k;
	struct frag_dgram *d;
	uint32_t i, start, end;

	if (ip->ip_len <= ip->header_len ||
	    (ip->version == 6 && ip->frag != MM_FRAG_FIRST && ip->header_len < 40 + FRAG_V6_HEADER_LEN)) {
		t->stats.bad++;
		return FRAG_REFUSED;
	}
	memset(&k, 0, sizeof(k));
	k.src = ip->src;
	k.dst = ip->dst;
	k.id = ip->frag_id;
	k.vlan = vlan;
	k.proto = ip->proto;
	k.version = ip->version;
	start = ip->frag_offset;
	end = start + (ip->ip_len - ip->header_len);
	i = find_dgram(t, &k);
	if (i == FRAG_NONE) {
		if (end > FRAG_IP_MAX || new_dgram(t, now_ns, &k, &i) < 0) {
			t->stats.bad++;
			return FRAG_REFUSED;
		}
	}
	d = &t->dgram[i];
	if (!fragment_fits(d, ip, start, end) || !add_range(d, (uint16_t)start, (uint16_t)end)) {
		t->stats.bad++;
		if (d->n_ranges == 0)
			drop_dgram(t, i);
		return FRAG_REFUSED;
	}
	remember_header(d, ip);
	if (!is_complete(d))
		return FRAG_HELD;
	build_whole(d, ip, whole);
	drop_dgram(t, i);
	t->stats.reassembled++;
	return FRAG_DONE;
}

void frag_table_expire(struct frag_table *t, uint64_t now_ns)
{
	while (t->age_head != FRAG_NONE && t->dgram[t->age_head].first_ns + t->timeout_ns <= now_ns) {
		drop_dgram(t, t->age_head);
		t->stats.incomplete++;
	}
}

void frag_table_clear(struct frag_table *t)
{
	while (t->age_head != FRAG_NONE) {
		drop_dgram(t, t->age_head);
		t->stats.incomplete++;
	}
}

void frag_table_get_stats(const struct frag_table *t, struct frag_stats *out)
{
	*out = t->stats;
}

size_t frag_table_bytes(const struct frag_table *t)
{
	return sizeof(*t) + t->n_alloc * sizeof(*t->dgram) + t->n_buckets * sizeof(*t->bucket);
}
