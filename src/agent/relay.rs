//! `agent --auto-relay`: the policy that moves a stale peer onto a relay
//! and back, and the human pins it obeys.
//!
//! The rule, per pass and peer:
//! - A direct peer is stale when it has had no handshake within
//!   [`STALE_AFTER_SECS`] (the rule `status` uses). Its stale time starts
//!   when it turned stale (its last handshake plus 180 s) or, for a peer
//!   that never had a handshake, when the agent first saw it. While it is
//!   stale the agent sends it one packet through the tunnel each pass
//!   ([`Decision::Poke`]), so a tunnel that is only idle (keepalive off)
//!   makes a handshake and is never taken for a dead one.
//! - Stale for [`Settings::after`] or longer, with a relay candidate, it is
//!   routed through the candidate ([`Decision::Relay`]), also while the
//!   introductions (`hints`) still try endpoints for it: they had the
//!   first [`Settings::after`], and they come one at a time (a minute each
//!   at the default interval), so waiting for all of them could hold the
//!   relay back for many minutes. The direct probe later finds a direct
//!   path through the configured endpoints, not one that only an
//!   introduction would find (the relayed pair works meanwhile). A candidate is a
//!   direct peer with a fresh handshake whose agent said `relay: true` in
//!   its last `hello` (it ran `relay-enable`). Of several, the one with the
//!   lowest public key: both ends of the stale pair see the same
//!   candidates (a handshake is fresh on both of its ends), so both pick
//!   the same relay. They must: the relay forwards a packet from C to D
//!   through its own tunnel to D, and D accepts it only when C's addresses
//!   are on the relay's AllowedIPs at D, that is when D relays C through
//!   the same node. One end alone gains nothing and loses nothing (the
//!   direct path was dead already).
//! - While a peer is relayed by the agent, a *direct probe* runs: the peer
//!   stays on the live interface with its endpoint and no AllowedIPs, so it
//!   can complete a handshake and carries no traffic (its addresses are on
//!   the relay's AllowedIPs). The probe is armed with a keepalive, which
//!   makes WireGuard try handshakes for 90 s; it is re-armed every
//!   [`Settings::after`]. When it has a fresh handshake, the direct path
//!   works again (both ends had to try: each runs its own probe) and the
//!   peer goes back to direct ([`Decision::Direct`]).
//! - A peer the agent relayed whose relay is no longer a candidate (stale,
//!   or its agent stopped saying `relay: true`) moves to another candidate,
//!   if there is one.
//! - A peer a human placed with `wgp2p relay NAME via R|direct` is pinned
//!   (listed in `relay-pins` (`config::pins`)): the agent never moves it, and forgets what
//!   it had done with it. A relayed peer the agent did not relay itself (by
//!   hand, or by an edit) is never moved back by the agent either.
//!
//! Everything here is pure: what was observed goes in, decisions come out,
//! so every case is unit tested without devices, time or sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::action::{Action, Commit, Live, Outcome};
use super::snapshot::Snapshot;
use crate::config::document::Document;
use crate::error::{Error, Result};
use crate::health::STALE_AFTER_SECS;
use crate::plan::Own;
use crate::status::{RelayPeerView, RelayView};
use crate::types::{PeerSelector, PublicKey};
use crate::wg::Delta;
use crate::wg::LiveDevice;

/// `--relay-after SECS`: 1 to 3600.
pub fn parse_after(s: &str) -> Result<Duration> {
    match s.parse::<u64>() {
        Ok(secs @ 1..=3600) => Ok(Duration::from_secs(secs)),
        _ => Err(Error::Invalid(format!(
            "invalid relay delay {}: expected a number of seconds from 1 to 3600",
            crate::types::quoted(s)
        ))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How long a peer is stale before it is relayed; also how often the
    /// direct probe of a relayed peer is re-armed.
    pub after: Duration,
}

/// How the config reaches a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    Via(PublicKey),
}

/// A configured peer as this pass saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub key: PublicKey,
    pub route: Route,
    /// Seconds since the latest handshake of its live entry: the tunnel
    /// for a direct peer, the direct probe for a relayed one; `None` when
    /// there was none or it is not live.
    pub handshake_age: Option<u64>,
    /// Whether it has a live entry: for a direct peer its tunnel, for a
    /// relayed one the direct probe (a live entry without AllowedIPs).
    pub live: bool,
    /// Whether other peers are relayed through it (such a peer is never
    /// relayed itself: the plan refuses it).
    pub relays_others: bool,
}

/// What one pass saw.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Unix seconds.
    pub now: u64,
    pub peers: Vec<Peer>,
    /// Peers whose agent said `relay: true` in its latest `hello`, heard
    /// recently.
    pub relays: BTreeSet<PublicKey>,
    /// Peers a human placed (`relay-pins` (`config::pins`)).
    pub pinned: BTreeSet<PublicKey>,
}

/// A peer the agent routed through a relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoRelay {
    pub via: PublicKey,
    /// Unix seconds: when it was relayed.
    pub since: u64,
    /// Unix seconds: when the direct probe was last armed (0: never).
    pub probed_at: u64,
}

