//! `wgp2p agent` on real WireGuard in the lab: DNS endpoints kept fresh,
//! the agents' protocol, and members introducing each other.
//! Each agent is a process started by the test inside its host's
//! namespaces and stopped by its recorded PID.

use wgp2p_lab as lab;

use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use lab::{AddPeerLine, Host, Lab, NatKind, WGP2P, exchange, wait_until};
use serde_json::Value;

const PORT: u16 = 51820;
/// The agents' pass interval in these tests (the default is 30 s).
const INTERVAL: &str = "2";
/// The issue's goal: a tunnel whose both ends moved works again within 60 s.
const HEAL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the pair without agents is watched for a ping that must not come.
const NO_HEAL_WINDOW: Duration = Duration::from_secs(30);

/// An agent running on a lab host; stopped with SIGTERM by its PID (then
/// SIGKILL if it does not exit) when dropped.
struct RunningAgent {
    host: String,
    child: Child,
}

impl RunningAgent {
    fn start(host: &Host) -> RunningAgent {
        // nsenter enters the namespaces and execs wgp2p: the child's PID is
        // the agent's.
        let child = host
            .command(&[WGP2P.as_str(), "agent", "--interval", INTERVAL])
            .env("WGP2P_SERVICE", "wg-quick")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the agent on {}: {e}", host.name()));
        RunningAgent {
            host: host.name().to_string(),
            child,
        }
    }

    /// SIGTERM; the exit code and everything it logged.
    fn stop(mut self) -> (Option<i32>, String) {
        let code = self.terminate();
        let mut log = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut log);
        }
        (code, log)
    }

    /// SIGKILL, as a crash or a power cut would end it.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) -> Option<i32> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.code();
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the PID of our own, not yet reaped, child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            eprintln!("stopping the agent on {}", self.host);
            self.terminate();
        }
    }
}

/// `name.lab`, the DNS name of a lab host in these tests.
fn dns_name(host: &Host) -> String {
    format!("{}.lab", host.name())
}

/// Points `name` at `ip` in `host`'s own /etc/hosts (a bind mount: it is
/// rewritten in place, not replaced).
fn set_hosts_entry(host: &Host, name: &str, ip: &str) {
    let script = r#"grep -v " $1\$" /etc/hosts > /run/hosts.new && echo "$2 $1" >> /run/hosts.new && cat /run/hosts.new > /etc/hosts"#;
    host.sh(script, &[name, ip])
        .expect_ok(&format!("point {name} at {ip} on {}", host.name()));
}

