/* deadline.c - time limits for connections (see deadline.h). */
#include "deadline.h"

#include <time.h>

int64_t deadline_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t add_ms(int64_t now, int64_t ms)
{
	return ms < 0 || now > DEADLINE_NEVER - ms ? DEADLINE_NEVER : now + ms;
}

void deadline_total(struct deadline *d, int64_t now, int64_t ms)
{
	d->end = add_ms(now, ms);
	d->window = 0;
	d->min_bytes = 0;
	d->moved = 0;
}

void deadline_progress(struct deadline *d, int64_t now, int64_t window, uint64_t min_bytes)
{
	d->end = add_ms(now, window);
	d->window = window;
	d->min_bytes = min_bytes ? min_bytes : 1;
	d->moved = 0;
}

void deadline_moved(struct deadline *d, int64_t now, uint64_t bytes)
{
	if (d->window == 0)
		return;
	d->moved += bytes;
	if (d->moved < d->min_bytes)
		return;
	d->moved = 0;
	d->end = add_ms(now, d->window);
}

int deadline_expired(const struct deadline *d, int64_t now)
{
	return d->end != DEADLINE_NEVER && now >= d->end;
}

int deadline_poll_ms(const struct deadline *d, int64_t now)
{
	int64_t left;

	if (d->end == DEADLINE_NEVER)
		return -1;
	if (now >= d->end)
		return 0;
	left = d->end - now;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}
