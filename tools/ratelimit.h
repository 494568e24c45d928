/* ratelimit.h - at most one log line of a kind per interval, counting the
 * ones held back. Pure: the caller passes the time (any clock in ms, e.g.
 * deadline_now()). Not thread-safe. */
#ifndef KTS_TOOLS_RATELIMIT_H
#define KTS_TOOLS_RATELIMIT_H

#include <stdint.h>

struct ratelimit {
	int64_t interval; /* ms between lines */
	int64_t next;     /* no line before this time */
	int started;      /* a line was allowed before */
	unsigned long held; /* events not logged since the last line */
};

void ratelimit_init(struct ratelimit *r, int64_t interval_ms);

/* An event at now: 1 if it may be logged (*held_back then gets how many
 * events were not logged since the previous line), 0 if it is held back. */
int ratelimit_allow(struct ratelimit *r, int64_t now, unsigned long *held_back);

#endif
