//! Exit codes that say what kind of failure happened (the table in the
//! README): the ones that were once misfiled as "unknown peer" (4).
//! An unknown distribution (`dependencies`, exit 1) and a DNS name that
//! does not resolve (exit 1) are unit tests next to their code.

use super::node::Node;

#[test]
fn a_missing_roster_file_is_bad_input() {
    let node = Node::installed();
    let before = node.snapshot();
    let roster = "/nonexistent/roster.toml";
    for args in [vec!["sync", roster, "--dry-run"], vec!["sync", roster]] {
        let out = node.wgp2p().args(args).fails();
        assert_eq!(out.code, Some(2), "{out}");
        out.stderr_has(roster);
    }
    assert_eq!(before.diff(&node.snapshot()), "");
}

#[test]
fn a_peer_that_does_not_exist_is_not_found() {
    let node = Node::installed();
    let out = node.wgp2p().args(["remove-peer", "nobody"]).fails();
    assert_eq!(out.code, Some(4), "{out}");
}

#[test]
fn a_malformed_value_is_bad_input() {
    let node = Node::installed();
    let out = node
        .wgp2p()
        .args([
            "add-peer",
            "bob",
            "not an endpoint",
            super::super::BOB_KEY,
            "10.15.0.3",
        ])
        .fails();
    assert_eq!(out.code, Some(2), "{out}");
}
