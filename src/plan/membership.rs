//! Membership planning: this node's introduction policy (lines of its
//! `[Interface]`), and the config change an accepted introduction or
//! removal makes. Pure, like every plan: the agent commits the result
//! under the config lock, as `add-peer` and `remove-peer` do.
//!
//! An introduced peer is an ordinary `[Peer]` tagged
//! `# Source = introduced by NAME`. An introduction only ever adds a peer
//! that is not there: it never changes an existing peer (its key, name,
//! address or endpoint) and never touches this node; every conflict rule
//! of `add-peer` applies. A removal only ever removes a peer that an
//! introduction added: a peer added by hand, by a roster or provisioned
//! stays (a human's line always wins).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::document::{Document, keys};
use crate::config::node::peers;
use crate::error::Result;
use crate::error::plan::PlanError;
use crate::plan::{Own, check_new_peer, find_peer};
use crate::types::{DEFAULT_KEEPALIVE, Endpoint, PeerName, PeerSelector, PublicKey, WrittenName};
use crate::wg::Delta;

/// The start of the `# Source` tag of an introduced peer.
pub const INTRODUCED_BY: &str = "introduced by";

/// Whose introductions this node accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `# AcceptIntroductions = true`.
    pub accept: bool,
    /// `# Trust = KEY [NAME]` lines: when any, only these members.
    pub trusted: Vec<(PublicKey, Option<String>)>,
}

impl Policy {
    /// The policy the `[Interface]` lines say. A `# Trust` line whose first
    /// word is not a key is ignored (and shown by `trust`).
    pub fn of(doc: &Document) -> Policy {
        let Some(interface) = doc.interface() else {
            return Policy::default();
        };
        let accept = interface
            .tags(keys::TAG_ACCEPT_INTRODUCTIONS)
            .last()
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes"));
        let trusted = interface
            .tags(keys::TAG_TRUST)
            .into_iter()
            .filter_map(|v| {
                let mut words = v.split_whitespace();
                let key = words.next()?.parse().ok()?;
                let name: Vec<&str> = words.collect();
                Some((key, (!name.is_empty()).then(|| name.join(" "))))
            })
            .collect();
        Policy { accept, trusted }
    }

    /// Whether an introduction or removal signed by `signer` is applied.
    pub fn accepts(&self, signer: &PublicKey) -> bool {
        if self.trusted.is_empty() {
            self.accept
        } else {
            self.trusted.iter().any(|(k, _)| k == signer)
        }
    }

    /// Whether any introduction can be applied.
    pub fn enabled(&self) -> bool {
        self.accept || !self.trusted.is_empty()
    }
}

/// Turn `# AcceptIntroductions = true` on; `None` when it already is.
pub fn accept_introductions(doc: &Document) -> Option<Document> {
    if Policy::of(doc).accept {
        return None;
    }
    let mut new_doc = doc.clone();
    new_doc.remove_interface_tags(keys::TAG_ACCEPT_INTRODUCTIONS, |_| true);
    new_doc.add_interface_tag(keys::TAG_ACCEPT_INTRODUCTIONS, "true");
    Some(new_doc)
}

/// `trust NAME|KEY`: accept introductions from that member (a peer of the
/// config, or any key). Returns the new config (`None`: already trusted),
/// and the key and name trusted.
pub fn trust(
    doc: &Document,
    own: &Own,
    selector: &PeerSelector,
) -> Result<(Option<Document>, PublicKey, Option<String>)> {
    let existing = peers(doc)?;
    let (key, name) = match find_peer(&existing, selector) {
        Some(peer) => (peer.public_key, peer.name.as_ref().map(ToString::to_string)),
        None => match selector {
            PeerSelector::Key(key) => (*key, None),
            PeerSelector::Name(_) => return Err(crate::plan::not_found(doc, selector).into()),
        },
    };
    if key == own.public_key {
        return Err(PlanError::TrustOwnKey { key }.into());
    }
    if Policy::of(doc).trusted.iter().any(|(k, _)| *k == key) {
        return Ok((None, key, name));
    }
    let mut new_doc = doc.clone();
    let value = match name.as_deref().and_then(|n| n.parse::<PeerName>().ok()) {
        Some(n) => format!("{key} {n}"),
        None => key.to_string(),
    };
    new_doc.add_interface_tag(keys::TAG_TRUST, &value);
    Ok((Some(new_doc), key, name))
}

/// `untrust NAME|KEY`: no longer single that member out. A name is looked
/// up among the trust lines first, then among the peers.
pub fn untrust(doc: &Document, selector: &PeerSelector) -> Result<(Document, PublicKey)> {
    let policy = Policy::of(doc);
    let found = policy.trusted.iter().find(|(key, name)| match selector {
        PeerSelector::Key(k) => k == key,
        PeerSelector::Name(n) => name.as_deref() == Some(n.as_str()),
    });
    let key = match found {
        Some((key, _)) => *key,
        None => {
            return Err(PlanError::NotTrusted {
                selector: selector.clone(),
            }
            .into());
        }
    };
    let mut new_doc = doc.clone();
    let text = key.to_string();
    new_doc.remove_interface_tags(keys::TAG_TRUST, |v| {
        v.split_whitespace().next() == Some(&text)
    });
    Ok((new_doc, key))
}

