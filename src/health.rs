//! A node's health: the one home of the rules that `status`, `doctor` and
//! `repair` share. A peer is stale after [`STALE_AFTER_SECS`]; drift is
//! every difference between the config and the live interface, each with
//! the device change that removes it; relay candidates are the healthy
//! direct peers a stale one could be reached through.
//!
//! Drift, decided here once:
//! - Compared after normalising what the device reports (peers in any
//!   order, allowed IPs as a set, keepalive 0 and the all-zero preshared
//!   key read as "none", see `device.rs`).
//! - A peer's endpoint is drift only when the peer is not fresh (no
//!   handshake within [`STALE_AFTER_SECS`]) or has no endpoint live.
//!   WireGuard learns a peer's address from every authenticated packet
//!   (roaming), so a fresh peer whose live endpoint is not the configured
//!   one has legitimately moved: resetting it would break a working tunnel.
//! - A DNS endpoint is compared by the address it resolves to now; when it
//!   does not resolve, the endpoint is not called drift (nothing could set
//!   it) and a missing peer is added without one.
//! - A relayed peer must not have a direct tunnel live: its addresses live
//!   on its relay's AllowedIPs. A live entry of it without AllowedIPs is
//!   not drift: it routes nothing, and is how `agent --auto-relay` probes
//!   whether the direct path works again (see `agent::relay`).
//! - The private key and listen port are compared when the config's
//!   `[Interface]` gives them.
//!
//! Everything here is pure but for resolving DNS endpoints, so it is unit
//! tested without a device.

use std::collections::HashMap;
use std::time::SystemTime;

use ipnet::IpNet;

use crate::config::document::{Document, keys};
use crate::config::node::{PeerEntry, listen_port};
use crate::types::{Endpoint, PrivateKey, PublicKey, WrittenEndpoint};
use crate::wg::{Delta, LiveDevice, LivePeer, PresharedKey};
use crate::words::human_duration;

/// WireGuard's `REJECT_AFTER_TIME`: a session older than this is dead, so a
/// peer without a handshake within it is stale.
pub const STALE_AFTER_SECS: u64 = 180;

/// How many relay candidates are named for a stale peer: a few are enough
/// to act on; all of them would grow as stale × healthy on a big mesh.
pub const MAX_RELAY_CANDIDATES: usize = 3;

/// The command that removes every drift finding.
pub const REPAIR: &str = "`wgp2p repair`";

/// Seconds since the peer's last handshake, `None` when there was none.
pub fn handshake_age(peer: &LivePeer, now: SystemTime) -> Option<u64> {
    peer.last_handshake
        .map(|t| now.duration_since(t).map_or(0, |d| d.as_secs()))
}

/// Whether a peer with this handshake age has a live session.
pub fn is_fresh(age: Option<u64>) -> bool {
    age.is_some_and(|secs| secs <= STALE_AFTER_SECS)
}

/// Why a peer is stale, in words: "no handshake yet" or "last handshake
/// 3m 5s ago (more than 180 s)".
pub fn stale_reason(age: Option<u64>) -> String {
    match age {
        None => "no handshake yet".into(),
        Some(secs) => format!(
            "last handshake {} ago (more than {STALE_AFTER_SECS} s)",
            human_duration(secs)
        ),
    }
}

/// The healthy direct peers that could relay a stale one: named, direct,
/// with a fresh handshake, in config order, at most
/// [`MAX_RELAY_CANDIDATES`].
pub fn relay_candidates(entries: &[PeerEntry], live: &LiveDevice, now: SystemTime) -> Vec<String> {
    let by_key: HashMap<PublicKey, &LivePeer> =
        live.peers.iter().map(|p| (p.public_key, p)).collect();
    entries
        .iter()
        .filter(|e| {
            by_key
                .get(&e.public_key)
                .is_some_and(|p| is_fresh(handshake_age(p, now)))
        })
        .filter_map(|e| e.name.as_ref().map(ToString::to_string))
        .take(MAX_RELAY_CANDIDATES)
        .collect()
}

/// The commands that relay `peer` through `relay`: forwarding on the relay,
/// and each end's route moved onto it (`own_name` is this node's name as
/// the peer knows it).
pub fn relay_advice(peer: &str, relay: &str, own_name: &str) -> String {
    format!(
        "`wgp2p relay-enable` on {relay}, then `wgp2p relay {peer} via {relay}` here and `wgp2p relay {own_name} via {relay}` on {peer}"
    )
}

