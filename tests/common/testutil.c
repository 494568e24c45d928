/*
 * testutil.c - see testutil.h.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

const struct suite test_suites[3] = {
	{"aes128gcm", "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_AES_128_GCM_SHA256"},
	{"aes256gcm", "ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_AES_256_GCM_SHA384"},
	{"chacha20poly1305", "ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_CHACHA20_POLY1305_SHA256"},
};

static X509 *cert;
static EVP_PKEY *pkey;
static char *cert_pem, *key_pem;

static char *to_pem(int is_key)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out;
	long len;

	if (is_key)
		PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
	else
		PEM_write_bio_X509(b, cert);
	len = BIO_get_mem_data(b, &data);
	out = strndup(data, (size_t)len);
	BIO_free(b);
	return out;
}

void test_cert_init(void)
{
	X509_NAME *name;

	if (cert)
		return;
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cert = X509_new();
	X509_set_version(cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), -60);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, pkey);
	name = X509_get_subject_name(cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
				   -1, 0);
	X509_set_issuer_name(cert, name);
	X509_sign(cert, pkey, EVP_sha256());
	cert_pem = to_pem(0);
	key_pem = to_pem(1);
}

void test_cert_free(void)
{
	X509_free(cert);
	EVP_PKEY_free(pkey);
	free(cert_pem);
	free(key_pem);
	cert = NULL;
	pkey = NULL;
}

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int ok = f && fputs(text, f) >= 0;

	return (f && fclose(f) == 0 && ok) ? 0 : -1;
}

int test_write_cert_files(const char *cert_path, const char *key_path)
{
	return write_file(cert_path, cert_pem) == 0 && write_file(key_path, key_pem) == 0 ? 0 : -1;
}

X509 *test_cert(void)
{
	return cert;
}

int test_tcp_pair(int fds[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &alen) < 0)
		return -1;
	fds[1] = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(fds[1], (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	fds[0] = accept(l, NULL, NULL);
	close(l);
	if (fds[0] < 0)
		return -1;
	/* No case may hang the VM: a stuck read or write fails after 30 s instead. */
	for (int i = 0; i < 2; i++) {
		struct timeval limit = {.tv_sec = 30};
		setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
		setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
	}
	return 0;
}

int test_host_has_ktls(void)
{
	int fds[2], ok;

	if (test_tcp_pair(fds) < 0)
		return 0;
	ok = setsockopt(fds[1], SOL_TCP, TCP_ULP, "tls", sizeof("tls")) == 0;
	close(fds[0]);
	close(fds[1]);
	return ok;
}

int test_expected_path(int argc, char **argv)
{
	if (argc == 1)
		return KTS_PATH_KERNEL;
	if (argc != 3 || strcmp(argv[1], "--expect") != 0)
		return -1;
	if (strcmp(argv[2], "kernel") == 0)
		return KTS_PATH_KERNEL;
	if (strcmp(argv[2], "user") == 0)
		return KTS_PATH_USER;
	if (strcmp(argv[2], "auto") == 0)
		return test_host_has_ktls() ? KTS_PATH_KERNEL : KTS_PATH_USER;
	return -1;
}

struct kts_config *test_kts_config(int version, const struct suite *s, int is_server)
{
	struct kts_config *cfg = kts_config_new();
	int v = version == 13 ? KTS_TLS1_3 : KTS_TLS1_2;

	if (!cfg)
		return NULL;
	if (kts_config_set_protocols(cfg, v, v) || kts_config_set_verify(cfg, 0) ||
	    kts_config_set_ciphers(cfg, s->tls12) || kts_config_set_ciphersuites(cfg, s->tls13) ||
	    (is_server && (kts_config_set_cert_mem(cfg, cert_pem, strlen(cert_pem)) ||
			   kts_config_set_key_mem(cfg, key_pem, strlen(key_pem))))) {
		fprintf(stderr, "config: %s\n", kts_config_error(cfg));
		kts_config_free(cfg);
		return NULL;
	}
	return cfg;
}

SSL_CTX *test_ssl_ctx(int version, const struct suite *s, int is_server)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	int v = version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;

	SSL_CTX_set_min_proto_version(ctx, v);
	SSL_CTX_set_max_proto_version(ctx, v);
	SSL_CTX_set_cipher_list(ctx, s->tls12);
	SSL_CTX_set_ciphersuites(ctx, s->tls13);
	if (is_server) {
		SSL_CTX_use_certificate(ctx, cert);
		SSL_CTX_use_PrivateKey(ctx, pkey);
	}
	return ctx;
}
