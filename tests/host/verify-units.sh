#!/bin/bash
# verify-units.sh UNIT... : the systemd units of kmod-config/, as configured
# for this build's tools (test-NAME), under their real names in a private
# directory, through `systemd-analyze verify`: any error or warning fails
# (unknown keys are only warnings there). Then the hardening the units
# promise is checked to be there.
set -u
dir=$(mktemp -d "${TMPDIR:-/tmp}/kts-units.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
names=()
for f in "$@"; do
	b=$(basename "$f")
	cp "$f" "$dir/${b#test-}"
	names+=("$dir/${b#test-}")
done
out=$(cd "$dir" && systemd-analyze verify --man=no "${names[@]}" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
	echo "systemd-analyze verify failed (rc $rc):"
	echo "$out"
	exit 1
fi
echo "systemd-analyze verify: ${#names[@]} units, no errors or warnings"
fail=0
for key in User=kts NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
	RuntimeDirectory=kts/%i RuntimeDirectoryMode=0700 UMask=0077 \
	'LoadCredential=key.pem:/etc/kts/%i/key.pem' 'ExecStartPre=.*ktsctl keys init /run/kts/%i/ticket.keys --if-missing' \
	'ExecStart=.*--ticket-keys /run/kts/%i/ticket.keys'; do
	grep -q -- "^$key" "$dir/kts-server@.service" || { echo "kts-server@.service lacks $key"; fail=1; }
done
for key in User=kts NoNewPrivileges=yes ProtectSystem=strict ReadWritePaths=/run/kts PrivateNetwork=yes \
	'ExecStart=.*ktsctl keys rotate'; do
	grep -q -- "^$key" "$dir/kts-rotate.service" || { echo "kts-rotate.service lacks $key"; fail=1; }
done
grep -q '^OnUnitActiveSec=1h' "$dir/kts-rotate.timer" || { echo "kts-rotate.timer: no hourly run"; fail=1; }
[ $fail -eq 0 ] && echo "hardening and key paths present"
exit $fail
