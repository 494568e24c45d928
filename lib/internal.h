/*
 * internal.h - the structures behind the opaque handles, shared by lib/ only.
 */
#ifndef KTS_INTERNAL_H
#define KTS_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "keysched.h"
#include "kts.h"

#define KTS_ERRLEN 512
#define KTS_REASONLEN 192

struct kts_config {
	_Atomic int refs;   /* the caller's and one per connection */
	_Atomic int rekey;  /* kernel can replace kTLS keys: 0 not probed yet, 1 yes, 2 no */
	_Atomic long ulp_retry_at; /* CLOCK_MONOTONIC s: no tls ULP, no attempt before (handoff.c) */
	SSL_CTX *ctx;       /* shared by every connection made from this config */
	/* The same without the key log, for server handshakes that will be TLS
	 * 1.2 (handshake.c): kts needs no key log for them, and OpenSSL formats
	 * each line byte by byte (near a tenth of a resumed TLS 1.2 one). It
	 * mirrors what such a handshake reads from its SSL_CTX rather than its
	 * SSL once the ClientHello is in: the cipher list (an SSL without its
	 * own uses its ctx's), certificate, key and chain, ALPN selection,
	 * session ID context, app data. Sessions and tickets stay with ctx
	 * (OpenSSL's session_ctx); the rest was copied into the SSL by SSL_new. */
	SSL_CTX *ctx12;
	int keylog;         /* ctx runs the key log (kts_handshake_callbacks) */
	char *server_name;  /* client default SNI / verified name */
	int verify;         /* KTS_VERIFY_* (clients) */
	int offload;        /* enum kts_offload_policy */
	int kernel_tls;     /* the kernel had the tls ULP when the config was made */
	int rx_no_pad;      /* TLS 1.3 kernel RX: TLS_RX_EXPECT_NO_PAD (trusted peers) */
	int release_ssl;    /* servers: free the SSL once the kernel owns both directions */
	int tls13_seal;     /* collect TLS 1.3 secrets for softtx.c even without kTLS */
	int ca_set;         /* the default trust store was replaced by the caller's */
	/* Which trust anchors verify peers: SHA-256 chained over each CA file's
	 * content and each CA directory's path (or the system default). Client
	 * sessions are tagged with it (session_file.c). */
	unsigned char trust_id[32];
	X509 *cert;         /* leaf certificate, to check the key against */
	EVP_PKEY *key;
	unsigned char *alpn; /* ALPN list in wire format (length-prefixed names) */
	size_t alpn_len;

	/* Resumption (client: session file; server: tickets and session cache). */
	int session_fd;               /* client session file, -1 if none */
	unsigned int lifetime;        /* server: seconds, 0 = resumption off */
	int num_tickets;              /* server TLS 1.3 tickets, -1 = default */
	struct kts_ticket_ring *ring; /* server ticket keys (ticketkeys.c) */
	EVP_CIPHER *ticket_cbc[2];    /* AES-128-, AES-256-CBC: fetched once, not per ticket */
	struct kts_sess_cache *cache; /* server shared session cache (sesscache.c) */
	struct kts_session_store store; /* server: the external store behind it (sessstore.c) */
	int store_set;                  /* kts_config_set_session_store was called */
	BIO_METHOD *queues_meth; /* caller-owned I/O queues (caller_bio.c) */
	EVP_CIPHER *soft_cipher[KTS_AEAD_CHACHA20_POLY1305 + 1]; /* per enum kts_aead (softtx.c) */
	char error[KTS_ERRLEN];
};

/* A byte buffer: data[off, len) is unread; cap is allocated. */
struct kts_bytes {
	unsigned char *data;
	size_t off, len, cap;
	size_t dirty; /* with len: the front bytes that ever held data (what a wipe clears) */
};

