#!/usr/bin/env bash
# The whole test suite. Run as root from the repository:
#   scripts/test.sh                      (as root)
#   sudo -E env "PATH=$PATH" scripts/test.sh   (as a user with sudo)
# 1. As root, installs the packages the tests need (scripts/packages.sh).
# 2. `cargo test`: unit, CLI and hardening tests. Tests that need root,
#    network namespaces and the lab packages are marked
#    #[ignore = "lab: needs root, network namespaces and the lab packages"]
#    (tests that need root only: #[ignore = "root: …"]) and counted as
#    ignored here.
# 3. When this machine can run them (root, /dev/net/tun, the lab's tools),
#    `cargo test -- --ignored` runs exactly those. Otherwise it says
#    how many did not run and why; with CI set to any non-empty value that
#    is a failure: CI never passes with a test not run.
# 4. The kernel-backend tests (tests/kernel.rs, ignored with "kernel: runs
#    inside the VM") through scripts/kernel-test.sh, which boots a kernel
#    with the WireGuard module in a VM (it installs QEMU and a kernel image
#    when missing). WGP2P_KERNEL_VM=0 leaves them to a separate run of that
#    script (.ci/run times it as a stage of its own).
# 5. The systemd tests (tests/systemd.rs, tests/readme.rs, ignored with
#    "systemd: runs in the containers…") through scripts/systemd-test.sh,
#    which boots containers with systemd as PID 1. WGP2P_SYSTEMD=0 leaves
#    them to a separate run of that script (.ci/run times it as a stage).
# Extra arguments go to both `cargo test` runs (e.g. `--test mesh`).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/packages.sh
. scripts/packages.sh

if [ "$(id -u)" -eq 0 ]; then
  ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
fi

# Why the lab tests cannot run here (empty when they can). Mirrors
# check_requirements() in tests/lab/mod.rs.
lab_blocker() {
  local tools=(ip wg wg-quick wireguard-go ping iptables nsenter unshare sysctl turnserver
    turnutils_stunclient mount)
  local missing=() t
  if [ "$(id -u)" -ne 0 ]; then
    echo "need root"
    return
  fi
  [ -e /dev/net/tun ] || { echo "/dev/net/tun is missing"; return; }
  for t in "${tools[@]}"; do
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$t" >/dev/null ||
      missing+=("$t")
  done
  [ "${#missing[@]}" -eq 0 ] || echo "missing tools: ${missing[*]}"
}

# sum_results LOG FIELD: the sum of FIELD (passed, failed, ignored) over the
# "test result:" lines of a cargo test log.
sum_results() {
  grep "^test result:" "$1" | grep -o "[0-9]* $2" | awk '{ n += $1 } END { print n + 0 }'
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Under sudo, download and build as the user (scripts/packages.sh): the
# test runs below, as root, then find everything built.
as_invoking_user cargo build --locked
as_invoking_user cargo test --locked --no-run "$@"
start=$SECONDS
cargo test --locked "$@" -- --test-threads=4 2>&1 | tee "$log"
echo "== wall time of the tests: $((SECONDS - start))s"
passed=$(sum_results "$log" passed)
ignored=$(sum_results "$log" ignored)
# tests/kernel.rs runs only inside the VM of scripts/kernel-test.sh (step 4).
in_vm=$(grep -c "ignored, kernel: runs inside the VM" "$log" || true)
ignored=$((ignored - in_vm))
# tests/systemd.rs and tests/readme.rs run in scripts/systemd-test.sh's
# containers (step 5).
in_ct=$(grep -c "ignored, systemd: runs in the containers" "$log" || true)
ignored=$((ignored - in_ct))

not_run=0
blocker=$(lab_blocker)
if [ "$ignored" -eq 0 ]; then
  echo "== $passed tests passed, none ignored"
elif [ -z "$blocker" ]; then
  start=$SECONDS
  cargo test --locked "$@" -- --ignored --skip kernel_vm_ --skip systemd_ct_ --test-threads=4 2>&1 | tee "$log"
  echo "== wall time of the lab (ignored) tests: $((SECONDS - start))s"
  ran=$(sum_results "$log" passed)
  echo "== $passed tests passed, then $ran of the $ignored ignored (root and lab) tests passed"
  if [ "$ran" -ne "$ignored" ]; then
    echo "== $((ignored - ran)) ignored tests did not pass" >&2
    not_run=$((ignored - ran))
  fi
else
  echo "== $passed tests passed; $ignored ignored tests not run: need root, network namespaces and the lab packages ($blocker)"
  not_run=$ignored
fi

if [ "$in_vm" -gt 0 ]; then
  if [ "${WGP2P_KERNEL_VM:-1}" = 0 ]; then
    echo "== $in_vm kernel tests left to scripts/kernel-test.sh (WGP2P_KERNEL_VM=0)"
  elif [ -z "$blocker" ]; then
    start=$SECONDS
    ./scripts/kernel-test.sh
    echo "== wall time of the kernel VM tests: $((SECONDS - start))s"
    echo "== $in_vm kernel tests passed in the VM (scripts/kernel-test.sh)"
  else
    echo "== $in_vm kernel tests not run: they need root and a VM (scripts/kernel-test.sh)"
    not_run=$((not_run + in_vm))
  fi
fi

if [ "$in_ct" -gt 0 ]; then
  if [ "${WGP2P_SYSTEMD:-1}" = 0 ]; then
    echo "== $in_ct systemd tests left to scripts/systemd-test.sh (WGP2P_SYSTEMD=0)"
  elif [ -z "$blocker" ]; then
    start=$SECONDS
    ./scripts/systemd-test.sh
    echo "== wall time of the systemd tests: $((SECONDS - start))s"
    echo "== $in_ct systemd tests passed in containers (scripts/systemd-test.sh)"
  else
    echo "== $in_ct systemd tests not run: they need root and systemd-nspawn (scripts/systemd-test.sh)"
    not_run=$((not_run + in_ct))
  fi
fi

if [ "$not_run" -gt 0 ] && [ -n "${CI:-}" ]; then
  echo "== CI is set: every test must run, failing" >&2
  exit 1
fi
