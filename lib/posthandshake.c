/*
 * posthandshake.c - handshake messages after the handoff: TLS 1.3 tickets and
 * KeyUpdate, and TLS 1.2 renegotiation (refused). Those that kts's own
 * userspace RX reads (softrx.c) are reassembled here too.
 *
 * Once the kernel owns a direction, OpenSSL never sees that socket direction
 * again, but some handshake messages still concern it:
 *   - a NewSessionTicket read by the kernel must reach OpenSSL, which turns it
 *     into a session (and the session file);
 *   - a KeyUpdate read by the kernel means new keys for kernel RX (and, if the
 *     peer asks, for kernel TX), and OpenSSL's read side must follow;
 *   - a ticket the server issues late is written by OpenSSL but must go out
 *     through kernel TX.
 * kts moves these messages between OpenSSL and the kernel as plaintext. OpenSSL
 * only speaks records, so kts seals (or opens) the one record with the key and
 * sequence number OpenSSL's side expects. OpenSSL's record counters
 * (c->ossl_seq) and the kernel's advance independently: the kernel's count
 * records on the wire, OpenSSL's count records OpenSSL produced or consumed.
 */
#include <errno.h>
#include <linux/tls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "internal.h"
#include "kernel.h"
#include "record.h"

/* A message is handed to OpenSSL as one record, so it must fit one. */
#define HS_MAX KTS_RECORD_MAX_PLAIN

/* The receive buffer only: queued TX bytes stay until they are sent. */
static void free_rx(struct kts *c)
{
	if (c->hs)
		OPENSSL_clear_free(c->hs, HS_MAX);
	c->hs = NULL;
	c->hs_len = 0;
}

void kts_post_handshake_free(struct kts *c)
{
	free_rx(c);
	if (c->tx_hs)
		OPENSSL_clear_free(c->tx_hs, HS_MAX);
	c->tx_hs = NULL;
	c->tx_hs_len = 0;
}

struct kts_secrets *kts_secrets_get(struct kts *c)
{
	if (!c->sec)
		c->sec = OPENSSL_zalloc(sizeof(*c->sec));
	return c->sec;
}

void kts_secrets_wipe(struct kts *c)
{
	if (c->sec)
		OPENSSL_cleanse(c->sec, sizeof(*c->sec));
}

void kts_secrets_free(struct kts *c)
{
	OPENSSL_clear_free(c->sec, sizeof(*c->sec));
	c->sec = NULL;
}

static int kernel_rekey(struct kts *c, int dir, unsigned char *secret);

/* Queue one handshake message for kernel TX. */
static int queue_tx(struct kts *c, const unsigned char *msg, size_t len)
{
	if (!c->tx_hs && !(c->tx_hs = malloc(HS_MAX)))
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "out of memory");
	if (len > HS_MAX - c->tx_hs_len)
		return kts_fail_fatal(c, KTS_ERR_TLS, "handshake messages to send do not fit");
	memcpy(c->tx_hs + c->tx_hs_len, msg, len);
	c->tx_hs_len += len;
	return KTS_OK;
}

size_t kts_tx_next(const struct kts *c, unsigned char *type, const unsigned char **data)
{
	if (c->tx_alert_pending && c->tx_alert[0] == ALERT_FATAL) {
		*type = KTS_RECORD_ALERT; /* nothing else goes out after it */
		*data = c->tx_alert;
		return 2;
	}
	if (c->tx_hs_len > 0) {
		*type = KTS_RECORD_HANDSHAKE;
		*data = c->tx_hs;
		return c->tx_hs_len;
	}
	if (c->tx_alert_pending) {
		*type = KTS_RECORD_ALERT;
		*data = c->tx_alert;
		return 2;
	}
	return 0;
}

