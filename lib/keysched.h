/*
 * keysched.h - record keys for kernel TLS, derived from OpenSSL's secrets.
 * Pure functions over bytes: no sockets, no SSL objects, so unit tests can feed
 * them published vectors (RFC 8448) and known key blocks.
 */
#ifndef KTS_KEYSCHED_H
#define KTS_KEYSCHED_H

#include <stddef.h>
#include <stdint.h>

/* The AEAD ciphers kts can hand to the kernel. */
enum kts_aead {
	KTS_AEAD_NONE = 0,
	KTS_AEAD_AES_128_GCM,
	KTS_AEAD_AES_256_GCM,
	KTS_AEAD_CHACHA20_POLY1305,
};

/* Key material for one direction: the AEAD key and the fixed nonce part.
 * TLS 1.3: iv is the full 12-byte write IV. TLS 1.2: iv is the implicit part
 * (4 bytes for GCM, 12 for ChaCha20-Poly1305). */
struct kts_dir_keys {
	unsigned char key[32];
	size_t key_len;
	unsigned char iv[12];
	size_t iv_len;
};

/* Map an IANA cipher suite id (SSL_CIPHER_get_protocol_id) to an AEAD; NONE if
 * the suite is not one kts offloads. */
enum kts_aead kts_aead_from_suite(uint16_t suite_id);
/* Key length in bytes of an AEAD (0 for NONE). */
size_t kts_aead_key_len(enum kts_aead aead);
/* Short name: "aes128gcm", "aes256gcm", "chacha20poly1305". */
const char *kts_aead_name(enum kts_aead aead);

/* TLS 1.3 (RFC 8446 7.3): key = HKDF-Expand-Label(secret, "key", "", key_len),
 * iv = HKDF-Expand-Label(secret, "iv", "", 12), with the suite's hash
 * ("SHA256" or "SHA384"). Returns 0 or -1. */
int kts_tls13_traffic_keys(const char *digest, const unsigned char *secret, size_t secret_len,
			   enum kts_aead aead, struct kts_dir_keys *out);

/* TLS 1.3 key update (RFC 8446 7.2): next = HKDF-Expand-Label(secret,
 * "traffic upd", "", len(secret)). Returns 0 or -1. */
int kts_tls13_next_secret(const char *digest, const unsigned char *secret, size_t secret_len,
			  unsigned char *next);

/* TLS 1.2 (RFC 5246 6.3): key block = PRF(master, "key expansion",
 * server_random || client_random), split client key | server key | client IV |
 * server IV (AEAD suites have no MAC keys). Returns 0 or -1. */
int kts_tls12_keys(const char *digest, const unsigned char *master, size_t master_len,
		   const unsigned char client_random[32], const unsigned char server_random[32],
		   enum kts_aead aead, struct kts_dir_keys *client_write,
		   struct kts_dir_keys *server_write);

/* Sequence numbers of the next record each way right after the handshake,
 * seq[0] for what this endpoint sends, seq[1] for what it receives.
 * TLS 1.2: each side's Finished was record 0 under the new keys, so 1 and 1.
 * TLS 1.3: application keys start at 0, but a server has already written its
 * NewSessionTickets under them, one record each (tickets_sent). */
void kts_next_seq(int version, int is_server, unsigned int tickets_sent, uint64_t seq[2]);

/* A kernel crypto_info (struct tls12_crypto_info_*) in a buffer large enough for
 * any of them. */
struct kts_crypto_info {
	_Alignas(8) unsigned char bytes[64];
	size_t len;
};

/* Fill the kernel structure for version (KTS_TLS1_2 or KTS_TLS1_3), aead, keys and
 * the next record sequence number. Returns 0, or -1 for an unknown aead/version. */
int kts_crypto_info_build(int version, enum kts_aead aead, const struct kts_dir_keys *keys,
			  uint64_t seq, struct kts_crypto_info *out);

#endif
