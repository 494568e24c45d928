/* ctlclient.c - ktsctl's side of the control socket; see ctlclient.h. */
#include "ctlclient.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "timefmt.h"

#define ANSWER_MAX (1024 * 1024) /* a status of 256 workers fits */

static const char *connect_hint(int e)
{
	switch (e) {
	case ENOENT: return " (is kts-server running with --control on this path?)";
	case ECONNREFUSED: return " (nothing listens: the server has stopped)";
	case EACCES:
	case EPERM: return " (only root and the server's user may use it)";
	default: return "";
	}
}

static int dial(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (!*path || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "%s: a socket path is 1..%zu bytes", path,
			 sizeof(sa.sun_path) - 1);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "%s: %s%s", path, strerror(errno), connect_hint(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Read until the server closes, within the deadline. */
static char *read_answer(int fd, int64_t end, const char *path, size_t *len, char *err,
			 size_t errlen)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);

	while (buf) {
		struct pollfd p = {fd, POLLIN, 0};
		int64_t left = end - deadline_now();
		ssize_t r;

		int ready = left > 0 ? poll(&p, 1, (int)left) : 0;

		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			snprintf(err, errlen, "%s: no answer within %d ms", path, CTLCLIENT_WAIT_MS);
			break;
		}
		if (n + 1 == cap) {
			char *more = cap < ANSWER_MAX ? realloc(buf, cap * 2) : NULL;

			if (!more) {
				snprintf(err, errlen, "%s: answer over %d bytes", path, ANSWER_MAX);
				break;
			}
			buf = more;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		/* A server that answered at once (busy, refused) and closed
		 * before our command arrived resets after its answer. */
		if (r < 0 && errno == ECONNRESET && n > 0)
			r = 0;
		if (r < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			break;
		}
		if (r == 0) {
			buf[n] = '\0';
			*len = n;
			return buf;
		}
		n += (size_t)r;
	}
	if (!buf)
		snprintf(err, errlen, "out of memory");
	free(buf);
	return NULL;
}

