/*
 * kts_bench.c - numbers for kts: the cost of the kernel handoff, of a whole
 * handshake, and the CPU and time to move bulk data on the kernel and the
 * userspace path. Not a test: it prints measurements (see bench/README.md).
 *
 *   kts_bench [-n connections] [-s transfer size] [-d dir for the sendfile file]
 *
 * Defaults come from KTS_BENCH_N, KTS_BENCH_SIZE, KTS_BENCH_DIR (so a VM can pass
 * them on the kernel command line), else 200, 256M, /tmp. -n 0 or -s 0 skips
 * that part. Every connection is TLS over loopback TCP with AES-128-GCM; kts is
 * always the server (the sender in transfers), the peer plain OpenSSL or kts.
 *
 * Output, one line per measurement (times in microseconds, MB = 10^6 bytes,
 * GB = 10^9 bytes, CPU = user + system from getrusage):
 *   handoff tls13 aes128gcm n=200 median_us=.. p99_us=.. derive_median_us=.. install_median_us=..
 *   handshake tls13 aes128gcm offload=auto tx=kernel rx=kernel n=200 median_us=.. p99_us=..
 *   transfer mode=write offload=auto tx=kernel rx=user(openssl) size=256MiB bytes_ok=..
 *            MBps=.. wall_s=.. send_cpu_s_per_gb=.. recv_cpu_s_per_gb=..
 *   ratio ...   kernel / userspace (or auto / off) from this same run
 * A number is labelled "kernel" only if kts_offload() said so for that connection.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RUSAGE_THREAD */
#endif
#include <fcntl.h>
#include <linux/tls.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "kernel.h"
#include "keysched.h"
#include "kts.h"
#include "testutil.h"

#define CHUNK (256u << 10)      /* bytes per write / read call */
#define PATTERN ((1u << 20) + 4093) /* period of the data pattern: not a power of two */
#define KTS_REASON_MAX 256

static unsigned char *pattern; /* the bytes at stream offset i are pattern[i % PATTERN] */
static int failures;           /* transfers that went wrong: exit status 1 */

