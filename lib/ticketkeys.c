/*
 * ticketkeys.c - see ticketkeys.h. The rules of a key's state by time are
 * here once: kts_ticket_key_state and kts_ticket_keys_encrypting serve the
 * ring, kts_config_set_ticket_keys and ktsctl alike.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ticketkeys.h"

#define HALF (KTS_TICKET_KEY_LEN / 2) /* AES-256 key, then HMAC-SHA256 key */
#define HALF_128 16                    /* AES-128 key, then a 16-byte HMAC key */
/* Chain steps one lookup may take (~0.2 s): 69 days of 60 s epochs. */
#define MAX_CATCH_UP 100000

struct key {
	struct kts_ticket_key k; /* keyrev, times, bytes, given name, aes_bits */
	unsigned char name[KTS_TICKET_NAME_LEN]; /* the name in tickets (given or derived) */
	/* Added one at a time (kts_config_add_ticket_key): the times follow
	 * from when it was added and the lifetime in force at each lookup. */
	int relative;
	time_t added;
};

struct kts_ticket_ring {
	pthread_mutex_t lock;
	time_t (*now)(void *arg);
	void *now_arg;
	unsigned int lifetime;
	int manual;     /* the caller gave keys: automatic mode is over for good */
	size_t n;       /* keys[0] is the oldest, keys[n - 1] the newest */
	struct key keys[KTS_TICKET_KEYSET_MAX];
	/* Automatic mode: the chain link of epoch (= time / lifetime). */
	unsigned char link[32];
	time_t epoch;
	int epoch_keyed; /* the key of epoch is in keys[] */
};

/* ---- the rules ------------------------------------------------------------------ */

enum kts_ticket_key_state kts_ticket_key_state(const struct kts_ticket_key *k, int64_t now)
{
	if (now >= k->decrypt_until)
		return KTS_KEY_GONE;
	if (now < k->encrypt_from)
		return KTS_KEY_STAGED;
	return now < k->encrypt_until ? KTS_KEY_ACTIVE : KTS_KEY_RETIRED;
}

const char *kts_ticket_key_state_name(enum kts_ticket_key_state s)
{
	switch (s) {
	case KTS_KEY_STAGED: return "staged";
	case KTS_KEY_ACTIVE: return "active";
	case KTS_KEY_RETIRED: return "retired";
	case KTS_KEY_GONE: return "gone";
	}
	return "?";
}

/* The active key that started encrypting last; the later one on a tie. */
static int encrypting(const struct kts_ticket_key *const *keys, size_t n, int64_t now)
{
	int best = -1;

	for (size_t i = 0; i < n; i++)
		if (kts_ticket_key_state(keys[i], now) == KTS_KEY_ACTIVE &&
		    (best < 0 || keys[i]->encrypt_from >= keys[best]->encrypt_from))
			best = (int)i;
	return best;
}

int kts_ticket_keys_encrypting(const struct kts_ticket_key *keys, size_t n, int64_t now)
{
	const struct kts_ticket_key *p[KTS_TICKET_KEYSET_MAX];

	if (!keys || n > KTS_TICKET_KEYSET_MAX)
		return -1;
	for (size_t i = 0; i < n; i++)
		p[i] = &keys[i];
	return encrypting(p, n, now);
}

static int all_zero(const unsigned char *p, size_t len)
{
	unsigned char acc = 0;

	while (len--)
		acc |= *p++;
	return acc == 0;
}

/* The length of each of a key's two halves (AES key, HMAC key); 0 for a bad
 * aes_bits. */
static size_t half_of(const struct kts_ticket_key *k)
{
	switch (k->aes_bits) {
	case 0:
	case 256: return HALF;
	case 128: return HALF_128;
	}
	return 0;
}

/* The bytes of one key: "" or the problem. */
static const char *bad_bytes(const struct kts_ticket_key *k)
{
	size_t h = half_of(k);

	if (!h)
		return "aes_bits must be 0, 128 or 256";
	if (all_zero(k->key, h) || all_zero(k->key + h, h))
		return "AES or HMAC half is all zero bytes";
	if (!all_zero(k->key + 2 * h, KTS_TICKET_KEY_LEN - 2 * h))
		return "an AES-128 key is 32 bytes: bytes 32..63 must be zero";
	return "";
}

