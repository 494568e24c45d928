/* deadline.h - time limits for kts-server's connections, as pure arithmetic on
 * times the caller passes in (milliseconds on a monotonic clock), so that any
 * I/O engine can use them: today's threads poll() with deadline_poll_ms(), an
 * event loop would arm a timer for deadline_poll_ms() and call
 * deadline_expired() when it fires.
 *
 * Two kinds:
 *  - total: a fixed end, whatever the peer does (a handshake, a request head:
 *    a client sending a byte at a time cannot stretch it);
 *  - progress: the end moves to now + window each time min_bytes more have
 *    moved (a send: no progress, or less than min_bytes per window, and the
 *    deadline passes; so a body of N bytes takes at most about
 *    N / min_bytes windows). */
#ifndef KTS_TOOLS_DEADLINE_H
#define KTS_TOOLS_DEADLINE_H

#include <stdint.h>

#define DEADLINE_NEVER INT64_MAX

struct deadline {
	int64_t end;        /* absolute ms, or DEADLINE_NEVER */
	int64_t window;     /* progress deadlines: ms allowed for min_bytes; 0 for total */
	uint64_t min_bytes; /* progress deadlines: bytes that push the end */
	uint64_t moved;     /* bytes moved since the end was last pushed */
};

/* The current time for these functions: CLOCK_MONOTONIC in milliseconds. */
int64_t deadline_now(void);

/* A total deadline ms after now (ms < 0: never). */
void deadline_total(struct deadline *d, int64_t now, int64_t ms);

/* A progress deadline: window ms after now, pushed to now + window each time
 * min_bytes (at least 1) more have moved. */
void deadline_progress(struct deadline *d, int64_t now, int64_t window, uint64_t min_bytes);

/* bytes moved at now. No effect on a total deadline. */
void deadline_moved(struct deadline *d, int64_t now, uint64_t bytes);

/* Has the deadline passed at now? */
int deadline_expired(const struct deadline *d, int64_t now);

/* What to give poll() at now: -1 for never, 0 once expired, else the
 * milliseconds left (at most INT32_MAX). */
int deadline_poll_ms(const struct deadline *d, int64_t now);

#endif
