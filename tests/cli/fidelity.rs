//! Faithful to every wg0.conf: the reproductions of files wgp2p did not
//! write itself (header comments, prefix-less AllowedIPs, web-UI and PiVPN
//! comment blocks, hand-written names with spaces, preshared keys), run
//! through the commands a user runs.

use super::node::{Node, conf_value};
use crate::{ADD_ALICE, ALICE_KEY, ALICE_PRIVATE, BOB_KEY, CAROL_KEY};

const PSK: &str = "FIdH/I/aAmjEtXsQ96tzzZkNRnV2a26clyAqfkUqkwA=";

/// An installed node whose config gets `extra` appended by hand.
fn node_with(extra: &str) -> (Node, String) {
    let node = Node::installed();
    let text = format!("{}{extra}", node.conf());
    node.write("wg0.conf", &text);
    (node, text)
}

fn add(node: &Node, name: &str, endpoint: &str, key: &str, ip: &str, options: &[&str]) {
    let mut args = vec!["add-peer", name, endpoint, key, ip];
    args.extend_from_slice(options);
    node.wgp2p().args(args).succeeds();
}

/// `[Peer] # laptop` was not a header: the laptop's lines merged into the
/// peer above, add-peer of that peer deleted them and remove-peer took both.
#[test]
fn a_comment_after_a_peer_header_keeps_the_peers_apart() {
    let (node, _) = node_with("");
    node.wgp2p().args(ADD_ALICE).succeeds();
    let laptop = format!("\n[Peer] # laptop\nPublicKey = {BOB_KEY}\nAllowedIPs = 10.15.0.3/32\n");
    let text = format!("{}{laptop}", node.conf());
    node.write("wg0.conf", &text);
    add(
        &node,
        "alice",
        "198.51.100.20:51820",
        ALICE_KEY,
        "10.15.0.2",
        &[],
    );
    assert_eq!(
        node.conf(),
        text.replace("198.51.100.2:51820", "198.51.100.20:51820")
    );
    node.wgp2p().args(["remove-peer", "alice"]).succeeds();
    let conf = node.conf();
    assert!(conf.ends_with(&laptop), "{conf}");
    assert!(!conf.contains(ALICE_KEY), "{conf}");
}

/// `[Interface] # main` was not found: install appended a second one.
#[test]
fn a_comment_after_the_interface_header_is_still_the_interface() {
    let node = Node::installed();
    let text = node.conf().replacen("[Interface]", "[Interface] # main", 1);
    node.write("wg0.conf", &text);
    node.wgp2p()
        .args(["install", "10.15.0.1/24", "--endpoint", "203.0.113.1"])
        .succeeds();
    let conf = node.conf();
    assert_eq!(conf.matches("[Interface]").count(), 1, "{conf}");
    assert!(conf.starts_with("[Interface] # main\n"), "{conf}");
}

/// `AllowedIPs = 10.15.0.3` (a host route for wg) made every command fail.
#[test]
fn an_address_without_prefix_is_read_as_a_host_route() {
    let (node, _) = node_with(&format!(
        "\n[Peer]\nPublicKey = {BOB_KEY}\nAllowedIPs = 10.15.0.3\n"
    ));
    let out = node.wgp2p().args(["--json", "status"]).succeeds();
    out.stdout_has("\"10.15.0.3/32\"");
    node.wgp2p().args(ADD_ALICE).succeeds();
    node.wgp2p()
        .args([
            "add-peer",
            "carol",
            "198.51.100.4:51820",
            CAROL_KEY,
            "10.15.0.3",
        ])
        .fails()
        .stderr_has("overlaps 10.15.0.3/32");
}

