/* secretfile.h - read a small file that holds a secret (a key file, a store
 * URL with its password): a regular file, owned by the given uid, with no
 * group or other access, read whole and wiped from memory after use. */
#ifndef KTS_TOOLS_SECRETFILE_H
#define KTS_TOOLS_SECRETFILE_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Why st is no file for secrets of uid (-1: any owner, for root managing a
 * server's file): 0, or -1 with the problem in err ("mode is 0644, ..."). */
int secretfile_check_stat(const struct stat *st, uid_t uid, char *err, size_t errlen);

/* Open path (following symbolic links), check it, read at most max bytes
 * into a malloc'd buffer (*buf, *len; a NUL after the bytes). *st (if
 * given) gets its stat. 0, or -1 with a message in err that starts with the
 * path. */
int secretfile_read(const char *path, uid_t uid, size_t max, char **buf, size_t *len,
		    struct stat *st, char *err, size_t errlen);

/* Wipe and free what secretfile_read gave. */
void secretfile_free(char *buf, size_t len);

#endif
