/*
 * ktls_cases.c - the handoff matrix: TLS 1.2/1.3 x three AEADs x kts on the
 * server, the client or both, against plain OpenSSL as the peer. Each case
 * moves data both ways, checks it by SHA-256, and ends with close_notify.
 *
 * Output (parsed by run-tests.sh): one line per case
 *   CASE <tls12|tls13> <cipher> <server|client|both> tx=<path> rx=<path> <ok|FAIL>
 * then "N passed, N failed" and "EXPECT TlsTxSw=N TlsRxSw=N" (sockets on which
 * kts installed kernel TX/RX, for the /proc/net/tls_stat check).
 *
 * --expect kernel|user|auto says which path the kts side must report for a
 * case to pass: "kernel" (the default) in the VM; the host suite passes "auto",
 * which means "user" on a kernel without kTLS.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "kts.h"
#include "testutil.h"

#define TRANSFER (1u << 20) /* bytes each way per case */

enum role { KTS_SERVER = 1, KTS_CLIENT = 2, KTS_BOTH = 3 };

/* One endpoint: kts or plain OpenSSL, server or client. */
struct end {
	int is_server, use_kts, fd, version;
	int tickets; /* TLS 1.3 tickets a kts server writes during its handshake */
	int tickets_seen; /* tickets an OpenSSL client received */
	const struct suite *suite;
	struct kts_config *cfg;
	struct kts *kts;
	SSL_CTX *ctx;
	SSL *ssl;
	int ok;
	int path[2];
	char err[600];
};

static void fill(unsigned char *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
}

static void digest(const unsigned char *buf, size_t len, unsigned char out[32])
{
	EVP_Digest(buf, len, out, NULL, EVP_sha256(), NULL);
}

/* The OpenSSL client counts the tickets it receives (proves the kts server's
 * TLS 1.3 TX sequence started after them). */
static int count_ticket(SSL *ssl, SSL_SESSION *sess)
{
	struct end *e = SSL_get_app_data(ssl);
	(void)sess;
	e->tickets_seen++;
	return 0; /* not kept */
}

