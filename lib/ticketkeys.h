/*
 * ticketkeys.h - the server's session ticket key ring: which key encrypts new
 * tickets, which keys still decrypt old ones, and when keys expire.
 *
 * No SSL objects here: callers copy a key out and do the crypto themselves,
 * so the ring's lock is held only for the copy. Thread-safe.
 *
 * A key is KTS_TICKET_KEY_LEN bytes: AES-256 key (32) || HMAC-SHA256 key (32),
 * or, with aes_bits 128 (keys shared with nginx or HAProxy in their 48-byte
 * files), AES-128 key (16) || HMAC-SHA256 key (16) and 32 zero bytes. Its
 * 16-byte name (sent in every ticket) is the name the caller gave, or keyrev,
 * big-endian (4), then the first 12 bytes of HMAC-SHA256(hmac key, "kts
 * ticket key name") (kts_ticket_key_name). Names are distinct in a set, so a
 * ticket's name finds one key.
 *
 * Every key has the three times of struct kts_ticket_key (kts.h) and a state
 * by the clock; kts_ticket_key_state and kts_ticket_keys_encrypting say which,
 * for the ring and for ktsctl alike. Keys come three ways:
 *  - a whole set (kts_ticket_ring_set), times given;
 *  - one at a time (kts_ticket_ring_add): the newest sealing, times from when
 *    it was added (active for one lifetime, retired for the next), at most
 *    KTS_TICKET_KEYS_MAX keys kept;
 *  - automatic mode (no key given yet): keys come from a secret chain seeded
 *    with RAND_priv_bytes. Wall-clock time is cut into epochs of `lifetime`
 *    seconds; epoch e's key (keyrev e) is derived from the chain's link for
 *    e, active during epoch e and retired during e + 1. Each step is one-way
 *    and passed links are wiped, so a later memory dump yields no key of an
 *    expired ticket (the ring steps on each lookup and on
 *    kts_ticket_ring_refresh: a process that does neither keeps its link).
 *    Processes forked after the lifetime is set hold the same chain, so they
 *    issue and accept each other's tickets (libtls makes per-process keys).
 *    After a gap of more than 100000 epochs the chain is reseeded instead of
 *    stepped (no stall; processes then stop sharing).
 * Once the caller gives a key, the automatic keys are dropped (wiped) and
 * never come back: tickets under them cost one full handshake.
 */
#ifndef KTS_TICKETKEYS_H
#define KTS_TICKETKEYS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "kts.h"

#define KTS_TICKET_NAME_LEN KTS_TICKET_KEY_NAME_LEN

struct kts_ticket_ring;

/* A new, empty ring in automatic mode with lifetime 0 (no keys). NULL when
 * memory or the random generator fails. */
struct kts_ticket_ring *kts_ticket_ring_new(void);
/* Wipe every key and free. NULL is fine. */
void kts_ticket_ring_free(struct kts_ticket_ring *r);

/* Replace the clock (default: time(NULL)); for tests. */
void kts_ticket_ring_set_clock(struct kts_ticket_ring *r, time_t (*now)(void *arg), void *arg);

/* Ticket lifetime in seconds: a key expires 2 x lifetime after it was added
 * (encrypting for at most one lifetime, then decrypting tickets that live one
 * lifetime). Automatic keys rotate every lifetime. 0: no automatic keys. */
void kts_ticket_ring_set_lifetime(struct kts_ticket_ring *r, unsigned int seconds);

/* Add the caller's key; it becomes the newest (encrypting) key. Returns KTS_OK,
 * or KTS_ERR_ARG / KTS_ERR_NOMEM with a message in err ("ticket key: ..."). */
int kts_ticket_ring_add(struct kts_ticket_ring *r, uint32_t keyrev, const unsigned char *key,
			size_t keylen, char *err, size_t errlen);

/* Bring the ring to the current time, as every lookup does first: drop expired
 * keys and, in automatic mode, step the chain to the current epoch. Returns 0,
 * or -1 if the chain could not be stepped. */
int kts_ticket_ring_refresh(struct kts_ticket_ring *r);

/* Replace every key with keys[0, n) (kts_config_set_ticket_keys). Returns
 * KTS_OK, or KTS_ERR_ARG / KTS_ERR_NOMEM with a message in err; on failure the
 * ring is unchanged. */
int kts_ticket_ring_set(struct kts_ticket_ring *r, const struct kts_ticket_key *keys, size_t n,
			char *err, size_t errlen);

/* Seconds from now until the key that seals a ticket now stops opening
 * tickets (the cap of a ticket's lifetime); -1 when no key seals. */
int64_t kts_ticket_ring_seal_window(struct kts_ticket_ring *r);

/* The key for a new ticket: copies its name and bytes out, and (aes_bits not
 * NULL) its AES size, 128 or 256 (the halves are then 16 or 32 bytes). Returns
 * 1, 0 when there is none (lifetime 0, or no key active), -1 on internal
 * error. */
int kts_ticket_ring_encrypt_key(struct kts_ticket_ring *r, unsigned char name[KTS_TICKET_NAME_LEN],
				unsigned char key[KTS_TICKET_KEY_LEN], unsigned int *aes_bits);

/* The key a ticket names: copies its bytes (and AES size) out. Returns 1 (the
 * key that seals now), 2 (another key: the ticket should be renewed), 0
 * (unknown or gone), -1 on internal error. */
int kts_ticket_ring_decrypt_key(struct kts_ticket_ring *r,
				const unsigned char name[KTS_TICKET_NAME_LEN],
				unsigned char key[KTS_TICKET_KEY_LEN], unsigned int *aes_bits);

#endif
