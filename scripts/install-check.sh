#!/usr/bin/env bash
# CI stage for the README's first command (scripts/install.sh), as root on
# Debian or Ubuntu: runs it with DESTDIR in a temporary directory, so this
# machine's /usr/local and /etc are left alone, and checks that it
# installed exactly the binary, the man page and the bash, zsh and fish
# completions where a real run puts them, that the binary runs and man(1)
# finds the page. Removes the directory at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "install-check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (scripts/install.sh installs packages)"

dest=$(mktemp -d /tmp/wgp2p-install-check.XXXXXX)
trap 'rm -rf "$dest"' EXIT
# Under a umask that would hide the files from users: install.sh sets its own.
(umask 077 && DESTDIR=$dest ./scripts/install.sh)

# Exactly these files, with these modes: what `scripts/install.sh` leaves.
expected="755 /usr/local/bin/wgp2p
644 /etc/fish/completions/wgp2p.fish
644 /usr/local/share/bash-completion/completions/wgp2p
644 /usr/local/share/man/man1/wgp2p.1
644 /usr/local/share/zsh/site-functions/_wgp2p"
got=$(cd "$dest" && find . -type f -printf '%m /%P\n' | sort -k2)
[ "$got" = "$(sort -k2 <<<"$expected")" ] || fail "installed files:
$got
expected:
$expected"
dirs=$(cd "$dest" && find . -mindepth 1 -type d ! -perm 755 -printf '/%P\n')
[ -z "$dirs" ] || fail "directories not 0755: $dirs"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
"$dest/usr/local/bin/wgp2p" --version | grep -qx "wgp2p $version" ||
  fail "wgp2p --version: $("$dest/usr/local/bin/wgp2p" --version)"

# man(1) is there (install.sh installs man-db) and finds the page.
man_dir=$dest/usr/local/share/man
command -v man >/dev/null || fail "no man(1) after install.sh"
page=$(MANPATH=$man_dir man -w wgp2p) || fail "man -w wgp2p found no page"
[ "$page" = "$man_dir/man1/wgp2p.1" ] || fail "man -w wgp2p: $page"
MANPATH=$man_dir man wgp2p 2>/dev/null | grep -q "add-peer" ||
  fail "the man page does not render or lacks add-peer"

# Each completion is its shell's, for this program, and knows add-peer.
bash_completion=$dest/usr/local/share/bash-completion/completions/wgp2p
zsh_completion=$dest/usr/local/share/zsh/site-functions/_wgp2p
fish_completion=$dest/etc/fish/completions/wgp2p.fish
bash -c 'source "$1" && complete -p wgp2p' _ "$bash_completion" >/dev/null ||
  fail "$bash_completion does not load"
head -1 "$zsh_completion" | grep -qx "#compdef wgp2p" || fail "$zsh_completion is not for wgp2p"
grep -q "^complete -c wgp2p" "$fish_completion" || fail "$fish_completion is not for wgp2p"
for f in "$bash_completion" "$zsh_completion" "$fish_completion"; do
  grep -q "add-peer" "$f" || fail "$f does not complete add-peer"
done
echo "install-check: ok (binary, man page, bash, zsh and fish completions, staged in DESTDIR=$dest)"
