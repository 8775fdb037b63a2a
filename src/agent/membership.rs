//! The agent's side of membership (docs/membership.md): it keeps the
//! membership book, says what this node's config changed (a peer added by
//! hand becomes an introduction, one removed a removal), takes in the
//! records its peers send, and decides which accepted ones to apply to the
//! config (the executor plans and commits them under the config lock).
//!
//! Who may do what is one rule, `plan::membership::authority`: a copy
//! counts only when signed by the peer that sent it, one of this node's
//! own configured peers, and the rule says whether this node's policy
//! lets that peer introduce or remove. Only what it accepts is kept, and
//! only what is kept is vouched for (signed again by this node and sent
//! on), so trust goes hop by hop and never further than each node allows.
//!
//! Transport-agnostic: every handler returns the records to send, each
//! with the peers it goes to; the executor sends them as `record` messages
//! to those peers' agents.
//!
//! The book is kept in `<iface>.membership.json` (0600), so a restarted
//! agent loses nothing: its own events and the ones it accepted (a replay
//! of an old record stays refused) and the peers the config had. A book
//! that cannot be read is moved aside to `<iface>.membership.json.corrupt`
//! (kept for a human, reported by `doctor`) and a new one is started.

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
use crate::membership::book::{Book, Member, Offer};
use crate::membership::record::{Change, Malformed, Record, SigningIdentity, WireRecord};
use crate::plan::Own;
use crate::plan::membership::{
    Introduced, Introduction, Kind, Policy, Refusal, Standing, authority, introduce, standing,
    with_resolved_endpoints,
};
use crate::status::MembershipView;
pub use crate::status::PeerCounts;
use crate::types::PublicKey;

/// The membership file's format version (2: records signed with the
/// WireGuard key; a book of version 1 is replaced, not read).
const VERSION: u32 = 2;
/// The largest membership file read: [`crate::membership::book::MAX_SUBJECTS`]
/// records of at most 1,000 bytes, with room.
pub const BOOK_CAP: u64 = 16 << 20;
/// The least time between two full resends to one peer (a digest that
/// differs triggers one).
const RESEND_EVERY_MS: u64 = 10_000;
/// Records sent to one peer in one resend: within the link's burst.
const RESEND_MAX: usize = 30;
/// Refusals of one peer's records logged a minute; more are only counted.
const REFUSALS_LOGGED_PER_MINUTE: u32 = 20;
/// Refusals remembered (so each is logged once); past this the memory is
/// emptied and a refusal may be logged again.
const SAID_MAX: usize = 4096;

/// Who a record goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum To {
    /// One peer.
    Peer(PublicKey),
    /// Every direct peer of the config at the last look
    /// ([`Membership::recipients`]) but these. One entry per record, not
    /// one per peer: a pass that announces every peer of a 100-peer config
    /// to every other would otherwise hold 100 x 99 copies at once.
    AllBut(Vec<PublicKey>),
}

/// A record to send, and the peers it goes to.
pub type Outgoing = (To, WireRecord);

pub fn file_name(iface: &crate::types::InterfaceName) -> String {
    format!("{iface}.membership.json")
}

/// Where a book that cannot be read is moved.
pub fn aside_name(iface: &crate::types::InterfaceName) -> String {
    format!("{iface}.membership.json.corrupt")
}

fn path(paths: &Paths) -> PathBuf {
    paths.dir.join(file_name(&paths.iface))
}

/// The content of `<iface>.membership.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    version: u32,
    events: Vec<WireRecord>,
    present: Vec<String>,
    /// Records taken in, by outcome, since the book was made.
    #[serde(default)]
    counters: BTreeMap<String, u64>,
    /// Per direct peer (its key): what it brought.
    #[serde(default)]
    peers: BTreeMap<String, PeerCounts>,
}

/// What the agent's book holds, read without changing anything. A book
/// that is not a regular file of ours is an error (exit 6); one that does
/// not parse shows as none.
pub fn observe(paths: &Paths) -> Result<Option<MembershipView>> {
    let Some(bytes) = crate::store::read_state(&path(paths), BOOK_CAP)? else {
        return Ok(None);
    };
    let Ok(saved) = serde_json::from_slice::<Saved>(&bytes) else {
        return Ok(None);
    };
    let removals = saved
        .events
        .iter()
        .filter(|e| e.op == crate::membership::record::Op::Removal)
        .count();
    Ok(Some(MembershipView {
        members: saved.events.len() - removals,
        removals,
        records: saved.counters,
        peers: saved.peers,
    }))
}