int kts_tx_sent(struct kts *c, unsigned char type, size_t n)
{
	if (type == KTS_RECORD_ALERT) {
		if (c->tx_alert[0] == ALERT_FATAL)
			c->tx_closed = 1;
		c->tx_alert_pending = 0;
	} else {
		/* A short send left a fragment out; the rest follows as its own
		 * record. A refusal may have dropped the queue meanwhile. */
		if (n > c->tx_hs_len)
			n = c->tx_hs_len;
		memmove(c->tx_hs, c->tx_hs + n, c->tx_hs_len - n);
		c->tx_hs_len -= n;
	}
	if (c->tx_rekey_pending && !kts_tx_queued(c)) {
		/* Our KeyUpdate is out: from here on the kernel sends under the next key. */
		int err = kernel_rekey(c, KTS_TX, c->sec->tx);
		c->tx_rekey_pending = 0;
		if (err < 0)
			return kts_fail_fatal(c, KTS_ERR_SYS, "installing updated TX keys: %s",
					      strerror(-err));
	}
	return KTS_OK;
}

int kts_post_handshake_flush(struct kts *c)
{
	unsigned char type;
	const unsigned char *data;
	size_t len;

	/* The caller sends what is queued (kts_out_msg). */
	if (c->caller_io)
		return c->state == KTS_STATE_FAILED ? c->fail_code : KTS_OK;
	while ((len = kts_tx_next(c, &type, &data)) > 0) {
		int fatal = type == KTS_RECORD_ALERT && data[0] == ALERT_FATAL;
		ssize_t n = kts_kernel_send_record(c->fd, type, data, len, fatal ? MSG_DONTWAIT : 0);
		int rc;

		if (fatal) {
			/* Best effort: after an RX authentication failure the kernel has
			 * marked the socket failed and refuses it; the peer sees the close. */
			kts_tx_sent(c, type, len);
			return c->state == KTS_STATE_FAILED ? c->fail_code : KTS_OK;
		}
		if (n == -EINTR)
			continue;
		if (n == -EAGAIN)
			return KTS_WANT_WRITE;
		/* Two bytes of an alert go in one record or not at all. */
		if (n <= 0 || (type == KTS_RECORD_ALERT && n != 2))
			return kts_fail_fatal(c, KTS_ERR_SYS, "sending %s: %s",
					      type == KTS_RECORD_ALERT ? "an alert" : "a handshake message",
					      strerror(n < 0 ? (int)-n : EPIPE));
		if ((rc = kts_tx_sent(c, type, (size_t)n)) != KTS_OK)
			return rc;
	}
	return KTS_OK;
}

void kts_post_handshake_setup(struct kts *c, const char *digest, enum kts_aead aead)
{
	int ours = c->is_server ? 1 : 0;
	struct kts_secrets *s = c->sec; /* the handoff derived its keys from them */

	c->aead = aead;
	snprintf(c->digest, sizeof(c->digest), "%s", digest);
	s->size = s->hs_len[ours];
	memcpy(s->rx, s->hs[1 - ours], s->size);
	memcpy(s->tx, s->hs[ours], s->size);
	memcpy(s->ossl_tx, s->hs[ours], s->size);
	/* OpenSSL read only what came past the handshake (caller_io.c); it wrote its tickets. */
	c->ossl_seq[KTS_RX] = c->rx_user_records;
	c->ossl_seq[KTS_TX] = c->is_server ? c->tickets_sent : 0;
}

static int keys_for(struct kts *c, const unsigned char *secret, struct kts_dir_keys *k)
{
	return kts_tls13_traffic_keys(c->digest, secret, c->sec->size, c->aead, k);
}

/* Hand one plaintext handshake message to OpenSSL's read side, as the record
 * it would have read from the socket. */
static int feed_openssl(struct kts *c, const unsigned char *secret, const unsigned char *msg,
			size_t len)
{
	unsigned char rec[KTS_RECORD_MAX], dummy;
	struct kts_dir_keys k;
	BIO *in = BIO_new(BIO_s_mem());
	int n, ret, rc = KTS_OK;

	if (!in)
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "read: out of memory");
	if (keys_for(c, secret, &k) < 0 ||
	    (n = kts_tls13_seal(c->aead, &k, c->ossl_seq[KTS_RX], KTS_RECORD_HANDSHAKE, msg, len,
				rec, sizeof(rec))) < 0) {
		OPENSSL_cleanse(&k, sizeof(k));
		BIO_free(in);
		return kts_fail_fatal(c, KTS_ERR_TLS, "read: cannot re-protect a handshake message");
	}
	OPENSSL_cleanse(&k, sizeof(k));
	BIO_write(in, rec, n);
	BIO_set_mem_eof_return(in, -1); /* empty means "no more yet", not EOF */
	SSL_set0_rbio(c->ssl, in);
	kts_err_clear();
	/* Processes the message; with no application data behind it, wants more. */
	ret = SSL_read(c->ssl, &dummy, 1);
	if (ret > 0 || SSL_get_error(c->ssl, ret) != SSL_ERROR_WANT_READ) {
		char reason[256];
		/* OpenSSL's own alert went nowhere (its write side is fenced). */
		rc = kts_refuse(c, ALERT_DECODE_ERROR, KTS_ERR_TLS,
				"read: OpenSSL rejected a post-handshake message: %s",
				kts_ssl_reason(reason, sizeof(reason)));
	}
	c->ossl_seq[KTS_RX]++;
	SSL_set0_rbio(c->ssl, BIO_new_mem_buf("", 0)); /* fenced again */
	OPENSSL_cleanse(rec, sizeof(rec));
	return rc;
}

