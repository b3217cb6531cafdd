/*
 * The audit log's writer and reader (see audit.h, docs/audit.md): three
 * files in <data>/audit/ — entries (the truth: framed JSON records), index
 * (record offsets) and hashes (every Merkle node in post-order, so proofs
 * and tree heads need O(log n) reads) — plus signed checkpoints. Appends go
 * through one group commit per process and an flock across processes; the
 * index and hash files are caches that open() re-derives from the entries
 * file when a crash left them behind or ahead of it. The lock file also
 * carries a one-line state (boot, latest checkpoint) so that opening the
 * log reads no directory and re-derives nothing while the machine has not
 * restarted since the caches were written.
 */
#include "oversight/audit_int.h"

#include "mamori/log.h"
#include "mamori/status.h"
#include "mamori/timefmt.h"
#include "oversight/note.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One waiting append: where its entries are in the pending buffer and where results go. */
struct slot {
	size_t n_entries;
	uint64_t *first_index;
	int *status;
};

struct batch {
	char *buf; /* entry texts back to back */
	size_t buf_len, buf_cap;
	size_t *lens;
	size_t n_entries, entries_cap;
	struct slot *slots;
	size_t n_slots, slots_cap;
	bool sync; /* some slot asked for a durable append */
};

/*
 * The state line at the start of the lock file: the boot it was written in,
 * the latest checkpoint's tree size and when it was signed (ns since the
 * epoch), fixed width: "<36-char boot id> <20 digits> <20 digits>\n".
 */
#define STATE_BOOT_LEN 36
#define STATE_LEN (STATE_BOOT_LEN + 1 + 20 + 1 + 20 + 1)

struct mm_audit_log {
	char *dir;      /* <data>/audit */
	char *data_dir;
	bool writable;
	int fd_entries, fd_index, fd_hashes, fd_lock;
	struct mm_signer *signer; /* the system key: loaded by the first checkpoint this handle signs */
	char boot[STATE_BOOT_LEN + 1]; /* this boot's id ("" when the kernel does not say) */

	/* State of the files, as of the last sync (guarded by mu; written by the flusher). */
	uint64_t n_entries;
	uint64_t entries_end; /* byte offset after the last complete record */
	struct merkle_stream frontier;
	uint64_t checkpointed; /* tree size of the newest checkpoint this handle knows */
	bool state_ok; /* the lock file's state line was written in this boot */
	uint64_t checkpoint_ns; /* when it was signed; 0: no checkpoint yet */
	uint64_t policy_entries, policy_seconds; /* when close signs one (mm_audit_set_checkpoint_policy) */
	struct mm_audit_recovery recovery;

	/* Group commit: appenders queue into pending; one flusher writes a batch at a time. */
	pthread_mutex_t mu;
	pthread_cond_t done;
	struct batch pending, flushing;
	uint64_t gen_queued;  /* generation of the pending batch */
	uint64_t gen_done;    /* all batches up to this generation are on disk */
	bool flusher_active;

	/* Scratch for writing a batch (flusher only). */
	uint8_t *rec_buf, *idx_buf, *hash_buf;
	size_t rec_cap, idx_cap, hash_cap;
};

bool audit_entry_text_ok(const char *json, size_t len)
{
	if (len < 2 || len > MM_AUDIT_ENTRY_MAX || json[0] != '{' || json[len - 1] != '}')
		return false;
	return memchr(json, '\n', len) == NULL && memchr(json, '\0', len) == NULL;
}

int audit_path(char *buf, size_t size, const char *data_dir, const char *name)
{
	int n = snprintf(buf, size, "%s/audit%s%s", data_dir, name[0] ? "/" : "", name);

	if (n < 0 || (size_t)n >= size)
		return mm_fail(MM_ELIMIT, "audit: path under %s is too long", data_dir);
	return 0;
}

static int read_exact(int fd, void *buf, size_t len, uint64_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return mm_fail(MM_EIO, "audit: read: %s", strerror(errno));
		if (n == 0)
			return MM_ETRUNC;
		got += (size_t)n;
	}
	return 0;
}

static int write_exact(int fd, const void *buf, size_t len, uint64_t off, const char *what)
{
	size_t put = 0;

	while (put < len) {
		ssize_t n = pwrite(fd, (const uint8_t *)buf + put, len - put, (off_t)(off + put));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return mm_fail(MM_EIO, "audit: writing %s: %s", what, strerror(errno));
		put += (size_t)n;
	}
	return 0;
}

int audit_open_file(const char *data_dir, const char *name, const char *magic, bool writable,
		    int *fd_out)
{
	char path[4096];
	uint8_t hdr[AUDIT_FILE_HEADER];
	struct stat st;
	int fd, rc;

	*fd_out = -1;
	rc = audit_path(path, sizeof(path), data_dir, name);
	if (rc < 0)
		return rc;
	fd = open(path, (writable ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0644);
	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "audit: %s: %s", path,
			       strerror(errno));
	*fd_out = fd;
	if (fstat(fd, &st) < 0)
		return mm_fail(MM_EIO, "audit: %s: %s", path, strerror(errno));
	if (st.st_size == 0 && writable) {
		memcpy(hdr, magic, 8);
		put_le32(hdr + 8, AUDIT_VERSION);
		put_le32(hdr + 12, 0);
		rc = write_exact(fd, hdr, sizeof(hdr), 0, path);
		if (rc == 0 && fsync(fd) < 0)
			rc = mm_fail(MM_EIO, "audit: %s: fsync: %s", path, strerror(errno));
		return rc;
	}
	rc = read_exact(fd, hdr, sizeof(hdr), 0);
	if (rc == MM_ETRUNC || (rc == 0 && memcmp(hdr, magic, 8) != 0))
		return mm_fail(MM_EFORMAT, "audit: %s: not a mamori audit file (bad header)", path);
	if (rc < 0)
		return rc;
	if (get_le32(hdr + 8) != AUDIT_VERSION || get_le32(hdr + 12) != 0)
		return mm_fail(MM_EUNSUP, "audit: %s: format version %u (this mamori reads %u)", path,
			       get_le32(hdr + 8), AUDIT_VERSION);
	return 0;
}

