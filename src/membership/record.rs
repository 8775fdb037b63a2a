//! Membership records: a signed introduction ("SUBJECT is a member: this
//! name, this VPN address, this endpoint") or removal ("SUBJECT is no
//! longer a member"), an *event* dated by the member that made it, and a
//! *copy* of it signed by one member (`by`): the member that made it, or a
//! member that accepted it and vouches for it.
//!
//! A copy is signed with the signer's WireGuard private key itself
//! (XEdDSA, Signal's signature scheme for X25519 keys) and verified with
//! its WireGuard public key: every member checks a copy against a key its
//! config already holds. There is no second key and nothing to pin.
//!
//! The signature covers a canonical binary encoding of every field (never
//! the JSON text), so a relayer can neither change a field nor re-encode
//! one without breaking it. The wire form carries its format
//! ([`FORMAT`]); a record of any other format (the first one, signed with
//! a derived ed25519 key, has none) is refused whole, never half-read.

use std::cmp::Ordering;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use xeddsa::xed25519;
use xeddsa::{Sign, Verify};

use crate::types::{Endpoint, PeerName, PrivateKey, PublicKey, quoted};

/// The record format this node makes and accepts (`"f"` on the wire).
pub const FORMAT: u32 = 2;
/// What every signed record starts with (domain separation: a signature
/// over a record can never be a signature over anything else, and the
/// format is part of what is signed).
const RECORD_DOMAIN: &[u8] = b"wgp2p membership record v2\n";

/// A signature: 64 bytes.
pub type Signature = [u8; 64];

/// This node's signer: its WireGuard key pair. The private half is
/// zeroized when this is dropped (the node's key file is read again at
/// each pass).
pub struct SigningIdentity {
    key: xed25519::PrivateKey,
    wg: PublicKey,
}

impl SigningIdentity {
    pub fn of(private: &PrivateKey) -> SigningIdentity {
        SigningIdentity {
            key: xed25519::PrivateKey::from(private.expose_bytes()),
            wg: private.public_key(),
        }
    }

    /// This node's WireGuard public key: what verifies its copies.
    pub fn wg_key(&self) -> PublicKey {
        self.wg
    }

    /// This node's copy of `event`.
    pub fn sign(&self, event: &Event) -> Record {
        let signature: Signature = self
            .key
            .sign(&signed_bytes(&self.wg, event), rand_core::OsRng);
        Record {
            event: event.clone(),
            by: self.wg,
            signature,
        }
    }
}

/// What an introduction says about its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intro {
    pub name: PeerName,
    /// The subject's VPN address: one host, never a network.
    pub address: IpAddr,
    pub endpoint: Option<Endpoint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a handful of events per member: boxing would buy nothing"
)]
pub enum Change {
    Intro(Intro),
    Removal,
}

/// One membership event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The WireGuard key of the member the event is about.
    pub subject: PublicKey,
    pub change: Change,
    /// When, in Unix milliseconds of the clock of the member that made it.
    pub at: u64,
}

impl Event {
    pub fn is_removal(&self) -> bool {
        self.change == Change::Removal
    }

    pub fn intro(&self) -> Option<&Intro> {
        match &self.change {
            Change::Intro(intro) => Some(intro),
            Change::Removal => None,
        }
    }

    /// The order of events about one subject: later time first, then a
    /// removal over an introduction made in the same millisecond, then the
    /// encodings (a total order, so every node keeps the same event).
    pub fn order(&self, other: &Event) -> Ordering {
        self.at
            .cmp(&other.at)
            .then(self.is_removal().cmp(&other.is_removal()))
            .then_with(|| event_bytes(self).cmp(&event_bytes(other)))
    }
}

/// A signed copy of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub event: Event,
    /// The WireGuard key of the member that signed this copy.
    pub by: PublicKey,
    pub signature: Signature,
}

impl Record {
    /// Whether `self.by`'s WireGuard key signed this copy, unchanged.
    pub fn verify(&self) -> bool {
        xed25519::PublicKey(*self.by.as_bytes())
            .verify(&signed_bytes(&self.by, &self.event), &self.signature)
            .is_ok()
    }
}