/* One key: same bytes, layout and name (given names compared as given). */
static int same_key(const struct kts_ticket_key *a, const struct kts_ticket_key *b)
{
	return half_of(a) == half_of(b) && CRYPTO_memcmp(a->key, b->key, KTS_TICKET_KEY_LEN) == 0 &&
	       memcmp(a->name, b->name, KTS_TICKET_NAME_LEN) == 0;
}

int kts_ticket_keys_check(const struct kts_ticket_key *keys, size_t n, int64_t now, char *err,
			  size_t errlen)
{
	unsigned char names[KTS_TICKET_KEYSET_MAX][KTS_TICKET_NAME_LEN];

	if (n == 0 || !keys) {
		snprintf(err, errlen, "ticket keys: the set is empty");
		return KTS_ERR_ARG;
	}
	if (n > KTS_TICKET_KEYSET_MAX) {
		snprintf(err, errlen, "ticket keys: %zu keys, at most %d", n, KTS_TICKET_KEYSET_MAX);
		return KTS_ERR_ARG;
	}
	for (size_t i = 0; i < n; i++) {
		const struct kts_ticket_key *k = &keys[i];

		if (*bad_bytes(k)) {
			snprintf(err, errlen, "ticket keys: keyrev %u: %s", k->keyrev, bad_bytes(k));
			return KTS_ERR_ARG;
		}
		if (kts_ticket_key_name(k, names[i]) != KTS_OK) {
			snprintf(err, errlen, "ticket keys: keyrev %u: cannot compute its name",
				 k->keyrev);
			return KTS_ERR_NOMEM;
		}
		if (k->encrypt_from > k->encrypt_until || k->encrypt_until > k->decrypt_until) {
			snprintf(err, errlen,
				 "ticket keys: keyrev %u: times out of order (encrypt from %" PRId64
				 ", until %" PRId64 ", decrypt until %" PRId64 ")",
				 k->keyrev, k->encrypt_from, k->encrypt_until, k->decrypt_until);
			return KTS_ERR_ARG;
		}
		for (size_t j = 0; j < i; j++) {
			if (keys[j].keyrev == k->keyrev) {
				snprintf(err, errlen, "ticket keys: keyrev %u is in the set twice",
					 k->keyrev);
				return KTS_ERR_ARG;
			}
			/* One key under two names: a copy gone wrong, and tickets
			 * under either would open with both. */
			if (CRYPTO_memcmp(keys[j].key, k->key, KTS_TICKET_KEY_LEN) == 0) {
				snprintf(err, errlen,
					 "ticket keys: keyrev %u has the same bytes as keyrev %u",
					 k->keyrev, keys[j].keyrev);
				return KTS_ERR_ARG;
			}
			/* Tickets name their key: a name must find one key. */
			if (memcmp(names[j], names[i], KTS_TICKET_NAME_LEN) == 0) {
				snprintf(err, errlen,
					 "ticket keys: keyrev %u has the same name as keyrev %u",
					 k->keyrev, keys[j].keyrev);
				return KTS_ERR_ARG;
			}
		}
	}
	if (kts_ticket_keys_encrypting(keys, n, now) < 0) {
		snprintf(err, errlen, "ticket keys: no key is active now (%" PRId64 ")", now);
		return KTS_ERR_ARG;
	}
	return KTS_OK;
}

/* ---- the ring -------------------------------------------------------------------- */

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

/* The given name, or keyrev (big-endian) || HMAC(hmac key, label)[0..12]:
 * identifies the key without revealing anything about it. */
