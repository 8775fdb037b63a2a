//! Membership records: a signed introduction ("SUBJECT is a member: this
//! name, this VPN address, this endpoint") or removal ("SUBJECT is no
//! longer a member"), an *event* made by one member (its origin) at one
//! time, and a *copy* of it signed by one member (`by`): the origin, or a
//! member that verified the event and vouches for it.
//!
//! The signature covers a canonical binary encoding of every field (never
//! the JSON text), so a relayer can neither change a field nor re-encode
//! one without breaking it. Signing keys are ed25519 keys derived from the
//! node's WireGuard private key (see [`SigningIdentity::derive`]).

use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use zeroize::Zeroize;

use crate::types::{Endpoint, PeerName, PrivateKey, PublicKey, quoted};

/// What every signed record starts with (domain separation: a signature
/// over a record can never be a signature over anything else).
const RECORD_DOMAIN: &[u8] = b"wgp2p membership record v1\n";
/// What the signing key's derivation hashes before the WireGuard key.
const DERIVE_DOMAIN: &[u8] = b"wgp2p membership signing key v1\n";

/// A member's ed25519 verifying key, written as 44 characters of base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignKey(VerifyingKey);

impl SignKey {
    pub fn to_base64(self) -> String {
        BASE64.encode(self.0.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.0.verify(message, signature).is_ok()
    }
}

impl FromStr for SignKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bytes = BASE64
            .decode(s)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                format!(
                    "signing key {}: expected 44 characters of base64",
                    quoted(s)
                )
            })?;
        VerifyingKey::from_bytes(&bytes)
            .map(SignKey)
            .map_err(|_| format!("signing key {}: not an ed25519 key", quoted(s)))
    }
}

impl fmt::Display for SignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for SignKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignKey({})", self.to_base64())
    }
}

/// This node's signing key. Derived, not stored: SHA-512 of a fixed
/// domain string and the WireGuard private key, whose first 32 bytes are
/// the ed25519 seed. The derivation is one-way (the signing key does not
/// reveal the WireGuard key), it needs no second secret file, and it can
/// never change while the WireGuard identity stays (so a pinned signing key
/// that changes is always an anomaly, never a lost file); `import-key`
/// changes both together.
pub struct SigningIdentity {
    key: SigningKey,
    wg: PublicKey,
}

impl SigningIdentity {
    pub fn derive(private: &PrivateKey) -> SigningIdentity {
        let mut hash = Sha512::new();
        hash.update(DERIVE_DOMAIN);
        hash.update(private.expose_bytes());
        let mut digest = hash.finalize();
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&digest[..32]);
        digest.as_mut_slice().zeroize();
        let key = SigningKey::from_bytes(&seed);
        seed.zeroize();
        SigningIdentity {
            key,
            wg: private.public_key(),
        }
    }

    /// The verifying key peers pin for this node.
    pub fn sign_key(&self) -> SignKey {
        SignKey(self.key.verifying_key())
    }

    /// This node's WireGuard public key.
    pub fn wg_key(&self) -> PublicKey {
        self.wg
    }

    /// This node's copy of `event`.
    pub fn sign(&self, event: &Event) -> Record {
        let signature = self.key.sign(&signed_bytes(&self.wg, event));
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
    /// The subject's signing key, when the origin knew it.
    pub sign_key: Option<SignKey>,
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
    /// The WireGuard key of the member that made the event.
    pub origin: PublicKey,
    /// When, in Unix milliseconds of the origin's clock.
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
    /// The WireGuard key of the member whose signing key signed this copy.
    pub by: PublicKey,
    pub signature: Signature,
}

impl Record {
    /// Whether `key` (the pinned signing key of `self.by`) signed this copy.
    pub fn verify(&self, key: &SignKey) -> bool {
        key.verify(&signed_bytes(&self.by, &self.event), &self.signature)
    }
}

