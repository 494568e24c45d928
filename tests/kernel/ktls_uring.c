/*
 * ktls_uring.c - kTLS sockets under io_uring, through kts' caller-owned I/O
 * (kts_uring.h), checking the facts the server engine relies on:
 *   multishot   TLS 1.3 tickets arriving between data on a multishot receive
 *               into provided buffers: each ends the multishot with EIO, one
 *               recvmsg takes it (kts consumes it), the re-armed multishot
 *               reads on; data arrives whole and in order.
 *   keyupdate   a peer's KeyUpdate (update_requested) on the ring: refused
 *               with KTS_ERR_UNSUPPORTED where the kernel cannot replace keys
 *               (6.12), otherwise RX rekeyed, kts' answer sent from its queue,
 *               and data both ways under the new keys.
 *   splice      a file spliced to the socket through a pipe on the ring
 *               (kernel TX), read back by the peer by SHA-256.
 *   sendzc      IORING_OP_SEND_ZC on a kTLS socket: EOPNOTSUPP.
 *   rx-no-pad   kts_config_set_rx_no_pad: the socket has TLS_RX_EXPECT_NO_PAD
 *               and reads through it.
 * On a kernel without kTLS (the host suite, --expect auto) only multishot
 * runs, on the userspace path (no EIO there).
 * Output as ktls_cases: CASE lines, the summary, EXPECT and EXPECT-REKEY.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/tls.h>
#include <liburing.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "cio_peer.h"
#include "kernel.h"
#include "kts.h"
#include "kts_uring.h"
#include "testutil.h"

#define NBUFS 8
#define BUFSZ 4096
#define BGID 7

static char why[600];
static int want_path;
static int opt_no_pad; /* setup: kts_config_set_rx_no_pad */

#define FAIL(...) return snprintf(why, sizeof(why), __VA_ARGS__), -1

struct ctx {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	unsigned char *bufs;
	struct kts_config *cfg;
	SSL_CTX *ssl_ctx;
	struct kts *c;
	struct cio_peer p;
	int fds[2], kfd;
};

static int wait_one(struct ctx *x, int *res, unsigned *flags)
{
	struct io_uring_cqe *cqe;

	if (io_uring_submit_and_wait(&x->ring, 1) < 0 || io_uring_wait_cqe(&x->ring, &cqe) < 0)
		return -1;
	*res = cqe->res;
	*flags = cqe->flags;
	io_uring_cqe_seen(&x->ring, cqe);
	return 0;
}

static void give_back(struct ctx *x, unsigned bid)
{
	io_uring_buf_ring_add(x->br, x->bufs + (size_t)bid * BUFSZ, BUFSZ, (unsigned short)bid,
			      io_uring_buf_ring_mask(NBUFS), 0);
	io_uring_buf_ring_advance(x->br, 1);
}

/* A ring with a provided-buffer group, a loopback pair, kts (caller-owned
 * I/O) and the OpenSSL peer, handshake done. */
