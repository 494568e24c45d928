/*
 * handshake.c - drive OpenSSL's handshake and collect what the handoff needs:
 * the TLS 1.3 traffic secrets (from the key log callback) and the number of
 * NewSessionTicket records OpenSSL wrote under the server's traffic key;
 * after it, what OpenSSL reads until kts takes RX over (softrx.c). The
 * ClientHello callback sends a server's TLS 1.2 handshakes past the key log.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/tls1.h>
#include <openssl/x509v3.h>

#include "internal.h"
#include "session_file.h"

/* Key log lines are "LABEL <client_random hex> <secret hex>". Only the first
 * application traffic secrets matter; everything else is ignored. */
static void keylog(const SSL *ssl, const char *line)
{
	struct kts *c = SSL_get_app_data(ssl);
	struct kts_secrets *sec;
	const char *hex;
	size_t n = 0;
	int dir;

	if (!c)
		return;
	if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
		dir = 0;
	else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
		dir = 1;
	else
		return;
	hex = strchr(line + 24, ' ');
	/* Out of memory: no secrets, so the handoff leaves both directions in userspace. */
	if (!hex || !(sec = kts_secrets_get(c)))
		return;
	for (hex++; hex[0] && hex[1] && n < sizeof(sec->hs[dir]); hex += 2, n++) {
		int hi = OPENSSL_hexchar2int((unsigned char)hex[0]);
		int lo = OPENSSL_hexchar2int((unsigned char)hex[1]);
		if (hi < 0 || lo < 0)
			break;
		sec->hs[dir][n] = (unsigned char)(hi << 4 | lo);
	}
	sec->hs_len[dir] = n;
}

/* Count TLS 1.3 NewSessionTicket messages OpenSSL writes: each goes in its own
 * record under the server traffic key, so each advances the TX sequence. */
static void msg_seen(int write_p, int version, int content_type, const void *buf, size_t len,
		     SSL *ssl, void *arg)
{
	struct kts *c = arg;
	(void)ssl;

	/* Past the handshake, before the handoff (caller_io.c): a ticket read is
	 * fine; anything else moves OpenSSL's keys or record numbers. */
	if (c->draining && (write_p || (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
					((const unsigned char *)buf)[0] != SSL3_MT_NEWSESSION_TICKET)))
		c->drain_moved_keys = 1;
	if (write_p && version == TLS1_3_VERSION && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
	    ((const unsigned char *)buf)[0] == SSL3_MT_NEWSESSION_TICKET)
		c->tickets_sent++;
	/* What OpenSSL reads until kts takes RX over (softrx.c). */
	if (!write_p && c->srx && !c->soft_rx) {
		if (content_type == SSL3_RT_HEADER)
			kts_softrx_read_counted(c);
		else if (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
			 ((const unsigned char *)buf)[0] == SSL3_MT_KEY_UPDATE)
			kts_softrx_peer_moved(c);
	}
	/* OpenSSL's TX key moved on: so do the records kts seals. */
	if (write_p && c->soft_tx && version == TLS1_3_VERSION && content_type == SSL3_RT_HANDSHAKE &&
	    len > 0 && ((const unsigned char *)buf)[0] == SSL3_MT_KEY_UPDATE)
		kts_softtx_key_update(c);
}

int kts_hello_may_be_tls13(SSL *ssl)
{
	const unsigned char *v;
	size_t len;

	if (SSL_get_max_proto_version(ssl) != 0 && SSL_get_max_proto_version(ssl) < TLS1_3_VERSION)
		return 0;
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_supported_versions, &v, &len) || len < 1)
		return 0;
	for (size_t i = 1; i + 1 < len && i < (size_t)v[0] + 1; i += 2)
		if (v[i] == 0x03 && v[i + 1] == 0x04)
			return 1;
	return 0;
}

/* A server's ClientHello: the session store may pause the handshake; a
 * handshake that will be TLS 1.2 goes on without the key log (ctx12). */
