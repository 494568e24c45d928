/*
 * test_ticketkeys.c - the ticket key ring under a test clock (add, renew
 * decision, expiry, duplicates, the key limit, automatic rotation shared
 * across fork, threads), then real OpenSSL handshakes over BIO pairs against
 * a kts server config: TLS 1.2 and 1.3 resumption, renewal under an older
 * key, unknown / expired / tampered tickets, application data, lifetime 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "internal.h"
#include "testutil.h"
#include "ticketkeys.h"
#include "ring_clock.h"
#include "ticket_hs.h"

#define NAME KTS_TICKET_NAME_LEN
#define KEYLEN KTS_TICKET_KEY_LEN

/* A key whose bytes encode seed, so a copy can be checked against its name. */
static void make_key(unsigned char key[KEYLEN], unsigned int seed)
{
	for (int i = 0; i < KEYLEN; i++)
		key[i] = (unsigned char)(seed * 31 + (unsigned int)i * 7 + 1);
}

static int add(struct kts_ticket_ring *r, unsigned int keyrev, unsigned int seed, char *err)
{
	unsigned char key[KEYLEN];

	make_key(key, seed);
	return kts_ticket_ring_add(r, keyrev, key, KEYLEN, err, 200);
}

/* The name of the key that encrypts now. */
static void name_of(struct kts_ticket_ring *r, unsigned char name[NAME])
{
	unsigned char key[KEYLEN];

	assert_int_equal(kts_ticket_ring_encrypt_key(r, name, key, NULL), 1);
}

static void test_add_and_lookup(void **state)
{
	struct kts_ticket_ring *r = ring_at(1000, 3600);
	unsigned char name1[NAME], name2[NAME], key[KEYLEN], want[KEYLEN];
	char err[200];

	(void)state;
	assert_int_equal(add(r, 1, 1, err), KTS_OK);
	name_of(r, name1);
	assert_int_equal(add(r, 2, 2, err), KTS_OK);
	assert_int_equal(kts_ticket_ring_encrypt_key(r, name2, key, NULL), 1);
	make_key(want, 2);
	assert_memory_equal(key, want, KEYLEN); /* the newest encrypts */
	assert_int_equal(be32(name2), 2);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, name2, key, NULL), 1);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, name1, key, NULL), 2); /* older: renew */
	make_key(want, 1);
	assert_memory_equal(key, want, KEYLEN);
	name1[NAME - 1] ^= 1;
	assert_int_equal(kts_ticket_ring_decrypt_key(r, name1, key, NULL), 0);
	kts_ticket_ring_free(r);
}

static void test_bad_keys(void **state)
{
	struct kts_ticket_ring *r = ring_at(1000, 3600);
	unsigned char key[KEYLEN] = {0}, name[NAME], old[NAME];
	char err[200];

	(void)state;
	assert_int_equal(kts_ticket_ring_add(r, 1, key, 48, err, sizeof(err)), KTS_ERR_ARG);
	assert_string_equal(err, "ticket key: must be 64 bytes (AES-256 key + HMAC-SHA256 key), got 48");
	assert_int_equal(kts_ticket_ring_add(r, 1, NULL, KEYLEN, err, sizeof(err)), KTS_ERR_ARG);
	assert_non_null(strstr(err, "no pointer"));
	assert_int_equal(kts_ticket_ring_add(r, 1, key, KEYLEN, err, sizeof(err)), KTS_ERR_ARG);
	assert_non_null(strstr(err, "all zero"));
	make_key(key, 5);
	memset(key + KEYLEN / 2, 0, KEYLEN / 2);
	assert_int_equal(kts_ticket_ring_add(r, 1, key, KEYLEN, err, sizeof(err)), KTS_ERR_ARG);

	assert_int_equal(add(r, 7, 7, err), KTS_OK);
	name_of(r, old);
	assert_int_equal(add(r, 7, 8, err), KTS_ERR_ARG);
	assert_string_equal(err, "ticket key: keyrev 7 already added with different bytes");
	/* The newest again with the same bytes: a no-op, however often. */
	for (int i = 0; i < 2 * KTS_TICKET_KEYS_MAX; i++)
		assert_int_equal(add(r, 7, 7, err), KTS_OK);
	assert_int_equal(add(r, 8, 8, err), KTS_OK);
	for (int i = 0; i < KTS_TICKET_KEYS_MAX; i++)
		assert_int_equal(add(r, 8, 8, err), KTS_OK);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, old, key, NULL), 2); /* 7 not pushed out */
	assert_int_equal(add(r, 7, 7, err), KTS_ERR_ARG); /* known, but no longer the newest */
	assert_non_null(strstr(err, "keyrev 7 already added and newer keys follow"));
	name_of(r, name);
	assert_int_equal(be32(name), 8);
	kts_ticket_ring_free(r);
}

