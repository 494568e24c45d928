/*
 * kts.h - kernel TLS offload shim: public API.
 *
 * kts completes a TLS handshake with OpenSSL, then hands the record keys to the
 * Linux kernel (kTLS) so bulk data moves through the kernel. Where the kernel
 * cannot take a direction, that direction stays in userspace behind the same API.
 *
 * Objects:
 *   struct kts_config  settings shared by many connections (certificates, CA,
 *                      protocol range, ciphers, ALPN, offload policy).
 *   struct kts         one TLS connection on a connected TCP socket.
 *
 * Errors: functions returning int or ssize_t return a negative KTS_ERR_* code on
 * failure and leave a human-readable message on the object (kts_config_error(),
 * kts_error()). KTS_WANT_READ / KTS_WANT_WRITE are not errors: on a non-blocking
 * socket, wait for the fd to become readable / writable and call again. On a
 * blocking socket with SO_RCVTIMEO / SO_SNDTIMEO, a timeout also returns them,
 * and so may a signal that interrupts a blocking call (no SA_RESTART).
 *
 * Threads: a kts_config may be shared by connections in many threads once it is
 * fully set up. Set it up first: its setters must not run once connections
 * exist (they change what live handshakes read), except the ticket key
 * functions (kts_config_add_ticket_key(), kts_config_set_ticket_keys(),
 * kts_config_refresh_ticket_keys()), which are thread-safe. Connections hold a
 * reference to their config, so kts_config_free() may come before kts_free().
 * One struct kts is used by one thread at a time. The library keeps no global
 * mutable state and does not touch signal handling: writes to a closed peer
 * raise SIGPIPE on some paths (as with OpenSSL), so servers ignore SIGPIPE.
 */
#ifndef KTS_H
#define KTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KTS_API __attribute__((visibility("default")))

/* Return codes. */
#define KTS_OK 0
#define KTS_WANT_READ (-2)      /* non-blocking: wait for POLLIN, call again */
#define KTS_WANT_WRITE (-3)     /* non-blocking: wait for POLLOUT, call again */
#define KTS_WANT_CONTROL (-4)   /* caller-owned I/O: a plain receive met a kTLS control
				 * record; receive once with kts_recv_prep() */
#define KTS_WANT_SESSION (-5)   /* server handshake: look the session up in the external
				 * store (kts_session_wanted), then kts_session_supply() */
#define KTS_ERR_ARG (-10)       /* invalid argument or configuration */
#define KTS_ERR_NOMEM (-11)     /* out of memory */
#define KTS_ERR_SYS (-12)       /* a system call failed; the message names it and errno */
#define KTS_ERR_TLS (-13)       /* TLS failure: handshake, alert, bad record, verification */
#define KTS_ERR_OFFLOAD (-14)   /* offload policy "require" and the kernel could not take it */
#define KTS_ERR_UNSUPPORTED (-15) /* peer sent something kts cannot handle after handoff */
#define KTS_ERR_STATE (-16)     /* call out of order (e.g. write after close) */
#define KTS_ERR_TRUNCATED (-17) /* peer closed TCP without close_notify (data may be cut short) */

/* Protocol versions, as on the wire. */
#define KTS_TLS1_2 0x0303
#define KTS_TLS1_3 0x0304

/* Offload policy. */
enum kts_offload_policy {
	KTS_OFFLOAD_AUTO = 0, /* kernel where it can, userspace otherwise (default) */
	KTS_OFFLOAD_REQUIRE,  /* fail the handshake unless the kernel takes TX and RX */
	KTS_OFFLOAD_OFF,      /* never offload */
};

/* Peer verification flags (clients). Default: KTS_VERIFY_PEER | KTS_VERIFY_NAME. */
#define KTS_VERIFY_PEER 0x1 /* certificate chain must verify against the CA */
#define KTS_VERIFY_NAME 0x2 /* certificate must match the server name */

/* ---- configuration ---------------------------------------------------- */

struct kts_config;