static uint64_t file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static int read_stored_hash(struct mm_audit_log *log, uint64_t pos, uint8_t out[MERKLE_HASH_LEN])
{
	int rc = read_exact(log->fd_hashes, out, MERKLE_HASH_LEN,
			    AUDIT_FILE_HEADER + pos * MERKLE_HASH_LEN);

	if (rc == MM_ETRUNC)
		return mm_fail(MM_ETRUNC, "audit: hash cache ends before stored hash %" PRIu64, pos);
	return rc;
}

static int source_get(void *ctx, unsigned level, uint64_t k, uint8_t out[MERKLE_HASH_LEN])
{
	return read_stored_hash(ctx, audit_stored_index(level, k), out);
}

/* Rebuilds the frontier (perfect subtree roots of n leaves) from the hash cache. */
static int load_frontier(struct mm_audit_log *log, uint64_t n)
{
	struct merkle_stream *f = &log->frontier;
	uint64_t begin = 0;
	int rc;

	merkle_stream_init(f);
	for (int level = 63; level >= 0; level--) {
		if (!(n & ((uint64_t)1 << level)))
			continue;
		rc = source_get(log, (unsigned)level, begin >> level, f->stack[f->depth]);
		if (rc < 0)
			return rc;
		f->levels[f->depth++] = (uint8_t)level;
		begin += (uint64_t)1 << level;
	}
	f->n_leaves = n;
	return 0;
}

/*
 * Reads the record at off, expecting entry index idx. Returns 0 and the
 * payload (in *buf, grown as needed) with its leaf hash, or MM_ETRUNC /
 * MM_EFORMAT when there is no complete valid record there.
 */
static int read_record(int fd, uint64_t off, uint64_t end, uint64_t idx, uint8_t **buf,
		       size_t *cap, uint32_t *len_out, uint8_t leaf[MERKLE_HASH_LEN])
{
	uint8_t hdr[AUDIT_REC_HEADER];
	uint32_t len;
	int rc;

	if (end - off < AUDIT_REC_HEADER)
		return MM_ETRUNC;
	rc = read_exact(fd, hdr, sizeof(hdr), off);
	if (rc < 0)
		return rc;
	len = get_le32(hdr);
	if (len > MM_AUDIT_ENTRY_MAX || get_le64(hdr + 8) != idx)
		return MM_EFORMAT;
	if (end - off - AUDIT_REC_HEADER < len)
		return MM_ETRUNC;
	if (*cap < len + 1) {
		uint8_t *nb = realloc(*buf, len + 1);
		if (!nb)
			return mm_fail(MM_ENOMEM, "audit: out of memory");
		*buf = nb;
		*cap = len + 1;
	}
	rc = read_exact(fd, *buf, len, off + AUDIT_REC_HEADER);
	if (rc < 0)
		return rc;
	(*buf)[len] = 0;
	merkle_leaf_hash(*buf, len, leaf);
	if (audit_record_check(leaf) != get_le32(hdr + 4) ||
	    !audit_entry_text_ok((const char *)*buf, len))
		return MM_EFORMAT;
	*len_out = len;
	return 0;
}

/* True when the caches' last entry n-1 matches the entries file. */
static bool cache_tail_ok(struct mm_audit_log *log, uint64_t n, uint64_t esize, uint64_t *end,
			  uint8_t **buf, size_t *cap)
{
	uint8_t offb[8], leaf[MERKLE_HASH_LEN], stored[MERKLE_HASH_LEN];
	uint64_t off;
	uint32_t len;

	if (n == 0) {
		*end = AUDIT_FILE_HEADER;
		return true;
	}
	if (read_exact(log->fd_index, offb, 8, AUDIT_FILE_HEADER + (n - 1) * 8) < 0)
		return false;
	off = get_le64(offb);
	if (off < AUDIT_FILE_HEADER || off >= esize)
		return false;
	if (read_record(log->fd_entries, off, esize, n - 1, buf, cap, &len, leaf) < 0)
		return false;
	if (read_stored_hash(log, audit_stored_count(n - 1), stored) < 0 ||
	    memcmp(stored, leaf, MERKLE_HASH_LEN) != 0)
		return false;
	*end = off + AUDIT_REC_HEADER + len;
	return true;
}

/*
 * Brings the handle up to the files: the caches' entry count is trusted
 * once its last entry matches the entries file (else the caches are
 * rebuilt from the start); complete records past it are added to the caches,
 * and a partial tail is cut when repair (writable handles hold the flock).
 * Work: O(log n) reads, plus one read of each record past what is trusted.
 */