/// Whether a peer section says an introduction added it.
pub fn is_introduced(doc: &Document, key: &PublicKey) -> bool {
    doc.peer(key).is_some_and(|s| {
        s.tags(keys::TAG_SOURCE)
            .iter()
            .any(|t| t.starts_with(INTRODUCED_BY))
    })
}

/// What an accepted introduction asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Introduction {
    pub public_key: PublicKey,
    pub name: PeerName,
    pub address: IpAddr,
    pub endpoint: Option<Endpoint>,
    /// Who introduced it, for the `# Source` tag: a name or a key.
    pub introducer: String,
}

/// The outcome of planning an introduction.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per introduction and matched at once"
)]
pub enum Introduced {
    /// A new peer: the new config and the live change.
    Add(Document, Delta),
    /// The peer is already there as introduced: nothing to do.
    Known,
}

/// Add an introduced peer. Refused (nothing changes) when the key is this
/// node's, when the peer is there with another name or address (an
/// introduction never changes a peer), or on any `add-peer` conflict: the
/// name taken by another key, the address overlapping another peer's
/// allowed IPs or this node's address, or being an endpoint the tunnels
/// need (`plan::routes`: another peer's, its own, this host's).
pub fn introduce(mut doc: Document, own: &Own, intro: &Introduction) -> Result<Introduced> {
    let existing = peers(&doc)?;
    let key = intro.public_key;
    let host = IpNet::from(intro.address);
    if let Some(peer) = existing.iter().find(|p| p.public_key == key) {
        let same_name = peer.name.as_ref().is_some_and(|n| *n == intro.name);
        if same_name && peer.allowed_ips.contains(&host) {
            return Ok(Introduced::Known);
        }
        return Err(PlanError::IntroductionChangesPeer {
            peer: peer.display_name().to_string(),
            key,
            name: peer.name.as_ref().map(ToString::to_string),
            nets: peer.allowed_ips.clone(),
        }
        .into());
    }
    check_new_peer(
        &existing,
        own,
        &key,
        Some(&WrittenName::from(&intro.name)),
        &[host],
    )?;
    crate::plan::check_routes(
        &existing,
        own,
        &key,
        intro.name.as_str(),
        intro.endpoint.as_ref(),
        Some(host),
        &[host],
        crate::error::plan::RoutesOf::Direct,
    )?;
    doc.append_peer(&key);
    doc.set_name(&key, intro.name.as_str());
    doc.add_header_tag(
        &key,
        keys::TAG_SOURCE,
        &format!("{INTRODUCED_BY} {}", intro.introducer),
    );
    if let Some(endpoint) = &intro.endpoint {
        doc.set_peer(&key, keys::ENDPOINT, &endpoint.to_string());
    }
    doc.set_peer(&key, keys::ALLOWED_IPS, &host.to_string());
    doc.set_peer(
        &key,
        keys::PERSISTENT_KEEPALIVE,
        &DEFAULT_KEEPALIVE.to_string(),
    );
    let delta = Delta::UpsertPeer {
        public_key: key,
        endpoint: intro.endpoint.clone(),
        allowed_ips: vec![host],
        keepalive: Some(DEFAULT_KEEPALIVE),
    };
    Ok(Introduced::Add(doc, delta))
}

