#!/usr/bin/env bash
# Membership convergence (docs/membership.md): a full mesh of N namespaced
# hosts that accept introductions, each running `wgp2p agent`; one more host
# exchanges add-peer lines with ONE member, and the time until every
# ordered pair of the N+1 hosts pings is measured; then that member removes
# the newcomer, and the time until no other member has it is measured.
#
# Usage, as root:   bench/join.sh            (10 members, ~2 min plus the release build)
#   MESH_HOSTS=N      members (2–100; 30 for the BENCHMARKS.md row)
#   JOIN_INTERVAL=S   the agents' --interval (default 30, the agent's own default)
#   WGP2P_BIN=PATH    binary to use (default: target/release/wgp2p, built)
#
# Reports the time from the two pastes until all (N+1)*N ordered pairs
# have pinged, the time from `remove-peer` until the newcomer is gone from
# every member's config, and the membership datagrams the members' agents
# accepted. Prints figures; asserts nothing about time (a pair that never
# pings within 120 s, or a removal not spread within 120 s, is reported
# as such). Everything is removed on exit.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

usage_or_root "$0" "${1:-}"
HOSTS=${MESH_HOSTS:-10}
INTERVAL=${JOIN_INTERVAL:-30}
((HOSTS >= 2 && HOSTS <= 100)) || die "MESH_HOSTS=$HOSTS: expected 2–100"
require_tools ip wg wg-quick wireguard-go ping nsenter unshare setsid
lab_begin
lab_disk_dir WORK
name_of() { printf 'h%02d' "$1"; }
NEW=$((HOSTS + 1))

note "creating $((HOSTS + 1)) hosts"
lab_bridge
for ((i = 1; i <= NEW; i++)); do
  h=$(name_of "$i")
  host_new "$h"
  host_plug "$h" $((10 + i))
done

declare -a LINE
note "installing wgp2p (--accept-introductions) on every host"
for ((i = 1; i <= NEW; i++)); do
  h=$(name_of "$i")
  LINE[i]=$(on "$h" "$BIN" --config-dir "$WORK/$h" install "10.15.0.$i/24" \
    --endpoint "203.0.113.$((10 + i))" --accept-introductions 2>/dev/null |
    grep '^wgp2p add-peer ') || die "install on $h failed"
done

note "building the mesh of $HOSTS members from the printed lines"
for ((i = 1; i <= HOSTS; i++)); do
  for ((j = 1; j <= HOSTS; j++)); do
    ((i == j)) && continue
    read -ra words <<<"${LINE[j]}"
    on "$(name_of "$i")" "$BIN" --config-dir "$WORK/$(name_of "$i")" "${words[@]:1}" >/dev/null ||
      die "$(name_of "$i"): ${LINE[j]} failed"
  done
done

note "starting an agent on every host (--interval $INTERVAL)"
for ((i = 1; i <= NEW; i++)); do
  h=$(name_of "$i")
  on "$h" "$BIN" --config-dir "$WORK/$h" agent --interval "$INTERVAL" 2>>"$WORK/$h.agent.log" &
done

# pings_from I TARGETS…: ping each target until it answers (120 s at most).
all_pairs_ping() {
  local n=$1 jobs=() fail=0 i j h
  for ((i = 1; i <= n; i++)); do
    h=$(name_of "$i")
    targets=()
    for ((j = 1; j <= n; j++)); do ((i != j)) && targets+=("10.15.0.$j"); done
    (
      # shellcheck disable=SC2016 # expanded by the inner bash
      on "$h" bash -c 'for t in "$@"; do ping -n -q -c 1 -i 0.2 -w 120 "$t" >/dev/null || { echo "no reply from $t" >&2; exit 1; }; done' \
        sh "${targets[@]}" || exit 1
    ) &
    jobs+=($!)
  done
  for job in "${jobs[@]}"; do wait "$job" || fail=1; done
  return $fail
}

note "waiting until the $HOSTS members all ping each other"
all_pairs_ping "$HOSTS" || die "the members' mesh never pinged"
# Let every agent pass twice: hellos exchanged, keys pinned, books equal.
sleep $((2 * INTERVAL))

note "the newcomer and h01 exchange lines"
read -ra to_h01 <<<"${LINE[1]}"
read -ra to_new <<<"${LINE[NEW]}"
T0=$(now_us)
on "$(name_of "$NEW")" "$BIN" --config-dir "$WORK/$(name_of "$NEW")" "${to_h01[@]:1}" >/dev/null || die "paste on the newcomer failed"
on h01 "$BIN" --config-dir "$WORK/h01" "${to_new[@]:1}" >/dev/null || die "paste on h01 failed"
if all_pairs_ping "$NEW"; then
  T1=$(now_us)
  join_time="$(fmt_ms $((T1 - T0))) ms"
else
  join_time="not all pairs within 120 s"
fi

note "h01 removes the newcomer"
key=$(awk '{print $5}' <<<"${LINE[NEW]}")
T2=$(now_us)
on h01 "$BIN" --config-dir "$WORK/h01" remove-peer "$(name_of "$NEW")" >/dev/null || die "remove-peer failed"
removal_time="not spread within 120 s"
for ((k = 0; k < 1200; k++)); do
  left=0
  for ((i = 2; i <= HOSTS; i++)); do
    grep -q -- "$key" "$WORK/$(name_of "$i")/wg0.conf" && left=$((left + 1))
  done
  if ((left == 0)); then
    removal_time="$(fmt_ms $(($(now_us) - T2))) ms"
    break
  fi
  sleep 0.1
done
introduced=$(grep -c "# Source = introduced by" "$WORK/$(name_of "$NEW")/wg0.conf")

echo "## wgp2p membership: $HOSTS members, one newcomer"
echo
echo "Machine: $(nproc) CPUs, kernel $(uname -r), wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null); $($BIN --version); agents' --interval $INTERVAL s."
echo
echo "| what | figure |"
echo "|---|---:|"
echo "| two pastes (newcomer, h01) -> all $((NEW * HOSTS)) ordered pairs ping | $join_time |"
echo "| \`remove-peer\` on h01 -> gone from the other $((HOSTS - 1)) members' configs | $removal_time |"
echo "| members the newcomer's config holds as introduced (all but h01) | $introduced of $((HOSTS - 1)) |"
