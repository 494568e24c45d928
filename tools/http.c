/* http.c - the small piece of HTTP/1.1 the kts tools need (pure functions). */
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return 1;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Offset just past the empty line ending the head, or 0 if there is none yet. */
static size_t head_end(const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* Next line of [*pos, end): sets *line and *llen (without CR LF), advances *pos.
 * Returns 0, or -1 for a bare CR inside the line. */
static int next_line(const char *buf, size_t end, size_t *pos, const char **line, size_t *llen)
{
	const char *start = buf + *pos;
	const char *nl = memchr(start, '\n', end - *pos);
	size_t n = nl ? (size_t)(nl - start) : end - *pos;

	*pos += n + (nl ? 1 : 0);
	if (n && start[n - 1] == '\r')
		n--;
	if (memchr(start, '\r', n))
		return -1;
	*line = start;
	*llen = n;
	return 0;
}

static int name_is(const char *name, size_t nlen, const char *want)
{
	return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

/* Does the comma-separated list [v, v+vlen) contain token tok (case-insensitive)? */
static int list_has(const char *v, size_t vlen, const char *tok)
{
	size_t i = 0;

	while (i < vlen) {
		size_t s, e;

		while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		s = i;
		while (i < vlen && v[i] != ',')
			i++;
		e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && name_is(v + s, e - s, tok))
			return 1;
	}
	return 0;
}

/* Split a header line into name and trimmed value. Returns 0 or -1 if malformed. */
static int split_header(const char *line, size_t llen, const char **name, size_t *nlen,
			const char **val, size_t *vlen)
{
	size_t i = 0, e;

	while (i < llen && is_tchar((unsigned char)line[i]))
		i++;
	if (i == 0 || i >= llen || line[i] != ':')
		return -1;
	*name = line;
	*nlen = i;
	i++;
	while (i < llen && (line[i] == ' ' || line[i] == '\t'))
		i++;
	e = llen;
	while (e > i && (line[e - 1] == ' ' || line[e - 1] == '\t'))
		e--;
	for (size_t k = i; k < e; k++) {
		unsigned char c = (unsigned char)line[k];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	*val = line + i;
	*vlen = e - i;
	return 0;
}

/* Parse a Content-Length value, merging with a previous one (-1 = none). */
static int parse_length(const char *v, size_t vlen, long long *out)
{
	long long n = 0;

	if (vlen == 0)
		return -1;
	for (size_t i = 0; i < vlen; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		if (n > (0x7fffffffffffffffLL - 9) / 10)
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	if (*out >= 0 && *out != n)
		return -1;
	*out = n;
	return 0;
}

static int parse_version(const char *v, size_t vlen, int *minor)
{
	if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
	    v[7] < '0' || v[7] > '9')
		return -400;
	if (v[5] != '1')
		return -505;
	*minor = v[7] == '0' ? 0 : 1;
	return 0;
}

int http_target_to_path(const char *target, size_t tlen, char *out, size_t outlen,
			int *trailing_slash)
{
	char dec[HTTP_PATH_MAX];
	size_t i = 0, n = 0, o = 0;

	*trailing_slash = 0;
	if (outlen == 0)
		return 414;
	out[0] = '\0';
	if (tlen >= 7 && (strncasecmp(target, "http://", 7) == 0 ||
			  (tlen >= 8 && strncasecmp(target, "https://", 8) == 0))) {
		i = target[4] == ':' ? 7 : 8;
		while (i < tlen && target[i] != '/' && target[i] != '?' && target[i] != '#')
			i++;
		if (i == tlen || target[i] != '/') {
			*trailing_slash = 1;
			return 0;
		}
	} else if (tlen == 0 || target[0] != '/') {
		return 400;
	}
	/* Percent-decode up to the query or fragment. */
	for (; i < tlen && target[i] != '?' && target[i] != '#'; i++) {
		unsigned char c = (unsigned char)target[i];

		if (c == '%') {
			int hi, lo;

			if (i + 2 >= tlen)
				return 400;
			hi = hexval((unsigned char)target[i + 1]);
			lo = hexval((unsigned char)target[i + 2]);
			if (hi < 0 || lo < 0)
				return 400;
			c = (unsigned char)(hi * 16 + lo);
			i += 2;
		}
		if (c < 0x20 || c == 0x7f)
			return 400;
		if (n + 1 >= sizeof(dec))
			return 414;
		dec[n++] = (char)c;
	}
	/* Split on '/', dropping empty and "." segments and refusing "..". */
	i = 0;
	while (i < n) {
		size_t s;

		while (i < n && dec[i] == '/')
			i++;
		s = i;
		while (i < n && dec[i] != '/')
			i++;
		if (i == s || (i - s == 1 && dec[s] == '.'))
			continue;
		if (i - s == 2 && dec[s] == '.' && dec[s + 1] == '.')
			return 403;
		if (o + (o ? 1 : 0) + (i - s) + 1 > outlen)
			return 414;
		if (o)
			out[o++] = '/';
		memcpy(out + o, dec + s, i - s);
		o += i - s;
	}
	out[o] = '\0';
	/* "/a/" and "/a/." (RFC 3986 5.2.4: "/a/") name a directory. */
	*trailing_slash = n == 0 || dec[n - 1] == '/' ||
			  (n >= 2 && dec[n - 1] == '.' && dec[n - 2] == '/');
	return 0;
}

int http_parse_request(const char *buf, size_t len, size_t limit, struct http_request *req)
{
	size_t skip = 0, end, pos, llen, sp1, sp2;
	const char *line;
	int rc, hosts = 0, conn_close = 0, conn_ka = 0;

	memset(req, 0, sizeof(*req));
	req->content_length = -1;
	/* Robustness (RFC 9112 2.2): ignore empty lines before the request line. */
	while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n'))
		skip++;
	end = head_end(buf + skip, len - skip);
	if (end == 0)
		return len >= limit ? -431 : 0;
	end += skip;
	if (end > limit)
		return -431;
	pos = skip;
	if (next_line(buf, end, &pos, &line, &llen) < 0)
		return -400;
	/* METHOD SP request-target SP HTTP-version */
	for (sp1 = 0; sp1 < llen && line[sp1] != ' '; sp1++)
		if (!is_tchar((unsigned char)line[sp1]))
			return -400;
	if (sp1 == 0 || sp1 >= llen)
		return -400;
	for (sp2 = sp1 + 1; sp2 < llen && line[sp2] != ' '; sp2++) {
		unsigned char c = (unsigned char)line[sp2];
		if (c <= 0x20 || c == 0x7f)
			return -400;
	}
	if (sp2 == sp1 + 1 || sp2 >= llen)
		return -400;
	rc = parse_version(line + sp2 + 1, llen - sp2 - 1, &req->version_minor);
	if (rc < 0)
		return rc;
	if (sp1 == 3 && memcmp(line, "GET", 3) == 0)
		req->method = HTTP_GET;
	else if (sp1 == 4 && memcmp(line, "HEAD", 4) == 0)
		req->method = HTTP_HEAD;
	else
		req->method = HTTP_OTHER;
	req->path_status = http_target_to_path(line + sp1 + 1, sp2 - sp1 - 1, req->path,
					       sizeof(req->path), &req->trailing_slash);
	for (;;) {
		const char *name, *val;
		size_t nlen, vlen;

		if (next_line(buf, end, &pos, &line, &llen) < 0)
			return -400;
		if (llen == 0)
			break;
		if (line[0] == ' ' || line[0] == '\t') /* obsolete line folding */
			return -400;
		if (split_header(line, llen, &name, &nlen, &val, &vlen) < 0)
			return -400;
		if (name_is(name, nlen, "Host")) {
			hosts++;
		} else if (name_is(name, nlen, "Connection")) {
			conn_close |= list_has(val, vlen, "close");
			conn_ka |= list_has(val, vlen, "keep-alive");
		} else if (name_is(name, nlen, "Content-Length")) {
			if (parse_length(val, vlen, &req->content_length) < 0)
				return -400;
		} else if (name_is(name, nlen, "Transfer-Encoding")) {
			req->has_te = 1;
		} else if (name_is(name, nlen, "Expect")) {
			req->expect_continue |= list_has(val, vlen, "100-continue");
		}
	}
	if (hosts > 1)
		return -400;
	req->has_host = hosts == 1;
	if (req->version_minor >= 1)
		req->keep_alive = !conn_close;
	else
		req->keep_alive = conn_ka && !conn_close;
	return (int)end;
}

const char *http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

void http_date(time_t t, char *buf)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	/* A keep-alive server asks many times a second: the last second's line is
	 * kept per thread (no lock, no sharing). */
	static _Thread_local time_t last = -1;
	static _Thread_local char line[HTTP_DATE_LEN];
	struct tm tm;

	if (t == last) {
		memcpy(buf, line, strlen(line) + 1);
		return;
	}
	if (!gmtime_r(&t, &tm)) /* a year beyond int: not a clock a server has */
		memset(&tm, 0, sizeof(tm));
	snprintf(buf, HTTP_DATE_LEN, "Date: %.3s, %02u %.3s %04u %02u:%02u:%02u GMT\r\n",
		 days[(unsigned)tm.tm_wday % 7], (unsigned)tm.tm_mday % 32,
		 months[(unsigned)tm.tm_mon % 12], (unsigned)(tm.tm_year + 1900) % 10000,
		 (unsigned)tm.tm_hour % 24, (unsigned)tm.tm_min % 60, (unsigned)tm.tm_sec % 61);
	memcpy(line, buf, strlen(buf) + 1);
	last = t;
}

const char *http_content_type(const char *name)
{
	static const struct { const char *ext, *type; } types[] = {
		{ "html", "text/html; charset=utf-8" },
		{ "htm", "text/html; charset=utf-8" },
		{ "txt", "text/plain; charset=utf-8" },
		{ "css", "text/css" },
		{ "js", "text/javascript" },
		{ "json", "application/json" },
		{ "xml", "application/xml" },
		{ "svg", "image/svg+xml" },
		{ "png", "image/png" },
		{ "jpg", "image/jpeg" },
		{ "jpeg", "image/jpeg" },
		{ "gif", "image/gif" },
		{ "pdf", "application/pdf" },
	};
	const char *slash = strrchr(name, '/');
	const char *dot = strrchr(slash ? slash + 1 : name, '.');

	if (dot && dot[1])
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcasecmp(dot + 1, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

size_t http_format_head(char *buf, size_t buflen, int status, const char *content_type,
			long long content_length, int keep_alive, int version_minor,
			const char *extra)
{
	int n;

	(void)version_minor; /* we always answer as HTTP/1.1 (RFC 9110 2.5) */
	n = snprintf(buf, buflen,
		     "HTTP/1.1 %d %s\r\n"
		     "Server: kts-server\r\n"
		     "%s%s%s"
		     "Content-Length: %lld\r\n"
		     "Connection: %s\r\n"
		     "%s"
		     "\r\n",
		     status, http_reason(status),
		     content_type ? "Content-Type: " : "", content_type ? content_type : "",
		     content_type ? "\r\n" : "",
		     content_length,
		     keep_alive ? "keep-alive" : "close",
		     extra ? extra : "");
	if (n < 0 || (size_t)n >= buflen)
		return 0;
	return (size_t)n;
}

int http_parse_response(const char *buf, size_t len, size_t limit, struct http_response *resp)
{
	size_t end, pos = 0, llen, i;
	const char *line;
	int minor, conn_close = 0, conn_ka = 0;

	memset(resp, 0, sizeof(*resp));
	resp->content_length = -1;
	end = head_end(buf, len);
	if (end == 0)
		return len >= limit ? -1 : 0;
	if (end > limit)
		return -1;
	if (next_line(buf, end, &pos, &line, &llen) < 0)
		return -1;
	/* HTTP-version SP 3DIGIT [SP reason] */
	if (llen < 12 || parse_version(line, 8, &minor) < 0 || line[8] != ' ')
		return -1;
	for (i = 9; i < 12; i++)
		if (line[i] < '0' || line[i] > '9')
			return -1;
	if (llen > 12 && line[12] != ' ')
		return -1;
	resp->version_minor = minor;
	resp->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	if (llen > 13) {
		size_t rl = llen - 13;
		if (rl >= sizeof(resp->reason))
			rl = sizeof(resp->reason) - 1;
		for (i = 0; i < rl; i++) {
			unsigned char c = (unsigned char)line[13 + i];
			resp->reason[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
		}
		resp->reason[rl] = '\0';
	}
	for (;;) {
		const char *name, *val;
		size_t nlen, vlen;

		if (next_line(buf, end, &pos, &line, &llen) < 0)
			return -1;
		if (llen == 0)
			break;
		if (split_header(line, llen, &name, &nlen, &val, &vlen) < 0)
			return -1;
		if (name_is(name, nlen, "Content-Length")) {
			if (parse_length(val, vlen, &resp->content_length) < 0)
				return -1;
		} else if (name_is(name, nlen, "Transfer-Encoding")) {
			/* Only "chunked" as the final coding is something we can read. */
			const char *last = val;
			for (i = 0; i < vlen; i++)
				if (val[i] == ',')
					last = val + i + 1;
			while (last < val + vlen && (*last == ' ' || *last == '\t'))
				last++;
			if (!name_is(last, (size_t)(val + vlen - last), "chunked"))
				return -1;
			resp->chunked = 1;
		} else if (name_is(name, nlen, "Connection")) {
			conn_close |= list_has(val, vlen, "close");
			conn_ka |= list_has(val, vlen, "keep-alive");
		}
	}
	if (resp->chunked)
		resp->content_length = -1; /* RFC 9112 6.3: chunked wins */
	resp->close = minor == 0 ? !conn_ka || conn_close : conn_close;
	return (int)end;
}

enum {
	CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
	CH_TRAILER_START, CH_TRAILER_LINE, CH_TRAILER_LF, CH_DONE,
};

ssize_t http_chunked_decode(struct http_chunked *st, char *buf, size_t len, size_t *used)
{
	size_t i = 0, o = 0;

	while (i < len && st->state != CH_DONE) {
		unsigned char c = (unsigned char)buf[i];

		switch (st->state) {
		case CH_SIZE: {
			int h = hexval(c);
			if (h >= 0) {
				if (st->remaining >> 60)
					return -1;
				st->remaining = st->remaining * 16 + (unsigned)h;
				st->digits++;
				i++;
				break;
			}
			if (st->digits == 0)
				return -1;
			if (c == ';' || c == ' ' || c == '\t')
				st->state = CH_EXT;
			else if (c == '\r')
				st->state = CH_SIZE_LF;
			else if (c == '\n')
				st->state = st->remaining ? CH_DATA : CH_TRAILER_START;
			else
				return -1;
			i++;
			break;
		}
		case CH_EXT:
			if (c == '\n')
				st->state = st->remaining ? CH_DATA : CH_TRAILER_START;
			i++;
			break;
		case CH_SIZE_LF:
			if (c != '\n')
				return -1;
			st->state = st->remaining ? CH_DATA : CH_TRAILER_START;
			i++;
			break;
		case CH_DATA: {
			size_t n = len - i;
			if (n > st->remaining)
				n = (size_t)st->remaining;
			memmove(buf + o, buf + i, n);
			o += n;
			i += n;
			st->remaining -= n;
			if (st->remaining == 0)
				st->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
		case CH_DATA_LF:
			if (c == '\r' && st->state == CH_DATA_CR)
				st->state = CH_DATA_LF;
			else if (c == '\n') {
				st->state = CH_SIZE;
				st->digits = 0;
			}
			else
				return -1;
			i++;
			break;
		case CH_TRAILER_START:
			st->state = c == '\r' ? CH_TRAILER_LF : c == '\n' ? CH_DONE : CH_TRAILER_LINE;
			i++;
			break;
		case CH_TRAILER_LINE:
			if (c == '\n')
				st->state = CH_TRAILER_START;
			i++;
			break;
		case CH_TRAILER_LF:
			if (c != '\n')
				return -1;
			st->state = CH_DONE;
			i++;
			break;
		}
	}
	st->done = st->state == CH_DONE;
	*used = i;
	return (ssize_t)o;
}
