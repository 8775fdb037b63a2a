//! The live WireGuard interface, behind the `Device` seam.
//!
//! The real implementation talks to the kernel (netlink) or to wireguard-go
//! (its UAPI socket) through `wireguard-control`, picking the backend like
//! wg(8): userspace when the interface's socket accepts a connection,
//! kernel when a link of that name exists, "down" otherwise. Three things
//! of that crate are guarded against here:
//! - it prints to stdout by itself (unknown UAPI keys, `ERROR -N`), which
//!   would corrupt `--json` or the add-peer line: stdout is pointed at
//!   stderr for the duration of every call;
//! - its sockets have no timeout: every call runs under a deadline;
//! - `apply` on a missing interface creates it (and spawns wireguard-go):
//!   existence is checked first, and a down interface is never touched.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use wireguard_control::{AllowedIp, Backend, DeviceUpdate, PeerConfigBuilder};

use crate::error::{Error, Result};
use crate::routing::{Changes, Snapshot};
use crate::types::{InterfaceName, PublicKey};
use crate::wg::{Delta, LiveDevice, LivePeer, PresharedKey};

/// What commands need of a live interface.
pub trait Device {
    /// Whether the interface exists; cheap (no peer list is read).
    fn is_up(&self) -> Result<bool>;
    /// The interface's state, or `None` when it is down.
    fn live(&self) -> Result<Option<LiveDevice>>;
    /// Apply changes in one device call; only called when the interface is up.
    fn apply(&self, deltas: &[Delta]) -> Result<()>;
    /// The routes into the interface (`crate::routing`), `None` when it
    /// is down or has no routes to manage (a fake).
    fn routes(&self) -> Result<Option<Snapshot>> {
        Ok(None)
    }
    /// Delete then add routes into the interface; only called when up.
    fn apply_routes(&self, _changes: &Changes) -> Result<()> {
        Ok(())
    }
}

/// A device that is always down: `WGP2P_SERVICE=none` (files only).
pub struct Offline;

impl Device for Offline {
    fn is_up(&self) -> Result<bool> {
        Ok(false)
    }
    fn live(&self) -> Result<Option<LiveDevice>> {
        Ok(None)
    }
    fn apply(&self, _deltas: &[Delta]) -> Result<()> {
        Ok(())
    }
}

/// How long one device call may take before we give up and say so.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// What a device update may take on top of [`DEADLINE`] per peer it adds
/// or updates: wireguard-go creates each new peer, and sends the first
/// handshake of each keepalive peer, inside the set call (0.3 to 3 ms per
/// peer on a loaded 2-core machine: BENCHMARKS.md, "sync"), so adding a
/// roster of 10,000 nodes is one long update, not a stuck device.
pub const DEADLINE_PER_PEER: Duration = Duration::from_millis(5);

/// The deadline of one device update of `deltas`.
fn update_deadline(deltas: &[Delta]) -> Duration {
    let peers = deltas
        .iter()
        .filter(|d| matches!(d, Delta::UpsertPeer { .. }))
        .count();
    DEADLINE + DEADLINE_PER_PEER * u32::try_from(peers).unwrap_or(u32::MAX)
}

/// The real interface through `wireguard-control`.
pub struct WgDevice {
    iface: InterfaceName,
}

impl WgDevice {
    pub fn new(iface: InterfaceName) -> Self {
        WgDevice { iface }
    }

    /// Which backend holds the interface, or `None` when it does not exist.
    pub fn backend(&self) -> Option<Backend> {
        pick_backend(
            &[Path::new("/var/run/wireguard"), Path::new("/run/wireguard")],
            Path::new("/sys/class/net"),
            &self.iface,
        )
    }
}

/// Userspace when `DIR/IFACE.sock` accepts a connection (a stale socket
/// file of a dead wireguard-go does not count), the kernel when a link of
/// that name exists, `None` otherwise. Unlike wg(8), which also checks that
/// the link's kind (`IFLA_INFO_KIND`) is `wireguard`, any link of that name
/// counts here: for a link of another kind the netlink calls then fail.
fn pick_backend(socket_dirs: &[&Path], links: &Path, iface: &InterfaceName) -> Option<Backend> {
    let sock = format!("{iface}.sock");
    let userspace = socket_dirs
        .iter()
        .any(|dir| UnixStream::connect(dir.join(&sock)).is_ok());
    if userspace {
        return Some(Backend::Userspace);
    }
    links
        .join(iface.as_str())
        .exists()
        .then_some(Backend::Kernel)
}

impl Device for WgDevice {
    fn is_up(&self) -> Result<bool> {
        Ok(self.backend().is_some())
    }