int kts_ticket_key_name(const struct kts_ticket_key *k, unsigned char name[KTS_TICKET_NAME_LEN])
{
	unsigned char mac[32];
	size_t h = k ? half_of(k) : 0;
	int rc;

	if (!h || !name)
		return KTS_ERR_ARG;
	if (!all_zero(k->name, KTS_TICKET_NAME_LEN)) {
		memcpy(name, k->name, KTS_TICKET_NAME_LEN);
		return KTS_OK;
	}
	rc = hmac(k->key + h, h, "kts ticket key name", mac) < 0 ? KTS_ERR_NOMEM : KTS_OK;
	name[0] = (unsigned char)(k->keyrev >> 24);
	name[1] = (unsigned char)(k->keyrev >> 16);
	name[2] = (unsigned char)(k->keyrev >> 8);
	name[3] = (unsigned char)k->keyrev;
	memcpy(name + 4, mac, KTS_TICKET_NAME_LEN - 4);
	OPENSSL_cleanse(mac, sizeof(mac));
	return rc;
}

/* A key added one at a time encrypts for one lifetime after it was added and
 * decrypts for another: every ticket it seals can be opened for its whole
 * lifetime. The times are worked out afresh because the lifetime may change. */
static void settle_times(const struct kts_ticket_ring *r, struct key *k)
{
	if (!k->relative)
		return;
	k->k.encrypt_from = k->added;
	k->k.encrypt_until = k->added + (time_t)r->lifetime;
	k->k.decrypt_until = k->added + 2 * (time_t)r->lifetime;
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

/* A slot for k: its name is computed once, here. */
static int fill(const struct kts_ticket_ring *r, struct key *slot, const struct kts_ticket_key *k,
		int relative, time_t added)
{
	if (kts_ticket_key_name(k, slot->name) != KTS_OK)
		return -1;
	slot->k = *k;
	slot->relative = relative;
	slot->added = added;
	settle_times(r, slot);
	return 0;
}

/* Append as the newest key, dropping the oldest when full. */
static int push(struct kts_ticket_ring *r, const struct kts_ticket_key *k, int relative,
		time_t added)
{
	if (r->n == KTS_TICKET_KEYSET_MAX)
		drop_at(r, 0);
	if (fill(r, &r->keys[r->n], k, relative, added) < 0) {
		OPENSSL_cleanse(&r->keys[r->n], sizeof(r->keys[0]));
		return -1;
	}
	r->n++;
	return 0;
}

/* Derive the key of the current epoch from its link and make it the newest:
 * it encrypts during its epoch and decrypts during the next one. */
static int push_epoch_key(struct kts_ticket_ring *r)
{
	struct kts_ticket_key k = {.keyrev = (uint32_t)r->epoch};
	int rc;

	k.encrypt_from = r->epoch * (time_t)r->lifetime;
	k.encrypt_until = k.encrypt_from + (time_t)r->lifetime;
	k.decrypt_until = k.encrypt_until + (time_t)r->lifetime;
	rc = hmac(r->link, sizeof(r->link), "kts ticket aes key", k.key) < 0 ||
			     hmac(r->link, sizeof(r->link), "kts ticket hmac key", k.key + HALF) < 0 ||
			     push(r, &k, 0, 0) < 0
		     ? -1
		     : 0;
	OPENSSL_cleanse(&k, sizeof(k));
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

/* Under the lock: drop gone keys; in automatic mode, move to the current
 * epoch, keeping the previous epoch's key (other processes may have used it). */
static int refresh(struct kts_ticket_ring *r, time_t now)
{
	time_t e;

	for (size_t i = 0; i < r->n;) {
		settle_times(r, &r->keys[i]);
		if (r->lifetime && kts_ticket_key_state(&r->keys[i].k, now) == KTS_KEY_GONE)
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

/* Under the lock, after refresh: the index of the encrypting key, or -1. */
static int ring_encrypting(const struct kts_ticket_ring *r, time_t now)
{
	const struct kts_ticket_key *p[KTS_TICKET_KEYSET_MAX];

	if (!r->lifetime)
		return -1;
	for (size_t i = 0; i < r->n; i++)
		p[i] = &r->keys[i].k;
	return encrypting(p, r->n, now);
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

/* The caller manages keys from now on: the automatic ones go. */
static void go_manual(struct kts_ticket_ring *r)
{
	if (r->manual)
		return;
	drop_all(r);
	OPENSSL_cleanse(r->link, sizeof(r->link));
	r->manual = 1;
}

static const struct key *held(const struct kts_ticket_ring *r, uint32_t keyrev)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->keys[i].k.keyrev == keyrev)
			return &r->keys[i];
	return NULL;
}

int kts_ticket_ring_add(struct kts_ticket_ring *r, uint32_t keyrev, const unsigned char *key,
			size_t keylen, char *err, size_t errlen)
{
	struct kts_ticket_key k = {.keyrev = keyrev};
	const struct key *old;
	int rc = KTS_OK;
	time_t now;

	if (!key || keylen != KTS_TICKET_KEY_LEN) {
		snprintf(err, errlen,
			 "ticket key: must be %d bytes (AES-256 key + HMAC-SHA256 key), got %zu%s",
			 KTS_TICKET_KEY_LEN, keylen, key ? "" : " and no pointer");
		return KTS_ERR_ARG;
	}
	memcpy(k.key, key, KTS_TICKET_KEY_LEN);
	if (*bad_bytes(&k)) {
		snprintf(err, errlen, "ticket key: keyrev %u: %s", keyrev, bad_bytes(&k));
		OPENSSL_cleanse(&k, sizeof(k));
		return KTS_ERR_ARG;
	}
	pthread_mutex_lock(&r->lock);
	go_manual(r);
	now = r->now(r->now_arg);
	refresh(r, now); /* gone keyrevs may be reused */
	if ((old = held(r, keyrev))) {
		if (!same_key(&old->k, &k)) {
			snprintf(err, errlen, "ticket key: keyrev %u already added with different bytes",
				 keyrev);
			rc = KTS_ERR_ARG;
		} else if (old != &r->keys[r->n - 1]) {
			snprintf(err, errlen,
				 "ticket key: keyrev %u already added and newer keys follow it", keyrev);
			rc = KTS_ERR_ARG;
		} /* else the newest again with the same bytes: a no-op */
		goto out;
	}
	while (r->n >= KTS_TICKET_KEYS_MAX)
		drop_at(r, 0);
	if (push(r, &k, 1, now) < 0) {
		snprintf(err, errlen, "ticket key: keyrev %u: cannot compute its name (HMAC-SHA256)",
			 keyrev);
		rc = KTS_ERR_NOMEM;
	}
out:
	OPENSSL_cleanse(&k, sizeof(k));
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static int holds(const struct kts_ticket_key *keys, size_t n, uint32_t keyrev)
{
	for (size_t i = 0; i < n; i++)
		if (keys[i].keyrev == keyrev)
			return 1;
	return 0;
}

int kts_ticket_ring_set(struct kts_ticket_ring *r, const struct kts_ticket_key *keys, size_t n,
			char *err, size_t errlen)
{
	struct key *next = NULL;
	time_t now;
	int rc;

	pthread_mutex_lock(&r->lock);
	now = r->now(r->now_arg);
	refresh(r, now); /* a gone keyrev may come back with new bytes */
	rc = kts_ticket_keys_check(keys, n, now, err, errlen);
	for (size_t i = 0; rc == KTS_OK && r->manual && i < n; i++) { /* automatic keys go */
		const struct key *old = held(r, keys[i].keyrev);

		if (old && !same_key(&old->k, &keys[i])) {
			snprintf(err, errlen,
				 "ticket keys: keyrev %u is held with different bytes or name (a keyrev "
				 "names one key until it is gone)",
				 keys[i].keyrev);
			rc = KTS_ERR_ARG;
		}
	}
	/* A set that lacks the newest key in use, and whose own newest starts
	 * before it, is an older file (a restored backup, a stale copy): taking
	 * it would drop the key other servers are about to seal under. */
	if (rc == KTS_OK && r->manual && r->n > 0) {
		const struct key *top = &r->keys[0];
		int64_t theirs = INT64_MIN;

		for (size_t i = 1; i < r->n; i++)
			if (r->keys[i].k.encrypt_from > top->k.encrypt_from)
				top = &r->keys[i];
		for (size_t i = 0; i < n; i++)
			theirs = keys[i].encrypt_from > theirs ? keys[i].encrypt_from : theirs;
		if (theirs < top->k.encrypt_from && !holds(keys, n, top->k.keyrev)) {
			snprintf(err, errlen,
				 "ticket keys: the set is older than the one in use (its newest key "
				 "starts at %" PRId64 ", keyrev %u in use at %" PRId64 ")",
				 theirs, top->k.keyrev, top->k.encrypt_from);
			rc = KTS_ERR_ARG;
		}
	}
	/* The new set is built aside, so a failure leaves the old one whole. */
	if (rc == KTS_OK && !(next = calloc(n, sizeof(*next)))) {
		snprintf(err, errlen, "ticket keys: out of memory");
		rc = KTS_ERR_NOMEM;
	}
	for (size_t i = 0; rc == KTS_OK && i < n; i++)
		if (fill(r, &next[i], &keys[i], 0, 0) < 0) {
			snprintf(err, errlen, "ticket keys: keyrev %u: cannot compute its name",
				 keys[i].keyrev);
			rc = KTS_ERR_NOMEM;
		}
	if (rc == KTS_OK) {
		go_manual(r);
		drop_all(r);
		memcpy(r->keys, next, n * sizeof(r->keys[0]));
		r->n = n;
	}
	if (next) {
		OPENSSL_cleanse(next, n * sizeof(*next));
		free(next);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int kts_ticket_ring_refresh(struct kts_ticket_ring *r)
{
	int rc;

	pthread_mutex_lock(&r->lock);
	rc = refresh(r, r->now(r->now_arg));
	pthread_mutex_unlock(&r->lock);
	return rc;
}

/* Under the lock: a key's bytes and AES size, for the caller's crypto. */
static void copy_out(const struct key *k, unsigned char key[KTS_TICKET_KEY_LEN],
		     unsigned int *aes_bits)
{
	memcpy(key, k->k.key, KTS_TICKET_KEY_LEN);
	if (aes_bits)
		*aes_bits = half_of(&k->k) == HALF_128 ? 128 : 256;
}

int kts_ticket_ring_encrypt_key(struct kts_ticket_ring *r, unsigned char name[KTS_TICKET_NAME_LEN],
				unsigned char key[KTS_TICKET_KEY_LEN], unsigned int *aes_bits)
{
	time_t now;
	int rc, i;

	pthread_mutex_lock(&r->lock);
	now = r->now(r->now_arg);
	rc = refresh(r, now) < 0 ? -1 : 0;
	if (rc == 0 && (i = ring_encrypting(r, now)) >= 0) {
		memcpy(name, r->keys[i].name, KTS_TICKET_NAME_LEN);
		copy_out(&r->keys[i], key, aes_bits);
		rc = 1;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int64_t kts_ticket_ring_seal_window(struct kts_ticket_ring *r)
{
	int64_t left = -1;
	time_t now;
	int i;

	pthread_mutex_lock(&r->lock);
	now = r->now(r->now_arg);
	if (refresh(r, now) == 0 && (i = ring_encrypting(r, now)) >= 0)
		left = r->keys[i].k.decrypt_until - now;
	pthread_mutex_unlock(&r->lock);
	return left;
}

int kts_ticket_ring_decrypt_key(struct kts_ticket_ring *r,
				const unsigned char name[KTS_TICKET_NAME_LEN],
				unsigned char key[KTS_TICKET_KEY_LEN], unsigned int *aes_bits)
{
	time_t now;
	int rc = 0, enc;

	pthread_mutex_lock(&r->lock);
	now = r->now(r->now_arg);
	if (refresh(r, now) < 0)
		rc = -1;
	enc = ring_encrypting(r, now);
	for (size_t i = 0; rc == 0 && i < r->n; i++) {
		if (memcmp(r->keys[i].name, name, KTS_TICKET_NAME_LEN) == 0) {
			copy_out(&r->keys[i], key, aes_bits);
			rc = (int)i == enc ? 1 : 2;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}
