/*
 * The store's column schema: one column per struct mm_flow field, described
 * by a table (name, width, where the field sits), and the moves between
 * rows of flows and column arrays that the writer and reader make.
 */
#include "store/store_int.h"

#include "mamori/status.h"

#include <stddef.h>

enum col_kind {
	KIND_UINT,    /* an unsigned field of the column's width */
	KIND_ADDR_HI, /* bytes 0..7 of an mm_addr, big-endian */
	KIND_ADDR_LO, /* bytes 8..15 */
	KIND_COUNTRY, /* two letters, the first in the high byte */
};

struct col_def {
	const char *name;
	uint8_t width;
	uint8_t kind;
	uint16_t offset; /* of the field in struct mm_flow */
};

#define COL(id, nm, w, k, field) [id] = { nm, w, k, (uint16_t)offsetof(struct mm_flow, field) }

static const struct col_def cols[MM_STORE_N_COLUMNS] = {
	COL(MM_COL_FIRST_NS, "first_ns", 8, KIND_UINT, first_ns),
	COL(MM_COL_LAST_NS, "last_ns", 8, KIND_UINT, last_ns),
	COL(MM_COL_SRC_HI, "src_hi", 8, KIND_ADDR_HI, src),
	COL(MM_COL_SRC_LO, "src_lo", 8, KIND_ADDR_LO, src),
	COL(MM_COL_DST_HI, "dst_hi", 8, KIND_ADDR_HI, dst),
	COL(MM_COL_DST_LO, "dst_lo", 8, KIND_ADDR_LO, dst),
	COL(MM_COL_NEXT_HOP_HI, "next_hop_hi", 8, KIND_ADDR_HI, next_hop),
	COL(MM_COL_NEXT_HOP_LO, "next_hop_lo", 8, KIND_ADDR_LO, next_hop),
	COL(MM_COL_FWD_PACKETS, "fwd_packets", 8, KIND_UINT, fwd_packets),
	COL(MM_COL_FWD_BYTES, "fwd_bytes", 8, KIND_UINT, fwd_bytes),
	COL(MM_COL_REV_PACKETS, "rev_packets", 8, KIND_UINT, rev_packets),
	COL(MM_COL_REV_BYTES, "rev_bytes", 8, KIND_UINT, rev_bytes),
	COL(MM_COL_ID, "id", 8, KIND_UINT, id),
	COL(MM_COL_TUNNEL_PARENT0, "tunnel_parent0", 8, KIND_UINT, tunnel_parents[0]),
	COL(MM_COL_TUNNEL_PARENT1, "tunnel_parent1", 8, KIND_UINT, tunnel_parents[1]),
	COL(MM_COL_SENSOR_ID, "sensor_id", 4, KIND_UINT, sensor_id),
	COL(MM_COL_SAMPLING_RATE, "sampling_rate", 4, KIND_UINT, sampling_rate),
	COL(MM_COL_SRC_AS, "src_as", 4, KIND_UINT, src_as),
	COL(MM_COL_DST_AS, "dst_as", 4, KIND_UINT, dst_as),
	COL(MM_COL_IN_IF, "in_if", 4, KIND_UINT, in_if),
	COL(MM_COL_OUT_IF, "out_if", 4, KIND_UINT, out_if),
	COL(MM_COL_SRC_PORT, "src_port", 2, KIND_UINT, src_port),
	COL(MM_COL_DST_PORT, "dst_port", 2, KIND_UINT, dst_port),
	COL(MM_COL_VLAN, "vlan", 2, KIND_UINT, vlan),
	COL(MM_COL_SRC_COUNTRY, "src_country", 2, KIND_COUNTRY, src_country),
	COL(MM_COL_DST_COUNTRY, "dst_country", 2, KIND_COUNTRY, dst_country),
	COL(MM_COL_PROTO, "proto", 1, KIND_UINT, proto),
	COL(MM_COL_ICMP_TYPE, "icmp_type", 1, KIND_UINT, icmp_type),
	COL(MM_COL_ICMP_CODE, "icmp_code", 1, KIND_UINT, icmp_code),
	COL(MM_COL_FWD_TCP_FLAGS, "fwd_tcp_flags", 1, KIND_UINT, fwd_tcp_flags),
	COL(MM_COL_REV_TCP_FLAGS, "rev_tcp_flags", 1, KIND_UINT, rev_tcp_flags),
	COL(MM_COL_END_REASON, "end_reason", 1, KIND_UINT, end_reason),
	COL(MM_COL_FLAGS, "flags", 1, KIND_UINT, flags),
};

const char *mm_store_column_name(unsigned col)
{
	return col < MM_STORE_N_COLUMNS ? cols[col].name : NULL;
}

unsigned mm_store_column_width(unsigned col)
{
	return col < MM_STORE_N_COLUMNS ? cols[col].width : 0;
}

