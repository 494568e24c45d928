/*
 * softtx.c - userspace TX that kts seals itself, with caller-owned I/O.
 *
 * Through OpenSSL, every byte sent in userspace is copied twice before the
 * socket sees it: SSL_write copies the plaintext into its record buffer and
 * encrypts it there, and the BIO copies the record into the send queue. For
 * bulk data that is a tenth of the server's cycles. So once a write of a
 * whole record's worth comes, kts seals records straight from the caller's
 * buffer into the send queue, with the same keys and record numbers
 * OpenSSL's write side would use.
 *
 * From then on OpenSSL's record numbers are stale, so what OpenSSL still
 * writes (alerts, close_notify, a late ticket, a KeyUpdate answer) reaches
 * the send queue's BIO under its own numbers: kts opens each such record and
 * seals it again as the next of its own. Until then the BIO only counts
 * OpenSSL's records, and handshake.c reports each KeyUpdate OpenSSL sends.
 *
 * TLS 1.2 keys come from the session's master secret. TLS 1.3 ones come from
 * the traffic secret in the key log, which only runs where it pays for
 * itself (config.c): with kTLS, or after kts_config_set_tls13_seal.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "internal.h"
#include "record.h"
#include "tls_wire.h"

/* Deriving the keys costs a few microseconds: worth it for bulk data only. */
#define SOFT_START KTS_RECORD_MAX_PLAIN

void kts_softtx_setup(struct kts *c, int version, const char *digest, enum kts_aead aead,
		      uint64_t seq)
{
	int ours = c->is_server ? 1 : 0;

	if (!c->caller_io || c->path[KTS_TX] != KTS_PATH_USER || c->drain_moved_keys ||
	    aead == KTS_AEAD_NONE || !digest ||
	    (version != TLS1_2_VERSION && version != TLS1_3_VERSION) ||
	    SSL_SESSION_get_max_fragment_length(SSL_get_session(c->ssl)) !=
		    TLSEXT_max_fragment_length_DISABLED)
		return;
	if (version == TLS1_3_VERSION) {
		/* The traffic secret is what KeyUpdate moves on from. */
		const struct kts_secrets *s = c->sec;

		if (!s || s->hs_len[ours] == 0 || !(c->soft = OPENSSL_zalloc(sizeof(*c->soft))))
			return;
		memcpy(c->soft->secret, s->hs[ours], s->hs_len[ours]);
		c->soft->secret_len = (unsigned char)s->hs_len[ours];
	}
	c->version = version;
	c->aead = aead;
	snprintf(c->digest, sizeof(c->digest), "%s", digest);
	c->ossl_seq[KTS_TX] = seq;
	c->soft_tx = 1;
}

static void unkey(struct kts_softtx *s)
{
	EVP_CIPHER_CTX_free(s->ctx);
	s->ctx = NULL;
}

void kts_softtx_idle(struct kts *c)
{
	/* An idle connection holds no key schedule, unless OpenSSL is gone and
	 * every reply is sealed here (softrx.c): then it stays keyed. */
	if (c->soft && !c->soft_rx)
		unkey(c->soft);
}

void kts_softtx_wipe(struct kts *c)
{
	if (c->soft) {
		unkey(c->soft);
		OPENSSL_cleanse(&c->soft->k, sizeof(c->soft->k));
		OPENSSL_cleanse(c->soft->secret, sizeof(c->soft->secret));
	}
}

void kts_softtx_free(struct kts *c)
{
	kts_softtx_wipe(c);
	OPENSSL_clear_free(c->soft, sizeof(*c->soft));
	c->soft = NULL;
	c->soft_tx = 0;
}

static int soft_keys(struct kts *c, struct kts_softtx *s)
{
	struct kts_dir_keys both[2];
	int rc;

	if (c->version == TLS1_3_VERSION)
		return kts_tls13_traffic_keys(c->digest, s->secret, s->secret_len, c->aead, &s->k);
	rc = kts_tls12_conn_keys(c, c->digest, c->aead, both);
	s->k = both[KTS_TX];
	OPENSSL_cleanse(both, sizeof(both));
	return rc;
}

/* Take over from OpenSSL's write side, at its next record number, with
 * the keys k if the caller derived them already. */
static int start(struct kts *c, const struct kts_dir_keys *k)
{
	struct kts_softtx *s = c->soft;

	if (!s && !(s = c->soft = OPENSSL_zalloc(sizeof(*s))))
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "write: out of memory");
	if (k)
		s->k = *k;
	else if (soft_keys(c, s) < 0)
		return kts_fail_fatal(c, KTS_ERR_TLS, "write: could not derive the record keys");
	s->seq = c->ossl_seq[KTS_TX];
	s->started = 1;
	return KTS_OK;
}

static int keyed(struct kts *c, struct kts_softtx *s)
{
	if (!s->ctx && !(s->ctx = kts_record_ctx(c->cfg->soft_cipher[c->aead], c->aead, &s->k)))
		return kts_fail_fatal(c, KTS_ERR_NOMEM, "write: out of memory");
	return KTS_OK;
}

/* Seal len bytes of type into the send queue, one record per 16 KiB; the
 * queue has room (kts_outq_reserve). */
