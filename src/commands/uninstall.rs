//! `uninstall [--keep-keys]`: stop and disable the service, bring the
//! interface down, remove the config, keys, address and provisioned peers.

use std::fs;
use std::io::ErrorKind;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::service::Kind;
use crate::store;

pub fn run(ctx: &Context, keep_keys: bool) -> Result<()> {
    ctx.require_root("uninstall")?;
    let paths = &ctx.paths;
    if !paths.dir.is_dir() {
        crate::outln!(
            "nothing to uninstall: {} does not exist",
            paths.dir.display()
        );
        return Ok(());
    }
    let lock = store::lock(&paths.dir)?;
    let running = ctx.device().is_up()?;
    if running || ctx.service_kind == Kind::Systemd {
        ctx.service().stop_and_disable()?;
    }
    let mut files = vec![paths.conf(), paths.address(), paths.endpoint()];
    if !keep_keys {
        files.extend([paths.private_key(), paths.public_key()]);
    }
    let mut removed = Vec::new();
    for file in files {
        if store::remove_file(&file)? {
            removed.push(file.display().to_string());
        }
    }
    let provisioned = paths.provisioned_dir();
    match fs::remove_dir_all(&provisioned) {
        Ok(()) => removed.push(provisioned.display().to_string()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove", &provisioned, e)),
    }
    if running {
        crate::outln!("{} is down", paths.iface);
    }
    if removed.is_empty() {
        crate::outln!("nothing to remove in {}", paths.dir.display());
    } else {
        crate::outln!("removed {}", removed.join(", "));
    }
    if keep_keys {
        crate::outln!(
            "kept {} and {}",
            paths.private_key().display(),
            paths.public_key().display()
        );
    }
    // Nothing of the node is left, so its lock file goes too (a run
    // waiting on it finds no config and says so).
    store::remove_lock(&paths.dir, lock)?;
    Ok(())
}
