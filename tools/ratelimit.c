/* ratelimit.c - at most one log line of a kind per interval (see ratelimit.h). */
#include "ratelimit.h"

void ratelimit_init(struct ratelimit *r, int64_t interval_ms)
{
	r->interval = interval_ms;
	r->next = 0;
	r->started = 0;
	r->held = 0;
}

int ratelimit_allow(struct ratelimit *r, int64_t now, unsigned long *held_back)
{
	if (r->started && now < r->next) {
		r->held++;
		return 0;
	}
	*held_back = r->held;
	r->held = 0;
	r->started = 1;
	r->next = now + r->interval;
	return 1;
}
