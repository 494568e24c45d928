/* atomicfile.c - see atomicfile.h. */
#include "atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len > 0) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int atomicfile_write(const char *path, const void *data, size_t len, uid_t uid, gid_t gid,
		     char *err, size_t errlen)
{
	char dir[PATH_MAX], tmp[PATH_MAX];
	const char *step = "";
	int fd = -1, dfd = -1, rc = -1;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir) ||
	    snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	/* mkstemp makes the file 0600 whatever the umask. */
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "%s: cannot create a temporary file beside it: %s", path,
			 strerror(errno));
		return -1;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchown(fd, uid, gid) < 0)
		step = "chown";
	else if (write_all(fd, data, len) < 0)
		step = "write";
	else if (fsync(fd) < 0)
		step = "fsync";
	if (*step || close(fd) < 0) {
		snprintf(err, errlen, "%s: %s %s: %s", path, *step ? step : "close", tmp,
			 strerror(errno));
		if (*step)
			close(fd);
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) < 0) {
		snprintf(err, errlen, "%s: rename from %s: %s", path, tmp, strerror(errno));
		unlink(tmp);
		goto out;
	}
	/* The rename is durable once the directory is. */
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0) {
		snprintf(err, errlen, "%s: written, but syncing its directory failed: %s", path,
			 strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (dfd >= 0)
		close(dfd);
	return rc;
}