int mm_store_column_find(const char *name, unsigned *out)
{
	for (unsigned c = 0; c < MM_STORE_N_COLUMNS; c++) {
		if (strcmp(cols[c].name, name) == 0) {
			*out = c;
			return 0;
		}
	}
	return mm_fail(MM_ENOENT, "store: no column '%s'", name);
}

/* Big-endian 64-bit loads and stores as one move and a byte swap. */
static uint64_t be64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, 8);
}

static uint64_t load_uint(const uint8_t *p, unsigned width)
{
	uint8_t v8;
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;

	switch (width) {
	case 1:
		memcpy(&v8, p, 1);
		return v8;
	case 2:
		memcpy(&v16, p, 2);
		return v16;
	case 4:
		memcpy(&v32, p, 4);
		return v32;
	default:
		memcpy(&v64, p, 8);
		return v64;
	}
}

static void store_uint(uint8_t *p, unsigned width, uint64_t v)
{
	uint8_t v8 = (uint8_t)v;
	uint16_t v16 = (uint16_t)v;
	uint32_t v32 = (uint32_t)v;

	switch (width) {
	case 1:
		memcpy(p, &v8, 1);
		break;
	case 2:
		memcpy(p, &v16, 2);
		break;
	case 4:
		memcpy(p, &v32, 4);
		break;
	default:
		memcpy(p, &v, 8);
		break;
	}
}

static uint64_t field_value(const struct col_def *d, const uint8_t *field)
{
	switch (d->kind) {
	case KIND_ADDR_HI:
		return be64(field);
	case KIND_ADDR_LO:
		return be64(field + 8);
	case KIND_COUNTRY:
		return (uint64_t)field[0] << 8 | field[1];
	default:
		return load_uint(field, d->width);
	}
}

static void field_set(const struct col_def *d, uint8_t *field, uint64_t v)
{
	switch (d->kind) {
	case KIND_ADDR_HI:
		put_be64(field, v);
		break;
	case KIND_ADDR_LO:
		put_be64(field + 8, v);
		break;
	case KIND_COUNTRY:
		field[0] = (uint8_t)(v >> 8);
		field[1] = (uint8_t)v;
		break;
	default:
		store_uint(field, d->width, v);
		break;
	}
}

uint64_t mm_store_flow_value(const struct mm_flow *f, unsigned col)
{
	MM_BUG(col >= MM_STORE_N_COLUMNS);
	return field_value(&cols[col], (const uint8_t *)f + cols[col].offset);
}

void store_column_gather(const struct mm_flow *flows, size_t n, unsigned col, uint64_t *out)
{
	const struct col_def *d = &cols[col];
	const uint8_t *base = (const uint8_t *)flows + d->offset;
	const size_t stride = sizeof(struct mm_flow);

	/* One loop per kind and width, so no row pays for a switch or a call. */
	switch (d->kind) {
	case KIND_ADDR_HI:
		for (size_t i = 0; i < n; i++)
			out[i] = be64(base + i * stride);
		return;
	case KIND_ADDR_LO:
		for (size_t i = 0; i < n; i++)
			out[i] = be64(base + i * stride + 8);
		return;
	case KIND_COUNTRY:
		for (size_t i = 0; i < n; i++)
			out[i] = (uint64_t)base[i * stride] << 8 | base[i * stride + 1];
		return;
	default:
		break;
	}
	switch (d->width) {
	case 1:
		for (size_t i = 0; i < n; i++)
			out[i] = base[i * stride];
		break;
	case 2:
		for (size_t i = 0; i < n; i++)
			out[i] = load_uint(base + i * stride, 2);
		break;
	case 4:
		for (size_t i = 0; i < n; i++)
			out[i] = load_uint(base + i * stride, 4);
		break;
	default:
		for (size_t i = 0; i < n; i++)
			out[i] = load_uint(base + i * stride, 8);
		break;
	}
}

void store_column_narrow(const uint64_t *vals, size_t n, unsigned width, void *out)
{
	uint8_t *o = out;

	switch (width) {
	case 1:
		for (size_t i = 0; i < n; i++)
			o[i] = (uint8_t)vals[i];
		break;
	case 2:
		for (size_t i = 0; i < n; i++)
			store_uint(o + 2 * i, 2, vals[i]);
		break;
	case 4:
		for (size_t i = 0; i < n; i++)
			store_uint(o + 4 * i, 4, vals[i]);
		break;
	default:
		memcpy(out, vals, n * 8);
		break;
	}
}

void store_column_scatter(struct mm_flow *flows, size_t n, unsigned col, const void *vals)
{
	const struct col_def *d = &cols[col];
	const uint8_t *v = vals;
	uint8_t *base = (uint8_t *)flows + d->offset;

	for (size_t i = 0; i < n; i++)
		field_set(d, base + i * sizeof(struct mm_flow), load_uint(v + i * d->width, d->width));
}
