/* engine_uring.c - kts-server's io_uring engine: --threads rings, one thread
 * each, all accepting on the listening socket (multishot accept). Every byte
 * of a connection moves through its ring (kts_attach_caller_io); kts turns
 * them into TLS and httpsess into HTTP answers. Per connection: one receive
 * (one-shot recvmsg during the handshake, multishot into provided buffers
 * after it) and at most one send in flight; a slot is freed only when nothing
 * of it is in flight, and completions carry the slot's generation. Deadlines
 * are checked by a per-ring tick. The signals stay with the process loop
 * (server_loop), which wakes the rings through an eventfd read on each. */
#include <errno.h>
#include <fcntl.h>
#include <kts.h>
#include <liburing.h>
#include <kts_uring.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "blockpool.h"
#include "engine.h"
#include "httpsess.h"
#include "opts.h"
#include "pagecache.h"
#include "server.h"
#include "tio.h"
#include "txrecords.h"
#include "uring_ring.h"

#define RING_ENTRIES 1024
#define RBUFS 256                /* provided buffers per ring (power of two) ... */
#define RBUF_SIZE (16 * 1024 + 64) /* ... each a TLS record with its header */
#define HS_BUF_SIZE (17 * 1024)  /* a connection's own receive buffer (handshake) */
#define BODY_CHUNK (64 * 1024)   /* file bytes read per round into a reply's buffer */
#define SPLICE_MIN (16 * 1024)   /* kernel TX: files this large go by sendfile or splice */
#define CACHED_CHECK (1024 * 1024) /* file bytes whose caching one cachestat checks */
#define BODY_POOL 32             /* reply buffers a ring keeps for reuse */
#define SMALL_BODY 4096          /* a reply this size (head included) takes a small buffer */
#define TICK_MS 50               /* deadlines, lingering closes and stops are checked this often */
#define ACCEPT_PAUSE_MS 100      /* out of fds or memory: accept again after this */
#define MSG_POOL 64              /* send headers a ring keeps for reuse */
/* Non-blocking sockets: the ring thread sends files itself (sendfile, or
 * splice pipe -> socket), and io_uring's own operations on them still wait
 * by polling. */
#define ACCEPT_FLAGS (SOCK_CLOEXEC | SOCK_NONBLOCK)

/* user_data: generation (32 bits) | slot (24) | op (8). Ring-level ops have
 * slot RING_SLOT; OP_IGNORE completions (cancellations) are dropped. */
enum op { OP_IGNORE, OP_ACCEPT, OP_TICK, OP_WAKE, OP_STORE, OP_RX, OP_TX, OP_SPLICE_IN };
#define RING_SLOT 0xffffffu
#define ERR_FILE (-200) /* reading or splicing the file failed: errno in sys_errno */
#define ERR_SEND (-201) /* the send itself failed: errno in sys_errno */

enum phase { PH_HANDSHAKE, PH_OPEN, PH_CLOSING, PH_LINGER, PH_DEAD };
enum rx_kind { RX_NONE, RX_MSG, RX_SELECT, RX_MULTI };
enum tx_kind { TX_NONE, TX_OUT, TX_SEND, TX_SPLICE_IN, TX_POLL_OUT };

struct shared {
	struct server *srv;
	int lfd;
	atomic_int active; /* connections of this process, all rings */
	atomic_int stop; /* enum stop_mode, 0 while serving */
	atomic_int fallback_told;
	atomic_int rings_done; /* ring threads that have left their loop */
	struct hs_cfg hs;
	size_t rbufs;
	int sendfile; /* cached files by sendfile (KTS_SERVER_URING_NO_SENDFILE: splice only) */
};

/* How sent bytes left: the log's last line counts them (the kernel tier
 * proves the file paths with it). */
enum sent_by { BY_SPLICE, BY_SENDFILE, BY_BUFFER, BY_USERSPACE, BY_KINDS };

struct uconn;

struct ring {
	struct shared *sh;
	struct uring_ring u;
	pthread_t tid;
	int id;
	struct uconn **slots;
	uint32_t *gens;
	int *free_slots, nfree, nslots;
	struct uconn **live_list; /* the live connections, for the tick */
	int live;
	int accept_armed, accept_oneshot;
	int64_t accept_again; /* 0, or when to arm accept after a pause */
	int wake_fd;
	uint64_t wake_val;
	/* --session-store answers, from its thread: queued here, then store_fd
	 * (an eventfd the ring reads) is written. */
	int store_fd;
	uint64_t store_val;
	pthread_mutex_t inbox_lock;
	struct store_answer *inbox;
	struct __kernel_timespec tick;
	int stopping, cut_all; /* stopping: the enum stop_mode */
	int64_t stop_at;
	int left_open; /* connections still open when the stop gave up */
	int failed;
	unsigned long nobufs; /* receives that found no provided buffer */
	unsigned long long sent[BY_KINDS]; /* bytes on the wire, by enum sent_by */
	/* Reply buffers come back here: a malloc and free of 64 KiB per reply
	 * made glibc trim and refault the heap each time. A small reply takes
	 * a small buffer: 64 KiB blocks kept for 1 KiB replies stayed resident. */
	struct blockpool body_pool, small_body_pool;
	/* Send headers, taken only while kts' own bytes go out: an idle
	 * connection holds none. */
	struct blockpool msg_pool;
	/* Plaintext that came with a handshake's end passes through here on
	 * its way to the session: the connection may hold no buffer then. */
	char scratch[HS_BUF_SIZE];
	sem_t ready; /* posted once the ring is set up (or failed) */
};

/* A connection's own receive, allocated only while it needs one: an idle
 * connection on the buffer ring holds neither the buffer nor its header. */
struct own_rx {
	struct kts_msg msg;
	char buf[HS_BUF_SIZE];
};

/* A session store's answer for the connection token names. */
struct store_answer {
	struct store_answer *next;
	uint64_t token; /* gen << 32 | slot */
	size_t len;
	unsigned char der[];
};

struct uconn {
	/* Ordered by size, so that nothing pads: an idle connection is mostly
	 * this, struct kts and OpenSSL's state. */
	struct kts *k;
	struct own_rx *own; /* handshake, control records, no buffer ring */
	/* send */
	size_t tx_want;
	struct kts_msg *smsg; /* while a TX_OUT is in flight */
	/* the answer going out */
	struct hs_reply rep;
	size_t head_done;  /* head bytes sent (kernel TX) or written to kts (user) */
	off_t off;         /* next file offset to read or splice */
	off_t cached_to;   /* the file is in the page cache up to here (checked) */
	long long body_out; /* body bytes sent (kernel) or written to kts (user) */
	char *body;
	size_t body_cap, body_len, body_used;
	size_t body_head; /* head bytes at the front of body (a small reply: one send) */
	int64_t sess_until; /* the handshake waits for the session store (sess_wait) until then */
	struct deadline dl; /* handshake, send, close_notify */
	int64_t linger_end, last_rx;
	struct httpsess hs;

	int slot;
	int live_i; /* in ring.live_list */
	uint32_t gen;
	int fd;
	int inflight;
	int rx_rc;  /* with rx_end: the kts result the input ended with */
	int pipe[2], pipe_size; /* pipe_size 0: no pipe */
	unsigned int in_pipe;   /* bytes in the pipe, at most pipe_size */
	int sys_errno;

	unsigned char ph; /* enum phase */
	unsigned char rx; /* enum rx_kind: the receive in flight */
	unsigned char tx; /* enum tx_kind: the send in flight */
	unsigned char rx_cancelled; /* a cancel of the multishot is on its way */
	unsigned char need_ctrl;    /* kernel RX met a control record: one recvmsg next */
	unsigned char hs_own;       /* the handshake found no provided buffer: use own */
	unsigned char rx_end;       /* the input ended (rx_rc) and the session has not seen it */
	unsigned char replying;
	unsigned char hs_failed; /* the handshake failed: its alert goes out, then the end */
	unsigned char notify_queued; /* userspace TX: close_notify follows the last answer */
	unsigned char sess_wait; /* the handshake waits for the session store */
	char peer[ADDR_PEER_MAX];
};

