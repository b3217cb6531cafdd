/*
 * Light encodings of one column chunk (FORMAT.md §4): constant, frame of
 * reference, delta, dictionary, plain. The encoder sizes every candidate
 * and keeps the smallest; the decoder trusts no field of the payload and
 * checks each length against what the encoding implies before reading.
 */
#include "store/store_int.h"

#include "mamori/status.h"

#include <inttypes.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "bit packing below loads little-endian words with memcpy"
#endif

/* Dictionary probes longer than this abandon the dictionary for the chunk, so
 * values chosen to collide cost a bounded amount of work, not a quadratic one. */
#define DICT_MAX_PROBE 32
#define DICT_HASH_SHIFT 51 /* 64 - log2(2 * DICT_MAX) */

static unsigned bit_width(uint64_t v)
{
	return v ? 64u - (unsigned)__builtin_clzll(v) : 0;
}

static size_t packed_len(size_t n, unsigned bits)
{
	return (size_t)(((uint64_t)n * bits + 7) / 8);
}

/*
 * Writes n values of bits each (minus base) as one little-endian bit
 * stream, 64 bits at a time from a register: each value shifts in once and
 * each word is stored once. out has room for packed_len(n, bits) + 8 bytes.
 */
static void bits_pack(uint8_t *out, const uint64_t *v, size_t n, uint64_t base, unsigned bits)
{
	uint64_t acc = 0;
	unsigned fill = 0; /* bits of acc in use, < 64 */

	if (bits == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		uint64_t x = v[i] - base;

		acc |= x << fill;
		fill += bits;
		if (fill >= 64) {
			memcpy(out, &acc, 8);
			out += 8;
			fill -= 64;
			/* The bits of x that did not fit; a shift by 64 is undefined, hence the test. */
			acc = fill ? x >> (bits - fill) : 0;
		}
	}
	if (fill)
		memcpy(out, &acc, 8);
}

/* Loads the word at byte off of a len-byte payload, zero-filling past its end. */
static uint64_t load_word(const uint8_t *p, size_t len, uint64_t off)
{
	uint64_t w = 0;

	if (off + 8 <= len) {
		memcpy(&w, p + off, 8);
		return w;
	}
	for (uint64_t i = 0; off + i < len; i++)
		w |= (uint64_t)p[off + i] << (8 * i);
	return w;
}

/* out[i] = base + packed value i. The caller has checked len >= packed_len(n, bits). */
static void bits_unpack(const uint8_t *p, size_t len, unsigned bits, size_t n, uint64_t base,
			uint64_t *out)
{
	uint64_t mask = bits ? (~0ull >> (64 - bits)) : 0, pos = 0;
	size_t fast = 0;

	if (bits == 0) {
		for (size_t i = 0; i < n; i++)
			out[i] = base;
		return;
	}
	/* Values whose whole word lies inside the payload: no per-value bound check. */
	if (len >= 8)
		fast = (size_t)(((uint64_t)(len - 8) * 8) / bits) + 1;
	if (fast > n)
		fast = n;
	for (size_t i = 0; i < fast; i++, pos += bits) {
		uint64_t w;

		memcpy(&w, p + (pos >> 3), 8);
		out[i] = base + ((w >> (pos & 7)) & mask);
	}
	for (size_t i = fast; i < n; i++, pos += bits)
		out[i] = base + ((load_word(p, len, pos >> 3) >> (pos & 7)) & mask);
}

struct candidate {
	uint8_t encoding, bits;
	size_t len;
};

static void consider(struct candidate *best, uint8_t encoding, unsigned bits, size_t len)
{
	if (len < best->len) {
		best->encoding = encoding;
		best->bits = (uint8_t)bits;
		best->len = len;
	}
}

/* The range of the values and of the differences between neighbours (n >= 2), in one pass. */
struct value_ranges {
	uint64_t min, max;
	int64_t dmin, dmax;
};