/* Create a configuration with defaults: TLS 1.2-1.3, verification on, offload auto.
 * Returns NULL only when memory or OpenSSL initialisation fails. It checks once
 * whether the kernel has kernel TLS (loading the tls module where the kernel
 * may): a config made without it skips collecting TLS 1.3 traffic secrets, so
 * its TLS 1.3 connections stay in userspace even if the module is loaded later.
 * Load the module first (kmod-config/), or make a new config after loading it. */
KTS_API struct kts_config *kts_config_new(void);
/* Free a configuration. Connections made from it keep what they need. NULL is fine. */
KTS_API void kts_config_free(struct kts_config *cfg);
/* Message for the last failed call on cfg ("" if none). Valid until the next call. */
KTS_API const char *kts_config_error(const struct kts_config *cfg);

/* Certificate chain and private key, as PEM files or PEM in memory. The key must
 * match the certificate (checked when both are set, each new half against the
 * other: to switch to a new pair, make a new config). Encrypted keys are
 * refused (no passphrase prompt). The chain is sent exactly as given (leaf
 * first, then intermediates): kts does not complete it from the trust store. */
KTS_API int kts_config_set_cert_file(struct kts_config *cfg, const char *path);
KTS_API int kts_config_set_key_file(struct kts_config *cfg, const char *path);
KTS_API int kts_config_set_cert_mem(struct kts_config *cfg, const void *pem, size_t len);
KTS_API int kts_config_set_key_mem(struct kts_config *cfg, const void *pem, size_t len);

/* Trust anchors for verifying peers: a PEM file and/or a hashed directory.
 * Without either, the system default store is used. */
KTS_API int kts_config_set_ca_file(struct kts_config *cfg, const char *path);
KTS_API int kts_config_set_ca_path(struct kts_config *cfg, const char *dir);

/* Client verification flags (KTS_VERIFY_*); 0 disables verification (insecure). */
KTS_API int kts_config_set_verify(struct kts_config *cfg, int flags);

/* Protocol range, each KTS_TLS1_2 or KTS_TLS1_3, min <= max. */
KTS_API int kts_config_set_protocols(struct kts_config *cfg, int min_version, int max_version);
/* Parse "1.2", "1.3" or "1.2-1.3" (also "all") into a protocol range. */
KTS_API int kts_config_parse_protocols(struct kts_config *cfg, const char *spec);

/* TLS 1.2 cipher list (OpenSSL syntax) and TLS 1.3 suites (colon-separated).
 * The TLS 1.2 default is ECDHE with AES-GCM or ChaCha20-Poly1305 only: forward
 * secrecy, no CBC, no static RSA, and all of it offloadable. */
KTS_API int kts_config_set_ciphers(struct kts_config *cfg, const char *list);
KTS_API int kts_config_set_ciphersuites(struct kts_config *cfg, const char *list);

/* ALPN protocols, comma-separated in preference order, e.g. "h2,http/1.1". */
KTS_API int kts_config_set_alpn(struct kts_config *cfg, const char *list);

/* Default server name for clients: sent as SNI and checked against the certificate. */
KTS_API int kts_config_set_server_name(struct kts_config *cfg, const char *name);

/* Offload policy (enum kts_offload_policy). */
KTS_API int kts_config_set_offload(struct kts_config *cfg, int policy);
/* Parse "auto", "require" or "off". */
KTS_API int kts_config_parse_offload(struct kts_config *cfg, const char *spec);
/* TLS 1.3 on kernel RX: tell the kernel the peer pads no records
 * (TLS_RX_EXPECT_NO_PAD, Linux 6.0), so it decrypts straight into the reader's
 * buffer. Only for trusted peers: each padded record is then decrypted twice.
 * Off by default; a kernel without it ignores the setting. */
KTS_API int kts_config_set_rx_no_pad(struct kts_config *cfg, int on);
/* Caller-owned I/O with TX in userspace: from the first kts_write() of 16 KiB
 * or more, kts seals the records itself, straight from the caller's buffer
 * into the send queue, instead of OpenSSL copying each byte twice on the way.
 * TLS 1.2 connections always may. TLS 1.3 ones need the traffic secrets from
 * OpenSSL's key log, which costs every TLS 1.3 handshake (about a tenth of a
 * resumed one with OpenSSL 3.0): it runs where the kernel has kTLS anyway,
 * and elsewhere only with this on. A server's TLS 1.2 handshakes skip the
 * key log either way (their keys come from the session). The same secrets let
 * kts_config_set_release_openssl free a userspace TLS 1.3 connection's
 * OpenSSL state. Off by default. */
