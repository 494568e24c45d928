/*
 * ktls_server.c - kts-server itself with the kernel owning both directions:
 * a client that stops reading a 16 MiB body and then resets the connection
 * must be logged by the server within a couple of seconds, and the send
 * must end there instead of "sending" the rest of the file into a dead
 * socket. kts-server (a static build) is started from PATH: /bin in the VM,
 * the build directory natively (run-vm.sh).
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

#include "kts.h"
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

static pid_t start_server(const char *dir, int *err_fd, int *port)
{
	char cert[256], key[256], root[256], file[300];
	const char *p;
	int pipefd[2], f;
	pid_t pid;

	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(root, sizeof(root), "%s/root", dir);
	snprintf(file, sizeof(file), "%s/big.bin", root);
	if (test_write_cert_files(cert, key) < 0 || mkdir(root, 0700) < 0 ||
	    (f = open(file, O_WRONLY | O_CREAT, 0600)) < 0 || ftruncate(f, BODY) < 0 || close(f) < 0 ||
	    pipe(pipefd) < 0)
		return snprintf(why, sizeof(why), "setup: %s", strerror(errno)), -1;
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 2);
		execlp("kts-server", "kts-server", "--listen", "127.0.0.1:0", "--cert", cert, "--key",
		       key, "--root", root, "--timeout", "10", (char *)NULL);
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

int main(void)
{
	char dir[] = "/tmp/kts-server-XXXXXX";
	int err_fd = -1, port = 0, tx_rx[2] = {KTS_PATH_NONE, KTS_PATH_NONE}, ok = 0, status;
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
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	printf("%d passed, %d failed\n", ok, !ok);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", counts[0], counts[1]);
	test_cert_free();
	return ok ? 0 : 1;
}
