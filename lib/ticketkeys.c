/*
 * ticketkeys.c - see ticketkeys.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ticketkeys.h"

#define HALF (KTS_TICKET_KEY_LEN / 2) /* AES-256 key, then HMAC-SHA256 key */
/* Chain steps one lookup may take (~0.2 s): 69 days of 60 s epochs. */
#define MAX_CATCH_UP 100000

struct key {
	uint32_t keyrev;
	unsigned char name[KTS_TICKET_NAME_LEN];
	unsigned char bytes[KTS_TICKET_KEY_LEN];
	time_t added;
};

struct kts_ticket_ring {
	pthread_mutex_t lock;
	time_t (*now)(void *arg);
	void *now_arg;
	unsigned int lifetime;
	int manual;     /* the caller added a key: automatic mode is over for good */
	size_t n;       /* keys[0] is the oldest, keys[n - 1] the newest (encrypts) */
	struct key keys[KTS_TICKET_KEYS_MAX];
	/* Automatic mode: the chain link of epoch (= time / lifetime). */
	unsigned char link[32];
	time_t epoch;
	int epoch_keyed; /* the key of epoch is in keys[] */
};

static time_t wall_clock(void *arg)
{
	(void)arg;
	return time(NULL);
}

static int hmac(const unsigned char *key, size_t keylen, const char *label,
		unsigned char out[32])
{
	size_t len = 0;

	return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen,
			 (const unsigned char *)label, strlen(label), out, 32, &len) && len == 32
		       ? 0
		       : -1;
}

/* keyrev (big-endian) || HMAC(hmac key, label)[0..12]: identifies the key
 * without revealing anything about it. */
static int key_name(uint32_t keyrev, const unsigned char *bytes,
		    unsigned char name[KTS_TICKET_NAME_LEN])
{
	unsigned char mac[32];
	int rc = hmac(bytes + HALF, HALF, "kts ticket key name", mac);

	name[0] = (unsigned char)(keyrev >> 24);
	name[1] = (unsigned char)(keyrev >> 16);
	name[2] = (unsigned char)(keyrev >> 8);
	name[3] = (unsigned char)keyrev;
	memcpy(name + 4, mac, KTS_TICKET_NAME_LEN - 4);
	OPENSSL_cleanse(mac, sizeof(mac));
	return rc;
}

static void drop_at(struct kts_ticket_ring *r, size_t i)
{
	memmove(&r->keys[i], &r->keys[i + 1], (r->n - i - 1) * sizeof(r->keys[0]));
	r->n--;
	OPENSSL_cleanse(&r->keys[r->n], sizeof(r->keys[0])); /* the moved-from last slot */
}

static void drop_all(struct kts_ticket_ring *r)
{
	OPENSSL_cleanse(r->keys, sizeof(r->keys));
	r->n = 0;
}

/* Append as the newest key, dropping the oldest when full. */
static int push(struct kts_ticket_ring *r, uint32_t keyrev, const unsigned char *bytes,
		time_t added)
{
	unsigned char name[KTS_TICKET_NAME_LEN];
	struct key *k;

	if (key_name(keyrev, bytes, name) < 0)
		return -1;
	if (r->n == KTS_TICKET_KEYS_MAX)
		drop_at(r, 0);
	k = &r->keys[r->n++];
	k->keyrev = keyrev;
	memcpy(k->name, name, sizeof(name));
	memcpy(k->bytes, bytes, KTS_TICKET_KEY_LEN);
	k->added = added;
	return 0;
}

/* Derive the key of the current epoch from its link and make it the newest. */
static int push_epoch_key(struct kts_ticket_ring *r)
{
	unsigned char bytes[KTS_TICKET_KEY_LEN];
	int rc = hmac(r->link, sizeof(r->link), "kts ticket aes key", bytes) < 0 ||
			 hmac(r->link, sizeof(r->link), "kts ticket hmac key", bytes + HALF) < 0 ||
			 push(r, (uint32_t)r->epoch, bytes, r->epoch * (time_t)r->lifetime) < 0
		 ? -1
		 : 0;

	OPENSSL_cleanse(bytes, sizeof(bytes));
	r->epoch_keyed = rc == 0;
	return rc;
}

/* One-way step to the next link; the old one is overwritten. */
static int step(struct kts_ticket_ring *r)
{
	unsigned char next[32];

	if (hmac(r->link, sizeof(r->link), "kts ticket chain", next) < 0)
		return -1;
	memcpy(r->link, next, sizeof(next));
	OPENSSL_cleanse(next, sizeof(next));
	r->epoch++;
	r->epoch_keyed = 0;
	return 0;
}

/* Under the lock: drop expired keys; in automatic mode, move to the current
 * epoch, keeping the previous epoch's key (other processes may have used it). */
static int refresh(struct kts_ticket_ring *r)
{
	time_t now = r->now(r->now_arg), e;

	for (size_t i = 0; i < r->n;) {
		if (r->lifetime && now - r->keys[i].added >= 2 * (time_t)r->lifetime)
			drop_at(r, i);
		else
			i++;
	}
	if (r->manual || !r->lifetime)
		return 0;
	e = now / (time_t)r->lifetime;
	if (e - r->epoch > MAX_CATCH_UP) {
		/* A long idle time or a clock jump: reseed rather than stall
		 * handshakes (forked processes stop sharing automatic keys). */
		if (RAND_priv_bytes(r->link, sizeof(r->link)) != 1)
			return -1;
		r->epoch = e;
		r->epoch_keyed = 0;
	}
	while (r->epoch < e) {
		if (r->epoch + 1 == e && !r->epoch_keyed && push_epoch_key(r) < 0)
			return -1;
		if (step(r) < 0)
			return -1;
	}
	return r->epoch_keyed ? 0 : push_epoch_key(r);
}

