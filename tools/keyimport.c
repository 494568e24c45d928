/* keyimport.c - ticket keys in other servers' key files; see keyimport.h. */
#include "keyimport.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define NAME_LEN KTS_TICKET_KEY_NAME_LEN
#define B64_MAX (4 * ((KEYFMT_RAW_MAX + 2) / 3)) /* 108 characters */

static const struct keyfmt formats[] = {
	{"nginx", 80, 48, 16, 0},
	{"nginx48", 48, 16, 32, 0},
	{"haproxy", 80, 16, 48, 1},
	{"haproxy48", 48, 16, 32, 1},
	{"envoy", 80, 48, 16, 0},
};

const char keyfmt_names[] = "nginx, nginx48, haproxy, haproxy48, envoy";

const struct keyfmt *keyfmt_find(const char *name)
{
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (strcmp(formats[i].name, name) == 0)
			return &formats[i];
	return NULL;
}

/* Half of a format's 64 or 32 key bytes: the AES key, and the HMAC key. */
static size_t half_of(const struct keyfmt *f)
{
	return (f->len - NAME_LEN) / 2;
}

int keyfmt_decode(const struct keyfmt *f, const unsigned char *raw, size_t len,
		  struct kts_ticket_key *k, char *err, size_t errlen)
{
	size_t h = half_of(f);
	unsigned char acc = 0;

	if (len != f->len) {
		const char *other = len == 48 ? (f->haproxy ? "haproxy48" : "nginx48")
				    : len == 80 ? (f->haproxy ? "haproxy" : "nginx or envoy")
						: NULL;

		snprintf(err, errlen, "%zu bytes, --format %s takes %zu%s%s", len, f->name, f->len,
			 other ? ": this size is --format " : "", other ? other : "");
		return -1;
	}
	for (size_t i = 0; i < NAME_LEN; i++)
		acc |= raw[i];
	if (!acc) {
		/* kts reads an all-zero name as "derive one". */
		snprintf(err, errlen, "the key name (first 16 bytes) is all zero: kts cannot keep it");
		return -1;
	}
	memset(k, 0, sizeof(*k));
	memcpy(k->name, raw, NAME_LEN);
	memcpy(k->key, raw + f->aes_at, h);
	memcpy(k->key + h, raw + f->hmac_at, h);
	k->aes_bits = h == 16 ? 128 : 0;
	return 0;
}

int keyfmt_encode(const struct keyfmt *f, const struct kts_ticket_key *k,
		  unsigned char out[KEYFMT_RAW_MAX], char *err, size_t errlen)
{
	size_t h = half_of(f);
	int is128 = k->aes_bits == 128;

	if (is128 != (h == 16)) {
		snprintf(err, errlen,
			 "keyrev %u is an AES-%s key; --format %s takes AES-%s keys (%zu-byte files)%s",
			 k->keyrev, is128 ? "128" : "256", f->name, h == 16 ? "128" : "256", f->len,
			 is128 ? ": use nginx48 or haproxy48" : "");
		return -1;
	}
	if (kts_ticket_key_name(k, out) != KTS_OK) {
		snprintf(err, errlen, "keyrev %u: cannot compute its name", k->keyrev);
		return -1;
	}
	memcpy(out + f->aes_at, k->key, h);
	memcpy(out + f->hmac_at, k->key + h, h);
	return 0;
}

/* One HAProxy line s[0, len) (no line end): a base64 key of f's size. */
static int haproxy_line(const struct keyfmt *f, const char *s, size_t len, int line,
			struct kts_ticket_key *k, char *err, size_t errlen)
{
	unsigned char raw[B64_MAX / 4 * 3];
	char why[160];
	size_t pad = 0, bytes;
	int rc = -1;

