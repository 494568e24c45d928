/* kts-server - a small HTTPS/1.1 static file server over kts.
 * One detached thread serves a connection at a time, then waits for the next;
 * up to --max-conn connections at once, further ones are refused; with
 * --workers N, N pre-forked processes accept on one listening socket.
 * Every wait on a client has a deadline (deadline.h): the handshake and each
 * request complete within --timeout, sends move data every --timeout. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <kts.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "deadline.h"
#include "fsroot.h"
#include "http.h"
#include "keyfile.h"
#include "opts.h"
#include "ratelimit.h"
#include "server.h"
#include "tio.h"
#include "engine.h"

#define THREAD_IDLE_S 30            /* a connection thread with no work for this long ends */
#define KEYS_REFRESH_S 30           /* step automatic ticket keys, check the newest key this often */
#define REFUSE_LOG_MS 1000          /* at most one "refused" line a second */
#define REFUSE_GRACE_MS 50          /* --workers: a full worker leaves new clients to the others */

#define WORKERS_MAX 256
#define THREADS_MAX 1024
#define RESPAWN_MIN_S 1 /* a worker that dies sooner after its start is not restarted */

enum { OPT_LISTEN = OPT_TOOL_FIRST, OPT_CERT, OPT_KEY, OPT_ROOT, OPT_TIMEOUT, OPT_MAXCONN,
       OPT_LIFETIME, OPT_SESSION_ID, OPT_TICKET_KEYS, OPT_NUM_TICKETS, OPT_SESSION_CACHE,
       OPT_WORKERS, OPT_ENGINE, OPT_THREADS, OPT_CONTROL, OPT_SESSION_STORE, OPT_KEK, OPT_QUIET,
       OPT_TLS13_SEAL, OPT_NO_TLS13_SEAL, OPT_HELP };

struct conn {
	struct server *srv;
	struct conn *next; /* in srv->queue */
	int fd;
	int slot;
	int idle; /* waiting for a request (or handshaking): may be cut at stop */
	char peer[ADDR_PEER_MAX];
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
		"  --timeout SECONDS       handshake and request deadline, idle time between\n"
		"                          requests, send stall limit (default 30)\n"
		"  --max-conn N            concurrent connections (default 256); more are\n"
		"                          refused (accepted and closed)\n"
		"  --workers N             pre-fork N worker processes (default 1: no fork)\n"
		"  --engine uring|threads  io_uring rings (default) or a thread per connection\n"
		"  --threads N             uring engine: rings, one thread each, per process\n"
		"                          (default: the CPUs this process may run on)\n"
		"  --session-lifetime SECONDS\n"
		"                          resumption: ticket/session lifetime, 0 (off, the\n"
		"                          default) or 60..604800\n"
		"  --session-id STRING     session ID context, 1..32 bytes, or hex:HEX (default\n"
		"                          random); servers sharing tickets must share it\n"
		"  --ticket-keys FILE      ticket key set (ktsctl keys init), mode 0600/0400;\n"
		"                          reloaded when replaced and on SIGHUP (default:\n"
		"                          automatic keys)\n"
		"  --num-tickets N         TLS 1.3 tickets per full handshake (default 2)\n"
		"  --session-cache N       TLS 1.2 session-ID cache of N entries, shared by\n"
		"                          the workers (default: tickets only)\n"
		"  --session-store URL     TLS 1.2 sessions also in the fleet's Redis\n"
		"                          (redis://[[USER]:PASS@]HOST[:PORT]/NAME or @FILE),\n"
		"                          behind --session-cache; needs --kek\n"
		"  --kek FILE              the fleet's key-encryption key (ktsctl kek init)\n"
		"  --control PATH          control socket for ktsctl status, reload-keys,\n"
		"                          drain and stop (mode 0600; root and this user)\n"
		"  --quiet                 no status line per connection (errors are still\n"
		"                          logged; ktsctl status counts the offloads)\n"
		"  --no-tls13-seal         where the kernel has no kTLS, leave TLS 1.3 records\n"
		"                          to OpenSSL (less CPU per handshake, more per byte\n"
		"                          sent and memory per idle connection)\n"
		"%s"
		"  --help                  show this help\n",
		opts_help_common);
}


char log_prefix[32];

void logmsg(const char *fmt, ...)
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

/* A counter or flag of srv, read under its lock. */
static int locked_get(struct server *srv, const int *field)
{
	int v;

	pthread_mutex_lock(&srv->lock);
	v = *field;
	pthread_mutex_unlock(&srv->lock);
	return v;
}

static int active_count(struct server *srv)
{
	return locked_get(srv, &srv->active);
}

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
	stats_conn_close(srv->me);
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

/* A response's deadline: it fails when less than SEND_MIN_PROGRESS bytes
 * (or what is left) move in --timeout. */
static void send_deadline(const struct server *srv, struct deadline *dl)
{
	deadline_progress(dl, deadline_now(), srv->timeout_ms, SEND_MIN_PROGRESS);
}

