/*
 * hs_bench.c - a load client that counts TLS handshakes per second, full or
 * resumed, against any TLS server that speaks HTTP/1.1 (kts-server, openssl
 * s_server -www). Plain OpenSSL, no kts code: it measures the server.
 *
 *   hs_bench --connect HOST:PORT --tls 1.2|1.3 --mode full|ticket|session-id
 *            [--seconds S] [--parallel N] [--request head|get] [--cafile FILE]
 *            [--server-pid PID]
 *
 * N client processes (default 1), each one connection at a time, for S seconds
 * (default 5): TCP connect, handshake,
 * "HEAD / HTTP/1.1" (or GET) with Connection: close, read until the server
 * closes (so it has finished its side, TLS 1.3 tickets included), close_notify,
 * close.
 *   full        no session offered: every handshake is a full one
 *   ticket      offer the newest session from the previous connection, with
 *               session tickets (TLS 1.2 tickets or TLS 1.3 PSK tickets)
 *   session-id  TLS 1.2 only: no ticket extension (SSL_OP_NO_TICKET), so the
 *               server must resume from its session-ID cache
 * Each process makes one untimed connection first (it also gets the first
 * session); the timed window starts once all have. With N > 1 the server has
 * connections waiting while it works, as a busy server does. Output:
 *   hs tls=1.2 mode=ticket parallel=N n=.. secs=.. per_sec=.. resumed=../.. cipher=..
 *      group=.. resp_bytes=.. client_cpu=..% [server_cpu=..% per_server_cpu_s=..]
 * server_* come from /proc/PID/stat of --server-pid (all its threads, user +
 * system) over the timed window: per_server_cpu_s is handshakes per second of
 * server CPU, i.e. what one fully busy server core would do.
 * A resumed mode with fewer than 95% resumed handshakes, a full mode with any,
 * ticket mode offering a session without a ticket (TLS 1.2 would then resume
 * by session ID), or any failed connection prints FAILED and exits 1.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define PROG "hs_bench"
#define IO_TIMEOUT_S 10 /* per socket operation: a stuck server fails the run */
#define RESUMED_MIN_PCT 95
#define MAX_PARALLEL 64

enum mode { MODE_FULL, MODE_TICKET, MODE_SESSION_ID };
static const char *const mode_names[] = { "full", "ticket", "session-id" };

struct bench {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	SSL_CTX *ctx;
	enum mode mode;
	SSL_SESSION *sess; /* offered by the next connection (resumed modes) */
	const char *request;
	long long resp_bytes; /* response bytes read, all connections */
};

/* openssl s_server -www answers GET only (a HEAD gets no answer and the
 * connection stays open), hence --request get. */
static const char *const requests[] = {
	"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " --connect HOST:PORT --tls 1.2|1.3 --mode full|ticket|session-id\n"
		"                [--seconds S] [--parallel N] [--request head|get] [--cafile FILE]\n"
		"                [--server-pid PID]\n"
		"Sequential TLS handshakes, each with one request (Connection: close) whose\n"
		"response is read to the server's close, for S seconds (default 5); prints\n"
		"handshakes per second and how many were resumed.\n"
		"  --parallel N        N client processes at once, 1 to %d (default 1)\n"
		"  --request head|get  'HEAD / HTTP/1.1' (default) or 'GET / HTTP/1.1'\n"
		"  --cafile FILE       verify the server's chain against FILE (default: no\n"
		"                      verification; the handshake signature is checked anyway)\n"
		"  --server-pid PID    also report that process's CPU use (from /proc)\n",
		MAX_PARALLEL);
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double self_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* User + system CPU seconds of process pid (all threads, exited ones too), or
 * -1 if it cannot be read. */