static int setup(struct ctx *x, int version, const struct suite *s, int kts_is_server)
{
	struct io_uring_buf_reg reg = {.ring_entries = NBUFS, .bgid = BGID};

	memset(x, 0, sizeof(*x));
	x->fds[0] = x->fds[1] = -1;
	if (io_uring_queue_init(16, &x->ring, 0) < 0)
		FAIL("io_uring_queue_init failed");
	x->br = mmap(NULL, NBUFS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	x->bufs = malloc((size_t)NBUFS * BUFSZ);
	if (x->br == MAP_FAILED || !x->bufs)
		FAIL("out of memory");
	io_uring_buf_ring_init(x->br);
	reg.ring_addr = (unsigned long)x->br;
	if (io_uring_register_buf_ring(&x->ring, &reg, 0) < 0)
		FAIL("register_buf_ring failed");
	for (unsigned i = 0; i < NBUFS; i++)
		give_back(x, i);
	x->cfg = test_kts_config(version, s, kts_is_server);
	if (x->cfg)
		kts_config_set_rx_no_pad(x->cfg, opt_no_pad);
	x->ssl_ctx = test_ssl_ctx(version, s, !kts_is_server);
	if (!x->cfg || !x->ssl_ctx || test_tcp_pair(x->fds) < 0)
		FAIL("setup failed");
	x->kfd = x->fds[kts_is_server ? 0 : 1];
	x->c = kts_is_server ? kts_server_new(x->cfg) : kts_client_new(x->cfg);
	if (!x->c || kts_attach_caller_io(x->c, x->kfd) != KTS_OK ||
	    cio_peer_init(&x->p, x->ssl_ctx, x->fds[kts_is_server ? 1 : 0], kts_is_server) < 0)
		FAIL("kts or peer setup failed");
	if (cio_handshake(x->c, x->kfd, &x->p, kts_is_server) < 0)
		FAIL("handshake: %s", cio_why);
	if (kts_offload(x->c, KTS_TX) != want_path || kts_offload(x->c, KTS_RX) != want_path)
		FAIL("paths tx=%s rx=%s", kts_path_name(kts_offload(x->c, KTS_TX)),
		     kts_path_name(kts_offload(x->c, KTS_RX)));
	return 0;
}

static void teardown(struct ctx *x)
{
	cio_peer_free(&x->p);
	kts_free(x->c);
	kts_config_free(x->cfg);
	SSL_CTX_free(x->ssl_ctx);
	for (int i = 0; i < 2; i++)
		if (x->fds[i] >= 0)
			close(x->fds[i]);
	io_uring_queue_exit(&x->ring);
	if (x->br && x->br != MAP_FAILED)
		munmap(x->br, NBUFS * sizeof(struct io_uring_buf));
	free(x->bufs);
}

/* Send what kts queued (an answer, an alert) through the ring. */
static int ring_flush(struct ctx *x)
{
	struct kts_msg m;
	unsigned flags;
	int res;

	while (kts_out_pending(x->c) > 0) {
		kts_uring_prep_out(io_uring_get_sqe(&x->ring), x->c, x->kfd, &m);
		if (wait_one(x, &res, &flags) < 0 || kts_out_done(x->c, res) != KTS_OK)
			FAIL("sending kts' queue: %s", kts_error(x->c));
	}
	return 0;
}

/* Read want bytes of plaintext with a multishot receive, taking control
 * records with one recvmsg each. Counts the EIO endings in *eio. */
static int ring_read(struct ctx *x, char *got, size_t want, int *eio, ssize_t *last)
{
	size_t have = 0;
	int armed = 0;

	*last = 0;
	for (int rounds = 0; have < want && rounds < 100; rounds++) {
		unsigned flags;
		int res;
		ssize_t r;
		unsigned char *buf = NULL;

		if (!armed) {
			kts_uring_prep_recv_multishot(io_uring_get_sqe(&x->ring), x->kfd, BGID);
			armed = 1;
		}
		if (wait_one(x, &res, &flags) < 0)
			FAIL("ring wait failed");
		if (!(flags & IORING_CQE_F_MORE))
			armed = 0;
		if (flags & IORING_CQE_F_BUFFER)
			buf = x->bufs + (size_t)(flags >> IORING_CQE_BUFFER_SHIFT) * BUFSZ;
		r = kts_recv_done(x->c, buf, BUFSZ, res);
		while (r > 0) {
			if ((size_t)r > want - have)
				FAIL("%zd bytes more than sent", r);
			memcpy(got + have, buf, (size_t)r);
			have += (size_t)r;
			r = kts_read(x->c, buf, BUFSZ); /* what kts still holds */
		}
		if (buf)
			give_back(x, flags >> IORING_CQE_BUFFER_SHIFT);
		if (r == KTS_WANT_CONTROL) {
			struct kts_msg m;
			char ctl[256];

			(*eio)++;
			if (armed)
				FAIL("EIO but the multishot goes on");
			kts_uring_prep_recvmsg(io_uring_get_sqe(&x->ring), x->c, x->kfd, &m, ctl, sizeof(ctl));
			if (wait_one(x, &res, &flags) < 0)
				FAIL("ring wait failed");
			r = kts_recvmsg_done(x->c, &m, res);
			if (r > 0) { /* data raced in: keep it */
				memcpy(got + have, ctl, (size_t)r);
				have += (size_t)r;
				r = KTS_WANT_READ;
			}
		}
		if (r == -ENOBUFS || (res == -ENOBUFS && r != KTS_WANT_READ))
			FAIL("provided buffers ran out");
		if (r != KTS_WANT_READ) {
			*last = r;
			return (int)have;
		}
		if (ring_flush(x) < 0)
			return -1;
	}
	if (armed) { /* stop the multishot before the next step */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&x->ring);
		unsigned flags;
		int res;

		io_uring_prep_cancel_fd(sqe, x->kfd, 0);
		for (int i = 0; i < 2 && wait_one(x, &res, &flags) == 0; i++)
			if (flags & IORING_CQE_F_BUFFER)
				give_back(x, flags >> IORING_CQE_BUFFER_SHIFT);
	}
	return (int)have;
}

