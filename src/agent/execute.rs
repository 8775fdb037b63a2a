//! The executor: carries out what a pass decided, in one place.
//!
//! - Log lines, messages to peers' agents (each encoded once) and pokes
//!   through the tunnel are done as they come.
//! - Live-only changes go through [`apply_live`]: one lock (waited for at
//!   most [`LOCK_WAIT`]), one read of the config and one dump of the
//!   device, each change checked again against both (a human or a command
//!   may have changed either since the pass looked), then one device call.
//! - Config changes go through [`commit_one`]: under the lock, planned
//!   again from the config as it is then, and committed like a command's
//!   (`commit`: journal, atomic files, the live change or the files put
//!   back).
//!
//! No DNS lookup happens under the lock: the names a change may need are
//! resolved before it is taken, with a deadline, and a name that did not
//! resolve in time fails that change (tried again at the next pass).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::action::{Action, Commit, Live, Outcome};
use super::log::Log;
use super::snapshot::{RESOLVE_DEADLINE, Snapshot, resolve_all};
use super::{endpoints, hints, link, protocol, relay, roam};
use crate::commit::commit;
use crate::context::Context;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::plan::membership::{Introduced, introduce, remove_introduced};
use crate::types::{Endpoint, Host, PublicKey};
use crate::wg::Delta;

/// What the agent's loop waits for between passes.
#[derive(Debug)]
pub enum Event {
    /// SIGTERM or SIGINT: stop.
    Signal(i32),
    /// A message from a peer's agent (authenticated, rate-limited, decoded).
    Message(link::Incoming),
}

/// The longest the agent waits for the config lock (a command holding it
/// longer makes the change wait for the next pass).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The agents' socket, opened (and opened again) as the interface comes
/// and goes.
pub struct Wire {
    link: Option<link::Link>,
    counters: Arc<link::Counters>,
    events: mpsc::Sender<Event>,
    /// Why the socket cannot be opened, said once until it changes.
    problem: Option<String>,
}

impl Wire {
    pub fn new(events: mpsc::Sender<Event>) -> Wire {
        Wire {
            link: None,
            counters: Arc::default(),
            events,
            problem: None,
        }
    }

    /// The socket's status for the state file.
    pub fn status(&self) -> crate::status::LinkStatus {
        let dropped = protocol::DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), self.counters.dropped(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        crate::status::LinkStatus {
            listening: self.link.as_ref().map(|l| l.local),
            accepted: self.counters.accepted(),
            dropped,
        }
    }

    /// Keep the open socket when it still fits the snapshot (same address,
    /// same interface instance, thread alive) and update who may send;
    /// else open a new one. `Some(true)`: opened now; `None`: it cannot be
    /// (said once, tried again at each pass).
    pub fn ensure(&mut self, ctx: &Context, snap: &Snapshot, log: &Log) -> Option<bool> {
        match self.open(ctx, snap) {
            Ok(opened) => {
                self.problem = None;
                if let Some(link) = self.link.as_ref().filter(|_| opened) {
                    log.line(&format!("listening for peers' agents on {}", link.local));
                }
                Some(opened)
            }
            Err(problem) => {
                self.link = None;
                if self.problem.as_ref() != Some(&problem) {
                    log.line(&format!(
                        "cannot listen for peers' agents: {problem}; trying again at each pass"
                    ));
                    self.problem = Some(problem);
                }
                None
            }
        }
    }

    fn open(&mut self, ctx: &Context, snap: &Snapshot) -> std::result::Result<bool, String> {
        let senders = link::Senders::from_config(&snap.entries);
        let iface = ctx.paths.iface.as_str();
        let ip = snap
            .vpn_ip()
            .ok_or_else(|| "this node has no VPN address".to_string())?;
        let ifindex = link::interface_index(iface)
            .map_err(|e| format!("interface {iface} is not up ({e})"))?;
        if let Some(link) = &self.link
            && link.local.ip() == ip
            && link.ifindex == ifindex
            && link.alive()
        {
            link.set_senders(senders);
            return Ok(false);
        }
        self.link = None;
        let opened = link::Link::open(
            iface,
            ip,
            senders,
            Arc::clone(&self.counters),
            lookup(ctx),
            self.events.clone(),
            Event::Message,
        )
        .map_err(|e| {
            format!(
                "cannot bind {}: {e}",
                SocketAddr::new(ip, protocol::AGENT_PORT)
            )
        })?;
        self.link = Some(opened);
        Ok(true)
    }

