//! `repair [--dry-run]`: make the live interface equal to the config, in
//! one device call, live, without a restart (like `wg syncconf`, but peer
//! names, relays and DNS endpoints are understood). What counts as drift
//! is decided in `health`, the same rules `status` and `doctor` report.

use std::time::SystemTime;

use crate::config::{self, document::Document};
use crate::context::Context;
use crate::device::Device;
use crate::error::Result;
use crate::health;
use crate::routing;
use crate::types::PublicKey;

pub fn run(ctx: &Context, dry_run: bool) -> Result<()> {
    if !dry_run {
        ctx.require_root("repair")?;
    }
    // A dry run changes nothing, so it takes no lock (and needs no root).
    let (_lock, node) = if dry_run {
        (None, crate::config::node::Node::load(ctx.paths.clone())?)
    } else {
        let (lock, node) = ctx.lock_and_load()?;
        (Some(lock), node)
    };
    let doc = node.require_conf()?;
    let device = ctx.device();
    let Some(live) = device.live()? else {
        crate::outln!(
            "{} is down: nothing live to repair; `wgp2p start` brings it up from {}",
            ctx.paths.iface,
            node.paths.conf_name()
        );
        return Ok(());
    };
    let entries = node.peers()?;
    let drifts = health::drift(doc, &entries, &live, SystemTime::now());
    let (routes, route_lines) = match device.routes()? {
        Some(now) => routing::drift(doc, &now, &ctx.paths.iface),
        None => (routing::Changes::default(), Vec::new()),
    };
    if drifts.is_empty() && routes.is_empty() {
        crate::outln!(
            "nothing to repair: {} is as {} says",
            ctx.paths.iface,
            node.paths.conf_name()
        );
        return Ok(());
    }
    let texts = drifts.iter().map(|d| &d.text).chain(&route_lines);
    if dry_run {
        for text in texts {
            crate::outln!("would repair: {text}");
        }
        crate::outln!("dry run: nothing changed");
        return Ok(());
    }
    if !drifts.is_empty() {
        device.apply(&health::repair_deltas(&drifts))?;
    }
    device.apply_routes(&routes)?;
    for text in texts {
        crate::outln!("repaired: {text}");
    }
    crate::outln!(
        "{} now matches {} (live, no restart)",
        ctx.paths.iface,
        node.paths.conf_name()
    );
    Ok(())
}

/// What a command says when its files already held the change: `unchanged`
/// when the live interface agreed, else each repair it made, then
/// `reapplied`.
pub fn report(repaired: &[String], unchanged: &str, reapplied: &str) {
    if repaired.is_empty() {
        crate::outln!("{unchanged}");
        return;
    }
    for text in repaired {
        crate::outln!("repaired: {text}");
    }
    crate::outln!("{reapplied}");
}

/// Repair the drift of the peers `keys` only, for a command that found the
/// config already as asked (`add-peer`, `relay` run again): re-running a
/// line re-applies it live when the device differs. Returns what was
/// repaired (empty when the device already matched or is down).
pub fn peers(device: &dyn Device, doc: &Document, keys: &[PublicKey]) -> Result<Vec<String>> {
    only(device, doc, |d| d.key.is_some_and(|k| keys.contains(&k)))
}

/// Repair the live private key only, for `import-key` run again with the
/// key the files already hold (a run killed between its files and the
/// device left the old key live). Returns what was repaired.
pub fn private_key(device: &dyn Device, doc: &Document) -> Result<Vec<String>> {
    only(device, doc, |d| d.kind == health::DriftKind::PrivateKey)
}

/// Repair the drifts `wanted` selects, in one device call.
fn only(
    device: &dyn Device,
    doc: &Document,
    wanted: impl Fn(&health::Drift) -> bool,
) -> Result<Vec<String>> {
    let Some(live) = device.live()? else {
        return Ok(Vec::new());
    };
    let entries = config::node::peers(doc)?;
    let drifts: Vec<_> = health::drift(doc, &entries, &live, SystemTime::now())
        .into_iter()
        .filter(|d| wanted(d))
        .collect();
    if drifts.is_empty() {
        return Ok(Vec::new());
    }
    device.apply(&health::repair_deltas(&drifts))?;
    Ok(drifts.into_iter().map(|d| d.text).collect())
}
