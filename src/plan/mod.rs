//! Pure planning: a request and the current config give the new config and
//! the smallest live change (`Delta`). Every conflict rule lives here, so it
//! is tested without root, files or devices.

pub mod hooks;
pub mod relay;
pub mod sync;

use ipnet::IpNet;

use crate::config::document::Document;
use crate::config::node::{PeerEntry, peers};
use crate::error::{Error, Result};
use crate::types::{
    AllowedIps, Endpoint, PeerIp, PeerName, PrivateKey, PublicKey, VpnAddress, quoted,
};

/// The smallest change to apply to a live interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delta {
    /// Nothing to change live.
    None,
    /// Add a peer or update it in place; its allowed IPs are replaced as a whole.
    UpsertPeer {
        public_key: PublicKey,
        endpoint: Option<Endpoint>,
        allowed_ips: Vec<IpNet>,
        keepalive: Option<u16>,
    },
    RemovePeer(PublicKey),
    /// Set (or, with `None`, unset) a peer's preshared key; drift repair only.
    SetPresharedKey {
        public_key: PublicKey,
        key: Option<crate::device::PresharedKey>,
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

/// This node as the rules need it.
pub struct Own {
    pub public_key: PublicKey,
    pub address: VpnAddress,
}

impl Own {
    /// This node's key and address, or the error that says `install` comes first.
    pub fn of(node: &crate::config::node::Node) -> Result<Own> {
        let (public_key, address) = node.require_identity()?;
        Ok(Own {
            public_key,
            address,
        })
    }
}

/// Keys and a node shared by the unit tests of the planning code.
#[cfg(test)]
pub mod fixtures {
    use super::Own;
    use crate::types::PrivateKey;

    /// This node's private key; its public key is `DD5y…uk8=`.
    pub const OWN_PRIV: &str = "SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=";
    pub const KEY_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    pub const KEY_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
    pub const KEY_C: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

    /// This node: OWN_PRIV at 10.15.0.1/24.
    pub fn own() -> Own {
        let key: PrivateKey = OWN_PRIV.parse().unwrap();
        Own {
            public_key: key.public_key(),
            address: "10.15.0.1/24".parse().unwrap(),
        }
    }
}

/// A validated `add-peer NAME ENDPOINT PUBLIC_KEY PEER_IP` request.
#[derive(Clone, Debug)]
pub struct AddPeer {
    pub name: PeerName,
    pub endpoint: Endpoint,
    pub public_key: PublicKey,
    pub peer_ip: PeerIp,
    pub extra_allowed_ips: AllowedIps,
    pub keepalive: u16,
}

impl AddPeer {
    /// The peer's host route first, then the extra routed subnets.
    pub fn allowed_ips(&self) -> Vec<IpNet> {
        let mut nets = vec![self.peer_ip.host_route()];
        for net in &self.extra_allowed_ips.0 {
            if !nets.contains(net) {
                nets.push(*net);
            }
        }
        nets
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Added,
    Updated,
    Unchanged,
}

pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn join_nets(nets: &[IpNet]) -> String {
    nets.iter()
        .map(IpNet::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuse what would make the peer ambiguous or steal another's traffic.
fn check_add(existing: &[PeerEntry], own: &Own, req: &AddPeer, nets: &[IpNet]) -> Result<()> {
    if req.public_key == own.public_key {
        return Err(Error::Conflict(format!(
            "public key {} is this node's own key: expected the key printed by the other node",
            req.public_key
        )));
    }
    let relayed = existing
        .iter()
        .flat_map(|via| via.relayed.iter().map(move |r| (via, r)));
    for (via, r) in relayed {
        if r.public_key == req.public_key || r.name == req.name.as_str() {
            return Err(Error::Conflict(format!(
                "peer {} is relayed via {}: `wgp2p relay {} direct` to make it direct, or `wgp2p remove-peer {}` first",
                quoted(&r.name),
                via.display_name(),
                r.name,
                r.name
            )));
        }
    }
    if let Some(other) = existing
        .iter()
        .find(|p| p.name.as_deref() == Some(req.name.as_str()) && p.public_key != req.public_key)
    {
        return Err(Error::Conflict(format!(
            "peer name {} is already used by key {}: choose another name or `wgp2p remove-peer {}` first",
            quoted(req.name.as_str()),
            other.public_key,
            req.name
        )));
    }
    if let Some(same_key) = existing.iter().find(|p| p.public_key == req.public_key)
        && let Some(old_name) = same_key.name.as_deref()
        && old_name != req.name.as_str()
    {
        return Err(Error::Conflict(format!(
            "public key {} is already peer {}: `wgp2p remove-peer {}` first to rename it",
            req.public_key,
            quoted(old_name),
            old_name
        )));
    }
    for net in nets {
        if net.contains(&own.address.ip()) {
            return Err(Error::Conflict(format!(
                "allowed IP {net} contains this node's own address {}: expected the peer's own addresses",
                own.address.ip()
            )));
        }
        let clash = existing
            .iter()
            .filter(|p| p.public_key != req.public_key)
            .find_map(|p| {
                p.allowed_ips
                    .iter()
                    .find(|o| overlaps(net, o))
                    .map(|o| (p, o))
            });
        if let Some((peer, other_net)) = clash {
            return Err(Error::Conflict(format!(
                "allowed IP {net} overlaps {other_net} of peer {}: expected addresses no other peer routes",
                quoted(peer.display_name())
            )));
        }
    }
    Ok(())
}

/// Add a peer or update it (same name and key), in the config and live.
///
/// Takes the document by value: copying a big config for each change
/// costs more than the change. "Unchanged" compares the one section.
pub fn add_peer(
    mut new_doc: Document,
    conf_name: &str,
    own: &Own,
    req: &AddPeer,
) -> Result<(Document, Delta, Outcome)> {
    let existing = peers(&new_doc, conf_name)?;
    let nets = req.allowed_ips();
    check_add(&existing, own, req, &nets)?;
    let (section, outcome, before) = match existing.iter().find(|p| p.public_key == req.public_key)
    {
        Some(entry) => (
            entry.section,
            Outcome::Updated,
            new_doc.section(entry.section).cloned(),
        ),
        None => (new_doc.append_peer(), Outcome::Added, None),
    };
    new_doc.set_name(section, req.name.as_str());
    new_doc.set_in(section, "PublicKey", &req.public_key.to_string());
    new_doc.set_in(section, "Endpoint", &req.endpoint.to_string());
    new_doc.set_in(section, "AllowedIPs", &join_nets(&nets));
    new_doc.set_in(section, "PersistentKeepalive", &req.keepalive.to_string());
    if before.is_some() && new_doc.section(section) == before.as_ref() {
        return Ok((new_doc, Delta::None, Outcome::Unchanged));
    }
    let delta = Delta::UpsertPeer {
        public_key: req.public_key,
        endpoint: Some(req.endpoint.clone()),
        allowed_ips: nets,
        keepalive: (req.keepalive > 0).then_some(req.keepalive),
    };
    Ok((new_doc, delta, outcome))
}

/// How `remove-peer` names a peer: by key when the text is a key.
pub fn find_peer<'a>(existing: &'a [PeerEntry], selector: &str) -> Option<&'a PeerEntry> {
    match selector.parse::<PublicKey>() {
        Ok(key) => existing.iter().find(|p| p.public_key == key),
        Err(_) => existing
            .iter()
            .find(|p| p.name.as_deref() == Some(selector)),
    }
}

/// Remove a peer by name or key, direct or relayed; an unknown peer
/// changes nothing. Returns the new config, the live change, and the
/// removed peer's name (or "(unnamed)") and key.
pub fn remove_peer(
    doc: Document,
    conf_name: &str,
    selector: &str,
) -> Result<(Document, Delta, (String, PublicKey))> {
    let existing = peers(&doc, conf_name)?;
    match relay::locate(&existing, selector) {
        Some(relay::Found::Direct(entry)) if !entry.relayed.is_empty() => {
            let names: Vec<&str> = entry.relayed.iter().map(|r| r.name.as_str()).collect();
            Err(Error::Conflict(format!(
                "peer {} relays {}: make them direct (`wgp2p relay NAME direct`) or remove them first",
                quoted(entry.display_name()),
                names.join(", ")
            )))
        }
        Some(relay::Found::Direct(entry)) => {
            let mut new_doc = doc;
            new_doc.remove_section(entry.section);
            let removed = (entry.display_name().to_string(), entry.public_key);
            Ok((new_doc, Delta::RemovePeer(entry.public_key), removed))
        }
        Some(relay::Found::Relayed { via, peer }) => {
            let (new_doc, delta) = relay::remove_relayed(doc, via, peer);
            Ok((new_doc, delta, (peer.name.clone(), peer.public_key)))
        }
        None => Err(Error::NotFound(format!(
            "no peer named or keyed {} in {conf_name}: expected a name or public key from `wgp2p status`",
            quoted(selector)
        ))),
    }
}

/// The `[Interface]` an install writes: this node's address, key and port;
/// `SaveConfig` goes (wg-quick would overwrite the file and lose the names).
/// Every other line, and every peer, stays.
pub fn install_interface(
    doc: &Document,
    address: &VpnAddress,
    key: &PrivateKey,
    port: u16,
) -> Document {
    let mut new_doc = doc.clone();
    let keeps_address = new_doc.interface().is_some_and(|s| {
        s.get_all("Address")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|a| a.trim() == address.to_string())
    });
    if !keeps_address {
        new_doc.set_interface("Address", &address.to_string());
    }
    new_doc.set_interface("ListenPort", &port.to_string());
    new_doc.set_interface("PrivateKey", &key.expose_base64());
    new_doc.remove_interface("SaveConfig");
    new_doc
}

/// Use another private key: refused when its public key is already a peer's.
pub fn import_key(doc: &Document, conf_name: &str, key: PrivateKey) -> Result<(Document, Delta)> {
    let public = key.public_key();
    if let Some(peer) = peers(doc, conf_name)?
        .iter()
        .find(|p| p.public_key == public)
    {
        return Err(Error::Conflict(format!(
            "the imported key's public key {public} is peer {}: expected a key of this node, not of a peer",
            quoted(peer.display_name())
        )));
    }
    let mut new_doc = doc.clone();
    new_doc.set_interface("PrivateKey", &key.expose_base64());
    Ok((new_doc, Delta::SetPrivateKey(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::fixtures::*;

    fn req(name: &str, key: &str, ip: &str) -> AddPeer {
        AddPeer {
            name: name.parse().unwrap(),
            endpoint: "192.0.2.2:51820".parse().unwrap(),
            public_key: key.parse().unwrap(),
            peer_ip: ip.parse().unwrap(),
            extra_allowed_ips: AllowedIps::default(),
            keepalive: 25,
        }
    }

    fn base() -> Document {
        Document::parse("[Interface]\nAddress = 10.15.0.1/24\nPostUp = echo up\n").unwrap()
    }

    fn with_a() -> Document {
        add_peer(
            base(),
            "wg0.conf",
            &own(),
            &req("enterprise", KEY_A, "10.15.0.2"),
        )
        .unwrap()
        .0
    }

    #[test]
    fn adds_a_named_peer_with_a_host_route() {
        let (doc, delta, outcome) = add_peer(
            base(),
            "wg0.conf",
            &own(),
            &req("enterprise", KEY_A, "10.15.0.2/24"),
        )
        .unwrap();
        assert_eq!(outcome, Outcome::Added);
        let text = doc.render();
        assert!(text.contains("PostUp = echo up\n"));
        assert!(text.contains(&format!("[Peer]\n# Name = enterprise\nPublicKey = {KEY_A}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32\nPersistentKeepalive = 25\n")), "{text}");
        match delta {
            Delta::UpsertPeer {
                allowed_ips,
                keepalive,
                ..
            } => {
                assert_eq!(join_nets(&allowed_ips), "10.15.0.2/32");
                assert_eq!(keepalive, Some(25));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn same_request_twice_is_unchanged() {
        let (_, delta, outcome) = add_peer(
            with_a(),
            "wg0.conf",
            &own(),
            &req("enterprise", KEY_A, "10.15.0.2"),
        )
        .unwrap();
        assert_eq!((delta, outcome), (Delta::None, Outcome::Unchanged));
    }

    #[test]
    fn update_in_place_keeps_one_section() {
        let (doc, _, outcome) = add_peer(
            with_a(),
            "wg0.conf",
            &own(),
            &req("enterprise", KEY_A, "10.15.0.9"),
        )
        .unwrap();
        assert_eq!(outcome, Outcome::Updated);
        assert_eq!(doc.render().matches("[Peer]").count(), 1);
        assert!(doc.render().contains("AllowedIPs = 10.15.0.9/32"));
    }

    #[test]
    fn conflicts_are_refused() {
        let doc = with_a();
        let own_key = own().public_key.to_string();
        let cases = [
            (req("voyager", &own_key, "10.15.0.3"), "own key"),
            (req("enterprise", KEY_B, "10.15.0.3"), "already used by key"),
            (req("voyager", KEY_A, "10.15.0.3"), "remove-peer enterprise"),
            (req("voyager", KEY_B, "10.15.0.2"), "overlaps 10.15.0.2/32"),
            (req("voyager", KEY_B, "10.15.0.1"), "own address"),
        ];
        for (request, expected) in cases {
            let err = add_peer(doc.clone(), "wg0.conf", &own(), &request)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{err}");
        }
        let mut wide = req("voyager", KEY_B, "10.15.0.3");
        wide.extra_allowed_ips = "10.15.0.0/24".parse().unwrap();
        assert!(add_peer(doc.clone(), "wg0.conf", &own(), &wide).is_err());
    }

    #[test]
    fn unnamed_peer_takes_the_name() {
        let doc = Document::parse(&format!(
            "[Interface]\n[Peer]\nPublicKey = {KEY_A}\nAllowedIPs = 10.15.0.2/32\n"
        ))
        .unwrap();
        let (doc, _, outcome) = add_peer(
            doc.clone(),
            "wg0.conf",
            &own(),
            &req("enterprise", KEY_A, "10.15.0.2"),
        )
        .unwrap();
        assert_eq!(outcome, Outcome::Updated);
        assert!(doc.render().contains("[Peer]\n# Name = enterprise\n"));
    }

    #[test]
    fn removes_by_name_or_key() {
        let doc = with_a();
        let (after, delta, _) = remove_peer(doc.clone(), "wg0.conf", "enterprise").unwrap();
        assert_eq!(after.render(), base().render());
        assert_eq!(delta, Delta::RemovePeer(KEY_A.parse().unwrap()));
        assert!(remove_peer(doc.clone(), "wg0.conf", KEY_A).is_ok());
        assert!(matches!(
            remove_peer(doc.clone(), "wg0.conf", "nobody"),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn install_drops_save_config_and_keeps_the_rest() {
        let doc = Document::parse(
            "[Interface]\nAddress = 10.15.0.1/24\nSaveConfig = true\nDNS = 10.15.0.1\n",
        )
        .unwrap();
        let key: PrivateKey = OWN_PRIV.parse().unwrap();
        let out = install_interface(&doc, &"10.15.0.1/24".parse().unwrap(), &key, 51820).render();
        assert_eq!(
            out,
            format!(
                "[Interface]\nAddress = 10.15.0.1/24\nDNS = 10.15.0.1\nListenPort = 51820\nPrivateKey = {OWN_PRIV}\n"
            )
        );
    }

    #[test]
    fn import_key_of_a_peer_is_refused() {
        let doc = Document::parse(&format!("[Peer]\nPublicKey = {}\n", own().public_key)).unwrap();
        assert!(import_key(&doc, "wg0.conf", OWN_PRIV.parse().unwrap()).is_err());
    }
}
