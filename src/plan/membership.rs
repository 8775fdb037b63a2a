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
    /// `# Trust` lines that cannot be read (their text): while there is
    /// one, no member is trusted (fail closed), and `trust` and `doctor`
    /// name it.
    pub unreadable: Vec<String>,
}

impl Policy {
    /// The policy the `[Interface]` lines say.
    pub fn of(doc: &Document) -> Policy {
        let Some(interface) = doc.interface() else {
            return Policy::default();
        };
        let accept = interface
            .tags(keys::TAG_ACCEPT_INTRODUCTIONS)
            .last()
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes"));
        let mut trusted = Vec::new();
        let mut unreadable = Vec::new();
        for value in interface.tags(keys::TAG_TRUST) {
            let mut words = value.split_whitespace();
            match words.next().map(str::parse::<PublicKey>) {
                Some(Ok(key)) => {
                    let name: Vec<&str> = words.collect();
                    trusted.push((key, (!name.is_empty()).then(|| name.join(" "))));
                }
                _ => unreadable.push(value.to_string()),
            }
        }
        Policy {
            accept,
            trusted,
            unreadable,
        }
    }

    /// Whether this node's policy lets `signer` (one of its own peers)
    /// introduce and remove members.
    pub fn accepts(&self, signer: &PublicKey) -> bool {
        if !self.unreadable.is_empty() {
            false
        } else if self.trusted.is_empty() {
            self.accept
        } else {
            self.trusted.iter().any(|(k, _)| k == signer)
        }
    }

    /// Whether any introduction can be applied.
    pub fn enabled(&self) -> bool {
        self.unreadable.is_empty() && (self.accept || !self.trusted.is_empty())
    }

    /// The policy's problems, one line each, with the line to fix.
    pub fn problems(&self) -> Vec<String> {
        self.unreadable
            .iter()
            .map(|line| {
                format!(
                    "the line `# Trust = {line}` of [Interface] cannot be read (expected a peer's public key, then its name): introductions are refused from every member until it is fixed or removed (`wgp2p trust NAME` writes a correct one)"
                )
            })
            .collect()
    }
}

/// What this node's config says about the subject of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// This node itself.
    Own,
    /// Not a peer of this config.
    Absent,
    /// A peer an introduction added; `by`: the member whose introduction
    /// added it here (`None`: its tag names no member this node knows).
    Introduced { by: Option<PublicKey> },
    /// A peer the admin added: by hand, by a roster, provisioned.
    Admins,
}

/// What an event asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Introduction,
    Removal,
}

/// Why a member's event is not applied here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The signer is not one of this node's own peers.
    NotAPeer,
    /// This node's policy does not trust the signer.
    NotTrusted,
    /// A removal by a member other than the one whose introduction added
    /// the peer here (and not the peer itself leaving).
    NotIntroducer,
    /// About a peer the admin added: only the admin changes it.
    AdminsPeer,
    /// About this node itself.
    OwnKey,
    /// An introduction this node's config refuses (the `add-peer` rules,
    /// an address outside the VPN): not kept, never vouched for.
    Conflict,
}

impl Refusal {
    /// The counter name (`status --json`: `agent.membership.records`).
    pub fn counter(self) -> &'static str {
        match self {
            Refusal::NotAPeer => "not_a_peer",
            Refusal::NotTrusted => "not_trusted",
            Refusal::NotIntroducer => "not_introducer",
            Refusal::AdminsPeer => "admins_peer",
            Refusal::OwnKey => "own_key",
            Refusal::Conflict => "conflict",
        }
    }

    /// The words for the log.
    pub fn why(self) -> &'static str {
        match self {
            Refusal::NotAPeer => "the signer is not a peer of this node",
            Refusal::NotTrusted => {
                "this node does not trust the signer (`wgp2p trust` shows whom it trusts)"
            }
            Refusal::NotIntroducer => {
                "only the member whose introduction added the peer here, or the peer itself, removes it"
            }
            Refusal::AdminsPeer => {
                "the peer was not added by an introduction (a human's, a roster's or a provisioned peer stays)"
            }
            Refusal::OwnKey => "it is about this node itself",
            Refusal::Conflict => "the config refuses the introduction",
        }
    }
}