/// Re-pasting a peer's line with a new endpoint dropped the subnets and
/// keepalive that `--allowed-ips`/`--keepalive` had added.
#[test]
fn re_pasting_a_line_keeps_what_options_added() {
    let node = Node::installed();
    let options = ["--allowed-ips", "192.168.50.0/24", "--keepalive", "10"];
    add(
        &node,
        "alice",
        "198.51.100.2:51820",
        ALICE_KEY,
        "10.15.0.2",
        &options,
    );
    add(
        &node,
        "alice",
        "198.51.100.22:51820",
        ALICE_KEY,
        "10.15.0.2",
        &[],
    );
    let conf = node.conf();
    assert!(
        conf.contains("AllowedIPs = 10.15.0.2/32, 192.168.50.0/24\n"),
        "{conf}"
    );
    assert!(conf.contains("PersistentKeepalive = 10\n"), "{conf}");
    assert!(conf.contains("Endpoint = 198.51.100.22:51820\n"), "{conf}");
    // An explicit option replaces.
    let options = ["--allowed-ips", "192.168.60.0/24", "--keepalive", "0"];
    add(
        &node,
        "alice",
        "198.51.100.22:51820",
        ALICE_KEY,
        "10.15.0.2",
        &options,
    );
    let conf = node.conf();
    assert!(
        conf.contains("AllowedIPs = 10.15.0.2/32, 192.168.60.0/24\n"),
        "{conf}"
    );
    assert!(conf.contains("PersistentKeepalive = 0\n"), "{conf}");
}

/// `relay NAME via R` then `relay NAME direct` dropped the PresharedKey,
/// turned 192.168.50.0/24 into /32 and lost the comment; a name with a
/// space made relay write a line nothing could read back.
#[test]
fn a_relay_round_trip_gives_the_file_back() {
    let (node, _) = node_with("");
    add(
        &node,
        "relay",
        "198.51.100.2:51820",
        ALICE_KEY,
        "10.15.0.2",
        &[],
    );
    let far = format!(
        "\n# the far office, behind a symmetric NAT\n[Peer] # far\n# Name = Bob laptop\nPublicKey = {BOB_KEY}\nPresharedKey = {PSK}\nAllowedIPs = 10.15.0.3 # tunnel\nAllowedIPs = 192.168.50.0/24\nEndpoint = 198.51.100.3:51820\n"
    );
    let text = format!("{}{far}", node.conf());
    node.write("wg0.conf", &text);
    node.wgp2p()
        .args(["relay", "Bob laptop", "via", "relay"])
        .succeeds();
    let relayed = node.conf();
    assert!(!relayed.contains("[Peer] # far"), "{relayed}");
    assert!(relayed.contains("# Relay = - "), "{relayed}");
    // Every command still reads the file.
    let out = node.wgp2p().args(["--json", "status"]).succeeds();
    out.stdout_has("Bob laptop");
    node.wgp2p()
        .args(["relay", "Bob laptop", "direct"])
        .succeeds();
    assert_eq!(node.conf(), text);
}

/// remove-peer took the comment block above the *next* peer and left its
/// own behind (web UIs and PiVPN label a peer above its `[Peer]`).
#[test]
fn remove_peer_takes_its_own_comment_block() {
    let alice = format!(
        "\n# Client: alice (5f1c7e3a)\n# Created: 2024-03-02\n[Peer]\nPublicKey = {ALICE_KEY}\nPresharedKey = {PSK}\nAllowedIPs = 10.15.0.2/32\n"
    );
    let bob = format!(
        "\n### begin bob ###\n[Peer]\nPublicKey = {BOB_KEY}\nAllowedIPs = 10.15.0.3/32\n### end bob ###\n"
    );
    let (node, text) = node_with(&format!("{alice}{bob}"));
    node.wgp2p().args(["remove-peer", ALICE_KEY]).succeeds();
    assert_eq!(node.conf(), text.replace(&alice, ""));
    let (node, text) = node_with(&format!("{alice}{bob}"));
    node.wgp2p().args(["remove-peer", BOB_KEY]).succeeds();
    assert_eq!(node.conf(), text.replace(&bob, ""));
}

/// Where wgp2p must refuse a file (wg would refuse it too), the error names
/// the file, the line and the offending text.
#[test]
fn a_file_wg_refuses_is_refused_with_file_line_and_text() {
    let (node, text) = node_with(&format!(
        "\n[Peer]\nPublicKey = {BOB_KEY}\nAllowedIPs = 10.15.0.3/33\n"
    ));
    let line = text.lines().count();
    let out = node.wgp2p().args(["status"]).fails();
    out.stderr_has(&format!(
        "wg0.conf: line {line} \"AllowedIPs = 10.15.0.3/33\""
    ));
    out.stderr_has("expected");
    assert_eq!(node.conf(), text);
}

