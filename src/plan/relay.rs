//! Relaying: a peer that cannot be reached directly (both sides behind
//! symmetric NAT) is reached through another peer. Its addresses move onto
//! the relay's AllowedIPs, and a `# Relay = …` line in the relay's section
//! remembers the peer (name, key, endpoint, addresses) so it can be made
//! direct again. Pure functions, like the rest of `plan`.

use ipnet::IpNet;

use crate::config::document::Document;
use crate::config::node::{PeerEntry, Relayed, peers};
use crate::error::{Error, Result};
use crate::plan::{AddPeer, Delta, Outcome, Own, add_peer, find_peer, overlaps};
use crate::types::{Endpoint, PeerIp, PublicKey, quoted};

/// Where a peer sits in the config.
pub enum Found<'a> {
    Direct(&'a PeerEntry),
    Relayed {
        via: &'a PeerEntry,
        peer: &'a Relayed,
    },
}

/// Find a peer, direct or relayed, by name or key.
pub fn locate<'a>(entries: &'a [PeerEntry], selector: &str) -> Option<Found<'a>> {
    if let Some(direct) = find_peer(entries, selector) {
        return Some(Found::Direct(direct));
    }
    let key = selector.parse::<PublicKey>().ok();
    entries.iter().find_map(|via| {
        via.relayed
            .iter()
            .find(|r| Some(r.public_key) == key || r.name == selector)
            .map(|peer| Found::Relayed { via, peer })
    })
}

fn join(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
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
/// and its `# Relay` line goes.
fn unroute(doc: &mut Document, via: &PeerEntry, peer: &Relayed) -> Delta {
    let nets: Vec<IpNet> = via
        .allowed_ips
        .iter()
        .filter(|n| !peer.nets.contains(n))
        .copied()
        .collect();
    doc.set_in(via.section, "AllowedIPs", &join(&nets));
    let key = peer.public_key.to_string();
    doc.remove_tags(via.section, "Relay", |v| {
        v.split_whitespace().nth(1) == Some(key.as_str())
    });
    relay_delta(via, nets)
}

fn relay_peer<'a>(entries: &'a [PeerEntry], own: &Own, selector: &str) -> Result<&'a PeerEntry> {
    if selector.parse::<PublicKey>().ok() == Some(own.public_key) {
        return Err(Error::Conflict(
            "cannot relay through this node itself: expected another mesh peer".into(),
        ));
    }
    match locate(entries, selector) {
        Some(Found::Direct(relay)) => Ok(relay),
        Some(Found::Relayed { via, peer }) => Err(Error::Conflict(format!(
            "relay {} is itself relayed via {}: expected a peer with a direct tunnel",
            quoted(&peer.name),
            via.display_name()
        ))),
        None => Err(Error::NotFound(format!(
            "no peer named or keyed {} to relay through: expected a name or key from `wgp2p status`",
            quoted(selector)
        ))),
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
        return Err(Error::Conflict(format!(
            "peer {} cannot be relayed through itself: expected another peer as relay",
            quoted(&peer.name)
        )));
    }
    if peer.public_key == own.public_key {
        return Err(Error::Conflict(format!(
            "public key {} is this node's own key: expected the other node's key",
            peer.public_key
        )));
    }
    let others = entries.iter().filter(|e| e.public_key != peer.public_key);
    for other in others {
        if other.name.as_deref() == Some(peer.name.as_str()) {
            return Err(Error::Conflict(format!(
                "peer name {} is already used by key {}: choose another name",
                quoted(&peer.name),
                other.public_key
            )));
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
                return Err(Error::Conflict(format!(
                    "address {net} overlaps {o} of peer {}: expected addresses no other peer routes",
                    quoted(other.display_name())
                )));
            }
        }
    }
    if let Some(net) = peer.nets.iter().find(|n| n.contains(&own.address.ip())) {
        return Err(Error::Conflict(format!(
            "address {net} contains this node's own address: expected the peer's addresses"
        )));
    }
    Ok(())
}

