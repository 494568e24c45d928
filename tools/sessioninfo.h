/* sessioninfo.h - what a kts client session file holds (ktsctl session):
 * the session a connection would read from it, described without secrets
 * (no master key, no ticket bytes beyond the name servers send in the clear),
 * and whether it can resume now. */
#ifndef KTS_TOOLS_SESSIONINFO_H
#define KTS_TOOLS_SESSIONINFO_H

#include <stdint.h>
#include <stdio.h>

/* Describe the session in the file at path to f as of now. Returns 0 when it
 * can resume now, 1 when it cannot (no session, expired, not resumable), or
 * -1 with a message in err when the file cannot be read. */
int sessioninfo_print(const char *path, int64_t now, FILE *f, char *err, size_t errlen);

#endif
