#!/usr/bin/env bash
# The kernel backend, proven: boots a Debian kernel that has the WireGuard
# module in a VM (virtme-ng over QEMU, software emulation) with this
# machine's files as its root, and runs the lab scenario of tests/kernel.rs
# on kernel WireGuard devices there. Needs root. Installs what it needs when
# missing: qemu-system-x86, busybox-static, linux-image-amd64 (only adds
# files under /boot and /lib/modules; the running kernel is untouched) and
# python3-venv with apt-get, virtme-ng into a venv at /opt/virtme-ng.
# Exits non-zero when the scenario fails or the VM did not run it.
# Environment: KERNEL=/boot/vmlinuz-VERSION picks the kernel (default: the
# newest one under /boot that ships wireguard.ko); VM_TIMEOUT (seconds,
# default 900) bounds boot plus scenario:
# a hung VM fails instead of hanging CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
ensure_packages qemu-system-x86 busybox-static linux-image-amd64 python3-venv
virtme_ng=virtme-ng==1.42
vng=/opt/virtme-ng/bin/vng
# vng runs virtme-run from PATH.
export PATH=/opt/virtme-ng/bin:$PATH
if [ ! -x "$vng" ]; then
  echo "kernel-test: installing $virtme_ng into /opt/virtme-ng"
  /usr/bin/python3 -m venv /opt/virtme-ng
  /opt/virtme-ng/bin/pip install -q "$virtme_ng"
fi

# The newest installed kernel that has the module, unless KERNEL says.
if [ -z "${KERNEL:-}" ]; then
  for image in $(ls -v /boot/vmlinuz-* 2>/dev/null); do
    version=${image#/boot/vmlinuz-}
    if ls /lib/modules/"$version"/kernel/drivers/net/wireguard/wireguard.ko* >/dev/null 2>&1; then
      KERNEL=$image
    fi
  done
fi
if [ -z "${KERNEL:-}" ]; then
  echo "kernel-test: no kernel under /boot ships wireguard.ko: expected linux-image-amd64" >&2
  exit 1
fi

# Build the scenario on the host; the VM sees the same files.
test_bin=$(cargo test --locked --no-run --test kernel --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "kernel" and m.get("executable"):
        print(m["executable"])')
if [ ! -x "$test_bin" ]; then
  echo "kernel-test: cargo did not report the tests/kernel.rs executable" >&2
  exit 1
fi

# The scenarios the VM must run: every kernel_vm_ test of tests/kernel.rs.
expected=$("$test_bin" --list --include-ignored kernel_vm_ | grep -c ': test$' || true)
if [ "$expected" -eq 0 ]; then
  echo "kernel-test: tests/kernel.rs has no kernel_vm_ test" >&2
  exit 1
fi

# Drivers for the emulated hardware, which udev would load at boot and the
# scenario never uses: each costs seconds under software emulation.
unused_modules=kvm,kvm_amd,kvm_intel,ccp,sr_mod,cdrom,sg,ahci,lpc_ich,i2c_i801,\
iTCO_wdt,iTCO_vendor_support,intel_pmc_bxt,i6300esb,psmouse,pcspkr,serio_raw,\
evdev,button,qemu_fw_cfg,aesni_intel,ghash_clmulni_intel,crc32_pclmul,\
crct10dif_pclmul,crc32c_intel,sha1_ssse3,sha256_ssse3,sha512_ssse3

out=$PWD/target/kernel-test
rm -rf "$out"
mkdir -p "$out"
echo "kernel-test: booting $KERNEL (software emulation), scenario log in $out/log"
# One vCPU: the scenario runs one command at a time, and a second emulated
# CPU made every process start slower (BENCHMARKS.md).
started=$(date +%s)
set +e
timeout "${VM_TIMEOUT:-900}" "$vng" --disable-kvm --cpus 1 --memory 1G --rwdir "$out" \
  --append "modprobe.blacklist=$unused_modules" \
  --run "$KERNEL" --exec "sh $PWD/tests/kernel/in-vm.sh $test_bin $out" \
  </dev/null >"$out/vm-console" 2>&1
vm_status=$?
set -e
echo "kernel-test: VM exited with $vm_status after $(($(date +%s) - started)) s"

if [ ! -s "$out/status" ]; then
  [ "$vm_status" != 124 ] || echo "kernel-test: the VM ran out of time (VM_TIMEOUT)" >&2
  [ ! -s "$out/log" ] || { echo "kernel-test: the scenario's log so far:" >&2; tail -n 40 "$out/log" >&2; }
  echo "kernel-test: FAILED: the VM did not finish the scenario; its console:" >&2
  tail -n 40 "$out/vm-console" >&2
  exit 1
fi
cat "$out/log"
status=$(cat "$out/status")
if [ "$status" != 0 ]; then
  echo "kernel-test: FAILED: the scenario exited with $status" >&2
  exit 1
fi
# Exit status 0 with fewer tests run (a renamed test, a filter that matches
# nothing) is not a pass.
passed=$(grep -o '^test result: ok\. [0-9]* passed' "$out/log" | grep -o '[0-9]*' || true)
if [ "${passed:-0}" != "$expected" ]; then
  echo "kernel-test: FAILED: ${passed:-0} of the $expected kernel_vm_ tests passed in the VM" >&2
  exit 1
fi
echo "kernel-test: $passed of $expected kernel_vm_ tests passed on $(head -n 1 "$out/log")"
