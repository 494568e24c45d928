/* caller_io.c - fuzz the bytes a caller-owned-I/O server receives: garbage in
 * place of a ClientHello, and arbitrary records right behind a real client's
 * Finished (lib/caller_io.c: the record scan past the handshake, the feed
 * limit, decrypting what came early, the send queue).
 *
 * Input: byte 0 (bit 0: real handshake first, else the input is the whole
 * client stream; bits 1-7: receive size), then the bytes. The real
 * handshake runs against an in-memory OpenSSL client; the input follows its
 * Finished in the same stream. The fd is /dev/null, so the handoff stays in
 * userspace as on a kernel without kTLS. Checked: a receive never returns
 * more than its buffer, the feed limit is never 0 on a live connection, the
 * send queue stays bounded, a failed connection stays failed.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "fuzz.h"
#include "internal.h"
#include "testutil.h"

static struct kts_config *cfg;
static SSL_CTX *client_ctx;
static int null_fd;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	test_cert_init();
	cfg = test_kts_config(13, &test_suites[0], 1);
	client_ctx = test_ssl_ctx(13, &test_suites[0], 0);
	null_fd = open("/dev/null", O_RDWR);
	FUZZ_CHECK(cfg && client_ctx && null_fd >= 0);
	return 0;
}

/* "Send" what kts queued: the bytes go to the client, if there is one. */
static void drain_out(struct kts *k, BIO *to_client)
{
	struct kts_msg m;
	size_t n;

	while ((n = kts_out_msg(k, &m)) > 0) {
		FUZZ_CHECK(n <= 1u << 20);
		if (to_client)
			BIO_write(to_client, m.iov.iov_base, (int)n);
		if (kts_out_done(k, (ssize_t)n) != KTS_OK)
			break;
	}
}

/* Feed bytes as receives of at most chunk bytes within the feed limit. */
static ssize_t feed(struct kts *k, const uint8_t *p, size_t n, size_t chunk, BIO *to_client)
{
	static unsigned char buf[16384 + 512];
	ssize_t r = KTS_WANT_READ;

	while (n > 0 && (r == KTS_WANT_READ || r > 0)) {
		size_t limit = kts_feed_limit(k), take = n < chunk ? n : chunk;

		FUZZ_CHECK(limit > 0 || k->state == KTS_STATE_FAILED);
		if (limit == 0)
			break;
		take = take < limit ? take : limit;
		memcpy(buf, p, take);
		p += take;
		n -= take;
		r = kts_recv_done(k, buf, sizeof(buf), (ssize_t)take);
		FUZZ_CHECK(r <= (ssize_t)sizeof(buf));
		while (r > 0)
			r = kts_read(k, buf, sizeof(buf));
		drain_out(k, to_client);
		if (kts_handshake(k) == KTS_WANT_WRITE)
			drain_out(k, to_client);
	}
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kts *k;
	SSL *client = NULL;
	BIO *in = NULL, *out = NULL;
	size_t chunk;
	ssize_t r;

	if (size < 1)
		return 0;
	chunk = (size_t)(data[0] >> 1) * 131 + 1;
	k = kts_server_new(cfg);
	FUZZ_CHECK(k && kts_attach_caller_io(k, null_fd) == KTS_OK);
	if (data[0] & 1) {
		unsigned char buf[16384];

		client = SSL_new(client_ctx);
		in = BIO_new(BIO_s_mem());
		out = BIO_new(BIO_s_mem());
		BIO_set_mem_eof_return(in, -1);
		SSL_set_bio(client, in, out);
		SSL_set_connect_state(client);
		for (int i = 0; i < 8 && SSL_do_handshake(client) != 1; i++) {
			int n = BIO_read(out, buf, sizeof(buf));
			if (n > 0)
				feed(k, buf, (size_t)n, sizeof(buf), in);
		}
		/* The client's last flight, then the input as if it followed. */
		int n = BIO_read(out, buf, sizeof(buf));
		if (n > 0) {
			unsigned char *all = malloc((size_t)n + size - 1);
			FUZZ_CHECK(all);
			memcpy(all, buf, (size_t)n);
			memcpy(all + n, data + 1, size - 1);
			feed(k, all, (size_t)n + size - 1, chunk, in);
			free(all);
		}
	} else {
		feed(k, data + 1, size - 1, chunk, NULL);
	}
	if (k->state == KTS_STATE_FAILED) {
		int code = k->fail_code;
		unsigned char b[4] = {0};

		FUZZ_CHECK(kts_recv_done(k, b, sizeof(b), 1) == code);
		FUZZ_CHECK(kts_read(k, b, sizeof(b)) == code);
	}
	r = kts_recv_done(k, NULL, 0, 0); /* EOF */
	FUZZ_CHECK(r <= 0);
	kts_free(k);
	SSL_free(client);
	return 0;
}
