//! End-to-end scenarios: the real `wgp2p` binary on namespace hosts, driven
//! exactly as a user would drive it (see docs/behaviour.md). Each test builds its own
//! lab, so the scenarios run in parallel.

use wgp2p_lab as lab;

use std::thread;
use std::time::{Duration, Instant};

use lab::{AddPeerLine, Host, Lab, NatKind, add_peer_lines, build_mesh, exchange, wg_keypair};
use serde_json::Value;

const PORT: u16 = 51820;
/// How long a ping that must work may take (first handshake included).
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a ping that must NOT work is given to prove it.
const NO_PING_WINDOW: Duration = Duration::from_secs(6);
/// First contact of a host behind a symmetric NAT: WireGuard's retry after
/// `REKEY_TIMEOUT` (5 s + up to 1/3 s jitter), plus the ping itself.
const FIRST_CONTACT_THROUGH_NAT: Duration = Duration::from_secs(8);
/// WireGuard's `REJECT_AFTER_TIME`: an older handshake is stale.
const STALE_AFTER_SECS: u64 = 180;

/// Scenario 1: The README: three public hosts, install, paste the lines, done.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn readme_walkthrough_three_public_hosts() {
    let lab = Lab::new();
    let hosts = [
        lab.public_host("defiant"),
        lab.public_host("enterprise"),
        lab.public_host("voyager"),
    ];
    let lines = build_mesh(&[
        (&hosts[0], "10.15.0.1/24"),
        (&hosts[1], "10.15.0.2/24"),
        (&hosts[2], "10.15.0.3/24"),
    ]);
    for (host, line) in hosts.iter().zip(&lines) {
        assert_eq!(
            line.name(),
            host.name(),
            "the name defaults to the hostname: {}",
            line.line
        );
        assert_eq!(
            line.endpoint(),
            host.endpoint(PORT),
            "the --endpoint given: {}",
            line.line
        );
    }
    assert_full_mesh(&hosts, &["10.15.0.1", "10.15.0.2", "10.15.0.3"]);

    for host in &hosts {
        let others: Vec<&str> = hosts
            .iter()
            .map(Host::name)
            .filter(|&n| n != host.name())
            .collect();
        let status = host.wgp2p_ok(&["status"]);
        for other in &others {
            assert!(
                status.contains(other),
                "status on {} lacks {other}:\n{status}",
                host.name()
            );
        }
        let json = status_json(host);
        for other in &others {
            let age = handshake_age(&json, other);
            let recent = age.is_some_and(|a| a <= STALE_AFTER_SECS);
            assert!(
                recent,
                "{}: no recent handshake with {other}:\n{json:#}",
                host.name()
            );
            assert_eq!(
                health(&json, other),
                "ok",
                "{}: {other} is healthy",
                host.name()
            );
        }
    }
}

/// Scenario 2: One host behind a cone NAT: it keeps the mapping open (keepalive 25 by default) and
/// the public hosts learn its endpoint from its handshakes.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn one_host_behind_cone_nat_joins_the_mesh() {
    let lab = Lab::new();
    let hosts = [
        lab.public_host("defiant"),
        lab.public_host("enterprise"),
        lab.host_behind_nat("voyager", NatKind::Cone),
    ];
    let lines = build_mesh(&[
        (&hosts[0], "10.15.0.1/24"),
        (&hosts[1], "10.15.0.2/24"),
        (&hosts[2], "10.15.0.3/24"),
    ]);
    assert_eq!(
        lines[2].endpoint(),
        format!("{}:{PORT}", hosts[2].public_ip()),
        "router's address"
    );
    // The NAT'd host speaks first: only its packets open the mapping.
    assert_pings(&hosts[2], "10.15.0.1");
    assert_pings(&hosts[2], "10.15.0.2");
    assert_full_mesh(&hosts, &["10.15.0.1", "10.15.0.2", "10.15.0.3"]);
}

