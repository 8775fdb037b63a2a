//! Validated types: once a value has one of these types it is known to be
//! well formed ("parse, don't validate"). Every `FromStr` error is one line
//! that quotes the value and says what is expected.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ipnet::IpNet;
use zeroize::Zeroize;

/// Why a value is not one of these types (`Invalid`), or why an endpoint
/// does not resolve (`System`): one line that names the value and what is
/// expected. Types have their own error so they import nothing of wgp2p;
/// it becomes `crate::error::Error` (the same variant) where it meets the
/// rest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    System(String),
}

/// Quote a user value for an error message, showing control characters
/// escaped so that the message always stays on one line.
/// Long values are cut to their first 64 characters (a file's content is
/// never echoed whole).
pub fn quoted(value: &str) -> String {
    const LIMIT: usize = 64;
    match value.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// Quote at most the first 40 characters of a text read from a file, for
/// an error: escaped like `quoted`, `…` when cut.
pub fn quoted_prefix(value: &str) -> String {
    const MAX: usize = 40;
    match value.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", quoted(&value[..end])),
        None => quoted(value),
    }
}

fn invalid(value: &str, expected: &str) -> Error {
    Error::Invalid(format!("invalid {}: expected {expected}", quoted(value)))
}

/// A peer's name: 1–64 characters of `[A-Za-z0-9._-]`, not starting with
/// `-` or `.`. Narrow on purpose: the name becomes a comment line in the
/// config, a file name under `provisioned-peers/` and a shell argument, so
/// nothing in it may mean anything to any of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerName(String);

impl PeerName {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name written in the code, known to be valid.
    pub fn from_static(name: &'static str) -> Self {
        debug_assert!(name.parse::<PeerName>().is_ok());
        PeerName(name.to_string())
    }
}

impl FromStr for PeerName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let expected =
            "a peer name of 1-64 characters from A-Z a-z 0-9 . _ - (not starting with - or .)";
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty()
            || s.len() > Self::MAX_LEN
            || !s.chars().all(allowed)
            || s.starts_with(['-', '.'])
        {
            return Err(invalid(s, expected));
        }
        Ok(PeerName(s.to_string()))
    }
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A peer's name as written in a `# Name = …` comment of a config: a hand
/// edit may hold any text on one line (`Bob laptop`), so this is lenient
/// where `PeerName` is narrow. wgp2p reads and shows it, selects a peer by
/// it, and never writes it anywhere but back into the same comment: only a
/// `PeerName` is written into new lines (see `as_peer_name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WrittenName(String);

impl WrittenName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a `PeerName`, when it is one.
    pub fn as_peer_name(&self) -> Option<PeerName> {
        self.0.parse().ok()
    }
}

impl FromStr for WrittenName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let trimmed = s.trim();
        if trimmed.is_empty() || trimmed.len() > 256 || trimmed.chars().any(char::is_control) {
            return Err(invalid(
                s,
                "a peer name: 1-256 characters on one line, no control characters",
            ));
        }
        Ok(WrittenName(trimmed.to_string()))
    }
}

impl From<&PeerName> for WrittenName {
    fn from(name: &PeerName) -> Self {
        WrittenName(name.0.clone())
    }
}

impl PartialEq<PeerName> for WrittenName {
    fn eq(&self, other: &PeerName) -> bool {
        self.0 == other.0
    }
}

impl fmt::Display for WrittenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a command names a peer: by public key when the text is one, else
/// by the name in its `# Name = …` comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerSelector {
    Key(PublicKey),
    Name(WrittenName),
}

impl PeerSelector {
    /// Whether this selects the peer with `key` and `name`.
    pub fn matches(&self, key: &PublicKey, name: Option<&WrittenName>) -> bool {
        match self {
            PeerSelector::Key(k) => k == key,
            PeerSelector::Name(n) => name == Some(n),
        }
    }
}

impl FromStr for PeerSelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.parse::<PublicKey>() {
            Ok(key) => Ok(PeerSelector::Key(key)),
            Err(_) => s.parse().map(PeerSelector::Name).map_err(|_| {
                invalid(
                    s,
                    "a peer's name or public key, as `wgp2p status` shows them",
                )
            }),
        }
    }
}

