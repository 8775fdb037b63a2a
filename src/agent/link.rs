//! The agent's socket: UDP on this node's VPN address, port
//! [`AGENT_PORT`], bound to the WireGuard interface (`SO_BINDTODEVICE`), so
//! only datagrams that came through the tunnel reach it.
//!
//! A datagram counts only when its source address is a configured peer's
//! own VPN host address (the first host address of its AllowedIPs, where
//! its agent listens): WireGuard's cryptokey routing has then
//! authenticated that peer as the sender, and the address is the member
//! itself, not a host of a subnet it routes (a site's LAN, an exit node's
//! default route), whose words must never pass for the member's. A peer
//! reached through a relay is not heard at all: its address is in the
//! relay's section, but only the relay's key was checked. Each sender
//! has a token bucket ([`RATE_PER_SEC`], burst [`BURST`]); every datagram
//! dropped is counted by its [`DropReason`].
//!
//! A receive thread reads the socket. It answers `where` itself, from the
//! live device, and hands every other message to the loop as
//! [`Incoming`] through the loop's channel.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::protocol::{self, AGENT_PORT, DropReason, MAX_DATAGRAM, Message};
use crate::config::node::PeerEntry;
use crate::types::PublicKey;

/// Messages a sender may send per second, on average.
pub const RATE_PER_SEC: f64 = 20.0;
/// Messages a sender may send at once after a quiet while.
pub const BURST: f64 = 40.0;
/// How often the receive thread looks whether it should stop.
const STOP_CHECK: Duration = Duration::from_secs(1);

/// A message from an authenticated peer, for the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The peer whose AllowedIPs hold the source address.
    pub from: PublicKey,
    /// The source address and port (replies go there).
    pub source: SocketAddr,
    pub message: Message,
}

/// Who may send: each configured peer from its own VPN host address
/// only, the address its agent is sent to ([`agent_address`]). Never from
/// the peer's other AllowedIPs: a routed subnet or a default route holds
/// hosts that are not the member (a laptop on a site's LAN), and WireGuard
/// authenticates only that the packet came through the member's tunnel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Senders {
    hosts: HashMap<IpAddr, PublicKey>,
}

impl Senders {
    pub fn from_config(entries: &[PeerEntry]) -> Senders {
        let hosts = entries
            .iter()
            .filter_map(|e| Some((canonical(agent_address(e)?.ip()), e.public_key)))
            .collect();
        Senders { hosts }
    }

    /// The peer a datagram from `ip` came from, if any.
    pub fn sender_of(&self, ip: IpAddr) -> Option<PublicKey> {
        self.hosts.get(&canonical(ip)).copied()
    }
}

/// An IPv4-mapped IPv6 source is the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A token bucket: [`RATE_PER_SEC`] tokens a second, at most [`BURST`].
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(now: Instant) -> Bucket {
        Bucket {
            tokens: BURST,
            last: now,
        }
    }

    /// Take a token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * RATE_PER_SEC).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Dropped datagrams by reason, and accepted ones; shared by the receive
/// thread and the loop (which saves them in the state file).
#[derive(Debug, Default)]
pub struct Counters {
    dropped: [AtomicU64; DropReason::ALL.len()],
    accepted: AtomicU64,
}

impl Counters {
    pub fn drop(&self, reason: DropReason) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.dropped[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.dropped[i].load(Ordering::Relaxed))
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// What a `where` is answered with: the peer's live endpoint and the age
/// of its latest handshake in seconds (`None, None` when it is no peer).
pub type Lookup = Box<dyn Fn(PublicKey) -> (Option<SocketAddr>, Option<u64>) + Send>;

/// The decision on one datagram: what the receive thread does with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Dropped(DropReason),
    Accepted(Incoming),
}

/// Authenticate, rate-limit and decode one datagram (the receive thread's
/// whole policy, without the socket).
pub fn judge(
    senders: &Senders,
    buckets: &mut HashMap<PublicKey, Bucket>,
    bytes: &[u8],
    source: SocketAddr,
    now: Instant,
) -> Verdict {
    let Some(from) = senders.sender_of(source.ip()) else {
        return Verdict::Dropped(DropReason::UnknownSender);
    };
    if !buckets
        .entry(from)
        .or_insert_with(|| Bucket::new(now))
        .allow(now)
    {
        return Verdict::Dropped(DropReason::RateLimited);
    }
    match protocol::decode(bytes) {
        Ok(message) => Verdict::Accepted(Incoming {
            from,
            source,
            message,
        }),
        Err(reason) => Verdict::Dropped(reason),
    }
}

