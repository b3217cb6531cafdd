/*
 * Aggregation specs (--top N KEYS --by X, --group-by KEYS, --distinct,
 * --every) and the reference aggregator: one keyed hash from (bucket,
 * keys) to a row of sums, one exact set of (row, distinct key, value)
 * triples. Like the evaluator it favours obviousness; the store's
 * vectorised aggregation is compared against it row for row.
 */
#include "mamori/query.h"

#include "mamori/hash.h"
#include "mamori/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	enum mm_qkey_kind kind;
} key_names[] = {
	{ "srcip", MM_QK_SRCIP },     { "dstip", MM_QK_DSTIP },     { "srcnet", MM_QK_SRCNET },
	{ "dstnet", MM_QK_DSTNET },   { "srcport", MM_QK_SRCPORT }, { "dstport", MM_QK_DSTPORT },
	{ "proto", MM_QK_PROTO },     { "srcas", MM_QK_SRCAS },     { "dstas", MM_QK_DSTAS },
	{ "srccountry", MM_QK_SRCCOUNTRY }, { "dstcountry", MM_QK_DSTCOUNTRY },
};

#define KEY_CHOICES                                                                              \
	"srcip, dstip, srcnet/LEN, dstnet/LEN, srcport, dstport, proto, srcas, dstas, srccountry, " \
	"dstcountry"

void mm_qagg_init(struct mm_qagg *agg)
{
	memset(agg, 0, sizeof(*agg));
	agg->order_by = MM_QM_FLOWS;
}

static bool is_net_key(enum mm_qkey_kind kind)
{
	return kind == MM_QK_SRCNET || kind == MM_QK_DSTNET;
}

/* "/24" or "/24/64" after a net key's name. */
static int parse_net_lengths(const char *text, const char *lens, struct mm_qkey *key)
{
	unsigned a, b;
	int used = 0;

	if (sscanf(lens, "/%3u%n", &a, &used) == 1 && lens[used] == '\0' && a <= 128) {
		key->prefix_len_v4 = (uint8_t)(a < 32 ? a : 32);
		key->prefix_len_v6 = (uint8_t)a;
		return 0;
	}
	if (sscanf(lens, "/%3u/%3u%n", &a, &b, &used) == 2 && lens[used] == '\0' && a <= 32 && b <= 128) {
		key->prefix_len_v4 = (uint8_t)a;
		key->prefix_len_v6 = (uint8_t)b;
		return 0;
	}
	return mm_fail(MM_EINVAL, "query: key '%s': a net key takes /LEN (0..128) or /V4LEN/V6LEN", text);
}

static int parse_key(const char *text, struct mm_qkey *key)
{
	size_t name_len = strcspn(text, "/");

	for (size_t i = 0; i < sizeof(key_names) / sizeof(key_names[0]); i++) {
		if (strlen(key_names[i].name) != name_len || strncmp(text, key_names[i].name, name_len) != 0)
			continue;
		memset(key, 0, sizeof(*key));
		key->kind = key_names[i].kind;
		if (is_net_key(key->kind))
			return parse_net_lengths(text, text + name_len, key);
		if (text[name_len] != '\0')
			break;
		return 0;
	}
	return mm_fail(MM_EINVAL, "query: key '%s': not one of " KEY_CHOICES, text);
}

int mm_qagg_parse_keys(const char *text, struct mm_qkey *keys, size_t cap, size_t *n_keys)
{
	char word[32];
	size_t n = 0, len;
	int rc;

	for (const char *p = text;; p += len + 1) {
		len = strcspn(p, ",");
		if (len == 0 || len >= sizeof(word))
			return mm_fail(MM_EINVAL, "query: keys '%s': empty or overlong key", text);
		if (n == cap)
			return mm_fail(MM_ELIMIT, "query: keys '%s': more than %zu keys", text, cap);
		memcpy(word, p, len);
		word[len] = '\0';
		rc = parse_key(word, &keys[n]);
		if (rc < 0)
			return rc;
		n++;
		if (p[len] == '\0')
			break;
	}
	*n_keys = n;
	return 0;
}

int mm_qagg_parse_metric(const char *text, enum mm_qmetric *out)
{
	static const char *const names[] = { "flows", "packets", "bytes" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(text, names[i]) == 0) {
			*out = (enum mm_qmetric)i;
			return 0;
		}
	}
	return mm_fail(MM_EINVAL, "query: order '%s': not one of flows, packets, bytes", text);
}

