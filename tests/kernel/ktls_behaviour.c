/*
 * ktls_behaviour.c - what a kernel-offloaded connection does when the peer
 * sends more than data: alerts, tickets and key updates after the handoff,
 * forged records, TCP close without close_notify; plus tiny reads, sendfile,
 * non-blocking sockets and the "require" policy.
 *
 * Output: "CASE <name> tx=<path> rx=<path> <ok|FAIL>" per case, then
 * "N passed, N failed", "EXPECT TlsTxSw=N TlsRxSw=N" and "EXPECT-REKEY
 * TlsTxRekeyOk=N TlsRxRekeyOk=N" (see run-tests.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "kernel.h"
#include "kts.h"
#include "testutil.h"

/* kts on one end, OpenSSL (or a second kts) on the other, handshaken. */
struct pair {
	int fds[2];
	struct kts_config *cfg[2];
	struct kts *k;     /* the kts end under test */
	struct kts *k2;    /* the other end when it is kts too */
	SSL_CTX *ctx;
	SSL *ssl;          /* the other end when it is OpenSSL */
	int kts_is_server;
};

static int counts[2];
static int rekeys[2]; /* expected TlsTxRekeyOk, TlsRxRekeyOk */
static char why[512];

static void *openssl_handshake(void *arg)
{
	struct pair *p = arg;
	int rc = p->kts_is_server ? SSL_connect(p->ssl) : SSL_accept(p->ssl);
	return rc == 1 ? p : NULL;
}

static void *kts_handshake_thread(void *arg)
{
	return kts_handshake(arg) == KTS_OK ? arg : NULL;
}

/* version 12/13, AES-128-GCM; tickets: what an OpenSSL server sends; peer_kts:
 * the other end is kts too. Returns 0 with both ends handshaken. */
static int pair_open(struct pair *p, int version, int kts_is_server, int tickets, int peer_kts,
		     int policy, unsigned int lifetime, int release)
{
	const struct suite *s = &test_suites[0];
	int me = kts_is_server ? 0 : 1, other = 1 - me;
	void *peer_ok;
	pthread_t th;

	memset(p, 0, sizeof(*p));
	p->fds[0] = p->fds[1] = -1;
	p->kts_is_server = kts_is_server;
	if (test_tcp_pair(p->fds) < 0)
		return -1;
	p->cfg[0] = test_kts_config(version, s, kts_is_server);
	kts_config_set_offload(p->cfg[0], policy);
	if (lifetime)
		kts_config_set_session_lifetime(p->cfg[0], lifetime);
	kts_config_set_release_openssl(p->cfg[0], release);
	p->k = kts_is_server ? kts_server_new(p->cfg[0]) : kts_client_new(p->cfg[0]);
	kts_attach(p->k, p->fds[me]);
	if (peer_kts) {
		p->cfg[1] = test_kts_config(version, s, !kts_is_server);
		p->k2 = kts_is_server ? kts_client_new(p->cfg[1]) : kts_server_new(p->cfg[1]);
		kts_attach(p->k2, p->fds[other]);
		pthread_create(&th, NULL, kts_handshake_thread, p->k2);
	} else {
		p->ctx = test_ssl_ctx(version, s, !kts_is_server);
		SSL_CTX_set_num_tickets(p->ctx, (size_t)tickets);
		p->ssl = SSL_new(p->ctx);
		SSL_set_fd(p->ssl, p->fds[other]);
		pthread_create(&th, NULL, openssl_handshake, p);
	}
	if (kts_handshake(p->k) != KTS_OK)
		snprintf(why, sizeof(why), "kts handshake: %s", kts_error(p->k));
	pthread_join(th, &peer_ok);
	if (!peer_ok && !why[0])
		snprintf(why, sizeof(why), "peer handshake failed");
	for (int i = 0; i < 2; i++) {
		struct kts *k = i ? p->k2 : p->k;
		counts[0] += kts_offload(k, KTS_TX) == KTS_PATH_KERNEL;
		counts[1] += kts_offload(k, KTS_RX) == KTS_PATH_KERNEL;
	}
	return why[0] ? -1 : 0;
}

static void pair_close(struct pair *p)
{
	kts_free(p->k);
	kts_free(p->k2);
	kts_config_free(p->cfg[0]);
	kts_config_free(p->cfg[1]);
	SSL_free(p->ssl);
	SSL_CTX_free(p->ctx);
	close(p->fds[0]);
	if (p->fds[1] >= 0)
		close(p->fds[1]);
}

