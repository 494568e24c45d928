/* httpsess.h - one HTTP/1.1 connection of kts-server as a state machine over
 * plaintext: the engine hands in the bytes it received and the time, asks what
 * to do next, and reports when an answer went out. No sockets, TLS or rings
 * here (the engine does those); the behaviour is the threads engine's serve()
 * in kts-server.c: keep-alive, pipelining, bodies read and dropped, the same
 * status codes and deadlines, the same log lines (in note). */
#ifndef KTS_TOOLS_HTTPSESS_H
#define KTS_TOOLS_HTTPSESS_H

#include <stddef.h>
#include <stdint.h>

#include "deadline.h"
#include "fsroot.h"
#include "http.h"

#define HS_HEAD_LIMIT (16 * 1024)      /* request head limit: larger gets 431 */
#define HS_DISCARD_LIMIT (1024 * 1024) /* request bodies read and dropped */

/* Plaintext kept while an answer goes out (pipelined requests): more is a
 * client that does not read its answers. */
#define HS_INPUT_MAX (256 * 1024)
/* The input buffer starts this small (most request heads fit) and doubles. */
#define HS_INPUT_FIRST 1024
/* An answer's head: ours are under 400 bytes. 1024 keeps the buffer in
 * glibc's per-thread cache (tcache) as it comes and goes per request. */
#define HS_OUT_SIZE 1024

struct hs_cfg {
	const struct fsroot *root;
	int64_t timeout_ms; /* request deadline, idle time between requests */
	int timeout_s;      /* the same, for log lines */
};

enum hs_do {
	HS_READ,  /* wait for input until httpsess_deadline() */
	HS_SEND,  /* send the answer (struct hs_reply), then httpsess_sent() */
	HS_CLOSE, /* end cleanly: close_notify, lingering close */
	HS_ABORT, /* end at once */
};

/* An answer: head bytes, then size bytes of fd from offset 0 (fd -1: none;
 * size 0 for HEAD, whose file is open all the same). Valid until
 * httpsess_sent(); the session owns fd until httpsess_take_file(). */
struct hs_reply {
	const char *head;
	size_t head_len;
	int fd;
	long long size;
};

enum hs_state { HS_ST_IDLE, HS_ST_HEAD, HS_ST_BODY, HS_ST_REPLY, HS_ST_END };

struct httpsess {
	const struct hs_cfg *cfg;
	char *in; /* received, not yet used */
	size_t have, cap;
	struct deadline dl; /* the wait for input */
	long long body_len, body_left;
	enum hs_state st;
	int close_after;
	int client_ends; /* set with close_after when the client asked to close */
	struct hs_reply reply;
	/* Both on the heap only while used: an idle connection holds neither. */
	char *out;  /* HS_OUT_SIZE: the answer's head (and a short body) */
	char *note; /* a log line for the engine (NULL none): "error: ..." */
};

void httpsess_init(struct httpsess *s, const struct hs_cfg *cfg, int64_t now);
void httpsess_free(struct httpsess *s);

/* The log line the last call left (NULL: none); the caller logs it, then
 * httpsess_note_clear(). */
void httpsess_note_clear(struct httpsess *s);

/* The connection is ready (handshake done): the wait for a request starts now. */
void httpsess_start(struct httpsess *s, int64_t now);

/* Received plaintext. Returns 0, or -1 (note set) when over HS_INPUT_MAX or
 * out of memory: end the connection. */
int httpsess_input(struct httpsess *s, const void *p, size_t n, int64_t now);

/* Should a receive be armed? (Not while answers are owed for plenty of input.) */
int httpsess_wants_input(const struct httpsess *s);

/* The next step (stopping: the server stops, answer nothing new). HS_SEND
 * fills *r. */
enum hs_do httpsess_next(struct httpsess *s, int64_t now, int stopping, struct hs_reply *r);

/* The engine takes the file of the answer HS_SEND gave: it closes it, the
 * session no longer does (the answer it holds has no file from now on). */
int httpsess_take_file(struct httpsess *s);

/* The answer of HS_SEND went out whole. */
void httpsess_sent(struct httpsess *s, int64_t now);

/* The deadline of HS_READ. */
const struct deadline *httpsess_deadline(const struct httpsess *s);

/* The answer of HS_SEND is the session's last: HS_CLOSE follows it. */
int httpsess_last_reply(const struct httpsess *s);

/* The HS_READ deadline passed: HS_SEND (a 408, note set), HS_CLOSE, or
 * HS_ABORT when out of memory. */
enum hs_do httpsess_timeout(struct httpsess *s, struct hs_reply *r);

/* The input ended: at close_notify (clean) HS_CLOSE, else HS_ABORT; note may
 * be set. */
enum hs_do httpsess_input_end(struct httpsess *s, int clean);

/* The session ended after a request that asked to close, with nothing
 * received after it: the client sends no more, so no lingering close is owed
 * for its sake (the engine still checks the socket for unread bytes). */
int httpsess_client_done(const struct httpsess *s);

/* Between requests with nothing received (a client leaving now is no error). */
int httpsess_between(const struct httpsess *s);

/* Waiting for a request (or its head): a stop may cut the connection. */
int httpsess_idle(const struct httpsess *s);

#endif