static uint64_t ud_make(uint32_t gen, uint32_t slot, enum op op)
{
	return (uint64_t)gen << 32 | (uint64_t)(slot & RING_SLOT) << 8 | (uint64_t)op;
}

static struct io_uring_sqe *conn_sqe(struct ring *r, struct uconn *c)
{
	struct io_uring_sqe *sqe = uring_sqe(&r->u);

	c->inflight++;
	return sqe;
}

static void conn_sqe_tag(struct io_uring_sqe *sqe, struct uconn *c, enum op op)
{
	io_uring_sqe_set_data64(sqe, ud_make(c->gen, (uint32_t)c->slot, op));
}

static void log_note(struct uconn *c)
{
	if (c->hs.note) {
		logmsg("conn %s %s", c->peer, c->hs.note);
		httpsess_note_clear(&c->hs);
	}
}

/* ---- ending connections ------------------------------------------------------ */

static void body_put(struct ring *r, struct uconn *c)
{
	blockpool_put(c->body_cap == SMALL_BODY ? &r->small_body_pool : &r->body_pool, c->body);
	c->body = NULL;
}

static void msg_put(struct ring *r, struct uconn *c)
{
	blockpool_put(&r->msg_pool, c->smsg);
	c->smsg = NULL;
}

static void pipe_put(struct ring *r, struct uconn *c)
{
	if (c->pipe_size)
		uring_pipe_put(&r->u, c->pipe, c->pipe_size, c->in_pipe == 0);
	c->pipe_size = 0;
}

/* The answer's file, taken from the session at reply_start. */
static void file_close(struct ring *r, struct uconn *c)
{
	if (c->replying && c->rep.fd >= 0)
		uring_close(&r->u, c->rep.fd, ud_make(0, RING_SLOT, OP_IGNORE));
	c->rep.fd = -1;
}

static void conn_free(struct ring *r, struct uconn *c)
{
	file_close(r, c);
	pipe_put(r, c);
	msg_put(r, c);
	httpsess_free(&c->hs);
	kts_free(c->k);
	uring_close(&r->u, c->fd, ud_make(0, RING_SLOT, OP_IGNORE));
	free(c->own);
	body_put(r, c);
	r->slots[c->slot] = NULL;
	r->gens[c->slot]++;
	r->free_slots[r->nfree++] = c->slot;
	r->live--;
	r->live_list[c->live_i] = r->live_list[r->live];
	r->live_list[c->live_i]->live_i = c->live_i;
	atomic_fetch_sub(&r->sh->active, 1);
	stats_conn_close(r->sh->srv->me);
	free(c);
}

/* End at once: what is in flight completes (shutdown wakes it), then the slot
 * goes. No close_notify. With nothing in flight (a lingering close that
 * met the client's FIN), or only a receive already being cancelled, there is
 * nothing to wake: close alone ends it. */
static void conn_kill(struct uconn *c)
{
	int paused_rx = c->rx == RX_MULTI && c->rx_cancelled;

	if (c->ph == PH_DEAD)
		return;
	c->ph = PH_DEAD;
	if (c->inflight > paused_rx)
		shutdown(c->fd, SHUT_RDWR);
}

/* Did the peer just drop the connection (no close_notify, or a reset)? */
static int unclean_eof(const struct kts *k, ssize_t rc)
{
	return rc == KTS_ERR_TRUNCATED ||
	       (rc == KTS_ERR_SYS && strstr(kts_error(k), strerror(ECONNRESET)));
}

/* A receive that met the peer's end first takes the socket's error with it
 * (the send then sees EPIPE or nothing): TCP's state still tells a reset
 * (closed) from a FIN (close-wait). */
static const char *peer_end(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE)
		return strerror(ECONNRESET);
	return "the peer closed the connection without close_notify";
}

static void send_failed(struct uconn *c, int rc)
{
	char m[256], part[64] = "";

	if (c->rep.fd >= 0 && c->rep.size > 0)
		snprintf(part, sizeof(part), " (%lld of %lld body bytes sent)", c->body_out,
			 c->rep.size);
	if (rc == ERR_FILE)
		logmsg("conn %s error: send: reading the file: %s%s", c->peer,
		       strerror(c->sys_errno), part);
	else if (rc == ERR_SEND)
		logmsg("conn %s error: send: %s%s", c->peer, strerror(c->sys_errno), part);
	else if (unclean_eof(c->k, rc))
		logmsg("conn %s error: send: %s%s", c->peer, peer_end(c->fd), part);
	else if (rc == TIO_TIMEOUT)
		logmsg("conn %s error: send: under %d KiB taken in %d s, the client is not "
		       "reading%s",
		       c->peer, SEND_MIN_PROGRESS / 1024, c->hs.cfg->timeout_s, part);
	else
		logmsg("conn %s error: %s%s", c->peer, tio_message(c->k, rc, "send", m, sizeof(m)),
		       part);
}

/* ---- receiving ----------------------------------------------------------------- */

static int rx_wanted(const struct ring *r, const struct uconn *c)
{
	(void)r;
	if (c->ph == PH_LINGER)
		return 1;
	return c->ph == PH_OPEN && !c->rx_end && httpsess_wants_input(&c->hs);
}

/* Receives take provided buffers when the ring has them: the connection's
 * own buffer goes until a handshake or control record needs it again. */
static void rbuf_drop(const struct ring *r, struct uconn *c)
{
	if (r->u.br) {
		free(c->own);
		c->own = NULL;
	}
}

/* One recvmsg into the connection's own buffer (kts_feed_limit applies). */
static int rx_arm_msg(struct ring *r, struct uconn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->own && !(c->own = malloc(sizeof(*c->own))))
		return -1;
	sqe = conn_sqe(r, c);
	if (c->ph == PH_LINGER) { /* bytes to drop: no kts */
		io_uring_prep_recv(sqe, c->fd, c->own->buf, HS_BUF_SIZE, 0);
	} else {
		kts_uring_prep_recvmsg(sqe, c->k, c->fd, &c->own->msg, c->own->buf, HS_BUF_SIZE);
	}
	conn_sqe_tag(sqe, c, OP_RX);
	c->rx = RX_MSG;
	return 0;
}

/* A handshake receive: one-shot into a provided buffer when the ring has
 * them, so a handshake waiting for its client holds no 17 KiB buffer of its
 * own; else (or once the ring ran out) into the connection's own buffer.
 * kts_feed_limit() bounds it either way. */
