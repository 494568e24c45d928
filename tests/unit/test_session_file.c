/*
 * test_session_file.c - client session files, on real files in a temp dir:
 * which files kts_config_set_session_fd accepts; that bad content only means
 * "no session"; that the new-session callback writes what reads back; that
 * concurrent writers, killed writers and half-written blocks never leave a
 * torn file; and real handshakes (TLS 1.2, 1.3) that fill the file and then
 * resume from it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "internal.h"
#include "session_file.h"
#include "testutil.h"

static char dir[] = "/tmp/kts-session-XXXXXX";
static char path[64];
static struct kts_config *cfg;
static int fd = -1;

/* ---- helpers ---------------------------------------------------------------- */

static const char *in_dir(const char *name)
{
	static char buf[320];
	snprintf(buf, sizeof(buf), "%s/%s", dir, name);
	return buf;
}

/* A new file in the temp dir with content and mode, open read-write. */
static int make_file(const char *name, mode_t mode, const void *data, size_t len)
{
	int f = open(in_dir(name), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	assert_true(f >= 0);
	assert_int_equal(write(f, data, len), (ssize_t)len);
	assert_int_equal(fchmod(f, mode), 0);
	return f;
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/session", dir);
	cfg = kts_config_new();
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (!cfg || fd < 0 || kts_config_set_session_fd(cfg, fd) != KTS_OK)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	(void)state;
	kts_config_free(cfg);
	close(fd);
	while (d && (e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			unlink(in_dir(e->d_name));
	if (d)
		closedir(d);
	rmdir(dir);
	strcpy(dir + strlen(dir) - 6, "XXXXXX");
	return 0;
}

static const SSL_CIPHER *test_cipher(void)
{
	static const unsigned char id[2] = {0xc0, 0x2b}; /* ECDHE-ECDSA-AES128-GCM-SHA256 */
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	SSL *ssl = SSL_new(ctx);
	const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, id);

	SSL_free(ssl);
	SSL_CTX_free(ctx);
	return cipher;
}

/* A TLS 1.2 session whose master key is derived from its ID, so that a mix
 * of two sessions shows. pad (0..200) varies the PEM size. */
static SSL_SESSION *fake_session(unsigned tag, unsigned serial, size_t pad, int resumable)
{
	SSL_SESSION *s = SSL_SESSION_new();
	unsigned char id[32], key[48];
	char host[256];

	memset(id, 0, sizeof(id));
	memset(host, 'h', sizeof(host));
	host[pad % 200 + 1] = '\0';
	snprintf((char *)id, sizeof(id), "t%u-s%u", tag, serial);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(tag * 31 + serial * 7 + i);
	assert_non_null(s);
	assert_int_equal(SSL_SESSION_set_protocol_version(s, TLS1_2_VERSION), 1);
	assert_int_equal(SSL_SESSION_set_cipher(s, test_cipher()), 1);
	assert_int_equal(SSL_SESSION_set1_master_key(s, key, sizeof(key)), 1);
	assert_int_equal(SSL_SESSION_set1_hostname(s, host), 1);
	SSL_SESSION_set_time(s, (long)time(NULL));
	SSL_SESSION_set_timeout(s, 3600);
	/* As kts tags the sessions of cfg's (verifying) connections. */
	assert_int_equal(kts_client_session_tag(cfg, cfg->verify, s), 0);
	if (resumable)
		assert_int_equal(SSL_SESSION_set1_id(s, id, sizeof(id)), 1);
	return s;
}

/* 1 if s is a whole fake_session (ID and master key belong together). */
static int consistent(SSL_SESSION *s, unsigned *tag, unsigned *serial)
{
	unsigned char key[48];
	unsigned int len;
	const unsigned char *id = SSL_SESSION_get_id(s, &len);

	if (len != 32 || sscanf((const char *)id, "t%u-s%u", tag, serial) != 2 ||
	    SSL_SESSION_get_master_key(s, key, sizeof(key)) != sizeof(key))
		return 0;
	for (size_t i = 0; i < sizeof(key); i++)
		if (key[i] != (unsigned char)(*tag * 31 + *serial * 7 + i))
			return 0;
	return 1;
}

static char *pem_of(SSL_SESSION *s, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *copy;

	assert_int_equal(PEM_write_bio_SSL_SESSION(bio, s), 1);
	*len = (size_t)BIO_get_mem_data(bio, &data);
	copy = malloc(*len);
	memcpy(copy, data, *len);
	BIO_free(bio);
	return copy;
}

/* What a client made from c_cfg (with server name name, may be NULL) offers. */
static SSL_SESSION *offered_by(struct kts_config *c_cfg, const char *name)
{
	struct kts *c = kts_client_new(c_cfg);
	SSL_SESSION *s;

	assert_non_null(c);
	if (name)
		assert_int_equal(kts_set_server_name(c, name), KTS_OK);
	if (kts_client_session_offer(c) != KTS_OK)
		fail_msg("offer failed: %s", kts_error(c));
	s = SSL_get1_session(c->ssl);
	kts_free(c);
	return s;
}

static SSL_SESSION *offered(void)
{
	return offered_by(cfg, NULL);
}

/* Save s the way OpenSSL does: through the config's new-session callback. */
static void save_via(struct kts_config *c_cfg, SSL_SESSION *s, int as_server)
{
	int (*cb)(SSL *, SSL_SESSION *) = SSL_CTX_sess_get_new_cb(c_cfg->ctx);
	SSL *ssl = SSL_new(c_cfg->ctx);

	assert_non_null(cb);
	if (as_server)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	assert_int_equal(cb(ssl, s), 0);
	SSL_free(ssl);
}

static void save(SSL_SESSION *s)
{
	save_via(cfg, s, 0);
}

static off_t file_size(void)
{
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	return st.st_size;
}

static void assert_offers(unsigned tag, unsigned serial)
{
	SSL_SESSION *s = offered();
	unsigned t, n;

	assert_non_null(s);
	assert_true(consistent(s, &t, &n));
	assert_int_equal(t, tag);
	assert_int_equal(n, serial);
	SSL_SESSION_free(s);
}

/* ---- which files are accepted ------------------------------------------------- */

#define assert_rejected(f, code, needle)                                                 \
	do {                                                                             \
		assert_int_equal(kts_config_set_session_fd(cfg, (f)), (code));          \
		if (!strstr(kts_config_error(cfg), (needle)))                            \
			fail_msg("message '%s' lacks '%s'", kts_config_error(cfg), (needle)); \
	} while (0)

static void test_rejected_files(void **state)
{
	int f, sv[2];

	(void)state;
	f = make_file("m644", 0644, "", 0);
	assert_rejected(f, KTS_ERR_ARG, "session file: mode is 0644, must be 0600");
	close(f);
	f = make_file("m640", 0640, "", 0);
	assert_rejected(f, KTS_ERR_ARG, "session file: mode is 0640, must be 0600");
	close(f);
	f = make_file("m400", 0400, "", 0);
	assert_rejected(f, KTS_ERR_ARG, "session file: mode is 0400, must be 0600");
	close(f);
	f = make_file("m4600", 04600, "", 0);
	assert_rejected(f, KTS_ERR_ARG, "mode is 4600");
	close(f);

	assert_int_equal(mkfifo(in_dir("fifo"), 0600), 0);
	f = open(in_dir("fifo"), O_RDWR | O_NONBLOCK);
	assert_rejected(f, KTS_ERR_ARG, "session file: not a regular file (a FIFO)");
	close(f);
	f = open(dir, O_RDONLY | O_DIRECTORY);
	assert_rejected(f, KTS_ERR_ARG, "not a regular file (a directory)");
	close(f);
	f = open("/dev/null", O_RDWR);
	assert_rejected(f, KTS_ERR_ARG, "not a regular file (a character device)");
	close(f);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_rejected(sv[0], KTS_ERR_ARG, "not a regular file (a socket)");
	close(sv[0]);
	close(sv[1]);
	/* The link itself, not its (good) target. */
	assert_int_equal(symlink(path, in_dir("link")), 0);
	f = open(in_dir("link"), O_PATH | O_NOFOLLOW);
	assert_rejected(f, KTS_ERR_ARG, "not a regular file (a symbolic link)");
	close(f);
	assert_rejected(-1, KTS_ERR_ARG, "Bad file descriptor");

	/* Failures leave the working setting alone. */
	assert_int_equal(cfg->session_fd, fd);
	f = make_file("good", 0600, "", 0);
	assert_int_equal(kts_config_set_session_fd(cfg, f), KTS_OK);
	assert_int_equal(kts_config_set_session_fd(cfg, fd), KTS_OK);
	close(f);
}

static void test_other_owner(void **state)
{
	int f;

	(void)state;
	if (getuid() != 0) {
		print_message("[  SKIPPED ] other owner: only root can give a file away\n");
		skip();
	}
	f = make_file("theirs", 0600, "", 0);
	assert_int_equal(fchown(f, 65534, (gid_t)-1), 0);
	assert_rejected(f, KTS_ERR_ARG, "session file: owned by uid 65534, must be owned by uid 0");
	close(f);
}

/* ---- content ------------------------------------------------------------------ */

static void put(const void *data, size_t len)
{
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, data, len, 0), (ssize_t)len);
}

