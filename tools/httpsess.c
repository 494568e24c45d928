/* httpsess.c - one HTTP/1.1 connection as a state machine (see httpsess.h).
 * Each step mirrors serve()/respond() in kts-server.c. */
#include "httpsess.h"

#include <sys/stat.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void httpsess_init(struct httpsess *s, const struct hs_cfg *cfg, int64_t now)
{
	memset(s, 0, sizeof(*s));
	s->cfg = cfg;
	s->st = HS_ST_IDLE;
	s->reply.fd = -1;
	deadline_total(&s->dl, now, cfg->timeout_ms);
}

void httpsess_start(struct httpsess *s, int64_t now)
{
	if (httpsess_between(s))
		deadline_total(&s->dl, now, s->cfg->timeout_ms);
}

static void drop_reply(struct httpsess *s)
{
	if (s->reply.fd >= 0)
		close(s->reply.fd);
	s->reply.fd = -1;
}

/* Kept when the heap has no room for the line itself. */
static char note_oom[] = "error: out of memory";

static void note(struct httpsess *s, const char *fmt, ...)
{
	va_list ap;
	char *p;

	httpsess_note_clear(s);
	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		p = note_oom;
	va_end(ap);
	s->note = p;
}

void httpsess_note_clear(struct httpsess *s)
{
	if (s->note != note_oom)
		free(s->note);
	s->note = NULL;
}

void httpsess_free(struct httpsess *s)
{
	drop_reply(s);
	free(s->out);
	s->out = NULL;
	httpsess_note_clear(s);
	free(s->in);
	s->in = NULL;
	s->have = s->cap = 0;
}

/* The answer's head buffer, taken when an answer is made. */
static char *out_get(struct httpsess *s)
{
	if (!s->out && !(s->out = malloc(HS_OUT_SIZE)))
		note(s, "error: out of memory");
	return s->out;
}

static void consume(struct httpsess *s, size_t n)
{
	memmove(s->in, s->in + n, s->have - n);
	s->have -= n;
	if (s->have == 0) { /* an idle keep-alive connection holds no buffer */
		free(s->in);
		s->in = NULL;
		s->cap = 0;
	}
}

int httpsess_input(struct httpsess *s, const void *p, size_t n, int64_t now)
{
	if (s->st == HS_ST_IDLE && s->have == 0 && n > 0) {
		/* A request's first bytes: its head and body have --timeout from here. */
		s->st = HS_ST_HEAD;
		deadline_total(&s->dl, now, s->cfg->timeout_ms);
	}
	if (s->st == HS_ST_BODY && s->have == 0) { /* dropped as it comes */
		size_t d = n < (unsigned long long)s->body_left ? n : (size_t)s->body_left;

		s->body_left -= (long long)d;
		p = (const char *)p + d;
		n -= d;
	}
	if (n == 0)
		return 0;
	if (s->have + n > HS_INPUT_MAX) {
		note(s, "error: over %d KiB of requests sent without reading the answers",
			 HS_INPUT_MAX / 1024);
		return -1;
	}
	if (s->have + n > s->cap) {
		size_t cap = s->cap ? s->cap : HS_INPUT_FIRST;
		char *in;

		while (cap < s->have + n)
			cap *= 2;
		in = realloc(s->in, cap);
		if (!in) {
			note(s, "error: out of memory");
			return -1;
		}
		s->in = in;
		s->cap = cap;
	}
	memcpy(s->in + s->have, p, n);
	s->have += n;
	return 0;
}

int httpsess_wants_input(const struct httpsess *s)
{
	return s->st != HS_ST_END && s->have < HS_HEAD_LIMIT;
}

const struct deadline *httpsess_deadline(const struct httpsess *s)
{
	return &s->dl;
}

int httpsess_between(const struct httpsess *s)
{
	return s->st == HS_ST_IDLE && s->have == 0;
}

int httpsess_client_done(const struct httpsess *s)
{
	return s->st == HS_ST_END && s->client_ends && s->have == 0;
}

int httpsess_last_reply(const struct httpsess *s)
{
	return s->st == HS_ST_REPLY && s->close_after;
}

int httpsess_idle(const struct httpsess *s)
{
	return s->st == HS_ST_IDLE || s->st == HS_ST_HEAD;
}

/* A short text answer (send_simple). */
static enum hs_do simple(struct httpsess *s, int status, int keep, int head_only,
			 const char *more, struct hs_reply *r)
{
	char extra[256], body[128];
	size_t hl;
	int bl;

	if (!out_get(s))
		return s->st = HS_ST_END, HS_ABORT;
	http_date(time(NULL), extra);
	if (more)
		strncat(extra, more, sizeof(extra) - strlen(extra) - 1);
	bl = snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));
	hl = http_format_head(s->out, HS_OUT_SIZE, status, "text/plain; charset=utf-8", bl,
			      keep, 1, extra);
	if (!head_only && hl + (size_t)bl < HS_OUT_SIZE) {
		memcpy(s->out + hl, body, (size_t)bl);
		hl += (size_t)bl;
	}
	s->reply.head = s->out;
	s->reply.head_len = hl;
	s->reply.fd = -1;
	s->reply.size = 0;
	s->close_after = !keep;
	s->st = HS_ST_REPLY;
	*r = s->reply;
	return HS_SEND;
}

/* Answer a parsed request (respond). */
static enum hs_do respond(struct httpsess *s, const struct http_request *req, int keep,
			  struct hs_reply *r)
{
	int head_only = req->method == HTTP_HEAD;
	const char *name;
	struct stat st;
	char extra[256];
	int ffd;