static void test_expiry(void **state)
{
	struct kts_ticket_ring *r = ring_at(1000, 60);
	unsigned char name1[NAME], name2[NAME], key[KEYLEN];
	char err[200];

	(void)state;
	assert_int_equal(add(r, 1, 1, err), KTS_OK);
	name_of(r, name1);
	fake_now = 1100;
	assert_int_equal(add(r, 2, 2, err), KTS_OK);
	name_of(r, name2);
	fake_now = 1119; /* key 1 lives until add time + 2 x lifetime */
	assert_int_equal(kts_ticket_ring_decrypt_key(r, name1, key, NULL), 2);
	fake_now = 1120;
	assert_int_equal(kts_ticket_ring_decrypt_key(r, name1, key, NULL), 0);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, name2, key, NULL), 1);
	/* Once expired, keyrev 1 is unknown and may come back with new bytes. */
	assert_int_equal(add(r, 1, 11, err), KTS_OK);
	fake_now = 1100 + 120;
	assert_int_equal(kts_ticket_ring_decrypt_key(r, name2, key, NULL), 0);
	fake_now = 1120 + 120;
	assert_int_equal(kts_ticket_ring_encrypt_key(r, name1, key, NULL), 0); /* nothing left */
	kts_ticket_ring_free(r);
}

static void test_max_keys(void **state)
{
	struct kts_ticket_ring *r = ring_at(1000, 3600);
	unsigned char names[KTS_TICKET_KEYS_MAX + 2][NAME], key[KEYLEN], want[KEYLEN];
	char err[200];

	(void)state;
	for (unsigned int i = 0; i < KTS_TICKET_KEYS_MAX + 2; i++) {
		assert_int_equal(add(r, i, i, err), KTS_OK);
		name_of(r, names[i]);
	}
	for (unsigned int i = 0; i < KTS_TICKET_KEYS_MAX + 2; i++) {
		int want_rc = i < 2 ? 0 : i == KTS_TICKET_KEYS_MAX + 1 ? 1 : 2;
		assert_int_equal(kts_ticket_ring_decrypt_key(r, names[i], key, NULL), want_rc);
		make_key(want, i);
		if (want_rc)
			assert_memory_equal(key, want, KEYLEN);
	}
	kts_ticket_ring_free(r);
}

static void test_key_name(void **state)
{
	struct kts_ticket_ring *r1 = ring_at(1000, 3600), *r2 = ring_at(1000, 3600);
	unsigned char key[KEYLEN], name1[NAME], name2[NAME], mac[32];
	size_t len;
	char err[200];

	(void)state;
	make_key(key, 1);
	assert_int_equal(kts_ticket_ring_add(r1, 0x01020304, key, KEYLEN, err, sizeof(err)), KTS_OK);
	name_of(r1, name1);
	assert_int_equal(be32(name1), 0x01020304);
	/* Exactly keyrev || HMAC-SHA256(hmac key, label)[0..12]: no key bytes. */
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key + KEYLEN / 2, KEYLEN / 2,
				  (const unsigned char *)"kts ticket key name", 19, mac, sizeof(mac),
				  &len));
	assert_memory_equal(name1 + 4, mac, NAME - 4);
	assert_null(memmem(key, KEYLEN, name1 + 4, 4));
	assert_null(memmem(key, KEYLEN, name1 + 8, 4));
	assert_null(memmem(key, KEYLEN, name1 + 12, 4));
	/* Same keyrev, other key: other name. */
	make_key(key, 2);
	assert_int_equal(kts_ticket_ring_add(r2, 0x01020304, key, KEYLEN, err, sizeof(err)), KTS_OK);
	name_of(r2, name2);
	assert_memory_equal(name1, name2, 4);
	assert_memory_not_equal(name1, name2, NAME);
	kts_ticket_ring_free(r1);
	kts_ticket_ring_free(r2);
}

