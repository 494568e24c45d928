/*
 * test_ticket_names.c - ticket keys shared with other servers: a key's
 * explicit 16-byte name (what nginx and HAProxy key files carry) is the one
 * in sealed tickets and the one looked up; AES-128 keys (their 48-byte
 * files) seal tickets another server can open, checked here by opening one
 * by hand; names are distinct in a set; aes_bits is validated; and an
 * all-zero name derives the name kts always used.
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
#include <openssl/ssl.h>

#include "internal.h"
#include "testutil.h"
#include "ticketkeys.h"
#include "ring_clock.h"
#include "ticket_hs.h"

#define NAME KTS_TICKET_NAME_LEN
#define KEYLEN KTS_TICKET_KEY_LEN

/* A key active around fake_now; aes_bits 128 uses 32 bytes only. */
static struct kts_ticket_key key_at(unsigned int keyrev, unsigned int aes_bits, const char *name)
{
	struct kts_ticket_key k = {.keyrev = keyrev, .aes_bits = aes_bits};
	size_t len = aes_bits == 128 ? 32 : KEYLEN;

	for (size_t i = 0; i < len; i++)
		k.key[i] = (unsigned char)(keyrev * 13 + i * 5 + 3);
	if (name)
		memcpy(k.name, name, NAME);
	k.encrypt_from = fake_now - 10;
	k.encrypt_until = fake_now + 1000;
	k.decrypt_until = fake_now + 2000;
	return k;
}

static void check_fails(const struct kts_ticket_key *keys, size_t n, const char *want)
{
	char err[200] = "";

	assert_int_equal(kts_ticket_keys_check(keys, n, fake_now, err, sizeof(err)), KTS_ERR_ARG);
	if (!strstr(err, want))
		fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

/* keyrev || HMAC-SHA256(hmac key, label)[0..12], computed here. */
static void derived(const struct kts_ticket_key *k, size_t half, unsigned char name[NAME])
{
	unsigned char mac[32];
	size_t len;

	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k->key + half, half,
				  (const unsigned char *)"kts ticket key name", 19, mac, sizeof(mac),
				  &len));
	name[0] = (unsigned char)(k->keyrev >> 24);
	name[1] = (unsigned char)(k->keyrev >> 16);
	name[2] = (unsigned char)(k->keyrev >> 8);
	name[3] = (unsigned char)k->keyrev;
	memcpy(name + 4, mac, NAME - 4);
}

static void test_zero_name_derives(void **state)
{
	struct kts_ticket_ring *r = ring_at(5000, 3600);
	struct kts_ticket_key set[2];
	unsigned char got[NAME], want[NAME], key[KEYLEN];
	unsigned int bits = 0;
	char err[200];

	(void)state;
	set[0] = key_at(7, 0, NULL);
	set[1] = key_at(8, 128, NULL);
	set[1].encrypt_from = fake_now - 20; /* keyrev 7 seals */
	assert_int_equal(kts_ticket_key_name(&set[0], got), KTS_OK);
	derived(&set[0], 32, want);
	assert_memory_equal(got, want, NAME);
	assert_int_equal(kts_ticket_key_name(&set[1], got), KTS_OK);
	derived(&set[1], 16, want); /* the 16-byte HMAC key of an AES-128 key */
	assert_memory_equal(got, want, NAME);
	/* The ring seals and opens under the same names. */
	assert_int_equal(kts_ticket_ring_set(r, set, 2, err, sizeof(err)), KTS_OK);
	assert_int_equal(kts_ticket_ring_encrypt_key(r, got, key, &bits), 1);
	derived(&set[0], 32, want);
	assert_memory_equal(got, want, NAME);
	assert_int_equal(bits, 256);
	derived(&set[1], 16, want);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, want, key, &bits), 2);
	assert_int_equal(bits, 128);
	assert_memory_equal(key, set[1].key, KEYLEN);
	kts_ticket_ring_free(r);
}