KTS_API int kts_config_set_tls13_seal(struct kts_config *cfg, int on);
/* Servers: free OpenSSL's state for a connection (about 10 KiB each on
 * OpenSSL 3.0): at the handoff once the kernel owns both of its directions;
 * with caller-owned I/O and both directions in userspace, at kts_shrink(),
 * where kts can protect and open its records itself: TLS 1.2 always, TLS 1.3
 * with the traffic secrets (where the kernel has kTLS, or after
 * kts_config_set_tls13_seal).
 * kts_version, kts_cipher, kts_alpn, kts_session_resumed and a peer's
 * KeyUpdate keep working; kts_ssl returns NULL and kts_issue_ticket fails
 * with KTS_ERR_STATE. Connections that use ticket app data keep OpenSSL.
 * Off by default. */
KTS_API int kts_config_set_release_openssl(struct kts_config *cfg, int on);

/* ---- connections -------------------------------------------------------- */

struct kts;

/* Allocate a server or client connection using cfg. NULL means out of memory,
 * or (server) no certificate/key configured: kts_config_error(cfg) says which. */
KTS_API struct kts *kts_server_new(struct kts_config *cfg);
KTS_API struct kts *kts_client_new(struct kts_config *cfg);
/* Free a connection (does not close its fd, does not send close_notify). NULL is fine. */
KTS_API void kts_free(struct kts *c);
/* Message for the last failure on c ("" if none). */
KTS_API const char *kts_error(const struct kts *c);

/* Attach a connected TCP socket (server: an accepted socket). kts never closes it.
 * Blocking and non-blocking sockets both work. */
KTS_API int kts_attach(struct kts *c, int fd);
/* Client: override the configured server name for this connection. */
KTS_API int kts_set_server_name(struct kts *c, const char *name);

/* Run the handshake and the kernel handoff. Returns KTS_OK, KTS_WANT_READ,
 * KTS_WANT_WRITE, or an error. Calling it again after success is a no-op. */
KTS_API int kts_handshake(struct kts *c);

/* Read up to len bytes of application data. Returns bytes read (> 0), 0 at the
 * peer's close_notify, KTS_WANT_* or an error (KTS_ERR_TRUNCATED when the peer
 * closed TCP without close_notify). Runs the handshake if needed. */
KTS_API ssize_t kts_read(struct kts *c, void *buf, size_t len);
/* Write up to len bytes. Returns bytes written (> 0; short only on a
 * non-blocking socket or a timeout), KTS_WANT_* or an error. Runs the handshake
 * if needed. Writing with len 0 returns 0. After a short write or
 * KTS_WANT_WRITE, call again with the rest of the data before anything else
 * (OpenSSL may hold a record made from it). */
KTS_API ssize_t kts_write(struct kts *c, const void *buf, size_t len);
/* Send count bytes of file_fd (a regular file) starting at *offset, advancing
 * *offset. Uses the kernel's sendfile when TX is offloaded, read+write
 * otherwise. Returns bytes sent (may be short; 0 at end of file), KTS_WANT_* or
 * an error. */
KTS_API ssize_t kts_sendfile(struct kts *c, int file_fd, off_t *offset, size_t count);
/* Bytes already decrypted and waiting in kts (userspace RX only; the kernel
 * path keeps them in the socket, where poll sees them). Read them before
 * waiting for POLLIN. */
KTS_API size_t kts_pending(const struct kts *c);

/* After a peer reset, kTLS reports bytes it took into a record as sent (and
 * once the socket's error was taken, every send looks whole). kts checks the
 * socket after each kernel sendfile, short send and close, and after every 16
 * whole writes or 256 KiB, so kts_sendfile fails on the first call after a
 * reset, kts_write within 16 calls or 256 KiB, with KTS_ERR_SYS ("Connection
 * reset by peer"), and kts_close never succeeds on such a connection. */

/* Send close_notify. Returns KTS_OK, KTS_WANT_WRITE or an error. Does not close fd. */
KTS_API int kts_close(struct kts *c);

