/* keyset.c - the ticket key-set file; see keyset.h. */
#include "keyset.h"
#include "atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "secretfile.h"

#define B64_KEY_LEN (4 * ((KTS_TICKET_KEY_LEN + 2) / 3)) /* 88 characters */
#define KEY128_LEN 32 /* AES-128 key, then a 16-byte HMAC key */
#define NAME_FIELD "name="
#define MAX_FIELDS 6

static int is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static int is_b64(char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '+' || ch == '/';
}

/* Decode the base64 token s[0, len) into k: 64 bytes (AES-256) or 32
 * (AES-128, aes_bits 128). */
static int decode_key(const char *s, size_t len, int line, struct kts_ticket_key *k, char *err,
		      size_t errlen)
{
	unsigned char tmp[B64_KEY_LEN / 4 * 3];
	size_t pad = 0, bytes;

	for (size_t i = 0; i < len; i++) {
		if (is_b64(s[i]) && pad == 0)
			continue;
		if (s[i] == '=' && pad < 2) {
			pad++;
			continue;
		}
		if ((unsigned char)s[i] >= 0x21 && (unsigned char)s[i] < 0x7f)
			snprintf(err, errlen, "line %d: key is not valid base64 ('%c' at character %zu)",
				 line, s[i], i + 1);
		else
			snprintf(err, errlen,
				 "line %d: key is not valid base64 (byte 0x%02x at character %zu)", line,
				 (unsigned char)s[i], i + 1);
		return -1;
	}
	if (len % 4) {
		snprintf(err, errlen,
			 "line %d: key is not valid base64 (%zu characters, not a multiple of 4)", line,
			 len);
		return -1;
	}
	bytes = len / 4 * 3 - pad;
	if (bytes != KTS_TICKET_KEY_LEN && bytes != KEY128_LEN) {
		snprintf(err, errlen,
			 "line %d: key is %zu bytes, must be %d (AES-256 key then HMAC-SHA256 key) "
			 "or %d (AES-128 key then 16-byte HMAC key)",
			 line, bytes, KTS_TICKET_KEY_LEN, KEY128_LEN);
		return -1;
	}
	/* len is B64_KEY_LEN or 44 here: it fits tmp. */
	if (EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len) != (int)(len / 4 * 3)) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		snprintf(err, errlen, "line %d: key is not valid base64", line);
		return -1;
	}
	memcpy(k->key, tmp, bytes);
	k->aes_bits = bytes == KEY128_LEN ? 128 : 0;
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return 0;
}

/* "name=<32 hex digits>": the key's given name (not all zero: that is what
 * a derived name is stored as, and such keys have no field). */
static int parse_name(const char *s, size_t len, int line, struct kts_ticket_key *k, char *err,
		      size_t errlen)
{
	const size_t plen = sizeof(NAME_FIELD) - 1;
	unsigned char acc = 0;

	if (len < plen || memcmp(s, NAME_FIELD, plen) != 0) {
		snprintf(err, errlen, "line %d: the 6th field must be name=<32 hex digits>", line);
		return -1;
	}
	if (len - plen != 2 * KTS_TICKET_KEY_NAME_LEN) {
		snprintf(err, errlen, "line %d: name= takes 32 hex digits (16 bytes), got %zu", line,
			 len - plen);
		return -1;
	}
	for (size_t i = 0; i < KTS_TICKET_KEY_NAME_LEN; i++) {
		int hi = OPENSSL_hexchar2int((unsigned char)s[plen + 2 * i]);
		int lo = OPENSSL_hexchar2int((unsigned char)s[plen + 2 * i + 1]);

		if (hi < 0 || lo < 0) {
			snprintf(err, errlen, "line %d: name= is not hex (at digit %zu)", line,
				 2 * i + (hi < 0 ? 1 : 2));
			return -1;
		}
		k->name[i] = (unsigned char)(hi << 4 | lo);
		acc |= k->name[i];
	}
	if (!acc) {
		snprintf(err, errlen, "line %d: name= is all zero (leave it out for a derived name)",
			 line);
		return -1;
	}
	return 0;
}

