/*
 * sesscache.c - the shared TLS 1.2 session-ID cache (see sesscache.h), and the
 * OpenSSL external-cache callbacks that feed it.
 *
 * Entries are keyed by session ID alone: OpenSSL offers no way to read a
 * connection's session ID context in the lookup callback, and it compares the
 * context stored in the session itself right after the lookup (a mismatch is
 * a miss), so a session never resumes outside its context.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "internal.h"
#include "session_file.h"
#include "sesscache.h"

struct slot {
	int64_t time;     /* insertion, in kts_sess_cache_now() seconds */
	uint64_t seq;     /* insertion order in the bucket: the smallest is evicted */
	uint16_t der_len;
	uint8_t id_len;   /* 0: empty */
	uint8_t id[SSL_MAX_SSL_SESSION_ID_LENGTH];
	uint8_t der[KTS_SESS_CACHE_DER_MAX];
};
_Static_assert(sizeof(struct slot) <= 2048, "a slot is at most 2 KiB");

struct bucket {
	pthread_mutex_t lock; /* process-shared, robust */
	uint64_t seq;         /* last sequence number handed out */
};

/* The start of the mapping. Written once before any fork, then only read; the
 * pointers stay valid in children, which inherit the mapping's address. */
struct kts_sess_cache {
	size_t map_len;
	size_t nbuckets;
	struct bucket *buckets;
	struct slot *slots; /* nbuckets * KTS_SESS_CACHE_WAYS */
};

/* Suspend time counts towards expiry; wall-clock steps do not. */
static int64_t boottime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec;
}

int64_t (*kts_sess_cache_now)(void) = boottime;
void (*kts_sess_cache_locked_hook)(void);

struct kts_sess_cache *kts_sess_cache_new(size_t entries)
{
	size_t nbuckets = (entries + KTS_SESS_CACHE_WAYS - 1) / KTS_SESS_CACHE_WAYS;
	size_t head = sizeof(struct kts_sess_cache) + nbuckets * sizeof(struct bucket);
	size_t slots_off = (head + 63) & ~(size_t)63;
	size_t len = slots_off + nbuckets * KTS_SESS_CACHE_WAYS * sizeof(struct slot);
	pthread_mutexattr_t attr;
	struct kts_sess_cache *c;
	size_t i;
	int err;

	if (entries < KTS_SESS_CACHE_MIN || entries > KTS_SESS_CACHE_MAX) {
		errno = EINVAL;
		return NULL;
	}
	c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (c == MAP_FAILED)
		return NULL;
	/* The slots hold master secrets: keep them out of core dumps. */
	(void)madvise(c, len, MADV_DONTDUMP);
	c->map_len = len;
	c->nbuckets = nbuckets;
	c->buckets = (struct bucket *)(c + 1);
	c->slots = (struct slot *)((unsigned char *)c + slots_off);

	err = pthread_mutexattr_init(&attr);
	if (err)
		goto fail;
	err = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!err)
		err = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	for (i = 0; !err && i < nbuckets; i++)
		err = pthread_mutex_init(&c->buckets[i].lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (!err)
		return c;
fail:
	munmap(c, len);
	errno = err;
	return NULL;
}

void kts_sess_cache_free(struct kts_sess_cache *cache)
{
	/* No wiping here: other processes may still be using the entries. The
	 * kernel frees (and zeroes) the pages when the last mapping goes. */
	if (cache)
		munmap(cache, cache->map_len);
}

size_t kts_sess_cache_slots(const struct kts_sess_cache *cache)
{
	return cache->nbuckets * KTS_SESS_CACHE_WAYS;
}

/* FNV-1a, reduced with its well-mixed high half (its low bits are weak).
 * Stored IDs are random (OpenSSL makes them), so nobody can aim entries at
 * one bucket; lookups with chosen IDs only cost a scan. */
size_t kts_sess_cache_bucket(const struct kts_sess_cache *c, const unsigned char *id,
			     size_t id_len)
{
	uint64_t h = 0xcbf29ce484222325u;

	while (id_len--)
		h = (h ^ *id++) * 0x100000001b3u;
	return (size_t)(((h >> 32) * c->nbuckets) >> 32);
}

static void wipe(struct slot *s, size_t n)
{
	OPENSSL_cleanse(s, n * sizeof(*s));
}

/* Lock id's bucket and return it (its slots in *slots), or NULL. */
static struct bucket *lock_bucket(struct kts_sess_cache *c, const unsigned char *id, size_t id_len,
				  struct slot **slots)
{
	size_t b = kts_sess_cache_bucket(c, id, id_len);
	struct bucket *bk = &c->buckets[b];
	int rc = pthread_mutex_lock(&bk->lock);

