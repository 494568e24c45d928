/* session_file.c - fuzz the client session file (lib/session_file.c) and
 * what kts does with the session it finds there.
 *
 * The input is the file's content; an input without "-----BEGIN" is taken as
 * the DER of one session and wrapped in a PEM block first, so the fuzzer can
 * reach the session's fields directly and not only through base64.
 *  1. kts_session_file_parse (the last complete block), and the session's
 *     fields kts and OpenSSL read next.
 *  2. When it parsed: the real read path. The content goes into a 0600 memfd
 *     given to kts_config_set_session_fd, and kts_client_session_offer runs
 *     (by the parity of the input's size) for a connection to "localhost"
 *     under the config's verification, or for one that verifies nothing and
 *     names no server. Checked: a session is only offered to the name it was
 *     made for, and only if it can resume.
 *  3. When one was offered, kts_handshake on a non-blocking socketpair: the
 *     ClientHello OpenSSL builds from it (ticket, PSK, ages) is written to the
 *     other end and read back; the handshake then waits for the server.
 * KTS_FUZZ_VERBOSE=1 says how far each input got.
 */
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "fuzz.h"
#include "internal.h"
#include "session_file.h"

#define NAME "localhost"
#define MAX_BEGINS 8 /* more: parsed, but not read through the file (see below) */

static struct kts_config *cfg;
static int file_fd = -1;
static int sv[2] = {-1, -1};
static int verbose; /* KTS_FUZZ_VERBOSE=1: say what each input reached */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	cfg = kts_config_new();
	FUZZ_CHECK(cfg);
	file_fd = memfd_create("kts-fuzz-session", MFD_CLOEXEC);
	FUZZ_CHECK(file_fd >= 0 && fchmod(file_fd, 0600) == 0);
	if (kts_config_set_session_fd(cfg, file_fd) != KTS_OK) {
		fprintf(stderr, "kts_config_set_session_fd: %s\n", kts_config_error(cfg));
		abort();
	}
	verbose = getenv("KTS_FUZZ_VERBOSE") != NULL;
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	return 0;
}

/* Read what the client sent; returns how many bytes. */
static ssize_t drain(int fd)
{
	char buf[4096];
	ssize_t n, total = 0;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	return total;
}

/* The file's content for this input (see the top); *len; free with free(). */
static char *content_of(const uint8_t *data, size_t size, size_t *len)
{
	BIO *bio;
	char *pem, *copy = NULL;
	long n;

	if (size == 0 || memmem(data, size, "-----BEGIN", 10)) {
		copy = malloc(size ? size : 1);
		FUZZ_CHECK(copy);
		memcpy(copy, data, size);
		*len = size;
		return copy;
	}
	bio = BIO_new(BIO_s_mem());
	FUZZ_CHECK(bio);
	FUZZ_CHECK(PEM_write_bio(bio, PEM_STRING_SSL_SESSION, "", data, (long)size) > 0);
	n = BIO_get_mem_data(bio, &pem);
	copy = malloc((size_t)n);
	FUZZ_CHECK(copy);
	memcpy(copy, pem, (size_t)n);
	*len = (size_t)n;
	BIO_free(bio);
	return copy;
}

/* The fields of a session read on the way to a handshake. */
static void look_at(SSL_SESSION *s)
{
	const char *host = SSL_SESSION_get0_hostname(s);
	const unsigned char *p;
	unsigned char master[SSL_MAX_MASTER_KEY_LENGTH];
	unsigned int ulen;
	size_t len;
	long t = SSL_SESSION_get_time(s), to = SSL_SESSION_get_timeout(s), end;

	if (host)
		FUZZ_CHECK(strlen(host) < 65536);
	(void)__builtin_add_overflow(t, to, &end); /* as a lifetime check would */
	(void)end;
	(void)SSL_SESSION_is_resumable(s);
	(void)SSL_SESSION_get_protocol_version(s);
	(void)SSL_SESSION_get0_cipher(s);
	(void)SSL_SESSION_get0_peer(s);
	p = SSL_SESSION_get0_id_context(s, &ulen);
	FUZZ_CHECK(ulen <= SSL_MAX_SID_CTX_LENGTH && (ulen == 0 || p));
	p = SSL_SESSION_get_id(s, &ulen);
	FUZZ_CHECK(ulen <= SSL_MAX_SSL_SESSION_ID_LENGTH && (ulen == 0 || p));
	FUZZ_CHECK(SSL_SESSION_get_master_key(s, master, sizeof(master)) <= sizeof(master));
	OPENSSL_cleanse(master, sizeof(master));
	SSL_SESSION_get0_ticket(s, &p, &len);
	(void)SSL_SESSION_get_ticket_lifetime_hint(s);
	(void)SSL_SESSION_get_max_early_data(s);
	SSL_SESSION_get0_alpn_selected(s, &p, &len);
}