static int hello(SSL *ssl, int *alert, void *arg)
{
	struct kts *c = SSL_get_app_data(ssl);
	struct kts_config *cfg = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	int rc;

	(void)alert;
	(void)arg;
	if (!c || !cfg)
		return SSL_CLIENT_HELLO_SUCCESS;
	rc = kts_store_hello(ssl, c, cfg);
	if (rc == SSL_CLIENT_HELLO_SUCCESS && cfg->keylog && SSL_get_SSL_CTX(ssl) == cfg->ctx &&
	    !kts_hello_may_be_tls13(ssl))
		SSL_set_SSL_CTX(ssl, cfg->ctx12); /* NULL: it keeps ctx, and only costs the log */
	return rc;
}

void kts_handshake_callbacks(struct kts_config *cfg, int want_secrets)
{
	cfg->keylog = want_secrets;
	SSL_CTX_set_keylog_callback(cfg->ctx, want_secrets ? keylog : NULL);
	SSL_CTX_set_client_hello_cb(cfg->ctx, hello, NULL);
}

void kts_conn_callbacks(struct kts *c)
{
	SSL_set_app_data(c->ssl, c);
	SSL_set_msg_callback(c->ssl, msg_seen);
	SSL_set_msg_callback_arg(c->ssl, c);
}

/* Client: SNI and the name to verify, from the connection or the config. */
static int client_setup(struct kts *c, const char *name)
{
	unsigned char ip[16];
	int is_ip = inet_pton(AF_INET, name ? name : "", ip) == 1 ||
		    inet_pton(AF_INET6, name ? name : "", ip) == 1;

	if (!(c->verify & KTS_VERIFY_PEER)) {
		SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
	} else {
		SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
		if (c->verify & KTS_VERIFY_NAME) {
			X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
			if (!name)
				return kts_fail_fatal(c, KTS_ERR_ARG,
						      "handshake: verifying the server name needs one "
						      "(kts_set_server_name or kts_config_set_server_name)");
			if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1
				  : X509_VERIFY_PARAM_set1_host(vp, name, 0) != 1)
				return kts_fail_fatal(c, KTS_ERR_ARG, "handshake: bad server name '%s'",
						      name);
		}
	}
	/* RFC 6066: SNI carries host names only, never addresses. */
	if (name && !is_ip && SSL_set_tlsext_host_name(c->ssl, name) != 1)
		return kts_fail_fatal(c, KTS_ERR_ARG, "handshake: bad server name '%s'", name);
	return KTS_OK;
}

int kts_handshake(struct kts *c)
{
	const unsigned char *alpn;
	unsigned int alpn_len;
	int ret;

	switch (c->state) {
	case KTS_STATE_OPEN:
		return KTS_OK;
	case KTS_STATE_FAILED:
		return c->fail_code;
	case KTS_STATE_NEW:
		return kts_fail(c, KTS_ERR_STATE, "handshake: no socket attached (kts_attach)");
	default:
		break;
	}
	if (c->draining)
		goto drain;
	if (!c->is_server && !c->prepared) {
		ret = client_setup(c, c->server_name);
		if (ret == KTS_OK)
			ret = kts_client_session_offer(c);
		if (ret)
			return ret;
		c->prepared = 1;
	}
	kts_err_clear();
	errno = 0;
	ret = c->is_server ? SSL_accept(c->ssl) : SSL_connect(c->ssl);
	if (ret != 1) {
		ret = kts_ssl_result(c, ret, "handshake");
		if (ret == 0) /* close_notify during the handshake */
			return kts_fail_fatal(c, KTS_ERR_TLS, "handshake: peer closed the connection");
		return ret;
	}
drain:
	if (c->caller_io && (ret = kts_cio_handshake_done(c)) != KTS_OK)
		return ret;
	c->state = KTS_STATE_OPEN;
	c->version_name = SSL_get_version(c->ssl);
	c->cipher_name = SSL_get_cipher_name(c->ssl);
	c->resumed = SSL_session_reused(c->ssl) == 1;
	/* OpenSSL reports no new session when a TLS 1.2 resumption renewed the
	 * ticket: save the session in use, which holds the renewed one. */
	if (!c->is_server && c->resumed && SSL_version(c->ssl) <= TLS1_2_VERSION)
		kts_client_session_new(c->ssl, SSL_get_session(c->ssl));
	SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
	if (alpn_len && !(c->alpn = OPENSSL_strndup((const char *)alpn, alpn_len)))
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "handshake: out of memory");
	return kts_handoff(c);
}
