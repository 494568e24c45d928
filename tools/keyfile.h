/* keyfile.h - kts-server's --ticket-keys file in a running server: load the
 * key set (keyset.h) into the config as a whole, keep what the log and status
 * need (keyrevs and times, never key bytes), and say when no key seals. Each
 * function fills msg with one log line. One struct per process; not
 * thread-safe (the process loop owns it). */
#ifndef KTS_TOOLS_KEYFILE_H
#define KTS_TOOLS_KEYFILE_H

#include <kts.h>
#include <stddef.h>
#include <stdint.h>

struct keyfile {
	const char *path; /* NULL: no --ticket-keys */
	size_t n;
	/* The set in use, its key bytes zeroed: the library's rules need
	 * only keyrevs and times. */
	struct kts_ticket_key keys[KTS_TICKET_KEYSET_MAX];
	long sealing;        /* keyrev that sealed at the last check; -1: none */
	int64_t checked;     /* when that was */
};

/* At start: load the file into cfg. Returns 0, or -1 with the problem in msg. */
int keyfile_start(struct keyfile *kf, struct kts_config *cfg, char *msg, size_t len);

/* Reload (why: "SIGHUP", "file replaced"): the new set replaces the old one
 * as a whole, or, if the file is bad, the keys in use stay. Returns 0 or -1. */
int keyfile_reload(struct keyfile *kf, struct kts_config *cfg, const char *why, char *msg,
		   size_t len);

/* 1 (and msg) when the key that seals changed since the last call by time
 * alone (a staged key took over, or the last active key retired: then no
 * ticket is issued until a key is active); 0 otherwise. */
int keyfile_check(struct keyfile *kf, int64_t now, char *msg, size_t len);

/* Milliseconds until a key of the set changes state after the last check
 * (0: a change is due), -1 if none will. */
int64_t keyfile_next_check_ms(const struct keyfile *kf, int64_t now);

#endif
