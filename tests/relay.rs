//! Relaying through a public mesh node, on the namespace lab: two hosts
//! behind two different symmetric NATs cannot meet directly; through a
//! public node with `relay-enable` they can, and no other traffic drops.

use wgp2p_lab as lab;

use std::thread;
use std::time::Duration;

use lab::{Host, Lab, NatKind, build_mesh};

const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// A host behind symmetric NAT makes first contact on its handshake retry
/// (`REKEY_TIMEOUT`, 5 s plus jitter).
const FIRST_CONTACT: Duration = Duration::from_secs(8);
const NO_PING_WINDOW: Duration = Duration::from_secs(6);

fn assert_pings(from: &Host, ip: &str, within: Duration) {
    assert!(from.ping(ip, within), "{} cannot ping {ip}", from.name());
}

/// Packets the relay forwarded from its interface to itself.
fn forwarded_packets(relay: &Host) -> u64 {
    let out = relay.run(&["/usr/sbin/iptables", "-w", "-nvx", "-L", "FORWARD"]);
    let text = out.expect_ok("iptables -L FORWARD");
    text.lines()
        .filter(|l| l.contains("ACCEPT") && l.matches("wg0").count() == 2)
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn proc_value(host: &Host, path: &str) -> String {
    host.run(&["/bin/cat", path])
        .expect_ok(path)
        .trim()
        .to_string()
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
#[allow(
    clippy::too_many_lines,
    reason = "one lab scenario, read top to bottom"
)]
fn symmetric_nat_pair_meets_through_a_public_relay() {
    let lab = Lab::new();
    let alpha = lab.public_host("alpha");
    let bravo = lab.public_host("bravo");
    let charlie = lab.host_behind_nat("charlie", NatKind::Symmetric);
    let delta = lab.host_behind_nat("delta", NatKind::Symmetric);
    build_mesh(&[
        (&alpha, "10.15.0.1/24"),
        (&bravo, "10.15.0.2/24"),
        (&charlie, "10.15.0.3/24"),
        (&delta, "10.15.0.4/24"),
    ]);
    thread::scope(|s| {
        for host in [&charlie, &delta] {
            s.spawn(move || {
                assert_pings(host, "10.15.0.1", FIRST_CONTACT);
                assert_pings(host, "10.15.0.2", FIRST_CONTACT);
            });
        }
    });

    // 1. Without a relay the pair behind symmetric NATs cannot meet, and
    //    status says why and who could relay.
    let (there, back) = thread::scope(|s| {
        let there = s.spawn(|| charlie.ping("10.15.0.4", NO_PING_WINDOW));
        let back = s.spawn(|| delta.ping("10.15.0.3", NO_PING_WINDOW));
        (there.join().expect("ping"), back.join().expect("ping"))
    });
    assert!(
        !there && !back,
        "symmetric NATs met directly ({there}, {back})"
    );
    let status = charlie.wgp2p_ok(&["status"]);
    eprintln!("charlie$ wgp2p status\n{status}");
    assert!(
        status.contains("STALE") && status.contains("symmetric NAT"),
        "{status}"
    );
    assert!(
        status.contains("relay candidates: alpha, bravo"),
        "{status}"
    );
    assert!(status.contains("wgp2p relay delta via alpha"), "{status}");

    let doctor = charlie.wgp2p(&["doctor"]);
    eprintln!("charlie$ wgp2p doctor\n{}", doctor.stdout);
    assert!(
        !doctor.success(),
        "doctor exits non-zero when it finds a problem"
    );
    assert!(
        doctor.stdout.contains(
            "`wgp2p relay delta via alpha` here and `wgp2p relay charlie via alpha` on delta"
        ),
        "{}",
        doctor.stdout
    );

    // Switch both ends to the relay.
    let enabled = alpha.wgp2p_ok(&["relay-enable"]);
    eprintln!("alpha$ wgp2p relay-enable\n{enabled}");
    assert!(enabled.contains("relaying enabled"), "{enabled}");
    assert_eq!(
        proc_value(&alpha, "/proc/sys/net/ipv4/conf/wg0/forwarding"),
        "1"
    );
    let before = forwarded_packets(&alpha);
    let switched = charlie.wgp2p_ok(&["relay", "delta", "via", "alpha"]);
    eprintln!("charlie$ wgp2p relay delta via alpha\n{switched}");
    delta.wgp2p_ok(&["relay", "charlie", "via", "alpha"]);
    assert_pings(&charlie, "10.15.0.4", PING_TIMEOUT);
    assert_pings(&delta, "10.15.0.3", PING_TIMEOUT);
    assert!(
        forwarded_packets(&alpha) > before,
        "the relayed traffic must cross alpha"
    );
    let status = charlie.wgp2p_ok(&["status"]);
    eprintln!("charlie$ wgp2p status\n{status}");
    assert!(status.contains("via alpha"), "{status}");
    let conf = charlie.read_file("/etc/wireguard/wg0.conf");
    assert!(conf.contains("# Relay = delta "), "{conf}");
    // Every other pair still pings.
    for (from, to) in [
        (&alpha, "10.15.0.2"),
        (&bravo, "10.15.0.3"),
        (&bravo, "10.15.0.4"),
        (&alpha, "10.15.0.3"),
    ] {
        assert_pings(from, to, PING_TIMEOUT);
    }

    // 2. Switching a peer to direct and back loses nothing between others.
    let lost = bravo.ping_loss_while("10.15.0.3", 60, || {
        charlie.wgp2p_ok(&["relay", "delta", "direct"]);
        thread::sleep(Duration::from_millis(500));
        charlie.wgp2p_ok(&["relay", "delta", "via", "alpha"]);
    });
    assert_eq!(
        lost, 0,
        "bravo -> charlie lost packets while charlie switched delta"
    );
    assert_pings(&charlie, "10.15.0.4", PING_TIMEOUT);

    // 3. relay-disable: forwarding and the rule are gone, the relayed pair
    //    stops, nothing else changes.
    let disabled = alpha.wgp2p_ok(&["relay-disable"]);
    eprintln!("alpha$ wgp2p relay-disable\n{disabled}");
    assert_eq!(
        proc_value(&alpha, "/proc/sys/net/ipv4/conf/wg0/forwarding"),
        "0"
    );
    let rule = alpha.run(&[
        "/usr/sbin/iptables",
        "-w",
        "-C",
        "FORWARD",
        "-i",
        "wg0",
        "-o",
        "wg0",
        "-j",
        "ACCEPT",
    ]);
    assert!(!rule.success(), "the FORWARD rule must be gone");
    assert!(
        !alpha
            .read_file("/etc/wireguard/wg0.conf")
            .contains("wgp2p relay")
    );
    assert!(
        !charlie.ping("10.15.0.4", Duration::from_secs(2)),
        "relayed pair must stop"
    );
    assert_pings(&charlie, "10.15.0.1", PING_TIMEOUT);
    assert_pings(&bravo, "10.15.0.4", PING_TIMEOUT);
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn bad_relays_change_nothing() {
    let lab = Lab::new();
    let alpha = lab.public_host("alpha");
    let bravo = lab.public_host("bravo");
    let charlie = lab.public_host("charlie");
    build_mesh(&[
        (&alpha, "10.15.0.1/24"),
        (&bravo, "10.15.0.2/24"),
        (&charlie, "10.15.0.3/24"),
    ]);
    alpha.wgp2p_ok(&["relay", "charlie", "via", "bravo"]);
    let conf = alpha.read_file("/etc/wireguard/wg0.conf");
    let own_key = alpha.read_file("/etc/wireguard/publickey");
    let cases: [(&[&str], &str); 5] = [
        (&["relay", "charlie", "via", "nobody"], "no peer named"),
        (&["relay", "bravo", "via", "bravo"], "through itself"),
        (&["relay", "bravo", "via", "charlie"], "itself relayed"),
        (
            &["relay", "bravo", "via", own_key.trim()],
            "this node itself",
        ),
        (
            &[
                "add-peer",
                "echo",
                "192.0.2.77:51820",
                "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
                "10.15.0.3",
                "--via",
                "bravo",
            ],
            "overlaps",
        ),
    ];
    for (args, expected) in cases {
        let out = alpha.wgp2p(args);
        assert!(!out.success(), "{args:?} must fail");
        let stderr = out.all_output();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(
            alpha.read_file("/etc/wireguard/wg0.conf"),
            conf,
            "{args:?} changed the config"
        );
    }
    // Removing a relayed peer removes its route through the relay.
    alpha.wgp2p_ok(&["remove-peer", "charlie"]);
    let dump = alpha
        .run(&["/usr/bin/wg", "show", "wg0", "allowed-ips"])
        .expect_ok("wg show");
    assert!(!dump.contains("10.15.0.3/32"), "{dump}");
    assert!(dump.contains("10.15.0.2/32"), "{dump}");
}