/* Install the next traffic secret of one kernel direction (RFC 8446 7.2). */
static int kernel_rekey(struct kts *c, int dir, unsigned char *secret)
{
	unsigned char next[64];
	struct kts_dir_keys k;
	struct kts_crypto_info info;
	int err = -EINVAL;

	if (kts_tls13_next_secret(c->digest, secret, c->sec->size, next) == 0 &&
	    keys_for(c, next, &k) == 0 &&
	    kts_crypto_info_build(KTS_TLS1_3, c->aead, &k, 0, &info) == 0)
		err = kts_kernel_install(c->fd, dir == KTS_TX ? TLS_TX : TLS_RX, &info);
	OPENSSL_cleanse(&k, sizeof(k));
	OPENSSL_cleanse(&info, sizeof(info));
	if (err == 0)
		memcpy(secret, next, c->sec->size);
	OPENSSL_cleanse(next, sizeof(next));
	return err;
}

/* Whether the kernel takes new keys on a kTLS socket: probed on first need,
 * once per configuration. */
static int kernel_can_rekey(struct kts_config *cfg)
{
	int known = atomic_load(&cfg->rekey);

	if (known == 0) {
		known = kts_kernel_probe_rekey() == 1 ? 1 : 2;
		atomic_store(&cfg->rekey, known);
	}
	return known == 1;
}

/* The peer moved to its next traffic secret (and may ask us to move too). */
static int key_update(struct kts *c, const unsigned char *msg, size_t len)
{
	/* OpenSSL hears the update without the request: kts answers through the kernel. */
	static const unsigned char quiet[HS_HEADER + 1] = {SSL3_MT_KEY_UPDATE, 0, 0, 1, 0};
	unsigned char old[64];
	int requested, err, rc;

	if (len != HS_HEADER + 1 || msg[4] > 1)
		return kts_refuse(c, ALERT_DECODE_ERROR, KTS_ERR_TLS, "read: malformed KeyUpdate");
	requested = msg[4] == 1;
	/* Where kts cannot follow, it says so with internal_error (RFC 8446 6.2:
	 * unable to continue for reasons unrelated to the peer). */
	if (requested && c->path[KTS_TX] != KTS_PATH_KERNEL)
		return kts_refuse(c, ALERT_INTERNAL_ERROR, KTS_ERR_UNSUPPORTED,
				  "read: peer requested a KeyUpdate while OpenSSL owns TX and "
				  "the kernel owns RX; not supported");
	if (!kernel_can_rekey(c->cfg))
		return kts_refuse(c, ALERT_INTERNAL_ERROR, KTS_ERR_UNSUPPORTED,
				  "read: peer sent a KeyUpdate and this kernel cannot replace "
				  "the keys of a kTLS socket (Linux 6.14 or later can)");
	memcpy(old, c->sec->rx, c->sec->size);
	err = kernel_rekey(c, KTS_RX, c->sec->rx);
	if (err == -EBUSY || err == -EINVAL || err == -EOPNOTSUPP || err == -ENOPROTOOPT) {
		OPENSSL_cleanse(old, sizeof(old));
		return kts_refuse(c, ALERT_INTERNAL_ERROR, KTS_ERR_UNSUPPORTED,
				  "read: peer sent a KeyUpdate and this kernel cannot replace "
				  "the keys of a kTLS socket (%s; Linux 6.14 or later can)",
				  strerror(-err));
	}
	if (err < 0) {
		OPENSSL_cleanse(old, sizeof(old));
		return kts_refuse(c, ALERT_INTERNAL_ERROR, KTS_ERR_SYS,
				  "read: installing updated RX keys: %s", strerror(-err));
	}
	/* OpenSSL's read side follows (if it is still there): it reads the
	 * update under the old key. */
	rc = c->ssl ? feed_openssl(c, old, quiet, sizeof(quiet)) : KTS_OK;
	OPENSSL_cleanse(old, sizeof(old));
	c->ossl_seq[KTS_RX] = c->rx_user_records;
	if (rc != KTS_OK || !requested)
		return rc;
	/* Answer before any more data goes out; the TX key changes once it has. */
	rc = queue_tx(c, quiet, sizeof(quiet));
	if (rc == KTS_OK)
		c->tx_rekey_pending = 1;
	return rc;
}