static void die(const char *what)
{
	fprintf(stderr, "kts_bench: %s\n", what);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* User + system CPU of the calling thread, in seconds. */
static double thread_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- setup: sockets and endpoints (certificate and pair: tests/common/testutil) */

/* A connected loopback TCP pair: fds[0] server, fds[1] client. */
static void tcp_pair(int fds[2])
{
	if (test_tcp_pair(fds) < 0)
		die("loopback TCP pair failed");
}

static void set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* Endpoints for one protocol version (12 or 13), AES-128-GCM only. */
static SSL_CTX *ossl_ctx(int is_server, int version)
{
	SSL_CTX *ctx = test_ssl_ctx(version, &test_suites[0], is_server);

	if (!ctx)
		die("SSL_CTX_new failed");
	/* No tickets: a TLS 1.3 server's TX sequence then starts at 0, and a kts
	 * client with kernel RX never meets a ticket it cannot take yet. */
	if (is_server)
		SSL_CTX_set_num_tickets(ctx, 0);
	return ctx;
}

static struct kts_config *kts_cfg(int version, int offload)
{
	struct kts_config *cfg = test_kts_config(version, &test_suites[0], 1);

	if (!cfg || kts_config_set_offload(cfg, offload))
		die("kts config failed");
	return cfg;
}

static struct kts *kts_conn(struct kts_config *cfg, int is_server, int fd)
{
	struct kts *c = is_server ? kts_server_new(cfg) : kts_client_new(cfg);

	if (!c || kts_attach(c, fd))
		die("kts_server_new/kts_attach failed");
	if (is_server) /* as ossl_ctx(): no tickets */
		SSL_set_num_tickets(kts_ssl(c), 0);
	return c;
}

/* ---- statistics ---------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile (0 < p <= 100) in microseconds; sorts v. */
static double pct_us(uint64_t *v, int n, double p)
{
	int rank = (int)(p / 100.0 * n + 0.999999);

	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return (double)v[(rank < 1 ? 1 : rank) - 1] / 1e3;
}

/* ---- part 1: handoff and handshake --------------------------------------- */

/* Traffic secrets of one OpenSSL endpoint, from its key log. */
struct secrets {
	unsigned char s[2][64]; /* [0] client, [1] server */
	size_t len[2];
};

static void keylog(const SSL *ssl, const char *line)
{
	struct secrets *sec = SSL_get_app_data(ssl);
	int dir = strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0   ? 0
		  : strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0 ? 1
								       : -1;
	const char *hex = dir < 0 ? NULL : strchr(line + 24, ' '); /* skip client random */

	if (hex && !OPENSSL_hexstr2buf_ex(sec->s[dir], sizeof(sec->s[dir]), &sec->len[dir], hex + 1,
					  '\0'))
		sec->len[dir] = 0;
}

/* Drive two OpenSSL endpoints on non-blocking sockets in this thread; call
 * at_server_done(arg) the moment the server finishes, as kts_handshake() does. */
static void ossl_handshake_pair(SSL *server, SSL *client, void (*at_server_done)(void *), void *arg)
{
	int sdone = 0, cdone = 0;

	for (long spins = 0; !sdone || !cdone; spins++) {
		if (!cdone && SSL_do_handshake(client) == 1)
			cdone = 1;
		if (!sdone && SSL_do_handshake(server) == 1) {
			sdone = 1;
			at_server_done(arg);
		}
		if (spins > 10000000)
			die("OpenSSL handshake did not finish");
	}
}

/* One server endpoint to hand off, and what the handoff cost. */
struct handoff {
	SSL *ssl;
	int fd, version; /* 12 or 13 */
	struct secrets sec; /* filled by the key log during the handshake */
	uint64_t derive_ns, install_ns;
	int err; /* -errno from the kernel, 0 if installed */
};

/* What kts_handoff() does after the handshake, as two timed steps. */
static void timed_handoff(void *arg)
{
	struct handoff *h = arg;
	const SSL_CIPHER *cipher = SSL_get_current_cipher(h->ssl);
	enum kts_aead aead = kts_aead_from_suite(SSL_CIPHER_get_protocol_id(cipher));
	struct kts_dir_keys k[2]; /* [KTS_TX] server write, [KTS_RX] client write */
	struct kts_crypto_info info;
	uint64_t t0 = now_ns(), t1;
	const char *digest = EVP_MD_get0_name(SSL_CIPHER_get_handshake_digest(cipher));
	int rc;

	if (h->version == 13) {
		rc = kts_tls13_traffic_keys(digest, h->sec.s[1], h->sec.len[1], aead, &k[KTS_TX]) ||
		     kts_tls13_traffic_keys(digest, h->sec.s[0], h->sec.len[0], aead, &k[KTS_RX]);
	} else {
		unsigned char master[48], crand[32], srand[32];
		size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(h->ssl), master, sizeof(master));

		SSL_get_client_random(h->ssl, crand, sizeof(crand));
		SSL_get_server_random(h->ssl, srand, sizeof(srand));
		rc = kts_tls12_keys(digest, master, mlen, crand, srand, aead, &k[KTS_RX], &k[KTS_TX]);
		OPENSSL_cleanse(master, sizeof(master));
	}
	if (rc)
		die("key derivation failed");
	t1 = now_ns();
	h->derive_ns = t1 - t0;

	/* Sequence numbers: TLS 1.2 Finished was record 0; TLS 1.3 server without tickets: 0. */
	h->err = kts_kernel_attach_ulp(h->fd);
	for (int dir = KTS_TX; dir <= KTS_RX && !h->err; dir++) {
		if (kts_crypto_info_build(h->version == 13 ? KTS_TLS1_3 : KTS_TLS1_2, aead, &k[dir],
					  h->version == 12, &info))
			die("kts_crypto_info_build failed");
		h->err = kts_kernel_install(h->fd, dir == KTS_TX ? TLS_TX : TLS_RX, &info);
		OPENSSL_cleanse(&info, sizeof(info));
	}
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(&h->sec, sizeof(h->sec));
	h->install_ns = now_ns() - t1;
}

