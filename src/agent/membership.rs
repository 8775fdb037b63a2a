//! The agent's side of membership (docs/membership.md): it keeps the
//! membership book, says what this node's config changed (a peer added by
//! hand becomes an introduction, one removed a removal), takes in the
//! records peers send, and decides which accepted ones to apply to the
//! config (the executor plans and commits them under the config lock).
//!
//! Transport-agnostic: every handler returns the records to send, each
//! with the WireGuard key of the peer it goes to; the executor sends them
//! as `record` messages to that peer's agent.
//!
//! The book is kept in `<iface>.membership.json` (0600), so a restarted
//! agent loses nothing: pins, events (a replay of an old record stays
//! refused) and the peers the config had.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::action::{Action, Commit, Outcome};
use super::log::Log;
use super::snapshot::Snapshot;
use crate::config::document::Document;
use crate::config::node::{Paths, peers};
use crate::error::Result;
use crate::membership::book::{Book, Member, Offer, Pin};
use crate::membership::record::{Change, Record, SignKey, SigningIdentity, WireRecord};
use crate::plan::Own;
use crate::plan::membership::{Introduced, Introduction, Policy, introduce, is_introduced};
use crate::status::MembershipView;
use crate::types::PublicKey;

/// The membership file's format version.
const VERSION: u32 = 1;
/// The least time between two full resends to one peer (a digest that
/// differs triggers one).
const RESEND_EVERY_MS: u64 = 10_000;
/// Records sent to one peer in one resend: within the link's burst.
const RESEND_MAX: usize = 30;
/// Refusals of one peer's records logged a minute; more are only counted.
const REFUSALS_LOGGED_PER_MINUTE: u32 = 20;
/// Copies whose signer is not known yet, kept to try again.
const PENDING_MAX: usize = 512;

/// Who a record goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum To {
    /// One peer.
    Peer(PublicKey),
    /// Every peer of the config at the last look ([`Membership::recipients`])
    /// but these. One entry per record, not one per peer: a pass that
    /// announces every peer of a 100-peer config to every other would
    /// otherwise hold 100 x 99 copies at once.
    AllBut(Vec<PublicKey>),
}

/// A record to send, and the peers it goes to.
pub type Outgoing = (To, WireRecord);

pub fn file_name(iface: &crate::types::InterfaceName) -> String {
    format!("{iface}.membership.json")
}

fn path(paths: &Paths) -> PathBuf {
    paths.dir.join(file_name(&paths.iface))
}

/// The content of `<iface>.membership.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    version: u32,
    /// WireGuard key -> signing key, both base64.
    pins: BTreeMap<String, String>,
    events: Vec<WireRecord>,
    present: Vec<String>,
    /// Records taken in, by outcome, since the book was made.
    #[serde(default)]
    counters: BTreeMap<String, u64>,
}

/// What the agent's book holds, read without changing anything.
pub fn observe(paths: &Paths) -> Option<MembershipView> {
    let saved: Saved = serde_json::from_str(&std::fs::read_to_string(path(paths)).ok()?).ok()?;
    let removals = saved
        .events
        .iter()
        .filter(|e| e.op == crate::membership::record::Op::Removal)
        .count();
    Some(MembershipView {
        members: saved.events.len() - removals,
        removals,
        pinned: saved.pins.len(),
        records: saved.counters,
    })
}

/// What a logged refusal was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Said {
    /// A record refused by the book (signature, replay, clock, flood).
    Record,
    /// An introduction the config refused.
    Introduction,
    /// A removal the config refused.
    Removal,
    /// A peer's `hello` with another signing key than the pinned one.
    PinConflict,
    /// A peer's `hello` with a malformed signing key.
    BadHello,
}

/// What the agent knows and does about membership.
#[derive(Default)]
pub struct Membership {
    pub book: Book,
    identity: Option<SigningIdentity>,
    /// Copies whose signer's key is not pinned yet.
    pending: Vec<Record>,
    /// The config's policy and peers at the last look.
    policy: Policy,
    peers: Vec<PublicKey>,
    /// Per peer, when all records were last sent to it, and where the
    /// next resend starts (a book bigger than [`RESEND_MAX`] goes in turns).
    resent: HashMap<PublicKey, (u64, usize)>,
    /// Per sending peer: the minute (Unix ms / 60,000) and the refusals
    /// logged in it.
    log_budget: HashMap<PublicKey, (u64, u32)>,
    /// Refusals already logged, each said once: (the key it is about,
    /// the event's time, what was refused).
    said: HashSet<(PublicKey, u64, Said)>,
    /// Offers by outcome (`status --json`).
    pub counters: BTreeMap<&'static str, u64>,
    /// The counters the saved book had when this agent started.
    saved_counters: BTreeMap<String, u64>,
}

