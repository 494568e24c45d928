/*
 * conn.c - struct kts: lifecycle, reads, writes, sendfile and close, each
 * taking the kernel path or OpenSSL's for its direction.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "internal.h"
#include "kernel.h"
#include "sesscache.h"

static struct kts *conn_new(struct kts_config *cfg, int is_server)
{
	struct kts *c;

	if (!cfg)
		return NULL;
	if (is_server && (!cfg->cert || !cfg->key)) {
		kts_config_fail(cfg, KTS_ERR_ARG, "server: no certificate and key configured");
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (c)
		c->ssl = SSL_new(cfg->ctx);
	if (!c || !c->ssl || (cfg->server_name && !(c->server_name = strdup(cfg->server_name)))) {
		if (c)
			SSL_free(c->ssl);
		free(c);
		kts_err_clear();
		kts_config_fail(cfg, KTS_ERR_NOMEM, "%s: out of memory", is_server ? "server" : "client");
		return NULL;
	}
	atomic_fetch_add(&cfg->refs, 1);
	c->cfg = cfg;
	c->fd = -1;
	c->is_server = is_server;
	c->offload = cfg->offload;
	c->verify = cfg->verify;
	kts_conn_callbacks(c);
	return c;
}

struct kts *kts_server_new(struct kts_config *cfg)
{
	return conn_new(cfg, 1);
}

struct kts *kts_client_new(struct kts_config *cfg)
{
	return conn_new(cfg, 0);
}

void kts_free(struct kts *c)
{
	if (!c)
		return;
	/* OpenSSL drops the session of a connection freed without having sent
	 * close_notify; kts may have sent it through the kernel, or the peer just
	 * closed TCP. Failed connections already lost theirs to the fatal alert. */
	if (c->ssl && c->state == KTS_STATE_OPEN)
		SSL_set_shutdown(c->ssl, SSL_get_shutdown(c->ssl) | SSL_SENT_SHUTDOWN);
	else if (!c->ssl && c->state == KTS_STATE_FAILED && c->sid_len && c->cfg->cache)
		kts_sess_cache_del(c->cfg->cache, c->sid, c->sid_len); /* as OpenSSL's free would */
	SSL_free(c->ssl);
	kts_config_release(c->cfg);
	free(c->server_name);
	OPENSSL_clear_free(c->appdata, c->appdata_len);
	kts_post_handshake_free(c);
	kts_secrets_free(c);
	kts_cio_free(c);
	kts_reason_drop(c, KTS_TX);
	kts_reason_drop(c, KTS_RX);
	free(c->alpn);
	free(c->error);
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
}

const char *kts_error(const struct kts *c)
{
	if (!c)
		return "no connection";
	if (c->error_lost)
		return "out of memory (no room for the message of the last failure)";
	return c->error ? c->error : "";
}

int kts_attach(struct kts *c, int fd)
{
	if (c->state != KTS_STATE_NEW)
		return kts_fail(c, KTS_ERR_STATE, "attach: a socket is already attached");
	if (fd < 0)
		return kts_fail(c, KTS_ERR_ARG, "attach: bad file descriptor %d", fd);
	if (SSL_set_fd(c->ssl, fd) != 1) {
		kts_err_clear();
		return kts_fail(c, KTS_ERR_NOMEM, "attach: OpenSSL could not wrap fd %d", fd);
	}
	c->fd = fd;
	c->state = KTS_STATE_HANDSHAKE;
	return KTS_OK;
}

int kts_set_server_name(struct kts *c, const char *name)
{
	char *copy;

	if (c->is_server || c->prepared)
		return kts_fail(c, KTS_ERR_STATE, "server name: only for clients before the handshake");
	if (!name || !*name || strlen(name) > 253)
		return kts_fail(c, KTS_ERR_ARG, "server name: empty or longer than 253");
	copy = strdup(name);
	if (!copy)
		return kts_fail(c, KTS_ERR_NOMEM, "server name: out of memory");
	free(c->server_name);
	c->server_name = copy;
	return KTS_OK;
}

static ssize_t kernel_read(struct kts *c, void *buf, size_t len)
{
	for (;;) {
		unsigned char type;
		int end;
		ssize_t n = kts_kernel_recv(c->fd, buf, len, 0, &type, &end);

		if (n == -EINTR)
			continue;
		n = n < 0 ? kts_rx_error(c, (int)n) : kts_rx_record(c, type, buf, (size_t)n, end);
		/* Send what the record asked for (an answer, an alert) right away;
		 * a full send buffer must not stop reading: the next write finishes it. */
		if (kts_tx_queued(c)) {
			int rc = kts_post_handshake_flush(c);
			if (n == KTS_RX_AGAIN && rc < 0 && rc != KTS_WANT_WRITE)
				return rc;
		}
		if (n != KTS_RX_AGAIN)
			return n;
	}
}

