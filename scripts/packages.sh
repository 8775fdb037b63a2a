# shellcheck shell=bash
# Sourced by scripts/install.sh, scripts/test.sh and .ci/run: the Debian and
# Ubuntu packages wgp2p needs, and one function that installs the missing
# ones. Every install uses --no-install-recommends: wireguard-tools
# recommends a kernel module package, which on Debian means a whole kernel
# image; wgp2p falls back to wireguard-go where the module is missing.

# To build: a linker (rustc calls `cc`) and the C library it links against.
BUILD_PACKAGES=(gcc libc6-dev)
# To run: wg and wg-quick, wireguard-go for hosts without the kernel module,
# ip(8) (wg-quick uses it).
RUNTIME_PACKAGES=(wireguard-tools wireguard-go iproute2)
# To run the tests: the namespace lab (tests/lab) needs ping, iptables (NAT
# routers, relay rules), coturn (a STUN server and turnutils_stunclient),
# nsenter/unshare/mount (util-linux), sysctl (procps); strace for
# bench/profile.sh and the fault injection of tests/faults.rs; systemd for
# `systemd-analyze verify` of the agent's unit (tests/agent.rs).
TEST_PACKAGES=("${RUNTIME_PACKAGES[@]}" iputils-ping iptables coturn util-linux procps strace systemd)

# For scripts/systemd-test.sh: systemd-nspawn boots the containers,
# debootstrap builds their Debian root.
SYSTEMD_TEST_PACKAGES=(systemd-container debootstrap)

# ensure_packages PKG...: installs the packages that are not installed yet
# with apt-get (needs root); does nothing where apt-get does not exist.
ensure_packages() {
  command -v apt-get >/dev/null || return 0
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or: sudo apt-get install --no-install-recommends ${missing[*]})" >&2
    return 1
  fi
  echo "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# as_invoking_user CMD...: under `sudo` from a user, runs CMD as that user
# (with their home), else (or without runuser) as is. cargo run this way
# downloads into the user's ~/.cargo and builds into their checkout with
# files they own; run as root it would leave root's files there, and
# their next cargo run would fail on them.
as_invoking_user() {
  if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "${SUDO_UID:-0}" != 0 ]; then
    local home runuser
    home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    # util-linux's, in /usr/sbin: not on the PATH a user's sudo -E keeps.
    if runuser=$(PATH=$PATH:/usr/sbin:/sbin command -v runuser); then
      "$runuser" -u "$SUDO_USER" -- env HOME="$home" "$@"
      return
    fi
  fi
  "$@"
}