/* rc must be code and kts_error must mention needle. */
static int expect_error(struct kts *k, long rc, int code, const char *needle)
{
	if (rc != code || !strstr(kts_error(k), needle)) {
		snprintf(why, sizeof(why), "got %ld '%s', want %d '%s'", rc, kts_error(k), code,
			 needle);
		return 0;
	}
	return 1;
}

/* The peer's fatal alert, sent through its kernel TX as a real alert record. */
static int case_alert(struct pair *p)
{
	static const unsigned char alert[2] = {2, 40}; /* fatal handshake_failure */
	char buf[64];

	if (kts_kernel_send_record(p->fds[0], KTS_RECORD_ALERT, alert, 2, 0) != 2)
		return snprintf(why, sizeof(why), "peer could not send the alert"), 0;
	return expect_error(p->k, kts_read(p->k, buf, sizeof(buf)), KTS_ERR_TLS,
			    "fatal alert: handshake failure") &&
	       /* the connection stays failed */
	       expect_error(p->k, kts_read(p->k, buf, sizeof(buf)), KTS_ERR_TLS, "handshake failure");
}

/* TLS 1.2: a warning alert (no_renegotiation) is informational: the data
 * behind it reads normally. */
static int case_warning_alert(struct pair *p)
{
	static const unsigned char warning[2] = {1, 100};
	char buf[8];
	ssize_t n;

	if (kts_kernel_send_record(p->fds[0], KTS_RECORD_ALERT, warning, 2, 0) != 2 ||
	    kts_write(p->k2, "data", 4) != 4)
		return snprintf(why, sizeof(why), "peer could not send"), 0;
	n = kts_read(p->k, buf, sizeof(buf));
	if (n != 4 || memcmp(buf, "data", 4) != 0)
		return snprintf(why, sizeof(why), "read after a warning: %zd %s", n, kts_error(p->k)), 0;
	return 1;
}

/* An OpenSSL server's TLS 1.3 tickets reach a client whose RX the kernel owns:
 * they arrive as handshake records, kts hands them to OpenSSL (which makes a
 * resumable session of them) and the data behind them reads normally. */
static int case_ticket(struct pair *p)
{
	SSL_SESSION *before = SSL_get1_session(kts_ssl(p->k)), *after;
	char buf[64];
	ssize_t n;
	int ok;

	SSL_write(p->ssl, "x", 1); /* OpenSSL writes its tickets first */
	n = kts_read(p->k, buf, sizeof(buf));
	if (n != 1 || buf[0] != 'x') {
		SSL_SESSION_free(before);
		return snprintf(why, sizeof(why), "read after tickets: %zd %s", n, kts_error(p->k)), 0;
	}
	after = SSL_get1_session(kts_ssl(p->k));
	ok = after != before && SSL_SESSION_is_resumable(after);
	if (!ok)
		snprintf(why, sizeof(why), "OpenSSL holds no resumable session from the tickets");
	SSL_SESSION_free(before);
	SSL_SESSION_free(after);
	return ok;
}

/* The OpenSSL peer's next read fails with reason (an alert it received). */
static int peer_got_alert(SSL *ssl, int reason)
{
	char buf[8];
	unsigned long e;

	ERR_clear_error();
	if (SSL_read(ssl, buf, sizeof(buf)) > 0)
		return snprintf(why, sizeof(why), "peer read data, want an alert"), 0;
	e = ERR_peek_last_error();
	if (ERR_GET_REASON(e) != reason)
		return snprintf(why, sizeof(why), "peer: '%s', want reason %d", ERR_reason_error_string(e),
				reason), 0;
	return 1;
}

/* Data before a KeyUpdate arrives intact. On a kernel that cannot take new
 * keys (before 6.14, like Debian 12's 6.12) the KeyUpdate is a clear error,
 * never garbage. On one that can, kts installs the next RX key and reads on;
 * asked to update too, it answers through kernel TX, switches its TX key, and
 * the peer reads what it writes next. The probe decides which is expected. */