/* Log a failed send; with total > 0, sent of the total body bytes went out. */
static void send_failed(struct conn *cn, struct kts *c, int rc, long long sent, long long total)
{
	char m[256], part[64] = "";

	if (total > 0)
		snprintf(part, sizeof(part), " (%lld of %lld body bytes sent)", sent, total);
	if (rc == TIO_TIMEOUT)
		logmsg("conn %s error: send: under %d KiB taken in %d s, the client is not "
		       "reading%s",
		       cn->peer, SEND_MIN_PROGRESS / 1024, cn->srv->timeout_s, part);
	else
		logmsg("conn %s error: %s%s", cn->peer, tio_message(c, rc, "send", m, sizeof(m)),
		       part);
}

/* n response bytes went out on c: count them by the path they took. */
static void count_sent(struct conn *cn, const struct kts *c, uint64_t n)
{
	stats_sent(cn->srv->me, kts_offload(c, KTS_TX) == KTS_PATH_KERNEL ? STATS_KERNEL : STATS_USER,
		   n);
}

/* Send a short text response. Returns 0 or -1 (connection broken; logged). */
static int send_simple(struct conn *cn, struct kts *c, int status, int keep, int head_only,
		       const char *more)
{
	char extra[256], body[128], out[1024];
	struct deadline dl;
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
	send_deadline(cn->srv, &dl);
	rc = tio_write_all(c, cn->fd, out, hl, &dl);
	if (rc < 0) {
		send_failed(cn, c, rc, 0, 0);
		return -1;
	}
	count_sent(cn, c, hl);
	return 0;
}

/* Answer a parsed request. Returns 0 to go on, 1 to close after the answer,
 * -1 if the connection is broken. */
static int respond(struct conn *cn, struct kts *c, const struct http_request *req, int keep)
{
	struct server *srv = cn->srv;
	int head_only = req->method == HTTP_HEAD;
	const char *name;
	struct deadline dl;
	struct stat st;
	char extra[256], out[1024];
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
	send_deadline(srv, &dl); /* head and body together */
	cork(cn->fd, 1);
	rc = tio_write_all(c, cn->fd, out, hl, &dl);
	if (rc == 0 && !head_only && st.st_size > 0)
		rc = tio_sendfile_all(c, cn->fd, ffd, &off, (size_t)st.st_size, &dl);
	cork(cn->fd, 0);
	close(ffd);
	count_sent(cn, c, (rc == 0 || off > 0 ? hl : 0) + (uint64_t)off);
	if (rc < 0) {
		send_failed(cn, c, rc, (long long)off, head_only ? 0 : (long long)st.st_size);
		return -1;
	}
	return 0;
}

/* ---- requests ------------------------------------------------------------------- */

/* How a connection ends: cleanly (close_notify, then a lingering close so the
 * client reads our last response), cleanly after the client asked to close
 * (close_notify, and a lingering close only if it sent more), or at once (the
 * connection broke, or the client does not read). */
enum ending { END_CLEAN, END_ASKED, END_ABORT };

/* Did the peer just drop the connection (no close_notify, or a reset)? Between
 * requests that is how many HTTP clients leave: not worth a log line. */
static int unclean_eof(const struct kts *c, ssize_t rc)
{
	return rc == KTS_ERR_TRUNCATED ||
	       (rc == KTS_ERR_SYS && strstr(kts_error(c), strerror(ECONNRESET)));
}

/* A read for a request gave no data (n <= 0; have bytes of the request so
 * far). A close_notify, or --timeout between requests, ends the connection
 * quietly; errors are logged unless the server is stopping (it cuts idle
 * connections) or the client just left between requests. */
static enum ending read_ended(struct conn *cn, struct kts *c, ssize_t n, size_t have)
{
	char m[256];

	if (n == 0 || n == TIO_TIMEOUT)
		return END_CLEAN;
	if (!locked_get(cn->srv, &cn->srv->stopping) && !(have == 0 && unclean_eof(c, n)))
		logmsg("conn %s error: %s", cn->peer, tio_message(c, (int)n, "read", m, sizeof(m)));
	return END_ABORT;
}

/* The request did not arrive within --timeout: log what came, answer 408. */
static enum ending too_slow(struct conn *cn, struct kts *c, const char *what)
{
	logmsg("conn %s error: %s within %d s: answered 408", cn->peer, what, cn->srv->timeout_s);
	return send_simple(cn, c, 408, 0, 0, NULL) < 0 ? END_ABORT : END_CLEAN;
}

/* Read and drop a request body of len bytes, the first of them in buf[0, *have),
 * before dl. Returns 0 (buf then holds what follows the body), or 1 when the
 * connection ends (*end: how). */
static int drop_body(struct conn *cn, struct kts *c, char *buf, size_t *have, long long len,
		     struct deadline *dl, enum ending *end)
{
	long long left = len;
	char what[96];
	ssize_t n;

	while (left > 0) {
		if (*have > 0) {
			size_t d = *have < (size_t)left ? *have : (size_t)left;

			memmove(buf, buf + d, *have - d);
			*have -= d;
			left -= (long long)d;
			continue;
		}
		n = tio_read(c, cn->fd, buf, HEAD_LIMIT, dl);
		if (n > 0) {
			*have = (size_t)n;
			continue;
		}
		snprintf(what, sizeof(what), "request body: %lld of %lld bytes", len - left, len);
		if (n == TIO_TIMEOUT) {
			*end = too_slow(cn, c, what);
		} else if (n == 0) {
			logmsg("conn %s error: %s, then the client closed", cn->peer, what);
			*end = END_CLEAN;
		} else {
			*end = read_ended(cn, c, n, 1);
		}
		return 1;
	}
	return 0;
}

