/*
 * server_session.c - server-side resumption: stateless session tickets sealed
 * with the key ring (ticketkeys.c), application data bound into tickets, the
 * session ID context and the lifetime. TLS 1.2 clients get their ticket inside
 * the handshake; TLS 1.3 clients get num_tickets tickets right after it.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "internal.h"
#include "ticketkeys.h"

#define DEFAULT_TICKETS 2
#define MAX_TICKETS 16
#define TICKET_IV_LEN 16 /* AES-CBC block; OpenSSL's buffer is EVP_MAX_IV_LENGTH */

/* What c->appdata points to: one block, so kts_free releases it with one
 * call (c->appdata_len is the block size). out: bytes for tickets issued on
 * this connection. in: the data of the ticket this connection resumed from,
 * saved just before a renewed ticket overwrites it in the session. */
struct ticket_data {
	int out_set, in_set;
	size_t out_len, in_len;
	unsigned char out[KTS_TICKET_APPDATA_MAX];
	unsigned char in[KTS_TICKET_APPDATA_MAX];
};

static struct ticket_data *ticket_data(const struct kts *c)
{
	return (struct ticket_data *)(void *)c->appdata;
}

/* OpenSSL's ticket key callback. Encrypt: 1 = sealed, 0 = no key, so no
 * ticket. Decrypt: 1 = newest key, 2 = older key (use it, send a renewed
 * ticket), 0 = unknown or expired name (full handshake). < 0 only for internal
 * errors: it fails the handshake. */
static int ticket_key_cb(SSL *ssl, unsigned char name[KTS_TICKET_NAME_LEN],
			 unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cctx,
			 EVP_MAC_CTX *hctx, int enc)
{
	struct kts_config *cfg = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	unsigned char key[KTS_TICKET_KEY_LEN];
	char digest[] = "SHA256";
	const EVP_CIPHER *aes;
	OSSL_PARAM params[3];
	unsigned int bits = 256;
	size_t half;
	int rc;

	if (!cfg || !cfg->ring || !cfg->lifetime)
		return 0;
	rc = enc ? kts_ticket_ring_encrypt_key(cfg->ring, name, key, &bits)
		 : kts_ticket_ring_decrypt_key(cfg->ring, name, key, &bits);
	if (rc <= 0)
		return rc;
	/* AES key then HMAC key, 32 bytes each, or 16 (keys shared with servers
	 * that use AES-128 tickets). */
	half = bits == 128 ? 16 : 32;
	aes = cfg->ticket_cbc[bits == 128 ? 0 : 1];
	if (!aes)
		aes = bits == 128 ? EVP_aes_128_cbc() : EVP_aes_256_cbc();
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key + half, half);
	params[2] = OSSL_PARAM_construct_end();
	if (enc && RAND_bytes(iv, TICKET_IV_LEN) != 1)
		rc = -1;
	else if ((enc ? EVP_EncryptInit_ex(cctx, aes, NULL, key, iv)
		      : EVP_DecryptInit_ex(cctx, aes, NULL, key, iv)) != 1 ||
		 EVP_MAC_CTX_set_params(hctx, params) != 1)
		rc = -1;
	OPENSSL_cleanse(key, sizeof(key));
	return rc;
}

/* A ticket is about to be sealed: bind the connection's data into its session.
 * Without kts_set_ticket_appdata the session keeps what it has (nothing, or,
 * after a resumption, the resumed ticket's data: renewals carry it on). */
static int ticket_gen_cb(SSL *ssl, void *arg)
{
	struct kts_config *cfg = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct kts *c = SSL_get_app_data(ssl);
	struct ticket_data *td = c ? ticket_data(c) : NULL;
	SSL_SESSION *sess = SSL_get_session(ssl);
	int64_t left = cfg && cfg->ring ? kts_ticket_ring_seal_window(cfg->ring) : -1;
	void *old;
	size_t old_len;

	(void)arg;
	/* The lifetime the ticket advertises (and its session keeps) ends when
	 * its key stops opening tickets, if that comes first. */
	if (sess && left >= 0 && left < (int64_t)SSL_SESSION_get_timeout(sess))
		SSL_SESSION_set_timeout(sess, (long)left);
	if (!td || !td->out_set)
		return 1;
	if (!sess)
		return 0;
	if (SSL_session_reused(ssl) && !td->in_set) {
		SSL_SESSION_get0_ticket_appdata(sess, &old, &old_len);
		if (old_len > sizeof(td->in)) /* dec_cb refuses such tickets */
			return 0;
		if (old_len)
			memcpy(td->in, old, old_len);
		td->in_len = old_len;
		td->in_set = 1;
	}
	return SSL_SESSION_set1_ticket_appdata(sess, td->out, td->out_len);
}

