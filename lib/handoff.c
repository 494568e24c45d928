/*
 * handoff.c - move a finished OpenSSL session into kernel TLS.
 *
 * kts_handoff() reads top to bottom: may we offload, what was negotiated, is
 * OpenSSL holding anything, does the kernel have TLS, derive keys, work out
 * sequence numbers, install into the kernel per direction, set up kts's own
 * record work for what stays in userspace, wipe the keys, apply the policy,
 * release what OpenSSL no longer needs. Each direction that the kernel
 * refuses stays with OpenSSL, with the reason kept.
 */
#include <errno.h>
#include <stdarg.h>
#include <linux/tls.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "internal.h"
#include "kernel.h"

static const char *const dir_name[2] = {"TX", "RX"};
/* The usual case without kTLS: strerror's text, fixed. */
static const char no_tls_module[] = "kernel has no tls module (TCP_ULP: No such file or directory)";

/* Both directions may share one reason string; a fixed one is not ours. */
void kts_reason_drop(struct kts *c, int dir)
{
	if (!(c->reason_fixed & (1u << dir)) && c->reason[dir] != c->reason[1 - dir])
		free(c->reason[dir]);
	c->reason[dir] = NULL;
	c->reason_fixed &= (unsigned char)~(1u << dir);
}

static void stay_in_user(struct kts *c, int dir, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void stay_in_user(struct kts *c, int dir, const char *fmt, ...)
{
	va_list ap;

	kts_reason_drop(c, dir);
	va_start(ap, fmt);
	if (vasprintf(&c->reason[dir], fmt, ap) < 0)
		c->reason[dir] = NULL; /* kts_offload_reason says it is unknown */
	va_end(ap);
	c->path[dir] = KTS_PATH_USER;
}

/* A reason that is a string literal: pointed to, not copied. Every
 * connection on a host without kTLS keeps one, so it costs no allocation. */
static void stay_in_user_fixed(struct kts *c, int dir, const char *reason)
{
	kts_reason_drop(c, dir);
	c->reason[dir] = (char *)reason;
	c->reason_fixed |= (unsigned char)(1u << dir);
	c->path[dir] = KTS_PATH_USER;
}

/* Both directions stay with OpenSSL for one reason, a literal ... */
static void both_in_user(struct kts *c, const char *reason)
{
	stay_in_user_fixed(c, KTS_TX, reason);
	stay_in_user_fixed(c, KTS_RX, reason);
}

/* ... or one made here: one copy of it. */
static void both_in_user_copy(struct kts *c, const char *reason)
{
	stay_in_user(c, KTS_TX, "%s", reason);
	kts_reason_drop(c, KTS_RX);
	c->reason[KTS_RX] = c->reason[KTS_TX];
	c->path[KTS_RX] = KTS_PATH_USER;
}

int kts_tls12_conn_keys(struct kts *c, const char *digest, enum kts_aead aead,
			struct kts_dir_keys k[2])
{
	unsigned char master[48], crand[32], srand[32];
	size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(c->ssl), master, sizeof(master));
	/* Our TX is the server's write key when we are the server. */
	struct kts_dir_keys *cw = &k[c->is_server ? KTS_RX : KTS_TX];
	struct kts_dir_keys *sw = &k[c->is_server ? KTS_TX : KTS_RX];
	int rc;

	SSL_get_client_random(c->ssl, crand, sizeof(crand));
	SSL_get_server_random(c->ssl, srand, sizeof(srand));
	rc = mlen == 0 ? -1 : kts_tls12_keys(digest, master, mlen, crand, srand, aead, cw, sw);
	OPENSSL_cleanse(master, sizeof(master));
	return rc;
}

int kts_ulp_should_try(struct kts_config *cfg, long now)
{
	return now >= atomic_load_explicit(&cfg->ulp_retry_at, memory_order_relaxed);
}

void kts_ulp_missing(struct kts_config *cfg, long now)
{
	atomic_store_explicit(&cfg->ulp_retry_at, now + KTS_ULP_RETRY_S, memory_order_relaxed);
}

static long monotonic_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long)ts.tv_sec;
}

/* Keys per direction of this endpoint: [KTS_TX] what we send, [KTS_RX] what we read. */
static int derive_keys(struct kts *c, int version, const char *digest, enum kts_aead aead,
		       struct kts_dir_keys k[2])
{
	int tx = c->is_server ? 1 : 0, rx = 1 - tx;
	const struct kts_secrets *s = c->sec;

	if (!digest)
		return -1;
	if (version != TLS1_3_VERSION)
		return kts_tls12_conn_keys(c, digest, aead, k);
	if (!s || s->hs_len[0] == 0 || s->hs_len[1] == 0)
		return -1;
	if (kts_tls13_traffic_keys(digest, s->hs[tx], s->hs_len[tx], aead, &k[KTS_TX]) ||
	    kts_tls13_traffic_keys(digest, s->hs[rx], s->hs_len[rx], aead, &k[KTS_RX]))
		return -1;
	return 0;
}

