/*
 * test_caller_io.c - caller-owned I/O without sockets: the handshake against
 * an in-memory OpenSSL peer with the peer's last flight and data in one
 * buffer, split at every byte; what is received past the handshake (several
 * records, a KeyUpdate, close_notify); the send queue's results; and the
 * kernel-RX record interpreter fed completed receives with record types.
 * The fd is /dev/null: the kernel refuses it the tls ULP, so the handoff
 * keeps both directions in userspace, as on a kernel without kTLS.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/tls.h>
#include <openssl/ssl.h>

#include "internal.h"
#include "mem_pair.h"
#include "testutil.h"
#include "tls_wire.h"

static struct kts_config *server_cfg;
static unsigned char bulk[3 * 16384 + 123]; /* more than one write's worth of records */
static SSL_CTX *client_ctx;
static int null_fd;

static int setup(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bulk); i++)
		bulk[i] = (unsigned char)(i * 7 + i / 251);
	test_cert_init();
	server_cfg = test_kts_config(13, &test_suites[0], 1);
	if (server_cfg) {
		/* As where the kernel has kTLS, so the key log collects secrets. */
		server_cfg->kernel_tls = 1;
		kts_handshake_callbacks(server_cfg, 1);
	}
	client_ctx = test_ssl_ctx(13, &test_suites[0], 0);
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	return server_cfg && client_ctx && null_fd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	kts_config_free(server_cfg);
	SSL_CTX_free(client_ctx);
	close(null_fd);
	test_cert_free();
	return 0;
}

static void pair_open_with(struct pair *p, struct kts_config *cfg, SSL_CTX *ctx)
{
	pair_open_fd(p, cfg, ctx, null_fd);
}

static void pair_open(struct pair *p)
{
	pair_open_with(p, server_cfg, client_ctx);
}

static void test_split_every_byte(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	unsigned char wire[8192];
	char got[256];
	int n;
	(void)state;

	for (size_t k = 0;; k++) {
		struct pair p;

		pair_open(&p);
		SSL_write(p.peer, req, sizeof(req) - 1);
		n = flight(&p, wire, sizeof(wire));
		assert_int_equal(deliver(&p, wire, (size_t)n, k, got, sizeof(got)), sizeof(req) - 1);
		assert_memory_equal(got, req, sizeof(req) - 1);
		/* The request record was received with the handshake's end, so
		 * the kernel's RX would start at 1; unless the split fell just
		 * between them: then the handoff came first and it reads it. */
		size_t boundary = (size_t)n - (5 + sizeof(req) - 1 + 1 + 16);
		assert_int_equal(p.k->rx_user_records, k == boundary ? 0 : 1);
		assert_int_equal(kts_offload(p.k, KTS_RX), KTS_PATH_USER);
		assert_null(p.k->sec); /* userspace TLS 1.3 keeps no secrets past the handoff */
		pair_close(&p);
		if (k >= (size_t)n)
			break;
	}
}

/* Cut inside the second of three records: the limit is exactly its rest. */
static void test_feed_limit_is_the_record_rest(void **state)
{
	struct pair p;
	unsigned char wire[8192];
	char got[64];
	int n;
	(void)state;

	pair_open(&p);
	SSL_write(p.peer, "one", 3);
	SSL_write(p.peer, "two", 3);
	SSL_write(p.peer, "three", 5);
	n = flight(&p, wire, sizeof(wire));
	/* Records of 3 and 5 bytes of data are 25 and 27 bytes (TLS 1.3, AES-GCM). */
	size_t cut = (size_t)n - 27 - 10;
	ssize_t r = kts_recv_done(p.k, wire, sizeof(wire), (ssize_t)cut);

	assert_int_equal(r, KTS_WANT_READ);
	assert_int_equal(kts_feed_limit(p.k), 10);
	assert_int_equal(kts_read(p.k, got, sizeof(got)), KTS_WANT_READ); /* held until handoff */
	assert_int_equal(deliver(&p, wire + cut, (size_t)n - cut, 0, got, sizeof(got)), 11);
	assert_memory_equal(got, "onetwothree", 11);
	/* "two" completed the handoff; "three" came after it. */
	assert_int_equal(p.k->rx_user_records, 2);
	pair_close(&p);
}