/// Remove an introduced peer for an accepted removal. `Ok(None)`: it is not
/// a peer (nothing to do). Refused when an introduction did not add it
/// (added by hand, by a roster, provisioned) or when it relays others.
pub fn remove_introduced(
    doc: Document,
    key: &PublicKey,
) -> Result<Option<(Document, Delta, String)>> {
    let existing = peers(&doc)?;
    let Some(peer) = existing.iter().find(|p| p.public_key == *key) else {
        return Ok(None);
    };
    let name = peer.display_name().to_string();
    if !is_introduced(&doc, key) {
        return Err(PlanError::NotIntroduced { peer: name }.into());
    }
    let (new_doc, delta, _) = crate::plan::remove_peer(doc, &PeerSelector::Key(*key))?;
    Ok(Some((new_doc, delta, name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::*;

    fn base() -> Document {
        Document::parse(&format!(
            "[Interface]\nAddress = 10.15.0.1/24\n\n[Peer]\n# Name = enterprise\nPublicKey = {KEY_A}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32\n"
        ))
        .unwrap()
    }

    fn intro(key: &str, name: &str, ip: &str) -> Introduction {
        Introduction {
            public_key: key.parse().unwrap(),
            name: name.parse().unwrap(),
            address: ip.parse().unwrap(),
            endpoint: Some("192.0.2.3:51820".parse().unwrap()),
            introducer: "enterprise".into(),
        }
    }

    #[test]
    fn an_introduction_adds_a_tagged_peer_and_a_removal_takes_it() {
        let Introduced::Add(doc, delta) =
            introduce(base(), &own(), &intro(KEY_B, "voyager", "10.15.0.3")).unwrap()
        else {
            panic!("expected a new peer");
        };
        let text = doc.render();
        assert!(
            text.ends_with(&format!(
                "\n[Peer]\n# Name = voyager\n# Source = introduced by enterprise\nPublicKey = {KEY_B}\nEndpoint = 192.0.2.3:51820\nAllowedIPs = 10.15.0.3/32\nPersistentKeepalive = 25\n"
            )),
            "{text}"
        );
        assert!(
            matches!(delta, Delta::UpsertPeer { ref allowed_ips, .. } if allowed_ips.len() == 1)
        );
        assert!(is_introduced(&doc, &KEY_B.parse().unwrap()));
        assert!(matches!(
            introduce(doc.clone(), &own(), &intro(KEY_B, "voyager", "10.15.0.3")).unwrap(),
            Introduced::Known
        ));
        let (after, delta, name) = remove_introduced(doc, &KEY_B.parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(after.render(), base().render());
        assert_eq!(delta, Delta::RemovePeer(KEY_B.parse().unwrap()));
        assert_eq!(name, "voyager");
    }

    #[test]
    fn hostile_introductions_change_nothing() {
        let own_key = own().public_key.to_string();
        let cases = [
            (
                intro(KEY_A, "enterprise", "10.15.0.9"),
                "never changes a peer",
            ),
            (intro(KEY_A, "other", "10.15.0.2"), "never changes a peer"),
            (
                intro(KEY_B, "enterprise", "10.15.0.3"),
                "already used by key",
            ),
            (
                intro(KEY_B, "voyager", "10.15.0.2"),
                "overlaps 10.15.0.2/32",
            ),
            (intro(KEY_B, "voyager", "10.15.0.1"), "own address"),
            (intro(&own_key, "me", "10.15.0.7"), "own key"),
            // A route to enterprise's endpoint, or to its own, would cut a tunnel.
            (
                intro(KEY_B, "voyager", "192.0.2.2"),
                "is the endpoint of peer \"enterprise\"",
            ),
            (
                intro(KEY_B, "voyager", "192.0.2.3"),
                "is the endpoint of peer \"voyager\"",
            ),
        ];
        for (request, expected) in cases {
            let err = introduce(base(), &own(), &request).unwrap_err();
            assert_eq!(err.code(), 3, "{err}");
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn a_removal_never_takes_a_hand_added_peer() {
        let err = remove_introduced(base(), &KEY_A.parse().unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("not added by an introduction"),
            "{err}"
        );
        assert!(
            remove_introduced(base(), &KEY_C.parse().unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn policy_lines_round_trip() {
        let doc = base();
        assert_eq!(Policy::of(&doc), Policy::default());
        assert!(!Policy::of(&doc).accepts(&KEY_A.parse().unwrap()));
        let doc = accept_introductions(&doc).unwrap();
        assert!(
            doc.render()
                .starts_with("[Interface]\n# AcceptIntroductions = true\nAddress"),
            "{}",
            doc.render()
        );
        assert!(accept_introductions(&doc).is_none());
        let policy = Policy::of(&doc);
        assert!(policy.accepts(&KEY_B.parse().unwrap()));
        let (trusted, key, name) = trust(&doc, &own(), &"enterprise".parse().unwrap()).unwrap();
        let trusted = trusted.unwrap();
        assert_eq!(key, KEY_A.parse().unwrap());
        assert_eq!(name.as_deref(), Some("enterprise"));
        assert!(
            trusted
                .render()
                .contains(&format!("# Trust = {KEY_A} enterprise\n"))
        );
        let policy = Policy::of(&trusted);
        assert!(policy.accepts(&KEY_A.parse().unwrap()));
        assert!(!policy.accepts(&KEY_B.parse().unwrap()));
        assert!(
            trust(&trusted, &own(), &"enterprise".parse().unwrap())
                .unwrap()
                .0
                .is_none()
        );
        assert!(trust(&trusted, &own(), &"nobody".parse().unwrap()).is_err());
        assert!(
            trust(
                &trusted,
                &own(),
                &own().public_key.to_string().parse().unwrap()
            )
            .is_err()
        );
        let (back, _) = untrust(&trusted, &"enterprise".parse().unwrap()).unwrap();
        assert_eq!(back.render(), doc.render());
        assert!(untrust(&back, &"enterprise".parse().unwrap()).is_err());
    }
}
