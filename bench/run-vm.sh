#!/bin/bash
# Run the benchmark: run-vm.sh <static kts_bench binary>
# 1. In a VM whose kernel has kTLS (qemu TCG; kernel and initramfs from
#    tests/kernel/fetch-kernel.sh and mkinitramfs.sh), printing its lines.
# 2. Natively on this host (kernel-path lines only if the host has kTLS).
# Settings (environment):
#   KTS_BENCH_N, KTS_BENCH_SIZE  passed to the guest on the kernel command line
#   KTS_BENCH_ICOUNT=1 (default) guest clock = emulated instructions (qemu
#                       -icount shift=0, one vCPU): 1 "ns" per instruction, so
#                       VM times are instruction counts, immune to host load.
#                       0: guest clock = host time, KTS_BENCH_VM_CPUS vCPUs (2).
#   KTS_BENCH_VM_MEM    MiB, default 1536 (the sendfile source sits on tmpfs)
#   KTS_BENCH_VM_TIMEOUT seconds, default 3600
#   KTS_BENCH_NATIVE=0  skip step 2
#   KTS_LOG_DIR         where bench-vm.log goes, default .
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
kdir=$here/../tests/kernel
die() { echo "bench: $*" >&2; exit 1; }

[[ $# -eq 1 && -x $1 ]] || die "usage: run-vm.sh <static kts_bench binary>"
bin=$(realpath "$1")
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
logdir=${KTS_LOG_DIR:-$PWD}
mkdir -p "$logdir"
log=$(realpath "$logdir")/bench-vm.log

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

kern=$("$kdir/fetch-kernel.sh") || die "no kernel (see above)"
vmlinuz=${kern%%$'\n'*} moddir=${kern#*$'\n'}
"$kdir/mkinitramfs.sh" "$work/initramfs.cpio.gz" "$moddir" "$bin"

# The guest's init runs the binary without arguments: settings travel as
# kernel command line words NAME=value, which the kernel puts in init's environment.
append="console=ttyS0 quiet panic=-1"
for v in KTS_BENCH_N KTS_BENCH_SIZE; do
	[[ -z ${!v:-} ]] || append+=" $v=${!v}"
done

if [[ ${KTS_BENCH_ICOUNT:-1} != 0 ]]; then
	clock=(-icount shift=0 -smp 1)
	clockdesc="guest clock counts emulated instructions (-icount shift=0): times are instruction counts"
else
	clock=(-smp "${KTS_BENCH_VM_CPUS:-2}")
	clockdesc="guest clock is host time: numbers move with host load"
fi
echo "==== VM: ${vmlinuz##*/} under qemu TCG (emulated CPU), $clockdesc."
echo "==== Absolute numbers are meaningless: compare kernel vs userspace only within this run (ratio lines)."
qrc=0 status=0
# -cpu as tests/kernel/run-vm.sh: AES-NI/PCLMUL/SSE4 for the fast cipher modules.
timeout "${KTS_BENCH_VM_TIMEOUT:-3600}" qemu-system-x86_64 -accel tcg "${clock[@]}" \
	-cpu qemu64,+aes,+pclmulqdq,+ssse3,+sse4.1,+sse4.2,+rdrand \
	-m "${KTS_BENCH_VM_MEM:-1536}" -nographic -no-reboot -nic none \
	-kernel "$vmlinuz" -initrd "$work/initramfs.cpio.gz" -append "$append" \
	</dev/null >"$log" 2>&1 || qrc=$?

# Guest framing (tests/kernel/run-tests.sh): "KTS>" = our output, "KTS:" = harness.
# Show our lines, module failures, and the tls_stat counters as proof of the kernel path.
awk '{ sub(/\r$/, "") }
	/^KTS>/ { print substr($0, 5); if ($0 ~ /^KTS>bench done/) done = 1 }
	/^KTS:MODULE / && $3 != "ok" { print "module " $2 " failed to load" }
	/^KTS:TLSSTAT-BEFORE / { before[$2] = $3 }
	/^KTS:TLSSTAT-AFTER / { after[$2] = $3 }
	/^KTS:END / { status = $3 }
	END {
		for (c in after)
			if (c ~ /^Tls(Tx|Rx)(Sw|Device)$|DecryptError/ && after[c] != before[c])
				printf "tls_stat %s +%d\n", c, after[c] - before[c]
		if (!done) { print "VM run incomplete: no \"bench done\" from the guest"; exit 1 }
		if (status != "rc=0") { print "kts_bench in the VM exited with " status; exit 1 }
	}' "$log" || {
	status=1
	[[ $qrc -ne 124 ]] || qrc="124: killed after KTS_BENCH_VM_TIMEOUT"
	echo "==== VM run failed (qemu exit status $qrc); end of the log ($log):"
	tail -n 5 "$log"
}

if [[ ${KTS_BENCH_NATIVE:-1} != 0 ]]; then
	"$bin" >"$work/native.out" 2>&1 || status=1
	if grep -q '^bench .* ktls=yes' "$work/native.out"; then
		echo "==== native: host kernel $(uname -r) has kTLS; real CPU, but other load on this host shows up"
	else
		echo "==== native: host kernel $(uname -r) has NO kTLS: userspace numbers only (kernel runs SKIPPED)"
	fi
	cat "$work/native.out"
fi
exit $status
