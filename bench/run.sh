#!/usr/bin/env bash
# wgp2p benchmark: live peer changes against the floor (`wg set`) and the
# old script's way (`wg set` + `wg-quick down` + `wg-quick up`), status
# against `wg show wg0 dump`, packet loss during changes, binary size and
# start-up. Everything runs in network namespaces made here ("hosts" of the
# lab, as in tests/lab) against wireguard-go, and is removed on exit.
#
# Usage, as root, from anywhere:
#
#   bench/run.sh            full run: 10, 100, 1000, 5000 peers (~4 min)
#   bench/run.sh --quick    10 and 100 peers, few runs, ping-loss check,
#                           binary size (~25 s plus the release build; CI)
#
# Environment:
#   WGP2P_BIN=PATH     binary to measure (default: target/release/wgp2p,
#                      built with `cargo build --release --locked`)
#   BENCH_SIZES="…"    peer counts (default: 10 100 1000 5000; quick: 10 100)
#   BENCH_RUNS=N       runs per figure (default 30, 20 at 5000; quick: 5)
#   BENCH_SCRIPT_MAX=N largest size measured the script's way (default 1000;
#                      quick: 100); BENCH_SCRIPT_RUNS=N its runs (default
#                      20, 10 at 1000; quick: 3)
#   BENCH_OUT=DIR      keep the raw samples (microseconds, one per line)
#
# Needs: bash >= 5, iproute2, wireguard-tools, wireguard-go, iputils-ping,
# util-linux (nsenter, unshare, setsid), coreutils. Prints Markdown tables
# on stdout and progress on stderr. It asserts no timing: it fails only when
# a command it measures fails.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

QUICK=0
for arg in "$@"; do
  case $arg in
  --quick) QUICK=1 ;;
  -h | --help)
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument $arg (expected --quick or --help)" ;;
  esac
done

[[ $EUID -eq 0 ]] || die "run as root: the lab creates network namespaces"
((BASH_VERSINFO[0] >= 5)) || die "needs bash >= 5 (for \$EPOCHREALTIME)"
for tool in ip wg wg-quick wireguard-go ping nsenter unshare setsid base64 sort head; do
  command -v "$tool" >/dev/null || die "missing $tool: install the packages of .ci/run"
done

if ((QUICK)); then
  read -ra SIZES <<<"${BENCH_SIZES:-10 100}"
  RUNS=${BENCH_RUNS:-5} RUNS_BIG=${BENCH_RUNS:-5}
  SCRIPT_MAX=${BENCH_SCRIPT_MAX:-100}
  SCRIPT_RUNS=${BENCH_SCRIPT_RUNS:-3} SCRIPT_RUNS_BIG=${BENCH_SCRIPT_RUNS:-3}
  VERSION_RUNS=20
else
  read -ra SIZES <<<"${BENCH_SIZES:-10 100 1000 5000}"
  RUNS=${BENCH_RUNS:-30} RUNS_BIG=${BENCH_RUNS:-20}
  SCRIPT_MAX=${BENCH_SCRIPT_MAX:-1000}
  SCRIPT_RUNS=${BENCH_SCRIPT_RUNS:-20} SCRIPT_RUNS_BIG=${BENCH_SCRIPT_RUNS:-10}
  VERSION_RUNS=100
fi

select_binary
[[ -x $BIN ]] || die "no binary at $BIN"

if [[ -n ${BENCH_OUT:-} ]]; then
  [[ -z $(ls -A "$BENCH_OUT" 2>/dev/null) ]] || die "BENCH_OUT=$BENCH_OUT is not empty"
  mkdir -p "$BENCH_OUT" || die "cannot create $BENCH_OUT"
  RAW=$(readlink -f "$BENCH_OUT")
else
  lab_disk_dir RAW
fi
trap lab_cleanup EXIT
trap 'exit 130' INT TERM

