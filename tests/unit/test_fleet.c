/* test_fleet.c - the fleet store's pieces that need no Redis: store URLs
 * (tools/store.c) and envelopes under a KEK (tools/envelope.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "envelope.h"
#include "store.h"

static void test_urls(void **state)
{
	struct store_url u;
	char err[256];

	(void)state;
	assert_int_equal(store_url_parse("redis://127.0.0.1:6380/prod", &u, err, sizeof(err)), 0);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6380);
	assert_string_equal(u.name, "prod");
	assert_string_equal(u.password, "");
	assert_string_equal(u.shown, "redis://127.0.0.1:6380/prod");
	assert_int_equal(store_url_parse("redis://kts:p%40ss%3Aw@db.example/eu-1.a_b", &u, err,
					 sizeof(err)), 0);
	assert_string_equal(u.user, "kts");
	assert_string_equal(u.password, "p@ss:w");
	assert_int_equal(u.port, 6379);
	assert_string_equal(u.host, "db.example");
	assert_null(strstr(u.shown, "p@ss")); /* messages never show the password */
	assert_int_equal(store_url_parse("redis://:secret@h:1/n", &u, err, sizeof(err)), 0);
	assert_string_equal(u.user, "");
	assert_string_equal(u.password, "secret");

	static const char *const bad[][2] = {
		{"http://h/n", "want redis://"},
		{"redis://h", "no /NAME"},
		{"redis://h/", "NAME is"},
		{"redis://h/a b", "NAME is"},
		{"redis://h:0/n", "bad port"},
		{"redis://h:65536/n", "bad port"},
		{"redis://h:x/n", "bad port"},
		{"redis://:1/n", "no host"},
		{"redis://nocolon@h/n", "USER:PASSWORD"},
		{"redis://u:%zz@h/n", "USER:PASSWORD"},
		{"redis://u:%00@h/n", "USER:PASSWORD"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(store_url_parse(bad[i][0], &u, err, sizeof(err)), -1);
		if (!strstr(err, bad[i][1]))
			fail_msg("%s: %s", bad[i][0], err);
	}
}

static void test_url_file(void **state)
{
	char path[] = "/tmp/kts-url-XXXXXX", err[256];
	struct store_url u;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "redis://:pw@h:7/f\n", 18), 18);
	close(fd);
	assert_int_equal(store_url_parse("@", &u, err, sizeof(err)), -1); /* no file */
	{
		char spec[64];

		snprintf(spec, sizeof(spec), "@%s", path);
		assert_int_equal(store_url_parse(spec, &u, err, sizeof(err)), 0);
		assert_string_equal(u.password, "pw");
		assert_string_equal(u.name, "f");
		chmod(path, 0644);
		assert_int_equal(store_url_parse(spec, &u, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "mode is 0644"));
	}
	unlink(path);
}

static void kek(struct kek *k, unsigned char fill)
{
	memset(k->key, fill, sizeof(k->key));
}

