/*
 * test_keyset.c - ticket key sets with times (kts_config_set_ticket_keys and
 * the rules in ticketkeys.c) under a test clock: every state and its edges,
 * which key seals, what a set must be, a whole rotation from staged to gone,
 * a failed replacement that keeps the old set, a clock that jumps back, and
 * an older file refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "ticketkeys.h"
#include "ring_clock.h"

#define NAME KTS_TICKET_NAME_LEN
#define KEYLEN KTS_TICKET_KEY_LEN

static struct kts_ticket_key key(unsigned int keyrev, int64_t from, int64_t until, int64_t gone)
{
	struct kts_ticket_key k = {
		.keyrev = keyrev, .encrypt_from = from, .encrypt_until = until, .decrypt_until = gone};

	for (int i = 0; i < KEYLEN; i++)
		k.key[i] = (unsigned char)(keyrev * 31 + (unsigned int)i * 7 + 1);
	return k;
}

static void test_states(void **state)
{
	struct kts_ticket_key k = key(1, 100, 200, 300);

	(void)state;
	assert_int_equal(kts_ticket_key_state(&k, 99), KTS_KEY_STAGED);
	assert_int_equal(kts_ticket_key_state(&k, 100), KTS_KEY_ACTIVE);
	assert_int_equal(kts_ticket_key_state(&k, 199), KTS_KEY_ACTIVE);
	assert_int_equal(kts_ticket_key_state(&k, 200), KTS_KEY_RETIRED);
	assert_int_equal(kts_ticket_key_state(&k, 299), KTS_KEY_RETIRED);
	assert_int_equal(kts_ticket_key_state(&k, 300), KTS_KEY_GONE);
	k = key(2, 100, 100, 100); /* empty windows: gone at once */
	assert_int_equal(kts_ticket_key_state(&k, 99), KTS_KEY_STAGED);
	assert_int_equal(kts_ticket_key_state(&k, 100), KTS_KEY_GONE);
	assert_string_equal(kts_ticket_key_state_name(KTS_KEY_STAGED), "staged");
	assert_string_equal(kts_ticket_key_state_name(KTS_KEY_ACTIVE), "active");
	assert_string_equal(kts_ticket_key_state_name(KTS_KEY_RETIRED), "retired");
	assert_string_equal(kts_ticket_key_state_name(KTS_KEY_GONE), "gone");
}

static void test_encrypting(void **state)
{
	struct kts_ticket_key k[4] = {key(1, 0, 300, 400), key(2, 100, 300, 400), key(3, 200, 300, 400),
				      key(4, 100, 300, 400)};

	(void)state;
	assert_int_equal(kts_ticket_keys_encrypting(k, 4, -1), -1); /* all staged */
	assert_int_equal(kts_ticket_keys_encrypting(k, 4, 0), 0);
	assert_int_equal(kts_ticket_keys_encrypting(k, 4, 150), 3); /* 2 and 4 tie: the later */
	assert_int_equal(kts_ticket_keys_encrypting(k, 3, 150), 1);
	assert_int_equal(kts_ticket_keys_encrypting(k, 4, 250), 2); /* latest start wins */
	assert_int_equal(kts_ticket_keys_encrypting(k, 4, 300), -1); /* all retired */
	assert_int_equal(kts_ticket_keys_encrypting(k, 0, 0), -1);
	assert_int_equal(kts_ticket_keys_encrypting(NULL, 1, 0), -1);
	assert_int_equal(kts_ticket_keys_encrypting(k, KTS_TICKET_KEYSET_MAX + 1, 0), -1);
}

static void check_fails(const struct kts_ticket_key *k, size_t n, int64_t now, const char *want)
{
	char err[200] = "";

	assert_int_equal(kts_ticket_keys_check(k, n, now, err, sizeof(err)), KTS_ERR_ARG);
	assert_string_equal(err, want);
}

static void test_check(void **state)
{
	struct kts_ticket_key k[KTS_TICKET_KEYSET_MAX + 1];
	char err[200];

	(void)state;
	for (unsigned int i = 0; i < KTS_TICKET_KEYSET_MAX + 1; i++)
		k[i] = key(i, 0, 100, 200);
	assert_int_equal(kts_ticket_keys_check(k, KTS_TICKET_KEYSET_MAX, 50, err, sizeof(err)), KTS_OK);
	check_fails(k, 0, 50, "ticket keys: the set is empty");
	check_fails(k, KTS_TICKET_KEYSET_MAX + 1, 50, "ticket keys: 33 keys, at most 32");
	check_fails(k, 2, 100, "ticket keys: no key is active now (100)");
	check_fails(k, 2, -1, "ticket keys: no key is active now (-1)");
	k[1].keyrev = 0;
	check_fails(k, 2, 50, "ticket keys: keyrev 0 is in the set twice");
	k[1] = key(1, 0, 100, 200);
	memcpy(k[1].key, k[0].key, KEYLEN);
	check_fails(k, 2, 50, "ticket keys: keyrev 1 has the same bytes as keyrev 0");
	k[1] = key(1, 0, 100, 99);
	check_fails(k, 2, 50,
		    "ticket keys: keyrev 1: times out of order (encrypt from 0, until 100, decrypt "
		    "until 99)");
	k[1] = key(1, 101, 100, 200);
	check_fails(k, 2, 50,
		    "ticket keys: keyrev 1: times out of order (encrypt from 101, until 100, decrypt "
		    "until 200)");
	k[1] = key(1, 0, 100, 200);
	memset(k[1].key + KEYLEN / 2, 0, KEYLEN / 2);
	check_fails(k, 2, 50, "ticket keys: keyrev 1: AES or HMAC half is all zero bytes");
	memset(k[1].key, 0, KEYLEN);
	check_fails(k, 2, 50, "ticket keys: keyrev 1: AES or HMAC half is all zero bytes");
}

