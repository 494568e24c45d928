/*
 * test_pagecache.c - pagecache_has_ends (tools/pagecache.c) on a file of the
 * build directory: out of the page cache after POSIX_FADV_DONTNEED, then
 * with only its first page, only its last, and both (readahead off, so a
 * read caches just its own pages). Skipped where the kernel has no
 * cachestat or the filesystem keeps clean pages (tmpfs).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pagecache.h"

#define PAGES 8

static long page;

static void read_page(int fd, int i)
{
	char b[1];

	assert_int_equal(pread(fd, b, 1, (off_t)i * page), 1);
}

static void test_ends(void **state)
{
	char path[] = "test_pagecache.XXXXXX", blk[4096];
	int fd = mkstemp(path);
	size_t len;

	(void)state;
	page = sysconf(_SC_PAGESIZE);
	len = (size_t)(PAGES * page);
	assert_true(fd >= 0);
	unlink(path);
	memset(blk, 'k', sizeof(blk));
	for (size_t off = 0; off < len; off += sizeof(blk))
		assert_int_equal(write(fd, blk, sizeof(blk)), (ssize_t)sizeof(blk));
	if (!pagecache_has_ends(fd, 0, len)) {
		close(fd);
		skip(); /* just written, so cached: this kernel cannot say (no cachestat) */
	}
	assert_int_equal(fdatasync(fd), 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	if (pagecache_has_ends(fd, 0, (size_t)page)) {
		close(fd);
		skip(); /* clean pages stay (tmpfs): nothing here can leave the cache */
	}
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM), 0);
	assert_false(pagecache_has_ends(fd, 0, len));

	read_page(fd, 0);
	assert_true(pagecache_has_ends(fd, 0, (size_t)page));
	assert_true(pagecache_has_ends(fd, 10, (size_t)page - 10)); /* within one page */
	assert_false(pagecache_has_ends(fd, 0, len));               /* the last is not */
	assert_false(pagecache_has_ends(fd, page, (size_t)page));

	read_page(fd, PAGES - 1);
	/* Both ends: yes, though the pages between are not (by design). */
	assert_true(pagecache_has_ends(fd, 0, len));
	assert_true(pagecache_has_ends(fd, 1, len - 1));
	assert_false(pagecache_has_ends(fd, page, len - (size_t)page)); /* from page 1 */

	assert_false(pagecache_has_ends(fd, 0, 0));
	assert_false(pagecache_has_ends(fd, -1, len));
	assert_false(pagecache_has_ends(-1, 0, len));
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ends),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