static double proc_cpu_s(long pid)
{
	char path[64], buf[1024];
	unsigned long long ut, st;
	const char *p;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields restart after the last ')'.
	 * Then: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	 * cmajflt utime stime. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
			 &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* "HOST:PORT", "[V6]:PORT" -> b->addr (numeric host and port). */
static void parse_connect(struct bench *b, const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':'), *h = spec;
	size_t hlen;
	struct addrinfo hints, *res;
	int err;

	if (!colon || colon == spec || !colon[1])
		die("--connect %s: want HOST:PORT", spec);
	hlen = (size_t)(colon - spec);
	if (spec[0] == '[' && colon[-1] == ']') {
		h = spec + 1;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		die("--connect %s: bad host", spec);
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	err = getaddrinfo(host, colon + 1, &hints, &res);
	if (err)
		die("--connect: %s", gai_strerror(err));
	memcpy(&b->addr, res->ai_addr, res->ai_addrlen);
	b->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
}

/* The first queued OpenSSL error, else the SSL_get_error code or errno. */
static void ssl_reason(SSL *ssl, int ret, const char *what, char *msg, size_t len)
{
	int e = SSL_get_error(ssl, ret), saved = errno;
	unsigned long oe = ERR_peek_error();
	char buf[256];

	if (oe) {
		ERR_error_string_n(oe, buf, sizeof(buf));
	} else if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		snprintf(buf, sizeof(buf), "no progress for %d s (SO_RCVTIMEO/SO_SNDTIMEO)",
			 IO_TIMEOUT_S);
	} else if (e == SSL_ERROR_SYSCALL) {
		snprintf(buf, sizeof(buf), "%s", saved ? strerror(saved) : "unexpected EOF");
	} else {
		snprintf(buf, sizeof(buf), "SSL_get_error %d", e);
	}
	snprintf(msg, len, "%s: %s", what, buf);
	ERR_clear_error();
}

/* What the warm-up connection negotiated. */
struct params {
	char cipher[64], group[64];
};

/* One connection. 0 and *resumed (and *p if not NULL), or -1 and msg. */
static int one_conn(struct bench *b, int *resumed, struct params *p, char *msg, size_t len)
{
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S, .tv_usec = 0 };
	char buf[4096];
	SSL *ssl = NULL;
	int fd, one = 1, ret, rc = -1;

	fd = socket(b->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(msg, len, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&b->addr, b->addrlen) < 0) {
		snprintf(msg, len, "connect: %s", strerror(errno));
		goto out;
	}
	/* A TLS 1.2 session without a ticket would resume from the server's
	 * session-ID cache: not what ticket mode measures. */
	if (b->mode == MODE_TICKET && b->sess && !SSL_SESSION_has_ticket(b->sess)) {
		snprintf(msg, len, "the server issued no session ticket");
		goto out;
	}
	ssl = SSL_new(b->ctx);
	if (!ssl || !SSL_set_fd(ssl, fd) || (b->sess && !SSL_set_session(ssl, b->sess))) {
		snprintf(msg, len, "SSL setup failed");
		goto out;
	}
	ret = SSL_connect(ssl);
	if (ret != 1) {
		ssl_reason(ssl, ret, "handshake", msg, len);
		goto out;
	}
	ret = SSL_write(ssl, b->request, (int)strlen(b->request));
	if (ret != (int)strlen(b->request)) {
		ssl_reason(ssl, ret, "write", msg, len);
		goto out;
	}
	/* To the server's close (close_notify or, with SSL_OP_IGNORE_UNEXPECTED_EOF,
	 * a bare TCP FIN): TLS 1.3 tickets are read on the way. */
	while ((ret = SSL_read(ssl, buf, sizeof(buf))) > 0)
		b->resp_bytes += ret;
	if (SSL_get_error(ssl, ret) != SSL_ERROR_ZERO_RETURN) {
		ssl_reason(ssl, ret, "read", msg, len);
		goto out;
	}
	*resumed = SSL_session_reused(ssl);
	if (p) {
		int g = SSL_get_negotiated_group(ssl);
		const char *gn = g ? SSL_group_to_name(ssl, g) : NULL;

		snprintf(p->cipher, sizeof(p->cipher), "%s",
			 SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
		snprintf(p->group, sizeof(p->group), "%s", gn ? gn : "none");
	}
	/* Our close_notify. It may fail if the server already closed its socket;
	 * the session stays resumable either way (SSL_SENT_SHUTDOWN is set). */
	(void)SSL_shutdown(ssl);
	ERR_clear_error();
	if (b->mode != MODE_FULL) {
		SSL_SESSION *s = SSL_get1_session(ssl);

		if (s && SSL_SESSION_is_resumable(s)) {
			SSL_SESSION_free(b->sess);
			b->sess = s;
		} else {
			SSL_SESSION_free(s); /* keep the previous one */
		}
	}
	rc = 0;
out:
	SSL_free(ssl);
	close(fd);
	return rc;
}

/* What one client process measured in the timed window. */
struct result {
	long n, nres;
	long long resp_bytes;
	double cpu_s;
	int failed; /* msg says why */
	struct params prm;
	char msg[512];
};
/* Written in one piece to a pipe shared by all client processes. */
_Static_assert(sizeof(struct result) <= PIPE_BUF, "a result must be one atomic pipe write");