/// The canonical encoding of an event: fixed-width fields and
/// length-prefixed strings, so no two events share an encoding.
pub fn event_bytes(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(event.subject.as_bytes());
    out.extend_from_slice(event.origin.as_bytes());
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
            match &intro.sign_key {
                Some(key) => {
                    out.push(1);
                    out.extend_from_slice(key.as_bytes());
                }
                None => out.push(0),
            }
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
    /// The subject's signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sk: Option<String>,
    pub origin: String,
    pub at: u64,
    pub by: String,
    pub sig: String,
}

/// Why a datagram's record is not a record at all. One line, naming the
/// field and what is expected.
pub type Malformed = String;

fn key_field(field: &str, text: &str) -> Result<PublicKey, Malformed> {
    text.parse::<PublicKey>()
        .map_err(|e| format!("field {field}: {e}"))
}

/// The subject's VPN address: an address, or one written as a host route
/// (/32, /128); any wider prefix is a route claim, refused.
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
        ));
    }
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Err(format!(
            "field ip {}: expected a unicast address",
            quoted(text)
        ));
    }
    Ok(ip)
}

impl WireRecord {
    pub fn from_record(record: &Record) -> WireRecord {
        let event = &record.event;
        let intro = event.intro();
        WireRecord {
            op: if intro.is_some() {
                Op::Intro
            } else {
                Op::Removal
            },
            key: event.subject.to_string(),
            name: intro.map(|i| i.name.to_string()),
            ip: intro.map(|i| i.address.to_string()),
            endpoint: intro.and_then(|i| i.endpoint.as_ref().map(ToString::to_string)),
            sk: intro.and_then(|i| i.sign_key.map(SignKey::to_base64)),
            origin: event.origin.to_string(),
            at: event.at,
            by: record.by.to_string(),
            sig: BASE64.encode(record.signature.to_bytes()),
        }
    }

