/* http.h - the small piece of HTTP/1.1 the kts tools need.
 *
 * Everything here is a pure function over a buffer (no I/O), so it can be
 * unit-tested on its own: request parsing for kts-server, response-head parsing
 * and chunked decoding for kts-client, and response-head formatting. */
#ifndef KTS_TOOLS_HTTP_H
#define KTS_TOOLS_HTTP_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#define HTTP_PATH_MAX 4096

enum http_method { HTTP_GET, HTTP_HEAD, HTTP_OTHER };

struct http_request {
	enum http_method method;
	int version_minor;         /* 0 or 1 (HTTP/1.x with x > 1 counts as 1) */
	int keep_alive;            /* version default adjusted by Connection */
	int has_host;              /* a Host header was present */
	int has_te;                /* a Transfer-Encoding header was present */
	int expect_continue;       /* Expect: 100-continue */
	long long content_length;  /* -1 when absent */
	int path_status;           /* 0 ok; else 400 (bad escape), 403 (traversal), 414 */
	char path[HTTP_PATH_MAX];  /* decoded, relative to the root: no leading '/',
	                            * no empty, "." or ".." segments; "" = the root */
	int trailing_slash;        /* the decoded target ended in '/' */
};

/* Parse one request head from buf[0..len).
 * Returns the number of bytes the head occupies (> 0) when complete, 0 if more data
 * is needed (no complete head yet and len < limit), or -status when the request
 * cannot be answered normally: -400 malformed, -431 head larger than limit,
 * -505 unsupported HTTP version. */
int http_parse_request(const char *buf, size_t len, size_t limit, struct http_request *req);

/* Decode and normalise a request target ("/a/b%20c?q", or absolute form
 * "http://host/a") into a root-relative path as described for
 * struct http_request.path. Returns 0 or the HTTP status to answer with
 * (400, 403, 414). *trailing_slash is set when the path ended in '/'. */
int http_target_to_path(const char *target, size_t tlen, char *out, size_t outlen,
			int *trailing_slash);

/* Reason phrase for a status code ("Not Found"); "Unknown" for others. */
const char *http_reason(int status);

/* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" for t (IMF-fixdate, RFC 9110), into
 * buf of at least HTTP_DATE_LEN bytes. English names whatever the locale, and no
 * time zone lookup: strftime would read /etc/localtime on every call. The line
 * is kept per thread for the second it names. */
#define HTTP_DATE_LEN 40
void http_date(time_t t, char *buf);

/* Content-Type for a file name, by extension; application/octet-stream otherwise. */
const char *http_content_type(const char *name);

/* Format a response head into buf. content_type may be NULL (no header);
 * extra, if not NULL, is inserted verbatim (one or more "Name: value\r\n").
 * Returns the length, or 0 if buf is too small. */
size_t http_format_head(char *buf, size_t buflen, int status, const char *content_type,
			long long content_length, int keep_alive, int version_minor,
			const char *extra);

struct http_response {
	int status;
	int version_minor;
	char reason[128];
	long long content_length; /* -1 when absent */
	int chunked;              /* Transfer-Encoding: chunked */
	int close;                /* Connection: close, or HTTP/1.0 without keep-alive */
};

/* Parse a response head. Returns bytes occupied (> 0), 0 if incomplete and
 * len < limit, or -1 if malformed or larger than limit. */
int http_parse_response(const char *buf, size_t len, size_t limit, struct http_response *resp);

/* Incremental decoder for a chunked body. */
struct http_chunked {
	int state;
	unsigned long long remaining;
	int digits;
	int done; /* set once the last chunk and the trailer were consumed */
};

/* Decode len bytes of a chunked body in place: the decoded data is moved to the
 * front of buf. Returns the decoded length (>= 0) or -1 on a format error.
 * *used is set to the input bytes consumed (less than len only once done). */
ssize_t http_chunked_decode(struct http_chunked *st, char *buf, size_t len, size_t *used);

#endif
