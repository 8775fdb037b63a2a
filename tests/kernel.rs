//! The kernel backend, on a real kernel: the lab scenarios with WireGuard
//! devices made by the kernel module (netlink), not by wireguard-go.
//!
//! The machines the project is developed on have no WireGuard module, so
//! this binary runs inside a VM that boots a kernel which has one:
//! `scripts/kernel-test.sh` builds it, boots the VM, loads the module and
//! runs it there with `WGP2P_KERNEL_VM=1`. Anywhere else it is ignored
//! (cargo counts it), and run by hand outside the VM it fails.

use wgp2p_lab as lab;

use std::time::{Duration, Instant};

use lab::{Host, Lab, exchange};
use serde_json::Value;

const PORT: u16 = 51820;
/// A ping that must work, first handshake included (the VM is emulated,
/// so this is generous).
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a ping that must NOT work is given to prove it.
const NO_PING_WINDOW: Duration = Duration::from_secs(3);

#[test]
#[ignore = "kernel: runs inside the VM, see scripts/kernel-test.sh"]
#[allow(clippy::too_many_lines, reason = "one VM scenario, read top to bottom")]
fn kernel_vm_mesh_scenario() {
    assert_eq!(
        std::env::var("WGP2P_KERNEL_VM").as_deref(),
        Ok("1"),
        "this scenario runs inside the VM that scripts/kernel-test.sh boots"
    );
    assert!(
        lab::kernel_wireguard(),
        "the WireGuard kernel module is not loaded (/sys/module/wireguard)"
    );
    // Progress with the time since the start, so a slow VM shows where.
    let clock = Instant::now();
    let step = |what: &str| eprintln!("[{:5.1} s] {what}", clock.elapsed().as_secs_f64());
    step("lab");
    let lab = Lab::new();
    let alpha = lab.public_host("alpha");
    let bravo = lab.public_host("bravo");
    let charlie = lab.public_host("charlie");

    // 1. install makes a kernel device, and no wireguard-go runs.
    step("1. install");
    let a_line = alpha.install("10.15.0.1/24", &alpha.endpoint(PORT));
    let b_line = bravo.install("10.15.0.2/24", &bravo.endpoint(PORT));
    for host in [&alpha, &bravo] {
        assert_kernel_device(host);
    }

    // 2. The pasted lines make a mesh that pings.
    step("2. mesh and ping");
    exchange([&alpha, &bravo], &[a_line.clone(), b_line.clone()]);
    assert_pings(&alpha, "10.15.0.2");
    assert_pings(&bravo, "10.15.0.1");

    // 3. status --json: backend kernel, a recent handshake, healthy.
    step("3. status --json");
    let json = status_json(&alpha);
    eprintln!("alpha$ wgp2p status --json\n{json:#}");
    assert_eq!(json["backend"], "kernel", "{json:#}");
    assert_eq!(json["state"], "up", "{json:#}");
    let bravo_status = peer_status(&json, "bravo");
    assert!(
        bravo_status["latest_handshake_secs_ago"].is_u64(),
        "a handshake with bravo:\n{json:#}"
    );
    assert_eq!(bravo_status["health"], "ok", "{json:#}");

    // 4. add-peer is live: same device, one more peer in `wg show`.
    step("4. add-peer");
    let c_line = charlie.install("10.15.0.3/24", &charlie.endpoint(PORT));
    assert_kernel_device(&charlie);
    let a_index = ifindex(&alpha);
    let peers_before = wg_show(&alpha, "peers");
    assert!(
        !peers_before.contains(c_line.public_key()),
        "{peers_before}"
    );
    exchange([&alpha, &bravo, &charlie], std::slice::from_ref(&c_line));
    for line in [&a_line, &b_line] {
        charlie.add_peer(line);
    }
    assert_eq!(ifindex(&alpha), a_index, "add-peer recreated alpha's wg0");
    let peers_after = wg_show(&alpha, "peers");
    eprintln!(
        "alpha$ wg show wg0 peers (ifindex {a_index} kept)\n{peers_before}-- after add-peer charlie:\n{peers_after}"
    );
    assert!(peers_after.contains(c_line.public_key()), "{peers_after}");
    assert_pings(&alpha, "10.15.0.3");
    assert_pings(&charlie, "10.15.0.2");
    assert_pings(&bravo, "10.15.0.3");

    // 5. relay-enable on alpha, then bravo and charlie reach each other
    //    through it: live on both ends, and the packets cross alpha.
    step("5. relay-enable and relay");
    let enabled = alpha.wgp2p_ok(&["relay-enable"]);
    eprintln!("alpha$ wgp2p relay-enable\n{enabled}");
    assert!(enabled.contains("relaying enabled"), "{enabled}");
    assert_eq!(
        alpha
            .read_file("/proc/sys/net/ipv4/conf/wg0/forwarding")
            .trim(),
        "1"
    );
    let c_index = ifindex(&charlie);
    let c_routes_before = wg_show(&charlie, "allowed-ips");
    let forwarded_before = forwarded_packets(&alpha);
    charlie.wgp2p_ok(&["relay", "bravo", "via", "alpha"]);
    bravo.wgp2p_ok(&["relay", "charlie", "via", "alpha"]);
    let c_routes_after = wg_show(&charlie, "allowed-ips");
    eprintln!(
        "charlie$ wg show wg0 allowed-ips (ifindex {c_index})\n{c_routes_before}-- after relay bravo via alpha:\n{c_routes_after}"
    );
    assert_eq!(ifindex(&charlie), c_index, "relay recreated charlie's wg0");
    assert_eq!(
        allowed_ips_of(&c_routes_after, a_line.public_key()),
        ["10.15.0.1/32", "10.15.0.2/32"],
        "bravo's address moved to alpha on charlie:\n{c_routes_after}"
    );
    assert!(
        !c_routes_after.contains(b_line.public_key()),
        "bravo, now relayed, is off charlie's device:\n{c_routes_after}"
    );
    assert_pings(&charlie, "10.15.0.2");
    assert_pings(&bravo, "10.15.0.3");
    let forwarded_after = forwarded_packets(&alpha);
    assert!(
        forwarded_after > forwarded_before,
        "relayed traffic must cross alpha ({forwarded_before} -> {forwarded_after} packets)"
    );
    eprintln!("alpha: wg0 -> wg0 packets forwarded: {forwarded_before} -> {forwarded_after}");

    // 6. doctor on a healthy node finds nothing.
    step("6. doctor");
    let doctor = alpha.wgp2p(&["doctor"]);
    eprintln!("alpha$ wgp2p doctor\n{}", doctor.all_output());
    assert!(doctor.success(), "doctor on a healthy node:\n{doctor}");
    assert!(
        doctor.stdout.contains("no problem found"),
        "{}",
        doctor.stdout
    );

    // 7. remove-peer is live: same device, the peer gone from `wg show`.
    step("7. remove-peer");
    alpha.wgp2p_ok(&["remove-peer", "charlie"]);
    assert_eq!(
        ifindex(&alpha),
        a_index,
        "remove-peer recreated alpha's wg0"
    );
    let peers = wg_show(&alpha, "peers");
    eprintln!(
        "alpha$ wg show wg0 peers (ifindex {a_index} kept)\n-- after remove-peer charlie:\n{peers}"
    );
    assert!(!peers.contains(c_line.public_key()), "{peers}");
    assert!(peers.contains(b_line.public_key()), "{peers}");
    assert!(
        !alpha.ping("10.15.0.3", NO_PING_WINDOW),
        "charlie still reachable from alpha after remove-peer"
    );
    assert_pings(&alpha, "10.15.0.2");

    // 8. stop removes the device, start brings the kernel device back.
    step("8. stop and start");
    bravo.wgp2p_ok(&["stop"]);
    assert!(
        !bravo.run(&["ip", "link", "show", "wg0"]).success(),
        "wg0 still exists after stop"
    );
    bravo.wgp2p_ok(&["start"]);
    assert_kernel_device(&bravo);
    assert_pings(&bravo, "10.15.0.1");
    assert_pings(&alpha, "10.15.0.2");
    let json = status_json(&bravo);
    assert_eq!(json["backend"], "kernel", "{json:#}");
    let alpha_status = peer_status(&json, "alpha");
    assert!(
        alpha_status["latest_handshake_secs_ago"].is_u64(),
        "a handshake with alpha after start:\n{json:#}"
    );
    eprintln!(
        "bravo$ wgp2p status --json after stop/start: backend {}, alpha's handshake {} s ago",
        json["backend"], alpha_status["latest_handshake_secs_ago"]
    );
    step("done");
}

