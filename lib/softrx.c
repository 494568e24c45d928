/*
 * softrx.c - userspace RX that kts opens itself, so that a server with
 * caller-owned I/O frees OpenSSL (kts_config_set_release_openssl) whether or
 * not the kernel takes the connection.
 *
 * Through OpenSSL an idle userspace connection keeps about 12 KiB of
 * OpenSSL's state. With its TX already sealed by kts (softtx.c), kts opens
 * the received records too, and the SSL goes as it does for kTLS: what is
 * left is struct kts and one keyed cipher context per direction.
 *
 * Taking over costs the record keys (a TLS 1.2 PRF, a few microseconds) and
 * two cipher contexts: a twentieth of a resumed handshake. So it waits until
 * the caller says the connection went quiet (kts_shrink): a connection that
 * ends soon after its handshake never pays, and an idle one stops holding
 * OpenSSL. Until then kts follows OpenSSL's RX record number and, for TLS
 * 1.3, the peer's traffic secret, through OpenSSL's message callback.
 *
 * Records are opened where they lie: in place in the caller's receive
 * buffer when that holds whole records (the plaintext of each moves down to
 * the front), else in the receive queue. What each record means (data,
 * close_notify, an alert, a KeyUpdate, a renegotiation attempt) is decided
 * by the same interpreter as kernel RX (rx.c), and kts's answers are sealed
 * into the send queue ahead of any later data.
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"
#include "record.h"
#include "tls_wire.h"

/* Largest record body each version allows (RFC 8446 5.2, RFC 5246 6.2.3). */
#define TLS13_BODY_MAX (KTS_RECORD_MAX_PLAIN + 256)
#define TLS12_BODY_MAX (KTS_RECORD_MAX_PLAIN + 2048)

int kts_softrx_may(const struct kts *c)
{
	return c->cfg->release_ssl && c->is_server && c->caller_io && c->soft_tx &&
	       c->path[KTS_TX] == KTS_PATH_USER && c->path[KTS_RX] == KTS_PATH_USER &&
	       !SSL_has_pending(c->ssl) && !c->drain_moved_keys && !c->rx_eof &&
	       !kts_needs_openssl(c);
}

void kts_softrx_prepare(struct kts *c, uint64_t seq)
{
	const struct kts_secrets *sec = c->sec; /* the key log's: [0] client, [1] server */
	struct kts_softrx *s;

	if (c->version == TLS1_3_VERSION && (!sec || sec->hs_len[0] == 0))
		return;
	if (!(s = OPENSSL_zalloc(sizeof(*s))))
		return; /* OpenSSL stays */
	if (c->version == TLS1_3_VERSION) {
		memcpy(s->secret, sec->hs[0], sec->hs_len[0]);
		s->secret_len = (unsigned char)sec->hs_len[0];
	}
	s->seq = seq;
	c->srx = s;
}

void kts_softrx_read_counted(struct kts *c)
{
	c->srx->seq++;
}

/* The peer's next traffic secret (RFC 8446 7.2), from record 0 on. */
static int next_secret(struct kts *c, struct kts_softrx *s)
{
	unsigned char next[64];
	int rc = c->version == TLS1_3_VERSION
			 ? kts_tls13_next_secret(c->digest, s->secret, s->secret_len, next)
			 : -1;

	if (rc == 0)
		memcpy(s->secret, next, s->secret_len);
	OPENSSL_cleanse(next, sizeof(next));
	s->seq = 0;
	return rc;
}

void kts_softrx_peer_moved(struct kts *c)
{
	/* OpenSSL reads on under the next key; where kts cannot follow, it
	 * never takes over. */
	if (next_secret(c, c->srx) < 0)
		kts_softrx_free(c);
}

/* Key kts's RX at the record OpenSSL would read next, and its TX with it. */
static int take_over(struct kts *c)
{
	struct kts_softrx *s = c->srx;
	struct kts_dir_keys both[2];
	int ok;

	memset(both, 0, sizeof(both));
	if (c->version == TLS1_3_VERSION) {
		ok = kts_tls13_traffic_keys(c->digest, s->secret, s->secret_len, c->aead, &s->k) == 0;
	} else {
		ok = kts_tls12_conn_keys(c, c->digest, c->aead, both) == 0; /* once for both ways */
		s->k = both[KTS_RX];
	}
	ok = ok && (s->ctx = kts_record_ctx(c->cfg->soft_cipher[c->aead], c->aead, &s->k)) &&
	     kts_softtx_takeover(c, c->version == TLS1_3_VERSION ? NULL : &both[KTS_TX]) == KTS_OK;
	OPENSSL_cleanse(both, sizeof(both));
	if (!ok) {
		EVP_CIPHER_CTX_free(s->ctx);
		s->ctx = NULL;
		OPENSSL_cleanse(&s->k, sizeof(s->k));
		return -1;
	}
	return 0;
}

