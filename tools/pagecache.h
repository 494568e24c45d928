/* pagecache.h - whether a file range is in the page cache (cachestat(2)),
 * so an event loop can read it without waiting for the disk. */
#ifndef KTS_TOOLS_PAGECACHE_H
#define KTS_TOOLS_PAGECACHE_H

#include <stddef.h>
#include <sys/types.h>

/* 1 when the first and the last page of [off, off + len) of fd are cached,
 * 0 when either is not, or when the kernel cannot say (cachestat is Linux 6.5
 * and later). Only the ends: a count of every page cost the uring engine 1%
 * of its CPU per GB sent (bench/README.md), and a file read in order is
 * cached and evicted in order, so a hole between cached ends is rare. No
 * check is exact anyway (pages may go before the read): a miss costs one
 * wait for the disk, not a wrong answer. */
int pagecache_has_ends(int fd, off_t off, size_t len);

#endif
