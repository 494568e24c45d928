/* fsroot.c - open files strictly beneath a document root (kts-server).
 *
 * openat2(RESOLVE_BENEATH) lets the kernel refuse any path that leaves the root,
 * including through symbolic links ("..", absolute targets, /proc magic links).
 * Where openat2 is missing (Linux < 5.6), the file is opened normally and its
 * final path (/proc/self/fd) must lie inside the root's canonical path. */
#include "fsroot.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

int fsroot_init(struct fsroot *r, const char *dir, char *err, size_t errlen)
{
	const char *env = getenv("KTS_SERVER_NO_OPENAT2");

	memset(r, 0, sizeof(*r));
	r->no_openat2 = env && *env && strcmp(env, "0") != 0;
	if (!realpath(dir, r->real)) {
		snprintf(err, errlen, "--root %s: %s", dir, strerror(errno));
		return -1;
	}
	r->fd = open(r->real, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->fd < 0) {
		snprintf(err, errlen, "--root %s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

void fsroot_fini(struct fsroot *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
}

static int errno_status(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
	case ENAMETOOLONG:
		return -404;
	case EXDEV:  /* openat2: the path left the root */
	case ELOOP:
	case EACCES:
	case EPERM:
		return -403;
	default:
		return -500;
	}
}

/* Fallback: is the opened fd inside the root? */
static int inside_root(const struct fsroot *r, int fd)
{
	char link[64], path[PATH_MAX];
	size_t rl = strlen(r->real);
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n < 0 || (size_t)n >= sizeof(path) - 1)
		return 0; /* cannot tell: refuse */
	path[n] = '\0';
	if (strcmp(path, r->real) == 0)
		return 1;
	if (rl == 1) /* root is "/" */
		return path[0] == '/';
	return strncmp(path, r->real, rl) == 0 && path[rl] == '/';
}

static int open_beneath(const struct fsroot *r, const char *rel)
{
	const char *p = rel[0] ? rel : ".";
	int fd;

	if (!r->no_openat2) {
		struct open_how how;

		memset(&how, 0, sizeof(how));
		how.flags = OPEN_FLAGS;
		how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
		fd = (int)syscall(SYS_openat2, r->fd, p, &how, sizeof(how));
		if (fd >= 0 || errno != ENOSYS)
			return fd < 0 ? errno_status(errno) : fd;
	}
	fd = openat(r->fd, p, OPEN_FLAGS);
	if (fd < 0)
		return errno_status(errno);
	if (!inside_root(r, fd)) {
		close(fd);
		return -403;
	}
	return fd;
}

/* rel's index.html, if it is a regular file: its fd, or a negative status. */
static int open_index(const struct fsroot *r, const char *rel, struct stat *st)
{
	char idx[PATH_MAX];
	int fd;

	if ((size_t)snprintf(idx, sizeof(idx), "%s%sindex.html", rel, rel[0] ? "/" : "") >=
	    sizeof(idx))
		return -404;
	fd = open_beneath(r, idx);
	if (fd < 0)
		return fd == -403 ? -403 : -404;
	if (fstat(fd, st) < 0) {
		close(fd);
		return -500;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return -404;
	}
	return fd;
}

int fsroot_open(const struct fsroot *r, const char *rel, int dir_only, struct stat *st,
		const char **name)
{
	int fd, idx = 0, tried = 0;

	*name = rel;
	/* "/" or "/docs/" most often names a directory with an index: open that
	 * at once and skip opening the directory (what nginx's index does). A
	 * miss takes the full path below for the exact answer. */
	if (dir_only || !rel[0]) {
		idx = open_index(r, rel, st);
		tried = 1;
		if (idx >= 0 || idx == -403)
			goto index;
	}
	fd = open_beneath(r, rel);
	if (fd < 0)
		return fd;
	if (fstat(fd, st) < 0) {
		close(fd);
		return -500;
	}
	if (S_ISDIR(st->st_mode)) {
		close(fd);
		if (!tried) /* "/docs" without the slash */
			idx = open_index(r, rel, st);
		goto index;
	}
	/* "/file.txt/" names no directory; a FIFO or device is no file to serve. */
	if (dir_only || !S_ISREG(st->st_mode)) {
		close(fd);
		return -404;
	}
	return fd;
index:
	if (idx >= 0)
		*name = "index.html";
	return idx;
}
