/*
 * sesscache.h - the shared TLS 1.2 session-ID cache behind
 * kts_config_set_session_cache(), exposed to lib/ and the unit tests.
 *
 * The table lives in one MAP_SHARED anonymous mapping, so every process forked
 * after it is created reads and writes the same entries. It is split into
 * buckets of KTS_SESS_CACHE_WAYS slots, each bucket with its own process-shared
 * robust mutex; a full bucket evicts its oldest entry.
 */
#ifndef KTS_SESSCACHE_H
#define KTS_SESSCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "kts.h"

#define KTS_SESS_CACHE_MIN 16
#define KTS_SESS_CACHE_MAX 1000000
#define KTS_SESS_CACHE_WAYS 8      /* slots per bucket */
#define KTS_SESS_CACHE_DER_MAX KTS_SESSION_DER_MAX /* largest kept (slot: 2 KiB) */

struct kts_sess_cache;

/* A table of at least entries slots (rounded up to whole buckets). NULL with
 * errno set if the mapping or a mutex cannot be made. */
struct kts_sess_cache *kts_sess_cache_new(size_t entries);
/* Unmap this process's view; other processes keep theirs. */
void kts_sess_cache_free(struct kts_sess_cache *cache);
/* Slots in the table (entries rounded up). */
size_t kts_sess_cache_slots(const struct kts_sess_cache *cache);

/* Store der (a serialized session) under id, replacing an entry with the same
 * id. 1 stored, 0 not (bad id, too large, lock unusable). */
int kts_sess_cache_put(struct kts_sess_cache *cache, const unsigned char *id, size_t id_len,
		       const unsigned char *der, size_t der_len);
/* Copy the entry for id into out (KTS_SESS_CACHE_DER_MAX bytes). Entries older
 * than lifetime seconds are wiped and missed, as is everything if lifetime is
 * 0. Returns the length, or 0 on a miss. */
size_t kts_sess_cache_get(struct kts_sess_cache *cache, const unsigned char *id, size_t id_len,
			  unsigned int lifetime, unsigned char *out);
/* Wipe the entry for id, if any. */
void kts_sess_cache_del(struct kts_sess_cache *cache, const unsigned char *id, size_t id_len);

/* Tests only. bucket: which bucket id lands in (0..slots/WAYS-1). now: the
 * clock in seconds (default CLOCK_BOOTTIME). locked_hook: runs just after a
 * bucket lock is taken (to die while holding it). */
size_t kts_sess_cache_bucket(const struct kts_sess_cache *cache, const unsigned char *id,
			     size_t id_len);
extern int64_t (*kts_sess_cache_now)(void);
extern void (*kts_sess_cache_locked_hook)(void);

#endif