/* Read requests and answer them until the connection should end. Between
 * requests a client may stay silent for --timeout; a request, head and the
 * body we read, must arrive within --timeout of its first byte. */
static enum ending serve(struct conn *cn, struct kts *c)
{
	struct server *srv = cn->srv;
	char *buf = malloc(HEAD_LIMIT), what[64];
	size_t have = 0;
	enum ending end = END_CLEAN;

	if (!buf) {
		logmsg("conn %s error: out of memory", cn->peer);
		return END_ABORT;
	}
	for (;;) {
		struct http_request req;
		struct deadline dl;
		long long body;
		ssize_t n;
		int used, keep, asked, rc;

		if (conn_set_idle(cn, 1))
			break;
		if (have == 0) {
			deadline_total(&dl, deadline_now(), srv->timeout_ms);
			n = tio_read(c, cn->fd, buf, HEAD_LIMIT, &dl);
			if (n <= 0) {
				end = read_ended(cn, c, n, 0);
				break;
			}
			have = (size_t)n;
		}
		deadline_total(&dl, deadline_now(), srv->timeout_ms);
		while ((used = http_parse_request(buf, have, HEAD_LIMIT, &req)) == 0) {
			n = tio_read(c, cn->fd, buf + have, HEAD_LIMIT - have, &dl);
			if (n > 0) {
				have += (size_t)n;
				continue;
			}
			if (n == TIO_TIMEOUT) {
				snprintf(what, sizeof(what), "request head: %zu bytes, incomplete", have);
				end = too_slow(cn, c, what);
			} else {
				end = read_ended(cn, c, n, have);
			}
			goto out;
		}
		conn_set_idle(cn, 0);
		if (used < 0) {
			end = send_simple(cn, c, -used, 0, 0, NULL) < 0 ? END_ABORT : END_CLEAN;
			break;
		}
		memmove(buf, buf + used, have - (size_t)used);
		have -= (size_t)used;

		keep = req.keep_alive;
		asked = !req.keep_alive;
		if (req.has_te) {
			/* We cannot find the end of a coded request body. */
			rc = send_simple(cn, c, 501, 0, req.method == HTTP_HEAD, NULL);
			end = rc < 0 ? END_ABORT : END_CLEAN;
			break;
		}
		/* Nothing we serve takes a body: read and drop it, unless it is too
		 * large, or the client waits for a 100 Continue before sending it
		 * (answered at once then, and the connection closed). */
		body = req.content_length > 0 ? req.content_length : 0;
		if (body > DISCARD_LIMIT || (req.expect_continue && (size_t)body > have)) {
			keep = 0;
			asked = 0; /* the body may still come */
			body = 0;
		}
		if (drop_body(cn, c, buf, &have, body, &dl, &end))
			break;
		rc = respond(cn, c, &req, keep);
		if (rc < 0)
			end = END_ABORT;
		else if (rc == 0 && asked && have == 0)
			end = END_ASKED;
		if (rc != 0 || !keep)
			break;
	}
out:
	free(buf);
	return end;
}

int sock_has_unread(int fd)
{
	int n = 0;

	return ioctl(fd, FIONREAD, &n) < 0 || n > 0;
}

/* Lingering close: send FIN, then read and drop what the client still sends,
 * until it is quiet for LINGER_QUIET_MS, at most cap_ms in all: let it read
 * our last response before the kernel would answer its unread data with a
 * reset. */
static void linger(int fd, int64_t cap_ms)
{
	struct deadline all;
	char sink[4096];

	shutdown(fd, SHUT_WR);
	deadline_total(&all, deadline_now(), cap_ms);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
		int ms = deadline_poll_ms(&all, deadline_now());
		ssize_t n;

		if (ms == 0)
			break;
		if (ms < 0 || ms > LINGER_QUIET_MS)
			ms = LINGER_QUIET_MS;
		if (poll(&p, 1, ms) <= 0)
			break;
		n = recv(fd, sink, sizeof(sink), 0);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
	}
}

