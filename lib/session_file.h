/*
 * session_file.h - client session files: the client half of OpenSSL's
 * new-session callback, which is one slot per SSL_CTX.
 */
#ifndef KTS_SESSION_FILE_H
#define KTS_SESSION_FILE_H

#include <stdint.h>

#include <openssl/ssl.h>

/* OpenSSL's new-session callback for client connections: writes sess to the
 * config's session file if it is resumable. Returns 0 (keeps no reference).
 * kts_config_set_session_fd installs it unless the slot is taken; a callback
 * that holds the slot (the server session cache) must hand client sessions
 * (!SSL_is_server(ssl)) to it. Server connections are ignored. */
int kts_client_session_new(SSL *ssl, SSL_SESSION *sess);

/* Record in sess (its session ID context, unused by clients) the verification
 * rules of a client connection of cfg with verify flags: what the session
 * file reader compares before offering it. 0, or -1 out of memory. */
struct kts_config;
int kts_client_session_tag(const struct kts_config *cfg, int verify, SSL_SESSION *sess);

/* The session a reader takes from len bytes of session file content (the last
 * complete PEM block), or NULL. For tests and fuzzing: no file involved. */
SSL_SESSION *kts_session_file_parse(const char *buf, size_t len);

/* When sess stops resuming: made + its timeout, or its ticket's lifetime if
 * shorter (OpenSSL gives a TLS 1.3 client session its own default timeout,
 * longer than the server's, which then refuses the ticket; RFC 8446 4.6.1:
 * clients do not use a ticket past its lifetime). INT64_MAX when that is
 * past what a long holds (never), -1 for garbage times. */
int64_t kts_session_ends(SSL_SESSION *sess);

/* The session a reader takes from the session file open on fd, read under
 * the file's shared lock as connections read it (*sess NULL: none). For
 * ktsctl session. 0, or -1 and errno. */
int kts_session_file_read(int fd, SSL_SESSION **sess);

#endif
