/* kts-server - a small HTTPS/1.1 static file server over kts.
 * One detached thread per connection, up to --max-conn at once. */
#include <errno.h>
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
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"
#include "fsroot.h"
#include "http.h"
#include "opts.h"
#include "tio.h"

#define PROG "kts-server"
#define HEAD_LIMIT (16 * 1024)     /* request head limit: larger gets 431 */
#define DISCARD_LIMIT (1024 * 1024) /* request bodies we read and drop */
#define STOP_GRACE_MS 10000         /* how long a stop waits for busy connections */

enum { OPT_LISTEN = OPT_TOOL_FIRST, OPT_CERT, OPT_KEY, OPT_ROOT, OPT_TIMEOUT, OPT_MAXCONN,
       OPT_HELP };

struct server {
	struct kts_config *cfg;
	struct fsroot root;
	int timeout_s;
	int reasons;
	int max_conn;
	int wake_fd; /* eventfd: a connection slot was freed */
	pthread_mutex_t lock;
	struct conn **slots;
	int active;
	int stopping;
};

struct conn {
	struct server *srv;
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
		"%s"
		"  --help                  show this help\n",
		opts_help_common);
}


static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
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

	pthread_mutex_lock(&srv->lock);
	srv->slots[cn->slot] = NULL;
	srv->active--;
	close(cn->fd); /* under the lock: stop() never shuts down a reused fd */
	pthread_mutex_unlock(&srv->lock);
	if (write(srv->wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd overflow cannot happen with one write per connection */
	}
	free(cn);
}

/* ---- responses ------------------------------------------------------------------ */

static void cork(int fd, int on)
{
	setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

static void date_header(char *buf, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(buf, len, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

/* Send a short text response. Returns 0 or -1 (connection broken; logged). */
static int send_simple(struct conn *cn, struct kts *c, int status, int keep, int head_only,
		       const char *more)
{
	char extra[256], body[128], out[1024], m[256];
	size_t hl;
	int bl, rc;

	date_header(extra, sizeof(extra));
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
	ffd = fsroot_open(&srv->root, req->path, &st, &name);
	if (ffd < 0)
		return send_simple(cn, c, -ffd, keep, head_only, NULL);

	date_header(extra, sizeof(extra));
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

static void *conn_main(void *arg)
{
	struct conn *cn = arg;
	struct server *srv = cn->srv;
	struct timeval tv = { .tv_sec = srv->timeout_s, .tv_usec = 0 };
	struct kts *c;
	char prefix[ADDR_STR_MAX + 8];
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
	snprintf(prefix, sizeof(prefix), "conn %s ", cn->peer);
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
	}
	pthread_mutex_unlock(&srv->lock);
	if (slot < 0) { /* cannot happen: main only accepts below the cap */
		close(fd);
		free(cn);
		return;
	}
	cn->slot = slot;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	err = pthread_create(&tid, &attr, conn_main, cn);
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
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			opts_die(PROG, "poll: %s", strerror(errno));
		}
		if (p[0].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
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
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static struct server srv;
	struct tool_opts o;
	const char *listen_spec = NULL, *cert = NULL, *key = NULL, *root = NULL;
	struct addr_spec la;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char err[512], where[ADDR_STR_MAX];
	sigset_t sigs;
	int opt, lfd, sfd;

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
		case OPT_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !listen_spec || !cert || !key || !root) {
		usage(stderr);
		return 2;
	}
	srv.reasons = o.status;
	if (addr_parse(listen_spec, &la, err, sizeof(err)) < 0)
		opts_die(PROG, "--listen: %s", err);
	if (fsroot_init(&srv.root, root, err, sizeof(err)) < 0)
		opts_die(PROG, "%s", err);

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

	srv.slots = calloc((size_t)srv.max_conn, sizeof(*srv.slots));
	if (!srv.slots)
		opts_die(PROG, "out of memory");
	pthread_mutex_init(&srv.lock, NULL);
	srv.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv.wake_fd < 0)
		opts_die(PROG, "eventfd: %s", strerror(errno));

	/* Signals: SIGPIPE ignored; SIGINT/SIGTERM blocked in every thread and read
	 * from a signalfd by the accept loop. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
		opts_die(PROG, "pthread_sigmask failed");
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		opts_die(PROG, "signalfd: %s", strerror(errno));

	lfd = addr_listen(&la, 128, err, sizeof(err));
	if (lfd < 0)
		opts_die(PROG, "%s", err);
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0)
		opts_die(PROG, "getsockname: %s", strerror(errno));
	addr_format((struct sockaddr *)&ss, sl, where, sizeof(where));
	logmsg("listening on %s", where);

	run(&srv, lfd, sfd);

	close(lfd);
	pthread_mutex_lock(&srv.lock);
	srv.stopping = 1;
	pthread_mutex_unlock(&srv.lock);
	cut_conns(&srv, 0);
	wait_idle(&srv, STOP_GRACE_MS);
	if (active_count(&srv) > 0) {
		cut_conns(&srv, 1);
		wait_idle(&srv, 2000);
	}
	if (active_count(&srv) > 0)
		logmsg("stopped with %d connection(s) still open", active_count(&srv));
	else
		logmsg("stopped");
	/* Connection threads may still run: leave the config and root to exit(). */
	return 0;
}