    fn live(&self) -> Result<Option<LiveDevice>> {
        let Some(backend) = self.backend() else {
            return Ok(None);
        };
        let name = self.iface.to_wg()?;
        let device = guarded_call(&self.iface, "read", DEADLINE, move || {
            wireguard_control::Device::get(&name, backend)
        })?;
        Ok(Some(live_device(&device, backend)))
    }

    fn apply(&self, deltas: &[Delta]) -> Result<()> {
        let Some(update) = device_update(deltas)? else {
            return Ok(());
        };
        let Some(backend) = self.backend() else {
            return Err(Error::System(format!(
                "interface {} went down during the change: expected it up",
                self.iface
            )));
        };
        let name = self.iface.to_wg()?;
        // A port change: the new port must be free before the device is
        // asked (wireguard-go closes its socket before it binds the new
        // one), and a refused change puts the old port back.
        let new_port = deltas.iter().rev().find_map(|d| match d {
            Delta::SetListenPort(p) => Some(*p),
            _ => None,
        });
        let old_port = match new_port {
            Some(port) => {
                let read_name = name;
                let live = guarded_call(&self.iface, "read", DEADLINE, move || {
                    wireguard_control::Device::get(&read_name, backend)
                })?;
                if live.listen_port != Some(port) {
                    crate::system::require_free_port(port, &self.iface)?;
                }
                live.listen_port.filter(|p| *p != port && *p != 0)
            }
            None => None,
        };
        let deadline = update_deadline(deltas);
        let update_name = name;
        let result = guarded_call(&self.iface, "update", deadline, move || {
            update.apply(&update_name, backend)
        });
        if let (Err(Error::System(_)), Some(old)) = (&result, old_port) {
            let _ = guarded_call(&self.iface, "update", DEADLINE, move || {
                DeviceUpdate::new()
                    .set_listen_port(old)
                    .apply(&name, backend)
            });
        }
        result
    }

    fn routes(&self) -> Result<Option<Snapshot>> {
        let Some(backend) = self.backend() else {
            return Ok(None);
        };
        let Some(mut snapshot) = crate::routing::netlink::snapshot(&self.iface)? else {
            return Ok(None);
        };
        let name = self.iface.to_wg()?;
        let device = guarded_call(&self.iface, "read", DEADLINE, move || {
            wireguard_control::Device::get(&name, backend)
        })?;
        snapshot.fwmark = device.fwmark.filter(|m| *m != 0);
        Ok(Some(snapshot))
    }

    /// The fwmark first when set (WireGuard's own packets are marked
    /// before a default route exists), last when cleared.
    fn apply_routes(&self, changes: &Changes) -> Result<()> {
        let set_fwmark = |mark: u32| -> Result<()> {
            let Some(backend) = self.backend() else {
                return Ok(());
            };
            let name = self.iface.to_wg()?;
            guarded_call(&self.iface, "update", DEADLINE, move || {
                DeviceUpdate::new().set_fwmark(mark).apply(&name, backend)
            })
        };
        if let Some(mark) = changes.fwmark.filter(|m| *m != 0) {
            set_fwmark(mark)?;
        }
        crate::routing::netlink::apply(&self.iface, changes)?;
        if changes.fwmark == Some(0) {
            set_fwmark(0)?;
        }
        Ok(())
    }
}

fn to_public_key(key: &wireguard_control::Key) -> PublicKey {
    PublicKey::from_bytes(key.0)
}

/// A peer as the device reports it, normalised: wireguard-control reads
/// "no keepalive" as `Some(0)`, "never" as the epoch (kernel) or `None`
/// (userspace), and "no preshared key" as the all-zero key (kernel); all
/// become `None` here.
fn live_peer(peer: &wireguard_control::PeerInfo) -> LivePeer {
    LivePeer {
        public_key: to_public_key(&peer.config.public_key),
        endpoint: peer.config.endpoint,
        allowed_ips: peer
            .config
            .allowed_ips
            .iter()
            .filter_map(|a| IpNet::new(a.address, a.cidr).ok())
            .collect(),
        last_handshake: peer
            .stats
            .last_handshake_time
            .filter(|t| *t != SystemTime::UNIX_EPOCH),
        rx_bytes: peer.stats.rx_bytes,
        tx_bytes: peer.stats.tx_bytes,
        keepalive: peer.config.persistent_keepalive_interval.filter(|k| *k > 0),
        preshared_key: peer
            .config
            .preshared_key
            .as_ref()
            .and_then(|k| PresharedKey::from_bytes(k.0)),
    }
}