/* ---- caller-owned I/O (event loops, io_uring) ---------------------------------
 *
 * With kts_attach_caller_io() kts never reads or writes the socket: the caller
 * moves the bytes (a ring, an event loop) and kts only turns them into TLS.
 * The socket is still needed for the handoff (setsockopt installs the keys) and
 * for checks that take no data (poll, SO_ERROR). Nothing here uses liburing;
 * <kts_uring.h> adds inline helpers that fill io_uring SQEs.
 *
 * The loop, on either path and any kernel:
 *   1. Receive into a buffer (at most kts_feed_limit() bytes during the
 *      handshake: use a one-shot receive then, never a multishot one), prepared
 *      with kts_recv_prep() for recvmsg; call kts_recv_done() or
 *      kts_recvmsg_done() with the result. It runs the handshake and returns
 *      plaintext that landed in the buffer (> 0), KTS_WANT_READ (nothing for
 *      you yet), 0 (close_notify), KTS_WANT_CONTROL, or an error. After data,
 *      call kts_read() until KTS_WANT_READ: it returns what is still held.
 *   2. Whenever kts_out_msg() returns non-zero, send that message
 *      (sendmsg with MSG_NOSIGNAL; the bytes stay valid until kts_out_done())
 *      and report the result with kts_out_done(), before sending anything else.
 *      One send in flight per connection.
 *   3. Application data: kts_offload(c, KTS_TX) == KTS_PATH_KERNEL means send
 *      plaintext on the socket yourself (send, splice; never MSG_WAITALL or
 *      SEND_ZC, which kTLS refuses) and pass each result to kts_send_done();
 *      otherwise kts_write() encrypts into the queue of step 2 (bulk writes
 *      sealed by kts itself: kts_config_set_tls13_seal). kts_close() queues
 *      close_notify the same way.
 * During the handshake keep one operation in flight (a receive or a send of
 * step 2) and call kts_handshake() after each completion until it returns
 * KTS_OK: it returns KTS_WANT_WRITE while OpenSSL's last flight or TLS 1.3
 * tickets wait in the queue, since the kernel takes TX only once they are
 * out; never have a receive in flight while it may hand off. Once it returns
 * KTS_OK, call kts_read() until KTS_WANT_READ before the next receive: data
 * that came with the handshake's end waits there. The first data comes after
 * them; whatever the caller received past the handshake is
 * decrypted in userspace and comes out first, and the kernel's RX record
 * number counts it. A record cut off by the end of such a receive holds the
 * handoff back until its rest arrives: kts_feed_limit() then says how many
 * bytes to receive, so that nothing past it leaves the socket before the
 * kernel owns RX. */

/* A message for sendmsg/recvmsg, with room for a kTLS record type. */
struct kts_msg {
	struct msghdr msg;
	struct iovec iov;
	union {
		size_t align; /* struct cmsghdr's alignment: it starts with a size_t */
		unsigned char buf[64];
	} control;
};

/* Attach a connected TCP socket for caller-owned I/O (instead of kts_attach()). */
KTS_API int kts_attach_caller_io(struct kts *c, int fd);
/* Hand in bytes received from the socket while kts decrypts (the handshake,
 * userspace RX). Returns len, or an error (KTS_ERR_STATE when the kernel owns
 * RX). kts_recv_done() calls it for you. */
KTS_API ssize_t kts_feed(struct kts *c, const void *buf, size_t len);
/* The most bytes the caller may take off the socket now: SIZE_MAX, the exact
 * rest of a record while the handoff waits for it, or 0 when a partial record
 * is neither (after a failure). */
KTS_API size_t kts_feed_limit(const struct kts *c);
/* Fill m for a receive into buf (len clamped to kts_feed_limit()), with a
 * control buffer for the kTLS record type. */