static int rx_arm_hs(struct ring *r, struct uconn *c)
{
	size_t lim = kts_feed_limit(c->k);
	struct io_uring_sqe *sqe;

	if (!r->u.br || c->hs_own || lim == 0)
		return rx_arm_msg(r, c);
	sqe = conn_sqe(r, c);
	io_uring_prep_recv(sqe, c->fd, NULL, lim < r->u.bufsz ? (unsigned)lim : r->u.bufsz, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = URING_BGID;
	conn_sqe_tag(sqe, c, OP_RX);
	c->rx = RX_SELECT;
	return 0;
}

static void rx_update(struct ring *r, struct uconn *c)
{
	if (c->ph == PH_DEAD || c->ph == PH_HANDSHAKE)
		return;
	if (rx_wanted(r, c)) {
		if (c->rx != RX_NONE)
			return;
		if (c->need_ctrl || !r->u.br) {
			if (rx_arm_msg(r, c) < 0) {
				logmsg("conn %s error: out of memory", c->peer);
				conn_kill(c);
			}
			c->need_ctrl = 0;
			return;
		}
		struct io_uring_sqe *sqe = conn_sqe(r, c);

		kts_uring_prep_recv_multishot(sqe, c->fd, URING_BGID);
		conn_sqe_tag(sqe, c, OP_RX);
		c->rx = RX_MULTI;
		c->rx_cancelled = 0;
		return;
	}
	/* Enough input waits: pause the multishot (it ends with -ECANCELED). */
	if (c->rx == RX_MULTI && !c->rx_cancelled) {
		struct io_uring_sqe *sqe = uring_sqe(&r->u);

		io_uring_prep_cancel64(sqe, ud_make(c->gen, (uint32_t)c->slot, OP_RX), 0);
		io_uring_sqe_set_data64(sqe, ud_make(0, RING_SLOT, OP_IGNORE));
		c->rx_cancelled = 1;
	}
}

/* Plaintext n bytes at buf (a buffer of cap): into the session, then what kts
 * still holds. Returns the last kts result (KTS_WANT_READ, 0, an error). */
static ssize_t rx_take(struct uconn *c, char *buf, size_t cap, ssize_t n, int64_t now)
{
	while (n > 0) {
		if (httpsess_input(&c->hs, buf, (size_t)n, now) < 0) {
			log_note(c);
			conn_kill(c);
			return KTS_WANT_READ;
		}
		n = kts_read(c->k, buf, cap);
	}
	return n;
}

/* A receive completed after the handshake. */
static void on_rx(struct ring *r, struct uconn *c, const struct io_uring_cqe *cqe, int64_t now)
{
	int res = cqe->res, has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
	unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
	int was_msg = c->rx == RX_MSG;
	ssize_t n;

	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		c->rx = RX_NONE;
		c->inflight--;
	}
	if (c->ph != PH_OPEN) {
		/* Lingering (or ending): drop what comes; an end or error ends it. */
		if (has_buf)
			uring_buf_put(&r->u, bid);
		if (c->ph == PH_LINGER) {
			if (res > 0)
				c->last_rx = now;
			else if (res != -ENOBUFS && res != -ECANCELED)
				conn_kill(c);
		}
		return;
	}
	if (res == -ENOBUFS || res == -ECANCELED) {
		r->nobufs += res == -ENOBUFS;
		return; /* out of buffers, or paused: armed again when wanted */
	}
	if (has_buf) {
		char *buf = uring_buf(&r->u, bid);

		n = kts_recv_done(c->k, buf, r->u.bufsz, res);
		n = rx_take(c, buf, r->u.bufsz, n, now);
		uring_buf_put(&r->u, bid);
	} else if (was_msg) {
		n = kts_recvmsg_done(c->k, &c->own->msg, res);
		n = rx_take(c, c->own->buf, HS_BUF_SIZE, n, now);
		if (c->rx == RX_NONE) /* a control record: rare, its buffer not kept */
			rbuf_drop(r, c);
	} else {
		n = kts_recv_done(c->k, NULL, 0, res); /* an end or error, no buffer */
	}
	if (c->ph == PH_DEAD || n == KTS_WANT_READ)
		return;
	if (n == KTS_WANT_CONTROL) {
		c->need_ctrl = 1; /* the multishot is over: one recvmsg, then again */
		return;
	}
	c->rx_end = 1; /* close_notify (0) or an error: seen when the session reads */
	c->rx_rc = (int)n;
}

/* ---- sending ------------------------------------------------------------------- */

static int kernel_tx(const struct uconn *c)
{
	return kts_offload(c->k, KTS_TX) == KTS_PATH_KERNEL;
}

/* kts' own bytes; out of memory for the header ends the connection. */
static void tx_out(struct ring *r, struct uconn *c)
{
	struct io_uring_sqe *sqe;

	if (!c->smsg)
		c->smsg = blockpool_get(&r->msg_pool);
	if (!c->smsg) {
		logmsg("conn %s error: out of memory", c->peer);
		conn_kill(c);
		return;
	}
	sqe = conn_sqe(r, c);
	kts_uring_prep_out(sqe, c->k, c->fd, c->smsg);
	/* Ciphertext ending in close_notify: held for the FIN (close or
	 * shutdown comes next), which then rides in the same segment. Only on
	 * userspace TX: kernel TX's record type cmsg refuses MSG_MORE. */
	if (c->notify_queued)
		sqe->msg_flags |= MSG_MORE;
	conn_sqe_tag(sqe, c, OP_TX);
	c->tx = TX_OUT;
}

static void tx_send(struct ring *r, struct uconn *c, const char *p, size_t len, int more)
{
	struct io_uring_sqe *sqe = conn_sqe(r, c);

	kts_uring_prep_send(sqe, c->fd, p, len, more);
	conn_sqe_tag(sqe, c, OP_TX);
	c->tx = TX_SEND;
	c->tx_want = len;
}

/* Fill the reply's buffer from the file. The first fill also takes the head
 * in front of the body, so that a small reply is one send (one record in
 * userspace TX). Returns 0, or a TIO_/KTS_ code. */
static int body_fill(struct ring *r, struct uconn *c)
{
	long long left = c->rep.size - (long long)c->off;
	size_t head = c->head_done == 0 && c->rep.head_len <= BODY_CHUNK / 4 ? c->rep.head_len : 0;
	size_t want;
	ssize_t n;

	if (!c->body) {
		int small = (long long)head + left <= SMALL_BODY;

		c->body_cap = small ? SMALL_BODY : BODY_CHUNK;
		if (!(c->body = blockpool_get(small ? &r->small_body_pool : &r->body_pool)))
			return KTS_ERR_NOMEM;
	}
	want = left < (long long)(c->body_cap - head) ? (size_t)left : c->body_cap - head;
	n = pread(c->rep.fd, c->body + head, want, c->off);
	if (n == 0)
		return TIO_SHORT_FILE;
	if (n < 0) {
		c->sys_errno = errno;
		return ERR_FILE;
	}
	memcpy(c->body, c->rep.head, head);
	c->head_done += head;
	c->body_head = head;
	c->off += n;
	c->body_len = head + (size_t)n;
	c->body_used = 0;
	return 0;
}

/* Before any of the reply went out: head and first body bytes together. */
static int first_fill(struct ring *r, struct uconn *c)
{
	if (c->head_done > 0 || c->body_len > 0 || c->rep.fd < 0 || c->off >= c->rep.size)
		return 0;
	return body_fill(r, c);
}

/* w bytes of the reply's buffer went out: the body's share of them counts. */
static void body_advance(struct uconn *c, size_t w)
{
	size_t head = c->body_used < c->body_head ? c->body_head - c->body_used : 0;

	c->body_used += w;
	c->body_out += (long long)(w > head ? w - head : 0);
}

/* A send or splice on kernel TX ended with res (bytes, or -errno) of want:
 * kts checks it, the reply and the send deadline count it. Returns the bytes,
 * KTS_WANT_WRITE, or another negative value once the failure is logged and
 * the connection killed. */
static ssize_t kernel_sent(struct ring *r, struct uconn *c, enum sent_by by, ssize_t res,
			   size_t want, int64_t now)
{
	ssize_t n = kts_send_done(c->k, res, want);

	if (n == KTS_WANT_WRITE)
		return n;
	if (n <= 0) {
		/* The send's own errno, even when a receive failed first (a reset
		 * seen by the receive leaves the send only EPIPE otherwise). */
		c->sys_errno = res < 0 ? (int)-res : 0;
		send_failed(c, res < 0 ? ERR_SEND : n == 0 ? TIO_PEER_CLOSED : (int)n);
		conn_kill(c);
		return n < 0 ? n : KTS_ERR_SYS;
	}
	deadline_moved(&c->dl, now, (uint64_t)n);
	r->sent[by] += (unsigned long long)n;
	if (by == BY_SPLICE) {
		c->in_pipe -= (unsigned int)n;
		c->body_out += n;
	} else if (by == BY_SENDFILE) {
		c->off += n;
		c->body_out += n;
	} else if (c->head_done < c->rep.head_len) {
		c->head_done += (size_t)n;
	} else {
		body_advance(c, (size_t)n);
	}
	return n;
}

