/* server_session.c - placeholder, being written: server-side resumption. */
#include "internal.h"

int kts_server_resumption_init(struct kts_config *cfg)
{
	(void)cfg;
	return KTS_OK;
}

void kts_server_resumption_free(struct kts_config *cfg)
{
	(void)cfg;
}
