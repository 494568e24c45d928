/* store.c - the fleet's Redis; see store.h. */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "deadline.h"
#include "secretfile.h"

#define URL_FILE_MAX 1024

struct store {
	redisContext *rc;
	struct store_url u;
	char token[33]; /* the lock we hold */
};

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

/* s[0, len) percent-decoded into out (cap bytes with its NUL). */
static int decode(const char *s, size_t len, char *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];

		if (c == '%') {
			if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
				return -1;
			c = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
			i += 2;
		}
		if (c == 0 || o + 1 >= cap)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

static int parse(const char *url, struct store_url *u, char *err, size_t errlen)
{
	const char *p = url + strlen("redis://"), *at, *slash, *colon, *hostend;
	char port[8];
	long v;
	char *end;

	memset(u, 0, sizeof(*u));
	if (strncmp(url, "redis://", 8) != 0) {
		snprintf(err, errlen, "store: want redis://[[USER]:PASSWORD@]HOST[:PORT]/NAME");
		return -1;
	}
	slash = strchr(p, '/');
	if (!slash) {
		snprintf(err, errlen, "store: no /NAME after the host (the fleet's name)");
		return -1;
	}
	at = memchr(p, '@', (size_t)(slash - p));
	if (at) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (!colon || decode(p, (size_t)(colon - p), u->user, sizeof(u->user)) < 0 ||
		    decode(colon + 1, (size_t)(at - colon - 1), u->password, sizeof(u->password)) < 0) {
			snprintf(err, errlen, "store: bad USER:PASSWORD@ part (percent-encode "
					      "':', '@' and '/' in them)");
			return -1;
		}
		p = at + 1;
	}
	hostend = slash;
	colon = memchr(p, ':', (size_t)(slash - p));
	u->port = 6379;
	if (colon) {
		hostend = colon;
		snprintf(port, sizeof(port), "%.*s", (int)(slash - colon - 1), colon + 1);
		errno = 0;
		v = strtol(port, &end, 10);
		if (slash - colon - 1 > 5 || errno || end == port || *end || v < 1 || v > 65535) {
			snprintf(err, errlen, "store: bad port");
			return -1;
		}
		u->port = (int)v;
	}
	if (hostend == p || (size_t)(hostend - p) >= sizeof(u->host)) {
		snprintf(err, errlen, "store: no host");
		return -1;
	}
	memcpy(u->host, p, (size_t)(hostend - p));
	p = slash + 1;
	if (!*p || strlen(p) > STORE_NAME_MAX || strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
							 "nopqrstuvwxyz0123456789._-") != strlen(p)) {
		snprintf(err, errlen, "store: NAME is 1..%d of A-Z a-z 0-9 . _ -", STORE_NAME_MAX);
		return -1;
	}
	memcpy(u->name, p, strlen(p));
	snprintf(u->shown, sizeof(u->shown), "redis://%s:%d/%s", u->host, u->port, u->name);
	return 0;
}

int store_url_parse(const char *spec, struct store_url *u, char *err, size_t errlen)
{
	char *buf, *nl;
	size_t len;
	int rc;

	if (spec[0] != '@')
		return parse(spec, u, err, errlen);
	if (secretfile_read(spec + 1, geteuid() == 0 ? (uid_t)-1 : geteuid(), URL_FILE_MAX, &buf,
			    &len, NULL, err, errlen) < 0)
		return -1;
	if ((nl = strchr(buf, '\n')))
		*nl = '\0';
	if ((nl = strchr(buf, '\r')))
		*nl = '\0';
	rc = parse(buf, u, err, errlen);
	secretfile_free(buf, len);
	return rc;
}

static struct timeval tv_of(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	return tv;
}

/* The error of a failed command, into err: hiredis's, or the server's. */
static void failed(struct store *s, const char *what, const redisReply *r, char *err,
		   size_t errlen)
{
	if (r && r->type == REDIS_REPLY_ERROR)
		snprintf(err, errlen, "%s: %s: %s", s->u.shown, what, r->str);
	else if (r)
		snprintf(err, errlen, "%s: %s: unexpected reply (type %d)", s->u.shown, what, r->type);
	else
		snprintf(err, errlen, "%s: %s: %s", s->u.shown, what,
			 s->rc->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
				 ? "no answer in time"
				 : s->rc->errstr[0] ? s->rc->errstr : "connection lost");
}

struct store *store_open(const struct store_url *u, char *err, size_t errlen)
{
	return store_open_ms(u, STORE_TIMEOUT_MS, err, errlen);
}

struct store *store_open_ms(const struct store_url *u, int ms, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	redisReply *r;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->u = *u;
	s->rc = redisConnectWithTimeout(u->host, u->port, tv_of(ms));
	if (!s->rc || s->rc->err) {
		snprintf(err, errlen, "%s: connect: %s", u->shown,
			 s->rc ? s->rc->errstr : "out of memory");
		store_close(s);
		return NULL;
	}
	if (redisSetTimeout(s->rc, tv_of(ms)) != REDIS_OK) {
		snprintf(err, errlen, "%s: setting the timeout failed", u->shown);
		store_close(s);
		return NULL;
	}
	if (!u->password[0])
		return s;
	r = u->user[0] ? redisCommand(s->rc, "AUTH %s %s", u->user, u->password)
		       : redisCommand(s->rc, "AUTH %s", u->password);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		failed(s, "AUTH", r, err, errlen);
		freeReplyObject(r);
		store_close(s);
		return NULL;
	}
	freeReplyObject(r);
	return s;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->rc)
		redisFree(s->rc);
	OPENSSL_cleanse(&s->u, sizeof(s->u));
	free(s);
}

