/* test_control.c - kts-server's control protocol (tools/control_proto.c) and
 * its shared counters (tools/stats.c), without a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "control.h"
#include "stats.h"

static int parse(const char *s, enum control_cmd *cmd, char *err)
{
	return control_parse(s, strlen(s), cmd, err, 160);
}

static void test_commands(void **state)
{
	static const char *const lines[] = {"status\n", "reload-keys\n", "drain\r\n", "stop\n"};
	static const enum control_cmd want[] = {CTL_STATUS, CTL_RELOAD_KEYS, CTL_DRAIN, CTL_STOP};
	enum control_cmd cmd;
	char err[160];

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		cmd = (enum control_cmd)99;
		assert_int_equal(parse(lines[i], &cmd, err), 1);
		assert_int_equal(cmd, want[i]);
		assert_memory_equal(control_cmd_name(cmd), lines[i], strlen(control_cmd_name(cmd)));
	}
}

static void test_incomplete_and_errors(void **state)
{
	enum control_cmd cmd;
	char err[160], long_line[CONTROL_LINE_MAX + 1];

	(void)state;
	assert_int_equal(parse("", &cmd, err), 0);
	assert_int_equal(parse("stat", &cmd, err), 0);
	assert_int_equal(parse("status", &cmd, err), 0); /* no end of line yet */
	assert_int_equal(parse("Status\n", &cmd, err), -1);
	assert_string_equal(err, "unknown command \"Status\" (status, reload-keys, drain, stop)");
	assert_int_equal(parse("status \n", &cmd, err), -1);
	assert_int_equal(parse("\n", &cmd, err), -1);
	assert_int_equal(parse("status\nstop\n", &cmd, err), -1);
	assert_non_null(strstr(err, "one line per connection"));
	assert_int_equal(control_parse("st\0\xff\x1b\n", 6, &cmd, err, sizeof(err)), -1);
	assert_string_equal(err, "unknown command \"st???\" (status, reload-keys, drain, stop)");
	memset(long_line, 'x', CONTROL_LINE_MAX);
	assert_int_equal(control_parse(long_line, CONTROL_LINE_MAX - 1, &cmd, err, sizeof(err)), 0);
	assert_int_equal(control_parse(long_line, CONTROL_LINE_MAX, &cmd, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no end of line in 64 bytes"));
}

static void test_answers(void **state)
{
	json_t *j = control_error("why \"quoted\"");
	char *text;

	(void)state;
	assert_non_null(j);
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"error\":\"why \\\"quoted\\\"\",\"kts_control\":1,\"ok\":false}");
	free(text);
	json_decref(j);
	j = control_ok();
	text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"kts_control\":1,\"ok\":true}");
	free(text);
	json_decref(j);
	/* Bytes that are not UTF-8 (a path, a quoted bad character) still make
	 * JSON: jansson would refuse them. */
	j = control_text("/run/k\xff\xc3y\x01s");
	assert_non_null(j);
	assert_string_equal(json_string_value(j), "/run/k??y?s");
	json_decref(j);
	j = control_error("bad \xe9");
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "error")), "bad ?");
	json_decref(j);
	assert_true(json_is_null(j = control_text(NULL)));
	json_decref(j);
}

/* A slot with n reasons "reason K" (K from first) in direction d, each counted k + 1 times. */
static void fill_reasons(struct stats_proc *p, int d, int first, int n)
{
	for (int i = 0; i < n; i++) {
		snprintf(p->reasons[d][i].text, STATS_REASON_LEN, "reason %d", first + i);
		p->reasons[d][i].n = (uint64_t)(first + i + 1);
	}
	p->nreasons[d] = (uint32_t)n;
}

static void test_fold(void **state)
{
	static struct stats_proc sum, a, b;
	uint64_t total = 0;

	(void)state;
	stats_claim(&sum, 1);
	stats_claim(&a, 2);
	stats_claim(&b, 3);
	a.conns_total = 5;
	a.hs_resumed = 2;
	a.sent[STATS_USER] = 100;
	b.conns_total = 7;
	b.offload[KTS_RX][STATS_KERNEL] = 4;
	b.sent[STATS_KERNEL] = 1000;
	fill_reasons(&a, KTS_TX, 0, 5);
	fill_reasons(&b, KTS_TX, 3, 6); /* 3, 4 shared with a; 5..8 new */
	b.reasons_other[KTS_TX] = 10;
	stats_fold(&sum, &a);
	stats_fold(&sum, &b);
	assert_int_equal(sum.conns_total, 12);
	assert_int_equal(sum.hs_resumed, 2);
	assert_int_equal(sum.offload[KTS_RX][STATS_KERNEL], 4);
	assert_int_equal(sum.sent[STATS_USER], 100);
	assert_int_equal(sum.sent[STATS_KERNEL], 1000);
	/* Reasons 0..7 have entries; reason 8 (9 counts) found none. */
	assert_int_equal(sum.nreasons[KTS_TX], STATS_REASONS);
	assert_string_equal(sum.reasons[KTS_TX][3].text, "reason 3");
	assert_int_equal(sum.reasons[KTS_TX][3].n, 4 + 4);
	assert_string_equal(sum.reasons[KTS_TX][7].text, "reason 7");
	assert_int_equal(sum.reasons_other[KTS_TX], 9 + 10);
	for (int i = 0; i < STATS_REASONS; i++)
		total += sum.reasons[KTS_TX][i].n;
	assert_int_equal(total + sum.reasons_other[KTS_TX], 15 + (4 + 5 + 6 + 7 + 8 + 9) + 10);
	assert_int_equal(sum.nreasons[KTS_RX], 0);
}

static void test_keys(void **state)
{
	static struct stats_proc p, q;
	static struct stats_keys out;
	static struct keyfile kf;

	(void)state;
	stats_claim(&p, 1);
	stats_claim(&q, 2);
	kf.n = 2;
	kf.keys[0].keyrev = 7;
	kf.keys[1].keyrev = 8;
	kf.keys[1].decrypt_until = 12345;
	stats_keys_publish(&p, &kf, 0, "a refused load");
	stats_keys_read(&p, &out);
	assert_int_equal(out.n, 2);
	assert_int_equal(out.keys[1].keyrev, 8);
	assert_int_equal(out.keys[1].decrypt_until, 12345);
	assert_int_equal(out.ok, 0);
	assert_string_equal(out.msg, "a refused load");
	assert_true(out.tried > 0);
	stats_keys_copy(&q, &p); /* a worker starts with its parent's */
	stats_keys_read(&q, &out);
	assert_int_equal(out.n, 2);
	assert_string_equal(out.msg, "a refused load");
	/* A writer that died half-way: the reader gives up, and says so. */
	p.keys_seq |= 1;
	stats_keys_read(&p, &out);
	assert_int_equal(out.n, 0);
	assert_string_equal(out.msg, "key set being written: try again");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_incomplete_and_errors),
		cmocka_unit_test(test_answers),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
