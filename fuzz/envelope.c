/* envelope.c - fuzz the envelope reader (tools/envelope.c) that ktsctl keys
 * sync and kts-server's session store run on whatever Redis holds.
 *
 * Checked: any input opens only if it is a real envelope (here: never, for
 * random bytes can forge no GCM tag, unless the input is one sealed below);
 * a refusal has a message; and the input as plaintext, sealed under a fixed
 * KEK, opens again to the same bytes and generation, and not under another
 * fleet name.
 */
#include <string.h>

#include "envelope.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kek k;
	char err[512], *env;
	unsigned char *plain = NULL;
	size_t plen = 0, elen;
	uint64_t gen = 0;

	memset(k.key, 0x42, sizeof(k.key));
	err[0] = '\0';
	if (envelope_open(&k, "fuzz", "fleet", (const char *)data, size, &gen, &plain, &plen, err,
			  sizeof(err)) == 0) {
		envelope_free(plain, plen); /* a forged tag: only from the seeds */
	} else {
		FUZZ_CHECK(err[0] != '\0');
	}
	env = envelope_seal(&k, "fuzz", "fleet", size, data, size, &elen, err, sizeof(err));
	if (!env)
		return 0; /* too large to seal */
	FUZZ_CHECK(envelope_open(&k, "fuzz", "fleet", env, elen, &gen, &plain, &plen, err,
				 sizeof(err)) == 0);
	FUZZ_CHECK(gen == size && plen == size && memcmp(plain, data, size) == 0);
	envelope_free(plain, plen);
	FUZZ_CHECK(envelope_open(&k, "fuzz", "other", env, elen, &gen, &plain, &plen, err,
				 sizeof(err)) < 0);
	free(env);
	return 0;
}
