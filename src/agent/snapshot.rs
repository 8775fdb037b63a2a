//! What one pass sees, observed once: the config (parsed once), the live
//! device (dumped once), this host's addresses, what the configured DNS
//! names resolve to (off the lock, with a deadline) and the time. Every
//! feature decides from the same snapshot; nothing in it changes while
//! they do.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::node::{Node, PeerEntry};
use crate::context::Context;
use crate::error::Result;
use crate::types::{Endpoint, Host, PublicKey};
use crate::wg::{LiveDevice, LivePeer};

/// The longest DNS resolution may take before the pass goes on without
/// what is still unresolved.
pub const RESOLVE_DEADLINE: Duration = Duration::from_secs(5);

/// How much of the world a pass looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The pass of every interval: everything, DNS and this host's
    /// addresses included.
    Full,
    /// Between passes (a config change, a record, an introduction due):
    /// the config and the device, no DNS, no addresses.
    Quick,
}

/// One observation of the world.
pub struct Snapshot {
    pub scope: Scope,
    pub node: Node,
    /// The config's peers (`[Peer]` sections with their relayed records).
    pub entries: Vec<PeerEntry>,
    /// The live interface; `None` when it is down.
    pub live: Option<LiveDevice>,
    /// The peers `relay-pins` names (placed by hand).
    pub pins: BTreeSet<PublicKey>,
    /// This host's addresses (full passes only).
    pub addresses: Option<Vec<IpAddr>>,
    /// What the config's DNS endpoints resolve to, by endpoint text (full
    /// passes only; a name that did not resolve in time is absent).
    pub resolved: HashMap<String, Vec<SocketAddr>>,
    pub now: SystemTime,
    pub mono: Instant,
    /// Unix seconds.
    pub unix: u64,
    /// Unix milliseconds (membership dates events so).
    pub unix_ms: u64,
    /// Each configured peer's agent address.
    pub agents: HashMap<PublicKey, SocketAddr>,
    /// The live peers, by key (indexes into `live.peers`).
    by_key: HashMap<PublicKey, usize>,
}

impl Snapshot {
    /// Look at the world once. No lock is taken: what is decided from this
    /// is checked again under the lock when it is carried out.
    pub fn observe(ctx: &Context, scope: Scope) -> Result<Snapshot> {
        let node = Node::load(ctx.paths.clone())?;
        let entries = node.peers()?;
        let live = ctx.device().live()?;
        let pins = crate::config::pins::read(&ctx.paths);
        let (addresses, resolved) = match scope {
            Scope::Full => (
                Some(crate::host::addresses(ctx.paths.iface.as_str())),
                resolve_all(dns_names(&entries), RESOLVE_DEADLINE),
            ),
            Scope::Quick => (None, HashMap::new()),
        };
        Ok(Snapshot::new(
            scope, node, entries, live, pins, addresses, resolved,
        ))
    }

