#!/usr/bin/env bash
# wgp2p under a real systemd as PID 1: builds a Debian 12 root once
# (debootstrap from Debian's packages, cached in target/systemd-test/root),
# installs this build's .deb into it (scripts/deb.sh), and runs the
# scenarios of tests/systemd.rs and the README walkthrough of
# tests/readme.rs, whose lab hosts are containers booting that root with
# systemd-nspawn (tests/lab/container.rs). Needs root. Installs what it
# needs when missing: systemd-container and debootstrap (apt-get), and
# cargo-deb (cargo install). Exits non-zero when a scenario fails, or when
# fewer passed than the `systemd_ct_` tests those files list.
# Environment: SYSTEMD_ROOT_REBUILD=1 builds the root again.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "systemd-test: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (it boots containers)"

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
ensure_packages "${SYSTEMD_TEST_PACKAGES[@]}"
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

work=$PWD/target/systemd-test
root=$work/root
# What the root holds: systemd as PID 1, what wgp2p's package depends on,
# and the tools the scenarios run (ping, ps).
include=systemd,systemd-sysv,dbus,iproute2,wireguard-tools,wireguard-go,iputils-ping,procps
mkdir -p "$work"

# Containers a killed run left behind: their overlays are unmounted and
# their files deleted (only under this directory).
if [ -d "$work/containers" ]; then
  for merged in "$work"/containers/*/merged; do
    mountpoint -q "$merged" && umount "$merged"
  done
  rm -rf "$work/containers"
fi

started=$SECONDS
if [ "${SYSTEMD_ROOT_REBUILD:-0}" = 1 ] || [ "$(cat "$root/.wgp2p-include" 2>/dev/null)" != "$include" ]; then
  echo "systemd-test: building the Debian 12 root in $root (debootstrap)"
  rm -rf "$root" "$root.tmp"
  debootstrap --variant=minbase --include="$include" bookworm "$root.tmp" \
    http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap failed (log: $work/debootstrap.log)"; }
  echo "$include" >"$root.tmp/.wgp2p-include"
  mv "$root.tmp" "$root"
  echo "systemd-test: root built in $((SECONDS - started)) s"
else
  echo "systemd-test: using the root cached in $root"
fi

# This build's package, installed into the root the way apt installs it
# (no maintainer script runs: the package has none).
deb=$(./scripts/deb.sh | tail -1)
[ -f "$deb" ] || fail "scripts/deb.sh did not print a package path (got: $deb)"
cp "$deb" "$root/tmp/wgp2p.deb"
chroot "$root" dpkg -i /tmp/wgp2p.deb >/dev/null
rm -f "$root/tmp/wgp2p.deb"
chroot "$root" wgp2p --version

# The test binaries that hold systemd_ct_ scenarios.
targets=(systemd readme)
mapfile -t bins < <(cargo test --locked --no-run "${targets[@]/#/--test=}" --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["test"] and m.get("executable"):
        print(m["executable"])')
[ "${#bins[@]}" -eq "${#targets[@]}" ] || fail "cargo did not report the executables of tests/{${targets[*]}}.rs"

expected=0
for bin in "${bins[@]}"; do
  n=$("$bin" --list --include-ignored systemd_ct_ | grep -c ': test$' || true)
  expected=$((expected + n))
done
[ "$expected" -gt 0 ] || fail "no systemd_ct_ test found"

export WGP2P_SYSTEMD_ROOT=$root WGP2P_DEB=$(readlink -f "$deb")
log=$work/log
: >"$log"
status=0
scenarios=$SECONDS
for bin in "${bins[@]}"; do
  # One scenario at a time: each boots up to four containers.
  "$bin" --ignored --test-threads=1 systemd_ct_ 2>&1 | tee -a "$log" || status=1
done
passed=$(grep '^test result:' "$log" | grep -o '[0-9]* passed' |
  awk '{ n += $1 } END { print n + 0 }')
echo "systemd-test: scenarios took $((SECONDS - scenarios)) s, all of it $((SECONDS - started)) s"
[ "$status" -eq 0 ] || fail "FAILED: a scenario failed (log: $log)"
[ "$passed" -eq "$expected" ] || fail "FAILED: $passed of the $expected systemd_ct_ tests passed"
echo "systemd-test: $passed of $expected systemd_ct_ tests passed under systemd $(chroot "$root" systemctl --version | head -1 | cut -d' ' -f2)"
