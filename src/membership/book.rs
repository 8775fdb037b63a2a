//! The membership book: what this node knows of the mesh's membership.
//! Pure (no clock, no files, no network): the agent feeds it what it
//! hears and what it sees in the config, and asks it what to send and what
//! to change.
//!
//! - **Pins**: WireGuard key -> signing key. Learnt from a peer's `hello`
//!   (it came through the tunnel, so WireGuard authenticated the sender:
//!   the binding is as strong as the tunnel) or from the `sk` field of a
//!   verified introduction. Trust on first use: a different signing key
//!   for a pinned member is refused, never re-pinned.
//! - **Events**: per subject, the latest event known (see
//!   [`Event::order`]), kept with one verified copy. An event that is not
//!   newer than the kept one is a duplicate or a replay: refused.
//! - **Present**: the peers this node's config had at the last look, so a
//!   peer that appears by a human's hand becomes an introduction and one
//!   that disappears becomes a removal.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use sha2::{Digest, Sha512};

use super::record::{Change, Event, Intro, Record, SignKey, SigningIdentity, event_bytes};
use crate::types::{Endpoint, PeerName, PublicKey};

/// How far ahead of this node's clock an event may be (clock skew).
pub const MAX_FUTURE_MS: u64 = 5 * 60 * 1000;
/// New events one signer may bring per minute; more is flooding.
pub const EVENTS_PER_MINUTE: u32 = 60;
/// Subjects the book holds at most (a mesh of this many members).
pub const MAX_SUBJECTS: usize = 4096;

/// What became of an offered copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// A newer event: kept (and to be forwarded and applied).
    New,
    /// The kept event, again (anti-entropy resends it): nothing to do.
    Duplicate,
    /// The kept event, now vouched for by a signer the policy accepts.
    Revouched,
    /// The signer's signing key is not known yet: try again later.
    UnknownSigner,
    BadSignature,
    /// Older than the kept event about the same subject.
    Stale,
    /// Dated more than [`MAX_FUTURE_MS`] ahead of this node's clock.
    FromTheFuture,
    /// The introduction carries a signing key other than the pinned one.
    KeyChanged,
    /// The signer brought more than [`EVENTS_PER_MINUTE`] new events.
    Flood,
    /// The book is full ([`MAX_SUBJECTS`]).
    Full,
}

impl Offer {
    /// The words for a log line, or `None` for the outcomes that are normal.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            Offer::New | Offer::Duplicate | Offer::Revouched | Offer::UnknownSigner => None,
            Offer::BadSignature => Some("bad signature"),
            Offer::Stale => {
                Some("older than the event kept (a replay, or a peer that has not caught up yet)")
            }
            Offer::FromTheFuture => Some("dated in the future"),
            Offer::KeyChanged => Some("a signing key other than the pinned one"),
            Offer::Flood => Some("flooding: too many new events from one signer"),
            Offer::Full => Some("the membership book is full"),
        }
    }

    /// The counter name for `status --json`.
    pub fn counter(&self) -> &'static str {
        match self {
            Offer::New => "new",
            Offer::Duplicate => "duplicate",
            Offer::Revouched => "revouched",
            Offer::UnknownSigner => "unknown_signer",
            Offer::BadSignature => "bad_signature",
            Offer::Stale => "stale",
            Offer::FromTheFuture => "from_the_future",
            Offer::KeyChanged => "key_changed",
            Offer::Flood => "flood",
            Offer::Full => "full",
        }
    }
}

/// What pinning a signing key did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pin {
    New,
    Same,
    /// A different key is pinned for this member: refused.
    Conflict(SignKey),
}

/// A peer of this node's config, as the book needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub key: PublicKey,
    pub name: Option<PeerName>,
    /// Its first host address (/32 or /128) in AllowedIPs.
    pub address: Option<IpAddr>,
    pub endpoint: Option<Endpoint>,
    /// Added by this node's agent from an introduction.
    pub introduced: bool,
}

/// The membership knowledge of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    pub pins: BTreeMap<PublicKey, SignKey>,
    pub events: BTreeMap<PublicKey, Record>,
    pub present: BTreeSet<PublicKey>,
    /// Per signer: the minute (Unix ms / 60,000) and new events in it.
    budget: HashMap<PublicKey, (u64, u32)>,
}

