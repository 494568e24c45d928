/*
 * ulp_probe: smallest proof that the kernel under test does kTLS. Standalone (no
 * kts, no OpenSSL) so it isolates harness and kernel problems from library ones.
 *
 * On a loopback TCP pair: attach the "tls" ULP on both ends, install the same
 * dummy AES-128-GCM TLS 1.2 key as TX on the client and RX on the server, and
 * send a message through: the kernel encrypts it and the kernel decrypts it.
 * Output follows the kernel tier protocol (tests/kernel/README.md).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Sockets with kernel TX / RX installed, for the EXPECT line. */
static int n_tx, n_rx;

static int fail(const char *what)
{
	printf("# %s: %s\n", what, strerror(errno));
	return -1;
}

static int tcp_pair(int *cli, int *srv)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0)
		return fail("socket");
	if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &alen)) {
		close(l);
		return fail("bind/listen");
	}
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	if (*cli < 0 || connect(*cli, (struct sockaddr *)&a, sizeof a)) {
		close(l);
		return fail("connect");
	}
	*srv = accept(l, NULL, NULL);
	close(l);
	return *srv < 0 ? fail("accept") : 0;
}

static int install(int fd, int dir, const char *name)
{
	struct tls12_crypto_info_aes_gcm_128 ci = {
		.info = {.version = TLS_1_2_VERSION, .cipher_type = TLS_CIPHER_AES_GCM_128},
	};

	/* Dummy but identical on both ends, so the round trip decrypts. */
	memset(ci.key, 0x11, sizeof ci.key);
	memset(ci.salt, 0x22, sizeof ci.salt);
	memset(ci.iv, 0x33, sizeof ci.iv);
	memset(ci.rec_seq, 0, sizeof ci.rec_seq);
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof "tls"))
		return fail("setsockopt TCP_ULP tls");
	if (setsockopt(fd, SOL_TLS, dir, &ci, sizeof ci))
		return fail(name);
	if (dir == TLS_TX)
		n_tx++;
	else
		n_rx++;
	return 0;
}

static int probe(void)
{
	static const char msg[] = "hello through kernel TLS";
	char buf[sizeof msg];
	size_t got = 0;
	int cli = -1, srv = -1, ok = -1;

	if (tcp_pair(&cli, &srv) || install(cli, TLS_TX, "setsockopt TLS_TX") ||
	    install(srv, TLS_RX, "setsockopt TLS_RX"))
		goto out;
	if (send(cli, msg, sizeof msg, 0) != (ssize_t)sizeof msg) {
		fail("send");
		goto out;
	}
	while (got < sizeof msg) {
		ssize_t n = recv(srv, buf + got, sizeof buf - got, 0);

		if (n <= 0) {
			fail(n == 0 ? "recv: early EOF" : "recv");
			goto out;
		}
		got += (size_t)n;
	}
	if (memcmp(buf, msg, sizeof msg)) {
		printf("# received data differs from what was sent\n");
		goto out;
	}
	ok = 0;
out:
	if (cli >= 0)
		close(cli);
	if (srv >= 0)
		close(srv);
	return ok;
}

int main(void)
{
	int ok;

	setvbuf(stdout, NULL, _IOLBF, 0); /* keep lines whole if we die */
	ok = probe() == 0;
	printf("CASE probe aes128gcm both tx=kernel rx=kernel %s\n", ok ? "ok" : "FAIL");
	printf("%d passed, %d failed\n", ok, !ok);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", n_tx, n_rx);
	return ok ? 0 : 1;
}
