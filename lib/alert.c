/*
 * alert.c - alerts kts itself sends once the kernel owns TX, or once OpenSSL
 * is released: a fatal one as it fails a connection (so the peer learns why
 * instead of seeing a bare close), and warnings. For kernel TX both are
 * queued like the other records kts sends after the handoff, and sent by
 * kts_post_handshake_flush; kts's own userspace TX seals them in line.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"
#include "tls_wire.h"

/* Without OpenSSL, userspace TX is sealed by kts (softrx.c): straight into
 * the send queue, behind what is queued already. */
static int soft_alert(struct kts *c, unsigned char level, unsigned char desc)
{
	const unsigned char a[2] = {level, desc};

	return kts_softtx_send(c, KTS_RECORD_ALERT, a, sizeof(a));
}

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
	} else if (c->soft_rx && !c->tx_closed && c->state != KTS_STATE_FAILED) {
		soft_alert(c, ALERT_FATAL, desc); /* best effort: failing either way */
		c->tx_closed = 1;
	}
	return kts_fail_fatal(c, code, "%s", msg);
}

void kts_alert_warning(struct kts *c, unsigned char desc)
{
	if (c->soft_rx && !c->tx_closed) {
		soft_alert(c, ALERT_WARNING, desc);
		return;
	}
	if (c->path[KTS_TX] != KTS_PATH_KERNEL || c->tx_closed || c->tx_alert_pending)
		return;
	c->tx_alert[0] = ALERT_WARNING;
	c->tx_alert[1] = desc;
	c->tx_alert_pending = 1;
}