static int sync_state(struct mm_audit_log *log, bool repair)
{
	uint64_t esize = file_size(log->fd_entries);
	uint64_t n_idx, n_hash, n, end = AUDIT_FILE_HEADER, stored;
	uint8_t *buf = NULL, leaf[MERKLE_HASH_LEN], nodes[64][MERKLE_HASH_LEN], offb[8];
	size_t cap = 0;
	uint32_t len;
	bool changed = false;
	int rc = 0;

	if (esize == log->entries_end && log->entries_end != 0)
		return 0; /* nobody appended since we last looked */
	n_idx = (file_size(log->fd_index) - AUDIT_FILE_HEADER) / 8;
	stored = (file_size(log->fd_hashes) - AUDIT_FILE_HEADER) / MERKLE_HASH_LEN;
	/* Largest leaf count whose post-order hashes fit in the file. */
	n_hash = stored / 2;
	while (n_hash > 0 && audit_stored_count(n_hash) > stored)
		n_hash--;
	while (audit_stored_count(n_hash + 1) <= stored)
		n_hash++;
	n = n_idx < n_hash ? n_idx : n_hash;
	/* Cache rows past the last checkpoint are not fsync'd (only the entries are, per batch):
	 * after a restart of the machine they may not have reached the disk, so the first writer
	 * of a new boot re-derives them (see read_state). Within one boot the page cache holds
	 * every row written, even by a writer that was killed. */
	if (repair && log->entries_end == 0 && !log->state_ok && n > log->checkpointed)
		n = log->checkpointed;
	if (!cache_tail_ok(log, n, esize, &end, &buf, &cap) &&
	    !(n > 0 && (n--, cache_tail_ok(log, n, esize, &end, &buf, &cap)))) {
		mm_warn("audit: %s: index/hash cache does not match the entries; rebuilding it",
			log->dir);
		n = 0;
		end = AUDIT_FILE_HEADER;
	}
	rc = load_frontier(log, n);
	if (rc < 0)
		goto out;
	/* Complete records the caches do not know yet (a crash between the writes). */
	while (end < esize) {
		rc = read_record(log->fd_entries, end, esize, n, &buf, &cap, &len, leaf);
		if (rc == MM_ETRUNC || rc == MM_EFORMAT) {
			rc = 0;
			break;
		}
		if (rc < 0)
			goto out;
		if (repair) {
			unsigned k = merkle_stream_push(&log->frontier, leaf, nodes);
			put_le64(offb, end);
			rc = write_exact(log->fd_index, offb, 8, AUDIT_FILE_HEADER + n * 8, "index");
			if (rc == 0)
				rc = write_exact(log->fd_hashes, leaf, MERKLE_HASH_LEN,
						 AUDIT_FILE_HEADER +
							 audit_stored_count(n) * MERKLE_HASH_LEN,
						 "hashes");
			if (rc == 0 && k > 0)
				rc = write_exact(log->fd_hashes, nodes, (size_t)k * MERKLE_HASH_LEN,
						 AUDIT_FILE_HEADER + (audit_stored_count(n) + 1) *
									     MERKLE_HASH_LEN,
						 "hashes");
			if (rc < 0)
				goto out;
			log->recovery.rebuilt++;
			changed = true;
		} else {
			merkle_stream_push(&log->frontier, leaf, NULL);
		}
		n++;
		end += AUDIT_REC_HEADER + len;
	}
	if (repair) {
		uint64_t idx_size = AUDIT_FILE_HEADER + n * 8;
		uint64_t hash_size = AUDIT_FILE_HEADER + audit_stored_count(n) * MERKLE_HASH_LEN;
		if (end < esize) {
			log->recovery.dropped_bytes += esize - end;
			log->recovery.dropped_records++;
			log->recovery.dropped_at = end;
			mm_warn("audit: %s/entries: dropped a partial record of %" PRIu64
				" bytes at offset %" PRIu64 " (torn write)",
				log->dir, esize - end, end);
		}
		changed |= end < esize || file_size(log->fd_index) != idx_size ||
			   file_size(log->fd_hashes) != hash_size;
		/* Only a repair costs fsyncs: an open of a healthy log writes nothing. */
		if (changed &&
		    (ftruncate(log->fd_entries, (off_t)end) < 0 ||
		     ftruncate(log->fd_index, (off_t)idx_size) < 0 ||
		     ftruncate(log->fd_hashes, (off_t)hash_size) < 0 || fsync(log->fd_entries) < 0 ||
		     fsync(log->fd_index) < 0 || fsync(log->fd_hashes) < 0)) {
			rc = mm_fail(MM_EIO, "audit: repairing %s: %s", log->dir, strerror(errno));
			goto out;
		}
	}
	log->n_entries = n;
	log->entries_end = end;
out:
	free(buf);
	return rc;
}

static int lock_files(struct mm_audit_log *log)
{
	while (flock(log->fd_lock, LOCK_EX) < 0)
		if (errno != EINTR)
			return mm_fail(MM_EIO, "audit: lock: %s", strerror(errno));
	return 0;
}

static void unlock_files(struct mm_audit_log *log)
{
	flock(log->fd_lock, LOCK_UN);
}

/*
 * Takes the flusher role (so no append of this process is writing), then
 * the flock: flock alone does not exclude threads sharing the descriptor.
 */
static int exclusive_begin(struct mm_audit_log *log)
{
	int rc;

	pthread_mutex_lock(&log->mu);
	while (log->flusher_active)
		pthread_cond_wait(&log->done, &log->mu);
	log->flusher_active = true;
	pthread_mutex_unlock(&log->mu);
	rc = lock_files(log);
	if (rc < 0) {
		pthread_mutex_lock(&log->mu);
		log->flusher_active = false;
		pthread_cond_broadcast(&log->done);
		pthread_mutex_unlock(&log->mu);
	}
	return rc;
}

static void exclusive_end(struct mm_audit_log *log)
{
	unlock_files(log);
	pthread_mutex_lock(&log->mu);
	log->flusher_active = false;
	pthread_cond_broadcast(&log->done); /* a queued append may take the flusher role now */
	pthread_mutex_unlock(&log->mu);
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return mm_fail(MM_EIO, "audit: mkdir %s: %s", path, strerror(errno));
	return 0;
}

