/* kts-server - a small HTTPS/1.1 static file server over kts.
 * One detached thread serves a connection at a time, then waits for the next;
 * up to --max-conn connections at once; with
 * --workers N, N pre-forked processes accept on one listening socket. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <kts.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "fsroot.h"
#include "http.h"
#include "opts.h"
#include "ticketfile.h"
#include "tio.h"

#define PROG "kts-server"
#define HEAD_LIMIT (16 * 1024)     /* request head limit: larger gets 431 */
#define DISCARD_LIMIT (1024 * 1024) /* request bodies we read and drop */
#define STOP_GRACE_MS 10000         /* how long a stop waits for busy connections */
#define THREAD_IDLE_S 30            /* a connection thread with no work for this long ends */
#define KEYS_REFRESH_S 30           /* idle processes step automatic ticket keys this often */

#define WORKERS_MAX 256
#define RESPAWN_MIN_S 1 /* a worker that dies sooner after its start is not restarted */

enum { OPT_LISTEN = OPT_TOOL_FIRST, OPT_CERT, OPT_KEY, OPT_ROOT, OPT_TIMEOUT, OPT_MAXCONN,
       OPT_LIFETIME, OPT_SESSION_ID, OPT_TICKET_KEYS, OPT_NUM_TICKETS, OPT_SESSION_CACHE,
       OPT_WORKERS, OPT_HELP };

/* The --ticket-keys file and what this process added from it. */
struct keyfile {
	const char *path;
	struct ticketfile_seen *seen;
	size_t nseen;
};

struct server {
	struct kts_config *cfg;
	struct keyfile keys;
	struct fsroot root;
	int timeout_s;
	int reasons;
	int max_conn;
	int wake_fd; /* eventfd: a slot was freed while all were taken */
	pthread_mutex_t lock;
	struct conn **slots;
	int active;
	int stopping;
	/* Connection threads are reused: one that has served its connection waits
	 * for the next (a thread per connection would cost a clone and an exit each,
	 * about a tenth of a resumed handshake's CPU). */
	pthread_cond_t work;  /* signalled when a connection is queued */
	struct conn *queue;   /* accepted connections waiting for an idle thread */
	int waiting;          /* idle threads, not counting those already claimed */
};

struct conn {
	struct server *srv;
	struct conn *next; /* in srv->queue */
	int fd;
	int slot;
	int idle; /* waiting for a request (or handshaking): may be cut at stop */
	char peer[ADDR_STR_MAX];
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " --listen ADDR:PORT --cert FILE --key FILE --root DIR [options]\n"
		"Serve the files under DIR over HTTPS/1.1 (GET and HEAD), with kernel TLS where\n"
		"possible. Port 0 picks a free port; the address is printed as\n"
		"'listening on ADDR:PORT' on stderr once the server accepts connections.\n"
		"\n"
		"  --listen ADDR:PORT      address to listen on ([V6]:PORT or :PORT for any)\n"
		"  --cert FILE             certificate chain (PEM)\n"
		"  --key FILE              private key (PEM)\n"
		"  --root DIR              document root\n"
		"  --timeout SECONDS       idle/read/write timeout per connection (default 30)\n"
		"  --max-conn N            concurrent connections (default 256)\n"
		"  --workers N             pre-fork N worker processes (default 1: no fork)\n"
		"  --session-lifetime SECONDS\n"
		"                          resumption: ticket/session lifetime, 0 (off, the\n"
		"                          default) or 60..604800\n"
		"  --session-id STRING     session ID context, 1..32 bytes (default random);\n"
		"                          servers sharing tickets must share it\n"
		"  --ticket-keys FILE      ticket keys, '<keyrev> <base64 of 64 bytes>' per line,\n"
		"                          newest last, mode 0600/0400; SIGHUP adds new ones\n"
		"                          (default: automatic keys)\n"
		"  --num-tickets N         TLS 1.3 tickets per full handshake (default 2)\n"
		"  --session-cache N       TLS 1.2 session-ID cache of N entries, shared by\n"
		"                          the workers (default: tickets only)\n"
		"%s"
		"  --help                  show this help\n",
		opts_help_common);
}


