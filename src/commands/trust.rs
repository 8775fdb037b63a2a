//! `trust [NAME|KEY]`, `untrust NAME|KEY`: whose introductions the agent
//! applies. The policy is lines of the config's `[Interface]`
//! (`# AcceptIntroductions = true`, `# Trust = KEY NAME`), changed under
//! the config lock like any edit; no live change.

use crate::commit::commit_files;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::Own;
use crate::plan::membership::{self, Policy};
use crate::store::Change;
use crate::types::PeerSelector;

pub fn run(ctx: &Context, selector: Option<&PeerSelector>) -> Result<()> {
    match selector {
        None => list(ctx),
        Some(selector) => trust(ctx, selector),
    }
}

fn list(ctx: &Context) -> Result<()> {
    let (_lock, node) = ctx.lock_and_show()?;
    let policy = Policy::of(node.require_conf()?);
    if ctx.json {
        let trusted: Vec<serde_json::Value> = policy
            .trusted
            .iter()
            .map(|(key, name)| serde_json::json!({"public_key": key.to_string(), "name": name}))
            .collect();
        let value = serde_json::json!({
            "accept_introductions": policy.accept,
            "trusted": trusted,
            "unreadable": policy.unreadable,
        });
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| Error::System(format!("cannot write JSON: {e}")))?;
        crate::outln!("{text}");
        return Ok(());
    }
    crate::outln!("{}", describe(&policy));
    for (key, name) in &policy.trusted {
        crate::outln!("trusted: {} {key}", name.as_deref().unwrap_or("(unnamed)"));
    }
    for problem in policy.problems() {
        crate::outln!("problem: {problem}");
    }
    Ok(())
}

fn trust(ctx: &Context, selector: &PeerSelector) -> Result<()> {
    ctx.require_root("trust")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let own = Own::of(&node)?;
    let doc = node.require_conf()?;
    let (new_doc, key, name) = membership::trust(doc, &own, selector)?;
    let shown = name.unwrap_or_else(|| key.to_string());
    let Some(new_doc) = new_doc else {
        crate::outln!("{shown} is already trusted: nothing changed");
        return Ok(());
    };
    save(&node, &new_doc)?;
    crate::outln!(
        "trusted {shown}: the agent now applies introductions from it ({})",
        describe(&Policy::of(&new_doc))
    );
    Ok(())
}

pub fn untrust(ctx: &Context, selector: &PeerSelector) -> Result<()> {
    ctx.require_root("untrust")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let doc = node.require_conf()?;
    let (new_doc, key, nobody) = membership::untrust(doc, selector)?;
    save(&node, &new_doc)?;
    if nobody {
        crate::outln!(
            "no longer trusted: {key}; it was the last trusted member, so the line `# AcceptIntroductions = true` went too: this node now trusts nobody ({})",
            describe(&Policy::of(&new_doc))
        );
    } else {
        crate::outln!(
            "no longer trusted: {key} ({})",
            describe(&Policy::of(&new_doc))
        );
    }
    Ok(())
}

/// The policy in one line, with the commands that change it.
fn describe(policy: &Policy) -> String {
    if !policy.unreadable.is_empty() {
        return format!(
            "introductions are refused from every member: {} `# Trust` line(s) cannot be read (see below)",
            policy.unreadable.len()
        );
    }
    match (policy.accept, policy.trusted.is_empty()) {
        (_, false) => format!(
            "introductions are accepted from {} trusted member(s) only, each a peer of this node",
            policy.trusted.len()
        ),
        (true, true) => "introductions are accepted from every member that is a peer of this node".into(),
        (false, true) => {
            "introductions are not accepted (manual): `wgp2p install --accept-introductions` or `wgp2p trust NAME` to accept them".into()
        }
    }
}

fn save(node: &crate::config::node::Node, doc: &crate::config::document::Document) -> Result<()> {
    let mut change = Change::new();
    change.write(node.paths.conf_name(), doc.render());
    commit_files(&node.paths.dir, &change)
}
