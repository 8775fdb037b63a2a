//! The status schema: what `status` and `doctor` report (`status --json`
//! and the tables `output` renders), the agent's part included. Data only,
//! a leaf: the agent writes what these views show, `commands::status`
//! fills them in, `output` renders them, and none of them imports another
//! for it (tailscale's `ipnstate`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A peer's health mark. JSON: `ok`, `stale`, `drift`, `down`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Handshake within `health::STALE_AFTER_SECS`.
    Ok,
    /// No handshake, or the last one older than `health::STALE_AFTER_SECS`.
    Stale,
    /// The live peer differs from the config: missing live, live only,
    /// other settings, or a relayed peer with a direct tunnel (`health`).
    Drift,
    /// The interface is down (config only).
    Down,
}

impl Health {
    pub fn word(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Stale => "STALE",
            Health::Drift => "DRIFT",
            Health::Down => "down",
        }
    }
}

/// `status --json`: field names are stable and documented in docs/json.md.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub interface: String,
    /// `up` or `down`.
    pub state: &'static str,
    /// `kernel` or `userspace` when up.
    pub backend: Option<&'static str>,
    pub address: Option<String>,
    pub public_key: Option<String>,
    pub listen_port: Option<u16>,
    /// Drift of the interface's own settings (private key, listen port),
    /// each with the command that repairs it.
    pub notes: Vec<String>,
    pub peers: Vec<PeerStatus>,
    /// Whether `wgp2p agent` runs, and the endpoints it set live.
    pub agent: AgentView,
}

#[derive(Debug, Serialize)]
pub struct PeerStatus {
    pub name: Option<String>,
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    pub latest_handshake_secs_ago: Option<u64>,
    pub rx_bytes: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub keepalive: Option<u16>,
    /// Whether the config gives the peer a (non-zero) PresharedKey.
    pub preshared_key: bool,
    pub in_config: bool,
    pub live: bool,
    pub health: Health,
    pub note: Option<String>,
    /// The relay peer this one is reached through, when relayed.
    pub via: Option<String>,
    /// For a stale direct peer: healthy direct peers that could relay it.
    pub relay_candidates: Vec<String>,
    /// `agent --auto-relay`'s state for the peer (`relayed`, `stale`,
    /// `pinned`, as in `agent.auto_relay.peers`); `None` when it has none.
    pub auto_relay: Option<&'static str>,
}

/// The agents' socket: where it listens (`None`: not open, e.g. the
/// interface is down) and the datagrams it accepted and dropped, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub listening: Option<SocketAddr>,
    pub accepted: u64,
    /// Dropped datagrams by reason (`protocol::DropReason::name`), since
    /// the agent started.
    pub dropped: BTreeMap<String, u64>,
}

/// The agent as `status` and `doctor` report it (`status --json`: the
/// `agent` object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AgentView {
    /// Whether an agent holds the interface's agent lock now.
    pub running: bool,
    /// PID of the running agent.
    pub pid: Option<u32>,
    /// Since the end of the last pass of the running (or last) agent.
    pub last_pass_secs_ago: Option<u64>,
    pub interval_secs: Option<u64>,
    /// Endpoints the agent set live, one per peer.
    pub learned_endpoints: Vec<LearnedEndpoint>,
    /// Peers whose agents it heard.
    pub agents_heard: Vec<AgentHeardView>,
    /// Its socket and message counters.
    pub link: LinkStatus,
    /// `--auto-relay`: `None` when the (last) agent ran without it.
    pub auto_relay: Option<RelayView>,
    /// What its membership book holds (docs/membership.md), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipView>,
}

/// A peer's agent as this agent heard it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentHeardView {
    /// The peer's name, filled in by `status` from the config.
    pub peer: Option<String>,
    pub public_key: String,
    pub secs_ago: u64,
    pub relay: bool,
}

/// An endpoint the agent set live, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LearnedEndpoint {
    /// The peer's name, filled in by `status` from the config.
    pub peer: Option<String>,
    pub public_key: String,
    pub address: SocketAddr,
    /// `dns`: resolved from the configured endpoint; `peer NAME`: reported
    /// by that peer (introductions) and kept because it completed a
    /// handshake.
    pub source: String,
    /// The key of the peer that reported it (source `peer NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The configured endpoint it was resolved from (source `dns`), or the
    /// one the config keeps (source `peer`: empty when none).
    pub configured: String,
    pub reason: Reason,
    pub secs_ago: u64,
}

/// The book as `status` shows it (`status --json`: `agent.membership`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MembershipView {
    /// Members the book has an introduction of.
    pub members: usize,
    /// Keys the book has a removal of.
    pub removals: usize,
    /// Records taken in, by outcome (`new`, `duplicate`, `stale`,
    /// `bad_signature`, `not_trusted`, …), since the book was made.
    pub records: BTreeMap<String, u64>,
    /// Per direct peer (its key): records, accepted, refused, flood, and
    /// its share of the book.
    pub peers: BTreeMap<String, PeerCounts>,
}

/// Whether a counter of [`MembershipView::records`] counts refusals
/// worth showing (a record about this node itself is refused as a matter
/// of course: every member announces its peers).
pub fn is_refusal(what: &str) -> bool {
    !matches!(what, "new" | "duplicate" | "own_key")
}

/// What one direct peer brought: counted per peer, so one member's
/// flood shows as its own (`status --json`: `agent.membership.peers`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCounts {
    /// `record` messages received from it.
    pub records: u64,
    /// New events of its accepted.
    pub new: u64,
    /// Its records refused (any reason).
    pub refused: u64,
    /// Its new events refused past its budget a minute.
    pub flood: u64,
    /// Subjects whose kept copy it signed (its share of the book).
    pub kept: usize,
}

/// The auto-relay as `status` shows it (`status --json`: the agent's
/// `auto_relay` object).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RelayView {
    /// `--relay-after`.
    pub after_secs: u64,
    /// Per peer the agent looks after or leaves alone, by key order.
    pub peers: Vec<RelayPeerView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RelayPeerView {
    /// The peer's name, filled in by `status` from the config.
    pub peer: Option<String>,
    pub public_key: String,
    /// `relayed`: the agent routed it through `via`, a direct probe runs;
    /// `stale`: no direct handshake, relayed once stale for `after_secs`
    /// while a candidate exists; `pinned`: placed by hand with `wgp2p
    /// relay`, the agent leaves it alone.
    pub state: &'static str,
    /// The relay's key (`relayed`), and its name from the config.
    pub via: Option<String>,
    pub via_name: Option<String>,
    /// Seconds in this state (`relayed`, `stale`).
    pub secs: Option<u64>,
}

/// Why the agent moved a live endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No handshake for longer than [`STALE_AFTER`] (or never).
    Stale,
    /// The name resolves elsewhere than at the last pass, and the live
    /// endpoint was that last resolution.
    NameMoved,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Stale => "stale (no handshake for 135 s)",
            Reason::NameMoved => "the name moved",
        }
    }
}
