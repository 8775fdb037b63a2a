//! `wgp2p agent`: a long-running loop that keeps the mesh healthy.
//!
//! It is not a second program: it is the CLI's pipeline in a loop. Each
//! step is one pass:
//!
//! 1. **observe** once ([`snapshot::Snapshot`]): the config parsed once,
//!    the device dumped once, this host's addresses, the DNS names
//!    resolved (off the lock, with a deadline), the time;
//! 2. **decide**: each feature is pure decisions on the snapshot and its
//!    own memory, returning [`action::Action`]s: DNS endpoints
//!    (`endpoints`), greetings (`greet`), introductions (`hints`),
//!    membership (`membership`, docs/membership.md), auto-relay (`relay`);
//!    messages from peers' agents since the last step are inputs here;
//! 3. **execute** ([`execute`]): one executor sends, pokes, makes live-only
//!    changes through one `apply_live` under the config lock (waited for
//!    with a deadline) and config changes through plan + commit;
//! 4. **settle and save**: what became of each change goes back to the
//!    feature that asked for it; the state file is written.
//!
//! A full pass runs every `--interval`. Between passes the loop waits on
//! one channel of [`Event`]s: a signal (SIGTERM/SIGINT, taken by a thread
//! of its own with `sigtimedwait`) ends it at once, cleanly (exit 0); a
//! message from a peer's agent starts a step at once (on the last snapshot
//! for a `hello` or a `seen`, on a fresh look for a `record`); every second
//! the config's stamp is looked at, so a peer added or removed by hand is
//! announced at once. No lock is held while it waits. No async runtime: a
//! few threads, blocking calls with deadlines.

pub mod action;
pub mod endpoints;
pub mod execute;
pub mod greet;
pub mod hints;
pub mod link;
pub mod log;
pub mod membership;
pub mod protocol;
pub mod relay;
pub mod roam;
pub mod snapshot;
pub mod state;
pub mod unit;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::types::PublicKey;

use action::{Action, Live, Outcome};
use execute::Event;
pub use log::Log;
use snapshot::{Scope, Snapshot};
use state::Knowledge;

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

/// SIGTERM and SIGINT, blocked in every thread (`sys::TermSignals`) and
/// handed to the loop from a thread of their own.
struct Signals(crate::sys::TermSignals);

impl Signals {
    /// Block the signals. Must run before any thread is started, since
    /// threads inherit the mask (a signal must not kill a helper thread's
    /// process behind the loop's back).
    fn block() -> Result<Signals> {
        crate::sys::TermSignals::block()
            .map(Signals)
            .map_err(|e| Error::System(format!("cannot block SIGTERM and SIGINT: {e}")))
    }

    /// Hand each signal to the loop as [`Event::Signal`], from a thread of
    /// its own (started after `block`, so it has the same mask).
    fn forward(self, events: mpsc::Sender<Event>) -> Result<()> {
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                loop {
                    if let Some(signal) = self.0.wait(Duration::from_secs(3600))
                        && events.send(Event::Signal(signal)).is_err()
                    {
                        return;
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| Error::System(format!("cannot start the signal thread: {e}")))
    }
}

fn signal_name(signal: i32) -> &'static str {
    crate::sys::signal_name(signal)
}

/// A peer's agent counts as heard while its latest `hello` is at most this
/// old: the staleness threshold of endpoints, so a peer with the longest
/// interval (3600 s is allowed, 30 s the default) is not forgotten between
/// two of its passes when it runs at the default.
pub const HEARD_WITHIN: Duration = endpoints::STALE_AFTER;

/// How often the loop looks whether the config changed between passes.
const CONFIG_LOOK: Duration = Duration::from_secs(1);