impl Membership {
    /// The saved book; an unreadable or missing file gives an empty one.
    /// Saved copies are checked again against the saved pins.
    pub fn load(paths: &Paths) -> Membership {
        let mut membership = Membership::default();
        let Some(saved) = std::fs::read_to_string(path(paths))
            .ok()
            .and_then(|t| serde_json::from_str::<Saved>(&t).ok())
            .filter(|s| s.version == VERSION)
        else {
            return membership;
        };
        let book = &mut membership.book;
        for (key, sign_key) in &saved.pins {
            if let (Ok(key), Ok(sign_key)) = (key.parse(), sign_key.parse::<SignKey>()) {
                book.pins.insert(key, sign_key);
            }
        }
        for wire in &saved.events {
            if let Ok(record) = wire.to_record()
                && book.pins.get(&record.by).is_some_and(|k| record.verify(k))
            {
                book.events.insert(record.event.subject, record);
            }
        }
        book.present = saved
            .present
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        membership.saved_counters = saved.counters;
        membership
    }

    /// Replace the file (0600, temp file and rename). Not fsynced: a crash
    /// loses at most the last pass, which peers send again.
    pub fn save(&self, paths: &Paths) -> Result<()> {
        let saved = Saved {
            version: VERSION,
            pins: self
                .book
                .pins
                .iter()
                .map(|(k, s)| (k.to_string(), s.to_base64()))
                .collect(),
            events: self
                .book
                .events
                .values()
                .map(WireRecord::from_record)
                .collect(),
            present: self.book.present.iter().map(ToString::to_string).collect(),
            counters: self.all_counters(),
        };
        let text = serde_json::to_string_pretty(&saved).map_err(|e| {
            crate::error::Error::System(format!("cannot write the membership book: {e}"))
        })?;
        crate::store::replace_unlocked(&path(paths), text.as_bytes())
    }

    /// What this node's `hello` carries: its signing key and the digest of
    /// its book (`None` before the first pass read the key).
    pub fn hello(&self) -> (Option<String>, Option<String>) {
        match &self.identity {
            Some(me) => (Some(me.sign_key().to_base64()), Some(self.book.digest())),
            None => (None, None),
        }
    }

    /// The counters of the saved book plus this run's.
    fn all_counters(&self) -> BTreeMap<String, u64> {
        let mut all = self.saved_counters.clone();
        for (what, n) in &self.counters {
            *all.entry((*what).to_string()).or_default() += n;
        }
        all
    }

    fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_default() += 1;
    }

    /// A peer's `hello`: pin its signing key (it came through the tunnel),
    /// and when its digest differs from this node's, send it every event
    /// (at most every [`RESEND_EVERY_MS`]).
    pub fn on_hello(
        &mut self,
        from: PublicKey,
        sign_key: Option<&str>,
        digest: Option<&str>,
        now: u64,
        log: &Log,
    ) -> Vec<Outgoing> {
        if let Some(text) = sign_key {
            match text.parse::<SignKey>() {
                Ok(key) => match self.book.pin(from, key) {
                    Pin::New => {
                        self.count("pinned");
                        self.retry_pending(now);
                    }
                    Pin::Same => {}
                    Pin::Conflict(pinned) => {
                        self.count("key_changed");
                        if self.said.insert((from, 0, Said::PinConflict)) {
                            log.line(&format!(
                                "membership: peer {from} says its signing key is {key}, but {pinned} is pinned for it: refused (its records stay unverifiable)"
                            ));
                        }
                    }
                },
                Err(e) => {
                    self.count("malformed");
                    if self.said.insert((from, 0, Said::BadHello)) {
                        log.line(&format!("membership: peer {from}'s hello: {e}"));
                    }
                }
            }
        }
        let Some(me) = &self.identity else {
            return Vec::new();
        };
        if digest.is_none_or(|d| d == self.book.digest()) {
            return Vec::new();
        }
        let (last, start) = self.resent.get(&from).copied().unwrap_or((0, 0));
        if last != 0 && now.saturating_sub(last) < RESEND_EVERY_MS {
            return Vec::new();
        }
        let all = self.book.vouch_all(me);
        let start = if start >= all.len() { 0 } else { start };
        let sent: Vec<Outgoing> = all
            .iter()
            .cycle()
            .skip(start)
            .take(all.len().min(RESEND_MAX))
            .map(|r| (To::Peer(from), WireRecord::from_record(r)))
            .collect();
        self.resent.insert(from, (now, start + sent.len()));
        sent
    }

    /// A `record` from peer `from`. A new event is kept and forwarded as it
    /// came (its signature lets every member check it, whoever relays it)
    /// to every other peer; the next decision ([`Membership::apply`])
    /// applies it when the policy accepts its signer.
    pub fn on_record(
        &mut self,
        from: PublicKey,
        wire: &WireRecord,
        now: u64,
        log: &Log,
    ) -> Vec<Outgoing> {
        let record = match wire.to_record() {
            Ok(record) => record,
            Err(e) => {
                self.count("malformed");
                self.say(
                    from,
                    now,
                    log,
                    &format!("membership: record from peer {from} refused: {e}"),
                );
                return Vec::new();
            }
        };
        let outcome = self.offer(record.clone(), from, now, log);
        if outcome != Offer::New && outcome != Offer::Revouched {
            return Vec::new();
        }
        if outcome == Offer::Revouched {
            return Vec::new();
        }
        vec![(
            To::AllBut(vec![from, record.by, record.event.subject]),
            wire.clone(),
        )]
    }

    /// The peers `to` names.
    pub fn recipients<'a>(&'a self, to: &'a To) -> impl Iterator<Item = PublicKey> + 'a {
        let (one, all_but) = match to {
            To::Peer(key) => (Some(*key), None),
            To::AllBut(except) => (None, Some(except)),
        };
        one.into_iter().chain(
            all_but
                .into_iter()
                .flat_map(|except| self.peers.iter().filter(|p| !except.contains(p)).copied()),
        )
    }

    /// Log a refusal of what peer `from` sent, at most
    /// [`REFUSALS_LOGGED_PER_MINUTE`] lines per peer a minute (a flood of
    /// bad records is counted, not written to the log line by line).
    fn say(&mut self, from: PublicKey, now: u64, log: &Log, line: &str) {
        let minute = now / 60_000;
        let budget = self.log_budget.entry(from).or_insert((minute, 0));
        if budget.0 != minute {
            *budget = (minute, 0);
        }
        budget.1 += 1;
        match budget.1.cmp(&REFUSALS_LOGGED_PER_MINUTE) {
            std::cmp::Ordering::Less | std::cmp::Ordering::Equal => log.line(line),
            std::cmp::Ordering::Greater if budget.1 == REFUSALS_LOGGED_PER_MINUTE + 1 => {
                log.line(&format!(
                    "membership: more refusals of records from peer {from} this minute: counted, not logged"
                ));
            }
            std::cmp::Ordering::Greater => {}
        }
    }

    /// Offer a copy that peer `from` sent to the book, and say what was
    /// refused.
    fn offer(&mut self, record: Record, from: PublicKey, now: u64, log: &Log) -> Offer {
        let policy = self.policy.clone();
        let by = record.by;
        let subject = record.event.subject;
        let at = record.event.at;
        let outcome = self.book.offer(record.clone(), now, |k| policy.accepts(k));
        self.count(outcome.counter());
        match &outcome {
            Offer::UnknownSigner => {
                if self.pending.len() < PENDING_MAX && !self.pending.contains(&record) {
                    self.pending.push(record);
                }
            }
            Offer::New => self.retry_pending(now),
            other => {
                if let Some(why) = other.refusal()
                    && self.said.insert((subject, at, Said::Record))
                {
                    self.say(
                        from,
                        now,
                        log,
                        &format!(
                            "membership: record about {subject} signed by {by} (from peer {from}) refused: {why}"
                        ),
                    );
                }
            }
        }
        outcome
    }

    /// Offer again the copies whose signer was unknown.
    fn retry_pending(&mut self, now: u64) {
        let policy = self.policy.clone();
        let mut rounds = 0;
        loop {
            let pending = std::mem::take(&mut self.pending);
            let before = pending.len();
            for record in pending {
                match self.book.offer(record.clone(), now, |k| policy.accepts(k)) {
                    Offer::UnknownSigner => self.pending.push(record),
                    outcome => self.count(outcome.counter()),
                }
            }
            rounds += 1;
            // A new pin may make more copies checkable.
            if self.pending.len() == before || self.pending.is_empty() || rounds > 8 {
                break;
            }
        }
    }

    /// One pass: from the config, turn what a human changed into events
    /// (sent to every peer), and decide which accepted events to apply.
    pub fn pass(&mut self, snap: &Snapshot, log: &Log) -> Result<Vec<Action>> {
        let now = snap.unix_ms;
        let Some(private) = snap.node.private_key.as_ref() else {
            return Ok(Vec::new());
        };
        let me = SigningIdentity::derive(private);
        let doc = snap.node.require_conf()?;
        self.policy = Policy::of(doc);
        let members = members(doc)?;
        self.peers = members.iter().map(|m| m.key).collect();
        let mut made = self.book.observe(&me, &members, now);
        made.extend(self.book.complete_keys(&me, now));
        for record in &made {
            log.line(&describe_own(record, doc));
        }
        self.identity = Some(me);
        self.retry_pending(now);
        let outgoing: Vec<Outgoing> = made
            .iter()
            .map(|r| {
                (
                    To::AllBut(vec![r.event.subject]),
                    WireRecord::from_record(r),
                )
            })
            .collect();
        let mut actions = self.sends(outgoing);
        actions.extend(self.apply(snap));
        Ok(actions)
    }

    /// The records to send, as actions: one message per record, to every
    /// peer its [`To`] names.
    pub fn sends(&self, outgoing: Vec<Outgoing>) -> Vec<Action> {
        outgoing
            .into_iter()
            .map(|(to, wire)| Action::Send {
                to: self.recipients(&to).collect(),
                message: super::protocol::Message::Record(Box::new(wire)),
            })
            .collect()
    }

    /// Every accepted event the config does not reflect yet, as a commit
    /// (each its own plan -> commit under the config lock). An event whose
    /// refusal was logged is tried again, but its refusal is not said again.
    pub fn apply(&mut self, snap: &Snapshot) -> Vec<Action> {
        let (Ok(own), Some(doc)) = (Own::of(&snap.node), snap.node.conf.as_ref()) else {
            return Vec::new();
        };
        let policy = Policy::of(doc);
        self.policy = policy.clone();
        if !policy.enabled() {
            return Vec::new();
        }
        let mut records: Vec<Record> = self
            .book
            .events
            .values()
            .filter(|r| r.event.subject != own.public_key && policy.accepts(&r.by))
            .cloned()
            .collect();
        records.sort_by_key(|r| r.event.at);
        let existing = &snap.entries;
        let mut actions = Vec::new();
        for record in records {
            let subject = record.event.subject;
            let present = existing.iter().any(|p| p.public_key == subject);
            let at = record.event.at;
            match &record.event.change {
                Change::Intro(intro) => {
                    let introduction = Introduction {
                        public_key: subject,
                        name: intro.name.clone(),
                        address: intro.address,
                        endpoint: intro.endpoint.clone(),
                        introducer: self.label(&record.event.origin, doc),
                    };
                    match introduce(doc.clone(), &own, &introduction) {
                        Ok(Introduced::Known) => {}
                        Ok(Introduced::Add(..)) => {
                            actions.push(Action::Commit(Commit::Introduce { introduction, at }));
                        }
                        Err(e) => {
                            if self.said.insert((subject, at, Said::Introduction)) {
                                actions.push(Action::Log(format!(
                                    "membership: introduction of {subject} by {} refused: {e}",
                                    introduction.introducer
                                )));
                            }
                        }
                    }
                }
                Change::Removal if !present => {}
                Change::Removal => {
                    if !is_introduced(doc, &subject)
                        && self.said.contains(&(subject, at, Said::Removal))
                    {
                        continue;
                    }
                    actions.push(Action::Commit(Commit::Remove {
                        key: subject,
                        at,
                        by: self.label(&record.event.origin, doc),
                    }));
                }
            }
        }
        actions
    }

    /// The log line of what became of a membership commit (a refusal is
    /// said once per event); `None` for an action that is not membership's.
    pub fn settled(&mut self, action: &Action, outcome: &Result<Outcome>) -> Option<String> {
        let Action::Commit(commit) = action else {
            return None;
        };
        let (subject, at, said, what, by) = match commit {
            Commit::Introduce { introduction, at } => (
                introduction.public_key,
                *at,
                Said::Introduction,
                "introduction",
                introduction.introducer.as_str(),
            ),
            Commit::Remove { key, at, by } => (*key, *at, Said::Removal, "removal", by.as_str()),
            Commit::Relay { .. } | Commit::Direct { .. } => return None,
        };
        let line = match (outcome, commit) {
            (Ok(Outcome::Stale), _) => return None,
            (Ok(Outcome::Done { detail, .. }), Commit::Introduce { introduction, .. }) => format!(
                "added peer {} {subject} at {} (introduced by {}; {detail})",
                introduction.name, introduction.address, introduction.introducer
            ),
            (Ok(Outcome::Done { detail, name }), _) => format!(
                "removed peer {} {subject} (removal by {by}; {detail})",
                name.clone().unwrap_or_else(|| subject.to_string())
            ),
            (Err(e), _) => {
                if !self.said.insert((subject, at, said)) {
                    return None;
                }
                format!("{what} of {subject} by {by} refused: {e}")
            }
        };
        Some(format!("membership: {line}"))
    }

    /// How the `# Source` tag and the log name a member: its name in the
    /// config, else the name an introduction gave it, else its key.
    fn label(&self, key: &PublicKey, doc: &Document) -> String {
        if let Ok(entries) = peers(doc)
            && let Some(name) = entries
                .iter()
                .find(|p| p.public_key == *key)
                .and_then(|p| p.name.as_ref()?.as_peer_name())
        {
            return name.to_string();
        }
        if let Some(intro) = self.book.events.get(key).and_then(|r| r.event.intro()) {
            return intro.name.to_string();
        }
        key.to_string()
    }
}

