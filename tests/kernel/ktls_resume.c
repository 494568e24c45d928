/*
 * ktls_resume.c - session resumption with the kernel owning the records:
 * tickets that arrive through kernel RX end up in the client's session file,
 * tickets issued after the handoff go out through kernel TX, and each kind of
 * resumption (TLS 1.3 ticket, TLS 1.2 ticket, TLS 1.2 session ID) works with
 * both directions in the kernel.
 *
 * Output: "CASE <name> tx=<path> rx=<path> <ok|FAIL>" per case, then
 * "N passed, N failed" and "EXPECT TlsTxSw=N TlsRxSw=N" (see run-tests.sh).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "kts.h"
#include "testutil.h"

static int counts[2];
static char why[512];
static int expect = KTS_PATH_KERNEL;
static int seen[2]; /* the paths of the last kts connection checked */

/* Count the kts end's kernel directions and check they are what we expect. */
static int paths_ok(struct kts *k, const char *who)
{
	int tx = kts_offload(k, KTS_TX), rx = kts_offload(k, KTS_RX);

	seen[0] = tx;
	seen[1] = rx;
	counts[0] += tx == KTS_PATH_KERNEL;
	counts[1] += rx == KTS_PATH_KERNEL;
	if (tx != expect || rx != expect) {
		snprintf(why, sizeof(why), "%s: tx=%s rx=%s", who, kts_path_name(tx), kts_path_name(rx));
		return 0;
	}
	return 1;
}

/* The OpenSSL end of a connection runs in this thread. */
struct peer {
	SSL *ssl;
	int is_server;
	int ok;
	const char *send; /* written after the handshake, if set */
	int read_bytes;   /* read this many bytes after the handshake */
};

static void *peer_run(void *arg)
{
	struct peer *p = arg;
	char buf[64];

	if ((p->is_server ? SSL_accept(p->ssl) : SSL_connect(p->ssl)) != 1)
		return NULL;
	if (p->send && SSL_write(p->ssl, p->send, (int)strlen(p->send)) <= 0)
		return NULL;
	if (p->read_bytes && SSL_read(p->ssl, buf, p->read_bytes) != p->read_bytes)
		return NULL;
	p->ok = 1;
	return NULL;
}

/* One kts end against one OpenSSL end on a fresh loopback pair: handshake,
 * then the kts end reads (client) what the peer sends, or the peer reads what
 * kts writes. Returns 1 and the kts connection (caller frees) on success. */
static struct kts *connect_pair(struct kts_config *kcfg, int kts_is_server, SSL_CTX *octx,
				SSL_SESSION *offer, SSL **ossl_out, int fds[2])
{
	struct peer peer = {.is_server = !kts_is_server};
	struct kts *k = kts_is_server ? kts_server_new(kcfg) : kts_client_new(kcfg);
	pthread_t th;
	char buf[8];

	if (test_tcp_pair(fds) < 0 || !k)
		return snprintf(why, sizeof(why), "setup failed"), kts_free(k), NULL;
	kts_attach(k, fds[kts_is_server ? 0 : 1]);
	peer.ssl = SSL_new(octx);
	SSL_set_fd(peer.ssl, fds[kts_is_server ? 1 : 0]);
	if (offer)
		SSL_set_session(peer.ssl, offer);
	if (kts_is_server)
		peer.read_bytes = 2;
	else
		peer.send = "hi";
	pthread_create(&th, NULL, peer_run, &peer);
	if (kts_handshake(k) != KTS_OK)
		snprintf(why, sizeof(why), "kts handshake: %s", kts_error(k));
	else if (kts_is_server ? kts_write(k, "hi", 2) != 2 : kts_read(k, buf, 2) != 2)
		snprintf(why, sizeof(why), "kts i/o: %s", kts_error(k));
	pthread_join(th, NULL);
	if (!why[0] && !peer.ok)
		snprintf(why, sizeof(why), "OpenSSL peer failed");
	*ossl_out = peer.ssl;
	return k;
}

static void done_pair(struct kts *k, SSL *ssl, int fds[2])
{
	kts_free(k);
	/* Without this OpenSSL marks the session of a connection freed before a
	 * close_notify as not resumable. */
	SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(ssl);
	close(fds[0]);
	close(fds[1]);
}

/* TLS 1.3 client: the tickets of an OpenSSL server arrive after kernel RX took
 * over; kts must pass them to OpenSSL, which writes them to the session file;
 * the next connection resumes from the file, again in the kernel. */