static void assert_no_session(void)
{
	SSL_SESSION *s = offered();
	if (s) {
		SSL_SESSION_free(s);
		fail_msg("a session was offered");
	}
}

static void test_bad_content(void **state)
{
	static const char garbage[] = "hello\n-----BEGIN SSL SESSION PARAMETERS-----\n!!!!\n"
				      "-----END SSL SESSION PARAMETERS-----\n\x01\x02\xff";
	/* Must not ask the terminal for a password. */
	static const char encrypted[] = "-----BEGIN SSL SESSION PARAMETERS-----\n"
					"Proc-Type: 4,ENCRYPTED\n"
					"DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\n"
					"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
					"-----END SSL SESSION PARAMETERS-----\n";
	SSL_SESSION *s;
	size_t len;
	char *pem;

	(void)state;
	assert_no_session(); /* empty */
	put(garbage, sizeof(garbage));
	assert_no_session();
	put(encrypted, sizeof(encrypted) - 1);
	assert_no_session();

	s = fake_session(1, 1, 10, 1);
	pem = pem_of(s, &len);
	put(pem, len / 2); /* truncated */
	assert_no_session();
	put(pem, len - 40); /* only the END line is cut */
	assert_no_session();
	put(pem, len);
	assert_offers(1, 1);
	put(pem, len - 1); /* no final newline: still complete */
	assert_offers(1, 1);
	free(pem);
	SSL_SESSION_free(s);

	/* Not resumable (no ID, no ticket), or expired: not offered. */
	s = fake_session(1, 2, 10, 0);
	pem = pem_of(s, &len);
	put(pem, len);
	assert_no_session();
	free(pem);
	SSL_SESSION_free(s);
	s = fake_session(1, 3, 10, 1);
	SSL_SESSION_set_time(s, (long)time(NULL) - 7200);
	pem = pem_of(s, &len);
	put(pem, len);
	assert_no_session();
	free(pem);
	SSL_SESSION_free(s);
}

