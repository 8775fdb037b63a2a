//! Drift repair on the namespace lab: the live interface is changed behind
//! wgp2p's back (`wg set`, as a crash between file and device or a reboot
//! race would leave it), and the advice `status` and `doctor` print is run
//! exactly as printed; then the finding is gone, and a ping to another
//! peer loses nothing meanwhile.

use wgp2p_lab as lab;

use std::time::Duration;

use lab::{Host, Lab, build_mesh, shell_words, wg_keypair};

const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Background pings (50 ms apart) across each repair.
const PINGS: u32 = 40;

fn assert_pings(from: &Host, ip: &str) {
    assert!(
        from.ping(ip, PING_TIMEOUT),
        "{} cannot ping {ip}",
        from.name()
    );
}

/// The last `…`-quoted command on the first line of `text` that contains
/// `finding`, split like a shell would.
fn advice(text: &str, finding: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.contains(finding))
        .unwrap_or_else(|| panic!("no line with {finding:?} in:\n{text}"));
    let quoted: Vec<&str> = line.split('`').collect();
    assert!(quoted.len() >= 3, "no `command` in: {line}");
    let command = quoted[quoted.len() - 2];
    shell_words(command)
}

/// Runs a printed `wgp2p …` command on `host` as printed; returns stdout.
fn follow(host: &Host, command: &[String]) -> String {
    assert_eq!(
        command[0], "wgp2p",
        "advice is not a wgp2p command: {command:?}"
    );
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    let out = host.wgp2p_ok(&args);
    eprintln!("{}$ {}\n{out}", host.name(), command.join(" "));
    out
}

/// Follows `command` on `host` while `host` pings `ip`; no ping may drop.
fn follow_without_loss(host: &Host, ip: &str, command: &[String]) -> String {
    let mut out = String::new();
    let lost = host.ping_loss_while(ip, PINGS, || out = follow(host, command));
    assert_eq!(
        lost, 0,
        "{lost} pings to {ip} lost while running {command:?}"
    );
    out
}

fn wg(host: &Host, args: &[&str]) -> String {
    let mut full = vec!["wg"];
    full.extend_from_slice(args);
    host.run(&full).expect_ok(&format!("wg {args:?}"))
}

fn live_peers(host: &Host) -> String {
    wg(host, &["show", "wg0", "peers"])
}

fn status(host: &Host) -> String {
    let out = host.wgp2p_ok(&["status"]);
    eprintln!("{}$ wgp2p status\n{out}", host.name());
    out
}

/// Runs the advice `status` on `host` gives for `finding`, which must be
/// `wgp2p repair`, while `host` pings `ip` (no ping may drop); its stdout.
fn repair_as_advised(host: &Host, finding: &str, ip: &str) -> String {
    let command = advice(&status(host), finding);
    assert_eq!(command, ["wgp2p", "repair"]);
    follow_without_loss(host, ip, &command)
}

fn assert_no_drift(host: &Host) {
    let shown = status(host);
    assert!(!shown.contains("DRIFT"), "{shown}");
}

