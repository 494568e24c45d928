/*
 * caller_io.c - connections whose socket I/O the caller owns (an io_uring or
 * any event loop): OpenSSL works on kts's queues (caller_bio.c), the caller
 * hands in what it received and sends what kts queues, and after the handoff
 * it moves the plaintext of kernel directions itself.
 *
 * The one delicate part is the switch to kernel RX. The caller may have
 * received bytes past the handshake (a TLS 1.3 client sends its request
 * with its Finished); the kernel's RX starts at the first byte it was not
 * given, so those records are decrypted here, kept for the first reads, and
 * counted into the kernel's record number. A record cut off by the end of a
 * receive holds the handoff back until its rest arrives, and kts_feed_limit()
 * tells the caller to receive exactly that rest.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <linux/tls.h>

#include "internal.h"
#include "kernel.h"
#include "record.h"
#include "tls_wire.h"

/* Unsent ciphertext kts_write() may queue before it pushes back. */
#define OUTQ_HIGH (64 * 1024)

int kts_attach_caller_io(struct kts *c, int fd)
{
	if (c->state != KTS_STATE_NEW)
		return kts_fail(c, KTS_ERR_STATE, "attach: a socket is already attached");
	if (fd < 0)
		return kts_fail(c, KTS_ERR_ARG, "attach: bad file descriptor %d", fd);
	if (kts_caller_bio_attach(c) < 0) {
		kts_err_clear();
		return kts_fail(c, KTS_ERR_NOMEM, "attach: out of memory");
	}
	c->fd = fd;
	c->caller_io = 1;
	c->state = KTS_STATE_HANDSHAKE;
	return KTS_OK;
}

/* Walk record headers over n bytes of the stream past the handshake. */
static void scan(struct kts *c, const unsigned char *p, size_t n)
{
	struct kts_rec_scan *s = &c->scan;

	while (n > 0 || (s->hdr_have == KTS_RECORD_HEADER && s->body_left == 0)) {
		if (s->hdr_have < KTS_RECORD_HEADER) {
			size_t take = KTS_RECORD_HEADER - s->hdr_have;

			take = take < n ? take : n;
			memcpy(s->hdr + s->hdr_have, p, take);
			s->hdr_have += take;
			p += take;
			n -= take;
			if (s->hdr_have == KTS_RECORD_HEADER)
				s->body_left = (size_t)s->hdr[3] << 8 | s->hdr[4];
			continue;
		}
		if (s->body_left > 0) {
			size_t take = s->body_left < n ? s->body_left : n;

			s->body_left -= take;
			p += take;
			n -= take;
		}
		if (s->body_left == 0) {
			/* A whole record; change_cipher_spec is never numbered. */
			if (s->hdr[0] != KTS_RECORD_CCS)
				c->rx_user_records++;
			s->hdr_have = 0;
		}
	}
}

size_t kts_feed_limit(const struct kts *c)
{
	if (!c || c->state == KTS_STATE_FAILED || !c->caller_io)
		return 0;
	if (c->draining)
		return c->scan.hdr_have < KTS_RECORD_HEADER ? KTS_RECORD_HEADER - c->scan.hdr_have
							     : c->scan.body_left;
	return SIZE_MAX;
}

ssize_t kts_feed(struct kts *c, const void *buf, size_t len)
{
	if (c->state == KTS_STATE_FAILED)
		return c->fail_code;
	if (!c->caller_io || c->state == KTS_STATE_NEW)
		return kts_fail(c, KTS_ERR_STATE, "feed: no socket attached for caller-owned I/O");
	if (c->state == KTS_STATE_OPEN && c->path[KTS_RX] == KTS_PATH_KERNEL)
		return kts_fail(c, KTS_ERR_STATE,
				"feed: the kernel owns RX; received bytes are already plaintext");
	if (len == 0)
		return 0;
	if (kts_bytes_reserve(&c->inq, len, 0, 0, NULL) < 0)
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "feed: out of memory");
	memcpy(c->inq.data + c->inq.len, buf, len);
	c->inq.len += len;
	if (c->draining)
		scan(c, buf, len);
	return (ssize_t)len;
}