static void test_keyupdate_past_handshake(void **state)
{
	struct pair p;
	unsigned char wire[8192];
	char got[64];
	int n;
	(void)state;

	pair_open(&p);
	SSL_key_update(p.peer, SSL_KEY_UPDATE_NOT_REQUESTED);
	SSL_write(p.peer, "after", 5);
	n = flight(&p, wire, sizeof(wire));
	assert_int_equal(deliver(&p, wire, (size_t)n, 0, got, sizeof(got)), 5);
	/* OpenSSL's read key moved: the kernel would start from the wrong one. */
	assert_non_null(strstr(kts_offload_reason(p.k, KTS_RX), "handshake message"));
	pair_close(&p);
}

static void test_close_notify_past_handshake(void **state)
{
	struct pair p;
	unsigned char wire[8192];
	char got[64];
	int n;
	(void)state;

	pair_open(&p);
	SSL_write(p.peer, "last", 4);
	SSL_shutdown(p.peer);
	n = flight(&p, wire, sizeof(wire));
	assert_int_equal(deliver(&p, wire, (size_t)n, 0, got, sizeof(got)), 4);
	assert_int_equal(kts_read(p.k, got, sizeof(got)), 0);
	assert_non_null(strstr(kts_offload_reason(p.k, KTS_RX), "closed"));
	pair_close(&p);
}

/* The send queue: a short send, EAGAIN, a failure, and a stray done. */
static void test_out_queue_results(void **state)
{
	struct kts *k = kts_server_new(server_cfg);
	struct kts_msg m;
	size_t n, again;
	(void)state;

	assert_int_equal(kts_out_done(k, 5), KTS_ERR_STATE);
	assert_int_equal(kts_attach_caller_io(k, null_fd), KTS_OK);
	assert_int_equal(kts_out_pending(k), 0);
	/* A ClientHello from a peer makes kts queue its first flight. */
	{
		SSL *peer = SSL_new(client_ctx);
		BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
		char buf[4096];
		int len;

		SSL_set_bio(peer, in, out);
		SSL_set_connect_state(peer);
		SSL_do_handshake(peer);
		len = BIO_read(out, buf, sizeof(buf));
		assert_int_equal(kts_recv_done(k, buf, sizeof(buf), len), KTS_WANT_READ);
		SSL_free(peer);
	}
	n = kts_out_msg(k, &m);
	assert_true(n > 100);
	assert_int_equal(kts_out_pending(k), n);
	assert_int_equal(kts_out_done(k, 10), KTS_OK); /* short: the rest next */
	again = kts_out_msg(k, &m);
	assert_int_equal(again, n - 10);
	assert_int_equal(kts_out_done(k, -EAGAIN), KTS_WANT_WRITE);
	assert_int_equal(kts_out_msg(k, &m), again); /* the same bytes again */
	assert_int_equal(kts_out_done(k, -EPIPE), KTS_ERR_SYS);
	assert_non_null(strstr(kts_error(k), "Broken pipe"));
	assert_int_equal(kts_recv_done(k, NULL, 0, 1), KTS_ERR_SYS); /* failed stays failed */
	kts_free(k);
}

/* Bulk writes skip OpenSSL: kts seals the records straight into the send
 * queue, for both versions and all three ciphers, and the OpenSSL peer reads
 * them; OpenSSL's close_notify, renumbered behind them, is read as such. */
