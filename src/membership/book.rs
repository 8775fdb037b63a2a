//! The membership book: what this node knows of the mesh's membership.
//! Pure (no clock, no files, no network): the agent feeds it what it
//! hears and what it sees in the config, and asks it what to send and what
//! to change.
//!
//! - **Events**: per subject, the latest event this node made or accepted
//!   (see [`Event::order`]), kept with one verified copy: its own, or the
//!   copy of the peer whose authority it accepted
//!   (`plan::membership::authority`). An event that is not newer than the
//!   kept one is a duplicate or a replay: refused. Nothing else is kept,
//!   so the book holds only what this node's policy accepted, and that is
//!   all it vouches for.
//! - **Present**: the peers this node's config had at the last look, so a
//!   peer that appears by a human's hand becomes an introduction and one
//!   that disappears becomes a removal.
//! - **Budgets**: per direct peer, new events a minute
//!   ([`EVENTS_PER_MINUTE`]) and subjects kept ([`PEER_SHARE`]), so one
//!   member can neither flood this node nor fill the book
//!   ([`MAX_SUBJECTS`]) against the others.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use sha2::{Digest, Sha512};

use super::record::{Change, Event, Intro, Record, SigningIdentity, event_bytes};
use crate::plan::membership::Refusal;
use crate::types::{Endpoint, PeerName, PublicKey};

/// How far ahead of this node's clock an event may be (clock skew).
pub const MAX_FUTURE_MS: u64 = 5 * 60 * 1000;
/// New events one direct peer may bring per minute; more is flooding.
pub const EVENTS_PER_MINUTE: u32 = 60;
/// Subjects the book holds at most (a mesh of this many members).
pub const MAX_SUBJECTS: usize = 4096;
/// Subjects one direct peer's copies may hold in the book: a quarter, so
/// one member can never fill it against the others' newcomers.
pub const PEER_SHARE: usize = MAX_SUBJECTS / 4;

/// What became of an offered copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// A newer event, accepted: kept (to be applied and vouched for).
    New,
    /// The kept event, again (anti-entropy resends it): nothing to do.
    Duplicate,
    BadSignature,
    /// Older than the kept event about the same subject.
    Stale,
    /// Dated more than [`MAX_FUTURE_MS`] ahead of this node's clock.
    FromTheFuture,
    /// The authority rule refused it.
    Refused(Refusal),
    /// The peer brought more than [`EVENTS_PER_MINUTE`] new events.
    Flood,
    /// The peer's copies already hold [`PEER_SHARE`] subjects.
    PeerFull,
    /// The book is full ([`MAX_SUBJECTS`]).
    Full,
}

impl Offer {
    /// The words for a log line, or `None` for the outcomes that are normal.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            Offer::New | Offer::Duplicate => None,
            Offer::BadSignature => Some("bad signature"),
            Offer::Stale => {
                Some("older than the event kept (a replay, or a peer that has not caught up yet)")
            }
            Offer::FromTheFuture => Some("dated in the future"),
            Offer::Refused(refusal) => Some(refusal.why()),
            Offer::Flood => Some("flooding: too many new events from one peer"),
            Offer::PeerFull => Some("the peer's share of the membership book is full"),
            Offer::Full => Some("the membership book is full"),
        }
    }

    /// The counter name for `status --json`.
    pub fn counter(&self) -> &'static str {
        match self {
            Offer::New => "new",
            Offer::Duplicate => "duplicate",
            Offer::BadSignature => "bad_signature",
            Offer::Stale => "stale",
            Offer::FromTheFuture => "from_the_future",
            Offer::Refused(refusal) => refusal.counter(),
            Offer::Flood => "flood",
            Offer::PeerFull => "peer_full",
            Offer::Full => "full",
        }
    }
}

/// A peer of this node's config, as the book needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: PublicKey,
    pub name: Option<PeerName>,
    /// Its first host address (/32 or /128) in AllowedIPs.
    pub address: Option<IpAddr>,
    pub endpoint: Option<Endpoint>,
    /// Whether this node introduces it when it appears: not when this
    /// node's agent added it from an introduction (the accepted copy is
    /// vouched for instead), nor for a device provisioned without
    /// `--mesh` (it knows this node only).
    pub announce: bool,
}

/// Per kept event a hash, and their sum: the digest of a book without
/// the events about some keys is the sum without theirs.
pub struct Digests {
    total: u128,
    hashes: HashMap<PublicKey, u128>,
}

impl Digests {
    /// The digest two peers `a` and `b` compare: of every kept event but
    /// those about `a` and `b` themselves (a node keeps no event about
    /// itself from others, so these differ even between books that agree).
    pub fn without(&self, a: &PublicKey, b: &PublicKey) -> String {
        let mut sum = self.total;
        for key in [a, b] {
            if let Some(h) = self.hashes.get(key) {
                sum = sum.wrapping_sub(*h);
            }
        }
        format!("{:016x}", (sum >> 64) as u64 ^ sum as u64)
    }
}

