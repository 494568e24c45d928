/* fsroot.h - open files strictly beneath a document root (kts-server). */
#ifndef KTS_TOOLS_FSROOT_H
#define KTS_TOOLS_FSROOT_H

#include <limits.h>
#include <stddef.h>
#include <sys/stat.h>

struct fsroot {
	int fd;               /* the root directory */
	char real[PATH_MAX];  /* its canonical path (for the fallback check) */
	int no_openat2;       /* use the fallback even if openat2 exists */
};

/* Open the document root. Returns 0, or -1 with a message in err. */
int fsroot_init(struct fsroot *r, const char *dir, char *err, size_t errlen);
void fsroot_fini(struct fsroot *r);

/* Open rel (a normalised root-relative path, see http_target_to_path; "" is the
 * root) for reading. A directory resolves to its index.html; with dir_only
 * (the request ended in '/'), rel must be a directory: a file is 404. Symbolic
 * links are followed only while the result stays beneath the root. On success
 * returns a file descriptor of a regular file, fills *st, and sets *name to the
 * name whose extension gives the content type. On failure returns -403, -404 or
 * -500. */
int fsroot_open(const struct fsroot *r, const char *rel, int dir_only, struct stat *st,
		const char **name);

#endif
