//! Introductions: a stale peer's endpoint, learned from the peers that see
//! it.
//!
//! Two hosts behind NATs often cannot find each other from what was pasted
//! (an old address, no address at all), while a third member sees both of
//! their current public endpoints. For a peer that is stale (no handshake
//! for more than 135 s, or none) and has stayed so for [`GRACE`] since this
//! agent first saw it stale, the agent asks
//! its healthy peers (a handshake within 135 s and an agent heard) `where`
//! they see it, collects the endpoints they report for a moment
//! ([`COLLECT`]), and tries them live one at a time, the most recent
//! handshake first: set the endpoint (live only, through the same
//! `Delta::SetEndpoint` as DNS refresh, under the config lock) and send the
//! peer a packet through the tunnel so WireGuard starts a handshake there.
//! It keeps the first that completes a handshake, and gives each one
//! [`try_for`] before the next. Both ends do this at about the same time,
//! so each end's NAT has a mapping open towards the other when the other's
//! handshake arrives (hole punching). A round that found nothing is asked
//! again after [`try_for`].
//!
//! Hints are only hints: the config keeps what the user wrote, a peer with
//! a recent handshake is never touched, and nothing but the live endpoint
//! of a stale peer ever changes (never AllowedIPs, keys or the config).
//!
//! Everything here is pure: the loop passes what it saw and carries out
//! the [`Action`]s, so every case is unit-tested without devices or time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::action::{self, Offer};
use super::endpoints::STALE_AFTER;
use super::snapshot::Snapshot;
use crate::types::PublicKey;

/// How long answers to a round of `where` are collected before the first
/// try, so that the most recent handshake is tried first.
pub const COLLECT: Duration = Duration::from_secs(1);

/// Most healthy peers asked about one stale peer in one round.
pub const MAX_ASKED: usize = 8;

/// How long a peer stays stale, as this agent sees it, before it is
/// introduced: the `hello` of the pass that first saw it stale has then
/// given the endpoint it already has two of WireGuard's handshake tries
/// (5 s apart). A peer that just started, or was just added, is thus asked
/// about 10 s later, whatever the interval.
pub const GRACE: Duration = Duration::from_secs(10);

/// How long one reported endpoint is tried: two passes (so the other end,
/// on its own schedule, tries too while this end's NAT mapping is open),
/// and at least 10 s (two of WireGuard's handshake retries, 5 s apart).
pub fn try_for(interval: Duration) -> Duration {
    (interval * 2).max(Duration::from_secs(10))
}

/// A configured peer as a pass sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub key: PublicKey,
    /// The configured endpoint when it is an IP address (a DNS name is
    /// DNS refresh's business).
    pub configured: Option<SocketAddr>,
    pub live_endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    /// Whether its agent said `hello` recently.
    pub agent_heard: bool,
}

impl PeerView {
    fn handshake_age(&self, now: SystemTime) -> Option<Duration> {
        self.last_handshake
            .map(|t| now.duration_since(t).unwrap_or_default())
    }

    fn stale(&self, now: SystemTime) -> bool {
        self.handshake_age(now).is_none_or(|age| age > STALE_AFTER)
    }
}

/// An endpoint kept because it completed a handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introduced {
    pub address: SocketAddr,
    /// The peer that reported it.
    #[serde(with = "key_text")]
    pub from: PublicKey,
    /// Unix seconds.
    pub at: u64,
}

mod key_text {
    use crate::types::PublicKey;
    pub fn serialize<S: serde::Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_base64())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the loop does for hints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `where {about}` to these peers' agents.
    Ask {
        about: PublicKey,
        to: Vec<PublicKey>,
    },
    /// Set this endpoint live for the peer, then send it a packet.
    Try { peer: PublicKey, offer: Offer },
    /// The tried endpoint completed a handshake: kept (and said).
    Kept {
        peer: PublicKey,
        address: SocketAddr,
        from: Option<PublicKey>,
    },
    /// The tried endpoint did not complete a handshake in time.
    GaveUp { peer: PublicKey, offer: Offer },
}

#[derive(Clone, Debug)]
struct Attempt {
    offer: Offer,
    /// Wall-clock start: a handshake after it counts.
    since: SystemTime,
    started: Instant,
}

