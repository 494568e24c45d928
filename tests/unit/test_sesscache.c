/*
 * test_sesscache.c - the shared TLS 1.2 session cache: the table itself
 * (lookup, expiry, eviction, size limits), sharing across forked processes and
 * surviving a process killed while holding a lock, the OpenSSL callbacks, and
 * real TLS 1.2 handshakes resuming by session ID, also in forked servers.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "internal.h"
#include "sesscache.h"
#include "testutil.h"

#define ID_LEN 32

/* A distinct session ID per (owner, n). */
static void make_id(unsigned char id[ID_LEN], unsigned int owner, unsigned int n)
{
	for (int i = 0; i < ID_LEN; i++)
		id[i] = (unsigned char)(owner * 131 + n * 7 + (unsigned int)i * 13 + (n >> 8));
	memcpy(id, &n, sizeof(n));
	id[4] = (unsigned char)owner;
}

/* Stand-in session bytes that name their ID. */
static size_t make_der(unsigned char *der, const unsigned char id[ID_LEN], size_t len)
{
	for (size_t i = 0; i < len; i++)
		der[i] = (unsigned char)(id[i % ID_LEN] ^ i);
	return len;
}

static int has(struct kts_sess_cache *c, const unsigned char id[ID_LEN])
{
	unsigned char out[KTS_SESS_CACHE_DER_MAX];

	return kts_sess_cache_get(c, id, ID_LEN, 60, out) > 0;
}

static int64_t fake_now;
static int64_t fake_clock(void)
{
	return fake_now;
}

/* ---- the table ----------------------------------------------------------- */

static void test_bad_sizes(void **state)
{
	struct kts_config *cfg = kts_config_new();
	struct kts_sess_cache *c;
	(void)state;

	assert_non_null(cfg);
	assert_int_equal(kts_config_set_session_cache(NULL, 64), KTS_ERR_ARG);
	for (size_t i = 0; i < 4; i++) {
		static const size_t bad[] = {0, 15, 1000001, (size_t)-1};
		assert_int_equal(kts_config_set_session_cache(cfg, bad[i]), KTS_ERR_ARG);
		assert_non_null(strstr(kts_config_error(cfg), "16..1000000"));
		assert_null(cfg->cache);
	}
	errno = 0;
	assert_null(kts_sess_cache_new(15));
	assert_int_equal(errno, EINVAL);
	/* The largest table maps ~2 GiB, touched only as it fills. */
	c = kts_sess_cache_new(KTS_SESS_CACHE_MAX);
	assert_non_null(c);
	assert_int_equal(kts_sess_cache_slots(c), KTS_SESS_CACHE_MAX);
	kts_sess_cache_free(c);

	assert_int_equal(kts_config_set_session_cache(cfg, 16), KTS_OK);
	assert_non_null(cfg->cache);
	assert_int_equal(kts_sess_cache_slots(cfg->cache), 16);
	/* No lifetime yet: the cache is ready but resumption stays off. */
	assert_int_equal(SSL_CTX_get_session_cache_mode(cfg->ctx), SSL_SESS_CACHE_OFF);
	assert_int_equal(kts_config_set_session_cache(cfg, 64), KTS_ERR_STATE);
	assert_non_null(strstr(kts_config_error(cfg), "already set"));
	kts_config_free(cfg);

	cfg = kts_config_new();
	assert_non_null(cfg);
	cfg->lifetime = 60;
	assert_int_equal(kts_config_set_session_cache(cfg, 17), KTS_OK);
	assert_int_equal(kts_sess_cache_slots(cfg->cache), 24); /* whole buckets */
	assert_int_equal(SSL_CTX_get_session_cache_mode(cfg->ctx),
			 SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
	kts_config_free(cfg);
}

static void test_insert_lookup(void **state)
{
	struct kts_sess_cache *c = kts_sess_cache_new(64);
	unsigned char a[ID_LEN], b[ID_LEN], der[300], out[KTS_SESS_CACHE_DER_MAX];
	(void)state;

	assert_non_null(c);
	make_id(a, 1, 1);
	make_id(b, 1, 2);
	make_der(der, a, sizeof(der));
	assert_int_equal(kts_sess_cache_put(c, a, ID_LEN, der, sizeof(der)), 1);
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN, 60, out), sizeof(der));
	assert_memory_equal(out, der, sizeof(der));
	assert_int_equal(kts_sess_cache_get(c, b, ID_LEN, 60, out), 0);
	/* A shorter ID is a different key. */
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN - 1, 60, out), 0);
	/* Lifetime 0 is resumption off. */
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN, 0, out), 0);

	/* The same ID again replaces the entry. */
	make_der(der, b, 100);
	assert_int_equal(kts_sess_cache_put(c, a, ID_LEN, der, 100), 1);
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN, 60, out), 100);
	assert_memory_equal(out, der, 100);

	kts_sess_cache_del(c, a, ID_LEN);
	assert_false(has(c, a));
	kts_sess_cache_del(c, b, ID_LEN); /* absent: nothing happens */

	/* IDs are 1..32 bytes; empty sessions are refused. */
	assert_int_equal(kts_sess_cache_put(c, a, 0, der, 100), 0);
	assert_int_equal(kts_sess_cache_put(c, a, ID_LEN + 1, der, 100), 0);
	assert_int_equal(kts_sess_cache_put(c, a, ID_LEN, der, 0), 0);
	assert_int_equal(kts_sess_cache_put(c, a, 1, der, 100), 1);
	assert_int_equal(kts_sess_cache_get(c, a, 1, 60, out), 100);
	kts_sess_cache_free(c);
}

