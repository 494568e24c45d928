/* sessredis.h - kts-server's TLS 1.2 session store in the fleet's Redis
 * (--session-store URL --kek FILE), behind kts_config_set_session_store.
 *
 * Each serving process runs one store thread with its own Redis connection;
 * handshakes never wait on Redis themselves: puts and deletes are queued,
 * lookups are queued and answered through a callback (on the store thread),
 * and the engine gives up on an answer after SESSREDIS_WAIT_MS (a full
 * handshake). With Redis away, lookups are answered "none" at once and the
 * thread reconnects at most once a second, each attempt bounded like a
 * command (200 ms). At a stop, what is queued is answered "none" or dropped. Entries are envelopes (envelope.h)
 * under the fleet's KEK, purpose "session <hex id>" (an entry cannot be moved
 * to another ID), key kts:NAME:sess:<hex id>, expiring by Redis TTL = the
 * session lifetime. */
#ifndef KTS_TOOLS_SESSREDIS_H
#define KTS_TOOLS_SESSREDIS_H

#include <kts.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"
#include "store.h"

#define SESSREDIS_WAIT_MS 250  /* a handshake waits this long for the store */
#define SESSREDIS_QUEUE 4096   /* queued operations; beyond, puts are dropped */

struct sessredis;

/* A lookup's answer: der[0, len) (len 0: none). Runs on the store thread. */
typedef void (*sessredis_done_fn)(void *arg, uint64_t token, const unsigned char *der, size_t len);

/* What the store thread counts (atomically) for the status, once per
 * lookup: answered with a session, with none, failed (Redis away or too
 * slow, or a full queue); puts dropped (queue full, or Redis away). A
 * lookup the handshake stopped waiting for counts by what Redis said. */
enum sessredis_counter { SESSREDIS_HITS, SESSREDIS_MISSES, SESSREDIS_FAILED, SESSREDIS_DROPPED,
			 SESSREDIS_COUNTERS };

/* Start the store thread (it connects by itself), counting in counters.
 * NULL with why in err. */
struct sessredis *sessredis_start(const struct store_url *u, const struct kek *k,
				  uint64_t counters[SESSREDIS_COUNTERS], char *err, size_t errlen);
void sessredis_stop(struct sessredis *r);

/* Queue a lookup of id; done(arg, token, ...) follows, always exactly once. */
void sessredis_get(struct sessredis *r, const unsigned char *id, size_t id_len,
		   sessredis_done_fn done, void *arg, uint64_t token);

/* The same, waiting up to SESSREDIS_WAIT_MS: copies into der (cap bytes)
 * and returns the length, 0 for none or no answer in time. */
size_t sessredis_get_wait(struct sessredis *r, const unsigned char *id, size_t id_len,
			  unsigned char *der, size_t cap);

/* The kts_session_store whose put and del queue to *rp: the config is made
 * before the processes fork, each sets *rp to its own store. */
struct kts_session_store sessredis_ops(struct sessredis **rp);

#endif
