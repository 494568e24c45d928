/* keyimport.h - ticket keys in the key files of other servers, to and from
 * kts key sets (ktsctl keys import / export). Pure functions over buffers;
 * ktsctl does the files.
 *
 * Every format holds a 16-byte key name (first in every ticket), an
 * AES-CBC key and an HMAC-SHA256 key; tickets are name | IV | AES-CBC
 * ciphertext | HMAC over the rest, as kts seals them. Field orders differ:
 *
 *   nginx, envoy  80 bytes: name 16 | HMAC key 32 | AES-256 key 32
 *   nginx48       48 bytes: name 16 | AES-128 key 16 | HMAC key 16
 *   haproxy       80 bytes: name 16 | AES-256 key 32 | HMAC key 32
 *   haproxy48     48 bytes: name 16 | AES-128 key 16 | HMAC key 16
 *
 * nginx (ssl_session_ticket_key, one file per key) and Envoy
 * (session_ticket_keys) seal under their first key and open with all. A
 * HAProxy tls-ticket-keys file is one base64 key per line; HAProxy keeps the
 * last 3 lines, seals under the penultimate one and opens with all 3.
 * Buffers that held key bytes are wiped; nothing here prints them.
 */
#ifndef KTS_TOOLS_KEYIMPORT_H
#define KTS_TOOLS_KEYIMPORT_H

#include <kts.h>
#include <stddef.h>
#include <stdint.h>

#include "keyset.h"

#define KEYFMT_RAW_MAX 80
#define KEYFMT_HAPROXY_KEYS 3 /* HAProxy's TLS_TICKETS_NO */

struct keyfmt {
	const char *name;      /* --format */
	size_t len;            /* bytes of one key: 48 or 80 */
	size_t aes_at, hmac_at; /* offsets of the two keys */
	int haproxy;           /* one base64 file; else one raw file per key */
};

/* The format called name, or NULL. */
const struct keyfmt *keyfmt_find(const char *name);
/* "nginx, nginx48, haproxy, haproxy48, envoy". */
extern const char keyfmt_names[];

/* One key of format f from raw[0, len): name, bytes and AES size into *k,
 * the rest zero. 0, or -1 with the problem in err. */
int keyfmt_decode(const struct keyfmt *f, const unsigned char *raw, size_t len,
		  struct kts_ticket_key *k, char *err, size_t errlen);

/* k in format f: KEYFMT_RAW_MAX bytes at most into out, f->len of them used,
 * under the name kts puts in its tickets. 0, or -1 (k's AES size is not
 * f's, or its name cannot be computed) with the problem in err. */
int keyfmt_encode(const struct keyfmt *f, const struct kts_ticket_key *k,
		  unsigned char out[KEYFMT_RAW_MAX], char *err, size_t errlen);

/* The keys of a HAProxy file text[0, len) that HAProxy uses (its last
 * KEYFMT_HAPROXY_KEYS lines), in file order, into keys[0, *n), identical
 * lines once; *enc is the one HAProxy seals under. Every line must be one
 * base64 key of f's size. 0, or -1 with "line N: ..." in err. */
int keyfmt_haproxy_parse(const struct keyfmt *f, const char *text, size_t len,
			 struct kts_ticket_key keys[KEYFMT_HAPROXY_KEYS], size_t *n, size_t *enc,
			 char *err, size_t errlen);

/* A kts key set from foreign keys in[0, n) (names and bytes): in[enc] active
 * from now for 2 intervals and opening tickets a lifetime longer (as keys
 * init schedules), the others retired (opening tickets until now +
 * lifetime). keyrevs are the first 4 bytes of each name, big-endian, when
 * those are distinct, else 1..n. ks->interval and ks->lifetime are set by
 * the caller. 0, or -1 with the reason (kts_ticket_keys_check's) in err. */
int keyimport_build(struct keyset *ks, const struct kts_ticket_key *in, size_t n, size_t enc,
		    int64_t now, char *err, size_t errlen);

/* Which keys of ks to export at now, and in what order: order[0] the key that
 * seals now, then the staged keys, then the retired ones (an active key
 * another supersedes counts as retired), each newest first; gone keys never.
 * Returns the count, or -1 when no key seals now (err says so). */
int keyexport_order(const struct keyset *ks, int64_t now, size_t order[KTS_TICKET_KEYSET_MAX],
		    char *err, size_t errlen);

/* The HAProxy lines for an order from keyexport_order: the newest retired
 * key, the sealing key (penultimate: HAProxy seals under it), the staged key
 * that seals next; a missing one is the sealing key again (HAProxy needs 3
 * lines). lines[] gets indexes into ks->keys; returns how many keys of the
 * order HAProxy cannot hold. */
size_t keyexport_haproxy_lines(const struct keyset *ks, const size_t *order, size_t n,
			       int64_t now, size_t lines[KEYFMT_HAPROXY_KEYS]);

#endif