KTS_API void kts_recv_prep(const struct kts *c, struct kts_msg *m, void *buf, size_t len);
/* A finished receive: res is its result (bytes, 0 at EOF, or -errno). recv_done
 * is for a plain recv/read or a provided buffer of cap bytes (plaintext is
 * written back into buf); recvmsg_done for a receive prepared by
 * kts_recv_prep(). Returns plaintext bytes now at the start of the buffer,
 * KTS_WANT_READ, 0 at close_notify, KTS_WANT_CONTROL (kernel RX, plain receive
 * only), or an error: KTS_ERR_TRUNCATED (EOF without close_notify), KTS_ERR_TLS
 * naming a fatal alert or a bad record. Handshake records after the handoff
 * (tickets, KeyUpdate) are handled here and may queue replies (step 2). */
KTS_API ssize_t kts_recv_done(struct kts *c, void *buf, size_t cap, ssize_t res);
KTS_API ssize_t kts_recvmsg_done(struct kts *c, struct kts_msg *m, ssize_t res);
/* Bytes kts has queued for the caller to send (0: none): ask before taking
 * an SQE for kts_out_msg(). */
KTS_API size_t kts_out_pending(const struct kts *c);
/* The next bytes kts needs sent, in m; returns their count, 0 when none. The
 * bytes stay valid and unchanged until kts_out_done(). */
KTS_API size_t kts_out_msg(struct kts *c, struct kts_msg *m);
/* The result of sending the last kts_out_msg() (bytes sent, or -errno). A
 * short send leaves the rest for the next kts_out_msg(). Returns KTS_OK,
 * KTS_WANT_WRITE (-EAGAIN: send again when writable), or an error. */
KTS_API int kts_out_done(struct kts *c, ssize_t res);
/* The result of the caller's own send or splice of want bytes on kernel TX
 * (bytes, or -errno; want SIZE_MAX for a count that could not be short).
 * Returns res, KTS_WANT_WRITE, or KTS_ERR_SYS when the peer reset the
 * connection: the socket is checked as kts_write() checks it (see above). */
KTS_API ssize_t kts_send_done(struct kts *c, ssize_t res, size_t want);
/* The connection went quiet (a keep-alive connection between requests, say):
 * let kts free what it can do without. With kts_config_set_release_openssl,
 * a server connection whose two directions stay in userspace hands its
 * records to kts and frees OpenSSL's state (about 10 KiB), when nothing is
 * half-received or unread. Taking over costs about a twentieth of a resumed
 * handshake, so call it for connections idle a while (kts-server: idle at
 * its 50 ms tick), not after every request. Returns 1 when OpenSSL was
 * freed, 0 when nothing changed (call again later), or an error. */
KTS_API int kts_shrink(struct kts *c);

/* ---- session resumption -------------------------------------------------- */

/* Client: resume sessions through a file. fd must be a regular file owned by
 * the caller's uid with mode exactly 0600, else KTS_ERR_ARG naming the failed
 * check. A non-empty file is offered for resumption (garbage or a truncated
 * file only means a full handshake). After each handshake, and whenever a
 * resumable session arrives later (TLS 1.3 tickets, also after the kernel owns
 * RX), the file gets the newest resumable session, never a non-resumable one.
 * Writes are serialised with flock(2) across processes sharing the file and
 * leave either the old or the new session; each is synced to disk, inside the
 * kts_read that receives a TLS 1.3 ticket; a connection writes the file for
 * its first 4 sessions, then at most once a minute (a server flooding tickets
 * costs no flood of disk syncs). kts does not close fd.
 * Resuming skips verification, so a session is offered only to a connection
 * that applies the verification rules it was saved under (KTS_VERIFY_* flags,
 * trust anchors: each CA file's content, each CA directory's path, or the
 * system store) and has the same server name; a connection that verifies
 * nothing takes any. Sessions from unverified connections, from other trust
 * anchors or flags, and files written by other programs are never offered to
 * a verifying connection: it makes a full, verified handshake instead. */
KTS_API int kts_config_set_session_fd(struct kts_config *cfg, int fd);

/* Server: session ID context, 1..32 bytes (random by default). Servers that
 * share ticket keys or a session cache must share it. */
KTS_API int kts_config_set_session_id(struct kts_config *cfg, const unsigned char *id,
				      size_t len);

/* Server: lifetime of tickets and cached sessions, 0 (default: resumption
 * off) or 60..KTS_SESSION_LIFETIME_MAX seconds. */
