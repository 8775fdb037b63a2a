//! `remove-peer <PUBLIC_KEY | NAME>`: remove live and from the config. A
//! key that is only live (drift) is removed live; a relayed peer's direct
//! tunnel, when one runs live, goes with it.

use crate::commit::commit;
use crate::context::Context;
use crate::error::plan::PlanError;
use crate::error::{Error, Result};
use crate::plan;
use crate::types::{PeerSelector, PublicKey};
use crate::wg::Delta;

pub fn run(ctx: &Context, selector: &PeerSelector) -> Result<()> {
    ctx.require_root("remove-peer")?;
    let (_lock, mut node) = ctx.lock_and_load()?;
    let doc = node.take_conf()?;
    let device = ctx.device();
    let (new_doc, delta, (name, key)) = match plan::remove_peer(doc, selector) {
        Err(Error::Plan(not_found @ PlanError::NotFound { .. })) => {
            return remove_live_only(ctx, selector, not_found);
        }
        other => other?,
    };
    let mut deltas = vec![delta];
    // A relayed peer has no direct tunnel in the config; one may still run
    // live (drift), and it would keep the peer reachable after removal.
    if deltas[0] != Delta::RemovePeer(key) && is_live(device.as_ref(), key)? {
        deltas.push(Delta::RemovePeer(key));
    }
    let applied = commit(&node, &new_doc, &deltas, device.as_ref())?;
    crate::outln!("removed peer {name} {key} ({})", applied.describe());
    Ok(())
}

fn is_live(device: &dyn crate::device::Device, key: PublicKey) -> Result<bool> {
    Ok(device
        .live()?
        .is_some_and(|l| l.peers.iter().any(|p| p.public_key == key)))
}

/// A key the config does not know but the live interface runs: remove it
/// live (drift repair); the config is not touched.
fn remove_live_only(ctx: &Context, selector: &PeerSelector, not_found: PlanError) -> Result<()> {
    let device = ctx.device();
    let key = match selector {
        PeerSelector::Key(key) if is_live(device.as_ref(), *key)? => *key,
        _ => return Err(not_found.into()),
    };
    device.apply(&[Delta::RemovePeer(key)])?;
    crate::outln!(
        "removed live-only peer {key} (it was not in {}; live, no restart)",
        ctx.paths.conf_name()
    );
    Ok(())
}
