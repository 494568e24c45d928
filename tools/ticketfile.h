/* ticketfile.h - kts-server's session ticket key file (--ticket-keys).
 *
 * Format: text, one key per line
 *
 *     <keyrev> <base64 of 64 bytes>
 *
 * keyrev is a decimal number 0..4294967295 naming the key (it is sent in
 * every ticket, in the clear); the 64 bytes are an AES-256 key then an
 * HMAC-SHA256 key (KTS_TICKET_KEY_LEN). Oldest key first: the last line is the
 * newest key, the one that encrypts new tickets. Blank lines and lines starting
 * with '#' are ignored; spaces/tabs around fields and CRLF line ends are fine.
 * A keyrev may appear once, and a key under one keyrev only.
 *
 * The file must be a regular file owned by the server's uid with no group or
 * other permissions (0600 or 0400).
 *
 * The parser is a pure function over a buffer; nothing here logs key bytes,
 * and buffers that held them are wiped.
 */
#ifndef KTS_TOOLS_TICKETFILE_H
#define KTS_TOOLS_TICKETFILE_H

#include <kts.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#define TICKETFILE_MAX_SIZE (64 * 1024) /* larger files are refused */
#define TICKETFILE_MAX_KEYS 64          /* lines with keys */
#define TICKETFILE_DIGEST_LEN 32

struct ticketfile_key {
	unsigned int keyrev;
	int line; /* 1-based line number in the file */
	unsigned char key[KTS_TICKET_KEY_LEN];
};

/* What a process remembers of a key it added: keyrev and SHA-256 of its bytes. */
struct ticketfile_seen {
	unsigned int keyrev;
	unsigned char digest[TICKETFILE_DIGEST_LEN];
};

/* Parse buf[0, len) into keys[0, max). Returns the number of keys (0 for a file
 * with none), or -1 with "line N: <problem>" in err. */
int ticketfile_parse(const char *buf, size_t len, struct ticketfile_key *keys, size_t max,
		     char *err, size_t errlen);

/* Is a file with this stat acceptable as a key file for uid? 0, or -1 with the
 * problem in err ("mode is 0644, must be 0600 or 0400 ..."). */
int ticketfile_check_stat(const struct stat *st, uid_t uid, char *err, size_t errlen);

/* Open path (following symbolic links), check it, read and parse it. Returns
 * the number of keys (at least 1), or -1 with a message in err. Wipes what it
 * read. */
int ticketfile_load(const char *path, struct ticketfile_key *keys, size_t max, char *err,
		    size_t errlen);

/* SHA-256 of a key's bytes. 0 or -1. */
int ticketfile_digest(const struct ticketfile_key *k, unsigned char out[TICKETFILE_DIGEST_LEN]);

/* Which keys of a freshly read file are new, given the keys already added
 * (seen). A keyrev seen before must have the same bytes, and new keys must
 * all follow the last known one in the file (new keys become the newest, so
 * a new key listed before a known one would contradict the file's order).
 * On success *first_new is the index of the first new key: keys[*first_new,
 * n) are to be added in order (none when *first_new == n). Returns 0, or -1
 * with "line N: <problem>" in err. */
int ticketfile_plan(const struct ticketfile_key *keys, size_t n, const struct ticketfile_seen *seen,
		    size_t nseen, size_t *first_new, char *err, size_t errlen);

/* Wipe keys[0, n). */
void ticketfile_wipe(struct ticketfile_key *keys, size_t n);

#endif
