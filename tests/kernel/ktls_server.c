/*
 * ktls_server.c - kts-server itself with the kernel owning both directions:
 * a client that stops reading a 16 MiB body and then resets the connection
 * must be logged by the server within a couple of seconds, and the send
 * must end there instead of "sending" the rest of the file into a dead
 * socket. A client that stalls a while and then reads the whole body gets
 * all of it. Then a ticket key rotation (ktsctl keys rotate on the server's
 * --ticket-keys file) while a kernel-path connection is open: it keeps
 * working, and a new connection resumes under the old key and gets its new
 * ticket under the new one. Last, `ktsctl status` on the server's control
 * socket must count those connections on the kernel path, as the server's
 * own log lines do, and their response bytes as kernel TLS bytes.
 * kts-server and ktsctl (static builds) are
 * started from PATH: /bin in the VM, the build directory natively
 * (run-vm.sh).
 *
 * Output: "CASE <name> tx=<path> rx=<path> <ok|FAIL>", then "N passed, N
 * failed" and "EXPECT TlsTxSw=N TlsRxSw=N" (see run-tests.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "kts.h"
#include "session_file.h"
#include "testutil.h"

#define BODY (16 << 20)

static char why[512];
static char log_text[16384]; /* everything kts-server wrote to stderr so far */
static size_t log_len;
static int counts[2];

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Read the server's stderr until needle appears (1) or seconds pass (0). */
static int wait_log(int fd, const char *needle, double seconds)
{
	double end = now() + seconds;

	while (!strstr(log_text, needle)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int ms = (int)((end - now()) * 1000);
		ssize_t n;

		if (ms <= 0 || poll(&p, 1, ms) <= 0)
			return 0;
		n = read(fd, log_text + log_len, sizeof(log_text) - 1 - log_len);
		if (n <= 0)
			return 0;
		log_len += (size_t)n;
		log_text[log_len] = '\0';
	}
	return 1;
}

/* Run a helper from PATH (ktsctl) and wait for it: 0 when it exited 0. */
static int run(char *const argv[])
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
			       WEXITSTATUS(status) == 0
		       ? 0
		       : -1;
}

static pid_t start_server(const char *dir, int *err_fd, int *port)
{
	char cert[256], key[256], root[256], file[300], keys[256], ctl[256];
	const char *p;
	int pipefd[2], f;
	pid_t pid;

	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(file, sizeof(file), "%s/big.bin", root);
	snprintf(keys, sizeof(keys), "%s/ticket.keys", dir);
	snprintf(ctl, sizeof(ctl), "%s/control.sock", dir);
	if (test_write_cert_files(cert, key) < 0 || mkdir(root, 0700) < 0 ||
	    (f = open(file, O_WRONLY | O_CREAT, 0600)) < 0 || ftruncate(f, BODY) < 0 || close(f) < 0 ||
	    pipe(pipefd) < 0)
		return snprintf(why, sizeof(why), "setup: %s", strerror(errno)), -1;
	snprintf(file, sizeof(file), "%s/small.bin", root);
	if ((f = open(file, O_WRONLY | O_CREAT, 0600)) < 0 || write(f, "0123456789", 10) != 10 ||
	    close(f) < 0)
		return snprintf(why, sizeof(why), "setup: %s", strerror(errno)), -1;
	if (run((char *[]){"ktsctl", "keys", "init", keys, "--interval", "10", "--lifetime", "300",
			   NULL}) < 0)
		return snprintf(why, sizeof(why), "ktsctl keys init failed"), -1;
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 2);
		execlp("kts-server", "kts-server", "--listen", "127.0.0.1:0", "--cert", cert, "--key",
		       key, "--root", root, "--timeout", "30", "--session-lifetime", "300",
		       "--ticket-keys", keys, "--control", ctl, (char *)NULL);
		fprintf(stderr, "exec kts-server: %s\n", strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	*err_fd = pipefd[0];
	if (pid < 0 || !wait_log(*err_fd, "listening on 127.0.0.1:", 20) ||
	    !(p = strstr(log_text, "listening on 127.0.0.1:")) ||
	    (*port = atoi(p + strlen("listening on 127.0.0.1:"))) <= 0)
		return snprintf(why, sizeof(why), "kts-server did not start: %.300s", log_text), -1;
	return pid;
}