fn live_device(device: &wireguard_control::Device, backend: Backend) -> LiveDevice {
    LiveDevice {
        backend: if backend == Backend::Userspace {
            "userspace"
        } else {
            "kernel"
        },
        public_key: device.public_key.as_ref().map(to_public_key),
        listen_port: device.listen_port,
        peers: device.peers.iter().map(live_peer).collect(),
    }
}

/// Fold deltas into one `DeviceUpdate` (one device call), resolving DNS
/// endpoints now, for the live change only. `None` when there is nothing
/// to do.
pub fn device_update(deltas: &[Delta]) -> Result<Option<DeviceUpdate>> {
    let mut update = DeviceUpdate::new();
    let mut empty = true;
    // Peers with keepalive go last (stable order otherwise): wireguard-go
    // 0.0.20220316 makes every peer after a keepalive peer in one set send
    // a keepalive at once, which stalls on unreachable LAN addresses
    // (BENCHMARKS.md, "wireguard-go pitfalls").
    let has_keepalive = |d: &&Delta| {
        matches!(
            d,
            Delta::UpsertPeer {
                keepalive: Some(_),
                ..
            }
        )
    };
    let ordered = deltas
        .iter()
        .filter(|d| !has_keepalive(d))
        .chain(deltas.iter().filter(has_keepalive));
    for delta in ordered {
        update = match delta {
            Delta::UpsertPeer {
                public_key,
                endpoint,
                allowed_ips,
                keepalive,
            } => {
                let nets: Vec<AllowedIp> = allowed_ips
                    .iter()
                    .map(|n| AllowedIp {
                        address: n.addr(),
                        cidr: n.prefix_len(),
                    })
                    .collect();
                let mut peer = PeerConfigBuilder::new(&public_key.to_wg())
                    .replace_allowed_ips()
                    .add_allowed_ips(&nets);
                peer = match keepalive {
                    Some(k) => peer.set_persistent_keepalive_interval(*k),
                    None => peer.unset_persistent_keepalive(),
                };
                if let Some(endpoint) = endpoint {
                    peer = peer.set_endpoint(endpoint.resolve()?);
                }
                update.add_peer(peer)
            }
            Delta::SetPresharedKey { public_key, key } => {
                let peer = PeerConfigBuilder::new(&public_key.to_wg());
                update.add_peer(match key {
                    Some(key) => peer.set_preshared_key(wireguard_control::Key(*key.as_bytes())),
                    None => peer.unset_preshared_key(),
                })
            }
            Delta::RemovePeer(key) => update.remove_peer_by_key(&key.to_wg()),
            Delta::SetEndpoint {
                public_key,
                address,
            } => {
                update.add_peer(PeerConfigBuilder::new(&public_key.to_wg()).set_endpoint(*address))
            }
            Delta::SetPrivateKey(key) => update.set_private_key(key.to_wg()),
            Delta::SetListenPort(port) => update.set_listen_port(*port),
        };
        empty = false;
    }
    Ok((!empty).then_some(update))
}

