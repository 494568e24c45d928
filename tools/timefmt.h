/* timefmt.h - times for people: what ktsctl prints. */
#ifndef KTS_TOOLS_TIMEFMT_H
#define KTS_TOOLS_TIMEFMT_H

#include <stdint.h>

/* t (seconds since the Unix epoch) as "2026-12-04T19:30:00Z" in buf, or as
 * the number when it is out of gmtime's range. Returns buf. */
const char *timefmt_utc(int64_t t, char buf[32]);

#endif