static void test_auto_rotation(void **state)
{
	struct kts_ticket_ring *r = ring_at(6000, 60); /* epoch 100 */
	unsigned char a[NAME], b[NAME], c[NAME], n[NAME], key[KEYLEN], ka[KEYLEN];
	char err[200];

	(void)state;
	assert_int_equal(kts_ticket_ring_encrypt_key(r, a, ka, NULL), 1);
	assert_int_equal(be32(a), 100);
	fake_now = 6059;
	assert_int_equal(kts_ticket_ring_encrypt_key(r, n, key, NULL), 1);
	assert_memory_equal(n, a, NAME);
	assert_memory_equal(key, ka, KEYLEN);
	fake_now = 6060; /* a new key every lifetime; the old one still decrypts */
	name_of(r, b);
	assert_int_equal(be32(b), 101);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, a, key, NULL), 2);
	assert_memory_equal(key, ka, KEYLEN);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, b, key, NULL), 1);
	assert_memory_not_equal(key, ka, KEYLEN);
	fake_now = 6120; /* a expires at 6000 + 2 x 60 */
	name_of(r, c);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, a, key, NULL), 0);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, b, key, NULL), 2);
	fake_now = 6000 + 60 * 10; /* a long pause */
	name_of(r, n);
	assert_int_equal(be32(n), 110);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, b, key, NULL), 0);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, c, key, NULL), 0);
	fake_now += (time_t)60 * 1000000; /* a clock jump: no stall, still a key */
	name_of(r, n);
	assert_int_equal(be32(n), 6000 / 60 + 10 + 1000000);

	/* The caller's first key ends automatic mode: auto keys are gone. */
	assert_int_equal(add(r, 9, 9, err), KTS_OK);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n, key, NULL), 0);
	fake_now += 59;
	name_of(r, n);
	assert_int_equal(be32(n), 9);
	/* A caller's key encrypts for one lifetime, then only decrypts the
	 * tickets it issued until it expires at 2 x lifetime: retired, so
	 * its tickets would be renewed (under a key that seals; none does). */
	fake_now += 1;
	assert_int_equal(kts_ticket_ring_encrypt_key(r, c, key, NULL), 0);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n, key, NULL), 2);
	fake_now += 60;
	assert_int_equal(kts_ticket_ring_encrypt_key(r, c, key, NULL), 0); /* 9 expired, no auto key */
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n, key, NULL), 0);

	/* Lifetime 0: no automatic keys at all. */
	kts_ticket_ring_free(r);
	r = ring_at(6000, 0);
	assert_int_equal(kts_ticket_ring_encrypt_key(r, n, key, NULL), 0);
	kts_ticket_ring_free(r);
}

/* A forked worker that jumps epochs derives what a worker that lived through
 * each of them derives, and keeps the previous epoch's key. */
static void test_auto_shared_across_fork(void **state)
{
	struct kts_ticket_ring *r = ring_at(6000, 60);
	unsigned char got[2 * NAME + KEYLEN], name[NAME], key[KEYLEN];
	int fds[2], status;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) { /* child: walk epoch by epoch, report 104's name and 105's key */
		for (fake_now = 6000; fake_now <= 6240; fake_now += 60)
			kts_ticket_ring_encrypt_key(r, got, key, NULL);
		fake_now = 6300;
		kts_ticket_ring_encrypt_key(r, got + NAME, got + 2 * NAME, NULL);
		kts_ticket_ring_free(r);
		_exit(write(fds[1], got, sizeof(got)) == (ssize_t)sizeof(got) ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], got, sizeof(got)), (ssize_t)sizeof(got));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(be32(got), 104);
	fake_now = 6300; /* jump from 100 to 105 */
	assert_int_equal(kts_ticket_ring_encrypt_key(r, name, key, NULL), 1);
	assert_memory_equal(name, got + NAME, NAME);
	assert_memory_equal(key, got + 2 * NAME, KEYLEN);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, got, key, NULL), 2);
	kts_ticket_ring_free(r);

	/* An unrelated ring has other keys for the same epoch. */
	r = ring_at(6300, 60);
	assert_int_equal(kts_ticket_ring_encrypt_key(r, name, key, NULL), 1);
	assert_int_equal(be32(name), 105);
	assert_memory_not_equal(name, got + NAME, NAME);
	kts_ticket_ring_free(r);
}