/// The canonical encoding of an event: fixed-width fields and
/// length-prefixed strings, so no two events share an encoding.
pub fn event_bytes(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(event.subject.as_bytes());
    out.extend_from_slice(&event.at.to_be_bytes());
    match &event.change {
        Change::Removal => out.push(0),
        Change::Intro(intro) => {
            out.push(1);
            let name = intro.name.as_str().as_bytes();
            #[allow(
                clippy::cast_possible_truncation,
                reason = "a PeerName is at most 64 bytes"
            )]
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            match intro.address {
                IpAddr::V4(v4) => {
                    out.push(4);
                    out.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    out.push(6);
                    out.extend_from_slice(&v6.octets());
                }
            }
            let endpoint = intro
                .endpoint
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            #[allow(
                clippy::cast_possible_truncation,
                reason = "an endpoint's text is at most 253 + 8 bytes (a DNS name and a port)"
            )]
            out.extend_from_slice(&(endpoint.len() as u16).to_be_bytes());
            out.extend_from_slice(endpoint.as_bytes());
        }
    }
    out
}

/// What a copy's signature covers: the domain, the signer, the event.
fn signed_bytes(by: &PublicKey, event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(300);
    out.extend_from_slice(RECORD_DOMAIN);
    out.extend_from_slice(by.as_bytes());
    out.extend(event_bytes(event));
    out
}

/// `intro` or `removal` on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Intro,
    Removal,
}

/// A record as it travels (the fields of the protocol's `record` message)
/// and as the agent's membership file keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    /// The record format ([`FORMAT`]); absent (0) in the first format.
    #[serde(default)]
    pub f: u32,
    pub op: Op,
    /// The subject's WireGuard key.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The subject's VPN address (one host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub at: u64,
    pub by: String,
    pub sig: String,
}

/// Why a datagram's record is not a record this node can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Another record format ([`FORMAT`]): refused whole.
    OldFormat(u32),
    /// A field is missing or wrong: one line naming it and what is expected.
    Field(String),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::OldFormat(0) => write!(
                f,
                "a record of the first format (signed with a derived key): expected format {FORMAT} (signed with the WireGuard key); that member runs an older wgp2p"
            ),
            Malformed::OldFormat(n) => {
                write!(f, "a record of format {n}: expected format {FORMAT}")
            }
            Malformed::Field(e) => f.write_str(e),
        }
    }
}

impl From<String> for Malformed {
    fn from(e: String) -> Malformed {
        Malformed::Field(e)
    }
}

impl From<&str> for Malformed {
    fn from(e: &str) -> Malformed {
        Malformed::Field(e.to_string())
    }
}

fn key_field(field: &str, text: &str) -> Result<PublicKey, Malformed> {
    text.parse::<PublicKey>()
        .map_err(|e| Malformed::Field(format!("field {field}: {e}")))
}

/// The subject's VPN address: an address, or one written as a host route
/// (/32, /128); any wider prefix is a route claim, refused. Whether it is
/// inside this node's VPN is the plan's rule (`plan::membership`).
fn host_address(text: &str) -> Result<IpAddr, Malformed> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("field ip {}: expected one VPN address", quoted(text)))?;
    let host_len = if ip.is_ipv4() { "32" } else { "128" };
    if prefix.is_some_and(|p| p != host_len) {
        return Err(format!(
            "field ip {}: a route claim beyond a single host address: expected the member's own address only",
            quoted(text)
        )
        .into());
    }
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Err(format!("field ip {}: expected a unicast address", quoted(text)).into());
    }
    Ok(ip)
}

impl WireRecord {
    pub fn from_record(record: &Record) -> WireRecord {
        let event = &record.event;
        let intro = event.intro();
        WireRecord {
            f: FORMAT,
            op: if intro.is_some() {
                Op::Intro
            } else {
                Op::Removal
            },
            key: event.subject.to_string(),
            name: intro.map(|i| i.name.to_string()),
            ip: intro.map(|i| i.address.to_string()),
            endpoint: intro.and_then(|i| i.endpoint.as_ref().map(ToString::to_string)),
            at: event.at,
            by: record.by.to_string(),
            sig: BASE64.encode(record.signature),
        }
    }