/* Wait for the socket to take more (kernel TX from the ring's thread). */
static void wait_writable(struct ring *r, struct uconn *c)
{
	struct io_uring_sqe *sqe = conn_sqe(r, c);

	io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
	conn_sqe_tag(sqe, c, OP_TX);
	c->tx = TX_POLL_OUT;
}

/* The result n (or -1 and errno) of a non-blocking send of want bytes from
 * the ring's thread: 0 when all went, 1 when the connection now waits for
 * POLLOUT (short or refused: the socket buffer is full) or ended (logged). */
static int inline_sent(struct ring *r, struct uconn *c, enum sent_by by, ssize_t n, size_t want,
		       int64_t now)
{
	n = kernel_sent(r, c, by, n < 0 ? -errno : n, want, now);
	if (n < 0 && n != KTS_WANT_WRITE)
		return 1;
	if (n > 0 && (size_t)n == want)
		return 0;
	wait_writable(r, c);
	return 1;
}

/* Kernel TX: where this reply's next send of file bytes from `from` stops
 * (txrecords.h: records that start on page boundaries cost the cipher less). */
static long long first_record_end(const struct uconn *c)
{
	return txrec_first_end(c->rep.head_len, c->rep.size);
}

static long long send_end(const struct uconn *c, long long from, long long max)
{
	return txrec_send_end(c->rep.head_len, c->rep.size, from, max);
}

/* Pipe -> socket from the ring's thread: the bytes are in the pipe already,
 * so a non-blocking splice never waits, and costs less than a round through
 * io-wq. What the socket cannot take now waits for POLLOUT. Returns 1 when
 * waiting (or ended: the failure is logged), 0 when the pipe is empty. */
static int splice_out(struct ring *r, struct uconn *c, int more, int64_t now)
{
	while (c->in_pipe > 0) {
		size_t want = c->in_pipe;
		/* no MSG_MORE at the first record's end: the record closes there */
		int close_rec = c->off == first_record_end(c);
		ssize_t n = splice(c->pipe[0], NULL, c->fd, NULL, want,
				   SPLICE_F_NONBLOCK | (more && !close_rec ? SPLICE_F_MORE : 0));

		if (inline_sent(r, c, BY_SPLICE, n, want, now))
			return 1;
	}
	return 0;
}

/* The file's next bytes while the page cache holds them: sendfile(2) from the
 * ring's thread, as the threads engine and nginx send them, without a round
 * through io-wq (sendfile cannot wait for the socket here, and a cached file
 * does not make it wait for the disk). Returns 1 when waiting (or ended: the
 * failure is logged), 0 when the file is all out or its next bytes are not
 * cached (the io-wq splice takes them). */
static int sendfile_cached(struct ring *r, struct uconn *c, int64_t now)
{
	while (c->off < c->rep.size) {
		size_t want;
		off_t at = c->off;
		ssize_t n;

		if (c->cached_to <= c->off) {
			/* the first record is checked with the span after it */
			long long first = first_record_end(c);
			long long to = send_end(c, c->off > first ? c->off : first, CACHED_CHECK);

			if (!pagecache_has_ends(c->rep.fd, c->off, (size_t)(to - c->off)))
				return 0;
			c->cached_to = (off_t)to;
		}
		/* sendfile ends a call without MSG_MORE: only where a record may end */
		want = (size_t)(send_end(c, c->off, c->cached_to - c->off) - c->off);
		n = sendfile(c->fd, c->rep.fd, &at, want);
		if (n == 0) { /* the file is shorter than it was */
			send_failed(c, TIO_SHORT_FILE);
			conn_kill(c);
			return 1;
		}
		if (inline_sent(r, c, BY_SENDFILE, n, want, now))
			return 1;
	}
	return 0;
}

/* Kernel TX: the next plaintext send or splice of the reply. Returns 1 if one
 * was submitted (or the connection ended), 0 when the reply is all out, or a
 * TIO_/KTS_ error. */
static int reply_step_kernel(struct ring *r, struct uconn *c, int64_t now)
{
	long long file_left;
	struct io_uring_sqe *sqe;
	int big = c->rep.size >= SPLICE_MIN, rc;

	if (!big && (rc = first_fill(r, c)) < 0)
		return rc;
	file_left = c->rep.fd >= 0 ? c->rep.size - (long long)c->off : 0;
	if (c->head_done < c->rep.head_len) {
		tx_send(r, c, c->rep.head + c->head_done, c->rep.head_len - c->head_done,
			file_left > 0 || c->in_pipe > 0);
		return 1;
	}
	if (c->body_used < c->body_len) {
		tx_send(r, c, c->body + c->body_used, c->body_len - c->body_used, file_left > 0);
		return 1;
	}
	if (c->in_pipe > 0 && splice_out(r, c, file_left > 0, now))
		return 1;
	if (file_left <= 0)
		return 0;
	if (big && r->sh->sendfile && sendfile_cached(r, c, now))
		return 1;
	file_left = c->rep.size - (long long)c->off; /* sendfile may have sent it all */
	if (file_left <= 0)
		return 0;
	if (big && !c->pipe_size) {
		int sz = uring_pipe_get(&r->u, c->pipe);

		c->pipe_size = sz > 0 ? sz : 0;
	}
	/* file -> pipe through io-wq: reading the file may wait for the disk. */
	if (big && c->pipe_size) {
		size_t len = (size_t)(send_end(c, c->off, c->pipe_size) - c->off);

		sqe = conn_sqe(r, c);
		io_uring_prep_splice(sqe, c->rep.fd, (int64_t)c->off, c->pipe[1], -1, (unsigned)len,
				     0);
		conn_sqe_tag(sqe, c, OP_SPLICE_IN);
		c->tx = TX_SPLICE_IN;
		c->tx_want = len;
		return 1;
	}
	if ((rc = body_fill(r, c)) < 0) /* small files, or no pipe: read and send */
		return rc;
	return reply_step_kernel(r, c, now);
}

/* Userspace TX: every byte of the answer went to kts. */
static int reply_sealed(const struct uconn *c)
{
	return c->head_done == c->rep.head_len && c->body_used == c->body_len &&
	       !(c->rep.fd >= 0 && c->off < c->rep.size);
}

/* Userspace TX: encrypt the reply into kts' queue until it is full (then
 * send it), or the reply is all in. Returns 1 if a send was submitted, 0 when
 * the reply is all out, or an error. */
static int reply_step_user(struct ring *r, struct uconn *c)
{
	ssize_t w;
	int rc;

	if ((rc = first_fill(r, c)) < 0)
		return rc;
	for (;;) {
		if (c->head_done < c->rep.head_len) {
			w = kts_write(c->k, c->rep.head + c->head_done, c->rep.head_len - c->head_done);
			if (w == KTS_WANT_WRITE)
				break;
			if (w <= 0)
				return w == 0 ? TIO_PEER_CLOSED : (int)w;
			c->head_done += (size_t)w;
			continue;
		}
		if (c->body_used == c->body_len && c->rep.fd >= 0 && c->off < c->rep.size &&
		    (rc = body_fill(r, c)) < 0)
			return rc;
		if (c->body_used < c->body_len) {
			w = kts_write(c->k, c->body + c->body_used, c->body_len - c->body_used);
			if (w == KTS_WANT_WRITE)
				break;
			if (w <= 0)
				return w == 0 ? TIO_PEER_CLOSED : (int)w;
			body_advance(c, (size_t)w);
			continue;
		}
		break;
	}
	/* The session's last answer is all sealed: close_notify goes in the same
	 * send (start_close then finds it queued), one segment fewer. */
	if (!c->notify_queued && httpsess_last_reply(&c->hs) && reply_sealed(c) &&
	    kts_close(c->k) == KTS_OK)
		c->notify_queued = 1;
	if (kts_out_pending(c->k) > 0) {
		tx_out(r, c);
		return 1;
	}
	return reply_sealed(c) ? 0 : KTS_ERR_STATE;
}