/* "worker PID: " in worker processes: starts every log line. */
static char log_prefix[32];

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	size_t p = strlen(log_prefix);
	int n;

	memcpy(line, log_prefix, p);
	va_start(ap, fmt);
	n = vsnprintf(line + p, sizeof(line) - 1 - p, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n += (int)p;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, (size_t)n, stderr); /* one call: lines from threads do not mix */
}

/* ---- connection bookkeeping ------------------------------------------------ */

/* Mark the connection idle or busy. Returns 1 if the server is stopping. */
static int conn_set_idle(struct conn *cn, int idle)
{
	int stopping;

	pthread_mutex_lock(&cn->srv->lock);
	cn->idle = idle;
	stopping = cn->srv->stopping;
	pthread_mutex_unlock(&cn->srv->lock);
	return stopping;
}

static void conn_release(struct conn *cn)
{
	struct server *srv = cn->srv;
	uint64_t one = 1;
	int was_full;

	pthread_mutex_lock(&srv->lock);
	srv->slots[cn->slot] = NULL;
	was_full = srv->active-- == srv->max_conn;
	close(cn->fd); /* under the lock: stop() never shuts down a reused fd */
	pthread_mutex_unlock(&srv->lock);
	/* Only a full server has stopped accepting and waits for this. */
	if (was_full && write(srv->wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd overflow cannot happen with one write per connection */
	}
	free(cn);
}

/* ---- responses ------------------------------------------------------------------ */

static void cork(int fd, int on)
{
	setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

/* Send a short text response. Returns 0 or -1 (connection broken; logged). */
static int send_simple(struct conn *cn, struct kts *c, int status, int keep, int head_only,
		       const char *more)
{
	char extra[256], body[128], out[1024], m[256];
	size_t hl;
	int bl, rc;

	http_date(time(NULL), extra);
	if (more)
		strncat(extra, more, sizeof(extra) - strlen(extra) - 1);
	bl = snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));
	hl = http_format_head(out, sizeof(out), status, "text/plain; charset=utf-8", bl, keep, 1,
			      extra);
	if (!head_only && hl + (size_t)bl < sizeof(out)) {
		memcpy(out + hl, body, (size_t)bl);
		hl += (size_t)bl;
	}
	rc = tio_write_all(c, cn->fd, out, hl, 0);
	if (rc < 0) {
		logmsg("conn %s error: %s", cn->peer, tio_message(c, rc, "send", m, sizeof(m)));
		return -1;
	}
	return 0;
}

/* Answer a parsed request. Returns 0 to go on, 1 to close after the answer,
 * -1 if the connection is broken. */
static int respond(struct conn *cn, struct kts *c, const struct http_request *req, int keep)
{
	struct server *srv = cn->srv;
	int head_only = req->method == HTTP_HEAD;
	const char *name;
	struct stat st;
	char extra[256], out[1024], m[256];
	size_t hl;
	off_t off = 0;
	int ffd, rc;

	if (req->method == HTTP_OTHER)
		return send_simple(cn, c, 405, keep, 0, "Allow: GET, HEAD\r\n");
	if (req->version_minor >= 1 && !req->has_host) /* RFC 9112 3.2: 400, and we close */
		return send_simple(cn, c, 400, 0, head_only, NULL) < 0 ? -1 : 1;
	if (req->path_status == 403) /* a well-formed request for a forbidden path */
		return send_simple(cn, c, 403, keep, head_only, NULL);
	if (req->path_status) /* a malformed target: answer and close */
		return send_simple(cn, c, req->path_status, 0, head_only, NULL) < 0 ? -1 : 1;
	ffd = fsroot_open(&srv->root, req->path, req->trailing_slash, &st, &name);
	if (ffd < 0)
		return send_simple(cn, c, -ffd, keep, head_only, NULL);

	http_date(time(NULL), extra);
	hl = http_format_head(out, sizeof(out), 200, http_content_type(name), (long long)st.st_size,
			      keep, req->version_minor, extra);
	cork(cn->fd, 1);
	rc = tio_write_all(c, cn->fd, out, hl, 0);
	if (rc == 0 && !head_only && st.st_size > 0)
		rc = tio_sendfile_all(c, cn->fd, ffd, &off, (size_t)st.st_size, 0);
	cork(cn->fd, 0);
	close(ffd);
	if (rc < 0) {
		logmsg("conn %s error: %s", cn->peer, tio_message(c, rc, "send", m, sizeof(m)));
		return -1;
	}
	return 0;
}

