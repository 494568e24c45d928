/* ticketfile.c - fuzz kts-server's ticket key file parser (tools/ticketfile.c).
 *
 * The input is the file's content. ticketfile_load only opens the file,
 * checks its owner and mode (0600/0400, regular) and reads at most
 * TICKETFILE_MAX_SIZE bytes before handing them to ticketfile_parse, which is
 * a pure function over the buffer: it is fuzzed directly, as kts-server calls
 * it (TICKETFILE_MAX_KEYS keys), and again with room for 2 keys and a short
 * error buffer. Then what a reload (SIGHUP) does with the keys: ticketfile_plan
 * against the digests of the keys loaded before. Checked: what the header
 * promises (distinct keyrevs and keys, line numbers, no all-zero half, errors
 * "line N: ..."), and that wiping wipes.
 */
#include <string.h>

#include "fuzz.h"
#include "ticketfile.h"

static struct ticketfile_key keys[TICKETFILE_MAX_KEYS];
static struct ticketfile_seen seen[TICKETFILE_MAX_KEYS + 1];

/* One memcmp, not a byte loop: the harness's own loops are instrumented too,
 * and comparing the key table byte by byte cost most of the time. */
static int all_zero(const void *p, size_t len)
{
	static const unsigned char zero[sizeof(keys)];

	return len <= sizeof(zero) && memcmp(p, zero, len) == 0;
}

static void check_error(const char *err, size_t errlen)
{
	FUZZ_CHECK(memchr(err, '\0', errlen) != NULL);
	FUZZ_CHECK(strncmp(err, "line ", errlen - 1 < 5 ? errlen - 1 : 5) == 0);
}

/* kts-server's reload (ticketfile_plan), given that keys[0, n / 2) were
 * loaded before, and a keyrev that is not in the file. */
static void check_plan(int n)
{
	size_t known = (size_t)n / 2, first = (size_t)-1;
	char err[512];

	for (size_t i = 0; i < known; i++) {
		seen[i].keyrev = keys[i].keyrev;
		FUZZ_CHECK(ticketfile_digest(&keys[i], seen[i].digest) == 0);
	}
	seen[known].keyrev = keys[n - 1].keyrev + 1;
	memset(seen[known].digest, 0x5a, sizeof(seen[known].digest));
	for (int i = 0; i < n; i++)
		if (keys[i].keyrev == seen[known].keyrev)
			return;
	FUZZ_CHECK(ticketfile_plan(keys, (size_t)n, seen, known + 1, &first, err, sizeof(err)) ==
		   0);
	FUZZ_CHECK(first == known);
	if (known == 0)
		return;
	/* The same keyrev with other bytes is refused. */
	seen[0].digest[0] ^= 1;
	FUZZ_CHECK(ticketfile_plan(keys, (size_t)n, seen, known, &first, err, sizeof(err)) < 0);
	check_error(err, sizeof(err));
	/* So is a new key listed before a known one: only the newest was loaded. */
	seen[0].keyrev = keys[n - 1].keyrev;
	FUZZ_CHECK(ticketfile_digest(&keys[n - 1], seen[0].digest) == 0);
	FUZZ_CHECK(ticketfile_plan(keys, (size_t)n, seen, 1, &first, err, sizeof(err)) < 0);
	check_error(err, sizeof(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	char err[512], small[12];
	int n, n2;

	if (size > TICKETFILE_MAX_SIZE) /* ticketfile_load refuses it unread */
		return 0;
	memset(err, 0xff, sizeof(err));
	n = ticketfile_parse(buf, size, keys, TICKETFILE_MAX_KEYS, err, sizeof(err));
	FUZZ_CHECK(n >= -1 && n <= TICKETFILE_MAX_KEYS);
	if (n < 0) {
		check_error(err, sizeof(err));
		FUZZ_CHECK(all_zero(keys, sizeof(keys)));
	}
	for (int i = 0; i < n; i++) {
		FUZZ_CHECK(keys[i].line >= 1 && (i == 0 || keys[i].line > keys[i - 1].line));
		FUZZ_CHECK(!all_zero(keys[i].key, KTS_TICKET_KEY_LEN / 2));
		FUZZ_CHECK(!all_zero(keys[i].key + KTS_TICKET_KEY_LEN / 2, KTS_TICKET_KEY_LEN / 2));
		for (int j = 0; j < i; j++) {
			FUZZ_CHECK(keys[j].keyrev != keys[i].keyrev);
			FUZZ_CHECK(memcmp(keys[j].key, keys[i].key, KTS_TICKET_KEY_LEN) != 0);
		}
	}
	if (n > 0)
		check_plan(n);
	ticketfile_wipe(keys, TICKETFILE_MAX_KEYS);
	FUZZ_CHECK(all_zero(keys, sizeof(keys)));

	/* Room for 2 keys, 12 bytes of error message. */
	n2 = ticketfile_parse(buf, size, keys, 2, small, sizeof(small));
	FUZZ_CHECK(n2 == (n > 2 ? -1 : n));
	if (n2 < 0)
		check_error(small, sizeof(small));
	ticketfile_wipe(keys, 2);
	return 0;
}
