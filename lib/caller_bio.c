/*
 * caller_bio.c - the BIO OpenSSL works on when the caller owns the socket.
 * OpenSSL's writes land straight in the connection's send queue and its
 * reads come from the receive queue that kts_feed() fills: no copy through a
 * memory BIO, and a queue that empties frees its buffer, so an idle
 * connection holds none.
 *
 * The method belongs to the config (OpenSSL builds BIO_METHODs at run time;
 * kts keeps no global state) and outlives every connection made from it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>

#include "internal.h"

/* A 16 KiB record buffer that held a 100-byte request wipes 100 bytes. */
static size_t written(const struct kts_bytes *b)
{
	return b->len > b->dirty ? b->len : b->dirty;
}

int kts_bytes_reserve(struct kts_bytes *b, size_t n, int wipe, int pinned, unsigned char **old)
{
	size_t unread = b->len - b->off, cap;
	unsigned char *p;

	if (!pinned && b->off > 0) {
		b->dirty = written(b);
		memmove(b->data, b->data + b->off, unread);
		b->off = 0;
		b->len = unread;
	}
	if (n <= b->cap - b->len)
		return 0;
	if (n > SIZE_MAX / 4 - unread)
		return -1;
	if (b->cap == 0) /* the size asked, in pages: doubled, 64 KiB would */
		cap = (unread + n + 4095) & ~(size_t)4095;
	else             /* reach malloc's mmap threshold */
		for (cap = b->cap * 2; cap - unread < n; cap *= 2)
			;
	cap = cap < 16384 ? 16384 : cap;
	if (!(p = malloc(cap)))
		return -1;
	if (unread)
		memcpy(p, b->data + b->off, unread);
	if (pinned && old && !*old)
		*old = b->data; /* the in-flight send still reads it */
	else if (wipe)
		OPENSSL_clear_free(b->data, written(b));
	else
		free(b->data);
	b->data = p;
	b->cap = cap;
	b->len = b->dirty = unread;
	b->off = 0;
	return 0;
}

void kts_bytes_free(struct kts_bytes *b, int wipe)
{
	if (wipe)
		OPENSSL_clear_free(b->data, written(b));
	else
		free(b->data);
	memset(b, 0, sizeof(*b));
}

int kts_outq_reserve(struct kts *c, size_t n)
{
	/* The bytes of a send in flight stay where they are. */
	if (kts_bytes_reserve(&c->outq, n, 0, c->out_inflight && c->out_type == 0, &c->outq_old) < 0)
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "send queue: out of memory");
	return KTS_OK;
}

/* OpenSSL writes a record (or a flight): append it to the send queue. */
static int outq_write(BIO *b, const char *p, size_t n, size_t *done)
{
	struct kts *c = BIO_get_data(b);
	int rc;

	/* Past the handshake, kts may be sealing TX itself (softtx.c). */
	if (c->soft_tx && c->state != KTS_STATE_HANDSHAKE &&
	    (rc = kts_softtx_openssl_out(c, (const unsigned char *)p, n)) != 0) {
		*done = n;
		return rc > 0;
	}
	if (kts_outq_reserve(c, n) < 0)
		return 0;
	memcpy(c->outq.data + c->outq.len, p, n);
	c->outq.len += n;
	*done = n;
	return 1;
}

static int inq_read(BIO *b, char *p, size_t n, size_t *done)
{
	struct kts *c = BIO_get_data(b);
	struct kts_bytes *q = &c->inq;
	size_t have = q->len - q->off;

	BIO_clear_retry_flags(b);
	if (have == 0) {
		BIO_set_retry_read(b); /* nothing received yet, not EOF */
		return 0;
	}
	n = n < have ? n : have;
	memcpy(p, q->data + q->off, n);
	q->off += n;
	if (q->off == q->len)
		kts_bytes_free(q, 0);
	*done = n;
	return 1;
}

/* One BIO both ways (half the per-connection cost of two): pending is what
 * waits to be read; a flush succeeds, as the caller sends the queue. */
static long queues_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct kts *c = BIO_get_data(b);

	(void)num;
	(void)ptr;
	if (cmd == BIO_CTRL_PENDING)
		return (long)(c->inq.len - c->inq.off);
	return cmd == BIO_CTRL_FLUSH;
}

int kts_caller_bio_init(struct kts_config *cfg)
{
	/* BIO_TYPE_SOURCE_SINK with no index: BIO_get_new_index() numbers run
	 * out per process, and nothing looks these BIOs up by type. */
	cfg->queues_meth = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "kts caller queues");
	if (!cfg->queues_meth || BIO_meth_set_read_ex(cfg->queues_meth, inq_read) != 1 ||
	    BIO_meth_set_write_ex(cfg->queues_meth, outq_write) != 1 ||
	    BIO_meth_set_ctrl(cfg->queues_meth, queues_ctrl) != 1)
		return -1;
	return 0;
}

void kts_caller_bio_free(struct kts_config *cfg)
{
	BIO_meth_free(cfg->queues_meth);
}

int kts_caller_bio_attach(struct kts *c)
{
	BIO *bio = BIO_new(c->cfg->queues_meth);

	if (!bio)
		return -1;
	BIO_set_data(bio, c);
	BIO_set_init(bio, 1);
	SSL_set_bio(c->ssl, bio, bio); /* one reference for both */
	return 0;
}