static int seal(struct kts *c, unsigned char type, const unsigned char *p, size_t len)
{
	struct kts_softtx *s = c->soft;

	do {
		size_t take = len < KTS_RECORD_MAX_PLAIN ? len : KTS_RECORD_MAX_PLAIN;
		int n = kts_record_seal(s->ctx, c->version, c->aead, &s->k, s->seq, type, p, take,
					c->outq.data + c->outq.len, c->outq.cap - c->outq.len);

		if (n < 0)
			return kts_fail_fatal(c, KTS_ERR_TLS, "write: sealing a record failed");
		s->seq++;
		c->outq.len += (size_t)n;
		p += take;
		len -= take;
	} while (len > 0);
	return KTS_OK;
}

int kts_softtx_wants(const struct kts *c, size_t len)
{
	return c->soft_tx && ((c->soft && c->soft->started) || len >= SOFT_START);
}

ssize_t kts_softtx_write(struct kts *c, const void *buf, size_t len)
{
	int rc;

	if (len == 0)
		return 0;
	if ((!c->soft || !c->soft->started) && (rc = start(c, NULL)) != KTS_OK)
		return rc;
	if ((rc = keyed(c, c->soft)) != KTS_OK ||
	    (rc = seal(c, KTS_RECORD_DATA, buf, len)) != KTS_OK)
		return rc;
	return (ssize_t)len;
}

/* OpenSSL's KeyUpdate is out, under the old key: both sides move on. */
static int key_moved(struct kts *c, struct kts_softtx *s)
{
	unsigned char next[64];
	int rc = kts_tls13_next_secret(c->digest, s->secret, s->secret_len, next);

	s->key_moves = 0;
	memcpy(s->secret, next, s->secret_len);
	OPENSSL_cleanse(next, sizeof(next));
	c->ossl_seq[KTS_TX] = 0;
	if (rc == 0 && s->started) {
		unkey(s);
		s->seq = 0;
		rc = soft_keys(c, s);
	}
	return rc < 0 ? kts_fail_fatal(c, KTS_ERR_TLS, "KeyUpdate: could not derive the next TX key")
		      : KTS_OK;
}

int kts_softtx_openssl_out(struct kts *c, const unsigned char *p, size_t n)
{
	struct kts_softtx *s = c->soft;
	size_t pre = kts_record_prefix(c->version, c->aead), at = 0;

	if (c->state == KTS_STATE_FAILED && s && s->started)
		return 1; /* its keys are wiped: nothing more goes out */
	while (at < n) {
		size_t len = KTS_RECORD_HEADER + (n - at >= KTS_RECORD_HEADER
							  ? ((size_t)p[at + 3] << 8 | p[at + 4])
							  : 0);
		unsigned char type;
		int m, rc;

		/* OpenSSL hands its BIO whole records: anything else is not ours to renumber. */
		if (n - at < KTS_RECORD_HEADER || len > n - at)
			return kts_fail_fatal(c, KTS_ERR_TLS, "send queue: OpenSSL wrote a partial record");
		if (!s || !s->started) {
			c->ossl_seq[KTS_TX]++;
			at += len;
			if (s && s->key_moves && (rc = key_moved(c, s)) != KTS_OK)
				return rc;
			continue;
		}
		/* Same version and cipher: sealed again it is no longer. */
		if ((rc = keyed(c, s)) != KTS_OK || (rc = kts_outq_reserve(c, len)) != KTS_OK)
			return rc;
		/* Opened into the queue where its plaintext goes, sealed there again. */
		m = kts_record_open(s->ctx, c->version, c->aead, &s->k, c->ossl_seq[KTS_TX], p + at,
				    len, c->outq.data + c->outq.len + pre,
				    c->outq.cap - c->outq.len - pre, &type);
		c->ossl_seq[KTS_TX]++;
		if (m < 0)
			return kts_fail_fatal(c, KTS_ERR_TLS,
					      "send queue: cannot renumber a record OpenSSL wrote");
		if (s->key_moves && (type != KTS_RECORD_HANDSHAKE || m < 1 ||
				     c->outq.data[c->outq.len + pre] != SSL3_MT_KEY_UPDATE))
			return kts_fail_fatal(c, KTS_ERR_TLS,
					      "send queue: OpenSSL's KeyUpdate did not come next");
		if ((rc = seal(c, type, c->outq.data + c->outq.len + pre, (size_t)m)) != KTS_OK ||
		    (s->key_moves && (rc = key_moved(c, s)) != KTS_OK))
			return rc;
		at += len;
	}
	return s && s->started;
}

int kts_softtx_key_update(struct kts *c)
{
	/* OpenSSL buffers handshake messages: the record follows this call. */
	if (!c->soft)
		return kts_fail_fatal(c, KTS_ERR_TLS, "KeyUpdate: no TX secret kept");
	c->soft->key_moves = 1;
	return KTS_OK;
}

int kts_softtx_takeover(struct kts *c, const struct kts_dir_keys *k)
{
	int rc = !c->soft_tx ? KTS_ERR_STATE : c->soft && c->soft->started ? KTS_OK : start(c, k);

	return rc == KTS_OK ? keyed(c, c->soft) : rc;
}

int kts_softtx_send(struct kts *c, unsigned char type, const unsigned char *p, size_t len)
{
	int rc = kts_outq_reserve(c, kts_sealed_max(len));

	if (rc == KTS_OK)
		rc = keyed(c, c->soft);
	return rc == KTS_OK ? seal(c, type, p, len) : rc;
}

int kts_softtx_rekey(struct kts *c)
{
	return key_moved(c, c->soft);
}
