//! This node's add-peer line: what other nodes paste to add it.

use std::net::IpAddr;

use crate::config::node::{Node, listen_port};
use crate::context::Context;
use crate::discover;
use crate::error::Result;
use crate::types::{Endpoint, EndpointSpec, Host, PeerName, PublicKey};

/// The default port when neither `--port` nor the config gives one.
pub const DEFAULT_PORT: u16 = 51820;

/// The listen port: `--port`/`WG_PORT`, else the config's, else 51820.
pub fn effective_port(ctx: &Context, node: &Node) -> u16 {
    ctx.port
        .or_else(|| node.conf.as_ref().and_then(listen_port))
        .unwrap_or(DEFAULT_PORT)
}

/// The name other nodes will know this one by: the host name, made into a
/// valid peer name (characters outside the allowed set become `-`).
pub fn host_name() -> PeerName {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(PeerName::MAX_LEN)
        .collect();
    let trimmed = cleaned.trim_start_matches(['-', '.']);
    trimmed
        .parse()
        .unwrap_or_else(|_| PeerName::from_static("wgp2p-node"))
}

/// The public endpoint given for this node: the one remembered from
/// `install --endpoint`, else `WGP2P_ENDPOINT`.
pub fn given_endpoint(ctx: &Context, node: &Node) -> Result<Option<EndpointSpec>> {
    match (&node.endpoint, &ctx.env.endpoint) {
        (Some(saved), _) => Ok(Some(saved.clone())),
        (None, Some(text)) => Ok(Some(text.parse()?)),
        (None, None) => Ok(None),
    }
}

/// This node's public endpoint, in the order of docs/behaviour.md: the endpoint
/// remembered from `install --endpoint`, `WGP2P_ENDPOINT`, STUN discovery.
/// `None` when all of them fail (the caller prints a placeholder).
pub fn public_endpoint(ctx: &Context, node: &Node, port: u16) -> Result<Option<Endpoint>> {
    if let Some(given) = given_endpoint(ctx, node)? {
        return Ok(Some(given.with_default_port(port)));
    }
    let servers = discover::servers_from(ctx.env.stun_servers.as_deref());
    Ok(discover::public_ip(&servers, discover::BUDGET).map(|ip| Endpoint::new(Host::Ip(ip), port)))
}

/// The endpoint text for the line, with a warning on stderr when it is a
/// placeholder the user must fill in.
#[allow(
    clippy::single_match_else,
    reason = "the two outcomes, an endpoint or the placeholder, read as a match"
)]
pub fn endpoint_text(ctx: &Context, node: &Node, port: u16) -> Result<String> {
    Ok(match public_endpoint(ctx, node, port)? {
        Some(endpoint) => endpoint.to_string(),
        None => {
            eprintln!(
                "warning: could not discover this node's public IP (no STUN server answered within {} s): replace <PUBLIC-IP> in the line below, or run `wgp2p install ADDRESS --endpoint HOST` to remember it",
                discover::BUDGET.as_secs()
            );
            format!("<PUBLIC-IP>:{port}")
        }
    })
}

/// `wgp2p add-peer <name> <endpoint> <key> <ip>`, pasteable as is.
pub fn add_peer_line(name: &PeerName, endpoint: &str, key: &PublicKey, ip: IpAddr) -> String {
    format!("wgp2p add-peer {name} {endpoint} {key} {ip}")
}

/// What this node's add-peer line carries (`add-peer --json` prints it).
#[derive(serde::Serialize)]
pub struct OwnLine {
    pub name: String,
    pub endpoint: String,
    pub public_key: String,
    pub address: IpAddr,
    pub line: String,
}

/// This node's own line.
pub fn own_line(ctx: &Context, node: &Node) -> Result<OwnLine> {
    let (key, address) = node.require_identity()?;
    let port = effective_port(ctx, node);
    let endpoint = endpoint_text(ctx, node, port)?;
    let name = host_name();
    Ok(OwnLine {
        line: add_peer_line(&name, &endpoint, &key, address.ip()),
        name: name.to_string(),
        endpoint,
        public_key: key.to_string(),
        address: address.ip(),
    })
}