/* A session is only offered to the server name it was made with. */
static void test_server_name(void **state)
{
	SSL_SESSION *s = fake_session(2, 1, 0, 1), *got;

	(void)state;
	assert_int_equal(SSL_SESSION_set1_hostname(s, "a.example"), 1);
	save(s);
	SSL_SESSION_free(s);
	got = offered_by(cfg, "b.example");
	assert_null(got);
	got = offered_by(cfg, "A.example");
	assert_non_null(got);
	SSL_SESSION_free(got);
	got = offered_by(cfg, NULL); /* no name to compare */
	assert_non_null(got);
	SSL_SESSION_free(got);
	/* A session without a recorded name (made over an address, no SNI) never
	 * goes to a connection that verifies a name: resuming skips that check. */
	s = fake_session(2, 2, 0, 1);
	assert_int_equal(SSL_SESSION_set1_hostname(s, NULL), 1);
	save(s);
	SSL_SESSION_free(s);
	assert_null(offered_by(cfg, "b.example"));
}

/* Thousands of bare BEGIN lines around a real block: the block is still the
 * session (each candidate is parsed only up to the next BEGIN line, so such
 * a file costs one pass: 2 ms instead of 280 ms for 64 KiB). */
static void test_many_begin_lines(void **state)
{
	static const char begin[] = "-----BEGIN SSL SESSION PARAMETERS-----\n";
	SSL_SESSION *s = fake_session(8, 1, 0, 1);
	size_t len, n = 1500 * (sizeof(begin) - 1);
	char *pem = pem_of(s, &len), *buf = malloc(n + len);

	(void)state;
	for (size_t i = 0; i < 1500; i++)
		memcpy(buf + i * (sizeof(begin) - 1), begin, sizeof(begin) - 1);
	memcpy(buf + n, pem, len); /* BEGIN lines, then the block */
	put(buf, n + len);
	assert_offers(8, 1);
	memcpy(buf, pem, len); /* the block, then BEGIN lines */
	for (size_t i = 0; i < 1500; i++)
		memcpy(buf + len + i * (sizeof(begin) - 1), begin, sizeof(begin) - 1);
	put(buf, n + len);
	assert_offers(8, 1);
	free(buf);
	free(pem);
	SSL_SESSION_free(s);
}

/* Crafted times (overflowing made + timeout, negative, in the future) only
 * mean no session. */
static void test_bad_times(void **state)
{
	/* {made, timeout}; made 0 stands for an hour from now. (OpenSSL itself
	 * refuses negative timeouts and reads 0 as 3 seconds.) */
	static const long times[][2] = {
		{LONG_MAX, LONG_MAX}, {LONG_MAX - 10, 100}, {-1, 3600}, {0, LONG_MAX}, {0, 60},
	};
	SSL_SESSION *s;

	(void)state;
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		s = fake_session(9, (unsigned)i, 0, 1);
		SSL_SESSION_set_time(s, times[i][0] ? times[i][0] : (long)time(NULL) + 3600);
		SSL_SESSION_set_timeout(s, times[i][1]);
		save(s);
		SSL_SESSION_free(s);
		if (offered())
			fail_msg("times {%ld, %ld} offered", times[i][0], times[i][1]);
	}
	s = fake_session(9, 99, 0, 1);
	SSL_SESSION_set_timeout(s, LONG_MAX); /* made now, never expires: fine */
	save(s);
	SSL_SESSION_free(s);
	assert_offers(9, 99);
}

