# shellcheck shell=bash
# Lab helpers for the wgp2p benchmarks (sourced by bench/run.sh and
# bench/mesh30.sh). A host is a network namespace plus a holder process
# with its own mount and UTS namespaces (private /run for wireguard-go's
# sockets and private /etc/wireguard); `on HOST CMD…` runs CMD there.
# Everything created here is recorded and removed by lab_cleanup, which
# kills only the recorded holders and the PIDs `ip netns pids` lists for
# this lab's own namespaces.
#
# The reference lab is tests/lab (Rust, used by every lab test): it checks
# the machine's requirements, builds NAT routers and STUN servers, and its
# guard cleans up even when a test panics. This file is a small bash copy
# of its host setup (same namespaces, holder and mounts, same 203.0.113.0/24
# bridge) for the benchmarks only: they time single commands from a shell
# (`now_us`, no fork) next to `wg set` and the old shell script's way, and
# must run from a release binary without building the test harness. When
# the host setup changes in tests/lab/mod.rs, change it here too.

# Every bench script cds to the repository root, then sources this file,
# which sets what they all run with.
set -uo pipefail
export LC_ALL=C
ROOT=$PWD

LAB_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LAB_PREFIX="wgb$$"
declare -A LAB_HOLDER=()
LAB_NAMESPACES=()
LAB_DIRS=()

die() { echo "bench: $*" >&2; exit 1; }

# usage_or_root SCRIPT [ARG]: with -h/--help print SCRIPT's header comment
# and exit; otherwise the benchmark needs root (it builds namespaces).
usage_or_root() {
  if [[ ${2:-} == -h || ${2:-} == --help ]]; then
    sed -n '2,/^set -uo/p' "$1" | sed '$d; s/^# \{0,1\}//'
    exit 0
  fi
  [[ $EUID -eq 0 ]] || die "run as root: the lab creates network namespaces"
}
note() { echo "bench: $*" >&2; }

# require_tools TOOL...: dies naming the first one not on PATH.
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "missing $tool"
  done
}

# lab_begin: pick the binary (select_binary) and remove every namespace and
# process of the lab on exit, also after Ctrl-C.
lab_begin() {
  select_binary
  trap lab_cleanup EXIT
  trap 'exit 130' INT TERM
}

# The clock, in microseconds, without forking (bash >= 5).
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

lab_ns() { echo "${LAB_PREFIX}$1"; }

lab_netns_create() {
  local ns=$1
  ip netns add "$ns" || die "ip netns add $ns failed"
  LAB_NAMESPACES+=("$ns")
  ip -n "$ns" link set lo up
}

# host_new NAME: a network namespace with a holder for its mount/UTS namespaces.
host_new() {
  local name=$1 ns pid i
  ns=$(lab_ns "$name")
  lab_netns_create "$ns"
  setsid ip netns exec "$ns" unshare -m -u --propagation private sh -c \
    "hostname $name; mount -t tmpfs none /run; mount -t tmpfs none /etc/wireguard; exec sleep infinity" \
    </dev/null >/dev/null 2>&1 &
  pid=$!
  LAB_HOLDER[$name]=$pid
  # Ready once it runs `sleep` (after its mounts): entering earlier could
  # land in the root mount namespace.
  for ((i = 0; i < 500; i++)); do
    [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */sleep ]] && return 0
    sleep 0.01
  done
  die "holder of host $name did not start"
}

# on HOST CMD…: run CMD inside HOST with a clean environment.
on() {
  local name=$1
  shift
  nsenter -t "${LAB_HOLDER[$name]}" -m -n -u -- env -i PATH="$LAB_PATH" LC_ALL=C HOME=/root \
    WGP2P_SERVICE=wg-quick WGP2P_STUN_SERVERS= "$@"
}

# A bridge namespace playing the public network 203.0.113.0/24.
lab_bridge() {
  LAB_BRIDGE=$(lab_ns br)
  lab_netns_create "$LAB_BRIDGE"
  ip -n "$LAB_BRIDGE" link add br0 type bridge
  ip -n "$LAB_BRIDGE" link set br0 up
}

