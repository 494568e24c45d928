/*
 * record.c - TLS 1.3 record protection (RFC 8446 5.2): nonce = iv XOR seq,
 * additional data = the record header, inner plaintext = content || type.
 */
#include "record.h"

#include <string.h>

#include <openssl/evp.h>

static const EVP_CIPHER *aead_cipher(enum kts_aead aead)
{
	switch (aead) {
	case KTS_AEAD_AES_128_GCM:
		return EVP_aes_128_gcm();
	case KTS_AEAD_AES_256_GCM:
		return EVP_aes_256_gcm();
	case KTS_AEAD_CHACHA20_POLY1305:
		return EVP_chacha20_poly1305();
	default:
		return NULL;
	}
}

static void make_nonce(const struct kts_dir_keys *k, uint64_t seq, unsigned char nonce[12])
{
	memcpy(nonce, k->iv, 12);
	for (int i = 11; i >= 4; i--, seq >>= 8)
		nonce[i] ^= (unsigned char)seq;
}

/* One AEAD pass over in (enc 1 seals and appends the tag; enc 0 checks it). */
static int aead_run(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq, int enc,
		    const unsigned char *aad, const unsigned char *in, size_t len,
		    unsigned char *out, unsigned char *tag)
{
	const EVP_CIPHER *cipher = aead_cipher(aead);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	unsigned char nonce[12];
	int n, ok = 0;

	make_nonce(k, seq, nonce);
	if (ctx && cipher && k->iv_len == 12 &&
	    EVP_CipherInit_ex(ctx, cipher, NULL, k->key, nonce, enc) == 1 &&
	    (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, KTS_RECORD_TAG, tag) == 1) &&
	    EVP_CipherUpdate(ctx, NULL, &n, aad, KTS_RECORD_HEADER) == 1 &&
	    EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1 &&
	    EVP_CipherFinal_ex(ctx, out + n, &n) == 1)
		ok = !enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, KTS_RECORD_TAG, tag) == 1;
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(nonce, sizeof(nonce));
	return ok ? 0 : -1;
}

int kts_tls13_seal(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq,
		   unsigned char type, const unsigned char *in, size_t len, unsigned char *out,
		   size_t out_cap)
{
	size_t body = len + 1 + KTS_RECORD_TAG;
	unsigned char *inner = out + KTS_RECORD_HEADER;

	if (len > KTS_RECORD_MAX_PLAIN || out_cap < KTS_RECORD_HEADER + body)
		return -1;
	/* Outer header: application_data, legacy version 0x0303, length. */
	out[0] = 23;
	out[1] = 3;
	out[2] = 3;
	out[3] = (unsigned char)(body >> 8);
	out[4] = (unsigned char)body;
	memmove(inner, in, len);
	inner[len] = type;
	if (aead_run(aead, k, seq, 1, out, inner, len + 1, inner, inner + len + 1) < 0)
		return -1;
	return (int)(KTS_RECORD_HEADER + body);
}

int kts_tls13_open(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq,
		   const unsigned char *rec, size_t rec_len, unsigned char *out, size_t out_cap,
		   unsigned char *type)
{
	size_t body, n;

	if (rec_len < KTS_RECORD_HEADER + 1 + KTS_RECORD_TAG || rec[0] != 23)
		return -1;
	body = (size_t)rec[3] << 8 | rec[4];
	if (body != rec_len - KTS_RECORD_HEADER || body - KTS_RECORD_TAG > out_cap)
		return -1;
	n = body - KTS_RECORD_TAG;
	if (aead_run(aead, k, seq, 0, rec, rec + KTS_RECORD_HEADER, n, out,
		     (unsigned char *)rec + KTS_RECORD_HEADER + n) < 0)
		return -1;
	/* Strip zero padding; the last non-zero byte is the real content type. */
	while (n > 0 && out[n - 1] == 0)
		n--;
	if (n == 0)
		return -1;
	*type = out[--n];
	return (int)n;
}
