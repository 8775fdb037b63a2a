//! `relay NAME via RELAY` and `relay NAME direct`: switch how a peer is
//! reached, live, without touching the traffic of any other peer.

use crate::cli::RelayMode;
use crate::commit::{commit_change, commit_files};
use crate::config::document::Document;
use crate::config::node::{Node, RELAY_PINS, peers, read_entry};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::relay::{self, Found};
use crate::store::Change;
use crate::types::PeerSelector;

#[allow(
    clippy::single_match_else,
    reason = "`via` or `direct`: the two modes, side by side"
)]
pub fn run(
    ctx: &Context,
    selector: &PeerSelector,
    mode: RelayMode,
    relay_name: Option<&PeerSelector>,
) -> Result<()> {
    let relay_name = match (mode, relay_name) {
        (RelayMode::Via, Some(name)) => Some(name),
        (RelayMode::Direct, None) => None,
        (RelayMode::Via, None) => {
            return Err(Error::Invalid(
                "relay NAME via: expected the relay's name or key after `via`".into(),
            ));
        }
        (RelayMode::Direct, Some(extra)) => {
            return Err(Error::Invalid(format!(
                "unexpected {extra:?} after `direct`: expected `wgp2p relay NAME direct`"
            )));
        }
    };
    ctx.require_root("relay")?;
    let (_lock, node) = ctx.lock_and_load()?;
    let own = crate::host::own(ctx, &node)?;
    let doc = node.require_conf()?;
    let conf_name = node.paths.conf_name();
    // Whoever types `relay` decides for this peer: the agent's auto-relay
    // leaves it alone from now on (`relay-pins`, written with the config).
    let pinned = pin(&node, doc, selector)?;
    let (new_doc, deltas, done, keys) = match relay_name {
        Some(relay_name) => {
            let entries = peers(doc)?;
            let moved = relay::move_via(doc, &own, selector, relay_name)?;
            let mut keys = vec![moved.peer.public_key];
            if let Some(Found::Direct(relay)) = relay::locate(&entries, relay_name) {
                keys.push(relay.public_key);
            }
            (
                moved.doc,
                moved.deltas,
                format!(
                    "peer {} now goes via {relay_name}",
                    moved.peer.display_name()
                ),
                keys,
            )
        }
        None => {
            let entries = peers(doc)?;
            if let Some(Found::Direct(entry)) = relay::locate(&entries, selector) {
                // Direct in the config already: like `via` run again, only
                // the live interface may need the peer back (drift).
                (
                    doc.clone(),
                    Vec::new(),
                    format!("peer {} is direct", entry.display_name()),
                    vec![entry.public_key],
                )
            } else {
                let (new_doc, deltas, name) = relay::make_direct(doc, &own, selector)?;
                (
                    new_doc,
                    deltas,
                    format!("peer {name} is direct again"),
                    Vec::new(),
                )
            }
        }
    };
    let mut change = Change::new();
    if let Some(text) = pinned {
        change.write(RELAY_PINS, text);
    }
    if deltas.is_empty() {
        if !change.is_empty() {
            commit_files(&node.paths.dir, &change)?;
        }
        // The config says so already; the device may not (drift).
        let repaired = super::repair::peers(ctx.device().as_ref(), &new_doc, &keys)?;
        super::repair::report(
            &repaired,
            &format!("nothing to change: {done}"),
            &format!(
                "{done} in {conf_name}; the live interface differed: re-applied live (drift repair, no restart)"
            ),
        );
        return Ok(());
    }
    change.write(node.paths.conf_name(), new_doc.render());
    let applied = commit_change(&node, &change, &deltas, ctx.device().as_ref())?;
    crate::outln!("{done} ({})", applied.describe());
    Ok(())
}

/// The text of `relay-pins` with the peer `selector` names added; `None`
/// when it is there already or no such peer exists (the plan then says so).
fn pin(node: &Node, doc: &Document, selector: &PeerSelector) -> Result<Option<String>> {
    let entries = peers(doc)?;
    let (key, name) = match relay::locate(&entries, selector) {
        Some(Found::Direct(e)) => (e.public_key, e.display_name().to_string()),
        Some(Found::Relayed { peer, .. }) => (peer.public_key, peer.display_name().to_string()),
        None => return Ok(None),
    };
    let path = node.paths.dir.join(RELAY_PINS);
    let old = read_entry(&path)?.unwrap_or_default();
    let new = crate::config::pins::add(&old, &key, &name);
    Ok((new != old).then_some(new))
}
