/* kts-client - TLS client over kts: a pipe between stdin/stdout and a server,
 * or a one-shot HTTP/1.1 GET that writes the response body to stdout. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <kts.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr.h"
#include "http.h"
#include "opts.h"
#include "tio.h"

#define PROG "kts-client"
#define BUF_SIZE (64 * 1024)
#define HEAD_LIMIT (64 * 1024)

enum { OPT_INSECURE = OPT_TOOL_FIRST, OPT_SERVERNAME, OPT_GET, OPT_INCLUDE, OPT_TIMEOUT,
       OPT_SESSION_FILE, OPT_HELP };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [options] HOST:PORT\n"
		"Connect with TLS (kernel TLS where possible). Without --get, send stdin to the\n"
		"server and write what it sends to stdout until both sides have finished.\n"
		"HOST is a name, an IPv4 address or [IPv6].\n"
		"\n"
		"  --get PATH              send an HTTP/1.1 GET for PATH, write the body to stdout;\n"
		"                          a status other than 2xx fails\n"
		"  --include               with --get, also write the response head to stdout\n"
		"  --ca FILE               trust anchors (PEM); default: the system store\n"
		"  --insecure              do not verify the server certificate\n"
		"  --servername NAME       name for SNI and verification (default: HOST; a\n"
		"                          numeric address is matched against the certificate's\n"
		"                          IP addresses and not sent as SNI)\n"
		"  --timeout SECONDS       give up when the connection stalls this long\n"
		"                          (default: wait forever)\n"
		"  --session-file FILE     resume TLS sessions through FILE (created with mode\n"
		"                          0600 if missing; must be a regular file of yours\n"
		"                          with mode 0600, not a symbolic link)\n"
		"%s"
		"  --help                  show this help\n",
		opts_help_common);
}


/* Fail on a kts/tio result: the library's message names the operation. */
static void kfail(const struct kts *c, long rc, const char *what) __attribute__((noreturn));
static void kfail(const struct kts *c, long rc, const char *what)
{
	char buf[256];

	opts_die(PROG, "%s", tio_message(c, (int)rc, what, buf, sizeof(buf)));
}

