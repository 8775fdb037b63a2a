//! A mesh grown from one roster file: every node's `wgp2p export`,
//! concatenated, is synced on every node. The full mesh pings; a phone
//! provisioned on one node survives every sync; a renamed host and two
//! hosts that swap addresses propagate with traffic flowing; a node leaving
//! the roster is removed everywhere; hostile rosters (an extra network or
//! an address over an endpoint, a repeated key, an altered own entry) are
//! refused on every node with its files and live device unchanged.

use wgp2p_lab as lab;

use std::thread;
use std::time::Duration;

use lab::{Host, Lab, add_peer_lines, wg_keypair};

const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Pings sent every 50 ms while a sync runs.
const PINGS: u32 = 40;
const HOSTS: [&str; 6] = [
    "defiant",
    "enterprise",
    "voyager",
    "reliant",
    "excelsior",
    "intrepid",
];
const ROSTER: &str = "/etc/wireguard/roster.toml";
const PHONE_IP: &str = "10.15.0.50";

fn vpn_ip(i: usize) -> String {
    format!("10.15.0.{}", i + 1)
}

fn sync(host: &Host, roster: &str) -> String {
    host.write_file(ROSTER, roster);
    host.wgp2p_ok(&["sync", ROSTER])
}

/// Every file of the config dir (but the roster) with its hash, and the
/// live device's allowed IPs and endpoints, in a stable order.
fn state(host: &Host) -> String {
    host.sh(
        "cd /etc/wireguard && find . -type f ! -name roster.toml | sort | xargs sha256sum && wg show wg0 allowed-ips | sort && wg show wg0 endpoints | sort",
        &[],
    )
    .expect_ok("state")
}

/// `sync` refuses `roster` on `host` (exit 3, one line naming `needle`)
/// and leaves the files and the live device as they were.
#[track_caller]
fn refused(host: &Host, roster: &str, needle: &str) {
    host.write_file(ROSTER, roster);
    let before = state(host);
    let out = host.wgp2p(&["sync", ROSTER]);
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(3),
        "{}: expected a refusal:\n{out}",
        host.name()
    );
    assert!(out.stderr.contains(needle), "{}: {out}", host.name());
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert_eq!(state(host), before, "{}: state changed", host.name());
}

/// Every host pings every other at `ips` (same order as `hosts`).
fn full_mesh_pings(hosts: &[Host], ips: &[String]) {
    thread::scope(|s| {
        for (i, from) in hosts.iter().enumerate() {
            s.spawn(move || {
                for (j, ip) in ips.iter().enumerate().filter(|(j, _)| *j != i) {
                    assert!(
                        from.ping(ip, PING_TIMEOUT),
                        "{} cannot ping {} ({})",
                        from.name(),
                        hosts[j].name(),
                        ip
                    );
                }
            });
        }
    });
}

fn exports(hosts: &[Host]) -> String {
    hosts.iter().map(|h| h.wgp2p_ok(&["export"])).collect()
}