struct kts_ticket_ring *kts_ticket_ring_new(void)
{
	struct kts_ticket_ring *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	if (RAND_priv_bytes(r->link, sizeof(r->link)) != 1 ||
	    pthread_mutex_init(&r->lock, NULL) != 0) {
		OPENSSL_cleanse(r, sizeof(*r));
		free(r);
		return NULL;
	}
	r->now = wall_clock;
	return r;
}

void kts_ticket_ring_free(struct kts_ticket_ring *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	OPENSSL_cleanse(r, sizeof(*r));
	free(r);
}

void kts_ticket_ring_set_clock(struct kts_ticket_ring *r, time_t (*now)(void *arg), void *arg)
{
	pthread_mutex_lock(&r->lock);
	r->now = now ? now : wall_clock;
	r->now_arg = arg;
	pthread_mutex_unlock(&r->lock);
}

void kts_ticket_ring_set_lifetime(struct kts_ticket_ring *r, unsigned int seconds)
{
	pthread_mutex_lock(&r->lock);
	if (seconds != r->lifetime && !r->manual) {
		/* New epoch length: start over with fresh links (a failed step only
		 * means the next epoch key repeats bytes under a new name). */
		drop_all(r);
		step(r);
		if (seconds)
			r->epoch = r->now(r->now_arg) / (time_t)seconds;
		r->epoch_keyed = 0;
	}
	r->lifetime = seconds;
	pthread_mutex_unlock(&r->lock);
}

static int all_zero(const unsigned char *p, size_t len)
{
	unsigned char acc = 0;

	while (len--)
		acc |= *p++;
	return acc == 0;
}

int kts_ticket_ring_add(struct kts_ticket_ring *r, uint32_t keyrev, const unsigned char *key,
			size_t keylen, char *err, size_t errlen)
{
	int rc = KTS_OK;

	if (!key || keylen != KTS_TICKET_KEY_LEN) {
		snprintf(err, errlen,
			 "ticket key: must be %d bytes (AES-256 key + HMAC-SHA256 key), got %zu%s",
			 KTS_TICKET_KEY_LEN, keylen, key ? "" : " and no pointer");
		return KTS_ERR_ARG;
	}
	if (all_zero(key, keylen) || all_zero(key, HALF) || all_zero(key + HALF, HALF)) {
		snprintf(err, errlen, "ticket key: keyrev %u: AES or HMAC half is all zero bytes",
			 keyrev);
		return KTS_ERR_ARG;
	}
	pthread_mutex_lock(&r->lock);
	if (!r->manual) { /* the caller manages keys from now on */
		drop_all(r);
		OPENSSL_cleanse(r->link, sizeof(r->link));
		r->manual = 1;
	}
	refresh(r); /* expired keyrevs may be reused */
	for (size_t i = 0; i < r->n; i++) {
		if (r->keys[i].keyrev != keyrev)
			continue;
		if (CRYPTO_memcmp(r->keys[i].bytes, key, KTS_TICKET_KEY_LEN) != 0) {
			snprintf(err, errlen, "ticket key: keyrev %u already added with different bytes",
				 keyrev);
			rc = KTS_ERR_ARG;
		} else if (i != r->n - 1) {
			snprintf(err, errlen,
				 "ticket key: keyrev %u already added and newer keys follow it", keyrev);
			rc = KTS_ERR_ARG;
		} /* else the newest again with the same bytes: a no-op */
		goto out;
	}
	if (push(r, keyrev, key, r->now(r->now_arg)) < 0) {
		snprintf(err, errlen, "ticket key: keyrev %u: cannot compute its name (HMAC-SHA256)",
			 keyrev);
		rc = KTS_ERR_NOMEM;
	}
out:
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int kts_ticket_ring_refresh(struct kts_ticket_ring *r)
{
	int rc;

	pthread_mutex_lock(&r->lock);
	rc = refresh(r);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int kts_ticket_ring_encrypt_key(struct kts_ticket_ring *r, unsigned char name[KTS_TICKET_NAME_LEN],
				unsigned char key[KTS_TICKET_KEY_LEN])
{
	int rc;

	pthread_mutex_lock(&r->lock);
	rc = refresh(r) < 0 ? -1 : r->n > 0;
	/* A caller's key encrypts for one lifetime only, so every ticket it
	 * issues can still be decrypted for its whole lifetime before the key
	 * expires (automatic keys rotate every lifetime by construction). */
	if (rc == 1 && r->manual && r->lifetime &&
	    r->now(r->now_arg) - r->keys[r->n - 1].added >= (time_t)r->lifetime)
		rc = 0;
	if (rc == 1) {
		memcpy(name, r->keys[r->n - 1].name, KTS_TICKET_NAME_LEN);
		memcpy(key, r->keys[r->n - 1].bytes, KTS_TICKET_KEY_LEN);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int kts_ticket_ring_decrypt_key(struct kts_ticket_ring *r,
				const unsigned char name[KTS_TICKET_NAME_LEN],
				unsigned char key[KTS_TICKET_KEY_LEN])
{
	int rc = 0;

	pthread_mutex_lock(&r->lock);
	if (refresh(r) < 0)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < r->n; i++) {
		if (memcmp(r->keys[i].name, name, KTS_TICKET_NAME_LEN) == 0) {
			memcpy(key, r->keys[i].bytes, KTS_TICKET_KEY_LEN);
			rc = i == r->n - 1 ? 1 : 2;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}
