#!/usr/bin/env bash
# Builds the Debian package target/debian/wgp2p_VERSION_ARCH.deb with
# cargo-deb (`cargo install cargo-deb --locked`; metadata in Cargo.toml's
# [package.metadata.deb]): the release binary, its man page and its bash,
# zsh and fish completions, generated here by the binary itself.
# Prints the path of the package on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null ||
  { echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }
cargo build --release --locked
bin=target/release/wgp2p
out=target/release/deb
mkdir -p "$out"
"$bin" man | gzip -9n > "$out/wgp2p.1.gz"
"$bin" completions bash > "$out/wgp2p.bash"
"$bin" completions zsh > "$out/_wgp2p"
"$bin" completions fish > "$out/wgp2p.fish"
cargo deb --no-build | tail -1