/* TLS 1.2: the only handshake messages a peer may send now start a
 * renegotiation, which kts refuses as OpenSSL does (SSL_OP_NO_RENEGOTIATION):
 * a no_renegotiation warning, and the connection carries on (RFC 5246 7.2.2). */
static int refuse_renegotiation(struct kts *c, const unsigned char *msg, size_t len)
{
	if ((c->is_server && msg[0] == HS_CLIENT_HELLO) ||
	    (!c->is_server && msg[0] == HS_HELLO_REQUEST && len == HS_HEADER)) {
		kts_alert_warning(c, ALERT_NO_RENEGOTIATION);
		return KTS_OK;
	}
	return kts_refuse(c, ALERT_UNEXPECTED_MESSAGE, KTS_ERR_TLS,
			  "read: peer sent handshake message type %u after the handshake", msg[0]);
}

/* One whole handshake message from kernel RX. */
static int handle_message(struct kts *c, const unsigned char *msg, size_t len)
{
	if (c->version == TLS1_2_VERSION)
		return refuse_renegotiation(c, msg, len);
	switch (msg[0]) {
	case SSL3_MT_NEWSESSION_TICKET:
		if (c->is_server)
			break;
		return feed_openssl(c, c->sec->rx, msg, len);
	case SSL3_MT_KEY_UPDATE:
		return c->soft_rx ? kts_softrx_key_update(c, msg, len) : key_update(c, msg, len);
	default:
		break;
	}
	return kts_refuse(c, ALERT_UNEXPECTED_MESSAGE, KTS_ERR_TLS,
			  "read: peer sent handshake message type %u after the handshake", msg[0]);
}

int kts_post_handshake(struct kts *c, const unsigned char *data, size_t n)
{
	size_t used = 0, whole = 0;

	/* TLS 1.3 messages go on to OpenSSL under the secrets kept at handoff,
	 * or to kts's own RX (softrx.c). */
	if (c->version == TLS1_3_VERSION ? !c->soft_rx && (!c->sec || c->sec->size == 0)
					 : c->version != TLS1_2_VERSION)
		return kts_refuse(c, ALERT_INTERNAL_ERROR, KTS_ERR_TLS,
				  "read: unexpected handshake record");
	if (!c->hs && !(c->hs = malloc(HS_MAX)))
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "read: out of memory");
	for (;;) {
		size_t take = n - used < HS_MAX - c->hs_len ? n - used : HS_MAX - c->hs_len;

		memcpy(c->hs + c->hs_len, data + used, take);
		c->hs_len += take;
		used += take;
		/* Handle every complete message; keep a partial one for later. */
		while (c->hs_len >= HS_HEADER &&
		       c->hs_len >= (whole = HS_HEADER + ((size_t)c->hs[1] << 16 |
							  (size_t)c->hs[2] << 8 | c->hs[3]))) {
			int rc = handle_message(c, c->hs, whole);
			if (rc != KTS_OK)
				return rc;
			memmove(c->hs, c->hs + whole, c->hs_len - whole);
			c->hs_len -= whole;
		}
		if (c->hs_len >= HS_HEADER && whole > HS_MAX)
			return kts_refuse(c, ALERT_INTERNAL_ERROR, KTS_ERR_TLS,
					  "read: handshake message too large");
		if (used == n)
			break;
	}
	/* A partial message waits in c->hs for the records behind it. */
	if (c->hs_len == 0)
		free_rx(c);
	return KTS_OK;
}

