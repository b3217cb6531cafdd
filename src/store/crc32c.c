/*
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for segment and
 * catalog checksums: the SSE4.2 instruction where the CPU has it, else a
 * slicing-by-8 table. Both give the standard CRC-32C ("123456789" →
 * 0xE3069283), so files do not depend on the machine that wrote them.
 */
#include "store/store_int.h"

#include <pthread.h>
#include <stdbool.h>

#define CRC32C_POLY 0x82F63B78u

static uint32_t table[8][256];
static bool have_sse42;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (CRC32C_POLY & (0u - (c & 1)));
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
#if defined(__x86_64__)
	have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_table(uint32_t c, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint32_t lo = c ^ get_u32(p), hi = get_u32(p + 4);

		c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
		    table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		    table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
	uint64_t c64 = c;

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c64 = __builtin_ia32_crc32di(c64, w);
		p += 8;
		len -= 8;
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}
#endif

uint32_t store_crc32c(uint32_t crc, const void *data, size_t len)
{
	uint32_t c = ~crc;

	pthread_once(&init_once, crc_init);
#if defined(__x86_64__)
	if (have_sse42)
		return ~crc_hw(c, data, len);
#endif
	return ~crc_table(c, data, len);
}