static int case_keyupdate(struct pair *p)
{
	int can_rekey = kts_kernel_probe_rekey();
	char buf[64];
	ssize_t n;

	/* That probe and kts' own (once per config) each install TX keys on a
	 * throwaway socket: one more TlsTxSw each. */
	counts[0] += 2;
	if (can_rekey < 0)
		return snprintf(why, sizeof(why), "rekey probe failed: %s", strerror(-can_rekey)), 0;
	SSL_write(p->ssl, "before", 6);
	SSL_key_update(p->ssl, SSL_KEY_UPDATE_NOT_REQUESTED);
	SSL_write(p->ssl, "after", 5);
	n = kts_read(p->k, buf, sizeof(buf));
	if (n != 6 || memcmp(buf, "before", 6) != 0)
		return snprintf(why, sizeof(why), "data before KeyUpdate: %zd", n), 0;
	if (!can_rekey)
		/* ... and the peer hears why: internal_error through kernel TX. */
		return expect_error(p->k, kts_read(p->k, buf, sizeof(buf)), KTS_ERR_UNSUPPORTED,
				    "KeyUpdate and this kernel cannot replace the keys") &&
		       peer_got_alert(p->ssl, SSL_R_TLSV1_ALERT_INTERNAL_ERROR);
	/* Both probes' second installs, kts' answer; the peer's two KeyUpdates. */
	rekeys[0] += 3;
	rekeys[1] += 2;
	n = kts_read(p->k, buf, sizeof(buf));
	if (n != 5 || memcmp(buf, "after", 5) != 0)
		return snprintf(why, sizeof(why), "after the peer's KeyUpdate: %zd '%s'", n,
				n < 0 ? kts_error(p->k) : ""), 0;
	SSL_key_update(p->ssl, SSL_KEY_UPDATE_REQUESTED);
	SSL_write(p->ssl, "ask", 3);
	n = kts_read(p->k, buf, sizeof(buf));
	if (n != 3 || memcmp(buf, "ask", 3) != 0)
		return snprintf(why, sizeof(why), "after a requested KeyUpdate: %zd '%s'", n,
				n < 0 ? kts_error(p->k) : ""), 0;
	n = kts_write(p->k, "reply", 5);
	if (n != 5)
		return snprintf(why, sizeof(why), "write after answering: %zd '%s'", n,
				kts_error(p->k)), 0;
	n = SSL_read(p->ssl, buf, sizeof(buf));
	if (n != 5 || memcmp(buf, "reply", 5) != 0)
		return snprintf(why, sizeof(why), "the peer read %zd after kts' KeyUpdate", n), 0;
	return 1;
}

/* A server that released OpenSSL (kts_config_set_release_openssl) follows
 * the peer's KeyUpdates as well: kts keeps the secrets, not the SSL. */
static int case_keyupdate_released(struct pair *p)
{
	if (kts_ssl(p->k))
		return snprintf(why, sizeof(why), "SSL kept after the handoff"), 0;
	return case_keyupdate(p);
}

/* A forged record fails authentication and the connection is dead. The kernel
 * marks the socket failed at that point and refuses every later send, so no
 * bad_record_mac alert can reach the peer: it sees the connection end. */
