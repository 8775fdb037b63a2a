#!/usr/bin/env bash
# wgp2p benchmark: `sync` of big rosters on one node whose interface runs on
# wireguard-go. For each roster size: the plan from an empty config
# (`sync --dry-run`), the live apply (every peer added in one device
# update), the plan when already in sync, and a rename plus an address swap
# applied live; each with its wall time, peak memory (RSS, from
# /usr/bin/time) and how long the config lock is held (from the flock that
# takes it to the exit that releases it, traced by strace in a separate run).
#
# Usage, as root, from anywhere:
#
#   bench/sync.sh           1,000, 10,000 and 50,000 entries (~3 min)
#
# Environment:
#   WGP2P_BIN=PATH     binary to measure (default: target/release/wgp2p,
#                      built with `cargo build --release --locked`)
#   BENCH_SIZES="…"    roster sizes (default: 1000 10000 50000)
#   BENCH_RUNS=N       runs per timed figure (default 5; 3 at 50,000, and
#                      one live apply there)
#   BENCH_KEEPALIVE=S  write `keepalive = S` in every entry (default: none,
#                      so the roster default of 25 s)
#
# The node is a lab host (bench/lib.sh, the same design as tests/lab):
# config in its private tmpfs /etc/wireguard, interface wg0 on
# wireguard-go, roster endpoints on closed ports of the host's own
# 203.0.113.1, keepalive 25 (the roster default). Needs bash >= 5,
# iproute2, wireguard-tools, wireguard-go, util-linux, coreutils, strace and
# /usr/bin/time (package `time`). Prints a Markdown table on stdout and
# progress on stderr. It asserts no timing: it fails only when a command it
# measures fails or leaves the wrong number of live peers.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

case ${1:-} in
-h | --help)
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 0
  ;;
"") ;;
*) die "unknown argument $1 (expected --help)" ;;
esac

[[ $EUID -eq 0 ]] || die "run as root: the lab creates network namespaces"
((BASH_VERSINFO[0] >= 5)) || die "needs bash >= 5 (for \$EPOCHREALTIME)"
for tool in ip wg wg-quick wireguard-go nsenter unshare setsid base64 sort head strace /usr/bin/time; do
  command -v "$tool" >/dev/null || die "missing $tool: install the packages of .ci/run (and strace, time)"
done

read -ra SIZES <<<"${BENCH_SIZES:-1000 10000 50000}"
KEEPALIVE=''
[[ -n ${BENCH_KEEPALIVE:-} ]] && KEEPALIVE="keepalive = $BENCH_KEEPALIVE"$'\n'
select_binary
[[ -x $BIN ]] || die "no binary at $BIN"
lab_disk_dir RAW
trap lab_cleanup EXIT
trap 'exit 130' INT TERM

host_new node
host_dummy node
ROSTER=$RAW/roster.toml
CHANGED=$RAW/changed.toml
PEERS=$RAW/peers.conf
EMPTY=$RAW/empty.toml
: >"$EMPTY"

wgp2p() { on node "$BIN" "$@"; }

# Whether a wireguard-go runs in the node's network namespace.
wireguard_go_running() {
  local pid
  for pid in $(ip netns pids "$(lab_ns node)" 2>/dev/null); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == wireguard-go ]] && return 0
  done
  return 1
}

# A fresh node: nothing installed (and the old wireguard-go gone: with
# thousands of peers it takes seconds to exit), then installed with the
# interface up. Not through `wgp2p uninstall`: its `wg-quick down` parses
# the config in bash, which ran for minutes at 50,000 peers.
reset_node() {
  local i
  ip -n "$(lab_ns node)" link del wg0 2>/dev/null
  on node sh -c 'rm -rf /etc/wireguard/*' || die "cannot empty the config dir"
  for ((i = 0; i < 1200; i++)); do
    wireguard_go_running || break
    sleep 0.1
  done
  wireguard_go_running && die "wireguard-go did not exit after uninstall"
  wgp2p install 10.16.0.1/12 --endpoint 203.0.113.1 >"$RAW/out" 2>&1 || {
    tail -n 3 "$RAW/out" >&2
    die "install failed"
  }
}