/// The authority rule, whole: whether this node applies (and so keeps and
/// vouches for) an event of kind `kind` about `subject`, signed by
/// `signer`. `signer_is_peer`: the signer is one of this node's own
/// configured peers (its copy came through that peer's tunnel or was
/// vouched by it; nobody else speaks to this node). The outcome depends
/// only on this node's config, never on who was online when.
///
/// | event | who may |
/// |---|---|
/// | anything about this node | nobody |
/// | introduction | a peer this node's policy trusts |
/// | removal of an introduced peer | the trusted peer whose introduction added it here, or the peer itself |
/// | removal of a key that is not a peer (kept, to refuse older introductions) | a trusted peer |
/// | removal of a peer the admin added | nobody |
pub fn authority(
    policy: &Policy,
    signer: &PublicKey,
    signer_is_peer: bool,
    kind: Kind,
    subject: &PublicKey,
    standing: &Standing,
) -> std::result::Result<(), Refusal> {
    if *standing == Standing::Own {
        return Err(Refusal::OwnKey);
    }
    if !signer_is_peer {
        return Err(Refusal::NotAPeer);
    }
    if kind == Kind::Removal && signer == subject {
        // A peer leaving: it may take itself out of what introductions made.
        return match standing {
            Standing::Admins => Err(Refusal::AdminsPeer),
            _ => Ok(()),
        };
    }
    if !policy.accepts(signer) {
        return Err(Refusal::NotTrusted);
    }
    match (kind, standing) {
        (Kind::Introduction, _) | (Kind::Removal, Standing::Absent) => Ok(()),
        (Kind::Removal, Standing::Introduced { by }) if by.as_ref() == Some(signer) => Ok(()),
        (Kind::Removal, Standing::Introduced { .. }) => Err(Refusal::NotIntroducer),
        (Kind::Removal, Standing::Admins) => Err(Refusal::AdminsPeer),
        (Kind::Removal, Standing::Own) => Err(Refusal::OwnKey),
    }
}

/// The standing of `subject` in `doc`; `own`: this node's key.
pub fn standing(doc: &Document, own: &PublicKey, subject: &PublicKey) -> Standing {
    if subject == own {
        return Standing::Own;
    }
    let Some(section) = doc.peer(subject) else {
        return Standing::Absent;
    };
    let tag = section
        .tags(keys::TAG_SOURCE)
        .into_iter()
        .find(|t| t.starts_with(INTRODUCED_BY));
    match tag {
        Some(tag) => Standing::Introduced {
            by: introducer_of(doc, tag),
        },
        None => Standing::Admins,
    }
}

/// The member a `# Source = introduced by NAME (KEY)` tag names: its key,
/// or for a tag without one, the peer of that name.
fn introducer_of(doc: &Document, tag: &str) -> Option<PublicKey> {
    let rest = tag.strip_prefix(INTRODUCED_BY)?.trim();
    if let Some(open) = rest.rfind('(')
        && let Some(key) = rest[open + 1..].strip_suffix(')')
    {
        return key.parse().ok();
    }
    if let Ok(key) = rest.parse() {
        return Some(key);
    }
    peers(doc)
        .ok()?
        .into_iter()
        .find(|p| p.name.as_ref().is_some_and(|n| n.to_string() == rest))
        .map(|p| p.public_key)
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

/// `untrust NAME|KEY`: no longer trust that member. A name is looked up
/// among the trust lines. When it was the last one, the node trusts
/// nobody: `# AcceptIntroductions` goes too (the third value: it went),
/// so untrusting never widens acceptance to every member.
pub fn untrust(doc: &Document, selector: &PeerSelector) -> Result<(Document, PublicKey, bool)> {
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
    // The last trusted member gone: trust nobody (manual), never everyone.
    let left = Policy::of(&new_doc);
    let nobody = left.trusted.is_empty() && left.unreadable.is_empty() && left.accept;
    if nobody {
        new_doc.remove_interface_tags(keys::TAG_ACCEPT_INTRODUCTIONS, |_| true);
    }
    Ok((new_doc, key, nobody))
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
    /// The member whose introduction this node applies (one of its own
    /// trusted peers), for the `# Source` tag.
    pub introducer: PublicKey,
    /// How the tag names it: its peer name, or its key.
    pub introducer_name: String,
}

/// The `# Source` tag of a peer introduced by `name` (`key`).
pub fn introduced_tag(name: &str, key: &PublicKey) -> String {
    if name == key.to_string() {
        format!("{INTRODUCED_BY} ({key})")
    } else {
        format!("{INTRODUCED_BY} {name} ({key})")
    }
}

/// `own` with the addresses DNS endpoints resolved to (`name` ->
/// addresses, as the agent resolved them), so no introduced address covers
/// an endpoint written as a name either.
pub fn with_resolved_endpoints<'a>(
    mut own: Own,
    resolved: impl IntoIterator<Item = (&'a String, &'a Vec<std::net::SocketAddr>)>,
) -> Own {
    for (name, addresses) in resolved {
        for address in addresses {
            own.host.push((
                address.ip(),
                format!("the address endpoint {name} resolves to"),
            ));
        }
    }
    own
}

