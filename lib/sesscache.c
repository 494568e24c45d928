/* sesscache.c - placeholder, being written: shared TLS 1.2 session cache. */
#include "internal.h"

void kts_sess_cache_free(struct kts_sess_cache *cache)
{
	(void)cache;
}
