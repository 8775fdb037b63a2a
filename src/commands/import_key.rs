//! `import-key [PRIVATE_KEY | -]`: use a given private key. Read from stdin
//! by default so the key never shows in the process list.

use std::io::Read;

use super::install::conf_key;
use crate::commit::commit_change;
use crate::config::node::read_entry;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan;
use crate::store::Change;
use crate::types::PrivateKey;

pub fn run(ctx: &Context, argument: Option<&str>) -> Result<()> {
    ctx.require_root("import-key")?;
    let key = read_key(argument)?;
    let (_lock, node) = ctx.lock_and_load()?;
    let public = key.public_key();
    // "Nothing changed" only when every copy of the identity is this key:
    // the key files and the config's PrivateKey.
    let in_conf = match &node.conf {
        Some(_) => conf_key(&node).ok().flatten(),
        None => None,
    };
    let conf_agrees = node.conf.is_none() || in_conf.as_ref() == Some(&key);
    let saved_public = read_entry(&node.paths.public_key())?;
    let public_agrees = saved_public.as_deref() == Some(format!("{public}\n").as_str());
    if node.private_key.as_ref() == Some(&key) && conf_agrees && public_agrees {
        // The files agree; the device may not (a run killed between the
        // files and the device call): running it again sets it live.
        let repaired = match &node.conf {
            Some(doc) => super::repair::private_key(ctx.device().as_ref(), doc)?,
            None => Vec::new(),
        };
        super::repair::report(
            &repaired,
            "this key is already the node's key: nothing changed",
            "this key was already in the node's files but not on the live interface: re-applied live (drift repair, no restart)",
        );
        return Ok(());
    }
    // A running agent signs the mesh's membership records with the node's
    // key: it must not see the identity change under it.
    if let Some(pid) = crate::agent::state::running_pid(&node.paths) {
        return Err(Error::Conflict(format!(
            "an agent runs for {} (pid {pid}): stop it first (`kill {pid}`, or `systemctl stop {}` where systemd runs it), then run `wgp2p import-key` again; nothing was changed",
            node.paths.iface,
            crate::agent::unit::instance(&node.paths.iface)
        )));
    }
    if crate::agent::state::is_running(&node.paths) {
        return Err(Error::Conflict(format!(
            "an agent runs for {}: stop it first, then run `wgp2p import-key` again; nothing was changed",
            node.paths.iface
        )));
    }
    // Plan before writing anything: a key that is a peer's is refused.
    let mut change = Change::new();
    let mut deltas = Vec::new();
    if let Some(doc) = &node.conf {
        let (new_doc, delta) = plan::import_key(doc, key.clone())?;
        change.write(node.paths.conf_name(), new_doc.render());
        deltas.push(delta);
    }
    node.paths.write_keys(&mut change, &key);
    // The key files and the config change together: one transaction.
    let applied = commit_change(&node, &change, &deltas, ctx.device().as_ref())?;
    if node.conf.is_some() {
        crate::outln!(
            "imported key; public key is now {public} ({})",
            applied.describe()
        );
        crate::outln!("run `wgp2p add-peer` and give the new line to every other node");
    } else {
        crate::outln!("imported key; public key is now {public}");
    }
    Ok(())
}

/// The key from the argument, or from stdin for `-` or no argument.
fn read_key(argument: Option<&str>) -> Result<PrivateKey> {
    let from_argument = !matches!(argument, None | Some("-"));
    let text = match argument {
        None | Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .take(4096)
                .read_to_string(&mut text)
                .map_err(|e| {
                    Error::Invalid(format!("cannot read the private key from stdin: {e}"))
                })?;
            text
        }
        Some(arg) => arg.to_string(),
    };
    let key = text.trim().parse()?;
    // Warn only about a valid key: a refused one ends in its error line alone.
    if from_argument {
        eprintln!(
            "warning: a key given as an argument is visible in the process list; prefer `wgp2p import-key < keyfile`"
        );
    }
    Ok(key)
}