static void test_envelope_round_trip(void **state)
{
	static const char text[] = "kts-ticket-keys 1\n1 2 3 4 AAAA\n";
	struct kek k;
	char err[256], *env;
	size_t len, plen;
	unsigned char *plain;
	uint64_t gen;

	(void)state;
	kek(&k, 7);
	env = envelope_seal(&k, "ticket-keys", "prod", 42, text, strlen(text), &len, err,
			    sizeof(err));
	assert_non_null(env);
	assert_int_equal(strncmp(env, "kts-envelope 1 42 ", 18), 0);
	assert_int_equal(env[len - 1], '\n');
	assert_null(strstr(env, "kts-ticket-keys")); /* sealed, not in the clear */
	assert_int_equal(envelope_open(&k, "ticket-keys", "prod", env, len, &gen, &plain, &plen, err,
				       sizeof(err)), 0);
	assert_int_equal(gen, 42);
	assert_int_equal(plen, strlen(text));
	assert_memory_equal(plain, text, plen);
	envelope_free(plain, plen);
	/* Another KEK, fleet, purpose: refused. */
	kek(&k, 8);
	assert_int_equal(envelope_open(&k, "ticket-keys", "prod", env, len, &gen, &plain, &plen, err,
				       sizeof(err)), -1);
	assert_non_null(strstr(err, "fails authentication"));
	kek(&k, 7);
	assert_int_equal(envelope_open(&k, "ticket-keys", "test", env, len, &gen, &plain, &plen, err,
				       sizeof(err)), -1);
	assert_int_equal(envelope_open(&k, "sessions", "prod", env, len, &gen, &plain, &plen, err,
				       sizeof(err)), -1);
	/* A generation changed in the clear: refused (it is in the additional data). */
	env[16] = '3';
	assert_int_equal(envelope_open(&k, "ticket-keys", "prod", env, len, &gen, &plain, &plen, err,
				       sizeof(err)), -1);
	assert_non_null(strstr(err, "generation 43"));
	env[16] = '2';
	/* Every flipped bit of the sealed part is caught. */
	for (size_t i = 18; i < len - 1; i++) {
		char was = env[i];

		env[i] = was == 'A' ? 'B' : 'A';
		assert_int_equal(envelope_open(&k, "ticket-keys", "prod", env, len, &gen, &plain,
					       &plen, err, sizeof(err)), -1);
		env[i] = was;
	}
	/* The last character before '=' carries two spare bits: set one, and the
	 * bytes would be the same; the spelling is not, so it is refused. */
	assert_int_equal(env[len - 2], '=');
	assert_int_not_equal(env[len - 3], '=');
	{
		static const char b64[] =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		char was = env[len - 3];

		env[len - 3] = b64[(strchr(b64, was) - b64) ^ 1];
		err[0] = '\0';
		assert_int_equal(envelope_open(&k, "ticket-keys", "prod", env, len, &gen, &plain,
					       &plen, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "not canonical base64"));
		env[len - 3] = was;
	}
	free(env);
}

static void test_envelope_garbage(void **state)
{
	static const char *const bad[][2] = {
		{"", "not a kts envelope"},
		{"kts-envelope 2 1 AAAA", "not a kts envelope"},
		{"kts-envelope 1 x AAAA", "no generation"},
		{"kts-envelope 1 1", "no generation"},
		{"kts-envelope 1 12345678901234567890 AAAA", "no generation"},
		{"kts-envelope 1 1 AAA", "not base64"},
		{"kts-envelope 1 1 AAAA", "not base64 of at least"},
		{"kts-envelope 1 1 ****", "not base64"},
	};
	struct kek k;
	char err[256];
	unsigned char *plain;
	size_t plen;
	uint64_t gen;

	(void)state;
	kek(&k, 1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(envelope_open(&k, "p", "n", bad[i][0], strlen(bad[i][0]), &gen,
					       &plain, &plen, err, sizeof(err)), -1);
		if (!strstr(err, bad[i][1]))
			fail_msg("%s: %s", bad[i][0], err);
	}
}

static void test_kek_file(void **state)
{
	char path[] = "/tmp/kts-kek-XXXXXX", text[KEK_TEXT_LEN], err[256];
	struct kek a, b;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(kek_text_new(text, err, sizeof(err)), 0);
	assert_int_equal(strlen(text), 45); /* 44 base64 characters and a newline */
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(kek_load(path, (uid_t)-1, &a, err, sizeof(err)), 0);
	assert_int_equal(kek_load(path, geteuid(), &b, err, sizeof(err)), 0);
	assert_memory_equal(a.key, b.key, KEK_LEN);
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "c2hvcnQ=\n", 9), 9); /* "short" */
	close(fd);
	assert_int_equal(kek_load(path, (uid_t)-1, &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a KEK"));
	chmod(path, 0640);
	assert_int_equal(kek_load(path, (uid_t)-1, &a, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "mode is 0640"));
	unlink(path);
	kek_wipe(&a);
	assert_int_equal(a.key[0] | a.key[31], 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urls),
		cmocka_unit_test(test_url_file),
		cmocka_unit_test(test_envelope_round_trip),
		cmocka_unit_test(test_envelope_garbage),
		cmocka_unit_test(test_kek_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
