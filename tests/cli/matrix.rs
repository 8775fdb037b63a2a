//! The bad-input matrix: every case must fail with a non-zero exit, one
//! line on stderr that names the bad value, no panic, and no file changed.

use super::node::Node;
use crate::{ALICE_KEY, ALICE_PRIVATE, BOB_KEY};

/// One bad invocation and the text its error must contain.
pub struct Case {
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    pub stdin: String,
    /// Printed as is when printable, else as Rust escapes it (`\n`, `\t`).
    pub needle: String,
}

impl Case {
    fn env(mut self, key: &'static str, value: &str) -> Case {
        self.env.push((key, value.to_string()));
        self
    }

    fn stdin(mut self, text: &str) -> Case {
        self.stdin = text.to_string();
        self
    }
}

/// `wgp2p ARGS…` must fail and its error must contain `needle`.
fn bad(needle: &str, args: &[&str]) -> Case {
    Case {
        args: args.iter().map(ToString::to_string).collect(),
        env: Vec::new(),
        stdin: String::new(),
        needle: needle.to_string(),
    }
}

const EP: &str = "198.51.100.3:51820";
const IP: &str = "10.15.0.3";
/// Stands for this node's own public key, known once installed.
pub const OWN: &str = "{OWN}";

/// `add-peer NAME` with otherwise good values; the name is the needle.
fn name(n: &str) -> Case {
    bad(n, &["add-peer", n, EP, BOB_KEY, IP])
}

/// `add-peer bob ENDPOINT …`; the endpoint is the needle.
fn endpoint(e: &str) -> Case {
    bad(e, &["add-peer", "bob", e, BOB_KEY, IP])
}

/// `add-peer bob EP KEY …`; the key is the needle.
fn key(k: &str) -> Case {
    bad(k, &["add-peer", "bob", EP, k, IP])
}

/// `add-peer bob EP BOB_KEY PEER_IP`; the IP is the needle.
fn peer_ip(ip: &str) -> Case {
    bad(ip, &["add-peer", "bob", EP, BOB_KEY, ip])
}

fn allowed(nets: &str, needle: &str) -> Case {
    bad(
        needle,
        &["add-peer", "bob", EP, BOB_KEY, IP, "--allowed-ips", nets],
    )
}

fn install(address: &str) -> Case {
    bad(address, &["install", address])
}

fn provision(name: &str, endpoint: &str, address: &str, needle: &str) -> Case {
    bad(needle, &["provision-peer", name, endpoint, address])
}

fn import(stdin: &str, needle: &str) -> Case {
    bad(needle, &["import-key"]).stdin(stdin)
}

fn names() -> Vec<Case> {
    let long = "x".repeat(65);
    let mut cases: Vec<Case> = [
        "",
        &long,
        "a\tb",
        "a\nb",
        "a\n[Peer]",
        "[",
        "]",
        "a=b",
        "#x",
        "é",
        "../wg0",
        ".hidden",
        "a b",
        "a/b",
        "a\rb",
        "ab\u{7f}",
        "\u{1b}[2Jx",
        "a\u{8}b",
    ]
    .iter()
    .map(|n| name(n))
    .collect();
    cases.push(bad("-x", &["add-peer", "--", "-x", EP, BOB_KEY, IP]));
    cases.push(bad("-x", &["add-peer", "-x", EP, BOB_KEY, IP]));
    // A name already used by another key.
    cases.push(bad("alice", &["add-peer", "alice", EP, BOB_KEY, IP]));
    cases
}