static void test_soft_tx_each_suite(void **state)
{
	(void)state;
	for (int version = 12; version <= 13; version++) {
		for (int s = 0; s < 3; s++) {
			struct kts_config *cfg = test_kts_config(version, &test_suites[s], 1);
			SSL_CTX *ctx = test_ssl_ctx(version, &test_suites[s], 0);
			struct pair p;
			char b;

			assert_non_null(cfg);
			assert_non_null(ctx);
			assert_int_equal(kts_config_set_tls13_seal(cfg, 1), KTS_OK);
			pair_open_with(&p, cfg, ctx);
			pair_handoff(&p);
			assert_int_equal(kts_offload(p.k, KTS_TX), KTS_PATH_USER);
			/* A small write stays with OpenSSL ... */
			write_and_check(&p, (const unsigned char *)"small", 5);
			assert_true(!p.k->soft || !p.k->soft->started);
			/* ... a bulk one does not, nor anything after it. */
			write_and_check(&p, bulk, sizeof(bulk));
			assert_non_null(p.k->soft);
			assert_true(p.k->soft->started);
			assert_null(p.k->soft->ctx); /* dropped with the empty queue */
			write_and_check(&p, (const unsigned char *)"tail", 4);
			assert_int_equal(kts_close(p.k), KTS_OK);
			move_out(&p);
			assert_int_equal(SSL_read(p.peer, &b, 1), 0);
			assert_int_equal(SSL_get_error(p.peer, 0), SSL_ERROR_ZERO_RETURN);
			pair_close(&p);
			SSL_CTX_free(ctx);
			kts_config_free(cfg);
		}
	}
}

/* TLS 1.3 KeyUpdate with update_requested: OpenSSL answers and moves its TX
 * key; kts follows, whether it took over before the update or after it. */
static void test_soft_tx_key_update(void **state)
{
	(void)state;
	for (int before = 0; before <= 1; before++) {
		struct pair p;

		pair_open(&p);
		pair_handoff(&p);
		if (before)
			write_and_check(&p, bulk, sizeof(bulk));
		assert_true(SSL_key_update(p.peer, SSL_KEY_UPDATE_REQUESTED));
		assert_int_equal(SSL_do_handshake(p.peer), 1);
		peer_to_kts(&p);
		write_and_check(&p, bulk, sizeof(bulk)); /* the peer reads the answer first */
		assert_true(p.k->soft->started);
		/* And once more each way, all under the next keys. */
		assert_true(SSL_key_update(p.peer, SSL_KEY_UPDATE_REQUESTED));
		assert_int_equal(SSL_do_handshake(p.peer), 1);
		peer_to_kts(&p);
		write_and_check(&p, bulk, 1000);
		pair_close(&p);
	}
}

/* TLS 1.3 without kTLS and without kts_config_set_tls13_seal: no key log,
 * so no secrets, and OpenSSL keeps sealing; the bytes are the same. */
static void test_soft_tx_tls13_needs_opt_in(void **state)
{
	struct kts_config *cfg = test_kts_config(13, &test_suites[0], 1);
	SSL_CTX *ctx = test_ssl_ctx(13, &test_suites[0], 0);
	struct pair p;
	(void)state;

	cfg->kernel_tls = 0; /* as on a kernel without the tls module */
	assert_int_equal(kts_config_set_offload(cfg, KTS_OFFLOAD_AUTO), KTS_OK); /* key log off */
	pair_open_with(&p, cfg, ctx);
	pair_handoff(&p);
	write_and_check(&p, bulk, sizeof(bulk));
	assert_null(p.k->soft);
	assert_int_equal(p.k->soft_tx, 0);
	pair_close(&p);
	SSL_CTX_free(ctx);
	kts_config_free(cfg);
}

/* Without the tls module, one ULP attempt per KTS_ULP_RETRY_S per config:
 * the rest of the connections skip it with the same reason. */
static void test_ulp_retry(void **state)
{
	struct kts_config *cfg = test_kts_config(13, &test_suites[0], 1);
	(void)state;

	assert_true(kts_ulp_should_try(cfg, 100));
	kts_ulp_missing(cfg, 100);
	assert_false(kts_ulp_should_try(cfg, 100 + KTS_ULP_RETRY_S - 1));
	assert_true(kts_ulp_should_try(cfg, 100 + KTS_ULP_RETRY_S));
	if (!test_host_has_ktls()) {
		/* A real TCP socket (kts never reads or writes it here) gets ENOENT. */
		struct kts_config *fresh = test_kts_config(13, &test_suites[0], 1);
		int fds[2];

		assert_int_equal(test_tcp_pair(fds), 0);
		for (int i = 0; i < 2; i++) {
			struct pair p;

			pair_open_fd(&p, fresh, client_ctx, fds[0]);
			pair_handoff(&p);
			assert_true(atomic_load(&fresh->ulp_retry_at) > 0);
			assert_string_equal(kts_offload_reason(p.k, KTS_TX),
					    "kernel has no tls module (TCP_ULP: No such file or directory)");
			pair_close(&p);
		}
		close(fds[0]);
		close(fds[1]);
		kts_config_free(fresh);
	}
	kts_config_free(cfg);
}

