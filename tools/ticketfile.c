/* ticketfile.c - kts-server's session ticket key file; see ticketfile.h. */
#include "ticketfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define B64_KEY_LEN (4 * ((KTS_TICKET_KEY_LEN + 2) / 3)) /* 88 characters */

static int is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static int is_b64(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '+' || ch == '/';
}

static int all_zero(const unsigned char *p, size_t len)
{
	unsigned char acc = 0;

	while (len--)
		acc |= *p++;
	return acc == 0;
}

/* Decode the base64 token s[0, len) into exactly KTS_TICKET_KEY_LEN bytes. */
static int decode_key(const char *s, size_t len, int line, unsigned char *out, char *err,
		      size_t errlen)
{
	unsigned char tmp[B64_KEY_LEN / 4 * 3];
	size_t pad = 0, bytes;

	for (size_t i = 0; i < len; i++) {
		if (is_b64(s[i]) && pad == 0)
			continue;
		if (s[i] == '=' && pad < 2) {
			pad++;
			continue;
		}
		if ((unsigned char)s[i] >= 0x21 && (unsigned char)s[i] < 0x7f)
			snprintf(err, errlen, "line %d: key is not valid base64 ('%c' at character %zu)",
				 line, s[i], i + 1);
		else
			snprintf(err, errlen,
				 "line %d: key is not valid base64 (byte 0x%02x at character %zu)", line,
				 (unsigned char)s[i], i + 1);
		return -1;
	}
	if (len % 4) {
		snprintf(err, errlen,
			 "line %d: key is not valid base64 (%zu characters, not a multiple of 4)", line,
			 len);
		return -1;
	}
	bytes = len / 4 * 3 - pad;
	if (bytes != KTS_TICKET_KEY_LEN) {
		snprintf(err, errlen,
			 "line %d: key is %zu bytes, must be %d (AES-256 key then HMAC-SHA256 key)",
			 line, bytes, KTS_TICKET_KEY_LEN);
		return -1;
	}
	/* len == B64_KEY_LEN here. */
	if (EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len) != (int)sizeof(tmp)) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		snprintf(err, errlen, "line %d: key is not valid base64", line);
		return -1;
	}
	memcpy(out, tmp, KTS_TICKET_KEY_LEN);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	if (all_zero(out, KTS_TICKET_KEY_LEN / 2) ||
	    all_zero(out + KTS_TICKET_KEY_LEN / 2, KTS_TICKET_KEY_LEN / 2)) {
		OPENSSL_cleanse(out, KTS_TICKET_KEY_LEN);
		snprintf(err, errlen, "line %d: the AES or the HMAC half of the key is all zero bytes",
			 line);
		return -1;
	}
	return 0;
}

static int parse_keyrev(const char *s, size_t len, unsigned int *out)
{
	unsigned long long v = 0;

	if (len == 0 || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 0xffffffffULL)
		return -1;
	*out = (unsigned int)v;
	return 0;
}

/* One line (without its '\n'). Returns 0 (nothing), 1 (a key in *k) or -1. */
static int parse_line(const char *s, size_t len, int line, struct ticketfile_key *k, char *err,
		      size_t errlen)
{
	size_t a = 0, b, c, d;

	while (a < len && is_space(s[a]))
		a++;
	while (len > a && is_space(s[len - 1]))
		len--;
	if (a == len || s[a] == '#')
		return 0;
	for (b = a; b < len && !is_space(s[b]);)
		b++;
	for (c = b; c < len && is_space(s[c]);)
		c++;
	for (d = c; d < len && !is_space(s[d]);)
		d++;
	if (parse_keyrev(s + a, b - a, &k->keyrev) < 0) {
		snprintf(err, errlen, "line %d: keyrev must be a decimal number 0..4294967295", line);
		return -1;
	}
	if (c == len) {
		snprintf(err, errlen, "line %d: keyrev %u has no key (want '<keyrev> <base64>')", line,
			 k->keyrev);
		return -1;
	}
	if (d != len) {
		snprintf(err, errlen, "line %d: text after the key (want '<keyrev> <base64>')", line);
		return -1;
	}
	k->line = line;
	return decode_key(s + c, d - c, line, k->key, err, errlen) < 0 ? -1 : 1;
}

int ticketfile_parse(const char *buf, size_t len, struct ticketfile_key *keys, size_t max,
		     char *err, size_t errlen)
{
	size_t n = 0, pos = 0;
	int line = 0;

	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - buf) : len;
		struct ticketfile_key k;
		int rc;

		line++;
		rc = parse_line(buf + pos, end - pos, line, &k, err, errlen);
		pos = nl ? end + 1 : len;
		if (rc == 0)
			continue;
		if (rc < 0)
			goto fail;
		for (size_t i = 0; i < n; i++) {
			int same = CRYPTO_memcmp(keys[i].key, k.key, sizeof(k.key)) == 0;

			if (keys[i].keyrev == k.keyrev) {
				snprintf(err, errlen, "line %d: keyrev %u is already on line %d%s", line,
					 k.keyrev, keys[i].line,
					 same ? "" : " with a different key");
				goto fail_k;
			}
			if (same) {
				snprintf(err, errlen,
					 "line %d: the key of keyrev %u is line %d's key (keyrev %u)",
					 line, k.keyrev, keys[i].line, keys[i].keyrev);
				goto fail_k;
			}
		}
		if (n == max) {
			snprintf(err, errlen, "line %d: more than %zu keys", line, max);
			goto fail_k;
		}
		keys[n++] = k;
		OPENSSL_cleanse(&k, sizeof(k));
		continue;