static int case_client_file(void)
{
	const struct suite *s = &test_suites[0];
	SSL_CTX *octx = test_ssl_ctx(13, s, 1);
	struct kts_config *kcfg = test_kts_config(13, s, 0);
	char path[] = "/tmp/kts-session-XXXXXX";
	int fd = mkstemp(path), fds[2], ok = 0;
	struct stat st;
	struct kts *k;
	SSL *ossl;

	unlink(path);
	if (kts_config_set_session_fd(kcfg, fd) != KTS_OK) {
		snprintf(why, sizeof(why), "session fd: %s", kts_config_error(kcfg));
		goto out;
	}
	k = connect_pair(kcfg, 0, octx, NULL, &ossl, fds);
	ok = !why[0] && paths_ok(k, "first") && !kts_session_resumed(k);
	done_pair(k, ossl, fds);
	if (ok && (fstat(fd, &st) < 0 || st.st_size == 0)) {
		snprintf(why, sizeof(why), "session file empty after tickets via kernel RX");
		ok = 0;
	}
	if (!ok)
		goto out;
	k = connect_pair(kcfg, 0, octx, NULL, &ossl, fds);
	ok = !why[0] && paths_ok(k, "second");
	if (ok && !kts_session_resumed(k)) {
		snprintf(why, sizeof(why), "second connection did not resume from the file");
		ok = 0;
	}
	done_pair(k, ossl, fds);
out:
	close(fd);
	kts_config_free(kcfg);
	SSL_CTX_free(octx);
	return ok;
}

/* A config for a kts client that verifies (CA file ca, or the default store
 * if NULL) or not, names "localhost" and keeps sessions in fd. */
static struct kts_config *client_config(int version, int verify, const char *ca, int fd)
{
	struct kts_config *c = verify ? kts_config_new() : test_kts_config(version, &test_suites[0], 0);

	if (!c || kts_config_set_server_name(c, "localhost") != KTS_OK ||
	    (ca && kts_config_set_ca_file(c, ca) != KTS_OK) ||
	    kts_config_parse_protocols(c, version == 13 ? "1.3" : "1.2") != KTS_OK ||
	    kts_config_set_session_fd(c, fd) != KTS_OK) {
		snprintf(why, sizeof(why), "client config: %s", c ? kts_config_error(c) : "no memory");
		kts_config_free(c);
		return NULL;
	}
	return c;
}

/* Client: a session saved by a connection that verified nothing (tickets via
 * kernel RX) must never let a verifying one skip verification: against the
 * self-signed server the verifying client fails as a full handshake would.
 * A session it verified itself (CA = the server's certificate) resumes. */
static int case_client_unverified(int version)
{
	SSL_CTX *octx = test_ssl_ctx(version, &test_suites[0], 1);
	char path[] = "/tmp/kts-session-XXXXXX", ca[] = "/tmp/kts-ca-XXXXXX";
	int fd = mkstemp(path), cafd = mkstemp(ca), fds[2], ok = 0;
	struct kts_config *insecure = NULL, *system = NULL, *trusting = NULL;
	FILE *f = fdopen(cafd, "w");
	struct kts *k;
	SSL *ossl;

	unlink(path);
	if (!f || PEM_write_X509(f, test_cert()) != 1 || fclose(f) != 0 ||
	    !(insecure = client_config(version, 0, NULL, fd)) ||
	    !(system = client_config(version, 1, NULL, fd)) ||
	    !(trusting = client_config(version, 1, ca, fd)))
		goto out;
	k = connect_pair(insecure, 0, octx, NULL, &ossl, fds);
	ok = !why[0] && paths_ok(k, "insecure");
	done_pair(k, ossl, fds);
	if (ok && lseek(fd, 0, SEEK_END) <= 0)
		ok = !snprintf(why, sizeof(why), "insecure client saved no session");
	if (!ok)
		goto out;
	k = connect_pair(system, 0, octx, NULL, &ossl, fds);
	ok = strstr(why, "certificate") && !kts_session_resumed(k);
	done_pair(k, ossl, fds);
	if (!ok) {
		char was[sizeof(why)];

		snprintf(was, sizeof(was), "%s", why[0] ? why : "resumed and read the data");
		snprintf(why, sizeof(why), "verifying client after an unverified session: %.400s", was);
		goto out;
	}
	why[0] = '\0';
	for (int i = 0; ok && i < 2; i++) {
		k = connect_pair(trusting, 0, octx, NULL, &ossl, fds);
		ok = !why[0] && paths_ok(k, "trusting");
		if (ok && kts_session_resumed(k) != i)
			ok = !snprintf(why, sizeof(why), "trusting client, connection %d: resumed=%d",
				       i + 1, kts_session_resumed(k));
		done_pair(k, ossl, fds);
	}
out:
	close(fd);
	unlink(ca);
	kts_config_free(insecure);
	kts_config_free(system);
	kts_config_free(trusting);
	SSL_CTX_free(octx);
	return ok;
}