static void test_oversize(void **state)
{
	struct kts_sess_cache *c = kts_sess_cache_new(16);
	static unsigned char der[KTS_SESS_CACHE_DER_MAX + 1], out[KTS_SESS_CACHE_DER_MAX];
	unsigned char a[ID_LEN], b[ID_LEN];
	(void)state;

	make_id(a, 2, 1);
	make_id(b, 2, 2);
	make_der(der, a, sizeof(der));
	assert_int_equal(kts_sess_cache_put(c, a, ID_LEN, der, sizeof(der)), 0);
	assert_false(has(c, a));
	assert_int_equal(kts_sess_cache_put(c, b, ID_LEN, der, KTS_SESS_CACHE_DER_MAX), 1);
	assert_int_equal(kts_sess_cache_get(c, b, ID_LEN, 60, out), KTS_SESS_CACHE_DER_MAX);
	assert_memory_equal(out, der, KTS_SESS_CACHE_DER_MAX);
	kts_sess_cache_free(c);
}

static void test_expiry(void **state)
{
	struct kts_sess_cache *c = kts_sess_cache_new(16);
	unsigned char a[ID_LEN], der[64], out[KTS_SESS_CACHE_DER_MAX];
	(void)state;

	kts_sess_cache_now = fake_clock;
	fake_now = 1000;
	make_id(a, 3, 1);
	kts_sess_cache_put(c, a, ID_LEN, der, make_der(der, a, sizeof(der)));
	fake_now = 1059;
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN, 60, out), sizeof(der));
	/* The lifetime is the caller's at lookup time. */
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN, 120, out), sizeof(der));
	fake_now = 1060;
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN, 120, out), sizeof(der));
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN, 60, out), 0);
	/* Expired entries are wiped, not just hidden. */
	assert_int_equal(kts_sess_cache_get(c, a, ID_LEN, 120, out), 0);
	kts_sess_cache_free(c);
}

static int64_t (*real_clock)(void);

static int restore_clock(void **state)
{
	(void)state;
	kts_sess_cache_now = real_clock;
	return 0;
}

/* The first n IDs of owner that land in bucket b. */
static void ids_in_bucket(struct kts_sess_cache *c, size_t b, unsigned int owner,
			  unsigned char ids[][ID_LEN], int n)
{
	for (unsigned int k = 0; n > 0; k++) {
		make_id(ids[0], owner, k);
		if (kts_sess_cache_bucket(c, ids[0], ID_LEN) == b) {
			ids++;
			n--;
		}
	}
}