impl fmt::Display for PeerSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerSelector::Key(key) => write!(f, "{key}"),
            PeerSelector::Name(name) => f.write_str(name.as_str()),
        }
    }
}

/// Decode a WireGuard key: canonical base64 (44 characters) of 32 bytes.
fn decode_key(s: &str, what: &str) -> Result<[u8; 32], Error> {
    let expected = format!("a {what} (44 characters of base64 encoding 32 bytes)");
    let trimmed = s.trim();
    if trimmed.len() != 44 {
        return Err(invalid(s, &expected));
    }
    let bytes = BASE64.decode(trimmed).map_err(|_| invalid(s, &expected))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| invalid(s, &expected))
}

/// A WireGuard public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }
    pub fn to_base64(self) -> String {
        BASE64.encode(self.0)
    }
    pub fn to_wg(self) -> wireguard_control::Key {
        wireguard_control::Key(self.0)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for PublicKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bytes = decode_key(s, "public key")?;
        if bytes == [0u8; 32] {
            return Err(invalid(s, "a public key other than the all-zero key"));
        }
        Ok(PublicKey(bytes))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// A WireGuard private key. It has no `Display`, its `Debug` hides the key,
/// and its bytes are wiped on drop. The base64 text is only produced by
/// `expose_base64`, for the 0600 files that must hold it.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    pub fn generate() -> Self {
        let mut key = wireguard_control::Key::generate_private();
        let private = PrivateKey(key.0);
        key.0.zeroize();
        private
    }

    pub fn public_key(&self) -> PublicKey {
        let mut key = wireguard_control::Key(self.0);
        let public = PublicKey(key.get_public().0);
        key.0.zeroize();
        public
    }

    /// The key as base64, only for writing into a 0600 file or a
    /// provisioned conf.
    pub fn expose_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    pub fn to_wg(&self) -> wireguard_control::Key {
        wireguard_control::Key(self.0)
    }

    /// The key's bytes, only to derive this node's membership signing key
    /// from them (`membership::record::SigningIdentity`).
    pub(crate) fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for PrivateKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        // Never echo a (possibly real) private key in an error message.
        let shown = format!("private key of {} characters", s.trim().len());
        let bytes = decode_key(s, "private key").map_err(|_| {
            Error::Invalid(format!(
                "invalid {shown}: expected 44 characters of base64 encoding 32 bytes"
            ))
        })?;
        if bytes == [0u8; 32] {
            return Err(Error::Invalid(
                "invalid private key: the all-zero key is not a usable key".into(),
            ));
        }
        Ok(PrivateKey(bytes))
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(hidden)")
    }
}

/// The keepalive interval, in seconds, of a peer added without `--keepalive`.
pub const DEFAULT_KEEPALIVE: u16 = 25;

/// A WireGuard interface name, as wg-quick accepts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceName(String);

impl InterfaceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn to_wg(&self) -> Result<wireguard_control::InterfaceName, Error> {
        self.0
            .parse()
            .map_err(|_| invalid(&self.0, "a WireGuard interface name"))
    }
}

impl FromStr for InterfaceName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '=' | '+' | '.' | '-');
        // What wg-quick accepts, minus a leading `.`: the config dir's own
        // temp and journal files start with `.wgp2p-`, and `IFACE.conf`
        // must never be taken for one of them.
        if s.is_empty() || s.len() > 15 || !s.chars().all(allowed) || s.starts_with('.') {
            return Err(invalid(
                s,
                "an interface name of 1-15 characters from A-Z a-z 0-9 _ = + . - (not starting with .)",
            ));
        }
        Ok(InterfaceName(s.to_string()))
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A UDP port, 1–65535.
pub fn parse_port(s: &str) -> Result<u16, Error> {
    match s.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(invalid(s, "a UDP port from 1 to 65535")),
    }
}

/// The host part of an endpoint: an IP address or a DNS name kept as
/// written (it is resolved only for the live update).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Dns(String),
}

fn is_dns_name(s: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name = s.strip_suffix('.').unwrap_or(s);
    !name.is_empty() && name.len() <= 253 && name.split('.').all(label_ok)
}

