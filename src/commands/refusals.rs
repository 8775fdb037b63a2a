//! The messages of what planning refuses (`plan::PlanError`): one line that
//! names the value and what is expected, and the command that gets past it.
//! Planning says what is wrong; only this file says what to run.

use std::fmt;

use crate::error::plan::{OwnDifference, PlanError, Repeat, RouteOwner, RoutesOf, Tunnel};
use crate::types::quoted;

impl fmt::Display for PlanError {
    #[allow(
        clippy::too_many_lines,
        reason = "one arm per refusal: the messages read best side by side"
    )]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::OwnKey {
                key,
                tunnel: Tunnel::Direct,
            } => write!(
                f,
                "public key {key} is this node's own key: expected the key printed by the other node"
            ),
            PlanError::OwnKey {
                key,
                tunnel: Tunnel::Relayed,
            } => write!(
                f,
                "public key {key} is this node's own key: expected the other node's key"
            ),
            PlanError::RelayedPeer { peer, via } => write!(
                f,
                "peer {} is relayed via {via}: `wgp2p relay {peer} direct` to make it direct, or `wgp2p remove-peer {peer}` first",
                quoted(peer)
            ),
            PlanError::NameTaken {
                name,
                key,
                tunnel: Tunnel::Direct,
            } => write!(
                f,
                "peer name {} is already used by key {key}: choose another name or `wgp2p remove-peer {name}` first",
                quoted(name)
            ),
            PlanError::NameTaken {
                name,
                key,
                tunnel: Tunnel::Relayed,
            } => write!(
                f,
                "peer name {} is already used by key {key}: choose another name",
                quoted(name)
            ),
            PlanError::KeyNamedOtherwise { key, name } => write!(
                f,
                "public key {key} is already peer {}: `wgp2p remove-peer {name}` first to rename it",
                quoted(name)
            ),
            PlanError::OwnAddress {
                net,
                own,
                tunnel: Tunnel::Direct,
            } => write!(
                f,
                "allowed IP {net} contains this node's own address {own}: expected the peer's own addresses"
            ),
            PlanError::OwnAddress {
                net,
                tunnel: Tunnel::Relayed,
                ..
            } => write!(
                f,
                "address {net} contains this node's own address: expected the peer's addresses"
            ),
            PlanError::Overlap {
                net,
                other,
                peer,
                tunnel,
            } => {
                let what = match tunnel {
                    Tunnel::Direct => "allowed IP",
                    Tunnel::Relayed => "address",
                };
                write!(
                    f,
                    "{what} {net} overlaps {other} of peer {}: expected addresses no other peer routes",
                    quoted(peer)
                )
            }
            PlanError::NotFound { selector, conf } => write!(
                f,
                "no peer named or keyed {} in {conf}: expected a name or public key from `wgp2p status`",
                quoted(&selector.to_string())
            ),
            PlanError::RelayNotFound { selector, conf } => write!(
                f,
                "no peer named or keyed {} in {conf} to relay through: expected a name or key from `wgp2p status`",
                quoted(&selector.to_string())
            ),
            PlanError::RelaysOthers { peer, relayed } => write!(
                f,
                "peer {} relays {}: make them direct (`wgp2p relay NAME direct`) or remove them first",
                quoted(peer),
                relayed.join(", ")
            ),
            PlanError::RelayerRelayed { peer } => write!(
                f,
                "peer {} relays others itself: make them direct first (`wgp2p relay NAME direct`)",
                quoted(peer)
            ),
            PlanError::RelayIsThisNode => write!(
                f,
                "cannot relay through this node itself: expected another mesh peer"
            ),
            PlanError::RelayThroughItself { peer } => write!(
                f,
                "peer {} cannot be relayed through itself: expected another peer as relay",
                quoted(peer)
            ),
            PlanError::RelayIsRelayed { relay, via } => write!(
                f,
                "relay {} is itself relayed via {via}: expected a peer with a direct tunnel",
                quoted(relay)
            ),
            PlanError::AlreadyDirect { peer } => write!(
                f,
                "peer {} is already direct: nothing to change",
                quoted(peer)
            ),
            PlanError::ImportedKeyIsPeer { key, peer } => write!(
                f,
                "the imported key's public key {key} is peer {}: expected a key of this node, not of a peer",
                quoted(peer)
            ),
            PlanError::HandAddedInRoster {
                peer,
                key,
                entry,
                roster,
            } => write!(
                f,
                "peer {} (key {key}) was added by hand and {entry} has the same key: run `wgp2p sync --adopt {roster}` to let the roster manage it, or take it out of the roster",
                quoted(peer)
            ),
            PlanError::RemovedPeerRelays { peer, relayed } => write!(
                f,
                "peer {} would be removed but relays {}: make it direct first (`wgp2p relay {relayed} direct`)",
                quoted(peer),
                quoted(relayed)
            ),
            PlanError::RepeatedEntry {
                first,
                second,
                repeat,
            } => {
                write!(f, "{first} and {second} ")?;
                match repeat {
                    Repeat::Key(key) => write!(f, "have the same public_key {key}")?,
                    Repeat::Name(a, b) => {
                        write!(f, "have the same name with different keys ({a} and {b})")?;
                    }
                    Repeat::Address(ip) => write!(f, "have the same address {ip}")?,
                }
                write!(f, ": expected one entry per node")
            }
            PlanError::OwnNameOtherKey {
                entry,
                name,
                theirs,
                ours,
            } => write!(
                f,
                "{entry} has this node's name {} but public_key {theirs}, not this node's {ours}: a roster may not give this node's name to another key",
                quoted(name.as_str())
            ),
            PlanError::OwnEntryDiffers { entry, difference } => {
                let (what, theirs, ours) = match difference {
                    OwnDifference::Name { theirs, ours } => {
                        ("name", quoted(theirs.as_str()), quoted(ours.as_str()))
                    }
                    OwnDifference::Address { theirs, ours } => {
                        ("address", theirs.to_string(), ours.to_string())
                    }
                    OwnDifference::Endpoint { theirs, ours } => {
                        ("endpoint", theirs.to_string(), ours.to_string())
                    }
                };
                write!(
                    f,
                    "{entry} has this node's public key but {what} {theirs}, not this node's {ours}: a roster may not change this node (run `wgp2p export` here for its entry)"
                )
            }
            PlanError::KeptPeerName {
                entry,
                name,
                relayed,
                key,
            } => {
                let how = if *relayed { "relayed" } else { "added by hand" };
                write!(
                    f,
                    "{entry} has the name of peer {} ({how}, key {key}): rename one of them",
                    quoted(name.as_str())
                )
            }
            PlanError::RosterOverlap {
                entry,
                net,
                other,
                owner,
            } => {
                write!(f, "{entry}: allowed IP {net} overlaps {other} of ")?;
                match owner {
                    RouteOwner::ThisNode => write!(f, "this node's own address")?,
                    RouteOwner::Entry(label) => write!(f, "{label}")?,
                    RouteOwner::Kept(peer) => {
                        write!(f, "peer {} (not from the roster)", quoted(peer))?;
                    }
                }
                write!(f, ": expected addresses no other peer routes")
            }
            PlanError::TrustOwnKey { key } => write!(
                f,
                "public key {key} is this node's own key: expected a member's name or key"
            ),
            PlanError::NotTrusted { selector } => write!(
                f,
                "{} is not trusted: expected a name or key that `wgp2p trust` lists",
                quoted(&selector.to_string())
            ),
            PlanError::IntroductionChangesPeer {
                peer,
                key,
                name,
                nets,
            } => {
                write!(
                    f,
                    "peer {} (key {key}) is already configured with ",
                    quoted(peer)
                )?;
                match name {
                    Some(name) => write!(f, "name {name}")?,
                    None => write!(f, "no name")?,
                }
                write!(
                    f,
                    " and allowed IPs {}: an introduction never changes a peer",
                    crate::plan::join_nets(nets)
                )
            }
            PlanError::IntroductionOutsideVpn { peer, ip, network } => write!(
                f,
                "address {ip} of introduced peer {} is not a host of this VPN's network {network}: expected one host address inside it (an introduction never routes anything else into the tunnel)",
                quoted(peer)
            ),
            PlanError::NotIntroduced { peer } => write!(
                f,
                "peer {} was not added by an introduction (by hand, a roster or provisioning): only `wgp2p remove-peer {peer}` here removes it",
                quoted(peer)
            ),
            PlanError::DefaultRoute { entry, net } => write!(
                f,
                "{entry}: allowed IP {net} would send all of this node's traffic to it: expected `exit_node = true` in the entry to make it an exit node (docs/roster.md, \"Growing the mesh: export and sync\")"
            ),
            PlanError::OutsideSpace {
                entry,
                net,
                allowed,
            } => write!(
                f,
                "{entry}: allowed IP {net} is outside what it may route: expected {allowed} (docs/roster.md, \"Growing the mesh: export and sync\")"
            ),
            PlanError::CoversProtected {
                entry,
                net,
                what,
                ip,
            } => write!(
                f,
                "{entry}: allowed IP {net} covers {what} ({ip}): routing it into the tunnel would cut the tunnel; expected a network without it, or `subnet_router = true` in the entry (docs/roster.md, \"Growing the mesh: export and sync\")"
            ),
            PlanError::AddressIsProtected { entry, ip, what } => write!(
                f,
                "{entry}: address {ip} is {what}: routing it into the tunnel would cut the tunnel; expected a VPN address that is no endpoint and no address of this host"
            ),
            PlanError::PeerAddressIsProtected { peer, ip, what } => write!(
                f,
                "peer {}: address {ip} is {what}: wg-quick would route it into the tunnel and cut the tunnel; expected a VPN address that is no endpoint and no address of this host",
                quoted(peer)
            ),
            PlanError::PeerRouteCovers {
                peer,
                net,
                ip,
                what,
                of,
            } => {
                match of {
                    RoutesOf::Via(relay) => write!(
                        f,
                        "address {net} of peer {} covers {what} ({ip}): routed via {} it would cut the tunnel; ",
                        quoted(peer),
                        quoted(relay)
                    )?,
                    RoutesOf::Direct | RoutesOf::Restored => write!(
                        f,
                        "allowed IP {net} of peer {} covers {what} ({ip}): wg-quick would route it into the tunnel and cut the tunnel; ",
                        quoted(peer)
                    )?,
                }
                write!(f, "expected networks that leave {ip} out")?;
                match of {
                    RoutesOf::Direct | RoutesOf::Via(_) => {
                        write!(f, " (add-peer's `--allowed-ips` sets the peer's networks)")
                    }
                    RoutesOf::Restored => write!(
                        f,
                        " (`wgp2p remove-peer {peer}`, then add it again with `--allowed-ips` without it)"
                    ),
                }
            }
        }
    }
}

