#!/usr/bin/env bash
# The cost and the effect of `wgp2p agent`, in namespaced lab hosts.
#
# Usage, as root:   bench/agent.sh      (~6 min plus the release build)
#   AGENT_IDLE_SECS=N   how long the idle agent is watched (default 180)
#   AGENT_PEERS=N       peers of the idle node, all with DNS endpoints (default 100)
#   AGENT_RUNS=N        address changes timed (default 5)
#   WGP2P_BIN=PATH      binary to use (default: target/release/wgp2p, built)
#
# 1. Idle cost: one node with AGENT_PEERS peers whose endpoints are DNS
#    names (in the host's own /etc/hosts), no keepalive, no traffic; the
#    agent runs with the default interval (30 s), so every pass reads the
#    config and the device and resolves every name. After its first pass,
#    its CPU time (utime+stime from /proc/PID/stat) is sampled over
#    AGENT_IDLE_SECS, and its RSS (VmRSS, VmHWM) at the end.
# 2. Time to a restored tunnel: two public hosts that know each other by
#    DNS name, agents on both with the default interval. Each run moves
#    both hosts to new addresses at once and updates both hosts files,
#    then pings (1 s apart) until an answer comes; the time from the move
#    to that answer is one sample. The hosts' old addresses are gone, so
#    neither can roam to the other: only the agents can heal the tunnel.
# Everything is removed on exit.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

usage_or_root "$0" "${1:-}"
IDLE=${AGENT_IDLE_SECS:-180}
PEERS=${AGENT_PEERS:-100}
RUNS=${AGENT_RUNS:-5}
require_tools ip wg wg-quick wireguard-go ping nsenter unshare setsid
lab_begin