/* Did the peer just drop the connection (no close_notify, or a reset)? Between
 * requests that is how many HTTP clients leave: not worth a log line. */
static int unclean_eof(const struct kts *c, ssize_t rc)
{
	return rc == KTS_ERR_TRUNCATED ||
	       (rc == KTS_ERR_SYS && strstr(kts_error(c), strerror(ECONNRESET)));
}

/* Read request heads and answer them until the connection should end. */
static void serve(struct conn *cn, struct kts *c)
{
	char *buf = malloc(HEAD_LIMIT), m[256];
	size_t have = 0;

	if (!buf) {
		logmsg("conn %s error: out of memory", cn->peer);
		return;
	}
	for (;;) {
		struct http_request req;
		long long discard;
		int used, keep;

		if (conn_set_idle(cn, 1))
			break;
		while ((used = http_parse_request(buf, have, HEAD_LIMIT, &req)) == 0) {
			ssize_t n = tio_read(c, cn->fd, buf + have, HEAD_LIMIT - have, 0);

			if (n > 0) {
				have += (size_t)n;
				continue;
			}
			if (n == 0 && have == 0)
				goto out; /* orderly close between requests */
			if (n == TIO_TIMEOUT && have > 0)
				(void)send_simple(cn, c, 408, 0, 0, NULL);
			else if (n < 0 && n != TIO_TIMEOUT && !conn_set_idle(cn, 1) &&
				 !(have == 0 && unclean_eof(c, n)))
				logmsg("conn %s error: %s", cn->peer,
				       tio_message(c, (int)n, "read", m, sizeof(m)));
			goto out;
		}
		conn_set_idle(cn, 0);
		if (used < 0) {
			(void)send_simple(cn, c, -used, 0, 0, NULL);
			break;
		}
		memmove(buf, buf + used, have - (size_t)used);
		have -= (size_t)used;

		keep = req.keep_alive;
		if (req.has_te) {
			/* We cannot find the end of a coded request body. */
			(void)send_simple(cn, c, 501, 0, req.method == HTTP_HEAD, NULL);
			break;
		}
		discard = req.content_length > 0 ? req.content_length : 0;
		if (discard > DISCARD_LIMIT) {
			keep = 0; /* answer, then close without reading the body */
			discard = 0;
		}
		while (discard > 0) {
			ssize_t n;

			if (have > 0) {
				size_t d = have < (size_t)discard ? have : (size_t)discard;

				memmove(buf, buf + d, have - d);
				have -= d;
				discard -= (long long)d;
				continue;
			}
			n = tio_read(c, cn->fd, buf, HEAD_LIMIT, 0);
			if (n <= 0)
				goto out;
			have = (size_t)n;
		}
		if (respond(cn, c, &req, keep) != 0 || !keep)
			break;
	}
out:
	free(buf);
}

