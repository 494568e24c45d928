/*
 * test_config.c - configuration validation: each bad input is refused with a
 * message naming the problem, good input is accepted; plus the sequence
 * numbers the handoff starts from.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "kernel.h"
#include "keysched.h"
#include "kts.h"

static struct kts_config *cfg;

static int setup(void **state)
{
	(void)state;
	cfg = kts_config_new();
	return cfg ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	kts_config_free(cfg);
	return 0;
}

/* The call failed with code and the message mentions needle. */
#define assert_fails(call, code, needle)                                                 \
	do {                                                                             \
		assert_int_equal((call), (code));                                        \
		if (!strstr(kts_config_error(cfg), (needle)))                            \
			fail_msg("message '%s' lacks '%s'", kts_config_error(cfg), (needle)); \
	} while (0)

static void test_protocols(void **state)
{
	(void)state;
	assert_int_equal(kts_config_set_protocols(cfg, KTS_TLS1_2, KTS_TLS1_3), KTS_OK);
	assert_fails(kts_config_set_protocols(cfg, KTS_TLS1_3, KTS_TLS1_2), KTS_ERR_ARG,
		     "minimum is above maximum");
	assert_fails(kts_config_set_protocols(cfg, 0x0302, KTS_TLS1_3), KTS_ERR_ARG, "TLS 1.2");
	assert_int_equal(kts_config_parse_protocols(cfg, "1.3"), KTS_OK);
	assert_int_equal(kts_config_parse_protocols(cfg, "1.2-1.3"), KTS_OK);
	assert_int_equal(kts_config_parse_protocols(cfg, "all"), KTS_OK);
	assert_fails(kts_config_parse_protocols(cfg, "1.1"), KTS_ERR_ARG, "'1.1'");
	assert_fails(kts_config_parse_protocols(cfg, "1.3-1.2"), KTS_ERR_ARG, "above");
	assert_fails(kts_config_parse_protocols(cfg, "1.2-"), KTS_ERR_ARG, "'1.2-'");
	assert_fails(kts_config_parse_protocols(cfg, NULL), KTS_ERR_ARG, "no value");
}

static void test_offload_and_verify(void **state)
{
	(void)state;
	assert_int_equal(kts_config_parse_offload(cfg, "require"), KTS_OK);
	assert_int_equal(kts_config_parse_offload(cfg, "off"), KTS_OK);
	assert_int_equal(kts_config_parse_offload(cfg, "auto"), KTS_OK);
	assert_fails(kts_config_parse_offload(cfg, "yes"), KTS_ERR_ARG, "'yes'");
	assert_fails(kts_config_set_offload(cfg, 7), KTS_ERR_ARG, "unknown policy 7");
	assert_int_equal(kts_config_set_verify(cfg, 0), KTS_OK);
	assert_fails(kts_config_set_verify(cfg, KTS_VERIFY_NAME), KTS_ERR_ARG, "without the chain");
	assert_fails(kts_config_set_verify(cfg, 0x10), KTS_ERR_ARG, "unknown flags");
}

/* The probe agrees with /proc/net/tls_stat, which exists once the tls module is
 * loaded (the probe loads it first where the kernel may). */
static void test_kernel_has_tls(void **state)
{
	int r = kts_kernel_has_tls();

	(void)state;
	assert_true(r == 0 || r == 1);
	assert_int_equal(r, access("/proc/net/tls_stat", F_OK) == 0);
}

/* TLS 1.2 by default: ECDHE and AEAD only (no CBC, no static RSA), each
 * offloadable; TLS 1.3 suites are all AEAD anyway. A caller's list wins. */
static void test_default_ciphers(void **state)
{
	struct kts *c = kts_client_new(cfg);
	STACK_OF(SSL_CIPHER) *list;
	int tls12 = 0;

	(void)state;
	assert_non_null(c);
	list = SSL_get_ciphers(kts_ssl(c));
	for (int i = 0; i < sk_SSL_CIPHER_num(list); i++) {
		const SSL_CIPHER *ci = sk_SSL_CIPHER_value(list, i);

		if (SSL_CIPHER_get_kx_nid(ci) == NID_kx_any)
			continue; /* TLS 1.3 */
		tls12++;
		if (!SSL_CIPHER_is_aead(ci) || SSL_CIPHER_get_kx_nid(ci) != NID_kx_ecdhe)
			fail_msg("default TLS 1.2 cipher %s is not ECDHE+AEAD", SSL_CIPHER_get_name(ci));
	}
	assert_int_equal(tls12, 6);
	kts_free(c);
	assert_int_equal(kts_config_set_ciphers(cfg, "AES128-SHA"), KTS_OK);
	c = kts_client_new(cfg);
	list = SSL_get_ciphers(kts_ssl(c));
	assert_string_equal(SSL_CIPHER_get_name(sk_SSL_CIPHER_value(list, sk_SSL_CIPHER_num(list) - 1)),
			    "AES128-SHA");
	kts_free(c);
}