    /// The typed record (its signature not yet checked), or what is wrong.
    pub fn to_record(&self) -> Result<Record, Malformed> {
        if self.f != FORMAT {
            return Err(Malformed::OldFormat(self.f));
        }
        let subject = key_field("key", &self.key)?;
        let by = key_field("by", &self.by)?;
        let signature = BASE64
            .decode(&self.sig)
            .ok()
            .and_then(|b| <Signature>::try_from(b.as_slice()).ok())
            .ok_or("field sig: expected 88 characters of base64 (64 bytes)")?;
        let change = match self.op {
            Op::Removal => {
                if self.name.is_some() || self.ip.is_some() || self.endpoint.is_some() {
                    return Err(
                        "a removal with name, ip or endpoint: expected only key, at, by and sig"
                            .into(),
                    );
                }
                Change::Removal
            }
            Op::Intro => {
                let name = self
                    .name
                    .as_deref()
                    .ok_or("an introduction without a name: expected field name")?
                    .parse::<PeerName>()
                    .map_err(|e| format!("field name: {e}"))?;
                let address = host_address(
                    self.ip
                        .as_deref()
                        .ok_or("an introduction without an address: expected field ip")?,
                )?;
                let endpoint = self
                    .endpoint
                    .as_deref()
                    .map(str::parse::<Endpoint>)
                    .transpose()
                    .map_err(|e| format!("field endpoint: {e}"))?;
                Change::Intro(Intro {
                    name,
                    address,
                    endpoint,
                })
            }
        };
        Ok(Record {
            event: Event {
                subject,
                change,
                at: self.at,
            },
            by,
            signature,
        })
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::plan::fixtures::{KEY_A, KEY_B, OWN_PRIV};
    use proptest::prelude::*;

    /// A second node's private key (any 32 bytes but zero will do).
    pub const OTHER_PRIV: &str = "YGb+ojrRNDuMePufwtIYhXzA//k6wF3R21tEBgKlzlM=";

    pub fn identity(private: &str) -> SigningIdentity {
        SigningIdentity::of(&private.parse().unwrap())
    }

    pub fn intro_event(subject: &str, name: &str, ip: &str, at: u64) -> Event {
        Event {
            subject: subject.parse().unwrap(),
            change: Change::Intro(Intro {
                name: name.parse().unwrap(),
                address: ip.parse().unwrap(),
                endpoint: Some("192.0.2.7:51820".parse().unwrap()),
            }),
            at,
        }
    }

    #[test]
    fn a_copy_verifies_with_its_signers_wireguard_key_only_and_unchanged() {
        let me = identity(OWN_PRIV);
        let other = identity(OTHER_PRIV);
        assert_eq!(
            me.wg_key(),
            OWN_PRIV.parse::<PrivateKey>().unwrap().public_key()
        );
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", 1000);
        let record = me.sign(&event);
        assert!(record.verify());
        let mut claimed = record.clone();
        claimed.by = other.wg_key();
        assert!(!claimed.verify());
        let mut moved = record.clone();
        moved.event.at += 1;
        assert!(!moved.verify());
        let mut subject = record.clone();
        subject.event.subject = KEY_B.parse().unwrap();
        assert!(!subject.verify());
        let mut flipped = record;
        flipped.signature[5] ^= 1;
        assert!(!flipped.verify());
    }

    #[test]
    fn a_record_of_the_first_format_is_refused_whole() {
        // As the first format sent it: no `f`, an `origin` and a signature
        // by a derived key.
        let old = format!(
            r#"{{"op":"intro","key":"{KEY_A}","name":"voyager","ip":"10.15.0.9","origin":"{KEY_B}","at":5,"by":"{KEY_B}","sig":"{}"}}"#,
            "A".repeat(86) + "=="
        );
        let wire: WireRecord = serde_json::from_str(&old).unwrap();
        let err = wire.to_record().unwrap_err();
        assert_eq!(err, Malformed::OldFormat(0));
        assert!(err.to_string().contains("first format"), "{err}");
        let mut later = wire;
        later.f = 3;
        assert_eq!(later.to_record().unwrap_err(), Malformed::OldFormat(3));
    }

    #[test]
    fn malformed_records_are_named() {
        let me = identity(OWN_PRIV);
        let good =
            WireRecord::from_record(&me.sign(&intro_event(KEY_A, "voyager", "10.15.0.9", 5)));
        type Mangle = Box<dyn Fn(&mut WireRecord)>;
        let cases: Vec<(Mangle, &str)> = vec![
            (
                Box::new(|w| w.ip = Some("10.15.0.0/24".into())),
                "route claim",
            ),
            (Box::new(|w| w.ip = Some("0.0.0.0/0".into())), "route claim"),
            (Box::new(|w| w.ip = Some("fd00::/64".into())), "route claim"),
            (Box::new(|w| w.ip = Some("127.0.0.1".into())), "unicast"),
            (Box::new(|w| w.ip = None), "expected field ip"),
            (Box::new(|w| w.name = Some("a b".into())), "field name"),
            (Box::new(|w| w.key = "nope".into()), "field key"),
            (Box::new(|w| w.sig = "AAAA".into()), "field sig"),
            (
                Box::new(|w| w.endpoint = Some("x".into())),
                "field endpoint",
            ),
            (Box::new(|w| w.op = Op::Removal), "a removal with"),
        ];
        for (mangle, expected) in cases {
            let mut wire = good.clone();
            mangle(&mut wire);
            let err = wire.to_record().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        // A host route written with its prefix is the host.
        let mut host = good.clone();
        host.ip = Some("10.15.0.9/32".into());
        assert!(host.to_record().is_ok());
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            proptest::option::of((
                "[a-z][a-z0-9_-]{0,63}",
                any::<u32>(),
                proptest::option::of((1u8..255, 1u16..)),
            )),
        )
            .prop_filter("keys are not zero", |(s, ..)| *s != [0; 32])
            .prop_map(|(s, at, intro)| Event {
                subject: PublicKey::from_bytes(s),
                at,
                change: match intro {
                    None => Change::Removal,
                    Some((name, ip, endpoint)) => Change::Intro(Intro {
                        name: name.parse().unwrap(),
                        address: IpAddr::from(std::net::Ipv4Addr::from(
                            (ip & 0x00ff_ffff) | 0x0a00_0001,
                        )),
                        endpoint: endpoint
                            .map(|(h, p)| format!("198.51.100.{h}:{p}").parse().unwrap()),
                    }),
                },
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every record survives the wire (JSON) unchanged and still
        /// verifies; one datagram holds it.
        #[test]
        fn records_round_trip_through_the_wire(event in arb_event()) {
            let me = identity(OWN_PRIV);
            let record = me.sign(&event);
            let text = serde_json::to_string(&WireRecord::from_record(&record)).unwrap();
            prop_assert!(text.len() < 1000, "{}", text.len());
            let back: WireRecord = serde_json::from_str(&text).unwrap();
            let back = back.to_record().unwrap();
            prop_assert_eq!(&back, &record);
            prop_assert!(back.verify());
        }

        /// Any change of any byte of the signed part breaks the signature.
        #[test]
        fn a_flipped_bit_breaks_the_signature(event in arb_event(), bit in 0usize..8 * 40) {
            let me = identity(OWN_PRIV);
            let record = me.sign(&event);
            let mut bytes = event_bytes(&event);
            let at = (bit / 8) % bytes.len();
            bytes[at] ^= 1 << (bit % 8);
            let signed = [RECORD_DOMAIN, me.wg_key().as_bytes(), &bytes].concat();
            let key = xed25519::PublicKey(*me.wg_key().as_bytes());
            prop_assert!(key.verify(&signed, &record.signature).is_err());
        }

        /// The order is total and antisymmetric.
        #[test]
        fn event_order_is_total(a in arb_event(), b in arb_event()) {
            prop_assert_eq!(a.order(&b), b.order(&a).reverse());
            prop_assert_eq!(a.order(&b) == Ordering::Equal, a == b);
        }
    }

    #[test]
    fn the_longest_record_fits_one_datagram() {
        let me = identity(OWN_PRIV);
        let long_name = "n".repeat(64);
        // A DNS name of 253 characters (labels of at most 63).
        let label = "h".repeat(63);
        let long_host = format!("{label}.{label}.{label}.{}", "h".repeat(61));
        let mut event = intro_event(KEY_A, &long_name, "fd00:1:2:3:4:5:6:7", u64::MAX);
        if let Change::Intro(intro) = &mut event.change {
            intro.endpoint = Some(format!("{long_host}:65535").parse().unwrap());
        }
        let text = serde_json::to_string(&WireRecord::from_record(&me.sign(&event))).unwrap();
        // The protocol's envelope adds `{"v":1,"t":"record",` (about 20 bytes).
        assert!(text.len() + 32 <= 1200, "{}", text.len());
    }
}