ssize_t kts_read(struct kts *c, void *buf, size_t len)
{
	size_t got = 0;
	int rc = kts_handshake(c);

	if (rc != KTS_OK)
		return rc;
	if (len == 0)
		return 0;
	if ((got = kts_cio_early(c, buf, len)) > 0)
		return (ssize_t)got; /* received past the handshake: first in line */
	if (c->rx_eof)
		return 0;
	if (c->path[KTS_RX] == KTS_PATH_KERNEL) {
		if (c->caller_io)
			return KTS_WANT_READ; /* the caller receives from the kernel */
		/* Move a queued KeyUpdate answer along; a full send buffer must not
		 * stop reading (the next write finishes it). */
		if (kts_tx_queued(c) && (rc = kts_post_handshake_flush(c)) != KTS_OK &&
		    rc != KTS_WANT_WRITE)
			return rc;
		return kernel_read(c, buf, len);
	}
	if (c->soft_rx)
		return kts_softrx_read(c, buf, len); /* OpenSSL released (softrx.c) */
	kts_err_clear();
	errno = 0;
	rc = SSL_read_ex(c->ssl, buf, len, &got) == 1 ? KTS_OK : kts_ssl_result(c, 0, "read");
	if (rc == 0 && got == 0)
		c->rx_eof = 1;
	return got > 0 ? (ssize_t)got : rc;
}

static int check_writable(struct kts *c)
{
	int rc = kts_handshake(c);

	if (rc != KTS_OK)
		return rc;
	if (c->tx_closed)
		return kts_fail(c, KTS_ERR_STATE, "write: connection already closed for writing");
	return KTS_OK;
}

/* What a kernel TX call for want bytes returned (n, or -1 and err). After the peer reset the
 * connection, kTLS reports bytes it took into a record as sent: a blocked
 * send returns what it took before the reset, a blocked sendfile even the
 * whole count, and once the socket's error was taken (by a reader, by
 * SO_ERROR, by the splice path) every later send "succeeds". So counts are
 * checked against the socket's state: short ones and those of calls with
 * want SIZE_MAX (sendfile, close) always, whole writes every
 * TX_CHECK_CALLS calls or TX_CHECK_BYTES bytes (a check is a syscall: 0.6
 * us on this project's VMs, 45% of a 1 KiB send). */
#define TX_CHECK_CALLS 16
#define TX_CHECK_BYTES (256 * 1024)
ssize_t kts_kernel_tx_result(struct kts *c, ssize_t n, int err, size_t want, const char *what)
{
	if (n >= 0)
		err = 0; /* err only speaks for a failed call */
	if (n >= 0 && ((size_t)n < want || ++c->tx_unchecked_calls >= TX_CHECK_CALLS ||
		       (c->tx_unchecked_bytes += (size_t)n) >= TX_CHECK_BYTES)) {
		err = kts_kernel_tx_broken(c->fd);
		c->tx_unchecked_calls = 0;
		c->tx_unchecked_bytes = 0;
	}
	if (n >= 0 && err == 0)
		return n;
	if (err == EAGAIN)
		return KTS_WANT_WRITE;
	c->tx_closed = 1; /* no alert can follow */
	return kts_fail_fatal(c, KTS_ERR_SYS, "%s: %s", what, strerror(err));
}

ssize_t kts_write(struct kts *c, const void *buf, size_t len)
{
	size_t done = 0;
	ssize_t n;
	int rc = check_writable(c);


	if (rc != KTS_OK)
		return rc;
	if (len == 0)
		return 0;
	if (c->caller_io)
		return kts_cio_write(c, buf, len);
	if (c->path[KTS_TX] == KTS_PATH_KERNEL) {
		rc = kts_post_handshake_flush(c);
		if (rc != KTS_OK)
			return rc;
		do
			n = send(c->fd, buf, len, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR);
		return kts_kernel_tx_result(c, n, errno, len, "write");
	}
	/* OpenSSL writes one record per call: go on until all is written or the
	 * socket pushes back, like send() on the kernel path. */
	while (done < len) {
		size_t wrote = 0;

		kts_err_clear();
		errno = 0;
		if (SSL_write_ex(c->ssl, (const char *)buf + done, len - done, &wrote) == 1) {
			done += wrote;
			continue;
		}
		if (done > 0)
			break; /* report progress; the caller retries with the rest */
		rc = kts_ssl_result(c, 0, "write");
		/* OpenSSL says "zero return" for any failed write once it has
		 * received close_notify: the write itself failed. */
		return rc == 0 ? kts_fail_fatal(c, KTS_ERR_SYS, "write: %s (peer closed the connection)",
						strerror(errno ? errno : EPIPE))
			       : rc;
	}
	return (ssize_t)done;
}