/// Moves a public host to another address on the public segment. The old
/// address goes first: deleting a primary address also deletes the
/// secondaries of its subnet.
fn move_host(host: &Host, new_ip: &str) {
    let old = host.public_ip().to_string();
    host.sh(
        "ip addr del \"$2/24\" dev eth0 && ip addr add \"$1/24\" dev eth0",
        &[new_ip, &old],
    )
    .expect_ok(&format!("move {} to {new_ip}", host.name()));
    let shown = host
        .run(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        .expect_ok("ip addr show");
    assert!(
        shown.contains(&format!(" {new_ip}/24 ")) && !shown.contains(&format!(" {old}/24 ")),
        "{} did not move to {new_ip}:\n{shown}",
        host.name()
    );
}

/// Two public hosts that know each other by DNS name only.
fn dns_pair(lab: &Lab, names: [&str; 2]) -> [Host; 2] {
    let hosts = [lab.public_host(names[0]), lab.public_host(names[1])];
    for host in &hosts {
        for other in &hosts {
            set_hosts_entry(host, &dns_name(other), &other.public_ip().to_string());
        }
    }
    let lines: Vec<AddPeerLine> = hosts
        .iter()
        .zip(["10.15.0.1/24", "10.15.0.2/24"])
        .map(|(host, address)| host.install(address, &format!("{}:{PORT}", dns_name(host))))
        .collect();
    exchange(&hosts, &lines);
    for (from, to) in [(&hosts[0], "10.15.0.2"), (&hosts[1], "10.15.0.1")] {
        assert!(
            from.ping(to, Duration::from_secs(5)),
            "{} cannot ping {to} before the move",
            from.name()
        );
    }
    hosts
}

/// True when both hosts of the pair ping each other before `timeout`.
fn heals_within(pair: &[Host; 2], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut healed = [false, false];
    while Instant::now() < deadline && !healed.iter().all(|h| *h) {
        for (i, (from, to)) in [(&pair[0], "10.15.0.2"), (&pair[1], "10.15.0.1")]
            .into_iter()
            .enumerate()
        {
            if !healed[i] {
                healed[i] = from.ping(to, Duration::from_secs(2));
            }
        }
    }
    healed.iter().all(|h| *h)
}

/// Two pairs of public hosts, each pair knowing each other by DNS name;
/// agents run on one pair only. All four hosts change address at once (so
/// no side can roam to the other) and the hosts files follow. The pair
/// with agents pings again within 60 s; the pair without never does.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn agents_follow_dns_when_both_ends_move() {
    let lab = Lab::new();
    let with_agents = dns_pair(&lab, ["defiant", "enterprise"]);
    let without = dns_pair(&lab, ["voyager", "reliant"]);
    let agents: Vec<RunningAgent> = with_agents.iter().map(RunningAgent::start).collect();
    // Each agent has resolved the names once, so it knows where they pointed.
    for host in &with_agents {
        assert!(
            wait_until(Duration::from_secs(20), || host
                .run(&["test", "-s", "/etc/wireguard/wg0.agent.json"])
                .success()),
            "no agent pass on {}",
            host.name()
        );
    }

    let new_ips = [
        "203.0.113.201",
        "203.0.113.202",
        "203.0.113.203",
        "203.0.113.204",
    ];
    let pairs = [&with_agents, &without];
    for (pair, ips) in pairs.iter().zip(new_ips.chunks(2)) {
        for (host, ip) in pair.iter().zip(ips) {
            move_host(host, ip);
        }
        for host in *pair {
            for (other, ip) in pair.iter().zip(ips) {
                set_hosts_entry(host, &dns_name(other), ip);
            }
        }
    }
    let moved = Instant::now();

    let (healed, healed_alone) = thread::scope(|s| {
        let alone = s.spawn(|| heals_within(&without, NO_HEAL_WINDOW));
        let healed = heals_within(&with_agents, HEAL_TIMEOUT);
        eprintln!(
            "pair with agents: pinging again {:?} after the move",
            moved.elapsed()
        );
        (
            healed,
            alone.join().expect("the watch on the pair without agents"),
        )
    });
    assert!(
        !healed_alone,
        "the pair without agents pinged again: the test proves nothing"
    );

    // What the agents did, for the assertions and for whoever reads a failure.
    let jsons: Vec<Value> = with_agents.iter().map(status_json).collect();
    let logs: Vec<(Option<i32>, String)> = agents.into_iter().map(RunningAgent::stop).collect();
    for (host, (code, log)) in with_agents.iter().zip(&logs) {
        eprintln!("--- agent on {}:\n{log}", host.name());
        assert_eq!(
            *code,
            Some(0),
            "the agent on {} did not exit cleanly",
            host.name()
        );
    }
    assert!(
        healed,
        "the pair with agents did not ping again within {HEAL_TIMEOUT:?}:\n{}",
        with_agents[0].run(&["wg", "show"])
    );
    // One agent acting is enough: once one end sends to the other's new
    // address (its `hello` each pass is such a packet), WireGuard roaming
    // gives the other end the new source too, and its agent may then find
    // nothing left to set.
    let mut shown = 0;
    for ((json, other), new_ip) in jsons
        .iter()
        .zip(["enterprise", "defiant"])
        .zip(["203.0.113.202", "203.0.113.201"])
    {
        let Some(learned) = json["agent"]["learned_endpoints"].get(0) else {
            continue;
        };
        shown += 1;
        assert_eq!(learned["peer"], other, "{json:#}");
        assert_eq!(learned["address"], format!("{new_ip}:{PORT}"), "{json:#}");
        assert_eq!(
            learned["configured"],
            format!("{other}.lab:{PORT}"),
            "{json:#}"
        );
        assert_eq!(learned["source"], "dns", "{json:#}");
    }
    assert!(shown >= 1, "no agent shows an endpoint it set: {jsons:#?}");
    assert!(
        logs.iter()
            .any(|(_, log)| log.contains("the name moved") || log.contains("stale")),
        "no agent logged an endpoint change"
    );
    // The config keeps the name as written.
    let conf = with_agents[0].read_file("/etc/wireguard/wg0.conf");
    assert!(
        conf.contains(&format!("Endpoint = enterprise.lab:{PORT}")),
        "{conf}"
    );
}

