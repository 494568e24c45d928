/* ctlclient.h - ktsctl's side of kts-server's control socket (control.h):
 * send one command, read the one-line JSON answer, and say for people what
 * a status answer holds. */
#ifndef KTS_TOOLS_CTLCLIENT_H
#define KTS_TOOLS_CTLCLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "control.h"

#define CTLCLIENT_WAIT_MS 5000 /* connect, send and answer, all together */

/* Send cmd to the server at path and parse its answer. Returns 0 with the
 * answer in *out (the caller releases it; "ok" may still be false), or -1
 * with why in err. */
int ctlclient_request(const char *path, enum control_cmd cmd, json_t **out, char *err,
		      size_t errlen);

/* A status answer as text. */
void ctlclient_print_status(const json_t *st, FILE *f);

#endif