int kts_shrink(struct kts *c)
{
	if (!c)
		return KTS_ERR_ARG;
	if (c->state == KTS_STATE_FAILED)
		return c->fail_code;
	/* Only at a record boundary with nothing held: OpenSSL's state is then
	 * its keys and record numbers, which kts has. */
	if (c->state != KTS_STATE_OPEN || !c->srx || c->soft_rx || !c->ssl || c->rx_eof ||
	    c->inq.len > c->inq.off || c->early.len > c->early.off || SSL_has_pending(c->ssl) ||
	    SSL_in_init(c->ssl) || (c->soft && c->soft->key_moves))
		return 0; /* the last: OpenSSL's KeyUpdate answer is still to come */
	if (take_over(c) < 0)
		return c->state == KTS_STATE_FAILED ? c->fail_code : 0;
	c->soft_rx = 1;
	kts_release_openssl(c);
	return 1;
}

void kts_softrx_wipe(struct kts *c)
{
	if (c->srx) {
		EVP_CIPHER_CTX_free(c->srx->ctx);
		c->srx->ctx = NULL;
		OPENSSL_cleanse(&c->srx->k, sizeof(c->srx->k));
		OPENSSL_cleanse(c->srx->secret, sizeof(c->srx->secret));
	}
}

void kts_softrx_free(struct kts *c)
{
	kts_softrx_wipe(c);
	OPENSSL_clear_free(c->srx, sizeof(*c->srx));
	c->srx = NULL;
}

size_t kts_softrx_pending(const struct kts *c)
{
	return c->srx ? c->srx->plain_left : 0;
}

/* The length of the record starting at p (header checked, as the kernel
 * checks it: the same errors), or an error. */
static ssize_t record_len(struct kts *c, const unsigned char *p)
{
	size_t body = (size_t)p[3] << 8 | p[4];
	size_t least = kts_record_prefix(c->version, c->aead) - KTS_RECORD_HEADER + KTS_RECORD_TAG +
		       (c->version == TLS1_3_VERSION ? 1 : 0);

	if (p[1] != 3 || p[2] != 3 || p[0] < KTS_RECORD_CCS || p[0] > KTS_RECORD_DATA ||
	    (c->version == TLS1_3_VERSION && p[0] != KTS_RECORD_DATA))
		return kts_rx_error(c, -EINVAL);
	if (body > (c->version == TLS1_3_VERSION ? TLS13_BODY_MAX : TLS12_BODY_MAX))
		return kts_rx_error(c, -EMSGSIZE);
	if (body < least)
		return kts_rx_error(c, -EBADMSG);
	return (ssize_t)(KTS_RECORD_HEADER + body);
}

/* Open the whole record rec (len bytes) into out (room for its body) and
 * interpret it: data bytes left in out (> 0), KTS_RX_AGAIN when there is
 * nothing for the reader (kts consumed it, or it was empty), 0 at
 * close_notify, or an error. */
static ssize_t open_one(struct kts *c, const unsigned char *rec, size_t len, unsigned char *out,
			size_t out_cap)
{
	struct kts_softrx *s = c->srx;
	unsigned char type;
	int m = kts_record_open(s->ctx, c->version, c->aead, &s->k, s->seq, rec, len, out, out_cap,
				&type);

	if (m < 0)
		return kts_rx_error(c, -EBADMSG);
	s->seq++; /* before a KeyUpdate restarts it */
	if (m > KTS_RECORD_MAX_PLAIN)
		return kts_rx_error(c, -EMSGSIZE);
	if (m == 0)
		return type == KTS_RECORD_DATA
			       ? KTS_RX_AGAIN
			       : kts_refuse(c, ALERT_UNEXPECTED_MESSAGE, KTS_ERR_TLS,
					    "read: empty record of type %u", type);
	return kts_rx_record(c, type, out, (size_t)m, 1);
}

/* Keep n received bytes that do not make a whole record yet. */
static int keep(struct kts *c, const unsigned char *p, size_t n)
{
	if (kts_bytes_reserve(&c->inq, n, 0, 0, NULL) < 0)
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "read: out of memory");
	memcpy(c->inq.data + c->inq.len, p, n);
	c->inq.len += n;
	return KTS_OK;
}