static uint32_t sealing_keyrev(struct kts_ticket_ring *r)
{
	unsigned char name[NAME], k[KEYLEN];

	assert_int_equal(kts_ticket_ring_encrypt_key(r, name, k, NULL), 1);
	return (uint32_t)name[0] << 24 | (uint32_t)name[1] << 16 | (uint32_t)name[2] << 8 | name[3];
}

static void name_of(const struct kts_ticket_key *k, unsigned char name[NAME])
{
	struct kts_ticket_ring *r = ring_at(k->encrypt_from, 60);
	unsigned char bytes[KEYLEN];
	char err[200];

	assert_int_equal(kts_ticket_ring_set(r, k, 1, err, sizeof(err)), KTS_OK);
	assert_int_equal(kts_ticket_ring_encrypt_key(r, name, bytes, NULL), 1);
	kts_ticket_ring_free(r);
}

/* One key's life through a ring: staged, active, retired, gone. */
static void test_rotation(void **state)
{
	struct kts_ticket_key set[2] = {key(1, 1000, 2000, 3000), key(2, 1500, 2500, 3500)};
	unsigned char n1[NAME], n2[NAME], k[KEYLEN];
	struct kts_ticket_ring *r;
	char err[200];

	(void)state;
	name_of(&set[0], n1);
	name_of(&set[1], n2);
	/* The ring starts with automatic key 1 (epoch 1000 / 600): the set
	 * replaces it, keyrev and all. */
	r = ring_at(1000, 600);
	assert_int_equal(kts_ticket_ring_set(r, set, 2, err, sizeof(err)), KTS_OK);
	assert_int_equal(sealing_keyrev(r), 1);
	assert_int_equal(kts_ticket_ring_seal_window(r), 2000);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 1);
	assert_memory_equal(k, set[0].key, KEYLEN);
	/* Staged: another server may seal under it already; opened, renewed. */
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n2, k, NULL), 2);
	assert_memory_equal(k, set[1].key, KEYLEN);
	fake_now = 1499;
	assert_int_equal(sealing_keyrev(r), 1);
	fake_now = 1500; /* 2 starts: the latest start seals, 1 acts as retired */
	assert_int_equal(sealing_keyrev(r), 2);
	assert_int_equal(kts_ticket_ring_seal_window(r), 2000);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 2);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n2, k, NULL), 1);
	fake_now = 2999;
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 2);
	fake_now = 3000; /* 1 is gone */
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 0);
	assert_int_equal(kts_ticket_ring_encrypt_key(r, n1, k, NULL), 0); /* 2 retired at 2500 */
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n2, k, NULL), 2);
	assert_int_equal(kts_ticket_ring_seal_window(r), -1);
	fake_now = 3500;
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n2, k, NULL), 0);
	kts_ticket_ring_free(r);
}

/* A set that fails leaves the old one whole; a keyrev names one key until it
 * is gone. */
static void test_replace(void **state)
{
	struct kts_ticket_key a[1] = {key(1, 0, 1000, 2000)}, b[2] = {key(1, 0, 1000, 2000),
								       key(2, 500, 1500, 2500)};
	struct kts_ticket_ring *r;
	unsigned char n1[NAME], k[KEYLEN];
	char err[200];

	(void)state;
	name_of(&a[0], n1);
	r = ring_at(100, 600);
	assert_int_equal(kts_ticket_ring_set(r, a, 1, err, sizeof(err)), KTS_OK);
	b[0].key[0] ^= 1; /* keyrev 1 with other bytes */
	assert_int_equal(kts_ticket_ring_set(r, b, 2, err, sizeof(err)), KTS_ERR_ARG);
	assert_string_equal(err, "ticket keys: keyrev 1 is held with different bytes or name (a "
				 "keyrev names one key until it is gone)");
	assert_int_equal(sealing_keyrev(r), 1);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 1);
	b[0].key[0] ^= 1;
	b[1].decrypt_until = 1499; /* out of order */
	assert_int_equal(kts_ticket_ring_set(r, b, 2, err, sizeof(err)), KTS_ERR_ARG);
	assert_int_equal(sealing_keyrev(r), 1);
	b[1].decrypt_until = 2500;
	fake_now = 600;
	assert_int_equal(kts_ticket_ring_set(r, b, 2, err, sizeof(err)), KTS_OK);
	assert_int_equal(sealing_keyrev(r), 2);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 2); /* kept: same bytes */
	/* Replacing drops keys the new set leaves out. */
	assert_int_equal(kts_ticket_ring_set(r, &b[1], 1, err, sizeof(err)), KTS_OK);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 0);
	/* Once gone, a keyrev may come back with new bytes. */
	b[0] = key(1, 600, 1600, 2600);
	b[0].key[0] ^= 1;
	assert_int_equal(kts_ticket_ring_set(r, b, 2, err, sizeof(err)), KTS_OK);
	kts_ticket_ring_free(r);
}