    pub fn new(
        scope: Scope,
        node: Node,
        entries: Vec<PeerEntry>,
        live: Option<LiveDevice>,
        pins: BTreeSet<PublicKey>,
        addresses: Option<Vec<IpAddr>>,
        resolved: HashMap<String, Vec<SocketAddr>>,
    ) -> Snapshot {
        let by_key = live
            .as_ref()
            .map(|l| {
                l.peers
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.public_key, i))
                    .collect()
            })
            .unwrap_or_default();
        let agents = entries
            .iter()
            .filter_map(|e| Some((e.public_key, super::link::agent_address(e)?)))
            .collect();
        let now = SystemTime::now();
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Snapshot {
            scope,
            node,
            entries,
            live,
            pins,
            addresses,
            resolved,
            now,
            mono: Instant::now(),
            unix: since_epoch.as_secs(),
            unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            agents,
            by_key,
        }
    }

    /// The live entry of a peer.
    pub fn live_peer(&self, key: &PublicKey) -> Option<&LivePeer> {
        let i = *self.by_key.get(key)?;
        self.live.as_ref()?.peers.get(i)
    }

    /// A peer's name for the log, from the config: its name, else its key.
    pub fn name(&self, key: &PublicKey) -> String {
        name_of(&self.entries, key)
    }

    /// This node's VPN address: the first address of the config's
    /// `[Interface] Address`, else the `address` file.
    pub fn vpn_ip(&self) -> Option<IpAddr> {
        let written = self
            .node
            .conf
            .as_ref()
            .and_then(|doc| doc.interface())
            .and_then(|i| {
                i.get_all(crate::config::document::keys::ADDRESS)
                    .first()
                    .copied()
            })
            .and_then(|value| value.split(',').next())
            .and_then(|first| first.trim().parse::<ipnet::IpNet>().ok())
            .map(|net| net.addr());
        written.or_else(|| self.node.address.map(|a| a.ip()))
    }

    /// Whether this node relays for others (`relay-enable`).
    pub fn relays(&self) -> bool {
        self.node
            .conf
            .as_ref()
            .is_some_and(crate::plan::hooks::enabled)
    }

    /// The same observation at a later time, for what comes between passes
    /// without a need to look again (a `hello`, a `seen`).
    pub fn at_now(&mut self) {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.now = SystemTime::now();
        self.mono = Instant::now();
        self.unix = since_epoch.as_secs();
        self.unix_ms = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
    }
}

/// A peer's name for the log, from the config: its name, else its key.
pub fn name_of(entries: &[crate::config::node::PeerEntry], key: &PublicKey) -> String {
    for entry in entries {
        if entry.public_key == *key {
            return entry.display_name().to_string();
        }
        if let Some(r) = entry.relayed.iter().find(|r| r.public_key == *key) {
            return r.display_name().to_string();
        }
    }
    key.to_string()
}

/// Every DNS endpoint of the config, of direct and relayed peers.
fn dns_names(entries: &[PeerEntry]) -> Vec<Endpoint> {
    let direct = entries.iter().filter_map(|e| e.endpoint.as_ref());
    let relayed = entries
        .iter()
        .flat_map(|e| e.relayed.iter().filter_map(|r| r.endpoint.as_ref()));
    direct
        .chain(relayed)
        .filter_map(crate::types::WrittenEndpoint::parsed)
        .filter(|e| matches!(e.host(), Host::Dns(_)))
        .collect()
}

/// Resolve every distinct name at once, each lookup in its own thread, and
/// wait at most `deadline` in all; a lookup still running then is left
/// behind (its thread ends when the resolver gives up). Keyed by the
/// endpoint's text (`name:port`).
pub fn resolve_all(
    endpoints: impl IntoIterator<Item = Endpoint>,
    deadline: Duration,
) -> HashMap<String, Vec<SocketAddr>> {
    let (sender, receiver) = mpsc::channel();
    let mut waiting = 0;
    let mut seen = HashSet::new();
    for endpoint in endpoints {
        let text = endpoint.to_string();
        if !seen.insert(text.clone()) {
            continue;
        }
        let Host::Dns(name) = endpoint.host().clone() else {
            continue;
        };
        let port = endpoint.port();
        let sender = sender.clone();
        let spawned = std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let addresses: Vec<SocketAddr> = (name.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect)
                    .unwrap_or_default();
                let _ = sender.send((text, addresses));
            });
        if spawned.is_ok() {
            waiting += 1;
        }
    }
    let until = Instant::now() + deadline;
    let mut results = HashMap::new();
    while waiting > 0 {
        let left = until.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok((text, addresses)) => {
                results.insert(text, addresses);
                waiting -= 1;
            }
            Err(_) => break,
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_and_localhost_resolve() {
        let found = resolve_all(
            ["localhost:51820".parse::<Endpoint>().unwrap()],
            RESOLVE_DEADLINE,
        );
        assert!(!found["localhost:51820"].is_empty(), "{found:?}");
    }
}
