/* ring_clock.h - a ticket key ring on a test clock, for the unit tests of
 * ticketkeys.c (test_ticketkeys.c, test_keyset.c). Include after cmocka.h
 * and ticketkeys.h; each test file gets its own copy of the clock. */
#ifndef KTS_TEST_RING_CLOCK_H
#define KTS_TEST_RING_CLOCK_H

#include <time.h>

static time_t fake_now;

static time_t fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

/* A new ring whose clock reads fake_now, set to now. */
static struct kts_ticket_ring *ring_at(time_t now, unsigned int lifetime)
{
	struct kts_ticket_ring *r = kts_ticket_ring_new();

	assert_non_null(r);
	fake_now = now;
	kts_ticket_ring_set_clock(r, fake_clock, NULL);
	kts_ticket_ring_set_lifetime(r, lifetime);
	return r;
}

#endif
