//! Public address discovery and NAT classification over STUN (RFC 5389).
//!
//! Two questions, each answered within a hard time budget ([`BUDGET`]),
//! DNS lookups of the server names included, and without ever panicking:
//!
//! - [`public_ip`]: which IP does the internet see? It fills the
//!   `<public-endpoint>` of the add-peer line.
//! - [`nat_check`]: can peers reach this host's WireGuard port? It sends
//!   Binding requests from ONE local UDP socket to several servers and
//!   compares the addresses they saw ([`NatType`]), then turns that into a
//!   [`Verdict`] and a sentence of advice for a WireGuard mesh.
//!
//! Servers are queried in parallel from one socket with their own
//! retransmission timers and a shared deadline, so a dead or silent server
//! costs nothing while others answer. Only std, `stun_codec`/`bytecodec`
//! (message encoding) and serde are used; nothing else of the project.

mod probe;
mod stun;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde::Serialize;

use probe::{Answer, Goal, Resolver, Target};

/// Default public STUN servers (`host:port`), used when neither
/// `WGP2P_STUN_SERVERS` nor `--stun-server` names any. Three addresses of
/// two operators, so that [`nat_check`] still compares two mappings when
/// one of them is down.
pub const DEFAULT_STUN_SERVERS: &[&str] = &[
    "stun.l.google.com:19302",
    "stun.cloudflare.com:3478",
    "stun1.l.google.com:19302",
];

/// The STUN port (RFC 5389), added to a server written without one.
pub const DEFAULT_STUN_PORT: u16 = 3478;

/// The whole budget for any discovery call, name resolution included.
pub const BUDGET: Duration = Duration::from_secs(3);

/// Longest budget honoured; a larger one is cut to it (a deadline must be
/// representable, and no discovery is worth waiting longer).
const MAX_BUDGET: Duration = Duration::from_secs(3600);

/// How long other servers may still answer once [`nat_check`] has its two
/// mappings: a typical internet round trip, so a slow server adds
/// evidence while a dead one costs at most this.
const NAT_GRACE: Duration = Duration::from_millis(300);

/// Parse a comma-separated server list, as in `WGP2P_STUN_SERVERS`.
///
/// Entries are trimmed and empty ones dropped, so an empty string gives no
/// servers, which disables discovery. An entry without a port gets
/// [`DEFAULT_STUN_PORT`]: `stun.example.org`, `192.0.2.1`, `2001:db8::1`
/// and `[2001:db8::1]` all work; `[::1]:3478` is kept as written. Entries
/// are not checked here: one that does not resolve is simply skipped.
#[must_use]
pub fn parse_server_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(with_default_port)
        .collect()
}

/// The server list for a setting: `None` (not set) gives the defaults,
/// `Some(list)` is parsed by [`parse_server_list`] (so `Some("")` gives
/// none). Meant for `std::env::var("WGP2P_STUN_SERVERS").ok().as_deref()`.
#[must_use]
pub fn servers_from(setting: Option<&str>) -> Vec<String> {
    match setting {
        None => DEFAULT_STUN_SERVERS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        Some(list) => parse_server_list(list),
    }
}

/// `entry` as `host:port`, adding the STUN port when it has none.
fn with_default_port(entry: &str) -> String {
    if entry.parse::<SocketAddr>().is_ok() {
        return entry.to_owned();
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return SocketAddr::new(ip, DEFAULT_STUN_PORT).to_string();
    }
    let bracketed_v6 = entry.starts_with('[') && entry.ends_with(']');
    if bracketed_v6 || !entry.contains(':') {
        return format!("{entry}:{DEFAULT_STUN_PORT}");
    }
    entry.to_owned()
}

