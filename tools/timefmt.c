/* timefmt.c - see timefmt.h. */
#include "timefmt.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

const char *timefmt_utc(int64_t t, char buf[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, 32, "%" PRId64, t);
	return buf;
}