#define KTS_SESSION_LIFETIME_MAX (7 * 24 * 3600)
KTS_API int kts_config_set_session_lifetime(struct kts_config *cfg, unsigned int seconds);

/* Server: TLS 1.3 tickets sent after each full handshake (default 2 once a
 * lifetime is set; at most 16). */
KTS_API int kts_config_set_num_tickets(struct kts_config *cfg, unsigned int n);

/* Server: session ticket keys. A key is KTS_TICKET_KEY_LEN bytes: an AES-256-CBC
 * key (32) then an HMAC-SHA256 key (32). The newest key (last added) encrypts;
 * older ones only decrypt, and a ticket under one is renewed. Re-adding a known
 * keyrev is KTS_ERR_ARG unless it is the newest with identical bytes (a no-op).
 * Up to KTS_TICKET_KEYS_MAX keys are kept (the oldest is dropped and zeroed,
 * also keys of kts_config_set_ticket_keys(), which takes keys with schedules);
 * a key encrypts for one lifetime after it was added and expires at its add
 * time + 2 x lifetime, so add a new key at least once per lifetime. Keys added after connections
 * exist apply to new handshakes at once (this call is thread-safe). Without
 * any key added, kts generates keys itself and rotates them every lifetime,
 * from one secret seed that worker processes forked after the lifetime is set
 * share (so they accept each other's tickets); the first key added drops the
 * automatic keys. With no valid key left, no ticket is issued. TLS 1.3
 * resumptions always get one fresh ticket; a renewed ticket keeps the resumed
 * application data unless new data is set.
 * The 16-byte key name in tickets is keyrev (4 bytes, big-endian) and 12 bytes
 * of HMAC-SHA256(hmac key, "kts ticket key name"): it does not reveal the key. */
#define KTS_TICKET_KEY_LEN 64
#define KTS_TICKET_KEYS_MAX 4
KTS_API int kts_config_add_ticket_key(struct kts_config *cfg, unsigned int keyrev,
				      const unsigned char *key, size_t keylen);

/* Server: a ticket key and its schedule, for kts_config_set_ticket_keys().
 * Times are seconds since the Unix epoch. At time t a key is
 *   staged   t < encrypt_from: opens tickets (another server may issue them
 *            already) but seals none, so every server can hold a key before
 *            any server seals under it;
 *   active   encrypt_from <= t < encrypt_until: of the active keys, the one
 *            with the latest encrypt_from (the later in the set on a tie)
 *            seals new tickets; the others act as retired;
 *   retired  encrypt_until <= t < decrypt_until: opens tickets, and a ticket
 *            under it is renewed;
 *   gone     decrypt_until <= t: dropped and zeroed.
 * A ticket's advertised lifetime is the session lifetime, or less: never past
 * the decrypt_until of the key that sealed it. */
#define KTS_TICKET_KEY_NAME_LEN 16
struct kts_ticket_key {
	unsigned int keyrev; /* named in every ticket (in the clear) */
	int64_t encrypt_from, encrypt_until, decrypt_until;
	unsigned char key[KTS_TICKET_KEY_LEN]; /* AES-256 key, then HMAC-SHA256 key */
	/* Left zero, the two fields below mean what kts always did. name: the
	 * 16 bytes that open every ticket, as another server (nginx, HAProxy)
	 * names the key; all zero: derived (kts_ticket_key_name). */
	unsigned char name[KTS_TICKET_KEY_NAME_LEN];
	/* 0 or 256: key is an AES-256-CBC key (32) then an HMAC-SHA256 key (32).
	 * 128: key[0, 16) is an AES-128-CBC key, key[16, 32) a 16-byte
	 * HMAC-SHA256 key, and key[32, 64) must be zero (the 48-byte key files
	 * of nginx and HAProxy). Anything else is KTS_ERR_ARG. */
	unsigned int aes_bits;
};
enum kts_ticket_key_state { KTS_KEY_STAGED, KTS_KEY_ACTIVE, KTS_KEY_RETIRED, KTS_KEY_GONE };
#define KTS_TICKET_KEYSET_MAX 32