/// One difference between the config and the live interface.
#[derive(Debug, PartialEq, Eq)]
pub struct Drift {
    /// The peer concerned; `None` for the interface's own settings.
    pub key: Option<PublicKey>,
    pub kind: DriftKind,
    /// What differs, in words, without advice.
    pub text: String,
    /// The device change that removes it.
    pub deltas: Vec<Delta>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftKind {
    /// In the config, not on the live interface.
    MissingLive,
    /// On the live interface, not in the config.
    LiveOnly,
    /// Relayed in the config, with a direct tunnel live.
    RelayedRunsDirect,
    /// Live with other settings than the config's.
    PeerDiffers,
    PrivateKey,
    ListenPort,
}

/// A configured peer as the live interface should hold it.
struct Wanted<'a> {
    entry: &'a PeerEntry,
    /// The configured endpoint, resolved; `None` when there is none or a
    /// DNS name does not resolve now.
    endpoint: Option<Endpoint>,
    preshared_key: Option<PresharedKey>,
}

impl Wanted<'_> {
    fn upsert(&self, with_endpoint: bool) -> Delta {
        Delta::UpsertPeer {
            public_key: self.entry.public_key,
            endpoint: self.endpoint.clone().filter(|_| with_endpoint),
            allowed_ips: self.entry.allowed_ips.clone(),
            keepalive: self.entry.keepalive.filter(|k| *k > 0),
        }
    }

    fn set_psk(&self) -> Delta {
        Delta::SetPresharedKey {
            public_key: self.entry.public_key,
            key: self.preshared_key.clone(),
        }
    }
}

/// Each peer's preshared key as wg(8) holds it: the last `PresharedKey`
/// written for its key (a key in several `[Peer]` sections is one peer;
/// a later section without the line leaves the key set before).
fn preshared_keys(doc: &Document) -> HashMap<PublicKey, PresharedKey> {
    let mut found = HashMap::new();
    for section in doc.peer_sections() {
        if let (Some(key), Some(psk)) = (
            section.public_key(),
            section
                .get_last(keys::PRESHARED_KEY)
                .and_then(PresharedKey::parse),
        ) {
            found.insert(key, psk);
        }
    }
    found
}

fn wanted<'a>(psks: &HashMap<PublicKey, PresharedKey>, entry: &'a PeerEntry) -> Wanted<'a> {
    let endpoint = entry
        .endpoint
        .as_ref()
        .and_then(WrittenEndpoint::parsed)
        .and_then(|e| {
            let addr = e.resolve().ok()?;
            Some(Endpoint::from(addr))
        });
    let preshared_key = psks.get(&entry.public_key).cloned();
    Wanted {
        entry,
        endpoint,
        preshared_key,
    }
}

fn sorted(nets: &[IpNet]) -> Vec<IpNet> {
    let mut nets = nets.to_vec();
    nets.sort();
    nets.dedup();
    nets
}