impl Book {
    /// Pin `key` for `member` (trust on first use).
    pub fn pin(&mut self, member: PublicKey, key: SignKey) -> Pin {
        match self.pins.get(&member) {
            Some(pinned) if *pinned == key => Pin::Same,
            Some(pinned) => Pin::Conflict(*pinned),
            None => {
                self.pins.insert(member, key);
                Pin::New
            }
        }
    }

    /// Offer a copy heard from the network. `accepts` tells whether the
    /// policy accepts a signer (to prefer an accepted copy of the same
    /// event). `now` is Unix ms.
    pub fn offer(
        &mut self,
        record: Record,
        now: u64,
        accepts: impl Fn(&PublicKey) -> bool,
    ) -> Offer {
        let Some(key) = self.pins.get(&record.by) else {
            return Offer::UnknownSigner;
        };
        if !record.verify(key) {
            return Offer::BadSignature;
        }
        let event = &record.event;
        if event.at > now.saturating_add(MAX_FUTURE_MS) {
            return Offer::FromTheFuture;
        }
        if let Some(kept) = self.events.get(&event.subject) {
            match event.order(&kept.event) {
                Ordering::Less => return Offer::Stale,
                Ordering::Equal => {
                    if !accepts(&kept.by) && accepts(&record.by) {
                        self.events.insert(event.subject, record);
                        return Offer::Revouched;
                    }
                    return Offer::Duplicate;
                }
                Ordering::Greater => {}
            }
        } else if self.events.len() >= MAX_SUBJECTS {
            return Offer::Full;
        }
        if let Some(Intro {
            sign_key: Some(carried),
            ..
        }) = event.intro()
            && self.pins.get(&event.subject).is_some_and(|p| p != carried)
        {
            return Offer::KeyChanged;
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
        if let Some(Intro {
            sign_key: Some(carried),
            ..
        }) = event.intro()
        {
            self.pins.entry(event.subject).or_insert(*carried);
        }
        self.events.insert(event.subject, record);
        Offer::New
    }

    /// Keep an event this node made (signed by it).
    fn originate(&mut self, me: &SigningIdentity, event: Event) -> Record {
        let record = me.sign(&event);
        self.events.insert(event.subject, record.clone());
        record
    }

    /// Compare the config's peers with the last look: a peer that appeared
    /// (not by this node's agent) becomes an introduction, one that went a
    /// removal. Returns the new events, to announce. `now` is Unix ms.
    pub fn observe(&mut self, me: &SigningIdentity, peers: &[Member], now: u64) -> Vec<Record> {
        let mut made = Vec::new();
        let current: BTreeSet<PublicKey> = peers.iter().map(|m| m.key).collect();
        for member in peers {
            if self.present.contains(&member.key) || member.key == me.wg_key() {
                continue;
            }
            self.present.insert(member.key);
            if member.introduced {
                continue;
            }
            let (Some(name), Some(address)) = (&member.name, member.address) else {
                continue;
            };
            let intro = Intro {
                name: name.clone(),
                address,
                endpoint: member.endpoint.clone(),
                sign_key: self.pins.get(&member.key).copied(),
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
                    origin: me.wg_key(),
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
                    origin: me.wg_key(),
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

    /// When an introduction this node made lacks its subject's signing key
    /// and the key is pinned now, a new introduction carries it (so a
    /// newcomer can verify the copies that subject signs).
    pub fn complete_keys(&mut self, me: &SigningIdentity, now: u64) -> Vec<Record> {
        let missing: Vec<(PublicKey, Intro)> = self
            .events
            .iter()
            .filter(|(_, r)| r.event.origin == me.wg_key())
            .filter_map(|(subject, r)| {
                let intro = r.event.intro()?;
                let pinned = self.pins.get(subject)?;
                (intro.sign_key.is_none()).then(|| {
                    let mut intro = intro.clone();
                    intro.sign_key = Some(*pinned);
                    (*subject, intro)
                })
            })
            .collect();
        missing
            .into_iter()
            .map(|(subject, intro)| {
                let at = self.next_time(&subject, now);
                self.originate(
                    me,
                    Event {
                        subject,
                        change: Change::Intro(intro),
                        origin: me.wg_key(),
                        at,
                    },
                )
            })
            .collect()
    }

    /// A short digest of the kept events (not of who signed the copies):
    /// two nodes that know the same events have the same digest.
    pub fn digest(&self) -> String {
        let mut hash = Sha512::new();
        for record in self.events.values() {
            let bytes = event_bytes(&record.event);
            hash.update((bytes.len() as u32).to_be_bytes());
            hash.update(bytes);
        }
        let out = hash.finalize();
        out[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The copies to send a peer whose digest differs: each kept event,
    /// signed by this node (the peer has this node's signing key from its
    /// `hello`, so it can check every one without knowing their origins).
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
    const ANY: fn(&PublicKey) -> bool = |_| true;

    fn member(key: &str, name: &str, ip: &str) -> Member {
        Member {
            key: key.parse().unwrap(),
            name: Some(name.parse().unwrap()),
            address: Some(ip.parse().unwrap()),
            endpoint: Some("192.0.2.9:51820".parse().unwrap()),
            introduced: false,
        }
    }

    fn book_knowing(signer: &SigningIdentity) -> Book {
        let mut book = Book::default();
        assert_eq!(book.pin(signer.wg_key(), signer.sign_key()), Pin::New);
        book
    }

    #[test]
    fn a_pinned_key_does_not_change() {
        let (a, b) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = book_knowing(&a);
        assert_eq!(book.pin(a.wg_key(), a.sign_key()), Pin::Same);
        assert_eq!(
            book.pin(a.wg_key(), b.sign_key()),
            Pin::Conflict(a.sign_key())
        );
        assert_eq!(book.pins[&a.wg_key()], a.sign_key());
    }

    #[test]
    fn hostile_copies_are_refused() {
        let (a, b) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = book_knowing(&a);
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", a.wg_key(), NOW);
        // Unknown signer, then a forged copy claiming a's name.
        assert_eq!(book.offer(b.sign(&event), NOW, ANY), Offer::UnknownSigner);
        let mut forged = b.sign(&event);
        forged.by = a.wg_key();
        assert_eq!(book.offer(forged, NOW, ANY), Offer::BadSignature);
        assert_eq!(book.offer(a.sign(&event), NOW, ANY), Offer::New);
        assert_eq!(book.offer(a.sign(&event), NOW, ANY), Offer::Duplicate);
        // A replay of an older event about the same subject.
        let older = intro_event(KEY_A, "voyager", "10.15.0.9", a.wg_key(), NOW - 1);
        assert_eq!(book.offer(a.sign(&older), NOW, ANY), Offer::Stale);
        let future = intro_event(
            KEY_B,
            "far",
            "10.15.0.10",
            a.wg_key(),
            NOW + MAX_FUTURE_MS + 1,
        );
        assert_eq!(book.offer(a.sign(&future), NOW, ANY), Offer::FromTheFuture);
        assert_eq!(book.events.len(), 1);
    }

    #[test]
    fn a_removal_wins_over_an_older_introduction_and_loses_to_a_newer() {
        let a = identity(OWN_PRIV);
        let mut book = book_knowing(&a);
        let intro = intro_event(KEY_A, "voyager", "10.15.0.9", a.wg_key(), NOW);
        let removal = Event {
            subject: KEY_A.parse().unwrap(),
            change: Change::Removal,
            origin: a.wg_key(),
            at: NOW + 1,
        };
        assert_eq!(book.offer(a.sign(&removal), NOW, ANY), Offer::New);
        assert_eq!(book.offer(a.sign(&intro), NOW, ANY), Offer::Stale);
        let again = intro_event(KEY_A, "voyager", "10.15.0.9", a.wg_key(), NOW + 2);
        assert_eq!(book.offer(a.sign(&again), NOW, ANY), Offer::New);
        // In the same millisecond, the removal wins.
        let tie = Event {
            at: NOW + 2,
            ..removal
        };
        assert_eq!(book.offer(a.sign(&tie), NOW, ANY), Offer::New);
        assert!(book.events[&tie.subject].event.is_removal());
    }

    #[test]
    fn an_introduction_cannot_change_a_pinned_signing_key() {
        let (a, b) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = book_knowing(&a);
        let mut event = intro_event(&a.wg_key().to_string(), "a", "10.15.0.9", a.wg_key(), NOW);
        if let Change::Intro(i) = &mut event.change {
            i.sign_key = Some(b.sign_key());
        }
        assert_eq!(book.offer(a.sign(&event), NOW, ANY), Offer::KeyChanged);
        // A verified introduction pins its subject's key.
        let mut event = intro_event(&b.wg_key().to_string(), "b", "10.15.0.10", a.wg_key(), NOW);
        if let Change::Intro(i) = &mut event.change {
            i.sign_key = Some(b.sign_key());
        }
        assert_eq!(book.offer(a.sign(&event), NOW, ANY), Offer::New);
        assert_eq!(book.pins[&b.wg_key()], b.sign_key());
    }

    #[test]
    fn flooding_is_cut_per_signer_per_minute() {
        let a = identity(OWN_PRIV);
        let mut book = book_knowing(&a);
        let mut outcomes = Vec::new();
        for i in 0..(EVENTS_PER_MINUTE + 5) {
            let mut key = [7u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            let event = intro_event(
                &PublicKey::from_bytes(key).to_string(),
                &format!("n{i}"),
                "10.15.0.9",
                a.wg_key(),
                NOW,
            );
            outcomes.push(book.offer(a.sign(&event), NOW, ANY));
        }
        assert_eq!(
            outcomes.iter().filter(|o| **o == Offer::New).count(),
            EVENTS_PER_MINUTE as usize
        );
        assert_eq!(outcomes.last(), Some(&Offer::Flood));
        // The next minute, the signer may speak again.
        let event = intro_event(KEY_C, "late", "10.15.0.11", a.wg_key(), NOW);
        assert_eq!(book.offer(a.sign(&event), NOW + 60_000, ANY), Offer::New);
    }

    #[test]
    fn a_copy_from_an_accepted_signer_replaces_one_from_another() {
        let (a, b) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = book_knowing(&a);
        book.pin(b.wg_key(), b.sign_key());
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", a.wg_key(), NOW);
        let only_b = |k: &PublicKey| *k == b.wg_key();
        assert_eq!(book.offer(a.sign(&event), NOW, only_b), Offer::New);
        assert_eq!(book.offer(b.sign(&event), NOW, only_b), Offer::Revouched);
        assert_eq!(book.events[&event.subject].by, b.wg_key());
        assert_eq!(book.offer(a.sign(&event), NOW, only_b), Offer::Duplicate);
    }

    #[test]
    fn hand_added_peers_become_introductions_and_removed_ones_removals() {
        let me = identity(OWN_PRIV);
        let mut book = Book::default();
        let peers = [member(KEY_A, "voyager", "10.15.0.9"), {
            let mut m = member(KEY_B, "far", "10.15.0.10");
            m.introduced = true;
            m
        }];
        let made = book.observe(&me, &peers, NOW);
        assert_eq!(made.len(), 1, "only the hand-added peer: {made:?}");
        assert_eq!(made[0].event.subject, peers[0].key);
        assert!(made[0].verify(&me.sign_key()));
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
        let mut book = book_knowing(&other);
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", other.wg_key(), NOW + 1000);
        assert_eq!(book.offer(other.sign(&event), NOW, ANY), Offer::New);
        book.present.insert(KEY_A.parse().unwrap());
        let made = book.observe(&me, &[], NOW);
        assert_eq!(made[0].event.at, NOW + 1001);
    }

    #[test]
    fn vouched_copies_verify_with_the_vouchers_key() {
        let (a, b) = (identity(OWN_PRIV), identity(OTHER_PRIV));
        let mut book = book_knowing(&b);
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", b.wg_key(), NOW);
        book.offer(b.sign(&event), NOW, ANY);
        let sent = book.vouch_all(&a);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].by, a.wg_key());
        assert_eq!(sent[0].event, event);
        let mut newcomer = book_knowing(&a);
        assert_eq!(newcomer.offer(sent[0].clone(), NOW, ANY), Offer::New);
        assert_eq!(newcomer.digest(), book.digest());
    }

    proptest! {
        /// Whatever order copies arrive in (and however often), every book
        /// ends with the same events: the latest about each subject.
        #[test]
        fn books_converge_whatever_the_order(
            script in proptest::collection::vec((0usize..3, 0u64..5, any::<bool>()), 1..30),
            seed in any::<u64>(),
        ) {
            let a = identity(OWN_PRIV);
            let subjects = [KEY_A, KEY_B, KEY_C];
            let records: Vec<Record> = script
                .iter()
                .map(|(s, at, removal)| {
                    let mut event = intro_event(subjects[*s], "m", "10.15.0.9", a.wg_key(), NOW + at);
                    if *removal {
                        event.change = Change::Removal;
                    }
                    a.sign(&event)
                })
                .collect();
            let mut forward = book_knowing(&a);
            for r in &records {
                forward.offer(r.clone(), NOW, ANY);
            }
            let mut shuffled = records.clone();
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let mut other = book_knowing(&a);
            for r in shuffled.iter().chain(&records) {
                other.offer(r.clone(), NOW, ANY);
            }
            prop_assert_eq!(forward.digest(), other.digest());
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