	for (size_t i = 0; i < len; i++) {
		int b64 = (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
			  (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '/';

		if ((b64 && pad == 0) || (s[i] == '=' && ++pad <= 2))
			continue;
		snprintf(err, errlen, "line %d: not a base64 key (character %zu)", line, i + 1);
		return -1;
	}
	if (len == 0 || len % 4 || len > B64_MAX) {
		snprintf(err, errlen, "line %d: not a base64 key of %zu bytes (%zu characters)", line,
			 f->len, len);
		return -1;
	}
	bytes = len / 4 * 3 - pad;
	if (EVP_DecodeBlock(raw, (const unsigned char *)s, (int)len) != (int)(len / 4 * 3))
		snprintf(err, errlen, "line %d: not valid base64", line);
	else if (keyfmt_decode(f, raw, bytes, k, why, sizeof(why)) < 0)
		snprintf(err, errlen, "line %d: %s", line, why);
	else
		rc = 0;
	OPENSSL_cleanse(raw, sizeof(raw));
	return rc;
}

/* keys[slot[0, got)] in file order into keys[0, *n), identical lines once;
 * *enc gets the key of seal_line. 0, or -1: a name twice with other bytes. */
static int dedupe(struct kts_ticket_key *keys, const size_t *slot, const int *line_of, size_t got,
		  int seal_line, size_t *n, size_t *enc, char *err, size_t errlen)
{
	struct kts_ticket_key out[KEYFMT_HAPROXY_KEYS];
	int rc = 0;

	*n = 0;
	for (size_t i = 0; i < got && rc == 0; i++) {
		const struct kts_ticket_key *c = &keys[slot[i]];
		size_t j = 0;

		while (j < *n && memcmp(out[j].name, c->name, NAME_LEN) != 0)
			j++;
		if (j < *n && CRYPTO_memcmp(out[j].key, c->key, sizeof(c->key)) != 0) {
			snprintf(err, errlen, "line %d: the key name of an earlier line with other bytes",
				 line_of[slot[i]]);
			rc = -1;
		}
		if (j == *n)
			out[(*n)++] = *c;
		if (line_of[slot[i]] == seal_line)
			*enc = j;
	}
	if (rc == 0)
		memcpy(keys, out, *n * sizeof(out[0]));
	OPENSSL_cleanse(out, sizeof(out));
	return rc;
}

int keyfmt_haproxy_parse(const struct keyfmt *f, const char *text, size_t len,
			 struct kts_ticket_key keys[KEYFMT_HAPROXY_KEYS], size_t *n, size_t *enc,
			 char *err, size_t errlen)
{
	int lines = 0, line_of[KEYFMT_HAPROXY_KEYS];
	size_t slot[KEYFMT_HAPROXY_KEYS], got = 0;

	*n = 0;
	/* HAProxy's ring: line i goes to slot i % 3, so the last 3 lines stay. */
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len, l = end - pos;
		size_t at = (size_t)lines % KEYFMT_HAPROXY_KEYS;

		if (l && text[pos + l - 1] == '\r')
			l--;
		lines++;
		if (haproxy_line(f, text + pos, l, lines, &keys[at], err, errlen) < 0)
			goto fail;
		line_of[at] = lines;
		pos = nl ? end + 1 : len;
	}
	if (lines == 0) {
		snprintf(err, errlen, "no keys (one base64 key per line)");
		return -1;
	}
	for (int l = lines > KEYFMT_HAPROXY_KEYS ? lines - KEYFMT_HAPROXY_KEYS : 0; l < lines; l++)
		slot[got++] = (size_t)l % KEYFMT_HAPROXY_KEYS;
	/* HAProxy seals under the penultimate line (the only one, alone). */
	if (dedupe(keys, slot, line_of, got, lines >= 2 ? lines - 1 : 1, n, enc, err, errlen) == 0)
		return 0;
fail:
	OPENSSL_cleanse(keys, KEYFMT_HAPROXY_KEYS * sizeof(keys[0]));
	*n = 0;
	return -1;
}

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int keyimport_build(struct keyset *ks, const struct kts_ticket_key *in, size_t n, size_t enc,
		    int64_t now, char *err, size_t errlen)
{
	int distinct = 1;

	keyset_wipe(ks);
	if (n == 0 || n > KTS_TICKET_KEYSET_MAX || enc >= n) {
		snprintf(err, errlen, "%zu keys: want 1..%d", n, KTS_TICKET_KEYSET_MAX);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			distinct = distinct && be32(in[i].name) != be32(in[j].name);
	for (size_t i = 0; i < n; i++) {
		struct kts_ticket_key *k = &ks->keys[i];

		*k = in[i];
		k->keyrev = distinct ? be32(in[i].name) : (unsigned int)i + 1;
		/* The sealing key as keys init makes one; the others retired now,
		 * opening the tickets already out for one lifetime. */
		k->encrypt_from = now;
		k->encrypt_until = i == enc ? now + 2 * (int64_t)ks->interval : now;
		k->decrypt_until = k->encrypt_until + (int64_t)ks->lifetime;
		ks->line[i] = 0;
	}
	ks->n = n;
	if (kts_ticket_keys_check(ks->keys, ks->n, now, err, errlen) != KTS_OK) {
		keyset_wipe(ks);
		return -1;
	}
	return 0;
}

/* Sort idx[0, n) by encrypt_from, newest first (a handful: insertion). */
static void newest_first(const struct keyset *ks, size_t *idx, size_t n)
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && ks->keys[idx[j]].encrypt_from >
						    ks->keys[idx[j - 1]].encrypt_from;
		     j--) {
			size_t t = idx[j];

			idx[j] = idx[j - 1];
			idx[j - 1] = t;
		}
}

int keyexport_order(const struct keyset *ks, int64_t now, size_t order[KTS_TICKET_KEYSET_MAX],
		    char *err, size_t errlen)
{
	int seal = kts_ticket_keys_encrypting(ks->keys, ks->n, now);
	size_t staged[KTS_TICKET_KEYSET_MAX], retired[KTS_TICKET_KEYSET_MAX], ns = 0, nr = 0, n = 0;

	if (seal < 0) {
		snprintf(err, errlen, "no key seals now: nothing for a server to seal under");
		return -1;
	}
	for (size_t i = 0; i < ks->n; i++) {
		enum kts_ticket_key_state s = kts_ticket_key_state(&ks->keys[i], now);

		if ((int)i == seal || s == KTS_KEY_GONE)
			continue;
		if (s == KTS_KEY_STAGED)
			staged[ns++] = i;
		else
			retired[nr++] = i;
	}
	newest_first(ks, staged, ns);
	newest_first(ks, retired, nr);
	order[n++] = (size_t)seal;
	memcpy(order + n, staged, ns * sizeof(*order));
	n += ns;
	memcpy(order + n, retired, nr * sizeof(*order));
	return (int)(n + nr);
}

size_t keyexport_haproxy_lines(const struct keyset *ks, const size_t *order, size_t n,
			       int64_t now, size_t lines[KEYFMT_HAPROXY_KEYS])
{
	size_t left = n - 1, seal = order[0];

	lines[0] = lines[1] = lines[2] = seal;
	for (size_t i = 1; i < n; i++) {
		if (kts_ticket_key_state(&ks->keys[order[i]], now) == KTS_KEY_STAGED) {
			if (lines[2] == seal)
				left--;
			lines[2] = order[i]; /* the last staged one seals next */
		} else if (lines[0] == seal) {
			lines[0] = order[i]; /* the first retired one is the newest */
			left--;
		}
	}
	return left;
}
