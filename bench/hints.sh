#!/usr/bin/env bash
# Time to a direct path through introductions (`wgp2p agent`, issue 16
# item 3), in namespaced lab hosts.
#
# Usage, as root:   bench/hints.sh      (~1 min a run plus the release build)
#   HINTS_RUNS=N        runs timed (default 5)
#   HINTS_INTERVAL=S    the agents' --interval (default 30, the default)
#   WGP2P_BIN=PATH      binary to use (default: target/release/wgp2p, built)
#
# Each run builds, from nothing: a public host P, and two hosts A and B
# behind two different cone NATs (MASQUERADE, and the home-router input
# filter of tests/lab: unsolicited input on the public side dropped). The
# add-peer lines of A and B carry 203.0.113.250:51820, where nobody is, so
# A and B never meet on their own; both reach P. The agents start on P and
# A at once, and on B after a random delay of 0 to INTERVAL-1 s (agents do
# not start in step); one sample is the time from B's agent start to A's
# first echo reply from B (pinged once a second, through the tunnel, with
# no relay: the only way is the endpoint the agents learn from P). The run
# then checks that A's live endpoint for B is B's NAT router. Everything is
# removed after each run and on exit.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

usage_or_root "$0" "${1:-}"
RUNS=${HINTS_RUNS:-5}
INTERVAL=${HINTS_INTERVAL:-30}
((RUNS >= 1 && RUNS <= 20)) || die "HINTS_RUNS must be 1 to 20"
((INTERVAL >= 1 && INTERVAL <= 3600)) || die "HINTS_INTERVAL must be 1 to 3600"
NOWHERE=203.0.113.250:51820
require_tools ip wg wg-quick wireguard-go ping nsenter unshare setsid iptables
lab_begin

lab_disk_dir WORK
lab_bridge

# nat_router NAME OCTET: wan0 203.0.113.OCTET/24 on the bridge, forwarding,
# MASQUERADE (a cone NAT: the source port is kept when free), and the input
# filter of a home router (see tests/lab/mod.rs `add_router` for why).
nat_router() {
  local ns
  ns=$(lab_ns "$1")
  lab_netns_create "$ns"
  ip -n "$LAB_BRIDGE" link add "p$2" type veth peer name wan0 netns "$ns"
  ip -n "$LAB_BRIDGE" link set "p$2" master br0 up
  ip -n "$ns" addr add "203.0.113.$2/24" dev wan0
  ip -n "$ns" link set wan0 up
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$ns" iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE
  ip netns exec "$ns" iptables -A INPUT -i wan0 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  ip netns exec "$ns" iptables -A INPUT -i wan0 -j DROP
}
# behind HOST ROUTER K: HOST on LAN 10.200.K.0/24 (.2) behind ROUTER (.1).
behind() {
  local ns rns
  ns=$(lab_ns "$1")
  rns=$(lab_ns "$2")
  ip -n "$rns" link add lan0 type veth peer name eth0 netns "$ns"
  ip -n "$rns" addr add "10.200.$3.1/24" dev lan0
  ip -n "$rns" link set lan0 up
  ip -n "$ns" addr add "10.200.$3.2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "10.200.$3.1"
}
# start_agent HOST: the agent in the background; its PID in AGENT_PID.
start_agent() {
  # nsenter and env exec, so $! is the agent's own PID.
  nsenter -t "${LAB_HOLDER[$1]}" -m -n -u -- env -i PATH="$LAB_PATH" LC_ALL=C \
    WGP2P_SERVICE=wg-quick "$BIN" agent --interval "$INTERVAL" 2>>"$WORK/agent-$1.log" &
  AGENT_PID=$!
}
line_of() { grep '^wgp2p add-peer ' || die "no add-peer line from $1"; }
paste_line() {
  local words
  read -ra words <<<"$2"
  on "$1" "$BIN" "${words[@]:1}" >/dev/null 2>&1 || die "add-peer on $1 failed"
}

: >"$WORK/met"
for ((r = 1; r <= RUNS; r++)); do
  # Public addresses of their own per run: a deleted namespace's veth ends
  # leave the bridge asynchronously, so reusing them could clash.
  O=$((10 * r))
  host_new p
  host_plug p $((O + 1))
  nat_router ra $((O + 2))
  nat_router rb $((O + 3))
  host_new a
  behind a ra 1
  host_new b
  behind b rb 2
  LP=$(on p "$BIN" install 10.15.0.1/24 --endpoint "203.0.113.$((O + 1)):51820" 2>/dev/null | line_of p)
  LA=$(on a "$BIN" install 10.15.0.2/24 --endpoint "$NOWHERE" 2>/dev/null | line_of a)
  LB=$(on b "$BIN" install 10.15.0.3/24 --endpoint "$NOWHERE" 2>/dev/null | line_of b)
  paste_line p "$LA"
  paste_line p "$LB"
  paste_line a "$LP"
  paste_line a "$LB"
  paste_line b "$LP"
  paste_line b "$LA"
  on a ping -c1 -W5 10.15.0.1 >/dev/null || die "run $r: a cannot reach p"
  on b ping -c1 -W5 10.15.0.1 >/dev/null || die "run $r: b cannot reach p"
  KEY_B=$(on b wg show wg0 public-key)
  start_agent p
  PID_P=$AGENT_PID
  start_agent a
  PID_A=$AGENT_PID
  DELAY=$((RANDOM % INTERVAL))
  sleep "$DELAY"
  T0=$(now_us)
  start_agent b
  PID_B=$AGENT_PID
  met=
  while (($(now_us) - T0 < 300000000)); do
    if on a ping -c1 -W1 10.15.0.3 >/dev/null 2>&1; then
      met=$(($(now_us) - T0))
      break
    fi
    sleep 1
  done
  ENDPOINT=$(on a wg show wg0 endpoints | awk -v k="$KEY_B" '$1 == k {print $2}')
  kill -TERM "$PID_P" "$PID_A" "$PID_B"
  wait "$PID_P" "$PID_A" "$PID_B"
  [[ -n $met ]] || die "run $r: a did not reach b within 300 s (logs in $WORK)"
  ROUTER_B=203.0.113.$((O + 3))
  [[ $ENDPOINT == "$ROUTER_B":* ]] || die "run $r: a's endpoint for b is $ENDPOINT, not b's router"
  echo "$met" >>"$WORK/met"
  note "run $r: b's agent started ${DELAY} s after a's; direct path after $(fmt_ms "$met") ms (endpoint $ENDPOINT)"
  for h in p a b; do host_delete "$h"; done
  for rt in ra rb; do
    ip netns del "$(lab_ns "$rt")"
    keep=()
    for n in "${LAB_NAMESPACES[@]}"; do [[ $n != "$(lab_ns "$rt")" ]] && keep+=("$n"); done
    LAB_NAMESPACES=("${keep[@]}")
  done
done
read -r MED P95 N < <(stats "$WORK/met")

echo
echo "wgp2p agent introductions ($(basename "$BIN"), $(uname -r), $(nproc) cores)"
echo "two hosts behind two cone NATs with wrong endpoints for each other, one public member, interval $INTERVAL s, $N runs:"
echo "  time from the second agent's start to a direct ping: median $(fmt_ms "$MED") ms, max $(fmt_ms "$P95") ms (p95 by nearest rank)"
echo "  samples (ms):$(while read -r s; do printf ' %s' "$(fmt_ms "$s")"; done <"$WORK/met")"