/* The key of epoch `at` as a child forked now derives it: name then key. */
static void forked_key_at(struct kts_ticket_ring *r, time_t at, unsigned char out[NAME + KEYLEN])
{
	int fds[2], status;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fake_now = at;
		kts_ticket_ring_encrypt_key(r, out, out + NAME, NULL);
		_exit(write(fds[1], out, NAME + KEYLEN) == NAME + KEYLEN ? 0 : 1);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], out, NAME + KEYLEN), NAME + KEYLEN);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A parent that only forks keeps sharing keys with what it forks, months later,
 * if it refreshes its ring now and then; without refreshing, a gap of over
 * 100000 epochs reseeds and the keys differ. */
static void test_refresh_keeps_chain(void **state)
{
	const time_t start = 6000, later = 6000 + 60 * (time_t)50001,
		     much_later = 6000 + 60 * (time_t)100002;
	unsigned char child[NAME + KEYLEN], name[NAME], key[KEYLEN];
	struct kts_ticket_ring *r;

	(void)state;
	for (int refreshed = 1; refreshed >= 0; refreshed--) {
		r = ring_at(start, 60);
		if (refreshed) {
			fake_now = later;
			assert_int_equal(kts_ticket_ring_refresh(r), 0);
		}
		forked_key_at(r, much_later, child);
		fake_now = much_later;
		assert_int_equal(kts_ticket_ring_encrypt_key(r, name, key, NULL), 1);
		assert_int_equal(be32(name), much_later / 60);
		assert_int_equal(be32(child), much_later / 60);
		if (refreshed) {
			assert_memory_equal(name, child, NAME);
			assert_memory_equal(key, child + NAME, KEYLEN);
		} else {
			assert_memory_not_equal(key, child + NAME, KEYLEN);
		}
		kts_ticket_ring_free(r);
	}
}

/* Keys added while other threads look keys up: every copy matches its name. */
static void *lookup_loop(void *arg)
{
	struct kts_ticket_ring *r = arg;
	unsigned char name[NAME], key[KEYLEN], again[KEYLEN], want[KEYLEN];

	for (int i = 0; i < 3000; i++) {
		if (kts_ticket_ring_encrypt_key(r, name, key, NULL) != 1)
			return "no encrypt key";
		make_key(want, be32(name));
		if (memcmp(key, want, KEYLEN) != 0)
			return "encrypt key does not match its name";
		int rc = kts_ticket_ring_decrypt_key(r, name, again, NULL);
		if (rc < 0 || (rc > 0 && memcmp(again, want, KEYLEN) != 0))
			return "decrypt key does not match its name";
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct kts_ticket_ring *r = ring_at(1000, 3600);
	pthread_t th[4];
	char err[200];
	void *res;

	(void)state;
	assert_int_equal(add(r, 0, 0, err), KTS_OK);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, lookup_loop, r), 0);
	for (unsigned int k = 1; k < 500; k++)
		assert_int_equal(add(r, k, k, err), KTS_OK);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], &res), 0);
		if (res)
			fail_msg("%s", (const char *)res);
	}
	kts_ticket_ring_free(r);
}

/* ---- handshakes over BIO pairs (ticket_hs.h) --------------------------- */

struct env {
	int version; /* 12 or 13 */
	struct kts_config *cfg;
	SSL_CTX *cctx;
};

static struct env env12 = {12, NULL, NULL}, env13 = {13, NULL, NULL};