/* A ticket was opened (or not). The status already says whether its key was
 * the newest; unusable tickets mean a full handshake and a new ticket. */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *ssl, SSL_SESSION *ss, const unsigned char *name,
				       size_t name_len, SSL_TICKET_STATUS status, void *arg)
{
	void *data;
	size_t len;

	(void)name;
	(void)name_len;
	(void)arg;
	if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
		return SSL_TICKET_RETURN_IGNORE_RENEW; /* EMPTY, NO_DECRYPT */
	/* Another server sharing our keys may bind more than kts can hand back. */
	SSL_SESSION_get0_ticket_appdata(ss, &data, &len);
	if (len > KTS_TICKET_APPDATA_MAX)
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	/* TLS 1.3: a fresh ticket after every resumption, as OpenSSL does without
	 * a key callback (RFC 8446 C.4: clients should use each ticket once). */
	if (status == SSL_TICKET_SUCCESS_RENEW || SSL_version(ssl) == TLS1_3_VERSION)
		return SSL_TICKET_RETURN_USE_RENEW;
	return SSL_TICKET_RETURN_USE;
}

int kts_server_resumption_init(struct kts_config *cfg)
{
	unsigned char sid_ctx[SSL_MAX_SID_CTX_LENGTH];

	cfg->ring = kts_ticket_ring_new();
	if (!cfg->ring)
		return KTS_ERR_NOMEM;
	/* NULL (no provider has it now): each ticket fetches it again. */
	cfg->ticket_cbc[0] = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
	cfg->ticket_cbc[1] = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	/* Random by default, so that two unrelated configs never accept each
	 * other's sessions. */
	if (RAND_bytes(sid_ctx, sizeof(sid_ctx)) != 1 ||
	    SSL_CTX_set_session_id_context(cfg->ctx, sid_ctx, sizeof(sid_ctx)) != 1 ||
	    SSL_CTX_set_session_id_context(cfg->ctx12, sid_ctx, sizeof(sid_ctx)) != 1)
		return KTS_ERR_NOMEM;
	if (SSL_CTX_set_tlsext_ticket_key_evp_cb(cfg->ctx, ticket_key_cb) != 1 ||
	    SSL_CTX_set_session_ticket_cb(cfg->ctx, ticket_gen_cb, ticket_dec_cb, NULL) != 1)
		return KTS_ERR_NOMEM;
	/* max_early_data stays 0 (config.c): 0-RTT data can be replayed, and
	 * stopping that needs an anti-replay store shared by every process and
	 * server that holds the ticket keys. kts has none. */
	return KTS_OK;
}

void kts_server_resumption_free(struct kts_config *cfg)
{
	kts_ticket_ring_free(cfg->ring); /* wipes the keys */
	cfg->ring = NULL;
	for (int i = 0; i < 2; i++) {
		EVP_CIPHER_free(cfg->ticket_cbc[i]);
		cfg->ticket_cbc[i] = NULL;
	}
}

/* Push lifetime, ticket count and cache mode into the SSL_CTX. Only the
 * server cache bits are touched: the client side owns SSL_SESS_CACHE_CLIENT. */
