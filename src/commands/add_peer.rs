//! `add-peer`: with no arguments, print this node's line; with
//! NAME ENDPOINT PUBLIC_KEY PEER_IP, add or update that peer live and in
//! the config, without restarting the interface. With `--via RELAY`, the
//! peer is reached through RELAY instead of a direct tunnel.

use crate::announce;
use crate::cli::AddPeerArgs;
use crate::commit::commit;
use crate::config::node::Relayed;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::{self, AddPeer, Outcome, Own, relay};

pub fn run(ctx: &Context, args: AddPeerArgs) -> Result<()> {
    match (args.name, args.endpoint, args.public_key, args.peer_ip) {
        (None, None, None, None) if args.via.is_none() => print_own_line(ctx),
        (Some(name), Some(endpoint), Some(public_key), Some(peer_ip)) => add(
            ctx,
            args.via.as_deref(),
            AddPeer {
                name,
                endpoint,
                public_key,
                peer_ip,
                extra_allowed_ips: args.allowed_ips.unwrap_or_default(),
                keepalive: args.keepalive,
            },
        ),
        _ => Err(Error::Invalid(
            "add-peer takes no arguments or all four: NAME ENDPOINT PUBLIC_KEY PEER_IP".into(),
        )),
    }
}

fn print_own_line(ctx: &Context) -> Result<()> {
    let (_lock, node) = ctx.lock_and_load()?;
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

fn add(ctx: &Context, via: Option<&str>, request: AddPeer) -> Result<()> {
    ctx.require_root("add-peer")?;
    let (_lock, mut node) = ctx.lock_and_load()?;
    let own = Own::of(&node)?;
    let doc = node.take_conf()?;
    let name = &request.name;
    let (new_doc, deltas, done) = match via {
        Some(relay_name) => {
            let peer = Relayed {
                name: name.to_string(),
                public_key: request.public_key,
                endpoint: request.endpoint.to_string(),
                nets: request.allowed_ips(),
            };
            let (new_doc, deltas) =
                relay::route_via(&doc, &node.paths.conf_name(), &own, &peer, relay_name)?;
            (
                new_doc,
                deltas,
                format!("added peer {name} via {relay_name}"),
            )
        }
        None => {
            let (new_doc, delta, outcome) =
                plan::add_peer(doc, &node.paths.conf_name(), &own, &request)?;
            let verb = if outcome == Outcome::Added {
                "added"
            } else {
                "updated"
            };
            let deltas = if outcome == Outcome::Unchanged {
                vec![]
            } else {
                vec![delta]
            };
            (new_doc, deltas, format!("{verb} peer {name}"))
        }
    };
    note_dropped_prefix(&request);
    if deltas.is_empty() {
        crate::outln!("peer {name} is already configured as given: nothing changed");
        return Ok(());
    }
    let applied = commit(&node, &new_doc, &deltas, ctx.device().as_ref())?;
    crate::outln!("{done} ({})", applied.describe());
    Ok(())
}

fn note_dropped_prefix(request: &AddPeer) {
    if let Some(prefix) = request.peer_ip.dropped_prefix {
        eprintln!(
            "note: {}/{prefix}: the /{prefix} prefix was dropped; the peer is routed as {} (use --allowed-ips for subnets)",
            request.peer_ip.ip,
            request.peer_ip.host_route()
        );
    }
}