/// The membership knowledge of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    pub events: BTreeMap<PublicKey, Record>,
    pub present: BTreeSet<PublicKey>,
    /// Per direct peer: the minute (Unix ms / 60,000) and new events in it.
    budget: HashMap<PublicKey, (u64, u32)>,
}

impl Book {
    /// Offer a copy that `from` (a direct peer) sent. `judge` is the
    /// authority rule for its event; `me`: this node's key (its own
    /// events are never replaced by a copy of the same event). `now` is
    /// Unix ms.
    pub fn offer(
        &mut self,
        record: Record,
        now: u64,
        judge: impl FnOnce(&Record) -> Result<(), Refusal>,
    ) -> Offer {
        if !record.verify() {
            return Offer::BadSignature;
        }
        let event = &record.event;
        if event.at > now.saturating_add(MAX_FUTURE_MS) {
            return Offer::FromTheFuture;
        }
        let known = self.events.get(&event.subject);
        if let Some(kept) = known {
            match event.order(&kept.event) {
                Ordering::Less => return Offer::Stale,
                Ordering::Equal => return Offer::Duplicate,
                Ordering::Greater => {}
            }
        }
        if let Err(refusal) = judge(&record) {
            return Offer::Refused(refusal);
        }
        if known.is_none() {
            if self.events.len() >= MAX_SUBJECTS {
                return Offer::Full;
            }
            if self.share(&record.by) >= PEER_SHARE {
                return Offer::PeerFull;
            }
        }
        let minute = now / 60_000;
        let budget = self.budget.entry(record.by).or_insert((minute, 0));
        if budget.0 != minute {
            *budget = (minute, 0);
        }
        if budget.1 >= EVENTS_PER_MINUTE {
            return Offer::Flood;
        }
        budget.1 += 1;
        self.events.insert(record.event.subject, record);
        Offer::New
    }

    /// Subjects whose kept copy `peer` signed.
    pub fn share(&self, peer: &PublicKey) -> usize {
        self.events.values().filter(|r| r.by == *peer).count()
    }

    /// Forget the budgets of keys that are no longer peers.
    pub fn retain_budgets(&mut self, peers: &[PublicKey]) {
        self.budget.retain(|k, _| peers.contains(k));
    }

    /// Keep an event this node made (signed by it).
    fn originate(&mut self, me: &SigningIdentity, event: Event) -> Record {
        let record = me.sign(&event);
        self.events.insert(event.subject, record.clone());
        record
    }

    /// Compare the config's peers with the last look: a peer that appeared
    /// (to be announced) becomes an introduction, one that went a removal.
    /// Returns the new events, to announce. `now` is Unix ms.
    pub fn observe(&mut self, me: &SigningIdentity, peers: &[Member], now: u64) -> Vec<Record> {
        let mut made = Vec::new();
        let current: BTreeSet<PublicKey> = peers.iter().map(|m| m.key).collect();
        for member in peers {
            if self.present.contains(&member.key) || member.key == me.wg_key() {
                continue;
            }
            self.present.insert(member.key);
            if !member.announce {
                continue;
            }
            let (Some(name), Some(address)) = (&member.name, member.address) else {
                continue;
            };
            let intro = Intro {
                name: name.clone(),
                address,
                endpoint: member.endpoint.clone(),
            };
            // Already known as it is: nothing new to say.
            let known = self
                .events
                .get(&member.key)
                .and_then(|r| r.event.intro())
                .is_some_and(|k| k.name == intro.name && k.address == intro.address);
            if known {
                continue;
            }
            let at = self.next_time(&member.key, now);
            made.push(self.originate(
                me,
                Event {
                    subject: member.key,
                    change: Change::Intro(intro),
                    at,
                },
            ));
        }
        let gone: Vec<PublicKey> = self.present.difference(&current).copied().collect();
        for key in gone {
            self.present.remove(&key);
            let kept_intro = self.events.get(&key).is_some_and(|r| !r.event.is_removal());
            if !kept_intro {
                continue;
            }
            let at = self.next_time(&key, now);
            made.push(self.originate(
                me,
                Event {
                    subject: key,
                    change: Change::Removal,
                    at,
                },
            ));
        }
        made
    }

    /// `now`, or just after the kept event when a clock is behind it, so a
    /// new event always supersedes the kept one.
    fn next_time(&self, subject: &PublicKey, now: u64) -> u64 {
        let kept = self.events.get(subject).map_or(0, |r| r.event.at);
        now.max(kept.saturating_add(1))
    }

