/*
 * test_softrx.c - servers with caller-owned I/O that free OpenSSL once a
 * connection goes quiet (kts_shrink) while both directions stay in
 * userspace: kts opens and seals every record itself (softrx.c, softtx.c).
 * Against an in-memory OpenSSL peer: data both ways for TLS 1.2 and 1.3 x
 * three ciphers, records split at every receive size and read in small
 * pieces, data that came with the handshake, KeyUpdate, renegotiation,
 * tampered and malformed records, the conditions under which OpenSSL stays,
 * and the takeover after OpenSSL has read, written and rekeyed. The fd is /dev/null: the kernel
 * refuses it the tls ULP, as a kernel without kTLS would.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "internal.h"
#include "mem_pair.h"
#include "record.h"
#include "testutil.h"
#include "tls_wire.h"

static unsigned char bulk[3 * 16384 + 123];
static int null_fd;

static int setup(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bulk); i++)
		bulk[i] = (unsigned char)(i * 13 + i / 509);
	test_cert_init();
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	return null_fd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	close(null_fd);
	test_cert_free();
	return 0;
}

/* A released server and its peer: cfg and ctx kept in p for released_close. */
struct released {
	struct pair p;
	struct kts_config *cfg;
	SSL_CTX *ctx;
};

/* release: kts_config_set_release_openssl; then kts_shrink right away, or
 * (release 2) not yet. */
static void released_open(struct released *r, int version, int suite, int release)
{
	r->cfg = test_kts_config(version, &test_suites[suite], 1);
	r->ctx = test_ssl_ctx(version, &test_suites[suite], 0);
	assert_non_null(r->cfg);
	assert_non_null(r->ctx);
	assert_int_equal(kts_config_set_release_openssl(r->cfg, release > 0), KTS_OK);
	assert_int_equal(kts_config_set_tls13_seal(r->cfg, 1), KTS_OK); /* TLS 1.3 secrets */
	pair_open_fd(&r->p, r->cfg, r->ctx, null_fd);
	pair_handoff(&r->p);
	if (release < 2)
		assert_int_equal(kts_shrink(r->p.k), release); /* quiet at once */
}

static void released_close(struct released *r)
{
	pair_close(&r->p);
	SSL_CTX_free(r->ctx);
	kts_config_free(r->cfg);
}

static void assert_released(struct kts *k)
{
	assert_null(kts_ssl(k));
	assert_non_null(k->srx);
	assert_int_equal(kts_offload(k, KTS_TX), KTS_PATH_USER);
	assert_int_equal(kts_offload(k, KTS_RX), KTS_PATH_USER);
}

/* What the peer wrote since the last call, as wire bytes. */
static size_t peer_wire(struct pair *p, unsigned char *wire, size_t cap)
{
	int n = BIO_read(p->out, wire, (int)cap);

	assert_true(n > 0);
	return (size_t)n;
}

/* Hand wire[0, n) to kts in receives of chunk bytes (kts_recv_done, then
 * kts_read until it wants more) and collect the plaintext; returns kts's
 * last result. */
static ssize_t recv_chunks(struct kts *k, const unsigned char *wire, size_t n, size_t chunk,
			   unsigned char *got, size_t *have, size_t cap)
{
	static unsigned char buf[KTS_RECORD_MAX + 64];
	ssize_t r = KTS_WANT_READ;

	if (chunk > sizeof(buf))
		chunk = sizeof(buf);
	for (size_t at = 0; at < n; at += chunk) {
		size_t take = n - at < chunk ? n - at : chunk;

		memcpy(buf, wire + at, take);
		for (r = kts_recv_done(k, buf, sizeof(buf), (ssize_t)take); r > 0;
		     r = kts_read(k, buf, sizeof(buf))) {
			assert_true(*have + (size_t)r <= cap);
			memcpy(got + *have, buf, (size_t)r);
			*have += (size_t)r;
		}
		if (r != KTS_WANT_READ)
			return r;
	}
	return r;
}

/* The peer writes buf (len bytes); kts receives it in receives of chunk
 * bytes and reads exactly buf. */
