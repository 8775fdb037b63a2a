#!/usr/bin/env bash
# wgp2p at lab scale: a full mesh of 30 namespaced hosts (870 peer entries)
# built only through the CLI from the lines `wgp2p install` prints, then
# every ordered pair pings through the tunnels.
#
# Usage, as root:   bench/mesh30.sh          (~15 s plus the release build)
#   MESH_HOSTS=N      another host count (2–200)
#   WGP2P_BIN=PATH    binary to use (default: target/release/wgp2p, built)
#
# Reports: the time of the 30 installs and of the 870 add-peer calls (and
# their per-call median and p95), the time until every ordered pair pings
# (from the last add-peer), and the memory per host (wireguard-go's RSS and
# the machine's MemAvailable drop divided by the host count). Hosts are on
# one bridge (203.0.113.0/24), config dirs on the machine's disk, VPN
# 10.15.0.0/24. Everything is removed on exit.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

usage_or_root "$0" "${1:-}"
HOSTS=${MESH_HOSTS:-30}
((HOSTS >= 2 && HOSTS <= 200)) || die "MESH_HOSTS=$HOSTS: expected 2–200"
require_tools ip wg wg-quick wireguard-go ping nsenter unshare setsid
lab_begin
lab_disk_dir WORK
mem_avail() { sed -n 's/^MemAvailable:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo; }

fmt_mib() { local k=$1; printf '%d.%d' $((k / 1024)) $(((k % 1024) * 10 / 1024)); }
name_of() { printf 'h%02d' "$1"; }
MEM0=$(mem_avail)
note "creating $HOSTS hosts"
lab_bridge
for ((i = 1; i <= HOSTS; i++)); do
  h=$(name_of "$i")
  host_new "$h"
  host_plug "$h" $((10 + i))
done

declare -a LINE
note "installing wgp2p on every host"
T0=$(now_us)
for ((i = 1; i <= HOSTS; i++)); do
  h=$(name_of "$i")
  LINE[i]=$(on "$h" "$BIN" --config-dir "$WORK/$h" install "10.15.0.$i/24" --endpoint "203.0.113.$((10 + i))" \
    2>/dev/null | grep '^wgp2p add-peer ') || die "install on $h failed"
done
T1=$(now_us)

note "pasting every host's line on every other host ($((HOSTS * (HOSTS - 1))) add-peer calls)"
: >"$WORK/add_times"
for ((i = 1; i <= HOSTS; i++)); do
  h=$(name_of "$i")
  for ((j = 1; j <= HOSTS; j++)); do
    ((i == j)) && continue
    read -ra words <<<"${LINE[j]}"
    a=$(now_us)
    on "$h" "$BIN" --config-dir "$WORK/$h" "${words[@]:1}" >/dev/null || die "$h: ${LINE[j]} failed"
    b=$(now_us)
    echo $((b - a)) >>"$WORK/add_times"
  done
done
T2=$(now_us)

note "waiting until every ordered pair pings"
ping_jobs=()
for ((i = 1; i <= HOSTS; i++)); do
  h=$(name_of "$i")
  targets=()
  for ((j = 1; j <= HOSTS; j++)); do ((i != j)) && targets+=("10.15.0.$j"); done
  (
    # shellcheck disable=SC2016 # expanded by the inner bash
    on "$h" bash -c 'for t in "$@"; do ping -n -q -c 1 -i 0.2 -w 60 "$t" >/dev/null || { echo "no reply from $t" >&2; exit 1; }; done' \
      sh "${targets[@]}" || exit 1
    now_us >"$WORK/ping_done_$h"
  ) &
  ping_jobs+=($!)
done
fail=0
for job in "${ping_jobs[@]}"; do wait "$job" || fail=1; done
((fail)) && die "some pair never pinged within 60 s"
T3=0
for ((i = 1; i <= HOSTS; i++)); do
  t=$(cat "$WORK/ping_done_$(name_of "$i")")
  ((t > T3)) && T3=$t
done

# Every host sees its peers, all healthy, under their names.
peers_ok=0
for ((i = 1; i <= HOSTS; i++)); do
  h=$(name_of "$i")
  n=$(on "$h" "$BIN" --config-dir "$WORK/$h" status | grep -cE '^ +h[0-9]+ .* ok *$')
  ((n == HOSTS - 1)) && peers_ok=$((peers_ok + 1))
done

MEM1=$(mem_avail)
rss=()
for ((i = 1; i <= HOSTS; i++)); do
  for pid in $(ip netns pids "$(lab_ns "$(name_of "$i")")"); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == wireguard-go ]] &&
      rss+=("$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status")")
  done
done
printf '%s\n' "${rss[@]}" >"$WORK/rss"
read -r rss_med rss_max _ < <(stats "$WORK/rss")
read -r add_med add_p95 add_n < <(stats "$WORK/add_times")
conf_bytes=$(stat -c %s "$WORK/h01/wg0.conf")

echo "## wgp2p full mesh: $HOSTS hosts, $((HOSTS * (HOSTS - 1))) peer entries"
echo
echo "Machine: $(nproc) CPUs, kernel $(uname -r), wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null); $($BIN --version); config dirs on $(findmnt -n -o FSTYPE --target "$WORK")."
echo
echo "| what | figure |"
echo "|---|---:|"
echo "| $HOSTS installs (keys, files, wg-quick up, line printed) | $(fmt_ms $((T1 - T0))) ms |"
echo "| $add_n add-peer calls from the printed lines, one after another | $(fmt_ms $((T2 - T1))) ms |"
echo "| one add-peer call, median (p95) | $(fmt_ms "$add_med") ($(fmt_ms "$add_p95")) ms |"
echo "| build total (installs + add-peers) | $(fmt_ms $((T2 - T0))) ms |"
echo "| from the last add-peer until every ordered pair has pinged | $(fmt_ms $((T3 - T2))) ms |"
echo "| from the first install until every ordered pair has pinged | $(fmt_ms $((T3 - T0))) ms |"
echo "| hosts whose \`wgp2p status\` shows all $((HOSTS - 1)) peers by name and ok | $peers_ok of $HOSTS |"
echo "| wireguard-go RSS per host, median (max) | $(fmt_mib "$rss_med") MiB ($(fmt_mib "$rss_max") MiB) |"
echo "| machine MemAvailable drop / host (namespaces, veths, wireguard-go, page cache) | $(fmt_mib $(((MEM0 - MEM1) / HOSTS))) MiB |"
echo "| wg0.conf per host | $conf_bytes bytes |"
