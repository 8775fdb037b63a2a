//! `wgp2p agent --auto-relay` on the namespace lab: two hosts behind two
//! different symmetric NATs meet through a relay-enabled public node with
//! no command typed, traffic to the other peers loses nothing meanwhile,
//! and a human's `relay NAME direct` is never undone. Each agent is a
//! process started by the test in its host's namespaces and stopped by its
//! recorded PID.

use wgp2p_lab as lab;

use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use lab::{Host, Lab, NatKind, WGP2P, build_mesh};
use serde_json::Value;

/// The agents' pass interval and relay delay in these tests (the defaults
/// are 30 s and 120 s).
const INTERVAL: &str = "2";
const RELAY_AFTER: &str = "10";
/// The goal: relayed within 3 minutes, no command typed.
const RELAY_TIMEOUT: Duration = Duration::from_secs(180);
/// A host behind symmetric NAT makes first contact on its handshake retry
/// (`REKEY_TIMEOUT`, 5 s plus jitter).
const FIRST_CONTACT: Duration = Duration::from_secs(8);

/// An agent running on a lab host; stopped with SIGTERM by its PID (then
/// SIGKILL if it does not exit) when dropped.
struct RunningAgent {
    host: String,
    child: Child,
}

impl RunningAgent {
    fn start(host: &Host, extra: &[&str]) -> RunningAgent {
        let mut args = vec![WGP2P.as_str(), "agent", "--interval", INTERVAL];
        args.extend_from_slice(extra);
        // nsenter enters the namespaces and execs wgp2p: the child's PID is
        // the agent's.
        let child = host
            .command(&args)
            .env("WGP2P_SERVICE", "wg-quick")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the agent on {}: {e}", host.name()));
        RunningAgent {
            host: host.name().to_string(),
            child,
        }
    }

    /// SIGTERM; the exit code and everything it logged.
    fn stop(mut self) -> (Option<i32>, String) {
        let code = terminate(&mut self.child);
        let mut log = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut log);
        }
        (code, log)
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            eprintln!("stopping the agent on {}", self.host);
            terminate(&mut self.child);
        }
    }
}

/// SIGTERM to our own child by its PID, SIGKILL after 10 s.
fn terminate(child: &mut Child) -> Option<i32> {
    if let Ok(Some(status)) = child.try_wait() {
        return status.code();
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) on the PID of our own, not yet reaped, child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A ping series in the background (10 a second) until [`PingSeries::end`].
struct PingSeries {
    what: String,
    child: Option<Child>,
}

impl PingSeries {
    fn start(from: &Host, ip: &str) -> PingSeries {
        let child = from
            .command(&["ping", "-n", "-q", "-i", "0.1", "-W", "1", ip])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a ping series");
        PingSeries {
            what: format!("{} -> {ip}", from.name()),
            child: Some(child),
        }
    }

    /// SIGINT (ping then prints its summary): (sent, received).
    fn end(mut self) -> (u32, u32) {
        let child = self.child.take().expect("a running series");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits");
        // SAFETY: kill(2) on the PID of our own, not yet reaped, child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let out = child.wait_with_output().expect("wait for the ping series");
        let text = String::from_utf8_lossy(&out.stdout);
        let summary = text
            .lines()
            .find(|l| l.contains("transmitted"))
            .unwrap_or_default();
        let number = |word: &str| {
            summary
                .split(',')
                .find(|part| part.contains(word))
                .and_then(|part| part.split_whitespace().next()?.parse::<u32>().ok())
                .unwrap_or_else(|| panic!("no ping summary for {}: {text}", self.what))
        };
        (number("transmitted"), number("received"))
    }
}

impl Drop for PingSeries {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True when `from` and `to` ping each other (both ways) before `timeout`.
fn pair_pings_within(a: &Host, a_ip: &str, b: &Host, b_ip: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if a.ping(b_ip, Duration::from_secs(2)) && b.ping(a_ip, Duration::from_secs(2)) {
            return true;
        }
    }
    false
}

fn status_json(host: &Host) -> Value {
    serde_json::from_str(&host.wgp2p_ok(&["status", "--json"])).expect("status --json")
}

/// The auto-relay state `status --json` shows for the peer `name`.
fn auto_relay_state(host: &Host, name: &str) -> Option<(String, Option<String>)> {
    let json = status_json(host);
    let found = json["agent"]["auto_relay"]["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer"] == name)
        .map(|p| {
            (
                p["state"].as_str().unwrap_or_default().to_string(),
                p["via_name"].as_str().map(ToString::to_string),
            )
        });
    // The peer's row says the same.
    let row = json["peers"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name))
        .map(|r| r["auto_relay"].clone());
    assert_eq!(
        row.as_ref().and_then(|r| r.as_str()),
        found.as_ref().map(|(state, _)| state.as_str()),
        "{json:#}"
    );
    found
}

