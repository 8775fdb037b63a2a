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

/// import-key killed between its renames (strace fault injection): the
/// config holds the new key, `privatekey` the old one, and the journal
/// that completes it waits for the next locked run. `status` used to
/// announce the old key (which wg-quick would not use) and `doctor` said
/// "no problem found"; both now name the interrupted change, and their
/// advice, run as printed, completes it.
#[test]
fn an_interrupted_change_is_named_and_its_advice_completes_it() {
    const NEW: &str = "QJRBRzLEyYrAc6igP44D0lZexzaFdFSycMcUPX7Ex18=";
    let node = Node::installed();
    let mut cmd = std::process::Command::new("strace");
    cmd.args([
        "-f",
        "-o",
        "/dev/null",
        "-e",
        "trace=rename,renameat,renameat2",
    ])
    // Renames: the journal, wg0.conf, then privatekey: killed there.
    .args([
        "-e",
        "inject=rename,renameat,renameat2:signal=SIGKILL:when=3",
    ])
    .args([super::node::BIN, "import-key"])
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("WGP2P_SERVICE", "none")
    .env("WG_CONFIG_DIR", node.dir())
    .env("WGP2P_STUN_SERVERS", "")
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("run strace (is it installed?)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), NEW.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "import-key was not killed"
    );
    assert!(node.path(".wgp2p-journal").exists());
    assert_ne!(node.read("privatekey").trim(), NEW);

    let finding = "a change was interrupted before it completed";
    let shown = node.wgp2p().args(["status"]).succeeds();
    assert_eq!(
        advice(&shown.stdout, finding),
        ["wgp2p", "repair"],
        "{shown}"
    );
    node.wgp2p().args(["status", "--check"]).fails();
    let found = node.wgp2p().args(["doctor"]).fails();
    let command = advice(&found.stdout, finding);
    assert_eq!(command, ["wgp2p", "repair"]);
    node.wgp2p().args(&command[1..]).succeeds();

    let after = node.wgp2p().args(["doctor"]).output();
    assert!(!after.stdout.contains(finding), "{after}");
    assert!(
        !node
            .wgp2p()
            .args(["status"])
            .succeeds()
            .stdout
            .contains(finding)
    );
    assert!(!node.path(".wgp2p-journal").exists());
    assert_eq!(node.read("privatekey").trim(), NEW);
    assert_eq!(node.public_key(), wgp2p_lab::wg_pubkey(NEW));
    assert!(node.conf().contains(&format!("PrivateKey = {NEW}")));
}

/// Route safety by address space: a peer an introduction added that
/// routes outside the VPN network is a finding, and its advice removes it.
#[test]
fn an_introduced_peer_outside_the_vpn_network_is_a_finding() {
    let node = Node::installed();
    let conf = node.conf();
    node.write(
        "wg0.conf",
        &format!(
            "{conf}\n[Peer]\n# Name = eve\n# Source = introduced by bob\nPublicKey = {}\nAllowedIPs = 10.15.0.9/32, 192.168.5.0/24\n",
            super::super::CAROL_KEY
        ),
    );
    let found = node.wgp2p().args(["doctor"]).fails();
    let command = advice(&found.stdout, "introduced peer eve routes 192.168.5.0/24");
    assert_eq!(command[0], "wgp2p");
    node.wgp2p().args(&command[1..]).succeeds();
    let after = node.wgp2p().args(["doctor"]).output();
    assert!(!after.stdout.contains("introduced peer"), "{after}");
    assert!(!node.conf().contains("# Name = eve"));
}
