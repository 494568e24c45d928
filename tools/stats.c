/* stats.c - kts-server's shared counters; see stats.h. */
#include "stats.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define ADD(field, v) __atomic_fetch_add(&(field), (v), __ATOMIC_RELAXED)

uint64_t stats_get(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

struct stats_proc *stats_new(int nproc)
{
	size_t len = (size_t)nproc * sizeof(struct stats_proc);
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return m == MAP_FAILED ? NULL : m; /* zero-filled */
}

void stats_claim(struct stats_proc *p, pid_t pid)
{
	pthread_mutexattr_t a;

	memset(p, 0, sizeof(*p));
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&p->reason_lock, &a);
	pthread_mutexattr_destroy(&a);
	p->started = (int64_t)time(NULL);
	__atomic_store_n(&p->pid, pid, __ATOMIC_RELEASE);
}

void stats_conn_open(struct stats_proc *p)
{
	ADD(p->conns_open, 1);
	ADD(p->conns_total, 1);
}

void stats_conn_close(struct stats_proc *p)
{
	ADD(p->conns_open, -1);
}

void stats_refused(struct stats_proc *p)
{
	ADD(p->refused, 1);
}

void stats_handshake_failed(struct stats_proc *p)
{
	ADD(p->hs_failed, 1);
}

void stats_sent(struct stats_proc *p, enum stats_path path, uint64_t n)
{
	ADD(p->sent[path], n);
}

/* Count one more of reason in direction d: its entry, a new one, or other. */
static void add_reason(struct stats_proc *p, int d, const char *reason, uint64_t n)
{
	uint32_t have;

	pthread_mutex_lock(&p->reason_lock);
	have = p->nreasons[d];
	for (uint32_t i = 0; i < have; i++)
		if (strcmp(p->reasons[d][i].text, reason) == 0) {
			ADD(p->reasons[d][i].n, n);
			goto out;
		}
	if (have == STATS_REASONS) {
		ADD(p->reasons_other[d], n);
		goto out;
	}
	snprintf(p->reasons[d][have].text, STATS_REASON_LEN, "%s", reason);
	p->reasons[d][have].n = n;
	__atomic_store_n(&p->nreasons[d], have + 1, __ATOMIC_RELEASE); /* text first */
out:
	pthread_mutex_unlock(&p->reason_lock);
}

void stats_openssl_freed(struct stats_proc *p)
{
	ADD(p->openssl_freed, 1);
}

void stats_handshake(struct stats_proc *p, const struct kts *c)
{
	ADD(*(kts_session_resumed(c) ? &p->hs_resumed : &p->hs_full), 1);
	if (!kts_ssl(c))
		ADD(p->openssl_freed, 1); /* at the handoff: the kernel owns both ways */
	for (int d = 0; d < 2; d++) {
		int path = kts_offload(c, (enum kts_dir)d);
		const char *why;

		if (path == KTS_PATH_KERNEL) {
			ADD(p->offload[d][STATS_KERNEL], 1);
		} else if (path == KTS_PATH_USER) {
			ADD(p->offload[d][STATS_USER], 1);
			why = kts_offload_reason(c, (enum kts_dir)d);
			add_reason(p, d, why && *why ? why : "unknown", 1);
		}
	}
}

void stats_fold(struct stats_proc *into, const struct stats_proc *from)
{
	ADD(into->conns_total, stats_get(&from->conns_total));
	ADD(into->refused, stats_get(&from->refused));
	ADD(into->openssl_freed, stats_get(&from->openssl_freed));
	ADD(into->hs_full, stats_get(&from->hs_full));
	ADD(into->hs_resumed, stats_get(&from->hs_resumed));
	ADD(into->hs_failed, stats_get(&from->hs_failed));
	for (int d = 0; d < 2; d++) {
		uint32_t n = __atomic_load_n(&from->nreasons[d], __ATOMIC_ACQUIRE);

		for (int i = 0; i < STATS_PATHS; i++)
			ADD(into->offload[d][i], stats_get(&from->offload[d][i]));
		for (uint32_t i = 0; i < n && i < STATS_REASONS; i++)
			add_reason(into, d, from->reasons[d][i].text,
				   stats_get(&from->reasons[d][i].n));
		ADD(into->reasons_other[d], stats_get(&from->reasons_other[d]));
	}
	for (int i = 0; i < STATS_PATHS; i++)
		ADD(into->sent[i], stats_get(&from->sent[i]));
	for (int i = 0; i < 4; i++)
		ADD(into->session_store[i], stats_get(&from->session_store[i]));
}

/* Write k into p's key set behind the sequence count. */
static void keys_write(struct stats_proc *p, const struct stats_keys *k)
{
	uint32_t seq = p->keys_seq;

	__atomic_store_n(&p->keys_seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(&p->keys, k, sizeof(*k));
	__atomic_store_n(&p->keys_seq, seq + 2, __ATOMIC_RELEASE);
}

void stats_keys_publish(struct stats_proc *p, const struct keyfile *kf, int ok, const char *msg)
{
	struct stats_keys *k = calloc(1, sizeof(*k));

	if (!k)
		return; /* the status shows the set before */
	k->tried = (int64_t)time(NULL);
	k->ok = ok;
	snprintf(k->msg, sizeof(k->msg), "%s", msg);
	k->n = (uint32_t)kf->n;
	memcpy(k->keys, kf->keys, kf->n * sizeof(kf->keys[0]));
	keys_write(p, k);
	free(k);
}

void stats_keys_copy(struct stats_proc *p, const struct stats_proc *from)
{
	struct stats_keys *k = malloc(sizeof(*k));

	if (!k)
		return;
	stats_keys_read(from, k);
	keys_write(p, k);
	free(k);
}

void stats_keys_read(const struct stats_proc *p, struct stats_keys *out)
{
	/* Bounded: a writer killed half-way leaves the count odd for good. */
	for (int tries = 0; tries < 1000; tries++) {
		uint32_t a = __atomic_load_n(&p->keys_seq, __ATOMIC_ACQUIRE), b;

		if (a & 1) {
			sched_yield();
			continue;
		}
		memcpy(out, &p->keys, sizeof(*out));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		b = __atomic_load_n(&p->keys_seq, __ATOMIC_RELAXED);
		if (a == b) {
			if (out->n > KTS_TICKET_KEYSET_MAX)
				out->n = KTS_TICKET_KEYSET_MAX;
			return;
		}
	}
	memset(out, 0, sizeof(*out));
	snprintf(out->msg, sizeof(out->msg), "key set being written: try again");
}
