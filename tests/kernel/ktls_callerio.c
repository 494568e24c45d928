/*
 * ktls_callerio.c - caller-owned I/O (kts_attach_caller_io): the caller moves
 * every byte, kts never reads or writes the socket, and nothing is lost or
 * misnumbered at the switch to kernel RX.
 *
 * The peer is plain OpenSSL over memory BIOs, so the test decides exactly
 * which bytes are in the socket when. The flight that completes kts'
 * handshake is sent with application data behind it (a TLS 1.3 client's
 * Finished + request; a TLS 1.2 server's Finished + greeting), split at every
 * byte offset: the first part lands before kts' first receive, the rest
 * after. kts must hand out the data in order, then read one more record from
 * the socket (on the kernel path this proves the kernel's RX record number
 * counted what userspace decrypted), answer, and close with close_notify.
 *
 * Output as ktls_cases (run-tests.sh): "CASE callerio-<ver>-<cipher>-<role>
 * tx=<path> rx=<path> <ok|FAIL>", the summary, and "EXPECT TlsTxSw TlsRxSw".
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "kts.h"
#include "cio_peer.h"
#include "testutil.h"

static const char request[] = "GET /first HTTP/1.1\r\nHost: x\r\n\r\n";
static const char second[] = "second record, read from the socket";
static const char answer[] = "answer";

/* One connection, the flight split at offset split (SIZE_MAX: no split). */
static int one(struct kts_config *cfg, SSL_CTX *ctx, int kts_is_server, size_t split, int want,
	       int paths[2], size_t *flight_len)
{
	struct kts *c = NULL;
	struct cio_peer p = {0};
	char got[4096], flight[8192], buf[256];
	size_t got_len = 0, flen, want_len;
	const char *first = kts_is_server ? request : "hello from the server";
	int fds[2] = {-1, -1}, rc = -1, n;

	if (test_tcp_pair(fds) < 0) {
		snprintf(cio_why, sizeof(cio_why), "setup failed");
		goto out;
	}
	c = kts_is_server ? kts_server_new(cfg) : kts_client_new(cfg);
	cio_peer_init(&p, ctx, kts_is_server ? fds[1] : fds[0], kts_is_server);
	/* Each flight in one segment, without Nagle's wait for an ACK. */
	for (int i = 0; i < 2; i++)
		setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
	int kfd = kts_is_server ? fds[0] : fds[1];

	if (!c || kts_attach_caller_io(c, kfd) != KTS_OK) {
		snprintf(cio_why, sizeof(cio_why), "attach failed");
		goto out;
	}
	if (cio_handshake_until_peer_done(c, kfd, &p, kts_is_server) < 0)
		goto out;
	/* The peer's last flight with data behind it, in one piece. */
	SSL_write(p.ssl, first, (int)strlen(first));
	flen = (size_t)BIO_read(p.out, flight, sizeof(flight));
	*flight_len = flen;
	if (split > flen)
		split = flen;
	if (cio_send_all(p.fd, flight, split) < 0)
		goto out;
	if (split > 0) {
		ssize_t r = cio_kts_recv(c, kfd, SIZE_MAX, got, &got_len, sizeof(got));
		if (r != KTS_WANT_READ && r != KTS_OK) {
			snprintf(cio_why, sizeof(cio_why), "split %zu, first part: %zd %s", split, r, kts_error(c));
			goto out;
		}
	}
	if (cio_send_all(p.fd, flight + split, flen - split) < 0)
		goto out;
	want_len = strlen(first);
	for (int i = 0; got_len < want_len && i < 50; i++) {
		ssize_t r;

		/* Tickets out, then the handoff; what came with the flight is
		 * decrypted by then. */
		if (cio_kts_flush(c, kfd) < 0)
			goto out;
		if (kts_handshake(c) == KTS_OK)
			while ((r = kts_read(c, got + got_len, sizeof(got) - got_len)) > 0)
				got_len += (size_t)r;
		if (got_len >= want_len)
			break;
		/* kts_recv_prep keeps the receive to kts_feed_limit(). */
		r = cio_kts_recv(c, kfd, SIZE_MAX, got, &got_len, sizeof(got));
		if (r != KTS_WANT_READ) {
			snprintf(cio_why, sizeof(cio_why), "split %zu: %zd %s", split, r, kts_error(c));
			goto out;
		}
	}
	if (got_len != want_len || memcmp(got, first, want_len) != 0) {
		snprintf(cio_why, sizeof(cio_why), "split %zu: first data %zu bytes, want %zu", split, got_len,
			 want_len);
		goto out;
	}
	paths[0] = kts_offload(c, KTS_TX);
	paths[1] = kts_offload(c, KTS_RX);
	if (paths[0] != want || paths[1] != want) {
		snprintf(cio_why, sizeof(cio_why), "tx=%s rx=%s, want %s (%s)", kts_path_name(paths[0]),
			 kts_path_name(paths[1]), kts_path_name(want),
			 kts_offload_reason(c, KTS_RX) ? kts_offload_reason(c, KTS_RX) : "");
		goto out;
	}
	/* One more record, from the socket: on kernel RX, the record number. */
	SSL_write(p.ssl, second, (int)strlen(second));
	if (cio_peer_flush(&p) < 0)
		goto out;
	got_len = 0;
	for (int i = 0; got_len < strlen(second) && i < 10; i++) {
		ssize_t r = cio_kts_recv(c, kfd, SIZE_MAX, got, &got_len, sizeof(got));
		if (r != KTS_WANT_READ) {
			snprintf(cio_why, sizeof(cio_why), "split %zu, second record: %zd %s", split, r,
				 kts_error(c));
			goto out;
		}
	}
	if (got_len != strlen(second) || memcmp(got, second, got_len) != 0) {
		snprintf(cio_why, sizeof(cio_why), "split %zu: second record %zu bytes", split, got_len);
		goto out;
	}
	/* The answer, on whichever TX path, after what kts queued (TLS 1.3
	 * tickets), then close_notify. */
	if (cio_kts_flush(c, kfd) < 0)
		goto out;
	if (paths[0] == KTS_PATH_KERNEL) {
		ssize_t w = send(kfd, answer, strlen(answer), MSG_NOSIGNAL);
		if (kts_send_done(c, w < 0 ? -errno : w, strlen(answer)) != (ssize_t)strlen(answer))
			goto fail_kts;
	} else if (kts_write(c, answer, strlen(answer)) != (ssize_t)strlen(answer)) {
		goto fail_kts;
	}
	if (cio_kts_flush(c, kfd) < 0 || kts_close(c) != KTS_OK || cio_kts_flush(c, kfd) < 0)
		goto fail_kts;
	cio_peer_take_all(&p);
	n = cio_peer_read(&p, buf, sizeof(buf));
	if (n != (int)strlen(answer) || memcmp(buf, answer, (size_t)n) != 0) {
		snprintf(cio_why, sizeof(cio_why), "peer read %d bytes of the answer", n);
		goto out;
	}
	if (cio_peer_read(&p, buf, sizeof(buf)) != 0) {
		snprintf(cio_why, sizeof(cio_why), "peer saw no close_notify");
		goto out;
	}
	/* The peer's close_notify reaches kts as 0. */
	SSL_shutdown(p.ssl);
	if (cio_peer_flush(&p) < 0)
		goto out;
	got_len = 0;
	{
		ssize_t r = cio_kts_recv(c, kfd, SIZE_MAX, got, &got_len, sizeof(got));
		while (r == KTS_WANT_READ) /* the TLS 1.3 peer's tickets come first on a client */
			r = cio_kts_recv(c, kfd, SIZE_MAX, got, &got_len, sizeof(got));
		if (r != 0) {
			snprintf(cio_why, sizeof(cio_why), "close_notify: %zd %s", r, kts_error(c));
			goto out;
		}
	}
	rc = 0;
	goto out;
fail_kts:
	snprintf(cio_why, sizeof(cio_why), "split %zu: %s", split, kts_error(c));
out:
	cio_peer_free(&p);
	kts_free(c);
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}

