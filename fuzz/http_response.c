/* http_response.c - fuzz kts-client's side of HTTP (tools/http.c): the
 * response head, then, for a chunked response, the body after it.
 *
 * The input is what a server sent. The head is parsed with kts-client's
 * 64 KiB limit. A chunked body is decoded twice: in one call, and in pieces
 * of 1..8 bytes (as reads may split it), each piece in a buffer of exactly its
 * size; both must give the same bytes, the same end and the same error.
 */
#include <string.h>

#include "fuzz.h"
#include "http.h"

#define CLIENT_HEAD_LIMIT (64 * 1024) /* kts-client.c HEAD_LIMIT */

struct decoded {
	char *out;    /* decoded bytes */
	size_t len;
	size_t used;  /* input bytes consumed */
	int error;    /* -1 seen */
	int done;
};

/* Decode body[0, n) in pieces of at most step bytes (step >= n: one call). */
static void decode(const char *body, size_t n, size_t step, struct decoded *d)
{
	struct http_chunked st;
	size_t pos = 0;

	memset(&st, 0, sizeof(st));
	memset(d, 0, sizeof(*d));
	d->out = malloc(n ? n : 1);
	FUZZ_CHECK(d->out);
	while (pos < n && !st.done) {
		size_t take = n - pos < step ? n - pos : step, used = (size_t)-1;
		char *piece = malloc(take);
		ssize_t got;

		FUZZ_CHECK(piece);
		memcpy(piece, body + pos, take);
		got = http_chunked_decode(&st, piece, take, &used);
		if (got < 0) {
			free(piece);
			d->error = 1;
			return;
		}
		FUZZ_CHECK((size_t)got <= take && used <= take);
		FUZZ_CHECK(st.done || used == take);
		memcpy(d->out + d->len, piece, (size_t)got);
		d->len += (size_t)got;
		pos += used;
		free(piece);
	}
	d->used = pos;
	d->done = st.done;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_response resp;
	struct decoded whole, pieces;
	int rc = http_parse_response(buf, size, CLIENT_HEAD_LIMIT, &resp);

	if (rc == 0) {
		FUZZ_CHECK(size < CLIENT_HEAD_LIMIT);
		return 0;
	}
	if (rc < 0) {
		FUZZ_CHECK(rc == -1);
		return 0;
	}
	FUZZ_CHECK((size_t)rc <= size);
	FUZZ_CHECK(resp.status >= 0 && resp.status <= 999);
	FUZZ_CHECK(memchr(resp.reason, '\0', sizeof(resp.reason)) != NULL);
	FUZZ_CHECK(resp.content_length >= -1);
	FUZZ_CHECK(!resp.chunked || resp.content_length == -1);
	FUZZ_CHECK(http_parse_response(buf, (size_t)rc, CLIENT_HEAD_LIMIT, &resp) == rc);
	if (!resp.chunked)
		return 0;

	decode(buf + rc, size - (size_t)rc, size, &whole);
	decode(buf + rc, size - (size_t)rc, 1 + size % 8, &pieces);
	FUZZ_CHECK(whole.error == pieces.error);
	if (!whole.error) {
		FUZZ_CHECK(whole.done == pieces.done && whole.used == pieces.used);
		FUZZ_CHECK(whole.len == pieces.len && memcmp(whole.out, pieces.out, whole.len) == 0);
	}
	free(whole.out);
	free(pieces.out);
	return 0;
}