/* Record boundaries in a byte stream fed in pieces. */
struct kts_rec_scan {
	unsigned char hdr[5]; /* the current record's header, hdr_have bytes of it */
	size_t hdr_have;
	size_t body_left;     /* bytes of the current record's body still to come */
};

/* TLS 1.3 traffic secrets, on the heap: a connection needs them from the key
 * log to the handoff, and after it only while the kernel owns a direction.
 * Most idle userspace connections so carry none. Wiped before freed. */
struct kts_secrets {
	unsigned char hs[2][64]; /* captured by the key log: [0] client, [1] server */
	size_t hs_len[2];        /* zeroed at handoff */
	size_t size;             /* post-handshake secrets' length; 0 when wiped */
	unsigned char rx[64];      /* the peer's: kernel RX and OpenSSL's read side */
	unsigned char tx[64];      /* ours, as the kernel's TX uses it */
	unsigned char ossl_tx[64]; /* ours, as OpenSSL's write side uses it */
};

/* Userspace TX sealed by kts itself (softtx.c): our record keys and number;
 * TLS 1.3 also the traffic secret that a KeyUpdate moves on from. */
struct kts_softtx {
	EVP_CIPHER_CTX *ctx;      /* keyed while records wait in the send queue */
	uint64_t seq;             /* our next record number, once started */
	struct kts_dir_keys k;    /* derived when started */
	unsigned char secret[64]; /* TLS 1.3 */
	unsigned char secret_len;
	unsigned char started;    /* kts seals; OpenSSL's records are renumbered */
	unsigned char key_moves;  /* OpenSSL's next record is its KeyUpdate: the last under this key */
};

/* Userspace RX opened by kts itself (softrx.c), once OpenSSL is released:
 * the peer's record keys and number, TLS 1.3 also its traffic secret. Until
 * then (kts_shrink) the record number and secret follow what OpenSSL reads.
 * A record opened at the head of the receive queue but not all read yet is
 * there at inq.off + plain_at, plain_left bytes, rec_len in all. */
struct kts_softrx {
	EVP_CIPHER_CTX *ctx;
	uint64_t seq;
	struct kts_dir_keys k;
	size_t plain_at, plain_left, rec_len;
	unsigned char secret[64];
	unsigned char secret_len;
};

enum kts_state {
	KTS_STATE_NEW = 0,  /* no fd yet */
	KTS_STATE_HANDSHAKE, /* fd attached, handshake not finished */
	KTS_STATE_OPEN,     /* handshake and handoff done */
	KTS_STATE_FAILED,   /* fatal error: every call returns fail_code */
};

struct kts {
	/* Ordered by size, so that nothing pads: an idle connection is mostly
	 * this struct, OpenSSL's state and the caller's. */
	struct kts_config *cfg; /* referenced: kept alive while the connection lives */
	SSL *ssl;
	char *server_name;       /* client: SNI and verified name */
	/* Strings on the heap, sized to fit: most connections never fail. */
	char *reason[2];         /* why a direction stays in userspace */
	char *alpn;              /* negotiated ALPN protocol, NUL-terminated */
	/* What kts_version, kts_cipher and kts_session_resumed report: kept
	 * here so they outlive the SSL (kts_config_set_release_openssl).
	 * OpenSSL's names are static strings. */
	const char *version_name;
	const char *cipher_name;
	unsigned char *appdata;  /* server: server_session.c's ticket data block (opaque) */
	size_t appdata_len;      /* its size */
	size_t tx_unchecked_bytes;   /* kernel TX: whole-write bytes since the socket was checked */
	long last_save;              /* client: CLOCK_MONOTONIC seconds of the last session saved */
	struct kts_secrets *sec;     /* TLS 1.3 only; NULL once nothing needs them */
	struct kts_softtx *soft;     /* userspace TX sealed by kts (softtx.c), or NULL */
	struct kts_softrx *srx;      /* userspace RX kts may open itself (softrx.c), or NULL */
	char *error;                 /* KTS_ERRLEN, from the first failure on */

