/* keyrotate.c - the schedule of ticket keys; see keyrotate.h. */
#include "keyrotate.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

static int fresh_bytes(unsigned char key[KTS_TICKET_KEY_LEN])
{
	char err[160];
	struct kts_ticket_key probe = {0};

	int rc = -1;

	for (int tries = 0; tries < 4 && rc < 0; tries++) {
		if (RAND_priv_bytes(key, KTS_TICKET_KEY_LEN) != 1)
			break;
		memcpy(probe.key, key, KTS_TICKET_KEY_LEN);
		probe.encrypt_until = probe.decrypt_until = 1;
		/* An all-zero half is refused by the library; never in practice. */
		if (kts_ticket_keys_check(&probe, 1, 0, err, sizeof(err)) == KTS_OK)
			rc = 0;
	}
	OPENSSL_cleanse(&probe, sizeof(probe));
	return rc;
}

/* The next keyrev: one above the highest, or the lowest unused after a wrap. */
static unsigned int next_keyrev(const struct keyset *ks)
{
	unsigned int top = 0, rev;

	for (size_t i = 0; i < ks->n; i++)
		if (ks->keys[i].keyrev > top)
			top = ks->keys[i].keyrev;
	if (ks->n == 0)
		return 1;
	if (top < UINT32_MAX)
		return top + 1;
	for (rev = 0;; rev++) {
		size_t i;

		for (i = 0; i < ks->n && ks->keys[i].keyrev != rev; i++)
			;
		if (i == ks->n)
			return rev;
	}
}

static int add_key(struct keyset *ks, unsigned int keyrev, int64_t from)
{
	struct kts_ticket_key *k = &ks->keys[ks->n];

	memset(k, 0, sizeof(*k));
	k->keyrev = keyrev;
	k->encrypt_from = from;
	k->encrypt_until = from + 2 * (int64_t)ks->interval;
	k->decrypt_until = k->encrypt_until + (int64_t)ks->lifetime;
	if (fresh_bytes(k->key) < 0) {
		OPENSSL_cleanse(k, sizeof(*k));
		return -1;
	}
	ks->line[ks->n++] = 0;
	return 0;
}

int keyrotate_init(struct keyset *ks, int64_t now, char *err, size_t errlen)
{
	keyset_wipe(ks);
	if (add_key(ks, 1, now) < 0) {
		snprintf(err, errlen, "the random generator failed");
		return -1;
	}
	return 0;
}

/* Drop the keys gone at now; the rest keep their order. */
static void drop_gone(struct keyset *ks, int64_t now)
{
	size_t j = 0;

	for (size_t i = 0; i < ks->n; i++) {
		if (kts_ticket_key_state(&ks->keys[i], now) == KTS_KEY_GONE)
			continue;
		if (j != i) {
			ks->keys[j] = ks->keys[i];
			ks->line[j] = ks->line[i];
		}
		j++;
	}
	if (j < ks->n)
		OPENSSL_cleanse(&ks->keys[j], (ks->n - j) * sizeof(ks->keys[0]));
	ks->n = j;
}

int keyrotate_rotate(struct keyset *ks, int64_t now, int force, char *msg, size_t len)
{
	int64_t newest = INT64_MIN, from;
	size_t before = ks->n, dropped;
	const struct kts_ticket_key *k;
	unsigned int rev;

	for (size_t i = 0; i < ks->n; i++)
		if (ks->keys[i].encrypt_from > newest)
			newest = ks->keys[i].encrypt_from;
	if (!force && newest > now + (int64_t)ks->interval / 2) {
		snprintf(msg, len,
			 "nothing to rotate: a key is staged until %" PRId64 " (%" PRId64
			 " s from now); --force adds one more",
			 newest, newest - now);
		return 0;
	}
	from = (newest > now ? newest : now) + (int64_t)ks->interval;
	rev = next_keyrev(ks); /* before the drop: keyrevs keep counting up */
	drop_gone(ks, now);
	dropped = before - ks->n;
	if (ks->n == KTS_TICKET_KEYSET_MAX) {
		snprintf(msg, len,
			 "the set already holds %d keys, the most a server takes: raise the interval "
			 "or shorten the lifetime",
			 KTS_TICKET_KEYSET_MAX);
		return -1;
	}
	if (add_key(ks, rev, from) < 0) {
		snprintf(msg, len, "the random generator failed");
		return -1;
	}
	k = &ks->keys[ks->n - 1];
	snprintf(msg, len,
		 "added keyrev %u, staged until %" PRId64 " (%" PRId64 " s from now); %zu gone "
		 "key(s) dropped",
		 k->keyrev, k->encrypt_from, k->encrypt_from - now, dropped);
	return 1;
}