/// The route differential of tests/routes.rs on kernel WireGuard: random
/// command sequences, then routes and rules compared with
/// `wg-quick down; up` (fewer sequences: the VM is emulated).
#[test]
#[ignore = "kernel: runs inside the VM, see scripts/kernel-test.sh"]
fn kernel_vm_route_differential() {
    assert_eq!(
        std::env::var("WGP2P_KERNEL_VM").as_deref(),
        Ok("1"),
        "this scenario runs inside the VM that scripts/kernel-test.sh boots"
    );
    let lab = Lab::new();
    let host = lab.public_host("alpha");
    host.install("10.15.0.1/24", &host.endpoint(PORT));
    assert_kernel_device(&host);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    let sequences = 3;
    eprintln!("kernel route differential: {sequences} sequences from seed {seed}");
    let failures = lab::route_differential(&host, seed, sequences, 6);
    assert!(
        failures.is_empty(),
        "{} of {sequences} sequences differ from wg-quick down; up:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// wg0 on `host` is a kernel `wireguard` link, and no wireguard-go runs
/// anywhere in the VM.
fn assert_kernel_device(host: &Host) {
    let link = host
        .run(&["ip", "-d", "link", "show", "wg0"])
        .expect_ok("ip -d link show wg0");
    assert!(
        link.lines()
            .any(|l| l.trim_start().starts_with("wireguard")),
        "{}: wg0 is not a kernel wireguard link:\n{link}",
        host.name()
    );
    let daemons = wireguard_go_pids();
    assert!(daemons.is_empty(), "wireguard-go runs: {daemons:?}");
    let kind = link
        .lines()
        .find(|l| l.trim_start().starts_with("wireguard"));
    eprintln!(
        "{}$ ip -d link show wg0: ifindex {}, {:?}; wireguard-go processes: 0",
        host.name(),
        ifindex(host),
        kind.unwrap_or_default().trim()
    );
    assert!(
        !host
            .run(&["test", "-e", "/run/wireguard/wg0.sock"])
            .success(),
        "{}: a userspace socket exists",
        host.name()
    );
}

/// Every wireguard-go process on the machine (the VM runs nothing else).
fn wireguard_go_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        panic!("cannot read /proc");
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "wireguard-go")
        })
        .collect()
}

