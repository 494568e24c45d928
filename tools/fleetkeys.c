/* fleetkeys.c - the fleet's ticket key set in its store; see fleetkeys.h. */
#include "fleetkeys.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kts.h>

#include "keyrotate.h"

#define WHAT "keys"

static void apply(struct keyset *ks, unsigned int interval, unsigned int lifetime)
{
	if (interval)
		ks->interval = interval;
	if (lifetime)
		ks->lifetime = lifetime;
}

/* The envelope in the store, opened and parsed (not judged by time). 1, 0
 * (none there), -1 (refused; why in msg), -2 (the store failed). */
static int load(struct store *s, const struct store_url *u, const struct kek *k,
		struct keyset *ks, char *msg, size_t len)
{
	char err[512], *env = NULL;
	unsigned char *plain = NULL;
	size_t elen = 0, plen = 0;
	uint64_t gen = 0;
	int rc;

	rc = store_get(s, WHAT, &env, &elen, err, sizeof(err));
	if (rc <= 0) {
		if (rc < 0)
			snprintf(msg, len, "%s", err);
		return rc < 0 ? -2 : 0;
	}
	rc = envelope_open(k, FLEET_PURPOSE, u->name, env, elen, &gen, &plain, &plen, err,
			   sizeof(err));
	free(env);
	if (rc < 0) {
		snprintf(msg, len, "%s: %s", u->shown, err);
		ks->generation = gen; /* what it claims: a floor for a set made afresh */
		return -1;
	}
	rc = keyset_parse((const char *)plain, plen, ks, err, sizeof(err));
	envelope_free(plain, plen);
	if (rc < 0) {
		snprintf(msg, len, "%s: the sealed key set: %s", u->shown, err);
		keyset_wipe(ks);
		return -1;
	}
	ks->generation = gen;
	return 1;
}

/* Seal ks as its next generation (the time now, or one more than the last
 * if that is later: a set made afresh, after a new KEK or an emptied Redis,
 * still counts up past every machine's file), store and announce it. 0, or
 * -1. */
static int store_set_keys(struct store *s, const struct store_url *u, const struct kek *k,
			  struct keyset *ks, int64_t now, char *msg, size_t len)
{
	char err[512], *text, *env, gen[24];
	size_t elen;
	int rc;

	ks->generation = now > 0 && (uint64_t)now > ks->generation ? (uint64_t)now
								    : ks->generation + 1;
	text = keyset_format(ks);
	if (!text) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	env = envelope_seal(k, FLEET_PURPOSE, u->name, ks->generation, text, strlen(text), &elen,
			    err, sizeof(err));
	keyset_text_free(text);
	if (!env) {
		snprintf(msg, len, "%s", err);
		return -1;
	}
	rc = store_set(s, WHAT, env, elen, err, sizeof(err));
	free(env);
	if (rc < 0) {
		snprintf(msg, len, "%s", err);
		return -1;
	}
	snprintf(gen, sizeof(gen), "%" PRIu64, ks->generation);
	if (store_publish(s, WHAT, gen, err, sizeof(err)) < 0)
		fprintf(stderr, "ktsctl: %s (the machines' sync will poll)\n", err);
	return 0;
}

/* init or rotate under the lock. */
static int change(const struct store_url *u, const struct kek *k, int64_t now,
		  unsigned int interval, unsigned int lifetime, int force, int init, char *msg,
		  size_t len)
{
	struct keyset *ks = calloc(1, sizeof(*ks));
	char err[512], what[512] = "";
	struct store *s = NULL;
	int rc = -1, got, locked = 0;

	if (!ks) {
		snprintf(msg, len, "out of memory");
		return -1;
	}
	if (!(s = store_open(u, err, sizeof(err)))) {
		snprintf(msg, len, "%s", err);
		goto out;
	}
	locked = store_lock(s, WHAT, FLEET_LOCK_TTL_MS, FLEET_LOCK_WAIT_MS, err, sizeof(err));
	if (locked <= 0) {
		snprintf(msg, len, "%s", locked < 0 ? err : "another machine holds the lock "
							  "(kts:NAME:keys:lock) for over 15 s");
		goto out;
	}
	got = load(s, u, k, ks, msg, len);
	if (got < 0 && !(init && force))
		goto out;
	if (init) {
		/* Past the old set's generation, even one that no longer opens (a
		 * new KEK): a claim over a year ahead is garbage, not a floor. */
		uint64_t gen = ks->generation <= (uint64_t)now + 366 * 86400 ? ks->generation : 0;

		if (got > 0 && !force) {
			snprintf(msg, len, "%s holds a key set (generation %" PRIu64 "); --force "
					   "replaces it (every ticket under it is then lost)",
				 u->shown, ks->generation);
			goto out;
		}
		keyset_wipe(ks);
		memset(ks, 0, sizeof(*ks));
		ks->generation = gen;
		ks->interval = KEYSET_INTERVAL_DEFAULT;
		ks->lifetime = KEYSET_LIFETIME_DEFAULT;
		apply(ks, interval, lifetime);
		if (keyrotate_init(ks, now, err, sizeof(err)) < 0) {
			snprintf(msg, len, "%s", err);
			goto out;
		}
		snprintf(what, sizeof(what), "new key set: keyrev %u seals", ks->keys[0].keyrev);
	} else {
		if (got == 0) {
			snprintf(msg, len, "%s holds no key set: ktsctl keys init --store first",
				 u->shown);
			goto out;
		}
		apply(ks, interval, lifetime);
		rc = keyrotate_rotate(ks, now, force, what, sizeof(what));
		if (rc < 0) {
			snprintf(msg, len, "%s: %s", u->shown, what);
			goto out;
		}
		if (rc == 0 && !interval && !lifetime) {
			snprintf(msg, len, "%s: %s", u->shown, what);
			goto out;
		}
	}
	rc = store_set_keys(s, u, k, ks, now, msg, len);
	if (rc == 0) {
		snprintf(msg, len, "%s: generation %" PRIu64 ": %s", u->shown, ks->generation, what);
		rc = 1;
	}
out:
	if (locked > 0)
		store_unlock(s, WHAT);
	store_close(s);
	keyset_wipe(ks);
	free(ks);
	return rc;
}