/// `# Relay = the office box` is an administrator's note, a comment to
/// wg: it made every command fail, `status` included. Only a `# Relay`
/// line whose second word is a key is wgp2p's; a broken one of those is
/// refused with the file, its line and its text.
#[test]
fn a_hand_written_relay_comment_is_only_a_comment() {
    let note = format!(
        "\n[Peer]\n# Relay = the office box\nPublicKey = {BOB_KEY}\nAllowedIPs = 10.15.0.3/32\n"
    );
    let (node, text) = node_with(&note);
    node.wgp2p().args(["--json", "status"]).succeeds();
    node.wgp2p().args(["export"]).succeeds();
    node.wgp2p().args(ADD_ALICE).succeeds();
    node.wgp2p().args(["remove-peer", "alice"]).succeeds();
    assert_eq!(node.conf(), text);
    let broken = text.replace(
        "the office box",
        &format!("far {CAROL_KEY} 192.0.2.9:51820 10.15.0.9/33"),
    );
    node.write("wg0.conf", &broken);
    let line = broken
        .lines()
        .position(|l| l.starts_with("# Relay"))
        .unwrap()
        + 1;
    let out = node.wgp2p().args(["status"]).fails();
    out.stderr_has(&format!("wg0.conf: line {line} \"# Relay = far "))
        .stderr_has("expected NAME KEY ENDPOINT NETS");
}

/// A comment in Latin-1 (an old hand-edited file): wg-quick runs it, so
/// status, export and doctor show it; an edit, which could not write its
/// bytes back as they are, refuses with the file, the line and the fix,
/// changing nothing.
#[test]
fn a_config_not_in_utf8_is_shown_and_edits_name_its_line() {
    let node = Node::installed();
    let mut bytes = node.conf().into_bytes();
    bytes.extend_from_slice(b"\n# J\xf6rg's laptop\n[Peer]\nPublicKey = ");
    bytes.extend_from_slice(BOB_KEY.as_bytes());
    bytes.extend_from_slice(b"\nAllowedIPs = 10.15.0.3/32\n");
    std::fs::write(node.path("wg0.conf"), &bytes).unwrap();
    let line = bytes
        .split(|b| *b == b'\n')
        .position(|l| l.starts_with(b"# J"))
        .unwrap()
        + 1;
    node.wgp2p()
        .args(["--json", "status"])
        .succeeds()
        .stdout_has(BOB_KEY);
    node.wgp2p().args(["export"]).succeeds();
    let problem = format!("wg0.conf: line {line} \"# J\u{fffd}rg's laptop\" is not valid UTF-8");
    node.wgp2p()
        .args(["doctor"])
        .fails()
        .stdout_has(&problem)
        .stdout_has("iconv");
    let before = node.snapshot();
    node.wgp2p().args(ADD_ALICE).fails().stderr_has(&problem);
    assert_eq!(node.snapshot().diff(&before), "");
}

