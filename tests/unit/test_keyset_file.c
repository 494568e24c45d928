/*
 * test_keyset_file.c - the ticket key-set file (tools/keyset.c) and the
 * schedule ktsctl gives keys (tools/keyrotate.c): parsing and every error
 * naming its line, formatting that reads back the same, the owner and mode
 * checks, atomic saving (0600, the owner kept, nothing left behind), and
 * init and rotate over a controlled clock until every key is gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "keyrotate.h"
#include "keyset.h"

#define KEYLEN KTS_TICKET_KEY_LEN

/* Base64 of 64 bytes: byte i = seed + i (never an all-zero half for seed >= 1). */
static void b64_key(int seed, char out[89])
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char k[66];
	size_t o = 0;

	for (int i = 0; i < 64; i++)
		k[i] = (unsigned char)(seed + i);
	k[64] = k[65] = 0;
	for (int i = 0; i < 66; i += 3) {
		unsigned v = (unsigned)k[i] << 16 | (unsigned)k[i + 1] << 8 | k[i + 2];

		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	out[86] = out[87] = '=';
	out[88] = '\0';
}

static struct keyset ks;

#define NAME_HEX "6e67696e782d6b65792d6e616d652d41" /* "nginx-key-name-A" */
/* Base64 of 32 bytes 1..32: an AES-128 key and its 16-byte HMAC key. */
#define KEY128_B64 "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="

static int parse(const char *text, char *err)
{
	err[0] = '\0';
	return keyset_parse(text, strlen(text), &ks, err, 256);
}

static void parse_fails(const char *text, const char *want)
{
	char err[256];

	assert_int_equal(parse(text, err), -1);
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
	assert_int_equal(ks.n, 0);
}

static void test_parse(void **state)
{
	char k1[89], k2[89], text[1024], err[256];

	(void)state;
	b64_key(1, k1);
	b64_key(2, k2);
	snprintf(text, sizeof(text),
		 "# keys\n\n  kts-ticket-keys\t1 lifetime=7200\r\n1 100 200 300 %s\n  \t\r\n"
		 "4294967295\t0 9223372036854775807 9223372036854775807  %s  \r\n# end",
		 k1, k2);
	assert_int_equal(parse(text, err), 0);
	assert_int_equal(ks.n, 2);
	assert_int_equal(ks.interval, KEYSET_INTERVAL_DEFAULT);
	assert_int_equal(ks.lifetime, 7200);
	assert_int_equal(ks.keys[0].keyrev, 1);
	assert_int_equal(ks.keys[0].encrypt_from, 100);
	assert_int_equal(ks.keys[0].encrypt_until, 200);
	assert_int_equal(ks.keys[0].decrypt_until, 300);
	assert_int_equal(ks.keys[0].key[0], 1);
	assert_int_equal(ks.keys[0].key[63], 64);
	assert_int_equal(ks.line[0], 4);
	assert_int_equal(ks.keys[1].keyrev, 4294967295u);
	assert_true(ks.keys[1].decrypt_until == INT64_MAX);
	assert_int_equal(ks.line[1], 6);
	assert_int_equal(parse("kts-ticket-keys 1", err), 0); /* an empty set parses */
	assert_int_equal(ks.n, 0);
	keyset_wipe(&ks);
}

