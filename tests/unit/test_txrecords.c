/*
 * test_txrecords.c - where kernel TX file sends stop (tools/txrecords.c):
 * the first record's end for heads and files of every size class, and whole
 * replies sent through txrec_send_end with short sends, against a model of
 * the kernel's record sealing (a record closes when full or at the end of a
 * call): every record after the first must start on a page boundary of the
 * file, and every send must make progress.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "txrecords.h"

#define MIB (1024LL * 1024)

static void test_first_end(void **state)
{
	(void)state;
	assert_int_equal(txrec_first_end(200, MIB), 12288);    /* 16184 left: 3 pages */
	assert_int_equal(txrec_first_end(4096, MIB), 12288);
	assert_int_equal(txrec_first_end(4097, MIB), 8192);
	assert_int_equal(txrec_first_end(12288, MIB), 4096);
	assert_int_equal(txrec_first_end(16384 + 200, MIB), 12288); /* a head past a record */
	assert_int_equal(txrec_first_end(0, MIB), 0);          /* no head: records from 0 */
	assert_int_equal(txrec_first_end(16384, MIB), 0);      /* the head closed its record */
	assert_int_equal(txrec_first_end(13000, MIB), 0);      /* less than a page left */
	assert_int_equal(txrec_first_end(200, 12288), 0);      /* the file ends in it */
	assert_int_equal(txrec_first_end(200, 12289), 12288);
}

static void test_send_end(void **state)
{
	(void)state;
	assert_int_equal(txrec_send_end(200, 5 * MIB, 0, MIB), 12288);
	assert_int_equal(txrec_send_end(200, 5 * MIB, 100, MIB), 12288);
	assert_int_equal(txrec_send_end(200, 5 * MIB, 12288, MIB), 12288 + MIB);
	/* from between boundaries: back to the last boundary within max */
	assert_int_equal(txrec_send_end(200, 5 * MIB, 12288 + 100, MIB), 12288 + MIB);
	assert_int_equal(txrec_send_end(200, 5 * MIB, 12288 + 16384 + 5, 65536),
			 12288 + 5 * 16384);
	assert_int_equal(txrec_send_end(200, 5 * MIB, 5 * MIB - 10, MIB), 5 * MIB);
	assert_int_equal(txrec_send_end(0, 5 * MIB, 0, MIB), MIB);
	assert_int_equal(txrec_send_end(13000, 5 * MIB, 0, MIB), MIB);
}

/* A deterministic generator for the short sends. */
static uint64_t rng = 88172645463325252ull;
static long long next_rand(long long below)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (long long)(rng % (uint64_t)below);
}

/* One reply as the engine sends it: each call asks for up to the send end
 * and may come back short (the socket full), then asks again. The model
 * seals records as the kernel does and checks where each one starts. */
static void send_reply(size_t head, long long size, long long max, int shorts)
{
	long long fill = (long long)(head % TXREC_RECORD), off = 0, calls = 0;
	/* alignment is owed when the head leaves a page or more of its record */
	int aligned = head % TXREC_RECORD <= TXREC_RECORD - TXREC_PAGE;

	while (off < size) {
		long long to = txrec_send_end(head, size, off, max);

		if (to <= off || to > size)
			fail_msg("head %zu size %lld: send from %lld stops at %lld", head, size, off, to);
		while (off < to) {
			long long n = to - off;

			if (shorts && next_rand(3) == 0)
				n = 1 + next_rand(n);
			while (n > 0) { /* fill records; a full one closes */
				long long take = TXREC_RECORD - fill < n ? TXREC_RECORD - fill : n;

				fill += take;
				off += take;
				n -= take;
				if (fill == TXREC_RECORD) {
					fill = 0;
					if (aligned && off < size && off % TXREC_PAGE)
						fail_msg("head %zu size %lld: a record starts at %lld", head,
							 size, off);
				}
			}
			if (++calls > 100000)
				fail_msg("head %zu size %lld: no end", head, size);
		}
		if (fill) { /* the call's end, without MSG_MORE: the record closes */
			fill = 0;
			if (aligned && off < size && off % TXREC_PAGE)
				fail_msg("head %zu size %lld: a record starts at %lld", head, size, off);
		}
	}
	assert_int_equal(off, size);
}

static void test_replies(void **state)
{
	static const size_t heads[] = {1, 200, 517, 4096, 12287, 12288, 12289, 16383, 16384, 16584};
	static const long long sizes[] = {1, 4095, 12288, 12289, 16384, 65543, MIB, 5 * MIB + 123};
	static const long long maxes[] = {16384, 65536, MIB};

	(void)state;
	for (size_t h = 0; h < sizeof(heads) / sizeof(*heads); h++)
		for (size_t s = 0; s < sizeof(sizes) / sizeof(*sizes); s++)
			for (size_t m = 0; m < sizeof(maxes) / sizeof(*maxes); m++)
				for (int shorts = 0; shorts < 2; shorts++)
					send_reply(heads[h], sizes[s], maxes[m], shorts);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_end),
		cmocka_unit_test(test_send_end),
		cmocka_unit_test(test_replies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
