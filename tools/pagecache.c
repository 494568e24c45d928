/* pagecache.c - cachestat(2) over a file range (see pagecache.h). */
#include "pagecache.h"

#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same on every architecture's common table */
#endif

/* The kernel's struct cachestat_range and struct cachestat (uapi mman.h, not
 * in older headers). */
struct kts_cachestat_range {
	uint64_t off, len;
};
struct kts_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* Whether page number index (of page bytes) of fd is cached. */
static int page_cached(int fd, uint64_t index, uint64_t page)
{
	struct kts_cachestat_range range = {.off = index * page, .len = page};
	struct kts_cachestat cs;

	return syscall(__NR_cachestat, fd, &range, &cs, 0) == 0 && cs.nr_cache == 1;
}

int pagecache_has_ends(int fd, off_t off, size_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t first, last;

	if (len == 0 || off < 0 || page <= 0)
		return 0;
	first = (uint64_t)off / (uint64_t)page;
	last = ((uint64_t)off + len - 1) / (uint64_t)page;
	return page_cached(fd, first, (uint64_t)page) &&
	       (last == first || page_cached(fd, last, (uint64_t)page));
}
