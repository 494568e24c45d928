/* control_proto.c - the control socket's requests and its two fixed answers
 * (control.h): no I/O, so the fuzzer and ktsctl take it as it is. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

static const char *const names[] = {
	[CTL_STATUS] = "status",
	[CTL_RELOAD_KEYS] = "reload-keys",
	[CTL_DRAIN] = "drain",
	[CTL_STOP] = "stop",
};

const char *control_cmd_name(enum control_cmd cmd)
{
	return (unsigned)cmd < sizeof(names) / sizeof(names[0]) ? names[cmd] : "?";
}

/* s[0, len) for an error message: printable ASCII, the rest as '?'. */
static void printable(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; i < len && i + 1 < outlen; i++)
		out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	if (outlen)
		out[i] = '\0';
}

int control_parse(const char *buf, size_t len, enum control_cmd *cmd, char *err, size_t errlen)
{
	const char *nl = memchr(buf, '\n', len);
	size_t n;
	char shown[CONTROL_LINE_MAX + 1];

	if (!nl) {
		if (len < CONTROL_LINE_MAX)
			return 0;
		snprintf(err, errlen, "request: no end of line in %d bytes", CONTROL_LINE_MAX);
		return -1;
	}
	if (nl + 1 != buf + len) {
		snprintf(err, errlen, "request: one line per connection, then wait for the answer");
		return -1;
	}
	n = (size_t)(nl - buf);
	if (n && buf[n - 1] == '\r')
		n--;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && memcmp(names[i], buf, n) == 0) {
			*cmd = (enum control_cmd)i;
			return 1;
		}
	printable(buf, n, shown, sizeof(shown));
	snprintf(err, errlen, "unknown command \"%s\" (status, reload-keys, drain, stop)", shown);
	return -1;
}

static json_t *answer(int ok)
{
	return json_pack("{s:i, s:b}", "kts_control", CONTROL_VERSION, "ok", ok);
}

json_t *control_ok(void)
{
	return answer(1);
}

json_t *control_text(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	char *t = malloc(n + 1);
	json_t *j;

	if (!s || !t) {
		free(t);
		return s ? NULL : json_null();
	}
	printable(s, n, t, n + 1);
	j = json_string(t);
	free(t);
	return j;
}

json_t *control_error(const char *why)
{
	json_t *j = answer(0);

	if (j && json_object_set_new(j, "error", control_text(why)) < 0) {
		json_decref(j);
		return NULL;
	}
	return j;
}
