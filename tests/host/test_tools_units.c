/* Unit tests of the tools' pure helpers: HTTP request/response parsing, target
 * normalisation, chunked decoding, --ciphers splitting, HOST:PORT parsing,
 * deadlines, log rate limits. Output is TAP. (The ticket key-set file has its
 * own unit test: tests/unit/test_keyset_file.c.) */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "addr.h"
#include "deadline.h"
#include "http.h"
#include "opts.h"
#include "ratelimit.h"

static int n_tests, n_failed;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		n_tests++;                                                 \
		if (cond) {                                                \
			printf("ok %d - ", n_tests);                       \
		} else {                                                   \
			n_failed++;                                        \
			printf("not ok %d - ", n_tests);                   \
		}                                                          \
		printf(__VA_ARGS__);                                       \
		printf("\n");                                              \
		if (!(cond))                                               \
			printf("#   failed: %s (line %d)\n", #cond, __LINE__); \
	} while (0)

static int parse(const char *s, struct http_request *r)
{
	return http_parse_request(s, strlen(s), 16384, r);
}

static void test_request(void)
{
	struct http_request r;
	const char *ok = "GET /a/b%20c.txt?q=1 HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
	int n;

	n = parse(ok, &r);
	CHECK(n == (int)strlen(ok) - 4, "request: head length excludes the next request");
	CHECK(r.method == HTTP_GET && r.version_minor == 1 && r.keep_alive && r.has_host &&
		      r.content_length == -1 && r.path_status == 0,
	      "request: GET HTTP/1.1 defaults");
	CHECK(strcmp(r.path, "a/b c.txt") == 0, "request: decoded path without query");
	CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n", &r) == 0, "request: incomplete head -> 0");
	CHECK(parse("", &r) == 0, "request: empty -> 0");
	CHECK(parse("\r\n\r\nHEAD / HTTP/1.0\r\n\r\n", &r) > 0 && r.method == HTTP_HEAD &&
		      !r.keep_alive && r.version_minor == 0,
	      "request: leading empty lines skipped; HTTP/1.0 closes");
	CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r) > 0 && r.keep_alive,
	      "request: HTTP/1.0 keep-alive");
	CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n", &r) > 0 &&
		      !r.keep_alive,
	      "request: Connection list with close");
	CHECK(parse("GET / HTTP/1.1\nHost: x\n\n", &r) > 0 && r.has_host, "request: bare LF lines");
	CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r) > 0 && !r.expect_continue &&
		      parse("PUT / HTTP/1.1\r\nHost: x\r\nexpect:  100-Continue \r\n\r\n", &r) >
			      0 &&
		      r.expect_continue,
	      "request: Expect: 100-continue (case-insensitive)");
	CHECK(parse("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", &r) > 0 &&
		      r.method == HTTP_OTHER && r.content_length == 12,
	      "request: other method, Content-Length");
	CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &r) == -400,
	      "request: conflicting Content-Length -> 400");
	CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", &r) == -400,
	      "request: overflowing Content-Length -> 400");
	CHECK(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r) > 0 && r.has_te,
	      "request: Transfer-Encoding noted");
	CHECK(parse("GET  / HTTP/1.1\r\n\r\n", &r) == -400, "request: double space -> 400");
	CHECK(parse("GET /\r\n\r\n", &r) == -400, "request: HTTP/0.9 form -> 400");
	CHECK(parse("GET / HTTP/1.1 \r\n\r\n", &r) == -400, "request: trailing space -> 400");
	CHECK(parse("GET / HTTP/3.0\r\n\r\n", &r) == -505, "request: HTTP/3.0 -> 505");
	CHECK(parse("GET / HTTP/1.1\r\n folded\r\n\r\n", &r) == -400, "request: obs-fold -> 400");
	CHECK(parse("GET / HTTP/1.1\r\nNo colon\r\n\r\n", &r) == -400, "request: no colon -> 400");
	CHECK(parse("GET / HTTP/1.1\r\nA\rB: c\r\n\r\n", &r) == -400, "request: bare CR -> 400");
	CHECK(parse("G(T / HTTP/1.1\r\n\r\n", &r) == -400, "request: bad method char -> 400");
	CHECK(parse("GET /\x01 HTTP/1.1\r\n\r\n", &r) == -400, "request: control char -> 400");
	CHECK(parse("get / HTTP/1.1\r\nHost: x\r\n\r\n", &r) > 0 && r.method == HTTP_OTHER,
	      "request: methods are case-sensitive");
	{
		char big[20000];

		memset(big, 'a', sizeof(big));
		memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
		CHECK(http_parse_request(big, sizeof(big), 16384, &r) == -431,
		      "request: no end within the limit -> 431");
		CHECK(http_parse_request(big, 1000, 16384, &r) == 0,
		      "request: below the limit -> need more");
	}
}

