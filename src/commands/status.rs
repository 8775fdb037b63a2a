//! `status [--json]`: the service state and every peer with its name,
//! handshake, transfer and health. Works with the interface down (config
//! only) and shows drift between the config and the live interface.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use crate::config::node::PeerEntry;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::health::{self, Drift, DriftKind};
use crate::output;
use crate::status::{Health, PeerStatus, StatusReport};
use crate::types::PublicKey;
use crate::wg::{LiveDevice, LivePeer};

pub fn run(ctx: &Context, check: bool) -> Result<()> {
    let (node, _) = crate::config::node::Node::load_to_show(ctx.paths.clone())?;
    let entries = node.peers_as_wg()?;
    let live = ctx.device().live()?;
    let now = SystemTime::now();
    let drifts = match (&node.conf, &live) {
        (Some(doc), Some(live)) => health::drift(doc, &entries, live, now),
        _ => Vec::new(),
    };
    let own_name = crate::announce::host_name().to_string();
    let view = View {
        entries: &entries,
        live: live.as_ref(),
        drifts: &drifts,
        own_name: &own_name,
        now,
    };
    let mut report = StatusReport {
        interface: ctx.paths.iface.to_string(),
        state: if live.is_some() { "up" } else { "down" },
        backend: live.as_ref().map(|l| l.backend),
        address: node.address.map(|a| a.to_string()),
        public_key: node.public_key().map(|k| k.to_string()),
        listen_port: live.as_ref().and_then(|l| l.listen_port),
        notes: ctx
            .interrupted_change()
            .into_iter()
            .chain(
                drifts
                    .iter()
                    .filter(|d| d.key.is_none())
                    .map(|d| d.text.clone()),
            )
            .map(|text| format!("{text}: {}", health::REPAIR))
            .collect(),
        peers: view.rows(),
        agent: agent_view(ctx, &entries)?,
    };
    // A stale device provisioned here runs no wgp2p: the advice speaks of
    // the device and its conf.
    let devices = crate::config::node::provisioned_devices(&ctx.paths);
    for row in &mut report.peers {
        if row.health == Health::Stale
            && let Some(device) = devices.iter().find(|d| d.key.to_string() == row.public_key)
        {
            row.note = Some(format!(
                "stale: it is a device provisioned here: has it imported {}/{}, and is it online?",
                crate::store::PROVISIONED,
                device.file
            ));
        }
    }
    if let Some(auto) = &report.agent.auto_relay {
        for row in &mut report.peers {
            row.auto_relay = auto
                .peers
                .iter()
                .find(|p| p.public_key == row.public_key)
                .map(|p| p.state);
        }
    }
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
    if check && (unhealthy > 0 || live.is_none() || !report.notes.is_empty()) {
        return Err(Error::Unhealthy(format!(
            "status --check: {unhealthy} of {} peers not ok{}{}",
            report.peers.len(),
            if live.is_none() {
                ", interface down"
            } else {
                ""
            },
            if report.notes.is_empty() {
                ""
            } else {
                ", a DRIFT note (interface settings or an interrupted change)"
            }
        )));
    }
    Ok(())
}

/// The agent's state, with peer names from the config.
fn agent_view(
    ctx: &Context,
    entries: &[PeerEntry],
) -> crate::error::Result<crate::status::AgentView> {
    let mut view = crate::agent::state::observe(&ctx.paths)?;
    let entry = |key: &str| entries.iter().find(|e| e.public_key.to_string() == key);
    for learned in &mut view.learned_endpoints {
        let own = entry(&learned.public_key);
        learned.peer = own.and_then(|e| e.name.as_ref().map(ToString::to_string));
        if let Some(from) = &learned.from {
            let name = entry(from).and_then(|e| e.name.as_ref().map(ToString::to_string));
            learned.source = format!("peer {}", name.as_deref().unwrap_or(from));
            learned.configured = own
                .and_then(|e| e.endpoint.as_ref())
                .map(|w| w.as_written().to_string())
                .unwrap_or_default();
        }
    }
    for heard in &mut view.agents_heard {
        heard.peer = entries
            .iter()
            .find(|e| e.public_key.to_string() == heard.public_key)
            .and_then(|e| e.name.as_ref().map(ToString::to_string));
    }
    if let Some(auto) = &mut view.auto_relay {
        auto.complete(entries, &crate::config::pins::read(&ctx.paths));
    }
    Ok(view)
}

/// What the rows are made of.
struct View<'a> {
    entries: &'a [PeerEntry],
    live: Option<&'a LiveDevice>,
    drifts: &'a [Drift],
    /// This node's name as its peers know it, for the relay advice.
    own_name: &'a str,
    now: SystemTime,
}