char *mm_qkey_format(const struct mm_qkey *key, char buf[24])
{
	const char *name = "?";

	for (size_t i = 0; i < sizeof(key_names) / sizeof(key_names[0]); i++)
		if (key_names[i].kind == key->kind)
			name = key_names[i].name;
	if (!is_net_key(key->kind))
		snprintf(buf, 24, "%s", name);
	else if (key->prefix_len_v4 == (key->prefix_len_v6 < 32 ? key->prefix_len_v6 : 32))
		snprintf(buf, 24, "%s/%u", name, key->prefix_len_v6);
	else
		snprintf(buf, 24, "%s/%u/%u", name, key->prefix_len_v4, key->prefix_len_v6);
	return buf;
}

static void net_of(const struct mm_addr *a, const struct mm_qkey *key, struct mm_addr *out)
{
	struct mm_prefix p;

	/* Lengths were range-checked by mm_qagg_ref_new. */
	mm_prefix_from_addr(&p, a, mm_addr_is_v4(a) ? key->prefix_len_v4 : key->prefix_len_v6);
	*out = p.addr;
}

void mm_qkey_value_of(const struct mm_qkey *key, const struct mm_flow *f, union mm_qkey_value *out)
{
	memset(out, 0, sizeof(*out));
	switch (key->kind) {
	case MM_QK_SRCIP: out->addr = f->src; break;
	case MM_QK_DSTIP: out->addr = f->dst; break;
	case MM_QK_SRCNET: net_of(&f->src, key, &out->addr); break;
	case MM_QK_DSTNET: net_of(&f->dst, key, &out->addr); break;
	case MM_QK_SRCPORT: out->u = f->src_port; break;
	case MM_QK_DSTPORT: out->u = f->dst_port; break;
	case MM_QK_PROTO: out->u = f->proto; break;
	case MM_QK_SRCAS: out->u = f->src_as; break;
	case MM_QK_DSTAS: out->u = f->dst_as; break;
	case MM_QK_SRCCOUNTRY: memcpy(out->country, f->src_country, 2); break;
	case MM_QK_DSTCOUNTRY: memcpy(out->country, f->dst_country, 2); break;
	}
}

/* A set of fixed-length byte keys ---------------------------------------- */

/*
 * Open addressing over key indexes; keys live in one array in insertion
 * order, so an index doubles as a row number. Keys come from the wire, so
 * the hash is keyed.
 */
struct keyset {
	struct mm_hash_key hash_key;
	size_t key_len;
	unsigned char *keys;
	size_t n_keys, keys_cap;
	uint32_t *slots; /* 0 empty, else key index + 1 */
	size_t n_slots;  /* a power of two, kept over twice n_keys */
};

static int keyset_init(struct keyset *s, size_t key_len)
{
	memset(s, 0, sizeof(*s));
	s->key_len = key_len;
	return mm_hash_key_random(&s->hash_key);
}

static void keyset_release(struct keyset *s)
{
	free(s->keys);
	free(s->slots);
}

static size_t keyset_probe(const struct keyset *s, const void *key)
{
	size_t mask = s->n_slots - 1, i = mm_siphash13(&s->hash_key, key, s->key_len) & mask;

	while (s->slots[i] && memcmp(s->keys + (s->slots[i] - 1) * s->key_len, key, s->key_len) != 0)
		i = (i + 1) & mask;
	return i;
}

static int keyset_grow(struct keyset *s)
{
	size_t n_slots = s->n_slots ? s->n_slots * 2 : 64;
	uint32_t *old = s->slots;
	size_t old_n = s->n_slots;

	s->slots = calloc(n_slots, sizeof(*s->slots));
	if (!s->slots) {
		s->slots = old;
		return mm_fail(MM_ENOMEM, "query: out of memory for %zu aggregation slots", n_slots);
	}
	s->n_slots = n_slots;
	for (size_t i = 0; i < old_n; i++)
		if (old[i])
			s->slots[keyset_probe(s, s->keys + (old[i] - 1) * s->key_len)] = old[i];
	free(old);
	return 0;
}

