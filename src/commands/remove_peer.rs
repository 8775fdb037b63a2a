//! `remove-peer <PUBLIC_KEY | NAME>`: remove live and from the config.

use crate::commit::commit;
use crate::context::Context;
use crate::error::Result;
use crate::plan;

pub fn run(ctx: &Context, selector: &str) -> Result<()> {
    ctx.require_root("remove-peer")?;
    let (_lock, mut node) = ctx.lock_and_load()?;
    let doc = node.take_conf()?;
    let (new_doc, delta, (name, key)) = plan::remove_peer(doc, &node.paths.conf_name(), selector)?;
    let applied = commit(&node, &new_doc, &[delta], ctx.device().as_ref())?;
    crate::outln!("removed peer {name} {key} ({})", applied.describe());
    Ok(())
}
