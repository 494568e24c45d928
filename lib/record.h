/*
 * record.h - TLS record protection in userspace: the handshake records that
 * cross between OpenSSL and the kernel after the handoff (NewSessionTicket,
 * KeyUpdate), and the records kts seals itself for userspace TX with
 * caller-owned I/O (softtx.c).
 */
#ifndef KTS_RECORD_H
#define KTS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keysched.h"

#define KTS_RECORD_HEADER 5
#define KTS_RECORD_TAG 16
#define KTS_RECORD_MAX_PLAIN 16384
/* TLS 1.2 AES-GCM carries 8 bytes of its nonce in each record (RFC 5288). */
#define KTS_RECORD_EXPLICIT_NONCE 8
/* What a record adds to its plaintext, at most: header, TLS 1.2 explicit
 * nonce or TLS 1.3 inner type, tag. */
#define KTS_RECORD_GROWTH (KTS_RECORD_HEADER + KTS_RECORD_EXPLICIT_NONCE + KTS_RECORD_TAG + 3)
/* Room for len bytes sealed in records of at most 16 KiB each. */
static inline size_t kts_sealed_max(size_t len)
{
	return len + (len / KTS_RECORD_MAX_PLAIN + 1) * KTS_RECORD_GROWTH;
}
/* Largest protected record: header, plaintext, inner type, tag. */
#define KTS_RECORD_MAX (KTS_RECORD_HEADER + KTS_RECORD_MAX_PLAIN + 1 + KTS_RECORD_TAG)

/* A cipher context keyed with k for either direction, so that a run of
 * records pays the key schedule once; NULL when out of memory. cipher: the
 * aead's, fetched once by the caller (an implicit fetch per context costs a
 * third more), or NULL. */
EVP_CIPHER_CTX *kts_record_ctx(const EVP_CIPHER *cipher, enum kts_aead aead,
			       const struct kts_dir_keys *k);
/* The aead's cipher, fetched: the caller frees it (EVP_CIPHER_free). */
EVP_CIPHER *kts_record_cipher_fetch(enum kts_aead aead);

/* Where the plaintext of a record of this version and aead starts: header,
 * plus the explicit nonce of TLS 1.2 AES-GCM. */
size_t kts_record_prefix(int version, enum kts_aead aead);

/* Protect len bytes of content type `type` as record number seq (version
 * KTS_TLS1_2 or KTS_TLS1_3): out gets the header and the protected body.
 * in may be out + kts_record_prefix() (sealed in place). ctx: from
 * kts_record_ctx() with the same keys, or NULL for a one-off. TLS 1.2 GCM
 * uses seq as the explicit nonce, as the kernel does. Returns the record
 * length, or -1. */
int kts_record_seal(EVP_CIPHER_CTX *ctx, int version, enum kts_aead aead,
		    const struct kts_dir_keys *k, uint64_t seq, unsigned char type,
		    const unsigned char *in, size_t len, unsigned char *out, size_t out_cap);

/* Open one whole record (header included) protected as record number seq:
 * out gets the content (TLS 1.3 padding removed), *type its content type.
 * Returns the content length, or -1 if the record is malformed or fails
 * authentication. */
int kts_record_open(EVP_CIPHER_CTX *ctx, int version, enum kts_aead aead,
		    const struct kts_dir_keys *k, uint64_t seq, const unsigned char *rec,
		    size_t rec_len, unsigned char *out, size_t out_cap, unsigned char *type);

/* TLS 1.3 shorthands of the two. */
int kts_tls13_seal(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq,
		   unsigned char type, const unsigned char *in, size_t len, unsigned char *out,
		   size_t out_cap);
int kts_tls13_open(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq,
		   const unsigned char *rec, size_t rec_len, unsigned char *out, size_t out_cap,
		   unsigned char *type);

#endif