    /// Send one message to the agents of `to` (encoded once). A failure is
    /// not worth a log line (the peer may be unreachable: that is what the
    /// agent is for). The number of datagrams sent.
    pub fn send(
        &self,
        agents: &HashMap<PublicKey, SocketAddr>,
        to: &[PublicKey],
        message: &protocol::Message,
    ) -> usize {
        let Some(link) = &self.link else {
            return 0;
        };
        let Ok(datagram) = protocol::encode(message) else {
            return 0;
        };
        to.iter()
            .filter_map(|k| agents.get(k))
            .filter(|address| link.send_datagram(**address, &datagram).is_ok())
            .count()
    }
}

/// How the receive thread answers `where`: from the live device, read
/// afresh for each question (never from a pass-old copy).
fn lookup(ctx: &Context) -> link::Lookup {
    let device: Option<crate::device::WgDevice> = match ctx.service_kind {
        crate::service::Kind::None => None,
        _ => Some(crate::device::WgDevice::new(ctx.paths.iface.clone())),
    };
    Box::new(move |key| {
        let Some(Ok(Some(live))) = device.as_ref().map(Device::live) else {
            return (None, None);
        };
        let Some(peer) = live.peers.iter().find(|p| p.public_key == key) else {
            return (None, None);
        };
        let age = peer.last_handshake.map(|t| {
            std::time::SystemTime::now()
                .duration_since(t)
                .unwrap_or_default()
                .as_secs()
        });
        (peer.endpoint, age)
    })
}

/// Carry out `actions`: logs, sends and pokes in order, then the live
/// changes (one [`apply_live`]), then the commits one by one. Returns each
/// live change and commit with what became of it.
pub fn execute(
    ctx: &Context,
    snap: &Snapshot,
    wire: &Wire,
    actions: Vec<Action>,
    log: &Log,
) -> Vec<(Action, Result<Outcome>)> {
    let mut lives = Vec::new();
    let mut commits = Vec::new();
    for action in actions {
        match action {
            Action::Log(line) => log.line(&line),
            Action::Send { to, message } => {
                wire.send(&snap.agents, &to, &message);
            }
            Action::Poke(targets) => {
                roam::poke(&targets);
            }
            Action::Live(change) => lives.push(change),
            Action::Commit(change) => commits.push(change),
        }
    }
    if lives.is_empty() && commits.is_empty() {
        return Vec::new();
    }
    let resolved = resolve_needed(snap, &lives, &commits);
    let mut done = Vec::new();
    if !lives.is_empty() {
        let outcomes = apply_live(ctx, &lives, &resolved);
        done.extend(lives.into_iter().map(Action::Live).zip(outcomes));
    }
    for change in commits {
        let outcome = commit_one(ctx, &change, &resolved);
        done.push((Action::Commit(change), outcome));
    }
    done
}