int fleet_init(const struct store_url *u, const struct kek *k, int64_t now, unsigned int interval,
	       unsigned int lifetime, int force, char *msg, size_t len)
{
	return change(u, k, now, interval, lifetime, force, 1, msg, len);
}

int fleet_rotate(const struct store_url *u, const struct kek *k, int64_t now,
		 unsigned int interval, unsigned int lifetime, int force, char *msg, size_t len)
{
	return change(u, k, now, interval, lifetime, force, 0, msg, len);
}

int fleet_fetch(struct store *s, const struct kek *k, int64_t now, struct keyset *ks, char *msg,
		size_t len)
{
	const struct store_url *u = store_url_of(s);
	char err[512];
	int rc = load(s, u, k, ks, msg, len);

	if (rc == 0)
		snprintf(msg, len, "%s holds no key set (ktsctl keys init --store)", u->shown);
	if (rc <= 0)
		return rc < 0 ? rc : -1;
	if (kts_ticket_keys_check(ks->keys, ks->n, now, err, sizeof(err)) != KTS_OK) {
		snprintf(msg, len, "%s: generation %" PRIu64 " refused: %s", u->shown, ks->generation,
			 err);
		keyset_wipe(ks);
		return -1;
	}
	return 0;
}

int fleet_sync(struct store *s, const struct kek *k, const char *path, int64_t now, uid_t uid,
	       gid_t gid, char *msg, size_t len)
{
	struct keyset *fleet = calloc(1, sizeof(*fleet)), *local = calloc(1, sizeof(*local));
	const struct store_url *u = store_url_of(s);
	char err[512];
	struct stat st;
	int rc = -1, have;

	if (!fleet || !local) {
		snprintf(msg, len, "out of memory");
		goto out;
	}
	if ((rc = fleet_fetch(s, k, now, fleet, msg, len)) < 0)
		goto out;
	rc = -1;
	have = lstat(path, &st) == 0;
	if (have && keyset_load(path, geteuid() == 0 ? (uid_t)-1 : geteuid(), local, &st, err,
				sizeof(err)) < 0) {
		snprintf(msg, len, "%s (replaced by the fleet's set)", err);
		have = 0; /* a bad local file is what sync repairs */
	}
	if (have && fleet->generation < local->generation) {
		snprintf(msg, len, "%s: generation %" PRIu64 " is older than %s's %" PRIu64
				   ": refused (a replayed or restored envelope)",
			 u->shown, fleet->generation, path, local->generation);
		goto out;
	}
	if (have && fleet->generation == local->generation) {
		snprintf(msg, len, "%s: generation %" PRIu64 ", current", path, local->generation);
		rc = 0;
		goto out;
	}
	if (keyset_save(path, fleet, have ? st.st_uid : uid, have ? st.st_gid : gid, err,
			sizeof(err)) < 0) {
		snprintf(msg, len, "%s", err);
		goto out;
	}
	snprintf(msg, len, "%s: generation %" PRIu64 " from %s: %zu key(s)", path,
		 fleet->generation, u->shown, fleet->n);
	rc = 1;
out:
	if (fleet)
		keyset_wipe(fleet);
	if (local)
		keyset_wipe(local);
	free(fleet);
	free(local);
	return rc;
}