/* After a handoff, one record each way must make it through: proof that the
 * timed keys and sequence numbers were right. */
static void check_records(int fd, SSL *peer)
{
	char buf[16];
	size_t n = 0;

	if (send(fd, "ping", 4, 0) != 4 || SSL_read_ex(peer, buf, sizeof(buf), &n) != 1 || n != 4 ||
	    memcmp(buf, "ping", 4) != 0)
		die("handoff check: OpenSSL peer did not read what kernel TX sent");
	if (SSL_write_ex(peer, "pong", 4, &n) != 1 || recv(fd, buf, sizeof(buf), 0) != 4 ||
	    memcmp(buf, "pong", 4) != 0)
		die("handoff check: kernel RX did not read what the OpenSSL peer sent");
}

static const char *vname(int version)
{
	return version == 13 ? "tls13" : "tls12";
}

/* Handoff alone: derive + TCP_ULP + TLS_TX + TLS_RX on an OpenSSL server
 * socket, the moment its handshake ends (where kts_handshake() does it). */
static void bench_handoff(int version, int n)
{
	SSL_CTX *sctx = ossl_ctx(1, version), *cctx = ossl_ctx(0, version);
	uint64_t *total = calloc((size_t)n, sizeof(*total)), *derive = calloc((size_t)n, 8),
		 *install = calloc((size_t)n, 8);
	int err = 0;

	SSL_CTX_set_keylog_callback(sctx, keylog);
	for (int i = 0; i < n; i++) {
		struct handoff h = {.ssl = SSL_new(sctx), .version = version};
		SSL *c = SSL_new(cctx);
		int fds[2];

		tcp_pair(fds);
		h.fd = fds[0];
		set_nonblock(fds[0], 1);
		set_nonblock(fds[1], 1);
		SSL_set_app_data(h.ssl, &h.sec);
		SSL_set_fd(h.ssl, fds[0]);
		SSL_set_fd(c, fds[1]);
		SSL_set_accept_state(h.ssl);
		SSL_set_connect_state(c);
		ossl_handshake_pair(h.ssl, c, timed_handoff, &h);
		derive[i] = h.derive_ns;
		install[i] = h.install_ns;
		total[i] = h.derive_ns + h.install_ns;
		if (h.err && !err)
			err = h.err;
		if (!h.err) {
			set_nonblock(fds[0], 0);
			set_nonblock(fds[1], 0);
			check_records(fds[0], c);
		}
		SSL_free(h.ssl);
		SSL_free(c);
		close(fds[0]);
		close(fds[1]);
	}
	if (err)
		printf("handoff %s aes128gcm n=%d unavailable: kernel refused (%s); "
		       "derive_median_us=%.1f derive_p99_us=%.1f\n",
		       vname(version), n, strerror(-err), pct_us(derive, n, 50), pct_us(derive, n, 99));
	else
		printf("handoff %s aes128gcm n=%d median_us=%.1f p99_us=%.1f derive_median_us=%.1f "
		       "install_median_us=%.1f\n",
		       vname(version), n, pct_us(total, n, 50), pct_us(total, n, 99),
		       pct_us(derive, n, 50), pct_us(install, n, 50));
	fflush(stdout);
	free(total);
	free(derive);
	free(install);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

/* One kts server handshake against an OpenSSL client, both non-blocking in
 * this thread. Returns the time spent inside kts_handshake() (the client's
 * share is not counted; the handoff is, when offload is auto); path[] gets the
 * server's paths, why (if not NULL) the reason TX stayed in userspace. */
static uint64_t kts_handshake_ns(struct kts_config *cfg, SSL_CTX *cctx, int path[2], char *why,
				 size_t whylen)
{
	SSL *c = SSL_new(cctx);
	struct kts *k;
	uint64_t ns = 0;
	int fds[2], kdone = 0, cdone = 0;

	tcp_pair(fds);
	set_nonblock(fds[0], 1);
	set_nonblock(fds[1], 1);
	k = kts_conn(cfg, 1, fds[0]);
	SSL_set_fd(c, fds[1]);
	SSL_set_connect_state(c);
	for (long spins = 0; !kdone || !cdone; spins++) {
		if (!cdone && SSL_do_handshake(c) == 1)
			cdone = 1;
		if (!kdone) {
			uint64_t t0 = now_ns();
			int rc = kts_handshake(k);
			ns += now_ns() - t0;
			if (rc == KTS_OK)
				kdone = 1;
			else if (rc != KTS_WANT_READ && rc != KTS_WANT_WRITE)
				die(kts_error(k));
		}
		if (spins > 10000000)
			die("kts handshake did not finish");
	}
	path[KTS_TX] = kts_offload(k, KTS_TX);
	path[KTS_RX] = kts_offload(k, KTS_RX);
	if (why && kts_offload_reason(k, KTS_TX))
		snprintf(why, whylen, "%s", kts_offload_reason(k, KTS_TX));
	kts_free(k);
	SSL_free(c);
	close(fds[0]);
	close(fds[1]);
	return ns;
}

/* Whole kts server handshakes with offload auto and off, alternating
 * connection by connection so drift in a noisy (emulated) machine hits both. */
static void bench_handshake(int version, int n)
{
	struct kts_config *cfg[2] = {kts_cfg(version, KTS_OFFLOAD_AUTO), kts_cfg(version, KTS_OFFLOAD_OFF)};
	SSL_CTX *cctx = ossl_ctx(0, version);
	uint64_t *t[2] = {calloc((size_t)n, 8), calloc((size_t)n, 8)};
	int path[2][2], kernel = 1;
	double median[2];
	char why[KTS_REASON_MAX] = "";

	for (int i = 0; i < n; i++) {
		for (int p = 0; p < 2; p++)
			t[p][i] = kts_handshake_ns(cfg[p], cctx, path[p], p ? NULL : why, sizeof(why));
		/* auto must reach the kernel both ways every time, or its label would lie */
		kernel &= path[0][KTS_TX] == KTS_PATH_KERNEL && path[0][KTS_RX] == KTS_PATH_KERNEL;
	}
	for (int p = 0; p < 2; p++) {
		if (p == 0 && !kernel) {
			printf("handshake %s aes128gcm offload=auto SKIPPED: stayed in userspace (%s)\n",
			       vname(version), why);
			continue;
		}
		median[p] = pct_us(t[p], n, 50);
		printf("handshake %s aes128gcm offload=%s tx=%s rx=%s n=%d median_us=%.1f p99_us=%.1f\n",
		       vname(version), p ? "off" : "auto", kts_path_name(path[p][KTS_TX]),
		       kts_path_name(path[p][KTS_RX]), n, median[p], pct_us(t[p], n, 99));
	}
	if (kernel)
		printf("ratio handshake %s auto/off median=%.3f (%+.1f us)\n", vname(version),
		       median[0] / median[1], median[0] - median[1]);
	fflush(stdout);
	free(t[0]);
	free(t[1]);
	SSL_CTX_free(cctx);
	kts_config_free(cfg[0]);
	kts_config_free(cfg[1]);
}

/* ---- part 2: bulk transfer ------------------------------------------------ */

enum mode { MODE_WRITE, MODE_SENDFILE };

struct side {
	int is_sender, fd, file_fd;
	enum mode mode;
	size_t size;
	struct kts *kts; /* kts endpoint, or NULL for the OpenSSL receiver */
	SSL *ssl;
	pthread_barrier_t *start;
	int path;        /* the path of this side's direction (TX or RX) */
	double cpu_s;    /* thread CPU during the transfer */
	uint64_t t0, t1; /* transfer start (sender) / all bytes received (receiver) */
	size_t moved;
	const char *err;
};

/* Does buf hold the stream bytes at offset off? */
static int matches(const unsigned char *buf, size_t len, size_t off)
{
	while (len) {
		size_t at = off % PATTERN, n = PATTERN - at < len ? PATTERN - at : len;
		if (memcmp(buf, pattern + at, n) != 0)
			return 0;
		buf += n, off += n, len -= n;
	}
	return 1;
}

static void send_all(struct side *s)
{
	off_t foff = 0;

	while (s->moved < s->size) {
		size_t want = s->size - s->moved, at = s->moved % PATTERN;
		ssize_t n;

		if (s->mode == MODE_SENDFILE) {
			n = kts_sendfile(s->kts, s->file_fd, &foff, want);
		} else {
			want = want < CHUNK ? want : CHUNK;
			want = want < PATTERN - at ? want : PATTERN - at;
			n = kts_write(s->kts, pattern + at, want);
		}
		if (n <= 0) {
			s->err = n == 0 ? "sent nothing" : kts_error(s->kts);
			return;
		}
		s->moved += (size_t)n;
	}
	if (kts_close(s->kts))
		s->err = kts_error(s->kts);
}

static ssize_t recv_some(struct side *s, unsigned char *buf, size_t len)
{
	size_t n = 0;

	if (s->kts)
		return kts_read(s->kts, buf, len);
	if (SSL_read_ex(s->ssl, buf, len, &n) == 1)
		return (ssize_t)n;
	return SSL_get_error(s->ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static void recv_all(struct side *s)
{
	unsigned char *buf = malloc(CHUNK);

	while (s->moved < s->size) {
		ssize_t n = recv_some(s, buf, CHUNK);
		if (n <= 0) {
			s->err = n == 0 ? "early close_notify" : s->kts ? kts_error(s->kts) : "SSL_read failed";
			break;
		}
		if (s->moved + (size_t)n > s->size || !matches(buf, (size_t)n, s->moved)) {
			s->err = "received bytes differ from what was sent";
			break;
		}
		s->moved += (size_t)n;
	}
	s->t1 = now_ns();
	if (!s->err && recv_some(s, buf, 1) != 0) /* then the sender's close_notify */
		s->err = "no close_notify after the data";
	free(buf);
}

static void *run_side(void *arg)
{
	struct side *s = arg;
	int rc = 1;
	double cpu0;

	if (s->kts) {
		rc = kts_handshake(s->kts);
		s->path = kts_offload(s->kts, s->is_sender ? KTS_TX : KTS_RX);
	} else {
		rc = SSL_connect(s->ssl) == 1 ? 0 : -1;
		s->path = KTS_PATH_USER;
	}
	if (rc) {
		s->err = s->kts ? kts_error(s->kts) : "SSL_connect failed";
		shutdown(s->fd, SHUT_RDWR); /* the peer's handshake fails instead of hanging */
	}
	pthread_barrier_wait(s->start);
	if (rc)
		return NULL;
	cpu0 = thread_cpu_s();
	s->t0 = now_ns();
	if (s->is_sender)
		send_all(s);
	else
		recv_all(s);
	s->cpu_s = thread_cpu_s() - cpu0;
	if (s->err)
		shutdown(s->fd, SHUT_RDWR);
	return NULL;
}

struct result {
	int ok;
	double mbps, send_cpu, recv_cpu; /* CPU in s/GB */
};

/* One transfer of size bytes, kts server -> receiver (OpenSSL, or kts with the
 * same offload policy). */
static struct result bench_transfer(enum mode mode, int offload, int kts_receiver, size_t size,
				    int file_fd)
{
	struct kts_config *cfg = kts_cfg(13, offload);
	SSL_CTX *cctx = ossl_ctx(0, 13);
	struct side snd = {.is_sender = 1}, rcv = {.is_sender = 0};
	struct result r = {0, 0, 0, 0};
	pthread_barrier_t start;
	pthread_t th[2];
	int fds[2];
	const char *mname = mode == MODE_SENDFILE ? "sendfile" : "write";
	char rx[32];

	tcp_pair(fds);
	pthread_barrier_init(&start, NULL, 2);
	snd.fd = fds[0];
	rcv.fd = fds[1];
	snd.kts = kts_conn(cfg, 1, fds[0]);
	if (kts_receiver) {
		rcv.kts = kts_conn(cfg, 0, fds[1]);
	} else {
		rcv.ssl = SSL_new(cctx);
		SSL_set_fd(rcv.ssl, fds[1]);
	}
	snd.mode = rcv.mode = mode;
	snd.size = rcv.size = size;
	snd.file_fd = file_fd;
	snd.start = rcv.start = &start;
	pthread_create(&th[0], NULL, run_side, &snd);
	pthread_create(&th[1], NULL, run_side, &rcv);
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);

	snprintf(rx, sizeof(rx), "%s(%s)", kts_path_name(rcv.path), kts_receiver ? "kts" : "openssl");
	if (snd.err || rcv.err) {
		failures++;
		printf("transfer mode=%s offload=%s rx=%s FAILED: sender: %s; receiver: %s\n", mname,
		       offload == KTS_OFFLOAD_AUTO ? "auto" : "off", rx, snd.err ? snd.err : "ok",
		       rcv.err ? rcv.err : "ok");
	} else if (offload == KTS_OFFLOAD_AUTO &&
		   (snd.path != KTS_PATH_KERNEL || (kts_receiver && rcv.path != KTS_PATH_KERNEL))) {
		printf("transfer mode=%s offload=auto tx=%s rx=%s SKIPPED: not on the kernel path (%s)\n",
		       mname, kts_path_name(snd.path), rx,
		       kts_offload_reason(snd.kts, KTS_TX) ? kts_offload_reason(snd.kts, KTS_TX)
							   : "receiver RX in userspace");
	} else {
		double gb = (double)size / 1e9, wall = (double)(rcv.t1 - snd.t0) / 1e9;
		r.ok = 1;
		r.mbps = (double)size / 1e6 / wall;
		r.send_cpu = snd.cpu_s / gb;
		r.recv_cpu = rcv.cpu_s / gb;
		printf("transfer mode=%s offload=%s tx=%s rx=%s size=%zuMiB bytes_ok=%zu MBps=%.1f "
		       "wall_s=%.2f send_cpu_s_per_gb=%.2f recv_cpu_s_per_gb=%.2f\n",
		       mname, offload == KTS_OFFLOAD_AUTO ? "auto" : "off", kts_path_name(snd.path), rx,
		       size >> 20, rcv.moved, r.mbps, wall, r.send_cpu, r.recv_cpu);
	}
	fflush(stdout);
	kts_free(snd.kts);
	kts_free(rcv.kts);
	SSL_free(rcv.ssl);
	SSL_CTX_free(cctx);
	kts_config_free(cfg);
	close(fds[0]);
	close(fds[1]);
	pthread_barrier_destroy(&start);
	return r;
}

/* The sendfile source: size bytes of the stream pattern in dir (tmpfs in the VM). */
static int make_file(const char *dir, size_t size)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/kts_bench.XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0)
		die("cannot create the sendfile source file (-d DIR)");
	unlink(path);
	for (size_t off = 0; off < size;) {
		size_t at = off % PATTERN, n = PATTERN - at < size - off ? PATTERN - at : size - off;
		ssize_t w = write(fd, pattern + at, n);
		if (w <= 0)
			die("cannot write the sendfile source file (disk or tmpfs full?)");
		off += (size_t)w;
	}
	return fd;
}

