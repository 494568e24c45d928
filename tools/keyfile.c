/* keyfile.c - kts-server's --ticket-keys file in a running server (see keyfile.h). */
#include "keyfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct loaded {
	size_t added;  /* keys added by this load */
	size_t pushed; /* older keys they pushed out of the library's ring */
	unsigned int newest;
};

/* Read the file and add the keys this process has not added yet, in file
 * order. Returns 0, or -1 with a message in err. Keys added before a failure
 * stay added (and counted in *l). */
static int load(struct keyfile *kf, struct kts_config *cfg, struct loaded *l, char *err,
		size_t errlen)
{
	struct ticketfile_key *keys = calloc(TICKETFILE_MAX_KEYS, sizeof(*keys));
	struct ticketfile_seen *grown;
	char why[512];
	size_t first;
	int n, rc = -1;

	memset(l, 0, sizeof(*l));
	if (!keys) {
		snprintf(err, errlen, "%s: out of memory", kf->path);
		return -1;
	}
	n = ticketfile_load(kf->path, keys, TICKETFILE_MAX_KEYS, err, errlen);
	if (n < 0)
		goto out;
	if (ticketfile_plan(keys, (size_t)n, kf->seen, kf->nseen, &first, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", kf->path, why);
		goto out;
	}
	grown = realloc(kf->seen, (kf->nseen + (size_t)n - first + 1) * sizeof(*kf->seen));
	if (!grown) {
		snprintf(err, errlen, "%s: out of memory", kf->path);
		goto out;
	}
	kf->seen = grown;
	l->newest = keys[n - 1].keyrev;
	for (size_t i = first; i < (size_t)n; i++) {
		struct ticketfile_seen *s = &kf->seen[kf->nseen];

		if (kts_config_add_ticket_key(cfg, keys[i].keyrev, keys[i].key, sizeof(keys[i].key)) <
		    0) {
			snprintf(err, errlen, "%s: line %d: %s", kf->path, keys[i].line,
				 kts_config_error(cfg));
			goto out;
		}
		l->pushed += keywatch_add(&kf->watch, time(NULL));
		l->added++;
		s->keyrev = keys[i].keyrev;
		if (ticketfile_digest(&keys[i], s->digest) < 0) {
			snprintf(err, errlen, "%s: line %d: SHA-256 failed", kf->path, keys[i].line);
			goto out;
		}
		kf->nseen++;
	}
	rc = 0;
out:
	ticketfile_wipe(keys, TICKETFILE_MAX_KEYS);
	free(keys);
	return rc;
}

/* "; N older key(s) dropped (at most 4 are kept)" when keys were pushed out. */
static const char *dropped(const struct loaded *l, char *buf, size_t len)
{
	if (!l->pushed)
		return "";
	snprintf(buf, len, "; %zu older key(s) dropped (at most %d are kept)", l->pushed,
		 KTS_TICKET_KEYS_MAX);
	return buf;
}

int keyfile_start(struct keyfile *kf, struct kts_config *cfg, unsigned int lifetime, char *msg,
		  size_t len)
{
	struct loaded l;
	char d[96];

	keywatch_init(&kf->watch, lifetime);
	if (load(kf, cfg, &l, msg, len) < 0)
		return -1;
	snprintf(msg, len, "ticket keys: %zu key(s) kept from %s, newest keyrev %u%s",
		 keywatch_kept(&kf->watch, time(NULL)), kf->path, l.newest, dropped(&l, d, sizeof(d)));
	return 0;
}

int keyfile_reload(struct keyfile *kf, struct kts_config *cfg, char *msg, size_t len)
{
	struct loaded l;
	char err[768], d[96];

	if (load(kf, cfg, &l, err, sizeof(err)) < 0) {
		snprintf(msg, len, "ticket keys: reload failed, keeping the keys loaded before: %s",
			 err);
		return -1;
	}
	snprintf(msg, len, "ticket keys: reloaded %s: %zu new key(s), newest keyrev %u, %zu kept%s",
		 kf->path, l.added, l.newest, keywatch_kept(&kf->watch, time(NULL)),
		 dropped(&l, d, sizeof(d)));
	return 0;
}

int keyfile_check(struct keyfile *kf, char *msg, size_t len)
{
	if (!kf->path || !keywatch_stopped(&kf->watch, time(NULL)))
		return 0;
	snprintf(msg, len,
		 "ticket keys: the newest key (keyrev %u) stopped sealing tickets one session "
		 "lifetime (%u s) after it was loaded: no tickets are issued until a new key is "
		 "added to %s and SIGHUP sent",
		 kf->nseen ? kf->seen[kf->nseen - 1].keyrev : 0, kf->watch.lifetime, kf->path);
	return 1;
}

int64_t keyfile_next_check_ms(const struct keyfile *kf)
{
	time_t left;

	if (!kf->path || kf->watch.told)
		return -1;
	/* Never early: time() is the current second rounded down. */
	left = keywatch_until_stop(&kf->watch, time(NULL));
	return (int64_t)left * 1000;
}