/// Three public hosts in a full mesh that ping each other.
fn mesh(lab: &Lab) -> ([Host; 3], Vec<lab::AddPeerLine>) {
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
    assert_pings(&hosts[0], "10.15.0.2");
    assert_pings(&hosts[0], "10.15.0.3");
    (hosts, lines)
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn drift_both_ways_is_repaired_by_following_status_verbatim() {
    let lab = Lab::new();
    let ([a, _b, _c], lines) = mesh(&lab);
    let enterprise = lines[1].public_key();

    // A configured peer removed live.
    wg(&a, &["set", "wg0", "peer", enterprise, "remove"]);
    assert!(status(&a).contains("DRIFT"));
    let out = repair_as_advised(
        &a,
        "peer enterprise is in the config but not live",
        "10.15.0.3",
    );
    assert!(out.contains("repaired: peer enterprise"), "{out}");
    assert!(live_peers(&a).contains(enterprise));
    assert_no_drift(&a);
    assert_pings(&a, "10.15.0.2");

    // A peer live but not in the config.
    let (_, stranger) = wg_keypair();
    wg(
        &a,
        &[
            "set",
            "wg0",
            "peer",
            &stranger,
            "allowed-ips",
            "10.15.0.99/32",
        ],
    );
    let shown = status(&a);
    let command = advice(
        &shown,
        &format!("live peer {stranger} is not in the config"),
    );
    assert_eq!(command, ["wgp2p", "remove-peer", stranger.as_str()]);
    let out = follow_without_loss(&a, "10.15.0.3", &command);
    assert!(out.contains("removed live-only peer"), "{out}");
    assert!(!live_peers(&a).contains(&stranger));
    let conf = a.read_file("/etc/wireguard/wg0.conf");
    assert!(conf.contains(enterprise) && conf.contains(lines[2].public_key()));
    assert_no_drift(&a);
    assert_eq!(
        a.wgp2p_ok(&["repair"]).trim(),
        "nothing to repair: wg0 is as wg0.conf says"
    );
}

/// The reproduction: status used to advise running the add-peer
/// line again, which said "nothing changed" and left the peer missing.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn running_the_add_peer_line_again_repairs_a_peer_missing_live() {
    let lab = Lab::new();
    let ([a, _b, _c], lines) = mesh(&lab);
    wg(&a, &["set", "wg0", "peer", lines[1].public_key(), "remove"]);
    let mut out = String::new();
    let lost = a.ping_loss_while("10.15.0.3", PINGS, || out = a.add_peer(&lines[1]));
    assert_eq!(lost, 0);
    assert!(out.contains("re-applied live (drift repair"), "{out}");
    assert!(live_peers(&a).contains(lines[1].public_key()));
    assert_pings(&a, "10.15.0.2");
    // Run once more: now nothing differs.
    let out = a.add_peer(&lines[1]);
    assert!(out.contains("nothing changed"), "{out}");
    // `relay NAME direct` of a peer that is direct in the config does the same.
    wg(&a, &["set", "wg0", "peer", lines[1].public_key(), "remove"]);
    let out = a.wgp2p_ok(&["relay", "enterprise", "direct"]);
    assert!(out.contains("re-applied live"), "{out}");
    assert!(live_peers(&a).contains(lines[1].public_key()));
    let out = a.wgp2p_ok(&["relay", "enterprise", "direct"]);
    assert!(
        out.contains("nothing to change: peer enterprise is direct"),
        "{out}"
    );
}

