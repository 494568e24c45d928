/*
 * rx.c - what one read from kernel RX means. No reads or sends here: kts_read
 * feeds it what recvmsg returned, and a completion-based caller can feed it
 * what its ring received. Replies it decides on (alerts, KeyUpdate answers)
 * are queued on the connection for kts_post_handshake_flush; the only system
 * calls it makes are key installs for a KeyUpdate (posthandshake.c).
 */
#include <errno.h>
#include <string.h>

#include <openssl/ssl.h>

#include "internal.h"
#include "tls_wire.h"

int kts_rx_error(struct kts *c, int err)
{
	switch (err) {
	case -EAGAIN:
		return KTS_WANT_READ;
	case -EBADMSG:
		return kts_refuse(c, ALERT_BAD_RECORD_MAC, KTS_ERR_TLS,
				  "read: record failed authentication (bad_record_mac)");
	case -EMSGSIZE:
		return kts_refuse(c, ALERT_RECORD_OVERFLOW, KTS_ERR_TLS,
				  "read: record too large (record_overflow)");
	case -EINVAL:
		return kts_refuse(c, ALERT_DECODE_ERROR, KTS_ERR_TLS,
				  "read: malformed record header (bad version or length)");
	case -EKEYEXPIRED:
		return kts_refuse(c, ALERT_INTERNAL_ERROR, KTS_ERR_UNSUPPORTED,
				  "read: peer updated its traffic keys (KeyUpdate) and the "
				  "kernel holds records under the new keys");
	case -EPROTO:
		return kts_fail_fatal(c, KTS_ERR_TLS, "read: record type lost (control message truncated)");
	default:
		return kts_fail_fatal(c, KTS_ERR_SYS, "read: %s", strerror(-err));
	}
}

/* Bytes of an alert record; a reader with a tiny buffer gets it in parts.
 * end (MSG_EOR) says whether the record ended with them, where known. */
static ssize_t alert(struct kts *c, const unsigned char *buf, size_t n, int end)
{
	const unsigned char *a = c->rx_alert;

	if (n > sizeof(c->rx_alert) - c->rx_alert_len ||
	    (c->rx_alert_len + n == sizeof(c->rx_alert) && end == 0))
		return kts_refuse(c, ALERT_DECODE_ERROR, KTS_ERR_TLS,
				  "read: alert record of more than 2 bytes");
	memcpy(c->rx_alert + c->rx_alert_len, buf, n);
	c->rx_alert_len += n;
	if (c->rx_alert_len < sizeof(c->rx_alert)) {
		if (end == 1)
			return kts_refuse(c, ALERT_DECODE_ERROR, KTS_ERR_TLS,
					  "read: alert record of fewer than 2 bytes");
		return KTS_RX_AGAIN;
	}
	c->rx_alert_len = 0;
	if (a[1] == ALERT_CLOSE_NOTIFY) {
		c->rx_eof = 1;
		return 0;
	}
	/* Warnings are informational in TLS 1.2 (no_renegotiation...); TLS 1.3
	 * keeps only user_canceled as one (RFC 8446 6). */
	if (a[0] == ALERT_WARNING && (a[1] == ALERT_USER_CANCELED || c->version == TLS1_2_VERSION))
		return KTS_RX_AGAIN;
	return kts_fail_fatal(c, KTS_ERR_TLS, "read: peer sent %s alert: %s",
			      a[0] == ALERT_FATAL ? "fatal" : "warning",
			      SSL_alert_desc_string_long(a[1]));
}

ssize_t kts_rx_record(struct kts *c, unsigned char type, unsigned char *buf, size_t n, int end)
{
	ssize_t rc;

	if (n == 0)
		return kts_fail_fatal(c, KTS_ERR_TRUNCATED,
				      "read: peer closed the connection without close_notify");
	/* One read never mixes record types, but a message or an alert read in
	 * parts must go on in records of its own type. */
	if (c->rx_alert_len > 0 && type != KTS_RECORD_ALERT)
		return kts_refuse(c, ALERT_DECODE_ERROR, KTS_ERR_TLS, "read: alert cut short");
	if (c->hs_len > 0 && type != KTS_RECORD_HANDSHAKE)
		return kts_refuse(c, ALERT_UNEXPECTED_MESSAGE, KTS_ERR_TLS,
				  "read: record of type %u inside a handshake message", type);
	switch (type) {
	case KTS_RECORD_DATA:
		return (ssize_t)n;
	case KTS_RECORD_HANDSHAKE:
		rc = kts_post_handshake(c, buf, n);
		OPENSSL_cleanse(buf, n); /* a ticket is no business of the caller */
		return rc == KTS_OK ? KTS_RX_AGAIN : rc;
	case KTS_RECORD_ALERT:
		return alert(c, buf, n, end);
	default:
		return kts_refuse(c, ALERT_UNEXPECTED_MESSAGE, KTS_ERR_TLS,
				  "read: unexpected record type %u", type);
	}
}
