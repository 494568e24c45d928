/* test_sessstore.c - the external session store (kts_config_set_session_store):
 * two servers with their own local caches, "machines", share TLS 1.2
 * sessions through a store that the test holds in memory; the handshake
 * pauses for the lookup (KTS_WANT_SESSION) and goes on with what is
 * supplied, a miss or garbage meaning a full handshake, never a failed one. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "kts.h"
#include "testutil.h"

/* The store: one entry, as a test needs no more. */
static unsigned char store_id[32], store_der[4096];
static size_t store_id_len, store_len;
static unsigned int store_lifetime;
static int puts_seen, dels_seen;

static void put(void *arg, const unsigned char *id, size_t id_len, const unsigned char *der,
		size_t len, unsigned int lifetime)
{
	assert_ptr_equal(arg, &puts_seen);
	assert_true(id_len <= sizeof(store_id) && len <= sizeof(store_der));
	memcpy(store_id, id, id_len);
	memcpy(store_der, der, len);
	store_id_len = id_len;
	store_len = len;
	store_lifetime = lifetime;
	puts_seen++;
}

static void del(void *arg, const unsigned char *id, size_t id_len)
{
	(void)arg;
	(void)id;
	(void)id_len;
	dels_seen++;
}

static const struct kts_session_store store = {put, del, &puts_seen};

static struct kts_config *machine(void)
{
	struct kts_config *cfg = test_kts_config(12, &test_suites[0], 1);

	assert_non_null(cfg);
	assert_int_equal(kts_config_set_protocols(cfg, KTS_TLS1_2, KTS_TLS1_3), KTS_OK);
	assert_int_equal(kts_config_set_session_id(cfg, (const unsigned char *)"fleet", 5), KTS_OK);
	assert_int_equal(kts_config_set_session_cache(cfg, 64), KTS_OK);
	assert_int_equal(kts_config_set_session_store(cfg, &store), KTS_OK);
	assert_int_equal(kts_config_set_session_lifetime(cfg, 300), KTS_OK);
	return cfg;
}

static SSL_CTX *client_ctx(int max_version, int tickets)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	assert_non_null(ctx);
	SSL_CTX_set_max_proto_version(ctx, max_version);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	if (!tickets)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	return ctx;
}

enum supply { SUPPLY_STORE, SUPPLY_NOTHING, SUPPLY_GARBAGE };

/* One connection to cfg. Returns 1 resumed, 0 full; *waits counts the
 * KTS_WANT_SESSION pauses; *out gets the client's session. */
static int connect_to(struct kts_config *cfg, SSL_CTX *cctx, SSL_SESSION *sess,
		      enum supply how, int *waits, SSL_SESSION **out)
{
	int fds[2], done_c = 0, done_s = 0, resumed;
	struct kts *s = kts_server_new(cfg);
	SSL *c = SSL_new(cctx);

	*waits = 0;
	assert_non_null(s);
	assert_int_equal(test_tcp_pair(fds), 0);
	fcntl(fds[0], F_SETFL, O_NONBLOCK);
	fcntl(fds[1], F_SETFL, O_NONBLOCK);
	assert_int_equal(kts_attach(s, fds[1]), KTS_OK);
	SSL_set_fd(c, fds[0]);
	if (sess)
		SSL_set_session(c, sess);
	for (int i = 0; i < 2000 && !(done_c && done_s); i++) {
		int rc = done_c ? 1 : SSL_connect(c);

		if (rc == 1)
			done_c = 1;
		else
			assert_int_equal(SSL_get_error(c, rc), SSL_ERROR_WANT_READ);
		rc = done_s ? KTS_OK : kts_handshake(s);
		if (rc == KTS_WANT_SESSION) {
			unsigned char id[32];
			ssize_t n = kts_session_wanted(s, id, sizeof(id));

			(*waits)++;
			assert_true(n > 0);
			if (how == SUPPLY_STORE) {
				assert_memory_equal(id, store_id, (size_t)n);
				assert_int_equal(kts_session_supply(s, store_der, store_len), KTS_OK);
			} else if (how == SUPPLY_GARBAGE) {
				assert_int_equal(kts_session_supply(s, (const unsigned char *)"junk", 4),
						 KTS_OK);
			} else {
				assert_int_equal(kts_session_supply(s, NULL, 0), KTS_OK);
			}
			continue;
		}
		if (rc == KTS_OK)
			done_s = 1;
		else if (rc != KTS_WANT_READ)
			fail_msg("server handshake: %d %s", rc, kts_error(s));
		usleep(100);
	}
	assert_true(done_c && done_s);
	resumed = kts_session_resumed(s);
	assert_int_equal(SSL_session_reused(c), resumed);
	if (out)
		*out = SSL_get1_session(c);
	SSL_shutdown(c);
	kts_close(s);
	SSL_free(c);
	kts_free(s);
	close(fds[0]);
	close(fds[1]);
	return resumed;
}