int store_set_timeout(struct store *s, int ms)
{
	return redisSetTimeout(s->rc, tv_of(ms)) == REDIS_OK ? 0 : -1;
}

const struct store_url *store_url_of(const struct store *s)
{
	return &s->u;
}

static void key_of(const struct store *s, const char *what, char *out, size_t len)
{
	snprintf(out, len, "kts:%s:%s", s->u.name, what);
}

int store_get(struct store *s, const char *what, char **val, size_t *len, char *err,
	      size_t errlen)
{
	char key[160];
	redisReply *r;

	key_of(s, what, key, sizeof(key));
	r = redisCommand(s->rc, "GET %s", key);
	if (r && r->type == REDIS_REPLY_NIL) {
		freeReplyObject(r);
		return 0;
	}
	if (!r || r->type != REDIS_REPLY_STRING) {
		failed(s, "GET", r, err, errlen);
		freeReplyObject(r);
		return -1;
	}
	*val = malloc(r->len + 1);
	if (!*val) {
		snprintf(err, errlen, "out of memory");
		freeReplyObject(r);
		return -1;
	}
	memcpy(*val, r->str, r->len);
	(*val)[r->len] = '\0';
	*len = r->len;
	freeReplyObject(r);
	return 1;
}

int store_set_ttl(struct store *s, const char *what, const void *val, size_t len,
		  unsigned int ttl, char *err, size_t errlen)
{
	char key[160];
	redisReply *r;
	int rc = 0;

	key_of(s, what, key, sizeof(key));
	r = ttl ? redisCommand(s->rc, "SET %s %b EX %u", key, val, len, ttl)
		: redisCommand(s->rc, "SET %s %b", key, val, len);
	if (!r || r->type != REDIS_REPLY_STATUS) {
		failed(s, "SET", r, err, errlen);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

int store_set(struct store *s, const char *what, const void *val, size_t len, char *err,
	      size_t errlen)
{
	return store_set_ttl(s, what, val, len, 0, err, errlen);
}

int store_del(struct store *s, const char *what, char *err, size_t errlen)
{
	char key[160];
	redisReply *r;
	int rc = 0;

	key_of(s, what, key, sizeof(key));
	r = redisCommand(s->rc, "DEL %s", key);
	if (!r || r->type != REDIS_REPLY_INTEGER) {
		failed(s, "DEL", r, err, errlen);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

int store_lock(struct store *s, const char *what, int ttl_ms, int wait_ms, char *err,
	       size_t errlen)
{
	int64_t end = deadline_now() + wait_ms;
	unsigned char raw[16];
	char key[168];
	redisReply *r;

	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		snprintf(err, errlen, "no random bytes for the lock");
		return -1;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(s->token + 2 * i, 3, "%02x", raw[i]);
	key_of(s, what, key, sizeof(key));
	strncat(key, ":lock", sizeof(key) - strlen(key) - 1);
	for (;;) {
		r = redisCommand(s->rc, "SET %s %s NX PX %d", key, s->token, ttl_ms);
		if (!r || (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_NIL)) {
			failed(s, "SET NX (lock)", r, err, errlen);
			freeReplyObject(r);
			s->token[0] = '\0';
			return -1;
		}
		if (r->type == REDIS_REPLY_STATUS) {
			freeReplyObject(r);
			return 1;
		}
		freeReplyObject(r);
		if (deadline_now() >= end) {
			s->token[0] = '\0';
			return 0;
		}
		usleep(100 * 1000);
	}
}

void store_unlock(struct store *s, const char *what)
{
	/* Delete only our own token: a lock that expired and was taken by
	 * another machine stays its. */
	static const char script[] = "if redis.call('get', KEYS[1]) == ARGV[1] then "
				     "return redis.call('del', KEYS[1]) else return 0 end";
	char key[168];

	if (!s->token[0])
		return;
	key_of(s, what, key, sizeof(key));
	strncat(key, ":lock", sizeof(key) - strlen(key) - 1);
	freeReplyObject(redisCommand(s->rc, "EVAL %s 1 %s %s", script, key, s->token));
	s->token[0] = '\0';
}

int store_publish(struct store *s, const char *what, const char *msg, char *err,
		  size_t errlen)
{
	char key[160];
	redisReply *r;
	int rc = 0;

	key_of(s, what, key, sizeof(key));
	r = redisCommand(s->rc, "PUBLISH %s %s", key, msg);
	if (!r || r->type != REDIS_REPLY_INTEGER) {
		failed(s, "PUBLISH", r, err, errlen);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

int store_subscribe(struct store *s, const char *what, char *err, size_t errlen)
{
	char key[160];
	redisReply *r;
	int rc = 0;

	key_of(s, what, key, sizeof(key));
	r = redisCommand(s->rc, "SUBSCRIBE %s", key);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		failed(s, "SUBSCRIBE", r, err, errlen);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

int store_wait(struct store *s, int ms, char *err, size_t errlen)
{
	void *reply = NULL;
	redisReply *r;

	if (redisSetTimeout(s->rc, tv_of(ms > 0 ? ms : 1)) != REDIS_OK ||
	    redisGetReply(s->rc, &reply) != REDIS_OK) {
		if (s->rc->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		failed(s, "waiting for a message", NULL, err, errlen);
		return -1;
	}
	r = reply;
	freeReplyObject(r);
	return 1;
}