/// Route `peer` through the peer named by `relay_selector`. A direct
/// section for it is removed; a route through another relay is moved.
pub fn route_via(
    doc: &Document,
    conf_name: &str,
    own: &Own,
    peer: &Relayed,
    relay_selector: &str,
) -> Result<(Document, Vec<Delta>)> {
    let entries = peers(doc, conf_name)?;
    let relay = relay_peer(&entries, own, relay_selector)?;
    if relay
        .relayed
        .iter()
        .any(|r| r.public_key == peer.public_key)
    {
        return Ok((doc.clone(), Vec::new()));
    }
    check_relayed(&entries, own, peer, relay)?;
    if entries
        .iter()
        .any(|e| e.public_key == peer.public_key && !e.relayed.is_empty())
    {
        return Err(Error::Conflict(format!(
            "peer {} relays others itself: make them direct first (`wgp2p relay NAME direct`)",
            quoted(&peer.name)
        )));
    }
    let mut new_doc = doc.clone();
    let mut deltas = Vec::new();
    // Leave the old route: another relay, or the direct tunnel.
    for via in entries.iter().filter(|e| e.public_key != relay.public_key) {
        if let Some(old) = via.relayed.iter().find(|r| r.public_key == peer.public_key) {
            deltas.push(unroute(&mut new_doc, via, old));
        }
    }
    let direct = entries.iter().find(|e| e.public_key == peer.public_key);
    if direct.is_some() {
        deltas.push(Delta::RemovePeer(peer.public_key));
    }
    let mut nets = relay.allowed_ips.clone();
    nets.extend(peer.nets.iter().filter(|n| !relay.allowed_ips.contains(n)));
    new_doc.set_in(relay.section, "AllowedIPs", &join(&nets));
    new_doc.add_tag(relay.section, "Relay", &peer.tag());
    deltas.push(relay_delta(relay, nets));
    // Last, as it shifts the index of every later section.
    if let Some(direct) = direct {
        new_doc.remove_section(direct.section);
    }
    Ok((new_doc, deltas))
}

/// The relayed record of a direct peer, for `relay NAME via RELAY`.
pub fn as_relayed(entry: &PeerEntry) -> Result<Relayed> {
    let endpoint = entry.endpoint.clone().ok_or_else(|| {
        Error::Conflict(format!(
            "peer {} has no endpoint: expected a peer added with one",
            quoted(entry.display_name())
        ))
    })?;
    let name = entry.name.clone().ok_or_else(|| {
        Error::Conflict(format!(
            "peer {} has no name: run its add-peer line again to name it first",
            entry.public_key
        ))
    })?;
    Ok(Relayed {
        name,
        public_key: entry.public_key,
        endpoint,
        nets: entry.allowed_ips.clone(),
    })
}

/// Make a relayed peer direct again: its route leaves the relay and its
/// own `[Peer]` comes back (keepalive 25).
pub fn make_direct(
    doc: &Document,
    conf_name: &str,
    own: &Own,
    selector: &str,
) -> Result<(Document, Vec<Delta>, String)> {
    let entries = peers(doc, conf_name)?;
    let (via, peer) = match locate(&entries, selector) {
        Some(Found::Relayed { via, peer }) => (via, peer),
        Some(Found::Direct(entry)) => {
            return Err(Error::Conflict(format!(
                "peer {} is already direct: nothing to change",
                quoted(entry.display_name())
            )));
        }
        None => return Err(not_found(selector, conf_name)),
    };
    let mut new_doc = doc.clone();
    let mut deltas = vec![unroute(&mut new_doc, via, peer)];
    let (first, rest) = peer.nets.split_first().ok_or_else(|| {
        Error::BadConfig(format!(
            "{conf_name}: # Relay line of {} has no address",
            peer.name
        ))
    })?;
    let request = AddPeer {
        name: peer.name.parse()?,
        endpoint: peer.endpoint.parse::<Endpoint>()?,
        public_key: peer.public_key,
        peer_ip: PeerIp {
            ip: first.addr(),
            dropped_prefix: None,
        },
        extra_allowed_ips: crate::types::AllowedIps(rest.to_vec()),
        keepalive: 25,
    };
    let (direct_doc, delta, outcome) = add_peer(new_doc, conf_name, own, &request)?;
    if outcome != Outcome::Unchanged {
        deltas.push(delta);
    }
    Ok((direct_doc, deltas, peer.name.clone()))
}

