#!/bin/bash
# handshakes.sh - TLS handshakes per second, full vs resumed, on one server core:
# kts-server, openssl s_server and nginx (one worker, if installed), each
# against hs_bench, and s_server against openssl s_time too. Builds nothing.
# See bench/README.md.
#
#   bench/handshakes.sh [BUILDDIR]        (default: build)
#
# HS_BENCH_SECONDS  seconds per run (default 5)
# HS_BENCH_ROUNDS   rounds of all runs, the table gives medians (default 1)
# HS_BENCH_KEY      p256 (default) or rsa2048: the throwaway server key
# HS_BENCH_CPUS     "SERVER CLIENT" cores (default: the first two allowed ones)
# HS_BENCH_PARALLEL hs_bench client processes, one set of rows per value
#                   (default "1 4": one connection at a time, and a busy server)
# HS_BENCH_KTS_ARGS more kts-server options (a word list: --no-tls13-seal, ...)
# HS_BENCH_RUNS     the runs, comma-separated (default "1.2 full,1.2 ticket,
#                   1.2 session-id,1.3 full,1.3 ticket"); a list of your own
#                   also skips the s_time runs: HS_BENCH_RUNS="1.2 ticket"
#                   HS_BENCH_ROUNDS=16 gives one goal's ratio from many rounds
#
# Prints each tool's own line as it goes, then a table. Exit status 1 if a run
# failed (error, or a resumed run below 95% resumed) or kts-server was skipped.
set -u

build=${1:-build}
secs=${HS_BENCH_SECONDS:-5}
rounds=${HS_BENCH_ROUNDS:-1}
keytype=${HS_BENCH_KEY:-p256}
hs=$build/bench/hs_bench
kts=$build/tools/kts-server
prog=handshakes.sh

die() { echo "$prog: $*" >&2; exit 2; }