/// Scenario 3: Two hosts behind two symmetric NATs cannot reach each other directly, each reaches
/// the public host, and status flags the dead peer.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn two_hosts_behind_symmetric_nats_are_flagged() {
    let lab = Lab::new();
    let defiant = lab.public_host("defiant");
    let voyager = lab.host_behind_nat("voyager", NatKind::Symmetric);
    let reliant = lab.host_behind_nat("reliant", NatKind::Symmetric);
    let nodes = [
        (&defiant, "10.15.0.1/24"),
        (&voyager, "10.15.0.2/24"),
        (&reliant, "10.15.0.3/24"),
    ];
    build_mesh(&nodes);
    // Each NAT'd host sent its first handshake as soon as it learnt
    // defiant's line, before defiant knew its key, so defiant dropped it;
    // defiant's own attempts go to a port the NAT never mapped. Contact comes
    // with the NAT'd host's retry after REKEY_TIMEOUT.
    thread::scope(|s| {
        s.spawn(|| assert_pings_within(&voyager, "10.15.0.1", FIRST_CONTACT_THROUGH_NAT));
        s.spawn(|| assert_pings_within(&reliant, "10.15.0.1", FIRST_CONTACT_THROUGH_NAT));
    });
    assert_pings(&defiant, "10.15.0.2");
    assert_pings(&defiant, "10.15.0.3");

    // Both directions at once, so the negative proof costs one window.
    let (there, back) = thread::scope(|s| {
        let there = s.spawn(|| voyager.ping("10.15.0.3", NO_PING_WINDOW));
        let back = s.spawn(|| reliant.ping("10.15.0.2", NO_PING_WINDOW));
        (
            there.join().expect("ping thread"),
            back.join().expect("ping thread"),
        )
    });
    assert!(
        !there && !back,
        "symmetric NATs connected directly ({there}, {back})"
    );

    let status = voyager.wgp2p_ok(&["status"]);
    let lower = status.to_lowercase();
    assert!(
        status.contains("reliant"),
        "status names the peer:\n{status}"
    );
    let flagged = lower.contains("stale") || lower.contains("no handshake");
    assert!(
        flagged,
        "status must flag reliant (no handshake / stale):\n{status}"
    );
    let json = status_json(&voyager);
    assert_eq!(
        handshake_age(&json, "reliant"),
        None,
        "no handshake with reliant"
    );
    assert_eq!(
        health(&json, "reliant"),
        "stale",
        "reliant is flagged:\n{json:#}"
    );
    assert_eq!(
        health(&json, "defiant"),
        "ok",
        "defiant is healthy:\n{json:#}"
    );
}

/// Scenario 4a: provision-peer: a device that never runs wgp2p gets a conf file that plain wg-quick
/// brings up, and the printed line adds it to this node.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn provision_peer_for_a_device_without_wgp2p() {
    let lab = Lab::new();
    let defiant = lab.public_host("defiant");
    let phone = lab.public_host("phone");
    let defiant_line = defiant.install("10.15.0.1/24", &defiant.endpoint(PORT));

    let stdout = defiant.wgp2p_ok(&[
        "provision-peer",
        "phone",
        &phone.endpoint(PORT),
        "10.15.0.50/24",
    ]);
    let conf_path = provisioned_conf_path(&stdout, "phone");
    let conf = defiant.read_file(&conf_path);
    let mode = defiant
        .run(&["stat", "-c", "%a", &conf_path])
        .expect_ok("stat the conf");
    assert_eq!(mode.trim(), "600", "{conf_path} must be private");
    assert_provisioned_conf(&conf, "10.15.0.50/24", &[&defiant_line]);
    let private_key = conf_value(&conf, "PrivateKey").expect("the conf has a PrivateKey");
    assert!(
        !stdout.contains(&private_key),
        "the device's private key is printed:\n{stdout}"
    );

    let lines = add_peer_lines(&stdout);
    assert_eq!(lines.len(), 1, "one add-peer line to run here:\n{stdout}");
    assert_eq!(lines[0].name(), "phone");
    phone.write_file("/etc/wireguard/wg0.conf", &conf);
    phone
        .run(&["wg-quick", "up", "wg0"])
        .expect_ok("wg-quick up on the device");
    defiant.add_peer(&lines[0]);
    assert_pings(&phone, "10.15.0.1");
    assert_pings(&defiant, "10.15.0.50");
}