	*slots = &c->slots[b * KTS_SESS_CACHE_WAYS];
	if (rc == EOWNERDEAD) {
		/* A process died holding the lock, maybe halfway through writing
		 * a slot. A cache may forget: drop the bucket, carry on. */
		wipe(*slots, KTS_SESS_CACHE_WAYS);
		rc = pthread_mutex_consistent(&bk->lock);
		if (rc) {
			pthread_mutex_unlock(&bk->lock);
			return NULL;
		}
	}
	if (rc)
		return NULL;
	if (kts_sess_cache_locked_hook)
		kts_sess_cache_locked_hook();
	return bk;
}

static struct slot *find(struct slot *s, const unsigned char *id, size_t id_len)
{
	for (size_t i = 0; i < KTS_SESS_CACHE_WAYS; i++)
		if (s[i].id_len == id_len && memcmp(s[i].id, id, id_len) == 0)
			return &s[i];
	return NULL;
}

static int id_ok(const unsigned char *id, size_t id_len)
{
	return id && id_len > 0 && id_len <= SSL_MAX_SSL_SESSION_ID_LENGTH;
}

int kts_sess_cache_put(struct kts_sess_cache *cache, const unsigned char *id, size_t id_len,
		       const unsigned char *der, size_t der_len)
{
	struct slot *s, *victim;
	struct bucket *bk;

	if (!cache || !id_ok(id, id_len) || der_len == 0 || der_len > KTS_SESS_CACHE_DER_MAX)
		return 0;
	bk = lock_bucket(cache, id, id_len, &s);
	if (!bk)
		return 0;
	/* The same ID again, else a free slot, else the oldest entry. */
	victim = find(s, id, id_len);
	for (size_t i = 0; !victim && i < KTS_SESS_CACHE_WAYS; i++)
		if (s[i].id_len == 0)
			victim = &s[i];
	if (!victim) {
		victim = &s[0];
		for (size_t i = 1; i < KTS_SESS_CACHE_WAYS; i++)
			if (s[i].seq < victim->seq)
				victim = &s[i];
	}
	wipe(victim, 1);
	victim->time = kts_sess_cache_now();
	victim->seq = ++bk->seq;
	victim->der_len = (uint16_t)der_len;
	memcpy(victim->der, der, der_len);
	memcpy(victim->id, id, id_len);
	victim->id_len = (uint8_t)id_len;
	pthread_mutex_unlock(&bk->lock);
	return 1;
}

size_t kts_sess_cache_get(struct kts_sess_cache *cache, const unsigned char *id, size_t id_len,
			  unsigned int lifetime, unsigned char *out)
{
	int64_t now = kts_sess_cache_now();
	struct slot *s, *e;
	struct bucket *bk;
	size_t n = 0;

	if (!cache || !id_ok(id, id_len) || lifetime == 0)
		return 0;
	bk = lock_bucket(cache, id, id_len, &s);
	if (!bk)
		return 0;
	e = find(s, id, id_len);
	if (e && now - e->time >= (int64_t)lifetime) {
		wipe(e, 1);
	} else if (e && e->der_len <= KTS_SESS_CACHE_DER_MAX) {
		/* Shared with every worker: trust no length stored there. */
		n = e->der_len;
		memcpy(out, e->der, n);
	}
	pthread_mutex_unlock(&bk->lock);
	return n;
}

void kts_sess_cache_del(struct kts_sess_cache *cache, const unsigned char *id, size_t id_len)
{
	struct slot *s, *e;
	struct bucket *bk;

	if (!cache || !id_ok(id, id_len))
		return;
	bk = lock_bucket(cache, id, id_len, &s);
	if (!bk)
		return;
	e = find(s, id, id_len);
	if (e)
		wipe(e, 1);
	pthread_mutex_unlock(&bk->lock);
}

/* ---- OpenSSL external cache callbacks ------------------------------------ */

static struct kts_sess_cache *cache_of(SSL_CTX *ctx, unsigned int *lifetime)
{
	struct kts_config *cfg = SSL_CTX_get_app_data(ctx);

	if (!cfg || !cfg->cache || cfg->lifetime == 0)
		return NULL;
	*lifetime = cfg->lifetime;
	return cfg->cache;
}

