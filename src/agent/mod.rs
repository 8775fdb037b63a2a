//! `wgp2p agent`: a long-running loop that keeps the mesh healthy.
//!
//! It is not a second program: each pass observes (the config file, the
//! live device, DNS, this host's own addresses), turns what it sees into the same kind of change the
//! CLI makes, and applies it under the same config lock, taking the lock
//! only for the change itself. Each pass also says `hello` to every peer
//! whose agent was heard lately (to the others at most every
//! [`DISCOVER_EVERY`]) over the agents' protocol (`protocol`, `link`), and runs
//! membership (`membership`: peers introduced to and removed from the mesh,
//! docs/membership.md).
//!
//! Between passes the loop waits on one channel of [`Event`]s: a signal
//! (SIGTERM/SIGINT, taken by a thread of its own with `sigtimedwait`) ends
//! it at once, cleanly (exit 0); a message from a peer's agent (from the
//! link's receive thread) is handled as it comes; every second the config's
//! stamp is looked at, so a peer added or removed by hand is announced at
//! once. No lock is held while it waits. No async runtime: a few threads, blocking calls with deadlines.

pub mod endpoints;
pub mod hints;
pub mod link;
pub mod membership;
pub mod protocol;
pub mod relay;
pub mod roam;
pub mod state;
pub mod unit;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use crate::config::node::Node;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::types::PublicKey;

use endpoints::{Observation, Refresh};
use state::Knowledge;

/// The longest a DNS lookup may take before the pass goes on without it.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(5);

/// `--interval SECS`: 1 to 3600.
pub fn parse_interval(s: &str) -> Result<Duration> {
    match s.parse::<u64>() {
        Ok(secs @ 1..=3600) => Ok(Duration::from_secs(secs)),
        _ => Err(Error::Invalid(format!(
            "invalid interval {}: expected a number of seconds from 1 to 3600",
            crate::types::quoted(s)
        ))),
    }
}

/// One line per action on stderr. Under systemd (`JOURNAL_STREAM` set) the
/// journal stamps each line, so none is added; elsewhere each line starts
/// with the UTC time.
pub struct Log {
    timestamps: bool,
}

impl Log {
    pub fn new(under_journald: bool) -> Log {
        Log {
            timestamps: !under_journald,
        }
    }

    pub fn line(&self, message: &str) {
        let stamp = if self.timestamps {
            format!("{} ", utc_stamp(SystemTime::now()))
        } else {
            String::new()
        };
        // A closed stderr must not stop the agent: the error is dropped.
        let _ = writeln!(std::io::stderr(), "{stamp}wgp2p agent: {message}");
    }
}

/// `2026-12-01T05:40:07Z`.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days.cast_signed() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// SIGTERM and SIGINT, blocked in every thread and taken synchronously.
struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Block the signals. Must run before any thread is started, since
    /// threads inherit the mask (a signal must not kill a helper thread's
    /// process behind the loop's back).
    fn block() -> Result<Signals> {
        // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise
        // it, and pthread_sigmask only changes this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(Error::System(format!(
                    "cannot block SIGTERM and SIGINT: {}",
                    std::io::Error::from_raw_os_error(rc)
                )));
            }
            Ok(Signals { set })
        }
    }

    /// Hand each signal to the loop as [`Event::Signal`], from a thread of
    /// its own (started after `block`, so it has the same mask).
    fn forward(self, events: mpsc::Sender<Event>) -> Result<()> {
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                loop {
                    if let Some(signal) = self.wait(Duration::from_secs(3600))
                        && events.send(Event::Signal(signal)).is_err()
                    {
                        return;
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| Error::System(format!("cannot start the signal thread: {e}")))
    }

    /// Wait up to `timeout` for a signal; its number, or `None` on timeout.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                // Below 10^9, so the i32 is exact on every target.
                tv_nsec: libc::c_long::from(left.subsec_nanos().cast_signed()),
            };
            // SAFETY: `set` was initialised in `block`; a null info pointer
            // is allowed.
            let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
            if signal > 0 {
                return Some(signal);
            }
            // EAGAIN: timed out; EINTR: another signal, wait again.
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) {
                return None;
            }
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// What the loop waits for between passes.
#[derive(Debug)]
pub enum Event {
    /// SIGTERM or SIGINT: stop.
    Signal(i32),
    /// A message from a peer's agent (authenticated, rate-limited, decoded).
    Message(link::Incoming),
}

