/*
 * session_file.c - client session files (kts_config_set_session_fd).
 *
 * File format. The file holds zero or more PEM blocks
 *
 *     -----BEGIN SSL SESSION PARAMETERS-----
 *     (base64 of the DER session, as PEM_write_SSL_SESSION writes it)
 *     -----END SSL SESSION PARAMETERS-----
 *
 * one after the other, oldest first. The session is the LAST block that parses
 * completely; anything after it (a partial block from a writer that died) is
 * ignored, and so is everything before it. An empty file, or one without a
 * complete block, holds no session. A file holding one block is exactly what
 * "openssl sess_id" and libtls read and write. Readers look at the last
 * SESSION_READ_MAX bytes only.
 *
 * Writing, under flock(LOCK_EX). Let [S, E) be the block readers take now
 * (S = E = 0 if none) and L the length of the new block:
 *   1. ftruncate(E): drop what follows the current block (readers ignore it).
 *   2. If L <= S: pwrite the new block at 0, fdatasync, ftruncate(L). (compact)
 *      Else: pwrite the new block at E.                                (append)
 *   3. fdatasync.
 * Appending only happens while what precedes the current block is shorter
 * than the new block, so the file stays under three blocks.
 *
 * Crash analysis (a writer dies at any point; its lock goes with it):
 *   - in 1: the file is truncated or not; readers see the old block either way.
 *   - appending: the file is [...][old][part of new]. A partial block has no
 *     END line, so it does not parse and readers fall back to the old block.
 *     Once the END line is written the new block is complete: it wins.
 *   - compacting, before ftruncate(L): bytes [0, L) change, and L <= S means
 *     they all lie before the old block, which stays intact and is still the
 *     last complete block: readers see the old session. After ftruncate(L)
 *     the file is exactly the new block. ftruncate is atomic.
 *   - the next writer starts with step 1, so junk never piles up.
 * Readers therefore always find the old or the new session, never a mix: the
 * only bytes ever overwritten in place lie before the block readers take.
 * (After a power failure this rests on fdatasync ordering the new block before
 * the truncation that makes it the only one.)
 *
 * Locks: flock(2) locks belong to an open file description, which processes
 * that inherited fd, and threads sharing it, all share - so the lock would
 * exclude none of them. Every read or write therefore opens its own
 * description through /proc/self/fd/N and locks that.
 *
 * Session files hold secrets: nothing here logs them, and buffers that held
 * PEM are wiped.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "internal.h"
#include "session_file.h"

#define BEGIN_LINE "-----BEGIN SSL SESSION PARAMETERS-----"
/* Client sessions record the verification rules they were made under in
 * their session ID context (SSL_MAX_SID_CTX_LENGTH bytes). */
#define RULES_LABEL "kts client verification rules v1"
#define RULES_TAG_LEN 32
/* Saves per connection: a burst, then one per interval. */
#define SESSION_SAVES_BURST 4
#define SESSION_SAVES_INTERVAL 60
/* Readers look at most at this many bytes, the end of the file. */
#define SESSION_READ_MAX (64 * 1024)
/* Larger sessions are not saved: a block and a crashed writer's partial
 * block after it must fit in what readers read. Real sessions are ~1-8 KiB. */
#define SESSION_BLOCK_MAX (SESSION_READ_MAX / 2)

/* NULL if st is a regular file owned by the caller with mode 0600, else what is wrong. */
static const char *not_private(const struct stat *st, char *why, size_t len)
{
	const char *type = S_ISDIR(st->st_mode)    ? "a directory"
			   : S_ISFIFO(st->st_mode) ? "a FIFO"
			   : S_ISSOCK(st->st_mode) ? "a socket"
			   : S_ISCHR(st->st_mode)  ? "a character device"
			   : S_ISBLK(st->st_mode)  ? "a block device"
			   : S_ISLNK(st->st_mode)  ? "a symbolic link"
						   : "of unknown type";

	if (!S_ISREG(st->st_mode))
		snprintf(why, len, "not a regular file (%s)", type);
	else if (st->st_uid != getuid())
		snprintf(why, len, "owned by uid %u, must be owned by uid %u", (unsigned)st->st_uid,
			 (unsigned)getuid());
	else if ((st->st_mode & 07777) != 0600)
		snprintf(why, len, "mode is %04o, must be 0600", (unsigned)(st->st_mode & 07777));
	else
		return NULL;
	return why;
}