/// This host's public IP as seen by the first STUN server that answers,
/// queried from a fresh UDP socket on an ephemeral port (so it tells
/// nothing about ports: see [`nat_check`] for that).
///
/// `None` when no server is given, none resolves, or none answers within
/// `budget`. Never blocks past `budget`, name lookups included: half the
/// budget at most goes to DNS, names not resolved by then are skipped.
/// IPv4 is asked for when any server has an IPv4 address.
#[must_use]
pub fn public_ip(servers: &[String], budget: Duration) -> Option<IpAddr> {
    public_ip_with(servers, budget, probe::system_resolver)
}

fn public_ip_with(servers: &[String], budget: Duration, resolver: Resolver) -> Option<IpAddr> {
    let clock = Clock::start(budget);
    let targets = probe::resolve(servers, clock.resolve_by, resolver);
    let first = targets.first()?;
    let socket = bind(first.addr, None)?.socket;
    let goal = Goal {
        answers: 1,
        grace: Duration::ZERO,
    };
    let answers = probe::run(&socket, &targets, goal, clock.deadline);
    answers.first().map(|answer| answer.mapped.ip())
}

/// How the NAT in front of this host maps one local UDP port, as far as
/// STUN can tell from two or more servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatType {
    /// No NAT: the servers saw this host's own address and port.
    Open,
    /// Endpoint-independent mapping ("full/restricted/port-restricted
    /// cone"): every server saw the same public `ip:port`.
    Cone,
    /// Endpoint-dependent mapping: servers saw different ports (or
    /// addresses), so a peer cannot learn the mapping in advance.
    Symmetric,
    /// Not enough answers to tell (fewer than two, and not [`Open`]).
    ///
    /// [`Open`]: NatType::Open
    Unknown,
}

impl NatType {
    /// The word used in `--json` and in the human report.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NatType::Open => "open",
            NatType::Cone => "cone",
            NatType::Symmetric => "symmetric",
            NatType::Unknown => "unknown",
        }
    }
}

/// What the NAT type means for a WireGuard mesh; serialized as the short
/// word shown on each variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// `works`: peers can reach this host at its advertised endpoint
    /// (public IP and the listen port). For [`NatType::Open`], directly;
    /// for a [`NatType::Cone`] that keeps the port, once this host has
    /// sent them a packet, which PersistentKeepalive makes sure of and
    /// keeps alive.
    Works,
    /// `works-if-this-host-initiates`: a [`NatType::Cone`] that changes
    /// the source port. The advertised `ip:listen-port` leads nowhere, so
    /// a peer cannot start; but when this host sends its handshake first,
    /// the peer learns the real mapped endpoint from it (WireGuard's
    /// roaming) and answers through the same mapping, which keepalive
    /// then holds open. It is this host that must initiate, not the peer:
    /// only the side behind the port-changing NAT can open the mapping.
    /// Two such hosts cannot reach each other.
    WorksIfThisHostInitiates,
    /// `needs-static-port`: a [`NatType::Symmetric`] NAT gives every
    /// destination its own port, so no peer can know it in advance. An open
    /// or cone peer still works when this host initiates, but two
    /// symmetric hosts never reach each other: the router must keep the
    /// WireGuard source port static (or forward it), or traffic must be
    /// relayed through a mesh node with a public endpoint.
    NeedsStaticPort,
    /// `unknown`: too few answers to tell.
    Unknown,
}

impl Verdict {
    /// The short machine word, as serialized.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Works => "works",
            Verdict::WorksIfThisHostInitiates => "works-if-this-host-initiates",
            Verdict::NeedsStaticPort => "needs-static-port",
            Verdict::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server's view of the probe socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// The server as configured (`host:port`).
    pub server: String,
    /// The address it was queried at.
    pub server_addr: SocketAddr,
    /// The address it saw the request come from (XOR-MAPPED-ADDRESS).
    pub mapped: SocketAddr,
}