/// A peer's agent counts as heard while its latest `hello` is at most this
/// old: the staleness threshold of endpoints, so a peer with the longest
/// interval (3600 s is allowed, 30 s the default) is not forgotten between
/// two of its passes when it runs at the default.
pub const HEARD_WITHIN: Duration = endpoints::STALE_AFTER;

/// A peer whose agent is not heard (it runs none, like a phone made with
/// `provision-peer`, or it is down) gets a `hello` at most this often:
/// every pass would keep its tunnel, and a phone's radio, busy for
/// nothing. An agent that starts says `hello` to every peer at once and
/// is answered at once, so two agents never wait this long to meet.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(300);

/// How often the loop looks whether the config changed between passes.
const CONFIG_LOOK: Duration = Duration::from_secs(1);

/// The config file's modification time and size (`None`: unreadable).
fn config_stamp(ctx: &Context) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(ctx.paths.conf()).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Now in Unix milliseconds (membership events are dated so).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Run in the foreground until SIGTERM or SIGINT; `auto_relay`: with
/// `--auto-relay`.
pub fn run(
    ctx: &Context,
    interval: Duration,
    auto_relay: Option<relay::Settings>,
    log: &Log,
) -> Result<()> {
    let signals = Signals::block()?;
    if !ctx.paths.dir.is_dir() {
        return Err(crate::config::node::not_installed(&ctx.paths));
    }
    let _running = state::Running::claim(&ctx.paths)?;
    let (events, inbox) = mpsc::channel::<Event>();
    signals.forward(events.clone())?;
    let mut talk = Talk::new(
        events,
        interval,
        membership::Membership::load(&ctx.paths, log),
    );
    let mut knowledge = match state::load(&ctx.paths) {
        Ok(state) => state.map(|s| Knowledge::from_state(&s)).unwrap_or_default(),
        Err(e) => {
            log.line(&format!("the agent state is not read: {e}; it is rebuilt"));
            Knowledge::default()
        }
    };
    log.line(&format!(
        "started for {} (pid {}), a pass every {} s",
        ctx.paths.iface,
        std::process::id(),
        interval.as_secs()
    ));
    if let Some(settings) = auto_relay {
        log.line(&format!(
            "auto-relay on: a peer without a direct handshake for {} s goes through a relay-enabled peer",
            settings.after.as_secs()
        ));
    }
    let mut last_problem: Option<String> = None;
    let mut last_relay_problem: Option<String> = None;
    loop {
        // `uninstall` removed the interface: nothing left to look after.
        if !ctx.paths.conf().exists() {
            log.line(&format!(
                "{} is no longer installed (no {}): stopping",
                ctx.paths.iface,
                ctx.paths.conf().display()
            ));
            state::remove_files(&ctx.paths);
            return Ok(());
        }
        follow_own_addresses(ctx, &mut knowledge, log);
        // A problem is logged when it appears or changes, not every pass.
        // DNS refresh and the agents' protocol do not depend on each other.
        let refreshed = pass(ctx, &mut knowledge, log);
        let talked = talk
            .pass(ctx, &mut knowledge, log)
            .and_then(|()| talk.membership_pass(ctx, log));
        let problem = refreshed.and(talked).err().map(|e| e.to_string());
        if problem != last_problem {
            match &problem {
                Some(p) => log.line(&format!("pass failed: {p}")),
                None if last_problem.is_some() => log.line("passes work again"),
                None => {}
            }
            last_problem = problem;
        }
        knowledge.link = talk.status();
        if let Some(settings) = auto_relay {
            let relays = relay_enabled(&knowledge);
            let problem = relay::pass(ctx, &mut knowledge.relay, relays, settings, log)
                .err()
                .map(|e| e.to_string());
            if problem != last_relay_problem {
                if let Some(p) = &problem {
                    log.line(&format!("auto-relay pass failed: {p}"));
                }
                last_relay_problem = problem;
            }
        }
        let mut saved = knowledge.to_state(std::process::id(), interval, state::unix_now());
        saved.auto_relay = Some(knowledge.relay.save(auto_relay));
        if let Err(e) = state::save(&ctx.paths, &saved) {
            log.line(&format!("cannot save the state: {e}"));
        }
        let deadline = Instant::now() + interval;
        let mut config_seen = config_stamp(ctx);
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // A peer a human added or removed is announced to the mesh at
            // once, not at the next pass (the config is looked at every
            // CONFIG_LOOK; one stat).
            let stamp = config_stamp(ctx);
            if stamp != config_seen {
                config_seen = stamp;
                if let Err(e) = talk.membership_pass(ctx, log) {
                    log.line(&format!("membership: {e}"));
                }
            }
            // Introductions may want to act before the next pass.
            let due = knowledge.hints.due();
            if due.is_some_and(|due| due <= now) {
                let peers = talk.peer_views(ctx, &knowledge).unwrap_or_default();
                let actions = knowledge
                    .hints
                    .tick(&peers, SystemTime::now(), now, interval);
                talk.act(ctx, &mut knowledge, actions, log);
                continue;
            }
            let until = due
                .map_or(deadline, |due| due.min(deadline))
                .min(now + CONFIG_LOOK);
            match inbox.recv_timeout(until.saturating_duration_since(now)) {
                Ok(Event::Signal(signal)) => {
                    log.line(&format!("stopping on {}", signal_name(signal)));
                    return Ok(());
                }
                Ok(Event::Message(incoming)) => {
                    talk.receive(ctx, &mut knowledge, incoming, log);
                }
                // The loop holds a sender itself: only the timeout is left.
                Err(_) => {}
            }
        }
    }
}