/// The mesh of the relay tests: alpha (public, relay-enabled), bravo
/// (public) and charlie and delta behind two different symmetric NATs.
/// The symmetric pair has never had a handshake; everyone else has.
/// With `closed_forward`, delta's router has a port forward to delta that
/// drops everything for now (see [`port_forward`]).
fn symmetric_mesh(lab: &Lab, closed_forward: bool) -> [Host; 4] {
    let alpha = lab.public_host("alpha");
    let bravo = lab.public_host("bravo");
    let charlie = lab.host_behind_nat("charlie", NatKind::Symmetric);
    let delta = lab.host_behind_nat("delta", NatKind::Symmetric);
    if closed_forward {
        // delta's router is the lab's second NAT router.
        port_forward(lab, 2, &delta, "-I");
    }
    build_mesh(&[
        (&alpha, "10.15.0.1/24"),
        (&bravo, "10.15.0.2/24"),
        (&charlie, "10.15.0.3/24"),
        (&delta, "10.15.0.4/24"),
    ]);
    thread::scope(|s| {
        for host in [&charlie, &delta] {
            s.spawn(move || {
                for ip in ["10.15.0.1", "10.15.0.2"] {
                    assert!(
                        host.ping(ip, FIRST_CONTACT),
                        "{} cannot ping {ip}",
                        host.name()
                    );
                }
            });
        }
    });
    let enabled = alpha.wgp2p_ok(&["relay-enable"]);
    assert!(enabled.contains("relaying enabled"), "{enabled}");
    [alpha, bravo, charlie, delta]
}

fn start_agents(hosts: &[Host]) -> Vec<RunningAgent> {
    hosts
        .iter()
        .map(|h| RunningAgent::start(h, &["--auto-relay", "--relay-after", RELAY_AFTER]))
        .collect()
}

fn stop_agents(hosts: &[Host], agents: Vec<RunningAgent>) -> Vec<String> {
    let mut logs = Vec::new();
    for (host, agent) in hosts.iter().zip(agents) {
        let (code, log) = agent.stop();
        eprintln!("--- agent on {}:\n{log}", host.name());
        assert_eq!(
            code,
            Some(0),
            "the agent on {} did not exit cleanly",
            host.name()
        );
        logs.push(log);
    }
    logs
}

