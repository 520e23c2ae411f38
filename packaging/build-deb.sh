#!/usr/bin/env bash
# Builds the Debian package from the release binaries: vswitchd and
# vswitchctl, the conffile /etc/vswitch/vswitchd.toml, the systemd units,
# man pages and shell completions generated from the CLI definitions, the
# docs. Dependencies are the Debian packages of the shared libraries the
# binaries link (the DPDK runtime libraries, libc, ...), found with
# dpkg-shlibdeps. Usage: packaging/build-deb.sh [OUT_DIR]  (default target/deb)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/deb}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
revision=1
arch=$(dpkg --print-architecture)
bin=target/release
for b in vswitchd vswitchctl; do
  [ -x "$bin/$b" ] || { echo "build-deb: $bin/$b is missing (cargo build --release -p vswitch --bins)"; exit 1; }
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/vswitch_${version}-${revision}_${arch}
install -d "$root/DEBIAN" "$root/usr/sbin" "$root/usr/bin" "$root/etc/vswitch" "$root/lib/systemd/system" \
  "$root/usr/share/man/man8" "$root/usr/share/doc/vswitch" "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
  "$root/usr/share/lintian/overrides"

# Binaries, without debug sections (the package is for running it).
install -m 0755 "$bin/vswitchd" "$root/usr/sbin/vswitchd"
install -m 0755 "$bin/vswitchctl" "$root/usr/bin/vswitchctl"
strip --strip-debug --strip-unneeded "$root/usr/sbin/vswitchd" "$root/usr/bin/vswitchctl"

install -m 0644 packaging/vswitchd.toml "$root/etc/vswitch/vswitchd.toml"
install -m 0644 packaging/vswitchd.service packaging/vswitch-hugepages.service "$root/lib/systemd/system/"

# Man pages and completions from the CLI definitions.
gen=$stage/gen
"$bin/vswitchd" --generate-man "$gen"
"$bin/vswitchctl" --generate "$gen"
gzip -9n -c "$gen/vswitchd.8" > "$root/usr/share/man/man8/vswitchd.8.gz"
gzip -9n -c "$gen/vswitchctl.8" > "$root/usr/share/man/man8/vswitchctl.8.gz"
install -m 0644 "$gen/vswitchctl.bash" "$root/usr/share/bash-completion/completions/vswitchctl"
install -m 0644 "$gen/_vswitchctl" "$root/usr/share/zsh/vendor-completions/_vswitchctl"
install -m 0644 "$gen/vswitchctl.fish" "$root/usr/share/fish/vendor_completions.d/vswitchctl.fish"

# Docs.
install -m 0644 README.md docs/config.md docs/rules.md docs/offload.md docs/openflow.md docs/design.md "$root/usr/share/doc/vswitch/"
cat > "$root/usr/share/doc/vswitch/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vswitch

Files: *
Copyright: 2026 The vswitch authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
printf 'vswitch (%s-%s) unstable; urgency=medium\n\n  * Built from git %s.\n\n -- vswitch maintainers <vswitch@example.org>  %s\n' \
  "$version" "$revision" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(date -R)" \
  | gzip -9n > "$root/usr/share/doc/vswitch/changelog.Debian.gz"
install -m 0644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/vswitch"

# Dependencies: the packages of the libraries the binaries link.
deps=$(cd "$stage" && mkdir -p debian && printf 'Source: vswitch\n\nPackage: vswitch\nArchitecture: any\n' > debian/control \
  && dpkg-shlibdeps -O "$root/usr/sbin/vswitchd" "$root/usr/bin/vswitchctl" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$deps" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies"; exit 1; }
case "$deps" in *-dev*) echo "build-deb: a -dev package in the dependencies: $deps"; exit 1 ;; esac
# DPDK's drivers are loaded, not linked: the mempool handler every pool
# needs, and the NIC and virtual-device drivers, of the same ABI.
abi=$(echo "$deps" | sed -n 's/.*librte-eal\([0-9][0-9]*\) (>= \([^)]*\)).*/\1 \2/p')
set -- $abi
[ $# -eq 2 ] || { echo "build-deb: no librte-eal in the dependencies: $deps"; exit 1; }
deps="$deps, librte-mempool-ring$1 (>= $2)"
drivers="librte-net-mlx5-$1 (>= $2), librte-net-pcap$1 (>= $2), librte-net-ring$1 (>= $2), librte-net-null$1 (>= $2), librte-net-af-packet$1 (>= $2)"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<EOF
Package: vswitch
Version: ${version}-${revision}
Architecture: ${arch}
Maintainer: vswitch maintainers <vswitch@example.org>
Installed-Size: ${size}
Depends: ${deps}
Recommends: ${drivers}, iproute2
Section: net
Priority: optional
Description: DPDK userspace virtual switch for NFV hosts
 vswitchd forwards between SR-IOV VF representors and the uplink with a
 poll-mode datapath (exact-match and megaflow caches in front of an
 OpenFlow-style rule table), encapsulates and decapsulates VXLAN, and
 offloads hot flows into the NIC's e-switch with rte_flow. vswitchctl
 controls the running daemon.
EOF
echo /etc/vswitch/vswitchd.toml > "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/$script" "$root/DEBIAN/$script"
done
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum > DEBIAN/md5sums)

mkdir -p "$out"
deb="$out/vswitch_${version}-${revision}_${arch}.deb"
fakeroot dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" >/dev/null
echo "$deb"
