//! The roster file: every node's entry as a TOML `[[peer]]` table, so that
//! the `wgp2p export` of all nodes, concatenated, is a file every node can
//! `sync` to. This module reads and writes the format; the planning is in
//! `plan::sync`.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::plan::AddPeer;
use crate::plan::sync::{Role, Roster, RosterEntry};
use crate::types::{AllowedIps, Endpoint, PeerIp, PeerName, PublicKey};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterFile {
    #[serde(default)]
    peer: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    name: String,
    endpoint: String,
    public_key: String,
    address: String,
    #[serde(default)]
    allowed_ips: Vec<String>,
    keepalive: Option<u16>,
    #[serde(default)]
    subnet_router: bool,
    #[serde(default)]
    exit_node: bool,
}

/// One node's roster entry, as `export` prints it.
pub fn entry(
    name: &PeerName,
    endpoint: &Endpoint,
    key: &PublicKey,
    address: std::net::IpAddr,
) -> String {
    // Every value is a validated type, none of which can hold a quote or
    // a backslash, so plain quoting is exact TOML.
    format!(
        "[[peer]]\nname = \"{name}\"\nendpoint = \"{endpoint}\"\npublic_key = \"{key}\"\naddress = \"{address}\"\n"
    )
}

/// Parse a roster into validated entries; an error names the file, the
/// entry number and the bad value.
pub fn parse(text: &str, source: &str) -> Result<Roster> {
    let file: RosterFile = toml::from_str(text).map_err(|e| {
        // The line of the error, and toml's message on one line (it can
        // span several, the rendered error even more with the source quoted).
        let at = e.span().map_or_else(String::new, |span| {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count());
            format!(" line {}", line + 1)
        });
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Error::Invalid(format!(
            "{source}{at}: {message}: expected [[peer]] tables with name, endpoint, public_key, address"
        ))
    })?;
    let entries = file
        .peer
        .iter()
        .enumerate()
        .map(|(i, e)| {
            validate(e).map_err(|err| {
                Error::Invalid(format!("{source} entry #{} ({:?}): {err}", i + 1, e.name))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Roster {
        source: source.to_string(),
        entries,
    })
}

fn validate(entry: &FileEntry) -> Result<RosterEntry> {
    let allowed = if entry.allowed_ips.is_empty() {
        AllowedIps::default()
    } else {
        entry.allowed_ips.join(",").parse()?
    };
    let role = match (entry.exit_node, entry.subnet_router) {
        (true, _) => Role::ExitNode,
        (false, true) => Role::SubnetRouter,
        (false, false) => Role::Peer,
    };
    Ok(RosterEntry {
        peer: AddPeer {
            name: entry.name.parse()?,
            endpoint: entry.endpoint.parse::<Endpoint>()?,
            public_key: entry.public_key.parse()?,
            peer_ip: entry.address.parse::<PeerIp>()?,
            extra_allowed_ips: Some(allowed),
            keepalive: entry.keepalive,
        },
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::*;

    fn two() -> String {
        [
            entry(
                &"enterprise".parse().unwrap(),
                &"203.0.113.2:51820".parse().unwrap(),
                &KEY_A.parse().unwrap(),
                "10.15.0.2".parse().unwrap(),
            ),
            entry(
                &"voyager".parse().unwrap(),
                &"voyager.lab:51820".parse().unwrap(),
                &KEY_B.parse().unwrap(),
                "10.15.0.3".parse().unwrap(),
            ),
        ]
        .concat()
    }

    #[test]
    fn concatenated_exports_parse() {
        let roster = parse(&two(), "roster.toml").unwrap();
        assert_eq!(roster.entries.len(), 2);
        assert_eq!(
            roster.entries[1].peer.endpoint.to_string(),
            "voyager.lab:51820"
        );
        assert_eq!(roster.entries[1].peer.keepalive, None);
        assert_eq!(
            roster.entries[1].peer.keepalive_or_default(),
            crate::types::DEFAULT_KEEPALIVE
        );
        assert_eq!(roster.entries[1].role, Role::Peer);
        assert_eq!(roster.label(1), "roster.toml entry #2 (\"voyager\")");
    }

    #[test]
    fn roles_are_opt_in_fields() {
        let text = format!(
            "{}subnet_router = true\nallowed_ips = [\"192.168.7.0/24\"]\n",
            two()
        );
        let roster = parse(&text, "r").unwrap();
        assert_eq!(roster.entries[1].role, Role::SubnetRouter);
        let exit = parse(&format!("{}exit_node = true\n", two()), "r").unwrap();
        assert_eq!(exit.entries[1].role, Role::ExitNode);
        assert!(parse(&format!("{}exit_node = \"yes\"\n", two()), "r").is_err());
    }

    #[test]
    fn bad_rosters_name_the_entry() {
        let err = parse("[[peer]]\nname = \"x\"\nendpoint = \"nope\"\npublic_key = \"k\"\naddress = \"10.0.0.1\"\n", "r.toml").unwrap_err().to_string();
        assert!(
            err.contains("r.toml entry #1") && err.contains("\"nope\""),
            "{err}"
        );
        assert!(parse("[[peer]]\nname = 1\n", "r.toml").is_err());
        assert!(parse("garbage = [", "r.toml").is_err());
        assert!(parse(&format!("{}colour = \"red\"\n", two()), "r.toml").is_err());
    }

    #[test]
    fn toml_errors_say_what_is_wrong_and_where() {
        // A typo of an opt-in field, a value of the wrong type, a missing
        // field, broken TOML: each one line with its line number and what
        // is wrong, not only where.
        let typo = format!("{}exit_nod = true\n", two());
        let wrong_type = format!("{}keepalive = \"25\"\n", two());
        for (text, line, needle) in [
            (typo.as_str(), 11, "unknown field `exit_nod`"),
            (wrong_type.as_str(), 11, "string \"25\", expected u16"),
            ("[[peer]]\nname = \"x\"\n", 1, "missing field"),
            ("\n\ngarbage = [", 3, "unclosed array"),
        ] {
            let err = parse(text, "r.toml").unwrap_err().to_string();
            assert!(err.starts_with(&format!("r.toml line {line}: ")), "{err}");
            assert!(err.contains(needle), "{err}");
            assert!(err.contains("expected [[peer]] tables"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
}