static void test_ciphers_alpn_name(void **state)
{
	char long_name[300];

	(void)state;
	assert_int_equal(kts_config_set_ciphers(cfg, "ECDHE-ECDSA-AES128-GCM-SHA256"), KTS_OK);
	assert_fails(kts_config_set_ciphers(cfg, "NOPE-CIPHER"), KTS_ERR_ARG, "NOPE-CIPHER");
	assert_int_equal(kts_config_set_ciphersuites(cfg, "TLS_AES_256_GCM_SHA384"), KTS_OK);
	assert_fails(kts_config_set_ciphersuites(cfg, "TLS_NOPE"), KTS_ERR_ARG, "TLS_NOPE");
	assert_int_equal(kts_config_set_alpn(cfg, "h2,http/1.1"), KTS_OK);
	assert_fails(kts_config_set_alpn(cfg, "h2,,x"), KTS_ERR_ARG, "empty or over-long name");
	assert_fails(kts_config_set_alpn(cfg, ""), KTS_ERR_ARG, "empty");
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_fails(kts_config_set_alpn(cfg, long_name), KTS_ERR_ARG, "over-long");
	assert_fails(kts_config_set_server_name(cfg, long_name), KTS_ERR_ARG, "253");
	assert_int_equal(kts_config_set_server_name(cfg, "example.org"), KTS_OK);
}

/* PEM of a fresh P-256 key and a self-signed certificate for it. */
static void make_pem(char **cert_pem, char **key_pem)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	BIO *b;
	char *p;
	long n;

	X509_set_pubkey(x, k);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 60);
	X509_sign(x, k, EVP_sha256());
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	*cert_pem = strndup(p, (size_t)n);
	BIO_free(b);
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	n = BIO_get_mem_data(b, &p);
	*key_pem = strndup(p, (size_t)n);
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(k);
}

static void test_cert_and_key(void **state)
{
	char *cert1, *key1, *cert2, *key2;

	(void)state;
	make_pem(&cert1, &key1);
	make_pem(&cert2, &key2);
	assert_null(kts_server_new(cfg));
	assert_non_null(strstr(kts_config_error(cfg), "no certificate and key"));
	assert_fails(kts_config_set_cert_file(cfg, "/nonexistent/cert.pem"), KTS_ERR_ARG,
		     "/nonexistent/cert.pem: No such file");
	assert_fails(kts_config_set_key_file(cfg, "/"), KTS_ERR_ARG, "not a regular file");
	assert_fails(kts_config_set_cert_mem(cfg, "garbage", 7), KTS_ERR_ARG, "no PEM certificate");
	assert_fails(kts_config_set_key_mem(cfg, cert1, strlen(cert1)), KTS_ERR_ARG,
		     "no unencrypted PEM private key");
	{
		/* An encrypted key is refused, never a passphrase prompt. */
		EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		BIO *b = BIO_new(BIO_s_mem());
		char *p;
		long n;

		PEM_write_bio_PrivateKey(b, k, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL,
					 NULL);
		n = BIO_get_mem_data(b, &p);
		assert_fails(kts_config_set_key_mem(cfg, p, (size_t)n), KTS_ERR_ARG,
			     "no unencrypted PEM private key");
		BIO_free(b);
		EVP_PKEY_free(k);
	}
	assert_fails(kts_config_set_cert_mem(cfg, NULL, 0), KTS_ERR_ARG, "empty");
	assert_int_equal(kts_config_set_cert_mem(cfg, cert1, strlen(cert1)), KTS_OK);
	assert_fails(kts_config_set_key_mem(cfg, key2, strlen(key2)), KTS_ERR_ARG,
		     "does not match");
	assert_int_equal(kts_config_set_key_mem(cfg, key1, strlen(key1)), KTS_OK);
	struct kts *c = kts_server_new(cfg);
	assert_non_null(c);
	/* A connection keeps what it needs when its config goes away first. */
	kts_config_free(cfg);
	cfg = kts_config_new();
	assert_int_equal(kts_offload(c, KTS_TX), KTS_PATH_NONE);
	assert_null(kts_offload_reason(c, KTS_TX));
	assert_int_equal(kts_handshake(c), KTS_ERR_STATE);
	assert_non_null(strstr(kts_error(c), "no socket attached"));
	assert_int_equal(kts_attach(c, -1), KTS_ERR_ARG);
	assert_int_equal(kts_set_server_name(c, "x"), KTS_ERR_STATE);
	kts_free(c);
	free(cert1), free(key1), free(cert2), free(key2);
}

static void test_ca(void **state)
{
	(void)state;
	assert_fails(kts_config_set_ca_file(cfg, "/nonexistent.pem"), KTS_ERR_ARG, "No such file");
	assert_fails(kts_config_set_ca_file(cfg, "/"), KTS_ERR_ARG, "not a regular file");
	assert_fails(kts_config_set_ca_path(cfg, "/dev/null"), KTS_ERR_ARG, "not a directory");
	assert_int_equal(kts_config_set_ca_path(cfg, "/"), KTS_OK);
}

static void test_next_seq(void **state)
{
	uint64_t seq[2];

	(void)state;
	kts_next_seq(KTS_TLS1_2, 1, 5, seq); /* TLS 1.2 tickets go before the keys change */
	assert_true(seq[0] == 1 && seq[1] == 1);
	kts_next_seq(KTS_TLS1_2, 0, 0, seq);
	assert_true(seq[0] == 1 && seq[1] == 1);
	kts_next_seq(KTS_TLS1_3, 0, 3, seq); /* a client never writes tickets */
	assert_true(seq[0] == 0 && seq[1] == 0);
	kts_next_seq(KTS_TLS1_3, 1, 2, seq);
	assert_true(seq[0] == 2 && seq[1] == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_protocols, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offload_and_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ciphers_alpn_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_ciphers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_and_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ca, setup, teardown),
		cmocka_unit_test(test_next_seq),
		cmocka_unit_test(test_kernel_has_tls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
