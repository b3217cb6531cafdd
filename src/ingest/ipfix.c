/*
 * IPFIX (RFC 7011): a 16-byte message header, then sets: templates (2),
 * options templates (3) and data (>= 256). Handles enterprise elements,
 * variable-length fields, template withdrawal, and the record-counting
 * sequence number; every length is checked before the bytes it covers.
 */
#include "ingest/ingest_int.h"

#include "mamori/status.h"

#define IPFIX_HEADER_LEN 16
#define SET_TEMPLATE 2
#define SET_OPTIONS 3

static int ipfix_set_error(struct msg_ctx *m, enum mm_ingest_drop reason, const char *what, uint16_t id)
{
	ingest_count_drop(m, reason);
	return mm_fail(MM_EFORMAT, "ipfix: domain %u: %s %u", m->domain, what, id);
}

/*
 * Parses n field specifiers at p (4 bytes, 8 with an enterprise number);
 * returns the bytes used, or 0 if they run past avail.
 */
static size_t ipfix_read_fields(struct tmpl_field *out, const uint8_t *p, size_t avail, size_t n,
				size_t n_scope)
{
	size_t pos = 0;

	for (size_t i = 0; i < n; i++) {
		uint16_t id;

		if (avail - pos < 4)
			return 0;
		id = rd16(p + pos);
		out[i] = (struct tmpl_field){ .id = id & 0x7fff, .len = rd16(p + pos + 2), .scope = i < n_scope };
		pos += 4;
		if (id & 0x8000) {
			if (avail - pos < 4)
				return 0;
			out[i].enterprise = rd32(p + pos);
			pos += 4;
		}
	}
	return pos;
}

static int ipfix_template_set(struct msg_ctx *m, uint16_t set_id, const uint8_t *p, size_t len)
{
	bool options = set_id == SET_OPTIONS;
	size_t pos = 0;

	/* Fewer than 4 bytes left (the smallest record, a withdrawal) is padding. */
	while (len - pos >= 4) {
		struct tmpl_spec spec = { .id = rd16(p + pos), .version = 10, .options = options,
					  .fields = m->ing->spec_fields };
		size_t n = rd16(p + pos + 2), n_scope = 0, hdr = 4, used;

		if (n == 0) {
			if (spec.id == set_id)
				tmpl_withdraw_all(m, options);
			else
				tmpl_withdraw(m, spec.id);
			pos += 4;
			continue;
		}
		if (options) {
			if (len - pos < 6)
				return ipfix_set_error(m, MM_IDROP_TEMPLATE_OVERRUN, "set ends inside options template", spec.id);
			n_scope = rd16(p + pos + 4);
			hdr = 6;
		}
		if (n > m->ing->cfg.max_fields)
			return ipfix_set_error(m, MM_IDROP_TEMPLATE_BAD_FIELDS, "too many fields in template", spec.id);
		used = ipfix_read_fields(m->ing->spec_fields, p + pos + hdr, len - pos - hdr, n, n_scope);
		if (!used)
			return ipfix_set_error(m, MM_IDROP_TEMPLATE_OVERRUN, "set ends inside template", spec.id);
		pos += hdr + used;
		spec.n_fields = (uint16_t)n;
		if (options && (n_scope == 0 || n_scope > n)) {
			ingest_count_drop(m, MM_IDROP_TEMPLATE_BAD_FIELDS);
			continue;
		}
		tmpl_insert(m, &spec);
	}
	return 0;
}

int ipfix_decode(struct msg_ctx *m, const uint8_t *msg, size_t len)
{
	size_t pos = IPFIX_HEADER_LEN, mlen;
	int rc = 0;

	if (len < IPFIX_HEADER_LEN) {
		m->ing->orphan.messages++;
		m->ing->orphan.drops[MM_IDROP_SHORT_HEADER]++;
		return mm_fail(MM_ETRUNC, "ipfix: header needs 16 bytes, message has %zu", len);
	}
	if (!ingest_session(m, 10, rd32(msg + 12)))
		return mm_fail(MM_ELIMIT, "ipfix: session table full");
	mlen = rd16(msg + 2);
	if (mlen < IPFIX_HEADER_LEN || mlen > len) {
		ingest_count_drop(m, MM_IDROP_BAD_LENGTH);
		return mm_fail(MM_EFORMAT, "ipfix: domain %u: length %zu but datagram has %zu", m->domain, mlen, len);
	}
	m->export_secs = rd32(msg + 4);
	m->sequence = rd32(msg + 8);
	while (mlen - pos >= 4 && !rc) {
		uint16_t id = rd16(msg + pos), slen = rd16(msg + pos + 2);

		if (slen < 4 || slen > mlen - pos) {
			rc = ipfix_set_error(m, MM_IDROP_BAD_SET, "bad length for set", id);
			break;
		}
		if (id == SET_TEMPLATE || id == SET_OPTIONS) {
			rc = ipfix_template_set(m, id, msg + pos + 4, slen - 4u);
		} else if (id >= 256) {
			records_data_set(m, id, msg + pos + 4, slen - 4u);
		}
		pos += slen;
	}
	ingest_sequence(m, m->sequence, (uint32_t)m->n_data_records, !m->records_unknown && !rc);
	return rc;
}