static void peer_sends(struct pair *p, const void *buf, size_t len, size_t chunk)
{
	static unsigned char wire[sizeof(bulk) + 4096], got[sizeof(bulk)];
	size_t have = 0;

	assert_true(len <= sizeof(got));
	assert_int_equal(SSL_write(p->peer, buf, (int)len), (int)len);
	assert_int_equal(recv_chunks(p->k, wire, peer_wire(p, wire, sizeof(wire)), chunk, got, &have,
				     sizeof(got)),
			 KTS_WANT_READ);
	assert_int_equal(have, len);
	assert_memory_equal(got, buf, len);
}

/* Data both ways and close_notify both ways, every version and cipher;
 * between exchanges the connection holds no buffers, only its keys. */
static void test_release_each_suite(void **state)
{
	static unsigned char wire[sizeof(bulk) + 4096], got[sizeof(bulk)];
	(void)state;
	for (int version = 12; version <= 13; version++) {
		for (int s = 0; s < 3; s++) {
			struct released r;
			size_t have = 0;
			char b;

			released_open(&r, version, s, 1);
			assert_released(r.p.k);
			peer_sends(&r.p, bulk, sizeof(bulk), sizeof(bulk));
			write_and_check(&r.p, (const unsigned char *)"small", 5);
			write_and_check(&r.p, bulk, sizeof(bulk));
			assert_int_equal(r.p.k->inq.cap, 0);
			assert_int_equal(r.p.k->outq.cap, 0);
			assert_non_null(r.p.k->srx->ctx);
			assert_non_null(r.p.k->soft->ctx);
			/* The peer's close_notify ends the input; ours reaches it. */
			assert_int_equal(SSL_shutdown(r.p.peer), 0);
			have = 0;
			assert_int_equal(recv_chunks(r.p.k, wire, peer_wire(&r.p, wire, sizeof(wire)),
						     sizeof(wire), got, &have, sizeof(got)),
					 0);
			assert_int_equal(kts_read(r.p.k, got, sizeof(got)), 0);
			assert_int_equal(kts_close(r.p.k), KTS_OK);
			move_out(&r.p);
			assert_int_equal(SSL_read(r.p.peer, &b, 1), 0);
			assert_int_equal(SSL_get_error(r.p.peer, 0), SSL_ERROR_ZERO_RETURN);
			released_close(&r);
		}
	}
}

/* Records cut at every receive size up to past a whole record, and read
 * out of the receive queue in pieces smaller than a record. */
static void test_release_split_and_small_reads(void **state)
{
	static unsigned char wire[sizeof(bulk) + 4096], got[sizeof(bulk) + 64];
	static const size_t chunks[] = {1, 2, 3, 4, 5, 6, 7, 21, 100, 4096, 16383, 16384,
					16405, 16406, 16407, 20000};
	struct released r;
	(void)state;

	released_open(&r, 13, 0, 1);
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		size_t n, have = 0;

		assert_int_equal(SSL_write(r.p.peer, "head", 4), 4);
		assert_int_equal(SSL_write(r.p.peer, bulk, sizeof(bulk)), (int)sizeof(bulk));
		n = peer_wire(&r.p, wire, sizeof(wire));
		assert_int_equal(recv_chunks(r.p.k, wire, n, chunks[i], got, &have, sizeof(got)),
				 KTS_WANT_READ);
		assert_int_equal(have, 4 + sizeof(bulk));
		assert_memory_equal(got, "head", 4);
		assert_memory_equal(got + 4, bulk, sizeof(bulk));
	}
	/* Fed whole, read 1000 bytes at a time: records opened in the queue. */
	for (size_t piece = 1; piece <= 1000; piece += 999) {
		size_t have = 0;
		ssize_t m;

		assert_int_equal(SSL_write(r.p.peer, bulk, sizeof(bulk)), (int)sizeof(bulk));
		assert_true(kts_feed(r.p.k, wire, peer_wire(&r.p, wire, sizeof(wire))) > 0);
		while ((m = kts_read(r.p.k, got + have, piece)) > 0) {
			have += (size_t)m;
			assert_true(have <= sizeof(bulk));
			if (have < sizeof(bulk) && have % 16384 != 0)
				assert_true(kts_pending(r.p.k) > 0);
		}
		assert_int_equal(m, KTS_WANT_READ);
		assert_int_equal(have, sizeof(bulk));
		assert_memory_equal(got, bulk, sizeof(bulk));
	}
	released_close(&r);
}

