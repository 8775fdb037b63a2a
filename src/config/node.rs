//! The node's files in the config dir, and the typed view of its peers.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ipnet::IpNet;

use crate::config::document::{
    Document, Section, SectionKind, Where, is_wg_space, keys, wg_key_eq,
};
use crate::error::{Error, Result};
use crate::types::{
    EndpointSpec, InterfaceName, PeerSelector, PrivateKey, PublicKey, VpnAddress, WrittenEndpoint,
    WrittenName, is_wg_port,
};

/// Where each file of a node lives.
#[derive(Clone, Debug)]
pub struct Paths {
    pub dir: PathBuf,
    pub iface: InterfaceName,
}

impl Paths {
    pub fn new(dir: PathBuf, iface: InterfaceName) -> Self {
        Paths { dir, iface }
    }
    pub fn conf(&self) -> PathBuf {
        self.dir.join(format!("{}.conf", self.iface))
    }
    pub fn conf_name(&self) -> String {
        format!("{}.conf", self.iface)
    }
    pub fn private_key(&self) -> PathBuf {
        self.dir.join(PRIVATE_KEY)
    }
    pub fn public_key(&self) -> PathBuf {
        self.dir.join(PUBLIC_KEY)
    }
    pub fn address(&self) -> PathBuf {
        self.dir.join(ADDRESS)
    }
    /// The public endpoint given to `install --endpoint`, remembered for
    /// every later add-peer line.
    pub fn endpoint(&self) -> PathBuf {
        self.dir.join(ENDPOINT)
    }
    pub fn provisioned_dir(&self) -> PathBuf {
        self.dir.join(crate::store::PROVISIONED)
    }
    /// What `relay-enable` changed on the host, so `relay-disable` undoes
    /// exactly that.
    pub fn relay_state(&self) -> PathBuf {
        self.dir.join(RELAY_STATE)
    }
    /// The node's own files in the config dir (not `provisioned-peers/`).
    pub fn own_files(&self) -> [String; 7] {
        [
            self.conf_name(),
            PRIVATE_KEY.into(),
            PUBLIC_KEY.into(),
            ADDRESS.into(),
            ENDPOINT.into(),
            RELAY_STATE.into(),
            RELAY_PINS.into(),
        ]
    }
    /// Stage the key files for `key` in `change`: `privatekey` and the
    /// `publickey` derived from it, so the two always agree.
    #[allow(
        clippy::unused_self,
        reason = "on Paths so the one key-file writer is found beside the key paths"
    )]
    pub fn write_keys(&self, change: &mut crate::store::Change, key: &PrivateKey) {
        change.write(PRIVATE_KEY, format!("{}\n", key.expose_base64()));
        change.write(PUBLIC_KEY, format!("{}\n", key.public_key()));
    }
}

/// File names in the config dir.
pub const PRIVATE_KEY: &str = "privatekey";
pub const PUBLIC_KEY: &str = "publickey";
pub const ADDRESS: &str = "address";
pub const ENDPOINT: &str = "endpoint";
pub const RELAY_STATE: &str = "relay-state";
/// The peers a human placed with `wgp2p relay` (see `agent::relay`).
pub const RELAY_PINS: &str = "relay-pins";

/// A `[Peer]` section seen through its typed values, read as wg(8) reads
/// them (for a key written twice, the last line counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// The `# Name = …` comment as written (a hand edit may hold any text).
    pub name: Option<WrittenName>,
    pub public_key: PublicKey,
    /// The endpoint as written, whitespace removed as wg(8) does (a DNS
    /// name stays a name; it is resolved only for a live update).
    pub endpoint: Option<WrittenEndpoint>,
    /// Every `AllowedIPs` entry in file order, as written; an address
    /// without a prefix is a host route, as in wg(8).
    pub allowed_ips: Vec<IpNet>,
    /// `None` when absent, `off` or 0.
    pub keepalive: Option<u16>,
    /// Whether the section sets a (non-zero) `PresharedKey`.
    pub preshared_key: bool,
    /// Peers reached through this one (`# Relay = …` lines).
    pub relayed: Vec<Relayed>,
}

impl PeerEntry {
    pub fn display_name(&self) -> &str {
        self.name.as_ref().map_or("(unnamed)", WrittenName::as_str)
    }

