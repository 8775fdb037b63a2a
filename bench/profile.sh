#!/usr/bin/env bash
# Where the time of one wgp2p add-peer / remove-peer / status goes, with N
# peers configured (default: 1000 and 5000), in a namespaced host like
# bench/run.sh's. Needs strace; perf (Debian: linux-perf) is used when
# present. Not run by CI.
#
# Usage, as root:   bench/profile.sh [N…]
#   PROFILE_RUNS=K   traced runs per command (default 10)
#
# It builds a copy of the release binary with symbols (same profile, only
# `strip = false` and `debug = true`, in target/bench-profile) and prints:
# 1. the phases of each command from `strace -f -ttt -T` timestamps
#    (median over K runs; strace adds ~10–30 µs per syscall, so the total
#    is above the untraced figure of bench/run.sh);
# 2. with perf, the functions with the most samples (self time) over a loop
#    of add-peer/remove-peer and of status.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

usage_or_root "$0" "${1:-}"
command -v strace >/dev/null || die "needs strace (apt-get install --no-install-recommends strace)"
SIZES=("$@")
((${#SIZES[@]})) || SIZES=(1000 5000)
RUNS=${PROFILE_RUNS:-10}
HAVE_PERF=0
command -v perf >/dev/null && perf --version >/dev/null 2>&1 && HAVE_PERF=1

note "building a release binary with symbols (target/bench-profile)"
CARGO_TARGET_DIR=$ROOT/target/bench-profile CARGO_PROFILE_RELEASE_STRIP=false \
  CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release --locked --quiet || die "build failed"
BIN=$ROOT/target/bench-profile/release/wgp2p
trap lab_cleanup EXIT
trap 'exit 130' INT TERM
lab_disk_dir OUT

# phases FILE KIND: one line of phase durations (µs) from an strace -f -ttt -T
# log of one wgp2p run. KIND is change (add-peer/remove-peer) or status.
phases() {
  local file=$1 kind=$2 line ts dur
  local t_exec='' t_conf='' t_sock='' t_tmp='' t_sync_end='' t_dev_end='' t_end=''
  local nsync=0
  while IFS= read -r line; do
    [[ $line =~ ^[0-9]+\ +([0-9]+)\.([0-9]{6})\  ]] || continue
    ts=${BASH_REMATCH[1]}${BASH_REMATCH[2]}
    dur=0
    [[ $line =~ \<([0-9]+)\.([0-9]{6})\>$ ]] && dur=$((10#${BASH_REMATCH[1]}${BASH_REMATCH[2]}))
    if [[ -z $t_exec && $line == *execve\(* ]]; then t_exec=$ts; fi
    if [[ -z $t_conf && $line == *openat\(*wg0.conf\",\ O_RDONLY* ]]; then t_conf=$ts; fi
    if [[ -z $t_sock && $line == *connect\(*wg0.sock* ]]; then t_sock=$ts; fi
    if [[ -z $t_tmp && $line == *openat\(*.wgp2p-*O_CREAT* ]]; then t_tmp=$ts; fi
    if [[ $line == *fsync\(* ]]; then
      nsync=$((nsync + 1))
      ((nsync == 2)) && t_sync_end=$((ts + dur))
    fi
    if [[ $line == *recvfrom\(* ]]; then t_dev_end=$((ts + dur)); fi
    if [[ $line == *"+++ exited with"* ]]; then t_end=$ts; fi
  done <"$file"
  if [[ $kind == change ]]; then
    # start-up+lock | read+parse+plan | render (after is_up) | durable write | device | exit
    echo $((t_conf - t_exec)) $((t_sock - t_conf)) $((t_tmp - t_sock)) \
      $((t_sync_end - t_tmp)) $((t_dev_end - t_sync_end)) $((t_end - t_dev_end)) $((t_end - t_exec))
  else
    # start-up | read+parse config | device read (UAPI get) | merge+print+exit
    local t_get_end=$t_dev_end
    [[ -z $t_get_end ]] && t_get_end=$t_sock
    echo $((t_conf - t_exec)) $((t_sock - t_conf)) $((t_get_end - t_sock)) \
      $((t_end - t_get_end)) $((t_end - t_exec))
  fi
}

# column_medians FILE: the median of each column.
column_medians() {
  local file=$1 cols c out=()
  read -ra cols <"$file"
  for ((c = 1; c <= ${#cols[@]}; c++)); do
    cut -d' ' -f"$c" "$file" >"$file.col"
    read -r m _ < <(stats "$file.col")
    out+=("$(fmt_ms "$m")")
  done
  echo "${out[@]}"
}

for n in "${SIZES[@]}"; do
  h=prof$n
  note "$n peers: preparing the host"
  host_new "$h"
  host_dummy "$h"
  dir=$OUT/$n/cfg
  mkdir -p "$OUT/$n"
  on "$h" "$BIN" --config-dir "$dir" install 10.20.0.1/16 --endpoint 203.0.113.1:51820 >/dev/null 2>&1 ||
    die "install failed"
  on "$h" "$BIN" --config-dir "$dir" stop >/dev/null || die "stop failed"
  i=0
  while IFS= read -r key; do
    printf '\n[Peer]\n# Name = p%d\nPublicKey = %s\nEndpoint = 203.0.113.1:%d\nAllowedIPs = %s/32\n' \
      "$i" "$key" $((10000 + i)) "$(peer_ip "$i")"
    i=$((i + 1))
  done < <(random_keys "$n") >>"$dir/wg0.conf"
  on "$h" "$BIN" --config-dir "$dir" start >/dev/null 2>&1 || die "start failed"
  mapfile -t keys < <(random_keys "$RUNS")
  : >"$OUT/$n/add" && : >"$OUT/$n/remove" && : >"$OUT/$n/status"
  note "$n peers: $RUNS traced add-peer, remove-peer and status runs"
  for ((r = 0; r < RUNS; r++)); do
    on "$h" strace -f -ttt -T -o "$OUT/$n/t" "$BIN" --config-dir "$dir" add-peer x \
      203.0.113.1:60000 "${keys[r]}" 10.20.250.1 >/dev/null || die "add-peer failed"
    phases "$OUT/$n/t" change >>"$OUT/$n/add"
    on "$h" strace -f -ttt -T -o "$OUT/$n/t" "$BIN" --config-dir "$dir" remove-peer x >/dev/null ||
      die "remove-peer failed"
    phases "$OUT/$n/t" change >>"$OUT/$n/remove"
    on "$h" strace -f -ttt -T -o "$OUT/$n/t" "$BIN" --config-dir "$dir" status >/dev/null ||
      die "status failed"
    phases "$OUT/$n/t" status >>"$OUT/$n/status"
  done
  echo "### $n peers ($(stat -c %s "$dir/wg0.conf") bytes of wg0.conf): phases under strace, median of $RUNS (ms)"
  echo
  echo "| command | start-up, lock, small files | read + parse + plan | render (after the is-up probe) | durable write (write, fsync, rename, fsync dir) | device update | free + exit | total (traced) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for c in add remove; do
    read -ra m < <(column_medians "$OUT/$n/$c")
    echo "| $c-peer | ${m[0]} | ${m[1]} | ${m[2]} | ${m[3]} | ${m[4]} | ${m[5]} | ${m[6]} |"
  done
  echo
  echo "| command | start-up | read + parse config | device read (UAPI get) | merge, format, print, exit | total (traced) |"
  echo "|---|---:|---:|---:|---:|---:|"
  read -ra m < <(column_medians "$OUT/$n/status")
  echo "| status | ${m[0]} | ${m[1]} | ${m[2]} | ${m[3]} | ${m[4]} |"
  echo
  if ((HAVE_PERF)); then
    mapfile -t keys < <(random_keys 20)
    loop="for k in ${keys[*]}; do $BIN --config-dir $dir add-peer x 203.0.113.1:60000 \$k 10.20.250.1 >/dev/null; $BIN --config-dir $dir remove-peer x >/dev/null; done"
    on "$h" perf record -q -F 5000 -o "$OUT/$n/perf_change" -- bash -c "$loop" >/dev/null 2>&1
    on "$h" perf record -q -F 5000 -o "$OUT/$n/perf_status" -- bash -c \
      "for i in 1 2 3 4 5 6 7 8 9 10; do $BIN --config-dir $dir status >/dev/null; done" >/dev/null 2>&1
    for what in change status; do
      echo "perf, $what ($([[ $what == change ]] && echo "20 add-peer + 20 remove-peer" || echo "10 status")), self time of the wgp2p processes, top 15:"
      echo
      echo '```'
      perf report -i "$OUT/$n/perf_$what" --comm wgp2p --no-children --percentage relative \
        --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -15 |
        sed -E 's/[ -]+$//; s/^ +//; s/  +/  /g' | cut -c1-150
      echo '```'
      echo
    done
  fi
  host_delete "$h"
done