/* A request sent with the client's Finished, split at every byte, and the
 * records after it: the first comes from what OpenSSL decrypted during the
 * handshake, the rest from kts's own RX under the right record numbers. */
static void test_release_after_early_data(void **state)
{
	static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	unsigned char wire[8192], more[1024], got[256];
	(void)state;
	for (int version = 12; version <= 13; version++) {
		struct released base;
		size_t n;

		released_open(&base, version, 0, 1); /* for its config and context */
		pair_close(&base.p);
		for (size_t k = 0;; k++) {
			struct pair p;
			size_t have;

			pair_open_fd(&p, base.cfg, base.ctx, null_fd);
			assert_int_equal(SSL_write(p.peer, req, sizeof(req) - 1), (int)sizeof(req) - 1);
			n = (size_t)flight(&p, wire, sizeof(wire));
			if (k >= n) {
				pair_close(&p);
				break;
			}
			have = deliver(&p, wire, n, k, (char *)got, sizeof(got));
			assert_int_equal(have, sizeof(req) - 1);
			assert_memory_equal(got, req, have);
			assert_int_equal(kts_shrink(p.k), 1);
			assert_released(p.k);
			assert_int_equal(SSL_write(p.peer, "next", 4), 4);
			have = 0;
			assert_int_equal(recv_chunks(p.k, more, peer_wire(&p, more, sizeof(more)),
						     sizeof(more), got, &have, sizeof(got)),
					 KTS_WANT_READ);
			assert_int_equal(have, 4);
			assert_memory_equal(got, "next", 4);
			write_and_check(&p, (const unsigned char *)"answer", 6);
			pair_close(&p);
		}
		SSL_CTX_free(base.ctx);
		kts_config_free(base.cfg);
	}
}

/* The peer's KeyUpdate, asked to answer or not: kts follows on RX, answers
 * ahead of its next data, and both sides go on under the next keys. */
static void test_release_key_update(void **state)
{
	(void)state;
	for (int s = 0; s < 3; s++) {
		struct released r;

		released_open(&r, 13, s, 1);
		for (int round = 0; round < 4; round++) {
			int requested = round % 2 == 0;
			uint64_t tx_seq;

			write_and_check(&r.p, bulk, 100);
			tx_seq = r.p.k->soft->seq;
			assert_true(SSL_key_update(r.p.peer, requested ? SSL_KEY_UPDATE_REQUESTED
								      : SSL_KEY_UPDATE_NOT_REQUESTED));
			peer_sends(&r.p, bulk, sizeof(bulk), 777);
			assert_int_equal(kts_out_pending(r.p.k) > 0, requested);
			assert_true(requested ? r.p.k->soft->seq == 0 : r.p.k->soft->seq == tx_seq);
			write_and_check(&r.p, bulk, sizeof(bulk)); /* the peer reads the answer first */
		}
		released_close(&r);
	}
}

/* TLS 1.2 renegotiation: refused with a no_renegotiation warning, under
 * the right keys (the OpenSSL client then gives up, as it may), and kts's
 * connection carries on. */
static void test_release_renegotiation(void **state)
{
	unsigned char wire[8192], got[16];
	struct released r;
	size_t have = 0;
	char b;
	(void)state;

	released_open(&r, 12, 0, 1);
	assert_int_equal(SSL_renegotiate(r.p.peer), 1);
	assert_true(SSL_do_handshake(r.p.peer) <= 0);
	assert_int_equal(recv_chunks(r.p.k, wire, peer_wire(&r.p, wire, sizeof(wire)), sizeof(wire),
				     got, &have, sizeof(got)),
			 KTS_WANT_READ);
	assert_true(kts_out_pending(r.p.k) > 0);
	move_out(&r.p);
	ERR_clear_error();
	assert_true(SSL_read(r.p.peer, &b, 1) <= 0);
	assert_int_equal(ERR_GET_REASON(ERR_peek_error()), SSL_R_NO_RENEGOTIATION);
	assert_true(kts_write(r.p.k, "on", 2) == 2);
	released_close(&r);
}

/* Received records kts must refuse: each fails the connection with the
 * alert the kernel's RX would cause, and the peer reads that alert. */