/* Decrypt whatever whole records OpenSSL has past the handshake. */
static int drain_decrypt(struct kts *c)
{
	/* Usually nothing came early: no record buffer at each handshake. */
	if (c->inq.len == c->inq.off && !SSL_has_pending(c->ssl))
		return KTS_OK;
	for (;;) {
		size_t got = 0;
		int ret;

		if (kts_bytes_reserve(&c->early, KTS_RECORD_MAX_PLAIN, 1, 0, NULL) < 0)
			return kts_fail_fatal(c, KTS_ERR_NOMEM, "handshake: out of memory");
		kts_err_clear();
		ret = SSL_read_ex(c->ssl, c->early.data + c->early.len, c->early.cap - c->early.len, &got);
		if (ret == 1) {
			c->early.len += got;
			continue;
		}
		ret = kts_ssl_result(c, 0, "read");
		if (c->early.len == 0) /* only a ticket or alert came: hold no buffer */
			kts_bytes_free(&c->early, 1);
		if (ret == 0)
			c->rx_eof = 1;
		else if (ret != KTS_WANT_READ)
			return ret;
		return KTS_OK;
	}
}

int kts_cio_handshake_done(struct kts *c)
{
	int rc;

	if (!c->draining) {
		size_t n = c->inq.len - c->inq.off;

		c->draining = 1;
		if (n > 0) /* an empty queue may hold no buffer at all */
			scan(c, c->inq.data + c->inq.off, n);
	}
	if ((rc = drain_decrypt(c)) != KTS_OK)
		return rc;
	if (c->scan.hdr_have > 0 && !c->rx_eof)
		return KTS_WANT_READ; /* the rest of a record is still in the socket */
	/* OpenSSL's last flight or tickets must leave as they are, before
	 * the kernel encrypts everything sent; bytes received meanwhile are
	 * scanned and decrypted like the rest. */
	if (c->outq.len > c->outq.off)
		return KTS_WANT_WRITE;
	c->draining = 0;
	return KTS_OK;
}

size_t kts_cio_early(struct kts *c, void *buf, size_t len)
{
	size_t n = c->early.len - c->early.off;

	if (n == 0)
		return 0;
	n = n < len ? n : len;
	memcpy(buf, c->early.data + c->early.off, n);
	c->early.off += n;
	if (c->early.off == c->early.len)
		kts_bytes_free(&c->early, 1);
	return n;
}

void kts_cio_free(struct kts *c)
{
	kts_bytes_free(&c->early, 1);
	kts_bytes_free(&c->inq, 0);
	kts_bytes_free(&c->outq, 0);
	free(c->outq_old);
	kts_softtx_free(c);
	kts_softrx_free(c);
}

void kts_recv_prep(const struct kts *c, struct kts_msg *m, void *buf, size_t len)
{
	size_t limit = kts_feed_limit(c);

	memset(m, 0, sizeof(*m));
	m->iov.iov_base = buf;
	m->iov.iov_len = len < limit ? len : limit;
	m->msg.msg_iov = &m->iov;
	m->msg.msg_iovlen = 1;
	m->msg.msg_control = m->control.buf;
	m->msg.msg_controllen = sizeof(m->control.buf);
}

static int kernel_rx(const struct kts *c)
{
	return c->state == KTS_STATE_OPEN && c->path[KTS_RX] == KTS_PATH_KERNEL;
}

/* Kernel RX: what one receive brought. */
static ssize_t kernel_recv_done(struct kts *c, struct kts_msg *m, void *buf, ssize_t res)
{
	unsigned char type = KTS_RECORD_DATA;
	int end = -1;
	ssize_t n;

	if (res == -EIO && !m)
		return KTS_WANT_CONTROL; /* a control record waits; recvmsg takes it */
	if (res == -EINTR)
		return KTS_WANT_READ;
	if (res < 0)
		return kts_rx_error(c, (int)res);
	if (m) {
		int err = kts_kernel_rx_type(&m->msg, &type);

		if (err < 0)
			return kts_rx_error(c, err);
		end = (m->msg.msg_flags & MSG_EOR) != 0;
	}
	n = kts_rx_record(c, type, buf, (size_t)res, end);
	return n == KTS_RX_AGAIN ? KTS_WANT_READ : n;
}

