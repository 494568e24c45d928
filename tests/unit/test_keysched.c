/*
 * test_keysched.c - unit tests for lib/keysched.c.
 *
 * 1. TLS 1.3 traffic keys against RFC 8448 section 3; key update against an
 *    independent HKDF-Expand-Label.
 * 2. The end-to-end check: a real in-memory OpenSSL handshake per version and
 *    AEAD, keys derived by kts, and records sealed/opened here exactly as the
 *    Linux kernel would, from nothing but the crypto_info struct kts built.
 *    Each direction is checked both ways: records from "kernel TX" must be
 *    accepted by the peer's OpenSSL, and records from OpenSSL must open with
 *    "kernel RX". TLS 1.3 also runs a KeyUpdate each way.
 * 3. Suite mapping and crypto_info layout and error cases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <linux/tls.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "kts.h"
#include "keysched.h"

#define BUFSZ 4096

/* ---- helpers ------------------------------------------------------------ */

/* Hex (spaces allowed) to bytes; returns the byte count. */
static size_t unhex(const char *s, unsigned char *out, size_t max)
{
	size_t n = 0;
	unsigned int v;

	for (; *s; s++) {
		if (*s == ' ')
			continue;
		assert_true(n < max);
		assert_int_equal(sscanf(s, "%2x", &v), 1);
		out[n++] = (unsigned char)v;
		s++;
	}
	return n;
}

static uint64_t get_be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

/* Independent HKDF-Expand-Label (RFC 8446 7.1) over plain HKDF-Expand. */
static void expand_label(const char *digest, const unsigned char *secret, size_t secret_len,
			 const char *label, unsigned char *out, size_t out_len)
{
	unsigned char info[64];
	size_t n = 0, l = strlen(label);
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
	OSSL_PARAM p[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)digest, 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 0),
		OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
		OSSL_PARAM_construct_end(),
	};

	info[n++] = (unsigned char)(out_len >> 8);
	info[n++] = (unsigned char)out_len;
	info[n++] = (unsigned char)(6 + l);
	memcpy(info + n, "tls13 ", 6);
	memcpy(info + n + 6, label, l);
	n += 6 + l;
	info[n++] = 0; /* empty context */
	p[2].data_size = n;
	assert_int_equal(EVP_KDF_derive(ctx, out, out_len, p), 1);
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
}

/* ---- RFC 8448 and key update -------------------------------------------- */

/* RFC 8448 section 3, TLS_AES_128_GCM_SHA256: traffic secret -> key, iv. */
static const struct {
	const char *secret, *key, *iv;
} rfc8448[] = {
	{ /* {server} derive write traffic keys for handshake data */
	  "b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38",
	  "3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc", "5d 31 3e b2 67 12 76 ee 13 00 0b 30" },
	{ /* {server} derive read traffic keys for handshake data (client's) */
	  "b3 ed db 12 6e 06 7f 35 a7 80 b3 ab f4 5e 2d 8f 3b 1a 95 07 38 f5 2e 96 00 74 6a 0e 27 a5 5a 21",
	  "db fa a6 93 d1 76 2c 5b 66 6a f5 d9 50 25 8d 01", "5b d3 c7 1b 83 6e 0b 76 bb 73 26 5f" },
	{ /* {server} derive write traffic keys for application data */
	  "a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43",
	  "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56", "cf 78 2b 88 dd 83 54 9a ad f1 e9 84" },
	{ /* {client} derive write traffic keys for application data */
	  "9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb b7 c1 75 04 a5",
	  "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51", "5b 78 92 3d ee 08 57 90 33 e5 23 d9" },
};

static void test_rfc8448_traffic_keys(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof rfc8448 / sizeof rfc8448[0]; i++) {
		unsigned char secret[32], key[16], iv[12], mine[16];
		struct kts_dir_keys k;

		assert_int_equal(unhex(rfc8448[i].secret, secret, sizeof secret), 32);
		assert_int_equal(unhex(rfc8448[i].key, key, sizeof key), 16);
		assert_int_equal(unhex(rfc8448[i].iv, iv, sizeof iv), 12);
		/* the vectors themselves, through the test's own HKDF */
		expand_label("SHA256", secret, 32, "key", mine, 16);
		assert_memory_equal(mine, key, 16);

		memset(&k, 0xa5, sizeof k);
		assert_int_equal(kts_tls13_traffic_keys("SHA256", secret, 32, KTS_AEAD_AES_128_GCM, &k), 0);
		assert_int_equal(k.key_len, 16);
		assert_memory_equal(k.key, key, 16);
		assert_int_equal(k.iv_len, 12);
		assert_memory_equal(k.iv, iv, 12);
	}
}