/// The agents' protocol as the loop uses it: the socket (opened, and
/// opened again, as the interface comes and goes) and what it heard.
struct Talk {
    link: Option<link::Link>,
    interval: Duration,
    /// What this node's `hello` says: it relays (`relay-enable`).
    relay: bool,
    counters: Arc<link::Counters>,
    events: mpsc::Sender<Event>,
    /// Why the socket cannot be opened, said once until it changes.
    problem: Option<String>,
    /// Peer names from the config, for the log.
    names: HashMap<PublicKey, String>,
    /// Each configured peer's agent address.
    agents: HashMap<PublicKey, SocketAddr>,
    membership: membership::Membership,
    /// Each configured peer's endpoint when it is an IP address, as of the
    /// last pass.
    configured: Vec<(PublicKey, Option<SocketAddr>)>,
    /// When each peer whose agent was not heard last got a `hello`
    /// ([`DISCOVER_EVERY`]); emptied when the socket is opened again.
    discovered: HashMap<PublicKey, Instant>,
}

impl Talk {
    fn new(
        events: mpsc::Sender<Event>,
        interval: Duration,
        membership: membership::Membership,
    ) -> Talk {
        Talk {
            membership,
            link: None,
            interval,
            relay: false,
            agents: HashMap::new(),
            configured: Vec::new(),
            discovered: HashMap::new(),
            counters: Arc::default(),
            events,
            problem: None,
            names: HashMap::new(),
        }
    }

    fn status(&self) -> state::LinkStatus {
        let dropped = protocol::DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), self.counters.dropped(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        state::LinkStatus {
            listening: self.link.as_ref().map(|l| l.local),
            accepted: self.counters.accepted(),
            dropped,
        }
    }

    /// Open the socket if needed, update who may send, and say `hello` to
    /// every configured peer. The socket failing is logged (once) and
    /// retried at the next pass; it never fails the pass.
    fn pass(&mut self, ctx: &Context, knowledge: &mut Knowledge, log: &Log) -> Result<()> {
        let node = Node::load(ctx.paths.clone())?;
        let entries = node.peers()?;
        self.names = entries
            .iter()
            .map(|e| (e.public_key, e.display_name().to_string()))
            .collect();
        self.agents = entries
            .iter()
            .filter_map(|e| Some((e.public_key, link::agent_address(e)?)))
            .collect();
        knowledge
            .agents
            .retain(|key, _| self.names.contains_key(key));
        let senders = link::Senders::from_config(&entries);
        match self.ensure_link(ctx, &node, senders) {
            Ok(opened) => {
                self.problem = None;
                if opened {
                    self.discovered.clear();
                }
                if let Some(link) = self.link.as_ref().filter(|_| opened) {
                    log.line(&format!("listening for peers' agents on {}", link.local));
                }
            }
            Err(problem) => {
                self.link = None;
                if self.problem.as_ref() != Some(&problem) {
                    log.line(&format!(
                        "cannot listen for peers' agents: {problem}; trying again at each pass"
                    ));
                    self.problem = Some(problem);
                }
                return Ok(());
            }
        }
        self.relay = node.conf.as_ref().is_some_and(crate::plan::hooks::enabled);
        let hellos = self.membership.hellos();
        let (now, unix_now) = (Instant::now(), state::unix_now());
        for (key, to) in &self.agents {
            let heard = knowledge.agent_heard(key, unix_now, HEARD_WITHIN).is_some();
            if !heard {
                if !discovery_due(self.discovered.get(key).copied(), now) {
                    continue;
                }
                self.discovered.insert(*key, now);
            }
            self.send(*to, &self.hello_with(hellos.as_ref(), key));
        }
        self.discovered
            .retain(|key, _| self.agents.contains_key(key));
        // Introductions, for the peers that are live.
        self.configured = entries
            .iter()
            .map(|e| {
                let ip = e
                    .endpoint
                    .as_ref()
                    .and_then(|w| w.as_written().parse().ok());
                (e.public_key, ip)
            })
            .collect();
        let Some(live) = ctx.device().live()? else {
            return Ok(());
        };
        let views = self.views_of(&live, knowledge);
        let actions = knowledge.hints.pass(
            &views,
            SystemTime::now(),
            Instant::now(),
            self.interval,
            unix_now,
        );
        self.act(ctx, knowledge, actions, log);
        Ok(())
    }

