/* keyset.h - the ticket key-set file that ktsctl writes and kts-server reads
 * (--ticket-keys).
 *
 * Format: text. Blank lines and lines starting with '#' are ignored; spaces
 * or tabs separate fields; CRLF line ends are fine. The first other line is
 *
 *     kts-ticket-keys 1 [interval=SECONDS] [lifetime=SECONDS] [generation=N]
 *
 * (the format's version, then the rotation interval, at least 10 s, and
 * session lifetime, at least 60 s, that `ktsctl keys rotate` schedules new
 * keys by, defaults below; and, in a file `ktsctl keys sync` wrote, the
 * generation of the fleet's set it holds, fleetkeys.h). Then one
 * key per line, in any order:
 *
 *     <keyrev> <encrypt_from> <encrypt_until> <decrypt_until> <base64 key> [name=<hex>]
 *
 * keyrev is 0..4294967295 and names the key in every ticket; the times are
 * seconds since the Unix epoch (struct kts_ticket_key in kts.h says what
 * they mean); the key is 64 bytes: AES-256 key then HMAC-SHA256 key, or 32
 * bytes: AES-128 key then a 16-byte HMAC-SHA256 key (aes_bits 128; keys
 * from the 48-byte files of nginx and HAProxy). name= (32 hex digits, not
 * all zero) is the 16-byte name tickets carry, for keys imported from other
 * servers (ktsctl keys import); without it the name is derived (kts.h).
 *
 * The file is a regular file owned by the server's uid with no group or
 * other access (0600 or 0400), meant for tmpfs (/run), replaced atomically
 * (keyset_save). Nothing here logs key bytes; buffers that held them are
 * wiped.
 */
#ifndef KTS_TOOLS_KEYSET_H
#define KTS_TOOLS_KEYSET_H

#include <kts.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#define KEYSET_MAX_SIZE (64 * 1024) /* larger files are refused */
#define KEYSET_VERSION 1
#define KEYSET_INTERVAL_DEFAULT 3600 /* seconds between rotations */
#define KEYSET_INTERVAL_MIN 10
#define KEYSET_LIFETIME_DEFAULT 3600 /* the servers' --session-lifetime */
#define KEYSET_LIFETIME_MIN 60       /* kts_config_set_session_lifetime's least */

struct keyset {
	unsigned int interval, lifetime; /* seconds */
	uint64_t generation;             /* the fleet's (fleetkeys.h); 0: none */
	size_t n;
	struct kts_ticket_key keys[KTS_TICKET_KEYSET_MAX];
	int line[KTS_TICKET_KEYSET_MAX]; /* where each key was read (0: not read) */
};

/* Parse buf[0, len) into ks. Returns 0, or -1 with "line N: <problem>" in
 * err. The keys are not judged by time here (kts_ticket_keys_check does). */
int keyset_parse(const char *buf, size_t len, struct keyset *ks, char *err, size_t errlen);

/* The file's text for ks; a malloc'd string the caller wipes and frees
 * (keyset_text_free), or NULL when out of memory. */
char *keyset_format(const struct keyset *ks);
void keyset_text_free(char *text);

/* Is a file with this stat acceptable as a key file for uid (-1: any owner,
 * for root managing a server's file)? 0, or -1 with the problem in err
 * ("mode is 0644, must be ..."). */
int keyset_check_stat(const struct stat *st, uid_t uid, char *err, size_t errlen);

/* Open path (following symbolic links), check it as keyset_check_stat does,
 * read and parse it. 0, or -1 with a message in err
 * that starts with the path. *st (if given) gets the file's stat. */
int keyset_load(const char *path, uid_t uid, struct keyset *ks, struct stat *st, char *err,
		size_t errlen);

/* Replace path with ks atomically: a temporary file in the same directory
 * (mode 0600, then owner uid:gid when not -1), written and fsynced, renamed
 * over path, the directory fsynced. 0, or -1 with a message in err. */
int keyset_save(const char *path, const struct keyset *ks, uid_t uid, gid_t gid, char *err,
		size_t errlen);

/* A printable fingerprint of a key, "sha256:" and 16 hex digits of SHA-256
 * of its bytes: tells keys apart without revealing them. */
void keyset_fingerprint(const struct kts_ticket_key *k, char out[32]);

/* Wipe every key in ks. */
void keyset_wipe(struct keyset *ks);

#endif
