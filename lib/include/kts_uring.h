/*
 * kts_uring.h - io_uring helpers for connections with caller-owned I/O
 * (kts_attach_caller_io). Header only: each helper fills one SQE the caller
 * got from its own ring; kts never owns a ring, and libkts does not link
 * liburing. Include <liburing.h> first. See kts.h for the loop these serve
 * and kts_caller_io(3); tools/examples/uring_https.c is a complete program.
 *
 * Kernel facts the helpers follow: kTLS refuses MSG_WAITALL and SEND_ZC, a
 * plain or multishot receive on kernel RX fails with EIO at a control record
 * (take it with one recvmsg, then re-arm), and sends on one connection must
 * not overlap.
 */
#ifndef KTS_URING_H
#define KTS_URING_H

#include <sys/socket.h>

#include "kts.h"

/* A receive that can carry a kTLS record type: recvmsg into buf. Complete it
 * with kts_recvmsg_done(c, m, cqe->res). During the handshake, len is kept to
 * kts_feed_limit(). */
static inline void kts_uring_prep_recvmsg(struct io_uring_sqe *sqe, const struct kts *c, int fd,
					  struct kts_msg *m, void *buf, size_t len)
{
	kts_recv_prep(c, m, buf, len);
	io_uring_prep_recvmsg(sqe, fd, &m->msg, 0);
}

/* A multishot receive into provided buffers of group bgid (IORING_OP_RECV,
 * kernel 6.0): only once the handshake is over (kts_handshake() returned
 * KTS_OK and kts_feed_limit() is SIZE_MAX). Complete each CQE with
 * kts_recv_done(c, buffer, buffer size, cqe->res); on KTS_WANT_CONTROL, and
 * whenever a CQE lacks IORING_CQE_F_MORE, the multishot is over: take the
 * control record with kts_uring_prep_recvmsg(), then arm again. */
static inline void kts_uring_prep_recv_multishot(struct io_uring_sqe *sqe, int fd, int bgid)
{
	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (__u16)bgid;
}

/* The next bytes kts needs sent (the handshake, userspace TX ciphertext,
 * tickets and alerts on kernel TX), as one sendmsg. Returns their count, 0
 * when there is nothing (the SQE is untouched then: ask kts_out_pending()
 * before taking one). Complete it with
 * kts_out_done(c, cqe->res). Send nothing else on fd until then. */
static inline size_t kts_uring_prep_out(struct io_uring_sqe *sqe, struct kts *c, int fd,
					struct kts_msg *m)
{
	size_t n = kts_out_msg(c, m);

	if (n > 0)
		io_uring_prep_sendmsg(sqe, fd, &m->msg, MSG_NOSIGNAL);
	return n;
}

/* Plaintext on kernel TX (kts_offload(c, KTS_TX) == KTS_PATH_KERNEL), once
 * kts_out_msg() returns 0: a plain send (never SEND_ZC, never MSG_WAITALL;
 * more sets MSG_MORE so the kernel fills whole records). Complete it with
 * kts_send_done(c, cqe->res, len); resubmit the rest of a short send. */
static inline void kts_uring_prep_send(struct io_uring_sqe *sqe, int fd, const void *buf,
				       size_t len, int more)
{
	io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
}

#endif