fail_k:
		OPENSSL_cleanse(&k, sizeof(k));
		goto fail;
	}
	return (int)n;
fail:
	ticketfile_wipe(keys, n);
	return -1;
}

int ticketfile_check_stat(const struct stat *st, uid_t uid, char *err, size_t errlen)
{
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "not a regular file (%s)",
			 S_ISDIR(st->st_mode)	 ? "a directory"
			 : S_ISFIFO(st->st_mode) ? "a FIFO"
			 : S_ISSOCK(st->st_mode) ? "a socket"
			 : S_ISCHR(st->st_mode)	 ? "a character device"
			 : S_ISBLK(st->st_mode)	 ? "a block device"
						 : "of another type");
		return -1;
	}
	if (st->st_uid != uid) {
		snprintf(err, errlen, "owned by uid %u, must be owned by uid %u (the server's)",
			 (unsigned)st->st_uid, (unsigned)uid);
		return -1;
	}
	if (st->st_mode & 077) {
		snprintf(err, errlen,
			 "mode is %04o, must give group and others no access (0600 or 0400)",
			 (unsigned)(st->st_mode & 07777));
		return -1;
	}
	return 0;
}

int ticketfile_load(const char *path, struct ticketfile_key *keys, size_t max, char *err,
		    size_t errlen)
{
	char why[200];
	struct stat st;
	char *buf;
	size_t got = 0;
	int fd, n = -1;

	/* O_NONBLOCK: opening a FIFO must not hang; it fails the check below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (ticketfile_check_stat(&st, geteuid(), why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		close(fd);
		return -1;
	}
	if (st.st_size > TICKETFILE_MAX_SIZE) {
		snprintf(err, errlen, "%s: larger than %d bytes", path, TICKETFILE_MAX_SIZE);
		close(fd);
		return -1;
	}
	buf = malloc(TICKETFILE_MAX_SIZE + 1);
	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, buf + got, TICKETFILE_MAX_SIZE + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		got += (size_t)r;
		if (got > TICKETFILE_MAX_SIZE) {
			snprintf(err, errlen, "%s: larger than %d bytes", path, TICKETFILE_MAX_SIZE);
			goto out;
		}
	}
	n = ticketfile_parse(buf, got, keys, max, why, sizeof(why));
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
	} else if (n == 0) {
		snprintf(err, errlen, "%s: no keys in the file", path);
		n = -1;
	}
out:
	OPENSSL_cleanse(buf, got);
	free(buf);
	close(fd);
	return n;
}

int ticketfile_digest(const struct ticketfile_key *k, unsigned char out[TICKETFILE_DIGEST_LEN])
{
	unsigned int len = 0;

	if (EVP_Digest(k->key, sizeof(k->key), out, &len, EVP_sha256(), NULL) != 1 ||
	    len != TICKETFILE_DIGEST_LEN)
		return -1;
	return 0;
}

int ticketfile_plan(const struct ticketfile_key *keys, size_t n, const struct ticketfile_seen *seen,
		    size_t nseen, size_t *first_new, char *err, size_t errlen)
{
	size_t last_known = 0, i, j;
	int any_known = 0;

	for (i = 0; i < n; i++) {
		unsigned char dg[TICKETFILE_DIGEST_LEN];

		if (ticketfile_digest(&keys[i], dg) < 0) {
			snprintf(err, errlen, "line %d: SHA-256 failed", keys[i].line);
			return -1;
		}
		for (j = 0; j < nseen; j++)
			if (seen[j].keyrev == keys[i].keyrev)
				break;
		if (j == nseen)
			continue;
		if (CRYPTO_memcmp(seen[j].digest, dg, sizeof(dg)) != 0) {
			snprintf(err, errlen,
				 "line %d: keyrev %u was loaded before with a different key (a keyrev "
				 "names one key for the life of the server)",
				 keys[i].line, keys[i].keyrev);
			return -1;
		}
		any_known = 1;
		last_known = i;
	}
	if (!any_known) {
		*first_new = 0;
		return 0;
	}
	for (i = 0; i < last_known; i++) {
		for (j = 0; j < nseen; j++)
			if (seen[j].keyrev == keys[i].keyrev)
				break;
		if (j == nseen) {
			snprintf(err, errlen,
				 "line %d: new keyrev %u comes before keyrev %u (line %d), which is "
				 "already loaded; add new keys at the end of the file",
				 keys[i].line, keys[i].keyrev, keys[last_known].keyrev,
				 keys[last_known].line);
			return -1;
		}
	}
	*first_new = last_known + 1;
	return 0;
}

void ticketfile_wipe(struct ticketfile_key *keys, size_t n)
{
	if (keys && n)
		OPENSSL_cleanse(keys, n * sizeof(*keys));
}