/// What the policy carries from pass to pass (kept in the state file, so a
/// restarted agent still knows which relays are its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Direct peers seen stale, and since when (unix seconds).
    pub stale_since: BTreeMap<PublicKey, u64>,
    /// The peers the agent relayed.
    pub relayed: BTreeMap<PublicKey, AutoRelay>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send the stale direct peer a packet through the tunnel, so WireGuard
    /// tries a handshake now.
    Poke(PublicKey),
    /// Route `peer` through `via` (from direct, or from the relay `from`).
    Relay {
        peer: PublicKey,
        via: PublicKey,
        from: Option<PublicKey>,
    },
    /// The direct probe of a relayed peer had a handshake: make it direct.
    Direct { peer: PublicKey, via: PublicKey },
    /// (Re-)arm the direct probe of a peer the agent relayed.
    Probe(PublicKey),
    /// Remove a probe left live for a peer that is not the agent's (a
    /// human placed it since, or removed it).
    DropProbe(PublicKey),
    /// A peer the agent had relayed (or was counting as stale) was pinned
    /// by a human since: from now on it is left alone (said once).
    Released(PublicKey),
}

/// Whether a handshake this old is recent enough for a live session.
fn fresh(age: Option<u64>) -> bool {
    crate::health::is_fresh(age)
}

/// The relay for `peer`: a direct, fresh peer whose agent says it relays;
/// the lowest key of them, so both ends of a pair choose alike.
pub fn candidate(
    seen: &Observations,
    peer: &PublicKey,
    not: Option<&PublicKey>,
) -> Option<PublicKey> {
    seen.peers
        .iter()
        .filter(|p| {
            p.key != *peer
                && Some(&p.key) != not
                && p.route == Route::Direct
                && p.live
                && fresh(p.handshake_age)
                && seen.relays.contains(&p.key)
        })
        .map(|p| p.key)
        .min()
}

/// Decide for every peer; `memory` is updated to what will be true once
/// the decisions are carried out (a decision that then fails is taken
/// back by the caller with [`Memory::failed`]).
pub fn decide(seen: &Observations, memory: &mut Memory, settings: Settings) -> Vec<Decision> {
    let after = settings.after.as_secs();
    let mut decisions = Vec::new();
    // Forget peers that left the config.
    memory
        .stale_since
        .retain(|k, _| seen.peers.iter().any(|p| p.key == *k));
    // A peer the agent relayed that left the config (`remove-peer`): its
    // probe goes too.
    let removed: Vec<PublicKey> = memory
        .relayed
        .keys()
        .filter(|k| !seen.peers.iter().any(|p| p.key == **k))
        .copied()
        .collect();
    for key in removed {
        memory.relayed.remove(&key);
        decisions.push(Decision::DropProbe(key));
    }
    for peer in &seen.peers {
        let key = peer.key;
        if seen.pinned.contains(&key) {
            let was_relayed = memory.relayed.remove(&key).is_some();
            if was_relayed {
                decisions.push(Decision::Released(key));
            }
            memory.stale_since.remove(&key);
            if matches!(peer.route, Route::Via(_)) && peer.live {
                decisions.push(Decision::DropProbe(key));
            }
            continue;
        }
        match peer.route {
            Route::Direct => direct(seen, memory, peer, after, &mut decisions),
            Route::Via(via) => relayed(seen, memory, peer, via, after, &mut decisions),
        }
    }
    decisions
}

/// [`decide`] for a direct peer.
fn direct(
    seen: &Observations,
    memory: &mut Memory,
    peer: &Peer,
    after: u64,
    decisions: &mut Vec<Decision>,
) {
    let key = peer.key;
    let now = seen.now;
    // Relayed by the agent, direct now: someone else decided.
    memory.relayed.remove(&key);
    if peer.live && fresh(peer.handshake_age) {
        memory.stale_since.remove(&key);
        return;
    }
    let turned_stale = peer.handshake_age.filter(|_| peer.live).map_or(now, |age| {
        now.saturating_sub(age.saturating_sub(STALE_AFTER_SECS))
    });
    let since = *memory.stale_since.entry(key).or_insert(turned_stale);
    if now.saturating_sub(since) < after {
        if peer.live {
            decisions.push(Decision::Poke(key));
        }
        return;
    }
    match candidate(seen, &key, None).filter(|_| !peer.relays_others) {
        Some(via) => {
            memory.stale_since.remove(&key);
            memory.relayed.insert(
                key,
                AutoRelay {
                    via,
                    since: now,
                    probed_at: 0,
                },
            );
            decisions.push(Decision::Relay {
                peer: key,
                via,
                from: None,
            });
        }
        None if peer.live => decisions.push(Decision::Poke(key)),
        None => {}
    }
}