static int tickets_seen;

static int count_ticket(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	tickets_seen += SSL_SESSION_is_resumable(sess);
	return 0; /* not kept */
}

/* A late ticket, written by OpenSSL after kts took over, reaches the peer
 * renumbered, as a session it can resume. */
static void test_soft_tx_late_ticket(void **state)
{
	struct kts_config *cfg = test_kts_config(13, &test_suites[0], 1);
	SSL_CTX *ctx = test_ssl_ctx(13, &test_suites[0], 0);
	struct pair p;
	int seen;
	(void)state;

	assert_int_equal(kts_config_set_session_lifetime(cfg, 300), KTS_OK);
	assert_int_equal(kts_config_set_tls13_seal(cfg, 1), KTS_OK);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	SSL_CTX_sess_set_new_cb(ctx, count_ticket);
	pair_open_with(&p, cfg, ctx);
	pair_handoff(&p);
	write_and_check(&p, bulk, sizeof(bulk));
	assert_true(p.k->soft->started);
	seen = tickets_seen; /* the handshake's own */
	assert_true(seen > 0);
	assert_int_equal(kts_issue_ticket(p.k), KTS_OK);
	write_and_check(&p, (const unsigned char *)"after", 5);
	assert_int_equal(tickets_seen, seen + 1);
	pair_close(&p);
	SSL_CTX_free(ctx);
	kts_config_free(cfg);
}

/* A connection as the handoff leaves it with both directions in the kernel. */
static struct kts *kernel_conn(int version)
{
	struct kts *c = kts_server_new(server_cfg);

	assert_non_null(c);
	assert_int_equal(kts_attach_caller_io(c, null_fd), KTS_OK);
	c->state = KTS_STATE_OPEN;
	c->path[KTS_TX] = c->path[KTS_RX] = KTS_PATH_KERNEL;
	c->version = version;
	return c;
}

/* A finished recvmsg: n bytes of a record of type, msg_flags as given. */
static ssize_t received(struct kts *c, struct kts_msg *m, unsigned char type, const void *bytes,
			size_t n, int flags, void *buf)
{
	struct cmsghdr *cm;

	kts_recv_prep(c, m, buf, 64);
	memcpy(buf, bytes, n);
	cm = CMSG_FIRSTHDR(&m->msg);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_GET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(1);
	*CMSG_DATA(cm) = type;
	m->msg.msg_controllen = CMSG_SPACE(1);
	m->msg.msg_flags = flags;
	return kts_recvmsg_done(c, m, (ssize_t)n);
}

