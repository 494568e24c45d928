/*
 * keysched.c - derive kernel TLS record keys from TLS secrets.
 *
 * TLS 1.3 keys come from a traffic secret through HKDF-Expand-Label; TLS 1.2
 * keys come from the master secret through the PRF key block. The result is
 * packed into the kernel's struct tls12_crypto_info_* layout.
 */
#include "keysched.h"

#include <linux/tls.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "kts.h"

enum kts_aead kts_aead_from_suite(uint16_t suite_id)
{
	switch (suite_id) {
	case 0x1301: /* TLS_AES_128_GCM_SHA256 */
	case 0xC02B: /* ECDHE-ECDSA-AES128-GCM-SHA256 */
	case 0xC02F: /* ECDHE-RSA-AES128-GCM-SHA256 */
	case 0x009E: /* DHE-RSA-AES128-GCM-SHA256 */
	case 0x009C: /* AES128-GCM-SHA256 */
		return KTS_AEAD_AES_128_GCM;
	case 0x1302: /* TLS_AES_256_GCM_SHA384 */
	case 0xC02C:
	case 0xC030:
	case 0x009F:
	case 0x009D:
		return KTS_AEAD_AES_256_GCM;
	case 0x1303: /* TLS_CHACHA20_POLY1305_SHA256 */
	case 0xCCA8:
	case 0xCCA9:
	case 0xCCAA:
		return KTS_AEAD_CHACHA20_POLY1305;
	default:
		return KTS_AEAD_NONE;
	}
}

size_t kts_aead_key_len(enum kts_aead aead)
{
	switch (aead) {
	case KTS_AEAD_AES_128_GCM:
		return 16;
	case KTS_AEAD_AES_256_GCM:
	case KTS_AEAD_CHACHA20_POLY1305:
		return 32;
	default:
		return 0;
	}
}

const char *kts_aead_name(enum kts_aead aead)
{
	switch (aead) {
	case KTS_AEAD_AES_128_GCM:
		return "aes128gcm";
	case KTS_AEAD_AES_256_GCM:
		return "aes256gcm";
	case KTS_AEAD_CHACHA20_POLY1305:
		return "chacha20poly1305";
	default:
		return "none";
	}
}

/* Run one of OpenSSL's KDFs by name. Returns 0 or -1. */
static int kdf_derive(const char *name, const OSSL_PARAM params[], unsigned char *out,
		      size_t out_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, name, NULL);
	EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	int ok = kctx && EVP_KDF_derive(kctx, out, out_len, params) == 1;

	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return ok ? 0 : -1;
}

/* HKDF-Expand-Label(secret, label, "", out_len) through OpenSSL's TLS13-KDF. */
static int expand_label(const char *digest, const unsigned char *secret, size_t secret_len,
			const char *label, unsigned char *out, size_t out_len)
{
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM params[] = {
		OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, &mode),
		OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0),
		OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
		OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, "tls13 ", 6),
		OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, (void *)label, strlen(label)),
		OSSL_PARAM_octet_string(OSSL_KDF_PARAM_DATA, "", 0),
		OSSL_PARAM_END,
	};

	return kdf_derive("TLS13-KDF", params, out, out_len);
}

int kts_tls13_traffic_keys(const char *digest, const unsigned char *secret, size_t secret_len,
			   enum kts_aead aead, struct kts_dir_keys *out)
{
	memset(out, 0, sizeof(*out));
	out->key_len = kts_aead_key_len(aead);
	out->iv_len = 12;
	if (out->key_len == 0 ||
	    expand_label(digest, secret, secret_len, "key", out->key, out->key_len) < 0 ||
	    expand_label(digest, secret, secret_len, "iv", out->iv, out->iv_len) < 0) {
		OPENSSL_cleanse(out, sizeof(*out));
		return -1;
	}
	return 0;
}

int kts_tls13_next_secret(const char *digest, const unsigned char *secret, size_t secret_len,
			  unsigned char *next)
{
	return expand_label(digest, secret, secret_len, "traffic upd", next, secret_len);
}

/* TLS 1.2 PRF through OpenSSL's TLS1-PRF. */
static int tls12_prf(const char *digest, const unsigned char *master, size_t master_len,
		     const unsigned char *seed, size_t seed_len, unsigned char *out, size_t out_len)
{
	static const char label[] = "key expansion";
	OSSL_PARAM params[] = {
		OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0),
		OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SECRET, (void *)master, master_len),
		OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SEED, (void *)label, sizeof(label) - 1),
		OSSL_PARAM_octet_string(OSSL_KDF_PARAM_SEED, (void *)seed, seed_len),
		OSSL_PARAM_END,
	};

	return kdf_derive("TLS1-PRF", params, out, out_len);
}