/// A killed agent loses nothing: restarted after both ends moved (while no
/// agent ran), it still knows where the names pointed before (its state
/// file in the config dir) and heals the tunnel at its first passes, long
/// before the peer turns stale (135 s without a handshake), which is all an
/// agent without that memory could go by.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_restarted_agent_remembers_where_names_pointed() {
    let lab = Lab::new();
    let pair = dns_pair(&lab, ["defiant", "enterprise"]);
    let agents: Vec<RunningAgent> = pair.iter().map(RunningAgent::start).collect();
    for host in &pair {
        assert!(
            wait_until(Duration::from_secs(20), || host
                .run(&["test", "-s", "/etc/wireguard/wg0.agent.json"])
                .success()),
            "no agent pass on {}",
            host.name()
        );
    }
    for agent in agents {
        agent.kill();
    }
    let ips = ["203.0.113.211", "203.0.113.212"];
    for (host, ip) in pair.iter().zip(ips) {
        move_host(host, ip);
    }
    for host in &pair {
        for (other, ip) in pair.iter().zip(ips) {
            set_hosts_entry(host, &dns_name(other), ip);
        }
    }
    // The handshake of the pings before the move is seconds old: nothing
    // is stale for about two more minutes.
    let moved = Instant::now();
    let agents: Vec<RunningAgent> = pair.iter().map(RunningAgent::start).collect();
    let healed = heals_within(&pair, HEAL_TIMEOUT);
    eprintln!("pinging again {:?} after the move", moved.elapsed());
    let logs: Vec<(Option<i32>, String)> = agents.into_iter().map(RunningAgent::stop).collect();
    for (host, (code, log)) in pair.iter().zip(&logs) {
        eprintln!("--- restarted agent on {}:\n{log}", host.name());
        assert_eq!(
            *code,
            Some(0),
            "the agent on {} did not exit cleanly",
            host.name()
        );
    }
    // One remembering agent is enough: once one end sends a handshake to
    // the other's new address, WireGuard roaming gives the other end the
    // new source address too, and its agent then finds nothing to set.
    assert!(
        logs.iter().any(|(_, log)| log.contains("the name moved")),
        "no restarted agent acted on its memory of the names"
    );
    assert!(
        healed,
        "no ping within {HEAL_TIMEOUT:?} of the move:\n{}",
        pair[0].run(&["wg", "show"])
    );
}

/// Two public hosts with IP endpoints and keepalive off on both sides, so
/// nothing is sent while nobody talks.
fn quiet_pair(lab: &Lab, names: [&str; 2]) -> [Host; 2] {
    let hosts = [lab.public_host(names[0]), lab.public_host(names[1])];
    let lines: Vec<AddPeerLine> = hosts
        .iter()
        .zip(["10.15.0.1/24", "10.15.0.2/24"])
        .map(|(host, address)| host.install(address, &host.endpoint(PORT)))
        .collect();
    for (host, line) in [(&hosts[0], &lines[1]), (&hosts[1], &lines[0])] {
        let mut args: Vec<&str> = line.args.iter().map(String::as_str).collect();
        args.extend(["--keepalive", "0"]);
        host.wgp2p_ok(&args);
    }
    for (from, to) in [(&hosts[0], "10.15.0.2"), (&hosts[1], "10.15.0.1")] {
        assert!(
            from.ping(to, Duration::from_secs(5)),
            "{} cannot ping {to} before the move",
            from.name()
        );
    }
    hosts
}

/// True when `from` pings `ip` before `timeout`.
fn pings_within(from: &Host, ip: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if from.ping(ip, Duration::from_secs(2)) {
            return true;
        }
    }
    false
}

