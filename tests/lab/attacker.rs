//! Attackers of the membership layer (docs/membership.md, "Threat
//! model"), with real packets through real tunnels:
//!
//! - [`Forger`]: a member that crafts its own `record` datagrams, signed
//!   with its own WireGuard private key (XEdDSA) exactly as the page
//!   specifies: a second implementation of the format, so a test also
//!   checks the spec. It sends them from its VPN address through its
//!   tunnel to a peer's agent, like any member's agent would.
//! - [`Lab::host_behind`](super::Lab::host_behind): a non-member host on a
//!   subnet that a member routes (a site-to-site `--allowed-ips`), whose
//!   packets reach the mesh through that member's tunnel.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use xeddsa::Sign;
use xeddsa::xed25519;

use super::Host;

/// The agents' UDP port.
pub const AGENT_PORT: u16 = 51871;

/// What an introduction says.
#[derive(Clone, Debug)]
pub struct Intro<'a> {
    pub name: &'a str,
    pub ip: IpAddr,
    pub endpoint: Option<&'a str>,
}

/// A member (its WireGuard key pair) that signs whatever it likes.
pub struct Forger {
    private: [u8; 32],
    /// Its WireGuard public key, base64.
    pub public: String,
}

fn key_bytes(text: &str) -> [u8; 32] {
    BASE64
        .decode(text.trim())
        .expect("a key in base64")
        .try_into()
        .expect("32 bytes")
}

impl Forger {
    /// The member whose private key (base64) is `private`.
    #[must_use]
    pub fn new(private: &str) -> Forger {
        Forger {
            private: key_bytes(private),
            public: super::wg_pubkey(private),
        }
    }

    /// The `record` datagram of an introduction (`intro: Some`) or a
    /// removal of `subject`, dated `at` (Unix ms), signed by this member.
    #[must_use]
    pub fn record(&self, subject: &str, intro: Option<&Intro<'_>>, at: u64) -> String {
        self.record_as(&self.public, subject, intro, at)
    }

    /// The same, but claiming `by` signed it (a forgery unless `by` is this
    /// member's own key).
    #[must_use]
    pub fn record_as(&self, by: &str, subject: &str, intro: Option<&Intro<'_>>, at: u64) -> String {
        let mut event = Vec::new();
        event.extend(key_bytes(subject));
        event.extend(at.to_be_bytes());
        match intro {
            None => event.push(0),
            Some(i) => {
                event.push(1);
                event.push(u8::try_from(i.name.len()).expect("a short name"));
                event.extend(i.name.as_bytes());
                match i.ip {
                    IpAddr::V4(v4) => {
                        event.push(4);
                        event.extend(v4.octets());
                    }
                    IpAddr::V6(v6) => {
                        event.push(6);
                        event.extend(v6.octets());
                    }
                }
                let endpoint = i.endpoint.unwrap_or("");
                event.extend(
                    u16::try_from(endpoint.len())
                        .expect("a short endpoint")
                        .to_be_bytes(),
                );
                event.extend(endpoint.as_bytes());
            }
        }
        let mut signed = b"wgp2p membership record v2\n".to_vec();
        signed.extend(key_bytes(by));
        signed.extend(event);
        let key = xed25519::PrivateKey(self.private);
        let signature: [u8; 64] = key.sign(&signed, rand_core::OsRng);
        let sig = BASE64.encode(signature);
        let fields = match intro {
            None => r#""op":"removal""#.to_string(),
            Some(i) => {
                let endpoint = i
                    .endpoint
                    .map(|e| format!(r#","endpoint":"{e}""#))
                    .unwrap_or_default();
                format!(
                    r#""op":"intro","name":"{}","ip":"{}"{endpoint}"#,
                    i.name, i.ip
                )
            }
        };
        format!(
            r#"{{"v":1,"t":"record","f":2,{fields},"key":"{subject}","at":{at},"by":"{by}","sig":"{sig}"}}"#
        )
    }
}

/// A fresh public key (32 random bytes, base64) for a member that exists
/// only in a forged record.
#[must_use]
pub fn random_key() -> String {
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes[0] |= 1;
    BASE64.encode(bytes)
}

/// Send `datagram` from `host` (its route to `to` picks the source: the
/// VPN address through wg0 for a member, its LAN address for a host
/// behind one) to the agent at `to`.
pub fn send_to_agent(host: &Host, to: &str, datagram: &str) {
    host.sh(
        r#"exec bash -c 'printf %s "$1" > "/dev/udp/$2/$3"' sh "$1" "$2" "$3""#,
        &[datagram, to, &AGENT_PORT.to_string()],
    )
    .expect_ok("send a datagram");
}

/// Send `datagram` `count` times at once from `host` to the agent at `to`.
pub fn flood_agent(host: &Host, to: &str, datagram: &str, count: u32) {
    host.sh(
        r#"exec bash -c 'for i in $(seq "$4"); do printf %s "$1" > "/dev/udp/$2/$3"; done' sh "$1" "$2" "$3" "$4""#,
        &[datagram, to, &AGENT_PORT.to_string(), &count.to_string()],
    )
    .expect_ok("flood");
}