int kts_issue_ticket(struct kts *c)
{
	unsigned char rec[KTS_RECORD_MAX], plain[KTS_RECORD_MAX_PLAIN + 256], type;
	struct kts_dir_keys k;
	BIO *out;
	int rc = kts_handshake(c), n, ret;
	size_t at;

	if (rc != KTS_OK)
		return rc;
	if (c->tx_hs_len > 0) /* a retry after KTS_WANT_WRITE: finish sending that ticket */
		return kts_post_handshake_flush(c);
	if (!c->ssl)
		return kts_fail(c, KTS_ERR_STATE, "issue ticket: OpenSSL's state was released at "
				"the handoff (kts_config_set_release_openssl)");
	if (!c->is_server || SSL_version(c->ssl) != TLS1_3_VERSION)
		return kts_fail(c, KTS_ERR_STATE, "issue ticket: only TLS 1.3 servers issue tickets");
	if (SSL_get_options(c->ssl) & SSL_OP_NO_TICKET)
		return kts_fail(c, KTS_ERR_STATE,
				"issue ticket: resumption is off (kts_config_set_session_lifetime)");
	/* OpenSSL writes the ticket record into memory; kts opens it with
	 * OpenSSL's write key and sends the message through the kernel. */
	out = c->path[KTS_TX] == KTS_PATH_KERNEL ? BIO_new(BIO_s_mem()) : NULL;
	if (c->path[KTS_TX] == KTS_PATH_KERNEL && !out)
		return kts_fail(c, KTS_ERR_NOMEM, "issue ticket: out of memory");
	if (SSL_new_session_ticket(c->ssl) != 1) {
		BIO_free(out);
		return kts_fail(c, KTS_ERR_TLS, "issue ticket: OpenSSL refused");
	}
	if (!out) {
		kts_err_clear();
		ret = SSL_do_handshake(c->ssl);
		return ret == 1 ? KTS_OK : kts_ssl_result(c, ret, "issue ticket");
	}
	SSL_set0_wbio(c->ssl, out);
	kts_err_clear();
	ret = SSL_do_handshake(c->ssl);
	rc = ret == 1 ? KTS_OK : kts_ssl_result(c, ret, "issue ticket");
	n = rc == KTS_OK ? BIO_read(out, rec, sizeof(rec)) : 0;
	if (rc == KTS_OK && BIO_pending(out) > 0)
		rc = kts_fail_fatal(c, KTS_ERR_TLS, "issue ticket: ticket larger than one record");
	SSL_set0_wbio(c->ssl, BIO_new_mem_buf("", 0)); /* fenced again */
	if (rc != KTS_OK)
		return rc;
	if (n <= 0)
		return KTS_OK; /* no usable ticket key right now: OpenSSL sent none */
	if (keys_for(c, c->sec->ossl_tx, &k) < 0)
		return kts_fail_fatal(c, KTS_ERR_TLS, "issue ticket: key derivation failed");
	/* One record per ticket; walk them in case OpenSSL wrote more than one. */
	for (at = 0; rc == KTS_OK && at + KTS_RECORD_HEADER <= (size_t)n;) {
		size_t len = KTS_RECORD_HEADER + ((size_t)rec[at + 3] << 8 | rec[at + 4]);
		int m = at + len <= (size_t)n ? kts_tls13_open(c->aead, &k, c->ossl_seq[KTS_TX],
								rec + at, len, plain, sizeof(plain),
								&type)
					      : -1;
		if (m < 0 || type != KTS_RECORD_HANDSHAKE)
			rc = kts_fail_fatal(c, KTS_ERR_TLS, "issue ticket: unexpected OpenSSL output");
		else
			rc = queue_tx(c, plain, (size_t)m);
		c->ossl_seq[KTS_TX]++;
		at += len;
	}
	OPENSSL_cleanse(&k, sizeof(k));
	OPENSSL_cleanse(plain, sizeof(plain));
	/* KTS_WANT_WRITE: the ticket is queued; call again when writable (or
	 * write: queued handshake bytes always go out first). */
	return rc == KTS_OK ? kts_post_handshake_flush(c) : rc;
}