static void apply_resumption(struct kts_config *cfg)
{
	long mode = SSL_CTX_get_session_cache_mode(cfg->ctx);

	if (!cfg->lifetime) {
		SSL_CTX_set_options(cfg->ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(cfg->ctx, 0);
		mode &= ~SSL_SESS_CACHE_SERVER;
	} else {
		SSL_CTX_clear_options(cfg->ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_timeout(cfg->ctx, (long)cfg->lifetime);
		SSL_CTX_set_num_tickets(cfg->ctx, cfg->num_tickets >= 0 ? (size_t)cfg->num_tickets
									 : DEFAULT_TICKETS);
		/* Session IDs (TLS 1.2) go to the shared cache of sesscache.c, never
		 * to OpenSSL's per-process one; without it, tickets only. */
		if (cfg->cache)
			mode |= SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL;
		else
			mode &= ~SSL_SESS_CACHE_SERVER;
	}
	SSL_CTX_set_session_cache_mode(cfg->ctx, mode);
}

int kts_config_set_session_id(struct kts_config *cfg, const unsigned char *id, size_t len)
{
	if (!id || len == 0 || len > SSL_MAX_SID_CTX_LENGTH)
		return kts_config_fail(cfg, KTS_ERR_ARG, "session id: must be 1..%d bytes, got %zu",
				       SSL_MAX_SID_CTX_LENGTH, len);
	if (SSL_CTX_set_session_id_context(cfg->ctx, id, (unsigned int)len) != 1 ||
	    SSL_CTX_set_session_id_context(cfg->ctx12, id, (unsigned int)len) != 1)
		return kts_config_fail(cfg, KTS_ERR_NOMEM, "session id: OpenSSL refused it");
	return KTS_OK;
}

int kts_config_set_session_lifetime(struct kts_config *cfg, unsigned int seconds)
{
	if (seconds && (seconds < 60 || seconds > KTS_SESSION_LIFETIME_MAX))
		return kts_config_fail(cfg, KTS_ERR_ARG,
				       "session lifetime: %u is neither 0 (off) nor 60..%d seconds",
				       seconds, KTS_SESSION_LIFETIME_MAX);
	cfg->lifetime = seconds;
	kts_ticket_ring_set_lifetime(cfg->ring, seconds);
	apply_resumption(cfg);
	return KTS_OK;
}

int kts_config_set_num_tickets(struct kts_config *cfg, unsigned int n)
{
	if (n > MAX_TICKETS)
		return kts_config_fail(cfg, KTS_ERR_ARG, "num tickets: %u is more than %d", n,
				       MAX_TICKETS);
	cfg->num_tickets = (int)n;
	if (cfg->lifetime)
		apply_resumption(cfg);
	return KTS_OK;
}

int kts_config_add_ticket_key(struct kts_config *cfg, unsigned int keyrev, const unsigned char *key,
			      size_t keylen)
{
	char err[200];
	int rc = kts_ticket_ring_add(cfg->ring, keyrev, key, keylen, err, sizeof(err));

	return rc ? kts_config_fail(cfg, rc, "%s", err) : KTS_OK;
}

int kts_config_set_ticket_keys(struct kts_config *cfg, const struct kts_ticket_key *keys, size_t n)
{
	char err[200];
	int rc;

	if (!cfg)
		return KTS_ERR_ARG;
	rc = kts_ticket_ring_set(cfg->ring, keys, n, err, sizeof(err));
	return rc ? kts_config_fail(cfg, rc, "%s", err) : KTS_OK;
}

int kts_config_refresh_ticket_keys(struct kts_config *cfg)
{
	if (!cfg)
		return KTS_ERR_ARG;
	if (kts_ticket_ring_refresh(cfg->ring) < 0)
		return kts_config_fail(cfg, KTS_ERR_TLS,
				       "ticket keys: could not step the automatic key chain");
	return KTS_OK;
}

int kts_set_ticket_appdata(struct kts *c, const void *data, size_t len)
{
	struct ticket_data *td = ticket_data(c);

	if (!c->is_server)
		return kts_fail(c, KTS_ERR_STATE, "ticket appdata: only for server connections");
	if (len > KTS_TICKET_APPDATA_MAX || (len && !data))
		return kts_fail(c, KTS_ERR_ARG, "ticket appdata: %zu bytes given, at most %d", len,
				KTS_TICKET_APPDATA_MAX);
	if (!td) {
		td = calloc(1, sizeof(*td));
		if (!td)
			return kts_fail(c, KTS_ERR_NOMEM, "ticket appdata: out of memory");
		c->appdata = (unsigned char *)td;
		c->appdata_len = sizeof(*td);
	}
	OPENSSL_cleanse(td->out, sizeof(td->out));
	if (len)
		memcpy(td->out, data, len);
	td->out_len = len;
	td->out_set = 1;
	return KTS_OK;
}

ssize_t kts_ticket_appdata(struct kts *c, void *buf, size_t len)
{
	struct ticket_data *td = ticket_data(c);
	SSL_SESSION *sess;
	void *data = NULL;
	size_t n = 0;

	if (!buf && len)
		return kts_fail(c, KTS_ERR_ARG, "ticket appdata: no buffer");
	/* Without the SSL (released) the session carried no app data. */
	if (!c->is_server || !c->ssl || !SSL_is_init_finished(c->ssl) || !SSL_session_reused(c->ssl))
		return 0;
	if (td && td->in_set) {
		data = td->in;
		n = td->in_len;
	} else if ((sess = SSL_get_session(c->ssl)) != NULL) {
		SSL_SESSION_get0_ticket_appdata(sess, &data, &n);
	}
	if (n && len)
		memcpy(buf, data, n < len ? n : len);
	return (ssize_t)n;
}