/// A host that moves tells its peers at once: with an agent, its peer
/// (keepalive off, IP endpoint) reaches it again within seconds; without
/// one, the peer keeps sending to the old address and never does.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_host_that_moves_tells_its_peers() {
    let lab = Lab::new();
    let with_agent = quiet_pair(&lab, ["defiant", "enterprise"]);
    let without = quiet_pair(&lab, ["voyager", "reliant"]);
    let agent = RunningAgent::start(&with_agent[0]);
    assert!(
        wait_until(Duration::from_secs(20), || with_agent[0]
            .run(&["test", "-s", "/etc/wireguard/wg0.agent.json"])
            .success()),
        "no agent pass"
    );
    // WireGuard answers received data with a keepalive after 10 s of
    // silence (KEEPALIVE_TIMEOUT): let those go out before the move, so
    // that no packet is left to tell the peer by chance.
    thread::sleep(Duration::from_secs(15));
    move_host(&with_agent[0], "203.0.113.221");
    move_host(&without[0], "203.0.113.222");
    let (reached, reached_alone) = thread::scope(|s| {
        let alone = s.spawn(|| pings_within(&without[1], "10.15.0.1", NO_HEAL_WINDOW));
        let reached = pings_within(&with_agent[1], "10.15.0.1", HEAL_TIMEOUT);
        (
            reached,
            alone
                .join()
                .expect("the watch on the pair without an agent"),
        )
    });
    let (code, log) = agent.stop();
    eprintln!("--- agent on defiant:\n{log}");
    assert_eq!(code, Some(0));
    assert!(
        !reached_alone,
        "the pair without an agent recovered: the test proves nothing"
    );
    assert!(
        reached,
        "enterprise cannot reach defiant after the move:\n{}",
        with_agent[1].run(&["wg", "show"])
    );
    assert!(
        log.contains("this host's addresses changed (now 203.0.113.221, fd00:203::1)")
            && log.contains("to 1 of 1 peers"),
        "{log}"
    );
}

/// `status --json` of a host, parsed.
fn status_json(host: &Host) -> Value {
    serde_json::from_str(&host.wgp2p_ok(&["status", "--json"])).expect("status --json")
}

/// Sends `payload` as one UDP datagram from `host` to `ip`:51871.
fn send_datagram(host: &Host, ip: &str, payload: &str) {
    host.run(&[
        "bash",
        "-c",
        "printf %s \"$1\" > \"/dev/udp/$2/51871\"",
        "send",
        payload,
        ip,
    ])
    .expect_ok(&format!("send a datagram to {ip}"));
}

/// The agents' protocol on real tunnels: each agent listens on its VPN
/// address, hears the other's `hello`, counts a bad datagram that came
/// through the tunnel, and never sees one that reached its VPN address from
/// outside the tunnel (the socket is bound to the WireGuard interface).
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn agents_hear_each_other_through_the_tunnel_only() {
    let lab = Lab::new();
    let hosts = [lab.public_host("defiant"), lab.public_host("enterprise")];
    let outsider = lab.public_host("borg");
    let lines: Vec<AddPeerLine> = hosts
        .iter()
        .zip(["10.15.0.1/24", "10.15.0.2/24"])
        .map(|(host, address)| host.install(address, &host.endpoint(PORT)))
        .collect();
    exchange(&hosts, &lines);
    let agents: Vec<RunningAgent> = hosts.iter().map(RunningAgent::start).collect();
    let heard = |host: &Host, peer: &str| {
        let json = status_json(host);
        json["agent"]["agents_heard"]
            .as_array()
            .is_some_and(|a| a.iter().any(|h| h["peer"] == peer))
    };
    assert!(
        wait_until(Duration::from_secs(20), || heard(&hosts[0], "enterprise")
            && heard(&hosts[1], "defiant")),
        "the agents did not hear each other:\n{:#}",
        status_json(&hosts[0])
    );
    let json = status_json(&hosts[1]);
    assert_eq!(
        json["agent"]["link"]["listening"], "10.15.0.2:51871",
        "{json:#}"
    );
    assert_eq!(json["agent"]["agents_heard"][0]["relay"], false, "{json:#}");

    // Through the tunnel, from a peer: dropped and counted as malformed.
    send_datagram(&hosts[0], "10.15.0.2", "not json");
    let dropped = |reason: &str| {
        status_json(&hosts[1])["agent"]["link"]["dropped"][reason]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || dropped("malformed") == 1),
        "{:#}",
        status_json(&hosts[1])
    );
    // From outside the tunnel, straight to the VPN address over eth0: the
    // socket never sees it (not even as an unknown sender).
    outsider
        .run(&[
            "ip",
            "route",
            "add",
            "10.15.0.2/32",
            "via",
            &hosts[1].public_ip().to_string(),
        ])
        .expect_ok("route the VPN address over the public segment");
    let accepted_before = status_json(&hosts[1])["agent"]["link"]["accepted"]
        .as_u64()
        .unwrap_or(0);
    for _ in 0..5 {
        send_datagram(&outsider, "10.15.0.2", r#"{"v":1,"t":"hello"}"#);
        send_datagram(&outsider, "10.15.0.2", "junk");
    }
    // Two passes for the counters to be saved.
    thread::sleep(Duration::from_secs(5));
    let json = status_json(&hosts[1]);
    assert_eq!(
        json["agent"]["link"]["dropped"]["unknown-sender"],
        Value::Null,
        "{json:#}"
    );
    assert_eq!(dropped("malformed"), 1, "{json:#}");
    // Only the hellos from defiant came in meanwhile (one a pass).
    let accepted = json["agent"]["link"]["accepted"].as_u64().unwrap_or(0);
    assert!(accepted - accepted_before <= 4, "{json:#}");

    for (host, agent) in hosts.iter().zip(agents) {
        let (code, log) = agent.stop();
        eprintln!("--- agent on {}:\n{log}", host.name());
        assert_eq!(code, Some(0));
        assert!(log.contains("its agent is heard"), "{log}");
    }
}

