//! `export` and `sync` on files only: each reproduction of a roster bug is
//! one test here (the lab test runs the same flows on real WireGuard).

use super::node::Node;
use crate::{ADD_ALICE, ALICE_KEY, BOB_KEY, CAROL_KEY};

/// A roster entry as `export` prints it, plus any extra lines.
fn entry(name: &str, endpoint: &str, key: &str, address: &str, extra: &str) -> String {
    format!(
        "[[peer]]\nname = \"{name}\"\nendpoint = \"{endpoint}\"\npublic_key = \"{key}\"\naddress = \"{address}\"\n{extra}"
    )
}

/// This node's own entry, from its `export`.
fn own_entry(node: &Node) -> String {
    node.wgp2p().args(["export"]).succeeds().stdout
}

/// alice and bob, as two other nodes exported them.
fn alice_and_bob() -> String {
    [
        entry("alice", "198.51.100.2:51820", ALICE_KEY, "10.15.0.2", ""),
        entry("bob", "198.51.100.3:51820", BOB_KEY, "10.15.0.3", ""),
    ]
    .concat()
}

fn sync(node: &Node, roster: &str) -> super::node::Out {
    node.write("roster.toml", roster);
    let path = node.path("roster.toml");
    node.wgp2p().args(["sync", path.to_str().unwrap()]).output()
}

/// `sync` refuses with exit 3 and leaves every file of the config dir
/// byte for byte as it was.
#[track_caller]
fn refused(node: &Node, roster: &str, needles: &[&str]) {
    node.write("roster.toml", roster);
    let before = node.snapshot();
    let path = node.path("roster.toml");
    let out = node.wgp2p().args(["sync", path.to_str().unwrap()]).output();
    assert_eq!(out.code, Some(3), "expected a refusal: {out}");
    for needle in needles {
        out.stderr_has(needle);
    }
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out}");
    assert_eq!(node.snapshot().diff(&before), "", "files changed: {out}");
}

/// A node with a provisioned phone (its add-peer line run) and the roster synced.
fn node_with_phone() -> (Node, String) {
    let node = Node::installed();
    let out = node
        .wgp2p()
        .args([
            "provision-peer",
            "phone",
            "203.0.113.1:51820",
            "10.15.0.50/24",
        ])
        .succeeds();
    let line = out.add_peer_line();
    node.wgp2p()
        .args(["add-peer", &line.name, &line.endpoint, &line.key, &line.ip])
        .succeeds();
    let roster = format!("{}{}", own_entry(&node), alice_and_bob());
    let out = sync(&node, &roster);
    assert_eq!(out.code, Some(0), "{out}");
    (node, roster)
}

#[test]
fn sync_keeps_provisioned_devices() {
    let (node, roster) = node_with_phone();
    assert!(node.conf().contains("# Name = phone\n"), "{}", node.conf());
    // Every later sync keeps it, a smaller roster included.
    let again = sync(&node, &roster);
    again.stdout_has("nothing to change");
    let smaller = format!(
        "{}{}",
        own_entry(&node),
        entry("bob", "198.51.100.3:51820", BOB_KEY, "10.15.0.3", "")
    );
    let out = sync(&node, &smaller);
    out.stdout_has("- remove alice");
    assert!(!out.stdout.contains("phone"), "{out}");
    assert!(node.conf().contains("# Name = phone\n"));
    // --prune is the explicit way to drop what the roster does not list.
    let path = node.path("roster.toml");
    node.wgp2p()
        .args(["sync", "--prune", path.to_str().unwrap()])
        .succeeds()
        .stdout_has("- remove phone");
    assert!(!node.conf().contains("phone"));
}

#[test]
fn sync_follows_a_rename() {
    let (node, roster) = node_with_phone();
    let renamed = roster.replace("\"alice\"", "\"alice-laptop\"");
    let out = sync(&node, &renamed);
    assert_eq!(out.code, Some(0), "{out}");
    out.stdout_has("~ rename alice -> alice-laptop");
    assert!(node.conf().contains("# Name = alice-laptop\n"));
    assert!(!node.conf().contains("# Name = alice\n"));
}