impl View<'_> {
    /// One row per peer: config peers in file order, then live-only
    /// peers, then relayed peers.
    fn rows(&self) -> Vec<PeerStatus> {
        let live_peers = self.live.map_or(&[][..], |l| l.peers.as_slice());
        // Keyed lookups both ways: a linear search per peer would make
        // status quadratic in the mesh size.
        let by_key: HashMap<PublicKey, &LivePeer> =
            live_peers.iter().map(|p| (p.public_key, p)).collect();
        let drift_of: HashMap<PublicKey, &Drift> = self
            .drifts
            .iter()
            .filter_map(|d| d.key.map(|k| (k, d)))
            .collect();
        let relayed: HashSet<PublicKey> = self
            .entries
            .iter()
            .flat_map(|e| e.relayed.iter().map(|r| r.public_key))
            .collect();
        let candidates = self
            .live
            .map(|l| health::relay_candidates(self.entries, l, self.now))
            .unwrap_or_default();
        let mut rows: Vec<PeerStatus> = self
            .entries
            .iter()
            .map(|entry| {
                let key = entry.public_key;
                let mut row = self.row(
                    Some(entry),
                    by_key.get(&key).copied(),
                    drift_of.get(&key).copied(),
                );
                if row.health == Health::Stale {
                    self.add_relay_advice(&mut row, &candidates);
                }
                row
            })
            .collect();
        let configured: HashSet<PublicKey> = self.entries.iter().map(|e| e.public_key).collect();
        for peer in live_peers
            .iter()
            .filter(|p| !configured.contains(&p.public_key) && !relayed.contains(&p.public_key))
        {
            rows.push(self.row(None, Some(peer), drift_of.get(&peer.public_key).copied()));
        }
        rows.extend(relayed_rows(self.entries, &rows, &drift_of));
        rows
    }

    fn row(
        &self,
        entry: Option<&PeerEntry>,
        live: Option<&LivePeer>,
        drift: Option<&Drift>,
    ) -> PeerStatus {
        let handshake_age = live.and_then(|p| health::handshake_age(p, self.now));
        let (health, note) = peer_health(self.live.is_some(), drift, handshake_age);
        let allowed_ips = match (entry, live) {
            (Some(e), _) => e.allowed_ips.iter().map(ToString::to_string).collect(),
            (None, Some(p)) => p.allowed_ips.iter().map(ToString::to_string).collect(),
            (None, None) => Vec::new(),
        };
        let endpoint = live
            .and_then(|p| p.endpoint.map(|e| e.to_string()))
            .or_else(|| entry.and_then(|e| e.endpoint.as_ref().map(ToString::to_string)));
        PeerStatus {
            name: entry.and_then(|e| e.name.as_ref().map(ToString::to_string)),
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
            preshared_key: entry.is_some_and(|e| e.preshared_key),
            in_config: entry.is_some(),
            live: live.is_some(),
            health,
            note,
            via: None,
            relay_candidates: Vec::new(),
            auto_relay: None,
        }
    }

    /// A stale direct peer: the healthy direct peers that could relay it,
    /// and the exact commands to do so.
    fn add_relay_advice(&self, row: &mut PeerStatus, candidates: &[String]) {
        let Some(name) = row.name.clone() else { return };
        let candidates: Vec<String> = candidates.iter().filter(|c| **c != name).cloned().collect();
        if let (Some(first), Some(note)) = (candidates.first(), row.note.as_mut()) {
            note.push_str("; relay candidates: ");
            note.push_str(&candidates.join(", "));
            note.push_str(": ");
            note.push_str(&health::relay_advice(&name, first, self.own_name));
        }
        row.relay_candidates = candidates;
    }
}

/// A relayed peer's row: its addresses, and the handshake, transfer and
/// health of its relay, since its traffic lives or dies with that tunnel.
fn relayed_rows(
    entries: &[PeerEntry],
    direct_rows: &[PeerStatus],
    drift_of: &HashMap<PublicKey, &Drift>,
) -> Vec<PeerStatus> {
    let mut rows = Vec::new();
    for (via, relay) in entries.iter().zip(direct_rows) {
        for relayed in &via.relayed {
            let via_name = via.display_name().to_string();
            let (health, note) = match drift_of.get(&relayed.public_key) {
                Some(d) => (Health::Drift, Some(drift_advice(d))),
                None => (
                    relay.health,
                    (relay.health != Health::Ok).then(|| format!("its relay {via_name} is not ok")),
                ),
            };
            rows.push(PeerStatus {
                name: relayed.name.as_ref().map(ToString::to_string),
                public_key: relayed.public_key.to_string(),
                endpoint: relayed.endpoint.as_ref().map(ToString::to_string),
                allowed_ips: relayed.nets.iter().map(ToString::to_string).collect(),
                latest_handshake_secs_ago: relay.latest_handshake_secs_ago,
                rx_bytes: relay.rx_bytes,
                tx_bytes: relay.tx_bytes,
                keepalive: relay.keepalive,
                preshared_key: false,
                in_config: true,
                live: relay.live,
                health,
                note,
                via: Some(via_name),
                relay_candidates: Vec::new(),
                auto_relay: None,
            });
        }
    }
    rows
}