static void value_ranges(const uint64_t *v, size_t n, struct value_ranges *r)
{
	uint64_t min = v[0] < v[1] ? v[0] : v[1], max = v[0] < v[1] ? v[1] : v[0];
	int64_t lo = (int64_t)(v[1] - v[0]), hi = lo;

	for (size_t i = 2; i < n; i++) {
		int64_t d = (int64_t)(v[i] - v[i - 1]);

		min = v[i] < min ? v[i] : min;
		max = v[i] > max ? v[i] : max;
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	*r = (struct value_ranges){ min, max, lo, hi };
}

/*
 * Builds the dictionary of v into es; returns its size or 0 when it cannot
 * beat limit bytes (too many distinct values, or a probe ran too long).
 */
static size_t dict_build(const uint64_t *v, size_t n, unsigned value_bits, size_t limit,
			 struct enc_scratch *es, size_t *n_dict)
{
	size_t nd = 0;

	memset(es->slot, 0, sizeof(es->slot));
	for (size_t i = 0; i < n; i++) {
		uint64_t h = (v[i] * 0x9E3779B97F4A7C15ull) >> DICT_HASH_SHIFT;
		unsigned probe = 0;

		while (es->slot[h] && es->keys[h] != v[i]) {
			if (++probe == DICT_MAX_PROBE)
				return 0;
			h = (h + 1) & (2 * DICT_MAX - 1);
		}
		if (!es->slot[h]) {
			if (nd == DICT_MAX)
				return 0;
			es->keys[h] = v[i];
			es->values[nd] = v[i];
			es->slot[h] = (uint32_t)++nd;
			if (packed_len(nd, value_bits) + packed_len(n, bit_width(nd - 1)) >= limit)
				return 0;
		}
		es->tmp[i] = es->slot[h] - 1;
	}
	*n_dict = nd;
	return DICT_HEADER_LEN + packed_len(nd, value_bits) + packed_len(n, bit_width(nd - 1));
}

void enc_plan(const uint64_t *v, size_t n, unsigned width, bool constant, struct enc_chunk *res,
	      struct enc_scratch *es)
{
	struct candidate best = { ENC_PLAIN, 0, n * width };
	struct value_ranges r;
	unsigned for_bits, delta_bits;
	size_t n_dict = 0, dict_len = 0;

	/* Most columns of most chunks hold one value (no tunnels, no VLAN...): settle those first. */
	if (constant) {
		*res = (struct enc_chunk){ .encoding = ENC_CONST, .min = v[0], .max = v[0], .raw_len = BASE_LEN };
		return;
	}
	value_ranges(v, n, &r);
	res->min = r.min;
	res->max = r.max;
	res->dmin = r.dmin;
	for_bits = bit_width(r.max - r.min);
	if (for_bits <= PACK_MAX_BITS)
		consider(&best, ENC_FOR, for_bits, BASE_LEN + packed_len(n, for_bits));
	delta_bits = bit_width((uint64_t)r.dmax - (uint64_t)r.dmin);
	if (delta_bits <= PACK_MAX_BITS)
		consider(&best, ENC_DELTA, delta_bits, DELTA_HEADER_LEN + packed_len(n - 1, delta_bits));
	if (for_bits <= PACK_MAX_BITS && for_bits > 1)
		dict_len = dict_build(v, n, for_bits, best.len, es, &n_dict);
	if (dict_len)
		consider(&best, ENC_DICT, for_bits, dict_len);
	res->encoding = best.encoding;
	res->bits = best.bits;
	res->raw_len = best.len;
	res->n_dict = n_dict;
}

void enc_write(const uint64_t *v, size_t n, unsigned width, uint8_t *out, const struct enc_chunk *res,
	       struct enc_scratch *es)
{
	/* bits_pack writes every byte of its stream; only the dictionary header has gaps. */
	memset(out, 0, DICT_HEADER_LEN);
	switch (res->encoding) {
	case ENC_CONST:
		put_u64(out, res->min);
		break;
	case ENC_FOR:
		put_u64(out, res->min);
		bits_pack(out + BASE_LEN, v, n, res->min, res->bits);
		break;
	case ENC_DELTA:
		put_u64(out, v[0]);
		put_u64(out + 8, (uint64_t)res->dmin);
		for (size_t i = 1; i < n; i++)
			es->tmp[i - 1] = v[i] - v[i - 1];
		bits_pack(out + DELTA_HEADER_LEN, es->tmp, n - 1, (uint64_t)res->dmin, res->bits);
		break;
	case ENC_DICT: {
		unsigned idx_bits = bit_width(res->n_dict - 1);

		put_u32(out, (uint32_t)res->n_dict);
		out[4] = (uint8_t)idx_bits;
		put_u64(out + 8, res->min);
		bits_pack(out + DICT_HEADER_LEN, es->values, res->n_dict, res->min, res->bits);
		bits_pack(out + DICT_HEADER_LEN + packed_len(res->n_dict, res->bits), es->tmp, n, 0, idx_bits);
		break;
	}
	default:
		for (size_t i = 0; i < n; i++)
			for (unsigned b = 0; b < width; b++)
				out[i * width + b] = (uint8_t)(v[i] >> (8 * b));
		break;
	}
}

void enc_encode_planes(const uint64_t *v, size_t n, uint8_t *out, struct enc_chunk *res)
{
	unsigned k = (bit_width(res->max - res->min) + 7) / 8;
	uint64_t base = res->min;

	put_u64(out, base);
	for (unsigned j = 0; j < k; j++) {
		uint8_t *plane = out + BASE_LEN + (size_t)j * n;

		for (size_t i = 0; i < n; i++)
			plane[i] = (uint8_t)((v[i] - base) >> (8 * j));
	}
	res->encoding = ENC_PLANES;
	res->bits = (uint8_t)(8 * k);
	res->raw_len = BASE_LEN + (size_t)k * n;
}

static int decode_planes(const struct seg_entry *e, const uint8_t *raw, size_t raw_len, size_t n,
			 uint64_t *vals)
{
	unsigned k = e->bits / 8;
	uint64_t base;

	if (e->bits % 8 || k == 0 || k > 8)
		return mm_fail(MM_EFORMAT, "byte planes of %u bits", e->bits);
	if (raw_len != BASE_LEN + (size_t)k * n)
		return mm_fail(MM_EFORMAT, "byte-plane payload is %zu bytes, expected %zu", raw_len,
			       BASE_LEN + (size_t)k * n);
	base = get_u64(raw);
	for (size_t i = 0; i < n; i++)
		vals[i] = raw[BASE_LEN + i];
	for (unsigned j = 1; j < k; j++) {
		const uint8_t *plane = raw + BASE_LEN + (size_t)j * n;

		for (size_t i = 0; i < n; i++)
			vals[i] |= (uint64_t)plane[i] << (8 * j);
	}
	for (size_t i = 0; i < n; i++)
		vals[i] += base;
	return 0;
}

static int decode_delta(const struct seg_entry *e, const uint8_t *raw, size_t raw_len, size_t n,
			uint64_t *vals)
{
	if (raw_len != DELTA_HEADER_LEN + packed_len(n - 1, e->bits))
		return mm_fail(MM_EFORMAT, "delta payload is %zu bytes, expected %zu", raw_len,
			       DELTA_HEADER_LEN + packed_len(n - 1, e->bits));
	/* Unpack the deltas (plus their minimum) in place, then sum them up. */
	vals[0] = get_u64(raw);
	bits_unpack(raw + DELTA_HEADER_LEN, raw_len - DELTA_HEADER_LEN, e->bits, n - 1,
		    get_u64(raw + 8), vals + 1);
	for (size_t i = 1; i < n; i++)
		vals[i] += vals[i - 1];
	return 0;
}

static int decode_dict(const struct seg_entry *e, const uint8_t *raw, size_t raw_len, size_t n,
		       uint64_t *vals, uint64_t *dict)
{
	uint32_t n_dict;
	unsigned idx_bits;
	size_t values_len, want;

	if (raw_len < DICT_HEADER_LEN)
		return mm_fail(MM_EFORMAT, "dictionary payload of %zu bytes has no header", raw_len);
	n_dict = get_u32(raw);
	idx_bits = raw[4];
	if (n_dict == 0 || n_dict > DICT_MAX || idx_bits > 16)
		return mm_fail(MM_EFORMAT, "dictionary of %" PRIu32 " values, %u-bit indexes", n_dict,
			       idx_bits);
	values_len = packed_len(n_dict, e->bits);
	want = DICT_HEADER_LEN + values_len + packed_len(n, idx_bits);
	if (raw_len != want)
		return mm_fail(MM_EFORMAT, "dictionary payload is %zu bytes, expected %zu", raw_len,
			       want);
	bits_unpack(raw + DICT_HEADER_LEN, values_len, e->bits, n_dict, get_u64(raw + 8), dict);
	bits_unpack(raw + DICT_HEADER_LEN + values_len, raw_len - DICT_HEADER_LEN - values_len,
		    idx_bits, n, 0, vals);
	for (size_t i = 0; i < n; i++) {
		if (vals[i] >= n_dict)
			return mm_fail(MM_EFORMAT, "row %zu: dictionary index %" PRIu64 " of %" PRIu32,
				       i, vals[i], n_dict);
		vals[i] = dict[vals[i]];
	}
	return 0;
}

int enc_decode(const struct seg_entry *e, const uint8_t *raw, size_t raw_len, size_t n,
	       unsigned width, uint64_t *vals, uint64_t *dict)
{
	if (n == 0)
		return mm_fail(MM_EFORMAT, "empty chunk");
	if (e->encoding != ENC_PLAIN && e->encoding != ENC_PLANES && e->bits > PACK_MAX_BITS)
		return mm_fail(MM_EFORMAT, "%u-bit packing exceeds %u", e->bits, PACK_MAX_BITS);
	switch (e->encoding) {
	case ENC_CONST:
		if (raw_len != BASE_LEN || e->bits != 0)
			return mm_fail(MM_EFORMAT, "constant payload is %zu bytes, expected %u", raw_len,
				       BASE_LEN);
		bits_unpack(raw, 0, 0, n, get_u64(raw), vals);
		return 0;
	case ENC_FOR:
		if (raw_len != BASE_LEN + packed_len(n, e->bits))
			return mm_fail(MM_EFORMAT, "packed payload is %zu bytes, expected %zu", raw_len,
				       BASE_LEN + packed_len(n, e->bits));
		bits_unpack(raw + BASE_LEN, raw_len - BASE_LEN, e->bits, n, get_u64(raw), vals);
		return 0;
	case ENC_DELTA:
		return decode_delta(e, raw, raw_len, n, vals);
	case ENC_DICT:
		return decode_dict(e, raw, raw_len, n, vals, dict);
	case ENC_PLANES:
		return decode_planes(e, raw, raw_len, n, vals);
	case ENC_PLAIN:
		if (raw_len != n * width)
			return mm_fail(MM_EFORMAT, "plain payload is %zu bytes, expected %zu", raw_len,
				       n * width);
		for (size_t i = 0; i < n; i++) {
			uint64_t v = 0;

			for (unsigned b = width; b-- > 0;)
				v = v << 8 | raw[i * width + b];
			vals[i] = v;
		}
		return 0;
	default:
		return mm_fail(MM_EFORMAT, "unknown encoding %u", e->encoding);
	}
}