static int case_client_unverified_tls13(void) { return case_client_unverified(13); }
static int case_client_unverified_tls12(void) { return case_client_unverified(12); }

/* Server: resumption on, the kernel owns TX; the OpenSSL client collects the
 * tickets it gets (including one kts_issue_ticket sends after the handoff,
 * through kernel TX) and resumes with the last one. */
struct tickets {
	SSL_SESSION *last;
	int n;
};

static int keep_ticket(SSL *ssl, SSL_SESSION *sess)
{
	struct tickets *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));

	SSL_SESSION_free(t->last);
	t->last = sess;
	t->n++;
	return 1; /* we keep the reference */
}

/* kts_config_set_release_openssl: OpenSSL's state is gone once the kernel
 * owns both directions, and what the connection reports does not change. */
static int released_ok(struct kts *k, int version)
{
	const char *want = version == 13 ? "TLSv1.3" : "TLSv1.2";
	int rc;

	if (expect != KTS_PATH_KERNEL)
		return kts_ssl(k) != NULL ||
		       (snprintf(why, sizeof(why), "userspace connection lost its SSL"), 0);
	if (kts_ssl(k))
		return snprintf(why, sizeof(why), "SSL kept after the handoff"), 0;
	if (!kts_version(k) || strcmp(kts_version(k), want) != 0 || !kts_cipher(k))
		return snprintf(why, sizeof(why), "released: version %s cipher %s",
				kts_version(k) ? kts_version(k) : "NULL",
				kts_cipher(k) ? kts_cipher(k) : "NULL"), 0;
	rc = kts_issue_ticket(k);
	if (rc != KTS_ERR_STATE || !strstr(kts_error(k), "released"))
		return snprintf(why, sizeof(why), "issue ticket after release: %d '%s'", rc,
				kts_error(k)), 0;
	return 1;
}

/* A forged record fails the connection; the session it resumed is then
 * dropped from the cache (RFC 5246 7.2.2), with or without its SSL. */
static int fail_with_forged_record(struct kts *k, int fds[2])
{
	unsigned char rec[5 + 32] = {23, 3, 3, 0, 32};
	char buf[8];

	if (write(fds[1], rec, sizeof(rec)) != (ssize_t)sizeof(rec))
		return snprintf(why, sizeof(why), "writing the forged record failed"), 0;
	if (kts_read(k, buf, sizeof(buf)) >= 0)
		return snprintf(why, sizeof(why), "kts read a forged record"), 0;
	return 1;
}