static void test_eviction(void **state)
{
	struct kts_sess_cache *c = kts_sess_cache_new(16);
	unsigned char ids[KTS_SESS_CACHE_WAYS + 2][ID_LEN], id[ID_LEN], der[64];
	unsigned int found = 0;
	(void)state;

	assert_int_equal(kts_sess_cache_slots(c), 16);
	ids_in_bucket(c, 1, 4, ids, KTS_SESS_CACHE_WAYS + 2);
	for (int i = 0; i <= KTS_SESS_CACHE_WAYS; i++)
		kts_sess_cache_put(c, ids[i], ID_LEN, der, make_der(der, ids[i], sizeof(der)));
	/* One too many for the bucket: the oldest went, lookups do not refresh. */
	assert_false(has(c, ids[0]));
	for (int i = 1; i <= KTS_SESS_CACHE_WAYS; i++)
		assert_true(has(c, ids[i]));
	/* Replacing an entry makes it the newest: ids[2] is now the oldest. */
	kts_sess_cache_put(c, ids[1], ID_LEN, der, sizeof(der));
	kts_sess_cache_put(c, ids[KTS_SESS_CACHE_WAYS + 1], ID_LEN, der, sizeof(der));
	assert_true(has(c, ids[1]));
	assert_false(has(c, ids[2]));
	assert_true(has(c, ids[3]));

	/* Many more sessions than slots: the table fills and stays bounded. */
	for (unsigned int k = 0; k < 1000; k++) {
		make_id(id, 5, k);
		assert_int_equal(kts_sess_cache_put(c, id, ID_LEN, der, sizeof(der)), 1);
	}
	assert_true(has(c, id));
	for (unsigned int k = 0; k < 1000; k++) {
		make_id(id, 5, k);
		found += (unsigned int)has(c, id);
	}
	assert_int_equal(found, 16);
	kts_sess_cache_free(c);
}

/* ---- several processes --------------------------------------------------- */

#define WORKERS 4
#define PER_WORKER 100

/* Child: insert own sessions, wait for the others', then check all of them. */
static int worker(struct kts_sess_cache *c, unsigned int me, int ready_fd, int go_fd)
{
	unsigned char id[ID_LEN], der[200], want[200], out[KTS_SESS_CACHE_DER_MAX];
	char byte = 'r';
	size_t n;

	for (unsigned int k = 0; k < PER_WORKER; k++) {
		make_id(id, me, k);
		make_der(der, id, sizeof(der));
		if (kts_sess_cache_put(c, id, ID_LEN, der, sizeof(der)) != 1)
			return 2;
	}
	if (write(ready_fd, &byte, 1) != 1 || read(go_fd, &byte, 1) != 1)
		return 3;
	for (unsigned int w = 0; w < WORKERS; w++) {
		for (unsigned int k = 0; k < PER_WORKER; k++) {
			make_id(id, w, k);
			make_der(want, id, sizeof(want));
			n = kts_sess_cache_get(c, id, ID_LEN, 60, out);
			if (n != sizeof(want) || memcmp(out, want, n) != 0)
				return 4;
		}
	}
	return 0;
}

static void test_processes_share(void **state)
{
	struct kts_sess_cache *c = kts_sess_cache_new(4096);
	int ready[2], go[2], status;
	pid_t pids[WORKERS];
	char byte;
	(void)state;

	assert_non_null(c);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	for (unsigned int w = 0; w < WORKERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0)
			_exit(worker(c, w, ready[1], go[0]));
	}
	for (int w = 0; w < WORKERS; w++)
		assert_int_equal(read(ready[0], &byte, 1), 1);
	for (int w = 0; w < WORKERS; w++)
		assert_int_equal(write(go[1], "g", 1), 1);
	for (int w = 0; w < WORKERS; w++) {
		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	/* The parent sees the children's entries too. */
	for (unsigned int w = 0; w < WORKERS; w++) {
		unsigned char id[ID_LEN];
		make_id(id, w, PER_WORKER - 1);
		assert_true(has(c, id));
	}
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	kts_sess_cache_free(c);
}

static int hold_fd = -1;

/* Runs in the child with the bucket lock held: tell the parent, then wait for SIGKILL. */
static void hold_lock(void)
{
	if (write(hold_fd, "l", 1) == 1)
		for (;;)
			pause();
}

