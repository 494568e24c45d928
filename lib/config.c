/*
 * config.c - struct kts_config: settings shared by connections, kept in one
 * OpenSSL SSL_CTX so that certificates and trust stores are parsed once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "internal.h"
#include "kernel.h"
#include "record.h"

/* TLS 1.2 default: forward secrecy (ECDHE) and AEAD only, the suites the
 * kernel can carry; no CBC (Lucky13 and friends), no static RSA. */
#define KTS_DEFAULT_CIPHERS                                                                  \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                          \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                          \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Largest PEM file kts reads: far above any real chain, small enough to refuse junk. */
#define KTS_MAX_PEM (1 << 20)

/* The key log collects the TLS 1.3 traffic secrets, which OpenSSL hex-formats
 * on every handshake (about a tenth of a resumed TLS 1.3 handshake's CPU):
 * only where a connection may use them, for kTLS (the kernel had it when the
 * config was made and the policy is not off) or for records kts seals itself
 * (kts_config_set_tls13_seal). */
static void update_keylog(struct kts_config *cfg)
{
	kts_handshake_callbacks(cfg, (cfg->kernel_tls && cfg->offload != KTS_OFFLOAD_OFF) ||
					     cfg->tls13_seal);
}

/* trust_id = SHA-256(label) when a new set of trust anchors starts. */
static void trust_reset(struct kts_config *cfg, const char *label)
{
	EVP_Digest(label, strlen(label), cfg->trust_id, NULL, EVP_sha256(), NULL);
}

/* trust_id = SHA-256(trust_id || kind || data) for each anchor added. */
static int trust_add(struct kts_config *cfg, char kind, const void *data, size_t len)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
		 EVP_DigestUpdate(md, cfg->trust_id, sizeof(cfg->trust_id)) == 1 &&
		 EVP_DigestUpdate(md, &kind, 1) == 1 && EVP_DigestUpdate(md, data, len) == 1 &&
		 EVP_DigestFinal_ex(md, cfg->trust_id, NULL) == 1;

	EVP_MD_CTX_free(md);
	return ok ? KTS_OK : kts_config_fail(cfg, KTS_ERR_NOMEM, "CA: out of memory");
}

struct kts_config *kts_config_new(void)
{
	struct kts_config *cfg = calloc(1, sizeof(*cfg));