INNER=$ROOT/bench/inner.sh
T_START=$(now_us)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# cpu_busy: percent of CPU time used by anything over the next second.
cpu_busy() {
  local -a s0 s1
  local total=0 idle i
  read -ra s0 < <(head -1 /proc/stat)
  sleep 1
  read -ra s1 < <(head -1 /proc/stat)
  for ((i = 1; i < ${#s0[@]}; i++)); do total=$((total + s1[i] - s0[i])); done
  idle=$((s1[4] - s0[4] + s1[5] - s0[5]))
  if ((total > 0)); then echo $((100 * (total - idle) / total)); else echo 0; fi
}
BUSY_START=$(cpu_busy)
REV=$(git --no-optional-locks -C "$ROOT" describe --always --dirty 2>/dev/null || echo "unknown")

# wg_pid HOST: the PID of wireguard-go on HOST.
wg_pid() {
  local pid
  for pid in $(ip netns pids "$(lab_ns "$1")"); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == wireguard-go ]] && { echo "$pid"; return; }
  done
}
rss_kib() { local pid=$1; sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status"; }

# peer_sections N NAMED: N [Peer] sections with fresh keys, no keepalive
# (the preloaded peers send nothing), and endpoints on closed ports of the
# host's own address: a packet sent there is refused at once, inside the
# host. (Endpoints on absent LAN addresses would park packets in the ARP
# queue, charged to wireguard-go's socket, until its send buffer fills and
# its sends block: see BENCHMARKS.md, "wireguard-go pitfalls".)
peer_sections() {
  local n=$1 named=$2 i=0 key
  while IFS= read -r key; do
    printf '\n[Peer]\n'
    ((named)) && printf '# Name = p%d\n' "$i"
    printf 'PublicKey = %s\nEndpoint = 203.0.113.1:%d\nAllowedIPs = %s/32\n' \
      "$key" $((10000 + i)) "$(peer_ip "$i")"
    i=$((i + 1))
  done < <(random_keys "$n")
}

# setup_wgp2p HOST N DIRVAR: wgp2p installed on HOST with its config dir on
# disk (in DIRVAR), N peers preloaded, and a copy of the config dir on tmpfs
# (/etc/wireguard in the host) describing the same interface.
setup_wgp2p() {
  local host=$1 n=$2 d
  host_new "$host"
  host_dummy "$host"
  lab_disk_dir d
  on "$host" "$BIN" --config-dir "$d/cfg" install 10.20.0.1/16 --endpoint 203.0.113.1:51820 \
    >/dev/null 2>&1 || die "wgp2p install failed on $host"
  on "$host" "$BIN" --config-dir "$d/cfg" stop >/dev/null || die "wgp2p stop failed"
  peer_sections "$n" 1 >>"$d/cfg/wg0.conf"
  local t0 t1
  t0=$(now_us)
  on "$host" "$BIN" --config-dir "$d/cfg" start >/dev/null 2>&1 || die "wgp2p start with $n peers failed"
  t1=$(now_us)
  echo $((t1 - t0)) >"$RAW/$n/start_wgp2p"
  on "$host" sh -c "cp -p '$d/cfg/'* /etc/wireguard/ && chmod 700 /etc/wireguard" ||
    die "copy to tmpfs failed"
  local live
  live=$(on "$host" wg show wg0 peers | wc -l)
  ((live == n)) || die "$host has $live live peers, expected $n"
  printf -v "$3" '%s' "$d/cfg"
}

# setup_script HOST N CONFVAR: the old script's node: plain wg-quick with
# SaveConfig = true, config on disk, N peers preloaded.
setup_script() {
  local host=$1 n=$2 d key
  host_new "$host"
  host_dummy "$host"
  lab_disk_dir d
  key=$(wg genkey)
  {
    printf '[Interface]\nPrivateKey = %s\nAddress = 10.20.0.1/16\nListenPort = 51820\nSaveConfig = true\n' "$key"
    peer_sections "$n" 0
  } >"$d/wg0.conf"
  chmod 600 "$d/wg0.conf"
  on "$host" wg-quick up "$d/wg0.conf" >/dev/null 2>&1 || die "wg-quick up with $n peers failed"
  printf -v "$3" '%s' "$d/wg0.conf"
}

# ---------------------------------------------------------------- measure

note "binary: $BIN"
mkdir -p "$RAW/startup"
host_new ver
on ver bash "$INNER" startup "$VERSION_RUNS" "$RAW/startup" "$BIN" || die "start-up runs failed"
host_delete ver

for n in "${SIZES[@]}"; do
  mkdir -p "$RAW/$n"
  runs=$RUNS
  ((n > 1000)) && runs=$RUNS_BIG
  note "$n peers: preloading a wgp2p host"
  setup_wgp2p "w$n" "$n" WDIR
  wgpid=$(wg_pid "w$n")
  rss_kib "$wgpid" >"$RAW/$n/rss_wireguard_go"
  random_keys $(((runs + 2) * 3)) >"$RAW/$n/keys"
  note "$n peers: $runs × (add-peer + remove-peer on disk, on tmpfs, and bare wg set)"
  on "w$n" bash "$INNER" addremove "$runs" "$RAW/$n" "$BIN" "$RAW/$n/keys" \
    "disk=$WDIR" "tmpfs=/etc/wireguard" || die "add/remove runs failed at $n peers"
  live=$(on "w$n" wg show wg0 peers | wc -l)
  ((live == n)) || die "w$n ends with $live live peers, expected $n"
  note "$n peers: $runs × (status, status --json, wg show wg0 dump)"
  on "w$n" bash "$INNER" status "$runs" "$RAW/$n" "$BIN" "$WDIR" || die "status runs failed at $n peers"
  host_delete "w$n"

  if ((n <= SCRIPT_MAX)); then
    sruns=$SCRIPT_RUNS
    ((n >= 1000)) && sruns=$SCRIPT_RUNS_BIG
    note "$n peers: $sruns × the script's way (wg set + wg-quick down + up), add and remove"
    setup_script "s$n" "$n" SCONF
    random_keys "$sruns" >"$RAW/$n/script_keys"
    on "s$n" bash "$INNER" script "$sruns" "$RAW/$n" "$SCONF" "$RAW/$n/script_keys" ||
      die "script-way runs failed at $n peers"
    host_delete "s$n"
  fi
done

# ------------------------------------------------------------ ping loss

# ping_start HOST TARGET FILE: ping -i 0.02 in the background on HOST.
ping_start() {
  on "$1" sh -c "ping -n -i 0.02 $2 >'$3' 2>&1 & echo \$! >'$3.pid'" || die "ping did not start"
}
# ping_stop FILE…: SIGINT to each ping, then wait until each has exited (a
# zombie counts as exited: it is reparented and reaped by init).
ping_stop() {
  local f pid i st
  for f in "$@"; do kill -INT "$(cat "$f.pid")" 2>/dev/null; done
  for f in "$@"; do
    pid=$(cat "$f.pid")
    for ((i = 0; i < 300; i++)); do
      st=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || break
      [[ $st == Z ]] && break
      sleep 0.01
    done
  done
}
# ping_stats FILE: "sent lost max_rtt_ms". The last packet (possibly in
# flight when ping was stopped) is not counted.
ping_stats() {
  local file=$1 line sent=0 max=- lost=0 s
  declare -A got=()
  while IFS= read -r line; do
    if [[ $line =~ icmp_seq=([0-9]+).*time= ]]; then
      got[${BASH_REMATCH[1]}]=1
    elif [[ $line =~ ^([0-9]+)\ packets\ transmitted ]]; then
      sent=${BASH_REMATCH[1]}
    elif [[ $line =~ ^rtt.*=\ [0-9.]+/[0-9.]+/([0-9.]+)/ ]]; then
      max=${BASH_REMATCH[1]}
    fi
  done <"$file"
  sent=$((sent > 0 ? sent - 1 : 0))
  for ((s = 1; s <= sent; s++)); do [[ -n ${got[$s]:-} ]] || lost=$((lost + 1)); done
  echo "$sent $lost $max"
}
# wait_ping HOST IP: until one echo is answered (10 s at most).
wait_ping() {
  local i
  for ((i = 0; i < 20; i++)); do
    on "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
  done
  die "$1 cannot ping $2 through the tunnel"
}

# ping_during HOW A B A_VPN_IP B_VPN_IP CHANGE: ping both ways at 20 ms
# intervals while CHANGE (a function: add K / remove K) runs 10 adds and
# 10 removes on A, 50 ms apart.
ping_during() {
  local how=$1 a=$2 b=$3 ipa=$4 ipb=$5 change=$6 k op t0 t1 busy=0
  mkdir -p "$RAW/ping"
  ping_start "$a" "$ipb" "$RAW/ping/${how}_ab"
  ping_start "$b" "$ipa" "$RAW/ping/${how}_ba"
  sleep 0.5
  for op in add remove; do
    for k in 1 2 3 4 5 6 7 8 9 10; do
      t0=$(now_us)
      "$change" "$op" "$k" || die "$how: $op $k failed"
      t1=$(now_us)
      busy=$((busy + t1 - t0))
      sleep 0.05
    done
  done
  sleep 0.5
  ping_stop "$RAW/ping/${how}_ab" "$RAW/ping/${how}_ba"
  echo "$busy" >"$RAW/ping/${how}_duration"
}

note "ping loss: two hosts on a bridge, wgp2p's way"
lab_bridge
mapfile -t PING_KEYS < <(random_keys 20)
host_new pa
host_plug pa 11
host_new pb
host_plug pb 12
lab_disk_dir PA
lab_disk_dir PB
line_a=$(on pa "$BIN" --config-dir "$PA/cfg" install 10.15.0.1/24 --endpoint 203.0.113.11 2>/dev/null |
  grep '^wgp2p add-peer ') || die "install on pa failed"
line_b=$(on pb "$BIN" --config-dir "$PB/cfg" install 10.15.0.2/24 --endpoint 203.0.113.12 2>/dev/null |
  grep '^wgp2p add-peer ') || die "install on pb failed"
read -ra words <<<"$line_b"
on pa "$BIN" --config-dir "$PA/cfg" "${words[@]:1}" >/dev/null || die "pa: $line_b failed"
read -ra words <<<"$line_a"
on pb "$BIN" --config-dir "$PB/cfg" "${words[@]:1}" >/dev/null || die "pb: $line_a failed"
wait_ping pa 10.15.0.2
wait_ping pb 10.15.0.1
change_wgp2p() {
  local k=$2
  if [[ $1 == add ]]; then
    on pa "$BIN" --config-dir "$PA/cfg" add-peer "extra$k" "203.0.113.12:$((52000 + k))" \
      "${PING_KEYS[k - 1]}" "10.15.0.$((100 + k))" >/dev/null
  else
    on pa "$BIN" --config-dir "$PA/cfg" remove-peer "extra$k" >/dev/null
  fi
}
ping_during wgp2p pa pb 10.15.0.1 10.15.0.2 change_wgp2p
host_delete pa
host_delete pb

note "ping loss: two hosts on a bridge, the script's way"
host_new pc
host_plug pc 13
host_new pd
host_plug pd 14
lab_disk_dir PC
lab_disk_dir PD
kc=$(wg genkey)
kd=$(wg genkey)
printf '[Interface]\nPrivateKey = %s\nAddress = 10.16.0.1/24\nListenPort = 51820\nSaveConfig = true\n\n[Peer]\nPublicKey = %s\nEndpoint = 203.0.113.14:51820\nAllowedIPs = 10.16.0.2/32\nPersistentKeepalive = 25\n' \
  "$kc" "$(wg pubkey <<<"$kd")" >"$PC/wg0.conf"
printf '[Interface]\nPrivateKey = %s\nAddress = 10.16.0.2/24\nListenPort = 51820\n\n[Peer]\nPublicKey = %s\nEndpoint = 203.0.113.13:51820\nAllowedIPs = 10.16.0.1/32\nPersistentKeepalive = 25\n' \
  "$kd" "$(wg pubkey <<<"$kc")" >"$PD/wg0.conf"
chmod 600 "$PC/wg0.conf" "$PD/wg0.conf"
on pc wg-quick up "$PC/wg0.conf" >/dev/null 2>&1 || die "wg-quick up on pc failed"
on pd wg-quick up "$PD/wg0.conf" >/dev/null 2>&1 || die "wg-quick up on pd failed"
wait_ping pc 10.16.0.2
wait_ping pd 10.16.0.1
change_script() {
  local k=$2 set
  if [[ $1 == add ]]; then
    set="wg set wg0 peer ${PING_KEYS[k - 1]} endpoint 203.0.113.14:$((52000 + k)) allowed-ips 10.16.0.$((100 + k))/32 persistent-keepalive 25"
  else
    set="wg set wg0 peer ${PING_KEYS[k - 1]} remove"
  fi
  on pc sh -c "$set && wg-quick down '$PC/wg0.conf' && wg-quick up '$PC/wg0.conf'" >/dev/null 2>&1
}
ping_during script pc pd 10.16.0.1 10.16.0.2 change_script
host_delete pc
host_delete pd

T_END=$(now_us)
BUSY_END=$(cpu_busy)

# ---------------------------------------------------------------- report

# cell FILE: "median (p95)" in ms.
cell() {
  local med p95
  [[ -s $1 ]] || { echo "–"; return; }
  read -r med p95 _ < <(stats "$1")
  echo "$(fmt_ms "$med") ($(fmt_ms "$p95"))"
}
med() { local m _; [[ -s $1 ]] || { echo -; return; }; read -r m _ < <(stats "$1"); echo "$m"; }
cnt() { local _a _b c; [[ -s $1 ]] || { echo 0; return; }; read -r _a _b c < <(stats "$1"); echo "$c"; }

wgv=$(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null || echo unknown)
wtv=$(dpkg-query -W -f='${Version}' wireguard-tools 2>/dev/null || echo unknown)
echo "## wgp2p benchmark$( ((QUICK)) && echo " (--quick)")"
echo
echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r), $(($(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo) / 1024)) MiB RAM;"
echo "wireguard-go $wgv, wireguard-tools $wtv; $(findmnt -n -o FSTYPE,SOURCE --target "$RAW" 2>/dev/null | tr -s ' ' | sed 's/ / on /') under /var/tmp (the \"disk\" config dir)."
echo "Binary: $BIN ($($BIN --version), source $REV). Load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg); CPUs busy with other work at start/end: $BUSY_START% / $BUSY_END%."
if ((BUSY_START > 25 || BUSY_END > 25)); then
  echo "**Warning: other work used $BUSY_START% of the CPUs at the start and $BUSY_END% at the end (measured over 1 s with nothing of this benchmark running): figures measured while the machine was busy are inflated and noisy; rerun on an idle machine.**"
fi
echo "Times are whole processes (fork + exec + work + exit) in ms, median (p95), timed by bash's \$EPOCHREALTIME inside the namespaced host, after 2 unrecorded warm-up rounds; $(basename "$0")$( ((QUICK)) && echo " --quick") took $(((T_END - T_START) / 1000000)) s."
echo
echo "### add-peer / remove-peer (config dir on disk, real fsync)"
echo
echo "| peers | change | wgp2p | bare \`wg set\` | wgp2p / wg set | script's way (\`wg set\` + \`wg-quick down\` + \`up\`) | script / wgp2p | runs (script) |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for n in "${SIZES[@]}"; do
  d=$RAW/$n
  for op in add remove; do
    if [[ -s $d/script_$op ]]; then
      sc=$(cell "$d/script_$op") sr="$(ratio "$(med "$d/script_$op")" "$(med "$d/${op}_disk")")×" scn=" ($(cnt "$d/script_$op"))"
    else
      sc="not run (> BENCH_SCRIPT_MAX=$SCRIPT_MAX)" sr="–" scn=""
    fi
    echo "| $n | $op-peer | $(cell "$d/${op}_disk") | $(cell "$d/wgset_$op") | $(ratio "$(med "$d/${op}_disk")" "$(med "$d/wgset_$op")")× | $sc | $sr | $(cnt "$d/${op}_disk")$scn |"
  done
done
echo
echo "### Config dir on disk vs on tmpfs (same host, same run, interleaved)"
echo
echo "| peers | change | disk | tmpfs | disk − tmpfs (medians) | bare \`wg set\` | tmpfs / wg set |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for n in "${SIZES[@]}"; do
  d=$RAW/$n
  for op in add remove; do
    a=$(med "$d/${op}_disk") b=$(med "$d/${op}_tmpfs")
    echo "| $n | $op-peer | $(cell "$d/${op}_disk") | $(cell "$d/${op}_tmpfs") | $(fmt_ms $((a - b))) | $(cell "$d/wgset_$op") | $(ratio "$b" "$(med "$d/wgset_$op")")× |"
  done
done
echo
echo "### status"
echo
echo "| peers | \`wgp2p status\` | \`wgp2p status --json\` | \`wg show wg0 dump\` | status / dump | --json / dump | runs |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for n in "${SIZES[@]}"; do
  d=$RAW/$n
  echo "| $n | $(cell "$d/status") | $(cell "$d/status_json") | $(cell "$d/wg_dump") | $(ratio "$(med "$d/status")" "$(med "$d/wg_dump")")× | $(ratio "$(med "$d/status_json")" "$(med "$d/wg_dump")")× | $(cnt "$d/status") |"
done
echo
if ((${#SIZES[@]} > 1)); then
  echo "### Cost per configured peer (slope of the medians between two sizes, µs per peer)"
  echo
  hdr="| figure |" sep="|---|"
  for ((s = 1; s < ${#SIZES[@]}; s++)); do
    hdr+=" ${SIZES[s - 1]} → ${SIZES[s]} |" sep+="---:|"
  done
  echo "$hdr"
  echo "$sep"
  for f in add_disk:"wgp2p add-peer (disk)" remove_disk:"wgp2p remove-peer (disk)" add_tmpfs:"wgp2p add-peer (tmpfs)" \
    wgset_add:"wg set (add)" status:"wgp2p status" status_json:"wgp2p status --json" wg_dump:"wg show wg0 dump" \
    script_add:"script's way (add)"; do
    file=${f%%:*} label=${f#*:} row="| $label |"
    for ((s = 1; s < ${#SIZES[@]}; s++)); do
      a=${SIZES[s - 1]} b=${SIZES[s]}
      ma=$(med "$RAW/$a/$file") mb=$(med "$RAW/$b/$file")
      if [[ $ma == - || $mb == - ]]; then
        row+=" – |"
      else
        slope=$(((mb - ma) * 100 / (b - a)))
        sign=""
        ((slope < 0)) && sign="-" slope=$((-slope))
        row+=" $sign$((slope / 100)).$(printf '%02d' $((slope % 100))) |"
      fi
    done
    echo "$row"
  done
  echo
fi
echo "### Packet loss: \`ping -i 0.02\` both ways across a tunnel while 10 add-peer and 10 remove-peer run on one end"
echo
echo "| how | 20 changes took (sum, via nsenter) | A→B sent | A→B lost | B→A sent | B→A lost | max RTT A→B / B→A (ms) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for how in wgp2p script; do
  read -r s1 l1 m1 < <(ping_stats "$RAW/ping/${how}_ab")
  read -r s2 l2 m2 < <(ping_stats "$RAW/ping/${how}_ba")
  label="wgp2p add-peer / remove-peer"
  [[ $how == script ]] && label="script's way"
  echo "| $label | $(fmt_ms "$(cat "$RAW/ping/${how}_duration")") ms | $s1 | $l1 | $s2 | $l2 | $m1 / $m2 |"
done
echo
echo "### Binary and start-up"
echo
size=$(stat -c %s "$BIN")
echo "| stripped release binary | \`wgp2p --version\` | \`wg --version\` | \`/bin/true\` (harness floor) | runs |"
echo "|---:|---:|---:|---:|---:|"
echo "| $size bytes ($((size / 1024)) KiB) | $(cell "$RAW/startup/version") | $(cell "$RAW/startup/wg_version") | $(cell "$RAW/startup/true") | $(cnt "$RAW/startup/version") |"
echo
echo "### wireguard-go resident memory and interface start"
echo
echo "| peers | wireguard-go RSS after start | \`wgp2p start\` (wg-quick up) |"
echo "|---:|---:|---:|"
for n in "${SIZES[@]}"; do
  echo "| $n | $(($(cat "$RAW/$n/rss_wireguard_go") / 1024)) MiB | $(fmt_ms "$(cat "$RAW/$n/start_wgp2p")") ms |"
done
if [[ -n ${BENCH_OUT:-} ]]; then
  echo
  echo "Raw samples (µs): $RAW"
fi