/// The config file's modification time and size (`None`: unreadable).
fn config_stamp(ctx: &Context) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(ctx.paths.conf()).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Run in the foreground until SIGTERM or SIGINT; `auto_relay`: with
/// `--auto-relay`.
///
/// Each step: observe once ([`Snapshot`]), decide ([`Agent::decide`]: each
/// feature's pure decisions, incoming messages among their inputs),
/// execute ([`execute::execute`]), learn what became of it
/// ([`Agent::settle`]), save. A full step runs every `interval`; a quick
/// one (config and device, no DNS) when the config changed, a record came
/// or an introduction is due; a message that needs no fresh look (a
/// `hello`, a `seen`) is decided on the last snapshot.
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
    crate::sys::malloc_limit_arenas();
    let (events, inbox) = mpsc::channel::<Event>();
    signals.forward(events.clone())?;
    let mut agent = Agent::new(ctx, interval, auto_relay, execute::Wire::new(events), log);
    agent.say_started(ctx, log);
    let mut clock = Clock::new(ctx, interval);
    let mut last: Option<Snapshot> = None;
    while still_installed(ctx, log) {
        // Wait for the next thing to do; no lock is held meanwhile.
        let Some((scope, messages)) = clock.wait(ctx, &inbox, agent.knowledge.hints.due(), log)
        else {
            return Ok(());
        };
        // Observe once (or decide on the last observation).
        let Some(snap) = agent.observe(ctx, scope, last.take(), &mut clock, log) else {
            continue;
        };
        // Decide, execute, learn what became of it.
        let fresh = scope.is_some();
        let actions = agent.decide(&snap, fresh, messages, log);
        let done = execute::execute(ctx, &snap, &agent.wire, actions, log);
        let follow = agent.settle(&snap, done, log);
        execute::execute(ctx, &snap, &agent.wire, follow, log);
        // Save.
        agent.save_after(ctx, &snap, fresh, log);
        last = Some(snap);
    }
    Ok(())
}

/// `uninstall` removed the interface: nothing left to look after (the
/// agent's files are removed, and it stops).
fn still_installed(ctx: &Context, log: &Log) -> bool {
    if ctx.paths.conf().exists() {
        return true;
    }
    log.line(&format!(
        "{} is no longer installed (no {}): stopping",
        ctx.paths.iface,
        ctx.paths.conf().display()
    ));
    state::remove_files(&ctx.paths);
    false
}

/// When the next step is due, and what the loop last saw of the config.
struct Clock {
    interval: Duration,
    full_due: Instant,
    config_seen: Option<(SystemTime, u64)>,
}

impl Clock {
    fn new(ctx: &Context, interval: Duration) -> Clock {
        Clock {
            interval,
            full_due: Instant::now(),
            config_seen: config_stamp(ctx),
        }
    }

    /// Wait for the next step: its scope (`None`: decide on the last
    /// snapshot) and the messages that came meanwhile; `None` on SIGTERM
    /// or SIGINT. `hints_due`: when an introduction wants a look.
    fn wait(
        &mut self,
        ctx: &Context,
        inbox: &mpsc::Receiver<Event>,
        hints_due: Option<Instant>,
        log: &Log,
    ) -> Option<(Option<Scope>, Vec<link::Incoming>)> {
        let mut messages = Vec::new();
        loop {
            let now = Instant::now();
            if now >= self.full_due {
                return Some((Some(Scope::Full), messages));
            }
            // A peer a human added or removed is announced to the mesh at
            // once, not at the next pass (one stat every CONFIG_LOOK).
            if config_stamp(ctx) != self.config_seen || hints_due.is_some_and(|due| due <= now) {
                return Some((Some(Scope::Quick), messages));
            }
            if !messages.is_empty() {
                let scope = needs_look(&messages).then_some(Scope::Quick);
                return Some((scope, messages));
            }
            let until = hints_due
                .map_or(self.full_due, |due| due.min(self.full_due))
                .min(now + CONFIG_LOOK);
            let first = match inbox.recv_timeout(until.saturating_duration_since(now)) {
                Ok(event) => event,
                // The loop holds a sender itself: only the timeout is left.
                Err(_) => continue,
            };
            // Whatever else came meanwhile goes into the same step.
            for event in std::iter::once(first).chain(inbox.try_iter()) {
                match event {
                    Event::Message(incoming) => messages.push(incoming),
                    Event::Signal(signal) => {
                        log.line(&format!("stopping on {}", signal_name(signal)));
                        return None;
                    }
                }
            }
        }
    }

    /// A fresh observation is about to be made: the next full one is due
    /// an interval later, and config changes count from now.
    fn observed(&mut self, ctx: &Context, scope: Scope) {
        if scope == Scope::Full {
            self.full_due = Instant::now() + self.interval;
        }
        self.config_seen = config_stamp(ctx);
    }
}

/// Whether messages need a fresh look at the config: a record may be
/// applied to it; a `hello` or a `seen` only change what the agent knows.
fn needs_look(messages: &[link::Incoming]) -> bool {
    messages
        .iter()
        .any(|m| matches!(m.message, protocol::Message::Record(_)))
}

/// What the agent carries from step to step, and its socket.
struct Agent {
    interval: Duration,
    auto_relay: Option<relay::Settings>,
    knowledge: Knowledge,
    membership: membership::Membership,
    greetings: greet::Greetings,
    wire: execute::Wire,
    /// The last problem said (a problem is logged when it appears or
    /// changes, not every pass).
    last_problem: Option<String>,
}