#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn doctor_advice_run_verbatim_removes_each_finding() {
    let lab = Lab::new();
    let ([a, _b, _c], lines) = mesh(&lab);
    let enterprise = lines[1].public_key();
    wg(&a, &["set", "wg0", "listen-port", "51999"]);
    wg(
        &a,
        &[
            "set",
            "wg0",
            "peer",
            enterprise,
            "allowed-ips",
            "10.15.0.2/32,10.15.9.0/24",
            "persistent-keepalive",
            "0",
        ],
    );
    let before = wg(&a, &["show", "wg0", "dump"]);
    let dry = a.wgp2p_ok(&["repair", "--dry-run"]);
    assert!(
        dry.contains("would repair: the interface listens on port 51999"),
        "{dry}"
    );
    assert!(
        dry.contains("would repair: peer enterprise differs live"),
        "{dry}"
    );
    let after_dry = wg(&a, &["show", "wg0", "dump"]);
    let settings = |dump: &str| -> Vec<String> {
        // Keys, endpoints, allowed IPs and keepalives (not handshake times
        // nor byte counts), in a stable order (the device's is random).
        let mut lines: Vec<String> = dump
            .lines()
            .map(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                // The interface line starts with the private key: left out.
                let keep: &[usize] = if fields.len() > 5 {
                    &[0, 1, 2, 3, 7]
                } else {
                    &[1, 2, 3]
                };
                keep.iter()
                    .filter_map(|i| fields.get(*i).copied())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(
        settings(&before),
        settings(&after_dry),
        "a dry run changed the device"
    );

    let doctor = a.wgp2p(&["doctor"]);
    eprintln!("defiant$ wgp2p doctor\n{}", doctor.stdout);
    let findings = [
        "listens on port 51999 but the config says port 51820",
        "peer enterprise differs live: allowed IPs",
    ];
    for finding in findings {
        let now = a.wgp2p(&["doctor"]).stdout;
        if !now.contains(finding) {
            // Repaired with an earlier one: `wgp2p repair` repairs all.
            continue;
        }
        let command = advice(&now, finding);
        follow_without_loss(&a, "10.15.0.3", &command);
        let after = a.wgp2p(&["doctor"]).stdout;
        assert!(
            !after.contains(finding),
            "{finding:?} still found:\n{after}"
        );
    }
    let dump = wg(&a, &["show", "wg0", "dump"]);
    assert!(
        dump.lines().next().unwrap_or_default().contains("51820"),
        "{dump}"
    );
    let allowed = wg(&a, &["show", "wg0", "allowed-ips"]);
    assert!(!allowed.contains("10.15.9.0/24"), "{allowed}");
    let keepalive = wg(&a, &["show", "wg0", "persistent-keepalive"]);
    assert!(
        keepalive
            .lines()
            .any(|l| l.starts_with(enterprise) && l.ends_with("25")),
        "{keepalive}"
    );
    assert_pings(&a, "10.15.0.2");
}

/// A relayed peer whose direct tunnel still runs live: `repair` removes
/// the tunnel, and `remove-peer NAME` removes it with the peer (it used
/// to edit the config, print "removed (live)" and leave it running).
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn relayed_peer_with_a_direct_tunnel_live() {
    let lab = Lab::new();
    let ([a, _b, c], lines) = mesh(&lab);
    let voyager = lines[2].public_key();
    a.wgp2p_ok(&["relay", "voyager", "via", "enterprise"]);
    assert!(!live_peers(&a).contains(voyager));
    let endpoint = c.endpoint(51820);
    let direct_tunnel = [
        "set",
        "wg0",
        "peer",
        voyager,
        "endpoint",
        &endpoint,
        "allowed-ips",
        "10.15.0.3/32",
    ];

    // `relay` run again re-applies what the device lost.
    wg(&a, &direct_tunnel);
    let out = a.wgp2p_ok(&["relay", "voyager", "via", "enterprise"]);
    assert!(out.contains("re-applied live"), "{out}");
    assert!(!live_peers(&a).contains(voyager));

    // status names it and its advice removes it.
    wg(&a, &direct_tunnel);
    repair_as_advised(&a, "has a direct tunnel live", "10.15.0.2");
    assert!(!live_peers(&a).contains(voyager));
    let allowed = wg(&a, &["show", "wg0", "allowed-ips"]);
    let enterprise_line = allowed
        .lines()
        .find(|l| l.starts_with(lines[1].public_key()))
        .unwrap_or_default();
    assert!(enterprise_line.contains("10.15.0.3/32"), "{allowed}");
    assert_no_drift(&a);

    // remove-peer takes the live direct tunnel with it.
    wg(&a, &direct_tunnel);
    let out = a.wgp2p_ok(&["remove-peer", "voyager"]);
    assert!(out.contains("removed peer voyager"), "{out}");
    assert!(!live_peers(&a).contains(voyager), "{}", live_peers(&a));
    let conf = a.read_file("/etc/wireguard/wg0.conf");
    assert!(!conf.contains(voyager), "{conf}");
    assert_no_drift(&a);
}

/// The reproduction: `remove-peer KEY` of a peer that is live but
/// not in the config exited 4 ("no peer named or keyed").
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn remove_peer_key_removes_a_live_only_peer() {
    let lab = Lab::new();
    let ([a, _b, _c], _) = mesh(&lab);
    let (_, stranger) = wg_keypair();
    wg(
        &a,
        &[
            "set",
            "wg0",
            "peer",
            &stranger,
            "allowed-ips",
            "10.15.0.99/32",
        ],
    );
    let conf_before = a.read_file("/etc/wireguard/wg0.conf");
    a.wgp2p_ok(&["remove-peer", &stranger]);
    assert!(!live_peers(&a).contains(&stranger));
    assert_eq!(a.read_file("/etc/wireguard/wg0.conf"), conf_before);
    // Unknown to both: still an error that changes nothing.
    let again = a.wgp2p(&["remove-peer", &stranger]);
    assert_eq!(again.status.and_then(|s| s.code()), Some(4), "{again}");
}

/// The reproduction: `remove-peer` of a relayed peer edited the
/// config and printed "removed (live)" while its direct tunnel kept running.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn remove_peer_of_a_relayed_peer_removes_its_live_direct_tunnel() {
    let lab = Lab::new();
    let ([a, _b, c], lines) = mesh(&lab);
    let voyager = lines[2].public_key();
    a.wgp2p_ok(&["relay", "voyager", "via", "enterprise"]);
    let endpoint = c.endpoint(51820);
    wg(
        &a,
        &[
            "set",
            "wg0",
            "peer",
            voyager,
            "endpoint",
            &endpoint,
            "allowed-ips",
            "10.15.0.3/32",
        ],
    );
    a.wgp2p_ok(&["remove-peer", voyager]);
    assert!(!live_peers(&a).contains(voyager), "{}", live_peers(&a));
    assert!(!a.read_file("/etc/wireguard/wg0.conf").contains(voyager));
}