static void reply_start(struct uconn *c, int64_t now)
{
	c->replying = 1;
	c->rep.fd = httpsess_take_file(&c->hs); /* closed on the ring: file_close */
	c->head_done = 0;
	c->off = 0;
	c->cached_to = 0;
	c->body_out = 0;
	c->body_len = c->body_used = 0;
	/* Head and body together: less than SEND_MIN_PROGRESS per --timeout fails. */
	deadline_progress(&c->dl, now, c->hs.cfg->timeout_ms, SEND_MIN_PROGRESS);
}

static void reply_done(struct ring *r, struct uconn *c, int64_t now)
{
	stats_sent(r->sh->srv->me, kernel_tx(c) ? STATS_KERNEL : STATS_USER,
		   c->head_done + (uint64_t)c->body_out);
	pipe_put(r, c);
	body_put(r, c);
	c->body_len = c->body_used = 0;
	file_close(r, c);
	c->replying = 0;
	httpsess_sent(&c->hs, now);
}

/* A send of the connection completed. */
static void on_tx(struct ring *r, struct uconn *c, enum op op, int res, int64_t now)
{
	enum tx_kind kind = c->tx;
	ssize_t n;

	c->tx = TX_NONE;
	c->inflight--;
	if (kind == TX_OUT)
		msg_put(r, c); /* the send is over: its header is free again */
	if (c->ph == PH_DEAD || c->ph == PH_LINGER)
		return;
	if (op == OP_SPLICE_IN) { /* file -> pipe: no bytes on the wire yet */
		if (res <= 0) {
			c->sys_errno = -res;
			send_failed(c, res == 0 ? TIO_SHORT_FILE : ERR_FILE);
			conn_kill(c);
			return;
		}
		c->off += res;
		c->in_pipe += (unsigned int)res;
		return;
	}
	if (kind == TX_POLL_OUT) { /* writable (or an error the splice will meet) */
		if (res < 0) {
			c->sys_errno = -res;
			send_failed(c, ERR_SEND);
			conn_kill(c);
		}
		return;
	}
	if (kind == TX_OUT) {
		n = kts_out_done(c->k, res);
		if (n != KTS_OK && n != KTS_WANT_WRITE) {
			if (c->replying || c->ph == PH_OPEN)
				send_failed(c, (int)n);
			conn_kill(c);
			return;
		}
		if (res > 0)
			r->sent[BY_USERSPACE] += (unsigned)res;
		if (res > 0 && c->replying)
			deadline_moved(&c->dl, now, (uint64_t)res);
		return;
	}
	(void)kernel_sent(r, c, BY_BUFFER, res, c->tx_want, now);
}

/* ---- the connection's next steps ------------------------------------------------ */

static void start_close(struct uconn *c, int64_t now)
{
	c->ph = PH_CLOSING;
	deadline_total(&c->dl, now, c->hs.cfg->timeout_ms);
	if (kts_close(c->k) != KTS_OK)
		conn_kill(c); /* queues close_notify, sent below */
}

/* The session met the end of input: how the connection ends. */
static enum hs_do input_ended(struct ring *r, struct uconn *c)
{
	ssize_t rc = c->rx_rc;
	char m[256];

	if (rc == 0)
		return httpsess_input_end(&c->hs, 1);
	if (!r->stopping && !(httpsess_between(&c->hs) && unclean_eof(c->k, rc)))
		logmsg("conn %s error: %s", c->peer, tio_message(c->k, (int)rc, "read", m, sizeof(m)));
	return httpsess_input_end(&c->hs, 0);
}

static void drive_open(struct ring *r, struct uconn *c, int64_t now)
{
	for (int guard = 0; guard < 64 && c->ph == PH_OPEN; guard++) {
		enum hs_do d;
		int rc;

		if (c->tx == TX_NONE && kts_out_pending(c->k) > 0)
			tx_out(r, c); /* kts' own bytes first (tickets, alerts) */
		if (c->tx != TX_NONE || c->ph != PH_OPEN)
			break;
		if (c->replying) {
			rc = kernel_tx(c) ? reply_step_kernel(r, c, now) : reply_step_user(r, c);
			if (rc > 0 || c->ph != PH_OPEN)
				break;
			if (rc < 0) {
				send_failed(c, rc);
				conn_kill(c);
				return;
			}
			reply_done(r, c, now);
			continue;
		}
		d = httpsess_next(&c->hs, now, r->stopping, &c->rep);
		if (d == HS_READ && c->rx_end)
			d = input_ended(r, c);
		log_note(c);
		if (d == HS_SEND) {
			reply_start(c, now);
			continue;
		}
		if (d == HS_CLOSE)
			start_close(c, now);
		else if (d == HS_ABORT)
			conn_kill(c);
		break;
	}
	rx_update(r, c);
}

static void drive_closing(struct ring *r, struct uconn *c, int64_t now)
{
	int64_t cap = c->hs.cfg->timeout_ms < LINGER_MAX_MS ? c->hs.cfg->timeout_ms : LINGER_MAX_MS;

	if (c->tx != TX_NONE)
		return;
	if (kts_out_pending(c->k) > 0) {
		tx_out(r, c);
		return;
	}
	if (c->hs_failed) {
		conn_kill(c);
		return;
	}
	/* The client asked to close and nothing of it is unread: close now, as
	 * nginx does. */
	if (httpsess_client_done(&c->hs) && !sock_has_unread(c->fd)) {
		conn_kill(c);
		return;
	}
	/* Lingering close: FIN, then drop what the client still sends until it
	 * is quiet, so it reads our last answer before a reset could cut it. */
	shutdown(c->fd, SHUT_WR);
	c->ph = PH_LINGER;
	c->linger_end = now + cap;
	c->last_rx = now;
	rx_update(r, c);
}

static void log_status(struct ring *r, struct uconn *c)
{
	char prefix[sizeof(log_prefix) + ADDR_PEER_MAX + 8];

	if (r->sh->srv->quiet)
		return;
	snprintf(prefix, sizeof(prefix), "%sconn %s ", log_prefix, c->peer);
	opts_print_status(stderr, prefix, c->k, r->sh->srv->reasons);
}

/* The alert kts queued goes out (drive_closing), then the connection ends. */
static void handshake_failed(struct ring *r, struct uconn *c, int64_t now)
{
	stats_handshake_failed(r->sh->srv->me);
	c->ph = PH_CLOSING;
	c->hs_failed = 1;
	deadline_total(&c->dl, now, c->hs.cfg->timeout_ms);
}

/* ---- the session store (--session-store) ---------------------------------------- */

static void drive(struct ring *r, struct uconn *c, int64_t now);

/* On the store's thread: queue the answer for the ring, wake it. */
static void store_done(void *arg, uint64_t token, const unsigned char *der, size_t len)
{
	struct ring *r = arg;
	struct store_answer *a = malloc(sizeof(*a) + len);
	uint64_t one = 1;

	if (!a)
		return; /* the connection's wait times out */
	a->token = token;
	a->len = len;
	if (len)
		memcpy(a->der, der, len);
	pthread_mutex_lock(&r->inbox_lock);
	a->next = r->inbox;
	r->inbox = a;
	pthread_mutex_unlock(&r->inbox_lock);
	if (write(r->store_fd, &one, sizeof(one)) < 0) {
		/* an eventfd cannot overflow at one write per lookup */
	}
}

/* The answer (or none: len 0) goes to the handshake; the caller drives it
 * on (never from here: drive may free c). */
static void session_answer(struct ring *r, struct uconn *c, const unsigned char *der,
			   size_t len)
{
	(void)r;
	c->sess_wait = 0;
	if (kts_session_supply(c->k, der, len) != KTS_OK)
		conn_kill(c);
}

/* KTS_WANT_SESSION: ask the store; 1 when the handshake now waits for it,
 * 0 when there is none to ask (the handshake goes on as a full one). */
