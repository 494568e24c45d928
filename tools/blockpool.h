/* blockpool.h - a bounded stack of same-sized heap blocks that one thread
 * reuses (the uring engine's reply buffers and send headers), so that a
 * block freed by one connection serves the next without a malloc/free. */
#ifndef KTS_BLOCKPOOL_H
#define KTS_BLOCKPOOL_H

#include <stdlib.h>

#define BLOCKPOOL_MAX 64

struct blockpool {
	size_t size; /* every block's size */
	int cap;     /* blocks kept at most (<= BLOCKPOOL_MAX) */
	int n;
	void *v[BLOCKPOOL_MAX];
};

/* A block of pool->size bytes (from the pool, else malloc), or NULL. */
static inline void *blockpool_get(struct blockpool *pool)
{
	return pool->n > 0 ? pool->v[--pool->n] : malloc(pool->size);
}

/* Keep p for reuse, or free it when the pool is full; NULL is ignored. */
static inline void blockpool_put(struct blockpool *pool, void *p)
{
	if (p && pool->n < pool->cap)
		pool->v[pool->n++] = p;
	else
		free(p);
}

static inline void blockpool_drain(struct blockpool *pool)
{
	while (pool->n > 0)
		free(pool->v[--pool->n]);
}

#endif
