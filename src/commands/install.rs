//! `install <ADDRESS/CIDR> [--endpoint HOST[:PORT]]`: first-time setup, safe
//! to re-run. An identity is never replaced: the key in `privatekey`, or
//! else the `PrivateKey` of an existing config (adopted: the key files are
//! written from it), is kept; a key is generated only when neither exists.
//! The address is fixed once saved; peers and every other line of the
//! config stay. All files change in one transaction (`store`).
//! `--accept-introductions` writes `# AcceptIntroductions = true` into the
//! `[Interface]`; a re-install without it leaves the line as it is.

use crate::announce;
use crate::commit::commit_change;
use crate::config::document::{Document, keys};
use crate::config::node::{Node, Paths};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan;
use crate::service::Kind;
use crate::store::{self, Change};
use crate::types::{EndpointSpec, PrivateKey, PublicKey, VpnAddress};
use crate::wg::Delta;
use crate::wg::LiveDevice;

#[allow(
    clippy::single_match_else,
    reason = "interface up or not: the two ways to apply, side by side"
)]
pub fn run(
    ctx: &Context,
    address: VpnAddress,
    endpoint: Option<&EndpointSpec>,
    accept_introductions: bool,
) -> Result<()> {
    ctx.require_root("install")?;
    store::ensure_dir(&ctx.paths.dir)?;
    let (_lock, node) = ctx.lock_and_load_repairing()?;
    check_address(&node, &address)?;
    let port = announce::effective_port(ctx, &node);
    let device = ctx.device();
    // Everything that can refuse is asked before a file is written.
    let live = device.live()?;
    let key = identity(&node, live.as_ref())?;
    let paths = &node.paths;
    let mut change = Change::new();
    if node.address != Some(address) {
        change.write(crate::config::node::ADDRESS, format!("{address}\n"));
    }
    if let Some(endpoint) = endpoint {
        // Kept without a port when given without one: the line then
        // follows the listen port.
        if node.endpoint.as_ref() != Some(endpoint) {
            change.write(crate::config::node::ENDPOINT, format!("{endpoint}\n"));
        }
    }
    if !key_files_match(paths, &key)? {
        paths.write_keys(&mut change, &key);
    }
    let doc = match &node.conf {
        Some(doc) => doc.clone(),
        None => Document::parse("")?,
    };
    let mut new_doc = plan::install_interface(&doc, &address, &key, port);
    if accept_introductions
        && let Some(accepting) = plan::membership::accept_introductions(&new_doc)
    {
        new_doc = accepting;
    }
    if Some(&new_doc) != node.conf.as_ref() {
        change.write(paths.conf_name(), new_doc.render());
    }
    match live {
        Some(live) => {
            // The key is the live one (checked above); only the port may move.
            let mut deltas = Vec::new();
            if live.listen_port != Some(port) {
                deltas.push(Delta::SetListenPort(port));
            }
            commit_change(&node, &change, &deltas, device.as_ref())?;
            eprintln!(
                "{} was already up: its settings were updated live",
                ctx.paths.iface
            );
        }
        None => {
            commit_change(&node, &change, &[], device.as_ref())?;
            start(ctx)?;
        }
    }
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

/// The `PrivateKey` of the config's `[Interface]`, if it has one. A value
/// that is not a key is an error that does not quote it (it may be most of
/// a secret).
pub fn conf_key(node: &Node) -> Result<Option<PrivateKey>> {
    let Some(value) = node
        .conf
        .as_ref()
        .and_then(|doc| doc.interface()?.get_last(keys::PRIVATE_KEY))
    else {
        return Ok(None);
    };
    value.parse().map(Some).map_err(|_| {
        Error::BadConfig(format!(
            "{}: the [Interface] PrivateKey is not a valid key: expected 44 characters of base64 (as `wg genkey` writes); fix or remove that line",
            node.paths.conf().display()
        ))
    })
}

/// The node's identity: the key file's, else the config's (adopted), else
/// a new one. Refused, with nothing changed, when the two disagree, when
/// only a public key is left, or when the running interface uses another
/// key (install never changes a live identity).
fn identity(node: &Node, live: Option<&LiveDevice>) -> Result<PrivateKey> {
    let paths = &node.paths;
    let in_conf = conf_key(node)?;
    let key = match (&node.private_key, in_conf) {
        (Some(file), Some(conf)) if *file != conf => {
            return Err(Error::Conflict(format!(
                "{} and the PrivateKey in {} are different keys: expected one identity; to keep the config's key (the one wg-quick uses), delete {} and {}; to use the file's key, run `wgp2p import-key < {}`; nothing was changed",
                paths.private_key().display(),
                paths.conf().display(),
                paths.private_key().display(),
                paths.public_key().display(),
                paths.private_key().display(),
            )));
        }
        (Some(file), _) => file.clone(),
        (None, Some(conf)) => conf,
        (None, None) => {
            if paths.public_key().exists() {
                return Err(Error::Conflict(format!(
                    "{} exists but no private key does (neither {} nor a PrivateKey in {}): expected the private key of that identity; restore it, or delete {} to make a new identity",
                    paths.public_key().display(),
                    paths.private_key().display(),
                    paths.conf().display(),
                    paths.public_key().display(),
                )));
            }
            if let Some(running) = live.and_then(|l| l.public_key) {
                return Err(Error::Conflict(format!(
                    "{} is running with public key {running}, but its private key is in neither {} nor {}: expected that key on disk; save it with `wgp2p import-key < KEYFILE`, or take the interface down first",
                    paths.iface,
                    paths.private_key().display(),
                    paths.conf().display(),
                )));
            }
            PrivateKey::generate()
        }
    };
    // A `publickey` of another identity: the identity other nodes know
    // may be that one, whose private key is gone; never overwrite it.
    let saved_public = crate::config::node::read_entry(&paths.public_key())?
        .and_then(|text| text.trim().parse::<PublicKey>().ok());
    if let Some(saved) = saved_public
        && saved != key.public_key()
    {
        return Err(Error::Conflict(format!(
            "{} holds public key {saved}, but the private key in {} is that of {}: expected one identity; restore the private key of {saved}, or delete {} to keep the other (install writes it again); nothing was changed",
            paths.public_key().display(),
            if node.private_key.is_some() {
                paths.private_key().display().to_string()
            } else {
                paths.conf().display().to_string()
            },
            key.public_key(),
            paths.public_key().display(),
        )));
    }
    if let Some(running) = live.and_then(|l| l.public_key)
        && running != key.public_key()
    {
        return Err(Error::Conflict(format!(
            "{} is running with public key {running}, but the saved key's public key is {}: expected the same identity; install does not replace a live key (run `wgp2p import-key` to change it on purpose)",
            paths.iface,
            key.public_key()
        )));
    }
    Ok(key)
}

/// Whether `privatekey` and `publickey` already hold exactly `key`.
fn key_files_match(paths: &Paths, key: &PrivateKey) -> Result<bool> {
    let private = crate::config::node::read_entry(&paths.private_key())?;
    let public = crate::config::node::read_entry(&paths.public_key())?;
    Ok(
        private.as_deref().map(str::trim) == Some(key.expose_base64().as_str())
            && public.as_deref() == Some(format!("{}\n", key.public_key()).as_str()),
    )
}

/// Start the interface now that its files are written.
fn start(ctx: &Context) -> Result<()> {
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
    Ok(())
}