/* A clock that jumps back: keys are judged by the time, not by when they came. */
static void test_clock_back(void **state)
{
	struct kts_ticket_key set[2] = {key(1, 1000, 2000, 3000), key(2, 2000, 3000, 4000)};
	struct kts_ticket_ring *r;
	unsigned char n1[NAME], k[KEYLEN];
	char err[200];

	(void)state;
	name_of(&set[0], n1);
	r = ring_at(2100, 600);
	assert_int_equal(kts_ticket_ring_set(r, set, 2, err, sizeof(err)), KTS_OK);
	assert_int_equal(sealing_keyrev(r), 2);
	fake_now = 1500; /* back: 2 is staged again, 1 seals */
	assert_int_equal(sealing_keyrev(r), 1);
	fake_now = 900; /* before every start: nothing seals, both still open */
	assert_int_equal(kts_ticket_ring_encrypt_key(r, n1, k, NULL), 0);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 2);
	fake_now = 3000; /* forward: 1 is gone, and zeroed for good */
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 0);
	fake_now = 1500; /* back again: 2 is staged, 1 does not return */
	assert_int_equal(kts_ticket_ring_encrypt_key(r, n1, k, NULL), 0);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 0);
	kts_ticket_ring_free(r);
}

/* A file older than the running set (a restored backup: it lacks the newest
 * key in use and all its keys start before it) is refused; a newer one, or
 * one that keeps that key, is taken. */
static void test_older_set(void **state)
{
	struct kts_ticket_key now_set[2] = {key(1, 0, 2000, 3000), key(2, 1000, 3000, 4000)},
			      old_set[1] = {key(1, 0, 2000, 3000)},
			      kept[2] = {key(2, 1000, 3000, 4000), key(3, 500, 900, 5000)},
			      newer[1] = {key(4, 1200, 3000, 4000)};
	struct kts_ticket_ring *r = ring_at(500, 600);
	char err[200];

	(void)state;
	assert_int_equal(kts_ticket_ring_set(r, now_set, 2, err, sizeof(err)), KTS_OK);
	assert_int_equal(kts_ticket_ring_set(r, old_set, 1, err, sizeof(err)), KTS_ERR_ARG);
	assert_string_equal(err, "ticket keys: the set is older than the one in use (its newest key "
				 "starts at 0, keyrev 2 in use at 1000)");
	assert_int_equal(sealing_keyrev(r), 1); /* the set in use stays */
	assert_int_equal(kts_ticket_ring_set(r, kept, 2, err, sizeof(err)), KTS_OK);
	assert_int_equal(kts_ticket_ring_set(r, newer, 1, err, sizeof(err)), KTS_ERR_ARG);
	assert_non_null(strstr(err, "no key is active now")); /* 4 starts at 1200 */
	fake_now = 1300;
	assert_int_equal(kts_ticket_ring_set(r, newer, 1, err, sizeof(err)), KTS_OK);
	kts_ticket_ring_free(r);
}

/* Keys one at a time after a set: the newest seals, the set's keys stay. */
static void test_add_after_set(void **state)
{
	struct kts_ticket_key set[1] = {key(1, 0, 10000, 20000)}, extra = key(9, 0, 0, 0);
	struct kts_ticket_ring *r;
	unsigned char n1[NAME], k[KEYLEN];
	char err[200];

	(void)state;
	name_of(&set[0], n1);
	r = ring_at(100, 600);
	assert_int_equal(kts_ticket_ring_set(r, set, 1, err, sizeof(err)), KTS_OK);
	assert_int_equal(kts_ticket_ring_add(r, 9, extra.key, KEYLEN, err, sizeof(err)), KTS_OK);
	assert_int_equal(sealing_keyrev(r), 9);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, n1, k, NULL), 2);
	fake_now = 100 + 600; /* 9 sealed for one lifetime; 1 is active again */
	assert_int_equal(sealing_keyrev(r), 1);
	kts_ticket_ring_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_states),	    cmocka_unit_test(test_encrypting),
		cmocka_unit_test(test_check),	    cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_replace),	    cmocka_unit_test(test_clock_back),
		cmocka_unit_test(test_older_set),   cmocka_unit_test(test_add_after_set),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