static void test_release_bad_records(void **state)
{
	static const struct {
		int at;              /* byte to change: -1 the last, 1 the version, 3 the length */
		unsigned char value; /* XORed in, or the length's high byte */
		int reason;          /* what the OpenSSL peer reports */
		const char *message; /* in kts_error */
	} cases[] = {
		{-1, 0x01, SSL_R_SSLV3_ALERT_BAD_RECORD_MAC, "bad_record_mac"},
		{1, 0x01, SSL_R_TLSV1_ALERT_DECODE_ERROR, "malformed record header"},
		{3, 0x48, SSL_R_TLSV1_ALERT_RECORD_OVERFLOW, "record too large"},
	};
	(void)state;
	for (int version = 12; version <= 13; version++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			unsigned char wire[4096], got[16];
			struct released r;
			struct kts_msg m;
			size_t n, have = 0;
			char b;

			released_open(&r, version, 0, 1);
			assert_int_equal(SSL_write(r.p.peer, "data", 4), 4);
			n = peer_wire(&r.p, wire, sizeof(wire));
			if (cases[i].at == 3)
				wire[3] = cases[i].value;
			else
				wire[cases[i].at < 0 ? n - 1 : (size_t)cases[i].at] ^= cases[i].value;
			assert_int_equal(recv_chunks(r.p.k, wire, n, n, got, &have, sizeof(got)),
					 KTS_ERR_TLS);
			assert_int_equal(have, 0);
			assert_non_null(strstr(kts_error(r.p.k), cases[i].message));
			/* The failed connection still hands out its alert. */
			assert_int_equal(kts_out_msg(r.p.k, &m), 7 + (version == 12 ? 8 + 16 : 1 + 16));
			BIO_write(r.p.in, m.iov.iov_base, (int)m.iov.iov_len);
			assert_int_equal(kts_out_done(r.p.k, (ssize_t)m.iov.iov_len), KTS_ERR_TLS);
			assert_int_equal(kts_out_pending(r.p.k), 0);
			ERR_clear_error();
			assert_true(SSL_read(r.p.peer, &b, 1) <= 0);
			assert_int_equal(ERR_GET_REASON(ERR_peek_error()), cases[i].reason);
			assert_int_equal(kts_read(r.p.k, got, sizeof(got)), KTS_ERR_TLS); /* stays failed */
			assert_null(r.p.k->srx->ctx); /* keys wiped */
			released_close(&r);
		}
	}
}

/* OpenSSL stays without the option, for TLS 1.3 without its secrets, and
 * a released connection refuses what needs it. */
static void test_release_conditions(void **state)
{
	struct released r;
	(void)state;

	released_open(&r, 13, 0, 0);
	assert_non_null(kts_ssl(r.p.k));
	assert_null(r.p.k->srx);
	released_close(&r);

	r.cfg = test_kts_config(13, &test_suites[0], 1);
	r.ctx = test_ssl_ctx(13, &test_suites[0], 0);
	assert_int_equal(kts_config_set_release_openssl(r.cfg, 1), KTS_OK);
	pair_open_fd(&r.p, r.cfg, r.ctx, null_fd); /* no key log: no TLS 1.3 secrets */
	pair_handoff(&r.p);
	assert_int_equal(kts_shrink(r.p.k), 0);
	assert_non_null(kts_ssl(r.p.k));
	assert_null(r.p.k->srx);
	write_and_check(&r.p, bulk, sizeof(bulk));
	released_close(&r);

	released_open(&r, 13, 0, 1);
	assert_released(r.p.k);
	assert_int_equal(kts_issue_ticket(r.p.k), KTS_ERR_STATE);
	assert_string_equal(kts_version(r.p.k), "TLSv1.3");
	assert_non_null(kts_cipher(r.p.k));
	released_close(&r);
}

/* Until kts_shrink, OpenSSL reads and writes (and answers a KeyUpdate);
 * kts follows its record numbers and keys, and takes over exactly there.
 * It waits while a record is half-received or plaintext is unread. */
