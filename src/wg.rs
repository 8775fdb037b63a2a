//! WireGuard's vocabulary, shared by every layer: the smallest live change
//! ([`Delta`]), a peer's preshared key, and a live interface as the device
//! reports it. A leaf: it imports only the validated types, so the planner
//! (`plan`), the device (`device`), health and the agent all speak it
//! without importing one another (wireguard-tools' `containers.h`).

use std::net::SocketAddr;
use std::time::SystemTime;

use ipnet::IpNet;

use crate::types::{Endpoint, PrivateKey, PublicKey};

/// The smallest change to apply to a live interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delta {
    /// Add a peer or update it in place; its allowed IPs are replaced as a whole.
    UpsertPeer {
        public_key: PublicKey,
        endpoint: Option<Endpoint>,
        allowed_ips: Vec<IpNet>,
        keepalive: Option<u16>,
    },
    RemovePeer(PublicKey),
    /// Set (or, with `None`, unset) a peer's preshared key: drift repair,
    /// and a peer whose section comes back (`relay NAME direct`).
    SetPresharedKey {
        public_key: PublicKey,
        key: Option<PresharedKey>,
    },
    /// Point a live peer at another address and change nothing else (the
    /// agent's endpoint refresh: the config keeps the DNS name).
    SetEndpoint {
        public_key: PublicKey,
        address: std::net::SocketAddr,
    },
    SetPrivateKey(PrivateKey),
    SetListenPort(u16),
}

/// A peer as the live interface reports it, normalised (no keepalive and no
/// preshared key read as `None`, not as zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LivePeer {
    pub public_key: PublicKey,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub keepalive: Option<u16>,
    pub preshared_key: Option<PresharedKey>,
}

/// A peer's preshared key, as the config and the device hold it. Its
/// `Debug` hides the key and its bytes are wiped on drop; the all-zero
/// key means "none" to WireGuard and is never a value of this type.
#[derive(Clone, PartialEq, Eq)]
pub struct PresharedKey([u8; 32]);

impl PresharedKey {
    /// From the config's base64 text or the device's bytes; `None` for
    /// malformed text and for the all-zero key.
    pub fn parse(text: &str) -> Option<PresharedKey> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        Self::from_bytes(<[u8; 32]>::try_from(bytes.as_slice()).ok()?)
    }

    /// From the device's bytes; `None` for the all-zero key.
    pub fn from_bytes(bytes: [u8; 32]) -> Option<PresharedKey> {
        (bytes != [0; 32]).then_some(PresharedKey(bytes))
    }

    /// The key's bytes, for the device.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresharedKey(hidden)")
    }
}

impl Drop for PresharedKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveDevice {
    pub backend: &'static str,
    pub public_key: Option<PublicKey>,
    pub listen_port: Option<u16>,
    pub peers: Vec<LivePeer>,
}

#[cfg(test)]
impl LiveDevice {
    /// A userspace interface on port 51820 with `peers`, for unit tests.
    pub fn with_peers(peers: Vec<LivePeer>) -> LiveDevice {
        LiveDevice {
            backend: "userspace",
            public_key: None,
            listen_port: Some(51820),
            peers,
        }
    }
}