/* A fresh server config on the test clock (lifetime 0) and a client context. */
static int env_setup(void **state)
{
	struct env *e = *state;

	test_cert_init();
	e->cfg = test_kts_config(e->version, &test_suites[0], 1);
	e->cctx = test_ssl_ctx(e->version, &test_suites[0], 0);
	if (!e->cfg || !e->cctx)
		return -1;
	fake_now = 1000000;
	kts_ticket_ring_set_clock(e->cfg->ring, fake_clock, NULL);
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	kts_config_free(e->cfg);
	SSL_CTX_free(e->cctx);
	return 0;
}

static void add_key(struct kts_config *cfg, unsigned int keyrev)
{
	unsigned char key[KEYLEN];

	make_key(key, keyrev + 100);
	assert_int_equal(kts_config_add_ticket_key(cfg, keyrev, key, KEYLEN), KTS_OK);
}

static void test_resume(void **state)
{
	struct env *e = *state;
	struct hs h1, h2, h3;

	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 3600), KTS_OK);
	handshake(&h1, e->cfg, e->cctx, NULL, NULL);
	assert_false(resumed(&h1));
	/* TLS 1.2: one ticket in the handshake; TLS 1.3: num_tickets (2) after it. */
	assert_int_equal(h1.nst, e->version == 13 ? 2 : 1);
	if (e->version == 13)
		assert_int_equal(h1.srv->tickets_sent, 2);
	assert_int_equal(ticket_keyrev(h1.sess), fake_now / 3600); /* automatic key */
	assert_int_equal(SSL_SESSION_get_ticket_lifetime_hint(h1.sess), 3600);

	handshake(&h2, e->cfg, e->cctx, h1.sess, NULL);
	assert_true(resumed(&h2));
	/* Newest key: TLS 1.2 keeps its ticket, TLS 1.3 always gets one fresh one. */
	assert_int_equal(h2.nst, e->version == 13 ? 1 : 0);

	/* And the resumed session resumes again. */
	handshake(&h3, e->cfg, e->cctx, h2.sess, NULL);
	assert_true(resumed(&h3));
	hs_free(&h1);
	hs_free(&h2);
	hs_free(&h3);
}

static void test_renew_older_key(void **state)
{
	struct env *e = *state;
	struct hs h1, h2, h3;

	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 3600), KTS_OK);
	add_key(e->cfg, 1);
	handshake(&h1, e->cfg, e->cctx, NULL, NULL);
	assert_int_equal(ticket_keyrev(h1.sess), 1);
	add_key(e->cfg, 2);
	handshake(&h2, e->cfg, e->cctx, h1.sess, NULL);
	assert_true(resumed(&h2));
	assert_int_equal(h2.nst, 1); /* renewed, also in TLS 1.2 */
	assert_int_equal(ticket_keyrev(h2.sess), 2);
	handshake(&h3, e->cfg, e->cctx, h2.sess, NULL);
	assert_true(resumed(&h3));
	assert_int_equal(h3.nst, e->version == 13 ? 1 : 0);
	hs_free(&h1);
	hs_free(&h2);
	hs_free(&h3);
}

/* A ticket never promises more than its key can keep: its lifetime ends when
 * the key that sealed it stops opening tickets, if that is sooner. */
static void test_lifetime_capped(void **state)
{
	struct env *e = *state;
	struct kts_ticket_key set[1] = {{.keyrev = 1}};
	struct hs h1, h2;

	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 3600), KTS_OK);
	make_key(set[0].key, 7);
	set[0].encrypt_from = fake_now - 10;
	set[0].encrypt_until = fake_now + 100;
	set[0].decrypt_until = fake_now + 500;
	assert_int_equal(kts_config_set_ticket_keys(e->cfg, set, 1), KTS_OK);
	handshake(&h1, e->cfg, e->cctx, NULL, NULL);
	assert_int_equal(ticket_keyrev(h1.sess), 1);
	assert_int_equal(SSL_SESSION_get_ticket_lifetime_hint(h1.sess), 500);
	set[0].decrypt_until = fake_now + 100000; /* a longer window: the lifetime */
	assert_int_equal(kts_config_set_ticket_keys(e->cfg, set, 1), KTS_OK);
	handshake(&h2, e->cfg, e->cctx, h1.sess, NULL);
	assert_true(resumed(&h2));
	hs_free(&h2);
	handshake(&h2, e->cfg, e->cctx, NULL, NULL);
	assert_int_equal(SSL_SESSION_get_ticket_lifetime_hint(h2.sess), 3600);
	/* The config's error names a refused set; the keys in use stay. */
	set[0].encrypt_from = fake_now + 1;
	assert_int_equal(kts_config_set_ticket_keys(e->cfg, set, 1), KTS_ERR_ARG);
	assert_non_null(strstr(kts_config_error(e->cfg), "no key is active now"));
	hs_free(&h1);
	handshake(&h1, e->cfg, e->cctx, h2.sess, NULL);
	assert_true(resumed(&h1));
	hs_free(&h1);
	hs_free(&h2);
}

