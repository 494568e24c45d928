/* sessredis.c - kts-server's session store in Redis; see sessredis.h. */
#include "sessredis.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "deadline.h"
#include "server.h"

#define CMD_TIMEOUT_MS 200 /* one Redis command, so a slow Redis cannot back the queue up */
#define RECONNECT_MS 1000

enum op_kind { OP_GET, OP_PUT, OP_DEL };

struct op {
	enum op_kind kind;
	unsigned char id[32];
	size_t id_len;
	unsigned char *der; /* put: malloc'd */
	size_t len;
	unsigned int lifetime;
	sessredis_done_fn done;
	void *arg;
	uint64_t token;
};

struct sessredis {
	struct store_url u;
	struct kek k;
	pthread_t tid;
	pthread_mutex_t lock;
	pthread_cond_t more;
	struct op q[SESSREDIS_QUEUE];
	size_t head, count;
	int stop;
	uint64_t *counters; /* enum sessredis_counter; shared with the status */
	/* the thread's own */
	struct store *s;
	int64_t next_connect;
	int down_told;
};

static void what_of(const unsigned char *id, size_t id_len, char *what, size_t len,
		    const char *prefix)
{
	size_t n = (size_t)snprintf(what, len, "%s", prefix);

	for (size_t i = 0; i < id_len && n + 2 < len; i++)
		n += (size_t)snprintf(what + n, len - n, "%02x", id[i]);
}

static void count(struct sessredis *r, enum sessredis_counter c)
{
	__atomic_fetch_add(&r->counters[c], 1, __ATOMIC_RELAXED);
}

/* The connection, made again at most once a second while Redis is away. */
static struct store *conn(struct sessredis *r)
{
	char err[512];

	if (r->s || deadline_now() < r->next_connect)
		return r->s;
	r->s = store_open_ms(&r->u, CMD_TIMEOUT_MS, err, sizeof(err));
	if (!r->s) {
		r->next_connect = deadline_now() + RECONNECT_MS; /* from the failure on */
		if (!r->down_told)
			logmsg("session store: %s; full handshakes for sessions from other machines "
			       "until it is back", err);
		r->down_told = 1;
		return NULL;
	}
	if (r->down_told)
		logmsg("session store: %s: connected again", r->u.shown);
	r->down_told = 0;
	return r->s;
}

static void lost(struct sessredis *r, const char *err)
{
	if (!r->down_told)
		logmsg("session store: %s", err);
	r->down_told = 1;
	store_close(r->s);
	r->s = NULL;
	r->next_connect = deadline_now() + RECONNECT_MS;
}

static void do_get(struct sessredis *r, struct op *o)
{
	char what[80], purpose[80], err[512], *env = NULL;
	unsigned char *der = NULL;
	size_t elen = 0, dlen = 0;
	uint64_t gen;
	struct store *s = conn(r);
	int rc;

	what_of(o->id, o->id_len, what, sizeof(what), "sess:");
	what_of(o->id, o->id_len, purpose, sizeof(purpose), "session ");
	rc = s ? store_get(s, what, &env, &elen, err, sizeof(err)) : -1;
	if (s && rc < 0)
		lost(r, err);
	if (rc > 0 && envelope_open(&r->k, purpose, r->u.name, env, elen, &gen, &der, &dlen, err,
				    sizeof(err)) < 0) {
		logmsg("session store: entry %.20s...: %s", what + 5, err);
		rc = 0;
	}
	free(env);
	count(r, rc < 0 ? SESSREDIS_FAILED : rc > 0 ? SESSREDIS_HITS : SESSREDIS_MISSES);
	o->done(o->arg, o->token, rc > 0 ? der : NULL, rc > 0 ? dlen : 0);
	envelope_free(der, dlen);
}

static void do_put(struct sessredis *r, struct op *o)
{
	char what[80], purpose[80], err[512], *env;
	size_t elen;
	struct store *s = conn(r);

	if (!s) {
		count(r, SESSREDIS_DROPPED);
		return;
	}
	what_of(o->id, o->id_len, what, sizeof(what), "sess:");
	what_of(o->id, o->id_len, purpose, sizeof(purpose), "session ");
	env = envelope_seal(&r->k, purpose, r->u.name, 0, o->der, o->len, &elen, err, sizeof(err));
	if (!env || store_set_ttl(s, what, env, elen, o->lifetime, err, sizeof(err)) < 0) {
		if (env)
			lost(r, err);
		count(r, SESSREDIS_DROPPED);
	}
	free(env);
}

static void *thread_main(void *arg)
{
	struct sessredis *r = arg;

	for (;;) {
		struct op o;
		char what[80], err[512];
		int stopping;

		pthread_mutex_lock(&r->lock);
		while (!r->count && !r->stop)
			pthread_cond_wait(&r->more, &r->lock);
		if (!r->count) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		o = r->q[r->head];
		r->head = (r->head + 1) % SESSREDIS_QUEUE;
		r->count--;
		stopping = r->stop;
		pthread_mutex_unlock(&r->lock);
		if (stopping) { /* no Redis round trips at a stop: answer none, drop */
			if (o.kind == OP_GET)
				o.done(o.arg, o.token, NULL, 0);
		} else if (o.kind == OP_GET) {
			do_get(r, &o);
		} else if (o.kind == OP_PUT) {
			do_put(r, &o);
		} else if (conn(r)) {
			what_of(o.id, o.id_len, what, sizeof(what), "sess:");
			if (store_del(r->s, what, err, sizeof(err)) < 0)
				lost(r, err);
		}
		if (o.der) {
			OPENSSL_cleanse(o.der, o.len);
			free(o.der);
		}
	}
	return NULL;
}