/* Read exactly the string want through the ring; 0, or -1 with why set. */
static int read_exact(struct ctx *x, const char *want, int *eio)
{
	char got[64];
	size_t len = strlen(want);
	ssize_t last;
	int n = ring_read(x, got, len, eio, &last);

	if (n == (int)len && memcmp(got, want, len) == 0)
		return 0;
	if (n >= 0)
		snprintf(why, sizeof(why), "read %d of %zu bytes (%zd: %s), %d EIO endings", n, len,
			 last, kts_error(x->c), *eio);
	return -1;
}

static int case_multishot(const struct suite *s)
{
	struct ctx x;
	int eio = 0, rc = -1;

	if (setup(&x, 13, s, 0) < 0)
		goto out;
	/* Two tickets came with the handshake; a third between the records. */
	SSL_write(x.p.ssl, "data1", 5);
	SSL_new_session_ticket(x.p.ssl);
	SSL_write(x.p.ssl, "data2", 5);
	if (cio_peer_flush(&x.p) < 0)
		goto out;
	if (read_exact(&x, "data1data2", &eio) < 0)
		goto out;
	if (eio != (want_path == KTS_PATH_KERNEL ? 3 : 0)) {
		snprintf(why, sizeof(why), "%d EIO endings for 3 tickets", eio);
		goto out;
	}
	rc = 0;
out:
	teardown(&x);
	return rc;
}

/* Returns 1 if the kernel rekeyed, 0 if it refused as documented. */
static int case_keyupdate(const struct suite *s, int can_rekey)
{
	struct ctx x;
	char got[64];
	int eio = 0, rc = -1, n;
	ssize_t last;

	if (setup(&x, 13, s, 1) < 0)
		goto out;
	SSL_key_update(x.p.ssl, SSL_KEY_UPDATE_REQUESTED);
	SSL_write(x.p.ssl, "after-ku", 8);
	if (cio_peer_flush(&x.p) < 0)
		goto out;
	n = ring_read(&x, got, 8, &eio, &last);
	if (!can_rekey) {
		if (n == 0 && last == KTS_ERR_UNSUPPORTED && strstr(kts_error(x.c), "KeyUpdate"))
			rc = 0;
		else if (n >= 0)
			snprintf(why, sizeof(why), "want the KeyUpdate refused: %d bytes, %zd %s", n,
				 last, kts_error(x.c));
		goto out;
	}
	if (n != 8 || memcmp(got, "after-ku", 8) != 0) {
		if (n >= 0)
			snprintf(why, sizeof(why), "after KeyUpdate: %d bytes, %zd %s", n, last,
				 kts_error(x.c));
		goto out;
	}
	/* Our answer went out from the queue; now data under our new key. */
	{
		unsigned flags;
		int res;
		char buf[64];

		kts_uring_prep_send(io_uring_get_sqe(&x.ring), x.kfd, "reply", 5, 0);
		if (wait_one(&x, &res, &flags) < 0 || kts_send_done(x.c, res, 5) != 5) {
			snprintf(why, sizeof(why), "send: %s", kts_error(x.c));
			goto out;
		}
		cio_peer_take_all(&x.p);
		n = cio_peer_read(&x.p, buf, sizeof(buf));
		if (n != 5 || memcmp(buf, "reply", 5) != 0) {
			snprintf(why, sizeof(why), "peer read %d bytes after the rekey", n);
			goto out;
		}
	}
	rc = 1;
out:
	teardown(&x);
	return rc;
}