ssize_t kts_recv_done(struct kts *c, void *buf, size_t cap, ssize_t res)
{
	ssize_t rc;

	if (c->state == KTS_STATE_FAILED)
		return c->fail_code;
	if (!c->caller_io)
		return kts_fail(c, KTS_ERR_STATE, "receive: not attached for caller-owned I/O");
	if (kernel_rx(c))
		return kernel_recv_done(c, NULL, buf, res);
	if (res == -EAGAIN || res == -EINTR)
		return KTS_WANT_READ;
	if (res < 0)
		return kts_fail_fatal(c, KTS_ERR_SYS, "receive: %s", strerror((int)-res));
	if (res == 0) {
		if (c->state != KTS_STATE_OPEN)
			return kts_fail_fatal(c, KTS_ERR_TLS, "handshake: peer closed the connection");
		if (c->rx_eof)
			return 0;
		return kts_fail_fatal(c, KTS_ERR_TRUNCATED,
				      "read: peer closed the connection without close_notify");
	}
	if (c->soft_rx) /* only ever set on an open connection; a failed one returned above */
		return kts_softrx_recv(c, buf, cap, (size_t)res); /* opened in place */
	if ((rc = kts_feed(c, buf, (size_t)res)) < 0 || (rc = kts_handshake(c)) != KTS_OK)
		return rc == KTS_WANT_WRITE ? KTS_WANT_READ : rc; /* the queue goes first */
	return kts_read(c, buf, cap);
}

ssize_t kts_recvmsg_done(struct kts *c, struct kts_msg *m, ssize_t res)
{
	if (c->state == KTS_STATE_FAILED)
		return c->fail_code;
	if (c->caller_io && kernel_rx(c))
		return kernel_recv_done(c, m, m->iov.iov_base, res);
	return kts_recv_done(c, m->iov.iov_base, m->iov.iov_len, res);
}

size_t kts_out_pending(const struct kts *c)
{
	size_t n;

	if (!c || !c->caller_io)
		return 0;
	n = c->outq.len - c->outq.off;
	if (c->path[KTS_TX] == KTS_PATH_KERNEL)
		n += c->tx_hs_len + (c->tx_alert_pending ? 2 : 0);
	return n;
}

size_t kts_out_msg(struct kts *c, struct kts_msg *m)
{
	const unsigned char *data = NULL;
	unsigned char type = 0;
	size_t len;

	memset(m, 0, sizeof(*m));
	if (!c->caller_io)
		return 0;
	/* OpenSSL's wire bytes (the handshake, tickets written during it,
	 * userspace TX) always come before kernel TX records. */
	if ((!c->out_inflight || c->out_type == 0) && c->outq.len > c->outq.off) {
		data = c->outq.data + c->outq.off;
		len = c->outq.len - c->outq.off;
		if (c->out_inflight && c->out_inflight < len)
			len = c->out_inflight; /* asked again: the same bytes */
	} else if (c->path[KTS_TX] == KTS_PATH_KERNEL &&
		   (len = kts_tx_next(c, &type, &data)) > 0) {
		struct cmsghdr *cm;

		m->msg.msg_control = m->control.buf;
		m->msg.msg_controllen = CMSG_SPACE(sizeof(unsigned char));
		cm = CMSG_FIRSTHDR(&m->msg);
		cm->cmsg_level = SOL_TLS;
		cm->cmsg_type = TLS_SET_RECORD_TYPE;
		cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
		*CMSG_DATA(cm) = type;
	} else {
		return 0;
	}
	m->iov.iov_base = (void *)data;
	m->iov.iov_len = len;
	m->msg.msg_iov = &m->iov;
	m->msg.msg_iovlen = 1;
	c->out_inflight = len;
	c->out_type = type;
	return len;
}