/// The open socket and its receive thread. Dropping it stops the thread
/// (within [`STOP_CHECK`]) and closes the socket.
pub struct Link {
    socket: Arc<UdpSocket>,
    /// The address the socket is bound to.
    pub local: SocketAddr,
    /// The interface index the socket is bound to: a restarted interface
    /// gets a new one, and the socket must be opened again.
    pub ifindex: u32,
    senders: Arc<RwLock<Senders>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    /// Bind `ip`:[`AGENT_PORT`] on interface `iface` and start the receive
    /// thread; accepted messages other than `where` go to `deliver`.
    pub fn open<E: Send + 'static>(
        iface: &str,
        ip: IpAddr,
        senders: Senders,
        counters: Arc<Counters>,
        lookup: Lookup,
        deliver: mpsc::Sender<E>,
        wrap: fn(Incoming) -> E,
    ) -> io::Result<Link> {
        let ifindex = interface_index(iface)?;
        let socket = Arc::new(crate::sys::udp_socket_on_device(
            iface,
            SocketAddr::new(ip, AGENT_PORT),
        )?);
        socket.set_read_timeout(Some(STOP_CHECK))?;
        let local = socket.local_addr()?;
        let senders = Arc::new(RwLock::new(senders));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, senders, counters, stop) = (
                Arc::clone(&socket),
                Arc::clone(&senders),
                Arc::clone(&counters),
                Arc::clone(&stop),
            );
            std::thread::Builder::new()
                .name("agent-link".into())
                .spawn(move || {
                    receive(&socket, &senders, &counters, &stop, &lookup, &|incoming| {
                        deliver.send(wrap(incoming)).is_ok()
                    });
                })?
        };
        Ok(Link {
            socket,
            local,
            ifindex,
            senders,
            stop,
            thread: Some(thread),
        })
    }

    /// Replace who may send (the config changed).
    pub fn set_senders(&self, senders: Senders) {
        if let Ok(mut current) = self.senders.write() {
            *current = senders;
        }
    }

    /// Whether the receive thread still runs.
    pub fn alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Send a datagram [`protocol::encode`] made (one message for many
    /// peers is encoded once).
    pub fn send_datagram(&self, to: SocketAddr, datagram: &[u8]) -> io::Result<()> {
        self.socket.send_to(datagram, to).map(|_| ())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn send(socket: &UdpSocket, to: SocketAddr, message: &Message) -> io::Result<()> {
    let bytes = protocol::encode(message).map_err(|reason| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message not sent: {}", reason.name()),
        )
    })?;
    socket.send_to(&bytes, to).map(|_| ())
}

/// The receive thread's loop, until `stop` is set or the loop is gone.
fn receive(
    socket: &UdpSocket,
    senders: &RwLock<Senders>,
    counters: &Counters,
    stop: &AtomicBool,
    lookup: &Lookup,
    deliver: &dyn Fn(Incoming) -> bool,
) {
    // One byte more than the largest datagram, to see an oversized one.
    let mut buffer = [0u8; MAX_DATAGRAM + 1];
    let mut buckets: HashMap<PublicKey, Bucket> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let (len, source) = match socket.recv_from(&mut buffer) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            // Anything else (e.g. the interface went away): wait a little
            // rather than spin; the loop reopens the socket if needed.
            Err(_) => {
                std::thread::sleep(STOP_CHECK);
                continue;
            }
        };
        let verdict = match senders.read() {
            Ok(senders) => judge(
                &senders,
                &mut buckets,
                &buffer[..len],
                source,
                Instant::now(),
            ),
            Err(_) => return,
        };
        // Senders that are no longer configured are forgotten.
        if buckets.len() > 4096 {
            buckets.clear();
        }
        match verdict {
            Verdict::Dropped(reason) => counters.drop(reason),
            Verdict::Accepted(incoming) => {
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                if let Message::Where { key } = incoming.message {
                    let (endpoint, handshake_secs) = lookup(key.0);
                    let answer = Message::Seen {
                        key,
                        endpoint,
                        handshake_secs,
                    };
                    let _ = send(socket, incoming.source, &answer);
                } else if !deliver(incoming) {
                    return;
                }
            }
        }
    }
}

