/* keyset.c - fuzz the ticket key-set file parser (tools/keyset.c), which
 * kts-server runs on --ticket-keys and ktsctl on every file it reads.
 *
 * keyset_load only opens the file, checks its owner and mode and reads at
 * most KEYSET_MAX_SIZE bytes before handing them to keyset_parse, a pure
 * function over the buffer: fuzzed directly. Checked: errors are "line N:
 * ..." or name the missing header, a failed parse leaves no key bytes, keys
 * have distinct keyrevs and ascending lines, AES-128 keys (32 bytes) leave
 * the rest of the key zero, and what parses (names included) survives
 * keyset_format and a second parse unchanged (ktsctl rewrites files that
 * way). The library's judgement of the set (kts_ticket_keys_check, and which
 * key seals) must hold whatever the times are.
 */
#include <string.h>

#include "fuzz.h"
#include "keyset.h"

static struct keyset ks, again;

static int all_zero(const void *p, size_t len)
{
	static const unsigned char zero[sizeof(ks.keys)];

	return len <= sizeof(zero) && memcmp(p, zero, len) == 0;
}

static void check_error(const char *err, size_t errlen)
{
	FUZZ_CHECK(memchr(err, '\0', errlen) != NULL);
	FUZZ_CHECK(strncmp(err, "line ", errlen - 1 < 5 ? errlen - 1 : 5) == 0 ||
		   strncmp(err, "no 'kts-ticket-keys", errlen - 1 < 19 ? errlen - 1 : 19) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512], small[12], *text;
	int seal;

	if (size > KEYSET_MAX_SIZE) /* keyset_load refuses it unread */
		return 0;
	memset(err, 0xff, sizeof(err));
	if (keyset_parse((const char *)data, size, &ks, err, sizeof(err)) < 0) {
		check_error(err, sizeof(err));
		FUZZ_CHECK(ks.n == 0 && all_zero(ks.keys, sizeof(ks.keys)));
		FUZZ_CHECK(keyset_parse((const char *)data, size, &ks, small, sizeof(small)) < 0);
		check_error(small, sizeof(small));
		return 0;
	}
	FUZZ_CHECK(ks.n <= KTS_TICKET_KEYSET_MAX);
	FUZZ_CHECK(ks.interval >= KEYSET_INTERVAL_MIN && ks.lifetime >= KEYSET_LIFETIME_MIN);
	for (size_t i = 0; i < ks.n; i++) {
		FUZZ_CHECK(ks.line[i] >= 2 && (i == 0 || ks.line[i] > ks.line[i - 1]));
		for (size_t j = 0; j < i; j++)
			FUZZ_CHECK(ks.keys[j].keyrev != ks.keys[i].keyrev);
		FUZZ_CHECK(ks.keys[i].aes_bits == 0 || ks.keys[i].aes_bits == 128);
		FUZZ_CHECK(ks.keys[i].aes_bits == 0 || all_zero(ks.keys[i].key + 32, 32));
	}
	/* What ktsctl writes back reads the same. */
	text = keyset_format(&ks);
	FUZZ_CHECK(text != NULL);
	FUZZ_CHECK(keyset_parse(text, strlen(text), &again, err, sizeof(err)) == 0);
	FUZZ_CHECK(again.n == ks.n && again.interval == ks.interval &&
		   again.lifetime == ks.lifetime && again.generation == ks.generation);
	FUZZ_CHECK(memcmp(again.keys, ks.keys, ks.n * sizeof(ks.keys[0])) == 0);
	keyset_text_free(text);
	/* The library's rules, at a time from the first key. */
	seal = kts_ticket_keys_encrypting(ks.keys, ks.n, ks.n ? ks.keys[0].encrypt_from : 0);
	FUZZ_CHECK(seal >= -1 && seal < (int)ks.n);
	if (kts_ticket_keys_check(ks.keys, ks.n, ks.n ? ks.keys[0].encrypt_from : 0, err,
				  sizeof(err)) == KTS_OK)
		FUZZ_CHECK(seal >= 0);
	keyset_wipe(&ks);
	keyset_wipe(&again);
	FUZZ_CHECK(all_zero(ks.keys, sizeof(ks.keys)));
	return 0;
}