    /// Whether `selector` names this peer.
    pub fn is(&self, selector: &PeerSelector) -> bool {
        selector.matches(&self.public_key, self.name.as_ref())
    }
}

/// A peer whose traffic goes through a relay peer instead of a direct
/// tunnel, remembered by a `# Relay = NAME KEY ENDPOINT NETS SECTION` line
/// in the relay's section so `relay NAME direct` can restore the direct
/// peer. SECTION is `b64:` and the peer's own section text (its comment
/// block, header and lines: PresharedKey, comments, unknown lines) in
/// base64; NAME and ENDPOINT are then only for a reader of the file, the
/// section says what they are (NAME is `-` when the name is not one word).
/// A line without SECTION (written by an older wgp2p) is read too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    pub name: Option<WrittenName>,
    pub public_key: PublicKey,
    /// As written (see `PeerEntry::endpoint`).
    pub endpoint: Option<WrittenEndpoint>,
    /// The addresses routed through the relay, as written in its section.
    pub nets: Vec<IpNet>,
    /// The peer's section text, restored byte for byte when it is direct again.
    pub section: Option<String>,
}

const SECTION_PREFIX: &str = "b64:";

impl Relayed {
    pub fn display_name(&self) -> &str {
        self.name.as_ref().map_or("(unnamed)", WrittenName::as_str)
    }

    /// Whether `selector` names this peer.
    pub fn is(&self, selector: &PeerSelector) -> bool {
        selector.matches(&self.public_key, self.name.as_ref())
    }

    /// The value of its `# Relay = …` line; every field is one word.
    pub fn tag(&self) -> String {
        let nets: Vec<String> = self.nets.iter().map(ToString::to_string).collect();
        let name = self
            .name
            .as_ref()
            .and_then(WrittenName::as_peer_name)
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let endpoint = self
            .endpoint
            .as_ref()
            .map_or("-", WrittenEndpoint::as_written);
        let mut tag = format!("{name} {} {endpoint} {}", self.public_key, nets.join(","));
        if let Some(section) = &self.section {
            tag.push(' ');
            tag.push_str(SECTION_PREFIX);
            tag.push_str(&BASE64.encode(section));
        }
        tag
    }

    /// Whether a `# Relay = …` comment is one of wgp2p's: its second word
    /// is a public key. Any other (an administrator's own note, say
    /// `# Relay = the office box`) is a plain comment, to wg and to wgp2p.
    fn is_written_by_wgp2p(value: &str) -> bool {
        value
            .split_whitespace()
            .nth(1)
            .is_some_and(|w| w.parse::<PublicKey>().is_ok())
    }

    fn parse(value: &str) -> Option<Relayed> {
        let mut words = value.split_whitespace();
        let name = words.next()?;
        let public_key = words.next()?.parse().ok()?;
        let endpoint = words.next()?;
        let nets = words
            .next()?
            .split(',')
            .map(|n| n.parse().ok())
            .collect::<Option<Vec<IpNet>>>()?;
        let section = match words.next() {
            None => None,
            Some(encoded) => {
                let bytes = BASE64.decode(encoded.strip_prefix(SECTION_PREFIX)?).ok()?;
                Some(String::from_utf8(bytes).ok()?)
            }
        };
        if words.next().is_some() {
            return None;
        }
        let Some(text) = section else {
            return Some(Relayed {
                name: name.parse().ok(),
                public_key,
                endpoint: endpoint.parse().ok(),
                nets,
                section: None,
            });
        };
        // The section is what the peer was: its name and endpoint come from it.
        let doc = Document::parse(&text).ok()?;
        let own = doc.peer_sections().next()?;
        Some(Relayed {
            name: own.peer_name().and_then(|n| n.parse().ok()),
            public_key,
            endpoint: own
                .get_last(keys::ENDPOINT)
                .and_then(|e| squeeze(e).parse().ok()),
            nets,
            section: Some(text),
        })
    }
}

/// A value as wg(8) reads it: every whitespace character removed.
fn squeeze(value: &str) -> String {
    value.chars().filter(|c| !is_wg_space(*c)).collect()
}

/// The error for a line wg(8) would refuse: the file, the line and what
/// is expected.
fn refused(doc: &Document, at: &Where<'_>, expected: &str) -> Error {
    Error::BadConfig(format!("{}: {at}: expected {expected}", doc.origin()))
}

