/* uring_ring.h - one io_uring of kts-server's uring engine: set up with the
 * flags the kernel takes (probed), a provided buffer ring for receives, and a
 * pool of pipes for splicing files to kernel-TLS sockets. One thread uses it. */
#ifndef KTS_TOOLS_URING_RING_H
#define KTS_TOOLS_URING_RING_H

#include <liburing.h>
#include <stddef.h>

#define URING_BGID 1 /* the buffer group of receives */
/* Bytes a pipe of the pool holds: a 1 MiB file -> pipe splice costs io-wq
 * about a quarter of four 256 KiB ones. pipe-max-size (1 MiB by default)
 * or the user's pipe budget may leave a pipe smaller. */
#define URING_PIPE_SIZE (1024 * 1024)

struct uring_ring {
	struct io_uring ring;
	unsigned flags;           /* the setup flags the kernel took */
	unsigned char close_op;   /* the kernel has IORING_OP_CLOSE (5.6) */
	unsigned char skip_cqe;   /* ... and IOSQE_CQE_SKIP_SUCCESS (5.17) */
	struct io_uring_buf_ring *br; /* NULL: no provided buffers (kernel too old) */
	size_t br_len;
	char *bufs;
	unsigned nbufs, bufsz;
	int (*pipes)[2];          /* free pipes */
	int npipes, pipes_max;    /* pooled pipes all hold URING_PIPE_SIZE */
};

/* Set up r: a ring of entries SQEs, nbufs (a power of two) provided buffers
 * of bufsz bytes. Returns 0, or -errno (with what failed in err). *fallback
 * gets a line saying which wanted feature the kernel lacked ("" if none). */
int uring_ring_init(struct uring_ring *r, unsigned entries, unsigned nbufs, unsigned bufsz,
		    char *fallback, size_t fblen, char *err, size_t errlen);
void uring_ring_fini(struct uring_ring *r);

/* An SQE; submits what is queued when the ring is full. Never NULL. */
struct io_uring_sqe *uring_sqe(struct uring_ring *r);

/* Close fd with the next submit, in the io_uring_enter the loop makes anyway
 * (user_data ud on a failure's completion), or at once on kernels without
 * IORING_OP_CLOSE. fd must be out of use from now on. */
void uring_close(struct uring_ring *r, int fd, uint64_t ud);

/* Provided buffer bid, and giving it back to the kernel. */
void *uring_buf(struct uring_ring *r, unsigned bid);
void uring_buf_put(struct uring_ring *r, unsigned bid);

/* A pipe (p[0] read end, p[1] write end) from the pool: returns the bytes it
 * holds, or -1 if none can be had. Back into the pool when empty (clean) and
 * full-sized (size, as get returned it), else closed. */
int uring_pipe_get(struct uring_ring *r, int p[2]);
void uring_pipe_put(struct uring_ring *r, const int p[2], int size, int clean);

#endif
