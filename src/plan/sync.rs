//! Sync planning: a roster (every node's entry) and this node's config give
//! the target peer set, which is checked as a whole, and then the smallest
//! change that reaches it (the new config and one batch of live deltas).
//!
//! Ownership: a peer whose section carries `# Source = roster` came from a
//! roster and is the roster's to update and remove. Every other peer (added
//! by hand, a provisioned device) stays as it is, unless `prune` says to
//! remove those missing from the roster; a hand-added peer whose key is in
//! the roster is refused unless `adopt` says the roster takes it over. A
//! peer the agent added from an introduction (`# Source = introduced by
//! …`) whose key is in the roster is taken over without `adopt`: the
//! roster is a human's list, and a human's line wins over an introduction
//! (its `introduced by` tag goes, so a member's removal no longer applies).
//!
//! Every step is a hash-map lookup per peer or per entry, so planning is
//! linear in the roster and config sizes (overlap checks look up each
//! network's at most 129 enclosing prefixes).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::document::{Document, keys};
use crate::config::node::{PeerEntry, Relayed, peers};
use crate::error::plan::{OwnDifference, PlanError, Repeat, RouteOwner};
use crate::error::{Error, Result};
use crate::plan::routes::{self, Needed, Routes, Unsafe};
use crate::plan::{AddPeer, Own, join_nets, same_nets};
use crate::types::{
    AllowedIps, Endpoint, PeerName, PublicKey, WrittenEndpoint, WrittenName, quoted,
};
use crate::wg::Delta;

/// The tag that marks a peer as the roster's: `# Source = roster`.
pub const SOURCE_TAG: &str = keys::TAG_SOURCE;
pub const SOURCE_ROSTER: &str = "roster";

/// What a roster entry may route besides its own address: the roles of
/// the route-safety rule (`plan::routes`), which `subnet_router = true` and
/// `exit_node = true` opt into; only an exit node may carry a default route.
pub use crate::plan::routes::Role;

/// One validated roster entry.
#[derive(Clone, Debug)]
pub struct RosterEntry {
    pub peer: AddPeer,
    pub role: Role,
}

/// A whole roster: where it came from (for messages) and its entries in
/// file order.
#[derive(Clone, Debug)]
pub struct Roster {
    pub source: String,
    pub entries: Vec<RosterEntry>,
}

impl Roster {
    /// `roster.toml entry #3 ("voyager")`: how messages name an entry.
    pub fn label(&self, index: usize) -> String {
        let name = self
            .entries
            .get(index)
            .map(|e| e.peer.name.to_string())
            .unwrap_or_default();
        format!("{} entry #{} ({})", self.source, index + 1, quoted(&name))
    }
}

/// This node as sync sees it: the roster may describe it, never change it.
pub struct ThisNode {
    pub own: Own,
    /// The name `export` gives this node.
    pub name: PeerName,
    /// The public endpoint this node knows for itself (saved by `install
    /// --endpoint` or from `WGP2P_ENDPOINT`), if any.
    pub endpoint: Option<Endpoint>,
}

/// What the user allowed beyond the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Remove peers that are not the roster's and not in it.
    pub prune: bool,
    /// Let the roster take over hand-added peers whose key it lists.
    pub adopt: bool,
}

/// One line of the plan `sync` prints.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Add(String),
    /// Endpoint, addresses or keepalive change (and maybe the name).
    Update {
        name: String,
        renamed_from: Option<String>,
    },
    /// Only the name changes: the file, not the device.
    Rename {
        from: String,
        to: String,
    },
    Adopt(String),
    Remove(String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Add(name) => write!(f, "+ add {name}"),
            Change::Update {
                name,
                renamed_from: None,
            } => write!(f, "~ update {name}"),
            Change::Update {
                name,
                renamed_from: Some(old),
            } => write!(f, "~ update {name} (renamed from {old})"),
            Change::Rename { from, to } => write!(f, "~ rename {from} -> {to}"),
            Change::Adopt(name) => write!(f, "~ adopt {name} (now managed by the roster)"),
            Change::Remove(name) => write!(f, "- remove {name}"),
        }
    }
}

/// The result: the new config, the live change, the lines to print.
pub struct Plan {
    pub doc: Document,
    pub deltas: Vec<Delta>,
    pub changes: Vec<Change>,
}