    /// The digests of the kept events (not of who signed the copies),
    /// ready to leave out the two ends of a conversation.
    pub fn digests(&self) -> Digests {
        let hashes: HashMap<PublicKey, u128> = self
            .events
            .iter()
            .map(|(subject, record)| {
                let hash = Sha512::digest(event_bytes(&record.event));
                let mut first = [0u8; 16];
                first.copy_from_slice(&hash[..16]);
                (*subject, u128::from_be_bytes(first))
            })
            .collect();
        let total = hashes.values().fold(0u128, |a, h| a.wrapping_add(*h));
        Digests { total, hashes }
    }
    /// The copies to send a peer whose digest differs: each kept event,
    /// signed by this node. This node vouches only for what it made or
    /// accepted (nothing else is kept), and a peer applies only copies
    /// signed by its own trusted peers: so trust goes hop by hop.
    pub fn vouch_all(&self, me: &SigningIdentity) -> Vec<Record> {
        self.events
            .values()
            .map(|r| {
                if r.by == me.wg_key() {
                    r.clone()
                } else {
                    me.sign(&r.event)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::record::tests::{OTHER_PRIV, identity, intro_event};
    use crate::plan::fixtures::{KEY_A, KEY_B, KEY_C, OWN_PRIV};
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000_000;
    fn allow(_: &Record) -> Result<(), Refusal> {
        Ok(())
    }

    fn member(key: &str, name: &str, ip: &str) -> Member {
        Member {
            key: key.parse().unwrap(),
            name: Some(name.parse().unwrap()),
            address: Some(ip.parse().unwrap()),
            endpoint: Some("192.0.2.9:51820".parse().unwrap()),
            announce: true,
        }
    }

    fn subject(i: u32) -> String {
        let mut key = [7u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        PublicKey::from_bytes(key).to_string()
    }

    #[test]
    fn hostile_copies_are_refused() {
        let (a, b) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = Book::default();
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", NOW);
        // A copy signed by b that claims to be a's.
        let mut forged = b.sign(&event);
        forged.by = a.wg_key();
        assert_eq!(book.offer(forged, NOW, allow), Offer::BadSignature);
        // The authority rule's word is final.
        assert_eq!(
            book.offer(a.sign(&event), NOW, |_| Err(Refusal::NotTrusted)),
            Offer::Refused(Refusal::NotTrusted)
        );
        assert!(book.events.is_empty());
        assert_eq!(book.offer(a.sign(&event), NOW, allow), Offer::New);
        assert_eq!(book.offer(a.sign(&event), NOW, allow), Offer::Duplicate);
        assert_eq!(book.offer(b.sign(&event), NOW, allow), Offer::Duplicate);
        // A replay of an older event about the same subject.
        let older = intro_event(KEY_A, "voyager", "10.15.0.9", NOW - 1);
        assert_eq!(book.offer(a.sign(&older), NOW, allow), Offer::Stale);
        let future = intro_event(KEY_B, "far", "10.15.0.10", NOW + MAX_FUTURE_MS + 1);
        assert_eq!(
            book.offer(a.sign(&future), NOW, allow),
            Offer::FromTheFuture
        );
        assert_eq!(book.events.len(), 1);
    }

    #[test]
    fn a_removal_wins_over_an_older_introduction_and_loses_to_a_newer() {
        let a = identity(OWN_PRIV);
        let mut book = Book::default();
        let intro = intro_event(KEY_A, "voyager", "10.15.0.9", NOW);
        let removal = Event {
            subject: KEY_A.parse().unwrap(),
            change: Change::Removal,
            at: NOW + 1,
        };
        assert_eq!(book.offer(a.sign(&removal), NOW, allow), Offer::New);
        assert_eq!(book.offer(a.sign(&intro), NOW, allow), Offer::Stale);
        let again = intro_event(KEY_A, "voyager", "10.15.0.9", NOW + 2);
        assert_eq!(book.offer(a.sign(&again), NOW, allow), Offer::New);
        // In the same millisecond, the removal wins.
        let tie = Event {
            at: NOW + 2,
            ..removal
        };
        assert_eq!(book.offer(a.sign(&tie), NOW, allow), Offer::New);
        assert!(book.events[&tie.subject].event.is_removal());
    }

    #[test]
    fn flooding_is_cut_per_peer_per_minute_and_a_peer_fills_only_its_share() {
        let (a, b) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = Book::default();
        let mut outcomes = Vec::new();
        for i in 0..(EVENTS_PER_MINUTE + 5) {
            let event = intro_event(&subject(i), &format!("n{i}"), "10.15.0.9", NOW);
            outcomes.push(book.offer(a.sign(&event), NOW, allow));
        }
        assert_eq!(
            outcomes.iter().filter(|o| **o == Offer::New).count(),
            EVENTS_PER_MINUTE as usize
        );
        assert_eq!(outcomes.last(), Some(&Offer::Flood));
        // Another peer is not held back by a's flood.
        let event = intro_event(KEY_C, "late", "10.15.0.11", NOW);
        assert_eq!(book.offer(b.sign(&event), NOW, allow), Offer::New);
        // Minute after minute, a fills its share and no more.
        let mut minute = 1;
        let mut i = 1000;
        while book.share(&a.wg_key()) < PEER_SHARE {
            for _ in 0..EVENTS_PER_MINUTE {
                let event = intro_event(&subject(i), "n", "10.15.0.9", NOW);
                book.offer(a.sign(&event), NOW + minute * 60_000, allow);
                i += 1;
            }
            minute += 1;
        }
        let event = intro_event(&subject(i), "n", "10.15.0.9", NOW);
        assert_eq!(
            book.offer(a.sign(&event), NOW + minute * 60_000, allow),
            Offer::PeerFull
        );
        assert_eq!(book.share(&a.wg_key()), PEER_SHARE);
        let event = intro_event(KEY_B, "newcomer", "10.15.0.12", NOW);
        assert_eq!(
            book.offer(b.sign(&event), NOW + minute * 60_000, allow),
            Offer::New
        );
    }

    #[test]
    fn hand_added_peers_become_introductions_and_removed_ones_removals() {
        let me = identity(OWN_PRIV);
        let mut book = Book::default();
        let peers = [
            member(KEY_A, "voyager", "10.15.0.9"),
            Member {
                announce: false,
                ..member(KEY_B, "phone", "10.15.0.10")
            },
        ];
        let made = book.observe(&me, &peers, NOW);
        assert_eq!(made.len(), 1, "only the announced peer: {made:?}");
        assert_eq!(made[0].event.subject, peers[0].key);
        assert!(made[0].verify());
        assert_eq!(made[0].by, me.wg_key());
        assert!(book.observe(&me, &peers, NOW + 1).is_empty());
        // Both go: a removal for the one the book has an introduction of.
        let made = book.observe(&me, &[], NOW + 2);
        assert_eq!(made.len(), 1);
        assert!(made[0].event.is_removal());
        assert_eq!(made[0].event.at, NOW + 2);
        // Pasted again later: a new introduction supersedes the removal.
        let made = book.observe(&me, &peers[..1], NOW + 3);
        assert_eq!(made.len(), 1);
        assert!(!made[0].event.is_removal());
    }

    #[test]
    fn a_new_event_supersedes_the_kept_one_even_with_a_slow_clock() {
        let (me, other) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = Book::default();
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", NOW + 1000);
        assert_eq!(book.offer(other.sign(&event), NOW, allow), Offer::New);
        book.present.insert(KEY_A.parse().unwrap());
        let made = book.observe(&me, &[], NOW);
        assert_eq!(made[0].event.at, NOW + 1001);
    }

    #[test]
    fn vouched_copies_are_signed_by_the_voucher() {
        let (a, b) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = Book::default();
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", NOW);
        book.offer(b.sign(&event), NOW, allow);
        let sent = book.vouch_all(&a);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].by, a.wg_key());
        assert_eq!(sent[0].event, event);
        let mut newcomer = Book::default();
        assert_eq!(newcomer.offer(sent[0].clone(), NOW, allow), Offer::New);
        let (x, y) = (a.wg_key(), b.wg_key());
        assert_eq!(
            newcomer.digests().without(&x, &y),
            book.digests().without(&x, &y)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Whatever order copies arrive in (and however often), every book
        /// ends with the same events: the latest about each subject.
        #[test]
        fn books_converge_whatever_the_order(
            script in proptest::collection::vec((0usize..3, 0u64..5, any::<bool>()), 1..20),
            seed in any::<u64>(),
        ) {
            let a = identity(OWN_PRIV);
            let subjects = [KEY_A, KEY_B, KEY_C];
            let records: Vec<Record> = script
                .iter()
                .map(|(s, at, removal)| {
                    let mut event = intro_event(subjects[*s], "m", "10.15.0.9", NOW + at);
                    if *removal {
                        event.change = Change::Removal;
                    }
                    a.sign(&event)
                })
                .collect();
            let mut forward = Book::default();
            for r in &records {
                forward.offer(r.clone(), NOW, allow);
            }
            let mut shuffled = records.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut other = Book::default();
            for r in shuffled.iter().chain(&records) {
                other.offer(r.clone(), NOW, allow);
            }
            let (x, y) = (a.wg_key(), a.wg_key());
            prop_assert_eq!(forward.digests().without(&x, &y), other.digests().without(&x, &y));
            for (subject, kept) in &forward.events {
                let latest = records
                    .iter()
                    .filter(|r| r.event.subject == *subject)
                    .max_by(|x, y| x.event.order(&y.event))
                    .unwrap();
                prop_assert_eq!(&kept.event, &latest.event);
            }
        }
    }
}