/* Loads <data>/oversight/system.key, creating the key pair on first use. */
static int load_system_key(struct mm_audit_log *log)
{
	char priv[4096], pub[4096];
	int rc;

	if (log->signer)
		return 0;
	snprintf(priv, sizeof(priv), "%s/oversight", log->data_dir);
	rc = make_dir(priv);
	if (rc < 0)
		return rc;
	snprintf(priv, sizeof(priv), "%s/oversight/system.key", log->data_dir);
	snprintf(pub, sizeof(pub), "%s/oversight/system.pub", log->data_dir);
	rc = mm_signer_load(priv, &log->signer);
	if (rc == MM_ENOENT) {
		rc = mm_key_create_files(AUDIT_SYSTEM_KEY_NAME, priv, pub);
		if (rc == 0 || rc == MM_EEXIST) /* another process may have won the race */
			rc = mm_signer_load(priv, &log->signer);
	}
	return rc;
}

/* This boot's id from the kernel; "" when unknown (then no state line is ever trusted). */
static void read_boot_id(char out[STATE_BOOT_LEN + 1])
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, out, STATE_BOOT_LEN) : -1;

	if (fd >= 0)
		close(fd);
	out[n == STATE_BOOT_LEN ? STATE_BOOT_LEN : 0] = '\0';
	for (size_t i = 0; out[i]; i++)
		if (out[i] == ' ' || out[i] == '\n')
			out[0] = '\0';
}

/*
 * Reads the lock file's state line (the caller holds the flock). It is
 * trusted only when written in this boot: then the latest checkpoint is
 * the one it names (checkpoint files are only ever added under the flock,
 * and each writer updates the line after adding one). False otherwise.
 */
static bool read_state(struct mm_audit_log *log)
{
	char line[STATE_LEN + 1], *end;
	uint64_t size, when;

	if (!log->boot[0] || pread(log->fd_lock, line, STATE_LEN, 0) != STATE_LEN)
		return false;
	line[STATE_LEN] = '\0';
	if (memcmp(line, log->boot, STATE_BOOT_LEN) != 0 || line[STATE_BOOT_LEN] != ' ' ||
	    line[STATE_LEN - 1] != '\n')
		return false;
	size = strtoull(line + STATE_BOOT_LEN + 1, &end, 10);
	if (end != line + STATE_BOOT_LEN + 21 || *end != ' ')
		return false;
	when = strtoull(end + 1, &end, 10);
	if (end != line + STATE_LEN - 1)
		return false;
	log->checkpointed = size;
	log->checkpoint_ns = when;
	return true;
}

/*
 * Writes the state line (under the flock). Not fsync'd: a line lost in a
 * crash of the machine is a line from another boot, which nobody trusts.
 */
static void write_state(struct mm_audit_log *log)
{
	char line[STATE_LEN + 1];

	if (!log->boot[0])
		return;
	snprintf(line, sizeof(line), "%s %020" PRIu64 " %020" PRIu64 "\n", log->boot, log->checkpointed,
		 log->checkpoint_ns);
	if (pwrite(log->fd_lock, line, STATE_LEN, 0) == STATE_LEN)
		log->state_ok = true;
}

/* When the checkpoint of size was signed: its file's modification time (0 if unknown). */
static uint64_t checkpoint_time(const struct mm_audit_log *log, uint64_t size)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/checkpoints/%020" PRIu64, log->dir, size);
	if (stat(path, &st) != 0)
		return 0;
	return (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
}

/* The latest checkpoint from the directory listing: O(checkpoints), once per boot. */
static void scan_checkpoints(struct mm_audit_log *log)
{
	uint64_t *sizes = NULL;
	size_t n = 0;

	if (audit_list_checkpoints(log->data_dir, &sizes, &n) == 0 && n > 0) {
		log->checkpointed = sizes[n - 1];
		log->checkpoint_ns = checkpoint_time(log, sizes[n - 1]);
		if (log->checkpoint_ns == 0)
			log->checkpoint_ns = 1; /* it exists; its age is unknown */
	}
	free(sizes);
}

static int open_log(const char *data_dir, bool writable, struct mm_audit_log **out)
{
	struct mm_audit_log *log;
	char path[4096];
	int rc;

	*out = NULL;
	log = calloc(1, sizeof(*log));
	if (!log)
		return mm_fail(MM_ENOMEM, "audit: out of memory");
	log->fd_entries = log->fd_index = log->fd_hashes = log->fd_lock = -1;
	log->writable = writable;
	log->policy_entries = MM_AUDIT_CHECKPOINT_ENTRIES;
	log->policy_seconds = MM_AUDIT_CHECKPOINT_SECONDS;
	pthread_mutex_init(&log->mu, NULL);
	pthread_cond_init(&log->done, NULL);
	log->data_dir = strdup(data_dir);
	rc = audit_path(path, sizeof(path), data_dir, "");
	if (rc < 0)
		goto fail;
	log->dir = strdup(path);
	if (!log->data_dir || !log->dir) {
		rc = mm_fail(MM_ENOMEM, "audit: out of memory");
		goto fail;
	}
	if (writable) {
		if ((rc = make_dir(data_dir)) < 0 || (rc = make_dir(log->dir)) < 0)
			goto fail;
		snprintf(path, sizeof(path), "%s/checkpoints", log->dir);
		if ((rc = make_dir(path)) < 0)
			goto fail;
		snprintf(path, sizeof(path), "%s/lock", log->dir);
		log->fd_lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (log->fd_lock < 0) {
			rc = mm_fail(MM_EIO, "audit: %s: %s", path, strerror(errno));
			goto fail;
		}
		if ((rc = lock_files(log)) < 0)
			goto fail;
		read_boot_id(log->boot);
		log->state_ok = read_state(log);
	}
	if (!log->state_ok)
		scan_checkpoints(log);
	rc = audit_open_file(data_dir, "entries", AUDIT_MAGIC_ENTRIES, writable, &log->fd_entries);
	if (rc == 0)
		rc = audit_open_file(data_dir, "index", AUDIT_MAGIC_INDEX, writable, &log->fd_index);
	if (rc == 0)
		rc = audit_open_file(data_dir, "hashes", AUDIT_MAGIC_HASHES, writable, &log->fd_hashes);
	if (rc == 0)
		rc = sync_state(log, writable);
	/* The caches are now durable up to what this boot wrote (sync_state fsync'd any repair). */
	if (rc == 0 && writable && !log->state_ok)
		write_state(log);
	if (writable)
		unlock_files(log);
	if (rc < 0)
		goto fail;
	*out = log;
	return 0;
fail:
	log->writable = false; /* no checkpoint on the way out */
	mm_audit_close(log);
	return rc;
}

