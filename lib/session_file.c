/* session_file.c - placeholder, being written: client session files. */
#include "internal.h"

int kts_client_session_offer(struct kts *c)
{
	(void)c;
	return KTS_OK;
}
