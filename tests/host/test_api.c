/*
 * test_api.c - the public API on this machine's kernel, in one process: a kts
 * server and a kts client on a loopback pair, driven on non-blocking sockets
 * from a single thread. Verification, ALPN, policies, state errors, truncation
 * and sendfile, each with the message a caller would see.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>

#include "kts.h"
#include "testutil.h"

struct pair {
	int fds[2]; /* [0] server, [1] client */
	struct kts_config *scfg, *ccfg;
	struct kts *s, *c;
	int saw_want; /* a handshake step returned KTS_WANT_* */
	const char *client_name; /* per-connection server name, if set */
};

static char ca_path[] = "/tmp/kts-test-ca-XXXXXX";

static int group_setup(void **state)
{
	int fd;
	BIO *b;

	(void)state;
	test_cert_init();
	fd = mkstemp(ca_path);
	if (fd < 0)
		return -1;
	b = BIO_new_fd(fd, BIO_CLOSE);
	PEM_write_bio_X509(b, test_cert());
	BIO_free(b);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	unlink(ca_path);
	test_cert_free();
	return 0;
}

static void nonblocking(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A TLS 1.3 server and a client that trusts it and expects "localhost". */
static void pair_new(struct pair *p)
{
	memset(p, 0, sizeof(*p));
	assert_int_equal(test_tcp_pair(p->fds), 0);
	nonblocking(p->fds[0]);
	nonblocking(p->fds[1]);
	p->scfg = test_kts_config(13, &test_suites[0], 1);
	p->ccfg = kts_config_new();
	assert_non_null(p->scfg);
	assert_non_null(p->ccfg);
	assert_int_equal(kts_config_set_ca_file(p->ccfg, ca_path), KTS_OK);
	assert_int_equal(kts_config_set_server_name(p->ccfg, "localhost"), KTS_OK);
}

/* Create the connections and step both handshakes until neither wants I/O.
 * Returns the client's result; the server's goes to *srv_rc. */
static int pair_handshake(struct pair *p, int *srv_rc)
{
	int rs = KTS_WANT_READ, rc = KTS_WANT_READ;

	p->s = kts_server_new(p->scfg);
	p->c = kts_client_new(p->ccfg);
	if (p->client_name)
		assert_int_equal(kts_set_server_name(p->c, p->client_name), KTS_OK);
	assert_int_equal(kts_attach(p->s, p->fds[0]), KTS_OK);
	assert_int_equal(kts_attach(p->c, p->fds[1]), KTS_OK);
	for (int i = 0; i < 10000 && (rs < 0 || rc < 0); i++) {
		if (rc == KTS_WANT_READ || rc == KTS_WANT_WRITE)
			rc = kts_handshake(p->c);
		if (rs == KTS_WANT_READ || rs == KTS_WANT_WRITE)
			rs = kts_handshake(p->s);
		if (rc == KTS_WANT_READ || rs == KTS_WANT_READ)
			p->saw_want = 1;
		if ((rc != KTS_WANT_READ && rc != KTS_WANT_WRITE) &&
		    (rs != KTS_WANT_READ && rs != KTS_WANT_WRITE))
			break;
		usleep(100);
	}
	if (srv_rc)
		*srv_rc = rs;
	return rc;
}

static void pair_free(struct pair *p)
{
	kts_free(p->s);
	kts_free(p->c);
	kts_config_free(p->scfg);
	kts_config_free(p->ccfg);
	close(p->fds[0]);
	close(p->fds[1]);
}

/* Read exactly len bytes, polling a non-blocking connection. */
static void read_exact(struct kts *k, char *buf, size_t len)
{
	size_t got = 0;

	for (int i = 0; got < len && i < 100000; i++) {
		ssize_t n = kts_read(k, buf + got, len - got);
		if (n == KTS_WANT_READ) {
			usleep(100);
			continue;
		}
		if (n <= 0)
			fail_msg("read: %zd %s", n, kts_error(k));
		got += (size_t)n;
	}
	assert_int_equal(got, len);
}

/* Next read result that is not KTS_WANT_READ. */
static ssize_t read_settled(struct kts *k, char *buf, size_t len)
{
	ssize_t n = KTS_WANT_READ;

	for (int i = 0; n == KTS_WANT_READ && i < 100000; i++) {
		n = kts_read(k, buf, len);
		if (n == KTS_WANT_READ)
			usleep(100);
	}
	return n;
}

#define assert_msg(k, needle)                                                        \
	do {                                                                         \
		if (!strstr(kts_error(k), (needle)))                                 \
			fail_msg("message '%s' lacks '%s'", kts_error(k), (needle)); \
	} while (0)

static void test_nonblocking_roundtrip(void **state)
{
	struct pair p;
	char buf[6];
	int srv;

	(void)state;
	pair_new(&p);
	assert_int_equal(pair_handshake(&p, &srv), KTS_OK);
	assert_int_equal(srv, KTS_OK);
	assert_true(p.saw_want);
	assert_string_equal(kts_version(p.c), "TLSv1.3");
	assert_int_equal(kts_read(p.c, buf, sizeof(buf)), KTS_WANT_READ);
	assert_int_equal(kts_write(p.c, "hello", 5), 5);
	read_exact(p.s, buf, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(kts_write(p.s, "", 0), 0);
	/* close_notify both ways: EOF is 0, and stays 0. */
	assert_int_equal(kts_close(p.c), KTS_OK);
	assert_int_equal(read_settled(p.s, buf, sizeof(buf)), 0);
	assert_int_equal(kts_read(p.s, buf, sizeof(buf)), 0);
	assert_int_equal(kts_close(p.s), KTS_OK);
	assert_int_equal(read_settled(p.c, buf, sizeof(buf)), 0);
	assert_int_equal(kts_write(p.c, "x", 1), KTS_ERR_STATE);
	assert_msg(p.c, "already closed");
	pair_free(&p);
}

static void test_path_matches_kernel(void **state)
{
	struct pair p;
	int want = test_host_has_ktls() ? KTS_PATH_KERNEL : KTS_PATH_USER;

	(void)state;
	pair_new(&p);
	assert_int_equal(pair_handshake(&p, NULL), KTS_OK);
	for (int dir = KTS_TX; dir <= KTS_RX; dir++) {
		assert_int_equal(kts_offload(p.c, dir), want);
		assert_int_equal(kts_offload(p.s, dir), want);
		if (want == KTS_PATH_USER)
			assert_non_null(strstr(kts_offload_reason(p.c, dir), "tls module"));
		else
			assert_null(kts_offload_reason(p.c, dir));
	}
	pair_free(&p);
}

static void test_policy_off_and_require(void **state)
{
	struct pair p;
	int srv, rc;

	(void)state;
	pair_new(&p);
	kts_config_set_offload(p.ccfg, KTS_OFFLOAD_OFF);
	assert_int_equal(pair_handshake(&p, NULL), KTS_OK);
	assert_int_equal(kts_offload(p.c, KTS_TX), KTS_PATH_USER);
	assert_string_equal(kts_offload_reason(p.c, KTS_RX), "offload policy is off");
	pair_free(&p);

	pair_new(&p);
	kts_config_set_offload(p.scfg, KTS_OFFLOAD_REQUIRE);
	rc = pair_handshake(&p, &srv);
	(void)rc;
	if (test_host_has_ktls()) {
		assert_int_equal(srv, KTS_OK);
	} else {
		assert_int_equal(srv, KTS_ERR_OFFLOAD);
		assert_msg(p.s, "offload required but TX stays in userspace: kernel has no tls module");
		/* the failure sticks */
		assert_int_equal(kts_write(p.s, "x", 1), KTS_ERR_OFFLOAD);
	}
	pair_free(&p);
}

static void test_verification(void **state)
{
	struct pair p;

	(void)state;
	pair_new(&p); /* wrong name */
	kts_config_set_server_name(p.ccfg, "other.example");
	assert_int_equal(pair_handshake(&p, NULL), KTS_ERR_TLS);
	assert_msg(p.c, "certificate verification failed: hostname mismatch");
	pair_free(&p);

	pair_new(&p); /* untrusted: the system store does not know our certificate */
	kts_config_free(p.ccfg);
	p.ccfg = kts_config_new();
	kts_config_set_server_name(p.ccfg, "localhost");
	assert_int_equal(pair_handshake(&p, NULL), KTS_ERR_TLS);
	assert_msg(p.c, "certificate verification failed: self-signed certificate");
	pair_free(&p);

	pair_new(&p); /* name checking with no name to check */
	kts_config_free(p.ccfg);
	p.ccfg = kts_config_new();
	kts_config_set_ca_file(p.ccfg, ca_path);
	assert_int_equal(pair_handshake(&p, NULL), KTS_ERR_ARG);
	assert_msg(p.c, "needs one");
	pair_free(&p);

	pair_new(&p); /* the per-connection name overrides the config's */
	kts_config_set_server_name(p.ccfg, "other.example");
	p.client_name = "localhost";
	assert_int_equal(pair_handshake(&p, NULL), KTS_OK);
	assert_int_equal(kts_set_server_name(p.c, "late"), KTS_ERR_STATE);
	pair_free(&p);
}

static void test_alpn(void **state)
{
	struct pair p;
	int srv;

	(void)state;
	pair_new(&p);
	kts_config_set_alpn(p.scfg, "h2,http/1.1");
	kts_config_set_alpn(p.ccfg, "http/1.1");
	assert_int_equal(pair_handshake(&p, NULL), KTS_OK);
	assert_string_equal(kts_alpn(p.c), "http/1.1");
	assert_string_equal(kts_alpn(p.s), "http/1.1");
	pair_free(&p);

	pair_new(&p);
	kts_config_set_alpn(p.scfg, "h2");
	kts_config_set_alpn(p.ccfg, "http/1.1");
	assert_int_equal(pair_handshake(&p, &srv), KTS_ERR_TLS);
	assert_msg(p.c, "no application protocol");
	pair_free(&p);

	pair_new(&p); /* no ALPN at all */
	assert_int_equal(pair_handshake(&p, NULL), KTS_OK);
	assert_null(kts_alpn(p.c));
	pair_free(&p);
}

static void test_state_errors(void **state)
{
	struct pair p;

	(void)state;
	pair_new(&p);
	p.s = kts_server_new(p.scfg);
	assert_int_equal(kts_close(p.s), KTS_ERR_STATE);
	assert_int_equal(kts_attach(p.s, p.fds[0]), KTS_OK);
	assert_int_equal(kts_attach(p.s, p.fds[0]), KTS_ERR_STATE);
	assert_msg(p.s, "already attached");
	assert_int_equal(kts_set_server_name(p.s, "x"), KTS_ERR_STATE);
	assert_int_equal(kts_offload(p.s, KTS_TX), KTS_PATH_NONE);
	assert_null(kts_version(p.s));
	kts_free(p.s);
	p.s = NULL;
	pair_free(&p);
}

static void test_truncation(void **state)
{
	struct pair p;
	char buf[8];

	(void)state;
	pair_new(&p);
	assert_int_equal(pair_handshake(&p, NULL), KTS_OK);
	shutdown(p.fds[0], SHUT_WR); /* the server's TCP FIN, no close_notify */
	assert_int_equal(read_settled(p.c, buf, sizeof(buf)), KTS_ERR_TRUNCATED);
	assert_msg(p.c, "without close_notify");
	pair_free(&p);
}

static void test_sendfile(void **state)
{
	static char data[200000], got[sizeof(data)];
	char path[] = "/tmp/kts-test-file-XXXXXX";
	int fd = mkstemp(path);
	struct pair p;
	off_t off = 0;
	ssize_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 31 + 7);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, data, sizeof(data)), sizeof(data));
	pair_new(&p);
	assert_int_equal(pair_handshake(&p, NULL), KTS_OK);
	/* Part of the file, from an offset, in one call; the socket buffer holds it. */
	off = 1000;
	n = kts_sendfile(p.s, fd, &off, 50000);
	assert_int_equal(n, 50000);
	assert_int_equal(off, 51000);
	read_exact(p.c, got, 50000);
	assert_memory_equal(got, data + 1000, 50000);
	/* Past the end of the file: only what is there. */
	off = sizeof(data) - 10;
	assert_int_equal(kts_sendfile(p.s, fd, &off, 100), 10);
	read_exact(p.c, got, 10);
	assert_memory_equal(got, data + sizeof(data) - 10, 10);
	assert_int_equal(kts_sendfile(p.s, fd, NULL, 1), KTS_ERR_ARG);
	close(fd);
	pair_free(&p);
}

static void test_blocking_timeout(void **state)
{
	struct timeval limit = {.tv_usec = 100000};
	struct pair p;
	char buf[4];

	(void)state;
	pair_new(&p);
	assert_int_equal(pair_handshake(&p, NULL), KTS_OK);
	fcntl(p.fds[1], F_SETFL, fcntl(p.fds[1], F_GETFL) & ~O_NONBLOCK);
	setsockopt(p.fds[1], SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
	assert_int_equal(kts_read(p.c, buf, sizeof(buf)), KTS_WANT_READ);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nonblocking_roundtrip),
		cmocka_unit_test(test_path_matches_kernel),
		cmocka_unit_test(test_policy_off_and_require),
		cmocka_unit_test(test_verification),
		cmocka_unit_test(test_alpn),
		cmocka_unit_test(test_state_errors),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_sendfile),
		cmocka_unit_test(test_blocking_timeout),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
