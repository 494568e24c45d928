/* server.h - what kts-server's process loop and its engines share: the
 * server's settings and counters, logging, refusals. An engine (threads,
 * io_uring) moves connections; the process loop (signals, ticket keys) is the
 * same for both. */
#ifndef KTS_TOOLS_SERVER_H
#define KTS_TOOLS_SERVER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"
#include "control.h"
#include "fsroot.h"
#include "httpsess.h"
#include "filewatch.h"
#include "keyfile.h"
#include "ratelimit.h"
#include "sessredis.h"
#include "stats.h"

#define PROG "kts-server"
#define HEAD_LIMIT HS_HEAD_LIMIT
#define DISCARD_LIMIT HS_DISCARD_LIMIT
#define STOP_GRACE_MS 10000         /* how long a stop waits for busy connections */
#define STOP_CUT_MS 2000            /* ... then how long after cutting every connection */
#define SEND_MIN_PROGRESS (16 * 1024) /* a send moves a full TLS record per --timeout, or fails */
#define LINGER_MAX_MS 2000          /* lingering close: at most this long (and --timeout) ... */
#define LINGER_QUIET_MS 250         /* ... and until the client is silent this long */

enum engine_kind { ENGINE_URING, ENGINE_THREADS };

/* Does the socket hold bytes the client sent that nobody read (or can it not
 * tell)? Closing it then would answer with a reset at once: linger instead. */
int sock_has_unread(int fd);

/* How a process stops: SIGINT/SIGTERM, SIGUSR1 (the control socket's drain),
 * SIGUSR2 (its stop). */
enum stop_mode {
	STOP_GRACEFUL = 1, /* busy connections get STOP_GRACE_MS, then STOP_CUT_MS */
	STOP_DRAIN,        /* busy connections finish, however long (--timeout bounds each) */
	STOP_NOW,          /* every connection is closed at once */
};

struct conn;

struct server {
	struct kts_config *cfg;
	struct keyfile keys;
	struct filewatch keywatch; /* the --ticket-keys file (not in workers) */
	struct fsroot root;
	int timeout_s;
	int64_t timeout_ms;
	int reasons;
	int quiet;         /* --quiet: no status line per connection */
	int max_conn;
	int shared_listen; /* --workers: other processes accept on the socket too */
	int worker;        /* this process is a worker: its parent watches the keys */
	enum engine_kind engine;
	int threads;       /* --threads: rings (uring engine) */
	int workers;       /* --workers (1: none, this process serves) */
	char listen_addr[ADDR_PEER_MAX];
	int64_t started;   /* wall clock */
	struct control ctl; /* --control (not in workers) */
	/* stats[0]: this process or the supervisor (which adds there what ended
	 * workers counted); stats[1 + i]: worker i. me: this process's. */
	struct stats_proc *stats, *me;
	/* --session-store: the URL and KEK, and each serving process's own
	 * store thread (started after the fork; none in the supervisor). */
	struct store_url store_url;
	struct kek kek;
	int has_store;
	struct sessredis *sessstore;
	int wake_fd; /* eventfd: a slot was freed while all were taken */
	struct ratelimit refusals; /* under lock */
	pthread_mutex_t lock;
	struct conn **slots;
	int active;
	int stopping;
	/* Connection threads are reused: one that has served its connection waits
	 * for the next (a thread per connection would cost a clone and an exit each,
	 * about a tenth of a resumed handshake's CPU). */
	pthread_cond_t work;  /* signalled when a connection is queued */
	struct conn *queue;   /* accepted connections waiting for an idle thread */
	int waiting;          /* idle threads, not counting those already claimed */
};

/* "worker PID: " in worker processes: starts every log line. */
extern char log_prefix[32];

/* One line on stderr, written with one call so lines from threads do not mix. */
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Every slot is busy: close fd and log it (rate-limited). Thread-safe. */
void server_refuse(struct server *srv, int fd, const struct sockaddr *sa, socklen_t salen);

/* The process loop: signals (SIGHUP reloads ticket keys), the control
 * socket, housekeeping and, with lfd >= 0, the threads engine's accepting.
 * Returns how to stop, at a stop signal or command. */
enum stop_mode server_loop(struct server *srv, int lfd, int sfd);

/* The answer to `status` (status.c): this process, or the supervisor and
 * every worker. */
json_t *server_status(const struct server *srv);

#endif