/// An introduced peer's address must be one host inside this node's VPN
/// network (the prefix of its `Address`), neither that network's own
/// address nor (IPv4) its broadcast address.
fn check_inside_vpn(own: &Own, intro: &Introduction) -> Result<()> {
    let network = own.address.network();
    let ip = intro.address;
    let edge = match network {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            IpAddr::V4(n.network()) == ip || IpAddr::V4(n.broadcast()) == ip
        }
        IpNet::V6(n) if n.prefix_len() < 127 => IpAddr::V6(n.network()) == ip,
        _ => false,
    };
    if !network.contains(&ip) || edge {
        return Err(PlanError::IntroductionOutsideVpn {
            peer: intro.name.to_string(),
            ip,
            network,
        }
        .into());
    }
    Ok(())
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
    check_inside_vpn(own, intro)?;
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
        &introduced_tag(&intro.introducer_name, &intro.introducer),
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
            introducer: KEY_A.parse().unwrap(),
            introducer_name: "enterprise".into(),
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
                "\n[Peer]\n# Name = voyager\n# Source = introduced by enterprise ({KEY_A})\nPublicKey = {KEY_B}\nEndpoint = 192.0.2.3:51820\nAllowedIPs = 10.15.0.3/32\nPersistentKeepalive = 25\n"
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
            // A route to enterprise's endpoint, or to its own, would cut a
            // tunnel: outside the VPN, refused first.
            (
                intro(KEY_B, "voyager", "192.0.2.2"),
                "not a host of this VPN's network",
            ),
            (
                intro(KEY_B, "voyager", "192.0.2.3"),
                "not a host of this VPN's network",
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
        // The last trusted member gone: trust nobody, never everyone.
        let (back, _, nobody) = untrust(&trusted, &"enterprise".parse().unwrap()).unwrap();
        assert!(nobody);
        assert_eq!(back.render(), base().render());
        assert!(!Policy::of(&back).accepts(&KEY_A.parse().unwrap()));
        assert!(!Policy::of(&back).accepts(&KEY_B.parse().unwrap()));
        assert!(untrust(&back, &"enterprise".parse().unwrap()).is_err());
    }

    /// A `# Trust` line that cannot be read closes the policy: nobody is
    /// trusted (not even the readable lines' members), and it is named.
    #[test]
    fn an_unreadable_trust_line_trusts_nobody() {
        let short = &KEY_B[..KEY_B.len() - 2];
        for bad in [short, "enterprise"] {
            let doc = Document::parse(&format!(
                "[Interface]\n# AcceptIntroductions = true\n# Trust = {KEY_A} enterprise\n# Trust = {bad}\nAddress = 10.15.0.1/24\n"
            ))
            .unwrap();
            let policy = Policy::of(&doc);
            assert_eq!(policy.unreadable, vec![bad.to_string()]);
            assert!(!policy.accepts(&KEY_A.parse().unwrap()));
            assert!(!policy.accepts(&KEY_B.parse().unwrap()));
            assert!(!policy.enabled());
            let problems = policy.problems();
            assert_eq!(problems.len(), 1);
            assert!(
                problems[0].contains(&format!("`# Trust = {bad}`")),
                "{problems:?}"
            );
        }
    }

    /// (policy, signer, signer is a peer, kind, subject, standing, outcome)
    type Row<'a> = (
        &'a Policy,
        PublicKey,
        bool,
        Kind,
        PublicKey,
        Standing,
        Result<(), Refusal>,
    );

    /// The authority rule, whole: who may introduce and remove what.
    #[test]
    fn who_may_do_what() {
        let (a, b, c, me) = (
            KEY_A.parse::<PublicKey>().unwrap(),
            KEY_B.parse::<PublicKey>().unwrap(),
            KEY_C.parse::<PublicKey>().unwrap(),
            own().public_key,
        );
        let accept_all = Policy {
            accept: true,
            ..Policy::default()
        };
        let trust_a = Policy {
            trusted: vec![(a, None)],
            ..Policy::default()
        };
        let manual = Policy::default();
        let broken = Policy {
            accept: true,
            trusted: vec![(a, None)],
            unreadable: vec!["x".into()],
        };
        use Kind::{Introduction as I, Removal as R};
        use Refusal::*;
        let by = |k| Standing::Introduced { by: Some(k) };
        // (policy, signer, signer is a peer, kind, subject, standing, outcome)
        let table: Vec<Row> = vec![
            // Introductions: a trusted peer only.
            (&accept_all, a, true, I, c, Standing::Absent, Ok(())),
            (&accept_all, a, false, I, c, Standing::Absent, Err(NotAPeer)),
            (&trust_a, a, true, I, c, Standing::Absent, Ok(())),
            (&trust_a, b, true, I, c, Standing::Absent, Err(NotTrusted)),
            (&manual, a, true, I, c, Standing::Absent, Err(NotTrusted)),
            (&broken, a, true, I, c, Standing::Absent, Err(NotTrusted)),
            (&accept_all, a, true, I, me, Standing::Own, Err(OwnKey)),
            // Removals: the introducer here, or the peer itself.
            (&accept_all, a, true, R, c, by(a), Ok(())),
            (&accept_all, b, true, R, c, by(a), Err(NotIntroducer)),
            (
                &accept_all,
                b,
                true,
                R,
                c,
                Standing::Introduced { by: None },
                Err(NotIntroducer),
            ),
            (&trust_a, a, true, R, c, by(a), Ok(())),
            (&manual, a, true, R, c, by(a), Err(NotTrusted)),
            (&manual, c, true, R, c, by(a), Ok(())),
            (&accept_all, a, false, R, c, by(a), Err(NotAPeer)),
            (&accept_all, a, true, R, c, Standing::Absent, Ok(())),
            (&trust_a, b, true, R, c, Standing::Absent, Err(NotTrusted)),
            (
                &accept_all,
                a,
                true,
                R,
                c,
                Standing::Admins,
                Err(AdminsPeer),
            ),
            (
                &accept_all,
                c,
                true,
                R,
                c,
                Standing::Admins,
                Err(AdminsPeer),
            ),
            (&accept_all, a, true, R, me, Standing::Own, Err(OwnKey)),
        ];
        for (i, (policy, signer, is_peer, kind, subject, standing, expected)) in
            table.into_iter().enumerate()
        {
            assert_eq!(
                authority(policy, &signer, is_peer, kind, &subject, &standing),
                expected,
                "row {i}"
            );
        }
    }

    #[test]
    fn the_introducer_is_read_from_the_tag() {
        let Introduced::Add(doc, _) =
            introduce(base(), &own(), &intro(KEY_B, "voyager", "10.15.0.3")).unwrap()
        else {
            panic!("expected a new peer");
        };
        let a: PublicKey = KEY_A.parse().unwrap();
        let b: PublicKey = KEY_B.parse().unwrap();
        assert_eq!(
            standing(&doc, &own().public_key, &b),
            Standing::Introduced { by: Some(a) }
        );
        assert_eq!(standing(&doc, &own().public_key, &a), Standing::Admins);
        assert_eq!(
            standing(&doc, &own().public_key, &own().public_key),
            Standing::Own
        );
        assert_eq!(
            standing(&doc, &own().public_key, &KEY_C.parse().unwrap()),
            Standing::Absent
        );
        // A tag of the first format names the introducer by name.
        let old = Document::parse(&doc.render().replace(&format!(" ({KEY_A})"), "")).unwrap();
        assert_eq!(
            standing(&old, &own().public_key, &b),
            Standing::Introduced { by: Some(a) }
        );
    }

    /// An introduced address is one host inside this node's VPN network.
    #[test]
    fn an_introduced_address_stays_inside_the_vpn() {
        for ip in [
            "1.1.1.1",
            "192.0.2.50",
            "10.15.1.3",
            "10.15.0.0",
            "10.15.0.255",
            "2606:4700:4700::1111",
        ] {
            let err = introduce(base(), &own(), &intro(KEY_B, "voyager", ip)).unwrap_err();
            assert_eq!(err.code(), 3, "{err}");
            assert!(
                err.to_string()
                    .contains("not a host of this VPN's network 10.15.0.0/24"),
                "{ip}: {err}"
            );
        }
        assert!(introduce(base(), &own(), &intro(KEY_B, "voyager", "10.15.0.254")).is_ok());
        // Nor an address a DNS endpoint resolves to.
        let resolved: std::collections::HashMap<String, Vec<std::net::SocketAddr>> = [(
            "vpn.example:51820".to_string(),
            vec!["10.15.0.77:51820".parse().unwrap()],
        )]
        .into_iter()
        .collect();
        let own = with_resolved_endpoints(own(), &resolved);
        let err = introduce(base(), &own, &intro(KEY_B, "voyager", "10.15.0.77")).unwrap_err();
        assert!(err.to_string().contains("vpn.example:51820"), "{err}");
    }
}