fn not_found(selector: &str, conf_name: &str) -> Error {
    Error::NotFound(format!(
        "no peer named or keyed {} in {conf_name}: expected a name or public key from `wgp2p status`",
        quoted(selector)
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
    use crate::types::AllowedIps;

    fn add(doc: &Document, name: &str, key: &str, ip: &str) -> Document {
        let request = AddPeer {
            name: name.parse().unwrap(),
            endpoint: "192.0.2.9:51820".parse().unwrap(),
            public_key: key.parse().unwrap(),
            peer_ip: ip.parse().unwrap(),
            extra_allowed_ips: AllowedIps::default(),
            keepalive: 25,
        };
        add_peer(doc.clone(), "wg0.conf", &own(), &request)
            .unwrap()
            .0
    }

    fn mesh() -> Document {
        let doc = Document::parse("[Interface]\nAddress = 10.15.0.1/24\n").unwrap();
        let doc = add(&doc, "relay", RELAY, "10.15.0.2");
        let doc = add(&doc, "far", FAR, "10.15.0.3");
        add(&doc, "other", OTHER, "10.15.0.4")
    }

    fn far_relayed() -> Relayed {
        let entries = peers(&mesh(), "wg0.conf").unwrap();
        as_relayed(
            entries
                .iter()
                .find(|e| e.name.as_deref() == Some("far"))
                .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn switching_to_relayed_and_back() {
        let (doc, deltas) =
            route_via(&mesh(), "wg0.conf", &own(), &far_relayed(), "relay").unwrap();
        let text = doc.render();
        assert!(
            text.contains("AllowedIPs = 10.15.0.2/32, 10.15.0.3/32\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "# Relay = far {FAR} 192.0.2.9:51820 10.15.0.3/32\n"
            )),
            "{text}"
        );
        assert!(!text.contains("# Name = far"));
        assert_eq!(deltas.len(), 2);
        assert_eq!(deltas[0], Delta::RemovePeer(FAR.parse().unwrap()));
        let entries = peers(&doc, "wg0.conf").unwrap();
        assert!(matches!(
            locate(&entries, "far"),
            Some(Found::Relayed { .. })
        ));

        let (back, deltas, name) = make_direct(&doc, "wg0.conf", &own(), "far").unwrap();
        assert_eq!(name, "far");
        assert_eq!(deltas.len(), 2);
        let text = back.render();
        assert!(
            text.contains("# Name = relay\nPublicKey = xTIB")
                && text.contains("AllowedIPs = 10.15.0.2/32\n")
        );
        assert!(text.contains(&format!("# Name = far\nPublicKey = {FAR}\nEndpoint = 192.0.2.9:51820\nAllowedIPs = 10.15.0.3/32")), "{text}");
        assert!(!text.contains("# Relay"));
    }

    #[test]
    fn bad_relays_are_refused() {
        let far = far_relayed();
        let own_key = own().public_key.to_string();
        let cases = [
            ("nobody", "no peer named"),
            ("far", "through itself"),
            (own_key.as_str(), "this node itself"),
        ];
        for (relay, expected) in cases {
            let err = route_via(&mesh(), "wg0.conf", &own(), &far, relay)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{relay}: {err}");
        }
        // Through a peer that is itself relayed.
        let (doc, _) = route_via(&mesh(), "wg0.conf", &own(), &far, "relay").unwrap();
        let entries = peers(&doc, "wg0.conf").unwrap();
        let other = as_relayed(
            entries
                .iter()
                .find(|e| e.name.as_deref() == Some("other"))
                .unwrap(),
        )
        .unwrap();
        let err = route_via(&doc, "wg0.conf", &own(), &other, "far")
            .unwrap_err()
            .to_string();
        assert!(err.contains("itself relayed"), "{err}");
        // An address another peer routes.
        let mut clash = far_relayed();
        clash.nets = vec!["10.15.0.4/32".parse().unwrap()];
        let err = route_via(&mesh(), "wg0.conf", &own(), &clash, "relay")
            .unwrap_err()
            .to_string();
        assert!(err.contains("overlaps 10.15.0.4/32"), "{err}");
        assert!(make_direct(&mesh(), "wg0.conf", &own(), "far").is_err());
    }

    #[test]
    fn removing_a_relayed_peer_drops_its_route() {
        let (doc, _) = route_via(&mesh(), "wg0.conf", &own(), &far_relayed(), "relay").unwrap();
        let entries = peers(&doc, "wg0.conf").unwrap();
        let Some(Found::Relayed { via, peer }) = locate(&entries, FAR) else {
            panic!("not relayed")
        };
        let (after, delta) = remove_relayed(doc.clone(), via, peer);
        assert!(!after.render().contains("10.15.0.3") && !after.render().contains("# Relay"));
        assert!(
            matches!(delta, Delta::UpsertPeer { ref allowed_ips, .. } if allowed_ips.len() == 1)
        );
    }
}