static void write_out(const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			opts_die(PROG, "write to stdout: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* ---- pipe mode ---------------------------------------------------------- */

static int want_events(long rc)
{
	if (rc == KTS_WANT_WRITE)
		return POLLOUT;
	return POLLIN;
}

static void pump(struct kts *c, int fd, int timeout_ms)
{
	static char in[BUF_SIZE], out[BUF_SIZE];
	size_t in_off = 0, in_len = 0;
	int stdin_eof = 0, peer_eof = 0, close_sent = 0;

	for (;;) {
		int read_wait = 0, write_wait = 0, nfds;
		struct pollfd p[2];

		/* Receive: drain everything kts can give us right now. */
		while (!peer_eof) {
			ssize_t n = kts_read(c, out, sizeof(out));

			if (n > 0) {
				write_out(out, (size_t)n);
			} else if (n == 0) {
				peer_eof = 1;
			} else if (n == KTS_WANT_READ || n == KTS_WANT_WRITE) {
				read_wait = want_events(n);
				break;
			} else {
				kfail(c, n, "read");
			}
		}
		/* Send what stdin gave us. */
		while (in_off < in_len) {
			ssize_t n = kts_write(c, in + in_off, in_len - in_off);

			if (n > 0) {
				in_off += (size_t)n;
			} else if (n == KTS_WANT_READ || n == KTS_WANT_WRITE) {
				write_wait = want_events(n);
				break;
			} else {
				kfail(c, n == 0 ? TIO_PEER_CLOSED : n, "write");
			}
		}
		if (in_off == in_len && stdin_eof && !close_sent) {
			int rc = kts_close(c);

			if (rc == KTS_OK)
				close_sent = 1;
			else if (rc == KTS_WANT_READ || rc == KTS_WANT_WRITE)
				write_wait = want_events(rc);
			else
				kfail(c, rc, "close");
		}
		if (peer_eof && close_sent)
			return;

		p[0].events = (short)(read_wait | write_wait);
		p[0].fd = p[0].events ? fd : -1; /* -1: no POLLHUP wake-ups for nothing */
		p[0].revents = 0;
		nfds = 1;
		if (!stdin_eof && in_off == in_len) {
			p[1].fd = STDIN_FILENO;
			p[1].events = POLLIN;
			p[1].revents = 0;
			nfds = 2;
		}
		if (p[0].events == 0 && nfds == 1)
			continue; /* progress is possible without waiting */
		{
			int rc = poll(p, (nfds_t)nfds, timeout_ms);

			if (rc < 0 && errno == EINTR)
				continue;
			if (rc < 0)
				opts_die(PROG, "poll: %s", strerror(errno));
			if (rc == 0)
				opts_die(PROG, "connection timed out");
		}
		if (nfds == 2 && p[1].revents) {
			ssize_t n = read(STDIN_FILENO, in, sizeof(in));

			if (n < 0 && errno != EINTR && errno != EAGAIN)
				opts_die(PROG, "read stdin: %s", strerror(errno));
			if (n == 0)
				stdin_eof = 1;
			if (n > 0) {
				in_off = 0;
				in_len = (size_t)n;
			}
		}
	}
}

/* ---- --get mode ----------------------------------------------------------- */

static void http_get(struct kts *c, int fd, const char *path, const char *hosthdr,
		     int include, struct deadline *dl, int timeout_ms)
{
	static char buf[BUF_SIZE + 1];
	char req[HTTP_PATH_MAX + 1024];
	struct http_response resp;
	size_t have = 0;
	int n, rc;
	unsigned long long got = 0;

	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\n"
		     "Host: %s\r\n"
		     "User-Agent: kts-client\r\n"
		     "Accept: */*\r\n"
		     "Connection: close\r\n"
		     "\r\n",
		     path, hosthdr);
	if (n < 0 || (size_t)n >= sizeof(req))
		opts_die(PROG, "--get: path too long");
	rc = tio_write_all(c, fd, req, (size_t)n, dl);
	if (rc < 0)
		kfail(c, rc, "write");

	/* Response head; skip interim (1xx) responses. */
	for (;;) {
		int used = http_parse_response(buf, have, HEAD_LIMIT, &resp);

		if (used < 0)
			opts_die(PROG, "malformed response from server");
		if (used == 0) {
			ssize_t r = tio_read(c, fd, buf + have, BUF_SIZE - have, dl);

			if (r == 0)
				opts_die(PROG, "server closed the connection before a response");
			if (r < 0)
				kfail(c, r, "read");
			have += (size_t)r;
			continue;
		}
		if (include)
			write_out(buf, (size_t)used);
		memmove(buf, buf + used, have - (size_t)used);
		have -= (size_t)used;
		if (resp.status >= 200)
			break;
	}
	if (resp.status < 200 || resp.status > 299)
		opts_die(PROG, "server answered %d%s%s", resp.status, resp.reason[0] ? " " : "", resp.reason);

	if (resp.status == 204 || resp.status == 304) {
		resp.content_length = 0;
		resp.chunked = 0;
	}
	if (resp.chunked) {
		struct http_chunked st;

		memset(&st, 0, sizeof(st));
		for (;;) {
			size_t used;
			ssize_t out = http_chunked_decode(&st, buf, have, &used);

			if (out < 0)
				opts_die(PROG, "malformed chunked body from server");
			write_out(buf, (size_t)out);
			if (st.done)
				break;
			have = 0;
			{
				ssize_t r = tio_read(c, fd, buf, BUF_SIZE, dl);

				if (r == 0)
					opts_die(PROG, "response body truncated (connection closed)");
				if (r < 0)
					kfail(c, r, "read");
				have = (size_t)r;
			}
		}
	} else {
		unsigned long long want = resp.content_length >= 0
						  ? (unsigned long long)resp.content_length
						  : ~0ULL;

		for (;;) {
			size_t take = have;

			if (take > want - got)
				take = (size_t)(want - got);
			write_out(buf, take);
			got += take;
			if (got == want)
				break;
			{
				ssize_t r = tio_read(c, fd, buf, BUF_SIZE, dl);

				if (r == 0 && resp.content_length < 0)
					break; /* body delimited by close */
				if (r == 0)
					opts_die(PROG, "response body truncated at %llu of %lld bytes", got,
					     resp.content_length);
				if (r < 0)
					kfail(c, r, "read");
				have = (size_t)r;
			}
		}
	}
	/* Best effort: the body is complete whatever the close does. */
	deadline_total(dl, deadline_now(), timeout_ms < 0 ? 5000 : timeout_ms);
	(void)tio_close(c, fd, dl);
}

/* ---- session file ------------------------------------------------------------- */

/* Open (or create, mode 0600) the session file and hand it to kts, which
 * checks it. Symbolic links are refused, not followed. Returns the fd. */
static int open_session_file(struct kts_config *cfg, const char *path)
{
	const char *msg, *strip = "session file: ";
	int fd;

	for (int tries = 0;; tries++) {
		/* O_NONBLOCK: opening a FIFO must not hang (kts refuses it below). */
		fd = open(path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (fd >= 0 || errno != ENOENT || tries == 3)
			break;
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
		if (fd >= 0) {
			/* The umask may have taken bits kts insists on. */
			if (fchmod(fd, 0600) < 0)
				opts_die(PROG, "session file %s: fchmod: %s", path, strerror(errno));
			break;
		}
		if (errno != EEXIST)
			break;
		/* Someone else created it meanwhile: open theirs. */
	}
	if (fd < 0) {
		if (errno == ELOOP)
			opts_die(PROG, "session file %s: is a symbolic link (not followed)", path);
		if (errno == EISDIR)
			opts_die(PROG, "session file %s: not a regular file (a directory)", path);
		opts_die(PROG, "session file %s: %s", path, strerror(errno));
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
		opts_die(PROG, "session file %s: fcntl: %s", path, strerror(errno));
	if (kts_config_set_session_fd(cfg, fd) < 0) {
		msg = kts_config_error(cfg);
		if (strncmp(msg, strip, strlen(strip)) == 0)
			msg += strlen(strip);
		opts_die(PROG, "session file %s: %s", path, msg);
	}
	return fd;
}

/* ---- main --------------------------------------------------------------------- */

/* What main sets up, released on every exit: errors end the process with
 * opts_die() from deep inside (a status other than 2xx, a failed read...). */
static struct {
	struct kts_config *cfg;
	struct kts *c;
	int fd, sfd;
} res = { NULL, NULL, -1, -1 };

static void release(void)
{
	kts_free(res.c);
	res.c = NULL;
	if (res.fd >= 0)
		close(res.fd);
	if (res.sfd >= 0)
		close(res.sfd);
	res.fd = res.sfd = -1;
	kts_config_free(res.cfg);
	res.cfg = NULL;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		OPTS_LONG_COMMON,
		{ "ca", required_argument, NULL, OPT_CA },
		{ "insecure", no_argument, NULL, OPT_INSECURE },
		{ "servername", required_argument, NULL, OPT_SERVERNAME },
		{ "get", required_argument, NULL, OPT_GET },
		{ "include", no_argument, NULL, OPT_INCLUDE },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "session-file", required_argument, NULL, OPT_SESSION_FILE },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	struct tool_opts o;
	struct addr_spec target;
	struct kts_config *cfg;
	struct kts *c;
	struct deadline dl;
	const char *servername = NULL, *get = NULL, *session_file = NULL;
	int opt, insecure = 0, include = 0, timeout_ms = -1, fd, rc;
	char err[512], hosthdr[ADDR_STR_MAX];

	memset(&o, 0, sizeof(o));
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opts_handle(&o, opt, optarg))
			continue;
		switch (opt) {
		case OPT_INSECURE: insecure = 1; break;
		case OPT_SERVERNAME: servername = optarg; break;
		case OPT_GET: get = optarg; break;
		case OPT_INCLUDE: include = 1; break;
		case OPT_SESSION_FILE: session_file = optarg; break;
		case OPT_TIMEOUT: {
			char *end;
			long s = strtol(optarg, &end, 10);

			if (*end || end == optarg || s <= 0 || s > 86400)
				opts_die(PROG, "--timeout: want a number of seconds (1-86400)");
			timeout_ms = (int)s * 1000;
			break;
		}
		case OPT_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (get && get[0] != '/')
		opts_die(PROG, "--get: PATH must start with '/'");
	for (const char *p = get; p && *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			opts_die(PROG, "--get: PATH must not contain spaces or control characters "
			     "(percent-encode them)");
	if (include && !get)
		opts_die(PROG, "--include needs --get");
	if (addr_parse(argv[optind], &target, err, sizeof(err)) < 0)
		opts_die(PROG, "%s", err);
	if (!target.host[0])
		opts_die(PROG, "%s: missing host", argv[optind]);
	if (!servername)
		servername = target.host; /* kts checks numeric ones as IP addresses, no SNI */

	signal(SIGPIPE, SIG_IGN);

	atexit(release);
	cfg = res.cfg = kts_config_new();
	if (!cfg)
		opts_die(PROG, "cannot create TLS configuration");
	if (opts_apply(cfg, &o, err, sizeof(err)) < 0)
		opts_die(PROG, "%s", err);
	if (insecure && kts_config_set_verify(cfg, 0) < 0)
		opts_die(PROG, "--insecure: %s", kts_config_error(cfg));
	if (get && kts_config_set_alpn(cfg, "http/1.1") < 0)
		opts_die(PROG, "alpn: %s", kts_config_error(cfg));
	if (session_file)
		res.sfd = open_session_file(cfg, session_file);

	fd = res.fd = addr_connect(&target, err, sizeof(err));
	if (fd < 0)
		opts_die(PROG, "%s", err);
	c = res.c = kts_client_new(cfg);
	if (!c)
		opts_die(PROG, "new connection: %s", kts_config_error(cfg));
	if (servername && kts_set_server_name(c, servername) < 0)
		opts_die(PROG, "--servername: %s", kts_error(c));
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		opts_die(PROG, "fcntl: %s", strerror(errno));
	if (kts_attach(c, fd) < 0)
		kfail(c, KTS_ERR_SYS, "attach");
	/* --timeout: give up when nothing has moved for that long. */
	deadline_progress(&dl, deadline_now(), timeout_ms, 1);
	rc = tio_handshake(c, fd, &dl);
	if (rc < 0)
		kfail(c, rc, "handshake");
	if (o.status)
		opts_print_status(stderr, "", c, 1);

	if (get) {
		addr_host_header(servername ? servername : target.host, target.port, hosthdr,
				 sizeof(hosthdr));
		http_get(c, fd, get, hosthdr, include, &dl, timeout_ms);
	} else {
		pump(c, fd, timeout_ms);
	}
	return 0; /* release() frees the rest */
}