/// The kernel's index of interface `iface`.
pub fn interface_index(iface: &str) -> io::Result<u32> {
    crate::sys::interface_index(iface)
}

/// A peer's agent address: its VPN address (the first host route of its
/// AllowedIPs) and [`AGENT_PORT`].
pub fn agent_address(entry: &PeerEntry) -> Option<SocketAddr> {
    entry
        .allowed_ips
        .iter()
        .find(|n| n.prefix_len() == n.max_prefix_len())
        .map(|n| SocketAddr::new(n.addr(), AGENT_PORT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::Key;
    use crate::plan::fixtures::{KEY_A, KEY_B};

    fn entry(key: &str, nets: &[&str]) -> PeerEntry {
        PeerEntry {
            name: None,
            public_key: key.parse().unwrap(),
            endpoint: None,
            allowed_ips: nets.iter().map(|n| n.parse().unwrap()).collect(),
            keepalive: None,
            preshared_key: false,
            relayed: vec![],
        }
    }

    fn source(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), AGENT_PORT)
    }

    const HELLO: &[u8] = br#"{"v":1,"t":"hello","relay":false}"#;

    #[test]
    fn the_sender_is_the_peer_whose_own_vpn_address_is_the_source() {
        // A routes a whole LAN (a site gateway) and B is an exit node: a
        // host on A's LAN, or anywhere behind B, is not A or B.
        let senders = Senders::from_config(&[
            entry(KEY_A, &["10.15.0.2/32", "192.168.5.0/24"]),
            entry(KEY_B, &["10.15.0.3/32", "0.0.0.0/0", "::/0"]),
        ]);
        let key = |k: &str| Some(k.parse::<PublicKey>().unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(senders.sender_of(ip("10.15.0.2")), key(KEY_A));
        assert_eq!(senders.sender_of(ip("192.168.5.9")), None);
        assert_eq!(senders.sender_of(ip("198.51.100.9")), None);
        assert_eq!(senders.sender_of(ip("fd00:15::3")), None);
        // A peer relayed through A is not heard as A.
        let mut relay = entry(KEY_A, &["10.15.0.2/32", "10.15.0.9/32"]);
        relay.relayed.push(crate::config::node::Relayed {
            name: None,
            public_key: KEY_B.parse().unwrap(),
            endpoint: None,
            nets: vec!["10.15.0.9/32".parse().unwrap()],
            section: None,
        });
        let relayed = Senders::from_config(&[relay]);
        assert_eq!(relayed.sender_of(ip("10.15.0.2")), key(KEY_A));
        assert_eq!(relayed.sender_of(ip("10.15.0.9")), None);
        assert_eq!(senders.sender_of(ip("10.15.0.3")), key(KEY_B));
        assert_eq!(senders.sender_of(ip("::ffff:10.15.0.3")), key(KEY_B));
        // Outside every AllowedIPs: nobody, so the datagram is dropped.
        assert_eq!(senders.sender_of(ip("10.15.0.9")), None);
        assert_eq!(senders.sender_of(ip("203.0.113.2")), None);
        let mut buckets = HashMap::new();
        let now = Instant::now();
        assert_eq!(
            judge(&senders, &mut buckets, HELLO, source("10.15.0.9"), now),
            Verdict::Dropped(DropReason::UnknownSender)
        );
        assert_eq!(
            judge(&senders, &mut buckets, HELLO, source("10.15.0.2"), now),
            Verdict::Accepted(Incoming {
                from: KEY_A.parse().unwrap(),
                source: source("10.15.0.2"),
                message: Message::Hello {
                    relay: false,
                    sk: None,
                    members: None,
                },
            })
        );
        assert_eq!(
            judge(&senders, &mut buckets, b"{", source("10.15.0.2"), now),
            Verdict::Dropped(DropReason::Malformed)
        );
        // No peers configured: nobody may send.
        assert_eq!(Senders::default().sender_of(ip("10.15.0.2")), None);
    }

    #[test]
    fn each_sender_has_its_own_rate_limit() {
        let senders = Senders::from_config(&[
            entry(KEY_A, &["10.15.0.2/32"]),
            entry(KEY_B, &["10.15.0.3/32"]),
        ]);
        let mut buckets = HashMap::new();
        let start = Instant::now();
        let verdict = |buckets: &mut HashMap<PublicKey, Bucket>, ip: &str, at: Instant| {
            matches!(
                judge(&senders, buckets, HELLO, source(ip), at),
                Verdict::Accepted(_)
            )
        };
        // A burst of 40 passes at once, the 41st is dropped.
        let passed = (0..41)
            .filter(|_| verdict(&mut buckets, "10.15.0.2", start))
            .count();
        assert_eq!(passed, BURST as usize);
        assert_eq!(
            judge(&senders, &mut buckets, HELLO, source("10.15.0.2"), start),
            Verdict::Dropped(DropReason::RateLimited)
        );
        // Another sender is not affected.
        assert!(verdict(&mut buckets, "10.15.0.3", start));
        // 20 a second: after 100 ms, two more.
        let later = start + Duration::from_millis(100);
        let refilled = (0..5)
            .filter(|_| verdict(&mut buckets, "10.15.0.2", later))
            .count();
        assert_eq!(refilled, 2);
        // A long quiet refills up to the burst, not beyond.
        let much_later = start + Duration::from_secs(60);
        let passed = (0..100)
            .filter(|_| verdict(&mut buckets, "10.15.0.2", much_later))
            .count();
        assert_eq!(passed, BURST as usize);
    }

    #[test]
    fn counters_count_by_reason() {
        let counters = Counters::default();
        counters.drop(DropReason::RateLimited);
        counters.drop(DropReason::RateLimited);
        counters.drop(DropReason::Oversized);
        assert_eq!(counters.dropped(DropReason::RateLimited), 2);
        assert_eq!(counters.dropped(DropReason::Oversized), 1);
        assert_eq!(counters.dropped(DropReason::Malformed), 0);
    }

    #[test]
    fn agents_are_reached_on_the_vpn_address() {
        assert_eq!(
            agent_address(&entry(KEY_A, &["192.168.5.0/24", "10.15.0.2/32"])),
            Some(source("10.15.0.2"))
        );
        assert_eq!(agent_address(&entry(KEY_A, &["192.168.5.0/24"])), None);
    }

    /// The whole socket path, on loopback ("lo" stands in for the
    /// WireGuard interface; binding to a device needs CAP_NET_RAW).
    #[test]
    #[ignore = "root: binding a socket to a device needs CAP_NET_RAW"]
    fn loopback_link_answers_where_and_delivers_the_rest() {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let lookup: Lookup = Box::new(|_key| (Some("203.0.113.9:51820".parse().unwrap()), Some(3)));
        let link = match Link::open(
            "lo",
            "127.0.0.1".parse().unwrap(),
            Senders::from_config(&[entry(KEY_A, &["127.0.0.2/32"])]),
            Arc::clone(&counters),
            lookup,
            tx,
            |incoming| incoming,
        ) {
            Ok(link) => link,
            // Another agent test (or a real agent) holds the port.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return,
            Err(e) => panic!("open: {e}"),
        };
        let peer = UdpSocket::bind("127.0.0.2:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ask = protocol::encode(&Message::Where {
            key: Key(KEY_B.parse().unwrap()),
        })
        .unwrap();
        peer.send_to(&ask, link.local).unwrap();
        let mut buffer = [0u8; MAX_DATAGRAM];
        let (len, _) = peer.recv_from(&mut buffer).unwrap();
        assert_eq!(
            protocol::decode(&buffer[..len]),
            Ok(Message::Seen {
                key: Key(KEY_B.parse().unwrap()),
                endpoint: Some("203.0.113.9:51820".parse().unwrap()),
                handshake_secs: Some(3),
            })
        );
        peer.send_to(HELLO, link.local).unwrap();
        let incoming = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            incoming.message,
            Message::Hello {
                relay: false,
                sk: None,
                members: None,
            }
        );
        assert_eq!(incoming.from, KEY_A.parse().unwrap());
        peer.send_to(&vec![b' '; MAX_DATAGRAM + 1], link.local)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while counters.dropped(DropReason::Oversized) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(counters.dropped(DropReason::Oversized), 1);
        assert_eq!(counters.accepted(), 2);
        drop(link);
    }
}
