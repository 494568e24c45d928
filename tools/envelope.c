/* envelope.c - see envelope.h. */
#include "envelope.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "secretfile.h"

#define NONCE_LEN 12
#define TAG_LEN 16
#define MAGIC "kts-envelope 1 "

void kek_wipe(struct kek *k)
{
	OPENSSL_cleanse(k, sizeof(*k));
}

int kek_load(const char *path, uid_t uid, struct kek *k, char *err, size_t errlen)
{
	unsigned char raw[KEK_TEXT_LEN];
	char *buf;
	size_t len, n;
	int got;

	if (secretfile_read(path, uid, KEK_TEXT_LEN, &buf, &len, NULL, err, errlen) < 0)
		return -1;
	for (n = len; n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'); n--)
		;
	got = n % 4 == 0 && n / 4 * 3 <= sizeof(raw)
		      ? EVP_DecodeBlock(raw, (const unsigned char *)buf, (int)n)
		      : -1;
	if (got >= 0 && n && buf[n - 1] == '=')
		got -= n > 1 && buf[n - 2] == '=' ? 2 : 1;
	secretfile_free(buf, len);
	if (got != KEK_LEN) {
		OPENSSL_cleanse(raw, sizeof(raw));
		snprintf(err, errlen, "%s: not a KEK: want one line, the base64 of %d bytes "
				      "(ktsctl kek init)", path, KEK_LEN);
		return -1;
	}
	memcpy(k->key, raw, KEK_LEN);
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int kek_text_new(char buf[KEK_TEXT_LEN], char *err, size_t errlen)
{
	unsigned char raw[KEK_LEN];
	int n;

	if (RAND_priv_bytes(raw, sizeof(raw)) != 1) {
		snprintf(err, errlen, "no random bytes for a KEK");
		return -1;
	}
	n = EVP_EncodeBlock((unsigned char *)buf, raw, sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	buf[n] = '\n';
	buf[n + 1] = '\0';
	return 0;
}

/* The AES-256 key for purpose: HKDF-SHA256 of the KEK. */
static int derive(const struct kek *k, const char *purpose, unsigned char out[32])
{
	char info[96];
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM p[4];
	int rc;

	snprintf(info, sizeof(info), "kts envelope 1 %s", purpose);
	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
	p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)k->key, KEK_LEN);
	p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, strlen(info));
	p[3] = OSSL_PARAM_construct_end();
	rc = ctx && EVP_KDF_derive(ctx, out, 32, p) == 1 ? 0 : -1;
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return rc;
}

/* One AES-256-GCM pass: seal (enc) or open in[0, len) into out, with aad.
 * The tag is written to / checked against tag. 0, or -1. */
static int gcm(const unsigned char key[32], const unsigned char nonce[NONCE_LEN], const char *aad,
	       const unsigned char *in, size_t len, unsigned char *out, unsigned char tag[TAG_LEN],
	       int enc)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n, ok;

	ok = c && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1 &&
	     EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
	     (len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)len) == 1) &&
	     (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) == 1) &&
	     EVP_CipherFinal_ex(c, out + len, &n) == 1 &&
	     (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) == 1);
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

static void aad_of(char *aad, size_t len, uint64_t gen, const char *purpose, const char *name)
{
	snprintf(aad, len, MAGIC "%" PRIu64 " %s %s", gen, purpose, name);
}

char *envelope_seal(const struct kek *k, const char *purpose, const char *name, uint64_t gen,
		    const void *plain, size_t len, size_t *outlen, char *err, size_t errlen)
{
	size_t blob_len = NONCE_LEN + len + TAG_LEN, cap = 64 + 4 * ((blob_len + 2) / 3) + 2;
	unsigned char key[32], *blob = NULL;
	char aad[200], *out = NULL;
	int head;

	if (len > ENVELOPE_MAX / 2 || !(blob = malloc(blob_len)) || !(out = malloc(cap))) {
		snprintf(err, errlen, len > ENVELOPE_MAX / 2 ? "envelope: too much to seal"
							     : "out of memory");
		goto fail;
	}
	aad_of(aad, sizeof(aad), gen, purpose, name);
	if (derive(k, purpose, key) < 0 || RAND_bytes(blob, NONCE_LEN) != 1 ||
	    gcm(key, blob, aad, plain, len, blob + NONCE_LEN, blob + NONCE_LEN + len, 1) < 0) {
		snprintf(err, errlen, "envelope: sealing failed");
		goto fail;
	}
	head = snprintf(out, cap, MAGIC "%" PRIu64 " ", gen);
	head += EVP_EncodeBlock((unsigned char *)out + head, blob, (int)blob_len);
	out[head++] = '\n';
	out[head] = '\0';
	*outlen = (size_t)head;
	OPENSSL_cleanse(key, sizeof(key));
	free(blob);
	return out;
fail:
	OPENSSL_cleanse(key, sizeof(key));
	free(blob);
	free(out);
	return NULL;
}

