#!/bin/bash
# Real-kernel test tier: run-vm.sh <static test binary>...
# Boots a kTLS-capable kernel under qemu (TCG) once with all binaries in the
# initramfs, checks their output and /proc/net/tls_stat, and does the same
# natively when the host kernel has kTLS. See README.md for the protocol.
# KTS_GUEST_HELPERS: static programs the tests start (on their PATH, not run).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "run-vm: $*" >&2; exit 1; }

if [[ ${KTS_SKIP_KERNEL_TESTS:-} == 1 ]]; then
	{
		echo "################################################################"
		echo "# KTS_SKIP_KERNEL_TESTS=1: real-kernel kTLS tests SKIPPED."
		echo "# Nothing here proves that the kernel path works."
		echo "################################################################"
	} >&2
	exit 77
fi

[[ $# -ge 1 ]] || die "usage: run-vm.sh <static-test-binary>..."
bins=() names=()
for b in "$@"; do
	[[ -x $b ]] || die "$b: not an executable file"
	bins+=("$(realpath "$b")")
	names+=("${b##*/}")
done
tag=$(IFS=+; echo "${names[*]}")
logdir=${KTS_LOG_DIR:-$PWD}
mkdir -p "$logdir"

command -v qemu-system-x86_64 >/dev/null ||
	die "qemu-system-x86_64 not found: apt-get install qemu-system-x86 (or set KTS_SKIP_KERNEL_TESTS=1 to skip this tier)"

total_pass=0 total_fail=0 status=0

# check <label> <log>: apply check-log.awk, add to the totals, show the log on failure.
check() {
	local label=$1 log=$2 p f
	echo "---- $label"
	if ! awk -v nbins=${#bins[@]} -v totfile="$work/totals" -f "$here/check-log.awk" "$log"; then
		status=1
		echo "---- $label FAILED; full log ($log):"
		tr -d "\r" <"$log" | cat -v # no raw terminal escapes from the firmware
		echo "---- end of log"
	fi
	read -r p f _ <"$work/totals"
	total_pass=$((total_pass + p)) total_fail=$((total_fail + f))
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- in the VM ---
kern=$("$here/fetch-kernel.sh") || die "no kernel (see above)"
vmlinuz=${kern%%$'\n'*} moddir=${kern#*$'\n'}
"$here/mkinitramfs.sh" "$work/initramfs.cpio.gz" "$moddir" "${bins[@]}"

# The release in the name: one binary set may run under several kernels.
release=${moddir%/}
release=${release##*/}
[[ $moddir != none ]] || release=${vmlinuz##*/}
log=$logdir/kernel-vm-$tag-$release.log
t0=$EPOCHREALTIME rc=0
# -cpu: AES-NI/PCLMUL/SSE4 for the fast cipher modules; "max" or AVX break TCG boots.
timeout "${KTS_VM_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg \
	-cpu qemu64,+aes,+pclmulqdq,+ssse3,+sse4.1,+sse4.2,+rdrand -m 512 -nographic -no-reboot -nic none \
	-kernel "$vmlinuz" -initrd "$work/initramfs.cpio.gz" \
	-append "console=ttyS0 quiet panic=-1" </dev/null >"$log" 2>&1 || rc=$?
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
[[ $rc -ne 124 ]] || echo "run-vm: qemu killed after ${KTS_VM_TIMEOUT:-900}s (KTS_VM_TIMEOUT)" >>"$log"
[[ $rc -eq 0 || $rc -eq 124 ]] || echo "run-vm: qemu exited with status $rc" >>"$log"
check "vm: $release, ${secs}s boot+tests, log $log" "$log"

# --- natively, where the host kernel itself has kTLS ---
host_ktls() {
	python3 -c 'import socket as s
l = s.create_server(("127.0.0.1", 0))
c = s.create_connection(l.getsockname())
c.setsockopt(s.SOL_TCP, 31, b"tls")  # TCP_ULP' 2>/dev/null
}
if ! command -v python3 >/dev/null; then
	echo "---- native: python3 missing, cannot probe the host kernel for kTLS; VM only"
elif host_ktls; then
	log=$logdir/kernel-native-$tag.log
	helper_path=
	for h in ${KTS_GUEST_HELPERS:-}; do helper_path+="$(dirname "$(realpath "$h")"):"; done
	PATH="$helper_path$PATH" "$here/run-tests.sh" "${bins[@]}" >"$log" 2>&1 || true
	check "native: host kernel $(uname -r), log $log" "$log"
else
	echo "---- native: host kernel $(uname -r) has no kTLS (TCP_ULP \"tls\" fails); VM only"
fi

echo "kernel: $total_pass passed, $total_fail failed"
exit $status