static void test_dead_lock_owner(void **state)
{
	struct kts_sess_cache *c = kts_sess_cache_new(16);
	unsigned char ids[3][ID_LEN], der[64], out[KTS_SESS_CACHE_DER_MAX];
	int fds[2], status;
	pid_t pid;
	char byte;
	(void)state;

	ids_in_bucket(c, 0, 6, ids, 3);
	kts_sess_cache_put(c, ids[0], ID_LEN, der, make_der(der, ids[0], sizeof(der)));
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		hold_fd = fds[1];
		kts_sess_cache_locked_hook = hold_lock;
		kts_sess_cache_put(c, ids[1], ID_LEN, der, sizeof(der));
		_exit(1);
	}
	assert_int_equal(read(fds[0], &byte, 1), 1);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));

	/* The lock is taken over (a hang here is the failure, cut short by the
	 * alarm); the bucket the dead process may have half-written is dropped. */
	alarm(30);
	assert_int_equal(kts_sess_cache_get(c, ids[0], ID_LEN, 60, out), 0);
	assert_int_equal(kts_sess_cache_put(c, ids[2], ID_LEN, der, sizeof(der)), 1);
	assert_int_equal(kts_sess_cache_get(c, ids[2], ID_LEN, 60, out), sizeof(der));
	/* And stays usable from other processes. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(kts_sess_cache_get(c, ids[2], ID_LEN, 60, out) == sizeof(der) ? 0 : 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	alarm(0);
	close(fds[0]);
	close(fds[1]);
	kts_sess_cache_free(c);
}

/* ---- OpenSSL ------------------------------------------------------------- */

static struct kts_config *server_cfg(unsigned int lifetime)
{
	struct kts_config *cfg = test_kts_config(12, &test_suites[0], 1);

	assert_non_null(cfg);
	cfg->lifetime = lifetime; /* what kts_config_set_session_lifetime stores */
	assert_int_equal(kts_config_set_session_cache(cfg, 64), KTS_OK);
	return cfg;
}

/* A TLS 1.2 session as a server would make, hostname padding it to size. */
static SSL_SESSION *fake_session(SSL *ssl, int version, unsigned char id[ID_LEN],
				 size_t hostname_len)
{
	static const unsigned char cipher[2] = {0xc0, 0x2b}; /* ECDHE-ECDSA-AES128-GCM-SHA256 */
	unsigned char key[48];
	char *name = malloc(hostname_len + 1);
	SSL_SESSION *s = SSL_SESSION_new();

	memset(key, 0x5a, sizeof(key));
	memset(name, 'h', hostname_len);
	name[hostname_len] = 0;
	assert_int_equal(SSL_SESSION_set_protocol_version(s, version), 1);
	assert_int_equal(SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, cipher)), 1);
	assert_int_equal(SSL_SESSION_set1_id(s, id, ID_LEN), 1);
	assert_int_equal(SSL_SESSION_set1_master_key(s, key, sizeof(key)), 1);
	assert_int_equal(SSL_SESSION_set1_hostname(s, name), 1);
	free(name);
	return s;
}