static int case_bad_record(struct pair *p)
{
	unsigned char rec[5 + 32] = {23, 3, 3, 0, 32};
	struct timeval limit = {.tv_sec = 5};
	char buf[64];

	memset(rec + 5, 0xab, 32);
	if (write(p->fds[1], rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		return snprintf(why, sizeof(why), "raw write failed"), 0;
	if (!expect_error(p->k, kts_read(p->k, buf, sizeof(buf)), KTS_ERR_TLS, "bad_record_mac") ||
	    !expect_error(p->k, kts_write(p->k, "x", 1), KTS_ERR_TLS, "bad_record_mac"))
		return 0;
	shutdown(p->fds[0], SHUT_RDWR);
	setsockopt(p->fds[1], SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	if (SSL_read(p->ssl, buf, sizeof(buf)) > 0)
		return snprintf(why, sizeof(why), "peer read data after the forged record"), 0;
	ERR_clear_error();
	return 1;
}

/* TCP FIN without close_notify could be a truncation attack: an error, not EOF. */
static int case_truncation(struct pair *p)
{
	char buf[64];

	shutdown(p->fds[0], SHUT_WR);
	return expect_error(p->k, kts_read(p->k, buf, sizeof(buf)), KTS_ERR_TRUNCATED,
			    "without close_notify");
}

/* One-byte reads: data, then a close_notify split across two reads, then EOF. */
static int case_tiny_reads(struct pair *p)
{
	char got[8] = {0};
	ssize_t n;

	SSL_write(p->ssl, "hello", 5);
	SSL_shutdown(p->ssl);
	for (int i = 0; i < 5; i++)
		if ((n = kts_read(p->k, got + i, 1)) != 1)
			return snprintf(why, sizeof(why), "byte %d: %zd %s", i, n, kts_error(p->k)), 0;
	if (strcmp(got, "hello") != 0)
		return snprintf(why, sizeof(why), "read '%s'", got), 0;
	n = kts_read(p->k, got, 1);
	if (n != 0)
		return snprintf(why, sizeof(why), "close_notify gave %zd: %s", n, kts_error(p->k)), 0;
	return 1;
}

struct reader {
	SSL *ssl;
	size_t len;
	unsigned char md[32];
	int ok;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;
	EVP_MD_CTX *h = EVP_MD_CTX_new();
	unsigned char buf[16384];
	size_t got = 0, n;

	EVP_DigestInit_ex(h, EVP_sha256(), NULL);
	while (got < r->len && SSL_read_ex(r->ssl, buf, sizeof(buf), &n) == 1) {
		EVP_DigestUpdate(h, buf, n);
		got += n;
	}
	EVP_DigestFinal_ex(h, r->md, NULL);
	EVP_MD_CTX_free(h);
	r->ok = got == r->len;
	return NULL;
}

/* kts_sendfile over kernel TX: the kernel's sendfile, checked by SHA-256. */
static int case_sendfile(struct pair *p)
{
	static unsigned char data[4 << 20];
	struct reader r = {.ssl = p->ssl, .len = sizeof(data)};
	unsigned char want[32];
	char path[] = "/tmp/kts-sendfile-XXXXXX";
	int fd = mkstemp(path);
	off_t off = 0;
	pthread_t th;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + (i >> 12));
	EVP_Digest(data, sizeof(data), want, NULL, EVP_sha256(), NULL);
	if (fd < 0 || write(fd, data, sizeof(data)) != (ssize_t)sizeof(data))
		return snprintf(why, sizeof(why), "temp file: %s", strerror(errno)), 0;
	unlink(path);
	pthread_create(&th, NULL, read_all, &r);
	while (off < (off_t)sizeof(data)) {
		ssize_t n = kts_sendfile(p->k, fd, &off, sizeof(data) - (size_t)off);
		if (n <= 0) {
			snprintf(why, sizeof(why), "sendfile: %zd %s", n, kts_error(p->k));
			break;
		}
	}
	pthread_join(th, NULL);
	close(fd);
	if (!why[0] && (!r.ok || memcmp(r.md, want, 32) != 0))
		snprintf(why, sizeof(why), "peer received wrong bytes");
	return !why[0];
}

/* Non-blocking kernel RX: nothing to read is KTS_WANT_READ, then data arrives. */
static int case_nonblocking(struct pair *p)
{
	struct pollfd pfd = {.fd = p->fds[1], .events = POLLIN};
	char buf[16];
	ssize_t n;

	fcntl(p->fds[1], F_SETFL, fcntl(p->fds[1], F_GETFL) | O_NONBLOCK);
	n = kts_read(p->k, buf, sizeof(buf));
	if (n != KTS_WANT_READ)
		return snprintf(why, sizeof(why), "idle read gave %zd, want KTS_WANT_READ", n), 0;
	SSL_write(p->ssl, "ping", 4);
	if (poll(&pfd, 1, 5000) != 1)
		return snprintf(why, sizeof(why), "poll timed out"), 0;
	n = kts_read(p->k, buf, sizeof(buf));
	if (n != 4 || memcmp(buf, "ping", 4) != 0)
		return snprintf(why, sizeof(why), "read after poll gave %zd", n), 0;
	return 1;
}

/* The OpenSSL client counts the tickets it gets. */
static int tickets_seen;

static int count_ticket(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl, (void)sess;
	tickets_seen++;
	return 0;
}

/* A late ticket while kernel TX is blocked (the client is not reading): it
 * waits in kts (KTS_WANT_WRITE) instead of failing, goes out ahead of the next
 * data, and the client gets it and every byte intact. */
static int case_late_ticket_blocked(struct pair *p)
{
	static char chunk[16384];
	struct reader r = {.ssl = p->ssl};
	struct pollfd pfd = {.fd = p->fds[0], .events = POLLOUT};
	size_t sent = 0;
	pthread_t th;
	ssize_t n;
	int rc, before, early = 0;

	SSL_CTX_sess_set_new_cb(p->ctx, count_ticket);
	SSL_CTX_set_session_cache_mode(p->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	fcntl(p->fds[0], F_SETFL, fcntl(p->fds[0], F_GETFL) | O_NONBLOCK);
	memset(chunk, 'd', sizeof(chunk));
	/* Full to the last byte: a kernel may still take a small record when a
	 * 16 KiB one no longer fits (7.x does), and ACKs arriving meanwhile can
	 * free room again: fill, issue, and again while the ticket fits. */
	for (int tries = 0;; tries++) {
		for (size_t size = sizeof(chunk); size > 0; size /= 16) {
			while ((n = kts_write(p->k, chunk, size)) > 0)
				sent += (size_t)n;
			if (n != KTS_WANT_WRITE)
				return snprintf(why, sizeof(why), "filling the send buffer: %zd %s", n,
						kts_error(p->k)), 0;
		}
		rc = kts_issue_ticket(p->k);
		if (rc == KTS_WANT_WRITE)
			break;
		if (rc != KTS_OK || tries == 20)
			return snprintf(why, sizeof(why), "ticket on a full buffer: %d %s", rc,
					kts_error(p->k)), 0;
		early++; /* it fitted after all */
	}
	/* The client drains; kts finishes the ticket, then one more chunk. */
	before = tickets_seen;
	r.len = sent + sizeof(chunk);
	pthread_create(&th, NULL, read_all, &r);
	do {
		poll(&pfd, 1, 5000);
		rc = kts_issue_ticket(p->k);
	} while (rc == KTS_WANT_WRITE);
	for (size_t done = 0; rc == KTS_OK && done < sizeof(chunk); done += (size_t)n) {
		n = kts_write(p->k, chunk + done, sizeof(chunk) - done);
		if (n == KTS_WANT_WRITE) {
			poll(&pfd, 1, 5000);
			n = 0;
		} else if (n < 0) {
			rc = (int)n;
		}
	}
	pthread_join(th, NULL);
	if (rc != KTS_OK)
		return snprintf(why, sizeof(why), "after the ticket: %d %s", rc, kts_error(p->k)), 0;
	if (!r.ok)
		return snprintf(why, sizeof(why), "client did not get all %zu bytes", r.len), 0;
	/* The client reads nothing before draining: the handshake's two tickets,
	 * then the late one, all ahead of the data. */
	if (tickets_seen != before + 3 + early)
		return snprintf(why, sizeof(why), "client got %d tickets, want 2 + %d late",
				tickets_seen - before, 1 + early), 0;
	return 1;
}

/* TLS 1.2 renegotiation is refused on the kernel path as OpenSSL refuses it
 * on the userspace path: a no_renegotiation warning through kernel TX, and
 * the connection carries on. The peer (kts, kernel TX) sends a ClientHello
 * as a handshake record, then data; kts reads the data, and the peer's
 * socket holds the warning ahead of what kts writes next. */
static int case_renegotiation_refused(struct pair *p)
{
	static const unsigned char hello[] = {1, 0, 0, 4, 3, 3, 0, 0}; /* ClientHello, cut down */
	unsigned char rec[16], type;
	int end;
	char buf[16];
	ssize_t n;

	if (kts_kernel_send_record(p->fds[1], KTS_RECORD_HANDSHAKE, hello, sizeof(hello), 0) !=
		    (ssize_t)sizeof(hello) ||
	    kts_write(p->k2, "after", 5) != 5)
		return snprintf(why, sizeof(why), "peer could not send"), 0;
	n = kts_read(p->k, buf, sizeof(buf));
	if (n != 5 || memcmp(buf, "after", 5) != 0)
		return snprintf(why, sizeof(why), "read after a renegotiation: %zd '%s'", n,
				n < 0 ? kts_error(p->k) : ""), 0;
	if (kts_write(p->k, "on", 2) != 2)
		return snprintf(why, sizeof(why), "write after: %s", kts_error(p->k)), 0;
	n = kts_kernel_recv(p->fds[1], rec, sizeof(rec), 0, &type, &end);
	if (n != 2 || type != KTS_RECORD_ALERT || rec[0] != 1 || rec[1] != 100)
		return snprintf(why, sizeof(why), "peer got %zd bytes of type %u (%u %u), want the "
				"no_renegotiation warning", n, type, rec[0], rec[1]), 0;
	n = kts_read(p->k2, buf, sizeof(buf));
	return (n == 2 && memcmp(buf, "on", 2) == 0) ||
	       (snprintf(why, sizeof(why), "peer read after the warning: %zd", n), 0);
}

/* The OpenSSL end asks for renegotiation (client: ClientHello; server:
 * HelloRequest); its handshake or read result lands in reason. */
struct renegotiator {
	SSL *ssl;
	unsigned long reason;
};

static void *renegotiate(void *arg)
{
	struct renegotiator *r = arg;
	char buf[8];

	ERR_clear_error();
	if (SSL_renegotiate(r->ssl) == 1 && SSL_do_handshake(r->ssl) == 1)
		SSL_read(r->ssl, buf, sizeof(buf));
	r->reason = ERR_GET_REASON(ERR_peek_last_error());
	return NULL;
}

/* A real OpenSSL peer that renegotiates hears no_renegotiation (and gives up
 * with a fatal handshake_failure, which kts, still reading, reports) instead
 * of an unexpected EOF. kts server (ClientHello) or client (HelloRequest). */
static int case_renegotiation_openssl(struct pair *p)
{
	struct renegotiator r = {.ssl = p->ssl};
	pthread_t th;
	char buf[8];
	ssize_t n;

	pthread_create(&th, NULL, renegotiate, &r);
	n = kts_read(p->k, buf, sizeof(buf));
	pthread_join(th, NULL);
	if (r.reason != SSL_R_NO_RENEGOTIATION)
		return snprintf(why, sizeof(why), "peer: %s, want 'no renegotiation'",
				r.reason ? ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, r.reason))
					 : "no error"), 0;
	return expect_error(p->k, n, KTS_ERR_TLS, "handshake failure");
}

/* The peer stops reading, then resets the connection (SO_LINGER 0): kernel
 * TX must report the reset within a call or two instead of taking one
 * record after another into a dead socket, and close must fail too.
 * use_sendfile picks kts_sendfile (16 MiB file) or kts_write. taken: a raw
 * recv takes the socket's error first, as another reader, SO_ERROR or the
 * kernel's splice path may: kTLS then reports every later send as whole
 * (measured on 6.12 and 7.x), so only kts' own check can tell. */
static int reset_while_sending(struct pair *p, int use_sendfile, int taken)
{
	const size_t bound = taken && !use_sendfile ? 17 * 16384 : 2 * 16384;
	static char chunk[16384];
	struct pollfd pfd = {.fd = p->fds[0], .events = POLLOUT};
	struct linger hard = {.l_onoff = 1, .l_linger = 0};
	char path[] = "/tmp/kts-reset-XXXXXX";
	int fd = mkstemp(path), calls = 0, rc;
	size_t after = 0;
	off_t off = 0;
	ssize_t n;

	if (fd < 0 || ftruncate(fd, 16 << 20) < 0)
		return snprintf(why, sizeof(why), "temp file: %s", strerror(errno)), 0;
	unlink(path);
	fcntl(p->fds[0], F_SETFL, fcntl(p->fds[0], F_GETFL) | O_NONBLOCK);
	/* Fill everything up to the peer's receive buffer. */
	while ((n = use_sendfile ? kts_sendfile(p->k, fd, &off, (16 << 20) - (size_t)off)
				 : kts_write(p->k, chunk, sizeof(chunk))) > 0)
		;
	if (n != KTS_WANT_WRITE) {
		close(fd);
		return snprintf(why, sizeof(why), "filling: %zd %s", n, kts_error(p->k)), 0;
	}
	setsockopt(p->fds[1], SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
	close(p->fds[1]);
	p->fds[1] = -1;
	if (taken) {
		char b;

		usleep(20000);
		if (recv(p->fds[0], &b, 1, MSG_DONTWAIT) >= 0 || errno != ECONNRESET) {
			close(fd);
			return snprintf(why, sizeof(why), "raw recv after the reset: %s", strerror(errno)), 0;
		}
	}
	/* Within about a second the sender must see the error. */
	for (calls = 0; calls < 100; calls++) {
		n = use_sendfile ? kts_sendfile(p->k, fd, &off, (16 << 20) - (size_t)off)
				 : kts_write(p->k, chunk, sizeof(chunk));
		if (n == KTS_WANT_WRITE) {
			poll(&pfd, 1, 10);
			continue;
		}
		if (n <= 0)
			break;
		after += (size_t)n;
	}
	close(fd);
	if (n >= 0 || n == KTS_WANT_WRITE)
		return snprintf(why, sizeof(why), "still sending after the reset: %zu bytes in %d calls",
				after, calls), 0;
	if (n != KTS_ERR_SYS || (!strstr(kts_error(p->k), "reset") && !strstr(kts_error(p->k), "pipe")))
		return snprintf(why, sizeof(why), "error after reset: %zd '%s'", n, kts_error(p->k)), 0;
	if (after > bound)
		return snprintf(why, sizeof(why), "%zu bytes 'sent' after the reset in %d calls", after,
				calls), 0;
	rc = kts_close(p->k);
	if (rc >= 0)
		return snprintf(why, sizeof(why), "close after the reset succeeded"), 0;
	return 1;
}

static int case_reset_write(struct pair *p) { return reset_while_sending(p, 0, 0); }
static int case_reset_sendfile(struct pair *p) { return reset_while_sending(p, 1, 0); }
static int case_reset_taken_write(struct pair *p) { return reset_while_sending(p, 0, 1); }
static int case_reset_taken_sendfile(struct pair *p) { return reset_while_sending(p, 1, 1); }

/* The same with a blocking sender (as kts-server's threads are): the reset
 * comes while kts_sendfile or kts_write waits in the kernel for room. */
struct resetter {
	int fd;
	_Atomic int done;
};

static void *reset_later(void *arg)
{
	struct resetter *r = arg;
	struct linger hard = {.l_onoff = 1, .l_linger = 0};

	usleep(300 * 1000);
	setsockopt(r->fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
	close(r->fd);
	r->done = 1;
	return NULL;
}

static int reset_while_blocked(struct pair *p, int use_sendfile)
{
	static char chunk[16384];
	struct resetter r = {.fd = p->fds[1]};
	char path[] = "/tmp/kts-reset-XXXXXX";
	int fd = mkstemp(path), calls = 0, after_calls = 0;
	size_t after = 0;
	off_t off = 0;
	pthread_t th;
	ssize_t n;

	if (fd < 0 || ftruncate(fd, 16 << 20) < 0)
		return snprintf(why, sizeof(why), "temp file: %s", strerror(errno)), 0;
	unlink(path);
	p->fds[1] = -1;
	pthread_create(&th, NULL, reset_later, &r);
	for (calls = 0; calls < 2000; calls++) {
		int was_reset = r.done;

		n = use_sendfile ? kts_sendfile(p->k, fd, &off, (16 << 20) - (size_t)off)
				 : kts_write(p->k, chunk, sizeof(chunk));
		if (n <= 0)
			break;
		if (was_reset) {
			after += (size_t)n;
			after_calls++;
		}
	}
	pthread_join(th, NULL);
	close(fd);
	if (n >= 0 || after_calls > 1 || after > 4 * sizeof(chunk))
		return snprintf(why, sizeof(why), "%d calls 'sent' %zu bytes after the reset, then %zd",
				after_calls, after, n), 0;
	if (n != KTS_ERR_SYS || (!strstr(kts_error(p->k), "reset") && !strstr(kts_error(p->k), "pipe")))
		return snprintf(why, sizeof(why), "error after reset: %zd '%s'", n, kts_error(p->k)), 0;
	return kts_close(p->k) < 0 ||
	       (snprintf(why, sizeof(why), "close after the reset succeeded"), 0);
}

static int case_reset_blocked_write(struct pair *p) { return reset_while_blocked(p, 0); }
static int case_reset_blocked_sendfile(struct pair *p) { return reset_while_blocked(p, 1); }

/* A reset while idle: the close_notify kts sends afterwards cannot arrive,
 * and kts_close says so instead of succeeding. */
static int case_reset_close(struct pair *p)
{
	struct linger hard = {.l_onoff = 1, .l_linger = 0};
	int rc;

	setsockopt(p->fds[1], SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
	close(p->fds[1]);
	p->fds[1] = -1;
	usleep(10000);
	rc = kts_close(p->k);
	return rc == KTS_ERR_SYS ||
	       (snprintf(why, sizeof(why), "close after a reset: %d '%s'", rc, kts_error(p->k)), 0);
}

/* "require" succeeds when the kernel can take both directions. */
static int case_require(struct pair *p)
{
	(void)p;
	return 1; /* pair_open already failed the case if the handshake did */
}

struct behaviour {
	const char *name;
	int (*run)(struct pair *p);
	int version, kts_is_server, tickets, peer_kts, policy;
	unsigned int lifetime; /* kts server: resumption on */
	int release;           /* kts_config_set_release_openssl */
};

static const struct behaviour cases[] = {
	{"alert", case_alert, 13, 0, 0, 1, KTS_OFFLOAD_AUTO, 0, 0},
	{"warning-alert-tls12", case_warning_alert, 12, 0, 0, 1, KTS_OFFLOAD_AUTO, 0, 0},
	{"ticket-after-handoff", case_ticket, 13, 0, 2, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"keyupdate", case_keyupdate, 13, 0, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"keyupdate-released-server", case_keyupdate_released, 13, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 1},
	{"bad-record-tls13", case_bad_record, 13, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"bad-record-tls12", case_bad_record, 12, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"truncation", case_truncation, 13, 0, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"tiny-reads", case_tiny_reads, 12, 0, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"sendfile", case_sendfile, 13, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"nonblocking", case_nonblocking, 12, 0, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"require", case_require, 13, 1, 0, 0, KTS_OFFLOAD_REQUIRE, 0, 0},
	{"late-ticket-full-sendbuf", case_late_ticket_blocked, 13, 1, 0, 0, KTS_OFFLOAD_AUTO, 3600, 0},
	{"renegotiation-refused-tls12", case_renegotiation_refused, 12, 1, 0, 1, KTS_OFFLOAD_AUTO, 0, 0},
	{"renegotiation-openssl-tls12", case_renegotiation_openssl, 12, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"hello-request-openssl-tls12", case_renegotiation_openssl, 12, 0, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"reset-during-write", case_reset_write, 13, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"reset-during-sendfile", case_reset_sendfile, 12, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"reset-then-close", case_reset_close, 13, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"reset-error-taken-write", case_reset_taken_write, 13, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"reset-error-taken-sendfile", case_reset_taken_sendfile, 12, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"reset-blocked-write", case_reset_blocked_write, 12, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
	{"reset-blocked-sendfile", case_reset_blocked_sendfile, 13, 1, 0, 0, KTS_OFFLOAD_AUTO, 0, 0},
};

int main(int argc, char **argv)
{
	int expect = test_expected_path(argc, argv), passed = 0, failed = 0;

	if (expect != KTS_PATH_KERNEL) {
		fprintf(stderr, "usage: %s [--expect kernel] (these cases need kernel TLS)\n", argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* kernel sendfile to a reset peer raises it, as in servers */
	test_cert_init();
	{
		/* Configs skip collecting TLS 1.3 secrets when this says no. */
		int r = kts_kernel_has_tls();

		printf("CASE kernel-has-tls probe=%d %s\n", r, r == 1 ? "ok" : "FAIL");
		r == 1 ? passed++ : failed++;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct behaviour *b = &cases[i];
		struct pair p;
		int ok;

		why[0] = '\0';
		ok = pair_open(&p, b->version, b->kts_is_server, b->tickets, b->peer_kts, b->policy,
			       b->lifetime, b->release) == 0;
		ok = ok && kts_offload(p.k, KTS_TX) == expect && kts_offload(p.k, KTS_RX) == expect;
		if (ok)
			ok = b->run(&p);
		else if (!why[0])
			snprintf(why, sizeof(why), "not on the %s path: %s", kts_path_name(expect),
				 kts_offload_reason(p.k, KTS_TX) ? kts_offload_reason(p.k, KTS_TX) : "");
		printf("CASE %s tx=%s rx=%s %s\n", b->name, kts_path_name(kts_offload(p.k, KTS_TX)),
		       kts_path_name(kts_offload(p.k, KTS_RX)), ok ? "ok" : "FAIL");
		if (!ok)
			printf("# %s: %s\n", b->name, why);
		fflush(stdout);
		ok ? passed++ : failed++;
		pair_close(&p);
	}
	printf("%d passed, %d failed\n", passed, failed);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", counts[0], counts[1]);
	printf("EXPECT-REKEY TlsTxRekeyOk=%d TlsRxRekeyOk=%d\n", rekeys[0], rekeys[1]);
	test_cert_free();
	return failed ? 1 : 0;
}
