//! `sync ROSTER.toml [--dry-run] [--prune] [--adopt]`: make the peers that
//! came from a roster equal to the roster minus this node (adds, updates,
//! renames, removals), leaving every other peer alone; print the plan,
//! then write the config and apply the change live in one device call.

use std::path::Path;

use crate::announce;
use crate::commit::commit;
use crate::config::node::read_optional;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::host;
use crate::plan::sync::{self, Options, ThisNode};
use crate::roster;

pub fn run(ctx: &Context, path: &Path, dry_run: bool, options: Options) -> Result<()> {
    let text = read_optional(path)?.ok_or_else(|| {
        Error::Invalid(format!(
            "roster {} does not exist: expected a TOML file of [[peer]] tables",
            path.display()
        ))
    })?;
    let roster = roster::parse(&text, &path.display().to_string())?;
    if !dry_run {
        ctx.require_root("sync")?;
    }
    let (_lock, node) = ctx.lock_and_load()?;
    let own = host::own(ctx, &node)?;
    let doc = node.require_conf()?;
    let endpoint = host::public_endpoint(ctx, &node)?;
    let me = ThisNode {
        own,
        name: announce::host_name(),
        endpoint,
    };
    let plan = sync::plan(doc, &me, &roster, options)?;
    if plan.changes.is_empty() {
        crate::outln!("in sync with {}: nothing to change", path.display());
        return Ok(());
    }
    for change in &plan.changes {
        crate::outln!("{change}");
    }
    if dry_run {
        crate::outln!("dry run: nothing changed");
        return Ok(());
    }
    let applied = commit(&node, &plan.doc, &plan.deltas, ctx.device().as_ref())?;
    crate::outln!(
        "applied {} ({})",
        crate::words::count(plan.changes.len(), "change", "changes"),
        applied.describe()
    );
    Ok(())
}
