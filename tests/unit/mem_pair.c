/*
 * mem_pair.c - a kts server and an OpenSSL client over memory BIOs (mem_pair.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mem_pair.h"

void move_out(struct pair *p)
{
	struct kts_msg m;

	while (kts_out_msg(p->k, &m) > 0) {
		BIO_write(p->in, m.iov.iov_base, (int)m.iov.iov_len);
		assert_int_equal(kts_out_done(p->k, (ssize_t)m.iov.iov_len), KTS_OK);
	}
}

/* Run the handshake until the client is done; its last flight stays in p->out. */
void pair_open_fd(struct pair *p, struct kts_config *cfg, SSL_CTX *ctx, int fd)
{
	char buf[16384];

	p->k = kts_server_new(cfg);
	assert_non_null(p->k);
	assert_int_equal(kts_attach_caller_io(p->k, fd), KTS_OK);
	p->peer = SSL_new(ctx);
	p->in = BIO_new(BIO_s_mem());
	p->out = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(p->in, -1);
	SSL_set_bio(p->peer, p->in, p->out);
	SSL_set_connect_state(p->peer);
	while (SSL_do_handshake(p->peer) != 1) {
		int n = BIO_read(p->out, buf, sizeof(buf));

		ssize_t r;

		assert_true(n > 0);
		if ((r = kts_recv_done(p->k, buf, sizeof(buf), n)) != KTS_WANT_READ)
			fail_msg("handshake: %zd %s", r, kts_error(p->k));
		move_out(p);
	}
}

void pair_close(struct pair *p)
{
	kts_free(p->k);
	SSL_free(p->peer);
}

/* The client's last flight and what it wrote after it, as one buffer. */
int flight(struct pair *p, unsigned char *buf, size_t cap)
{
	int n = BIO_read(p->out, buf, (int)cap);

	assert_true(n > 0);
	return n;
}

/* Hand in buf[0, n) split at k, keeping to kts_feed_limit() after the split,
 * and collect plaintext. */
size_t deliver(struct pair *p, const unsigned char *wire, size_t n, size_t k, char *got,
		      size_t cap)
{
	size_t at = 0, have = 0;
	char buf[16384];

	while (at < n) {
		size_t take = at == 0 && k > 0 ? k : n - at, limit = kts_feed_limit(p->k);
		ssize_t r;

		take = take < limit ? take : limit;
		assert_true(take > 0);
		memcpy(buf, wire + at, take);
		at += take;
		for (r = kts_recv_done(p->k, buf, sizeof(buf), (ssize_t)take); r > 0;
		     r = kts_read(p->k, buf, sizeof(buf))) {
			assert_true(have + (size_t)r <= cap);
			memcpy(got + have, buf, (size_t)r);
			have += (size_t)r;
		}
		assert_true(r == KTS_WANT_READ || r == 0);
		/* The tickets go out before the handoff. */
		if (kts_handshake(p->k) == KTS_WANT_WRITE)
			move_out(p);
	}
	move_out(p);
	assert_int_equal(kts_handshake(p->k), KTS_OK);
	return have;
}

/* Finish the handoff: the client's last flight goes in, nothing comes out. */
void pair_handoff(struct pair *p)
{
	unsigned char wire[8192];
	char got[16];
	int n = BIO_read(p->out, wire, sizeof(wire));

	if (n > 0)
		assert_int_equal(deliver(p, wire, (size_t)n, 0, got, sizeof(got)), 0);
	assert_int_equal(kts_handshake(p->k), KTS_OK);
}

/* Write all of buf through kts, send the queue to the peer, and check that
 * the peer reads exactly buf. */
void write_and_check(struct pair *p, const unsigned char *buf, size_t len)
{
	static unsigned char got[1 << 17];
	size_t at = 0, have = 0;

	assert_true(len <= sizeof(got));
	while (at < len) {
		ssize_t w = kts_write(p->k, buf + at, len - at);

		if (w == KTS_WANT_WRITE) {
			move_out(p);
			continue;
		}
		assert_true(w > 0);
		at += (size_t)w;
	}
	move_out(p);
	assert_int_equal(kts_out_pending(p->k), 0);
	while (have < len) {
		int r = SSL_read(p->peer, got + have, (int)(len - have));

		assert_true(r > 0);
		have += (size_t)r;
	}
	assert_memory_equal(got, buf, len);
}

/* The peer's records (a KeyUpdate, say) handed to kts as one receive. */
void peer_to_kts(struct pair *p)
{
	unsigned char wire[8192];
	int n = BIO_read(p->out, wire, sizeof(wire));
	ssize_t r;

	assert_true(n > 0);
	r = kts_recv_done(p->k, wire, sizeof(wire), n);
	if (r != KTS_WANT_READ)
		fail_msg("receive: %zd %s", r, kts_error(p->k));
}