static int session_lookup(struct ring *r, struct uconn *c, int64_t now)
{
	struct sessredis *st = r->sh->srv->sessstore;
	unsigned char id[32];
	ssize_t n = kts_session_wanted(c->k, id, sizeof(id));

	if (!st || n <= 0) {
		session_answer(r, c, NULL, 0);
		return 0; /* go on at once */
	}
	c->sess_wait = 1;
	c->sess_until = now + SESSREDIS_WAIT_MS;
	sessredis_get(st, id, (size_t)n, store_done, r, (uint64_t)c->gen << 32 | (uint32_t)c->slot);
	return 1;
}

static void arm_store(struct ring *r)
{
	struct io_uring_sqe *sqe = uring_sqe(&r->u);

	io_uring_prep_read(sqe, r->store_fd, &r->store_val, sizeof(r->store_val), 0);
	io_uring_sqe_set_data64(sqe, ud_make(0, RING_SLOT, OP_STORE));
}

/* The store answered: each answer to its connection, if it still waits. */
static void on_store(struct ring *r, int64_t now)
{
	struct store_answer *a;

	pthread_mutex_lock(&r->inbox_lock);
	a = r->inbox;
	r->inbox = NULL;
	pthread_mutex_unlock(&r->inbox_lock);
	while (a) {
		struct store_answer *next = a->next;
		uint32_t slot = (uint32_t)a->token, gen = (uint32_t)(a->token >> 32);
		struct uconn *c = (int)slot < r->nslots ? r->slots[slot] : NULL;

		if (c && c->gen == gen && c->sess_wait && c->ph == PH_HANDSHAKE) {
			session_answer(r, c, a->der, a->len);
			drive(r, c, now);
		}
		OPENSSL_cleanse(a->der, a->len);
		free(a);
		a = next;
	}
	arm_store(r);
}

/* A handshake receive completed: the kts result (plaintext that came with
 * the handshake's end has gone to the session). */
static ssize_t hs_rx_done(struct ring *r, struct uconn *c, const struct io_uring_cqe *cqe,
			  int64_t now)
{
	enum rx_kind kind = c->rx;
	ssize_t n;

	c->rx = RX_NONE;
	c->inflight--;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		char *buf = uring_buf(&r->u, bid);

		n = kts_recv_done(c->k, buf, r->u.bufsz, cqe->res);
		if (n > 0)
			n = rx_take(c, buf, r->u.bufsz, n, now);
		uring_buf_put(&r->u, bid);
		return n;
	}
	if (kind == RX_SELECT && cqe->res == -ENOBUFS) {
		r->nobufs++;
		c->hs_own = 1; /* drive_handshake arms the next one */
		return KTS_WANT_READ;
	}
	if (kind == RX_SELECT)
		return kts_recv_done(c->k, NULL, 0, cqe->res); /* an end or error */
	n = kts_recvmsg_done(c->k, &c->own->msg, cqe->res);
	if (n > 0)
		n = rx_take(c, c->own->buf, HS_BUF_SIZE, n, now);
	return n;
}

/* The handshake: one operation in flight, kts_handshake after each. */
static void drive_handshake(struct ring *r, struct uconn *c, int64_t now)
{
	char m[256];
	int rc;

	if (c->inflight || c->sess_wait)
		return;
	rc = kts_handshake(c->k);
	if (rc == KTS_WANT_SESSION) {
		if (session_lookup(r, c, now))
			return; /* on_store or the tick drives it on */
		if (c->ph == PH_DEAD)
			return;
		rc = kts_handshake(c->k);
	}
	if (rc == KTS_OK) {
		ssize_t n;

		stats_handshake(r->sh->srv->me, c->k);
		log_status(r, c);
		c->ph = PH_OPEN;
		httpsess_start(&c->hs, now);
		/* What came with the handshake's end (a request) waits in kts. */
		n = rx_take(c, r->scratch, sizeof(r->scratch),
			    kts_read(c->k, r->scratch, sizeof(r->scratch)), now);
		rbuf_drop(r, c);
		if (c->ph == PH_DEAD)
			return;
		if (n != KTS_WANT_READ) {
			c->rx_end = 1;
			c->rx_rc = (int)n;
		}
		return;
	}
	if (rc == KTS_WANT_READ || rc == KTS_WANT_WRITE) {
		if (kts_out_pending(c->k) > 0)
			tx_out(r, c);
		else if (rx_arm_hs(r, c) < 0)
			conn_kill(c);
		return;
	}
	logmsg("conn %s error: %s", c->peer, tio_message(c->k, rc, "handshake", m, sizeof(m)));
	handshake_failed(r, c, now);
}

static void drive(struct ring *r, struct uconn *c, int64_t now)
{
	if (c->ph == PH_HANDSHAKE)
		drive_handshake(r, c, now);
	if (c->ph == PH_OPEN)
		drive_open(r, c, now);
	if (c->ph == PH_CLOSING)
		drive_closing(r, c, now);
	if (c->ph == PH_LINGER)
		rx_update(r, c);
	if (c->ph == PH_DEAD && c->inflight == 0)
		conn_free(r, c);
}

/* ---- accepting ------------------------------------------------------------------ */

static void arm_accept(struct ring *r)
{
	struct io_uring_sqe *sqe = uring_sqe(&r->u);

	if (r->accept_oneshot)
		io_uring_prep_accept(sqe, r->sh->lfd, NULL, NULL, ACCEPT_FLAGS);
	else
		io_uring_prep_multishot_accept(sqe, r->sh->lfd, NULL, NULL, ACCEPT_FLAGS);
	io_uring_sqe_set_data64(sqe, ud_make(0, RING_SLOT, OP_ACCEPT));
	r->accept_armed = 1;
}

static void conn_start(struct ring *r, int fd, int64_t now)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct uconn *c;
	int slot;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		sl = 0;
	if (atomic_fetch_add(&r->sh->active, 1) >= r->sh->srv->max_conn || r->nfree == 0) {
		atomic_fetch_sub(&r->sh->active, 1);
		server_refuse(r->sh->srv, fd, (struct sockaddr *)&ss, sl);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		atomic_fetch_sub(&r->sh->active, 1);
		logmsg("accept: out of memory");
		close(fd);
		return;
	}
	slot = r->free_slots[--r->nfree];
	c->slot = slot;
	c->gen = r->gens[slot];
	stats_conn_open(r->sh->srv->me); /* conn_free counts it closed */
	c->fd = fd;
	c->rep.fd = -1;
	httpsess_init(&c->hs, &r->sh->hs, now);
	r->slots[slot] = c;
	c->live_i = r->live;
	r->live_list[r->live++] = c;
	if (sl)
		addr_format((struct sockaddr *)&ss, sl, c->peer, sizeof(c->peer));
	else
		snprintf(c->peer, sizeof(c->peer), "?");
	/* The whole handshake within --timeout, however the client sends it. */
	deadline_total(&c->dl, now, r->sh->hs.timeout_ms);
	c->k = kts_server_new(r->sh->srv->cfg);
	if (!c->k || kts_attach_caller_io(c->k, fd) != KTS_OK) {
		logmsg("conn %s error: %s", c->peer,
		       c->k ? kts_error(c->k) : kts_config_error(r->sh->srv->cfg));
		c->ph = PH_DEAD;
		conn_free(r, c);
		return;
	}
	drive(r, c, now);
}

static void on_accept(struct ring *r, const struct io_uring_cqe *cqe, int64_t now)
{
	int res = cqe->res;

	if (!(cqe->flags & IORING_CQE_F_MORE))
		r->accept_armed = 0;
	if (res >= 0) {
		if (r->stopping)
			close(res);
		else
			conn_start(r, res, now);
	} else if (res == -EINVAL && !r->accept_oneshot) {
		/* Before 5.19 there is no multishot accept: one at a time. */
		r->accept_oneshot = 1;
		if (atomic_exchange(&r->sh->fallback_told, 2) != 2)
			logmsg("io_uring: no multishot accept: accepting one at a time");
	} else if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
		logmsg("accept: %s", strerror(-res));
		r->accept_again = now + ACCEPT_PAUSE_MS; /* let connections finish */
	} else if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED && res != -ECANCELED) {
		logmsg("accept: %s", strerror(-res));
	}
	if (!r->accept_armed && !r->stopping && !r->accept_again)
		arm_accept(r);
}