/// Whether a peer section is marked as the roster's.
pub fn is_managed(doc: &Document, entry: &PeerEntry) -> bool {
    doc.peer(&entry.public_key)
        .is_some_and(|s| s.tags(SOURCE_TAG).contains(&SOURCE_ROSTER))
}

/// Who routes a network, for overlap messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    ThisNode,
    Entry(usize),
    /// A peer kept as it is (index into the config's peers).
    Kept(usize),
}

/// What happens to a direct peer of the config.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Manage { entry: usize, adopt: bool },
    Remove,
}

/// Plan a sync of `doc` to `roster`.
#[allow(
    clippy::too_many_lines,
    reason = "the fates, target and derivation steps share their tables; split, each would take them all"
)]
pub fn plan(doc: &Document, me: &ThisNode, roster: &Roster, options: Options) -> Result<Plan> {
    let index = RosterIndex::build(roster)?;
    let own_entry = check_own_entry(me, roster, &index)?;
    let existing = peers(doc)?;

    // Decide every existing peer's fate.
    let mut fates = Vec::with_capacity(existing.len());
    let mut present: HashSet<PublicKey> = HashSet::with_capacity(existing.len());
    for peer in &existing {
        present.insert(peer.public_key);
        let in_roster = index
            .by_key
            .get(&peer.public_key)
            .copied()
            .filter(|i| Some(*i) != own_entry);
        let managed = is_managed(doc, peer);
        let introduced = crate::plan::membership::is_introduced(doc, &peer.public_key);
        let fate = match in_roster {
            Some(entry) if managed => Fate::Manage {
                entry,
                adopt: false,
            },
            Some(entry) if options.adopt || introduced => Fate::Manage { entry, adopt: true },
            Some(entry) => {
                return Err(PlanError::HandAddedInRoster {
                    peer: peer.display_name().to_string(),
                    key: peer.public_key,
                    entry: roster.label(entry),
                    roster: roster.source.clone(),
                }
                .into());
            }
            None if managed || options.prune => Fate::Remove,
            None => Fate::Keep,
        };
        fates.push(fate);
    }
    // Relayed peers: the roster says who, not how, so one the roster lists
    // stays relayed as it is; one it does not list goes only with `prune`
    // (its `# Relay` line does not say where it came from).
    let mut relayed_removed: HashSet<PublicKey> = HashSet::new();
    for (peer, fate) in existing.iter().zip(&fates) {
        for relayed in &peer.relayed {
            present.insert(relayed.public_key);
            let listed = index
                .by_key
                .get(&relayed.public_key)
                .is_some_and(|i| Some(*i) != own_entry);
            if !listed && options.prune {
                relayed_removed.insert(relayed.public_key);
            } else if *fate == Fate::Remove {
                return Err(PlanError::RemovedPeerRelays {
                    peer: peer.display_name().to_string(),
                    relayed: relayed.display_name().to_string(),
                }
                .into());
            }
        }
    }
    // The allowed IPs each staying direct peer ends with.
    let mut target_nets: Vec<Option<Vec<IpNet>>> = Vec::with_capacity(existing.len());
    for (peer, fate) in existing.iter().zip(&fates) {
        target_nets.push(match fate {
            Fate::Remove => None,
            Fate::Manage { entry, .. } => {
                let mut nets = roster.entries[*entry].peer.allowed_ips();
                let kept = peer
                    .relayed
                    .iter()
                    .filter(|r| !relayed_removed.contains(&r.public_key));
                for net in kept.flat_map(|r| r.nets.iter()) {
                    if !nets.contains(net) {
                        nets.push(*net);
                    }
                }
                Some(nets)
            }
            Fate::Keep => {
                let gone: HashSet<IpNet> = peer
                    .relayed
                    .iter()
                    .filter(|r| relayed_removed.contains(&r.public_key))
                    .flat_map(|r| r.nets.iter().copied())
                    .collect();
                Some(
                    peer.allowed_ips
                        .iter()
                        .filter(|n| !gone.contains(n))
                        .copied()
                        .collect(),
                )
            }
        });
    }
    let added: Vec<usize> = (0..roster.entries.len())
        .filter(|i| Some(*i) != own_entry && !present.contains(&roster.entries[*i].peer.public_key))
        .collect();

    check_target(
        me,
        roster,
        own_entry,
        &existing,
        &fates,
        &target_nets,
        &relayed_removed,
    )?;

    // Derive the new config and the live change.
    let mut new_doc = doc.clone();
    let mut deltas = Vec::new();
    let mut removals = Vec::new();
    let mut removes = Vec::new();
    let mut others = Vec::new();
    for ((peer, fate), nets) in existing.iter().zip(&fates).zip(&target_nets) {
        match (fate, nets) {
            (Fate::Remove, _) => {
                removals.push(peer.public_key);
                deltas.push(Delta::RemovePeer(peer.public_key));
                removes.push(Change::Remove(peer.display_name().to_string()));
            }
            (Fate::Manage { entry, adopt }, Some(nets)) => {
                let entry = &roster.entries[*entry].peer;
                let before = new_doc.peer(&peer.public_key).cloned();
                if *adopt {
                    new_doc.remove_tags(&peer.public_key, SOURCE_TAG, |v| {
                        v.starts_with(crate::plan::membership::INTRODUCED_BY)
                    });
                    new_doc.add_header_tag(&peer.public_key, SOURCE_TAG, SOURCE_ROSTER);
                }
                for r in &peer.relayed {
                    if relayed_removed.contains(&r.public_key) {
                        drop_relay_tag(&mut new_doc, &peer.public_key, r);
                        removes.push(Change::Remove(r.display_name().to_string()));
                    }
                }
                write_peer(&mut new_doc, &peer.public_key, entry, nets);
                if new_doc.peer(&peer.public_key) == before.as_ref() {
                    continue;
                }
                let live_changed = peer.endpoint.as_ref().map(WrittenEndpoint::as_written)
                    != Some(entry.endpoint.to_string().as_str())
                    || !same_nets(&peer.allowed_ips, nets)
                    || peer.keepalive.filter(|k| *k > 0) != keepalive(entry);
                if live_changed {
                    deltas.push(Delta::UpsertPeer {
                        public_key: entry.public_key,
                        endpoint: Some(entry.endpoint.clone()),
                        allowed_ips: nets.clone(),
                        keepalive: keepalive(entry),
                    });
                }
                let name = entry.name.to_string();
                let change = match peer.name.as_ref().map(WrittenName::as_str) {
                    _ if *adopt => Change::Adopt(name),
                    Some(old) if old != name && !live_changed => Change::Rename {
                        from: old.to_string(),
                        to: name,
                    },
                    Some(old) if old != name => Change::Update {
                        renamed_from: Some(old.to_string()),
                        name,
                    },
                    _ => Change::Update {
                        name,
                        renamed_from: None,
                    },
                };
                others.push(change);
            }
            (Fate::Keep, Some(nets)) => {
                let dropped: Vec<&Relayed> = peer
                    .relayed
                    .iter()
                    .filter(|r| relayed_removed.contains(&r.public_key))
                    .collect();
                if dropped.is_empty() {
                    continue;
                }
                for r in &dropped {
                    drop_relay_tag(&mut new_doc, &peer.public_key, r);
                    removes.push(Change::Remove(r.display_name().to_string()));
                }
                new_doc.set_peer(&peer.public_key, keys::ALLOWED_IPS, &join_nets(nets));
                deltas.push(Delta::UpsertPeer {
                    public_key: peer.public_key,
                    endpoint: None,
                    allowed_ips: nets.clone(),
                    keepalive: peer.keepalive,
                });
            }
            (_, None) => {}
        }
    }
    // Relayed peers of removed relays go with their relay's section.
    for (peer, fate) in existing.iter().zip(&fates) {
        if *fate == Fate::Remove {
            for r in &peer.relayed {
                removes.push(Change::Remove(r.display_name().to_string()));
            }
        }
    }
    for i in &added {
        let entry = &roster.entries[*i].peer;
        new_doc.append_peer(&entry.public_key);
        new_doc.add_header_tag(&entry.public_key, SOURCE_TAG, SOURCE_ROSTER);
        write_peer(&mut new_doc, &entry.public_key, entry, &entry.allowed_ips());
        deltas.push(Delta::UpsertPeer {
            public_key: entry.public_key,
            endpoint: Some(entry.endpoint.clone()),
            allowed_ips: entry.allowed_ips(),
            keepalive: keepalive(entry),
        });
        others.push(Change::Add(entry.name.to_string()));
    }
    // Sections are found by key, so the order of removal does not matter.
    for key in removals {
        new_doc.remove_peer(&key);
    }
    // Removals are printed first, then updates in file order, then adds.
    removes.append(&mut others);
    Ok(Plan {
        doc: new_doc,
        deltas,
        changes: removes,
    })
}

