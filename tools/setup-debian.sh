#!/bin/bash
# Install what kts needs on Debian 12 (as root), only the packages that are missing.
#   setup-debian.sh build   compiler, meson, OpenSSL, liburing, jansson (JSON), hiredis
#                           (the fleet's Redis store)
#   setup-debian.sh test    build + cmocka, peers (openssl, curl, gnutls-cli, nginx, haproxy),
#                           redis-server (started by the fleet tests themselves),
#                           qemu and friends for the real-kernel test tier,
#                           clang and its libFuzzer runtime for fuzz/
#   setup-debian.sh bench   test + the load generators and gnuplot of bench/run-all.sh
set -euo pipefail

build=(gcc meson ninja-build pkg-config libssl-dev liburing-dev libjansson-dev libhiredis-dev
       openssl curl)
test=(libcmocka-dev gnutls-bin nginx-light haproxy redis-server python3 valgrind systemd
      qemu-system-x86 busybox-static cpio kmod xz-utils
      clang libclang-rt-14-dev llvm)
bench=(wrk nghttp2-client gnuplot-nox)

case ${1:-build} in
build) want=("${build[@]}") ;;
test) want=("${build[@]}" "${test[@]}") ;;
bench) want=("${build[@]}" "${test[@]}" "${bench[@]}") ;;
*) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
	echo "setup: missing packages: ${missing[*]}; run as root or install them" >&2
	exit 1
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