static void test_callbacks(void **state)
{
	struct kts_config *cfg = server_cfg(60);
	SSL_CTX *ctx = cfg->ctx;
	int (*new_cb)(SSL *, SSL_SESSION *) = SSL_CTX_sess_get_new_cb(ctx);
	SSL_SESSION *(*get_cb)(SSL *, const unsigned char *, int, int *) =
		SSL_CTX_sess_get_get_cb(ctx);
	void (*remove_cb)(SSL_CTX *, SSL_SESSION *) = SSL_CTX_sess_get_remove_cb(ctx);
	unsigned char id[ID_LEN], key[48], got_key[48];
	SSL *ssl = SSL_new(ctx);
	SSL_SESSION *s, *got;
	int copy = 1;
	(void)state;

	assert_non_null(new_cb);
	assert_non_null(get_cb);
	assert_non_null(remove_cb);
	make_id(id, 7, 1);
	s = fake_session(ssl, TLS1_2_VERSION, id, 10);
	assert_int_equal(new_cb(ssl, s), 0); /* 0: the cache keeps no reference */
	got = get_cb(ssl, id, ID_LEN, &copy);
	assert_non_null(got);
	assert_int_equal(copy, 0); /* fresh from d2i: OpenSSL owns it */
	assert_int_equal(SSL_SESSION_get_master_key(s, key, sizeof(key)), 48);
	assert_int_equal(SSL_SESSION_get_master_key(got, got_key, sizeof(got_key)), 48);
	assert_memory_equal(key, got_key, 48);
	assert_string_equal(SSL_SESSION_get0_hostname(got), SSL_SESSION_get0_hostname(s));
	SSL_SESSION_free(got);
	assert_null(get_cb(ssl, id, 0, &copy));

	/* OpenSSL dropping the session drops the entry. */
	remove_cb(ctx, s);
	assert_null(get_cb(ssl, id, ID_LEN, &copy));
	SSL_SESSION_free(s);

	/* Too large to cache: not stored, nothing breaks. */
	make_id(id, 7, 2);
	s = fake_session(ssl, TLS1_2_VERSION, id, KTS_SESS_CACHE_DER_MAX);
	assert_int_equal(new_cb(ssl, s), 0);
	assert_null(get_cb(ssl, id, ID_LEN, &copy));
	SSL_SESSION_free(s);

	/* TLS 1.3 sessions resume from tickets, not from here. */
	make_id(id, 7, 3);
	s = fake_session(ssl, TLS1_3_VERSION, id, 10);
	new_cb(ssl, s);
	assert_null(get_cb(ssl, id, ID_LEN, &copy));
	SSL_SESSION_free(s);

	/* Without a lifetime nothing is stored or found. */
	make_id(id, 7, 4);
	s = fake_session(ssl, TLS1_2_VERSION, id, 10);
	cfg->lifetime = 0;
	new_cb(ssl, s);
	cfg->lifetime = 60;
	assert_null(get_cb(ssl, id, ID_LEN, &copy));
	new_cb(ssl, s);
	cfg->lifetime = 0;
	assert_null(get_cb(ssl, id, ID_LEN, &copy));
	SSL_SESSION_free(s);

	SSL_free(ssl);
	kts_config_free(cfg);
}

static SSL_CTX *client_ctx;

static SSL *client_new(SSL_SESSION *sess)
{
	SSL *c = SSL_new(client_ctx);

	assert_non_null(c);
	if (sess)
		assert_int_equal(SSL_set_session(c, sess), 1);
	return c;
}

/* Handshake c and s over an in-memory pipe. */
static int handshake_mem(SSL *c, SSL *s)
{
	BIO *cb, *sb;

	assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(c, cb, cb);
	SSL_set_bio(s, sb, sb);
	SSL_set_connect_state(c);
	SSL_set_accept_state(s);
	for (int i = 0; i < 20; i++) {
		int rc = SSL_do_handshake(c), rs = SSL_do_handshake(s);

		if (rc == 1 && rs == 1)
			return 1;
		if ((rc != 1 && SSL_get_error(c, rc) != SSL_ERROR_WANT_READ) ||
		    (rs != 1 && SSL_get_error(s, rs) != SSL_ERROR_WANT_READ))
			return 0;
	}
	return 0;
}

static int server_unclean; /* free the server side without close_notify */

/* One in-memory connection; returns 1 if both sides resumed, 0 if neither.
 * *out gets the client's session if out is given. */
static int connect_mem(struct kts_config *cfg, SSL_SESSION *sess, SSL_SESSION **out)
{
	SSL *c = client_new(sess), *s = SSL_new(cfg->ctx);
	int resumed;

	assert_int_equal(handshake_mem(c, s), 1);
	assert_string_equal(SSL_get_version(s), "TLSv1.2");
	resumed = SSL_session_reused(c);
	assert_int_equal(SSL_session_reused(s), resumed);
	if (out)
		*out = SSL_get1_session(c);
	/* Freed without close_notify, OpenSSL drops the session. */
	SSL_shutdown(c);
	if (!server_unclean)
		SSL_shutdown(s);
	SSL_free(c);
	SSL_free(s);
	return resumed;
}