static void test_tls13_bad_args(void **state)
{
	unsigned char secret[32] = { 1 };
	struct kts_dir_keys k;

	(void)state;
	assert_int_equal(kts_tls13_traffic_keys("SHA256", secret, 32, KTS_AEAD_NONE, &k), -1);
	assert_int_equal(kts_tls13_traffic_keys("NO-SUCH-MD", secret, 32, KTS_AEAD_AES_128_GCM, &k), -1);
}

/* RFC 8448 has no KeyUpdate; compare with HKDF-Expand-Label(s, "traffic upd"). */
static void test_tls13_next_secret(void **state)
{
	static const struct {
		const char *digest;
		size_t len;
	} mds[] = { { "SHA256", 32 }, { "SHA384", 48 } };
	unsigned char secret[48], next[48], want[48];

	(void)state;
	for (size_t i = 0; i < sizeof secret; i++)
		secret[i] = (unsigned char)(0x30 + i);
	for (size_t i = 0; i < 2; i++) {
		memset(next, 0, sizeof next);
		assert_int_equal(kts_tls13_next_secret(mds[i].digest, secret, mds[i].len, next), 0);
		expand_label(mds[i].digest, secret, mds[i].len, "traffic upd", want, mds[i].len);
		assert_memory_equal(next, want, mds[i].len);
	}
}

/* ---- the kernel's view of a crypto_info ---------------------------------- */

/* One direction of a kernel TLS context, built only from a crypto_info. */
struct kdir {
	int version;
	const EVP_CIPHER *cipher;
	unsigned char key[32];
	unsigned char salt[4]; /* GCM */
	unsigned char iv[12];  /* GCM: 8 bytes (TLS 1.2 TX explicit nonce); ChaCha: 12 */
	size_t salt_len, iv_len;
	uint64_t seq;
};

#define KDIR_TAKE(type, kd, info)                                         \
	do {                                                              \
		struct type ci_;                                          \
		assert_int_equal((info)->len, sizeof ci_);                \
		memcpy(&ci_, (info)->bytes, sizeof ci_);                  \
		memcpy((kd)->key, ci_.key, sizeof ci_.key);               \
		memcpy((kd)->salt, ci_.salt, sizeof ci_.salt);            \
		memcpy((kd)->iv, ci_.iv, sizeof ci_.iv);                  \
		(kd)->salt_len = sizeof ci_.salt;                         \
		(kd)->iv_len = sizeof ci_.iv;                             \
		(kd)->seq = get_be64(ci_.rec_seq);                        \
	} while (0)

static void kdir_init(struct kdir *kd, const struct kts_crypto_info *info)
{
	struct tls_crypto_info h;

	memset(kd, 0, sizeof *kd);
	memcpy(&h, info->bytes, sizeof h);
	kd->version = h.version;
	switch (h.cipher_type) {
	case TLS_CIPHER_AES_GCM_128:
		KDIR_TAKE(tls12_crypto_info_aes_gcm_128, kd, info);
		kd->cipher = EVP_aes_128_gcm();
		break;
	case TLS_CIPHER_AES_GCM_256:
		KDIR_TAKE(tls12_crypto_info_aes_gcm_256, kd, info);
		kd->cipher = EVP_aes_256_gcm();
		break;
	case TLS_CIPHER_CHACHA20_POLY1305:
		KDIR_TAKE(tls12_crypto_info_chacha20_poly1305, kd, info);
		kd->cipher = EVP_chacha20_poly1305();
		break;
	default:
		fail_msg("unexpected cipher_type %u", h.cipher_type);
	}
}

static int tls12_gcm(const struct kdir *kd)
{
	return kd->version == TLS_1_2_VERSION && kd->salt_len == 4;
}

/* The per-record nonce. TLS 1.2 GCM: salt || explicit nonce from the record;
 * otherwise (salt || iv) XOR the sequence number, right-aligned. */
static void knonce(const struct kdir *kd, const unsigned char *explicit_nonce, unsigned char nonce[12])
{
	if (tls12_gcm(kd)) {
		memcpy(nonce, kd->salt, 4);
		memcpy(nonce + 4, explicit_nonce, 8);
		return;
	}
	assert_int_equal(kd->salt_len + kd->iv_len, 12);
	memcpy(nonce, kd->salt, kd->salt_len);
	memcpy(nonce + kd->salt_len, kd->iv, kd->iv_len);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] ^= (unsigned char)(kd->seq >> (56 - 8 * i));
}

