//! Route safety: the one rule on what a peer's routes may cover, shared by
//! `sync`, `add-peer` (with its re-paste, `--allowed-ips` and `--via`),
//! `provision-peer` and `relay`.
//!
//! wg-quick routes every network of a peer's `AllowedIPs` into the tunnel.
//! A network that holds an address the tunnels themselves need (a peer's
//! endpoint, this node's public endpoint, this host's own addresses or its
//! default gateway) sends WireGuard's own packets for it into the tunnel:
//! the handshake to that endpoint can never complete once the routes are up
//! (after the next restart), and the peer is black-holed. So:
//!
//! - a peer's own address (its host route) is never one of those addresses,
//!   whatever it opted into;
//! - its other networks may not hold one, unless it opted in
//!   ([`Role::SubnetRouter`], [`Role::ExitNode`]: a roster's
//!   `subnet_router = true` or `exit_node = true`); `add-peer` and `relay`
//!   have no opt-in;
//! - a default route (`0.0.0.0/0`, `::/0`) is not this rule's: wg-quick
//!   routes it through a table of its own with a fwmark rule that keeps the
//!   endpoints outside the tunnel. Whether one is allowed at all is the
//!   caller's rule (sync: only an exit node's).
//!
//! Only endpoints written as an IP address are checked: a DNS name is not
//! resolved for the check (planning is pure, and the name may point
//! elsewhere tomorrow).
//!
//! The check is linear: each needed address looks up its at most 129
//! enclosing prefixes in a map of the checked networks.
//!
//! A second rule, [`space`], bounds what a member may claim by address
//! space rather than by shape: without a role only addresses inside the
//! VPN network, a subnet router only private ranges (RFC 1918, ULA) too,
//! an exit node anything. A set of narrow networks that together cover
//! the internet (0.0.0.0/1 + 128.0.0.0/1, or a hundred smaller pieces)
//! is public space, whatever its shape, and is refused like a default
//! route.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::node::PeerEntry;
use crate::types::{Endpoint, PublicKey, WrittenEndpoint, quoted};

/// What a peer may route besides its own address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Its other networks may not cover any needed address.
    #[default]
    Peer,
    /// `subnet_router = true`: its other networks may cover endpoints and
    /// this host's addresses (a LAN routed through it).
    SubnetRouter,
    /// `exit_node = true`: as a subnet router (and, for sync, it may carry
    /// `0.0.0.0/0` and `::/0`).
    ExitNode,
}

/// The private ranges a subnet router may route: RFC 1918 and IPv6
/// unique local addresses (RFC 4193).
pub const PRIVATE: [&str; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"];

/// What a role may claim, for messages: `"inside the VPN network 10.15.0.0/24"`.
pub fn allowed_space(role: Role, vpn: &[IpNet]) -> String {
    let vpn: Vec<String> = vpn.iter().map(|n| n.trunc().to_string()).collect();
    let vpn = if vpn.is_empty() {
        "the VPN network".to_string()
    } else {
        format!("the VPN network {}", vpn.join(", "))
    };
    match role {
        Role::Peer => format!(
            "addresses inside {vpn} (a member with `subnet_router = true` may also route private ranges, one with `exit_node = true` public space)"
        ),
        Role::SubnetRouter => format!(
            "addresses inside {vpn} or a private range ({}); public space needs `exit_node = true`",
            PRIVATE.join(", ")
        ),
        Role::ExitNode => "any address".to_string(),
    }
}

/// Whether `net` is inside the space `role` may claim: for
/// [`Role::Peer`] inside one of `vpn` (this node's VPN networks), for
/// [`Role::SubnetRouter`] also inside a private range ([`PRIVATE`]), for
/// [`Role::ExitNode`] anywhere. A network is inside a range when the
/// range contains it whole (a /7 that holds 10.0.0.0/8 is not private).
pub fn space(role: Role, vpn: &[IpNet], net: &IpNet) -> bool {
    let inside = |outer: &IpNet| outer.trunc().contains(&net.trunc());
    match role {
        Role::ExitNode => true,
        Role::SubnetRouter => {
            vpn.iter().any(inside)
                || PRIVATE
                    .iter()
                    .filter_map(|p| p.parse::<IpNet>().ok())
                    .any(|p| inside(&p))
        }
        Role::Peer => vpn.iter().any(inside),
    }
}

/// Whether `net` holds an address outside every private range and `vpn`:
/// the networks `add-peer --allowed-ips` warns about.
pub fn covers_public(vpn: &[IpNet], net: &IpNet) -> bool {
    !space(Role::SubnetRouter, vpn, net)
}

/// An address the mesh needs reachable outside the tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub ip: IpAddr,
    /// What it is, for the message: `the endpoint of peer "alice"`.
    pub what: String,
}

/// Every address the mesh needs outside the tunnel.
#[derive(Clone, Debug, Default)]
pub struct Needed {
    points: Vec<Point>,
}

