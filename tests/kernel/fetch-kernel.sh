#!/bin/bash
# Provide a kernel with kTLS modules for the VM tier. Prints two lines:
#   <path to vmlinuz>
#   <modules dir: .../lib/modules/<release>, or "none" when everything is builtin>
# KTS_KERNEL (+ KTS_MODULES) use your own kernel; otherwise the newest Debian
# linux-image-<ver>+debNN-cloud-amd64 (>= KTS_KERNEL_MIN, default 6.12) is
# downloaded once and cached: from the host's apt sources, or with
# KTS_KERNEL_SUITE=<suite> (e.g. trixie-backports) from that Debian suite
# through a private apt state in the cache (the host's apt is not touched).
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
min=${KTS_KERNEL_MIN:-6.12}
[[ $min =~ ^[0-9]+\.[0-9]+$ ]] || die "KTS_KERNEL_MIN=$min: want MAJOR.MINOR"
suite=${KTS_KERNEL_SUITE:-}
origin=${suite:-host} # recorded with each cached kernel

apt_opts=()
[[ $EUID -ne 0 ]] || apt_opts=(-o APT::Sandbox::User=root) # else apt drops to _apt
if [[ -n $suite ]]; then
	[[ $suite =~ ^[a-z0-9-]+$ ]] || die "KTS_KERNEL_SUITE=$suite: want a Debian suite name"
	state=$cache/apt-$suite
	mkdir -p "$state/lists/partial" "$state/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
		>"$state/sources.list"
	apt_opts+=(-o "Dir::Etc::sourcelist=$state/sources.list" -o Dir::Etc::sourceparts=-
		-o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state"
		-o "Dir::Cache::archives=$state/archives")
	# Lists younger than a day are used as they are; offline, older ones (or
	# the cached kernels) still serve.
	if [[ -z $(find "$state/lists" -name '*_Packages*' -mtime -1 2>/dev/null) ]]; then
		apt-get "${apt_opts[@]}" -q update >&2 ||
			echo "fetch-kernel: apt-get update for $suite failed; using what is cached" >&2
	fi
fi

at_least_min() { awk -F. -v M="${min%.*}" -v m="${min#*.}" '$1 > M || ($1 == M && $2 >= m)'; }

# Newest signed cloud kernel >= min (6.12 is where kTLS was verified for kts;
# 6.1's 6.1.0-N naming and the -dbg/-unsigned packages do not match).
pkg=$(apt-cache "${apt_opts[@]}" search --names-only \
	'^linux-image-[0-9]+\.[0-9]+\.[0-9]+\+(deb[0-9]+|bpo)-cloud-amd64$' 2>/dev/null |
	awk '{print $1}' | sed 's/^linux-image-//' | at_least_min | sort -V | tail -n1)

if [[ -z $pkg ]]; then
	# Offline or no package lists: the newest kernel already cached from the
	# same origin.
	pkg=$(for d in "$cache"/*/; do
		n=$(basename "$d")
		[[ $n != apt-* && -d $d/lib/modules/$n ]] || continue
		# Kernels cached before origins were recorded came from the host's sources.
		[[ $(cat "$d/origin" 2>/dev/null || echo host) == "$origin" ]] && echo "$n"
	done | at_least_min | sort -V | tail -n1 || true)
	[[ -n $pkg ]] || die "apt-cache knows no linux-image-$min+ *-cloud-amd64 package${suite:+ in $suite}. Run 'apt-get update' (Debian 12: the kernel comes from bookworm-security or bookworm-backports), or set KTS_KERNEL and KTS_MODULES"
	echo "fetch-kernel: apt lists have no cloud kernel; using cached $pkg" >&2
fi

dir=$cache/$pkg
if [[ ! -f $dir/lib/modules/$pkg/modules.dep ]]; then
	echo "fetch-kernel: downloading linux-image-$pkg into $cache" >&2
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	(cd "$tmp" && apt-get download -q "${apt_opts[@]}" "linux-image-$pkg" >&2) ||
		die "apt-get download linux-image-$pkg failed (no access to the Debian mirror?)"
	# Newer kernels split the image package: vmlinuz, the modules and
	# modules.builtin/order come in the linux-binary-, linux-modules- and
	# linux-base-<release> it depends on.
	parts=$(dpkg-deb -f "$tmp"/linux-image-*.deb Depends | tr ',|' '\n' | awk '{print $1}' |
		grep -Fx -e "linux-binary-$pkg" -e "linux-modules-$pkg" -e "linux-base-$pkg" || true)
	if [[ -n $parts ]]; then
		# shellcheck disable=SC2086 # package names, no spaces
		(cd "$tmp" && apt-get download -q "${apt_opts[@]}" $parts >&2) ||
			die "apt-get download $parts failed"
	fi
	for deb in "$tmp"/*.deb; do
		dpkg-deb -x "$deb" "$tmp/root"
	done
	# Split packages install under /usr/lib/modules (vmlinuz included); depmod
	# and the callers look under /lib/modules.
	[[ -e $tmp/root/lib ]] || ln -s usr/lib "$tmp/root/lib"
	# The package ships no modules.dep; modprobe --show-depends needs one.
	depmod -b "$tmp/root" "$pkg"
	echo "$origin" >"$tmp/root/origin"
	rm -rf "$dir"
	mv "$tmp/root" "$dir" # atomic, so a concurrent run never sees half a tree
fi

vmlinuz=$dir/boot/vmlinuz-$pkg
[[ -f $vmlinuz ]] || vmlinuz=$dir/lib/modules/$pkg/vmlinuz
[[ -f $vmlinuz ]] || die "no vmlinuz in $dir (corrupt cache? remove $dir)"
printf '%s\n%s\n' "$vmlinuz" "$dir/lib/modules/$pkg"