/* Queue o; 0, or -1 when the queue is full (o is not taken). */
static int push(struct sessredis *r, const struct op *o)
{
	int rc = -1;

	pthread_mutex_lock(&r->lock);
	if (r->count < SESSREDIS_QUEUE && !r->stop) {
		r->q[(r->head + r->count) % SESSREDIS_QUEUE] = *o;
		r->count++;
		pthread_cond_signal(&r->more);
		rc = 0;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

struct sessredis *sessredis_start(const struct store_url *u, const struct kek *k,
				  uint64_t counters[SESSREDIS_COUNTERS], char *err, size_t errlen)
{
	struct sessredis *r = calloc(1, sizeof(*r));

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->counters = counters;
	r->u = *u;
	r->k = *k;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->more, NULL);
	if (pthread_create(&r->tid, NULL, thread_main, r) != 0) {
		snprintf(err, errlen, "session store: pthread_create failed");
		kek_wipe(&r->k);
		free(r);
		return NULL;
	}
	return r;
}

void sessredis_stop(struct sessredis *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = 1;
	pthread_cond_signal(&r->more);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->tid, NULL);
	store_close(r->s);
	kek_wipe(&r->k);
	OPENSSL_cleanse(&r->u, sizeof(r->u));
	free(r);
}

void sessredis_get(struct sessredis *r, const unsigned char *id, size_t id_len,
		   sessredis_done_fn done, void *arg, uint64_t token)
{
	struct op o = {.kind = OP_GET, .id_len = id_len, .done = done, .arg = arg,
		       .token = token};

	if (id_len <= sizeof(o.id)) {
		memcpy(o.id, id, id_len);
		if (push(r, &o) == 0)
			return;
	}
	count(r, SESSREDIS_FAILED);
	done(arg, token, NULL, 0);
}

/* sessredis_get_wait's meeting point with the store thread. */
struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int answered, abandoned;
	unsigned char *der;
	size_t len, cap;
};

static void waiter_free(struct waiter *w)
{
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	OPENSSL_cleanse(w->der, w->cap);
	free(w->der);
	free(w);
}

static void wake(void *arg, uint64_t token, const unsigned char *der, size_t len)
{
	struct waiter *w = arg;
	int gone;

	(void)token;
	pthread_mutex_lock(&w->lock);
	if (len && len <= w->cap && !w->abandoned) {
		memcpy(w->der, der, len);
		w->len = len;
	}
	w->answered = 1;
	gone = w->abandoned;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	if (gone) /* the handshake went on without us: ours to free */
		waiter_free(w);
}

size_t sessredis_get_wait(struct sessredis *r, const unsigned char *id, size_t id_len,
			  unsigned char *der, size_t cap)
{
	struct waiter *w = calloc(1, sizeof(*w));
	struct timespec until;
	size_t got = 0;
	int answered;

	if (!w || !(w->der = malloc(cap))) {
		free(w);
		return 0;
	}
	w->cap = cap;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += (long)SESSREDIS_WAIT_MS * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	sessredis_get(r, id, id_len, wake, w, 0);
	pthread_mutex_lock(&w->lock);
	while (!w->answered &&
	       pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT)
		;
	answered = w->answered;
	if (answered) {
		if (w->len)
			memcpy(der, w->der, w->len);
		got = w->len;
	} else {
		w->abandoned = 1;
	}
	pthread_mutex_unlock(&w->lock);
	if (answered)
		waiter_free(w);
	return got;
}

static void put_cb(void *arg, const unsigned char *id, size_t id_len, const unsigned char *der,
		   size_t len, unsigned int lifetime)
{
	struct sessredis *r = *(struct sessredis **)arg;
	struct op o = {.kind = OP_PUT, .id_len = id_len, .len = len, .lifetime = lifetime};

	if (!r || id_len > sizeof(o.id) || !(o.der = malloc(len)))
		return;
	memcpy(o.id, id, id_len);
	memcpy(o.der, der, len);
	if (push(r, &o) < 0) {
		OPENSSL_cleanse(o.der, len);
		free(o.der);
		count(r, SESSREDIS_DROPPED);
	}
}

static void del_cb(void *arg, const unsigned char *id, size_t id_len)
{
	struct sessredis *r = *(struct sessredis **)arg;
	struct op o = {.kind = OP_DEL, .id_len = id_len};

	if (!r || id_len > sizeof(o.id))
		return;
	memcpy(o.id, id, id_len);
	(void)push(r, &o);
}

struct kts_session_store sessredis_ops(struct sessredis **rp)
{
	struct kts_session_store s = {put_cb, del_cb, rp};

	return s;
}