impl FromStr for Host {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return match inner.parse::<std::net::Ipv6Addr>() {
                Ok(ip) => Ok(Host::Ip(IpAddr::V6(ip))),
                Err(_) => Err(invalid(s, "an IPv6 address inside [ ]")),
            };
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        // A dotted quad that did not parse as IPv4 is a typo, not a DNS name.
        let looks_numeric = s.chars().all(|c| c.is_ascii_digit() || c == '.');
        if !looks_numeric && is_dns_name(s) {
            return Ok(Host::Dns(s.to_string()));
        }
        Err(invalid(s, "an IP address or a DNS name"))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Dns(name) => f.write_str(name),
        }
    }
}

/// An address the device resolved or a socket answered from.
impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }
}

/// A peer endpoint `host:port`, `[v6]:port` or `dns.name:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    host: Host,
    port: u16,
}

const ENDPOINT_EXPECTED: &str =
    "an endpoint HOST:PORT, [IPv6]:PORT or NAME:PORT with a port from 1 to 65535";

impl Endpoint {
    /// An endpoint from its parts (a port of this node or of a socket).
    pub fn new(host: Host, port: u16) -> Self {
        Endpoint { host, port }
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host's address, when it is an address (not a DNS name).
    pub fn ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::Ip(ip) => Some(ip),
            Host::Dns(_) => None,
        }
    }

    /// Resolve to a socket address for the live device (DNS names through
    /// the system resolver, so /etc/hosts is honoured).
    pub fn resolve(&self) -> Result<SocketAddr, Error> {
        match &self.host {
            Host::Ip(ip) => Ok(SocketAddr::new(*ip, self.port)),
            Host::Dns(name) => (name.as_str(), self.port)
                .to_socket_addrs()
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| {
                    Error::System(format!(
                        "cannot resolve endpoint {}: expected a DNS name that resolves to an address",
                        quoted(&self.to_string())
                    ))
                }),
        }
    }
}

/// Split `HOST:PORT`, `[V6]:PORT`, `HOST` or `[V6]`, refusing a bare IPv6
/// address (its colons make the port ambiguous).
fn split_host_port(s: &str) -> Result<(Host, Option<u16>), Error> {
    let bad = || invalid(s, ENDPOINT_EXPECTED);
    let (host_text, port_text) = if s.starts_with('[') {
        let close = s.find(']').ok_or_else(bad)?;
        match &s[close + 1..] {
            "" => (&s[..=close], None),
            rest => (&s[..=close], Some(rest.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => s
                .split_once(':')
                .map(|(h, p)| (h, Some(p)))
                .ok_or_else(bad)?,
            _ => {
                return Err(invalid(
                    s,
                    "an endpoint with the IPv6 address in brackets, e.g. [fd00::1]:51820",
                ));
            }
        }
    };
    if host_text.is_empty() {
        return Err(bad());
    }
    let host = host_text.parse::<Host>().map_err(|_| bad())?;
    let port = match port_text {
        Some(p) => Some(parse_port(p).map_err(|_| bad())?),
        None => None,
    };
    Ok((host, port))
}

impl FromStr for Endpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match split_host_port(s)? {
            (host, Some(port)) => Ok(Endpoint { host, port }),
            (_, None) => Err(invalid(s, ENDPOINT_EXPECTED)),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Whether `value` is a port wg(8) reads: it hands it to getaddrinfo(3)
/// as a service, which takes any string of digits (glibc keeps the low 16
/// bits of a bigger number) or a UDP service name of the services database
/// (`domain`: looked up as wg does). Such a port is kept as written; only
/// a number wgp2p would write itself parses into an [`Endpoint`].
pub(crate) fn is_wg_port(value: &str) -> bool {
    !value.is_empty()
        && (value.bytes().all(|b| b.is_ascii_digit())
            || crate::sys::udp_service_port(value).is_some())
}

/// Whether wg(8) reads `value` as an endpoint: `[IPv6]:PORT`, or
/// `HOST:PORT` split at the last colon, HOST an address or a DNS name.
fn is_endpoint(value: &str) -> bool {
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, port),
                None => return false,
            },
            None => return false,
        },
        None => match value.rsplit_once(':') {
            Some(split) => split,
            None => return false,
        },
    };
    let host_ok = host.parse::<IpAddr>().is_ok()
        || is_scoped_ipv6(host)
        || inet_aton(host).is_some()
        || (!host.bytes().all(|b| b.is_ascii_digit() || b == b'.') && host.parse::<Host>().is_ok());
    host_ok && is_wg_port(port)
}