#[test]
fn sync_swaps_addresses() {
    let (node, roster) = node_with_phone();
    let swapped = roster
        .replace("\"10.15.0.2\"", "\"SWAP\"")
        .replace("\"10.15.0.3\"", "\"10.15.0.2\"")
        .replace("\"SWAP\"", "\"10.15.0.3\"");
    let out = sync(&node, &swapped);
    assert_eq!(out.code, Some(0), "{out}");
    out.stdout_has("~ update alice").stdout_has("~ update bob");
    let conf = node.conf();
    let alice = &conf[conf.find("# Name = alice").unwrap()..conf.find("# Name = bob").unwrap()];
    assert!(alice.contains("AllowedIPs = 10.15.0.3/32"), "{conf}");
}

#[test]
fn sync_refuses_routes_over_endpoints_and_default_routes() {
    let (node, roster) = node_with_phone();
    // bob's extra route covers alice's endpoint.
    let over_endpoint = roster.replace(
        &entry("bob", "198.51.100.3:51820", BOB_KEY, "10.15.0.3", ""),
        &entry(
            "bob",
            "198.51.100.3:51820",
            BOB_KEY,
            "10.15.0.3",
            "allowed_ips = [\"198.51.100.0/25\"]\n",
        ),
    );
    refused(
        &node,
        &over_endpoint,
        &["entry #3 (\"bob\")", "198.51.100.0/25", "endpoint"],
    );
    let documentation_net = format!(
        "{roster}{}",
        entry(
            "carol",
            "192.0.2.4:51820",
            CAROL_KEY,
            "10.15.0.4",
            "allowed_ips = [\"192.0.2.0/25\"]\n"
        )
    );
    refused(
        &node,
        &documentation_net,
        &["entry #4 (\"carol\")", "192.0.2.0/25"],
    );
    let default_v6 = format!(
        "{roster}{}",
        entry(
            "carol",
            "192.0.2.4:51820",
            CAROL_KEY,
            "10.15.0.4",
            "allowed_ips = [\"::/0\"]\n"
        )
    );
    refused(&node, &default_v6, &["::/0", "exit_node = true"]);
    // This node's own public address (its saved endpoint).
    let own_address = format!(
        "{roster}{}",
        entry(
            "carol",
            "192.0.2.4:51820",
            CAROL_KEY,
            "10.15.0.4",
            "allowed_ips = [\"203.0.113.0/24\"]\n"
        )
    );
    refused(
        &node,
        &own_address,
        &["203.0.113.0/24", "this node's public endpoint"],
    );
    // Opting in is explicit.
    let exit = default_v6.replace(
        "allowed_ips = [\"::/0\"]\n",
        "allowed_ips = [\"::/0\"]\nexit_node = true\n",
    );
    let out = sync(&node, &exit);
    assert_eq!(out.code, Some(0), "{out}");
}

/// An entry's own address is a route too: as another node's endpoint, this
/// node's public endpoint or an address of this host, it would cut the
/// tunnel like an extra network over them.
#[test]
fn sync_refuses_an_address_over_an_endpoint() {
    let (node, roster) = node_with_phone();
    let carol = |address: &str| {
        format!(
            "{roster}{}",
            entry("carol", "192.0.2.4:51820", CAROL_KEY, address, "")
        )
    };
    refused(
        &node,
        &carol("198.51.100.2"),
        &[
            "entry #4 (\"carol\")",
            "address 198.51.100.2",
            "the endpoint of",
            "entry #2 (\"alice\")",
        ],
    );
    refused(
        &node,
        &carol("203.0.113.1"),
        &["address 203.0.113.1", "this node's public endpoint"],
    );
    // Its own endpoint's address, tunnelled into itself.
    refused(
        &node,
        &carol("192.0.2.4"),
        &["address 192.0.2.4", "entry #4 (\"carol\")"],
    );
    // Not even a subnet router's or an exit node's address.
    let exit = carol("198.51.100.3").replace(
        "address = \"198.51.100.3\"\n",
        "address = \"198.51.100.3\"\nexit_node = true\n",
    );
    refused(
        &node,
        &exit,
        &["address 198.51.100.3", "entry #3 (\"bob\")"],
    );
    assert_eq!(sync(&node, &carol("10.15.0.4")).code, Some(0));
}

