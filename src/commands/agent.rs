//! `agent [--interval SECS] [--auto-relay …]`: run the agent in the
//! foreground until SIGTERM or SIGINT. `agent enable|disable`: its systemd
//! unit for this interface, run with the same options.

use std::path::Path;

use crate::agent::unit::{self, Home};
use crate::agent::{self, Log};
use crate::cli::{AgentAction, AgentArgs};
use crate::commit::commit_files;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::service::Kind;
use crate::store::{self, Change};
use crate::system;

pub fn run(ctx: &Context, args: AgentArgs) -> Result<()> {
    let options = unit::Options {
        interval: args.interval,
        auto_relay: args.auto_relay.then_some(args.relay_after),
    };
    match args.action {
        None => {
            ctx.require_root("agent")?;
            let log = Log::new(ctx.env.journal_stream);
            let auto_relay = options
                .auto_relay
                .map(|after| agent::relay::Settings { after });
            agent::run(ctx, options.interval, auto_relay, &log)
        }
        Some(AgentAction::Enable) => enable(ctx, options),
        Some(AgentAction::Disable) => disable(ctx),
    }
}

pub fn require_systemd(ctx: &Context, what: &str) -> Result<()> {
    if ctx.service_kind == Kind::Systemd {
        return Ok(());
    }
    // The command to supervise, with the options that chose this node.
    let mut command = String::from("wgp2p");
    if ctx.paths.iface.to_string() != "wg0" {
        command.push_str(&format!(" --interface {}", ctx.paths.iface));
    }
    if ctx.paths.dir != Path::new("/etc/wireguard") {
        command.push_str(&format!(" --config-dir {}", ctx.paths.dir.display()));
    }
    Err(Error::Conflict(format!(
        "cannot {what} the agent's systemd unit: systemd does not run {} here (no systemd, WGP2P_SERVICE, or a --config-dir other than /etc/wireguard); run `{command} agent` under your own supervisor instead (docs/agent.md)",
        ctx.paths.iface
    )))
}

/// The unit file `agent enable` would write, and whether something is
/// there (a link counts: it is never followed).
fn written_unit() -> (std::path::PathBuf, bool) {
    let path = Path::new(unit::UNIT_DIR).join(unit::UNIT_FILE);
    let present = std::fs::symlink_metadata(&path).is_ok();
    (path, present)
}

/// Whether `path` is a regular file that wgp2p wrote.
fn written_by_us(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
        && std::fs::read_to_string(path).is_ok_and(|text| unit::is_ours(&text))
}

/// Make sure a unit runs this binary (the package's, or one written into
/// /etc/systemd/system), write the options, then enable and (re)start
/// this interface's instance so it runs with them.
pub fn enable(ctx: &Context, options: unit::Options) -> Result<()> {
    ctx.require_root("agent enable")?;
    require_systemd(ctx, "enable")?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::System(format!("cannot find the wgp2p binary's path: {e}")))?;
    // Everything that can be refused is refused before anything is written.
    if !ctx.paths.dir.is_dir() || crate::config::node::read_entry(&ctx.paths.conf())?.is_none() {
        return Err(crate::config::node::not_installed(&ctx.paths));
    }
    let (written, written_present) = written_unit();
    let home = unit::home(&exe, unit::packaged_present(), written_present);
    let text = match home {
        Home::Packaged => None,
        Home::Written if written_present && !written_by_us(&written) => {
            return Err(Error::Conflict(format!(
                "{} exists and wgp2p did not write it: expected no file there or the unit `wgp2p agent enable` writes; move it away, or enable it yourself with `systemctl enable --now {}`",
                written.display(),
                unit::instance(&ctx.paths.iface)
            )));
        }
        Home::Written => Some(unit::render(&exe)?),
    };
    {
        let _lock = store::lock(&ctx.paths.dir)?;
        let mut change = Change::new();
        change.write(
            unit::env_file(&ctx.paths.iface),
            unit::env_text(&ctx.paths.iface, options),
        );
        commit_files(&ctx.paths.dir, &change)?;
    }
    if let Some(text) = text {
        unit::install(Path::new(unit::UNIT_DIR), &text)?;
    }
    let instance = unit::instance(&ctx.paths.iface);
    system::run("systemctl", &["daemon-reload"])?;
    system::run("systemctl", &["enable", &instance])?;
    system::run("systemctl", &["restart", &instance])?;
    crate::outln!(
        "agent enabled: systemd unit {instance} runs now and whenever wg-quick@{} starts",
        ctx.paths.iface
    );
    Ok(())
}

/// Whether a unit file for the agent is installed (the package's or one
/// wgp2p wrote): without one, there is no instance to stop.
fn unit_installed() -> bool {
    unit::packaged_present() || written_unit().1
}

/// For `uninstall`: stop and disable this interface's instance; then, when
/// no interface's agent is enabled any more, remove the unit wgp2p wrote
/// into /etc/systemd/system (never the package's, never someone else's).
/// The options file goes with uninstall's other files.
pub fn disable_for_uninstall(ctx: &Context) -> Result<()> {
    if ctx.service_kind != Kind::Systemd || !unit_installed() {
        return Ok(());
    }
    system::run(
        "systemctl",
        &["disable", "--now", &unit::instance(&ctx.paths.iface)],
    )?;
    let (written, _) = written_unit();
    if written_by_us(&written)
        && !unit::any_instance_enabled(wanted_units().iter().map(String::as_str))
    {
        std::fs::remove_file(&written).map_err(|e| Error::io("remove", &written, e))?;
        system::run("systemctl", &["daemon-reload"])?;
    }
    Ok(())
}

/// The names in every `*.wants` directory of /etc/systemd/system: the
/// units enabled there.
fn wanted_units() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(unit::UNIT_DIR) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        .filter_map(|e| std::fs::read_dir(e.path()).ok())
        .flat_map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// Stop this interface's instance, no longer start it, and remove its
/// options. Done again, it changes nothing and says the same, as
/// `systemctl disable` does. The unit file stays: other interfaces may
/// use it.
fn disable(ctx: &Context) -> Result<()> {
    ctx.require_root("agent disable")?;
    require_systemd(ctx, "disable")?;
    let instance = unit::instance(&ctx.paths.iface);
    if unit_installed() {
        system::run("systemctl", &["disable", "--now", &instance])?;
    }
    let env = unit::env_file(&ctx.paths.iface);
    if std::fs::symlink_metadata(ctx.paths.dir.join(&env)).is_ok() {
        let _lock = store::lock(&ctx.paths.dir)?;
        let mut change = Change::new();
        change.remove(env);
        commit_files(&ctx.paths.dir, &change)?;
    }
    crate::outln!("agent disabled: systemd unit {instance} stopped and no longer started");
    Ok(())
}
