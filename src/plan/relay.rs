//! Relaying: a peer that cannot be reached directly (both sides behind
//! symmetric NAT) is reached through another peer. Its addresses go onto
//! the relay's section as an `AllowedIPs` line of their own, and a
//! `# Relay = …` line beside it remembers the peer (its key, addresses and
//! whole section text) so `relay NAME direct` can give the section back byte
//! for byte. Pure functions, like the rest of `plan`.

use ipnet::IpNet;

use crate::config::document::{Document, Section, is_wg_space, keys};
use crate::config::node::{PeerEntry, Relayed, peers};
use crate::error::plan::{PlanError, RoutesOf, Tunnel};
use crate::error::{Error, Result};
use crate::plan::{
    AddPeer, Own, add_peer, check_new_peer, check_routes, find_peer, join_nets, not_found,
    overlaps, route_refusal, routes,
};
use crate::types::{AllowedIps, PeerIp, PeerSelector, WrittenEndpoint, WrittenName, quoted};
use crate::wg::{Delta, PresharedKey};

/// Where a peer sits in the config.
#[derive(Clone, Copy)]
pub enum Found<'a> {
    Direct(&'a PeerEntry),
    Relayed {
        via: &'a PeerEntry,
        peer: &'a Relayed,
    },
}

/// Find a peer, direct or relayed, by name or key.
pub fn locate<'a>(entries: &'a [PeerEntry], selector: &PeerSelector) -> Option<Found<'a>> {
    if let Some(direct) = find_peer(entries, selector) {
        return Some(Found::Direct(direct));
    }
    entries.iter().find_map(|via| {
        via.relayed
            .iter()
            .find(|r| r.is(selector))
            .map(|peer| Found::Relayed { via, peer })
    })
}

/// The relay's live update: its whole AllowedIPs list (WireGuard replaces
/// it as a unit), its keepalive; its endpoint is left as the device has it.
fn relay_delta(relay: &PeerEntry, nets: Vec<IpNet>) -> Delta {
    Delta::UpsertPeer {
        public_key: relay.public_key,
        endpoint: None,
        allowed_ips: nets,
        keepalive: relay.keepalive,
    }
}

/// Take `peer` off the relay `via`: its nets leave the relay's AllowedIPs
/// lines (a line left with none goes) and its `# Relay` line goes.
fn unroute(doc: &mut Document, via: &PeerEntry, peer: &Relayed) -> Delta {
    let nets: Vec<IpNet> = via
        .allowed_ips
        .iter()
        .filter(|n| !peer.nets.contains(n))
        .copied()
        .collect();
    doc.edit_peer_values(&via.public_key, keys::ALLOWED_IPS, |value| {
        let squeezed: String = value.chars().filter(|c| !is_wg_space(*c)).collect();
        let entries: Vec<&str> = squeezed.split(',').filter(|e| !e.is_empty()).collect();
        let kept: Vec<&str> = entries
            .iter()
            .copied()
            .filter(|e| {
                e.parse::<IpNet>().map_or(true, |n| !peer.nets.contains(&n))
                    && e.parse::<std::net::IpAddr>()
                        .map_or(true, |ip| !peer.nets.contains(&IpNet::from(ip)))
            })
            .collect();
        if kept.len() == entries.len() {
            None
        } else if kept.is_empty() {
            Some(None)
        } else {
            Some(Some(kept.join(", ")))
        }
    });
    let key = peer.public_key.to_string();
    doc.remove_tags(&via.public_key, keys::TAG_RELAY, |v| {
        v.split_whitespace().nth(1) == Some(key.as_str())
    });
    relay_delta(via, nets)
}

