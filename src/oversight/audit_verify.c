/*
 * `mamori audit verify`: everything recomputed from the files alone, in one
 * sequential pass — record framing and sequence, leaf and node hashes
 * (compared with the hash cache as they are produced, in the cache's own
 * post-order), the index, and every checkpoint's signature and root at its
 * size. Because every checkpoint's root is recomputed from the same entries
 * as the latest one, each earlier checkpoint is a prefix of the latest: the
 * consistency a proof would show, checked directly.
 */
#include "oversight/audit_int.h"

#include "mamori/status.h"
#include "oversight/note.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK (4u << 20) /* larger than the largest record */

/* A sequential reader that guarantees n contiguous bytes at a time. */
struct reader {
	int fd;
	uint8_t *buf;
	size_t len, pos;
	uint64_t off; /* file offset of buf[pos] */
};

static int reader_init(struct reader *r, int fd, uint64_t off)
{
	r->fd = fd;
	r->len = r->pos = 0;
	r->off = off;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); /* one pass: read ahead generously */
	r->buf = malloc(READ_CHUNK);
	return r->buf ? 0 : mm_fail(MM_ENOMEM, "audit: out of memory");
}

/* Returns how many of the wanted n bytes are available (fewer only at end of file). */
static int reader_want(struct reader *r, size_t n, size_t *avail)
{
	if (r->len - r->pos < n) {
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
		while (r->len < n) {
			ssize_t got = pread(r->fd, r->buf + r->len, READ_CHUNK - r->len,
					    (off_t)(r->off + r->len));
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0)
				return mm_fail(MM_EIO, "audit: read: %s", strerror(errno));
			if (got == 0)
				break;
			r->len += (size_t)got;
		}
	}
	*avail = r->len - r->pos < n ? r->len - r->pos : n;
	return 0;
}

static void reader_skip(struct reader *r, size_t n)
{
	r->pos += n;
	r->off += n;
}

/*
 * Leaf hashes computed ahead, a window at a time, on two threads: the
 * records wholly inside the reader's window are framed by their length
 * fields only, and their leaves hashed in two halves (each in interleaved
 * pairs). The sequential pass then takes a leaf from here when its record
 * is at the expected offset and checks everything else itself, so a
 * damaged record costs nothing but the hashes it spoiled.
 */
#define PREHASH_MAX 32768

struct prehash {
	uint64_t offs[PREHASH_MAX];
	const uint8_t *data[PREHASH_MAX];
	uint32_t lens[PREHASH_MAX];
	uint8_t leaves[PREHASH_MAX][MERKLE_HASH_LEN];
	size_t n, cur;
};

struct prehash_part {
	struct prehash *ph;
	size_t begin, end;
};

static void *prehash_run(void *arg)
{
	struct prehash_part *p = arg;
	struct prehash *ph = p->ph;
	size_t i = p->begin;

	for (; i + 1 < p->end; i += 2)
		merkle_leaf_hash_pair(ph->data[i], ph->lens[i], ph->data[i + 1], ph->lens[i + 1],
				      ph->leaves[i], ph->leaves[i + 1]);
	if (i < p->end)
		merkle_leaf_hash(ph->data[i], ph->lens[i], ph->leaves[i]);
	return NULL;
}

static int prehash_fill(struct prehash *ph, struct reader *r, uint64_t esize, bool two_threads)
{
	size_t avail, at = 0;
	uint64_t want = esize - r->off;
	struct prehash_part halves[2];
	pthread_t worker;
	int rc;

	ph->n = ph->cur = 0;
	rc = reader_want(r, want < READ_CHUNK ? (size_t)want : READ_CHUNK, &avail);
	if (rc < 0)
		return rc;
	while (ph->n < PREHASH_MAX && avail - at >= AUDIT_REC_HEADER) {
		uint32_t len = get_le32(r->buf + r->pos + at);
		if (len > MM_AUDIT_ENTRY_MAX || avail - at - AUDIT_REC_HEADER < len)
			break;
		ph->offs[ph->n] = r->off + at;
		ph->data[ph->n] = r->buf + r->pos + at + AUDIT_REC_HEADER;
		ph->lens[ph->n++] = len;
		at += AUDIT_REC_HEADER + len;
	}
	halves[0] = (struct prehash_part){ph, 0, ph->n / 2};
	halves[1] = (struct prehash_part){ph, ph->n / 2, ph->n};
	if (two_threads && ph->n >= 64 && pthread_create(&worker, NULL, prehash_run, &halves[1]) == 0) {
		prehash_run(&halves[0]);
		pthread_join(worker, NULL);
	} else {
		halves[0].end = ph->n;
		prehash_run(&halves[0]);
	}
	return 0;
}