/* kts_client_session_offer for a connection to name (NULL: none) that
 * verifies as the config says (verify) or not at all. Returns the connection
 * if it took a session, else frees it and returns NULL. */
static struct kts *offer(const char *name, int verify)
{
	struct kts *c = kts_client_new(cfg);
	SSL_SESSION *s;

	FUZZ_CHECK(c);
	if (name)
		FUZZ_CHECK(kts_set_server_name(c, name) == KTS_OK);
	if (!verify)
		c->verify = 0;
	FUZZ_CHECK(kts_client_session_offer(c) == KTS_OK);
	s = SSL_get_session(c->ssl);
	if (!s) {
		kts_free(c);
		return NULL;
	}
	/* Never offered to another name, never one that cannot resume. */
	if (name) {
		const char *host = SSL_SESSION_get0_hostname(s);
		FUZZ_CHECK(host && strcasecmp(host, name) == 0);
	}
	FUZZ_CHECK(SSL_SESSION_is_resumable(s));
	return c;
}

/* How many times "-----BEGIN" occurs in buf[0, len). */
static size_t begins(const char *buf, size_t len)
{
	size_t n = 0;
	const char *p = buf, *hit;

	while ((hit = memmem(p, len - (size_t)(p - buf), "-----BEGIN", 10)) != NULL) {
		n++;
		p = hit + 1;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len;
	char *content = content_of(data, size, &len);
	SSL_SESSION *sess = kts_session_file_parse(content, len);
	struct kts *c;

	/* Without a session the file path, reading the same bytes with the same
	 * parser (inputs are far below its 64 KiB tail), offers none: skip it,
	 * it costs another parse. So do files with many BEGIN lines (reading
	 * them was quadratic in their number until 5e4b579, fuzz/README.md),
	 * to keep the runs on files like real ones. */
	if (!sess || begins(content, len) > MAX_BEGINS) {
		if (sess) {
			look_at(sess);
			SSL_SESSION_free(sess);
		}
		free(content);
		ERR_clear_error();
		return 0;
	}
	look_at(sess);
	SSL_SESSION_free(sess);

	FUZZ_CHECK(ftruncate(file_fd, 0) == 0);
	FUZZ_CHECK(pwrite(file_fd, content, len, 0) == (ssize_t)len);
	free(content);
	/* One read per input: by the parity of its size, for the connection to
	 * NAME under the config's verification, or for one without either. */
	c = size % 2 ? offer(NULL, 0) : offer(NAME, 1);
	if (verbose)
		fprintf(stderr, "session_file: parsed, offered to %s: %d\n", size % 2 ? "(none)" : NAME,
			c != NULL);
	if (c) {
		int rc;

		FUZZ_CHECK(kts_attach(c, sv[0]) == KTS_OK);
		/* What kts_handshake's first step does besides the offer (the SNI;
		 * verification settings matter only once the server answers), so
		 * that it goes straight to SSL_connect: reading the file once more
		 * would only repeat the parse, the costliest part of a run. */
		if (c->server_name)
			FUZZ_CHECK(SSL_set_tlsext_host_name(c->ssl, c->server_name) == 1);
		c->prepared = 1;
		rc = kts_handshake(c);
		FUZZ_CHECK(rc == KTS_WANT_READ || rc < 0);
		if (verbose)
			fprintf(stderr, "session_file: handshake %d (%s), ClientHello %zd bytes\n", rc,
				rc == KTS_WANT_READ ? "waits for the server" : kts_error(c), drain(sv[1]));
		else
			drain(sv[1]);
		kts_free(c);
	}
	ERR_clear_error();
	return 0;
}
