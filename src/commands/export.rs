//! `export [--endpoint HOST[:PORT]]`: this node's roster entry, a TOML
//! `[[peer]]` table. The exports of all nodes, concatenated, form the
//! roster that `sync` reads. Without a known public endpoint it is an
//! error, never a placeholder other nodes would choke on.

use crate::announce;
use crate::context::Context;
use crate::discover;
use crate::error::{Error, Result};
use crate::roster;
use crate::types::EndpointSpec;

pub fn run(ctx: &Context, given: Option<&EndpointSpec>) -> Result<()> {
    let (_lock, node) = ctx.lock_and_show()?;
    let (key, address) = node.require_identity()?;
    let port = announce::effective_port(ctx, &node)?;
    let endpoint = match given {
        Some(given) => given.with_default_port(port),
        None => announce::public_endpoint(ctx, &node, port)?.ok_or_else(|| {
            Error::NotFound(format!(
                "no public endpoint known for this node (none saved by `install --endpoint`, WGP2P_ENDPOINT unset, no STUN server answered within {} s): run `wgp2p export --endpoint HOST[:PORT]` or set WGP2P_ENDPOINT=HOST[:PORT] (`wgp2p nat-check` shows the public address)",
                discover::BUDGET.as_secs()
            ))
        })?,
    };
    crate::out!(
        "{}",
        roster::entry(&announce::host_name(), &endpoint, &key, address.ip())
    );
    Ok(())
}