static void conn_main(struct conn *cn)
{
	struct server *srv = cn->srv;
	struct deadline dl;
	struct kts *c;
	char prefix[sizeof(log_prefix) + ADDR_PEER_MAX + 8], m[256];
	enum ending end;
	int rc;

	c = kts_server_new(srv->cfg);
	if (!c) {
		logmsg("conn %s error: %s", cn->peer, kts_config_error(srv->cfg));
		goto done;
	}
	/* The whole handshake within --timeout, however the client sends it. */
	deadline_total(&dl, deadline_now(), srv->timeout_ms);
	rc = kts_attach(c, cn->fd);
	if (rc == 0)
		rc = tio_handshake(c, cn->fd, &dl);
	while (rc == KTS_WANT_SESSION) { /* --session-store: ask it, bounded */
		unsigned char id[32], der[KTS_SESSION_DER_MAX];
		ssize_t n = kts_session_wanted(c, id, sizeof(id));
		size_t len = n > 0 && srv->sessstore
				     ? sessredis_get_wait(srv->sessstore, id, (size_t)n, der, sizeof(der))
				     : 0;

		rc = kts_session_supply(c, der, len);
		OPENSSL_cleanse(der, len);
		if (rc == 0)
			rc = tio_handshake(c, cn->fd, &dl);
	}
	if (rc == TIO_TIMEOUT) {
		logmsg("conn %s error: handshake: not complete within %d s", cn->peer, srv->timeout_s);
		stats_handshake_failed(srv->me);
		goto done;
	}
	if (rc < 0) {
		logmsg("conn %s error: %s", cn->peer, tio_message(c, rc, "handshake", m, sizeof(m)));
		stats_handshake_failed(srv->me);
		goto done;
	}
	stats_handshake(srv->me, c);
	if (!srv->quiet) {
		snprintf(prefix, sizeof(prefix), "%sconn %s ", log_prefix, cn->peer);
		opts_print_status(stderr, prefix, c, srv->reasons);
	}
	end = serve(cn, c);
	if (end != END_ABORT) {
		deadline_total(&dl, deadline_now(), srv->timeout_ms);
		(void)tio_close(c, cn->fd, &dl);
		if (end == END_CLEAN || sock_has_unread(cn->fd))
			linger(cn->fd, srv->timeout_ms < LINGER_MAX_MS ? srv->timeout_ms : LINGER_MAX_MS);
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
		stats_conn_open(srv->me);
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
	if (slot < 0) { /* cannot happen: accept_one refuses at the cap */
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

/* The stop a signal asks for; 0 for other signals. */
static enum stop_mode stop_mode_of(uint32_t signo)
{
	return signo == SIGINT || signo == SIGTERM ? STOP_GRACEFUL
	       : signo == SIGUSR1		   ? STOP_DRAIN
	       : signo == SIGUSR2		   ? STOP_NOW
						   : 0;
}

/* Wait up to ms for every connection to end. With sfd, a stop signal
 * other than another drain (SIGINT, SIGTERM, SIGUSR2) ends the wait early:
 * returns 1, the caller cuts what is left. */
static int wait_idle(struct server *srv, int ms, int sfd)
{
	while (ms > 0 && active_count(srv) > 0) {
		struct pollfd p = {sfd, POLLIN, 0};
		struct signalfd_siginfo si;

		if (poll(&p, sfd >= 0 ? 1 : 0, 50) > 0 &&
		    read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
		    stop_mode_of(si.ssi_signo) && stop_mode_of(si.ssi_signo) != STOP_DRAIN) {
			logmsg("signal %u: stopping now, %d connection(s) still open", si.ssi_signo,
			       active_count(srv));
			return 1;
		}
		ms -= 50;
		cut_conns(srv, 0); /* connections that finished a request are idle now */
	}
	return 0;
}

/* ---- accepting, refusing ------------------------------------------------------ */

/* Every slot is busy: close the new connection at once rather than leave the
 * client waiting in the listen queue (a 503 would cost a handshake). Logged
 * at most once a second, with a count of those not logged. */
void server_refuse(struct server *srv, int fd, const struct sockaddr *sa, socklen_t salen)
{
	char peer[ADDR_PEER_MAX], more[64] = "";
	unsigned long held;
	int allow;

	close(fd);
	stats_refused(srv->me);
	pthread_mutex_lock(&srv->lock); /* rings refuse from several threads */
	allow = ratelimit_allow(&srv->refusals, deadline_now(), &held);
	pthread_mutex_unlock(&srv->lock);
	if (!allow)
		return;
	addr_format(sa, salen, peer, sizeof(peer));
	if (held)
		snprintf(more, sizeof(more), " (and %lu more since the last such line)", held);
	logmsg("conn %s refused: all %d connections busy (--max-conn)%s", peer, srv->max_conn,
	       more);
}

/* Take one client from the listen queue: serve it, or refuse it when every
 * slot is busy. Returns 0, or -1 if none was waiting (or accept failed). */
static int accept_one(struct server *srv, int lfd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			logmsg("accept: %s", strerror(errno));
			poll(NULL, 0, 100); /* let connections finish */
		} else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
			logmsg("accept: %s", strerror(errno));
		}
		return -1;
	}
	if (active_count(srv) >= srv->max_conn)
		server_refuse(srv, fd, (struct sockaddr *)&ss, sl);
	else
		start_conn(srv, fd, (struct sockaddr *)&ss, sl);
	return 0;
}

/* ---- ticket keys -------------------------------------------------------------- */

/* The --ticket-keys file was replaced, SIGHUP or the control socket: the
 * set in it replaces the one in use (a bad file keeps it). msg gets the log
 * line. Returns 0, or -1 when the keys in use stay. */