/* A CA file holding the test certificate, at path p, after a comment (so
 * that files of the same anchor can differ in content). */
static void write_ca(const char *p, const char *comment)
{
	FILE *f = fopen(p, "w");

	assert_non_null(f);
	fputs(comment, f);
	assert_int_equal(PEM_write_X509(f, test_cert()), 1);
	fclose(f);
}

static struct kts_config *config_with(int verify, const char *ca)
{
	struct kts_config *c = kts_config_new();

	assert_non_null(c);
	assert_int_equal(kts_config_set_verify(c, verify), KTS_OK);
	if (ca)
		assert_int_equal(kts_config_set_ca_file(c, ca), KTS_OK);
	assert_int_equal(kts_config_set_session_fd(c, fd), KTS_OK);
	return c;
}

/* 1 if a session saved by `from` is offered to `to`. */
static int crosses(struct kts_config *from, struct kts_config *to)
{
	SSL_SESSION *s = fake_session(10, 1, 0, 1), *got;

	save_via(from, s, 0);
	SSL_SESSION_free(s);
	got = offered_by(to, NULL);
	SSL_SESSION_free(got);
	return got != NULL;
}

/* A session goes only to connections that verify under the rules it was
 * verified under (flags, trust anchors), or to ones that verify nothing. */
static void test_verification_rules(void **state)
{
	const int full = KTS_VERIFY_PEER | KTS_VERIFY_NAME;
	struct kts_config *unverified, *peer_only, *ca_a, *ca_a_copy, *ca_b;
	char a[320], a_copy[320], b[320];
	SSL_SESSION *s;
	size_t len;
	char *pem;

	(void)state;
	test_cert_init();
	snprintf(a, sizeof(a), "%s", in_dir("ca-a.pem"));
	snprintf(a_copy, sizeof(a_copy), "%s", in_dir("ca-a-copy.pem"));
	snprintf(b, sizeof(b), "%s", in_dir("ca-b.pem"));
	write_ca(a, "# a\n");
	write_ca(a_copy, "# a\n");
	write_ca(b, "# b: other bytes, so other anchors as far as kts knows\n");
	unverified = config_with(0, NULL);
	peer_only = config_with(KTS_VERIFY_PEER, NULL);
	ca_a = config_with(full, a);
	ca_a_copy = config_with(full, a_copy);
	ca_b = config_with(full, b);

	/* The hole: unverified sessions must not reach a verifying connection. */
	assert_false(crosses(unverified, cfg));
	assert_false(crosses(unverified, ca_a));
	assert_true(crosses(unverified, unverified));
	/* Verified sessions are good for weaker rules, never for others. */
	assert_true(crosses(cfg, cfg));
	assert_true(crosses(cfg, unverified));
	assert_false(crosses(peer_only, cfg));
	assert_false(crosses(cfg, peer_only));
	assert_false(crosses(cfg, ca_a));
	assert_false(crosses(ca_a, cfg));
	assert_false(crosses(ca_a, ca_b));
	assert_true(crosses(ca_a, ca_a));
	assert_true(crosses(ca_a, ca_a_copy)); /* anchors count by content */

	/* Written by another program (no kts tag): only for unverified connections. */
	s = fake_session(10, 2, 0, 1);
	assert_int_equal(SSL_SESSION_set1_id_context(s, (const unsigned char *)"", 0), 1);
	pem = pem_of(s, &len);
	put(pem, len);
	assert_no_session();
	s = (SSL_SESSION_free(s), offered_by(unverified, NULL));
	assert_non_null(s);
	SSL_SESSION_free(s);
	free(pem);

	kts_config_free(unverified);
	kts_config_free(peer_only);
	kts_config_free(ca_a);
	kts_config_free(ca_a_copy);
	kts_config_free(ca_b);
}

/* ---- writing ------------------------------------------------------------------ */

static void test_roundtrip(void **state)
{
	SSL_SESSION *s = fake_session(3, 1, 50, 1), *got;
	unsigned char k1[48], k2[48];
	unsigned int l1, l2;

	(void)state;
	save(s);
	got = offered();
	assert_non_null(got);
	assert_int_equal(SSL_SESSION_get_master_key(got, k1, sizeof(k1)), 48);
	assert_int_equal(SSL_SESSION_get_master_key(s, k2, sizeof(k2)), 48);
	assert_memory_equal(k1, k2, 48);
	assert_memory_equal(SSL_SESSION_get_id(got, &l1), SSL_SESSION_get_id(s, &l2), 32);
	assert_int_equal(l1, l2);
	SSL_SESSION_free(got);
	SSL_SESSION_free(s);
}