/// One `AllowedIPs` entry as wg(8) reads it: an address, then an optional
/// `/prefix` of digits no longer than the address.
fn allowed_ip(entry: &str) -> Option<IpNet> {
    let (ip, prefix) = match entry.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (entry, None),
    };
    let ip: IpAddr = if ip.contains(':') {
        IpAddr::V6(ip.parse().ok()?)
    } else {
        IpAddr::V4(ip.parse().ok()?)
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match prefix {
        None => max,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            let len = p.trim_start_matches('0').parse::<u8>().unwrap_or(0);
            if p.trim_start_matches('0').len() > 3 || len > max {
                return None;
            }
            len
        }
        Some(_) => return None,
    };
    IpNet::new(ip, len).ok()
}

/// Whether `value` is a 32-byte key in the base64 wg(8) reads.
fn is_key(value: &str) -> bool {
    value.len() == 44
        && value.ends_with('=')
        && BASE64.decode(value).is_ok_and(|bytes| bytes.len() == 32)
}

/// Refuse what `wg-quick strip` then `wg setconf` would refuse in the lines
/// before the first header and in `[Interface]` sections.
fn check_non_peer(doc: &Document, section: &Section) -> Result<()> {
    let (quick_keys, wg_keys): (&[&str], &[&str]) = match section.kind() {
        SectionKind::Preamble => (&[], &[]),
        SectionKind::Interface { spaced: false } => (
            &keys::WG_QUICK_ONLY,
            &[keys::LISTEN_PORT, keys::FW_MARK, keys::PRIVATE_KEY],
        ),
        SectionKind::Interface { spaced: true } => {
            (&[], &[keys::LISTEN_PORT, keys::FW_MARK, keys::PRIVATE_KEY])
        }
        SectionKind::Unknown => {
            return Err(refused(doc, &section.header_at(), "[Interface] or [Peer]"));
        }
        SectionKind::Peer => return Ok(()),
    };
    if let Some(at) = section.others().next() {
        return Err(refused(doc, &at, "KEY = VALUE, a comment or a [section]"));
    }
    for (key, value, at) in section.key_values() {
        // wg-quick compares its keys as written (trimmed, any case).
        if let Some(quick) = quick_keys.iter().find(|k| key.eq_ignore_ascii_case(k)) {
            if *quick == keys::SAVE_CONFIG
                && !value.eq_ignore_ascii_case("true")
                && !value.eq_ignore_ascii_case("false")
            {
                return Err(refused(doc, &at, "SaveConfig = true or false"));
            }
            continue;
        }
        let value = squeeze(value);
        let ok = match wg_keys.iter().find(|k| wg_key_eq(key, k)) {
            Some(&keys::LISTEN_PORT) => is_wg_port(&value),
            Some(&keys::FW_MARK) => {
                value.eq_ignore_ascii_case("off")
                    || match value.strip_prefix("0x") {
                        Some(hex) if !hex.is_empty() => u32::from_str_radix(hex, 16).is_ok(),
                        _ => {
                            value.bytes().all(|b| b.is_ascii_digit())
                                && value.parse::<u32>().is_ok()
                        }
                    }
            }
            Some(&keys::PRIVATE_KEY) => is_key(&value),
            _ => {
                let expected = match section.kind() {
                    SectionKind::Preamble => "an [Interface] or [Peer] header before any key",
                    _ => {
                        "a key of [Interface]: ListenPort, FwMark, PrivateKey or one of wg-quick's"
                    }
                };
                return Err(refused(doc, &at, expected));
            }
        };
        if !ok {
            return Err(refused(doc, &at, "a value wg(8) reads for this key"));
        }
    }
    Ok(())
}

