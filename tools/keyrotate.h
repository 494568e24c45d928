/* keyrotate.h - the schedule ktsctl gives ticket keys. With interval R and
 * session lifetime L (the key-set file's header):
 *
 *   init    one key, active from now until now + 2R, opening tickets until
 *           now + 2R + L;
 *   rotate  drops gone keys and adds a staged key: it starts sealing R after
 *           the newest key started (or R from now, if later), seals for 2R,
 *           and opens tickets L more. Every server thus holds a key for a
 *           whole interval before any seals under it; the 2R window means a
 *           rotation late by up to R leaves no gap; and every ticket can be
 *           opened for its whole lifetime.
 *
 * Run rotate every R (kts-rotate.timer). A rotation while a key is staged
 * for more than R/2 yet adds nothing (a timer that fires twice). The clock
 * is an argument, so tests control it.
 */
#ifndef KTS_TOOLS_KEYROTATE_H
#define KTS_TOOLS_KEYROTATE_H

#include <stddef.h>
#include <stdint.h>

#include "keyset.h"

/* A fresh set in ks (interval and lifetime set by the caller). 0, or -1 with
 * a message in err (the random generator failed). */
int keyrotate_init(struct keyset *ks, int64_t now, char *err, size_t errlen);

/* One rotation at now. Returns 1 (a key added; msg says which), 0 (nothing
 * added; msg says why), or -1 (msg says the error; do not save ks). force
 * adds a key even while one is staged. */
int keyrotate_rotate(struct keyset *ks, int64_t now, int force, char *msg, size_t len);

#endif
