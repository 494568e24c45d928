/*
 * record.c - TLS record protection (RFC 8446 5.2, RFC 5288, RFC 7905).
 * TLS 1.3: nonce = iv XOR seq, additional data = the record header, inner
 * plaintext = content || type. TLS 1.2: additional data = seq || type ||
 * version || plaintext length; AES-GCM's nonce is a 4-byte salt and an
 * explicit 8 bytes sent in the record, ChaCha20-Poly1305's is iv XOR seq.
 */
#include "record.h"

#include <string.h>

#include "kts.h"
#include "tls_wire.h"

/* Each AEAD's cipher by name (fetched) and as OpenSSL's built-in handle. */
static const struct {
	const char *name;
	const EVP_CIPHER *(*builtin)(void);
} aeads[] = {
	[KTS_AEAD_AES_128_GCM] = {"AES-128-GCM", EVP_aes_128_gcm},
	[KTS_AEAD_AES_256_GCM] = {"AES-256-GCM", EVP_aes_256_gcm},
	[KTS_AEAD_CHACHA20_POLY1305] = {"ChaCha20-Poly1305", EVP_chacha20_poly1305},
};

static int known(enum kts_aead aead)
{
	return aead > KTS_AEAD_NONE && (size_t)aead < sizeof(aeads) / sizeof(aeads[0]);
}

EVP_CIPHER *kts_record_cipher_fetch(enum kts_aead aead)
{
	return known(aead) ? EVP_CIPHER_fetch(NULL, aeads[aead].name, NULL) : NULL;
}

EVP_CIPHER_CTX *kts_record_ctx(const EVP_CIPHER *cipher, enum kts_aead aead,
			       const struct kts_dir_keys *k)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (!cipher && known(aead))
		cipher = aeads[aead].builtin();
	if (ctx && cipher && EVP_CipherInit_ex(ctx, cipher, NULL, k->key, NULL, 1) == 1)
		return ctx;
	EVP_CIPHER_CTX_free(ctx);
	return NULL;
}

static int explicit_nonce(int version, enum kts_aead aead)
{
	return version == KTS_TLS1_2 && aead != KTS_AEAD_CHACHA20_POLY1305;
}

size_t kts_record_prefix(int version, enum kts_aead aead)
{
	return KTS_RECORD_HEADER + (explicit_nonce(version, aead) ? KTS_RECORD_EXPLICIT_NONCE : 0);
}

static void put_be64(unsigned char *out, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		out[i] = (unsigned char)v;
}

/* The record's nonce; sent: TLS 1.2 GCM's explicit part, as in the record. */
static int make_nonce(int version, enum kts_aead aead, const struct kts_dir_keys *k,
		      uint64_t seq, const unsigned char *sent, unsigned char nonce[12])
{
	if (explicit_nonce(version, aead)) {
		if (k->iv_len != 4)
			return -1;
		memcpy(nonce, k->iv, 4);
		memcpy(nonce + 4, sent, KTS_RECORD_EXPLICIT_NONCE);
		return 0;
	}
	if (k->iv_len != 12)
		return -1;
	memcpy(nonce, k->iv, 12);
	for (int i = 11; i >= 4; i--, seq >>= 8)
		nonce[i] ^= (unsigned char)seq;
	return 0;
}

/* TLS 1.2's additional data: seq, type, version, plaintext length. */
static void tls12_aad(unsigned char aad[13], uint64_t seq, unsigned char type, size_t len)
{
	put_be64(aad, seq);
	aad[8] = type;
	aad[9] = 3;
	aad[10] = 3;
	aad[11] = (unsigned char)(len >> 8);
	aad[12] = (unsigned char)len;
}

/* One AEAD pass over in and then, if given, the one byte *last (TLS 1.3's
 * inner type): encrypted or decrypted into out, never copied first. enc 1
 * seals and writes the tag; enc 0 checks it. */
static int aead_run(EVP_CIPHER_CTX *ctx, enum kts_aead aead, const struct kts_dir_keys *k,
		    int enc, const unsigned char nonce[12], const unsigned char *aad,
		    size_t aad_len, const unsigned char *in, size_t len, const unsigned char *last,
		    unsigned char *out, unsigned char *tag)
{
	EVP_CIPHER_CTX *own = ctx ? NULL : kts_record_ctx(NULL, aead, k);
	int n, m = 0, ok = 0;

	if (!ctx)
		ctx = own;
	if (ctx && EVP_CipherInit_ex(ctx, NULL, NULL, NULL, nonce, enc) == 1 &&
	    (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, KTS_RECORD_TAG, tag) == 1) &&
	    EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) == 1 &&
	    EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1 &&
	    (!last || EVP_CipherUpdate(ctx, out + n, &m, last, 1) == 1) &&
	    EVP_CipherFinal_ex(ctx, out + n + m, &n) == 1)
		ok = !enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, KTS_RECORD_TAG, tag) == 1;
	EVP_CIPHER_CTX_free(own);
	return ok ? 0 : -1;
}

