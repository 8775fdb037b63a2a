#!/usr/bin/env bash
# CI stage for the README's first command (scripts/install.sh), as root on
# Debian or Ubuntu: runs it with PREFIX in a temporary directory, so this
# machine's /usr/local is left alone, and checks what it installed: the
# binary and its version, the man page as man(1) finds it, and the bash,
# zsh and fish completions. Removes the directory at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "install-check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (scripts/install.sh installs packages)"

prefix=$(mktemp -d /tmp/wgp2p-install-check.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
PREFIX=$prefix ./scripts/install.sh

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
bin=$prefix/bin/wgp2p
[ -x "$bin" ] || fail "no executable $bin"
"$bin" --version | grep -qx "wgp2p $version" || fail "wgp2p --version: $("$bin" --version)"

# man(1) is there (install.sh installs man-db) and finds the page.
command -v man >/dev/null || fail "no man(1) after install.sh"
page=$(MANPATH=$prefix/share/man man -w wgp2p) || fail "man -w wgp2p found no page"
[ "$page" = "$prefix/share/man/man1/wgp2p.1" ] || fail "man -w wgp2p: $page"
MANPATH=$prefix/share/man man wgp2p 2>/dev/null | grep -q "add-peer" ||
  fail "the man page does not render or lacks add-peer"

# Each completion where its shell looks under a prefix, for this program.
bash_completion=$prefix/share/bash-completion/completions/wgp2p
bash -c 'source "$1" && complete -p wgp2p' _ "$bash_completion" >/dev/null ||
  fail "$bash_completion does not load"
head -1 "$prefix/share/zsh/site-functions/_wgp2p" | grep -qx "#compdef wgp2p" ||
  fail "_wgp2p is not a zsh completion for wgp2p"
grep -q "^complete -c wgp2p" "$prefix/share/fish/vendor_completions.d/wgp2p.fish" ||
  fail "wgp2p.fish is not a fish completion for wgp2p"
for f in "$bash_completion" "$prefix/share/zsh/site-functions/_wgp2p" \
  "$prefix/share/fish/vendor_completions.d/wgp2p.fish"; do
  grep -q "add-peer" "$f" || fail "$f does not complete add-peer"
done
echo "install-check: ok (binary, man page, bash, zsh and fish completions under PREFIX=$prefix)"