/* A decimal number 0..max, no sign, at most 19 digits. */
static int parse_num(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

struct field {
	const char *p;
	size_t len;
};

/* Split s[0, len) at spaces and tabs. Returns the number of fields (at most
 * MAX_FIELDS + 1: more are not counted). */
static int split(const char *s, size_t len, struct field f[MAX_FIELDS + 1])
{
	int n = 0;

	for (size_t i = 0; i < len;) {
		while (i < len && is_space(s[i]))
			i++;
		if (i == len)
			break;
		if (n == MAX_FIELDS + 1)
			return n;
		f[n].p = s + i;
		while (i < len && !is_space(s[i]))
			i++;
		f[n].len = (size_t)(s + i - f[n].p);
		n++;
	}
	return n;
}

static int field_is(const struct field *f, const char *word)
{
	return f->len == strlen(word) && memcmp(f->p, word, f->len) == 0;
}

/* "interval=N", "lifetime=N" or "generation=N" in the header. */
static int parse_option(const struct field *f, int line, struct keyset *ks, char *err,
			size_t errlen)
{
	const char *eq = memchr(f->p, '=', f->len);
	size_t klen = eq ? (size_t)(eq - f->p) : f->len;
	unsigned int *dst = NULL;
	uint64_t v;

	if (klen == 8 && memcmp(f->p, "interval", 8) == 0)
		dst = &ks->interval;
	else if (klen == 8 && memcmp(f->p, "lifetime", 8) == 0)
		dst = &ks->lifetime;
	if (eq && klen == 10 && memcmp(f->p, "generation", 10) == 0) {
		if (parse_num(eq + 1, f->len - klen - 1, UINT64_MAX / 2, &ks->generation) < 0) {
			snprintf(err, errlen, "line %d: generation must be a number", line);
			return -1;
		}
		return 0;
	}
	if (!dst || !eq) {
		snprintf(err, errlen, "line %d: unknown header option '%.*s' (want interval=S, "
				      "lifetime=S or generation=N)",
			 line, (int)(f->len > 40 ? 40 : f->len), f->p);
		return -1;
	}
	unsigned int min = dst == &ks->interval ? KEYSET_INTERVAL_MIN : KEYSET_LIFETIME_MIN;

	if (parse_num(eq + 1, f->len - klen - 1, KTS_SESSION_LIFETIME_MAX, &v) < 0 || v < min) {
		snprintf(err, errlen, "line %d: %.*s must be %u..%d seconds", line, (int)klen, f->p,
			 min, KTS_SESSION_LIFETIME_MAX);
		return -1;
	}
	*dst = (unsigned int)v;
	return 0;
}

static int parse_header(const struct field *f, int nf, int line, struct keyset *ks, char *err,
			size_t errlen)
{
	if (!field_is(&f[0], "kts-ticket-keys")) {
		snprintf(err, errlen,
			 "line %d: not a kts key-set file: the first line must be 'kts-ticket-keys %d' "
			 "(ktsctl keys init writes one)",
			 line, KEYSET_VERSION);
		return -1;
	}
	if (nf < 2 || !field_is(&f[1], "1")) {
		snprintf(err, errlen, "line %d: key-set format version %.*s, this kts reads %d", line,
			 nf < 2 ? 1 : (int)(f[1].len > 20 ? 20 : f[1].len), nf < 2 ? "?" : f[1].p,
			 KEYSET_VERSION);
		return -1;
	}
	for (int i = 2; i < nf; i++)
		if (i == MAX_FIELDS || parse_option(&f[i], line, ks, err, errlen) < 0) {
			if (i == MAX_FIELDS)
				snprintf(err, errlen, "line %d: too many header fields", line);
			return -1;
		}
	return 0;
}

static int parse_key(const struct field *f, int nf, int line, struct kts_ticket_key *k, char *err,
		     size_t errlen)
{
	static const char *const what[] = {"keyrev", "encrypt_from", "encrypt_until",
					   "decrypt_until"};
	uint64_t v[4];

	if (nf != 5 && nf != 6) {
		snprintf(err, errlen,
			 "line %d: %d field(s), want 5 or 6: <keyrev> <encrypt_from> <encrypt_until> "
			 "<decrypt_until> <base64 key> [name=<hex>]",
			 line, nf);
		return -1;
	}
	for (int i = 0; i < 4; i++)
		if (parse_num(f[i].p, f[i].len, i ? (uint64_t)INT64_MAX : 0xffffffffu, &v[i]) < 0) {
			snprintf(err, errlen, "line %d: %s must be a decimal number%s", line, what[i],
				 i ? " of seconds since the Unix epoch" : " 0..4294967295");
			return -1;
		}
	k->keyrev = (unsigned int)v[0];
	k->encrypt_from = (int64_t)v[1];
	k->encrypt_until = (int64_t)v[2];
	k->decrypt_until = (int64_t)v[3];
	if (decode_key(f[4].p, f[4].len, line, k, err, errlen) < 0)
		return -1;
	return nf == 6 ? parse_name(f[5].p, f[5].len, line, k, err, errlen) : 0;
}

int keyset_parse(const char *buf, size_t len, struct keyset *ks, char *err, size_t errlen)
{
	size_t pos = 0;
	int line = 0, header = 0;

	memset(ks, 0, sizeof(*ks));
	ks->interval = KEYSET_INTERVAL_DEFAULT;
	ks->lifetime = KEYSET_LIFETIME_DEFAULT;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - buf) : len;
		struct field f[MAX_FIELDS + 1];
		int nf = split(buf + pos, end - pos, f);

		line++;
		pos = nl ? end + 1 : len;
		if (nf == 0 || f[0].p[0] == '#')
			continue;
		if (!header) {
			if (parse_header(f, nf, line, ks, err, errlen) < 0)
				goto fail;
			header = 1;
			continue;
		}
		if (ks->n == KTS_TICKET_KEYSET_MAX) {
			snprintf(err, errlen, "line %d: more than %d keys", line, KTS_TICKET_KEYSET_MAX);
			goto fail;
		}
		if (parse_key(f, nf, line, &ks->keys[ks->n], err, errlen) < 0)
			goto fail;
		for (size_t i = 0; i < ks->n; i++)
			if (ks->keys[i].keyrev == ks->keys[ks->n].keyrev) {
				snprintf(err, errlen, "line %d: keyrev %u is already on line %d", line,
					 ks->keys[i].keyrev, ks->line[i]);
				ks->n++; /* wiped with the rest */
				goto fail;
			}
		ks->line[ks->n++] = line;
	}
	if (!header) {
		snprintf(err, errlen, "no 'kts-ticket-keys %d' line: not a key-set file",
			 KEYSET_VERSION);
		goto fail;
	}
	return 0;