/* Ticket can't be used: a full handshake without error, and a new ticket. */
static void assert_full_with_new_ticket(struct hs *h, long keyrev)
{
	assert_false(resumed(h));
	assert_true(h->nst >= 1);
	assert_int_equal(ticket_keyrev(h->sess), keyrev);
}

static void test_unknown_and_expired_keys(void **state)
{
	struct env *e = *state;
	struct hs h1, h2, h3, h4;

	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 60), KTS_OK);
	add_key(e->cfg, 1);
	handshake(&h1, e->cfg, e->cctx, NULL, NULL);
	assert_int_equal(ticket_keyrev(h1.sess), 1);
	fake_now += 100;
	add_key(e->cfg, 2);
	fake_now += 20; /* key 1 expired (added + 2 x 60) */
	handshake(&h2, e->cfg, e->cctx, h1.sess, NULL);
	assert_full_with_new_ticket(&h2, 2);

	for (unsigned int k = 3; k < 3 + KTS_TICKET_KEYS_MAX; k++)
		add_key(e->cfg, k); /* pushes key 2 out */
	handshake(&h3, e->cfg, e->cctx, h2.sess, NULL);
	assert_full_with_new_ticket(&h3, 2 + KTS_TICKET_KEYS_MAX);

	fake_now += 1000; /* every key expired: handshakes go on, without tickets */
	handshake(&h4, e->cfg, e->cctx, h3.sess, NULL);
	assert_false(resumed(&h4));
	assert_int_equal(h4.nst, e->version == 13 ? 0 : 1); /* TLS 1.2: an empty ticket */
	assert_int_equal(ticket_keyrev(h4.sess), -1);
	hs_free(&h1);
	hs_free(&h2);
	hs_free(&h3);
	hs_free(&h4);
}

/* The session with one bit of its ticket flipped at off (from the end if < 0). */
static SSL_SESSION *tampered(SSL_SESSION *s, long off)
{
	const unsigned char *t, *p;
	unsigned char *der = NULL, *hit;
	size_t tlen;
	int len = i2d_SSL_SESSION(s, &der);
	SSL_SESSION *out;

	assert_true(len > 0);
	SSL_SESSION_get0_ticket(s, &t, &tlen);
	hit = memmem(der, (size_t)len, t, tlen);
	assert_non_null(hit);
	hit[off >= 0 ? (size_t)off : tlen - (size_t)-off] ^= 0x01;
	p = der;
	out = d2i_SSL_SESSION(NULL, &p, len);
	OPENSSL_free(der);
	assert_non_null(out);
	SSL_SESSION_get0_ticket(out, &p, &tlen);
	assert_memory_not_equal(p, t, tlen);
	return out;
}

static void test_tampered_ticket(void **state)
{
	struct env *e = *state;
	const long offsets[] = {5, NAME + 3, NAME + 16 + 5, -1}; /* name, IV, ciphertext, HMAC */
	struct hs h1, h;

	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 3600), KTS_OK);
	add_key(e->cfg, 1);
	handshake(&h1, e->cfg, e->cctx, NULL, NULL);
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		SSL_SESSION *bad = tampered(h1.sess, offsets[i]);
		handshake(&h, e->cfg, e->cctx, bad, NULL);
		assert_full_with_new_ticket(&h, 1);
		SSL_SESSION_free(bad);
		hs_free(&h);
	}
	handshake(&h, e->cfg, e->cctx, h1.sess, NULL); /* the original still works */
	assert_true(resumed(&h));
	hs_free(&h);
	hs_free(&h1);
}