static int problem(struct mm_audit_verify_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int problem(struct mm_audit_verify_result *res, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->problem, sizeof(res->problem), fmt, ap);
	va_end(ap);
	res->ok = false;
	return 0;
}

struct verify_ctx {
	const char *data_dir;
	const struct mm_verifier *key;
	const struct mm_verifier *const *witnesses;
	size_t n_witnesses;
	struct mm_audit_verify_result *res;
};

/* Checks the checkpoint file for tree size size against the recomputed root. */
static int check_checkpoint(struct verify_ctx *c, uint64_t size, const uint8_t root[32],
			    bool latest)
{
	struct note note = {0};
	struct checkpoint cp;
	char *text = NULL;
	size_t len = 0;
	int rc;

	rc = audit_read_checkpoint(c->data_dir, size, &text, &len);
	if (rc < 0)
		return rc;
	if (note_parse(text, len, &note) < 0 || checkpoint_parse(note.text, note.text_len, &cp) < 0) {
		problem(c->res, "checkpoint %020" PRIu64 ": %s", size, mm_last_error());
		goto out;
	}
	if (strcmp(cp.origin, mm_verifier_name(c->key)) != 0) {
		problem(c->res, "checkpoint %020" PRIu64 ": origin \"%s\" is not the log's key name %s",
			size, cp.origin, mm_verifier_name(c->key));
		goto out;
	}
	if (cp.size != size) {
		problem(c->res, "checkpoint %020" PRIu64 ": says tree size %" PRIu64
				" (file renamed or edited)",
			size, cp.size);
		goto out;
	}
	rc = note_verify(&note, c->key);
	if (rc < 0) {
		problem(c->res, "checkpoint %020" PRIu64 ": %s", size, mm_last_error());
		rc = 0;
		goto out;
	}
	if (memcmp(cp.root, root, MERKLE_HASH_LEN) != 0) {
		problem(c->res,
			"checkpoint %020" PRIu64 ": signed root hash differs from the root of the "
			"first %" PRIu64 " entries (entries before %" PRIu64 " were changed)",
			size, size, size);
		goto out;
	}
	c->res->n_checkpoints++;
	if (latest) {
		c->res->checkpoint_size = size;
		for (size_t w = 0; w < c->n_witnesses; w++) {
			uint64_t t;
			int wrc = note_verify_cosignature(&note, c->witnesses[w], &t);
			if (wrc == MM_EPERM) {
				problem(c->res, "checkpoint %020" PRIu64 ": %s", size, mm_last_error());
				goto out;
			}
			c->res->n_cosignatures += wrc == 0;
		}
	}
out:
	note_free(&note);
	free(text);
	return rc;
}

int mm_audit_verify(const char *data_dir, const struct mm_verifier *key,
		    const struct mm_verifier *const *witnesses, size_t n_witnesses,
		    struct mm_audit_verify_result *res)
{
	struct verify_ctx c = {data_dir, key, witnesses, n_witnesses, res};
	struct mm_verifier *own_key = NULL;
	struct reader re = {0}, ri = {0}, rh = {0};
	struct merkle_stream st;
	uint8_t leaf[MERKLE_HASH_LEN], nodes[64][MERKLE_HASH_LEN], root[MERKLE_HASH_LEN];
	uint64_t *cps = NULL, i = 0, esize;
	struct prehash *ph = NULL;
	bool two_threads = sysconf(_SC_NPROCESSORS_ONLN) > 1;
	size_t n_cps = 0, ci = 0, avail;
	int fd_e = -1, fd_i = -1, fd_h = -1, rc;
	char path[4096];
	struct stat sb;