#[derive(Clone, Debug)]
struct Chase {
    /// When this agent first saw the peer stale.
    stale_since: Instant,
    /// Whether the loop was woken for the end of [`GRACE`] already.
    grace_ticked: bool,
    /// The config's endpoint (an IP address) and the live one, at the
    /// last pass.
    configured: Option<SocketAddr>,
    live: Option<SocketAddr>,
    asked_at: Option<Instant>,
    asked: HashSet<PublicKey>,
    /// Not yet tried, in the order to try them.
    offers: Vec<Offer>,
    tried: Vec<SocketAddr>,
    trying: Option<Attempt>,
}

/// What hints carry from pass to pass. Only `learned` is saved: a
/// restarted agent starts its chases again.
#[derive(Clone, Debug, Default)]
pub struct Hints {
    chases: HashMap<PublicKey, Chase>,
    /// The healthy peers at the last pass, the most recent handshake first.
    healthy: Vec<PublicKey>,
    pub learned: HashMap<PublicKey, Introduced>,
}

/// An endpoint worth trying: a unicast address and a port.
fn usable(endpoint: SocketAddr) -> bool {
    let ip = endpoint.ip();
    endpoint.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !ip.is_loopback()
}

impl Hints {
    /// Whether an endpoint is being tried for `peer` (DNS refresh then
    /// leaves it alone).
    pub fn trying(&self, peer: &PublicKey) -> bool {
        self.chases.get(peer).is_some_and(|c| c.trying.is_some())
    }

    /// When the loop should call [`Hints::tick`]: a stale peer's
    /// [`GRACE`] ends, or a round's answers have been collected and nothing
    /// is being tried.
    pub fn due(&self) -> Option<Instant> {
        let collected = self
            .chases
            .values()
            .filter(|c| c.trying.is_none() && !c.offers.is_empty())
            .filter_map(|c| c.asked_at.map(|at| at + COLLECT));
        let graced = self
            .chases
            .values()
            .filter(|c| !c.grace_ticked && c.asked_at.is_none())
            .map(|c| c.stale_since + GRACE);
        collected.chain(graced).min()
    }

    /// One pass over the configured peers.
    pub fn pass(
        &mut self,
        peers: &[PeerView],
        now: SystemTime,
        mono: Instant,
        interval: Duration,
        unix_now: u64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        self.chases.retain(|k, _| peers.iter().any(|p| p.key == *k));
        self.learned.retain(|k, learned| {
            peers.iter().any(|p| {
                p.key == *k
                    // Roamed elsewhere since: no longer what was learned.
                    && p.live_endpoint.is_none_or(|live| live == learned.address)
            })
        });
        self.healthy = healthy(peers, now);
        for peer in peers {
            if !peer.stale(now) {
                if let Some(attempt) = self.chases.remove(&peer.key).and_then(|c| c.trying)
                    && peer.last_handshake.is_some_and(|t| t >= attempt.since)
                {
                    let address = peer.live_endpoint.unwrap_or(attempt.offer.endpoint);
                    if let Some(from) = attempt.offer.from {
                        self.learned.insert(
                            peer.key,
                            Introduced {
                                address,
                                from,
                                at: unix_now,
                            },
                        );
                    }
                    actions.push(Action::Kept {
                        peer: peer.key,
                        address,
                        from: attempt.offer.from,
                    });
                }
                continue;
            }
            let chase = self.chases.entry(peer.key).or_insert_with(|| Chase {
                stale_since: mono,
                grace_ticked: false,
                configured: None,
                live: None,
                asked_at: None,
                asked: HashSet::new(),
                offers: Vec::new(),
                tried: Vec::new(),
                trying: None,
            });
            chase.configured = peer.configured;
            chase.live = peer.live_endpoint;
            if let Some(attempt) = &chase.trying {
                if mono.saturating_duration_since(attempt.started) < try_for(interval) {
                    continue;
                }
                let offer = attempt.offer;
                chase.tried.push(offer.endpoint);
                chase.trying = None;
                actions.push(Action::GaveUp {
                    peer: peer.key,
                    offer,
                });
            }
            if let Some(action) = step(peer.key, chase, &self.healthy, now, mono, interval) {
                actions.push(action);
            }
        }
        actions
    }