/* AAD: TLS 1.3 the record header; TLS 1.2 seq || type || version || length. */
static size_t kaad(const struct kdir *kd, const unsigned char *hdr, size_t plain_len, unsigned char aad[13])
{
	if (kd->version == TLS_1_3_VERSION) {
		memcpy(aad, hdr, 5);
		return 5;
	}
	put_be64(aad, kd->seq);
	aad[8] = hdr[0];
	aad[9] = 3;
	aad[10] = 3;
	aad[11] = (unsigned char)(plain_len >> 8);
	aad[12] = (unsigned char)plain_len;
	return 13;
}

/* AEAD seal (enc = 1, writes tag) or open (enc = 0, checks tag). 1 = success. */
static int aead(const struct kdir *kd, int enc, const unsigned char nonce[12], const unsigned char *aad,
		size_t aad_len, const unsigned char *in, size_t n, unsigned char *out, unsigned char tag[16])
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int len, ok;

	ok = EVP_CipherInit_ex(ctx, kd->cipher, NULL, kd->key, nonce, enc) &&
	     EVP_CipherUpdate(ctx, NULL, &len, aad, (int)aad_len) &&
	     EVP_CipherUpdate(ctx, out, &len, in, (int)n) &&
	     (enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag)) &&
	     EVP_CipherFinal_ex(ctx, out + len, &len) &&
	     (!enc || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag));
	EVP_CIPHER_CTX_free(ctx);
	return ok;
}

/* Kernel TX: one record of the given content type; returns its length. */
static size_t kseal(struct kdir *kd, unsigned char type, const void *data, size_t n, unsigned char *rec)
{
	int tls13 = kd->version == TLS_1_3_VERSION;
	size_t expl = tls12_gcm(kd) ? 8 : 0, inner = n + (size_t)tls13, len = expl + inner + 16;
	unsigned char plain[BUFSZ], nonce[12], aad[13];
	size_t aad_len;

	assert_true(5 + len <= BUFSZ);
	memcpy(plain, data, n);
	if (tls13)
		plain[n] = type; /* TLSInnerPlaintext, no padding */
	rec[0] = tls13 ? 23 : type;
	rec[1] = 3;
	rec[2] = 3;
	rec[3] = (unsigned char)(len >> 8);
	rec[4] = (unsigned char)len;
	memcpy(rec + 5, kd->iv, expl);
	knonce(kd, rec + 5, nonce);
	aad_len = kaad(kd, rec, inner, aad);
	assert_true(aead(kd, 1, nonce, aad, aad_len, plain, inner, rec + 5 + expl, rec + 5 + expl + inner));
	kd->seq++;
	for (size_t i = expl; i-- > 0;) /* the kernel counts the explicit nonce up */
		if (++kd->iv[i])
			break;
	return 5 + len;
}

struct buf {
	unsigned char d[BUFSZ];
	size_t len, off;
};

/* Kernel RX: open the record at b->off; returns the content type. */
static int kopen(struct kdir *kd, struct buf *b, unsigned char *out, size_t *out_len)
{
	const unsigned char *rec = b->d + b->off;
	int tls13 = kd->version == TLS_1_3_VERSION;
	size_t expl = tls12_gcm(kd) ? 8 : 0, len, n, aad_len;
	unsigned char nonce[12], aad[13], tag[16];

	assert_true(b->len - b->off >= 5);
	assert_int_equal(rec[1], 3);
	assert_int_equal(rec[2], 3);
	len = (size_t)rec[3] << 8 | rec[4];
	assert_true(b->len - b->off >= 5 + len);
	assert_true(len >= expl + 16 + (size_t)tls13);
	n = len - expl - 16;
	knonce(kd, rec + 5, nonce);
	aad_len = kaad(kd, rec, n, aad);
	memcpy(tag, rec + 5 + expl + n, 16);
	if (!aead(kd, 0, nonce, aad, aad_len, rec + 5 + expl, n, out, tag))
		fail_msg("record %llu (type %u, %zu bytes) does not open", (unsigned long long)kd->seq, rec[0], len);
	kd->seq++;
	b->off += 5 + len;
	if (!tls13) {
		*out_len = n;
		return rec[0];
	}
	assert_int_equal(rec[0], 23);
	while (n > 0 && out[n - 1] == 0)
		n--;
	assert_true(n > 0);
	*out_len = n - 1;
	return out[n - 1];
}

/* ---- in-memory handshakes ------------------------------------------------ */

static EVP_PKEY *g_key;
static X509 *g_cert;