/// The digests a pass's `hello`s carry, one per peer.
pub struct Hellos {
    me: PublicKey,
    digests: crate::membership::book::Digests,
}

impl Hellos {
    /// The digest for `peer`'s `hello`.
    pub fn to(&self, peer: &PublicKey) -> String {
        self.digests.without(&self.me, peer)
    }
}

/// What a logged refusal was about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Said {
    /// A record refused (an introduction, a removal).
    Record,
    RemovalRecord,
    /// An accepted introduction the config refused when applied.
    Introduction,
    /// An accepted removal the config refused when applied.
    Removal,
    /// A peer that speaks the first record format.
    OldFormat,
}

/// What the agent knows and does about membership.
#[derive(Default)]
pub struct Membership {
    pub book: Book,
    identity: Option<SigningIdentity>,
    /// The config's policy and direct peers at the last look.
    policy: Policy,
    peers: Vec<PublicKey>,
    /// Per peer, when all records were last sent to it, and where the
    /// next resend starts (a book bigger than [`RESEND_MAX`] goes in turns).
    resent: HashMap<PublicKey, (u64, usize)>,
    /// Per sending peer: the minute (Unix ms / 60,000) and the refusals
    /// logged in it.
    log_budget: HashMap<PublicKey, (u64, u32)>,
    /// Refusals already logged, each said once (at most [`SAID_MAX`]):
    /// (the key it is about, the event's time, what was refused).
    said: HashSet<(PublicKey, u64, Said)>,
    /// Offers by outcome (`status --json`).
    pub counters: BTreeMap<&'static str, u64>,
    /// Per direct peer: what it brought.
    per_peer: BTreeMap<PublicKey, PeerCounts>,
    /// The counters the saved book had when this agent started.
    saved_counters: BTreeMap<String, u64>,
}

