//! This host's own addresses. When they change (a new DHCP lease, another
//! network), every peer is sent one packet through the tunnel at once:
//! WireGuard on each peer then learns the new source address from it
//! (roaming) instead of waiting for this host's next keepalive, or for
//! ever when keepalive is off. Changes are found by a poll at every pass.

use std::ffi::CStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use crate::wg::LiveDevice;

/// The discard port: the packet only has to leave through the tunnel.
const DISCARD_PORT: u16 = 9;

/// This host's addresses, sorted: every interface but `exclude` (the
/// WireGuard interface itself), without loopback and IPv6 link-local
/// addresses, which peers never see.
pub fn own_addresses(exclude: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that stays valid
    // until freeifaddrs; every pointer is checked for null before use and
    // the address is read as the type its family says.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return found;
        }
        let mut entry = list;
        while !entry.is_null() {
            let ifa = &*entry;
            entry = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            if CStr::from_ptr(ifa.ifa_name).to_bytes() == exclude.as_bytes() {
                continue;
            }
            let ip = match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    // Read as bytes: no alignment is assumed of the pointer.
                    let sin = std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in>());
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = std::ptr::read_unaligned(ifa.ifa_addr.cast::<libc::sockaddr_in6>());
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            };
            found.push(ip);
        }
        libc::freeifaddrs(list);
    }
    found.retain(|ip| !ip.is_loopback() && !is_link_local_v6(ip));
    found.sort();
    found.dedup();
    found
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

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

    #[test]
    fn own_addresses_leave_out_loopback_and_the_excluded_interface() {
        let all = own_addresses("");
        assert!(all.iter().all(|ip| !ip.is_loopback()), "{all:?}");
        assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
        assert!(!is_link_local_v6(&"fd00::1".parse().unwrap()));
        assert!(is_link_local_v6(&"fe80::1".parse().unwrap()));
    }
}
