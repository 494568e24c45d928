/* uring_ring.c - ring setup, provided buffers, pipe pool (see uring_ring.h). */
#include "uring_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PIPES_MAX 256          /* pooled per ring; more concurrent bodies read+send */

/* Setup flags, best first: a ring used by one thread only, its completions run
 * when it waits (DEFER_TASKRUN, 6.1) rather than by interrupting it. */
static const unsigned setup_tries[] = {
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	IORING_SETUP_SINGLE_ISSUER,
	0,
};

int uring_ring_init(struct uring_ring *r, unsigned entries, unsigned nbufs, unsigned bufsz,
		    char *fallback, size_t fblen, char *err, size_t errlen)
{
	struct io_uring_params p;
	struct io_uring_buf_reg reg;
	int rc = -EINVAL;

	memset(r, 0, sizeof(*r));
	*fallback = '\0';
	for (size_t i = 0; i < sizeof(setup_tries) / sizeof(setup_tries[0]); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = setup_tries[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 8; /* multishot receives post many CQEs */
		rc = io_uring_queue_init_params(entries, &r->ring, &p);
		if (rc != -EINVAL)
			break;
	}
	if (rc < 0) {
		snprintf(err, errlen, "io_uring_setup: %s", strerror(-rc));
		return rc;
	}
	r->flags = p.flags & ~(unsigned)IORING_SETUP_CQSIZE;
	{
		struct io_uring_probe *pr = io_uring_get_probe_ring(&r->ring);

		r->close_op = pr && io_uring_opcode_supported(pr, IORING_OP_CLOSE);
		r->skip_cqe = r->close_op && (p.features & IORING_FEAT_CQE_SKIP);
		io_uring_free_probe(pr);
	}
	if (!(r->flags & IORING_SETUP_DEFER_TASKRUN))
		snprintf(fallback, fblen, "io_uring: kernel refuses %s: ring set up without it",
			 r->flags & IORING_SETUP_SINGLE_ISSUER ? "DEFER_TASKRUN"
							    : "SINGLE_ISSUER and DEFER_TASKRUN");

	/* liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves. */
	r->nbufs = nbufs;
	r->bufsz = bufsz;
	r->br_len = nbufs * sizeof(struct io_uring_buf);
	r->br = mmap(NULL, r->br_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	r->bufs = malloc((size_t)nbufs * bufsz);
	if (r->br == MAP_FAILED || !r->bufs) {
		snprintf(err, errlen, "buffer ring: out of memory");
		if (r->br != MAP_FAILED)
			munmap(r->br, r->br_len);
		r->br = NULL;
		uring_ring_fini(r);
		return -ENOMEM;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)r->br;
	reg.ring_entries = nbufs;
	reg.bgid = URING_BGID;
	rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (rc < 0) {
		/* Before 5.19: receives take the connection's own buffer. */
		size_t n = strlen(fallback);

		snprintf(fallback + n, fblen - n, "%sio_uring: no provided buffer rings (%s): "
			 "one-shot receives into per-connection buffers", n ? "; " : "",
			 strerror(-rc));
		munmap(r->br, r->br_len);
		r->br = NULL;
		free(r->bufs);
		r->bufs = NULL;
	} else {
		io_uring_buf_ring_init(r->br);
		for (unsigned i = 0; i < nbufs; i++)
			io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * bufsz, bufsz,
					      (unsigned short)i, io_uring_buf_ring_mask(nbufs),
					      (int)i);
		io_uring_buf_ring_advance(r->br, (int)nbufs);
	}
	r->pipes_max = PIPES_MAX;
	r->pipes = calloc((size_t)r->pipes_max, sizeof(*r->pipes));
	return 0;
}

void uring_ring_fini(struct uring_ring *r)
{
	for (int i = 0; i < r->npipes; i++) {
		close(r->pipes[i][0]);
		close(r->pipes[i][1]);
	}
	free(r->pipes);
	r->pipes = NULL;
	r->npipes = 0;
	if (r->ring.ring_fd > 0) {
		io_uring_submit(&r->ring); /* closes still queued (uring_close) */
		io_uring_queue_exit(&r->ring);
	}
	if (r->br)
		munmap(r->br, r->br_len);
	r->br = NULL;
	free(r->bufs);
	r->bufs = NULL;
}

struct io_uring_sqe *uring_sqe(struct uring_ring *r)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&r->ring)))
		io_uring_submit(&r->ring);
	return sqe;
}

void uring_close(struct uring_ring *r, int fd, uint64_t ud)
{
	struct io_uring_sqe *sqe;

	if (!r->close_op) {
		close(fd);
		return;
	}
	sqe = uring_sqe(r);
	io_uring_prep_close(sqe, fd);
	io_uring_sqe_set_data64(sqe, ud);
	if (r->skip_cqe)
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void *uring_buf(struct uring_ring *r, unsigned bid)
{
	return r->bufs + (size_t)bid * r->bufsz;
}

void uring_buf_put(struct uring_ring *r, unsigned bid)
{
	io_uring_buf_ring_add(r->br, uring_buf(r, bid), r->bufsz, (unsigned short)bid,
			      io_uring_buf_ring_mask(r->nbufs), 0);
	io_uring_buf_ring_advance(r->br, 1);
}

int uring_pipe_get(struct uring_ring *r, int p[2])
{
	int sz;

	if (r->npipes > 0) {
		r->npipes--;
		p[0] = r->pipes[r->npipes][0];
		p[1] = r->pipes[r->npipes][1];
		return URING_PIPE_SIZE;
	}
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	/* Bigger than the default 64 KiB: fewer rounds per file. May be refused
	 * (pipe-max-size, the user's pipe budget): then take what it has. */
	if (fcntl(p[1], F_SETPIPE_SZ, URING_PIPE_SIZE) >= 0)
		return URING_PIPE_SIZE;
	if ((sz = fcntl(p[1], F_GETPIPE_SZ)) > 0)
		return sz;
	close(p[0]);
	close(p[1]);
	return -1;
}

void uring_pipe_put(struct uring_ring *r, const int p[2], int size, int clean)
{
	/* A smaller pipe is not kept: the next body may get a full one. */
	if (clean && size >= URING_PIPE_SIZE && r->npipes < r->pipes_max && r->pipes) {
		r->pipes[r->npipes][0] = p[0];
		r->pipes[r->npipes][1] = p[1];
		r->npipes++;
		return;
	}
	close(p[0]);
	close(p[1]);
}