	/* TLS 1.3 after the handoff: handshake records cross between OpenSSL and
	 * the kernel (posthandshake.c), under the secrets kept in c->sec. */
	uint64_t ossl_seq[2];             /* OpenSSL's own record numbers per direction */
	unsigned char *hs;                /* handshake bytes read from kernel RX, not yet whole */
	size_t hs_len;
	unsigned char *tx_hs;             /* handshake bytes queued for kernel TX */
	size_t tx_hs_len;
	size_t rx_alert_len;              /* bytes of rx_alert read so far */

	/* Caller-owned I/O (caller_io.c): kts never reads or writes the socket. */
	struct kts_bytes inq;       /* received wire bytes OpenSSL has not read yet */
	struct kts_bytes outq;      /* wire bytes from OpenSSL for the caller to send */
	unsigned char *outq_old;    /* outq's buffer before it grew under a send in flight */
	size_t out_inflight;        /* bytes handed out by kts_out_msg, not yet done */
	struct kts_bytes early;     /* plaintext decrypted past the handshake: read first */
	struct kts_rec_scan scan;   /* record boundaries of the bytes past the handshake */
	uint64_t rx_user_records;   /* records OpenSSL read past the handshake */

	int fd;
	int state;
	int fail_code;
	int offload;             /* policy, copied from the config */
	int verify;
	int path[2];             /* enum kts_path per enum kts_dir */
	int version;
	enum kts_aead aead;
	int out_type;               /* what is in flight: 0 wire bytes, or a record type */
	unsigned int tx_unchecked_calls; /* kernel TX: whole writes since the socket was checked */
	unsigned int sessions_saved; /* client: sessions written to the session file */
	unsigned int tickets_sent;   /* TLS 1.3 NewSessionTicket records written by OpenSSL */

	char digest[16];
	/* Never needed at once, so they share the bytes: store_id only while the
	 * handshake waits for the external session store (sessstore.c), which
	 * it does before any handoff; sid from the handoff on, for released
	 * TLS 1.2 servers, so a connection that fails later still drops its
	 * session from the cache as OpenSSL would. */
	union {
		unsigned char sid[SSL_MAX_SSL_SESSION_ID_LENGTH];
		unsigned char store_id[SSL_MAX_SSL_SESSION_ID_LENGTH];
	};
	unsigned char sid_len;
	unsigned char store_id_len;
	unsigned char store_wait;   /* 0 none, 1 waiting for kts_session_supply, 2 answered */
	unsigned char reason_fixed; /* bit per dir: reason[dir] is a literal, not ours */
	unsigned char tx_alert[2];        /* an alert (level, description) to send */
	unsigned char rx_alert[2];        /* an alert read in parts from kernel RX */
	/* Flags, 0 or 1. */
	unsigned char is_server;
	unsigned char prepared;          /* client: verification and SNI set up */
	unsigned char resumed;
	unsigned char rx_eof;            /* close_notify received */
	unsigned char tx_closed;         /* close_notify sent */
	unsigned char tx_rekey_pending;  /* install the next TX secret once tx_hs is out */
	unsigned char tx_alert_pending;  /* tx_alert waits to go out */
	unsigned char caller_io;         /* attached with kts_attach_caller_io */
	unsigned char soft_tx;           /* kts may seal TX itself; OpenSSL's records counted */
	unsigned char soft_rx;           /* kts opens RX itself: OpenSSL released (softrx.c) */
	unsigned char draining;          /* handshake done; finishing a record read past it */
	unsigned char drain_moved_keys;  /* a message past the handshake changed OpenSSL's state */
	unsigned char error_lost;        /* a failure found no memory for its message */
};

/* posthandshake.c: bytes of handshake records the kernel handed up (TLS 1.3
 * NewSessionTicket, KeyUpdate; TLS 1.2 renegotiation). Handles each whole
 * message and keeps a partial one for the next call. Returns KTS_OK (read
 * on), or an error. */