static int case_server(int version, int issue_late, int by_session_id, int release)
{
	const struct suite *s = &test_suites[1];
	struct kts_config *kcfg = test_kts_config(version, s, 1);
	SSL_CTX *octx = test_ssl_ctx(version, s, 0);
	struct tickets t = {NULL, 0};
	int fds[2], ok = 0, before;
	struct kts *k;
	SSL *ossl;

	SSL_CTX_set_app_data(octx, &t);
	SSL_CTX_set_session_cache_mode(octx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(octx, keep_ticket);
	if (by_session_id) {
		SSL_CTX_set_options(octx, SSL_OP_NO_TICKET);
		if (kts_config_set_session_cache(kcfg, 64) != KTS_OK)
			return snprintf(why, sizeof(why), "cache: %s", kts_config_error(kcfg)), 0;
	}
	kts_config_set_release_openssl(kcfg, release);
	if (kts_config_set_session_lifetime(kcfg, 3600) != KTS_OK) {
		snprintf(why, sizeof(why), "lifetime: %s", kts_config_error(kcfg));
		goto out;
	}
	k = connect_pair(kcfg, 1, octx, NULL, &ossl, fds);
	ok = !why[0] && paths_ok(k, "first") && (!release || released_ok(k, version));
	before = t.n;
	if (ok && issue_late) {
		char buf[8];
		if (kts_issue_ticket(k) != KTS_OK) {
			snprintf(why, sizeof(why), "kts_issue_ticket: %s", kts_error(k));
			ok = 0;
		}
		/* The client processes the new ticket when it next reads. */
		kts_write(k, "x", 1);
		if (ok && (SSL_read(ossl, buf, 1) != 1 || t.n != before + 1)) {
			snprintf(why, sizeof(why), "client got %d tickets after the late one, want %d",
				 t.n, before + 1);
			ok = 0;
		}
	}
	done_pair(k, ossl, fds);
	if (ok && !t.last) {
		snprintf(why, sizeof(why), "client got no session to resume");
		ok = 0;
	}
	if (!ok)
		goto out;
	k = connect_pair(kcfg, 1, octx, t.last, &ossl, fds);
	ok = !why[0] && paths_ok(k, "second");
	if (ok && !kts_session_resumed(k)) {
		snprintf(why, sizeof(why), "the client's session did not resume");
		ok = 0;
	}
	ok = ok && (!release || released_ok(k, version));
	ok = ok && (!by_session_id || fail_with_forged_record(k, fds));
	done_pair(k, ossl, fds);
	if (ok && by_session_id) {
		k = connect_pair(kcfg, 1, octx, t.last, &ossl, fds);
		ok = !why[0] && paths_ok(k, "after the failure");
		if (ok && kts_session_resumed(k)) {
			snprintf(why, sizeof(why), "a session whose connection failed resumed");
			ok = 0;
		}
		done_pair(k, ossl, fds);
	}
out:
	SSL_SESSION_free(t.last);
	SSL_CTX_free(octx);
	kts_config_free(kcfg);
	return ok;
}

/* kts on both ends, the kernel owning everything: the client's session file
 * resumes on the server; after the server adds a newer ticket key the old
 * ticket still resumes and the file gets a renewed ticket. */
static void *kts_server_side(void *arg)
{
	struct kts *k = arg;
	char buf[2];

	if (kts_handshake(k) != KTS_OK || kts_write(k, "hi", 2) != 2 || kts_read(k, buf, 2) != 2)
		return NULL;
	return k;
}

static int kts_both(struct kts_config *scfg, struct kts_config *ccfg, int *resumed)
{
	struct kts *srv = kts_server_new(scfg), *cli = kts_client_new(ccfg);
	int fds[2], ok = 0;
	void *srv_ok = NULL;
	pthread_t th;
	char buf[2];

	if (!srv || !cli || test_tcp_pair(fds) < 0) {
		snprintf(why, sizeof(why), "setup failed");
		kts_free(srv);
		kts_free(cli);
		return 0;
	}
	kts_attach(srv, fds[0]);
	kts_attach(cli, fds[1]);
	pthread_create(&th, NULL, kts_server_side, srv);
	/* The client reads first: TLS 1.3 tickets come in ahead of the data. */
	if (kts_handshake(cli) != KTS_OK || kts_read(cli, buf, 2) != 2 || kts_write(cli, "ok", 2) != 2)
		snprintf(why, sizeof(why), "client: %s", kts_error(cli));
	pthread_join(th, &srv_ok);
	if (!why[0] && !srv_ok)
		snprintf(why, sizeof(why), "server: %s", kts_error(srv));
	if (!why[0])
		ok = paths_ok(srv, "server") && paths_ok(cli, "client");
	*resumed = kts_session_resumed(cli) && kts_session_resumed(srv);
	kts_close(cli);
	kts_close(srv);
	kts_free(srv);
	kts_free(cli);
	close(fds[0]);
	close(fds[1]);
	return ok;
}

/* The session the file holds now: its last PEM block (kts appends, then compacts). */
static int file_bytes(int fd, char *buf, size_t len)
{
	static const char begin[] = "-----BEGIN SSL SESSION PARAMETERS-----";
	ssize_t n = pread(fd, buf, len - 1, 0);
	char *last = NULL;

	buf[n > 0 ? n : 0] = '\0';
	for (char *p = strstr(buf, begin); p; p = strstr(p + 1, begin))
		last = p;
	if (last)
		memmove(buf, last, strlen(last) + 1);
	return last != NULL;
}

static int case_both(int version)
{
	const struct suite *s = &test_suites[2];
	struct kts_config *scfg = test_kts_config(version, s, 1);
	struct kts_config *ccfg = test_kts_config(version, s, 0);
	unsigned char key1[KTS_TICKET_KEY_LEN], key2[KTS_TICKET_KEY_LEN];
	static char before[65536], after[65536];
	char path[] = "/tmp/kts-session-XXXXXX";
	int fd = mkstemp(path), resumed = 0, ok = 0;

	unlink(path);
	memset(key1, 0x11, sizeof(key1));
	memset(key2, 0x22, sizeof(key2));
	if (kts_config_set_session_lifetime(scfg, 3600) || kts_config_add_ticket_key(scfg, 1, key1, sizeof(key1)) ||
	    kts_config_set_session_fd(ccfg, fd)) {
		snprintf(why, sizeof(why), "config: %s / %s", kts_config_error(scfg), kts_config_error(ccfg));
		goto out;
	}
	if (!kts_both(scfg, ccfg, &resumed) || resumed || !file_bytes(fd, before, sizeof(before))) {
		if (!why[0])
			snprintf(why, sizeof(why), "first connection: resumed=%d or no session saved", resumed);
		goto out;
	}
	if (!kts_both(scfg, ccfg, &resumed) || !resumed) {
		if (!why[0])
			snprintf(why, sizeof(why), "second connection did not resume");
		goto out;
	}
	/* Rotation: key 2 now encrypts; the key-1 ticket resumes and is renewed. */
	file_bytes(fd, before, sizeof(before));
	if (kts_config_add_ticket_key(scfg, 2, key2, sizeof(key2)) != KTS_OK ||
	    !kts_both(scfg, ccfg, &resumed) || !resumed) {
		if (!why[0])
			snprintf(why, sizeof(why), "after rotation: did not resume (%s)", kts_config_error(scfg));
		goto out;
	}
	file_bytes(fd, after, sizeof(after));
	ok = strcmp(before, after) != 0;
	if (!ok)
		snprintf(why, sizeof(why), "no renewed ticket in the session file after rotation");
out:
	close(fd);
	kts_config_free(scfg);
	kts_config_free(ccfg);
	return ok;
}

static int case_both_tls13(void) { return case_both(13); }
static int case_both_tls12(void) { return case_both(12); }

static int case_tls13_ticket(void) { return case_server(13, 0, 0, 0); }
static int case_tls13_late_ticket(void) { return case_server(13, 1, 0, 0); }
static int case_tls12_ticket(void) { return case_server(12, 0, 0, 0); }
static int case_tls12_session_id(void) { return case_server(12, 0, 1, 0); }
static int case_tls13_released(void) { return case_server(13, 0, 0, 1); }
static int case_tls12_ticket_released(void) { return case_server(12, 0, 0, 1); }
static int case_tls12_session_id_released(void) { return case_server(12, 0, 1, 1); }

static const struct {
	const char *name;
	int (*run)(void);
} cases[] = {
	{"resume-client-file-tls13", case_client_file},
	{"resume-client-unverified-tls13", case_client_unverified_tls13},
	{"resume-client-unverified-tls12", case_client_unverified_tls12},
	{"resume-server-ticket-tls13", case_tls13_ticket},
	{"resume-server-late-ticket-tls13", case_tls13_late_ticket},
	{"resume-server-ticket-tls12", case_tls12_ticket},
	{"resume-server-session-id-tls12", case_tls12_session_id},
	{"resume-server-released-tls13", case_tls13_released},
	{"resume-server-ticket-released-tls12", case_tls12_ticket_released},
	{"resume-server-session-id-released-tls12", case_tls12_session_id_released},
	{"resume-both-rotation-tls13", case_both_tls13},
	{"resume-both-rotation-tls12", case_both_tls12},
};

int main(int argc, char **argv)
{
	int passed = 0, failed = 0;

	expect = test_expected_path(argc, argv);
	if (expect < 0) {
		fprintf(stderr, "usage: %s [--expect kernel|user|auto]\n", argv[0]);
		return 2;
	}
	test_cert_init();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ok;

		why[0] = '\0';
		seen[0] = seen[1] = KTS_PATH_NONE;
		ok = cases[i].run();
		printf("CASE %s tx=%s rx=%s %s\n", cases[i].name, kts_path_name(seen[0]),
		       kts_path_name(seen[1]), ok ? "ok" : "FAIL");
		if (!ok)
			printf("# %s: %s\n", cases[i].name, why);
		fflush(stdout);
		ok ? passed++ : failed++;
	}
	printf("%d passed, %d failed\n", passed, failed);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", counts[0], counts[1]);
	test_cert_free();
	return failed ? 1 : 0;
}