/// Remove the `# Relay = NAME KEY …` line of `relayed` from a relay's section.
fn drop_relay_tag(doc: &mut Document, relay: &PublicKey, relayed: &Relayed) {
    let key = relayed.public_key.to_string();
    doc.remove_tags(relay, keys::TAG_RELAY, |v| {
        v.split_whitespace().nth(1) == Some(key.as_str())
    });
}

fn keepalive(entry: &AddPeer) -> Option<u16> {
    Some(entry.keepalive_or_default()).filter(|k| *k > 0)
}

/// Write a roster entry's values into a peer section, as `add-peer` does.
fn write_peer(doc: &mut Document, key: &PublicKey, entry: &AddPeer, nets: &[IpNet]) {
    let keepalive = entry.keepalive_or_default();
    doc.set_name(key, entry.name.as_str());
    doc.set_peer(key, keys::ENDPOINT, &entry.endpoint.to_string());
    doc.set_peer(key, keys::ALLOWED_IPS, &join_nets(nets));
    doc.set_peer(key, keys::PERSISTENT_KEEPALIVE, &keepalive.to_string());
}

/// The roster's entries by key, name and address; a repeat of any of them
/// is refused with both entries named.
struct RosterIndex<'a> {
    by_key: HashMap<PublicKey, usize>,
    by_name: HashMap<&'a str, usize>,
}