    /// The configured peers that are live, as introductions see them.
    fn views_of(
        &self,
        live: &crate::device::LiveDevice,
        knowledge: &Knowledge,
    ) -> Vec<hints::PeerView> {
        let unix_now = state::unix_now();
        self.configured
            .iter()
            .filter_map(|(key, configured)| {
                let peer = live.peers.iter().find(|p| p.public_key == *key)?;
                Some(hints::PeerView {
                    key: *key,
                    configured: *configured,
                    live_endpoint: peer.endpoint,
                    last_handshake: peer.last_handshake,
                    agent_heard: knowledge.agent_heard(key, unix_now, HEARD_WITHIN).is_some(),
                })
            })
            .collect()
    }

    /// The same, read afresh between passes (the config as of the last
    /// pass, the device and the heard agents as of now).
    fn peer_views(&self, ctx: &Context, knowledge: &Knowledge) -> Option<Vec<hints::PeerView>> {
        let live = ctx.device().live().ok()??;
        Some(self.views_of(&live, knowledge))
    }

    fn name(&self, key: &PublicKey) -> String {
        self.names
            .get(key)
            .cloned()
            .unwrap_or_else(|| key.to_string())
    }

    /// Carry out what introductions decided.
    fn act(
        &self,
        ctx: &Context,
        knowledge: &mut Knowledge,
        actions: Vec<hints::Action>,
        log: &Log,
    ) {
        for action in actions {
            match action {
                hints::Action::Ask { about, to } => {
                    let question = protocol::Message::Where {
                        key: protocol::Key(about),
                    };
                    let sent = to
                        .iter()
                        .filter_map(|k| self.agents.get(k))
                        .filter(|address| self.send(**address, &question))
                        .count();
                    let asked: Vec<String> = to.iter().map(|k| self.name(k)).collect();
                    log.line(&format!(
                        "peer {}: stale: asked {sent} peer(s) where they see it ({})",
                        self.name(&about),
                        asked.join(", ")
                    ));
                }
                hints::Action::Try { peer, offer } => {
                    let from = offer.from.map_or("the config".to_string(), |k| {
                        format!("peer {}", self.name(&k))
                    });
                    let seen = offer
                        .handshake_secs
                        .map(|s| format!(", handshake {s} s ago there"))
                        .unwrap_or_default();
                    match apply_hint(ctx, peer, offer.endpoint) {
                        Ok(true) => {
                            // A packet for the peer makes WireGuard start a
                            // handshake through the new endpoint now.
                            if let Some(address) = self.agents.get(&peer) {
                                self.send(*address, &self.hello(&peer));
                            }
                            log.line(&format!(
                                "peer {}: trying endpoint {} (from {from}{seen})",
                                self.name(&peer),
                                offer.endpoint
                            ));
                        }
                        Ok(false) => knowledge.hints.abandon(&peer),
                        Err(e) => {
                            knowledge.hints.abandon(&peer);
                            log.line(&format!(
                                "peer {}: cannot set endpoint {}: {e}",
                                self.name(&peer),
                                offer.endpoint
                            ));
                        }
                    }
                }
                hints::Action::Kept {
                    peer,
                    address,
                    from,
                } => {
                    let from = from.map_or("the config".to_string(), |k| {
                        format!("peer {}", self.name(&k))
                    });
                    log.line(&format!(
                        "peer {}: endpoint {address} (from {from}) completed a handshake: kept live, the config is unchanged",
                        self.name(&peer)
                    ));
                }
                hints::Action::GaveUp { peer, offer } => log.line(&format!(
                    "peer {}: no handshake through {} within {} s",
                    self.name(&peer),
                    offer.endpoint,
                    hints::try_for(self.interval).as_secs()
                )),
            }
        }
    }