fail:
	keyset_wipe(ks);
	return -1;
}

/* " name=<hex>" for a given name, "" for a derived one. */
static void format_name(const struct kts_ticket_key *k, char *out)
{
	unsigned char acc = 0;
	size_t o;

	for (size_t j = 0; j < KTS_TICKET_KEY_NAME_LEN; j++)
		acc |= k->name[j];
	if (!acc) {
		out[0] = '\0';
		return;
	}
	o = (size_t)sprintf(out, " %s", NAME_FIELD);
	for (size_t j = 0; j < KTS_TICKET_KEY_NAME_LEN; j++)
		o += (size_t)sprintf(out + o, "%02x", k->name[j]);
}

char *keyset_format(const struct keyset *ks)
{
	size_t cap = 256 + ks->n * (B64_KEY_LEN + 150), used;
	char *text = malloc(cap);
	unsigned char b64[B64_KEY_LEN + 1];
	char name[sizeof(NAME_FIELD) + 2 * KTS_TICKET_KEY_NAME_LEN + 1];
	int w;

	if (!text)
		return NULL;
	w = snprintf(text, cap,
		     "# kts ticket keys (ktsctl(8)): keep it 0600, owned by the server's user.\n"
		     "kts-ticket-keys %d interval=%u lifetime=%u",
		     KEYSET_VERSION, ks->interval, ks->lifetime);
	used = (size_t)w;
	if (ks->generation)
		used += (size_t)snprintf(text + used, cap - used, " generation=%" PRIu64,
					 ks->generation);
	used += (size_t)snprintf(text + used, cap - used,
				 "\n# keyrev encrypt_from encrypt_until decrypt_until key [name=hex]\n");
	for (size_t i = 0; i < ks->n; i++) {
		const struct kts_ticket_key *k = &ks->keys[i];

		EVP_EncodeBlock(b64, k->key, k->aes_bits == 128 ? KEY128_LEN : KTS_TICKET_KEY_LEN);
		format_name(k, name);
		w = snprintf(text + used, cap - used, "%u %" PRId64 " %" PRId64 " %" PRId64 " %s%s\n",
			     k->keyrev, k->encrypt_from, k->encrypt_until, k->decrypt_until, b64, name);
		used += (size_t)w;
	}
	OPENSSL_cleanse(b64, sizeof(b64));
	return text;
}

void keyset_text_free(char *text)
{
	if (text)
		OPENSSL_clear_free(text, strlen(text));
}

int keyset_check_stat(const struct stat *st, uid_t uid, char *err, size_t errlen)
{
	return secretfile_check_stat(st, uid, err, errlen);
}

int keyset_load(const char *path, uid_t uid, struct keyset *ks, struct stat *stp, char *err,
		size_t errlen)
{
	char why[256], *buf;
	size_t got;
	int rc = -1;

	memset(ks, 0, sizeof(*ks));
	if (secretfile_read(path, uid, KEYSET_MAX_SIZE, &buf, &got, stp, err, errlen) < 0)
		return -1;
	if (keyset_parse(buf, got, ks, why, sizeof(why)) < 0)
		snprintf(err, errlen, "%s: %s", path, why);
	else
		rc = 0;
	secretfile_free(buf, got);
	return rc;
}

int keyset_save(const char *path, const struct keyset *ks, uid_t uid, gid_t gid, char *err,
		size_t errlen)
{
	char *text = keyset_format(ks);
	int rc;

	if (!text) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	rc = atomicfile_write(path, text, strlen(text), uid, gid, err, errlen);
	keyset_text_free(text);
	return rc;
}

void keyset_fingerprint(const struct kts_ticket_key *k, char out[32])
{
	unsigned char md[32];
	unsigned int len = 0;

	if (EVP_Digest(k->key, sizeof(k->key), md, &len, EVP_sha256(), NULL) != 1 || len != 32) {
		snprintf(out, 32, "sha256:?");
		return;
	}
	snprintf(out, 32, "sha256:%02x%02x%02x%02x%02x%02x%02x%02x", md[0], md[1], md[2], md[3],
		 md[4], md[5], md[6], md[7]);
}

void keyset_wipe(struct keyset *ks)
{
	OPENSSL_cleanse(ks->keys, sizeof(ks->keys));
	ks->n = 0;
}