	memset(res, 0, sizeof(*res));
	res->ok = true;
	res->sha_accelerated = merkle_sha_accelerated();
	rc = audit_path(path, sizeof(path), data_dir, "entries");
	if (rc < 0)
		return rc;
	if (stat(path, &sb) < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "audit: no audit log in %s (%s)",
			       data_dir, strerror(errno));
	rc = audit_list_checkpoints(data_dir, &cps, &n_cps);
	if (rc < 0)
		goto out;
	/*
	 * The system key is made when the first checkpoint is signed: a log
	 * without one (empty, its first writer killed before it appended; or
	 * with entries, a problem reported below) has no signature to check.
	 */
	if (!key && n_cps > 0) {
		snprintf(path, sizeof(path), "%s/oversight/system.pub", data_dir);
		rc = mm_verifier_load(path, &own_key);
		if (rc < 0)
			goto out;
		c.key = own_key;
	}
	rc = audit_open_file(data_dir, "entries", AUDIT_MAGIC_ENTRIES, false, &fd_e);
	if (rc == MM_EFORMAT || rc == MM_EUNSUP) {
		rc = problem(res, "entries: %s", mm_last_error());
		goto out;
	}
	if (rc < 0)
		goto out;
	rc = audit_open_file(data_dir, "index", AUDIT_MAGIC_INDEX, false, &fd_i);
	if (rc == 0)
		rc = audit_open_file(data_dir, "hashes", AUDIT_MAGIC_HASHES, false, &fd_h);
	if (rc == MM_EFORMAT || rc == MM_EUNSUP || rc == MM_ENOENT) {
		rc = problem(res, "%s", mm_last_error());
		goto out;
	}
	if (rc < 0)
		goto out;
	if (fstat(fd_e, &sb) < 0) {
		rc = mm_fail(MM_EIO, "audit: entries: %s", strerror(errno));
		goto out;
	}
	esize = (uint64_t)sb.st_size;
	ph = malloc(sizeof(*ph));
	if (!ph) {
		rc = mm_fail(MM_ENOMEM, "audit: out of memory");
		goto out;
	}
	ph->n = ph->cur = 0;
	if ((rc = reader_init(&re, fd_e, AUDIT_FILE_HEADER)) < 0 ||
	    (rc = reader_init(&ri, fd_i, AUDIT_FILE_HEADER)) < 0 ||
	    (rc = reader_init(&rh, fd_h, AUDIT_FILE_HEADER)) < 0)
		goto out;
	merkle_stream_init(&st);
	for (;;) {
		uint64_t off = re.off, idx;
		uint32_t len;
		unsigned k;
		const uint8_t *h;

		while (ci < n_cps && cps[ci] == i) {
			merkle_stream_root(&st, root);
			rc = check_checkpoint(&c, i, root, ci + 1 == n_cps);
			if (rc < 0 || !res->ok)
				goto out;
			ci++;
		}
		if (off >= esize)
			break;
		if ((rc = reader_want(&re, AUDIT_REC_HEADER, &avail)) < 0)
			goto out;
		if (avail < AUDIT_REC_HEADER) {
			rc = problem(res,
				     "entry %" PRIu64 " at byte %" PRIu64 ": record header truncated "
				     "(%zu of %d bytes): a torn write, or the file was cut",
				     i, off, avail, AUDIT_REC_HEADER);
			goto out;
		}
		h = re.buf + re.pos;
		len = get_le32(h);
		idx = get_le64(h + 8);
		if (len > MM_AUDIT_ENTRY_MAX) {
			rc = problem(res, "entry %" PRIu64 " at byte %" PRIu64
					  ": length %u exceeds the %u-byte limit (damaged header)",
				     i, off, len, MM_AUDIT_ENTRY_MAX);
			goto out;
		}
		if (idx != i) {
			rc = problem(res, "entry %" PRIu64 " at byte %" PRIu64 ": record carries index %" PRIu64
					  " (entries dropped, reordered or duplicated, or the header "
					  "is damaged)",
				     i, off, idx);
			goto out;
		}
		if ((rc = reader_want(&re, AUDIT_REC_HEADER + len, &avail)) < 0)
			goto out;
		h = re.buf + re.pos;
		if (avail < AUDIT_REC_HEADER + len) {
			rc = problem(res,
				     "entry %" PRIu64 " at byte %" PRIu64 ": record truncated (%u "
				     "payload bytes announced, %zu present): a torn write, or the "
				     "file was cut",
				     i, off, len, avail - AUDIT_REC_HEADER);
			goto out;
		}
		if (ph->cur == ph->n && (rc = prehash_fill(ph, &re, esize, two_threads)) < 0)
			goto out;
		if (ph->cur < ph->n && ph->offs[ph->cur] == off && ph->lens[ph->cur] == len)
			memcpy(leaf, ph->leaves[ph->cur++], MERKLE_HASH_LEN);
		else
			merkle_leaf_hash(re.buf + re.pos + AUDIT_REC_HEADER, len, leaf);
		h = re.buf + re.pos;
		if (audit_record_check(leaf) != get_le32(h + 4)) {
			rc = problem(res, "entry %" PRIu64 " at byte %" PRIu64
					  ": checksum mismatch (record changed or damaged)",
				     i, off);
			goto out;
		}
		if (!audit_entry_text_ok((const char *)h + AUDIT_REC_HEADER, len)) {
			rc = problem(res, "entry %" PRIu64 " at byte %" PRIu64
					  ": payload is not one line of JSON object text",
				     i, off);
			goto out;
		}
		reader_skip(&re, AUDIT_REC_HEADER + len);
		if ((rc = reader_want(&ri, 8, &avail)) < 0)
			goto out;
		if (avail < 8 || get_le64(ri.buf + ri.pos) != off) {
			rc = problem(res, "index: row %" PRIu64 " at byte %" PRIu64
					  ": does not give entry %" PRIu64 "'s offset %" PRIu64,
				     i, ri.off, i, off);
			goto out;
		}
		reader_skip(&ri, 8);
		k = merkle_stream_push(&st, leaf, nodes);
		for (unsigned j = 0; j <= k; j++) {
			const uint8_t *want = j == 0 ? leaf : nodes[j - 1];
			if ((rc = reader_want(&rh, MERKLE_HASH_LEN, &avail)) < 0)
				goto out;
			if (avail < MERKLE_HASH_LEN ||
			    memcmp(rh.buf + rh.pos, want, MERKLE_HASH_LEN) != 0) {
				rc = problem(res,
					     "hashes: %s hash at byte %" PRIu64 " (entry %" PRIu64
					     ") differs from the one recomputed from the entries",
					     j == 0 ? "leaf" : "node", rh.off, i);
				goto out;
			}
			reader_skip(&rh, MERKLE_HASH_LEN);
		}
		i++;
	}
	res->n_entries = i;
	merkle_stream_root(&st, res->root);
	if ((rc = reader_want(&ri, 1, &avail)) < 0)
		goto out;
	if (avail) {
		rc = problem(res, "index: extra rows at byte %" PRIu64 " after %" PRIu64 " entries",
			     ri.off, i);
		goto out;
	}
	if ((rc = reader_want(&rh, 1, &avail)) < 0)
		goto out;
	if (avail) {
		rc = problem(res, "hashes: extra data at byte %" PRIu64 " after %" PRIu64
				  " entries' hashes",
			     rh.off, i);
		goto out;
	}
	if (ci < n_cps) {
		rc = problem(res,
			     "checkpoint %020" PRIu64 ": covers %" PRIu64 " entries but the log "
			     "has only %" PRIu64 " (entries were dropped or the file was cut)",
			     cps[ci], cps[ci], i);
		goto out;
	}
	if (n_cps == 0 && i > 0) {
		rc = problem(res, "no checkpoint: nothing signs these %" PRIu64 " entries", i);
		goto out;
	}
	res->n_uncovered = n_cps ? i - cps[n_cps - 1] : 0;
out:
	if (res->n_entries == 0)
		res->n_entries = i;
	free(ph);
	free(re.buf);
	free(ri.buf);
	free(rh.buf);
	if (fd_e >= 0)
		close(fd_e);
	if (fd_i >= 0)
		close(fd_i);
	if (fd_h >= 0)
		close(fd_h);
	free(cps);
	mm_verifier_free(own_key);
	return rc;
}
