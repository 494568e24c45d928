#!/bin/bash
# fuzz/run-long.sh [SECONDS] [TARGET...] - fuzz each target (default: every
# fuzz/corpus/<name>/ that has a fuzzer) for SECONDS (default 600), then print
# executions, exec/s, coverage and findings per target. Exits 1 on a finding.
#
# Environment:
#   KTS_FUZZ_RUNS=N      stop each worker after N executions instead of a time
#   KTS_FUZZ_PARALLEL=P  targets fuzzed at once (default: 2, or 1 on one core)
#   KTS_FUZZ_WORKERS=W   libFuzzer processes per target (-jobs/-workers, default 1)
#   KTS_FUZZ_BUILD=DIR   build directory (default build-fuzz; set up if missing)
#   KTS_FUZZ_WORK=DIR    scratch (default /tmp/kts-fuzz): DIR/<target>/corpus
#                        keeps what the runs found and grows over runs, DIR/<target>/
#                        crash-*, leak-*, timeout-*, oom-* are findings, and
#                        DIR/<target>/log* the libFuzzer output. Never the tree.
# Use P x W <= cores: on a 2-core machine 2 x 1 or 1 x 2.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD/fuzz
secs=${1:-600}
shift || true
build=${KTS_FUZZ_BUILD:-build-fuzz}
work=${KTS_FUZZ_WORK:-/tmp/kts-fuzz}
workers=${KTS_FUZZ_WORKERS:-1}
cores=$(nproc)
parallel=${KTS_FUZZ_PARALLEL:-$((cores >= 2 ? 2 : 1))}

if [[ ! -f $build/build.ninja ]]; then
	CC=clang meson setup "$build" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
		-Db_lundef=false >/dev/null
fi
if [[ $# -gt 0 ]]; then
	targets=("$@")
else
	targets=()
	for d in "$src"/corpus/*/; do
		targets+=("$(basename "$d")")
	done
fi
ninja -C "$build" "${targets[@]/#/fuzz/fuzz_}" >/dev/null

# fuzz_one NAME: one target, output in $work/NAME.
fuzz_one() {
	local name=$1 dir=$work/$1 exe
	local args=(-print_final_stats=1 -error_exitcode=1 -timeout_exitcode=1 -timeout=10
		    -rss_limit_mb=2048 -artifact_prefix="$dir/")
	exe=$(realpath "$build/fuzz/fuzz_$name")
	mkdir -p "$dir/corpus"
	rm -f "$dir"/log* "$dir"/fuzz-*.log
	if [[ -n ${KTS_FUZZ_RUNS:-} ]]; then
		args+=(-runs="$KTS_FUZZ_RUNS")
	else
		args+=(-max_total_time="$secs")
	fi
	[[ -f $src/$name.dict ]] && args+=(-dict="$src/$name.dict")
	# shellcheck disable=SC2207 # libFuzzer flags, one word each
	[[ -f $src/$name.options ]] && args+=($(grep -v '^#' "$src/$name.options"))
	[[ $workers -gt 1 ]] && args+=(-jobs="$workers" -workers="$workers")
	date +%s >"$dir/start"
	# -jobs writes fuzz-<job>.log into the working directory.
	(cd "$dir" && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
		UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		"$exe" "${args[@]}" "$dir/corpus" "$src/corpus/$name" >"$dir/log" 2>&1) || true
	date +%s >"$dir/end"
}

mkdir -p "$work"
amount=${KTS_FUZZ_RUNS:+$KTS_FUZZ_RUNS runs per worker}
echo "fuzzing ${targets[*]}: ${amount:-$secs s} each, $parallel at once x $workers worker(s);" \
	"scratch $work" >&2
running=0
for name in "${targets[@]}"; do
	if [[ $running -ge $parallel ]]; then
		wait -n || true
		running=$((running - 1))
	fi
	fuzz_one "$name" &
	running=$((running + 1))
done
wait

status=0
printf '%-15s %12s %7s %9s %6s %7s %8s %s\n' target execs secs exec/s cov ft corpus findings
for name in "${targets[@]}"; do
	dir=$work/$name
	logs=("$dir/log")
	# With workers, each one's log is fuzz-<job>.log (and the main log repeats them).
	compgen -G "$dir/fuzz-*.log" >/dev/null && logs=("$dir"/fuzz-*.log)
	execs=$(cat "${logs[@]}" | awk '/stat::number_of_executed_units/ { n += $NF } END { print n + 0 }')
	last=$(cat "${logs[@]}" | grep -Eo 'cov: [0-9]+ ft: [0-9]+' | sort -t' ' -k2,2n -k4,4n | tail -1)
	t=$(($(cat "$dir/end") - $(cat "$dir/start")))
	findings=$(find "$dir" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' -o \
		-maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | wc -l)
	[[ $findings -gt 0 ]] && status=1
	printf '%-15s %12d %7d %9d %6s %7s %8d %d%s\n' "$name" "$execs" "$t" $((execs / (t > 0 ? t : 1))) \
		"$(echo "$last" | awk '{ print $2 }')" "$(echo "$last" | awk '{ print $4 }')" \
		"$(find "$dir/corpus" -type f | wc -l)" "$findings" \
		"$([[ $findings -gt 0 ]] && echo " (see $dir)")"
done
exit $status