/* Finds key or adds it; *index is its insertion number, *added says which. */
static int keyset_find_or_add(struct keyset *s, const void *key, size_t *index, bool *added)
{
	size_t slot;
	int rc;

	if ((s->n_keys + 1) * 2 > s->n_slots) {
		rc = keyset_grow(s);
		if (rc < 0)
			return rc;
	}
	slot = keyset_probe(s, key);
	*added = s->slots[slot] == 0;
	if (!*added) {
		*index = s->slots[slot] - 1;
		return 0;
	}
	if (s->n_keys == s->keys_cap) {
		size_t cap = s->keys_cap ? s->keys_cap * 2 : 64;
		unsigned char *grown = realloc(s->keys, cap * s->key_len);
		if (!grown)
			return mm_fail(MM_ENOMEM, "query: out of memory for %zu aggregation keys", cap);
		s->keys = grown;
		s->keys_cap = cap;
	}
	memcpy(s->keys + s->n_keys * s->key_len, key, s->key_len);
	*index = s->n_keys++;
	s->slots[slot] = (uint32_t)*index + 1;
	return 0;
}

/* The reference aggregator ------------------------------------------------ */

struct distinct_triple {
	uint32_t row;
	uint32_t which; /* index into spec.distinct */
	union mm_qkey_value value;
};

struct mm_qagg_ref {
	struct mm_qagg spec;
	size_t max_entries; /* rows plus distinct triples */
	uint64_t n_refused;
	struct keyset groups;   /* serialised (bucket, keys) → row index */
	struct keyset distinct; /* struct distinct_triple */
	struct mm_qagg_row *rows;
	size_t n_rows, rows_cap;
};

/* Specs built by code skip mm_qagg_parse_keys, which range-checks lengths. */
static bool net_lengths_valid(const struct mm_qkey *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (is_net_key(keys[i].kind) && (keys[i].prefix_len_v4 > 32 || keys[i].prefix_len_v6 > 128))
			return false;
	return true;
}

