//! `export`: this node's roster entry, a TOML `[[peer]]` table. The exports
//! of all nodes, concatenated, form the roster that `sync` reads.

use crate::announce;
use crate::context::Context;
use crate::error::Result;
use crate::roster;

pub fn run(ctx: &Context) -> Result<()> {
    let (_lock, node) = ctx.lock_and_load()?;
    let (key, address) = node.require_identity()?;
    let port = announce::effective_port(ctx, &node);
    let endpoint = announce::endpoint_text(ctx, &node, port)?;
    crate::out!(
        "{}",
        roster::entry(&announce::host_name(), &endpoint, &key, address.ip())
    );
    Ok(())
}
