/*
 * Ed25519 keys in the C2SP signed-note encodings (see keys.h): generation,
 * parsing, key files with enforced modes, signing and verification. Used by
 * the audit log (system key, cosigners) and by the panel and authorizations.
 */
#include "mamori/keys.h"

#include "mamori/status.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ALG_ED25519 0x01
#define KEY_B64_LEN 44 /* base64 of 33 bytes */
/* A key line is at most "PRIVATE+KEY+" + name + "+" + 8 hex + "+" + 44 + '\n'. */
#define KEY_LINE_MAX (12 + MM_KEY_NAME_MAX + 1 + 8 + 1 + KEY_B64_LEN + 1)

struct mm_verifier {
	char name[MM_KEY_NAME_MAX + 1];
	uint32_t hash;
	uint8_t pk[crypto_sign_PUBLICKEYBYTES];
};

struct mm_signer {
	struct mm_verifier pub;
	uint8_t sk[crypto_sign_SECRETKEYBYTES]; /* seed || pk, as libsodium wants */
};

static int crypto_ready(void)
{
	if (sodium_init() < 0)
		return mm_fail(MM_EINTERNAL, "keys: libsodium failed to initialise");
	return 0;
}

size_t mm_base64_encoded_len(size_t n)
{
	return sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
}

void mm_base64_encode(const void *data, size_t n, char *out, size_t out_size)
{
	MM_BUG(out_size < mm_base64_encoded_len(n));
	sodium_bin2base64(out, out_size, data, n, sodium_base64_VARIANT_ORIGINAL);
}

int mm_base64_decode(const char *text, size_t len, uint8_t *out, size_t out_len)
{
	size_t bin_len = 0;
	const char *end = NULL;
	size_t tail = out_len % 3;
	char check[5];

	/* Padded base64 of out_len bytes has exactly this length; anything else is not ours. */
	if (len != 4 * ((out_len + 2) / 3))
		return MM_EFORMAT;
	/* The alphabet is checked here: libsodium's decoder lets some non-ASCII bytes through. */
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		bool pad = c == '=' && i >= len - 2 && (i == len - 1 || text[len - 1] == '=');
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/' || pad))
			return MM_EFORMAT;
	}
	if (sodium_base642bin(out, out_len, text, len, NULL, &bin_len, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != out_len || end != text + len)
		return MM_EFORMAT;
	/* Canonical form only: non-zero pad bits would give one value two spellings. Only the
	 * last, padded quantum can carry them. */
	if (tail != 0) {
		mm_base64_encode(out + out_len - tail, tail, check, sizeof(check));
		if (memcmp(check, text + len - 4, 4) != 0)
			return MM_EFORMAT;
	}
	return 0;
}

static bool name_valid(const char *name, size_t len)
{
	if (len == 0 || len > MM_KEY_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c >= 0x7f || c == '+')
			return false;
	}
	return true;
}

static uint32_t key_hash(const char *name, const uint8_t pk[crypto_sign_PUBLICKEYBYTES])
{
	crypto_hash_sha256_state st;
	uint8_t h[crypto_hash_sha256_BYTES];
	const uint8_t sep[2] = {'\n', ALG_ED25519};

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)name, strlen(name));
	crypto_hash_sha256_update(&st, sep, sizeof(sep));
	crypto_hash_sha256_update(&st, pk, crypto_sign_PUBLICKEYBYTES);
	crypto_hash_sha256_final(&st, h);
	return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

/* "<name>+<hash8hex>+<base64(0x01 || key32)>" into out (size >= KEY_LINE_MAX). */
static void encode_key(const char *prefix, const char *name, uint32_t hash,
		       const uint8_t key[32], char *out, size_t out_size)
{
	uint8_t raw[33];
	char b64[KEY_B64_LEN + 1];

	raw[0] = ALG_ED25519;
	memcpy(raw + 1, key, 32);
	mm_base64_encode(raw, sizeof(raw), b64, sizeof(b64));
	snprintf(out, out_size, "%s%s+%08x+%s", prefix, name, hash, b64);
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(b64, sizeof(b64));
}