fn relay_peer<'a>(
    doc: &Document,
    entries: &'a [PeerEntry],
    own: &Own,
    selector: &PeerSelector,
) -> Result<&'a PeerEntry> {
    if *selector == PeerSelector::Key(own.public_key) {
        return Err(PlanError::RelayIsThisNode.into());
    }
    match locate(entries, selector) {
        Some(Found::Direct(relay)) => Ok(relay),
        Some(Found::Relayed { via, peer }) => Err(PlanError::RelayIsRelayed {
            relay: peer.display_name().to_string(),
            via: via.display_name().to_string(),
        }
        .into()),
        None => Err(PlanError::RelayNotFound {
            selector: selector.clone(),
            conf: doc.origin().to_string(),
        }
        .into()),
    }
}

/// Refuse what would make `peer` ambiguous or steal another peer's traffic.
fn check_relayed(
    entries: &[PeerEntry],
    own: &Own,
    peer: &Relayed,
    relay: &PeerEntry,
) -> Result<()> {
    if peer.public_key == relay.public_key {
        return Err(PlanError::RelayThroughItself {
            peer: peer.display_name().to_string(),
        }
        .into());
    }
    if peer.public_key == own.public_key {
        return Err(PlanError::OwnKey {
            key: peer.public_key,
            tunnel: Tunnel::Relayed,
        }
        .into());
    }
    let others = entries.iter().filter(|e| e.public_key != peer.public_key);
    for other in others {
        if peer.name.is_some() && other.name == peer.name {
            return Err(PlanError::NameTaken {
                name: peer.display_name().to_string(),
                key: other.public_key,
                tunnel: Tunnel::Relayed,
            }
            .into());
        }
        let carried: Vec<&IpNet> = other
            .relayed
            .iter()
            .filter(|r| r.public_key == peer.public_key)
            .flat_map(|r| &r.nets)
            .collect();
        for net in &peer.nets {
            let clash = other
                .allowed_ips
                .iter()
                .find(|o| overlaps(net, o) && !carried.contains(o));
            if let Some(o) = clash {
                return Err(PlanError::Overlap {
                    net: *net,
                    other: *o,
                    peer: other.display_name().to_string(),
                    tunnel: Tunnel::Relayed,
                }
                .into());
            }
        }
    }
    if let Some(net) = peer.nets.iter().find(|n| n.contains(&own.address.ip())) {
        return Err(PlanError::OwnAddress {
            net: *net,
            own: own.address.ip(),
            tunnel: Tunnel::Relayed,
        }
        .into());
    }
    Ok(())
}

/// Route safety (`plan::routes`): `peer`'s addresses join the relay's
/// routes, so they may not hold the relay's endpoint (its tunnel would
/// carry its own packets), any other peer's, the peer's own or this host's.
fn check_relayed_routes(
    entries: &[PeerEntry],
    own: &Own,
    peer: &Relayed,
    relay: &PeerEntry,
) -> Result<()> {
    let mut needed = routes::Needed::new(&own.host);
    needed.config_endpoints(entries, |_| false);
    let endpoint = peer.endpoint.as_ref().and_then(WrittenEndpoint::parsed);
    needed.endpoint(endpoint.as_ref(), || {
        format!("the endpoint of peer {}", quoted(peer.display_name()))
    });
    let joined = routes::Routes {
        address: None,
        nets: &peer.nets,
        role: routes::Role::Peer,
    };
    routes::check(&needed, &[joined]).map_err(|e| {
        route_refusal(
            e,
            peer.display_name(),
            RoutesOf::Via(relay.display_name().to_string()),
        )
        .into()
    })
}

/// A peer moved onto a relay: the new config, the live change, and the
/// peer's record as the relay's section now keeps it.
pub struct Moved {
    pub doc: Document,
    pub deltas: Vec<Delta>,
    pub peer: Relayed,
}

