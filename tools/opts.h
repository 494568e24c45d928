/* opts.h - option handling and status output shared by kts-client and kts-server. */
#ifndef KTS_TOOLS_OPTS_H
#define KTS_TOOLS_OPTS_H

#include <stddef.h>
#include <stdio.h>

struct kts;
struct kts_config;

struct tool_opts {
	const char *tls;     /* --tls 1.2|1.3|1.2-1.3 */
	const char *ciphers; /* --ciphers LIST */
	const char *offload; /* --offload auto|require|off */
	const char *ca;      /* --ca FILE */
	int status;          /* --status */
};

/* getopt_long codes for the shared options. */
enum {
	OPT_TLS = 0x100,
	OPT_CIPHERS,
	OPT_OFFLOAD,
	OPT_CA,
	OPT_STATUS,
	OPT_TOOL_FIRST /* first code free for a tool's own options */
};

#define OPTS_LONG_COMMON                                   \
	{ "tls", required_argument, NULL, OPT_TLS },         \
	{ "ciphers", required_argument, NULL, OPT_CIPHERS }, \
	{ "offload", required_argument, NULL, OPT_OFFLOAD }, \
	{ "status", no_argument, NULL, OPT_STATUS }

/* Print "<prog>: <message>" to stderr and exit 1. */
void opts_die(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Help text for the shared options (ends in a newline). */
extern const char opts_help_common[];

/* Record a shared option. Returns 1 if opt was one, 0 otherwise. */
int opts_handle(struct tool_opts *o, int opt, const char *arg);

/* Split a --ciphers list: entries starting with "TLS_" are TLS 1.3 suites, every
 * other entry belongs to the TLS 1.2 cipher list. Entries are separated by ':'
 * (',' and spaces also accepted). Either output may come back empty: that
 * protocol's list is then left at its default. Returns 0 or -1 if an output
 * buffer is too small. */
int opts_split_ciphers(const char *list, char *tls12, size_t len12, char *tls13, size_t len13);

/* A server's --session-id: the string's bytes, or "hex:HEX" for binary
 * bytes (another server's context, such as nginx's SHA-1). 1..32 bytes into
 * out, *len set. 0, or -1 with the problem in err. */
#define OPTS_SESSION_ID_MAX 32
int opts_session_id(const char *arg, unsigned char out[OPTS_SESSION_ID_MAX], size_t *len,
		    char *err, size_t errlen);

/* Apply the shared options to cfg. Returns 0, or -1 with a message in err. */
int opts_apply(struct kts_config *cfg, const struct tool_opts *o, char *err, size_t errlen);

/* Format the status after a handshake:
 *   <prefix>offload tx=<path> rx=<path> version=<v> cipher=<c> resumed=<yes|no>\n
 * and with reasons != 0, for each direction left in userspace:
 *   <prefix>offload-reason <tx|rx>: <reason>\n
 * Writes the whole text with one stdio call so concurrent lines do not mix. */
void opts_print_status(FILE *f, const char *prefix, const struct kts *c, int reasons);

#endif