static void print_ratio(const char *what, struct result k, struct result u)
{
	if (k.ok && u.ok)
		printf("ratio transfer %s kernel/user send_cpu=%.2f recv_cpu=%.2f MBps=%.2f\n", what,
		       k.send_cpu / u.send_cpu, k.recv_cpu / u.recv_cpu, k.mbps / u.mbps);
}

static void bench_transfers(size_t size, const char *dir)
{
	struct result r[2][2][2]; /* [mode][receiver is kts][0 kernel, 1 user] */
	static const char *const what[2][2] = {{"mode=write rx=openssl", "mode=write rx=kts"},
					       {"mode=sendfile rx=openssl", "mode=sendfile rx=kts"}};
	int file_fd = make_file(dir, size);

	for (int m = MODE_WRITE; m <= MODE_SENDFILE; m++)
		for (int rk = 0; rk < 2; rk++) {
			r[m][rk][0] = bench_transfer(m, KTS_OFFLOAD_AUTO, rk, size, file_fd);
			r[m][rk][1] = bench_transfer(m, KTS_OFFLOAD_OFF, rk, size, file_fd);
		}
	for (int m = MODE_WRITE; m <= MODE_SENDFILE; m++)
		for (int rk = 0; rk < 2; rk++)
			print_ratio(what[m][rk], r[m][rk][0], r[m][rk][1]);
	close(file_fd);
}