/// Scenario 4b: provision-peer --mesh: the device gets a [Peer] for every node, and the printed
/// lines, run on every node, connect it to all of them.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn provision_peer_mesh_reaches_every_node() {
    let lab = Lab::new();
    let nodes = [lab.public_host("defiant"), lab.public_host("enterprise")];
    let tablet = lab.public_host("tablet");
    let mesh_lines = build_mesh(&[(&nodes[0], "10.15.0.1/24"), (&nodes[1], "10.15.0.2/24")]);

    let args = [
        "provision-peer",
        "tablet",
        &tablet.endpoint(PORT),
        "10.15.0.51/24",
        "--mesh",
    ];
    let stdout = nodes[0].wgp2p_ok(&args);
    let conf = nodes[0].read_file(&provisioned_conf_path(&stdout, "tablet"));
    assert_provisioned_conf(&conf, "10.15.0.51/24", &[&mesh_lines[0], &mesh_lines[1]]);

    let lines = add_peer_lines(&stdout);
    assert!(
        !lines.is_empty(),
        "provision-peer --mesh prints add-peer lines:\n{stdout}"
    );
    for node in &nodes {
        for line in &lines {
            node.add_peer(line);
        }
    }
    tablet.write_file("/etc/wireguard/wg0.conf", &conf);
    tablet
        .run(&["wg-quick", "up", "wg0"])
        .expect_ok("wg-quick up on the device");
    for (node, ip) in nodes.iter().zip(["10.15.0.1", "10.15.0.2"]) {
        assert_pings(&tablet, ip);
        assert_pings(node, "10.15.0.51");
    }
}

/// Scenario 5: remove-peer is live and surgical: the removed peer is gone at once, traffic to the
/// others never stops, and its line brings it back.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn remove_peer_is_live_and_keeps_other_traffic() {
    let lab = Lab::new();
    let [a, b, c] = [
        lab.public_host("defiant"),
        lab.public_host("enterprise"),
        lab.public_host("voyager"),
    ];
    let lines = build_mesh(&[
        (&a, "10.15.0.1/24"),
        (&b, "10.15.0.2/24"),
        (&c, "10.15.0.3/24"),
    ]);
    assert_pings(&a, "10.15.0.2");
    assert_pings(&a, "10.15.0.3");

    // 25 pings 200 ms apart: about 5 s of traffic to B across the removal.
    let background = a.spawn(&[
        "ping",
        "-n",
        "-q",
        "-c",
        "25",
        "-i",
        "0.2",
        "-W",
        "1",
        "10.15.0.2",
    ]);
    thread::sleep(Duration::from_millis(500));
    a.wgp2p_ok(&["remove-peer", "voyager"]);
    assert!(
        !a.ping("10.15.0.3", Duration::from_secs(2)),
        "voyager still reachable after removal"
    );
    let peers = a
        .run(&["wg", "show", "wg0", "peers"])
        .expect_ok("wg show peers");
    assert!(
        !peers.contains(lines[2].public_key()),
        "voyager's key still live:\n{peers}"
    );
    assert!(
        peers.contains(lines[1].public_key()),
        "enterprise's key must stay:\n{peers}"
    );
    let conf = a.read_file("/etc/wireguard/wg0.conf");
    assert!(
        !conf.contains(lines[2].public_key()),
        "voyager still in wg0.conf:\n{conf}"
    );

    let out = background
        .wait_with_output()
        .expect("wait for the background ping");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("25 received"),
        "pings to enterprise were lost:\n{summary}"
    );

    a.add_peer(&lines[2]);
    assert_pings(&a, "10.15.0.3");
    assert_pings(&c, "10.15.0.1");
}

/// Scenario 6: stop/start, and a "reboot" (device and daemon gone, /run emptied): the files alone
/// bring the mesh back, names included.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn restart_and_reboot_restore_the_mesh_from_files() {
    let lab = Lab::new();
    let defiant = lab.public_host("defiant");
    let enterprise = lab.public_host("enterprise");
    build_mesh(&[(&defiant, "10.15.0.1/24"), (&enterprise, "10.15.0.2/24")]);
    assert_pings(&defiant, "10.15.0.2");

    enterprise.wgp2p_ok(&["stop"]);
    assert!(
        !enterprise.run(&["ip", "link", "show", "wg0"]).success(),
        "wg0 still up after stop"
    );
    enterprise.wgp2p_ok(&["start"]);
    assert_pings(&defiant, "10.15.0.2");
    assert_pings(&enterprise, "10.15.0.1");

    reboot(&enterprise);
    enterprise.wgp2p_ok(&["start"]);
    assert_pings(&enterprise, "10.15.0.1");
    assert_pings(&defiant, "10.15.0.2");
    let status = enterprise.wgp2p_ok(&["status"]);
    assert!(
        status.contains("defiant"),
        "status after reboot lacks the peer's name:\n{status}"
    );
}