# The address of entry I: 10.16.0.2 upwards inside the node's 10.16.0.0/12.
entry_ip() {
  local n=$(($1 + 2))
  echo "10.$((16 + n / 65536)).$(((n / 256) % 256)).$((n % 256))"
}

# make_roster N: N entries; CHANGED is the same roster with entry 0
# renamed and entries 1 and 2 swapping addresses; PEERS the same peers as
# a wg(8) config, for the floor (`wg addconf`).
make_roster() {
  local n=$1 i=0 key
  : >"$ROSTER"
  : >"$CHANGED"
  : >"$PEERS"
  while IFS= read -r key; do
    local name="n$i" ip
    ip=$(entry_ip "$i")
    printf '[[peer]]\nname = "%s"\nendpoint = "203.0.113.1:%d"\npublic_key = "%s"\naddress = "%s"\n%s' \
      "$name" $((1024 + i % 60000)) "$key" "$ip" "$KEEPALIVE" >>"$ROSTER"
    printf '[Peer]\nPublicKey = %s\nEndpoint = 203.0.113.1:%d\nAllowedIPs = %s/32\nPersistentKeepalive = %s\n' \
      "$key" $((1024 + i % 60000)) "$ip" "${BENCH_KEEPALIVE:-25}" >>"$PEERS"
    case $i in
    0) name="n0-renamed" ;;
    1) ip=$(entry_ip 2) ;;
    2) ip=$(entry_ip 1) ;;
    esac
    printf '[[peer]]\nname = "%s"\nendpoint = "203.0.113.1:%d"\npublic_key = "%s"\naddress = "%s"\n%s' \
      "$name" $((1024 + i % 60000)) "$key" "$ip" "$KEEPALIVE" >>"$CHANGED"
    i=$((i + 1))
  done < <(random_keys "$n")
}

# timed FILE PROGRAM ARGS…: run it on the node under /usr/bin/time; append
# "wall_us rss_kib cpu_us" to FILE (CPU: user + system, 10 ms resolution).
# Fails the benchmark when the command fails.
timed() {
  local file=$1 t0 t1 rss
  shift
  t0=$(now_us)
  on node /usr/bin/time -f '%M %U %S' -o "$RAW/rss" "$@" >"$RAW/out" 2>&1 || {
    tail -n 3 "$RAW/out" >&2
    die "$* failed"
  }
  t1=$(now_us)
  local user sys
  read -r rss user sys < <(tail -n 1 "$RAW/rss")
  echo "$((t1 - t0)) $rss $((10#${user/./} * 10000 + 10#${sys/./} * 10000))" >>"$file"
}

