//! Keeping DNS endpoints fresh: the rule that decides, per peer and pass,
//! whether the live endpoint moves to what the name resolves to now.
//!
//! WireGuard resolves a DNS endpoint once, when it is set. The rule here is
//! wireguard-tools' `contrib/reresolve-dns` (set the endpoint again when
//! the latest handshake is older than 135 s, or missing), plus one more
//! case: a peer that is still healthy but whose name now points elsewhere
//! than at the last resolution, while the live endpoint is still the old
//! resolution (so it came from DNS, not from roaming). A live endpoint
//! that WireGuard learned by roaming is left alone while it works.
//!
//! Everything here is pure: what was observed goes in, what to do comes
//! out, so every case is unit-tested without DNS, devices or time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use super::action::{Action, Live, Refresh};
use super::snapshot::Snapshot;
use crate::config::node::PeerEntry;
pub use crate::status::Reason;
use crate::types::{Endpoint, Host, PublicKey, WrittenEndpoint};
use crate::wg::Delta;

/// A peer whose latest handshake is older than this (or missing) is stale:
/// the threshold of wireguard-tools' `contrib/reresolve-dns`.
pub const STALE_AFTER: Duration = Duration::from_secs(135);

/// A configured peer whose endpoint is a DNS name, and what the agent saw
/// of it in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub public_key: PublicKey,
    /// The endpoint as written in the config, e.g. `enterprise.lab:51820`.
    pub configured: String,
    /// What the name resolves to now (empty when the lookup failed).
    pub resolved: Vec<SocketAddr>,
    /// The peer's live endpoint, if it has one.
    pub live_endpoint: Option<SocketAddr>,
    /// Age of the latest handshake, `None` when there was none.
    pub handshake_age: Option<Duration>,
}

/// The configured DNS endpoint of a peer, when it has one.
pub fn dns_endpoint(entry: &PeerEntry) -> Option<Endpoint> {
    let endpoint = entry.endpoint.as_ref()?.parsed()?;
    matches!(endpoint.host(), Host::Dns(_)).then_some(endpoint)
}

/// Decide for one peer. `last` is what the same configured endpoint
/// resolved to at the previous pass (`None` when unknown: first pass, or
/// the user changed the endpoint).
pub fn decide(seen: &Observation, last: Option<&[SocketAddr]>) -> Option<Refresh> {
    let new = *seen.resolved.first()?;
    let live_matches_dns = seen
        .live_endpoint
        .is_some_and(|live| seen.resolved.contains(&live));
    if live_matches_dns {
        return None;
    }
    let stale = seen.handshake_age.is_none_or(|age| age > STALE_AFTER);
    let reason = if stale {
        Reason::Stale
    } else {
        // Healthy: move only when the live endpoint is the previous
        // resolution. Anything else was learned by roaming, and works.
        let from_dns = match (last, seen.live_endpoint) {
            (Some(last), Some(live)) => last.contains(&live),
            _ => false,
        };
        if !from_dns {
            return None;
        }
        Reason::NameMoved
    };
    Some(Refresh {
        public_key: seen.public_key,
        configured: seen.configured.clone(),
        address: new,
        previous: seen.live_endpoint,
        reason,
    })
}

/// Re-check a refresh against the config as it is under the lock: the
/// peer must still be configured with the same endpoint text (a hand edit
/// or a concurrent command since the pass began wins). The live change
/// touches the endpoint only.
pub fn plan(entries: &[PeerEntry], refresh: &Refresh) -> Option<Delta> {
    entries
        .iter()
        .find(|e| e.public_key == refresh.public_key)
        .filter(|e| {
            e.endpoint.as_ref().map(WrittenEndpoint::as_written)
                == Some(refresh.configured.as_str())
        })
        .map(|_| Delta::SetEndpoint {
            public_key: refresh.public_key,
            address: refresh.address,
        })
}

/// The resolutions of the previous pass, keyed by peer: kept only while
/// the peer's configured endpoint stays the same text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    last: HashMap<PublicKey, (String, Vec<SocketAddr>)>,
}

impl Memory {
    pub fn last(&self, seen: &Observation) -> Option<&[SocketAddr]> {
        self.last
            .get(&seen.public_key)
            .filter(|(configured, _)| *configured == seen.configured)
            .map(|(_, addresses)| addresses.as_slice())
    }