/// export (and add-peer without arguments) only read: a config at 0644,
/// which wg-quick runs with a warning, is shown; a change refuses it with
/// the chmod that fixes it.
#[test]
fn a_read_only_command_shows_a_config_at_0644() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::installed();
    std::fs::set_permissions(
        node.path("wg0.conf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    node.wgp2p().args(["export"]).succeeds();
    node.wgp2p().args(["add-peer"]).succeeds();
    node.wgp2p().args(["status"]).succeeds();
    node.wgp2p().args(ADD_ALICE).fails().stderr_has("chmod 600");
}

/// A key in two `[Peer]` sections (a pasted section whose key was not
/// changed): wg holds one peer, the later section setting its endpoint and
/// keepalive and replacing its allowed IPs. status showed two peers, and
/// remove-peer took one section while the device lost the key. Now status
/// shows the one peer wg holds, doctor names both lines, and an edit
/// refuses with both lines, changing nothing.
#[test]
fn a_key_in_two_sections_is_one_peer_and_edits_refuse_it() {
    let (node, text) = node_with(&format!(
        "\n[Peer]\n# Name = laptop\nPublicKey = {BOB_KEY}\nAllowedIPs = 10.15.0.3/32\nPersistentKeepalive = 25\n\n[Peer]\nPublicKey = {BOB_KEY}\nAllowedIPs = 10.15.0.4/32\nEndpoint = 198.51.100.3:51820\n"
    ));
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(BOB_KEY))
        .map(|(i, _)| i + 1)
        .collect();
    let out = node.wgp2p().args(["--json", "status"]).succeeds();
    assert_eq!(out.stdout.matches(BOB_KEY).count(), 1, "{out}");
    out.stdout_has("\"10.15.0.4/32\"")
        .stdout_has("198.51.100.3:51820")
        .stdout_has("\"laptop\"");
    assert!(!out.stdout.contains("10.15.0.3/32"), "{out}");
    let problem = format!(
        "wg0.conf: line {} \"PublicKey = {}",
        lines[1],
        &BOB_KEY[..28]
    );
    let first = format!("line {} has it too", lines[0]);
    node.wgp2p()
        .args(["doctor"])
        .fails()
        .stdout_has(&problem)
        .stdout_has(&first);
    let before = node.snapshot();
    for command in [&["remove-peer", BOB_KEY][..], &ADD_ALICE] {
        node.wgp2p()
            .args(command.iter().copied())
            .fails()
            .stderr_has(&problem)
            .stderr_has(&first)
            .stderr_has("merge them");
    }
    assert_eq!(node.snapshot().diff(&before), "");
}

/// A refused `PrivateKey` or `PresharedKey` line was quoted like any
/// other: 27 characters of the secret on stderr. Its line is named, its
/// value never shown.
#[test]
fn a_refused_secret_line_is_named_never_shown() {
    let node = Node::installed();
    let conf = node.conf();
    let private = conf_value(&conf, "Interface", 0, "PrivateKey").unwrap();
    let line = conf
        .lines()
        .position(|l| l.starts_with("PrivateKey"))
        .unwrap()
        + 1;
    node.write("wg0.conf", &conf.replace(&private, &format!("{private}X")));
    node.wgp2p()
        .args(["status"])
        .fails()
        .stderr_has(&format!("wg0.conf: line {line} \"PrivateKey = …\""))
        .never_shows(&private[..8]);
    let psk = &ALICE_KEY[..40];
    let (node, text) = node_with(&format!(
        "\n[Peer]\nPublicKey = {BOB_KEY}\nPresharedKey = {psk}\n"
    ));
    node.wgp2p()
        .args(["status"])
        .fails()
        .stderr_has(&format!(
            "wg0.conf: line {} \"PresharedKey = …\"",
            text.lines().count()
        ))
        .never_shows(&psk[..8]);
}

/// wg(8) reads a port through getaddrinfo(3), so `Endpoint = HOST:domain`
/// and `ListenPort = domain` (a UDP service name) are ports to wg: status
/// refused the file. Now it is read, the endpoint kept as written, and
/// edits of other peers leave those lines alone; a name the services
/// database does not know is refused, as wg refuses it.
#[test]
fn a_service_name_as_port_is_read_as_wg_reads_it() {
    if !std::fs::read_to_string("/etc/services").is_ok_and(|s| s.contains("53/udp")) {
        panic!("/etc/services (netbase) with domain 53/udp is needed: apt-get install netbase");
    }
    let (node, text) = node_with(&format!(
        "\n[Peer]\nPublicKey = {BOB_KEY}\nEndpoint = 198.51.100.3:domain\nAllowedIPs = 10.15.0.3/32\n"
    ));
    let out = node.wgp2p().args(["--json", "status"]).succeeds();
    out.stdout_has("\"198.51.100.3:domain\"");
    node.wgp2p().args(["export"]).succeeds();
    node.wgp2p().args(ADD_ALICE).succeeds();
    let added = node.conf();
    assert!(
        added.starts_with(&text),
        "the hand-written lines stay as they are"
    );
    node.wgp2p().args(["remove-peer", "alice"]).succeeds();
    assert_eq!(node.conf(), text, "add then remove gives the file back");

    let listen = text.replace("ListenPort = 51820", "ListenPort = domain");
    assert_ne!(listen, text, "the installed config has a ListenPort line");
    node.write("wg0.conf", &listen);
    node.wgp2p().args(["status"]).succeeds();

    let unknown = text.replace(":domain", ":nosuchsvc");
    node.write("wg0.conf", &unknown);
    node.wgp2p()
        .args(["status"])
        .fails()
        .stderr_has("\"Endpoint = 198.51.100.3:nosuchsvc\"");
}

