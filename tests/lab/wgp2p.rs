//! Driving the real `wgp2p` binary on lab hosts, the way a user does.

use std::path::PathBuf;
use std::sync::LazyLock;

use super::host::{CmdOutput, Host};

/// The binary under test: `wgp2p` in the directory above the test
/// executable's `deps/` (cargo builds it before it runs an integration
/// test of the package).
pub static WGP2P: LazyLock<String> = LazyLock::new(|| {
    let exe = std::env::current_exe().expect("the path of the test executable");
    let bin: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("wgp2p"))
        .expect("the test executable lives in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with cargo",
        bin.display()
    );
    bin.to_str().expect("a UTF-8 target path").to_owned()
});

/// A `wgp2p add-peer …` line as printed by the CLI, split like a shell would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddPeerLine {
    /// The line exactly as printed.
    pub line: String,
    /// The words after the leading `wgp2p`: `add-peer NAME ENDPOINT KEY IP …`.
    pub args: Vec<String>,
}

impl AddPeerLine {
    #[must_use]
    pub fn name(&self) -> &str {
        &self.args[1]
    }

    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.args[2]
    }

    #[must_use]
    pub fn public_key(&self) -> &str {
        &self.args[3]
    }

    #[must_use]
    pub fn vpn_ip(&self) -> &str {
        &self.args[4]
    }
}

/// Every `wgp2p add-peer ` line in `stdout`, in order, without duplicates.
///
/// # Panics
///
/// When an add-peer line has fewer than its four arguments.
pub fn add_peer_lines(stdout: &str) -> Vec<AddPeerLine> {
    let mut lines: Vec<AddPeerLine> = Vec::new();
    for line in stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("wgp2p add-peer "))
    {
        let words = shell_words(line);
        assert!(words.len() >= 6, "add-peer line has too few words: {line}");
        let parsed = AddPeerLine {
            line: line.to_string(),
            args: words[1..].to_vec(),
        };
        if !lines.contains(&parsed) {
            lines.push(parsed);
        }
    }
    lines
}

/// Splits a line into words like `sh` does for the quoting a pasted line can
/// hold: blanks separate words, '…' and "…" quote, and \ escapes.
#[must_use]
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '\'' => word
                .get_or_insert_default()
                .extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                let w = word.get_or_insert_default();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_default().extend(chars.next()),
            c => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

impl Host {
    /// Runs `wgp2p args…` on this host as a user would in a namespace with no
    /// systemd: the wg-quick service, and no STUN server (an empty list
    /// turns discovery off; unset would mean the public default servers).
    #[allow(
        clippy::must_use_candidate,
        reason = "run for its effect; a test checks the output when it wants to"
    )]
    pub fn wgp2p(&self, args: &[&str]) -> CmdOutput {
        self.wgp2p_with_stun(args, "")
    }

    /// `wgp2p args…` with `WGP2P_STUN_SERVERS` set to `servers` (see
    /// [`super::StunServer::servers`]).
    pub fn wgp2p_with_stun(&self, args: &[&str], servers: &str) -> CmdOutput {
        let mut cmd = self.command(&[WGP2P.as_str()]);
        cmd.args(args)
            .env("WGP2P_SERVICE", "wg-quick")
            .env("WGP2P_STUN_SERVERS", servers)
            .env("RUST_BACKTRACE", "1");
        super::host::run_with_input(&mut cmd, "", super::host::timeout())
    }

    /// `wgp2p args…`, which must succeed; returns its stdout.
    #[allow(
        clippy::must_use_candidate,
        reason = "run for its effect; a test checks the output when it wants to"
    )]
    pub fn wgp2p_ok(&self, args: &[&str]) -> String {
        let what = format!("wgp2p {} on {}", args.join(" "), self.name());
        self.wgp2p(args).expect_ok(&what)
    }

    /// `wgp2p install ADDRESS --endpoint ENDPOINT`, returning the one
    /// add-peer line it must print.
    ///
    /// # Panics
    ///
    /// When install fails or prints no add-peer line.
    #[allow(
        clippy::must_use_candidate,
        reason = "run for its effect; a test checks the output when it wants to"
    )]
    pub fn install(&self, address: &str, endpoint: &str) -> AddPeerLine {
        let stdout = self.wgp2p_ok(&["install", address, "--endpoint", endpoint]);
        let mut lines = add_peer_lines(&stdout);
        assert_eq!(
            lines.len(),
            1,
            "install on {} must print one add-peer line:\n{stdout}",
            self.name()
        );
        lines.remove(0)
    }

    /// Pastes another node's add-peer line on this host.
    pub fn add_peer(&self, line: &AddPeerLine) -> String {
        let args: Vec<&str> = line.args.iter().map(String::as_str).collect();
        self.wgp2p_ok(&args)
    }
}

/// Installs every host with its address (and its public endpoint on port
/// 51820), then pastes every host's line on every other host: the README's
/// walkthrough. Returns the lines in the order of `nodes`.
#[allow(
    clippy::must_use_candidate,
    reason = "run for its effect; a test checks the output when it wants to"
)]
pub fn build_mesh(nodes: &[(&Host, &str)]) -> Vec<AddPeerLine> {
    let lines: Vec<AddPeerLine> = nodes
        .iter()
        .map(|(host, address)| host.install(address, &host.endpoint(51820)))
        .collect();
    exchange(nodes.iter().map(|(h, _)| *h), &lines);
    lines
}

/// Runs each line on every host but the one that printed it.
#[allow(
    clippy::needless_pass_by_value,
    reason = "any iterable of hosts, cloned once per line"
)]
pub fn exchange<'a>(hosts: impl IntoIterator<Item = &'a Host> + Clone, lines: &[AddPeerLine]) {
    for line in lines {
        for host in hosts
            .clone()
            .into_iter()
            .filter(|h| h.name() != line.name())
        {
            host.add_peer(line);
        }
    }
}
