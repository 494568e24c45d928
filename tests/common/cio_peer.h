/*
 * cio_peer.h - test helpers for caller-owned I/O (cio_peer.c): an OpenSSL
 * peer over memory BIOs on one end of a socket, and the kts end driven as a
 * ring drives it. Functions returning int give 0 (or a count) or -1 with the
 * reason in cio_why.
 */
#ifndef KTS_CIO_PEER_H
#define KTS_CIO_PEER_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "kts.h"

extern char cio_why[512];

struct cio_peer {
	SSL *ssl;
	BIO *in, *out;
	int fd;
};

int cio_peer_init(struct cio_peer *p, SSL_CTX *ctx, int fd, int is_client);
void cio_peer_free(struct cio_peer *p);
int cio_send_all(int fd, const void *buf, size_t len);
/* Send what the peer wrote; block for some bytes and hand them to it; take
 * what is there without blocking; read plaintext (0 at close_notify). */
int cio_peer_flush(struct cio_peer *p);
int cio_peer_pull(struct cio_peer *p);
void cio_peer_take_all(struct cio_peer *p);
int cio_peer_read(struct cio_peer *p, char *buf, size_t len);
/* Send what kts queued, one message at a time: the number sent, or -1. */
int cio_kts_flush(struct kts *c, int fd);
/* One receive of at most max bytes on kts' socket; plaintext appended to got
 * (KTS_ERR_ARG past cap). Returns kts' result (KTS_WANT_READ after data). */
ssize_t cio_kts_recv(struct kts *c, int fd, size_t max, char *got, size_t *got_len, size_t cap);
/* The handshake until the peer is done and kts waits for its last flight
 * (left unsent in p->out); or all of it. */
int cio_handshake_until_peer_done(struct kts *c, int fd, struct cio_peer *p, int kts_is_server);
int cio_handshake(struct kts *c, int fd, struct cio_peer *p, int kts_is_server);

#endif