ssize_t kts_sendfile(struct kts *c, int file_fd, off_t *offset, size_t count)
{
	unsigned char buf[16384];
	size_t total = 0;
	int rc = check_writable(c);

	if (rc != KTS_OK)
		return rc;
	struct stat st;

	if (!offset)
		return kts_fail(c, KTS_ERR_ARG, "sendfile: offset must not be NULL");
	if (fstat(file_fd, &st) < 0 || !S_ISREG(st.st_mode))
		return kts_fail(c, KTS_ERR_ARG, "sendfile: fd %d is not a regular file", file_fd);
	if (c->caller_io && count > sizeof(buf) * 4)
		count = sizeof(buf) * 4; /* the rest after the queue is sent */
	if (c->path[KTS_TX] == KTS_PATH_KERNEL) {
		ssize_t n;

		if (c->caller_io)
			return kts_fail(c, KTS_ERR_STATE, "sendfile: the kernel owns TX; splice the "
							  "file to the socket yourself");
		rc = kts_post_handshake_flush(c);
		if (rc != KTS_OK)
			return rc;
		do
			n = sendfile(c->fd, file_fd, offset, count);
		while (n < 0 && errno == EINTR);
		return kts_kernel_tx_result(c, n, errno, SIZE_MAX, "sendfile"); /* always checked */
	}
	/* Userspace: one record-sized chunk at a time through OpenSSL. */
	while (total < count) {
		size_t want = count - total < sizeof(buf) ? count - total : sizeof(buf);
		ssize_t r = pread(file_fd, buf, want, *offset), w;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return total ? (ssize_t)total
				     : kts_fail(c, KTS_ERR_SYS, "sendfile: reading the file: %s",
						strerror(errno));
		if (r == 0)
			break; /* end of file */
		w = kts_write(c, buf, (size_t)r);
		if (w < 0)
			return total ? (ssize_t)total : w;
		*offset += w;
		total += (size_t)w;
		if (w < r)
			break;
	}
	return (ssize_t)total;
}

int kts_close(struct kts *c)
{
	static const unsigned char close_notify[2] = {ALERT_WARNING, ALERT_CLOSE_NOTIFY};
	int ret;

	if (c->state == KTS_STATE_FAILED)
		return c->fail_code;
	if (c->state != KTS_STATE_OPEN)
		return kts_fail(c, KTS_ERR_STATE, "close: handshake not complete");
	if (c->tx_closed)
		return KTS_OK;
	if (c->caller_io)
		return kts_cio_close(c);
	if (c->path[KTS_TX] == KTS_PATH_KERNEL) {
		ssize_t n;

		ret = kts_post_handshake_flush(c);
		if (ret != KTS_OK)
			return ret;
		do
			n = kts_kernel_send_record(c->fd, KTS_RECORD_ALERT, close_notify,
						   sizeof(close_notify), 0);
		while (n == -EINTR);
		/* Checked even when whole: the last chance to learn of a reset. */
		if ((ret = (int)kts_kernel_tx_result(c, n < 0 ? -1 : n, (int)-n, SIZE_MAX, "close")) < 0)
			return ret;
	} else {
		kts_err_clear();
		errno = 0;
		ret = SSL_shutdown(c->ssl);
		if (ret < 0)
			return kts_ssl_result(c, ret, "close");
	}
	c->tx_closed = 1;
	return KTS_OK;
}

int kts_offload(const struct kts *c, enum kts_dir dir)
{
	if (!c || (dir != KTS_TX && dir != KTS_RX))
		return KTS_PATH_NONE;
	return c->path[dir];
}

const char *kts_offload_reason(const struct kts *c, enum kts_dir dir)
{
	if (kts_offload(c, dir) != KTS_PATH_USER)
		return NULL;
	return c->reason[dir] ? c->reason[dir] : "unknown (out of memory for the reason)";
}

const char *kts_path_name(int path)
{
	return path == KTS_PATH_KERNEL ? "kernel" : path == KTS_PATH_USER ? "user" : "none";
}

const char *kts_version(const struct kts *c)
{
	return c && c->state == KTS_STATE_OPEN ? c->version_name : NULL;
}

const char *kts_cipher(const struct kts *c)
{
	return c && c->state == KTS_STATE_OPEN ? c->cipher_name : NULL;
}

const char *kts_alpn(const struct kts *c)
{
	return c ? c->alpn : NULL;
}

int kts_session_resumed(const struct kts *c)
{
	return c && c->state == KTS_STATE_OPEN && c->resumed;
}

size_t kts_pending(const struct kts *c)
{
	if (!c || c->state != KTS_STATE_OPEN || c->path[KTS_RX] != KTS_PATH_USER)
		return 0;
	return c->soft_rx ? kts_softrx_pending(c) : (size_t)SSL_pending(c->ssl);
}

void *kts_ssl(const struct kts *c)
{
	return c ? c->ssl : NULL;
}
