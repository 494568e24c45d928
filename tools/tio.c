/* tio.c - blocking-style I/O helpers over a kts connection. */
#include "tio.h"

#include <errno.h>
#include <kts.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

int tio_wait(int fd, int want, const struct deadline *dl)
{
	struct pollfd p;
	int rc, ms;

	p.fd = fd;
	p.events = want == KTS_WANT_WRITE ? POLLOUT : POLLIN;
	do {
		ms = dl ? deadline_poll_ms(dl, deadline_now()) : -1;
		if (ms == 0)
			return TIO_TIMEOUT;
		p.revents = 0;
		rc = poll(&p, 1, ms);
	} while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return TIO_POLL_ERR;
	return rc == 0 ? TIO_TIMEOUT : 0;
}

static void moved(struct deadline *dl, size_t n)
{
	if (dl)
		deadline_moved(dl, deadline_now(), n);
}

static int is_want(long rc)
{
	return rc == KTS_WANT_READ || rc == KTS_WANT_WRITE;
}

int tio_handshake(struct kts *c, int fd, struct deadline *dl)
{
	for (;;) {
		int rc = kts_handshake(c);

		if (!is_want(rc))
			return rc;
		rc = tio_wait(fd, rc, dl);
		if (rc < 0)
			return rc;
		moved(dl, 1); /* the peer moved: progress for a progress deadline */
	}
}

int tio_write_all(struct kts *c, int fd, const void *buf, size_t len, struct deadline *dl)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = kts_write(c, p, len);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			moved(dl, (size_t)n);
			continue;
		}
		if (!is_want(n))
			return n == 0 ? TIO_PEER_CLOSED : (int)n;
		n = tio_wait(fd, (int)n, dl);
		if (n < 0)
			return (int)n;
	}
	return KTS_OK;
}

int tio_sendfile_all(struct kts *c, int fd, int file_fd, off_t *offset, size_t count,
		     struct deadline *dl)
{
	while (count > 0) {
		ssize_t n = kts_sendfile(c, file_fd, offset, count);

		if (n > 0) {
			count -= (size_t)n;
			moved(dl, (size_t)n);
			continue;
		}
		if (n == 0)
			return TIO_SHORT_FILE;
		if (!is_want(n))
			return (int)n;
		n = tio_wait(fd, (int)n, dl);
		if (n < 0)
			return (int)n;
	}
	return KTS_OK;
}

ssize_t tio_read(struct kts *c, int fd, void *buf, size_t len, struct deadline *dl)
{
	for (;;) {
		ssize_t n = kts_read(c, buf, len);

		if (n > 0)
			moved(dl, (size_t)n);
		if (!is_want(n))
			return n;
		n = tio_wait(fd, (int)n, dl);
		if (n < 0)
			return n;
	}
}

int tio_close(struct kts *c, int fd, struct deadline *dl)
{
	for (;;) {
		int rc = kts_close(c);

		if (!is_want(rc))
			return rc;
		rc = tio_wait(fd, rc, dl);
		if (rc < 0)
			return rc;
	}
}

const char *tio_message(const struct kts *c, int rc, const char *what, char *buf, size_t len)
{
	const char *m = c ? kts_error(c) : NULL;

	switch (rc) {
	case TIO_TIMEOUT:
		snprintf(buf, len, "%s: timed out", what);
		break;
	case TIO_SHORT_FILE:
		snprintf(buf, len, "%s: file shrank while sending", what);
		break;
	case TIO_PEER_CLOSED:
		snprintf(buf, len, "%s: the peer has closed the connection", what);
		break;
	case TIO_POLL_ERR:
		snprintf(buf, len, "%s: poll: %s", what, strerror(errno));
		break;
	default:
		if (m && *m && strncmp(m, what, strlen(what)) == 0 && m[strlen(what)] == ':')
			return m; /* the library named the operation already */
		if (m && *m)
			snprintf(buf, len, "%s: %s", what, m);
		else
			snprintf(buf, len, "%s: error %d", what, rc);
		break;
	}
	return buf;
}
