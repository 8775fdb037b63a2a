//! `start` and `stop`: the interface up or down through the service manager.

use crate::context::Context;
use crate::error::Result;
use crate::service::Kind;

pub fn start(ctx: &Context) -> Result<()> {
    ctx.require_root("start")?;
    // Only that the config exists: wg-quick reads it.
    let (_lock, node) = ctx.lock_and_show()?;
    node.require_conf()?;
    if ctx.service_kind != Kind::Systemd && ctx.device().is_up()? {
        crate::outln!("{} is already up", ctx.paths.iface);
        return Ok(());
    }
    if ctx.service_kind != Kind::None
        && let Some(port) = node
            .conf
            .as_ref()
            .and_then(crate::config::node::listen_port)
    {
        crate::system::require_free_port(port, &ctx.paths.iface)?;
    }
    ctx.print_service_note();
    ctx.service().start()?;
    crate::outln!("{} is up ({})", ctx.paths.iface, ctx.service().describe());
    Ok(())
}

pub fn stop(ctx: &Context) -> Result<()> {
    ctx.require_root("stop")?;
    // Only that the config exists: wg-quick reads it.
    let (_lock, node) = ctx.lock_and_show()?;
    node.require_conf()?;
    if ctx.service_kind != Kind::Systemd && !ctx.device().is_up()? {
        crate::outln!("{} is already down", ctx.paths.iface);
        return Ok(());
    }
    ctx.service().stop()?;
    crate::outln!("{} is down", ctx.paths.iface);
    Ok(())
}