/* The file may be gone from the directory: the fd is what counts. */
static void test_unlinked(void **state)
{
	SSL_SESSION *s = fake_session(3, 2, 0, 1);

	(void)state;
	assert_int_equal(unlink(path), 0);
	save(s);
	assert_offers(3, 2);
	SSL_SESSION_free(s);
}

static void test_not_resumable_never_written(void **state)
{
	SSL_SESSION *bad = fake_session(4, 1, 0, 0), *good = fake_session(4, 2, 0, 1);
	off_t size;

	(void)state;
	save(bad);
	assert_int_equal(file_size(), 0);
	save(good);
	size = file_size();
	save(bad);
	assert_int_equal(file_size(), size);
	assert_offers(4, 2);
	/* A server connection on the same config never writes the file. */
	SSL_SESSION_free(good);
	good = fake_session(4, 3, 0, 1);
	save_via(cfg, good, 1);
	assert_offers(4, 2);
	SSL_SESSION_free(good);
	SSL_SESSION_free(bad);
}

/* Many writes of different sizes: every one reads back, and compaction
 * keeps the file within three blocks. */
static void test_compaction(void **state)
{
	size_t biggest = 0, len;

	(void)state;
	for (unsigned i = 0; i < 200; i++) {
		SSL_SESSION *s = fake_session(5, i, (i * 37) % 200, 1);
		free(pem_of(s, &len));
		if (len > biggest)
			biggest = len;
		save(s);
		SSL_SESSION_free(s);
		assert_offers(5, i);
		assert_true((size_t)file_size() <= 3 * biggest);
	}
}

/* ---- crashes ------------------------------------------------------------------ */

/* A writer died while appending: the previous session stays; the next
 * writer drops the partial block. */
static void test_partial_append(void **state)
{
	SSL_SESSION *a = fake_session(6, 1, 0, 1), *b = fake_session(6, 2, 0, 1);
	SSL_SESSION *c = fake_session(6, 3, 0, 1);
	size_t len;
	char *pem = pem_of(b, &len);
	off_t size;

	(void)state;
	save(a);
	size = file_size();
	for (size_t cut = 1; cut < len - 1; cut += 97) {
		assert_int_equal(ftruncate(fd, size), 0);
		assert_int_equal(pwrite(fd, pem, cut, size), (ssize_t)cut);
		assert_offers(6, 1);
	}
	save(c);
	assert_offers(6, 3);
	assert_true(file_size() <= size + (off_t)len);
	free(pem);
	SSL_SESSION_free(a);
	SSL_SESSION_free(b);
	SSL_SESSION_free(c);
}

/* A writer died while compacting, after overwriting the start of the file
 * (partly or wholly) but before truncating it: the old session stays. */
static void test_partial_compaction(void **state)
{
	SSL_SESSION *a = fake_session(7, 1, 150, 1), *b = fake_session(7, 2, 150, 1);
	SSL_SESSION *c = fake_session(7, 3, 10, 1);
	size_t alen, clen;
	char *apem = pem_of(a, &alen), *cpem = pem_of(c, &clen);

	(void)state;
	assert_true(clen <= alen);
	save(a);
	save(b); /* appended after a */
	assert_int_equal(file_size(), (off_t)(2 * alen));
	for (size_t cut = 1; cut <= clen; cut += 61) {
		assert_int_equal(pwrite(fd, cpem, cut, 0), (ssize_t)cut);
		assert_offers(7, 2);
	}
	assert_int_equal(pwrite(fd, cpem, clen, 0), (ssize_t)clen);
	assert_offers(7, 2);
	save(c); /* a real compaction this time */
	assert_offers(7, 3);
	assert_int_equal(file_size(), (off_t)clen);
	free(apem);
	free(cpem);
	SSL_SESSION_free(a);
	SSL_SESSION_free(b);
	SSL_SESSION_free(c);
}

/* Save sessions tag/1, tag/2, ... until killed; a byte on ready after the first. */
static void write_forever(struct kts_config *c_cfg, unsigned tag, int ready)
{
	for (unsigned i = 1;; i++) {
		SSL_SESSION *s = fake_session(tag, i, i * 13, 1);
		save_via(c_cfg, s, 0);
		SSL_SESSION_free(s);
		if (i == 1 && write(ready, "", 1) != 1)
			_exit(1);
	}
}

/* Writers killed with SIGKILL at random points: what remains is always one
 * whole session, and the next writer carries on from it. */
