/*
 * libFuzzer target for the packet decoder: the first input byte picks one
 * of the link types the decoder supports (plus one it does not), the rest
 * is the frame, decoded with the largest encapsulation cap. The frame is
 * copied to an exact-size buffer so ASan sees any read past cap_len.
 */
#include "meter/decode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t linktypes[] = {
	MM_LINK_ETHERNET, MM_LINK_NULL,        MM_LINK_LOOP,       MM_LINK_PPP,
	MM_LINK_PPP_HDLC, MM_LINK_PPP_ETHER,   MM_LINK_RAW,        MM_LINK_IPV4,
	MM_LINK_IPV6,     12,                  14,                 MM_LINK_LINUX_SLL,
	MM_LINK_LINUX_SLL2, MM_LINK_IEEE802_11, MM_LINK_IEEE802_11_RADIOTAP, 4242,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mm_pkt pkt;
	uint8_t *frame;

	if (size < 1)
		return 0;
	uint16_t linktype = linktypes[data[0] % (sizeof(linktypes) / sizeof(linktypes[0]))];
	size_t len = size - 1;
	frame = malloc(len ? len : 1);
	if (!frame)
		return 0;
	memcpy(frame, data + 1, len);
	enum mm_anomaly a = mm_decode_packet(linktype, frame, (uint32_t)len, MM_ENCAP_MAX, &pkt);
	if (a >= MM_ANOM__COUNT || pkt.n_ip > MM_ENCAP_MAX + 1)
		abort();
	for (unsigned i = 0; i < pkt.n_ip; i++) {
		const struct mm_pkt_ip *ip = &pkt.ip[i];
		/* Reported layers are fully set: these reads are what MSan/UBSan would flag otherwise. */
		if ((ip->version != 4 && ip->version != 6) || ip->frag > MM_FRAG_LATER ||
		    ip->tunnel > MM_TUNNEL_AYIYA || (i + 1 < pkt.n_ip && ip->tunnel == MM_TUNNEL_NONE))
			abort();
		if (ip->header_len > ip->ip_len && ip->ip_len != 0 && ip->frag == MM_FRAG_NONE &&
		    ip->version == 4)
			abort();
	}
	free(frame);
	return 0;
}
