/* stats.h - kts-server's counters, in memory shared by the processes of one
 * server, so that the supervisor of --workers answers `ktsctl status` for all
 * of them. One struct stats_proc per serving process: its threads (rings or
 * connection threads) add to it with relaxed atomics, any process reads it.
 * Reason strings are appended once and published by their count; the key
 * set, written by the process loop alone, sits behind a sequence count. */
#ifndef KTS_TOOLS_STATS_H
#define KTS_TOOLS_STATS_H

#include <kts.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "keyfile.h"

enum stats_path { STATS_KERNEL, STATS_USER, STATS_PATHS };

#define STATS_REASONS 8     /* distinct userspace reasons kept per direction */
#define STATS_REASON_LEN 160
#define STATS_KEYS_MSG_LEN 512

struct stats_reason {
	char text[STATS_REASON_LEN];
	uint64_t n;
};

/* The ticket keys a process holds: keyrevs and times, never bytes. */
struct stats_keys {
	int64_t tried; /* the last load or reload (0: none, no --ticket-keys) */
	int ok;        /* its result: 1 loaded, 0 refused (the keys before it stay) */
	char msg[STATS_KEYS_MSG_LEN]; /* its log line */
	uint32_t n;
	struct kts_ticket_key keys[KTS_TICKET_KEYSET_MAX]; /* key bytes zero */
};

struct stats_proc {
	pid_t pid; /* 0: no process in this slot */
	int64_t started;
	int64_t conns_open;
	uint64_t conns_total, refused;
	uint64_t openssl_freed;           /* connections that dropped OpenSSL's state */
	uint64_t hs_full, hs_resumed, hs_failed;
	uint64_t offload[2][STATS_PATHS]; /* [enum kts_dir][path] per handshake */
	uint64_t sent[STATS_PATHS];       /* response bytes, by TX path */
	uint64_t session_store[4];        /* enum sessredis_counter (--session-store) */
	uint32_t nreasons[2];             /* published entries of reasons[dir] */
	struct stats_reason reasons[2][STATS_REASONS];
	uint64_t reasons_other[2]; /* userspace handshakes whose reason found no entry */
	pthread_mutex_t reason_lock; /* appends (process-shared; readers take none) */
	uint32_t keys_seq;           /* odd while keys is written */
	struct stats_keys keys;
};

/* nproc slots in a shared anonymous mapping, for processes forked later.
 * NULL when the mapping fails. */
struct stats_proc *stats_new(int nproc);

/* Make slot p ready for process pid (a new or restarted worker). */
void stats_claim(struct stats_proc *p, pid_t pid);

void stats_conn_open(struct stats_proc *p);
void stats_conn_close(struct stats_proc *p);
void stats_refused(struct stats_proc *p);
/* A finished handshake: resumed or full, each direction's path, and the
 * reason of a direction left in userspace. */
void stats_handshake(struct stats_proc *p, const struct kts *c);
void stats_handshake_failed(struct stats_proc *p);
void stats_sent(struct stats_proc *p, enum stats_path path, uint64_t n);
/* A connection dropped OpenSSL's state while idle (kts_shrink). Those that
 * did at the handoff (kTLS both ways) count in stats_handshake. */
void stats_openssl_freed(struct stats_proc *p);

/* Add from's counters and reasons (not conns_open) into into: the sums of a
 * status, or a worker that ended kept in the supervisor's slot. */
void stats_fold(struct stats_proc *into, const struct stats_proc *from);

/* Publish the key set kf now holds and how its last load went (ok, msg). */
void stats_keys_publish(struct stats_proc *p, const struct keyfile *kf, int ok, const char *msg);
/* Publish what another process published (a worker starts with its
 * supervisor's keys). */
void stats_keys_copy(struct stats_proc *p, const struct stats_proc *from);
/* A consistent copy of p's key set. */
void stats_keys_read(const struct stats_proc *p, struct stats_keys *out);

/* Relaxed atomic read of a counter of another process. */
uint64_t stats_get(const uint64_t *v);

#endif