static int reload_keys(struct server *srv, const char *why, char *msg, size_t len)
{
	int rc;

	if (!srv->keys.path) {
		snprintf(msg, len, "%s: no --ticket-keys file to reload", why);
		logmsg("%s", msg);
		return -1;
	}
	rc = keyfile_reload(&srv->keys, srv->cfg, why, msg, len);
	logmsg("%s", msg);
	stats_keys_publish(srv->me, &srv->keys, rc == 0, msg);
	return rc;
}

/* Periodic: keep automatic ticket keys moving also in a process that is not
 * handshaking, so its memory holds no old key (kts_config_refresh_ticket_keys);
 * say when another --ticket-keys key starts sealing by its time, or none
 * does (the process that owns the keys says it: not a worker). */
static void housekeeping(struct server *srv)
{
	char msg[1024];

	if (kts_config_refresh_ticket_keys(srv->cfg) < 0)
		logmsg("error: %s", kts_config_error(srv->cfg));
	if (!srv->worker && keyfile_check(&srv->keys, (int64_t)time(NULL), msg, sizeof(msg)))
		logmsg("%s", msg);
}

/* A poll error to wait again after: a signal, a moment short of memory, or
 * the kernel's own restart code (516, ERESTART_RESTARTBLOCK), which leaks
 * out when a debugger or strace attaches: none is a reason to stop serving. */
static int poll_again(int e)
{
	return e == EINTR || e == ENOMEM || e == 516;
}

