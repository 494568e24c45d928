/* status.c - the control socket's `status` answer: kts-server's counters
 * (stats.h) and ticket keys as JSON, summed over its processes and for each.
 * ktsctl(8) lists the members. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

static json_t *u64(uint64_t v)
{
	return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static int by_count(const void *a, const void *b)
{
	uint64_t x = ((const struct stats_reason *)a)->n, y = ((const struct stats_reason *)b)->n;

	return x < y ? 1 : x > y ? -1 : 0;
}

/* {"kernel": N, "userspace": N, "reasons": [{"reason", "count"}, ...]},
 * the most common reason first. */
static json_t *direction(const struct stats_proc *p, int d)
{
	struct stats_reason r[STATS_REASONS];
	uint32_t n = p->nreasons[d] < STATS_REASONS ? p->nreasons[d] : STATS_REASONS;
	json_t *list = json_array();

	memcpy(r, p->reasons[d], n * sizeof(r[0]));
	qsort(r, n, sizeof(r[0]), by_count);
	for (uint32_t i = 0; i < n; i++)
		json_array_append_new(list, json_pack("{s:o, s:o}", "reason", control_text(r[i].text),
						      "count", u64(r[i].n)));
	if (p->reasons_other[d])
		json_array_append_new(list, json_pack("{s:s, s:o}", "reason", "(other reasons)",
						      "count", u64(p->reasons_other[d])));
	return json_pack("{s:o, s:o, s:o}", "kernel", u64(p->offload[d][STATS_KERNEL]), "userspace",
			 u64(p->offload[d][STATS_USER]), "reasons", list);
}

/* add's members into obj; add is released. */
static void merge(json_t *obj, json_t *add)
{
	if (obj && add)
		json_object_update(obj, add);
	json_decref(add);
}

/* A copy of p to read at leisure (its processes go on counting), or of the
 * sum of several (stats_fold more into it). NULL when out of memory. */
static struct stats_proc *snapshot(const struct stats_proc *p)
{
	struct stats_proc *s = calloc(1, sizeof(*s));

	if (s) {
		stats_claim(s, getpid());
		if (p)
			stats_fold(s, p);
	}
	return s;
}

static void snapshot_free(struct stats_proc *s)
{
	if (s)
		pthread_mutex_destroy(&s->reason_lock);
	free(s);
}

/* The counters of a snapshot. */
static void counters(json_t *obj, const struct stats_proc *p, int64_t open)
{
	if (p->session_store[0] | p->session_store[1] | p->session_store[2] | p->session_store[3])
		json_object_set_new(obj, "session_store",
				    json_pack("{s:o, s:o, s:o, s:o}", "hits", u64(p->session_store[0]),
					      "misses", u64(p->session_store[1]), "failed",
					      u64(p->session_store[2]), "dropped",
					      u64(p->session_store[3])));
	merge(obj,
		json_pack("{s:{s:I, s:o, s:o, s:o}, s:{s:o, s:o, s:o}, s:{s:o, s:o}, s:{s:o, s:o}}",
			  "connections", "open", (json_int_t)open, "total", u64(p->conns_total),
			  "refused", u64(p->refused), "openssl_freed", u64(p->openssl_freed),
			  "handshakes", "full", u64(p->hs_full),
			  "resumed", u64(p->hs_resumed), "failed", u64(p->hs_failed), "offload",
			  "tx", direction(p, KTS_TX), "rx", direction(p, KTS_RX), "bytes_sent",
			  "kernel", u64(p->sent[STATS_KERNEL]), "userspace",
			  u64(p->sent[STATS_USER])));
}