/// The scenario: agents with `--auto-relay` on every host, no
/// command typed after `relay-enable` on alpha. Charlie and delta reach
/// each other through alpha within 3 minutes; bravo -> charlie and
/// charlie -> alpha lose no packet meanwhile. Then a human makes delta
/// direct on charlie (and charlie on delta): the agents leave it so for
/// several passes beyond the relay delay, and status says it is pinned.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn symmetric_pair_is_relayed_without_a_command_and_a_human_pins_it() {
    let lab = Lab::new();
    let hosts = symmetric_mesh(&lab, false);
    let [alpha, bravo, charlie, delta] = &hosts;
    assert!(
        !charlie.ping("10.15.0.4", Duration::from_secs(4)),
        "symmetric NATs met directly: the test proves nothing"
    );
    let to_charlie = PingSeries::start(bravo, "10.15.0.3");
    let to_alpha = PingSeries::start(charlie, "10.15.0.1");
    let started = Instant::now();
    let agents = start_agents(&hosts);
    let met = pair_pings_within(charlie, "10.15.0.3", delta, "10.15.0.4", RELAY_TIMEOUT);
    let took = started.elapsed();
    eprintln!("charlie <-> delta: pinging {took:?} after the agents started");
    // A few seconds more of the series after the switch.
    thread::sleep(Duration::from_secs(3));
    let series = [to_charlie.end(), to_alpha.end()];
    let relayed_status = charlie.wgp2p_ok(&["status"]);
    eprintln!("charlie$ wgp2p status\n{relayed_status}");
    let charlie_state = auto_relay_state(charlie, "delta");
    let delta_state = auto_relay_state(delta, "charlie");
    let charlie_conf = charlie.read_file("/etc/wireguard/wg0.conf");
    let delta_conf = delta.read_file("/etc/wireguard/wg0.conf");
    if !met {
        stop_agents(&hosts, agents);
        panic!(
            "charlie and delta did not meet within {RELAY_TIMEOUT:?}:\n{}",
            charlie.run(&["wg", "show"])
        );
    }
    for ((sent, received), what) in series.iter().zip(["bravo -> charlie", "charlie -> alpha"]) {
        eprintln!("{what}: {sent} sent, {received} received");
        assert!(*sent > 100, "{what}: only {sent} pings sent");
        assert_eq!(sent, received, "{what} lost packets across the switch");
    }
    // Both ends moved, through the same relay, as the agent's own.
    assert!(charlie_conf.contains("# Relay = delta "), "{charlie_conf}");
    assert!(delta_conf.contains("# Relay = charlie "), "{delta_conf}");
    let relayed = Some(("relayed".to_string(), Some("alpha".to_string())));
    assert_eq!(charlie_state, relayed, "{relayed_status}");
    assert_eq!(delta_state, relayed);
    assert!(
        relayed_status.contains("delta: auto-relay: relayed via alpha by the agent"),
        "{relayed_status}"
    );
    // Nothing else was relayed.
    for host in [alpha, bravo] {
        let conf = host.read_file("/etc/wireguard/wg0.conf");
        assert!(!conf.contains("# Relay ="), "{}: {conf}", host.name());
    }

    // A human decides: delta direct on charlie, charlie direct on delta.
    charlie.wgp2p_ok(&["relay", "delta", "direct"]);
    delta.wgp2p_ok(&["relay", "charlie", "direct"]);
    // Three relay delays: the agents would have relayed them again twice.
    thread::sleep(Duration::from_secs(30));
    let pinned = Some(("pinned".to_string(), None));
    assert_eq!(auto_relay_state(charlie, "delta"), pinned);
    assert_eq!(auto_relay_state(delta, "charlie"), pinned);
    let logs = stop_agents(&hosts, agents);
    for (host, peer) in [(charlie, "delta"), (delta, "charlie")] {
        let conf = host.read_file("/etc/wireguard/wg0.conf");
        assert!(
            !conf.contains(&format!("# Relay = {peer} ")),
            "the agent on {} undid a human's decision:\n{conf}",
            host.name()
        );
    }
    assert!(
        logs[2].contains(
            "peer delta: no direct handshake for longer than 10 s: now relayed via alpha"
        ),
        "{}",
        logs[2]
    );
    assert!(
        logs[2].contains(
            "peer delta: placed by hand with `wgp2p relay`: the auto-relay leaves it alone"
        ),
        "{}",
        logs[2]
    );
    assert_eq!(
        logs[2].matches("now relayed via").count(),
        1,
        "charlie's agent relayed more than once:\n{}",
        logs[2]
    );
    assert!(
        !charlie.ping("10.15.0.4", Duration::from_secs(2)),
        "direct again by hand, the symmetric pair cannot meet"
    );
}

/// A port forward on NAT router number `router` (in front of `host`): UDP
/// 51820 on its public address goes to the host (DNAT), but new flows are
/// dropped while the FORWARD rule is in (`-I`); taking it out (`-D`) opens
/// the forward at once. A DNAT added later would not do: the router's
/// conntrack keeps the flows of the probes that failed before it, and
/// those never pass a NAT rule again.
fn port_forward(lab: &Lab, router: u8, host: &Host, action: &str) {
    let ns = format!("{}r{router}", lab.prefix());
    let to = host.local_ip().to_string();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "iptables", "-w"])
            .args(args)
            .output()
            .expect("run iptables in the router");
        assert!(
            out.status.success(),
            "{args:?} on {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if action == "-I" {
        let dnat = format!("{to}:51820");
        run(&[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            "wan0",
            "-p",
            "udp",
            "--dport",
            "51820",
            "-j",
            "DNAT",
            "--to-destination",
            &dnat,
        ]);
    }
    run(&[
        action,
        "FORWARD",
        "-i",
        "wan0",
        "-d",
        &to,
        "-p",
        "udp",
        "--dport",
        "51820",
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-j",
        "DROP",
    ]);
}

/// The TTL of one echo reply from `ip`: 64 directly, 63 through a relay.
fn reply_ttl(from: &Host, ip: &str) -> Option<u32> {
    let out = from.run(&["ping", "-n", "-c", "1", "-W", "2", ip]);
    let text = out.stdout;
    let at = text.find("ttl=")?;
    text[at + 4..].split_whitespace().next()?.parse().ok()
}

