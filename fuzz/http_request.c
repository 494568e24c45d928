/* http_request.c - fuzz kts-server's request head parser (tools/http.c).
 *
 * The input is what a client sent: http_parse_request sees it as kts-server
 * does (the bytes read so far, its 16 KiB head limit), then again with the
 * limit at the input's length, and http_target_to_path decodes it as a
 * request target into an output buffer of a size taken from the input.
 * Beyond memory errors and UB, it checks what kts-server relies on: a head
 * never claims more bytes than it was given, parsing is the same however the
 * bytes arrived, and a path it accepts has no "..", "." or empty segment, no
 * leading '/' and no control byte.
 */
#include <string.h>

#include "fuzz.h"
#include "http.h"

#define SERVER_HEAD_LIMIT (16 * 1024) /* kts-server.c HEAD_LIMIT */

/* A path http_target_to_path accepted (status 0) for a buffer of outlen bytes. */
static void check_path(const char *path, size_t outlen)
{
	size_t len = strnlen(path, outlen), s = 0;

	FUZZ_CHECK(len < outlen);
	FUZZ_CHECK(len == 0 || path[0] != '/');
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK((unsigned char)path[i] >= 0x20 && (unsigned char)path[i] != 0x7f);
	while (s < len) {
		const char *seg = path + s, *slash = memchr(seg, '/', len - s);
		size_t n = slash ? (size_t)(slash - seg) : len - s;

		FUZZ_CHECK(n > 0);
		FUZZ_CHECK(!(n == 1 && seg[0] == '.'));
		FUZZ_CHECK(!(n == 2 && seg[0] == '.' && seg[1] == '.'));
		s += n + 1;
		FUZZ_CHECK(!slash || s < len); /* no trailing '/' */
	}
}

static int is_error(int rc)
{
	return rc == -400 || rc == -431 || rc == -505;
}

static void check_request(const char *buf, size_t size, size_t limit)
{
	static struct http_request req, again; /* 4 KiB each */
	int rc = http_parse_request(buf, size, limit, &req);

	if (rc == 0) {
		FUZZ_CHECK(size < limit);
		return;
	}
	if (rc < 0) {
		FUZZ_CHECK(is_error(rc));
		return;
	}
	FUZZ_CHECK((size_t)rc <= size && (size_t)rc <= limit);
	FUZZ_CHECK(req.method == HTTP_GET || req.method == HTTP_HEAD || req.method == HTTP_OTHER);
	FUZZ_CHECK(req.version_minor == 0 || req.version_minor == 1);
	FUZZ_CHECK(req.content_length >= -1);
	FUZZ_CHECK(req.path_status == 0 || req.path_status == 400 || req.path_status == 403 ||
		   req.path_status == 414);
	if (req.path_status == 0)
		check_path(req.path, sizeof(req.path));
	/* What follows the head does not change it, and one byte less is not a head yet. */
	FUZZ_CHECK(http_parse_request(buf, (size_t)rc, limit, &again) == rc);
	FUZZ_CHECK(again.keep_alive == req.keep_alive && again.content_length == req.content_length &&
		   again.path_status == req.path_status && strcmp(again.path, req.path) == 0);
	FUZZ_CHECK(http_parse_request(buf, (size_t)rc - 1, limit, &again) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;

	check_request(buf, size, SERVER_HEAD_LIMIT);
	if (size > 0)
		check_request(buf, size, size);

	/* The target decoder alone: first byte = output size (0..63), exactly
	 * allocated so that a byte written past it is an ASan report. */
	if (size > 0) {
		size_t outlen = data[0] % 64;
		char *out = malloc(outlen ? outlen : 1);
		int trailing = -1, st;

		if (!out)
			return 0;
		st = http_target_to_path(buf + 1, size - 1, out, outlen, &trailing);
		FUZZ_CHECK(st == 0 || st == 400 || st == 403 || st == 414);
		FUZZ_CHECK(trailing == 0 || trailing == 1);
		if (st == 0)
			check_path(out, outlen);
		free(out);
	}
	return 0;
}
