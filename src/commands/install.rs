//! `install <ADDRESS/CIDR> [--endpoint HOST[:PORT]]`: first-time setup, safe
//! to re-run. Keys are made once and never replaced; the address is fixed
//! once saved; peers already in the config stay.

use crate::announce;
use crate::config::document::Document;
use crate::config::node::Node;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan::{self, Delta};
use crate::service::Kind;
use crate::store;
use crate::types::{Endpoint, PrivateKey, VpnAddress};

pub fn run(ctx: &Context, address: VpnAddress, endpoint: Option<String>) -> Result<()> {
    ctx.require_root("install")?;
    // Check the endpoint's form before anything is created.
    if let Some(text) = &endpoint {
        Endpoint::parse_with_default_port(text, announce::DEFAULT_PORT)?;
    }
    store::ensure_dir(&ctx.paths.dir)?;
    let (_lock, node) = ctx.lock_and_load()?;
    check_address(&node, &address)?;
    let port = announce::effective_port(ctx, &node);
    let key = ensure_keys(&node)?;
    let dir = &node.paths.dir;
    store::write_atomic(dir, "address", format!("{address}\n").as_bytes())?;
    if let Some(endpoint) = &endpoint {
        // Kept as written: without a port, the line follows the listen port.
        store::write_atomic(dir, "endpoint", format!("{}\n", endpoint.trim()).as_bytes())?;
    }
    let doc = match &node.conf {
        Some(doc) => doc.clone(),
        None => Document::parse("")?,
    };
    let new_doc = plan::install_interface(&doc, &address, &key, port);
    if Some(&new_doc) != node.conf.as_ref() {
        store::write_atomic(dir, &node.paths.conf_name(), new_doc.render().as_bytes())?;
    }
    bring_up(ctx, &key, port)?;
    // Read back what was written, so the line shows the saved endpoint.
    let node = Node::load(node.paths.clone())?;
    crate::outln!("Run this on every other node to add this one:");
    crate::outln!("{}", announce::own_line(ctx, &node)?.line);
    Ok(())
}

fn check_address(node: &Node, address: &VpnAddress) -> Result<()> {
    match node.address {
        Some(saved) if saved != *address => Err(Error::Conflict(format!(
            "address {address} differs from the saved address {saved} in {}: run `wgp2p uninstall` first to change it",
            node.paths.address().display()
        ))),
        _ => Ok(()),
    }
}

/// The node's private key: the saved one, or a new one written now. The
/// public key file is (re)written from it so the two always match.
fn ensure_keys(node: &Node) -> Result<PrivateKey> {
    let dir = &node.paths.dir;
    let key = match &node.private_key {
        Some(key) => key.clone(),
        None => {
            let key = PrivateKey::generate();
            store::write_atomic(
                dir,
                "privatekey",
                format!("{}\n", key.expose_base64()).as_bytes(),
            )?;
            key
        }
    };
    let public = format!("{}\n", key.public_key());
    let saved_public = crate::config::node::read_optional(&node.paths.public_key())?;
    if saved_public.as_deref() != Some(public.as_str()) {
        store::write_atomic(dir, "publickey", public.as_bytes())?;
    }
    Ok(key)
}

/// Start the interface, or, when it already runs, bring its key and port
/// in line live (no restart: other tunnels keep flowing).
fn bring_up(ctx: &Context, key: &PrivateKey, port: u16) -> Result<()> {
    let device = ctx.device();
    let Some(live) = device.live()? else {
        if ctx.service_kind == Kind::None {
            eprintln!(
                "files written; {} was not started (WGP2P_SERVICE=none)",
                ctx.paths.iface
            );
            return Ok(());
        }
        ctx.print_service_note();
        ctx.service().enable_and_start().map_err(|e| {
            Error::System(format!(
                "{e} (the files are written; fix the cause and run `wgp2p start`)"
            ))
        })?;
        eprintln!("{} is up ({})", ctx.paths.iface, ctx.service().describe());
        return Ok(());
    };
    let mut deltas = Vec::new();
    if live.public_key != Some(key.public_key()) {
        deltas.push(Delta::SetPrivateKey(key.clone()));
    }
    if live.listen_port != Some(port) {
        deltas.push(Delta::SetListenPort(port));
    }
    device.apply(&deltas)?;
    eprintln!(
        "{} was already up: its settings were updated live",
        ctx.paths.iface
    );
    Ok(())
}
