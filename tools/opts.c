/* opts.c - option handling and status output shared by kts-client and kts-server. */
#include "opts.h"

#include <kts.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

const char opts_help_common[] =
	"  --tls 1.2|1.3|1.2-1.3   protocol versions to allow (default 1.2-1.3)\n"
	"  --ciphers LIST          ':'-separated ciphers; names starting with TLS_ set the\n"
	"                          TLS 1.3 suites, all others the TLS 1.2 cipher list\n"
	"                          (OpenSSL syntax); a protocol with no entry keeps its\n"
	"                          default list\n"
	"  --offload auto|require|off\n"
	"                          kernel TLS policy (default auto)\n"
	"  --status                report the offload status after each handshake, with\n"
	"                          the reason for each direction left in userspace\n";

int opts_handle(struct tool_opts *o, int opt, const char *arg)
{
	switch (opt) {
	case OPT_TLS: o->tls = arg; return 1;
	case OPT_CIPHERS: o->ciphers = arg; return 1;
	case OPT_OFFLOAD: o->offload = arg; return 1;
	case OPT_CA: o->ca = arg; return 1;
	case OPT_STATUS: o->status = 1; return 1;
	default: return 0;
	}
}

static int append(char *dst, size_t dstlen, const char *s, size_t n)
{
	size_t cur = strlen(dst);

	if (cur + (cur ? 1 : 0) + n + 1 > dstlen)
		return -1;
	if (cur)
		dst[cur++] = ':';
	memcpy(dst + cur, s, n);
	dst[cur + n] = '\0';
	return 0;
}

int opts_split_ciphers(const char *list, char *tls12, size_t len12, char *tls13, size_t len13)
{
	const char *p = list;

	if (len12 == 0 || len13 == 0)
		return -1;
	tls12[0] = tls13[0] = '\0';
	while (*p) {
		size_t n = strcspn(p, ":, ");

		if (n) {
			int rc = strncmp(p, "TLS_", 4) == 0 ? append(tls13, len13, p, n)
							    : append(tls12, len12, p, n);
			if (rc < 0)
				return -1;
		}
		p += n;
		if (*p)
			p++;
	}
	return 0;
}

int opts_apply(struct kts_config *cfg, const struct tool_opts *o, char *err, size_t errlen)
{
	if (o->tls && kts_config_parse_protocols(cfg, o->tls) < 0) {
		snprintf(err, errlen, "--tls: %s", kts_config_error(cfg));
		return -1;
	}
	if (o->ciphers) {
		char l12[1024], l13[1024];

		if (opts_split_ciphers(o->ciphers, l12, sizeof(l12), l13, sizeof(l13)) < 0) {
			snprintf(err, errlen, "--ciphers: list too long");
			return -1;
		}
		if (!l12[0] && !l13[0]) {
			snprintf(err, errlen, "--ciphers: empty list");
			return -1;
		}
		if (l12[0] && kts_config_set_ciphers(cfg, l12) < 0) {
			snprintf(err, errlen, "--ciphers: %s", kts_config_error(cfg));
			return -1;
		}
		if (l13[0] && kts_config_set_ciphersuites(cfg, l13) < 0) {
			snprintf(err, errlen, "--ciphers: %s", kts_config_error(cfg));
			return -1;
		}
	}
	if (o->offload && kts_config_parse_offload(cfg, o->offload) < 0) {
		snprintf(err, errlen, "--offload: %s", kts_config_error(cfg));
		return -1;
	}
	if (o->ca && kts_config_set_ca_file(cfg, o->ca) < 0) {
		snprintf(err, errlen, "--ca: %s", kts_config_error(cfg));
		return -1;
	}
	return 0;
}

static const char *or_unknown(const char *s)
{
	return s && *s ? s : "unknown";
}

void opts_print_status(FILE *f, const char *prefix, const struct kts *c, int reasons)
{
	char buf[2048];
	int n, tx = kts_offload(c, KTS_TX), rx = kts_offload(c, KTS_RX);
	size_t len;

	n = snprintf(buf, sizeof(buf), "%soffload tx=%s rx=%s version=%s cipher=%s resumed=%s\n",
		     prefix, kts_path_name(tx), kts_path_name(rx), or_unknown(kts_version(c)),
		     or_unknown(kts_cipher(c)), kts_session_resumed(c) ? "yes" : "no");
	len = n < 0 ? 0 : (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;
	if (reasons) {
		static const char *const names[2] = { "tx", "rx" };
		int paths[2] = { tx, rx };

		for (int d = 0; d < 2; d++) {
			if (paths[d] != KTS_PATH_USER || len >= sizeof(buf) - 1)
				continue;
			n = snprintf(buf + len, sizeof(buf) - len, "%soffload-reason %s: %s\n", prefix,
				     names[d], or_unknown(kts_offload_reason(c, (enum kts_dir)d)));
			len += n < 0 ? 0 : (size_t)n < sizeof(buf) - len ? (size_t)n
									  : sizeof(buf) - len - 1;
		}
	}
	fwrite(buf, 1, len, f);
	fflush(f);
}

void opts_die(const char *prog, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "%s: ", prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

int opts_session_id(const char *arg, unsigned char out[OPTS_SESSION_ID_MAX], size_t *len,
		    char *err, size_t errlen)
{
	size_t n = strlen(arg);

	if (strncmp(arg, "hex:", 4) != 0) {
		if (n == 0 || n > OPTS_SESSION_ID_MAX) {
			snprintf(err, errlen, "must be 1..%d bytes, got %zu", OPTS_SESSION_ID_MAX, n);
			return -1;
		}
		memcpy(out, arg, n);
		*len = n;
		return 0;
	}
	arg += 4;
	n -= 4;
	if (n == 0 || n % 2 || n / 2 > OPTS_SESSION_ID_MAX) {
		snprintf(err, errlen, "hex: takes 2..%d hex digits (1..%d bytes), got %zu digits",
			 2 * OPTS_SESSION_ID_MAX, OPTS_SESSION_ID_MAX, n);
		return -1;
	}
	for (size_t i = 0; i < n / 2; i++) {
		int hi = OPENSSL_hexchar2int((unsigned char)arg[2 * i]);
		int lo = OPENSSL_hexchar2int((unsigned char)arg[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			snprintf(err, errlen, "hex: '%c' is not a hex digit", arg[2 * i + (hi < 0 ? 0 : 1)]);
			return -1;
		}
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	*len = n / 2;
	return 0;
}