static int make_cert(void **state)
{
	X509_NAME *name;

	(void)state;
	g_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	g_cert = X509_new();
	if (!g_key || !g_cert)
		return -1;
	name = X509_get_subject_name(g_cert);
	if (!X509_set_version(g_cert, X509_VERSION_3) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(g_cert), 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(g_cert), 0) ||
	    !X509_gmtime_adj(X509_getm_notAfter(g_cert), 3600) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"kts-test", -1, -1, 0) ||
	    !X509_set_issuer_name(g_cert, name) || !X509_set_pubkey(g_cert, g_key) ||
	    !X509_sign(g_cert, g_key, EVP_sha256()))
		return -1;
	return 0;
}

static int free_cert(void **state)
{
	(void)state;
	X509_free(g_cert);
	EVP_PKEY_free(g_key);
	return 0;
}

struct hs_case {
	const char *name;
	int version;        /* KTS_TLS1_2 / KTS_TLS1_3 */
	const char *suite;  /* OpenSSL's name */
	const char *digest; /* PRF / HKDF hash */
	enum kts_aead aead;
	unsigned int cipher_type; /* TLS_CIPHER_* */
	int tickets;        /* TLS 1.3 NewSessionTickets the server sends */
};

static const struct hs_case cases[] = {
	{ "tls12_aes128gcm", KTS_TLS1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", "SHA256", KTS_AEAD_AES_128_GCM,
	  TLS_CIPHER_AES_GCM_128, 0 },
	{ "tls12_aes256gcm", KTS_TLS1_2, "ECDHE-ECDSA-AES256-GCM-SHA384", "SHA384", KTS_AEAD_AES_256_GCM,
	  TLS_CIPHER_AES_GCM_256, 0 },
	{ "tls12_chacha20", KTS_TLS1_2, "ECDHE-ECDSA-CHACHA20-POLY1305", "SHA256", KTS_AEAD_CHACHA20_POLY1305,
	  TLS_CIPHER_CHACHA20_POLY1305, 0 },
	{ "tls13_aes128gcm", KTS_TLS1_3, "TLS_AES_128_GCM_SHA256", "SHA256", KTS_AEAD_AES_128_GCM,
	  TLS_CIPHER_AES_GCM_128, 0 },
	{ "tls13_aes256gcm", KTS_TLS1_3, "TLS_AES_256_GCM_SHA384", "SHA384", KTS_AEAD_AES_256_GCM,
	  TLS_CIPHER_AES_GCM_256, 0 },
	{ "tls13_chacha20", KTS_TLS1_3, "TLS_CHACHA20_POLY1305_SHA256", "SHA256", KTS_AEAD_CHACHA20_POLY1305,
	  TLS_CIPHER_CHACHA20_POLY1305, 0 },
	/* OpenSSL's default of two tickets: server TX starts at 2, client RX at 0 */
	{ "tls13_aes128gcm_tickets", KTS_TLS1_3, "TLS_AES_128_GCM_SHA256", "SHA256", KTS_AEAD_AES_128_GCM,
	  TLS_CIPHER_AES_GCM_128, 2 },
};

struct conn {
	SSL *cli, *srv;
	BIO *c2s, *s2c;
	unsigned char csecret[48], ssecret[48]; /* TLS 1.3 *_TRAFFIC_SECRET_0 */
	size_t csecret_len, ssecret_len;
	int tickets; /* NewSessionTicket messages the server wrote */
};

static void keylog_cb(const SSL *ssl, const char *line)
{
	struct conn *c = SSL_get_app_data(ssl);
	const char *hex = strrchr(line, ' ');

	if (!hex || strlen(hex + 1) > 2 * sizeof c->csecret)
		return;
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
		c->csecret_len = unhex(hex + 1, c->csecret, sizeof c->csecret);
	else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
		c->ssecret_len = unhex(hex + 1, c->ssecret, sizeof c->ssecret);
}

static void msg_cb(int write_p, int version, int type, const void *buf, size_t len, SSL *ssl, void *arg)
{
	(void)version;
	(void)ssl;
	if (write_p && type == SSL3_RT_HANDSHAKE && len > 0 &&
	    ((const unsigned char *)buf)[0] == SSL3_MT_NEWSESSION_TICKET)
		++*(int *)arg;
}