    /// Send to a peer's agent; a failure is not worth a log line (the peer
    /// may be unreachable: that is what the agent is for).
    fn send(&self, to: SocketAddr, message: &protocol::Message) -> bool {
        self.link
            .as_ref()
            .is_some_and(|link| link.send(to, message).is_ok())
    }

    /// Keep the open socket when it still fits (same address, same
    /// interface instance, thread alive), else open a new one (`true`).
    fn ensure_link(
        &mut self,
        ctx: &Context,
        node: &Node,
        senders: link::Senders,
    ) -> std::result::Result<bool, String> {
        let iface = ctx.paths.iface.as_str();
        let ip = vpn_ip(node).ok_or_else(|| "this node has no VPN address".to_string())?;
        let ifindex = link::interface_index(iface)
            .map_err(|e| format!("interface {iface} is not up ({e})"))?;
        if let Some(link) = &self.link
            && link.local.ip() == ip
            && link.ifindex == ifindex
            && link.alive()
        {
            link.set_senders(senders);
            return Ok(false);
        }
        self.link = None;
        let opened = link::Link::open(
            iface,
            ip,
            senders,
            Arc::clone(&self.counters),
            lookup(ctx),
            self.events.clone(),
            Event::Message,
        )
        .map_err(|e| {
            format!(
                "cannot bind {}: {e}",
                SocketAddr::new(ip, protocol::AGENT_PORT)
            )
        })?;
        self.link = Some(opened);
        Ok(true)
    }

    /// This node's `hello` to `peer`: whether it relays, and the digest of
    /// its membership book for that peer.
    fn hello(&self, peer: &PublicKey) -> protocol::Message {
        self.hello_with(self.membership.hellos().as_ref(), peer)
    }

    /// The same, with the book's digests computed once for many peers.
    fn hello_with(
        &self,
        hellos: Option<&membership::Hellos>,
        peer: &PublicKey,
    ) -> protocol::Message {
        protocol::Message::Hello {
            relay: self.relay,
            sk: None,
            members: hellos.map(|h| h.to(peer)),
        }
    }

    /// Membership's pass (what the config changed becomes events, accepted
    /// events are applied), then the book is saved.
    fn membership_pass(&mut self, ctx: &Context, log: &Log) -> Result<()> {
        // The config may hold peers the last pass did not (a human's
        // add-peer): take them in first, so the announcement reaches them.
        self.refresh(ctx);
        let outgoing = self.membership.pass(ctx, log, unix_ms())?;
        self.send_records(outgoing);
        if self.membership.take_changed() {
            self.refresh(ctx);
        }
        if let Err(e) = self.membership.save(&ctx.paths) {
            log.line(&format!("cannot save the membership book: {e}"));
        }
        Ok(())
    }

    /// Send each record to the peers it goes to: encoded once, the same
    /// datagram to every one of them.
    fn send_records(&self, outgoing: Vec<membership::Outgoing>) {
        let Some(link) = &self.link else {
            return;
        };
        for (to, wire) in outgoing {
            let Ok(datagram) = protocol::encode(&protocol::Message::Record(Box::new(wire))) else {
                continue;
            };
            for peer in self.membership.recipients(&to) {
                if let Some(address) = self.agents.get(&peer) {
                    // As in `send`: a failure is not worth a log line.
                    let _ = link.send_datagram(*address, &datagram);
                }
            }
        }
    }

    /// Membership changed the config: take the new peers in at once (who
    /// may send, where to send) and say `hello` to them, rather than at
    /// the next pass.
    fn refresh(&mut self, ctx: &Context) {
        let Ok(node) = Node::load(ctx.paths.clone()) else {
            return;
        };
        let Ok(entries) = node.peers() else {
            return;
        };
        if let Some(link) = &self.link {
            link.set_senders(link::Senders::from_config(&entries));
        }
        let hellos = self.membership.hellos();
        for entry in &entries {
            self.names
                .insert(entry.public_key, entry.display_name().to_string());
            let Some(to) = link::agent_address(entry) else {
                continue;
            };
            if self.agents.insert(entry.public_key, to).is_none() {
                self.send(to, &self.hello_with(hellos.as_ref(), &entry.public_key));
            }
        }
        let keys: std::collections::HashSet<PublicKey> =
            entries.iter().map(|e| e.public_key).collect();
        self.agents.retain(|k, _| keys.contains(k));
    }

