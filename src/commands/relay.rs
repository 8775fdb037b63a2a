//! `relay NAME via RELAY` and `relay NAME direct`: switch how a peer is
//! reached, live, without touching the traffic of any other peer.

use crate::cli::RelayMode;
use crate::commit::commit;
use crate::config::node::peers;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::relay::{self, Found};
use crate::plan::{self, Own};
use crate::types::PeerSelector;

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
    let own = Own::of(&node)?;
    let doc = node.require_conf()?;
    let conf_name = node.paths.conf_name();
    let (new_doc, deltas, done, keys) = match relay_name {
        Some(relay_name) => {
            let entries = peers(doc)?;
            let peer = match relay::locate(&entries, selector) {
                Some(Found::Direct(entry)) => relay::as_relayed(doc, entry),
                Some(Found::Relayed { peer, .. }) => peer.clone(),
                None => return Err(plan::not_found(doc, selector).into()),
            };
            let (new_doc, deltas) = relay::route_via(doc, &own, &peer, relay_name)?;
            let mut keys = vec![peer.public_key];
            if let Some(Found::Direct(relay)) = relay::locate(&entries, relay_name) {
                keys.push(relay.public_key);
            }
            (
                new_doc,
                deltas,
                format!("peer {} now goes via {relay_name}", peer.display_name()),
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
    if deltas.is_empty() {
        // The config says so already; the device may not (drift).
        let repaired = super::repair::peers(ctx.device().as_ref(), &new_doc, &keys)?;
        if repaired.is_empty() {
            crate::outln!("nothing to change: {done}");
        } else {
            for text in &repaired {
                crate::outln!("repaired: {text}");
            }
            crate::outln!(
                "{done} in {conf_name}; the live interface differed: re-applied live (drift repair, no restart)"
            );
        }
        return Ok(());
    }
    let applied = commit(&node, &new_doc, &deltas, ctx.device().as_ref())?;
    crate::outln!("{done} ({})", applied.describe());
    Ok(())
}