    /// The typed record (its signature not yet checked), or what is wrong.
    pub fn to_record(&self) -> Result<Record, Malformed> {
        let subject = key_field("key", &self.key)?;
        let origin = key_field("origin", &self.origin)?;
        let by = key_field("by", &self.by)?;
        let signature = BASE64
            .decode(&self.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| "field sig: expected 88 characters of base64 (64 bytes)".to_string())?;
        let change = match self.op {
            Op::Removal => {
                if self.name.is_some()
                    || self.ip.is_some()
                    || self.endpoint.is_some()
                    || self.sk.is_some()
                {
                    return Err(
                        "a removal with name, ip, endpoint or sk: expected only key, origin, at, by and sig".into(),
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
                let sign_key = self
                    .sk
                    .as_deref()
                    .map(str::parse::<SignKey>)
                    .transpose()
                    .map_err(|e| format!("field sk: {e}"))?;
                Change::Intro(Intro {
                    name,
                    address,
                    endpoint,
                    sign_key,
                })
            }
        };
        Ok(Record {
            event: Event {
                subject,
                change,
                origin,
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
        SigningIdentity::derive(&private.parse().unwrap())
    }

    pub fn intro_event(subject: &str, name: &str, ip: &str, origin: PublicKey, at: u64) -> Event {
        Event {
            subject: subject.parse().unwrap(),
            change: Change::Intro(Intro {
                name: name.parse().unwrap(),
                address: ip.parse().unwrap(),
                endpoint: Some("192.0.2.7:51820".parse().unwrap()),
                sign_key: None,
            }),
            origin,
            at,
        }
    }

    #[test]
    fn the_derived_key_is_stable_and_per_identity() {
        let a = identity(OWN_PRIV);
        let again = identity(OWN_PRIV);
        let b = identity(OTHER_PRIV);
        assert_eq!(a.sign_key(), again.sign_key());
        assert_ne!(a.sign_key(), b.sign_key());
        // The signing key is not the WireGuard key.
        assert_ne!(a.sign_key().as_bytes(), a.wg_key().as_bytes());
    }

    #[test]
    fn a_copy_verifies_only_with_its_signer_and_unchanged() {
        let me = identity(OWN_PRIV);
        let other = identity(OTHER_PRIV);
        let event = intro_event(KEY_A, "voyager", "10.15.0.9", me.wg_key(), 1000);
        let record = me.sign(&event);
        assert!(record.verify(&me.sign_key()));
        assert!(!record.verify(&other.sign_key()));
        let mut moved = record.clone();
        moved.event.at += 1;
        assert!(!moved.verify(&me.sign_key()));
        let mut claimed = record.clone();
        claimed.by = other.wg_key();
        assert!(!claimed.verify(&me.sign_key()));
        let mut subject = record;
        subject.event.subject = KEY_B.parse().unwrap();
        assert!(!subject.verify(&me.sign_key()));
    }

    #[test]
    fn malformed_records_are_named() {
        let me = identity(OWN_PRIV);
        let good = WireRecord::from_record(&me.sign(&intro_event(
            KEY_A,
            "voyager",
            "10.15.0.9",
            me.wg_key(),
            5,
        )));
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
            (Box::new(|w| w.sk = Some("AAAA".into())), "field sk"),
            (Box::new(|w| w.op = Op::Removal), "a removal with"),
        ];
        for (mangle, expected) in cases {
            let mut wire = good.clone();
            mangle(&mut wire);
            let err = wire.to_record().unwrap_err();
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
            any::<[u8; 32]>(),
            any::<u64>(),
            proptest::option::of((
                "[a-z][a-z0-9_-]{0,63}",
                any::<u32>(),
                proptest::option::of((1u8..255, 1u16..)),
                any::<bool>(),
            )),
        )
            .prop_filter("keys are not zero", |(s, o, ..)| {
                *s != [0; 32] && *o != [0; 32]
            })
            .prop_map(|(s, o, at, intro)| Event {
                subject: PublicKey::from_bytes(s),
                origin: PublicKey::from_bytes(o),
                at,
                change: match intro {
                    None => Change::Removal,
                    Some((name, ip, endpoint, with_key)) => Change::Intro(Intro {
                        name: name.parse().unwrap(),
                        address: IpAddr::from(std::net::Ipv4Addr::from(
                            (ip & 0x00ff_ffff) | 0x0a00_0001,
                        )),
                        endpoint: endpoint
                            .map(|(h, p)| format!("198.51.100.{h}:{p}").parse().unwrap()),
                        sign_key: with_key.then(|| identity(OWN_PRIV).sign_key()),
                    }),
                },
            })
    }

    proptest! {
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
            prop_assert!(back.verify(&me.sign_key()));
        }

        /// Any change of any byte of the signed part breaks the signature.
        #[test]
        fn a_flipped_bit_breaks_the_signature(event in arb_event(), bit in 0usize..8 * 72) {
            let me = identity(OWN_PRIV);
            let record = me.sign(&event);
            let mut bytes = event_bytes(&event);
            let at = (bit / 8) % bytes.len();
            bytes[at] ^= 1 << (bit % 8);
            let signed = [RECORD_DOMAIN, me.wg_key().as_bytes(), &bytes].concat();
            prop_assert!(!me.sign_key().verify(&signed, &record.signature));
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
        let mut event = intro_event(
            KEY_A,
            &long_name,
            "fd00:1:2:3:4:5:6:7",
            me.wg_key(),
            u64::MAX,
        );
        if let Change::Intro(intro) = &mut event.change {
            intro.endpoint = Some(format!("{long_host}:65535").parse().unwrap());
            intro.sign_key = Some(me.sign_key());
        }
        let text = serde_json::to_string(&WireRecord::from_record(&me.sign(&event))).unwrap();
        // The protocol's envelope adds `{"v":1,"t":"record",` (about 20 bytes).
        assert!(text.len() + 32 <= 1200, "{}", text.len());
    }
}
