/*
 * kernel.c - the system calls of kernel TLS: ULP attach, key install, and
 * records that carry a type (alerts, handshake messages) in a cmsg.
 */
#include "kernel.h"
#include "kts.h"

#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

int kts_kernel_has_tls(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	if (fd < 0)
		return -errno;
	rc = kts_kernel_attach_ulp(fd);
	close(fd);
	if (rc == -ENOENT)
		return 0;
	return rc == -ENOTCONN || rc == 0 ? 1 : rc;
}

int kts_kernel_attach_ulp(int fd)
{
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		return -errno;
	return 0;
}

int kts_kernel_rx_no_pad(int fd)
{
	int on = 1;

	return setsockopt(fd, SOL_TLS, TLS_RX_EXPECT_NO_PAD, &on, sizeof(on)) < 0 ? -errno : 0;
}

int kts_kernel_install(int fd, int direction, const struct kts_crypto_info *info)
{
	if (setsockopt(fd, SOL_TLS, direction, info->bytes, (socklen_t)info->len) < 0)
		return -errno;
	return 0;
}

/* Room for the record type and any other control message the caller enabled
 * (timestamps...), aligned for struct cmsghdr. */
union control {
	struct cmsghdr align;
	char buf[256];
};

int kts_kernel_rx_type(const struct msghdr *msg, unsigned char *type)
{
	*type = KTS_RECORD_DATA;
	if (msg->msg_flags & MSG_CTRUNC)
		return -EPROTO; /* a record type we could not see: never guess */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
		if (cm->cmsg_level != SOL_TLS || cm->cmsg_type != TLS_GET_RECORD_TYPE)
			continue;
		if (cm->cmsg_len != CMSG_LEN(sizeof(unsigned char)))
			return -EPROTO;
		*type = *CMSG_DATA(cm);
	}
	return 0;
}

ssize_t kts_kernel_recv(int fd, void *buf, size_t len, int flags, unsigned char *type, int *end)
{
	union control control;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	ssize_t n = recvmsg(fd, &msg, flags);
	int err;

	if (n < 0)
		return -errno;
	if ((err = kts_kernel_rx_type(&msg, type)) < 0)
		return err;
	*end = (msg.msg_flags & MSG_EOR) != 0;
	return n;
}

ssize_t kts_kernel_send_record(int fd, unsigned char type, const void *buf, size_t len,
			       int flags)
{
	union control control;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = CMSG_SPACE(sizeof(unsigned char)),
	};
	struct cmsghdr *cm;
	ssize_t n;

	memset(&control, 0, sizeof(control));
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_TLS;
	cm->cmsg_type = TLS_SET_RECORD_TYPE;
	cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
	*CMSG_DATA(cm) = type;
	n = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
	return n < 0 ? -errno : n;
}

int kts_kernel_tx_broken(int fd)
{
	struct pollfd p = {.fd = fd, .events = 0};
	int err = 0;
	socklen_t len = sizeof(err);

	/* POLLERR: a hard socket error (a reset); POLLHUP: both directions shut,
	 * so nothing more can be sent. Soft errors (ICMP) show in neither. */
	if (poll(&p, 1, 0) <= 0 || !(p.revents & (POLLERR | POLLHUP)))
		return 0;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err == 0)
		err = EPIPE; /* the error was already taken: the socket is shut */
	return err;
}

/* A connected loopback TCP pair, for probes. */
static int loopback_pair(int fds[2])
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), err = 0;

	fds[0] = fds[1] = -1;
	if (l < 0)
		return -errno;
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &alen) < 0 ||
	    (fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fds[0], (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    (fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
		err = -errno;
	close(l);
	return err;
}

int kts_kernel_probe_install(int version, enum kts_aead aead, int direction, int rx_no_pad)
{
	/* TLS 1.2 GCM takes a 4-byte salt, the rest a 12-byte IV. */
	struct kts_dir_keys k = {
		.key_len = kts_aead_key_len(aead),
		.iv_len = version == KTS_TLS1_3 || aead == KTS_AEAD_CHACHA20_POLY1305 ? 12 : 4,
	};
	struct kts_crypto_info info;
	int fds[2], rc = loopback_pair(fds);

	if (rc == 0 && kts_crypto_info_build(version, aead, &k, 0, &info) < 0)
		rc = -EINVAL;
	if (rc == 0 && (rc = kts_kernel_attach_ulp(fds[0])) == 0 &&
	    (rc = kts_kernel_install(fds[0], direction, &info)) == 0 && rx_no_pad)
		rc = kts_kernel_rx_no_pad(fds[0]);
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}

int kts_kernel_probe_rekey(void)
{
	struct kts_dir_keys k = {.key_len = 16, .iv_len = 12};
	struct kts_crypto_info info;
	int fds[2], rc = loopback_pair(fds);

	if (rc == 0 && (rc = kts_kernel_attach_ulp(fds[0])) == 0 &&
	    kts_crypto_info_build(KTS_TLS1_3, KTS_AEAD_AES_128_GCM, &k, 0, &info) == 0 &&
	    (rc = kts_kernel_install(fds[0], TLS_TX, &info)) == 0)
		rc = kts_kernel_install(fds[0], TLS_TX, &info) == 0;
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	/* A kernel without kTLS, or one refusing a second key, cannot rekey. */
	return rc == 1 ? 1 : (rc == 0 || rc == -ENOENT || rc == -EBUSY) ? 0 : rc;
}
