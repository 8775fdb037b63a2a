//! Following this host's own addresses (`host::addresses`). When they
//! change (a new DHCP lease, another network), every peer is sent one
//! packet through the tunnel at once:
//! WireGuard on each peer then learns the new source address from it
//! (roaming) instead of waiting for this host's next keepalive, or for
//! ever when keepalive is off. Changes are found by a poll at every pass.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use crate::wg::LiveDevice;

/// The discard port: the packet only has to leave through the tunnel.
const DISCARD_PORT: u16 = 9;

/// Whether the addresses changed since the last pass (the first pass has
/// nothing to compare with).
pub fn changed(previous: Option<&[IpAddr]>, now: &[IpAddr]) -> bool {
    previous.is_some_and(|p| p != now)
}

/// One address inside the tunnel per live peer: its first host route
/// (/32 or /128), which is its VPN address.
pub fn peer_targets(live: &LiveDevice) -> Vec<IpAddr> {
    live.peers
        .iter()
        .filter_map(|p| {
            p.allowed_ips
                .iter()
                .find(|n| n.prefix_len() == n.max_prefix_len())
                .map(|n| n.addr())
        })
        .collect()
}

/// Send one byte to the discard port of every target; how many were sent.
pub fn poke(targets: &[IpAddr]) -> usize {
    let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok();
    let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).ok();
    targets
        .iter()
        .filter(|ip| {
            let socket = if ip.is_ipv4() { &v4 } else { &v6 };
            socket
                .as_ref()
                .is_some_and(|s| s.send_to(&[0], SocketAddr::new(**ip, DISCARD_PORT)).is_ok())
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{KEY_A, KEY_B};
    use crate::wg::LivePeer;

    #[test]
    fn first_pass_is_no_change() {
        let a: Vec<IpAddr> = vec!["203.0.113.1".parse().unwrap()];
        let b: Vec<IpAddr> = vec!["203.0.113.201".parse().unwrap()];
        assert!(!changed(None, &a));
        assert!(!changed(Some(&a), &a));
        assert!(changed(Some(&a), &b));
        assert!(changed(Some(&a), &[]));
    }

    #[test]
    fn targets_are_the_peers_vpn_addresses() {
        let peer = |key: &str, nets: &[&str]| LivePeer {
            public_key: key.parse().unwrap(),
            endpoint: None,
            allowed_ips: nets.iter().map(|n| n.parse().unwrap()).collect(),
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
            keepalive: None,
            preshared_key: None,
        };
        let live = LiveDevice {
            backend: "userspace",
            public_key: None,
            listen_port: None,
            peers: vec![
                peer(KEY_A, &["192.168.5.0/24", "10.15.0.2/32"]),
                peer(KEY_B, &["192.168.6.0/24"]),
            ],
        };
        let targets = peer_targets(&live);
        assert_eq!(targets, vec!["10.15.0.2".parse::<IpAddr>().unwrap()]);
    }
}