static void test_parse_errors(void **state)
{
	char k1[89], k2[89], bad[89], text[1024];

	(void)state;
	b64_key(1, k1);
	b64_key(2, k2);
	parse_fails("", "no 'kts-ticket-keys 1' line");
	parse_fails("# only\n\n", "no 'kts-ticket-keys 1' line");
	snprintf(text, sizeof(text), "1 %s\n", k1); /* the format before schedules */
	parse_fails(text, "line 1: not a kts key-set file");
	parse_fails("kts-ticket-keys 2\n", "line 1: key-set format version 2, this kts reads 1");
	parse_fails("kts-ticket-keys\n", "line 1: key-set format version ?");
	parse_fails("kts-ticket-keys 1 interval=9\n", "line 1: interval must be 10..604800");
	parse_fails("kts-ticket-keys 1 lifetime=59\n", "line 1: lifetime must be 60..604800");
	parse_fails("kts-ticket-keys 1 lifetime=604801\n", "line 1: lifetime must be 60..604800");
	parse_fails("kts-ticket-keys 1 lifetime\n", "line 1: unknown header option 'lifetime'");
	parse_fails("kts-ticket-keys 1 colour=red\n", "line 1: unknown header option 'colour=red'");
	parse_fails("kts-ticket-keys 1 generation=x\n", "line 1: generation must be a number");
	parse_fails("kts-ticket-keys 1 generation=\n", "line 1: generation must be a number");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 2 %s\n4294967296 0 1 2 %s\n", k1, k2);
	parse_fails(text, "line 3: keyrev must be a decimal number 0..4294967295");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n-1 0 1 2 %s\n", k1);
	parse_fails(text, "line 2: keyrev must be");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0x1 1 2 %s\n", k1);
	parse_fails(text, "line 2: encrypt_from must be a decimal number of seconds");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 9223372036854775808 %s\n", k1);
	parse_fails(text, "line 2: decrypt_until must be");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 %s\n", k1);
	parse_fails(text, "line 2: 4 field(s), want 5");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 2 %s extra\n", k1);
	parse_fails(text, "line 2: the 6th field must be name=<32 hex digits>");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 2 %s name=%s x\n", k1, NAME_HEX);
	parse_fails(text, "line 2: 7 field(s), want 5 or 6");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n5 0 1 2 %s\n6 0 1 2 %s\n5 0 1 2 %s\n", k1,
		 k2, k2);
	parse_fails(text, "line 4: keyrev 5 is already on line 2");

	memcpy(bad, k1, sizeof(bad));
	bad[10] = '-';
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n2 0 1 2 %s\n", bad);
	parse_fails(text, "line 2: key is not valid base64 ('-' at character 11)");
	bad[10] = '\1';
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n2 0 1 2 %s\n", bad);
	parse_fails(text, "byte 0x01 at character 11");
	memcpy(bad, k1, sizeof(bad));
	bad[87] = '\0';
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n2 0 1 2 %s\n", bad);
	parse_fails(text, "not a multiple of 4");
	bad[84] = '\0'; /* no padding: 63 bytes */
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n2 0 1 2 %s\n", bad);
	parse_fails(text, "line 2: key is 63 bytes, must be 64");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n2 0 1 2 %sAAAA\n", k1);
	parse_fails(text, "base64");
}