    /// An answer to `where`: queued as an offer when it is about a peer
    /// being chased and comes from a peer that was asked.
    pub fn seen(
        &mut self,
        from: PublicKey,
        about: PublicKey,
        endpoint: Option<SocketAddr>,
        handshake_secs: Option<u64>,
    ) {
        let Some(chase) = self.chases.get_mut(&about) else {
            return;
        };
        let Some(endpoint) = endpoint.filter(|e| usable(*e)) else {
            return;
        };
        if !chase.asked.contains(&from)
            || chase.tried.contains(&endpoint)
            || chase
                .trying
                .as_ref()
                .is_some_and(|t| t.offer.endpoint == endpoint)
        {
            return;
        }
        if let Some(known) = chase.offers.iter_mut().find(|o| o.endpoint == endpoint) {
            // Reported twice: keep the most recent handshake's report.
            if known.from.is_some() && rank(handshake_secs) < rank(known.handshake_secs) {
                known.handshake_secs = handshake_secs;
                known.from = Some(from);
            }
        } else if let Some(own) = chase.offers.iter_mut().find(|o| o.from == Some(from)) {
            // One offer per answering peer: a peer that answers again with
            // another endpoint replaces its own offer, so the offers stay
            // bounded by the peers asked.
            own.endpoint = endpoint;
            own.handshake_secs = handshake_secs;
        } else {
            chase.offers.push(Offer {
                endpoint,
                handshake_secs,
                from: Some(from),
            });
        }
        // Reports by handshake age (none last), the config's own last.
        chase
            .offers
            .sort_by_key(|o| (o.from.is_none(), rank(o.handshake_secs)));
    }

    /// Between passes: ask about a peer whose [`GRACE`] ended, start
    /// trying where answers have been collected and nothing is tried.
    /// `peers` is read afresh (an agent heard since the pass counts).
    pub fn tick(
        &mut self,
        peers: &[PeerView],
        now: SystemTime,
        mono: Instant,
        interval: Duration,
    ) -> Vec<Action> {
        self.healthy = healthy(peers, now);
        let mut actions = Vec::new();
        for (key, chase) in &mut self.chases {
            if mono >= chase.stale_since + GRACE {
                chase.grace_ticked = true;
            }
            if chase.trying.is_none()
                && let Some(action) = step(*key, chase, &self.healthy, now, mono, interval)
            {
                actions.push(action);
            }
        }
        actions
    }

    /// A try that could not be made (the peer changed in the config, or the
    /// device refused): the next offer is tried at the next tick.
    pub fn abandon(&mut self, peer: &PublicKey) {
        if let Some(chase) = self.chases.get_mut(peer)
            && let Some(attempt) = chase.trying.take()
        {
            chase.tried.push(attempt.offer.endpoint);
        }
    }
}

/// The healthy peers to ask: a recent handshake and an agent heard, the
/// most recent handshake first.
fn healthy(peers: &[PeerView], now: SystemTime) -> Vec<PublicKey> {
    let mut healthy: Vec<&PeerView> = peers
        .iter()
        .filter(|p| p.agent_heard && !p.stale(now))
        .collect();
    healthy.sort_by_key(|p| p.handshake_age(now));
    healthy.iter().map(|p| p.key).collect()
}