/* Client and server SSLs joined by two memory BIOs, handshake done. */
static void handshake(struct conn *c, const struct hs_case *hc)
{
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method()), *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *ctxs[2] = { cctx, sctx };
	int cdone = 0, sdone = 0;

	memset(c, 0, sizeof *c);
	for (int i = 0; i < 2; i++) {
		assert_non_null(ctxs[i]);
		assert_true(SSL_CTX_set_min_proto_version(ctxs[i], hc->version));
		assert_true(SSL_CTX_set_max_proto_version(ctxs[i], hc->version));
		if (hc->version == KTS_TLS1_3)
			assert_true(SSL_CTX_set_ciphersuites(ctxs[i], hc->suite));
		else
			assert_true(SSL_CTX_set_cipher_list(ctxs[i], hc->suite));
	}
	assert_true(SSL_CTX_use_certificate(sctx, g_cert));
	assert_true(SSL_CTX_use_PrivateKey(sctx, g_key));
	assert_true(SSL_CTX_set_num_tickets(sctx, (size_t)hc->tickets));
	SSL_CTX_set_keylog_callback(cctx, keylog_cb);

	c->cli = SSL_new(cctx);
	c->srv = SSL_new(sctx);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	assert_non_null(c->cli);
	assert_non_null(c->srv);
	SSL_set_app_data(c->cli, c);
	SSL_set_msg_callback(c->srv, msg_cb);
	SSL_set_msg_callback_arg(c->srv, &c->tickets);

	c->c2s = BIO_new(BIO_s_mem());
	c->s2c = BIO_new(BIO_s_mem());
	BIO_set_mem_eof_return(c->c2s, -1);
	BIO_set_mem_eof_return(c->s2c, -1);
	BIO_up_ref(c->c2s); /* each BIO is one SSL's rbio and the other's wbio */
	BIO_up_ref(c->s2c);
	SSL_set_bio(c->cli, c->s2c, c->c2s);
	SSL_set_bio(c->srv, c->c2s, c->s2c);
	SSL_set_connect_state(c->cli);
	SSL_set_accept_state(c->srv);

	for (int i = 0; i < 10 && !(cdone && sdone); i++) {
		if (!cdone)
			cdone = SSL_do_handshake(c->cli) == 1;
		if (!sdone)
			sdone = SSL_do_handshake(c->srv) == 1;
	}
	assert_true(cdone && sdone);
	assert_int_equal(SSL_version(c->cli), hc->version);
	if (hc->version == KTS_TLS1_3) /* TLS 1.2's ticket goes before ChangeCipherSpec */
		assert_int_equal(c->tickets, hc->tickets);
	/* kts picks the AEAD from the negotiated suite */
	assert_int_equal(kts_aead_from_suite(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(c->cli))), hc->aead);
}

static void drain(BIO *bio, struct buf *b)
{
	int n = BIO_read(bio, b->d, sizeof b->d);

	b->len = n > 0 ? (size_t)n : 0;
	b->off = 0;
	assert_int_equal(BIO_ctrl_pending(bio), 0);
}

/* kts_crypto_info_build, its header checked, as the kernel would take it. */
static void kdir_from_keys(struct kdir *kd, const struct hs_case *hc, const struct kts_dir_keys *k, uint64_t seq)
{
	struct kts_crypto_info info;
	struct tls_crypto_info h;
	unsigned char be[8];

	memset(&info, 0xee, sizeof info);
	assert_int_equal(kts_crypto_info_build(hc->version, hc->aead, k, seq, &info), 0);
	memcpy(&h, info.bytes, sizeof h);
	assert_int_equal(h.version, hc->version == KTS_TLS1_3 ? TLS_1_3_VERSION : TLS_1_2_VERSION);
	assert_int_equal(h.cipher_type, hc->cipher_type);
	kdir_init(kd, &info); /* also checks info.len against the struct */
	assert_int_equal(kd->seq, seq);
	assert_memory_equal(kd->key, k->key, k->key_len);
	if (tls12_gcm(kd)) {
		/* salt = implicit IV; iv = first explicit nonce = seq */
		put_be64(be, seq);
		assert_memory_equal(kd->iv, be, 8);
		assert_memory_equal(kd->salt, k->iv, 4);
	}
}

/*
 * One direction writer -> reader over link, keys k (from traffic secret
 * secret for TLS 1.3). tx_seq: writer's TX sequence number after the
 * handshake; rx_seq: reader's RX sequence number.
 */