impl Needed {
    /// Start from addresses outside the config: this host's own addresses
    /// and default gateways, this node's public endpoint (`Own::host`).
    pub fn new(host: &[(IpAddr, String)]) -> Needed {
        Needed {
            points: host
                .iter()
                .map(|(ip, what)| Point {
                    ip: *ip,
                    what: what.clone(),
                })
                .collect(),
        }
    }

    /// An endpoint, when it is an IP address (a DNS name is not resolved).
    pub fn endpoint(&mut self, endpoint: Option<&Endpoint>, what: impl FnOnce() -> String) {
        if let Some(ip) = endpoint.and_then(Endpoint::ip) {
            self.points.push(Point { ip, what: what() });
        }
    }

    /// The endpoints of the config's peers, direct and relayed (a relayed
    /// peer's endpoint is probed for a way back to direct), except those
    /// `skip` names (peers the change removes or whose endpoint it replaces).
    pub fn config_endpoints(&mut self, peers: &[PeerEntry], skip: impl Fn(&PublicKey) -> bool) {
        let written = |e: Option<&WrittenEndpoint>| e.and_then(WrittenEndpoint::parsed);
        for peer in peers {
            if !skip(&peer.public_key) {
                self.endpoint(written(peer.endpoint.as_ref()).as_ref(), || {
                    format!("the endpoint of peer {}", quoted(peer.display_name()))
                });
            }
            for r in peer.relayed.iter().filter(|r| !skip(&r.public_key)) {
                self.endpoint(written(r.endpoint.as_ref()).as_ref(), || {
                    format!("the endpoint of peer {}", quoted(r.display_name()))
                });
            }
        }
    }
}

/// The routes of one peer, as the rule sees them.
pub struct Routes<'a> {
    /// Its own address (host route), if it has one here.
    pub address: Option<IpNet>,
    /// Every network it routes; its own address among them is skipped.
    pub nets: &'a [IpNet],
    pub role: Role,
}

/// Why routes are refused; `peer` is the index into the routes checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsafe {
    /// The peer's own address is a needed one.
    Address {
        peer: usize,
        ip: IpAddr,
        what: String,
    },
    /// One of its networks holds a needed address.
    Covers {
        peer: usize,
        net: IpNet,
        ip: IpAddr,
        what: String,
    },
}

