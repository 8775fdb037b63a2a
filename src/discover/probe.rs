//! Time-boxed plumbing: resolve server names with a deadline, then query
//! every server from one UDP socket in parallel, retransmitting on a timer,
//! until enough of them answered or the deadline passed.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::stun::{self, TxId};

/// First retransmission timeout. RFC 5389 starts at 500 ms for the open
/// internet; with a 3 s budget a lost first packet must not cost a sixth
/// of it, and a real server answers in well under 250 ms.
const FIRST_RTO: Duration = Duration::from_millis(250);
/// Longest gap between two sends to one server (the RTO doubles up to it).
const MAX_RTO: Duration = Duration::from_secs(1);
/// The read timeout is never zero: std refuses a zero timeout.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// A resolved STUN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// The server as configured (`host:port`).
    pub server: String,
    /// The address it is queried at.
    pub addr: SocketAddr,
}

/// One server's answer: the address it saw our packet come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Answer {
    /// Index into the targets.
    pub target: usize,
    /// The mapped (server-reflexive) address, canonical.
    pub mapped: SocketAddr,
}

/// When a probe may stop before its deadline.
#[derive(Debug, Clone, Copy)]
pub(super) struct Goal {
    /// Answers that are enough.
    pub answers: usize,
    /// Once enough answered, how long after the first send the others may
    /// still answer: more mappings make a better NAT verdict, but a dead
    /// server must not hold the call until the deadline.
    pub grace: Duration,
}

/// A resolver: `host:port` to addresses. A parameter so tests can stand in
/// a slow one without touching DNS.
pub(super) type Resolver = fn(&str) -> io::Result<Vec<SocketAddr>>;

/// The system resolver (getaddrinfo), which may block for many seconds.
pub(super) fn system_resolver(server: &str) -> io::Result<Vec<SocketAddr>> {
    server.to_socket_addrs().map(Iterator::collect)
}

/// Resolve every server, all at once, giving up on the ones not done by
/// `deadline`. Literal addresses need no lookup; each name is looked up on
/// its own thread because getaddrinfo has no timeout. A thread still
/// blocked at the deadline is left behind: it ends by itself and its
/// answer goes nowhere.
///
/// Each server yields one address. IPv4 is preferred (the mesh advertises
/// IPv4 endpoints and one socket serves one family): when any server has
/// an IPv4 address only IPv4 addresses are used, else IPv6 ones. Servers
/// that end up at the same address are queried once.
pub(super) fn resolve(servers: &[String], deadline: Instant, resolver: Resolver) -> Vec<Target> {
    let mut found: Vec<Option<Vec<SocketAddr>>> = vec![None; servers.len()];
    let (sender, receiver) = mpsc::channel();
    let mut pending = 0;
    for (index, server) in servers.iter().enumerate() {
        if let Ok(addr) = server.parse::<SocketAddr>() {
            found[index] = Some(vec![addr]);
        } else if spawn_lookup(index, server, resolver, sender.clone()) {
            pending += 1;
        }
    }
    while pending > 0 {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok((index, addrs)) = receiver.recv_timeout(wait) else {
            break;
        };
        found[index] = Some(addrs);
        pending -= 1;
    }
    pick_targets(servers, &found)
}

/// Look `server` up on a new thread that sends `(index, addresses)` back.
/// False when no thread could be started (then the server is skipped).
fn spawn_lookup(
    index: usize,
    server: &str,
    resolver: Resolver,
    sender: mpsc::Sender<(usize, Vec<SocketAddr>)>,
) -> bool {
    let name = server.to_owned();
    thread::Builder::new()
        .name("stun-resolve".into())
        .spawn(move || {
            let addrs = resolver(&name).unwrap_or_default();
            // The receiver is gone when the deadline passed: nothing to do.
            let _ = sender.send((index, addrs));
        })
        .is_ok()
}

/// One target per server that has an address in the preferred family.
pub(super) fn pick_targets(servers: &[String], found: &[Option<Vec<SocketAddr>>]) -> Vec<Target> {
    let all = || {
        found
            .iter()
            .flatten()
            .flatten()
            .map(|a| stun::canonical(*a))
    };
    let want_v4 = all().any(|a| a.is_ipv4());
    let mut targets: Vec<Target> = Vec::new();
    for (server, addrs) in servers.iter().zip(found) {
        let addr = addrs
            .iter()
            .flatten()
            .map(|a| stun::canonical(*a))
            .find(|a| a.is_ipv4() == want_v4);
        let Some(addr) = addr else { continue };
        if targets.iter().all(|t| t.addr != addr) {
            targets.push(Target {
                server: server.clone(),
                addr,
            });
        }
    }
    targets
}