/// Run a device call in a thread with stdout diverted and a deadline.
fn guarded_call<T, F>(iface: &InterfaceName, what: &str, deadline: Duration, call: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    let _divert = crate::sys::StdoutToStderr::new();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(call());
    });
    match receiver.recv_timeout(deadline) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Error::System(format!(
            "WireGuard interface {iface} refused the {what}: {e}"
        ))),
        Err(mpsc::RecvTimeoutError::Timeout) if what == "update" => {
            Err(Error::LiveUnknown(format!(
                "WireGuard interface {iface} did not answer the {what} within {} s (is wireguard-go stuck?)",
                deadline.as_secs()
            )))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::System(format!(
            "WireGuard interface {iface} did not answer the {what} within {} s: expected a responsive device (is wireguard-go stuck?)",
            deadline.as_secs()
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::System(format!(
            "WireGuard interface {iface}: the {what} failed unexpectedly (malformed answer from the device)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_updates_get_a_longer_deadline() {
        assert_eq!(update_deadline(&[]), DEADLINE);
        let key = PublicKey::from_bytes([1; 32]);
        let upsert = Delta::UpsertPeer {
            public_key: key,
            endpoint: None,
            allowed_ips: vec![],
            keepalive: None,
        };
        let many: Vec<Delta> = (0..10_000).map(|_| upsert.clone()).collect();
        assert_eq!(update_deadline(&many), Duration::from_secs(60));
        assert_eq!(update_deadline(&[Delta::RemovePeer(key)]), DEADLINE);
    }

    const KEY: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";

    #[test]
    fn upsert_replaces_allowed_ips_and_sets_keepalive() {
        let delta = Delta::UpsertPeer {
            public_key: KEY.parse().unwrap(),
            endpoint: Some("192.0.2.1:51820".parse().unwrap()),
            allowed_ips: vec!["10.15.0.2/32".parse().unwrap()],
            keepalive: Some(25),
        };
        let update = device_update(&[delta]).unwrap().unwrap();
        // DeviceUpdate has no accessors; its Debug output shows the fields.
        let shown = format!("{update:?}");
        assert!(shown.contains("replace_allowed_ips: true"), "{shown}");
        assert!(
            shown.contains("persistent_keepalive_interval: Some(25)"),
            "{shown}"
        );
        assert!(shown.contains("192.0.2.1:51820"), "{shown}");
        assert!(device_update(&[]).unwrap().is_none());
        let remove = Delta::RemovePeer(KEY.parse().unwrap());
        let both = device_update(&[Delta::SetListenPort(1), remove])
            .unwrap()
            .unwrap();
        let shown = format!("{both:?}");
        assert!(
            shown.contains("listen_port: Some(1)") && shown.contains("remove_me: true"),
            "{shown}"
        );
    }

    #[test]
    fn set_endpoint_touches_nothing_else() {
        let delta = Delta::SetEndpoint {
            public_key: KEY.parse().unwrap(),
            address: "203.0.113.9:51820".parse().unwrap(),
        };
        let shown = format!("{:?}", device_update(&[delta]).unwrap().unwrap());
        assert!(shown.contains("203.0.113.9:51820"), "{shown}");
        assert!(shown.contains("replace_allowed_ips: false"), "{shown}");
        assert!(shown.contains("allowed_ips: []"), "{shown}");
        assert!(
            shown.contains("persistent_keepalive_interval: None"),
            "{shown}"
        );
    }

    #[test]
    fn keepalive_peers_go_last_in_one_update() {
        let with_keepalive = Delta::UpsertPeer {
            public_key: KEY.parse().unwrap(),
            endpoint: None,
            allowed_ips: vec![],
            keepalive: Some(25),
        };
        let other: PublicKey = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
            .parse()
            .unwrap();
        let update = device_update(&[with_keepalive, Delta::RemovePeer(other)])
            .unwrap()
            .unwrap();
        let shown = format!("{update:?}");
        let first = |key: &PublicKey| shown.find(&key.to_string()).unwrap();
        assert!(first(&other) < first(&KEY.parse().unwrap()), "{shown}");
    }

    #[test]
    fn live_peers_are_normalised() {
        let key: PublicKey = KEY.parse().unwrap();
        let mut info = wireguard_control::PeerInfo::from_public_key(key.to_wg());
        info.config.persistent_keepalive_interval = Some(0);
        info.stats.last_handshake_time = Some(SystemTime::UNIX_EPOCH);
        info.config.allowed_ips = vec![AllowedIp {
            address: "10.15.0.2".parse().unwrap(),
            cidr: 32,
        }];
        info.config.preshared_key = Some(wireguard_control::Key([0; 32]));
        let peer = live_peer(&info);
        assert_eq!((peer.keepalive, peer.last_handshake), (None, None));
        assert_eq!(peer.preshared_key, None);
        assert_eq!(peer.public_key, key);
        assert_eq!(
            peer.allowed_ips,
            vec!["10.15.0.2/32".parse::<IpNet>().unwrap()]
        );
        info.config.persistent_keepalive_interval = Some(25);
        let now = SystemTime::now();
        info.stats.last_handshake_time = Some(now);
        let peer = live_peer(&info);
        assert_eq!((peer.keepalive, peer.last_handshake), (Some(25), Some(now)));
    }

    #[test]
    fn backend_is_picked_like_wg() {
        let dir = tempfile::tempdir().unwrap();
        let (sockets, links) = (dir.path().join("run"), dir.path().join("net"));
        std::fs::create_dir_all(&sockets).unwrap();
        std::fs::create_dir_all(&links).unwrap();
        let iface: InterfaceName = "wg7".parse().unwrap();
        let pick = || pick_backend(&[&sockets], &links, &iface);
        assert_eq!(pick(), None);
        std::fs::create_dir(links.join("wg7")).unwrap();
        assert_eq!(pick(), Some(Backend::Kernel));
        // A stale socket file (nobody listening) is not a userspace device.
        let listener = std::os::unix::net::UnixListener::bind(sockets.join("wg7.sock")).unwrap();
        assert_eq!(pick(), Some(Backend::Userspace));
        drop(listener);
        assert_eq!(pick(), Some(Backend::Kernel));
    }

    #[test]
    fn missing_interface_is_down_not_created() {
        let device = WgDevice::new("wgp2pnone0".parse().unwrap());
        assert!(device.backend().is_none());
        assert_eq!(device.live().unwrap(), None);
    }
}