int kts_tls12_keys(const char *digest, const unsigned char *master, size_t master_len,
		   const unsigned char client_random[32], const unsigned char server_random[32],
		   enum kts_aead aead, struct kts_dir_keys *client_write,
		   struct kts_dir_keys *server_write)
{
	size_t key_len = kts_aead_key_len(aead);
	/* Implicit IV: 4-byte salt for GCM (RFC 5288), 12 bytes for ChaCha20 (RFC 7905). */
	size_t iv_len = aead == KTS_AEAD_CHACHA20_POLY1305 ? 12 : 4;
	unsigned char seed[64], block[2 * 32 + 2 * 12];
	int rc = -1;

	memset(client_write, 0, sizeof(*client_write));
	memset(server_write, 0, sizeof(*server_write));
	if (key_len == 0)
		return -1;
	/* The key expansion seed is server_random first (unlike the master secret's). */
	memcpy(seed, server_random, 32);
	memcpy(seed + 32, client_random, 32);
	if (tls12_prf(digest, master, master_len, seed, sizeof(seed), block,
		      2 * key_len + 2 * iv_len) == 0) {
		memcpy(client_write->key, block, key_len);
		memcpy(server_write->key, block + key_len, key_len);
		memcpy(client_write->iv, block + 2 * key_len, iv_len);
		memcpy(server_write->iv, block + 2 * key_len + iv_len, iv_len);
		client_write->key_len = server_write->key_len = key_len;
		client_write->iv_len = server_write->iv_len = iv_len;
		rc = 0;
	}
	OPENSSL_cleanse(block, sizeof(block));
	return rc;
}

void kts_next_seq(int version, int is_server, unsigned int tickets_sent, uint64_t seq[2])
{
	if (version == KTS_TLS1_2) {
		seq[0] = 1;
		seq[1] = 1;
	} else {
		seq[0] = is_server ? tickets_sent : 0;
		seq[1] = 0;
	}
}

static void put_be64(unsigned char out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		out[i] = (unsigned char)v;
}

/* Fill one of the kernel's GCM structs: they share a layout apart from key size. */
#define FILL_GCM(ST, CIPHER)                                                                  \
	do {                                                                                  \
		ST *ci = (ST *)out->bytes;                                                    \
		_Static_assert(sizeof(ST) <= sizeof(out->bytes), "crypto_info buffer");      \
		ci->info.version = (unsigned short)version;                                   \
		ci->info.cipher_type = CIPHER;                                                \
		memcpy(ci->key, keys->key, sizeof(ci->key));                                  \
		memcpy(ci->rec_seq, rec_seq, 8);                                              \
		if (version == KTS_TLS1_3) {                                                  \
			memcpy(ci->salt, keys->iv, 4);                                        \
			memcpy(ci->iv, keys->iv + 4, 8);                                      \
		} else {                                                                      \
			/* TLS 1.2 explicit nonce: the kernel sends and increments this;     \
			 * starting from the sequence number keeps it unique. */             \
			memcpy(ci->salt, keys->iv, 4);                                        \
			memcpy(ci->iv, rec_seq, 8);                                           \
		}                                                                             \
		out->len = sizeof(ST);                                                        \
	} while (0)

int kts_crypto_info_build(int version, enum kts_aead aead, const struct kts_dir_keys *keys,
			  uint64_t seq, struct kts_crypto_info *out)
{
	unsigned char rec_seq[8];

	memset(out, 0, sizeof(*out));
	if (version != KTS_TLS1_2 && version != KTS_TLS1_3)
		return -1;
	if (keys->key_len != kts_aead_key_len(aead) || keys->key_len == 0)
		return -1;
	if (keys->iv_len != (version == KTS_TLS1_3 || aead == KTS_AEAD_CHACHA20_POLY1305 ? 12u : 4u))
		return -1;
	put_be64(rec_seq, seq);

	switch (aead) {
	case KTS_AEAD_AES_128_GCM:
		FILL_GCM(struct tls12_crypto_info_aes_gcm_128, TLS_CIPHER_AES_GCM_128);
		return 0;
	case KTS_AEAD_AES_256_GCM:
		FILL_GCM(struct tls12_crypto_info_aes_gcm_256, TLS_CIPHER_AES_GCM_256);
		return 0;
	case KTS_AEAD_CHACHA20_POLY1305: {
		struct tls12_crypto_info_chacha20_poly1305 *ci = (void *)out->bytes;
		ci->info.version = (unsigned short)version;
		ci->info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
		memcpy(ci->key, keys->key, sizeof(ci->key));
		memcpy(ci->iv, keys->iv, sizeof(ci->iv));
		memcpy(ci->rec_seq, rec_seq, 8);
		out->len = sizeof(*ci);
		return 0;
	}
	default:
		return -1;
	}
}
