/*
 * alert.c - alerts kts itself sends once the kernel owns TX: a fatal one as it
 * fails a connection (so the peer learns why instead of seeing a bare close),
 * and warnings, queued like the other records kts sends after the handoff.
 */
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>

#include "internal.h"
#include "kernel.h"

void kts_alert_fatal(struct kts *c, unsigned char desc)
{
	unsigned char alert[2] = {ALERT_FATAL, desc};

	/* Best effort: after an RX authentication failure the kernel has marked
	 * the socket failed and refuses this send; the peer then sees the close. */
	if (c->path[KTS_TX] == KTS_PATH_KERNEL && !c->tx_closed)
		kts_kernel_send_record(c->fd, KTS_RECORD_ALERT, alert, sizeof(alert), MSG_DONTWAIT);
	c->tx_closed = 1;
}

int kts_refuse(struct kts *c, unsigned char desc, int code, const char *fmt, ...)
{
	char msg[KTS_ERRLEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kts_alert_fatal(c, desc);
	return kts_fail_fatal(c, code, "%s", msg);
}

int kts_alert_warning(struct kts *c, unsigned char desc)
{
	if (c->path[KTS_TX] != KTS_PATH_KERNEL || c->tx_closed)
		return KTS_OK;
	c->tx_alert = desc;
	c->tx_alert_pending = 1;
	return kts_post_handshake_flush(c);
}