int kts_post_handshake(struct kts *c, const unsigned char *data, size_t n);
/* Wipe and free a partly read handshake message and queued TX bytes. */
void kts_post_handshake_free(struct kts *c);
/* Send what is queued for kernel TX (a ticket, a KeyUpdate answer, an alert)
 * ahead of anything else. KTS_OK when none are left, KTS_WANT_WRITE, or an
 * error. A queued fatal alert goes out best effort, once, and the result is
 * the connection's failure code. */
int kts_post_handshake_flush(struct kts *c);
/* Empty this thread's OpenSSL error queue before a call whose errors we
 * read: ERR_clear_error() wipes all 16 slots even when there is nothing to
 * clear, which cost a few percent of a small keep-alive reply. */
static inline void kts_err_clear(void)
{
	if (ERR_peek_error())
		ERR_clear_error();
}
/* Is anything queued for it? */
static inline int kts_tx_queued(const struct kts *c)
{
	return c->tx_hs_len > 0 || c->tx_alert_pending;
}
/* The next record queued for kernel TX (a fatal alert first, then handshake
 * bytes, then an alert): its type and bytes; returns 0 when none. sent: n of
 * its bytes went out (installs the next TX key once a KeyUpdate is out). */
size_t kts_tx_next(const struct kts *c, unsigned char *type, const unsigned char **data);
int kts_tx_sent(struct kts *c, unsigned char type, size_t n);
/* Remember what post-handshake records will need (handoff.c, TLS 1.3). */
void kts_post_handshake_setup(struct kts *c, const char *digest, enum kts_aead aead);
/* c->sec, allocated zeroed on first need; NULL when out of memory. */
struct kts_secrets *kts_secrets_get(struct kts *c);
/* Zero them but keep the block: a caller up the stack may still point into it. */
void kts_secrets_wipe(struct kts *c);
/* Zero and free them. */
void kts_secrets_free(struct kts *c);

/* alert.c: alerts for kernel TX, queued for kts_post_handshake_flush (no-ops
 * while OpenSSL owns TX). refuse: queue a fatal alert (dropping queued
 * handshake bytes: nothing follows it) and fail the connection with the
 * message. warning: queue a warning alert behind queued handshake bytes. */