/* Server: replace all ticket keys with keys[0, n) at once (automatic keys and
 * keys added with kts_config_add_ticket_key go too). The set must hold 1 to
 * KTS_TICKET_KEYSET_MAX keys with distinct keyrevs, bytes and names (given or
 * derived), times in order, a valid aes_bits, no all-zero AES or HMAC key,
 * and a key active now; a keyrev the config already holds must come with the
 * same bytes, name and aes_bits (a keyrev names one key until it is gone);
 * and a set that lacks the newest key in use while all its keys start before
 * that one is older (a restored or stale file). Anything else is KTS_ERR_ARG
 * with the reason, and the keys in use stay. Thread-safe, like
 * kts_config_add_ticket_key: new handshakes use the new set at once. The
 * config keeps its own copy; zero keys[] after the call. */
KTS_API int kts_config_set_ticket_keys(struct kts_config *cfg, const struct kts_ticket_key *keys,
				       size_t n);

/* The rules above, for tools that manage key files: the state of k at now;
 * the index of the key in keys[0, n) that seals tickets at now (-1: none);
 * whether keys[0, n) is a set kts_config_set_ticket_keys would take at now
 * (KTS_OK, or KTS_ERR_ARG with the reason in err); a state's name. */
KTS_API enum kts_ticket_key_state kts_ticket_key_state(const struct kts_ticket_key *k, int64_t now);
KTS_API int kts_ticket_keys_encrypting(const struct kts_ticket_key *keys, size_t n, int64_t now);
KTS_API int kts_ticket_keys_check(const struct kts_ticket_key *keys, size_t n, int64_t now,
				  char *err, size_t errlen);
KTS_API const char *kts_ticket_key_state_name(enum kts_ticket_key_state s);
/* The 16 bytes that name k in every ticket it seals: k->name when not all
 * zero, else keyrev (4 bytes, big-endian) and 12 bytes of HMAC-SHA256(the
 * HMAC key, "kts ticket key name"). For tools that hand keys to other
 * servers, which must name them the same. KTS_OK, KTS_ERR_ARG (aes_bits not
 * 0, 128 or 256; NULL) or KTS_ERR_NOMEM (the HMAC failed). */
KTS_API int kts_ticket_key_name(const struct kts_ticket_key *k,
				unsigned char name[KTS_TICKET_KEY_NAME_LEN]);

/* Server: bring the ticket keys to the current time without a handshake: drop
 * expired keys and move the automatic key chain to the current lifetime
 * (every handshake does this first). A process that forks workers and serves
 * nothing itself should call it at least once per lifetime: its memory then
 * holds no key older than the previous lifetime (a dump of it cannot decrypt
 * older tickets), and workers it forks later share keys with the running
 * ones even after months. Thread-safe. KTS_OK also when resumption is off. */
KTS_API int kts_config_refresh_ticket_keys(struct kts_config *cfg);

/* Server: a session cache for TLS 1.2 session-ID resumption, in shared memory,
 * so worker processes forked after this call share it. entries (16..1000000,
 * else KTS_ERR_ARG) is rounded up to a multiple of 8; each takes 2 KiB of
 * shared memory, used as it fills. Sessions over 1984 bytes serialized (large
 * client certificates) are not cached. Entries expire after the session
 * lifetime; with lifetime 0 nothing is stored or resumed. Call once, before
 * forking: a second call is KTS_ERR_STATE. */
KTS_API int kts_config_set_session_cache(struct kts_config *cfg, size_t entries);

/* Server: an external session store behind the cache above, so that TLS 1.2
 * clients resume by session ID on every machine of a fleet (kts-server uses
 * Redis). kts does no I/O for it and never waits on it:
 *  - put: a full TLS 1.2 handshake made a resumable session: id[0, id_len)
 *    and its serialized form der[0, len), valid for lifetime seconds. Called
 *    from the handshake: queue it, do not block. del: forget id (OpenSSL
 *    dropped it). Either may be NULL.
 *  - lookups: when a TLS 1.2 ClientHello (one that offers no TLS 1.3 and no
 *    ticket) names a session the local cache lacks, kts_handshake returns
 *    KTS_WANT_SESSION; kts_session_wanted gives the ID; the caller asks its
 *    store however it likes, and calls kts_session_supply with what it found
 *    (len 0: nothing, or no answer in time; the handshake then goes on as a
 *    full one), then kts_handshake again. A supplied session enters the
 *    local cache and is checked as any cached one (same session ID context,
 *    lifetime); garbage is a miss.
 * Needs kts_config_set_session_cache first (KTS_ERR_STATE). The store must
 * outlive the config; its functions are called from any thread that runs a
 * handshake. Entries should be protected in the store (kts-server seals
 * them under the fleet's key). */
