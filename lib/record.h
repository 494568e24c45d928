/*
 * record.h - TLS 1.3 record protection in userspace, for the few handshake
 * records that cross between OpenSSL and the kernel after the handoff
 * (NewSessionTicket, KeyUpdate). Bulk data never comes here.
 */
#ifndef KTS_RECORD_H
#define KTS_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "keysched.h"

#define KTS_RECORD_HEADER 5
#define KTS_RECORD_TAG 16
#define KTS_RECORD_MAX_PLAIN 16384
/* Largest protected record: header, plaintext, inner type, tag. */
#define KTS_RECORD_MAX (KTS_RECORD_HEADER + KTS_RECORD_MAX_PLAIN + 1 + KTS_RECORD_TAG)

/* Protect len bytes of content type `type` as record number seq: out gets the
 * 5-byte header and the ciphertext. Returns the record length, or -1. */
int kts_tls13_seal(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq,
		   unsigned char type, const unsigned char *in, size_t len, unsigned char *out,
		   size_t out_cap);

/* Open one whole record (header included) protected as record number seq: out
 * gets the content (padding removed), *type its inner content type. Returns the
 * content length, or -1 if the record is malformed or fails authentication. */
int kts_tls13_open(enum kts_aead aead, const struct kts_dir_keys *k, uint64_t seq,
		   const unsigned char *rec, size_t rec_len, unsigned char *out, size_t out_cap,
		   unsigned char *type);

#endif