#[test]
fn sync_refuses_changes_to_this_node() {
    let (node, roster) = node_with_phone();
    let own = own_entry(&node);
    let moved = roster.replace("address = \"10.15.0.1\"", "address = \"10.15.0.9\"");
    assert_ne!(moved, roster);
    refused(
        &node,
        &moved,
        &["entry #1", "address 10.15.0.9", "10.15.0.1"],
    );
    let elsewhere = roster.replace("203.0.113.1:51820", "192.0.2.66:51820");
    refused(
        &node,
        &elsewhere,
        &["192.0.2.66:51820", "203.0.113.1:51820"],
    );
    // Another key under this node's name: a hijack.
    let name = own
        .lines()
        .find_map(|l| l.strip_prefix("name = "))
        .unwrap()
        .to_string();
    let hijack = format!(
        "{}[[peer]]\nname = {name}\nendpoint = \"192.0.2.66:51820\"\npublic_key = \"{CAROL_KEY}\"\naddress = \"10.15.0.66\"\n",
        alice_and_bob()
    );
    refused(&node, &hijack, &["entry #3", "this node's name", CAROL_KEY]);
}

#[test]
fn sync_refuses_repeats_naming_both_entries() {
    let (node, roster) = node_with_phone();
    let twice = format!(
        "{roster}{}",
        entry("carol", "192.0.2.4:51820", ALICE_KEY, "10.15.0.4", "")
    );
    refused(
        &node,
        &twice,
        &[
            "entry #2 (\"alice\")",
            "entry #4 (\"carol\")",
            "same public_key",
        ],
    );
    let same_address = format!(
        "{roster}{}",
        entry("carol", "192.0.2.4:51820", CAROL_KEY, "10.15.0.3", "")
    );
    refused(
        &node,
        &same_address,
        &["entry #3 (\"bob\")", "entry #4 (\"carol\")", "same address"],
    );
    let same_name = format!(
        "{roster}{}",
        entry("bob", "192.0.2.4:51820", CAROL_KEY, "10.15.0.4", "")
    );
    refused(
        &node,
        &same_name,
        &["entry #3 (\"bob\")", "entry #4 (\"bob\")", "same name"],
    );
}

#[test]
fn sync_adopts_hand_added_peers_only_when_told() {
    let node = Node::installed();
    node.wgp2p().args(ADD_ALICE).succeeds();
    let roster = format!("{}{}", own_entry(&node), alice_and_bob());
    refused(&node, &roster, &["\"alice\"", "added by hand", "--adopt"]);
    // The advice is the command to run, as printed.
    let path = node.path("roster.toml");
    let out = node.wgp2p().args(["sync", path.to_str().unwrap()]).fails();
    let advice: Vec<&str> = out
        .stderr
        .split('`')
        .nth(1)
        .expect("a `command` in the refusal")
        .split_whitespace()
        .collect();
    assert_eq!(
        advice,
        ["wgp2p", "sync", "--adopt", path.to_str().unwrap()],
        "{out}"
    );
    node.wgp2p()
        .args(&advice[1..])
        .succeeds()
        .stdout_has("~ adopt alice")
        .stdout_has("+ add bob");
    assert_eq!(node.conf().matches("# Source = roster").count(), 2);
}

#[test]
fn export_without_an_endpoint_says_how_to_set_one() {
    let node = Node::new();
    node.install("10.15.0.1/24");
    let out = node.wgp2p().args(["export"]).output();
    assert_eq!(out.code, Some(4), "{out}");
    assert_eq!(out.stdout, "", "nothing on stdout: {out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    out.stderr_has("--endpoint")
        .stderr_has("WGP2P_ENDPOINT")
        .stderr_has("nat-check");
    // Each piece of advice works.
    let given = node
        .wgp2p()
        .args(["export", "--endpoint", "198.51.100.7"])
        .succeeds();
    given.stdout_has("endpoint = \"198.51.100.7:51820\"");
    let env = node
        .wgp2p()
        .args(["export"])
        .env("WGP2P_ENDPOINT", "198.51.100.8:51999")
        .succeeds();
    env.stdout_has("endpoint = \"198.51.100.8:51999\"");
    // What export prints is a roster another node syncs to (both nodes
    // run on this one host, so the first takes another name).
    let other = Node::new();
    other.install("10.15.0.2/24");
    let name = given
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("name = "))
        .unwrap();
    let roster = format!(
        "{}{}",
        given.stdout.replace(name, "\"first\""),
        other
            .wgp2p()
            .args(["export", "--endpoint", "198.51.100.9"])
            .succeeds()
            .stdout
    );
    let out = sync(&other, &roster);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!out.stdout.contains("<PUBLIC-IP>"));
}