static void test_killed_writers(void **state)
{
	SSL_SESSION *s = fake_session(8, 0, 0, 1);
	unsigned t, n;
	char byte;

	(void)state;
	save(s);
	SSL_SESSION_free(s);
	srand(1);
	for (int round = 0; round < 100; round++) {
		int ready[2];
		pid_t pid;

		assert_int_equal(pipe(ready), 0);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			write_forever(cfg, 8, ready[1]);
		assert_int_equal(read(ready[0], &byte, 1), 1);
		usleep((useconds_t)(rand() % 2000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(ready[0]);
		close(ready[1]);
		s = offered();
		assert_non_null(s);
		assert_true(consistent(s, &t, &n));
		assert_int_equal(t, 8);
		assert_true(n >= 1);
		SSL_SESSION_free(s);
	}
}

/* Writers sharing one inherited fd and writers with their own open of the
 * path, while readers of both kinds parse: nothing torn, ever. */
static void test_concurrent(void **state)
{
	enum { WRITERS = 4, READERS = 2, ROUNDS = 100 };
	SSL_SESSION *s = fake_session(9, 0, 0, 1);
	pid_t pids[WRITERS + READERS];
	int status, bad = 0;

	(void)state;
	save(s);
	SSL_SESSION_free(s);
	for (int i = 0; i < WRITERS + READERS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			struct kts_config *mine = cfg;
			int ok = 1;
			if (i % 2) { /* a separate open of the same path */
				int f = open(path, O_RDWR | O_CLOEXEC);
				mine = kts_config_new();
				ok = f >= 0 && mine && kts_config_set_session_fd(mine, f) == KTS_OK;
			}
			for (unsigned r = 1; ok && r <= ROUNDS * (i < WRITERS ? 1 : 3); r++) {
				unsigned t, n;
				if (i < WRITERS) {
					s = fake_session(10 + (unsigned)i, r, (r * 7 + (unsigned)i * 50) % 200, 1);
					save_via(mine, s, 0);
				} else {
					s = offered_by(mine, NULL);
					ok = s && consistent(s, &t, &n);
				}
				SSL_SESSION_free(s);
			}
			if (mine != cfg) {
				close(mine->session_fd);
				kts_config_free(mine);
			}
			_exit(ok ? 0 : 1);
		}
	}
	for (int i = 0; i < WRITERS + READERS; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			print_error("%s %d saw a torn or missing session\n",
				    i < WRITERS ? "writer" : "reader", i);
			bad++;
		}
	}
	assert_int_equal(bad, 0);
	/* The last one written is some writer's last session. */
	s = offered();
	{
		unsigned t, n;
		assert_non_null(s);
		assert_true(consistent(s, &t, &n));
		assert_true(t >= 10 && t < 10 + WRITERS);
		assert_int_equal(n, ROUNDS);
	}
	SSL_SESSION_free(s);
}

/* ---- real handshakes ------------------------------------------------------------ */

static int ack_sni(SSL *ssl, int *alert, void *arg)
{
	(void)ssl;
	(void)alert;
	(void)arg;
	return SSL_TLSEXT_ERR_OK;
}

/* Connect a kts client (user path, socketpair) made from c_cfg to an
 * OpenSSL server on sctx: the client's handshake result, the client in *out
 * and the server SSL in *server. */
static int try_connect(struct kts_config *c_cfg, SSL_CTX *sctx, const char *name,
		       struct kts **out, SSL **server, int sv[2])
{
	struct kts *c = kts_client_new(c_cfg);
	SSL *s = SSL_new(sctx);
	int cdone = 0, sdone = 0, rc = KTS_WANT_READ;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_non_null(c);
	assert_non_null(s);
	assert_int_equal(kts_attach(c, sv[1]), KTS_OK);
	if (name)
		assert_int_equal(kts_set_server_name(c, name), KTS_OK);
	SSL_set_fd(s, sv[0]);
	for (int i = 0; i < 1000 && !(cdone && sdone); i++) {
		if (!cdone) {
			rc = kts_handshake(c);
			if (rc != KTS_WANT_READ && rc != KTS_WANT_WRITE)
				cdone = 1;
		}
		if (!sdone) {
			int r = SSL_accept(s);
			if (r == 1 || (SSL_get_error(s, r) != SSL_ERROR_WANT_READ &&
				       SSL_get_error(s, r) != SSL_ERROR_WANT_WRITE))
				sdone = 1;
		}
	}
	assert_true(cdone);
	*out = c;
	*server = s;
	return rc;
}

static struct kts *connect_pair(struct kts_config *c_cfg, SSL_CTX *sctx, const char *name,
				SSL **server, int sv[2])
{
	struct kts *c;

	if (try_connect(c_cfg, sctx, name, &c, server, sv) != KTS_OK)
		fail_msg("client handshake: %s", kts_error(c));
	return c;
}

static void disconnect(struct kts *c, SSL *s, int sv[2])
{
	kts_free(c);
	SSL_free(s);
	close(sv[0]);
	close(sv[1]);
}