/// `relay PEER via RELAY`, the one move `wgp2p relay` and the agent's
/// auto-relay both make: the peer, direct or relayed by another, goes via
/// `relay`.
pub fn move_via(
    doc: &Document,
    own: &Own,
    selector: &PeerSelector,
    relay: &PeerSelector,
) -> Result<Moved> {
    let entries = peers(doc)?;
    let peer = match locate(&entries, selector) {
        Some(Found::Direct(entry)) => as_relayed(doc, entry),
        Some(Found::Relayed { peer, .. }) => peer.clone(),
        None => return Err(not_found(doc, selector).into()),
    };
    let (doc, deltas) = route_via(doc, own, &peer, relay)?;
    Ok(Moved { doc, deltas, peer })
}

/// Route `peer` through the peer `relay_selector` names. A direct
/// section for it is removed (and kept in the `# Relay` line); a route
/// through another relay is moved.
pub fn route_via(
    doc: &Document,
    own: &Own,
    peer: &Relayed,
    relay_selector: &PeerSelector,
) -> Result<(Document, Vec<Delta>)> {
    let entries = peers(doc)?;
    let relay = relay_peer(doc, &entries, own, relay_selector)?;
    if relay
        .relayed
        .iter()
        .any(|r| r.public_key == peer.public_key)
    {
        return Ok((doc.clone(), Vec::new()));
    }
    check_relayed(&entries, own, peer, relay)?;
    check_relayed_routes(&entries, own, peer, relay)?;
    if entries
        .iter()
        .any(|e| e.public_key == peer.public_key && !e.relayed.is_empty())
    {
        return Err(PlanError::RelayerRelayed {
            peer: peer.display_name().to_string(),
        }
        .into());
    }
    let mut new_doc = doc.clone();
    let mut deltas = Vec::new();
    // Leave the old route: another relay, or the direct tunnel.
    let mut stored = peer.clone();
    for via in entries.iter().filter(|e| e.public_key != relay.public_key) {
        if let Some(old) = via.relayed.iter().find(|r| r.public_key == peer.public_key) {
            deltas.push(unroute(&mut new_doc, via, old));
            if stored.section.is_none() {
                stored.section.clone_from(&old.section);
            }
        }
    }
    if entries.iter().any(|e| e.public_key == peer.public_key) {
        if let Some(text) = new_doc.remove_peer(&peer.public_key)
            && stored.section.is_none()
        {
            stored.section = Some(text);
        }
        deltas.push(Delta::RemovePeer(peer.public_key));
    }
    let added: Vec<IpNet> = peer
        .nets
        .iter()
        .filter(|n| !relay.allowed_ips.contains(n))
        .copied()
        .collect();
    new_doc.add_tag(&relay.public_key, keys::TAG_RELAY, &stored.tag());
    if !added.is_empty() {
        new_doc.add_peer_line(&relay.public_key, keys::ALLOWED_IPS, &join_nets(&added));
    }
    let mut nets = relay.allowed_ips.clone();
    nets.extend(added);
    deltas.push(relay_delta(relay, nets));
    Ok((new_doc, deltas))
}

/// The relayed record of a direct peer, for `relay NAME via RELAY`: its
/// section text goes with it, so nothing of it is lost.
pub fn as_relayed(doc: &Document, entry: &PeerEntry) -> Relayed {
    Relayed {
        name: entry.name.clone(),
        public_key: entry.public_key,
        endpoint: entry.endpoint.clone(),
        nets: entry.allowed_ips.clone(),
        section: doc.peer(&entry.public_key).map(Section::block_text),
    }
}