/// Scenario 7: A node set up by the old script (keys, address, a SaveConfig conf with an unnamed
/// peer, interface up) is adopted as is by `install`.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn install_adopts_the_old_scripts_setup() {
    let lab = Lab::new();
    let defiant = lab.public_host("defiant");
    let enterprise = lab.public_host("enterprise");
    let (d_private, d_public) = wg_keypair();
    let (e_private, e_public) = wg_keypair();
    let old_conf = format!(
        "[Interface]\nAddress = 10.15.0.1/24\nSaveConfig = true\nListenPort = {PORT}\n\
         PrivateKey = {d_private}\n\n\
         [Peer]\nPublicKey = {e_public}\nEndpoint = {}\nAllowedIPs = 10.15.0.2/32\n\
         PersistentKeepalive = 25\n",
        enterprise.endpoint(PORT)
    );
    defiant.write_file("/etc/wireguard/privatekey", &format!("{d_private}\n"));
    defiant.write_file("/etc/wireguard/publickey", &format!("{d_public}\n"));
    defiant.write_file("/etc/wireguard/address", "10.15.0.1/24\n");
    defiant.write_file("/etc/wireguard/wg0.conf", &old_conf);
    defiant
        .run(&["wg-quick", "up", "wg0"])
        .expect_ok("the old node is running");
    // enterprise is the old peer, still on plain wg-quick.
    let enterprise_conf = format!(
        "[Interface]\nAddress = 10.15.0.2/24\nListenPort = {PORT}\nPrivateKey = {e_private}\n\n\
         [Peer]\nPublicKey = {d_public}\nEndpoint = {}\nAllowedIPs = 10.15.0.1/32\n",
        defiant.endpoint(PORT)
    );
    enterprise.write_file("/etc/wireguard/wg0.conf", &enterprise_conf);
    enterprise
        .run(&["wg-quick", "up", "wg0"])
        .expect_ok("wg-quick up on enterprise");

    let line = defiant.install("10.15.0.1/24", &defiant.endpoint(PORT));
    assert_eq!(
        line.public_key(),
        d_public,
        "install must keep the existing key"
    );
    assert_eq!(
        defiant.read_file("/etc/wireguard/publickey").trim(),
        d_public
    );
    assert_eq!(
        defiant.read_file("/etc/wireguard/privatekey").trim(),
        d_private
    );
    let conf = defiant.read_file("/etc/wireguard/wg0.conf");
    assert!(!conf.contains("SaveConfig"), "SaveConfig must go:\n{conf}");
    assert!(
        conf.contains(&e_public),
        "the old peer must survive in wg0.conf:\n{conf}"
    );
    let live = defiant
        .run(&["wg", "show", "wg0", "peers"])
        .expect_ok("wg show peers");
    assert!(
        live.contains(&e_public),
        "the old peer must stay live:\n{live}"
    );
    assert_pings(&defiant, "10.15.0.2");

    // The unnamed peer simply takes a name when its line is pasted.
    let paste = [
        "add-peer",
        "enterprise",
        &enterprise.endpoint(PORT),
        &e_public,
        "10.15.0.2",
    ];
    defiant.wgp2p_ok(&paste);
    let conf = defiant.read_file("/etc/wireguard/wg0.conf");
    assert_eq!(conf.matches("[Peer]").count(), 1, "still one peer:\n{conf}");
    assert!(
        conf.contains("# Name = enterprise"),
        "the peer got its name:\n{conf}"
    );
    assert_pings(&defiant, "10.15.0.2");
}

/// Scenario 8: An IPv6 mesh over IPv6 endpoints.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn ipv6_mesh_over_ipv6_endpoints() {
    let lab = Lab::new();
    let hosts = [lab.public_host("defiant"), lab.public_host("enterprise")];
    let lines: Vec<AddPeerLine> = hosts
        .iter()
        .zip(["fd00:15::1/64", "fd00:15::2/64"])
        .map(|(host, address)| host.install(address, &host.endpoint6(PORT)))
        .collect();
    for (host, line) in hosts.iter().zip(&lines) {
        assert_eq!(line.endpoint(), host.endpoint6(PORT), "{}", line.line);
    }
    exchange(&hosts, &lines);
    assert_pings(&hosts[0], "fd00:15::2");
    assert_pings(&hosts[1], "fd00:15::1");
}