/// Where one target's transaction stands.
struct Transaction {
    id: TxId,
    request: Vec<u8>,
    /// The target's address; answers must come from it.
    to: SocketAddr,
    next_send: Instant,
    rto: Duration,
    done: bool,
}

impl Transaction {
    fn new(target: &Target, now: Instant) -> Option<Self> {
        let id = stun::new_transaction_id()?;
        Some(Transaction {
            id,
            request: stun::binding_request(id)?,
            to: target.addr,
            next_send: now,
            rto: FIRST_RTO,
            done: false,
        })
    }

    /// Send the request when it is due. A send error (no route, network
    /// down) will not heal within the budget: give up on this target so an
    /// offline host returns at once instead of at the deadline.
    fn send_if_due(&mut self, socket: &UdpSocket, now: Instant) {
        if self.done || now < self.next_send {
            return;
        }
        if socket.send_to(&self.request, self.to).is_err() {
            self.done = true;
            return;
        }
        self.next_send = now + self.rto;
        self.rto = (self.rto * 2).min(MAX_RTO);
    }
}

/// Query every target from `socket` until `goal` is met, every target has
/// answered or failed, or `deadline` passes. Answers come in arrival order.
pub(super) fn run(
    socket: &UdpSocket,
    targets: &[Target],
    goal: Goal,
    deadline: Instant,
) -> Vec<Answer> {
    let started = Instant::now();
    let mut transactions: Vec<Transaction> = targets
        .iter()
        .filter_map(|t| Transaction::new(t, started))
        .collect();
    let mut answers = Vec::new();
    loop {
        let now = Instant::now();
        for transaction in &mut transactions {
            transaction.send_if_due(socket, now);
        }
        let enough = answers.len() >= goal.answers && now >= started + goal.grace;
        let all_done = transactions.iter().all(|t| t.done);
        if enough || all_done || now >= deadline {
            return answers;
        }
        let wake = next_wake(&transactions, &answers, goal, started, deadline);
        match receive(socket, wake) {
            Ok(Some((datagram, from))) => {
                record(&mut transactions, &mut answers, &datagram, from);
            }
            Ok(None) => {}
            Err(_) => return answers,
        }
    }
}

/// The earliest moment something is due: a retransmission, the end of
/// the grace period once enough answered, or the deadline.
fn next_wake(
    transactions: &[Transaction],
    answers: &[Answer],
    goal: Goal,
    started: Instant,
    deadline: Instant,
) -> Instant {
    let retransmit = transactions
        .iter()
        .filter(|t| !t.done)
        .map(|t| t.next_send)
        .min();
    let grace_end = (answers.len() >= goal.answers).then(|| started + goal.grace);
    [Some(deadline), retransmit, grace_end]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(deadline)
}

/// One datagram, or `None` when `until` passed first or a transient error
/// (a signal, an ICMP error surfacing) interrupted the wait.
fn receive(socket: &UdpSocket, until: Instant) -> io::Result<Option<(Vec<u8>, SocketAddr)>> {
    let wait = until
        .saturating_duration_since(Instant::now())
        .max(MIN_WAIT);
    socket.set_read_timeout(Some(wait))?;
    // A STUN answer to a bare Binding request is under 100 bytes; 1500
    // leaves room for servers that add SOFTWARE, OTHER-ADDRESS and such.
    let mut buf = [0u8; 1500];
    match socket.recv_from(&mut buf) {
        Ok((len, from)) => Ok(Some((buf[..len].to_vec(), from))),
        Err(e) if is_transient(e.kind()) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_transient(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
    )
}

/// Take `datagram` as an answer when it comes from the server whose
/// transaction it answers; anything else (a stray or forged packet, a
/// duplicate after a retransmission) is dropped.
fn record(
    transactions: &mut [Transaction],
    answers: &mut Vec<Answer>,
    datagram: &[u8],
    from: SocketAddr,
) {
    let from = stun::canonical(from);
    for (target, transaction) in transactions.iter_mut().enumerate() {
        if transaction.done || transaction.to != from {
            continue;
        }
        if let Some(mapped) = stun::mapped_address(datagram, transaction.id) {
            transaction.done = true;
            answers.push(Answer { target, mapped });
            return;
        }
    }
}