/// What the DNS names the changes may need resolve to: the snapshot's,
/// and the others resolved now (no lock is held), within
/// [`RESOLVE_DEADLINE`].
fn resolve_needed(
    snap: &Snapshot,
    lives: &[Live],
    commits: &[Commit],
) -> HashMap<String, Vec<SocketAddr>> {
    let keys = lives
        .iter()
        .filter_map(|l| match l {
            Live::ArmProbe(k) => Some(*k),
            Live::Endpoint(_) | Live::Hint { .. } | Live::DropProbe(_) => None,
        })
        .chain(commits.iter().flat_map(|c| match c {
            Commit::Relay { peer, via, .. } | Commit::Direct { peer, via } => vec![*peer, *via],
            Commit::Introduce { .. } | Commit::Remove { .. } => Vec::new(),
        }));
    let mut wanted: Vec<Endpoint> = keys.flat_map(|k| endpoints_of(snap, &k)).collect();
    wanted.extend(commits.iter().filter_map(|c| match c {
        Commit::Introduce { introduction, .. } => introduction.endpoint.clone(),
        _ => None,
    }));
    let mut resolved = snap.resolved.clone();
    wanted.retain(|e| matches!(e.host(), Host::Dns(_)) && !resolved.contains_key(&e.to_string()));
    if !wanted.is_empty() {
        resolved.extend(resolve_all(wanted, RESOLVE_DEADLINE));
    }
    resolved
}

/// The endpoints the config gives a peer (direct, or in a relay's record).
fn endpoints_of(snap: &Snapshot, key: &PublicKey) -> Vec<Endpoint> {
    snap.entries
        .iter()
        .flat_map(|e| {
            let direct = (e.public_key == *key)
                .then_some(e.endpoint.as_ref())
                .flatten();
            let relayed = e
                .relayed
                .iter()
                .filter(|r| r.public_key == *key)
                .filter_map(|r| r.endpoint.as_ref());
            direct.into_iter().chain(relayed)
        })
        .filter_map(crate::types::WrittenEndpoint::parsed)
        .collect()
}

/// Replace each DNS endpoint of `deltas` by what it resolved to before the
/// lock was taken; a name that did not resolve fails the change.
fn pin_endpoints(deltas: &mut [Delta], resolved: &HashMap<String, Vec<SocketAddr>>) -> Result<()> {
    for delta in deltas {
        if let Delta::UpsertPeer {
            endpoint: Some(endpoint),
            ..
        } = delta
            && matches!(endpoint.host(), Host::Dns(_))
        {
            let text = endpoint.to_string();
            let Some(address) = resolved.get(&text).and_then(|a| a.first()) else {
                return Err(Error::System(format!(
                    "cannot resolve {text} within {} s: expected a name that resolves; trying again at the next pass",
                    RESOLVE_DEADLINE.as_secs()
                )));
            };
            *endpoint = Endpoint::from(*address);
        }
    }
    Ok(())
}

/// Carry out live-only changes: under the lock (waited for at most
/// [`LOCK_WAIT`]), with the config read once and the device dumped once,
/// each change checked again (a change whose condition no longer holds is
/// [`Outcome::Stale`]), then every change that holds in one device call.
pub fn apply_live(
    ctx: &Context,
    changes: &[Live],
    resolved: &HashMap<String, Vec<SocketAddr>>,
) -> Vec<Result<Outcome>> {
    match try_apply_live(ctx, changes, resolved) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            let text = e.to_string();
            changes
                .iter()
                .map(|_| Err(Error::System(text.clone())))
                .collect()
        }
    }
}

fn try_apply_live(
    ctx: &Context,
    changes: &[Live],
    resolved: &HashMap<String, Vec<SocketAddr>>,
) -> Result<Vec<Result<Outcome>>> {
    let (_lock, node) = ctx.lock_and_load_within(LOCK_WAIT)?;
    let entries = node.peers()?;
    let device = ctx.device();
    let Some(live) = device.live()? else {
        return Ok(changes.iter().map(|_| Ok(Outcome::Stale)).collect());
    };
    let now = std::time::SystemTime::now();
    let mut outcomes = Vec::with_capacity(changes.len());
    let mut deltas = Vec::new();
    let mut applied = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        let planned = match change {
            // Only a peer that is live is touched: setting an endpoint on
            // a missing peer would create it.
            Live::Endpoint(refresh) => Ok(endpoints::plan(&entries, refresh)
                .filter(|_| {
                    live.peers
                        .iter()
                        .any(|p| p.public_key == refresh.public_key)
                })
                .map(|d| vec![d])),
            Live::Hint { peer, offer } => Ok(hints::try_deltas(
                &entries,
                &live,
                *peer,
                offer.endpoint,
                now,
            )),
            Live::ArmProbe(peer) => relay::arm_probe(&entries, &live, *peer),
            Live::DropProbe(peer) => relay::drop_probe(&entries, &live, *peer),
        };
        let planned = planned.and_then(|d| match d {
            Some(mut d) => pin_endpoints(&mut d, resolved).map(|()| Some(d)),
            None => Ok(None),
        });
        match planned {
            Ok(Some(d)) => {
                deltas.extend(d);
                applied.push(i);
                outcomes.push(Ok(Outcome::done("live")));
            }
            Ok(None) => outcomes.push(Ok(Outcome::Stale)),
            Err(e) => outcomes.push(Err(e)),
        }
    }
    if let Err(e) = device.apply(&deltas) {
        let text = e.to_string();
        for i in applied {
            outcomes[i] = Err(Error::System(text.clone()));
        }
    }
    Ok(outcomes)
}

