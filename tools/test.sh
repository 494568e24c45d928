#!/bin/bash
# Install what is missing, build, and run every test suite: unit, host and
# kernel (real kTLS under qemu), then unit+host again under ASan+UBSan and the
# unit suite under valgrind, and the libFuzzer targets (clang) over their seeds
# plus a short run each. Ends with one line "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup-debian.sh test

declare -A opts=(
	[build-test]=""
	[build-asan]="-Db_sanitize=address,undefined -Db_lundef=false -Dkernel_tests=false"
	[build-fuzz]="-Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false"
)
for dir in "${!opts[@]}"; do
	cc=()
	[[ $dir == build-fuzz ]] && cc=(env CC=clang) # libFuzzer is clang's
	# shellcheck disable=SC2086 # options are words
	[[ -f $dir/build.ninja ]] || "${cc[@]}" meson setup "$dir" ${opts[$dir]} >/dev/null
	ninja -C "$dir" >/dev/null
done

status=0
# run <build dir> <label> [meson test args]: keep each run's log for the count below.
run() {
	local dir=$1 label=$2
	shift 2
	meson test -C "$dir" --print-errorlogs --num-processes 2 "$@" || status=1
	cp "$dir/meson-logs/testlog.json" "$dir/testlog-$label.json"
}
run build-test all
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	run build-asan asan --suite unit --suite host
run build-test valgrind --suite unit --timeout-multiplier 5 --wrap 'valgrind -q --error-exitcode=1 --leak-check=full'
# Each fuzzer over its seeds, then a few seconds of fuzzing (fuzz/README.md).
run build-fuzz fuzz --suite fuzz

python3 - build-test/testlog-all.json build-asan/testlog-asan.json build-test/testlog-valgrind.json \
	build-fuzz/testlog-fuzz.json <<'PY'
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)["result"]
        if r == "OK": passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
print(f"tests: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
exit $status
