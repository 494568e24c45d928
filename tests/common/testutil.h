/*
 * testutil.h - shared by the guest test binaries: a throwaway certificate, a
 * loopback TCP pair, and kts / OpenSSL endpoints for one version and cipher.
 */
#ifndef KTS_TESTUTIL_H
#define KTS_TESTUTIL_H

#include <openssl/ssl.h>

#include "kts.h"

struct suite {
	const char *name;  /* "aes128gcm" ... */
	const char *tls12; /* OpenSSL TLS 1.2 cipher name (ECDSA certificate) */
	const char *tls13; /* TLS 1.3 suite */
};
extern const struct suite test_suites[3];

/* Create the process-wide throwaway P-256 certificate (once). */
void test_cert_init(void);
void test_cert_free(void);
/* The certificate itself (for writing a CA file). */
X509 *test_cert(void);

/* Write the certificate and its key as PEM files (for tools started by tests). 0 or -1. */
int test_write_cert_files(const char *cert_path, const char *key_path);

/* A connected loopback TCP pair: fds[0] accepted (server), fds[1] client. */
int test_tcp_pair(int fds[2]);

/* Does this kernel take the "tls" ULP on a loopback TCP socket? */
int test_host_has_ktls(void);

/* Parse "--expect kernel|user|auto" (argv after the program name) into the
 * path the kts side must report: auto follows test_host_has_ktls(). Returns
 * KTS_PATH_KERNEL or KTS_PATH_USER, or -1 on bad arguments. No arguments
 * means kernel (the VM). */
int test_expected_path(int argc, char **argv);

/* version: 12 or 13. Server configs carry the test certificate; clients do
 * not verify (verification is the host suite's business). */
struct kts_config *test_kts_config(int version, const struct suite *s, int is_server);
SSL_CTX *test_ssl_ctx(int version, const struct suite *s, int is_server);

#endif
