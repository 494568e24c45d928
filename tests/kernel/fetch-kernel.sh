#!/bin/bash
# Provide a kernel with kTLS modules for the VM tier. Prints two lines:
#   <path to vmlinuz>
#   <modules dir: .../lib/modules/<release>, or "none" when everything is builtin>
# KTS_KERNEL (+ KTS_MODULES) use your own kernel; otherwise the newest Debian
# linux-image-<ver>+debNN-cloud-amd64 (>= 6.12) is downloaded once and cached.
set -euo pipefail

die() { echo "fetch-kernel: $*" >&2; exit 1; }

if [[ -n ${KTS_KERNEL:-} ]]; then
	[[ -f $KTS_KERNEL ]] || die "KTS_KERNEL=$KTS_KERNEL: no such file"
	mods=${KTS_MODULES:-}
	[[ -n $mods ]] || die "KTS_KERNEL is set but KTS_MODULES is not (give .../lib/modules/<release>, or 'none' if tls and the ciphers are builtin)"
	if [[ $mods != none ]]; then
		[[ -f $mods/modules.dep ]] || die "KTS_MODULES=$mods has no modules.dep (run: depmod -b <root> <release>)"
	fi
	printf '%s\n%s\n' "$KTS_KERNEL" "$mods"
	exit 0
fi

for tool in apt-cache apt-get dpkg-deb depmod; do
	command -v "$tool" >/dev/null ||
		die "'$tool' not found: this needs a Debian-like host (apt, dpkg; depmod is in package kmod: apt-get install kmod), or set KTS_KERNEL and KTS_MODULES"
done

cache=${KTS_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kts/kernel}

# Newest signed cloud kernel >= 6.12 (6.12 is where kTLS was verified for kts;
# 6.1's 6.1.0-N naming and the -dbg/-unsigned packages do not match).
pkg=$(apt-cache search --names-only '^linux-image-[0-9]+\.[0-9]+\.[0-9]+\+(deb[0-9]+|bpo)-cloud-amd64$' |
	awk '{print $1}' | sed 's/^linux-image-//' |
	awk -F. '$1 > 6 || ($1 == 6 && $2 >= 12)' | sort -V | tail -n1)

if [[ -z $pkg ]]; then
	# Offline or no package lists: fall back to the newest kernel already cached.
	pkg=$(ls "$cache" 2>/dev/null | sort -V | tail -n1 || true)
	[[ -n $pkg ]] || die "apt-cache knows no linux-image-6.12+ *-cloud-amd64 package. Run 'apt-get update' (Debian 12: the kernel comes from bookworm-security or bookworm-backports), or set KTS_KERNEL and KTS_MODULES"
	echo "fetch-kernel: apt lists have no cloud kernel; using cached $pkg" >&2
fi

dir=$cache/$pkg
if [[ ! -f $dir/lib/modules/$pkg/modules.dep ]]; then
	echo "fetch-kernel: downloading linux-image-$pkg into $cache" >&2
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	# As root, apt would try to drop to user _apt, who cannot write into $tmp.
	sandbox=()
	[[ $EUID -ne 0 ]] || sandbox=(-o APT::Sandbox::User=root)
	(cd "$tmp" && apt-get download -q "${sandbox[@]}" "linux-image-$pkg" >&2) ||
		die "apt-get download linux-image-$pkg failed (no access to the Debian mirror?)"
	dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/root"
	# The package ships no modules.dep; modprobe --show-depends needs one.
	depmod -b "$tmp/root" "$pkg"
	rm -rf "$dir"
	mv "$tmp/root" "$dir" # atomic, so a concurrent run never sees half a tree
fi

[[ -f $dir/boot/vmlinuz-$pkg ]] || die "$dir/boot/vmlinuz-$pkg missing (corrupt cache? remove $dir)"
printf '%s\n%s\n' "$dir/boot/vmlinuz-$pkg" "$dir/lib/modules/$pkg"