/// The next thing to do for a stale peer that is not being tried: nothing
/// during its [`GRACE`]; try the next collected answer; or, when nothing is
/// left and the last round is over, ask the healthy peers again.
fn step(
    peer: PublicKey,
    chase: &mut Chase,
    healthy: &[PublicKey],
    now: SystemTime,
    mono: Instant,
    interval: Duration,
) -> Option<Action> {
    if mono.saturating_duration_since(chase.stale_since) < GRACE {
        return None;
    }
    let collected = chase
        .asked_at
        .is_some_and(|at| mono.saturating_duration_since(at) >= COLLECT);
    if collected && let Some(action) = next_try(peer, chase, now, mono) {
        return Some(action);
    }
    let round_over = chase
        .asked_at
        .is_none_or(|at| mono.saturating_duration_since(at) >= try_for(interval));
    if !chase.offers.is_empty() || !round_over || chase.trying.is_some() {
        return None;
    }
    let to: Vec<PublicKey> = healthy
        .iter()
        .filter(|h| **h != peer)
        .take(MAX_ASKED)
        .copied()
        .collect();
    // Nobody to ask (yet: e.g. no peer's `hello` heard since this agent
    // started): no round, ask at the next pass rather than a whole try
    // time later.
    if to.is_empty() {
        return None;
    }
    chase.asked_at = Some(mono);
    chase.asked = to.iter().copied().collect();
    chase.tried.clear();
    // The user's own endpoint stays a candidate, tried last.
    if let Some(configured) = chase.configured.filter(|c| Some(*c) != chase.live) {
        chase.offers.push(Offer {
            endpoint: configured,
            handshake_secs: None,
            from: None,
        });
    }
    Some(Action::Ask { about: peer, to })
}

fn rank(handshake_secs: Option<u64>) -> u64 {
    handshake_secs.unwrap_or(u64::MAX)
}

fn next_try(peer: PublicKey, chase: &mut Chase, now: SystemTime, mono: Instant) -> Option<Action> {
    if chase.trying.is_some() || chase.offers.is_empty() {
        return None;
    }
    let offer = chase.offers.remove(0);
    chase.trying = Some(Attempt {
        offer,
        since: now,
        started: mono,
    });
    Some(Action::Try { peer, offer })
}

/// The configured peers that are live, as introductions see them;
/// `heard`: whether a peer's agent was heard lately.
pub fn views(snap: &Snapshot, heard: impl Fn(&PublicKey) -> bool) -> Vec<PeerView> {
    snap.entries
        .iter()
        .filter_map(|e| {
            let peer = snap.live_peer(&e.public_key)?;
            Some(PeerView {
                key: e.public_key,
                configured: e
                    .endpoint
                    .as_ref()
                    .and_then(|w| w.as_written().parse().ok()),
                live_endpoint: peer.endpoint,
                last_handshake: peer.last_handshake,
                agent_heard: heard(&e.public_key),
            })
        })
        .collect()
}

/// What introductions decided, as the executor's actions; `interval`: the
/// agent's.
pub fn to_actions(
    snap: &Snapshot,
    interval: Duration,
    decided: Vec<Action>,
) -> Vec<action::Action> {
    let name = |k: &PublicKey| snap.name(k);
    let from =
        |k: Option<PublicKey>| k.map_or("the config".to_string(), |k| format!("peer {}", name(&k)));
    let mut out = Vec::new();
    for decision in decided {
        match decision {
            Action::Ask { about, to } => {
                let asked: Vec<String> = to.iter().map(name).collect();
                out.push(action::Action::Log(format!(
                    "peer {}: stale: asked {} peer(s) where they see it ({})",
                    name(&about),
                    to.len(),
                    asked.join(", ")
                )));
                out.push(action::Action::Send {
                    to,
                    message: super::protocol::Message::Where {
                        key: super::protocol::Key(about),
                    },
                });
            }
            Action::Try { peer, offer } => {
                out.push(action::Action::Live(action::Live::Hint { peer, offer }));
            }
            Action::Kept {
                peer,
                address,
                from: by,
            } => out.push(action::Action::Log(format!(
                "peer {}: endpoint {address} (from {}) completed a handshake: kept live, the config is unchanged",
                name(&peer),
                from(by)
            ))),
            Action::GaveUp { peer, offer } => out.push(action::Action::Log(format!(
                "peer {}: no handshake through {} within {} s",
                name(&peer),
                offer.endpoint,
                try_for(interval).as_secs()
            ))),
        }
    }
    out
}