static int path(const char *target, char *out, int *slash)
{
	return http_target_to_path(target, strlen(target), out, HTTP_PATH_MAX, slash);
}

static void test_paths(void)
{
	char out[HTTP_PATH_MAX];
	int sl;

	CHECK(path("/", out, &sl) == 0 && strcmp(out, "") == 0 && sl, "path: / is the root");
	CHECK(path("/a//b/./c/", out, &sl) == 0 && strcmp(out, "a/b/c") == 0 && sl,
	      "path: empty and . segments dropped");
	CHECK(path("/..", out, &sl) == 403, "path: /.. -> 403");
	CHECK(path("/a/../b", out, &sl) == 403, "path: inner .. -> 403 (not resolved)");
	CHECK(path("/%2e%2e/x", out, &sl) == 403, "path: %%2e%%2e -> 403");
	CHECK(path("/%2E%2e", out, &sl) == 403, "path: mixed case escape -> 403");
	CHECK(path("/a/..%2fb", out, &sl) == 403, "path: ..%%2f -> 403");
	CHECK(path("/a/...", out, &sl) == 0 && strcmp(out, "a/...") == 0, "path: ... is a name");
	CHECK(path("/a.txt", out, &sl) == 0 && !sl && path("/a.txt/", out, &sl) == 0 && sl &&
		      strcmp(out, "a.txt") == 0,
	      "path: trailing slash noted");
	CHECK(path("/a.txt/.", out, &sl) == 0 && sl && strcmp(out, "a.txt") == 0 &&
		      path("/a.txt/%2e", out, &sl) == 0 && sl && path("/a.", out, &sl) == 0 && !sl,
	      "path: a final . segment means a trailing slash (a. does not)");
	CHECK(path("/..a", out, &sl) == 0 && strcmp(out, "..a") == 0, "path: ..a is a name");
	CHECK(path("/%", out, &sl) == 400 && path("/%4", out, &sl) == 400 &&
		      path("/%4g", out, &sl) == 400,
	      "path: truncated or bad escapes -> 400");
	CHECK(path("/a%00b", out, &sl) == 400, "path: %%00 -> 400");
	CHECK(path("/a%0ab", out, &sl) == 400, "path: control characters -> 400");
	CHECK(path("/a?../../x", out, &sl) == 0 && strcmp(out, "a") == 0,
	      "path: query not part of the path");
	CHECK(path("http://h:1/x/y?z", out, &sl) == 0 && strcmp(out, "x/y") == 0,
	      "path: absolute-form");
	CHECK(path("HTTPS://h", out, &sl) == 0 && strcmp(out, "") == 0 && sl,
	      "path: absolute-form without path");
	CHECK(path("x", out, &sl) == 400 && path("*", out, &sl) == 400, "path: relative -> 400");
	{
		char longp[6000];

		longp[0] = '/';
		memset(longp + 1, 'a', sizeof(longp) - 2);
		longp[sizeof(longp) - 1] = '\0';
		CHECK(path(longp, out, &sl) == 414, "path: too long -> 414");
	}
}

