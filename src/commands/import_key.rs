//! `import-key [PRIVATE_KEY | -]`: use a given private key. Read from stdin
//! by default so the key never shows in the process list.

use std::io::Read;

use crate::commit::commit;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::plan;
use crate::store;
use crate::types::PrivateKey;

pub fn run(ctx: &Context, argument: Option<String>) -> Result<()> {
    ctx.require_root("import-key")?;
    let key = read_key(argument)?;
    let (_lock, node) = ctx.lock_and_load()?;
    if node.private_key.as_ref() == Some(&key) {
        crate::outln!("this key is already the node's key: nothing changed");
        return Ok(());
    }
    let public = key.public_key();
    // Plan before writing anything: a key that is a peer's is refused.
    let planned = match &node.conf {
        Some(doc) => Some(plan::import_key(doc, &node.paths.conf_name(), key.clone())?),
        None => None,
    };
    let dir = &node.paths.dir;
    write_keys(dir, &key)?;
    if let Some((new_doc, delta)) = planned {
        let applied = match commit(&node, &new_doc, &[delta], ctx.device().as_ref()) {
            Ok(applied) => applied,
            Err(e) => {
                // Keep the key files in step with the config that was restored.
                if let Some(old) = &node.private_key {
                    write_keys(dir, old)?;
                }
                return Err(e);
            }
        };
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

fn write_keys(dir: &std::path::Path, key: &PrivateKey) -> Result<()> {
    store::write_atomic(
        dir,
        "privatekey",
        format!("{}\n", key.expose_base64()).as_bytes(),
    )?;
    store::write_atomic(
        dir,
        "publickey",
        format!("{}\n", key.public_key()).as_bytes(),
    )
}

/// The key from the argument, or from stdin for `-` or no argument.
fn read_key(argument: Option<String>) -> Result<PrivateKey> {
    let from_argument = !matches!(argument.as_deref(), None | Some("-"));
    let text = match argument.as_deref() {
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
