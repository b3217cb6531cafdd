/*
 * Address and prefix parsing and formatting (see addr.h). inet_pton and
 * inet_ntop do the text work: they are strict (no octal, no short forms
 * for IPv4) and glibc's inet_ntop already follows RFC 5952.
 */
#include "mamori/addr.h"

#include "mamori/status.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>

int mm_addr_parse(struct mm_addr *out, const char *text)
{
	uint8_t v4[4];

	if (inet_pton(AF_INET, text, v4) == 1) {
		mm_addr_set_v4(out, v4);
		return 0;
	}
	if (inet_pton(AF_INET6, text, out->b) == 1)
		return 0;
	return mm_fail(MM_EINVAL, "'%s' is not an IPv4 or IPv6 address", text);
}

char *mm_addr_format(const struct mm_addr *a, char buf[MM_ADDR_STRLEN])
{
	if (mm_addr_is_v4(a))
		inet_ntop(AF_INET, a->b + 12, buf, MM_ADDR_STRLEN);
	else
		inet_ntop(AF_INET6, a->b, buf, MM_ADDR_STRLEN);
	return buf;
}

unsigned mm_prefix_bits128(const struct mm_prefix *p)
{
	return mm_addr_is_v4(&p->addr) ? 96u + p->len : p->len;
}

static bool host_bits_clear(const struct mm_addr *a, unsigned bits128)
{
	for (unsigned i = bits128; i < 128; i++)
		if (a->b[i / 8] & (0x80u >> (i % 8)))
			return false;
	return true;
}

static void clear_host_bits(struct mm_addr *a, unsigned bits128)
{
	for (unsigned i = bits128; i < 128; i++)
		a->b[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
}

int mm_prefix_from_addr(struct mm_prefix *out, const struct mm_addr *a, unsigned len)
{
	unsigned max = mm_addr_is_v4(a) ? 32 : 128;

	if (len > max)
		return mm_fail(MM_EINVAL, "prefix length %u exceeds %u", len, max);
	out->addr = *a;
	out->len = (uint8_t)len;
	clear_host_bits(&out->addr, mm_prefix_bits128(out));
	return 0;
}

int mm_prefix_parse(struct mm_prefix *out, const char *text, bool allow_host_bits)
{
	char addr_text[MM_ADDR_STRLEN];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	struct mm_addr a;
	unsigned long len;
	unsigned max;
	char *end;

	if (alen == 0 || alen >= sizeof(addr_text))
		return mm_fail(MM_EINVAL, "'%s' is not a prefix", text);
	memcpy(addr_text, text, alen);
	addr_text[alen] = '\0';
	if (mm_addr_parse(&a, addr_text) < 0)
		return mm_fail(MM_EINVAL, "'%s' is not a prefix: bad address", text);
	max = mm_addr_is_v4(&a) ? 32 : 128;
	if (!slash) {
		len = max;
	} else {
		if (slash[1] < '0' || slash[1] > '9')
			return mm_fail(MM_EINVAL, "'%s': prefix length missing", text);
		len = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || len > max)
			return mm_fail(MM_EINVAL, "'%s': prefix length must be 0..%u", text, max);
	}
	out->addr = a;
	out->len = (uint8_t)len;
	if (!host_bits_clear(&out->addr, mm_prefix_bits128(out))) {
		if (!allow_host_bits)
			return mm_fail(MM_EINVAL, "'%s': host bits set beyond /%lu", text, len);
		clear_host_bits(&out->addr, mm_prefix_bits128(out));
	}
	return 0;
}

char *mm_prefix_format(const struct mm_prefix *p, char buf[MM_PREFIX_STRLEN])
{
	char a[MM_ADDR_STRLEN];

	snprintf(buf, MM_PREFIX_STRLEN, "%s/%u", mm_addr_format(&p->addr, a), p->len);
	return buf;
}

bool mm_prefix_contains(const struct mm_prefix *p, const struct mm_addr *a)
{
	unsigned bits = mm_prefix_bits128(p);
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(p->addr.b, a->b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((p->addr.b[whole] ^ a->b[whole]) & (uint8_t)(0xff00u >> rest)) == 0;
}