/// Parse one `[Peer]` section as wg(8) does; a line it would refuse is an
/// error naming the file, the line and what is expected.
fn peer_entry(doc: &Document, section: &Section) -> Result<PeerEntry> {
    if let Some(at) = section.others().next() {
        return Err(refused(doc, &at, "KEY = VALUE, a comment or a [section]"));
    }
    let mut public_key = None;
    let mut endpoint = None;
    let mut allowed_ips = Vec::new();
    let mut keepalive = None;
    let mut preshared_key = false;
    for (key, value, at) in section.key_values() {
        let value = squeeze(value);
        if wg_key_eq(key, keys::PUBLIC_KEY) {
            let key = value
                .parse::<PublicKey>()
                .ok()
                .filter(|_| is_key(&value))
                .ok_or_else(|| refused(doc, &at, "a public key (44 characters of base64)"))?;
            public_key = Some(key);
        } else if wg_key_eq(key, keys::ENDPOINT) {
            let written = value
                .parse::<WrittenEndpoint>()
                .map_err(|_| refused(doc, &at, "HOST:PORT or [IPv6]:PORT"))?;
            endpoint = Some(written);
        } else if wg_key_eq(key, keys::ALLOWED_IPS) {
            // wg(8) refuses a key with nothing after `=` (no route is
            // written by leaving the line out).
            if value.is_empty() {
                return Err(refused(
                    doc,
                    &at,
                    "addresses after AllowedIPs = (wg refuses it empty: remove the line instead)",
                ));
            }
            for entry in value.split(',') {
                let net = allowed_ip(entry).ok_or_else(|| {
                    refused(
                        doc,
                        &at,
                        "addresses such as 10.15.0.2, 10.15.0.2/32 or fd00::/64",
                    )
                })?;
                allowed_ips.push(net);
            }
        } else if wg_key_eq(key, keys::PERSISTENT_KEEPALIVE) {
            keepalive = if value.eq_ignore_ascii_case("off") {
                None
            } else if value.starts_with(|c: char| c.is_ascii_digit())
                && value.bytes().all(|b| b.is_ascii_digit())
            {
                let secs = value.trim_start_matches('0');
                match secs.parse::<u16>() {
                    _ if secs.is_empty() => None,
                    Ok(secs) => Some(secs),
                    Err(_) => {
                        return Err(refused(doc, &at, "off or seconds from 0 to 65535"));
                    }
                }
            } else {
                return Err(refused(doc, &at, "off or seconds from 0 to 65535"));
            };
        } else if wg_key_eq(key, keys::PRESHARED_KEY) {
            if !is_key(&value) {
                return Err(refused(
                    doc,
                    &at,
                    "a preshared key (44 characters of base64)",
                ));
            }
            preshared_key = BASE64
                .decode(&value)
                .is_ok_and(|b| b.iter().any(|&x| x != 0));
        } else {
            return Err(refused(
                doc,
                &at,
                "a key of [Peer]: PublicKey, PresharedKey, Endpoint, AllowedIPs or PersistentKeepalive",
            ));
        }
    }
    let public_key = public_key
        .ok_or_else(|| refused(doc, &section.header_at(), "a PublicKey line in this [Peer]"))?;
    let relayed = section
        .tags_at(keys::TAG_RELAY)
        .into_iter()
        .filter(|(v, _)| Relayed::is_written_by_wgp2p(v))
        .map(|(v, at)| {
            Relayed::parse(v).ok_or_else(|| {
                refused(
                    doc,
                    &at,
                    "NAME KEY ENDPOINT NETS [SECTION] after `# Relay =`, as wgp2p writes it",
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PeerEntry {
        name: section.peer_name().and_then(|n| n.parse().ok()),
        public_key,
        endpoint,
        allowed_ips,
        keepalive,
        preshared_key,
        relayed,
    })
}

/// Every peer of the config, in file order. Refuses, naming the file, the
/// line and what is expected, exactly what `wg-quick strip` then
/// `wg setconf` refuses (the differential test holds it to that), so a
/// read-only command never refuses a file `wg-quick up` accepts.
pub fn peers(doc: &Document) -> Result<Vec<PeerEntry>> {
    let mut entries = Vec::new();
    for section in doc.sections() {
        if section.is_peer() {
            entries.push(peer_entry(doc, section)?);
        } else {
            check_non_peer(doc, section)?;
        }
    }
    Ok(entries)
}

/// The peers as the device holds them after `wg setconf`, for a command
/// that shows them: a public key in several `[Peer]` sections (a pasted
/// section whose key was not changed) is one peer, in the place of its
/// first section; each later section sets what it writes (its endpoint,
/// keepalive, preshared key) and replaces the allowed IPs (wg(8) marks
/// every `[Peer]` of a file "replace allowed IPs", with or without an
/// `AllowedIPs` line). Otherwise `peers`.
pub fn peers_as_wg(doc: &Document) -> Result<Vec<PeerEntry>> {
    let mut merged: Vec<PeerEntry> = Vec::new();
    // Where each key's peer is in `merged`: status reads 10,000-peer configs.
    let mut at: HashMap<PublicKey, usize> = HashMap::new();
    let sections = doc.sections().filter(|s| s.is_peer());
    for (entry, section) in peers(doc)?.into_iter().zip(sections) {
        let Some(into) = at.get(&entry.public_key).and_then(|&i| merged.get_mut(i)) else {
            at.insert(entry.public_key, merged.len());
            merged.push(entry);
            continue;
        };
        let writes = |key: &str| section.get_last(key).is_some();
        if writes(keys::ENDPOINT) {
            into.endpoint = entry.endpoint;
        }
        into.allowed_ips = entry.allowed_ips;
        if writes(keys::PERSISTENT_KEEPALIVE) {
            into.keepalive = entry.keepalive;
        }
        if writes(keys::PRESHARED_KEY) {
            into.preshared_key = entry.preshared_key;
        }
        if into.name.is_none() {
            into.name = entry.name;
        }
        into.relayed.extend(entry.relayed);
    }
    Ok(merged)
}

/// Refuse, for an edit, a config with a public key in two `[Peer]`
/// sections: wg reads them as one peer, so no edit of one of them alone
/// would be what it looks like. The error names both lines.
pub fn check_keys_unique(doc: &Document) -> Result<()> {
    let mut seen: Vec<(PublicKey, u32)> = Vec::new();
    for section in doc.peer_sections() {
        let Some((key, at)) = section
            .key_values()
            .filter(|(k, _, _)| wg_key_eq(k, keys::PUBLIC_KEY))
            .last()
            .and_then(|(_, v, at)| Some((squeeze(v).parse::<PublicKey>().ok()?, at)))
        else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            return Err(refused(
                doc,
                &at,
                &format!(
                    "each public key in one [Peer] section: line {first} has it too, and wg reads the two as one peer; merge them into one section"
                ),
            ));
        }
        seen.push((key, at.number));
    }
    check_interface_unique(doc)
}

/// Refuse, for an edit, a config whose `[Interface]` keys that take one
/// value are written in two `[Interface]` sections: wg and wg-quick read
/// the last, and an edit of the first would change nothing. The error
/// names both lines.
fn check_interface_unique(doc: &Document) -> Result<()> {
    let single = [keys::PRIVATE_KEY, keys::LISTEN_PORT, keys::FW_MARK, "Table"];
    let mut first: Vec<(&str, u32)> = Vec::new();
    for (i, section) in doc.sections().filter(|s| s.is_interface()).enumerate() {
        for (k, _, at) in section.key_values() {
            let Some(key) = single.iter().find(|s| wg_key_eq(k, s)) else {
                continue;
            };
            match first.iter().find(|(seen, _)| seen == key) {
                Some((_, line)) if i > 0 => {
                    return Err(refused(
                        doc,
                        &at,
                        &format!(
                            "{key} in one [Interface] section: line {line} has it in another, and wg reads this one; merge the [Interface] sections into one"
                        ),
                    ));
                }
                Some(_) => {}
                None if i == 0 => first.push((key, at.number)),
                None => {}
            }
        }
    }
    Ok(())
}

/// The `ListenPort` of `[Interface]`, if written.
pub fn listen_port(doc: &Document) -> Option<u16> {
    squeeze(doc.interface_value(keys::LISTEN_PORT)?)
        .parse()
        .ok()
}

/// Everything the config dir says about this node.
pub struct Node {
    pub paths: Paths,
    pub private_key: Option<PrivateKey>,
    pub address: Option<VpnAddress>,
    /// The `endpoint` file: this node's public endpoint from `install --endpoint`.
    pub endpoint: Option<EndpointSpec>,
    /// The config as read.
    pub conf: Option<Document>,
}

/// Read a file of the config dir; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            Error::BadConfig(format!(
                "{} is not valid UTF-8: expected a text file",
                path.display()
            ))
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Read a file of the config dir, never through a symbolic link (except
/// a linked config, see `store`); `None` when it does not exist.
pub fn read_entry(path: &Path) -> Result<Option<String>> {
    match crate::store::read_entry(path)? {
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| not_utf8(path, e.as_bytes(), e.utf8_error().valid_up_to())),
        None => Ok(None),
    }
}

/// The error for a file that is not UTF-8: the file, the line of the
/// first byte that is not, a short escaped prefix of that line, the fix.
fn not_utf8(path: &Path, bytes: &[u8], valid_up_to: usize) -> Error {
    let start = bytes[..valid_up_to]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let number = bytes[..start].iter().filter(|&&b| b == b'\n').count() + 1;
    let end = bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| start + i);
    let line = String::from_utf8_lossy(&bytes[start..end]);
    let at = Where {
        number: u32::try_from(number).unwrap_or(u32::MAX),
        text: line.trim_end_matches('\r'),
    };
    // The key file is a secret whole: only its line number is given.
    let at = if path.file_name().is_some_and(|n| n == "privatekey") {
        format!("line {number}")
    } else {
        at.to_string()
    };
    Error::BadConfig(format!(
        "{}: {at} is not valid UTF-8: expected a UTF-8 text file (convert it, e.g. `iconv -f latin1 -t utf-8`)",
        path.display(),
    ))
}