static void handshakes(int version)
{
	struct kts_config *ccfg = test_kts_config(version, &test_suites[0], 0);
	SSL_CTX *sctx = test_ssl_ctx(version, &test_suites[0], 1);
	SSL_SESSION *saved, *mine;
	unsigned char k1[64], k2[64];
	char buf[16];
	struct kts *c;
	SSL *s;
	int sv[2];

	assert_non_null(ccfg);
	assert_non_null(sctx);
	SSL_CTX_set_tlsext_servername_callback(sctx, ack_sni);
	assert_int_equal(kts_config_set_offload(ccfg, KTS_OFFLOAD_OFF), KTS_OK);
	assert_int_equal(kts_config_set_session_fd(ccfg, fd), KTS_OK);

	/* Full handshake. TLS 1.2: the session is saved at its end. TLS 1.3:
	 * only once the client has read a ticket. */
	c = connect_pair(ccfg, sctx, "localhost", &s, sv);
	assert_int_equal(kts_session_resumed(c), 0);
	if (version == 13) {
		assert_int_equal(file_size(), 0);
		assert_int_equal(kts_read(c, buf, sizeof(buf)), KTS_WANT_READ);
	}
	assert_true(file_size() > 0);
	saved = offered_by(ccfg, "localhost");
	mine = SSL_get1_session(kts_ssl(c));
	assert_non_null(saved);
	assert_int_equal(SSL_SESSION_get_master_key(saved, k1, sizeof(k1)),
			 SSL_SESSION_get_master_key(mine, k2, sizeof(k2)));
	assert_memory_equal(k1, k2, SSL_SESSION_get_master_key(mine, k2, sizeof(k2)));
	assert_string_equal(SSL_SESSION_get0_hostname(saved), "localhost");
	SSL_SESSION_free(saved);
	SSL_SESSION_free(mine);
	disconnect(c, s, sv);

	/* The same name: resumed from the file. */
	c = connect_pair(ccfg, sctx, "localhost", &s, sv);
	assert_int_equal(kts_session_resumed(c), 1);
	disconnect(c, s, sv);

	/* Another name: not offered, so a full handshake. */
	c = connect_pair(ccfg, sctx, "other.example", &s, sv);
	assert_int_equal(kts_session_resumed(c), 0);
	disconnect(c, s, sv);

	SSL_CTX_free(sctx);
	kts_config_free(ccfg);
}

/* The hole this guards: a session saved by a client that verified nothing
 * must not let a verifying client skip verification. The server's
 * certificate is self-signed: a full handshake of the verifying client
 * fails, and so must the one that finds the unverified session. */
static void unverified_then_verifying(int version)
{
	struct kts_config *insecure = test_kts_config(version, &test_suites[0], 0);
	struct kts_config *verifying = kts_config_new();
	SSL_CTX *sctx = test_ssl_ctx(version, &test_suites[0], 1);
	struct kts *c;
	char buf[16];
	SSL *s;
	int sv[2];

	assert_non_null(insecure);
	assert_non_null(verifying);
	SSL_CTX_set_tlsext_servername_callback(sctx, ack_sni);
	assert_int_equal(kts_config_set_offload(insecure, KTS_OFFLOAD_OFF), KTS_OK);
	assert_int_equal(kts_config_set_offload(verifying, KTS_OFFLOAD_OFF), KTS_OK);
	assert_int_equal(kts_config_set_session_fd(insecure, fd), KTS_OK);
	assert_int_equal(kts_config_set_session_fd(verifying, fd), KTS_OK);

	c = connect_pair(insecure, sctx, "localhost", &s, sv);
	if (version == 13)
		assert_int_equal(kts_read(c, buf, sizeof(buf)), KTS_WANT_READ); /* tickets */
	assert_true(file_size() > 0);
	disconnect(c, s, sv);
	/* The insecure config itself resumes from it. */
	c = connect_pair(insecure, sctx, "localhost", &s, sv);
	assert_int_equal(kts_session_resumed(c), 1);
	disconnect(c, s, sv);

	assert_int_equal(try_connect(verifying, sctx, "localhost", &c, &s, sv), KTS_ERR_TLS);
	assert_int_equal(kts_session_resumed(c), 0);
	if (!strstr(kts_error(c), "certificate"))
		fail_msg("expected a verification error, got '%s'", kts_error(c));
	disconnect(c, s, sv);

	SSL_CTX_free(sctx);
	kts_config_free(insecure);
	kts_config_free(verifying);
}

static void test_unverified_session_tls12(void **state)
{
	(void)state;
	unverified_then_verifying(12);
}

static void test_unverified_session_tls13(void **state)
{
	(void)state;
	unverified_then_verifying(13);
}

/* A server that sends a flood of TLS 1.3 tickets: the client takes them all
 * (OpenSSL makes a session of each) but writes the file only for the first
 * few, not once per ticket (each write is synced to disk): the file keeps an
 * early ticket, not the last one. */
