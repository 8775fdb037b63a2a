//! `agent [--interval SECS]`: run the agent in the foreground until SIGTERM
//! or SIGINT. `agent enable|disable`: its systemd unit for this interface.

use std::path::Path;

use crate::agent::{self, Log, unit};
use crate::cli::{AgentAction, AgentArgs};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::service::Kind;
use crate::system;

pub fn run(ctx: &Context, args: AgentArgs) -> Result<()> {
    match args.action {
        None => {
            ctx.require_root("agent")?;
            let log = Log::new(ctx.env.journal_stream);
            let auto_relay = args.auto_relay.then_some(agent::relay::Settings {
                after: args.relay_after,
            });
            agent::run(ctx, args.interval, auto_relay, &log)
        }
        Some(AgentAction::Enable) => enable(ctx),
        Some(AgentAction::Disable) => disable(ctx),
    }
}

pub fn require_systemd(ctx: &Context, what: &str) -> Result<()> {
    if ctx.service_kind == Kind::Systemd {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "cannot {what} the agent's systemd unit: systemd does not run {} here (no systemd, WGP2P_SERVICE, or a --config-dir other than /etc/wireguard); run `wgp2p agent` under your own supervisor instead (see the README)",
        ctx.paths.iface
    )))
}

/// Install the unit, then enable and start this interface's instance.
pub fn enable(ctx: &Context) -> Result<()> {
    ctx.require_root("agent enable")?;
    require_systemd(ctx, "enable")?;
    let binary = std::env::current_exe()
        .map_err(|e| Error::System(format!("cannot find the wgp2p binary's path: {e}")))?;
    let text = unit::render(&binary)?;
    unit::install(Path::new(unit::UNIT_DIR), &text)?;
    let instance = unit::instance(&ctx.paths.iface);
    system::run("systemctl", &["daemon-reload"])?;
    system::run("systemctl", &["enable", "--now", &instance])?;
    crate::outln!(
        "agent enabled: systemd unit {instance} runs now and whenever wg-quick@{} starts",
        ctx.paths.iface
    );
    Ok(())
}

/// For `uninstall`: where `agent enable` installed the unit, stop and
/// disable this interface's instance.
pub fn disable_if_installed(ctx: &Context) -> Result<()> {
    if ctx.service_kind != Kind::Systemd
        || !Path::new(unit::UNIT_DIR).join(unit::UNIT_FILE).exists()
    {
        return Ok(());
    }
    system::run(
        "systemctl",
        &["disable", "--now", &unit::instance(&ctx.paths.iface)],
    )
}

/// Stop this interface's instance and no longer start it. The unit file
/// stays: other interfaces may use it.
fn disable(ctx: &Context) -> Result<()> {
    ctx.require_root("agent disable")?;
    require_systemd(ctx, "disable")?;
    let instance = unit::instance(&ctx.paths.iface);
    system::run("systemctl", &["disable", "--now", &instance])?;
    crate::outln!("agent disabled: systemd unit {instance} stopped and no longer started");
    Ok(())
}
