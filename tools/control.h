/* control.h - kts-server's control socket (--control PATH), the one that
 * `ktsctl status|reload-keys|drain|stop` talks to.
 *
 * A Unix stream socket, mode 0600, that answers only root and the server's
 * own uid (SO_PEERCRED; anyone else gets an error and is logged). Protocol,
 * version 1: the client sends one line, a command, at most CONTROL_LINE_MAX
 * bytes with its "\n" (a "\r" before it is fine), within CONTROL_WAIT_MS;
 * the server answers with one JSON object on one line and closes. Every
 * answer has "kts_control": 1 and "ok" (true or false); a false one has
 * "error" saying why. Commands:
 *   status       the server's state (ktsctl(8) lists the members)
 *   reload-keys  read the --ticket-keys file again ("keys": the result)
 *   drain        stop accepting, finish every connection's work, exit
 *   stop         close every connection now, exit
 * The socket is served by the process loop, between its other events: a
 * client that sends nothing, or does not read a large answer, holds one of
 * CONTROL_CLIENTS places for at most CONTROL_WAIT_MS (each), and a busy
 * socket turns new clients away. */
#ifndef KTS_TOOLS_CONTROL_H
#define KTS_TOOLS_CONTROL_H

#include <jansson.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#define CONTROL_LINE_MAX 64
#define CONTROL_WAIT_MS 2000
#define CONTROL_CLIENTS 4
#define CONTROL_VERSION 1

enum control_cmd { CTL_STATUS, CTL_RELOAD_KEYS, CTL_DRAIN, CTL_STOP };

/* The command in buf[0, len), what a client sent so far. Returns 1 with
 * *cmd when buf holds a whole line naming a command, 0 when the line is not
 * complete yet, -1 with the problem in err (printable ASCII only) when it can
 * never be a command. */
int control_parse(const char *buf, size_t len, enum control_cmd *cmd, char *err, size_t errlen);

/* The command's name ("status", ...). */
const char *control_cmd_name(enum control_cmd cmd);

/* {"kts_control": 1, "ok": false, "error": why}; NULL when out of memory. */
json_t *control_error(const char *why);
/* A JSON string of s with every byte outside printable ASCII shown as '?'
 * (paths and log lines may hold any bytes; JSON strings must be UTF-8);
 * JSON null for NULL s; NULL when out of memory. */
json_t *control_text(const char *s);
/* {"kts_control": 1, "ok": true}; NULL when out of memory. */
json_t *control_ok(void);

struct control_client {
	int fd; /* -1: free */
	int64_t until;
	size_t len;
	char buf[CONTROL_LINE_MAX];
	char *out; /* an answer larger than the socket takes at once: the rest */
	size_t out_len, out_off;
};

struct control {
	int fd; /* -1: no --control */
	char path[108];
	struct control_client cl[CONTROL_CLIENTS];
};

/* No control socket (fd -1): the state before control_open. */
void control_init(struct control *ctl);

/* Listen on path: a stale socket there (nobody answers) is replaced; a live
 * one, or anything not a socket, is refused. 0, or -1 with why in err. */
int control_open(struct control *ctl, const char *path, char *err, size_t errlen);

/* Stop listening and remove the socket file. */
void control_close(struct control *ctl);

/* In a forked worker: close the inherited descriptors, leave the file. */
void control_forget(struct control *ctl);

/* Add the descriptors to wait on to p (room for 1 + CONTROL_CLIENTS);
 * returns how many were added. */
int control_pollfds(const struct control *ctl, struct pollfd *p);

/* Milliseconds until a waiting client's time is up (-1: none waits). */
int control_timeout_ms(const struct control *ctl, int64_t now);

/* What answers a command: a JSON object the caller owns (NULL: out of
 * memory). Called from control_serve in the process loop. */
typedef json_t *(*control_answer_fn)(void *arg, enum control_cmd cmd);

/* After poll: accept, read, answer with answer(arg, cmd), close; drop the
 * clients whose time is up. p and n: what control_pollfds added, as poll
 * left them. */
void control_serve(struct control *ctl, const struct pollfd *p, int n, control_answer_fn answer,
		   void *arg);

#endif
