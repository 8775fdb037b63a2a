#!/usr/bin/env bash
# The whole test suite: unit tests, CLI tests and the namespace lab (the lab
# needs root and the packages of .ci/run; outside CI it skips with a reason).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked
cargo test --locked -- --test-threads=4