/// The config for a command that only reads it: a file that is not UTF-8
/// (wg-quick reads a Latin-1 comment fine) is read with each invalid byte
/// as U+FFFD, and the error that an edit would give is returned with it.
/// Such a document must never be written back.
fn read_conf_to_show(path: &Path) -> Result<Option<(String, Option<String>)>> {
    match crate::store::read_entry(path)? {
        Some(bytes) => Ok(Some(match String::from_utf8(bytes) {
            Ok(text) => (text, None),
            Err(e) => {
                let problem =
                    not_utf8(path, e.as_bytes(), e.utf8_error().valid_up_to()).to_string();
                (
                    String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    Some(problem),
                )
            }
        })),
        None => Ok(None),
    }
}

fn parse_file<T: std::str::FromStr<Err = crate::types::Error>>(path: &Path) -> Result<Option<T>> {
    let Some(text) = read_entry(path)? else {
        return Ok(None);
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e| Error::BadConfig(format!("{}: {e}", path.display())))
}

impl Node {
    /// The node, for a command that may change it: a config that is not
    /// UTF-8 is refused (its bytes could not be written back as they are).
    pub fn load(paths: Paths) -> Result<Node> {
        Self::load_with(paths, false).map(|(node, _)| node)
    }

    /// The node, for a command that only shows it (`status`, `doctor`,
    /// `export`): a config that is not UTF-8 is read anyway (see
    /// `read_conf_to_show`); the second value is the error an edit would
    /// give, for `doctor`.
    pub fn load_to_show(paths: Paths) -> Result<(Node, Option<String>)> {
        Self::load_with(paths, true)
    }