    /// A message from a peer's agent.
    fn receive(
        &mut self,
        ctx: &Context,
        knowledge: &mut Knowledge,
        incoming: link::Incoming,
        log: &Log,
    ) {
        let name = self
            .names
            .get(&incoming.from)
            .cloned()
            .unwrap_or_else(|| incoming.from.to_string());
        match incoming.message {
            protocol::Message::Hello {
                relay,
                ref sk,
                ref members,
            } => {
                let outgoing = self.membership.on_hello(
                    incoming.from,
                    sk.is_some(),
                    members.as_deref(),
                    unix_ms(),
                    log,
                );
                let now = state::unix_now();
                let heard = state::Heard { at: now, relay };
                let before = knowledge.agents.insert(incoming.from, heard);
                // This node's `hello` goes back at once (never more than
                // one per `hello` received) when:
                // - the books differ: it goes with this node's records, so
                //   the peer sends its own at once instead of at its next
                //   pass (at most once per resend period);
                // - the peer's agent is heard for the first time (or again
                //   after a silence): it may have missed this agent's last
                //   `hello` (its socket was not open yet), and two agents
                //   that start together then hear each other now, not a
                //   pass later. An agent that already heard this one does
                //   not answer, so this never bounces.
                let newly_heard =
                    before.is_none_or(|b| now.saturating_sub(b.at) > HEARD_WITHIN.as_secs());
                if (newly_heard || !outgoing.is_empty())
                    && let Some(address) = self.agents.get(&incoming.from)
                {
                    self.send(*address, &self.hello(&incoming.from));
                }
                self.send_records(outgoing);
                if before.is_none_or(|b| b.relay != relay) {
                    log.line(&format!(
                        "peer {name}: its agent is heard{}",
                        if relay { " (it relays)" } else { "" }
                    ));
                }
            }
            protocol::Message::Record(ref wire) => {
                let outgoing = self
                    .membership
                    .on_record(ctx, incoming.from, wire, unix_ms(), log);
                self.send_records(outgoing);
                if self.membership.take_changed() {
                    self.refresh(ctx);
                }
            }
            // Answered by the receive thread; never delivered.
            protocol::Message::Where { .. } => {}
            protocol::Message::Seen {
                key,
                endpoint,
                handshake_secs,
            } => knowledge
                .hints
                .seen(incoming.from, key.0, endpoint, handshake_secs),
        }
    }
}

/// Make `address` the peer's live endpoint: under the lock, after reading
/// the config again; only a peer that is still configured, live and stale
/// is touched (`Ok(false)`: it is not; a handshake may have come since the
/// pass), and only its live endpoint changes.
fn apply_hint(ctx: &Context, peer: PublicKey, address: SocketAddr) -> Result<bool> {
    let (_lock, node) = ctx.lock_and_load()?;
    if !node.peers()?.iter().any(|e| e.public_key == peer) {
        return Ok(false);
    }
    let device = ctx.device();
    let now = SystemTime::now();
    let still_stale = device.live()?.is_some_and(|l| {
        l.peers.iter().any(|p| {
            p.public_key == peer
                && p.last_handshake.is_none_or(|t| {
                    now.duration_since(t).unwrap_or_default() > endpoints::STALE_AFTER
                })
        })
    });
    if !still_stale {
        return Ok(false);
    }
    device.apply(&[crate::plan::Delta::SetEndpoint {
        public_key: peer,
        address,
    }])?;
    Ok(true)
}

/// This node's VPN address: the first address of the config's
/// `[Interface] Address`, else the `address` file.
fn vpn_ip(node: &Node) -> Option<IpAddr> {
    let written = node
        .conf
        .as_ref()
        .and_then(|doc| doc.interface())
        .and_then(|i| {
            i.get_all(crate::config::document::keys::ADDRESS)
                .first()
                .copied()
        })
        .and_then(|value| value.split(',').next())
        .and_then(|first| first.trim().parse::<ipnet::IpNet>().ok())
        .map(|net| net.addr());
    written.or_else(|| node.address.map(|a| a.ip()))
}

