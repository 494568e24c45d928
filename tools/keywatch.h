/* keywatch.h - what the library keeps of the ticket keys kts-server adds, so
 * the server can say it: kts_config_add_ticket_key keeps the
 * KTS_TICKET_KEYS_MAX newest keys, a key seals (encrypts) new tickets for one
 * session lifetime after it was added and is dropped at twice the lifetime
 * (lib/include/kts.h). Pure: the caller passes the time, the library's clock
 * (time(NULL)); one struct per process, not thread-safe. */
#ifndef KTS_TOOLS_KEYWATCH_H
#define KTS_TOOLS_KEYWATCH_H

#include <kts.h>
#include <stddef.h>
#include <time.h>

struct keywatch {
	unsigned int lifetime;                /* seconds */
	size_t n;                             /* keys the library holds */
	time_t added[KTS_TICKET_KEYS_MAX];    /* oldest first */
	int told;                             /* the stop of the newest key was reported */
};

void keywatch_init(struct keywatch *w, unsigned int lifetime);

/* One key was added at now. Returns how many older keys it pushed out (0 or
 * 1; expired keys go without counting). A new key is news: keywatch_stopped
 * reports again once this one stops sealing. */
size_t keywatch_add(struct keywatch *w, time_t now);

/* Keys the library holds at now (expired ones dropped). */
size_t keywatch_kept(struct keywatch *w, time_t now);

/* Does the newest key still seal new tickets at now? */
int keywatch_sealing(const struct keywatch *w, time_t now);

/* 1 once when no key seals any more (until the next keywatch_add), else 0. */
int keywatch_stopped(struct keywatch *w, time_t now);

/* Seconds from now until the newest key stops sealing; 0 if it has already
 * stopped (or there is none). */
time_t keywatch_until_stop(const struct keywatch *w, time_t now);

#endif
