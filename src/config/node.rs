//! The node's files in the config dir, and the typed view of its peers.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::config::document::{Document, Section};
use crate::error::{Error, Result};
use crate::types::{InterfaceName, PrivateKey, PublicKey, VpnAddress, quoted};

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
    pub fn own_files(&self) -> [String; 6] {
        [
            self.conf_name(),
            PRIVATE_KEY.into(),
            PUBLIC_KEY.into(),
            ADDRESS.into(),
            ENDPOINT.into(),
            RELAY_STATE.into(),
        ]
    }
    /// Stage the key files for `key` in `change`: `privatekey` and the
    /// `publickey` derived from it, so the two always agree.
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

/// A `[Peer]` section seen through its typed values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// Index of the section in the document.
    pub section: usize,
    /// The `# Name = …` comment (as written; hand edits may hold any text).
    pub name: Option<String>,
    pub public_key: PublicKey,
    /// The endpoint as written (a DNS name stays a name).
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<IpNet>,
    pub keepalive: Option<u16>,
    /// Peers reached through this one (`# Relay = …` lines).
    pub relayed: Vec<Relayed>,
}

/// A peer whose traffic goes through a relay peer instead of a direct
/// tunnel. Kept as `# Relay = NAME KEY ENDPOINT NETS` inside the relay's
/// section, so `relay NAME direct` can restore the direct peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    pub name: String,
    pub public_key: PublicKey,
    pub endpoint: String,
    pub nets: Vec<IpNet>,
}

impl Relayed {
    /// The value of its `# Relay = …` line.
    pub fn tag(&self) -> String {
        let nets: Vec<String> = self.nets.iter().map(ToString::to_string).collect();
        format!(
            "{} {} {} {}",
            self.name,
            self.public_key,
            self.endpoint,
            nets.join(",")
        )
    }

    fn parse(value: &str) -> Option<Relayed> {
        let mut words = value.split_whitespace();
        let relayed = Relayed {
            name: words.next()?.to_string(),
            public_key: words.next()?.parse().ok()?,
            endpoint: words.next()?.to_string(),
            nets: words
                .next()?
                .split(',')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?,
        };
        words.next().is_none().then_some(relayed)
    }
}

impl PeerEntry {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("(unnamed)")
    }
}

/// Parse one `[Peer]` section. A malformed value is an error that names
/// the file's peer and the value, so the user can fix the file by hand.
fn peer_entry(section_index: usize, section: &Section, conf: &str) -> Result<PeerEntry> {
    let bad = |what: &str, value: &str| {
        Error::BadConfig(format!(
            "{conf}: [Peer] {what} {}: expected {what} as wg-quick writes it",
            quoted(value)
        ))
    };
    let key_text = section.get("PublicKey").ok_or_else(|| {
        Error::BadConfig(format!(
            "{conf}: a [Peer] has no PublicKey: expected one per peer"
        ))
    })?;
    let public_key = key_text.parse().map_err(|_| bad("PublicKey", key_text))?;
    let mut allowed_ips = Vec::new();
    for value in section.get_all("AllowedIPs") {
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            allowed_ips.push(part.parse().map_err(|_| bad("AllowedIPs", part))?);
        }
    }
    let relayed = section
        .tags("Relay")
        .into_iter()
        .map(|v| Relayed::parse(v).ok_or_else(|| bad("# Relay", v)))
        .collect::<Result<Vec<_>>>()?;
    let keepalive = match section.get("PersistentKeepalive") {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) => Some(v.parse().map_err(|_| bad("PersistentKeepalive", v))?),
    };
    Ok(PeerEntry {
        section: section_index,
        name: section.peer_name().map(str::to_string),
        public_key,
        endpoint: section.get("Endpoint").map(str::to_string),
        allowed_ips,
        keepalive,
        relayed,
    })
}

/// Every peer of the config, in file order.
pub fn peers(doc: &Document, conf_name: &str) -> Result<Vec<PeerEntry>> {
    doc.peer_sections()
        .map(|(i, s)| peer_entry(i, s, conf_name))
        .collect()
}

/// The `ListenPort` of `[Interface]`, if written.
pub fn listen_port(doc: &Document) -> Option<u16> {
    doc.interface()?.get("ListenPort")?.parse().ok()
}

/// Everything the config dir says about this node.
pub struct Node {
    pub paths: Paths,
    pub private_key: Option<PrivateKey>,
    pub address: Option<VpnAddress>,
    pub endpoint: Option<String>,
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
        Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            Error::BadConfig(format!(
                "{} is not valid UTF-8: expected a text file",
                path.display()
            ))
        }),
        None => Ok(None),
    }
}

fn parse_file<T: std::str::FromStr<Err = Error>>(path: &Path) -> Result<Option<T>> {
    let Some(text) = read_entry(path)? else {
        return Ok(None);
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e| Error::BadConfig(format!("{}: {e}", path.display())))
}

impl Node {
    pub fn load(paths: Paths) -> Result<Node> {
        let private_key = parse_file::<PrivateKey>(&paths.private_key())?;
        let address = parse_file::<VpnAddress>(&paths.address())?;
        let endpoint = read_entry(&paths.endpoint())?.map(|t| t.trim().to_string());
        let conf_text = read_entry(&paths.conf())?;
        let conf = match &conf_text {
            Some(text) => Some(
                Document::parse(text)
                    .map_err(|e| Error::BadConfig(format!("{}: {e}", paths.conf().display())))?,
            ),
            None => None,
        };
        Ok(Node {
            paths,
            private_key,
            address,
            endpoint,
            conf,
        })
    }

    pub fn public_key(&self) -> Option<PublicKey> {
        self.private_key.as_ref().map(PrivateKey::public_key)
    }

    /// The peers of the config (none when there is no config yet).
    pub fn peers(&self) -> Result<Vec<PeerEntry>> {
        match &self.conf {
            Some(doc) => peers(doc, &self.paths.conf_name()),
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

    #[test]
    fn reads_peers_with_names() {
        let doc = Document::parse(
            "[Interface]\nListenPort = 51821\n[Peer]\n# Name = laptop\nPublicKey = DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=\nAllowedIPs = 10.15.0.2/32, 192.168.1.0/24\nPersistentKeepalive = 25\nEndpoint = laptop.lan:51820\n",
        )
        .unwrap();
        let peers = peers(&doc, "wg0.conf").unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].name.as_deref(), Some("laptop"));
        assert_eq!(peers[0].allowed_ips.len(), 2);
        assert_eq!(peers[0].keepalive, Some(25));
        assert_eq!(peers[0].endpoint.as_deref(), Some("laptop.lan:51820"));
        assert_eq!(listen_port(&doc), Some(51821));
    }

    #[test]
    fn bad_peer_values_are_named() {
        let doc = Document::parse("[Peer]\nPublicKey = nope\n").unwrap();
        let err = peers(&doc, "wg0.conf").unwrap_err().to_string();
        assert!(err.contains("\"nope\""), "{err}");
    }
}