/// Check every peer's routes against the needed addresses: the first
/// refusal, or `Ok` when every one is safe. Addresses come first (no role
/// lifts them), then networks, in the order of the needed addresses.
pub fn check(needed: &Needed, peers: &[Routes<'_>]) -> Result<(), Unsafe> {
    let addresses: HashMap<IpAddr, usize> = peers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.address.map(|a| (a.addr(), i)))
        .collect();
    for point in &needed.points {
        if let Some(&peer) = addresses.get(&point.ip) {
            return Err(Unsafe::Address {
                peer,
                ip: point.ip,
                what: point.what.clone(),
            });
        }
    }
    let restricted: HashMap<IpNet, usize> = peers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.role == Role::Peer)
        .flat_map(|(i, p)| {
            p.nets
                .iter()
                .filter(move |n| Some(**n) != p.address && n.prefix_len() > 0)
                .map(move |n| (n.trunc(), i))
        })
        .collect();
    if restricted.is_empty() {
        return Ok(());
    }
    for point in &needed.points {
        let max = if point.ip.is_ipv4() { 32 } else { 128 };
        for len in 1..=max {
            let Ok(net) = IpNet::new(point.ip, len).map(|n| n.trunc()) else {
                continue;
            };
            if let Some(&peer) = restricted.get(&net) {
                return Err(Unsafe::Covers {
                    peer,
                    net,
                    ip: point.ip,
                    what: point.what.clone(),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(text: &str) -> Vec<IpNet> {
        text.split(',').map(|n| n.trim().parse().unwrap()).collect()
    }

    fn needed() -> Needed {
        let mut needed = Needed::new(&[
            (
                "192.168.1.5".parse().unwrap(),
                "an address of this host".into(),
            ),
            (
                "192.168.1.1".parse().unwrap(),
                "this host's default gateway".into(),
            ),
        ]);
        let ep = |t: &str| t.parse::<Endpoint>().unwrap();
        needed.endpoint(Some(&ep("198.51.100.9:51820")), || {
            "the endpoint of peer \"y\"".into()
        });
        needed.endpoint(Some(&ep("vpn.example.org:51820")), || "a DNS name".into());
        needed
    }

    fn one(address: &str, all: &str, role: Role) -> Result<(), Unsafe> {
        let all = nets(all);
        check(
            &needed(),
            &[Routes {
                address: Some(address.parse().unwrap()),
                nets: &all,
                role,
            }],
        )
    }

    #[test]
    fn an_address_is_never_a_needed_one() {
        for role in [Role::Peer, Role::SubnetRouter, Role::ExitNode] {
            let e = one("198.51.100.9/32", "198.51.100.9/32", role).unwrap_err();
            assert_eq!(
                e,
                Unsafe::Address {
                    peer: 0,
                    ip: "198.51.100.9".parse().unwrap(),
                    what: "the endpoint of peer \"y\"".into()
                }
            );
        }
        assert!(matches!(
            one("192.168.1.1/32", "192.168.1.1/32", Role::Peer),
            Err(Unsafe::Address { what, .. }) if what.contains("gateway")
        ));
    }

    #[test]
    fn networks_may_not_cover_one_unless_opted_in() {
        let e = one("10.15.0.2/32", "10.15.0.2/32, 198.51.100.0/24", Role::Peer).unwrap_err();
        assert!(
            matches!(&e, Unsafe::Covers { peer: 0, net, ip, what }
                if net.to_string() == "198.51.100.0/24" && ip.to_string() == "198.51.100.9" && what.contains("\"y\"")),
            "{e:?}"
        );
        // The narrowest match is the one named: a host route over the endpoint.
        let e = one("10.15.0.2/32", "198.51.100.9/32", Role::Peer).unwrap_err();
        assert!(matches!(e, Unsafe::Covers { net, .. } if net.prefix_len() == 32));
        assert!(matches!(
            one("10.15.0.2/32", "192.168.0.0/16", Role::Peer),
            Err(Unsafe::Covers { what, .. }) if what == "an address of this host"
        ));
        // A subnet router or exit node opted in.
        assert!(one("10.15.0.2/32", "198.51.100.0/24", Role::SubnetRouter).is_ok());
        assert!(one("10.15.0.2/32", "192.168.0.0/16", Role::ExitNode).is_ok());
    }

    #[test]
    fn what_covers_nothing_needed_passes() {
        // A site-to-site LAN, another family's default route, a DNS endpoint.
        assert!(one("10.15.0.2/32", "10.15.0.2/32, 192.168.50.0/24", Role::Peer).is_ok());
        assert!(one("10.15.0.2/32", "0.0.0.0/0, ::/0", Role::Peer).is_ok());
        assert!(one("10.15.0.2/32", "10.15.0.2/32, fd00::/8", Role::Peer).is_ok());
        assert!(check(&Needed::default(), &[]).is_ok());
    }

    #[test]
    fn space_is_by_address_not_by_shape() {
        let vpn = nets("10.15.0.0/24, fd15::/64");
        let net = |t: &str| t.parse::<IpNet>().unwrap();
        for inside in [
            "10.15.0.7/32",
            "10.15.0.0/25",
            "10.15.0.9/24",
            "fd15::2/128",
        ] {
            assert!(space(Role::Peer, &vpn, &net(inside)), "{inside}");
        }
        for outside in [
            "10.16.0.0/24",
            "10.15.0.0/23",
            "192.168.77.0/24",
            "0.0.0.0/1",
            "fd16::/64",
        ] {
            assert!(!space(Role::Peer, &vpn, &net(outside)), "{outside}");
        }
        for private in [
            "192.168.77.0/24",
            "10.0.0.0/8",
            "172.20.0.0/16",
            "fd00:1::/48",
        ] {
            assert!(space(Role::SubnetRouter, &vpn, &net(private)), "{private}");
            assert!(!covers_public(&vpn, &net(private)), "{private}");
        }
        // Pieces of the internet, however narrow, and ranges wider than a private one.
        for public in [
            "0.0.0.0/1",
            "128.0.0.0/1",
            "8.8.8.0/24",
            "10.0.0.0/7",
            "2000::/3",
            "::/0",
        ] {
            assert!(!space(Role::SubnetRouter, &vpn, &net(public)), "{public}");
            assert!(covers_public(&vpn, &net(public)), "{public}");
            assert!(space(Role::ExitNode, &vpn, &net(public)), "{public}");
        }
        assert!(allowed_space(Role::Peer, &vpn).contains("10.15.0.0/24, fd15::/64"));
    }

    #[test]
    fn config_endpoints_count_relayed_peers_and_skip_the_replaced_one() {
        let doc = crate::config::document::Document::parse(
            "[Interface]\n[Peer]\n# Name = r\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nEndpoint = 203.0.113.2:51820\nAllowedIPs = 10.15.0.2/32, 10.15.0.4/32\n# Relay = far AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA= 203.0.113.4:51820 10.15.0.4/32\n",
        )
        .unwrap();
        let peers = crate::config::node::peers(&doc).unwrap();
        let mut all = Needed::default();
        all.config_endpoints(&peers, |_| false);
        let ips: Vec<String> = all.points.iter().map(|p| p.ip.to_string()).collect();
        assert_eq!(ips, ["203.0.113.2", "203.0.113.4"]);
        let mut but_r = Needed::default();
        but_r.config_endpoints(&peers, |k| *k == peers[0].public_key);
        assert_eq!(but_r.points.len(), 1);
        assert_eq!(but_r.points[0].what, "the endpoint of peer \"far\"");
    }
}
