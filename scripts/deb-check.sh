#!/usr/bin/env bash
# CI stage for the Debian package, as root on a Debian or Ubuntu machine:
# builds it (scripts/deb.sh, installing cargo-deb first if missing),
# installs it with apt-get, checks the binary, the man page and the
# completions, then removes it and checks that none of its files is left
# and /etc/wireguard (wgp2p's config, not the package's) is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "deb-check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (it installs and removes the package)"
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

deb=$(./scripts/deb.sh | tail -1)
[ -f "$deb" ] || fail "scripts/deb.sh did not print a package path (got: $deb)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
case "$(basename "$deb")" in
  "wgp2p_${version}_$(dpkg --print-architecture).deb") ;;
  *) fail "unexpected package name $deb" ;;
esac
echo "deb-check: $deb"
dpkg-deb --field "$deb" Package Version Depends Suggests

# The package runs no script and owns nothing under /etc: removing or
# purging it cannot touch the config in /etc/wireguard, which is wgp2p's
# data (the interfaces' configs and keys), not the package's.
control=$(mktemp -d)
dpkg-deb --control "$deb" "$control"
extra=()
for f in "$control"/*; do
  case "${f##*/}" in control | md5sums) ;; *) extra+=("${f##*/}") ;; esac
done
rm -rf "$control"
[ "${#extra[@]}" -eq 0 ] || fail "the package has maintainer scripts or conffiles: ${extra[*]}"
! dpkg-deb --contents "$deb" | awk '{ print $6 }' | grep -q '^\./etc/' ||
  fail "the package installs files under /etc"

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "$(readlink -f "$deb")"
# What /etc/wireguard holds now (wireguard-tools, a dependency, may have
# just made it), to compare after the removal.
etc_wireguard() { find /etc/wireguard -printf '%p %m %s %T@\n' 2>/dev/null | sort; }
etc_before=$(etc_wireguard)

# /usr/bin explicitly: a from-source install in /usr/local/bin comes first
# on PATH.
/usr/bin/wgp2p --version | grep -qx "wgp2p $version" || fail "wgp2p --version: $(/usr/bin/wgp2p --version)"
man -wa wgp2p | grep -qx /usr/share/man/man1/wgp2p.1.gz || fail "man -w wgp2p: $(man -wa wgp2p 2>&1)"
man -l /usr/share/man/man1/wgp2p.1.gz 2>/dev/null | grep -q "wgp2p" || fail "the man page does not render"
for f in /usr/share/bash-completion/completions/wgp2p /usr/share/zsh/vendor-completions/_wgp2p \
  /usr/share/fish/vendor_completions.d/wgp2p.fish; do
  grep -q "add-peer" "$f" || fail "$f is missing or does not complete add-peer"
done
unit=/lib/systemd/system/wgp2p-agent@.service
grep -qx 'ExecStart=/usr/bin/wgp2p --interface %i agent $WGP2P_AGENT_ARGS' "$unit" ||
  fail "$unit is missing or does not run /usr/bin/wgp2p"
[ "$(stat -c %a "$unit")" = 644 ] || fail "$unit is not mode 644"
[ -s /usr/share/doc/wgp2p/copyright ] || fail "no copyright file"
grep -q "GNU LESSER GENERAL PUBLIC LICENSE" /usr/share/doc/wgp2p/copyright || fail "the copyright file lacks the license"
bash -c 'source /usr/share/bash-completion/completions/wgp2p && complete -p wgp2p' >/dev/null ||
  fail "the bash completion does not load"

# What the package installed, then remove it: every file must be gone, and
# every directory either gone or still used (not empty, or owned by
# another package). It has no conffiles, so nothing waits for a purge.
mapfile -t listed < <(dpkg -L wgp2p)
apt-get remove -y -qq wgp2p
[ "$(dpkg-query -W -f='${db:Status-Status}' wgp2p 2>/dev/null)" != installed ] ||
  fail "wgp2p is still installed"
left=()
for p in "${listed[@]}"; do
  [ -e "$p" ] || continue
  if [ -d "$p" ] && { [ -n "$(ls -A "$p")" ] || dpkg -S "$p" >/dev/null 2>&1; }; then
    continue
  fi
  left+=("$p")
done
[ "${#left[@]}" -eq 0 ] || fail "left after apt-get remove: ${left[*]}"
dpkg --purge wgp2p >/dev/null 2>&1 || true
[ "$(etc_wireguard)" = "$etc_before" ] || fail "/etc/wireguard changed across install and remove"
echo "deb-check: ok (${#listed[@]} paths installed, none left after apt-get remove)"