    fn load_with(paths: Paths, to_show: bool) -> Result<(Node, Option<String>)> {
        let private_key = parse_file::<PrivateKey>(&paths.private_key())?;
        let address = parse_file::<VpnAddress>(&paths.address())?;
        let endpoint = parse_file::<EndpointSpec>(&paths.endpoint())?;
        let (conf_text, problem) = if to_show {
            match read_conf_to_show(&paths.conf())? {
                Some((text, problem)) => (Some(text), problem),
                None => (None, None),
            }
        } else {
            (read_entry(&paths.conf())?, None)
        };
        let conf = match &conf_text {
            Some(text) => Some(Document::parse_named(
                text,
                &paths.conf().display().to_string(),
            )?),
            None => None,
        };
        let node = Node {
            paths,
            private_key,
            address,
            endpoint,
            conf,
        };
        Ok((node, problem))
    }

    /// This node's public key as wg holds it: from the config's
    /// PrivateKey (the last one, which wg reads) when the config has one,
    /// else from `privatekey`. They agree on every file install wrote; a
    /// hand edit that adds another `[Interface]` key is what wg runs (and
    /// doctor names the two lines, edits refuse them).
    pub fn public_key(&self) -> Option<PublicKey> {
        self.conf
            .as_ref()
            .and_then(|doc| doc.interface_value(keys::PRIVATE_KEY))
            .and_then(|k| k.parse::<PrivateKey>().ok())
            .map(|k| k.public_key())
            .or_else(|| self.private_key.as_ref().map(PrivateKey::public_key))
    }

    /// The peers of the config (none when there is no config yet).
    pub fn peers(&self) -> Result<Vec<PeerEntry>> {
        match &self.conf {
            Some(doc) => peers(doc),
            None => Ok(Vec::new()),
        }
    }

