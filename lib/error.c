/*
 * error.c - error messages on the objects, and OpenSSL results mapped to kts codes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "internal.h"

static void set_error(struct kts *c, const char *fmt, va_list ap)
{
	if (!c->error && !(c->error = malloc(KTS_ERRLEN))) {
		c->error_lost = 1;
		return;
	}
	c->error_lost = 0;
	vsnprintf(c->error, KTS_ERRLEN, fmt, ap);
}

int kts_fail(struct kts *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_error(c, fmt, ap);
	va_end(ap);
	return code;
}

int kts_fail_fatal(struct kts *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_error(c, fmt, ap);
	va_end(ap);
	/* From here on every call returns this code. */
	c->state = KTS_STATE_FAILED;
	c->fail_code = code;
	/* A dead connection needs no secrets. */
	kts_secrets_wipe(c);
	kts_softtx_wipe(c);
	kts_softrx_wipe(c);
	return code;
}

int kts_config_fail(struct kts_config *cfg, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cfg->error, sizeof(cfg->error), fmt, ap);
	va_end(ap);
	return code;
}

/* Empty OpenSSL's error queue; return its first entry, the cause. */
static unsigned long first_ssl_error(void)
{
	unsigned long first = ERR_get_error();

	kts_err_clear();
	return first;
}

static const char truncated[] = "peer closed the connection without close_notify";

const char *kts_ssl_reason(char *buf, size_t len)
{
	unsigned long first = first_ssl_error();

	buf[0] = '\0';
	if (first) {
		const char *reason = ERR_reason_error_string(first);
		if (reason)
			snprintf(buf, len, "%s", reason);
		else
			ERR_error_string_n(first, buf, len);
	}
	return buf;
}

int kts_ssl_result(struct kts *c, int ret, const char *what)
{
	char reason[256];
	int err = SSL_get_error(c->ssl, ret), first;
	long verify;

	if (c->state == KTS_STATE_FAILED) { /* a BIO callback failed it and said why */
		kts_err_clear();
		return c->fail_code;
	}
	switch (err) {
	case SSL_ERROR_WANT_READ:
		return KTS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return KTS_WANT_WRITE;
	case SSL_ERROR_WANT_CLIENT_HELLO_CB: /* sessstore.c: a store lookup */
		return KTS_WANT_SESSION;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		kts_err_clear();
		if (errno == 0)
			return kts_fail_fatal(c, KTS_ERR_TRUNCATED, "%s: %s", what, truncated);
		return kts_fail_fatal(c, KTS_ERR_SYS, "%s: %s", what, strerror(errno));
	case SSL_ERROR_SSL:
		/* The first queued error is the cause; later ones can be side
		 * effects (an alert that could not be sent, say). */
		first = ERR_GET_REASON(ERR_peek_error());
		if (first == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			kts_err_clear();
			return kts_fail_fatal(c, KTS_ERR_TRUNCATED, "%s: %s", what, truncated);
		}
		kts_ssl_reason(reason, sizeof(reason));
		verify = SSL_get_verify_result(c->ssl);
		if (first == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK)
			return kts_fail_fatal(c, KTS_ERR_TLS, "%s: certificate verification failed: %s",
					      what, X509_verify_cert_error_string(verify));
		return kts_fail_fatal(c, KTS_ERR_TLS, "%s: %s", what,
				      reason[0] ? reason : "TLS protocol error");
	default:
		kts_err_clear();
		return kts_fail_fatal(c, KTS_ERR_TLS, "%s: OpenSSL error %d", what, err);
	}
}