int mm_audit_open(const char *data_dir, struct mm_audit_log **out)
{
	return open_log(data_dir, true, out);
}

int mm_audit_open_existing(const char *data_dir, struct mm_audit_log **out)
{
	return open_log(data_dir, false, out);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 16;
	void *np;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	np = realloc(*p, ncap * elem);
	if (!np)
		return mm_fail(MM_ENOMEM, "audit: out of memory");
	*p = np;
	*cap = ncap;
	return 0;
}

/* Writes batch b to the files (the caller is the only flusher); indexes per slot. */
static int flush_batch(struct mm_audit_log *log, struct batch *b)
{
	size_t rec_len = 0, n_hashes = 0, pos = 0;
	uint8_t pair_leaf[MERKLE_HASH_LEN];
	uint64_t n0, end0;
	int rc;

	rc = lock_files(log);
	if (rc < 0)
		return rc;
	rc = sync_state(log, true); /* another process may have appended */
	if (rc < 0)
		goto out;
	n0 = log->n_entries;
	end0 = log->entries_end;
	if ((rc = grow((void **)&log->rec_buf, &log->rec_cap,
		       b->buf_len + b->n_entries * AUDIT_REC_HEADER, 1)) < 0 ||
	    (rc = grow((void **)&log->idx_buf, &log->idx_cap, b->n_entries * 8, 1)) < 0 ||
	    (rc = grow((void **)&log->hash_buf, &log->hash_cap,
		       (b->n_entries * 2 + 64) * MERKLE_HASH_LEN, 1)) < 0)
		goto out;
	for (size_t i = 0; i < b->n_entries; i++) {
		uint8_t *rec = log->rec_buf + rec_len, *leaf;
		size_t len = b->lens[i];

		leaf = log->hash_buf + n_hashes * MERKLE_HASH_LEN;
		if (i % 2 == 0 && i + 1 < b->n_entries)
			merkle_leaf_hash_pair(b->buf + pos, len, b->buf + pos + len, b->lens[i + 1],
					      leaf, pair_leaf);
		else if (i % 2 == 0)
			merkle_leaf_hash(b->buf + pos, len, leaf);
		else
			memcpy(leaf, pair_leaf, MERKLE_HASH_LEN);
		put_le32(rec, (uint32_t)len);
		put_le32(rec + 4, audit_record_check(leaf));
		put_le64(rec + 8, n0 + i);
		memcpy(rec + AUDIT_REC_HEADER, b->buf + pos, len);
		put_le64(log->idx_buf + i * 8, end0 + rec_len);
		n_hashes += 1 + merkle_stream_push(&log->frontier, leaf,
						   (uint8_t(*)[MERKLE_HASH_LEN])(leaf + MERKLE_HASH_LEN));
		rec_len += AUDIT_REC_HEADER + len;
		pos += len;
	}
	/* The entries file is the truth and the only fsync per batch (none for a batch of deferred
	 * appends); the caches are re-derived from it after a crash (they are fsync'd before each
	 * checkpoint, see sync_state). */
	rc = write_exact(log->fd_entries, log->rec_buf, rec_len, end0, "entries");
	if (rc == 0 && b->sync && fdatasync(log->fd_entries) < 0)
		rc = mm_fail(MM_EIO, "audit: fsync entries: %s", strerror(errno));
	if (rc == 0)
		rc = write_exact(log->fd_index, log->idx_buf, b->n_entries * 8,
				 AUDIT_FILE_HEADER + n0 * 8, "index");
	if (rc == 0)
		rc = write_exact(log->fd_hashes, log->hash_buf, n_hashes * MERKLE_HASH_LEN,
				 AUDIT_FILE_HEADER + audit_stored_count(n0) * MERKLE_HASH_LEN,
				 "hashes");
	if (rc < 0) {
		/* Forget what we think we wrote; the next sync re-reads the files. */
		log->entries_end = 0;
		goto out;
	}
	log->n_entries = n0 + b->n_entries;
	log->entries_end = end0 + rec_len;
	for (size_t s = 0, idx = n0; s < b->n_slots; idx += b->slots[s].n_entries, s++)
		if (b->slots[s].first_index)
			*b->slots[s].first_index = idx;
out:
	unlock_files(log);
	return rc;
}