/* A private open file description of fd, locked with op; -1 and errno on failure. */
static int open_locked(int fd, int flags, int op)
{
	char path[32];
	int f;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	f = open(path, flags | O_CLOEXEC);
	if (f < 0)
		return -1;
	while (flock(f, op) < 0) {
		if (errno != EINTR) {
			int err = errno;
			close(f);
			errno = err;
			return -1;
		}
	}
	return f;
}

/* Read the last (at most SESSION_READ_MAX) bytes of f into buf; *base is the
 * file offset of buf[0]. 0 or -1 and errno. */
static int read_tail(int f, char *buf, size_t *len, off_t *base)
{
	struct stat st;
	size_t want, got = 0;

	if (fstat(f, &st) < 0)
		return -1;
	want = st.st_size > SESSION_READ_MAX ? SESSION_READ_MAX : (size_t)st.st_size;
	*base = st.st_size - (off_t)want;
	while (got < want) {
		ssize_t n = pread(f, buf + got, want - got, *base + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break; /* shorter than fstat said: only what is there counts */
		got += (size_t)n;
	}
	*len = got;
	return 0;
}

/* The last BEGIN_LINE in buf[0, limit), or NULL. Callers walk backwards
 * from the end, each call starting where the last one was found, so a whole
 * walk reads each byte about once. */
static const char *prev_begin(const char *buf, size_t limit)
{
	const size_t n = strlen(BEGIN_LINE);

	for (size_t i = limit >= n ? limit - n + 1 : 0; i-- > 0;)
		if (buf[i] == '-' && memcmp(buf + i, BEGIN_LINE, n) == 0)
			return buf + i;
	return NULL;
}

/* PEM "Proc-Type: 4,ENCRYPTED" would make OpenSSL ask the terminal for a
 * password: a session file never has one. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* The session in the last complete block of buf, with the block's bounds
 * [*start, *end); NULL (and 0, 0) if there is none. A block ends before the
 * next BEGIN line at the latest, so each candidate is parsed only up to
 * there: a file of thousands of BEGIN lines costs one pass, not one per
 * line. */
static SSL_SESSION *newest_block(const char *buf, size_t len, size_t *start, size_t *end)
{
	size_t limit = len;
	const char *p;

	while ((p = prev_begin(buf, limit)) != NULL) {
		size_t pos = (size_t)(p - buf);
		BIO *bio = BIO_new_mem_buf(p, (int)(limit - pos));
		SSL_SESSION *sess = bio ? PEM_read_bio_SSL_SESSION(bio, NULL, no_password, NULL) : NULL;

		if (sess) {
			*start = pos;
			*end = limit - (size_t)BIO_pending(bio); /* the mem BIO stops after the END line */
			BIO_free(bio);
			kts_err_clear();
			return sess;
		}
		BIO_free(bio);
		limit = pos;
	}
	kts_err_clear();
	*start = *end = 0;
	return NULL;
}

SSL_SESSION *kts_session_file_parse(const char *buf, size_t len)
{
	size_t start, end;

	return newest_block(buf, len, &start, &end);
}

/* Load the newest session from f (locked) and the absolute bounds of its
 * block. 0 or -1 and errno. */
static int load(int f, SSL_SESSION **sess, off_t *start, off_t *end)
{
	char *buf = malloc(SESSION_READ_MAX);
	size_t len = 0, s, e;
	off_t base;
	int rc = -1;

	*sess = NULL;
	if (!buf) {
		errno = ENOMEM;
		return -1;
	}
	if (read_tail(f, buf, &len, &base) == 0) {
		*sess = newest_block(buf, len, &s, &e);
		*start = *sess ? base + (off_t)s : 0;
		*end = *sess ? base + (off_t)e : 0;
		rc = 0;
	}
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rc;
}

int kts_session_file_read(int fd, SSL_SESSION **sess)
{
	off_t start, end;
	int f = open_locked(fd, O_RDONLY, LOCK_SH), rc;

	*sess = NULL;
	if (f < 0)
		return -1;
	rc = load(f, sess, &start, &end);
	close(f);
	return rc;
}

static int pwrite_all(int f, const char *p, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(f, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Steps 1-3 of the comment at the top, on f (locked, checked private). */
static int store(int f, const char *pem, size_t len)
{
	SSL_SESSION *old;
	off_t start, end;

	if (load(f, &old, &start, &end) < 0)
		return -1;
	SSL_SESSION_free(old);
	if (ftruncate(f, end) < 0)
		return -1;
	if ((off_t)len <= start) {
		if (pwrite_all(f, pem, len, 0) < 0 || fdatasync(f) < 0 || ftruncate(f, (off_t)len) < 0)
			return -1;
	} else if (pwrite_all(f, pem, len, end) < 0) {
		return -1;
	}
	return fdatasync(f);
}

/* Write sess to the file at fd as its newest session. Failures only cost a
 * later full handshake, so they are not reported. */
static void save(int fd, SSL_SESSION *sess)
{
	BIO *bio = BIO_new(BIO_s_secmem()); /* wiped on free */
	BUF_MEM *pem = NULL;
	struct stat st;
	char why[96];
	int f;

	if (!bio || PEM_write_bio_SSL_SESSION(bio, sess) != 1 || BIO_get_mem_ptr(bio, &pem) != 1 ||
	    pem->length > SESSION_BLOCK_MAX)
		goto out;
	f = open_locked(fd, O_RDWR, LOCK_EX);
	if (f < 0)
		goto out;
	/* Never put secrets into a file that stopped being private. */
	if (fstat(f, &st) == 0 && !not_private(&st, why, sizeof(why)))
		store(f, pem->data, pem->length);
	close(f);
out:
	BIO_free(bio);
	kts_err_clear();
}

/* The verification rules a client connection applies, as 32 bytes:
 * SHA-256 of the flags and the trust anchors (config.c's trust_id). The
 * server name is kept apart, as the session's host name. */
static void rules_tag(const struct kts_config *cfg, int verify, unsigned char tag[RULES_TAG_LEN])
{
	unsigned char in[sizeof(RULES_LABEL) + 1 + sizeof(cfg->trust_id)];

	memcpy(in, RULES_LABEL, sizeof(RULES_LABEL));
	in[sizeof(RULES_LABEL)] = (unsigned char)verify;
	memcpy(in + sizeof(RULES_LABEL) + 1, cfg->trust_id, sizeof(cfg->trust_id));
	EVP_Digest(in, sizeof(in), tag, NULL, EVP_sha256(), NULL);
}

int kts_client_session_tag(const struct kts_config *cfg, int verify, SSL_SESSION *sess)
{
	unsigned char tag[RULES_TAG_LEN];

	rules_tag(cfg, verify, tag);
	return SSL_SESSION_set1_id_context(sess, tag, sizeof(tag)) == 1 ? 0 : -1;
}

/* The first SESSION_SAVES_BURST sessions of a connection are saved, then at
 * most one per SESSION_SAVES_INTERVAL seconds (long-lived connections still
 * get late tickets into the file). */
static int save_allowed(struct kts *c)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (c->sessions_saved >= SESSION_SAVES_BURST &&
	    now.tv_sec - c->last_save < SESSION_SAVES_INTERVAL)
		return 0;
	c->sessions_saved++;
	c->last_save = now.tv_sec;
	return 1;
}

/* OpenSSL calls this for each new client session: at the end of a TLS 1.2
 * handshake, and for each TLS 1.3 ticket, possibly long after the handshake. */
int kts_client_session_new(SSL *ssl, SSL_SESSION *sess)
{
	const struct kts_config *cfg = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct kts *c = SSL_get_app_data(ssl);
	int verify = c ? c->verify : cfg ? cfg->verify : 0;

	if (!cfg || cfg->session_fd < 0 || SSL_is_server(ssl) || !SSL_SESSION_is_resumable(sess))
		return 0;
	/* A verifying connection has a verified peer by now; never vouch otherwise. */
	if (verify && SSL_get_verify_result(ssl) != X509_V_OK)
		return 0;
	/* Record the name this session was verified for (OpenSSL only keeps the
	 * SNI, and none is sent for an address), so it is never offered to another,
	 * and the rules it was verified under, in the session ID context that
	 * client sessions have no other use for. */
	if ((c && c->server_name && SSL_SESSION_set1_hostname(sess, c->server_name) != 1) ||
	    kts_client_session_tag(cfg, verify, sess) < 0)
		return 0;
	/* Each save rewrites and syncs the file: a server sending thousands of
	 * tickets must not make a connection do thousands of them. */
	if (c && !save_allowed(c))
		return 0;
	save(cfg->session_fd, sess);
	return 0; /* no reference kept */
}

int kts_config_set_session_fd(struct kts_config *cfg, int fd)
{
	struct stat st;
	char why[96];
	int f;

	if (fstat(fd, &st) < 0)
		return kts_config_fail(cfg, KTS_ERR_ARG, "session file: fd %d: %s", fd,
				       strerror(errno));
	if (not_private(&st, why, sizeof(why)))
		return kts_config_fail(cfg, KTS_ERR_ARG, "session file: %s", why);
	f = open_locked(fd, O_RDONLY, LOCK_SH);
	if (f < 0)
		return kts_config_fail(cfg, KTS_ERR_SYS,
				       "session file: reopening /proc/self/fd/%d to lock it: %s", fd,
				       strerror(errno));
	close(f);
	cfg->session_fd = fd;
	SSL_CTX_set_session_cache_mode(cfg->ctx, SSL_CTX_get_session_cache_mode(cfg->ctx) |
							 SSL_SESS_CACHE_CLIENT |
							 SSL_SESS_CACHE_NO_INTERNAL_STORE);
	/* One callback slot per SSL_CTX: the server cache's callback, if it
	 * holds it, passes client sessions on (session_file.h). */
	if (!SSL_CTX_sess_get_new_cb(cfg->ctx))
		SSL_CTX_sess_set_new_cb(cfg->ctx, kts_client_session_new);
	return KTS_OK;
}

int64_t kts_session_ends(SSL_SESSION *sess)
{
	long made = SSL_SESSION_get_time(sess), timeout = SSL_SESSION_get_timeout(sess);
	unsigned long hint = SSL_SESSION_has_ticket(sess) ? SSL_SESSION_get_ticket_lifetime_hint(sess)
							  : 0;

	if (hint > 0 && hint < (unsigned long)LONG_MAX && (long)hint < timeout)
		timeout = (long)hint;
	if (made < 0 || timeout <= 0)
		return -1;
	return made > LONG_MAX - timeout ? INT64_MAX : (int64_t)made + timeout; /* never */
}

/* Made no later than now and not expired; garbage times are not. */
static int in_lifetime(SSL_SESSION *sess, time_t now)
{
	int64_t ends = kts_session_ends(sess);

	return ends >= 0 && now >= SSL_SESSION_get_time(sess) && now < ends;
}

/* Verified under the rules this connection applies: tagged by kts with the
 * same flags and trust anchors (sessions written by other programs carry no
 * tag, and ones from unverified connections carry another). */
static int same_rules(const struct kts *c, SSL_SESSION *sess)
{
	unsigned char tag[RULES_TAG_LEN];
	unsigned int len;
	const unsigned char *have = SSL_SESSION_get0_id_context(sess, &len);

	rules_tag(c->cfg, c->verify, tag);
	return len == sizeof(tag) && CRYPTO_memcmp(have, tag, sizeof(tag)) == 0;
}

/* A session from the file is offered only if it can still resume, and, as
 * resuming skips certificate checks, only to a connection that would have
 * accepted its peer: same verification rules, same server name. */
static int usable(const struct kts *c, SSL_SESSION *sess)
{
	const char *host = SSL_SESSION_get0_hostname(sess);

	/* A connection that verifies a name only takes a session made for that
	 * name (kts records it in every session it saves); one without a name
	 * verifies no name, so a session from the same config is no weaker. */
	int same_name = !c->server_name || (host && strcasecmp(host, c->server_name) == 0);

	/* A connection that verifies nothing cannot be weakened by any session. */
	return SSL_SESSION_is_resumable(sess) && in_lifetime(sess, time(NULL)) && same_name &&
	       (!c->verify || same_rules(c, sess));
}

int kts_client_session_offer(struct kts *c)
{
	const struct kts_config *cfg = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));
	SSL_SESSION *sess;
	off_t start, end;
	int f;

	/* The session ID context is the server's business: a client's sessions
	 * carry none, or a new process could never resume from the file. */
	SSL_set_session_id_context(c->ssl, (const unsigned char *)"", 0);
	if (!cfg || cfg->session_fd < 0)
		return KTS_OK;
	/* Ask TLS 1.2 servers for a ticket (only this client: the config's
	 * servers keep their own ticket policy). */
	SSL_clear_options(c->ssl, SSL_OP_NO_TICKET);
	f = open_locked(cfg->session_fd, O_RDONLY, LOCK_SH);
	if (f < 0 || load(f, &sess, &start, &end) < 0) {
		/* Like bad content, a file we cannot read now only costs a full handshake. */
		if (f >= 0)
			close(f);
		kts_err_clear();
		return KTS_OK;
	}
	close(f);
	/* Content problems only mean a full handshake (and a new file later). */
	if (sess && usable(c, sess) &&
	    (SSL_SESSION_set1_id_context(sess, (const unsigned char *)"", 0) != 1 ||
	     SSL_set_session(c->ssl, sess) != 1))
		kts_err_clear();
	SSL_SESSION_free(sess);
	return KTS_OK;
}
