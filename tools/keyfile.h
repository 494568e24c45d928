/* keyfile.h - kts-server's --ticket-keys file in a running server: the keys
 * this process added from it (ticketfile.h parses, keywatch.h follows what the
 * library keeps of them) and the log lines about them. Each function fills msg
 * with one log line (no key bytes). */
#ifndef KTS_TOOLS_KEYFILE_H
#define KTS_TOOLS_KEYFILE_H

#include <kts.h>
#include <stddef.h>
#include <stdint.h>

#include "keywatch.h"
#include "ticketfile.h"

struct keyfile {
	const char *path; /* NULL: no --ticket-keys */
	struct ticketfile_seen *seen;
	size_t nseen;
	struct keywatch watch;
};

/* At start: add the file's keys to cfg (lifetime: the session lifetime).
 * Returns 0, or -1 with the problem in msg. */
int keyfile_start(struct keyfile *kf, struct kts_config *cfg, unsigned int lifetime, char *msg,
		  size_t len);

/* SIGHUP: add the keys that are new in the file. Keys gone from the file stay
 * until they expire or newer keys push them out. Returns 0 or -1 (the keys
 * loaded before stay in use). */
int keyfile_reload(struct keyfile *kf, struct kts_config *cfg, char *msg, size_t len);

/* 1 (and msg) once when the newest key has stopped sealing tickets: no ticket
 * is issued until a reload adds a key; 0 otherwise. */
int keyfile_check(struct keyfile *kf, char *msg, size_t len);

/* Milliseconds until keyfile_check may have news, -1 if none is coming. */
int64_t keyfile_next_check_ms(const struct keyfile *kf);

#endif