static int append_batch(struct mm_audit_log *log, const char *const *json, const size_t *len, size_t n,
			uint64_t *first_index, bool sync)
{
	struct batch *p = &log->pending;
	size_t total = 0;
	uint64_t my_gen;
	int status = 0, rc;

	if (!log->writable)
		return mm_fail(MM_EPERM, "audit: log opened read-only");
	for (size_t i = 0; i < n; i++) {
		if (!audit_entry_text_ok(json[i], len[i]))
			return mm_fail(MM_EINVAL,
				       "audit: entry %zu of the batch is not one line of JSON object "
				       "text of at most %u bytes",
				       i, MM_AUDIT_ENTRY_MAX);
		total += len[i];
	}
	if (n == 0)
		return 0;
	pthread_mutex_lock(&log->mu);
	if ((rc = grow((void **)&p->buf, &p->buf_cap, p->buf_len + total, 1)) < 0 ||
	    (rc = grow((void **)&p->lens, &p->entries_cap, p->n_entries + n, sizeof(size_t))) < 0 ||
	    (rc = grow((void **)&p->slots, &p->slots_cap, p->n_slots + 1, sizeof(struct slot))) <
		    0) {
		pthread_mutex_unlock(&log->mu);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(p->buf + p->buf_len, json[i], len[i]);
		p->buf_len += len[i];
		p->lens[p->n_entries++] = len[i];
	}
	p->slots[p->n_slots++] = (struct slot){n, first_index, &status};
	p->sync |= sync;
	my_gen = log->gen_queued;
	while (log->gen_done < my_gen + 1) {
		if (!log->flusher_active && log->gen_queued == my_gen) {
			/* Become the flusher: take the pending batch, write it without the mutex. */
			struct batch tmp = log->flushing;
			log->flushing = log->pending;
			log->pending = tmp;
			log->pending.buf_len = log->pending.n_entries = log->pending.n_slots = 0;
			log->pending.sync = false;
			log->gen_queued++;
			log->flusher_active = true;
			pthread_mutex_unlock(&log->mu);
			rc = flush_batch(log, &log->flushing);
			pthread_mutex_lock(&log->mu);
			for (size_t s = 0; s < log->flushing.n_slots; s++)
				*log->flushing.slots[s].status = rc;
			log->gen_done = my_gen + 1;
			log->flusher_active = false;
			pthread_cond_broadcast(&log->done);
		} else {
			pthread_cond_wait(&log->done, &log->mu);
		}
	}
	pthread_mutex_unlock(&log->mu);
	if (status < 0)
		return mm_fail(status, "audit: appending to %s failed (%s)", log->dir,
			       mm_strerror(status));
	return 0;
}

int mm_audit_append_batch(struct mm_audit_log *log, const char *const *json, const size_t *len,
			  size_t n, uint64_t *first_index)
{
	return append_batch(log, json, len, n, first_index, true);
}

int mm_audit_append(struct mm_audit_log *log, const char *json, size_t len, uint64_t *index_out)
{
	return append_batch(log, &json, &len, 1, index_out, true);
}

int mm_audit_append_deferred(struct mm_audit_log *log, const char *json, size_t len, uint64_t *index_out)
{
	return append_batch(log, &json, &len, 1, index_out, false);
}

int mm_audit_sync(struct mm_audit_log *log)
{
	if (!log->writable)
		return mm_fail(MM_EPERM, "audit: log opened read-only");
	if (fdatasync(log->fd_entries) < 0)
		return mm_fail(MM_EIO, "audit: fsync %s/entries: %s", log->dir, strerror(errno));
	return 0;
}

void mm_audit_set_checkpoint_policy(struct mm_audit_log *log, uint64_t entries, uint64_t seconds)
{
	log->policy_entries = entries;
	log->policy_seconds = seconds;
}

uint64_t mm_audit_size(const struct mm_audit_log *log)
{
	return log->n_entries;
}

void mm_audit_recovery(const struct mm_audit_log *log, struct mm_audit_recovery *out)
{
	*out = log->recovery;
}

int mm_audit_read(struct mm_audit_log *log, uint64_t index, char **json, size_t *len)
{
	uint8_t offb[8], leaf[MERKLE_HASH_LEN], *buf = NULL;
	size_t cap = 0;
	uint32_t n;
	int rc;

	*json = NULL;
	if (index >= log->n_entries)
		return mm_fail(MM_ENOENT, "audit: no entry %" PRIu64 " (the log has %" PRIu64 ")",
			       index, log->n_entries);
	rc = read_exact(log->fd_index, offb, 8, AUDIT_FILE_HEADER + index * 8);
	if (rc == 0)
		rc = read_record(log->fd_entries, get_le64(offb), log->entries_end, index, &buf, &cap,
				 &n, leaf);
	if (rc < 0) {
		free(buf);
		return mm_fail(rc == MM_ETRUNC ? MM_EFORMAT : rc,
			       "audit: entry %" PRIu64 " is damaged (run mamori audit verify)",
			       index);
	}
	*json = (char *)buf;
	if (len)
		*len = n;
	return 0;
}

int mm_audit_leaf_hash(struct mm_audit_log *log, uint64_t index, uint8_t out[MM_AUDIT_HASH_LEN])
{
	if (index >= log->n_entries)
		return mm_fail(MM_ENOENT, "audit: no entry %" PRIu64 " (the log has %" PRIu64 ")",
			       index, log->n_entries);
	return read_stored_hash(log, audit_stored_count(index), out);
}

static int check_size(const struct mm_audit_log *log, uint64_t size)
{
	if (size > log->n_entries)
		return mm_fail(MM_EINVAL, "audit: tree size %" PRIu64 " exceeds the log's %" PRIu64
					  " entries",
			       size, log->n_entries);
	return 0;
}

