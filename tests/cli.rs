//! The `wgp2p` command line on files only: every run has a blank
//! environment, `WGP2P_SERVICE=none` (no interface or service is touched),
//! a temporary `WG_CONFIG_DIR` and no STUN servers (no network).

mod cli {
    pub mod advice;
    pub mod agent;
    pub mod exit_codes;
    pub mod fidelity;
    pub mod matrix;
    pub mod membership;
    pub mod node;
    pub mod pipes;
    pub mod qr;
    pub mod roster;
    pub mod state;
}

use std::os::unix::fs::PermissionsExt;

use cli::node::{Node, conf_value, sections};
use wgp2p_lab::wg_pubkey;

/// The private and public key of peer alice.
pub const ALICE_PRIVATE: &str = "SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=";
pub const ALICE_KEY: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";
/// The add-peer arguments that add alice at 10.15.0.2, used by many tests.
pub const ADD_ALICE: [&str; 5] = [
    "add-peer",
    "alice",
    "198.51.100.2:51820",
    ALICE_KEY,
    "10.15.0.2",
];
/// Public keys of peers bob and carol.
pub const BOB_KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
/// The add-peer arguments that add bob at 10.15.0.3.
pub const ADD_BOB: [&str; 5] = [
    "add-peer",
    "bob",
    "198.51.100.3:51820",
    BOB_KEY,
    "10.15.0.3",
];
pub const CAROL_KEY: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
/// A private key for this node in the "old script" tests.
const PRIV_OWN: &str = "QJRBRzLEyYrAc6igP44D0lZexzaFdFSycMcUPX7Ex18=";

const COMMANDS: [&str; 10] = [
    "dependencies",
    "install",
    "uninstall",
    "start",
    "stop",
    "status",
    "import-key",
    "add-peer",
    "remove-peer",
    "provision-peer",
];

/// An installed node with peer alice (`ALICE_KEY`, 10.15.0.2) and a provisioned
/// device `phone`.
fn node_with_alice() -> Node {
    let node = Node::installed();
    add_alice(&node);
    node.wgp2p()
        .args([
            "provision-peer",
            "phone",
            "198.51.100.9:51820",
            "10.15.0.9/24",
        ])
        .succeeds();
    node
}