/// Make a relayed peer direct again: its route leaves the relay and its
/// own `[Peer]` section comes back as it was (appended at the end). A peer
/// remembered without its section (by an older wgp2p, or added with
/// `--via`) comes back as `add-peer` would add it.
pub fn make_direct(
    doc: &Document,
    own: &Own,
    selector: &PeerSelector,
) -> Result<(Document, Vec<Delta>, String)> {
    let entries = peers(doc)?;
    let (via, peer) = match locate(&entries, selector) {
        Some(Found::Relayed { via, peer }) => (via, peer),
        Some(Found::Direct(entry)) => {
            return Err(PlanError::AlreadyDirect {
                peer: entry.display_name().to_string(),
            }
            .into());
        }
        None => return Err(not_found(doc, selector).into()),
    };
    let mut new_doc = doc.clone();
    let mut deltas = vec![unroute(&mut new_doc, via, peer)];
    let name = peer.display_name().to_string();
    if let Some(text) = &peer.section {
        let remaining = peers(&new_doc)?;
        check_new_peer(
            &remaining,
            own,
            &peer.public_key,
            peer.name.as_ref(),
            &peer.nets,
        )?;
        let endpoint = peer.endpoint.as_ref().and_then(WrittenEndpoint::parsed);
        check_routes(
            &remaining,
            own,
            &peer.public_key,
            peer.display_name(),
            endpoint.as_ref(),
            None,
            &peer.nets,
            RoutesOf::Restored,
        )?;
        if !new_doc.append_block(text) {
            return Err(bad_relay_line(doc, peer));
        }
        let restored = peers(&new_doc)?
            .into_iter()
            .find(|e| e.public_key == peer.public_key)
            .ok_or_else(|| bad_relay_line(doc, peer))?;
        let preshared_key = new_doc
            .peer(&peer.public_key)
            .and_then(|s| s.get_last(keys::PRESHARED_KEY))
            .and_then(PresharedKey::parse);
        deltas.push(Delta::UpsertPeer {
            public_key: restored.public_key,
            endpoint: restored.endpoint.as_ref().and_then(WrittenEndpoint::parsed),
            allowed_ips: restored.allowed_ips,
            keepalive: restored.keepalive,
        });
        if preshared_key.is_some() {
            deltas.push(Delta::SetPresharedKey {
                public_key: restored.public_key,
                key: preshared_key,
            });
        }
        return Ok((new_doc, deltas, name));
    }
    let (first, rest) = peer
        .nets
        .split_first()
        .ok_or_else(|| bad_relay_line(doc, peer))?;
    let (Some(peer_name), Some(endpoint)) = (
        peer.name.as_ref().and_then(WrittenName::as_peer_name),
        peer.endpoint.as_ref().and_then(WrittenEndpoint::parsed),
    ) else {
        return Err(bad_relay_line(doc, peer));
    };
    let request = AddPeer {
        name: peer_name,
        endpoint,
        public_key: peer.public_key,
        peer_ip: PeerIp::from(first.addr()),
        extra_allowed_ips: Some(AllowedIps::from(rest.to_vec())),
        keepalive: None,
    };
    let (direct_doc, delta, _) = add_peer(new_doc, own, &request)?;
    deltas.extend(delta);
    Ok((direct_doc, deltas, name))
}

fn bad_relay_line(doc: &Document, peer: &Relayed) -> Error {
    Error::BadConfig(format!(
        "{}: the # Relay line of {} ({}) cannot restore a direct peer: expected a name, an endpoint and an address, or the peer's section",
        doc.origin(),
        quoted(peer.display_name()),
        peer.public_key
    ))
}

