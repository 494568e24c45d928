/* control.c - fuzz both ends of kts-server's control protocol (tools/control.h):
 * the request parser the server runs on what a client sends, and ktsctl's
 * reading of an answer.
 *
 * Request: kts-server accumulates up to CONTROL_LINE_MAX bytes and calls
 * control_parse after each read. Checked: the outcome of the whole input
 * (its first CONTROL_LINE_MAX bytes) is the outcome of feeding it a byte at
 * a time up to the first decision, or an error once more follows a line
 * the server would have taken already; "need more" only without a newline and under
 * the limit; a command only for a whole line that names it; an error is
 * printable ASCII and makes a valid JSON answer (jansson refuses invalid
 * UTF-8, so raw bytes must never reach it).
 * Answer: any JSON object ktsctl might get is printed as a status without a
 * crash, whatever members are missing or of the wrong type.
 */
#include <string.h>

#include "ctlclient.h"
#include "fuzz.h"

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	devnull = fopen("/dev/null", "w");
	return devnull ? 0 : -1;
}

static void check_request(const char *buf, size_t len)
{
	char err[160], err2[160];
	enum control_cmd cmd = CTL_STATUS, cmd2 = CTL_STATUS;
	size_t n = len < CONTROL_LINE_MAX ? len : CONTROL_LINE_MAX;
	int rc = control_parse(buf, n, &cmd, err, sizeof(err)), rc2 = 0;
	const char *nl = memchr(buf, '\n', n);
	size_t i;

	if (rc == 0)
		FUZZ_CHECK(!nl && n < CONTROL_LINE_MAX);
	if (rc == 1) {
		const char *name = control_cmd_name(cmd);
		size_t line = (size_t)(nl - buf);

		FUZZ_CHECK(nl == buf + n - 1);
		if (line && buf[line - 1] == '\r')
			line--;
		FUZZ_CHECK(strlen(name) == line && memcmp(name, buf, line) == 0);
	}
	if (rc < 0) {
		json_t *j = control_error(err);
		char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

		FUZZ_CHECK(err[0] != '\0');
		for (const char *p = err; *p; p++)
			FUZZ_CHECK(*p >= 0x20 && *p < 0x7f);
		FUZZ_CHECK(text != NULL);
		free(text);
		json_decref(j);
	}
	/* As the server sees it: byte by byte until a decision. */
	for (i = 1; i <= n; i++) {
		rc2 = control_parse(buf, i, &cmd2, err2, sizeof(err2));
		if (rc2 != 0)
			break;
	}
	if (i < n) { /* decided before the end: the rest makes the whole an error */
		FUZZ_CHECK(rc == -1);
		FUZZ_CHECK(rc2 < 0 || buf[i - 1] == '\n');
	} else {
		FUZZ_CHECK(rc2 == rc && (rc != 1 || cmd2 == cmd));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j;

	check_request((const char *)data, size);
	j = json_loadb((const char *)data, size, 0, NULL);
	if (json_is_object(j))
		ctlclient_print_status(j, devnull);
	json_decref(j);
	return 0;
}