static void test_shrink_follows_openssl(void **state)
{
	static unsigned char wire[sizeof(bulk) + 4096], got[sizeof(bulk)];
	(void)state;
	for (int version = 12; version <= 13; version++) {
		for (int bulk_first = 0; bulk_first <= 1; bulk_first++) {
			struct released r;
			size_t n;
			ssize_t m;

			released_open(&r, version, 1, 2);
			assert_non_null(kts_ssl(r.p.k));
			/* Through OpenSSL: records both ways, a bulk write sealed by kts. */
			peer_sends(&r.p, bulk, sizeof(bulk), 1000);
			write_and_check(&r.p, bulk, bulk_first ? sizeof(bulk) : 10);
			if (version == 13) {
				/* OpenSSL follows the peer and answers. */
				for (int i = 0; i < 2; i++) {
					assert_true(SSL_key_update(r.p.peer, SSL_KEY_UPDATE_REQUESTED));
					peer_sends(&r.p, "ku", 2, 100);
					write_and_check(&r.p, (const unsigned char *)"ok", 2);
				}
			}
			/* Half a record received: not yet. */
			assert_int_equal(SSL_write(r.p.peer, "split", 5), 5);
			n = peer_wire(&r.p, wire, sizeof(wire));
			assert_true(kts_feed(r.p.k, wire, 10) == 10);
			assert_int_equal(kts_read(r.p.k, got, sizeof(got)), KTS_WANT_READ);
			assert_int_equal(kts_shrink(r.p.k), 0);
			assert_true(kts_feed(r.p.k, wire + 10, n - 10) > 0);
			/* Plaintext unread: not yet either. */
			assert_int_equal(kts_read(r.p.k, got, 2), 2);
			assert_int_equal(kts_shrink(r.p.k), 0);
			assert_int_equal(kts_read(r.p.k, got + 2, sizeof(got) - 2), 3);
			assert_memory_equal(got, "split", 5);
			assert_int_equal(kts_read(r.p.k, got, sizeof(got)), KTS_WANT_READ);
			/* Quiet: kts takes over, and both ways go on. */
			assert_int_equal(kts_shrink(r.p.k), 1);
			assert_released(r.p.k);
			assert_int_equal(kts_shrink(r.p.k), 0);
			peer_sends(&r.p, bulk, sizeof(bulk), 4321);
			write_and_check(&r.p, (const unsigned char *)"small", 5);
			write_and_check(&r.p, bulk, sizeof(bulk));
			m = kts_close(r.p.k);
			assert_int_equal(m, KTS_OK);
			released_close(&r);
		}
	}
}

/* Quiet right after OpenSSL read a KeyUpdate that asks for one back: its
 * answer goes out first, or holds the takeover back until it has. */
static void test_shrink_after_key_update(void **state)
{
	struct released r;
	int rc;
	(void)state;

	released_open(&r, 13, 2, 2);
	assert_true(SSL_key_update(r.p.peer, SSL_KEY_UPDATE_REQUESTED));
	peer_sends(&r.p, "ku", 2, 100);
	rc = kts_shrink(r.p.k);
	assert_true(rc == 0 || rc == 1);
	write_and_check(&r.p, (const unsigned char *)"ok", 2);
	assert_int_equal(kts_shrink(r.p.k), rc == 1 ? 0 : 1);
	assert_released(r.p.k);
	peer_sends(&r.p, bulk, sizeof(bulk), 9999);
	write_and_check(&r.p, bulk, sizeof(bulk));
	released_close(&r);
}

/* With the key log on, a TLS 1.2 handshake goes on without it (ctx12):
 * kts takes its keys from the session, and it still hands off. */
static void test_tls12_skips_key_log(void **state)
{
	(void)state;
	for (int version = 12; version <= 13; version++) {
		struct released r;

		released_open(&r, version, 0, 2);
		assert_true(r.cfg->keylog);
		assert_ptr_equal(SSL_get_SSL_CTX(kts_ssl(r.p.k)),
				 version == 12 ? r.cfg->ctx12 : r.cfg->ctx);
		write_and_check(&r.p, bulk, sizeof(bulk));
		assert_int_equal(kts_shrink(r.p.k), 1);
		write_and_check(&r.p, bulk, sizeof(bulk));
		released_close(&r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_release_each_suite),
		cmocka_unit_test(test_release_split_and_small_reads),
		cmocka_unit_test(test_release_after_early_data),
		cmocka_unit_test(test_release_key_update),
		cmocka_unit_test(test_release_renegotiation),
		cmocka_unit_test(test_release_bad_records),
		cmocka_unit_test(test_release_conditions),
		cmocka_unit_test(test_shrink_follows_openssl),
		cmocka_unit_test(test_shrink_after_key_update),
		cmocka_unit_test(test_tls12_skips_key_log),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