static int tcp_connect(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* GET the 16 MiB file, read 64 KiB of it, stall 1 s with the server's sends
 * blocked, then reset. The server logs the send's error within 2.5 s (TCG
 * slack), and its connection had the kernel on both sides. */
static int case_reset(int port, int err_fd, int tx_rx[2])
{
	static const char req[] = "GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n";
	struct kts_config *cfg = test_kts_config(13, &test_suites[0], 0);
	struct linger hard = {.l_onoff = 1, .l_linger = 0};
	int fd = tcp_connect(port), ok = 0;
	struct kts *k = cfg ? kts_client_new(cfg) : NULL;
	char buf[16384];
	size_t got = 0;
	double t0;

	if (fd < 0 || !k || kts_attach(k, fd) != KTS_OK || kts_handshake(k) != KTS_OK) {
		snprintf(why, sizeof(why), "client: %s", k ? kts_error(k) : strerror(errno));
		goto out;
	}
	tx_rx[0] = kts_offload(k, KTS_TX);
	tx_rx[1] = kts_offload(k, KTS_RX);
	counts[0] += tx_rx[0] == KTS_PATH_KERNEL;
	counts[1] += tx_rx[1] == KTS_PATH_KERNEL;
	if (kts_write(k, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
		snprintf(why, sizeof(why), "request: %s", kts_error(k));
		goto out;
	}
	while (got < 64 * 1024) {
		ssize_t n = kts_read(k, buf, sizeof(buf));
		if (n <= 0) {
			snprintf(why, sizeof(why), "reading the body: %zd %s", n, kts_error(k));
			goto out;
		}
		got += (size_t)n;
	}
	sleep(1);
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
	close(fd);
	fd = -1;
	t0 = now();
	if (!wait_log(err_fd, "reset by peer", 2.5) && !wait_log(err_fd, "Broken pipe", 0.1)) {
		snprintf(why, sizeof(why), "no send error logged %.1f s after the reset: %.300s",
			 now() - t0, log_text);
		goto out;
	}
	/* The server's own connection: both directions in the kernel. */
	if (!strstr(log_text, "offload tx=kernel rx=kernel")) {
		snprintf(why, sizeof(why), "server connection not on the kernel path: %.300s", log_text);
		goto out;
	}
	counts[0]++;
	counts[1]++;
	ok = 1;
out:
	if (fd >= 0)
		close(fd);
	kts_free(k);
	kts_config_free(cfg);
	return ok;
}

/* One keep-alive GET of /small.bin (10 bytes) on k: 0 when the whole
 * response came back. */
static int get_small(struct kts *k)
{
	static const char req[] = "GET /small.bin HTTP/1.1\r\nHost: localhost\r\n\r\n";
	char buf[4096];
	size_t got = 0;

	if (kts_write(k, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
		return -1;
	while (got < sizeof(buf) - 1) {
		ssize_t n = kts_read(k, buf + got, sizeof(buf) - 1 - got);
		char *body;

		if (n <= 0)
			return -1;
		got += (size_t)n;
		buf[got] = '\0';
		if ((body = strstr(buf, "\r\n\r\n")) && strcmp(body + 4, "0123456789") == 0)
			return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
	}
	return -1;
}

/* A client connection of cfg, kernel both ways (counted). NULL with why set. */
static struct kts *connect_kernel(struct kts_config *cfg, int port, int *fdp)
{
	struct kts *k = kts_client_new(cfg);
	int fd = tcp_connect(port);

	*fdp = fd;
	if (fd < 0 || !k || kts_attach(k, fd) != KTS_OK || kts_handshake(k) != KTS_OK) {
		snprintf(why, sizeof(why), "client: %s", k ? kts_error(k) : strerror(errno));
		kts_free(k);
		return NULL;
	}
	if (kts_offload(k, KTS_TX) != KTS_PATH_KERNEL || kts_offload(k, KTS_RX) != KTS_PATH_KERNEL) {
		snprintf(why, sizeof(why), "client connection not on the kernel path");
		kts_free(k);
		return NULL;
	}
	counts[0]++;
	counts[1]++;
	return k;
}

/* keyrev of the ticket in the session file on fd; -1 without one. */
static long file_keyrev(int fd)
{
	const unsigned char *t;
	SSL_SESSION *sess = NULL;
	size_t len = 0;
	long rev = -1;

	if (kts_session_file_read(fd, &sess) == 0 && sess && SSL_SESSION_has_ticket(sess)) {
		SSL_SESSION_get0_ticket(sess, &t, &len);
		if (len >= 4)
			rev = (long)((unsigned long)t[0] << 24 | (unsigned long)t[1] << 16 |
				     (unsigned long)t[2] << 8 | t[3]);
	}
	SSL_SESSION_free(sess);
	return rev;
}

static int server_kernel_conns(void)
{
	int n = 0;

	for (const char *p = log_text; (p = strstr(p, "offload tx=kernel rx=kernel")); p++)
		n++;
	return n;
}

/* The server's log gained a kernel-path connection past before (within 2 s). */
static int server_logged_kernel(int err_fd, int before)
{
	double end = now() + 2;

	while (server_kernel_conns() <= before && now() < end)
		(void)wait_log(err_fd, "\n\n", 0.1); /* never there: read what comes */
	return server_kernel_conns() > before;
}

/* GET the 16 MiB file, read 64 KiB, stall 1 s so that the server's socket
 * fills (the uring engine's splice comes back short and waits for POLLOUT),
 * then read to the end: the whole body arrives, on the kernel path. */
static int case_slow_reader(int port, int err_fd)
{
	static const char req[] =
		"GET /big.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
	struct kts_config *cfg = test_kts_config(13, &test_suites[0], 0);
	int fd = -1, ok = 0, before = server_kernel_conns();
	struct kts *k = cfg ? connect_kernel(cfg, port, &fd) : NULL;
	char head[4096], buf[16384], *end = NULL;
	size_t got = 0, head_len = 0;
	long long body = 0, clen = -1;
	ssize_t n;

	if (!k)
		goto out;
	if (kts_write(k, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
		snprintf(why, sizeof(why), "request: %s", kts_error(k));
		goto out;
	}
	while ((n = kts_read(k, buf, sizeof(buf))) > 0) {
		got += (size_t)n;
		if (got >= 64 * 1024 && got - (size_t)n < 64 * 1024)
			sleep(1);
		if (!end) { /* the head: up to its blank line */
			size_t take = (size_t)n < sizeof(head) - 1 - head_len ? (size_t)n
									     : sizeof(head) - 1 - head_len;
			memcpy(head + head_len, buf, take);
			head_len += take;
			head[head_len] = '\0';
			if ((end = strstr(head, "\r\n\r\n")))
				body += (long long)(head + head_len - (end + 4)) + n - (ssize_t)take;
			continue;
		}
		body += n;
	}
	if (n != 0 || !end) {
		snprintf(why, sizeof(why), "read ended with %zd (%s) after %zu bytes", n,
			 n < 0 ? kts_error(k) : "close_notify", got);
		goto out;
	}
	if (strncmp(head, "HTTP/1.1 200", 12) != 0 || !strcasestr(head, "content-length:") ||
	    (clen = atoll(strcasestr(head, "content-length:") + 15)) != BODY || body != BODY) {
		snprintf(why, sizeof(why), "body %lld bytes, Content-Length %lld, want %d: %.200s",
			 body, clen, BODY, head);
		goto out;
	}
	if (!server_logged_kernel(err_fd, before)) {
		snprintf(why, sizeof(why), "server connection not on the kernel path: %.300s",
			 log_text);
		goto out;
	}
	counts[0]++;
	counts[1]++;
	ok = 1;
out:
	kts_free(k);
	if (fd >= 0)
		close(fd);
	kts_config_free(cfg);
	return ok;
}

/* Connection A (TLS 1.3, kernel both ways) gets a ticket under keyrev 1 and
 * stays open; ktsctl rotates; once the server says keyrev 2 seals, A still
 * works, and connection B resumes from A's ticket and gets one under 2. */
static int case_rotate(int port, int err_fd, const char *dir)
{
	struct kts_config *cfg = test_kts_config(13, &test_suites[0], 0);
	char keys[256], sess[256];
	struct kts *a = NULL, *b = NULL;
	int fa = -1, fb = -1, sfd = -1, ok = 0, before = server_kernel_conns();
	long rev;

	snprintf(keys, sizeof(keys), "%s/ticket.keys", dir);
	snprintf(sess, sizeof(sess), "%s/client.sess", dir);
	if (!cfg || (sfd = open(sess, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 ||
	    kts_config_set_session_fd(cfg, sfd) != KTS_OK) {
		snprintf(why, sizeof(why), "client setup failed");
		goto out;
	}
	if (!(a = connect_kernel(cfg, port, &fa)))
		goto out;
	if (get_small(a) < 0) { /* the tickets came through kernel RX before it */
		snprintf(why, sizeof(why), "first request: %s", kts_error(a));
		goto out;
	}
	if ((rev = file_keyrev(sfd)) != 1) {
		snprintf(why, sizeof(why), "first ticket under keyrev %ld, not 1", rev);
		goto out;
	}
	if (run((char *[]){"ktsctl", "keys", "rotate", keys, NULL}) < 0 ||
	    !wait_log(err_fd, "(file replaced): 2 key(s): keyrev 1 seals, 1 staged", 10) ||
	    !wait_log(err_fd, "ticket keys: keyrev 2 seals new tickets from now on", 20)) {
		snprintf(why, sizeof(why), "rotation not taken by the server: %.400s",
			 log_text + (log_len > 400 ? log_len - 400 : 0));
		goto out;
	}
	if (get_small(a) < 0) {
		snprintf(why, sizeof(why), "the open connection failed after the rotation: %s",
			 kts_error(a));
		goto out;
	}
	if (!(b = connect_kernel(cfg, port, &fb)))
		goto out;
	if (!kts_session_resumed(b)) {
		snprintf(why, sizeof(why), "a keyrev 1 ticket did not resume after the rotation");
		goto out;
	}
	if (get_small(b) < 0 || (rev = file_keyrev(sfd)) != 2) {
		snprintf(why, sizeof(why), "after the rotation: ticket under keyrev %ld, not 2", rev);
		goto out;
	}
	if (!wait_log(err_fd, "resumed=yes", 5) || server_kernel_conns() != before + 2) {
		snprintf(why, sizeof(why), "server connections not on the kernel path: %.300s",
			 log_text);
		goto out;
	}
	counts[0] += 2;
	counts[1] += 2;
	ok = 1;
out:
	kts_free(a);
	kts_free(b);
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	if (sfd >= 0)
		close(sfd);
	kts_config_free(cfg);
	return ok;
}

/* ktsctl status --json on the server's control socket, parsed; NULL with why. */
static json_t *server_status(const char *dir)
{
	char sock[256], out[65536];
	size_t len = 0;
	int pipefd[2], status;
	json_t *j;
	pid_t pid;

	snprintf(sock, sizeof(sock), "%s/control.sock", dir);
	if (pipe(pipefd) < 0 || (pid = fork()) < 0)
		return snprintf(why, sizeof(why), "status: %s", strerror(errno)), NULL;
	if (pid == 0) {
		dup2(pipefd[1], 1);
		execlp("ktsctl", "ktsctl", "status", "--json", sock, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	for (ssize_t n; len < sizeof(out) - 1 &&
			(n = read(pipefd[0], out + len, sizeof(out) - 1 - len)) > 0;)
		len += (size_t)n;
	close(pipefd[0]);
	out[len] = '\0';
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
	    !(j = json_loads(out, 0, NULL)))
		return snprintf(why, sizeof(why), "ktsctl status failed: %.300s", out), NULL;
	return j;
}

static json_int_t member(const json_t *o, const char *a, const char *b, const char *c)
{
	o = json_object_get(o, a);
	if (b)
		o = json_object_get(o, b);
	if (c)
		o = json_object_get(o, c);
	return json_is_integer(o) ? json_integer_value(o) : -1;
}

/* The status counts the kernel-path connections the log shows, every one of
 * them on the kernel both ways, and their responses as kernel TLS bytes. */
static int case_status(const char *dir, int err_fd)
{
	json_t *j;
	int logged, ok;

	(void)wait_log(err_fd, "\n", 0.2); /* take what the server wrote since */
	logged = server_kernel_conns();
	if (!(j = server_status(dir)))
		return 0;
	ok = logged >= 3 && member(j, "offload", "tx", "kernel") == logged &&
	     member(j, "offload", "rx", "kernel") == logged &&
	     member(j, "offload", "tx", "userspace") == 0 &&
	     member(j, "offload", "rx", "userspace") == 0 &&
	     member(j, "bytes_sent", "kernel", NULL) > 0 &&
	     member(j, "bytes_sent", "userspace", NULL) == 0 &&
	     member(j, "handshakes", "resumed", NULL) >= 1;
	if (!ok) {
		char *text = json_dumps(j, JSON_COMPACT);

		snprintf(why, sizeof(why), "%d kernel connections logged; status %.400s", logged,
			 text ? text : "?");
		free(text);
	}
	json_decref(j);
	return ok;
}

int main(void)
{
	char dir[] = "/tmp/kts-server-XXXXXX";
	int err_fd = -1, port = 0, tx_rx[2] = {KTS_PATH_NONE, KTS_PATH_NONE}, ok = 0, rot = 0,
	    st = 0, slow = 0, status;
	pid_t pid;

	signal(SIGPIPE, SIG_IGN);
	test_cert_init();
	if (!mkdtemp(dir)) {
		snprintf(why, sizeof(why), "mkdtemp: %s", strerror(errno));
		pid = -1;
	} else {
		pid = start_server(dir, &err_fd, &port);
	}
	if (pid > 0)
		ok = case_reset(port, err_fd, tx_rx);
	printf("CASE server-reset-during-sendfile tx=%s rx=%s %s\n", kts_path_name(tx_rx[0]),
	       kts_path_name(tx_rx[1]), ok ? "ok" : "FAIL");
	if (!ok)
		printf("# server-reset-during-sendfile: %s\n", why);
	slow = pid > 0 && case_slow_reader(port, err_fd);
	printf("CASE server-slow-reader-whole-body tx=kernel rx=kernel %s\n", slow ? "ok" : "FAIL");
	if (!slow)
		printf("# server-slow-reader-whole-body: %s\n", why);
	rot = pid > 0 && case_rotate(port, err_fd, dir);
	printf("CASE server-key-rotation-on-open-kernel-connection tx=kernel rx=kernel %s\n",
	       rot ? "ok" : "FAIL");
	if (!rot)
		printf("# server-key-rotation-on-open-kernel-connection: %s\n", why);
	st = pid > 0 && case_status(dir, err_fd);
	printf("CASE server-status-counts-kernel-path tx=kernel rx=kernel %s\n", st ? "ok" : "FAIL");
	if (!st)
		printf("# server-status-counts-kernel-path: %s\n", why);
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	printf("%d passed, %d failed\n", ok + slow + rot + st, !ok + !slow + !rot + !st);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", counts[0], counts[1]);
	test_cert_free();
	return ok && slow && rot && st ? 0 : 1;
}