static int case_splice(const struct suite *s, int version)
{
	enum { SIZE = 3 * 1024 * 1024 + 123 };
	struct ctx x;
	unsigned char *data = malloc(SIZE), d1[32], d2[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int file = memfd_create("body", 0), pipefd[2] = {-1, -1}, rc = -1;
	size_t sent = 0, peer_got = 0;

	if (setup(&x, version, s, 1) < 0 || !data || !md || file < 0 || pipe(pipefd) < 0)
		goto out;
	for (size_t i = 0; i < SIZE; i++)
		data[i] = (unsigned char)(i * 131 + (i >> 11));
	if (write(file, data, SIZE) != SIZE)
		goto out;
	fcntl(pipefd[1], F_SETPIPE_SZ, 256 * 1024);
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	while (sent < SIZE) {
		unsigned flags;
		int res, in_pipe;
		char buf[65536];

		/* file -> pipe, then pipe -> socket until the pipe is empty. */
		io_uring_prep_splice(io_uring_get_sqe(&x.ring), file, (int64_t)sent, pipefd[1], -1,
				     SIZE - sent < 262144 ? (unsigned)(SIZE - sent) : 262144, 0);
		if (wait_one(&x, &in_pipe, &flags) < 0 || in_pipe <= 0) {
			snprintf(why, sizeof(why), "splice file->pipe: %s", strerror(-in_pipe));
			goto out;
		}
		while (in_pipe > 0) {
			ssize_t r;

			/* MORE lets the kernel fill whole records; never on the last
			 * bytes, or their record stays open, unsent. */
			io_uring_prep_splice(io_uring_get_sqe(&x.ring), pipefd[0], -1, x.kfd, -1,
					     (unsigned)in_pipe,
					     sent + (size_t)in_pipe < SIZE ? SPLICE_F_MORE : 0);
			if (wait_one(&x, &res, &flags) < 0)
				goto out;
			r = kts_send_done(x.c, res, (size_t)in_pipe);
			if (r == KTS_WANT_WRITE)
				r = 0;
			if (r < 0) {
				snprintf(why, sizeof(why), "splice pipe->socket: %s", kts_error(x.c));
				goto out;
			}
			in_pipe -= (int)r;
			sent += (size_t)r;
			/* The peer reads as we go, or the socket fills up. */
			while ((r = recv(x.p.fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
				BIO_write(x.p.in, buf, (int)r);
			for (int n; (n = SSL_read(x.p.ssl, buf, sizeof(buf))) > 0;) {
				EVP_DigestUpdate(md, buf, (size_t)n);
				peer_got += (size_t)n;
			}
		}
	}
	while (peer_got < SIZE) {
		char buf[65536];
		int n = cio_peer_read(&x.p, buf, sizeof(buf));

		if (n <= 0)
			break;
		EVP_DigestUpdate(md, buf, (size_t)n);
		peer_got += (size_t)n;
	}
	EVP_DigestFinal_ex(md, d1, NULL);
	EVP_Digest(data, SIZE, d2, NULL, EVP_sha256(), NULL);
	if (peer_got != SIZE || memcmp(d1, d2, 32) != 0) {
		snprintf(why, sizeof(why), "peer got %zu of %d bytes%s", peer_got, SIZE,
			 peer_got == SIZE ? ", wrong hash" : "");
		goto out;
	}
	rc = 0;
out:
	for (int i = 0; i < 2; i++)
		if (pipefd[i] >= 0)
			close(pipefd[i]);
	if (file >= 0)
		close(file);
	EVP_MD_CTX_free(md);
	free(data);
	teardown(&x);
	return rc;
}

static int case_sendzc(const struct suite *s)
{
	struct ctx x;
	unsigned flags;
	int res = 0, rc = -1;

	if (setup(&x, 13, s, 1) < 0)
		goto out;
	io_uring_prep_send_zc(io_uring_get_sqe(&x.ring), x.kfd, "zc", 2, 0, 0);
	if (wait_one(&x, &res, &flags) < 0)
		goto out;
	if (res == -EOPNOTSUPP)
		rc = 0;
	else
		snprintf(why, sizeof(why), "SEND_ZC returned %d (%s), want EOPNOTSUPP", res,
			 res < 0 ? strerror(-res) : "sent");
out:
	teardown(&x);
	return rc;
}

/* TLS_RX_EXPECT_NO_PAD set at the handoff, and data read through it. */
static int case_rx_no_pad(const struct suite *s)
{
	struct ctx x;
	int eio = 0, rc = -1, on = 0;
	socklen_t len = sizeof(on);

	opt_no_pad = 1;
	if (setup(&x, 13, s, 1) < 0)
		goto out;
	if (getsockopt(x.kfd, SOL_TLS, TLS_RX_EXPECT_NO_PAD, &on, &len) < 0 || on != 1) {
		snprintf(why, sizeof(why), "TLS_RX_EXPECT_NO_PAD is %d (%s)", on, strerror(errno));
		goto out;
	}
	SSL_write(x.p.ssl, "nopad", 5);
	if (cio_peer_flush(&x.p) < 0)
		goto out;
	if (read_exact(&x, "nopad", &eio) < 0)
		goto out;
	rc = 0;
out:
	opt_no_pad = 0;
	teardown(&x);
	return rc;
}

static int passed, failed, sockets, rekeys, probes;

static void report(const char *name, int ok, int socks)
{
	printf("CASE uring-%s tx=%s rx=%s %s\n", name, kts_path_name(want_path),
	       kts_path_name(want_path), ok ? "ok" : "FAIL");
	if (!ok)
		printf("  %s\n", why);
	ok ? passed++ : failed++;
	/* Every case's setup gets as far as installing both directions. */
	if (want_path == KTS_PATH_KERNEL)
		sockets += socks;
}

int main(int argc, char **argv)
{
	char name[64];
	int can_rekey;

	want_path = test_expected_path(argc, argv);
	if (want_path < 0)
		return 2;
	test_cert_init();
	can_rekey = want_path == KTS_PATH_KERNEL && kts_kernel_probe_rekey() == 1;
	probes = want_path == KTS_PATH_KERNEL; /* each installs TX, and again where it can */
	for (int i = 0; i < 3; i++) {
		const struct suite *s = &test_suites[i];
		int r;

		why[0] = '\0';
		snprintf(name, sizeof(name), "multishot-tickets-tls13-%s", s->name);
		report(name, case_multishot(s) == 0, 1);
		if (want_path != KTS_PATH_KERNEL)
			continue;
		r = case_keyupdate(s, can_rekey);
		probes++; /* the config asks the kernel once, at the KeyUpdate */
		snprintf(name, sizeof(name), "keyupdate-%s-tls13-%s", can_rekey ? "rekeyed" : "refused",
			 s->name);
		report(name, r == (can_rekey ? 1 : 0), 1);
		if (r == 1)
			rekeys++;
		for (int v = 12; v <= 13; v++) {
			snprintf(name, sizeof(name), "splice-tls%d-%s", v, s->name);
			report(name, case_splice(s, v) == 0, 1);
		}
	}
	if (want_path == KTS_PATH_KERNEL) {
		report("sendzc-eopnotsupp", case_sendzc(&test_suites[0]) == 0, 1);
		report("rx-no-pad-tls13", case_rx_no_pad(&test_suites[0]) == 0, 1);
	}
	printf("%d passed, %d failed\n", passed, failed);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", sockets + probes, sockets);
	/* The peer's KeyUpdate: kts rekeys RX, and TX once its answer is out. */
	printf("EXPECT-REKEY TlsTxRekeyOk=%d TlsRxRekeyOk=%d\n", rekeys + (can_rekey ? probes : 0),
	       rekeys);
	test_cert_free();
	return failed ? 1 : 0;
}
