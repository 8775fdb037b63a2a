//! `doctor`: one line per problem found, each with its fix. The checks are
//! a pure function of gathered facts, so each is unit-tested.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use ipnet::IpNet;

use crate::config::document::Document;
use crate::config::node::{Node, PeerEntry, check_keys_unique, listen_port, peers};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::health::{self, Drift, DriftKind};
use crate::plan::overlaps;
use crate::service::Kind;
use crate::system::on_path;
use crate::wg::LiveDevice;

/// What doctor looks at, gathered once.
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent yes/no facts of the host, not a state machine"
)]
struct Facts {
    has_wg: bool,
    has_wg_quick: bool,
    has_kernel_module: bool,
    has_wireguard_go: bool,
    /// `Some(false)` when systemd runs the interface and the unit is not enabled.
    unit_enabled: Option<bool>,
    /// `Some(true)` when systemd runs the interface and its agent unit is enabled.
    agent_enabled: Option<bool>,
    /// Whether a `wgp2p agent` runs for the interface now.
    agent_running: bool,
    /// The config accepts introductions (`# AcceptIntroductions`, `# Trust`),
    /// which only a running agent receives.
    accepts_introductions: bool,
    iface: String,
    /// This node's name as other nodes know it.
    own_name: String,
    installed: bool,
    config_port: Option<u16>,
    entries: Vec<PeerEntry>,
    live: Option<LiveDevice>,
    /// Differences between the config and the live interface (`health`).
    drifts: Vec<Drift>,
    /// Routes into the interface that differ from what `wg-quick up`
    /// makes (`routing::drift`), each with its command.
    route_drifts: Vec<String>,
    now: SystemTime,
    /// AllowedIPs that provisioned devices route through this node, beyond its own address.
    routed_through_us: Vec<IpNet>,
    ip_forward: bool,
    /// Membership problems: unreadable `# Trust` lines, a book moved aside.
    membership: Vec<String>,
    /// Devices provisioned here (their stale advice speaks of the device).
    devices: Vec<crate::config::node::Device>,
}