/// Remove a relayed peer: only its route through the relay goes.
pub fn remove_relayed(doc: Document, via: &PeerEntry, peer: &Relayed) -> (Document, Delta) {
    let mut new_doc = doc;
    let delta = unroute(&mut new_doc, via, peer);
    (new_doc, delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{KEY_A as RELAY, KEY_B as FAR, KEY_C as OTHER, own};

    fn sel(text: &str) -> PeerSelector {
        text.parse().unwrap()
    }

    fn add(doc: &Document, name: &str, key: &str, ip: &str) -> Document {
        let request = AddPeer {
            name: name.parse().unwrap(),
            endpoint: "192.0.2.9:51820".parse().unwrap(),
            public_key: key.parse().unwrap(),
            peer_ip: ip.parse().unwrap(),
            extra_allowed_ips: None,
            keepalive: None,
        };
        add_peer(doc.clone(), &own(), &request).unwrap().0
    }

    fn mesh() -> Document {
        let doc = Document::parse("[Interface]\nAddress = 10.15.0.1/24\n").unwrap();
        let doc = add(&doc, "relay", RELAY, "10.15.0.2");
        let doc = add(&doc, "far", FAR, "10.15.0.3");
        add(&doc, "other", OTHER, "10.15.0.4")
    }

    /// A relayed peer's addresses join the relay's routes: one over the
    /// relay's endpoint would send the relay's own packets into its tunnel.
    #[test]
    fn relayed_addresses_may_not_cover_an_endpoint() {
        let doc = Document::parse(&format!(
            "[Interface]\nAddress = 10.15.0.1/24\n[Peer]\n# Name = relay\nPublicKey = {RELAY}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32\n[Peer]\n# Name = far\nPublicKey = {FAR}\nEndpoint = 198.51.100.3:51820\nAllowedIPs = 10.15.0.3/32, 192.0.2.0/24\n"
        ))
        .unwrap();
        let far = relayed(&doc, "far");
        let e = route_via(&doc, &own(), &far, &sel("relay")).unwrap_err();
        assert!(
            matches!(&e, Error::Plan(PlanError::PeerRouteCovers { peer, net, what, of: RoutesOf::Via(relay), .. })
                if peer == "far" && net.to_string() == "192.0.2.0/24" && what == "the endpoint of peer \"relay\"" && relay == "relay"),
            "{e:?}"
        );
        // add-peer --via: the request's own endpoint counts too.
        let new = Relayed {
            name: Some("new".parse().unwrap()),
            public_key: OTHER.parse().unwrap(),
            endpoint: Some("203.0.113.9:51820".parse().unwrap()),
            nets: vec![
                "10.15.0.9/32".parse().unwrap(),
                "203.0.113.0/28".parse().unwrap(),
            ],
            section: None,
        };
        let e = route_via(&doc, &own(), &new, &sel("relay")).unwrap_err();
        assert!(
            matches!(&e, Error::Plan(PlanError::PeerRouteCovers { what, .. }) if what == "the endpoint of peer \"new\""),
            "{e:?}"
        );
        let mut fine = new.clone();
        fine.nets.truncate(1);
        assert!(route_via(&doc, &own(), &fine, &sel("relay")).is_ok());
    }

    /// `relay NAME direct` brings the peer's networks back as its own
    /// routes: they may not hold an endpoint added meanwhile.
    #[test]
    fn direct_again_may_not_cover_an_endpoint() {
        let doc = Document::parse("[Interface]\nAddress = 10.15.0.1/24\n").unwrap();
        let doc = add(&doc, "relay", RELAY, "10.15.0.2");
        let mut far = AddPeer {
            name: "far".parse().unwrap(),
            endpoint: "192.0.2.9:51820".parse().unwrap(),
            public_key: FAR.parse().unwrap(),
            peer_ip: "10.15.0.3".parse().unwrap(),
            extra_allowed_ips: Some("198.51.100.0/24".parse().unwrap()),
            keepalive: None,
        };
        let doc = add_peer(doc, &own(), &far).unwrap().0;
        let (doc, _) = route_via(&doc, &own(), &relayed(&doc, "far"), &sel("relay")).unwrap();
        // A peer added meanwhile whose endpoint far's subnet holds (only
        // the routes a change brings are checked: this add is not refused).
        far.name = "late".parse().unwrap();
        far.public_key = OTHER.parse().unwrap();
        far.endpoint = "198.51.100.5:51820".parse().unwrap();
        far.peer_ip = "10.15.0.5".parse().unwrap();
        far.extra_allowed_ips = None;
        let doc = add_peer(doc, &own(), &far).unwrap().0;
        let e = make_direct(&doc, &own(), &sel("far")).unwrap_err();
        assert!(
            matches!(&e, Error::Plan(PlanError::PeerRouteCovers { peer, net, what, of: RoutesOf::Restored, .. })
                if peer == "far" && net.to_string() == "198.51.100.0/24" && what == "the endpoint of peer \"late\""),
            "{e:?}"
        );
    }

    fn relayed(doc: &Document, name: &str) -> Relayed {
        let entries = peers(doc).unwrap();
        let Some(Found::Direct(entry)) = locate(&entries, &sel(name)) else {
            panic!("{name} is not direct")
        };
        as_relayed(doc, entry)
    }

    #[test]
    fn switching_to_relayed_and_back() {
        let start = mesh();
        let (doc, deltas) =
            route_via(&start, &own(), &relayed(&start, "far"), &sel("relay")).unwrap();
        let text = doc.render();
        assert!(
            text.contains(&format!(
                "# Relay = far {FAR} 192.0.2.9:51820 10.15.0.3/32 b64:"
            )),
            "{text}"
        );
        assert!(
            text.contains("\nAllowedIPs = 10.15.0.3/32\n\n[Peer]\n# Name = other"),
            "{text}"
        );
        assert!(!text.contains("# Name = far"));
        assert_eq!(deltas.len(), 2);
        assert_eq!(deltas[0], Delta::RemovePeer(FAR.parse().unwrap()));
        assert!(
            matches!(&deltas[1], Delta::UpsertPeer { allowed_ips, .. } if allowed_ips.len() == 2)
        );
        let entries = peers(&doc).unwrap();
        assert!(matches!(
            locate(&entries, &sel("far")),
            Some(Found::Relayed { .. })
        ));

        let (back, deltas, name) = make_direct(&doc, &own(), &sel("far")).unwrap();
        assert_eq!(name, "far");
        assert_eq!(deltas.len(), 2);
        let text = back.render();
        assert!(!text.contains("# Relay"));
        let far = start.peer(&FAR.parse().unwrap()).unwrap().block_text();
        assert_eq!(back.peer(&FAR.parse().unwrap()).unwrap().block_text(), far);
        assert_eq!(
            back.peer(&RELAY.parse().unwrap()).unwrap().block_text(),
            start.peer(&RELAY.parse().unwrap()).unwrap().block_text()
        );
    }

    /// Reproduction: `relay NAME via R` then `relay NAME direct` dropped the
    /// PresharedKey, turned 192.168.50.0/24 into /32 and dropped comments.
    #[test]
    fn a_relay_round_trip_gives_the_section_back() {
        let psk = "FIdH/I/aAmjEtXsQ96tzzZkNRnV2a26clyAqfkUqkwA=";
        let far_block = format!(
            "# the far office\n[Peer] # far\n# Name = Bob laptop\nPublicKey = {FAR}\nPresharedKey = {psk}\nAllowedIPs = 10.15.0.3 # tunnel\nallowedips = 192.168.50.0/24\nEndpoint = 192.0.2.3:51820\nPersistentKeepalive = 7"
        );
        let text = format!(
            "[Interface]\nAddress = 10.15.0.1/24\n\n[Peer]\n# Name = relay\nPublicKey = {RELAY}\nAllowedIPs = 10.15.0.2 # relay\nEndpoint = 192.0.2.2:51820\n\n{far_block}\n"
        );
        let start = Document::parse(&text).unwrap();
        let (via, _) = route_via(
            &start,
            &own(),
            &relayed(&start, "Bob laptop"),
            &sel("relay"),
        )
        .unwrap();
        let via_text = via.render();
        assert!(via_text.contains("# Relay = - "), "{via_text}");
        assert!(
            via_text.contains("AllowedIPs = 10.15.0.2 # relay\n"),
            "{via_text}"
        );
        let entries = peers(&Document::parse(&via_text).unwrap()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].allowed_ips.len(), 3);
        assert_eq!(entries[0].relayed[0].display_name(), "Bob laptop");
        let (back, deltas, _) = make_direct(
            &Document::parse(&via_text).unwrap(),
            &own(),
            &sel("Bob laptop"),
        )
        .unwrap();
        assert_eq!(back.render(), text);
        assert!(matches!(
            &deltas[1],
            Delta::UpsertPeer { keepalive: Some(7), allowed_ips, .. } if allowed_ips.len() == 2
        ));
        assert!(matches!(
            &deltas[2],
            Delta::SetPresharedKey { key: Some(_), .. }
        ));
    }

    #[test]
    fn a_legacy_relay_line_still_comes_back() {
        let text = format!(
            "[Interface]\nAddress = 10.15.0.1/24\n\n[Peer]\n# Name = relay\nPublicKey = {RELAY}\nAllowedIPs = 10.15.0.2/32, 10.15.0.3/32\n# Relay = far {FAR} 192.0.2.9:51820 10.15.0.3/32\n"
        );
        let doc = Document::parse(&text).unwrap();
        let (back, _, _) = make_direct(&doc, &own(), &sel(FAR)).unwrap();
        let out = back.render();
        assert!(out.contains("AllowedIPs = 10.15.0.2/32\n"), "{out}");
        assert!(out.contains(&format!("[Peer]\n# Name = far\nPublicKey = {FAR}\nEndpoint = 192.0.2.9:51820\nAllowedIPs = 10.15.0.3/32\nPersistentKeepalive = 25\n")), "{out}");
    }

    #[test]
    fn bad_relays_are_refused() {
        let far = relayed(&mesh(), "far");
        let own_key = own().public_key.to_string();
        let refusal = |doc: &Document, peer: &Relayed, relay: &str| match route_via(
            doc,
            &own(),
            peer,
            &sel(relay),
        ) {
            Err(Error::Plan(refused)) => refused,
            other => panic!("{relay}: expected a refusal, got {:?}", other.map(|r| r.1)),
        };
        assert!(matches!(
            refusal(&mesh(), &far, "nobody"),
            PlanError::RelayNotFound { .. }
        ));
        assert_eq!(
            refusal(&mesh(), &far, "far"),
            PlanError::RelayThroughItself { peer: "far".into() }
        );
        assert_eq!(refusal(&mesh(), &far, &own_key), PlanError::RelayIsThisNode);
        // Through a peer that is itself relayed.
        let (doc, _) = route_via(&mesh(), &own(), &far, &sel("relay")).unwrap();
        let other = relayed(&doc, "other");
        assert_eq!(
            refusal(&doc, &other, "far"),
            PlanError::RelayIsRelayed {
                relay: "far".into(),
                via: "relay".into()
            }
        );
        // An address another peer routes.
        let mut clash = relayed(&mesh(), "far");
        clash.nets = vec!["10.15.0.4/32".parse().unwrap()];
        assert!(matches!(
            refusal(&mesh(), &clash, "relay"),
            PlanError::Overlap { other, tunnel: Tunnel::Relayed, .. } if other.to_string() == "10.15.0.4/32"
        ));
        assert!(matches!(
            make_direct(&mesh(), &own(), &sel("far")),
            Err(Error::Plan(PlanError::AlreadyDirect { .. }))
        ));
    }

    #[test]
    fn removing_a_relayed_peer_drops_its_route() {
        let start = mesh();
        let (doc, _) = route_via(&start, &own(), &relayed(&start, "far"), &sel("relay")).unwrap();
        let entries = peers(&doc).unwrap();
        let Some(Found::Relayed { via, peer }) = locate(&entries, &sel(FAR)) else {
            panic!("not relayed")
        };
        let (after, delta) = remove_relayed(doc.clone(), via, peer);
        assert!(!after.render().contains("10.15.0.3") && !after.render().contains("# Relay"));
        assert_eq!(
            after.peer(&RELAY.parse().unwrap()).unwrap().block_text(),
            start.peer(&RELAY.parse().unwrap()).unwrap().block_text()
        );
        assert!(
            matches!(delta, Delta::UpsertPeer { ref allowed_ips, .. } if allowed_ips.len() == 1)
        );
    }
}
