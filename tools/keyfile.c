/* keyfile.c - kts-server's --ticket-keys file in a running server (see keyfile.h). */
#include "keyfile.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keyset.h"

/* The key that seals at now in the set in use, as the library decides. */
static long sealing_at(const struct keyfile *kf, int64_t now)
{
	int i = kts_ticket_keys_encrypting(kf->keys, kf->n, now);

	return i < 0 ? -1 : (long)kf->keys[i].keyrev;
}

/* "3 key(s): keyrev 5 seals, 1 staged, 1 retired" */
static void describe(const struct keyfile *kf, int64_t now, char *buf, size_t len)
{
	size_t staged = 0, retired = 0;
	long seal = sealing_at(kf, now);

	for (size_t i = 0; i < kf->n; i++) {
		enum kts_ticket_key_state s = kts_ticket_key_state(&kf->keys[i], now);

		staged += s == KTS_KEY_STAGED;
		retired += s == KTS_KEY_RETIRED || (s == KTS_KEY_ACTIVE && (long)kf->keys[i].keyrev != seal);
	}
	snprintf(buf, len, "%zu key(s): keyrev %ld seals, %zu staged, %zu retired", kf->n, seal, staged,
		 retired);
}

/* Read the file and hand the set to cfg; now is when. 0, or -1 with a message
 * in err. */
static int load(struct keyfile *kf, struct kts_config *cfg, int64_t now, char *err, size_t errlen)
{
	struct keyset *ks = calloc(1, sizeof(*ks));
	int rc = -1;

	if (!ks) {
		snprintf(err, errlen, "%s: out of memory", kf->path);
		return -1;
	}
	if (keyset_load(kf->path, geteuid(), ks, NULL, err, errlen) < 0)
		goto out;
	if (kts_config_set_ticket_keys(cfg, ks->keys, ks->n) < 0) {
		snprintf(err, errlen, "%s: %s", kf->path, kts_config_error(cfg));
		goto out;
	}
	kf->n = ks->n;
	memcpy(kf->keys, ks->keys, ks->n * sizeof(ks->keys[0]));
	for (size_t i = 0; i < kf->n; i++)
		OPENSSL_cleanse(kf->keys[i].key, sizeof(kf->keys[i].key));
	kf->sealing = sealing_at(kf, now);
	kf->checked = now;
	rc = 0;
out:
	keyset_wipe(ks);
	free(ks);
	return rc;
}

int keyfile_start(struct keyfile *kf, struct kts_config *cfg, char *msg, size_t len)
{
	int64_t now = (int64_t)time(NULL);
	char d[160];

	kf->sealing = -1;
	if (load(kf, cfg, now, msg, len) < 0)
		return -1;
	describe(kf, now, d, sizeof(d));
	snprintf(msg, len, "ticket keys: loaded %s: %s", kf->path, d);
	return 0;
}

int keyfile_reload(struct keyfile *kf, struct kts_config *cfg, const char *why, char *msg,
		   size_t len)
{
	int64_t now = (int64_t)time(NULL);
	char err[512], d[160];

	if (load(kf, cfg, now, err, sizeof(err)) < 0) {
		snprintf(msg, len, "ticket keys: reload (%s) failed, keeping the %zu key(s) in use: %s",
			 why, kf->n, err);
		return -1;
	}
	describe(kf, now, d, sizeof(d));
	snprintf(msg, len, "ticket keys: reloaded %s (%s): %s", kf->path, why, d);
	return 0;
}

int keyfile_check(struct keyfile *kf, int64_t now, char *msg, size_t len)
{
	long seal;

	if (!kf->path)
		return 0;
	kf->checked = now;
	if ((seal = sealing_at(kf, now)) == kf->sealing)
		return 0;
	if (seal >= 0)
		snprintf(msg, len, "ticket keys: keyrev %ld seals new tickets from now on", seal);
	else
		snprintf(msg, len,
			 "ticket keys: no key in %s is active now: no tickets are issued until the "
			 "file has one (ktsctl keys rotate)",
			 kf->path);
	kf->sealing = seal;
	return 1;
}

int64_t keyfile_next_check_ms(const struct keyfile *kf, int64_t now)
{
	int64_t next = INT64_MAX;

	if (!kf->path)
		return -1;
	for (size_t i = 0; i < kf->n; i++) {
		const struct kts_ticket_key *k = &kf->keys[i];
		int64_t t[3] = {k->encrypt_from, k->encrypt_until, k->decrypt_until};

		for (int j = 0; j < 3; j++)
			if (t[j] > kf->checked && t[j] < next)
				next = t[j];
	}
	if (next == INT64_MAX)
		return -1;
	/* time() counts whole seconds: wake just after the second turns. */
	return next <= now ? 0 : (next - now) * 1000 + 1;
}
