/* tio.h - blocking-style I/O helpers over a kts connection.
 *
 * They work on blocking and non-blocking sockets. timeout_ms is how long to wait
 * for the socket when kts asks to (KTS_WANT_*): < 0 waits forever; 0 does not
 * wait, for blocking sockets whose SO_RCVTIMEO/SO_SNDTIMEO already produced the
 * KTS_WANT_* (the wait has happened in the kernel). */
#ifndef KTS_TOOLS_TIO_H
#define KTS_TOOLS_TIO_H

#include <stddef.h>
#include <sys/types.h>

struct kts;

/* Returned (besides KTS_* codes) when the wait timed out. */
#define TIO_TIMEOUT (-100)

/* kts_write made no progress (returned 0): the peer has closed. */
#define TIO_PEER_CLOSED (-103)

/* poll() itself failed (errno set). */
#define TIO_POLL_ERR (-102)

/* Wait until fd can satisfy want (KTS_WANT_READ or KTS_WANT_WRITE).
 * Returns 0, TIO_TIMEOUT or TIO_POLL_ERR. */
int tio_wait(int fd, int want, int timeout_ms);

/* Complete the handshake. Returns KTS_OK, TIO_TIMEOUT or a KTS_ERR_* code. */
int tio_handshake(struct kts *c, int fd, int timeout_ms);

/* Write all of buf. Returns KTS_OK, TIO_TIMEOUT or a KTS_ERR_* code. */
int tio_write_all(struct kts *c, int fd, const void *buf, size_t len, int timeout_ms);

/* Send count bytes of file_fd from *offset. Returns KTS_OK, TIO_TIMEOUT,
 * a KTS_ERR_* code, or TIO_SHORT_FILE if the file ended early. */
#define TIO_SHORT_FILE (-101)
int tio_sendfile_all(struct kts *c, int fd, int file_fd, off_t *offset, size_t count,
		     int timeout_ms);

/* Read some data: > 0 bytes, 0 at the peer's close_notify, TIO_TIMEOUT or KTS_ERR_*. */
ssize_t tio_read(struct kts *c, int fd, void *buf, size_t len, int timeout_ms);

/* Close: send close_notify. Returns KTS_OK, TIO_TIMEOUT or KTS_ERR_*. */
int tio_close(struct kts *c, int fd, int timeout_ms);

/* Message for a failed return code of these helpers: "<what>: <problem>", where
 * the problem is kts_error(c) for KTS_ERR_* (not repeating <what> if the library's
 * message starts with it). Formatted in buf when needed. */
const char *tio_message(const struct kts *c, int rc, const char *what, char *buf, size_t len);

#endif