static void conn_main(struct conn *cn)
{
	struct server *srv = cn->srv;
	struct timeval tv = { .tv_sec = srv->timeout_s, .tv_usec = 0 };
	struct kts *c;
	char prefix[sizeof(log_prefix) + ADDR_STR_MAX + 8];
	int rc;

	setsockopt(cn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(cn->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	c = kts_server_new(srv->cfg);
	if (!c) {
		logmsg("conn %s error: %s", cn->peer, kts_config_error(srv->cfg));
		goto done;
	}
	rc = kts_attach(c, cn->fd);
	if (rc == 0)
		rc = tio_handshake(c, cn->fd, 0);
	if (rc < 0) {
		char m[256];

		logmsg("conn %s error: %s", cn->peer, tio_message(c, rc, "handshake", m, sizeof(m)));
		goto done;
	}
	snprintf(prefix, sizeof(prefix), "%sconn %s ", log_prefix, cn->peer);
	opts_print_status(stderr, prefix, c, srv->reasons);
	serve(cn, c);
	(void)tio_close(c, cn->fd, 0);
	/* Lingering close: let the client read our last response before the kernel
	 * would answer its unread data with a reset. */
	shutdown(cn->fd, SHUT_WR);
	{
		struct timespec end, now;
		char sink[4096];

		tv.tv_sec = 0;
		tv.tv_usec = 250 * 1000;
		setsockopt(cn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += 2; /* at most about 2 s in all */
		do {
			if (recv(cn->fd, sink, sizeof(sink), 0) <= 0)
				break;
			clock_gettime(CLOCK_MONOTONIC, &now);
		} while (now.tv_sec < end.tv_sec ||
			 (now.tv_sec == end.tv_sec && now.tv_nsec < end.tv_nsec));
	}
done:
	kts_free(c);
	conn_release(cn);
}

/* Serve connections: the first one given, then queued ones until none comes
 * for THREAD_IDLE_S. A stop does not end idle threads: they stay parked until
 * the process exits, because a thread ending during exit() can be caught
 * half-way through freeing OpenSSL's per-thread state. */
static void *conn_thread(void *arg)
{
	struct conn *cn = arg;
	struct server *srv = cn->srv;

	while (cn) {
		struct timespec until;

		conn_main(cn);
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += THREAD_IDLE_S;
		pthread_mutex_lock(&srv->lock);
		srv->waiting++;
		while (!srv->queue && pthread_cond_timedwait(&srv->work, &srv->lock, &until) == 0)
			;
		cn = srv->queue;
		if (cn)
			srv->queue = cn->next; /* start_conn counted us out of waiting */
		else
			srv->waiting--;
		pthread_mutex_unlock(&srv->lock);
	}
	return NULL;
}

/* ---- accept loop and stop ------------------------------------------------------- */

static void start_conn(struct server *srv, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct conn *cn = calloc(1, sizeof(*cn));
	pthread_attr_t attr;
	pthread_t tid;
	int slot = -1, err;

	if (!cn) {
		logmsg("accept: out of memory");
		close(fd);
		return;
	}
	cn->srv = srv;
	cn->fd = fd;
	cn->idle = 1;
	addr_format(sa, salen, cn->peer, sizeof(cn->peer));
	pthread_mutex_lock(&srv->lock);
	for (int i = 0; i < srv->max_conn; i++)
		if (!srv->slots[i]) {
			slot = i;
			break;
		}
	if (slot >= 0) {
		srv->slots[slot] = cn;
		srv->active++;
		cn->slot = slot;
		if (srv->waiting > 0) { /* an idle thread takes it */
			struct conn **tail = &srv->queue;

			while (*tail)
				tail = &(*tail)->next;
			*tail = cn;
			srv->waiting--;
			pthread_cond_signal(&srv->work);
			pthread_mutex_unlock(&srv->lock);
			return;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	if (slot < 0) { /* cannot happen: main only accepts below the cap */
		close(fd);
		free(cn);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	err = pthread_create(&tid, &attr, conn_thread, cn);
	pthread_attr_destroy(&attr);
	if (err) {
		logmsg("conn %s error: pthread_create: %s", cn->peer, strerror(err));
		conn_release(cn);
	}
}

static int active_count(struct server *srv)
{
	int n;

	pthread_mutex_lock(&srv->lock);
	n = srv->active;
	pthread_mutex_unlock(&srv->lock);
	return n;
}

/* Cut connections: idle ones only, or all of them. */
static void cut_conns(struct server *srv, int all)
{
	pthread_mutex_lock(&srv->lock);
	for (int i = 0; i < srv->max_conn; i++) {
		struct conn *cn = srv->slots[i];

		if (cn && (all || cn->idle))
			shutdown(cn->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&srv->lock);
}

static void wait_idle(struct server *srv, int ms)
{
	while (ms > 0 && active_count(srv) > 0) {
		poll(NULL, 0, 50);
		ms -= 50;
		cut_conns(srv, 0); /* connections that finished a request are idle now */
	}
}

/* ---- ticket keys -------------------------------------------------------------- */

/* Read the key file and add the keys this process has not added yet, in file
 * order. Returns how many were added (*newest: the file's newest keyrev), or -1
 * with a message in err. Keys added before a failure stay added. */
static int keys_load(struct kts_config *cfg, struct keyfile *kf, unsigned int *newest, char *err,
		     size_t errlen)
{
	struct ticketfile_key *keys = calloc(TICKETFILE_MAX_KEYS, sizeof(*keys));
	struct ticketfile_seen *grown;
	char why[512];
	size_t first;
	int n, added = 0;

	if (!keys) {
		snprintf(err, errlen, "%s: out of memory", kf->path);
		return -1;
	}
	n = ticketfile_load(kf->path, keys, TICKETFILE_MAX_KEYS, err, errlen);
	if (n < 0)
		goto out;
	if (ticketfile_plan(keys, (size_t)n, kf->seen, kf->nseen, &first, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", kf->path, why);
		added = -1;
		goto out;
	}
	grown = realloc(kf->seen, (kf->nseen + (size_t)n - first + 1) * sizeof(*kf->seen));
	if (!grown) {
		snprintf(err, errlen, "%s: out of memory", kf->path);
		added = -1;
		goto out;
	}
	kf->seen = grown;
	for (size_t i = first; i < (size_t)n; i++) {
		struct ticketfile_seen *s = &kf->seen[kf->nseen];

		if (kts_config_add_ticket_key(cfg, keys[i].keyrev, keys[i].key, sizeof(keys[i].key)) <
		    0) {
			snprintf(err, errlen, "%s: line %d: %s", kf->path, keys[i].line,
				 kts_config_error(cfg));
			added = -1;
			break;
		}
		s->keyrev = keys[i].keyrev;
		if (ticketfile_digest(&keys[i], s->digest) < 0) {
			snprintf(err, errlen, "%s: line %d: SHA-256 failed", kf->path, keys[i].line);
			added = -1;
			break;
		}
		kf->nseen++;
		added++;
	}
	*newest = keys[n - 1].keyrev;
out:
	ticketfile_wipe(keys, TICKETFILE_MAX_KEYS);
	free(keys);
	return n < 0 ? -1 : added;
}

/* SIGHUP: add the keys that are new in the file. Keys gone from the file stay
 * until they expire or newer keys push them out of the ring. */
static void reload_keys(struct kts_config *cfg, struct keyfile *kf)
{
	char err[768];
	unsigned int newest = 0;
	int n;

	if (!kf->path) {
		logmsg("signal %d: no --ticket-keys file to reload", SIGHUP);
		return;
	}
	n = keys_load(cfg, kf, &newest, err, sizeof(err));
	if (n < 0)
		logmsg("ticket keys: reload failed, keeping the keys loaded before: %s", err);
	else
		logmsg("ticket keys: reloaded %s: %d new key(s), newest keyrev %u", kf->path, n,
		       newest);
}

/* Keep automatic ticket keys moving in a process that is not handshaking, so
 * its memory holds no old key (kts_config_refresh_ticket_keys). */
static void refresh_keys(struct server *srv)
{
	if (kts_config_refresh_ticket_keys(srv->cfg) < 0)
		logmsg("error: %s", kts_config_error(srv->cfg));
}

static void run(struct server *srv, int lfd, int sfd)
{
	for (;;) {
		struct pollfd p[3];
		int full = active_count(srv) >= srv->max_conn;

		p[0].fd = sfd;
		p[0].events = POLLIN;
		p[1].fd = srv->wake_fd;
		p[1].events = POLLIN;
		p[2].fd = full ? -1 : lfd;
		p[2].events = POLLIN;
		p[0].revents = p[1].revents = p[2].revents = 0;
		switch (poll(p, 3, KEYS_REFRESH_S * 1000)) {
		case -1:
			if (errno == EINTR)
				continue;
			opts_die(PROG, "poll: %s", strerror(errno));
			break;
		case 0:
			refresh_keys(srv);
			continue;
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si)) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				opts_die(PROG, "signalfd: %s", strerror(errno));
			}
			if (si.ssi_signo == SIGHUP) {
				reload_keys(srv->cfg, &srv->keys);
				continue;
			}
			logmsg("signal %u: stopping", si.ssi_signo);
			return;
		}
		if (p[1].revents) {
			uint64_t v;

			if (read(srv->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				opts_die(PROG, "eventfd: %s", strerror(errno));
		}
		if (p[2].revents) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);

			if (fd >= 0) {
				start_conn(srv, fd, (struct sockaddr *)&ss, sl);
			} else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
				   errno == ENOMEM) {
				logmsg("accept: %s", strerror(errno));
				poll(NULL, 0, 100); /* let connections finish */
			} else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
				logmsg("accept: %s", strerror(errno));
			}
		}
	}
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		opts_die(PROG, "%s: want a number from %d to %d", what, lo, hi);
	return (int)v;
}

/* One serving process: accept and serve until SIGINT/SIGTERM, then stop
 * gracefully. SIGINT, SIGTERM and SIGHUP are blocked on entry. Returns the exit
 * status. */
static int serve_process(struct server *srv, int lfd)
{
	pthread_condattr_t ca;
	sigset_t sigs;
	int sfd;

	srv->slots = calloc((size_t)srv->max_conn, sizeof(*srv->slots));
	if (!srv->slots)
		opts_die(PROG, "out of memory");
	pthread_mutex_init(&srv->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* idle timeouts ignore clock changes */
	pthread_cond_init(&srv->work, &ca);
	pthread_condattr_destroy(&ca);
	srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->wake_fd < 0)
		opts_die(PROG, "eventfd: %s", strerror(errno));
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		opts_die(PROG, "signalfd: %s", strerror(errno));

	run(srv, lfd, sfd);

	close(lfd);
	pthread_mutex_lock(&srv->lock);
	srv->stopping = 1;
	pthread_mutex_unlock(&srv->lock);
	cut_conns(srv, 0);
	wait_idle(srv, STOP_GRACE_MS);
	if (active_count(srv) > 0) {
		cut_conns(srv, 1);
		wait_idle(srv, 2000);
	}
	if (active_count(srv) > 0)
		logmsg("stopped with %d connection(s) still open", active_count(srv));
	else
		logmsg("stopped");
	/* Connection threads may still run: leave the config and root to exit(). */
	return 0;
}

/* ---- pre-forked workers ------------------------------------------------------- */

struct worker {
	pid_t pid; /* 0: not running */
	time_t started;
};

static pid_t start_worker(struct server *srv, int lfd, pid_t parent)
{
	pid_t pid;

	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		logmsg("fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0)
		return pid;
	/* Child: the parent's death stops us too (SIGTERM, read by our signalfd). */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
		_exit(1);
	{
		sigset_t chld;

		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		sigprocmask(SIG_UNBLOCK, &chld, NULL);
	}
	snprintf(log_prefix, sizeof(log_prefix), "worker %ld: ", (long)getpid());
	exit(serve_process(srv, lfd));
}

static const char *describe_exit(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, len, "ended (status 0x%x)", (unsigned)status);
	return buf;
}

/* The parent of --workers: fork the workers, forward SIGINT/SIGTERM/SIGHUP to
 * them, restart one that crashes (unless it crashed right after its start),
 * and return once all are gone: 0 if every worker that ended for good ended
 * cleanly. SIGINT, SIGTERM, SIGHUP and SIGCHLD are blocked on entry. */
static int supervise(struct server *srv, int lfd, int n)
{
	struct worker *w = calloc((size_t)n, sizeof(*w));
	pid_t self = getpid();
	sigset_t sigs;
	int live = 0, stopping = 0, failed = 0;
	char how[64];

	if (!w)
		opts_die(PROG, "out of memory");
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGCHLD);
	for (int i = 0; i < n; i++) {
		w[i].pid = start_worker(srv, lfd, self);
		if (w[i].pid < 0) {
			w[i].pid = 0;
			failed = 1;
			stopping = 1;
			break;
		}
		w[i].started = time(NULL);
		live++;
	}
	if (stopping) /* could not start them all: stop the ones we have */
		for (int i = 0; i < n; i++)
			if (w[i].pid > 0)
				kill(w[i].pid, SIGTERM);
	while (live > 0) {
		struct timespec tick = { .tv_sec = KEYS_REFRESH_S, .tv_nsec = 0 };
		siginfo_t si;
		pid_t pid;
		int status;

		if (sigtimedwait(&sigs, &si, &tick) < 0) {
			if (errno == EAGAIN) /* workers forked from now on get current keys */
				refresh_keys(srv);
			else if (errno != EINTR)
				opts_die(PROG, "sigtimedwait: %s", strerror(errno));
			continue;
		}
		if (si.si_signo == SIGHUP) {
			/* Our own copy too: workers restarted later start from it. */
			if (srv->keys.path)
				reload_keys(srv->cfg, &srv->keys);
			for (int i = 0; i < n; i++)
				if (w[i].pid > 0)
					kill(w[i].pid, SIGHUP);
			continue;
		}
		if (si.si_signo == SIGINT || si.si_signo == SIGTERM) {
			if (!stopping)
				logmsg("signal %d: stopping %d worker(s)", si.si_signo, live);
			stopping = 1;
			for (int i = 0; i < n; i++)
				if (w[i].pid > 0)
					kill(w[i].pid, si.si_signo);
			continue;
		}
		/* SIGCHLD: reap every worker that ended. */
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			int i, crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);

			for (i = 0; i < n && w[i].pid != pid; i++)
				;
			if (i == n)
				continue;
			w[i].pid = 0;
			live--;
			if (stopping || !crashed) {
				failed |= crashed;
				if (crashed || !stopping)
					logmsg("worker %ld %s", (long)pid,
					       describe_exit(status, how, sizeof(how)));
				continue;
			}
			if (time(NULL) - w[i].started < RESPAWN_MIN_S) {
				logmsg("worker %ld %s right after its start: not restarted", (long)pid,
				       describe_exit(status, how, sizeof(how)));
				failed = 1;
				continue;
			}
			w[i].pid = start_worker(srv, lfd, self);
			if (w[i].pid < 0) {
				w[i].pid = 0;
				logmsg("worker %ld %s: could not restart it", (long)pid,
				       describe_exit(status, how, sizeof(how)));
				failed = 1;
				continue;
			}
			w[i].started = time(NULL);
			live++;
			logmsg("worker %ld %s: restarted as worker %ld", (long)pid,
			       describe_exit(status, how, sizeof(how)), (long)w[i].pid);
		}
	}
	free(w);
	close(lfd);
	logmsg("stopped");
	return failed ? 1 : 0;
}

