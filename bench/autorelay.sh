#!/usr/bin/env bash
# Time to a relayed path with `wgp2p agent --auto-relay`, in namespaced lab
# hosts: no command typed, from the agents' start to the first ping that
# crosses the relay.
#
# Usage, as root:   bench/autorelay.sh     (~3 min per run with the defaults)
#   AUTORELAY_RUNS=N        runs timed (default 3)
#   AUTORELAY_INTERVAL=SECS the agents' --interval (default 30, the default)
#   AUTORELAY_AFTER=SECS    the agents' --relay-after (default 120, the default)
#   WGP2P_BIN=PATH          binary to use (default: target/release/wgp2p, built)
#
# The lab of tests/autorelay.rs: alpha and bravo public (alpha ran
# `relay-enable`), charlie and delta each behind its own symmetric NAT
# (MASQUERADE --random-fully), a full mesh in which the symmetric pair has
# never had a handshake. Each run starts agents with --auto-relay on all
# four at once and pings charlie -> delta and delta -> charlie (1 s apart)
# until both answer; the time from the start to that is one sample, and the
# reply's TTL (63: one hop through alpha) says it went through the relay.
# Between runs the agents are stopped, the pair is made direct again by
# hand, and the pins and the agents' state are removed, so every run starts
# from a stale pair the agents have never seen. Everything is removed on
# exit.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

usage_or_root "$0" "${1:-}"
RUNS=${AUTORELAY_RUNS:-3}
INTERVAL=${AUTORELAY_INTERVAL:-30}
AFTER=${AUTORELAY_AFTER:-120}
require_tools ip wg wg-quick wireguard-go ping nsenter unshare setsid iptables
lab_begin

# nat_host HOST OCTET K: HOST on LAN 10.200.K.0/24 (as .2) behind its own
# router r<K>, whose wan0 is 203.0.113.OCTET on the bridge: a symmetric NAT
# as tests/lab builds it.
nat_host() {
  local host=$1 octet=$2 k=$3 r ns
  r=$(lab_ns "r$k")
  lab_netns_create "$r"
  ip -n "$LAB_BRIDGE" link add "p$octet" type veth peer name wan0 netns "$r"
  ip -n "$LAB_BRIDGE" link set "p$octet" master br0 up
  ip -n "$r" addr add "203.0.113.$octet/24" dev wan0
  ip -n "$r" link set wan0 up
  ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$r" iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE --random-fully ||
    die "NAT on r$k failed"
  host_new "$host"
  ns=$(lab_ns "$host")
  ip -n "$r" link add lan0 type veth peer name eth0 netns "$ns"
  ip -n "$r" addr add "10.200.$k.1/24" dev lan0
  ip -n "$r" link set lan0 up
  ip -n "$ns" addr add "10.200.$k.2/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "10.200.$k.1"
}
# start_agent HOST: the agent in the background; its PID in AGENT_PID.
start_agent() {
  local h=$1
  nsenter -t "${LAB_HOLDER[$h]}" -m -n -u -- env -i PATH="$LAB_PATH" LC_ALL=C \
    WGP2P_SERVICE=wg-quick "$BIN" agent --interval "$INTERVAL" --auto-relay \
    --relay-after "$AFTER" 2>>"$WORK/agent-$h.log" &
  AGENT_PID=$!
}

lab_disk_dir WORK
lab_bridge
host_new alpha
host_plug alpha 1
host_new bravo
host_plug bravo 2
nat_host charlie 3 1
nat_host delta 4 2
HOSTS=(alpha bravo charlie delta)
declare -A LINE=()
for i in 0 1 2 3; do
  h=${HOSTS[$i]}
  LINE[$h]=$(on "$h" "$BIN" install "10.15.0.$((i + 1))/24" --endpoint "203.0.113.$((i + 1)):51820" 2>/dev/null |
    grep '^wgp2p add-peer ') || die "install on $h failed"
done
for h in "${HOSTS[@]}"; do
  for o in "${HOSTS[@]}"; do
    [[ $h == "$o" ]] && continue
    read -ra W <<<"${LINE[$o]}"
    on "$h" "$BIN" "${W[@]:1}" >/dev/null 2>&1 || die "add $o on $h failed"
  done
done
for h in charlie delta; do
  for ip in 10.15.0.1 10.15.0.2; do
    on "$h" ping -c1 -W8 "$ip" >/dev/null || die "$h cannot ping $ip"
  done
done
on alpha "$BIN" relay-enable >/dev/null || die "relay-enable on alpha failed"
on charlie ping -c1 -W4 10.15.0.4 >/dev/null && die "the symmetric NATs met directly"

: >"$WORK/relayed"
for ((r = 1; r <= RUNS; r++)); do
  PIDS=()
  T0=$(now_us)
  for h in "${HOSTS[@]}"; do
    start_agent "$h"
    PIDS+=("$AGENT_PID")
  done
  relayed=
  while (($(now_us) - T0 < 600000000)); do
    if on charlie ping -c1 -W1 10.15.0.4 >/dev/null 2>&1 &&
      on delta ping -c1 -W1 10.15.0.3 >/dev/null 2>&1; then
      relayed=$(($(now_us) - T0))
      break
    fi
    sleep 1
  done
  TTL=$(on charlie ping -c1 -W2 10.15.0.4 | sed -n 's/.*ttl=\([0-9]*\).*/\1/p')
  kill -TERM "${PIDS[@]}"
  wait "${PIDS[@]}"
  [[ -n $relayed ]] || die "run $r: no ping within 600 s (logs in $WORK)"
  [[ $TTL == 63 ]] || die "run $r: reply ttl ${TTL:-none}, not through the relay"
  echo "$relayed" >>"$WORK/relayed"
  note "run $r: charlie <-> delta through alpha after $(fmt_ms "$relayed") ms"
  on charlie "$BIN" relay delta direct >/dev/null || die "relay delta direct on charlie"
  on delta "$BIN" relay charlie direct >/dev/null || die "relay charlie direct on delta"
  for h in "${HOSTS[@]}"; do
    on "$h" rm -f /etc/wireguard/relay-pins /etc/wireguard/wg0.agent.json
  done
done
read -r MED P95 N < <(stats "$WORK/relayed")

echo
echo "wgp2p agent --auto-relay ($(basename "$BIN"), $(uname -r), $(nproc) cores)"
echo "symmetric pair -> pinging through the relay, --interval $INTERVAL --relay-after $AFTER, $N runs:"
echo "  median $(fmt_ms "$MED") ms, max $(fmt_ms "$P95") ms (p95 by nearest rank); samples (ms):$(while read -r s; do printf ' %s' "$(fmt_ms "$s")"; done <"$WORK/relayed")"