impl<'a> RosterIndex<'a> {
    fn build(roster: &'a Roster) -> Result<RosterIndex<'a>> {
        let n = roster.entries.len();
        let mut by_key = HashMap::with_capacity(n);
        let mut by_name = HashMap::with_capacity(n);
        let mut by_address: HashMap<IpAddr, usize> = HashMap::with_capacity(n);
        let both = |first: usize, second: usize, repeat: Repeat| -> Error {
            PlanError::RepeatedEntry {
                first: roster.label(first),
                second: roster.label(second),
                repeat,
            }
            .into()
        };
        for (i, entry) in roster.entries.iter().enumerate() {
            let peer = &entry.peer;
            if let Some(first) = by_key.insert(peer.public_key, i) {
                return Err(both(first, i, Repeat::Key(peer.public_key)));
            }
            if let Some(first) = by_name.insert(peer.name.as_str(), i) {
                return Err(both(
                    first,
                    i,
                    Repeat::Name(roster.entries[first].peer.public_key, peer.public_key),
                ));
            }
            if let Some(first) = by_address.insert(peer.peer_ip.ip(), i) {
                return Err(both(first, i, Repeat::Address(peer.peer_ip.ip())));
            }
        }
        Ok(RosterIndex { by_key, by_name })
    }
}

/// The entry that describes this node (by key or by name) must describe
/// it exactly: a roster cannot change this node's key, address or endpoint.
fn check_own_entry(me: &ThisNode, roster: &Roster, index: &RosterIndex) -> Result<Option<usize>> {
    let by_key = index.by_key.get(&me.own.public_key).copied();
    if let Some(i) = index.by_name.get(me.name.as_str()).copied()
        && by_key != Some(i)
    {
        return Err(PlanError::OwnNameOtherKey {
            entry: roster.label(i),
            name: me.name.clone(),
            theirs: roster.entries[i].peer.public_key,
            ours: me.own.public_key,
        }
        .into());
    }
    let Some(i) = by_key else {
        return Ok(None);
    };
    let entry = &roster.entries[i].peer;
    let differs = |difference: OwnDifference| -> Error {
        PlanError::OwnEntryDiffers {
            entry: roster.label(i),
            difference,
        }
        .into()
    };
    if entry.name != me.name {
        return Err(differs(OwnDifference::Name {
            theirs: entry.name.clone(),
            ours: me.name.clone(),
        }));
    }
    if entry.peer_ip.ip() != me.own.address.ip() {
        return Err(differs(OwnDifference::Address {
            theirs: entry.peer_ip.ip(),
            ours: me.own.address.ip(),
        }));
    }
    if let Some(ours) = &me.endpoint
        && *ours != entry.endpoint
    {
        return Err(differs(OwnDifference::Endpoint {
            theirs: entry.endpoint.clone(),
            ours: ours.clone(),
        }));
    }
    Ok(Some(i))
}

/// Every rule on the target peer set: names unique, no two peers routing
/// overlapping networks, no entry address that is an endpoint or this
/// host's, no extra route over one unless the entry opts in.
#[allow(
    clippy::too_many_lines,
    reason = "every rule on the target set in one place, in the order the README gives them"
)]
fn check_target(
    me: &ThisNode,
    roster: &Roster,
    own_entry: Option<usize>,
    existing: &[PeerEntry],
    fates: &[Fate],
    target_nets: &[Option<Vec<IpNet>>],
    relayed_removed: &HashSet<PublicKey>,
) -> Result<()> {
    let wanted = |i: &usize| Some(*i) != own_entry;
    // Names: a roster entry's name may not be a kept peer's with another key.
    let mut kept_names: HashMap<&str, (PublicKey, bool)> = HashMap::new();
    for (peer, fate) in existing.iter().zip(fates) {
        if *fate == Fate::Keep
            && let Some(name) = peer.name.as_ref().map(WrittenName::as_str)
        {
            kept_names.insert(name, (peer.public_key, false));
        }
        if *fate != Fate::Remove {
            for r in peer
                .relayed
                .iter()
                .filter(|r| !relayed_removed.contains(&r.public_key))
            {
                if let Some(name) = &r.name {
                    kept_names.insert(name.as_str(), (r.public_key, true));
                }
            }
        }
    }
    for (i, entry) in roster.entries.iter().enumerate().filter(|(i, _)| wanted(i)) {
        if let Some(&(key, relayed)) = kept_names.get(entry.peer.name.as_str())
            && key != entry.peer.public_key
        {
            return Err(PlanError::KeptPeerName {
                entry: roster.label(i),
                name: entry.peer.name.clone(),
                relayed,
                key,
            }
            .into());
        }
    }

    // Routes: every network with who routes it. Default routes are kept
    // apart: longest-prefix match lets every other route win over them.
    let mut routes: HashMap<IpNet, Owner> = HashMap::new();
    let mut defaults: HashMap<IpNet, Owner> = HashMap::new();
    let describe = |owner: Owner| -> RouteOwner {
        match owner {
            Owner::ThisNode => RouteOwner::ThisNode,
            Owner::Entry(i) => RouteOwner::Entry(roster.label(i)),
            Owner::Kept(p) => RouteOwner::Kept(existing[p].display_name().to_string()),
        }
    };
    let clash = |net: &IpNet, a: Owner, other: &IpNet, b: Owner| -> Option<Error> {
        let (entry, net, other, b) = match (a, b) {
            (Owner::Entry(_), _) => (a, net, other, b),
            (_, Owner::Entry(_)) => (b, other, net, a),
            // Only what the roster brings is refused; the config's own
            // state is `doctor`'s to report.
            _ => return None,
        };
        let Owner::Entry(i) = entry else { return None };
        Some(
            PlanError::RosterOverlap {
                entry: roster.label(i),
                net: *net,
                other: *other,
                owner: describe(b),
            }
            .into(),
        )
    };
    let mut insert = |net: IpNet, owner: Owner| -> Result<()> {
        let table = if net.prefix_len() == 0 {
            &mut defaults
        } else {
            &mut routes
        };
        match table.get(&net) {
            Some(&other) if other != owner => match clash(&net, owner, &net, other) {
                Some(err) => Err(err),
                None => Ok(()),
            },
            Some(_) => Ok(()),
            None => {
                table.insert(net, owner);
                Ok(())
            }
        }
    };
    insert(me.own.address.host_route(), Owner::ThisNode)?;
    for (p, nets) in target_nets.iter().enumerate() {
        let Some(nets) = nets else { continue };
        let owner = match fates[p] {
            Fate::Manage { entry, .. } => Owner::Entry(entry),
            _ => Owner::Kept(p),
        };
        for net in nets {
            insert(*net, owner)?;
        }
    }
    let present: HashSet<PublicKey> = existing
        .iter()
        .flat_map(|p| std::iter::once(p.public_key).chain(p.relayed.iter().map(|r| r.public_key)))
        .collect();
    for (i, entry) in roster.entries.iter().enumerate().filter(|(i, _)| wanted(i)) {
        if present.contains(&entry.peer.public_key) {
            continue;
        }
        for net in entry.peer.allowed_ips() {
            insert(net, Owner::Entry(i))?;
        }
    }
    // Any two networks that overlap are nested: look up each one's
    // enclosing prefixes.
    for (net, owner) in &routes {
        for len in 1..net.prefix_len() {
            let Ok(outer) = IpNet::new(net.network(), len).map(|n| n.trunc()) else {
                continue;
            };
            if let Some(&other) = routes.get(&outer)
                && other != *owner
                && let Some(err) = clash(net, *owner, &outer, other)
            {
                return Err(err);
            }
        }
    }

    // Route safety of each entry's extra networks.
    for (i, entry) in roster.entries.iter().enumerate().filter(|(i, _)| wanted(i)) {
        for net in entry
            .peer
            .extra_allowed_ips
            .iter()
            .flat_map(AllowedIps::nets)
        {
            if net.prefix_len() == 0 && entry.role != Role::ExitNode {
                return Err(PlanError::DefaultRoute {
                    entry: roster.label(i),
                    net: *net,
                }
                .into());
            }
        }
    }
    // Route safety (`plan::routes`): the needed addresses are this host's
    // (in `own.host`, with this node's public endpoint), every entry's
    // endpoint and those of the config's peers that stay.
    let mut needed = Needed::new(&me.own.host);
    for (i, entry) in roster.entries.iter().enumerate() {
        needed.endpoint(Some(&entry.peer.endpoint), || {
            format!("the endpoint of {}", roster.label(i))
        });
    }
    let removed: HashSet<PublicKey> = existing
        .iter()
        .zip(target_nets)
        .filter(|(_, nets)| nets.is_none())
        .flat_map(|(peer, _)| {
            std::iter::once(peer.public_key).chain(peer.relayed.iter().map(|r| r.public_key))
        })
        .collect();
    needed.config_endpoints(existing, |key| {
        removed.contains(key) || relayed_removed.contains(key)
    });
    let checked: Vec<(usize, Vec<IpNet>)> = roster
        .entries
        .iter()
        .enumerate()
        .filter(|(i, _)| wanted(i))
        .map(|(i, e)| (i, e.peer.allowed_ips()))
        .collect();
    let routes: Vec<Routes<'_>> = checked
        .iter()
        .map(|(i, nets)| Routes {
            address: Some(roster.entries[*i].peer.peer_ip.host_route()),
            nets,
            role: roster.entries[*i].role,
        })
        .collect();
    match routes::check(&needed, &routes) {
        Ok(()) => space_of_entries(roster, me, &wanted),
        Err(Unsafe::Address { peer, ip, what }) => Err(PlanError::AddressIsProtected {
            entry: roster.label(checked[peer].0),
            ip,
            what,
        }
        .into()),
        Err(Unsafe::Covers {
            peer,
            net,
            ip,
            what,
        }) => Err(PlanError::CoversProtected {
            entry: roster.label(checked[peer].0),
            net,
            what,
            ip,
        }
        .into()),
    }
}

/// Route safety by address space (`plan::routes::space`): each entry's
/// address and networks lie in the space its role may claim.
fn space_of_entries(
    roster: &Roster,
    me: &ThisNode,
    wanted: &impl Fn(&usize) -> bool,
) -> Result<()> {
    let vpn = [me.own.address.network()];
    for (i, entry) in roster.entries.iter().enumerate().filter(|(i, _)| wanted(i)) {
        for net in entry.peer.allowed_ips() {
            if !routes::space(entry.role, &vpn, &net) {
                return Err(PlanError::OutsideSpace {
                    entry: roster.label(i),
                    net,
                    allowed: routes::allowed_space(entry.role, &vpn),
                }
                .into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
