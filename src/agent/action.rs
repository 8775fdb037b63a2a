//! What a pass decided, as values: each feature's `decide` returns
//! [`Action`]s and the executor (`execute`) carries them out, in one place.
//! Nothing here does anything.

use std::net::{IpAddr, SocketAddr};

use super::protocol::Message;
use crate::plan::membership::Introduction;
use crate::status::Reason;
use crate::types::PublicKey;

/// One thing to do.
#[derive(Debug)]
pub enum Action {
    /// A line for the log.
    Log(String),
    /// One message to the agents of these peers (encoded once).
    Send {
        to: Vec<PublicKey>,
        message: Message,
    },
    /// One packet through the tunnel to each of these VPN addresses, so
    /// WireGuard starts a handshake (or a peer learns a new source) now.
    Poke(Vec<IpAddr>),
    /// A change of the live interface only, checked again under the lock.
    Live(Live),
    /// A change of the config (plan, then commit, under the lock).
    Commit(Commit),
}

/// A live-only change and the condition it was decided on, which the
/// executor checks again against the config and the device under the
/// lock (a human or a command may have changed either since the pass
/// observed them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Live {
    /// DNS endpoints: point the peer at a new resolution (the config still
    /// has the same endpoint text, the peer is live).
    Endpoint(Refresh),
    /// Introductions: try an endpoint another peer sees (the peer is still
    /// configured, live and stale).
    Hint { peer: PublicKey, offer: Offer },
    /// Auto-relay: (re-)arm a relayed peer's direct probe (still relayed).
    ArmProbe(PublicKey),
    /// Auto-relay: remove a direct probe that is not the agent's.
    DropProbe(PublicKey),
}

/// A config change, planned again under the lock from the config as it is
/// then, and committed like a command's.
#[derive(Clone, Debug)]
pub enum Commit {
    /// Auto-relay: route a peer via `via`; `from`: the relay it goes
    /// through now (`None`: it is direct now).
    Relay {
        peer: PublicKey,
        via: PublicKey,
        from: Option<PublicKey>,
    },
    /// Auto-relay: make a peer relayed via `via` direct again.
    Direct { peer: PublicKey, via: PublicKey },
    /// Membership: add an introduced peer; `at`: the event's time.
    Introduce { introduction: Introduction, at: u64 },
    /// Membership: remove an introduced peer; `at`: the event's time,
    /// `signer`: the peer whose copy was accepted (the authority rule is
    /// checked again under the lock), `by`: how the log names it.
    Remove {
        key: PublicKey,
        at: u64,
        signer: PublicKey,
        by: String,
    },
}

/// What became of a live change or a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; `detail` says where it took effect (`Applied::describe`, or
    /// "already there"), `name` the peer's name when the change knew it.
    Done {
        detail: &'static str,
        name: Option<String>,
    },
    /// Not done: what it was decided on no longer holds.
    Stale,
}

impl Outcome {
    pub fn done(detail: &'static str) -> Outcome {
        Outcome::Done { detail, name: None }
    }
}

/// One endpoint change to make live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refresh {
    pub public_key: PublicKey,
    /// The configured endpoint the address was resolved from.
    pub configured: String,
    pub address: SocketAddr,
    pub previous: Option<SocketAddr>,
    pub reason: Reason,
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