/// Down: status's and doctor's advice brings the interface back.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn down_advice_brings_the_interface_up() {
    let lab = Lab::new();
    let ([a, _b, _c], _) = mesh(&lab);
    a.wgp2p_ok(&["stop"]);
    let shown = status(&a);
    let command = advice(&shown, "enterprise: interface is down");
    assert_eq!(command, ["wgp2p", "start"]);
    follow(&a, &command);
    assert!(!status(&a).contains("interface is down"));
    assert_pings(&a, "10.15.0.2");

    a.wgp2p_ok(&["stop"]);
    let doctor = a.wgp2p(&["doctor"]).stdout;
    let command = advice(&doctor, "wg0 is down");
    follow(&a, &command);
    let doctor = a.wgp2p(&["doctor"]).stdout;
    assert!(!doctor.contains("wg0 is down"), "{doctor}");
    assert_pings(&a, "10.15.0.3");
}

/// A preshared key written into both configs by hand, and a private key
/// changed live: each is DRIFT in status and `wgp2p repair` (as advised)
/// sets it live; the tunnels work with the key afterwards.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn preshared_and_private_key_drift_are_repaired() {
    let lab = Lab::new();
    let ([a, b, _c], lines) = mesh(&lab);
    let (psk, _) = wg_keypair();
    // The same PresharedKey for the a–b pair in both configs.
    for (host, peer) in [(&a, lines[1].public_key()), (&b, lines[0].public_key())] {
        let conf = host.read_file("/etc/wireguard/wg0.conf");
        let edited = conf.replace(
            &format!("PublicKey = {peer}\n"),
            &format!("PublicKey = {peer}\nPresharedKey = {psk}\n"),
        );
        assert_ne!(conf, edited);
        host.write_file("/etc/wireguard/wg0.conf", &edited);
    }
    for host in [&a, &b] {
        let shown = status(host);
        let command = advice(&shown, "no preshared key live, one in the config");
        assert_eq!(command, ["wgp2p", "repair"]);
        follow(host, &command);
        let keys = wg(host, &["show", "wg0", "preshared-keys"]);
        assert!(
            keys.contains(&psk),
            "preshared key not live on {}",
            host.name()
        );
        assert_no_drift(host);
    }
    assert_pings(&a, "10.15.0.2");

    // Another private key live than the config's.
    let (other, _) = wg_keypair();
    a.write_file("/run/other.key", &other);
    wg(&a, &["set", "wg0", "private-key", "/run/other.key"]);
    repair_as_advised(&a, "the live private key is not the config's", "10.15.0.3");
    assert_eq!(
        wg(&a, &["show", "wg0", "public-key"]).trim(),
        lines[0].public_key()
    );
    assert_no_drift(&a);
    assert_pings(&a, "10.15.0.2");
}