/* The key set a process holds, with each key's state now. */
static json_t *ticket_keys(const struct server *srv, const struct stats_proc *p, int64_t now)
{
	struct stats_keys *k = malloc(sizeof(*k));
	json_t *list = json_array(), *out;
	int seal;

	if (!k || !list) {
		free(k);
		json_decref(list);
		return NULL;
	}
	stats_keys_read(p, k);
	seal = kts_ticket_keys_encrypting(k->keys, k->n, now);
	for (uint32_t i = 0; i < k->n; i++) {
		const struct kts_ticket_key *t = &k->keys[i];
		enum kts_ticket_key_state s = kts_ticket_key_state(t, now);

		/* An active key that another one supersedes acts as retired. */
		if (s == KTS_KEY_ACTIVE && (int)i != seal)
			s = KTS_KEY_RETIRED;
		json_array_append_new(list, json_pack("{s:I, s:s, s:b, s:I, s:I, s:I}", "keyrev",
						      (json_int_t)t->keyrev, "state",
						      kts_ticket_key_state_name(s), "seals",
						      (int)i == seal, "encrypt_from",
						      (json_int_t)t->encrypt_from, "encrypt_until",
						      (json_int_t)t->encrypt_until, "decrypt_until",
						      (json_int_t)t->decrypt_until));
	}
	out = json_pack("{s:o, s:o}", "file", control_text(srv->keys.path), "keys", list);
	if (out && srv->keys.path) { /* what ktsctl keys sync last did (fleetcmd.h) */
		char sync[4200];
		json_t *st;

		snprintf(sync, sizeof(sync), "%s.sync", srv->keys.path);
		if ((st = json_load_file(sync, 0, NULL)) && json_is_object(st))
			json_object_set_new(out, "sync", st);
		else
			json_decref(st);
	}
	if (out && k->tried)
		json_object_set_new(out, "last_load",
				    json_pack("{s:I, s:b, s:o}", "time", (json_int_t)k->tried, "ok",
					      k->ok, "message", control_text(k->msg)));
	free(k);
	return out;
}

static json_t *process(const struct server *srv, const struct stats_proc *p, const char *role,
		       int64_t now)
{
	json_t *o = json_pack("{s:I, s:s, s:I, s:I}", "pid", (json_int_t)p->pid, "role", role,
			      "started", (json_int_t)p->started, "uptime_s",
			      (json_int_t)(now - p->started));
	struct stats_proc *s = snapshot(p);

	if (o && s) {
		counters(o, s, __atomic_load_n(&p->conns_open, __ATOMIC_RELAXED));
		json_object_set_new(o, "ticket_keys", ticket_keys(srv, p, now));
	}
	snapshot_free(s);
	return o;
}

json_t *server_status(const struct server *srv)
{
	int64_t now = (int64_t)time(NULL), open = 0;
	int n = srv->workers > 1 ? 1 + srv->workers : 1;
	struct stats_proc *sum = snapshot(NULL);
	json_t *j = control_ok(), *procs = json_array();

	if (!sum || !j || !procs) {
		snapshot_free(sum);
		json_decref(j);
		json_decref(procs);
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		const struct stats_proc *p = &srv->stats[i];

		if (!__atomic_load_n(&p->pid, __ATOMIC_ACQUIRE))
			continue; /* a worker being restarted */
		stats_fold(sum, p);
		open += __atomic_load_n(&p->conns_open, __ATOMIC_RELAXED);
		if (i > 0 || n == 1)
			json_array_append_new(procs, process(srv, p, n == 1 ? "server" : "worker",
							     now));
	}
	merge(j, json_pack("{s:I, s:I, s:I, s:s, s:i, s:i, s:s, s:i}", "pid",
					(json_int_t)getpid(), "started", (json_int_t)srv->started,
					"uptime_s", (json_int_t)(now - srv->started), "engine",
					srv->engine == ENGINE_URING ? "uring" : "threads", "threads",
					srv->engine == ENGINE_URING ? srv->threads : 0, "workers",
					srv->workers > 1 ? srv->workers : 0, "listen",
					srv->listen_addr, "max_conn", srv->max_conn));
	counters(j, sum, open);
	json_object_set_new(j, "ticket_keys", ticket_keys(srv, srv->me, now));
	json_object_set_new(j, "processes", procs);
	snapshot_free(sum);
	return j;
}
