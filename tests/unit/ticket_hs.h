/* ticket_hs.h - handshakes over BIO pairs between a kts server config and a
 * plain OpenSSL client, for the ticket unit tests (test_ticketkeys.c,
 * test_ticket_names.c): tickets counted, the client's newest session kept.
 * Include after cmocka.h, internal.h and ticketkeys.h. */
#ifndef KTS_TEST_TICKET_HS_H
#define KTS_TEST_TICKET_HS_H

#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct hs {
	struct kts *srv;    /* kts server connection, driven through its SSL */
	SSL *cli;           /* plain OpenSSL client */
	SSL_SESSION *sess;  /* the client's newest session after the handshake */
	int nst;            /* NewSessionTicket messages the client received */
};

static void count_nst(int write_p, int version, int type, const void *buf, size_t len, SSL *ssl,
		      void *arg)
{
	(void)version;
	(void)ssl;
	if (!write_p && type == SSL3_RT_HANDSHAKE && len > 0 &&
	    ((const unsigned char *)buf)[0] == SSL3_MT_NEWSESSION_TICKET)
		++*(int *)arg;
}

static int hs_step(SSL *ssl)
{
	int rc = SSL_do_handshake(ssl), err;

	if (rc == 1)
		return 1;
	err = SSL_get_error(ssl, rc);
	if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
		ERR_print_errors_fp(stderr);
		fail_msg("%s handshake failed (SSL error %d)", SSL_is_server(ssl) ? "server" : "client",
			 err);
	}
	return 0;
}

/* Full or resumed handshake (offer != NULL), then let the client read the
 * TLS 1.3 tickets that follow it. */
static void handshake(struct hs *h, struct kts_config *cfg, SSL_CTX *cctx, SSL_SESSION *offer,
		      const char *appdata)
{
	int cdone = 0, sdone = 0;
	BIO *cb, *sb;
	char byte;

	memset(h, 0, sizeof(*h));
	h->srv = kts_server_new(cfg);
	h->cli = SSL_new(cctx);
	assert_non_null(h->srv);
	assert_non_null(h->cli);
	if (appdata)
		assert_int_equal(kts_set_ticket_appdata(h->srv, appdata, strlen(appdata)), KTS_OK);
	if (offer)
		assert_int_equal(SSL_set_session(h->cli, offer), 1);
	SSL_set_msg_callback(h->cli, count_nst);
	SSL_set_msg_callback_arg(h->cli, &h->nst);
	assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(h->cli, cb, cb);
	SSL_set_bio(h->srv->ssl, sb, sb);
	SSL_set_connect_state(h->cli);
	SSL_set_accept_state(h->srv->ssl);
	for (int i = 0; i < 20 && !(cdone && sdone); i++) {
		cdone = cdone || hs_step(h->cli);
		sdone = sdone || hs_step(h->srv->ssl);
	}
	assert_true(cdone && sdone);
	assert_int_equal(SSL_read(h->cli, &byte, 1), -1);
	assert_int_equal(SSL_get_error(h->cli, -1), SSL_ERROR_WANT_READ);
	h->sess = SSL_get1_session(h->cli);
	assert_non_null(h->sess);
}

static int resumed(const struct hs *h)
{
	assert_int_equal(SSL_session_reused(h->cli), SSL_session_reused(h->srv->ssl));
	return SSL_session_reused(h->cli);
}

static void hs_free(struct hs *h)
{
	SSL_SESSION_free(h->sess);
	SSL_free(h->cli);
	kts_free(h->srv);
}

/* keyrev of the key that sealed the session's ticket; -1 without a ticket. */
static long ticket_keyrev(SSL_SESSION *s)
{
	const unsigned char *t;
	size_t len;

	if (!SSL_SESSION_has_ticket(s))
		return -1;
	SSL_SESSION_get0_ticket(s, &t, &len);
	assert_true(len > KTS_TICKET_NAME_LEN + 16 + 32); /* name, IV, at least a block, HMAC */
	return (long)be32(t);
}

#endif