/* Milliseconds from now until housekeeping is due, given its last run. */
static int housekeeping_in(const struct server *srv, int64_t last, int64_t now)
{
	int64_t ms = last + KEYS_REFRESH_S * 1000 - now;
	int64_t check = srv->worker ? -1 : keyfile_next_check_ms(&srv->keys, (int64_t)time(NULL));

	if (check >= 0 && check < ms)
		ms = check;
	return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

static const char *stop_name(enum stop_mode m)
{
	return m == STOP_DRAIN ? "draining" : m == STOP_NOW ? "stopping now" : "stopping";
}

/* What the control socket asked of the loop that serves it. */
struct ctl_state {
	struct server *srv;
	enum stop_mode stop; /* 0: go on */
	int reloaded;        /* reload-keys: the supervisor tells its workers */
};

static json_t *answer(void *arg, enum control_cmd cmd)
{
	struct ctl_state *st = arg;
	struct server *srv = st->srv;
	char msg[1024];
	json_t *j;
	int rc;

	switch (cmd) {
	case CTL_STATUS: return server_status(srv);
	case CTL_RELOAD_KEYS:
		rc = reload_keys(srv, "control socket", msg, sizeof(msg));
		st->reloaded = 1;
		j = rc == 0 ? control_ok() : control_error(msg);
		if (j)
			json_object_set_new(j, "message", control_text(msg));
		return j;
	case CTL_DRAIN:
	case CTL_STOP:
		st->stop = cmd == CTL_DRAIN ? STOP_DRAIN : STOP_NOW;
		logmsg("control socket: %s", stop_name(st->stop));
		return control_ok();
	}
	return control_error("unknown command");
}

enum stop_mode server_loop(struct server *srv, int lfd, int sfd)
{
	int64_t last = deadline_now();
	struct ctl_state cs = {srv, 0, 0};
	char msg[1024];

	for (;;) {
		struct pollfd p[4 + 1 + CONTROL_CLIENTS];
		int full = active_count(srv) >= srv->max_conn;
		/* Full and sharing the socket with other workers: leave new clients
		 * to one with a free slot for REFUSE_GRACE_MS, then refuse them. */
		int hold = full && srv->shared_listen;
		int ms = housekeeping_in(srv, last, deadline_now());
		int cms = control_timeout_ms(&srv->ctl, deadline_now()), nctl;

		if (hold && ms > REFUSE_GRACE_MS)
			ms = REFUSE_GRACE_MS;
		if (cms >= 0 && cms < ms)
			ms = cms;
		p[0].fd = sfd;
		p[0].events = POLLIN;
		p[1].fd = srv->wake_fd;
		p[1].events = POLLIN;
		p[2].fd = hold ? -1 : lfd;
		p[2].events = POLLIN;
		p[3].fd = srv->keywatch.fd; /* -1 in workers and without --ticket-keys */
		p[3].events = POLLIN;
		p[0].revents = p[1].revents = p[2].revents = p[3].revents = 0;
		nctl = control_pollfds(&srv->ctl, p + 4);
		if (poll(p, (nfds_t)(4 + nctl), ms) < 0) {
			if (poll_again(errno))
				continue;
			opts_die(PROG, "poll: %s", strerror(errno));
		}
		if (housekeeping_in(srv, last, deadline_now()) == 0) {
			housekeeping(srv);
			last = deadline_now();
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si)) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				opts_die(PROG, "signalfd: %s", strerror(errno));
			}
			if (si.ssi_signo == SIGHUP) {
				reload_keys(srv, "SIGHUP", msg, sizeof(msg));
				continue;
			}
			cs.stop = stop_mode_of(si.ssi_signo);
			logmsg("signal %u: %s", si.ssi_signo, stop_name(cs.stop));
			break;
		}
		control_serve(&srv->ctl, p + 4, nctl, answer, &cs);
		if (cs.stop)
			break;
		if (p[3].revents && filewatch_changed(&srv->keywatch))
			reload_keys(srv, "file replaced", msg, sizeof(msg));
		if (p[1].revents) {
			uint64_t v;

			if (read(srv->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				opts_die(PROG, "eventfd: %s", strerror(errno));
		}
		if (p[2].revents)
			(void)accept_one(srv, lfd);
		else if (hold)
			for (int i = 0; i < 64 && active_count(srv) >= srv->max_conn; i++)
				if (accept_one(srv, lfd) < 0)
					break;
	}
	control_close(&srv->ctl); /* a stopping server answers no more */
	return cs.stop;
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

/* One serving process: accept and serve until a stop signal or command,
 * then stop as it asks (enum stop_mode). SIGINT, SIGTERM, SIGHUP, SIGUSR1 and
 * SIGUSR2 are blocked on entry. Returns the exit status. */
static int serve_process(struct server *srv, int lfd)
{
	pthread_condattr_t ca;
	enum stop_mode mode;
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
	if (srv->has_store) {
		char err[256];

		srv->sessstore = sessredis_start(&srv->store_url, &srv->kek, srv->me->session_store,
						 err, sizeof(err));
		if (!srv->sessstore)
			opts_die(PROG, "%s", err);
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		opts_die(PROG, "signalfd: %s", strerror(errno));

	if (srv->engine == ENGINE_URING) {
		int rc = engine_uring_serve(srv, lfd, sfd);

		close(sfd);
		return rc;
	}
	logmsg("engine threads: a thread per connection, up to %d", srv->max_conn);
	mode = server_loop(srv, lfd, sfd);

	close(lfd);
	pthread_mutex_lock(&srv->lock);
	srv->stopping = 1;
	pthread_mutex_unlock(&srv->lock);
	cut_conns(srv, mode == STOP_NOW);
	/* A drain waits for every connection (each has its --timeout deadlines),
	 * unless a stop signal comes. */
	wait_idle(srv, mode == STOP_DRAIN ? INT_MAX : STOP_GRACE_MS, sfd);
	if (active_count(srv) > 0) {
		cut_conns(srv, 1);
		wait_idle(srv, 2000, -1);
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

/* Worker i, counting in stats[1 + i]. parent_fd: the supervisor's own
 * signalfd (-1 before it has one), which a worker must not carry. */
static pid_t start_worker(struct server *srv, int i, int lfd, pid_t parent, int parent_fd)
{
	struct stats_proc *slot = &srv->stats[1 + i];
	pid_t pid;

	stats_claim(slot, 0); /* pid 0: the status skips it until it runs */
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		logmsg("fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0) {
		__atomic_store_n(&slot->pid, pid, __ATOMIC_RELEASE);
		return pid;
	}
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
	srv->worker = 1;
	srv->me = slot;
	stats_keys_copy(slot, &srv->stats[0]); /* the keys it holds are the parent's */
	control_forget(&srv->ctl);
	filewatch_close(&srv->keywatch);
	if (parent_fd >= 0)
		close(parent_fd);
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

/* Send sig to every running worker. */
static void signal_workers(const struct worker *w, int n, int sig)
{
	for (int i = 0; i < n; i++)
		if (w[i].pid > 0)
			kill(w[i].pid, sig);
}

static int stop_signal(enum stop_mode m)
{
	return m == STOP_DRAIN ? SIGUSR1 : m == STOP_NOW ? SIGUSR2 : SIGTERM;
}

/* The parent of --workers: fork the workers, forward stop signals and SIGHUP
 * to them, answer the control socket for all of them, restart one that
 * crashes (unless it crashed right after its start), and return once all are
 * gone: 0 if every worker that ended for good ended cleanly. SIGINT, SIGTERM,
 * SIGHUP, SIGUSR1, SIGUSR2 and SIGCHLD are blocked on entry. */
static int supervise(struct server *srv, int lfd, int n)
{
	struct worker *w = calloc((size_t)n, sizeof(*w));
	pid_t self = getpid();
	struct ctl_state cs = {srv, 0, 0};
	sigset_t sigs;
	int live = 0, stopping = 0, failed = 0, sfd = -1;
	int64_t last = deadline_now();
	char how[64], msg[1024];

	if (!w)
		opts_die(PROG, "out of memory");
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	sigaddset(&sigs, SIGCHLD);
	for (int i = 0; i < n; i++) {
		w[i].pid = start_worker(srv, i, lfd, self, sfd);
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
		signal_workers(w, n, SIGTERM);
	sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		opts_die(PROG, "signalfd: %s", strerror(errno));
	while (live > 0) {
		struct pollfd p[2 + 1 + CONTROL_CLIENTS] = {{sfd, POLLIN, 0},
							     {srv->keywatch.fd, POLLIN, 0}};
		int nctl = control_pollfds(&srv->ctl, p + 2);
		int ms = housekeeping_in(srv, last, deadline_now());
		int cms = control_timeout_ms(&srv->ctl, deadline_now());
		struct signalfd_siginfo si;
		int hup = 0;
		pid_t pid;
		int status;

		if (cms >= 0 && cms < ms)
			ms = cms;
		if (poll(p, (nfds_t)(2 + nctl), ms) < 0 && !poll_again(errno))
			opts_die(PROG, "poll: %s", strerror(errno));
		if (housekeeping_in(srv, last, deadline_now()) == 0) {
			housekeeping(srv); /* workers forked from now on get current keys */
			last = deadline_now();
		}
		cs.reloaded = 0;
		cs.stop = 0;
		control_serve(&srv->ctl, p + 2, nctl, answer, &cs);
		hup = cs.reloaded;
		if (p[1].revents && filewatch_changed(&srv->keywatch)) {
			reload_keys(srv, "file replaced", msg, sizeof(msg));
			hup = 1;
		}
		if (p[0].revents && read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si)) {
			if (errno != EAGAIN && errno != EINTR)
				opts_die(PROG, "signalfd: %s", strerror(errno));
			p[0].revents = 0;
		}
		if (p[0].revents && si.ssi_signo == SIGHUP) {
			/* Our own copy too: workers restarted later start from it. */
			if (srv->keys.path)
				reload_keys(srv, "SIGHUP", msg, sizeof(msg));
			hup = 1;
		}
		if (hup) /* each worker reloads the file itself */
			signal_workers(w, n, SIGHUP);
		if (p[0].revents && stop_mode_of(si.ssi_signo)) {
			cs.stop = stop_mode_of(si.ssi_signo);
			logmsg("signal %u: %s %d worker(s)", si.ssi_signo, stop_name(cs.stop), live);
		}
		if (cs.stop) {
			stopping = 1;
			signal_workers(w, n, stop_signal(cs.stop));
		}
		if (!p[0].revents || si.ssi_signo != SIGCHLD)
			continue;
		/* SIGCHLD: reap every worker that ended. */
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			int i, crashed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);

			for (i = 0; i < n && w[i].pid != pid; i++)
				;
			if (i == n)
				continue;
			w[i].pid = 0;
			live--;
			/* What it counted stays in the totals. */
			__atomic_store_n(&srv->stats[1 + i].pid, 0, __ATOMIC_RELEASE);
			stats_fold(srv->me, &srv->stats[1 + i]);
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
			w[i].pid = start_worker(srv, i, lfd, self, sfd);
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
	close(sfd);
	close(lfd);
	control_close(&srv->ctl);
	logmsg("stopped");
	return failed ? 1 : 0;
}

/* --session-store URL --kek FILE: the config's store hooks now (before any
 * fork); each serving process starts its own store thread (serve_process).
 * A Redis that does not answer at start is said, not fatal: the local
 * cache serves until it does. */
static void session_store_setup(struct server *srv, const char *url, const char *kek,
				int have_cache)
{
	struct kts_session_store ops = sessredis_ops(&srv->sessstore);
	char err[1024];
	struct store *probe;

	if (!url || !kek)
		opts_die(PROG, "--session-store and --kek go together");
	if (!have_cache)
		opts_die(PROG, "--session-store needs --session-cache (the local cache in front)");
	if (store_url_parse(url, &srv->store_url, err, sizeof(err)) < 0)
		opts_die(PROG, "--session-store: %s", err);
	if (kek_load(kek, geteuid(), &srv->kek, err, sizeof(err)) < 0)
		opts_die(PROG, "--kek %s", err);
	if (kts_config_set_session_store(srv->cfg, &ops) < 0)
		opts_die(PROG, "--session-store: %s", kts_config_error(srv->cfg));
	srv->has_store = 1;
	probe = store_open(&srv->store_url, err, sizeof(err));
	if (probe)
		logmsg("session store: %s", srv->store_url.shown);
	else
		logmsg("session store: %s; serving from the local cache until it answers", err);
	store_close(probe);
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
		{ "engine", required_argument, NULL, OPT_ENGINE },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "control", required_argument, NULL, OPT_CONTROL },
		{ "session-store", required_argument, NULL, OPT_SESSION_STORE },
		{ "kek", required_argument, NULL, OPT_KEK },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "tls13-seal", no_argument, NULL, OPT_TLS13_SEAL },
		{ "no-tls13-seal", no_argument, NULL, OPT_NO_TLS13_SEAL },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static struct server srv;
	struct tool_opts o;
	const char *listen_spec = NULL, *cert = NULL, *key = NULL, *root = NULL;
	const char *session_id = NULL, *control = NULL, *session_store = NULL, *kek = NULL;
	long num_tickets = -1, cache_entries = -1;
	unsigned int lifetime = 0;
	int tls13_seal = 1; /* a tenth of a resumed handshake for 4x less memory idle */
	int workers = 1;
	struct addr_spec la;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char err[1024], where[ADDR_PEER_MAX];
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
		case OPT_ENGINE:
			if (strcmp(optarg, "uring") == 0)
				srv.engine = ENGINE_URING;
			else if (strcmp(optarg, "threads") == 0)
				srv.engine = ENGINE_THREADS;
			else
				opts_die(PROG, "--engine: want uring or threads");
			break;
		case OPT_THREADS: srv.threads = parse_int(optarg, 1, THREADS_MAX, "--threads"); break;
		case OPT_CONTROL: control = optarg; break;
		case OPT_SESSION_STORE: session_store = optarg; break;
		case OPT_KEK: kek = optarg; break;
		case OPT_QUIET: srv.quiet = 1; break;
		case OPT_TLS13_SEAL: tls13_seal = 1; break;
		case OPT_NO_TLS13_SEAL: tls13_seal = 0; break;
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
	if (srv.threads == 0)
		srv.threads = engine_default_threads();
	if (srv.quiet && o.status)
		opts_die(PROG, "--quiet and --status: choose one (--quiet drops the status lines)");
	srv.reasons = o.status;
	srv.timeout_ms = (int64_t)srv.timeout_s * 1000;
	srv.shared_listen = workers > 1;
	srv.workers = workers;
	srv.started = (int64_t)time(NULL);
	control_init(&srv.ctl);
	srv.stats = stats_new(workers > 1 ? 1 + workers : 1);
	if (!srv.stats)
		opts_die(PROG, "shared memory for the counters: %s", strerror(errno));
	srv.me = &srv.stats[0];
	stats_claim(srv.me, getpid());
	ratelimit_init(&srv.refusals, REFUSE_LOG_MS);
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
	/* kts-server issues no late tickets: an idle kTLS connection keeps
	 * nothing of OpenSSL. */
	kts_config_set_release_openssl(srv.cfg, 1);
	kts_config_set_tls13_seal(srv.cfg, tls13_seal);
	if (kts_config_set_alpn(srv.cfg, "http/1.1") < 0)
		opts_die(PROG, "alpn: %s", kts_config_error(srv.cfg));
	if (kts_config_set_session_lifetime(srv.cfg, lifetime) < 0)
		opts_die(PROG, "--session-lifetime: %s", kts_config_error(srv.cfg));
	if (session_id) {
		unsigned char sid[OPTS_SESSION_ID_MAX];
		char why[160];
		size_t sid_len;

		if (opts_session_id(session_id, sid, &sid_len, why, sizeof(why)) < 0)
			opts_die(PROG, "--session-id: %s", why);
		if (kts_config_set_session_id(srv.cfg, sid, sid_len) < 0)
			opts_die(PROG, "--session-id: %s", kts_config_error(srv.cfg));
	}
	if (num_tickets >= 0 && kts_config_set_num_tickets(srv.cfg, (unsigned int)num_tickets) < 0)
		opts_die(PROG, "--num-tickets: %s", kts_config_error(srv.cfg));
	if (cache_entries >= 0 && kts_config_set_session_cache(srv.cfg, (size_t)cache_entries) < 0)
		opts_die(PROG, "--session-cache: %s", kts_config_error(srv.cfg));
	if (session_store || kek)
		session_store_setup(&srv, session_store, kek, cache_entries >= 0);
	srv.keywatch.fd = -1;
	if (srv.keys.path) {
		if (keyfile_start(&srv.keys, srv.cfg, err, sizeof(err)) < 0)
			opts_die(PROG, "--ticket-keys %s", err);
		logmsg("%s", err);
		stats_keys_publish(srv.me, &srv.keys, 1, err);
		/* Workers are told by their parent (SIGHUP), so one process watches. */
		if (filewatch_open(&srv.keywatch, srv.keys.path, err, sizeof(err)) < 0)
			logmsg("ticket keys: not watching for a replaced file (SIGHUP still "
			       "reloads): %s",
			       err);
	}

	/* Signals: SIGPIPE ignored; the stop signals (SIGINT, SIGTERM, SIGUSR1,
	 * SIGUSR2) and SIGHUP blocked in every thread and read from a signalfd by
	 * the process loop (the workers' parent waits for them and SIGCHLD). */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	if (workers > 1)
		sigaddset(&sigs, SIGCHLD);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
		opts_die(PROG, "pthread_sigmask failed");

	lfd = addr_listen(&la, 128, err, sizeof(err));
	if (lfd < 0)
		opts_die(PROG, "%s", err);
	/* Non-blocking: a client gone between poll() and accept(), or taken by
	 * another worker, means EAGAIN instead of blocking. */
	if (fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0)
		opts_die(PROG, "fcntl: %s", strerror(errno));
	/* TLS clients speak first: a connection is accepted with its ClientHello
	 * (or after one SYN-ACK resend, about a second, if it sends nothing),
	 * which saves the server a wakeup per connection. */
	if (setsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &(int){1}, sizeof(int)) < 0)
		logmsg("listen: TCP_DEFER_ACCEPT refused (%s): connections are accepted before "
		       "their first bytes", strerror(errno));
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0)
		opts_die(PROG, "getsockname: %s", strerror(errno));
	addr_format((struct sockaddr *)&ss, sl, where, sizeof(where));
	snprintf(srv.listen_addr, sizeof(srv.listen_addr), "%s", where);
	if (control && control_open(&srv.ctl, control, err, sizeof(err)) < 0)
		opts_die(PROG, "--control %s", err);
	if (control)
		logmsg("control socket %s", control);
	logmsg("listening on %s", where);
	return workers > 1 ? supervise(&srv, lfd, workers) : serve_process(&srv, lfd);
}