impl Agent {
    fn new(
        ctx: &Context,
        interval: Duration,
        auto_relay: Option<relay::Settings>,
        wire: execute::Wire,
        log: &Log,
    ) -> Agent {
        let knowledge = match state::load(&ctx.paths) {
            Ok(state) => state.map(|s| Knowledge::from_state(&s)).unwrap_or_default(),
            Err(e) => {
                log.line(&format!("the agent state is not read: {e}; it is rebuilt"));
                Knowledge::default()
            }
        };
        Agent {
            interval,
            auto_relay,
            knowledge,
            membership: membership::Membership::load(&ctx.paths, log),
            greetings: greet::Greetings::default(),
            wire,
            last_problem: None,
        }
    }

    fn say_started(&self, ctx: &Context, log: &Log) {
        log.line(&format!(
            "started for {} (pid {}), a pass every {} s",
            ctx.paths.iface,
            std::process::id(),
            self.interval.as_secs()
        ));
        if let Some(settings) = self.auto_relay {
            log.line(&format!(
                "auto-relay on: a peer without a direct handshake for {} s goes through a relay-enabled peer",
                settings.after.as_secs()
            ));
        }
    }

    /// The step's snapshot: the last one at a later time (`scope` `None`),
    /// else a fresh observation; `None` when it cannot be made (said, and
    /// a full pass still saves the state).
    fn observe(
        &mut self,
        ctx: &Context,
        scope: Option<Scope>,
        last: Option<Snapshot>,
        clock: &mut Clock,
        log: &Log,
    ) -> Option<Snapshot> {
        if let (None, Some(mut snap)) = (scope, last) {
            snap.at_now();
            return Some(snap);
        }
        let scope = scope.unwrap_or(Scope::Quick);
        clock.observed(ctx, scope);
        match Snapshot::observe(ctx, scope) {
            Ok(snap) => {
                if self.wire.ensure(ctx, &snap, log) == Some(true) {
                    self.greetings.reset();
                }
                Some(snap)
            }
            Err(e) => {
                self.problem(Some(e.to_string()), log);
                if scope == Scope::Full {
                    self.save(ctx, log);
                }
                None
            }
        }
    }

    /// After a step: the membership book after a fresh look, the state
    /// file after a full pass.
    fn save_after(&mut self, ctx: &Context, snap: &Snapshot, fresh: bool, log: &Log) {
        if fresh && let Err(e) = self.membership.save(&ctx.paths) {
            log.line(&format!("cannot save the membership book: {e}"));
        }
        if fresh && snap.scope == Scope::Full {
            self.save(ctx, log);
            // The agent runs for months: freed memory goes back to the
            // system after each full pass (BENCHMARKS.md, "Membership soak").
            crate::sys::malloc_give_back();
        }
    }

    fn problem(&mut self, problem: Option<String>, log: &Log) {
        if problem != self.last_problem {
            match &problem {
                Some(p) => log.line(&format!("pass failed: {p}")),
                None if self.last_problem.is_some() => log.line("passes work again"),
                None => {}
            }
            self.last_problem = problem;
        }
    }

    fn heard(&self, key: &PublicKey, now: u64) -> bool {
        self.knowledge.agent_heard(key, now, HEARD_WITHIN).is_some()
    }

    /// This node's `hello` to `peer`: whether it relays, and the digest of
    /// its membership book for that peer.
    fn hello(&self, snap: &Snapshot, peer: &PublicKey) -> protocol::Message {
        self.hello_with(snap, self.membership.hellos().as_ref(), peer)
    }

    /// The same, with the book's digests computed once for many peers.
    fn hello_with(
        &self,
        snap: &Snapshot,
        hellos: Option<&membership::Hellos>,
        peer: &PublicKey,
    ) -> protocol::Message {
        protocol::Message::Hello {
            relay: snap.relays(),
            sk: None,
            members: hellos.map(|h| h.to(peer)),
        }
    }

    /// A `hello` to each of `to`, each with its own digest.
    fn hellos_to(&self, snap: &Snapshot, to: Vec<PublicKey>) -> Vec<Action> {
        let hellos = self.membership.hellos();
        to.into_iter()
            .map(|peer| Action::Send {
                to: vec![peer],
                message: self.hello_with(snap, hellos.as_ref(), &peer),
            })
            .collect()
    }