/// Scenario 9: A peer endpoint given as a DNS name is resolved through the host's own /etc/hosts
/// and kept as written in the config.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn dns_endpoint_resolved_through_hosts_file() {
    let lab = Lab::new();
    let defiant = lab.public_host("defiant");
    let enterprise = lab.public_host("enterprise");
    for host in [&defiant, &enterprise] {
        host.add_hosts_entry(enterprise.public_ip(), "enterprise.lab");
    }
    let defiant_line = defiant.install("10.15.0.1/24", &defiant.endpoint(PORT));
    let enterprise_line = enterprise.install("10.15.0.2/24", &format!("enterprise.lab:{PORT}"));
    assert_eq!(
        enterprise_line.endpoint(),
        format!("enterprise.lab:{PORT}"),
        "{}",
        enterprise_line.line
    );

    // enterprise does not know defiant yet, so no handshake can have taught
    // defiant the endpoint: what `wg` shows came from resolving the name.
    defiant.add_peer(&enterprise_line);
    let endpoints = defiant
        .run(&["wg", "show", "wg0", "endpoints"])
        .expect_ok("wg show endpoints");
    assert!(
        endpoints.contains(&enterprise.endpoint(PORT)),
        "name not resolved:\n{endpoints}"
    );
    let conf = defiant.read_file("/etc/wireguard/wg0.conf");
    assert!(
        conf.contains(&format!("enterprise.lab:{PORT}")),
        "name not kept as written:\n{conf}"
    );

    enterprise.add_peer(&defiant_line);
    assert_pings(&defiant, "10.15.0.2");
    assert_pings(&enterprise, "10.15.0.1");
}

/// Scenario 10: without `--endpoint`, install discovers the public address through STUN (the
/// lab's coturn), and nat-check tells no NAT, a cone NAT and a symmetric NAT apart.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn stun_discovery_and_nat_check() {
    let lab = Lab::new();
    let stun = lab.stun_server("stun");
    let hosts = [
        lab.public_host("defiant"),
        lab.host_behind_nat("voyager", NatKind::Cone),
        lab.host_behind_nat("reliant", NatKind::Symmetric),
    ];
    let expected = [
        ("10.15.0.1/24", "open", "works"),
        ("10.15.0.2/24", "cone", "works"),
        ("10.15.0.3/24", "symmetric", "needs-static-port"),
    ];
    let mut lines = Vec::new();
    for (host, (address, nat_type, verdict)) in hosts.iter().zip(expected) {
        // Before install, while the listen port is free to probe from.
        let human = host.wgp2p_with_stun(&["nat-check"], &stun.servers());
        eprintln!("{}$ wgp2p nat-check\n{}", host.name(), human.stdout);
        let out = host.wgp2p_with_stun(&["nat-check", "--json"], &stun.servers());
        let report: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("nat-check --json on {} ({e}):\n{out}", host.name()));
        assert_eq!(report["nat_type"], nat_type, "{}:\n{report:#}", host.name());
        assert_eq!(report["verdict"], verdict, "{}:\n{report:#}", host.name());
        assert!(
            human.stdout.contains(&format!("verdict: {verdict}")),
            "{}",
            human.stdout
        );
        assert_eq!(
            report["public_ip"],
            host.public_ip().to_string(),
            "{report:#}"
        );

        let out = host.wgp2p_with_stun(&["install", address], &stun.servers());
        let stdout = out.expect_ok(&format!("install on {} with STUN", host.name()));
        let line = add_peer_lines(&stdout)
            .pop()
            .expect("install prints an add-peer line");
        assert_eq!(
            line.endpoint(),
            host.endpoint(PORT),
            "discovered endpoint: {}",
            line.line
        );
        lines.push(line);
    }
    exchange(&hosts, &lines);
    thread::scope(|s| {
        s.spawn(|| assert_pings_within(&hosts[1], "10.15.0.1", FIRST_CONTACT_THROUGH_NAT));
        s.spawn(|| assert_pings_within(&hosts[2], "10.15.0.1", FIRST_CONTACT_THROUGH_NAT));
    });
}

// ---- helpers ----