fn nets_text(nets: &[IpNet]) -> String {
    if nets.is_empty() {
        return "none".into();
    }
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn keepalive_text(k: Option<u16>) -> String {
    k.filter(|k| *k > 0)
        .map_or_else(|| "off".into(), |k| format!("{k} s"))
}

/// How a live peer differs from its config entry, and the changes that
/// make it equal.
fn peer_differences(
    want: &Wanted<'_>,
    live: &LivePeer,
    now: SystemTime,
) -> Option<(String, Vec<Delta>)> {
    let entry = want.entry;
    let mut what = Vec::new();
    let mut set_endpoint = false;
    if sorted(&live.allowed_ips) != sorted(&entry.allowed_ips) {
        what.push(format!(
            "allowed IPs {} live, {} in the config",
            nets_text(&live.allowed_ips),
            nets_text(&entry.allowed_ips)
        ));
    }
    if live.keepalive.filter(|k| *k > 0) != entry.keepalive.filter(|k| *k > 0) {
        what.push(format!(
            "keepalive {} live, {} in the config",
            keepalive_text(live.keepalive),
            keepalive_text(entry.keepalive)
        ));
    }
    if let Some(wanted) = &want.endpoint {
        let wanted_addr = wanted.resolve().ok();
        let roamed = is_fresh(handshake_age(live, now));
        match live.endpoint {
            None => {
                what.push(format!("no endpoint live, {wanted} in the config"));
                set_endpoint = true;
            }
            Some(addr) if Some(addr) != wanted_addr && !roamed => {
                what.push(format!(
                    "endpoint {addr} live, {} in the config, and no handshake within {STALE_AFTER_SECS} s",
                    entry
                        .endpoint
                        .as_ref()
                        .map_or("", WrittenEndpoint::as_written)
                ));
                set_endpoint = true;
            }
            Some(_) => {}
        }
    }
    let mut deltas = Vec::new();
    if !what.is_empty() {
        deltas.push(want.upsert(set_endpoint));
    }
    if live.preshared_key != want.preshared_key {
        what.push(match (&live.preshared_key, &want.preshared_key) {
            (None, Some(_)) => "no preshared key live, one in the config".into(),
            (Some(_), None) => "a preshared key live, none in the config".into(),
            _ => "another preshared key live than in the config".into(),
        });
        deltas.push(want.set_psk());
    }
    (!what.is_empty()).then(|| (what.join("; "), deltas))
}

/// Every difference between the config (`doc`, its peers `entries`) and
/// the live interface: peers missing live, live-only peers, peers with
/// other settings, relayed peers with a direct tunnel, private key and
/// listen port. Each comes with the deltas that remove it; applied
/// together in one device call they make the device equal the config.
pub fn drift(
    doc: &Document,
    entries: &[PeerEntry],
    live: &LiveDevice,
    now: SystemTime,
) -> Vec<Drift> {
    let mut found = Vec::new();
    if let Some(key) = doc
        .interface()
        .and_then(|s| s.get_last(keys::PRIVATE_KEY))
        .and_then(|k| k.parse::<PrivateKey>().ok())
        && live.public_key != Some(key.public_key())
    {
        found.push(Drift {
            key: None,
            kind: DriftKind::PrivateKey,
            text: format!(
                "the live private key is not the config's (live public key {}, config {})",
                live.public_key
                    .map_or_else(|| "none".into(), |k| k.to_string()),
                key.public_key()
            ),
            deltas: vec![Delta::SetPrivateKey(key)],
        });
    }
    if let Some(port) = listen_port(doc)
        && live.listen_port != Some(port)
    {
        found.push(Drift {
            key: None,
            kind: DriftKind::ListenPort,
            text: format!(
                "the interface listens on {} but the config says port {port}",
                live.listen_port
                    .filter(|p| *p > 0)
                    .map_or_else(|| "no port".into(), |p| format!("port {p}"))
            ),
            deltas: vec![Delta::SetListenPort(port)],
        });
    }
    let by_key: HashMap<PublicKey, &LivePeer> =
        live.peers.iter().map(|p| (p.public_key, p)).collect();
    let psks = preshared_keys(doc);
    for entry in entries {
        let want = wanted(&psks, entry);
        match by_key.get(&entry.public_key) {
            None => {
                let mut deltas = vec![want.upsert(true)];
                if want.preshared_key.is_some() {
                    deltas.push(want.set_psk());
                }
                found.push(Drift {
                    key: Some(entry.public_key),
                    kind: DriftKind::MissingLive,
                    text: format!(
                        "peer {} is in the config but not live",
                        entry.display_name()
                    ),
                    deltas,
                });
            }
            Some(live_peer) => {
                if let Some((what, deltas)) = peer_differences(&want, live_peer, now) {
                    found.push(Drift {
                        key: Some(entry.public_key),
                        kind: DriftKind::PeerDiffers,
                        text: format!("peer {} differs live: {what}", entry.display_name()),
                        deltas,
                    });
                }
            }
        }
    }
    let relayed: HashMap<PublicKey, (&str, &str)> = entries
        .iter()
        .flat_map(|via| {
            via.relayed
                .iter()
                .map(move |r| (r.public_key, (r.display_name(), via.display_name())))
        })
        .collect();
    for peer in &live.peers {
        if entries.iter().any(|e| e.public_key == peer.public_key) {
            continue;
        }
        let (kind, text) = match relayed.get(&peer.public_key) {
            // The auto-relay's direct probe: it carries no traffic.
            Some(_) if peer.allowed_ips.is_empty() => continue,
            Some((name, via)) => (
                DriftKind::RelayedRunsDirect,
                format!(
                    "peer {name} is relayed via {via} in the config but has a direct tunnel live"
                ),
            ),
            None => (
                DriftKind::LiveOnly,
                format!("live peer {} is not in the config", peer.public_key),
            ),
        };
        found.push(Drift {
            key: Some(peer.public_key),
            kind,
            text,
            deltas: vec![Delta::RemovePeer(peer.public_key)],
        });
    }
    found
}

/// Every delta of `drifts`, in order, for one device call.
pub fn repair_deltas(drifts: &[Drift]) -> Vec<Delta> {
    drifts
        .iter()
        .flat_map(|d| d.deltas.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::peers;
    use crate::plan::fixtures::{KEY_A, KEY_B, KEY_C, OWN_PRIV};
    use std::time::Duration;

    const PSK: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

    fn conf() -> Document {
        Document::parse(&format!(
            "[Interface]\nPrivateKey = {OWN_PRIV}\nListenPort = 51820\n\
             [Peer]\n# Name = a\nPublicKey = {KEY_A}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32, 10.15.0.4/32\nPersistentKeepalive = 25\n# Relay = c {KEY_C} 192.0.2.4:51820 10.15.0.4/32\n\
             [Peer]\n# Name = b\nPublicKey = {KEY_B}\nPresharedKey = {PSK}\nEndpoint = 192.0.2.3:51820\nAllowedIPs = 10.15.0.3/32\n"
        ))
        .unwrap()
    }

    fn live_peer(key: &str, endpoint: &str, nets: &[&str], keepalive: Option<u16>) -> LivePeer {
        LivePeer {
            public_key: key.parse().unwrap(),
            endpoint: Some(endpoint.parse().unwrap()),
            allowed_ips: nets.iter().map(|n| n.parse().unwrap()).collect(),
            last_handshake: Some(SystemTime::now()),
            rx_bytes: 0,
            tx_bytes: 0,
            keepalive,
            preshared_key: None,
        }
    }

    /// The live device exactly as `conf()` says, peers in another order.
    fn equal_live() -> LiveDevice {
        let own: PrivateKey = OWN_PRIV.parse().unwrap();
        let mut b = live_peer(KEY_B, "192.0.2.3:51820", &["10.15.0.3/32"], None);
        b.preshared_key = PresharedKey::parse(PSK);
        LiveDevice {
            public_key: Some(own.public_key()),
            ..LiveDevice::with_peers(vec![
                b,
                live_peer(
                    KEY_A,
                    "192.0.2.2:51820",
                    &["10.15.0.4/32", "10.15.0.2/32"],
                    Some(25),
                ),
            ])
        }
    }

    fn kinds(live: &LiveDevice) -> Vec<(DriftKind, String)> {
        let doc = conf();
        let entries = peers(&doc).unwrap();
        drift(&doc, &entries, live, SystemTime::now())
            .into_iter()
            .map(|d| (d.kind, d.text))
            .collect()
    }

    #[test]
    fn equal_after_normalising_is_no_drift() {
        assert_eq!(kinds(&equal_live()), vec![]);
    }

    #[test]
    fn every_difference_is_found_with_its_fix() {
        let mut live = equal_live();
        live.listen_port = Some(1234);
        live.public_key = Some(KEY_C.parse().unwrap());
        live.peers.retain(|p| p.public_key.to_string() == KEY_A);
        live.peers[0].keepalive = None;
        live.peers
            .push(live_peer(KEY_C, "192.0.2.4:51820", &["10.15.0.4/32"], None));
        let doc = conf();
        let entries = peers(&doc).unwrap();
        let found = drift(&doc, &entries, &live, SystemTime::now());
        let kinds: Vec<DriftKind> = found.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [
                DriftKind::PrivateKey,
                DriftKind::ListenPort,
                DriftKind::PeerDiffers,
                DriftKind::MissingLive,
                DriftKind::RelayedRunsDirect
            ]
        );
        assert!(
            found[2].text.contains("keepalive off live, 25 s"),
            "{found:?}"
        );
        // A relayed peer live without AllowedIPs is a direct probe, not drift.
        let mut probing = live.clone();
        probing.peers.last_mut().unwrap().allowed_ips.clear();
        let probing_kinds: Vec<DriftKind> = drift(&doc, &entries, &probing, SystemTime::now())
            .iter()
            .map(|d| d.kind)
            .collect();
        assert!(!probing_kinds.contains(&DriftKind::RelayedRunsDirect));
        // The missing peer comes back with its preshared key.
        assert_eq!(found[3].deltas.len(), 2, "{found:?}");
        assert_eq!(found[4].deltas, [Delta::RemovePeer(KEY_C.parse().unwrap())]);
        assert_eq!(repair_deltas(&found).len(), 6);
    }

    #[test]
    fn a_roamed_endpoint_is_not_drift_unless_stale() {
        let mut live = equal_live();
        live.peers[1].endpoint = Some("198.51.100.7:40000".parse().unwrap());
        assert_eq!(kinds(&live), vec![]);
        live.peers[1].last_handshake = Some(SystemTime::now() - Duration::from_secs(600));
        let found = kinds(&live);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].1.contains("endpoint 198.51.100.7:40000 live"),
            "{found:?}"
        );
        live.peers[1].endpoint = None;
        assert!(kinds(&live)[0].1.contains("no endpoint live"));
    }

    #[test]
    fn a_dns_endpoint_is_compared_by_its_address() {
        let text = conf()
            .render()
            .replace("Endpoint = 192.0.2.3:51820", "Endpoint = localhost:51820");
        let doc = Document::parse(&text).unwrap();
        let entries = peers(&doc).unwrap();
        // Whatever the resolver gives first for localhost (127.0.0.1 or ::1).
        let resolved = "localhost:51820"
            .parse::<Endpoint>()
            .unwrap()
            .resolve()
            .unwrap();
        let mut live = equal_live();
        let stale = Some(SystemTime::now() - Duration::from_secs(600));
        live.peers[0].last_handshake = stale;
        live.peers[0].endpoint = Some(resolved);
        assert_eq!(drift(&doc, &entries, &live, SystemTime::now()), vec![]);
        live.peers[0].endpoint = Some("192.0.2.3:51820".parse().unwrap());
        let found = drift(&doc, &entries, &live, SystemTime::now());
        assert!(
            found[0].text.contains("localhost:51820 in the config"),
            "{found:?}"
        );
        match &found[0].deltas[0] {
            Delta::UpsertPeer { endpoint, .. } => assert_eq!(
                endpoint.as_ref().map(|e| e.resolve().unwrap()),
                Some(resolved)
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn preshared_key_presence_is_compared() {
        let mut live = equal_live();
        live.peers[0].preshared_key = None;
        let found = kinds(&live);
        assert!(found[0].1.contains("no preshared key live"), "{found:?}");
        assert!(!format!("{found:?}").contains(PSK));
    }

    /// A key in two `[Peer]` sections is one peer to wg; its preshared key
    /// is the one the later section writes (the first section's was read:
    /// drift where there is none, and repair would have cleared the key).
    #[test]
    fn a_key_in_two_sections_has_the_later_preshared_key() {
        let doc = Document::parse(&format!(
            "[Interface]\nPrivateKey = {OWN_PRIV}\nListenPort = 51820\n\
             [Peer]\n# Name = a\nPublicKey = {KEY_A}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32, 10.15.0.4/32\nPersistentKeepalive = 25\n\
             [Peer]\n# Name = b\nPublicKey = {KEY_B}\nEndpoint = 192.0.2.3:51820\nAllowedIPs = 10.15.0.3/32\n\
             [Peer]\nPublicKey = {KEY_B}\nPresharedKey = {PSK}\nAllowedIPs = 10.15.0.3/32\n"
        ))
        .unwrap();
        let entries = crate::config::node::peers_as_wg(&doc).unwrap();
        let found: Vec<String> = drift(&doc, &entries, &equal_live(), SystemTime::now())
            .into_iter()
            .map(|d| d.text)
            .collect();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn stale_is_one_rule() {
        assert!(is_fresh(Some(STALE_AFTER_SECS)));
        assert!(!is_fresh(Some(STALE_AFTER_SECS + 1)));
        assert!(!is_fresh(None));
        assert_eq!(
            stale_reason(Some(185)),
            "last handshake 3m 5s ago (more than 180 s)"
        );
    }

    #[test]
    fn relay_candidates_are_fresh_named_and_few() {
        let doc = conf();
        let entries = peers(&doc).unwrap();
        let mut live = equal_live();
        assert_eq!(
            relay_candidates(&entries, &live, SystemTime::now()),
            ["a", "b"]
        );
        live.peers[0].last_handshake = None;
        assert_eq!(relay_candidates(&entries, &live, SystemTime::now()), ["a"]);
    }
}