/* One client process: the warm-up connection, a byte on ready_fd, then (once
 * go_fd reads EOF) connections for secs; the result goes to out_fd. */
static __attribute__((noreturn)) void client_proc(struct bench *b, double secs, int ready_fd,
						  int go_fd, int out_fd)
{
	struct result r;
	char msg[sizeof(r.msg) - 64], c;
	double t0, cpu0;

	memset(&r, 0, sizeof(r));
	if (one_conn(b, &(int){ 0 }, &r.prm, msg, sizeof(msg)) < 0) {
		snprintf(r.msg, sizeof(r.msg), "first connection: %s", msg);
		r.failed = 1;
	} else if (b->mode != MODE_FULL && !b->sess) {
		snprintf(r.msg, sizeof(r.msg), "the server gave no resumable session");
		r.failed = 1;
	}
	if (write(ready_fd, "r", 1) != 1)
		_exit(3);
	if (!r.failed) {
		while (read(go_fd, &c, 1) < 0 && errno == EINTR)
			;
		b->resp_bytes = 0;
		cpu0 = self_cpu_s();
		t0 = now_s();
		do {
			int resumed = 0;

			if (one_conn(b, &resumed, NULL, msg, sizeof(msg)) < 0) {
				snprintf(r.msg, sizeof(r.msg), "connection %ld: %s", r.n + 1, msg);
				r.failed = 1;
				break;
			}
			r.n++;
			r.nres += resumed;
		} while (now_s() - t0 < secs);
		r.cpu_s = self_cpu_s() - cpu0;
		r.resp_bytes = b->resp_bytes;
	}
	if (write(out_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(3);
	_exit(0);
}

int main(int argc, char **argv)
{
	enum { OPT_CONNECT = 1, OPT_TLS, OPT_MODE, OPT_SECONDS, OPT_PARALLEL, OPT_REQUEST,
	       OPT_CAFILE, OPT_PID, OPT_HELP };
	static const struct option longopts[] = {
		{ "connect", required_argument, NULL, OPT_CONNECT },
		{ "tls", required_argument, NULL, OPT_TLS },
		{ "mode", required_argument, NULL, OPT_MODE },
		{ "seconds", required_argument, NULL, OPT_SECONDS },
		{ "parallel", required_argument, NULL, OPT_PARALLEL },
		{ "request", required_argument, NULL, OPT_REQUEST },
		{ "cafile", required_argument, NULL, OPT_CAFILE },
		{ "server-pid", required_argument, NULL, OPT_PID },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	static struct bench b;
	const char *connect_spec = NULL, *tls = NULL, *cafile = NULL;
	char msg[512] = "", line[256];
	struct params prm = { "", "" };
	double secs = 5, t0, t1, cpu = 0, srv0 = -1, srv1 = -1, elapsed;
	long pid = 0, n = 0, nres = 0;
	long long resp_bytes = 0;
	int opt, version, mode = -1, failed = 0, parallel = 1, ready[2], go[2], out[2];
	char *end;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_CONNECT: connect_spec = optarg; break;
		case OPT_TLS: tls = optarg; break;
		case OPT_MODE:
			for (int i = 0; i < 3; i++)
				if (!strcmp(optarg, mode_names[i]))
					mode = i;
			if (mode < 0)
				die("--mode %s: want full, ticket or session-id", optarg);
			break;
		case OPT_SECONDS:
			errno = 0;
			secs = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(secs >= 0.1 && secs <= 3600))
				die("--seconds %s: want 0.1 to 3600", optarg);
			break;
		case OPT_PARALLEL: {
			long v;

			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 1 || v > MAX_PARALLEL)
				die("--parallel %s: want 1 to %d", optarg, MAX_PARALLEL);
			parallel = (int)v;
			break;
		}
		case OPT_REQUEST:
			if (!strcmp(optarg, "head"))
				b.request = requests[0];
			else if (!strcmp(optarg, "get"))
				b.request = requests[1];
			else
				die("--request %s: want head or get", optarg);
			break;
		case OPT_CAFILE: cafile = optarg; break;
		case OPT_PID:
			errno = 0;
			pid = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || pid <= 0)
				die("--server-pid %s: want a process id", optarg);
			break;
		case OPT_HELP: usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !connect_spec || !tls || mode < 0) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(tls, "1.2"))
		version = TLS1_2_VERSION;
	else if (!strcmp(tls, "1.3"))
		version = TLS1_3_VERSION;
	else
		die("--tls %s: want 1.2 or 1.3", tls);
	if (mode == MODE_SESSION_ID && version == TLS1_3_VERSION)
		die("--mode session-id: TLS 1.2 only (TLS 1.3 resumes from tickets)");
	b.mode = (enum mode)mode;
	if (!b.request)
		b.request = requests[0];
	parse_connect(&b, connect_spec);
	signal(SIGPIPE, SIG_IGN);

	b.ctx = SSL_CTX_new(TLS_client_method());
	if (!b.ctx || !SSL_CTX_set_min_proto_version(b.ctx, version) ||
	    !SSL_CTX_set_max_proto_version(b.ctx, version))
		die("cannot set up the TLS context");
	/* A server that closes without close_notify ends the read loop like
	 * close_notify would, and the session stays resumable. */
	SSL_CTX_set_options(b.ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
				   (b.mode == MODE_SESSION_ID ? SSL_OP_NO_TICKET : 0));
	if (cafile) {
		if (SSL_CTX_load_verify_locations(b.ctx, cafile, NULL) != 1)
			die("--cafile %s: cannot load", cafile);
		SSL_CTX_set_verify(b.ctx, SSL_VERIFY_PEER, NULL);
	}

	snprintf(line, sizeof(line), "hs tls=%s mode=%s parallel=%d", tls, mode_names[b.mode],
		 parallel);
	if (pipe(ready) < 0 || pipe(go) < 0 || pipe(out) < 0)
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	for (int i = 0; i < parallel; i++) {
		pid_t c = fork();

		if (c < 0)
			die("fork: %s", strerror(errno));
		if (c == 0) {
			close(ready[0]);
			close(go[1]);
			close(out[0]);
			client_proc(&b, secs, ready[1], go[0], out[1]);
		}
	}
	close(ready[1]);
	close(go[0]);
	close(out[1]);
	/* All warmed up (or failed), then the window opens for all at once. */
	for (int got = 0; got < parallel;) {
		char r[MAX_PARALLEL];
		ssize_t k = read(ready[0], r, (size_t)(parallel - got));

		if (k <= 0 && !(k < 0 && errno == EINTR))
			die("a client process ended before it was ready");
		got += k > 0 ? (int)k : 0;
	}
	if (pid)
		srv0 = proc_cpu_s(pid);
	t0 = now_s();
	close(go[1]);
	for (int i = 0; i < parallel; i++) {
		struct result r;
		ssize_t k = read(out[0], &r, sizeof(r));

		if (k < 0 && errno == EINTR) {
			i--;
			continue;
		}
		if (k != (ssize_t)sizeof(r))
			die("a client process ended without a result");
		if (r.failed && !failed) {
			snprintf(msg, sizeof(msg), "%s", r.msg);
			failed = 1;
		}
		if (r.prm.cipher[0])
			prm = r.prm;
		n += r.n;
		nres += r.nres;
		resp_bytes += r.resp_bytes;
		cpu += r.cpu_s;
	}
	t1 = now_s();
	if (pid)
		srv1 = proc_cpu_s(pid);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	if (failed) {
		printf("%s FAILED: %s\n", line, msg);
		return 1;
	}
	elapsed = t1 - t0;

	printf("%s n=%ld secs=%.2f per_sec=%.1f resumed=%ld/%ld cipher=%s group=%s resp_bytes=%lld "
	       "client_cpu=%.0f%%",
	       line, n, elapsed, (double)n / elapsed, nres, n, prm.cipher, prm.group,
	       n ? resp_bytes / n : 0, 100 * cpu / elapsed);
	if (pid) {
		if (srv0 < 0 || srv1 < 0)
			printf(" server_cpu=? per_server_cpu_s=?");
		else if (srv1 - srv0 <= 0)
			printf(" server_cpu=0%% per_server_cpu_s=?");
		else
			printf(" server_cpu=%.0f%% per_server_cpu_s=%.1f",
			       100 * (srv1 - srv0) / elapsed, (double)n / (srv1 - srv0));
	}
	if (b.mode == MODE_FULL && nres > 0) {
		printf(" FAILED: %ld resumed in full mode", nres);
		failed = 1;
	} else if (b.mode != MODE_FULL && nres * 100 < (long)RESUMED_MIN_PCT * n) {
		printf(" FAILED: only %.1f%% resumed (< %d%%), the rate is not a resumption rate",
		       100.0 * (double)nres / (double)n, RESUMED_MIN_PCT);
		failed = 1;
	}
	putchar('\n');
	SSL_SESSION_free(b.sess);
	SSL_CTX_free(b.ctx);
	return failed;
}