    /// Every feature's decisions on one snapshot, in order: this host's
    /// addresses, DNS endpoints, greetings, introductions, membership,
    /// auto-relay; `messages` (from peers' agents since the last step)
    /// come first. `fresh`: the snapshot was just observed (not the last
    /// one, reused for messages that need no fresh look).
    fn decide(
        &mut self,
        snap: &Snapshot,
        fresh: bool,
        messages: Vec<link::Incoming>,
        log: &Log,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for incoming in messages {
            actions.extend(self.receive(snap, incoming, log));
        }
        if !fresh {
            return actions;
        }
        let full = snap.scope == Scope::Full;
        let mut problem = None;
        if full {
            self.knowledge
                .agents
                .retain(|key, _| snap.entries.iter().any(|e| e.public_key == *key));
            actions.extend(self.follow_own_addresses(snap));
            let watched = endpoints::watched(&snap.entries);
            self.knowledge
                .learned
                .retain(|key, _| watched.iter().any(|(k, ..)| k == key));
            if snap.live.is_none() && !watched.is_empty() {
                problem = Some(format!(
                    "interface {} is down: waiting for it",
                    snap.node.paths.iface
                ));
            }
            let hints = &self.knowledge.hints;
            let trying: Vec<PublicKey> = watched
                .iter()
                .map(|(k, ..)| *k)
                .filter(|k| hints.trying(k))
                .collect();
            actions.extend(endpoints::decide_pass(
                snap,
                &mut self.knowledge.memory,
                &mut self.knowledge.unresolved,
                |k| trying.contains(k),
            ));
        }
        // Greetings.
        let to = if full {
            let heard: Vec<PublicKey> = snap
                .agents
                .keys()
                .filter(|k| self.heard(k, snap.unix))
                .copied()
                .collect();
            self.greetings.pass(snap, |k| heard.contains(k))
        } else {
            self.greetings.newcomers(snap)
        };
        actions.extend(self.hellos_to(snap, to));
        // Introductions, for the peers that are live (a tick that is due
        // runs also with the interface down, so it is not due again at once).
        let views = hints::views(snap, |k| self.heard(k, snap.unix));
        let decided = if full && snap.live.is_some() {
            self.knowledge
                .hints
                .pass(&views, snap.now, snap.mono, self.interval, snap.unix)
        } else if self.knowledge.hints.due().is_some_and(|d| d <= snap.mono) {
            self.knowledge
                .hints
                .tick(&views, snap.now, snap.mono, self.interval)
        } else {
            Vec::new()
        };
        actions.extend(hints::to_actions(snap, self.interval, decided));
        // Membership: what the config changed, the accepted events to apply.
        match self.membership.pass(snap, log) {
            Ok(decided) => actions.extend(decided),
            Err(e) => problem = problem.or(Some(e.to_string())),
        }
        // Auto-relay.
        if full
            && let Some(settings) = self.auto_relay
            && snap.live.is_some()
        {
            let relays = self.relay_enabled(snap.unix);
            actions.extend(relay::decide_pass(
                snap,
                &mut self.knowledge.relay,
                relays,
                settings,
            ));
        }
        if full {
            self.problem(problem, log);
        }
        actions
    }

