//! Introductions: a stale peer's endpoint, learned from the peers that see
//! it.
//!
//! Two hosts behind NATs often cannot find each other from what was pasted
//! (an old address, no address at all), while a third member sees both of
//! their current public endpoints. For a peer that is stale (no handshake
//! for more than 135 s, or none, at two passes in a row), the agent asks
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

use super::endpoints::STALE_AFTER;
use crate::types::PublicKey;

/// How long answers to a round of `where` are collected before the first
/// try, so that the most recent handshake is tried first.
pub const COLLECT: Duration = Duration::from_secs(1);

/// Most healthy peers asked about one stale peer in one round.
pub const MAX_ASKED: usize = 8;

/// Consecutive stale passes before a peer is chased: the first pass's
/// `hello` gives the endpoint the peer already has one chance to make a
/// handshake.
pub const STALE_PASSES: u32 = 2;

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

/// An endpoint reported for a stale peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    pub endpoint: SocketAddr,
    /// Seconds since the reporter's latest handshake with the peer.
    pub handshake_secs: Option<u64>,
    /// Who reported it; `None`: the config's own endpoint.
    pub from: Option<PublicKey>,
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

#[derive(Clone, Debug, Default)]
struct Chase {
    stale_passes: u32,
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

    /// When the loop should call [`Hints::tick`]: a round's answers have
    /// been collected and nothing is being tried.
    pub fn due(&self) -> Option<Instant> {
        self.chases
            .values()
            .filter(|c| c.trying.is_none() && !c.offers.is_empty())
            .filter_map(|c| c.asked_at.map(|at| at + COLLECT))
            .min()
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
        // Healthy peers to ask, the most recent handshake first.
        let mut healthy: Vec<&PeerView> = peers
            .iter()
            .filter(|p| p.agent_heard && !p.stale(now))
            .collect();
        healthy.sort_by_key(|p| p.handshake_age(now));
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
            let chase = self.chases.entry(peer.key).or_default();
            chase.stale_passes = chase.stale_passes.saturating_add(1);
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
            if chase.stale_passes < STALE_PASSES {
                continue;
            }
            let collected = chase
                .asked_at
                .is_some_and(|at| mono.saturating_duration_since(at) >= COLLECT);
            if collected && let Some(action) = next_try(peer.key, chase, now, mono) {
                actions.push(action);
                continue;
            }
            let round_over = chase
                .asked_at
                .is_none_or(|at| mono.saturating_duration_since(at) >= try_for(interval));
            if chase.offers.is_empty() && round_over {
                let to: Vec<PublicKey> = healthy
                    .iter()
                    .filter(|h| h.key != peer.key)
                    .take(MAX_ASKED)
                    .map(|h| h.key)
                    .collect();
                // Nobody to ask (yet: e.g. no peer's `hello` heard since
                // this agent started): no round, ask at the next pass
                // rather than a whole try time later.
                if to.is_empty() {
                    continue;
                }
                chase.asked_at = Some(mono);
                chase.asked = to.iter().copied().collect();
                chase.tried.clear();
                // The user's own endpoint stays a candidate, tried last.
                if let Some(configured) = peer.configured.filter(|c| Some(*c) != peer.live_endpoint)
                {
                    chase.offers.push(Offer {
                        endpoint: configured,
                        handshake_secs: None,
                        from: None,
                    });
                }
                actions.push(Action::Ask {
                    about: peer.key,
                    to,
                });
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

    /// Start trying where answers have been collected and nothing is tried.
    pub fn tick(&mut self, now: SystemTime, mono: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for (key, chase) in &mut self.chases {
            let collected = chase
                .asked_at
                .is_some_and(|at| mono.saturating_duration_since(at) >= COLLECT);
            if collected
                && chase.stale_passes >= STALE_PASSES
                && let Some(action) = next_try(*key, chase, now, mono)
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
    }

    #[test]
    fn a_stale_peer_is_asked_about_then_the_freshest_report_is_tried_then_kept() {
        let mut world = World::new();
        let mut hints = Hints::default();
        // First stale pass: its own endpoint gets a chance.
        assert_eq!(world.pass(&mut hints), vec![]);
        // Second: the healthy peers are asked, the freshest handshake first.
        assert_eq!(
            world.pass(&mut hints),
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
        assert!(hints.due().is_some());
        assert_eq!(hints.tick(world.now, world.mono - INTERVAL), vec![]);
        let tried = hints.tick(world.now, world.mono);
        let offer = |e: &str, secs, from: &str| Offer {
            endpoint: addr(e),
            handshake_secs: Some(secs),
            from: Some(key(from)),
        };
        assert_eq!(
            tried,
            vec![Action::Try {
                peer: key(KEY_A),
                offer: offer("198.51.100.3:4000", 3, KEY_C),
            }]
        );
        assert!(hints.trying(&key(KEY_A)));
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

    #[test]
    fn a_failed_try_moves_to_the_next_report_then_to_the_config_then_asks_again() {
        let mut world = World::new();
        let mut hints = Hints::default();
        world.pass(&mut hints);
        world.pass(&mut hints);
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
        let first = hints.tick(world.now, world.mono);
        assert!(
            matches!(first[..], [Action::Try { offer, .. }] if offer.endpoint == addr("198.51.100.2:51820"))
        );
        // 10 s without a handshake (try_for of a 2 s interval).
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
        for _ in 0..5 {
            all.extend(world.pass(&mut hints));
        }
        // The config's endpoint is not tried while it is the live one.
        assert!(
            !all.iter()
                .any(|a| matches!(a, Action::Try { offer, .. } if offer.from.is_none()))
        );
        for _ in 0..6 {
            all.extend(world.pass(&mut hints));
        }
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
        world.pass(&mut hints);
        world.pass(&mut hints);
        hints.seen(
            key(KEY_B),
            key(KEY_A),
            Some(addr("198.51.100.2:51820")),
            Some(60),
        );
        let tried = hints.tick(world.now, world.mono);
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
        world.peers[0].last_handshake = Some(world.now - Duration::from_secs(135));
        let mut hints = Hints::default();
        for _ in 0..10 {
            // Keep it exactly 135 s old: still fresh ("older than").
            world.peers[0].last_handshake = Some(world.now - Duration::from_secs(135));
            assert_eq!(world.pass(&mut hints), vec![]);
        }
        // Answers about a peer that is not chased are ignored.
        hints.seen(
            key(KEY_B),
            key(KEY_A),
            Some(addr("198.51.100.2:51820")),
            Some(1),
        );
        assert_eq!(hints.tick(world.now, world.mono + COLLECT), vec![]);
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
        assert_eq!(world.pass(&mut hints), vec![]);
        assert_eq!(world.pass(&mut hints), vec![]);
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
