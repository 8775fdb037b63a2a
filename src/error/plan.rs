//! What planning refuses, as values: each variant carries what the message
//! needs and no text of its own. The one-line messages and the advice
//! (which name commands like `wgp2p status`) are rendered in
//! `commands/refusals.rs`; the exit code is `Error::code` (src/error.rs).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::types::{Endpoint, PeerName, PeerSelector, PublicKey};

/// Which check refused: the same rule reads a little differently for a
/// peer with its own tunnel (`add-peer`, `relay NAME direct`) and for one
/// routed through a relay (`relay NAME via RELAY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    Direct,
    Relayed,
}

/// Whose routes a route-safety refusal is about, for its advice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutesOf {
    /// A direct peer (`add-peer`, `provision-peer`, an introduction).
    Direct,
    /// A peer whose addresses would join this relay's routes.
    Via(String),
    /// A relayed peer made direct again (`relay NAME direct`).
    Restored,
}

/// Who routes a network a roster entry also routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOwner {
    ThisNode,
    /// Another roster entry, by its label (`roster.toml entry #3 ("x")`).
    Entry(String),
    /// A peer of the config the roster does not manage, by display name.
    Kept(String),
}

/// What two roster entries repeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repeat {
    Key(PublicKey),
    /// The same name, with these two keys.
    Name(PublicKey, PublicKey),
    Address(IpAddr),
}

/// What a roster entry with this node's key says differently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnDifference {
    Name { theirs: PeerName, ours: PeerName },
    Address { theirs: IpAddr, ours: IpAddr },
    Endpoint { theirs: Endpoint, ours: Endpoint },
}

/// A request that planning refuses. Peers are named by their display name
/// (`PeerEntry::display_name`), roster entries by `Roster::label`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The key is this node's own.
    OwnKey { key: PublicKey, tunnel: Tunnel },
    /// The name or key is a peer reached through a relay.
    RelayedPeer { peer: String, via: String },
    /// Another key already has this name.
    NameTaken {
        name: String,
        key: PublicKey,
        tunnel: Tunnel,
    },
    /// The key is already a peer of another name.
    KeyNamedOtherwise { key: PublicKey, name: String },
    /// A network contains this node's own address.
    OwnAddress {
        net: IpNet,
        own: IpAddr,
        tunnel: Tunnel,
    },
    /// A network overlaps one another peer routes.
    Overlap {
        net: IpNet,
        other: IpNet,
        peer: String,
        tunnel: Tunnel,
    },
    /// No section or relay line names the peer.
    NotFound {
        selector: PeerSelector,
        conf: String,
    },
    /// No section names the relay.
    RelayNotFound {
        selector: PeerSelector,
        conf: String,
    },
    /// Removing a peer that relays others.
    RelaysOthers { peer: String, relayed: Vec<String> },
    /// Relaying a peer that relays others.
    RelayerRelayed { peer: String },
    /// The relay is this node.
    RelayIsThisNode,
    /// The relay is the peer itself.
    RelayThroughItself { peer: String },
    /// The relay is reached through a relay itself.
    RelayIsRelayed { relay: String, via: String },
    /// `relay NAME direct` of a direct peer.
    AlreadyDirect { peer: String },
    /// `import-key` of a key whose public key is a peer's.
    ImportedKeyIsPeer { key: PublicKey, peer: String },
    /// A hand-added peer whose key a roster entry lists (without `--adopt`).
    HandAddedInRoster {
        peer: String,
        key: PublicKey,
        entry: String,
        /// The roster's path as given, for the `sync --adopt` to run.
        roster: String,
    },
    /// A peer sync would remove still relays another.
    RemovedPeerRelays { peer: String, relayed: String },
    /// Two roster entries repeat a key, name or address.
    RepeatedEntry {
        first: String,
        second: String,
        repeat: Repeat,
    },
    /// A roster entry has this node's name with another key.
    OwnNameOtherKey {
        entry: String,
        name: PeerName,
        theirs: PublicKey,
        ours: PublicKey,
    },
    /// A roster entry with this node's key says something else about it.
    OwnEntryDiffers {
        entry: String,
        difference: OwnDifference,
    },
    /// A roster entry takes the name of a peer the roster does not manage.
    KeptPeerName {
        entry: String,
        name: PeerName,
        relayed: bool,
        key: PublicKey,
    },
    /// A roster entry routes a network someone else routes.
    RosterOverlap {
        entry: String,
        net: IpNet,
        other: IpNet,
        owner: RouteOwner,
    },
    /// A default route from an entry that is not an exit node.
    DefaultRoute { entry: String, net: IpNet },
    /// An address or network outside the space the entry's role may
    /// claim (`plan::routes::space`); `allowed` says what it may.
    OutsideSpace {
        entry: String,
        net: IpNet,
        allowed: String,
    },
    /// `trust` of this node's own key.
    TrustOwnKey { key: PublicKey },
    /// `untrust` of a member no trust line names.
    NotTrusted { selector: PeerSelector },
    /// An introduction of a key that is already a peer, otherwise.
    IntroductionChangesPeer {
        peer: String,
        key: PublicKey,
        /// The peer's name as written, if any.
        name: Option<String>,
        nets: Vec<IpNet>,
    },
    /// A removal record for a peer no introduction added.
    NotIntroduced { peer: String },
    /// An introduction of an address outside this node's VPN network.
    IntroductionOutsideVpn {
        peer: String,
        ip: IpAddr,
        network: IpNet,
    },
    /// A route over an endpoint or this host's own address or gateway.
    CoversProtected {
        entry: String,
        net: IpNet,
        what: String,
        ip: IpAddr,
    },
    /// A roster entry's own address is an endpoint or an address of this
    /// host (no role lets it be).
    AddressIsProtected {
        entry: String,
        ip: IpAddr,
        what: String,
    },
    /// A peer's own address is an endpoint or an address of this host
    /// (`add-peer`, `provision-peer`, `relay NAME direct`).
    PeerAddressIsProtected {
        peer: String,
        ip: IpAddr,
        what: String,
    },
    /// A peer's network covers an endpoint or an address of this host.
    PeerRouteCovers {
        peer: String,
        net: IpNet,
        ip: IpAddr,
        what: String,
        of: RoutesOf,
    },
}