fn describe_own(record: &Record, doc: &Document) -> String {
    let subject = record.event.subject;
    let name = peers(doc)
        .ok()
        .and_then(|e| e.into_iter().find(|p| p.public_key == subject))
        .map(|p| p.display_name().to_string())
        .unwrap_or_else(|| subject.to_string());
    match &record.event.change {
        Change::Intro(intro) if intro.sign_key.is_some() => {
            format!("membership: introducing peer {name} (with its signing key) to the mesh")
        }
        Change::Intro(_) => format!("membership: introducing peer {name} to the mesh"),
        Change::Removal => format!("membership: announcing the removal of peer {name}"),
    }
}

/// The config's peers as the book sees them (relayed peers too, so one
/// that moves behind a relay is not taken for removed).
fn members(doc: &Document) -> Result<Vec<Member>> {
    let entries = peers(doc)?;
    let mut members = Vec::with_capacity(entries.len());
    for entry in &entries {
        let address: Option<IpAddr> = entry
            .allowed_ips
            .iter()
            .find(|n| n.prefix_len() == n.max_prefix_len())
            .map(|n| n.addr());
        members.push(Member {
            key: entry.public_key,
            name: entry.name.as_ref().and_then(|n| n.as_peer_name()),
            address,
            endpoint: entry.endpoint.as_ref().and_then(|e| e.parsed()),
            introduced: is_introduced(doc, &entry.public_key),
        });
        for relayed in &entry.relayed {
            members.push(Member {
                key: relayed.public_key,
                name: None,
                address: None,
                endpoint: None,
                introduced: false,
            });
        }
    }
    Ok(members)
}