int mm_audit_root(struct mm_audit_log *log, uint64_t size, uint8_t out[MM_AUDIT_HASH_LEN])
{
	struct merkle_source src = {source_get, log};
	int rc = check_size(log, size);

	return rc < 0 ? rc : merkle_root(&src, size, out);
}

int mm_audit_inclusion_proof(struct mm_audit_log *log, uint64_t index, uint64_t size,
			     uint8_t (*proof)[MM_AUDIT_HASH_LEN], size_t *n_proof)
{
	struct merkle_source src = {source_get, log};
	int rc = check_size(log, size);

	*n_proof = 0;
	return rc < 0 ? rc : merkle_inclusion_proof(&src, index, size, proof, n_proof);
}

int mm_audit_consistency_proof(struct mm_audit_log *log, uint64_t size1, uint64_t size2,
			       uint8_t (*proof)[MM_AUDIT_HASH_LEN], size_t *n_proof)
{
	struct merkle_source src = {source_get, log};
	int rc = check_size(log, size2);

	*n_proof = 0;
	return rc < 0 ? rc : merkle_consistency_proof(&src, size1, size2, proof, n_proof);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

int audit_list_checkpoints(const char *data_dir, uint64_t **sizes, size_t *n)
{
	char path[4096];
	size_t cap = 0;
	struct dirent *de;
	DIR *d;
	int rc;

	*sizes = NULL;
	*n = 0;
	rc = audit_path(path, sizeof(path), data_dir, "checkpoints");
	if (rc < 0)
		return rc;
	d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : mm_fail(MM_EIO, "audit: %s: %s", path, strerror(errno));
	while ((de = readdir(d))) {
		uint64_t v = 0;
		size_t i;
		for (i = 0; de->d_name[i] >= '0' && de->d_name[i] <= '9'; i++)
			v = v * 10 + (uint64_t)(de->d_name[i] - '0');
		if (i != 20 || de->d_name[i] != '\0')
			continue; /* temporaries and strangers are not checkpoints */
		rc = grow((void **)sizes, &cap, *n + 1, sizeof(uint64_t));
		if (rc < 0)
			break;
		(*sizes)[(*n)++] = v;
	}
	closedir(d);
	if (rc < 0) {
		free(*sizes);
		*sizes = NULL;
		*n = 0;
		return rc;
	}
	if (*n > 1)
		qsort(*sizes, *n, sizeof(uint64_t), cmp_u64);
	return 0;
}

int audit_read_checkpoint(const char *data_dir, uint64_t size, char **text, size_t *len)
{
	char name[64], path[4096];
	size_t used = 0;
	ssize_t got;
	int fd, rc;

	*text = NULL;
	snprintf(name, sizeof(name), "checkpoints/%020" PRIu64, size);
	rc = audit_path(path, sizeof(path), data_dir, name);
	if (rc < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return mm_fail(MM_EIO, "audit: %s: %s", path, strerror(errno));
	*text = malloc(NOTE_MAX_BYTES + 1);
	if (!*text) {
		close(fd);
		return mm_fail(MM_ENOMEM, "audit: out of memory");
	}
	while ((got = read(fd, *text + used, NOTE_MAX_BYTES + 1 - used)) > 0)
		used += (size_t)got;
	close(fd);
	if (got < 0 || used > NOTE_MAX_BYTES) {
		free(*text);
		*text = NULL;
		return mm_fail(got < 0 ? MM_EIO : MM_ELIMIT, "audit: %s: unreadable or over %d bytes",
			       path, NOTE_MAX_BYTES);
	}
	(*text)[used] = '\0';
	*len = used;
	return 0;
}

/* Publishes a checkpoint note for size (tmp + fsync + rename + fsync dir). */
static int write_checkpoint(struct mm_audit_log *log, uint64_t size, const char *note, size_t len)
{
	char path[4096], tmp[4200];
	int fd, rc = 0;

	snprintf(path, sizeof(path), "%s/checkpoints/%020" PRIu64, log->dir, size);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return mm_fail(MM_EIO, "audit: %s: %s", tmp, strerror(errno));
	rc = write_exact(fd, note, len, 0, tmp);
	if (rc == 0 && fsync(fd) < 0)
		rc = mm_fail(MM_EIO, "audit: %s: fsync: %s", tmp, strerror(errno));
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = mm_fail(MM_EIO, "audit: %s: %s", path, strerror(errno));
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	snprintf(path, sizeof(path), "%s/checkpoints", log->dir);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

static bool checkpoint_exists(const struct mm_audit_log *log, uint64_t size)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/checkpoints/%020" PRIu64, log->dir, size);
	return access(path, F_OK) == 0;
}

int mm_audit_checkpoint(struct mm_audit_log *log)
{
	uint8_t root[MERKLE_HASH_LEN];
	char *text = NULL, *sig = NULL, *note = NULL;
	size_t tlen, slen;
	int rc;

	if (!log->writable)
		return mm_fail(MM_EPERM, "audit: log opened read-only");
	rc = exclusive_begin(log);
	if (rc < 0)
		return rc;
	rc = sync_state(log, true);
	if (rc == 0 && checkpoint_exists(log, log->n_entries)) {
		/* Signed already (perhaps by another process, perhaps cosigned since): keep it. */
		if (log->checkpointed != log->n_entries || !log->checkpoint_ns) {
			log->checkpointed = log->n_entries;
			log->checkpoint_ns = checkpoint_time(log, log->n_entries);
			write_state(log);
		}
		goto out;
	}
	/* Everything the checkpoint covers is on disk first: deferred entries and the caches. */
	if (rc == 0 && (fdatasync(log->fd_entries) < 0 || fdatasync(log->fd_index) < 0 ||
			fdatasync(log->fd_hashes) < 0))
		rc = mm_fail(MM_EIO, "audit: fsync %s before a checkpoint: %s", log->dir, strerror(errno));
	if (rc == 0)
		rc = load_system_key(log);
	if (rc == 0)
		rc = mm_audit_root(log, log->n_entries, root);
	if (rc == 0)
		rc = checkpoint_format(AUDIT_SYSTEM_KEY_NAME, log->n_entries, root, &text);
	if (rc == 0)
		rc = note_sign(log->signer, text, strlen(text), &sig);
	if (rc < 0)
		goto out;
	tlen = strlen(text);
	slen = strlen(sig);
	note = malloc(tlen + 1 + slen);
	if (!note) {
		rc = mm_fail(MM_ENOMEM, "audit: out of memory");
		goto out;
	}
	memcpy(note, text, tlen);
	note[tlen] = '\n';
	memcpy(note + tlen + 1, sig, slen);
	rc = write_checkpoint(log, log->n_entries, note, tlen + 1 + slen);
	if (rc == 0) {
		log->checkpointed = log->n_entries;
		log->checkpoint_ns = mm_time_now_ns();
		write_state(log);
	}
out:
	exclusive_end(log);
	free(text);
	free(sig);
	free(note);
	return rc;
}

int mm_audit_latest_checkpoint(struct mm_audit_log *log, char **note, size_t *len)
{
	uint64_t *sizes = NULL;
	size_t n = 0;
	int rc;

	*note = NULL;
	rc = audit_list_checkpoints(log->data_dir, &sizes, &n);
	if (rc == 0 && n == 0)
		rc = mm_fail(MM_ENOENT, "audit: %s has no checkpoint yet (mamori audit checkpoint)",
			     log->dir);
	if (rc == 0)
		rc = audit_read_checkpoint(log->data_dir, sizes[n - 1], note, len);
	free(sizes);
	return rc;
}

int mm_audit_cosign(struct mm_audit_log *log, const struct mm_signer *signer)
{
	struct mm_audit_verify_result res;
	struct note note = {0};
	struct checkpoint cp;
	char *text = NULL, *line = NULL, *out = NULL;
	size_t len = 0, llen;
	int rc;

	if (!log->writable)
		return mm_fail(MM_EPERM, "audit: log opened read-only");
	/* A witness vouches for what it checked: verify the whole log first. */
	rc = mm_audit_verify(log->data_dir, NULL, NULL, 0, &res);
	if (rc < 0)
		return rc;
	if (!res.ok)
		return mm_fail(MM_EPERM, "audit: not cosigning: the log does not verify: %s",
			       res.problem);
	rc = exclusive_begin(log);
	if (rc < 0)
		return rc;
	rc = mm_audit_latest_checkpoint(log, &text, &len);
	if (rc == 0)
		rc = note_parse(text, len, &note);
	if (rc == 0)
		rc = checkpoint_parse(note.text, note.text_len, &cp);
	if (rc == 0 && cp.size != res.checkpoint_size)
		rc = mm_fail(MM_EAGAIN, "audit: a newer checkpoint appeared while verifying; retry");
	if (rc == 0)
		rc = note_cosign(signer, note.text, note.text_len, (uint64_t)time(NULL), &line);
	if (rc < 0)
		goto out;
	llen = strlen(line);
	out = malloc(len + llen);
	if (!out) {
		rc = mm_fail(MM_ENOMEM, "audit: out of memory");
		goto out;
	}
	memcpy(out, text, len);
	memcpy(out + len, line, llen);
	rc = write_checkpoint(log, cp.size, out, len + llen);
out:
	exclusive_end(log);
	note_free(&note);
	free(text);
	free(line);
	free(out);
	return rc;
}

static void batch_free(struct batch *b)
{
	free(b->buf);
	free(b->lens);
	free(b->slots);
}

/* The batching rule of mm_audit_close (audit.h): the first checkpoint, or enough entries or time since the last. */
static bool checkpoint_due(const struct mm_audit_log *log)
{
	uint64_t now = mm_time_now_ns();

	if (log->n_entries == log->checkpointed)
		return false;
	return log->checkpoint_ns == 0 || log->n_entries < log->checkpointed ||
	       log->n_entries - log->checkpointed >= log->policy_entries ||
	       now < log->checkpoint_ns || (now - log->checkpoint_ns) / 1000000000u >= log->policy_seconds;
}

int mm_audit_close(struct mm_audit_log *log)
{
	int rc = 0;

	if (!log)
		return 0;
	if (log->writable && log->fd_entries >= 0) {
		/* Another process may have appended or checkpointed: look before deciding. */
		rc = exclusive_begin(log);
		if (rc == 0) {
			rc = sync_state(log, true);
			if (!read_state(log))
				scan_checkpoints(log);
			exclusive_end(log);
		}
		if (rc == 0 && checkpoint_due(log))
			rc = mm_audit_checkpoint(log);
	}
	if (log->fd_entries >= 0)
		close(log->fd_entries);
	if (log->fd_index >= 0)
		close(log->fd_index);
	if (log->fd_hashes >= 0)
		close(log->fd_hashes);
	if (log->fd_lock >= 0)
		close(log->fd_lock);
	mm_signer_free(log->signer);
	batch_free(&log->pending);
	batch_free(&log->flushing);
	free(log->rec_buf);
	free(log->idx_buf);
	free(log->hash_buf);
	pthread_mutex_destroy(&log->mu);
	pthread_cond_destroy(&log->done);
	free(log->dir);
	free(log->data_dir);
	free(log);
	return rc;
}
