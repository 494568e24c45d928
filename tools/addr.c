/* addr.c - HOST:PORT parsing, connecting and listening for the kts tools. */
#include "addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int copy_part(char *dst, size_t dstlen, const char *src, size_t n)
{
	if (n >= dstlen)
		return -1;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

int addr_parse(const char *spec, struct addr_spec *out, char *err, size_t errlen)
{
	const char *colon, *port;

	memset(out, 0, sizeof(*out));
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close || close[1] != ':') {
			snprintf(err, errlen, "bad address '%s' (want [V6ADDR]:PORT)", spec);
			return -1;
		}
		if (copy_part(out->host, sizeof(out->host), spec + 1, (size_t)(close - spec - 1)) < 0)
			goto toolong;
		port = close + 2;
	} else {
		colon = strrchr(spec, ':');
		if (!colon) {
			snprintf(err, errlen, "bad address '%s' (want HOST:PORT)", spec);
			return -1;
		}
		if (memchr(spec, ':', (size_t)(colon - spec))) {
			snprintf(err, errlen, "bad address '%s' (write IPv6 as [ADDR]:PORT)", spec);
			return -1;
		}
		if (copy_part(out->host, sizeof(out->host), spec, (size_t)(colon - spec)) < 0)
			goto toolong;
		port = colon + 1;
	}
	{
		char *end;
		unsigned long p;

		errno = 0;
		p = strtoul(port, &end, 10);
		if (!*port || *end || errno || p > 65535 || port[0] == '-' || port[0] == '+') {
			snprintf(err, errlen, "bad port in '%s'", spec);
			return -1;
		}
		snprintf(out->port, sizeof(out->port), "%lu", p);
	}
	return 0;
toolong:
	snprintf(err, errlen, "host name too long in '%s'", spec);
	return -1;
}

int addr_is_numeric(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

static int resolve(const struct addr_spec *a, int passive, struct addrinfo **res,
		   char *err, size_t errlen)
{
	struct addrinfo hints;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* No AI_ADDRCONFIG: it hides "localhost" on hosts with only a loopback
	 * interface; connect() simply tries the next address instead. */
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	if (addr_is_numeric(a->host))
		hints.ai_flags |= AI_NUMERICHOST;
	rc = getaddrinfo(a->host[0] ? a->host : NULL, a->port, &hints, res);
	if (rc != 0) {
		snprintf(err, errlen, "resolve %s: %s", a->host[0] ? a->host : "(any)",
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	return 0;
}

int addr_connect(const struct addr_spec *a, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	int fd = -1, saved = 0;

	if (resolve(a, 0, &res, err, errlen) < 0)
		return -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err, errlen, "connect %s:%s: %s", a->host, a->port, strerror(saved));
	return fd;
}

int addr_listen(const struct addr_spec *a, int backlog, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	int fd = -1, saved = 0, one = 1;

	if (resolve(a, 1, &res, err, errlen) < 0)
		return -1;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err, errlen, "listen on %s:%s: %s", a->host[0] ? a->host : "*", a->port,
			 strerror(saved));
	return fd;
}

void addr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
	char host[INET6_ADDRSTRLEN + 1], port[16];

	_Static_assert(ADDR_PEER_MAX >= 1 + INET6_ADDRSTRLEN + 2 + 5 + 1, "ADDR_PEER_MAX too small");
	if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(buf, buflen, "?");
		return;
	}
	if (sa->sa_family == AF_INET6)
		snprintf(buf, buflen, "[%s]:%s", host, port);
	else
		snprintf(buf, buflen, "%s:%s", host, port);
}

void addr_host_header(const char *host, const char *port, char *buf, size_t buflen)
{
	int v6 = strchr(host, ':') != NULL;
	int dflt = strcmp(port, "443") == 0;

	snprintf(buf, buflen, "%s%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "",
		 dflt ? "" : ":", dflt ? "" : port);
}