/// The roster entry of the host named `name`.
fn entry_of<'a>(roster: &'a str, name: &str) -> &'a str {
    let at = roster
        .find(&format!("name = \"{name}\""))
        .expect("entry in roster");
    let start = roster[..at].rfind("[[peer]]").expect("entry start");
    let end = roster[at..]
        .find("[[peer]]")
        .map_or(roster.len(), |e| at + e);
    &roster[start..end]
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
#[allow(
    clippy::too_many_lines,
    reason = "one lab scenario, read top to bottom"
)]
fn six_hosts_from_one_roster() {
    let lab = Lab::new();
    let hosts: Vec<Host> = HOSTS.iter().map(|name| lab.public_host(name)).collect();
    for (i, host) in hosts.iter().enumerate() {
        host.install(&format!("{}/24", vpn_ip(i)), &host.endpoint(51820));
    }
    let roster = exports(&hosts);
    assert_eq!(roster.matches("[[peer]]").count(), 6, "{roster}");

    // A phone provisioned on defiant: a plain wg-quick host with its conf.
    let phone = lab.public_host("phone");
    let out = hosts[0].wgp2p_ok(&[
        "provision-peer",
        "phone",
        &phone.endpoint(51820),
        &format!("{PHONE_IP}/24"),
    ]);
    let line = add_peer_lines(&out).remove(0);
    hosts[0].add_peer(&line);
    let conf = hosts[0].read_file("/etc/wireguard/provisioned-peers/phone.conf");
    phone
        .run(&["mkdir", "-p", "-m", "700", "/etc/wireguard"])
        .expect_ok("mkdir");
    phone.write_file("/etc/wireguard/wg0.conf", &conf);
    phone
        .run(&["wg-quick", "up", "wg0"])
        .expect_ok("wg-quick up on the phone");
    assert!(phone.ping(&vpn_ip(0), PING_TIMEOUT), "phone before sync");

    hosts[0].write_file(ROSTER, &roster);
    let dry = hosts[0].wgp2p_ok(&["sync", "--dry-run", ROSTER]);
    eprintln!("defiant$ wgp2p sync --dry-run roster.toml\n{dry}");
    assert_eq!(dry.matches("+ add ").count(), 5, "{dry}");
    assert!(!dry.contains("phone"), "{dry}");
    assert!(dry.contains("dry run: nothing changed"), "{dry}");
    assert_eq!(
        hosts[0]
            .read_file("/etc/wireguard/wg0.conf")
            .matches("[Peer]")
            .count(),
        1,
        "only the phone before the sync"
    );

    for host in &hosts {
        let applied = sync(host, &roster);
        assert!(
            applied.contains("applied 5 changes"),
            "{}: {applied}",
            host.name()
        );
    }
    let ips: Vec<String> = (0..hosts.len()).map(vpn_ip).collect();
    full_mesh_pings(&hosts, &ips);
    assert!(phone.ping(&vpn_ip(0), PING_TIMEOUT), "phone after sync");
    let again = sync(&hosts[1], &roster);
    assert!(again.contains("nothing to change"), "{again}");

    // enterprise is renamed (its host name changes, so does its export):
    // the others follow in the file only, with no ping lost.
    hosts[1]
        .run(&["hostname", "enterprise-d"])
        .expect_ok("hostname");
    let roster = exports(&hosts);
    assert!(roster.contains("name = \"enterprise-d\""), "{roster}");
    let mut out = String::new();
    let lost = hosts[0].ping_loss_while(&vpn_ip(1), PINGS, || out = sync(&hosts[0], &roster));
    assert!(out.contains("~ rename enterprise -> enterprise-d"), "{out}");
    assert_eq!(lost, 0, "pings to the renamed node lost during sync");
    for host in &hosts[2..] {
        let out = sync(host, &roster);
        assert!(
            out.contains("~ rename enterprise -> enterprise-d"),
            "{}: {out}",
            host.name()
        );
    }
    assert!(sync(&hosts[1], &roster).contains("nothing to change"));

    // voyager and reliant swap addresses (each reinstalls with the other's,
    // keys kept): every other node applies both in one device update.
    for (host, ip) in [(&hosts[2], vpn_ip(3)), (&hosts[3], vpn_ip(2))] {
        host.wgp2p_ok(&["uninstall", "--keep-keys"]);
        host.install(&format!("{ip}/24"), &host.endpoint(51820));
    }
    let roster = exports(&hosts);
    let mut out = String::new();
    let lost = hosts[0].ping_loss_while(&vpn_ip(4), PINGS, || out = sync(&hosts[0], &roster));
    assert!(
        out.contains("~ update voyager") && out.contains("~ update reliant"),
        "{out}"
    );
    assert!(out.contains("applied 2 changes"), "{out}");
    assert_eq!(lost, 0, "pings to an untouched node lost during the swap");
    for host in &hosts[1..] {
        let out = sync(host, &roster);
        assert!(out.contains("applied"), "{}: {out}", host.name());
    }
    let mut ips = ips;
    ips.swap(2, 3);
    full_mesh_pings(&hosts, &ips);
    assert!(phone.ping(&vpn_ip(0), PING_TIMEOUT), "phone after the swap");

    // intrepid leaves the roster: the next sync removes it everywhere else,
    // and only it: the phone stays on defiant.
    let intrepid = entry_of(&roster, "intrepid");
    let without = roster.replace(intrepid, "");
    for host in &hosts[..5] {
        let out = sync(host, &without);
        assert!(out.contains("- remove intrepid"), "{}: {out}", host.name());
        assert!(!out.contains("phone"), "{}: {out}", host.name());
    }
    assert!(!hosts[0].ping(&vpn_ip(5), Duration::from_secs(1)));
    assert!(hosts[0].ping(&ips[4], PING_TIMEOUT));
    assert!(
        phone.ping(&vpn_ip(0), PING_TIMEOUT),
        "phone after a removal"
    );
    assert!(
        hosts[0]
            .read_file("/etc/wireguard/wg0.conf")
            .contains("# Name = phone")
    );

    // Hostile rosters, refused on every node with nothing changed.
    let (_, mallory_key) = wg_keypair();
    let hijack = format!(
        "{without}[[peer]]\nname = \"mallory\"\nendpoint = \"203.0.113.250:51820\"\npublic_key = \"{mallory_key}\"\naddress = \"10.15.0.66\"\nallowed_ips = [\"203.0.113.0/25\"]\n"
    );
    let defiant_key = hosts[0].read_file("/etc/wireguard/publickey");
    let duplicate = format!(
        "{without}[[peer]]\nname = \"mallory\"\nendpoint = \"203.0.113.250:51820\"\npublic_key = \"{}\"\naddress = \"10.15.0.67\"\n",
        defiant_key.trim()
    );
    // mallory's own address is enterprise's public address: its route would
    // black-hole enterprise's endpoint on every other node.
    let enterprise_ip = hosts[1].public_ip();
    let address_hijack = format!(
        "{without}[[peer]]\nname = \"mallory\"\nendpoint = \"203.0.113.250:51820\"\npublic_key = \"{mallory_key}\"\naddress = \"{enterprise_ip}\"\n"
    );
    for host in &hosts[..5] {
        refused(host, &hijack, "203.0.113.0/25");
        refused(
            host,
            &address_hijack,
            &format!("address {enterprise_ip} is"),
        );
        refused(host, &duplicate, "same public_key");
        // Its own entry, altered: another address for its key.
        let own = host.wgp2p_ok(&["export"]);
        let address = own
            .lines()
            .find(|l| l.starts_with("address = "))
            .expect("address line");
        let altered = without.replace(
            entry_of(&without, own_name(&own)),
            &own.replace(address, "address = \"10.15.0.99\""),
        );
        refused(host, &altered, "address 10.15.0.99");
    }
    full_mesh_pings(&hosts[..5], &ips[..5]);
}

fn own_name(export: &str) -> &str {
    export
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("name line")
}
