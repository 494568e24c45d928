/* fleetcmd.h - ktsctl's fleet commands (fleetkeys.h): keys init, rotate and
 * sync with --store, and kek init.
 *
 * sync writes what it last did to FILE.sync beside the key file (JSON, mode
 * 0600, replaced atomically): "time" and "ok" of the last attempt, "message"
 * (its line), "generation" the key file holds and "good" (when the store
 * last answered with a set this machine took or already had). kts-server's
 * `status` shows it, so a machine cut off from the store says since when. */
#ifndef KTS_TOOLS_FLEETCMD_H
#define KTS_TOOLS_FLEETCMD_H

#include <stdint.h>
#include <sys/types.h>

#define FLEET_POLL_DEFAULT 60 /* sync --follow: seconds between polls */
#define FLEET_BACKOFF_MAX 30  /* ... and at most this long (or --poll) between retries */

struct fleet_opts {
	const char *verb; /* init, rotate, sync */
	const char *store, *kek, *to;
	long interval, lifetime; /* -1: not given */
	int force, follow;
	long poll; /* seconds */
	int64_t now; /* -1: the clock (sync --follow always uses the clock) */
	uid_t uid;
	gid_t gid;
};

/* Run o->verb. Returns ktsctl's exit status, with its lines on stdout or
 * stderr. */
int fleetcmd_keys(const struct fleet_opts *o);

/* ktsctl kek init PATH: a new random KEK, 0600 (owner uid:gid when not -1);
 * an existing file is kept unless force. */
int fleetcmd_kek_init(const char *path, uid_t uid, gid_t gid, int force);

#endif
