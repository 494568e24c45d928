/* atomicfile.h - replace a file with new bytes atomically, as secret files
 * need: readers see the old file or the new one, never a part, and the new
 * one is 0600 from its first byte. */
#ifndef KTS_TOOLS_ATOMICFILE_H
#define KTS_TOOLS_ATOMICFILE_H

#include <stddef.h>
#include <sys/types.h>

/* A temporary file beside path (mode 0600 whatever the umask, then owner
 * uid:gid when either is not -1), data[0, len) written and fsynced, renamed
 * over path, the directory fsynced. 0, or -1 with a message in err that
 * starts with path; no temporary file is left, and path is as it was unless
 * only the directory's fsync failed (the message says so). */
int atomicfile_write(const char *path, const void *data, size_t len, uid_t uid, gid_t gid,
		     char *err, size_t errlen);

#endif
