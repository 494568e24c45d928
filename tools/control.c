/* control.c - kts-server's control socket; see control.h. */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "deadline.h"
#include "server.h"

void control_init(struct control *ctl)
{
	memset(ctl, 0, sizeof(*ctl));
	ctl->fd = -1;
	for (int i = 0; i < CONTROL_CLIENTS; i++)
		ctl->cl[i].fd = -1;
}

static int fill_addr(struct sockaddr_un *sa, const char *path, char *err, size_t errlen)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!*path || strlen(path) >= sizeof(sa->sun_path)) {
		snprintf(err, errlen, "%s: a socket path is 1..%zu bytes", path,
			 sizeof(sa->sun_path) - 1);
		return -1;
	}
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

/* Something is at path: a socket nobody answers on may go (a server that
 * died left it); a live one or any other file stays. */
static int clear_stale(const struct sockaddr_un *sa, const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s: exists and is not a socket", path);
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "%s: another server answers on it", path);
		return -1;
	}
	if (errno != ECONNREFUSED) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s: removing the stale socket: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int control_open(struct control *ctl, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	mode_t old;
	int fd, rc;

	control_init(ctl);
	if (fill_addr(&sa, path, err, errlen) < 0 || clear_stale(&sa, path, err, errlen) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	old = umask(0177); /* born 0600: no moment when others may connect */
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	ctl->fd = fd;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	return 0;
}

static void client_close(struct control_client *cl)
{
	if (cl->fd >= 0)
		close(cl->fd);
	cl->fd = -1;
	cl->len = 0;
	free(cl->out);
	cl->out = NULL;
	cl->out_len = cl->out_off = 0;
}

/* After an answer: what the client sent past its line goes first, since
 * closing on unread input resets the connection, and the answer with it. */
static void client_drop(struct control_client *cl)
{
	char junk[4096];

	for (int i = 0; cl->fd >= 0 && i < 16 && recv(cl->fd, junk, sizeof(junk), MSG_DONTWAIT) > 0;
	     i++)
		;
	client_close(cl);
}

void control_forget(struct control *ctl)
{
	/* Only close: the clients are the supervisor's to read. */
	for (int i = 0; i < CONTROL_CLIENTS; i++)
		client_close(&ctl->cl[i]);
	if (ctl->fd >= 0)
		close(ctl->fd);
	ctl->fd = -1;
}

void control_close(struct control *ctl)
{
	int had = ctl->fd >= 0;

	control_forget(ctl);
	if (had)
		unlink(ctl->path);
}

int control_pollfds(const struct control *ctl, struct pollfd *p)
{
	int n = 0;

	if (ctl->fd < 0)
		return 0;
	p[n++] = (struct pollfd){ctl->fd, POLLIN, 0};
	for (int i = 0; i < CONTROL_CLIENTS; i++)
		if (ctl->cl[i].fd >= 0)
			p[n++] = (struct pollfd){ctl->cl[i].fd,
						 (short)(ctl->cl[i].out ? POLLOUT : POLLIN), 0};
	return n;
}

int control_timeout_ms(const struct control *ctl, int64_t now)
{
	int64_t ms = INT64_MAX;

	for (int i = 0; i < CONTROL_CLIENTS; i++)
		if (ctl->cl[i].fd >= 0 && ctl->cl[i].until - now < ms)
			ms = ctl->cl[i].until - now;
	if (ms == INT64_MAX)
		return -1;
	return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* A one-line answer that fits the socket at once (refusals, errors). */
static void reply(int fd, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	const char *out = text ? text : "{\"kts_control\":1,\"ok\":false,\"error\":\"out of memory\"}";
	size_t len = strlen(out);
	struct iovec iov[2] = {{(void *)out, len}, {"\n", 1}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};

	errno = 0;
	if (sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)(len + 1))
		logmsg("control: the answer did not go out whole: %s",
		       errno ? strerror(errno) : "short send");
	free(text);
	json_decref(j);
}

/* Send what is left of cl's answer; once it is all out, the end. */
static void client_write(struct control_client *cl)
{
	ssize_t n = send(cl->fd, cl->out + cl->out_off, cl->out_len - cl->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		logmsg("control: sending the answer: %s", strerror(errno));
		client_close(cl);
		return;
	}
	cl->out_off += (size_t)n;
	if (cl->out_off == cl->out_len)
		client_drop(cl);
}

/* Answer cl with j and a newline: at once, or the rest on POLLOUT (a large
 * status), within a fresh CONTROL_WAIT_MS. */
static void client_answer(struct control_client *cl, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
	size_t len = text ? strlen(text) : 0;

	json_decref(j);
	if (!text || !(cl->out = realloc(text, len + 2))) {
		free(text);
		reply(cl->fd, NULL);
		client_drop(cl);
		return;
	}
	cl->out[len] = '\n';
	cl->out[len + 1] = '\0';
	cl->out_len = len + 1;
	cl->out_off = 0;
	cl->until = deadline_now() + CONTROL_WAIT_MS;
	client_write(cl);
}


/* Only root and the server's own uid may command it. */
static int allowed(int fd)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0) {
		logmsg("control: SO_PEERCRED: %s", strerror(errno));
		return 0;
	}
	if (uc.uid == 0 || uc.uid == geteuid())
		return 1;
	logmsg("control: refused pid %ld uid %lu: only root and uid %lu may use this socket",
	       (long)uc.pid, (unsigned long)uc.uid, (unsigned long)geteuid());
	return 0;
}