int ctlclient_request(const char *path, enum control_cmd cmd, json_t **out, char *err,
		      size_t errlen)
{
	int64_t end = deadline_now() + CTLCLIENT_WAIT_MS;
	char line[CONTROL_LINE_MAX], *text;
	json_error_t je;
	size_t len = 0;
	int fd = dial(path, err, errlen), n;

	if (fd < 0)
		return -1;
	n = snprintf(line, sizeof(line), "%s\n", control_cmd_name(cmd));
	/* EPIPE: the server answered without waiting for it; read that. */
	if (send(fd, line, (size_t)n, MSG_NOSIGNAL) != n && errno != EPIPE) {
		snprintf(err, errlen, "%s: sending the command: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	text = read_answer(fd, end, path, &len, err, errlen);
	close(fd);
	if (!text)
		return -1;
	*out = json_loadb(text, len, 0, &je);
	if (!*out || !json_is_object(*out) ||
	    json_integer_value(json_object_get(*out, "kts_control")) != CONTROL_VERSION) {
		snprintf(err, errlen, "%s: not a kts-server control answer%s%s", path,
			 *out ? "" : ": ", *out ? "" : je.text);
		json_decref(*out);
		*out = NULL;
		free(text);
		return -1;
	}
	free(text);
	return 0;
}

/* ---- printing a status ------------------------------------------------------ */

static json_int_t num(const json_t *o, const char *path)
{
	char key[64];
	const char *dot;

	while ((dot = strchr(path, '.'))) {
		snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
		o = json_object_get(o, key);
		path = dot + 1;
	}
	return json_integer_value(json_object_get(o, path));
}

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "?";
}

static void print_counters(const json_t *o, FILE *f, const char *indent)
{
	fprintf(f, "%sconnections: %" JSON_INTEGER_FORMAT " open, %" JSON_INTEGER_FORMAT
		   " total, %" JSON_INTEGER_FORMAT " refused, %" JSON_INTEGER_FORMAT
		   " freed OpenSSL's state\n",
		indent, num(o, "connections.open"), num(o, "connections.total"),
		num(o, "connections.refused"), num(o, "connections.openssl_freed"));
	fprintf(f, "%shandshakes: %" JSON_INTEGER_FORMAT " full, %" JSON_INTEGER_FORMAT
		   " resumed, %" JSON_INTEGER_FORMAT " failed\n",
		indent, num(o, "handshakes.full"), num(o, "handshakes.resumed"),
		num(o, "handshakes.failed"));
	for (int d = 0; d < 2; d++) {
		const char *name = d ? "rx" : "tx";
		const json_t *dir = json_object_get(json_object_get(o, "offload"), name), *r;
		size_t i;

		fprintf(f, "%soffload %s: %" JSON_INTEGER_FORMAT " kernel, %" JSON_INTEGER_FORMAT
			   " userspace\n",
			indent, name, num(dir, "kernel"), num(dir, "userspace"));
		json_array_foreach(json_object_get(dir, "reasons"), i, r)
			fprintf(f, "%s  %8" JSON_INTEGER_FORMAT "  %s\n", indent, num(r, "count"),
				str(r, "reason"));
	}
	fprintf(f, "%sbytes sent: %" JSON_INTEGER_FORMAT " kernel TLS, %" JSON_INTEGER_FORMAT
		   " userspace TLS\n",
		indent, num(o, "bytes_sent.kernel"), num(o, "bytes_sent.userspace"));
}

static void print_keys(const json_t *k, FILE *f, const char *indent)
{
	const json_t *last = json_object_get(k, "last_load"), *key, *sync;
	char a[32], b[32], c[32];
	size_t i;

	if (!json_is_string(json_object_get(k, "file"))) {
		fprintf(f, "%sticket keys: automatic (no --ticket-keys)\n", indent);
		return;
	}
	fprintf(f, "%sticket keys: %s\n", indent, str(k, "file"));
	if (last)
		fprintf(f, "%s  last load %s: %s: %s\n", indent,
			timefmt_utc((int64_t)num(last, "time"), a),
			json_is_true(json_object_get(last, "ok")) ? "ok" : "REFUSED",
			str(last, "message"));
	if ((sync = json_object_get(k, "sync")))
		fprintf(f, "%s  fleet sync %s: %s: %s (store last good %s)\n", indent,
			timefmt_utc((int64_t)num(sync, "time"), a),
			json_is_true(json_object_get(sync, "ok")) ? "ok" : "FAILING",
			str(sync, "message"),
			num(sync, "good") ? timefmt_utc((int64_t)num(sync, "good"), b) : "never");
	json_array_foreach(json_object_get(k, "keys"), i, key)
		fprintf(f, "%s  keyrev %-10" JSON_INTEGER_FORMAT " %-8s %s .. %s, opens until %s%s\n",
			indent, num(key, "keyrev"), str(key, "state"),
			timefmt_utc((int64_t)num(key, "encrypt_from"), a),
			timefmt_utc((int64_t)num(key, "encrypt_until"), b),
			timefmt_utc((int64_t)num(key, "decrypt_until"), c),
			json_is_true(json_object_get(key, "seals")) ? "  (seals)" : "");
}

void ctlclient_print_status(const json_t *st, FILE *f)
{
	const json_t *p;
	char t[32];
	size_t i;

	fprintf(f, "kts-server pid %" JSON_INTEGER_FORMAT ", up %" JSON_INTEGER_FORMAT
		   " s (since %s), engine %s",
		num(st, "pid"), num(st, "uptime_s"), timefmt_utc((int64_t)num(st, "started"), t),
		str(st, "engine"));
	if (num(st, "threads"))
		fprintf(f, " (%" JSON_INTEGER_FORMAT " rings)", num(st, "threads"));
	if (num(st, "workers"))
		fprintf(f, ", %" JSON_INTEGER_FORMAT " workers", num(st, "workers"));
	fprintf(f, ", listening on %s, at most %" JSON_INTEGER_FORMAT " connections\n",
		str(st, "listen"), num(st, "max_conn"));
	print_counters(st, f, "");
	print_keys(json_object_get(st, "ticket_keys"), f, "");
	if (!num(st, "workers"))
		return;
	json_array_foreach(json_object_get(st, "processes"), i, p) {
		fprintf(f, "worker %" JSON_INTEGER_FORMAT ", up %" JSON_INTEGER_FORMAT " s\n",
			num(p, "pid"), num(p, "uptime_s"));
		print_counters(p, f, "  ");
		print_keys(json_object_get(p, "ticket_keys"), f, "  ");
	}
}
