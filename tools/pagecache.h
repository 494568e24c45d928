/* pagecache.h - whether a file range is in the page cache (cachestat(2)),
 * so an event loop can read it without waiting for the disk. */
#ifndef KTS_TOOLS_PAGECACHE_H
#define KTS_TOOLS_PAGECACHE_H

#include <stddef.h>
#include <sys/types.h>

/* 1 when every page of [off, off + len) of fd is cached, 0 when some is not,
 * or when the kernel cannot say (cachestat is Linux 6.5 and later). */
int pagecache_has(int fd, off_t off, size_t len);

#endif