impl std::error::Error for PlanError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::plan::fixtures::KEY_A;

    #[test]
    fn refusals_read_as_one_line_with_their_advice_and_exit_code() {
        let not_found = PlanError::NotFound {
            selector: "Bob laptop".parse().unwrap(),
            conf: "wg0.conf".into(),
        };
        assert_eq!(
            not_found.to_string(),
            "no peer named or keyed \"Bob laptop\" in wg0.conf: expected a name or public key from `wgp2p status`"
        );
        assert_eq!(Error::from(not_found).code(), 4);
        let relayed = PlanError::RelayedPeer {
            peer: "far".into(),
            via: "relay".into(),
        };
        assert_eq!(
            relayed.to_string(),
            "peer \"far\" is relayed via relay: `wgp2p relay far direct` to make it direct, or `wgp2p remove-peer far` first"
        );
        assert_eq!(Error::from(relayed).code(), 3);
        let repeated = PlanError::RepeatedEntry {
            first: "r.toml entry #1 (\"a\")".into(),
            second: "r.toml entry #2 (\"a\")".into(),
            repeat: Repeat::Key(KEY_A.parse().unwrap()),
        };
        assert_eq!(
            repeated.to_string(),
            format!(
                "r.toml entry #1 (\"a\") and r.toml entry #2 (\"a\") have the same public_key {KEY_A}: expected one entry per node"
            )
        );
    }

    #[test]
    fn route_safety_refusals_name_the_value_and_what_is_expected() {
        let address = PlanError::PeerAddressIsProtected {
            peer: "y".into(),
            ip: "198.51.100.9".parse().unwrap(),
            what: "the endpoint of peer \"y\"".into(),
        };
        assert_eq!(
            address.to_string(),
            "peer \"y\": address 198.51.100.9 is the endpoint of peer \"y\": wg-quick would route it into the tunnel and cut the tunnel; expected a VPN address that is no endpoint and no address of this host"
        );
        let covers = |of: RoutesOf| PlanError::PeerRouteCovers {
            peer: "bob".into(),
            net: "198.51.100.0/24".parse().unwrap(),
            ip: "198.51.100.2".parse().unwrap(),
            what: "the endpoint of peer \"alice\"".into(),
            of,
        };
        assert_eq!(
            covers(RoutesOf::Direct).to_string(),
            "allowed IP 198.51.100.0/24 of peer \"bob\" covers the endpoint of peer \"alice\" (198.51.100.2): wg-quick would route it into the tunnel and cut the tunnel; expected networks that leave 198.51.100.2 out (add-peer's `--allowed-ips` sets the peer's networks)"
        );
        assert_eq!(
            covers(RoutesOf::Via("alice".into())).to_string(),
            "address 198.51.100.0/24 of peer \"bob\" covers the endpoint of peer \"alice\" (198.51.100.2): routed via \"alice\" it would cut the tunnel; expected networks that leave 198.51.100.2 out (add-peer's `--allowed-ips` sets the peer's networks)"
        );
        assert_eq!(
            covers(RoutesOf::Restored).to_string(),
            "allowed IP 198.51.100.0/24 of peer \"bob\" covers the endpoint of peer \"alice\" (198.51.100.2): wg-quick would route it into the tunnel and cut the tunnel; expected networks that leave 198.51.100.2 out (`wgp2p remove-peer bob`, then add it again with `--allowed-ips` without it)"
        );
        for refusal in [
            address,
            covers(RoutesOf::Direct),
            covers(RoutesOf::Via("alice".into())),
            covers(RoutesOf::Restored),
        ] {
            assert_eq!(Error::from(refusal).code(), 3);
        }
    }

    #[test]
    fn route_refusals_name_a_docs_section_that_exists() {
        let page = include_str!("../../docs/roster.md");
        let refusals = [
            PlanError::DefaultRoute {
                entry: "r.toml entry #1 (\"a\")".into(),
                net: "::/0".parse().unwrap(),
            },
            PlanError::CoversProtected {
                entry: "r.toml entry #1 (\"a\")".into(),
                net: "192.0.2.0/25".parse().unwrap(),
                what: "an address of this host".into(),
                ip: "192.0.2.2".parse().unwrap(),
            },
        ];
        for refusal in refusals {
            let text = refusal.to_string();
            let section = text
                .split("(docs/roster.md, \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no docs/roster.md section named in: {text}"));
            assert!(
                page.contains(&format!("\n## {section}\n")),
                "docs/roster.md has no section {section:?}: {text}"
            );
        }
    }
}