static void test_across_machines(void **state)
{
	struct kts_config *a = machine(), *b = machine(), *c = machine();
	SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, 0);
	SSL_SESSION *sess = NULL;
	int waits;

	(void)state;
	puts_seen = 0;
	assert_int_equal(connect_to(a, cctx, NULL, SUPPLY_STORE, &waits, &sess), 0);
	assert_int_equal(waits, 0); /* no session offered: nothing to look up */
	assert_int_equal(puts_seen, 1);
	assert_int_equal(store_lifetime, 300);
	assert_int_equal(store_id_len, 32);
	/* Machine b has never seen it: it asks the store, and resumes. */
	assert_int_equal(connect_to(b, cctx, sess, SUPPLY_STORE, &waits, NULL), 1);
	assert_int_equal(waits, 1);
	/* Now in b's local cache: no second lookup. */
	assert_int_equal(connect_to(b, cctx, sess, SUPPLY_NOTHING, &waits, NULL), 1);
	assert_int_equal(waits, 0);
	/* Machine a had it locally all along. */
	assert_int_equal(connect_to(a, cctx, sess, SUPPLY_NOTHING, &waits, NULL), 1);
	assert_int_equal(waits, 0);
	/* Machine c: the store has nothing (or answers too late), or garbage:
	 * full handshakes, not failures, and each makes a new session. */
	puts_seen = 0;
	assert_int_equal(connect_to(c, cctx, sess, SUPPLY_NOTHING, &waits, NULL), 0);
	assert_int_equal(waits, 1);
	assert_int_equal(connect_to(c, cctx, sess, SUPPLY_GARBAGE, &waits, NULL), 0);
	assert_int_equal(waits, 1);
	assert_int_equal(puts_seen, 2);
	SSL_SESSION_free(sess);
	SSL_CTX_free(cctx);
	kts_config_free(a);
	kts_config_free(b);
	kts_config_free(c);
}

static void test_no_lookup(void **state)
{
	struct kts_config *a = machine(), *b = machine();
	SSL_CTX *t13 = client_ctx(TLS1_3_VERSION, 1), *tick = client_ctx(TLS1_2_VERSION, 1);
	SSL_SESSION *sess = NULL;
	int waits;

	(void)state;
	/* TLS 1.3: the session ID is only the compatibility field. */
	connect_to(a, t13, NULL, SUPPLY_NOTHING, &waits, &sess);
	assert_int_equal(waits, 0);
	assert_int_equal(connect_to(b, t13, sess, SUPPLY_NOTHING, &waits, NULL), 0);
	assert_int_equal(waits, 0);
	SSL_SESSION_free(sess);
	/* TLS 1.2 with a ticket: the ticket resumes by itself (b lacks a's keys). */
	connect_to(a, tick, NULL, SUPPLY_NOTHING, &waits, &sess);
	assert_int_equal(waits, 0);
	connect_to(b, tick, sess, SUPPLY_NOTHING, &waits, NULL);
	assert_int_equal(waits, 0);
	SSL_SESSION_free(sess);
	SSL_CTX_free(t13);
	SSL_CTX_free(tick);
	kts_config_free(a);
	kts_config_free(b);
}

static void test_misuse(void **state)
{
	struct kts_config *cfg = test_kts_config(12, &test_suites[0], 1);
	struct kts *s;
	unsigned char id[32];

	(void)state;
	assert_int_equal(kts_config_set_session_store(cfg, &store), KTS_ERR_STATE);
	assert_non_null(strstr(kts_config_error(cfg), "set a session cache first"));
	assert_int_equal(kts_config_set_session_store(cfg, NULL), KTS_ERR_ARG);
	s = kts_server_new(cfg);
	assert_int_equal(kts_session_wanted(s, id, sizeof(id)), KTS_ERR_STATE);
	assert_int_equal(kts_session_supply(s, NULL, 0), KTS_ERR_STATE);
	assert_non_null(strstr(kts_error(s), "no lookup pending"));
	kts_free(s);
	kts_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_across_machines),
		cmocka_unit_test(test_no_lookup),
		cmocka_unit_test(test_misuse),
	};
	int rc;

	test_cert_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	test_cert_free();
	return rc;
}
