//! Who gets this node's `hello`, and when. Pure: what the snapshot and
//! the heard agents say goes in, the peers to greet come out.
//!
//! - At each full pass: every peer whose agent was heard lately, and the
//!   others at most every [`DISCOVER_EVERY`] (a peer without an agent,
//!   like a phone, is not kept busy for nothing).
//! - Between passes: a peer configured since the last look (a human's
//!   add-peer, an introduction), at once.
//! - In answer to a `hello`: when the peer's agent is heard for the first
//!   time (or again after a silence), or when the books differ (this
//!   node's records go with it). An agent that already heard this one
//!   does not answer, so this never bounces.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::snapshot::Snapshot;
use crate::types::PublicKey;

/// What this agent heard from a peer's agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Heard {
    /// Unix seconds of its latest `hello`.
    pub at: u64,
    /// Whether it said it relays (`relay-enable`).
    pub relay: bool,
}

/// A peer whose agent is not heard gets a `hello` at most this often.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(300);

/// What greeting remembers from pass to pass.
#[derive(Debug, Default)]
pub struct Greetings {
    /// When each peer whose agent was not heard last got a `hello`.
    discovered: HashMap<PublicKey, Instant>,
    /// The peers with an agent address at the last look.
    known: HashSet<PublicKey>,
}

impl Greetings {
    /// The socket was opened again: every peer is greeted afresh.
    pub fn reset(&mut self) {
        self.discovered.clear();
    }

    /// A full pass: the peers to greet. `heard`: whether a peer's agent
    /// was heard lately.
    pub fn pass(&mut self, snap: &Snapshot, heard: impl Fn(&PublicKey) -> bool) -> Vec<PublicKey> {
        let mut to = Vec::new();
        for key in snap.agents.keys() {
            if !heard(key) {
                if !discovery_due(self.discovered.get(key).copied(), snap.mono) {
                    continue;
                }
                self.discovered.insert(*key, snap.mono);
            }
            to.push(*key);
        }
        self.discovered
            .retain(|key, _| snap.agents.contains_key(key));
        self.known = snap.agents.keys().copied().collect();
        to
    }

    /// Between passes: the peers configured since the last look.
    pub fn newcomers(&mut self, snap: &Snapshot) -> Vec<PublicKey> {
        let to = snap
            .agents
            .keys()
            .filter(|k| !self.known.contains(k))
            .copied()
            .collect();
        self.known = snap.agents.keys().copied().collect();
        to
    }
}

/// Whether a peer whose agent is not heard gets a `hello` now: never
/// greeted by this socket, or last greeted [`DISCOVER_EVERY`] ago.
pub fn discovery_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= DISCOVER_EVERY)
}

/// Whether a `hello` from a peer is answered: its agent was not heard
/// within `heard_within` before (`before`: what was heard last), or the
/// books differ (`records` go back).
pub fn answer(before: Option<Heard>, now: u64, heard_within: Duration, records: bool) -> bool {
    let newly_heard = before.is_none_or(|b| now.saturating_sub(b.at) > heard_within.as_secs());
    newly_heard || records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unheard_peer_is_greeted_at_first_and_then_every_five_minutes() {
        let start = Instant::now();
        assert!(discovery_due(None, start));
        assert!(!discovery_due(Some(start), start + Duration::from_secs(30)));
        assert!(!discovery_due(
            Some(start),
            start + Duration::from_secs(299)
        ));
        assert!(discovery_due(Some(start), start + DISCOVER_EVERY));
    }

    #[test]
    fn a_hello_is_answered_when_new_or_when_books_differ_and_never_bounces() {
        let within = Duration::from_secs(135);
        let heard = Heard {
            at: 1000,
            relay: false,
        };
        assert!(answer(None, 1000, within, false));
        assert!(!answer(Some(heard), 1010, within, false));
        assert!(answer(Some(heard), 1010, within, true));
        assert!(answer(Some(heard), 1200, within, false));
    }
}