static void assert_appdata(struct kts *srv, const char *want)
{
	char buf[64] = {0};

	assert_int_equal(kts_ticket_appdata(srv, buf, sizeof(buf)), (ssize_t)strlen(want));
	assert_string_equal(buf, want);
}

static void test_appdata(void **state)
{
	struct env *e = *state;
	char big[KTS_TICKET_APPDATA_MAX + 1] = {0}, two[2];
	struct hs h1, h2, h3, h4;

	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 3600), KTS_OK);
	handshake(&h1, e->cfg, e->cctx, NULL, "alice");
	assert_int_equal(kts_ticket_appdata(h1.srv, two, sizeof(two)), 0); /* not resumed */
	assert_int_equal(kts_set_ticket_appdata(h1.srv, big, sizeof(big)), KTS_ERR_ARG);
	assert_int_equal(kts_set_ticket_appdata(h1.srv, big, sizeof(big) - 1), KTS_OK);

	/* Resumed while binding new data: kts reports the resumed ticket's data. */
	handshake(&h2, e->cfg, e->cctx, h1.sess, "bob");
	assert_true(resumed(&h2));
	assert_appdata(h2.srv, "alice");
	assert_int_equal(kts_ticket_appdata(h2.srv, two, sizeof(two)), 5); /* full length */
	assert_memory_equal(two, "al", 2);
	assert_int_equal(kts_ticket_appdata(h2.srv, NULL, 0), 5);

	/* TLS 1.3 renewed the ticket with the new data; TLS 1.2 kept the ticket. */
	handshake(&h3, e->cfg, e->cctx, h2.sess, NULL);
	assert_true(resumed(&h3));
	assert_appdata(h3.srv, e->version == 13 ? "bob" : "alice");
	/* Without new data, a renewed ticket carries the old data on. */
	handshake(&h4, e->cfg, e->cctx, h3.sess, NULL);
	assert_appdata(h4.srv, e->version == 13 ? "bob" : "alice");
	hs_free(&h1);
	hs_free(&h2);
	hs_free(&h3);
	hs_free(&h4);

	struct kts *cli = kts_client_new(e->cfg);
	assert_non_null(cli);
	assert_int_equal(kts_set_ticket_appdata(cli, "x", 1), KTS_ERR_STATE);
	kts_free(cli);
}

static void test_lifetime_off(void **state)
{
	struct env *e = *state;
	struct hs h1, h2, h3;

	handshake(&h1, e->cfg, e->cctx, NULL, NULL); /* default: off */
	assert_int_equal(h1.nst, 0);
	assert_int_equal(ticket_keyrev(h1.sess), -1);
	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 60), KTS_OK);
	handshake(&h2, e->cfg, e->cctx, NULL, NULL);
	assert_true(h2.nst >= 1);
	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 0), KTS_OK);
	handshake(&h3, e->cfg, e->cctx, h2.sess, NULL);
	assert_false(resumed(&h3));
	assert_int_equal(h3.nst, 0);
	hs_free(&h1);
	hs_free(&h2);
	hs_free(&h3);
}

#define assert_fails(cfg, call, needle)                                                     \
	do {                                                                                \
		assert_int_equal((call), KTS_ERR_ARG);                                      \
		if (!strstr(kts_config_error(cfg), (needle)))                               \
			fail_msg("message '%s' lacks '%s'", kts_config_error(cfg), (needle)); \
	} while (0)