static void accept_all(struct control *ctl, int64_t now)
{
	for (;;) {
		int fd = accept4(ctl->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), i;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				logmsg("control: accept: %s", strerror(errno));
			return;
		}
		if (!allowed(fd)) {
			reply(fd, control_error("permission denied: only root and the server's "
						"user may use this socket"));
			close(fd);
			continue;
		}
		for (i = 0; i < CONTROL_CLIENTS && ctl->cl[i].fd >= 0; i++)
			;
		if (i == CONTROL_CLIENTS) {
			reply(fd, control_error("busy: other clients are being answered, try again"));
			close(fd);
			continue;
		}
		ctl->cl[i].fd = fd;
		ctl->cl[i].len = 0;
		ctl->cl[i].until = now + CONTROL_WAIT_MS;
	}
}

/* Read what cl sent; answer once its line is whole. */
static void client_read(struct control_client *cl, control_answer_fn answer, void *arg)
{
	char err[160];
	enum control_cmd cmd;
	ssize_t n;
	int rc;

	n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) { /* gone before asking */
		client_drop(cl);
		return;
	}
	cl->len += (size_t)n;
	rc = control_parse(cl->buf, cl->len, &cmd, err, sizeof(err));
	if (rc == 0)
		return;
	if (rc < 0) {
		logmsg("control: %s", err);
		reply(cl->fd, control_error(err));
		client_drop(cl);
	} else {
		client_answer(cl, answer(arg, cmd));
	}
}

void control_serve(struct control *ctl, const struct pollfd *p, int n, control_answer_fn answer,
		   void *arg)
{
	int64_t now = deadline_now();

	if (ctl->fd < 0)
		return;
	for (int i = 1; i < n; i++) {
		if (!p[i].revents)
			continue;
		for (int c = 0; c < CONTROL_CLIENTS; c++)
			if (ctl->cl[c].fd == p[i].fd) {
				if (ctl->cl[c].out)
					client_write(&ctl->cl[c]);
				else
					client_read(&ctl->cl[c], answer, arg);
				break;
			}
	}
	for (int c = 0; c < CONTROL_CLIENTS; c++) {
		struct control_client *cl = &ctl->cl[c];

		if (cl->fd < 0 || now < cl->until)
			continue;
		if (cl->out) {
			logmsg("control: a client did not read its answer (%zu of %zu bytes) in time",
			       cl->out_off, cl->out_len);
			client_close(cl);
		} else {
			reply(cl->fd, control_error("request: no whole line in time"));
			client_drop(cl);
		}
	}
	if (n > 0 && p[0].revents)
		accept_all(ctl, now);
}