/* A full TLS 1.2 handshake made a session: store its serialized form. */
static int new_cb(SSL *ssl, SSL_SESSION *sess)
{
	unsigned char der[KTS_SESS_CACHE_DER_MAX], *p = der;
	struct kts_sess_cache *cache;
	const unsigned char *id;
	unsigned int lifetime, id_len;
	int len;

	/* One new-session slot per SSL_CTX: client sessions go to the session file. */
	if (!SSL_is_server(ssl))
		return kts_client_session_new(ssl, sess);
	cache = cache_of(SSL_get_SSL_CTX(ssl), &lifetime);
	/* TLS 1.3 sessions resume from tickets, never by session ID. */
	if (!cache || SSL_SESSION_get_protocol_version(sess) != TLS1_2_VERSION ||
	    !SSL_SESSION_is_resumable(sess))
		return 0;
	len = i2d_SSL_SESSION(sess, NULL);
	if (len <= 0 || len > KTS_SESS_CACHE_DER_MAX)
		return 0; /* too large (a big client certificate): simply not cached */
	if (i2d_SSL_SESSION(sess, &p) == len) {
		id = SSL_SESSION_get_id(sess, &id_len);
		kts_sess_cache_put(cache, id, id_len, der, (size_t)len);
		kts_store_put(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)), id, id_len, der,
			      (size_t)len);
	}
	OPENSSL_cleanse(der, (size_t)len);
	return 0; /* we kept no reference to sess */
}

static SSL_SESSION *get_cb(SSL *ssl, const unsigned char *id, int id_len, int *copy)
{
	unsigned char der[KTS_SESS_CACHE_DER_MAX];
	const unsigned char *p = der;
	struct kts_sess_cache *cache;
	SSL_SESSION *sess = NULL;
	unsigned int lifetime;
	size_t len = 0;

	/* A fresh session from d2i: OpenSSL takes over our only reference,
	 * it must not add one of its own. */
	*copy = 0;
	cache = cache_of(SSL_get_SSL_CTX(ssl), &lifetime);
	if (cache && id_len > 0)
		len = kts_sess_cache_get(cache, id, (size_t)id_len, lifetime, der);
	if (len > 0) {
		/* An unparsable entry is a miss, not an error for the handshake. */
		ERR_set_mark();
		sess = d2i_SSL_SESSION(NULL, &p, (long)len);
		ERR_pop_to_mark();
		OPENSSL_cleanse(der, len);
	}
	return sess;
}

/* OpenSSL dropped a session (timed out, or its connection failed). */
static void remove_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
	struct kts_config *cfg = SSL_CTX_get_app_data(ctx);
	const unsigned char *id;
	unsigned int id_len;

	if (!cfg || !cfg->cache)
		return;
	id = SSL_SESSION_get_id(sess, &id_len);
	kts_sess_cache_del(cfg->cache, id, id_len);
	kts_store_del(cfg, id, id_len);
}

int kts_config_set_session_cache(struct kts_config *cfg, size_t entries)
{
	struct kts_sess_cache *cache;

	if (!cfg)
		return KTS_ERR_ARG;
	if (entries < KTS_SESS_CACHE_MIN || entries > KTS_SESS_CACHE_MAX)
		return kts_config_fail(cfg, KTS_ERR_ARG,
				       "session cache: %zu entries, must be %d..%d", entries,
				       KTS_SESS_CACHE_MIN, KTS_SESS_CACHE_MAX);
	/* Workers forked earlier would keep using the old table: refuse. */
	if (cfg->cache)
		return kts_config_fail(cfg, KTS_ERR_STATE, "session cache: already set");
	cache = kts_sess_cache_new(entries);
	if (!cache)
		return kts_config_fail(cfg, errno == ENOMEM ? KTS_ERR_NOMEM : KTS_ERR_SYS,
				       "session cache: %zu entries: %s", entries, strerror(errno));
	cfg->cache = cache;
	SSL_CTX_sess_set_new_cb(cfg->ctx, new_cb);
	SSL_CTX_sess_set_get_cb(cfg->ctx, get_cb);
	SSL_CTX_sess_set_remove_cb(cfg->ctx, remove_cb);
	/* Without a lifetime resumption stays off: kts_config_set_session_lifetime
	 * turns the cache on later. Other mode bits belong to the client side. */
	if (cfg->lifetime > 0)
		SSL_CTX_set_session_cache_mode(cfg->ctx, SSL_CTX_get_session_cache_mode(cfg->ctx) |
								 SSL_SESS_CACHE_SERVER |
								 SSL_SESS_CACHE_NO_INTERNAL);
	return KTS_OK;
}