	if (req->method == HTTP_OTHER)
		return simple(s, 405, keep, 0, "Allow: GET, HEAD\r\n", r);
	if (req->version_minor >= 1 && !req->has_host) /* RFC 9112 3.2: 400, and we close */
		return simple(s, 400, 0, head_only, NULL, r);
	if (req->path_status == 403) /* a well-formed request for a forbidden path */
		return simple(s, 403, keep, head_only, NULL, r);
	if (req->path_status) /* a malformed target: answer and close */
		return simple(s, req->path_status, 0, head_only, NULL, r);
	if (!out_get(s))
		return s->st = HS_ST_END, HS_ABORT;
	ffd = fsroot_open(s->cfg->root, req->path, req->trailing_slash, &st, &name);
	if (ffd < 0)
		return simple(s, -ffd, keep, head_only, NULL, r);
	http_date(time(NULL), extra);
	s->reply.head = s->out;
	s->reply.head_len = http_format_head(s->out, HS_OUT_SIZE, 200,
					     http_content_type(name), (long long)st.st_size, keep,
					     req->version_minor, extra);
	/* HEAD sends none of the file, but the engine closes it: on its ring. */
	s->reply.fd = ffd;
	s->reply.size = head_only ? 0 : (long long)st.st_size;
	s->close_after = !keep;
	s->st = HS_ST_REPLY;
	*r = s->reply;
	return HS_SEND;
}

enum hs_do httpsess_next(struct httpsess *s, int64_t now, int stopping, struct hs_reply *r)
{
	struct http_request req[1]; /* 4 KiB: answered as soon as parsed, never kept */
	long long body;
	int used;

	for (;;) {
		switch (s->st) {
		case HS_ST_END:
			return HS_CLOSE;
		case HS_ST_REPLY:
			*r = s->reply;
			return HS_SEND;
		case HS_ST_IDLE:
			if (stopping)
				return s->st = HS_ST_END, HS_CLOSE;
			if (s->have == 0)
				return HS_READ;
			s->st = HS_ST_HEAD; /* pipelined: the next request is here */
			deadline_total(&s->dl, now, s->cfg->timeout_ms);
			break;
		case HS_ST_HEAD:
			used = http_parse_request(s->in, s->have, HS_HEAD_LIMIT, req);
			if (used == 0)
				return HS_READ;
			if (used < 0)
				return simple(s, -used, 0, 0, NULL, r);
			consume(s, (size_t)used);
			s->reply.fd = -1;
			if (req->has_te) /* we cannot find the end of a coded request body */
				return simple(s, 501, 0, req->method == HTTP_HEAD, NULL, r);
			/* Nothing we serve takes a body: read and drop it, unless it
			 * is too large, or the client waits for a 100 Continue before
			 * sending it (answered at once then, and the connection closed). */
			body = req->content_length > 0 ? req->content_length : 0;
			s->close_after = !req->keep_alive;
			s->client_ends = s->close_after;
			if (body > HS_DISCARD_LIMIT ||
			    (req->expect_continue && (size_t)body > s->have)) {
				s->close_after = 1;
				s->client_ends = 0; /* the body may still come */
				body = 0;
			}
			s->body_len = s->body_left = body;
			/* The answer is ready now; it goes out once the body is read. */
			if (respond(s, req, !s->close_after, r) != HS_SEND)
				return HS_ABORT;
			s->st = HS_ST_BODY;
			break;
		case HS_ST_BODY:
			if (s->body_left > 0 && s->have > 0) {
				size_t d = s->have < (unsigned long long)s->body_left
						   ? s->have
						   : (size_t)s->body_left;

				consume(s, d);
				s->body_left -= (long long)d;
			}
			if (s->body_left > 0)
				return HS_READ;
			s->st = HS_ST_REPLY;
			*r = s->reply;
			return HS_SEND;
		}
	}
}

int httpsess_take_file(struct httpsess *s)
{
	int fd = s->reply.fd;

	s->reply.fd = -1;
	return fd;
}

void httpsess_sent(struct httpsess *s, int64_t now)
{
	drop_reply(s);
	free(s->out); /* no answer owed: an idle connection holds no buffer */
	s->out = NULL;
	if (s->close_after) {
		s->st = HS_ST_END;
		return;
	}
	s->st = HS_ST_IDLE;
	deadline_total(&s->dl, now, s->cfg->timeout_ms); /* idle time between requests */
}

enum hs_do httpsess_timeout(struct httpsess *s, struct hs_reply *r)
{
	int t = s->cfg->timeout_s;

	switch (s->st) {
	case HS_ST_HEAD:
		note(s, "error: request head: %zu bytes, incomplete within %d s: answered 408",
			 s->have, t);
		return simple(s, 408, 0, 0, NULL, r);
	case HS_ST_BODY:
		note(s, "error: request body: %lld of %lld bytes within %d s: answered 408",
			 s->body_len - s->body_left, s->body_len, t);
		drop_reply(s); /* the answer held for after the body */
		return simple(s, 408, 0, 0, NULL, r);
	default: /* idle between requests: a quiet end */
		s->st = HS_ST_END;
		return HS_CLOSE;
	}
}

enum hs_do httpsess_input_end(struct httpsess *s, int clean)
{
	if (clean && s->st == HS_ST_BODY)
		note(s, "error: request body: %lld of %lld bytes, then the client closed",
			 s->body_len - s->body_left, s->body_len);
	s->st = HS_ST_END;
	return clean ? HS_CLOSE : HS_ABORT;
}