/* ---- main ------------------------------------------------------------------ */

/* Does this kernel take the "tls" ULP at all? */
static int have_ktls(void)
{
	int fds[2], ok;

	tcp_pair(fds);
	ok = kts_kernel_attach_ulp(fds[0]) == 0;
	close(fds[0]);
	close(fds[1]);
	return ok;
}

static size_t parse_size(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	switch (*end) {
	case 'G': case 'g': v *= 1024; /* fall through */
	case 'M': case 'm': v *= 1024; /* fall through */
	case 'K': case 'k': v *= 1024; break;
	case '\0': break;
	default: die("bad size (examples: 256M, 1G, 65536)");
	}
	return (size_t)v;
}

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && *v ? v : def;
}

int main(int argc, char **argv)
{
	int n = atoi(env_or("KTS_BENCH_N", "200")), opt;
	size_t size = parse_size(env_or("KTS_BENCH_SIZE", "256M"));
	const char *dir = env_or("KTS_BENCH_DIR", "/tmp");
	struct utsname u;

	while ((opt = getopt(argc, argv, "n:s:d:h")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 's': size = parse_size(optarg); break;
		case 'd': dir = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-n connections] [-s size, e.g. 256M] [-d dir]\n",
				argv[0]);
			return 2;
		}
	}
	if (n < 0)
		die("-n must be >= 0");
	uname(&u);
	printf("bench kernel=%s ktls=%s cpus=%ld n=%d size=%zuMiB cipher=aes128gcm "
	       "(compare kernel/user only within one run)\n",
	       u.release, have_ktls() ? "yes" : "no", sysconf(_SC_NPROCESSORS_ONLN), n, size >> 20);
	fflush(stdout);
	test_cert_init();
	pattern = malloc(PATTERN);
	for (size_t i = 0, seed = 1; i < PATTERN; i++) {
		seed = seed * 6364136223846793005u + 1442695040888963407u;
		pattern[i] = (unsigned char)(seed >> 56);
	}

	for (int v = 0; v < 2 && n > 0; v++) {
		bench_handoff(12 + v, n);
		bench_handshake(12 + v, n);
	}
	if (size > 0)
		bench_transfers(size, dir);
	printf("bench done%s\n", failures ? " (with FAILED transfers)" : "");
	return failures ? 1 : 0;
}
