//! Tests of the namespace lab itself, with plain WireGuard tools only (no
//! wgp2p): if these fail, the mesh scenarios cannot be trusted.

use wgp2p_lab as lab;

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use lab::{Host, Lab, NatKind, census, exclusive, shell_words, wg_keypair};

const PING_TIMEOUT: Duration = Duration::from_secs(5);

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn public_hosts_ping_each_other() {
    let lab = Lab::new();
    let defiant = lab.public_host("defiant");
    let enterprise = lab.public_host("enterprise");
    assert!(defiant.ping(&enterprise.public_ip().to_string(), PING_TIMEOUT));
    assert!(enterprise.ping(&defiant.public_ip().to_string(), PING_TIMEOUT));
    let v6 = enterprise
        .public_ip6()
        .expect("public hosts have IPv6")
        .to_string();
    assert!(
        defiant.ping(&v6, PING_TIMEOUT),
        "IPv6 on the public segment"
    );
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn hosts_behind_nat_reach_public_hosts_and_cannot_be_reached() {
    let lab = Lab::new();
    let defiant = lab.public_host("defiant");
    let cone = lab.host_behind_nat("voyager", NatKind::Cone);
    let symmetric = lab.host_behind_nat("reliant", NatKind::Symmetric);
    let target = defiant.public_ip().to_string();
    assert!(
        cone.ping(&target, PING_TIMEOUT),
        "cone NAT host -> public host"
    );
    assert!(
        symmetric.ping(&target, PING_TIMEOUT),
        "symmetric NAT host -> public host"
    );
    // Inbound traffic to a router is not forwarded: a NAT'd host cannot be
    // reached at its router's address without a mapping it created.
    assert!(!defiant.ping(&cone.local_ip().to_string(), Duration::from_secs(1)));
    assert!(
        !defiant.run(&["ip", "route", "get", "10.200.1.2"]).success(),
        "no route to LANs"
    );
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn each_host_has_its_own_hostname_hosts_file_and_run_dir() {
    let lab = Lab::new();
    let defiant = lab.public_host("defiant");
    let enterprise = lab.public_host("enterprise");
    let hostname = |h: &Host| {
        h.run(&["hostname"])
            .expect_ok("hostname")
            .trim()
            .to_string()
    };
    assert_eq!(hostname(&defiant), "defiant");
    assert_eq!(hostname(&enterprise), "enterprise");

    defiant.add_hosts_entry(enterprise.public_ip(), "enterprise.lab");
    let resolved = defiant
        .run(&["getent", "hosts", "enterprise.lab"])
        .expect_ok("getent on defiant");
    assert!(
        resolved.contains(&enterprise.public_ip().to_string()),
        "{resolved}"
    );
    assert!(
        !enterprise
            .run(&["getent", "hosts", "enterprise.lab"])
            .success(),
        "hosts file leaked"
    );

    defiant.write_file("/etc/wireguard/marker", "x\n");
    defiant.write_file("/run/marker", "x\n");
    for path in ["/etc/wireguard/marker", "/run/marker"] {
        assert!(
            !enterprise.run(&["test", "-e", path]).success(),
            "{path} is shared between hosts"
        );
        assert!(
            !std::path::Path::new(path).exists(),
            "{path} leaked into the root namespace"
        );
    }
}

/// A hand-written wg-quick tunnel between a public host and a host behind a
/// cone NAT: the NAT'd side knows the endpoint and keeps the mapping alive.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn wg_quick_tunnel_through_cone_nat() {
    let lab = Lab::new();
    let (defiant, voyager) = tunnel_pair(&lab);
    assert!(
        voyager.ping("10.15.0.1", PING_TIMEOUT),
        "voyager -> defiant over the tunnel"
    );
    assert!(
        defiant.ping("10.15.0.2", PING_TIMEOUT),
        "defiant -> voyager over the tunnel"
    );
    let daemons = usize::from(!lab::kernel_wireguard());
    let running = defiant.wireguard_go_pids().len();
    assert_eq!(running, daemons, "wireguard-go daemons on defiant");
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn dropping_a_lab_with_tunnels_leaves_nothing() {
    let _alone = exclusive();
    let before = census();
    {
        let lab = Lab::new();
        let (_defiant, voyager) = tunnel_pair(&lab);
        assert!(voyager.ping("10.15.0.1", PING_TIMEOUT));
        let during = census();
        assert_eq!(
            during.wireguard_go,
            before.wireguard_go + daemons_per_tunnel_pair(),
            "census sees both daemons"
        );
        assert_eq!(
            during.namespaces,
            before.namespaces + 4,
            "bridge, host, router, host"
        );
    }
    assert_eq!(census(), before, "namespaces or processes leaked");
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_panicking_test_still_cleans_up() {
    let _alone = exclusive();
    let before = census();
    let during = Mutex::new(None);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::new();
        let (_defiant, voyager) = tunnel_pair(&lab);
        assert!(voyager.ping("10.15.0.1", PING_TIMEOUT));
        *during.lock().expect("not poisoned") = Some(census());
        panic!("deliberate panic inside a lab, to test its cleanup");
    }));
    assert!(result.is_err(), "the closure must have panicked");
    let during = during
        .into_inner()
        .expect("not poisoned")
        .expect("the lab was built");
    assert_eq!(
        during.wireguard_go,
        before.wireguard_go + daemons_per_tunnel_pair(),
        "the lab had tunnels up"
    );
    assert_eq!(
        census(),
        before,
        "namespaces or processes leaked after a panic"
    );
}

