/*
 * Names for flow record fields (see flow.h).
 */
#include "mamori/flow.h"

#include "mamori/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

const char *mm_end_reason_name(unsigned reason)
{
	switch (reason) {
	case MM_END_IDLE: return "idle";
	case MM_END_ACTIVE: return "active";
	case MM_END_EOF: return "eof";
	case MM_END_FORCED: return "forced";
	case MM_END_RESOURCE: return "resource";
	}
	return "unknown";
}

static const struct {
	uint8_t number;
	const char *name;
} proto_names[] = {
	{ 1, "icmp" }, { 2, "igmp" }, { 4, "ipip" }, { 6, "tcp" }, { 17, "udp" },
	{ 41, "ipv6" }, { 47, "gre" }, { 50, "esp" }, { 51, "ah" }, { 58, "ipv6-icmp" },
	{ 89, "ospf" }, { 103, "pim" }, { 112, "vrrp" }, { 132, "sctp" },
};

const char *mm_proto_name(uint8_t proto, char buf[8])
{
	for (size_t i = 0; i < sizeof(proto_names) / sizeof(proto_names[0]); i++)
		if (proto_names[i].number == proto)
			return proto_names[i].name;
	snprintf(buf, 8, "%u", proto);
	return buf;
}

int mm_proto_parse(const char *text, uint8_t *out)
{
	char *end;
	unsigned long v;

	for (size_t i = 0; i < sizeof(proto_names) / sizeof(proto_names[0]); i++) {
		if (strcasecmp(proto_names[i].name, text) == 0) {
			*out = proto_names[i].number;
			return 0;
		}
	}
	if (strcasecmp(text, "icmp6") == 0 || strcasecmp(text, "icmpv6") == 0) {
		*out = 58;
		return 0;
	}
	if (text[0] >= '0' && text[0] <= '9') {
		v = strtoul(text, &end, 10);
		if (*end == '\0' && v <= 255) {
			*out = (uint8_t)v;
			return 0;
		}
	}
	return mm_fail(MM_EINVAL, "'%s' is not a protocol name or number 0..255", text);
}

char *mm_tcp_flags_format(uint8_t flags, char buf[9])
{
	/* Bit order of the TCP header from CWR (0x80) down to FIN (0x01). */
	static const char letters[] = "CEUAPRSF";

	for (int i = 0; i < 8; i++)
		buf[i] = (flags & (0x80 >> i)) ? letters[i] : '.';
	buf[8] = '\0';
	return buf;
}
