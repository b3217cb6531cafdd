/*
 * IP addresses and prefixes in one 16-byte form. IPv4 addresses are held as
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, RFC 4291 §2.5.5.2), so every
 * table, column and comparison handles both families with one code path.
 * Prefix lengths are kept in the family's own terms (0..32 for IPv4,
 * 0..128 for IPv6) and converted where bits are compared.
 */
#ifndef MAMORI_ADDR_H
#define MAMORI_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct mm_addr {
	uint8_t b[16]; /* network byte order */
};

struct mm_prefix {
	struct mm_addr addr; /* host bits are zero */
	uint8_t len;         /* 0..32 for IPv4, 0..128 for IPv6 */
};

/* Longest text form plus NUL ("ffff:ffff:...:255.255.255.255"). */
#define MM_ADDR_STRLEN 46
/* Longest prefix text form plus NUL. */
#define MM_PREFIX_STRLEN (MM_ADDR_STRLEN + 4)

/* Word compares rather than memcmp: these run per packet and must stay inline. */
static inline bool mm_addr_is_v4(const struct mm_addr *a)
{
	static const uint8_t mapped_tail[4] = { 0, 0, 0xff, 0xff };
	uint64_t head;
	uint32_t tail, want;

	memcpy(&head, a->b, 8);
	memcpy(&tail, a->b + 8, 4);
	memcpy(&want, mapped_tail, 4);
	return head == 0 && tail == want;
}

/* From four bytes in network order (as they stand in an IPv4 header). */
static inline void mm_addr_set_v4(struct mm_addr *a, const uint8_t v4[4])
{
	/* The prefix as one constant: compilers then write it in two word stores. */
	static const uint8_t mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memcpy(a->b, mapped_prefix, 12);
	memcpy(a->b + 12, v4, 4);
}

/* From a host-order 32-bit value (192.0.2.1 == 0xc0000201). */
static inline void mm_addr_set_v4_u32(struct mm_addr *a, uint32_t v4)
{
	uint8_t b[4] = { (uint8_t)(v4 >> 24), (uint8_t)(v4 >> 16), (uint8_t)(v4 >> 8), (uint8_t)v4 };
	mm_addr_set_v4(a, b);
}

static inline uint32_t mm_addr_v4_u32(const struct mm_addr *a)
{
	return (uint32_t)a->b[12] << 24 | (uint32_t)a->b[13] << 16 | (uint32_t)a->b[14] << 8 | a->b[15];
}

static inline void mm_addr_set_v6(struct mm_addr *a, const uint8_t v6[16])
{
	memcpy(a->b, v6, 16);
}

static inline uint64_t mm_addr_be64_(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

/* Byte-wise order (as memcmp), returned as -1, 0 or 1. */
static inline int mm_addr_cmp(const struct mm_addr *a, const struct mm_addr *b)
{
	uint64_t x = mm_addr_be64_(a->b), y = mm_addr_be64_(b->b);

	if (x == y) {
		x = mm_addr_be64_(a->b + 8);
		y = mm_addr_be64_(b->b + 8);
	}
	return (x > y) - (x < y);
}

static inline bool mm_addr_eq(const struct mm_addr *a, const struct mm_addr *b)
{
	uint64_t x[2], y[2];

	memcpy(x, a->b, 16);
	memcpy(y, b->b, 16);
	return ((x[0] ^ y[0]) | (x[1] ^ y[1])) == 0;
}

/*
 * Parses an IPv4 dotted quad or any RFC 4291/5952 IPv6 text form.
 * Returns 0 or MM_EINVAL (with mm_last_error() naming the text).
 */
int mm_addr_parse(struct mm_addr *out, const char *text);

/* Writes the canonical text form (RFC 5952 for IPv6); returns buf. */
char *mm_addr_format(const struct mm_addr *a, char buf[MM_ADDR_STRLEN]);

/*
 * Parses "ADDR/LEN" or a bare address (a host prefix). Host bits must be
 * zero unless allow_host_bits is set, in which case they are cleared.
 */
int mm_prefix_parse(struct mm_prefix *out, const char *text, bool allow_host_bits);

/* "192.0.2.0/24", "2001:db8::/32"; returns buf. */
char *mm_prefix_format(const struct mm_prefix *p, char buf[MM_PREFIX_STRLEN]);

/* Builds the prefix of a with len bits (family terms). MM_EINVAL if len is too long. */
int mm_prefix_from_addr(struct mm_prefix *out, const struct mm_addr *a, unsigned len);

/* True if a lies inside p (an IPv4 address is never inside an IPv6 prefix but ::ffff:0:0/96). */
bool mm_prefix_contains(const struct mm_prefix *p, const struct mm_addr *a);

/* Prefix length in 128-bit terms (IPv4 /24 is /120). */
unsigned mm_prefix_bits128(const struct mm_prefix *p);

#endif
