//! A mesh grown from one roster file: every node's `wgp2p export`,
//! concatenated, is synced on every node; the full mesh pings, and a second
//! sync after a node leaves the roster removes it everywhere.

mod lab;

use std::thread;
use std::time::Duration;

use lab::{Host, Lab};

const PING_TIMEOUT: Duration = Duration::from_secs(5);
const HOSTS: [&str; 6] = [
    "defiant",
    "enterprise",
    "voyager",
    "reliant",
    "excelsior",
    "intrepid",
];

fn vpn_ip(i: usize) -> String {
    format!("10.15.0.{}", i + 1)
}

fn sync(host: &Host, roster: &str) -> String {
    host.write_file("/etc/wireguard/roster.toml", roster);
    host.wgp2p_ok(&["sync", "/etc/wireguard/roster.toml"])
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn six_hosts_from_one_roster() {
    let lab = Lab::new();
    let hosts: Vec<Host> = HOSTS.iter().map(|name| lab.public_host(name)).collect();
    let mut roster = String::new();
    for (i, host) in hosts.iter().enumerate() {
        host.install(&format!("{}/24", vpn_ip(i)), &host.endpoint(51820));
        roster.push_str(&host.wgp2p_ok(&["export"]));
    }
    assert_eq!(roster.matches("[[peer]]").count(), 6, "{roster}");

    hosts[0].write_file("/etc/wireguard/roster.toml", &roster);
    let dry = hosts[0].wgp2p_ok(&["sync", "--dry-run", "/etc/wireguard/roster.toml"]);
    eprintln!("defiant$ wgp2p sync --dry-run roster.toml\n{dry}");
    assert_eq!(dry.matches("+ add ").count(), 5, "{dry}");
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    assert!(
        !hosts[0]
            .read_file("/etc/wireguard/wg0.conf")
            .contains("[Peer]")
    );

    for host in &hosts {
        let applied = sync(host, &roster);
        assert!(
            applied.contains("applied 5 changes"),
            "{}: {applied}",
            host.name()
        );
    }
    let count = hosts.len();
    thread::scope(|s| {
        for (i, from) in hosts.iter().enumerate() {
            s.spawn(move || {
                for j in (0..count).filter(|j| *j != i) {
                    assert!(
                        from.ping(&vpn_ip(j), PING_TIMEOUT),
                        "{} cannot ping {}",
                        from.name(),
                        vpn_ip(j)
                    );
                }
            });
        }
    });
    let again = sync(&hosts[1], &roster);
    assert!(again.contains("nothing to change"), "{again}");

    // intrepid leaves the roster: the next sync removes it everywhere else.
    let without: String = roster
        .split("[[peer]]")
        .filter(|entry| !entry.is_empty() && !entry.contains("\"intrepid\""))
        .map(|entry| format!("[[peer]]{entry}"))
        .collect();
    for host in &hosts[..5] {
        let out = sync(host, &without);
        assert!(out.contains("- remove intrepid"), "{}: {out}", host.name());
    }
    assert!(!hosts[0].ping(&vpn_ip(5), Duration::from_secs(1)));
    assert!(hosts[0].ping(&vpn_ip(4), PING_TIMEOUT));
}
