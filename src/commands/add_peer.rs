//! `add-peer`: with no arguments, print this node's line; with
//! `NAME ENDPOINT PUBLIC_KEY PEER_IP`, add or update that peer live and in
//! the config, without restarting the interface. With `--via RELAY`, the
//! peer is reached through RELAY instead of a direct tunnel.

use crate::announce;
use crate::cli::AddPeerArgs;
use crate::commit::commit;
use crate::config::document::Document;
use crate::config::node::{Node, Relayed, peers};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::{self, AddPeer, Outcome, relay};
use crate::types::{PeerSelector, PublicKey};

pub fn run(ctx: &Context, args: AddPeerArgs) -> Result<()> {
    match (args.name, args.endpoint, args.public_key, args.peer_ip) {
        (None, None, None, None) if args.via.is_none() => print_own_line(ctx),
        (Some(name), Some(endpoint), Some(public_key), Some(peer_ip)) => add(
            ctx,
            args.via.as_ref(),
            &AddPeer {
                name,
                endpoint,
                public_key,
                peer_ip,
                extra_allowed_ips: args.allowed_ips,
                keepalive: args.keepalive,
            },
        ),
        _ => Err(Error::Invalid(
            "add-peer takes no arguments or all four: NAME ENDPOINT PUBLIC_KEY PEER_IP".into(),
        )),
    }
}

fn print_own_line(ctx: &Context) -> Result<()> {
    let (_lock, node) = ctx.lock_and_show()?;
    let own = announce::own_line(ctx, &node)?;
    if ctx.json {
        let text = serde_json::to_string_pretty(&own)
            .map_err(|e| Error::System(format!("cannot write JSON: {e}")))?;
        crate::outln!("{text}");
    } else {
        crate::outln!("{}", own.line);
    }
    Ok(())
}

#[allow(
    clippy::single_match_else,
    reason = "via a relay or direct: the two ways to add, side by side"
)]
fn add(ctx: &Context, via: Option<&PeerSelector>, request: &AddPeer) -> Result<()> {
    ctx.require_root("add-peer")?;
    let (_lock, mut node) = ctx.lock_and_load()?;
    let own = crate::host::own(ctx, &node)?;
    let doc = node.take_conf()?;
    let name = &request.name;
    // The `# Source` tag of an introduced peer this line takes over.
    let mut adopted: Option<String> = None;
    let (new_doc, deltas, done) = match via {
        Some(relay_name) => {
            let peer = Relayed {
                name: Some(name.into()),
                public_key: request.public_key,
                endpoint: Some((&request.endpoint).into()),
                nets: request.allowed_ips(),
                section: None,
            };
            let (new_doc, deltas) = relay::route_via(&doc, &own, &peer, relay_name)?;
            (
                new_doc,
                deltas,
                format!("added peer {name} via {relay_name}"),
            )
        }
        None => {
            adopted = doc.peer(&request.public_key).and_then(|s| {
                s.tags(crate::config::document::keys::TAG_SOURCE)
                    .into_iter()
                    .find(|t| t.starts_with(plan::membership::INTRODUCED_BY))
                    .map(str::to_string)
            });
            let (new_doc, deltas, outcome) = plan::add_peer(doc, &own, request)?;
            let verb = if outcome == Outcome::Added {
                "added"
            } else {
                "updated"
            };
            (new_doc, deltas, format!("{verb} peer {name}"))
        }
    };
    note_dropped_prefix(request);
    warn_public_space(request, &own);
    if deltas.is_empty() {
        // The config holds the line already; the device may not (drift).
        let mut keys = vec![request.public_key];
        if let Some(relay_name) = via {
            let entries = peers(&new_doc)?;
            keys.extend(relay::locate(&entries, relay_name).map(found_key));
        }
        return report_unchanged(ctx, &node, &new_doc, &keys, &format!("peer {name}"));
    }
    let applied = commit(&node, &new_doc, &deltas, ctx.device().as_ref())?;
    crate::outln!("{done} ({})", applied.describe());
    if let Some(tag) = adopted {
        crate::outln!(
            "peer {name} was {tag}: it is now yours, as if added by hand (no member's removal takes it; only `wgp2p remove-peer {name}` here does)"
        );
    }
    Ok(())
}

fn found_key(found: relay::Found<'_>) -> PublicKey {
    match found {
        relay::Found::Direct(entry) => entry.public_key,
        relay::Found::Relayed { peer, .. } => peer.public_key,
    }
}

/// The config already says what was asked: re-apply it live where the
/// device differs (drift repair) and say so, or say nothing changed.
pub(super) fn report_unchanged(
    ctx: &Context,
    node: &Node,
    doc: &Document,
    keys: &[PublicKey],
    what: &str,
) -> Result<()> {
    let repaired = super::repair::peers(ctx.device().as_ref(), doc, keys)?;
    super::repair::report(
        &repaired,
        &format!("{what} is already configured as given: nothing changed"),
        &format!(
            "{what} was already in {} but not on the live interface: re-applied live (drift repair, no restart)",
            node.paths.conf_name()
        ),
    );
    Ok(())
}

/// `--allowed-ips` typed by the admin may route public space (the admin
/// decides), but it is said: every address of it goes to that peer
/// (`plan::routes::covers_public`).
fn warn_public_space(request: &AddPeer, own: &plan::Own) {
    let vpn = [own.address.network()];
    let public: Vec<String> = request
        .extra_allowed_ips
        .iter()
        .flat_map(|a| a.nets())
        .filter(|n| crate::plan::routes::covers_public(&vpn, n))
        .map(ToString::to_string)
        .collect();
    if !public.is_empty() {
        eprintln!(
            "warning: --allowed-ips {} covers public addresses (outside {} and the private ranges): traffic of this host to them goes to peer {} through the tunnel",
            public.join(","),
            vpn[0],
            request.name
        );
    }
}

fn note_dropped_prefix(request: &AddPeer) {
    if let Some(prefix) = request.peer_ip.dropped_prefix() {
        eprintln!(
            "note: {}/{prefix}: the /{prefix} prefix was dropped; the peer is routed as {} (use --allowed-ips for subnets)",
            request.peer_ip.ip(),
            request.peer_ip.host_route()
        );
    }
}
