/* secretfile.c - see secretfile.h. */
#include "secretfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

int secretfile_check_stat(const struct stat *st, uid_t uid, char *err, size_t errlen)
{
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "not a regular file (%s)",
			 S_ISDIR(st->st_mode)	 ? "a directory"
			 : S_ISFIFO(st->st_mode) ? "a FIFO"
			 : S_ISSOCK(st->st_mode) ? "a socket"
			 : S_ISCHR(st->st_mode)	 ? "a character device"
			 : S_ISBLK(st->st_mode)	 ? "a block device"
						 : "of another type");
		return -1;
	}
	if (uid != (uid_t)-1 && st->st_uid != uid) {
		snprintf(err, errlen, "owned by uid %u, must be owned by uid %u (the server's)",
			 (unsigned)st->st_uid, (unsigned)uid);
		return -1;
	}
	if (st->st_mode & 077) {
		snprintf(err, errlen,
			 "mode is %04o, must give group and others no access (0600 or 0400)",
			 (unsigned)(st->st_mode & 07777));
		return -1;
	}
	return 0;
}

int secretfile_read(const char *path, uid_t uid, size_t max, char **bufp, size_t *lenp,
		    struct stat *stp, char *err, size_t errlen)
{
	char why[256], *buf;
	struct stat st;
	size_t got = 0;
	int fd;

	/* O_NONBLOCK: opening a FIFO must not hang; it fails the check below. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: fstat: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (secretfile_check_stat(&st, uid, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", path, why);
		close(fd);
		return -1;
	}
	if ((size_t)st.st_size > max || !(buf = malloc(max + 1))) {
		if ((size_t)st.st_size > max)
			snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
		else
			snprintf(err, errlen, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, buf + got, max + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (got += (size_t)r) > max) {
			if (r < 0 || got > max) {
				if (r < 0)
					snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
				else
					snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
				secretfile_free(buf, got > max ? max + 1 : got);
				close(fd);
				return -1;
			}
			break;
		}
	}
	close(fd);
	buf[got] = '\0';
	*bufp = buf;
	*lenp = got;
	if (stp)
		*stp = st;
	return 0;
}

void secretfile_free(char *buf, size_t len)
{
	if (buf)
		OPENSSL_cleanse(buf, len);
	free(buf);
}
