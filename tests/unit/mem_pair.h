/*
 * mem_pair.h - unit-test helpers for caller-owned I/O: a kts server and an
 * OpenSSL client over memory BIOs, driven the way a ring drives kts. They
 * fail the running cmocka test on anything unexpected.
 */
#ifndef KTS_MEM_PAIR_H
#define KTS_MEM_PAIR_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "kts.h"

/* kts server (caller-owned I/O) and an OpenSSL client over memory BIOs. */
struct pair {
	struct kts *k;
	SSL *peer;
	BIO *in, *out; /* the peer's */
};

/* Send everything kts queued to the peer. */
void move_out(struct pair *p);
/* Run the handshake until the client is done; its last flight stays in p->out. */
void pair_open_fd(struct pair *p, struct kts_config *cfg, SSL_CTX *ctx, int fd);
void pair_close(struct pair *p);
/* The client's last flight and what it wrote after it, as one buffer. */
int flight(struct pair *p, unsigned char *buf, size_t cap);
/* Hand in wire[0, n) split at k, keeping to kts_feed_limit() after the
 * split, and collect plaintext into got; returns its length. */
size_t deliver(struct pair *p, const unsigned char *wire, size_t n, size_t k, char *got,
	       size_t cap);
/* Finish the handoff: the client's last flight goes in, nothing comes out. */
void pair_handoff(struct pair *p);
/* Write all of buf through kts, send the queue to the peer, and check that
 * the peer reads exactly buf. */
void write_and_check(struct pair *p, const unsigned char *buf, size_t len);
/* The peer's records (a KeyUpdate, say) handed to kts as one receive. */
void peer_to_kts(struct pair *p);

#endif