/* Once the kernel owns a direction, OpenSSL must never touch the socket that
 * way again: give it a BIO that is empty for reads and refuses writes, so a
 * stray OpenSSL record is an error instead of corrupting the stream. */
static void fence_openssl(struct kts *c, int dir)
{
	BIO *dead = BIO_new_mem_buf("", 0);

	if (!dead)
		return; /* the socket BIO stays; kts itself never calls OpenSSL I/O that way */
	if (dir == KTS_TX)
		SSL_set0_wbio(c->ssl, dead);
	else
		SSL_set0_rbio(c->ssl, dead);
}

/* kts_config_set_release_openssl: a server whose both directions the kernel
 * owns, or kts itself (softrx.c), needs OpenSSL for nothing but late tickets
 * (kts_issue_ticket) and ticket app data, so its SSL goes. Marked as shut
 * down first: freeing an SSL that never sent close_notify would drop its
 * session from the cache. */
int kts_needs_openssl(const struct kts *c)
{
	SSL_SESSION *sess = SSL_get_session(c->ssl);
	void *data;
	size_t data_len = 0;

	if (c->appdata || !sess)
		return 1;
	SSL_SESSION_get0_ticket_appdata(sess, &data, &data_len);
	return data_len > 0; /* kts_ticket_appdata reads it from the session */
}

void kts_release_openssl(struct kts *c)
{
	SSL_SESSION *sess = SSL_get_session(c->ssl);
	const unsigned char *id;
	unsigned int id_len = 0;

	if (c->state != KTS_STATE_OPEN || !c->cfg->release_ssl || !c->is_server ||
	    kts_needs_openssl(c) ||
	    (!c->soft_rx && (c->path[KTS_TX] != KTS_PATH_KERNEL || c->path[KTS_RX] != KTS_PATH_KERNEL)))
		return;
	id = SSL_SESSION_get_id(sess, &id_len);
	if (c->version == TLS1_2_VERSION && id_len <= sizeof(c->sid)) {
		memcpy(c->sid, id, id_len);
		c->sid_len = (unsigned char)id_len;
	}
	SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_SENT_SHUTDOWN);
	SSL_free(c->ssl);
	c->ssl = NULL;
	/* Only OpenSSL's write side used it (late tickets). */
	if (c->sec)
		OPENSSL_cleanse(c->sec->ossl_tx, sizeof(c->sec->ossl_tx));
}

