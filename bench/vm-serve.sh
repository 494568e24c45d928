#!/bin/bash
# vm-serve.sh BUILDDIR - boot the kernel-TLS VM (as bench/run-vm.sh: Debian's
# cloud kernel with kTLS, qemu TCG, -icount shift=0 so CPU times are
# instruction counts) with BUILDDIR/bench/vm_serve as the guest program and the
# static BUILDDIR/bench/kts-server on its PATH; nginx and its shared libraries
# go into a second initramfs archive when the host has /usr/sbin/nginx, perf
# into a third with KTS_BENCH_VM_PERF=1 (profiles of the first round), and
# KTS_BENCH_VM_BASE names a second kts-server to compare with.
# Prints vm_serve's lines and the boot's tls_stat deltas. Used by run-all.sh.
#   VM_BENCH_SIZE (256M), VM_BENCH_ROUNDS (3), VM_BENCH_CONNS (1000),
#   VM_BENCH_ONLY (servers, as kts-uring,nginx-ktls; default all),
#   VM_BENCH_PERF_PERIOD (20000 instructions a sample): passed to the guest
#   KTS_BENCH_VM_MEM (1536), KTS_BENCH_VM_TIMEOUT (3600), KTS_LOG_DIR (.)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
kdir=$here/../tests/kernel
die() { echo "vm-serve: $*" >&2; exit 1; }
[[ $# -eq 1 ]] || die "usage: vm-serve.sh BUILDDIR"
bin=$1/bench/vm_serve srv=$1/bench/kts-server
[[ -x $bin && -x $srv ]] || die "$bin or $srv missing (static libssl.a/liburing.a needed; ninja -C $1)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
logdir=${KTS_LOG_DIR:-$PWD}
mkdir -p "$logdir"
log=$(realpath "$logdir")/vm-serve-serial.log

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kern=$("$kdir/fetch-kernel.sh") || die "no kernel (see above)"
vmlinuz=${kern%%$'\n'*} moddir=${kern#*$'\n'}
helpers=$(realpath "$srv")
# KTS_BENCH_VM_BASE=PATH: another build's static kts-server, measured in the
# same boot as base-uring (an A/B of a change: ratios hold within one boot).
if [[ -n ${KTS_BENCH_VM_BASE:-} ]]; then
	[[ -x $KTS_BENCH_VM_BASE ]] || die "KTS_BENCH_VM_BASE=$KTS_BENCH_VM_BASE: not an executable"
	cp "$KTS_BENCH_VM_BASE" "$work/kts-server-base"
	helpers+=" $work/kts-server-base"
fi
KTS_GUEST_HELPERS=$helpers "$kdir/mkinitramfs.sh" "$work/base.cpio.gz" "$moddir" "$(realpath "$bin")"
cp "$work/base.cpio.gz" "$work/initramfs.cpio.gz"

# nginx and perf are dynamically linked: the binary at /NAME/NAME, and every
# library ldd names and the loader at their own paths and in /NAME/lib, in a
# gzip'd cpio archive appended to the initramfs (the kernel unpacks
# concatenated archives in turn).
add_dynamic() { # NAME BINARY [WHAT: the log's name for it]
	local st=$work/$1
	mkdir -p "$st/$1/lib" "$st/etc"
	cp "$2" "$st/$1/$1"
	ldd "$2" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
		mkdir -p "$st$(dirname "$lib")"
		cp -L "$lib" "$st$lib"
		cp -L "$lib" "$st/$1/lib/"
	done
	echo 'root:x:0:0:root:/:/bin/sh' >"$st/etc/passwd"
	echo 'root:x:0:' >"$st/etc/group"
	(cd "$st" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >>"$work/initramfs.cpio.gz"
	echo "vm-serve: ${3:-$1} and $(ls "$st/$1/lib" | wc -l) libraries added to the initramfs" >&2
}
nginx=$(PATH=$PATH:/usr/sbin:/sbin command -v nginx || true)
if [[ -n $nginx ]]; then
	add_dynamic nginx "$nginx" "nginx $("$nginx" -v 2>&1 | sed 's/.*\///')"
else
	echo "vm-serve: no nginx on the host: the guest has none" >&2
fi
append="console=ttyS0 quiet panic=-1"
# KTS_BENCH_VM_PERF=1: perf in the guest and a profile of every transfer of
# the first round (bench/vm_prof.c); sampling costs CPU, so such a boot's
# figures are for reading the profiles only.
if [[ ${KTS_BENCH_VM_PERF:-0} != 0 ]]; then
	perf=$(command -v perf || true)
	[[ -n $perf ]] || die "KTS_BENCH_VM_PERF=1 needs perf on the host (apt-get install linux-perf)"
	add_dynamic perf "$perf"
	append+=" VM_BENCH_PERF=1"
fi
for v in VM_BENCH_SIZE VM_BENCH_PERF_PERIOD VM_BENCH_ROUNDS VM_BENCH_CONNS VM_BENCH_ONLY; do
	[[ -z ${!v:-} ]] || append+=" $v=${!v}"
done
echo "vm ${vmlinuz##*/} qemu TCG -icount shift=0 (CPU seconds are instruction counts / 1e9)"
qrc=0
timeout "${KTS_BENCH_VM_TIMEOUT:-3600}" qemu-system-x86_64 -accel tcg -icount shift=0 -smp 1 \
	-cpu qemu64,+aes,+pclmulqdq,+ssse3,+sse4.1,+sse4.2,+rdrand \
	-m "${KTS_BENCH_VM_MEM:-1536}" -nographic -no-reboot -nic none \
	-kernel "$vmlinuz" -initrd "$work/initramfs.cpio.gz" -append "$append" \
	</dev/null >"$log" 2>&1 || qrc=$?
awk '{ sub(/\r$/, "") }
	/^KTS>/ { print substr($0, 5); if ($0 ~ /^KTS>bench done/) done = 1 }
	/^KTS:MODULE / && $3 != "ok" { print "module " $2 " failed to load" }
	/^KTS:TLSSTAT-BEFORE / { before[$2] = $3 }
	/^KTS:TLSSTAT-AFTER / { after[$2] = $3 }
	END {
		for (c in after)
			if (c ~ /^Tls(Tx|Rx)(Sw|Device)$|DecryptError/ && after[c] != before[c])
				printf "tls_stat %s +%d\n", c, after[c] - before[c]
		if (!done) { print "VM run incomplete: no \"bench done\" from the guest"; exit 1 }
	}' "$log" || { echo "vm-serve: qemu exit $qrc; serial log $log:"; tail -n 5 "$log"; exit 1; }