    /// A message from a peer's agent, as input to this step's decisions.
    fn receive(&mut self, snap: &Snapshot, incoming: link::Incoming, log: &Log) -> Vec<Action> {
        let name = snap.name(&incoming.from);
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
                    snap.unix_ms,
                    log,
                );
                let heard = state::Heard {
                    at: snap.unix,
                    relay,
                };
                let before = self.knowledge.agents.insert(incoming.from, heard);
                let mut actions = Vec::new();
                if before.is_none_or(|b| b.relay != relay) {
                    actions.push(Action::Log(format!(
                        "peer {name}: its agent is heard{}",
                        if relay { " (it relays)" } else { "" }
                    )));
                }
                // This node's `hello` goes back at once (never more than
                // one per `hello` received): see `greet::answer`.
                if greet::answer(before, snap.unix, HEARD_WITHIN, !outgoing.is_empty()) {
                    actions.push(Action::Send {
                        to: vec![incoming.from],
                        message: self.hello(snap, &incoming.from),
                    });
                }
                actions.extend(self.membership.sends(outgoing));
                actions
            }
            protocol::Message::Record(ref wire) => {
                let outgoing = self.membership.on_record(snap, incoming.from, wire, log);
                self.membership.sends(outgoing)
            }
            // Answered by the receive thread; never delivered.
            protocol::Message::Where { .. } => Vec::new(),
            protocol::Message::Seen {
                key,
                endpoint,
                handshake_secs,
            } => {
                self.knowledge
                    .hints
                    .seen(incoming.from, key.0, endpoint, handshake_secs);
                Vec::new()
            }
        }
    }

    /// When this host's addresses changed since the last pass, send every
    /// peer a packet through the tunnel so that it roams to the new source.
    fn follow_own_addresses(&mut self, snap: &Snapshot) -> Vec<Action> {
        let Some(now) = snap.addresses.clone() else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        if roam::changed(self.knowledge.addresses.as_deref(), &now)
            && let Some(live) = &snap.live
        {
            let targets = roam::peer_targets(live);
            let shown: Vec<String> = now.iter().map(ToString::to_string).collect();
            actions.push(Action::Log(format!(
                "this host's addresses changed (now {}): sent a packet through the tunnel to {} of {} peers so they learn the new source",
                if shown.is_empty() { "none".into() } else { shown.join(", ") },
                targets.len(),
                targets.len()
            )));
            actions.push(Action::Poke(targets));
        }
        self.knowledge.addresses = Some(now);
        actions
    }

    /// The peers whose agent said `relay: true` in a `hello` heard within
    /// [`HEARD_WITHIN`].
    fn relay_enabled(&self, now: u64) -> BTreeSet<PublicKey> {
        self.knowledge
            .agents
            .keys()
            .filter(|k| {
                self.knowledge
                    .agent_heard(k, now, HEARD_WITHIN)
                    .is_some_and(|h| h.relay)
            })
            .copied()
            .collect()
    }

    /// Learn what became of each live change and commit: log lines, the
    /// features' memories; returns what follows at once (a `hello` to a
    /// peer whose introduced endpoint is being tried).
    fn settle(
        &mut self,
        snap: &Snapshot,
        done: Vec<(Action, Result<Outcome>)>,
        log: &Log,
    ) -> Vec<Action> {
        let mut follow = Vec::new();
        for (action, outcome) in done {
            if let Some(line) = self.membership.settled(&action, &outcome) {
                log.line(&line);
            }
            if let Some(settings) = self.auto_relay
                && let Some(Some(line)) =
                    relay::settled(snap, &mut self.knowledge.relay, settings, &action, &outcome)
            {
                log.line(&line);
            }
            match (&action, &outcome) {
                (Action::Live(Live::Endpoint(refresh)), outcome) => {
                    let name = snap.name(&refresh.public_key);
                    match outcome {
                        Ok(Outcome::Done { .. }) => {
                            self.knowledge.learn(refresh, snap.unix);
                            log.line(&endpoints::describe(&name, refresh));
                        }
                        Ok(Outcome::Stale) => log.line(&format!(
                            "peer {name}: changed in the config since the pass began: left as it is"
                        )),
                        Err(e) => log.line(&format!(
                            "peer {name}: cannot set endpoint {}: {e}",
                            refresh.address
                        )),
                    }
                }
                (Action::Live(Live::Hint { peer, offer }), outcome) => {
                    let name = snap.name(peer);
                    match outcome {
                        Ok(Outcome::Done { .. }) => {
                            // A packet for the peer makes WireGuard start a
                            // handshake through the new endpoint now.
                            follow.push(Action::Send {
                                to: vec![*peer],
                                message: self.hello(snap, peer),
                            });
                            let from = offer.from.map_or("the config".to_string(), |k| {
                                format!("peer {}", snap.name(&k))
                            });
                            let seen = offer
                                .handshake_secs
                                .map(|s| format!(", handshake {s} s ago there"))
                                .unwrap_or_default();
                            follow.push(Action::Log(format!(
                                "peer {name}: trying endpoint {} (from {from}{seen})",
                                offer.endpoint
                            )));
                        }
                        Ok(Outcome::Stale) => self.knowledge.hints.abandon(peer),
                        Err(e) => {
                            self.knowledge.hints.abandon(peer);
                            log.line(&format!(
                                "peer {name}: cannot set endpoint {}: {e}",
                                offer.endpoint
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        follow
    }

    /// Save what the agent knows (`<iface>.agent.json`).
    fn save(&mut self, ctx: &Context, log: &Log) {
        self.knowledge.link = self.wire.status();
        let mut saved =
            self.knowledge
                .to_state(std::process::id(), self.interval, state::unix_now());
        saved.auto_relay = Some(self.knowledge.relay.save(self.auto_relay));
        if let Err(e) = state::save(&ctx.paths, &saved) {
            log.line(&format!("cannot save the state: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("30").unwrap(), Duration::from_secs(30));
        for bad in ["0", "3601", "-1", "x", ""] {
            let err = parse_interval(bad).unwrap_err().to_string();
            assert!(err.contains("from 1 to 3600"), "{err}");
        }
    }

    #[test]
    fn signal_wait_times_out_without_a_signal() {
        // Blocking only changes this test thread's mask.
        let signals = Signals::block().unwrap();
        assert_eq!(signals.0.wait(Duration::from_millis(20)), None);
    }
}
