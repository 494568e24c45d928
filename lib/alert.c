/*
 * alert.c - alerts kts itself sends once the kernel owns TX: a fatal one as it
 * fails a connection (so the peer learns why instead of seeing a bare close),
 * and warnings. Both are queued like the other records kts sends after the
 * handoff, and sent by kts_post_handshake_flush.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"
#include "tls_wire.h"

int kts_refuse(struct kts *c, unsigned char desc, int code, const char *fmt, ...)
{
	char msg[KTS_ERRLEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->path[KTS_TX] == KTS_PATH_KERNEL && !c->tx_closed) {
		c->tx_alert[0] = ALERT_FATAL;
		c->tx_alert[1] = desc;
		c->tx_alert_pending = 1;
		c->tx_hs_len = 0;
		c->tx_rekey_pending = 0;
	}
	return kts_fail_fatal(c, code, "%s", msg);
}

void kts_alert_warning(struct kts *c, unsigned char desc)
{
	if (c->path[KTS_TX] != KTS_PATH_KERNEL || c->tx_closed || c->tx_alert_pending)
		return;
	c->tx_alert[0] = ALERT_WARNING;
	c->tx_alert[1] = desc;
	c->tx_alert_pending = 1;
}
