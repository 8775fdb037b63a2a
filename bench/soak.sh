#!/usr/bin/env bash
# The membership soak (docs/membership.md, "Budgets and bounds"): one member
# sends introductions of new members at its full datagram budget to an
# accepting node for WGP2P_SOAK_SECS (default 600: ten minutes), then a
# genuine newcomer joins through another member.
#
# Usage, as root:   bench/soak.sh      (~11 min plus the test build)
#   WGP2P_SOAK_SECS=N   how long the member sends (default 600)
#
# It runs the lab test tests/membership.rs
# a_member_at_its_full_budget_neither_fills_the_book_nor_bloats_the_agent
# (which the test suite runs for 30 s) for the soak's length, on the release
# binary (the test builds it: target/release/wgp2p), and prints its
# figure line: datagrams sent, new members the node took (60 a minute at
# most), the book's size and the member's share of it, the agent's peak
# resident memory (VmRSS), and the newcomer's join time. The test asserts
# the bounds (RSS at most 10 MB, the book never full, the join within
# 60 s); this script only reports. The lab removes everything it made.
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
source bench/lib.sh

usage_or_root "$0" "${1:-}"
SECS=${WGP2P_SOAK_SECS:-600}
((SECS >= 10 && SECS <= 7200)) || die "WGP2P_SOAK_SECS must be 10 to 7200"
echo "soak: one member at its full budget for $SECS s (src at $(git rev-parse --short HEAD))"
WGP2P_SOAK_SECS=$SECS cargo test --release --test membership -- --ignored --exact \
  a_member_at_its_full_budget_neither_fills_the_book_nor_bloats_the_agent --nocapture 2>&1 |
  grep -E '^soak:|^test |test result|panicked'