static void test_resume_in_process(void **state)
{
	struct kts_config *cfg = server_cfg(60);
	SSL_SESSION *sess, *again;
	const unsigned char *id;
	unsigned int id_len;
	(void)state;

	assert_int_equal(connect_mem(cfg, NULL, &sess), 0);
	id = SSL_SESSION_get_id(sess, &id_len);
	assert_int_equal(id_len, 32);
	assert_true(connect_mem(cfg, sess, &again));
	/* It came from the shared table: OpenSSL keeps no sessions of its own. */
	assert_int_equal(SSL_CTX_sess_number(cfg->ctx), 0);
	SSL_SESSION_free(again);

	/* Gone from the table: a full handshake. */
	kts_sess_cache_del(cfg->cache, id, id_len);
	assert_int_equal(connect_mem(cfg, sess, NULL), 0);
	SSL_SESSION_free(sess);

	/* OpenSSL drops the session of a server connection freed without
	 * close_notify, through the remove callback. */
	server_unclean = 1;
	assert_int_equal(connect_mem(cfg, NULL, &sess), 0);
	server_unclean = 0;
	assert_int_equal(connect_mem(cfg, sess, NULL), 0);
	SSL_SESSION_free(sess);

	/* Lifetime 0 (resumption off) even with the entry present. */
	assert_int_equal(connect_mem(cfg, NULL, &sess), 0);
	cfg->lifetime = 0;
	assert_int_equal(connect_mem(cfg, sess, NULL), 0);
	SSL_SESSION_free(sess);
	kts_config_free(cfg);
}

/* Child: serve one handshake on fd from cfg; exit 10 resumed, 0 full, 1 failed. */
static void serve_in_child(struct kts_config *cfg, int fd)
{
	SSL *s = SSL_new(cfg->ctx);
	int rc = 1;

	SSL_set_fd(s, fd);
	if (SSL_accept(s) == 1) {
		rc = SSL_session_reused(s) ? 10 : 0;
		SSL_shutdown(s);
	}
	SSL_free(s);
	close(fd);
	_exit(rc);
}

/* A connection whose server runs in a forked child; returns the child's code. */
static int connect_forked(struct kts_config *cfg, SSL_SESSION *sess, SSL_SESSION **out)
{
	SSL *c = client_new(sess);
	int sv[2], status;
	pid_t pid;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[1]);
		SSL_free(c);
		serve_in_child(cfg, sv[0]);
	}
	close(sv[0]);
	SSL_set_fd(c, sv[1]);
	assert_int_equal(SSL_connect(c), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), SSL_session_reused(c) ? 10 : 0);
	if (out)
		*out = SSL_get1_session(c);
	SSL_shutdown(c);
	SSL_free(c);
	close(sv[1]);
	return WEXITSTATUS(status);
}

static void test_resume_across_processes(void **state)
{
	struct kts_config *cfg = server_cfg(60);
	SSL_SESSION *sess;
	(void)state;

	alarm(120);
	/* Full handshake in one worker, resumed in another, then in the parent. */
	assert_int_equal(connect_forked(cfg, NULL, &sess), 0);
	assert_int_equal(connect_forked(cfg, sess, NULL), 10);
	assert_true(connect_mem(cfg, sess, NULL));
	SSL_SESSION_free(sess);
	/* And the other way round: made in the parent, resumed in a worker. */
	assert_int_equal(connect_mem(cfg, NULL, &sess), 0);
	assert_int_equal(connect_forked(cfg, sess, NULL), 10);
	SSL_SESSION_free(sess);
	alarm(0);
	kts_config_free(cfg);
}

static int openssl_setup(void **state)
{
	(void)state;
	test_cert_init();
	client_ctx = test_ssl_ctx(12, &test_suites[0], 0);
	/* Tickets off: resumption can only go through the session ID. */
	SSL_CTX_set_options(client_ctx, SSL_OP_NO_TICKET);
	return client_ctx ? 0 : -1;
}

static int openssl_teardown(void **state)
{
	(void)state;
	SSL_CTX_free(client_ctx);
	test_cert_free();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_sizes),
		cmocka_unit_test(test_insert_lookup),
		cmocka_unit_test(test_oversize),
		cmocka_unit_test_teardown(test_expiry, restore_clock),
		cmocka_unit_test(test_eviction),
		cmocka_unit_test(test_processes_share),
		cmocka_unit_test(test_dead_lock_owner),
		cmocka_unit_test(test_callbacks),
		cmocka_unit_test(test_resume_in_process),
		cmocka_unit_test(test_resume_across_processes),
	};

	real_clock = kts_sess_cache_now;
	/* A broken pipe to a dead child should fail a test, not end the run. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, openssl_setup, openssl_teardown);
}