/// A mesh of agents in memory: real config dirs (temp dirs, the `none`
/// service, so commits change files only), records and hellos passed
/// between nodes that have each other as peers (as the tunnel would).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::execute;
    use crate::agent::protocol::Message;
    use crate::agent::snapshot::{Scope, Snapshot};
    use crate::commit::commit;
    use crate::context::{Context, Env};
    use crate::store::Change;
    use crate::types::PrivateKey;

    const NOW: u64 = 1_800_000_000_000;

    struct Node {
        name: String,
        ctx: Context,
        key: PublicKey,
        ip: String,
        agent: Membership,
        _dir: tempfile::TempDir,
    }

    fn node(name: &str, ip: &str, accept: bool) -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let paths = Paths::new(dir.path().to_path_buf(), "wg0".parse().unwrap());
        let private = PrivateKey::generate();
        let key = private.public_key();
        let mut change = Change::new();
        paths.write_keys(&mut change, &private);
        change.write("address", format!("{ip}/24\n"));
        let accept_line = if accept {
            "# AcceptIntroductions = true\n"
        } else {
            ""
        };
        change.write(
            "wg0.conf",
            format!(
                "[Interface]\n{accept_line}Address = {ip}/24\nListenPort = 51820\nPrivateKey = {}\n",
                private.expose_base64()
            ),
        );
        crate::store::apply(dir.path(), &change).unwrap();
        let env = Env {
            service: Some("none".into()),
            ..Env::default()
        };
        Node {
            name: name.into(),
            ctx: Context::new(paths, None, false, env).unwrap(),
            key,
            ip: ip.into(),
            agent: Membership::default(),
            _dir: dir,
        }
    }

    fn conf(node: &Node) -> String {
        std::fs::read_to_string(node.ctx.paths.conf()).unwrap()
    }

    fn peer_keys(node: &Node) -> Vec<PublicKey> {
        let doc = Document::parse(&conf(node)).unwrap();
        peers(&doc).unwrap().iter().map(|p| p.public_key).collect()
    }

    /// `add-peer` of `other` on `node`, as a human pastes its line.
    fn paste(node: &Node, other: &Node) {
        let (_lock, mut loaded) = node.ctx.lock_and_load().unwrap();
        let own = Own::of(&loaded).unwrap();
        let doc = loaded.take_conf().unwrap();
        let request = crate::plan::AddPeer {
            name: other.name.parse().unwrap(),
            endpoint: format!("192.0.2.{}:51820", other.ip.rsplit('.').next().unwrap())
                .parse()
                .unwrap(),
            public_key: other.key,
            peer_ip: other.ip.parse().unwrap(),
            extra_allowed_ips: None,
            keepalive: None,
        };
        let (new_doc, deltas, _) = crate::plan::add_peer(doc, &own, &request).unwrap();
        commit(&loaded, &new_doc, &deltas, node.ctx.device().as_ref()).unwrap();
    }

    fn remove(node: &Node, other: &Node) {
        let (_lock, mut loaded) = node.ctx.lock_and_load().unwrap();
        let doc = loaded.take_conf().unwrap();
        let (new_doc, delta, _) =
            crate::plan::remove_peer(doc, &crate::types::PeerSelector::Key(other.key)).unwrap();
        commit(&loaded, &new_doc, &[delta], node.ctx.device().as_ref()).unwrap();
    }

    /// Whether a datagram from `a` reaches `b`'s agent: both must have the
    /// other as a peer (WireGuard, then the link's sender check).
    /// Members m1..mN (10.15.0.i), each with every other's line pasted;
    /// `accepts(i)`: whether mi accepts introductions.
    fn meshed_members(n: u8, accepts: impl Fn(u8) -> bool) -> Vec<Node> {
        let nodes: Vec<Node> = (1..=n)
            .map(|i| node(&format!("m{i}"), &format!("10.15.0.{i}"), accepts(i)))
            .collect();
        for (i, a) in nodes.iter().enumerate() {
            for (j, b) in nodes.iter().enumerate() {
                if i != j {
                    paste(a, b);
                }
            }
        }
        nodes
    }

    fn linked(nodes: &[Node], a: usize, b: usize) -> bool {
        peer_keys(&nodes[a]).contains(&nodes[b].key) && peer_keys(&nodes[b]).contains(&nodes[a].key)
    }

    /// One (peer, record) per datagram, as the loop sends them.
    fn each_peer(agent: &Membership, out: Vec<Outgoing>) -> Vec<(PublicKey, WireRecord)> {
        out.iter()
            .flat_map(|(to, wire)| agent.recipients(to).map(|p| (p, wire.clone())))
            .collect()
    }

    /// One step as the agent's loop runs it: observe, `decide`, carry out
    /// the commits (and settle them); the records to send, one per peer.
    fn step(
        n: &mut Node,
        now: u64,
        decide: impl FnOnce(&mut Membership, &Snapshot) -> Vec<Action>,
    ) -> Vec<(PublicKey, WireRecord)> {
        let mut snap = Snapshot::observe(&n.ctx, Scope::Quick).unwrap();
        snap.unix_ms = now;
        let actions = decide(&mut n.agent, &snap);
        let log = Log::new(false);
        let mut out = Vec::new();
        for action in actions {
            match action {
                Action::Send {
                    to,
                    message: Message::Record(wire),
                } => out.extend(to.into_iter().map(|p| (p, (*wire).clone()))),
                Action::Commit(c) => {
                    let outcome = execute::commit_one(&n.ctx, &c, &HashMap::new());
                    if let Some(line) = n.agent.settled(&Action::Commit(c), &outcome) {
                        log.line(&line);
                    }
                }
                Action::Log(line) => log.line(&line),
                _ => {}
            }
        }
        out
    }

    /// Passes, hellos and records until nothing is sent any more. Returns
    /// the rounds it took.
    fn run(nodes: &mut [Node], now: &mut u64) -> usize {
        let log = Log::new(false);
        for round in 1..50 {
            *now += RESEND_EVERY_MS + 1;
            let mut queue: Vec<(usize, PublicKey, WireRecord)> = Vec::new();
            for (i, n) in nodes.iter_mut().enumerate() {
                let out = step(n, *now, |agent, snap| agent.pass(snap, &log).unwrap());
                for (to, wire) in out {
                    queue.push((i, to, wire));
                }
            }
            // Hellos to every configured peer.
            let mut sent = 0;
            for i in 0..nodes.len() {
                let (sk, digest) = nodes[i].agent.hello();
                for j in 0..nodes.len() {
                    if i == j || !linked(nodes, i, j) {
                        continue;
                    }
                    let from = nodes[i].key;
                    let out =
                        nodes[j]
                            .agent
                            .on_hello(from, sk.as_deref(), digest.as_deref(), *now, &log);
                    let out = each_peer(&nodes[j].agent, out);
                    sent += out.len();
                    queue.extend(out.into_iter().map(|(to, w)| (j, to, w)));
                }
            }
            while let Some((from, to, wire)) = queue.pop() {
                let Some(j) = nodes.iter().position(|n| n.key == to) else {
                    continue;
                };
                if !linked(nodes, from, j) {
                    continue;
                }
                sent += 1;
                let from_key = nodes[from].key;
                let target = &mut nodes[j];
                let out = target.agent.on_record(from_key, &wire, *now, &log);
                let mut out = each_peer(&target.agent, out);
                out.extend(step(target, *now, |agent, snap| agent.apply(snap)));
                queue.extend(out.into_iter().map(|(to, w)| (j, to, w)));
            }
            if sent == 0 {
                return round;
            }
        }
        panic!("the mesh did not settle in 50 rounds");
    }

    fn full_mesh(nodes: &[Node]) -> bool {
        (0..nodes.len()).all(|i| (0..nodes.len()).all(|j| i == j || linked(nodes, i, j)))
    }

    #[test]
    fn a_newcomer_joins_with_one_exchange_and_a_removal_spreads() {
        let mut nodes = meshed_members(4, |_| true);
        let mut now = NOW;
        run(&mut nodes, &mut now);
        assert!(full_mesh(&nodes));
        // The newcomer and one member exchange lines.
        nodes.push(node("newcomer", "10.15.0.50", true));
        paste(&nodes[4], &nodes[0]);
        paste(&nodes[0], &nodes[4]);
        run(&mut nodes, &mut now);
        assert!(full_mesh(&nodes), "{}", conf(&nodes[4]));
        assert!(
            conf(&nodes[2]).contains("# Source = introduced by m1\n"),
            "{}",
            conf(&nodes[2])
        );
        assert!(
            conf(&nodes[4]).contains("# Source = introduced by"),
            "{}",
            conf(&nodes[4])
        );
        // m1 removes the newcomer: every member that was introduced to it
        // removes it too.
        remove(&nodes[0], &nodes[4]);
        run(&mut nodes, &mut now);
        for n in &nodes[..4] {
            assert!(
                !peer_keys(n).contains(&nodes[4].key),
                "{}: {}",
                n.name,
                conf(n)
            );
        }
        // Hand-added peers stay: the newcomer still has m1.
        assert!(peer_keys(&nodes[4]).contains(&nodes[0].key));
    }

    /// `# Trust` lines: only the trusted member's introductions apply.
    #[test]
    fn a_node_that_trusts_one_member_applies_only_its_introductions() {
        let mut nodes = meshed_members(3, |i| i != 3);
        // m3 trusts m1 only.
        {
            let (_lock, mut loaded) = nodes[2].ctx.lock_and_load().unwrap();
            let own = Own::of(&loaded).unwrap();
            let doc = loaded.take_conf().unwrap();
            let selector = crate::types::PeerSelector::Key(nodes[0].key);
            let (trusted, _, _) = crate::plan::membership::trust(&doc, &own, &selector).unwrap();
            commit(
                &loaded,
                &trusted.unwrap(),
                &[],
                nodes[2].ctx.device().as_ref(),
            )
            .unwrap();
        }
        let mut now = NOW;
        run(&mut nodes, &mut now);
        // m2 introduces a newcomer: m1 takes it, m3 does not.
        nodes.push(node("by-m2", "10.15.0.50", true));
        paste(&nodes[3], &nodes[1]);
        paste(&nodes[1], &nodes[3]);
        run(&mut nodes, &mut now);
        assert!(peer_keys(&nodes[0]).contains(&nodes[3].key));
        assert!(
            !peer_keys(&nodes[2]).contains(&nodes[3].key),
            "{}",
            conf(&nodes[2])
        );
        // m1 introduces another: m3 takes it.
        nodes.push(node("by-m1", "10.15.0.51", true));
        paste(&nodes[4], &nodes[0]);
        paste(&nodes[0], &nodes[4]);
        run(&mut nodes, &mut now);
        assert!(
            peer_keys(&nodes[2]).contains(&nodes[4].key),
            "{}",
            conf(&nodes[2])
        );
        assert!(conf(&nodes[2]).contains("# Source = introduced by m1\n"));
    }

    #[test]
    fn a_member_that_was_away_catches_up_and_manual_nodes_change_nothing() {
        let mut nodes = meshed_members(3, |i| i != 3);
        let mut now = NOW;
        run(&mut nodes, &mut now);
        // m2 is away (its agent gets nothing) while the newcomer joins.
        let away = nodes.remove(1);
        nodes.push(node("newcomer", "10.15.0.50", true));
        paste(&nodes[2], &nodes[0]);
        paste(&nodes[0], &nodes[2]);
        run(&mut nodes, &mut now);
        // m3 accepts nothing: it knows of the newcomer, its config is as it was.
        assert!(!peer_keys(&nodes[1]).contains(&nodes[2].key));
        assert!(nodes[1].agent.book.events.contains_key(&nodes[2].key));
        // m2 comes back and catches up from the others.
        nodes.insert(1, away);
        run(&mut nodes, &mut now);
        assert!(
            peer_keys(&nodes[1]).contains(&nodes[3].key),
            "{}",
            conf(&nodes[1])
        );
        // A restarted agent keeps its book.
        let n = &nodes[1];
        n.agent.save(&n.ctx.paths).unwrap();
        let loaded = Membership::load(&n.ctx.paths);
        assert_eq!(loaded.book.events, n.agent.book.events);
        assert_eq!(loaded.book.pins, n.agent.book.pins);
        assert_eq!(loaded.book.present, n.agent.book.present);
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(path(&n.ctx.paths)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_hostile_member_cannot_change_a_peer_or_this_node() {
        let mut nodes = meshed_members(3, |_| true);
        let mut now = NOW;
        run(&mut nodes, &mut now);
        let before = conf(&nodes[0]);
        // m2's signing key, used by a hostile m2.
        let m2_private: PrivateKey = std::fs::read_to_string(nodes[1].ctx.paths.private_key())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let hostile = SigningIdentity::derive(&m2_private);
        let log = Log::new(false);
        let stranger: PublicKey = crate::plan::fixtures::KEY_C.parse().unwrap();
        let forged = |subject: PublicKey, name: &str, ip: &str, removal: bool| {
            let change = if removal {
                crate::membership::record::Change::Removal
            } else {
                crate::membership::record::Change::Intro(crate::membership::record::Intro {
                    name: name.parse().unwrap(),
                    address: ip.parse().unwrap(),
                    endpoint: None,
                    sign_key: None,
                })
            };
            WireRecord::from_record(&hostile.sign(&crate::membership::record::Event {
                subject,
                change,
                origin: hostile.wg_key(),
                at: now + 1,
            }))
        };
        let attacks = [
            // m3 moved to another address, m3's address for a stranger,
            // this node's address, this node removed, m3 (added by hand) removed.
            forged(nodes[2].key, "m3", "10.15.0.33", false),
            forged(stranger, "evil", "10.15.0.3", false),
            forged(stranger, "evil", "10.15.0.1", false),
            forged(stranger, "m3", "10.15.0.77", false),
            forged(nodes[0].key, "m1", "10.15.0.1", true),
            forged(nodes[2].key, "m3", "10.15.0.3", true),
        ];
        let m2 = nodes[1].key;
        for attack in &attacks {
            let target = &mut nodes[0];
            target.agent.on_record(m2, attack, now, &log);
            step(target, now, |agent, snap| agent.apply(snap));
        }
        assert_eq!(conf(&nodes[0]), before);
        // A bad signature and a route claim do not even reach the book.
        let mut bad = forged(stranger, "evil", "10.15.0.9", false);
        bad.at += 1;
        let target = &mut nodes[0];
        target.agent.on_record(m2, &bad, now, &log);
        let mut wide = forged(stranger, "evil", "10.15.0.9", false);
        wide.ip = Some("10.15.0.0/24".into());
        target.agent.on_record(m2, &wide, now, &log);
        assert_eq!(target.agent.counters.get("bad_signature"), Some(&1));
        assert_eq!(target.agent.counters.get("malformed"), Some(&1));
        assert_eq!(conf(&nodes[0]), before);
    }
}
