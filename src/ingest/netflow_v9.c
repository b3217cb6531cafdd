/*
 * NetFlow v9 (RFC 3954): a 20-byte header, then flowsets: templates (id 0),
 * options templates (id 1) and data (id >= 256). Every flowset and template
 * length is checked against what is left before it is read; a malformed
 * flowset ends the message, with what came before it kept.
 */
#include "ingest/ingest_int.h"

#include "mamori/status.h"

#include <string.h>

#define V9_HEADER_LEN 20

static int v9_set_error(struct msg_ctx *m, enum mm_ingest_drop reason, const char *what, uint16_t id)
{
	ingest_count_drop(m, reason);
	return mm_fail(MM_EFORMAT, "netflow v9: source %u: %s %u", m->domain, what, id);
}

/* Reads n (type, length) pairs at p into the spec buffer starting at index first. */
static void v9_read_fields(struct tmpl_field *out, const uint8_t *p, size_t n, bool scope)
{
	for (size_t i = 0; i < n; i++, p += 4)
		out[i] = (struct tmpl_field){ .id = rd16(p), .len = rd16(p + 2), .scope = scope };
}

static int v9_template_set(struct msg_ctx *m, const uint8_t *p, size_t len)
{
	struct tmpl_field *fields = m->ing->spec_fields;
	size_t pos = 0;

	while (len - pos >= 4) {
		struct tmpl_spec spec = { .id = rd16(p + pos), .version = 9, .fields = fields };
		size_t n = rd16(p + pos + 2);

		if (n > m->ing->cfg.max_fields)
			return v9_set_error(m, MM_IDROP_TEMPLATE_BAD_FIELDS, "too many fields in template", spec.id);
		if (n * 4 > len - pos - 4)
			return v9_set_error(m, MM_IDROP_TEMPLATE_OVERRUN, "flowset ends inside template", spec.id);
		v9_read_fields(fields, p + pos + 4, n, false);
		spec.n_fields = (uint16_t)n;
		pos += 4 + n * 4;
		/* A refused template is counted; the flowset's next template may still be good. */
		tmpl_insert(m, &spec);
	}
	return 0;
}

static int v9_options_set(struct msg_ctx *m, const uint8_t *p, size_t len)
{
	struct tmpl_field *fields = m->ing->spec_fields;
	size_t pos = 0;

	/* Fewer than 6 bytes left is the padding to a 4-byte boundary. */
	while (len - pos >= 6) {
		struct tmpl_spec spec = { .id = rd16(p + pos), .version = 9, .options = true, .fields = fields };
		size_t scope_len = rd16(p + pos + 2), opt_len = rd16(p + pos + 4);
		size_t n_scope = scope_len / 4, n = (scope_len + opt_len) / 4;

		if (scope_len % 4 || opt_len % 4)
			return v9_set_error(m, MM_IDROP_TEMPLATE_BAD_LENGTH, "options template length not a multiple of 4", spec.id);
		if (n > m->ing->cfg.max_fields)
			return v9_set_error(m, MM_IDROP_TEMPLATE_BAD_FIELDS, "too many fields in options template", spec.id);
		if (scope_len + opt_len > len - pos - 6)
			return v9_set_error(m, MM_IDROP_TEMPLATE_OVERRUN, "flowset ends inside options template", spec.id);
		v9_read_fields(fields, p + pos + 6, n_scope, true);
		v9_read_fields(fields + n_scope, p + pos + 6 + scope_len, n - n_scope, false);
		spec.n_fields = (uint16_t)n;
		pos += 6 + scope_len + opt_len;
		tmpl_insert(m, &spec);
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

int netflow_v9_decode(struct msg_ctx *m, const uint8_t *msg, size_t len)
{
	size_t pos = V9_HEADER_LEN;
	int rc = 0;

	if (len < V9_HEADER_LEN) {
		m->ing->orphan.messages++;
		m->ing->orphan.drops[MM_IDROP_SHORT_HEADER]++;
		return mm_fail(MM_ETRUNC, "netflow v9: header needs 20 bytes, message has %zu", len);
	}
	if (!ingest_session(m, 9, rd32(msg + 16)))
		return mm_fail(MM_ELIMIT, "netflow v9: session table full");
	m->uptime_ms = rd32(msg + 4);
	m->export_secs = rd32(msg + 8);
	m->sequence = rd32(msg + 12);
	ingest_sequence(m, m->sequence, 1, true);
	while (len - pos >= 4 && !rc) {
		uint16_t id = rd16(msg + pos), flen = rd16(msg + pos + 2);

		if (flen < 4 || flen > len - pos) {
			/* Some exporters pad the datagram with zeros after the last flowset. */
			if (all_zero(msg + pos, len - pos))
				break;
			return v9_set_error(m, MM_IDROP_BAD_SET, "bad flowset length for flowset", id);
		}
		if (id == 0)
			rc = v9_template_set(m, msg + pos + 4, flen - 4u);
		else if (id == 1)
			rc = v9_options_set(m, msg + pos + 4, flen - 4u);
		else if (id >= 256)
			records_data_set(m, id, msg + pos + 4, flen - 4u);
		pos += flen;
	}
	return rc;
}