/// An IPv4 address in one of the numeric forms getaddrinfo(3) (and so
/// wg(8)) reads besides the dotted quad, as inet_aton(3) does: one to
/// four parts, each decimal, `0` octal or `0x` hex, the last filling the
/// bytes left (`3221225986` and `192.0.514` are 192.0.2.2).
pub fn inet_aton(text: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let value = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            if hex.is_empty() {
                0
            } else {
                u32::from_str_radix(hex, 16).ok()?
            }
        } else if part.len() > 1 && part.starts_with('0') {
            u32::from_str_radix(&part[1..], 8).ok()?
        } else if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse::<u32>().ok()?
        } else {
            return None;
        };
        values.push(value);
    }
    let (last, head) = values.split_last()?;
    if head.iter().any(|v| *v > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - head.len());
    if rest_bits < 32 && u64::from(*last) >= 1u64 << rest_bits {
        return None;
    }
    let mut address: u32 = 0;
    for (i, v) in head.iter().enumerate() {
        address |= v << (24 - 8 * i);
    }
    Some(std::net::Ipv4Addr::from(address | last))
}

/// An IPv6 address with a zone, `fe80::1%eth0` (getaddrinfo, which wg(8)
/// uses, reads the zone as an interface index, or as the name of an
/// interface that exists on this host: `%nosuchif` fails there as here).
fn is_scoped_ipv6(host: &str) -> bool {
    host.split_once('%').is_some_and(|(addr, zone)| {
        addr.parse::<std::net::Ipv6Addr>().is_ok()
            && (1..=15).contains(&zone.len())
            && (zone.bytes().all(|b| b.is_ascii_digit()) || interface_exists(zone))
    })
}

fn interface_exists(name: &str) -> bool {
    crate::sys::interface_index(name).is_ok()
}

/// A peer's `Endpoint` as written in a config, whitespace removed as
/// wg(8) does. wg accepts forms `Endpoint` refuses (a port of any digits,
/// a DNS name `Host` would not take), so the text is kept and written back
/// as it is; `parsed` gives the typed endpoint when it is one (for a live
/// update, a comparison, a new line).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WrittenEndpoint(String);

impl WrittenEndpoint {
    pub fn as_written(&self) -> &str {
        &self.0
    }

    /// The endpoint, when the text is one wgp2p would write itself; a
    /// service name as port (`HOST:domain`) with the number wg(8) looks up
    /// for it, so the peer can be set live and compared like any other.
    pub fn parsed(&self) -> Option<Endpoint> {
        if let Ok(endpoint) = self.0.parse() {
            return Some(endpoint);
        }
        let (host, port) = self.0.rsplit_once(':')?;
        // An IPv4 host in inet_aton's other forms, and/or a service name
        // as port: both as getaddrinfo reads them.
        let aton = inet_aton(host).map(|ip| ip.to_string());
        let number = if port.bytes().all(|b| b.is_ascii_digit()) {
            aton.as_ref()?;
            port.to_string()
        } else {
            crate::sys::udp_service_port(port)?.to_string()
        };
        format!("{}:{number}", aton.as_deref().unwrap_or(host))
            .parse()
            .ok()
    }
}

/// What wg(8) reads as an endpoint (see `is_endpoint`).
impl FromStr for WrittenEndpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if is_endpoint(s) {
            Ok(WrittenEndpoint(s.to_string()))
        } else {
            Err(invalid(s, "an endpoint HOST:PORT or [IPv6]:PORT"))
        }
    }
}

impl From<&Endpoint> for WrittenEndpoint {
    fn from(endpoint: &Endpoint) -> Self {
        WrittenEndpoint(endpoint.to_string())
    }
}

