//! `uninstall [--keep-keys]`: stop and disable the service, bring the
//! interface down, remove the config, keys, address and provisioned peers,
//! in one transaction. Only an interface installed in the config dir is
//! uninstalled: another name is refused with nothing touched. The config
//! dir stays (it is what the lock is taken on, so a run queued behind this
//! one stays serialised with the next install).

use crate::commit::commit_files;
use crate::config::node::{self, read_entry};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::service::Kind;
use crate::store::{self, Change};

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
    let _lock = store::lock(&paths.dir)?;
    let conf_is_link = std::fs::symlink_metadata(paths.conf()).is_ok_and(|m| m.is_symlink());
    let installed = conf_is_link || read_entry(&paths.conf())?.is_some();
    let mut files: Vec<String> = vec![
        paths.conf_name(),
        node::ADDRESS.into(),
        node::ENDPOINT.into(),
        node::RELAY_STATE.into(),
        node::RELAY_PINS.into(),
    ];
    if !keep_keys {
        files.extend([node::PRIVATE_KEY.into(), node::PUBLIC_KEY.into()]);
    }
    files.extend(crate::agent::state::file_names(&paths.iface));
    files.push(crate::agent::unit::env_file(&paths.iface));
    let provisioned = store::provisioned_files(&paths.dir)?;
    let present: Vec<String> = files
        .iter()
        .filter(|f| std::fs::symlink_metadata(paths.dir.join(f)).is_ok())
        .cloned()
        .collect();
    if !installed {
        if present.is_empty() && provisioned.is_empty() {
            crate::outln!("nothing to uninstall in {}", paths.dir.display());
            return Ok(());
        }
        return Err(Error::NotFound(format!(
            "{} is not installed in {}: {} does not exist; expected the interface wgp2p installed there (give it with --interface); nothing was removed",
            paths.iface,
            paths.dir.display(),
            paths.conf().display()
        )));
    }
    // The agent goes first, systemd's or not: one that kept running would
    // take the vanished peers for removals and announce them to the mesh.
    crate::commands::agent::disable_for_uninstall(ctx)?;
    let stopped =
        crate::agent::state::stop_running(paths, std::time::Duration::from_secs(10), "uninstall")?;
    let running = ctx.device().is_up()?;
    if running || ctx.service_kind == Kind::Systemd {
        ctx.service().stop_and_disable()?;
    }
    if let Some(pid) = stopped {
        crate::outln!("stopped the agent of {} (pid {pid})", paths.iface);
    }
    let mut change = Change::new();
    let mut removed = Vec::new();
    for file in &present {
        change.remove(file.as_str());
        removed.push(paths.dir.join(file).display().to_string());
    }
    for file in &provisioned {
        change.remove(format!("{}/{file}", store::PROVISIONED));
    }
    if paths.provisioned_dir().is_dir() {
        change.remove_dir(store::PROVISIONED);
        removed.push(paths.provisioned_dir().display().to_string());
    }
    commit_files(&paths.dir, &change)?;
    if running {
        crate::outln!("{} is down", paths.iface);
    }
    if removed.is_empty() {
        crate::outln!("nothing to remove in {}", paths.dir.display());
    } else {
        crate::outln!("removed {}", removed.join(", "));
    }
    if conf_is_link {
        crate::outln!(
            "removed the link {}; the file it pointed to is kept",
            paths.conf().display()
        );
    }
    if keep_keys {
        crate::outln!(
            "kept {} and {}",
            paths.private_key().display(),
            paths.public_key().display()
        );
    }
    Ok(())
}