# lock_hold ARGS…: microseconds from the flock(LOCK_EX) that returns to the
# process's exit, traced with strace (stops only at flock and exit).
lock_hold() {
  on node strace -f -ttt -T --seccomp-bpf -e trace=flock -e signal=none \
    -o "$RAW/trace" "$BIN" "$@" >/dev/null 2>&1 || die "wgp2p $* failed under strace"
  local line start end
  local flock_re='([0-9]+)\.([0-9]{6}) .*<([0-9]+)\.([0-9]{6})>$' exit_re='([0-9]+)\.([0-9]{6}) \+\+\+ exited'
  line=$(grep -m1 'LOCK_EX.*= 0' "$RAW/trace")
  [[ $line =~ $flock_re ]] || die "no flock in the trace of wgp2p $*"
  start=$((BASH_REMATCH[1] * 1000000 + 10#${BASH_REMATCH[2]} + BASH_REMATCH[3] * 1000000 + 10#${BASH_REMATCH[4]}))
  line=$(grep 'exited with' "$RAW/trace" | tail -n 1)
  [[ $line =~ $exit_re ]] || die "no exit in the trace of wgp2p $*"
  end=$((BASH_REMATCH[1] * 1000000 + 10#${BASH_REMATCH[2]}))
  echo $((end - start))
}

# med FILE COLUMN: the median of a column, in microseconds or KiB.
med() {
  cut -d' ' -f"$2" "$1" >"$RAW/col"
  stats "$RAW/col" | cut -d' ' -f1
}

fmt_mib() { printf '%d.%d' $(($1 / 1024)) $((($1 % 1024) * 10 / 1024)); }

echo "| entries | roster | plan from empty (dry run) | live apply (all added, one device update) | floor: \`wg addconf\` of the same peers | plan in sync (dry run) | rename + swap, live |"
echo "|---:|---:|---|---|---|---|---|"
for n in "${SIZES[@]}"; do
  runs=${BENCH_RUNS:-5}
  ((n >= 50000)) && runs=${BENCH_RUNS:-3}
  note "$n entries: making the roster"
  make_roster "$n"
  size=$(($(stat -c %s "$ROSTER") / 1024))
  rm -f "$RAW"/dry "$RAW"/apply "$RAW"/floor "$RAW"/insync "$RAW"/change
  reset_node
  note "$n entries: dry run from empty (x$runs)"
  for ((r = 0; r < runs; r++)); do timed "$RAW/dry" "$BIN" sync --dry-run "$ROSTER"; done
  hold_dry=$(lock_hold sync --dry-run "$ROSTER")
  apply_runs=$runs
  ((n >= 50000)) && apply_runs=1
  note "$n entries: live apply, and the floor \`wg addconf\` (x$apply_runs)"
  for ((r = 0; r < apply_runs; r++)); do
    reset_node
    timed "$RAW/apply" "$BIN" sync "$ROSTER"
    live=$(on node wg show wg0 peers | wc -l)
    ((live == n)) || die "$live live peers after sync of $n entries"
    reset_node
    timed "$RAW/floor" wg addconf wg0 "$PEERS"
    live=$(on node wg show wg0 peers | wc -l)
    ((live == n)) || die "$live live peers after wg addconf of $n peers"
  done
  reset_node
  hold_apply=$(lock_hold sync "$ROSTER")
  note "$n entries: in sync, then a rename and a swap (x$runs)"
  for ((r = 0; r < runs; r++)); do timed "$RAW/insync" "$BIN" sync --dry-run "$ROSTER"; done
  hold_insync=$(lock_hold sync --dry-run "$ROSTER")
  for ((r = 0; r < runs; r++)); do
    timed "$RAW/change" "$BIN" sync "$CHANGED"
    wgp2p sync "$ROSTER" >/dev/null || die "sync back failed"
  done
  hold_change=$(lock_hold sync "$CHANGED")
  grep -q "n0-renamed" <(on node cat /etc/wireguard/wg0.conf) || die "rename not written"
  cell() { # FILE HOLD
    printf '%s ms (CPU %s ms), %s MiB, lock %s ms' "$(fmt_ms "$(med "$1" 1)")" "$(fmt_ms "$(med "$1" 3)")" \
      "$(fmt_mib "$(med "$1" 2)")" "$(fmt_ms "$2")"
  }
  floor="$(fmt_ms "$(med "$RAW/floor" 1)") ms (CPU $(fmt_ms "$(med "$RAW/floor" 3)") ms)"
  printf '| %d | %d KiB | %s | %s | %s | %s | %s |\n' "$n" "$size" \
    "$(cell "$RAW/dry" "$hold_dry")" "$(cell "$RAW/apply" "$hold_apply")" "$floor" \
    "$(cell "$RAW/insync" "$hold_insync")" "$(cell "$RAW/change" "$hold_change")"
done
echo
echo "Each cell: wall time (CPU time, user + system), peak RSS, lock hold."
echo "Medians of ${BENCH_RUNS:-5} runs (${BENCH_RUNS:-3} at 50,000, 1 live apply there); wall time includes process start and nsenter;"
echo "the lock hold is from one strace-traced run each (strace adds a little)."
