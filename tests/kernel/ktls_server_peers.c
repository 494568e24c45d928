/*
 * ktls_server_peers.c - kts-server with --offload require (both directions in
 * the kernel or no connection) serving real peers: curl, openssl s_client and
 * kts-client, over TLS 1.2 and 1.3 x AES-128-GCM, AES-256-GCM and
 * ChaCha20-Poly1305, on each engine kts-server has. Bodies are checked by
 * SHA-256: a small file (sent from a buffer) and a large one (on the uring
 * engine by sendfile from the page cache, and again with
 * KTS_SERVER_URING_NO_SENDFILE by splice, which its "sent:" line proves; by
 * sendfile on threads); the server's log must show every connection on the kernel path.
 *
 * The peers come from the guest's PATH (KTS_GUEST_PEERS, mkinitramfs.sh):
 * kts-server and kts-client are static builds, curl and openssl Debian's,
 * copied with their libraries. Output as ktls_cases: CASE lines, the
 * summary, "EXPECT TlsTxSw=N TlsRxSw=N" (kts-server's sockets, and
 * kts-client's; curl and openssl stay in userspace).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "kts.h"
#include "testutil.h"

#define SMALL (9 * 1024 + 7)
#define LARGE (6 * 1024 * 1024 + 13)

static char dir[] = "/tmp/kts-peers-XXXXXX";
static char why[600];
static char log_text[1 << 17]; /* the server's stderr so far */
static size_t log_len;
static unsigned char want_small[32], want_large[32];
static int sockets;

/* Take what the server wrote to stderr, waiting up to ms for more. */
static void read_log(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	while (log_len < sizeof(log_text) - 1 && poll(&p, 1, ms) > 0) {
		ssize_t n = read(fd, log_text + log_len, sizeof(log_text) - 1 - log_len);
		if (n <= 0)
			break;
		log_len += (size_t)n;
		log_text[log_len] = '\0';
		ms = 0;
	}
}

