/* fleetkeys.h - one ticket key set for a fleet of machines, kept in the
 * fleet's store (store.h) as an envelope (envelope.h) under the fleet's KEK:
 * `ktsctl keys init|rotate --store` change it there, `ktsctl keys sync`
 * brings it to each machine's key file, which kts-server reloads as it does
 * any replaced file.
 *
 * Rules:
 *  - init and rotate run under the store's lock (kts:NAME:keys:lock, 30 s),
 *    so two machines' timers never make two keys; a rotation that finds a
 *    key staged for more than half an interval adds nothing (keyrotate.h),
 *    so whoever runs it, the fleet gets one rotation per interval;
 *  - every write counts the generation up and publishes it (kts:NAME:keys):
 *    the generation is the time of the write in seconds, or one more than
 *    the last if that is later, so a set made afresh (a new KEK, an emptied
 *    Redis) is still newer than every machine's file;
 *  - sync takes an envelope only if it opens under the KEK, its set is one
 *    kts-server would take now (kts_ticket_keys_check), and its generation
 *    is not older than the key file's; anything else is refused with one
 *    line and the file stays as it is. A staged key reaches every machine a
 *    whole interval before it seals, so an outage of the store shorter than
 *    that costs no resumption.
 */
#ifndef KTS_TOOLS_FLEETKEYS_H
#define KTS_TOOLS_FLEETKEYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "envelope.h"
#include "keyset.h"
#include "store.h"

#define FLEET_PURPOSE "ticket-keys"
#define FLEET_LOCK_TTL_MS 30000
#define FLEET_LOCK_WAIT_MS 15000

/* init (no set in the store yet, unless force) or rotate the fleet's set
 * at now; interval/lifetime > 0 replace the set's. Returns 1 (written; msg
 * says what), 0 (nothing to do; msg says why), -1 (msg says the error). */
int fleet_init(const struct store_url *u, const struct kek *k, int64_t now, unsigned int interval,
	       unsigned int lifetime, int force, char *msg, size_t len);
int fleet_rotate(const struct store_url *u, const struct kek *k, int64_t now,
		 unsigned int interval, unsigned int lifetime, int force, char *msg, size_t len);

/* The fleet's set, opened and checked at now, into ks (ks->generation
 * set). 0, or -1 (refused) or -2 (the store failed: open a new connection)
 * with why in msg. */
int fleet_fetch(struct store *s, const struct kek *k, int64_t now, struct keyset *ks, char *msg,
		size_t len);

/* Bring path up to the fleet's set at now: 1 written, 0 already current
 * (msg says so), -1 refused or -2 the store failed (msg says why; path
 * unchanged).
 * A new file gets owner uid:gid (-1: the caller); an existing one keeps its
 * own. */
int fleet_sync(struct store *s, const struct kek *k, const char *path, int64_t now, uid_t uid,
	       gid_t gid, char *msg, size_t len);

#endif