static int end_setup(struct end *e)
{
	if (e->use_kts) {
		e->cfg = test_kts_config(e->version, e->suite, e->is_server);
		e->kts = e->cfg ? (e->is_server ? kts_server_new(e->cfg) : kts_client_new(e->cfg)) : NULL;
		if (!e->kts || kts_attach(e->kts, e->fd)) {
			snprintf(e->err, sizeof(e->err), "config/new/attach failed");
			return -1;
		}
		/* Tickets written inside SSL_accept start the TLS 1.3 TX sequence
		 * above zero: the handoff must count them. */
		SSL_set_num_tickets(kts_ssl(e->kts), (size_t)e->tickets);
		return 0;
	}
	/* An OpenSSL server sends its default two TLS 1.3 tickets: a kts client
	 * gets them through kernel RX and must pass them to OpenSSL. */
	e->ctx = test_ssl_ctx(e->version, e->suite, e->is_server);
	SSL_CTX_set_session_cache_mode(e->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(e->ctx, count_ticket);
	e->ssl = SSL_new(e->ctx);
	SSL_set_app_data(e->ssl, e);
	SSL_set_fd(e->ssl, e->fd);
	return 0;
}

static int do_handshake(struct end *e)
{
	if (e->use_kts) {
		int rc = kts_handshake(e->kts);
		if (rc)
			snprintf(e->err, sizeof(e->err), "handshake: %s", kts_error(e->kts));
		e->path[KTS_TX] = kts_offload(e->kts, KTS_TX);
		e->path[KTS_RX] = kts_offload(e->kts, KTS_RX);
		return rc;
	}
	if ((e->is_server ? SSL_accept(e->ssl) : SSL_connect(e->ssl)) != 1) {
		snprintf(e->err, sizeof(e->err), "openssl handshake failed");
		return -1;
	}
	return 0;
}

static long end_read(struct end *e, unsigned char *buf, size_t len)
{
	size_t n = 0;

	if (e->use_kts)
		return kts_read(e->kts, buf, len);
	if (SSL_read_ex(e->ssl, buf, len, &n) == 1)
		return (long)n;
	return SSL_get_error(e->ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static long end_write(struct end *e, const unsigned char *buf, size_t len)
{
	size_t n = 0;

	if (e->use_kts)
		return kts_write(e->kts, buf, len);
	return SSL_write_ex(e->ssl, buf, len, &n) == 1 ? (long)n : -1;
}

/* Client sends TRANSFER bytes, server reads them and sends its own TRANSFER
 * bytes back; the client closes, the server must see close_notify, then closes. */
static void *run_end(void *arg)
{
	struct end *e = arg;
	unsigned char *mine = malloc(TRANSFER), *theirs = malloc(TRANSFER);
	unsigned char want[32], got[32];
	size_t done;
	long n;

	if (do_handshake(e))
		goto out;
	fill(mine, TRANSFER, e->is_server ? 2u : 1u);
	fill(theirs, TRANSFER, e->is_server ? 1u : 2u);
	digest(theirs, TRANSFER, want);
	for (int step = 0; step < 2; step++) {
		int sending = (step == 0) != e->is_server;
		for (done = 0; done < TRANSFER; done += (size_t)n) {
			n = sending ? end_write(e, mine + done, TRANSFER - done)
				    : end_read(e, theirs + done, TRANSFER - done);
			if (n <= 0) {
				snprintf(e->err, sizeof(e->err), "%s failed at %zu: %s",
					 sending ? "write" : "read", done,
					 e->use_kts ? kts_error(e->kts) : "openssl");
				goto out;
			}
		}
	}
	digest(theirs, TRANSFER, got);
	if (memcmp(want, got, 32) != 0) {
		snprintf(e->err, sizeof(e->err), "received data does not match (sha256)");
		goto out;
	}
	/* Clean shutdown: close_notify out, then expect the peer's. */
	if (e->use_kts ? kts_close(e->kts) != 0 : SSL_shutdown(e->ssl) < 0) {
		snprintf(e->err, sizeof(e->err), "close failed: %s",
			 e->use_kts ? kts_error(e->kts) : "openssl");
		goto out;
	}
	n = end_read(e, theirs, 1);
	if (n != 0) {
		snprintf(e->err, sizeof(e->err), "expected close_notify, got %ld: %s", n,
			 e->use_kts ? kts_error(e->kts) : "openssl");
		goto out;
	}
	e->ok = 1;
out:
	free(mine);
	free(theirs);
	return NULL;
}

static void end_free(struct end *e)
{
	kts_free(e->kts);
	kts_config_free(e->cfg);
	SSL_free(e->ssl);
	SSL_CTX_free(e->ctx);
	close(e->fd);
}

static int run_case(int version, const struct suite *s, enum role role, int expect,
		    int counts[2])
{
	static const char *const role_name[] = {"", "server", "client", "both"};
	struct end ends[2] = {{.is_server = 1}, {.is_server = 0}};
	struct end *shown = role == KTS_CLIENT ? &ends[1] : &ends[0];
	pthread_t th[2];
	int fds[2], ok = 1;

	if (test_tcp_pair(fds) < 0) {
		perror("tcp_pair");
		return 0;
	}
	for (int i = 0; i < 2; i++) {
		ends[i].fd = fds[i];
		ends[i].version = version;
		ends[i].suite = s;
		ends[i].use_kts = (role & (i == 0 ? KTS_SERVER : KTS_CLIENT)) != 0;
		ends[i].tickets = 2;
		if (end_setup(&ends[i]) < 0)
			ok = 0;
	}
	for (int i = 0; ok && i < 2; i++)
		pthread_create(&th[i], NULL, run_end, &ends[i]);
	for (int i = 0; ok && i < 2; i++)
		pthread_join(th[i], NULL);
	/* TLS 1.3: the OpenSSL client must have read both tickets of a kts server
	 * (proves the kts server's TX sequence started after them). */
	if (role == KTS_SERVER && version == 13 && ends[1].tickets_seen != 2) {
		snprintf(ends[1].err, sizeof(ends[1].err), "client saw %d tickets, expected 2",
			 ends[1].tickets_seen);
		ok = 0;
	}
	for (int i = 0; i < 2; i++) {
		if (!ends[i].ok)
			ok = 0;
		if (ends[i].use_kts) {
			ok &= ends[i].path[KTS_TX] == expect && ends[i].path[KTS_RX] == expect;
			counts[0] += ends[i].path[KTS_TX] == KTS_PATH_KERNEL;
			counts[1] += ends[i].path[KTS_RX] == KTS_PATH_KERNEL;
		}
	}
	printf("CASE tls1%d %s %s tx=%s rx=%s %s\n", version - 10, s->name, role_name[role],
	       kts_path_name(shown->path[KTS_TX]), kts_path_name(shown->path[KTS_RX]),
	       ok ? "ok" : "FAIL");
	for (int i = 0; i < 2; i++) {
		if (ends[i].err[0])
			printf("# %s: %s\n", ends[i].is_server ? "server" : "client", ends[i].err);
		end_free(&ends[i]);
	}
	fflush(stdout);
	return ok;
}

int main(int argc, char **argv)
{
	int expect = test_expected_path(argc, argv), passed = 0, failed = 0, counts[2] = {0, 0};

	if (expect < 0) {
		fprintf(stderr, "usage: %s [--expect kernel|user|auto]\n", argv[0]);
		return 2;
	}
	test_cert_init();
	for (int version = 12; version <= 13; version++)
		for (size_t s = 0; s < sizeof(test_suites) / sizeof(test_suites[0]); s++)
			for (int role = KTS_SERVER; role <= KTS_BOTH; role++) {
				if (run_case(version, &test_suites[s], role, expect, counts))
					passed++;
				else
					failed++;
			}
	printf("%d passed, %d failed\n", passed, failed);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", counts[0], counts[1]);
	test_cert_free();
	return failed ? 1 : 0;
}
