/*
 * sessstore.c - the external session store behind the shared cache
 * (kts_config_set_session_store): new sessions are handed to the store's
 * put, and a ClientHello naming a session the local cache lacks pauses the
 * handshake (OpenSSL's ClientHello callback returns RETRY) until the caller
 * supplies what its store found. The supplied session goes into the local
 * cache, where OpenSSL's own lookup (sesscache.c get_cb) then finds it, so
 * every check OpenSSL makes of a cached session applies unchanged.
 */
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/tls1.h>

#include "internal.h"
#include "sesscache.h"

/* A ClientHello naming a session: SUCCESS, or RETRY to ask the store. A
 * ClientHello that could end in TLS 1.3 carries its session ID only as the
 * compatibility field: no store is asked. */
int kts_store_hello(SSL *ssl, struct kts *c, struct kts_config *cfg)
{
	unsigned char der[KTS_SESS_CACHE_DER_MAX];
	const unsigned char *id, *ticket;
	size_t id_len, ticket_len;

	if (!cfg->store_set || !cfg->cache || !cfg->lifetime || c->store_wait == 2)
		return SSL_CLIENT_HELLO_SUCCESS;
	id_len = SSL_client_hello_get0_session_id(ssl, &id);
	/* No ID, a ticket (it resumes by itself), or TLS 1.3 ahead: nothing to ask. */
	if (id_len == 0 || id_len > sizeof(c->store_id) ||
	    (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_session_ticket, &ticket, &ticket_len) &&
	     ticket_len > 0) ||
	    kts_hello_may_be_tls13(ssl))
		return SSL_CLIENT_HELLO_SUCCESS;
	if (kts_sess_cache_get(cfg->cache, id, id_len, cfg->lifetime, der) > 0) {
		OPENSSL_cleanse(der, sizeof(der));
		return SSL_CLIENT_HELLO_SUCCESS; /* the local cache has it */
	}
	memcpy(c->store_id, id, id_len);
	c->store_id_len = (unsigned char)id_len;
	c->store_wait = 1;
	return SSL_CLIENT_HELLO_RETRY;
}

int kts_config_set_session_store(struct kts_config *cfg, const struct kts_session_store *store)
{
	if (!cfg || !store)
		return KTS_ERR_ARG;
	if (!cfg->cache)
		return kts_config_fail(cfg, KTS_ERR_STATE, "session store: set a session cache first "
							    "(kts_config_set_session_cache)");
	cfg->store = *store; /* handshake.c's ClientHello callback asks it */
	cfg->store_set = 1;
	return KTS_OK;
}

ssize_t kts_session_wanted(const struct kts *c, unsigned char *id, size_t len)
{
	if (!c || c->store_wait != 1 || len < c->store_id_len)
		return KTS_ERR_STATE;
	memcpy(id, c->store_id, c->store_id_len);
	return c->store_id_len;
}

int kts_session_supply(struct kts *c, const unsigned char *der, size_t len)
{
	if (!c || c->store_wait != 1)
		return c ? kts_fail(c, KTS_ERR_STATE, "session store: no lookup pending")
			 : KTS_ERR_ARG;
	/* The local cache checks size and id; get_cb parses it (garbage: a miss). */
	if (der && len > 0)
		kts_sess_cache_put(c->cfg->cache, c->store_id, c->store_id_len, der, len);
	c->store_wait = 2;
	return KTS_OK;
}

void kts_store_put(struct kts_config *cfg, const unsigned char *id, size_t id_len,
		   const unsigned char *der, size_t len)
{
	if (cfg->store.put)
		cfg->store.put(cfg->store.arg, id, id_len, der, len, cfg->lifetime);
}

void kts_store_del(struct kts_config *cfg, const unsigned char *id, size_t id_len)
{
	if (cfg->store.del)
		cfg->store.del(cfg->store.arg, id, id_len);
}
