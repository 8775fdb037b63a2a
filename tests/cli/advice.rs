//! Advice that `doctor` prints, run exactly as printed, removes the
//! finding (on files only; the live-device advice is proven in the lab,
//! tests/repair.rs).

use super::node::Node;

/// The last `…`-quoted command on the line of `text` holding `finding`,
/// split on blanks (doctor's commands quote nothing).
fn advice(text: &str, finding: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.contains(finding))
        .unwrap_or_else(|| panic!("no line with {finding:?} in:\n{text}"));
    let parts: Vec<&str> = line.split('`').collect();
    assert!(parts.len() >= 3, "no `command` in: {line}");
    parts[parts.len() - 2]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn overlap_advice_removes_the_overlap() {
    let node = Node::installed();
    let conf = node.conf();
    node.write(
        "wg0.conf",
        &format!(
            "{conf}\n[Peer]\n# Name = a\nPublicKey = {}\nAllowedIPs = 10.15.0.2/32\n\n[Peer]\n# Name = b\nPublicKey = {}\nAllowedIPs = 10.15.0.0/28\n",
            super::super::BOB_KEY,
            super::super::CAROL_KEY
        ),
    );
    let found = node.wgp2p().args(["doctor"]).fails();
    let command = advice(&found.stdout, "overlaps");
    assert_eq!(command, ["wgp2p", "remove-peer", "b"]);
    node.wgp2p().args(&command[1..]).succeeds();
    let after = node.wgp2p().args(["doctor"]).output();
    assert!(!after.stdout.contains("overlaps"), "{after}");
    assert!(node.conf().contains("# Name = a"));
}
