#!/usr/bin/env bash
# The cost of `wgp2p agent` on a big mesh, in one namespaced lab host.
#
# Usage, as root:   bench/agent-scale.sh      (~3 min plus the release build)
#   SCALE_PEERS=N      peers of the node (default 1000)
#   SCALE_AGENTS=N     of them, peers whose agent is heard (default 100)
#   SCALE_INTERVAL=S   the agent's --interval (default 5)
#   SCALE_SECS=S       how long CPU time is sampled (default 60)
#   SCALE_TRACE_SECS=S how long system calls are counted (default 30)
#   WGP2P_BIN=PATH     binary to use (default: target/release/wgp2p, built)
#
# One node with SCALE_PEERS peers at IP endpoints nobody answers (no
# keepalive, no traffic), its interface up (wireguard-go). The agent runs
# once until its first pass saved the membership book (a human's 1,000
# peers are announced once, not measured here), then again with a state
# file saying SCALE_AGENTS peers' agents were heard: every pass greets
# those, the others only every five minutes. After its first pass:
# 1. CPU: utime+stime from /proc/PID/stat over SCALE_SECS, per pass;
#    VmRSS and VmHWM at the end.
# 2. System calls over SCALE_TRACE_SECS (strace -f attached to the agent):
#    opens of wg0.conf (each is one read and parse of the config),
#    connections to wg0.sock (a device dump is two: the backend check and
#    the `get`), and datagrams sent (sendto/sendmsg), each per pass (a
#    pass ends with the state file renamed into place: those are counted).
# Everything is removed on exit.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

usage_or_root "$0" "${1:-}"
PEERS=${SCALE_PEERS:-1000}
AGENTS=${SCALE_AGENTS:-100}
INTERVAL=${SCALE_INTERVAL:-5}
SECS=${SCALE_SECS:-60}
TRACE_SECS=${SCALE_TRACE_SECS:-30}
require_tools ip wg wg-quick wireguard-go nsenter unshare setsid strace python3
lab_begin
lab_disk_dir WORK
lab_bridge

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status_kib() { sed -n "s/^$2:[[:space:]]*\([0-9]*\).*/\1/p" "/proc/$1/status"; }
# start_agent: the agent in the background; its PID in AGENT_PID.
start_agent() {
  nsenter -t "${LAB_HOLDER[big]}" -m -n -u -- env -i PATH="$LAB_PATH" LC_ALL=C \
    WGP2P_SERVICE=wg-quick "$BIN" agent --interval "$INTERVAL" 2>>"$WORK/agent.log" &
  AGENT_PID=$!
  for ((t = 0; t < 50; t++)); do
    [[ $(readlink "/proc/$AGENT_PID/exe" 2>/dev/null) == "$BIN" ]] && return
    sleep 0.1
  done
  die "pid $AGENT_PID is not the agent"
}
# last_pass: the state file's last_pass (0 when there is none yet).
last_pass() {
  on big cat /etc/wireguard/wg0.agent.json 2>/dev/null |
    python3 -c 'import json,sys
try: print(json.load(sys.stdin)["last_pass"])
except Exception: print(0)'
}
# wait_passes N: until the state file was written N more times (by its
# last_pass), at most 5 minutes.
wait_passes() {
  local n=$1 seen now i=0
  seen=$(last_pass)
  while ((i < n)); do
    for ((t = 0; t < 3000; t++)); do
      now=$(last_pass)
      [[ $now != "$seen" ]] && break
      sleep 0.1
    done
    [[ $now != "$seen" ]] || die "no pass within 5 minutes"
    seen=$now
    i=$((i + 1))
  done
}

note "a node with $PEERS peers, $AGENTS of them with agents, --interval $INTERVAL"
host_new big
host_plug big 10
on big "$BIN" install 10.20.0.1/16 --endpoint 203.0.113.10 >/dev/null 2>&1 || die "install failed"
random_keys "$PEERS" >"$WORK/keys"
i=0
while IFS= read -r key; do
  printf '\n[Peer]\n# Name = p%d\nPublicKey = %s\nEndpoint = 198.51.100.%d:%d\nAllowedIPs = %s/32\n' \
    "$i" "$key" $((1 + i % 250)) $((20000 + i)) "$(peer_ip "$i")"
  i=$((i + 1))
