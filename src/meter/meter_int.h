/*
 * Meter internals shared with the unit tests: an entry point that meters
 * one already-decoded packet, so the flow table, direction rules, timeouts
 * and fragment handling can be exercised without building packet bytes.
 */
#ifndef MAMORI_METER_METER_INT_H
#define MAMORI_METER_METER_INT_H

#include "meter/decode.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Meters one decoded packet seen at ts_ns (wire_len bytes on the wire) as
 * mm_meter_packets does after decoding, and flushes exported flows to the
 * sink. pkt is borrowed for the call.
 */
void meter_account(struct mm_meter *m, uint64_t ts_ns, uint32_t wire_len, const struct mm_pkt *pkt);

/* Longest probe run of the flow table's index (hash-flooding tests). */
size_t meter_max_probe(const struct mm_meter *m);

#endif
