//! The agents' protocol: what one agent says to another through the tunnel
//! (docs/agent-protocol.md is the reference).
//!
//! One JSON object per UDP datagram, at most [`MAX_DATAGRAM`] bytes:
//! `{"v":1,"t":"<type>", ...fields}`. `v` is the protocol version: an agent
//! drops a datagram of any other version (a change that older agents could
//! misread gets a new version; a new optional field or a new type does not).
//! Unknown fields are ignored, so a later agent may add optional ones
//! (`#[serde(default)]`) that older agents skip.
//!
//! Encoding and decoding are pure: bytes in, a [`Message`] or the
//! [`DropReason`] out, never a panic (the property tests below feed the
//! decoder arbitrary bytes: they are the fuzz test).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::types::PublicKey;

/// The protocol version this agent speaks.
pub const VERSION: u32 = 1;

/// The UDP port every agent listens on, on its VPN address only.
pub const AGENT_PORT: u16 = 51871;

/// The largest datagram sent or accepted: fits the smallest tunnel MTU
/// (1280, IPv6's minimum, minus the IP and UDP headers), so a message is
/// never fragmented.
pub const MAX_DATAGRAM: usize = 1200;

/// A public key in a message: base64 text, as everywhere in WireGuard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(pub PublicKey);

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_base64())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Key, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map(Key)
            .map_err(|_| serde::de::Error::custom("expected a WireGuard public key in base64"))
    }
}

/// Every message type. To add one: a variant here (its `t` is the variant
/// name in kebab-case), a row in docs/agent-protocol.md, a case in the
/// property test's strategy, and its handling in the loop
/// (`agent::Event::Message`) or in the link's receive thread.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Message {
    /// Sent by every agent to every configured peer at each pass: "an agent
    /// runs here". The receiver records when it heard it, and what it says.
    Hello {
        /// This node has run `relay-enable` (it forwards between peers).
        #[serde(default)]
        relay: bool,
        /// Sent only by agents of the first membership format (a derived
        /// signing key): its presence tells that the sender's records
        /// will be refused (docs/membership.md). Never sent now.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sk: Option<String>,
        /// A digest of this node's membership book: a receiver whose own
        /// differs sends its events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members: Option<String>,
    },
    /// "Where do you see peer `key`?" Answered with [`Message::Seen`].
    Where { key: Key },
    /// The answer to [`Message::Where`], from the answerer's live device.
    Seen {
        key: Key,
        /// The peer's live endpoint there (`None`: none, or not a peer).
        #[serde(default)]
        endpoint: Option<SocketAddr>,
        /// Seconds since its latest handshake there (`None`: never).
        #[serde(default)]
        handshake_secs: Option<u64>,
    },
    /// A signed membership record: an introduction or a removal
    /// (docs/membership.md).
    Record(Box<crate::membership::record::WireRecord>),
}

/// Why a datagram was dropped: each reason has its own counter (in the
/// agent's state file, and `status --json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Longer than [`MAX_DATAGRAM`].
    Oversized,
    /// Not a JSON object, or a known type with missing or bad fields.
    Malformed,
    /// A `v` other than [`VERSION`] (or none).
    Version,
    /// A `t` this agent does not know.
    UnknownType,
    /// The source address is in no configured peer's AllowedIPs.
    UnknownSender,
    /// The sender went over its rate limit.
    RateLimited,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::Oversized,
        DropReason::Malformed,
        DropReason::Version,
        DropReason::UnknownType,
        DropReason::UnknownSender,
        DropReason::RateLimited,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Oversized => "oversized",
            DropReason::Malformed => "malformed",
            DropReason::Version => "version",
            DropReason::UnknownType => "unknown-type",
            DropReason::UnknownSender => "unknown-sender",
            DropReason::RateLimited => "rate-limited",
        }
    }
}

/// The envelope as sent: the version, then the message's own fields.
#[derive(Serialize)]
struct Outgoing<'a> {
    v: u32,
    #[serde(flatten)]
    message: &'a Message,
}

