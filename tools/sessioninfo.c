/* sessioninfo.c - see sessioninfo.h. */
#include "sessioninfo.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "session_file.h"
#include "timefmt.h"

static const char *version(int v)
{
	switch (v) {
	case TLS1_3_VERSION: return "TLS 1.3";
	case TLS1_2_VERSION: return "TLS 1.2";
	case TLS1_1_VERSION: return "TLS 1.1";
	case TLS1_VERSION: return "TLS 1.0";
	}
	return "an unknown version";
}

int sessioninfo_print(const char *path, int64_t now, FILE *f, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rc = 1;
	const SSL_CIPHER *cipher;
	const unsigned char *ticket;
	const char *host;
	SSL_SESSION *sess = NULL;
	int64_t made, timeout, ends;
	unsigned int ctx_len;
	size_t tlen = 0;
	char a[32], b[32];

	if (fd < 0 || kts_session_file_read(fd, &sess) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	if (!sess) {
		fprintf(f, "%s: no session (empty, or no complete session block)\n", path);
		fprintf(f, "can resume now: no\n");
		return 1;
	}
	cipher = SSL_SESSION_get0_cipher(sess);
	host = SSL_SESSION_get0_hostname(sess);
	made = (int64_t)SSL_SESSION_get_time(sess);
	timeout = (int64_t)SSL_SESSION_get_timeout(sess);
	ends = kts_session_ends(sess); /* the rule connections apply */
	fprintf(f, "%s: %s session for %s, cipher %s\n", path,
		version(SSL_SESSION_get_protocol_version(sess)), host ? host : "(no server name)",
		cipher ? SSL_CIPHER_get_name(cipher) : "?");
	fprintf(f, "made %s (%" PRId64 " s ago), lifetime %" PRId64 " s, until %s\n",
		timefmt_utc(made, a), now - made, timeout, timefmt_utc(made + timeout, b));
	if (SSL_SESSION_has_ticket(sess)) {
		unsigned long hint = SSL_SESSION_get_ticket_lifetime_hint(sess);

		SSL_SESSION_get0_ticket(sess, &ticket, &tlen);
		fprintf(f, "ticket: %zu bytes, lifetime %lu s (until %s)", tlen, hint,
			timefmt_utc(made + (int64_t)hint, b));
		if (tlen >= 16) /* the key name, sent in the clear; a kts server's starts with its keyrev */
			fprintf(f, ", key name %02x%02x%02x%02x... (keyrev %u if a kts server made it)",
				ticket[0], ticket[1], ticket[2], ticket[3],
				(unsigned)ticket[0] << 24 | (unsigned)ticket[1] << 16 |
					(unsigned)ticket[2] << 8 | ticket[3]);
		fputc('\n', f);
	} else {
		fprintf(f, "ticket: none (resumes by session ID)\n");
	}
	SSL_SESSION_get0_id_context(sess, &ctx_len);
	fprintf(f, "verification tag: %s\n",
		ctx_len == 32 ? "present (kts offers it only under the same verification rules)"
			      : "none (kts offers it only to connections that verify nothing)");
	if (!SSL_SESSION_is_resumable(sess))
		fprintf(f, "can resume now: no (the session is not resumable)\n");
	else if (made > now)
		fprintf(f, "can resume now: no (made in the future: the clock went back)\n");
	else if (ends < 0)
		fprintf(f, "can resume now: no (its times are garbage)\n");
	else if (now >= ends)
		fprintf(f, "can resume now: no (expired %" PRId64 " s ago)\n", now - ends);
	else {
		fprintf(f, "can resume now: yes (for %" PRId64 " s more)\n", ends - now);
		rc = 0;
	}
	SSL_SESSION_free(sess);
	return rc;
}