fn unit_enabled(unit: &str) -> bool {
    Command::new("systemctl")
        .args(["is-enabled", "--quiet", unit])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Networks that provisioned confs send to this node beyond its own address.
fn provisioned_routes(node: &Node) -> Vec<IpNet> {
    let (Some(own_key), Some(address)) = (node.public_key(), node.address) else {
        return Vec::new();
    };
    let Ok(files) = std::fs::read_dir(node.paths.provisioned_dir()) else {
        return Vec::new();
    };
    let mut routes = Vec::new();
    for file in files.flatten() {
        let Ok(text) = std::fs::read_to_string(file.path()) else {
            continue;
        };
        let Ok(doc) = Document::parse(&text) else {
            continue;
        };
        let Ok(entries) = peers(&doc) else {
            continue;
        };
        for entry in entries.iter().filter(|e| e.public_key == own_key) {
            routes.extend(
                entry
                    .allowed_ips
                    .iter()
                    .filter(|n| **n != address.host_route()),
            );
        }
    }
    routes
}

/// The introduction policy's problems (a `# Trust` line that cannot be
/// read: nobody is trusted) and a membership book the agent moved aside.
fn membership_problems(ctx: &Context, node: &Node) -> Vec<String> {
    let mut out = node
        .conf
        .as_ref()
        .map(|doc| crate::plan::membership::Policy::of(doc).problems())
        .unwrap_or_default();
    let aside = ctx
        .paths
        .dir
        .join(crate::agent::membership::aside_name(&ctx.paths.iface));
    if std::fs::symlink_metadata(&aside).is_ok() {
        out.push(format!(
            "the agent found its membership book unreadable and moved it aside to {}; it started a new one (its peers are announced again): read it if you want, then delete it (`rm {}`)",
            aside.display(),
            aside.display()
        ));
    }
    out
}

/// The facts, and what in the config an edit would refuse although
/// wg-quick runs it (each with its fix).
fn gather(ctx: &Context) -> Result<(Facts, Vec<String>)> {
    let (node, not_utf8) = Node::load_to_show(ctx.paths.clone())?;
    let mut edits_refuse: Vec<String> = not_utf8.into_iter().collect();
    if let Some(Err(e)) = node.conf.as_ref().map(check_keys_unique) {
        edits_refuse.push(e.to_string());
    }
    let live = match ctx.service_kind {
        Kind::None => None,
        _ => ctx.device().live()?,
    };
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let entries = node.peers_as_wg()?;
    let now = SystemTime::now();
    let drifts = match (&node.conf, &live) {
        (Some(doc), Some(live)) => health::drift(doc, &entries, live, now),
        _ => Vec::new(),
    };
    let route_drifts = match (&node.conf, &live) {
        (Some(doc), Some(_)) => match ctx.device().routes()? {
            Some(routes) => crate::routing::drift(doc, &routes, &ctx.paths.iface).1,
            None => Vec::new(),
        },
        _ => Vec::new(),
    };
    let facts = Facts {
        has_wg: on_path("wg"),
        has_wg_quick: on_path("wg-quick"),
        has_kernel_module: crate::system::kernel_has_wireguard(),
        has_wireguard_go: on_path("wireguard-go"),
        unit_enabled: (ctx.service_kind == Kind::Systemd)
            .then(|| unit_enabled(&format!("wg-quick@{}", ctx.paths.iface))),
        agent_enabled: (ctx.service_kind == Kind::Systemd)
            .then(|| unit_enabled(&crate::agent::unit::instance(&ctx.paths.iface))),
        agent_running: crate::agent::state::is_running(&ctx.paths),
        accepts_introductions: node
            .conf
            .as_ref()
            .is_some_and(|doc| crate::plan::membership::Policy::of(doc).enabled()),
        iface: ctx.paths.iface.to_string(),
        own_name: crate::announce::host_name().to_string(),
        installed: node.conf.is_some(),
        config_port: node.conf.as_ref().and_then(listen_port),
        entries,
        routed_through_us: provisioned_routes(&node),
        ip_forward: forward.trim() == "1",
        membership: membership_problems(ctx, &node),
        devices: crate::config::node::provisioned_devices(&ctx.paths),
        live,
        drifts,
        route_drifts,
        now,
    };
    Ok((facts, edits_refuse))
}

fn tool_findings(f: &Facts, out: &mut Vec<String>) {
    if !f.has_wg || !f.has_wg_quick {
        out.push("wg or wg-quick is missing: run `wgp2p dependencies`".into());
    }
    if !f.has_kernel_module && !f.has_wireguard_go {
        out.push("this kernel has no WireGuard module and wireguard-go is missing: run `wgp2p dependencies`".into());
    }
}

fn interface_findings(f: &Facts, out: &mut Vec<String>) {
    if !f.installed {
        out.push(format!(
            "{} is not set up: run `wgp2p install ADDRESS/CIDR`",
            f.iface
        ));
        return;
    }
    if f.unit_enabled == Some(false) {
        out.push(format!("service wg-quick@{} is not enabled (no start at boot): run `systemctl enable wg-quick@{}`", f.iface, f.iface));
    }
    if f.agent_enabled == Some(true) && !f.agent_running {
        out.push(format!(
            "the agent is enabled but not running: see `journalctl -u wgp2p-agent@{0}`, then `systemctl restart wgp2p-agent@{0}`",
            f.iface
        ));
    }
    if f.accepts_introductions && !f.agent_running && f.agent_enabled != Some(true) {
        out.push(match f.agent_enabled {
            Some(_) => "this node accepts introductions but no agent runs to receive them: run `wgp2p agent enable`".into(),
            None => "this node accepts introductions but no agent runs to receive them: run `wgp2p agent` and keep it running (it stays in the foreground; without systemd, start it from your init system)".into(),
        });
    }
    let Some(live) = &f.live else {
        out.push(format!("{} is down: run `wgp2p start`", f.iface));
        return;
    };
    // A port the config gives is compared with the rest of the drift.
    if f.config_port.is_none() && matches!(live.listen_port, None | Some(0)) {
        out.push(format!(
            "{} listens on no port: run `wgp2p stop` then `wgp2p start`",
            f.iface
        ));
    }
}

fn peer_findings(f: &Facts, out: &mut Vec<String>) {
    for (i, a) in f.entries.iter().enumerate() {
        for b in &f.entries[i + 1..] {
            if let Some((na, nb)) = a.allowed_ips.iter().find_map(|x| {
                b.allowed_ips
                    .iter()
                    .find(|y| overlaps(x, y))
                    .map(|y| (x, y))
            }) {
                out.push(format!(
                    "AllowedIPs {na} of {} overlaps {nb} of {}: WireGuard routes it to one of them only; keep one: `wgp2p remove-peer {}`",
                    a.display_name(),
                    b.display_name(),
                    b.name.as_ref().map_or_else(|| b.public_key.to_string(), ToString::to_string)
                ));
            }
        }
    }
    let Some(live) = &f.live else { return };
    for drift in &f.drifts {
        out.push(match (drift.kind, drift.key) {
            (DriftKind::LiveOnly, Some(key)) => {
                format!("{}: run `wgp2p remove-peer {key}`", drift.text)
            }
            _ => format!("{}: run {}", drift.text, health::REPAIR),
        });
    }
    for line in &f.route_drifts {
        out.push(format!("{line}, or run {}", health::REPAIR));
    }
    let drifted: HashSet<_> = f.drifts.iter().filter_map(|d| d.key).collect();
    let candidates = health::relay_candidates(&f.entries, live, f.now);
    for entry in f
        .entries
        .iter()
        .filter(|e| !drifted.contains(&e.public_key))
    {
        let age = live
            .peers
            .iter()
            .find(|p| p.public_key == entry.public_key)
            .and_then(|p| health::handshake_age(p, f.now));
        if !health::is_fresh(age) {
            match f.devices.iter().find(|d| d.key == entry.public_key) {
                Some(device) => out.push(format!(
                    "peer {} is stale ({}): it is a device provisioned here: has it imported {}/{}, and is it online?",
                    entry.display_name(),
                    health::stale_reason(age),
                    crate::store::PROVISIONED,
                    device.file
                )),
                None => out.push(stale_finding(entry, age, &candidates, &f.own_name)),
            }
        }
    }
}

/// A stale peer: what to check, and the exact commands to relay it
/// through a healthy peer when there is one.
fn stale_finding(
    entry: &PeerEntry,
    age: Option<u64>,
    candidates: &[String],
    own_name: &str,
) -> String {
    let name = entry.display_name();
    let mut line = format!(
        "peer {name} is stale ({}): check it runs; if both sides are behind NAT, one may be symmetric (`wgp2p nat-check` on both)",
        health::stale_reason(age)
    );
    if let Some(relay) = candidates.iter().find(|c| c.as_str() != name)
        && entry.name.is_some()
    {
        line.push_str(", or relay it: ");
        line.push_str(&health::relay_advice(name, relay, own_name));
    }
    line
}

fn forwarding_findings(f: &Facts, out: &mut Vec<String>) {
    if !f.routed_through_us.is_empty() && !f.ip_forward {
        let nets: Vec<String> = f
            .routed_through_us
            .iter()
            .map(ToString::to_string)
            .collect();
        out.push(format!(
            "provisioned devices route {} through this node but IPv4 forwarding is off: run `sysctl -w net.ipv4.ip_forward=1` (and persist it in /etc/sysctl.d/)",
            nets.join(", ")
        ));
    }
}

fn findings(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    tool_findings(f, &mut out);
    out.extend(f.membership.iter().cloned());
    interface_findings(f, &mut out);
    peer_findings(f, &mut out);
    forwarding_findings(f, &mut out);
    out
}

pub fn run(ctx: &Context) -> Result<()> {
    let (facts, edits_refuse) = gather(ctx)?;
    let mut found: Vec<String> = ctx
        .interrupted_change()
        .map(|text| format!("{text}: run {}", health::REPAIR))
        .into_iter()
        .collect();
    found.extend(ctx.local_state_findings());
    found.extend(edits_refuse);
    found.extend(findings(&facts));
    if found.is_empty() {
        crate::outln!("no problem found");
        return Ok(());
    }
    for finding in &found {
        crate::outln!("{finding}");
    }
    Err(Error::Unhealthy(format!(
        "doctor found {}",
        crate::words::count(found.len(), "problem", "problems")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wg::LivePeer;
    use std::time::Duration;

    use crate::plan::fixtures::{KEY_A, KEY_B};

    fn live_peer(key: &str, net: &str, handshake_ago: u64) -> LivePeer {
        LivePeer {
            public_key: key.parse().unwrap(),
            endpoint: None,
            allowed_ips: vec![net.parse().unwrap()],
            last_handshake: Some(SystemTime::now() - Duration::from_secs(handshake_ago)),
            rx_bytes: 0,
            tx_bytes: 0,
            keepalive: Some(25),
            preshared_key: None,
        }
    }

    /// The peers `(name, key, net)` as config sections.
    fn conf(peers_: &[(&str, &str, &str)]) -> Document {
        use std::fmt::Write as _;
        let mut text = String::from("[Interface]\nListenPort = 51820\n");
        for (name, key, net) in peers_ {
            let _ = write!(
                text,
                "[Peer]\n# Name = {name}\nPublicKey = {key}\nAllowedIPs = {net}\nPersistentKeepalive = 25\n"
            );
        }
        Document::parse(&text).unwrap()
    }

    /// Facts for this config and live device, drift decided by `health`.
    fn facts(doc: &Document, live: LiveDevice) -> Facts {
        let entries = peers(doc).unwrap();
        let now = SystemTime::now();
        Facts {
            has_wg: true,
            has_wg_quick: true,
            has_kernel_module: false,
            has_wireguard_go: true,
            unit_enabled: None,
            agent_enabled: None,
            agent_running: false,
            accepts_introductions: false,
            iface: "wg0".into(),
            own_name: "defiant".into(),
            installed: true,
            config_port: listen_port(doc),
            membership: Vec::new(),
            devices: Vec::new(),
            drifts: health::drift(doc, &entries, &live, now),
            route_drifts: Vec::new(),
            entries,
            live: Some(live),
            routed_through_us: vec![],
            ip_forward: false,
            now,
        }
    }

    fn healthy() -> Facts {
        facts(
            &conf(&[("a", KEY_A, "10.15.0.2/32")]),
            LiveDevice::with_peers(vec![live_peer(KEY_A, "10.15.0.2/32", 5)]),
        )
    }

    #[test]
    fn healthy_node_has_no_findings() {
        assert!(
            findings(&healthy()).is_empty(),
            "{:?}",
            findings(&healthy())
        );
    }

    #[test]
    fn enabled_agent_that_does_not_run_is_a_finding() {
        let mut f = healthy();
        f.agent_enabled = Some(true);
        let found = findings(&f);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].starts_with("the agent is enabled but not running: ")
                && found[0].contains("systemctl restart wgp2p-agent@wg0"),
            "{found:#?}"
        );
        f.agent_running = true;
        assert!(findings(&f).is_empty());
        // Not enabled (or no systemd): running it is the user's choice.
        f.agent_running = false;
        f.agent_enabled = Some(false);
        assert!(findings(&f).is_empty());
    }

    #[test]
    fn accepting_introductions_without_an_agent_is_a_finding() {
        let mut f = healthy();
        f.accepts_introductions = true;
        let found = findings(&f);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("run `wgp2p agent`"), "{found:#?}");
        f.agent_enabled = Some(false);
        assert!(findings(&f)[0].ends_with("run `wgp2p agent enable`"));
        // Enabled but not running: the finding about the unit says it.
        f.agent_enabled = Some(true);
        assert_eq!(findings(&f).len(), 1);
        assert!(findings(&f)[0].starts_with("the agent is enabled but not running"));
        f.agent_running = true;
        assert!(findings(&f).is_empty());
    }

    #[test]
    fn each_problem_is_one_line_with_a_fix() {
        let doc = conf(&[("a", KEY_A, "10.15.0.2/32"), ("b", KEY_B, "10.15.0.0/24")]);
        let mut stale = live_peer(KEY_A, "10.15.0.2/32", 5);
        stale.last_handshake = None;
        let stranger = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";
        let mut live = LiveDevice::with_peers(vec![stale, live_peer(stranger, "10.15.0.9/32", 1)]);
        live.listen_port = Some(0);
        let mut f = facts(&doc, live);
        f.has_wg = false;
        f.has_wireguard_go = false;
        f.unit_enabled = Some(false);
        f.routed_through_us = vec!["10.15.0.0/24".parse().unwrap()];
        let found = findings(&f);
        let expect = [
            "dependencies",
            "wireguard-go",
            "systemctl enable",
            "listens on no port but the config says port 51820: run `wgp2p repair`",
            "overlaps",
            "`wgp2p remove-peer b`",
            "peer a is stale (no handshake yet)",
            "peer b is in the config but not live: run `wgp2p repair`",
            &format!(
                "live peer {stranger} is not in the config: run `wgp2p remove-peer {stranger}`"
            ),
            "forwarding is off",
        ];
        for word in expect {
            assert!(
                found.iter().any(|l| l.contains(word)),
                "missing {word:?} in {found:#?}"
            );
        }
        assert!(found.iter().all(|l| !l.contains('\n') && l.contains(':')));
    }

    #[test]
    fn a_stale_peer_gets_the_exact_relay_commands() {
        let doc = conf(&[("a", KEY_A, "10.15.0.2/32"), ("b", KEY_B, "10.15.0.3/32")]);
        let f = facts(
            &doc,
            LiveDevice::with_peers(vec![
                live_peer(KEY_A, "10.15.0.2/32", 1),
                live_peer(KEY_B, "10.15.0.3/32", 500),
            ]),
        );
        let found = findings(&f);
        let stale = found
            .iter()
            .find(|l| l.starts_with("peer b is stale"))
            .expect("stale finding");
        assert!(
            stale.contains("`wgp2p relay b via a` here and `wgp2p relay defiant via a` on b"),
            "{stale}"
        );
        assert!(stale.contains("more than 180 s"), "{stale}");
    }

    /// A stale device provisioned here runs no wgp2p: its advice speaks of
    /// the device and its conf, never of running wgp2p or relaying on it;
    /// the policy's and the book's problems are findings.
    #[test]
    fn a_stale_provisioned_device_is_asked_about_its_conf() {
        let doc = conf(&[
            ("a", KEY_A, "10.15.0.2/32"),
            ("phone", KEY_B, "10.15.0.3/32"),
        ]);
        let mut f = facts(
            &doc,
            LiveDevice::with_peers(vec![
                live_peer(KEY_A, "10.15.0.2/32", 1),
                live_peer(KEY_B, "10.15.0.3/32", 500),
            ]),
        );
        f.devices = vec![crate::config::node::Device {
            key: KEY_B.parse().unwrap(),
            file: "phone.conf".into(),
            mesh: false,
        }];
        f.membership = vec!["the line `# Trust = x` of [Interface] cannot be read".into()];
        let found = findings(&f);
        let stale = found
            .iter()
            .find(|l| l.starts_with("peer phone is stale"))
            .expect("stale finding");
        assert!(
            stale.ends_with(
                "it is a device provisioned here: has it imported provisioned-peers/phone.conf, and is it online?"
            ),
            "{stale}"
        );
        assert!(!stale.contains("relay"), "{stale}");
        assert!(
            found.iter().any(|l| l.contains("`# Trust = x`")),
            "{found:#?}"
        );
    }
}