/// `--allowed-ips` typed by the admin may route public space, but says so;
/// a LAN or the VPN network is said nothing about.
#[test]
fn add_peer_warns_when_allowed_ips_cover_public_space() {
    let node = Node::installed();
    let args = |nets: &str| {
        vec![
            "add-peer".to_string(),
            "alice".into(),
            "198.51.100.2:51820".into(),
            ALICE_KEY.into(),
            "10.15.0.2".into(),
            "--allowed-ips".into(),
            nets.into(),
        ]
    };
    node.wgp2p()
        .args(args("192.168.50.0/24,fd00:7::/64"))
        .succeeds()
        .stderr_is_empty();
    node.wgp2p()
        .args(args("192.168.50.0/24,8.8.8.0/24"))
        .succeeds()
        .stderr_has("warning: --allowed-ips 8.8.8.0/24 covers public addresses");
    assert!(node.conf().contains("8.8.8.0/24"), "{}", node.conf());
}

/// `--port`/`WG_PORT` means the config's ListenPort for every command: a
/// line printed with another port would announce a port this node does
/// not listen on, so it is refused with the install command that moves
/// the port, and that command works as printed.
#[test]
fn a_port_the_config_does_not_listen_on_is_refused_not_printed() {
    let node = Node::installed();
    let before = node.snapshot();
    for args in [vec!["add-peer"], vec!["export"]] {
        let out = node.wgp2p().args(&args).env("WG_PORT", "51999").fails();
        assert_eq!(out.code, Some(3), "{out}");
        out.stderr_has("--port/WG_PORT 51999 differs from ListenPort 51820");
        assert!(!out.stdout.contains("51999"), "{out}");
    }
    assert_eq!(node.snapshot().diff(&before), "", "nothing changed");
    let out = node
        .wgp2p()
        .args(["export"])
        .env("WG_PORT", "51999")
        .fails();
    let advice = out
        .stderr
        .split('`')
        .nth(1)
        .expect("a command in backticks")
        .to_string();
    let words: Vec<&str> = advice.split_whitespace().collect();
    assert_eq!(words[0], "wgp2p", "{advice}");
    assert!(words.contains(&"--config-dir"), "{advice}");
    node.wgp2p().args(&words[1..]).succeeds();
    assert!(
        node.conf().contains("ListenPort = 51999\n"),
        "{}",
        node.conf()
    );
    node.wgp2p()
        .args(["add-peer"])
        .env("WG_PORT", "51999")
        .succeeds()
        .stdout_has(":51999 ");
}

/// Two `[Interface]` sections: wg runs the last PrivateKey and ListenPort,
/// so the line this node prints and status's public key are that
/// identity's, never the first section's key with the last one's port.
#[test]
fn the_printed_identity_is_the_one_wg_runs() {
    let node = Node::installed();
    let conf = node.conf();
    node.write(
        "wg0.conf",
        &format!("{conf}\n[Interface]\nPrivateKey = {ALICE_PRIVATE}\nListenPort = 51821\n"),
    );
    node.wgp2p()
        .args(["add-peer"])
        .succeeds()
        .stdout_has(&format!(":51821 {ALICE_KEY} "));
    node.wgp2p()
        .args(["status"])
        .succeeds()
        .stdout_has(&format!("public key: {ALICE_KEY}"));
}