# Gives HOST its own /etc/hosts (a bind mount in its private mount namespace).
private_hosts() {
  on "$1" sh -c 'printf "127.0.0.1 localhost\n" > /run/hosts && mount --bind /run/hosts /etc/hosts' ||
    die "private /etc/hosts on $1 failed"
}
# set_name HOST NAME IP: NAME resolves to IP on HOST (rewritten in place).
set_name() {
  on "$1" sh -c 'grep -v " $1\$" /etc/hosts > /run/hosts.new; echo "$2 $1" >> /run/hosts.new; cat /run/hosts.new > /etc/hosts' \
    sh "$2" "$3" || die "hosts entry $2 on $1 failed"
}
# start_agent HOST [ARGS…]: the agent in the background; its PID in AGENT_PID.
start_agent() {
  local h=$1
  shift
  # Not through `on` (a function run in the background is a subshell):
  # nsenter and env exec, so $! is the agent's own PID.
  nsenter -t "${LAB_HOLDER[$h]}" -m -n -u -- env -i PATH="$LAB_PATH" LC_ALL=C \
    WGP2P_SERVICE=wg-quick "$BIN" agent "$@" 2>>"$WORK/agent-$h.log" &
  AGENT_PID=$!
  sleep 0.2
  [[ $(readlink "/proc/$AGENT_PID/exe") == "$BIN" ]] || die "pid $AGENT_PID is not the agent"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kib() { sed -n "s/^$2:[[:space:]]*\([0-9]*\).*/\1/p" "/proc/$1/status"; }

lab_disk_dir WORK
lab_bridge

# ---- 1. idle cost ---------------------------------------------------------
note "idle: one node with $PEERS DNS-endpoint peers"
host_new idle
host_plug idle 10
private_hosts idle
on idle "$BIN" install 10.20.0.1/16 --endpoint 203.0.113.10 >/dev/null 2>&1 || die "install on idle failed"
i=0
while IFS= read -r key; do
  set_name idle "peer$i.bench" "203.0.113.$((100 + i % 100))"
  on idle "$BIN" add-peer "p$i" "peer$i.bench:$((20000 + i))" "$key" "$(peer_ip "$i")" --keepalive 0 \
    >/dev/null 2>&1 || die "add-peer p$i failed"
  i=$((i + 1))
done < <(random_keys "$PEERS")
start_agent idle
IDLE_PID=$AGENT_PID
for ((t = 0; t < 100; t++)); do
  on idle test -s /etc/wireguard/wg0.agent.json && break
  sleep 0.1
done
on idle test -s /etc/wireguard/wg0.agent.json || die "the idle agent made no pass"
HZ=$(getconf CLK_TCK)
C0=$(cpu_ticks "$IDLE_PID")
T0=$(now_us)
note "idle: watching pid $IDLE_PID for $IDLE s"
sleep "$IDLE"
C1=$(cpu_ticks "$IDLE_PID")
T1=$(now_us)
RSS=$(status_kib "$IDLE_PID" VmRSS)
HWM=$(status_kib "$IDLE_PID" VmHWM)
INTERVAL_SEEN=$(on idle "$BIN" status --json | sed -n 's/.*"interval_secs": \([0-9]*\).*/\1/p')
kill -TERM "$IDLE_PID"
wait "$IDLE_PID"
IDLE_EXIT=$?
CPU_MS=$(((C1 - C0) * 1000 / HZ))
WALL_MS=$(((T1 - T0) / 1000))
host_delete idle

# ---- 2. address change -> restored tunnel -----------------------------------
note "heal: two hosts by DNS name, agents with the default interval, $RUNS runs"
host_new a
host_plug a 1
host_new b
host_plug b 2
private_hosts a
private_hosts b
for h in a b; do
  set_name "$h" a.bench 203.0.113.1
  set_name "$h" b.bench 203.0.113.2
done
LA=$(on a "$BIN" install 10.15.0.1/24 --endpoint a.bench:51820 2>/dev/null | grep '^wgp2p add-peer ') || die "install a"
LB=$(on b "$BIN" install 10.15.0.2/24 --endpoint b.bench:51820 2>/dev/null | grep '^wgp2p add-peer ') || die "install b"
read -ra WA <<<"$LB"
on a "$BIN" "${WA[@]:1}" >/dev/null 2>&1 || die "add b on a"
read -ra WB <<<"$LA"
on b "$BIN" "${WB[@]:1}" >/dev/null 2>&1 || die "add a on b"
on a ping -c1 -W5 10.15.0.2 >/dev/null || die "a cannot ping b before any move"
start_agent a
PID_A=$AGENT_PID
start_agent b
PID_B=$AGENT_PID
sleep 3 # both agents have resolved the names once
ADDR_A=1
ADDR_B=2
: >"$WORK/heal"
for ((r = 1; r <= RUNS; r++)); do
  NEW_A=$((200 + 2 * r))
  NEW_B=$((201 + 2 * r))
  T0=$(now_us)
  on a sh -c "ip addr del 203.0.113.$ADDR_A/24 dev eth0 && ip addr add 203.0.113.$NEW_A/24 dev eth0" || die "move a"
  on b sh -c "ip addr del 203.0.113.$ADDR_B/24 dev eth0 && ip addr add 203.0.113.$NEW_B/24 dev eth0" || die "move b"
  for h in a b; do
    set_name "$h" a.bench "203.0.113.$NEW_A"
    set_name "$h" b.bench "203.0.113.$NEW_B"
  done
  ADDR_A=$NEW_A
  ADDR_B=$NEW_B
  healed=
  while (($(now_us) - T0 < 120000000)); do
    if on a ping -c1 -W1 10.15.0.2 >/dev/null 2>&1; then
      healed=$(($(now_us) - T0))
      break
    fi
  done
  [[ -n $healed ]] || die "run $r: no ping within 120 s"
  echo "$healed" >>"$WORK/heal"
  note "run $r: pinging again after $(fmt_ms "$healed") ms"
  # Start the next run at a random phase of the agents' interval.
  sleep $((RANDOM % 30))
done
kill -TERM "$PID_A" "$PID_B"
wait "$PID_A" "$PID_B"
read -r MED P95 N < <(stats "$WORK/heal")

echo
echo "wgp2p agent ($(basename "$BIN"), $(uname -r), $(nproc) cores)"
echo "idle, $PEERS peers with DNS endpoints, interval ${INTERVAL_SEEN:-?} s, watched $((WALL_MS / 1000)) s:"
echo "  CPU: $CPU_MS ms in $WALL_MS ms = $(awk -v c="$CPU_MS" -v w="$WALL_MS" 'BEGIN{printf "%.4f", 100*c/w}') % of one core"
echo "  RSS: $((RSS / 1024)).$(((RSS % 1024) * 10 / 1024)) MiB (peak $((HWM / 1024)).$(((HWM % 1024) * 10 / 1024)) MiB)"
echo "  exit on SIGTERM: $IDLE_EXIT"
echo "address change -> ping again, both ends moved, default interval (30 s), $N runs:"
echo "  median $(fmt_ms "$MED") ms, max $(fmt_ms "$P95") ms (p95 by nearest rank); samples (ms):$(while read -r s; do printf ' %s' "$(fmt_ms "$s")"; done <"$WORK/heal")"