/*
 * Splits "<name>+<hash8hex>+<b64>" (after any prefix), checks each part and
 * decodes the 32-byte key. what names the kind of key for messages.
 */
static int decode_key(const char *what, const char *text, char name[MM_KEY_NAME_MAX + 1],
		      uint32_t *hash, uint8_t key[32])
{
	size_t len = strlen(text);
	const char *p1, *p2;
	uint8_t raw[33];
	char hex[9];
	int rc;

	if (len > 0 && text[len - 1] == '\n')
		len--;
	p1 = memchr(text, '+', len);
	if (!p1)
		return mm_fail(MM_EFORMAT, "keys: %s: expected <name>+<hash>+<key>", what);
	p2 = memchr(p1 + 1, '+', len - (size_t)(p1 + 1 - text));
	if (!p2)
		return mm_fail(MM_EFORMAT, "keys: %s: expected <name>+<hash>+<key>", what);
	if (!name_valid(text, (size_t)(p1 - text)))
		return mm_fail(MM_EFORMAT,
			       "keys: %s: key name must be 1..%d printable characters without "
			       "space or '+'",
			       what, MM_KEY_NAME_MAX);
	if (p2 - p1 - 1 != 8)
		return mm_fail(MM_EFORMAT, "keys: %s: key hash must be 8 hex digits", what);
	for (int i = 0; i < 8; i++) {
		char c = p1[1 + i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return mm_fail(MM_EFORMAT, "keys: %s: key hash must be 8 lowercase hex digits",
				       what);
		hex[i] = c;
	}
	hex[8] = '\0';
	*hash = (uint32_t)strtoul(hex, NULL, 16);
	rc = mm_base64_decode(p2 + 1, len - (size_t)(p2 + 1 - text), raw, sizeof(raw));
	if (rc < 0)
		return mm_fail(MM_EFORMAT, "keys: %s: key is not base64 of 33 bytes", what);
	if (raw[0] != ALG_ED25519) {
		unsigned alg = raw[0];
		sodium_memzero(raw, sizeof(raw));
		return mm_fail(MM_EUNSUP, "keys: %s: algorithm byte 0x%02x is not Ed25519 (0x01)",
			       what, alg);
	}
	memcpy(key, raw + 1, 32);
	sodium_memzero(raw, sizeof(raw));
	memcpy(name, text, (size_t)(p1 - text));
	name[p1 - text] = '\0';
	return 0;
}

int mm_verifier_parse(const char *line, struct mm_verifier **out)
{
	struct mm_verifier *v;
	int rc;

	*out = NULL;
	rc = crypto_ready();
	if (rc < 0)
		return rc;
	v = calloc(1, sizeof(*v));
	if (!v)
		return mm_fail(MM_ENOMEM, "keys: out of memory");
	rc = decode_key("verifier key", line, v->name, &v->hash, v->pk);
	if (rc < 0)
		goto fail;
	if (key_hash(v->name, v->pk) != v->hash) {
		rc = mm_fail(MM_EFORMAT, "keys: verifier key %s: key hash %08x does not match the key",
			     v->name, v->hash);
		goto fail;
	}
	*out = v;
	return 0;
fail:
	free(v);
	return rc;
}

int mm_signer_parse(const char *line, struct mm_signer **out)
{
	static const char prefix[] = "PRIVATE+KEY+";
	struct mm_signer *s;
	uint8_t seed[crypto_sign_SEEDBYTES];
	int rc;

	*out = NULL;
	rc = crypto_ready();
	if (rc < 0)
		return rc;
	if (strncmp(line, prefix, sizeof(prefix) - 1) != 0)
		return mm_fail(MM_EFORMAT, "keys: private key must start with %s", prefix);
	s = sodium_malloc(sizeof(*s));
	if (!s)
		return mm_fail(MM_ENOMEM, "keys: out of memory");
	memset(s, 0, sizeof(*s));
	rc = decode_key("private key", line + sizeof(prefix) - 1, s->pub.name, &s->pub.hash, seed);
	if (rc < 0)
		goto fail;
	crypto_sign_seed_keypair(s->pub.pk, s->sk, seed);
	sodium_memzero(seed, sizeof(seed));
	if (key_hash(s->pub.name, s->pub.pk) != s->pub.hash) {
		rc = mm_fail(MM_EFORMAT, "keys: private key %s: key hash %08x does not match the key",
			     s->pub.name, s->pub.hash);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	sodium_memzero(seed, sizeof(seed));
	sodium_free(s);
	return rc;
}

/*
 * Reads a one-line key file into buf (NUL-terminated). When private, the
 * file must be a regular file with no group/other permission bits.
 */
static int read_key_file(const char *path, bool private, char *buf, size_t size)
{
	struct stat st;
	ssize_t n;
	size_t used = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return mm_fail(errno == ENOENT ? MM_ENOENT : MM_EIO, "keys: %s: %s", path,
			       strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = mm_fail(MM_EIO, "keys: %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = mm_fail(MM_EFORMAT, "keys: %s: not a regular file", path);
		goto out;
	}
	if (private && (st.st_mode & 077)) {
		rc = mm_fail(MM_EPERM,
			     "keys: %s: private key file has mode %04o; refusing it (chmod 600)",
			     path, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	while ((n = read(fd, buf + used, size - 1 - used)) > 0)
		used += (size_t)n;
	if (n < 0) {
		rc = mm_fail(MM_EIO, "keys: %s: %s", path, strerror(errno));
		goto out;
	}
	buf[used] = '\0';
	if (used == size - 1 || strlen(buf) != used ||
	    (memchr(buf, '\n', used) && memchr(buf, '\n', used) != buf + used - 1)) {
		rc = mm_fail(MM_EFORMAT, "keys: %s: expected one key line", path);
		goto out;
	}
out:
	close(fd);
	return rc;
}

int mm_signer_load(const char *path, struct mm_signer **out)
{
	char buf[KEY_LINE_MAX + 2];
	int rc;

	*out = NULL;
	rc = read_key_file(path, true, buf, sizeof(buf));
	if (rc == 0) {
		rc = mm_signer_parse(buf, out);
		if (rc < 0)
			rc = mm_fail(rc, "%s: %s", path, mm_last_error());
	}
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

int mm_verifier_load(const char *path, struct mm_verifier **out)
{
	char buf[KEY_LINE_MAX + 2];
	int rc;

	*out = NULL;
	rc = read_key_file(path, false, buf, sizeof(buf));
	if (rc < 0)
		return rc;
	rc = mm_verifier_parse(buf, out);
	if (rc < 0)
		return mm_fail(rc, "%s: %s", path, mm_last_error());
	return 0;
}

int mm_key_generate(const char *name, char **private_line, char **public_line)
{
	uint8_t seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
	uint32_t hash;
	int rc;

	*private_line = NULL;
	*public_line = NULL;
	rc = crypto_ready();
	if (rc < 0)
		return rc;
	if (!name_valid(name, strlen(name)))
		return mm_fail(MM_EINVAL,
			       "keys: key name \"%s\" must be 1..%d printable characters without "
			       "space or '+'",
			       name, MM_KEY_NAME_MAX);
	*private_line = malloc(KEY_LINE_MAX);
	*public_line = malloc(KEY_LINE_MAX);
	if (!*private_line || !*public_line) {
		free(*private_line);
		free(*public_line);
		*private_line = *public_line = NULL;
		return mm_fail(MM_ENOMEM, "keys: out of memory");
	}
	randombytes_buf(seed, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	hash = key_hash(name, pk);
	encode_key("PRIVATE+KEY+", name, hash, seed, *private_line, KEY_LINE_MAX);
	encode_key("", name, hash, pk, *public_line, KEY_LINE_MAX);
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
	return 0;
}

/* Writes line + '\n' to a new temporary file beside path and fsyncs it; returns its fd. */
static int write_temp(const char *path, const char *line, mode_t mode, char *tmp, size_t tmp_size)
{
	size_t len = strlen(line);
	int fd;

	snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return mm_fail(MM_EIO, "keys: %s: %s", tmp, strerror(errno));
	if (fchmod(fd, mode) < 0 || write(fd, line, len) != (ssize_t)len ||
	    write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
		int rc = mm_fail(MM_EIO, "keys: %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return rc;
	}
	close(fd);
	return 0;
}

static void sync_parent_dir(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	int fd;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path + (slash == path)), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

int mm_key_create_files(const char *name, const char *private_path, const char *public_path)
{
	char *priv = NULL, *pub = NULL;
	char tmp[4200];
	int rc;

	rc = mm_key_generate(name, &priv, &pub);
	if (rc < 0)
		return rc;
	rc = write_temp(private_path, priv, 0600, tmp, sizeof(tmp));
	if (rc < 0)
		goto out;
	/* link() publishes the complete file or fails if a key exists: never a half key, never
	 * a replaced one, even when two processes create the same key at once. */
	if (link(tmp, private_path) < 0) {
		rc = mm_fail(errno == EEXIST ? MM_EEXIST : MM_EIO, "keys: %s: %s", private_path,
			     strerror(errno));
		unlink(tmp);
		goto out;
	}
	unlink(tmp);
	rc = write_temp(public_path, pub, 0644, tmp, sizeof(tmp));
	if (rc == 0 && rename(tmp, public_path) < 0) {
		rc = mm_fail(MM_EIO, "keys: %s: %s", public_path, strerror(errno));
		unlink(tmp);
	}
	if (rc < 0) {
		unlink(private_path);
		goto out;
	}
	sync_parent_dir(private_path);
	sync_parent_dir(public_path);
out:
	if (priv)
		sodium_memzero(priv, strlen(priv));
	free(priv);
	free(pub);
	return rc;
}

const char *mm_signer_name(const struct mm_signer *s)
{
	return s->pub.name;
}

const char *mm_verifier_name(const struct mm_verifier *v)
{
	return v->name;
}

uint32_t mm_verifier_hash(const struct mm_verifier *v)
{
	return v->hash;
}

const uint8_t *mm_verifier_pubkey(const struct mm_verifier *v)
{
	return v->pk;
}

int mm_signer_verifier(const struct mm_signer *s, struct mm_verifier **out)
{
	*out = malloc(sizeof(**out));
	if (!*out)
		return mm_fail(MM_ENOMEM, "keys: out of memory");
	**out = s->pub;
	return 0;
}

int mm_verifier_encode(const struct mm_verifier *v, char **out)
{
	*out = malloc(KEY_LINE_MAX);
	if (!*out)
		return mm_fail(MM_ENOMEM, "keys: out of memory");
	encode_key("", v->name, v->hash, v->pk, *out, KEY_LINE_MAX);
	return 0;
}

int mm_sign(const struct mm_signer *s, const void *msg, size_t len, uint8_t sig[MM_SIG_LEN])
{
	if (crypto_sign_detached(sig, NULL, msg, len, s->sk) != 0)
		return mm_fail(MM_EINTERNAL, "keys: signing with %s failed", s->pub.name);
	return 0;
}

bool mm_verify(const struct mm_verifier *v, const void *msg, size_t len,
	       const uint8_t sig[MM_SIG_LEN])
{
	if (crypto_ready() < 0)
		return false;
	return crypto_sign_verify_detached(sig, msg, len, v->pk) == 0;
}

void mm_signer_free(struct mm_signer *s)
{
	/* sodium_free wipes the guarded allocation before releasing it. */
	if (s)
		sodium_free(s);
}

void mm_verifier_free(struct mm_verifier *v)
{
	free(v);
}
