/*
 * test_keyimport.c - other servers' ticket key files (tools/keyimport.c):
 * the field order of every format both ways, size and name errors, the
 * HAProxy file (its last 3 lines, the penultimate sealing, errors naming the
 * line), the key set import builds (names kept, keyrevs, schedule), and the
 * order export writes keys in (sealing, staged, retired; gone never).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "keyimport.h"

#define NOW 1000000

/* Raw key i of a format: byte j = i * 40 + j + 1 (a distinct name per i). */
static void raw_key(unsigned char *raw, size_t len, unsigned int i)
{
	for (size_t j = 0; j < len; j++)
		raw[j] = (unsigned char)(i * 40 + j + 1);
}

static void expect_err(const char *err, const char *want)
{
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* name at 0, then the AES and HMAC keys where the format puts them. */
static void check_layout(const char *fmt, size_t len, size_t aes_at, size_t hmac_at)
{
	const struct keyfmt *f = keyfmt_find(fmt);
	unsigned char raw[KEYFMT_RAW_MAX], back[KEYFMT_RAW_MAX];
	struct kts_ticket_key k;
	size_t h = (len - 16) / 2;
	char err[200];

	assert_non_null(f);
	assert_int_equal(f->len, len);
	raw_key(raw, len, 1);
	assert_int_equal(keyfmt_decode(f, raw, len, &k, err, sizeof(err)), 0);
	assert_memory_equal(k.name, raw, 16);
	assert_memory_equal(k.key, raw + aes_at, h);     /* kts: AES key first */
	assert_memory_equal(k.key + h, raw + hmac_at, h); /* then the HMAC key */
	assert_int_equal(k.aes_bits, h == 16 ? 128 : 0);
	for (size_t j = 2 * h; j < KTS_TICKET_KEY_LEN; j++)
		assert_int_equal(k.key[j], 0);
	assert_int_equal(keyfmt_encode(f, &k, back, err, sizeof(err)), 0);
	assert_memory_equal(back, raw, len);
}

static void test_layouts(void **state)
{
	(void)state;
	check_layout("nginx", 80, 48, 16);
	check_layout("envoy", 80, 48, 16);
	check_layout("nginx48", 48, 16, 32);
	check_layout("haproxy", 80, 16, 48);
	check_layout("haproxy48", 48, 16, 32);
	assert_null(keyfmt_find("apache"));
}

static void test_decode_encode_errors(void **state)
{
	unsigned char raw[KEYFMT_RAW_MAX] = {0}, out[KEYFMT_RAW_MAX], name[16];
	struct kts_ticket_key k = {.keyrev = 0x01020304};
	char err[200];

	(void)state;
	assert_int_equal(keyfmt_decode(keyfmt_find("nginx"), raw, 48, &k, err, sizeof(err)), -1);
	expect_err(err, "48 bytes, --format nginx takes 80: this size is --format nginx48");
	assert_int_equal(keyfmt_decode(keyfmt_find("haproxy48"), raw, 80, &k, err, sizeof(err)), -1);
	expect_err(err, "80 bytes, --format haproxy48 takes 48: this size is --format haproxy");
	assert_int_equal(keyfmt_decode(keyfmt_find("envoy"), raw, 79, &k, err, sizeof(err)), -1);
	assert_string_equal(err, "79 bytes, --format envoy takes 80");
	raw_key(raw + 16, 64, 1);
	assert_int_equal(keyfmt_decode(keyfmt_find("nginx"), raw, 80, &k, err, sizeof(err)), -1);
	expect_err(err, "the key name (first 16 bytes) is all zero");
	/* AES sizes must match the format. */
	k = (struct kts_ticket_key){.keyrev = 0x01020304};
	raw_key(k.key, KTS_TICKET_KEY_LEN, 2);
	assert_int_equal(keyfmt_encode(keyfmt_find("nginx48"), &k, out, err, sizeof(err)), -1);
	expect_err(err, "keyrev 16909060 is an AES-256 key; --format nginx48 takes AES-128 keys");
	k.aes_bits = 128;
	memset(k.key + 32, 0, 32);
	assert_int_equal(keyfmt_encode(keyfmt_find("haproxy"), &k, out, err, sizeof(err)), -1);
	expect_err(err, "keyrev 16909060 is an AES-128 key; --format haproxy takes AES-256 keys");
	/* A derived name is exported as kts puts it in tickets. */
	assert_int_equal(keyfmt_encode(keyfmt_find("haproxy48"), &k, out, err, sizeof(err)), 0);
	assert_int_equal(kts_ticket_key_name(&k, name), KTS_OK);
	assert_memory_equal(out, name, 16);
	assert_int_equal(out[0], 1);
	assert_int_equal(out[3], 4);
}

/* A HAProxy file of n keys of len bytes (raw_key 1..n), one per line. */
static char *haproxy_file(size_t n, size_t len, const char *eol)
{
	char *text = calloc(n, 120);
	unsigned char raw[KEYFMT_RAW_MAX];
	size_t used = 0;

	assert_non_null(text);
	for (unsigned int i = 1; i <= n; i++) {
		raw_key(raw, len, i);
		used += (size_t)EVP_EncodeBlock((unsigned char *)text + used, raw, (int)len);
		used += (size_t)sprintf(text + used, "%s", eol);
	}
	return text;
}

static void test_haproxy_parse(void **state)
{
	const struct keyfmt *f = keyfmt_find("haproxy");
	struct kts_ticket_key keys[KEYFMT_HAPROXY_KEYS];
	unsigned char raw[KEYFMT_RAW_MAX];
	size_t n = 9, enc = 9;
	char err[200], *text, *line;

	(void)state;
	/* 5 lines: HAProxy keeps lines 3, 4, 5 and seals under 4. */
	text = haproxy_file(5, 80, "\r\n");
	assert_int_equal(keyfmt_haproxy_parse(f, text, strlen(text), keys, &n, &enc, err,
					      sizeof(err)),
			 0);
	assert_int_equal(n, 3);
	assert_int_equal(enc, 1);
	for (unsigned int i = 0; i < 3; i++) {
		raw_key(raw, 80, i + 3);
		assert_memory_equal(keys[i].name, raw, 16);
	}
	free(text);
	text = haproxy_file(2, 48, "\n"); /* the penultimate is the first */
	assert_int_equal(keyfmt_haproxy_parse(keyfmt_find("haproxy48"), text, strlen(text), keys,
					      &n, &enc, err, sizeof(err)),
			 0);
	assert_int_equal(n, 2);
	assert_int_equal(enc, 0);
	assert_int_equal(keys[0].aes_bits, 128);
	/* A 48-byte file is not --format haproxy. */
	assert_int_equal(keyfmt_haproxy_parse(f, text, strlen(text), keys, &n, &enc, err,
					      sizeof(err)),
			 -1);
	expect_err(err, "line 1: 48 bytes, --format haproxy takes 80");
	assert_int_equal(n, 0);
	free(text);
	/* One key, no line end. */
	text = haproxy_file(1, 80, "");
	assert_int_equal(keyfmt_haproxy_parse(f, text, strlen(text), keys, &n, &enc, err,
					      sizeof(err)),
			 0);
	assert_true(n == 1 && enc == 0);
	free(text);
	/* The same line 3 times (as export pads): one key. */
	line = haproxy_file(1, 80, "\n");
	text = malloc(400);
	assert_non_null(text);
	snprintf(text, 400, "%s%s%s", line, line, line);
	free(line);
	assert_int_equal(keyfmt_haproxy_parse(f, text, strlen(text), keys, &n, &enc, err,
					      sizeof(err)),
			 0);
	assert_true(n == 1 && enc == 0);
	text[109 + 50] = text[109 + 50] == 'A' ? 'B' : 'A'; /* line 2: same name, other bytes */
	assert_int_equal(keyfmt_haproxy_parse(f, text, strlen(text), keys, &n, &enc, err,
					      sizeof(err)),
			 -1);
	expect_err(err, "line 2: the key name of an earlier line with other bytes");
	free(text);
	text = haproxy_file(3, 80, "\n");
	text[109 + 5] = '-';
	assert_int_equal(keyfmt_haproxy_parse(f, text, strlen(text), keys, &n, &enc, err,
					      sizeof(err)),
			 -1);
	expect_err(err, "line 2: not a base64 key (character 6)");
	text[109 + 5] = 'A';
	text[108] = ' ';
	assert_int_equal(keyfmt_haproxy_parse(f, text, strlen(text), keys, &n, &enc, err,
					      sizeof(err)),
			 -1);
	expect_err(err, "line 1: not a base64 key (character 109)");
	free(text);
	assert_int_equal(keyfmt_haproxy_parse(f, "AAAA\n\nBBBB", 10, keys, &n, &enc, err,
					      sizeof(err)),
			 -1);
	expect_err(err, "line 1: 3 bytes, --format haproxy takes 80");
	assert_int_equal(keyfmt_haproxy_parse(f, "", 0, keys, &n, &enc, err, sizeof(err)), -1);
	expect_err(err, "no keys");
}

static void test_import_build(void **state)
{
	const struct keyfmt *f = keyfmt_find("nginx");
	struct kts_ticket_key in[3];
	unsigned char raw[KEYFMT_RAW_MAX];
	struct keyset ks = {.interval = 600, .lifetime = 900};
	char err[200];

	(void)state;
	for (unsigned int i = 0; i < 3; i++) {
		raw_key(raw, 80, i);
		assert_int_equal(keyfmt_decode(f, raw, 80, &in[i], err, sizeof(err)), 0);
	}
	assert_int_equal(keyimport_build(&ks, in, 3, 1, NOW, err, sizeof(err)), 0);
	assert_int_equal(ks.n, 3);
	/* keyrev: the name's first 4 bytes (distinct here), names kept. */
	assert_int_equal(ks.keys[0].keyrev, 0x01020304);
	assert_int_equal(ks.keys[1].keyrev, 0x292a2b2c);
	assert_memory_equal(ks.keys[2].name, in[2].name, 16);
	assert_int_equal(kts_ticket_keys_encrypting(ks.keys, ks.n, NOW), 1);
	assert_true(ks.keys[1].encrypt_from == NOW && ks.keys[1].encrypt_until == NOW + 1200 &&
		    ks.keys[1].decrypt_until == NOW + 2100);
	assert_int_equal(kts_ticket_key_state(&ks.keys[0], NOW), KTS_KEY_RETIRED);
	assert_true(ks.keys[0].decrypt_until == NOW + 900);
	assert_int_equal(kts_ticket_key_state(&ks.keys[2], NOW + 900), KTS_KEY_GONE);
	/* Names sharing their first 4 bytes: keyrevs count. */
	in[1].name[15] ^= 0x55;
	memcpy(in[1].name, in[0].name, 4);
	assert_int_equal(keyimport_build(&ks, in, 3, 0, NOW, err, sizeof(err)), 0);
	assert_true(ks.keys[0].keyrev == 1 && ks.keys[1].keyrev == 2 && ks.keys[2].keyrev == 3);
	/* The same key file twice: one name for two keys. */
	in[1] = in[0];
	in[1].key[0] ^= 1;
	assert_int_equal(keyimport_build(&ks, in, 3, 0, NOW, err, sizeof(err)), -1);
	expect_err(err, "has the same name as");
	assert_int_equal(ks.n, 0);
	keyset_wipe(&ks);
}

/* keyrev i + 1 with the given state at NOW. */
static void set_key(struct keyset *ks, size_t i, int64_t from, int64_t until, int64_t gone)
{
	struct kts_ticket_key *k = &ks->keys[i];

	memset(k, 0, sizeof(*k));
	k->keyrev = (unsigned int)i + 1;
	raw_key(k->key, KTS_TICKET_KEY_LEN, (unsigned int)i + 1);
	k->encrypt_from = from;
	k->encrypt_until = until;
	k->decrypt_until = gone;
}

static void test_export_order(void **state)
{
	struct keyset ks = {.n = 7};
	size_t order[KTS_TICKET_KEYSET_MAX], lines[KEYFMT_HAPROXY_KEYS];
	char err[200];

	(void)state;
	set_key(&ks, 0, NOW - 900, NOW - 500, NOW - 1);   /* 1 gone */
	set_key(&ks, 1, NOW - 800, NOW - 400, NOW + 100); /* 2 retired, older */
	set_key(&ks, 2, NOW - 700, NOW - 300, NOW + 200); /* 3 retired, newer */
	set_key(&ks, 3, NOW - 600, NOW + 600, NOW + 900); /* 4 active, superseded */
	set_key(&ks, 4, NOW - 100, NOW + 900, NOW + 999); /* 5 seals */
	set_key(&ks, 5, NOW + 300, NOW + 900, NOW + 999); /* 6 staged, later */
	set_key(&ks, 6, NOW + 200, NOW + 900, NOW + 999); /* 7 staged, sooner */
	assert_int_equal(keyexport_order(&ks, NOW, order, err, sizeof(err)), 6);
	/* seal; staged newest first; retired (the superseded one too) newest first */
	assert_int_equal(order[0], 4);
	assert_int_equal(order[1], 5);
	assert_int_equal(order[2], 6);
	assert_int_equal(order[3], 3);
	assert_int_equal(order[4], 2);
	assert_int_equal(order[5], 1);
	/* HAProxy: newest retired, sealing, staged that seals next; 3 left out. */
	assert_int_equal(keyexport_haproxy_lines(&ks, order, 6, NOW, lines), 3);
	assert_int_equal(lines[0], 3);
	assert_int_equal(lines[1], 4);
	assert_int_equal(lines[2], 6);
	/* Alone, the sealing key fills all 3 lines. */
	assert_int_equal(keyexport_haproxy_lines(&ks, order, 1, NOW, lines), 0);
	assert_true(lines[0] == 4 && lines[1] == 4 && lines[2] == 4);
	/* Nothing seals: nothing to export. */
	assert_int_equal(keyexport_order(&ks, NOW + 5000, order, err, sizeof(err)), -1);
	expect_err(err, "no key seals now");
	keyset_wipe(&ks);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layouts),
		cmocka_unit_test(test_decode_encode_errors),
		cmocka_unit_test(test_haproxy_parse),
		cmocka_unit_test(test_import_build),
		cmocka_unit_test(test_export_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
