#!/bin/bash
# run-test.sh FUZZER SRCDIR NAME WORKROOT - one `meson test --suite fuzz` case:
# run FUZZER over every seed in SRCDIR/corpus/NAME, then fuzz for
# KTS_FUZZ_SECONDS (default 5) more. New inputs go to WORKROOT/NAME (never the
# tree), a finding to WORKROOT/NAME-crash-* and a non-zero exit.
set -euo pipefail
fuzzer=$1 src=$2 name=$3 work=$4/$3
seeds=$src/corpus/$name
secs=${KTS_FUZZ_SECONDS:-5}

rm -rf "$work"
mkdir -p "$work"
args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
      -artifact_prefix="$work-" -error_exitcode=1 -timeout_exitcode=1) # 77 would read as a skip
[[ -f $src/$name.dict ]] && args+=(-dict="$src/$name.dict")
# shellcheck disable=SC2207 # the options file is libFuzzer flags, one word each
[[ -f $src/$name.options ]] && args+=($(grep -v '^#' "$src/$name.options"))

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# 1. Each seed on its own: a seed that crashes is named in the error.
"$fuzzer" "${args[@]}" -runs=0 "$seeds"
# 2. Bounded fuzzing from the seeds; the scratch directory takes what it finds.
"$fuzzer" "${args[@]}" "$work" "$seeds"