/// Carry out one config change: under the lock (waited for at most
/// [`LOCK_WAIT`]), planned again from the config as it is, then committed.
pub fn commit_one(
    ctx: &Context,
    change: &Commit,
    resolved: &HashMap<String, Vec<SocketAddr>>,
) -> Result<Outcome> {
    let (_lock, mut node) = ctx.lock_and_load_within(LOCK_WAIT)?;
    let device = ctx.device();
    let done = |node: &crate::config::node::Node,
                doc: &crate::config::document::Document,
                mut deltas: Vec<Delta>| {
        pin_endpoints(&mut deltas, resolved)?;
        commit(node, doc, &deltas, device.as_ref()).map(|applied| applied.describe())
    };
    match change {
        Commit::Relay { peer, via, from } => {
            let own = crate::host::own(ctx, &node)?;
            let pins = crate::config::pins::read(&node.paths);
            let (doc, deltas) =
                relay::plan_relay(node.require_conf()?, &own, &pins, *peer, *via, *from)?;
            done(&node, &doc, deltas).map(Outcome::done)
        }
        Commit::Direct { peer, via } => {
            let own = crate::host::own(ctx, &node)?;
            let pins = crate::config::pins::read(&node.paths);
            let (doc, deltas) = relay::plan_direct(node.require_conf()?, &own, &pins, *peer, *via)?;
            done(&node, &doc, deltas).map(Outcome::done)
        }
        Commit::Introduce { introduction, .. } => {
            let own = crate::plan::membership::with_resolved_endpoints(
                crate::host::own(ctx, &node)?,
                resolved,
            );
            let doc = node.take_conf()?;
            match introduce(doc, &own, introduction)? {
                Introduced::Known => Ok(Outcome::done("already there")),
                Introduced::Add(new_doc, delta) => {
                    done(&node, &new_doc, vec![delta]).map(Outcome::done)
                }
            }
        }
        Commit::Remove { key, signer, .. } => {
            // Who may remove it is decided again on the config of now: a
            // peer re-pasted by hand since is the admin's.
            let own = crate::plan::Own::of(&node)?;
            let doc = node.take_conf()?;
            let standing = crate::plan::membership::standing(&doc, &own.public_key, key);
            let policy = crate::plan::membership::Policy::of(&doc);
            let is_peer = doc.peer(signer).is_some();
            if let Err(refusal) = crate::plan::membership::authority(
                &policy,
                signer,
                is_peer,
                crate::plan::membership::Kind::Removal,
                key,
                &standing,
            ) {
                return Err(crate::error::Error::Conflict(format!(
                    "removal of {key} by {signer} refused: {}",
                    refusal.why()
                )));
            }
            match remove_introduced(doc, key)? {
                None => Ok(Outcome::Done {
                    detail: "already gone",
                    name: None,
                }),
                Some((new_doc, delta, name)) => {
                    done(&node, &new_doc, vec![delta]).map(|detail| Outcome::Done {
                        detail,
                        name: Some(name),
                    })
                }
            }
        }
    }
}