static void test_format(void)
{
	char buf[512];
	size_t n = http_format_head(buf, sizeof(buf), 404, "text/plain", 14, 0, 1,
				    "Allow: GET\r\n");

	CHECK(n > 0 && strncmp(buf, "HTTP/1.1 404 Not Found\r\n", 24) == 0 &&
		      strstr(buf, "\r\nContent-Length: 14\r\n") && strstr(buf, "\r\nConnection: close\r\n") &&
		      strstr(buf, "\r\nAllow: GET\r\n\r\n") && n == strlen(buf),
	      "format: status line, length, connection, extra, final CRLF");
	CHECK(http_format_head(buf, 20, 200, NULL, 1, 1, 1, NULL) == 0, "format: too small -> 0");
	http_date(784111777, buf); /* RFC 9110's example */
	CHECK(strcmp(buf, "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n") == 0, "date: IMF-fixdate");
	http_date(951782400, buf); /* a leap day */
	CHECK(strcmp(buf, "Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n") == 0, "date: 29 Feb 2000");
	CHECK(strcmp(http_content_type("a/b.HTML"), "text/html; charset=utf-8") == 0 &&
		      strcmp(http_content_type("x.tar.gz"), "application/octet-stream") == 0 &&
		      strcmp(http_content_type("dir.d/noext"), "application/octet-stream") == 0 &&
		      strcmp(http_content_type("a.json"), "application/json") == 0,
	      "content types by extension");
}

static void test_response(void)
{
	struct http_response r;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

	CHECK(http_parse_response(s, strlen(s), 65536, &r) == (int)strlen(s) - 5 && r.status == 200 &&
		      r.content_length == 5 && !r.chunked && !r.close && strcmp(r.reason, "OK") == 0,
	      "response: status and length");
	s = "HTTP/1.0 404\r\n\r\n";
	CHECK(http_parse_response(s, strlen(s), 65536, &r) > 0 && r.status == 404 && r.close &&
		      r.content_length == -1 && r.reason[0] == '\0',
	      "response: HTTP/1.0 without reason closes");
	s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n";
	CHECK(http_parse_response(s, strlen(s), 65536, &r) > 0 && r.chunked &&
		      r.content_length == -1,
	      "response: chunked wins over Content-Length");
	s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
	CHECK(http_parse_response(s, strlen(s), 65536, &r) == -1, "response: unknown coding -> -1");
	s = "HTTP/1.1 2x0 OK\r\n\r\n";
	CHECK(http_parse_response(s, strlen(s), 65536, &r) == -1, "response: bad status -> -1");
	s = "HTTP/1.1 200 OK\r\n";
	CHECK(http_parse_response(s, strlen(s), 65536, &r) == 0, "response: incomplete -> 0");
}

static void test_chunked(void)
{
	const char *body = "4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: x\r\n\r\nXTRA";
	char buf[256], out[256];
	size_t olen = 0, used, total = 0;
	struct http_chunked st;

	/* Whole, then one byte at a time. */
	memset(&st, 0, sizeof(st));
	strcpy(buf, body);
	{
		ssize_t n = http_chunked_decode(&st, buf, strlen(body), &used);

		CHECK(n == 23 && memcmp(buf, "Wikipedia in\r\n\r\nchunks.", 23) == 0 && st.done &&
			      used == strlen(body) - 4,
		      "chunked: whole body, trailer, stops before extra bytes");
	}
	memset(&st, 0, sizeof(st));
	for (size_t i = 0; i < strlen(body) && !st.done; i++) {
		char c = body[i];
		ssize_t n = http_chunked_decode(&st, &c, 1, &used);

		if (n < 0)
			break;
		if (n == 1)
			out[olen++] = c;
		total += used;
	}
	CHECK(olen == 23 && memcmp(out, "Wikipedia in\r\n\r\nchunks.", 23) == 0 && st.done &&
		      total == strlen(body) - 4,
	      "chunked: byte by byte");
	memset(&st, 0, sizeof(st));
	strcpy(buf, "zz\r\n");
	CHECK(http_chunked_decode(&st, buf, 4, &used) == -1, "chunked: bad size -> -1");
	memset(&st, 0, sizeof(st));
	strcpy(buf, "1\r\nab\r\n");
	CHECK(http_chunked_decode(&st, buf, 7, &used) == -1, "chunked: missing CRLF after data");
	memset(&st, 0, sizeof(st));
	strcpy(buf, "fffffffffffffffff\r\n");
	CHECK(http_chunked_decode(&st, buf, strlen(buf), &used) == -1, "chunked: size overflow");
}