/// Moved back: once delta's router forwards its WireGuard port, the
/// direct probes make a handshake and both agents make the pair direct
/// again (the replies come with ttl 64: no relay in between).
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_relayed_pair_goes_direct_again_when_the_direct_path_works() {
    let lab = Lab::new();
    let hosts = symmetric_mesh(&lab, true);
    let [_, _, charlie, delta] = &hosts;
    let agents = start_agents(&hosts);
    let relayed = |host: &Host, peer: &str| {
        host.read_file("/etc/wireguard/wg0.conf")
            .contains(&format!("# Relay = {peer} "))
    };
    let both_relayed = lab::wait_until(RELAY_TIMEOUT, || {
        relayed(charlie, "delta") && relayed(delta, "charlie")
    });
    assert!(both_relayed, "the pair was not relayed");
    assert!(charlie.ping("10.15.0.4", Duration::from_secs(10)));
    assert_eq!(
        reply_ttl(charlie, "10.15.0.4"),
        Some(63),
        "not through the relay"
    );
    port_forward(&lab, 2, delta, "-D");
    let opened = Instant::now();
    let both_direct = lab::wait_until(Duration::from_secs(120), || {
        !relayed(charlie, "delta") && !relayed(delta, "charlie")
    });
    eprintln!(
        "direct again {:?} after the port was opened",
        opened.elapsed()
    );
    let ttl = lab::wait_until(Duration::from_secs(20), || {
        reply_ttl(charlie, "10.15.0.4") == Some(64)
    });
    if !both_direct {
        eprintln!("charlie$ wg show\n{}", charlie.run(&["wg", "show"]));
        eprintln!("delta$ wg show\n{}", delta.run(&["wg", "show"]));
    }
    let logs = stop_agents(&hosts, agents);
    assert!(both_direct, "the pair did not go direct again");
    assert!(ttl, "charlie does not reach delta directly");
    for log in &logs[2..] {
        assert!(
            log.contains("the direct probe made a handshake: direct again (was relayed via alpha by the agent)"),
            "{log}"
        );
    }
    // No human decided anything: no pin.
    assert!(
        !charlie
            .run(&["test", "-e", "/etc/wireguard/relay-pins"])
            .success()
    );
}

/// Only one end relays: charlie's agent runs with `--auto-relay`, delta's
/// without. Charlie moves delta onto alpha, which gains nothing (delta
/// drops what alpha forwards from charlie: charlie's address is not on
/// alpha's AllowedIPs at delta) and loses nothing (bravo -> charlie and
/// charlie -> alpha keep every packet). Once delta's agent runs with
/// `--auto-relay` too, it follows on its own and the pair meets.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn one_end_alone_gains_nothing_loses_nothing_and_the_other_follows() {
    let lab = Lab::new();
    let hosts = symmetric_mesh(&lab, false);
    let [alpha, bravo, charlie, delta] = &hosts;
    let to_charlie = PingSeries::start(bravo, "10.15.0.3");
    let to_alpha = PingSeries::start(charlie, "10.15.0.1");
    let auto = ["--auto-relay", "--relay-after", RELAY_AFTER];
    let mut agents = vec![
        RunningAgent::start(alpha, &[]),
        RunningAgent::start(bravo, &[]),
        RunningAgent::start(charlie, &auto),
    ];
    let plain_delta = RunningAgent::start(delta, &[]);
    let relayed = |host: &Host, peer: &str| {
        host.read_file("/etc/wireguard/wg0.conf")
            .contains(&format!("# Relay = {peer} "))
    };
    let one_side = lab::wait_until(RELAY_TIMEOUT, || relayed(charlie, "delta"));
    let met_alone = charlie.ping("10.15.0.4", Duration::from_secs(5));
    thread::sleep(Duration::from_secs(2));
    let series = [to_charlie.end(), to_alpha.end()];
    let (_, delta_log) = plain_delta.stop();
    eprintln!("--- plain agent on delta:\n{delta_log}");
    assert!(one_side, "charlie's agent did not relay delta");
    assert!(
        !relayed(delta, "charlie"),
        "delta's agent has no --auto-relay"
    );
    assert!(!met_alone, "a one-sided relay cannot work");
    for ((sent, received), what) in series.iter().zip(["bravo -> charlie", "charlie -> alpha"]) {
        eprintln!("{what}: {sent} sent, {received} received");
        assert!(*sent > 50, "{what}: only {sent} pings sent");
        assert_eq!(sent, received, "{what} lost packets");
    }
    agents.push(RunningAgent::start(delta, &auto));
    let met = pair_pings_within(charlie, "10.15.0.3", delta, "10.15.0.4", RELAY_TIMEOUT);
    stop_agents(&hosts, agents);
    assert!(relayed(delta, "charlie"), "delta's agent did not follow");
    assert!(met, "charlie and delta did not meet once both relayed");
}