fn keys() -> Vec<Case> {
    vec![
        key(&BOB_KEY[..43]),
        key(&format!("{BOB_KEY}A")),
        key("abc"),
        key("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!="),
        key("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        key("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dh="),
        key(OWN),
        // The key is alice's: refused under another name.
        key(ALICE_KEY),
    ]
}

fn endpoints() -> Vec<Case> {
    let mut cases: Vec<Case> = [
        "198.51.100.3",
        "198.51.100.3:0",
        "198.51.100.3:65536",
        "198.51.100.3:-1",
        "198.51.100.3:abc",
        "[fd00::1:51820",
        "fd00::1]:51820",
        "fd00::1:51820",
        "a:b:c",
        ":51820",
        "host:",
        "[fd00::1]x",
        "[nothost]:1",
        "256.1.1.1:5",
        "ho st:1",
        "",
    ]
    .iter()
    .map(|e| endpoint(e))
    .collect();
    for e in ["203.0.113.7:0", "[fd00::1", ":5", "a:b:c"] {
        cases.push(bad(e, &["install", "10.15.0.1/24", "--endpoint", e]));
    }
    cases.push(provision(
        "tab",
        "198.51.100.9",
        "10.15.0.10/24",
        "198.51.100.9",
    ));
    cases
}

fn addresses() -> Vec<Case> {
    let mut cases: Vec<Case> = [
        "10.15.0.1",
        "10.15.0.1/33",
        "fd00::1/129",
        "10.15.0.0/24",
        "10.15.0.255/24",
        "10.15.0.1/0",
        "0.0.0.0/0",
        "x/24",
        "",
        // A valid address other than the saved one.
        "10.15.0.7/24",
    ]
    .iter()
    .map(|a| install(a))
    .collect();
    for a in [
        "10.15.0.10",
        "10.15.0.10/33",
        "10.15.0.0/24",
        "10.15.0.255/24",
    ] {
        cases.push(provision("tab", "198.51.100.9:51820", a, a));
    }
    // The IP of a peer, and this node's own.
    cases.push(provision(
        "tab",
        "198.51.100.9:51820",
        "10.15.0.2/24",
        "10.15.0.2",
    ));
    cases.push(provision(
        "tab",
        "198.51.100.9:51820",
        "10.15.0.1/24",
        "10.15.0.1",
    ));
    for ip in [
        "0.0.0.0/0",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "10.15.0",
        "10.15.0.4/40",
        "10.15.0.1",
    ] {
        cases.push(peer_ip(ip));
    }
    cases.push(bad(
        "10.15.0.1",
        &["add-peer", "bob", EP, BOB_KEY, "10.15.0.1/24"],
    ));
    // alice's address.
    cases.push(peer_ip("10.15.0.2"));
    cases.push(allowed("10.15.0.0/24", "10.15.0.0/24"));
    cases.push(allowed("10.15.0.2/32", "10.15.0.2/32"));
    cases.push(allowed("192.168.5.1/24", "192.168.5.1/24"));
    cases.push(allowed("192.168.5.0/24,", "192.168.5.0/24,"));
    cases.push(allowed("nope", "nope"));
    cases.push(allowed("0.0.0.0/0", "0.0.0.0/0"));
    // Routes that would cut a tunnel: bob's address as its own endpoint,
    // a network over alice's endpoint or this node's public one.
    cases.push(peer_ip("198.51.100.3"));
    cases.push(allowed("198.51.100.0/24", "198.51.100.0/24"));
    cases.push(allowed("203.0.113.0/24", "203.0.113.0/24"));
    // A device whose address is alice's endpoint.
    cases.push(provision(
        "tab",
        "192.0.2.10:51820",
        "198.51.100.2/24",
        "198.51.100.2",
    ));
    cases
}

fn interfaces_and_ports() -> Vec<Case> {
    let mut cases = Vec::new();
    for iface in ["wg0123456789abcd", "wg/0", "wg 0", "", "..", "wg0\n"] {
        cases.push(bad(
            iface,
            &["--interface", iface, "add-peer", "bob", EP, BOB_KEY, IP],
        ));
        cases.push(bad(iface, &["status"]).env("WG_INTERFACE", iface));
    }
    for port in ["0", "65536", "abc", "-1", ""] {
        cases.push(bad(port, &["install", "10.15.0.1/24", "--port", port]));
        cases.push(bad(port, &["install", "10.15.0.1/24"]).env("WG_PORT", port));
    }
    cases.push(bad("openrc", &["status"]).env("WGP2P_SERVICE", "openrc"));
    for secs in ["-1", "65536", "abc"] {
        cases.push(bad(
            secs,
            &["add-peer", "bob", EP, BOB_KEY, IP, "--keepalive", secs],
        ));
    }
    cases
}

fn keys_to_import() -> Vec<Case> {
    vec![
        import("garbage\n", "private key"),
        import("", "private key"),
        import(&format!("{}\n", &ALICE_PRIVATE[..43]), "private key"),
        import(&format!("{ALICE_PRIVATE}A\n"), "private key"),
        import(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            "private key",
        ),
        import(
            &format!("{ALICE_PRIVATE}\n{ALICE_PRIVATE}\n"),
            "private key",
        ),
        // alice's private key: its public key is a peer's.
        import(&format!("{ALICE_PRIVATE}\n"), ALICE_KEY),
        bad("private key", &["import-key", "-"]).stdin("not a key"),
        // Given as an argument (visible in the process list, but refused all the same).
        bad("private key", &["import-key", "garbage"]),
    ]
}

fn commands_and_arguments() -> Vec<Case> {
    vec![
        bad("nobody", &["remove-peer", "nobody"]),
        bad(BOB_KEY, &["remove-peer", BOB_KEY]),
        bad("\"\"", &["remove-peer", ""]),
        bad("frobnicate", &["frobnicate"]),
        bad("add-peers", &["add-peers"]),
        bad("--frob", &["status", "--frob"]),
        bad("ADDRESS/CIDR", &["install"]),
        bad("ENDPOINT", &["add-peer", "bob"]),
        bad("PEER_IP", &["add-peer", "bob", EP, BOB_KEY]),
        bad("PUBLIC_KEY|NAME", &["remove-peer"]),
        bad("NAME", &["provision-peer"]),
        bad("ENDPOINT", &["provision-peer", "tab"]),
        bad("--interface", &["status", "--interface"]),
        bad("--endpoint", &["install", "10.15.0.1/24", "--endpoint"]),
        bad("extra", &["status", "extra"]),
        bad("extra", &["install", "10.15.0.1/24", "extra"]),
        bad("extra", &["add-peer", "bob", EP, BOB_KEY, IP, "extra"]),
        bad("extra", &["remove-peer", "alice", "extra"]),
        bad("extra", &["uninstall", "extra"]),
        bad("extra", &["start", "extra"]),
        bad("extra", &["import-key", "-", "extra"]),
        bad(
            "extra",
            &["provision-peer", "tab", EP, "10.15.0.10/24", "extra"],
        ),
        // Provisioning a name that exists (a file, a peer of another key).
        provision("phone", "198.51.100.9:51820", "10.15.0.10/24", "phone"),
        provision("alice", "198.51.100.9:51820", "10.15.0.10/24", "alice"),
        provision("../wg0", "198.51.100.9:51820", "10.15.0.10/24", "../wg0"),
        provision(
            "a\n[Peer]",
            "198.51.100.9:51820",
            "10.15.0.10/24",
            "a\n[Peer]",
        ),
    ]
}

/// Every case of the matrix.
pub fn cases() -> Vec<Case> {
    [
        names(),
        keys(),
        endpoints(),
        addresses(),
        interfaces_and_ports(),
        keys_to_import(),
        commands_and_arguments(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// How a value shows in a one-line message: as is, or escaped.
fn shown(value: &str) -> String {
    if value.is_empty() {
        return "\"\"".to_string();
    }
    if value.chars().any(char::is_control) {
        value.escape_debug().to_string()
    } else {
        value.to_string()
    }
}

/// Run one case against `node`; `Err` says what went wrong.
pub fn check(node: &Node, case: &Case) -> Result<(), String> {
    let own = node.public_key();
    let subst = |s: &str| s.replace(OWN, &own);
    let mut run = node
        .wgp2p()
        .args(case.args.iter().map(|a| subst(a)))
        .stdin(&case.stdin);
    for (key, value) in &case.env {
        run = run.env(key, value);
    }
    let before = node.snapshot();
    let out = run.output();
    let after = node.snapshot();
    let needle = shown(&subst(&case.needle));
    let mut problems = Vec::new();
    if out.code == Some(0) || out.code.is_none() {
        problems.push(format!("exit code {:?}", out.code));
    }
    if out.stderr.matches('\n').count() != 1 || !out.stderr.ends_with('\n') {
        problems.push("stderr is not exactly one line".to_string());
    }
    let body = out.stderr.strip_suffix('\n').unwrap_or(&out.stderr);
    if body
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        problems.push("stderr holds a raw control character".to_string());
    }
    if !out.stderr.contains(&needle) {
        problems.push(format!("stderr does not name {needle:?}"));
    }
    let diff = before.diff(&after);
    if !diff.is_empty() {
        problems.push(format!("files changed: {}", diff.trim_end()));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!("{}\n    {out}", problems.join("; ")))
}