static void test_ciphers(void)
{
	char a[256], b[256];

	CHECK(opts_split_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256", a,
				 sizeof(a), b, sizeof(b)) == 0 &&
		      strcmp(a, "ECDHE-ECDSA-AES128-GCM-SHA256") == 0 &&
		      strcmp(b, "TLS_AES_128_GCM_SHA256") == 0,
	      "ciphers: split by TLS_ prefix");
	CHECK(opts_split_ciphers("TLS_A,TLS_B X:!aNULL::", a, sizeof(a), b, sizeof(b)) == 0 &&
		      strcmp(a, "X:!aNULL") == 0 && strcmp(b, "TLS_A:TLS_B") == 0,
	      "ciphers: , and space separators, empty entries dropped");
	CHECK(opts_split_ciphers("TLS_AES_256_GCM_SHA384", a, sizeof(a), b, sizeof(b)) == 0 &&
		      a[0] == '\0',
	      "ciphers: only TLS 1.3 leaves TLS 1.2 empty");
	CHECK(opts_split_ciphers("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", a, 8, b, sizeof(b)) == -1,
	      "ciphers: overflow -> -1");
}

static void test_session_id(void)
{
	unsigned char sid[OPTS_SESSION_ID_MAX];
	char err[200], longer[40];
	size_t len = 0;

	CHECK(opts_session_id("www", sid, &len, err, sizeof(err)) == 0 && len == 3 &&
		      memcmp(sid, "www", 3) == 0,
	      "session id: a string is its bytes");
	CHECK(opts_session_id("hex:00ff7A", sid, &len, err, sizeof(err)) == 0 && len == 3 &&
		      sid[0] == 0 && sid[1] == 0xff && sid[2] == 0x7a,
	      "session id: hex: is binary");
	memset(longer, 'a', 32);
	strcpy(longer + 32, "b");
	CHECK(opts_session_id(longer, sid, &len, err, sizeof(err)) == -1 &&
		      strstr(err, "1..32 bytes, got 33"),
	      "session id: 33 bytes refused");
	CHECK(opts_session_id("hex:abc", sid, &len, err, sizeof(err)) == -1 &&
		      strstr(err, "got 3 digits"),
	      "session id: odd hex refused");
	CHECK(opts_session_id("hex:", sid, &len, err, sizeof(err)) == -1, "session id: empty hex");
	CHECK(opts_session_id("hex:0g", sid, &len, err, sizeof(err)) == -1 &&
		      strstr(err, "'g' is not a hex digit"),
	      "session id: bad digit named");
}

static void test_addr(void)
{
	struct addr_spec a;
	char err[256], hh[300];

	CHECK(addr_parse("example.org:443", &a, err, sizeof(err)) == 0 &&
		      strcmp(a.host, "example.org") == 0 && strcmp(a.port, "443") == 0,
	      "addr: name:port");
	CHECK(addr_parse("[::1]:8443", &a, err, sizeof(err)) == 0 && strcmp(a.host, "::1") == 0 &&
		      strcmp(a.port, "8443") == 0,
	      "addr: [v6]:port");
	CHECK(addr_parse(":0", &a, err, sizeof(err)) == 0 && a.host[0] == '\0', "addr: :port");
	CHECK(addr_parse("::1:80", &a, err, sizeof(err)) < 0, "addr: bare v6 refused");
	CHECK(addr_parse("h:65536", &a, err, sizeof(err)) < 0 && addr_parse("h:", &a, err, sizeof(err)) < 0 &&
		      addr_parse("h:-1", &a, err, sizeof(err)) < 0 && addr_parse("h", &a, err, sizeof(err)) < 0 &&
		      addr_parse("[::1]", &a, err, sizeof(err)) < 0,
	      "addr: bad ports and forms refused");
	CHECK(addr_is_numeric("127.0.0.1") && addr_is_numeric("::1") && !addr_is_numeric("localhost"),
	      "addr: numeric detection");
	addr_host_header("::1", "8443", hh, sizeof(hh));
	CHECK(strcmp(hh, "[::1]:8443") == 0, "addr: Host header for v6 with port");
	addr_host_header("a.b", "443", hh, sizeof(hh));
	CHECK(strcmp(hh, "a.b") == 0, "addr: Host header omits :443");
}


