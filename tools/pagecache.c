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

int pagecache_has(int fd, off_t off, size_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t first, last;
	struct kts_cachestat_range range;
	struct kts_cachestat cs;

	if (len == 0 || off < 0 || page <= 0)
		return 0;
	/* Whole pages: the count is of pages the range touches. */
	first = (uint64_t)off / (uint64_t)page;
	last = ((uint64_t)off + len - 1) / (uint64_t)page;
	range.off = first * (uint64_t)page;
	range.len = (last - first + 1) * (uint64_t)page;
	if (syscall(__NR_cachestat, fd, &range, &cs, 0) != 0)
		return 0;
	return cs.nr_cache >= last - first + 1;
}