done <"$WORK/keys" >"$WORK/peers"
on big sh -c "cat >> /etc/wireguard/wg0.conf" <"$WORK/peers" || die "appending the peers failed"
on big wg-quick down wg0 >/dev/null 2>&1
on big wg-quick up wg0 >/dev/null 2>&1 || die "wg-quick up with $PEERS peers failed"
[[ $(on big wg show wg0 peers | wc -l) -eq $PEERS ]] || die "the interface does not hold $PEERS peers"

# The first run announces the human's peers and saves the book.
start_agent
on big test -e /etc/wireguard/wg0.agent.json || wait_passes 1
for ((t = 0; t < 600; t++)); do
  on big test -s /etc/wireguard/wg0.membership.json && break
  sleep 0.5
done
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"

# The second run: AGENTS peers' agents were heard (dated ahead, so they
# stay heard for the whole measurement).
python3 - "$WORK/keys" "$AGENTS" "$INTERVAL" >"$WORK/agent.json" <<'PY'
import json, sys, time
keys = open(sys.argv[1]).read().split()[: int(sys.argv[2])]
at = int(time.time()) + 3600
print(json.dumps({"version": 1, "pid": 0, "interval_secs": int(sys.argv[3]),
                  "last_pass": 0, "peers": [],
                  "agents": [{"public_key": k, "at": at, "relay": False} for k in keys]}))
PY
on big sh -c "cat > /etc/wireguard/wg0.agent.json && chmod 600 /etc/wireguard/wg0.agent.json" <"$WORK/agent.json" ||
  die "writing the state file failed"
start_agent
PID=$AGENT_PID
# The first pass greets every peer (a new socket): not an idle pass.
wait_passes 2
HZ=$(getconf CLK_TCK)
C0=$(cpu_ticks "$PID")
T0=$(now_us)
note "cpu: watching pid $PID for $SECS s"
sleep "$SECS"
C1=$(cpu_ticks "$PID")
T1=$(now_us)
note "system calls: strace on pid $PID for $TRACE_SECS s"
timeout -s INT "$TRACE_SECS" strace -f -qq -p "$PID" -e trace=openat,connect,sendto,sendmsg,sendmmsg,rename,renameat,renameat2 \
  -o "$WORK/trace" 2>/dev/null
RSS=$(status_kib "$PID" VmRSS)
HWM=$(status_kib "$PID" VmHWM)
kill -TERM "$PID"
wait "$PID"
CPU_MS=$(((C1 - C0) * 1000 / HZ))
WALL_MS=$(((T1 - T0) / 1000))
PASSES=$((WALL_MS / (INTERVAL * 1000)))
# A pass ends with the state file written: one rename onto it each.
TPASSES=$(grep -cE 'rename(at2?)?\(.*wg0\.agent\.json"' "$WORK/trace")
OPENS=$(grep -c 'openat(.*wg0\.conf"' "$WORK/trace")
CONNECTS=$(grep -c 'connect(.*wg0\.sock' "$WORK/trace")
SENT=$(grep -cE '^[0-9]+ +send(to|msg|mmsg)\(' "$WORK/trace")
echo
echo "wgp2p agent at scale ($(basename "$BIN"), $(uname -r), $(nproc) cores)"
echo "  $PEERS peers, $AGENTS with agents heard, --interval $INTERVAL"
echo "  cpu: $CPU_MS ms in $WALL_MS ms wall, about $PASSES passes: $((CPU_MS / (PASSES > 0 ? PASSES : 1))) ms per pass"
echo "  memory: VmRSS $RSS KiB, VmHWM $HWM KiB"
echo "  in $TRACE_SECS s ($TPASSES passes): wg0.conf opened $OPENS times ($(ratio "$OPENS" "$TPASSES") per pass), wg0.sock connected $CONNECTS times ($(ratio "$CONNECTS" "$TPASSES") per pass), $SENT datagrams sent ($(ratio "$SENT" "$TPASSES") per pass)"