    /// The peers as the device holds them (`peers_as_wg`), for a command
    /// that shows them.
    pub fn peers_as_wg(&self) -> Result<Vec<PeerEntry>> {
        match &self.conf {
            Some(doc) => peers_as_wg(doc),
            None => Ok(Vec::new()),
        }
    }

    /// The config, or the error that says `install` comes first.
    pub fn require_conf(&self) -> Result<&Document> {
        self.conf.as_ref().ok_or_else(|| not_installed(&self.paths))
    }

    /// The config moved out, for a command that edits it (what `commit`
    /// needs stays: the paths and the text as read, for rollback).
    pub fn take_conf(&mut self) -> Result<Document> {
        self.conf.take().ok_or_else(|| not_installed(&self.paths))
    }

    /// This node's keys and address, which most commands need.
    pub fn require_identity(&self) -> Result<(PublicKey, VpnAddress)> {
        match (self.public_key(), self.address) {
            (Some(key), Some(address)) => Ok((key, address)),
            _ => Err(not_installed(&self.paths)),
        }
    }
}

/// A device provisioned here (`provision-peer`), as its conf in
/// `provisioned-peers/` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The device's public key (from its conf's private key).
    pub key: PublicKey,
    /// Its conf's file name in `provisioned-peers/`.
    pub file: String,
    /// Its conf knows more members than this node (`--mesh`).
    pub mesh: bool,
}

/// The devices provisioned here, read through the store's safe reader; a
/// conf that cannot be read is left out.
pub fn provisioned_devices(paths: &Paths) -> Vec<Device> {
    let Ok(files) = crate::store::provisioned_files(&paths.dir) else {
        return Vec::new();
    };
    let mut devices = Vec::new();
    for file in files {
        let entry = format!("{}/{file}", crate::store::PROVISIONED);
        let Ok(Some(bytes)) = crate::store::current(&paths.dir, &entry) else {
            continue;
        };
        let Some(doc) = String::from_utf8(bytes)
            .ok()
            .and_then(|t| Document::parse(&t).ok())
        else {
            continue;
        };
        let key = doc
            .interface()
            .and_then(|s| s.get_last(keys::PRIVATE_KEY))
            .and_then(|k| k.parse::<PrivateKey>().ok())
            .map(|k| k.public_key());
        if let Some(key) = key {
            devices.push(Device {
                key,
                file,
                mesh: peers(&doc).is_ok_and(|p| p.len() > 1),
            });
        }
    }
    devices
}