int kts_record_seal(EVP_CIPHER_CTX *ctx, int version, enum kts_aead aead,
		    const struct kts_dir_keys *k, uint64_t seq, unsigned char type,
		    const unsigned char *in, size_t len, unsigned char *out, size_t out_cap)
{
	int tls13 = version == KTS_TLS1_3;
	size_t pre = kts_record_prefix(version, aead);
	size_t inner = len + (tls13 ? 1 : 0);
	size_t body = pre - KTS_RECORD_HEADER + inner + KTS_RECORD_TAG;
	unsigned char nonce[12], aad[13];
	int rc;

	if (len > KTS_RECORD_MAX_PLAIN || out_cap < KTS_RECORD_HEADER + body)
		return -1;
	/* TLS 1.3 hides the type: the outer one is always application_data. */
	out[0] = tls13 ? KTS_RECORD_DATA : type;
	out[1] = 3;
	out[2] = 3;
	out[3] = (unsigned char)(body >> 8);
	out[4] = (unsigned char)body;
	if (!tls13)
		tls12_aad(aad, seq, type, len);
	if (explicit_nonce(version, aead))
		put_be64(out + KTS_RECORD_HEADER, seq);
	rc = make_nonce(version, aead, k, seq, out + KTS_RECORD_HEADER, nonce) == 0 &&
			     aead_run(ctx, aead, k, 1, nonce, tls13 ? out : aad,
				      tls13 ? KTS_RECORD_HEADER : sizeof(aad), in, len,
				      tls13 ? &type : NULL, out + pre, out + pre + inner) == 0
		     ? (int)(KTS_RECORD_HEADER + body)
		     : -1;
	OPENSSL_cleanse(nonce, sizeof(nonce));
	return rc;
}

int kts_record_open(EVP_CIPHER_CTX *ctx, int version, enum kts_aead aead,
		    const struct kts_dir_keys *k, uint64_t seq, const unsigned char *rec,
		    size_t rec_len, unsigned char *out, size_t out_cap, unsigned char *type)
{
	int tls13 = version == KTS_TLS1_3;
	size_t pre = kts_record_prefix(version, aead), body, n;
	unsigned char nonce[12], aad[13];
	int rc;

	if (rec_len < pre + (tls13 ? 1 : 0) + KTS_RECORD_TAG || (tls13 && rec[0] != KTS_RECORD_DATA))
		return -1;
	body = (size_t)rec[3] << 8 | rec[4];
	n = rec_len - pre - KTS_RECORD_TAG;
	if (body != rec_len - KTS_RECORD_HEADER || n > out_cap)
		return -1;
	if (!tls13)
		tls12_aad(aad, seq, rec[0], n);
	rc = make_nonce(version, aead, k, seq, rec + KTS_RECORD_HEADER, nonce) == 0
		     ? aead_run(ctx, aead, k, 0, nonce, tls13 ? rec : aad,
				tls13 ? KTS_RECORD_HEADER : sizeof(aad), rec + pre, n, NULL, out,
				(unsigned char *)rec + pre + n)
		     : -1;
	OPENSSL_cleanse(nonce, sizeof(nonce));
	if (rc < 0)
		return -1;
	if (!tls13) {
		*type = rec[0];
		return (int)n;
	}
	/* Strip zero padding; the last non-zero byte is the real content type. */
	while (n > 0 && out[n - 1] == 0)
		n--;
	if (n == 0)
		return -1;
	*type = out[--n];
	return (int)n;
}

int kts_tls13_seal(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq,
		   unsigned char type, const unsigned char *in, size_t len, unsigned char *out,
		   size_t out_cap)
{
	return kts_record_seal(NULL, KTS_TLS1_3, aead, k, seq, type, in, len, out, out_cap);
}

int kts_tls13_open(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq,
		   const unsigned char *rec, size_t rec_len, unsigned char *out, size_t out_cap,
		   unsigned char *type)
{
	return kts_record_open(NULL, KTS_TLS1_3, aead, k, seq, rec, rec_len, out, out_cap, type);
}
