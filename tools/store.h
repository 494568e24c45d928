/* store.h - the fleet's shared store: Redis, reached with hiredis, as
 * `ktsctl keys ... --store URL` uses it.
 *
 * URL: redis://[[USER]:PASSWORD@]HOST[:PORT]/NAME (PORT 6379 by default;
 * USER and PASSWORD percent-decoded; NAME 1..64 of [A-Za-z0-9._-], the
 * fleet's name, so one Redis serves several fleets). "@FILE" instead of a
 * URL reads it from FILE (mode 0600 or 0400), which keeps the password out
 * of the process list. Every call is bounded by STORE_TIMEOUT_MS; errors
 * name the server and what failed ("redis://HOST:PORT: AUTH: ...") and
 * never the password. Redis keys: kts:NAME:keys (the ticket key envelope),
 * kts:NAME:keys:lock (a rotation in progress); channel kts:NAME:keys
 * (a new envelope's generation is published on it). */
#ifndef KTS_TOOLS_STORE_H
#define KTS_TOOLS_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_TIMEOUT_MS 3000
#define STORE_NAME_MAX 64

struct store_url {
	char host[256];
	int port;
	char user[128], password[256];
	char name[STORE_NAME_MAX + 1];
	char shown[360]; /* "redis://HOST:PORT/NAME": for messages */
};

struct store;

/* Parse spec (a URL or @FILE) into u. 0, or -1 with why in err. */
int store_url_parse(const char *spec, struct store_url *u, char *err, size_t errlen);

/* Connect and authenticate, within STORE_TIMEOUT_MS (store_open_ms: ms,
 * also for every later command). NULL with why in err. */
struct store *store_open(const struct store_url *u, char *err, size_t errlen);
struct store *store_open_ms(const struct store_url *u, int ms, char *err, size_t errlen);
void store_close(struct store *s); /* NULL is fine; wipes the password */
/* Bound every later command to ms instead of STORE_TIMEOUT_MS. 0 or -1. */
int store_set_timeout(struct store *s, int ms);
/* The URL s was opened with. */
const struct store_url *store_url_of(const struct store *s);

/* The value of key kts:NAME:<what>: 1 with a malloc'd *val (*len bytes, NUL
 * after them), 0 when there is none, -1 with why in err. */
int store_get(struct store *s, const char *what, char **val, size_t *len, char *err,
	      size_t errlen);
/* Set kts:NAME:<what> to val[0, len), expiring after ttl seconds (0:
 * never). 0, or -1 with why. */
int store_set(struct store *s, const char *what, const void *val, size_t len, char *err,
	      size_t errlen);
int store_set_ttl(struct store *s, const char *what, const void *val, size_t len,
		  unsigned int ttl, char *err, size_t errlen);
/* Delete kts:NAME:<what>. 0, or -1 with why. */
int store_del(struct store *s, const char *what, char *err, size_t errlen);

/* Take the lock kts:NAME:<what>:lock for at most ttl_ms, waiting up to
 * wait_ms for another holder to finish. 1 taken, 0 still held by another
 * after wait_ms, -1 with why. Only the holder's token releases it. */
int store_lock(struct store *s, const char *what, int ttl_ms, int wait_ms, char *err,
	       size_t errlen);
void store_unlock(struct store *s, const char *what);

/* Publish msg on channel kts:NAME:<what>. 0, or -1 with why. */
int store_publish(struct store *s, const char *what, const char *msg, char *err,
		  size_t errlen);

/* Subscribe this connection to kts:NAME:<what>; then store_wait waits up to
 * ms for a message: 1 one came, 0 none in time (the connection is then
 * closed: open a new one), -1 with why. A subscribed store takes no other
 * command. */
int store_subscribe(struct store *s, const char *what, char *err, size_t errlen);
int store_wait(struct store *s, int ms, char *err, size_t errlen);

#endif