#[test]
fn shell_words_split_like_sh() {
    assert_eq!(
        shell_words("wgp2p add-peer a b"),
        ["wgp2p", "add-peer", "a", "b"]
    );
    assert_eq!(
        shell_words("x 'a b' \"c d\" e\\ f  g"),
        ["x", "a b", "c d", "e f", "g"]
    );
    assert_eq!(shell_words("k=ab+/cd== ''"), ["k=ab+/cd==", ""]);
}

/// wireguard-go daemons that [`tunnel_pair`] starts: none with kernel
/// WireGuard.
fn daemons_per_tunnel_pair() -> usize {
    if lab::kernel_wireguard() { 0 } else { 2 }
}

/// defiant (public, 10.15.0.1) and voyager (cone NAT, 10.15.0.2) with
/// wg-quick tunnels from hand-written configs, both up.
fn tunnel_pair(lab: &Lab) -> (Host, Host) {
    let defiant = lab.public_host("defiant");
    let voyager = lab.host_behind_nat("voyager", NatKind::Cone);
    let (d_private, d_public) = wg_keypair();
    let (v_private, v_public) = wg_keypair();
    // defiant cannot know voyager's public port: no Endpoint, it learns it
    // from voyager's first handshake.
    let defiant_conf = format!(
        "[Interface]\nPrivateKey = {d_private}\nAddress = 10.15.0.1/24\nListenPort = 51820\n\n\
         [Peer]\nPublicKey = {v_public}\nAllowedIPs = 10.15.0.2/32\n"
    );
    let voyager_conf = format!(
        "[Interface]\nPrivateKey = {v_private}\nAddress = 10.15.0.2/24\nListenPort = 51820\n\n\
         [Peer]\nPublicKey = {d_public}\nAllowedIPs = 10.15.0.1/32\n\
         Endpoint = {}\nPersistentKeepalive = 25\n",
        defiant.endpoint(51820)
    );
    for (host, conf) in [(&defiant, defiant_conf), (&voyager, voyager_conf)] {
        host.write_file("/etc/wireguard/wg0.conf", &conf);
        host.run(&["wg-quick", "up", "wg0"])
            .expect_ok("wg-quick up");
    }
    (defiant, voyager)
}

/// The lab's STUN server answers on both addresses and sees a NAT'd host
/// at its router's address.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn stun_server_sees_the_nat_routers_address() {
    let lab = Lab::new();
    let stun = lab.stun_server("stun");
    let voyager = lab.host_behind_nat("voyager", NatKind::Cone);
    for server in stun.addrs {
        let ip = server.ip().to_string();
        let out = voyager.run(&["turnutils_stunclient", "-p", "3478", &ip]);
        let reflexive = format!("UDP reflexive addr: {}:", voyager.public_ip());
        assert!(out.stdout.contains(&reflexive), "STUN via {server}:\n{out}");
    }
}