static void test_ticket_flood(void **state)
{
	struct kts_config *ccfg = test_kts_config(13, &test_suites[0], 0);
	SSL_CTX *sctx = test_ssl_ctx(13, &test_suites[0], 1);
	const unsigned char *t1, *t2;
	SSL_SESSION *last, *saved;
	size_t l1, l2;
	char buf[16];
	struct kts *c;
	ssize_t n;
	SSL *s;
	int sv[2];

	(void)state;
	SSL_CTX_set_tlsext_servername_callback(sctx, ack_sni);
	SSL_CTX_set_num_tickets(sctx, 200);
	assert_int_equal(kts_config_set_offload(ccfg, KTS_OFFLOAD_OFF), KTS_OK);
	assert_int_equal(kts_config_set_session_fd(ccfg, fd), KTS_OK);
	c = connect_pair(ccfg, sctx, "localhost", &s, sv);
	/* The tickets fill the socket: the server writes as the client drains. */
	n = KTS_WANT_READ;
	for (int i = 0, wrote = 0; i < 100000 && n == KTS_WANT_READ; i++) {
		wrote = wrote || SSL_write(s, "x", 1) == 1;
		n = kts_read(c, buf, sizeof(buf));
	}
	if (n != 1)
		fail_msg("read after the tickets: %zd %s", n, kts_error(c));
	last = SSL_get1_session(kts_ssl(c));
	saved = offered_by(ccfg, "localhost");
	assert_non_null(saved);
	SSL_SESSION_get0_ticket(last, &t1, &l1);
	SSL_SESSION_get0_ticket(saved, &t2, &l2);
	assert_true(l1 > 0 && l2 > 0);
	if (l1 == l2 && memcmp(t1, t2, l1) == 0)
		fail_msg("the file holds the last of 200 tickets: every ticket was written");
	SSL_SESSION_free(last);
	SSL_SESSION_free(saved);
	disconnect(c, s, sv);
	SSL_CTX_free(sctx);
	kts_config_free(ccfg);
}

/* A TLS 1.3 ticket is not offered past its lifetime (the server would
 * refuse it), however long the session's own timeout. */
static void test_ticket_lifetime(void **state)
{
	struct kts_config *ccfg = test_kts_config(13, &test_suites[0], 0);
	SSL_CTX *sctx = test_ssl_ctx(13, &test_suites[0], 1);
	SSL_SESSION *got, *again;
	char buf[16];
	struct kts *c;
	SSL *s;
	int sv[2];

	(void)state;
	SSL_CTX_set_tlsext_servername_callback(sctx, ack_sni);
	SSL_CTX_set_timeout(sctx, 60); /* the ticket's lifetime */
	assert_int_equal(kts_config_set_offload(ccfg, KTS_OFFLOAD_OFF), KTS_OK);
	assert_int_equal(kts_config_set_session_fd(ccfg, fd), KTS_OK);
	c = connect_pair(ccfg, sctx, "localhost", &s, sv);
	assert_int_equal(kts_read(c, buf, sizeof(buf)), KTS_WANT_READ); /* tickets */
	disconnect(c, s, sv);
	got = offered_by(ccfg, "localhost");
	assert_non_null(got);
	assert_int_equal(SSL_SESSION_get_ticket_lifetime_hint(got), 60);
	assert_true(SSL_SESSION_get_timeout(got) > 60); /* the client's own, longer */
	SSL_SESSION_set_time(got, (long)time(NULL) - 50);
	save_via(ccfg, got, 0);
	again = offered_by(ccfg, "localhost");
	assert_non_null(again); /* within the ticket's lifetime */
	SSL_SESSION_free(again);
	SSL_SESSION_set_time(got, (long)time(NULL) - 61);
	save_via(ccfg, got, 0);
	again = offered_by(ccfg, "localhost");
	if (again)
		fail_msg("a ticket past its 60 s lifetime was offered");
	SSL_SESSION_free(got);
	SSL_CTX_free(sctx);
	kts_config_free(ccfg);
}

static void test_handshake_tls12(void **state)
{
	(void)state;
	handshakes(12);
}

static void test_handshake_tls13(void **state)
{
	(void)state;
	handshakes(13);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rejected_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_content, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_times, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_begin_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verification_rules, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unlinked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_resumable_never_written, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_append, setup, teardown),
		cmocka_unit_test_setup_teardown(test_partial_compaction, setup, teardown),
		cmocka_unit_test_setup_teardown(test_killed_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ticket_lifetime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_tls12, setup, teardown),
		cmocka_unit_test_setup_teardown(test_handshake_tls13, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unverified_session_tls12, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ticket_flood, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unverified_session_tls13, setup, teardown),
	};
	int rc;

	test_cert_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	test_cert_free();
	return rc;
}