/// How the receive thread answers `where`: from the live device, read
/// afresh for each question (never from a pass-old copy).
fn lookup(ctx: &Context) -> link::Lookup {
    let device: Option<crate::device::WgDevice> = match ctx.service_kind {
        crate::service::Kind::None => None,
        _ => Some(crate::device::WgDevice::new(ctx.paths.iface.clone())),
    };
    Box::new(move |key| {
        use crate::device::Device;
        let Some(Ok(Some(live))) = device.as_ref().map(Device::live) else {
            return (None, None);
        };
        let Some(peer) = live.peers.iter().find(|p| p.public_key == key) else {
            return (None, None);
        };
        let age = peer.last_handshake.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or_default()
                .as_secs()
        });
        (peer.endpoint, age)
    })
}

/// Whether a peer whose agent is not heard gets a `hello` now: never
/// greeted by this socket, or last greeted [`DISCOVER_EVERY`] ago.
fn discovery_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= DISCOVER_EVERY)
}

/// The peers whose agent said `relay: true` in a `hello` heard within
/// [`HEARD_WITHIN`].
fn relay_enabled(knowledge: &Knowledge) -> std::collections::BTreeSet<PublicKey> {
    let now = state::unix_now();
    knowledge
        .agents
        .keys()
        .filter(|k| {
            knowledge
                .agent_heard(k, now, HEARD_WITHIN)
                .is_some_and(|h| h.relay)
        })
        .copied()
        .collect()
}

/// When this host's addresses changed since the last pass, send every
/// peer a packet through the tunnel so that it roams to the new source.
fn follow_own_addresses(ctx: &Context, knowledge: &mut Knowledge, log: &Log) {
    let now = roam::own_addresses(ctx.paths.iface.as_str());
    if roam::changed(knowledge.addresses.as_deref(), &now)
        && let Ok(Some(live)) = ctx.device().live()
    {
        let targets = roam::peer_targets(&live);
        let sent = roam::poke(&targets);
        let shown: Vec<String> = now.iter().map(ToString::to_string).collect();
        log.line(&format!(
            "this host's addresses changed (now {}): sent a packet through the tunnel to {sent} of {} peers so they learn the new source",
            if shown.is_empty() { "none".into() } else { shown.join(", ") },
            targets.len()
        ));
    }
    knowledge.addresses = Some(now);
}

/// One pass: observe without the lock, then apply each change under it.
fn pass(ctx: &Context, knowledge: &mut Knowledge, log: &Log) -> Result<()> {
    let node = Node::load(ctx.paths.clone())?;
    let entries = node.peers()?;
    let watched: Vec<(PublicKey, String, crate::types::Endpoint, String)> = entries
        .iter()
        .filter_map(|e| {
            let endpoint = endpoints::dns_endpoint(e)?;
            let configured = e.endpoint.as_ref()?.as_written().to_string();
            Some((
                e.public_key,
                configured,
                endpoint,
                e.display_name().to_string(),
            ))
        })
        .collect();
    knowledge
        .memory
        .retain(|key| watched.iter().any(|(k, ..)| k == key));
    knowledge
        .learned
        .retain(|key, _| watched.iter().any(|(k, ..)| k == key));
    knowledge
        .unresolved
        .retain(|key| watched.iter().any(|(k, ..)| k == key));
    if watched.is_empty() {
        return Ok(());
    }
    let Some(live) = ctx.device().live()? else {
        return Err(Error::System(format!(
            "interface {} is down: waiting for it",
            ctx.paths.iface
        )));
    };
    let now = SystemTime::now();
    let live_peers: HashMap<PublicKey, &crate::device::LivePeer> =
        live.peers.iter().map(|p| (p.public_key, p)).collect();
    let resolved = resolve_all(watched.iter().map(|(_, c, e, _)| (c.clone(), e.clone())));
    for (key, configured, _, name) in &watched {
        // A configured peer that is not live is drift, for `repair`.
        let Some(peer) = live_peers.get(key) else {
            continue;
        };
        // An introduced endpoint is being tried: not now.
        if knowledge.hints.trying(key) {
            continue;
        }
        let seen = Observation {
            public_key: *key,
            configured: configured.clone(),
            resolved: resolved.get(configured).cloned().unwrap_or_default(),
            live_endpoint: peer.endpoint,
            handshake_age: peer
                .last_handshake
                .map(|t| now.duration_since(t).unwrap_or_default()),
        };
        // Said when a name stops resolving and when it resolves again.
        let failing = seen.resolved.is_empty();
        if failing && knowledge.unresolved.insert(*key) {
            log.line(&format!(
                "peer {name}: cannot resolve {configured}: keeping its endpoint"
            ));
        } else if !failing && knowledge.unresolved.remove(key) {
            log.line(&format!("peer {name}: {configured} resolves again"));
        }
        let decision = endpoints::decide(&seen, knowledge.memory.last(&seen));
        knowledge.memory.record(&seen);
        if let Some(refresh) = decision {
            match apply(ctx, &refresh) {
                Ok(true) => {
                    knowledge.learn(&refresh, state::unix_now());
                    log.line(&describe(name, &refresh));
                }
                Ok(false) => log.line(&format!(
                    "peer {name}: changed in the config since the pass began: left as it is"
                )),
                Err(e) => log.line(&format!(
                    "peer {name}: cannot set endpoint {}: {e}",
                    refresh.address
                )),
            }
        }
    }
    Ok(())
}