int kts_out_done(struct kts *c, ssize_t res)
{
	int type = c->out_type, fatal = type == KTS_RECORD_ALERT && c->tx_alert[0] == ALERT_FATAL;
	size_t sent;

	if (!c->out_inflight)
		return kts_fail(c, KTS_ERR_STATE, "send done: no kts_out_msg() in flight");
	c->out_inflight = 0;
	free(c->outq_old); /* the send that read it is over */
	c->outq_old = NULL;
	if (fatal) {
		/* Best effort: the connection has failed already. */
		kts_tx_sent(c, KTS_RECORD_ALERT, 2);
		return c->fail_code;
	}
	if (res == -EAGAIN || res == -EINTR)
		return KTS_WANT_WRITE;
	if (res <= 0 || (type == KTS_RECORD_ALERT && res != 2)) {
		c->tx_closed = 1;
		return kts_fail_fatal(c, KTS_ERR_SYS, "send: %s",
				      strerror(res < 0 ? (int)-res : EPIPE));
	}
	sent = (size_t)res;
	if (type != 0)
		return kts_tx_sent(c, (unsigned char)type, sent);
	c->outq.off += sent < c->outq.len - c->outq.off ? sent : c->outq.len - c->outq.off;
	if (c->outq.off == c->outq.len) { /* an idle connection keeps no buffer */
		kts_bytes_free(&c->outq, 0);
		kts_softtx_idle(c);
	}
	return c->state == KTS_STATE_FAILED ? c->fail_code : KTS_OK;
}

ssize_t kts_send_done(struct kts *c, ssize_t res, size_t want)
{
	if (c->state == KTS_STATE_FAILED)
		return c->fail_code;
	if (res == -EINTR)
		return KTS_WANT_WRITE;
	return kts_kernel_tx_result(c, res < 0 ? -1 : res, res < 0 ? (int)-res : 0, want, "send");
}

/* kts_write() with caller-owned I/O: encrypt into the send queue. */
ssize_t kts_cio_write(struct kts *c, const void *buf, size_t len)
{
	size_t done = 0;

	if (c->path[KTS_TX] == KTS_PATH_KERNEL)
		return kts_fail(c, KTS_ERR_STATE, "write: the kernel owns TX; send the plaintext on "
						 "the socket and report it with kts_send_done()");
	if (c->outq.len - c->outq.off >= OUTQ_HIGH)
		return KTS_WANT_WRITE; /* send the queue first */
	/* Room for all of it at once: OpenSSL writes one record at a time, and
	 * a queue grown record by record is copied at every doubling. */
	if (kts_outq_reserve(c, kts_sealed_max(len)) < 0)
		return c->fail_code;
	if (kts_softtx_wants(c, len))
		return kts_softtx_write(c, buf, len);
	while (done < len) {
		size_t wrote = 0;

		kts_err_clear();
		if (SSL_write_ex(c->ssl, (const char *)buf + done, len - done, &wrote) != 1)
			return done ? (ssize_t)done : kts_ssl_result(c, 0, "write");
		done += wrote;
	}
	return (ssize_t)done;
}

/* kts_close() with caller-owned I/O: queue close_notify. */
int kts_cio_close(struct kts *c)
{
	if (c->path[KTS_TX] == KTS_PATH_KERNEL || c->soft_rx) {
		if (c->tx_alert_pending)
			return KTS_WANT_WRITE; /* another alert first: send the queue */
		kts_alert_warning(c, ALERT_CLOSE_NOTIFY); /* kts's own TX seals it in line */
		if (c->state == KTS_STATE_FAILED)
			return c->fail_code;
	} else {
		kts_err_clear();
		if (SSL_shutdown(c->ssl) < 0)
			return kts_ssl_result(c, -1, "close");
	}
	c->tx_closed = 1;
	return KTS_OK;
}