impl fmt::Display for WrittenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// This node's own public endpoint as the user gives it: `HOST[:PORT]`
/// (`install --endpoint`, kept in the config dir's `endpoint` file;
/// `export --endpoint`; `WGP2P_ENDPOINT`). Without a port it follows the
/// listen port, so it is completed only where the port is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSpec {
    host: Host,
    port: Option<u16>,
}

impl EndpointSpec {
    /// The endpoint, with `listen_port` when no port was given.
    pub fn with_default_port(&self, listen_port: u16) -> Endpoint {
        Endpoint {
            host: self.host.clone(),
            port: self.port.unwrap_or(listen_port),
        }
    }
}

impl FromStr for EndpointSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let (host, port) = split_host_port(s)?;
        Ok(EndpointSpec { host, port })
    }
}

/// `HOST` or `HOST:PORT`, as the `endpoint` file holds it.
impl fmt::Display for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

/// Refuse addresses that can never be a host's VPN address.
fn check_unicast(s: &str, ip: IpAddr) -> Result<(), Error> {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
        return Err(invalid(
            s,
            "a unicast address (not 0.0.0.0, ::, loopback or multicast)",
        ));
    }
    if let IpAddr::V4(v4) = ip
        && v4.is_broadcast()
    {
        return Err(invalid(s, "a unicast address, not the broadcast address"));
    }
    Ok(())
}

/// A node's VPN address with its prefix, e.g. `10.15.0.1/24`: a host
/// address inside the network, never the network or broadcast address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VpnAddress(IpNet);

impl VpnAddress {
    pub fn ip(&self) -> IpAddr {
        self.0.addr()
    }
    /// The host route (/32 or /128) of this address.
    pub fn host_route(&self) -> IpNet {
        IpNet::from(self.0.addr())
    }
    /// The VPN network this address is in, e.g. `10.15.0.0/24`.
    pub fn network(&self) -> IpNet {
        self.0.trunc()
    }
}

impl FromStr for VpnAddress {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if !s.contains('/') {
            return Err(invalid(
                s,
                "an address with a prefix, e.g. 10.15.0.1/24 or fd00:15::1/64",
            ));
        }
        let net: IpNet = s.parse().map_err(|_| {
            invalid(s, "an address with a prefix, e.g. 10.15.0.1/24 (prefix up to 32) or fd00:15::1/64 (up to 128)")
        })?;
        check_unicast(s, net.addr())?;
        if net.prefix_len() == 0 {
            return Err(invalid(
                s,
                "a prefix from 1 to 32 (IPv4) or 1 to 128 (IPv6)",
            ));
        }
        let is_v4 = net.addr().is_ipv4();
        // /31 and /32 (/127, /128) networks have no network or broadcast address.
        let has_edges = if is_v4 {
            net.prefix_len() < 31
        } else {
            net.prefix_len() < 127
        };
        if has_edges && net.addr() == net.network() {
            return Err(invalid(
                s,
                "a host address, not the network address of its prefix",
            ));
        }
        if has_edges && is_v4 && net.addr() == net.broadcast() {
            return Err(invalid(
                s,
                "a host address, not the broadcast address of its prefix",
            ));
        }
        Ok(VpnAddress(net))
    }
}

impl fmt::Display for VpnAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A peer's VPN IP as given to `add-peer`: an address, with an optional
/// prefix that is dropped (the peer is routed as a host route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerIp {
    ip: IpAddr,
    /// The prefix written after the address, if any, so that the command
    /// can say it was dropped.
    dropped_prefix: Option<u8>,
}

impl PeerIp {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The prefix written after the address and dropped, if any.
    pub fn dropped_prefix(&self) -> Option<u8> {
        self.dropped_prefix
    }

    pub fn host_route(&self) -> IpNet {
        IpNet::from(self.ip)
    }
}

/// An address known to be a peer's: this node's own (for a provisioned
/// device) or one a config routes to it.
impl From<IpAddr> for PeerIp {
    fn from(ip: IpAddr) -> Self {
        PeerIp {
            ip,
            dropped_prefix: None,
        }
    }
}