static int count(const char *needle)
{
	int n = 0;

	for (const char *p = log_text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static int make_file(const char *path, size_t size, unsigned char sha[32])
{
	unsigned char *b = malloc(size);
	int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), ok;

	for (size_t i = 0; b && i < size; i++)
		b[i] = (unsigned char)(i * 7 + (i >> 9));
	ok = b && f >= 0 && write(f, b, size) == (ssize_t)size;
	if (ok)
		EVP_Digest(b, size, sha, NULL, EVP_sha256(), NULL);
	free(b);
	if (f >= 0)
		close(f);
	return ok ? 0 : -1;
}

static pid_t start_server(const char *engine, int *err_fd, int *port)
{
	char cert[256], key[256], root[256];
	const char *p;
	int pipefd[2];
	pid_t pid;

	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(root, sizeof(root), "%s/root", dir);
	if (pipe(pipefd) < 0)
		return -1;
	log_len = 0;
	log_text[0] = '\0';
	pid = fork();
	if (pid == 0) {
		dup2(pipefd[1], 2);
		if (!strcmp(engine, "uring-splice")) { /* the uring engine, splice only */
			setenv("KTS_SERVER_URING_NO_SENDFILE", "1", 1);
			engine = "uring";
		}
		execlp("kts-server", "kts-server", "--listen", "127.0.0.1:0", "--cert", cert, "--key",
		       key, "--root", root, "--offload", "require", "--timeout", "20", "--engine",
		       engine, (char *)NULL);
		fprintf(stderr, "exec kts-server: %s\n", strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	*err_fd = pipefd[0];
	for (int i = 0; i < 200 && !strstr(log_text, "listening on 127.0.0.1:"); i++)
		read_log(*err_fd, 100);
	if (pid < 0 || !(p = strstr(log_text, "listening on 127.0.0.1:")) ||
	    (*port = atoi(p + strlen("listening on 127.0.0.1:"))) <= 0) {
		snprintf(why, sizeof(why), "kts-server --engine %s did not start: %.300s", engine,
			 log_text);
		if (pid > 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
		return -1;
	}
	return pid;
}

/* Run argv with stdin from `in` (may be NULL) and stdout to `out`; 0 if it
 * exited 0 within 60 s. */
static int run(char *const argv[], const char *in, const char *out)
{
	pid_t pid = fork();
	int status = 0;

	if (pid == 0) {
		int i = open(in ? in : "/dev/null", O_RDONLY), o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(i, 0);
		dup2(o, 1);
		alarm(60);
		execvp(argv[0], argv);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The body in out (after the header when head is set) has the digest want. */
static int body_ok(const char *out, int head, const unsigned char want[32], size_t size)
{
	struct stat st;
	unsigned char *b, sha[32];
	size_t off = 0;
	int f = open(out, O_RDONLY), ok = 0;

	if (f < 0 || fstat(f, &st) < 0 || !(b = malloc((size_t)st.st_size + 1))) {
		if (f >= 0)
			close(f);
		return 0;
	}
	if (read(f, b, (size_t)st.st_size) == st.st_size) {
		b[st.st_size] = '\0';
		if (head) {
			unsigned char *e = (unsigned char *)strstr((char *)b, "\r\n\r\n");
			off = e ? (size_t)(e - b) + 4 : (size_t)st.st_size;
		}
		EVP_Digest(b + off, (size_t)st.st_size - off, sha, NULL, EVP_sha256(), NULL);
		ok = (size_t)st.st_size - off == size && memcmp(sha, want, 32) == 0;
		if (!ok)
			snprintf(why, sizeof(why), "%s: %zu body bytes, want %zu%s", out,
				 (size_t)st.st_size - off, size, (size_t)st.st_size - off == size ? " (wrong hash)" : "");
	}
	free(b);
	close(f);
	return ok;
}

/* One peer fetching one file. Returns 1 when the body is right. */
static int fetch(const char *peer, int tls, const struct suite *s, int port, int large)
{
	char url[128], resolve[64], cert[256], req[256], out[256], connect[64];
	const char *name = large ? "large.bin" : "small.bin";
	const unsigned char *want = large ? want_large : want_small;
	size_t size = large ? LARGE : SMALL;
	const char *cipher = tls == 12 ? s->tls12 : s->tls13;

	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(out, sizeof(out), "%s/out.bin", dir);
	snprintf(url, sizeof(url), "https://localhost:%d/%s", port, name);
	snprintf(resolve, sizeof(resolve), "localhost:%d:127.0.0.1", port);
	snprintf(connect, sizeof(connect), "127.0.0.1:%d", port);
	if (strcmp(peer, "curl") == 0) {
		char *const argv[] = {"curl", "-sS", "--cacert", cert, "--resolve", resolve,
				      tls == 12 ? "--tlsv1.2" : "--tlsv1.3", "--tls-max",
				      tls == 12 ? "1.2" : "1.3", tls == 12 ? "--ciphers" : "--tls13-ciphers",
				      (char *)cipher, url, NULL};
		if (run(argv, NULL, out) < 0)
			return snprintf(why, sizeof(why), "curl failed"), 0;
		return body_ok(out, 0, want, size);
	}
	if (strcmp(peer, "s_client") == 0) {
		char in[256];
		FILE *f;

		snprintf(in, sizeof(in), "%s/req.txt", dir);
		snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
			 name);
		if (!(f = fopen(in, "w")) || fputs(req, f) < 0 || fclose(f) != 0)
			return snprintf(why, sizeof(why), "request file"), 0;
		char *const argv[] = {"openssl", "s_client", "-quiet", "-ign_eof", "-connect", connect,
				      "-servername", "localhost", "-CAfile", cert, "-verify_return_error",
				      tls == 12 ? "-tls1_2" : "-tls1_3", tls == 12 ? "-cipher" : "-ciphersuites",
				      (char *)cipher, NULL};
		if (run(argv, in, out) < 0)
			return snprintf(why, sizeof(why), "openssl s_client failed"), 0;
		return body_ok(out, 1, want, size);
	}
	{
		char path[64];
		char *const argv[] = {"kts-client", "--ca", cert, "--servername", "localhost",
				      "--offload", "require", "--tls", tls == 12 ? "1.2" : "1.3",
				      "--ciphers", (char *)cipher, "--get", path, connect, NULL};
		snprintf(path, sizeof(path), "/%s", name);
		if (run(argv, NULL, out) < 0)
			return snprintf(why, sizeof(why), "kts-client failed"), 0;
		sockets++; /* kts-client's own socket, both directions */
		return body_ok(out, 0, want, size);
	}
}

int main(void)
{
	static const char *const engines[] = {"uring", "uring-splice", "threads"};
	static const char *const peers[] = {"curl", "s_client", "kts-client"};
	char path[300];
	int passed = 0, failed = 0;

	signal(SIGPIPE, SIG_IGN);
	test_cert_init();
	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/root", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/root/small.bin", dir);
	if (make_file(path, SMALL, want_small) < 0)
		return 1;
	snprintf(path, sizeof(path), "%s/root/large.bin", dir);
	if (make_file(path, LARGE, want_large) < 0)
		return 1;
	snprintf(path, sizeof(path), "%s/cert.pem", dir);
	{
		char key[300];
		snprintf(key, sizeof(key), "%s/key.pem", dir);
		if (test_write_cert_files(path, key) < 0)
			return 1;
	}
	for (size_t e = 0; e < sizeof(engines) / sizeof(*engines); e++) {
		int err_fd = -1, port = 0, conns = 0, ok_all;
		pid_t pid = start_server(engines[e], &err_fd, &port);

		for (int tls = 12; tls <= 13; tls++)
			for (int i = 0; i < 3; i++)
				for (size_t p = 0; p < sizeof(peers) / sizeof(*peers); p++) {
					int ok = pid > 0;

					for (int large = 0; ok && large <= 1; large++, conns++)
						ok = fetch(peers[p], tls, &test_suites[i], port, large);
					printf("CASE server-%s-%s-tls%d-%s tx=kernel rx=kernel %s\n", engines[e],
					       peers[p], tls, test_suites[i].name, ok ? "ok" : "FAIL");
					if (!ok)
						printf("  %s\n", why);
					ok ? passed++ : failed++;
				}
		if (pid <= 0)
			continue;
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		read_log(err_fd, 200);
		close(err_fd);
		/* Every connection logged on the kernel path, none refused. */
		ok_all = count("offload tx=kernel rx=kernel") == conns;
		printf("CASE server-%s-all-%d-connections-kernel tx=kernel rx=kernel %s\n", engines[e],
		       conns, ok_all ? "ok" : "FAIL");
		if (!ok_all)
			printf("  %d of %d kernel-path lines in the log: %.400s\n",
			       count("offload tx=kernel rx=kernel"), conns, log_text);
		ok_all ? passed++ : failed++;
		sockets += count("offload tx=kernel rx=kernel");
		if (strncmp(engines[e], "uring", 5) == 0) {
			/* Every large body by sendfile from the page cache (tmpfs), or
			 * by splice when told to (the guest kernels have cachestat). */
			int by_splice = strcmp(engines[e], "uring-splice") == 0;
			unsigned long long spliced = 0, sent = 0, want = 18ULL * (unsigned long long)LARGE;
			const char *s = strstr(log_text, "sent: ");
			int ok = s &&
				 sscanf(s, "sent: %llu bytes by splice, %llu by sendfile", &spliced,
					&sent) == 2 &&
				 (by_splice ? spliced : sent) == want && spliced + sent == want;

			printf("CASE server-%s-large-bodies-by-%s tx=kernel rx=kernel %s\n", engines[e],
			       by_splice ? "splice" : "sendfile", ok ? "ok" : "FAIL");
			if (!ok)
				printf("  %llu bytes spliced and %llu by sendfile, want %llu: %.200s\n",
				       spliced, sent, want, s ? s : "(no sent: line)");
			ok ? passed++ : failed++;
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", sockets, sockets);
	test_cert_free();
	return failed ? 1 : 0;
}
