#!/usr/bin/env bash
# Reproduces a wireguard-go stall that the benchmark steers around: one
# `wg setconf` of N peers whose endpoints are absent LAN addresses (no ARP
# answer) takes seconds to minutes when a peer with PersistentKeepalive comes
# before them in the same set, and ~0.1 s when it comes last or when the
# endpoints refuse at once (closed ports on an address that exists).
#
# Usage, as root:   bench/wg-stall.sh [N]     (default N=300: ~10 s;
#                   N=1000 took 143–169 s per slow case on the lab machine)
#
# Why it matters: `wg-quick up` runs exactly such a setconf; with SaveConfig
# (the old script's way) the file is rewritten in wireguard-go's peer order,
# so a keepalive peer lands anywhere and every restart may stall like this.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh
[[ $EUID -eq 0 ]] || die "run as root"
N=${1:-300}
trap lab_cleanup EXIT
trap 'exit 130' INT TERM
host_new stall
host_dummy stall
lab_disk_dir D
random_keys "$N" >"$D/keys"
KA=$(random_keys 1)

# conf ENDPOINTS POSITION: N peers, plus one keepalive peer first or last.
conf() {
  local style=$1 pos=$2 i=0 key ep
  printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n' "$(wg genkey)"
  keepalive() { printf '\n[Peer]\nPublicKey = %s\nEndpoint = 203.0.113.1:51999\nAllowedIPs = 10.20.250.1/32\nPersistentKeepalive = 25\n' "$KA"; }
  [[ $pos == first ]] && keepalive
  while IFS= read -r key; do
    if [[ $style == absent ]]; then ep=203.0.113.$((2 + i % 250)):51820; else ep=203.0.113.1:$((10000 + i)); fi
    printf '\n[Peer]\nPublicKey = %s\nEndpoint = %s\nAllowedIPs = %s/32\n' "$key" "$ep" "$(peer_ip "$i")"
    i=$((i + 1))
  done <"$D/keys"
  [[ $pos == last ]] && keepalive
  return 0
}

echo "| $N peers' endpoints | keepalive peer | \`wg setconf\` |"
echo "|---|---|---:|"
for style in absent closed; do
  for pos in last first; do
    conf "$style" "$pos" >"$D/wg0.conf"
    on stall wireguard-go wg0 >/dev/null 2>&1 || die "wireguard-go did not start"
    sleep 0.2
    t0=$(now_us)
    on stall timeout 600 wg setconf wg0 "$D/wg0.conf" || die "setconf failed or took over 600 s"
    t1=$(now_us)
    label="absent LAN addresses (203.0.113.2–251, no ARP answer)"
    [[ $style == closed ]] && label="closed ports of the host's own address"
    echo "| $label | $pos | $(fmt_ms $((t1 - t0))) ms |"
    ip -n "$(lab_ns stall)" link del wg0
    sleep 0.5
  done
done
