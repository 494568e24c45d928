/* filewatch.c - see filewatch.h. */
#include "filewatch.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int filewatch_open(struct filewatch *fw, const char *path, char *err, size_t errlen)
{
	char *real = realpath(path, NULL), *slash;

	fw->fd = -1;
	if (!real) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	slash = strrchr(real, '/'); /* realpath gives an absolute path */
	if (snprintf(fw->name, sizeof(fw->name), "%s", slash + 1) >= (int)sizeof(fw->name)) {
		snprintf(err, errlen, "%s: file name too long to watch", path);
		free(real);
		return -1;
	}
	if (slash == real)
		slash++; /* the root directory */
	*slash = '\0';
	fw->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fw->fd < 0 ||
	    inotify_add_watch(fw->fd, real, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		snprintf(err, errlen, "watching %s: %s", real, strerror(errno));
		if (fw->fd >= 0)
			close(fw->fd);
		fw->fd = -1;
		free(real);
		return -1;
	}
	free(real);
	return 0;
}

int filewatch_changed(struct filewatch *fw)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	int hit = 0;
	ssize_t n;

	if (fw->fd < 0)
		return 0;
	while ((n = read(fw->fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)(void *)p;

			if ((ev->mask & IN_Q_OVERFLOW) || (ev->len && strcmp(ev->name, fw->name) == 0))
				hit = 1;
			p += sizeof(*ev) + ev->len;
		}
	}
	return hit;
}

void filewatch_close(struct filewatch *fw)
{
	if (fw->fd >= 0)
		close(fw->fd);
	fw->fd = -1;
}