/* 32-byte keys (AES-128) and given names: read, and errors naming the line. */
static void test_parse_shared_keys(void **state)
{
	char k1[89], text[1024], err[256];

	(void)state;
	b64_key(1, k1);
	snprintf(text, sizeof(text),
		 "kts-ticket-keys 1\n1 0 1 2 %s\n2 0 1 2 %s name=%s\n3 0 1 2 %s name=%s\n",
		 KEY128_B64, k1, NAME_HEX, KEY128_B64, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE");
	assert_int_equal(parse(text, err), 0);
	assert_int_equal(ks.n, 3);
	assert_int_equal(ks.keys[0].aes_bits, 128);
	assert_int_equal(ks.keys[0].key[0], 1);
	assert_int_equal(ks.keys[0].key[31], 32);
	for (int i = 32; i < KEYLEN; i++)
		assert_int_equal(ks.keys[0].key[i], 0);
	for (int i = 0; i < KTS_TICKET_KEY_NAME_LEN; i++)
		assert_int_equal(ks.keys[0].name[i], 0); /* derived */
	assert_int_equal(ks.keys[1].aes_bits, 0);
	assert_memory_equal(ks.keys[1].name, "nginx-key-name-A", KTS_TICKET_KEY_NAME_LEN);
	assert_int_equal(ks.keys[2].name[0], 0xff);
	assert_int_equal(ks.keys[2].name[15], 0xfe);
	keyset_wipe(&ks);

	snprintf(text, sizeof(text), "kts-ticket-keys 1\n\n1 0 1 2 %s name=%.31s\n", k1, NAME_HEX);
	parse_fails(text, "line 3: name= takes 32 hex digits (16 bytes), got 31");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 2 %s name=%.30sxg\n", k1, NAME_HEX);
	parse_fails(text, "line 2: name= is not hex (at digit 31)");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 2 %s name=%032d\n", k1, 0);
	parse_fails(text, "line 2: name= is all zero (leave it out for a derived name)");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 2 %s nom=%s\n", k1, NAME_HEX);
	parse_fails(text, "line 2: the 6th field must be name=");
	snprintf(text, sizeof(text), "kts-ticket-keys 1\n1 0 1 2 %.40s\n", KEY128_B64);
	parse_fails(text, "line 2: key is 30 bytes, must be 64 (AES-256 key then HMAC-SHA256 key) "
			  "or 32 (AES-128 key then 16-byte HMAC key)");
}

static void test_too_many(void **state)
{
	char k[89], *text = malloc(KEYSET_MAX_SIZE), err[256];
	size_t used;

	(void)state;
	assert_non_null(text);
	used = (size_t)snprintf(text, KEYSET_MAX_SIZE, "kts-ticket-keys 1\n");
	for (int i = 0; i <= KTS_TICKET_KEYSET_MAX; i++) {
		b64_key(i + 1, k);
		used += (size_t)snprintf(text + used, KEYSET_MAX_SIZE - used, "%d 0 1 2 %s\n", i, k);
	}
	assert_int_equal(parse(text, err), -1);
	assert_string_equal(err, "line 34: more than 32 keys");
	free(text);
}

static void test_format_round_trip(void **state)
{
	struct keyset *a = calloc(1, sizeof(*a));
	char err[256], *text;

	(void)state;
	assert_non_null(a);
	a->interval = 900;
	a->lifetime = 1800;
	assert_int_equal(keyrotate_init(a, 1000000, err, sizeof(err)), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(keyrotate_rotate(a, 1000000 + i * 900, 1, err, sizeof(err)), 1);
	text = keyset_format(a);
	assert_non_null(text);
	assert_non_null(strstr(text, "kts-ticket-keys 1 interval=900 lifetime=1800\n"));
	assert_int_equal(keyset_parse(text, strlen(text), &ks, err, sizeof(err)), 0);
	assert_int_equal(ks.n, a->n);
	assert_memory_equal(ks.keys, a->keys, a->n * sizeof(a->keys[0]));
	assert_int_equal(ks.interval, 900);
	assert_int_equal(ks.lifetime, 1800);
	assert_int_equal(ks.generation, 0);
	keyset_text_free(text);
	keyset_wipe(&ks);
	/* A fleet's generation (ktsctl keys sync) comes back too. */
	a->generation = 12345678901ULL;
	text = keyset_format(a);
	assert_non_null(strstr(text, "kts-ticket-keys 1 interval=900 lifetime=1800 "
				     "generation=12345678901\n"));
	assert_int_equal(keyset_parse(text, strlen(text), &ks, err, sizeof(err)), 0);
	assert_int_equal(ks.generation, 12345678901ULL);
	a->generation = 0;
	keyset_text_free(text);
	keyset_wipe(&ks);
	/* An AES-128 key and a given name come back as they were. */
	memset(a->keys[1].key + 32, 0, KEYLEN - 32);
	a->keys[1].aes_bits = 128;
	memcpy(a->keys[2].name, "nginx-key-name-A", KTS_TICKET_KEY_NAME_LEN);
	text = keyset_format(a);
	assert_non_null(text);
	assert_non_null(strstr(text, " name=" NAME_HEX "\n"));
	assert_int_equal(keyset_parse(text, strlen(text), &ks, err, sizeof(err)), 0);
	assert_int_equal(ks.n, a->n);
	assert_memory_equal(ks.keys, a->keys, a->n * sizeof(a->keys[0]));
	keyset_text_free(text);
	keyset_wipe(a);
	keyset_wipe(&ks);
	free(a);
}

static void test_stat(void **state)
{
	struct stat st;
	char err[256];

	(void)state;
	memset(&st, 0, sizeof(st));
	st.st_mode = S_IFREG | 0600;
	st.st_uid = 1000;
	assert_int_equal(keyset_check_stat(&st, 1000, err, sizeof(err)), 0);
	assert_int_equal(keyset_check_stat(&st, (uid_t)-1, err, sizeof(err)), 0);
	st.st_mode = S_IFREG | 0400;
	assert_int_equal(keyset_check_stat(&st, 1000, err, sizeof(err)), 0);
	st.st_mode = S_IFREG | 0640;
	assert_int_equal(keyset_check_stat(&st, 1000, err, sizeof(err)), -1);
	assert_string_equal(err, "mode is 0640, must give group and others no access (0600 or 0400)");
	st.st_mode = S_IFREG | 0604;
	assert_int_equal(keyset_check_stat(&st, (uid_t)-1, err, sizeof(err)), -1);
	st.st_mode = S_IFREG | 0600;
	assert_int_equal(keyset_check_stat(&st, 0, err, sizeof(err)), -1);
	assert_string_equal(err, "owned by uid 1000, must be owned by uid 0 (the server's)");
	st.st_mode = S_IFDIR | 0700;
	assert_int_equal(keyset_check_stat(&st, 1000, err, sizeof(err)), -1);
	assert_string_equal(err, "not a regular file (a directory)");
	st.st_mode = S_IFIFO | 0600;
	assert_int_equal(keyset_check_stat(&st, 1000, err, sizeof(err)), -1);
	assert_string_equal(err, "not a regular file (a FIFO)");
}

/* Files in dir (to see that a save leaves no temporary file behind). */
static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_save_load(void **state)
{
	char dir[] = "/tmp/kts-keyset-XXXXXX", path[64], err[512];
	struct keyset *a = calloc(1, sizeof(*a));
	struct stat st;

	(void)state;
	assert_non_null(a);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ticket.keys", dir);
	a->interval = a->lifetime = 3600;
	assert_int_equal(keyrotate_init(a, 5000, err, sizeof(err)), 0);
	umask(022); /* the file is 0600 whatever the umask */
	assert_int_equal(keyset_save(path, a, (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(entries(dir), 1);
	assert_int_equal(keyset_load(path, geteuid(), &ks, NULL, err, sizeof(err)), 0);
	assert_int_equal(ks.n, 1);
	assert_memory_equal(&ks.keys[0], &a->keys[0], sizeof(a->keys[0]));
	/* Replaced whole: a second save is a new inode with the new set. */
	assert_int_equal(keyrotate_rotate(a, 5000 + 3600, 0, err, sizeof(err)), 1);
	assert_int_equal(keyset_save(path, a, (uid_t)-1, (gid_t)-1, err, sizeof(err)), 0);
	assert_int_equal(keyset_load(path, geteuid(), &ks, NULL, err, sizeof(err)), 0);
	assert_int_equal(ks.n, 2);
	assert_int_equal(entries(dir), 1);
	/* What the server refuses, named with the path. */
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(keyset_load(path, geteuid(), &ks, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "ticket.keys: mode is 0644"));
	assert_int_equal(keyset_load(path, geteuid() + 1, &ks, NULL, err, sizeof(err)), -1);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(keyset_load(path, geteuid() + 1, &ks, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "must be owned by uid"));
	unlink(path);
	assert_int_equal(keyset_load(path, geteuid(), &ks, NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
	/* A directory that is not there: an error, nothing half-written. */
	snprintf(path, sizeof(path), "%s/none/ticket.keys", dir);
	assert_int_equal(keyset_save(path, a, (uid_t)-1, (gid_t)-1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot create a temporary file"));
	assert_int_equal(rmdir(dir), 0);
	keyset_wipe(a);
	keyset_wipe(&ks);
	free(a);
}

/* init, then a rotation every interval for a day: at every moment one key
 * seals, each key was staged a whole interval first, every ticket can be
 * opened for a whole lifetime, and the set stays small. */
static void test_schedule(void **state)
{
	const int64_t R = 3600, L = 7200, t0 = 1700000000;
	struct keyset *a = calloc(1, sizeof(*a));
	char msg[256];

	(void)state;
	assert_non_null(a);
	a->interval = (unsigned)R;
	a->lifetime = (unsigned)L;
	assert_int_equal(keyrotate_init(a, t0, msg, sizeof(msg)), 0);
	assert_int_equal(a->n, 1);
	assert_int_equal(a->keys[0].keyrev, 1);
	assert_true(a->keys[0].encrypt_from == t0 && a->keys[0].encrypt_until == t0 + 2 * R &&
		    a->keys[0].decrypt_until == t0 + 2 * R + L);
	for (int64_t now = t0; now < t0 + 24 * R; now += R) {
		const struct kts_ticket_key *k;

		assert_int_equal(keyrotate_rotate(a, now, 0, msg, sizeof(msg)), 1);
		k = &a->keys[a->n - 1];
		assert_true(k->encrypt_from >= now + R); /* staged a whole interval */
		assert_true(k->decrypt_until - k->encrypt_until == L);
		assert_true(a->n <= 5);
		/* A timer that fires twice adds nothing. */
		assert_int_equal(keyrotate_rotate(a, now + 60, 0, msg, sizeof(msg)), 0);
		assert_non_null(strstr(msg, "nothing to rotate: a key is staged"));
		for (int64_t t = now; t < now + R; t += 60) {
			int seal = kts_ticket_keys_encrypting(a->keys, a->n, t);

			assert_true(seal >= 0);
			assert_true(a->keys[seal].decrypt_until - t >= L);
		}
	}
	/* A late rotation leaves no gap: skip one, the active key still seals. */
	{
		int64_t now = t0 + 25 * R;

		for (int64_t t = now; t < now + R; t += 60)
			assert_true(kts_ticket_keys_encrypting(a->keys, a->n, t) >= 0);
		assert_int_equal(keyrotate_rotate(a, now + R / 2, 0, msg, sizeof(msg)), 1);
	}
	/* keyrevs count up; gone keys are dropped by the next rotation. */
	assert_int_equal(a->keys[a->n - 1].keyrev, 26);
	for (size_t i = 0; i < a->n; i++)
		assert_true(kts_ticket_key_state(&a->keys[i], t0 + 25 * R + R / 2) != KTS_KEY_GONE);
	assert_int_equal(keyrotate_rotate(a, t0 + 100 * R, 1, msg, sizeof(msg)), 1);
	assert_int_equal(a->n, 1); /* all gone, then one new (staged) */
	assert_non_null(strstr(msg, "gone key(s) dropped"));
	keyset_wipe(a);
	free(a);
}

static void test_rotate_full(void **state)
{
	struct keyset *a = calloc(1, sizeof(*a));
	char msg[256];

	(void)state;
	assert_non_null(a);
	a->interval = 60;
	a->lifetime = 604800; /* a week of minute keys cannot fit */
	assert_int_equal(keyrotate_init(a, 0, msg, sizeof(msg)), 0);
	for (int i = 0; i < KTS_TICKET_KEYSET_MAX - 1; i++)
		assert_int_equal(keyrotate_rotate(a, i * 60, 0, msg, sizeof(msg)), 1);
	assert_int_equal(keyrotate_rotate(a, KTS_TICKET_KEYSET_MAX * 60, 0, msg, sizeof(msg)), -1);
	assert_non_null(strstr(msg, "already holds 32 keys"));
	keyset_wipe(a);
	free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),	      cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_shared_keys),
		cmocka_unit_test(test_too_many),      cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_stat),	      cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_schedule),      cmocka_unit_test(test_rotate_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
