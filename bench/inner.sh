#!/usr/bin/env bash
# Runs INSIDE a lab host (see bench/run.sh): timing loops around whole
# processes, so every figure is fork + exec + the work + exit, measured by
# bash's $EPOCHREALTIME (no extra process per sample). One number per line
# (microseconds) is appended to OUT/<label>.
set -u
export LC_ALL=C
now() { local t=${EPOCHREALTIME/./}; echo "$t"; }
# Warm-up rounds run first and are not recorded (page cache, wireguard-go's
# first allocations, CPU frequency).
WARM=${WARM:-2}
# rec VALUE FILE: record unless in a warm-up round (i < 0).
rec() { ((i >= 0)) && echo "$1" >>"$2"; return 0; }

mode=$1
shift
case $mode in
# addremove ITER OUT BIN KEYS LABEL=DIR...: per iteration and per config
# DIR, a wgp2p add-peer then remove-peer of a new peer (timed into
# OUT/add_LABEL and OUT/remove_LABEL); then the same change with bare
# `wg set` (OUT/wgset_add, OUT/wgset_remove). KEYS holds one fresh key per
# line, (ITER + WARM) * (number of dirs + 1) of them.
addremove)
  iter=$1 out=$2 bin=$3 keys=$4
  shift 4
  pairs=("$@")
  mapfile -t k <"$keys"
  n=0
  for ((i = -WARM; i < iter; i++)); do
    ip=10.20.250.$((1 + (i + WARM) % 250))
    ep=203.0.113.1:$((60000 + i + WARM))
    for pair in "${pairs[@]}"; do
      label=${pair%%=*} d=${pair#*=}
      key=${k[n++]}
      t0=$(now)
      "$bin" --config-dir "$d" add-peer "bench$i" "$ep" "$key" "$ip" >/dev/null || exit 1
      t1=$(now)
      "$bin" --config-dir "$d" remove-peer "bench$i" >/dev/null || exit 1
      t2=$(now)
      rec $((t1 - t0)) "$out/add_$label"
      rec $((t2 - t1)) "$out/remove_$label"
    done
    key=${k[n++]}
    t0=$(now)
    wg set wg0 peer "$key" endpoint "$ep" allowed-ips "$ip/32" persistent-keepalive 25 || exit 1
    t1=$(now)
    wg set wg0 peer "$key" remove || exit 1
    t2=$(now)
    rec $((t1 - t0)) "$out/wgset_add"
    rec $((t2 - t1)) "$out/wgset_remove"
  done
  ;;
# status ITER OUT BIN DIR: wgp2p status, status --json, wg show wg0 dump.
status)
  iter=$1 out=$2 bin=$3 dir=$4
  for ((i = -WARM; i < iter; i++)); do
    t0=$(now)
    "$bin" --config-dir "$dir" status >/dev/null || exit 1
    t1=$(now)
    "$bin" --config-dir "$dir" --json status >/dev/null || exit 1
    t2=$(now)
    wg show wg0 dump >/dev/null || exit 1
    t3=$(now)
    rec $((t1 - t0)) "$out/status"
    rec $((t2 - t1)) "$out/status_json"
    rec $((t3 - t2)) "$out/wg_dump"
  done
  ;;
# script ITER OUT CONF KEYS: the old script's way: `wg set` then
# `wg-quick down` and `wg-quick up` (SaveConfig = true writes the file).
# No warm-up round (each costs a restart).
script)
  iter=$1 out=$2 conf=$3 keys=$4
  mapfile -t k <"$keys"
  for ((i = 0; i < iter; i++)); do
    key=${k[i]}
    ip=10.20.250.$((1 + i % 250))
    ep=203.0.113.1:$((60000 + i))
    t0=$(now)
    wg set wg0 peer "$key" endpoint "$ep" allowed-ips "$ip/32" persistent-keepalive 25 || exit 1
    wg-quick down "$conf" 2>/dev/null || exit 1
    wg-quick up "$conf" 2>/dev/null || exit 1
    t1=$(now)
    wg set wg0 peer "$key" remove || exit 1
    wg-quick down "$conf" 2>/dev/null || exit 1
    wg-quick up "$conf" 2>/dev/null || exit 1
    t2=$(now)
    echo $((t1 - t0)) >>"$out/script_add"
    echo $((t2 - t1)) >>"$out/script_remove"
  done
  ;;
# startup ITER OUT BIN: `wgp2p --version`, `wg --version`, and /bin/true
# (the cost of the harness itself: fork + exec of a trivial binary).
startup)
  iter=$1 out=$2 bin=$3
  for ((i = -WARM; i < iter; i++)); do
    t0=$(now)
    "$bin" --version >/dev/null || exit 1
    t1=$(now)
    wg --version >/dev/null || exit 1
    t2=$(now)
    /bin/true
    t3=$(now)
    rec $((t1 - t0)) "$out/version"
    rec $((t2 - t1)) "$out/wg_version"
    rec $((t3 - t2)) "$out/true"
  done
  ;;
*)
  echo "inner.sh: unknown mode $mode" >&2
  exit 2
  ;;
esac
