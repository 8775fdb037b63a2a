//! The route differential: random sequences of `wgp2p` commands (and hand
//! edits of the config followed by `wgp2p repair`) on one lab host, then
//! the interface's routes and the policy rules compared with what
//! `wg-quick down` + `up` of the same file makes. wg-quick is the oracle:
//! live must equal restart. Shared by tests/routes.rs (wireguard-go) and
//! tests/kernel.rs (the kernel module, in the VM).

use std::fmt::Write as _;

use super::{Host, wg_keypair};

/// Every route through `iface` (all tables, both families, without the
/// kernel's own `proto kernel` routes, which every `up` makes alike) and
/// every policy rule but the three defaults, sorted.
#[must_use]
pub fn routes_of(host: &Host, iface: &str) -> String {
    let script = format!(
        "for f in -4 -6; do ip $f route show table all | grep -w 'dev {iface}' | grep -v -e ' proto kernel ' -e '^local ' -e '^multicast ' -e '^broadcast ' ; ip $f rule show | grep -v -e '^0:' -e '^3276[67]:'; done | sort"
    );
    host.sh(&script, &[]).all_output()
}

/// `wg-quick down; up` of the host's config.
///
/// # Panics
///
/// When either fails.
pub fn restart(host: &Host, iface: &str) {
    host.run(&["wg-quick", "down", iface])
        .expect_ok("wg-quick down");
    host.run(&["wg-quick", "up", iface])
        .expect_ok("wg-quick up");
}

