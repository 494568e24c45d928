/* envelope.h - what the fleet's store holds: data sealed and authenticated
 * under the fleet's key-encryption key (KEK), which every machine reads from
 * its own 0600 file and which never goes to the store.
 *
 * KEK file: text, one line, the base64 of KEK_LEN random bytes (ktsctl kek
 * init), owned by the user that reads it, no group or other access.
 * Envelope: one line of text,
 *     kts-envelope 1 <generation> <base64 of nonce(12) || ciphertext || tag(16)>
 * AES-256-GCM under HKDF-SHA256(KEK, info "kts envelope 1 " purpose), with
 * "kts-envelope 1 <generation> <purpose> <fleet name>" as additional data:
 * an envelope cannot be moved to another fleet, purpose or generation, and
 * any change to it fails as a whole. Writers count the generation up; a
 * reader refuses one older than the newest it took (a replay). */
#ifndef KTS_TOOLS_ENVELOPE_H
#define KTS_TOOLS_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KEK_LEN 32
#define ENVELOPE_MAX (256 * 1024)

struct kek {
	unsigned char key[KEK_LEN];
};

/* Read the KEK file (secretfile rules for uid: -1 any owner). 0, or -1
 * with why in err. */
int kek_load(const char *path, uid_t uid, struct kek *k, char *err, size_t errlen);
/* The file's text for a new random KEK into buf (at least KEK_TEXT_LEN). */
#define KEK_TEXT_LEN 64
int kek_text_new(char buf[KEK_TEXT_LEN], char *err, size_t errlen);
void kek_wipe(struct kek *k);

/* Seal plain[0, len) as generation gen: a malloc'd NUL-terminated envelope
 * (*outlen bytes), or NULL with why in err. */
char *envelope_seal(const struct kek *k, const char *purpose, const char *name, uint64_t gen,
		    const void *plain, size_t len, size_t *outlen, char *err, size_t errlen);

/* Open env[0, len): 0 with its generation and a malloc'd plaintext (wipe and
 * free it: envelope_free), or -1 with why in err ("not an envelope", "fails
 * authentication: another KEK, fleet or purpose, or changed"). *gen gets the
 * generation the envelope claims as soon as it is read, also when the rest
 * fails: unauthenticated then, fit only as a floor for a new one. */
int envelope_open(const struct kek *k, const char *purpose, const char *name, const char *env,
		  size_t len, uint64_t *gen, unsigned char **plain, size_t *plainlen, char *err,
		  size_t errlen);
void envelope_free(unsigned char *plain, size_t len);

#endif