int main(int argc, char **argv)
{
	int want = test_expected_path(argc, argv), passed = 0, failed = 0, counts[2] = {0, 0};

	if (want < 0)
		return 2;
	test_cert_init();
	/* TLS 1.3 with kts as the server (the client's Finished + request) and
	 * TLS 1.2 with kts as the client (the server's Finished + greeting). */
	for (int v = 0; v < 2; v++) {
		int version = v == 0 ? 13 : 12, kts_is_server = version == 13;

		for (int i = 0; i < 3; i++) {
			const struct suite *s = &test_suites[i];
			struct kts_config *cfg = test_kts_config(version, s, kts_is_server);

			/* A TLS 1.3 server then writes tickets as its handshake ends:
			 * they must leave before the kernel takes TX. */
			if (cfg && kts_is_server)
				kts_config_set_session_lifetime(cfg, 300);
			SSL_CTX *ctx = test_ssl_ctx(version, s, !kts_is_server);
			int paths[2] = {0, 0}, ok = cfg && ctx;
			size_t flen = 0, splits = 0;

			snprintf(cio_why, sizeof(cio_why), "setup failed");
			/* The flight's length first, then every split of it. */
			if (ok && one(cfg, ctx, kts_is_server, SIZE_MAX, want, paths, &flen) < 0)
				ok = 0;
			for (size_t k = 0; ok && k <= flen; k++, splits++)
				if (one(cfg, ctx, kts_is_server, k, want, paths, &flen) < 0)
					ok = 0;
			kts_config_free(cfg);
			SSL_CTX_free(ctx);
			printf("CASE callerio-tls%d-%s-%s-%zu-splits tx=%s rx=%s %s\n", version, s->name,
			       kts_is_server ? "server" : "client", splits, kts_path_name(paths[0]),
			       kts_path_name(paths[1]), ok ? "ok" : "FAIL");
			if (!ok)
				printf("  %s\n", cio_why);
			ok ? passed++ : failed++;
			/* Each connection installs TX and RX once. */
			if (ok && want == KTS_PATH_KERNEL) {
				counts[0] += (int)splits + 1;
				counts[1] += (int)splits + 1;
			}
		}
	}
	printf("%d passed, %d failed\n", passed, failed);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", counts[0], counts[1]);
	test_cert_free();
	return failed ? 1 : 0;
}