impl FromStr for PeerIp {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let expected =
            "a peer VPN address such as 10.15.0.4 or fd00:15::4 (a /prefix is allowed and dropped)";
        let (ip, dropped_prefix) = match s.split_once('/') {
            Some(_) => {
                let net: IpNet = s.parse().map_err(|_| invalid(s, expected))?;
                let host_len = if net.addr().is_ipv4() { 32 } else { 128 };
                let dropped = (net.prefix_len() != host_len).then_some(net.prefix_len());
                (net.addr(), dropped)
            }
            None => (s.parse::<IpAddr>().map_err(|_| invalid(s, expected))?, None),
        };
        check_unicast(s, ip)?;
        Ok(PeerIp { ip, dropped_prefix })
    }
}

/// A comma-separated list of networks for `--allowed-ips`, each written
/// with its host bits clear (10.1.0.0/16, not 10.1.2.3/16: wg would
/// silently mask it, which hides typos).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AllowedIps(Vec<IpNet>);

impl AllowedIps {
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

/// Networks a config already routes, kept as written there (wg(8) masks
/// host bits itself; only new input is held to the stricter form).
impl From<Vec<IpNet>> for AllowedIps {
    fn from(nets: Vec<IpNet>) -> Self {
        AllowedIps(nets)
    }
}

impl FromStr for AllowedIps {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim) {
            let net: IpNet = part.parse().map_err(|_| {
                invalid(
                    part,
                    "a network in CIDR form such as 192.168.1.0/24 or fd00:1::/64",
                )
            })?;
            if net.addr() != net.network() {
                return Err(invalid(
                    part,
                    &format!("a network with its host bits clear, e.g. {}", net.trunc()),
                ));
            }
            nets.push(net);
        }
        Ok(AllowedIps(nets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reproduction 6 of "live equals restart": what wg reads and wgp2p
    /// did not, and what wgp2p read and wg refuses.
    #[test]
    fn endpoints_are_read_as_getaddrinfo_reads_them() {
        let v4 = |t: &str| inet_aton(t).map(|a| a.to_string());
        assert_eq!(v4("3221225986").as_deref(), Some("192.0.2.2"));
        assert_eq!(v4("192.0.514").as_deref(), Some("192.0.2.2"));
        assert_eq!(v4("0xc0.0.2.02").as_deref(), Some("192.0.2.2"));
        assert_eq!(v4("4294967296"), None);
        assert_eq!(v4("1.2.3.4.5"), None);
        assert_eq!(v4("256.1.1.1"), None);
        assert_eq!(v4("1.2.3.08"), None);
        let written: WrittenEndpoint = "3221225986:51820".parse().unwrap();
        assert_eq!(
            written.parsed().map(|e| e.to_string()).as_deref(),
            Some("192.0.2.2:51820")
        );
        let named: WrittenEndpoint = "203.0.113.2:domain".parse().unwrap();
        if std::fs::read_to_string("/etc/services").is_ok_and(|s| s.contains("53/udp")) {
            assert_eq!(
                named.parsed().map(|e| e.to_string()).as_deref(),
                Some("203.0.113.2:53")
            );
        }
        assert!("[fe80::1%lo]:51820".parse::<WrittenEndpoint>().is_ok());
        assert!("[fe80::1%2]:51820".parse::<WrittenEndpoint>().is_ok());
        assert!(
            "[fe80::1%nosuchif]:51820"
                .parse::<WrittenEndpoint>()
                .is_err()
        );
    }

    const KEY: &str = "DD5yKRfzExcV5+kDnTroDgCU15latdMjiQ59j1hEuk8=";
    const PRIV: &str = "SGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=";

    #[test]
    fn peer_names() {
        for ok in ["defiant", "my-phone", "a", "host_1.lan", &"x".repeat(64)] {
            assert!(ok.parse::<PeerName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "../wg0",
            "a b",
            "a\n[Peer]",
            "a=b",
            "a#b",
            "[x]",
            "é",
            &"x".repeat(65),
        ] {
            let err = bad.parse::<PeerName>().unwrap_err().to_string();
            assert!(!err.contains('\n'), "{err}");
            assert!(err.contains("expected"), "{err}");
        }
    }

    #[test]
    fn keys() {
        assert_eq!(KEY.parse::<PublicKey>().unwrap().to_string(), KEY);
        assert!(
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
                .parse::<PublicKey>()
                .is_err()
        );
        assert!("abc".parse::<PublicKey>().is_err());
        assert!(KEY[..43].parse::<PublicKey>().is_err());
        assert!(
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!="
                .parse::<PublicKey>()
                .is_err()
        );
        let private: PrivateKey = PRIV.parse().unwrap();
        assert_eq!(private.public_key().to_string(), KEY);
        assert_eq!(format!("{private:?}"), "PrivateKey(hidden)");
        let err = format!("{}X", &PRIV[..43])
            .parse::<PrivateKey>()
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains(&PRIV[..20]),
            "error must not echo the key: {err}"
        );
        let fresh = PrivateKey::generate();
        assert_ne!(fresh.public_key(), PrivateKey::generate().public_key());
    }

    #[test]
    fn interface_names() {
        assert!("wg0".parse::<InterfaceName>().is_ok());
        assert!("a=b+c.d-e_f".parse::<InterfaceName>().is_ok());
        for bad in [
            "",
            "wg0123456789abcd",
            "wg/0",
            "wg 0",
            "..",
            ".",
            ".wgp2p-a",
        ] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn written_endpoints_stay_as_written() {
        // wg(8) takes any digits as a port (glibc keeps the low 16 bits).
        let odd: WrittenEndpoint = "192.0.2.1:070000".parse().unwrap();
        assert_eq!(odd.as_written(), "192.0.2.1:070000");
        assert_eq!(odd.parsed(), None);
        let dns: WrittenEndpoint = "laptop.lan:51820".parse().unwrap();
        assert_eq!(dns.parsed(), Some("laptop.lan:51820".parse().unwrap()));
        // A service name as port: kept as written, its number for live use.
        if std::fs::read_to_string("/etc/services").is_ok_and(|s| s.contains("53/udp")) {
            let named: WrittenEndpoint = "[2001:db8::1]:domain".parse().unwrap();
            assert_eq!(named.as_written(), "[2001:db8::1]:domain");
            assert_eq!(named.parsed(), Some("[2001:db8::1]:53".parse().unwrap()));
        }
        // An IPv6 address with a zone, as getaddrinfo reads it.
        for scoped in ["[fe80::1%eth0]:51820", "fe80::1%lo:51820", "[fe80::1%2]:1"] {
            let ep: WrittenEndpoint = scoped.parse().unwrap();
            assert_eq!((ep.as_written(), ep.parsed()), (scoped, None));
        }
        for bad in [
            "192.0.2.1",
            "[fd00::1]51820",
            "host:port",
            "",
            "[fe80::1%]:1",
            "[192.0.2.1%eth0]:1",
            "[fe80::1%eth0/x]:1",
        ] {
            assert!(bad.parse::<WrittenEndpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints() {
        let ep: Endpoint = "192.0.2.1:51820".parse().unwrap();
        assert_eq!(ep.to_string(), "192.0.2.1:51820");
        let ep: Endpoint = "[fd00::1]:51820".parse().unwrap();
        assert_eq!(ep.host, Host::Ip("fd00::1".parse().unwrap()));
        assert_eq!(ep.to_string(), "[fd00::1]:51820");
        let ep: Endpoint = "vpn.example.org:1234".parse().unwrap();
        assert_eq!(ep.host, Host::Dns("vpn.example.org".into()));
        for bad in [
            "192.0.2.1",
            "192.0.2.1:0",
            "192.0.2.1:65536",
            "[fd00::1:51820",
            "fd00::1:51820",
            ":51820",
            "a:b:c",
            "256.1.1.1:5",
            "host:",
            "ho st:1",
            "[nothost]:1",
            "[::1]x",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
        let spec: EndpointSpec = "203.0.113.5".parse().unwrap();
        assert_eq!(spec.to_string(), "203.0.113.5");
        let ep = spec.with_default_port(51820);
        assert_eq!(ep.to_string(), "203.0.113.5:51820");
        let spec: EndpointSpec = "[fd00::5]".parse().unwrap();
        assert_eq!(spec.to_string(), "[fd00::5]");
        let ep = spec.with_default_port(4000);
        assert_eq!(ep.to_string(), "[fd00::5]:4000");
    }

    #[test]
    fn vpn_addresses() {
        let a: VpnAddress = "10.15.0.1/24".parse().unwrap();
        assert_eq!(a.ip().to_string(), "10.15.0.1");
        assert_eq!(a.host_route().to_string(), "10.15.0.1/32");
        assert!("fd00:15::1/64".parse::<VpnAddress>().is_ok());
        assert!("10.15.0.1/32".parse::<VpnAddress>().is_ok());
        for bad in [
            "10.15.0.1",
            "10.15.0.0/24",
            "10.15.0.255/24",
            "10.15.0.1/33",
            "0.0.0.0/0",
            "10.15.0.1/0",
            "fd00::/64",
            "fd00::1/129",
            "x/24",
            "127.0.0.1/8",
        ] {
            assert!(bad.parse::<VpnAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn peer_ips() {
        let p: PeerIp = "10.15.0.4/24".parse().unwrap();
        assert_eq!(p.dropped_prefix, Some(24));
        assert_eq!(p.host_route().to_string(), "10.15.0.4/32");
        let p: PeerIp = "10.15.0.4/32".parse().unwrap();
        assert_eq!(p.dropped_prefix, None);
        assert!("fd00:15::4".parse::<PeerIp>().is_ok());
        for bad in ["0.0.0.0/0", "::", "10.15.0", "10.15.0.4/40", "224.0.0.1"] {
            assert!(bad.parse::<PeerIp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_ips() {
        let a: AllowedIps = "192.168.1.0/24, fd00:1::/64".parse().unwrap();
        assert_eq!(a.0.len(), 2);
        assert!("192.168.1.1/24".parse::<AllowedIps>().is_err());
        assert!("192.168.1.0/24,".parse::<AllowedIps>().is_err());
        assert!("nope".parse::<AllowedIps>().is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("51820").unwrap(), 51820);
        for bad in ["0", "65536", "-1", "x", ""] {
            assert!(parse_port(bad).is_err());
        }
    }

    /// A well-formed name that does not resolve is the resolver's answer,
    /// not bad input: exit 1. (`.invalid` never resolves, RFC 6761.)
    #[test]
    fn an_endpoint_that_does_not_resolve_is_a_system_failure() {
        let endpoint: Endpoint = "no-such-host.invalid:51820".parse().unwrap();
        let err = crate::error::Error::from(endpoint.resolve().unwrap_err());
        assert_eq!(err.code(), 1);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// No validator panics, and none lets a line break or a config
        /// metacharacter through into a value that is written to a file.
        #[test]
        fn validators_never_panic_or_pass_newlines(s in "\\PC{0,80}|[\\x00-\\x7f]{0,80}") {
            if let Ok(name) = s.parse::<PeerName>() {
                prop_assert!(!name.as_str().contains(['\n', '\r', '[', ']', '=', '#', ' ']));
            }
            if let Ok(endpoint) = s.parse::<Endpoint>() {
                prop_assert!(!endpoint.to_string().contains(['\n', '\r', '#', ' ', '=']));
            }
            let _ = s.parse::<PublicKey>();
            let _ = s.parse::<PrivateKey>();
            let _ = s.parse::<VpnAddress>();
            let _ = s.parse::<PeerIp>();
            let _ = s.parse::<AllowedIps>();
            let _ = s.parse::<InterfaceName>();
            let _ = parse_port(&s);
        }

        /// Every endpoint we print parses back to itself.
        #[test]
        fn endpoints_round_trip(a in any::<[u8; 4]>(), v6 in any::<[u16; 8]>(), port in 1u16..) {
            for host in [Host::Ip(IpAddr::from(a)), Host::Ip(IpAddr::from(v6))] {
                let endpoint = Endpoint { host, port };
                prop_assert_eq!(endpoint.to_string().parse::<Endpoint>().unwrap(), endpoint);
            }
        }
    }
}
