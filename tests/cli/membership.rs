//! The introduction policy on the command line: `install
//! --accept-introductions`, `trust`, `untrust` (lines of the config's
//! `[Interface]`; the agent applies them, tests/membership.rs).

use super::node::Node;
use crate::{ADD_ALICE, ALICE_KEY, BOB_KEY};

#[test]
fn manual_by_default_and_install_turns_introductions_on() {
    let node = Node::installed();
    node.wgp2p()
        .args(["trust"])
        .succeeds()
        .stdout_has("not accepted (manual)");
    assert!(!node.conf().contains("AcceptIntroductions"));
    node.wgp2p()
        .args([
            "install",
            "10.15.0.1/24",
            "--endpoint",
            "203.0.113.1",
            "--accept-introductions",
        ])
        .succeeds();
    assert!(
        node.conf()
            .starts_with("[Interface]\n# AcceptIntroductions = true\n"),
        "{}",
        node.conf()
    );
    // A re-install without the flag keeps the line, once.
    node.wgp2p().args(["install", "10.15.0.1/24"]).succeeds();
    assert_eq!(node.conf().matches("AcceptIntroductions").count(), 1);
    node.wgp2p()
        .args(["trust"])
        .succeeds()
        .stdout_has("accepted from every member");
}

#[test]
fn trust_and_untrust_a_member() {
    let node = Node::installed();
    node.wgp2p().args(ADD_ALICE).succeeds();
    node.wgp2p()
        .args(["trust", "alice"])
        .succeeds()
        .stdout_has("trusted alice");
    assert!(
        node.conf()
            .contains(&format!("# Trust = {ALICE_KEY} alice\n")),
        "{}",
        node.conf()
    );
    node.wgp2p()
        .args(["trust", "alice"])
        .succeeds()
        .stdout_has("already trusted");
    // A key that is no peer (yet) may be trusted too.
    node.wgp2p().args(["trust", BOB_KEY]).succeeds();
    let listed = node.wgp2p().args(["--json", "trust"]).succeeds();
    let value: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(value["accept_introductions"], false);
    assert_eq!(value["trusted"].as_array().unwrap().len(), 2);
    node.wgp2p()
        .args(["trust"])
        .succeeds()
        .stdout_has("from 2 trusted member(s) only");
    node.wgp2p().args(["untrust", "alice"]).succeeds();
    node.wgp2p().args(["untrust", BOB_KEY]).succeeds();
    assert!(!node.conf().contains("Trust"), "{}", node.conf());
}

#[test]
fn bad_trust_requests_change_nothing() {
    let node = Node::installed();
    node.wgp2p().args(ADD_ALICE).succeeds();
    let before = node.snapshot();
    let own = node.public_key();
    let cases: [(&[&str], i32, &str); 4] = [
        (&["trust", "nobody"], 4, "no peer named or keyed \"nobody\""),
        (&["trust", own.as_str()], 3, "this node's own key"),
        (&["untrust", "alice"], 4, "is not trusted"),
        (&["trust", "bad\tname"], 2, "a peer's name or public key"),
    ];
    for (args, code, needle) in cases {
        let out = node.wgp2p().args(args).fails();
        assert_eq!(out.code, Some(code), "{out}");
        out.stderr_has(needle);
        assert_eq!(out.stderr.lines().count(), 1, "{out}");
        assert_eq!(node.snapshot().diff(&before), "", "{args:?}");
    }
}

/// A `# Trust` line that cannot be read trusts nobody, and `trust` and
/// `doctor` name it with the line to fix (fail closed).
#[test]
fn an_unreadable_trust_line_is_named_and_trusts_nobody() {
    let node = Node::installed();
    node.wgp2p().args(ADD_ALICE).succeeds();
    node.wgp2p().args(["trust", "alice"]).succeeds();
    let short = &ALICE_KEY[..ALICE_KEY.len() - 2];
    for bad in [short, "alice"] {
        let conf = node
            .conf()
            .replace("# Trust = ", &format!("# Trust = {bad}\n# Trust = "));
        node.write("wg0.conf", &conf);
        let out = node.wgp2p().args(["trust"]).succeeds();
        out.stdout_has("refused from every member")
            .stdout_has(&format!(
                "problem: the line `# Trust = {bad}` of [Interface] cannot be read"
            ));
        let json = node.wgp2p().args(["--json", "trust"]).succeeds();
        let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(value["unreadable"][0], bad, "{value}");
        let doctor = node.wgp2p().args(["doctor"]).output();
        assert!(
            doctor.stdout.contains(&format!(
                "the line `# Trust = {bad}` of [Interface] cannot be read"
            )),
            "{doctor}"
        );
        let conf = node.conf().replace(&format!("# Trust = {bad}\n"), "");
        node.write("wg0.conf", &conf);
    }
}

/// `untrust` of the last trusted member leaves "trust nobody", never
/// "trust every member", and says so.
#[test]
fn untrusting_the_last_member_trusts_nobody() {
    let node = Node::installed();
    node.wgp2p()
        .args([
            "install",
            "10.15.0.1/24",
            "--endpoint",
            "203.0.113.1",
            "--accept-introductions",
        ])
        .succeeds();
    node.wgp2p().args(ADD_ALICE).succeeds();
    node.wgp2p().args(["trust", "alice"]).succeeds();
    node.wgp2p()
        .args(["untrust", "alice"])
        .succeeds()
        .stdout_has("this node now trusts nobody")
        .stdout_has("not accepted (manual)");
    assert!(
        !node.conf().contains("AcceptIntroductions"),
        "{}",
        node.conf()
    );
    node.wgp2p()
        .args(["trust"])
        .succeeds()
        .stdout_has("not accepted (manual)");
}

/// Re-pasting an introduced peer's line by hand makes it the admin's, and
/// says so (not "nothing changed", and no longer removable by a member).
#[test]
fn a_repasted_introduced_peer_becomes_the_admins() {
    let node = Node::installed();
    node.wgp2p().args(ADD_ALICE).succeeds();
    let conf = node.conf().replace(
        "# Name = alice\n",
        &format!("# Name = alice\n# Source = introduced by bob ({BOB_KEY})\n"),
    );
    node.write("wg0.conf", &conf);
    node.wgp2p()
        .args(ADD_ALICE)
        .succeeds()
        .stdout_has("peer alice was introduced by bob")
        .stdout_has("it is now yours");
    assert!(!node.conf().contains("introduced by"), "{}", node.conf());
    node.wgp2p()
        .args(ADD_ALICE)
        .succeeds()
        .stdout_has("nothing changed");
}