static unsigned int parse_uint(const char *s, unsigned int hi, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	if (*s == '-' || *s == '+')
		opts_die(PROG, "%s: want a number from 0 to %u", what, hi);
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > hi)
		opts_die(PROG, "%s: want a number from 0 to %u", what, hi);
	return (unsigned int)v;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		OPTS_LONG_COMMON,
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "cert", required_argument, NULL, OPT_CERT },
		{ "key", required_argument, NULL, OPT_KEY },
		{ "root", required_argument, NULL, OPT_ROOT },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "max-conn", required_argument, NULL, OPT_MAXCONN },
		{ "session-lifetime", required_argument, NULL, OPT_LIFETIME },
		{ "session-id", required_argument, NULL, OPT_SESSION_ID },
		{ "ticket-keys", required_argument, NULL, OPT_TICKET_KEYS },
		{ "num-tickets", required_argument, NULL, OPT_NUM_TICKETS },
		{ "session-cache", required_argument, NULL, OPT_SESSION_CACHE },
		{ "workers", required_argument, NULL, OPT_WORKERS },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static struct server srv;
	struct tool_opts o;
	const char *listen_spec = NULL, *cert = NULL, *key = NULL, *root = NULL;
	const char *session_id = NULL;
	long num_tickets = -1, cache_entries = -1;
	unsigned int lifetime = 0;
	int workers = 1;
	struct addr_spec la;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char err[1024], where[ADDR_STR_MAX];
	sigset_t sigs;
	int opt, lfd;

	memset(&o, 0, sizeof(o));
	srv.timeout_s = 30;
	srv.max_conn = 256;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt != OPT_CA && opts_handle(&o, opt, optarg))
			continue;
		switch (opt) {
		case OPT_LISTEN: listen_spec = optarg; break;
		case OPT_CERT: cert = optarg; break;
		case OPT_KEY: key = optarg; break;
		case OPT_ROOT: root = optarg; break;
		case OPT_TIMEOUT: srv.timeout_s = parse_int(optarg, 1, 86400, "--timeout"); break;
		case OPT_MAXCONN: srv.max_conn = parse_int(optarg, 1, 100000, "--max-conn"); break;
		case OPT_LIFETIME:
			lifetime = parse_uint(optarg, KTS_SESSION_LIFETIME_MAX, "--session-lifetime");
			break;
		case OPT_SESSION_ID: session_id = optarg; break;
		case OPT_TICKET_KEYS: srv.keys.path = optarg; break;
		case OPT_NUM_TICKETS: num_tickets = parse_uint(optarg, 16, "--num-tickets"); break;
		case OPT_SESSION_CACHE:
			cache_entries = parse_uint(optarg, 1000000, "--session-cache");
			break;
		case OPT_WORKERS: workers = parse_int(optarg, 1, WORKERS_MAX, "--workers"); break;
		case OPT_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !listen_spec || !cert || !key || !root) {
		usage(stderr);
		return 2;
	}
	if (!lifetime && (srv.keys.path || num_tickets >= 0 || cache_entries >= 0 || session_id))
		opts_die(PROG, "--%s needs --session-lifetime (resumption is off without it)",
			 srv.keys.path	     ? "ticket-keys"
			 : num_tickets >= 0   ? "num-tickets"
			 : cache_entries >= 0 ? "session-cache"
					      : "session-id");
	srv.reasons = o.status;
	if (addr_parse(listen_spec, &la, err, sizeof(err)) < 0)
		opts_die(PROG, "--listen: %s", err);
	if (fsroot_init(&srv.root, root, err, sizeof(err)) < 0)
		opts_die(PROG, "%s", err);

	/* The whole configuration, resumption included, before any fork: the
	 * automatic ticket keys and the session cache are shared with workers
	 * forked after they are set up. */
	srv.cfg = kts_config_new();
	if (!srv.cfg)
		opts_die(PROG, "cannot create TLS configuration");
	if (kts_config_set_cert_file(srv.cfg, cert) < 0)
		opts_die(PROG, "--cert %s: %s", cert, kts_config_error(srv.cfg));
	if (kts_config_set_key_file(srv.cfg, key) < 0)
		opts_die(PROG, "--key %s: %s", key, kts_config_error(srv.cfg));
	if (opts_apply(srv.cfg, &o, err, sizeof(err)) < 0)
		opts_die(PROG, "%s", err);
	if (kts_config_set_alpn(srv.cfg, "http/1.1") < 0)
		opts_die(PROG, "alpn: %s", kts_config_error(srv.cfg));
	if (kts_config_set_session_lifetime(srv.cfg, lifetime) < 0)
		opts_die(PROG, "--session-lifetime: %s", kts_config_error(srv.cfg));
	if (session_id && kts_config_set_session_id(srv.cfg, (const unsigned char *)session_id,
						    strlen(session_id)) < 0)
		opts_die(PROG, "--session-id: %s", kts_config_error(srv.cfg));
	if (num_tickets >= 0 && kts_config_set_num_tickets(srv.cfg, (unsigned int)num_tickets) < 0)
		opts_die(PROG, "--num-tickets: %s", kts_config_error(srv.cfg));
	if (cache_entries >= 0 && kts_config_set_session_cache(srv.cfg, (size_t)cache_entries) < 0)
		opts_die(PROG, "--session-cache: %s", kts_config_error(srv.cfg));
	if (srv.keys.path) {
		unsigned int newest = 0;
		int n = keys_load(srv.cfg, &srv.keys, &newest, err, sizeof(err));

		if (n < 0)
			opts_die(PROG, "--ticket-keys %s", err);
		logmsg("ticket keys: %d key(s) from %s, newest keyrev %u", n, srv.keys.path, newest);
	}

	/* Signals: SIGPIPE ignored; SIGINT/SIGTERM/SIGHUP blocked in every thread
	 * and read from a signalfd by the accept loop (the workers' parent waits
	 * for them and for SIGCHLD). */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	if (workers > 1)
		sigaddset(&sigs, SIGCHLD);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
		opts_die(PROG, "pthread_sigmask failed");

	lfd = addr_listen(&la, 128, err, sizeof(err));
	if (lfd < 0)
		opts_die(PROG, "%s", err);
	/* Workers share the socket: one that loses the race to accept gets
	 * EAGAIN instead of blocking. */
	if (workers > 1 && fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0)
		opts_die(PROG, "fcntl: %s", strerror(errno));
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0)
		opts_die(PROG, "getsockname: %s", strerror(errno));
	addr_format((struct sockaddr *)&ss, sl, where, sizeof(where));
	logmsg("listening on %s", where);
	return workers > 1 ? supervise(&srv, lfd, workers) : serve_process(&srv, lfd);
}