/* ---- the tick: deadlines, lingering, stopping ------------------------------------ */

static int conn_idle(const struct uconn *c)
{
	return c->ph == PH_HANDSHAKE ||
	       (c->ph == PH_OPEN && !c->replying && httpsess_idle(&c->hs));
}

static void check_conn(struct ring *r, struct uconn *c, int64_t now)
{
	if (r->stopping && (r->cut_all || conn_idle(c))) {
		conn_kill(c); /* as the threads engine cuts them: no close_notify */
		return;
	}
	switch (c->ph) {
	case PH_HANDSHAKE:
		if (c->sess_wait && now >= c->sess_until) { /* the store is late: full handshake */
			session_answer(r, c, NULL, 0);
			return; /* on_tick drives it next */
		}
		if (deadline_expired(&c->dl, now)) {
			logmsg("conn %s error: handshake: not complete within %d s", c->peer,
			       r->sh->hs.timeout_s);
			stats_handshake_failed(r->sh->srv->me);
			conn_kill(c);
		}
		break;
	case PH_OPEN:
		if (c->replying) {
			if (deadline_expired(&c->dl, now)) {
				send_failed(c, TIO_TIMEOUT);
				conn_kill(c);
			}
		} else if (deadline_expired(httpsess_deadline(&c->hs), now) && c->tx == TX_NONE) {
			enum hs_do d = httpsess_timeout(&c->hs, &c->rep);

			log_note(c);
			if (d == HS_SEND)
				reply_start(c, now);
			else if (d == HS_ABORT)
				conn_kill(c);
			else
				start_close(c, now);
		} else if (c->tx == TX_NONE && httpsess_idle(&c->hs)) {
			/* Quiet between requests: kts may drop OpenSSL's state. */
			int rc = kts_shrink(c->k);
			char m[256];

			if (rc == 1)
				stats_openssl_freed(r->sh->srv->me);
			if (rc < 0) {
				logmsg("conn %s error: %s", c->peer,
				       tio_message(c->k, rc, "shrink", m, sizeof(m)));
				conn_kill(c);
			}
		}
		break;
	case PH_CLOSING:
		if (deadline_expired(&c->dl, now))
			conn_kill(c);
		break;
	case PH_LINGER:
		if (now >= c->linger_end || now - c->last_rx >= LINGER_QUIET_MS)
			conn_kill(c);
		break;
	case PH_DEAD:
		break;
	}
}

static void arm_tick(struct ring *r)
{
	struct io_uring_sqe *sqe = uring_sqe(&r->u);

	r->tick.tv_sec = 0;
	r->tick.tv_nsec = TICK_MS * 1000000L;
	io_uring_prep_timeout(sqe, &r->tick, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_make(0, RING_SLOT, OP_TICK));
}

static void on_tick(struct ring *r, int64_t now)
{
	/* A drain waits for every connection; each has its --timeout deadlines. */
	if (r->stopping == STOP_GRACEFUL && !r->cut_all && now - r->stop_at >= STOP_GRACE_MS)
		r->cut_all = 1;
	if (r->accept_again && now >= r->accept_again && !r->stopping) {
		r->accept_again = 0;
		if (!r->accept_armed)
			arm_accept(r);
	}
	/* Backwards: a connection freed here is replaced by the last one, seen already. */
	for (int i = r->live - 1; i >= 0; i--) {
		struct uconn *c = r->live_list[i];

		check_conn(r, c, now);
		drive(r, c, now);
	}
	arm_tick(r);
}

static void arm_wake(struct ring *r)
{
	struct io_uring_sqe *sqe = uring_sqe(&r->u);

	io_uring_prep_read(sqe, r->wake_fd, &r->wake_val, sizeof(r->wake_val), 0);
	io_uring_sqe_set_data64(sqe, ud_make(0, RING_SLOT, OP_WAKE));
}

static void on_wake(struct ring *r, int64_t now)
{
	int mode = atomic_load(&r->sh->stop);

	/* A stop, or a drain turned into a stop (SIGTERM, SIGUSR2 meanwhile). */
	if (mode && mode != r->stopping) {
		if (!r->stopping) {
			r->stop_at = now;
			if (r->accept_armed) {
				struct io_uring_sqe *sqe = uring_sqe(&r->u);

				io_uring_prep_cancel64(sqe, ud_make(0, RING_SLOT, OP_ACCEPT), 0);
				io_uring_sqe_set_data64(sqe, ud_make(0, RING_SLOT, OP_IGNORE));
			}
		}
		r->stopping = mode;
		r->cut_all |= mode == STOP_NOW;
	}
	arm_wake(r);
}

/* ---- the ring's thread ------------------------------------------------------------ */

static void dispatch(struct ring *r, const struct io_uring_cqe *cqe, int64_t now)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum op op = (enum op)(ud & 0xff);
	uint32_t slot = (uint32_t)(ud >> 8) & RING_SLOT, gen = (uint32_t)(ud >> 32);
	struct uconn *c;

	if (op == OP_IGNORE)
		return;
	if (slot == RING_SLOT) {
		if (op == OP_ACCEPT)
			on_accept(r, cqe, now);
		else if (op == OP_TICK)
			on_tick(r, now);
		else if (op == OP_WAKE)
			on_wake(r, now);
		else if (op == OP_STORE)
			on_store(r, now);
		return;
	}
	c = (int)slot < r->nslots ? r->slots[slot] : NULL;
	if (!c || c->gen != gen) { /* a slot closed and reused: not ours */
		if (cqe->flags & IORING_CQE_F_BUFFER)
			uring_buf_put(&r->u, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		return;
	}
	if (op == OP_RX) {
		if (c->ph == PH_HANDSHAKE) {
			ssize_t n = hs_rx_done(r, c, cqe, now);

			if (n < 0 && n != KTS_WANT_READ && n != KTS_WANT_WRITE && n != KTS_WANT_SESSION &&
			    c->ph != PH_DEAD) {
				char m[256];

				logmsg("conn %s error: %s", c->peer,
				       tio_message(c->k, (int)n, "handshake", m, sizeof(m)));
				handshake_failed(r, c, now);
			}
		} else {
			on_rx(r, c, cqe, now);
		}
	} else {
		on_tx(r, c, op, cqe->res, now);
	}
	drive(r, c, now);
}

static void *ring_main(void *arg)
{
	struct ring *r = arg;
	struct io_uring_cqe *cqe;
	char fb[512], err[256];
	int rc;

	rc = uring_ring_init(&r->u, RING_ENTRIES, (unsigned)r->sh->rbufs, RBUF_SIZE, fb, sizeof(fb),
			     err, sizeof(err));
	if (rc < 0) {
		logmsg("ring %d: %s", r->id, err);
		r->failed = 1;
		sem_post(&r->ready);
		return NULL;
	}
	if (fb[0] && atomic_exchange(&r->sh->fallback_told, 1) == 0)
		logmsg("%s", fb);
	sem_post(&r->ready);
	arm_wake(r);
	if (r->store_fd >= 0)
		arm_store(r);
	arm_tick(r);
	arm_accept(r);
	for (;;) {
		unsigned head, seen = 0;
		int64_t now;

		if (r->stopping && (r->live == 0 || (r->stopping != STOP_DRAIN &&
						     deadline_now() - r->stop_at >=
							     STOP_GRACE_MS + STOP_CUT_MS)))
			break;
		rc = io_uring_submit_and_wait(&r->u.ring, 1);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
			logmsg("ring %d: io_uring_enter: %s", r->id, strerror(-rc));
			r->failed = 1;
			break;
		}
		now = deadline_now();
		io_uring_for_each_cqe(&r->u.ring, head, cqe) {
			dispatch(r, cqe, now);
			seen++;
		}
		io_uring_cq_advance(&r->u.ring, seen);
	}
	r->left_open = r->live;
	atomic_fetch_add(&r->sh->rings_done, 1);
	blockpool_drain(&r->body_pool);
	blockpool_drain(&r->small_body_pool);
	blockpool_drain(&r->msg_pool);
	if (r->live == 0)
		uring_ring_fini(&r->u); /* else exit() takes what is still open */
	return NULL;
}