    /// Remember this pass's resolution (a failed lookup keeps the old one).
    pub fn record(&mut self, seen: &Observation) {
        if !seen.resolved.is_empty() {
            self.last.insert(
                seen.public_key,
                (seen.configured.clone(), seen.resolved.clone()),
            );
        }
    }

    /// Forget peers that are no longer configured with a DNS name.
    pub fn retain(&mut self, keep: impl Fn(&PublicKey) -> bool) {
        self.last.retain(|key, _| keep(key));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &String, &Vec<SocketAddr>)> {
        self.last.iter().map(|(k, (c, a))| (k, c, a))
    }

    pub fn insert(&mut self, key: PublicKey, configured: String, addresses: Vec<SocketAddr>) {
        self.last.insert(key, (configured, addresses));
    }
}

/// The configured peers whose endpoint is a DNS name: key, endpoint text
/// as written, the endpoint.
pub fn watched(entries: &[PeerEntry]) -> Vec<(PublicKey, String, Endpoint)> {
    entries
        .iter()
        .filter_map(|e| {
            let endpoint = dns_endpoint(e)?;
            let configured = e.endpoint.as_ref()?.as_written().to_string();
            Some((e.public_key, configured, endpoint))
        })
        .collect()
}

/// One pass over the DNS endpoints (a full pass: it needs what the names
/// resolve to): a live change for each peer whose endpoint moves, and a
/// log line when a name stops resolving or resolves again (`unresolved`
/// remembers which did not). `trying`: peers whose introduced endpoint is
/// being tried, left alone now.
pub fn decide_pass(
    snap: &Snapshot,
    memory: &mut Memory,
    unresolved: &mut HashSet<PublicKey>,
    trying: impl Fn(&PublicKey) -> bool,
) -> Vec<Action> {
    let watched = watched(&snap.entries);
    memory.retain(|key| watched.iter().any(|(k, ..)| k == key));
    unresolved.retain(|key| watched.iter().any(|(k, ..)| k == key));
    let mut actions = Vec::new();
    for (key, configured, endpoint) in watched {
        // A configured peer that is not live is drift, for `repair`.
        let Some(peer) = snap.live_peer(&key) else {
            continue;
        };
        if trying(&key) {
            continue;
        }
        let seen = Observation {
            public_key: key,
            configured: configured.clone(),
            resolved: snap
                .resolved
                .get(&endpoint.to_string())
                .cloned()
                .unwrap_or_default(),
            live_endpoint: peer.endpoint,
            handshake_age: peer
                .last_handshake
                .map(|t| snap.now.duration_since(t).unwrap_or_default()),
        };
        let name = snap.name(&key);
        // Said when a name stops resolving and when it resolves again.
        let failing = seen.resolved.is_empty();
        if failing && unresolved.insert(key) {
            actions.push(Action::Log(format!(
                "peer {name}: cannot resolve {configured}: keeping its endpoint"
            )));
        } else if !failing && unresolved.remove(&key) {
            actions.push(Action::Log(format!(
                "peer {name}: {configured} resolves again"
            )));
        }
        let decision = decide(&seen, memory.last(&seen));
        memory.record(&seen);
        if let Some(refresh) = decision {
            actions.push(Action::Live(Live::Endpoint(refresh)));
        }
    }
    actions
}

