/*
 * The guard as the commands meet it (cli_guard.h).
 */
#include "cli/cli_guard.h"

#include "cli/cli.h"

#include "mamori/oversight.h"
#include "mamori/status.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int cli_guard(const char *command, const char *data_dir, const struct mm_guard_act *act,
	      struct mm_guard_decision *d, bool quiet)
{
	int rc = mm_guard(data_dir, act, d);

	if (rc)
		return cli_fail(command, rc);
	if (d->lab && !quiet)
		fputs(CLI_LAB_NOTICE, stderr);
	if (!d->allowed) {
		fprintf(stderr, "mamori %s: refused: %s\n", command, d->reason);
		return CLI_EXIT_REFUSED;
	}
	return 0;
}

int cli_guard_collect(struct cli_guarded *g, const char *command, const char *authz, const char *data_dir,
		      uint32_t sensor, bool quiet)
{
	int rc;

	*g = (struct cli_guarded){ .dir = data_dir, .act = { .act = MM_ACT_COLLECT, .authz_id = authz, .sensor = sensor } };
	rc = cli_guard(command, data_dir, &g->act, &g->d, quiet);
	if (rc)
		mm_guard_decision_clear(&g->d);
	return rc;
}

int cli_guard_finish(struct cli_guarded *g, const char *command, int exit_code)
{
	json_t *result = json_pack("{s:i}", "exit", exit_code);
	int rc = mm_guard_done(g->dir, &g->act, &g->d, result);

	json_decref(result);
	mm_guard_decision_clear(&g->d);
	if (rc && exit_code == CLI_EXIT_OK)
		return cli_fail(command, rc);
	return exit_code;
}

int cli_guard_scan_begin(struct cli_guarded_scan *g, const char *command, const char *data_dir, enum mm_act act,
			 const char *authz, uint64_t since_ns, uint64_t until_ns, bool quiet)
{
	int rc;

	memset(g, 0, sizeof(*g));
	if ((rc = mm_query_parse("", &g->all, NULL)) < 0)
		return cli_fail(command, rc);
	g->dir = data_dir;
	g->act = (struct mm_guard_act){ .act = act, .authz_id = authz, .query = g->all, .since_ns = since_ns,
					.until_ns = until_ns, .record_output = true };
	rc = cli_guard(command, data_dir, &g->act, &g->d, quiet);
	if (rc) {
		mm_guard_decision_clear(&g->d);
		mm_query_free(g->all);
		memset(g, 0, sizeof(*g));
	}
	return rc;
}

int cli_guard_scan_end(struct cli_guarded_scan *g, const json_t *result)
{
	int rc = mm_guard_done(g->dir, &g->act, &g->d, result);

	mm_guard_decision_clear(&g->d);
	mm_query_free(g->all);
	memset(g, 0, sizeof(*g));
	return rc;
}

bool cli_lab_notice_for(const char *data_dir)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/oversight/panel.json", data_dir);
	if (stat(path, &st) == 0)
		return false;
	fputs(CLI_LAB_NOTICE, stderr);
	return true;
}

int cli_signers_add(const char *command, struct cli_signers *list, const char *path)
{
	int rc;

	if (list->n == sizeof(list->s) / sizeof(list->s[0]))
		return cli_usage_error(command, "at most %zu keys", sizeof(list->s) / sizeof(list->s[0]));
	rc = mm_signer_load(path, &list->s[list->n]);
	if (rc)
		return cli_fail(command, rc);
	list->n++;
	return 0;
}

void cli_signers_free(struct cli_signers *list)
{
	for (size_t i = 0; i < list->n; i++)
		mm_signer_free(list->s[i]);
	list->n = 0;
}

int cli_expire_receipt(const char *data_dir, uint64_t cutoff_ns, const struct mm_store_segment_info *seg,
		       size_t n_seg, const struct mm_store_expired *x)
{
	char name[32], t0[64], t1[64];
	bool lab = cli_lab_notice_for(data_dir);
	json_t *segs = json_array(), *detail;
	int rc;

	for (size_t i = 0; i < n_seg; i++) {
		snprintf(name, sizeof(name), "seg-%06" PRIu64 ".mms", seg[i].id);
		json_array_append_new(segs, json_pack("{s:s, s:I, s:I, s:s, s:s}", "segment", name, "flows",
						      (json_int_t)seg[i].n_rows, "bytes", (json_int_t)seg[i].file_bytes,
						      "first", mm_oversight_time_format(seg[i].min_first_ns, t0), "last",
						      mm_oversight_time_format(seg[i].max_last_ns, t1)));
	}
	detail = json_pack("{s:s, s:o, s:I, s:I, s:I}", "cutoff", mm_oversight_time_format(cutoff_ns, t0), "segments",
			   segs, "n_segments", (json_int_t)x->segments, "flows", (json_int_t)x->flows, "bytes",
			   (json_int_t)x->bytes);
	if (!detail)
		return mm_fail(MM_ENOMEM, "expire: out of memory");
	json_object_set_new(detail, "from", x->segments ? json_string(mm_oversight_time_format(x->min_first_ns, t0))
						       : json_null());
	json_object_set_new(detail, "to", x->segments ? json_string(mm_oversight_time_format(x->max_last_ns, t1))
						     : json_null());
	rc = mm_guard_record(data_dir, "store.expire", "recorded", lab, NULL, NULL, detail);
	json_decref(detail);
	return rc;
}