static void test_kernel_rx_records(void **state)
{
	static const unsigned char close_notify[] = {ALERT_WARNING, ALERT_CLOSE_NOTIFY};
	static const unsigned char fatal[] = {ALERT_FATAL, 40}; /* handshake_failure */
	unsigned char buf[64];
	struct kts_msg m;
	struct kts *c;
	(void)state;

	c = kernel_conn(TLS1_3_VERSION);
	assert_int_equal(received(c, &m, KTS_RECORD_DATA, "hello", 5, MSG_EOR, buf), 5);
	assert_int_equal(kts_read(c, buf, sizeof(buf)), KTS_WANT_READ); /* no syscall */
	assert_int_equal(kts_feed(c, "x", 1), KTS_ERR_STATE);
	assert_int_equal(kts_recv_done(c, buf, sizeof(buf), -EIO), KTS_WANT_CONTROL);
	assert_int_equal(kts_recv_done(c, buf, sizeof(buf), -EAGAIN), KTS_WANT_READ);
	/* An alert in two reads, the record ending with the second. */
	assert_int_equal(received(c, &m, KTS_RECORD_ALERT, close_notify, 1, 0, buf), KTS_WANT_READ);
	assert_int_equal(received(c, &m, KTS_RECORD_ALERT, close_notify + 1, 1, MSG_EOR, buf), 0);
	kts_free(c);

	/* A failed connection wipes the secrets kept for post-handshake messages. */
	c = kernel_conn(TLS1_3_VERSION);
	assert_non_null(kts_secrets_get(c));
	c->sec->size = sizeof(c->sec->rx);
	memset(c->sec->rx, 0x11, sizeof(c->sec->rx));
	assert_int_equal(received(c, &m, KTS_RECORD_ALERT, fatal, 2, MSG_EOR, buf), KTS_ERR_TLS);
	assert_non_null(strstr(kts_error(c), "handshake failure"));
	assert_int_equal(c->sec->size, 0);
	for (size_t i = 0; i < sizeof(c->sec->rx); i++)
		assert_int_equal(c->sec->rx[i], 0);
	kts_free(c);

	/* Two alert bytes of a longer record; one byte ending it. */
	c = kernel_conn(TLS1_3_VERSION);
	assert_int_equal(received(c, &m, KTS_RECORD_ALERT, fatal, 2, 0, buf), KTS_ERR_TLS);
	assert_non_null(strstr(kts_error(c), "more than 2 bytes"));
	/* Refused with a decode_error alert, queued for the caller. */
	assert_int_equal(kts_out_msg(c, &m), 2);
	assert_int_equal(((unsigned char *)m.iov.iov_base)[1], ALERT_DECODE_ERROR);
	assert_int_equal(*CMSG_DATA(CMSG_FIRSTHDR(&m.msg)), KTS_RECORD_ALERT);
	kts_free(c);
	c = kernel_conn(TLS1_3_VERSION);
	assert_int_equal(received(c, &m, KTS_RECORD_ALERT, fatal, 1, MSG_EOR, buf), KTS_ERR_TLS);
	assert_non_null(strstr(kts_error(c), "fewer than 2 bytes"));
	kts_free(c);

	/* A lost record type, an unknown one, authentication, EOF. */
	c = kernel_conn(TLS1_3_VERSION);
	assert_int_equal(received(c, &m, KTS_RECORD_DATA, "x", 1, MSG_CTRUNC, buf), KTS_ERR_TLS);
	assert_non_null(strstr(kts_error(c), "truncated"));
	kts_free(c);
	c = kernel_conn(TLS1_2_VERSION);
	assert_int_equal(received(c, &m, 99, "x", 1, MSG_EOR, buf), KTS_ERR_TLS);
	kts_free(c);
	c = kernel_conn(TLS1_3_VERSION);
	assert_int_equal(kts_recv_done(c, buf, sizeof(buf), -EBADMSG), KTS_ERR_TLS);
	assert_non_null(strstr(kts_error(c), "bad_record_mac"));
	kts_free(c);
	c = kernel_conn(TLS1_3_VERSION);
	assert_int_equal(kts_recv_done(c, buf, sizeof(buf), 0), KTS_ERR_TRUNCATED);
	kts_free(c);

	/* Kernel TX: plaintext is the caller's to send; kts checks the result. */
	c = kernel_conn(TLS1_3_VERSION);
	assert_int_equal(kts_write(c, "x", 1), KTS_ERR_STATE);
	assert_int_equal(kts_send_done(c, -EAGAIN, 5), KTS_WANT_WRITE);
	assert_int_equal(kts_send_done(c, -ECONNRESET, 5), KTS_ERR_SYS);
	kts_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_every_byte),
		cmocka_unit_test(test_feed_limit_is_the_record_rest),
		cmocka_unit_test(test_keyupdate_past_handshake),
		cmocka_unit_test(test_close_notify_past_handshake),
		cmocka_unit_test(test_out_queue_results),
		cmocka_unit_test(test_kernel_rx_records),
		cmocka_unit_test(test_soft_tx_each_suite),
		cmocka_unit_test(test_soft_tx_key_update),
		cmocka_unit_test(test_soft_tx_tls13_needs_opt_in),
		cmocka_unit_test(test_soft_tx_late_ticket),
		cmocka_unit_test(test_ulp_retry),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