/// An address on the lab's public segment that no host uses.
const NOWHERE: &str = "203.0.113.250:51820";
/// The issue's goal: a direct path through introductions within 60 s.
const INTRODUCED_WITHIN: Duration = Duration::from_secs(60);
/// How long the pair behind NAT is watched, without agents, for a ping that
/// must not come.
const NOT_WITHOUT_AGENTS: Duration = Duration::from_secs(20);

/// The TTL of one echo reply from `ip`, if one comes within 2 s.
fn reply_ttl(from: &Host, ip: &str) -> Option<u32> {
    let out = from.run(&["ping", "-n", "-c", "1", "-w", "2", ip]);
    let text = out.all_output();
    let at = text.find("ttl=")? + 4;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A public host P and two hosts A and B behind two different cone NATs,
/// whose pasted lines carry an address where nobody is: A and B never meet
/// on their own. With agents on all three, each of A and B asks P where it
/// sees the other, tries that endpoint live, and both NATs open: they ping
/// each other directly (TTL 64, no relay) within 60 s, and the config
/// keeps what the user pasted.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn members_introduce_two_hosts_behind_nats() {
    let lab = Lab::new();
    let p = lab.public_host("pegasus");
    let a = lab.host_behind_nat("alpha", NatKind::Cone);
    let b = lab.host_behind_nat("bravo", NatKind::Cone);
    let hosts = [p, a, b];
    let lines = [
        hosts[0].install("10.15.0.1/24", &hosts[0].endpoint(PORT)),
        hosts[1].install("10.15.0.2/24", NOWHERE),
        hosts[2].install("10.15.0.3/24", NOWHERE),
    ];
    exchange(&hosts, &lines);
    let [_, a, b] = &hosts;
    for host in [a, b] {
        assert!(
            host.ping("10.15.0.1", Duration::from_secs(10)),
            "{} cannot reach pegasus",
            host.name()
        );
    }
    // The control: on their own, A and B do not meet.
    assert!(
        !pings_within(a, "10.15.0.3", NOT_WITHOUT_AGENTS),
        "alpha reached bravo without agents: the test proves nothing"
    );

    let agents: Vec<RunningAgent> = hosts.iter().map(RunningAgent::start).collect();
    let started = Instant::now();
    let met = pings_within(a, "10.15.0.3", INTRODUCED_WITHIN)
        && pings_within(b, "10.15.0.2", Duration::from_secs(5));
    eprintln!(
        "alpha and bravo met {:?} after the agents started",
        started.elapsed()
    );
    let ttl = reply_ttl(a, "10.15.0.3");
    let endpoints = a.run(&["wg", "show", "wg0", "endpoints"]).all_output();
    // The agents keep the endpoint at their next pass after the handshake.
    let learned = |host: &Host| {
        status_json(host)["agent"]["learned_endpoints"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    };
    wait_until(Duration::from_secs(10), || learned(a) && learned(b));
    let jsons: Vec<Value> = [a, b].into_iter().map(status_json).collect();
    let logs: Vec<(Option<i32>, String)> = agents.into_iter().map(RunningAgent::stop).collect();
    for (host, (code, log)) in hosts.iter().zip(&logs) {
        eprintln!("--- agent on {}:\n{log}", host.name());
        assert_eq!(
            code,
            &Some(0),
            "the agent on {} did not exit cleanly",
            host.name()
        );
    }
    assert!(
        met,
        "alpha and bravo did not meet within {INTRODUCED_WITHIN:?}:\n{}\n{}",
        a.run(&["wg", "show"]).all_output(),
        b.run(&["wg", "show"]).all_output()
    );
    // Directly: one hop (a relay would forward, TTL 63), and A's endpoint
    // for B is B's NAT router.
    assert_eq!(ttl, Some(64));
    let b_key = lines[2].public_key();
    let want = format!("{b_key}\t{}:{PORT}", b.public_ip());
    assert!(
        endpoints.lines().any(|l| l == want),
        "want {want:?} in:\n{endpoints}"
    );
    // Each side shows what it learned, from whom; the config is unchanged.
    let mut shown = 0;
    for (json, other) in jsons.iter().zip(["bravo", "alpha"]) {
        let Some(learned) = json["agent"]["learned_endpoints"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["peer"] == other))
        else {
            continue;
        };
        shown += 1;
        assert_eq!(learned["source"], "peer pegasus", "{json:#}");
        assert_eq!(learned["configured"], NOWHERE, "{json:#}");
    }
    assert!(
        shown >= 1,
        "no agent shows an introduced endpoint: {jsons:#?}"
    );
    assert!(
        logs.iter()
            .any(|(_, log)| log.contains("completed a handshake: kept")),
        "no agent kept an introduced endpoint"
    );
    for host in [a, b] {
        let conf = host.read_file("/etc/wireguard/wg0.conf");
        assert!(conf.contains(&format!("Endpoint = {NOWHERE}")), "{conf}");
    }
}