/// The result of [`nat_check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatReport {
    /// The public IP of the first answer, even when the NAT type is
    /// unknown; `None` when nothing answered.
    pub public_ip: Option<IpAddr>,
    /// The probe socket: this host's source address toward the servers and
    /// the local port used (the requested one, or an ephemeral one when it
    /// was busy). `None` when no socket could be opened.
    pub local_addr: Option<SocketAddr>,
    /// Every answer, in arrival order.
    pub mappings: Vec<Mapping>,
    /// The NAT type.
    pub nat_type: NatType,
    /// Whether every mapping kept the local port; `None` without answers.
    pub preserves_port: Option<bool>,
    /// What it means for WireGuard.
    pub verdict: Verdict,
    /// What to do about it, in a sentence or three.
    pub advice: String,
}

/// Classify the NAT in front of this host.
///
/// From ONE UDP socket, bound to `0.0.0.0:local_port` when a port is given
/// and free (else an ephemeral port; give the WireGuard listen port while
/// the interface is down to learn exactly how the NAT treats it), Binding
/// requests go to every server in parallel. Then:
///
/// - every mapped address is a local address and port => [`NatType::Open`]
///   (one answer is enough to see that there is no NAT);
/// - fewer than two answers otherwise => [`NatType::Unknown`] (the public
///   IP is still reported when one answered);
/// - the same mapped `ip:port` from every server => [`NatType::Cone`];
/// - different mapped ports (or IPs) => [`NatType::Symmetric`].
///
/// The call returns within `budget` (DNS included): early once two servers
/// answered and the others had a short grace to, else at the deadline.
/// The verdicts are explained on [`Verdict`].
#[must_use]
pub fn nat_check(servers: &[String], local_port: Option<u16>, budget: Duration) -> NatReport {
    nat_check_with(servers, local_port, budget, probe::system_resolver)
}

fn nat_check_with(
    servers: &[String],
    local_port: Option<u16>,
    budget: Duration,
    resolver: Resolver,
) -> NatReport {
    let clock = Clock::start(budget);
    // Port 0 asks for an ephemeral port: the same as giving none.
    let local_port = local_port.filter(|&p| p != 0);
    let targets = probe::resolve(servers, clock.resolve_by, resolver);
    let Some(first) = targets.first() else {
        return unknown_report(unresolved_advice(servers));
    };
    let Some(bound) = bind(first.addr, local_port) else {
        return unknown_report("Could not open a UDP socket for the NAT check.".to_owned());
    };
    let goal = Goal {
        answers: 2,
        grace: NAT_GRACE,
    };
    let answers = probe::run(&bound.socket, &targets, goal, clock.deadline);
    let port = bound.port;
    let local_addr = route_source(first.addr).map(|ip| SocketAddr::new(ip, port));
    let probe = Probe {
        mappings: mappings(&targets, &answers),
        local_ips: answered_sources(&targets, &answers),
        port,
        requested: local_port,
        budget,
    };
    report(&probe, local_addr)
}

/// When discovery must be over: `deadline` for everything, `resolve_by`
/// for DNS, half-way, so that queries keep at least half the budget.
struct Clock {
    deadline: Instant,
    resolve_by: Instant,
}

impl Clock {
    fn start(budget: Duration) -> Self {
        let budget = budget.min(MAX_BUDGET);
        let now = Instant::now();
        Clock {
            deadline: now + budget,
            resolve_by: now + budget / 2,
        }
    }
}

/// A bound probe socket and its local port.
struct Bound {
    socket: UdpSocket,
    port: u16,
}