static void test_explicit_name_lookup(void **state)
{
	struct kts_ticket_ring *r = ring_at(5000, 3600);
	struct kts_ticket_key set[2];
	unsigned char name[NAME], key[KEYLEN];
	char err[200];

	(void)state;
	set[0] = key_at(1, 0, "nginx-key-name-A");
	set[1] = key_at(2, 128, "nginx-key-name-B");
	set[1].encrypt_from = fake_now - 20; /* keyrev 1 seals */
	assert_int_equal(kts_ticket_key_name(&set[0], name), KTS_OK);
	assert_memory_equal(name, "nginx-key-name-A", NAME);
	assert_int_equal(kts_ticket_ring_set(r, set, 2, err, sizeof(err)), KTS_OK);
	assert_int_equal(kts_ticket_ring_encrypt_key(r, name, key, NULL), 1);
	assert_memory_equal(name, "nginx-key-name-A", NAME);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, (const unsigned char *)"nginx-key-name-A", key,
						     NULL),
			 1);
	assert_memory_equal(key, set[0].key, KEYLEN);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, (const unsigned char *)"nginx-key-name-B", key,
						     NULL),
			 2);
	assert_memory_equal(key, set[1].key, KEYLEN);
	/* The name the key would have derived finds nothing. */
	memset(set[0].name, 0, NAME);
	derived(&set[0], 32, name);
	assert_int_equal(kts_ticket_ring_decrypt_key(r, name, key, NULL), 0);
	/* The same keyrev and bytes under another name is another key. */
	set[0] = key_at(1, 0, "nginx-key-name-C");
	assert_int_equal(kts_ticket_ring_set(r, set, 2, err, sizeof(err)), KTS_ERR_ARG);
	assert_non_null(strstr(err, "keyrev 1 is held with different bytes or name"));
	kts_ticket_ring_free(r);
}

static void test_duplicate_names(void **state)
{
	struct kts_ticket_key set[2];

	(void)state;
	fake_now = 5000;
	set[0] = key_at(1, 0, "same-name-twice!");
	set[1] = key_at(2, 0, "same-name-twice!");
	check_fails(set, 2, "keyrev 2 has the same name as keyrev 1");
	/* A given name equal to another key's derived name. */
	set[0] = key_at(1, 0, NULL);
	assert_int_equal(kts_ticket_key_name(&set[0], set[1].name), KTS_OK);
	check_fails(set, 2, "keyrev 2 has the same name as keyrev 1");
	set[1].name[15] ^= 1;
	assert_int_equal(kts_ticket_keys_check(set, 2, fake_now, NULL, 0), KTS_OK);
}

static void test_bad_aes_bits(void **state)
{
	struct kts_ticket_key k;
	unsigned char name[NAME];

	(void)state;
	fake_now = 5000;
	k = key_at(1, 192, NULL);
	check_fails(&k, 1, "keyrev 1: aes_bits must be 0, 128 or 256");
	assert_int_equal(kts_ticket_key_name(&k, name), KTS_ERR_ARG);
	k = key_at(1, 256, NULL);
	assert_int_equal(kts_ticket_keys_check(&k, 1, fake_now, NULL, 0), KTS_OK);
	k = key_at(1, 0, NULL);
	k.aes_bits = 128; /* 64 bytes given for a 32-byte key */
	check_fails(&k, 1, "an AES-128 key is 32 bytes: bytes 32..63 must be zero");
	k = key_at(1, 128, NULL);
	memset(k.key + 16, 0, 16); /* no HMAC key */
	check_fails(&k, 1, "AES or HMAC half is all zero bytes");
	k = key_at(1, 128, NULL);
	assert_int_equal(kts_ticket_keys_check(&k, 1, fake_now, NULL, 0), KTS_OK);
}

/* Open a ticket by hand as another server would: HMAC-SHA256 over name || IV
 * || ciphertext with the HMAC half, AES-CBC with the AES half, and the
 * plaintext must be a session. */