void envelope_free(unsigned char *plain, size_t len)
{
	if (plain)
		OPENSSL_cleanse(plain, len);
	free(plain);
}

/* The one spelling of blob's n bytes: with spare bits left unchecked, a changed
 * character could decode to the same bytes and pass as the envelope it was. */
static int b64_canonical(const unsigned char *blob, int n, const char *b64, size_t b64len)
{
	char *again = malloc(b64len + 1);
	int same = again && (size_t)EVP_EncodeBlock((unsigned char *)again, blob, n) == b64len &&
		   memcmp(again, b64, b64len) == 0;

	free(again);
	return same;
}

int envelope_open(const struct kek *k, const char *purpose, const char *name, const char *env,
		  size_t len, uint64_t *genp, unsigned char **plainp, size_t *plainlen, char *err,
		  size_t errlen)
{
	size_t mlen = strlen(MAGIC), b64len, blob_len;
	unsigned char key[32], *blob = NULL, *plain = NULL;
	const char *p = env + mlen, *sp;
	char aad[200];
	uint64_t gen = 0;
	int n;

	while (len && (env[len - 1] == '\n' || env[len - 1] == '\r'))
		len--;
	if (len < mlen || memcmp(env, MAGIC, mlen) != 0 || len > ENVELOPE_MAX) {
		snprintf(err, errlen, "not a kts envelope (version 1)");
		return -1;
	}
	sp = memchr(p, ' ', len - mlen);
	if (!sp || sp == p || sp - p > 19) {
		snprintf(err, errlen, "envelope: no generation");
		return -1;
	}
	for (const char *q = p; q < sp; q++) {
		if (*q < '0' || *q > '9') {
			snprintf(err, errlen, "envelope: no generation");
			return -1;
		}
		gen = gen * 10 + (uint64_t)(*q - '0');
	}
	*genp = gen; /* as claimed: authenticated only if the rest opens */
	b64len = len - (size_t)(sp + 1 - env);
	blob = malloc(b64len / 4 * 3 + 3);
	if (!blob) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	n = b64len % 4 == 0 ? EVP_DecodeBlock(blob, (const unsigned char *)sp + 1, (int)b64len) : -1;
	if (n >= 0 && b64len && sp[b64len] == '=')
		n -= sp[b64len - 1] == '=' ? 2 : 1;
	if (n < NONCE_LEN + TAG_LEN) {
		snprintf(err, errlen, "envelope: the sealed part is not base64 of at least %d bytes",
			 NONCE_LEN + TAG_LEN);
		free(blob);
		return -1;
	}
	if (!b64_canonical(blob, n, sp + 1, b64len)) {
		snprintf(err, errlen, "envelope: the sealed part is not canonical base64");
		free(blob);
		return -1;
	}
	blob_len = (size_t)n;
	*plainlen = blob_len - NONCE_LEN - TAG_LEN;
	plain = malloc(*plainlen + 1);
	aad_of(aad, sizeof(aad), gen, purpose, name);
	if (!plain || derive(k, purpose, key) < 0 ||
	    gcm(key, blob, aad, blob + NONCE_LEN, *plainlen, plain, blob + blob_len - TAG_LEN, 0) <
		    0) {
		snprintf(err, errlen, "envelope (generation %" PRIu64 ") fails authentication: "
				      "another KEK, fleet or purpose, or changed", gen);
		envelope_free(plain, *plainlen);
		OPENSSL_cleanse(key, sizeof(key));
		free(blob);
		return -1;
	}
	plain[*plainlen] = '\0';
	OPENSSL_cleanse(key, sizeof(key));
	free(blob);
	*genp = gen;
	*plainp = plain;
	return 0;
}