case $secs in '' | *[!0-9]*) die "HS_BENCH_SECONDS=$secs: want whole seconds" ;; esac
[ "$secs" -ge 1 ] || die "HS_BENCH_SECONDS must be at least 1"
case $rounds in '' | *[!0-9]*) die "HS_BENCH_ROUNDS=$rounds: want a count" ;; esac
[ "$rounds" -ge 1 ] || die "HS_BENCH_ROUNDS must be at least 1"
IFS=, read -ra runs <<<"${HS_BENCH_RUNS:-1.2 full,1.2 ticket,1.2 session-id,1.3 full,1.3 ticket}"
[ ${#runs[@]} -gt 0 ] || die "HS_BENCH_RUNS is empty"
for r in "${runs[@]}"; do
	[[ $r =~ ^1\.[23]\ (full|ticket|session-id)$ && $r != "1.3 session-id" ]] ||
		die "HS_BENCH_RUNS: '$r': want '1.2 full', '1.2 ticket', '1.2 session-id', '1.3 full' or '1.3 ticket'"
done
stime=1
[ -z "${HS_BENCH_RUNS:-}" ] || stime=0
read -ra parallels <<<"${HS_BENCH_PARALLEL:-1 4}"
[ ${#parallels[@]} -gt 0 ] || die "HS_BENCH_PARALLEL is empty"
for p in "${parallels[@]}"; do
	case $p in '' | *[!0-9]* | 0) die "HS_BENCH_PARALLEL=$p: want counts from 1 to 64" ;; esac
	[ "$p" -le 64 ] || die "HS_BENCH_PARALLEL=$p: want counts from 1 to 64"
done
[ -x "$hs" ] || die "$hs missing: build first (ninja -C $build bench/hs_bench tools/kts-server)"
[ -x "$kts" ] || die "$kts missing: build first (ninja -C $build tools/kts-server)"
for t in openssl taskset timeout pgrep; do
	command -v $t >/dev/null || die "$t not found"
done

# Cores: the server gets one, the load client another.
if [ -n "${HS_BENCH_CPUS:-}" ]; then
	read -r scpu ccpu <<<"$HS_BENCH_CPUS"
else
	cpus=()
	IFS=, read -ra ranges <<<"$(taskset -cp $$ | sed 's/.*: *//')"
	for r in "${ranges[@]}"; do
		case $r in
		*-*) for ((i = ${r%-*}; i <= ${r#*-}; i++)); do cpus+=("$i"); done ;;
		*) cpus+=("$r") ;;
		esac
	done
	scpu=${cpus[0]}
	ccpu=${cpus[1]:-${cpus[0]}}
fi
if ! taskset -c "$scpu" true || ! taskset -c "$ccpu" true; then
	die "cannot pin to cores $scpu and $ccpu"
fi
[ "$scpu" != "$ccpu" ] || echo "$prog: warning: server and client share core $scpu" >&2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kts-hs.XXXXXX") || die "mktemp failed"
pids=() # the timeout(1) processes that own the running servers
# shellcheck disable=SC2317 # called from the trap
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Throwaway certificate: P-256 by default (what a current server would deploy,
# and the cheaper signature, so the full handshake is not inflated by RSA).
case $keytype in
p256) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
rsa2048) newkey=(-newkey rsa:2048) ;;
*) die "HS_BENCH_KEY=$keytype: want p256 or rsa2048" ;;
esac
openssl req -x509 "${newkey[@]}" -nodes -days 1 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1 || die "openssl req failed"
mkdir "$tmp/root" && echo "hello" >"$tmp/root/index.html"
# hs_bench runs many times: a private copy, so that a rebuild of the build
# directory meanwhile cannot pull it away (the servers are started only once).
cp "$hs" "$tmp/hs_bench" || die "cannot copy $hs"
hs=$tmp/hs_bench

# Longest a server may live: its runs plus slack, in case this script is killed
# without running its trap.
server_bound=$((rounds * 15 * (secs + 45) + 60))

# start_server NAME LOGFILE PATTERN CMD... : start CMD pinned to the server core
# under timeout(1); sets spid (the server itself), tpid (its timeout process)
# and port (from PATTERN's first group, a sed regex matched against LOGFILE).
start_server() {
	local name=$1 log=$2 pat=$3 i
	shift 3
	: >"$log"
	taskset -c "$scpu" timeout -k 5 "$server_bound" "$@" >>"$log" 2>&1 &
	tpid=$!
	pids+=("$tpid")
	port='' spid=''
	for ((i = 0; i < 100; i++)); do
		port=$(sed -n "s/$pat/\\1/p" "$log" | head -n 1)
		[ -n "$port" ] && break
		kill -0 "$tpid" 2>/dev/null || break
		sleep 0.1
	done
	spid=$(pgrep -P "$tpid" | head -n 1)
	if [ -z "$port" ] || [ -z "$spid" ]; then
		echo "$prog: $name did not start:" >&2
		sed 's/^/  /' "$log" >&2
		return 1
	fi
}

status=0
# Results by row key "server|client|tls|mode", in first-run order; per_sec,
# srv_cpu and per_cpu_s hold one value per round (the table shows medians).
keys=()
declare -A r_n r_res r_rate r_cpu r_per r_note

# add_result SERVER CLIENT TLS MODE N RESUMED PER_SEC SRV_CPU PER_CPU_S NOTE
add_result() {
	local k="$1|$2|$3|$4"
	[ -n "${r_n[$k]+set}" ] || { keys+=("$k"); r_n[$k]=0 r_res[$k]=0; }
	r_n[$k]=$((r_n[$k] + ${5:-0}))
	r_res[$k]=$((r_res[$k] + ${6:-0}))
	r_rate[$k]+=" ${7:-?}"
	r_cpu[$k]+=" ${8%\%}"
	r_per[$k]+=" ${9:-?}"
	[ -z "${10}" ] || r_note[$k]=${10}
}

median() { # median of the numbers among $1 (words), or ?; $2: printf format of a mean of two
	tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' | sort -g |
		awk -v f="${2:-%.1f}\n" '{ v[NR] = $1 } END { if (!NR) print "?"; else if (NR % 2) print v[(NR + 1) / 2];
			else printf f, (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

field() { # field NAME LINE
	sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" <<<"$2"
}

# run_hs SERVER PORT PID TLS MODE PARALLEL [hs_bench options...]
run_hs() {
	local server=$1 port=$2 pid=$3 tls=$4 mode=$5 par=$6 out note='' res
	shift 6
	out=$(timeout -k 5 $((secs + 40)) taskset -c "$ccpu" "$hs" --connect "127.0.0.1:$port" \
		--tls "$tls" --mode "$mode" --seconds "$secs" --parallel "$par" \
		--cafile "$tmp/cert.pem" --server-pid "$pid" "$@" 2>&1)
	local rc=$?
	echo "$server: $out"
	if [ $rc -ne 0 ] || ! grep -q '^hs .* n=' <<<"$out" || grep -q FAILED <<<"$out"; then
		status=1
		note=FAILED
	fi
	res=$(field resumed "$out")
	add_result "$server" "hs_bench/$par" "$tls" "$mode" "$(field n "$out")" "${res%/*}" \
		"$(field per_sec "$out")" "$(field server_cpu "$out")" "$(field per_server_cpu_s "$out")" "$note"
}

cpu_ticks() { # user + system clock ticks of process $1 (all threads)
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# run_stime SERVER PORT PID TLS new|reuse MODE : openssl s_time with -www / (a GET
# read to EOF: without it TLS 1.3 tickets are never read and -reuse never
# resumes). Rates are ours: connections over the wall time of the whole s_time
# process (s_time's "connections/user sec" divides by the client's user CPU).
run_stime() {
	local server=$1 port=$2 pid=$3 tls=$4 how=$5 mode=$6 out t0 t1 c0 c1 n nres wall cpu note=''
	c0=$(cpu_ticks "$pid")
	t0=$(date +%s%N)
	out=$(timeout -k 5 $((secs + 40)) taskset -c "$ccpu" openssl s_time \
		-connect "127.0.0.1:$port" "-$how" "-tls${tls/./_}" -time "$secs" -www / \
		-CAfile "$tmp/cert.pem" 2>&1)
	local rc=$?
	t1=$(date +%s%N)
	c1=$(cpu_ticks "$pid")
	n=$(sed -n 's/^\([0-9][0-9]*\) connections in [0-9.]*s;.*/\1/p' <<<"$out" | tail -n 1)
	# One progress character per connection: r resumed, * (or the version
	# letter) full.
	nres=$(grep -E '^[r*t23]+$' <<<"$out" | tr -cd r | wc -c)
	echo "$server: s_time -$how -tls${tls/./_}: $(grep 'connections' <<<"$out" | tr '\n' ' ')resumed=$nres/${n:-?}"
	if [ $rc -ne 0 ] || [ -z "$n" ] || [ "$n" -eq 0 ]; then
		status=1
		note=FAILED
		echo "$out" | tail -n 5 | sed 's/^/  /'
		add_result "$server" s_time "$tls" "$mode" "${n:-0}" "$nres" '' '' '' "$note"
		return
	fi
	if [ "$how" = reuse ] && [ $((nres * 100)) -lt $((n * 95)) ]; then
		status=1
		note=FAILED
	elif [ "$how" = new ] && [ "$nres" -gt 0 ]; then
		status=1
		note=FAILED
	fi
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')
	cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" 'BEGIN { print (b - a) / hz }')
	add_result "$server" s_time "$tls" "$mode" "$n" "$nres" \
		"$(awk -v n="$n" -v w="$wall" 'BEGIN { printf "%.1f", n / w }')" \
		"$(awk -v c="$cpu" -v w="$wall" 'BEGIN { printf "%.0f", 100 * c / w }')" \
		"$(awk -v n="$n" -v c="$cpu" 'BEGIN { if (c > 0) printf "%.1f", n / c; else print "?" }')" "$note"
}

echo "handshakes: $secs s per run, $rounds round(s), server on core $scpu, client on core $ccpu, key $keytype, $(openssl version)"

# ---- servers: all started now, each pinned to the server core, idle until used ----
kport='' kpid=''
if "$kts" --help 2>&1 | grep -q -- '--session-lifetime' && "$kts" --help 2>&1 | grep -q -- '--session-cache'; then
	# No line per connection, as nginx runs with access_log off (errors still go to the log).
	quiet=''
	"$kts" --help 2>&1 | grep -q -- '--quiet' && quiet=--quiet
	# shellcheck disable=SC2086 # $quiet and HS_BENCH_KTS_ARGS are word lists
	if start_server kts-server "$tmp/kts.log" '.*listening on .*:\([0-9][0-9]*\)$' \
		"$kts" --listen 127.0.0.1:0 --cert "$tmp/cert.pem" --key "$tmp/key.pem" \
		--root "$tmp/root" --session-lifetime 3600 --session-cache 1024 $quiet \
		${HS_BENCH_KTS_ARGS:-}; then
		kport=$port kpid=$spid
	else
		status=1
	fi
else
	echo "kts-server: SKIPPED: $kts --help lists no --session-lifetime/--session-cache"
	status=1
fi
# openssl s_server -www: tickets and its internal session cache are on.
sport='' spid_ss=''
if start_server s_server "$tmp/s_server.log" '^ACCEPT 127\.0\.0\.1:\([0-9][0-9]*\)$' \
	openssl s_server -www -accept 127.0.0.1:0 -cert "$tmp/cert.pem" -key "$tmp/key.pem"; then
	sport=$port spid_ss=$spid
else
	status=1
fi
# s_time cannot turn tickets off, so its session-ID row needs a server that
# issues none.
nport='' npid=''
if start_server "s_server -no_ticket" "$tmp/s_server_nt.log" '^ACCEPT 127\.0\.0\.1:\([0-9][0-9]*\)$' \
	openssl s_server -www -no_ticket -accept 127.0.0.1:0 -cert "$tmp/cert.pem" -key "$tmp/key.pem"; then
	nport=$port npid=$spid
else
	status=1
fi

# nginx, one worker on the server core, as a busy site would run it: shared
# session cache and tickets. Skipped (not a failure) when not installed.
xport='' xpid=''
nginx_bin=$(PATH=$PATH:/usr/sbin:/sbin command -v nginx || true)
if [ -n "$nginx_bin" ]; then
	mkdir "$tmp/nginx" || die "mkdir failed"
	# As root, the worker would switch to nobody, who cannot read $tmp.
	nginx_user=''
	[ "$(id -u)" -ne 0 ] || nginx_user='user root;'
	for ((i = 0; i < 5; i++)); do
		xport=$((20000 + RANDOM % 40000)) # nginx cannot report a port it picked
		cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
$nginx_user
error_log $tmp/nginx/error.log;
pid $tmp/nginx/nginx.pid;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $tmp/nginx;
	proxy_temp_path $tmp/nginx;
	fastcgi_temp_path $tmp/nginx;
	uwsgi_temp_path $tmp/nginx;
	scgi_temp_path $tmp/nginx;
	server {
		listen 127.0.0.1:$xport ssl;
		ssl_certificate $tmp/cert.pem;
		ssl_certificate_key $tmp/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_session_cache shared:kts_bench:10m;
		ssl_session_timeout 1h;
		ssl_session_tickets on;
		root $tmp/root;
	}
}
EOF
		: >"$tmp/nginx/error.log"
		rm -f "$tmp/nginx/nginx.pid"
		taskset -c "$scpu" timeout -k 5 "$server_bound" "$nginx_bin" -p "$tmp/nginx" \
			-c "$tmp/nginx/nginx.conf" >"$tmp/nginx/out.log" 2>&1 &
		pids+=("$!")
		xpid=''
		for ((j = 0; j < 50; j++)); do
			sleep 0.1
			[ -s "$tmp/nginx/nginx.pid" ] && xpid=$(pgrep -P "$(cat "$tmp/nginx/nginx.pid")" | head -n 1)
			[ -z "$xpid" ] || break
			grep -q emerg "$tmp/nginx/error.log" "$tmp/nginx/out.log" && break
		done
		[ -z "$xpid" ] || break
		kill "${pids[-1]}" 2>/dev/null
		wait "${pids[-1]}" 2>/dev/null
	done
	if [ -z "$xpid" ]; then
		echo "$prog: nginx did not start:" >&2
		cat "$tmp/nginx/error.log" "$tmp/nginx/out.log" | tail -n 5 | sed 's/^/  /' >&2
		status=1
	fi
else
	echo "nginx: SKIPPED: not installed (Debian package nginx-light)"
fi

for ((round = 1; round <= rounds; round++)); do
	[ "$rounds" -eq 1 ] || echo "round $round"
	for par in "${parallels[@]}"; do
		# s_server -www answers GET only (a HEAD gets no answer), hence --request get.
		for srv in "kts-server $kport $kpid" "s_server $sport $spid_ss --request get" \
			"nginx $xport $xpid"; do
			read -r name port pid extra <<<"$srv"
			[[ $port =~ ^[0-9]+$ && $pid =~ ^[0-9]+$ ]] || continue # did not start
			for run in "${runs[@]}"; do
				# shellcheck disable=SC2086 # $run and $extra are word lists
				run_hs "$name" "$port" "$pid" $run "$par" $extra
			done
		done
	done
	[ "$stime" -eq 1 ] || continue
	if [ -n "$sport" ]; then
		run_stime s_server "$sport" "$spid_ss" 1.2 new full
		run_stime s_server "$sport" "$spid_ss" 1.2 reuse ticket
	fi
	[ -z "$nport" ] || run_stime s_server "$nport" "$npid" 1.2 reuse session-id
	if [ -n "$sport" ]; then
		run_stime s_server "$sport" "$spid_ss" 1.3 new full
		run_stime s_server "$sport" "$spid_ss" 1.3 reuse ticket
	fi
done
if [ -n "$kport" ]; then
	errs=$(grep -c 'error' "$tmp/kts.log")
	if [ "$errs" -gt 0 ]; then
		echo "kts-server: $errs error line(s) in its log, the first:"
		grep 'error' "$tmp/kts.log" | head -n 5 | sed 's/^/  /'
	fi
fi

# ---- table: ratios against the full row of the same server, client and TLS -----
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "?" }'; }
echo
[ "$rounds" -eq 1 ] || echo "medians of $rounds rounds (n and resumed: totals)"
printf '%-10s %-11s %-4s %-10s %7s %9s %13s %7s %10s %7s %7s\n' \
	server client tls mode n per_sec resumed srv_cpu per_cpu_s x_wall x_cpu
for k in "${keys[@]}"; do
	IFS='|' read -r server client tls mode <<<"$k"
	rate=$(median "${r_rate[$k]}") per=$(median "${r_per[$k]}") cpu=$(median "${r_cpu[$k]}")
	xw='' xc=''
	if [ "$mode" != full ] && [ -n "${r_n[$server|$client|$tls|full]+set}" ]; then
		xw=$(ratio "$rate" "$(median "${r_rate[$server|$client|$tls|full]}")")
		xc=$(ratio "$per" "$(median "${r_per[$server|$client|$tls|full]}")")
	fi
	[ "$cpu" = '?' ] || cpu="${cpu%%.*}%"
	printf '%-10s %-11s %-4s %-10s %7s %9s %13s %7s %10s %7s %7s %s\n' "$server" "$client" "$tls" \
		"$mode" "${r_n[$k]}" "$rate" "${r_res[$k]}/${r_n[$k]}" "$cpu" "$per" "$xw" "$xc" "${r_note[$k]:-}"
done
# kts-server against nginx: the median of the rounds' ratios (each round ran
# both within seconds of each other, so drift between rounds cancels).
for k in "${keys[@]}"; do
	IFS='|' read -r server client tls mode <<<"$k"
	[ "$server" = kts-server ] && [ -n "${r_per[nginx|$client|$tls|$mode]+set}" ] || continue
	ratios=$(paste -d/ <(tr ' ' '\n' <<<"${r_per[$k]# }") \
		<(tr ' ' '\n' <<<"${r_per[nginx|$client|$tls|$mode]# }") |
		awk -F/ '$1 + 0 > 0 && $2 + 0 > 0 { printf "%.3f ", $1 / $2 }')
	printf 'kts-server / nginx %s %s %s per_cpu_s: %s (median over %d round(s))\n' "$client" "$tls" \
		"$mode" "$(median "$ratios" %.3f)" "$rounds"
done
echo "hs_bench/N: N client processes, each one connection at a time; per_sec: handshakes per"
echo "wall second; per_cpu_s: handshakes per second of server CPU (what one busy server core"
echo "would do); x_wall/x_cpu: resumed over full for the same server, client and TLS version;"
echo "s_time's session-id row ran against s_server -no_ticket. Goal: kts-server TLS 1.2"
echo "resumed x_cpu >= 5."
exit $status
