//! `status [--json]`: the service state and every peer with its name,
//! handshake, transfer and health. Works with the interface down (config
//! only) and shows drift between the config and the live interface.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::config::node::PeerEntry;
use crate::context::Context;
use crate::device::{LiveDevice, LivePeer};
use crate::error::{Error, Result};
use crate::output::{self, Health, PeerStatus, StatusReport};
use crate::types::PublicKey;

/// WireGuard's REJECT_AFTER_TIME: a session older than this is dead.
pub const STALE_AFTER_SECS: u64 = 180;

/// How many relay candidates status names for a stale peer.
const MAX_RELAY_CANDIDATES: usize = 3;

pub fn run(ctx: &Context, check: bool) -> Result<()> {
    let node = crate::config::node::Node::load(ctx.paths.clone())?;
    let entries = node.peers()?;
    let live = ctx.device().live()?;
    let report = StatusReport {
        interface: ctx.paths.iface.to_string(),
        state: if live.is_some() { "up" } else { "down" },
        backend: live.as_ref().map(|l| l.backend),
        address: node.address.map(|a| a.to_string()),
        public_key: node.public_key().map(|k| k.to_string()),
        listen_port: live.as_ref().and_then(|l| l.listen_port),
        peers: with_relay_advice(merge(&entries, live.as_ref(), SystemTime::now())),
    };
    if node.conf.is_none() && live.is_none() {
        return Err(crate::config::node::not_installed(&ctx.paths));
    }
    if ctx.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::System(format!("cannot write JSON: {e}")))?;
        crate::outln!("{text}");
    } else {
        crate::out!("{}", output::status_table(&report, output::use_colour()));
    }
    let unhealthy = report
        .peers
        .iter()
        .filter(|p| p.health != Health::Ok)
        .count();
    if check && (unhealthy > 0 || live.is_none()) {
        return Err(Error::Unhealthy(format!(
            "status --check: {unhealthy} of {} peers not ok{}",
            report.peers.len(),
            if live.is_none() {
                ", interface down"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// One row per peer: config peers in file order, then live-only peers.
fn merge(entries: &[PeerEntry], live: Option<&LiveDevice>, now: SystemTime) -> Vec<PeerStatus> {
    let live_peers = live.map(|l| l.peers.as_slice()).unwrap_or(&[]);
    // Keyed lookups both ways: a linear search per peer would make status
    // quadratic in the mesh size.
    let by_key: HashMap<PublicKey, &LivePeer> =
        live_peers.iter().map(|p| (p.public_key, p)).collect();
    let configured: HashSet<PublicKey> = entries.iter().map(|e| e.public_key).collect();
    let mut rows: Vec<PeerStatus> = entries
        .iter()
        .map(|entry| {
            row(
                Some(entry),
                by_key.get(&entry.public_key).copied(),
                live.is_some(),
                now,
            )
        })
        .collect();
    for peer in live_peers
        .iter()
        .filter(|p| !configured.contains(&p.public_key))
    {
        rows.push(row(None, Some(peer), true, now));
    }
    rows.extend(relayed_rows(entries, &rows));
    rows
}

/// A relayed peer's row: its addresses, and the handshake, transfer and
/// health of its relay, since its traffic lives or dies with that tunnel.
fn relayed_rows(entries: &[PeerEntry], direct_rows: &[PeerStatus]) -> Vec<PeerStatus> {
    let mut rows = Vec::new();
    for (via, relay) in entries.iter().zip(direct_rows) {
        for relayed in &via.relayed {
            let via_name = via.display_name().to_string();
            rows.push(PeerStatus {
                name: Some(relayed.name.clone()),
                public_key: relayed.public_key.to_string(),
                endpoint: Some(relayed.endpoint.clone()),
                allowed_ips: relayed.nets.iter().map(ToString::to_string).collect(),
                latest_handshake_secs_ago: relay.latest_handshake_secs_ago,
                rx_bytes: relay.rx_bytes,
                tx_bytes: relay.tx_bytes,
                keepalive: relay.keepalive,
                in_config: true,
                live: relay.live,
                health: relay.health,
                note: (relay.health != Health::Ok)
                    .then(|| format!("its relay {via_name} is not ok")),
                via: Some(via_name),
                relay_candidates: Vec::new(),
            });
        }
    }
    rows
}

/// For every stale direct peer, the healthy direct peers that could relay
/// it, and the command to do so.
fn with_relay_advice(mut rows: Vec<PeerStatus>) -> Vec<PeerStatus> {
    // A few candidates are enough to act on; listing every healthy peer
    // under every stale one would grow as stale × healthy on a big mesh.
    let healthy: Vec<String> = rows
        .iter()
        .filter(|r| r.health == Health::Ok && r.via.is_none())
        .filter_map(|r| r.name.clone())
        .take(MAX_RELAY_CANDIDATES)
        .collect();
    for row in rows
        .iter_mut()
        .filter(|r| r.health == Health::Stale && r.via.is_none())
    {
        row.relay_candidates = healthy.clone();
        if let (Some(first), Some(name), Some(note)) =
            (healthy.first(), &row.name, row.note.as_mut())
        {
            note.push_str(&format!(
                "; relay candidates: {} (`wgp2p relay {name} via {first}` here and the same for this node on {name}, after `wgp2p relay-enable` on {first})",
                healthy.join(", ")
            ));
        }
    }
    rows
}

fn row(
    entry: Option<&PeerEntry>,
    live: Option<&LivePeer>,
    up: bool,
    now: SystemTime,
) -> PeerStatus {
    let handshake_age = live
        .and_then(|p| p.last_handshake)
        .map(|t| now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0));
    let (health, note) = health(entry.is_some(), live.is_some(), up, handshake_age);
    let allowed_ips = match (entry, live) {
        (Some(e), _) => e.allowed_ips.iter().map(|n| n.to_string()).collect(),
        (None, Some(p)) => p.allowed_ips.iter().map(|n| n.to_string()).collect(),
        (None, None) => Vec::new(),
    };
    let endpoint = live
        .and_then(|p| p.endpoint.map(|e| e.to_string()))
        .or_else(|| entry.and_then(|e| e.endpoint.clone()));
    PeerStatus {
        name: entry.and_then(|e| e.name.clone()),
        public_key: entry
            .map(|e| e.public_key)
            .or(live.map(|p| p.public_key))
            .map(|k| k.to_string())
            .unwrap_or_default(),
        endpoint,
        allowed_ips,
        latest_handshake_secs_ago: handshake_age,
        rx_bytes: live.map(|p| p.rx_bytes),
        tx_bytes: live.map(|p| p.tx_bytes),
        keepalive: entry
            .and_then(|e| e.keepalive)
            .or(live.and_then(|p| p.keepalive)),
        in_config: entry.is_some(),
        live: live.is_some(),
        health,
        note,
        via: None,
        relay_candidates: Vec::new(),
    }
}

/// The health mark and, when something is wrong, what to do about it.
fn health(in_config: bool, is_live: bool, up: bool, age: Option<u64>) -> (Health, Option<String>) {
    if !up {
        return (
            Health::Down,
            Some("interface is down: `wgp2p start`".into()),
        );
    }
    if !in_config {
        return (Health::Drift, Some("live but not in the config: `wgp2p remove-peer` it or add it with `wgp2p add-peer`".into()));
    }
    if !is_live {
        return (Health::Drift, Some("in the config but not live: run the add-peer line again, or `wgp2p stop` and `wgp2p start`".into()));
    }
    match age {
        None => (Health::Stale, Some(stale_advice("no handshake yet"))),
        Some(secs) if secs > STALE_AFTER_SECS => (
            Health::Stale,
            Some(stale_advice(&format!(
                "last handshake {} ago",
                output::human_duration(secs)
            ))),
        ),
        Some(_) => (Health::Ok, None),
    }
}

fn stale_advice(what: &str) -> String {
    format!(
        "stale: {what}; the peer may be down or unreachable; if both hosts are behind NAT, one is likely a symmetric NAT (needs a static source port rule for the listen port, or a relay)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const KEY: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";

    fn entry() -> PeerEntry {
        PeerEntry {
            section: 1,
            name: Some("enterprise".into()),
            public_key: KEY.parse().unwrap(),
            endpoint: Some("enterprise.lab:51820".into()),
            allowed_ips: vec!["10.15.0.2/32".parse().unwrap()],
            keepalive: Some(25),
            relayed: vec![],
        }
    }

    fn live_peer(handshake_ago: Option<u64>, now: SystemTime) -> LivePeer {
        LivePeer {
            public_key: KEY.parse().unwrap(),
            endpoint: Some("192.0.2.2:51820".parse().unwrap()),
            allowed_ips: vec!["10.15.0.2/32".parse().unwrap()],
            last_handshake: handshake_ago.map(|s| now - Duration::from_secs(s)),
            rx_bytes: 10,
            tx_bytes: 20,
            keepalive: Some(25),
        }
    }

    fn device(peers: Vec<LivePeer>) -> LiveDevice {
        LiveDevice {
            backend: "userspace",
            public_key: None,
            listen_port: Some(51820),
            peers,
        }
    }

    #[test]
    fn health_follows_the_handshake_age() {
        let now = SystemTime::now();
        let check = |ago, expected| {
            let rows = merge(&[entry()], Some(&device(vec![live_peer(ago, now)])), now);
            assert_eq!(rows[0].health, expected, "{ago:?}");
        };
        check(Some(16), Health::Ok);
        check(Some(180), Health::Ok);
        check(Some(181), Health::Stale);
        check(None, Health::Stale);
    }

    #[test]
    fn drift_both_ways_and_down() {
        let now = SystemTime::now();
        let rows = merge(&[entry()], Some(&device(vec![])), now);
        assert_eq!((rows[0].health, rows[0].live), (Health::Drift, false));
        let rows = merge(&[], Some(&device(vec![live_peer(Some(1), now)])), now);
        assert_eq!(
            (rows[0].health, rows[0].in_config, rows[0].name.clone()),
            (Health::Drift, false, None)
        );
        let rows = merge(&[entry()], None, now);
        assert_eq!(rows[0].health, Health::Down);
        assert_eq!(rows[0].endpoint.as_deref(), Some("enterprise.lab:51820"));
    }
}
