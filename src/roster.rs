//! The roster: every node's entry as a TOML `[[peer]]` table, so that the
//! `wgp2p export` of all nodes, concatenated, is a file every node can
//! `sync` to. Parsing and planning are pure.

use serde::Deserialize;

use crate::config::document::Document;
use crate::config::node::peers;
use crate::error::{Error, Result};
use crate::plan::{self, AddPeer, Delta, Outcome, Own};
use crate::types::{AllowedIps, Endpoint, PeerIp, PeerName, PublicKey};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    #[serde(default)]
    peer: Vec<RosterEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterEntry {
    name: String,
    endpoint: String,
    public_key: String,
    address: String,
    #[serde(default)]
    allowed_ips: Vec<String>,
    keepalive: Option<u16>,
}

/// One node's roster entry, as `export` prints it.
pub fn entry(
    name: &PeerName,
    endpoint: &str,
    key: &PublicKey,
    address: std::net::IpAddr,
) -> String {
    // Every value is a validated type (or the placeholder), none of which
    // can hold a quote or a backslash, so plain quoting is exact TOML.
    format!(
        "[[peer]]\nname = \"{name}\"\nendpoint = \"{endpoint}\"\npublic_key = \"{key}\"\naddress = \"{address}\"\n"
    )
}

/// Parse a roster into validated add-peer requests; an error names the
/// entry and the bad value.
pub fn parse(text: &str, source: &str) -> Result<Vec<AddPeer>> {
    let file: RosterFile = toml::from_str(text).map_err(|e| {
        let first_line = e.to_string().lines().next().unwrap_or_default().to_string();
        Error::Invalid(format!("{source}: {first_line}: expected [[peer]] tables with name, endpoint, public_key, address"))
    })?;
    file.peer
        .iter()
        .enumerate()
        .map(|(i, e)| {
            request(e).map_err(|err| {
                Error::Invalid(format!("{source}: peer #{} ({:?}): {err}", i + 1, e.name))
            })
        })
        .collect()
}

fn request(entry: &RosterEntry) -> Result<AddPeer> {
    let allowed = if entry.allowed_ips.is_empty() {
        AllowedIps::default()
    } else {
        entry.allowed_ips.join(",").parse()?
    };
    Ok(AddPeer {
        name: entry.name.parse()?,
        endpoint: entry.endpoint.parse::<Endpoint>()?,
        public_key: entry.public_key.parse()?,
        peer_ip: entry.address.parse::<PeerIp>()?,
        extra_allowed_ips: allowed,
        keepalive: entry.keepalive.unwrap_or(25),
    })
}

/// One line of the plan `sync` prints.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Add(String),
    Update(String),
    Remove(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Add(name) => write!(f, "+ add {name}"),
            Change::Update(name) => write!(f, "~ update {name}"),
            Change::Remove(name) => write!(f, "- remove {name}"),
        }
    }
}

/// Make the config's peers equal to the roster minus this node: removals
/// first (so a peer that changed its key can keep its name), then adds and
/// updates under the same rules as `add-peer`.
pub fn sync(
    doc: &Document,
    conf_name: &str,
    own: &Own,
    roster: &[AddPeer],
) -> Result<(Document, Vec<Delta>, Vec<Change>)> {
    let wanted: Vec<&AddPeer> = roster
        .iter()
        .filter(|r| r.public_key != own.public_key)
        .collect();
    let mut new_doc = doc.clone();
    let mut deltas = Vec::new();
    let mut changes = Vec::new();
    let entries = peers(doc, conf_name)?;
    // Relayed peers count as present: the roster says who, not how.
    let relayed: Vec<PublicKey> = entries
        .iter()
        .flat_map(|e| e.relayed.iter().map(|r| r.public_key))
        .collect();
    let present = entries
        .iter()
        .map(|e| e.public_key)
        .chain(relayed.iter().copied());
    // Relayed ones first, so no relay is removed while it still carries one.
    let mut unwanted: Vec<PublicKey> = present
        .filter(|k| !wanted.iter().any(|r| r.public_key == *k))
        .collect();
    unwanted.sort_by_key(|k| !relayed.contains(k));
    for key in unwanted {
        let (next, delta, (name, _)) = plan::remove_peer(new_doc, conf_name, &key.to_string())?;
        new_doc = next;
        deltas.push(delta);
        changes.push(Change::Remove(name));
    }
    let wanted = wanted
        .into_iter()
        .filter(|r| !relayed.contains(&r.public_key));
    for request in wanted {
        let (next, delta, outcome) = plan::add_peer(new_doc, conf_name, own, request)?;
        new_doc = next;
        let name = request.name.to_string();
        match outcome {
            Outcome::Added => changes.push(Change::Add(name)),
            Outcome::Updated => changes.push(Change::Update(name)),
            Outcome::Unchanged => continue,
        }
        deltas.push(delta);
    }
    Ok((new_doc, deltas, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::*;

    fn roster() -> String {
        let own_key = own().public_key;
        [
            entry(
                &"defiant".parse().unwrap(),
                "203.0.113.1:51820",
                &own_key,
                "10.15.0.1".parse().unwrap(),
            ),
            entry(
                &"enterprise".parse().unwrap(),
                "203.0.113.2:51820",
                &KEY_A.parse().unwrap(),
                "10.15.0.2".parse().unwrap(),
            ),
            entry(
                &"voyager".parse().unwrap(),
                "voyager.lab:51820",
                &KEY_B.parse().unwrap(),
                "10.15.0.3".parse().unwrap(),
            ),
        ]
        .concat()
    }

    #[test]
    fn concatenated_exports_parse() {
        let parsed = parse(&roster(), "roster.toml").unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[2].endpoint.to_string(), "voyager.lab:51820");
    }

    #[test]
    fn sync_adds_updates_and_removes() {
        let start = Document::parse(&format!(
            "[Interface]\n\n[Peer]\n# Name = old\nPublicKey = {}\nAllowedIPs = 10.15.0.9/32\n",
            "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8="
        ))
        .unwrap();
        let requests = parse(&roster(), "r").unwrap();
        let (doc, deltas, changes) = sync(&start, "wg0.conf", &own(), &requests).unwrap();
        assert_eq!(
            changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["- remove old", "+ add enterprise", "+ add voyager"]
        );
        assert_eq!(deltas.len(), 3);
        // Syncing again to the same roster changes nothing.
        let (_, deltas, changes) = sync(&doc, "wg0.conf", &own(), &requests).unwrap();
        assert!(deltas.is_empty() && changes.is_empty());
    }

    #[test]
    fn bad_rosters_name_the_entry() {
        let err = parse("[[peer]]\nname = \"x\"\nendpoint = \"nope\"\npublic_key = \"k\"\naddress = \"10.0.0.1\"\n", "r.toml").unwrap_err().to_string();
        assert!(err.contains("peer #1") && err.contains("\"nope\""), "{err}");
        assert!(parse("[[peer]]\nname = 1\n", "r.toml").is_err());
        assert!(parse("garbage = [", "r.toml").is_err());
        let dup = format!(
            "{}{}",
            roster(),
            entry(
                &"other".parse().unwrap(),
                "1.2.3.4:5",
                &KEY_B.parse().unwrap(),
                "10.15.0.7".parse().unwrap()
            )
        );
        let requests = parse(&dup, "r").unwrap();
        assert!(sync(&Document::parse("").unwrap(), "wg0.conf", &own(), &requests).is_err());
    }
}