/// A UDP socket of `toward`'s family on `port` when given and free, else
/// on an ephemeral port. A busy port is expected (the WireGuard interface
/// holds its listen port while up), so it is a fallback, not an error.
fn bind(toward: SocketAddr, port: Option<u16>) -> Option<Bound> {
    let any: IpAddr = match toward {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = port
        .and_then(|p| UdpSocket::bind(SocketAddr::new(any, p)).ok())
        .or_else(|| UdpSocket::bind(SocketAddr::new(any, 0)).ok())?;
    let port = socket.local_addr().ok()?.port();
    Some(Bound { socket, port })
}

/// The source IP the kernel picks toward `to`. Connecting a UDP socket
/// sends nothing; it only selects the route, which tells this host's
/// address on the way out without listing interfaces.
fn route_source(to: SocketAddr) -> Option<IpAddr> {
    let probe = bind(to, None)?.socket;
    probe.connect(to).ok()?;
    Some(probe.local_addr().ok()?.ip())
}

fn mappings(targets: &[Target], answers: &[Answer]) -> Vec<Mapping> {
    answers
        .iter()
        .filter_map(|answer| {
            let target = targets.get(answer.target)?;
            Some(Mapping {
                server: target.server.clone(),
                server_addr: target.addr,
                mapped: answer.mapped,
            })
        })
        .collect()
}

/// This host's own addresses toward the servers that answered: a mapped
/// address among them means no NAT.
fn answered_sources(targets: &[Target], answers: &[Answer]) -> Vec<IpAddr> {
    answers
        .iter()
        .filter_map(|answer| route_source(targets.get(answer.target)?.addr))
        .collect()
}

/// What a probe saw, for the pure classification below.
struct Probe {
    mappings: Vec<Mapping>,
    /// This host's addresses toward the servers.
    local_ips: Vec<IpAddr>,
    /// The local port the probe used.
    port: u16,
    /// The port asked for, which may differ when it was busy.
    requested: Option<u16>,
    budget: Duration,
}

/// Classify the mapped addresses (see [`nat_check`] for the rules).
fn classify(mapped: &[SocketAddr], local_ips: &[IpAddr], port: u16) -> NatType {
    let Some(first) = mapped.first() else {
        return NatType::Unknown;
    };
    let is_local = |a: &SocketAddr| a.port() == port && local_ips.contains(&a.ip());
    if mapped.iter().all(is_local) {
        NatType::Open
    } else if mapped.len() < 2 {
        NatType::Unknown
    } else if mapped.iter().all(|a| a == first) {
        NatType::Cone
    } else {
        NatType::Symmetric
    }
}

fn report(probe: &Probe, local_addr: Option<SocketAddr>) -> NatReport {
    let mapped: Vec<SocketAddr> = probe.mappings.iter().map(|m| m.mapped).collect();
    let nat_type = classify(&mapped, &probe.local_ips, probe.port);
    let preserves_port =
        (!mapped.is_empty()).then(|| mapped.iter().all(|a| a.port() == probe.port));
    let (verdict, mut advice) = judge(nat_type, preserves_port, probe);
    if let Some(note) = busy_port_note(probe) {
        advice.push(' ');
        advice.push_str(&note);
    }
    NatReport {
        public_ip: mapped.first().map(SocketAddr::ip),
        local_addr,
        mappings: probe.mappings.clone(),
        nat_type,
        preserves_port,
        verdict,
        advice,
    }
}

/// The verdict and advice for a NAT type.
fn judge(nat: NatType, preserves_port: Option<bool>, probe: &Probe) -> (Verdict, String) {
    let wg = WgPort(probe.requested);
    let public = probe.mappings.first().map(|m| m.mapped);
    match (nat, public) {
        (NatType::Open, Some(at)) => (
            Verdict::Works,
            format!(
                "No NAT: peers reach this host directly at {}. \
                 Let {} in through any firewall.",
                wg.endpoint(at.ip()),
                wg.name()
            ),
        ),
        (NatType::Cone, Some(at)) if preserves_port == Some(true) => (
            Verdict::Works,
            format!(
                "The NAT keeps one mapping for every destination and keeps the port: \
                 peers reach this host at {}. Keep PersistentKeepalive on \
                 (25 s by default) so the mapping stays open.",
                wg.endpoint(at.ip())
            ),
        ),
        (NatType::Cone, Some(at)) => (
            Verdict::WorksIfThisHostInitiates,
            format!(
                "The NAT keeps one mapping for every destination but moves port {} to {}: \
                 peers cannot reach {} first. It works when this host initiates: add the \
                 other nodes here and they learn its real endpoint from its handshake \
                 (PersistentKeepalive holds it). Two hosts like this cannot reach each \
                 other; forward {} to this host on the router to make it reachable.",
                probe.port,
                at.port(),
                wg.endpoint(at.ip()),
                wg.name()
            ),
        ),
        (NatType::Symmetric, _) => (Verdict::NeedsStaticPort, symmetric_advice(probe, wg)),
        _ => (Verdict::Unknown, unknown_advice(probe)),
    }
}

/// The WireGuard listen port when the caller gave it. Without it the probe
/// ran from an ephemeral port, which is no port to forward or advertise,
/// so the advice then names the WireGuard port in words.
#[derive(Clone, Copy)]
struct WgPort(Option<u16>);

impl WgPort {
    /// "UDP 51820" or "the WireGuard UDP port".
    fn name(self) -> String {
        self.0.map_or_else(
            || "the WireGuard UDP port".to_owned(),
            |p| format!("UDP {p}"),
        )
    }

    /// "203.0.113.7:51820" or "203.0.113.7 on its WireGuard port".
    fn endpoint(self, ip: IpAddr) -> String {
        self.0.map_or_else(
            || format!("{ip} on its WireGuard port"),
            |p| SocketAddr::new(ip, p).to_string(),
        )
    }
}

fn symmetric_advice(probe: &Probe, wg: WgPort) -> String {
    let seen: Vec<String> = probe
        .mappings
        .iter()
        .map(|m| m.mapped.to_string())
        .collect();
    format!(
        "Symmetric NAT: each server saw this host at another address ({}), so no peer can \
         learn its endpoint in advance. Peers with an open or cone NAT still work if this \
         host initiates, but two symmetric hosts never reach each other. Fix it on the \
         router by keeping the source port of {port} static (pfSense: Firewall > NAT > \
         Outbound, Hybrid Outbound NAT, a rule for this host's {port} as source port \
         with \"Static Port\" checked) or by forwarding {port} to this host; otherwise \
         relay through a mesh node with a public endpoint.",
        seen.join(", "),
        port = wg.name()
    )
}

fn unknown_advice(probe: &Probe) -> String {
    match probe.mappings.as_slice() {
        [] => format!(
            "No STUN server answered within {} ms: UDP to the internet may be blocked, \
             or the servers are down. NAT type unknown.",
            probe.budget.as_millis()
        ),
        [only] => format!(
            "Only {} answered (public address {}); telling the NAT type takes two servers \
             at different addresses. NAT type unknown.",
            only.server, only.mapped
        ),
        _ => "NAT type unknown.".to_owned(),
    }
}

fn unresolved_advice(servers: &[String]) -> String {
    if servers.is_empty() {
        "No STUN server configured (WGP2P_STUN_SERVERS is empty): NAT check skipped.".to_owned()
    } else {
        "No STUN server name resolved in time: check DNS and internet access.".to_owned()
    }
}

/// Said when the requested port was busy: the probe then measured another
/// port, which most NATs (Linux MASQUERADE included) treat alike.
fn busy_port_note(probe: &Probe) -> Option<String> {
    let requested = probe.requested.filter(|&p| p != probe.port)?;
    Some(format!(
        "Port {requested} was in use (is the WireGuard interface up?), so the check ran \
         from port {}; stop the interface and run it again to test port {requested} itself.",
        probe.port
    ))
}

fn unknown_report(advice: String) -> NatReport {
    NatReport {
        public_ip: None,
        local_addr: None,
        mappings: Vec::new(),
        nat_type: NatType::Unknown,
        preserves_port: None,
        verdict: Verdict::Unknown,
        advice,
    }
}