# host_plug NAME OCTET: eth0 203.0.113.OCTET/24 on the bridge.
host_plug() {
  local name=$1 octet=$2 ns
  ns=$(lab_ns "$name")
  ip -n "$LAB_BRIDGE" link add "p$octet" type veth peer name eth0 netns "$ns"
  ip -n "$LAB_BRIDGE" link set "p$octet" master br0 up
  ip -n "$ns" addr add "203.0.113.$octet/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# host_dummy NAME: a standalone host's eth0, 203.0.113.1/24, on a veth whose
# other end (eth0p) stays in the same host (no dummy module is needed). The
# benchmark's peers use closed ports of 203.0.113.1 as endpoints.
host_dummy() {
  local ns
  ns=$(lab_ns "$1")
  ip -n "$ns" link add eth0 type veth peer name eth0p
  ip -n "$ns" addr add 203.0.113.1/24 dev eth0
  ip -n "$ns" link set eth0p up
  ip -n "$ns" link set eth0 up
}

# lab_disk_dir VAR: a new directory on the machine's disk (not tmpfs) in
# VAR, removed at cleanup.
lab_disk_dir() {
  local __dir
  __dir=$(mktemp -d /var/tmp/wgp2p-bench.XXXXXX) || die "mktemp failed"
  LAB_DIRS+=("$__dir")
  printf -v "$1" '%s' "$__dir"
}

host_delete() {
  local name=$1 ns pid
  ns=$(lab_ns "$name")
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null; done
  pid=${LAB_HOLDER[$name]:-}
  [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
  sleep 0.05
  for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  [[ -n ${LAB_HOLDER[$name]:-} ]] && wait "${LAB_HOLDER[$name]}" 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  unset "LAB_HOLDER[$name]"
  local keep=() n
  for n in "${LAB_NAMESPACES[@]}"; do [[ $n != "$ns" ]] && keep+=("$n"); done
  LAB_NAMESPACES=("${keep[@]}")
}

lab_cleanup() {
  local name ns pid d
  for name in "${!LAB_HOLDER[@]}"; do host_delete "$name"; done
  for ns in "${LAB_NAMESPACES[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  LAB_NAMESPACES=()
  for d in "${LAB_DIRS[@]}"; do [[ $d == /var/tmp/wgp2p-bench.* ]] && rm -rf -- "$d"; done
  LAB_DIRS=()
}

# N random WireGuard public keys, one per line, from one read of
# /dev/urandom: 42 random base64 characters, then a character whose low two
# bits are zero (canonical base64 of 32 bytes), then '='. Any 32 bytes are a
# valid public key for configuration.
random_keys() {
  local n=$1 line canon=AEIMQUYcgkosw048 i=0
  head -c $((48 * n)) /dev/urandom | base64 -w 64 | while IFS= read -r line; do
    printf '%s%s=\n' "${line:0:42}" "${canon:$((i % 16)):1}"
    i=$((i + 1))
  done
}

# The VPN address of preloaded peer I (0-based): 10.20.1.1 upwards inside
# the node's 10.20.0.0/16, so wg-quick adds no route per peer.
peer_ip() { echo "10.20.$((1 + $1 / 250)).$((1 + $1 % 250))"; }

# stats FILE: "median p95 n" (microseconds, nearest rank) of the numbers in FILE.
stats() {
  local -a v
  mapfile -t v < <(sort -n "$1")
  local n=${#v[@]}
  ((n > 0)) || { echo "- - 0"; return; }
  local mid=$(((n + 1) / 2 - 1)) p95=$(((95 * n + 99) / 100 - 1))
  local med
  if ((n % 2 == 0)); then med=$(((v[n / 2 - 1] + v[n / 2]) / 2)); else med=${v[mid]}; fi
  echo "$med ${v[p95]} $n"
}

# fmt_ms MICROSECONDS: milliseconds with two decimals (or one digit fewer
# past 100 ms).
fmt_ms() {
  local us=$1
  [[ $us == - ]] && { echo "-"; return; }
  if ((us < 0)); then
    printf -- '-'
    us=$((-us))
  fi
  if ((us >= 100000)); then
    printf '%d.%01d' $((us / 1000)) $(((us % 1000) / 100))
  else
    printf '%d.%02d' $((us / 1000)) $(((us % 1000) / 10))
  fi
}

# ratio A B: A/B with two decimals.
ratio() {
  local a=$1 b=$2
  [[ $a == - || $b == - ]] && { echo "-"; return; }
  ((b > 0)) || { echo "-"; return; }
  local r=$((a * 100 / b))
  printf '%d.%02d' $((r / 100)) $((r % 100))
}

# Sets BIN, the binary to measure: WGP2P_BIN when given, else a fresh
# stripped release build of this checkout.
# shellcheck disable=SC2034 # BIN is read by the scripts that source this file
select_binary() {
  if [[ -n ${WGP2P_BIN:-} ]]; then
    BIN=$(readlink -f "$WGP2P_BIN")
  else
    note "building the release binary (cargo build --release --locked)"
    cargo build --release --locked --quiet || die "cargo build --release failed"
    BIN=$ROOT/target/release/wgp2p
  fi
}