/// The interface index of wg0: a device that was deleted and made again
/// gets a new one.
fn ifindex(host: &Host) -> u32 {
    let out = host
        .run(&["ip", "-o", "link", "show", "wg0"])
        .expect_ok("ip -o link show wg0");
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in: {out}"))
}

/// `wg show wg0 WHAT`.
fn wg_show(host: &Host, what: &str) -> String {
    host.run(&["wg", "show", "wg0", what])
        .expect_ok(&format!("wg show wg0 {what} on {}", host.name()))
}

/// The allowed IPs of `key` in `wg show wg0 allowed-ips` output, sorted.
fn allowed_ips_of(table: &str, key: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no peer {key} in:\n{table}"));
    let mut nets: Vec<String> = line
        .split_whitespace()
        .skip(1)
        .filter(|w| *w != "(none)")
        .map(str::to_string)
        .collect();
    nets.sort();
    nets
}

/// Packets the relay forwarded from wg0 to wg0.
fn forwarded_packets(relay: &Host) -> u64 {
    let out = relay.run(&["iptables", "-w", "-nvx", "-L", "FORWARD"]);
    out.expect_ok("iptables -L FORWARD")
        .lines()
        .filter(|l| l.contains("ACCEPT") && l.matches("wg0").count() == 2)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn assert_pings(from: &Host, ip: &str) {
    if from.ping(ip, PING_TIMEOUT) {
        return;
    }
    let wg = from.run(&["wg", "show"]);
    panic!("{} cannot ping {ip}:\n{wg}", from.name());
}

fn status_json(host: &Host) -> Value {
    let stdout = host.wgp2p_ok(&["status", "--json"]);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json on {} ({e}):\n{stdout}", host.name()))
}

fn peer_status<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("status --json has no peer named {name}:\n{json:#}"))
}