/// [`decide`] for a peer the config relays through `via`.
fn relayed(
    seen: &Observations,
    memory: &mut Memory,
    peer: &Peer,
    via: PublicKey,
    after: u64,
    decisions: &mut Vec<Decision>,
) {
    let key = peer.key;
    let now = seen.now;
    memory.stale_since.remove(&key);
    let ours = memory.relayed.get(&key).copied().filter(|a| a.via == via);
    let Some(mut auto) = ours else {
        // Relayed by someone else: never the agent's to move.
        memory.relayed.remove(&key);
        if peer.live {
            decisions.push(Decision::DropProbe(key));
        }
        return;
    };
    if peer.live && fresh(peer.handshake_age) {
        memory.relayed.remove(&key);
        decisions.push(Decision::Direct { peer: key, via });
        return;
    }
    if !is_candidate(seen, &via)
        && let Some(other) = candidate(seen, &key, Some(&via))
    {
        memory.relayed.insert(
            key,
            AutoRelay {
                via: other,
                since: now,
                probed_at: 0,
            },
        );
        decisions.push(Decision::Relay {
            peer: key,
            via: other,
            from: Some(via),
        });
        return;
    }
    if !peer.live || now.saturating_sub(auto.probed_at) >= after {
        auto.probed_at = now;
        memory.relayed.insert(key, auto);
        decisions.push(Decision::Probe(key));
    }
}

/// Whether `key` is still a relay candidate at all (for any peer).
fn is_candidate(seen: &Observations, key: &PublicKey) -> bool {
    seen.peers.iter().any(|p| {
        p.key == *key
            && p.route == Route::Direct
            && p.live
            && fresh(p.handshake_age)
            && seen.relays.contains(key)
    })
}

impl Memory {
    /// Take back what [`decide`] recorded for a decision that could not be
    /// carried out (the config changed meanwhile, or the plan refused):
    /// the peer is then seen afresh at the next pass.
    pub fn failed(&mut self, decision: &Decision, now: u64) {
        match *decision {
            Decision::Relay { peer, from, .. } => {
                self.relayed.remove(&peer);
                if from.is_none() {
                    self.stale_since.insert(peer, now);
                }
            }
            Decision::Direct { peer, via } => {
                self.relayed.insert(
                    peer,
                    AutoRelay {
                        via,
                        since: now,
                        probed_at: now,
                    },
                );
            }
            Decision::Poke(_)
            | Decision::Probe(_)
            | Decision::DropProbe(_)
            | Decision::Released(_) => {}
        }
    }
}