/// What is read before the message itself: the version and the type.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    v: Option<serde_json::Value>,
    #[serde(default)]
    t: Option<serde_json::Value>,
}

/// The types this agent knows, as `t` spells them.
const KNOWN_TYPES: [&str; 4] = ["hello", "where", "seen", "record"];

/// The datagram of a message; `DropReason::Oversized` when it would not fit.
pub fn encode(message: &Message) -> Result<Vec<u8>, DropReason> {
    let bytes = serde_json::to_vec(&Outgoing {
        v: VERSION,
        message,
    })
    .map_err(|_| DropReason::Malformed)?;
    if bytes.len() > MAX_DATAGRAM {
        return Err(DropReason::Oversized);
    }
    Ok(bytes)
}

/// The message in a datagram, or why it is dropped.
pub fn decode(bytes: &[u8]) -> Result<Message, DropReason> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(DropReason::Oversized);
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|_| DropReason::Malformed)?;
    if head.v.as_ref().and_then(serde_json::Value::as_u64) != Some(u64::from(VERSION)) {
        return Err(DropReason::Version);
    }
    match head.t.as_ref().and_then(serde_json::Value::as_str) {
        Some(t) if KNOWN_TYPES.contains(&t) => {}
        Some(_) => return Err(DropReason::UnknownType),
        None => return Err(DropReason::Malformed),
    }
    serde_json::from_slice(bytes).map_err(|_| DropReason::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::{KEY_A, KEY_B};
    use proptest::prelude::*;

    fn key(text: &str) -> Key {
        Key(text.parse().unwrap())
    }

    #[test]
    fn wire_format_is_the_documented_one() {
        let hello = encode(&Message::Hello {
            relay: true,
            sk: None,
            members: None,
        })
        .unwrap();
        assert_eq!(hello, br#"{"v":1,"t":"hello","relay":true}"#);
        let seen = Message::Seen {
            key: key(KEY_A),
            endpoint: Some("203.0.113.2:51820".parse().unwrap()),
            handshake_secs: Some(7),
        };
        let text = String::from_utf8(encode(&seen).unwrap()).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"v":1,"t":"seen","key":"{KEY_A}","endpoint":"203.0.113.2:51820","handshake_secs":7}}"#
            )
        );
        assert_eq!(decode(text.as_bytes()), Ok(seen));
    }

    #[test]
    fn later_agents_may_add_fields_and_omit_optional_ones() {
        assert_eq!(
            decode(br#"{"v":1,"t":"hello","relay":false,"signing":"abc"}"#),
            Ok(Message::Hello {
                relay: false,
                sk: None,
                members: None
            })
        );
        assert_eq!(
            decode(br#"{"t":"hello","v":1}"#),
            Ok(Message::Hello {
                relay: false,
                sk: None,
                members: None
            })
        );
        assert_eq!(
            decode(format!(r#"{{"v":1,"t":"seen","key":"{KEY_B}"}}"#).as_bytes()),
            Ok(Message::Seen {
                key: key(KEY_B),
                endpoint: None,
                handshake_secs: None
            })
        );
    }

    #[test]
    fn each_bad_datagram_has_its_reason() {
        let cases: [(&[u8], DropReason); 10] = [
            (b"", DropReason::Malformed),
            (b"\xff\xfe", DropReason::Malformed),
            (b"[1,2]", DropReason::Malformed),
            (br#"{"v":1}"#, DropReason::Malformed),
            (br#"{"t":"hello"}"#, DropReason::Version),
            (br#"{"v":2,"t":"hello"}"#, DropReason::Version),
            (br#"{"v":"1","t":"hello"}"#, DropReason::Version),
            (br#"{"v":1,"t":"gossip"}"#, DropReason::UnknownType),
            (
                br#"{"v":1,"t":"where","key":"not a key"}"#,
                DropReason::Malformed,
            ),
            (
                br#"{"v":1,"t":"hello","relay":"yes"}"#,
                DropReason::Malformed,
            ),
        ];
        for (bytes, reason) in cases {
            assert_eq!(
                decode(bytes),
                Err(reason),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let mut big = br#"{"v":1,"t":"hello","pad":""#.to_vec();
        big.resize(MAX_DATAGRAM + 1, b'x');
        assert_eq!(decode(&big), Err(DropReason::Oversized));
    }

    fn any_key() -> impl Strategy<Value = Key> {
        // The all-zero key is not a public key.
        any::<[u8; 32]>()
            .prop_filter("not all zero", |b| *b != [0; 32])
            .prop_map(|b| Key(PublicKey::from_bytes(b)))
    }

    fn any_record() -> impl Strategy<Value = crate::membership::record::WireRecord> {
        use crate::membership::record::{Op, WireRecord};
        (
            any::<bool>(),
            any_key(),
            proptest::option::of("[a-z][a-z0-9-]{0,63}"),
            proptest::option::of("10\\.15\\.[0-9]{1,3}\\.[0-9]{1,3}"),
            proptest::option::of("[a-z0-9.-]{1,253}:[0-9]{1,5}"),
            (any::<u64>(), any_key(), "[A-Za-z0-9+/]{86}=="),
        )
            .prop_map(
                |(removal, key, name, ip, endpoint, (at, by, sig))| WireRecord {
                    op: if removal { Op::Removal } else { Op::Intro },
                    key: key.0.to_string(),
                    name,
                    ip,
                    endpoint,
                    f: crate::membership::record::FORMAT,
                    at,
                    by: by.0.to_string(),
                    sig,
                },
            )
    }

    fn any_message() -> impl Strategy<Value = Message> {
        // An endpoint as text carries no IPv6 flow label or scope.
        let address = any::<SocketAddr>().prop_map(|a| SocketAddr::new(a.ip(), a.port()));
        let endpoint = proptest::option::of(address);
        prop_oneof![
            (
                any::<bool>(),
                proptest::option::of("[A-Za-z0-9+/]{43}="),
                proptest::option::of("[0-9a-f]{16}")
            )
                .prop_map(|(relay, sk, members)| Message::Hello { relay, sk, members }),
            any_record().prop_map(|r| Message::Record(Box::new(r))),
            any_key().prop_map(|key| Message::Where { key }),
            (any_key(), endpoint, proptest::option::of(any::<u64>())).prop_map(
                |(key, endpoint, handshake_secs)| Message::Seen {
                    key,
                    endpoint,
                    handshake_secs
                }
            ),
        ]
    }

    proptest! {
        // The fuzz test of the decoder: arbitrary bytes never panic it.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
            let _ = decode(&bytes);
        }

        // Arbitrary text shaped like a message (JSON-ish soup around the
        // real field names) reaches the typed decoder, not only the JSON
        // parser; it must not panic either.
        #[test]
        fn decoding_message_shaped_text_never_panics(
            t in "(hello|where|seen|record|x)",
            fields in proptest::collection::vec(("(relay|key|endpoint|handshake_secs|v|sk|members|op|name|ip|origin|at|by|sig)", "(true|1|-1|null|\"[a-zA-Z0-9+/=:.\\[\\]]{0,50}\"|\\{\\}|\\[\\])"), 0..4),
        ) {
            let mut text = format!(r#"{{"v":1,"t":"{t}""#);
            for (name, value) in fields {
                text.push_str(&format!(r#","{name}":{value}"#));
            }
            text.push('}');
            let _ = decode(text.as_bytes());
        }

        #[test]
        fn every_message_round_trips_and_fits(message in any_message()) {
            let bytes = encode(&message).expect("every base message fits");
            prop_assert!(bytes.len() <= MAX_DATAGRAM);
            prop_assert_eq!(decode(&bytes), Ok(message));
        }
    }
}