int mm_qagg_ref_new(struct mm_qagg_ref **out, const struct mm_qagg *spec, size_t max_groups)
{
	struct mm_qagg_ref *r;
	int rc;

	*out = NULL;
	if (spec->n_keys > MM_QAGG_MAX_KEYS || spec->n_distinct > MM_QAGG_MAX_DISTINCT)
		return mm_fail(MM_EINVAL, "query: aggregation with %zu keys and %zu distinct keys", spec->n_keys,
			       spec->n_distinct);
	if (!net_lengths_valid(spec->keys, spec->n_keys) || !net_lengths_valid(spec->distinct, spec->n_distinct))
		return mm_fail(MM_EINVAL, "query: aggregation key with a net length beyond /32 or /128");
	r = calloc(1, sizeof(*r));
	if (!r)
		return mm_fail(MM_ENOMEM, "query: out of memory for an aggregation");
	r->spec = *spec;
	r->max_entries = max_groups > UINT32_MAX - 1 ? UINT32_MAX - 1 : max_groups;
	rc = keyset_init(&r->groups, sizeof(uint64_t) + spec->n_keys * sizeof(union mm_qkey_value));
	if (rc == 0)
		rc = keyset_init(&r->distinct, sizeof(struct distinct_triple));
	if (rc < 0) {
		mm_qagg_ref_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void mm_qagg_ref_free(struct mm_qagg_ref *r)
{
	if (!r)
		return;
	keyset_release(&r->groups);
	keyset_release(&r->distinct);
	free(r->rows);
	free(r);
}

uint64_t mm_qagg_ref_refused(const struct mm_qagg_ref *r)
{
	return r->n_refused;
}

static int row_for(struct mm_qagg_ref *r, const struct mm_flow *f, struct mm_qagg_row **row)
{
	unsigned char key[sizeof(uint64_t) + MM_QAGG_MAX_KEYS * sizeof(union mm_qkey_value)];
	struct mm_qagg_row fresh = { 0 };
	size_t index;
	bool added;
	int rc;

	if (r->spec.every_ns)
		fresh.bucket_ns = f->first_ns - f->first_ns % r->spec.every_ns;
	for (size_t i = 0; i < r->spec.n_keys; i++)
		mm_qkey_value_of(&r->spec.keys[i], f, &fresh.key[i]);
	memcpy(key, &fresh.bucket_ns, sizeof(uint64_t));
	memcpy(key + sizeof(uint64_t), fresh.key, r->spec.n_keys * sizeof(union mm_qkey_value));
	rc = keyset_find_or_add(&r->groups, key, &index, &added);
	if (rc < 0)
		return rc;
	if (added) {
		if (r->n_rows == r->rows_cap) {
			size_t cap = r->rows_cap ? r->rows_cap * 2 : 64;
			struct mm_qagg_row *grown = realloc(r->rows, cap * sizeof(*grown));
			if (!grown)
				return mm_fail(MM_ENOMEM, "query: out of memory for %zu aggregation rows", cap);
			r->rows = grown;
			r->rows_cap = cap;
		}
		r->rows[r->n_rows++] = fresh;
	}
	*row = &r->rows[index];
	return 0;
}

int mm_qagg_ref_add(struct mm_qagg_ref *r, const struct mm_flow *f)
{
	struct mm_qagg_row *row = NULL;
	size_t index;
	bool added;
	int rc;

	/* Refused before any change, so a refused flow leaves no partial trace. */
	if (r->groups.n_keys + r->distinct.n_keys + 1 + r->spec.n_distinct > r->max_entries) {
		r->n_refused++;
		return mm_fail(MM_ELIMIT, "query: aggregation reached its cap of %zu groups", r->max_entries);
	}
	rc = row_for(r, f, &row);
	if (rc < 0)
		return rc;
	row->flows++;
	row->packets += mm_flow_packets(f) * mm_qagg_scale(&r->spec, f->sampling_rate);
	row->bytes += mm_flow_bytes(f) * mm_qagg_scale(&r->spec, f->sampling_rate);
	for (size_t i = 0; i < r->spec.n_distinct; i++) {
		struct distinct_triple t;
		memset(&t, 0, sizeof(t));
		t.row = (uint32_t)(row - r->rows);
		t.which = (uint32_t)i;
		mm_qkey_value_of(&r->spec.distinct[i], f, &t.value);
		rc = keyset_find_or_add(&r->distinct, &t, &index, &added);
		if (rc < 0)
			return rc;
		row->distinct[i] += added;
	}
	return 0;
}

static int cmp_u64_desc(uint64_t a, uint64_t b)
{
	return (a < b) - (a > b);
}

static int cmp_key_value(enum mm_qkey_kind kind, const union mm_qkey_value *a, const union mm_qkey_value *b)
{
	switch (kind) {
	case MM_QK_SRCIP:
	case MM_QK_DSTIP:
	case MM_QK_SRCNET:
	case MM_QK_DSTNET: return mm_addr_cmp(&a->addr, &b->addr);
	case MM_QK_SRCCOUNTRY:
	case MM_QK_DSTCOUNTRY: return memcmp(a->country, b->country, 2);
	default: return (a->u > b->u) - (a->u < b->u);
	}
}

static uint64_t metric_of(const struct mm_qagg_row *row, enum mm_qmetric m)
{
	return m == MM_QM_BYTES ? row->bytes : m == MM_QM_PACKETS ? row->packets : row->flows;
}

static int cmp_rows(const void *pa, const void *pb, void *ctx)
{
	const struct mm_qagg_row *a = pa, *b = pb;
	const struct mm_qagg *spec = ctx;
	int c;

	if (a->bucket_ns != b->bucket_ns)
		return a->bucket_ns < b->bucket_ns ? -1 : 1;
	if ((c = cmp_u64_desc(metric_of(a, spec->order_by), metric_of(b, spec->order_by))) != 0 ||
	    (c = cmp_u64_desc(a->flows, b->flows)) != 0 || (c = cmp_u64_desc(a->bytes, b->bytes)) != 0 ||
	    (c = cmp_u64_desc(a->packets, b->packets)) != 0)
		return c;
	for (size_t i = 0; i < spec->n_keys; i++)
		if ((c = cmp_key_value(spec->keys[i].kind, &a->key[i], &b->key[i])) != 0)
			return c;
	return 0;
}

size_t mm_qagg_rows_finish(struct mm_qagg_row *rows, size_t n_rows, const struct mm_qagg *spec)
{
	size_t kept = 0, in_bucket = 0;

	if (n_rows > 1) /* qsort_r of an empty (NULL) array is undefined */
		qsort_r(rows, n_rows, sizeof(*rows), cmp_rows, (void *)spec);
	for (size_t i = 0; i < n_rows; i++) {
		if (i == 0 || rows[i].bucket_ns != rows[i - 1].bucket_ns)
			in_bucket = 0;
		if (spec->top_n && in_bucket >= spec->top_n)
			continue;
		in_bucket++;
		rows[kept++] = rows[i];
	}
	return kept;
}

int mm_qagg_ref_finish(struct mm_qagg_ref *r, const struct mm_qagg_row **rows, size_t *n_rows)
{
	r->n_rows = mm_qagg_rows_finish(r->rows, r->n_rows, &r->spec);
	*rows = r->rows;
	*n_rows = r->n_rows;
	return 0;
}
