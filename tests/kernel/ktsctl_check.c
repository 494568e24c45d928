/*
 * ktsctl_check: `ktsctl check` on a kernel with kTLS, its answers asserted.
 *
 * In-process (tools/kernelcheck.c): the tls ULP is there, all 12 version x
 * cipher x direction combinations are taken, TLS_RX_EXPECT_NO_PAD is, rekey
 * is exactly when the kernel is 6.14 or newer, io_uring has every opcode
 * and flag the uring engine uses, and /proc/net/tls_stat is read by name.
 * Then the static ktsctl itself (on PATH, KTS_GUEST_HELPERS): --require
 * exits 0, and --json says the same as the in-process check.
 *
 * Each check installs keys: 6 TX + 6 RX combinations, one TX socket whose key
 * is replaced (the rekey probe) and one RX socket (the no-pad probe). The
 * EXPECT lines sum them over the three runs. Output: the kernel tier
 * protocol (tests/kernel/README.md).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "kernelcheck.h"

#define RUNS 3 /* in-process, ktsctl --require, ktsctl --json */

static int passed, failed;

static void check_case(const char *name, int ok, const char *why)
{
	printf("CASE %s %s\n", name, ok ? "ok" : "FAIL");
	if (!ok && why)
		printf("# %s\n", why);
	ok ? passed++ : failed++;
}

/* Is the running kernel at least major.minor? */
static int at_least(int major, int minor)
{
	struct utsname u;
	int a = 0, b = 0;

	return uname(&u) == 0 && sscanf(u.release, "%d.%d", &a, &b) == 2 &&
	       (a > major || (a == major && b >= minor));
}

static char *run(const char *cmd, int *status)
{
	FILE *p = popen(cmd, "r");
	size_t cap = 1 << 16, n = 0, r;
	char *out = calloc(1, cap + 1);

	if (!p || !out) {
		free(out);
		*status = -1;
		return NULL;
	}
	while (n < cap && (r = fread(out + n, 1, cap - n, p)) > 0)
		n += r;
	*status = pclose(p);
	return out;
}

int main(void)
{
	static struct kcheck k;
	int rekey_expected = at_least(6, 14), all = 1, ops = 1, status;
	char missing[1024], why[256], *out;
	json_t *j;
	json_error_t jerr;

	setvbuf(stdout, NULL, _IOLBF, 0);
	kcheck_run(&k, "/nonexistent");
	printf("# kernel %s\n", k.release);
	check_case("check tls-ulp", k.tls == 1, "the tls ULP is missing");
	for (int i = 0; i < KCHECK_COMBOS; i++)
		all &= k.combo[i].err == 0;
	check_case("check 12-combinations-taken", all, "a version x cipher x direction was refused");
	snprintf(why, sizeof(why), "rekey %d, expected %d", k.rekey, rekey_expected);
	check_case("check rekey-exactly-on-6.14+", k.rekey == rekey_expected, why);
	check_case("check rx-expect-no-pad", k.rx_no_pad == 1, NULL);
	for (int i = 0; i < KCHECK_OPS; i++)
		ops &= k.ops[i].ok;
	check_case("check io_uring-opcodes", k.uring_err == 0 && ops, NULL);
	check_case("check io_uring-flags-and-multishot",
		   k.single_issuer && k.defer_taskrun && k.buf_ring && k.multishot_accept &&
			   k.multishot_recv,
		   NULL);
	all = 0;
	for (size_t i = 0; i < k.nstat; i++)
		all += strcmp(k.stat[i].name, "TlsCurrTxSw") == 0 || strcmp(k.stat[i].name, "TlsTxSw") == 0;
	check_case("check tls_stat-by-name", k.have_stat && all == 2, NULL);
	kcheck_missing(&k, missing, sizeof(missing));
	check_case("check nothing-missing", missing[0] == '\0', missing);

	out = run("ktsctl check --require --kmod-config /nonexistent >/dev/null 2>&1", &status);
	free(out);
	check_case("ktsctl check --require exits 0", WIFEXITED(status) && WEXITSTATUS(status) == 0,
		   "ktsctl check --require failed");

	out = run("ktsctl check --json --kmod-config /nonexistent", &status);
	j = out ? json_loads(out, 0, &jerr) : NULL;
	check_case("ktsctl check --json parses", j != NULL && WIFEXITED(status) &&
						 WEXITSTATUS(status) == 0,
		   out ? jerr.text : "ktsctl did not run");
	if (j) {
		json_t *miss = json_object_get(j, "missing"), *ciphers = json_object_get(j, "ciphers");
		int ok = json_is_true(json_object_get(j, "tls_ulp")) && json_is_array(miss) &&
			 json_array_size(miss) == 0 && json_array_size(ciphers) == KCHECK_COMBOS &&
			 json_is_boolean(json_object_get(j, "rekey")) &&
			 json_boolean_value(json_object_get(j, "rekey")) == rekey_expected &&
			 json_is_object(json_object_get(j, "tls_stat"));

		check_case("ktsctl check --json agrees", ok, out);
		json_decref(j);
	}
	free(out);
	printf("%d passed, %d failed\n", passed, failed);
	printf("EXPECT TlsTxSw=%d TlsRxSw=%d\n", RUNS * 7, RUNS * 7);
	printf("EXPECT-REKEY TlsTxRekeyOk=%d TlsRxRekeyOk=0\n", rekey_expected ? RUNS : 0);
	return failed ? 1 : 0;
}
