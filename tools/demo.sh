#!/bin/bash
# The main job: install what is missing, build, start kts-server on loopback
# with a throwaway certificate, fetch a file with kts-client and with curl,
# check both by SHA-256 and say whether the kernel path was taken.
#
# --vm: the same on real kTLS for hosts without it: boots Debian's 6.12 kernel
# under qemu (as the kernel test tier does), where kts-server serves curl,
# openssl s_client and kts-client, and prints the /proc/net/tls_stat deltas.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == --vm ]]; then
	tools/setup-debian.sh test
	[[ -f build-test/build.ninja ]] || meson setup build-test >/dev/null
	ninja -C build-test tests/kernel/ktls_server_peers tests/kernel/kts-server \
		tests/kernel/kts-client >/dev/null
	out=$(KTS_GUEST_HELPERS="$PWD/build-test/tests/kernel/kts-server $PWD/build-test/tests/kernel/kts-client" \
		KTS_GUEST_PEERS="$(command -v curl) $(command -v openssl)" KTS_LOG_DIR="$PWD/build-test" \
		tests/kernel/run-vm.sh build-test/tests/kernel/ktls_server_peers 2>&1) || true
	grep -E '^(---- vm:|CASE |tls_stat:)' <<<"$out" | sed 's/^CASE /  /'
	if grep -q '^kernel: [0-9]* passed, 0 failed' <<<"$out" && grep -q '^tls_stat: TlsTxSw +[1-9]' <<<"$out"; then
		echo "kernel path: TAKEN (in the VM: every connection tx=kernel rx=kernel, tls_stat above)"
	else
		echo "$out" | tail -30
		echo "kernel path: NOT shown; see the VM log above" >&2
		exit 1
	fi
	exit 0
fi
tools/setup-debian.sh build
[[ -f build/build.ninja ]] || meson setup build -Dtests=false >/dev/null
ninja -C build >/dev/null

tmp=$(mktemp -d)
server=
cleanup() { [[ -n $server ]] && kill "$server" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	-keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
mkdir "$tmp/www"
head -c $((32 << 20)) /dev/urandom >"$tmp/www/sample.bin"
want=$(sha256sum <"$tmp/www/sample.bin")

build/tools/kts-server --listen 127.0.0.1:0 --cert "$tmp/cert.pem" --key "$tmp/key.pem" \
	--root "$tmp/www" 2>"$tmp/server.log" &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$tmp/server.log" && break; sleep 0.1; done
port=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$tmp/server.log")
[[ -n $port ]] || { cat "$tmp/server.log"; echo "demo: server did not start" >&2; exit 1; }
echo "kts-server listening on 127.0.0.1:$port, serving sample.bin (32 MiB)"
for _ in $(seq 50); do grep -q "^engine" "$tmp/server.log" && break; sleep 0.1; done
echo "kts-server $(grep -m1 '^engine' "$tmp/server.log")"

build/tools/kts-client --ca "$tmp/cert.pem" --servername localhost --status \
	--get /sample.bin "127.0.0.1:$port" 2>"$tmp/client.err" >"$tmp/got.bin" ||
	{ cat "$tmp/client.err"; exit 1; }
[[ $(sha256sum <"$tmp/got.bin") == "$want" ]] || { echo "demo: kts-client got wrong bytes" >&2; exit 1; }
echo "kts-client: sha256 ok; $(grep '^offload' "$tmp/client.err" | tr '\n' ' ')"

curl -sS --cacert "$tmp/cert.pem" --resolve "localhost:$port:127.0.0.1" \
	"https://localhost:$port/sample.bin" -o "$tmp/curl.bin"
[[ $(sha256sum <"$tmp/curl.bin") == "$want" ]] || { echo "demo: curl got wrong bytes" >&2; exit 1; }
echo "curl: sha256 ok"

kill "$server"; wait "$server" 2>/dev/null || true; server=
echo "kts-server connections:"; grep '^.*conn ' "$tmp/server.log" | sed 's/^/  /'
if grep -q 'offload tx=kernel rx=kernel' "$tmp/client.err"; then
	echo "kernel path: TAKEN (kTLS carries both directions)"
else
	echo "kernel path: NOT taken; this kernel cannot do kTLS, so the records were protected in userspace."
	echo "  (see 'offload-reason' above; kmod-config/README.md explains what a host needs)"
fi