/// Bytes `host` has received from its only peer (`wg show wg0 transfer`).
fn received_from_peer(host: &Host) -> u64 {
    let out = host
        .run(&["wg", "show", "wg0", "transfer"])
        .expect_ok("wg show transfer");
    out.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no transfer line on {}:\n{out}", host.name()))
}

/// A peer that runs no agent (a phone made with `provision-peer` is one)
/// and has keepalive off is not kept busy: the agent greets it when it
/// starts, then at most every 5 minutes, not every pass.
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn a_peer_without_an_agent_is_not_greeted_every_pass() {
    let lab = Lab::new();
    let [node, phone] = quiet_pair(&lab, ["defiant", "phone"]);
    let agent = RunningAgent::start(&node);
    // The first pass greets every peer once. The phone answers that
    // `hello` (an ICMP "port unreachable": nothing listens there), and
    // WireGuard's passive keepalive answers that 10 s later: both are
    // over after 13 s.
    thread::sleep(Duration::from_secs(13));
    let before = received_from_peer(&phone);
    // Five more passes at --interval 2.
    thread::sleep(Duration::from_secs(10));
    let after = received_from_peer(&phone);
    let (code, log) = agent.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(before > 0, "the pair never exchanged a packet");
    assert_eq!(
        after, before,
        "the agent kept sending to a peer whose agent it never heard:\n{log}"
    );
}

/// The unit `agent enable` installs, as systemd itself reads it: the
/// shipped template with ExecStart at this build's binary (what `render`
/// writes), as the instance for wg0, checked by `systemd-analyze verify`.
/// (No systemd runs as PID 1 here, so enabling it is not exercised.)
#[test]
#[ignore = "lab: needs root, network namespaces and the lab packages"]
fn the_agent_unit_is_one_systemd_accepts() {
    let template = include_str!("../contrib/wgp2p-agent@.service");
    let shipped = "ExecStart=/usr/bin/wgp2p ";
    assert!(template.contains(shipped), "{template}");
    let unit = template.replace(shipped, &format!("ExecStart={} ", WGP2P.as_str()));
    let dir = tempfile::tempdir().expect("a temp dir");
    let instance = dir.path().join("wgp2p-agent@wg0.service");
    std::fs::write(&instance, &unit).expect("write the unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&instance)
        .output()
        .expect("run systemd-analyze (package systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // systemd-analyze exits 0 on unknown keys and bad values too, and
    // names the file when it does.
    assert!(!said.contains("wgp2p-agent@"), "{said}");
}
