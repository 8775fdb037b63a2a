//! `wgp2p agent` on files only (`WGP2P_SERVICE=none`): the process, its
//! signals, its lock discipline and what `status` says about it. The
//! endpoint refresh on real WireGuard is tested in tests/agent.rs.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::node::{BIN, Node};

/// A running agent, killed by its PID if the test ends without stopping it.
struct Agent {
    child: Child,
}

impl Agent {
    fn start(node: &Node, extra: &[&str]) -> Agent {
        let child = Command::new(BIN)
            .args(["agent", "--interval", "1"])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("WGP2P_SERVICE", "none")
            .env("WG_CONFIG_DIR", node.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wgp2p agent");
        Agent { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` and wait (at most 10 s) for the exit: (code, stdout, stderr).
    fn stop(mut self, signal: i32) -> (Option<i32>, String, String) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid fits");
        // SAFETY: kill(2) on the PID of our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill the agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the agent") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop on {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).expect("read stdout");
        }
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut stderr).expect("read stderr");
        }
        (status.code(), stdout, stderr)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_json(node: &Node) -> serde_json::Value {
    let out = node.wgp2p().args(["status", "--json"]).succeeds();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn agent_runs_until_sigterm_shows_in_status_and_leaves_the_lock_free() {
    let node = Node::installed();
    // A peer with a DNS endpoint gives the pass something to look at.
    node.wgp2p()
        .args([
            "add-peer",
            "alice",
            "localhost:51820",
            crate::ALICE_KEY,
            "10.15.0.2",
        ])
        .succeeds();
    let agent = Agent::start(&node, &[]);
    wait_for("the agent's first pass", || {
        node.path("wg0.agent.json").exists()
    });
    let json = status_json(&node);
    assert_eq!(json["agent"]["running"], true, "{json}");
    assert_eq!(json["agent"]["pid"], agent.pid(), "{json}");
    assert_eq!(json["agent"]["interval_secs"], 1, "{json}");
    assert!(json["agent"]["last_pass_secs_ago"].is_u64(), "{json}");
    node.wgp2p()
        .args(["status"])
        .succeeds()
        .stdout_has(&format!("agent: running (pid {})", agent.pid()));

    // Commands that take the config lock are never kept waiting by it.
    node.wgp2p().args(crate::ADD_BOB).succeeds();
    // One agent per interface.
    let second = node.wgp2p().args(["agent", "--interval", "1"]).fails();
    assert_eq!(second.code, Some(3), "{second}");
    second.stderr_has(&format!(
        "an agent already runs for wg0 (pid {})",
        agent.pid()
    ));

    let (code, stdout, stderr) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(stdout, "", "the agent prints to stderr only");
    assert!(stderr.contains("wgp2p agent: started for wg0"), "{stderr}");
    assert!(
        stderr.contains("wgp2p agent: stopping on SIGTERM"),
        "{stderr}"
    );
    // The interface is down here: said once, not at every pass.
    assert_eq!(stderr.matches("is down").count(), 1, "{stderr}");
    // Not under journald: every line carries its own UTC time.
    assert!(
        stderr
            .lines()
            .all(|l| l.len() > 21 && l.as_bytes()[20] == b' ' && l.as_bytes()[19] == b'Z'),
        "{stderr}"
    );
    let json = status_json(&node);
    assert_eq!(json["agent"]["running"], false, "{json}");
    node.wgp2p()
        .args(["status"])
        .succeeds()
        .stdout_has("agent: not running");
}

#[test]
fn agent_stops_cleanly_on_sigint_and_without_timestamps_under_journald() {
    let node = Node::installed();
    let agent = Agent::start_with_env(&node, "JOURNAL_STREAM", "8:1234");
    wait_for("the agent's first pass", || {
        node.path("wg0.agent.json").exists()
    });
    let (code, _, stderr) = agent.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(
        stderr.lines().all(|l| l.starts_with("wgp2p agent: ")),
        "{stderr}"
    );
    assert!(stderr.contains("stopping on SIGINT"), "{stderr}");
}

impl Agent {
    fn start_with_env(node: &Node, key: &str, value: &str) -> Agent {
        let child = Command::new(BIN)
            .args(["agent", "--interval", "1"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("WGP2P_SERVICE", "none")
            .env("WG_CONFIG_DIR", node.dir())
            .env(key, value)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wgp2p agent");
        Agent { child }
    }
}

#[test]
fn agent_refuses_bad_intervals_and_a_missing_install() {
    let node = Node::installed();
    for bad in ["0", "3601", "ten"] {
        let out = node.wgp2p().args(["agent", "--interval", bad]).fails();
        assert_eq!(out.code, Some(2), "{out}");
        out.stderr_has("from 1 to 3600");
        assert_eq!(out.stderr.lines().count(), 1, "{out}");
    }
    for bad in ["0", "3601", "soon"] {
        let out = node
            .wgp2p()
            .args(["agent", "--auto-relay", "--relay-after", bad])
            .fails();
        assert_eq!(out.code, Some(2), "{out}");
        out.stderr_has("invalid relay delay");
        out.stderr_has("from 1 to 3600");
        assert_eq!(out.stderr.lines().count(), 1, "{out}");
    }
    let out = node.wgp2p().args(["agent", "--relay-after", "5"]).fails();
    assert_eq!(out.code, Some(2), "{out}");
    out.stderr_has("--auto-relay");
    let fresh = Node::new();
    let out = fresh.wgp2p().args(["agent"]).fails();
    out.stderr_has("install");
    assert!(
        !fresh.dir().exists(),
        "agent must not create the config dir"
    );
}

#[test]
fn agent_enable_needs_systemd_and_changes_nothing() {
    let node = Node::installed();
    let before = node.snapshot();
    for action in ["enable", "disable"] {
        let out = node.wgp2p().args(["agent", action]).fails();
        assert_eq!(out.code, Some(3), "{out}");
        out.stderr_has("systemd does not run wg0 here");
        out.stderr_has("docs/agent.md");
    }
    assert_eq!(node.snapshot().diff(&before), "");
}

#[test]
fn install_with_agent_needs_systemd_and_installs_nothing_without_it() {
    let node = Node::new();
    let out = node
        .wgp2p()
        .args(["install", "10.15.0.1/24", "--agent"])
        .fails();
    assert_eq!(out.code, Some(3), "{out}");
    out.stderr_has("cannot enable the agent's systemd unit");
    assert!(!node.dir().exists(), "nothing may be installed: {out}");
}

/// `uninstall` (with `--keep-keys` too) stops a running agent first, by
/// the PID its state names, and waits until it let go of its lock: the
/// agent never sees its peers vanish (it would announce their removal to
/// the mesh), and its lock is never deleted while held.
#[test]
fn uninstall_stops_a_running_agent_first() {
    let node = Node::installed();
    node.wgp2p().args(crate::ADD_ALICE).succeeds();
    let agent = Agent::start(&node, &[]);
    wait_for("the agent's first pass", || {
        node.path("wg0.agent.json").exists()
    });
    let pid = agent.pid();
    let out = node.wgp2p().args(["uninstall", "--keep-keys"]).succeeds();
    out.stdout_has(&format!("stopped the agent of wg0 (pid {pid})"));
    // It had stopped before uninstall went on.
    let mut agent = agent;
    assert!(
        agent
            .child
            .try_wait()
            .expect("wait for the agent")
            .is_some(),
        "the agent still runs"
    );
    let (code, _, stderr) = agent.stop_exited();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("stopping on SIGTERM"), "{stderr}");
    assert!(!stderr.contains("announcing the removal"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(node.dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().contains("agent")),
        "{left:?}"
    );
}

/// `import-key` with a running agent: refused, naming it; nothing changes.
#[test]
fn import_key_refuses_while_an_agent_runs() {
    let node = Node::installed();
    let agent = Agent::start(&node, &[]);
    wait_for("the agent's first pass", || {
        node.path("wg0.agent.json").exists()
    });
    let before = node.snapshot();
    let out = node
        .wgp2p()
        .args(["import-key", "-"])
        .stdin(&format!("{}\n", crate::ALICE_PRIVATE))
        .fails();
    assert_eq!(out.code, Some(3), "{out}");
    out.stderr_has(&format!("an agent runs for wg0 (pid {})", agent.pid()));
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert_eq!(node.snapshot().diff(&before), "");
}

impl Agent {
    /// The exit code and output of an agent that has exited.
    fn stop_exited(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().expect("wait for the agent");
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).expect("read stdout");
        }
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut stderr).expect("read stderr");
        }
        (status.code(), stdout, stderr)
    }
}

/// Whoever types `wgp2p relay` decides for that peer: the command lists it
/// in `relay-pins` (0600, with the config), which `agent --auto-relay`
/// obeys; a refused command pins nothing.
#[test]
fn relay_by_hand_pins_the_peer() {
    use crate::{ALICE_KEY, BOB_KEY};
    let node = Node::installed();
    for (name, key, ip) in [
        ("alice", ALICE_KEY, "10.15.0.2"),
        ("bob", BOB_KEY, "10.15.0.3"),
    ] {
        node.wgp2p()
            .args(["add-peer", name, "198.51.100.2:51820", key, ip])
            .succeeds();
    }
    let before = node.snapshot();
    let out = node.wgp2p().args(["relay", "bob", "via", "nobody"]).fails();
    out.stderr_has("no peer named");
    assert_eq!(node.snapshot(), before, "a refused relay changed a file");
    node.wgp2p()
        .args(["relay", "bob", "via", "alice"])
        .succeeds();
    let pins = node.read("relay-pins");
    assert!(pins.contains(&format!("\n{BOB_KEY} bob\n")), "{pins}");
    assert!(!pins.contains(ALICE_KEY), "{pins}");
    node.wgp2p().args(["relay", "bob", "direct"]).succeeds();
    assert_eq!(node.read("relay-pins"), pins);
    // Already direct: nothing to change in the config, but the decision
    // is still the human's.
    let out = node.wgp2p().args(["relay", "alice", "direct"]).succeeds();
    out.stdout_has("nothing to change");
    let pins = node.read("relay-pins");
    assert!(pins.contains(&format!("\n{ALICE_KEY} alice\n")), "{pins}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node.dir().join("relay-pins"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    node.wgp2p().args(["uninstall"]).succeeds();
    assert!(!node.dir().join("relay-pins").exists());
}

/// A node that accepts introductions needs a running agent: doctor says so
/// with the command, and says nothing once the agent runs.
#[test]
fn doctor_asks_for_an_agent_where_introductions_are_accepted() {
    let node = Node::installed();
    let finding =
        "this node accepts introductions but no agent runs to receive them: run `wgp2p agent`";
    let before = node.wgp2p().args(["doctor"]).output();
    assert!(!before.stdout.contains("accepts introductions"), "{before}");
    node.wgp2p()
        .args(["install", "10.15.0.1/24", "--accept-introductions"])
        .succeeds();
    let found = node.wgp2p().args(["doctor"]).fails();
    assert_eq!(found.code, Some(7), "{found}");
    found.stdout_has(finding);
    let agent = Agent::start(&node, &[]);
    wait_for("the agent's first pass", || {
        node.path("wg0.agent.json").exists()
    });
    let after = node.wgp2p().args(["doctor"]).output();
    assert!(!after.stdout.contains("accepts introductions"), "{after}");
    let (code, _, stderr) = agent.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{stderr}");
}