/// A drift finding and the command that removes it.
fn drift_advice(drift: &Drift) -> String {
    match (drift.kind, drift.key) {
        (DriftKind::LiveOnly, Some(key)) => {
            format!("{}: `wgp2p remove-peer {key}`", drift.text)
        }
        _ => format!("{}: {}", drift.text, health::REPAIR),
    }
}

/// The health mark and, when something is wrong, what to do about it.
fn peer_health(up: bool, drift: Option<&Drift>, age: Option<u64>) -> (Health, Option<String>) {
    if !up {
        return (
            Health::Down,
            Some("interface is down: `wgp2p start`".into()),
        );
    }
    if let Some(drift) = drift {
        return (Health::Drift, Some(drift_advice(drift)));
    }
    if health::is_fresh(age) {
        return (Health::Ok, None);
    }
    (
        Health::Stale,
        Some(format!(
            "stale: {}; the peer may be down or unreachable; if both hosts are behind NAT, one is likely a symmetric NAT (`wgp2p nat-check` on both; a static source port rule for the listen port, or a relay)",
            health::stale_reason(age)
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::document::Document;
    use crate::config::node::peers;
    use std::time::Duration;

    const KEY: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";

    fn conf() -> Document {
        Document::parse(&format!(
            "[Interface]\n[Peer]\n# Name = enterprise\nPublicKey = {KEY}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32\nPersistentKeepalive = 25\n"
        ))
        .unwrap()
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
            preshared_key: None,
        }
    }

    /// status's rows for `doc` and `live`, drift decided by `health`.
    fn rows(doc: &Document, live: Option<&LiveDevice>, now: SystemTime) -> Vec<PeerStatus> {
        let entries = peers(doc).unwrap();
        let drifts = live
            .map(|l| health::drift(doc, &entries, l, now))
            .unwrap_or_default();
        View {
            entries: &entries,
            live,
            drifts: &drifts,
            own_name: "defiant",
            now,
        }
        .rows()
    }

    #[test]
    fn health_follows_the_handshake_age() {
        let now = SystemTime::now();
        let check = |ago, expected| {
            let rows = rows(
                &conf(),
                Some(&LiveDevice::with_peers(vec![live_peer(ago, now)])),
                now,
            );
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
        let rows_missing = rows(&conf(), Some(&LiveDevice::with_peers(vec![])), now);
        assert_eq!(
            (rows_missing[0].health, rows_missing[0].live),
            (Health::Drift, false)
        );
        assert!(
            rows_missing[0]
                .note
                .as_deref()
                .is_some_and(|n| n.ends_with("`wgp2p repair`")),
            "{:?}",
            rows_missing[0].note
        );
        let empty = Document::parse("[Interface]\n").unwrap();
        let live_only = rows(
            &empty,
            Some(&LiveDevice::with_peers(vec![live_peer(Some(1), now)])),
            now,
        );
        assert_eq!(
            (
                live_only[0].health,
                live_only[0].in_config,
                live_only[0].name.clone()
            ),
            (Health::Drift, false, None)
        );
        assert!(
            live_only[0]
                .note
                .as_deref()
                .is_some_and(|n| n.ends_with(&format!("`wgp2p remove-peer {KEY}`"))),
            "{:?}",
            live_only[0].note
        );
        let down = rows(&conf(), None, now);
        assert_eq!(down[0].health, Health::Down);
        assert_eq!(down[0].endpoint.as_deref(), Some("192.0.2.2:51820"));
    }

    #[test]
    fn a_peer_with_other_settings_live_is_drift() {
        let now = SystemTime::now();
        let mut peer = live_peer(Some(1), now);
        peer.allowed_ips = vec!["10.15.0.9/32".parse().unwrap()];
        let rows = rows(&conf(), Some(&LiveDevice::with_peers(vec![peer])), now);
        assert_eq!(rows[0].health, Health::Drift);
        assert!(
            rows[0]
                .note
                .as_deref()
                .unwrap_or_default()
                .contains("allowed IPs 10.15.0.9/32 live"),
            "{:?}",
            rows[0].note
        );
    }
}
