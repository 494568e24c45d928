/* addr.h - HOST:PORT parsing, connecting and listening for the kts tools. */
#ifndef KTS_TOOLS_ADDR_H
#define KTS_TOOLS_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#define ADDR_HOST_MAX 256
#define ADDR_PORT_MAX 16
#define ADDR_STR_MAX (ADDR_HOST_MAX + ADDR_PORT_MAX + 4)
/* What addr_format writes at most: "[" numeric IPv6 "]:" port, or "?". A
 * connection keeps one, so it is not ADDR_STR_MAX. */
#define ADDR_PEER_MAX (1 + 46 + 2 + 5 + 1)

struct addr_spec {
	char host[ADDR_HOST_MAX]; /* without brackets; "" for "any" (":PORT") */
	char port[ADDR_PORT_MAX]; /* decimal 0-65535 */
};

/* Split "HOST:PORT", "[V6]:PORT" or ":PORT". Returns 0, or -1 with a message in err. */
int addr_parse(const char *spec, struct addr_spec *out, char *err, size_t errlen);

/* 1 if host is a numeric IPv4 or IPv6 address. */
int addr_is_numeric(const char *host);

/* Connect a TCP socket (blocking) to the first reachable address of a. Returns the
 * fd, or -1 with a message in err. */
int addr_connect(const struct addr_spec *a, char *err, size_t errlen);

/* Bind and listen (SO_REUSEADDR, CLOEXEC). Returns the fd, or -1 with a message. */
int addr_listen(const struct addr_spec *a, int backlog, char *err, size_t errlen);

/* Format a socket address as "1.2.3.4:80" or "[::1]:80" (ADDR_PEER_MAX). */
void addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen);

/* Format the host part for an HTTP Host header: brackets around IPv6 literals,
 * ":PORT" unless the port is 443. */
void addr_host_header(const char *host, const char *port, char *buf, size_t buflen);

#endif
