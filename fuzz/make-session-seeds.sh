#!/bin/bash
# make-session-seeds.sh [BUILD_DIR] - write the session_file seeds into
# fuzz/corpus/session_file/ from real handshakes on loopback: openssl s_server
# with a throwaway certificate, sessions saved by kts-client (BUILD_DIR, default
# build-fuzz) and by openssl s_client. The secrets in them are those of these
# test connections only. Also copies whose lifetime is pushed to 100 years (so
# that the seeds still reach the "offer and send a ClientHello" path long after
# they were made), their DER forms, and edge cases around the PEM blocks.
# Run by hand when the session format changes; the output is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
out=fuzz/corpus/session_file
client=$build/tools/kts-client
[[ -x $client ]] || { echo "no $client: build $build first" >&2; exit 1; }

tmp=$(mktemp -d)
srv=
cleanup() { [[ -n $srv ]] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# serve OPTIONS...: an openssl s_server on $port until the next call.
serve() {
	[[ -n $srv ]] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null || true
	openssl s_server -accept "127.0.0.1:$port" -cert "$tmp/cert.pem" -key "$tmp/key.pem" -www \
		-quiet "$@" >/dev/null 2>&1 &
	srv=$!
	for _ in $(seq 50); do
		python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && return
		sleep 0.1
	done
	echo "s_server did not start" >&2
	exit 1
}
# kts NAME: a session saved by kts-client (verified with the certificate as the
# system store, so tagged with the default verification rules).
kts() {
	install -m 0600 /dev/null "$tmp/$1"
	SSL_CERT_FILE=$tmp/cert.pem "$client" --servername localhost --session-file "$tmp/$1" \
		--get / "127.0.0.1:$port" >/dev/null
}
# ossl NAME OPTIONS...: a session saved by openssl s_client.
ossl() {
	local name=$1
	shift
	printf 'GET / HTTP/1.0\r\n\r\n' | openssl s_client -connect "127.0.0.1:$port" -servername localhost \
		-ign_eof -quiet -sess_out "$tmp/$name" "$@" >/dev/null 2>&1
}

serve -tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384
kts kts-tls13
ossl openssl-tls13
serve -tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305
kts kts-tls12-ticket
ossl openssl-tls12-ticket
serve -tls1_2 -no_ticket
kts kts-tls12-id

# A helper on OpenSSL: long-lived copies and DER.
cat >"$tmp/redate.c" <<'EOF'
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <time.h>
/* redate IN.pem OUT.pem OUT.der: made a minute ago, lasting 100 years. */
int main(int argc, char **argv)
{
	FILE *in = fopen(argv[1], "r"), *pem, *der;
	SSL_SESSION *s = in ? PEM_read_SSL_SESSION(in, NULL, NULL, NULL) : NULL;
	unsigned char *buf = NULL;
	int len;

	if (argc != 4 || !s)
		return 1;
	SSL_SESSION_set_time(s, (long)time(NULL) - 60);
	SSL_SESSION_set_timeout(s, 100L * 365 * 86400);
	pem = fopen(argv[2], "w");
	der = fopen(argv[3], "w");
	len = i2d_SSL_SESSION(s, &buf);
	if (!pem || !der || len <= 0 || PEM_write_SSL_SESSION(pem, s) != 1 ||
	    fwrite(buf, 1, (size_t)len, der) != (size_t)len)
		return 1;
	return fclose(pem) || fclose(der);
}
EOF
cc -o "$tmp/redate" "$tmp/redate.c" -lssl -lcrypto

rm -rf "$out"
mkdir -p "$out"
for f in kts-tls13 kts-tls12-ticket kts-tls12-id openssl-tls13 openssl-tls12-ticket; do
	grep -q 'BEGIN SSL SESSION PARAMETERS' "$tmp/$f" || { echo "no session in $f" >&2; exit 1; }
	cp "$tmp/$f" "$out/$f.pem"
	"$tmp/redate" "$tmp/$f" "$out/$f-100y.pem" "$out/$f-100y.der"
done
# The file as writers leave it: an older block, then the newest; a newest one
# cut short by a writer that died (readers take the older one); junk around.
cat "$out/kts-tls12-ticket-100y.pem" "$out/kts-tls13-100y.pem" >"$out/two-blocks.pem"
{ cat "$out/kts-tls13-100y.pem"; head -c 300 "$out/kts-tls12-id-100y.pem"; } >"$out/partial-tail.pem"
{ printf 'junk\n'; cat "$out/kts-tls12-id-100y.pem"; printf -- '-----BEGIN SSL SESSION PARAMETERS-----\n'; } \
	>"$out/junk-and-dangling-begin.pem"
# PEM headers would make OpenSSL ask for a password: kts must refuse quietly.
sed '1a Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n' \
	"$out/openssl-tls13.pem" >"$out/encrypted-header.pem"
printf -- '-----BEGIN SSL SESSION PARAMETERS-----\nMAA=\n-----END SSL SESSION PARAMETERS-----\n' \
	>"$out/empty-sequence.pem"
ls -l "$out"
