/* tio.h - blocking-style I/O helpers over a kts connection on a non-blocking
 * socket.
 *
 * When kts asks to wait (KTS_WANT_*), they poll() until the deadline dl (see
 * deadline.h); NULL waits forever. Bytes read or written count as progress for
 * a progress deadline (deadline_moved), and so does, in a handshake, each time
 * the socket becomes ready; a total deadline ends where it ends. The operation
 * is always tried; a wait once dl has passed returns TIO_TIMEOUT at once. */
#ifndef KTS_TOOLS_TIO_H
#define KTS_TOOLS_TIO_H

#include <stddef.h>
#include <sys/types.h>

#include "deadline.h"

struct kts;

/* Returned (besides KTS_* codes) when the wait timed out. */
#define TIO_TIMEOUT (-100)

/* kts_write made no progress (returned 0): the peer has closed. */
#define TIO_PEER_CLOSED (-103)

/* poll() itself failed (errno set). */
#define TIO_POLL_ERR (-102)

/* Wait until fd can satisfy want (KTS_WANT_READ or KTS_WANT_WRITE), at most
 * until dl. Returns 0, TIO_TIMEOUT or TIO_POLL_ERR. */
int tio_wait(int fd, int want, const struct deadline *dl);

/* Complete the handshake. Returns KTS_OK, TIO_TIMEOUT or a KTS_ERR_* code. */
int tio_handshake(struct kts *c, int fd, struct deadline *dl);

/* Write all of buf. Returns KTS_OK, TIO_TIMEOUT or a KTS_ERR_* code. */
int tio_write_all(struct kts *c, int fd, const void *buf, size_t len, struct deadline *dl);

/* Send count bytes of file_fd from *offset. Returns KTS_OK, TIO_TIMEOUT,
 * a KTS_ERR_* code, or TIO_SHORT_FILE if the file ended early. */
#define TIO_SHORT_FILE (-101)
int tio_sendfile_all(struct kts *c, int fd, int file_fd, off_t *offset, size_t count,
		     struct deadline *dl);

/* Read some data: > 0 bytes, 0 at the peer's close_notify, TIO_TIMEOUT or KTS_ERR_*. */
ssize_t tio_read(struct kts *c, int fd, void *buf, size_t len, struct deadline *dl);

/* Close: send close_notify. Returns KTS_OK, TIO_TIMEOUT or KTS_ERR_*. */
int tio_close(struct kts *c, int fd, struct deadline *dl);

/* Message for a failed return code of these helpers: "<what>: <problem>", where
 * the problem is kts_error(c) for KTS_ERR_* (not repeating <what> if the library's
 * message starts with it). Formatted in buf when needed. */
const char *tio_message(const struct kts *c, int rc, const char *what, char *buf, size_t len);

#endif