/// A small deterministic generator (xorshift64*), so a failing sequence
/// is replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap_or(0)
    }
    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Networks a peer may route: inside the VPN network (covered by the
/// address's route), LANs of every width that nest and overlap, IPv6 ULA,
/// default routes (an exit node: fwmark table and rules), and the shapes
/// wg normalises (host bits set, the same network twice).
const NETS: &[&str] = &[
    "10.15.0.77/32",
    "192.168.1.0/24",
    "192.168.1.9/24",
    "192.168.1.5/32",
    "192.168.2.0/24",
    "192.168.0.0/16",
    "172.16.5.0/24",
    "172.16.5.128/25",
    "10.20.0.0/16",
    "10.20.3.4/32",
    "fd00:1::/64",
    "fd00:1::5/128",
    "fd00:2::9/64",
    "fd00::/16",
    "0.0.0.0/0",
    "::/0",
];

const TABLES: &[&str] = &["", "auto", "1234", "off", "main"];

/// One peer slot of the differential: a name, a key, an address.
struct Slot {
    name: String,
    key: String,
    ip: String,
}

/// Run `sequences` random sequences of `steps` commands each on `host`
/// (installed, interface `wg0` up, VPN address 10.15.0.1/24), comparing
/// routes and rules with `wg-quick down; up` after each. Returns one text
/// per sequence that differed (its seed, commands and both states).
#[must_use]
pub fn route_differential(host: &Host, seed: u64, sequences: usize, steps: usize) -> Vec<String> {
    let conf_path = "/etc/wireguard/wg0.conf";
    let slots: Vec<Slot> = (0..6)
        .map(|i| Slot {
            name: format!("p{i}"),
            key: wg_keypair().1,
            ip: format!("10.15.0.{}", 10 + i),
        })
        .collect();
    let mut failures = Vec::new();
    for sequence in 0..sequences {
        let seed = seed.wrapping_add(sequence as u64).max(1);
        let mut rng = Rng(seed);
        let mut log = String::new();
        for _ in 0..steps {
            let slot = &slots[rng.below(slots.len())];
            let (what, out) = match rng.below(21) {
                0..=6 => {
                    let mut args = vec![
                        "add-peer".to_string(),
                        slot.name.clone(),
                        format!("198.51.100.{}:51820", 10 + rng.below(50)),
                        slot.key.clone(),
                        slot.ip.clone(),
                    ];
                    let n = rng.below(4);
                    if n > 0 {
                        let nets: Vec<&str> = (0..n).map(|_| rng.pick(NETS)).collect();
                        args.push("--allowed-ips".into());
                        args.push(nets.join(","));
                    }
                    let words: Vec<&str> = args.iter().map(String::as_str).collect();
                    (args.join(" "), host.wgp2p(&words))
                }
                7..=11 => (
                    format!("remove-peer {}", slot.name),
                    host.wgp2p(&["remove-peer", &slot.name]),
                ),
                12 | 13 => {
                    let other = &slots[rng.below(slots.len())];
                    let args = if rng.below(2) == 0 {
                        vec!["relay", slot.name.as_str(), "via", other.name.as_str()]
                    } else {
                        vec!["relay", slot.name.as_str(), "direct"]
                    };
                    (args.join(" "), host.wgp2p(&args))
                }
                14..=16 => {
                    // By hand: one more AllowedIPs line in a peer, then repair.
                    let conf = host.read_file(conf_path);
                    let net = rng.pick(NETS);
                    let sections = conf.matches("[Peer]").count();
                    if sections == 0 {
                        continue;
                    }
                    let at = rng.below(sections);
                    let mut out = String::new();
                    let mut seen = 0;
                    for line in conf.lines() {
                        out.push_str(line);
                        out.push('\n');
                        if line.trim() == "[Peer]" {
                            if seen == at {
                                let _ = writeln!(out, "AllowedIPs = {net}");
                            }
                            seen += 1;
                        }
                    }
                    host.write_file(conf_path, &out);
                    (
                        format!("edit: AllowedIPs = {net} in [Peer] #{at}; repair"),
                        host.wgp2p(&["repair"]),
                    )
                }
                17 => {
                    // A roster of some slots, with roles: a subnet router
                    // with private networks, an exit node with a default
                    // route, plain members; `sync --adopt` takes over the
                    // peers added by hand.
                    let mut roster = String::new();
                    let mut exit_taken = false;
                    let chosen: Vec<&Slot> = slots.iter().filter(|_| rng.below(2) == 0).collect();
                    for slot in chosen {
                        let _ = write!(
                            roster,
                            "[[peer]]\nname = \"{}\"\nendpoint = \"198.51.100.{}:51820\"\npublic_key = \"{}\"\naddress = \"{}\"\n",
                            slot.name,
                            10 + rng.below(50),
                            slot.key,
                            slot.ip
                        );
                        match rng.below(3) {
                            0 => {
                                let net = rng.pick(&[
                                    "192.168.1.0/24",
                                    "172.16.5.0/24",
                                    "fd00:1::/64",
                                    "10.20.0.0/16",
                                ]);
                                let _ = write!(
                                    roster,
                                    "allowed_ips = [\"{net}\"]\nsubnet_router = true\n"
                                );
                            }
                            1 if !exit_taken => {
                                exit_taken = true;
                                let net = rng.pick(&["0.0.0.0/0", "::/0"]);
                                let _ =
                                    write!(roster, "allowed_ips = [\"{net}\"]\nexit_node = true\n");
                            }
                            _ => {}
                        }
                    }
                    host.write_file("/run/wgp2p-roster.toml", &roster);
                    (
                        format!("sync roster:\n{roster}"),
                        host.wgp2p(&["sync", "/run/wgp2p-roster.toml", "--adopt"]),
                    )
                }
                _ => {
                    // By hand: another Table, then repair.
                    let table = rng.pick(TABLES);
                    let conf = host.read_file(conf_path);
                    let mut out = String::new();
                    for line in conf.lines() {
                        if line.trim_start().to_ascii_lowercase().starts_with("table") {
                            continue;
                        }
                        out.push_str(line);
                        out.push('\n');
                        if line.trim() == "[Interface]" && !table.is_empty() {
                            let _ = writeln!(out, "Table = {table}");
                        }
                    }
                    host.write_file(conf_path, &out);
                    (
                        format!("edit: Table = {table:?}; repair"),
                        host.wgp2p(&["repair"]),
                    )
                }
            };
            let _ = writeln!(
                log,
                "$ {what}\n  -> {}",
                out.all_output().trim().replace('\n', "\n     ")
            );
        }
        // Live state converges: a repair, then nothing left to repair
        // (values wg normalises are no drift).
        let first = host.wgp2p(&["repair"]).all_output();
        let second = host.wgp2p(&["repair"]).all_output();
        if !second.contains("nothing to repair") {
            failures.push(format!(
                "sequence {sequence} (seed {seed}): repair does not converge:\n{log}\nrepair:\n{first}\nrepair again:\n{second}"
            ));
        }
        let live = routes_of(host, "wg0");
        if std::env::var_os("WGP2P_ROUTE_VERBOSE").is_some() {
            eprintln!("sequence {sequence} (seed {seed}):\n{log}routes:\n{live}");
        }
        let conf = host.read_file(conf_path);
        let restarted = host.run(&["wg-quick", "down", "wg0"]);
        let up = host.run(&["wg-quick", "up", "wg0"]);
        let after = routes_of(host, "wg0");
        let equal = restarted.success() && up.success() && live == after;
        eprintln!(
            "route differential: sequence {sequence}: {} routes and rules, {}",
            live.lines().count(),
            if equal {
                "equal after wg-quick down; up"
            } else {
                "DIFFERENT after wg-quick down; up"
            }
        );
        if !equal {
            failures.push(format!(
                "sequence {sequence} (seed {seed}):\n{log}\nconfig:\n{conf}\nlive:\n{live}\nafter wg-quick down; up:\n{after}\n{}",
                up.all_output()
            ));
            if !up.success() {
                // Start clean from the config wg-quick accepts no more.
                break;
            }
        }
    }
    failures
}