ssize_t kts_softrx_recv(struct kts *c, unsigned char *buf, size_t cap, size_t n)
{
	size_t pre = kts_record_prefix(c->version, c->aead), r = 0, w = 0;
	ssize_t rc = KTS_RX_AGAIN;

	/* Bytes already waiting (a record's start, plaintext decrypted past the
	 * handshake) come first: these join them. */
	if (c->inq.len > c->inq.off || c->early.len > c->early.off) {
		if ((rc = keep(c, buf, n)) != KTS_OK)
			return rc;
		return kts_read(c, buf, cap);
	}
	/* Whole records, opened in place: plaintext is shorter than its record,
	 * so each moves down behind the one before. */
	while (n - r >= KTS_RECORD_HEADER) {
		ssize_t len = record_len(c, buf + r);

		if (len < 0) {
			rc = len;
			break;
		}
		if ((size_t)len > n - r)
			break;
		rc = open_one(c, buf + r, (size_t)len, buf + r + pre, (size_t)len - pre);
		if (rc > 0) {
			memmove(buf + w, buf + r + pre, (size_t)rc);
			w += (size_t)rc;
		}
		r += (size_t)len;
		if (rc <= 0 && rc != KTS_RX_AGAIN)
			break; /* close_notify or an error: nothing after it counts */
	}
	if ((rc > 0 || rc == KTS_RX_AGAIN) && r < n && (rc = keep(c, buf + r, n - r)) == KTS_OK)
		rc = KTS_RX_AGAIN;
	if (w > 0)
		return (ssize_t)w; /* what ended the input shows at the next read */
	return rc == KTS_RX_AGAIN || rc > 0 ? KTS_WANT_READ : rc;
}

/* The record at the head of the receive queue is read: drop it. */
static void queue_pop(struct kts *c, size_t len)
{
	c->inq.off += len;
	if (c->inq.off == c->inq.len)
		kts_bytes_free(&c->inq, 0); /* an idle connection keeps no buffer */
}

ssize_t kts_softrx_read(struct kts *c, unsigned char *buf, size_t len)
{
	struct kts_softrx *s = c->srx;
	size_t pre = kts_record_prefix(c->version, c->aead);

	for (;;) {
		unsigned char *rec = c->inq.data + c->inq.off;
		size_t have = c->inq.len - c->inq.off, body;
		ssize_t rlen, rc;

		if (s->plain_left > 0) {
			size_t n = s->plain_left < len ? s->plain_left : len;

			memcpy(buf, rec + s->plain_at, n);
			s->plain_at += n;
			s->plain_left -= n;
			if (s->plain_left == 0)
				queue_pop(c, s->rec_len);
			return (ssize_t)n;
		}
		if (have < KTS_RECORD_HEADER)
			return KTS_WANT_READ;
		if ((rlen = record_len(c, rec)) < 0)
			return rlen;
		if ((size_t)rlen > have)
			return KTS_WANT_READ;
		body = (size_t)rlen - pre;
		if (len >= body) { /* straight into the reader's buffer */
			rc = open_one(c, rec, (size_t)rlen, buf, len);
			queue_pop(c, (size_t)rlen);
			if (rc != KTS_RX_AGAIN)
				return rc;
			continue;
		}
		/* Opened in place, read out in pieces. */
		rc = open_one(c, rec, (size_t)rlen, rec + pre, body);
		if (rc > 0) {
			s->plain_at = pre;
			s->plain_left = (size_t)rc;
			s->rec_len = (size_t)rlen;
			continue;
		}
		queue_pop(c, (size_t)rlen);
		if (rc != KTS_RX_AGAIN)
			return rc;
	}
}

int kts_softrx_key_update(struct kts *c, const unsigned char *msg, size_t len)
{
	static const unsigned char answer[HS_HEADER + 1] = {SSL3_MT_KEY_UPDATE, 0, 0, 1, 0};
	struct kts_softrx *s = c->srx;
	int rc;

	if (len != HS_HEADER + 1 || msg[4] > 1)
		return kts_refuse(c, ALERT_DECODE_ERROR, KTS_ERR_TLS, "read: malformed KeyUpdate");
	/* Handshake messages do not span a key change (RFC 8446 5.1). */
	if (c->hs_len != len)
		return kts_refuse(c, ALERT_UNEXPECTED_MESSAGE, KTS_ERR_TLS,
				  "read: KeyUpdate not at the end of its record");
	EVP_CIPHER_CTX_free(s->ctx);
	s->ctx = next_secret(c, s) == 0 && kts_tls13_traffic_keys(c->digest, s->secret, s->secret_len,
								   c->aead, &s->k) == 0
			 ? kts_record_ctx(c->cfg->soft_cipher[c->aead], c->aead, &s->k)
			 : NULL;
	if (!s->ctx)
		return kts_refuse(c, ALERT_INTERNAL_ERROR, KTS_ERR_TLS,
				  "read: KeyUpdate: could not derive the next RX key");
	if (msg[4] == 0)
		return KTS_OK;
	/* Asked to update too: our KeyUpdate goes out under the old key, ahead
	 * of any later data, and everything after it under the next one. */
	rc = kts_softtx_send(c, KTS_RECORD_HANDSHAKE, answer, sizeof(answer));
	return rc == KTS_OK ? kts_softtx_rekey(c) : rc;
}