pub fn not_installed(paths: &Paths) -> Error {
    Error::NotFound(format!(
        "{} is not set up in {}: run `wgp2p install ADDRESS/CIDR` first",
        paths.iface,
        paths.dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";
    const K2: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    #[test]
    fn an_empty_allowed_ips_is_refused_as_wg_refuses_it() {
        let doc = Document::parse(&format!(
            "[Interface]\n[Peer]\nPublicKey = {K1}\nAllowedIPs =\n"
        ))
        .unwrap();
        let e = peers(&doc).unwrap_err();
        assert!(e.to_string().contains("line 4"), "{e}");
        assert!(e.to_string().contains("wg refuses it empty"), "{e}");
    }

    #[test]
    fn reads_peers_with_names() {
        let doc = Document::parse(&format!(
            "[Interface]\nListenPort = 51821\n[Peer]\n# Name = laptop\nPublicKey = {K1}\nAllowedIPs = 10.15.0.2/32, 192.168.1.0/24\nPersistentKeepalive = 25\nEndpoint = laptop.lan:51820\n",
        ))
        .unwrap();
        let peers = peers(&doc).unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].display_name(), "laptop");
        assert_eq!(peers[0].allowed_ips.len(), 2);
        assert_eq!(peers[0].keepalive, Some(25));
        assert_eq!(
            peers[0].endpoint.as_ref().map(WrittenEndpoint::as_written),
            Some("laptop.lan:51820")
        );
        assert_eq!(listen_port(&doc), Some(51821));
    }

    /// Reproduction: `AllowedIPs = 10.15.0.2` (no prefix: a host route for
    /// wg) made every command fail.
    #[test]
    fn an_address_without_prefix_is_a_host_route() {
        let doc = Document::parse(&format!(
            "[Peer]\nPublicKey = {K1}\nAllowedIPs = 10.15.0.2\nallowed ips = fd00::2 , 10.9.0.0/16 # lan\n"
        ))
        .unwrap();
        let nets: Vec<String> = peers(&doc).unwrap()[0]
            .allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.15.0.2/32", "fd00::2/128", "10.9.0.0/16"]);
    }

    #[test]
    fn what_wg_refuses_is_refused_with_file_line_and_text() {
        let cases = [
            (
                "[Peer]\nPublicKey = nope\n".to_string(),
                "line 2 \"PublicKey = nope\"",
            ),
            (
                format!("[Peer]\nPublicKey = {K1}\nAllowedIPs = 10.0.0.1/33\n"),
                "line 3",
            ),
            (
                format!("[Peer]\nPublicKey = {K1}\nEndpoint = 192.0.2.1\n"),
                "line 3",
            ),
            (format!("[Peer]\nPublicKey = {K1}\nMTU = 1400\n"), "line 3"),
            (
                format!("[Peer]\nPublicKey = {K1}\nPersistentKeepalive = 65536\n"),
                "line 3",
            ),
            (
                format!("ListenPort = 1\n[Peer]\nPublicKey = {K1}\n"),
                "line 1",
            ),
            ("[Interface]\nSaveConfig = maybe\n".to_string(), "line 2"),
            ("[Interface]\nBogus = 1\n".to_string(), "line 2"),
            ("[Interface]\njust text\n".to_string(), "line 2"),
            ("[Peers]\n".to_string(), "line 1"),
            (
                "[Peer]\nEndpoint = 192.0.2.1:1\n".to_string(),
                "line 1 \"[Peer]\"",
            ),
            (
                "[ Interface ]\nAddress = 10.0.0.1/24\n".to_string(),
                "line 2",
            ),
        ];
        for (text, expected) in cases {
            let doc = Document::parse_named(&text, "/etc/wireguard/wg0.conf").unwrap();
            let err = peers(&doc).unwrap_err().to_string();
            assert!(err.starts_with("/etc/wireguard/wg0.conf: "), "{err}");
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.contains("expected"), "{err}");
        }
    }

    #[test]
    fn what_wg_reads_is_read() {
        let text = format!(
            "# c\n[Interface] # main\nAddress = 10.0.0.1/24\nDNS = 1.1.1.1, lan\nMTU = 1400\nTable = off\nPostUp = echo # x\nSaveConfig = TRUE\nFwMark = 0x10\nListenPort = 0\n[peer]\n\tPublicKey\t=\t{K1}   # k\nPresharedKey = {K2}\nEndpoint = [fd00::1]:51820\nPersistentKeepalive = off\n[Peer] # two\nPublicKey = {K2}\nEndpoint = 192.0.2.1:1 # e\nPersistentKeepalive = 007\n"
        );
        let doc = Document::parse(&text).unwrap();
        let peers = peers(&doc).unwrap();
        assert_eq!(peers.len(), 2);
        assert!(peers[0].preshared_key && !peers[1].preshared_key);
        assert_eq!(peers[0].keepalive, None);
        assert_eq!(peers[1].keepalive, Some(7));
        assert_eq!(
            peers[1].endpoint.as_ref().map(WrittenEndpoint::as_written),
            Some("192.0.2.1:1")
        );
    }

    /// Reproduction: a hand-written `# Name = Bob laptop` let relay write a
    /// `# Relay` line that could not be read back.
    #[test]
    fn relay_lines_round_trip_any_name() {
        let section = format!(
            "# above\n[Peer]\n# Name = Bob laptop\nPublicKey = {K1}\nAllowedIPs = 10.0.0.2\nEndpoint = 192.0.2.1:1"
        );
        let relayed = Relayed {
            name: Some("Bob laptop".parse().unwrap()),
            public_key: K1.parse().unwrap(),
            endpoint: Some("192.0.2.1:1".parse().unwrap()),
            nets: vec!["10.0.0.2/32".parse().unwrap()],
            section: Some(section),
        };
        let tag = relayed.tag();
        assert!(tag.starts_with("- "), "{tag}");
        assert_eq!(Relayed::parse(&tag), Some(relayed));
        let legacy = format!("far {K2} 192.0.2.9:51820 10.15.0.3/32");
        let old = Relayed::parse(&legacy).unwrap();
        assert_eq!(old.display_name(), "far");
        assert_eq!(old.tag(), legacy);
    }
}