/// The log line of a refresh made live.
pub fn describe(name: &str, refresh: &Refresh) -> String {
    let previous = refresh
        .previous
        .map(|p| format!(" (was {p})"))
        .unwrap_or_default();
    format!(
        "peer {name}: endpoint {} now {}{previous}: {}",
        refresh.configured,
        refresh.address,
        refresh.reason.describe()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{KEY_A, KEY_B};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const OLD: &str = "203.0.113.2:51820";
    const NEW: &str = "203.0.113.202:51820";
    const ROAMED: &str = "198.51.100.7:40000";

    fn seen(resolved: &[&str], live: Option<&str>, age: Option<u64>) -> Observation {
        Observation {
            public_key: KEY_A.parse().unwrap(),
            configured: "enterprise.lab:51820".into(),
            resolved: resolved.iter().map(|s| addr(s)).collect(),
            live_endpoint: live.map(addr),
            handshake_age: age.map(Duration::from_secs),
        }
    }

    #[test]
    fn healthy_peer_follows_a_moved_name() {
        let refresh = decide(&seen(&[NEW], Some(OLD), Some(10)), Some(&[addr(OLD)])).unwrap();
        assert_eq!(refresh.reason, Reason::NameMoved);
        assert_eq!(refresh.address, addr(NEW));
        assert_eq!(refresh.previous, Some(addr(OLD)));
    }

    #[test]
    fn a_working_roamed_endpoint_is_never_overridden() {
        // DNS moved, but the live endpoint is not the last resolution: it
        // was learned by roaming, and the peer is healthy.
        assert_eq!(
            decide(&seen(&[NEW], Some(ROAMED), Some(10)), Some(&[addr(OLD)])),
            None
        );
        // Same without any memory (first pass after a start).
        assert_eq!(decide(&seen(&[NEW], Some(ROAMED), Some(10)), None), None);
        // Healthy, DNS unchanged, endpoint roamed: nothing either.
        assert_eq!(
            decide(&seen(&[OLD], Some(ROAMED), Some(10)), Some(&[addr(OLD)])),
            None
        );
    }

    #[test]
    fn stale_or_never_handshaken_peer_gets_the_resolution() {
        for age in [None, Some(136), Some(100_000)] {
            let refresh = decide(&seen(&[NEW], Some(ROAMED), age), None).unwrap();
            assert_eq!(
                (refresh.reason, refresh.address),
                (Reason::Stale, addr(NEW))
            );
        }
        // 135 s is still fresh (the rule is "older than").
        assert_eq!(decide(&seen(&[NEW], Some(ROAMED), Some(135)), None), None);
        // No live endpoint at all (none configured live yet).
        let refresh = decide(&seen(&[NEW], None, None), None).unwrap();
        assert_eq!(refresh.previous, None);
    }

    #[test]
    fn nothing_to_do_when_live_is_already_a_resolution() {
        // Several addresses, in any order: being one of them is enough, so
        // round-robin DNS does not make the endpoint flap.
        assert_eq!(
            decide(&seen(&[NEW, OLD], Some(OLD), None), Some(&[addr(NEW)])),
            None
        );
        // A failed lookup changes nothing.
        assert_eq!(
            decide(&seen(&[], Some(OLD), None), Some(&[addr(OLD)])),
            None
        );
    }

    #[test]
    fn memory_is_per_configured_text_and_survives_failed_lookups() {
        let mut memory = Memory::default();
        let first = seen(&[OLD], Some(OLD), Some(1));
        memory.record(&first);
        assert_eq!(memory.last(&first), Some(&[addr(OLD)][..]));
        memory.record(&seen(&[], Some(OLD), Some(1)));
        assert_eq!(memory.last(&first), Some(&[addr(OLD)][..]));
        let mut edited = first.clone();
        edited.configured = "enterprise.example:51820".into();
        assert_eq!(memory.last(&edited), None);
        memory.retain(|k| *k == KEY_B.parse().unwrap());
        assert_eq!(memory.last(&first), None);
    }

    fn entry(endpoint: &str) -> PeerEntry {
        PeerEntry {
            name: Some("enterprise".parse().unwrap()),
            public_key: KEY_A.parse().unwrap(),
            endpoint: Some(endpoint.parse().unwrap()),
            allowed_ips: vec!["10.15.0.2/32".parse().unwrap()],
            keepalive: Some(25),
            preshared_key: false,
            relayed: vec![],
        }
    }

    #[test]
    fn plan_touches_the_endpoint_only_and_yields_to_edits() {
        let refresh = decide(&seen(&[NEW], Some(OLD), Some(10)), Some(&[addr(OLD)])).unwrap();
        assert_eq!(
            plan(&[entry("enterprise.lab:51820")], &refresh),
            Some(Delta::SetEndpoint {
                public_key: KEY_A.parse().unwrap(),
                address: addr(NEW),
            })
        );
        // Edited (or removed) since the pass began: nothing is done.
        assert_eq!(plan(&[entry("203.0.113.9:51820")], &refresh), None);
        assert_eq!(plan(&[], &refresh), None);
    }

    #[test]
    fn only_dns_endpoints_are_watched() {
        assert!(dns_endpoint(&entry("enterprise.lab:51820")).is_some());
        assert!(dns_endpoint(&entry("203.0.113.2:51820")).is_none());
        assert!(dns_endpoint(&entry("[fd00::2]:51820")).is_none());
    }
}