fn add_alice(node: &Node) {
    node.wgp2p().args(ADD_ALICE).succeeds().stdout_has("alice");
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {path:?}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

// ---- install ---------------------------------------------------------------

#[test]
fn install_prints_one_add_peer_line_with_placeholder_and_warning() {
    let node = Node::new();
    let out = node.install("10.15.0.1/24");
    let line = out.add_peer_line();
    assert_eq!(line.endpoint, "<PUBLIC-IP>:51820", "{out}");
    assert_eq!(line.ip, "10.15.0.1");
    assert_eq!(line.key, node.public_key());
    assert!(
        !line.name.is_empty() && !line.name.starts_with('-'),
        "{out}"
    );
    out.stderr_has("warning");
}

#[test]
fn install_line_key_is_the_public_key_of_the_private_key() {
    let node = Node::new();
    let line = node.install("10.15.0.1/24").add_peer_line();
    let private = node.read("privatekey");
    assert_eq!(line.key, wg_pubkey(private.trim()));
    assert_eq!(node.read("publickey"), format!("{}\n", line.key));
    assert_eq!(node.read("address"), "10.15.0.1/24\n");
    let conf = node.conf();
    assert_eq!(
        conf_value(&conf, "Interface", 0, "PrivateKey").as_deref(),
        Some(private.trim())
    );
    assert_eq!(
        conf_value(&conf, "Interface", 0, "Address").as_deref(),
        Some("10.15.0.1/24")
    );
    assert_eq!(
        conf_value(&conf, "Interface", 0, "ListenPort").as_deref(),
        Some("51820")
    );
    assert!(!conf.contains("SaveConfig"), "{conf}");
}

#[test]
fn install_endpoint_is_remembered() {
    let node = Node::new();
    let out = node
        .wgp2p()
        .args(["install", "10.15.0.1/24", "--endpoint", "203.0.113.7"])
        .succeeds();
    let line = out.add_peer_line();
    assert_eq!(line.endpoint, "203.0.113.7:51820");
    assert!(!out.stderr.contains("warning"), "{out}");
    // Kept without a port: the line follows the listen port.
    assert_eq!(node.read("endpoint"), "203.0.113.7\n");
    let again = node.wgp2p().args(["add-peer"]).succeeds();
    assert_eq!(again.add_peer_line(), line);
    // A re-install without --endpoint keeps it too.
    let reinstall = node.install("10.15.0.1/24");
    assert_eq!(reinstall.add_peer_line(), line);
}

#[test]
fn install_uses_wgp2p_endpoint_env() {
    let node = Node::new();
    let out = node
        .wgp2p()
        .args(["install", "10.15.0.1/24"])
        .env("WGP2P_ENDPOINT", "vpn.example.org:4000")
        .succeeds();
    assert_eq!(out.add_peer_line().endpoint, "vpn.example.org:4000");
    let out = node
        .wgp2p()
        .args(["add-peer"])
        .env("WGP2P_ENDPOINT", "198.51.100.77")
        .succeeds();
    assert_eq!(out.add_peer_line().endpoint, "198.51.100.77:51820");
}

#[test]
fn install_endpoint_beats_wgp2p_endpoint_env() {
    let node = Node::new();
    let out = node
        .wgp2p()
        .args(["install", "10.15.0.1/24", "--endpoint", "203.0.113.7:5555"])
        .env("WGP2P_ENDPOINT", "198.51.100.77")
        .succeeds();
    assert_eq!(out.add_peer_line().endpoint, "203.0.113.7:5555");
}

#[test]
fn reinstall_keeps_keys_and_peers() {
    let node = node_with_alice();
    let keys = (node.read("privatekey"), node.read("publickey"));
    let conf = node.conf();
    let out = node.install("10.15.0.1/24");
    assert_eq!((node.read("privatekey"), node.read("publickey")), keys);
    assert_eq!(
        node.conf(),
        conf,
        "re-install must not rewrite an up-to-date conf"
    );
    assert_eq!(out.add_peer_line().key, keys.1.trim());
    assert!(node.path("provisioned-peers/phone.conf").exists());
}

#[test]
fn install_with_another_address_is_refused() {
    let node = node_with_alice();
    let before = node.snapshot();
    let out = node.wgp2p().args(["install", "10.15.0.7/24"]).fails();
    out.stderr_has("uninstall").stderr_has("10.15.0.7/24");
    assert_eq!(before.diff(&node.snapshot()), "");
}

#[test]
fn install_port_is_written_and_announced() {
    let node = Node::new();
    let out = node
        .wgp2p()
        .args(["install", "10.15.0.1/24", "--port", "51999"])
        .succeeds();
    assert!(out.add_peer_line().endpoint.ends_with(":51999"), "{out}");
    assert_eq!(
        conf_value(&node.conf(), "Interface", 0, "ListenPort").as_deref(),
        Some("51999")
    );
    // Remembered through the conf: later lines keep the port.
    let later = node.wgp2p().args(["add-peer"]).succeeds();
    assert_eq!(later.add_peer_line().endpoint, "<PUBLIC-IP>:51999");
    let other = Node::new();
    let out = other
        .wgp2p()
        .args(["install", "10.15.0.1/24", "--endpoint", "203.0.113.7"])
        .env("WG_PORT", "51999")
        .succeeds();
    assert_eq!(out.add_peer_line().endpoint, "203.0.113.7:51999");
}

#[test]
fn remembered_endpoint_without_port_follows_the_listen_port() {
    let node = Node::new();
    node.wgp2p()
        .args(["install", "10.15.0.1/24", "--endpoint", "203.0.113.7"])
        .succeeds();
    let out = node
        .wgp2p()
        .args(["install", "10.15.0.1/24", "--port", "51999"])
        .succeeds();
    assert_eq!(
        conf_value(&node.conf(), "Interface", 0, "ListenPort").as_deref(),
        Some("51999")
    );
    assert_eq!(out.add_peer_line().endpoint, "203.0.113.7:51999", "{out}");
}

#[test]
fn install_with_ipv6_address() {
    let node = Node::new();
    let out = node
        .wgp2p()
        .args(["install", "fd00:15::1/64", "--endpoint", "[2001:db8::7]"])
        .succeeds();
    let line = out.add_peer_line();
    assert_eq!(
        (line.ip.as_str(), line.endpoint.as_str()),
        ("fd00:15::1", "[2001:db8::7]:51820")
    );
}

fn assert_private_modes(node: &Node) {
    let snapshot = node.snapshot();
    assert!(snapshot.files().len() >= 5, "{snapshot:?}");
    for (path, entry) in &snapshot.0 {
        let expected = if entry.bytes.is_some() { 0o600 } else { 0o700 };
        assert_eq!(entry.mode, expected, "mode of {path:?} is {:o}", entry.mode);
    }
}

fn populate(node: &Node, umask_000: bool) {
    let run = |args: &[&str]| {
        let run = node.wgp2p().args(args.iter().copied());
        let run = if umask_000 { run.umask_000() } else { run };
        run.succeeds();
    };
    run(&["install", "10.15.0.1/24", "--endpoint", "203.0.113.7"]);
    run(&ADD_ALICE);
    run(&[
        "provision-peer",
        "phone",
        "198.51.100.9:51820",
        "10.15.0.9/24",
    ]);
    run(&["remove-peer", "alice"]);
}

#[test]
fn files_are_private() {
    let node = Node::new();
    populate(&node, false);
    assert_private_modes(&node);
}

#[test]
fn files_are_private_under_umask_000() {
    let node = Node::new();
    populate(&node, true);
    assert_private_modes(&node);
    node.wgp2p()
        .args(["import-key"])
        .stdin(PRIV_OWN)
        .umask_000()
        .succeeds();
    assert_private_modes(&node);
}

#[test]
fn install_tightens_a_loose_config_dir() {
    let node = Node::new();
    std::fs::create_dir(node.dir()).expect("create the config dir");
    std::fs::set_permissions(node.dir(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the config dir");
    node.install("10.15.0.1/24");
    assert_eq!(mode(node.dir()), 0o700);
}

#[test]
fn config_dir_option_beats_the_environment() {
    let node = Node::new();
    let other = Node::new();
    let dir = other.dir().to_str().expect("a UTF-8 temp path").to_string();
    node.wgp2p()
        .args(["--config-dir", &dir, "install", "10.15.0.1/24"])
        .succeeds();
    assert!(other.path("wg0.conf").exists());
    assert!(!node.dir().exists());
}

#[test]
fn interface_option_names_the_conf() {
    let node = Node::new();
    node.wgp2p()
        .args(["--interface", "wgmesh", "install", "10.15.0.1/24"])
        .succeeds();
    assert!(node.path("wgmesh.conf").exists());
    assert!(!node.path("wg0.conf").exists());
    node.wgp2p()
        .args(ADD_ALICE)
        .env("WG_INTERFACE", "wgmesh")
        .succeeds();
    assert!(node.read("wgmesh.conf").contains("# Name = alice"));
}

// ---- add-peer / remove-peer -------------------------------------------------

#[test]
fn add_peer_writes_a_named_section() {
    let node = Node::installed();
    let out = node
        .wgp2p()
        .args([
            "add-peer",
            "alice",
            "198.51.100.2:51820",
            ALICE_KEY,
            "10.15.0.2/24",
        ])
        .succeeds();
    out.stdout_has("alice").stderr_has("/24");
    let expected = format!(
        "[Peer]\n# Name = alice\nPublicKey = {ALICE_KEY}\nEndpoint = 198.51.100.2:51820\nAllowedIPs = 10.15.0.2/32\nPersistentKeepalive = 25\n"
    );
    assert!(node.conf().ends_with(&expected), "{}", node.conf());
}

#[test]
fn add_peer_with_subnets_and_no_keepalive() {
    let node = Node::installed();
    node.wgp2p()
        .args([
            "add-peer",
            "alice",
            "[2001:db8::2]:51820",
            ALICE_KEY,
            "10.15.0.2",
        ])
        .args(["--allowed-ips", "192.168.5.0/24", "--keepalive", "0"])
        .succeeds();
    let conf = node.conf();
    let value = |key| conf_value(&conf, "Peer", 0, key);
    assert_eq!(
        value("AllowedIPs").as_deref(),
        Some("10.15.0.2/32, 192.168.5.0/24")
    );
    assert_eq!(value("PersistentKeepalive").as_deref(), Some("0"));
    assert_eq!(value("Endpoint").as_deref(), Some("[2001:db8::2]:51820"));
}

/// `args` must be refused (exit 3) with one line holding every needle,
/// and leave every file as it was.
fn refused_route(node: &Node, args: &[&str], needles: &[&str]) {
    let before = node.snapshot();
    let out = node.wgp2p().args(args).output();
    assert_eq!(out.code, Some(3), "expected a refusal: {out}");
    for needle in needles {
        out.stderr_has(needle);
    }
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out}");
    assert_eq!(node.snapshot().diff(&before), "", "files changed: {out}");
}

/// Audit reproduction: add-peer accepted a VPN address equal to the
/// peer's own endpoint, and `--allowed-ips` over another peer's endpoint
/// or this node's public one; wg-quick then routes that endpoint into the
/// tunnel and its handshake never completes after a restart.
#[test]
fn add_peer_refuses_routes_that_cut_a_tunnel() {
    let node = Node::installed(); // public endpoint 203.0.113.1
    add_alice(&node); // endpoint 198.51.100.2
    refused_route(
        &node,
        &[
            "add-peer",
            "y",
            "198.51.100.9:51820",
            BOB_KEY,
            "198.51.100.9",
        ],
        &[
            "peer \"y\": address 198.51.100.9 is the endpoint of peer \"y\"",
            "expected a VPN address",
        ],
    );
    let over_alice = "198.51.100.0/24";
    let mut bob = ADD_BOB.to_vec();
    bob.extend(["--allowed-ips", "198.18.50.0/24, 198.51.100.0/24"]);
    refused_route(
        &node,
        &bob,
        &[
            over_alice,
            "the endpoint of peer \"alice\" (198.51.100.2)",
            "expected networks that leave 198.51.100.2 out",
        ],
    );
    let mut over_own = ADD_BOB.to_vec();
    over_own.extend(["--allowed-ips", "203.0.113.0/24"]);
    refused_route(
        &node,
        &over_own,
        &[
            "203.0.113.0/24",
            "this node's public endpoint (203.0.113.1)",
        ],
    );
    // The advice, as printed: networks that leave it out.
    let mut fixed = ADD_BOB.to_vec();
    fixed.extend(["--allowed-ips", "198.18.50.0/24, 198.51.100.128/25"]);
    node.wgp2p().args(&fixed).succeeds();
    assert!(
        node.conf()
            .contains("AllowedIPs = 10.15.0.3/32, 198.18.50.0/24, 198.51.100.128/25\n"),
        "{}",
        node.conf()
    );
    // A re-paste that moves bob's endpoint into its own subnet.
    refused_route(
        &node,
        &["add-peer", "bob", "198.18.50.1:51820", BOB_KEY, "10.15.0.3"],
        &[
            "198.18.50.0/24",
            "the endpoint of peer \"bob\" (198.18.50.1)",
        ],
    );
    // --via: the new peer's addresses would join alice's routes.
    let mut via = vec![
        "add-peer",
        "carol",
        "203.0.113.9:51820",
        CAROL_KEY,
        "10.15.0.4",
    ];
    via.extend(["--allowed-ips", "198.51.100.0/30", "--via", "alice"]);
    refused_route(
        &node,
        &via,
        &[
            "address 198.51.100.0/30 of peer \"carol\"",
            "the endpoint of peer \"alice\"",
            "via \"alice\"",
        ],
    );
}

/// A relayed peer's addresses join the relay's AllowedIPs: one that holds
/// the relay's endpoint (here written by hand) is refused. `relay NAME
/// direct` checks the networks it brings back, and its advice works.
#[test]
fn relay_refuses_addresses_over_the_relays_endpoint() {
    let node = Node::installed();
    add_alice(&node);
    node.wgp2p().args(ADD_BOB).succeeds();
    let direct = node.conf();
    let conf = direct.replace(
        "AllowedIPs = 10.15.0.3/32",
        "AllowedIPs = 10.15.0.3/32, 198.51.100.2/31",
    );
    node.write("wg0.conf", &conf);
    refused_route(
        &node,
        &["relay", "bob", "via", "alice"],
        &[
            "address 198.51.100.2/31 of peer \"bob\" covers the endpoint of peer \"alice\" (198.51.100.2)",
        ],
    );
    // bob via alice with a subnet; then carol, whose endpoint it holds.
    let mut bob = ADD_BOB.to_vec();
    bob.extend(["--allowed-ips", "198.18.50.0/24"]);
    node.write("wg0.conf", &direct);
    node.wgp2p().args(&bob).succeeds();
    node.wgp2p()
        .args(["relay", "bob", "via", "alice"])
        .succeeds();
    node.wgp2p()
        .args([
            "add-peer",
            "carol",
            "198.18.50.7:51820",
            CAROL_KEY,
            "10.15.0.4",
        ])
        .succeeds();
    refused_route(
        &node,
        &["relay", "bob", "direct"],
        &[
            "allowed IP 198.18.50.0/24 of peer \"bob\" covers the endpoint of peer \"carol\" (198.18.50.7)",
            "`wgp2p remove-peer bob`, then add it again with `--allowed-ips` without it",
        ],
    );
    node.wgp2p().args(["remove-peer", "bob"]).succeeds();
    let mut again = ADD_BOB.to_vec();
    again.extend(["--allowed-ips", "198.18.51.0/24"]);
    node.wgp2p().args(&again).succeeds();
}

/// What covers no endpoint keeps working: a site-to-site subnet (in
/// 198.18.0.0/15, which no test host has as its own), a DNS
/// endpoint (not resolved for the check), and a default route of a family
/// no other peer uses, as before.
#[test]
fn add_peer_keeps_routes_that_cover_no_endpoint() {
    let node = Node::installed();
    add_alice(&node);
    let mut lan = ADD_BOB.to_vec();
    lan.extend(["--allowed-ips", "198.18.50.0/24"]);
    node.wgp2p().args(&lan).succeeds();
    node.wgp2p()
        .args([
            "add-peer",
            "carol",
            "carol.example.org:51820",
            CAROL_KEY,
            "10.15.0.4",
        ])
        .args(["--allowed-ips", "::/0"])
        .succeeds();
    assert!(
        node.conf().contains("AllowedIPs = 10.15.0.4/32, ::/0\n"),
        "{}",
        node.conf()
    );
}

#[test]
fn add_peer_keeps_a_dns_endpoint_as_written() {
    let node = Node::installed();
    node.wgp2p()
        .args([
            "add-peer",
            "alice",
            "alice.example.org:51820",
            ALICE_KEY,
            "10.15.0.2",
        ])
        .succeeds();
    assert_eq!(
        conf_value(&node.conf(), "Peer", 0, "Endpoint").as_deref(),
        Some("alice.example.org:51820")
    );
}

#[test]
fn adding_the_same_peer_again_changes_nothing() {
    let node = Node::installed();
    add_alice(&node);
    let before = node.snapshot();
    let out = node.wgp2p().args(ADD_ALICE).succeeds();
    out.stdout_has("nothing changed").stdout_has("alice");
    assert_eq!(before.diff(&node.snapshot()), "");
}

#[test]
fn same_name_and_key_with_a_new_ip_updates_in_place() {
    let node = Node::installed();
    add_alice(&node);
    let out = node
        .wgp2p()
        .args([
            "add-peer",
            "alice",
            "198.51.100.5:51821",
            ALICE_KEY,
            "10.15.0.5",
        ])
        .succeeds();
    out.stdout_has("updated").stdout_has("alice");
    let conf = node.conf();
    assert_eq!(sections(&conf, "Peer").len(), 1, "{conf}");
    assert_eq!(
        conf_value(&conf, "Peer", 0, "AllowedIPs").as_deref(),
        Some("10.15.0.5/32")
    );
    assert_eq!(
        conf_value(&conf, "Peer", 0, "Endpoint").as_deref(),
        Some("198.51.100.5:51821")
    );
}

#[test]
fn remove_peer_by_name_and_by_key() {
    let node = Node::installed();
    let bare = node.conf();
    add_alice(&node);
    node.wgp2p()
        .args(["remove-peer", "alice"])
        .succeeds()
        .stdout_has("alice")
        .stderr_is_empty();
    assert_eq!(node.conf(), bare);
    add_alice(&node);
    node.wgp2p()
        .args(["remove-peer", ALICE_KEY])
        .succeeds()
        .stdout_has("alice");
    assert_eq!(node.conf(), bare);
}

#[test]
fn removing_one_peer_keeps_the_others() {
    let node = Node::installed();
    add_alice(&node);
    node.wgp2p().args(ADD_BOB).succeeds();
    let with_alice = node.conf();
    node.wgp2p()
        .args([
            "add-peer",
            "carol",
            "198.51.100.4:51820",
            CAROL_KEY,
            "10.15.0.4",
        ])
        .succeeds();
    node.wgp2p().args(["remove-peer", "carol"]).succeeds();
    assert_eq!(node.conf(), with_alice);
    node.wgp2p().args(["remove-peer", "alice"]).succeeds();
    let conf = node.conf();
    assert_eq!(sections(&conf, "Peer").len(), 1);
    assert!(
        conf.contains("# Name = bob") && !conf.contains("alice"),
        "{conf}"
    );
}

const HAND_WRITTEN: &str = "\
# my mesh, edited by hand
PostUp = iptables -A FORWARD -i %i -j ACCEPT; echo a=b
PostDown=iptables -D FORWARD -i %i -j ACCEPT
DNS = 10.15.0.53
MTU = 1380 # tuned for PPPoE
Table = off # routes set by hand
  # indented comment

[Peer]
# the lab box
PublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=
AllowedIPs = 10.15.0.40/32
PersistentKeepalive = 42 # hand-tuned
";

/// An installed node whose conf also has hand-written lines and a peer.
fn node_with_hand_edits() -> (Node, String) {
    let node = Node::installed();
    let text = format!("{}{HAND_WRITTEN}", node.conf());
    node.write("wg0.conf", &text);
    (node, text)
}

#[test]
fn hand_written_lines_survive_add_and_remove() {
    let (node, text) = node_with_hand_edits();
    add_alice(&node);
    let added = node.conf();
    assert!(
        added.starts_with(&text),
        "hand-written lines changed:\n{added}"
    );
    node.wgp2p().args(["remove-peer", "alice"]).succeeds();
    assert_eq!(node.conf(), text);
}

#[test]
fn hand_written_peer_can_be_removed_and_the_rest_survives() {
    let (node, text) = node_with_hand_edits();
    node.wgp2p()
        .args(["remove-peer", CAROL_KEY])
        .succeeds()
        .stdout_has(CAROL_KEY);
    let conf = node.conf();
    let kept = text.split("[Peer]").next().expect("text before the peer");
    assert!(conf.starts_with(kept.trim_end()), "{conf}");
    assert!(
        !conf.contains(CAROL_KEY) && !conf.contains("hand-tuned"),
        "{conf}"
    );
}

#[test]
fn crlf_conf_survives_add_and_remove() {
    let node = Node::installed();
    let text = format!("{}{}", node.conf(), HAND_WRITTEN).replace('\n', "\r\n");
    node.write("wg0.conf", &text);
    add_alice(&node);
    let added = node.conf();
    assert!(added.starts_with(&text), "{added:?}");
    assert_eq!(
        added.matches('\n').count(),
        added.matches("\r\n").count(),
        "{added:?}"
    );
    node.wgp2p().args(["remove-peer", "alice"]).succeeds();
    assert_eq!(node.conf(), text);
}

#[test]
fn concurrent_add_peers_are_all_kept() {
    use base64::Engine;
    let node = Node::installed();
    let keys: Vec<String> = (1..=8u8)
        .map(|i| base64::engine::general_purpose::STANDARD.encode([i; 32]))
        .collect();
    std::thread::scope(|scope| {
        for (i, key) in keys.iter().enumerate() {
            let node = &node;
            scope.spawn(move || {
                let (name, ip) = (format!("peer{i}"), format!("10.15.0.{}", 10 + i));
                node.wgp2p()
                    .args(["add-peer", &name, "198.51.100.3:51820", key, &ip])
                    .succeeds();
            });
        }
    });
    let conf = node.conf();
    assert_eq!(sections(&conf, "Peer").len(), keys.len(), "{conf}");
    for key in &keys {
        assert!(conf.contains(key.as_str()), "{key} lost: {conf}");
    }
}

#[test]
fn hand_written_lines_survive_reinstall() {
    let (node, text) = node_with_hand_edits();
    node.install("10.15.0.1/24");
    assert_eq!(node.conf(), text);
}

/// The files the old `wireguard_p2p.sh` leaves behind.
fn old_script_node() -> (Node, String) {
    let node = Node::new();
    let public = wg_pubkey(PRIV_OWN);
    node.write("privatekey", &format!("{PRIV_OWN}\n"));
    node.write("publickey", &format!("{public}\n"));
    node.write("address", "10.15.0.1/24\n");
    node.write(
        "wg0.conf",
        &format!(
            "[Interface]\nAddress = 10.15.0.1/24\nSaveConfig = true\nListenPort = 51820\nPrivateKey = {PRIV_OWN}\n\n[Peer]\nPublicKey = {BOB_KEY}\nAllowedIPs = 10.15.0.3/32\nEndpoint = 198.51.100.3:51820\nPersistentKeepalive = 25\n"
        ),
    );
    (node, public)
}

#[test]
fn install_adopts_the_old_script_conf() {
    let (node, public) = old_script_node();
    let out = node.install("10.15.0.1/24");
    assert_eq!(out.add_peer_line().key, public);
    assert_eq!(node.read("privatekey"), format!("{PRIV_OWN}\n"));
    let conf = node.conf();
    assert!(!conf.contains("SaveConfig"), "{conf}");
    assert_eq!(sections(&conf, "Peer").len(), 1, "{conf}");
    assert_eq!(
        conf_value(&conf, "Peer", 0, "PublicKey").as_deref(),
        Some(BOB_KEY)
    );
    let status = node.wgp2p().args(["status"]).succeeds();
    status.stdout_has("(unnamed)");
}

#[test]
fn add_peer_names_an_unnamed_peer() {
    let (node, _) = old_script_node();
    node.install("10.15.0.1/24");
    node.wgp2p().args(ADD_BOB).succeeds().stdout_has("bob");
    let conf = node.conf();
    let peers = sections(&conf, "Peer");
    assert_eq!(peers.len(), 1, "{conf}");
    assert_eq!(
        peers[0].first().map(String::as_str),
        Some("# Name = bob"),
        "{conf}"
    );
    node.wgp2p().args(["remove-peer", "bob"]).succeeds();
    assert!(!node.conf().contains("[Peer]"));
}

// ---- provision-peer ---------------------------------------------------------

fn provision(node: &Node, extra: &[&str]) -> (cli::node::Out, String) {
    let out = node
        .wgp2p()
        .args([
            "provision-peer",
            "phone",
            "198.51.100.9:4444",
            "10.15.0.9/24",
        ])
        .args(extra.iter().copied())
        .succeeds();
    let conf = node.read("provisioned-peers/phone.conf");
    (out, conf)
}

#[test]
fn provision_peer_writes_a_conf_for_the_device() {
    let node = Node::installed();
    let own_conf = node.conf();
    let (out, conf) = provision(&node, &[]);
    let path = node.path("provisioned-peers/phone.conf");
    assert_eq!(mode(&path), 0o600);
    out.stdout_has(path.to_str().expect("a UTF-8 temp path"));
    let value = |section, key| conf_value(&conf, section, 0, key);
    let private = value("Interface", "PrivateKey").expect("the device's PrivateKey");
    assert_eq!(
        value("Interface", "Address").as_deref(),
        Some("10.15.0.9/24")
    );
    assert_eq!(value("Interface", "ListenPort").as_deref(), Some("4444"));
    assert_eq!(value("Peer", "PublicKey"), Some(node.public_key()));
    assert_eq!(
        value("Peer", "Endpoint").as_deref(),
        Some("203.0.113.1:51820")
    );
    assert_eq!(value("Peer", "AllowedIPs").as_deref(), Some("10.15.0.1/32"));
    assert_eq!(value("Peer", "PersistentKeepalive").as_deref(), Some("25"));
    assert_eq!(sections(&conf, "Peer").len(), 1);
    let line = out.add_peer_line();
    assert_eq!(
        (line.name.as_str(), line.endpoint.as_str(), line.ip.as_str()),
        ("phone", "198.51.100.9:4444", "10.15.0.9")
    );
    assert_eq!(line.key, wg_pubkey(&private));
    out.never_shows(&private);
    assert_eq!(
        node.conf(),
        own_conf,
        "provisioning alone adds no peer here"
    );
}

#[test]
fn provisioned_line_can_be_run_here() {
    let node = Node::installed();
    let (out, _) = provision(&node, &[]);
    let line = out.add_peer_line();
    node.wgp2p()
        .args(["add-peer", &line.name, &line.endpoint, &line.key, &line.ip])
        .succeeds()
        .stdout_has("phone");
}

#[test]
fn provision_peer_mesh_lists_every_known_peer() {
    let node = Node::installed();
    add_alice(&node);
    let (out, conf) = provision(&node, &["--mesh"]);
    let peers = sections(&conf, "Peer");
    assert_eq!(peers.len(), 2, "{conf}");
    assert_eq!(
        conf_value(&conf, "Peer", 1, "PublicKey").as_deref(),
        Some(ALICE_KEY)
    );
    assert_eq!(
        conf_value(&conf, "Peer", 1, "Endpoint").as_deref(),
        Some("198.51.100.2:51820")
    );
    assert_eq!(
        conf_value(&conf, "Peer", 1, "AllowedIPs").as_deref(),
        Some("10.15.0.2/32")
    );
    out.add_peer_line();
}

#[test]
fn provision_peer_qr_decodes_to_the_conf() {
    let node = Node::installed();
    let (out, conf) = provision(&node, &["--qr"]);
    let decoded = cli::qr::decode(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(decoded, conf);
    let private = conf_value(&conf, "Interface", 0, "PrivateKey").expect("PrivateKey");
    assert!(!out.stderr.contains(&private));
}

#[test]
fn provision_peer_without_endpoint_uses_the_placeholder() {
    let node = Node::new();
    node.install("10.15.0.1/24");
    let (out, conf) = provision(&node, &[]);
    out.stderr_has("warning");
    assert_eq!(
        conf_value(&conf, "Peer", 0, "Endpoint").as_deref(),
        Some("<PUBLIC-IP>:51820")
    );
}

#[test]
fn provisioning_the_ip_of_a_provisioned_device_is_refused() {
    let node = Node::installed();
    provision(&node, &[]);
    let before = node.snapshot();
    node.wgp2p()
        .args([
            "provision-peer",
            "tab",
            "198.51.100.10:4444",
            "10.15.0.9/24",
        ])
        .fails()
        .stderr_has("10.15.0.9");
    assert_eq!(before.diff(&node.snapshot()), "");
}

#[test]
fn provisioning_an_existing_name_or_used_ip_changes_nothing() {
    let node = Node::installed();
    add_alice(&node);
    provision(&node, &[]);
    let before = node.snapshot();
    let again = node
        .wgp2p()
        .args([
            "provision-peer",
            "phone",
            "198.51.100.9:4444",
            "10.15.0.10/24",
        ])
        .fails();
    again.stderr_has("phone");
    let used = node
        .wgp2p()
        .args(["provision-peer", "tab", "198.51.100.9:4444", "10.15.0.2/24"])
        .fails();
    used.stderr_has("10.15.0.2");
    assert_eq!(before.diff(&node.snapshot()), "");
}

// ---- import-key ---------------------------------------------------------------

fn assert_imported(node: &Node, out: &cli::node::Out, private: &str) {
    let public = wg_pubkey(private);
    assert_eq!(node.read("privatekey").trim(), private);
    assert_eq!(node.read("publickey").trim(), public);
    assert_eq!(
        conf_value(&node.conf(), "Interface", 0, "PrivateKey").as_deref(),
        Some(private)
    );
    out.never_shows(private).stdout_has(&public);
}

#[test]
fn import_key_from_stdin_with_dash() {
    let node = Node::installed();
    let out = node
        .wgp2p()
        .args(["import-key", "-"])
        .stdin(&format!("{PRIV_OWN}\n"))
        .succeeds();
    assert_imported(&node, &out, PRIV_OWN);
    let before = node.snapshot();
    node.wgp2p()
        .args(["import-key", "-"])
        .stdin(PRIV_OWN)
        .succeeds()
        .stdout_has("nothing changed");
    assert_eq!(before.diff(&node.snapshot()), "");
    let line = node.wgp2p().args(["add-peer"]).succeeds().add_peer_line();
    assert_eq!(line.key, wg_pubkey(PRIV_OWN));
}

#[test]
fn import_key_from_stdin_without_argument() {
    let node = Node::installed();
    add_alice(&node);
    let out = node.wgp2p().args(["import-key"]).stdin(PRIV_OWN).succeeds();
    assert_imported(&node, &out, PRIV_OWN);
    assert!(node.conf().contains("# Name = alice"));
}

#[test]
fn import_key_refuses_garbage_and_peer_keys() {
    let node = Node::installed();
    add_alice(&node);
    let before = node.snapshot();
    let garbage = node.wgp2p().args(["import-key"]).stdin("hunter2\n").fails();
    garbage.never_shows("hunter2");
    let peer = node
        .wgp2p()
        .args(["import-key"])
        .stdin(ALICE_PRIVATE)
        .fails();
    peer.stderr_has(ALICE_KEY).never_shows(ALICE_PRIVATE);
    assert_eq!(before.diff(&node.snapshot()), "");
}

// ---- status -------------------------------------------------------------------

#[test]
fn status_shows_peers_by_name_down() {
    let node = node_with_alice();
    let out = node.wgp2p().args(["status"]).succeeds();
    out.stdout_has("alice")
        .stdout_has("down")
        .stdout_has("198.51.100.2:51820");
    out.stdout_has("10.15.0.2/32")
        .stdout_has(&node.public_key());
}

#[test]
fn status_json_has_the_documented_fields() {
    let node = node_with_alice();
    let out = node.wgp2p().args(["status", "--json"]).succeeds();
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["interface"], "wg0");
    assert_eq!(json["state"], "down");
    let peer = &json["peers"][0];
    assert_eq!(json["peers"].as_array().map(Vec::len), Some(1), "{json}");
    assert_eq!(peer["name"], "alice");
    assert_eq!(peer["public_key"], ALICE_KEY);
    assert_eq!(peer["endpoint"], "198.51.100.2:51820");
    assert_eq!(peer["allowed_ips"], serde_json::json!(["10.15.0.2/32"]));
    assert!(peer["latest_handshake_secs_ago"].is_null(), "{peer}");
    assert!(peer["health"].is_string(), "{peer}");
    assert_eq!(peer["in_config"], true);
    assert_eq!(peer["live"], false);
}

#[test]
fn status_json_as_global_option_before_the_command() {
    let node = Node::installed();
    let out = node.wgp2p().args(["--json", "status"]).succeeds();
    let json: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["peers"], serde_json::json!([]));
}

#[test]
fn status_before_install_fails() {
    let node = Node::new();
    let out = node.wgp2p().args(["status"]).fails();
    out.stderr_has("install");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(
        !node.dir().exists(),
        "status must not create the config dir"
    );
}

#[test]
fn failed_first_install_creates_nothing() {
    let node = Node::new();
    let cases: [&[&str]; 4] = [
        &["install", "10.15.0.1"],
        &["install", "10.15.0.1/24", "--endpoint", "203.0.113.7:0"],
        &["install", "10.15.0.1/24", "--port", "0"],
        &["--interface", "wg/0", "install", "10.15.0.1/24"],
    ];
    for args in cases {
        let out = node.wgp2p().args(args.iter().copied()).fails();
        assert_eq!(out.stderr.lines().count(), 1, "{out}");
        assert!(!node.dir().exists(), "{args:?} created the config dir");
    }
}

#[test]
fn bad_wgp2p_endpoint_env_is_named() {
    let node = Node::new();
    node.install("10.15.0.1/24");
    let before = node.snapshot();
    let out = node
        .wgp2p()
        .args(["add-peer"])
        .env("WGP2P_ENDPOINT", "203.0.113.7:0")
        .fails();
    out.stderr_has("203.0.113.7:0");
    assert_eq!(before.diff(&node.snapshot()), "");
}

#[test]
fn commands_before_install_fail_and_create_nothing() {
    let node = Node::new();
    let cases: [&[&str]; 5] = [
        &["add-peer"],
        &ADD_ALICE,
        &["remove-peer", "alice"],
        &[
            "provision-peer",
            "phone",
            "198.51.100.9:4444",
            "10.15.0.9/24",
        ],
        &["start"],
    ];
    for args in cases {
        node.wgp2p()
            .args(args.iter().copied())
            .fails()
            .stderr_has("install");
        assert!(!node.dir().exists(), "{args:?} created the config dir");
    }
}

// ---- uninstall ---------------------------------------------------------------

#[test]
fn uninstall_removes_everything() {
    let node = node_with_alice();
    node.wgp2p().args(["uninstall"]).succeeds();
    for name in [
        "wg0.conf",
        "privatekey",
        "publickey",
        "address",
        "endpoint",
        "provisioned-peers",
    ] {
        assert!(!node.path(name).exists(), "{name} survived uninstall");
    }
    node.wgp2p().args(["status"]).fails().stderr_has("install");
    // Installing again afterwards works, with another address.
    node.install("10.16.0.1/24");
}

#[test]
fn uninstall_keep_keys_keeps_the_keys() {
    let node = node_with_alice();
    let keys = (node.read("privatekey"), node.read("publickey"));
    node.wgp2p().args(["uninstall", "--keep-keys"]).succeeds();
    assert_eq!((node.read("privatekey"), node.read("publickey")), keys);
    for name in ["wg0.conf", "address", "endpoint", "provisioned-peers"] {
        assert!(!node.path(name).exists(), "{name} survived uninstall");
    }
    let line = node.install("10.15.0.1/24").add_peer_line();
    assert_eq!(line.key, keys.1.trim());
}

#[test]
fn uninstall_when_nothing_is_installed_is_fine() {
    Node::new().wgp2p().args(["uninstall"]).succeeds();
}

// ---- dependencies and help ---------------------------------------------------

#[test]
fn dependencies_dry_run_has_nothing_to_do() {
    let out = Node::new()
        .wgp2p()
        .args(["dependencies", "--dry-run"])
        .succeeds();
    out.stdout_has("nothing to do");
}

#[test]
fn dependencies_dry_run_without_wg_prints_the_commands() {
    let empty = tempfile::tempdir().expect("create an empty PATH dir");
    let path = empty.path().to_str().expect("a UTF-8 temp path");
    let node = Node::new();
    let out = node
        .wgp2p()
        .args(["dependencies", "--dry-run"])
        .env("PATH", path)
        .succeeds();
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    if os_release.contains("debian") {
        out.stdout_has("apt-get install -y --no-install-recommends wireguard-tools");
    }
    assert!(!node.dir().exists());
}

/// On a kernel without WireGuard (this machine's), wg and wg-quick alone
/// are not enough: wg-quick needs wireguard-go, and `dependencies` (the
/// advice of `doctor`) installs it. Run with the lab tests, on the lab's
/// machine kind (Debian, a kernel without the module); elsewhere it fails
/// saying why instead of passing without looking.
#[test]
#[ignore = "lab: needs a Debian host whose kernel has no WireGuard module (the lab machine)"]
fn dependencies_add_wireguard_go_where_the_kernel_has_no_wireguard() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let modules = std::path::Path::new("/lib/modules").join(release.trim());
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    assert!(
        !std::path::Path::new("/sys/module/wireguard").exists()
            && !modules.exists()
            && os_release.contains("debian"),
        "this host's kernel may have WireGuard, or it is not Debian: expected the lab's machine kind (the unit tests of dependencies and system cover the other cases)"
    );
    let tools = tempfile::tempdir().expect("create a PATH dir");
    for program in ["wg", "wg-quick"] {
        let path = tools.path().join(program);
        std::fs::write(&path, "#!/bin/sh\n").expect("write a fake tool");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make it executable");
    }
    let path = tools.path().to_str().expect("a UTF-8 temp path");
    let out = Node::new()
        .wgp2p()
        .args(["dependencies", "--dry-run"])
        .env("PATH", path)
        .succeeds();
    out.stdout_has("apt-get install -y --no-install-recommends wireguard-go");
    Node::new()
        .wgp2p()
        .args(["doctor"])
        .env("PATH", path)
        .output()
        .stdout_has("wireguard-go is missing: run `wgp2p dependencies`");
}

