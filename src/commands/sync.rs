//! `sync ROSTER.toml [--dry-run]`: make this node's peers equal to the
//! roster minus itself (adds, updates, removals), printing the plan first,
//! then applying it live in one device call.

use std::path::Path;

use crate::commit::commit;
use crate::config::node::read_optional;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::Own;
use crate::roster;

pub fn run(ctx: &Context, path: &Path, dry_run: bool) -> Result<()> {
    let text = read_optional(path)?.ok_or_else(|| {
        Error::NotFound(format!(
            "roster {} does not exist: expected a TOML file of [[peer]] tables",
            path.display()
        ))
    })?;
    let requests = roster::parse(&text, &path.display().to_string())?;
    if !dry_run {
        ctx.require_root("sync")?;
    }
    let (_lock, node) = ctx.lock_and_load()?;
    let own = Own::of(&node)?;
    let doc = node.require_conf()?;
    let (new_doc, deltas, changes) = roster::sync(doc, &node.paths.conf_name(), &own, &requests)?;
    if changes.is_empty() {
        crate::outln!("in sync with {}: nothing to change", path.display());
        return Ok(());
    }
    for change in &changes {
        crate::outln!("{change}");
    }
    if dry_run {
        crate::outln!("dry run: nothing changed");
        return Ok(());
    }
    let applied = commit(&node, &new_doc, &deltas, ctx.device().as_ref())?;
    crate::outln!("applied {} changes ({})", changes.len(), applied.describe());
    Ok(())
}
