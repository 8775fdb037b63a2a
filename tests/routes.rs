//! Live equals restart: the routes a live change makes are the ones
//! `wg-quick down; up` of the same file makes, on real wireguard-go
//! interfaces in the namespace lab, with real pings (docs/behaviour.md,
//! "Live, no restart").

use wgp2p_lab as lab;

use std::time::Duration;

use lab::{Host, Lab, build_mesh, wg_keypair};

const PING: Duration = Duration::from_secs(5);

/// `ip route get IP`'s device.
fn route_dev(host: &Host, ip: &str) -> String {
    let out = host.run(&["ip", "route", "get", ip]).all_output();
    out.split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or("")
        .to_string()
}

/// Every route and rule that mentions the interface or wg-quick's table,
/// sorted: what a restart must leave as it is.
pub fn routes_of(host: &Host, iface: &str) -> String {
    let script = format!(
        "for f in -4 -6; do ip $f route show table all | grep -w 'dev {iface}' | grep -v ' proto kernel ' ; ip $f rule show | grep -v -e '^0:' -e '^3276[67]:'; done | sort"
    );
    host.sh(&script, &[]).all_output()
}

/// `wg-quick down; up` of the host's config: the oracle.
pub fn restart(host: &Host, iface: &str) {
    host.run(&["wg-quick", "down", iface])
        .expect_ok("wg-quick down");
    host.run(&["wg-quick", "up", iface])
        .expect_ok("wg-quick up");
}

/// Reproduction 1 of "live equals restart": `add-peer --allowed-ips`
/// routes the new subnet at once, and `remove-peer` of a peer with wide
/// AllowedIPs gives the host's traffic back, both without a restart and
/// without losing a ping on another tunnel; a restart then changes no
/// route.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn add_and_remove_peer_route_live_without_losing_pings() {
    let lab = Lab::new();
    let alpha = lab.public_host("alpha");
    let bravo = lab.public_host("bravo");
    let charlie = lab.public_host("charlie");
    let web = lab.public_host("web");
    let lines = build_mesh(&[
        (&alpha, "10.15.0.1/24"),
        (&bravo, "10.15.0.2/24"),
        (&charlie, "10.15.0.3/24"),
    ]);
    // bravo's LAN.
    bravo
        .sh("ip addr add 192.168.77.1/32 dev lo", &[])
        .expect_ok("bravo's LAN");
    assert!(alpha.ping("10.15.0.3", PING), "alpha reaches charlie");
    assert!(!alpha.ping("192.168.77.1", Duration::from_secs(1)));

    let mut with_lan: Vec<String> = lines[1].args.clone();
    with_lan.extend(["--allowed-ips".into(), "192.168.77.0/24".into()]);
    let with_lan: Vec<&str> = with_lan.iter().map(String::as_str).collect();
    let lost = alpha.ping_loss_while("10.15.0.3", 60, || {
        let out = alpha.wgp2p_ok(&with_lan);
        assert!(out.contains("live, no restart"), "{out}");
    });
    assert_eq!(lost, 0, "pings to charlie lost while adding bravo's LAN");
    assert_eq!(route_dev(&alpha, "192.168.77.1"), "wg0");
    assert!(
        alpha.ping("192.168.77.1", PING),
        "bravo's LAN through the tunnel, no restart"
    );

    // A peer that claims web's address (the admin's --allowed-ips: allowed,
    // with a warning): alpha's traffic to web goes into the tunnel...
    let web_ip = web.public_ip().to_string();
    assert!(alpha.ping(&web_ip, PING));
    let (_, wide_key) = wg_keypair();
    let wide_net = format!("{web_ip}/32");
    let out = alpha.wgp2p(&[
        "add-peer",
        "wide",
        "198.51.100.9:51820",
        wide_key.as_str(),
        "10.15.0.9",
        "--allowed-ips",
        &wide_net,
    ]);
    assert!(out.success(), "{}", out.all_output());
    assert!(
        out.all_output().contains("covers public addresses"),
        "{}",
        out.all_output()
    );
    assert_eq!(route_dev(&alpha, &web_ip), "wg0");
    assert!(!alpha.ping(&web_ip, Duration::from_secs(1)));
    // ...until it is removed: traffic back at once.
    let lost = alpha.ping_loss_while("10.15.0.3", 60, || {
        alpha.wgp2p_ok(&["remove-peer", "wide"]);
    });
    assert_eq!(lost, 0, "pings to charlie lost while removing wide");
    assert_eq!(route_dev(&alpha, &web_ip), "eth0");
    assert!(alpha.ping(&web_ip, PING), "web reachable again, no restart");

    // A restart makes exactly these routes.
    let live = routes_of(&alpha, "wg0");
    assert!(live.contains("192.168.77.0/24 dev wg0"), "{live}");
    restart(&alpha, "wg0");
    assert_eq!(
        routes_of(&alpha, "wg0"),
        live,
        "routes after wg-quick down; up"
    );

    // Route drift: doctor names each with its command, repair fixes both.
    alpha
        .sh(
            "ip route del 192.168.77.0/24 dev wg0 && ip route add 198.51.100.0/24 dev wg0",
            &[],
        )
        .expect_ok("drift by hand");
    let doctor = alpha.wgp2p(&["doctor"]).all_output();
    assert!(
        doctor.contains("`ip -4 route add 192.168.77.0/24 dev wg0`")
            && doctor.contains("`ip -4 route del 198.51.100.0/24 dev wg0`"),
        "{doctor}"
    );
    let repaired = alpha.wgp2p_ok(&["repair"]);
    assert!(
        repaired.contains("192.168.77.0/24") && repaired.contains("198.51.100.0/24"),
        "{repaired}"
    );
    assert_eq!(routes_of(&alpha, "wg0"), live, "routes after repair");
    let again = alpha.wgp2p_ok(&["repair"]);
    assert!(again.contains("nothing to repair"), "{again}");
}