fn describe(name: &str, refresh: &Refresh) -> String {
    let previous = refresh
        .previous
        .map(|p| format!(" (was {p})"))
        .unwrap_or_default();
    format!(
        "peer {name}: endpoint {} now {}{previous}: {}",
        refresh.configured,
        refresh.address,
        refresh.reason.describe()
    )
}

/// Take the lock, re-read the config, and make the change live if the peer
/// is still configured as it was observed. `Ok(false)`: it was not.
fn apply(ctx: &Context, refresh: &Refresh) -> Result<bool> {
    let (_lock, node) = ctx.lock_and_load()?;
    let Some(delta) = endpoints::plan(&node.peers()?, refresh) else {
        return Ok(false);
    };
    let device = ctx.device();
    // Only a peer that is live is touched: setting an endpoint on a
    // missing peer would create it.
    let still_live = device
        .live()?
        .is_some_and(|l| l.peers.iter().any(|p| p.public_key == refresh.public_key));
    if !still_live {
        return Ok(false);
    }
    device.apply(&[delta])?;
    Ok(true)
}

/// Resolve every distinct name at once, each lookup in its own thread, and
/// wait at most [`RESOLVE_DEADLINE`] in all; a lookup still running then is
/// left behind (its thread ends when the resolver gives up).
fn resolve_all(
    endpoints: impl Iterator<Item = (String, crate::types::Endpoint)>,
) -> HashMap<String, Vec<SocketAddr>> {
    let (sender, receiver) = mpsc::channel();
    let mut waiting = 0;
    let mut seen = std::collections::HashSet::new();
    for (configured, endpoint) in endpoints {
        if !seen.insert(configured.clone()) {
            continue;
        }
        let crate::types::Host::Dns(name) = endpoint.host().clone() else {
            continue;
        };
        let port = endpoint.port();
        let sender = sender.clone();
        let spawned = std::thread::Builder::new()
            .name("resolve".into())
            .spawn(move || {
                let addresses: Vec<SocketAddr> = (name.as_str(), port)
                    .to_socket_addrs()
                    .map(Iterator::collect)
                    .unwrap_or_default();
                let _ = sender.send((configured, addresses));
            });
        if spawned.is_ok() {
            waiting += 1;
        }
    }
    let deadline = Instant::now() + RESOLVE_DEADLINE;
    let mut results = HashMap::new();
    while waiting > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok((configured, addresses)) => {
                results.insert(configured, addresses);
                waiting -= 1;
            }
            Err(_) => break,
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unheard_peer_is_greeted_at_first_and_then_every_five_minutes() {
        let start = Instant::now();
        assert!(discovery_due(None, start));
        assert!(!discovery_due(Some(start), start + Duration::from_secs(30)));
        assert!(!discovery_due(
            Some(start),
            start + Duration::from_secs(299)
        ));
        assert!(discovery_due(Some(start), start + DISCOVER_EVERY));
    }

    #[test]
    fn utc_stamps() {
        let at = |secs| utc_stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_103_607), "2026-12-01T05:40:07Z");
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30").unwrap(), Duration::from_secs(30));
        for bad in ["0", "3601", "-1", "x", ""] {
            let err = parse_interval(bad).unwrap_err().to_string();
            assert!(err.contains("from 1 to 3600"), "{err}");
        }
    }

    #[test]
    fn literal_addresses_and_localhost_resolve() {
        let found = resolve_all(
            [(
                "localhost:51820".to_string(),
                "localhost:51820".parse().unwrap(),
            )]
            .into_iter(),
        );
        assert!(!found["localhost:51820"].is_empty(), "{found:?}");
    }

    #[test]
    fn signal_wait_times_out_without_a_signal() {
        // Blocking only changes this test thread's mask.
        let signals = Signals::block().unwrap();
        assert_eq!(signals.wait(Duration::from_millis(20)), None);
    }
}