/// Check an endpoint to try against the config and the device under the
/// lock: only a peer that is still configured, live and stale is touched
/// (`None`: it is not; a handshake may have come since the pass), and only
/// its live endpoint changes.
pub fn try_deltas(
    entries: &[crate::config::node::PeerEntry],
    live: &crate::wg::LiveDevice,
    peer: PublicKey,
    address: SocketAddr,
    now: SystemTime,
) -> Option<Vec<crate::wg::Delta>> {
    if !entries.iter().any(|e| e.public_key == peer) {
        return None;
    }
    let still_stale = live.peers.iter().any(|p| {
        p.public_key == peer
            && p.last_handshake
                .is_none_or(|t| now.duration_since(t).unwrap_or_default() > STALE_AFTER)
    });
    still_stale.then(|| {
        vec![crate::wg::Delta::SetEndpoint {
            public_key: peer,
            address,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{KEY_A, KEY_B, KEY_C};

    const INTERVAL: Duration = Duration::from_secs(2);

    fn key(k: &str) -> PublicKey {
        k.parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A: stale (never a handshake); B and C: healthy with agents.
    struct World {
        now: SystemTime,
        mono: Instant,
        peers: Vec<PeerView>,
    }

    impl World {
        fn new() -> World {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
            let healthy = |k: &str, age: u64| PeerView {
                key: key(k),
                configured: None,
                live_endpoint: Some(addr("203.0.113.9:51820")),
                last_handshake: Some(now - Duration::from_secs(age)),
                agent_heard: true,
            };
            World {
                now,
                mono: Instant::now(),
                peers: vec![
                    PeerView {
                        key: key(KEY_A),
                        configured: Some(addr("203.0.113.250:51820")),
                        live_endpoint: Some(addr("203.0.113.250:51820")),
                        last_handshake: None,
                        agent_heard: false,
                    },
                    healthy(KEY_B, 20),
                    healthy(KEY_C, 5),
                ],
            }
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.mono += by;
        }

        fn pass(&mut self, hints: &mut Hints) -> Vec<Action> {
            let actions = hints.pass(&self.peers, self.now, self.mono, INTERVAL, 77);
            self.advance(INTERVAL);
            actions
        }

        fn tick(&self, hints: &mut Hints) -> Vec<Action> {
            hints.tick(&self.peers, self.now, self.mono, INTERVAL)
        }

        /// Passes until the first action; it must come at the end of the
        /// grace time (10 s: the sixth pass of a 2 s interval).
        fn until_asked(&mut self, hints: &mut Hints) -> Vec<Action> {
            for _ in 0..5 {
                assert_eq!(self.pass(hints), vec![], "an action within the grace time");
            }
            self.pass(hints)
        }
    }

    fn offer(endpoint: &str, secs: u64, from: &str) -> Offer {
        Offer {
            endpoint: addr(endpoint),
            handshake_secs: Some(secs),
            from: Some(key(from)),
        }
    }

    #[test]
    fn a_stale_peer_is_asked_about_then_the_freshest_report_is_tried_then_kept() {
        let mut world = World::new();
        let mut hints = Hints::default();
        // After the grace time, the healthy peers are asked, the freshest
        // handshake first.
        assert_eq!(
            world.until_asked(&mut hints),
            vec![Action::Ask {
                about: key(KEY_A),
                to: vec![key(KEY_C), key(KEY_B)],
            }]
        );
        // B reports an older handshake than C; C's comes first anyway.
        hints.seen(
            key(KEY_B),
            key(KEY_A),
            Some(addr("198.51.100.2:51820")),
            Some(60),
        );
        hints.seen(
            key(KEY_C),
            key(KEY_A),
            Some(addr("198.51.100.3:4000")),
            Some(3),
        );
        // Unasked or useless answers are ignored.
        hints.seen(key(KEY_A), key(KEY_A), Some(addr("192.0.2.66:1")), Some(0));
        hints.seen(key(KEY_B), key(KEY_A), Some(addr("0.0.0.0:51820")), Some(0));
        hints.seen(key(KEY_B), key(KEY_A), None, None);
        // Answers are collected for a second before the first try.
        let asked_at = world.mono - INTERVAL;
        assert_eq!(hints.due(), Some(asked_at + COLLECT));
        assert_eq!(
            hints.tick(&world.peers, world.now, asked_at, INTERVAL),
            vec![]
        );
        assert_eq!(
            world.tick(&mut hints),
            vec![Action::Try {
                peer: key(KEY_A),
                offer: offer("198.51.100.3:4000", 3, KEY_C),
            }]
        );
        assert!(hints.trying(&key(KEY_A)));
        assert_eq!(hints.due(), None);
        // Still no handshake within the try: nothing else happens.
        assert_eq!(world.pass(&mut hints), vec![]);
        // A handshake completes: kept, learned from C.
        world.peers[0].last_handshake = Some(world.now);
        world.peers[0].live_endpoint = Some(addr("198.51.100.3:4000"));
        assert_eq!(
            world.pass(&mut hints),
            vec![Action::Kept {
                peer: key(KEY_A),
                address: addr("198.51.100.3:4000"),
                from: Some(key(KEY_C)),
            }]
        );
        assert_eq!(
            hints.learned[&key(KEY_A)],
            Introduced {
                address: addr("198.51.100.3:4000"),
                from: key(KEY_C),
                at: 77
            }
        );
        assert!(!hints.trying(&key(KEY_A)));
        // It roams elsewhere later: no longer shown as learned.
        world.peers[0].live_endpoint = Some(addr("198.51.100.3:4001"));
        world.pass(&mut hints);
        assert!(hints.learned.is_empty());
    }

    /// A peer that answers again and again with new endpoints keeps one
    /// offer: the offers stay bounded by the peers asked.
    #[test]
    fn a_peer_answering_many_endpoints_keeps_one_offer() {
        let mut world = World::new();
        let mut hints = Hints::default();
        world.until_asked(&mut hints);
        for port in 1000..3000 {
            hints.seen(
                key(KEY_B),
                key(KEY_A),
                Some(addr(&format!("198.51.100.2:{port}"))),
                Some(60),
            );
        }
        hints.seen(
            key(KEY_C),
            key(KEY_A),
            Some(addr("198.51.100.3:4000")),
            Some(3),
        );
        assert_eq!(hints.chases[&key(KEY_A)].offers.len(), 2);
        assert_eq!(
            hints.chases[&key(KEY_A)].offers[1],
            offer("198.51.100.2:2999", 60, KEY_B)
        );
    }

    #[test]
    fn with_a_long_interval_the_loop_is_woken_when_the_grace_time_ends() {
        let mut world = World::new();
        let mut hints = Hints::default();
        let long = Duration::from_secs(30);
        assert_eq!(
            hints.pass(&world.peers, world.now, world.mono, long, 1),
            vec![]
        );
        assert_eq!(hints.due(), Some(world.mono + GRACE));
        world.advance(GRACE);
        let asked = hints.tick(&world.peers, world.now, world.mono, long);
        assert!(matches!(asked[..], [Action::Ask { .. }]), "{asked:?}");
        // Woken once for it, not again (nobody answered).
        assert_eq!(hints.due(), None);
    }

    #[test]
    fn an_agent_heard_after_the_pass_is_asked_when_the_grace_time_ends() {
        let mut world = World::new();
        for peer in &mut world.peers[1..] {
            peer.agent_heard = false;
        }
        let mut hints = Hints::default();
        let long = Duration::from_secs(30);
        assert_eq!(
            hints.pass(&world.peers, world.now, world.mono, long, 1),
            vec![]
        );
        // C's hello comes in right after the pass.
        world.peers[2].agent_heard = true;
        world.advance(GRACE);
        assert_eq!(
            hints.tick(&world.peers, world.now, world.mono, long),
            vec![Action::Ask {
                about: key(KEY_A),
                to: vec![key(KEY_C)],
            }]
        );
    }

    #[test]
    fn a_failed_try_moves_to_the_next_report_then_asks_again() {
        let mut world = World::new();
        let mut hints = Hints::default();
        world.until_asked(&mut hints);
        hints.seen(
            key(KEY_B),
            key(KEY_A),
            Some(addr("198.51.100.2:51820")),
            Some(60),
        );
        hints.seen(
            key(KEY_C),
            key(KEY_A),
            Some(addr("198.51.100.3:4000")),
            None,
        );
        let first = world.tick(&mut hints);
        assert!(
            matches!(first[..], [Action::Try { offer, .. }] if offer.endpoint == addr("198.51.100.2:51820"))
        );
        // 10 s without a handshake (try_for of a 2 s interval): the next.
        let mut all = Vec::new();
        for _ in 0..6 {
            all.extend(world.pass(&mut hints));
        }
        let tried: Vec<SocketAddr> = all
            .iter()
            .filter_map(|a| match a {
                Action::Try { offer, .. } => Some(offer.endpoint),
                _ => None,
            })
            .collect();
        assert_eq!(tried, vec![addr("198.51.100.3:4000")]);
        assert!(all.iter().any(|a| matches!(a, Action::GaveUp { .. })));
        for _ in 0..11 {
            all.extend(world.pass(&mut hints));
        }
        // The config's endpoint is not tried while it is the live one.
        assert!(
            !all.iter()
                .any(|a| matches!(a, Action::Try { offer, .. } if offer.from.is_none()))
        );
        let asks = all
            .iter()
            .filter(|a| matches!(a, Action::Ask { .. }))
            .count();
        assert!(asks >= 1, "{all:?}");
    }

    #[test]
    fn the_configured_endpoint_is_tried_last_when_it_is_not_live() {
        let mut world = World::new();
        world.peers[0].live_endpoint = Some(addr("198.51.100.77:51820"));
        let mut hints = Hints::default();
        world.until_asked(&mut hints);
        hints.seen(
            key(KEY_B),
            key(KEY_A),
            Some(addr("198.51.100.2:51820")),
            Some(60),
        );
        let tried = world.tick(&mut hints);
        assert!(matches!(tried[..], [Action::Try { offer, .. }] if offer.from.is_some()));
        for _ in 0..6 {
            let actions = world.pass(&mut hints);
            if let Some(Action::Try { offer, .. }) = actions.last() {
                assert_eq!(offer.endpoint, addr("203.0.113.250:51820"));
                assert_eq!(offer.from, None);
                return;
            }
        }
        panic!("the configured endpoint was never tried");
    }

    #[test]
    fn a_working_peer_is_never_touched() {
        let mut world = World::new();
        let mut hints = Hints::default();
        for _ in 0..20 {
            // Exactly 135 s old: still fresh (the rule is "older than").
            world.peers[0].last_handshake = Some(world.now - Duration::from_secs(135));
            assert_eq!(world.pass(&mut hints), vec![]);
            assert_eq!(world.tick(&mut hints), vec![]);
        }
        assert_eq!(hints.due(), None);
        // Answers about a peer that is not introduced are ignored.
        hints.seen(
            key(KEY_B),
            key(KEY_A),
            Some(addr("198.51.100.2:51820")),
            Some(1),
        );
        assert_eq!(
            hints.tick(&world.peers, world.now, world.mono + COLLECT, INTERVAL),
            vec![]
        );
        assert!(!hints.trying(&key(KEY_A)));
    }

    #[test]
    fn nobody_healthy_means_nobody_is_asked() {
        let mut world = World::new();
        for peer in &mut world.peers[1..] {
            peer.agent_heard = false;
        }
        let mut hints = Hints::default();
        let mut all = Vec::new();
        for _ in 0..20 {
            all.extend(world.pass(&mut hints));
            all.extend(world.tick(&mut hints));
        }
        assert!(
            !all.iter().any(|a| matches!(a, Action::Ask { .. })),
            "{all:?}"
        );
    }

    #[test]
    fn a_peer_heard_late_is_asked_at_the_next_pass() {
        let mut world = World::new();
        world.peers[1].agent_heard = false;
        world.peers[2].agent_heard = false;
        let mut hints = Hints::default();
        assert_eq!(world.until_asked(&mut hints), vec![]);
        // C's hello arrives just after that pass: asked at the next one.
        world.peers[2].agent_heard = true;
        assert_eq!(
            world.pass(&mut hints),
            vec![Action::Ask {
                about: key(KEY_A),
                to: vec![key(KEY_C)],
            }]
        );
    }

    #[test]
    fn try_time_covers_two_passes_and_two_handshake_retries() {
        assert_eq!(try_for(Duration::from_secs(2)), Duration::from_secs(10));
        assert_eq!(try_for(Duration::from_secs(30)), Duration::from_secs(60));
    }
}
