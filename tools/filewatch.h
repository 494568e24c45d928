/* filewatch.h - notice when a file is replaced or rewritten: inotify on the
 * directory that holds it (a rename over the file, as keyset_save and
 * ktsctl do, replaces the inode a watch on the file itself would follow).
 * The path's directory is resolved once at open, so a symbolic link to a
 * file elsewhere is watched where the file lives. */
#ifndef KTS_TOOLS_FILEWATCH_H
#define KTS_TOOLS_FILEWATCH_H

#include <stddef.h>

struct filewatch {
	int fd; /* for poll (POLLIN); -1: not watching */
	char name[256]; /* the file's name in its directory */
};

/* Start watching path. 0, or -1 with a message in err (fd stays -1). */
int filewatch_open(struct filewatch *fw, const char *path, char *err, size_t errlen);

/* After POLLIN: read the pending events. 1 if one was about the file (it was
 * renamed onto, or written and closed; or events were lost), else 0. */
int filewatch_changed(struct filewatch *fw);

void filewatch_close(struct filewatch *fw);

#endif
