#!/bin/bash
# Build the test VM's initramfs:
#   mkinitramfs.sh <out.cpio.gz> <modules dir .../lib/modules/<release> | none> <static binary>...
# Contents: static busybox, the modules `tls` needs (resolved from
# kmod-config/modprobe.d, softdeps included) decompressed and listed in load
# order, the test binaries, /init and /run-tests.sh.
set -euo pipefail

die() { echo "mkinitramfs: $*" >&2; exit 1; }
[[ $# -ge 3 ]] || die "usage: mkinitramfs.sh <out.cpio.gz> <modules-dir|none> <static-binary>..."
out=$1 moddir=$2
shift 2

here=$(cd "$(dirname "$0")" && pwd)
confdir=$here/../../kmod-config/modprobe.d

need() { command -v "$1" >/dev/null || die "'$1' not found: apt-get install $2"; }
need cpio cpio
need gzip gzip
need modprobe kmod
busybox=${KTS_BUSYBOX:-$(command -v busybox || true)}
[[ -n $busybox ]] || die "busybox not found: apt-get install busybox-static"

# The initramfs has no libc, so everything in it must be statically linked.
is_static() {
	local o
	o=$(LC_ALL=C ldd "$1" 2>&1 || true) # ldd fails on static executables
	[[ $o == *'not a dynamic executable'* || $o == *'statically linked'* ]]
}
is_static "$busybox" || die "$busybox is dynamically linked: apt-get install busybox-static"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,etc,proc,sys,dev,tmp,tests,lib/modules/kts}

cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
	[[ $applet == busybox ]] || ln -s busybox "$stage/bin/$applet"
done

: >"$stage/etc/kts-modules"
if [[ $moddir != none ]]; then
	moddir=$(cd "$moddir" && pwd) || die "modules dir $moddir missing"
	release=${moddir##*/}
	# modprobe -d wants <root>/lib/modules/<release>; the dir may live anywhere.
	mkdir -p "$stage/.root/lib/modules"
	ln -s "$moddir" "$stage/.root/lib/modules/$release"
	mp() { modprobe -d "$stage/.root" -S "$release" -C "$confdir" --show-depends "$@"; }

	# modprobe silently drops softdep names it cannot find; say so.
	for m in $(sed -n 's/^softdep tls pre://p' "$confdir"/*.conf); do
		mp "$m" >/dev/null 2>&1 || echo "mkinitramfs: warning: softdep module $m not in kernel $release" >&2
	done

	# Dependency order, softdeps first; drop repeats and builtins.
	deps=$(mp tls) || die "modprobe cannot resolve tls in $moddir (kernel without CONFIG_TLS?)"
	while read -r kind path args; do
		[[ $kind == insmod ]] || continue
		name=${path##*/}
		name=${name%.ko*}
		case $path in
		*.ko.xz) xz -dc "$path" ;;
		*.ko.zst) zstd -qdc "$path" ;;
		*.ko.gz) gzip -dc "$path" ;;
		*.ko) cat "$path" ;;
		*) die "unexpected module file $path" ;;
		esac >"$stage/lib/modules/kts/$name.ko" || die "cannot decompress $path (xz-utils / zstd installed?)"
		echo "$name${args:+ $args}" >>"$stage/etc/kts-modules"
	done < <(awk '!seen[$0]++' <<<"$deps")
	echo "mkinitramfs: modules: $(awk '{print $1}' "$stage/etc/kts-modules" | tr '\n' ' ')" >&2
	builtin=$(awk '$1 == "builtin" {print $2}' <<<"$deps" | tr '\n' ' ')
	[[ -z $builtin ]] || echo "mkinitramfs: builtin: $builtin" >&2
	rm -rf "$stage/.root"
fi

: >"$stage/etc/kts-tests"
for bin in "$@"; do
	[[ -x $bin ]] || die "$bin: not an executable file"
	is_static "$bin" || die "$bin is dynamically linked; guest binaries must be linked with -static"
	name=${bin##*/}
	[[ ! -e $stage/tests/$name ]] || die "two test binaries named $name"
	cp "$bin" "$stage/tests/$name"
	echo "/tests/$name" >>"$stage/etc/kts-tests"
done

# Programs the tests start (kts-server), on the guest's PATH but not run as tests.
for bin in ${KTS_GUEST_HELPERS:-}; do
	[[ -x $bin ]] || die "helper $bin: not an executable file"
	is_static "$bin" || die "helper $bin is dynamically linked; link it with -static"
	cp "$bin" "$stage/bin/${bin##*/}"
done

# Real peers the tests start (curl, openssl), dynamically linked: copied with
# the libraries ldd names, at the same paths, and OpenSSL's config.
for bin in ${KTS_GUEST_PEERS:-}; do
	[[ -x $bin ]] || die "peer $bin: not an executable file"
	cp "$bin" "$stage/bin/${bin##*/}"
	for lib in $(LC_ALL=C ldd "$bin" | grep -o '/[^ ]*' || true); do
		mkdir -p "$stage${lib%/*}"
		cp -L "$lib" "$stage$lib"
	done
done
if [[ -n ${KTS_GUEST_PEERS:-} && -f /usr/lib/ssl/openssl.cnf ]]; then
	mkdir -p "$stage/usr/lib/ssl"
	cp -L /usr/lib/ssl/openssl.cnf "$stage/usr/lib/ssl/"
fi

install -m 0755 "$here/init.sh" "$stage/init"
install -m 0755 "$here/run-tests.sh" "$stage/run-tests.sh"

(cd "$stage" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$out"
