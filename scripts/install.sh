#!/usr/bin/env bash
# Build wgp2p from this checkout and install it, with its runtime packages,
# on Debian or Ubuntu. From the repository:
#   scripts/install.sh                          (as root)
#   sudo -E env "PATH=$PATH" scripts/install.sh (as a user with sudo: keeps
#                                                the PATH that finds cargo)
# Needs Rust >= 1.89 (rustup, see README.md). Installs with apt-get, without
# recommends (wireguard-tools recommends a kernel image): wireguard-tools,
# wireguard-go, iproute2, a linker to build, and man-db (Debian's container
# images have no man(1), and `man wgp2p` should work). Then installs the
# binary in /usr/local/bin, the man page and the bash, zsh and fish
# completions under /usr/local/share, and runs `wgp2p --version`.
# PREFIX (default /usr/local) installs elsewhere: scripts/install-check.sh
# checks this script in a temporary one.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/packages.sh
. scripts/packages.sh

[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root, or: sudo -E env \"PATH=\$PATH\" $0" >&2; exit 1; }
command -v cargo >/dev/null || {
  echo "install.sh: cargo is missing: install Rust >= 1.89 with rustup (README.md, Quick start)" >&2
  exit 1
}
ensure_packages "${BUILD_PACKAGES[@]}" "${RUNTIME_PACKAGES[@]}" man-db
cargo build --release --locked

prefix=${PREFIX:-/usr/local}
install -D -m 0755 target/release/wgp2p "$prefix/bin/wgp2p"
bin=$prefix/bin/wgp2p
# Completions and man page, where each shell and man(1) look for them.
install -d "$prefix/share/bash-completion/completions" "$prefix/share/zsh/site-functions" \
  "$prefix/share/fish/vendor_completions.d" "$prefix/share/man/man1"
"$bin" completions bash > "$prefix/share/bash-completion/completions/wgp2p"
"$bin" completions zsh > "$prefix/share/zsh/site-functions/_wgp2p"
"$bin" completions fish > "$prefix/share/fish/vendor_completions.d/wgp2p.fish"
"$bin" man > "$prefix/share/man/man1/wgp2p.1"
command -v mandb >/dev/null && mandb -q "$prefix/share/man" 2>/dev/null || true

echo "installed $bin, its man page (man wgp2p) and completions"
"$bin" --version
echo "next: wgp2p install 10.15.0.1/24 (see README.md)"
