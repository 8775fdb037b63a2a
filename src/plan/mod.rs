//! Pure planning: a request and the current config give the new config and
//! the smallest live change (`Delta`). Every conflict rule lives here, so it
//! is tested without root, files or devices.

pub mod hooks;
pub mod membership;
pub mod relay;
pub mod routes;
pub mod sync;

use ipnet::IpNet;

use crate::config::document::{Document, keys};
use crate::config::node::{PeerEntry, peers};
use crate::error::Result;
use crate::error::plan::{PlanError, RoutesOf, Tunnel};
use crate::types::{
    AllowedIps, DEFAULT_KEEPALIVE, Endpoint, PeerIp, PeerName, PeerSelector, PrivateKey, PublicKey,
    VpnAddress, WrittenName,
};
use crate::wg::Delta;

/// This node as the rules need it.
pub struct Own {
    pub public_key: PublicKey,
    pub address: VpnAddress,
    /// Addresses outside the config that no peer's route may cover
    /// (`plan::routes`), each with what it is: this host's own addresses
    /// and default gateways and this node's public endpoint. `Own::of`
    /// leaves it empty; the commands fill it (`commands::host`).
    pub host: Vec<(std::net::IpAddr, String)>,
}

impl Own {
    /// This node's key and address, or the error that says `install` comes first.
    pub fn of(node: &crate::config::node::Node) -> Result<Own> {
        let (public_key, address) = node.require_identity()?;
        Ok(Own {
            public_key,
            address,
            host: Vec::new(),
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

    /// This node: `OWN_PRIV` at 10.15.0.1/24.
    pub fn own() -> Own {
        let key: PrivateKey = OWN_PRIV.parse().unwrap();
        Own {
            public_key: key.public_key(),
            address: "10.15.0.1/24".parse().unwrap(),
            host: Vec::new(),
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
    /// `--allowed-ips`: `None` when not given (a re-pasted line keeps the
    /// subnets the peer has), `Some` replaces them.
    pub extra_allowed_ips: Option<AllowedIps>,
    /// `--keepalive`: `None` when not given (a new peer gets
    /// `DEFAULT_KEEPALIVE`, a known one keeps its own).
    pub keepalive: Option<u16>,
}

impl AddPeer {
    /// The keepalive a peer written from scratch by this request gets:
    /// `--keepalive` (or the roster's `keepalive`), else `DEFAULT_KEEPALIVE`.
    pub fn keepalive_or_default(&self) -> u16 {
        self.keepalive.unwrap_or(DEFAULT_KEEPALIVE)
    }

    /// The allowed IPs of a new peer: its host route first, then the extra
    /// routed subnets.
    pub fn allowed_ips(&self) -> Vec<IpNet> {
        let mut nets = vec![self.peer_ip.host_route()];
        for net in self.extra_allowed_ips.iter().flat_map(AllowedIps::nets) {
            if !nets.contains(net) {
                nets.push(*net);
            }
        }
        nets
    }

    /// The allowed IPs after re-pasting this line for a known peer: the
    /// line's address replaces the peer's first host route of the same
    /// family, every other address it has stays; `--allowed-ips` replaces
    /// them instead.
    fn updated_allowed_ips(&self, known: &PeerEntry) -> Vec<IpNet> {
        if self.extra_allowed_ips.is_some() {
            return self.allowed_ips();
        }
        let host = self.peer_ip.host_route();
        let is_host_of_family = |n: &IpNet| {
            n.prefix_len() == n.max_prefix_len() && n.addr().is_ipv4() == host.addr().is_ipv4()
        };
        let mut nets = known.allowed_ips.clone();
        match nets.iter().position(is_host_of_family) {
            Some(i) => nets[i] = host,
            None => nets.insert(0, host),
        }
        let mut unique: Vec<IpNet> = Vec::with_capacity(nets.len());
        for net in nets {
            if !unique.contains(&net) {
                unique.push(net);
            }
        }
        unique
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Added,
    Updated,
    Unchanged,
}

/// Whether two networks share an address.
pub(crate) fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Networks as an `AllowedIPs` value: `a, b, c`.
pub(crate) fn join_nets(nets: &[IpNet]) -> String {
    nets.iter()
        .map(IpNet::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The same networks, in any order and with repeats ignored.
pub(crate) fn same_nets(a: &[IpNet], b: &[IpNet]) -> bool {
    a.iter().all(|n| b.contains(n)) && b.iter().all(|n| a.contains(n))
}

/// Refuse a peer (`key`, `name`, `nets`) that would be ambiguous or steal
/// another's traffic; the peer's own section (same key) is not a conflict.
pub(crate) fn check_new_peer(
    existing: &[PeerEntry],
    own: &Own,
    key: &PublicKey,
    name: Option<&WrittenName>,
    nets: &[IpNet],
) -> Result<()> {
    if *key == own.public_key {
        return Err(PlanError::OwnKey {
            key: *key,
            tunnel: Tunnel::Direct,
        }
        .into());
    }
    let relayed = existing
        .iter()
        .flat_map(|via| via.relayed.iter().map(move |r| (via, r)));
    for (via, r) in relayed {
        if r.public_key == *key || (name.is_some() && r.name.as_ref() == name) {
            return Err(PlanError::RelayedPeer {
                peer: r.display_name().to_string(),
                via: via.display_name().to_string(),
            }
            .into());
        }
    }
    if let Some(name) = name
        && let Some(other) = existing
            .iter()
            .find(|p| p.name.as_ref() == Some(name) && p.public_key != *key)
    {
        return Err(PlanError::NameTaken {
            name: name.as_str().to_string(),
            key: other.public_key,
            tunnel: Tunnel::Direct,
        }
        .into());
    }
    if let Some(name) = name
        && let Some(same_key) = existing.iter().find(|p| p.public_key == *key)
        && let Some(old_name) = same_key.name.as_ref()
        && old_name != name
    {
        return Err(PlanError::KeyNamedOtherwise {
            key: *key,
            name: old_name.as_str().to_string(),
        }
        .into());
    }
    for net in nets {
        if net.contains(&own.address.ip()) {
            return Err(PlanError::OwnAddress {
                net: *net,
                own: own.address.ip(),
                tunnel: Tunnel::Direct,
            }
            .into());
        }
        let clash = existing
            .iter()
            .filter(|p| p.public_key != *key)
            .find_map(|p| {
                p.allowed_ips
                    .iter()
                    .find(|o| overlaps(net, o))
                    .map(|o| (p, o))
            });
        if let Some((peer, other_net)) = clash {
            return Err(PlanError::Overlap {
                net: *net,
                other: *other_net,
                peer: peer.display_name().to_string(),
                tunnel: Tunnel::Direct,
            }
            .into());
        }
    }
    Ok(())
}

/// Route safety (`plan::routes`) of a direct peer `key` that ends with
/// `endpoint`, `address` and `nets`: none of them may hold this host's
/// addresses or gateway, this node's public endpoint, another peer's
/// endpoint or its own. `add-peer` has no opt-in (a roster's
/// `subnet_router = true` is the way to route a LAN that holds one).
#[allow(
    clippy::too_many_arguments,
    reason = "the peer's key, name, endpoint and routes, each as its caller holds it"
)]
pub(crate) fn check_routes(
    existing: &[PeerEntry],
    own: &Own,
    key: &PublicKey,
    name: &str,
    endpoint: Option<&Endpoint>,
    address: Option<IpNet>,
    nets: &[IpNet],
    of: RoutesOf,
) -> Result<()> {
    let mut needed = routes::Needed::new(&own.host);
    needed.config_endpoints(existing, |k| k == key);
    needed.endpoint(endpoint, || {
        format!("the endpoint of peer {}", crate::types::quoted(name))
    });
    let checked = routes::Routes {
        address,
        nets,
        role: routes::Role::Peer,
    };
    routes::check(&needed, &[checked]).map_err(|e| route_refusal(e, name, of).into())
}

/// The refusal for routes of peer `name` that are not safe.
pub(crate) fn route_refusal(e: routes::Unsafe, name: &str, of: RoutesOf) -> PlanError {
    match e {
        routes::Unsafe::Address { ip, what, .. } => PlanError::PeerAddressIsProtected {
            peer: name.to_string(),
            ip,
            what,
        },
        routes::Unsafe::Covers { net, ip, what, .. } => PlanError::PeerRouteCovers {
            peer: name.to_string(),
            net,
            ip,
            what,
            of,
        },
    }
}

/// Add a peer or update it (same name and key), in the config and live.
/// An update rewrites only what the request says (name, endpoint, the
/// line's address, and what `--allowed-ips`/`--keepalive` give); every
/// other line of the section stays as written.
///
/// Takes the document by value: copying a big config for each change
/// costs more than the change. "Unchanged" compares the one section.
#[allow(
    clippy::single_match_else,
    reason = "a known peer or a new one: the two cases, side by side"
)]
pub fn add_peer(
    mut new_doc: Document,
    own: &Own,
    req: &AddPeer,
) -> Result<(Document, Vec<Delta>, Outcome)> {
    let existing = peers(&new_doc)?;
    let key = req.public_key;
    let known = existing.iter().find(|p| p.public_key == key);
    let nets = match known {
        Some(known) => req.updated_allowed_ips(known),
        None => req.allowed_ips(),
    };
    check_new_peer(
        &existing,
        own,
        &key,
        Some(&WrittenName::from(&req.name)),
        &nets,
    )?;
    check_routes(
        &existing,
        own,
        &key,
        req.name.as_str(),
        Some(&req.endpoint),
        Some(req.peer_ip.host_route()),
        &nets,
        RoutesOf::Direct,
    )?;
    let before = new_doc.peer(&key).cloned();
    let (outcome, keepalive) = match known {
        Some(known) => {
            if !same_nets(&nets, &known.allowed_ips) {
                new_doc.set_peer(&key, keys::ALLOWED_IPS, &join_nets(&nets));
            }
            (Outcome::Updated, req.keepalive.or(known.keepalive))
        }
        None => {
            new_doc.append_peer(&key);
            new_doc.set_peer(&key, keys::ENDPOINT, &req.endpoint.to_string());
            new_doc.set_peer(&key, keys::ALLOWED_IPS, &join_nets(&nets));
            (Outcome::Added, Some(req.keepalive_or_default()))
        }
    };
    new_doc.set_name(&key, req.name.as_str());
    new_doc.set_peer(&key, keys::ENDPOINT, &req.endpoint.to_string());
    // The admin's word wins: a line pasted by hand makes an introduced
    // peer the admin's, out of reach of any member's removal.
    new_doc.remove_tags(&key, keys::TAG_SOURCE, |v| {
        v.starts_with(membership::INTRODUCED_BY)
    });
    if let Some(secs) = req
        .keepalive
        .or(before.is_none().then(|| req.keepalive_or_default()))
    {
        new_doc.set_peer(&key, keys::PERSISTENT_KEEPALIVE, &secs.to_string());
    }
    if before.is_some() && new_doc.peer(&key) == before.as_ref() {
        return Ok((new_doc, Vec::new(), Outcome::Unchanged));
    }
    let delta = Delta::UpsertPeer {
        public_key: key,
        endpoint: Some(req.endpoint.clone()),
        allowed_ips: nets,
        keepalive: keepalive.filter(|k| *k > 0),
    };
    Ok((new_doc, vec![delta], outcome))
}

/// The direct peer `selector` names.
pub fn find_peer<'a>(existing: &'a [PeerEntry], selector: &PeerSelector) -> Option<&'a PeerEntry> {
    existing.iter().find(|p| p.is(selector))
}

/// The refusal for a peer no section or relay line names.
pub fn not_found(doc: &Document, selector: &PeerSelector) -> PlanError {
    PlanError::NotFound {
        selector: selector.clone(),
        conf: doc.origin().to_string(),
    }
}

/// Remove a peer by name or key, direct or relayed; an unknown peer
/// changes nothing. A direct peer's section goes with the comment block
/// directly above it. Returns the new config, the live change, and the
/// removed peer's name (or "(unnamed)") and key.
pub fn remove_peer(
    doc: Document,
    selector: &PeerSelector,
) -> Result<(Document, Delta, (String, PublicKey))> {
    let existing = peers(&doc)?;
    match relay::locate(&existing, selector) {
        Some(relay::Found::Direct(entry)) if !entry.relayed.is_empty() => {
            Err(PlanError::RelaysOthers {
                peer: entry.display_name().to_string(),
                relayed: entry
                    .relayed
                    .iter()
                    .map(|r| r.display_name().to_string())
                    .collect(),
            }
            .into())
        }
        Some(relay::Found::Direct(entry)) => {
            let mut new_doc = doc;
            new_doc.remove_peer(&entry.public_key);
            let removed = (entry.display_name().to_string(), entry.public_key);
            Ok((new_doc, Delta::RemovePeer(entry.public_key), removed))
        }
        Some(relay::Found::Relayed { via, peer }) => {
            let (new_doc, delta) = relay::remove_relayed(doc, via, peer);
            Ok((
                new_doc,
                delta,
                (peer.display_name().to_string(), peer.public_key),
            ))
        }
        None => Err(not_found(&doc, selector).into()),
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
        s.get_all(keys::ADDRESS)
            .iter()
            .flat_map(|v| v.split(','))
            .any(|a| a.trim() == address.to_string())
    });
    if !keeps_address {
        new_doc.set_interface(keys::ADDRESS, &address.to_string());
    }
    new_doc.set_interface(keys::LISTEN_PORT, &port.to_string());
    new_doc.set_interface(keys::PRIVATE_KEY, &key.expose_base64());
    new_doc.remove_interface(keys::SAVE_CONFIG);
    new_doc
}

/// Use another private key: refused when its public key is already a peer's.
pub fn import_key(doc: &Document, key: PrivateKey) -> Result<(Document, Delta)> {
    let public = key.public_key();
    if let Some(peer) = peers(doc)?.iter().find(|p| p.public_key == public) {
        return Err(PlanError::ImportedKeyIsPeer {
            key: public,
            peer: peer.display_name().to_string(),
        }
        .into());
    }
    let mut new_doc = doc.clone();
    new_doc.set_interface(keys::PRIVATE_KEY, &key.expose_base64());
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
            extra_allowed_ips: None,
            keepalive: None,
        }
    }

    fn sel(text: &str) -> PeerSelector {
        text.parse().unwrap()
    }

    fn base() -> Document {
        Document::parse("[Interface]\nAddress = 10.15.0.1/24\nPostUp = echo up\n").unwrap()
    }

    fn with_a() -> Document {
        add_peer(base(), &own(), &req("enterprise", KEY_A, "10.15.0.2"))
            .unwrap()
            .0
    }

    #[test]
    fn adds_a_named_peer_with_a_host_route() {
        let (doc, delta, outcome) =
            add_peer(base(), &own(), &req("enterprise", KEY_A, "10.15.0.2/24")).unwrap();
        assert_eq!(outcome, Outcome::Added);
        let text = doc.render();
        assert!(text.contains("PostUp = echo up\n"));
        assert!(text.contains(&format!("[Peer]\n# Name = enterprise\nPublicKey = {KEY_A}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32\nPersistentKeepalive = 25\n")), "{text}");
        match delta.as_slice() {
            [
                Delta::UpsertPeer {
                    allowed_ips,
                    keepalive,
                    ..
                },
            ] => {
                assert_eq!(join_nets(allowed_ips), "10.15.0.2/32");
                assert_eq!(*keepalive, Some(25));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn same_request_twice_is_unchanged() {
        let (_, delta, outcome) =
            add_peer(with_a(), &own(), &req("enterprise", KEY_A, "10.15.0.2")).unwrap();
        assert_eq!((delta, outcome), (Vec::new(), Outcome::Unchanged));
    }

    #[test]
    fn update_in_place_keeps_one_section() {
        let (doc, _, outcome) =
            add_peer(with_a(), &own(), &req("enterprise", KEY_A, "10.15.0.9")).unwrap();
        assert_eq!(outcome, Outcome::Updated);
        assert_eq!(doc.render().matches("[Peer]").count(), 1);
        assert!(doc.render().contains("AllowedIPs = 10.15.0.9/32"));
    }

    #[test]
    fn conflicts_are_refused() {
        let doc = with_a();
        let own_key = own().public_key.to_string();
        let refusal = |request: AddPeer| match add_peer(doc.clone(), &own(), &request) {
            Err(crate::error::Error::Plan(refused)) => refused,
            other => panic!("expected a refusal, got {:?}", other.map(|r| r.2)),
        };
        assert!(matches!(
            refusal(req("voyager", &own_key, "10.15.0.3")),
            PlanError::OwnKey { .. }
        ));
        assert!(matches!(
            refusal(req("enterprise", KEY_B, "10.15.0.3")),
            PlanError::NameTaken { key, .. } if key.to_string() == KEY_A
        ));
        assert!(matches!(
            refusal(req("voyager", KEY_A, "10.15.0.3")),
            PlanError::KeyNamedOtherwise { name, .. } if name == "enterprise"
        ));
        assert!(matches!(
            refusal(req("voyager", KEY_B, "10.15.0.2")),
            PlanError::Overlap { other, .. } if other.to_string() == "10.15.0.2/32"
        ));
        assert!(matches!(
            refusal(req("voyager", KEY_B, "10.15.0.1")),
            PlanError::OwnAddress { .. }
        ));
        let mut wide = req("voyager", KEY_B, "10.15.0.3");
        wide.extra_allowed_ips = Some("10.15.0.0/24".parse().unwrap());
        assert!(matches!(refusal(wide), PlanError::OwnAddress { .. }));
    }

    /// Audit reproduction: add-peer accepted a VPN address equal to the
    /// peer's own endpoint and `--allowed-ips` over another peer's
    /// endpoint; wg-quick then routes that endpoint into the tunnel.
    #[test]
    fn routes_may_not_cut_a_tunnel() {
        let doc = with_a(); // enterprise: endpoint 192.0.2.2, 10.15.0.2
        let mut own = own();
        own.host = vec![(
            "192.168.1.1".parse().unwrap(),
            "this host's default gateway".into(),
        )];
        let refusal = |request: &AddPeer| match add_peer(doc.clone(), &own, request) {
            Err(crate::error::Error::Plan(refused)) => refused,
            other => panic!("expected a refusal, got {:?}", other.map(|r| r.2)),
        };
        let mut itself = req("y", KEY_B, "198.51.100.9");
        itself.endpoint = "198.51.100.9:51820".parse().unwrap();
        assert!(matches!(
            refusal(&itself),
            PlanError::PeerAddressIsProtected { peer, ip, what }
                if peer == "y" && ip.to_string() == "198.51.100.9" && what == "the endpoint of peer \"y\""
        ));
        let mut over_a = req("voyager", KEY_B, "10.15.0.3");
        over_a.extra_allowed_ips = Some("192.0.2.0/24".parse().unwrap());
        assert!(matches!(
            refusal(&over_a),
            PlanError::PeerRouteCovers { net, what, of: RoutesOf::Direct, .. }
                if net.to_string() == "192.0.2.0/24" && what.contains("\"enterprise\"")
        ));
        let mut over_gateway = req("voyager", KEY_B, "10.15.0.3");
        over_gateway.extra_allowed_ips = Some("192.168.0.0/16".parse().unwrap());
        assert!(matches!(
            refusal(&over_gateway),
            PlanError::PeerRouteCovers { what, .. } if what.contains("gateway")
        ));
        // A re-paste that moves the endpoint into the peer's kept subnet.
        let mut site = req("enterprise", KEY_A, "10.15.0.2");
        site.extra_allowed_ips = Some("172.16.50.0/24".parse().unwrap());
        let with_site = add_peer(doc.clone(), &own, &site).unwrap().0;
        let mut moved = req("enterprise", KEY_A, "10.15.0.2");
        moved.endpoint = "172.16.50.1:51820".parse().unwrap();
        assert!(matches!(
            add_peer(with_site, &own, &moved),
            Err(crate::error::Error::Plan(PlanError::PeerRouteCovers { net, what, .. }))
                if net.to_string() == "172.16.50.0/24" && what.contains("\"enterprise\"")
        ));
        // What covers nothing needed passes: a site-to-site subnet, the
        // peer's old endpoint once it moves, a default route of a family
        // no peer uses (as before), a DNS endpoint (not resolved).
        let mut lan = req("voyager", KEY_B, "10.15.0.3");
        lan.extra_allowed_ips = Some("192.168.50.0/24".parse().unwrap());
        assert!(add_peer(doc.clone(), &own, &lan).is_ok());
        let mut away = req("enterprise", KEY_A, "10.15.0.2");
        away.endpoint = "198.51.100.7:51820".parse().unwrap();
        away.extra_allowed_ips = Some("192.0.2.0/24".parse().unwrap());
        assert!(add_peer(doc.clone(), &own, &away).is_ok());
        let mut v6_default = req("voyager", KEY_B, "10.15.0.3");
        v6_default.extra_allowed_ips = Some("::/0".parse().unwrap());
        assert!(add_peer(doc.clone(), &own, &v6_default).is_ok());
        let mut named = req("voyager", KEY_B, "10.15.0.3");
        named.endpoint = "vpn.example.org:51820".parse().unwrap();
        assert!(add_peer(doc, &own, &named).is_ok());
    }

    #[test]
    fn unnamed_peer_takes_the_name() {
        let doc = Document::parse(&format!(
            "[Interface]\n[Peer]\nPublicKey = {KEY_A}\nAllowedIPs = 10.15.0.2/32\n"
        ))
        .unwrap();
        let (doc, _, outcome) =
            add_peer(doc.clone(), &own(), &req("enterprise", KEY_A, "10.15.0.2")).unwrap();
        assert_eq!(outcome, Outcome::Updated);
        assert!(doc.render().contains("[Peer]\n# Name = enterprise\n"));
    }

    #[test]
    fn removes_by_name_or_key() {
        let doc = with_a();
        let (after, delta, _) = remove_peer(doc.clone(), &sel("enterprise")).unwrap();
        assert_eq!(after.render(), base().render());
        assert_eq!(delta, Delta::RemovePeer(KEY_A.parse().unwrap()));
        assert!(remove_peer(doc.clone(), &sel(KEY_A)).is_ok());
        assert!(matches!(
            remove_peer(doc.clone(), &sel("nobody")),
            Err(crate::error::Error::Plan(PlanError::NotFound { .. }))
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
        assert!(import_key(&doc, OWN_PRIV.parse().unwrap()).is_err());
    }

    /// Reproduction: re-pasting a peer's line with a new endpoint dropped
    /// the subnets and keepalive that options had added.
    #[test]
    fn re_paste_keeps_what_options_added() {
        let mut first = req("enterprise", KEY_A, "10.15.0.2");
        first.extra_allowed_ips = Some("192.168.50.0/24".parse().unwrap());
        first.keepalive = Some(10);
        let doc = add_peer(base(), &own(), &first).unwrap().0;
        let mut again = req("enterprise", KEY_A, "10.15.0.2");
        again.endpoint = "192.0.2.99:51820".parse().unwrap();
        let (doc, delta, outcome) = add_peer(doc, &own(), &again).unwrap();
        assert_eq!(outcome, Outcome::Updated);
        let text = doc.render();
        assert!(
            text.contains("AllowedIPs = 10.15.0.2/32, 192.168.50.0/24\n"),
            "{text}"
        );
        assert!(text.contains("PersistentKeepalive = 10\n"), "{text}");
        assert!(text.contains("Endpoint = 192.0.2.99:51820\n"), "{text}");
        assert!(
            matches!(delta.as_slice(), [Delta::UpsertPeer { keepalive: Some(10), allowed_ips, .. }] if allowed_ips.len() == 2)
        );
        // A new address replaces the old one, the subnet stays.
        let moved = req("enterprise", KEY_A, "10.15.0.7");
        let text = add_peer(doc.clone(), &own(), &moved).unwrap().0.render();
        assert!(
            text.contains("AllowedIPs = 10.15.0.7/32, 192.168.50.0/24\n"),
            "{text}"
        );
        // Explicit options replace.
        let mut explicit = req("enterprise", KEY_A, "10.15.0.2");
        explicit.extra_allowed_ips = Some("10.99.0.0/16".parse().unwrap());
        explicit.keepalive = Some(0);
        let text = add_peer(doc, &own(), &explicit).unwrap().0.render();
        assert!(
            text.contains("AllowedIPs = 10.15.0.2/32, 10.99.0.0/16\n"),
            "{text}"
        );
        assert!(text.contains("PersistentKeepalive = 0\n"), "{text}");
    }

    #[test]
    fn re_paste_keeps_unknown_lines_psk_and_comments() {
        let text = format!(
            "[Interface]\nAddress = 10.15.0.1/24\n\n# the office\n[Peer] # office\nPublicKey = {KEY_A}\nPresharedKey = {KEY_B}\nAllowedIPs = 10.15.0.2 # tunnel\nAllowedIPs = fd00::2/128\nEndpoint = 192.0.2.2:51820\n"
        );
        let doc = Document::parse(&text).unwrap();
        let (doc, _, outcome) = add_peer(doc, &own(), &req("office", KEY_A, "10.15.0.2")).unwrap();
        assert_eq!(outcome, Outcome::Updated);
        let out = doc.render();
        assert_eq!(
            out,
            text.replace("[Peer] # office\n", "[Peer] # office\n# Name = office\n")
        );
    }

    /// Reproduction: with `[Peer] # laptop` unread, add-peer of the peer
    /// above deleted the laptop's lines and remove-peer removed both.
    #[test]
    fn a_commented_header_keeps_its_peer_apart() {
        let text = format!(
            "[Interface] # main\nAddress = 10.15.0.1/24\n\n[Peer]\n# Name = enterprise\nPublicKey = {KEY_A}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32\nPersistentKeepalive = 25\n\n[Peer] # laptop\nPublicKey = {KEY_B}\nAllowedIPs = 10.15.0.3/32\n"
        );
        let doc = Document::parse(&text).unwrap();
        let mut moved = req("enterprise", KEY_A, "10.15.0.2");
        moved.endpoint = "192.0.2.50:51820".parse().unwrap();
        let out = add_peer(doc.clone(), &own(), &moved).unwrap().0.render();
        assert_eq!(out, text.replace("192.0.2.2:51820", "192.0.2.50:51820"));
        let (after, _, _) = remove_peer(doc, &sel("enterprise")).unwrap();
        assert_eq!(
            after.render(),
            format!(
                "[Interface] # main\nAddress = 10.15.0.1/24\n\n[Peer] # laptop\nPublicKey = {KEY_B}\nAllowedIPs = 10.15.0.3/32\n"
            )
        );
    }

    #[test]
    fn a_name_with_spaces_selects_its_peer() {
        let doc = Document::parse(&format!(
            "[Interface]\n[Peer]\n# Name = Bob laptop\nPublicKey = {KEY_A}\nAllowedIPs = 10.15.0.2/32\n"
        ))
        .unwrap();
        let (after, _, (name, _)) = remove_peer(doc, &sel("Bob laptop")).unwrap();
        assert_eq!(name, "Bob laptop");
        assert_eq!(after.render(), "[Interface]\n");
    }
}

/// Every edit's planning against every file of `tests/corpus` (real-world
/// shapes: hand-edited, PiVPN, wg-easy, wireguard-ui, the old script's).
#[cfg(test)]
mod corpus {
    use super::*;
    use crate::config::document::Section;
    use crate::plan::relay::{as_relayed, make_direct, route_via};

    pub const FILES: [(&str, &str); 5] = [
        (
            "hand-edited",
            include_str!("../../tests/corpus/hand-edited.conf"),
        ),
        ("pivpn", include_str!("../../tests/corpus/pivpn.conf")),
        ("wg-easy", include_str!("../../tests/corpus/wg-easy.conf")),
        (
            "wireguard-ui",
            include_str!("../../tests/corpus/wireguard-ui.conf"),
        ),
        (
            "wireguard-p2p-script",
            include_str!("../../tests/corpus/wireguard-p2p-script.conf"),
        ),
    ];
    const NEW_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

    fn own() -> Own {
        Own {
            public_key: "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0="
                .parse()
                .unwrap(),
            address: "172.31.255.1/24".parse().unwrap(),
            host: Vec::new(),
        }
    }

    fn blocks(doc: &Document) -> Vec<String> {
        doc.peer_sections().map(Section::block_text).collect()
    }

    fn request(endpoint: &str) -> AddPeer {
        AddPeer {
            name: "newcomer".parse().unwrap(),
            endpoint: endpoint.parse().unwrap(),
            public_key: NEW_KEY.parse().unwrap(),
            peer_ip: "172.30.0.9".parse().unwrap(),
            extra_allowed_ips: Some("172.30.9.0/24".parse().unwrap()),
            keepalive: Some(5),
        }
    }

    fn sel(key: &PublicKey) -> PeerSelector {
        PeerSelector::Key(*key)
    }

    #[test]
    fn every_corpus_file_is_read() {
        for (name, text) in FILES {
            let doc = Document::parse(text).unwrap();
            assert_eq!(doc.render(), text, "{name}");
            let entries = peers(&doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(entries.len() >= 2, "{name}");
        }
    }

    #[test]
    fn add_update_remove_give_the_file_back() {
        for (name, text) in FILES {
            let doc = Document::parse(text).unwrap();
            let before = blocks(&doc);
            let (added, _, outcome) = add_peer(doc, &own(), &request("192.0.2.77:51820")).unwrap();
            assert_eq!(outcome, Outcome::Added, "{name}");
            let added = Document::parse(&added.render()).unwrap();
            assert_eq!(blocks(&added)[..before.len()], before[..], "{name}");
            // Re-pasting the line with a new endpoint changes only that.
            let mut again = request("192.0.2.78:51820");
            again.extra_allowed_ips = None;
            again.keepalive = None;
            let (updated, _, outcome) = add_peer(added.clone(), &own(), &again).unwrap();
            assert_eq!(outcome, Outcome::Updated, "{name}");
            let new_key: PublicKey = NEW_KEY.parse().unwrap();
            let entry = peers(&updated)
                .unwrap()
                .into_iter()
                .find(|e| e.public_key == new_key)
                .unwrap();
            assert_eq!(
                entry
                    .endpoint
                    .as_ref()
                    .map(crate::types::WrittenEndpoint::as_written),
                Some("192.0.2.78:51820"),
                "{name}"
            );
            assert_eq!(entry.allowed_ips.len(), 2, "{name}");
            assert_eq!(entry.keepalive, Some(5), "{name}");
            assert_eq!(blocks(&updated)[..before.len()], before[..], "{name}");
            let (removed, _, _) = remove_peer(updated, &sel(&new_key)).unwrap();
            assert_eq!(removed.render(), text, "{name}");
        }
    }

    #[test]
    fn remove_peer_takes_its_own_block_only() {
        for (name, text) in FILES {
            let doc = Document::parse(text).unwrap();
            let all = blocks(&doc);
            for (i, entry) in peers(&doc).unwrap().iter().enumerate() {
                let (after, _, _) = remove_peer(doc.clone(), &sel(&entry.public_key)).unwrap();
                let mut expected = all.clone();
                expected.remove(i);
                let after = Document::parse(&after.render()).unwrap();
                assert_eq!(blocks(&after), expected, "{name} without peer {i}");
                let non_peer: Vec<String> = after
                    .sections()
                    .filter(|s| !s.is_peer())
                    .map(Section::block_text)
                    .collect();
                let original: Vec<String> = doc
                    .sections()
                    .filter(|s| !s.is_peer())
                    .map(Section::block_text)
                    .collect();
                assert_eq!(non_peer, original, "{name} without peer {i}");
            }
        }
    }

    #[test]
    fn relay_via_then_direct_gives_every_section_back() {
        for (name, text) in FILES {
            let doc = Document::parse(text).unwrap();
            let entries = peers(&doc).unwrap();
            for relay in &entries {
                for peer in entries.iter().filter(|e| e.public_key != relay.public_key) {
                    let record = as_relayed(&doc, peer);
                    let (via, _) = route_via(&doc, &own(), &record, &sel(&relay.public_key))
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    let via = Document::parse(&via.render()).unwrap();
                    assert_eq!(peers(&via).unwrap().len(), entries.len() - 1, "{name}");
                    let (back, _, _) = make_direct(&via, &own(), &sel(&peer.public_key))
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    let back = Document::parse(&back.render()).unwrap();
                    let mut expected = blocks(&doc);
                    expected.sort();
                    let mut got = blocks(&back);
                    got.sort();
                    assert_eq!(
                        got,
                        expected,
                        "{name}: {} via {}",
                        peer.display_name(),
                        relay.display_name()
                    );
                }
            }
        }
    }
}

/// Every write re-parses to the model it was meant to give.
#[cfg(test)]
mod write_properties {
    use super::corpus::FILES;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn writes_re_parse_to_the_intended_model(
            file in 0..FILES.len(),
            key in any::<[u8; 32]>(),
            host in 1u8..250,
            port in 1u16..,
            keepalive in proptest::option::of(0u16..100),
            remove_after in any::<bool>(),
        ) {
            prop_assume!(key != [0; 32]);
            let text = FILES[file].1;
            let doc = Document::parse(text).unwrap();
            let public_key = PublicKey::from_bytes(key);
            let req = AddPeer {
                name: "prop".parse().unwrap(),
                endpoint: format!("192.0.2.{host}:{port}").parse().unwrap(),
                public_key,
                peer_ip: format!("172.30.1.{host}").parse().unwrap(),
                extra_allowed_ips: None,
                keepalive,
            };
            let own = Own {
                public_key: "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=".parse().unwrap(),
                address: "172.31.255.1/24".parse().unwrap(),
                host: Vec::new(),
            };
            let before = peers(&doc).unwrap();
            prop_assume!(before.iter().all(|p| p.public_key != public_key));
            let (after, _, _) = add_peer(doc, &own, &req).unwrap();
            let reread = peers(&Document::parse(&after.render()).unwrap()).unwrap();
            prop_assert_eq!(&reread[..before.len()], &before[..]);
            let added = &reread[before.len()];
            prop_assert_eq!(added.public_key, public_key);
            prop_assert_eq!(added.name.as_ref().map(WrittenName::as_str), Some("prop"));
            prop_assert_eq!(added.endpoint.clone(), Some(crate::types::WrittenEndpoint::from(&req.endpoint)));
            prop_assert_eq!(&added.allowed_ips, &req.allowed_ips());
            prop_assert_eq!(added.keepalive, Some(keepalive.unwrap_or(DEFAULT_KEEPALIVE)).filter(|k| *k > 0));
            if remove_after {
                let (gone, _, _) = remove_peer(after, &PeerSelector::Key(public_key)).unwrap();
                prop_assert_eq!(gone.render(), text);
            }
        }

        /// A relay's write re-parses whatever name a hand edit gave the
        /// relayed peer (a name with a space once gave a `# Relay` line
        /// nothing could read back): the record reads back with the peer's
        /// key, name and addresses, and `direct` gives every section back.
        #[test]
        fn relay_writes_re_parse_whatever_the_name(
            file in 0..FILES.len(),
            pick in any::<prop::sample::Index>(),
            via in any::<prop::sample::Index>(),
            name in "[ -~\u{a0}\u{e4}\u{20ac}\u{1f600}]{1,40}",
        ) {
            use crate::config::document::Section;
            use crate::plan::relay::{as_relayed, make_direct, route_via};
            let own = Own {
                public_key: "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=".parse().unwrap(),
                address: "172.31.255.1/24".parse().unwrap(),
                host: Vec::new(),
            };
            let mut doc = Document::parse(FILES[file].1).unwrap();
            let entries = peers(&doc).unwrap();
            let key = entries[pick.index(entries.len())].public_key;
            let others: Vec<PublicKey> = entries
                .iter()
                .map(|e| e.public_key)
                .filter(|k| *k != key)
                .collect();
            let relay = others[via.index(others.len())];
            doc.set_name(&key, &name);
            let doc = Document::parse(&doc.render()).unwrap();
            let entries = peers(&doc).unwrap();
            let peer = entries.iter().find(|e| e.public_key == key).unwrap();
            let (relayed, _) =
                route_via(&doc, &own, &as_relayed(&doc, peer), &PeerSelector::Key(relay)).unwrap();
            let relayed = Document::parse(&relayed.render()).unwrap();
            let reread = peers(&relayed).unwrap();
            let record = reread
                .iter()
                .flat_map(|e| &e.relayed)
                .find(|r| r.public_key == key)
                .unwrap();
            prop_assert_eq!(&record.name, &peer.name);
            prop_assert_eq!(&record.nets, &peer.allowed_ips);
            let (direct, _, _) = make_direct(&relayed, &own, &PeerSelector::Key(key)).unwrap();
            let direct = Document::parse(&direct.render()).unwrap();
            let mut got: Vec<String> = direct.peer_sections().map(Section::block_text).collect();
            let mut want: Vec<String> = doc.peer_sections().map(Section::block_text).collect();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
}