/// How the state file keeps [`Memory`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Whether the agent runs with `--auto-relay`.
    pub enabled: bool,
    pub after_secs: u64,
    #[serde(default)]
    pub stale: Vec<SavedStale>,
    #[serde(default)]
    pub relayed: Vec<SavedRelay>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStale {
    pub peer: String,
    pub since: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRelay {
    pub peer: String,
    pub via: String,
    pub since: u64,
    pub probed_at: u64,
}

impl RelayView {
    pub fn of(saved: &Saved, now: u64) -> RelayView {
        let mut peers: Vec<RelayPeerView> = saved
            .relayed
            .iter()
            .map(|r| RelayPeerView {
                peer: None,
                public_key: r.peer.clone(),
                state: "relayed",
                via: Some(r.via.clone()),
                via_name: None,
                secs: Some(now.saturating_sub(r.since)),
            })
            .chain(saved.stale.iter().map(|s| RelayPeerView {
                peer: None,
                public_key: s.peer.clone(),
                state: "stale",
                via: None,
                via_name: None,
                secs: Some(now.saturating_sub(s.since)),
            }))
            .collect();
        peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        RelayView {
            after_secs: saved.after_secs,
            peers,
        }
    }

    /// Add the pinned peers (`relay-pins`) that are configured, and the
    /// names from the config.
    pub fn complete(
        &mut self,
        entries: &[crate::config::node::PeerEntry],
        pinned: &BTreeSet<PublicKey>,
    ) {
        let configured = |k: &PublicKey| {
            entries
                .iter()
                .any(|e| e.public_key == *k || e.relayed.iter().any(|r| r.public_key == *k))
        };
        for key in pinned.iter().filter(|k| configured(k)) {
            let text = key.to_string();
            self.peers.retain(|p| p.public_key != text);
            self.peers.push(RelayPeerView {
                peer: None,
                public_key: text,
                state: "pinned",
                via: None,
                via_name: None,
                secs: None,
            });
        }
        self.peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        let named = |text: &str| {
            text.parse::<PublicKey>()
                .ok()
                .map(|k| super::snapshot::name_of(entries, &k))
                .filter(|n| *n != text)
        };
        for p in &mut self.peers {
            p.peer = named(&p.public_key);
            p.via_name = p.via.as_deref().and_then(named);
        }
    }
}

impl Memory {
    pub fn save(&self, settings: Option<Settings>) -> Saved {
        Saved {
            enabled: settings.is_some(),
            after_secs: settings.map_or(0, |s| s.after.as_secs()),
            stale: self
                .stale_since
                .iter()
                .map(|(k, since)| SavedStale {
                    peer: k.to_string(),
                    since: *since,
                })
                .collect(),
            relayed: self
                .relayed
                .iter()
                .map(|(k, a)| SavedRelay {
                    peer: k.to_string(),
                    via: a.via.to_string(),
                    since: a.since,
                    probed_at: a.probed_at,
                })
                .collect(),
        }
    }

    /// Rebuild from the state file; entries that do not parse are dropped.
    /// The probe is re-armed at once (`probed_at` 0): a restart may have
    /// been a reboot that dropped it.
    pub fn load(saved: &Saved) -> Memory {
        let mut memory = Memory::default();
        for s in &saved.stale {
            if let Ok(key) = s.peer.parse() {
                memory.stale_since.insert(key, s.since);
            }
        }
        for r in &saved.relayed {
            if let (Ok(key), Ok(via)) = (r.peer.parse(), r.via.parse()) {
                memory.relayed.insert(
                    key,
                    AutoRelay {
                        via,
                        since: r.since,
                        probed_at: 0,
                    },
                );
            }
        }
        memory
    }
}

// ---------------------------------------------------------------------
// Carrying the decisions out: the impure part. Every config change goes
// through the plan of `wgp2p relay` and `commit`, under the config lock,
// after re-reading the config: a peer that changed since the pass looked
// at it is left as it is.

/// What this pass sees of every configured peer, direct or relayed.
pub fn observe(entries: &[crate::config::node::PeerEntry], snap: &Snapshot) -> Vec<Peer> {
    use crate::health::handshake_age;
    let mut peers = Vec::new();
    for entry in entries {
        let live_peer = snap.live_peer(&entry.public_key);
        peers.push(Peer {
            key: entry.public_key,
            route: Route::Direct,
            handshake_age: live_peer.and_then(|p| handshake_age(p, snap.now)),
            live: live_peer.is_some(),
            relays_others: !entry.relayed.is_empty(),
        });
        for relayed in &entry.relayed {
            // Only a live entry without AllowedIPs is a probe; one with
            // AllowedIPs is drift, for `repair`.
            let probe = snap
                .live_peer(&relayed.public_key)
                .filter(|p| p.allowed_ips.is_empty());
            peers.push(Peer {
                key: relayed.public_key,
                route: Route::Via(entry.public_key),
                handshake_age: probe.and_then(|p| handshake_age(p, snap.now)),
                live: probe.is_some(),
                relays_others: false,
            });
        }
    }
    peers
}

/// One pass of the auto-relay, as actions: `relays` are the peers whose
/// agent said `relay: true` lately. The live device must be up (the
/// caller skips the pass otherwise).
pub fn decide_pass(
    snap: &Snapshot,
    memory: &mut Memory,
    relays: BTreeSet<PublicKey>,
    settings: Settings,
) -> Vec<Action> {
    let seen = Observations {
        now: snap.unix,
        peers: observe(&snap.entries, snap),
        relays,
        pinned: snap.pins.clone(),
    };
    let mut actions = Vec::new();
    let mut pokes = Vec::new();
    for decision in decide(&seen, memory, settings) {
        match decision {
            Decision::Poke(key) => pokes.extend(vpn_address(&snap.entries, &key)),
            Decision::Relay { peer, via, from } => {
                actions.push(Action::Commit(Commit::Relay { peer, via, from }));
            }
            Decision::Direct { peer, via } => {
                actions.push(Action::Commit(Commit::Direct { peer, via }));
            }
            Decision::Probe(peer) => actions.push(Action::Live(Live::ArmProbe(peer))),
            Decision::DropProbe(peer) => actions.push(Action::Live(Live::DropProbe(peer))),
            Decision::Released(peer) => actions.push(Action::Log(format!(
                "peer {}: placed by hand with `wgp2p relay`: the auto-relay leaves it alone from now on",
                snap.name(&peer)
            ))),
        }
    }
    if !pokes.is_empty() {
        actions.push(Action::Poke(pokes));
    }
    actions
}

/// What the auto-relay learns from what became of its action: the log
/// line, and its memory put back when the action failed. `None` for an
/// action that is not the auto-relay's.
pub fn settled(
    snap: &Snapshot,
    memory: &mut Memory,
    settings: Settings,
    action: &Action,
    outcome: &Result<Outcome>,
) -> Option<Option<String>> {
    let name = |k: &PublicKey| snap.name(k);
    let decision = match action {
        Action::Commit(Commit::Relay { peer, via, from }) => Decision::Relay {
            peer: *peer,
            via: *via,
            from: *from,
        },
        Action::Commit(Commit::Direct { peer, via }) => Decision::Direct {
            peer: *peer,
            via: *via,
        },
        Action::Live(Live::ArmProbe(peer)) => Decision::Probe(*peer),
        Action::Live(Live::DropProbe(peer)) => Decision::DropProbe(*peer),
        _ => return None,
    };
    let line = match (outcome, decision) {
        (Err(e), _) => {
            memory.failed(&decision, snap.unix);
            format!("peer {}: auto-relay: {e}", name(&decision_peer(&decision)))
        }
        (Ok(Outcome::Stale), Decision::DropProbe(_) | Decision::Probe(_)) => return Some(None),
        (Ok(Outcome::Stale), _) => {
            memory.failed(&decision, snap.unix);
            format!(
                "peer {}: auto-relay: {}",
                name(&decision_peer(&decision)),
                changed_meanwhile()
            )
        }
        (Ok(Outcome::Done { .. }), Decision::Relay { peer, via, from }) => {
            if let Some(a) = memory.relayed.get_mut(&peer) {
                a.probed_at = snap.unix;
            }
            match from {
                None => format!(
                    "peer {}: no direct handshake for longer than {} s: now relayed via {} (auto-relay; a direct probe runs)",
                    name(&peer),
                    settings.after.as_secs(),
                    name(&via)
                ),
                Some(old) => format!(
                    "peer {}: relay {} is no longer healthy: now relayed via {} (auto-relay)",
                    name(&peer),
                    name(&old),
                    name(&via)
                ),
            }
        }
        (Ok(Outcome::Done { .. }), Decision::Direct { peer, via }) => format!(
            "peer {}: the direct probe made a handshake: direct again (was relayed via {} by the agent)",
            name(&peer),
            name(&via)
        ),
        (Ok(Outcome::Done { .. }), Decision::DropProbe(peer)) => format!(
            "peer {}: not the agent's to move: its direct probe is removed",
            name(&peer)
        ),
        (Ok(Outcome::Done { .. }), _) => return Some(None),
    };
    Some(Some(line))
}

fn decision_peer(decision: &Decision) -> PublicKey {
    match *decision {
        Decision::Poke(k) | Decision::Probe(k) | Decision::DropProbe(k) | Decision::Released(k) => {
            k
        }
        Decision::Relay { peer, .. } | Decision::Direct { peer, .. } => peer,
    }
}

/// A direct peer's VPN address: its first host route.
fn vpn_address(
    entries: &[crate::config::node::PeerEntry],
    key: &PublicKey,
) -> Option<std::net::IpAddr> {
    entries
        .iter()
        .find(|e| e.public_key == *key)?
        .allowed_ips
        .iter()
        .find(|n| n.prefix_len() == n.max_prefix_len())
        .map(ipnet::IpNet::addr)
}

fn changed_meanwhile() -> Error {
    Error::Conflict("changed in the config since the pass began: left as it is".into())
}

/// `relay PEER via VIA` as the CLI plans it (`plan::relay::move_via`),
/// when the peer is still where the pass saw it (direct, or via `from`)
/// and not pinned; the peer's direct probe is armed in the same device
/// call, so it is part of the commit (and of its rollback).
pub fn plan_relay(
    doc: &Document,
    own: &Own,
    pins: &BTreeSet<PublicKey>,
    peer: PublicKey,
    via: PublicKey,
    from: Option<PublicKey>,
) -> Result<(Document, Vec<Delta>)> {
    use crate::plan::relay::{Found, locate};
    let entries = crate::config::node::peers(doc)?;
    match (locate(&entries, &PeerSelector::Key(peer)), from) {
        (Some(Found::Direct(_)), None) => {}
        (Some(Found::Relayed { via: at, .. }), Some(old)) if at.public_key == old => {}
        _ => return Err(changed_meanwhile()),
    }
    if pins.contains(&peer) {
        return Err(changed_meanwhile());
    }
    let moved =
        crate::plan::relay::move_via(doc, own, &PeerSelector::Key(peer), &PeerSelector::Key(via))?;
    let mut deltas = moved.deltas;
    deltas.extend(probe_deltas(&moved.peer, None));
    deltas.extend(probe_deltas(&moved.peer, Some(PROBE_KEEPALIVE)));
    Ok((moved.doc, deltas))
}

/// `relay PEER direct` as the CLI plans it, when the peer is still relayed
/// via `via` and not pinned. The restored peer replaces the probe in
/// place, keeping the session its handshake made.
pub fn plan_direct(
    doc: &Document,
    own: &Own,
    pins: &BTreeSet<PublicKey>,
    peer: PublicKey,
    via: PublicKey,
) -> Result<(Document, Vec<Delta>)> {
    use crate::plan::relay::{Found, locate, make_direct};
    let entries = crate::config::node::peers(doc)?;
    match locate(&entries, &PeerSelector::Key(peer)) {
        Some(Found::Relayed { via: at, .. }) if at.public_key == via => {}
        _ => return Err(changed_meanwhile()),
    }
    if pins.contains(&peer) {
        return Err(changed_meanwhile());
    }
    let (new_doc, mut deltas, _) = make_direct(doc, own, &PeerSelector::Key(peer))?;
    // The endpoint the probe's handshake went through stays: it may have
    // been learned by roaming, and the configured one may not work.
    for delta in &mut deltas {
        if let Delta::UpsertPeer {
            public_key,
            endpoint,
            ..
        } = delta
            && *public_key == peer
        {
            *endpoint = None;
        }
    }
    Ok((new_doc, deltas))
}

/// The keepalive that arms a direct probe: WireGuard sends one at once
/// (which starts a handshake) when a peer's keepalive goes from off to on.
const PROBE_KEEPALIVE: u16 = 25;

/// The live entry of a relayed peer's direct probe: its endpoint and
/// preshared key, no AllowedIPs.
fn probe_deltas(record: &crate::config::node::Relayed, keepalive: Option<u16>) -> Vec<Delta> {
    use crate::config::document::keys;
    let preshared_key = record
        .section
        .as_deref()
        .and_then(|text| Document::parse(text).ok())
        .and_then(|doc| {
            doc.peer_sections()
                .next()
                .and_then(|s| s.get_last(keys::PRESHARED_KEY))
                .and_then(crate::wg::PresharedKey::parse)
        });
    let mut deltas = vec![Delta::UpsertPeer {
        public_key: record.public_key,
        endpoint: record
            .endpoint
            .as_ref()
            .and_then(crate::types::WrittenEndpoint::parsed),
        allowed_ips: Vec::new(),
        keepalive,
    }];
    if preshared_key.is_some() {
        deltas.push(Delta::SetPresharedKey {
            public_key: record.public_key,
            key: preshared_key,
        });
    }
    deltas
}

/// (Re-)arm the direct probe of a relayed peer, checked against the config
/// and the device under the lock: keepalive off, then on (one device
/// call), which makes WireGuard send a keepalive, and so try a handshake,
/// at once.
pub fn arm_probe(
    entries: &[crate::config::node::PeerEntry],
    live: &LiveDevice,
    peer: PublicKey,
) -> Result<Option<Vec<Delta>>> {
    use crate::plan::relay::{Found, locate};
    let record = match locate(entries, &PeerSelector::Key(peer)) {
        Some(Found::Relayed { peer: r, .. }) => r,
        _ => return Err(changed_meanwhile()),
    };
    // A live entry with AllowedIPs is not a probe: drift, for `repair`.
    if live
        .peers
        .iter()
        .any(|p| p.public_key == peer && !p.allowed_ips.is_empty())
    {
        return Err(Error::Conflict(
            "relayed in the config but live with a direct tunnel: left for `wgp2p repair`".into(),
        ));
    }
    let mut deltas = probe_deltas(record, None);
    deltas.extend(probe_deltas(record, Some(PROBE_KEEPALIVE)));
    Ok(Some(deltas))
}

/// Remove the direct probe of a relayed peer that is not the agent's, or
/// of a peer no longer in the config (`None`: there is no probe).
pub fn drop_probe(
    entries: &[crate::config::node::PeerEntry],
    live: &LiveDevice,
    peer: PublicKey,
) -> Result<Option<Vec<Delta>>> {
    use crate::plan::relay::{Found, locate};
    if let Some(Found::Direct(_)) = locate(entries, &PeerSelector::Key(peer)) {
        return Err(changed_meanwhile());
    }
    let is_probe = live
        .peers
        .iter()
        .any(|p| p.public_key == peer && p.allowed_ips.is_empty());
    Ok(is_probe.then(|| vec![Delta::RemovePeer(peer)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{KEY_A, KEY_B, KEY_C};

    const AFTER: u64 = 120;

    fn key(k: &str) -> PublicKey {
        k.parse().unwrap()
    }

    fn settings() -> Settings {
        Settings {
            after: Duration::from_secs(AFTER),
        }
    }

    fn direct(k: &str, age: Option<u64>) -> Peer {
        Peer {
            key: key(k),
            route: Route::Direct,
            handshake_age: age,
            live: true,
            relays_others: false,
        }
    }

    fn via(k: &str, relay: &str, probe_age: Option<u64>, probe_live: bool) -> Peer {
        Peer {
            key: key(k),
            route: Route::Via(key(relay)),
            handshake_age: probe_age,
            live: probe_live,
            relays_others: false,
        }
    }

    /// A (relay-enabled, fresh) and B (stale, never a handshake).
    fn seen(now: u64, peers: Vec<Peer>) -> Observations {
        Observations {
            now,
            peers,
            relays: [key(KEY_A)].into(),
            pinned: BTreeSet::new(),
        }
    }

    #[test]
    fn a_stale_peer_is_poked_then_relayed_after_the_threshold() {
        let mut memory = Memory::default();
        let peers = vec![direct(KEY_A, Some(5)), direct(KEY_B, None)];
        let d = decide(&seen(1000, peers.clone()), &mut memory, settings());
        assert_eq!(d, [Decision::Poke(key(KEY_B))]);
        assert_eq!(memory.stale_since[&key(KEY_B)], 1000);
        let d = decide(
            &seen(1000 + AFTER - 1, peers.clone()),
            &mut memory,
            settings(),
        );
        assert_eq!(d, [Decision::Poke(key(KEY_B))]);
        let d = decide(&seen(1000 + AFTER, peers), &mut memory, settings());
        assert_eq!(
            d,
            [Decision::Relay {
                peer: key(KEY_B),
                via: key(KEY_A),
                from: None
            }]
        );
        assert_eq!(memory.relayed[&key(KEY_B)].via, key(KEY_A));
        assert!(memory.stale_since.is_empty());
    }

    #[test]
    fn stale_time_counts_from_the_last_handshake_plus_180_s() {
        let mut memory = Memory::default();
        // Last handshake 299 s ago: stale for 119 s.
        let d = decide(
            &seen(1000, vec![direct(KEY_A, Some(5)), direct(KEY_B, Some(299))]),
            &mut memory,
            settings(),
        );
        assert_eq!(d, [Decision::Poke(key(KEY_B))]);
        let mut memory = Memory::default();
        let d = decide(
            &seen(1000, vec![direct(KEY_A, Some(5)), direct(KEY_B, Some(300))]),
            &mut memory,
            settings(),
        );
        assert!(matches!(d[..], [Decision::Relay { .. }]), "{d:?}");
    }

    #[test]
    fn a_peer_that_works_again_is_not_relayed() {
        let mut memory = Memory::default();
        decide(
            &seen(1000, vec![direct(KEY_A, Some(5)), direct(KEY_B, None)]),
            &mut memory,
            settings(),
        );
        // The poke made a handshake: fresh, the stale clock stops.
        let d = decide(
            &seen(1010, vec![direct(KEY_A, Some(5)), direct(KEY_B, Some(1))]),
            &mut memory,
            settings(),
        );
        assert!(d.is_empty() && memory.stale_since.is_empty(), "{d:?}");
        // Stale again later: the clock starts afresh.
        let d = decide(
            &seen(2000, vec![direct(KEY_A, Some(5)), direct(KEY_B, None)]),
            &mut memory,
            settings(),
        );
        assert_eq!(d, [Decision::Poke(key(KEY_B))]);
    }

    #[test]
    fn candidates_are_fresh_direct_relay_enabled_and_the_lowest_key() {
        let mut seen = seen(1000, vec![direct(KEY_A, Some(5)), direct(KEY_B, None)]);
        let b = key(KEY_B);
        assert_eq!(candidate(&seen, &b, None), Some(key(KEY_A)));
        // Not relay-enabled.
        seen.relays.clear();
        assert_eq!(candidate(&seen, &b, None), None);
        seen.relays = [key(KEY_A), key(KEY_C)].into();
        // Stale.
        seen.peers[0].handshake_age = Some(181);
        assert_eq!(candidate(&seen, &b, None), None);
        seen.peers[0].handshake_age = Some(5);
        // Relayed itself.
        seen.peers.push(via(KEY_C, KEY_A, Some(1), true));
        assert_eq!(candidate(&seen, &b, None), Some(key(KEY_A)));
        // Two: the lowest key (C's bytes start with 0x01) on both ends.
        seen.peers[2] = direct(KEY_C, Some(3));
        assert_eq!(candidate(&seen, &b, None), Some(key(KEY_C)));
        assert!(key(KEY_C) < key(KEY_A));
        assert_eq!(candidate(&seen, &b, Some(&key(KEY_C))), Some(key(KEY_A)));
        // Never the peer itself.
        seen.relays.insert(b);
        seen.peers[1].handshake_age = Some(1);
        assert_eq!(candidate(&seen, &b, None), Some(key(KEY_C)));
    }

    #[test]
    fn no_candidate_keeps_poking() {
        let mut memory = Memory::default();
        let mut s = seen(1000, vec![direct(KEY_A, Some(5)), direct(KEY_B, None)]);
        s.relays.clear();
        decide(&s, &mut memory, settings());
        s.now += 10 * AFTER;
        assert_eq!(
            decide(&s, &mut memory, settings()),
            [Decision::Poke(key(KEY_B))]
        );
    }

    fn relayed_memory(since: u64, probed_at: u64) -> Memory {
        let mut memory = Memory::default();
        memory.relayed.insert(
            key(KEY_B),
            AutoRelay {
                via: key(KEY_A),
                since,
                probed_at,
            },
        );
        memory
    }

    #[test]
    fn a_relayed_peer_is_probed_and_re_probed() {
        let mut memory = relayed_memory(1000, 0);
        let peers = vec![direct(KEY_A, Some(5)), via(KEY_B, KEY_A, None, false)];
        assert_eq!(
            decide(&seen(1000, peers), &mut memory, settings()),
            [Decision::Probe(key(KEY_B))]
        );
        let peers = vec![direct(KEY_A, Some(5)), via(KEY_B, KEY_A, None, true)];
        assert!(
            decide(
                &seen(1000 + AFTER - 1, peers.clone()),
                &mut memory,
                settings()
            )
            .is_empty()
        );
        assert_eq!(
            decide(&seen(1000 + AFTER, peers.clone()), &mut memory, settings()),
            [Decision::Probe(key(KEY_B))]
        );
        // A probe that vanished (interface restarted) comes back at once.
        let gone = vec![direct(KEY_A, Some(5)), via(KEY_B, KEY_A, None, false)];
        assert_eq!(
            decide(&seen(1000 + AFTER + 1, gone), &mut memory, settings()),
            [Decision::Probe(key(KEY_B))]
        );
    }

    #[test]
    fn a_probe_handshake_moves_the_peer_back() {
        let mut memory = relayed_memory(1000, 1000);
        let peers = vec![direct(KEY_A, Some(5)), via(KEY_B, KEY_A, Some(2), true)];
        assert_eq!(
            decide(&seen(1100, peers), &mut memory, settings()),
            [Decision::Direct {
                peer: key(KEY_B),
                via: key(KEY_A)
            }]
        );
        assert!(memory.relayed.is_empty());
        // Undone when it could not be carried out.
        memory.failed(
            &Decision::Direct {
                peer: key(KEY_B),
                via: key(KEY_A),
            },
            1100,
        );
        assert_eq!(memory.relayed[&key(KEY_B)].via, key(KEY_A));
    }

    #[test]
    fn a_human_decision_is_never_undone() {
        // Pinned while direct and stale: left alone, nothing remembered.
        let mut memory = Memory::default();
        let mut s = seen(1000, vec![direct(KEY_A, Some(5)), direct(KEY_B, None)]);
        s.pinned.insert(key(KEY_B));
        for now in [1000, 1000 + AFTER, 1000 + 10 * AFTER] {
            s.now = now;
            assert!(decide(&s, &mut memory, settings()).is_empty());
        }
        assert_eq!(memory, Memory::default());
        // Relayed by the agent, then pinned (a human ran `relay B via A`
        // or `relay B direct`): the agent forgets it, and drops its probe.
        let mut memory = relayed_memory(1000, 1000);
        let mut s = seen(
            1100,
            vec![direct(KEY_A, Some(5)), via(KEY_B, KEY_A, Some(2), true)],
        );
        s.pinned.insert(key(KEY_B));
        assert_eq!(
            decide(&s, &mut memory, settings()),
            [
                Decision::Released(key(KEY_B)),
                Decision::DropProbe(key(KEY_B))
            ]
        );
        assert!(memory.relayed.is_empty());
        // Said once.
        assert_eq!(
            decide(&s, &mut memory, settings()),
            [Decision::DropProbe(key(KEY_B))]
        );
        // Relayed by hand (no pin, e.g. an edit): the agent's probe is
        // dropped and the peer never moved back.
        let mut memory = Memory::default();
        let s = seen(
            1100,
            vec![direct(KEY_A, Some(5)), via(KEY_B, KEY_A, Some(2), true)],
        );
        assert_eq!(
            decide(&s, &mut memory, settings()),
            [Decision::DropProbe(key(KEY_B))]
        );
        // The agent relayed it via A, the config says via C now.
        let mut memory = relayed_memory(1000, 1000);
        let s = seen(
            1100,
            vec![
                direct(KEY_A, Some(5)),
                direct(KEY_C, Some(5)),
                via(KEY_B, KEY_C, None, false),
            ],
        );
        assert!(decide(&s, &mut memory, settings()).is_empty());
        assert!(memory.relayed.is_empty());
        // The agent relayed it, the config says direct now (a hand edit):
        // forgotten, and a new stale time starts.
        let mut memory = relayed_memory(1000, 1000);
        let s = seen(1100, vec![direct(KEY_A, Some(5)), direct(KEY_B, None)]);
        assert_eq!(
            decide(&s, &mut memory, settings()),
            [Decision::Poke(key(KEY_B))]
        );
        assert!(memory.relayed.is_empty());
        assert_eq!(memory.stale_since[&key(KEY_B)], 1100);
    }

    #[test]
    fn a_lost_relay_is_replaced_by_another_candidate() {
        let mut memory = relayed_memory(1000, 1000);
        let mut s = seen(
            1050,
            vec![
                direct(KEY_A, Some(400)),
                direct(KEY_C, Some(5)),
                via(KEY_B, KEY_A, None, true),
            ],
        );
        let about_b = |d: Vec<Decision>| -> Vec<Decision> {
            assert!(d.contains(&Decision::Poke(key(KEY_A))), "{d:?}");
            d.into_iter()
                .filter(|d| *d != Decision::Poke(key(KEY_A)))
                .collect()
        };
        // A relays B: it is never relayed itself, only poked.
        s.peers[0].relays_others = true;
        // No other candidate: stays.
        assert!(about_b(decide(&s, &mut memory, settings())).is_empty());
        s.relays.insert(key(KEY_C));
        assert_eq!(
            about_b(decide(&s, &mut memory, settings())),
            [Decision::Relay {
                peer: key(KEY_B),
                via: key(KEY_C),
                from: Some(key(KEY_A))
            }]
        );
        assert_eq!(memory.relayed[&key(KEY_B)].via, key(KEY_C));
    }

    #[test]
    fn removed_peers_are_forgotten_and_memory_round_trips() {
        let mut memory = relayed_memory(1000, 1000);
        memory.stale_since.insert(key(KEY_C), 900);
        let saved = memory.save(Some(settings()));
        assert!(saved.enabled && saved.after_secs == AFTER);
        let back = Memory::load(&saved);
        assert_eq!(back.stale_since, memory.stale_since);
        assert_eq!(back.relayed[&key(KEY_B)].probed_at, 0);
        decide(
            &seen(1100, vec![direct(KEY_A, Some(5))]),
            &mut memory,
            settings(),
        );
        assert_eq!(memory, Memory::default());
    }

    #[test]
    fn relay_after_is_validated() {
        assert_eq!(parse_after("5").unwrap(), Duration::from_secs(5));
        for bad in ["0", "3601", "x", ""] {
            let err = parse_after(bad).unwrap_err().to_string();
            assert!(err.contains("from 1 to 3600"), "{err}");
        }
    }
}