static void check_link(const struct hs_case *hc, SSL *writer, SSL *reader, BIO *link, const unsigned char *secret,
		       size_t secret_len, const struct kts_dir_keys *k, uint64_t tx_seq, uint64_t rx_seq)
{
	static const unsigned char key_update[5] = { SSL3_MT_KEY_UPDATE, 0, 0, 1, 0 }; /* update_not_requested */
	struct kdir tx, rx;
	struct kts_dir_keys k2;
	struct buf pending, recs;
	unsigned char rec[BUFSZ], next[48], pt[BUFSZ];
	char got[64];
	size_t n;

	/* Records the writer wrote before the handoff (TLS 1.3 tickets), unread. */
	drain(link, &pending);

	/* kernel TX: the reader's OpenSSL must take our record */
	kdir_from_keys(&tx, hc, k, tx_seq);
	assert_int_equal(BIO_write(link, pending.d, (int)pending.len), (int)pending.len);
	n = kseal(&tx, 23, "from kernel tx", 14, rec);
	assert_int_equal(BIO_write(link, rec, (int)n), (int)n);
	assert_int_equal(SSL_read(reader, got, sizeof got), 14);
	assert_memory_equal(got, "from kernel tx", 14);

	/* kernel RX: the tickets, then what the writer's OpenSSL sends */
	kdir_from_keys(&rx, hc, k, rx_seq);
	for (int i = 0; pending.off < pending.len; i++) {
		assert_true(i < hc->tickets);
		assert_int_equal(kopen(&rx, &pending, pt, &n), SSL3_RT_HANDSHAKE);
		assert_int_equal(pt[0], SSL3_MT_NEWSESSION_TICKET);
	}
	assert_int_equal(SSL_write(writer, "from openssl", 12), 12);
	drain(link, &recs);
	assert_int_equal(kopen(&rx, &recs, pt, &n), SSL3_RT_APPLICATION_DATA);
	assert_int_equal(n, 12);
	assert_memory_equal(pt, "from openssl", 12);
	assert_int_equal(recs.off, recs.len);

	if (hc->version != KTS_TLS1_3)
		return;

	/* KeyUpdate: the new keys come from kts_tls13_next_secret */
	assert_int_equal(kts_tls13_next_secret(hc->digest, secret, secret_len, next), 0);
	assert_int_equal(kts_tls13_traffic_keys(hc->digest, next, secret_len, hc->aead, &k2), 0);

	/* RX: OpenSSL sends KeyUpdate under the old keys, data under the new */
	assert_true(SSL_key_update(writer, SSL_KEY_UPDATE_NOT_REQUESTED));
	assert_int_equal(SSL_write(writer, "after update", 12), 12);
	drain(link, &recs);
	assert_int_equal(kopen(&rx, &recs, pt, &n), SSL3_RT_HANDSHAKE);
	assert_int_equal(n, sizeof key_update);
	assert_memory_equal(pt, key_update, sizeof key_update);
	kdir_from_keys(&rx, hc, &k2, 0);
	assert_int_equal(kopen(&rx, &recs, pt, &n), SSL3_RT_APPLICATION_DATA);
	assert_int_equal(n, 12);
	assert_memory_equal(pt, "after update", 12);

	/* TX: we send the KeyUpdate, rekey at seq 0; the reader must follow */
	n = kseal(&tx, SSL3_RT_HANDSHAKE, key_update, sizeof key_update, rec);
	assert_int_equal(BIO_write(link, rec, (int)n), (int)n);
	kdir_from_keys(&tx, hc, &k2, 0);
	n = kseal(&tx, 23, "kernel, new keys", 16, rec);
	assert_int_equal(BIO_write(link, rec, (int)n), (int)n);
	assert_int_equal(SSL_read(reader, got, sizeof got), 16);
	assert_memory_equal(got, "kernel, new keys", 16);
}

static void test_handshake(void **state)
{
	const struct hs_case *hc = *state;
	int tls13 = hc->version == KTS_TLS1_3;
	size_t key_len = hc->aead == KTS_AEAD_AES_128_GCM ? 16 : 32;
	size_t iv_len = tls13 || hc->aead == KTS_AEAD_CHACHA20_POLY1305 ? 12 : 4;
	struct kts_dir_keys cw, sw;
	struct conn c;

	handshake(&c, hc);
	memset(&cw, 0xa5, sizeof cw);
	memset(&sw, 0x5a, sizeof sw);
	if (tls13) {
		size_t md_len = strcmp(hc->digest, "SHA384") ? 32 : 48;

		assert_int_equal(c.csecret_len, md_len);
		assert_int_equal(c.ssecret_len, md_len);
		assert_int_equal(kts_tls13_traffic_keys(hc->digest, c.csecret, md_len, hc->aead, &cw), 0);
		assert_int_equal(kts_tls13_traffic_keys(hc->digest, c.ssecret, md_len, hc->aead, &sw), 0);
	} else {
		unsigned char ms[48], cr[32], sr[32];

		assert_int_equal(SSL_SESSION_get_master_key(SSL_get_session(c.cli), ms, sizeof ms), 48);
		assert_int_equal(SSL_get_client_random(c.cli, cr, sizeof cr), 32);
		assert_int_equal(SSL_get_server_random(c.cli, sr, sizeof sr), 32);
		assert_int_equal(kts_tls12_keys(hc->digest, ms, 48, cr, sr, hc->aead, &cw, &sw), 0);
	}
	assert_int_equal(kts_aead_key_len(hc->aead), key_len);
	assert_int_equal(cw.key_len, key_len);
	assert_int_equal(sw.key_len, key_len);
	assert_int_equal(cw.iv_len, iv_len);
	assert_int_equal(sw.iv_len, iv_len);

	/* sequence numbers right after the handshake (facts file section 2) */
	check_link(hc, c.cli, c.srv, c.c2s, c.csecret, c.csecret_len, &cw, tls13 ? 0 : 1, tls13 ? 0 : 1);
	check_link(hc, c.srv, c.cli, c.s2c, c.ssecret, c.ssecret_len, &sw, tls13 ? (uint64_t)c.tickets : 1,
		   tls13 ? 0 : 1);

	SSL_free(c.cli);
	SSL_free(c.srv);
}

