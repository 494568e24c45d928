#!/bin/sh
# PID 1 of the test VM (busybox sh). Every line the host parses starts with
# "KTS:" (harness) or "KTS>" (test binary output); see run-tests.sh.
export PATH=/bin
mount -t devtmpfs dev /dev
# The cpio has no /dev/console node (building it would need root), so attach now.
exec </dev/console >/dev/console 2>&1
echo # firmware leaves terminal escapes at the start of the first line
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
# Console loglevel 1: keep kernel messages from splitting our lines.
echo 1 >/proc/sys/kernel/printk
ifconfig lo 127.0.0.1 netmask 255.0.0.0 up
echo "KTS:KERNEL $(uname -r)"

# In dependency order; the host fails the run on any FAIL.
while read -r mod args; do
	if insmod "/lib/modules/kts/$mod.ko" $args; then
		echo "KTS:MODULE $mod ok"
	else
		echo "KTS:MODULE $mod FAIL"
	fi
done </etc/kts-modules

/run-tests.sh $(cat /etc/kts-tests)
poweroff -f
