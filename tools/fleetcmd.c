/* fleetcmd.c - ktsctl's fleet commands; see fleetcmd.h. */
#include "fleetcmd.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "atomicfile.h"
#include "fleetkeys.h"
#include "keyset.h"

#define PROG "ktsctl"

static int64_t clock_now(const struct fleet_opts *o)
{
	return o->now >= 0 ? o->now : (int64_t)time(NULL);
}

/* The generation path holds now (0: none, or unreadable). */
static uint64_t file_generation(const char *path)
{
	struct keyset *ks = calloc(1, sizeof(*ks));
	char err[512];
	uint64_t gen = 0;

	if (ks && keyset_load(path, geteuid() == 0 ? (uid_t)-1 : geteuid(), ks, NULL, err,
			      sizeof(err)) == 0)
		gen = ks->generation;
	if (ks)
		keyset_wipe(ks);
	free(ks);
	return gen;
}

/* FILE.sync: what the last sync did (fleetcmd.h). */
static void write_state(const struct fleet_opts *o, int ok, const char *msg, int64_t good)
{
	char path[4200], err[512], *text;
	struct stat st;
	json_t *j;

	snprintf(path, sizeof(path), "%s.sync", o->to);
	if (!good) { /* keep when the store last answered, from the file before */
		json_t *old = json_load_file(path, 0, NULL);

		good = (int64_t)json_integer_value(json_object_get(old, "good"));
		json_decref(old);
	}
	j = json_pack("{s:I, s:b, s:s, s:I, s:I}", "time", (json_int_t)time(NULL), "ok", ok,
		      "message", msg, "generation", (json_int_t)file_generation(o->to), "good",
		      (json_int_t)good);
	text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!text)
		return;
	/* The key file's owner: the server reads it too. */
	if (stat(o->to, &st) < 0)
		st.st_uid = o->uid, st.st_gid = o->gid;
	if (atomicfile_write(path, text, strlen(text), st.st_uid, st.st_gid, err, sizeof(err)) < 0)
		fprintf(stderr, "%s: %s\n", PROG, err);
	free(text);
}

static int sync_once(const struct fleet_opts *o, const struct store_url *u, const struct kek *k,
		     struct store **s, int64_t *good, char *msg, size_t len)
{
	char err[512];
	int rc;

	if (!*s && !(*s = store_open(u, err, sizeof(err)))) {
		snprintf(msg, len, "%s", err);
		return -1;
	}
	rc = fleet_sync(*s, k, o->to, clock_now(o), o->uid, o->gid, msg, len);
	if (rc >= 0)
		*good = (int64_t)time(NULL);
	if (rc == -2) { /* the connection failed: a new one next time */
		store_close(*s);
		*s = NULL;
	}
	return rc < 0 ? -1 : rc;
}

/* sync --follow: poll every o->poll seconds and whenever a new generation
 * is announced; on failure keep the file, say so once, and retry with
 * backoff (1 s, doubling, at most --poll and FLEET_BACKOFF_MAX). Runs until
 * killed. */
static int follow(const struct fleet_opts *o, const struct store_url *u, const struct kek *k)
{
	struct store *s = NULL, *sub = NULL;
	char msg[1024], last[1024] = "", err[512];
	int64_t good = 0;
	int backoff = 1, max_backoff = o->poll < FLEET_BACKOFF_MAX ? (int)o->poll : FLEET_BACKOFF_MAX;

	for (;;) {
		int rc = sync_once(o, u, k, &s, &good, msg, sizeof(msg)), waited;

		if (strcmp(msg, last) != 0 || rc > 0) { /* said once, recorded always */
			fprintf(rc < 0 ? stderr : stdout, "%s: keys sync: %s%s\n", PROG, msg,
				rc < 0 ? "; the key file stays as it is" : "");
			fflush(rc < 0 ? stderr : stdout);
			snprintf(last, sizeof(last), "%s", msg);
		}
		write_state(o, rc >= 0, msg, good);
		if (rc < 0 && !s) { /* the store is away: try again soon */
			store_close(sub);
			sub = NULL;
			sleep((unsigned)backoff);
			backoff = backoff * 2 > max_backoff ? max_backoff : backoff * 2;
			continue;
		}
		backoff = 1;
		if (!sub && (!(sub = store_open(u, err, sizeof(err))) ||
			     store_subscribe(sub, "keys", err, sizeof(err)) < 0)) {
			store_close(sub);
			sub = NULL;
			sleep((unsigned)(o->poll < FLEET_BACKOFF_MAX ? o->poll : FLEET_BACKOFF_MAX));
			continue;
		}
		waited = store_wait(sub, (int)(o->poll * 1000), err, sizeof(err));
		if (waited <= 0) { /* a timeout closes it too: subscribe afresh */
			store_close(sub);
			sub = NULL;
		}
	}
	return 0;
}

int fleetcmd_keys(const struct fleet_opts *o)
{
	struct store_url u;
	struct kek k;
	char err[1024], msg[1024];
	int rc;

	if (store_url_parse(o->store, &u, err, sizeof(err)) < 0 ||
	    kek_load(o->kek, geteuid() == 0 ? (uid_t)-1 : geteuid(), &k, err, sizeof(err)) < 0) {
		OPENSSL_cleanse(&u, sizeof(u));
		fprintf(stderr, "%s: %s\n", PROG, err);
		return 1;
	}
	if (strcmp(o->verb, "sync") == 0 && o->follow) {
		rc = follow(o, &u, &k);
	} else if (strcmp(o->verb, "sync") == 0) {
		struct store *s = NULL;
		int64_t good = 0;

		rc = sync_once(o, &u, &k, &s, &good, msg, sizeof(msg));
		store_close(s);
		write_state(o, rc >= 0, msg, good);
		fprintf(rc < 0 ? stderr : stdout, "%s%s\n", rc < 0 ? PROG ": " : "", msg);
		rc = rc < 0;
	} else {
		unsigned int iv = o->interval > 0 ? (unsigned int)o->interval : 0;
		unsigned int lt = o->lifetime > 0 ? (unsigned int)o->lifetime : 0;

		rc = strcmp(o->verb, "init") == 0
			     ? fleet_init(&u, &k, clock_now(o), iv, lt, o->force, msg, sizeof(msg))
			     : fleet_rotate(&u, &k, clock_now(o), iv, lt, o->force, msg, sizeof(msg));
		fprintf(rc < 0 ? stderr : stdout, "%s%s\n", rc < 0 ? PROG ": " : "", msg);
		rc = rc < 0;
	}
	kek_wipe(&k);
	OPENSSL_cleanse(&u, sizeof(u));
	return rc;
}

int fleetcmd_kek_init(const char *path, uid_t uid, gid_t gid, int force)
{
	char text[KEK_TEXT_LEN], err[512];
	struct stat st;

	if (!force && lstat(path, &st) == 0) {
		fprintf(stderr, "%s: %s exists; --force replaces it (every machine then needs the "
				"new one, and the store's envelopes must be written again)\n",
			PROG, path);
		return 1;
	}
	if (kek_text_new(text, err, sizeof(err)) < 0 ||
	    atomicfile_write(path, text, strlen(text), uid, gid, err, sizeof(err)) < 0) {
		OPENSSL_cleanse(text, sizeof(text));
		fprintf(stderr, "%s: %s\n", PROG, err);
		return 1;
	}
	OPENSSL_cleanse(text, sizeof(text));
	printf("%s: a new fleet KEK: copy it to every machine (mode 0600), never to the store\n",
	       path);
	return 0;
}