/* ---- suites, layout, errors ---------------------------------------------- */

static void test_aead_from_suite(void **state)
{
	static const struct {
		uint16_t id;
		enum kts_aead aead;
		int optional; /* NONE is acceptable too */
	} t[] = {
		{ 0x1301, KTS_AEAD_AES_128_GCM, 0 },       /* TLS_AES_128_GCM_SHA256 */
		{ 0x1302, KTS_AEAD_AES_256_GCM, 0 },       /* TLS_AES_256_GCM_SHA384 */
		{ 0x1303, KTS_AEAD_CHACHA20_POLY1305, 0 }, /* TLS_CHACHA20_POLY1305_SHA256 */
		{ 0xC02F, KTS_AEAD_AES_128_GCM, 0 },       /* ECDHE-RSA-AES128-GCM-SHA256 */
		{ 0xC030, KTS_AEAD_AES_256_GCM, 0 },       /* ECDHE-RSA-AES256-GCM-SHA384 */
		{ 0xCCA8, KTS_AEAD_CHACHA20_POLY1305, 0 }, /* ECDHE-RSA-CHACHA20-POLY1305 */
		{ 0xC02B, KTS_AEAD_AES_128_GCM, 0 },       /* ECDHE-ECDSA-AES128-GCM-SHA256 */
		{ 0xC02C, KTS_AEAD_AES_256_GCM, 0 },       /* ECDHE-ECDSA-AES256-GCM-SHA384 */
		{ 0xCCA9, KTS_AEAD_CHACHA20_POLY1305, 0 }, /* ECDHE-ECDSA-CHACHA20-POLY1305 */
		/* static RSA / DHE: the record layer is the same AEAD */
		{ 0x009C, KTS_AEAD_AES_128_GCM, 1 },       /* AES128-GCM-SHA256 */
		{ 0x009D, KTS_AEAD_AES_256_GCM, 1 },       /* AES256-GCM-SHA384 */
		{ 0x009E, KTS_AEAD_AES_128_GCM, 1 },       /* DHE-RSA-AES128-GCM-SHA256 */
		{ 0xCCAA, KTS_AEAD_CHACHA20_POLY1305, 1 }, /* DHE-RSA-CHACHA20-POLY1305 */
		/* not offloaded */
		{ 0xC013, KTS_AEAD_NONE, 0 }, /* ECDHE-RSA-AES128-SHA (CBC) */
		{ 0x002F, KTS_AEAD_NONE, 0 }, /* AES128-SHA (CBC) */
		{ 0xC027, KTS_AEAD_NONE, 0 }, /* ECDHE-RSA-AES128-SHA256 (CBC) */
		{ 0x1304, KTS_AEAD_NONE, 0 }, /* TLS_AES_128_CCM_SHA256 */
		{ 0x1305, KTS_AEAD_NONE, 0 }, /* TLS_AES_128_CCM_8_SHA256 */
		{ 0xC0AC, KTS_AEAD_NONE, 0 }, /* ECDHE-ECDSA-AES128-CCM */
		{ 0x0000, KTS_AEAD_NONE, 0 },
		{ 0xFFFF, KTS_AEAD_NONE, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		enum kts_aead got = kts_aead_from_suite(t[i].id);

		if (got != t[i].aead && !(t[i].optional && got == KTS_AEAD_NONE))
			fail_msg("suite 0x%04X: aead %d, want %d", t[i].id, got, t[i].aead);
	}
	assert_int_equal(kts_aead_key_len(KTS_AEAD_NONE), 0);
	assert_int_equal(kts_aead_key_len(KTS_AEAD_AES_128_GCM), 16);
	assert_int_equal(kts_aead_key_len(KTS_AEAD_AES_256_GCM), 32);
	assert_int_equal(kts_aead_key_len(KTS_AEAD_CHACHA20_POLY1305), 32);
	assert_string_equal(kts_aead_name(KTS_AEAD_AES_128_GCM), "aes128gcm");
	assert_string_equal(kts_aead_name(KTS_AEAD_AES_256_GCM), "aes256gcm");
	assert_string_equal(kts_aead_name(KTS_AEAD_CHACHA20_POLY1305), "chacha20poly1305");
}

/* Field placement for known bytes, independent of any handshake. */
static void test_crypto_info_layout(void **state)
{
	static const struct {
		enum kts_aead aead;
		unsigned int cipher_type;
	} aeads[] = {
		{ KTS_AEAD_AES_128_GCM, TLS_CIPHER_AES_GCM_128 },
		{ KTS_AEAD_AES_256_GCM, TLS_CIPHER_AES_GCM_256 },
		{ KTS_AEAD_CHACHA20_POLY1305, TLS_CIPHER_CHACHA20_POLY1305 },
	};
	const uint64_t seq = 0x0102030405060708ull;
	unsigned char be[8];

	(void)state;
	put_be64(be, seq);
	for (int v = 0; v < 2; v++) {
		int version = v ? KTS_TLS1_3 : KTS_TLS1_2;

		for (size_t a = 0; a < 3; a++) {
			struct hs_case hc = { .version = version, .aead = aeads[a].aead,
					      .cipher_type = aeads[a].cipher_type };
			int gcm = aeads[a].aead != KTS_AEAD_CHACHA20_POLY1305;
			struct kts_dir_keys k;
			struct kdir kd;

			k.key_len = kts_aead_key_len(aeads[a].aead);
			k.iv_len = v || !gcm ? 12 : 4;
			for (size_t i = 0; i < sizeof k.key; i++)
				k.key[i] = (unsigned char)(0x40 + i);
			for (size_t i = 0; i < sizeof k.iv; i++)
				k.iv[i] = (unsigned char)(0xc0 + i);
			kdir_from_keys(&kd, &hc, &k, seq); /* header, len, key, rec_seq, TLS 1.2 GCM iv/salt */
			if (!gcm)
				assert_memory_equal(kd.iv, k.iv, 12);
			else if (v) {
				assert_memory_equal(kd.salt, k.iv, 4);
				assert_memory_equal(kd.iv, k.iv + 4, 8);
			}
			assert_memory_equal(kd.key, k.key, k.key_len);
		}
	}
}

static void test_crypto_info_rejects(void **state)
{
	struct kts_dir_keys k = { .key_len = 16, .iv_len = 12 };
	struct kts_crypto_info info;

	(void)state;
	assert_int_equal(kts_crypto_info_build(KTS_TLS1_3, KTS_AEAD_NONE, &k, 0, &info), -1);
	assert_int_equal(kts_crypto_info_build(KTS_TLS1_3, (enum kts_aead)42, &k, 0, &info), -1);
	assert_int_equal(kts_crypto_info_build(KTS_TLS1_2, KTS_AEAD_NONE, &k, 0, &info), -1);
	assert_int_equal(kts_crypto_info_build(0x0302, KTS_AEAD_AES_128_GCM, &k, 0, &info), -1);
	assert_int_equal(kts_crypto_info_build(0x0305, KTS_AEAD_AES_128_GCM, &k, 0, &info), -1);
	assert_int_equal(kts_crypto_info_build(0, KTS_AEAD_AES_128_GCM, &k, 0, &info), -1);
	assert_int_equal(kts_crypto_info_build(KTS_TLS1_3, KTS_AEAD_AES_128_GCM, &k, 0, &info), 0);
}

#define HS(i) { cases[i].name, test_handshake, NULL, NULL, (void *)&cases[i] }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc8448_traffic_keys),
		cmocka_unit_test(test_tls13_bad_args),
		cmocka_unit_test(test_tls13_next_secret),
		cmocka_unit_test(test_aead_from_suite),
		cmocka_unit_test(test_crypto_info_layout),
		cmocka_unit_test(test_crypto_info_rejects),
		HS(0), HS(1), HS(2), HS(3), HS(4), HS(5), HS(6),
	};

	return cmocka_run_group_tests(tests, make_cert, free_cert);
}