/// Every ordered pair of hosts pings over the VPN.
fn assert_full_mesh(hosts: &[Host], vpn_ips: &[&str]) {
    for (from, _) in hosts.iter().zip(vpn_ips) {
        for (to, ip) in hosts.iter().zip(vpn_ips) {
            if from.name() != to.name() {
                assert_pings(from, ip);
            }
        }
    }
}

/// `from` reaches `ip` within [`PING_TIMEOUT`]; on failure the message holds
/// what WireGuard on `from` knows.
fn assert_pings(from: &Host, ip: &str) {
    assert_pings_within(from, ip, PING_TIMEOUT);
}

fn assert_pings_within(from: &Host, ip: &str, timeout: Duration) {
    let started = Instant::now();
    if from.ping(ip, timeout) {
        return;
    }
    let wg = from.run(&["wg", "show"]);
    panic!(
        "{} cannot ping {ip} (gave up after {:?}):\n{wg}",
        from.name(),
        started.elapsed()
    );
}

/// Simulates a power cut and boot: the daemon is killed (by PID), the device
/// and everything under /run are gone; only /etc/wireguard remains.
fn reboot(host: &Host) {
    for pid in host.wireguard_go_pids() {
        host.run(&["kill", "-9", &pid.to_string()])
            .expect_ok("kill wireguard-go");
    }
    let gone = lab::wait_until(Duration::from_secs(5), || {
        host.wireguard_go_pids().is_empty()
    });
    assert!(gone, "wireguard-go survived SIGKILL on {}", host.name());
    // A userspace device vanishes with its daemon; a kernel one needs this.
    let _ = host.run(&["ip", "link", "del", "wg0"]);
    assert!(
        !host.run(&["ip", "link", "show", "wg0"]).success(),
        "wg0 survived the reboot"
    );
    host.run(&["rm", "-rf", "/run/wireguard"])
        .expect_ok("empty /run/wireguard");
}

fn status_json(host: &Host) -> Value {
    let stdout = host.wgp2p_ok(&["status", "--json"]);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "status --json on {} is not JSON ({e}):\n{stdout}",
            host.name()
        )
    })
}

/// The entry of `status --json`'s `peers` array whose `name` is `name`.
fn peer_status<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("status --json has no peer named {name}:\n{json:#}"))
}

/// Seconds since the last handshake with peer `name` (null: never).
fn handshake_age(json: &Value, name: &str) -> Option<u64> {
    peer_status(json, name)["latest_handshake_secs_ago"].as_u64()
}

/// The health mark of peer `name`: ok, stale, drift or down.
fn health(json: &Value, name: &str) -> String {
    let mark = peer_status(json, name)["health"].as_str();
    mark.unwrap_or_else(|| panic!("no health for {name}:\n{json:#}"))
        .to_string()
}

/// The path of `provisioned-peers/NAME.conf` that provision-peer printed.
fn provisioned_conf_path(stdout: &str, name: &str) -> String {
    let suffix = format!("provisioned-peers/{name}.conf");
    let word = stdout
        .split(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '`'))
        .find(|w| w.contains(&suffix))
        .unwrap_or_else(|| panic!("provision-peer did not print {suffix}:\n{stdout}"));
    let path = word.trim_end_matches(|c: char| !c.is_alphanumeric());
    assert!(
        path.starts_with('/'),
        "an absolute path to the conf: {path}"
    );
    path.to_string()
}

/// The device's conf: its own address, and a [Peer] for each node given,
/// with that node's key and endpoint.
fn assert_provisioned_conf(conf: &str, address: &str, nodes: &[&AddPeerLine]) {
    assert_eq!(
        conf_value(conf, "Address").as_deref(),
        Some(address),
        "{conf}"
    );
    assert_eq!(
        conf_value(conf, "ListenPort").as_deref(),
        Some("51820"),
        "{conf}"
    );
    assert_eq!(
        conf.matches("[Peer]").count(),
        nodes.len(),
        "one [Peer] per node:\n{conf}"
    );
    for node in nodes {
        assert!(
            conf.contains(node.public_key()),
            "no [Peer] for {}:\n{conf}",
            node.name()
        );
        assert!(
            conf.contains(node.endpoint()),
            "no endpoint for {}:\n{conf}",
            node.name()
        );
    }
}

/// The value of the first `key = value` line for `key` in a wg-quick conf.
fn conf_value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}