#[test]
fn start_and_stop_change_no_file() {
    let node = node_with_alice();
    let before = node.snapshot();
    node.wgp2p().args(["stop"]).succeeds();
    node.wgp2p().args(["start"]).succeeds();
    assert_eq!(before.diff(&node.snapshot()), "");
}

#[test]
fn help_lists_every_command() {
    for args in [&[][..], &["help"], &["--help"], &["-h"]] {
        let out = Node::new().wgp2p().args(args.iter().copied()).succeeds();
        for command in COMMANDS {
            out.stdout_has(command);
        }
    }
}

// ---- bad input ---------------------------------------------------------------

#[test]
fn bad_input_matrix() {
    let cases = cli::matrix::cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let node = node_with_alice();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| cli::matrix::check(&node, case).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

const INJECTED: &str =
    "\n[Peer]\nPublicKey = TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=\nAllowedIPs = 0.0.0.0/0";

#[test]
fn no_input_can_inject_a_line_or_section() {
    let node = node_with_alice();
    let before = node.snapshot();
    let name = format!("x{INJECTED}");
    let endpoint = format!("198.51.100.3:51820{INJECTED}");
    let key = format!("{BOB_KEY}{INJECTED}");
    let ip = format!("10.15.0.3{INJECTED}");
    let attempts: [[&str; 5]; 4] = [
        [
            "add-peer",
            &name,
            "198.51.100.3:51820",
            BOB_KEY,
            "10.15.0.3",
        ],
        ["add-peer", "bob", &endpoint, BOB_KEY, "10.15.0.3"],
        ["add-peer", "bob", "198.51.100.3:51820", &key, "10.15.0.3"],
        ["add-peer", "bob", "198.51.100.3:51820", BOB_KEY, &ip],
    ];
    for args in attempts {
        node.wgp2p().args(args).fails();
    }
    for args in [
        vec![
            "provision-peer",
            &name,
            "198.51.100.3:51820",
            "10.15.0.3/24",
        ],
        vec!["provision-peer", "tab", &endpoint, "10.15.0.3/24"],
        vec!["install", "10.15.0.1/24", "--endpoint", &endpoint],
        vec!["remove-peer", &name],
    ] {
        node.wgp2p().args(args).fails();
    }
    assert_eq!(before.diff(&node.snapshot()), "");
    assert!(!node.conf().contains(CAROL_KEY));
}

#[test]
fn bad_wgp2p_endpoint_env_cannot_inject_into_a_provisioned_conf() {
    let node = Node::new();
    node.install("10.15.0.1/24");
    let before = node.snapshot();
    let out = node
        .wgp2p()
        .args([
            "provision-peer",
            "tab",
            "198.51.100.3:51820",
            "10.15.0.3/24",
        ])
        .env("WGP2P_ENDPOINT", &format!("203.0.113.7{INJECTED}"))
        .fails();
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert_eq!(before.diff(&node.snapshot()), "");
}
