#!/usr/bin/env bash
# Long property-based fuzzing of the config parser and every argument
# validator (the proptest properties in src/: lossless parse/render, edit
# round trips, no panic on any text, validators never pass a newline).
# Each round runs them with a fresh random seed and CASES cases per
# property, until MINUTES have passed. CI runs the short default pass as
# part of `cargo test`. Then, as root (it needs the namespace lab), the
# differential test against wg(8) (tests/differential.rs) with DIFF_CASES
# generated configs (default 50000; the normal test run makes 2000).
#   scripts/fuzz.sh [MINUTES] [CASES]
#   DIFF_CASES=N scripts/fuzz.sh …
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-30}
cases=${2:-20000}
cargo build --release --tests --locked -q
end=$(( $(date +%s) + minutes * 60 ))
rounds=0
while [ "$(date +%s)" -lt "$end" ]; do
  PROPTEST_CASES=$cases cargo test --release --locked -q --bin wgp2p properties >/tmp/wgp2p-fuzz.log 2>&1 || {
    echo "FAILED in round $((rounds + 1)):"; grep -E "minimal failing input|panicked" /tmp/wgp2p-fuzz.log; exit 1; }
  rounds=$((rounds + 1))
done
properties=$(grep -o "ok. [0-9]* passed" /tmp/wgp2p-fuzz.log | grep -o "[0-9]*" | head -1)
echo "fuzz: $rounds rounds x $properties properties x $cases cases = $((rounds * properties * cases)) cases in $minutes min, no failure"
if [ "$(id -u)" = 0 ]; then
  diff_cases=${DIFF_CASES:-50000}
  WGP2P_DIFF_CASES=$diff_cases cargo test --release --locked -q --test differential -- --include-ignored --nocapture >/tmp/wgp2p-diff.log 2>&1 || {
    echo "differential FAILED:"; grep -E -A12 "disagree" /tmp/wgp2p-diff.log | head -40; exit 1; }
  grep "^differential:" /tmp/wgp2p-diff.log
else
  echo "differential against wg(8) not run: it needs root (the namespace lab)"
fi