int kts_refuse(struct kts *c, unsigned char desc, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void kts_alert_warning(struct kts *c, unsigned char desc);

/* rx.c: one read from kernel RX, interpreted without I/O. record: n bytes
 * (0 = TCP EOF) of content type `type` in buf; end is 1 when the record
 * ended with them (MSG_EOR), 0 when more of it follows, -1 if unknown. Returns n for application data
 * (left in buf), 0 at close_notify, KTS_RX_AGAIN when kts consumed the record
 * (read on), or an error. error: a failed read's -errno as a kts code. Both
 * may queue records to send (kts_post_handshake_flush). */
#define KTS_RX_AGAIN (-1)
ssize_t kts_rx_record(struct kts *c, unsigned char type, unsigned char *buf, size_t n, int end);
int kts_rx_error(struct kts *c, int err);

/* caller_bio.c: OpenSSL's BIO for caller-owned I/O, reading c->inq and
 * appending to c->outq (running out of memory there fails the connection).
 * bytes_reserve: room for n more bytes at the end of b (wipe: b holds
 * plaintext, zero what is freed; ciphertext queues need not); while a send
 * of b's bytes is in flight (pinned) they do not move: a bigger buffer is
 * taken and the old one kept in *old until that send is done.
 * outq_reserve: that for the send queue; KTS_OK or the connection fails. */
int kts_caller_bio_init(struct kts_config *cfg);
void kts_caller_bio_free(struct kts_config *cfg);
int kts_caller_bio_attach(struct kts *c);
int kts_outq_reserve(struct kts *c, size_t n);
int kts_bytes_reserve(struct kts_bytes *b, size_t n, int wipe, int pinned, unsigned char **old);
void kts_bytes_free(struct kts_bytes *b, int wipe);

/* caller_io.c: the parts of the handshake and the I/O calls that differ when
 * the caller owns the socket. handshake_done: after OpenSSL finished, decrypt
 * what was read past it; KTS_OK when the stream is at a record boundary (hand off now),
 * KTS_WANT_READ while a record read past it is incomplete, or an error.
 * early: copy out plaintext decrypted then (0 when none). */
int kts_cio_handshake_done(struct kts *c);
size_t kts_cio_early(struct kts *c, void *buf, size_t len);
ssize_t kts_cio_write(struct kts *c, const void *buf, size_t len);
int kts_cio_close(struct kts *c);
void kts_cio_free(struct kts *c);

/* softtx.c: userspace TX records sealed by kts, caller-owned I/O only.
 * setup: at the handoff, whether this connection may (seq: OpenSSL's next
 * TX record number). wants: should kts_write() of len bytes go this way.
 * write: seal all of buf into the send queue, which has room. openssl_out:
 * OpenSSL wrote n bytes of whole records to the queue's BIO: 0 to append
 * them as they are (counted), 1 when kts renumbered them into the queue, or
 * an error. key_update: OpenSSL wrote a TLS 1.3 KeyUpdate (into its
 * handshake buffer: the record reaches the BIO next). idle: the send
 * queue is empty (drop the key schedule). wipe: the connection failed. */
void kts_softtx_setup(struct kts *c, int version, const char *digest, enum kts_aead aead,
		      uint64_t seq);
int kts_softtx_wants(const struct kts *c, size_t len);
ssize_t kts_softtx_write(struct kts *c, const void *buf, size_t len);
int kts_softtx_openssl_out(struct kts *c, const unsigned char *p, size_t n);
int kts_softtx_key_update(struct kts *c);
void kts_softtx_idle(struct kts *c);
void kts_softtx_wipe(struct kts *c);
void kts_softtx_free(struct kts *c);
/* With OpenSSL released (softrx.c): start sealing now, keyed for good, with
 * the TX keys k if known (takeover); seal one record of type into the send
 * queue (send); move to the next TLS 1.3 key once our KeyUpdate is queued
 * (rekey). */
int kts_softtx_takeover(struct kts *c, const struct kts_dir_keys *k);
int kts_softtx_send(struct kts *c, unsigned char type, const unsigned char *p, size_t len);
int kts_softtx_rekey(struct kts *c);

/* softrx.c: userspace RX opened by kts, so that a server with caller-owned
 * I/O can free OpenSSL once a connection goes quiet (kts_shrink,
 * kts_config_set_release_openssl). may: whether this connection can (both
 * directions in userspace, TX sealed by kts, nothing held by OpenSSL).
 * prepare: at the handoff, OpenSSL's next RX record is seq; from then on
 * read_counted (a record OpenSSL read) and peer_moved (a TLS 1.3 KeyUpdate
 * it read) follow it. recv: n received bytes in buf (of cap): plaintext
 * left in buf, as kts_recv_done. read: from the receive queue, as kts_read.
 * key_update: the peer's TLS 1.3 KeyUpdate message, once kts reads.
 * pending: plaintext opened, unread. */
int kts_softrx_may(const struct kts *c);
void kts_softrx_prepare(struct kts *c, uint64_t seq);
void kts_softrx_read_counted(struct kts *c);
void kts_softrx_peer_moved(struct kts *c);
ssize_t kts_softrx_recv(struct kts *c, unsigned char *buf, size_t cap, size_t n);
ssize_t kts_softrx_read(struct kts *c, unsigned char *buf, size_t len);
int kts_softrx_key_update(struct kts *c, const unsigned char *msg, size_t len);
size_t kts_softrx_pending(const struct kts *c);
void kts_softrx_wipe(struct kts *c);
void kts_softrx_free(struct kts *c);

/* conn.c: what a kernel TX call for want bytes returned (n, or -1 and err),
 * checked against the socket's state as kts_write documents. */
ssize_t kts_kernel_tx_result(struct kts *c, ssize_t n, int err, size_t want, const char *what);

/* error.c: set the message and return code (a negative KTS_ERR_*). */
int kts_fail(struct kts *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like kts_fail, and the connection is dead: later calls return the same code. */
int kts_fail_fatal(struct kts *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int kts_config_fail(struct kts_config *cfg, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The most useful line of OpenSSL's error queue (and clear the queue); "" if empty. */
const char *kts_ssl_reason(char *buf, size_t len);
/* Map the result of an SSL_* call to a kts code, setting c's message. what names
 * the operation ("handshake", "read"). Returns 0 for a clean close_notify. */
int kts_ssl_result(struct kts *c, int ret, const char *what);
/* The external session store (sessstore.c): hand it a new session, or the
 * ID of one OpenSSL dropped. */
void kts_store_put(struct kts_config *cfg, const unsigned char *id, size_t id_len,
		   const unsigned char *der, size_t len);
void kts_store_del(struct kts_config *cfg, const unsigned char *id, size_t id_len);

/* config.c: drop a reference; the last one frees. */
void kts_config_release(struct kts_config *cfg);

/* handshake.c: want_secrets collects the TLS 1.3 traffic secrets (key log);
 * the ClientHello callback (also the session store's) is set once. */
void kts_handshake_callbacks(struct kts_config *cfg, int want_secrets);
/* May this ClientHello end in TLS 1.3 (it offers it and we allow it)? */
int kts_hello_may_be_tls13(SSL *ssl);
/* sessstore.c: the session store's part of the ClientHello callback. */
int kts_store_hello(SSL *ssl, struct kts *c, struct kts_config *cfg);
void kts_conn_callbacks(struct kts *c);

/* handoff.c: after the handshake, move what the kernel can take.
 * reason_drop: forget why dir stays in userspace (the directions may share
 * one string). */
int kts_handoff(struct kts *c);
/* Free the SSL of a server connection that no longer needs it: the kernel
 * owns both directions, or kts does (softrx.c). */
void kts_release_openssl(struct kts *c);
/* Whether the connection still needs its SSL: ticket app data lives there. */
int kts_needs_openssl(const struct kts *c);
/* Without the tls module, attaching the ULP fails alike on every socket
 * (and the kernel may run modprobe each time): after a failure at now, the
 * connections of the config skip the attempt for KTS_ULP_RETRY_S, so a
 * module loaded later is still found. */
#define KTS_ULP_RETRY_S 10
int kts_ulp_should_try(struct kts_config *cfg, long now);
void kts_ulp_missing(struct kts_config *cfg, long now);
/* The record keys of both directions ([KTS_TX], [KTS_RX]) of a TLS 1.2
 * connection, from its master secret. Returns 0 or -1. */
int kts_tls12_conn_keys(struct kts *c, const char *digest, enum kts_aead aead,
			struct kts_dir_keys k[2]);
void kts_reason_drop(struct kts *c, int dir);

/* server_session.c: tickets, ticket keys, session ID context, lifetime.
 * init runs in kts_config_new (callbacks on cfg->ctx, random session ID
 * context); free in kts_config_free (zeroes every key). */
int kts_server_resumption_init(struct kts_config *cfg);
void kts_server_resumption_free(struct kts_config *cfg);

/* session_file.c: client session files. offer runs before a client's first
 * handshake step: it loads the file (if any) into c->ssl. */
int kts_client_session_offer(struct kts *c);

/* sesscache.c: the shared TLS 1.2 session-ID cache. */
void kts_sess_cache_free(struct kts_sess_cache *cache);

#endif
