#!/bin/sh
# Run test binaries and frame their output for the host check (run-vm.sh).
# Used as-is in the VM and on a host whose own kernel has kTLS. Output:
#   KTS:TLSSTAT-BEFORE|AFTER <counter> <value>   (or KTS:TLSSTAT-MISSING <when>)
#   KTS:BEGIN <name> / KTS><line of its output> / KTS:END <name> rc=<exit code>
#   KTS:DONE
tlsstat() {
	if [ -r /proc/net/tls_stat ]; then
		while read -r name value; do echo "KTS:TLSSTAT-$1 $name $value"; done </proc/net/tls_stat
	else
		echo "KTS:TLSSTAT-MISSING $1"
	fi
}

tmp=$(mktemp -d)
tlsstat BEFORE
for bin in "$@"; do
	echo "KTS:BEGIN ${bin##*/}"
	# rc through a file: POSIX sh has no pipefail. A read loop, not sed, so each
	# line shows up at once (sed may buffer, which hides where a hung test was).
	{ "$bin" 2>&1; echo $? >"$tmp/rc"; } | while IFS= read -r line || [ -n "$line" ]; do
		echo "KTS>$line"
	done
	echo "KTS:END ${bin##*/} rc=$(cat "$tmp/rc")"
done
tlsstat AFTER
echo "KTS:DONE"
rm -rf "$tmp"