/// The reproduction: `import-key` killed between its renames, then
/// run again, said "already the node's key: nothing changed" while the
/// live interface kept the old key. Now the next run completes the files
/// (the journal) and sets the key live.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn import_key_killed_between_renames_then_run_again_sets_the_key_live() {
    let lab = Lab::new();
    let ([a, _b, _c], lines) = mesh(&lab);
    let (new_key, new_public) = wg_keypair();
    a.write_file("/run/new.key", &new_key);
    // Renames: the journal's, then wg0.conf's: killed there, with the
    // journal in place and no file replaced yet.
    let killed = a.sh(
        "WGP2P_SERVICE=wg-quick WGP2P_STUN_SERVERS= strace -f -o /dev/null \
         -e trace=rename,renameat,renameat2 \
         -e inject=rename,renameat,renameat2:signal=SIGKILL:when=2 \
         \"$1\" import-key < /run/new.key",
        &[lab::WGP2P.as_str()],
    );
    assert!(!killed.success(), "import-key was not killed: {killed:?}");
    assert_eq!(
        wg(&a, &["show", "wg0", "public-key"]).trim(),
        lines[0].public_key(),
        "killed before the device call, the old key is still live"
    );
    let again = a
        .sh(
            "WGP2P_SERVICE=wg-quick WGP2P_STUN_SERVERS= \"$1\" import-key < /run/new.key",
            &[lab::WGP2P.as_str()],
        )
        .expect_ok("import-key run again");
    eprintln!("defiant$ wgp2p import-key < /run/new.key\n{again}");
    assert!(again.contains("re-applied live"), "{again}");
    assert_eq!(wg(&a, &["show", "wg0", "public-key"]).trim(), new_public);
    assert_eq!(a.read_file("/etc/wireguard/publickey").trim(), new_public);
    assert_no_drift(&a);
    // Once more: now nothing differs.
    let once_more = a
        .sh(
            "WGP2P_SERVICE=wg-quick WGP2P_STUN_SERVERS= \"$1\" import-key < /run/new.key",
            &[lab::WGP2P.as_str()],
        )
        .expect_ok("import-key once more");
    assert!(once_more.contains("nothing changed"), "{once_more}");
}

/// An endpoint written with a UDP service name as port (`HOST:domain`,
/// which wg(8) resolves through getaddrinfo): status reads it, and repair
/// sets the peer live *with* that endpoint (port 53), not without one.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_peer_at_a_service_name_port_is_repaired_with_its_endpoint() {
    let lab = Lab::new();
    let ([a, b, _c], lines) = mesh(&lab);
    let enterprise = lines[1].public_key();
    // enterprise now listens on 53/udp, `domain` in /etc/services.
    wg(&b, &["set", "wg0", "listen-port", "53"]);
    let conf = a.read_file("/etc/wireguard/wg0.conf");
    let written = lines[1].endpoint();
    let (host, _) = written.rsplit_once(':').expect("HOST:PORT");
    let named = format!("{host}:domain");
    a.write_file(
        "/etc/wireguard/wg0.conf",
        &conf.replace(
            &format!("Endpoint = {written}"),
            &format!("Endpoint = {named}"),
        ),
    );
    wg(&a, &["set", "wg0", "peer", enterprise, "remove"]);
    let out = repair_as_advised(
        &a,
        "peer enterprise is in the config but not live",
        "10.15.0.3",
    );
    assert!(out.contains("repaired: peer enterprise"), "{out}");
    let endpoints = wg(&a, &["show", "wg0", "endpoints"]);
    assert!(
        endpoints.contains(&format!("{enterprise}\t{host}:53")),
        "repair must set the endpoint it resolves from {named}:\n{endpoints}"
    );
    assert_pings(&a, "10.15.0.2");
    assert_no_drift(&a);
    assert!(a.read_file("/etc/wireguard/wg0.conf").contains(&named));
}