/* CHECK evaluates its condition twice: state-changing calls go first. */
static void test_deadline(void)
{
	struct deadline d;
	int ok;

	deadline_total(&d, 1000, 2000);
	CHECK(!deadline_expired(&d, 2999) && deadline_expired(&d, 3000) &&
		      deadline_poll_ms(&d, 1000) == 2000 && deadline_poll_ms(&d, 2999) == 1 &&
		      deadline_poll_ms(&d, 3000) == 0 && deadline_poll_ms(&d, 9000) == 0,
	      "deadline: total, 2 s after 1000 ms");
	deadline_moved(&d, 2500, 1 << 20);
	CHECK(deadline_expired(&d, 3000), "deadline: total, bytes moved do not stretch it");
	deadline_total(&d, 1000, -1);
	CHECK(!deadline_expired(&d, INT64_MAX - 1) && deadline_poll_ms(&d, 5) == -1,
	      "deadline: never");
	deadline_total(&d, INT64_MAX - 10, 100);
	CHECK(d.end == DEADLINE_NEVER && deadline_poll_ms(&d, 0) == -1,
	      "deadline: an end past the clock's range is never");
	deadline_total(&d, 0, (int64_t)INT32_MAX * 4);
	CHECK(deadline_poll_ms(&d, 0) == INT32_MAX, "deadline: poll ms capped at INT32_MAX");

	deadline_progress(&d, 0, 3000, 16384);
	deadline_moved(&d, 2000, 16383);
	CHECK(deadline_expired(&d, 3000), "deadline: progress, less than min_bytes in the window");
	deadline_progress(&d, 0, 3000, 16384);
	deadline_moved(&d, 1000, 10000);
	deadline_moved(&d, 2000, 6384);
	CHECK(!deadline_expired(&d, 4999) && deadline_expired(&d, 5000) && d.moved == 0,
	      "deadline: progress, min_bytes in pieces push the end to their time + window");
	deadline_moved(&d, 4000, 1 << 20);
	CHECK(deadline_poll_ms(&d, 4000) == 3000,
	      "deadline: progress, a large move pushes once (window from now)");
	deadline_progress(&d, 0, 1000, 0);
	deadline_moved(&d, 900, 1);
	CHECK(d.min_bytes == 1 && deadline_poll_ms(&d, 900) == 1000,
	      "deadline: progress, min_bytes 0 means every byte counts");
	deadline_progress(&d, 0, -1, 1);
	deadline_moved(&d, 5, 1);
	CHECK(deadline_poll_ms(&d, 5) == -1, "deadline: progress with no window: never");
	ok = deadline_now() > 0;
	CHECK(ok, "deadline: the clock runs");
}

static void test_ratelimit(void)
{
	struct ratelimit r;
	unsigned long held = 99;
	int ok;

	ratelimit_init(&r, 1000);
	ok = ratelimit_allow(&r, 5000, &held) && held == 0;
	ok = ok && !ratelimit_allow(&r, 5001, &held) && !ratelimit_allow(&r, 5999, &held);
	CHECK(ok, "ratelimit: the first line goes, then none for the interval");
	ok = ratelimit_allow(&r, 6000, &held) && held == 2;
	CHECK(ok, "ratelimit: the next line after the interval counts the two held back");
	ok = ratelimit_allow(&r, 9000, &held) && held == 0;
	CHECK(ok, "ratelimit: the count starts again");
	ratelimit_init(&r, 1000);
	ok = ratelimit_allow(&r, -50, &held) && held == 0;
	CHECK(ok, "ratelimit: any clock value at first");
}

int main(void)
{
	test_request();
	test_paths();
	test_format();
	test_response();
	test_chunked();
	test_ciphers();
	test_session_id();
	test_addr();
	test_deadline();
	test_ratelimit();
	printf("1..%d\n", n_tests);
	return n_failed ? 1 : 0;
}