#define KTS_SESSION_DER_MAX 1984 /* the largest serialized session the cache keeps */
struct kts_session_store {
	void (*put)(void *arg, const unsigned char *id, size_t id_len, const unsigned char *der,
		    size_t len, unsigned int lifetime);
	void (*del)(void *arg, const unsigned char *id, size_t id_len);
	void *arg;
};
KTS_API int kts_config_set_session_store(struct kts_config *cfg,
					 const struct kts_session_store *store);
/* The session ID kts_handshake wants (after KTS_WANT_SESSION): copies it to
 * id (32 bytes are enough) and returns its length, or KTS_ERR_STATE. */
KTS_API ssize_t kts_session_wanted(const struct kts *c, unsigned char *id, size_t len);
/* The store's answer for kts_session_wanted's ID: der[0, len) or len 0. */
KTS_API int kts_session_supply(struct kts *c, const unsigned char *der, size_t len);

/* Did this connection resume a session? 1 yes, 0 no (or handshake not done). */
KTS_API int kts_session_resumed(const struct kts *c);

/* Server: bytes (at most KTS_TICKET_APPDATA_MAX) to bind into the tickets issued
 * on this connection from now on; read back with kts_ticket_appdata() when a
 * later connection resumes from one of them. */
#define KTS_TICKET_APPDATA_MAX 1024
KTS_API int kts_set_ticket_appdata(struct kts *c, const void *data, size_t len);
/* Server: the application data of the ticket this connection resumed from.
 * Copies up to len bytes into buf and returns the full length, or 0 if there is
 * none (not resumed, or no data). */
KTS_API ssize_t kts_ticket_appdata(struct kts *c, void *buf, size_t len);

/* Server, TLS 1.3: send one more NewSessionTicket now, also when the kernel owns
 * TX (the ticket goes out through the kernel as a handshake record). Returns
 * KTS_OK, or KTS_WANT_WRITE when the socket cannot take it yet: the ticket is
 * then held and goes out on the next call of this function or ahead of the
 * next write. No ticket is sent while no ticket key is valid. */
KTS_API int kts_issue_ticket(struct kts *c);

/* ---- status --------------------------------------------------------------- */

enum kts_dir { KTS_TX = 0, KTS_RX = 1 };
enum kts_path {
	KTS_PATH_NONE = 0, /* handshake not finished yet */
	KTS_PATH_KERNEL,   /* records for this direction are handled by kernel TLS */
	KTS_PATH_USER,     /* records for this direction are handled by OpenSSL */
};

/* Which path carries direction dir. */
KTS_API int kts_offload(const struct kts *c, enum kts_dir dir);
/* Why dir is in userspace (e.g. "kernel has no tls module (TCP_ULP: No such file
 * or directory)"); NULL when it is in the kernel or the handshake is not done. */
KTS_API const char *kts_offload_reason(const struct kts *c, enum kts_dir dir);
/* "kernel" or "user" for a kts_path value ("none" for KTS_PATH_NONE). */
KTS_API const char *kts_path_name(int path);

/* Negotiated protocol ("TLSv1.3"), cipher (OpenSSL name) and ALPN protocol
 * (NULL if none), valid after the handshake. */
KTS_API const char *kts_version(const struct kts *c);
KTS_API const char *kts_cipher(const struct kts *c);
KTS_API const char *kts_alpn(const struct kts *c);

/* Escape hatch: the underlying OpenSSL SSL * (cast it). Only for inspection
 * (certificates, session details); reading or writing through it after the
 * handshake bypasses kts and corrupts an offloaded connection. NULL once
 * kts_config_set_release_openssl freed it. */
KTS_API void *kts_ssl(const struct kts *c);

#ifdef __cplusplus
}
#endif
#endif
