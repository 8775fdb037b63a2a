#!/usr/bin/env bash
# Build wgp2p and install it with its runtime dependencies (Debian/Ubuntu).
# Run as root from the repository: sudo -E env "PATH=$PATH" scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null; then
  need=()
  for p in wireguard-tools wireguard-go iproute2 iputils-ping; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if [ "${#need[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  fi
fi
cargo build --release --locked
install -D -m 0755 target/release/wgp2p /usr/local/bin/wgp2p
# Completions and man page, where each shell and man(1) look for them.
install -d /usr/local/share/bash-completion/completions /usr/local/share/zsh/site-functions \
  /usr/local/share/fish/vendor_completions.d /usr/local/share/man/man1
/usr/local/bin/wgp2p completions bash > /usr/local/share/bash-completion/completions/wgp2p
/usr/local/bin/wgp2p completions zsh > /usr/local/share/zsh/site-functions/_wgp2p
/usr/local/bin/wgp2p completions fish > /usr/local/share/fish/vendor_completions.d/wgp2p.fish
/usr/local/bin/wgp2p man > /usr/local/share/man/man1/wgp2p.1
/usr/local/bin/wgp2p --version
