#!/bin/sh
# Runs inside the VM that scripts/kernel-test.sh boots, as root, with the
# host's files as the root file system. $1: the tests/kernel.rs executable;
# $2: the directory shared with the host, where the log and the exit status
# of the scenario go. No status file means the scenario never ran.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
test_bin=$1
out=$2
{
  echo "kernel $(uname -r), $(nproc) CPUs"
  # The lab needs /dev/net/tun even when no wireguard-go runs. Every command
  # is slow under emulation: the lab waits up to 120 s for each.
  modprobe wireguard && modprobe tun &&
    WGP2P_KERNEL_VM=1 WGP2P_LAB_TIMEOUT_SECS=120 CI=true RUST_BACKTRACE=1 "$test_bin" \
      --include-ignored kernel_vm_ --test-threads=1 --nocapture
} >"$out/log" 2>&1
echo $? >"$out/status"