int kts_handoff(struct kts *c)
{
	int version = SSL_version(c->ssl);
	const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
	enum kts_aead aead = kts_aead_from_suite(SSL_CIPHER_get_protocol_id(cipher));
	const char *digest = EVP_MD_get0_name(SSL_CIPHER_get_handshake_digest(cipher));
	char why[KTS_REASONLEN];
	struct kts_dir_keys keys[2];
	struct kts_crypto_info info;
	uint64_t seq[2];
	long now;
	int err;

	memset(keys, 0, sizeof(keys));
	/* The next record numbers each way: the kernel's (step 4) and those of
	 * kts's own sealing of a userspace TX (step 6) start from them. */
	kts_next_seq(version, c->is_server, c->tickets_sent, seq);
	seq[KTS_RX] += c->rx_user_records; /* decrypted past the handshake (caller_io.c) */

	/* 1. Policy and what was negotiated. */
	if (c->offload == KTS_OFFLOAD_OFF) {
		both_in_user(c, "offload policy is off");
		goto done;
	}
	if (version != TLS1_2_VERSION && version != TLS1_3_VERSION) {
		snprintf(why, sizeof(why), "%s cannot be offloaded", SSL_get_version(c->ssl));
		both_in_user_copy(c, why);
		goto done;
	}
	if (aead == KTS_AEAD_NONE) {
		snprintf(why, sizeof(why), "cipher %s has no kernel TLS mode", SSL_CIPHER_get_name(cipher));
		both_in_user_copy(c, why);
		goto done;
	}

	/* 2. Records OpenSSL already read are lost to the kernel: refuse instead.
	 * With caller-owned I/O, records read past the handshake were decrypted
	 * (caller_io.c) and are counted below, unless one moved OpenSSL's state. */
	if (SSL_has_pending(c->ssl)) {
		both_in_user(c, "OpenSSL holds unread records");
		goto done;
	}
	if (c->drain_moved_keys) {
		both_in_user(c, "peer sent a handshake message right after the handshake");
		goto done;
	}
	if (c->rx_eof) {
		both_in_user(c, "peer closed right after the handshake");
		goto done;
	}

	/* 3. The kernel's TLS layer, before any key is derived: a kernel without
	 * it is common, and then there is nothing to derive for. Until a key is
	 * installed the socket still behaves as plain TCP. */
	now = monotonic_s();
	if (!kts_ulp_should_try(c->cfg, now)) {
		both_in_user(c, no_tls_module);
		goto done;
	}
	err = kts_kernel_attach_ulp(c->fd);
	if (err == -ENOENT) {
		kts_ulp_missing(c->cfg, now);
		both_in_user(c, no_tls_module);
		goto done;
	}
	if (err < 0) {
		snprintf(why, sizeof(why), "TCP_ULP refused: %s", strerror(-err));
		both_in_user_copy(c, why);
		goto done;
	}

	/* 4. Keys and sequence numbers for each direction. */
	if (!digest || derive_keys(c, version, digest, aead, keys) < 0) {
		both_in_user(c, "could not derive the record keys");
		goto done;
	}

	/* 5. Into the kernel: RX, then TX. TX follows RX only: OpenSSL reading
	 * records needs its own send path for the alerts it may answer with, so a
	 * kernel TX under an OpenSSL RX is never set up. */
	for (int dir = KTS_RX; dir >= KTS_TX; dir--) {
		if (dir == KTS_TX && c->path[KTS_RX] != KTS_PATH_KERNEL) {
			stay_in_user_fixed(c, KTS_TX, "kept in userspace with RX");
			continue;
		}
		if (dir == KTS_TX && SSL_SESSION_get_max_fragment_length(SSL_get_session(c->ssl)) !=
					     TLSEXT_max_fragment_length_DISABLED) {
			/* The kernel always fills records up to 16 KiB. */
			stay_in_user_fixed(c, KTS_TX, "peer negotiated a maximum fragment length");
			continue;
		}
		if (kts_crypto_info_build(version, aead, &keys[dir], seq[dir], &info) < 0) {
			stay_in_user(c, dir, "no kernel layout for %s", kts_aead_name(aead));
			continue;
		}
		err = kts_kernel_install(c->fd, dir == KTS_TX ? TLS_TX : TLS_RX, &info);
		OPENSSL_cleanse(&info, sizeof(info));
		if (err < 0) {
			stay_in_user(c, dir, "kernel rejected %s %s %s: %s", SSL_get_version(c->ssl),
				     kts_aead_name(aead), dir_name[dir], strerror(-err));
			continue;
		}
		c->path[dir] = KTS_PATH_KERNEL;
		kts_reason_drop(c, dir);
		fence_openssl(c, dir);
		if (dir == KTS_RX && version == TLS1_3_VERSION && c->cfg->rx_no_pad)
			kts_kernel_rx_no_pad(c->fd); /* an older kernel lacks it: no harm */
	}
	/* TLS 1.3 sends handshake messages after the handshake: keep what
	 * moving them between OpenSSL and the kernel takes. */
	c->version = version;
	if (version == TLS1_3_VERSION &&
	    (c->path[KTS_TX] == KTS_PATH_KERNEL || c->path[KTS_RX] == KTS_PATH_KERNEL))
		kts_post_handshake_setup(c, digest, aead);

done:
	/* 6. A TX left in userspace may still skip OpenSSL's copies (softtx.c),
	 * and with RX opened by kts too, OpenSSL may go later (softrx.c). */
	if (c->path[KTS_TX] == KTS_PATH_USER)
		kts_softtx_setup(c, version, digest, aead, seq[KTS_TX]);
	if (kts_softrx_may(c))
		kts_softrx_prepare(c, seq[KTS_RX]); /* OpenSSL goes once the connection is quiet */
	/* 7. Nothing secret outlives the handoff but what TLS 1.3 still needs. */
	OPENSSL_cleanse(keys, sizeof(keys));
	if (c->sec && c->sec->size > 0) {
		OPENSSL_cleanse(c->sec->hs, sizeof(c->sec->hs));
		OPENSSL_cleanse(c->sec->hs_len, sizeof(c->sec->hs_len));
	} else {
		kts_secrets_free(c);
	}

	/* 8. "require" means both directions in the kernel, or no connection. */
	if (c->offload == KTS_OFFLOAD_REQUIRE) {
		for (int dir = KTS_TX; dir <= KTS_RX; dir++)
			if (c->path[dir] != KTS_PATH_KERNEL)
				return kts_fail_fatal(c, KTS_ERR_OFFLOAD,
						      "handshake: offload required but %s stays in userspace: %s",
						      dir_name[dir], kts_offload_reason(c, dir));
	}
	/* 9. Nothing of OpenSSL outlives it that the connection cannot use. */
	kts_release_openssl(c);
	return c->state == KTS_STATE_FAILED ? c->fail_code : KTS_OK;
}