static void open_ticket(const struct kts_ticket_key *k, SSL_SESSION *s)
{
	size_t half = k->aes_bits == 128 ? 16 : 32, len, mlen, ctlen;
	unsigned char mac[32], *pt;
	const unsigned char *t, *p;
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	SSL_SESSION *inner;
	int n1 = 0, n2 = 0;

	SSL_SESSION_get0_ticket(s, &t, &len);
	assert_true(len > NAME + 16 + 32);
	ctlen = len - NAME - 16 - 32;
	assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, k->key + half, half, t,
				  len - 32, mac, sizeof(mac), &mlen));
	assert_memory_equal(mac, t + len - 32, 32);
	assert_non_null(c);
	assert_non_null(pt = malloc(ctlen + 32));
	assert_int_equal(EVP_DecryptInit_ex(c, half == 16 ? EVP_aes_128_cbc() : EVP_aes_256_cbc(),
					    NULL, k->key, t + NAME),
			 1);
	assert_int_equal(EVP_DecryptUpdate(c, pt, &n1, t + NAME + 16, (int)ctlen), 1);
	assert_int_equal(EVP_DecryptFinal_ex(c, pt + n1, &n2), 1);
	p = pt;
	inner = d2i_SSL_SESSION(NULL, &p, n1 + n2);
	assert_non_null(inner);
	SSL_SESSION_free(inner);
	free(pt);
	EVP_CIPHER_CTX_free(c);
}

struct env {
	int version;
	struct kts_config *cfg, *other;
	SSL_CTX *cctx;
};

static struct env env12 = {.version = 12}, env13 = {.version = 13};
static const unsigned char sid[] = "shared-with-nginx";

static struct kts_config *server(int version)
{
	struct kts_config *cfg = test_kts_config(version, &test_suites[0], 1);

	assert_non_null(cfg);
	kts_ticket_ring_set_clock(cfg->ring, fake_clock, NULL);
	assert_int_equal(kts_config_set_session_lifetime(cfg, 3600), KTS_OK);
	assert_int_equal(kts_config_set_session_id(cfg, sid, sizeof(sid)), KTS_OK);
	return cfg;
}

static int env_setup(void **state)
{
	struct env *e = *state;

	test_cert_init();
	fake_now = 1000000;
	e->cfg = server(e->version);
	e->other = server(e->version);
	e->cctx = test_ssl_ctx(e->version, &test_suites[0], 0);
	return e->cctx ? 0 : -1;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	kts_config_free(e->cfg);
	kts_config_free(e->other);
	SSL_CTX_free(e->cctx);
	return 0;
}

/* A ticket sealed under k names it as given and opens by hand with its
 * halves; the same server resumes it; a server holding the same bytes under
 * another name does not (the name is what is looked up). */
static void seal_and_open(struct env *e, struct kts_ticket_key k, const char *name)
{
	struct kts_ticket_key renamed = k;
	const unsigned char *t;
	struct hs h1, h2, h3;
	size_t len;

	assert_int_equal(kts_config_set_ticket_keys(e->cfg, &k, 1), KTS_OK);
	memcpy(renamed.name, "some-other-name!", NAME);
	assert_int_equal(kts_config_set_ticket_keys(e->other, &renamed, 1), KTS_OK);
	handshake(&h1, e->cfg, e->cctx, NULL, NULL);
	assert_false(resumed(&h1));
	SSL_SESSION_get0_ticket(h1.sess, &t, &len);
	assert_memory_equal(t, name, NAME);
	assert_int_equal(ticket_keyrev(h1.sess), (long)be32((const unsigned char *)name));
	open_ticket(&k, h1.sess);
	handshake(&h2, e->cfg, e->cctx, h1.sess, NULL);
	assert_true(resumed(&h2));
	handshake(&h3, e->other, e->cctx, h1.sess, NULL);
	assert_false(resumed(&h3));
	hs_free(&h1);
	hs_free(&h2);
	hs_free(&h3);
}

static void test_aes128_seals_and_opens(void **state)
{
	seal_and_open(*state, key_at(3, 128, "aes128-key-name!"), "aes128-key-name!");
}

static void test_explicit_name_in_ticket(void **state)
{
	seal_and_open(*state, key_at(4, 0, "aes256-key-name!"), "aes256-key-name!");
}

#define HS(f, env) {#f "/" #env, f, env_setup, env_teardown, &env}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_name_derives),
		cmocka_unit_test(test_explicit_name_lookup),
		cmocka_unit_test(test_duplicate_names),
		cmocka_unit_test(test_bad_aes_bits),
		HS(test_aes128_seals_and_opens, env12),
		HS(test_aes128_seals_and_opens, env13),
		HS(test_explicit_name_in_ticket, env12),
		HS(test_explicit_name_in_ticket, env13),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	test_cert_free();
	return rc;
}
