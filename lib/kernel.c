/*
 * kernel.c - the system calls of kernel TLS: ULP attach, key install, and
 * records that carry a type (alerts, handshake messages) in a cmsg.
 */
#include "kernel.h"

#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

int kts_kernel_attach_ulp(int fd)
{
	if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) < 0)
		return -errno;
	return 0;
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

ssize_t kts_kernel_recv(int fd, void *buf, size_t len, int flags, unsigned char *type)
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

	if (n < 0)
		return -errno;
	*type = KTS_RECORD_DATA;
	if (msg.msg_flags & MSG_CTRUNC)
		return -EPROTO; /* a record type we could not see: never guess */
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE)
			*type = *CMSG_DATA(cm);
	}
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
