/*
 * cio_peer.c - shared by the caller-owned I/O tests: a plain OpenSSL peer over
 * memory BIOs, so a test decides exactly which bytes are in the socket when,
 * and the kts side driven the way a ring would drive it (one message per
 * send, kts_recv_prep receives), here with blocking syscalls.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "cio_peer.h"

char cio_why[512];

#define CHECK(cond, ...)                                                                   \
	do {                                                                               \
		if (!(cond)) {                                                             \
			snprintf(cio_why, sizeof(cio_why), __VA_ARGS__);                   \
			return -1;                                                         \
		}                                                                          \
	} while (0)

int cio_peer_init(struct cio_peer *p, SSL_CTX *ctx, int fd, int is_client)
{
	p->fd = fd;
	p->ssl = SSL_new(ctx);
	p->in = BIO_new(BIO_s_mem());
	p->out = BIO_new(BIO_s_mem());
	if (!p->ssl || !p->in || !p->out)
		return -1;
	BIO_set_mem_eof_return(p->in, -1);
	SSL_set_bio(p->ssl, p->in, p->out);
	if (is_client)
		SSL_set_connect_state(p->ssl);
	else
		SSL_set_accept_state(p->ssl);
	return 0;
}

void cio_peer_free(struct cio_peer *p)
{
	if (p->ssl)
		SSL_free(p->ssl); /* and its BIOs */
	else {
		BIO_free(p->in);
		BIO_free(p->out);
	}
	memset(p, 0, sizeof(*p));
}

int cio_send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int cio_peer_flush(struct cio_peer *p)
{
	char buf[16384];
	int n;

	while ((n = BIO_read(p->out, buf, sizeof(buf))) > 0)
		if (cio_send_all(p->fd, buf, (size_t)n) < 0)
			return -1;
	return 0;
}

/* Block for some bytes from kts and hand them to the peer. */
int cio_peer_pull(struct cio_peer *p)
{
	char buf[16384];
	ssize_t n = recv(p->fd, buf, sizeof(buf), 0);

	if (n <= 0)
		return -1;
	BIO_write(p->in, buf, (int)n);
	return 0;
}

/* Send what kts queued, as a ring would: one message at a time. Returns
 * the number of messages, or -1. */
int cio_kts_flush(struct kts *c, int fd)
{
	struct kts_msg m;
	int sent = 0;

	for (; kts_out_msg(c, &m) > 0; sent++) {
		ssize_t n = sendmsg(fd, &m.msg, MSG_NOSIGNAL);
		int rc = kts_out_done(c, n < 0 ? -errno : n);
		CHECK(rc == KTS_OK, "send: %s", kts_error(c));
	}
	return sent;
}

/* One receive on kts' socket, at most max bytes, and what kts made of it:
 * appended to got. Returns the kts result. */
ssize_t cio_kts_recv(struct kts *c, int fd, size_t max, char *got, size_t *got_len, size_t cap)
{
	char buf[32768];
	struct kts_msg m;
	ssize_t n, r;

	kts_recv_prep(c, &m, buf, max < sizeof(buf) ? max : sizeof(buf));
	n = recvmsg(fd, &m.msg, 0);
	r = kts_recvmsg_done(c, &m, n < 0 ? -errno : n);
	for (ssize_t d = r; d > 0; d = kts_read(c, buf, sizeof(buf))) {
		if ((size_t)d > cap - *got_len)
			return KTS_ERR_ARG;
		memcpy(got + *got_len, buf, (size_t)d);
		*got_len += (size_t)d;
		r = KTS_WANT_READ;
	}
	return r;
}

/* The handshake up to the point where the peer has finished and kts has
 * not: kts still waits for the peer's last flight. */
int cio_handshake_until_peer_done(struct kts *c, int fd, struct cio_peer *p, int kts_is_server)
{
	char sink[1];
	size_t sink_len = 0;

	if (!kts_is_server) {
		CHECK(kts_handshake(c) == KTS_WANT_READ, "client start: %s", kts_error(c));
		if (cio_kts_flush(c, fd) < 0)
			return -1;
	}
	for (int turns = 0; turns < 20; turns++) {
		int r;

		/* Peer's turn: read until it has something to send or is done
		 * (a client peer starts with nothing to read). */
		for (int first = 1;; first = 0) {
			if (!(first && turns == 0 && kts_is_server) && cio_peer_pull(p) < 0)
				CHECK(0, "peer: connection lost");
			r = SSL_do_handshake(p->ssl);
			if (r == 1)
				return 0; /* its last flight is in p->out, unsent */
			CHECK(SSL_get_error(p->ssl, r) == SSL_ERROR_WANT_READ, "peer handshake failed");
			if (BIO_ctrl_pending(p->out) > 0)
				break;
		}
		if (cio_peer_flush(p) < 0)
			return -1;
		/* kts' turn, likewise: it is not done before the peer. */
		for (r = 0; r == 0;) {
			ssize_t k = cio_kts_recv(c, fd, SIZE_MAX, sink, &sink_len, 0);
			CHECK(k == KTS_WANT_READ, "kts handshake: %zd %s", k, kts_error(c));
			if ((r = cio_kts_flush(c, fd)) < 0)
				return -1;
		}
	}
	CHECK(0, "handshake did not finish in 20 turns");
}

/* Drain the peer's socket into its BIO without blocking. */
void cio_peer_take_all(struct cio_peer *p)
{
	char buf[16384];
	ssize_t n;

	while ((n = recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		BIO_write(p->in, buf, (int)n);
}

int cio_peer_read(struct cio_peer *p, char *buf, size_t len)
{
	for (int i = 0; i < 100; i++) {
		size_t got = 0;

		if (SSL_read_ex(p->ssl, buf, len, &got) == 1)
			return (int)got;
		if (SSL_get_error(p->ssl, 0) == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (SSL_get_error(p->ssl, 0) != SSL_ERROR_WANT_READ || cio_peer_pull(p) < 0)
			return -1;
	}
	return -1;
}

int cio_handshake(struct kts *c, int fd, struct cio_peer *p, int kts_is_server)
{
	char sink[1];
	size_t sink_len = 0;

	if (cio_handshake_until_peer_done(c, fd, p, kts_is_server) < 0 || cio_peer_flush(p) < 0)
		return -1;
	for (int i = 0; i < 20 && kts_handshake(c) != KTS_OK; i++) {
		ssize_t r;

		if (kts_handshake(c) == KTS_WANT_WRITE) { /* its last flight, then the handoff */
			if (cio_kts_flush(c, fd) < 0)
				return -1;
			continue;
		}
		r = cio_kts_recv(c, fd, SIZE_MAX, sink, &sink_len, 0);
		CHECK(r == KTS_WANT_READ, "kts handshake: %zd %s", r, kts_error(c));
		if (cio_kts_flush(c, fd) < 0)
			return -1;
	}
	CHECK(kts_handshake(c) == KTS_OK, "kts handshake: %s", kts_error(c));
	return cio_kts_flush(c, fd) < 0 ? -1 : 0;
}