impl Membership {
    /// The saved book. A missing one, or one of the first format, gives an
    /// empty book; one that cannot be read is moved aside (logged) and an
    /// empty book starts. Saved copies are checked again.
    pub fn load(paths: &Paths, log: &Log) -> Membership {
        let mut membership = Membership::default();
        let file = path(paths);
        let bytes = match crate::store::read_state(&file, BOOK_CAP) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return membership,
            Err(e) => {
                membership.move_aside(paths, log, &e.to_string());
                return membership;
            }
        };
        let saved = match serde_json::from_slice::<Saved>(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                membership.move_aside(paths, log, &format!("it does not parse ({e})"));
                return membership;
            }
        };
        if saved.version != VERSION {
            log.line(&format!(
                "membership: the book {} is of version {}, signed with derived keys: replaced by a new one (this node announces its peers again)",
                file.display(),
                saved.version
            ));
            return membership;
        }
        let book = &mut membership.book;
        for wire in &saved.events {
            if let Ok(record) = wire.to_record()
                && record.verify()
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
        membership.per_peer = saved
            .peers
            .into_iter()
            .filter_map(|(k, c)| Some((k.parse().ok()?, c)))
            .collect();
        membership
    }

    /// Move an unreadable book aside (kept for a human; `doctor` reports
    /// it), so the agent starts a new one instead of failing or losing it.
    fn move_aside(&mut self, paths: &Paths, log: &Log, why: &str) {
        let file = path(paths);
        let aside = paths.dir.join(aside_name(&paths.iface));
        match std::fs::rename(&file, &aside) {
            Ok(()) => log.line(&format!(
                "membership: the book {} cannot be read: {why}; moved aside to {}, a new book starts (its peers will be announced again)",
                file.display(),
                aside.display()
            )),
            Err(e) => log.line(&format!(
                "membership: the book {} cannot be read: {why}; and cannot be moved aside to {}: {e}",
                file.display(),
                aside.display()
            )),
        }
    }

    /// Replace the file (0600, temp file and rename). Not fsynced: a crash
    /// loses at most the last pass, which peers send again.
    pub fn save(&self, paths: &Paths) -> Result<()> {
        let saved = Saved {
            version: VERSION,
            events: self
                .book
                .events
                .values()
                .map(WireRecord::from_record)
                .collect(),
            present: self.book.present.iter().map(ToString::to_string).collect(),
            counters: self.all_counters(),
            peers: self
                .per_peer
                .iter()
                .map(|(k, c)| {
                    let mut c = c.clone();
                    c.kept = self.book.share(k);
                    (k.to_string(), c)
                })
                .collect(),
        };
        let text = serde_json::to_string_pretty(&saved).map_err(|e| {
            crate::error::Error::System(format!("cannot write the membership book: {e}"))
        })?;
        crate::store::replace_unlocked(&path(paths), text.as_bytes())
    }

    /// What this node's `hello` to each peer carries: the digest of its
    /// book without the events about this node and that peer (`None`
    /// before the first pass read the key).
    pub fn hellos(&self) -> Option<Hellos> {
        let me = self.identity.as_ref()?;
        Some(Hellos {
            me: me.wg_key(),
            digests: self.book.digests(),
        })
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

    fn remember(&mut self, what: (PublicKey, u64, Said)) -> bool {
        if self.said.len() >= SAID_MAX {
            self.said.clear();
        }
        self.said.insert(what)
    }

    /// A peer's `hello`: when its digest differs from this node's, send it
    /// every kept event, signed by this node (at most every
    /// [`RESEND_EVERY_MS`]). `old_key`: the hello carried a signing key of
    /// the first format (that agent's records are refused).
    pub fn on_hello(
        &mut self,
        from: PublicKey,
        old_key: bool,
        digest: Option<&str>,
        now: u64,
        log: &Log,
    ) -> Vec<Outgoing> {
        if old_key {
            self.count("old_format");
            if self.remember((from, 0, Said::OldFormat)) {
                log.line(&format!(
                    "membership: peer {from} runs an older wgp2p (records signed with a derived key): its records are refused; upgrade it"
                ));
            }
        }
        let Some(me) = &self.identity else {
            return Vec::new();
        };
        let mine = self.book.digests().without(&me.wg_key(), &from);
        if digest.is_none_or(|d| d == mine) {
            return Vec::new();
        }
        let (last, start) = self.resent.get(&from).copied().unwrap_or((0, 0));
        if last != 0 && now.saturating_sub(last) < RESEND_EVERY_MS {
            return Vec::new();
        }
        // This node's own events first: they are the members its admin
        // added, what a newcomer needs before anything else.
        let mut all: Vec<Record> = self
            .book
            .vouch_all(me)
            .into_iter()
            .filter(|r| r.event.subject != from)
            .collect();
        let own: Vec<PublicKey> = self
            .book
            .events
            .values()
            .filter(|r| r.by == me.wg_key())
            .map(|r| r.event.subject)
            .collect();
        all.sort_by_key(|r| !own.contains(&r.event.subject));
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

    /// A `record` from direct peer `from`. An accepted new event is kept
    /// and vouched for: signed by this node and sent to every other peer;
    /// the next step's [`Membership::apply`] applies it.
    pub fn on_record(
        &mut self,
        snap: &Snapshot,
        from: PublicKey,
        wire: &WireRecord,
        log: &Log,
    ) -> Vec<Outgoing> {
        let now = snap.unix_ms;
        self.per_peer.entry(from).or_default().records += 1;
        let record = match wire.to_record() {
            Ok(record) => record,
            Err(e) => {
                let (counter, said) = match e {
                    Malformed::OldFormat(_) => ("old_format", Said::OldFormat),
                    Malformed::Field(_) => ("malformed", Said::Record),
                };
                self.count(counter);
                self.per_peer.entry(from).or_default().refused += 1;
                if said == Said::Record || self.remember((from, 0, Said::OldFormat)) {
                    self.say(
                        from,
                        now,
                        log,
                        &format!("membership: record from peer {from} refused: {e}"),
                    );
                }
                return Vec::new();
            }
        };
        if record.by != from {
            // Every member signs what it sends: a copy signed by another
            // is a relayed one, which carries no authority here.
            self.count("not_sender");
            self.per_peer.entry(from).or_default().refused += 1;
            let subject = record.event.subject;
            if self.remember((subject, record.event.at, Said::Record)) {
                self.say(
                    from,
                    now,
                    log,
                    &format!(
                        "membership: record about {subject} from peer {from} refused: signed by {}, not by the peer that sent it",
                        record.by
                    ),
                );
            }
            return Vec::new();
        }
        let event = record.event.clone();
        let outcome = self.offer(snap, record, from, log);
        if outcome != Offer::New {
            return Vec::new();
        }
        let Some(me) = &self.identity else {
            return Vec::new();
        };
        let vouched = me.sign(&event);
        vec![(
            To::AllBut(vec![from, event.subject]),
            WireRecord::from_record(&vouched),
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

    /// Offer a copy that peer `from` signed and sent to the book, judged
    /// by the authority rule and, for an introduction, by the config's own
    /// rules (an introduction the config refuses is not kept, so it is
    /// never vouched for); say what was refused.
    fn offer(&mut self, snap: &Snapshot, record: Record, from: PublicKey, log: &Log) -> Offer {
        let now = snap.unix_ms;
        let subject = record.event.subject;
        let at = record.event.at;
        let said = if record.event.is_removal() {
            Said::RemovalRecord
        } else {
            Said::Record
        };
        let own = Own::of(&snap.node)
            .ok()
            .map(|own| with_resolved_endpoints(own, &snap.resolved));
        let doc = snap.node.conf.as_ref();
        let mut planned: Option<String> = None;
        let rule = |r: &Record| -> std::result::Result<(), Refusal> {
            let (Some(own), Some(doc)) = (own.as_ref(), doc) else {
                return Err(Refusal::NotAPeer);
            };
            judge(doc, own, r)?;
            if let Some(introduction) = introduction_of(r, doc)
                && let Err(e) = introduce(doc.clone(), own, &introduction)
            {
                planned = Some(e.to_string());
                return Err(Refusal::Conflict);
            }
            Ok(())
        };
        let outcome = self.book.offer(record, now, rule);
        self.count(outcome.counter());
        let counts = self.per_peer.entry(from).or_default();
        match outcome {
            Offer::New => counts.new += 1,
            Offer::Duplicate => {}
            Offer::Flood => {
                counts.flood += 1;
                counts.refused += 1;
            }
            _ => counts.refused += 1,
        }
        // Records about this node itself are normal (each member announces
        // its peers): counted, not logged.
        if let Some(why) = outcome.refusal()
            && outcome != Offer::Refused(Refusal::OwnKey)
            && self.remember((subject, at, said))
        {
            let why = planned.as_deref().unwrap_or(why);
            self.say(
                from,
                now,
                log,
                &format!("membership: record about {subject} from peer {from} refused: {why}"),
            );
        }
        outcome
    }

    /// One pass: read the config, turn what a human changed into events
    /// (sent to every peer), and decide the accepted events to apply.
    pub fn pass(&mut self, snap: &Snapshot, log: &Log) -> Result<Vec<Action>> {
        let now = snap.unix_ms;
        let Some(private) = snap.node.private_key.as_ref() else {
            return Ok(Vec::new());
        };
        let me = SigningIdentity::of(private);
        let doc = snap.node.require_conf()?;
        self.policy = Policy::of(doc);
        let lone = lone_devices(&snap.node.paths);
        let members = members(doc, &lone)?;
        self.peers = snap.entries.iter().map(|p| p.public_key).collect();
        self.book.retain_budgets(&self.peers);
        let direct = &self.peers;
        self.per_peer.retain(|k, _| direct.contains(k));
        self.resent.retain(|k, _| direct.contains(k));
        self.log_budget.retain(|k, _| direct.contains(k));
        let made = self.book.observe(&me, &members, now);
        for record in &made {
            log.line(&describe_own(record, doc));
        }
        self.identity = Some(me);
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

    /// The records to send, as actions (one datagram to each recipient).
    pub fn sends(&self, outgoing: Vec<Outgoing>) -> Vec<Action> {
        outgoing
            .into_iter()
            .map(|(to, wire)| Action::Send {
                to: self.recipients(&to).collect(),
                message: super::protocol::Message::Record(Box::new(wire)),
            })
            .collect()
    }

    /// The accepted events the config does not reflect yet, each as its
    /// own commit (planned again under the lock by the executor), the
    /// authority rule checked again against the config of this snapshot.
    /// A refusal is logged once per event and changes nothing.
    pub fn apply(&mut self, snap: &Snapshot) -> Vec<Action> {
        let (Ok(own), Some(doc)) = (Own::of(&snap.node), snap.node.conf.as_ref()) else {
            return Vec::new();
        };
        let own = with_resolved_endpoints(own, &snap.resolved);
        self.policy = Policy::of(doc);
        let mut records: Vec<Record> = self
            .book
            .events
            .values()
            .filter(|r| r.by != own.public_key && r.event.subject != own.public_key)
            .cloned()
            .collect();
        records.sort_by_key(|r| r.event.at);
        let existing = &snap.entries;
        let mut actions = Vec::new();
        for record in records {
            let subject = record.event.subject;
            let at = record.event.at;
            let present = existing.iter().any(|p| p.public_key == subject);
            // A removal of a key that is not a peer, or an introduction of
            // one that is (its config refusal was said when it was
            // offered): nothing to plan, and no copy of the config made.
            if record.event.is_removal() != present {
                continue;
            }
            if judge(doc, &own, &record).is_err() {
                continue;
            }
            match introduction_of(&record, doc) {
                Some(introduction) => match introduce(doc.clone(), &own, &introduction) {
                    Ok(Introduced::Known) => {}
                    Ok(Introduced::Add(..)) => {
                        actions.push(Action::Commit(Commit::Introduce { introduction, at }));
                    }
                    Err(e) => {
                        if self.remember((subject, at, Said::Introduction)) {
                            actions.push(Action::Log(format!(
                                "membership: introduction of {subject} by {} refused: {e}",
                                introduction.introducer_name
                            )));
                        }
                    }
                },
                None => actions.push(Action::Commit(Commit::Remove {
                    key: subject,
                    at,
                    signer: record.by,
                    by: label(&record.by, doc),
                })),
            }
        }
        actions
    }

    /// What became of a commit this feature asked for: the log line, and
    /// a refusal remembered so it is said once.
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
                introduction.introducer_name.as_str(),
            ),
            Commit::Remove { key, at, by, .. } => {
                (*key, *at, Said::Removal, "removal", by.as_str())
            }
            Commit::Relay { .. } | Commit::Direct { .. } => return None,
        };
        let line = match (outcome, commit) {
            (Ok(Outcome::Stale), _) => return None,
            (Ok(Outcome::Done { detail, .. }), Commit::Introduce { introduction, .. }) => format!(
                "added peer {} {subject} at {} (introduced by {}; {detail})",
                introduction.name, introduction.address, introduction.introducer_name
            ),
            (Ok(Outcome::Done { detail, name }), _) => format!(
                "removed peer {} {subject} (removal by {by}; {detail})",
                name.clone().unwrap_or_else(|| subject.to_string())
            ),
            (Err(e), _) => {
                if !self.remember((subject, at, said)) {
                    return None;
                }
                format!("{what} of {subject} by {by} refused: {e}")
            }
        };
        Some(format!("membership: {line}"))
    }
}

/// The authority rule (`plan::membership::authority`) for `record`
/// against this node's config `doc`.
pub fn judge(doc: &Document, own: &Own, record: &Record) -> std::result::Result<(), Refusal> {
    let policy = Policy::of(doc);
    let is_peer = doc.peer(&record.by).is_some();
    let kind = if record.event.is_removal() {
        Kind::Removal
    } else {
        Kind::Introduction
    };
    let subject = record.event.subject;
    let standing: Standing = standing(doc, &own.public_key, &subject);
    authority(&policy, &record.by, is_peer, kind, &subject, &standing)
}

/// The introduction an accepted intro record asks for: introduced by its
/// signer, one of this node's peers. `None` for a removal.
fn introduction_of(record: &Record, doc: &Document) -> Option<Introduction> {
    let intro = record.event.intro()?;
    Some(Introduction {
        public_key: record.event.subject,
        name: intro.name.clone(),
        address: intro.address,
        endpoint: intro.endpoint.clone(),
        introducer: record.by,
        introducer_name: label(&record.by, doc),
    })
}

/// How the `# Source` tag and the log name a member: its name in the
/// config, else its key.
fn label(key: &PublicKey, doc: &Document) -> String {
    peers(doc)
        .ok()
        .and_then(|entries| {
            entries
                .iter()
                .find(|p| p.public_key == *key)
                .and_then(|p| p.name.as_ref()?.as_peer_name())
                .map(|n| n.to_string())
        })
        .unwrap_or_else(|| key.to_string())
}

fn describe_own(record: &Record, doc: &Document) -> String {
    let subject = record.event.subject;
    let name = peers(doc)
        .ok()
        .and_then(|e| e.into_iter().find(|p| p.public_key == subject))
        .map(|p| p.display_name().to_string())
        .unwrap_or_else(|| subject.to_string());
    match &record.event.change {
        Change::Intro(_) => format!("membership: introducing peer {name} to the mesh"),
        Change::Removal => format!("membership: announcing the removal of peer {name}"),
    }
}

/// The devices provisioned here without `--mesh` (their conf knows this
/// node only): their keys. They are not introduced to the mesh.
fn lone_devices(paths: &Paths) -> HashSet<PublicKey> {
    crate::config::node::provisioned_devices(paths)
        .into_iter()
        .filter(|d| !d.mesh)
        .map(|d| d.key)
        .collect()
}

/// The config's peers as the book sees them (relayed peers too, so one
/// that moves behind a relay is not taken for removed).
fn members(doc: &Document, lone: &HashSet<PublicKey>) -> Result<Vec<Member>> {
    let entries = peers(doc)?;
    let mut members = Vec::with_capacity(entries.len());
    for entry in &entries {
        let address: Option<IpAddr> = entry
            .allowed_ips
            .iter()
            .find(|n| n.prefix_len() == n.max_prefix_len())
            .map(|n| n.addr());
        let introduced = crate::plan::membership::is_introduced(doc, &entry.public_key);
        members.push(Member {
            key: entry.public_key,
            name: entry.name.as_ref().and_then(|n| n.as_peer_name()),
            address,
            endpoint: entry.endpoint.as_ref().and_then(|e| e.parsed()),
            announce: !introduced && !lone.contains(&entry.public_key),
        });
        for relayed in &entry.relayed {
            members.push(Member {
                key: relayed.public_key,
                name: None,
                address: None,
                endpoint: None,
                announce: false,
            });
        }
    }
    Ok(members)
}

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

    /// Passes, hellos and records until nothing is sent any more, or (nodes
    /// whose policies differ keep books that differ, and resend) nothing
    /// changed for 3 rounds. Returns the rounds it took.
    fn run(nodes: &mut [Node], now: &mut u64) -> usize {
        let log = Log::new(false);
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut still = 0;
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
                for j in 0..nodes.len() {
                    if i == j || !linked(nodes, i, j) {
                        continue;
                    }
                    let from = nodes[i].key;
                    let digest = nodes[i].agent.hellos().map(|h| h.to(&nodes[j].key));
                    let out = nodes[j]
                        .agent
                        .on_hello(from, false, digest.as_deref(), *now, &log);
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
                let mut out = step(target, *now, |agent, snap| {
                    let out = agent.on_record(snap, from_key, &wire, &log);
                    agent.sends(out)
                });
                out.extend(step(target, *now, |agent, snap| agent.apply(snap)));
                queue.extend(out.into_iter().map(|(to, w)| (j, to, w)));
            }
            let now_seen: Vec<(String, String)> = nodes
                .iter()
                .map(|n| {
                    let digests = n.agent.book.digests();
                    (conf(n), digests.without(&n.key, &n.key))
                })
                .collect();
            if now_seen == seen {
                still += 1;
            } else {
                still = 0;
                seen = now_seen;
            }
            if sent == 0 || still >= 3 {
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
        // Introduced by m1, or by a member that accepted it from m1 and
        // vouched for it first.
        assert!(
            conf(&nodes[2]).contains("# Source = introduced by m"),
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

    /// m3 trusts m1 only, and m1 is manual. `trust m1` is not "whatever m1
    /// heard": m1 vouches only for what its own policy accepted, so m2's
    /// newcomer reaches neither (trust does not launder); m1's own
    /// newcomer reaches m3, tagged with m1.
    #[test]
    fn trust_goes_no_further_than_the_trusted_members_own_policy() {
        let mut nodes = meshed_members(3, |i| i == 2);
        trust(&nodes[2], &nodes[0]);
        let mut now = NOW;
        run(&mut nodes, &mut now);
        // m2 introduces a newcomer: m1 (manual) does not take it, so m3
        // does not either.
        nodes.push(node("by-m2", "10.15.0.50", true));
        paste(&nodes[3], &nodes[1]);
        paste(&nodes[1], &nodes[3]);
        run(&mut nodes, &mut now);
        assert!(!peer_keys(&nodes[0]).contains(&nodes[3].key));
        assert!(
            !peer_keys(&nodes[2]).contains(&nodes[3].key),
            "{}",
            conf(&nodes[2])
        );
        assert!(!nodes[0].agent.book.events.contains_key(&nodes[3].key));
        // m1 introduces another (pasted on m1 by hand): m3 takes it.
        nodes.push(node("by-m1", "10.15.0.51", true));
        paste(&nodes[4], &nodes[0]);
        paste(&nodes[0], &nodes[4]);
        run(&mut nodes, &mut now);
        assert!(
            peer_keys(&nodes[2]).contains(&nodes[4].key),
            "{}",
            conf(&nodes[2])
        );
        let tag = format!("# Source = introduced by m1 ({})\n", nodes[0].key);
        assert!(conf(&nodes[2]).contains(&tag), "{}", conf(&nodes[2]));
    }

    /// `trust` does not depend on timing (d trusts only a; b
    /// introduces c while d is away): whether d was online or came back
    /// later, d takes c through a, tagged with a, and nothing else.
    #[test]
    fn the_outcome_does_not_depend_on_who_was_online() {
        let outcome = |away: bool| {
            // m1 = a (accepts every peer), m2 = b, m3 = d (trusts m1 only).
            let mut nodes = meshed_members(3, |i| i != 3);
            trust(&nodes[2], &nodes[0]);
            let mut now = NOW;
            run(&mut nodes, &mut now);
            let d = away.then(|| nodes.remove(2));
            nodes.push(node("c", "10.15.0.50", true));
            let c = nodes.len() - 1;
            paste(&nodes[c], &nodes[1]);
            paste(&nodes[1], &nodes[c]);
            run(&mut nodes, &mut now);
            if let Some(d) = d {
                nodes.insert(2, d);
            }
            run(&mut nodes, &mut now);
            let key = nodes[3].key;
            let conf = conf(&nodes[2]);
            let tags: Vec<String> = conf
                .lines()
                .filter(|l| l.starts_with("# Source"))
                .map(|l| l.replace(&nodes[0].key.to_string(), "A"))
                .collect();
            (peer_keys(&nodes[2]).contains(&key), tags)
        };
        let online = outcome(false);
        assert!(online.0);
        assert_eq!(
            online.1,
            vec!["# Source = introduced by m1 (A)".to_string()]
        );
        assert_eq!(outcome(true), online);
    }

    /// m3 trusts m1: a `# Trust` line through the plan, as `wgp2p trust`.
    fn trust(node: &Node, whom: &Node) {
        let (_lock, mut loaded) = node.ctx.lock_and_load().unwrap();
        let own = Own::of(&loaded).unwrap();
        let doc = loaded.take_conf().unwrap();
        let selector = crate::types::PeerSelector::Key(whom.key);
        let (trusted, _, _) = crate::plan::membership::trust(&doc, &own, &selector).unwrap();
        commit(&loaded, &trusted.unwrap(), &[], node.ctx.device().as_ref()).unwrap();
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
        // m3 accepts nothing: its config is as it was, and its book keeps
        // (and so vouches for) nothing it did not accept.
        assert!(!peer_keys(&nodes[1]).contains(&nodes[2].key));
        assert!(!nodes[1].agent.book.events.contains_key(&nodes[2].key));
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
        let loaded = Membership::load(&n.ctx.paths, &Log::new(false));
        assert_eq!(loaded.book.events, n.agent.book.events);
        assert_eq!(loaded.book.present, n.agent.book.present);
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(path(&n.ctx.paths)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// A restarted agent keeps its own events (were it to forget them, a
    /// removal would spread nowhere and the mesh would give the revoked
    /// peer back): m1 restarts, removes the newcomer, every member removes
    /// it, and m1 never takes it back.
    #[test]
    fn a_restarted_agent_keeps_its_own_events_and_its_removal_spreads() {
        let mut nodes = meshed_members(3, |_| true);
        let mut now = NOW;
        run(&mut nodes, &mut now);
        nodes.push(node("newcomer", "10.15.0.50", true));
        paste(&nodes[3], &nodes[0]);
        paste(&nodes[0], &nodes[3]);
        run(&mut nodes, &mut now);
        assert!(full_mesh(&nodes));
        let log = Log::new(false);
        let m1 = &mut nodes[0];
        m1.agent.save(&m1.ctx.paths).unwrap();
        m1.agent = Membership::load(&m1.ctx.paths, &log);
        let own = m1.key;
        assert!(
            m1.agent.book.events.values().any(|r| r.by == own),
            "the restarted book lost this node's own events"
        );
        let newcomer = nodes[3].key;
        remove(&nodes[0], &nodes[3]);
        run(&mut nodes, &mut now);
        run(&mut nodes, &mut now);
        for n in &nodes[..3] {
            assert!(!peer_keys(n).contains(&newcomer), "{}: {}", n.name, conf(n));
        }
    }

    /// A line pasted by hand makes an introduced peer the admin's: another
    /// member's removal no longer takes it.
    #[test]
    fn a_repasted_introduced_peer_is_the_admins() {
        let mut nodes = meshed_members(3, |_| true);
        let mut now = NOW;
        run(&mut nodes, &mut now);
        nodes.push(node("newcomer", "10.15.0.50", true));
        paste(&nodes[3], &nodes[0]);
        paste(&nodes[0], &nodes[3]);
        run(&mut nodes, &mut now);
        assert!(conf(&nodes[1]).contains("# Source = introduced by"));
        paste(&nodes[1], &nodes[3]);
        assert!(!conf(&nodes[1]).contains("# Source = introduced by"));
        remove(&nodes[0], &nodes[3]);
        run(&mut nodes, &mut now);
        assert!(!peer_keys(&nodes[2]).contains(&nodes[3].key));
        assert!(
            peer_keys(&nodes[1]).contains(&nodes[3].key),
            "{}",
            conf(&nodes[1])
        );
    }

    /// A device provisioned without `--mesh` knows one member: it is not
    /// introduced to the others (it would stay stale there for ever); one
    /// provisioned with `--mesh` is.
    #[test]
    fn a_provisioned_device_is_introduced_only_with_mesh() {
        let mut nodes = meshed_members(2, |_| true);
        let mut now = NOW;
        run(&mut nodes, &mut now);
        for (name, ip, mesh) in [
            ("phone", "10.15.0.60", false),
            ("tablet", "10.15.0.61", true),
        ] {
            let device = PrivateKey::generate();
            let mut peers = format!(
                "[Peer]\nPublicKey = {}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 10.15.0.1/32\n",
                nodes[0].key
            );
            if mesh {
                peers.push_str(&format!(
                    "\n[Peer]\nPublicKey = {}\nEndpoint = 192.0.2.2:51820\nAllowedIPs = 10.15.0.2/32\n",
                    nodes[1].key
                ));
            }
            let mut change = Change::new();
            change.write(
                format!("{}/{name}.conf", crate::store::PROVISIONED),
                format!(
                    "[Interface]\nPrivateKey = {}\nAddress = {ip}/24\n\n{peers}",
                    device.expose_base64()
                ),
            );
            crate::store::apply(&nodes[0].ctx.paths.dir, &change).unwrap();
            let (_lock, mut loaded) = nodes[0].ctx.lock_and_load().unwrap();
            let own = Own::of(&loaded).unwrap();
            let doc = loaded.take_conf().unwrap();
            let request = crate::plan::AddPeer {
                name: name.parse().unwrap(),
                endpoint: "192.0.2.99:51820".parse().unwrap(),
                public_key: device.public_key(),
                peer_ip: ip.parse().unwrap(),
                extra_allowed_ips: None,
                keepalive: None,
            };
            let (new_doc, deltas, _) = crate::plan::add_peer(doc, &own, &request).unwrap();
            commit(&loaded, &new_doc, &deltas, nodes[0].ctx.device().as_ref()).unwrap();
        }
        run(&mut nodes, &mut now);
        let m2 = conf(&nodes[1]);
        assert!(!m2.contains("# Name = phone"), "{m2}");
        assert!(m2.contains("# Name = tablet"), "{m2}");
    }

    /// A book that cannot be read is moved aside, kept, and a new one
    /// starts (never replaced silently).
    #[test]
    fn a_corrupt_book_is_moved_aside() {
        let nodes = meshed_members(1, |_| true);
        let paths = &nodes[0].ctx.paths;
        std::fs::write(path(paths), "{ not a book").unwrap();
        let loaded = Membership::load(paths, &Log::new(false));
        assert!(loaded.book.events.is_empty());
        assert!(!path(paths).exists());
        let aside = paths.dir.join(aside_name(&paths.iface));
        assert_eq!(std::fs::read_to_string(aside).unwrap(), "{ not a book");
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
        let hostile = SigningIdentity::of(&m2_private);
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
                })
            };
            WireRecord::from_record(&hostile.sign(&crate::membership::record::Event {
                subject,
                change,
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
            step(&mut nodes[0], now, |agent, snap| {
                let out = agent.on_record(snap, m2, attack, &log);
                let mut actions = agent.sends(out);
                actions.extend(agent.apply(snap));
                actions
            });
        }
        assert_eq!(conf(&nodes[0]), before);
        // A bad signature and a route claim do not even reach the book.
        let mut bad = forged(stranger, "evil", "10.15.0.9", false);
        bad.at += 1;
        let mut wide = forged(stranger, "evil", "10.15.0.9", false);
        wide.ip = Some("10.15.0.0/24".into());
        for wire in [&bad, &wide] {
            step(&mut nodes[0], now, |agent, snap| {
                agent.on_record(snap, m2, wire, &log);
                Vec::new()
            });
        }
        let target = &nodes[0];
        assert_eq!(target.agent.counters.get("bad_signature"), Some(&1));
        assert_eq!(target.agent.counters.get("malformed"), Some(&1));
        assert_eq!(conf(&nodes[0]), before);
    }
}