	if (!cfg)
		return NULL;
	cfg->ctx = SSL_CTX_new(TLS_method());
	cfg->ctx12 = cfg->ctx ? SSL_CTX_new(TLS_method()) : NULL;
	if (!cfg->ctx12) {
		SSL_CTX_free(cfg->ctx);
		free(cfg);
		return NULL;
	}
	atomic_init(&cfg->refs, 1);
	cfg->verify = KTS_VERIFY_PEER | KTS_VERIFY_NAME;
	cfg->offload = KTS_OFFLOAD_AUTO;
	cfg->session_fd = -1;
	cfg->num_tickets = -1;
	SSL_CTX_set_min_proto_version(cfg->ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(cfg->ctx, TLS1_3_VERSION);
	SSL_CTX_set_cipher_list(cfg->ctx, KTS_DEFAULT_CIPHERS);
	SSL_CTX_set_cipher_list(cfg->ctx12, KTS_DEFAULT_CIPHERS); /* an SSL reads its ctx's */
	/* Renegotiation would change keys under the kernel; compression is never offloadable. */
	SSL_CTX_set_options(cfg->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					      SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* No resumption yet: no session cache and no TLS 1.3 tickets. */
	SSL_CTX_set_session_cache_mode(cfg->ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(cfg->ctx, 0);
	SSL_CTX_set_max_early_data(cfg->ctx, 0);
	/* Partial writes give kts_write the same short-write semantics on both paths.
	 * No automatic chain: the chain sent is the one configured, not one OpenSSL
	 * would rebuild from the trust store on every full handshake (a scan of
	 * /etc/ssl/certs each time, about a fifth of a full handshake's CPU). */
	SSL_CTX_set_mode(cfg->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
					   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
	/* OpenSSL's record buffers (about 34 KiB) only while a record is in
	 * them: an idle connection, and one whose directions the kernel owns,
	 * holds none. */
	SSL_CTX_set_mode(cfg->ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_default_verify_paths(cfg->ctx);
	trust_reset(cfg, "system default store");
	kts_err_clear();
	cfg->kernel_tls = kts_kernel_has_tls() != 0;
	update_keylog(cfg);
	SSL_CTX_set_app_data(cfg->ctx, cfg);
	SSL_CTX_set_app_data(cfg->ctx12, cfg);
	/* Ciphers fetched once: kts seals userspace TX records with them. */
	for (int a = KTS_AEAD_AES_128_GCM; a <= KTS_AEAD_CHACHA20_POLY1305; a++)
		cfg->soft_cipher[a] = kts_record_cipher_fetch((enum kts_aead)a);
	if (kts_caller_bio_init(cfg) < 0) {
		kts_config_free(cfg);
		return NULL;
	}
	if (kts_server_resumption_init(cfg) != KTS_OK) {
		kts_config_free(cfg);
		return NULL;
	}
	return cfg;
}

void kts_config_free(struct kts_config *cfg)
{
	kts_config_release(cfg);
}

void kts_config_release(struct kts_config *cfg)
{
	if (!cfg || atomic_fetch_sub(&cfg->refs, 1) != 1)
		return;
	kts_server_resumption_free(cfg);
	kts_sess_cache_free(cfg->cache);
	SSL_CTX_free(cfg->ctx);
	SSL_CTX_free(cfg->ctx12);
	X509_free(cfg->cert);
	EVP_PKEY_free(cfg->key);
	free(cfg->server_name);
	free(cfg->alpn);
	kts_caller_bio_free(cfg);
	for (size_t a = 0; a < sizeof(cfg->soft_cipher) / sizeof(cfg->soft_cipher[0]); a++)
		EVP_CIPHER_free(cfg->soft_cipher[a]);
	free(cfg);
}

const char *kts_config_error(const struct kts_config *cfg)
{
	return cfg ? cfg->error : "no configuration";
}

/* Read a whole file (PEM) into memory, with errors naming the file. */
static int read_file(struct kts_config *cfg, const char *what, const char *path, char **out,
		     size_t *out_len)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd;

	if (!path)
		return kts_config_fail(cfg, KTS_ERR_ARG, "%s: no file given", what);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return kts_config_fail(cfg, KTS_ERR_ARG, "%s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > KTS_MAX_PEM) {
		close(fd);
		return kts_config_fail(cfg, KTS_ERR_ARG, "%s %s: not a regular file of at most %d bytes",
				       what, path, KTS_MAX_PEM);
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return kts_config_fail(cfg, KTS_ERR_NOMEM, "%s %s: out of memory", what, path);
	}
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n != st.st_size) {
		OPENSSL_clear_free(buf, (size_t)st.st_size + 1);
		return kts_config_fail(cfg, KTS_ERR_ARG, "%s %s: short read", what, path);
	}
	*out = buf;
	*out_len = (size_t)n;
	return KTS_OK;
}

/* A certificate and key must belong together; checked before OpenSSL sees
 * the new one, which would otherwise drop the old half silently. */
static int check_pair(struct kts_config *cfg, X509 *cert, EVP_PKEY *key, const char *what)
{
	if (cert && key && X509_check_private_key(cert, key) != 1) {
		kts_err_clear();
		return kts_config_fail(cfg, KTS_ERR_ARG,
				       "%s: private key does not match the certificate", what);
	}
	return KTS_OK;
}

static int set_cert(struct kts_config *cfg, const char *what, const void *pem, size_t len)
{
	char reason[256];
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *leaf = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	X509 *extra;
	int rc = KTS_OK;

	if (!leaf) {
		rc = kts_config_fail(cfg, KTS_ERR_ARG, "%s: no PEM certificate found (%s)", what,
				     kts_ssl_reason(reason, sizeof(reason)));
		goto out;
	}
	rc = check_pair(cfg, leaf, cfg->key, what);
	if (rc)
		goto out;
	if (SSL_CTX_use_certificate(cfg->ctx, leaf) != 1 || SSL_CTX_clear_chain_certs(cfg->ctx) != 1 ||
	    SSL_CTX_use_certificate(cfg->ctx12, leaf) != 1 || SSL_CTX_clear_chain_certs(cfg->ctx12) != 1) {
		rc = kts_config_fail(cfg, KTS_ERR_ARG, "%s: certificate rejected: %s", what,
				     kts_ssl_reason(reason, sizeof(reason)));
		goto out;
	}
	while ((extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (SSL_CTX_add1_chain_cert(cfg->ctx12, extra) != 1 ||
		    SSL_CTX_add0_chain_cert(cfg->ctx, extra) != 1) {
			X509_free(extra);
			rc = kts_config_fail(cfg, KTS_ERR_ARG, "%s: chain certificate rejected", what);
			goto out;
		}
	}
	kts_err_clear(); /* the loop ends on "no start line" */
	X509_free(cfg->cert);
	cfg->cert = leaf;
	leaf = NULL;
out:
	X509_free(leaf);
	BIO_free(bio);
	return rc;
}

/* Never prompt on a terminal for a passphrase: encrypted keys are refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

static int set_key(struct kts_config *cfg, const char *what, const void *pem, size_t len)
{
	char reason[256];
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
	int rc;

	BIO_free(bio);
	if (!key)
		return kts_config_fail(cfg, KTS_ERR_ARG,
				       "%s: no unencrypted PEM private key found (%s)", what,
				       kts_ssl_reason(reason, sizeof(reason)));
	rc = check_pair(cfg, cfg->cert, key, what);
	if (rc || SSL_CTX_use_PrivateKey(cfg->ctx, key) != 1 ||
	    SSL_CTX_use_PrivateKey(cfg->ctx12, key) != 1) {
		EVP_PKEY_free(key);
		return rc ? rc : kts_config_fail(cfg, KTS_ERR_ARG, "%s: key rejected: %s", what,
						 kts_ssl_reason(reason, sizeof(reason)));
	}
	EVP_PKEY_free(cfg->key);
	cfg->key = key;
	return KTS_OK;
}

static int mem_arg(struct kts_config *cfg, const char *what, const void *pem, size_t len)
{
	if (!pem || len == 0 || len > KTS_MAX_PEM)
		return kts_config_fail(cfg, KTS_ERR_ARG, "%s: empty or larger than %d bytes", what,
				       KTS_MAX_PEM);
	return KTS_OK;
}

int kts_config_set_cert_mem(struct kts_config *cfg, const void *pem, size_t len)
{
	int rc = mem_arg(cfg, "certificate", pem, len);
	return rc ? rc : set_cert(cfg, "certificate", pem, len);
}

int kts_config_set_key_mem(struct kts_config *cfg, const void *pem, size_t len)
{
	int rc = mem_arg(cfg, "private key", pem, len);
	return rc ? rc : set_key(cfg, "private key", pem, len);
}

/* Read a PEM file and hand it to set_cert or set_key, wiping the copy (it may
 * hold a private key). */
static int load_pem_file(struct kts_config *cfg, const char *kind, const char *path,
			 int (*set)(struct kts_config *, const char *, const void *, size_t))
{
	char *pem = NULL, what[300];
	size_t len = 0;
	int rc = read_file(cfg, kind, path, &pem, &len);

	if (rc)
		return rc;
	snprintf(what, sizeof(what), "%s %s", kind, path);
	rc = set(cfg, what, pem, len);
	OPENSSL_cleanse(pem, len);
	free(pem);
	return rc;
}

int kts_config_set_cert_file(struct kts_config *cfg, const char *path)
{
	return load_pem_file(cfg, "certificate file", path, set_cert);
}

int kts_config_set_key_file(struct kts_config *cfg, const char *path)
{
	return load_pem_file(cfg, "key file", path, set_key);
}

/* A CA file counts by its content (what OpenSSL just loaded from it). */
static int trust_add_file(struct kts_config *cfg, const char *path)
{
	unsigned char buf[8192], sum[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int fd = open(path, O_RDONLY | O_CLOEXEC), ok = md && fd >= 0 &&
		EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
	ssize_t n;

	errno = 0;
	while (ok && (n = read(fd, buf, sizeof(buf))) != 0)
		ok = n > 0 ? EVP_DigestUpdate(md, buf, (size_t)n) == 1 : errno == EINTR;
	ok = ok && EVP_DigestFinal_ex(md, sum, NULL) == 1;
	EVP_MD_CTX_free(md);
	if (fd >= 0)
		close(fd);
	if (!ok)
		return kts_config_fail(cfg, KTS_ERR_ARG, "CA %s: reading it again: %s", path,
				       strerror(errno ? errno : ENOMEM));
	return trust_add(cfg, 'F', sum, sizeof(sum));
}

/* A hashed directory is looked up lazily by OpenSSL: it counts by its path. */
static int trust_add_dir(struct kts_config *cfg, const char *dir)
{
	char *real = realpath(dir, NULL);
	int rc;

	if (!real)
		return kts_config_fail(cfg, KTS_ERR_ARG, "CA %s: %s", dir, strerror(errno));
	rc = trust_add(cfg, 'D', real, strlen(real));
	free(real);
	return rc;
}

/* The first CA the caller names replaces the system store instead of adding to it. */
static int load_ca(struct kts_config *cfg, const char *file, const char *dir)
{
	char reason[256];
	const char *name = file ? file : dir;
	struct stat st;

	if (!name || stat(name, &st) < 0)
		return kts_config_fail(cfg, KTS_ERR_ARG, "CA %s: %s", name ? name : "(null)",
				       name ? strerror(errno) : "no path given");
	if (file ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode))
		return kts_config_fail(cfg, KTS_ERR_ARG, "CA %s: not a %s", name,
				       file ? "regular file" : "directory");
	if (!cfg->ca_set) {
		X509_STORE *store = X509_STORE_new();
		if (!store)
			return kts_config_fail(cfg, KTS_ERR_NOMEM, "CA %s: out of memory", name);
		SSL_CTX_set_cert_store(cfg->ctx, store);
		trust_reset(cfg, "caller's trust anchors");
		cfg->ca_set = 1;
	}
	if (SSL_CTX_load_verify_locations(cfg->ctx, file, dir) != 1)
		return kts_config_fail(cfg, KTS_ERR_ARG, "CA %s: %s", name,
				       kts_ssl_reason(reason, sizeof(reason)));
	return file ? trust_add_file(cfg, file) : trust_add_dir(cfg, dir);
}

int kts_config_set_ca_file(struct kts_config *cfg, const char *path)
{
	return load_ca(cfg, path, NULL);
}

int kts_config_set_ca_path(struct kts_config *cfg, const char *dir)
{
	return load_ca(cfg, NULL, dir);
}

int kts_config_set_verify(struct kts_config *cfg, int flags)
{
	if (flags & ~(KTS_VERIFY_PEER | KTS_VERIFY_NAME))
		return kts_config_fail(cfg, KTS_ERR_ARG, "verify: unknown flags 0x%x", flags);
	if ((flags & KTS_VERIFY_NAME) && !(flags & KTS_VERIFY_PEER))
		return kts_config_fail(cfg, KTS_ERR_ARG,
				       "verify: checking the name without the chain proves nothing");
	cfg->verify = flags;
	return KTS_OK;
}

int kts_config_set_protocols(struct kts_config *cfg, int min_version, int max_version)
{
	if ((min_version != KTS_TLS1_2 && min_version != KTS_TLS1_3) ||
	    (max_version != KTS_TLS1_2 && max_version != KTS_TLS1_3))
		return kts_config_fail(cfg, KTS_ERR_ARG,
				       "protocols: only TLS 1.2 (0x0303) and TLS 1.3 (0x0304) are supported");
	if (min_version > max_version)
		return kts_config_fail(cfg, KTS_ERR_ARG, "protocols: minimum is above maximum");
	SSL_CTX_set_min_proto_version(cfg->ctx, min_version);
	SSL_CTX_set_max_proto_version(cfg->ctx, max_version);
	return KTS_OK;
}

static int parse_version(const char *s, size_t len)
{
	if (len == 3 && memcmp(s, "1.2", 3) == 0)
		return KTS_TLS1_2;
	if (len == 3 && memcmp(s, "1.3", 3) == 0)
		return KTS_TLS1_3;
	return -1;
}

int kts_config_parse_protocols(struct kts_config *cfg, const char *spec)
{
	const char *dash;
	int lo, hi;

	if (!spec)
		return kts_config_fail(cfg, KTS_ERR_ARG, "protocols: no value given");
	if (strcmp(spec, "all") == 0)
		return kts_config_set_protocols(cfg, KTS_TLS1_2, KTS_TLS1_3);
	dash = strchr(spec, '-');
	lo = parse_version(spec, dash ? (size_t)(dash - spec) : strlen(spec));
	hi = dash ? parse_version(dash + 1, strlen(dash + 1)) : lo;
	if (lo < 0 || hi < 0)
		return kts_config_fail(cfg, KTS_ERR_ARG,
				       "protocols: '%s' is not one of 1.2, 1.3, 1.2-1.3, all", spec);
	return kts_config_set_protocols(cfg, lo, hi);
}

int kts_config_set_ciphers(struct kts_config *cfg, const char *list)
{
	if (!list || SSL_CTX_set_cipher_list(cfg->ctx, list) != 1 ||
	    SSL_CTX_set_cipher_list(cfg->ctx12, list) != 1) {
		kts_err_clear();
		return kts_config_fail(cfg, KTS_ERR_ARG, "ciphers: no usable TLS 1.2 cipher in '%s'",
				       list ? list : "(null)");
	}
	return KTS_OK;
}

int kts_config_set_ciphersuites(struct kts_config *cfg, const char *list)
{
	if (!list || SSL_CTX_set_ciphersuites(cfg->ctx, list) != 1 ||
	    SSL_CTX_set_ciphersuites(cfg->ctx12, list) != 1) {
		kts_err_clear();
		return kts_config_fail(cfg, KTS_ERR_ARG, "ciphersuites: no usable TLS 1.3 suite in '%s'",
				       list ? list : "(null)");
	}
	return KTS_OK;
}

/* Server side ALPN: the first of our protocols the client also offers. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	struct kts_config *cfg = arg;
	unsigned char *sel;
	(void)ssl;

	if (SSL_select_next_proto(&sel, outlen, cfg->alpn, (unsigned int)cfg->alpn_len, in,
				  inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

int kts_config_set_alpn(struct kts_config *cfg, const char *list)
{
	size_t n = list ? strlen(list) : 0, start = 0;
	unsigned char *wire;

	if (n == 0 || n > 1024)
		return kts_config_fail(cfg, KTS_ERR_ARG, "alpn: empty or too long list");
	wire = malloc(n + 1);
	if (!wire)
		return kts_config_fail(cfg, KTS_ERR_NOMEM, "alpn: out of memory");
	/* "a,bc" -> "\1a\2bc": each comma becomes the next name's length. */
	for (size_t i = 0; i <= n; i++) {
		if (i == n || list[i] == ',') {
			size_t len = i - start;
			if (len == 0 || len > 255) {
				free(wire);
				return kts_config_fail(cfg, KTS_ERR_ARG,
						       "alpn: empty or over-long name in '%s'", list);
			}
			wire[start] = (unsigned char)len;
			start = i + 1;
		} else {
			wire[i + 1] = (unsigned char)list[i];
		}
	}
	if (SSL_CTX_set_alpn_protos(cfg->ctx, wire, (unsigned int)(n + 1)) != 0) {
		free(wire);
		return kts_config_fail(cfg, KTS_ERR_NOMEM, "alpn: OpenSSL refused the list");
	}
	free(cfg->alpn);
	cfg->alpn = wire;
	cfg->alpn_len = n + 1;
	SSL_CTX_set_alpn_select_cb(cfg->ctx, select_alpn, cfg);
	SSL_CTX_set_alpn_select_cb(cfg->ctx12, select_alpn, cfg);
	return KTS_OK;
}

int kts_config_set_server_name(struct kts_config *cfg, const char *name)
{
	char *copy;

	if (!name || !*name || strlen(name) > 253)
		return kts_config_fail(cfg, KTS_ERR_ARG, "server name: empty or longer than 253");
	copy = strdup(name);
	if (!copy)
		return kts_config_fail(cfg, KTS_ERR_NOMEM, "server name: out of memory");
	free(cfg->server_name);
	cfg->server_name = copy;
	return KTS_OK;
}

int kts_config_set_offload(struct kts_config *cfg, int policy)
{
	if (policy != KTS_OFFLOAD_AUTO && policy != KTS_OFFLOAD_REQUIRE && policy != KTS_OFFLOAD_OFF)
		return kts_config_fail(cfg, KTS_ERR_ARG, "offload: unknown policy %d", policy);
	cfg->offload = policy;
	update_keylog(cfg);
	return KTS_OK;
}

int kts_config_set_rx_no_pad(struct kts_config *cfg, int on)
{
	cfg->rx_no_pad = on != 0;
	return KTS_OK;
}

int kts_config_set_tls13_seal(struct kts_config *cfg, int on)
{
	cfg->tls13_seal = on != 0;
	update_keylog(cfg);
	return KTS_OK;
}

int kts_config_set_release_openssl(struct kts_config *cfg, int on)
{
	cfg->release_ssl = on != 0;
	return KTS_OK;
}

int kts_config_parse_offload(struct kts_config *cfg, const char *spec)
{
	static const char *const names[] = {"auto", "require", "off"};

	for (int i = 0; spec && i < 3; i++)
		if (strcmp(spec, names[i]) == 0)
			return kts_config_set_offload(cfg, i);
	return kts_config_fail(cfg, KTS_ERR_ARG, "offload: '%s' is not one of auto, require, off",
			       spec ? spec : "(null)");
}
