/*
 * kernel.h - talking to kernel TLS: attach the ULP, install keys, and move
 * control records (alerts, handshake messages) with cmsg.
 */
#ifndef KTS_KERNEL_H
#define KTS_KERNEL_H

#include <stddef.h>
#include <sys/types.h>

#include "keysched.h"
#include "tls_wire.h"

/* Does this kernel have the "tls" ULP? Asked of a fresh, unconnected TCP
 * socket, which the ULP refuses with ENOTCONN when it exists (the kernel loads
 * the module first if it may) and the kernel with ENOENT when it does not.
 * Returns 1, 0, or -errno when the probe itself could not run. */
int kts_kernel_has_tls(void);
/* Attach the "tls" ULP to a connected TCP socket. Returns 0 or -errno. */
int kts_kernel_attach_ulp(int fd);
/* Install one direction (TLS_TX or TLS_RX). Returns 0 or -errno. */
int kts_kernel_install(int fd, int direction, const struct kts_crypto_info *info);

/* TLS 1.3 kernel RX: expect no padded records. Returns 0 or -errno. */
int kts_kernel_rx_no_pad(int fd);

/* recvmsg on a kernel-RX socket. Returns bytes (0 at TCP EOF), the record type
 * in *type and in *end whether the record ended (MSG_EOR), or -errno. */
ssize_t kts_kernel_recv(int fd, void *buf, size_t len, int flags, unsigned char *type, int *end);
/* The record type of a finished recvmsg on a kernel-RX socket, from its
 * control messages. Returns 0, or -EPROTO when the type was cut off
 * (MSG_CTRUNC) or malformed. */
struct msghdr;
int kts_kernel_rx_type(const struct msghdr *msg, unsigned char *type);
/* Send one record of the given type (alert, handshake) through kernel TX,
 * with extra send flags (MSG_DONTWAIT). Returns bytes sent or -errno. */
ssize_t kts_kernel_send_record(int fd, unsigned char type, const void *buf, size_t len,
			       int flags);

/* After kernel TX took bytes: is the connection dead all the same? kTLS
 * reports a positive count for data it took into a record even when TCP
 * then refused it (the peer reset), so every later send "succeeds" too.
 * Returns 0, or the socket's errno (EPIPE if it was already taken). */
int kts_kernel_tx_broken(int fd);

/* Does this kernel take this version x cipher in this direction (TLS_TX or
 * TLS_RX)? Tried on a throwaway loopback connection with a dummy key, as the
 * kernel's TLS selftests do; with rx_no_pad, TLS_RX_EXPECT_NO_PAD is then set
 * as well. Returns 0, or -errno of the step that failed (-ENOENT: no tls
 * ULP). */
int kts_kernel_probe_install(int version, enum kts_aead aead, int direction, int rx_no_pad);

/* Can this kernel replace the keys of a kTLS socket (TLS 1.3 KeyUpdate)?
 * Tried on a throwaway loopback connection: install TLS_TX twice. Returns 1,
 * 0, or -errno when the probe itself could not run. */
int kts_kernel_probe_rekey(void);

#endif