static void test_setters(void **state)
{
	struct env *e = *state;
	unsigned char key[KEYLEN];
	struct hs h;

	assert_fails(e->cfg, kts_config_set_session_lifetime(e->cfg, 59), "59 is neither 0");
	assert_fails(e->cfg, kts_config_set_session_lifetime(e->cfg, KTS_SESSION_LIFETIME_MAX + 1),
		     "60..604800");
	assert_int_equal(kts_config_set_session_lifetime(e->cfg, KTS_SESSION_LIFETIME_MAX), KTS_OK);
	assert_fails(e->cfg, kts_config_set_num_tickets(e->cfg, 17), "more than 16");
	assert_fails(e->cfg, kts_config_set_session_id(e->cfg, key, 0), "1..32 bytes, got 0");
	assert_fails(e->cfg, kts_config_set_session_id(e->cfg, key, 33), "got 33");
	assert_fails(e->cfg, kts_config_add_ticket_key(e->cfg, 7, key, 48),
		     "ticket key: must be 64 bytes (AES-256 key + HMAC-SHA256 key), got 48");
	make_key(key, 1);
	assert_int_equal(kts_config_add_ticket_key(e->cfg, 7, key, KEYLEN), KTS_OK);
	make_key(key, 2);
	assert_fails(e->cfg, kts_config_add_ticket_key(e->cfg, 7, key, KEYLEN),
		     "ticket key: keyrev 7 already added with different bytes");

	assert_int_equal(kts_config_refresh_ticket_keys(e->cfg), KTS_OK);
	assert_int_equal(kts_config_refresh_ticket_keys(NULL), KTS_ERR_ARG);

	assert_int_equal(kts_config_set_num_tickets(e->cfg, 3), KTS_OK);
	handshake(&h, e->cfg, e->cctx, NULL, NULL);
	assert_int_equal(h.nst, e->version == 13 ? 3 : 1);
	assert_int_equal(SSL_SESSION_get_ticket_lifetime_hint(h.sess), KTS_SESSION_LIFETIME_MAX);
	hs_free(&h);
}

/* Two servers resume each other's tickets only with the same keys and the
 * same session ID context. */
static void test_shared_keys(void **state)
{
	struct env *e = *state;
	struct kts_config *other = test_kts_config(e->version, &test_suites[0], 1);
	const unsigned char sid[] = "cluster-a";
	struct hs h1, h2, h3;

	assert_non_null(other);
	kts_ticket_ring_set_clock(other->ring, fake_clock, NULL);
	assert_int_equal(kts_config_set_session_lifetime(e->cfg, 3600), KTS_OK);
	assert_int_equal(kts_config_set_session_lifetime(other, 3600), KTS_OK);
	add_key(e->cfg, 1);
	add_key(other, 1);
	handshake(&h1, e->cfg, e->cctx, NULL, NULL);
	handshake(&h2, other, e->cctx, h1.sess, NULL); /* random session IDs differ */
	assert_false(resumed(&h2));
	assert_int_equal(kts_config_set_session_id(e->cfg, sid, sizeof(sid)), KTS_OK);
	assert_int_equal(kts_config_set_session_id(other, sid, sizeof(sid)), KTS_OK);
	hs_free(&h1);
	handshake(&h1, e->cfg, e->cctx, NULL, NULL);
	handshake(&h3, other, e->cctx, h1.sess, NULL);
	assert_true(resumed(&h3));
	hs_free(&h1);
	hs_free(&h2);
	hs_free(&h3);
	kts_config_free(other);
}

/* One handshake test per TLS version, named after both. */
#define HS(f, env) {#f "/" #env, f, env_setup, env_teardown, &env}
#define HS_TESTS(env)                                                                     \
	HS(test_resume, env), HS(test_renew_older_key, env),                              \
		HS(test_unknown_and_expired_keys, env), HS(test_tampered_ticket, env),     \
		HS(test_appdata, env), HS(test_lifetime_off, env), HS(test_setters, env), \
		HS(test_shared_keys, env), HS(test_lifetime_capped, env)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_and_lookup),
		cmocka_unit_test(test_bad_keys),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_max_keys),
		cmocka_unit_test(test_key_name),
		cmocka_unit_test(test_auto_rotation),
		cmocka_unit_test(test_auto_shared_across_fork),
		cmocka_unit_test(test_refresh_keeps_chain),
		cmocka_unit_test(test_threads),
		HS_TESTS(env12),
		HS_TESTS(env13),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	test_cert_free();
	return rc;
}