int engine_default_threads(void)
{
	cpu_set_t set;
	int n;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 1;
	n = CPU_COUNT(&set);
	return n > 0 ? n : 1;
}

/* How many provided buffers a ring gets: KTS_SERVER_URING_BUFS (a power of
 * two, for tests that run them out), else RBUFS. */
static size_t ring_bufs(void)
{
	const char *e = getenv("KTS_SERVER_URING_BUFS");
	long v = e ? strtol(e, NULL, 10) : 0;

	if (v >= 1 && v <= 32768 && (v & (v - 1)) == 0)
		return (size_t)v;
	return RBUFS;
}

static void wake_rings(struct ring *rings, int n)
{
	uint64_t one = 1;

	for (int i = 0; i < n; i++)
		if (write(rings[i].wake_fd, &one, sizeof(one)) < 0)
			logmsg("eventfd: %s", strerror(errno));
}

int engine_uring_serve(struct server *srv, int lfd, int sfd)
{
	struct shared sh;
	struct ring *rings = calloc((size_t)srv->threads, sizeof(*rings));
	int open = 0, failed = 0, started = 0;
	unsigned long nobufs = 0;
	unsigned long long sent[BY_KINDS] = {0};
	const char *setup, *no_sendfile;

	if (!rings)
		opts_die(PROG, "out of memory");
	memset(&sh, 0, sizeof(sh));
	sh.srv = srv;
	sh.lfd = lfd;
	sh.hs.root = &srv->root;
	sh.hs.timeout_ms = srv->timeout_ms;
	sh.hs.timeout_s = srv->timeout_s;
	sh.rbufs = ring_bufs();
	no_sendfile = getenv("KTS_SERVER_URING_NO_SENDFILE");
	sh.sendfile = !no_sendfile || !strcmp(no_sendfile, "0");
	for (int i = 0; i < srv->threads; i++) {
		struct ring *r = &rings[i];

		r->sh = &sh;
		r->id = i;
		r->body_pool = (struct blockpool){.size = BODY_CHUNK, .cap = BODY_POOL};
		r->small_body_pool = (struct blockpool){.size = SMALL_BODY, .cap = BLOCKPOOL_MAX};
		r->msg_pool = (struct blockpool){.size = sizeof(struct kts_msg), .cap = MSG_POOL};
		r->nslots = srv->max_conn;
		r->slots = calloc((size_t)r->nslots, sizeof(*r->slots));
		r->gens = calloc((size_t)r->nslots, sizeof(*r->gens));
		r->free_slots = calloc((size_t)r->nslots, sizeof(*r->free_slots));
		r->live_list = calloc((size_t)r->nslots, sizeof(*r->live_list));
		r->wake_fd = eventfd(0, EFD_CLOEXEC);
		r->store_fd = srv->has_store ? eventfd(0, EFD_CLOEXEC) : -1;
		pthread_mutex_init(&r->inbox_lock, NULL);
		if (!r->slots || !r->gens || !r->free_slots || !r->live_list || r->wake_fd < 0 ||
		    (srv->has_store && r->store_fd < 0))
			opts_die(PROG, "ring %d: out of memory or file descriptors", i);
		for (int s = 0; s < r->nslots; s++)
			r->free_slots[s] = r->nslots - 1 - s;
		r->nfree = r->nslots;
		/* A multishot accept stays first in the socket's queue of waiters and
		 * would take every client: rings sharing the socket accept one at a
		 * time, so each goes back behind the others. */
		r->accept_oneshot = srv->threads > 1 || srv->shared_listen;
		sem_init(&r->ready, 0, 0);
		/* The ring is made in its thread: SINGLE_ISSUER binds it to its maker. */
		if (pthread_create(&r->tid, NULL, ring_main, r) != 0)
			opts_die(PROG, "ring %d: pthread_create failed", i);
		started++;
		while (sem_wait(&r->ready) < 0 && errno == EINTR)
			;
		if (r->failed)
			opts_die(PROG, "io_uring engine: no ring (--engine threads works without)");
	}
	/* What the kernel gave ring 0 (the others asked for the same). */
	setup = rings[0].u.flags & IORING_SETUP_DEFER_TASKRUN ? "SINGLE_ISSUER|DEFER_TASKRUN"
		: rings[0].u.flags & IORING_SETUP_SINGLE_ISSUER ? "SINGLE_ISSUER"
								: "without SINGLE_ISSUER";
	logmsg("engine uring: %d ring(s), setup %s, %s, %s", srv->threads, setup,
	       rings[0].u.br ? "provided buffers" : "no provided buffers",
	       rings[0].accept_oneshot ? "one accept at a time" : "multishot accept");

	/* Signals, keys, the control socket; returns at a stop. */
	atomic_store(&sh.stop, (int)server_loop(srv, -1, sfd));
	wake_rings(rings, started);
	close(lfd); /* the rings' accepts hold it until they are cancelled */
	/* A drain lasts as long as its connections: a stop signal meanwhile
	 * (SIGINT, SIGTERM, SIGUSR2) cuts them. */
	while (atomic_load(&sh.stop) == STOP_DRAIN && atomic_load(&sh.rings_done) < started) {
		struct pollfd p = {sfd, POLLIN, 0};
		struct signalfd_siginfo si;

		if (poll(&p, 1, 100) > 0 && read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
		    (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM || si.ssi_signo == SIGUSR2)) {
			logmsg("signal %u: stopping now", si.ssi_signo);
			atomic_store(&sh.stop, STOP_NOW);
			wake_rings(rings, started);
		}
	}
	for (int i = 0; i < started; i++) {
		pthread_join(rings[i].tid, NULL);
		open += rings[i].left_open;
		failed |= rings[i].failed;
		nobufs += rings[i].nobufs;
		for (int b = 0; b < BY_KINDS; b++)
			sent[b] += rings[i].sent[b];
	}
	/* No store answer may reach a ring from here on. */
	sessredis_stop(srv->sessstore);
	srv->sessstore = NULL;
	for (int i = 0; i < started; i++)
		while (rings[i].inbox) {
			struct store_answer *a = rings[i].inbox;

			rings[i].inbox = a->next;
			OPENSSL_cleanse(a->der, a->len);
			free(a);
		}
	logmsg("sent: %llu bytes by splice, %llu by sendfile, %llu from buffers (kernel TX), "
	       "%llu encrypted in userspace",
	       sent[BY_SPLICE], sent[BY_SENDFILE], sent[BY_BUFFER], sent[BY_USERSPACE]);
	if (nobufs) /* worth knowing: each cost a receive armed again */
		logmsg("io_uring: receives found no provided buffer %lu time(s)", nobufs);
	if (open > 0)
		logmsg("stopped with %d connection(s) still open", open);
	else
		logmsg("stopped");
	for (int i = 0; i < started; i++) {
		if (rings[i].left_open)
			continue; /* connections still point into it */
		close(rings[i].wake_fd);
		if (rings[i].store_fd >= 0)
			close(rings[i].store_fd);
		free(rings[i].slots);
		free(rings[i].gens);
		free(rings[i].free_slots);
		free(rings[i].live_list);
	}
	if (open == 0)
		free(rings);
	return failed ? 1 : 0;
}
